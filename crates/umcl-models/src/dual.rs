//! The dual encoder, umcl's model: an image encoder and a text encoder, each followed by a
//! bias-free linear projection into one shared space, and a learnable logit scale.
//!
//! Paper: Wang et al., "Unified Medical Image-Text-Label Contrastive Learning With Continuous
//! Prompt" (arXiv 2307.05920), figure 1; the projection and temperature follow CLIP (Radford et
//! al., arXiv 2103.00020) as implemented in mlfoundations/open_clip (`model.py`): the logit
//! scale starts at ln(1/0.07) and is capped at ln(100).
//!
//! ```text
//! image ─► image encoder ─► pooled ─► image_projection ─► image embedding ─┐
//! report ─► tokens ─► BERT ─► pooled ─► text_projection ─► text embedding ─┤─► losses
//! class names ─► continuous prompts ─► BERT ─► pooled ─► text_projection ─┘   (exp(logit_scale))
//! ```
//!
//! Variables: `image.*` (torchvision / timm names under `image.`), `text.*` (Hugging Face BERT
//! names under `text.`), `image_projection.weight`, `text_projection.weight`, `logit_scale`,
//! and `prompt.ctx` when the config has prompts. [`DualEncoder::save`] writes them to a
//! safetensors file and the [`DualConfig`] as JSON beside it (`model.safetensors` ->
//! `model.json`); [`DualEncoder::load`] reads both back and insists on an exact match.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, nn::Module, Device, Tensor};

use crate::bert::{Bert, BertConfig, Pooling};
use crate::error::ModelError;
use crate::image::{ImageEncoder, ImageEncoderConfig};
use crate::import::{identity_keys, import_safetensors, save_safetensors, temp_path};
use crate::prompt::{PromptConfig, PromptLearner, SpecialTokens};
use crate::resnet::ResNetConfig;

/// One class for the prompt learner: its name and the name's token ids (no special tokens).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClassName {
    /// The class name, e.g. "pleural effusion".
    pub name: String,
    /// Its token ids from the text encoder's tokenizer, without `[CLS]`/`[SEP]`.
    pub token_ids: Vec<i64>,
}

/// Everything needed to rebuild a [`DualEncoder`]; saved as JSON beside its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DualConfig {
    /// The image encoder.
    pub image: ImageEncoderConfig,
    /// The text encoder (a Hugging Face BERT `config.json`'s fields).
    pub text: BertConfig,
    /// How token states become a text vector (mean).
    #[serde(default = "default_pooling")]
    pub text_pooling: Pooling,
    /// Width of the shared space (512).
    #[serde(default = "default_embed_dim")]
    pub embed_dim: i64,
    /// Initial logit scale, in log space: ln(1/0.07).
    #[serde(default = "default_logit_scale_init")]
    pub logit_scale_init: f64,
    /// Largest logit scale, in log space: ln(100).
    #[serde(default = "default_logit_scale_max")]
    pub logit_scale_max: f64,
    /// Continuous prompts for the classes, if any.
    #[serde(default)]
    pub prompt: Option<PromptConfig>,
    /// The classes the prompts describe (empty without prompts).
    #[serde(default)]
    pub classes: Vec<ClassName>,
    /// The special tokens prompts are framed with.
    #[serde(default)]
    pub special_tokens: SpecialTokens,
    /// The text encoder's `tokenizer.json`, for tools that turn ids back into words.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
}

fn default_pooling() -> Pooling {
    Pooling::Mean
}
fn default_embed_dim() -> i64 {
    512
}
fn default_logit_scale_init() -> f64 {
    (1.0f64 / 0.07).ln()
}
fn default_logit_scale_max() -> f64 {
    100f64.ln()
}

impl DualConfig {
    /// A config with the given encoders and the defaults above (no prompts).
    pub fn new(image: ImageEncoderConfig, text: BertConfig) -> Self {
        Self {
            image,
            text,
            text_pooling: default_pooling(),
            embed_dim: default_embed_dim(),
            logit_scale_init: default_logit_scale_init(),
            logit_scale_max: default_logit_scale_max(),
            prompt: None,
            classes: Vec::new(),
            special_tokens: SpecialTokens::default(),
            tokenizer: None,
        }
    }

    /// ResNet-50 and BERT-base.
    pub fn resnet50_bert_base() -> Self {
        Self::new(
            ImageEncoderConfig::Resnet(ResNetConfig::resnet50()),
            BertConfig::base(),
        )
    }

    /// Reads a JSON config.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes the config as pretty JSON, atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| ModelError::io(path, format!("cannot serialise config: {e}")))?;
        let tmp = temp_path(path);
        std::fs::write(&tmp, json + "\n").map_err(|e| ModelError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
    }
}

/// The JSON config path beside a weight file: `x.safetensors` -> `x.json`.
pub fn config_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// The dual encoder and the variables it owns.
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// use umcl_models::bert::BertConfig;
/// use umcl_models::dual::{DualConfig, DualEncoder};
/// use umcl_models::image::ImageEncoderConfig;
/// use umcl_models::resnet::ResNetConfig;
///
/// let image = ResNetConfig { width: 8, ..ResNetConfig::resnet18() };
/// let text = BertConfig {
///     vocab_size: 100,
///     hidden_size: 32,
///     num_hidden_layers: 1,
///     num_attention_heads: 2,
///     intermediate_size: 64,
///     ..BertConfig::base()
/// };
/// let mut config = DualConfig::new(ImageEncoderConfig::Resnet(image), text);
/// config.embed_dim = 16;
/// let model = DualEncoder::new(&config, Device::Cpu)?;
/// let images = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
/// assert_eq!(model.encode_image(&images, false)?.size(), vec![2, 16]);
/// let ids = Tensor::from_slice(&[1i64, 5, 9, 2]).view([1, 4]);
/// assert_eq!(model.encode_text(&ids, &ids.ones_like(), false)?.size(), vec![1, 16]);
/// # Ok::<(), umcl_models::ModelError>(())
/// ```
pub struct DualEncoder {
    /// All variables (image., text., projections, logit_scale, prompt.).
    pub vs: nn::VarStore,
    /// The image encoder.
    pub image: ImageEncoder,
    /// The text encoder.
    pub text: Bert,
    image_projection: nn::Linear,
    text_projection: nn::Linear,
    logit_scale: Tensor,
    prompt: Option<PromptLearner>,
    config: DualConfig,
}

impl DualEncoder {
    /// Builds a randomly initialised model on `device`.
    pub fn new(config: &DualConfig, device: Device) -> Result<Self, ModelError> {
        if config.embed_dim <= 0 {
            return Err(ModelError::InvalidConfig(format!(
                "embed_dim must be positive, got {}",
                config.embed_dim
            )));
        }
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let image = ImageEncoder::new(&(&root / "image"), &config.image)?;
        let text = Bert::new(&(&root / "text"), &config.text)?;
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        let image_projection = nn::linear(
            &root / "image_projection",
            config.image.feature_dim(),
            config.embed_dim,
            no_bias,
        );
        let text_projection = nn::linear(
            &root / "text_projection",
            config.text.hidden_size,
            config.embed_dim,
            no_bias,
        );
        let logit_scale = root.var("logit_scale", &[], nn::Init::Const(config.logit_scale_init));
        let prompt = match &config.prompt {
            Some(p) => Some(PromptLearner::new(
                &(&root / "prompt"),
                p,
                config.classes.iter().map(|c| c.token_ids.clone()).collect(),
                config.special_tokens,
                &text,
            )?),
            None => None,
        };
        Ok(Self {
            vs,
            image,
            text,
            image_projection,
            text_projection,
            logit_scale,
            prompt,
            config: config.clone(),
        })
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &DualConfig {
        &self.config
    }

    /// The prompt learner, when the config has prompts.
    pub fn prompt(&self) -> Option<&PromptLearner> {
        self.prompt.as_ref()
    }

    /// The image encoder's pooled features `[batch, feature_dim]`, before the projection: what
    /// a linear probe of the encoder reads.
    pub fn image_features(&self, images: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        Ok(self.image.forward_t(images, train)?.pooled)
    }

    /// Image embeddings `[batch, embed_dim]` (projected, not normalised).
    pub fn encode_image(&self, images: &Tensor, train: bool) -> Result<Tensor, ModelError> {
        let f = self.image.forward_t(images, train)?;
        Ok(self.image_projection.forward(&f.pooled))
    }

    /// Text embeddings `[batch, embed_dim]` from token ids and attention mask.
    pub fn encode_text(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        train: bool,
    ) -> Result<Tensor, ModelError> {
        let out = self.text.forward_ids(input_ids, attention_mask, train)?;
        let pooled = self.text.pool(&out, self.config.text_pooling)?;
        Ok(self.text_projection.forward(&pooled))
    }

    /// One embedding per class `[classes, embed_dim]`, from the continuous prompts.
    pub fn encode_classes(&self, train: bool) -> Result<Tensor, ModelError> {
        let prompt = self.prompt.as_ref().ok_or_else(|| {
            ModelError::InvalidConfig("encode_classes needs a config with prompts".into())
        })?;
        let (embeds, mask) = prompt.prompts(&self.text);
        let out = self.text.forward_embeds(&embeds, &mask, train)?;
        let pooled = self.text.pool(&out, self.config.text_pooling)?;
        Ok(self.text_projection.forward(&pooled))
    }

    /// `exp(logit_scale)`, the factor on cosine similarities, in the graph of the parameter.
    pub fn logit_scale(&self) -> Tensor {
        self.logit_scale.exp()
    }

    /// The learnable parameter itself, the log of the scale (what the losses take).
    pub fn log_logit_scale(&self) -> Tensor {
        self.logit_scale.shallow_clone()
    }

    /// Clamps the parameter into `[0, logit_scale_max]` in place, after an optimizer step (as
    /// open_clip does). The forward pass does not clamp, so the gradient never vanishes at the
    /// cap: a scale pushed past it is brought back here and can move down again.
    pub fn clamp_logit_scale(&self) {
        let _guard = tch::no_grad_guard();
        let mut s = self.logit_scale.shallow_clone();
        let _ = s.clamp_(0.0, self.config.logit_scale_max);
    }

    /// Stops gradients into the text encoder (prompts and projections still learn).
    pub fn freeze_text(&self) {
        self.freeze("text.");
    }

    /// Stops gradients into the image encoder (the image projection still learns).
    pub fn freeze_image(&self) {
        self.freeze("image.");
    }

    fn freeze(&self, prefix: &str) {
        for (name, var) in self.vs.variables() {
            if name.starts_with(prefix) {
                let _ = var.set_requires_grad(false);
            }
        }
    }

    /// Writes the weights to `path` (safetensors) and the config to [`config_path`]`(path)`,
    /// each atomically.
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        save_safetensors(&self.vs, path)?;
        self.config.save(&config_path(path))
    }

    /// Reads a model written by [`DualEncoder::save`]; every variable must be in the file and
    /// nothing else.
    pub fn load(path: &Path, device: Device) -> Result<Self, ModelError> {
        let config = DualConfig::from_file(&config_path(path))?;
        let model = Self::new(&config, device)?;
        import_safetensors(&model.vs, path, &identity_keys, false)?;
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::ContextPosition;
    use crate::vit::VitConfig;
    use tch::Kind;

    fn tiny() -> DualConfig {
        let mut c = DualConfig::new(
            ImageEncoderConfig::Vit(VitConfig {
                image_size: 32,
                embed_dim: 32,
                depth: 1,
                num_heads: 2,
                ..VitConfig::tiny()
            }),
            BertConfig {
                vocab_size: 120,
                hidden_size: 16,
                num_hidden_layers: 1,
                num_attention_heads: 2,
                intermediate_size: 32,
                ..BertConfig::base()
            },
        );
        c.embed_dim = 8;
        c.prompt = Some(PromptConfig {
            n_ctx: 4,
            position: ContextPosition::Around,
            ..Default::default()
        });
        c.classes = vec![
            ClassName {
                name: "effusion".into(),
                token_ids: vec![30],
            },
            ClassName {
                name: "no finding".into(),
                token_ids: vec![31, 32],
            },
        ];
        c
    }

    #[test]
    fn encodes_into_the_shared_space() {
        let m = DualEncoder::new(&tiny(), Device::Cpu).unwrap();
        let img = m
            .encode_image(
                &Tensor::randn([3, 3, 32, 32], (Kind::Float, Device::Cpu)),
                false,
            )
            .unwrap();
        assert_eq!(img.size(), vec![3, 8]);
        let ids = Tensor::from_slice(&[101i64, 40, 41, 102, 101, 42, 102, 0]).view([2, 4]);
        let mask = Tensor::from_slice(&[1i64, 1, 1, 1, 1, 1, 1, 0]).view([2, 4]);
        assert_eq!(
            m.encode_text(&ids, &mask, false).unwrap().size(),
            vec![2, 8]
        );
        assert_eq!(m.encode_classes(false).unwrap().size(), vec![2, 8]);
        // exp(ln(1/0.07)) = 1/0.07.
        assert!((m.logit_scale().double_value(&[]) - 1.0 / 0.07).abs() < 1e-4);
    }

    #[test]
    fn logit_scale_keeps_its_gradient_past_the_cap_and_is_clamped_after_the_step() {
        let m = DualEncoder::new(&tiny(), Device::Cpu).unwrap();
        {
            let _guard = tch::no_grad_guard();
            let _ = m.log_logit_scale().fill_(10.0); // past ln 100
        }
        // d exp(s) / ds = exp(s): the gradient flows above the cap (a clamp in the forward
        // pass gave 0 here, and the scale could never come back).
        m.logit_scale().backward();
        let g = m.log_logit_scale().grad().double_value(&[]);
        assert!((g - 10f64.exp()).abs() < 1e-2 * 10f64.exp(), "gradient {g}");
        m.clamp_logit_scale();
        let s = m.log_logit_scale().double_value(&[]);
        assert!((s - 100f64.ln()).abs() < 1e-6, "clamped to ln 100: {s}");
        assert!((m.logit_scale().double_value(&[]) - 100.0).abs() < 1e-3);
        // Below the cap the clamp changes nothing; below 0 it lifts to 0.
        let _guard = tch::no_grad_guard();
        let _ = m.log_logit_scale().fill_(2.5);
        m.clamp_logit_scale();
        assert_eq!(m.log_logit_scale().double_value(&[]), 2.5f32 as f64);
        let _ = m.log_logit_scale().fill_(-1.0);
        m.clamp_logit_scale();
        assert_eq!(m.log_logit_scale().double_value(&[]), 0.0);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let a = DualEncoder::new(&tiny(), Device::Cpu).unwrap();
        a.save(&path).unwrap();
        assert!(dir.path().join("model.json").is_file());
        let b = DualEncoder::load(&path, Device::Cpu).unwrap();
        let ea = a.encode_classes(false).unwrap();
        let eb = b.encode_classes(false).unwrap();
        assert!(ea.equal(&eb));
        let names: Vec<String> = a.vs.variables().into_keys().collect();
        assert!(names.contains(&"prompt.ctx".to_string()));
        assert!(names.contains(&"text.embeddings.word_embeddings.weight".to_string()));
        assert!(names.contains(&"image.pos_embed".to_string()));
        // A config without prompts does not accept a file that has them.
        let mut c = tiny();
        c.prompt = None;
        c.save(&config_path(&path)).unwrap();
        let err = DualEncoder::load(&path, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("1 unexpected: prompt.ctx"), "{err}");
    }

    #[test]
    fn malformed_config_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        std::fs::write(dir.path().join("model.json"), "{\"image\": 3}").unwrap();
        let err = DualEncoder::load(&path, Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("model.json") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn frozen_text_gets_no_gradient() {
        let m = DualEncoder::new(&tiny(), Device::Cpu).unwrap();
        m.freeze_text();
        m.encode_classes(true).unwrap().sum(Kind::Float).backward();
        assert!(m.prompt().unwrap().ctx().grad().defined());
        assert!(!m.text.word_embeddings().grad().defined());
    }
}
