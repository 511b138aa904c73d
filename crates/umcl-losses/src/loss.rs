//! The loss functions: [`clip_loss`] and [`itl_loss`] (dense and chunked).

use tch::{Device, Kind, Tensor};

use crate::config::ItlLossConfig;
use crate::precision::FullPrecision;
use crate::targets::{LabelTable, Weights};
use crate::LossError;

/// Validated features in the compute kind, normalized, with the log scale as a scalar.
struct Features {
    /// `normalize(img)`, `[B, D]`, in the graph of `img`.
    x: Tensor,
    /// `normalize(txt)`, `[B, D]`, in the graph of `txt`.
    y: Tensor,
    /// `logit_scale` as a 0-d tensor of the compute kind, in its graph.
    log_scale: Tensor,
    n: i64,
    kind: Kind,
    device: Device,
}

pub(crate) fn check_float(name: &'static str, t: &Tensor) -> Result<(), LossError> {
    match t.kind() {
        Kind::Half | Kind::BFloat16 | Kind::Float | Kind::Double => Ok(()),
        k => Err(LossError::NotFloat {
            name,
            kind: format!("{k:?}"),
        }),
    }
}

pub(crate) use umcl_torch_ext::ops::l2_normalize as normalize;

impl Features {
    fn new(img: &Tensor, txt: &Tensor, logit_scale: &Tensor) -> Result<Self, LossError> {
        for (name, t) in [("image features", img), ("text features", txt)] {
            if t.dim() != 2 {
                return Err(LossError::NotMatrix {
                    name,
                    shape: t.size(),
                });
            }
            check_float(name, t)?;
        }
        if img.size() != txt.size() {
            return Err(LossError::ShapeMismatch {
                image: img.size(),
                text: txt.size(),
            });
        }
        if img.numel() == 0 {
            return Err(LossError::Empty(img.size()));
        }
        let device = img.device();
        for (name, t) in [("text features", txt), ("logit_scale", logit_scale)] {
            if t.device() != device {
                return Err(LossError::DeviceMismatch {
                    name,
                    expected: device,
                    found: t.device(),
                });
            }
        }
        check_float("logit_scale", logit_scale)?;
        if logit_scale.numel() != 1 {
            return Err(LossError::LogitScaleShape(logit_scale.size()));
        }
        // fp64 stays fp64 (finite-difference checks); fp32, bf16 and fp16 compute in fp32.
        let kind = if img.kind() == Kind::Double || txt.kind() == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        };
        Ok(Self {
            x: normalize(&img.to_kind(kind)),
            y: normalize(&txt.to_kind(kind)),
            log_scale: logit_scale.to_kind(kind).reshape([]),
            n: img.size()[0],
            kind,
            device,
        })
    }

    /// `exp(logit_scale) * x y^T`, `[B, B]`.
    /// `s x y^T`, the scale applied to `x` (`B x D`) rather than to the `B x B` product; with
    /// `bias`, `s x y^T + bias` in the same matmul.
    fn logits(&self, bias: Option<&Tensor>) -> Tensor {
        let scaled = &self.x * self.log_scale.exp();
        match bias {
            None => scaled.matmul(&self.y.tr()),
            Some(b) => b.addmm(&scaled, &self.y.tr()),
        }
    }
}

/// The symmetric CLIP (InfoNCE) loss with the identity target.
///
/// With `x_i = img_i / ||img_i||`, `y_j = txt_j / ||txt_j||` and `s = exp(logit_scale)`, the
/// logits are `L_ij = s x_i . y_j` and
///
/// ```text
/// loss = 1/2 [ 1/B sum_i -log softmax_j(L_i.)_i  +  1/B sum_j -log softmax_i(L_.j)_j ]
/// ```
///
/// `img` and `txt` are `[B, D]` floating-point tensors (bf16/fp16/fp32 compute in fp32, fp64 in
/// fp64, with autocast off inside the loss); `logit_scale` holds one value, the log of the scale (learnable; clamp it yourself,
/// e.g. to `ln 100`). Gradients flow to all three.
///
/// ```
/// use tch::{Kind, Tensor};
/// // Two orthogonal pairs at scale 1: each row's logits are (1, 0), so each direction's
/// // cross-entropy is ln(1 + e^-1).
/// let img = Tensor::from_slice2(&[[1.0f32, 0.0], [0.0, 1.0]]);
/// let txt = img.copy();
/// let loss = umcl_losses::clip_loss(&img, &txt, &Tensor::from(0.0f32)).unwrap();
/// let expected = (1.0 + (-1.0f64).exp()).ln();
/// assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
/// ```
pub fn clip_loss(img: &Tensor, txt: &Tensor, logit_scale: &Tensor) -> Result<Tensor, LossError> {
    let _fp32 = FullPrecision::new();
    let f = Features::new(img, txt, logit_scale)?;
    let logits = f.logits(None);
    // The ground truth is the diagonal: -log p of pair i in row i (image to text) and in
    // column i (text to image).
    let i2t = -logits.log_softmax(1, f.kind).diagonal(0, 0, 1).mean(f.kind);
    let t2i = -logits.log_softmax(0, f.kind).diagonal(0, 0, 1).mean(f.kind);
    Ok((i2t + t2i) * 0.5)
}

/// What [`itl_loss`] returns.
#[derive(Debug)]
pub struct LossOutput {
    /// The loss, a 0-d tensor of the compute kind (fp32, or fp64 for fp64 inputs), in the graph
    /// of the features and the logit scale.
    pub loss: Tensor,
    /// `[masked pairs, positives, labelled rows]` on the features' device, read by
    /// [`LossOutput::diagnostics`] only when asked, so the loss itself never waits for the
    /// device.
    counts: Tensor,
    /// The batch size.
    n: i64,
}

impl LossOutput {
    /// Counts that describe the targets of this batch. Reading them waits for the device.
    pub fn diagnostics(&self) -> LossDiagnostics {
        let counts = self.counts.to_device(Device::Cpu);
        LossDiagnostics {
            masked_pairs: counts.int64_value(&[0]),
            mean_positives_per_row: counts.int64_value(&[1]) as f64 / self.n as f64,
            labeled_rows: counts.int64_value(&[2]),
        }
    }
}

/// Counts about one batch's targets, for logging.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossDiagnostics {
    /// Entries `(i, j)`, `i != j`, of the `B x B` logits removed from the softmax denominators
    /// by false-negative masking. The mask is symmetric, so each masked pair of samples counts
    /// twice; the same entries are masked in both directions.
    pub masked_pairs: i64,
    /// Mean over rows of the number of columns with target weight, the row's own pair
    /// included: 1 for [`Target::Identity`](crate::Target::Identity), the agreeing samples for
    /// multi-positive, every labelled sample for soft targets (1 for an unlabelled row).
    pub mean_positives_per_row: f64,
    /// Samples with at least one known label after the uncertainty policy.
    pub labeled_rows: i64,
}

/// The Image-Text-Label contrastive loss: CLIP's symmetric cross-entropy with targets built
/// from the labels of the batch.
///
/// Logits `L = exp(logit_scale) x y^T` as in [`clip_loss`]. Each row `i` has a target
/// distribution `T_i.` and a set `R_i` of pairs removed from its denominator:
///
/// ```text
/// l_i(L) = log sum_{j not in R_i} exp(L_ij)  -  sum_j T_ij L_ij
/// loss   = w_it/B sum_i l_i(L)  +  w_ti/B sum_j l_j(L^T)
/// ```
///
/// `T` is symmetric in which pairs it supports and `R` is symmetric, so the text-to-image
/// rows use the same targets (row `j` of `T` for text `j`). Targets (`P_i` = positive set of
/// sample `i` after the [`UncertainPolicy`](crate::UncertainPolicy)):
///
/// - [`Target::Identity`](crate::Target::Identity): `T = I`;
/// - [`Target::MultiPositive`](crate::Target::MultiPositive): `T_ij = A_ij / sum_k A_ik`,
///   `A_ij = 1` when `i = j` or both are labelled and `P_i = P_j` on the findings both
///   compare;
/// - [`Target::Soft`](crate::Target::Soft): `T_i. = softmax_j(S_ij / tau)` over the columns
///   `j` labelled (or `j = i`), `S` the [`LabelSimilarity`](crate::LabelSimilarity).
///
/// An unlabelled row (every code -2, or only uncertain codes under `Ignore`) gets the identity
/// target, and unlabelled columns are plain negatives, so batches mixing labelled and
/// unlabelled samples work. With `false_negative_threshold = Some(t)`,
/// `R_i = { j != i : both labelled, S_ij >= t, T_ij = 0 }`; the own pair is never removed, so
/// no row's denominator is empty.
///
/// `labels`: integer codes `[B, K]` (1 positive, 0 negative, -1 uncertain, -2 unmentioned,
/// umcl-data's `LabelState::code`), moved to the features' device. With
/// [`ItlLossConfig::check_labels`] off the loss makes no host synchronisation; reading
/// [`LossOutput::diagnostics`] waits for the device once.
///
/// ```
/// use tch::Tensor;
/// use umcl_losses::{clip_loss, itl_loss, ItlLossConfig};
/// let img = Tensor::from_slice2(&[[1.0f32, 0.0], [0.0, 1.0], [1.0, 1.0]]);
/// let txt = Tensor::from_slice2(&[[1.0f32, 0.2], [0.1, 1.0], [1.0, 0.9]]);
/// let scale = Tensor::from(1.0f32);
/// // Rows 0 and 1 share their diagnosis; row 2 comes from an unlabelled source.
/// let labels = Tensor::from_slice2(&[[1i64, 0], [1, 0], [-2, -2]]);
/// let out = itl_loss(&img, &txt, &labels, &scale, &ItlLossConfig::default()).unwrap();
/// assert_eq!(out.diagnostics().labeled_rows, 2);
/// assert!((out.diagnostics().mean_positives_per_row - 5.0 / 3.0).abs() < 1e-12);
/// // With nothing labelled, every target is the identity: the loss is CLIP's.
/// let none = Tensor::full([3, 2], -2i64, (tch::Kind::Int64, tch::Device::Cpu));
/// let out = itl_loss(&img, &txt, &none, &scale, &ItlLossConfig::default()).unwrap();
/// let clip = clip_loss(&img, &txt, &scale).unwrap();
/// assert!((out.loss.double_value(&[]) - clip.double_value(&[])).abs() < 1e-6);
/// ```
pub fn itl_loss(
    img: &Tensor,
    txt: &Tensor,
    labels: &Tensor,
    logit_scale: &Tensor,
    cfg: &ItlLossConfig,
) -> Result<LossOutput, LossError> {
    cfg.validate()?;
    let _fp32 = FullPrecision::new();
    let f = Features::new(img, txt, logit_scale)?;
    let codes = check_labels(labels, f.n, f.device, cfg.check_labels)?;
    let table = LabelTable::new(&codes, f.kind, cfg);
    let (loss, removed, positives) = match cfg.chunk_size {
        None => dense(&f, &table, cfg),
        Some(c) => chunked(&f, &table, cfg, c as i64),
    };
    let counts = Tensor::stack(&[removed, positives, table.labeled_count()], 0);
    Ok(LossOutput {
        loss,
        counts,
        n: f.n,
    })
}

/// The targets and masked pairs [`itl_loss`] builds from a batch's labels.
#[derive(Debug)]
pub struct PairTargets {
    /// `T`, `[B, B]` fp32, each row a distribution (see [`itl_loss`]).
    pub target: Tensor,
    /// `[B, B]` bool: the pairs removed from the softmax denominators (all false without a
    /// [`ItlLossConfig::false_negative_threshold`]).
    pub removed: Tensor,
}

/// The target matrix and mask of [`itl_loss`] for `labels` (integer codes `[B, K]`, checked),
/// on the labels' device. They are label-valued: computed in integer and fp64 arithmetic, with
/// autocast off, so they are the same under any autocast setting.
///
/// ```
/// use tch::Tensor;
/// use umcl_losses::{itl_targets, ItlLossConfig};
/// // Rows 0 and 1 agree (one shared finding); row 2 differs.
/// let labels = Tensor::from_slice2(&[[1i64, 0], [1, -2], [0, 1]]);
/// let t = itl_targets(&labels, &ItlLossConfig::default()).unwrap();
/// assert_eq!(Vec::<f32>::try_from(t.target.view([-1])).unwrap(),
///            vec![0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 1.0]);
/// ```
pub fn itl_targets(labels: &Tensor, cfg: &ItlLossConfig) -> Result<PairTargets, LossError> {
    cfg.validate()?;
    let _fp32 = FullPrecision::new();
    let _no_grad = tch::no_grad_guard();
    let n = labels.size().first().copied().unwrap_or(0);
    let device = labels.device();
    let codes = check_labels(labels, n, device, true)?;
    let table = LabelTable::new(&codes, Kind::Float, cfg);
    let rt = table.rows(0, n);
    let target = rt.target(0, n, n, (Kind::Float, device));
    let removed = match &rt.bias {
        Some(m) => m.lt(0.0),
        None => Tensor::zeros([n, n], (Kind::Bool, device)),
    };
    Ok(PairTargets { target, removed })
}

/// Checks that `labels` is an integer `[n, K]` matrix (and, with `codes_too`, of valid codes,
/// checked where the labels are); returns it on `device`.
fn check_labels(
    labels: &Tensor,
    n: i64,
    device: Device,
    codes_too: bool,
) -> Result<Tensor, LossError> {
    match labels.kind() {
        Kind::Int8 | Kind::Int16 | Kind::Int | Kind::Int64 | Kind::Uint8 => {}
        k => return Err(LossError::LabelKind(format!("{k:?}"))),
    }
    if labels.dim() != 2 || labels.size()[0] != n {
        return Err(LossError::LabelShape {
            batch: n,
            shape: labels.size(),
        });
    }
    let codes = labels.to_kind(Kind::Int64);
    if !codes_too {
        return Ok(codes.to_device(device));
    }
    let bad = codes.lt(-2).logical_or(&codes.gt(1));
    if bad.any().int64_value(&[]) != 0 {
        let first = bad.nonzero().to_device(Device::Cpu);
        let (row, column) = (first.int64_value(&[0, 0]), first.int64_value(&[0, 1]));
        return Err(LossError::LabelCode {
            row,
            column,
            value: codes.int64_value(&[row, column]),
        });
    }
    Ok(codes.to_device(device))
}

/// The dense loss: the whole `B x B` logits, autograd for the gradients.
///
/// Written as `w_it/B sum_i LSE_row_i + w_ti/B sum_j LSE_col_j - sum_ij W_ij L_ij` with
/// `W_ij = E_ij (w_it / (B z_i) + w_ti / (B z_j))`: the target term of both directions in one
/// product (E is symmetric), never `T * log p`; removed pairs have `T = 0` and a finite logit.
fn dense(f: &Features, table: &LabelTable, cfg: &ItlLossConfig) -> (Tensor, Tensor, Tensor) {
    let n = f.n as f64;
    let (w_it, w_ti) = (cfg.image_to_text_weight / n, cfg.text_to_image_weight / n);
    let (rt, weights) = {
        let _no_grad = tch::no_grad_guard();
        let rt = table.rows(0, f.n);
        let weights = match &rt.weights {
            Weights::Identity => None,
            Weights::Rows { e, z } => {
                let inv = z.reciprocal();
                Some(e * (inv.unsqueeze(1) * w_it + inv.unsqueeze(0) * w_ti))
            }
        };
        (rt, weights)
    };
    // The logits with removed pairs pushed to `removed_logit`, where exp gives exactly 0. The
    // target weight of a removed pair is 0, so the target term can read them too.
    let logits = f.logits(rt.bias.as_ref());
    // sum_i log p_ii over rows (dim 1) or columns (dim 0), p the softmax over the kept pairs.
    let own_log_p = |dim: i64| logits.log_softmax(dim, f.kind).diagonal(0, 0, 1).sum(None);
    let Some(w) = &weights else {
        // T = I: -sum_i log p_ii in each direction, as CLIP, with no sum of large logits that
        // would cancel.
        let (a, b) = (own_log_p(1) * -w_it, own_log_p(0) * -w_ti);
        return (a + b, rt.removed_count, rt.positives);
    };
    // One pass, no `B x B` product held: sum_ij L_ij W_ij as a dot product.
    let target_term = logits.view([-1]).dot(&w.view([-1]));
    // Sum over rows or columns of the log-sum-exp over the kept pairs. With pairs removed, the
    // fused log-softmax is the faster of the two on the huge negative entries; the own pair is
    // never removed, so LSE_i = L_ii - log p_ii.
    let lse_sum = |dim: i64| match &rt.bias {
        None => logits.logsumexp([dim], false).sum(None),
        Some(_) => logits.diagonal(0, 0, 1).sum(None) - own_log_p(dim),
    };
    let mut terms = vec![-target_term];
    if w_it > 0.0 {
        terms.push(lse_sum(1) * w_it);
    }
    if w_ti > 0.0 {
        terms.push(lse_sum(0) * w_ti);
    }
    let loss = terms
        .into_iter()
        .reduce(|a, b| a + b)
        .unwrap_or_else(|| Tensor::zeros([], (f.kind, f.device)));
    (loss, rt.removed_count, rt.positives)
}

/// One block of rows for the chunked loss: `w * sum_r l_r` and its gradient with respect to
/// the block's logits, `G = w (softmax over the kept columns - T)`.
fn block_value_and_grad(
    logits: &Tensor,
    target: &Tensor,
    bias: Option<&Tensor>,
    w: f64,
) -> (Tensor, Tensor) {
    let kept = match bias {
        Some(m) => logits + m,
        None => logits.shallow_clone(),
    };
    let lse = kept.logsumexp([1], true);
    // Sum of T * L, never T * log p: removed pairs have T = 0, and L and the mask are finite.
    let target_term = (logits * target).sum_dim_intlist(1, false, None);
    let value = (lse.squeeze_dim(1) - target_term).sum(None) * w;
    let grad = ((kept - lse).exp() - target) * w;
    (value, grad)
}

/// The chunked loss: blocks of `chunk` rows of the logits (and, for the text-to-image
/// direction, of the transposed logits) are built, reduced and dropped one at a time, so at
/// most a few `chunk x B` matrices live at once.
///
/// Autograd on the blocks would keep every block alive until `backward`. Instead the gradients
/// with respect to `x`, `y` and `logit_scale` are accumulated by hand (`dL/dx_r = s G y`,
/// `dL/dy += s G^T x_r`, `dL/dlogit_scale = sum G * L`), and the returned tensor is
/// `value + (g_x.x + g_y.y + g_s logit_scale) - (same, detached)`: its value is the loss and its
/// first derivatives are those gradients, chained through the normalization by autograd.
/// Second derivatives are not supported.
fn chunked(
    f: &Features,
    table: &LabelTable,
    cfg: &ItlLossConfig,
    chunk: i64,
) -> (Tensor, Tensor, Tensor) {
    let opts = (f.kind, f.device);
    let (xd, yd) = (f.x.detach(), f.y.detach());
    let s = f.log_scale.detach().exp();
    let mut gx = xd.zeros_like();
    let mut gy = yd.zeros_like();
    let mut g_scale = Tensor::zeros([], opts);
    let mut value = Tensor::zeros([], opts);
    let mut removed = Tensor::zeros([], (Kind::Int64, f.device));
    let mut positives = Tensor::zeros([], (Kind::Int64, f.device));
    let n = f.n as f64;
    let (w_it, w_ti) = (cfg.image_to_text_weight / n, cfg.text_to_image_weight / n);
    {
        let _no_grad = tch::no_grad_guard();
        let mut r0 = 0;
        while r0 < f.n {
            let c = chunk.min(f.n - r0);
            let rt = table.rows(r0, c);
            let target = rt.target(r0, c, f.n, opts);
            if w_it > 0.0 {
                let x_r = xd.narrow(0, r0, c);
                let logits = x_r.matmul(&yd.tr()) * &s;
                let (v, g) = block_value_and_grad(&logits, &target, rt.bias.as_ref(), w_it);
                value += v;
                g_scale += (&g * &logits).sum(None);
                let mut gx_r = gx.narrow(0, r0, c);
                gx_r += g.matmul(&yd) * &s;
                gy += g.tr().matmul(&x_r) * &s;
            }
            if w_ti > 0.0 {
                let y_r = yd.narrow(0, r0, c);
                let logits = y_r.matmul(&xd.tr()) * &s;
                let (v, g) = block_value_and_grad(&logits, &target, rt.bias.as_ref(), w_ti);
                value += v;
                g_scale += (&g * &logits).sum(None);
                let mut gy_r = gy.narrow(0, r0, c);
                gy_r += g.matmul(&xd) * &s;
                gx += g.tr().matmul(&y_r) * &s;
            }
            removed += rt.removed_count;
            positives += rt.positives;
            r0 += c;
        }
    }
    let surrogate = (&gx * &f.x).sum(None) + (&gy * &f.y).sum(None) + &g_scale * &f.log_scale;
    let loss = value + &surrogate - surrogate.detach();
    (loss, removed, positives)
}
