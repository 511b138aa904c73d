//! Encoders for umcl on tch: image encoders ([`resnet`], [`vit`], [`efficientnet`]), the [`bert`] text encoder,
//! continuous prompts ([`prompt`]), the dual encoder ([`dual`]) and weight [`import`]. The
//! libtorch start-up (device, threads, autocast) is umcl-torch-ext's `runtime`.
//!
//! Every encoder names its variables as its reference checkpoint does (torchvision, timm,
//! Hugging Face), so published safetensors files load through [`import`] with at most a small
//! key map; `docs/models.md` lists the configs, the key names and the measured parity with
//! PyTorch.
#![warn(missing_docs)]

pub mod bert;
pub mod dual;
pub mod efficientnet;
pub mod error;
pub mod image;
pub mod import;
pub mod prompt;
pub mod pth;
pub mod resnet;
pub mod text;
pub mod vit;

pub use error::ModelError;
