//! Contrastive losses for umcl, as pure functions of tensors (no model code).
//!
//! - [`clip_loss`]: CLIP's symmetric InfoNCE with the identity target.
//! - [`itl_loss`]: the Image-Text-Label loss, whose targets come from the labels of the batch
//!   (multi-positive or soft), with optional false-negative masking, an identity fallback for
//!   unlabelled samples, and a chunked form whose memory grows linearly with the batch.
//! - [`prompt_label_loss`]: the prompt-label term, binary cross-entropy between embeddings'
//!   cosine to the class prompts and the labels.
//!
//! Equations, options, defaults and when to choose each: `docs/losses.md`. Everything runs on
//! whatever device the tensors are on; half-precision inputs are computed in fp32, and autocast is
//! switched off inside the losses ([`FullPrecision`]), so their results do not depend on it.
#![warn(missing_docs)]

mod config;
mod error;
mod loss;
mod precision;
mod prompt_label;
mod targets;

pub use config::{ItlLossConfig, LabelSimilarity, Target, UncertainPolicy};
pub use error::LossError;
pub use loss::{clip_loss, itl_loss, itl_targets, LossDiagnostics, LossOutput, PairTargets};
pub use precision::FullPrecision;
pub use prompt_label::prompt_label_loss;
