//! The error type of the data crate: every message names the file, and the line where there
//! is one.

use std::io;
use std::path::{Path, PathBuf};

/// An error while reading or writing data files.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Reading or writing a file failed.
    #[error("{}: {err}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        err: io::Error,
    },
    /// Something is wrong at one line of a file (1-based line numbers).
    #[error("{}:{line}: {message}", path.display())]
    At {
        /// The file.
        path: PathBuf,
        /// The line, 1-based (for CSV: the line where the record starts).
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// Something is wrong with a file as a whole (a missing column, a bad schema).
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Invalid options or arguments, not tied to a file.
    #[error("{0}")]
    Invalid(String),
}

impl From<umcl_fs::Error> for DataError {
    fn from(e: umcl_fs::Error) -> Self {
        Self::Io {
            path: e.path,
            err: e.err,
        }
    }
}

impl DataError {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<Path>, err: io::Error) -> Self {
        Self::Io {
            path: path.as_ref().to_path_buf(),
            err,
        }
    }

    /// An error at `path:line`.
    pub fn at(path: impl AsRef<Path>, line: u64, message: impl Into<String>) -> Self {
        Self::At {
            path: path.as_ref().to_path_buf(),
            line,
            message: message.into(),
        }
    }

    /// An error about the file `path` as a whole.
    pub fn file(path: impl AsRef<Path>, message: impl Into<String>) -> Self {
        Self::File {
            path: path.as_ref().to_path_buf(),
            message: message.into(),
        }
    }
}

/// The result type of this crate's fallible functions.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
