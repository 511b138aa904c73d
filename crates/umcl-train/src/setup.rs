//! Everything a training loop needs, built from the configuration in named steps:
//! [`start`] (backend, device, data-parallel group), [`tokenizer`], [`unify_manifest`]
//! (umcl-data's unification of the manifest's samples), [`split`] (patient-level train and
//! validation parts), [`loaders`], [`build_model`] (the dual encoder, weight import,
//! freezing) and [`step_config`] (the loss configuration of a step).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tch::{Device, Kind};
use umcl_data::augment::Augment;
use umcl_data::labeler::Labeler;
use umcl_data::loader::{Loader, LoaderConfig};
use umcl_data::manifest::Manifest;
use umcl_data::sample::Sample;
use umcl_data::schema::Schema;
use umcl_data::split::{Part, Split, SplitSpec};
use umcl_data::synth::Synthesizer;
use umcl_data::tokenize::{Padding, Tokenizer};
use umcl_data::unify::{TextSynthesis, UnifyOptions};
use umcl_losses::ItlLossConfig;
use umcl_models::bert::BertConfig;
use umcl_models::dual::{ClassName, DualConfig, DualEncoder};
use umcl_models::image::ImageEncoderConfig;
use umcl_models::import::{import_weights, ImportReport};
use umcl_models::prompt::PromptConfig;
use umcl_torch_ext::dist::LaunchEnv;
use umcl_torch_ext::runtime::{self, BackendConfig, CpuHeap, DeviceRequest};

use crate::config::{LossKind, TrainConfig};
use crate::distributed::Dist;
use crate::error::TrainError;
use crate::evaluate;
use crate::step::{Contrastive, StepConfig};

/// Everything the loop needs, built from the configuration.
pub(crate) struct Setup {
    pub device: Device,
    pub tokenizer: Arc<Tokenizer>,
    pub loader: Loader,
    pub val: Vec<Sample>,
    pub eval_loader_cfg: LoaderConfig,
    pub model: DualEncoder,
    pub class_index: Vec<usize>,
    pub step: StepConfig,
    /// Training samples without an image.
    pub report_only: usize,
    /// Texts the labeler found no radiological content in (left without labels).
    pub not_radiological: usize,
    /// This process's place in a data-parallel run (see [`crate::distributed`]).
    pub dist: Option<Dist>,
    /// The pretrained weights imported into the model, one report each.
    pub imports: Vec<WeightImport>,
}

/// One weight file imported into the model, and what the import did.
pub(crate) struct WeightImport {
    /// `image` or `text`.
    pub part: &'static str,
    pub path: PathBuf,
    pub report: ImportReport,
}

impl WeightImport {
    /// A line for the log.
    pub fn line(&self) -> String {
        format!(
            "{} weights from {}: {}",
            self.part,
            self.path.display(),
            self.report
        )
    }

    /// `imports.json`: every import's file and key lists.
    pub fn to_json(imports: &[WeightImport]) -> String {
        let list: Vec<serde_json::Value> = imports
            .iter()
            .map(|i| {
                let mut v = i.report.to_json();
                v["part"] = i.part.into();
                v["path"] = i.path.display().to_string().into();
                v
            })
            .collect();
        let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl Setup {
    pub fn new(cfg: &TrainConfig) -> Result<Self, TrainError> {
        let (device, dist) = start(cfg)?;
        tch::manual_seed(cfg.run.seed as i64);
        let schema = Schema::chest_xray();
        let (tokenizer, tokenizer_path) = tokenizer(cfg)?;
        let synth = Arc::new(Synthesizer::builtin(&schema)?);
        let Sources {
            train,
            weights,
            val,
            report_only,
            not_radiological,
        } = sources(cfg, &schema, &synth)?;
        let image = ImageEncoderConfig::preset(&cfg.model.image).ok_or_else(|| {
            TrainError::Setup(format!("unknown image encoder `{}`", cfg.model.image))
        })?;
        let (loader, eval_loader_cfg) = loaders(cfg, &image, train, &weights, &tokenizer, &synth)?;
        let class_index = evaluate::class_indices(&schema, &cfg.eval.classes)?;
        let (model, imports) =
            build_model(cfg, image, &schema, &tokenizer, &tokenizer_path, device)?;
        let step = step_config(cfg, &class_index, device)?;
        Ok(Self {
            device,
            tokenizer,
            loader,
            val,
            eval_loader_cfg,
            model,
            class_index,
            step,
            report_only,
            not_radiological,
            dist,
            imports,
        })
    }

    /// Rank 0, or the only process: the one that writes checkpoints, logs and progress.
    pub fn is_main(&self) -> bool {
        self.dist.as_ref().is_none_or(|d| d.rank() == 0)
    }

    pub fn rank_world(&self) -> (usize, usize) {
        self.dist.as_ref().map_or((0, 1), |d| (d.rank(), d.world()))
    }
}

/// Starts libtorch (device, threads, CPU heap) and, when the process was started as one rank
/// of several (torchrun's variables), joins the data-parallel group. On CUDA, rank r of a
/// node trains on `cuda:LOCAL_RANK` (NCCL); `cuda` and `auto` mean that device.
pub(crate) fn start(cfg: &TrainConfig) -> Result<(Device, Option<Dist>), TrainError> {
    let request: DeviceRequest = cfg.run.device.parse()?;
    let backend = runtime::init(&BackendConfig {
        device: request,
        threads: (cfg.run.threads > 0).then_some(cfg.run.threads),
        cpu_heap: if cfg.run.keep_cpu_memory {
            CpuHeap::Keep
        } else {
            CpuHeap::System
        },
    })?;
    let mut device = backend.device;
    let launch = LaunchEnv::from_env()?;
    if let (Device::Cuda(_), Some(env)) = (device, &launch) {
        if matches!(request, DeviceRequest::Auto | DeviceRequest::Cuda(0)) {
            let visible = tch::Cuda::device_count().max(0) as usize;
            if env.local_rank >= visible {
                return Err(TrainError::Setup(format!(
                    "LOCAL_RANK={} but only {visible} CUDA device(s) are visible",
                    env.local_rank
                )));
            }
            device = Device::Cuda(env.local_rank);
        }
    }
    let dist = launch
        .map(|env| Dist::join(cfg, &env, device))
        .transpose()?;
    Ok((device, dist))
}

/// The tokenizer (`model.text_dir`'s `tokenizer.json`, else `model.tokenizer`) and its path.
pub(crate) fn tokenizer(cfg: &TrainConfig) -> Result<(Arc<Tokenizer>, PathBuf), TrainError> {
    let path = match (&cfg.model.text_dir, &cfg.model.tokenizer) {
        (Some(dir), _) => dir.join("tokenizer.json"),
        (None, Some(path)) => path.clone(),
        (None, None) => {
            return Err(TrainError::Config(crate::config::ConfigError::Invalid {
                key: "model.tokenizer".into(),
                reason: "needed when model.text_dir is not given".into(),
            }))
        }
    };
    let tokenizer = Tokenizer::from_file(&path, cfg.data.max_text_len)?;
    Ok((Arc::new(tokenizer), path))
}

/// The training and validation samples of every training manifest (`data.manifest`, or
/// `data.manifests`), each unified and split by its own patient split.
pub(crate) struct Sources {
    pub train: Vec<Sample>,
    /// The sampling weight of each training sample (its manifest's).
    pub weights: Vec<f64>,
    pub val: Vec<Sample>,
    /// Training samples without an image.
    pub report_only: usize,
    /// Texts the labeler found no radiological content in.
    pub not_radiological: usize,
}

/// Reads, unifies and splits each training manifest; a patient (split group) in training in
/// one manifest and in validation in another is an error.
pub(crate) fn sources(
    cfg: &TrainConfig,
    schema: &Schema,
    synth: &Synthesizer,
) -> Result<Sources, TrainError> {
    let mut out = Sources {
        train: Vec::new(),
        weights: Vec::new(),
        val: Vec::new(),
        report_only: 0,
        not_radiological: 0,
    };
    let labeler = if cfg.data.labeler_rules.is_empty() {
        Labeler::builtin()
    } else {
        Labeler::from_paths(&cfg.data.labeler_rules)?
    };
    // Split group -> (manifest, part) where it was first seen.
    let mut seen: std::collections::HashMap<String, (PathBuf, Part)> = Default::default();
    for source in cfg.data.sources() {
        let unified = unify_manifest(cfg, &source.path, schema, synth, &labeler)?;
        out.report_only += unified.report_only;
        out.not_radiological += unified.not_radiological;
        let (train, val) = split(cfg, &source.path, unified.samples)?;
        for (part, samples) in [(Part::Train, &train), (Part::Val, &val)] {
            for s in samples {
                let key = s.group_key();
                match seen.get(&key) {
                    Some((other, p)) if *p != part => {
                        return Err(TrainError::Setup(format!(
                            "patient `{key}` is in the {} split of {} and in the {} split of {}: one \
                             patient may not be in training and validation (split the manifests \
                             together, or give each source its own patient ids)",
                            part_name(*p),
                            other.display(),
                            part_name(part),
                            source.path.display()
                        )));
                    }
                    Some(_) => {}
                    None => {
                        seen.insert(key, (source.path.clone(), part));
                    }
                }
            }
        }
        out.weights
            .extend(std::iter::repeat_n(source.weight, train.len()));
        out.train.extend(train);
        out.val.extend(val);
    }
    if out.train.len() < cfg.data.batch_size {
        return Err(TrainError::Setup(format!(
            "the training split has {} samples, fewer than one batch ({})",
            out.train.len(),
            cfg.data.batch_size
        )));
    }
    Ok(out)
}

fn part_name(part: Part) -> &'static str {
    match part {
        Part::Train => "training",
        Part::Val => "validation",
        Part::Test => "test",
    }
}

/// The manifest's samples, unified: labeler labels for reports without labels, and
/// synthesised reports for labels without text (drawn anew each epoch by the loader with
/// `data.resample_text`, or once here).
pub(crate) fn unify_manifest(
    cfg: &TrainConfig,
    path: &Path,
    schema: &Schema,
    synth: &Synthesizer,
    labeler: &Labeler,
) -> Result<umcl_data::unify::Unified, TrainError> {
    let manifest = Manifest::read(path)?;
    manifest.header.check_schema(schema, path)?;
    let text = match (cfg.data.synthesize_text, cfg.data.resample_text) {
        (false, _) => TextSynthesis::Off,
        (true, true) => TextSynthesis::PerEpoch,
        (true, false) => TextSynthesis::Once { seed: cfg.run.seed },
    };
    let opts = UnifyOptions {
        label_reports: cfg.data.label_reports,
        text,
    };
    Ok(umcl_data::unify::unify(
        manifest.samples,
        &opts,
        labeler,
        synth,
        path,
    )?)
}

/// The patient-level split: the manifest's split file when present, else a new one written
/// beside it. Returns the training and validation samples.
pub(crate) fn split(
    cfg: &TrainConfig,
    manifest: &Path,
    samples: Vec<Sample>,
) -> Result<(Vec<Sample>, Vec<Sample>), TrainError> {
    let split_path = umcl_data::split::split_path(manifest);
    let split = if split_path.exists() {
        let split = Split::read(&split_path)?;
        split.check(&samples, &split_path)?;
        let f = cfg.data.val_fraction;
        let fractions = split.spec.fractions;
        if split.fold.is_none() && (fractions[1] - f).abs() > 1e-9 {
            tracing::warn!(
                "{} splits {:?} (train, val, test); data.val_fraction = {f} applies only when \
                 training makes the split (delete the file to make a new one)",
                split_path.display(),
                fractions
            );
        }
        split
    } else {
        let f = cfg.data.val_fraction;
        let split = Split::new(&samples, SplitSpec::new(cfg.run.seed, [1.0 - f, f, 0.0])?);
        split.write(&split_path, manifest)?;
        split
    };
    let part_of = split.lookup();
    let mut train = Vec::new();
    let mut val = Vec::new();
    for s in samples {
        match part_of.get(s.id.as_str()) {
            Some(Part::Train) => train.push(s),
            Some(Part::Val) => val.push(s),
            _ => {}
        }
    }
    Ok((train, val))
}

/// The training loader and the configuration of evaluation loaders (no shuffle, no
/// augmentation, every sample); images are normalised as the `image` encoder's weights expect.
pub(crate) fn loaders(
    cfg: &TrainConfig,
    image: &ImageEncoderConfig,
    train: Vec<Sample>,
    weights: &[f64],
    tokenizer: &Arc<Tokenizer>,
    synth: &Arc<Synthesizer>,
) -> Result<(Loader, LoaderConfig), TrainError> {
    let resample = cfg.data.synthesize_text && cfg.data.resample_text;
    let (mean, std) = image.normalization();
    let loader_cfg = LoaderConfig {
        batch_size: cfg.data.batch_size,
        threads: cfg.data.workers,
        prefetch: cfg.data.prefetch,
        seed: cfg.run.seed,
        shuffle: true,
        drop_last: true,
        skip_bad: cfg.data.skip_bad,
        preprocess: umcl_data::images::Preprocess {
            size: cfg.data.image_size,
            mean,
            std,
            ..Default::default()
        },
        augment: cfg.data.augment.then(Augment::default),
        padding: Padding::Longest,
        synthesize: resample.then(|| synth.clone()),
    };
    let eval_loader_cfg = LoaderConfig {
        shuffle: false,
        drop_last: false,
        augment: None,
        ..loader_cfg.clone()
    };
    let loader = Loader::with_weights(train, weights, Some(tokenizer.clone()), loader_cfg)?;
    Ok((loader, eval_loader_cfg))
}

/// The dual encoder: encoders by name (or a Hugging Face BERT folder, whose weights are
/// imported), continuous prompts for `eval.classes`, pretrained image weights, freezing.
pub(crate) fn build_model(
    cfg: &TrainConfig,
    image: ImageEncoderConfig,
    schema: &Schema,
    tokenizer: &Tokenizer,
    tokenizer_path: &Path,
    device: Device,
) -> Result<(DualEncoder, Vec<WeightImport>), TrainError> {
    let mut text = match &cfg.model.text_dir {
        Some(dir) => BertConfig::from_file(&dir.join("config.json"))?,
        None => {
            let mut t = BertConfig::preset(&cfg.model.text_preset).ok_or_else(|| {
                TrainError::Setup(format!("unknown text encoder `{}`", cfg.model.text_preset))
            })?;
            t.vocab_size = tokenizer.vocab_size() as i64;
            t
        }
    };
    if let Some(p) = cfg.model.text_dropout {
        text.hidden_dropout_prob = p;
        text.attention_probs_dropout_prob = p;
    }
    let mut dual = DualConfig::new(image, text);
    dual.embed_dim = cfg.model.embed_dim;
    dual.tokenizer = Some(tokenizer_path.to_path_buf());
    if cfg.model.prompt_ctx > 0 {
        let templates = umcl_data::synth::PromptTemplates::builtin();
        dual.classes = cfg
            .eval
            .classes
            .iter()
            .map(|k| {
                let name = templates.finding_name(schema, k)?;
                let token_ids = tokenizer.encode_plain(&name)?;
                Ok(ClassName { name, token_ids })
            })
            .collect::<Result<_, TrainError>>()?;
        dual.prompt = Some(PromptConfig {
            n_ctx: cfg.model.prompt_ctx,
            class_specific: cfg.model.prompt_class_specific,
            ..PromptConfig::default()
        });
    }
    let image_config = dual.image.clone();
    let model = DualEncoder::new(&dual, device)?;
    // Imported weights land under the dual encoder's `text.` and `image.` scopes. Every
    // variable of the scope must be in the file and every file key in the model, but for the
    // heads the key maps leave out on purpose (classifier, pooler).
    let mut imports = Vec::new();
    if let Some(dir) = &cfg.model.text_dir {
        let path = dir.join("model.safetensors");
        let report = import_weights(
            &model.vs,
            "text.",
            &path,
            &umcl_models::bert::bert_keys,
            false,
        )?;
        imports.push(WeightImport {
            part: "text",
            path,
            report,
        });
    }
    if let Some(path) = &cfg.model.image_weights {
        let report = image_config.import_weights(&model.vs, "image.", path)?;
        imports.push(WeightImport {
            part: "image",
            path: path.clone(),
            report,
        });
    }
    if cfg.model.freeze_text {
        model.freeze_text();
    }
    if cfg.model.freeze_image {
        model.freeze_image();
    }
    Ok((model, imports))
}

/// What a step computes: the contrastive loss (`loss.*`), the prompt-label term, micro-batches
/// and autocast.
pub(crate) fn step_config(
    cfg: &TrainConfig,
    class_index: &[usize],
    device: Device,
) -> Result<StepConfig, TrainError> {
    let loss_cfg = ItlLossConfig {
        target: cfg.loss.target,
        similarity: cfg.loss.similarity,
        uncertain: cfg.loss.uncertain,
        label_temperature: cfg.loss.label_temperature,
        false_negative_threshold: (cfg.loss.false_negative_threshold > 0.0)
            .then_some(cfg.loss.false_negative_threshold),
        chunk_size: (cfg.loss.chunk_size > 0).then_some(cfg.loss.chunk_size),
        // The loader's label codes are umcl-data's `LabelState::code` values, valid by
        // construction: no need for the check's device synchronisation.
        check_labels: false,
        ..ItlLossConfig::default()
    };
    loss_cfg.validate()?;
    Ok(StepConfig {
        contrastive: match cfg.loss.kind {
            LossKind::Clip => Contrastive::Clip,
            LossKind::Itl => Contrastive::Itl(loss_cfg),
        },
        prompt_weight: cfg.loss.prompt_weight,
        class_index: class_index.to_vec(),
        accum_steps: cfg.data.accum_steps,
        // bf16 autocast for the encoders on CUDA; the losses compute in fp32 regardless.
        autocast: (matches!(device, Device::Cuda(_)) && cfg.run.bf16).then_some(Kind::BFloat16),
    })
}
