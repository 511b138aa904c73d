//! Images: decoding, resizing and normalisation for the image encoder.
//!
//! Every image becomes a [`GrayImage`], one `f32` channel in `[0, 1]`: 8- and 16-bit PNG and
//! JPEG, grayscale or RGB (RGB is reduced with the ITU-R 601 luma weights, as PIL's
//! `convert("L")` does), and DICOM ([`dicom`]: Modality and VOI LUTs, MONOCHROME1 inverted,
//! the policy of `docs/dicom.md`). [`Preprocess`] then fits it to a square (pad or centre crop), resizes
//! it with an antialiased triangle filter whose support widens with the downscale factor, and
//! writes it normalised, replicated to 3 channels when the encoder wants RGB.
//!
//! Grayscale JPEGs are decoded by the system's libjpeg-turbo when the crate is built with the
//! cargo feature `libjpeg`, else by zune-jpeg ([`JPEG_DECODER`] says which; the two differ by at
//! most one 8-bit level on under 1% of the pixels, see `tests/jpeg_decoders.rs`); everything
//! else by the `image` crate. [`Preprocess::load_into`] is the loader's path: read, decode,
//! resize, augment and normalise one file into a caller's buffer with per-thread scratch
//! buffers, decoding and resizing only the part of the image the augmentation's crop reads (the
//! result is the same as [`Preprocess::load`] then `augment::apply`). It is written in
//! `augment`, which depends on this module and not the other way round. The filters run 8
//! values at a time with AVX2 where the CPU has it, with the same results as the scalar code.
//!
//! Files: `decode` (bytes to pixels, the choice of JPEG decoder), `dicom` (DICOM files),
//! `libjpeg` (the C shim's FFI,
//! feature `libjpeg`), `preprocess` ([`Fit`], [`Preprocess`]), `resample` (the resize filter),
//! `simd` (the AVX/AVX2 kernels).
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

mod decode;
pub mod dicom;
#[cfg(feature = "libjpeg")]
mod libjpeg;
mod preprocess;
mod resample;
mod simd;

pub use self::decode::{decode, decode_with, load, JpegDecoder, JPEG_DECODER};
pub use self::preprocess::{Fit, Preprocess};

pub(crate) use self::resample::transpose;
#[cfg(target_arch = "x86_64")]
pub(crate) use self::simd::use_avx2;
#[cfg(test)]
pub(crate) use self::simd::SCALAR_ONLY;

use std::path::{Path, PathBuf};

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
    /// The bytes are not a PNG, JPEG or DICOM file the decoder accepts.
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
        // The error already names the path: keep only the cause, or the message says it twice.
        umcl_fs::write_atomic(path, &bytes).map_err(|e| ImageError::Write {
            path: path.to_path_buf(),
            message: e.err.to_string(),
        })
    }

    /// The image resized to `width` x `height` with the pipeline's antialiased triangle
    /// filter (no fitting: the aspect ratio is the caller's choice); an error for a zero
    /// side.
    ///
    /// ```
    /// use umcl_data::images::GrayImage;
    ///
    /// // A flat grey 4x2 image halved: 2x1, still flat grey (the filter's weights sum to 1).
    /// let img = GrayImage::new(4, 2, vec![0.5; 8])?;
    /// let half = img.resized(2, 1)?;
    /// assert_eq!((half.width(), half.height()), (2, 1));
    /// assert!(half.pixels().iter().all(|&v| (v - 0.5).abs() < 1e-6));
    /// assert!(img.resized(0, 1).is_err());
    /// # Ok::<(), umcl_data::images::ImageError>(())
    /// ```
    pub fn resized(&self, width: usize, height: usize) -> Result<GrayImage, ImageError> {
        if width == 0 || height == 0 {
            return Err(ImageError::Invalid(format!(
                "cannot resize to {width}x{height}"
            )));
        }
        let rect = resample::Rect {
            x0: 0.0,
            y0: 0.0,
            w: self.width as f64,
            h: self.height as f64,
        };
        Ok(resample::resize_rect(self, rect, width, height))
    }

    /// The pixels as 16-bit values (clamped to `[0, 1]`, then rounded).
    pub fn to_u16(&self) -> Vec<u16> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 65535.0 + 0.5) as u16)
            .collect()
    }

    /// The image as the bytes of a 16-bit grayscale PNG (fast compression), for data whose
    /// 8-bit rounding would lose levels (a decoded 12-bit radiograph).
    pub fn encode_png16(&self) -> Result<Vec<u8>, String> {
        use image::ImageEncoder;
        let mut buf = Vec::with_capacity(self.data.len() + 1024);
        let enc = image::codecs::png::PngEncoder::new_with_quality(
            &mut buf,
            image::codecs::png::CompressionType::Fast,
            image::codecs::png::FilterType::Up,
        );
        // `write_image` takes native-endian samples and swaps them into PNG's big-endian.
        let bytes: Vec<u8> = self.to_u16().iter().flat_map(|v| v.to_ne_bytes()).collect();
        enc.write_image(
            &bytes,
            self.width as u32,
            self.height as u32,
            image::ExtendedColorType::L16,
        )
        .map_err(|e| e.to_string())?;
        Ok(buf)
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
