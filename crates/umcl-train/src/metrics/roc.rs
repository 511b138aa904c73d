//! ROC curves and AUC, and zero-shot multi-label classification with positive/negative prompt
//! pairs.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{
    bootstrap_ci, cell, check_matrix, check_same_dim, check_scale, ci_cell, default_names,
    l2_normalized, md_escape, owned_names, Interval, MetricsError, Result,
};

/// Scores sorted once, in groups of equal score, so that AUCs over any multiset of the items
/// (bootstrap resamples) take one linear pass.
struct RankedScores {
    /// Item indices by ascending score.
    order: Vec<usize>,
    /// `order[starts[g]..starts[g + 1]]` is the g-th group of equal scores.
    starts: Vec<usize>,
}

impl RankedScores {
    fn new(scores: &[f64]) -> Self {
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut starts = vec![0];
        for k in 1..order.len() {
            if scores[order[k]] != scores[order[k - 1]] {
                starts.push(k);
            }
        }
        starts.push(order.len());
        Self { order, starts }
    }

    /// Exact AUC where item `i` counts `weight[i]` times and `label[i]` says whether it is
    /// positive (`None`: left out). Each positive scores 1 for every negative below it and 1/2
    /// for every negative tied with it (Mann-Whitney U / (P * N)); the sums are integers
    /// (doubled to keep the halves), so the result is exact up to the final division.
    fn auc(&self, labels: &[Option<bool>], weight: impl Fn(usize) -> u64) -> Option<f64> {
        let (mut twice_u, mut neg_below, mut pos_total) = (0u128, 0u128, 0u128);
        for g in self.starts.windows(2) {
            let (mut p, mut n) = (0u128, 0u128);
            for &i in &self.order[g[0]..g[1]] {
                match labels[i] {
                    Some(true) => p += u128::from(weight(i)),
                    Some(false) => n += u128::from(weight(i)),
                    None => {}
                }
            }
            twice_u += p * (2 * neg_below + n);
            neg_below += n;
            pos_total += p;
        }
        if pos_total == 0 || neg_below == 0 {
            return None;
        }
        Some(twice_u as f64 / (2 * pos_total * neg_below) as f64)
    }

    /// ROC points from the highest threshold down: one point per group of equal scores,
    /// starting at (0, 0); points inside a vertical or horizontal run are dropped (they lie on
    /// the segment between their neighbours, so the curve and its area are unchanged).
    fn curve(&self, labels: &[Option<bool>]) -> Option<Vec<(f64, f64)>> {
        let pos = labels.iter().filter(|l| **l == Some(true)).count();
        let neg = labels.iter().filter(|l| **l == Some(false)).count();
        if pos == 0 || neg == 0 {
            return None;
        }
        let mut counts = vec![(0usize, 0usize)];
        let (mut fp, mut tp) = (0, 0);
        for g in self.starts.windows(2).rev() {
            let before = (fp, tp);
            for &i in &self.order[g[0]..g[1]] {
                match labels[i] {
                    Some(true) => tp += 1,
                    Some(false) => fp += 1,
                    None => {}
                }
            }
            if (fp, tp) != before {
                counts.push((fp, tp));
            }
        }
        let mut kept: Vec<(usize, usize)> = Vec::with_capacity(counts.len());
        for (k, &pt) in counts.iter().enumerate() {
            if k > 0 && k + 1 < counts.len() {
                let (a, b) = (counts[k - 1], counts[k + 1]);
                if (a.0 == pt.0 && pt.0 == b.0) || (a.1 == pt.1 && pt.1 == b.1) {
                    continue;
                }
            }
            kept.push(pt);
        }
        Some(
            kept.into_iter()
                .map(|(f, t)| (f as f64 / neg as f64, t as f64 / pos as f64))
                .collect(),
        )
    }
}

fn check_scores_labels(scores: &[f64], labels: &[bool]) -> Result<()> {
    if scores.is_empty() {
        return Err(MetricsError::Empty { what: "scores" });
    }
    if labels.len() != scores.len() {
        return Err(MetricsError::Shape {
            what: "labels",
            expected: format!("{} labels (one per score)", scores.len()),
            found: format!("{} labels", labels.len()),
        });
    }
    if let Some(row) = scores.iter().position(|s| !s.is_finite()) {
        return Err(MetricsError::NonFinite {
            what: "scores",
            row,
            column: 0,
        });
    }
    Ok(())
}

/// Area under the ROC curve of `scores` for binary `labels` (`true` = positive): the
/// probability that a random positive scores above a random negative, a tie counting 1/2. This
/// equals the average-rank (Mann-Whitney) formula and the trapezoid area under [`roc_curve`],
/// and scikit-learn's `roc_auc_score`.
///
/// `Ok(None)` when the labels hold one value only (the AUC is undefined); errors on empty input,
/// mismatched lengths or a non-finite score.
///
/// ```
/// use umcl_train::metrics::roc_auc;
/// // positives 0.8, 0.4; negatives 0.4, 0.1: pairs (0.8>0.4) (0.8>0.1) (0.4=0.4) (0.4>0.1)
/// // give (1 + 1 + 1/2 + 1) / 4 = 0.875.
/// let auc = roc_auc(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap();
/// assert_eq!(auc, Some(0.875));
/// assert_eq!(roc_auc(&[0.3, 0.2], &[true, true]).unwrap(), None);
/// ```
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Result<Option<f64>> {
    check_scores_labels(scores, labels)?;
    let labels: Vec<Option<bool>> = labels.iter().map(|&l| Some(l)).collect();
    Ok(RankedScores::new(scores).auc(&labels, |_| 1))
}

/// The ROC curve of `scores` for binary `labels`: `(false positive rate, true positive rate)`
/// points from (0, 0) to (1, 1), one per distinct score taken as threshold (descending), with
/// the points inside a straight vertical or horizontal run left out (as scikit-learn's
/// `drop_intermediate` does for those). Tied scores of both labels give a diagonal segment.
/// `Ok(None)` when the labels hold one value only.
///
/// ```
/// use umcl_train::metrics::roc_curve;
/// let c = roc_curve(&[0.8, 0.4, 0.4, 0.1], &[true, true, false, false]).unwrap().unwrap();
/// assert_eq!(c, vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]);
/// ```
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Result<Option<Vec<(f64, f64)>>> {
    check_scores_labels(scores, labels)?;
    let labels: Vec<Option<bool>> = labels.iter().map(|&l| Some(l)).collect();
    Ok(RankedScores::new(scores).curve(&labels))
}

/// AUC and ROC curve of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAuc {
    /// AUC over the images whose label is known; `None` when they hold one value only.
    pub auc: Option<f64>,
    /// Known positives.
    pub positives: usize,
    /// Known negatives.
    pub negatives: usize,
    /// ROC points (see [`roc_curve`]); empty when the AUC is undefined.
    pub roc: Vec<(f64, f64)>,
}

/// The scores of a multi-label prediction: one AUC per class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MultilabelResult {
    /// Name of each class (`class 0`, ... until [`MultilabelResult::with_class_names`]).
    pub class_names: Vec<String>,
    /// AUC and ROC of each class.
    pub per_class: Vec<ClassAuc>,
    /// Mean of the defined per-class AUCs; `None` when no class has both label values.
    pub mean_auc: Option<f64>,
    /// How many classes `mean_auc` averages.
    pub classes_in_mean: usize,
    /// Score of each image for each class (`[N][C]`); from [`zero_shot_multilabel`] the
    /// log-odds of the positive prompt, so `p(positive) = 1 / (1 + exp(-score))`.
    pub scores: Vec<Vec<f64>>,
    /// Label of each image for each class (`[N][C]`, `None` = unknown).
    pub truth: Vec<Vec<Option<bool>>>,
    /// Bootstrap interval of `mean_auc`, filled by [`MultilabelResult::with_bootstrap`].
    pub ci: Option<Interval>,
}

impl MultilabelResult {
    /// Per-class AUCs of `scores` `[N, C]` (higher = more likely positive) against `truth`
    /// `[N, C]` (`Some(true)` positive, `Some(false)` negative, `None` unknown and left out of
    /// that class).
    pub fn from_scores(
        scores: ArrayView2<'_, f64>,
        truth: ArrayView2<'_, Option<bool>>,
    ) -> Result<Self> {
        check_matrix(scores, "scores")?;
        if truth.dim() != scores.dim() {
            return Err(MetricsError::Shape {
                what: "truth",
                expected: format!("{:?} (the scores' shape)", scores.dim()),
                found: format!("{:?}", truth.dim()),
            });
        }
        let classes = scores.ncols();
        let mut per_class = Vec::with_capacity(classes);
        for c in 0..classes {
            let s: Vec<f64> = scores.column(c).to_vec();
            let l: Vec<Option<bool>> = truth.column(c).to_vec();
            let ranked = RankedScores::new(&s);
            per_class.push(ClassAuc {
                auc: ranked.auc(&l, |_| 1),
                positives: l.iter().filter(|v| **v == Some(true)).count(),
                negatives: l.iter().filter(|v| **v == Some(false)).count(),
                roc: ranked.curve(&l).unwrap_or_default(),
            });
        }
        let defined: Vec<f64> = per_class.iter().filter_map(|c| c.auc).collect();
        let mean_auc =
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64);
        Ok(Self {
            class_names: default_names(classes),
            classes_in_mean: defined.len(),
            per_class,
            mean_auc,
            scores: scores.rows().into_iter().map(|r| r.to_vec()).collect(),
            truth: truth.rows().into_iter().map(|r| r.to_vec()).collect(),
            ci: None,
        })
    }

    /// Names the classes (one name per class).
    pub fn with_class_names<S: AsRef<str>>(mut self, names: &[S]) -> Result<Self> {
        self.class_names = owned_names(names, self.per_class.len())?;
        Ok(self)
    }

    /// Fills [`MultilabelResult::ci`] with the bootstrap interval of the mean AUC, resampling
    /// images (rows). On a resample, the mean is over the classes whose AUC is defined there;
    /// a resample with none is skipped.
    pub fn with_bootstrap(mut self, resamples: usize, seed: u64) -> Result<Self> {
        let n = self.scores.len();
        let classes = self.per_class.len();
        let columns: Vec<(RankedScores, Vec<Option<bool>>)> = (0..classes)
            .map(|c| {
                let s: Vec<f64> = self.scores.iter().map(|r| r[c]).collect();
                (
                    RankedScores::new(&s),
                    self.truth.iter().map(|r| r[c]).collect(),
                )
            })
            .collect();
        let mut counts = vec![0u64; n];
        let ci = bootstrap_ci(n, resamples, seed, |idx| {
            counts.iter_mut().for_each(|c| *c = 0);
            for &i in idx {
                counts[i] += 1;
            }
            let aucs: Vec<f64> = columns
                .iter()
                .filter_map(|(r, l)| r.auc(l, |i| counts[i]))
                .collect();
            if aucs.is_empty() {
                f64::NAN
            } else {
                aucs.iter().sum::<f64>() / aucs.len() as f64
            }
        });
        self.ci = Some(match ci {
            Err(MetricsError::InvalidArgument {
                name: "statistic", ..
            }) => return Err(MetricsError::Undefined { what: "mean AUC" }),
            other => other?,
        });
        Ok(self)
    }

    /// A markdown summary: mean AUC (with interval when computed), then one row per class.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| metric | value | 95% CI |\n|---|---|---|\n");
        s += &format!(
            "| mean AUC | {} | {} |\n",
            cell(self.mean_auc),
            ci_cell(self.ci.as_ref())
        );
        s += &format!(
            "| classes in mean | {} of {} | |\n\n",
            self.classes_in_mean,
            self.per_class.len()
        );
        s += "| class | AUC | positives | negatives |\n|---|---|---|---|\n";
        for (name, c) in self.class_names.iter().zip(&self.per_class) {
            s += &format!(
                "| {} | {} | {} | {} |\n",
                md_escape(name),
                cell(c.auc),
                c.positives,
                c.negatives
            );
        }
        s
    }
}

/// Zero-shot multi-label classification with a positive and a negative prompt per class.
///
/// `image_emb` `[N, D]`, `pos_emb` and `neg_emb` `[C, D]` (prompt embeddings, e.g. "pleural
/// effusion" / "no pleural effusion"; an ensemble's mean) are L2-normalised here. The score of
/// image `i` for class `c` is the softmax probability of the positive prompt within the pair,
/// `exp(s*cos(i, pos_c)) / (exp(s*cos(i, pos_c)) + exp(s*cos(i, neg_c)))` with `s = scale`,
/// which is `sigmoid(s * (cos(i, pos_c) - cos(i, neg_c)))`. The result's `scores` hold the
/// log-odds `s * (cos(i, pos_c) - cos(i, neg_c))` rather than the probability: the AUC is the same
/// (a monotone map), but with a logit scale of 100 the probabilities of confident images round to
/// exactly 1.0 in f64 and would tie. `truth` `[N, C]` holds the labels
/// (`None`: unknown, e.g. uncertain or unmentioned, left out of that class's AUC).
///
/// ```
/// use ndarray::array;
/// use umcl_train::metrics::zero_shot_multilabel;
/// let images = array![[1.0f32, 0.0], [0.0, 1.0], [0.7, 0.7]];
/// let pos = array![[1.0f32, 0.0]];
/// let neg = array![[0.0f32, 1.0]];
/// let truth = array![[Some(true)], [Some(false)], [None]];
/// let r = zero_shot_multilabel(images.view(), pos.view(), neg.view(), truth.view(), 100.0).unwrap();
/// assert_eq!(r.mean_auc, Some(1.0));
/// assert_eq!(r.scores[2][0], 0.0); // equidistant: log-odds 0, p = 1/2
/// ```
pub fn zero_shot_multilabel(
    image_emb: ArrayView2<'_, f32>,
    pos_emb: ArrayView2<'_, f32>,
    neg_emb: ArrayView2<'_, f32>,
    truth: ArrayView2<'_, Option<bool>>,
    scale: f64,
) -> Result<MultilabelResult> {
    check_scale(scale)?;
    let images = l2_normalized(image_emb, "image embeddings")?;
    let pos = l2_normalized(pos_emb, "positive prompt embeddings")?;
    let neg = l2_normalized(neg_emb, "negative prompt embeddings")?;
    check_same_dim(image_emb, pos_emb, "positive prompt embeddings")?;
    check_same_dim(image_emb, neg_emb, "negative prompt embeddings")?;
    if neg.nrows() != pos.nrows() {
        return Err(MetricsError::Shape {
            what: "negative prompt embeddings",
            expected: format!("{} rows (one per positive prompt)", pos.nrows()),
            found: format!("{} rows", neg.nrows()),
        });
    }
    let cp = images.dot(&pos.t());
    let cn = images.dot(&neg.t());
    let scores: Array2<f64> = ndarray::Zip::from(&cp)
        .and(&cn)
        .map_collect(|&p, &n| scale * (f64::from(p) - f64::from(n)));
    MultilabelResult::from_scores(scores.view(), truth)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// The weighted AUC used by the bootstrap equals the plain AUC of the resample written out
    /// item by item (item i repeated counts[i] times).
    #[test]
    fn weighted_auc_equals_auc_of_the_expanded_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        for _ in 0..50 {
            let n = rng.gen_range(2..40);
            let scores: Vec<f64> = (0..n).map(|_| f64::from(rng.gen_range(0..6u8))).collect();
            let labels: Vec<Option<bool>> = (0..n)
                .map(|_| match rng.gen_range(0..5) {
                    0 => None,
                    1 | 2 => Some(true),
                    _ => Some(false),
                })
                .collect();
            let counts: Vec<u64> = (0..n).map(|_| rng.gen_range(0..4)).collect();
            let (mut s, mut l) = (Vec::new(), Vec::new());
            for i in 0..n {
                if let Some(lab) = labels[i] {
                    for _ in 0..counts[i] {
                        s.push(scores[i]);
                        l.push(lab);
                    }
                }
            }
            let weighted = RankedScores::new(&scores).auc(&labels, |i| counts[i]);
            let expanded = if s.is_empty() {
                None
            } else {
                roc_auc(&s, &l).unwrap()
            };
            assert_eq!(weighted, expanded);
        }
    }
}
