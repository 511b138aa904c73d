//! The error type of the training crate.

use std::path::PathBuf;

/// What can stop training or evaluation.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid (names the key).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// Building, loading or running the model failed.
    #[error(transparent)]
    Model(#[from] umcl_models::ModelError),
    /// Reading data failed.
    #[error(transparent)]
    Data(#[from] umcl_data::error::DataError),
    /// The data loader failed (names the sample).
    #[error(transparent)]
    Loader(#[from] umcl_data::loader::LoaderError),
    /// Tokenization failed.
    #[error(transparent)]
    Tokenize(#[from] umcl_data::tokenize::TokenizeError),
    /// The labeler's rules (`data.labeler_rules`) cannot be read or are invalid.
    #[error("data.labeler_rules: {0}")]
    Labeler(#[from] umcl_data::labeler::LabelerError),
    /// The loss rejected its inputs.
    #[error(transparent)]
    Loss(#[from] umcl_losses::LossError),
    /// The backend could not start.
    #[error(transparent)]
    Backend(#[from] umcl_torch_ext::runtime::BackendError),
    /// The run cannot be set up from its configuration and data (too few samples for a
    /// batch, an unknown encoder, a CUDA device that is not there).
    #[error("set-up: {0}")]
    Setup(String),
    /// A metric could not be computed.
    #[error("evaluation: {0}")]
    Eval(String),
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The run directory is in use by another run.
    #[error(transparent)]
    Locked(#[from] umcl_fs::LockError),
    /// A checkpoint is missing, incomplete or does not match the run.
    #[error("checkpoint {}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The loss became NaN or infinite. The state before that step is saved when its weights
    /// are sound (finite, no larger than 1e12); otherwise the newest earlier checkpoint is the
    /// one to go back to.
    #[error("{}", non_finite_message(*step, *value, saved.as_deref(), newest.as_deref()))]
    NonFinite {
        /// The step whose loss was not finite.
        step: u64,
        /// The value (NaN or inf).
        value: f64,
        /// The checkpoint of the state before that step, when it was sound and saved.
        saved: Option<PathBuf>,
        /// The newest checkpoint of the run (`saved` when there is one).
        newest: Option<PathBuf>,
    },
    /// The run was asked to stop ([`crate::trainer::request_stop`], Ctrl-C) and did, after
    /// `step`, with its state saved (rank 0).
    #[error(
        "interrupted after step {step}{}",
        saved.as_ref().map_or(String::new(), |p| format!(
            "; the state is saved in {}: continue with --resume latest",
            p.display()
        ))
    )]
    Interrupted {
        /// Steps completed.
        step: u64,
        /// The checkpoint written on the way out (rank 0).
        saved: Option<PathBuf>,
    },
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Tch(tch::TchError),
    /// A libtorch function reached through umcl-torch-ext's bridge failed (the fused AdamW
    /// update, for example).
    #[error(transparent)]
    Ext(#[from] umcl_torch_ext::ExtError),
    /// Distributed setup or communication failed (a bad launch environment, a rank that
    /// stopped answering, a timeout).
    #[error("distributed: {0}")]
    Dist(umcl_torch_ext::dist::DistError),
}

// By hand rather than `#[from]`: the message already holds the cause, which an error-chain
// printer would otherwise repeat.
impl From<umcl_torch_ext::dist::DistError> for TrainError {
    fn from(e: umcl_torch_ext::dist::DistError) -> Self {
        TrainError::Dist(e)
    }
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, err: impl std::fmt::Display) -> Self {
        TrainError::Io {
            path: path.into(),
            message: err.to_string(),
        }
    }
}

impl From<umcl_fs::Error> for TrainError {
    fn from(e: umcl_fs::Error) -> Self {
        TrainError::io(&e.path, e.err)
    }
}

fn non_finite_message(
    step: u64,
    value: f64,
    saved: Option<&std::path::Path>,
    newest: Option<&std::path::Path>,
) -> String {
    let head = format!("the loss became {value} at step {step}");
    match (saved, newest) {
        (Some(saved), _) => format!(
            "{head}; the state before that step is sound and saved in {}",
            saved.display()
        ),
        (None, Some(newest)) => format!(
            "{head}; the weights before that step are NaN, infinite or above 1e12 and were not \
             saved; the newest checkpoint is {} (lower optim.lr, then resume from it)",
            newest.display()
        ),
        (None, None) => format!(
            "{head}; the weights before that step are NaN, infinite or above 1e12 and were not \
             saved, and the run has no earlier checkpoint (lower optim.lr and start again)"
        ),
    }
}

// By hand, not `#[from]`: the message already holds the libtorch error, and a cause chain
// (`{:#}`) would print it twice.
impl From<tch::TchError> for TrainError {
    fn from(e: tch::TchError) -> Self {
        TrainError::Tch(e)
    }
}
