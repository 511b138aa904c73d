//! The error type of the model crate.

use std::path::PathBuf;

/// What can go wrong while building, loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file at fault.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A JSON config file could not be parsed.
    #[error("{path}: invalid model config: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// serde's message (with line and column).
        message: String,
    },
    /// A config value is out of range or inconsistent.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),
    /// A weight file did not match the model and partial loading was not allowed.
    #[error("{path}: weights do not match the model ({summary})")]
    Import {
        /// The weight file.
        path: PathBuf,
        /// Counts and the first offending keys of each kind.
        summary: String,
    },
    /// An input tensor has the wrong shape or dtype.
    #[error("bad input: {0}")]
    Input(String),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Tch(tch::TchError),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        ModelError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

// By hand, not `#[from]`: the message already holds the libtorch error, and a cause chain
// (`{:#}`) would print it twice.
impl From<tch::TchError> for ModelError {
    fn from(e: tch::TchError) -> Self {
        ModelError::Tch(e)
    }
}
