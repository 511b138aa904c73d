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
//! Everything a pair contributes (agreement, similarity, target weight, mask) is a function of
//! `(inter, a, b)` and of whether both samples are labelled. With `R = K + 1`, one small
//! `[rows, 3K + 2] x [3K + 2, B]` matmul gives each pair the exact integer code
//! `R² inter + R a + b`, plus `R³` for each unlabelled sample of the pair (in fp64, exact, and
//! out of autocast's and TF32's reach). The target weight and
//! the mask are then looked up in tables of `3 R³` entries, which hold the formulas evaluated
//! on every code and stay in cache. So a label-aware loss adds a code and one lookup per table
//! to CLIP, however complex the similarity. The tables depend only on the configuration, `K`,
//! kind and device, and are kept per thread. For `R > 64` they would pass 786,432 entries, and
//! the same formulas are evaluated on the `B x B` counts instead.

use std::cell::RefCell;
use std::collections::HashMap;

use tch::{Device, Kind, Tensor};

use crate::config::{ItlLossConfig, LabelSimilarity, Target, UncertainPolicy};

/// Largest `R = K + 1` for which pairs are looked up by code.
const MAX_CODED_RADIX: i64 = 64;

/// Per-sample label tensors of one batch, in the loss's compute kind.
pub(crate) struct LabelTable {
    /// `P` as 0/1, `[B, K]`.
    pos: Tensor,
    /// `C` as 0/1, `[B, K]`.
    cmp: Tensor,
    /// Labelled samples, bool `[B]`.
    labeled: Tensor,
    /// How pairs are evaluated: by code lookup or from their counts.
    pairs: PairEval,
    cfg: ItlLossConfig,
}

enum PairEval {
    /// `code_ij = u_i . v_j`, and the tables indexed by it.
    Coded {
        u: Tensor,
        v: Tensor,
        tables: Tables,
    },
    /// The formulas on `B x B` counts (label sets too large for tables).
    Counts,
}

/// Lookup tables of pairs of two different samples, indexed by pair code.
struct Tables {
    /// Target weight `E`, see [`Weights::Rows`]; `None` for `T = I`.
    weight: Option<Tensor>,
    /// Mask, see [`RowTargets::bias`]; `None` without a threshold.
    bias: Option<Tensor>,
    /// The mask as i64 0/1 flags, for counting.
    removed: Option<Tensor>,
}

impl Tables {
    fn shallow_clone(&self) -> Tables {
        let copy = |t: &Option<Tensor>| t.as_ref().map(Tensor::shallow_clone);
        Tables {
            weight: copy(&self.weight),
            bias: copy(&self.bias),
            removed: copy(&self.removed),
        }
    }
}

thread_local! {
    /// Tables already built on this thread: building them costs more than a small batch's
    /// loss, and they depend only on the key.
    static TABLES: RefCell<HashMap<String, Tables>> = RefCell::new(HashMap::new());
}

/// The value that removes a pair: added to its logit, `exp` of it is exactly 0. Finite (half
/// the kind's largest magnitude), so that `0 * mask` stays 0 where a zero target meets it,
/// and far faster through `exp` than `-inf`.
pub(crate) fn removed_logit(kind: Kind) -> f64 {
    match kind {
        Kind::Double => -f64::MAX / 2.0,
        _ => -f64::from(f32::MAX) / 2.0,
    }
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
    /// The mask as an additive term for the logits, `[c, B]`: 0 where a pair is kept,
    /// [`removed_logit`] where it is removed from the softmax denominator; `None` when masking
    /// is off.
    pub bias: Option<Tensor>,
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
        let radix = codes.size()[1] + 1;
        let pairs = if radix <= MAX_CODED_RADIX {
            coded(&pos, &cmp, &labeled, radix, cfg)
        } else {
            PairEval::Counts
        };
        Self {
            pos,
            cmp,
            labeled,
            pairs,
            cfg: cfg.clone(),
        }
    }

    /// Number of labelled samples.
    pub fn labeled_count(&self) -> Tensor {
        self.labeled.sum(Kind::Int64)
    }

    /// Targets and mask of rows `r0 .. r0 + c`.
    pub fn rows(&self, r0: i64, c: i64) -> RowTargets {
        let device = self.pos.device();
        let masks = self.cfg.false_negative_threshold.is_some();
        let (weight, bias, counted) = if self.cfg.target == Target::Identity && !masks {
            (None, None, None)
        } else {
            match &self.pairs {
                PairEval::Coded { u, v, tables } => {
                    // fp64 holds every code exactly, and neither autocast nor TF32 touches
                    // an fp64 matmul: the codes are the same under any precision setting.
                    let code = u
                        .narrow(0, r0, c)
                        .matmul(&v.tr())
                        .to_kind(Kind::Int)
                        .view([-1]);
                    let n = v.size()[0];
                    let look = |table: &Tensor| table.index_select(0, &code).view([c, n]);
                    // Removed pairs counted from a histogram of the codes (one cheap pass),
                    // less the own pairs, which are never removed.
                    let counted = tables.removed.as_ref().map(|flags| {
                        let histogram = code.bincount::<Tensor>(None, flags.size()[0]);
                        let own = code.view([c, n]).diagonal(r0, 0, 1).to_kind(Kind::Int64);
                        (histogram * flags).sum(Kind::Int64) - flags.take(&own).sum(Kind::Int64)
                    });
                    let weight = tables.weight.as_ref().map(look);
                    (weight, tables.bias.as_ref().map(look), counted)
                }
                PairEval::Counts => {
                    // Counts of findings: exact in fp64 under any precision setting.
                    let f64s = |t: &Tensor| t.to_kind(Kind::Double);
                    let (pos, cmp) = (f64s(&self.pos), f64s(&self.cmp));
                    let p_r = pos.narrow(0, r0, c);
                    let c_r = cmp.narrow(0, r0, c);
                    let kind = self.pos.kind();
                    let inter = p_r.matmul(&pos.tr()).to_kind(kind);
                    let a = p_r.matmul(&cmp.tr()).to_kind(kind);
                    let b = c_r.matmul(&pos.tr()).to_kind(kind);
                    let both = self
                        .labeled
                        .narrow(0, r0, c)
                        .unsqueeze(1)
                        .logical_and(&self.labeled.unsqueeze(0));
                    let (weight, bias) = evaluate(&self.cfg, &inter, &a, &b, &both);
                    (weight, bias, None)
                }
            }
        };
        // The own pair: always a target with weight 1, never removed.
        if let Some(e) = &weight {
            let _ = e.diagonal(r0, 0, 1).fill_(1.0);
        }
        if let Some(m) = &bias {
            let _ = m.diagonal(r0, 0, 1).fill_(0.0);
        }
        let removed_count = counted
            .or_else(|| bias.as_ref().map(|m| m.lt(0.0).sum(Kind::Int64)))
            .unwrap_or_else(|| Tensor::from(0i64).to_device(device));
        let (weights, positives) = match (self.cfg.target, weight) {
            (Target::MultiPositive, Some(e)) => {
                let z = e.sum_dim_intlist(1, false, e.kind());
                let positives = z.sum(Kind::Int64);
                (Weights::Rows { e, z }, positives)
            }
            (Target::Soft, Some(e)) => {
                let z = e.sum_dim_intlist(1, false, e.kind());
                // The support: pairs of labelled samples, and each own pair.
                let labelled_rows = self.labeled.narrow(0, r0, c).sum(Kind::Int64);
                let positives = &labelled_rows * self.labeled_count() + (c - &labelled_rows);
                (Weights::Rows { e, z }, positives)
            }
            _ => (Weights::Identity, Tensor::from(c).to_device(device)),
        };
        RowTargets {
            weights,
            bias,
            removed_count,
            positives,
        }
    }
}

/// Target weight `E` and mask of pairs of two different samples with the given counts, where
/// `both` says that both are labelled.
fn evaluate(
    cfg: &ItlLossConfig,
    inter: &Tensor,
    a: &Tensor,
    b: &Tensor,
    both: &Tensor,
) -> (Option<Tensor>, Option<Tensor>) {
    let kind = inter.kind();
    let agree = || (a + b - inter * 2.0).eq(0).logical_and(both);
    let similarity = || {
        let both_empty = (a + b).eq(0);
        let sim = match cfg.similarity {
            LabelSimilarity::Jaccard => inter / (a + b - inter).clamp_min(1.0),
            LabelSimilarity::Cosine => inter / (a * b).sqrt().clamp_min(1.0),
        };
        sim.masked_fill(&both_empty, 1.0)
    };
    let weight = match cfg.target {
        Target::Identity => None,
        Target::MultiPositive => Some(agree().to_kind(kind)),
        // exp((S - 1) / tau) <= 1, and 0 off the support.
        Target::Soft => Some(
            ((similarity() - 1.0) / cfg.label_temperature)
                .masked_fill(&both.logical_not(), f64::NEG_INFINITY)
                .exp(),
        ),
    };
    let bias = cfg.false_negative_threshold.map(|th| {
        let mut removed = similarity().ge(th).logical_and(both);
        if cfg.target == Target::MultiPositive {
            removed = removed.logical_and(&agree().logical_not());
        }
        inter
            .zeros_like()
            .masked_fill(&removed, removed_logit(kind))
    });
    (weight, bias)
}

/// The code vectors and lookup tables of a batch whose label sets fit `radix`.
fn coded(
    pos: &Tensor,
    cmp: &Tensor,
    labeled: &Tensor,
    radix: i64,
    cfg: &ItlLossConfig,
) -> PairEval {
    let kind = pos.kind();
    let cube = radix * radix * radix;
    // code = R² P_i.P_j + R P_i.C_j + C_i.P_j + R³ (unlabelled_i + unlabelled_j), in fp64.
    let (pos64, cmp64) = (pos.to_kind(Kind::Double), cmp.to_kind(Kind::Double));
    let unl = (labeled.logical_not().to_kind(Kind::Double) * cube as f64).unsqueeze(1);
    let one = unl.ones_like();
    let r = radix as f64;
    let u = Tensor::cat(&[&(&pos64 * (r * r)), &(&pos64 * r), &cmp64, &unl, &one], 1);
    let v = Tensor::cat(&[&pos64, &cmp64, &pos64, &one, &unl], 1);
    let key = format!(
        "{:?} {:?} {:?} {} {:?} {radix} {kind:?} {:?}",
        cfg.target,
        cfg.similarity,
        cfg.uncertain,
        cfg.label_temperature.to_bits(),
        cfg.false_negative_threshold.map(f64::to_bits),
        pos.device()
    );
    let cached = TABLES.with(|t| t.borrow().get(&key).map(Tables::shallow_clone));
    let tables = cached.unwrap_or_else(|| {
        let tables = build_tables(radix, kind, pos.device(), cfg);
        TABLES.with(|t| {
            let mut t = t.borrow_mut();
            if t.len() >= 16 {
                t.clear();
            }
            t.insert(key, tables.shallow_clone());
        });
        tables
    });
    PairEval::Coded { u, v, tables }
}

/// Every code, decoded, with the formulas evaluated on it: the first R³ codes are pairs of
/// labelled samples, the rest pairs with an unlabelled sample.
fn build_tables(radix: i64, kind: Kind, device: Device, cfg: &ItlLossConfig) -> Tables {
    let cube = radix * radix * radix;
    let index = Tensor::arange(3 * cube, (Kind::Int64, device));
    let within = index.remainder(cube);
    let inter = within
        .divide_scalar_mode(radix * radix, "floor")
        .to_kind(kind);
    let a = within
        .divide_scalar_mode(radix, "floor")
        .remainder(radix)
        .to_kind(kind);
    let b = within.remainder(radix).to_kind(kind);
    let both = index.lt(cube);
    let (weight, bias) = evaluate(cfg, &inter, &a, &b, &both);
    let removed = bias.as_ref().map(|m| m.lt(0.0).to_kind(Kind::Int64));
    Tables {
        weight,
        bias,
        removed,
    }
}
