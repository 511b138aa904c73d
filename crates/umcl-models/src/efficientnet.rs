//! EfficientNet-Lite, an image encoder.
//!
//! Paper: Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
//! Networks", ICML 2019 (arXiv 1905.11946); the Lite variants are TensorFlow's
//! (`tensorflow/tpu`, `models/official/efficientnet/lite`): no squeeze-and-excitation, ReLU6
//! instead of swish, and the stem (32 channels) and head (1280) fixed at every scale.
//!
//! Variable names are the keys of the lukemelas-style PyTorch port the ImageNet checkpoint
//! `efficientnet-lite0-57934424.pth` uses (`_conv_stem.weight`, `_blocks.3._depthwise_conv.weight`,
//! `_bn1.running_var`, ...), so that file loads with [`lukemelas_keys`], which ignores the
//! classifier (`_fc.*`).
//!
//! Convolutions pad as TensorFlow's `SAME` does, which the weights were trained with: the output
//! is `ceil(input / stride)` and an odd total padding puts the extra row and column at the
//! bottom and right (a 3x3 convolution of stride 2 on an even input pads 0 before, 1 after).
//! BatchNorm uses TensorFlow's epsilon, 1e-3.
//!
//! ```text
//! image ─► conv 3x3/2 (32) ─► BN ─► ReLU6
//!       ─► 16 MBConv blocks in 7 stages ─► conv 1x1 (1280) ─► BN ─► ReLU6 = grid ─► avgpool
//! MBConv(k, s, e): x ─► [conv 1x1 (x e) ─► BN ─► ReLU6] ─► depthwise k x k / s ─► BN ─► ReLU6
//!                    ─► conv 1x1 ─► BN ─► (+ x when s = 1 and the width is unchanged)
//! ```

use serde::{Deserialize, Serialize};
use tch::{nn, Tensor};

use crate::error::ModelError;
use crate::image::{check_images, ImageFeatures};
use crate::import::{strip_prefixes, KeyAction};

/// One stage of MBConv blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stage {
    /// Blocks in the stage.
    pub repeats: usize,
    /// Depthwise kernel size.
    pub kernel: i64,
    /// Stride of the stage's first block (the others have 1).
    pub stride: i64,
    /// Expansion ratio of the inverted bottleneck (1: no expansion convolution).
    pub expand: i64,
    /// Output channels.
    pub out: i64,
}

/// EfficientNet-Lite hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EfficientNetConfig {
    /// Stem output channels (32).
    pub stem: i64,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Head output channels, the pooled feature's width (1280).
    pub head: i64,
    /// BatchNorm epsilon (1e-3, TensorFlow's).
    pub bn_eps: f64,
    /// Input channels (3).
    pub in_channels: i64,
}

impl EfficientNetConfig {
    /// EfficientNet-Lite0: 16 blocks, 4.65 M parameters without the classifier's 1.28 M.
    pub fn lite0() -> Self {
        let s = |repeats, kernel, stride, expand, out| Stage {
            repeats,
            kernel,
            stride,
            expand,
            out,
        };
        Self {
            stem: 32,
            stages: vec![
                s(1, 3, 1, 1, 16),
                s(2, 3, 2, 6, 24),
                s(2, 5, 2, 6, 40),
                s(3, 3, 2, 6, 80),
                s(3, 5, 1, 6, 112),
                s(4, 5, 2, 6, 192),
                s(1, 3, 1, 6, 320),
            ],
            head: 1280,
            bn_eps: 1e-3,
            in_channels: 3,
        }
    }

    /// A named preset: `efficientnet-lite0`.
    pub fn preset(name: &str) -> Option<Self> {
        (name == "efficientnet-lite0").then(Self::lite0)
    }

    /// Width of the pooled feature.
    pub fn feature_dim(&self) -> i64 {
        self.head
    }
}

/// The key map for lukemelas-style EfficientNet files: strips `module.`, ignores the classifier
/// (`_fc.`) and BatchNorm's `num_batches_tracked` counters.
pub fn lukemelas_keys(key: &str) -> KeyAction {
    let key = strip_prefixes(key, &["module."]);
    if key.starts_with("_fc.") || key.ends_with("num_batches_tracked") {
        KeyAction::Ignore
    } else {
        KeyAction::Load(key.to_string())
    }
}

/// TensorFlow's `SAME` padding of one dimension: (before, after).
fn same_padding(size: i64, kernel: i64, stride: i64) -> (i64, i64) {
    let out = (size + stride - 1) / stride;
    let total = ((out - 1) * stride + kernel - size).max(0);
    (total / 2, total - total / 2)
}

/// A bias-free convolution with `SAME` padding.
struct SameConv {
    conv: nn::Conv2D,
    kernel: i64,
    stride: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let config = nn::ConvConfig {
            stride,
            groups,
            bias: false,
            ..Default::default()
        };
        Self {
            conv: nn::conv2d(p, c_in, c_out, kernel, config),
            kernel,
            stride,
            groups,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let (top, bottom) = same_padding(size[2], self.kernel, self.stride);
        let (left, right) = same_padding(size[3], self.kernel, self.stride);
        let conv = |xs: &Tensor, pad: [i64; 2]| {
            xs.conv2d(
                &self.conv.ws,
                None::<Tensor>,
                [self.stride; 2],
                pad,
                [1, 1],
                self.groups,
            )
        };
        if top == bottom && left == right {
            conv(xs, [top, left])
        } else {
            conv(&xs.constant_pad_nd([left, right, top, bottom]), [0, 0])
        }
    }
}

fn bn(p: nn::Path, c: i64, eps: f64) -> nn::BatchNorm {
    let config = nn::BatchNormConfig {
        eps,
        momentum: 0.01,
        ..Default::default()
    };
    nn::batch_norm2d(p, c, config)
}

fn relu6(xs: &Tensor) -> Tensor {
    xs.clamp(0.0, 6.0)
}

/// The mobile inverted bottleneck block.
struct MbConv {
    expand: Option<(SameConv, nn::BatchNorm)>,
    depthwise: SameConv,
    bn1: nn::BatchNorm,
    project: SameConv,
    bn2: nn::BatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(p: &nn::Path, c_in: i64, stage: &Stage, stride: i64, eps: f64) -> Self {
        let mid = c_in * stage.expand;
        let expand = (stage.expand != 1).then(|| {
            (
                SameConv::new(p / "_expand_conv", c_in, mid, 1, 1, 1),
                bn(p / "_bn0", mid, eps),
            )
        });
        Self {
            expand,
            depthwise: SameConv::new(p / "_depthwise_conv", mid, mid, stage.kernel, stride, mid),
            bn1: bn(p / "_bn1", mid, eps),
            project: SameConv::new(p / "_project_conv", mid, stage.out, 1, 1, 1),
            bn2: bn(p / "_bn2", stage.out, eps),
            residual: stride == 1 && c_in == stage.out,
        }
    }

    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = match &self.expand {
            Some((conv, bn)) => relu6(&conv.forward(xs).apply_t(bn, train)),
            None => xs.shallow_clone(),
        };
        ys = relu6(&self.depthwise.forward(&ys).apply_t(&self.bn1, train));
        ys = self.project.forward(&ys).apply_t(&self.bn2, train);
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// An EfficientNet-Lite without its classifier.
pub struct EfficientNet {
    stem: SameConv,
    bn0: nn::BatchNorm,
    blocks: Vec<MbConv>,
    head: SameConv,
    bn1: nn::BatchNorm,
    config: EfficientNetConfig,
}

impl EfficientNet {
    /// Builds the encoder under `p` (use the var store's root for the checkpoint's key names).
    pub fn new(p: &nn::Path, config: &EfficientNetConfig) -> Result<Self, ModelError> {
        let bad = config.stem <= 0
            || config.head <= 0
            || config.in_channels <= 0
            || config.bn_eps.is_nan()
            || config.bn_eps <= 0.0
            || config.stages.is_empty()
            || config.stages.iter().any(|s| {
                s.repeats == 0 || s.kernel <= 0 || s.stride <= 0 || s.expand <= 0 || s.out <= 0
            });
        if bad {
            return Err(ModelError::InvalidConfig(format!(
                "EfficientNet needs positive widths, kernels, strides, expansions and repeats, \
                 and a positive BatchNorm epsilon; got {config:?}"
            )));
        }
        let eps = config.bn_eps;
        let mut blocks = Vec::new();
        let mut c_in = config.stem;
        for stage in &config.stages {
            for r in 0..stage.repeats {
                let stride = if r == 0 { stage.stride } else { 1 };
                blocks.push(MbConv::new(
                    &(p / "_blocks" / blocks.len()),
                    c_in,
                    stage,
                    stride,
                    eps,
                ));
                c_in = stage.out;
            }
        }
        Ok(Self {
            stem: SameConv::new(p / "_conv_stem", config.in_channels, config.stem, 3, 2, 1),
            bn0: bn(p / "_bn0", config.stem, eps),
            blocks,
            head: SameConv::new(p / "_conv_head", c_in, config.head, 1, 1, 1),
            bn1: bn(p / "_bn1", config.head, eps),
            config: config.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &EfficientNetConfig {
        &self.config
    }

    /// Encodes images `[batch, in_channels, h, w]`: the head's grid and its average.
    pub fn forward_t(&self, images: &Tensor, train: bool) -> Result<ImageFeatures, ModelError> {
        check_images(images, self.config.in_channels)?;
        let mut xs = relu6(&self.stem.forward(images).apply_t(&self.bn0, train));
        for block in &self.blocks {
            xs = block.forward_t(&xs, train);
        }
        let grid = relu6(&self.head.forward(&xs).apply_t(&self.bn1, train));
        let pooled = grid.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Ok(ImageFeatures {
            pooled,
            local: grid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        // Output ceil(n / s); the odd pixel goes after.
        assert_eq!(same_padding(224, 3, 2), (0, 1));
        assert_eq!(same_padding(224, 5, 2), (1, 2));
        assert_eq!(same_padding(225, 3, 2), (1, 1));
        assert_eq!(same_padding(7, 3, 1), (1, 1));
        assert_eq!(same_padding(7, 5, 1), (2, 2));
        assert_eq!(same_padding(7, 1, 1), (0, 0));
    }

    #[test]
    fn lite0_has_the_checkpoints_parameter_count_and_keys() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let net = EfficientNet::new(&vs.root(), &EfficientNetConfig::lite0()).unwrap();
        assert_eq!(net.blocks.len(), 16);
        let vars = vs.variables();
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        // 4,652,008 parameters in the PyTorch port, less the classifier (1280 x 1000 + 1000).
        assert_eq!(params, 4_652_008 - 1_281_000);
        assert!(vars.contains_key("_blocks.15._project_conv.weight"));
        assert!(!vars.contains_key("_blocks.0._expand_conv.weight"));
        assert_eq!(vars["_conv_head.weight"].size(), vec![1280, 320, 1, 1]);
        let y = net
            .forward_t(&Tensor::zeros([1, 3, 64, 48], tch::kind::FLOAT_CPU), false)
            .unwrap();
        assert_eq!(y.pooled.size(), vec![1, 1280]);
        assert_eq!(y.local.size(), vec![1, 1280, 2, 2]);
    }
}
