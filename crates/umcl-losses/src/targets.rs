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
//! All counts come from small `[rows, ~3K] x [~3K, B]` matmuls and are exact integers. The
//! disagreement count folds "both labelled" into the same matmul: an unlabelled sample adds
//! `3K + 1` (more than any count) to each of its pairs, so only labelled pairs can reach 0.

use tch::{Device, Kind, Tensor};

use crate::config::{ItlLossConfig, LabelSimilarity, Target, UncertainPolicy};

/// Per-sample label tensors of one batch, in the loss's compute kind.
pub(crate) struct LabelTable {
    /// `P` as 0/1, `[B, K]`.
    pos: Tensor,
    /// `C` as 0/1, `[B, K]`.
    cmp: Tensor,
    /// Labelled samples, bool `[B]`.
    labeled: Tensor,
    /// `u_i . v_j` = disagreements of `(i, j)`, plus `3K + 1` when either is unlabelled.
    agree_u: Tensor,
    agree_v: Tensor,
    target: Target,
    similarity: LabelSimilarity,
    label_temperature: f64,
    threshold: Option<f64>,
}

/// The targets of a block of rows: `T_rj = E_rj / z_r`, with `E` symmetric in which pairs it
/// supports and in value, so that the dense loss can also form column targets from it.
pub(crate) enum Weights {
    /// `T = I` (E = I, z = 1), kept implicit.
    Identity,
    /// Unnormalized weights `E` `[c, B]` and row sums `z` `[c]`.
    Rows {
        /// `E`: 0/1 agreement, or `exp((S - 1) / tau)` on the support.
        e: Tensor,
        /// `z_r = sum_j E_rj` (>= 1: the own pair has weight 1).
        z: Tensor,
    },
}

/// Target and mask of a block of rows `r0 .. r0 + c` against all `B` columns.
pub(crate) struct RowTargets {
    /// The target, see [`Weights`].
    pub weights: Weights,
    /// Pairs removed from the softmax denominator, bool `[c, B]`; `None` when masking is off.
    pub removed: Option<Tensor>,
    /// Number of removed pairs in the block (i64 scalar).
    pub removed_count: Tensor,
    /// Number of columns with target weight, summed over the block's rows (i64 scalar).
    pub positives: Tensor,
}

impl RowTargets {
    /// The row-normalized target `[c, B]` of rows `r0 .. r0 + c` of a batch of `n`.
    pub fn target(&self, r0: i64, c: i64, n: i64, options: (Kind, Device)) -> Tensor {
        match &self.weights {
            Weights::Identity => {
                let t = Tensor::zeros([c, n], options);
                let _ = t.diagonal(r0, 0, 1).fill_(1.0);
                t
            }
            Weights::Rows { e, z } => e / z.unsqueeze(1),
        }
    }
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
        let (pos, cmp) = (pos.to_kind(kind), cmp.to_kind(kind));
        let k = codes.size()[1];
        let big = (labeled.logical_not().to_kind(kind) * (3 * k + 1) as f64).unsqueeze(1);
        let one = big.ones_like();
        // disagree = P_i.C_j + C_i.P_j - 2 P_i.P_j  (+ big_i + big_j)
        let agree_u = Tensor::cat(&[&pos, &cmp, &(&pos * -2.0), &big, &one], 1);
        let agree_v = Tensor::cat(&[&cmp, &pos, &pos, &one, &big], 1);
        Self {
            pos,
            cmp,
            labeled,
            agree_u,
            agree_v,
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
        let device = self.pos.device();
        let kind = self.pos.kind();
        let p_r = self.pos.narrow(0, r0, c);
        let c_r = self.cmp.narrow(0, r0, c);
        // both[r, j]: rows r0+r and j are both labelled.
        let both = || {
            self.labeled
                .narrow(0, r0, c)
                .unsqueeze(1)
                .logical_and(&self.labeled.unsqueeze(0))
        };
        // agree[r, j]: both labelled and equal positive sets; the diagonal always true.
        let agree = || {
            let disagree = self.agree_u.narrow(0, r0, c).matmul(&self.agree_v.tr());
            let a = disagree.eq(0);
            let _ = a.diagonal(r0, 0, 1).fill_(1);
            a
        };
        // Label similarity in [0, 1], meaningful where both are labelled.
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

        let (weights, positives, agreed) = match self.target {
            Target::Identity => {
                let positives = Tensor::from(c).to_device(device);
                (Weights::Identity, positives, None)
            }
            Target::MultiPositive => {
                let a = agree();
                let e = a.to_kind(kind);
                let z = e.sum_dim_intlist(1, false, kind);
                let positives = z.sum(Kind::Int64);
                (Weights::Rows { e, z }, positives, Some(a))
            }
            Target::Soft => {
                let support = both();
                let _ = support.diagonal(r0, 0, 1).fill_(1);
                // exp((S - 1) / tau) <= 1, = 1 on the diagonal, 0 off the support.
                let e = ((similarity() - 1.0) / self.label_temperature)
                    .masked_fill(&support.logical_not(), f64::NEG_INFINITY)
                    .exp();
                let z = e.sum_dim_intlist(1, false, kind);
                let positives = support.sum(Kind::Int64);
                (Weights::Rows { e, z }, positives, None)
            }
        };

        let removed = self.threshold.map(|th| {
            let mut m = similarity().ge(th).logical_and(&both());
            if let Some(a) = &agreed {
                m = m.logical_and(&a.logical_not());
            }
            let _ = m.diagonal(r0, 0, 1).fill_(0);
            m
        });
        let removed_count = match &removed {
            Some(m) => m.sum(Kind::Int64),
            None => Tensor::from(0i64).to_device(device),
        };
        RowTargets {
            weights,
            removed,
            removed_count,
            positives,
        }
    }
}
