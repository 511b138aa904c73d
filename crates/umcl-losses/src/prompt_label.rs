//! The prompt-label term: the method's third loss, tying the class prompts' text embeddings
//! to the labels.
//!
//! For every embedding `e_r` (image or text) and every class `c` with prompt embedding `p_c`,
//! the logit is `z_rc = s cos(e_r, p_c)` with `s = exp(logit_scale)`, and the term is the
//! binary cross-entropy against the label `y_rc`, averaged over the known labels:
//!
//! ```text
//! L = sum_{r,c} w_rc [ softplus(z_rc) - y_rc z_rc ] / max(1, sum_{r,c} w_rc)
//! ```
//!
//! `y_rc = 1` when the sample of row `r` is positive for `c`. The weight `w_rc` is 1 when the
//! label is known: positive, negative, or unmentioned in a sample with at least one positive
//! or negative finding (a labelled sample's unmentioned findings count as absent, as in
//! [`itl_loss`](crate::itl_loss)); it is 0 for uncertain findings and for every finding of an
//! unlabelled sample.

use tch::{Kind, Tensor};

use crate::error::LossError;
use crate::loss::{check_float, normalize};
use crate::precision::FullPrecision;

/// The prompt-label term: for every embedding `e_r` and class prompt `p_c`,
/// `z_rc = exp(logit_scale) cos(e_r, p_c)` and
///
/// ```text
/// L = sum_{r,c} w_rc [ softplus(z_rc) - y_rc z_rc ] / max(1, sum_{r,c} w_rc)
/// ```
///
/// with `y_rc = 1` for a positive label and `w_rc = 1` for a known one: positive, negative,
/// or unmentioned in a sample with some positive or negative finding (as absent); uncertain
/// findings and unlabelled samples weigh 0.
///
/// - `embeddings`: pairs of `[B, D]` embeddings (image, text, or both) and the `i64` indices
///   of the rows that hold one (a sample without an image has a row of zeros, left out);
/// - `classes`: the class prompts' embeddings `[C, D]`;
/// - `labels`: the batch's integer codes `[B, K]` (1, 0, -1, -2) and `class_index` the `C`
///   columns (i64) of `labels` that the classes stand for;
/// - `logit_scale`: the log of the scale, one value, as for [`itl_loss`](crate::itl_loss).
///
/// Targets and weights are label-valued: built from integer comparisons. The term computes
/// in fp32 (fp64 for fp64 embeddings) with autocast off.
///
/// ```
/// use tch::Tensor;
/// use umcl_losses::prompt_label_loss;
/// let emb = Tensor::from_slice2(&[[1.0f32, 0.0], [0.0, 1.0]]);
/// let rows = Tensor::from_slice(&[0i64, 1]);
/// let classes = Tensor::from_slice2(&[[1.0f32, 0.0]]); // one class, along the first axis
/// let labels = Tensor::from_slice2(&[[1i64], [0]]); // row 0 has it, row 1 does not
/// let columns = Tensor::from_slice(&[0i64]);
/// let loss = prompt_label_loss(&[(&emb, &rows)], &classes, &labels, &columns,
///                              &Tensor::from(0.0f32)).unwrap();
/// // Row 0: logit 1, target 1; row 1: logit 0, target 0.
/// let expected = ((1.0 + (-1.0f64).exp()).ln() + 2f64.ln()) / 2.0;
/// assert!((loss.double_value(&[]) - expected).abs() < 1e-6);
/// ```
pub fn prompt_label_loss(
    embeddings: &[(&Tensor, &Tensor)],
    classes: &Tensor,
    labels: &Tensor,
    class_index: &Tensor,
    logit_scale: &Tensor,
) -> Result<Tensor, LossError> {
    let _fp32 = FullPrecision::new();
    check(embeddings, classes, labels, class_index, logit_scale)?;
    let kind = if classes.kind() == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    };
    let device = classes.device();
    let labels = labels.to_device(device).to_kind(Kind::Int64);
    let codes = labels.index_select(1, &class_index.to_device(device));
    let labelled = labels.eq(1).logical_or(&labels.eq(0)).any_dim(1, true);
    let target = codes.eq(1).to_kind(kind);
    let known = codes
        .eq(1)
        .logical_or(&codes.eq(0))
        .logical_or(&codes.eq(-2).logical_and(&labelled));
    let c = normalize(&classes.to_kind(kind));
    let scale = logit_scale.to_kind(kind).exp();
    let mut total = Tensor::zeros([], (kind, device));
    let mut count = Tensor::zeros([], (Kind::Int64, device));
    for (emb, rows) in embeddings {
        if rows.numel() == 0 {
            continue;
        }
        let rows = rows.to_device(device);
        let e = normalize(&emb.index_select(0, &rows).to_kind(kind));
        let logits = e.matmul(&c.tr()) * &scale;
        let w = known.index_select(0, &rows);
        total += logits.binary_cross_entropy_with_logits::<&Tensor>(
            &target.index_select(0, &rows),
            Some(&w.to_kind(kind)),
            None,
            tch::Reduction::Sum,
        );
        count += w.sum(Kind::Int64);
    }
    Ok(total / count.clamp_min(1).to_kind(kind))
}

fn check(
    embeddings: &[(&Tensor, &Tensor)],
    classes: &Tensor,
    labels: &Tensor,
    class_index: &Tensor,
    logit_scale: &Tensor,
) -> Result<(), LossError> {
    if classes.dim() != 2 || classes.size()[0] == 0 {
        return Err(LossError::NotMatrix {
            name: "class embeddings",
            shape: classes.size(),
        });
    }
    check_float("class embeddings", classes)?;
    check_float("logit_scale", logit_scale)?;
    if logit_scale.numel() != 1 {
        return Err(LossError::LogitScaleShape(logit_scale.size()));
    }
    let batch = labels.size().first().copied().unwrap_or(0);
    if labels.dim() != 2 {
        return Err(LossError::LabelShape {
            batch,
            shape: labels.size(),
        });
    }
    if labels.is_floating_point() || labels.kind() == Kind::Bool {
        return Err(LossError::LabelKind(format!("{:?}", labels.kind())));
    }
    if class_index.dim() != 1 || class_index.size()[0] != classes.size()[0] {
        return Err(LossError::Config {
            field: "class_index",
            reason: format!(
                "must hold one column per class ({}), got shape {:?}",
                classes.size()[0],
                class_index.size()
            ),
        });
    }
    for (emb, rows) in embeddings {
        if emb.dim() != 2 || emb.size()[1] != classes.size()[1] || emb.size()[0] != batch {
            return Err(LossError::NotMatrix {
                name: "embeddings",
                shape: emb.size(),
            });
        }
        check_float("embeddings", emb)?;
        if rows.dim() != 1 {
            return Err(LossError::Config {
                field: "rows",
                reason: format!("must be a 1-D index tensor, got shape {:?}", rows.size()),
            });
        }
    }
    Ok(())
}
