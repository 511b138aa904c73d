//! `umcl._umcl`: the extension module behind the Python package `umcl` (python/umcl).
//!
//! It wraps `umcl-data` only, so importing it next to PyTorch never loads a second libtorch.
//! Each Python class lives in the module named for its concept: `labels` (the report labeler
//! and label-to-text synthesis), `tables` (dataset adapters, manifests, patient splits),
//! `images` (the image pipeline) and `batches` (the loader). Every error of `umcl-data`
//! becomes a Python exception here (`errors`); nothing panics across the boundary.
//!
//! Work that takes long (labeling a batch, loading images, waiting for a batch) runs with the
//! GIL released, so other Python threads keep running.

mod batches;
mod errors;
mod images;
mod labels;
mod tables;

use pyo3::prelude::*;

/// The module `umcl._umcl`; `umcl/__init__.py` re-exports what users call.
#[pymodule]
fn _umcl(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("DataError", py.get_type::<errors::DataError>())?;
    m.add(
        "UNMENTIONED",
        umcl_data::schema::LabelState::Unmentioned.code(),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<labels::Labeler>()?;
    m.add_class::<labels::Synthesizer>()?;
    m.add_class::<tables::Table>()?;
    m.add_class::<tables::Split>()?;
    m.add_function(wrap_pyfunction!(tables::prepare, m)?)?;
    m.add_function(wrap_pyfunction!(tables::read_manifest, m)?)?;
    m.add_function(wrap_pyfunction!(tables::split, m)?)?;
    m.add_class::<images::Pipeline>()?;
    m.add_class::<batches::Loader>()?;
    m.add_class::<batches::Epoch>()?;
    Ok(())
}
