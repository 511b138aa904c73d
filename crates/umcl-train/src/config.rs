//! The training configuration: one TOML file, every option documented and defaulted,
//! overridable from the command line (`--set optim.lr=1e-4`), checked before any work.
//!
//! Presets live in `data/configs/` and are embedded, so `umcl train --preset phantom-cpu`
//! works from any directory. A run saves its resolved configuration as `config.toml` in the
//! run directory.
//!
//! ```
//! use umcl_train::config::TrainConfig;
//! let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
//! cfg.apply_overrides(&["optim.lr=0.001".to_string()]).unwrap();
//! assert_eq!(cfg.optim.lr, 0.001);
//! assert!(cfg.apply_overrides(&["optim.lr=-1".to_string()]).is_err());
//! assert!(cfg.apply_overrides(&["optim.learning_rate=1".to_string()]).is_err());
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors in a configuration, each naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file or override the text came from.
        origin: String,
        /// The parser's message (names the key).
        message: String,
    },
    /// A value out of its range.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid {
        /// The dotted key, e.g. `optim.lr`.
        key: String,
        /// Why it is invalid.
        reason: String,
    },
    /// An unknown preset name.
    #[error("unknown preset `{0}` (known: {known})", known = PRESETS.iter().map(|p| p.0).collect::<Vec<_>>().join(", "))]
    UnknownPreset(String),
}

/// The presets shipped in `data/configs/`, embedded.
pub const PRESETS: [(&str, &str); 4] = [
    (
        "phantom-cpu",
        include_str!("../data/configs/phantom-cpu.toml"),
    ),
    ("covid-cxr", include_str!("../data/configs/covid-cxr.toml")),
    (
        "mimic-chexpert-resnet50",
        include_str!("../data/configs/mimic-chexpert-resnet50.toml"),
    ),
    (
        "mimic-chexpert-vit-b16",
        include_str!("../data/configs/mimic-chexpert-vit-b16.toml"),
    ),
];

/// A whole training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Name, output place, seed, device.
    pub run: RunConfig,
    /// What to train on and how it is loaded.
    pub data: DataConfig,
    /// The dual encoder.
    pub model: ModelConfig,
    /// The contrastive loss.
    pub loss: LossConfig,
    /// AdamW and the learning-rate schedule.
    pub optim: OptimConfig,
    /// Evaluation during and after training.
    pub eval: EvalConfig,
    /// Data-parallel training over several processes (see `docs/distributed.md`).
    pub dist: DistConfig,
}

/// `[dist]`: settings of a data-parallel run, used only when the process is started as one
/// rank of several (`umcl train --nproc N`, torchrun, Slurm: see `docs/distributed.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// Seconds a rank waits for the others, at rendezvous and in every collective, before it
    /// stops with an error. Must cover rank 0's validation and checkpoint writing, which the
    /// other ranks wait through. Default 1800.
    pub timeout_s: u64,
    /// Size of one gradient all-reduce bucket in MiB. Default 25.
    pub bucket_mb: f64,
    /// Start each bucket's all-reduce inside the backward pass, as soon as its gradients are
    /// ready (as PyTorch's DDP does), instead of all buckets after it. Default true.
    pub overlap: bool,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            timeout_s: 1800,
            bucket_mb: 25.0,
            overlap: true,
        }
    }
}

/// `[run]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Run name; the run directory is `<out_dir>/<name>`. Default "umcl".
    pub name: String,
    /// Parent of run directories. Default "runs".
    pub out_dir: PathBuf,
    /// Seed of initialisation, data order, augmentation and dropout. Default 0.
    pub seed: u64,
    /// `auto`, `cpu`, `cuda` or `cuda:N`. Default "auto".
    pub device: String,
    /// Intra-op threads; 0 = physical cores. Default 0.
    pub threads: usize,
    /// Keep freed CPU memory in the process for reuse instead of returning it to the OS
    /// (`umcl_models::backend::CpuHeap::Keep`): faster CPU steps, higher peak resident size.
    /// Default true.
    pub keep_cpu_memory: bool,
    /// Optimizer steps to train. Default 1000.
    pub steps: u64,
    /// Log a metrics line every this many steps. Default 10.
    pub log_every: u64,
    /// Checkpoint every this many steps (and at the end). Default 500.
    pub checkpoint_every: u64,
    /// Checkpoints kept besides the best. Default 2.
    pub keep_last: usize,
    /// bf16 autocast on CUDA (ignored on CPU). Default true.
    pub bf16: bool,
    /// Show a progress bar. Default true.
    pub progress: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            name: "umcl".into(),
            out_dir: "runs".into(),
            seed: 0,
            device: "auto".into(),
            threads: 0,
            keep_cpu_memory: true,
            steps: 1000,
            log_every: 10,
            checkpoint_every: 500,
            keep_last: 2,
            bf16: true,
            progress: true,
        }
    }
}

/// `[data]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The unified training manifest (JSONL). Relative paths are relative to the working
    /// directory. Default "data/phantom/manifest.jsonl".
    pub manifest: PathBuf,
    /// Split file next to the manifest to train on (`train`), and to select on (`val`): the
    /// manifest's patient split (see `umcl data split`). When the split file is absent the
    /// trainer makes one with `val_fraction` and the run seed. Default 0.1.
    pub val_fraction: f64,
    /// Image side in pixels after preprocessing. Default 224.
    pub image_size: usize,
    /// Samples per optimizer step (the contrastive batch). Default 64.
    pub batch_size: usize,
    /// The batch is computed in this many micro-batches whose features are cached, so the loss
    /// still sees every negative of the full batch (open_clip's accum_freq). Default 1.
    pub accum_steps: usize,
    /// Loader threads. Default 2.
    pub workers: usize,
    /// Batches prepared ahead. Default 4.
    pub prefetch: usize,
    /// Longest text in tokens. Default 128.
    pub max_text_len: usize,
    /// Training augmentation on. Default true.
    pub augment: bool,
    /// Skip samples whose image fails to load (counted and reported) instead of stopping.
    /// Default false.
    pub skip_bad: bool,
    /// Samples with labels but no text get a report synthesised from their labels. Default true.
    pub synthesize_text: bool,
    /// The synthesised reports are drawn anew every epoch (other phrasings, other negatives
    /// mentioned), from `(seed, epoch, sample)`; false: one report per sample for the whole
    /// run. Default true.
    pub resample_text: bool,
    /// Samples with a text but no labels get labels from the rule-based report labeler.
    /// Default true.
    pub label_reports: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            manifest: "data/phantom/manifest.jsonl".into(),
            val_fraction: 0.1,
            image_size: 224,
            batch_size: 64,
            accum_steps: 1,
            workers: 2,
            prefetch: 4,
            max_text_len: 128,
            augment: true,
            skip_bad: false,
            synthesize_text: true,
            resample_text: true,
            label_reports: true,
        }
    }
}

/// `[model]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Image encoder preset: `resnet18`, `resnet34`, `resnet50`, `vit-tiny`, `vit-small`,
    /// `vit-base`, `resnet18-w<N>` (ResNet-18 with stem width N), or
    /// `vit<size>-p<patch>-w<width>-d<depth>` (a small ViT). Default "resnet50".
    pub image: String,
    /// Safetensors file with pretrained image-encoder weights (torchvision or timm keys).
    /// Default none (random initialisation).
    pub image_weights: Option<PathBuf>,
    /// Text encoder: a folder with a Hugging Face BERT (`config.json`, `model.safetensors`,
    /// `tokenizer.json`), whose weights are loaded. Default none: then `text_preset` is built
    /// with random weights and `tokenizer` must be given.
    pub text_dir: Option<PathBuf>,
    /// `tokenizer.json` when `text_dir` is not given. Default none.
    pub tokenizer: Option<PathBuf>,
    /// Text encoder shape when `text_dir` is not given: `bert-base`, `minilm-l6`, or
    /// `bert-L<layers>-H<hidden>` (random weights). Default "bert-base".
    pub text_preset: String,
    /// Width of the shared embedding space. Default 512.
    pub embed_dim: i64,
    /// Keep the image encoder's weights fixed. Default false.
    pub freeze_image: bool,
    /// Keep the text encoder's weights fixed. Default false.
    pub freeze_text: bool,
    /// Learnable context vectors per prompt (0 = no continuous prompts). Default 16.
    pub prompt_ctx: usize,
    /// One set of context vectors per class instead of one shared set. Default false.
    pub prompt_class_specific: bool,
    /// Dropout probability of the text encoder (hidden and attention), replacing the
    /// encoder's own (0.1 for BERT). Default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_dropout: Option<f64>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            image: "resnet50".into(),
            image_weights: None,
            text_dir: None,
            tokenizer: None,
            text_preset: "bert-base".into(),
            embed_dim: 512,
            freeze_image: false,
            freeze_text: false,
            prompt_ctx: 16,
            prompt_class_specific: false,
            text_dropout: None,
        }
    }
}

/// `[loss]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// `itl` (the Image-Text-Label loss) or `clip`. Default "itl".
    pub kind: String,
    /// ITL target: `multi-positive`, `soft` or `identity`. Default "multi-positive".
    pub target: String,
    /// Label similarity: `jaccard` or `cosine`. Default "jaccard".
    pub similarity: String,
    /// Uncertain labels: `ignore`, `positive` or `negative`. Default "ignore".
    pub uncertain: String,
    /// Soft-target temperature. Default 0.1.
    pub label_temperature: f64,
    /// False-negative masking threshold in (0, 1]; 0 = off. Default 0.
    pub false_negative_threshold: f64,
    /// Rows per chunk of the chunked loss; 0 = dense. Default 0.
    pub chunk_size: usize,
    /// Weight of the prompt-classification term (learned prompts vs labels); 0 = off.
    /// Default 0.5.
    pub prompt_weight: f64,
}

impl Default for LossConfig {
    fn default() -> Self {
        Self {
            kind: "itl".into(),
            target: "multi-positive".into(),
            similarity: "jaccard".into(),
            uncertain: "ignore".into(),
            label_temperature: 0.1,
            false_negative_threshold: 0.0,
            chunk_size: 0,
            prompt_weight: 0.5,
        }
    }
}

/// `[optim]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Peak learning rate. Default 5e-4.
    pub lr: f64,
    /// Decoupled weight decay (not on norms, biases, the logit scale or prompts). Default 0.1.
    pub weight_decay: f64,
    /// Adam beta1. Default 0.9.
    pub beta1: f64,
    /// Adam beta2. Default 0.98.
    pub beta2: f64,
    /// Adam epsilon. Default 1e-6.
    pub eps: f64,
    /// Linear warm-up steps. Default 100.
    pub warmup_steps: u64,
    /// Final learning rate of the cosine decay, as a fraction of `lr`. Default 0.0.
    pub min_lr_ratio: f64,
    /// Clip the global gradient norm at this value; 0 = off. Default 1.0.
    pub grad_clip: f64,
    /// Learning-rate factor of the image encoder. Default 1.0.
    pub lr_image: f64,
    /// Learning-rate factor of the text encoder. Default 1.0.
    pub lr_text: f64,
    /// Learning-rate factor of projections and logit scale. Default 1.0.
    pub lr_heads: f64,
    /// Learning-rate factor of the prompt vectors. Default 1.0.
    pub lr_prompts: f64,
    /// Run AdamW as one fused libtorch kernel per parameter bucket (`_fused_adamw_`); false
    /// selects the per-tensor update (same formula, fp32 rounding differs). Default true.
    pub fused: bool,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-6,
            warmup_steps: 100,
            min_lr_ratio: 0.0,
            grad_clip: 1.0,
            lr_image: 1.0,
            lr_text: 1.0,
            lr_heads: 1.0,
            lr_prompts: 1.0,
            fused: true,
        }
    }
}

/// `[eval]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate on the validation split every this many steps; 0 = only at the end.
    /// Default 200.
    pub every: u64,
    /// Most validation samples used per evaluation. Default 512.
    pub max_samples: usize,
    /// The zero-shot classes: schema keys. Default: the five findings of phantom 5x200.
    pub classes: Vec<String>,
    /// A manifest evaluated zero-shot at the end (e.g. phantom 5x200). Default none.
    pub final_manifest: Option<PathBuf>,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 200,
            max_samples: 512,
            classes: [
                "cardiomegaly",
                "pleural_effusion",
                "pneumothorax",
                "consolidation",
                "edema",
            ]
            .map(String::from)
            .to_vec(),
            final_manifest: None,
        }
    }
}

impl TrainConfig {
    /// A preset from `data/configs/`.
    pub fn preset(name: &str) -> Result<Self, ConfigError> {
        let (_, text) = PRESETS
            .iter()
            .find(|(n, _)| *n == name)
            .ok_or_else(|| ConfigError::UnknownPreset(name.to_string()))?;
        Self::from_toml_str(text, &format!("preset {name}"))
    }

    /// Reads a TOML file and validates it.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses TOML text (`origin` names it in errors) and validates it.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let cfg: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML (what a run saves as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
    }

    /// Applies `key=value` overrides (value in TOML syntax; a bare word is taken as a string),
    /// then validates. Unknown keys are errors.
    pub fn apply_overrides(&mut self, overrides: &[String]) -> Result<(), ConfigError> {
        if overrides.is_empty() {
            return Ok(());
        }
        let mut doc = toml::Value::try_from(&*self).map_err(|e| ConfigError::Parse {
            origin: "configuration".into(),
            message: e.to_string(),
        })?;
        for item in overrides {
            let (key, raw) = item.split_once('=').ok_or_else(|| ConfigError::Parse {
                origin: format!("--set {item}"),
                message: "expected KEY=VALUE, e.g. optim.lr=1e-4".into(),
            })?;
            let key = key.trim();
            let value = parse_value(raw.trim());
            set_path(&mut doc, key, value).map_err(|message| ConfigError::Parse {
                origin: format!("--set {item}"),
                message,
            })?;
        }
        let cfg: Self = doc
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: "--set".into(),
                message: e.to_string(),
            })?;
        cfg.validate()?;
        *self = cfg;
        Ok(())
    }

    /// Checks every value's range; errors name the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                reason,
            })
        };
        let positive = |key: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a finite number > 0, got {v}"))
            }
        };
        let non_negative = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                bad(key, format!("must be a finite number >= 0, got {v}"))
            }
        };
        let fraction = |key: &str, v: f64, lo_open: bool| {
            let ok = v.is_finite() && v <= 1.0 && if lo_open { v > 0.0 } else { v >= 0.0 };
            if ok {
                Ok(())
            } else {
                bad(key, format!("must be in [0, 1], got {v}"))
            }
        };
        if self.run.name.is_empty() || self.run.name.contains(['/', '\\']) {
            return bad(
                "run.name",
                "must be a non-empty name without slashes".into(),
            );
        }
        if self
            .run
            .device
            .parse::<umcl_models::backend::DeviceRequest>()
            .is_err()
        {
            return bad(
                "run.device",
                format!("`{}`: expected auto, cpu, cuda or cuda:N", self.run.device),
            );
        }
        for (key, v) in [
            ("run.steps", self.run.steps),
            ("run.log_every", self.run.log_every),
            ("run.checkpoint_every", self.run.checkpoint_every),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        fraction("data.val_fraction", self.data.val_fraction, false)?;
        if self.data.val_fraction >= 1.0 {
            return bad("data.val_fraction", "must be below 1".into());
        }
        for (key, v) in [
            ("data.image_size", self.data.image_size),
            ("data.batch_size", self.data.batch_size),
            ("data.accum_steps", self.data.accum_steps),
            ("data.workers", self.data.workers),
            ("data.max_text_len", self.data.max_text_len),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.data.image_size < 16 {
            return bad("data.image_size", "must be at least 16".into());
        }
        if !self.data.batch_size.is_multiple_of(self.data.accum_steps) {
            return bad(
                "data.accum_steps",
                format!(
                    "must divide data.batch_size ({}), got {}",
                    self.data.batch_size, self.data.accum_steps
                ),
            );
        }
        if self.data.batch_size < 2 {
            return bad(
                "data.batch_size",
                "a contrastive batch needs at least 2".into(),
            );
        }
        if image_config(&self.model.image).is_none() {
            return bad(
                "model.image",
                format!(
                    "unknown image encoder `{}` (resnet18, resnet34, resnet50, resnet18-w<N>, vit-tiny, vit-small, vit-base, vit<size>-p<patch>-w<width>-d<depth>)",
                    self.model.image
                ),
            );
        }
        if self.model.text_dir.is_none() {
            if text_config(&self.model.text_preset).is_none() {
                return bad(
                    "model.text_preset",
                    format!(
                        "unknown text encoder `{}` (bert-base, minilm-l6, bert-L<layers>-H<hidden>)",
                        self.model.text_preset
                    ),
                );
            }
            if self.model.tokenizer.is_none() {
                return bad(
                    "model.tokenizer",
                    "needed when model.text_dir is not given".into(),
                );
            }
        }
        if self.model.embed_dim <= 0 {
            return bad("model.embed_dim", "must be at least 1".into());
        }
        if let Some(p) = self.model.text_dropout {
            if !(0.0..1.0).contains(&p) {
                return bad("model.text_dropout", format!("must be in [0, 1), got {p}"));
            }
        }
        if self.dist.timeout_s == 0 {
            return bad("dist.timeout_s", "must be at least 1".into());
        }
        positive("dist.bucket_mb", self.dist.bucket_mb)?;
        if !["itl", "clip"].contains(&self.loss.kind.as_str()) {
            return bad(
                "loss.kind",
                format!("`{}`: expected itl or clip", self.loss.kind),
            );
        }
        if !["multi-positive", "soft", "identity"].contains(&self.loss.target.as_str()) {
            return bad(
                "loss.target",
                format!(
                    "`{}`: expected multi-positive, soft or identity",
                    self.loss.target
                ),
            );
        }
        if !["jaccard", "cosine"].contains(&self.loss.similarity.as_str()) {
            return bad(
                "loss.similarity",
                format!("`{}`: expected jaccard or cosine", self.loss.similarity),
            );
        }
        if !["ignore", "positive", "negative"].contains(&self.loss.uncertain.as_str()) {
            return bad(
                "loss.uncertain",
                format!(
                    "`{}`: expected ignore, positive or negative",
                    self.loss.uncertain
                ),
            );
        }
        positive("loss.label_temperature", self.loss.label_temperature)?;
        fraction(
            "loss.false_negative_threshold",
            self.loss.false_negative_threshold,
            false,
        )?;
        non_negative("loss.prompt_weight", self.loss.prompt_weight)?;
        positive("optim.lr", self.optim.lr)?;
        non_negative("optim.weight_decay", self.optim.weight_decay)?;
        for (key, v) in [
            ("optim.beta1", self.optim.beta1),
            ("optim.beta2", self.optim.beta2),
        ] {
            if !(v.is_finite() && (0.0..1.0).contains(&v)) {
                return bad(key, format!("must be in [0, 1), got {v}"));
            }
        }
        positive("optim.eps", self.optim.eps)?;
        fraction("optim.min_lr_ratio", self.optim.min_lr_ratio, false)?;
        non_negative("optim.grad_clip", self.optim.grad_clip)?;
        for (key, v) in [
            ("optim.lr_image", self.optim.lr_image),
            ("optim.lr_text", self.optim.lr_text),
            ("optim.lr_heads", self.optim.lr_heads),
            ("optim.lr_prompts", self.optim.lr_prompts),
        ] {
            non_negative(key, v)?;
        }
        if self.eval.max_samples == 0 {
            return bad("eval.max_samples", "must be at least 1".into());
        }
        let schema = umcl_data::schema::Schema::chest_xray();
        for class in &self.eval.classes {
            if schema.index_of(class).is_none() {
                return bad(
                    "eval.classes",
                    format!("`{class}` is not a key of the chest-xray schema"),
                );
            }
        }
        if self.eval.classes.len() < 2 {
            return bad("eval.classes", "zero-shot needs at least 2 classes".into());
        }
        Ok(())
    }
}

/// The image-encoder configuration for a preset name.
pub fn image_config(name: &str) -> Option<umcl_models::image::ImageEncoderConfig> {
    use umcl_models::image::ImageEncoderConfig;
    use umcl_models::resnet::ResNetConfig;
    if let Some(width) = name.strip_prefix("resnet18-w") {
        let width: i64 = width.parse().ok().filter(|w| *w >= 4)?;
        return Some(ImageEncoderConfig::Resnet(ResNetConfig {
            width,
            ..ResNetConfig::resnet18()
        }));
    }
    if let Some(vit) = small_vit(name) {
        return Some(ImageEncoderConfig::Vit(vit));
    }
    ImageEncoderConfig::preset(name)
}

/// `vit<size>-p<patch>-w<width>-d<depth>`: a small ViT with no batch-dependent layer (heads of
/// 32 channels), e.g. `vit32-p8-w32-d1` for tests whose result must not depend on how a batch
/// is split (data-parallel equivalence).
fn small_vit(name: &str) -> Option<umcl_models::vit::VitConfig> {
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
    let mut vit = umcl_models::vit::VitConfig::tiny();
    vit.image_size = size;
    vit.patch_size = patch;
    vit.embed_dim = width;
    vit.num_heads = width / 32;
    vit.depth = depth as usize;
    Some(vit)
}

/// The text-encoder shape for a preset name.
pub fn text_config(name: &str) -> Option<umcl_models::bert::BertConfig> {
    use umcl_models::bert::BertConfig;
    if let Some(rest) = name.strip_prefix("bert-L") {
        let (layers, hidden) = rest.split_once("-H")?;
        let layers: usize = layers.parse().ok().filter(|l| *l >= 1)?;
        let hidden: i64 = hidden.parse().ok().filter(|h| *h >= 32 && h % 32 == 0)?;
        return Some(BertConfig {
            hidden_size: hidden,
            num_hidden_layers: layers,
            num_attention_heads: hidden / 32,
            intermediate_size: 4 * hidden,
            max_position_embeddings: 512,
            ..BertConfig::base()
        });
    }
    BertConfig::preset(name)
}

/// A bare word is a string; anything else is parsed as a TOML value.
fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(doc: &mut toml::Value, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().ok_or_else(|| "empty key".to_string())?;
    let mut node = doc;
    for (i, part) in parents.iter().enumerate() {
        let table = node
            .as_table_mut()
            .ok_or_else(|| format!("`{}` is not a table", parts[..i].join(".")))?;
        node = table
            .get_mut(*part)
            .ok_or_else(|| format!("unknown key `{}`", parts[..=i].join(".")))?;
    }
    let table = node
        .as_table_mut()
        .ok_or_else(|| format!("`{}` is not a table", parents.join(".")))?;
    // Optional keys are absent from the serialised table; accept them if the type knows them.
    if !table.contains_key(*last) && !OPTIONAL_KEYS.contains(&key) {
        return Err(format!("unknown key `{key}`"));
    }
    // Numbers: let an integer stand for a float field (`optim.lr=1`).
    let value = match (table.get(*last), value) {
        (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => toml::Value::Float(i as f64),
        (_, v) => v,
    };
    table.insert(last.to_string(), value);
    Ok(())
}

/// Keys whose default is "absent", so they do not appear when the config is serialised.
const OPTIONAL_KEYS: [&str; 4] = [
    "model.image_weights",
    "model.text_dir",
    "model.tokenizer",
    "eval.final_manifest",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses_and_validates() {
        for (name, _) in PRESETS {
            let cfg = TrainConfig::preset(name);
            // Presets that name real data paths still parse: paths are checked when used.
            assert!(cfg.is_ok(), "{name}: {:?}", cfg.err());
        }
    }

    #[test]
    fn bad_values_are_rejected_naming_the_key() {
        let cases = [
            ("optim.lr=nan", "optim.lr"),
            ("optim.lr=-0.1", "optim.lr"),
            ("optim.beta2=1.0", "optim.beta2"),
            ("data.batch_size=0", "data.batch_size"),
            ("data.accum_steps=3", "data.accum_steps"),
            ("loss.kind=triplet", "loss.kind"),
            ("model.image=resnet7", "model.image"),
            ("run.device=gpu", "run.device"),
            (
                "eval.classes=[\"cardiomegaly\",\"dragons\"]",
                "eval.classes",
            ),
            ("loss.label_temperature=inf", "loss.label_temperature"),
        ];
        for (item, key) in cases {
            let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
            let err = cfg.apply_overrides(&[item.to_string()]).unwrap_err();
            assert!(err.to_string().contains(key), "{item}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors_in_files_and_overrides() {
        let err = TrainConfig::from_toml_str("[optim]\nlearning_rate = 1.0\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("learning_rate") && err.contains("t.toml"),
            "{err}"
        );
        let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
        let err = cfg
            .apply_overrides(&["optim.momentum=0.9".into()])
            .unwrap_err();
        assert!(err.to_string().contains("optim.momentum"), "{err}");
        let err = cfg.apply_overrides(&["nokey".into()]).unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn overrides_and_round_trip() {
        let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
        cfg.apply_overrides(&[
            "optim.lr=1".into(),
            "run.name=ablation".into(),
            "loss.kind=\"clip\"".into(),
            "model.text_dir=/tmp/minilm".into(),
        ])
        .unwrap();
        assert_eq!(cfg.optim.lr, 1.0);
        assert_eq!(cfg.run.name, "ablation");
        assert_eq!(cfg.loss.kind, "clip");
        assert_eq!(
            cfg.model.text_dir.as_deref(),
            Some(Path::new("/tmp/minilm"))
        );
        let back = TrainConfig::from_toml_str(&cfg.to_toml(), "round trip").unwrap();
        assert_eq!(back, cfg);
    }

    #[test]
    fn encoder_names() {
        assert!(image_config("resnet18-w16").is_some());
        assert!(image_config("resnet18-w2").is_none());
        let bert = text_config("bert-L2-H128").unwrap();
        assert_eq!((bert.num_hidden_layers, bert.hidden_size), (2, 128));
        assert!(text_config("bert-L2-H100").is_none());
    }
}
