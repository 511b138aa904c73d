//! AdamW over tensors we own, so its state can be saved and a resumed run is exact.
//!
//! Loshchilov & Hutter, "Decoupled Weight Decay Regularization" (arXiv 1711.05101), with the
//! update as `torch.optim.AdamW` computes it:
//!
//! ```text
//! θ ← θ (1 − lr·λ)                       (decoupled decay, only on decayed groups)
//! m ← β1 m + (1 − β1) g
//! v ← β2 v + (1 − β2) g²
//! θ ← θ − lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε)
//! ```
//!
//! Each parameter belongs to a group (image encoder, text encoder, heads, prompts) with its
//! own learning-rate factor; weight decay skips tensors of rank < 2 (biases, norms), the logit
//! scale and prompt vectors. [`warmup_cosine`] is the schedule.
//!
//! By default the update runs fused: parameters that share a learning-rate factor, a decay
//! setting, a device and a dtype form a bucket, and each bucket is one call of libtorch's
//! `_fused_adamw_` (through `umcl-torch-ext`) instead of about eight kernels per tensor.
//! [`AdamW::set_fused`]`(false)` selects the per-tensor update, which computes the same formula
//! in another order (the results agree to fp32 rounding, not bit for bit). Either way the state
//! is the two moments per parameter and one step count, saved and loaded the same way.

use std::collections::HashMap;

use tch::{Device, Kind, Tensor};
use umcl_torch_ext::fused::{clear_grads, fused_adamw, AdamWHyper};
use umcl_torch_ext::ExtError;

/// The parameter groups, each with its own learning-rate factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    /// `image.*`
    Image,
    /// `text.*`
    Text,
    /// Projections and the logit scale.
    Heads,
    /// `prompt.*`, the continuous prompt vectors.
    Prompts,
}

impl Group {
    /// The group of a dual-encoder variable name.
    pub fn of(name: &str) -> Group {
        if name.starts_with("image.") {
            Group::Image
        } else if name.starts_with("text.") {
            Group::Text
        } else if name.starts_with("prompt.") {
            Group::Prompts
        } else {
            Group::Heads
        }
    }
}

/// Hyper-parameters of [`AdamW`].
#[derive(Debug, Clone, PartialEq)]
pub struct AdamWConfig {
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay λ.
    pub weight_decay: f64,
    /// Learning-rate factor per group.
    pub lr_scale: HashMap<Group, f64>,
}

struct Param {
    name: String,
    value: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    lr_scale: f64,
    decay: bool,
}

/// Parameters updated by one fused call: same learning-rate factor, decay, device and dtype.
struct Bucket {
    lr_scale: f64,
    decay: bool,
    device: Device,
    members: Vec<usize>,
}

/// AdamW whose moments are plain tensors we can save and load.
pub struct AdamW {
    params: Vec<Param>,
    config: AdamWConfig,
    step: i64,
    fused: bool,
    buckets: Vec<Bucket>,
    /// One float32 scalar per device holding the step number, read by the fused kernels.
    step_tensors: Vec<(Device, Tensor)>,
}

/// Whether weight decay applies to a variable.
pub fn decays(name: &str, value: &Tensor) -> bool {
    value.dim() >= 2 && Group::of(name) != Group::Prompts && !name.ends_with("logit_scale")
}

impl AdamW {
    /// Optimises the given named variables (those with `requires_grad`; the others are left
    /// out). Group factors missing from the config are 1.
    pub fn new(vars: Vec<(String, Tensor)>, config: AdamWConfig) -> Self {
        let mut vars: Vec<_> = vars
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let params = vars
            .into_iter()
            .map(|(name, value)| Param {
                exp_avg: value.zeros_like(),
                exp_avg_sq: value.zeros_like(),
                lr_scale: *config.lr_scale.get(&Group::of(&name)).unwrap_or(&1.0),
                decay: decays(&name, &value),
                name,
                value,
            })
            .filter(|p| p.lr_scale > 0.0)
            .collect::<Vec<_>>();
        let mut buckets: Vec<(Bucket, Kind)> = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let (device, kind) = (p.value.device(), p.value.kind());
            let same = |b: &&mut (Bucket, Kind)| {
                b.0.lr_scale == p.lr_scale
                    && b.0.decay == p.decay
                    && b.0.device == device
                    && b.1 == kind
            };
            match buckets.iter_mut().find(same) {
                Some(b) => b.0.members.push(i),
                None => buckets.push((
                    Bucket {
                        lr_scale: p.lr_scale,
                        decay: p.decay,
                        device,
                        members: vec![i],
                    },
                    kind,
                )),
            }
        }
        let mut step_tensors: Vec<(Device, Tensor)> = Vec::new();
        for (b, _) in &buckets {
            if !step_tensors.iter().any(|(d, _)| *d == b.device) {
                step_tensors.push((b.device, Tensor::zeros([], (Kind::Float, b.device))));
            }
        }
        Self {
            params,
            config,
            step: 0,
            fused: true,
            buckets: buckets.into_iter().map(|(b, _)| b).collect(),
            step_tensors,
        }
    }

    /// Chooses the fused update (the default) or the per-tensor one.
    pub fn set_fused(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// Whether [`AdamW::step`] runs the fused update.
    pub fn is_fused(&self) -> bool {
        self.fused
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> i64 {
        self.step
    }

    /// Names of the optimised variables, in update order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|p| p.name.as_str())
    }

    /// Drops every gradient (torch's `zero_grad(set_to_none=True)`): no kernel runs, and the
    /// next backward pass stores fresh gradients instead of adding into zeroed ones.
    ///
    /// # Panics
    /// If libtorch refuses, which only a broken tensor handle can cause.
    pub fn zero_grad(&self) {
        let values: Vec<&Tensor> = self.params.iter().map(|p| &p.value).collect();
        if let Err(e) = clear_grads(&values) {
            panic!("AdamW::zero_grad: {e}");
        }
    }

    /// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the norm
    /// before clipping as a 0-d tensor (no host synchronisation).
    pub fn clip_grad_norm(&self, max_norm: f64) -> Tensor {
        let _guard = tch::no_grad_guard();
        let grads: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.value.grad())
            .filter(Tensor::defined)
            .collect();
        let Some(first) = grads.first() else {
            return Tensor::from(0f32);
        };
        let squares: Vec<Tensor> = grads
            .iter()
            .map(|g| g.to_kind(Kind::Float).square().sum(Kind::Float))
            .collect();
        let total = Tensor::stack(&squares, 0).sum(Kind::Float).sqrt();
        if max_norm > 0.0 {
            let coef = (max_norm / (&total + 1e-6))
                .clamp_max(1.0)
                .to_device(first.device());
            for g in &grads {
                let mut g = g.shallow_clone();
                let _ = g.g_mul_(&coef.to_kind(g.kind()));
            }
        }
        total
    }

    /// One AdamW update with learning rate `lr` (times each group's factor); parameters without
    /// a gradient are left as they are. Fused unless [`AdamW::set_fused`]`(false)`.
    ///
    /// # Panics
    /// If the fused kernel refuses its inputs, which the construction rules out (moments are
    /// made like their parameters); [`AdamW::try_step`] returns the error instead.
    pub fn step(&mut self, lr: f64) {
        if let Err(e) = self.try_step(lr) {
            panic!("AdamW::step: {e}");
        }
    }

    /// [`AdamW::step`], returning libtorch's error instead of panicking.
    pub fn try_step(&mut self, lr: f64) -> Result<(), ExtError> {
        if self.fused {
            self.fused_step(lr)
        } else {
            self.plain_step(lr);
            Ok(())
        }
    }

    fn fused_step(&mut self, lr: f64) -> Result<(), ExtError> {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        for (_, t) in &mut self.step_tensors {
            let _ = t.fill_(self.step as f64);
        }
        let c = &self.config;
        for b in &self.buckets {
            let Some((_, step)) = self.step_tensors.iter().find(|(d, _)| *d == b.device) else {
                continue;
            };
            let grads: Vec<(usize, Tensor)> = b
                .members
                .iter()
                .map(|&i| (i, self.params[i].value.grad()))
                .filter(|(_, g)| g.defined())
                .collect();
            if grads.is_empty() {
                continue;
            }
            let pick = |f: fn(&Param) -> &Tensor| -> Vec<&Tensor> {
                grads.iter().map(|(i, _)| f(&self.params[*i])).collect()
            };
            let hyper = AdamWHyper {
                lr: lr * b.lr_scale,
                beta1: c.beta1,
                beta2: c.beta2,
                weight_decay: if b.decay { c.weight_decay } else { 0.0 },
                eps: c.eps,
            };
            fused_adamw(
                &pick(|p| &p.value),
                &grads.iter().map(|(_, g)| g).collect::<Vec<_>>(),
                &pick(|p| &p.exp_avg),
                &pick(|p| &p.exp_avg_sq),
                &vec![step; grads.len()],
                &hyper,
            )?;
        }
        Ok(())
    }

    fn plain_step(&mut self, lr: f64) {
        let _guard = tch::no_grad_guard();
        self.step += 1;
        let c = &self.config;
        let t = self.step as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2_sqrt = (1.0 - c.beta2.powi(t)).sqrt();
        for p in &mut self.params {
            let g = p.value.grad();
            if !g.defined() {
                continue;
            }
            let lr = lr * p.lr_scale;
            if p.decay && c.weight_decay > 0.0 {
                let _ = p.value.g_mul_scalar_(1.0 - lr * c.weight_decay);
            }
            let _ = p.exp_avg.lerp_(&g, 1.0 - c.beta1);
            let _ = p.exp_avg_sq.g_mul_scalar_(c.beta2);
            let _ = p.exp_avg_sq.addcmul_(&g, &g.g_mul_scalar(1.0 - c.beta2));
            let denom = p
                .exp_avg_sq
                .sqrt()
                .g_div_scalar(bias2_sqrt)
                .g_add_scalar(c.eps);
            let update = p.exp_avg.g_div(&denom).g_mul_scalar(lr / bias1);
            let _ = p.value.g_sub_(&update);
        }
    }

    /// The optimizer state as named tensors: `exp_avg.<name>`, `exp_avg_sq.<name>`, `step`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.params.len() + 1);
        for p in &self.params {
            out.push((format!("exp_avg.{}", p.name), p.exp_avg.shallow_clone()));
            out.push((
                format!("exp_avg_sq.{}", p.name),
                p.exp_avg_sq.shallow_clone(),
            ));
        }
        out.push(("step".into(), Tensor::from(self.step)));
        out
    }

    /// Restores a state written by [`AdamW::state`]; every entry must be present with the
    /// right shape, and nothing else.
    pub fn load_state(&mut self, state: Vec<(String, Tensor)>) -> Result<(), String> {
        let mut map: HashMap<String, Tensor> = state.into_iter().collect();
        let step = map
            .remove("step")
            .ok_or_else(|| "optimizer state has no `step`".to_string())?;
        let _guard = tch::no_grad_guard();
        for p in &mut self.params {
            for (prefix, slot) in [
                ("exp_avg", &mut p.exp_avg),
                ("exp_avg_sq", &mut p.exp_avg_sq),
            ] {
                let key = format!("{prefix}.{}", p.name);
                let t = map
                    .remove(&key)
                    .ok_or_else(|| format!("optimizer state has no `{key}`"))?;
                if t.size() != slot.size() {
                    return Err(format!(
                        "optimizer state `{key}` has shape {:?}, the parameter {:?}",
                        t.size(),
                        slot.size()
                    ));
                }
                slot.copy_(&t);
            }
        }
        if let Some(extra) = map.keys().next() {
            return Err(format!("optimizer state has an unexpected entry `{extra}`"));
        }
        self.step = step.int64_value(&[]);
        Ok(())
    }
}

/// Linear warm-up from `lr/warmup` to `lr` over `warmup` steps, then cosine decay to
/// `lr * min_ratio` at `total` steps. `step` counts from 0.
///
/// ```
/// use umcl_train::optim::warmup_cosine;
/// assert_eq!(warmup_cosine(0, 1.0, 10, 110, 0.0), 0.1);
/// assert_eq!(warmup_cosine(9, 1.0, 10, 110, 0.0), 1.0);
/// assert!((warmup_cosine(60, 1.0, 10, 110, 0.0) - 0.5).abs() < 1e-12);
/// assert!(warmup_cosine(110, 1.0, 10, 110, 0.1) - 0.1 < 1e-12);
/// ```
pub fn warmup_cosine(step: u64, lr: f64, warmup: u64, total: u64, min_ratio: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup) as f64 / span).min(1.0);
    let min = lr * min_ratio;
    min + (lr - min) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn config(weight_decay: f64) -> AdamWConfig {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            lr_scale: HashMap::new(),
        }
    }

    #[test]
    fn first_step_moves_each_weight_by_lr_against_the_gradient_sign() {
        // With zero moments, step 1 gives m/(1-β1) = g and sqrt(v/(1-β2)) = |g|, so the update
        // is lr * g / (|g| + eps) = lr * sign(g) (up to eps).
        let w = Tensor::from_slice(&[1.0f32, -2.0, 3.0])
            .reshape([1, 3])
            .set_requires_grad(true);
        let mut opt = AdamW::new(vec![("heads.w".into(), w.shallow_clone())], config(0.0));
        let loss = (&w * Tensor::from_slice(&[2.0f32, -0.5, 0.0]).reshape([1, 3])).sum(Kind::Float);
        loss.backward();
        opt.step(0.1);
        let got = Vec::<f32>::try_from(w.detach().reshape([-1])).unwrap();
        let want = [0.9f32, -1.9, 3.0];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
    }

    #[test]
    fn decay_skips_biases_logit_scale_and_prompts() {
        let matrix = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        let vector = Tensor::ones([2], (Kind::Float, Device::Cpu));
        assert!(decays("image.conv1.weight", &matrix));
        assert!(!decays("image.bn1.weight", &vector));
        assert!(!decays("text_projection.bias", &vector));
        assert!(!decays("prompt.ctx", &matrix));
        assert!(!decays("logit_scale", &Tensor::from(1.0f32)));
        // A decayed weight with zero gradient shrinks by exactly lr * λ.
        let w = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut opt = AdamW::new(vec![("image.w".into(), w.shallow_clone())], config(0.5));
        (&w * 0.0).sum(Kind::Float).backward();
        opt.step(0.1);
        let v = w.double_value(&[0, 0]);
        assert!((v - 0.95).abs() < 1e-6, "{v}");
    }

    #[test]
    fn state_round_trips_and_is_checked() {
        let w = Tensor::ones([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut a = AdamW::new(vec![("text.w".into(), w.shallow_clone())], config(0.1));
        (&w * &w).sum(Kind::Float).backward();
        a.step(0.01);
        let state = a.state();
        let w2 = Tensor::ones([3, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut b = AdamW::new(vec![("text.w".into(), w2.shallow_clone())], config(0.1));
        b.load_state(state.iter().map(|(n, t)| (n.clone(), t.copy())).collect())
            .unwrap();
        assert_eq!(b.step_count(), 1);
        assert!(b.state()[0].1.equal(&state[0].1));
        let mut missing = state
            .iter()
            .map(|(n, t)| (n.clone(), t.copy()))
            .collect::<Vec<_>>();
        let _ = missing.remove(0);
        assert!(b
            .load_state(missing)
            .unwrap_err()
            .contains("exp_avg.text.w"));
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        // Gradient (3, 4) has norm 5; clipping at 1 leaves (0.6, 0.8).
        let w = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let opt = AdamW::new(vec![("heads.w".into(), w.shallow_clone())], config(0.0));
        (&w * Tensor::from_slice(&[3.0f32, 4.0]))
            .sum(Kind::Float)
            .backward();
        let norm = opt.clip_grad_norm(1.0).double_value(&[]);
        assert!((norm - 5.0).abs() < 1e-5);
        let g = Vec::<f32>::try_from(w.grad()).unwrap();
        assert!(
            (g[0] - 0.6).abs() < 1e-5 && (g[1] - 0.8).abs() < 1e-5,
            "{g:?}"
        );
    }

    /// A small model's worth of named variables: matrices and vectors in several groups, with
    /// values from a fixed formula (not the global generator, which parallel tests share).
    fn toy_vars(seed: i64) -> Vec<(String, Tensor)> {
        let opts = (Kind::Float, Device::Cpu);
        [
            ("image.conv.weight", vec![4, 3, 3, 3]),
            ("image.bn.weight", vec![4]),
            ("text.dense.weight", vec![6, 5]),
            ("text.dense.bias", vec![6]),
            ("image_projection.weight", vec![2, 4]),
            ("logit_scale", vec![]),
            ("prompt.ctx", vec![3, 5]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, (n, s))| {
            let numel: i64 = s.iter().product();
            let v = (Tensor::arange(numel, opts) * 1.7 + (seed + 3 * i as i64) as f64)
                .sin()
                .reshape(s);
            (n.to_string(), v.set_requires_grad(true))
        })
        .collect()
    }

    fn shallow(vars: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
        vars.iter()
            .map(|(n, v)| (n.clone(), v.shallow_clone()))
            .collect()
    }

    #[test]
    fn fused_and_per_tensor_updates_agree() {
        let mut cfg = config(0.05);
        cfg.lr_scale.insert(Group::Image, 0.5);
        cfg.lr_scale.insert(Group::Prompts, 2.0);
        let run = |fused: bool| {
            let vars = toy_vars(11);
            let mut opt = AdamW::new(shallow(&vars), cfg.clone());
            opt.set_fused(fused);
            assert_eq!(opt.is_fused(), fused);
            for step in 0..4 {
                // A loss whose gradient differs per element and per step.
                let k = (step + 1) as f64;
                let loss = vars
                    .iter()
                    .map(|(_, v)| (v * (v * k).sin()).sum(Kind::Float))
                    .fold(Tensor::zeros([], (Kind::Float, Device::Cpu)), |a, b| a + b);
                loss.backward();
                opt.step(0.01 * (step + 1) as f64);
                opt.zero_grad();
            }
            (vars, opt.state())
        };
        let (fused, fused_state) = run(true);
        let (plain, plain_state) = run(false);
        let start = toy_vars(11);
        for ((name, f), ((_, p), (_, s))) in fused.iter().zip(plain.iter().zip(&start)) {
            let diff = (f - p).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name}: fused and per-tensor differ by {diff}");
            let moved = (f - s).abs().max().double_value(&[]);
            assert!(moved > 1e-3, "{name} did not move ({moved})");
        }
        for ((name, f), (_, p)) in fused_state.iter().zip(&plain_state) {
            let diff = (f - p).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "state {name} differs by {diff}");
        }
    }

    #[test]
    fn state_saved_by_one_update_resumes_the_other() {
        // Checkpoints do not record which update wrote them.
        let cfg = config(0.1);
        let vars = toy_vars(3);
        let mut plain = AdamW::new(shallow(&vars), cfg.clone());
        plain.set_fused(false);
        for (_, v) in &vars {
            v.square().sum(Kind::Float).backward();
        }
        plain.step(0.01);
        let resumed_vars: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.detach().copy().set_requires_grad(true)))
            .collect();
        let mut fused = AdamW::new(shallow(&resumed_vars), cfg);
        fused
            .load_state(
                plain
                    .state()
                    .iter()
                    .map(|(n, t)| (n.clone(), t.copy()))
                    .collect(),
            )
            .unwrap();
        plain.zero_grad();
        for ((_, a), (_, b)) in vars.iter().zip(&resumed_vars) {
            a.square().sum(Kind::Float).backward();
            b.square().sum(Kind::Float).backward();
        }
        plain.step(0.01);
        fused.step(0.01);
        assert_eq!(fused.step_count(), 2);
        for ((name, a), (_, b)) in vars.iter().zip(&resumed_vars) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "{name}: {diff}");
        }
    }

    #[test]
    fn zero_grad_drops_the_gradients() {
        let vars = toy_vars(5);
        let opt = AdamW::new(shallow(&vars), config(0.0));
        vars[0].1.sum(Kind::Float).backward();
        assert!(vars[0].1.grad().defined());
        opt.zero_grad();
        assert!(vars.iter().all(|(_, v)| !v.grad().defined()));
    }

    #[test]
    fn group_factors_apply_and_zero_freezes() {
        let a = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let b = Tensor::zeros([1, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let mut cfg = config(0.0);
        cfg.lr_scale.insert(Group::Image, 0.5);
        cfg.lr_scale.insert(Group::Text, 0.0);
        let mut opt = AdamW::new(
            vec![
                ("image.a".into(), a.shallow_clone()),
                ("text.b".into(), b.shallow_clone()),
            ],
            cfg,
        );
        assert_eq!(opt.names().collect::<Vec<_>>(), ["image.a"]);
        (&a + &b).sum(Kind::Float).backward();
        opt.step(0.2);
        assert!((a.double_value(&[0, 0]) + 0.1).abs() < 1e-6);
        assert_eq!(b.double_value(&[0, 0]), 0.0);
    }
}
