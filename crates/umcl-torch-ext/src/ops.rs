//! Tensor operations that both the encoders (umcl-models) and the losses (umcl-losses) use,
//! kept here, below both, so each has one definition.

use tch::Tensor;

/// Divides each row (the last dimension) by its L2 norm, floored at 1e-12 so that rows of
/// zeros stay zero: `v / max(‖v‖₂, 1e-12)`, as `torch.nn.functional.normalize(v, dim=-1)`.
///
/// ```
/// use tch::Tensor;
/// let v = Tensor::from_slice2(&[[3.0f32, 4.0], [0.0, 0.0]]);
/// let n = umcl_torch_ext::ops::l2_normalize(&v);
/// assert_eq!(Vec::<f32>::try_from(n.flatten(0, -1)).unwrap(), [0.6, 0.8, 0.0, 0.0]);
/// ```
pub fn l2_normalize(xs: &Tensor) -> Tensor {
    xs / xs.norm_scalaropt_dim(2, [-1], true).clamp_min(1e-12)
}
