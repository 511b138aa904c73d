//! What every image encoder returns, and the image-encoder choice of the dual encoder.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::efficientnet::{lukemelas_keys, EfficientNet, EfficientNetConfig};
use crate::error::ModelError;
use crate::import::{import_scoped, read_weights, strip_prefixes, ImportReport, KeyAction};
use crate::resnet::{torchvision_keys, ResNet, ResNetConfig};
use crate::vit::{hf_vit_to_timm, timm_keys, Vit, VitConfig};

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

/// An error unless `images` is `[batch, in_channels, height, width]` (the convolutional
/// encoders' input check).
pub(crate) fn check_images(images: &Tensor, in_channels: i64) -> Result<(), ModelError> {
    let dims = images.size();
    if dims.len() != 4 || dims[1] != in_channels {
        return Err(ModelError::Input(format!(
            "images must be [batch, {in_channels}, height, width], got {dims:?}"
        )));
    }
    Ok(())
}

/// Which image encoder to build (serialised with a `kind` tag: `{"kind": "resnet", ...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ImageEncoderConfig {
    /// A torchvision ResNet.
    Resnet(ResNetConfig),
    /// A timm Vision Transformer.
    Vit(VitConfig),
    /// An EfficientNet-Lite (TensorFlow's Lite variants, lukemelas-style key names).
    Efficientnet(EfficientNetConfig),
}

impl ImageEncoderConfig {
    /// The encoder a name stands for; the one grammar of image-encoder names:
    ///
    /// - a preset: `resnet18`, `resnet34`, `resnet50`, `vit-tiny`, `vit-small`, `vit-base`,
    ///   `efficientnet-lite0`;
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
            .or_else(|| EfficientNetConfig::preset(name).map(Self::Efficientnet))
    }

    /// Width of the pooled feature.
    pub fn feature_dim(&self) -> i64 {
        match self {
            Self::Resnet(c) => c.feature_dim(),
            Self::Vit(c) => c.embed_dim,
            Self::Efficientnet(c) => c.feature_dim(),
        }
    }

    /// The per-channel mean and standard deviation that inputs scaled to `[0, 1]` are
    /// normalised with, as the encoder's pretrained weights expect: ImageNet's for ResNet and
    /// ViT (torchvision, timm), TensorFlow's `(x * 255 - 127) / 128` for EfficientNet-Lite.
    ///
    /// ```
    /// use umcl_models::image::ImageEncoderConfig;
    /// let (mean, std) = ImageEncoderConfig::preset("efficientnet-lite0").unwrap().normalization();
    /// assert_eq!((mean[0] * 255.0, std[0] * 255.0), (127.0, 128.0));
    /// ```
    pub fn normalization(&self) -> ([f32; 3], [f32; 3]) {
        match self {
            Self::Resnet(_) | Self::Vit(_) => ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
            Self::Efficientnet(_) => ([127.0 / 255.0; 3], [128.0 / 255.0; 3]),
        }
    }

    /// Imports a weight file (safetensors or PyTorch checkpoint) into this encoder's variables,
    /// those of `vs` under `scope` (`"image."` in a dual encoder, `""` alone), with the key
    /// names of the encoder's reference: torchvision (ResNet), timm or Hugging Face (ViT,
    /// converted with [`hf_vit_to_timm`]), lukemelas (EfficientNet-Lite). The classifier head
    /// is the only thing left out on purpose; any other missing, unexpected or mismatched key is
    /// an error that names it.
    ///
    /// ```
    /// use umcl_models::image::{ImageEncoder, ImageEncoderConfig};
    /// let config = ImageEncoderConfig::preset("resnet18-w4").unwrap();
    /// let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    /// let _encoder = ImageEncoder::new(&vs.root(), &config).unwrap();
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("w.safetensors");
    /// vs.save(&path).unwrap();
    /// let report = config.import_weights(&vs, "", &path).unwrap();
    /// assert!(report.is_complete());
    /// ```
    pub fn import_weights(
        &self,
        vs: &nn::VarStore,
        scope: &str,
        path: &Path,
    ) -> Result<ImportReport, ModelError> {
        let mut tensors = read_weights(path)?;
        let mut dropped = Vec::new();
        let map: fn(&str) -> KeyAction = match self {
            Self::Resnet(_) => torchvision_keys,
            Self::Efficientnet(_) => lukemelas_keys,
            Self::Vit(_) => {
                let hf = tensors.iter().any(|(k, _)| {
                    let k = strip_prefixes(k, &["module."]);
                    k.starts_with("vit.") || k.starts_with("embeddings.")
                });
                if hf {
                    (tensors, dropped) = hf_vit_to_timm(tensors)?;
                }
                timm_keys
            }
        };
        let mut report = import_scoped(vs, scope, tensors, path, &map, false)?;
        report.ignored.extend(dropped);
        report.ignored.sort();
        Ok(report)
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
    /// An EfficientNet-Lite (boxed: its blocks make it much larger than the other variants).
    Efficientnet(Box<EfficientNet>),
}

impl ImageEncoder {
    /// Builds the encoder under `p` (the var store's root gives the reference key names).
    pub fn new(p: &nn::Path, config: &ImageEncoderConfig) -> Result<Self, ModelError> {
        Ok(match config {
            ImageEncoderConfig::Resnet(c) => Self::Resnet(ResNet::new(p, c)?),
            ImageEncoderConfig::Vit(c) => Self::Vit(Vit::new(p, c)?),
            ImageEncoderConfig::Efficientnet(c) => {
                Self::Efficientnet(Box::new(EfficientNet::new(p, c)?))
            }
        })
    }

    /// Encodes images `[batch, channels, height, width]`.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<ImageFeatures, ModelError> {
        match self {
            Self::Resnet(m) => m.forward_t(images, train),
            Self::Vit(m) => m.forward_t(images, train),
            Self::Efficientnet(m) => m.forward_t(images, train),
        }
    }
}
