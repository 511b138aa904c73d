//! `umcl.Pipeline`: an image file to the encoder's normalised input, as the loader makes it.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray3, PyArray4};
use pyo3::prelude::*;
use rayon::prelude::*;
use umcl_data::images::{Fit, Preprocess};

use crate::errors::Raise;
use crate::labels::pool;

/// The `Preprocess` that Python's keyword arguments describe, checked.
pub(crate) fn preprocess(
    size: usize,
    fit: &str,
    mean: (f32, f32, f32),
    std: (f32, f32, f32),
    channels: usize,
) -> PyResult<Preprocess> {
    let fit = fit.parse::<Fit>().or_raise()?;
    let pre = Preprocess {
        size,
        fit,
        mean: [mean.0, mean.1, mean.2],
        std: [std.0, std.1, std.2],
        channels,
    };
    pre.validate().or_raise()?;
    Ok(pre)
}

/// Image files (PNG, JPEG; 8 or 16 bit; grayscale or colour, read as grayscale) to float32
/// arrays `[channels, size, size]`: fitted to a square (`fit`: "pad", "crop" or "stretch"),
/// resized with antialiasing, scaled to [0, 1] and normalised by `mean` and `std`.
///
/// The values are bit for bit those `umcl.Loader` (and `umcl train`) put in a batch without
/// augmentation. `load_batch` loads many files on `threads` threads with the GIL released.
#[pyclass(module = "umcl", frozen)]
pub struct Pipeline {
    pre: Preprocess,
    pool: rayon::ThreadPool,
}

#[pymethods]
impl Pipeline {
    #[new]
    #[pyo3(signature = (
        size=224, fit="pad", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        channels=3, threads=None
    ))]
    fn new(
        size: usize,
        fit: &str,
        mean: (f32, f32, f32),
        std: (f32, f32, f32),
        channels: usize,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        Ok(Self {
            pre: preprocess(size, fit, mean, std, channels)?,
            pool: pool(threads, "pipeline")?,
        })
    }

    /// One image file as float32 `[channels, size, size]`. A missing file raises
    /// `FileNotFoundError`, a corrupt one `umcl.DataError`, each naming the file.
    fn load<'py>(&self, py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyArray3<f32>>> {
        let n = self.pre.size;
        let mut out = vec![0.0; self.pre.output_len()];
        py.detach(|| self.pre.load_into(&path, None, &mut out))
            .or_raise()?;
        let array = ndarray::Array3::from_shape_vec((self.pre.channels, n, n), out)
            .expect("output_len is channels * size * size");
        Ok(array.into_pyarray(py))
    }

    /// Many image files as float32 `[n, channels, size, size]`, loaded in parallel. The
    /// first file that fails raises, naming it.
    fn load_batch<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
    ) -> PyResult<Bound<'py, PyArray4<f32>>> {
        let (c, n) = (self.pre.channels, self.pre.size);
        let len = self.pre.output_len();
        let mut out = vec![0.0; paths.len() * len];
        py.detach(|| {
            self.pool.install(|| {
                out.par_chunks_mut(len.max(1))
                    .zip(&paths)
                    .try_for_each(|(slot, path)| self.pre.load_into(path, None, slot))
            })
        })
        .or_raise()?;
        let array = ndarray::Array4::from_shape_vec((paths.len(), c, n, n), out)
            .expect("one output per path");
        Ok(array.into_pyarray(py))
    }

    /// The output side in pixels.
    #[getter]
    fn size(&self) -> usize {
        self.pre.size
    }

    /// 1 or 3.
    #[getter]
    fn channels(&self) -> usize {
        self.pre.channels
    }

    fn __repr__(&self) -> String {
        format!(
            "Pipeline(size={}, fit={:?}, channels={})",
            self.pre.size, self.pre.fit, self.pre.channels
        )
    }
}
