//! What every image encoder returns, and the image-encoder choice of the dual encoder.

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::ModelError;
use crate::resnet::{ResNet, ResNetConfig};
use crate::vit::{Vit, VitConfig};

/// The output of an image encoder.
#[derive(Debug)]
pub struct ImageFeatures {
    /// One vector per image, `[batch, dim]` (ResNet: global average pool; ViT: the class token
    /// after the final norm).
    pub pooled: Tensor,
    /// Local features for region-level losses: ResNet `[batch, dim, h, w]` (the last stage's
    /// grid), ViT `[batch, patches, dim]` (the patch tokens after the final norm).
    pub local: Tensor,
}

/// Which image encoder to build (serialised with a `kind` tag: `{"kind": "resnet", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageEncoderConfig {
    /// A torchvision ResNet.
    Resnet(ResNetConfig),
    /// A timm Vision Transformer.
    Vit(VitConfig),
}

impl ImageEncoderConfig {
    /// A named preset: `resnet18`, `resnet50`, `vit-tiny`, `vit-small`, `vit-base`.
    pub fn preset(name: &str) -> Option<Self> {
        ResNetConfig::preset(name)
            .map(Self::Resnet)
            .or_else(|| VitConfig::preset(name).map(Self::Vit))
    }

    /// Width of the pooled feature.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::Resnet(c) => c.feature_dim(),
            Self::Vit(c) => c.embed_dim,
        }
    }
}

/// A built image encoder.
pub enum ImageEncoder {
    /// A ResNet.
    Resnet(ResNet),
    /// A ViT.
    Vit(Vit),
}

impl ImageEncoder {
    /// Builds the encoder under `p` (the var store's root gives the reference key names).
    pub fn new(p: &nn::Path, config: &ImageEncoderConfig) -> Result<Self, ModelError> {
        Ok(match config {
            ImageEncoderConfig::Resnet(c) => Self::Resnet(ResNet::new(p, c)?),
            ImageEncoderConfig::Vit(c) => Self::Vit(Vit::new(p, c)?),
        })
    }

    /// Encodes images `[batch, channels, height, width]`.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<ImageFeatures, ModelError> {
        match self {
            Self::Resnet(m) => m.forward_t(images, train),
            Self::Vit(m) => m.forward_t(images, train),
        }
    }
}
