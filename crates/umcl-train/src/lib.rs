//! Training and evaluation for umcl: the trainer, checkpoints and resume, and the
//! zero-shot, retrieval and linear-probe evaluations (see `docs/architecture.md`).

pub mod metrics;
pub mod plots;
