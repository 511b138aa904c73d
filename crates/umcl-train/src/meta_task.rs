//! Zero-shot tasks whose truth lives in a sample's metadata rather than in the label schema,
//! such as "COVID-19 vs other findings" on the COVID-19 image data collection, whose raw
//! `finding` field the chest-x-ray schema folds into `pneumonia`.
//!
//! A task file (TOML) names the metadata field, the classes with the field values each covers
//! and the hand-written prompts that describe it, and values that carry no truth:
//!
//! ```
//! use umcl_train::meta_task::MetaTask;
//! let task = MetaTask::from_toml(r#"
//!     name = "COVID-19 vs other findings"
//!     field = "finding"
//!     exclude = ["todo"]
//!     [[classes]]
//!     name = "covid-19"
//!     values = ["COVID-19", "COVID-19, ARDS"]
//!     prompts = ["covid-19 pneumonia"]
//!     [[classes]]
//!     name = "other"
//!     rest = true
//!     prompts = ["bacterial pneumonia", "no acute findings"]
//! "#, "inline").unwrap();
//! assert_eq!(task.class_of(Some("COVID-19, ARDS")).unwrap(), Some(0));
//! assert_eq!(task.class_of(Some("Streptococcus")).unwrap(), Some(1));
//! assert_eq!(task.class_of(Some("todo")).unwrap(), None);
//! ```

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tch::Device;
use umcl_data::loader::LoaderConfig;
use umcl_data::manifest::Manifest;
use umcl_data::tokenize::Tokenizer;
use umcl_models::dual::DualEncoder;

use crate::embed::{embed_samples, prompt_ensemble};
use crate::error::TrainError;
use crate::evaluate::BOOTSTRAP_RESAMPLES;
use crate::metrics::{self, bootstrap_ci, roc_auc, Interval, MulticlassResult};

/// One class of a [`MetaTask`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetaClass {
    /// The class's name in reports.
    pub name: String,
    /// Field values (exact, after trimming) that make a sample this class.
    #[serde(default)]
    pub values: Vec<String>,
    /// This class takes every value no other class names (at most one class).
    #[serde(default)]
    pub rest: bool,
    /// Hand-written prompts; their mean text embedding is the class embedding.
    pub prompts: Vec<String>,
}

/// A zero-shot classification task over a metadata field; see the module docs.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetaTask {
    /// The task's name in reports.
    pub name: String,
    /// The metadata field holding the truth (`meta.<field>` in the manifest).
    pub field: String,
    /// Field values that carry no truth: such samples are left out and counted.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The classes, at least two.
    pub classes: Vec<MetaClass>,
}

impl MetaTask {
    /// Reads and checks a task file.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TrainError::Eval(format!("{}: {e}", path.display())))?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses and checks a task from TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, TrainError> {
        let task: MetaTask =
            toml::from_str(text).map_err(|e| TrainError::Eval(format!("{origin}: {e}")))?;
        let bad = |what: String| Err(TrainError::Eval(format!("{origin}: {what}")));
        if task.classes.len() < 2 {
            return bad(format!(
                "`classes` needs at least two, found {}",
                task.classes.len()
            ));
        }
        if task.classes.iter().filter(|c| c.rest).count() > 1 {
            return bad("only one class may have `rest = true`".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &task.classes {
            if c.prompts.iter().all(|p| p.trim().is_empty()) {
                return bad(format!("class `{}` has no prompt", c.name));
            }
            if c.values.is_empty() && !c.rest {
                return bad(format!(
                    "class `{}` has no `values` and is not `rest`",
                    c.name
                ));
            }
            for v in &c.values {
                if !seen.insert(v.trim().to_string()) || task.exclude.contains(v) {
                    return bad(format!("value `{v}` is named twice"));
                }
            }
        }
        Ok(task)
    }

    /// The class of a sample whose field holds `value`: `Ok(None)` when it is missing or
    /// excluded, an error when no class takes it.
    pub fn class_of(&self, value: Option<&str>) -> Result<Option<usize>, String> {
        let Some(value) = value.map(str::trim) else {
            return Ok(None);
        };
        if self.exclude.iter().any(|e| e.trim() == value) {
            return Ok(None);
        }
        if let Some(i) = self
            .classes
            .iter()
            .position(|c| c.values.iter().any(|v| v.trim() == value))
        {
            return Ok(Some(i));
        }
        match self.classes.iter().position(|c| c.rest) {
            Some(i) => Ok(Some(i)),
            None => Err(format!(
                "`{}` = `{value}` belongs to no class of the task (and none is `rest`)",
                self.field
            )),
        }
    }
}

/// Results of a [`MetaTask`] on one manifest.
#[derive(Debug, Clone, Serialize)]
pub struct MetaZeroShotReport {
    /// The task's name.
    pub task: String,
    /// The manifest evaluated.
    pub manifest: String,
    /// Samples scored.
    pub samples: usize,
    /// Samples left out: no image, or the field missing or excluded.
    pub left_out: usize,
    /// Accuracy, macro-F1 and per-class statistics with bootstrap intervals.
    pub result: MulticlassResult,
    /// For two classes: ROC AUC of the first class's probability, with a bootstrap interval.
    pub auc: Option<Interval>,
}

impl MetaZeroShotReport {
    /// A markdown summary.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "Zero-shot `{}` on `{}`: {} samples ({} left out), hand-written prompts.\n\n",
            self.task, self.manifest, self.samples, self.left_out
        );
        out.push_str(&self.result.to_markdown());
        if let Some(a) = &self.auc {
            out.push_str(&format!(
                "\nROC AUC of `{}`: {:.3} [{:.3}, {:.3}] (bootstrap 95%, {} resamples)\n",
                self.result.class_names[0], a.estimate, a.low, a.high, a.resamples
            ));
        }
        out
    }
}

/// Zero-shot classification of the images of `manifest` by a [`MetaTask`], with the task's
/// hand-written prompts.
pub fn zero_shot_meta(
    model: &DualEncoder,
    manifest: &Path,
    tokenizer: &Arc<Tokenizer>,
    loader_cfg: &LoaderConfig,
    task: &MetaTask,
    device: Device,
) -> Result<MetaZeroShotReport, TrainError> {
    let m = Manifest::read(manifest)?;
    let total = m.samples.len();
    let mut chosen = Vec::new();
    let mut truth = Vec::new();
    for s in m.samples {
        let value = s.meta.get(&task.field).map(String::as_str);
        let class = task.class_of(value).map_err(|e| {
            TrainError::Eval(format!("{}: sample `{}`: {e}", manifest.display(), s.id))
        })?;
        if let (Some(c), Some(_)) = (class, &s.image) {
            truth.push(c);
            chosen.push(s);
        }
    }
    if chosen.is_empty() {
        return Err(TrainError::Eval(format!(
            "{}: no sample with an image has a `{}` value the task classifies",
            manifest.display(),
            task.field
        )));
    }
    let emb = embed_samples(model, chosen, tokenizer, loader_cfg, device)?;
    let images = crate::evaluate::to_array(&emb.image)?;
    let prompts: Vec<Vec<String>> = task.classes.iter().map(|c| c.prompts.clone()).collect();
    let classes = crate::evaluate::to_array(&prompt_ensemble(model, tokenizer, &prompts, device)?)?;
    let scale = model.logit_scale().double_value(&[]);
    let names: Vec<String> = task.classes.iter().map(|c| c.name.clone()).collect();
    let err = |e: metrics::MetricsError| TrainError::Eval(e.to_string());
    let result = metrics::zero_shot_multiclass(images.view(), classes.view(), &truth, scale)
        .and_then(|r| r.with_class_names(&names))
        .and_then(|r| r.with_bootstrap(BOOTSTRAP_RESAMPLES, 0))
        .map_err(err)?;
    let auc = if names.len() == 2 {
        let scores: Vec<f64> = result.probabilities.iter().map(|p| p[0]).collect();
        let positive: Vec<bool> = truth.iter().map(|&t| t == 0).collect();
        let statistic = |idx: &[usize]| {
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            let p: Vec<bool> = idx.iter().map(|&i| positive[i]).collect();
            roc_auc(&s, &p).ok().flatten().unwrap_or(f64::NAN)
        };
        bootstrap_ci(scores.len(), BOOTSTRAP_RESAMPLES, 0, statistic).ok()
    } else {
        None
    };
    Ok(MetaZeroShotReport {
        task: task.name.clone(),
        manifest: manifest.display().to_string(),
        samples: truth.len(),
        left_out: total - truth.len(),
        result,
        auc,
    })
}
