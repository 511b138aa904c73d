//! Images: decoding, resizing and normalisation for the image encoder.
//!
//! Every image becomes a [`GrayImage`], one `f32` channel in `[0, 1]`: 8- and 16-bit PNG and
//! JPEG, grayscale or RGB (RGB is reduced with the ITU-R 601 luma weights, as PIL's
//! `convert("L")` does). [`Preprocess`] then fits it to a square (pad or centre crop), resizes
//! it with an antialiased triangle filter whose support widens with the downscale factor, and
//! writes it normalised, replicated to 3 channels when the encoder wants RGB.
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

use std::io::Write;
use std::path::{Path, PathBuf};

use image::DynamicImage;

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
        write_atomic(path, &bytes).map_err(|err| ImageError::Write {
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

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so a
/// reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
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

/// Decodes to one channel, keeping 8- and 16-bit grayscale as they are.
pub(crate) fn decode_raw(bytes: &[u8], name: &Path) -> Result<RawImage, ImageError> {
    let err = |message: String| ImageError::Decode {
        path: name.to_path_buf(),
        message,
    };
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

impl Taps {
    /// The source range `[lo, hi)` any output reads.
    fn span(&self) -> (usize, usize) {
        let lo = self.start.iter().copied().min().unwrap_or(0);
        let hi = self
            .start
            .iter()
            .map(|s| s + self.stride)
            .max()
            .unwrap_or(lo);
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
/// `gain` (1/255 for 8-bit pixels). Separable antialiased triangle filter: the vertical pass
/// first (it runs along whole rows and vectorises), then the horizontal one on the fewer
/// output rows.
pub(crate) fn resample<P: Pixel>(
    src: &[P],
    w: usize,
    h: usize,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    gain: f32,
) -> GrayImage {
    let tx = taps(w, rect.x0, rect.w, out_w);
    let ty = taps(h, rect.y0, rect.h, out_h);
    let (col_lo, col_hi) = tx.span();
    let cols = col_hi - col_lo;
    let mut tmp = vec![0.0f32; out_h * cols];
    for (i, acc) in tmp.chunks_exact_mut(cols).enumerate() {
        let start = ty.start[i];
        for k in 0..ty.stride {
            let wk = ty.weights[i * ty.stride + k] * gain;
            if wk == 0.0 {
                continue;
            }
            let row = &src[(start + k) * w + col_lo..(start + k) * w + col_hi];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += wk * v.to_f32();
            }
        }
    }
    let mut out = vec![0.0f32; out_w * out_h];
    match tx.stride {
        1 => hpass::<1>(&tmp, cols, col_lo, &tx, &mut out),
        2 => hpass::<2>(&tmp, cols, col_lo, &tx, &mut out),
        3 => hpass::<3>(&tmp, cols, col_lo, &tx, &mut out),
        4 => hpass::<4>(&tmp, cols, col_lo, &tx, &mut out),
        5 => hpass::<5>(&tmp, cols, col_lo, &tx, &mut out),
        6 => hpass::<6>(&tmp, cols, col_lo, &tx, &mut out),
        7 => hpass::<7>(&tmp, cols, col_lo, &tx, &mut out),
        8 => hpass::<8>(&tmp, cols, col_lo, &tx, &mut out),
        _ => hpass_any(&tmp, cols, col_lo, &tx, &mut out),
    }
    GrayImage {
        width: out_w,
        height: out_h,
        data: out,
    }
}

/// The horizontal pass with a tap count known at compile time.
fn hpass<const N: usize>(tmp: &[f32], cols: usize, col_lo: usize, tx: &Taps, out: &mut [f32]) {
    let out_w = tx.start.len();
    for (row, dst) in tmp.chunks_exact(cols).zip(out.chunks_exact_mut(out_w)) {
        for ((d, &s), wt) in dst
            .iter_mut()
            .zip(&tx.start)
            .zip(tx.weights.chunks_exact(N))
        {
            let (Ok(px), Ok(wt)) = (
                <&[f32; N]>::try_from(&row[s - col_lo..s - col_lo + N]),
                <&[f32; N]>::try_from(wt),
            ) else {
                continue; // unreachable: both slices have length N
            };
            let mut acc = 0.0;
            for k in 0..N {
                acc += px[k] * wt[k];
            }
            *d = acc;
        }
    }
}

/// The horizontal pass for any tap count.
fn hpass_any(tmp: &[f32], cols: usize, col_lo: usize, tx: &Taps, out: &mut [f32]) {
    let out_w = tx.start.len();
    let n = tx.stride;
    for (row, dst) in tmp.chunks_exact(cols).zip(out.chunks_exact_mut(out_w)) {
        for (i, d) in dst.iter_mut().enumerate() {
            let s = tx.start[i] - col_lo;
            *d = row[s..s + n]
                .iter()
                .zip(&tx.weights[i * n..(i + 1) * n])
                .map(|(a, b)| a * b)
                .sum();
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
