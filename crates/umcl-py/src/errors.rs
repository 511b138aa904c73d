//! `umcl-data` errors as Python exceptions: a missing file is `FileNotFoundError`, an invalid
//! option `ValueError`, and bad data (a malformed row, a corrupt image, a bad rule file) a
//! `umcl.DataError`, a `ValueError` too. The message is the Rust error's, so it names the file
//! and the line or sample.

use std::io::ErrorKind;

use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::PyErr;
use umcl_data::error::DataError as RustDataError;
use umcl_data::images::ImageError;
use umcl_data::labeler::LabelerError;
use umcl_data::loader::LoaderError;
use umcl_data::tokenize::TokenizeError;

pyo3::create_exception!(
    umcl,
    DataError,
    PyValueError,
    "Bad input data: a malformed row, a missing column, a corrupt image, invalid rules. The \
     message names the file and the line or sample."
);

/// An I/O error on a named file: `FileNotFoundError` when it is missing, else `OSError`.
fn io(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::NotFound => PyFileNotFoundError::new_err(message),
        _ => PyOSError::new_err(message),
    }
}

/// Turns an error of `umcl-data` into the Python exception that fits it.
pub(crate) trait Raise<T> {
    /// The value, or the error as a Python exception.
    fn or_raise(self) -> Result<T, PyErr>;
}

impl<T> Raise<T> for Result<T, RustDataError> {
    fn or_raise(self) -> Result<T, PyErr> {
        self.map_err(|e| match &e {
            RustDataError::Io { err, .. } => io(err.kind(), e.to_string()),
            RustDataError::Invalid(_) => PyValueError::new_err(e.to_string()),
            RustDataError::At { .. } | RustDataError::File { .. } => {
                DataError::new_err(e.to_string())
            }
        })
    }
}

fn image(e: &ImageError, message: String) -> PyErr {
    match e {
        ImageError::Read { err, .. } => io(err.kind(), message),
        ImageError::Invalid(_) => PyValueError::new_err(message),
        ImageError::Decode { .. } | ImageError::Write { .. } => DataError::new_err(message),
    }
}

impl<T> Raise<T> for Result<T, ImageError> {
    fn or_raise(self) -> Result<T, PyErr> {
        self.map_err(|e| image(&e, e.to_string()))
    }
}

impl<T> Raise<T> for Result<T, LabelerError> {
    fn or_raise(self) -> Result<T, PyErr> {
        self.map_err(|e| match &e {
            LabelerError::Io { error, .. } => io(error.kind(), e.to_string()),
            _ => DataError::new_err(e.to_string()),
        })
    }
}

impl<T> Raise<T> for Result<T, TokenizeError> {
    fn or_raise(self) -> Result<T, PyErr> {
        self.map_err(|e| match &e {
            TokenizeError::MaxLen(_) => PyValueError::new_err(e.to_string()),
            _ => DataError::new_err(e.to_string()),
        })
    }
}

impl<T> Raise<T> for Result<T, LoaderError> {
    fn or_raise(self) -> Result<T, PyErr> {
        self.map_err(|e| match &e {
            LoaderError::Image { error, .. } => image(error, e.to_string()),
            LoaderError::Invalid(_) => PyValueError::new_err(e.to_string()),
            LoaderError::Tokenize { .. } => DataError::new_err(e.to_string()),
        })
    }
}
