//! Data unification for umcl, with no dependency on libtorch.
//!
//! Image-report pairs, image-label sets and labelled reports become one training set of
//! (image, text, labels). This crate owns the label schema ([`schema`]); the sample model,
//! source adapters, labels-to-text synthesis, the report labeler, the image pipeline and
//! tokenization live here too as they land (see `docs/architecture.md`). Other projects can
//! depend on it without libtorch.

pub mod augment;
pub mod error;
pub mod images;
pub mod labeler;
pub mod loader;
pub mod manifest;
pub mod phantom;
pub mod rng;
pub mod sample;
pub mod schema;
pub mod sources;
pub mod split;
pub mod synth;
pub mod tokenize;
pub mod unify;

/// The most worker threads a pool of this crate starts (the loader's `threads`, the phantom
/// writer's): far above any machine's cores, far below a count whose spawning would hang
/// the machine (`--threads 100000`).
pub const MAX_THREADS: usize = 1024;
