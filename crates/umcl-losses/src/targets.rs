//! Targets and false-negative masks built from the label codes of a batch, one block of rows
//! at a time (the dense loss asks for all rows at once).
//!
//! Label codes follow umcl-data's `LabelState::code`: 1 positive, 0 negative, -1 uncertain,
//! -2 unmentioned. After the [`UncertainPolicy`], sample `i` has a positive set `P_i` and a set
//! of comparable findings `C_i` (all findings, or those not uncertain under `Ignore`);
//! unmentioned findings count as absent. A sample is labelled when at least one finding has a
//! known value after the policy. For a pair `(i, j)` only findings in `C_i ∩ C_j` are compared:
//!
//! - `inter = |P_i ∩ P_j|`, `a = |P_i ∩ C_j|`, `b = |C_i ∩ P_j|`;
//! - they agree when `a + b - 2 inter = 0` (equal positive sets on the compared findings);
//! - Jaccard `inter / (a + b - inter)`, cosine `inter / sqrt(a b)`; both 1 when both sets are
//!   empty, and 0 when exactly one is.
//!
//! All counts come from small `[rows, 3K] x [3K, B]` matmuls and are exact integers.

use tch::{Kind, Tensor};

use crate::config::{ItlLossConfig, LabelSimilarity, Target, UncertainPolicy};

/// Per-sample label tensors of one batch, in the loss's compute kind.
pub(crate) struct LabelTable {
    /// `P` as 0/1, `[B, K]`.
    pos: Tensor,
    /// `C` as 0/1, `[B, K]`.
    cmp: Tensor,
    /// Labelled samples, bool `[B]`.
    labeled: Tensor,
    target: Target,
    similarity: LabelSimilarity,
    label_temperature: f64,
    threshold: Option<f64>,
}

/// Target and mask of a block of rows `r0 .. r0 + c` against all `B` columns.
pub(crate) struct RowTargets {
    /// Target distribution of each row, `[c, B]`, rows sum to 1.
    pub target: Tensor,
    /// Pairs removed from the softmax denominator, bool `[c, B]`; `None` when masking is off.
    pub removed: Option<Tensor>,
    /// Number of removed pairs in the block (i64 scalar).
    pub removed_count: Tensor,
    /// Number of columns with target weight, summed over the block's rows (i64 scalar).
    pub positives: Tensor,
}

impl LabelTable {
    /// `codes`: validated integer codes `[B, K]` on the compute device.
    pub fn new(codes: &Tensor, kind: Kind, cfg: &ItlLossConfig) -> Self {
        let is_pos = codes.eq(1);
        let is_unc = codes.eq(-1);
        let known = codes.eq(0).logical_or(&is_pos);
        let (pos, cmp, known) = match cfg.uncertain {
            UncertainPolicy::AsPositive => (
                is_pos.logical_or(&is_unc),
                codes.ones_like(),
                known.logical_or(&is_unc),
            ),
            UncertainPolicy::AsNegative => (is_pos, codes.ones_like(), known.logical_or(&is_unc)),
            UncertainPolicy::Ignore => (is_pos, is_unc.logical_not(), known),
        };
        let labeled = known.any_dim(1, false);
        Self {
            pos: pos.to_kind(kind),
            cmp: cmp.to_kind(kind),
            labeled,
            target: cfg.target,
            similarity: cfg.similarity,
            label_temperature: cfg.label_temperature,
            threshold: cfg.false_negative_threshold,
        }
    }

    /// Number of labelled samples.
    pub fn labeled_count(&self) -> Tensor {
        self.labeled.sum(Kind::Int64)
    }

    /// Targets and mask of rows `r0 .. r0 + c`.
    pub fn rows(&self, r0: i64, c: i64) -> RowTargets {
        let n = self.pos.size()[0];
        let device = self.pos.device();
        let kind = self.pos.kind();
        let p_r = self.pos.narrow(0, r0, c);
        let c_r = self.cmp.narrow(0, r0, c);
        // both[r, j]: rows r0+r and j are both labelled.
        let both = self
            .labeled
            .narrow(0, r0, c)
            .unsqueeze(1)
            .logical_and(&self.labeled.unsqueeze(0));

        // agree[r, j] (both labelled and equal positive sets), diagonal always true.
        let agree = || {
            let u = Tensor::cat(&[&p_r, &c_r], 1);
            let v = Tensor::cat(&[&self.cmp, &self.pos], 1);
            let disagree = u.matmul(&v.tr()) - p_r.matmul(&self.pos.tr()) * 2.0;
            let a = disagree.eq(0).logical_and(&both);
            let _ = a.diagonal(r0, 0, 1).fill_(1);
            a
        };
        // Label similarity in [0, 1], meaningful where `both`.
        let similarity = || {
            let inter = p_r.matmul(&self.pos.tr());
            let a = p_r.matmul(&self.cmp.tr());
            let b = c_r.matmul(&self.pos.tr());
            let both_empty = (&a + &b).eq(0);
            let sim = match self.similarity {
                LabelSimilarity::Jaccard => &inter / (a + b - &inter).clamp_min(1.0),
                LabelSimilarity::Cosine => &inter / (a * b).sqrt().clamp_min(1.0),
            };
            sim.masked_fill(&both_empty, 1.0)
        };

        let (target, positives, not_positive) = match self.target {
            Target::Identity => {
                let t = Tensor::zeros([c, n], (kind, device));
                let _ = t.diagonal(r0, 0, 1).fill_(1.0);
                let positives = Tensor::from(c).to_device(device);
                (t, positives, None)
            }
            Target::MultiPositive => {
                let a = agree();
                let count = a.sum_dim_intlist(1, true, kind);
                let t = a.to_kind(kind) / &count;
                (t, count.sum(Kind::Int64), Some(a.logical_not()))
            }
            Target::Soft => {
                let support = both.copy();
                let _ = support.diagonal(r0, 0, 1).fill_(1);
                let logits = (similarity() / self.label_temperature)
                    .masked_fill(&support.logical_not(), f64::NEG_INFINITY);
                let t = logits.softmax(1, kind);
                (t, support.sum(Kind::Int64), None)
            }
        };

        let removed = self.threshold.map(|th| {
            let mut m = similarity().ge(th).logical_and(&both);
            if let Some(np) = &not_positive {
                m = m.logical_and(np);
            }
            let _ = m.diagonal(r0, 0, 1).fill_(0);
            m
        });
        let removed_count = match &removed {
            Some(m) => m.sum(Kind::Int64),
            None => Tensor::from(0i64).to_device(device),
        };
        RowTargets {
            target,
            removed,
            removed_count,
            positives,
        }
    }
}
