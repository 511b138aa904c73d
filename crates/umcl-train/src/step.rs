//! One optimizer step's forward and backward passes: the losses of a batch, with gradients
//! left in the model's parameters.
//!
//! ```text
//! batch ─► image encoder ─► img ┐                     (encoders under autocast when asked)
//!       ─► text encoder  ─► txt ┴─► Image-Text-Label loss (or CLIP) ┐   (fp32, autocast off)
//! prompts ─► text encoder ─► classes ─► prompt-label term ──────────┴─► backward
//! ```
//!
//! **Gradient accumulation** (`accum_steps = k`) splits the batch in k micro-batches and gives
//! the gradient of the full-batch loss, as open_clip's `accum_freq` does:
//!
//! 1. a caching pass computes every micro-batch's features without gradients;
//! 2. each micro-batch is computed again with gradients and spliced into the cached features,
//!    so its loss sees every negative of the full batch; the k backward passes add up to the
//!    gradient of the full-batch loss.
//!
//! What makes the sum exact:
//! - the logit scale and the class prompts reach the loss directly, not through a
//!   micro-batch's features: they take that direct gradient in the first micro-step only;
//! - torch's generator is reseeded from `(step seed, micro-batch)` before each micro-batch in
//!   both passes, so dropout draws the same masks and the cached features equal the fresh ones;
//! - BatchNorm's running statistics are updated once per step: each micro-batch of the caching
//!   pass starts from the step's statistics, the step ends with the mean of their updates
//!   (one update with the mean of the micro-batch statistics), and the gradient pass leaves
//!   them alone.
//!
//! BatchNorm normalises each micro-batch with its own statistics in both passes (as in
//! PyTorch), so for a BatchNorm model `accum_steps = k` is the gradient of the loss of k
//! "ghost" batches, not of `accum_steps = 1`; for models without BatchNorm (ViT, BERT) and the
//! same dropout masks the two agree.

use tch::{Device, Kind, Tensor};
use umcl_losses::{clip_loss, itl_loss, prompt_label_loss, FullPrecision, ItlLossConfig};
use umcl_models::dual::DualEncoder;
use umcl_torch_ext::runtime::{self, AutocastGuard};

use crate::distributed::Dist;
use crate::embed::{rows_where, TensorBatch};
use crate::error::TrainError;

/// The image-text contrastive loss of a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Contrastive {
    /// CLIP's identity target (the ablation).
    Clip,
    /// The Image-Text-Label loss.
    Itl(ItlLossConfig),
}

/// What a step computes, besides the model and the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct StepConfig {
    /// The image-text loss.
    pub contrastive: Contrastive,
    /// Weight of the prompt-label term (0: no term, the prompts get no gradient).
    pub prompt_weight: f64,
    /// Schema indices of the prompts' classes, in the model's class order.
    pub class_index: Vec<usize>,
    /// Micro-batches per step (1: no accumulation).
    pub accum_steps: usize,
    /// Mixed precision for the encoders (bf16 or fp16 autocast on the model's device); the
    /// losses always compute in fp32.
    pub autocast: Option<Kind>,
}

/// The values of one step's loss (of the whole batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepValues {
    /// `contrastive + prompt_weight * prompt`.
    pub total: f64,
    /// The image-text loss.
    pub contrastive: f64,
    /// The prompt-label term.
    pub prompt: f64,
    /// Pairs removed by false-negative masking.
    pub masked_pairs: i64,
    /// Mean target positives per row.
    pub mean_positives: f64,
}

/// The seed torch's generator gets, in a step seeded `step_seed`, before micro-batch `part`
/// is encoded (in both passes), or before the class prompts are with `part` = [`CLASSES`].
pub fn part_seed(step_seed: i64, part: u64) -> i64 {
    crate::trainer::mix_seed(step_seed as u64, part)
}

/// The class prompts' part of a step, for [`part_seed`].
pub const CLASSES: u64 = u64::MAX;

/// The row ranges `[a, z)` of the `k` micro-batches of a batch of `n` (empty ones dropped).
pub(crate) fn micro_batches(k: i64, n: i64) -> Vec<(i64, i64)> {
    (0..k)
        .map(|j| (j * n / k, (j + 1) * n / k))
        .filter(|(a, z)| z > a)
        .collect()
}

/// The forward and backward passes of one step on `batch`, leaving the gradients in the model.
///
/// `seed` seeds torch's generator (dropout) for this step; the same seed gives the same step.
/// In a data-parallel run `dist` is this rank's group and `batch` its part of the global
/// batch: the loss is computed on the features of the whole batch with this rank's rows live,
/// so the gradients summed over ranks are those of one process; the logit scale and the class
/// prompts take their direct gradient on rank 0 only.
pub fn forward_backward(
    model: &DualEncoder,
    batch: &TensorBatch,
    cfg: &StepConfig,
    seed: i64,
    dist: Option<&Dist>,
) -> Result<StepValues, TrainError> {
    let device = batch.labels.device();
    let rank = dist.map_or(0, Dist::rank);
    let main = rank == 0;
    let gather = |t: &Tensor| match dist {
        Some(d) => d.gather(t),
        None => Ok(t.shallow_clone()),
    };
    // What the loss reads of the whole batch besides the features.
    let global = match dist {
        Some(d) => BatchLabels {
            labels: d.gather(&batch.labels)?,
            has_image: d.gather_flags(&batch.has_image)?,
            has_text: d.gather_flags(&batch.has_text)?,
        },
        None => BatchLabels {
            labels: batch.labels.shallow_clone(),
            has_image: batch.has_image.clone(),
            has_text: batch.has_text.clone(),
        },
    };
    let n = batch.ids.len() as i64;
    if n == 0 {
        return Err(TrainError::Setup("empty batch".into()));
    }
    let micro = micro_batches(cfg.accum_steps.max(1) as i64, n);
    let encode = |j: usize| -> Result<(Tensor, Tensor), TrainError> {
        tch::manual_seed(part_seed(seed, j as u64));
        let (a, z) = micro[j];
        let _autocast = autocast(cfg, device)?;
        let img = model.encode_image(&batch.images.narrow(0, a, z - a), true)?;
        let txt = model.encode_text(
            &batch.input_ids.narrow(0, a, z - a),
            &batch.attention_mask.narrow(0, a, z - a),
            true,
        )?;
        Ok((img, txt))
    };
    let classes = |grad: bool| -> Result<Option<Tensor>, TrainError> {
        if model.prompt().is_none() || cfg.prompt_weight == 0.0 {
            return Ok(None);
        }
        tch::manual_seed(part_seed(seed, CLASSES));
        let _no_grad = (!grad).then(tch::no_grad_guard);
        let _autocast = autocast(cfg, device)?;
        Ok(Some(model.encode_classes(true)?))
    };
    let backward = |loss: &Tensor, last: bool| -> Result<(), TrainError> {
        if let (true, Some(d)) = (last, dist) {
            d.arm()?;
        }
        loss.f_backward()?;
        Ok(())
    };

    if micro.len() == 1 {
        let (img, txt) = encode(0)?;
        let (img, txt) = match dist {
            Some(d) => (d.gather_with_local(&img)?, d.gather_with_local(&txt)?),
            None => (img, txt),
        };
        let classes = classes(main)?;
        let out = batch_loss(model, cfg, &global, &img, &txt, classes.as_ref(), main)?;
        backward(&out.loss, true)?;
        return Ok(out.values);
    }

    // 1. Feature cache of the whole batch: this rank's micro-batches without gradients,
    //    BatchNorm's running statistics updated once.
    let running = RunningStats::of(model);
    let (all_img, all_txt) = {
        let _no_grad = tch::no_grad_guard();
        let mut cached = Vec::with_capacity(micro.len());
        for j in 0..micro.len() {
            running.rewind();
            cached.push(encode(j)?);
            running.record();
        }
        running.finish();
        let img = Tensor::cat(&cached.iter().map(|c| &c.0).collect::<Vec<_>>(), 0);
        let txt = Tensor::cat(&cached.iter().map(|c| &c.1).collect::<Vec<_>>(), 0);
        (gather(&img)?, gather(&txt)?)
    };
    let classes_cached = classes(false)?;

    // 2. Each micro-batch again, with gradients, spliced into the cache.
    let offset = rank as i64 * n;
    let total = all_img.size()[0];
    let mut values = None;
    for (j, &(a, z)) in micro.iter().enumerate() {
        let (img_j, txt_j) = encode(j)?;
        let splice = |fresh: &Tensor, all: &Tensor| {
            let (start, end) = (offset + a, offset + z);
            Tensor::cat(
                &[
                    all.narrow(0, 0, start),
                    fresh.shallow_clone(),
                    all.narrow(0, end, total - end),
                ],
                0,
            )
        };
        let img = splice(&img_j, &all_img);
        let txt = splice(&txt_j, &all_txt);
        let direct = main && j == 0;
        let classes = if direct {
            classes(true)?
        } else {
            classes_cached.as_ref().map(Tensor::shallow_clone)
        };
        let out = batch_loss(model, cfg, &global, &img, &txt, classes.as_ref(), direct)?;
        backward(&out.loss, j + 1 == micro.len())?;
        values.get_or_insert(out.values);
    }
    running.keep_finished();
    values.ok_or_else(|| TrainError::Setup("empty batch".into()))
}

fn autocast(cfg: &StepConfig, device: Device) -> Result<Option<AutocastGuard>, TrainError> {
    Ok(cfg
        .autocast
        .map(|kind| runtime::autocast(device, kind))
        .transpose()?)
}

/// BatchNorm's running statistics across the caching pass: every micro-batch starts from the
/// step's values, and the step keeps the mean of the micro-batches' updates.
struct RunningStats {
    /// The running means and variances, in the model.
    live: Vec<Tensor>,
    /// Their values before the step.
    start: Vec<Tensor>,
    /// The sum of their values after each micro-batch.
    sum: Vec<Tensor>,
    /// The finished values, restored after the gradient pass.
    finished: std::cell::RefCell<Vec<Tensor>>,
    count: std::cell::Cell<i64>,
}

impl RunningStats {
    fn of(model: &DualEncoder) -> Self {
        let _no_grad = tch::no_grad_guard();
        let mut live: Vec<(String, Tensor)> = model
            .vs
            .variables()
            .into_iter()
            .filter(|(name, _)| name.ends_with("running_mean") || name.ends_with("running_var"))
            .collect();
        live.sort_by(|a, b| a.0.cmp(&b.0));
        let live: Vec<Tensor> = live.into_iter().map(|(_, t)| t).collect();
        Self {
            start: live.iter().map(Tensor::copy).collect(),
            sum: live.iter().map(Tensor::zeros_like).collect(),
            finished: Default::default(),
            count: Default::default(),
            live,
        }
    }

    fn rewind(&self) {
        let _no_grad = tch::no_grad_guard();
        for (live, start) in self.live.iter().zip(&self.start) {
            live.shallow_clone().copy_(start);
        }
    }

    fn record(&self) {
        let _no_grad = tch::no_grad_guard();
        for (sum, live) in self.sum.iter().zip(&self.live) {
            let mut sum = sum.shallow_clone();
            sum += live;
        }
        self.count.set(self.count.get() + 1);
    }

    /// Sets the statistics to the mean of the recorded updates.
    fn finish(&self) {
        let _no_grad = tch::no_grad_guard();
        let k = self.count.get().max(1) as f64;
        for (live, sum) in self.live.iter().zip(&self.sum) {
            live.shallow_clone().copy_(&(sum / k));
        }
        *self.finished.borrow_mut() = self.live.iter().map(Tensor::copy).collect();
    }

    /// Undoes the gradient pass's updates.
    fn keep_finished(&self) {
        let _no_grad = tch::no_grad_guard();
        for (live, done) in self.live.iter().zip(self.finished.borrow().iter()) {
            live.shallow_clone().copy_(done);
        }
    }
}

/// The labels and presence flags of the whole batch (all ranks').
struct BatchLabels {
    labels: Tensor,
    has_image: Vec<bool>,
    has_text: Vec<bool>,
}

struct LossParts {
    loss: Tensor,
    values: StepValues,
}

/// The loss of one full batch from its features, in fp32 with autocast off. With `direct`
/// false the logit scale enters as a constant (its gradient is taken once per step, by one
/// micro-step of one rank).
fn batch_loss(
    model: &DualEncoder,
    cfg: &StepConfig,
    b: &BatchLabels,
    img: &Tensor,
    txt: &Tensor,
    classes: Option<&Tensor>,
    direct: bool,
) -> Result<LossParts, TrainError> {
    let _fp32 = FullPrecision::new();
    let device = img.device();
    let log_scale = if direct {
        model.log_logit_scale()
    } else {
        model.log_logit_scale().detach()
    };
    let pairs: Vec<bool> = b
        .has_image
        .iter()
        .zip(&b.has_text)
        .map(|(i, t)| *i && *t)
        .collect();
    let pair_rows = rows_where(&pairs, device);
    let n_pairs = pair_rows.size()[0];
    let (contrastive, masked_pairs, mean_positives) = if n_pairs >= 2 {
        let img_p = img.index_select(0, &pair_rows);
        let txt_p = txt.index_select(0, &pair_rows);
        match &cfg.contrastive {
            Contrastive::Clip => (clip_loss(&img_p, &txt_p, &log_scale)?, 0, 1.0),
            Contrastive::Itl(loss_cfg) => {
                let labels_p = b.labels.index_select(0, &pair_rows);
                let out = itl_loss(&img_p, &txt_p, &labels_p, &log_scale, loss_cfg)?;
                let diagnostics = out.diagnostics();
                (
                    out.loss,
                    diagnostics.masked_pairs,
                    diagnostics.mean_positives_per_row,
                )
            }
        }
    } else {
        (Tensor::zeros([], (Kind::Float, device)), 0, 0.0)
    };
    let prompt = match classes {
        Some(classes) => {
            let idx = Tensor::from_slice(
                &cfg.class_index
                    .iter()
                    .map(|&i| i as i64)
                    .collect::<Vec<_>>(),
            )
            .to_device(device);
            let image_rows = rows_where(&b.has_image, device);
            let text_rows = rows_where(&b.has_text, device);
            let rows = [(img, &image_rows), (txt, &text_rows)];
            prompt_label_loss(&rows, classes, &b.labels, &idx, &log_scale)?
        }
        None => Tensor::zeros([], (Kind::Float, device)),
    };
    let loss = &contrastive + &prompt * cfg.prompt_weight;
    let values = Tensor::stack(
        &[
            loss.detach().to_kind(Kind::Double),
            contrastive.detach().to_kind(Kind::Double),
            prompt.detach().to_kind(Kind::Double),
        ],
        0,
    )
    .to_device(Device::Cpu);
    let v = Vec::<f64>::try_from(values)?;
    Ok(LossParts {
        loss,
        values: StepValues {
            total: v[0],
            contrastive: v[1],
            prompt: v[2],
            masked_pairs,
            mean_positives,
        },
    })
}
