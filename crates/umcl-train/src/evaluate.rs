//! Evaluation of a dual encoder: validation during training, zero-shot classification with
//! learned or hand-written prompts, image-text retrieval and the linear probe. The model
//! computes embeddings ([`crate::embed`]); [`crate::metrics`] scores them.

use std::path::Path;
use std::sync::Arc;

use ndarray::Array2;
use serde::Serialize;
use tch::{Device, Kind, Tensor};
use umcl_data::loader::LoaderConfig;
use umcl_data::manifest::Manifest;
use umcl_data::sample::Sample;
use umcl_data::schema::{LabelState, Schema};
use umcl_data::tokenize::Tokenizer;
use umcl_models::dual::DualEncoder;

use crate::embed::{
    class_prompts, embed_images, embed_samples, learned_classes, prompt_ensemble, Embedded,
};
use crate::error::TrainError;
use crate::metrics::{self, MulticlassResult, MultilabelResult};

/// Bootstrap resamples for confidence intervals.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// Validation result during training.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// Samples scored.
    pub samples: usize,
    /// Per-class AUC of the learned (or, without prompts, hand-written) class embeddings'
    /// cosine scores; `None` where a class has only one label value.
    pub class_auc: Vec<Option<f64>>,
    /// Mean of the defined AUCs; the metric that picks the best checkpoint.
    pub mean_auc: Option<f64>,
    /// Samples left out because their image could not be read (`data.skip_bad`).
    #[serde(skip)]
    pub skipped: Vec<umcl_data::loader::Skipped>,
}

impl Validation {
    /// The line written to `metrics.jsonl`.
    pub fn record(&self, step: u64) -> serde_json::Value {
        serde_json::json!({
            "kind": "eval",
            "step": step,
            "val_samples": self.samples,
            "val_skipped": self.skipped.len(),
            "val_mean_auc": self.mean_auc,
            "val_class_auc": self.class_auc,
        })
    }
}

pub(crate) fn to_array(t: &Tensor) -> Result<Array2<f32>, TrainError> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous();
    let size = t.size();
    let (rows, cols) = (size[0] as usize, size.get(1).copied().unwrap_or(1) as usize);
    let data = Vec::<f32>::try_from(t.reshape([-1]))?;
    Array2::from_shape_vec((rows, cols), data).map_err(|e| TrainError::Eval(e.to_string()))
}

/// Schema indices of class keys; an unknown key is an error naming it.
pub fn class_indices(schema: &Schema, classes: &[String]) -> Result<Vec<usize>, TrainError> {
    classes
        .iter()
        .map(|k| {
            schema
                .index_of(k)
                .ok_or_else(|| TrainError::Eval(format!("unknown class `{k}`")))
        })
        .collect()
}

/// The samples with an image and exactly one positive among the classes at `index`, and the
/// position of that class in `index` for each: the multi-class tasks' samples and truth.
fn single_positive(samples: Vec<Sample>, index: &[usize]) -> (Vec<Sample>, Vec<usize>) {
    let mut chosen = Vec::new();
    let mut truth = Vec::new();
    for s in samples {
        if s.image.is_none() {
            continue;
        }
        let mut positives = index
            .iter()
            .enumerate()
            .filter(|(_, &k)| s.labels.get(k) == Some(&LabelState::Positive))
            .map(|(c, _)| c);
        if let (Some(only), None) = (positives.next(), positives.next()) {
            truth.push(only);
            chosen.push(s);
        }
    }
    (chosen, truth)
}

fn metric_err(e: metrics::MetricsError) -> TrainError {
    TrainError::Eval(e.to_string())
}

/// The class embeddings to score with: learned prompts when the model has them, else the
/// hand-written prompt ensembles.
fn scoring_classes(
    model: &DualEncoder,
    tokenizer: &Tokenizer,
    classes: &[String],
    device: Device,
) -> Result<Tensor, TrainError> {
    if model.prompt().is_some() {
        learned_classes(model)
    } else {
        let prompts = class_prompts(&Schema::chest_xray(), classes)?;
        prompt_ensemble(model, tokenizer, &prompts, device)
    }
}

/// Scores up to `max_samples` validation samples (those with an image) by mean AUC over the
/// eval classes.
pub fn validation(
    model: &DualEncoder,
    val: &[Sample],
    tokenizer: &Arc<Tokenizer>,
    loader_cfg: &LoaderConfig,
    class_index: &[usize],
    device: Device,
    max_samples: usize,
) -> Result<Validation, TrainError> {
    let samples: Vec<Sample> = val
        .iter()
        .filter(|s| s.image.is_some())
        .take(max_samples)
        .cloned()
        .collect();
    if samples.is_empty() {
        return Ok(Validation {
            samples: 0,
            class_auc: vec![None; class_index.len()],
            mean_auc: None,
            skipped: Vec::new(),
        });
    }
    let keys: Vec<String> = {
        let schema = Schema::chest_xray();
        let all: Vec<&str> = schema.keys().collect();
        class_index.iter().map(|&i| all[i].to_string()).collect()
    };
    let emb = embed_samples(model, samples, tokenizer, loader_cfg, device)?;
    let classes = scoring_classes(model, tokenizer, &keys, device)?;
    let scores = to_array(&emb.image.matmul(&classes.tr()))?;
    let codes = to_array(&emb.labels.to_kind(Kind::Float))?;
    let mut class_auc = Vec::with_capacity(class_index.len());
    // As in the losses, a labelled sample's unmentioned findings count as absent (datasets such
    // as the COVID collection name only the finding that is present); uncertain ones are left out.
    let labelled: Vec<bool> = codes
        .rows()
        .into_iter()
        .map(|row| row.iter().any(|&c| c == 1.0 || c == 0.0))
        .collect();
    for (c, &k) in class_index.iter().enumerate() {
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for r in 0..scores.nrows() {
            let code = codes[[r, k]];
            if code == 1.0 || code == 0.0 || (code == -2.0 && labelled[r]) {
                s.push(f64::from(scores[[r, c]]));
                y.push(code == 1.0);
            }
        }
        let auc = if s.is_empty() {
            None
        } else {
            metrics::roc_auc(&s, &y).map_err(metric_err)?
        };
        class_auc.push(auc);
    }
    let defined: Vec<f64> = class_auc.iter().flatten().copied().collect();
    let mean_auc =
        (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
    Ok(Validation {
        samples: emb.ids.len(),
        class_auc,
        mean_auc,
        skipped: emb.skipped,
    })
}

/// Zero-shot results on one manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroShotReport {
    /// The manifest evaluated.
    pub manifest: String,
    /// Samples with exactly one positive eval class (the multi-class task).
    pub samples: usize,
    /// Samples left out (no image, or not exactly one positive eval class).
    pub left_out: usize,
    /// The classes (schema keys).
    pub classes: Vec<String>,
    /// With the learned continuous prompts (when the model has them).
    pub learned: Option<MulticlassResult>,
    /// With the hand-written prompt ensembles.
    pub handwritten: MulticlassResult,
    /// Multi-label AUC with hand-written positive/negative prompt pairs, on samples whose eval
    /// classes are labelled.
    pub multilabel: Option<MultilabelResult>,
}

impl ZeroShotReport {
    /// A markdown summary.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Zero-shot on `{}`: {} samples ({} left out), classes {}.\n\n",
            self.manifest,
            self.samples,
            self.left_out,
            self.classes.join(", ")
        );
        if let Some(l) = &self.learned {
            out.push_str("### Learned prompts\n\n");
            out.push_str(&l.to_markdown());
            out.push('\n');
        }
        out.push_str("### Hand-written prompts\n\n");
        out.push_str(&self.handwritten.to_markdown());
        if let Some(m) = &self.multilabel {
            out.push_str("\n### Multi-label (positive/negative prompt pairs)\n\n");
            out.push_str(&m.to_markdown());
        }
        out
    }

    /// The headline accuracy: learned prompts when present, else hand-written.
    pub fn accuracy(&self) -> f64 {
        self.learned.as_ref().unwrap_or(&self.handwritten).accuracy
    }
}

/// Zero-shot classification of the images of `manifest` among `classes` (schema keys).
pub fn zero_shot_manifest(
    model: &DualEncoder,
    manifest: &Path,
    tokenizer: &Arc<Tokenizer>,
    loader_cfg: &LoaderConfig,
    classes: &[String],
    device: Device,
) -> Result<ZeroShotReport, TrainError> {
    let schema = Schema::chest_xray();
    let m = Manifest::read(manifest)?;
    m.header.check_schema(&schema, manifest)?;
    let index = class_indices(&schema, classes)?;
    let total = m.samples.len();
    let (chosen, truth) = single_positive(m.samples, &index);
    if chosen.is_empty() {
        return Err(TrainError::Eval(format!(
            "{}: no image has exactly one positive among {}",
            manifest.display(),
            classes.join(", ")
        )));
    }
    let emb = embed_samples(model, chosen, tokenizer, loader_cfg, device)?;
    let images = to_array(&emb.image)?;
    let scale = model.logit_scale().double_value(&[]);
    let score = |class_emb: &Tensor| -> Result<MulticlassResult, TrainError> {
        let c = to_array(class_emb)?;
        metrics::zero_shot_multiclass(images.view(), c.view(), &truth, scale)
            .and_then(|r| r.with_class_names(classes))
            .and_then(|r| r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
            .map_err(metric_err)
    };
    let learned = match model.prompt() {
        Some(_) => Some(score(&learned_classes(model)?)?),
        None => None,
    };
    let prompts = class_prompts(&schema, classes)?;
    let handwritten = score(&prompt_ensemble(model, tokenizer, &prompts, device)?)?;
    let multilabel = multilabel_auc(model, tokenizer, &emb, &index, classes, device).ok();
    Ok(ZeroShotReport {
        manifest: manifest.display().to_string(),
        samples: emb.ids.len(),
        left_out: total - emb.ids.len(),
        classes: classes.to_vec(),
        learned,
        handwritten,
        multilabel,
    })
}

/// Multi-label AUC with positive/negative prompt pairs.
fn multilabel_auc(
    model: &DualEncoder,
    tokenizer: &Tokenizer,
    emb: &Embedded,
    index: &[usize],
    classes: &[String],
    device: Device,
) -> Result<MultilabelResult, TrainError> {
    let schema = Schema::chest_xray();
    let templates = umcl_data::synth::PromptTemplates::builtin();
    let mut pos = Vec::new();
    let mut neg = Vec::new();
    for k in classes {
        let pair = templates.pair(&schema, k)?;
        pos.push(pair.positive);
        neg.push(pair.negative);
    }
    let pos = to_array(&prompt_ensemble(model, tokenizer, &pos, device)?)?;
    let neg = to_array(&prompt_ensemble(model, tokenizer, &neg, device)?)?;
    let images = to_array(&emb.image)?;
    let codes = to_array(&emb.labels.to_kind(Kind::Float))?;
    let truth = Array2::from_shape_fn((codes.nrows(), index.len()), |(r, c)| {
        let code = codes[[r, index[c]]];
        (code == 1.0 || code == 0.0).then_some(code == 1.0)
    });
    let scale = model.logit_scale().double_value(&[]);
    metrics::zero_shot_multilabel(images.view(), pos.view(), neg.view(), truth.view(), scale)
        .and_then(|r| r.with_class_names(classes))
        .and_then(|r| r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
        .map_err(metric_err)
}

/// Image-text retrieval on the samples of `manifest` that have both.
pub fn retrieval_manifest(
    model: &DualEncoder,
    manifest: &Path,
    tokenizer: &Arc<Tokenizer>,
    loader_cfg: &LoaderConfig,
    device: Device,
) -> Result<metrics::RetrievalResult, TrainError> {
    let m = Manifest::read(manifest)?;
    let pairs: Vec<Sample> = m
        .samples
        .into_iter()
        .filter(|s| s.image.is_some() && s.text.is_some())
        .collect();
    if pairs.len() < 2 {
        return Err(TrainError::Eval(format!(
            "{}: retrieval needs at least 2 samples with image and text",
            manifest.display()
        )));
    }
    let emb = embed_samples(model, pairs, tokenizer, loader_cfg, device)?;
    let (i, t) = (to_array(&emb.image)?, to_array(&emb.text)?);
    metrics::retrieval(i.view(), t.view())
        .and_then(|r| r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
        .map_err(metric_err)
}

/// Frozen image features (projected embeddings) and the class of each sample with exactly one
/// positive among `index`.
pub fn image_features_with_class(
    model: &DualEncoder,
    samples: Vec<Sample>,
    index: &[usize],
    tokenizer: &Arc<Tokenizer>,
    loader_cfg: &LoaderConfig,
    device: Device,
) -> Result<(Array2<f32>, Vec<usize>), TrainError> {
    let (chosen, truth) = single_positive(samples, index);
    if chosen.is_empty() {
        return Err(TrainError::Eval(
            "no sample has exactly one positive class".into(),
        ));
    }
    let emb = embed_samples(model, chosen, tokenizer, loader_cfg, device)?;
    Ok((to_array(&emb.image)?, truth))
}

/// A trained model ready for evaluation, with what is needed to feed it.
pub struct Trained {
    /// The model (best or given checkpoint).
    pub model: DualEncoder,
    /// Its tokenizer.
    pub tokenizer: Arc<Tokenizer>,
    /// Evaluation loading (no augmentation), with the run's image size and text length.
    pub loader_cfg: LoaderConfig,
    /// The class keys of its learned prompts, or of the run's eval classes.
    pub classes: Vec<String>,
}

/// Loads a checkpoint for evaluation. `path` is a checkpoint directory (holding
/// `model.safetensors`) or a run directory (its `checkpoints/best`, else the newest
/// checkpoint). The run's `config.toml` two levels up supplies image size and text length.
pub fn load_trained(path: &Path, device: Device) -> Result<Trained, TrainError> {
    let ckpt = if path.join("model.safetensors").exists() {
        path.to_path_buf()
    } else {
        let checkpoints = crate::checkpoint::Checkpoints::new(path, 1);
        let best = checkpoints.dir().join("best");
        if best.join("model.safetensors").exists() {
            best
        } else {
            checkpoints.latest().ok_or_else(|| TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: "neither a checkpoint (no model.safetensors) nor a run directory with checkpoints".into(),
            })?
        }
    };
    let model = DualEncoder::load(&ckpt.join("model.safetensors"), device)?;
    let run_cfg = ckpt
        .parent()
        .and_then(Path::parent)
        .map(|run| run.join("config.toml"))
        .filter(|p| p.exists())
        .map(|p| crate::config::TrainConfig::from_file(&p))
        .transpose()?;
    let tokenizer_path =
        model
            .config()
            .tokenizer
            .clone()
            .ok_or_else(|| TrainError::Checkpoint {
                path: ckpt.clone(),
                message: "model.json names no tokenizer".into(),
            })?;
    let max_len = run_cfg.as_ref().map_or(128, |c| c.data.max_text_len);
    let tokenizer = Arc::new(Tokenizer::from_file(&tokenizer_path, max_len)?);
    let image_size = run_cfg.as_ref().map_or(224, |c| c.data.image_size);
    let (mean, std) = model.config().image.normalization();
    let loader_cfg = LoaderConfig {
        batch_size: 64,
        shuffle: false,
        augment: None,
        preprocess: umcl_data::images::Preprocess {
            size: image_size,
            mean,
            std,
            ..Default::default()
        },
        ..LoaderConfig::default()
    };
    let classes = match &run_cfg {
        Some(c) => c.eval.classes.clone(),
        None => crate::config::EvalConfig::default().classes,
    };
    Ok(Trained {
        model,
        tokenizer,
        loader_cfg,
        classes,
    })
}

/// Linear probe on frozen image features: the manifest's samples with exactly one positive
/// among `classes` are split by patient 70/30 (seed 0); logistic regression is fitted on 1%,
/// 10% and 100% of the training part and scored on the rest.
pub fn linear_probe_manifest(
    trained: &Trained,
    manifest: &Path,
    classes: &[String],
    device: Device,
) -> Result<Vec<metrics::ProbeResult>, TrainError> {
    let schema = Schema::chest_xray();
    let m = Manifest::read(manifest)?;
    let index = class_indices(&schema, classes)?;
    let split = umcl_data::split::Split::new(
        &m.samples,
        umcl_data::split::SplitSpec::new(0, [0.7, 0.0, 0.3])?,
    );
    let part = split.lookup();
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for s in m.samples {
        match part.get(s.id.as_str()) {
            Some(umcl_data::split::Part::Train) => train.push(s),
            _ => test.push(s),
        }
    }
    let (tx, ty) = image_features_with_class(
        &trained.model,
        train,
        &index,
        &trained.tokenizer,
        &trained.loader_cfg,
        device,
    )?;
    let (vx, vy) = image_features_with_class(
        &trained.model,
        test,
        &index,
        &trained.tokenizer,
        &trained.loader_cfg,
        device,
    )?;
    [0.01, 0.1, 1.0]
        .into_iter()
        .map(|fraction| {
            metrics::linear_probe(tx.view(), &ty, vx.view(), &vy, fraction, 0)
                .and_then(|r| r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
                .map_err(metric_err)
        })
        .collect()
}

/// Which image vectors a linear probe reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeFeatures {
    /// The model's projected image embeddings (what its contrastive loss compares).
    Embedding,
    /// The image encoder's pooled features before the projection: the usual probe of an
    /// encoder, and the only fair one for a model whose projection was never trained.
    Pooled,
}

/// The class of each sample for a probe: one of the schema `classes` (exactly one positive
/// among them), or a [`MetaTask`](crate::meta_task::MetaTask)'s class of a metadata field.
pub enum ProbeTruth<'a> {
    /// Schema keys.
    Schema(&'a [String]),
    /// A metadata task.
    Meta(&'a crate::meta_task::MetaTask),
}

impl ProbeTruth<'_> {
    /// The images with a class, and their classes.
    fn classify(&self, samples: Vec<Sample>) -> Result<(Vec<Sample>, Vec<usize>), TrainError> {
        match self {
            ProbeTruth::Schema(classes) => {
                let index = class_indices(&Schema::chest_xray(), classes)?;
                Ok(single_positive(samples, &index))
            }
            ProbeTruth::Meta(task) => {
                let (mut chosen, mut truth) = (Vec::new(), Vec::new());
                for s in samples.into_iter().filter(|s| s.image.is_some()) {
                    let class = task
                        .class_of(s.meta.get(&task.field).map(String::as_str))
                        .map_err(|e| TrainError::Eval(format!("sample `{}`: {e}", s.id)))?;
                    if let Some(c) = class {
                        truth.push(c);
                        chosen.push(s);
                    }
                }
                Ok((chosen, truth))
            }
        }
    }

    fn class_names(&self) -> Vec<String> {
        match self {
            ProbeTruth::Schema(classes) => classes.to_vec(),
            ProbeTruth::Meta(task) => task.classes.iter().map(|c| c.name.clone()).collect(),
        }
    }

    fn describe(&self) -> String {
        match self {
            ProbeTruth::Schema(classes) => {
                format!("exactly one positive among {}", classes.join(", "))
            }
            ProbeTruth::Meta(task) => format!("a class of the task `{}`", task.name),
        }
    }
}

/// Linear probe fitted on the images of `train` and scored on those of `test` (for example
/// one fold of a patient-level cross-validation: its training and validation parts, and its
/// test part), each image with a class from `truth`. Features are L2-normalised; logistic
/// regression is fitted on 1%, 10% and 100% of the training images, and the intervals
/// resample the test **patients** (all images of a drawn patient), not single images.
pub fn linear_probe_split(
    trained: &Trained,
    train: Vec<Sample>,
    test: Vec<Sample>,
    truth: &ProbeTruth<'_>,
    features: ProbeFeatures,
    device: Device,
) -> Result<Vec<metrics::ProbeResult>, TrainError> {
    let pooled = features == ProbeFeatures::Pooled;
    let embed = |samples: Vec<Sample>, part: &str| {
        let (chosen, classes) = truth.classify(samples)?;
        if chosen.is_empty() {
            return Err(TrainError::Eval(format!(
                "no {part} image has {}",
                truth.describe()
            )));
        }
        let truth = classes;
        let patient: std::collections::HashMap<String, String> = chosen
            .iter()
            .map(|s| (s.id.clone(), s.group_key()))
            .collect();
        let (ids, x) = embed_images(
            &trained.model,
            chosen,
            &trained.tokenizer,
            &trained.loader_cfg,
            pooled,
            device,
        )?;
        // Rows follow `chosen`, whose truth is aligned with it.
        Ok((ids, to_array(&x)?, truth, patient))
    };
    let (_, tx, ty, _) = embed(train, "training")?;
    let (ids, vx, vy, patient) = embed(test, "test")?;
    let mut group_of_key: std::collections::HashMap<&str, usize> = Default::default();
    let groups: Vec<usize> = ids
        .iter()
        .map(|id| {
            let key = patient.get(id).map_or(id.as_str(), String::as_str);
            let next = group_of_key.len();
            *group_of_key.entry(key).or_insert(next)
        })
        .collect();
    [0.01, 0.1, 1.0]
        .into_iter()
        .map(|fraction| {
            metrics::linear_probe(tx.view(), &ty, vx.view(), &vy, fraction, 0)
                .and_then(|mut r| {
                    r.metrics = r.metrics.with_class_names(&truth.class_names())?;
                    metrics::by_groups(&groups, || r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
                })
                .map_err(metric_err)
        })
        .collect()
}

/// Zero-shot scores of image files: per image, the classes ranked by softmax probability over
/// `scale * cos(image, class)`, with learned prompts or hand-written prompt ensembles.
pub fn classify_images(
    trained: &Trained,
    paths: &[std::path::PathBuf],
    classes: &[String],
    learned: bool,
    device: Device,
) -> Result<Vec<Vec<(String, f64)>>, TrainError> {
    let pre = &trained.loader_cfg.preprocess;
    let len = pre.output_len();
    let mut buf = vec![0f32; len * paths.len()];
    for (path, out) in paths.iter().zip(buf.chunks_mut(len)) {
        let img = umcl_data::images::load(path).map_err(|e| TrainError::Eval(e.to_string()))?;
        pre.process(&img, out)
            .map_err(|e| TrainError::Eval(format!("{}: {e}", path.display())))?;
    }
    let size = pre.size as i64;
    let images = Tensor::from_slice(&buf)
        .reshape([paths.len() as i64, pre.channels as i64, size, size])
        .to_device(device);
    let class_emb = if learned {
        learned_classes(&trained.model)?
    } else {
        let prompts = class_prompts(&Schema::chest_xray(), classes)?;
        prompt_ensemble(&trained.model, &trained.tokenizer, &prompts, device)?
    };
    let _guard = tch::no_grad_guard();
    let emb = umcl_torch_ext::ops::l2_normalize(
        &trained
            .model
            .encode_image(&images, false)?
            .to_kind(Kind::Float),
    )
    .to_device(Device::Cpu);
    let scale = trained.model.logit_scale().to_device(Device::Cpu);
    let probs = (emb.matmul(&class_emb.tr()) * scale).softmax(1, Kind::Double);
    let probs = to_array(&probs)?;
    Ok(probs
        .rows()
        .into_iter()
        .map(|row| {
            let mut ranked: Vec<(String, f64)> = classes
                .iter()
                .cloned()
                .zip(row.iter().map(|&p| f64::from(p)))
                .collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
            ranked
        })
        .collect())
}
