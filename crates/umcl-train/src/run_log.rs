//! What a run tells its user while it runs: `metrics.jsonl`, the progress bar, notes on
//! stderr, and the list of skipped samples.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use tch::Tensor;
use umcl_data::loader::{EpochStats, Skipped};
use umcl_fs::write_atomic;

use crate::checkpoint::TrainState;
use crate::config::TrainConfig;
use crate::distributed::Dist;
use crate::error::TrainError;
use crate::setup::Setup;
use crate::step::StepValues;

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

/// The running log of one call of [`crate::trainer::train`]. Only rank 0 writes; every rank
/// keeps the loss window and the throughput counters.
pub(crate) struct RunLog {
    run_dir: PathBuf,
    log_every: u64,
    quiet: bool,
    metrics: Option<MetricsLog>,
    progress: Option<indicatif::ProgressBar>,
    started: Instant,
    /// Loader waiting of the finished epochs of this call.
    waited: Duration,
    /// Samples consumed by this call (all ranks).
    samples: u64,
    /// Sum and count of the losses since the last logged step.
    window: (f64, u64),
    last_loss: f64,
    /// Samples skipped in training, and the most one validation skipped.
    skipped_train: usize,
    skipped_val: usize,
}

impl RunLog {
    /// Opens `metrics.jsonl` (cut back to `start_step` on resume) and the progress bar.
    pub(crate) fn start(
        cfg: &TrainConfig,
        quiet: bool,
        main: bool,
        run_dir: &Path,
        start_step: u64,
    ) -> Result<Self, TrainError> {
        let metrics = if main {
            Some(MetricsLog::open(
                &run_dir.join("metrics.jsonl"),
                start_step,
            )?)
        } else {
            None
        };
        let progress = if main && !quiet && cfg.run.progress {
            Some(progress_bar(cfg.run.steps, start_step))
        } else {
            None
        };
        Ok(Self {
            run_dir: run_dir.to_path_buf(),
            log_every: cfg.run.log_every,
            quiet: quiet || !main,
            metrics,
            progress,
            started: Instant::now(),
            waited: Duration::ZERO,
            samples: 0,
            window: (0.0, 0),
            last_loss: f64::NAN,
            skipped_train: 0,
            skipped_val: 0,
        })
    }

    /// A line for the user on stderr (rank 0, unless quiet).
    pub(crate) fn note(&self, text: &str) {
        if !self.quiet {
            eprintln!("{text}");
        }
    }

    /// Counts a finished step; every `run.log_every` steps and at the last one, writes its
    /// record and updates the progress message.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn step(
        &mut self,
        state: &TrainState,
        samples: u64,
        total: u64,
        values: &StepValues,
        lr: f64,
        grad_norm: &Tensor,
        setup: &Setup,
        epoch: &EpochStats,
    ) -> Result<(), TrainError> {
        self.samples += samples;
        self.window.0 += values.total;
        self.window.1 += 1;
        if state.step.is_multiple_of(self.log_every) || state.step == total {
            let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
            self.last_loss = self.window.0 / self.window.1.max(1) as f64;
            self.window = (0.0, 0);
            let rec = StepRecord {
                kind: "step",
                step: state.step,
                loss: self.last_loss,
                contrastive: values.contrastive,
                prompt: values.prompt,
                lr,
                grad_norm: grad_norm.double_value(&[]),
                logit_scale: setup.model.logit_scale().double_value(&[]),
                samples_per_second: self.samples as f64 / elapsed,
                data_wait_share: ((self.waited + epoch.waited).as_secs_f64() / elapsed).min(1.0),
                masked_pairs: values.masked_pairs,
                mean_positives: values.mean_positives,
                grad_buckets_overlapped: setup
                    .dist
                    .as_ref()
                    .and_then(Dist::overlap)
                    .map(|o| [o.early, o.buckets]),
            };
            self.record(&rec)?;
            if let Some(p) = &self.progress {
                p.set_message(format!(
                    "loss {:.4} lr {:.2e} {:.0} samples/s data-wait {:.0}%",
                    rec.loss,
                    lr,
                    rec.samples_per_second,
                    100.0 * rec.data_wait_share
                ));
            }
        }
        if let Some(p) = &self.progress {
            p.set_position(state.step);
        }
        Ok(())
    }

    /// Appends one record (a step or a validation) to `metrics.jsonl` on rank 0.
    pub(crate) fn record(&mut self, record: &impl Serialize) -> Result<(), TrainError> {
        match &mut self.metrics {
            Some(m) => m.write(record),
            None => Ok(()),
        }
    }

    /// Closes an epoch: its loader waiting joins the total, and its skipped samples are
    /// reported ([`skipped`](Self::skipped)).
    pub(crate) fn end_epoch(&mut self, epoch: &EpochStats) -> Result<(), TrainError> {
        self.waited += epoch.waited;
        self.skipped_train += epoch.skipped.len();
        self.skipped("this epoch", &epoch.skipped)
    }

    /// Counts the samples one validation left out.
    pub(crate) fn validation_skipped(
        &mut self,
        step: u64,
        skipped: &[Skipped],
    ) -> Result<(), TrainError> {
        self.skipped_val = self.skipped_val.max(skipped.len());
        self.skipped(&format!("in validation at step {step}"), skipped)
    }

    /// Skipped samples are appended to `skipped.txt` (rank 0) and counted on stderr (unless
    /// quiet; the run's summary has the totals either way).
    fn skipped(&mut self, when: &str, skipped: &[Skipped]) -> Result<(), TrainError> {
        if self.metrics.is_none() || skipped.is_empty() {
            return Ok(());
        }
        let path = self.run_dir.join("skipped.txt");
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| TrainError::io(&path, e))?;
        for s in skipped {
            writeln!(f, "{}\t{}", s.id, s.reason).map_err(|e| TrainError::io(&path, e))?;
        }
        self.note(&format!(
            "skipped {} samples {when} (listed in {})",
            skipped.len(),
            path.display()
        ));
        Ok(())
    }

    /// Samples skipped in training (all epochs of this call) and the most one validation
    /// skipped.
    pub(crate) fn skipped_counts(&self) -> (usize, usize) {
        (self.skipped_train, self.skipped_val)
    }

    /// Leaves the progress bar where it stopped (the run ends in an error).
    pub(crate) fn abandon(&self) {
        if let Some(p) = &self.progress {
            p.abandon();
        }
    }

    /// Ends the progress bar; returns this call's samples per second and its share of wall
    /// time spent waiting for the loader.
    pub(crate) fn finish(&self) -> (f64, f64) {
        if let Some(p) = &self.progress {
            p.finish();
        }
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        (
            self.samples as f64 / elapsed,
            (self.waited.as_secs_f64() / elapsed).min(1.0),
        )
    }

    /// The mean loss of the last logged window (NaN before the first).
    pub(crate) fn last_loss(&self) -> f64 {
        self.last_loss
    }
}

fn progress_bar(steps: u64, start: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(steps);
    let style = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:30}] {pos}/{len} steps  {msg}",
    )
    .map(|s| s.progress_chars("=> "))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_position(start);
    bar
}

/// `metrics.jsonl`: one JSON object per line. On resume, lines of steps after the checkpoint
/// are dropped, so the file reads as one uninterrupted run.
struct MetricsLog {
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

    fn write(&mut self, record: &impl Serialize) -> Result<(), TrainError> {
        let line = serde_json::to_string(record).map_err(|e| TrainError::io(&self.path, e))?;
        writeln!(self.file, "{line}").map_err(|e| TrainError::io(&self.path, e))?;
        tracing::debug!(target: "umcl::metrics", "{line}");
        Ok(())
    }
}
