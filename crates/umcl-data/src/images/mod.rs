//! Images: decoding, resizing and normalisation for the image encoder.
//!
//! Every image becomes a [`GrayImage`], one `f32` channel in `[0, 1]`: 8- and 16-bit PNG and
//! JPEG, grayscale or RGB (RGB is reduced with the ITU-R 601 luma weights, as PIL's
//! `convert("L")` does). [`Preprocess`] then fits it to a square (pad or centre crop), resizes
//! it with an antialiased triangle filter whose support widens with the downscale factor, and
//! writes it normalised, replicated to 3 channels when the encoder wants RGB.
//!
//! Grayscale JPEGs are decoded by the system's libjpeg-turbo where the crate was built with it
//! (see `build.rs`), else by zune-jpeg; everything else by the `image` crate.
//! [`Preprocess::load_into`] is the loader's path: read, decode, resize, augment and normalise
//! one file into a caller's buffer with per-thread scratch buffers, decoding and resizing only
//! the part of the image the augmentation's crop reads (the result is the same as
//! [`Preprocess::load`] then [`crate::augment::apply`]). The filters run 8 values at a time
//! with AVX2 where the CPU has it, with the same results as the scalar code.
//!
//! ```
//! use umcl_data::images::{Fit, GrayImage, Preprocess};
//!
//! // A 2x2 image, left column black, right column white, kept at its size: normalising with
//! // mean 0.5 and std 0.5 maps 0 to -1 and 1 to +1, in each of the 3 channels.
//! let img = GrayImage::new(2, 2, vec![0.0, 1.0, 0.0, 1.0])?;
//! let pre = Preprocess { size: 2, fit: Fit::Stretch, mean: [0.5; 3], std: [0.5; 3], channels: 3 };
//! let mut out = vec![0.0; pre.output_len()];
//! pre.process(&img, &mut out)?;
//! assert_eq!(out, [-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
//! # Ok::<(), umcl_data::images::ImageError>(())
//! ```

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::augment::AugmentParams;

/// What can go wrong with an image or an image option.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The file could not be read.
    #[error("{}: cannot read image: {err}", path.display())]
    Read {
        /// The image file.
        path: PathBuf,
        /// What the operating system said.
        err: std::io::Error,
    },
    /// The bytes are not a PNG or JPEG the decoder accepts.
    #[error("{}: cannot decode image: {message}", path.display())]
    Decode {
        /// The image file (or the name given to [`decode`]).
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The image could not be written.
    #[error("{}: cannot write image: {message}", path.display())]
    Write {
        /// The image file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An invalid option or argument (zero size, non-finite mean or std, ...).
    #[error("invalid image option: {0}")]
    Invalid(String),
}

/// A single-channel image with `f32` pixels, nominally in `[0, 1]`, stored row by row.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    width: usize,
    height: usize,
    data: Vec<f32>,
}

impl GrayImage {
    /// An image from its pixels, row by row; `data.len()` must be `width * height` and both
    /// sides at least 1.
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Result<Self, ImageError> {
        if width == 0 || height == 0 || data.len() != width * height {
            return Err(ImageError::Invalid(format!(
                "a {width}x{height} image needs {} pixels, got {}",
                width * height,
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A `size` x `size` image from exactly `size * size` pixels (callers guarantee it).
    pub(crate) fn from_square(size: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(data.len(), size * size);
        Self {
            width: size,
            height: size,
            data,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The pixels, row by row.
    pub fn pixels(&self) -> &[f32] {
        &self.data
    }

    /// The pixel at column `x`, row `y`.
    ///
    /// # Panics
    /// When `(x, y)` is outside the image.
    pub fn get(&self, x: usize, y: usize) -> f32 {
        assert!(x < self.width && y < self.height, "pixel out of range");
        self.data[y * self.width + x]
    }

    /// The pixels as 8-bit values (clamped to `[0, 1]`, then rounded).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
            .collect()
    }

    /// Writes the image as an 8-bit grayscale PNG, atomically (a temporary file in the same
    /// folder, then a rename).
    pub fn save_png(&self, path: impl AsRef<Path>) -> Result<(), ImageError> {
        let path = path.as_ref();
        let bytes = self.encode_png().map_err(|message| ImageError::Write {
            path: path.to_path_buf(),
            message,
        })?;
        crate::atomic::write_atomic(path, &bytes).map_err(|err| ImageError::Write {
            path: path.to_path_buf(),
            message: err.to_string(),
        })
    }

    /// The image as the bytes of an 8-bit grayscale PNG (fast compression).
    pub fn encode_png(&self) -> Result<Vec<u8>, String> {
        use image::ImageEncoder;
        let mut buf = Vec::with_capacity(self.data.len() / 2 + 1024);
        let enc = image::codecs::png::PngEncoder::new_with_quality(
            &mut buf,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Up,
        );
        enc.write_image(
            &self.to_u8(),
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::L8,
        )
        .map_err(|e| e.to_string())?;
        Ok(buf)
    }
}

/// Reads and decodes an image file; errors name the file.
pub fn load(path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|err| ImageError::Read {
        path: path.to_path_buf(),
        err,
    })?;
    decode(&bytes, path)
}

/// Decodes PNG (8 or 16 bit) or JPEG bytes, grayscale or colour, to a [`GrayImage`] in
/// `[0, 1]`. `name` is only used in error messages.
pub fn decode(bytes: &[u8], name: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
    let raw = decode_raw(bytes, name.as_ref())?;
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

/// Per-thread buffers of [`Preprocess::load_into`], kept between images.
#[derive(Default)]
struct Scratch {
    taps: TapsCache,
    file: Vec<u8>,
    pixels: Vec<u8>,
    tmp: Vec<f32>,
    resized: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Reads the file `path` into `buf` (replacing its contents, keeping its capacity).
fn read_into(path: &Path, buf: &mut Vec<u8>) -> Result<(), ImageError> {
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
/// nothing decoded, for anything else. Decodes with the system's libjpeg-turbo where the crate
/// was built with it (`cfg(umcl_libjpeg)`, see build.rs), else with zune-jpeg directly (the
/// decoder and options the `image` crate uses), in both cases at full size.
///
/// `region = [row0, row1, col0, col1]`: only those source rows and columns are needed; with
/// libjpeg the rest of `buf` is left as it was (zune-jpeg decodes everything).
pub(crate) fn decode_gray_jpeg(
    bytes: &[u8],
    name: &Path,
    region: Option<[usize; 4]>,
    buf: &mut Vec<u8>,
) -> Result<Option<(usize, usize)>, ImageError> {
    #[cfg(not(umcl_libjpeg))]
    let _ = region;
    if !bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(None);
    }
    let err = |message: String| ImageError::Decode {
        path: name.to_path_buf(),
        message,
    };
    #[cfg(umcl_libjpeg)]
    {
        match libjpeg::decode_gray(bytes, 1, region, buf) {
            // Should skipping or cropping fail where decoding everything works (a libjpeg
            // without them for some file), decode everything.
            Err(_) if region.is_some() => libjpeg::decode_gray(bytes, 1, None, buf),
            other => other,
        }
        .map_err(err)
    }
    #[cfg(not(umcl_libjpeg))]
    {
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
        dec.decode_headers().map_err(|e| err(e.to_string()))?;
        if dec.input_colorspace() != Some(ColorSpace::Luma) {
            return Ok(None);
        }
        let (width, height) = dec
            .dimensions()
            .ok_or_else(|| err("no image size after the headers".into()))?;
        let len = dec
            .output_buffer_size()
            .ok_or_else(|| err("image too large".into()))?;
        if width == 0 || height == 0 || len != width * height {
            return Err(err("image has no pixels".into()));
        }
        if buf.len() < len {
            buf.resize(len, 0);
        }
        dec.decode_into(&mut buf[..len])
            .map_err(|e| err(e.to_string()))?;
        Ok(Some((width, height)))
    }
}

/// Width and height from a JPEG's frame header (SOF marker), without decoding; `None` when
/// the markers do not lead to one with a nonzero size.
fn jpeg_size(b: &[u8]) -> Option<(usize, usize)> {
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

/// The source rows and columns, `[row0, row1, col0, col1]`, the resize of the part `win` of
/// its `n` x `n` output from the `w` x `h` image's `rect` reads; `None` for an empty window.
fn source_region(
    w: usize,
    h: usize,
    rect: Rect,
    n: usize,
    win: [usize; 4],
    cache: &mut TapsCache,
) -> Option<[usize; 4]> {
    let [x0, x1, y0, y1] = [win[0].min(n), win[1].min(n), win[2].min(n), win[3].min(n)];
    if x0 >= x1 || y0 >= y1 {
        return None;
    }
    let tx = cache.get(w, rect.x0, rect.w, n);
    let ty = cache.get(h, rect.y0, rect.h, n);
    let (c0, c1) = tx.span_of(x0..x1);
    let (r0, r1) = ty.span_of(y0..y1);
    Some([r0, r1.min(h), c0, c1.min(w)])
}

/// Whether the AVX2 code paths run: the CPU has AVX2 (and, in unit tests, they have not been
/// turned off to compare them with the scalar code, which computes the same values).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn use_avx2() -> bool {
    #[cfg(test)]
    if SCALAR_ONLY.with(|c| c.get()) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(test)]
thread_local! {
    /// Turns the AVX2 paths off on this thread (unit tests only).
    pub(crate) static SCALAR_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The libjpeg shim, `csrc/jpeg_gray.c`.
#[cfg(umcl_libjpeg)]
mod libjpeg {
    use std::ffi::{c_char, c_int, CStr};

    extern "C" {
        fn umcl_jpeg_gray(
            data: *const u8,
            len: usize,
            scale_denom: c_int,
            region: *const usize,
            out: *mut u8,
            cap: usize,
            width: *mut usize,
            height: *mut usize,
            msg: *mut c_char,
            msg_cap: usize,
        ) -> c_int;
    }

    /// Decodes a grayscale JPEG scaled by `1 / scale_denom` into `buf[..w * h]` (growing it
    /// when needed); `Ok(None)` when the JPEG is not grayscale.
    ///
    /// With `region = [row0, row1, col0, col1]`, only those rows and columns of `buf` are
    /// decoded (see the shim); the rest keeps what it held.
    pub(super) fn decode_gray(
        bytes: &[u8],
        scale_denom: c_int,
        region: Option<[usize; 4]>,
        buf: &mut Vec<u8>,
    ) -> Result<Option<(usize, usize)>, String> {
        let mut msg = [0 as c_char; 200];
        for _ in 0..2 {
            let (mut w, mut h) = (0usize, 0usize);
            // SAFETY: the shim reads `bytes` and writes at most `buf.len()` bytes of `buf`,
            // a message of at most `msg.len()` bytes (NUL included) and the two sizes.
            let status = unsafe {
                umcl_jpeg_gray(
                    bytes.as_ptr(),
                    bytes.len(),
                    scale_denom,
                    region.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut w,
                    &mut h,
                    msg.as_mut_ptr(),
                    msg.len(),
                )
            };
            match status {
                0 if w > 0 && h > 0 => return Ok(Some((w, h))),
                0 => return Err("image has no pixels".into()),
                2 => return Ok(None),
                3 => {
                    let len = w
                        .checked_mul(h)
                        .filter(|&n| n > 0)
                        .ok_or_else(|| "image has no pixels".to_string())?;
                    buf.resize(len, 0);
                }
                _ => {
                    // SAFETY: the shim always NUL-terminates the message it writes.
                    let text = unsafe { CStr::from_ptr(msg.as_ptr()) };
                    return Err(format!("libjpeg: {}", text.to_string_lossy()));
                }
            }
        }
        Err("internal: the decode buffer did not fit".into())
    }
}

/// Decodes to one channel, keeping 8- and 16-bit grayscale as they are.
pub(crate) fn decode_raw(bytes: &[u8], name: &Path) -> Result<RawImage, ImageError> {
    decode_raw_reusing(bytes, name, Vec::new())
}

/// [`decode_raw`], decoding a grayscale JPEG into `buf` (reusing its allocation) with
/// [`decode_gray_jpeg`]. Everything else goes through the `image` crate.
pub(crate) fn decode_raw_reusing(
    bytes: &[u8],
    name: &Path,
    mut buf: Vec<u8>,
) -> Result<RawImage, ImageError> {
    let err = |message: String| ImageError::Decode {
        path: name.to_path_buf(),
        message,
    };
    if let Some((width, height)) = decode_gray_jpeg(bytes, name, None, &mut buf)? {
        buf.truncate(width * height);
        return Ok(RawImage {
            width,
            height,
            pixels: RawPixels::U8(buf),
        });
    }
    let img = image::load_from_memory(bytes).map_err(|e| err(e.to_string()))?;
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

/// How a non-square image is made square before resizing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fit {
    /// Centre the image on a black square whose side is the longer side (keeps all of it).
    #[default]
    PadToSquare,
    /// Keep the centred square whose side is the shorter side.
    CenterCrop,
    /// Resize width and height independently (distorts the aspect ratio).
    Stretch,
}

impl std::str::FromStr for Fit {
    type Err = ImageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pad" => Ok(Self::PadToSquare),
            "crop" => Ok(Self::CenterCrop),
            "stretch" => Ok(Self::Stretch),
            other => Err(ImageError::Invalid(format!(
                "unknown fit `{other}` (expected pad, crop or stretch)"
            ))),
        }
    }
}

/// How an image becomes the encoder's input: a `size` x `size` square, normalised, with 1 or 3
/// channels.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocess {
    /// Side of the square output, in pixels.
    pub size: usize,
    /// How a non-square image is made square.
    pub fit: Fit,
    /// Per-channel mean subtracted after scaling to `[0, 1]`; a 1-channel output uses `mean[0]`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by; a 1-channel output uses `std[0]`.
    pub std: [f32; 3],
    /// 1 (grayscale) or 3 (the gray image replicated, for encoders that want RGB).
    pub channels: usize,
}

impl Default for Preprocess {
    /// 224 px, pad to square, ImageNet mean and std, 3 channels.
    fn default() -> Self {
        Self {
            size: 224,
            fit: Fit::PadToSquare,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
            channels: 3,
        }
    }
}

impl Preprocess {
    /// Checks the options: size at least 1, 1 or 3 channels, finite means, finite positive stds.
    pub fn validate(&self) -> Result<(), ImageError> {
        if self.size == 0 {
            return Err(ImageError::Invalid("image size must be at least 1".into()));
        }
        if self.channels != 1 && self.channels != 3 {
            return Err(ImageError::Invalid(format!(
                "channels must be 1 or 3, got {}",
                self.channels
            )));
        }
        for c in 0..self.channels {
            if !self.mean[c].is_finite() {
                return Err(ImageError::Invalid(format!(
                    "mean[{c}] is {}, expected a finite number",
                    self.mean[c]
                )));
            }
            if !(self.std[c].is_finite() && self.std[c] > 0.0) {
                return Err(ImageError::Invalid(format!(
                    "std[{c}] is {}, expected a finite number above 0",
                    self.std[c]
                )));
            }
        }
        Ok(())
    }

    /// The number of `f32` values [`Preprocess::process`] writes: `channels * size * size`.
    pub fn output_len(&self) -> usize {
        self.channels * self.size * self.size
    }

    /// Fits and resizes `img` to a `size` x `size` square in `[0, 1]` (not normalised).
    pub fn resize(&self, img: &GrayImage) -> GrayImage {
        resize_rect(
            img,
            self.fit_rect(img.width, img.height),
            self.size,
            self.size,
        )
    }

    /// Reads, decodes, fits and resizes an image file to a `size` x `size` square in
    /// `[0, 1]` (not normalised): what [`load`] then [`Preprocess::resize`] give, without the
    /// full-size float copy. Errors name the file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|err| ImageError::Read {
            path: path.to_path_buf(),
            err,
        })?;
        let raw = decode_raw(&bytes, path)?;
        Ok(raw.resample(self.fit_rect(raw.width, raw.height), self.size, self.size))
    }

    /// Reads, decodes and resizes an image file as [`Preprocess::load`] does, applies the
    /// augmentation `params` when given (as [`crate::augment::apply`] does) and writes the
    /// result normalised into `out` (`[C, H, W]`, [`Preprocess::output_len`] values); without
    /// `params`, what [`Preprocess::load`] then [`Preprocess::process`] give. The loader's
    /// path: it reuses per-thread buffers for the file, the decoded pixels and the resized
    /// image, so a steady stream of images allocates nothing. Errors name the file.
    pub fn load_into(
        &self,
        path: impl AsRef<Path>,
        params: Option<&AugmentParams>,
        out: &mut [f32],
    ) -> Result<(), ImageError> {
        let path = path.as_ref();
        self.check_out(out)?;
        if params.is_some() && self.size < 2 {
            return Err(ImageError::Invalid(format!(
                "augment expects a {0}x{0} image (n >= 2)",
                self.size
            )));
        }
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = &mut *guard;
            read_into(path, &mut scratch.file)?;
            let n = self.size;
            scratch.resized.resize(n * n, 0.0);
            // With augmentation only the crop's part of the resized image is read, and only
            // the source rows and columns its filter taps reach need decoding.
            let window = params.map(|p| crate::augment::read_window(p, n));
            let region = window.and_then(|win| {
                let (w, h) = jpeg_size(&scratch.file)?;
                let rect = self.fit_rect(w, h);
                source_region(w, h, rect, n, win, &mut scratch.taps)
            });
            // The resized image is kept transposed (column after column): see `resample_t`.
            if let Some((w, h)) =
                decode_gray_jpeg(&scratch.file, path, region, &mut scratch.pixels)?
            {
                let rect = self.fit_rect(w, h);
                resample_t(
                    &scratch.pixels[..w * h],
                    w,
                    h,
                    rect,
                    n,
                    n,
                    1.0 / 255.0,
                    &mut scratch.tmp,
                    &mut scratch.taps,
                    window,
                    &mut scratch.resized,
                );
            } else {
                let raw = decode_raw(&scratch.file, path)?;
                let rect = self.fit_rect(raw.width, raw.height);
                match &raw.pixels {
                    RawPixels::U8(v) => resample_t(
                        v,
                        raw.width,
                        raw.height,
                        rect,
                        n,
                        n,
                        1.0 / 255.0,
                        &mut scratch.tmp,
                        &mut scratch.taps,
                        window,
                        &mut scratch.resized,
                    ),
                    RawPixels::U16(v) => resample_t(
                        v,
                        raw.width,
                        raw.height,
                        rect,
                        n,
                        n,
                        1.0 / 65535.0,
                        &mut scratch.tmp,
                        &mut scratch.taps,
                        window,
                        &mut scratch.resized,
                    ),
                    RawPixels::F32(v) => resample_t(
                        v,
                        raw.width,
                        raw.height,
                        rect,
                        n,
                        n,
                        1.0,
                        &mut scratch.tmp,
                        &mut scratch.taps,
                        window,
                        &mut scratch.resized,
                    ),
                }
            }
            match params {
                Some(p) => crate::augment::apply_strided(&scratch.resized, n, true, p, self, out),
                None => {
                    transpose(&scratch.resized, n, n, &mut scratch.tmp);
                    self.normalise_into(&scratch.tmp[..n * n], out);
                    Ok(())
                }
            }
        })
    }

    /// The source rectangle that becomes the output square.
    fn fit_rect(&self, width: usize, height: usize) -> Rect {
        let (w, h) = (width as f64, height as f64);
        match self.fit {
            Fit::Stretch => Rect {
                x0: 0.0,
                y0: 0.0,
                w,
                h,
            },
            Fit::PadToSquare => {
                let s = w.max(h);
                Rect {
                    x0: ((w - s) / 2.0).floor(),
                    y0: ((h - s) / 2.0).floor(),
                    w: s,
                    h: s,
                }
            }
            Fit::CenterCrop => {
                let s = w.min(h);
                Rect {
                    x0: ((w - s) / 2.0).floor(),
                    y0: ((h - s) / 2.0).floor(),
                    w: s,
                    h: s,
                }
            }
        }
    }

    /// Resizes `img` (see [`Preprocess::resize`]) and writes it normalised into `out`,
    /// channel-major (`[C, H, W]`), without augmentation.
    ///
    /// Errors when the options are invalid or `out.len() != self.output_len()`.
    pub fn process(&self, img: &GrayImage, out: &mut [f32]) -> Result<(), ImageError> {
        self.check_out(out)?;
        let resized = self.resize(img);
        self.normalise_into(resized.pixels(), out);
        Ok(())
    }

    pub(crate) fn check_out(&self, out: &[f32]) -> Result<(), ImageError> {
        self.validate()?;
        if out.len() != self.output_len() {
            return Err(ImageError::Invalid(format!(
                "output buffer holds {} values, expected {}",
                out.len(),
                self.output_len()
            )));
        }
        Ok(())
    }

    /// Writes `(v - mean[c]) / std[c]` of the `size * size` pixels `px` into each channel of
    /// `out`.
    pub(crate) fn normalise_into(&self, px: &[f32], out: &mut [f32]) {
        let plane = self.size * self.size;
        for c in 0..self.channels {
            let inv = 1.0 / self.std[c];
            let shift = -self.mean[c] * inv;
            for (o, &v) in out[c * plane..(c + 1) * plane].iter_mut().zip(px) {
                *o = v * inv + shift;
            }
        }
    }
}

/// A rectangle in continuous source coordinates (pixel `i` covers `[i, i + 1)`); it may reach
/// outside the image, where pixels count as 0 (black padding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub w: f64,
    pub h: f64,
}

/// Filter taps of a 1-D resampling: output `i` reads `stride` source pixels from `start[i]`
/// with the weights `weights[i * stride..]` (unused taps weigh 0), so every output reads the
/// same number of pixels and the inner loops have a fixed length.
struct Taps {
    start: Vec<usize>,
    stride: usize,
    weights: Vec<f32>,
}

/// The last few [`Taps`] made, by their arguments: images of one size, fitted the same way,
/// reuse their filters.
#[derive(Default)]
pub(crate) struct TapsCache {
    entries: Vec<(TapsKey, std::rc::Rc<Taps>)>,
}

/// The arguments of [`taps`]: source size, start and extent (as bits), output size.
type TapsKey = (usize, u64, u64, usize);

impl TapsCache {
    /// `taps(n, x0, extent, out)`, made once.
    fn get(&mut self, n: usize, x0: f64, extent: f64, out: usize) -> std::rc::Rc<Taps> {
        let key = (n, x0.to_bits(), extent.to_bits(), out);
        if let Some((_, t)) = self.entries.iter().find(|(k, _)| *k == key) {
            return std::rc::Rc::clone(t);
        }
        let t = std::rc::Rc::new(taps(n, x0, extent, out));
        if self.entries.len() == 8 {
            self.entries.remove(0);
        }
        self.entries.push((key, std::rc::Rc::clone(&t)));
        t
    }
}

impl Taps {
    /// The source range `[lo, hi)` the outputs `outputs` read.
    fn span_of(&self, outputs: std::ops::Range<usize>) -> (usize, usize) {
        let starts = &self.start[outputs];
        let lo = starts.iter().copied().min().unwrap_or(0);
        let hi = starts.iter().map(|s| s + self.stride).max().unwrap_or(lo);
        (lo, hi)
    }
}

/// Triangle-filter taps mapping the source interval `[x0, x0 + extent)` onto `out` samples
/// over a source axis of `n` pixels. The support widens with the downscale factor (an
/// antialiased resize, like PIL's bilinear). The interval clips the filter; weights are
/// normalised over the clipped filter, then taps outside `[0, n)` are dropped: those pixels
/// are black padding and add nothing.
fn taps(n: usize, x0: f64, extent: f64, out: usize) -> Taps {
    let scale = extent / out as f64;
    let support = scale.max(1.0);
    let stride = ((2.0 * support).ceil() as usize + 2).min(n);
    let mut t = Taps {
        start: Vec::with_capacity(out),
        stride,
        weights: vec![0.0; out * stride],
    };
    let lo_rect = x0.floor();
    let hi_rect = (x0 + extent).ceil();
    let mut kept = Vec::with_capacity(stride + 2);
    for i in 0..out {
        let centre = x0 + (i as f64 + 0.5) * scale;
        let lo = (centre - support).floor().max(lo_rect) as i64;
        let hi = ((centre + support).ceil().min(hi_rect) as i64).max(lo);
        let mut total = 0.0;
        kept.clear();
        for j in lo..hi {
            let d = (j as f64 + 0.5 - centre) / support;
            let w = (1.0 - d.abs()).max(0.0);
            total += w;
            if j >= 0 && (j as usize) < n && w > 0.0 {
                kept.push((j as usize, w));
            }
        }
        let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
        let first = kept.first().map_or(0, |&(j, _)| j);
        let start = first.min(n - stride);
        t.start.push(start);
        for &(j, w) in &kept {
            t.weights[i * stride + (j - start)] = (w * inv) as f32;
        }
    }
    t
}

/// A source pixel type of the resize: 8-bit, 16-bit or float.
pub(crate) trait Pixel: Copy {
    fn to_f32(self) -> f32;
}

impl Pixel for u8 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Pixel for u16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Pixel for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

/// Resamples the part `rect` of a `w` x `h` image `src` to `out_w` x `out_h`, multiplying by
/// `gain` (1/255 for 8-bit pixels). Separable antialiased triangle filter; see `resample_t`.
pub(crate) fn resample<P: Pixel>(
    src: &[P],
    w: usize,
    h: usize,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    gain: f32,
) -> GrayImage {
    let mut tmp = Vec::new();
    let mut out_t = vec![0.0f32; out_w * out_h];
    let mut cache = TapsCache::default();
    resample_t(
        src, w, h, rect, out_w, out_h, gain, &mut tmp, &mut cache, None, &mut out_t,
    );
    let mut out = Vec::new();
    transpose(&out_t, out_w, out_h, &mut out);
    out.truncate(out_w * out_h);
    GrayImage {
        width: out_w,
        height: out_h,
        data: out,
    }
}

/// [`resample`], writing the result transposed: `out_t[x * out_h + y]` is output pixel
/// `(x, y)`. The output is made in strips of 8 rows, each staying in the L1 cache: the
/// vertical pass filters the source rows into the strip's 8 rows (whole rows
/// at a time, which vectorises), a transpose turns them into `cols` groups of 8, and the
/// horizontal pass filters those groups into the strip's part of every output column, 8 rows
/// at a time. `tmp` is scratch space. Each output is the same sum, in the same order, as a
/// direct separable filter computes (vertical taps in order with zero weights skipped, then
/// every horizontal tap in order). With `window = [x_lo, x_hi, y_lo, y_hi]` only those output
/// columns and rows are written (and only the source pixels they need are read).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resample_t<P: Pixel>(
    src: &[P],
    w: usize,
    h: usize,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    gain: f32,
    tmp: &mut Vec<f32>,
    cache: &mut TapsCache,
    window: Option<[usize; 4]>,
    out_t: &mut [f32],
) {
    let tx = cache.get(w, rect.x0, rect.w, out_w);
    let ty = cache.get(h, rect.y0, rect.h, out_h);
    let (tx, ty) = (&*tx, &*ty);
    let win = match window {
        Some([x0, x1, y0, y1]) => [x0.min(out_w), x1.min(out_w), y0.min(out_h), y1.min(out_h)],
        None => [0, out_w, 0, out_h],
    };
    if win[0] >= win[1] || win[2] >= win[3] {
        return;
    }
    let (col_lo, col_hi) = tx.span_of(win[0]..win[1]);
    let cols = col_hi - col_lo;
    if tmp.len() < 16 * cols {
        tmp.resize(16 * cols, 0.0);
    }
    let (vert, vert_t) = tmp.split_at_mut(8 * cols);
    let out_t = &mut out_t[..out_w * out_h];
    #[cfg(target_arch = "x86_64")]
    if crate::images::use_avx2() {
        // SAFETY: the CPU has AVX2.
        unsafe {
            strips_avx2(
                src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
            )
        };
        return;
    }
    strips_body::<P, false>(
        src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
    );
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn strips_avx2<P: Pixel>(
    src: &[P],
    w: usize,
    tx: &Taps,
    ty: &Taps,
    col_lo: usize,
    cols: usize,
    gain: f32,
    vert: &mut [f32],
    vert_t: &mut [f32],
    out_h: usize,
    win: [usize; 4],
    out_t: &mut [f32],
) {
    strips_body::<P, true>(
        src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
    );
}

/// Taps of the vertical pass added up at once; more go in several rounds.
const VTAPS: usize = 12;

/// `acc[c] (+)= sum_k w_k * row_k[c]`, the taps in order: onto `acc` when `accumulate`, else
/// from 0 (and all zeros for no taps). 16 columns at a time, the sums in registers.
#[inline(always)]
fn vertical_rows<P: Pixel>(rows: &[(&[P], f32)], accumulate: bool, acc: &mut [f32]) {
    let cols = acc.len();
    let c16 = cols / 16 * 16;
    let rows_ok = rows.iter().all(|(r, _)| r.len() == cols);
    assert!(rows_ok, "vertical pass rows have the output's length");
    for c0 in (0..c16).step_by(16) {
        let mut a = [0.0f32; 16];
        if accumulate {
            a.copy_from_slice(&acc[c0..c0 + 16]);
        }
        let mut it = rows.iter();
        if !accumulate {
            if let Some(&(row, wk)) = it.next() {
                let r: &[P; 16] = row[c0..c0 + 16]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                for t in 0..16 {
                    a[t] = wk * r[t].to_f32();
                }
            }
        }
        for &(row, wk) in it {
            let r: &[P; 16] = row[c0..c0 + 16]
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            for t in 0..16 {
                a[t] += wk * r[t].to_f32();
            }
        }
        acc[c0..c0 + 16].copy_from_slice(&a);
    }
    for c in c16..cols {
        let mut a = if accumulate { acc[c] } else { 0.0 };
        let mut it = rows.iter();
        if !accumulate {
            if let Some(&(row, wk)) = it.next() {
                a = wk * row[c].to_f32();
            }
        }
        for &(row, wk) in it {
            a += wk * row[c].to_f32();
        }
        acc[c] = a;
    }
}

/// Four output columns of the horizontal pass of [`strips_body`] (8 rows each): the same sums
/// in the same order, in AVX registers. `at[j]` is the first group of column `j`, `wt` its
/// `n` weights after those of the columns before; the results go to `out_t[o[j]..o[j] + 8]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal4_avx2(
    vert_t: &[f32],
    at: &[usize; 4],
    wt: &[f32],
    n: usize,
    o: &[usize; 4],
    out_t: &mut [f32],
) {
    use std::arch::x86_64::*;
    let vp = vert_t.as_ptr();
    let wp = wt.as_ptr();
    let mut a = [_mm256_setzero_ps(); 4];
    for k in 0..n {
        for j in 0..4 {
            let wk = _mm256_set1_ps(*wp.add(j * n + k));
            let v = _mm256_loadu_ps(vp.add(at[j] + k * 8));
            a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(wk, v));
        }
    }
    let op = out_t.as_mut_ptr();
    for j in 0..4 {
        _mm256_storeu_ps(op.add(o[j]), a[j]);
    }
}

/// The strips of [`resample_t`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn strips_body<P: Pixel, const AVX2: bool>(
    src: &[P],
    w: usize,
    tx: &Taps,
    ty: &Taps,
    col_lo: usize,
    cols: usize,
    gain: f32,
    vert: &mut [f32],
    vert_t: &mut [f32],
    out_h: usize,
    win: [usize; 4],
    out_t: &mut [f32],
) {
    let [x_lo, x_hi, y_lo, y_hi] = win;
    for r0 in (y_lo..y_hi).step_by(8) {
        let rb = (y_hi - r0).min(8);
        // Vertical: output rows r0..r0 + rb, each a weighted sum of source rows (the nonzero
        // taps, in order), 16 columns at a time with the sums held in registers.
        for (j, acc) in vert[..rb * cols].chunks_exact_mut(cols).enumerate() {
            let i = r0 + j;
            let mut rows: [(&[P], f32); VTAPS] = [(&[], 0.0); VTAPS];
            let mut nr = 0;
            let mut started = false;
            for k in 0..ty.stride {
                let wk = ty.weights[i * ty.stride + k] * gain;
                if wk == 0.0 {
                    continue;
                }
                if nr == VTAPS {
                    // More taps than fit (a downscale by more than about 5): add these up
                    // first, the rest onto them, in the same order.
                    vertical_rows(&rows, started, acc);
                    started = true;
                    nr = 0;
                }
                let at = (ty.start[i] + k) * w + col_lo;
                rows[nr] = (&src[at..at + cols], wk);
                nr += 1;
            }
            if nr > 0 || !started {
                vertical_rows(&rows[..nr], started, acc);
            }
        }
        // vert_t[c * 8 + j] = vert[j * cols + c] (rows beyond rb stay unused).
        if rb == 8 {
            transpose_into(&vert[..8 * cols], 8, cols, &mut vert_t[..8 * cols]);
        } else {
            for j in 0..rb {
                for c in 0..cols {
                    vert_t[c * 8 + j] = vert[j * cols + c];
                }
            }
        }
        // Horizontal: output columns x..x + 4 (independent sums, so they overlap in the
        // pipeline), rows r0..r0 + rb. Every tap is added, zero weights too, as the scalar
        // filter always did: adding 0 x (a finite value) changes nothing.
        let n = tx.stride;
        let mut x = x_lo;
        while x < x_hi {
            let q = (x_hi - x).min(4);
            let mut acc = [[0.0f32; 8]; 4];
            let mut at = [0usize; 4];
            for (a, &start) in at.iter_mut().zip(&tx.start[x..x + q]) {
                *a = (start - col_lo) * 8;
            }
            #[cfg(target_arch = "x86_64")]
            if AVX2 && q == 4 && rb == 8 {
                let wt = &tx.weights[x * n..(x + 4) * n];
                let o = [0, 1, 2, 3].map(|j| (x + j) * out_h + r0);
                assert!(at.iter().all(|&a| a + n * 8 <= vert_t.len()));
                assert!(o.iter().all(|&o| o + 8 <= out_t.len()));
                // SAFETY: AVX2 is only set by the caller that checked the CPU has it; the
                // reads and writes are in bounds (asserted above).
                unsafe { horizontal4_avx2(vert_t, &at, wt, n, &o, out_t) };
                x += 4;
                continue;
            }
            if q == 4 {
                let wt = &tx.weights[x * n..(x + 4) * n];
                for k in 0..n {
                    for j in 0..4 {
                        let wk = wt[j * n + k];
                        let group = &vert_t[at[j] + k * 8..at[j] + k * 8 + 8];
                        for (a, &v) in acc[j].iter_mut().zip(group) {
                            *a += wk * v;
                        }
                    }
                }
            } else {
                for j in 0..q {
                    for k in 0..n {
                        let wk = tx.weights[(x + j) * n + k];
                        let group = &vert_t[at[j] + k * 8..at[j] + k * 8 + 8];
                        for (a, &v) in acc[j].iter_mut().zip(group) {
                            *a += wk * v;
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate().take(q) {
                let o = (x + j) * out_h + r0;
                out_t[o..o + rb].copy_from_slice(&a[..rb]);
            }
            x += q;
        }
    }
}

/// `dst = src^T` for a `rows` x `cols` matrix `src` (row-major); `dst` is resized to fit.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    if dst.len() < rows * cols {
        dst.resize(rows * cols, 0.0);
    }
    transpose_into(&src[..rows * cols], rows, cols, &mut dst[..rows * cols]);
}

/// `dst[c * rows + r] = src[r * cols + c]`: 8 x 8 blocks in AVX registers where the CPU has
/// AVX, the edges (and everything elsewhere) one value at a time.
fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if crate::images::use_avx2() {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: the CPU has AVX; every block read and written lies inside the first
        // rows * cols values of src and dst (checked above).
        unsafe { transpose_blocks_avx(src, rows, cols, r8, c8, dst) };
    }
    for r in 0..rows {
        let from = if r < r8 { c8 } else { 0 };
        for c in from..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// The 8 x 8 blocks of [`transpose_into`] in rows `0..r8` and columns `0..c8` (multiples of
/// 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_blocks_avx(
    src: &[f32],
    rows: usize,
    cols: usize,
    r8: usize,
    c8: usize,
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for r0 in (0..r8).step_by(8) {
        for c0 in (0..c8).step_by(8) {
            let at = |k: usize| sp.add((r0 + k) * cols + c0);
            let (a0, a1, a2, a3) = (
                _mm256_loadu_ps(at(0)),
                _mm256_loadu_ps(at(1)),
                _mm256_loadu_ps(at(2)),
                _mm256_loadu_ps(at(3)),
            );
            let (a4, a5, a6, a7) = (
                _mm256_loadu_ps(at(4)),
                _mm256_loadu_ps(at(5)),
                _mm256_loadu_ps(at(6)),
                _mm256_loadu_ps(at(7)),
            );
            let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
            let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
            let (t4, t5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
            let (t6, t7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let to = |k: usize| dp.add((c0 + k) * rows + r0);
            _mm256_storeu_ps(to(0), _mm256_permute2f128_ps::<0x20>(s0, s4));
            _mm256_storeu_ps(to(1), _mm256_permute2f128_ps::<0x20>(s1, s5));
            _mm256_storeu_ps(to(2), _mm256_permute2f128_ps::<0x20>(s2, s6));
            _mm256_storeu_ps(to(3), _mm256_permute2f128_ps::<0x20>(s3, s7));
            _mm256_storeu_ps(to(4), _mm256_permute2f128_ps::<0x31>(s0, s4));
            _mm256_storeu_ps(to(5), _mm256_permute2f128_ps::<0x31>(s1, s5));
            _mm256_storeu_ps(to(6), _mm256_permute2f128_ps::<0x31>(s2, s6));
            _mm256_storeu_ps(to(7), _mm256_permute2f128_ps::<0x31>(s3, s7));
        }
    }
}

/// Resamples the part `rect` of `img` to `out_w` x `out_h`.
pub(crate) fn resize_rect(img: &GrayImage, rect: Rect, out_w: usize, out_h: usize) -> GrayImage {
    resample(&img.data, img.width, img.height, rect, out_w, out_h, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_inside_and_less_at_padding() {
        // Downscale 8 -> 4: each output covers 2 source pixels, support 2.
        let t = taps(8, 0.0, 8.0, 4);
        for i in 0..4 {
            let s: f32 = t.weights[i * t.stride..(i + 1) * t.stride].iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "row {i} sums to {s}");
            assert!(t.start[i] + t.stride <= 8);
        }
        // Pad 4 pixels to 8 (x0 = -2): output 0 has centre -1 and support 2; clipped to the
        // rect [-2, 6) it reads -2 and -1 (padding, triangle weights 0.75 and 0.75) and pixel
        // 0 (0.25): normalised, the real pixel weighs 0.25 / 1.75 = 1/7.
        let t = taps(4, -2.0, 8.0, 4);
        let s0: f32 = t.weights[..t.stride].iter().sum();
        assert!((s0 - 1.0 / 7.0).abs() < 1e-6, "first output weighs {s0}");
    }
}

#[cfg(test)]
mod resample_tests {
    use super::*;

    /// A seeded pseudo-random byte image.
    fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..w * h).map(|_| rng.next_u64() as u8).collect()
    }

    /// The separable filter written out directly: the vertical pass (zero weights skipped),
    /// then the horizontal one (every tap, from 0), each sum in tap order.
    fn direct<P: Pixel>(
        src: &[P],
        w: usize,
        h: usize,
        rect: Rect,
        out_w: usize,
        out_h: usize,
        gain: f32,
    ) -> Vec<f32> {
        let tx = taps(w, rect.x0, rect.w, out_w);
        let ty = taps(h, rect.y0, rect.h, out_h);
        let (col_lo, col_hi) = tx.span_of(0..out_w);
        let cols = col_hi - col_lo;
        let mut tmp = vec![0.0f32; out_h * cols];
        for i in 0..out_h {
            for k in 0..ty.stride {
                let wk = ty.weights[i * ty.stride + k] * gain;
                if wk == 0.0 {
                    continue;
                }
                for c in 0..cols {
                    tmp[i * cols + c] += wk * src[(ty.start[i] + k) * w + col_lo + c].to_f32();
                }
            }
        }
        let mut out = vec![0.0f32; out_w * out_h];
        for y in 0..out_h {
            for x in 0..out_w {
                let mut acc = 0.0f32;
                for k in 0..tx.stride {
                    acc += tmp[y * cols + tx.start[x] - col_lo + k] * tx.weights[x * tx.stride + k];
                }
                out[y * out_w + x] = acc;
            }
        }
        out
    }

    fn rect(x0: f64, y0: f64, w: f64, h: f64) -> Rect {
        Rect { x0, y0, w, h }
    }

    /// Downscales (by up to 22, more taps than one round of the vertical pass), upscales,
    /// padding and odd sizes: the strip kernel gives the direct filter's values exactly, with
    /// and without AVX2.
    #[test]
    fn strips_give_the_direct_filter_bit_for_bit() {
        let cases = [
            (37, 29, rect(0.0, 0.0, 37.0, 29.0), 13, 11),
            (20, 31, rect(-5.0, 0.0, 31.0, 31.0), 16, 16),
            (5, 7, rect(0.0, 0.0, 5.0, 7.0), 12, 9),
            (200, 150, rect(0.0, 0.0, 200.0, 150.0), 9, 7),
            (64, 48, rect(0.0, -8.0, 64.0, 64.0), 24, 24),
        ];
        for (i, &(w, h, r, ow, oh)) in cases.iter().enumerate() {
            let src = noise(w, h, i as u64);
            let want = direct(&src, w, h, r, ow, oh, 1.0 / 255.0);
            for scalar in [false, true] {
                SCALAR_ONLY.with(|c| c.set(scalar));
                let got = resample(&src, w, h, r, ow, oh, 1.0 / 255.0);
                SCALAR_ONLY.with(|c| c.set(false));
                assert_eq!(got.pixels(), &want[..], "case {i}, scalar only: {scalar}");
            }
            let f: Vec<f32> = src.iter().map(|&v| v as f32 / 255.0).collect();
            let got = resample(&f, w, h, r, ow, oh, 1.0);
            assert_eq!(
                got.pixels(),
                &direct(&f, w, h, r, ow, oh, 1.0)[..],
                "case {i}, f32"
            );
        }
    }

    /// A window computes just its part of the (transposed) output, with the same values.
    #[test]
    fn a_window_gives_the_same_values_inside_it() {
        let (w, h, n) = (53, 47, 21);
        let src = noise(w, h, 9);
        let r = rect(0.0, 0.0, w as f64, h as f64);
        let mut full = vec![0.0f32; n * n];
        let (mut tmp, mut cache) = (Vec::new(), TapsCache::default());
        resample_t(
            &src, w, h, r, n, n, 1.0, &mut tmp, &mut cache, None, &mut full,
        );
        let mut part = vec![-1.0f32; n * n];
        let win = [3, 17, 5, 14];
        resample_t(
            &src,
            w,
            h,
            r,
            n,
            n,
            1.0,
            &mut tmp,
            &mut cache,
            Some(win),
            &mut part,
        );
        for x in 0..n {
            for y in 0..n {
                let inside = (win[0]..win[1]).contains(&x) && (win[2]..win[3]).contains(&y);
                let (a, b) = (part[x * n + y], full[x * n + y]);
                assert_eq!(inside, a == b, "({x}, {y}): {a} vs {b}");
            }
        }
    }

    #[test]
    fn transpose_is_a_transpose() {
        for (rows, cols) in [(8, 16), (13, 21), (24, 9), (1, 5)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            for scalar in [false, true] {
                SCALAR_ONLY.with(|c| c.set(scalar));
                let mut dst = Vec::new();
                transpose(&src, rows, cols, &mut dst);
                SCALAR_ONLY.with(|c| c.set(false));
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(dst[c * rows + r], src[r * cols + c]);
                    }
                }
            }
        }
    }
}
