//! Training and evaluation for umcl: the trainer, checkpoints and resume, and the
//! zero-shot, retrieval and linear-probe evaluations (see `docs/architecture.md`).
//!
//! - [`config`]: the TOML run configuration, presets, `--set` overrides and validation.
//! - [`trainer`]: the loop ([`trainer::train`]); [`step`]: one step's forward and backward
//!   passes (losses, gradient accumulation, autocast).
//! - [`optim`]: AdamW over owned tensors and the warm-up + cosine schedule.
//! - [`checkpoint`]: atomic checkpoints and exact resume.
//! - [`distributed`]: data-parallel training over several processes (c10d, Gloo).
//! - [`embed`], [`evaluate`]: embeddings of sample sets, zero-shot, retrieval, linear probe;
//!   [`meta_task`]: zero-shot tasks whose truth is a metadata field.
//! - [`metrics`], [`plots`], [`report`]: scores, PNG plots, the run's summary.
#![warn(missing_docs)]

pub mod checkpoint;
pub mod config;
pub mod distributed;
pub mod embed;
pub mod error;
pub mod evaluate;
pub mod meta_task;
pub mod optim;
pub mod report;
mod run_log;
mod setup;
pub mod step;
pub mod trainer;

pub use error::TrainError;

pub mod metrics;
pub mod plots;
