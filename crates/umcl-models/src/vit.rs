//! Vision Transformer (ViT), an image encoder.
//!
//! Paper: Dosovitskiy et al., "An Image is Worth 16x16 Words: Transformers for Image
//! Recognition at Scale", ICLR 2021 (arXiv 2010.11929). Reference implementation: timm 1.0.31,
//! `timm/models/vision_transformer.py` (`VisionTransformer` with a class token, pre-norm blocks,
//! `global_pool="token"`).
//!
//! Variable names are timm's state-dict keys (`cls_token`, `pos_embed`, `patch_embed.proj.weight`,
//! `blocks.{i}.attn.qkv.weight`, `norm.weight`, ...). Hugging Face `ViTModel` files load through
//! [`hf_vit_to_timm`], which renames their keys and joins their separate query, key and value
//! projections into timm's `qkv`.
//!
//! Images of another size than `image_size` are encoded with the position embeddings resampled
//! to the new patch grid as timm's `dynamic_img_size` does: bicubic, antialiased, without
//! corner alignment, class token left as it is.
//!
//! ```text
//! image ─► conv patch/patch (patch_embed) ─► tokens; [cls] + tokens + pos_embed
//!       ─► depth × block ─► LayerNorm ─► cls = pooled, patch tokens = local
//! block: x = x + proj(attention(qkv(LN1(x))));  x = x + fc2(GELU(fc1(LN2(x))))
//! ```

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Kind, Tensor};

use crate::error::ModelError;
use crate::image::ImageFeatures;
use crate::import::{strip_prefixes, KeyAction, NamedTensors};

/// ViT hyper-parameters (timm's names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    /// Image side the position embeddings are laid out for (224).
    #[serde(default = "default_image_size")]
    pub image_size: i64,
    /// Patch side (16).
    #[serde(default = "default_patch_size")]
    pub patch_size: i64,
    /// Input channels (3).
    #[serde(default = "default_in_channels")]
    pub in_channels: i64,
    /// Token width.
    pub embed_dim: i64,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads; must divide `embed_dim`.
    pub num_heads: i64,
    /// MLP width as a multiple of `embed_dim` (4).
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: f64,
    /// LayerNorm epsilon (timm: 1e-6; Hugging Face ViT: 1e-12).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

fn default_image_size() -> i64 {
    224
}
fn default_patch_size() -> i64 {
    16
}
fn default_in_channels() -> i64 {
    3
}
fn default_mlp_ratio() -> f64 {
    4.0
}
fn default_eps() -> f64 {
    1e-6
}

impl VitConfig {
    fn with(embed_dim: i64, num_heads: i64) -> Self {
        Self {
            image_size: 224,
            patch_size: 16,
            in_channels: 3,
            embed_dim,
            depth: 12,
            num_heads,
            mlp_ratio: 4.0,
            layer_norm_eps: 1e-6,
        }
    }

    /// ViT-Ti/16 (timm `vit_tiny_patch16_224`): 192 wide, 12 blocks, 3 heads.
    pub fn tiny() -> Self {
        Self::with(192, 3)
    }

    /// ViT-S/16 (timm `vit_small_patch16_224`): 384 wide, 12 blocks, 6 heads.
    pub fn small() -> Self {
        Self::with(384, 6)
    }

    /// ViT-B/16 (timm `vit_base_patch16_224`): 768 wide, 12 blocks, 12 heads.
    pub fn base() -> Self {
        Self::with(768, 12)
    }

    /// A named preset: `vit-tiny`, `vit-small`, `vit-base`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "vit-tiny" => Some(Self::tiny()),
            "vit-small" => Some(Self::small()),
            "vit-base" => Some(Self::base()),
            _ => None,
        }
    }

    /// Patches per side at `image_size`.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    fn validate(&self) -> Result<(), ModelError> {
        let ok = self.embed_dim > 0
            && self.num_heads > 0
            && self.embed_dim % self.num_heads == 0
            && self.patch_size > 0
            && self.image_size >= self.patch_size
            && self.image_size % self.patch_size == 0
            && self.mlp_ratio > 0.0;
        if ok {
            Ok(())
        } else {
            Err(ModelError::InvalidConfig(format!(
                "ViT needs num_heads dividing embed_dim and patch_size dividing image_size, got {self:?}"
            )))
        }
    }
}

/// The key map for timm ViT files: strips `module.`; ignores the classifier (`head.`), which
/// the encoder does not have.
pub fn timm_keys(key: &str) -> KeyAction {
    let key = strip_prefixes(key, &["module."]);
    if key.starts_with("head.") {
        KeyAction::Ignore
    } else {
        KeyAction::Load(key.to_string())
    }
}

/// Converts the tensors of a Hugging Face `ViTModel` / `ViTForImageClassification` file to
/// timm's names: `vit.` is stripped, query/key/value are concatenated into `qkv`, the pooler
/// and classifier are dropped. Returns the converted tensors and the dropped keys.
pub fn hf_vit_to_timm(tensors: NamedTensors) -> Result<(NamedTensors, Vec<String>), ModelError> {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let mut dropped = Vec::new();
    // (layer, "weight"|"bias") -> [q, k, v]
    let mut qkv: BTreeMap<(usize, String), [Option<Tensor>; 3]> = BTreeMap::new();
    for (key, t) in tensors {
        let k = strip_prefixes(&key, &["module.", "vit."]);
        let simple = match k {
            "embeddings.cls_token" => Some("cls_token".to_string()),
            "embeddings.position_embeddings" => Some("pos_embed".to_string()),
            "layernorm.weight" => Some("norm.weight".to_string()),
            "layernorm.bias" => Some("norm.bias".to_string()),
            _ => k
                .strip_prefix("embeddings.patch_embeddings.projection.")
                .map(|rest| format!("patch_embed.proj.{rest}")),
        };
        if let Some(name) = simple {
            out.push((name, t));
            continue;
        }
        if let Some(rest) = k.strip_prefix("encoder.layer.") {
            let (layer, rest) = rest.split_once('.').unwrap_or((rest, ""));
            let i: usize = layer.parse().map_err(|_| {
                ModelError::Input(format!("Hugging Face ViT key `{key}`: bad layer index"))
            })?;
            let (module, param) = rest.rsplit_once('.').unwrap_or((rest, ""));
            let target = match module {
                "layernorm_before" => Some("norm1"),
                "layernorm_after" => Some("norm2"),
                "attention.output.dense" => Some("attn.proj"),
                "intermediate.dense" => Some("mlp.fc1"),
                "output.dense" => Some("mlp.fc2"),
                _ => None,
            };
            if let Some(target) = target {
                out.push((format!("blocks.{i}.{target}.{param}"), t));
                continue;
            }
            let slot = match module {
                "attention.attention.query" => Some(0),
                "attention.attention.key" => Some(1),
                "attention.attention.value" => Some(2),
                _ => None,
            };
            if let Some(slot) = slot {
                qkv.entry((i, param.to_string())).or_default()[slot] = Some(t);
                continue;
            }
        }
        if k.starts_with("pooler.") || k.starts_with("classifier.") {
            dropped.push(key);
            continue;
        }
        // Unknown: pass through under its own name so the import reports it as unexpected.
        out.push((key, t));
    }
    for ((i, param), parts) in qkv {
        match parts {
            [Some(q), Some(k), Some(v)] => out.push((
                format!("blocks.{i}.attn.qkv.{param}"),
                Tensor::cat(&[q, k, v], 0),
            )),
            _ => {
                return Err(ModelError::Input(format!(
                    "Hugging Face ViT layer {i}: query, key and value {param} must all be present"
                )))
            }
        }
    }
    dropped.sort();
    Ok((out, dropped))
}

struct Attention {
    qkv: nn::Linear,
    proj: nn::Linear,
    heads: i64,
}

impl Attention {
    fn forward(&self, xs: &Tensor) -> Tensor {
        let (b, n, c) = xs.size3().expect("tokens are [batch, tokens, dim]");
        let d = c / self.heads;
        let qkv = self
            .qkv
            .forward(xs)
            .reshape([b, n, 3, self.heads, d])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let ys = Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            None::<Tensor>,
            0.0,
            false,
            None,
            false,
        )
        .transpose(1, 2)
        .reshape([b, n, c]);
        self.proj.forward(&ys)
    }
}

struct VitBlock {
    norm1: nn::LayerNorm,
    attn: Attention,
    norm2: nn::LayerNorm,
    fc1: nn::Linear,
    fc2: nn::Linear,
}

impl VitBlock {
    fn new(p: &nn::Path, c: &VitConfig) -> Self {
        let ln = nn::LayerNormConfig {
            eps: c.layer_norm_eps,
            ..Default::default()
        };
        let d = c.embed_dim;
        let hidden = (d as f64 * c.mlp_ratio) as i64;
        let a = p / "attn";
        let m = p / "mlp";
        Self {
            norm1: nn::layer_norm(p / "norm1", vec![d], ln),
            attn: Attention {
                qkv: nn::linear(&a / "qkv", d, 3 * d, Default::default()),
                proj: nn::linear(&a / "proj", d, d, Default::default()),
                heads: c.num_heads,
            },
            norm2: nn::layer_norm(p / "norm2", vec![d], ln),
            fc1: nn::linear(&m / "fc1", d, hidden, Default::default()),
            fc2: nn::linear(&m / "fc2", hidden, d, Default::default()),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let xs = xs + self.attn.forward(&self.norm1.forward(xs));
        let mlp = self
            .fc2
            .forward(&self.fc1.forward(&self.norm2.forward(&xs)).gelu("none"));
        xs + mlp
    }
}

/// A Vision Transformer without its classifier.
pub struct Vit {
    patch_embed: nn::Conv2D,
    cls_token: Tensor,
    pos_embed: Tensor,
    blocks: Vec<VitBlock>,
    norm: nn::LayerNorm,
    config: VitConfig,
}

impl Vit {
    /// Builds the encoder under `p` (use the var store's root for timm key names).
    pub fn new(p: &nn::Path, config: &VitConfig) -> Result<Self, ModelError> {
        config.validate()?;
        let d = config.embed_dim;
        let tokens = config.grid() * config.grid() + 1;
        let conv = nn::ConvConfig {
            stride: config.patch_size,
            ..Default::default()
        };
        let init = nn::Init::Randn {
            mean: 0.,
            stdev: 0.02,
        };
        let blocks_p = p / "blocks";
        Ok(Self {
            patch_embed: nn::conv2d(
                p / "patch_embed" / "proj",
                config.in_channels,
                d,
                config.patch_size,
                conv,
            ),
            cls_token: p.var("cls_token", &[1, 1, d], init),
            pos_embed: p.var("pos_embed", &[1, tokens, d], init),
            blocks: (0..config.depth)
                .map(|i| VitBlock::new(&(&blocks_p / i), config))
                .collect(),
            norm: nn::layer_norm(
                p / "norm",
                vec![d],
                nn::LayerNormConfig {
                    eps: config.layer_norm_eps,
                    ..Default::default()
                },
            ),
            config: config.clone(),
        })
    }

    /// The configuration the encoder was built with.
    pub fn config(&self) -> &VitConfig {
        &self.config
    }

    /// Position embeddings for a `gh` x `gw` patch grid (resampled when it is not the
    /// configured grid).
    fn pos_embed_for(&self, gh: i64, gw: i64) -> Tensor {
        let g = self.config.grid();
        if gh == g && gw == g {
            return self.pos_embed.shallow_clone();
        }
        let d = self.config.embed_dim;
        let cls = self.pos_embed.narrow(1, 0, 1);
        let grid = self
            .pos_embed
            .narrow(1, 1, g * g)
            .reshape([1, g, g, d])
            .permute([0, 3, 1, 2])
            .to_kind(Kind::Float)
            .internal_upsample_bicubic2d_aa([gh, gw], false, None, None)
            .permute([0, 2, 3, 1])
            .reshape([1, gh * gw, d])
            .to_kind(self.pos_embed.kind());
        Tensor::cat(&[cls, grid], 1)
    }

    /// Encodes images `[batch, in_channels, h, w]` (h and w multiples of the patch size): the
    /// class token and the patch tokens after the final norm.
    pub fn forward_t(&self, images: &Tensor, _train: bool) -> Result<ImageFeatures, ModelError> {
        let dims = images.size();
        let ps = self.config.patch_size;
        if dims.len() != 4
            || dims[1] != self.config.in_channels
            || dims[2] % ps != 0
            || dims[3] % ps != 0
            || dims[2] == 0
            || dims[3] == 0
        {
            return Err(ModelError::Input(format!(
                "images must be [batch, {}, h, w] with h and w multiples of {ps}, got {dims:?}",
                self.config.in_channels
            )));
        }
        let b = dims[0];
        let (gh, gw) = (dims[2] / ps, dims[3] / ps);
        let patches = images
            .apply(&self.patch_embed)
            .flatten(2, 3)
            .transpose(1, 2);
        let cls = self.cls_token.expand([b, 1, self.config.embed_dim], false);
        let mut xs = Tensor::cat(&[cls, patches], 1) + self.pos_embed_for(gh, gw);
        for block in &self.blocks {
            xs = block.forward(&xs);
        }
        let xs = self.norm.forward(&xs);
        Ok(ImageFeatures {
            pooled: xs.select(1, 0),
            local: xs.narrow(1, 1, gh * gw),
        })
    }
}
