//! `umcl.Loader`: a manifest's samples as batches of numpy arrays, built ahead on a thread
//! pool, for a PyTorch loop (`torch.from_numpy` takes each array without a copy).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use numpy::{IntoPyArray, PyArray1};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use umcl_data::augment::Augment;
use umcl_data::loader::{self, LoaderConfig};
use umcl_data::manifest::Manifest;
use umcl_data::sample::Sample;
use umcl_data::schema::Schema;
use umcl_data::synth;
use umcl_data::tokenize::{Padding, Tokenizer};

use crate::errors::Raise;
use crate::images::preprocess;
use crate::tables::Table;

/// Batches of a manifest's samples, as dicts of numpy arrays:
///
/// - `images`: float32 `[B, C, H, W]`, normalised (zeros where `has_image` is False);
/// - `input_ids`, `attention_mask`: int64 `[B, L]` (L = 0 without a `tokenizer`);
/// - `labels`: int8 `[B, K]`, 1 positive, 0 negative, -1 uncertain, -2 not mentioned;
/// - `ids`: the sample ids; `has_image`, `has_text`: bool `[B]`; `indices`: int64 `[B]`,
///   positions in the manifest.
///
/// Each epoch is shuffled by `(seed, epoch)` and each sample's augmentation drawn from
/// `(seed, epoch, sample)`, so the batches do not depend on `threads` or timing and match
/// what `umcl train` sees. `iter(loader)` runs the next epoch (0, 1, ...); `loader.epoch(n)`
/// runs epoch `n`. With `skip_bad=True` a sample whose image fails is left out, counted in
/// `Epoch.stats` and reported by a warning at the end of the epoch; otherwise the epoch raises
/// an error naming the sample and file.
///
/// `manifest` is a manifest path or a `umcl.Table`; `ids` keeps only those samples (for
/// example `umcl.split(...).train`).
#[pyclass(module = "umcl", frozen)]
pub struct Loader {
    inner: Arc<loader::Loader>,
    next_epoch: AtomicU64,
}

#[pymethods]
impl Loader {
    #[new]
    #[pyo3(signature = (
        manifest, *, ids=None, batch_size=32, threads=2, prefetch=4, seed=0, shuffle=true,
        drop_last=false, skip_bad=false, size=224, fit="pad", mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225), channels=3, augment=false, tokenizer=None, max_len=128,
        padding="longest", synthesize=false, schema=None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        manifest: &Bound<'_, PyAny>,
        ids: Option<Vec<String>>,
        batch_size: usize,
        threads: usize,
        prefetch: usize,
        seed: u64,
        shuffle: bool,
        drop_last: bool,
        skip_bad: bool,
        size: usize,
        fit: &str,
        mean: (f32, f32, f32),
        std: (f32, f32, f32),
        channels: usize,
        augment: bool,
        tokenizer: Option<PathBuf>,
        max_len: usize,
        padding: &str,
        synthesize: bool,
        schema: Option<String>,
    ) -> PyResult<Self> {
        let (mut samples, schema_name): (Vec<Sample>, String) =
            if let Ok(table) = manifest.cast::<Table>() {
                let t = table.get();
                (t.samples.clone(), t.schema.clone())
            } else if let Ok(path) = manifest.extract::<PathBuf>() {
                let m = py.detach(|| Manifest::read(&path)).or_raise()?;
                (m.samples, m.header.schema)
            } else {
                return Err(PyTypeError::new_err(
                    "manifest must be a path or a umcl.Table",
                ));
            };
        if let Some(ids) = ids {
            let at: HashMap<&str, usize> = samples
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.as_str(), i))
                .collect();
            let picked = ids
                .iter()
                .map(|id| {
                    at.get(id.as_str()).copied().ok_or_else(|| {
                        PyValueError::new_err(format!("ids: no sample `{id}` in the manifest"))
                    })
                })
                .collect::<PyResult<Vec<usize>>>()?;
            samples = picked.into_iter().map(|i| samples[i].clone()).collect();
        }
        let padding = match padding {
            "longest" => Padding::Longest,
            "max_len" => Padding::MaxLen,
            other => {
                return Err(PyValueError::new_err(format!(
                    "padding={other:?}: expected \"longest\" or \"max_len\""
                )))
            }
        };
        let tokenizer = match tokenizer {
            Some(path) => Some(Arc::new(Tokenizer::from_file(&path, max_len).or_raise()?)),
            None => None,
        };
        let synthesize = if synthesize {
            let schema = Schema::resolve(schema.as_deref().unwrap_or(&schema_name)).or_raise()?;
            Some(Arc::new(synth::Synthesizer::builtin(&schema).or_raise()?))
        } else {
            None
        };
        let cfg = LoaderConfig {
            batch_size,
            threads,
            prefetch,
            seed,
            shuffle,
            drop_last,
            skip_bad,
            preprocess: preprocess(size, fit, mean, std, channels)?,
            augment: augment.then(Augment::default),
            padding,
            synthesize,
        };
        let inner = loader::Loader::new(samples, tokenizer, cfg).or_raise()?;
        Ok(Self {
            inner: Arc::new(inner),
            next_epoch: AtomicU64::new(0),
        })
    }

    /// Batches per epoch (before any skip).
    fn __len__(&self) -> usize {
        self.inner.batches_per_epoch()
    }

    /// The number of samples.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples().len()
    }

    /// Runs epoch `epoch`.
    fn epoch(&self, epoch: u64) -> Epoch {
        Epoch::start(&self.inner, epoch)
    }

    /// The epoch `iter(loader)` runs next; `iter` then moves it on by one.
    fn set_epoch(&self, epoch: u64) {
        self.next_epoch.store(epoch, Ordering::SeqCst);
    }

    fn __iter__(&self) -> Epoch {
        let epoch = self.next_epoch.fetch_add(1, Ordering::SeqCst);
        Epoch::start(&self.inner, epoch)
    }

    fn __repr__(&self) -> String {
        format!(
            "Loader({} samples, {} batches per epoch)",
            self.inner.samples().len(),
            self.inner.batches_per_epoch()
        )
    }
}

/// One epoch of a `umcl.Loader`: an iterator of batch dicts. `stats` tells what it did so
/// far: batches, samples, seconds the consumer waited, skipped samples.
#[pyclass(module = "umcl", frozen)]
pub struct Epoch {
    inner: Mutex<loader::Epoch>,
    /// Which epoch this is.
    #[pyo3(get)]
    number: u64,
}

impl Epoch {
    fn start(loader: &loader::Loader, number: u64) -> Self {
        Self {
            inner: Mutex::new(loader.epoch(number)),
            number,
        }
    }

    fn lock(&self) -> PyResult<std::sync::MutexGuard<'_, loader::Epoch>> {
        self.inner
            .lock()
            .map_err(|_| PyValueError::new_err("the epoch failed in another thread"))
    }
}

#[pymethods]
impl Epoch {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        // The lock is taken with the GIL released: a second thread on the same epoch waits
        // for the first without holding the GIL the first needs to finish.
        let next = py.detach(|| self.lock().map(|mut e| e.next()))?;
        match next {
            Some(batch) => batch_dict(py, batch.or_raise()?).map(Some),
            None => {
                self.warn_skipped(py)?;
                Ok(None)
            }
        }
    }

    /// `{"batches", "samples", "waited_s", "skipped": [(id, reason), ...]}` so far.
    #[getter]
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let epoch = self.lock()?;
        let s = epoch.stats();
        let d = PyDict::new(py);
        d.set_item("batches", s.batches)?;
        d.set_item("samples", s.samples)?;
        d.set_item("waited_s", s.waited.as_secs_f64())?;
        let skipped: Vec<(&str, &str)> = s
            .skipped
            .iter()
            .map(|k| (k.id.as_str(), k.reason.as_str()))
            .collect();
        d.set_item("skipped", skipped)?;
        Ok(d)
    }
}

impl Epoch {
    /// A `UserWarning` at the end of an epoch that skipped samples, so that no skip goes
    /// unreported.
    fn warn_skipped(&self, py: Python<'_>) -> PyResult<()> {
        let message = {
            let epoch = self.lock()?;
            let skipped = &epoch.stats().skipped;
            match skipped.first() {
                None => return Ok(()),
                Some(first) => format!(
                    "umcl.Loader: epoch {} skipped {} samples whose image failed (skip_bad=True; \
                     Epoch.stats['skipped'] lists them); the first: `{}`: {}",
                    self.number,
                    skipped.len(),
                    first.id,
                    first.reason
                ),
            }
        };
        let category = py.get_type::<pyo3::exceptions::PyUserWarning>();
        PyErr::warn(py, &category, &std::ffi::CString::new(message)?, 1)
    }
}

/// A batch as a dict of numpy arrays that own the batch's buffers (no copy).
fn batch_dict(py: Python<'_>, mut batch: loader::Batch) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("images", std::mem::take(&mut batch.images).into_pyarray(py))?;
    d.set_item(
        "input_ids",
        std::mem::take(&mut batch.input_ids).into_pyarray(py),
    )?;
    d.set_item(
        "attention_mask",
        std::mem::take(&mut batch.attention_mask).into_pyarray(py),
    )?;
    d.set_item("labels", std::mem::take(&mut batch.labels).into_pyarray(py))?;
    d.set_item("ids", std::mem::take(&mut batch.ids))?;
    d.set_item(
        "has_image",
        PyArray1::from_vec(py, std::mem::take(&mut batch.has_image)),
    )?;
    d.set_item(
        "has_text",
        PyArray1::from_vec(py, std::mem::take(&mut batch.has_text)),
    )?;
    let indices: Vec<i64> = batch.indices.iter().map(|&i| i as i64).collect();
    d.set_item("indices", PyArray1::from_vec(py, indices))?;
    Ok(d)
}
