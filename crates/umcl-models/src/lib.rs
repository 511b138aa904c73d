//! Encoders for umcl on tch: image encoders (ResNet, ViT), the BERT text encoder, continuous
//! prompts, the dual encoder and weight import, plus [`backend`], the libtorch start-up every
//! tch-using crate and binary goes through.

pub mod backend;
