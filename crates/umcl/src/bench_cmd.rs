//! `umcl bench step`: times the full training step of a model as `umcl train` runs it
//! (forward, loss, backward, AdamW), on random inputs, so it can be compared with the PyTorch
//! eager reference `crates/umcl-train/benches/reference/train_step.py`, which does the same
//! work and prints the same JSON fields.
//!
//! One step: gradients set to none, forward of both encoders (bf16 autocast on CUDA, fp32 on
//! the CPU), the Image-Text-Label loss (multi-positive targets, the training default), backward,
//! AdamW (fused unless `--no-fused`), then a device synchronisation so the wall clock covers
//! the step's kernels. `resnet50-image-only` is ResNet-50 with a 1000-class linear head and
//! cross-entropy, the continuity case of `../shared/docs/LIBTORCH.md`.
//!
//! Inputs follow fixed formulas shared with the reference (text lengths, label codes), so both
//! sides see the same padding and the same positives; pixels and token ids are random.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use tch::{nn, nn::Module, Device, Kind, Tensor};
use umcl_fs::write_atomic;
use umcl_losses::ItlLossConfig;
use umcl_models::bert::BertConfig;
use umcl_models::dual::{DualConfig, DualEncoder};
use umcl_models::image::{ImageEncoder, ImageEncoderConfig};
use umcl_models::resnet::ResNetConfig;
use umcl_models::vit::VitConfig;
use umcl_torch_ext::runtime::{self, BackendConfig, CpuHeap, DeviceRequest};
use umcl_train::config::DistConfig;
use umcl_train::distributed::Dist;
use umcl_train::embed::TensorBatch;
use umcl_train::optim::{AdamW, AdamWConfig};
use umcl_train::step::{self, Contrastive, StepConfig};

use crate::stdout::outln;

/// `umcl bench ...`
#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time the training step (forward, loss, backward, AdamW) on random inputs.
    ///
    /// Example: umcl bench step --model vit-b16-bert-base --batch 64 --device cuda --json step.json
    Step(StepArgs),
}

/// The models `umcl bench step` can time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// ResNet-50 + BERT-base dual encoder, ITL loss.
    #[value(name = "resnet50-bert-base")]
    Resnet50BertBase,
    /// ViT-B/16 + BERT-base dual encoder, ITL loss.
    #[value(name = "vit-b16-bert-base")]
    VitB16BertBase,
    /// ResNet-50 with a 1000-class head, cross-entropy (no text).
    #[value(name = "resnet50-image-only")]
    Resnet50ImageOnly,
}

impl BenchModel {
    fn name(self) -> &'static str {
        match self {
            Self::Resnet50BertBase => "resnet50-bert-base",
            Self::VitB16BertBase => "vit-b16-bert-base",
            Self::Resnet50ImageOnly => "resnet50-image-only",
        }
    }
}

/// Options of `umcl bench step`.
#[derive(Args)]
pub struct StepArgs {
    /// Which model to train.
    #[arg(long, value_enum)]
    model: BenchModel,
    /// Samples per step.
    #[arg(long, default_value_t = 64)]
    batch: i64,
    /// Tokens per text (the longest; shorter texts are padded to it).
    #[arg(long, default_value_t = 128)]
    seq: i64,
    /// Image side in pixels.
    #[arg(long, default_value_t = 224)]
    image_size: i64,
    /// Timed steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// auto (CUDA when present), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
    /// Intra-op threads [default: physical cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Per-tensor AdamW instead of the fused kernel.
    #[arg(long)]
    no_fused: bool,
    /// fp32 on CUDA too (default there: bf16 autocast).
    #[arg(long)]
    fp32: bool,
    /// Learning rate.
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    /// Seed of the random weights and inputs.
    #[arg(long, default_value_t = 0)]
    seed: i64,
    /// Also write the JSON line to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Synchronise between phases and report the median forward (with the loss), backward
    /// and optimizer times too (the extra synchronisations cost a little on CUDA).
    #[arg(long)]
    breakdown: bool,
    /// Run the step through the trainer's data-parallel path on a 1-rank process group (Gloo
    /// on the CPU, NCCL on CUDA): features all-gathered, gradients all-reduced in the trainer's
    /// default buckets (`dist.bucket_mb`), overlapped with the backward pass (`dist.overlap`).
    /// Compared with the plain step it is the cost of that path.
    #[arg(long)]
    dist: bool,
    /// What happens to freed CPU memory: keep (reused by later steps, as `umcl train` does by
    /// default) or system (glibc's defaults, as a plain PyTorch process).
    #[arg(long, default_value = "keep")]
    cpu_heap: CpuHeap,
    /// Flush denormal floats to zero on the CPU (FTZ and DAZ, set before libtorch starts its
    /// threads, which inherit them), to tell whether denormal arithmetic slows a step.
    #[arg(long)]
    flush_denormal: bool,
}

/// Runs a `umcl bench` subcommand.
pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Step(args) => step(args),
    }
}

/// The model under test: a dual encoder or the image-only classifier.
// Built once per run: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Model {
    Dual(DualEncoder),
    ImageOnly {
        vs: nn::VarStore,
        encoder: ImageEncoder,
        fc: nn::Linear,
    },
}

impl Model {
    fn build(which: BenchModel, device: Device) -> Result<Self> {
        Ok(match which {
            BenchModel::Resnet50BertBase => {
                Self::Dual(DualEncoder::new(&DualConfig::resnet50_bert_base(), device)?)
            }
            BenchModel::VitB16BertBase => Self::Dual(DualEncoder::new(
                &DualConfig::new(
                    ImageEncoderConfig::Vit(VitConfig::base()),
                    BertConfig::base(),
                ),
                device,
            )?),
            BenchModel::Resnet50ImageOnly => {
                let vs = nn::VarStore::new(device);
                let config = ImageEncoderConfig::Resnet(ResNetConfig::resnet50());
                let encoder = ImageEncoder::new(&(vs.root() / "image"), &config)?;
                let fc = nn::linear(
                    vs.root() / "fc",
                    config.feature_dim(),
                    1000,
                    Default::default(),
                );
                Self::ImageOnly { vs, encoder, fc }
            }
        })
    }

    fn vs(&self) -> &nn::VarStore {
        match self {
            Self::Dual(m) => &m.vs,
            Self::ImageOnly { vs, .. } => vs,
        }
    }
}

/// One step's inputs.
struct Inputs {
    images: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    labels: Tensor,
    classes: Tensor,
}

/// Number of findings in the random label vectors (CheXpert's 14).
const FINDINGS: i64 = 14;

/// Text length of sample `i`: from `seq / 2` to `seq` tokens (same formula in the reference).
fn text_length(i: i64, seq: i64) -> i64 {
    let half = seq / 2;
    half + (i * 37) % (seq - half + 1)
}

/// Label code of sample `i`, finding `k` (same formula in the reference): 40% unmentioned
/// (-2), 30% negative, 20% positive, 10% uncertain.
fn label_code(i: i64, k: i64) -> i64 {
    match (i * 131 + k * 71) % 10 {
        0..=3 => -2,
        4..=6 => 0,
        7 | 8 => 1,
        _ => -1,
    }
}

impl Inputs {
    fn new(args: &StepArgs, device: Device) -> Self {
        let b = args.batch;
        let s = args.seq;
        let images = Tensor::randn(
            [b, 3, args.image_size, args.image_size],
            (Kind::Float, device),
        );
        let lengths: Vec<i64> = (0..b).map(|i| text_length(i, s)).collect();
        let mask: Vec<i64> = lengths
            .iter()
            .flat_map(|&n| (0..s).map(move |j| i64::from(j < n)))
            .collect();
        let attention_mask = Tensor::from_slice(&mask).reshape([b, s]).to_device(device);
        // Random word ids (past the special tokens), zero (padding) after each text's end.
        let input_ids =
            Tensor::randint_low(1000, 30522, [b, s], (Kind::Int64, device)) * &attention_mask;
        let codes: Vec<i64> = (0..b)
            .flat_map(|i| (0..FINDINGS).map(move |k| label_code(i, k)))
            .collect();
        let labels = Tensor::from_slice(&codes)
            .reshape([b, FINDINGS])
            .to_device(device);
        let classes = Tensor::randint(1000, [b], (Kind::Int64, device));
        Self {
            images,
            input_ids,
            attention_mask,
            labels,
            classes,
        }
    }
}

/// The image-only model's loss (graph attached): a classifier on the pooled features.
fn image_only_loss(encoder: &ImageEncoder, fc: &nn::Linear, x: &Inputs) -> Result<Tensor> {
    let f = encoder.forward_t(&x.images, true)?;
    Ok(fc
        .forward(&f.pooled)
        .to_kind(Kind::Float)
        .cross_entropy_for_logits(&x.classes))
}

/// The dual encoder's inputs as the trainer's step takes them (every sample has both an
/// image and a text).
fn tensor_batch(x: &Inputs) -> TensorBatch {
    let b = x.images.size()[0] as usize;
    TensorBatch {
        images: x.images.shallow_clone(),
        input_ids: x.input_ids.shallow_clone(),
        attention_mask: x.attention_mask.shallow_clone(),
        labels: x.labels.shallow_clone(),
        has_image: vec![true; b],
        has_text: vec![true; b],
        ids: (0..b).map(|i| i.to_string()).collect(),
    }
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn step(args: &StepArgs) -> Result<()> {
    if args.batch < 2 || args.seq < 2 || args.image_size < 32 || args.steps == 0 {
        bail!("bench step needs --batch >= 2, --seq >= 2, --image-size >= 32 and --steps >= 1");
    }
    if args.flush_denormal {
        flush_denormals();
    }
    let backend = runtime::init(&BackendConfig {
        device: args.device,
        threads: args.threads,
        cpu_heap: args.cpu_heap,
    })?;
    let device = backend.device;
    let cuda = matches!(device, Device::Cuda(_));
    if cuda {
        tch::Cuda::cudnn_set_benchmark(true);
    }
    let bf16 = cuda && !args.fp32;
    tch::manual_seed(args.seed);
    let model = Model::build(args.model, device)?;
    let params: i64 = model
        .vs()
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum();
    let mut optimizer = AdamW::new(
        model.vs().variables().into_iter().collect(),
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.05,
            lr_scale: HashMap::new(),
        },
    );
    optimizer.set_fused(!args.no_fused);
    let inputs = Inputs::new(args, device);
    // The trainer's step with the training default loss; the codes come from `label_code`,
    // valid by construction, so the label check (a device synchronisation) is off as in the
    // trainer. No prompts: the models here have none.
    let step_cfg = StepConfig {
        contrastive: Contrastive::Itl(ItlLossConfig {
            check_labels: false,
            ..ItlLossConfig::default()
        }),
        prompt_weight: 0.0,
        class_index: Vec::new(),
        accum_steps: 1,
        autocast: bf16.then_some(Kind::BFloat16),
    };
    let batch = tensor_batch(&inputs);
    let trainable = model.vs().trainable_variables();
    let mut dist = if args.dist {
        // The trainer's default buckets and overlap.
        let mut dist = Dist::single(device, &DistConfig::default())
            .context("forming the 1-rank process group")?;
        dist.hook_grads(&trainable)?;
        Some(dist)
    } else {
        None
    };

    let mut times = Vec::with_capacity(args.steps);
    let mut phases: [Vec<f64>; 3] = Default::default();
    let mut last = f64::NAN;
    for i in 0..args.warmup + args.steps {
        synchronize(device);
        let t0 = Instant::now();
        optimizer.zero_grad();
        // The dual encoder runs the trainer's own step (forward, loss and backward in one
        // call), so its breakdown has no forward/backward split; the image-only model's has.
        let t1 = match &model {
            Model::Dual(m) => {
                let seed = args.seed.wrapping_add(i as i64);
                last = step::forward_backward(m, &batch, &step_cfg, seed, dist.as_ref())?.total;
                None
            }
            Model::ImageOnly { encoder, fc, .. } => {
                let l = {
                    let _autocast = if bf16 {
                        Some(runtime::autocast(device, Kind::BFloat16)?)
                    } else {
                        None
                    };
                    image_only_loss(encoder, fc, &inputs)?
                };
                let t1 = phase_mark(args.breakdown, device);
                if let Some(dist) = &dist {
                    // The gradient hooks start their all-reduces only in an armed backward
                    // pass (the trainer's step arms it in `step::forward_backward`).
                    dist.arm()?;
                }
                l.backward();
                last = l.double_value(&[]);
                t1
            }
        };
        if let Some(dist) = &mut dist {
            dist.reduce_grads(&trainable)?;
        }
        let t2 = phase_mark(args.breakdown, device);
        optimizer
            .try_step(args.lr)
            .context("the AdamW update failed")?;
        if let Model::Dual(m) = &model {
            m.clamp_logit_scale(); // as the trainer does after each update
        }
        synchronize(device);
        if let (Some(t2), true) = (t2, i >= args.warmup) {
            // Without a forward/backward split the first phase holds both.
            let t1 = t1.unwrap_or(t2);
            phases[0].push((t1 - t0).as_secs_f64());
            phases[1].push((t2 - t1).as_secs_f64());
            phases[2].push(t2.elapsed().as_secs_f64());
        }
        let dt = t0.elapsed().as_secs_f64();
        if i >= args.warmup {
            times.push(dt);
        }
        eprintln!(
            "umcl bench step: {} step {}/{} {:.3} s{}",
            args.model.name(),
            i + 1,
            args.warmup + args.steps,
            dt,
            if i < args.warmup { " (warm-up)" } else { "" }
        );
    }
    let loss_value = last;
    if !loss_value.is_finite() {
        bail!("the loss is {loss_value} after the timed steps");
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = median_of_sorted(&sorted);
    let device_name = match device {
        Device::Cuda(_) => backend
            .gpu
            .as_ref()
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| runtime::device_name(device)),
        _ => cpu_model_name().unwrap_or_else(|| "cpu".into()),
    };
    let record = json!({
        "impl": "umcl",
        "model": args.model.name(),
        "batch": args.batch,
        "seq": args.seq,
        "image_size": args.image_size,
        "device": if cuda { "cuda" } else { "cpu" },
        "device_name": device_name,
        "dtype": if bf16 { "bf16-autocast" } else { "fp32" },
        "threads": backend.threads,
        "optimizer": if args.no_fused { "adamw" } else { "adamw-fused" },
        "flush_denormal": args.flush_denormal,
        "dist": args.dist,
        "dist_buckets": dist.as_ref().and_then(Dist::overlap).map(|o| json!({"buckets": o.buckets, "overlapped": o.early})),
        "cpu_heap": backend.cpu_heap.to_string(),
        "params": params,
        "warmup": args.warmup,
        "steps": args.steps,
        "step_times_s": times,
        "median_step_s": median,
        "samples_per_s": args.batch as f64 / median,
        "loss": loss_value,
        "peak_rss_mb": peak_rss_mb(),
        "device_mem_used_mb": if cuda { cuda_mem_used_mb() } else { None },
        "torch": backend.libtorch_version.clone().unwrap_or_else(|| runtime::LIBTORCH_BUILD_VERSION.to_string()),
    });
    let mut record = record;
    if args.breakdown {
        let med = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            median_of_sorted(v)
        };
        let [f, b, o] = &mut phases;
        record["breakdown_s"] = match model {
            Model::Dual(_) => json!({
                "forward_loss_and_backward": med(f),
                "optimizer": med(o),
            }),
            Model::ImageOnly { .. } => json!({
                "forward_and_loss": med(f),
                "backward": med(b),
                "optimizer": med(o),
            }),
        };
    }
    let line = serde_json::to_string(&record)?;
    outln!("{line}");
    if let Some(path) = &args.json {
        write_atomic(path, format!("{line}\n").as_bytes())?;
    }
    Ok(())
}

/// Sets FTZ and DAZ in this thread's MXCSR; threads started later inherit it.
fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: reads and writes this thread's SSE control register; FTZ (bit 15) and DAZ
    // (bit 6) only change how denormal floats are treated.
    #[allow(deprecated)]
    unsafe {
        use std::arch::x86_64::{_mm_getcsr, _mm_setcsr};
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
}

/// The time now, after waiting for the device, when phases are timed.
fn phase_mark(enabled: bool, device: Device) -> Option<Instant> {
    enabled.then(|| {
        synchronize(device);
        Instant::now()
    })
}

fn median_of_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// The process's peak resident memory in MiB (`VmHWM`), on Linux.
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// The CPU's model name from `/proc/cpuinfo`.
fn cpu_model_name() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// Device memory in use (total - free, MiB) from the CUDA driver: what libtorch's caching
/// allocator holds after the timed steps (its peak reservation) plus the context. The
/// reference reports the same quantity (`torch.cuda.mem_get_info`).
fn cuda_mem_used_mb() -> Option<f64> {
    let (free, total) = umcl_torch_ext::cuda_driver::memory_info()?;
    Some(total.saturating_sub(free) as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lengths_span_half_to_full() {
        let lengths: Vec<i64> = (0..200).map(|i| text_length(i, 128)).collect();
        assert_eq!(lengths.iter().min(), Some(&64));
        assert_eq!(lengths.iter().max(), Some(&128));
        // The first samples, as train_step.py computes them.
        assert_eq!(&lengths[..4], &[64, 101, 73, 110]);
    }

    #[test]
    fn label_codes_follow_the_shared_formula() {
        let row: Vec<i64> = (0..FINDINGS).map(|k| label_code(1, k)).collect();
        // (131 + 71k) % 10 = 1, 2, 3, 4, ...: unmentioned, then negative, positive, uncertain.
        assert_eq!(row, [-2, -2, -2, 0, 0, 0, 1, 1, -1, -2, -2, -2, -2, 0]);
    }

    #[test]
    fn median_of_odd_and_even_lists() {
        assert_eq!(median_of_sorted(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
