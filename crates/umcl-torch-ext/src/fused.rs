//! Fused AdamW: `at::_fused_adamw_`, one libtorch call that updates a whole list of parameters
//! (CPU and CUDA kernels), where a per-tensor AdamW launches several kernels per parameter.
//!
//! The update is `torch.optim.AdamW`'s (Loshchilov & Hutter, arXiv 1711.05101), for step `t`
//! read from `state_steps`:
//!
//! ```text
//! θ ← θ (1 − lr·λ)
//! m ← β1 m + (1 − β1) g
//! v ← β2 v + (1 − β2) g²
//! θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! The step tensors are only read: advance them before the call, as `torch.optim.AdamW` does.
//!
//! ```
//! use tch::{Device, Kind, Tensor};
//! use umcl_torch_ext::fused::{fused_adamw, AdamWHyper};
//!
//! let w = Tensor::from_slice(&[1.0f32, -2.0]);
//! let g = Tensor::from_slice(&[0.5f32, -0.5]);
//! let (m, v) = (w.zeros_like(), w.zeros_like());
//! let t = Tensor::from(1.0f32);
//! let hyper = AdamWHyper { lr: 0.1, weight_decay: 0.0, ..AdamWHyper::default() };
//! fused_adamw(&[&w], &[&g], &[&m], &[&v], &[&t], &hyper)?;
//! // The first step moves every weight by lr against the sign of its gradient.
//! assert!((w.double_value(&[0]) - 0.9).abs() < 1e-6);
//! assert!((w.double_value(&[1]) + 1.9).abs() < 1e-6);
//! # Ok::<(), umcl_torch_ext::ExtError>(())
//! ```

use std::ffi::c_void;

use tch::Tensor;

use crate::{check, ExtError};

mod ffi {
    use std::ffi::{c_char, c_void};

    extern "C" {
        #[allow(clippy::too_many_arguments)]
        pub fn umcl_ext_fused_adamw(
            params: *const *const c_void,
            grads: *const *const c_void,
            exp_avgs: *const *const c_void,
            exp_avg_sqs: *const *const c_void,
            state_steps: *const *const c_void,
            n: usize,
            lr: f64,
            beta1: f64,
            beta2: f64,
            weight_decay: f64,
            eps: f64,
            maximize: bool,
        ) -> *mut c_char;
        pub fn umcl_ext_clear_grads(tensors: *const *const c_void, n: usize) -> *mut c_char;
    }
}

/// The scalar settings of one [`fused_adamw`] call. [`Default`] is `torch.optim.AdamW`'s
/// (lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 1e-2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWHyper {
    /// Learning rate.
    pub lr: f64,
    /// β1, the first moment's decay.
    pub beta1: f64,
    /// β2, the second moment's decay.
    pub beta2: f64,
    /// Decoupled weight decay λ (the parameter shrinks by `lr·λ`).
    pub weight_decay: f64,
    /// ε, added to the bias-corrected root of the second moment.
    pub eps: f64,
}

impl Default for AdamWHyper {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 1e-2,
            eps: 1e-8,
        }
    }
}

/// One AdamW update of every `params[i]` with gradient `grads[i]`, in place (parameters and
/// both moments), through `at::_fused_adamw_`.
///
/// All lists have the same length. Parameters, gradients and moments of one call share one
/// device and dtype; each `state_steps[i]` is a float32 scalar on that device holding the
/// step number `t >= 1` (the same tensor may appear several times). Errors from libtorch
/// (mismatched shapes, devices or dtypes) come back as [`ExtError`].
pub fn fused_adamw(
    params: &[&Tensor],
    grads: &[&Tensor],
    exp_avgs: &[&Tensor],
    exp_avg_sqs: &[&Tensor],
    state_steps: &[&Tensor],
    hyper: &AdamWHyper,
) -> Result<(), ExtError> {
    const CONTEXT: &str = "fused_adamw";
    let n = params.len();
    for (what, len) in [
        ("grads", grads.len()),
        ("exp_avgs", exp_avgs.len()),
        ("exp_avg_sqs", exp_avg_sqs.len()),
        ("state_steps", state_steps.len()),
    ] {
        if len != n {
            return Err(ExtError {
                context: CONTEXT,
                message: format!("{n} parameters but {len} {what}"),
            });
        }
    }
    if n == 0 {
        return Ok(());
    }
    let all = [params, grads, exp_avgs, exp_avg_sqs, state_steps];
    if let Some((list, i)) = all.iter().enumerate().find_map(|(l, ts)| {
        ts.iter().position(|t| !t.defined()).map(|i| {
            (
                ["params", "grads", "exp_avgs", "exp_avg_sqs", "state_steps"][l],
                i,
            )
        })
    }) {
        return Err(ExtError {
            context: CONTEXT,
            message: format!("{list}[{i}] is an undefined tensor"),
        });
    }
    let ptrs = |ts: &[&Tensor]| -> Vec<*const c_void> {
        ts.iter().map(|t| t.as_ptr() as *const c_void).collect()
    };
    let (p, g, m, v, s) = (
        ptrs(params),
        ptrs(grads),
        ptrs(exp_avgs),
        ptrs(exp_avg_sqs),
        ptrs(state_steps),
    );
    // SAFETY: every pointer is a live `at::Tensor*` owned by a tch `Tensor` borrowed for the
    // duration of the call; the arrays hold `n` entries each. libtorch updates the tensors'
    // storage in place and keeps no pointer after returning.
    let message = unsafe {
        ffi::umcl_ext_fused_adamw(
            p.as_ptr(),
            g.as_ptr(),
            m.as_ptr(),
            v.as_ptr(),
            s.as_ptr(),
            n,
            hyper.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.weight_decay,
            hyper.eps,
            false,
        )
    };
    // SAFETY: `message` is NULL or an owned message from the bridge.
    unsafe { check(CONTEXT, message) }
}

/// Sets the gradient of every tensor to undefined, as `zero_grad(set_to_none=True)` does in
/// torch: no kernel runs, and the next backward pass stores fresh gradients instead of adding
/// into zeroed ones.
pub fn clear_grads(tensors: &[&Tensor]) -> Result<(), ExtError> {
    let ptrs: Vec<*const c_void> = tensors
        .iter()
        .map(|t| t.as_ptr() as *const c_void)
        .collect();
    // SAFETY: live `at::Tensor*` handles borrowed for the call; `ptrs` holds `len` entries.
    let message = unsafe { ffi::umcl_ext_clear_grads(ptrs.as_ptr(), ptrs.len()) };
    // SAFETY: `message` is NULL or an owned message from the bridge.
    unsafe { check("clear_grads", message) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// AdamW written out per tensor, as `torch.optim.AdamW` (foreach=False) computes it.
    fn plain_adamw(w: &Tensor, g: &Tensor, m: &Tensor, v: &Tensor, t: i32, h: &AdamWHyper) {
        let mut w = w.shallow_clone();
        let mut m = m.shallow_clone();
        let mut v = v.shallow_clone();
        let _ = w.g_mul_scalar_(1.0 - h.lr * h.weight_decay);
        let _ = m.lerp_(g, 1.0 - h.beta1);
        let _ = v.g_mul_scalar_(h.beta2);
        let _ = v.addcmul_(g, &g.g_mul_scalar(1.0 - h.beta2));
        let bias1 = 1.0 - h.beta1.powi(t);
        let bias2_sqrt = (1.0 - h.beta2.powi(t)).sqrt();
        let denom = v.sqrt().g_div_scalar(bias2_sqrt).g_add_scalar(h.eps);
        let _ = w.g_sub_(&m.g_div(&denom).g_mul_scalar(h.lr / bias1));
    }

    fn refs(ts: &[Tensor]) -> Vec<&Tensor> {
        ts.iter().collect()
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[])
    }

    #[test]
    fn matches_plain_adamw_over_several_steps_and_shapes() {
        tch::manual_seed(7);
        let opts = (Kind::Float, Device::Cpu);
        let shapes: [&[i64]; 4] = [&[3, 5], &[17], &[2, 3, 4], &[]];
        let hyper = AdamWHyper {
            lr: 3e-3,
            beta1: 0.8,
            beta2: 0.95,
            weight_decay: 0.1,
            eps: 1e-6,
        };
        let fused_w: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
        let plain_w: Vec<Tensor> = fused_w.iter().map(Tensor::copy).collect();
        let zeros = |ws: &[Tensor]| ws.iter().map(Tensor::zeros_like).collect::<Vec<_>>();
        let (fm, fv, pm, pv) = (
            zeros(&fused_w),
            zeros(&fused_w),
            zeros(&fused_w),
            zeros(&fused_w),
        );
        let step = Tensor::zeros([], opts);
        for t in 1..=5 {
            let grads: Vec<Tensor> = shapes.iter().map(|s| Tensor::randn(*s, opts)).collect();
            let _ = step.shallow_clone().fill_(f64::from(t));
            let steps = vec![&step; shapes.len()];
            fused_adamw(
                &refs(&fused_w),
                &refs(&grads),
                &refs(&fm),
                &refs(&fv),
                &steps,
                &hyper,
            )
            .unwrap();
            for i in 0..shapes.len() {
                plain_adamw(&plain_w[i], &grads[i], &pm[i], &pv[i], t, &hyper);
            }
        }
        for i in 0..shapes.len() {
            // Same formula, different evaluation order: fp32 rounding only.
            assert!(max_abs_diff(&fused_w[i], &plain_w[i]) < 1e-6, "param {i}");
            assert!(max_abs_diff(&fm[i], &pm[i]) < 1e-6, "exp_avg {i}");
            assert!(max_abs_diff(&fv[i], &pv[i]) < 1e-6, "exp_avg_sq {i}");
        }
        // The weights did move: the comparison is not between untouched tensors.
        let moved: Vec<f64> = (0..shapes.len())
            .map(|i| max_abs_diff(&fused_w[i], &plain_w[i].zeros_like()))
            .collect();
        assert!(moved.iter().all(|d| *d > 0.0), "{moved:?}");
    }

    #[test]
    fn cleared_gradients_are_undefined_and_refilled_by_backward() {
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        (&w * 3.0).sum(Kind::Float).backward();
        assert!(w.grad().defined());
        clear_grads(&[&w]).unwrap();
        assert!(!w.grad().defined());
        // A fresh gradient, not 3 + 2 accumulated into the old one.
        (&w * 2.0).sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(w.grad()).unwrap(), [2.0, 2.0]);
    }

    #[test]
    fn step_tensor_is_read_not_advanced() {
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let g = w.ones_like();
        let (m, v) = (w.zeros_like(), w.zeros_like());
        let step = Tensor::from(3.0f32);
        fused_adamw(&[&w], &[&g], &[&m], &[&v], &[&step], &AdamWHyper::default()).unwrap();
        assert_eq!(step.double_value(&[]), 3.0);
    }

    #[test]
    fn mismatched_lists_and_bad_tensors_are_errors() {
        let w = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let m = w.zeros_like();
        let step = Tensor::from(1.0f32);
        let h = AdamWHyper::default();
        let err = fused_adamw(&[&w], &[], &[&m], &[&m], &[&step], &h).unwrap_err();
        assert!(err.message.contains("1 parameters but 0 grads"), "{err}");
        // A gradient of the wrong shape is refused by libtorch, as an error, not an abort.
        let g = Tensor::ones([3], (Kind::Float, Device::Cpu));
        let err = fused_adamw(&[&w], &[&g], &[&m], &[&m.copy()], &[&step], &h).unwrap_err();
        assert_eq!(err.context, "fused_adamw");
        assert!(err.message.contains("parameter shape [2]"), "{err}");
        let step64 = Tensor::from(1.0f64);
        let err = fused_adamw(
            &[&w],
            &[&w.ones_like()],
            &[&m],
            &[&m.copy()],
            &[&step64],
            &h,
        )
        .unwrap_err();
        assert!(err.message.contains("float32 scalar"), "{err}");
        let undefined = Tensor::new();
        let err = fused_adamw(&[&w], &[&undefined], &[&m], &[&m], &[&step], &h).unwrap_err();
        assert!(err.message.contains("grads[0]"), "{err}");
    }
}
