//! `umcl train`, `umcl eval` and `umcl classify`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use umcl_fs::write_atomic;
use umcl_torch_ext::runtime::{self, BackendConfig, DeviceRequest};
use umcl_train::config::TrainConfig;
use umcl_train::distributed::LAUNCH_VARIABLES;
use umcl_train::evaluate;
use umcl_train::trainer::{self, Resume, RunOptions};

use crate::stdout::{out, outln};

/// Arguments of `umcl train`.
#[derive(Args)]
#[command(
    after_help = "Examples:\n  umcl train                                   # the phantom-cpu preset\n  umcl train --config my.toml --set optim.lr=1e-4 --set run.steps=2000\n  umcl train --preset phantom-cpu --resume latest"
)]
pub struct TrainArgs {
    /// A TOML configuration file (see crates/umcl-train/data/configs/ for presets).
    #[arg(long, conflicts_with = "preset")]
    config: Option<PathBuf>,
    /// A built-in preset: phantom-cpu, covid-cxr, mimic-chexpert-resnet50, mimic-chexpert-vit-b16.
    #[arg(long)]
    preset: Option<String>,
    /// Override one key, e.g. --set optim.lr=1e-4 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Continue a run: `latest` (its newest checkpoint) or a checkpoint directory.
    #[arg(long)]
    resume: Option<String>,
    /// No progress bar and no log lines.
    #[arg(long)]
    quiet: bool,
    /// Save the initial model (pretrained weights imported, no step trained) as checkpoint 0
    /// and stop: the baseline for `umcl eval`
    #[arg(long, conflicts_with_all = ["resume", "nproc"])]
    init_only: bool,
    /// Print the resolved configuration and exit.
    #[arg(long)]
    print_config: bool,
    /// Start N worker processes on this machine for data-parallel training (like torchrun
    /// --nproc-per-node N; see docs/distributed.md). Each takes data.batch_size / N samples
    /// per step.
    #[arg(long, value_name = "N")]
    nproc: Option<usize>,
    /// The rendezvous port for --nproc [default: a free port].
    #[arg(long, value_name = "PORT", requires = "nproc")]
    master_port: Option<u16>,
}

/// Reads the configuration named by `--config`/`--preset` with `--set` applied.
fn resolve_config(args: &TrainArgs) -> Result<TrainConfig> {
    let mut cfg = match (&args.config, &args.preset) {
        (Some(path), _) => TrainConfig::from_file(path)?,
        (None, Some(name)) => TrainConfig::preset(name)?,
        (None, None) => TrainConfig::preset("phantom-cpu")?,
    };
    cfg.apply_overrides(&args.overrides)?;
    Ok(cfg)
}

/// The first SIGINT (Ctrl-C) or SIGTERM asks the run to stop after the step in progress,
/// with its state saved ([`trainer::request_stop`]); a second one ends the process at once.
/// The `--nproc` launcher gets the same handler, so it waits for its ranks (which the
/// terminal signals too) to save and end.
fn stop_on_signals() {
    static SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    extern "C" fn on_signal(signal: libc::c_int) {
        if SEEN.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: _exit(2) is async-signal-safe; nothing else runs after it.
            unsafe { libc::_exit(128 + signal) };
        }
        trainer::request_stop();
        let note = b"\numcl: stopping after this step and saving a checkpoint \
                     (press Ctrl-C again to end at once)\n";
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte string.
        unsafe { libc::write(2, note.as_ptr().cast(), note.len()) };
    }
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installs a handler that only touches atomics and calls async-signal-safe
        // functions (write, _exit).
        unsafe {
            libc::signal(
                signal,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
    }
}

/// Runs `umcl train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let mut cfg = resolve_config(args)?;
    if args.print_config {
        out!("{}", cfg.to_toml());
        return Ok(());
    }
    stop_on_signals();
    if let Some(n) = args.nproc {
        return launch(args, &mut cfg, n);
    }
    for source in cfg.data.sources() {
        if !source.path.exists() {
            bail!(
                "{}: no such manifest. For the phantom data run `umcl data phantom --out {}` \
                 (or `cargo xtask train`, which does it); for real data see `umcl data prepare \
                 --help`",
                source.path.display(),
                source.path.parent().unwrap_or(Path::new(".")).display()
            );
        }
    }
    let resume = args.resume.as_deref().map(|r| match r {
        "latest" => Resume::Latest,
        dir => Resume::From(PathBuf::from(dir)),
    });
    let summary = trainer::train(
        &cfg,
        &RunOptions {
            resume,
            quiet: args.quiet,
            init_only: args.init_only,
        },
    )?;
    if std::env::var("RANK").is_ok_and(|r| r.trim() != "0") {
        return Ok(()); // rank 0 reports for the run
    }
    outln!("run directory: {}", summary.run_dir.display());
    if summary.steps == 0 {
        outln!("steps: 0 (the initial model, saved as checkpoint 0)");
    } else {
        outln!(
            "steps: {}, final loss {:.4}",
            summary.steps,
            summary.final_loss
        );
    }
    if let Some((auc, step)) = summary.best {
        outln!("best validation mean AUC: {auc:.4} (step {step})");
    }
    if summary.skipped_samples + summary.skipped_validation > 0 {
        outln!(
            "skipped samples (unreadable images, data.skip_bad): {} in training, {} in \
             validation; listed in {}",
            summary.skipped_samples,
            summary.skipped_validation,
            summary.run_dir.join("skipped.txt").display()
        );
    }
    if let Some(z) = &summary.zero_shot {
        if let Some(l) = &z.learned {
            outln!(
                "zero-shot accuracy on {} ({} images): {:.4} with learned prompts, {:.4} with hand-written prompts",
                z.manifest, z.samples, l.accuracy, z.handwritten.accuracy
            );
        } else {
            outln!(
                "zero-shot accuracy on {} ({} images): {:.4} with hand-written prompts",
                z.manifest,
                z.samples,
                z.handwritten.accuracy
            );
        }
    }
    outln!("summary: {}", summary.run_dir.join("summary.md").display());
    Ok(())
}

/// `umcl train --nproc N`: starts N copies of this command as ranks 0..N of one data-parallel
/// run on 127.0.0.1 and waits for them. When a rank fails, the others are given
/// `min(dist.timeout_s, 30)` + 5 seconds to notice and stop by themselves (with Gloo they see a
/// dead peer's sockets close at once), then killed; when rank 0 fails they are killed at once,
/// since the rendezvous store lives in rank 0.
fn launch(args: &TrainArgs, cfg: &mut TrainConfig, n: usize) -> Result<()> {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    if n == 0 {
        bail!("--nproc must be at least 1");
    }
    // `--nproc` refuses to run inside another launcher.
    if let Some(var) = LAUNCH_VARIABLES
        .iter()
        .find(|v| std::env::var_os(v).is_some())
    {
        bail!(
            "--nproc starts its own ranks, but {var} is already set (is this process started by \
             torchrun or Slurm? then leave out --nproc: umcl reads their variables itself)"
        );
    }
    let mut overrides = args.overrides.clone();
    if cfg.run.threads == 0 {
        // Like torchrun, do not let N ranks each take every core.
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let threads = (cores / n).max(1);
        overrides.push(format!("run.threads={threads}"));
        cfg.run.threads = threads;
    }
    cfg.validate()?;
    if !cfg.data.batch_size.is_multiple_of(n) {
        bail!(
            "data.batch_size ({}) does not split evenly over --nproc {n} ranks",
            cfg.data.batch_size
        );
    }
    if let Some(missing) = cfg.data.sources().iter().find(|s| !s.path.exists()) {
        bail!("{}: no such manifest", missing.path.display());
    }
    let port = match args.master_port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .context("cannot find a free port for the rendezvous (give --master-port)")?,
    };
    let exe = std::env::current_exe().context("cannot find the umcl executable")?;
    let mut child_args: Vec<String> = vec!["train".into()];
    if let Some(c) = &args.config {
        child_args.push("--config".into());
        child_args.push(c.display().to_string());
    }
    if let Some(p) = &args.preset {
        child_args.push("--preset".into());
        child_args.push(p.clone());
    }
    for o in &overrides {
        child_args.push("--set".into());
        child_args.push(o.clone());
    }
    if let Some(r) = &args.resume {
        child_args.push("--resume".into());
        child_args.push(r.clone());
    }
    if args.quiet {
        child_args.push("--quiet".into());
    }
    if !args.quiet {
        eprintln!(
            "starting {n} ranks on 127.0.0.1:{port}, {} samples and {} threads each",
            cfg.data.batch_size / n,
            cfg.run.threads
        );
    }
    let mut children = Vec::with_capacity(n);
    for rank in 0..n {
        let mut cmd = Command::new(&exe);
        cmd.args(&child_args)
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", n.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", n.to_string())
            .stdin(Stdio::null());
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start rank {rank} ({})", exe.display()))?;
        children.push(Some(child));
    }
    let grace = Duration::from_secs(cfg.dist.timeout_s.min(30) + 5);
    let mut failures: Vec<String> = Vec::new();
    // When the ranks still running are stopped, once one has failed.
    let mut deadline: Option<Instant> = None;
    loop {
        for (rank, slot) in children.iter_mut().enumerate() {
            let Some(child) = slot else { continue };
            if let Some(status) = child.try_wait().context("waiting for a rank")? {
                if !status.success() {
                    failures.push(format!("rank {rank} {}", describe(status)));
                    let now = Instant::now();
                    // Without rank 0 (and its store) the others cannot go on: no grace.
                    let when = if rank == 0 { now } else { now + grace };
                    deadline = Some(deadline.map_or(when, |t| t.min(when)));
                }
                *slot = None;
            }
        }
        if children.iter().all(Option::is_none) {
            break;
        }
        if deadline.is_some_and(|t| Instant::now() >= t) {
            for (rank, slot) in children.iter_mut().enumerate() {
                if let Some(child) = slot {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!("rank {rank} was stopped by the launcher"));
                    *slot = None;
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if !failures.is_empty() {
        bail!(
            "the distributed run failed: {}. Resume it with the same command and \
             --resume latest",
            failures.join("; ")
        );
    }
    Ok(())
}

/// How a child process ended, in words.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended abnormally".into(),
    }
}

/// Evaluation tasks.
#[derive(Clone, Copy, ValueEnum)]
pub enum Task {
    /// Zero-shot classification (learned and hand-written prompts), multi-label AUC.
    Zeroshot,
    /// Image-text retrieval: R@1, R@5, R@10, median rank.
    Retrieval,
    /// Logistic regression on frozen image features with 1%, 10%, 100% of the labels.
    LinearProbe,
}

/// Arguments of `umcl eval`.
#[derive(Args, Clone)]
#[command(
    after_help = "Example:\n  umcl eval --checkpoint runs/phantom-cpu --manifest data/phantom/eval-5x200.jsonl --task zeroshot"
)]
pub struct EvalArgs {
    /// A checkpoint directory, or a run directory (its best checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// The manifest to evaluate on.
    #[arg(long)]
    manifest: PathBuf,
    /// What to evaluate.
    #[arg(long, value_enum)]
    task: Task,
    /// Class keys (comma-separated) [default: the run's eval classes].
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Evaluate one part of the manifest's patient split (STEM.splits.json, written by
    /// `umcl data split` or by training): train, val or test. The part is written as
    /// STEM.PART.jsonl next to the manifest. With `--task linear-probe` the probe is fitted
    /// on the split's other parts (train and val) and scored on this one, with intervals over
    /// patients; without it, the manifest is split 70/30 by patient for the probe.
    #[arg(long, value_parser = ["train", "val", "test"])]
    part: Option<String>,
    /// With `--task linear-probe`: the image vectors to probe, `embedding` (projected) or
    /// `pooled` (the encoder's features before the projection)
    #[arg(long, default_value = "embedding", value_parser = ["embedding", "pooled"])]
    probe_features: String,
    /// With `--task zeroshot` (or `--task linear-probe --part`): a task whose truth is a
    /// metadata field, with its classes and prompts (TOML, e.g.
    /// data/tasks/covid-vs-other.toml), instead of schema classes.
    #[arg(long)]
    task_file: Option<PathBuf>,
    /// Where to write results.json, results.md and ROC plots [default: print only].
    #[arg(long)]
    output: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
}

/// Runs `umcl eval`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    // Checked before the model loads.
    let meta_task = match (&args.task_file, args.task, &args.part) {
        (Some(path), Task::Zeroshot, _) | (Some(path), Task::LinearProbe, Some(_)) => {
            Some(umcl_train::meta_task::MetaTask::read(path)?)
        }
        (Some(_), _, _) => {
            bail!("--task-file goes with --task zeroshot, or --task linear-probe with --part")
        }
        (None, _, _) => None,
    };
    let (backend, trained, classes) = load_trained(&args.checkpoint, args.device, &args.classes)?;
    if let (Task::LinearProbe, Some(part)) = (args.task, &args.part) {
        let truth = match &meta_task {
            Some(task) => evaluate::ProbeTruth::Meta(task),
            None => evaluate::ProbeTruth::Schema(&classes),
        };
        return probe_on_split(args, &trained, &truth, part, backend.device);
    }
    let manifest = match &args.part {
        Some(part) => split_part(&args.manifest, part)?,
        None => args.manifest.clone(),
    };
    let args = &EvalArgs {
        manifest,
        ..args.clone()
    };
    let (json, markdown, roc) = match args.task {
        Task::Zeroshot if meta_task.is_some() => {
            let task = meta_task.as_ref().context("task file")?;
            let r = umcl_train::meta_task::zero_shot_meta(
                &trained.model,
                &args.manifest,
                &trained.tokenizer,
                &trained.loader_cfg,
                task,
                backend.device,
            )?;
            (serde_json::to_string_pretty(&r)?, r.to_markdown(), None)
        }
        Task::Zeroshot => {
            let r = evaluate::zero_shot_manifest(
                &trained.model,
                &args.manifest,
                &trained.tokenizer,
                &trained.loader_cfg,
                &classes,
                backend.device,
            )?;
            let roc = r.multilabel.as_ref().map(|m| {
                m.class_names
                    .iter()
                    .zip(&m.per_class)
                    .filter_map(|(name, c)| Some((name.clone(), c.roc.clone(), c.auc?)))
                    .collect::<Vec<_>>()
            });
            (serde_json::to_string_pretty(&r)?, r.to_markdown(), roc)
        }
        Task::Retrieval => {
            let r = evaluate::retrieval_manifest(
                &trained.model,
                &args.manifest,
                &trained.tokenizer,
                &trained.loader_cfg,
                backend.device,
            )?;
            (serde_json::to_string_pretty(&r)?, r.to_markdown(), None)
        }
        Task::LinearProbe => {
            let r = evaluate::linear_probe_manifest(
                &trained,
                &args.manifest,
                &classes,
                backend.device,
            )?;
            (serde_json::to_string_pretty(&r)?, probe_markdown(&r), None)
        }
    };
    outln!("{markdown}");
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(&dir.join("results.json"), json.as_bytes())?;
        write_atomic(&dir.join("results.md"), markdown.as_bytes())?;
        if let Some(curves) = roc.filter(|c| !c.is_empty()) {
            let refs: Vec<umcl_train::plots::RocCurve> = curves
                .iter()
                .map(|(n, p, a)| (n.as_str(), p.clone(), *a))
                .collect();
            umcl_train::plots::plot_roc(&dir.join("roc.png"), &refs)?;
        }
        outln!("results written to {}", dir.display());
    }
    Ok(())
}

/// Arguments of `umcl classify`.
#[derive(Args)]
#[command(
    after_help = "Example:\n  umcl classify --checkpoint runs/phantom-cpu data/phantom/eval-5x200/0000.png --top-k 3"
)]
pub struct ClassifyArgs {
    /// A checkpoint directory, or a run directory (its best checkpoint).
    #[arg(long)]
    checkpoint: PathBuf,
    /// Image files (PNG or JPEG).
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// Class keys (comma-separated) [default: the run's eval classes].
    #[arg(long, value_delimiter = ',')]
    classes: Vec<String>,
    /// Use hand-written prompts even when the model has learned ones.
    #[arg(long)]
    handwritten: bool,
    /// How many classes to print per image.
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
}

/// Runs `umcl classify`.
pub fn classify(args: &ClassifyArgs) -> Result<()> {
    let (backend, trained, classes) = load_trained(&args.checkpoint, args.device, &args.classes)?;
    let use_learned =
        !args.handwritten && trained.model.prompt().is_some() && args.classes.is_empty();
    let ranked = umcl_train::evaluate::classify_images(
        &trained,
        &args.images,
        &classes,
        use_learned,
        backend.device,
    )?;
    for (path, scores) in args.images.iter().zip(ranked) {
        outln!("{}", path.display());
        for (class, p) in scores.into_iter().take(args.top_k.max(1)) {
            outln!("  {class:<28} {p:.4}");
        }
    }
    Ok(())
}

/// The markdown of a linear probe at each fraction of the training labels.
fn probe_markdown(results: &[umcl_train::metrics::ProbeResult]) -> String {
    results
        .iter()
        .map(|p| {
            format!(
                "### {:.0}% of the training labels\n\n{}",
                100.0 * p.fraction,
                p.to_markdown()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `umcl eval --task linear-probe --part PART`: fitted on the split's other parts, scored on
/// PART.
fn probe_on_split(
    args: &EvalArgs,
    trained: &evaluate::Trained,
    truth: &evaluate::ProbeTruth<'_>,
    part: &str,
    device: tch::Device,
) -> Result<()> {
    use umcl_data::manifest::Manifest;
    use umcl_data::split::Split;
    let split_path = umcl_data::split::split_path(&args.manifest);
    if !split_path.exists() {
        bail!(
            "{}: no split file; make one with `umcl data split {}`",
            split_path.display(),
            args.manifest.display()
        );
    }
    let split = Split::read(&split_path)?;
    let m = Manifest::read(&args.manifest)?;
    split.check(&m.samples, &split_path)?;
    let lookup = split.lookup();
    let (test, train): (Vec<_>, Vec<_>) = m
        .samples
        .into_iter()
        .partition(|s| lookup.get(s.id.as_str()).is_some_and(|p| p.name() == part));
    eprintln!(
        "linear probe: fitted on {} samples of the other parts, scored on {} samples of {part} \
         ({})",
        train.len(),
        test.len(),
        split_path.display()
    );
    let features = if args.probe_features == "pooled" {
        evaluate::ProbeFeatures::Pooled
    } else {
        evaluate::ProbeFeatures::Embedding
    };
    let r = evaluate::linear_probe_split(trained, train, test, truth, features, device)?;
    let md = probe_markdown(&r);
    outln!("{md}");
    if let Some(dir) = &args.output {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        write_atomic(
            &dir.join("results.json"),
            serde_json::to_string_pretty(&r)?.as_bytes(),
        )?;
        write_atomic(&dir.join("results.md"), md.as_bytes())?;
        outln!("results written to {}", dir.display());
    }
    Ok(())
}

/// Writes the samples of one part of `manifest`'s patient split to `STEM.PART.jsonl`.
fn split_part(manifest: &Path, part: &str) -> Result<PathBuf> {
    use umcl_data::manifest::{sibling_path, write_manifest, Manifest};
    use umcl_data::split::Split;
    let split_path = umcl_data::split::split_path(manifest);
    if !split_path.exists() {
        bail!(
            "{}: no split file; make one with `umcl data split {}` (training makes one too)",
            split_path.display(),
            manifest.display()
        );
    }
    let split = Split::read(&split_path)?;
    let m = Manifest::read(manifest)?;
    split.check(&m.samples, &split_path)?;
    let schema = umcl_data::schema::Schema::chest_xray();
    m.header.check_schema(&schema, manifest)?;
    let lookup = split.lookup();
    let samples: Vec<_> = m
        .samples
        .into_iter()
        .filter(|s| lookup.get(s.id.as_str()).is_some_and(|p| p.name() == part))
        .collect();
    if samples.is_empty() {
        bail!("{}: the {part} part is empty", split_path.display());
    }
    let out = sibling_path(manifest, &format!(".{part}.jsonl"));
    write_manifest(&out, &schema, &samples)?;
    eprintln!("{part} part: {} samples ({})", samples.len(), out.display());
    Ok(out)
}

/// Starts the backend and loads a trained model; `classes` defaults to the run's eval classes.
fn load_trained(
    checkpoint: &Path,
    device: DeviceRequest,
    classes: &[String],
) -> Result<(runtime::Backend, evaluate::Trained, Vec<String>)> {
    let backend = runtime::init(&BackendConfig {
        device,
        threads: None,
        ..Default::default()
    })?;
    let trained = evaluate::load_trained(checkpoint, backend.device)?;
    let classes = if classes.is_empty() {
        trained.classes.clone()
    } else {
        classes.to_vec()
    };
    Ok((backend, trained, classes))
}
