//! The training loop: unified samples in, a dual encoder with learned prompts out.
//!
//! One optimizer step:
//!
//! ```text
//! batch ─► image encoder ─► img ┐
//!       ─► text encoder  ─► txt ┴─► Image-Text-Label loss (or CLIP) ┐
//! prompts ─► text encoder ─► classes ─► prompt-label term ──────────┴─► backward ─► clip ─► AdamW
//!                                                                            ─► logit-scale cap
//! ```
//!
//! The forward and backward passes (losses, gradient accumulation, autocast) are
//! [`crate::step`]; this module runs them over the data and owns everything around them.
//!
//! Determinism: dropout draws from torch's generator, reseeded from `(seed, step, micro-batch)`;
//! data order, augmentation and the synthesised reports are functions of `(seed, epoch,
//! sample)`. On one machine with one thread count a run is bitwise reproducible, and a run
//! resumed from a checkpoint continues exactly as if never stopped. Another CPU rounds
//! differently (other SIMD kernels), so its run differs in the last bits and then drifts: the
//! recipe is judged over seeds (docs/results.md), not by one run.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tch::Tensor;
use umcl_data::atomic::write_atomic;
use umcl_models::dual::DualEncoder;

use crate::checkpoint::{self, Checkpoints, TrainState};
use crate::config::TrainConfig;
use crate::distributed::Dist;
use crate::embed::TensorBatch;
use crate::error::TrainError;
use crate::evaluate;
use crate::optim::{warmup_cosine, AdamW, AdamWConfig, Group};
use crate::setup::Setup;
use crate::step;

/// Where a run continues from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// The newest checkpoint of the run directory.
    Latest,
    /// A given checkpoint directory.
    From(PathBuf),
}

/// Options of one call of [`train`] besides the configuration.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue from a checkpoint.
    pub resume: Option<Resume>,
    /// Print nothing but errors (no progress bar, no log lines).
    pub quiet: bool,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Steps completed.
    pub steps: u64,
    /// Mean loss of the last logged window.
    pub final_loss: f64,
    /// Best validation mean AUC and its step.
    pub best: Option<(f64, u64)>,
    /// The final zero-shot evaluation, when `eval.final_manifest` is set.
    pub zero_shot: Option<evaluate::ZeroShotReport>,
    /// Training samples per second (whole run).
    pub samples_per_second: f64,
    /// Share of wall time spent waiting for the loader.
    pub data_wait_share: f64,
}

/// The record of one logged step in `metrics.jsonl`.
#[derive(Debug, Clone, Serialize)]
struct StepRecord {
    kind: &'static str,
    step: u64,
    loss: f64,
    contrastive: f64,
    prompt: f64,
    lr: f64,
    grad_norm: f64,
    logit_scale: f64,
    samples_per_second: f64,
    data_wait_share: f64,
    masked_pairs: i64,
    mean_positives: f64,
    /// Data-parallel runs with `dist.overlap`: of this rank's gradient buckets in this step,
    /// how many started their all-reduce inside the backward pass, and how many there are.
    #[serde(skip_serializing_if = "Option::is_none")]
    grad_buckets_overlapped: Option<[usize; 2]>,
}

/// The model's variables in name order: the same order on every rank.
fn vars_by_name(model: &DualEncoder) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, t)| t).collect()
}

/// Trains as configured; writes the run directory `<run.out_dir>/<run.name>`.
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    cfg.validate()?;
    let run_dir = cfg.run.out_dir.join(&cfg.run.name);
    let checkpoints = Checkpoints::new(&run_dir, cfg.run.keep_last);
    let resume_from = match &opts.resume {
        None => None,
        Some(Resume::From(p)) => Some(p.clone()),
        Some(Resume::Latest) => {
            Some(checkpoints.latest().ok_or_else(|| TrainError::Checkpoint {
                path: checkpoints.dir().to_path_buf(),
                message: "no checkpoint to resume from".into(),
            })?)
        }
    };
    if resume_from.is_none() && checkpoints.latest().is_some() {
        return Err(TrainError::Checkpoint {
            path: checkpoints.dir().to_path_buf(),
            message: "the run directory already has checkpoints: resume with --resume latest, \
                      or choose another run.name"
                .into(),
        });
    }
    let mut setup = Setup::new(cfg)?;
    let main = setup.is_main();
    let (rank, world) = setup.rank_world();
    if main {
        fs::create_dir_all(&run_dir).map_err(|e| TrainError::io(&run_dir, e))?;
        write_atomic(&run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    }

    let mut optimizer = make_optimizer(&setup.model, cfg);
    let mut state = TrainState {
        step: 0,
        epoch: 0,
        batch_in_epoch: 0,
        samples_seen: 0,
        best: None,
        config: cfg.to_toml(),
    };
    if let Some(path) = &resume_from {
        state = checkpoint::restore(path, &setup.model, &mut optimizer)?;
        if !opts.quiet && main {
            eprintln!("resuming from {} at step {}", path.display(), state.step);
        }
    }
    let vars = vars_by_name(&setup.model);
    if let Some(dist) = &mut setup.dist {
        // Every rank starts from rank 0's weights (the same checkpoint on resume).
        dist.broadcast_vars(&vars)?;
        dist.hook_grads(&vars)?;
        if !opts.quiet && main {
            eprintln!(
                "data-parallel run: {world} ranks of {} samples",
                cfg.data.batch_size / world
            );
        }
    }
    let mut metrics = if main {
        Some(MetricsLog::open(
            &run_dir.join("metrics.jsonl"),
            state.step,
        )?)
    } else {
        None
    };
    if setup.report_only > 0 && !opts.quiet && main {
        eprintln!(
            "{} report-only samples (no image) train the prompt term only",
            setup.report_only
        );
    }

    let total = cfg.run.steps;
    let progress = if main {
        progress_bar(cfg, opts, state.step)
    } else {
        None
    };
    let started = Instant::now();
    let mut waited = std::time::Duration::ZERO;
    let mut window = (0.0f64, 0u64);
    let mut last_logged_loss = f64::NAN;
    let batches_per_epoch = setup.loader.batches_per_epoch() as u64;
    if batches_per_epoch == 0 {
        return Err(TrainError::Setup(format!(
            "the training split has fewer samples than one batch ({})",
            cfg.data.batch_size
        )));
    }
    let mut samples_this_run = 0u64;
    while state.step < total {
        let first = state.batch_in_epoch as usize;
        let mut epoch = match &setup.dist {
            Some(d) => setup
                .loader
                .epoch_shard(state.epoch, first, d.rank(), d.world()),
            None => setup.loader.epoch_from(state.epoch, first),
        };
        while state.step < total {
            let Some(batch) = epoch.next() else { break };
            let batch = batch?;
            let lr = warmup_cosine(
                state.step,
                cfg.optim.lr,
                cfg.optim.warmup_steps,
                total,
                cfg.optim.min_lr_ratio,
            );
            let seed = step_seed(rank_seed(cfg.run.seed, rank), state.step);
            let done = try_step(
                &mut setup,
                &mut optimizer,
                &vars,
                &batch,
                cfg,
                lr,
                seed,
                state.step,
            )?;
            let (out, grad_norm) = match done {
                StepDone::Updated { values, grad_norm } => (values, grad_norm),
                StepDone::NonFinite(value) => {
                    // Every rank sees the same loss (of the whole batch); rank 0 saves the
                    // state before this step.
                    let saved = if main {
                        checkpoints.save(&setup.model, &optimizer, &state)?
                    } else {
                        checkpoints.dir().to_path_buf()
                    };
                    if let Some(p) = &progress {
                        p.abandon();
                    }
                    return Err(TrainError::NonFinite {
                        step: state.step + 1,
                        value,
                        saved,
                    });
                }
            };
            let loss_value = out.total;
            state.step += 1;
            state.batch_in_epoch += 1;
            if state.batch_in_epoch >= batches_per_epoch {
                state.epoch += 1;
                state.batch_in_epoch = 0;
            }
            state.samples_seen += (batch.len() * world) as u64;
            samples_this_run += (batch.len() * world) as u64;
            window.0 += loss_value;
            window.1 += 1;

            if state.step.is_multiple_of(cfg.run.log_every) || state.step == total {
                let waited_now = waited + epoch.stats().waited;
                let elapsed = started.elapsed().as_secs_f64().max(1e-9);
                last_logged_loss = window.0 / window.1.max(1) as f64;
                let rec = StepRecord {
                    kind: "step",
                    step: state.step,
                    loss: last_logged_loss,
                    contrastive: out.contrastive,
                    prompt: out.prompt,
                    lr,
                    grad_norm: grad_norm.double_value(&[]),
                    logit_scale: setup.model.logit_scale().double_value(&[]),
                    samples_per_second: samples_this_run as f64 / elapsed,
                    data_wait_share: (waited_now.as_secs_f64() / elapsed).min(1.0),
                    masked_pairs: out.masked_pairs,
                    mean_positives: out.mean_positives,
                    grad_buckets_overlapped: setup
                        .dist
                        .as_ref()
                        .and_then(Dist::overlap)
                        .map(|o| [o.early, o.buckets]),
                };
                if let Some(m) = &mut metrics {
                    m.write(&rec)?;
                }
                if let Some(p) = &progress {
                    p.set_message(format!(
                        "loss {:.4} lr {:.2e} {:.0} samples/s data-wait {:.0}%",
                        rec.loss,
                        lr,
                        rec.samples_per_second,
                        100.0 * rec.data_wait_share
                    ));
                }
                window = (0.0, 0);
            }
            if let Some(p) = &progress {
                p.set_position(state.step);
            }
            // Validation and checkpoints are rank 0's; the others wait at the next collective.
            let eval_now = main && cfg.eval.every > 0 && state.step.is_multiple_of(cfg.eval.every);
            let ckpt_now = main
                && (state.step.is_multiple_of(cfg.run.checkpoint_every) || state.step == total);
            let mut improved = false;
            if eval_now || (main && state.step == total) {
                let val = evaluate::validation(
                    &setup.model,
                    &setup.val,
                    &setup.tokenizer,
                    &setup.eval_loader_cfg,
                    &setup.class_index,
                    setup.device,
                    cfg.eval.max_samples,
                )?;
                if let Some(m) = &mut metrics {
                    m.write(&val.record(state.step))?;
                }
                tracing::info!(step = state.step, mean_auc = ?val.mean_auc, "validation");
                if let Some(auc) = val.mean_auc {
                    if state.best.is_none_or(|(b, _)| auc > b) {
                        state.best = Some((auc, state.step));
                        improved = true;
                    }
                }
            }
            if ckpt_now || improved {
                let path = checkpoints.save(&setup.model, &optimizer, &state)?;
                tracing::info!(step = state.step, path = %path.display(), best = improved, "checkpoint");
                if improved {
                    checkpoints.mark_best(&path)?;
                }
            }
            if state.batch_in_epoch == 0 {
                break; // the epoch is complete
            }
        }
        waited += epoch.stats().waited;
        if main {
            report_skips(&run_dir, epoch.stats(), opts.quiet)?;
        }
        // An epoch can end early when --skip-bad dropped whole batches.
        if state.step < total && state.batch_in_epoch != 0 {
            state.epoch += 1;
            state.batch_in_epoch = 0;
        }
    }
    if let Some(p) = &progress {
        p.finish();
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    if let Some(dist) = &setup.dist {
        // No rank leaves while another may still be exchanging the last step's gradients.
        dist.barrier()?;
    }
    let zero_shot = match &cfg.eval.final_manifest {
        Some(path) if main => Some(final_zero_shot(cfg, &setup, &checkpoints, path)?),
        _ => None,
    };
    let summary = RunSummary {
        run_dir: run_dir.clone(),
        steps: state.step,
        final_loss: last_logged_loss,
        best: state.best,
        zero_shot,
        samples_per_second: samples_this_run as f64 / elapsed,
        data_wait_share: (waited.as_secs_f64() / elapsed).min(1.0),
    };
    if main {
        crate::report::write_run_report(&run_dir, cfg, &summary)?;
    }
    Ok(summary)
}

/// Zero-shot classification of `manifest` with the model chosen on validation (the `best`
/// checkpoint when there is one), not simply the last one.
fn final_zero_shot(
    cfg: &TrainConfig,
    setup: &Setup,
    checkpoints: &Checkpoints,
    manifest: &Path,
) -> Result<evaluate::ZeroShotReport, TrainError> {
    let best = checkpoints.dir().join("best").join("model.safetensors");
    if best.exists() {
        umcl_models::import::import_safetensors(
            &setup.model.vs,
            &best,
            &umcl_models::import::identity_keys,
            false,
        )?;
    }
    evaluate::zero_shot_manifest(
        &setup.model,
        manifest,
        &setup.tokenizer,
        &setup.eval_loader_cfg,
        &cfg.eval.classes,
        setup.device,
    )
}

/// How a step ended.
enum StepDone {
    /// The update was applied.
    Updated {
        /// The step's loss values.
        values: step::StepValues,
        /// The gradient's global norm before clipping (read only when logged: reading it
        /// waits for the device).
        grad_norm: Tensor,
    },
    /// The loss was not finite; nothing was updated.
    NonFinite(f64),
}

/// One optimisation step on `batch` after `completed` steps: forward and backward passes
/// (through the data-parallel gather in a distributed run), the gradient all-reduce, the
/// finite-loss check, clipping, the AdamW update at `lr` and the logit-scale cap. Every
/// failure is an error, the update's included (`AdamW::try_step`), never a panic.
#[allow(clippy::too_many_arguments)]
fn try_step(
    setup: &mut Setup,
    optimizer: &mut AdamW,
    vars: &[Tensor],
    batch: &umcl_data::loader::Batch,
    cfg: &TrainConfig,
    lr: f64,
    seed: i64,
    completed: u64,
) -> Result<StepDone, TrainError> {
    let b = TensorBatch::from_batch(batch, setup.device)?;
    let values = step::forward_backward(&setup.model, &b, &setup.step, seed, setup.dist.as_ref())?;
    kill_hook(completed, setup.rank_world().0);
    if let Some(dist) = &mut setup.dist {
        dist.reduce_grads(vars)?;
    }
    if !values.total.is_finite() {
        return Ok(StepDone::NonFinite(values.total));
    }
    let grad_norm = optimizer.clip_grad_norm(cfg.optim.grad_clip);
    optimizer.try_step(lr)?;
    optimizer.zero_grad();
    // As open_clip: the cap applies to the parameter after the update, so the forward pass
    // keeps the scale's gradient at the cap.
    setup.model.clamp_logit_scale();
    Ok(StepDone::Updated { values, grad_norm })
}

/// Test hook for the exact-resume test: with `UMCL_TEST_SIGKILL_AT_STEP=k` the process sends
/// itself SIGKILL in the middle of step k+1 (after its backward pass, before the update), as a
/// crash or an out-of-memory kill would. In a distributed run `UMCL_TEST_SIGKILL_RANK=r`
/// limits it to rank r. Unset in normal runs.
fn kill_hook(completed_steps: u64, rank: usize) {
    static RANK: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();
    let only = RANK.get_or_init(|| {
        std::env::var("UMCL_TEST_SIGKILL_RANK")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if only.is_some_and(|r| r != rank) {
        return;
    }
    static AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| {
        std::env::var("UMCL_TEST_SIGKILL_AT_STEP")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if *at == Some(completed_steps) {
        // SAFETY: kill(2) on our own pid; SIGKILL cannot be caught, the process ends here.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

/// The run seed of `rank`: the run's own on rank 0 (so a one-rank run draws as a plain one).
fn rank_seed(seed: u64, rank: usize) -> u64 {
    seed ^ (rank as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93)
}

/// The seed of torch's generator for step `step`.
fn step_seed(seed: u64, step: u64) -> i64 {
    mix_seed(seed, step)
}

/// SplitMix64's finaliser over `(seed, part)`: well-spread non-negative seeds for neighbouring
/// parts (steps, micro-batches).
pub(crate) fn mix_seed(seed: u64, part: u64) -> i64 {
    let mut z = seed ^ part.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 1) as i64
}

fn make_optimizer(model: &DualEncoder, cfg: &TrainConfig) -> AdamW {
    let lr_scale = HashMap::from([
        (Group::Image, cfg.optim.lr_image),
        (Group::Text, cfg.optim.lr_text),
        (Group::Heads, cfg.optim.lr_heads),
        (Group::Prompts, cfg.optim.lr_prompts),
    ]);
    let mut optimizer = AdamW::new(
        model.vs.variables().into_iter().collect(),
        AdamWConfig {
            beta1: cfg.optim.beta1,
            beta2: cfg.optim.beta2,
            eps: cfg.optim.eps,
            weight_decay: cfg.optim.weight_decay,
            lr_scale,
        },
    );
    optimizer.set_fused(cfg.optim.fused);
    optimizer
}

fn progress_bar(
    cfg: &TrainConfig,
    opts: &RunOptions,
    start: u64,
) -> Option<indicatif::ProgressBar> {
    if opts.quiet || !cfg.run.progress {
        return None;
    }
    let bar = indicatif::ProgressBar::new(cfg.run.steps);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(start);
    Some(bar)
}

/// Skipped samples of an epoch are counted, printed, and appended to `skipped.txt`.
fn report_skips(
    run_dir: &Path,
    stats: &umcl_data::loader::EpochStats,
    quiet: bool,
) -> Result<(), TrainError> {
    if stats.skipped.is_empty() {
        return Ok(());
    }
    let path = run_dir.join("skipped.txt");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| TrainError::io(&path, e))?;
    for s in &stats.skipped {
        writeln!(f, "{}\t{}", s.id, s.reason).map_err(|e| TrainError::io(&path, e))?;
    }
    if !quiet {
        eprintln!(
            "skipped {} samples this epoch (listed in {})",
            stats.skipped.len(),
            path.display()
        );
    }
    Ok(())
}

/// `metrics.jsonl`: one JSON object per line. On resume, lines of steps after the checkpoint
/// are dropped, so the file reads as one uninterrupted run.
pub(crate) struct MetricsLog {
    path: PathBuf,
    file: fs::File,
}

impl MetricsLog {
    fn open(path: &Path, resume_step: u64) -> Result<Self, TrainError> {
        let kept: Vec<String> = match fs::read_to_string(path) {
            Ok(text) if resume_step > 0 => text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<serde_json::Value>(line)
                        .ok()
                        .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                        .is_some_and(|s| s <= resume_step)
                })
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        write_atomic(path, body.as_bytes())?;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| TrainError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub(crate) fn write(&mut self, record: &impl Serialize) -> Result<(), TrainError> {
        let line = serde_json::to_string(record).map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        tracing::debug!(target: "umcl::metrics", "{line}");
        Ok(())
    }
}
