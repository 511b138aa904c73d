//! DICOM: a `.dcm` file to a grayscale image in `[0, 1]`, by the policy of `docs/dicom.md`.
//!
//! The steps, each a function below: the stored values of the first frame (Bits Stored, High
//! Bit, Pixel Representation), the Modality LUT (a LUT sequence or Rescale Slope/Intercept),
//! the VOI LUT (a LUT sequence, the first window with its function, or a percentile window),
//! then MONOCHROME1 inverted. For grayscale, the three value steps are folded into one table
//! indexed by the stored bit pattern (at most 65,536 entries), so each pixel costs one shift,
//! one mask and one lookup.
//!
//! Parsing and decompression are dicom-rs's (`dicom-object`, `dicom-pixeldata`, pure-Rust
//! decoders only); the value transforms are ours, because the policy (which window, when
//! percentiles, MONOCHROME1) is what users must be able to read and trust.
//!
//! ```no_run
//! use umcl_data::images::dicom;
//!
//! let (image, info) = dicom::load("study/IM-0001.dcm")?;
//! println!("{}x{}, patient {:?}, view {:?}, {}", image.width(), image.height(),
//!          info.patient_id, info.view_position, info.voi);
//! # Ok::<(), umcl_data::images::ImageError>(())
//! ```

use std::fmt;
use std::path::Path;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::mem::InMemDicomObject;
use dicom_object::{FileDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;

use super::decode::{check_pixels, read_file, RawImage, RawPixels};
use super::{GrayImage, ImageError};

/// The percentiles of the fallback window (see [`Voi::Percentile`]).
pub const PERCENTILES: (f64, f64) = (0.5, 99.5);

/// Whether `bytes` (read from `name`) are to be decoded as DICOM: a name ending in `.dcm` /
/// `.dicom`, or else the `DICM` magic at byte 128 (or at byte 0, a file without its preamble)
/// in a file that does not start as a JPEG or PNG does (whose metadata could hold those four
/// bytes at that place by chance).
///
/// ```
/// use std::path::Path;
/// use umcl_data::images::dicom::is_dicom;
///
/// let mut file = vec![0u8; 132];
/// file[128..].copy_from_slice(b"DICM");
/// assert!(is_dicom(&file, Path::new("IM0001")));
/// assert!(is_dicom(b"anything", Path::new("scan.DCM")));
/// file[..3].copy_from_slice(&[0xFF, 0xD8, 0xFF]); // a JPEG
/// assert!(!is_dicom(&file, Path::new("photo.jpg")));
/// ```
pub fn is_dicom(bytes: &[u8], name: &Path) -> bool {
    if name
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm") || e.eq_ignore_ascii_case("dicom"))
    {
        return true;
    }
    let jpeg_or_png = bytes.starts_with(&[0xFF, 0xD8, 0xFF]) || bytes.starts_with(b"\x89PNG");
    !jpeg_or_png && (bytes.get(128..132) == Some(b"DICM") || bytes.starts_with(b"DICM"))
}

/// How a VOI LUT Function shapes a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowFunction {
    /// `LINEAR`, the standard's default (width at least 1).
    Linear,
    /// `LINEAR_EXACT` (width above 0).
    LinearExact,
    /// `SIGMOID` (width above 0).
    Sigmoid,
}

impl WindowFunction {
    /// The name the standard uses.
    pub fn name(self) -> &'static str {
        match self {
            Self::Linear => "LINEAR",
            Self::LinearExact => "LINEAR_EXACT",
            Self::Sigmoid => "SIGMOID",
        }
    }

    /// Whether `width` is allowed.
    fn accepts(self, width: f64) -> bool {
        width.is_finite()
            && match self {
                Self::Linear => width >= 1.0,
                Self::LinearExact | Self::Sigmoid => width > 0.0,
            }
    }

    /// The display value of modality value `m` in the window (`c`, `w`).
    fn apply(self, m: f64, c: f64, w: f64) -> f64 {
        match self {
            Self::Linear => {
                if m <= c - 0.5 - (w - 1.0) / 2.0 {
                    0.0
                } else if m > c - 0.5 + (w - 1.0) / 2.0 {
                    1.0
                } else {
                    (m - (c - 0.5)) / (w - 1.0) + 0.5
                }
            }
            Self::LinearExact => {
                if m <= c - w / 2.0 {
                    0.0
                } else if m > c + w / 2.0 {
                    1.0
                } else {
                    (m - c) / w + 0.5
                }
            }
            Self::Sigmoid => 1.0 / (1.0 + (-4.0 * (m - c) / w).exp()),
        }
    }
}

/// The VOI transform used for a file: what turned its values into display values.
#[derive(Debug, Clone, PartialEq)]
pub enum Voi {
    /// The first item of the file's VOI LUT Sequence.
    Lut {
        /// Entries in the LUT.
        entries: usize,
    },
    /// Window `index` (0-based) of the `count` the file lists.
    Window {
        /// Which window, from 0 (always 0 under the current policy).
        index: usize,
        /// How many windows the file lists.
        count: usize,
        /// Window Center.
        center: f64,
        /// Window Width.
        width: f64,
        /// The VOI LUT Function.
        function: WindowFunction,
        /// A VOI LUT Function the file names that is not one of the three (LINEAR used).
        unknown_function: Option<String>,
    },
    /// No usable VOI in the file: the [`PERCENTILES`] of the modality values. `range` is
    /// `(lo, hi)` once the pixels are decoded, `None` when only the header was read.
    Percentile {
        /// The values at the two percentiles.
        range: Option<(f64, f64)>,
        /// Why the file's own window was not used, when it has one.
        rejected: Option<String>,
    },
    /// No VOI applies (colour images).
    None,
}

impl fmt::Display for Voi {
    /// One line for logs and a sample's `meta["window"]`: `window 1/2 c=40 w=400 LINEAR`,
    /// `voi-lut 4096 entries`, `percentile 0.5-99.5 [12, 3980]`, `none (colour)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Lut { entries } => write!(f, "voi-lut {entries} entries"),
            Self::Window {
                index,
                count,
                center,
                width,
                function,
                unknown_function,
            } => {
                write!(
                    f,
                    "window {}/{count} c={center} w={width} {}",
                    index + 1,
                    function.name()
                )?;
                if let Some(name) = unknown_function {
                    write!(f, " (the file's function `{name}` is unknown)")?;
                }
                Ok(())
            }
            Self::Percentile { range, rejected } => {
                write!(f, "percentile {}-{}", PERCENTILES.0, PERCENTILES.1)?;
                if let Some((lo, hi)) = range {
                    write!(f, " [{lo}, {hi}]")?;
                }
                if let Some(why) = rejected {
                    write!(f, " ({why})")?;
                }
                Ok(())
            }
            Self::None => f.write_str("none (colour)"),
        }
    }
}

/// What a DICOM file says about itself, from its header; [`decode`] also fills in the
/// percentile range.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomInfo {
    /// Patient ID (0010,0020).
    pub patient_id: Option<String>,
    /// Study Instance UID (0020,000D).
    pub study_uid: Option<String>,
    /// Series Instance UID (0020,000E).
    pub series_uid: Option<String>,
    /// SOP Instance UID (0008,0018).
    pub sop_uid: Option<String>,
    /// View Position (0018,5101): `PA`, `AP`, `LATERAL`, `LL`, ...
    pub view_position: Option<String>,
    /// Photometric Interpretation: `MONOCHROME1`, `MONOCHROME2`, `RGB`, ...
    pub photometric: String,
    /// Rows.
    pub rows: usize,
    /// Columns.
    pub cols: usize,
    /// Number of Frames (1 when absent); only the first is decoded.
    pub frames: u32,
    /// The transfer syntax UID.
    pub transfer_syntax: String,
    /// The VOI transform.
    pub voi: Voi,
}

/// The transfer syntaxes umcl decodes, with their names.
const DECODED: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended"),
    ("1.2.840.10008.1.2.4.57", "JPEG Lossless"),
    ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
];

/// Transfer syntaxes met in practice that umcl does not decode, with their names.
const NOT_DECODED: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    ("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Lossless"),
    ("1.2.840.10008.1.2.4.93", "JPEG 2000 Part 2"),
    ("1.2.840.10008.1.2.4.201", "HTJ2K Lossless"),
    ("1.2.840.10008.1.2.4.202", "HTJ2K Lossless RPCL"),
    ("1.2.840.10008.1.2.4.203", "HTJ2K"),
    ("1.2.840.10008.1.2.4.100", "MPEG2"),
    ("1.2.840.10008.1.2.4.102", "MPEG-4"),
    ("1.2.840.10008.1.2.4.110", "JPEG XL Lossless"),
    ("1.2.840.10008.1.2.4.112", "JPEG XL"),
];

/// Reads and decodes a DICOM file: the first frame as an image in `[0, 1]`, and its
/// metadata. Errors name the file.
pub fn load(path: impl AsRef<Path>) -> Result<(GrayImage, DicomInfo), ImageError> {
    let path = path.as_ref();
    decode(&read_file(path)?, path)
}

/// Decodes the bytes of a DICOM file (`name` is for messages): the first frame in `[0, 1]`,
/// and its metadata with the window used.
pub fn decode(bytes: &[u8], name: impl AsRef<Path>) -> Result<(GrayImage, DicomInfo), ImageError> {
    let name = name.as_ref();
    let (raw, info) = decode_raw(bytes, name).map_err(decode_error(name))?;
    let RawPixels::F32(data) = raw.pixels else {
        unreachable!("the DICOM decoder returns floats")
    };
    Ok((GrayImage::new(raw.width, raw.height, data)?, info))
}

/// Reads only the header of a DICOM file (up to the pixel data): its metadata, with the
/// percentile range left out. For adapters that list many files.
pub fn read_info(path: impl AsRef<Path>) -> Result<DicomInfo, ImageError> {
    let path = path.as_ref();
    let read_error = |err| ImageError::Read {
        path: path.to_path_buf(),
        err,
    };
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(read_error)?);
    let mut head = [0u8; 132];
    let n = read_up_to(&mut reader, &mut head).map_err(read_error)?;
    let err = decode_error(path);
    let obj = parse(&head[..n], reader, path, true).map_err(&err)?;
    let props = Props::read(&obj).map_err(&err)?;
    Ok(props.info(&obj))
}

/// `read` until `buf` is full or the input ends; the number of bytes read.
fn read_up_to(reader: &mut impl std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match reader.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// An error and its causes, `outer: inner: innermost`: dicom-rs's outer messages ("Could not
/// read data set token") say little without the cause that names the element or the offset.
fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = c.source();
    }
    text
}

fn not_dicom() -> String {
    "not a DICOM file: no `DICM` magic at byte 128 (nor at byte 0)".to_string()
}

fn decode_error(path: &Path) -> impl Fn(String) -> ImageError + '_ {
    move |message| ImageError::Decode {
        path: path.to_path_buf(),
        message,
    }
}

/// Runs `f`, turning a panic inside dicom-rs (which some malformed files cause) into an error.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(format!(
            "the DICOM parser failed on {} (a malformed file): {what}",
            path.display()
        ))
    })
}

type Object = FileDicomObject<InMemDicomObject>;

/// Parses a DICOM file whose first bytes are `head` (at least the 132 of the preamble and the
/// `DICM` magic, or all of it) and the rest `rest`: all of it, or with `header_only` up to the
/// Pixel Data.
fn parse(
    head: &[u8],
    rest: impl std::io::Read,
    name: &Path,
    header_only: bool,
) -> Result<Object, String> {
    use std::io::Read;
    let start = if head.get(128..132) == Some(b"DICM") {
        128
    } else if head.starts_with(b"DICM") {
        0
    } else {
        return Err(not_dicom());
    };
    guarded(name, || {
        let options = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
        let options = if header_only {
            options.read_until(tags::PIXEL_DATA)
        } else {
            options
        };
        options
            .from_reader(head[start..].chain(rest))
            .map_err(|e| format!("cannot parse the DICOM file: {}", chain(&e)))
    })
}

/// The uncompressed little-endian transfer syntaxes, whose pixel data [`native_pixels`] can
/// find in the file's bytes.
const NATIVE_LE: [&str; 2] = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];

/// The first `need` bytes of the top-level Pixel Data element of an uncompressed
/// little-endian file, found in its bytes without copying: the first `(7FE0,0010)` element
/// header (explicit `OB`/`OW` or implicit) whose defined length holds at least `need` bytes
/// and fits in the file. An icon's Pixel Data, in a sequence before the image's, is smaller
/// than `need` and is passed over. `None` when there is no such element (the caller then
/// decodes through dicom-rs).
fn native_pixels(bytes: &[u8], explicit: bool, need: usize) -> Option<&[u8]> {
    const TAG: [u8; 4] = [0xE0, 0x7F, 0x10, 0x00];
    let mut from = 0;
    while let Some(at) = bytes[from..].windows(4).position(|w| w == TAG) {
        let i = from + at;
        from = i + 1;
        let (len_at, start) = if explicit {
            let vr = bytes.get(i + 4..i + 8)?;
            if !(vr == b"OW\0\0" || vr == b"OB\0\0") {
                continue;
            }
            (i + 8, i + 12)
        } else {
            (i + 4, i + 8)
        };
        let len = u32::from_le_bytes(bytes.get(len_at..len_at + 4)?.try_into().ok()?) as usize;
        if len != u32::MAX as usize && len >= need && start + need <= bytes.len() {
            return Some(&bytes[start..start + need]);
        }
    }
    None
}

/// The attributes decoding needs, read and checked.
struct Props {
    rows: usize,
    cols: usize,
    samples: u16,
    bits_allocated: u16,
    bits_stored: u16,
    high_bit: u16,
    signed: bool,
    photometric: String,
    frames: u32,
    transfer_syntax: String,
    voi: Voi,
    /// The VOI LUT when `voi` is [`Voi::Lut`], parsed once.
    voi_lut: Option<Lut>,
}

impl Props {
    fn read(obj: &Object) -> Result<Props, String> {
        let ts = obj
            .meta()
            .transfer_syntax()
            .trim_end_matches(['\0', ' '])
            .to_string();
        if !DECODED.iter().any(|(uid, _)| *uid == ts) {
            return Err(match NOT_DECODED.iter().find(|(uid, _)| *uid == ts) {
                Some((uid, name)) => format!(
                    "transfer syntax {uid} ({name}) cannot be decoded: umcl decodes only the \
                     syntaxes with pure-Rust decoders (see docs/dicom.md)"
                ),
                None => format!("transfer syntax {ts} is not one umcl decodes (see docs/dicom.md)"),
            });
        }
        let rows = required_uint(obj, tags::ROWS, "Rows")?;
        let cols = required_uint(obj, tags::COLUMNS, "Columns")?;
        let bits_allocated = required_uint(obj, tags::BITS_ALLOCATED, "Bits Allocated")?;
        let bits_stored = required_uint(obj, tags::BITS_STORED, "Bits Stored")?;
        let high_bit = optional_uint(obj, tags::HIGH_BIT)?.unwrap_or(bits_stored.max(1) - 1);
        let samples = optional_uint(obj, tags::SAMPLES_PER_PIXEL)?.unwrap_or(1);
        let signed = optional_uint(obj, tags::PIXEL_REPRESENTATION)?.unwrap_or(0) == 1;
        let frames = match text(obj, tags::NUMBER_OF_FRAMES) {
            None => 1,
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| format!("Number of Frames `{s}` is not a whole number"))?
                .max(1),
        };
        let photometric = text(obj, tags::PHOTOMETRIC_INTERPRETATION)
            .ok_or("the file has no Photometric Interpretation")?;
        if rows == 0 || cols == 0 {
            return Err(format!("the image has {rows} rows and {cols} columns"));
        }
        check_pixels(cols as usize, rows as usize)?;
        if bits_allocated != 8 && bits_allocated != 16 {
            return Err(format!(
                "Bits Allocated {bits_allocated} is not supported (only 8 and 16)"
            ));
        }
        if bits_stored == 0 || bits_stored > bits_allocated {
            return Err(format!(
                "Bits Stored {bits_stored} does not fit Bits Allocated {bits_allocated}"
            ));
        }
        if high_bit + 1 < bits_stored || high_bit >= bits_allocated {
            return Err(format!(
                "High Bit {high_bit} does not fit Bits Stored {bits_stored} in Bits Allocated \
                 {bits_allocated}"
            ));
        }
        let gray = matches!(photometric.as_str(), "MONOCHROME1" | "MONOCHROME2");
        match (photometric.as_str(), samples) {
            ("MONOCHROME1" | "MONOCHROME2", 1) | ("RGB" | "YBR_FULL", 3) => {}
            ("MONOCHROME1" | "MONOCHROME2" | "RGB" | "YBR_FULL", n) => {
                return Err(format!(
                    "Samples per Pixel {n} does not match Photometric Interpretation {photometric}"
                ))
            }
            (other, _) => {
                return Err(format!(
                    "Photometric Interpretation {other} is not supported (MONOCHROME1, \
                     MONOCHROME2, RGB and YBR_FULL are)"
                ))
            }
        }
        let (voi, voi_lut) = if gray {
            choose_voi(obj)?
        } else {
            (Voi::None, None)
        };
        Ok(Props {
            rows: rows as usize,
            cols: cols as usize,
            samples,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            photometric,
            frames,
            transfer_syntax: ts,
            voi,
            voi_lut,
        })
    }

    fn info(&self, obj: &Object) -> DicomInfo {
        DicomInfo {
            patient_id: text(obj, tags::PATIENT_ID),
            study_uid: text(obj, tags::STUDY_INSTANCE_UID),
            series_uid: text(obj, tags::SERIES_INSTANCE_UID),
            sop_uid: text(obj, tags::SOP_INSTANCE_UID),
            view_position: text(obj, tags::VIEW_POSITION),
            photometric: self.photometric.clone(),
            rows: self.rows,
            cols: self.cols,
            frames: self.frames,
            transfer_syntax: self.transfer_syntax.clone(),
            voi: self.voi.clone(),
        }
    }
}

/// The trimmed text of an element; `None` when absent or blank.
fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let elem = obj.element_opt(tag).ok()??;
    let s = elem.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn optional_uint(obj: &InMemDicomObject, tag: Tag) -> Result<Option<u16>, String> {
    match obj.element_opt(tag) {
        Ok(Some(elem)) => elem
            .to_int::<u16>()
            .map(Some)
            .map_err(|e| format!("element {tag} is not a small whole number: {e}")),
        _ => Ok(None),
    }
}

fn required_uint(obj: &InMemDicomObject, tag: Tag, name: &str) -> Result<u16, String> {
    optional_uint(obj, tag)?.ok_or_else(|| format!("the file has no {name} {tag}"))
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Result<Option<Vec<f64>>, String> {
    match obj.element_opt(tag) {
        Ok(Some(elem)) => elem
            .to_multi_float64()
            .map(Some)
            .map_err(|e| format!("element {tag} is not a list of numbers: {e}")),
        _ => Ok(None),
    }
}

/// A LUT from a Modality or VOI LUT Sequence item: descriptor `[n, first, bits]` and data.
struct Lut {
    first: i64,
    bits: u32,
    data: Vec<f64>,
}

impl Lut {
    /// The first item of the sequence `tag`, when the file has one.
    fn from_sequence(obj: &InMemDicomObject, tag: Tag) -> Result<Option<Lut>, String> {
        let Ok(Some(seq)) = obj.element_opt(tag) else {
            return Ok(None);
        };
        let Some(item) = seq.items().and_then(|items| items.first()) else {
            return Ok(None);
        };
        let descriptor: Vec<i64> = item
            .element_opt(tags::LUT_DESCRIPTOR)
            .ok()
            .flatten()
            .ok_or_else(|| format!("the LUT in {tag} has no LUT Descriptor"))?
            .to_multi_int::<i64>()
            .map_err(|e| format!("the LUT Descriptor in {tag} is not numbers: {e}"))?;
        let [n, first, bits] = descriptor[..] else {
            return Err(format!(
                "the LUT Descriptor in {tag} has {} values, expected 3",
                descriptor.len()
            ));
        };
        let n = if n == 0 { 65536 } else { n as usize };
        let data: Vec<f64> = item
            .element_opt(tags::LUT_DATA)
            .ok()
            .flatten()
            .ok_or_else(|| format!("the LUT in {tag} has no LUT Data"))?
            .to_multi_int::<i64>()
            .map_err(|e| format!("the LUT Data in {tag} is not numbers: {e}"))?
            .into_iter()
            .map(|v| v as f64)
            .collect();
        if data.len() < n || n == 0 {
            return Err(format!(
                "the LUT in {tag} has {} entries, its descriptor says {n}",
                data.len()
            ));
        }
        if !(1..=16).contains(&bits) {
            return Err(format!("the LUT Descriptor in {tag} says {bits} bits"));
        }
        Ok(Some(Lut {
            first,
            bits: bits as u32,
            data: data[..n].to_vec(),
        }))
    }

    fn get(&self, x: f64) -> f64 {
        let i = (x.floor() as i64 - self.first).clamp(0, self.data.len() as i64 - 1);
        self.data[i as usize]
    }
}

/// The VOI transform the policy picks from the header (the percentile range is filled in
/// later), with the VOI LUT itself when that is the choice.
fn choose_voi(obj: &InMemDicomObject) -> Result<(Voi, Option<Lut>), String> {
    Ok(match Lut::from_sequence(obj, tags::VOILUT_SEQUENCE)? {
        Some(lut) => {
            let entries = lut.data.len();
            (Voi::Lut { entries }, Some(lut))
        }
        None => (choose_window(obj)?, None),
    })
}

/// The first window, or the percentile window when the file has none that is valid.
fn choose_window(obj: &InMemDicomObject) -> Result<Voi, String> {
    let centers = floats(obj, tags::WINDOW_CENTER)?;
    let widths = floats(obj, tags::WINDOW_WIDTH)?;
    let (centers, widths) = match (centers, widths) {
        (Some(c), Some(w)) if !c.is_empty() && !w.is_empty() => (c, w),
        (None, None) => return Ok(percentile(None)),
        _ => {
            return Ok(percentile(Some(
                "the file has a Window Center or Width without the other".into(),
            )))
        }
    };
    let (center, width) = (centers[0], widths[0]);
    let named = text(obj, tags::VOILUT_FUNCTION);
    let (function, unknown_function) = match named.as_deref() {
        None | Some("LINEAR") => (WindowFunction::Linear, None),
        Some("LINEAR_EXACT") => (WindowFunction::LinearExact, None),
        Some("SIGMOID") => (WindowFunction::Sigmoid, None),
        Some(other) => (WindowFunction::Linear, Some(other.to_string())),
    };
    if !center.is_finite() || !function.accepts(width) {
        return Ok(percentile(Some(format!(
            "the file's window c={center} w={width} is not valid for {}",
            function.name()
        ))));
    }
    Ok(Voi::Window {
        index: 0,
        count: centers.len().min(widths.len()),
        center,
        width,
        function,
        unknown_function,
    })
}

fn percentile(rejected: Option<String>) -> Voi {
    Voi::Percentile {
        range: None,
        rejected,
    }
}

/// Decodes DICOM bytes to a float image in `[0, 1]` and the file's metadata.
pub(crate) fn decode_raw(bytes: &[u8], name: &Path) -> Result<(RawImage, DicomInfo), String> {
    let mut pixels = Vec::new();
    let (w, h, info) = decode_into(bytes, name, &mut pixels)?;
    Ok((
        RawImage {
            width: w,
            height: h,
            pixels: RawPixels::F32(pixels),
        },
        info,
    ))
}

/// [`decode_raw`] into `out` (its allocation reused, as the loader does image after image):
/// the width, height and metadata. Grayscale uncompressed little-endian files are read
/// straight from `bytes`; everything else goes through dicom-rs's decoders.
pub(crate) fn decode_into(
    bytes: &[u8],
    name: &Path,
    out: &mut Vec<f32>,
) -> Result<(usize, usize, DicomInfo), String> {
    let head = parse(bytes, std::io::empty(), name, true)?;
    let props = Props::read(&head)?;
    let mut info = props.info(&head);
    let (w, h) = (props.cols, props.rows);
    let need = w * h * props.samples as usize * (props.bits_allocated as usize / 8);
    if props.samples == 1 {
        if let Some(pos) = NATIVE_LE.iter().position(|ts| *ts == props.transfer_syntax) {
            if let Some(data) = native_pixels(bytes, pos == 1, need) {
                gray(&head, &props, data, &mut info.voi, out)?;
                return Ok((w, h, info));
            }
        }
    }
    if props.transfer_syntax == "1.2.840.10008.1.2.4.51" && props.bits_allocated > 8 {
        // jpeg-decoder reads only 8-bit lossy JPEG.
        return Err(format!(
            "transfer syntax 1.2.840.10008.1.2.4.51 (JPEG Extended) with {} bits stored cannot \
             be decoded: 12-bit lossy JPEG has no pure-Rust decoder (see docs/dicom.md)",
            props.bits_stored
        ));
    }
    // The header's attributes are read; the whole file is parsed only for its pixel data.
    let obj = parse(bytes, std::io::empty(), name, false)?;
    let frame = guarded(name, || {
        obj.decode_pixel_data_frame(0)
            .map_err(|e| format!("cannot decode the pixel data: {}", chain(&e)))
    })?;
    let data = frame.data();
    if data.len() < need {
        return Err(format!(
            "the pixel data of the first frame holds {} bytes, {w}x{h} pixels of {} sample(s) \
             at {} bits need {need} (a truncated file?)",
            data.len(),
            props.samples,
            props.bits_allocated
        ));
    }
    let data = &data[..need];
    if props.samples == 1 {
        gray(&head, &props, data, &mut info.voi, out)?;
    } else {
        // The JPEG decoders turn YBR into RGB and say so; uncompressed data is as the header
        // says.
        let rgb = frame.photometric_interpretation().as_str() == "RGB";
        *out = colour(&props, rgb, frame.planar_configuration(), data);
    }
    Ok((w, h, info))
}

/// The sample `i` of native little-endian data, `bits_allocated` 8 or 16 wide.
#[inline]
fn sample(data: &[u8], i: usize, wide: bool) -> u32 {
    if wide {
        u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as u32
    } else {
        data[i] as u32
    }
}

/// Grayscale: stored values, Modality LUT, VOI and MONOCHROME1 through one table.
fn gray(
    obj: &Object,
    p: &Props,
    data: &[u8],
    voi: &mut Voi,
    out: &mut Vec<f32>,
) -> Result<(), String> {
    let bits = p.bits_stored as u32;
    let shift = (p.high_bit + 1 - p.bits_stored) as u32;
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let wide = p.bits_allocated == 16;
    let n = p.rows * p.cols;
    // The stored value of each bit pattern (sign-extended when signed), then the modality
    // value.
    let stored = |pattern: u32| -> i64 {
        if p.signed && pattern & (1 << (bits - 1)) != 0 {
            pattern as i64 - (1i64 << bits)
        } else {
            pattern as i64
        }
    };
    let modality_lut = Lut::from_sequence(obj, tags::MODALITY_LUT_SEQUENCE)?;
    let slope = floats(obj, tags::RESCALE_SLOPE)?
        .and_then(|v| v.first().copied())
        .unwrap_or(1.0);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT)?
        .and_then(|v| v.first().copied())
        .unwrap_or(0.0);
    if modality_lut.is_none() && !(slope.is_finite() && intercept.is_finite()) {
        return Err(format!(
            "Rescale Slope {slope} / Intercept {intercept} are not finite numbers"
        ));
    }
    let modality: Vec<f64> = (0..=mask)
        .map(|pattern| {
            let s = stored(pattern) as f64;
            match &modality_lut {
                Some(lut) => lut.get(s),
                None => s * slope + intercept,
            }
        })
        .collect();
    let patterns = |f: &mut dyn FnMut(u32)| {
        for i in 0..n {
            f((sample(data, i, wide) >> shift) & mask);
        }
    };
    let display: Box<dyn Fn(f64) -> f64 + '_> = match voi {
        Voi::Lut { .. } => {
            let lut = p.voi_lut.as_ref().ok_or("the VOI LUT Sequence vanished")?;
            let max = ((1u64 << lut.bits) - 1) as f64;
            Box::new(move |m| (lut.get(m) / max).clamp(0.0, 1.0))
        }
        Voi::Window {
            center,
            width,
            function,
            ..
        } => {
            let (c, w, f) = (*center, *width, *function);
            Box::new(move |m| f.apply(m, c, w))
        }
        Voi::Percentile { range, .. } => {
            let mut counts = vec![0u64; modality.len()];
            patterns(&mut |pattern| counts[pattern as usize] += 1);
            let (lo, hi) = percentiles(&modality, &counts, n as u64);
            *range = Some((lo, hi));
            if hi > lo {
                Box::new(move |m| ((m - lo) / (hi - lo)).clamp(0.0, 1.0))
            } else {
                Box::new(|_| 0.0)
            }
        }
        Voi::None => unreachable!("grayscale files always have a VOI choice"),
    };
    let invert = p.photometric == "MONOCHROME1";
    let table: Vec<f32> = modality
        .iter()
        .map(|&m| {
            let v = display(m);
            (if invert { 1.0 - v } else { v }) as f32
        })
        .collect();
    out.clear();
    out.reserve(n);
    if wide {
        out.extend(
            data.chunks_exact(2).map(|b| {
                table[((u16::from_le_bytes([b[0], b[1]]) as u32 >> shift) & mask) as usize]
            }),
        );
    } else {
        out.extend(
            data.iter()
                .map(|&b| table[((b as u32 >> shift) & mask) as usize]),
        );
    }
    Ok(())
}

/// The [`PERCENTILES`] of the modality values, with the inverted-CDF definition: the smallest
/// value with at least q % of the pixels at or below it. `values[k]` is the modality value
/// of bit pattern `k`, `counts[k]` how many pixels have it.
fn percentiles(values: &[f64], counts: &[u64], n: u64) -> (f64, f64) {
    let mut present: Vec<(f64, u64)> = values
        .iter()
        .zip(counts)
        .filter(|(_, &c)| c > 0)
        .map(|(&v, &c)| (v, c))
        .collect();
    present.sort_by(|a, b| a.0.total_cmp(&b.0));
    let at = |q: f64| -> f64 {
        // numpy's inverted_cdf: the first value whose cumulative count reaches q/100 * n.
        let target = q / 100.0 * n as f64;
        let mut seen = 0u64;
        for &(v, c) in &present {
            seen += c;
            if seen as f64 >= target {
                return v;
            }
        }
        present.last().map_or(0.0, |p| p.0)
    };
    (at(PERCENTILES.0), at(PERCENTILES.1))
}

/// Colour: RGB to luma (PIL's weights), YBR_FULL to its Y plane, scaled by Bits Stored.
fn colour(
    p: &Props,
    rgb: bool,
    planar: dicom_pixeldata::PlanarConfiguration,
    data: &[u8],
) -> Vec<f32> {
    let wide = p.bits_allocated == 16;
    let n = p.rows * p.cols;
    let max = ((1u64 << p.bits_stored) - 1) as f32;
    let planar = matches!(planar, dicom_pixeldata::PlanarConfiguration::PixelFirst);
    let at = |i: usize, c: usize| -> f32 {
        let k = if planar { c * n + i } else { 3 * i + c };
        sample(data, k, wide) as f32
    };
    (0..n)
        .map(|i| {
            let y = if rgb {
                0.299 * at(i, 0) + 0.587 * at(i, 1) + 0.114 * at(i, 2)
            } else {
                at(i, 0)
            };
            (y / max).clamp(0.0, 1.0)
        })
        .collect()
}
