//! Safe file writes for umcl: the one way its crates write a file that others read
//! (manifests, label files, splits, images, configs, reports, model weights).
//!
//! - [`atomic`]: [`AtomicFile`] and [`write_atomic`] write under a temporary name beside the
//!   target, sync, and rename over it, so a reader sees the old file or the whole new one.
//!   [`write_atomic_with`] does the same for writers that want a path (libtorch's savers),
//!   and [`temp_path`] names the temporary file. [`remove_stale_temps`] clears what writers
//!   killed mid-write left.
//! - [`lock`]: [`DirLock`], one process at a time in a directory (a run directory).
//!
//! Errors ([`Error`]) name the file.
#![warn(missing_docs)]

pub mod atomic;
pub mod lock;

use std::io;
use std::path::{Path, PathBuf};

pub use atomic::{
    remove_stale_temps, temp_owner, temp_path, write_atomic, write_atomic_with, write_or_remove,
    AtomicFile,
};
pub use lock::{DirLock, LockError};

/// A file operation on `path` failed.
#[derive(Debug, thiserror::Error)]
#[error("{}: {err}", path.display())]
pub struct Error {
    /// The file.
    pub path: PathBuf,
    /// What the operating system said.
    pub err: io::Error,
}

impl Error {
    /// An error on `path`.
    pub fn new(path: impl AsRef<Path>, err: io::Error) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            err,
        }
    }
}

/// The result of this crate's operations.
pub type Result<T> = std::result::Result<T, Error>;
