//! Multi-class scores: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix,
//! and zero-shot classification from prompt embeddings.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use super::{
    bootstrap_ci, cell, check_same_dim, check_scale, ci_cell, default_names, l2_normalized,
    md_escape, owned_names, Interval, MetricsError, Result,
};

/// Precision, recall and F1 of one class, with 0 where a ratio has a zero denominator
/// (scikit-learn's `zero_division=0`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    /// True positives / predicted positives.
    pub precision: f64,
    /// True positives / actual positives.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Number of samples of this class.
    pub support: usize,
    /// Number of samples predicted as this class.
    pub predicted: usize,
}

/// Bootstrap intervals of a [`MulticlassResult`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MulticlassCi {
    /// Accuracy.
    pub accuracy: Interval,
    /// Macro-F1.
    pub macro_f1: Interval,
}

/// The scores of a multi-class prediction.
///
/// `macro_f1` is the mean F1 over the classes that occur in the truth or in the predictions
/// (scikit-learn's `f1_score(average="macro")`, which averages over the labels present); a class
/// absent from both is listed with zeros and left out of the mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulticlassResult {
    /// Name of each class (`class 0`, ... until [`MulticlassResult::with_class_names`]).
    pub class_names: Vec<String>,
    /// Fraction of samples predicted right.
    pub accuracy: f64,
    /// Mean F1 over the classes present in truth or predictions.
    pub macro_f1: f64,
    /// Per-class precision, recall, F1, support.
    pub per_class: Vec<ClassStats>,
    /// `confusion[t][p]`: samples of true class `t` predicted as `p`.
    pub confusion: Vec<Vec<usize>>,
    /// True class of each sample.
    pub truth: Vec<usize>,
    /// Predicted class of each sample.
    pub predictions: Vec<usize>,
    /// Class probabilities of each sample (`[N][C]`); empty when the result was built from
    /// predictions alone.
    pub probabilities: Vec<Vec<f64>>,
    /// Bootstrap intervals, filled by [`MulticlassResult::with_bootstrap`].
    pub ci: Option<MulticlassCi>,
}

/// Confusion counts over the samples `idx`.
fn confusion(truth: &[usize], pred: &[usize], classes: usize, idx: &[usize]) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0usize; classes]; classes];
    for &i in idx {
        m[truth[i]][pred[i]] += 1;
    }
    m
}

/// Per-class stats, accuracy and macro-F1 of a confusion matrix.
fn scores(m: &[Vec<usize>]) -> (Vec<ClassStats>, f64, f64) {
    let classes = m.len();
    let total: usize = m.iter().map(|r| r.iter().sum::<usize>()).sum();
    let correct: usize = (0..classes).map(|c| m[c][c]).sum();
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut stats = Vec::with_capacity(classes);
    let (mut f1_sum, mut present) = (0.0, 0usize);
    for c in 0..classes {
        let tp = m[c][c];
        let support: usize = m[c].iter().sum();
        let predicted: usize = m.iter().map(|r| r[c]).sum();
        let precision = ratio(tp, predicted);
        let recall = ratio(tp, support);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        if support + predicted > 0 {
            f1_sum += f1;
            present += 1;
        }
        stats.push(ClassStats {
            precision,
            recall,
            f1,
            support,
            predicted,
        });
    }
    let macro_f1 = if present == 0 {
        0.0
    } else {
        f1_sum / present as f64
    };
    (stats, ratio(correct, total), macro_f1)
}

fn check_labels(labels: &[usize], classes: usize, what: &'static str) -> Result<()> {
    if let Some(index) = labels.iter().position(|&l| l >= classes) {
        return Err(MetricsError::LabelOutOfRange {
            what,
            index,
            label: labels[index],
            classes,
        });
    }
    Ok(())
}

impl MulticlassResult {
    /// Scores predictions against the truth for `num_classes` classes (no probabilities).
    ///
    /// ```
    /// use umcl_train::metrics::MulticlassResult;
    /// let r = MulticlassResult::from_predictions(&[0, 0, 1, 1], &[0, 1, 1, 1], 2).unwrap();
    /// assert_eq!(r.accuracy, 0.75);
    /// // class 0: P = 1, R = 1/2, F1 = 2/3; class 1: P = 2/3, R = 1, F1 = 4/5.
    /// assert!((r.macro_f1 - (2.0 / 3.0 + 0.8) / 2.0).abs() < 1e-12);
    /// ```
    pub fn from_predictions(
        truth: &[usize],
        predictions: &[usize],
        num_classes: usize,
    ) -> Result<Self> {
        Self::assemble(truth, predictions, Vec::new(), num_classes)
    }

    pub(crate) fn assemble(
        truth: &[usize],
        predictions: &[usize],
        probabilities: Vec<Vec<f64>>,
        num_classes: usize,
    ) -> Result<Self> {
        if truth.is_empty() {
            return Err(MetricsError::Empty { what: "truth" });
        }
        if num_classes == 0 {
            return Err(MetricsError::InvalidArgument {
                name: "num_classes",
                reason: "must be at least 1".to_string(),
            });
        }
        if predictions.len() != truth.len() {
            return Err(MetricsError::Shape {
                what: "predictions",
                expected: format!("{} entries (one per truth label)", truth.len()),
                found: format!("{} entries", predictions.len()),
            });
        }
        check_labels(truth, num_classes, "truth")?;
        check_labels(predictions, num_classes, "predictions")?;
        let all: Vec<usize> = (0..truth.len()).collect();
        let m = confusion(truth, predictions, num_classes, &all);
        let (per_class, accuracy, macro_f1) = scores(&m);
        Ok(Self {
            class_names: default_names(num_classes),
            accuracy,
            macro_f1,
            per_class,
            confusion: m,
            truth: truth.to_vec(),
            predictions: predictions.to_vec(),
            probabilities,
            ci: None,
        })
    }

    /// Names the classes (one name per class).
    pub fn with_class_names<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        self.class_names = owned_names(names, self.per_class.len())?;
        Ok(self)
    }

    /// Fills [`MulticlassResult::ci`] with bootstrap intervals of accuracy and macro-F1 over the
    /// samples (see [`bootstrap_ci`]; both use the same resamples).
    pub fn with_bootstrap(mut self, resamples: usize, seed: u64) -> Result<Self> {
        let classes = self.per_class.len();
        let (t, p) = (&self.truth, &self.predictions);
        let accuracy = bootstrap_ci(t.len(), resamples, seed, |idx| {
            idx.iter().filter(|&&i| t[i] == p[i]).count() as f64 / idx.len() as f64
        })?;
        let macro_f1 = bootstrap_ci(t.len(), resamples, seed, |idx| {
            scores(&confusion(t, p, classes, idx)).2
        })?;
        self.ci = Some(MulticlassCi { accuracy, macro_f1 });
        Ok(self)
    }

    /// A markdown summary: accuracy and macro-F1 (with intervals when computed), then a
    /// per-class table, then the confusion matrix (rows: truth, columns: prediction).
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| metric | value | 95% CI |\n|---|---|---|\n");
        let ci = self.ci.as_ref();
        s += &format!(
            "| accuracy | {} | {} |\n",
            cell(Some(self.accuracy)),
            ci_cell(ci.map(|c| &c.accuracy))
        );
        s += &format!(
            "| macro-F1 | {} | {} |\n",
            cell(Some(self.macro_f1)),
            ci_cell(ci.map(|c| &c.macro_f1))
        );
        s += &format!("| samples | {} | |\n\n", self.truth.len());
        s += "| class | precision | recall | F1 | support |\n|---|---|---|---|---|\n";
        for (name, c) in self.class_names.iter().zip(&self.per_class) {
            s += &format!(
                "| {} | {} | {} | {} | {} |\n",
                md_escape(name),
                cell(Some(c.precision)),
                cell(Some(c.recall)),
                cell(Some(c.f1)),
                c.support
            );
        }
        s += "\n| truth \\ predicted |";
        for name in &self.class_names {
            s += &format!(" {} |", md_escape(name));
        }
        s += "\n|---|";
        s += &"---|".repeat(self.class_names.len());
        s += "\n";
        for (name, row) in self.class_names.iter().zip(&self.confusion) {
            s += &format!("| {} |", md_escape(name));
            for v in row {
                s += &format!(" {v} |");
            }
            s += "\n";
        }
        s
    }
}

/// Row-wise softmax of `scale * logits` (stable: the row maximum is subtracted first).
pub(crate) fn softmax_rows(rows: impl Iterator<Item = Vec<f64>>) -> Vec<Vec<f64>> {
    rows.map(|r| {
        let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.into_iter().map(|v| v / z).collect()
    })
    .collect()
}

/// Index of the first maximum.
pub(crate) fn argmax(r: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in r.iter().enumerate() {
        if *v > r[best] {
            best = i;
        }
    }
    best
}

/// Zero-shot multi-class classification.
///
/// `image_emb` is `[N, D]` (one image per row), `class_emb` is `[C, D]` (one prompt embedding
/// per class, for an ensemble the mean of its prompts' embeddings); both are L2-normalised here,
/// row by row, so they need not be. The logits are `scale * cos(image, class)` (`scale` is the
/// model's logit scale, e.g. 100), the probabilities their softmax, the prediction the first
/// class of highest cosine. `truth[i]` is the class of image `i`.
///
/// ```
/// use ndarray::array;
/// use umcl_train::metrics::zero_shot_multiclass;
/// let images = array![[1.0f32, 0.1], [0.2, 1.0], [1.0, -0.3]];
/// let classes = array![[1.0f32, 0.0], [0.0, 2.0]];
/// let r = zero_shot_multiclass(images.view(), classes.view(), &[0, 1, 1], 100.0).unwrap();
/// assert_eq!(r.predictions, vec![0, 1, 0]);
/// assert!((r.accuracy - 2.0 / 3.0).abs() < 1e-12);
/// ```
pub fn zero_shot_multiclass(
    image_emb: ArrayView2<'_, f32>,
    class_emb: ArrayView2<'_, f32>,
    truth: &[usize],
    scale: f64,
) -> Result<MulticlassResult> {
    check_scale(scale)?;
    let images = l2_normalized(image_emb, "image embeddings")?;
    let classes = l2_normalized(class_emb, "class embeddings")?;
    check_same_dim(image_emb, class_emb, "class embeddings")?;
    if truth.len() != images.nrows() {
        return Err(MetricsError::Shape {
            what: "truth",
            expected: format!("{} labels (one per image)", images.nrows()),
            found: format!("{} labels", truth.len()),
        });
    }
    let cos = images.dot(&classes.t());
    let logits: Vec<Vec<f64>> = cos
        .rows()
        .into_iter()
        .map(|r| r.iter().map(|&v| scale * f64::from(v)).collect())
        .collect();
    let predictions: Vec<usize> = logits.iter().map(|r| argmax(r)).collect();
    let probabilities = softmax_rows(logits.into_iter());
    MulticlassResult::assemble(truth, &predictions, probabilities, classes.nrows())
}
