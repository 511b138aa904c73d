//! Contrastive losses for umcl, as pure functions of tensors (no model code).
//!
//! This crate will own the CLIP loss and the label-aware Image-Text-Label losses
//! (see `docs/losses.md` once they land).
