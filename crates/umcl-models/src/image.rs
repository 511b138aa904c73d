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
    /// The encoder a name stands for; the one grammar of image-encoder names:
    ///
    /// - a preset: `resnet18`, `resnet34`, `resnet50`, `vit-tiny`, `vit-small`, `vit-base`;
    /// - `resnet18-w<N>`: ResNet-18 with stem width `N >= 4`;
    /// - `vit<size>-p<patch>-w<width>-d<depth>`: a small ViT with heads of 32 channels
    ///   (`patch` divides `size`, `width` a multiple of 32), e.g. `vit32-p8-w32-d1` for tests
    ///   whose result must not depend on how a batch is split.
    ///
    /// ```
    /// use umcl_models::image::ImageEncoderConfig;
    /// assert_eq!(ImageEncoderConfig::preset("resnet18-w16").unwrap().feature_dim(), 128);
    /// assert_eq!(ImageEncoderConfig::preset("vit32-p8-w64-d2").unwrap().feature_dim(), 64);
    /// assert!(ImageEncoderConfig::preset("resnet18-w2").is_none());
    /// assert!(ImageEncoderConfig::preset("vit30-p8-w32-d1").is_none());
    /// ```
    pub fn preset(name: &str) -> Option<Self> {
        if let Some(width) = name.strip_prefix("resnet18-w") {
            let width: i64 = width.parse().ok().filter(|w| *w >= 4)?;
            return Some(Self::Resnet(ResNetConfig {
                width,
                ..ResNetConfig::resnet18()
            }));
        }
        if let Some(vit) = small_vit(name) {
            return Some(Self::Vit(vit));
        }
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

/// `vit<size>-p<patch>-w<width>-d<depth>`.
fn small_vit(name: &str) -> Option<VitConfig> {
    let rest = name.strip_prefix("vit")?;
    let (size, rest) = rest.split_once("-p")?;
    let (patch, rest) = rest.split_once("-w")?;
    let (width, depth) = rest.split_once("-d")?;
    let [size, patch, width, depth] =
        [size, patch, width, depth].map(|v| v.parse::<i64>().ok().filter(|v| *v >= 1));
    let (size, patch, width, depth) = (size?, patch?, width?, depth?);
    if size % patch != 0 || width % 32 != 0 {
        return None;
    }
    let mut vit = VitConfig::tiny();
    vit.image_size = size;
    vit.patch_size = patch;
    vit.embed_dim = width;
    vit.num_heads = width / 32;
    vit.depth = depth as usize;
    Some(vit)
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
