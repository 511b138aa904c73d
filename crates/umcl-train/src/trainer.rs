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
use std::path::{Path, PathBuf};

use serde::Serialize;
use tch::Tensor;
use umcl_fs::write_atomic;
use umcl_models::dual::DualEncoder;

use crate::checkpoint::{self, Checkpoints, TrainState};
use crate::config::TrainConfig;
use crate::embed::TensorBatch;
use crate::error::TrainError;
use crate::evaluate;
use crate::optim::{warmup_cosine, AdamW, AdamWConfig, Group};
use crate::run_log::RunLog;
use crate::setup::{Setup, WeightImport};
use crate::step;

/// Set by [`request_stop`]; read once per step.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks a running [`train`] to stop: it finishes the step in progress, saves a checkpoint
/// (rank 0), and returns [`TrainError::Interrupted`] naming it. In a data-parallel run the
/// ranks agree at each step, so a request on any rank stops all of them at the same step.
/// Async-signal-safe (one atomic store): the CLI calls it from its SIGINT and SIGTERM
/// handlers.
pub fn request_stop() {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Whether this rank has been asked to stop, agreed across the ranks of a data-parallel run.
fn stop_agreed(setup: &Setup) -> Result<bool, TrainError> {
    let mine = STOP.load(std::sync::atomic::Ordering::SeqCst);
    match &setup.dist {
        Some(dist) => Ok(dist.gather_flags(&[mine])?.into_iter().any(|f| f)),
        None => Ok(mine),
    }
}

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
    /// Build the model as the run would (pretrained weights imported, as `imports.json`
    /// reports), save it as the checkpoint of step 0 and stop: the "no image-text
    /// pretraining" baseline of an evaluation.
    pub init_only: bool,
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
    /// Training samples left out under `data.skip_bad` (every epoch counted; listed in
    /// `skipped.txt`).
    pub skipped_samples: usize,
    /// Validation samples left out under `data.skip_bad` (the most of any validation).
    pub skipped_validation: usize,
}

/// The model's variables in name order: the same order on every rank.
fn vars_by_name(model: &DualEncoder) -> Vec<Tensor> {
    let mut named: Vec<(String, Tensor)> = model.vs.variables().into_iter().collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named.into_iter().map(|(_, t)| t).collect()
}

/// Trains as configured; writes the run directory `<run.out_dir>/<run.name>`.
///
/// The loop reads as the run does: find where to start, build everything (the `setup`
/// module), then per batch one `try_step`, a log line (`RunLog`) and, when due, validation
/// and a checkpoint (`validate_and_save`).
pub fn train(cfg: &TrainConfig, opts: &RunOptions) -> Result<RunSummary, TrainError> {
    cfg.validate()?;
    // Checked now, not after every step has run.
    if let Some(path) = &cfg.eval.final_manifest {
        if !path.is_file() {
            return Err(TrainError::Setup(format!(
                "eval.final_manifest: {} is not a file (a relative path starts from the \
                 current folder, {})",
                path.display(),
                std::env::current_dir()
                    .map(|d| d.display().to_string())
                    .unwrap_or_else(|_| "unknown".into())
            )));
        }
    }
    let run_dir = cfg.run.out_dir.join(&cfg.run.name);
    let checkpoints = Checkpoints::new(&run_dir, cfg.run.keep_last);
    let resume_from = resume_point(&checkpoints, opts)?;
    let mut setup = Setup::new(cfg)?;
    let main = setup.is_main();
    // Rank 0 writes the run directory, and holds it until the run ends.
    let _lock = if main {
        Some(lock_run_dir(&run_dir, opts)?)
    } else {
        None
    };
    let mut optimizer = make_optimizer(&setup.model, cfg);
    let mut state = start_state(cfg, resume_from.as_deref(), &setup, &mut optimizer, opts)?;
    if main {
        // Only now: a refused resume leaves the run's config as it was.
        write_atomic(&run_dir.join("config.toml"), cfg.to_toml().as_bytes())?;
    }
    let vars = join_ranks(&mut setup, cfg, opts)?;
    let mut log = RunLog::start(cfg, opts.quiet, main, &run_dir, state.step)?;
    if !cfg.data.manifests.is_empty() {
        log.note(&format!(
            "training on the {} manifests of data.manifests (data.manifest, {}, is not used)",
            cfg.data.manifests.len(),
            cfg.data.manifest.display()
        ));
    }
    if main && !setup.imports.is_empty() {
        // What the pretrained weights filled, key by key, kept with the run.
        write_atomic(
            &run_dir.join("imports.json"),
            WeightImport::to_json(&setup.imports).as_bytes(),
        )?;
        for import in &setup.imports {
            log.note(&import.line());
        }
    }
    if setup.not_radiological > 0 {
        log.note(&format!(
            "{} texts have no radiological content (no finding, no radiological wording outside \
             skipped sections such as Indication or History): the labeler left them unlabelled",
            setup.not_radiological
        ));
    }
    if setup.report_only > 0 {
        log.note(&format!(
            "{} report-only samples (no image) train the prompt term only",
            setup.report_only
        ));
    }
    if opts.init_only {
        if main {
            let path = checkpoints.save(&setup.model, &optimizer, &state)?;
            log.note(&format!(
                "initial model saved as {} (no step trained)",
                path.display()
            ));
        }
        let (samples_per_second, data_wait_share) = log.finish();
        return Ok(RunSummary {
            run_dir,
            steps: state.step,
            final_loss: f64::NAN,
            best: None,
            zero_shot: None,
            samples_per_second,
            data_wait_share,
            skipped_samples: 0,
            skipped_validation: 0,
        });
    }
    let batches_per_epoch = setup.loader.batches_per_epoch() as u64;
    if batches_per_epoch == 0 {
        return Err(TrainError::Setup(format!(
            "the training split has fewer samples than one batch ({})",
            cfg.data.batch_size
        )));
    }
    while state.step < cfg.run.steps {
        run_epoch(
            cfg,
            &mut setup,
            &mut optimizer,
            &vars,
            &checkpoints,
            &mut state,
            &mut log,
        )?;
    }
    let (samples_per_second, data_wait_share) = log.finish();
    if let Some(dist) = &setup.dist {
        // No rank leaves while another may still be exchanging the last step's gradients.
        dist.barrier()?;
    }
    let zero_shot = match &cfg.eval.final_manifest {
        Some(path) if main => Some(final_zero_shot(cfg, &setup, &checkpoints, path)?),
        _ => None,
    };
    let (skipped_samples, skipped_validation) = log.skipped_counts();
    let summary = RunSummary {
        run_dir: run_dir.clone(),
        skipped_samples,
        skipped_validation,
        steps: state.step,
        final_loss: log.last_loss(),
        best: state.best,
        zero_shot,
        samples_per_second,
        data_wait_share,
    };
    if main {
        crate::report::write_run_report(&run_dir, cfg, &summary)?;
    }
    Ok(summary)
}

/// One epoch (or what is left of it, on resume or at the end of the run): steps until the
/// epoch's batches or the run's steps run out.
fn run_epoch(
    cfg: &TrainConfig,
    setup: &mut Setup,
    optimizer: &mut AdamW,
    vars: &[Tensor],
    checkpoints: &Checkpoints,
    state: &mut TrainState,
    log: &mut RunLog,
) -> Result<(), TrainError> {
    let total = cfg.run.steps;
    let main = setup.is_main();
    let (rank, world) = setup.rank_world();
    let batches_per_epoch = setup.loader.batches_per_epoch() as u64;
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
        let done = try_step(setup, optimizer, vars, &batch, cfg, lr, seed, state.step)?;
        let (values, grad_norm) = match done {
            StepDone::Updated { values, grad_norm } => (values, grad_norm),
            StepDone::NonFinite(value) => {
                // Every rank sees the same loss (of the whole batch). Rank 0 saves the state
                // before this step only if it is sound: weights that gave a NaN loss are
                // often the diverged ones, and a checkpoint of them is no use to anyone.
                let saved = if main && weights_are_sound(&setup.model) {
                    Some(checkpoints.save(&setup.model, optimizer, state)?)
                } else {
                    None
                };
                log.abandon();
                return Err(TrainError::NonFinite {
                    step: state.step + 1,
                    value,
                    saved,
                    newest: checkpoints.latest(),
                });
            }
        };
        let samples = (batch.len() * world) as u64;
        advance(state, samples, batches_per_epoch);
        log.step(
            state,
            samples,
            total,
            &values,
            lr,
            &grad_norm,
            setup,
            epoch.stats(),
        )?;
        // Validation and checkpoints are rank 0's; the others wait at the next collective.
        if main {
            validate_and_save(cfg, setup, checkpoints, optimizer, state, log)?;
        }
        if stop_agreed(setup)? {
            // `validate_and_save` may have written this step's checkpoint already.
            let saved = match checkpoints.list().pop() {
                _ if !main => None,
                Some((step, path)) if step == state.step => Some(path),
                _ => Some(checkpoints.save(&setup.model, optimizer, state)?),
            };
            log.abandon();
            return Err(TrainError::Interrupted {
                step: state.step,
                saved,
            });
        }
        if state.batch_in_epoch == 0 {
            break; // the epoch is complete
        }
    }
    log.end_epoch(epoch.stats())?;
    // An epoch can end early when --skip-bad dropped whole batches.
    if state.step < total && state.batch_in_epoch != 0 {
        state.epoch += 1;
        state.batch_in_epoch = 0;
    }
    Ok(())
}

/// Locks the run directory for this process (a second run into it is refused, naming this
/// one's process id) and removes what runs killed in the middle of a write left there.
fn lock_run_dir(run_dir: &Path, opts: &RunOptions) -> Result<umcl_fs::DirLock, TrainError> {
    let lock = umcl_fs::DirLock::acquire(run_dir)?;
    let mut removed = umcl_fs::remove_stale_temps(run_dir)?;
    removed.extend(umcl_fs::remove_stale_temps(&run_dir.join("checkpoints"))?);
    if !removed.is_empty() && !opts.quiet {
        eprintln!(
            "removed {} temporary file(s) left by ended processes in {}",
            removed.len(),
            run_dir.display()
        );
    }
    Ok(lock)
}

/// The checkpoint a run continues from, if any. A fresh run refuses a run directory that
/// already has checkpoints, so it cannot overwrite another run's.
fn resume_point(
    checkpoints: &Checkpoints,
    opts: &RunOptions,
) -> Result<Option<PathBuf>, TrainError> {
    let from = match &opts.resume {
        None => None,
        Some(Resume::From(p)) => Some(p.clone()),
        Some(Resume::Latest) => {
            Some(checkpoints.latest().ok_or_else(|| TrainError::Checkpoint {
                path: checkpoints.dir().to_path_buf(),
                message: "no checkpoint to resume from".into(),
            })?)
        }
    };
    if from.is_none() && checkpoints.latest().is_some() {
        return Err(TrainError::Checkpoint {
            path: checkpoints.dir().to_path_buf(),
            message: "the run directory already has checkpoints: resume with --resume latest, \
                      or choose another run.name"
                .into(),
        });
    }
    Ok(from)
}

/// The state the first step starts from: step 0, or the checkpoint's weights, optimizer
/// moments and position in the data.
fn start_state(
    cfg: &TrainConfig,
    resume_from: Option<&Path>,
    setup: &Setup,
    optimizer: &mut AdamW,
    opts: &RunOptions,
) -> Result<TrainState, TrainError> {
    let Some(path) = resume_from else {
        return Ok(TrainState {
            step: 0,
            epoch: 0,
            batch_in_epoch: 0,
            samples_seen: 0,
            best: None,
            config: cfg.to_toml(),
        });
    };
    let saved = checkpoint::read_state(path)?;
    if let Ok(trained) = TrainConfig::from_toml_str(&saved.config, "the checkpoint's config") {
        let conflicts = cfg.resume_conflicts(&trained);
        if !conflicts.is_empty() {
            let list: Vec<String> = conflicts
                .iter()
                .map(|(key, then, now)| format!("{key} = {then} in the checkpoint, {now} now"))
                .collect();
            return Err(TrainError::Checkpoint {
                path: path.to_path_buf(),
                message: format!(
                    "a resumed run keeps the model and data shapes it was trained with: {}; \
                     resume with the checkpoint's values, or start a new run",
                    list.join("; ")
                ),
            });
        }
    }
    let state = checkpoint::restore(path, &setup.model, optimizer)?;
    if !opts.quiet && setup.is_main() {
        eprintln!("resuming from {} at step {}", path.display(), state.step);
    }
    Ok(state)
}

/// The model's variables in the order every rank shares. In a data-parallel run every rank
/// takes rank 0's weights (the same checkpoint on resume) and hooks its gradients for the
/// all-reduce.
fn join_ranks(
    setup: &mut Setup,
    cfg: &TrainConfig,
    opts: &RunOptions,
) -> Result<Vec<Tensor>, TrainError> {
    let vars = vars_by_name(&setup.model);
    let main = setup.is_main();
    let world = setup.rank_world().1;
    if let Some(dist) = &mut setup.dist {
        dist.broadcast_vars(&vars)?;
        dist.hook_grads(&vars)?;
        if !opts.quiet && main {
            eprintln!(
                "data-parallel run: {world} ranks of {} samples",
                cfg.data.batch_size / world
            );
        }
    }
    Ok(vars)
}

/// The largest weight magnitude a sound model has: far above anything training produces,
/// far below what one diverged update (a learning rate of 1e30, say) leaves behind.
const SOUND_WEIGHT_LIMIT: f64 = 1e12;

/// Whether every weight of `model` is finite and at most [`SOUND_WEIGHT_LIMIT`] in magnitude.
fn weights_are_sound(model: &DualEncoder) -> bool {
    let _no_grad = tch::no_grad_guard();
    model.vs.variables().values().all(|t| {
        t.numel() == 0
            || t.abs().max().to_kind(tch::Kind::Double).double_value(&[]) <= SOUND_WEIGHT_LIMIT
    })
}

/// Counts one finished step of `samples` samples (all ranks together).
fn advance(state: &mut TrainState, samples: u64, batches_per_epoch: u64) {
    state.step += 1;
    state.batch_in_epoch += 1;
    if state.batch_in_epoch >= batches_per_epoch {
        state.epoch += 1;
        state.batch_in_epoch = 0;
    }
    state.samples_seen += samples;
}

/// Rank 0 after a step: validation every `eval.every` steps and at the end; a checkpoint every
/// `run.checkpoint_every` steps, at the end, and whenever validation improves (then also
/// marked `best`).
fn validate_and_save(
    cfg: &TrainConfig,
    setup: &Setup,
    checkpoints: &Checkpoints,
    optimizer: &AdamW,
    state: &mut TrainState,
    log: &mut RunLog,
) -> Result<(), TrainError> {
    let last = state.step == cfg.run.steps;
    let eval_now = last || (cfg.eval.every > 0 && state.step.is_multiple_of(cfg.eval.every));
    let mut improved = false;
    if eval_now {
        let val = evaluate::validation(
            &setup.model,
            &setup.val,
            &setup.tokenizer,
            &setup.eval_loader_cfg,
            &setup.class_index,
            setup.device,
            cfg.eval.max_samples,
        )?;
        log.record(&val.record(state.step))?;
        log.validation_skipped(state.step, &val.skipped)?;
        tracing::info!(step = state.step, mean_auc = ?val.mean_auc, "validation");
        if let Some(auc) = val.mean_auc {
            if state.best.is_none_or(|(b, _)| auc > b) {
                state.best = Some((auc, state.step));
                improved = true;
            }
        }
    }
    if last || state.step.is_multiple_of(cfg.run.checkpoint_every) || improved {
        let path = checkpoints.save(&setup.model, optimizer, state)?;
        tracing::info!(step = state.step, path = %path.display(), best = improved, "checkpoint");
        if improved {
            checkpoints.mark_best(&path)?;
        }
    }
    Ok(())
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
