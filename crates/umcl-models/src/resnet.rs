//! ResNet, an image encoder.
//!
//! Paper: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016
//! (arXiv 1512.03385). Reference implementation: torchvision 0.26.0,
//! `torchvision/models/resnet.py` (the "v1.5" bottleneck, stride on the 3x3 convolution).
//!
//! Variable names are torchvision's state-dict keys (`conv1.weight`, `bn1.running_mean`,
//! `layer2.0.downsample.0.weight`, ...), so `torchvision.models.resnet50().state_dict()` saved
//! as safetensors loads with [`torchvision_keys`]. The classifier (`fc.*`) is not part of the
//! encoder and its keys are ignored. torchvision's BatchNorm also stores `num_batches_tracked`;
//! it only matters when BatchNorm has no momentum (cumulative averaging), which torchvision's
//! ResNets never use, so it is ignored on import and not kept.
//!
//! ```text
//! image ─► conv 7x7/2 ─► BN ─► ReLU ─► maxpool 3x3/2
//!       ─► layer1 ─► layer2 (/2) ─► layer3 (/2) ─► layer4 (/2) = grid ─► avgpool = pooled
//! basic block:      x ─► conv3x3 ─► BN ─► ReLU ─► conv3x3 ─► BN ─► + shortcut(x) ─► ReLU
//! bottleneck block: x ─► conv1x1 ─► BN ─► ReLU ─► conv3x3 ─► BN ─► ReLU ─► conv1x1 (x4) ─► BN
//!                     ─► + shortcut(x) ─► ReLU
//! ```

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::ModelError;
use crate::image::{check_images, ImageFeatures};
use crate::import::{strip_prefixes, KeyAction};

/// The residual block type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Block {
    /// Two 3x3 convolutions (ResNet-18/34).
    Basic,
    /// 1x1, 3x3, 1x1 with 4x expansion (ResNet-50/101/152).
    Bottleneck,
}

impl Block {
    fn expansion(self) -> i64 {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

/// ResNet hyper-parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage.
    pub layers: [usize; 4],
    /// Channels of the stem and of the first stage (64 in every torchvision ResNet; the
    /// stages have `width`, 2x, 4x, 8x, times the block expansion at their output).
    #[serde(default = "default_width")]
    pub width: i64,
    /// Input channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: i64,
}

fn default_width() -> i64 {
    64
}

fn default_in_channels() -> i64 {
    3
}

impl ResNetConfig {
    /// ResNet-18: basic blocks [2, 2, 2, 2], 512-d feature.
    pub fn resnet18() -> Self {
        Self {
            block: Block::Basic,
            layers: [2, 2, 2, 2],
            width: 64,
            in_channels: 3,
        }
    }

    /// ResNet-34: basic blocks [3, 4, 6, 3], 512-d feature.
    pub fn resnet34() -> Self {
        Self {
            layers: [3, 4, 6, 3],
            ..Self::resnet18()
        }
    }

    /// ResNet-50: bottleneck blocks [3, 4, 6, 3], 2048-d feature.
    pub fn resnet50() -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            width: 64,
            in_channels: 3,
        }
    }

    /// A named preset: `resnet18`, `resnet34`, `resnet50`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "resnet18" => Some(Self::resnet18()),
            "resnet34" => Some(Self::resnet34()),
            "resnet50" => Some(Self::resnet50()),
            _ => None,
        }
    }

    /// Width of the pooled feature: `8 * width * expansion`.
    pub fn feature_dim(&self) -> i64 {
        8 * self.width * self.block.expansion()
    }
}

/// The key map for torchvision ResNet files: strips `module.`, ignores the classifier (`fc.`)
/// and BatchNorm's `num_batches_tracked` counters.
pub fn torchvision_keys(key: &str) -> KeyAction {
    let key = strip_prefixes(key, &["module."]);
    if key.starts_with("fc.") || key.ends_with("num_batches_tracked") {
        KeyAction::Ignore
    } else {
        KeyAction::Load(key.to_string())
    }
}

fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> nn::Conv2D {
    let config = nn::ConvConfig {
        stride,
        padding,
        bias: false,
        ..Default::default()
    };
    nn::conv2d(p, c_in, c_out, k, config)
}

fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}

/// `downsample`: a strided 1x1 convolution and BatchNorm when the shape changes.
struct Shortcut {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

struct ResBlock {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    shortcut: Option<Shortcut>,
}

impl ResBlock {
    fn new(p: &nn::Path, block: Block, c_in: i64, planes: i64, stride: i64) -> Self {
        let c_out = planes * block.expansion();
        let convs = match block {
            Block::Basic => vec![
                (
                    conv(p / "conv1", c_in, planes, 3, stride, 1),
                    bn(p / "bn1", planes),
                ),
                (
                    conv(p / "conv2", planes, planes, 3, 1, 1),
                    bn(p / "bn2", planes),
                ),
            ],
            Block::Bottleneck => vec![
                (
                    conv(p / "conv1", c_in, planes, 1, 1, 0),
                    bn(p / "bn1", planes),
                ),
                (
                    conv(p / "conv2", planes, planes, 3, stride, 1),
                    bn(p / "bn2", planes),
                ),
                (
                    conv(p / "conv3", planes, c_out, 1, 1, 0),
                    bn(p / "bn3", c_out),
                ),
            ],
        };
        let shortcut = (stride != 1 || c_in != c_out).then(|| {
            let d = p / "downsample";
            Shortcut {
                conv: conv(&d / 0, c_in, c_out, 1, stride, 0),
                bn: bn(&d / 1, c_out),
            }
        });
        Self { convs, shortcut }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            ys = ys.apply(c).apply_t(b, train);
            if i != last {
                ys = ys.relu();
            }
        }
        let skip = match &self.shortcut {
            Some(s) => xs.apply(&s.conv).apply_t(&s.bn, train),
            None => xs.shallow_clone(),
        };
        (ys + skip).relu()
    }
}

/// A ResNet without its classifier.
pub struct ResNet {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    stages: Vec<Vec<ResBlock>>,
    config: ResNetConfig,
}

impl ResNet {
    /// Builds the encoder under `p` (use the var store's root for torchvision key names).
    pub fn new(p: &nn::Path, config: &ResNetConfig) -> Result<Self, ModelError> {
        if config.width <= 0 || config.in_channels <= 0 || config.layers.contains(&0) {
            return Err(ModelError::InvalidConfig(format!(
                "ResNet needs positive width, channels and blocks per stage, got {config:?}"
            )));
        }
        let w = config.width;
        let mut c_in = w;
        let mut stages = Vec::with_capacity(4);
        for (s, &blocks) in config.layers.iter().enumerate() {
            let planes = w << s;
            let stage = p / format!("layer{}", s + 1);
            let mut v = Vec::with_capacity(blocks);
            for b in 0..blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                v.push(ResBlock::new(
                    &(&stage / b),
                    config.block,
                    c_in,
                    planes,
                    stride,
                ));
                c_in = planes * config.block.expansion();
            }
            stages.push(v);
        }
        Ok(Self {
            conv1: conv(p / "conv1", config.in_channels, w, 7, 2, 3),
            bn1: bn(p / "bn1", w),
            stages,
            config: config.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &ResNetConfig {
        &self.config
    }

    /// Encodes images `[batch, in_channels, h, w]`: the last stage's grid and its average.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<ImageFeatures, ModelError> {
        check_images(images, self.config.in_channels)?;
        let mut xs = images
            .apply(&self.conv1)
            .apply_t(&self.bn1, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        for stage in &self.stages {
            for block in stage {
                xs = block.forward_t(&xs, train);
            }
        }
        let pooled = xs.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Ok(ImageFeatures { pooled, local: xs })
    }
}
