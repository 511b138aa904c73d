//! Preprocessing: fitting an image to the encoder's square ([`Fit`]), resizing and
//! normalising it ([`Preprocess`]), and the per-thread buffers of the loader's path.

use std::path::Path;

use super::decode::{
    decode_gray_jpeg, decode_raw, jpeg_size, read_file, read_into, JpegDecoder, RawPixels,
};
use super::resample::{resample_t, resize_rect, Rect, TapsCache};
use super::{GrayImage, ImageError};

/// Per-thread buffers of [`Preprocess::with_resized_t`] (the loader's path), kept between
/// images.
#[derive(Default)]
struct Scratch {
    taps: TapsCache,
    file: Vec<u8>,
    pixels: Vec<u8>,
    tmp: Vec<f32>,
    resized: Vec<f32>,
    /// A decoded DICOM image, full size.
    dicom: Vec<f32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
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
    /// `[0, 1]` (not normalised): what [`load`](super::load) then [`Preprocess::resize`]
    /// give, without the full-size float copy. Errors name the file.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<GrayImage, ImageError> {
        let path = path.as_ref();
        let raw = decode_raw(&read_file(path)?, path, JpegDecoder::DEFAULT)?;
        Ok(raw.resample(self.fit_rect(raw.width, raw.height), self.size, self.size))
    }

    /// Reads, decodes and resizes an image file as [`Preprocess::load`] does, into this
    /// thread's reused buffers, and calls `f` with the `size` x `size` result stored column
    /// after column (`resized[x * size + y]` is pixel `(x, y)`) and a spare buffer. With
    /// `window = [x_lo, x_hi, y_lo, y_hi]` only those output columns and rows are computed
    /// (the rest hold whatever an earlier image left), and only the source pixels they need
    /// are decoded where the decoder can skip. The body of [`Preprocess::load_into`], which
    /// lives in `crate::augment` because it applies the augmentation. Errors name the file.
    pub(crate) fn with_resized_t<R>(
        &self,
        path: &Path,
        window: Option<[usize; 4]>,
        f: impl FnOnce(&[f32], &mut Vec<f32>) -> Result<R, ImageError>,
    ) -> Result<R, ImageError> {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let scratch = &mut *guard;
            read_into(path, &mut scratch.file)?;
            let n = self.size;
            scratch.resized.resize(n * n, 0.0);
            // Only the source rows and columns the window's filter taps reach need decoding.
            let region = window.and_then(|win| {
                let (w, h) = jpeg_size(&scratch.file)?;
                let rect = self.fit_rect(w, h);
                source_region(w, h, rect, n, win, &mut scratch.taps)
            });
            // The resized image is kept transposed (column after column): see `resample_t`.
            if let Some((w, h)) = decode_gray_jpeg(
                &scratch.file,
                path,
                JpegDecoder::DEFAULT,
                region,
                &mut scratch.pixels,
            )? {
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
            } else if super::dicom::is_dicom(&scratch.file, path) {
                // Decoded into a reused buffer: a radiograph is 20 MB of floats, and a fresh
                // allocation per image costs more in page faults than the decoding.
                let (w, h, _) = super::dicom::decode_into(&scratch.file, path, &mut scratch.dicom)
                    .map_err(|message| ImageError::Decode {
                        path: path.to_path_buf(),
                        message,
                    })?;
                let rect = self.fit_rect(w, h);
                resample_t(
                    &scratch.dicom[..w * h],
                    w,
                    h,
                    rect,
                    n,
                    n,
                    1.0,
                    &mut scratch.tmp,
                    &mut scratch.taps,
                    window,
                    &mut scratch.resized,
                );
            } else {
                let raw = decode_raw(&scratch.file, path, JpegDecoder::DEFAULT)?;
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
            f(&scratch.resized, &mut scratch.tmp)
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
