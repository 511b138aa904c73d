//! The training configuration: one TOML file, every option documented and defaulted,
//! overridable from the command line (`--set optim.lr=1e-4`), checked before any work.
//!
//! Presets live in `crates/umcl-train/data/configs/` and are embedded, so `umcl train --preset phantom-cpu`
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
use umcl_losses::{LabelSimilarity, Target, UncertainPolicy};

mod overrides;
mod validate;

/// Errors in a configuration, each naming the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error (part of the message).
        error: std::io::Error,
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
        include_str!("../../data/configs/phantom-cpu.toml"),
    ),
    (
        "covid-cxr",
        include_str!("../../data/configs/covid-cxr.toml"),
    ),
    (
        "mimic-chexpert-resnet50",
        include_str!("../../data/configs/mimic-chexpert-resnet50.toml"),
    ),
    (
        "mimic-chexpert-vit-b16",
        include_str!("../../data/configs/mimic-chexpert-vit-b16.toml"),
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
    /// (`umcl_torch_ext::runtime::CpuHeap::Keep`): faster CPU steps, higher peak resident size.
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
    /// Several training manifests in one run; when given, `manifest` is not used (the run
    /// says so):
    /// `manifests = [{ path = "mimic.jsonl" }, { path = "chexpert.jsonl", weight = 0.5 }]`.
    /// Image paths stay relative to each manifest; each manifest keeps its own patient split
    /// (its split file), and a patient may not be in training in one and validation in another.
    /// `weight` (default 1) scales how often a source's samples are drawn: each epoch draws as
    /// many samples as the sources hold, with replacement, each with probability proportional
    /// to its source's weight. With every weight 1 the epoch is a plain shuffle. Default none.
    pub manifests: Vec<SourceManifest>,
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
    /// The labeler's rule files, laid over each other as `umcl label --rules` does: the first
    /// is the base, `builtin` names the built-in rules, so `["builtin", "site.toml"]` adds a
    /// site's rules to them. Relative to the working directory. Default none: the built-in
    /// rules.
    pub labeler_rules: Vec<PathBuf>,
}

/// One manifest of `data.manifests`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceManifest {
    /// The manifest (JSONL); relative to the working directory.
    pub path: PathBuf,
    /// Relative sampling weight of its samples. Default 1.
    #[serde(default = "one")]
    pub weight: f64,
}

fn one() -> f64 {
    1.0
}

impl DataConfig {
    /// The training manifests with their weights: `manifests`, or `manifest` with weight 1.
    pub fn sources(&self) -> Vec<SourceManifest> {
        if self.manifests.is_empty() {
            vec![SourceManifest {
                path: self.manifest.clone(),
                weight: 1.0,
            }]
        } else {
            self.manifests.clone()
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            manifest: "data/phantom/manifest.jsonl".into(),
            manifests: Vec::new(),
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
            labeler_rules: Vec::new(),
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

/// Which contrastive loss a run trains with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// The Image-Text-Label loss: targets from label agreement.
    Itl,
    /// CLIP's InfoNCE with the identity target (the ablation).
    Clip,
}

impl std::fmt::Display for LossKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Itl => "itl",
            Self::Clip => "clip",
        })
    }
}

/// `[loss]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LossConfig {
    /// `itl` (the Image-Text-Label loss) or `clip`. Default "itl".
    pub kind: LossKind,
    /// ITL target: `multi-positive`, `soft` or `identity`. Default "multi-positive".
    pub target: Target,
    /// Label similarity: `jaccard` or `cosine`. Default "jaccard".
    pub similarity: LabelSimilarity,
    /// Uncertain labels: `ignore`, `positive` or `negative`. Default "ignore".
    pub uncertain: UncertainPolicy,
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
            kind: LossKind::Itl,
            target: Target::MultiPositive,
            similarity: LabelSimilarity::Jaccard,
            uncertain: UncertainPolicy::Ignore,
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
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Io {
            path: path.to_path_buf(),
            error,
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

    /// The settings a resumed run may not change, as `(key, checkpoint's value, this
    /// config's value)` for each that differs: every `model` key, and the data shapes the
    /// model was trained on (`data.image_size`, `data.max_text_len`). Steps, learning
    /// rates, evaluation and the rest may change on resume.
    pub fn resume_conflicts(&self, checkpoint: &TrainConfig) -> Vec<(String, String, String)> {
        let show = |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
        let (Ok(old), Ok(new)) = (
            toml::Value::try_from(checkpoint),
            toml::Value::try_from(self),
        ) else {
            return Vec::new();
        };
        let mut keys: Vec<(String, Option<&toml::Value>, Option<&toml::Value>)> = vec![
            (
                "data.image_size".into(),
                old.get("data").and_then(|d| d.get("image_size")),
                new.get("data").and_then(|d| d.get("image_size")),
            ),
            (
                "data.max_text_len".into(),
                old.get("data").and_then(|d| d.get("max_text_len")),
                new.get("data").and_then(|d| d.get("max_text_len")),
            ),
        ];
        let empty = toml::Table::new();
        let old_model = old
            .get("model")
            .and_then(toml::Value::as_table)
            .unwrap_or(&empty);
        let new_model = new
            .get("model")
            .and_then(toml::Value::as_table)
            .unwrap_or(&empty);
        let mut names: Vec<&String> = old_model.keys().chain(new_model.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            keys.push((
                format!("model.{name}"),
                old_model.get(name),
                new_model.get(name),
            ));
        }
        keys.into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(k, a, b)| (k, show(a), show(b)))
            .collect()
    }

    /// The configuration as TOML (what a run saves as `config.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# not serialisable: {e}\n"))
    }
}

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
    fn resume_conflicts_name_the_model_and_shape_keys_only() {
        let base = TrainConfig::preset("phantom-cpu").unwrap();
        let mut changed = base.clone();
        changed
            .apply_overrides(&[
                format!("data.image_size={}", base.data.image_size + 32),
                format!("model.embed_dim={}", base.model.embed_dim / 2),
                "run.steps=5000".into(),
                "optim.lr=1e-5".into(),
            ])
            .unwrap();
        let keys: Vec<String> = changed
            .resume_conflicts(&base)
            .into_iter()
            .map(|(k, _, _)| k)
            .collect();
        assert_eq!(keys, ["data.image_size", "model.embed_dim"]);
        assert!(base.resume_conflicts(&base).is_empty());
    }

    #[test]
    fn a_bare_word_is_a_string_where_the_key_wants_one() {
        for name in ["nan", "inf", "true", "2024", "1e3"] {
            let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
            cfg.apply_overrides(&[format!("run.name={name}")]).unwrap();
            assert_eq!(cfg.run.name, name);
        }
        // Where the key wants a number, `nan` stays the float and is refused as one.
        let mut cfg = TrainConfig::preset("phantom-cpu").unwrap();
        let err = cfg.apply_overrides(&["optim.lr=nan".into()]).unwrap_err();
        assert!(err.to_string().contains("optim.lr"), "{err}");
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

    /// `--set` takes every key of every section, including the optional keys that a
    /// serialised config leaves out. The keys come from serde's own field list (its error for
    /// an unknown key names them all), so a new optional key is covered without editing this.
    #[test]
    fn set_takes_every_key_including_optional_ones() {
        let base = TrainConfig::preset("phantom-cpu").unwrap();
        // The defaults leave every optional key out (the preset sets some).
        let doc = toml::Value::try_from(TrainConfig::default()).unwrap();
        let mut optional = Vec::new();
        for (section, table) in doc.as_table().unwrap() {
            let mut cfg = base.clone();
            let err = cfg
                .apply_overrides(&[format!("{section}.no_such_key=1")])
                .unwrap_err()
                .to_string();
            let listed = err.split_once("expected").map_or("", |(_, rest)| rest);
            let fields: Vec<&str> = listed.split('`').skip(1).step_by(2).collect();
            assert!(!fields.is_empty(), "no field list in: {err}");
            for field in fields {
                if table.get(field).is_none() {
                    optional.push((section.clone(), field.to_string()));
                }
            }
        }
        let names: Vec<String> = optional.iter().map(|(s, f)| format!("{s}.{f}")).collect();
        for known in [
            "model.image_weights",
            "model.text_dir",
            "model.tokenizer",
            "model.text_dropout",
            "eval.final_manifest",
        ] {
            assert!(names.iter().any(|n| n == known), "{known} not in {names:?}");
        }
        for (section, field) in &optional {
            let taken = ["\"x.txt\"", "0.25", "1", "true"].iter().any(|value| {
                let mut cfg = base.clone();
                cfg.apply_overrides(&[format!("{section}.{field}={value}")])
                    .is_ok()
                    && toml::Value::try_from(&cfg).unwrap()[section.as_str()]
                        .get(field)
                        .is_some()
            });
            assert!(
                taken,
                "--set {section}.{field} is refused for every kind of value"
            );
        }
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
        assert_eq!(cfg.loss.kind, LossKind::Clip);
        assert_eq!(
            cfg.model.text_dir.as_deref(),
            Some(Path::new("/tmp/minilm"))
        );
        let back = TrainConfig::from_toml_str(&cfg.to_toml(), "round trip").unwrap();
        assert_eq!(back, cfg);
    }
}
