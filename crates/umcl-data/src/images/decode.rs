//! Decoding: file or bytes to one channel, PNG and colour JPEG through the `image` crate,
//! grayscale JPEG through the decoder the build chose ([`JpegDecoder`]), DICOM through
//! [`dicom`](super::dicom).

use std::path::Path;

use image::DynamicImage;

use super::resample::{resample, Rect};
use super::{GrayImage, ImageError};

/// A decoder of single-component (grayscale) JPEGs. Which one [`load`], [`decode`] and
/// [`Preprocess`](super::Preprocess) use is fixed when the crate is built, by the cargo
/// feature `libjpeg` alone ([`JpegDecoder::DEFAULT`]); nothing about the machine that builds
/// it changes the choice. Colour JPEGs and PNGs always go through the `image` crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JpegDecoder {
    /// zune-jpeg, pure Rust, with the options the `image` crate uses. Every build has it.
    ZuneJpeg,
    /// The system's libjpeg-turbo through the C shim `csrc/jpeg_gray.c`; only with the
    /// cargo feature `libjpeg`. Faster, and the loader asks it to decode only the rows and
    /// columns an augmentation crop reads.
    #[cfg(feature = "libjpeg")]
    LibjpegTurbo,
}

impl JpegDecoder {
    /// The decoder this build uses: libjpeg-turbo with the feature `libjpeg`, else zune-jpeg.
    #[cfg(feature = "libjpeg")]
    pub const DEFAULT: Self = Self::LibjpegTurbo;
    /// The decoder this build uses: libjpeg-turbo with the feature `libjpeg`, else zune-jpeg.
    #[cfg(not(feature = "libjpeg"))]
    pub const DEFAULT: Self = Self::ZuneJpeg;

    /// A name for logs: `"zune-jpeg"` or `"libjpeg-turbo (feature libjpeg)"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ZuneJpeg => "zune-jpeg",
            #[cfg(feature = "libjpeg")]
            Self::LibjpegTurbo => "libjpeg-turbo (feature libjpeg)",
        }
    }
}

/// The most pixels an image may have: every decoder checks the size its header claims before
/// allocating, so a small file that claims a huge image (a decompression bomb) is an error,
/// not gigabytes of memory. Pillow's limit (twice its `MAX_IMAGE_PIXELS`), about 13,400 pixels
/// square, far above any radiograph.
pub const MAX_PIXELS: usize = 178_956_970;

/// An error unless `width * height` is at most [`MAX_PIXELS`].
pub(crate) fn check_pixels(width: usize, height: usize) -> Result<(), String> {
    match width.checked_mul(height) {
        Some(n) if n <= MAX_PIXELS => Ok(()),
        _ => Err(format!(
            "the image claims {width} x {height} pixels, more than the limit of {MAX_PIXELS} \
             (a corrupt or hostile file?)"
        )),
    }
}

/// An error unless a JPEG's data is complete: its last scan must be followed by the
/// end-of-image marker. A file cut short (a partial download or copy) has no such marker,
/// and decoders would otherwise fill the missing part with grey. Markers cannot occur
/// inside entropy-coded data, so an `FF D9` after the last `FF DA` is the real end. A
/// thumbnail's end marker, which comes before the main image's scan, does not count.
pub(crate) fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    const SOS: [u8; 2] = [0xFF, 0xDA];
    const EOI: [u8; 2] = [0xFF, 0xD9];
    // Found from the end, the end marker is a few bytes away in a whole file; the first
    // scan is a few kilobytes from the start.
    let ended = bytes.windows(2).rposition(|w| w == EOI).is_some_and(|eoi| {
        !bytes[eoi..].windows(2).any(|w| w == SOS) && bytes[..eoi].windows(2).any(|w| w == SOS)
    });
    if ended {
        Ok(())
    } else {
        Err(format!(
            "the JPEG data is truncated: no end-of-image marker after its last scan \
             ({} bytes read)",
            bytes.len()
        ))
    }
}

/// The name of the grayscale JPEG decoder this build uses ([`JpegDecoder::DEFAULT`]), as
/// `umcl info` prints it.
pub const JPEG_DECODER: &str = JpegDecoder::DEFAULT.name();

/// Reads and decodes an image file; errors name the file.
pub fn load(path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    let path = path.as_ref();
    decode(&read_file(path)?, path)
}

/// Reads a whole image file; the error names it.
pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|err| ImageError::Read {
        path: path.to_path_buf(),
        err,
    })
}

/// Decodes PNG (8 or 16 bit), JPEG or DICOM bytes, grayscale or colour, to a [`GrayImage`] in
/// `[0, 1]`. `name` is used in error messages, and a name ending in `.dcm` or `.dicom` marks
/// DICOM bytes without the `DICM` magic (see [`dicom::is_dicom`](super::dicom::is_dicom)).
pub fn decode(bytes: &[u8], name: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    decode_with(bytes, name, JpegDecoder::DEFAULT)
}

/// [`decode`] with a chosen decoder for grayscale JPEGs (everything else decodes the same
/// whichever is chosen): to compare the decoders, or to decode with zune-jpeg in a build that
/// has libjpeg.
pub fn decode_with(
    bytes: &[u8],
    name: impl AsRef<Path>,
    decoder: JpegDecoder,
) -> Result<GrayImage, ImageError> {
    let raw = decode_raw_reusing(bytes, name.as_ref(), decoder, Vec::new())?;
    let data = match raw.pixels {
        RawPixels::U8(v) => v.iter().map(|&p| U8_TO_F32[p as usize]).collect(),
        RawPixels::U16(v) => v.iter().map(|&p| p as f32 / 65535.0).collect(),
        RawPixels::F32(v) => v,
    };
    GrayImage::new(raw.width, raw.height, data)
}

/// A decoded single-channel image in the decoder's own depth.
pub(crate) struct RawImage {
    pub width: usize,
    pub height: usize,
    pub pixels: RawPixels,
}

/// The pixels of a [`RawImage`]: 8-bit, 16-bit, or float in `[0, 1]`.
pub(crate) enum RawPixels {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl RawImage {
    /// Resamples the part `rect` to `out_w` x `out_h`, in `[0, 1]`.
    pub(crate) fn resample(&self, rect: Rect, out_w: usize, out_h: usize) -> GrayImage {
        let (w, h) = (self.width, self.height);
        match &self.pixels {
            RawPixels::U8(v) => resample(v, w, h, rect, out_w, out_h, 1.0 / 255.0),
            RawPixels::U16(v) => resample(v, w, h, rect, out_w, out_h, 1.0 / 65535.0),
            RawPixels::F32(v) => resample(v, w, h, rect, out_w, out_h, 1.0),
        }
    }
}

/// Reads the file `path` into `buf` (replacing its contents, keeping its capacity).
pub(super) fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), ImageError> {
    use std::io::Read;
    let err = |err| ImageError::Read {
        path: path.to_path_buf(),
        err,
    };
    buf.clear();
    let mut f = std::fs::File::open(path).map_err(err)?;
    if let Ok(meta) = f.metadata() {
        buf.reserve(meta.len() as usize + 1);
    }
    f.read_to_end(buf).map_err(err)?;
    Ok(())
}

/// Decodes `bytes` into `buf[..width * height]` (growing `buf` when needed, never shrinking
/// it) when they are a grayscale (single-component) JPEG, and returns the size; `None`, with
/// nothing decoded, for anything else. Decodes at full size with `decoder`.
///
/// `region = [row0, row1, col0, col1]`: only those source rows and columns are needed; with
/// libjpeg the rest of `buf` is left as it was (zune-jpeg decodes everything).
pub(super) fn decode_gray_jpeg(
    bytes: &[u8],
    name: &Path,
    decoder: JpegDecoder,
    region: Option<[usize; 4]>,
    buf: &mut Vec<u8>,
) -> Result<Option<(usize, usize)>, ImageError> {
    #[cfg(not(feature = "libjpeg"))]
    let _ = region;
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(None);
    }
    let err = |message: String| ImageError::Decode {
        path: name.to_path_buf(),
        message,
    };
    check_jpeg_complete(bytes).map_err(err)?;
    if let Some((w, h)) = jpeg_size(bytes) {
        check_pixels(w, h).map_err(err)?;
    }
    match decoder {
        JpegDecoder::ZuneJpeg => zune_gray(bytes, buf).map_err(err),
        #[cfg(feature = "libjpeg")]
        JpegDecoder::LibjpegTurbo => {
            match super::libjpeg::decode_gray(bytes, 1, region, buf) {
                // Should skipping or cropping fail where decoding everything works (a
                // libjpeg without them for some file), decode everything.
                Err(_) if region.is_some() => super::libjpeg::decode_gray(bytes, 1, None, buf),
                other => other,
            }
            .map_err(err)
        }
    }
}

/// [`decode_gray_jpeg`] with zune-jpeg, the decoder and options the `image` crate uses,
/// straight into `buf` (always the whole image).
fn zune_gray(bytes: &[u8], buf: &mut Vec<u8>) -> Result<Option<(usize, usize)>, String> {
    use zune_core::colorspace::ColorSpace;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    dec.decode_headers().map_err(|e| e.to_string())?;
    if dec.input_colorspace() != Some(ColorSpace::Luma) {
        return Ok(None);
    }
    let (width, height) = dec
        .dimensions()
        .ok_or_else(|| "no image size after the headers".to_string())?;
    check_pixels(width, height)?;
    let len = dec
        .output_buffer_size()
        .ok_or_else(|| "image too large".to_string())?;
    if width == 0 || height == 0 || len != width * height {
        return Err("image has no pixels".into());
    }
    if buf.len() < len {
        buf.resize(len, 0);
    }
    dec.decode_into(&mut buf[..len])
        .map_err(|e| e.to_string())?;
    Ok(Some((width, height)))
}

/// Width and height from a JPEG's frame header (SOF marker), without decoding; `None` when
/// the markers do not lead to one with a nonzero size.
pub(super) fn jpeg_size(b: &[u8]) -> Option<(usize, usize)> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            return None;
        }
        let m = b[i + 1];
        if m == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if m == 0x01 || (0xD0..=0xD8).contains(&m) {
            i += 2; // markers without a length
            continue;
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        // SOF0-SOF15 except DHT (C4), JPG (C8) and DAC (CC): length, precision, height, width.
        if (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let h = u16::from_be_bytes([*b.get(i + 5)?, *b.get(i + 6)?]) as usize;
            let w = u16::from_be_bytes([*b.get(i + 7)?, *b.get(i + 8)?]) as usize;
            return (w > 0 && h > 0).then_some((w, h));
        }
        if m == 0xDA || len < 2 {
            return None; // scan data before any frame header
        }
        i += 2 + len;
    }
    None
}

/// Decodes to one channel, keeping 8- and 16-bit grayscale as they are; grayscale JPEGs with
/// `decoder`.
pub(crate) fn decode_raw(
    bytes: &[u8],
    name: &Path,
    decoder: JpegDecoder,
) -> Result<RawImage, ImageError> {
    decode_raw_reusing(bytes, name, decoder, Vec::new())
}

/// [`decode_raw`], decoding a grayscale JPEG into `buf` (reusing its allocation) with
/// [`decode_gray_jpeg`]. Everything else goes through the `image` crate.
pub(crate) fn decode_raw_reusing(
    bytes: &[u8],
    name: &Path,
    decoder: JpegDecoder,
    mut buf: Vec<u8>,
) -> Result<RawImage, ImageError> {
    let err = |message: String| ImageError::Decode {
        path: name.to_path_buf(),
        message,
    };
    if super::dicom::is_dicom(bytes, name) {
        return super::dicom::decode_raw(bytes, name)
            .map(|(raw, _)| raw)
            .map_err(err);
    }
    if let Some((width, height)) = decode_gray_jpeg(bytes, name, decoder, None, &mut buf)? {
        buf.truncate(width * height);
        return Ok(RawImage {
            width,
            height,
            pixels: RawPixels::U8(buf),
        });
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        check_jpeg_complete(bytes).map_err(err)?;
    }
    // The size the header claims, checked before the pixels are allocated.
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| err(e.to_string()))
    };
    let (w, h) = reader()?
        .into_dimensions()
        .map_err(|e| err(e.to_string()))?;
    check_pixels(w as usize, h as usize).map_err(err)?;
    let img = reader()?.decode().map_err(|e| err(e.to_string()))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    if width == 0 || height == 0 {
        return Err(err("image has no pixels".into()));
    }
    // ITU-R 601-2 luma, the weights of PIL's convert("L").
    const R: f32 = 0.299;
    const G: f32 = 0.587;
    const B: f32 = 0.114;
    let pixels = match img {
        DynamicImage::ImageLuma8(b) => RawPixels::U8(b.into_raw()),
        DynamicImage::ImageLumaA8(b) => {
            RawPixels::U8(b.as_raw().chunks_exact(2).map(|p| p[0]).collect())
        }
        DynamicImage::ImageLuma16(b) => RawPixels::U16(b.into_raw()),
        DynamicImage::ImageLumaA16(b) => {
            RawPixels::U16(b.as_raw().chunks_exact(2).map(|p| p[0]).collect())
        }
        DynamicImage::ImageRgb8(b) => RawPixels::F32(
            b.as_raw()
                .chunks_exact(3)
                .map(|p| (R * p[0] as f32 + G * p[1] as f32 + B * p[2] as f32) / 255.0)
                .collect(),
        ),
        DynamicImage::ImageRgba8(b) => RawPixels::F32(
            b.as_raw()
                .chunks_exact(4)
                .map(|p| (R * p[0] as f32 + G * p[1] as f32 + B * p[2] as f32) / 255.0)
                .collect(),
        ),
        DynamicImage::ImageRgb16(b) => RawPixels::F32(
            b.as_raw()
                .chunks_exact(3)
                .map(|p| (R * p[0] as f32 + G * p[1] as f32 + B * p[2] as f32) / 65535.0)
                .collect(),
        ),
        DynamicImage::ImageRgba16(b) => RawPixels::F32(
            b.as_raw()
                .chunks_exact(4)
                .map(|p| (R * p[0] as f32 + G * p[1] as f32 + B * p[2] as f32) / 65535.0)
                .collect(),
        ),
        other => RawPixels::F32(
            other
                .to_rgb32f()
                .as_raw()
                .chunks_exact(3)
                .map(|p| R * p[0] + G * p[1] + B * p[2])
                .collect(),
        ),
    };
    Ok(RawImage {
        width,
        height,
        pixels,
    })
}

/// `v / 255` for every byte, so decoding does no division.
static U8_TO_F32: [f32; 256] = {
    let mut t = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f32 / 255.0;
        i += 1;
    }
    t
};
