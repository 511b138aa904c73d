//! `cargo xtask gpu-bundle`: what a GPU host needs to run the GPU part of the bench suite.
//!
//! The binaries are built without the run path to this machine's libtorch
//! (`UMCL_NO_RPATH=1`, see `crates/torch-build.rs`), in their own target folder
//! (`target/gpu-bundle-build`) so the normal build keeps its fingerprints, stripped (release
//! without debug info). The bundle holds:
//! - `bin/umcl` and `bin/losses_vs_torch` (the losses side-by-side bench);
//! - `lib/libumcl_nccl.so`, the NCCL process group (`cargo xtask nccl`; `--no-nccl` leaves it
//!   out), which `bin/umcl` finds in `../lib/`;
//! - every file of `xtask/gpu/` (`run.sh`, which runs the suite and writes one log, and the
//!   training-step script);
//! - `reference/`: the Python references, run with the host's own torch;
//! - `README.md` and `BUILD-INFO` (commit, date, libtorch built against).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The Python references the GPU part runs, relative to the workspace root. Missing optional
/// ones are reported, not fatal (another part of the suite may not have landed yet).
const REFERENCES: &[(&str, bool)] = &[
    ("crates/umcl-losses/benches/reference/losses_bench.py", true),
    ("crates/umcl-losses/tests/reference/make_fixtures.py", true),
    ("crates/umcl-train/benches/reference/train_step.py", false),
];

const README: &str = "\
# umcl GPU bundle

Release binaries built without a run path to libtorch, and the scripts that run the GPU part
of umcl's benchmark suite (issue #8) on a host that has its own PyTorch.

    PYTHON=/opt/torch/.venv/bin/python ./run.sh [--device cuda|cpu] [--quick] [--out DIR]

run.sh puts that python's `torch/lib` on `LD_LIBRARY_PATH` (the binaries need libtorch
2.11.0, the version in BUILD-INFO), then runs `umcl info`, the losses side by side with PyTorch
eager (bin/losses_vs_torch + reference/losses_bench.py) and the training step
(train_step.sh, when present), and writes `DIR/run.log`, `DIR/raw/*.tsv` (one result line per
case, tab-separated: umcl-bench-row, group, case, ours, reference, unit, lower|higher, device,
note) and `DIR/results.tsv` (all of them).
Made by `cargo xtask gpu-bundle` from the umcl repository.
";

/// `cargo xtask gpu-bundle [--out DIR] [--no-build] [--no-nccl]`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut out = root.join("gpu-bundle");
    let mut build = true;
    let mut with_nccl = true;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => match it.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => bail!("--out needs a folder"),
            },
            "--no-build" => build = false,
            "--no-nccl" => with_nccl = false,
            other => bail!(
                "gpu-bundle: unexpected argument `{other}` (--out DIR, --no-build, --no-nccl)"
            ),
        }
    }
    crate::setup::ensure(root, false)?;
    let target = root.join("target/gpu-bundle-build");
    let release = target.join("release");
    if build {
        let with_env = |cmd: &mut Command| {
            cmd.env("CARGO_TARGET_DIR", &target)
                .env("UMCL_NO_RPATH", "1")
                .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
                .env("CARGO_PROFILE_RELEASE_STRIP", "true")
                .env("CARGO_PROFILE_BENCH_DEBUG", "false")
                .env("CARGO_PROFILE_BENCH_STRIP", "true");
        };
        let mut cmd = crate::cargo(root);
        cmd.args(["build", "--release", "--package", "umcl"]);
        with_env(&mut cmd);
        crate::status(&mut cmd)?;
        let mut cmd = crate::cargo(root);
        cmd.args(["bench", "--no-run", "--package", "umcl-losses"])
            .args(["--bench", "losses_vs_torch"]);
        with_env(&mut cmd);
        crate::status(&mut cmd)?;
    }
    let nccl = if with_nccl {
        Some(crate::nccl::build(root)?)
    } else {
        None
    };
    let umcl = release.join("umcl");
    let losses = newest_executable(&release.join("deps"), "losses_vs_torch-")?;
    if !umcl.exists() {
        bail!(
            "{} is missing: run without --no-build first",
            umcl.display()
        );
    }

    // Build the bundle next to its final place, then swap it in.
    let tmp = out.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(tmp.join("bin"))?;
    std::fs::create_dir_all(tmp.join("reference"))?;
    copy(&umcl, &tmp.join("bin/umcl"))?;
    copy(&losses, &tmp.join("bin/losses_vs_torch"))?;
    if let Some(nccl) = &nccl {
        std::fs::create_dir_all(tmp.join("lib"))?;
        copy(nccl, &tmp.join("lib/libumcl_nccl.so"))?;
    }
    let gpu = root.join("xtask/gpu");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&gpu)
        .with_context(|| format!("reading {}", gpu.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    for p in &entries {
        let name = p.file_name().context("a file name")?;
        copy(p, &tmp.join(name))?;
    }
    for (rel, required) in REFERENCES {
        let src = root.join(rel);
        if !src.exists() {
            if *required {
                bail!("{} is missing", src.display());
            }
            eprintln!("xtask: gpu-bundle: {rel} is absent, the bundle runs without it");
            continue;
        }
        let name = src.file_name().context("a file name")?;
        copy(&src, &tmp.join("reference").join(name))?;
    }
    std::fs::write(tmp.join("README.md"), README)?;
    std::fs::write(tmp.join("BUILD-INFO"), build_info(root))?;
    if out.exists() {
        std::fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;

    let mut total = 0;
    for f in walk(&out) {
        total += std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
    }
    println!(
        "xtask: gpu-bundle: {} ({:.1} MiB): run `PYTHON=/path/to/torch/venv/bin/python {}/run.sh` on the GPU host",
        out.display(),
        total as f64 / (1024.0 * 1024.0),
        out.display()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// The most recently built executable in `dir` whose name starts with `prefix` (cargo's
/// hashed bench binaries).
fn newest_executable(dir: &Path, prefix: &str) -> Result<PathBuf> {
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for e in std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
    {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(prefix) || p.extension().is_some() {
            continue;
        }
        let Ok(modified) = e.metadata().and_then(|m| m.modified()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(t, _)| modified > *t) {
            best = Some((modified, p));
        }
    }
    match best {
        Some((_, p)) => Ok(p),
        None => bail!("no {prefix}* binary in {}", dir.display()),
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn build_info(root: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let libtorch = std::fs::read_to_string(root.join(".libtorch/build-version"))
        .unwrap_or_else(|_| "unknown".into());
    let dirty = if git(&["status", "--porcelain", "--untracked-files=no"]).is_empty() {
        ""
    } else {
        " (with uncommitted changes)"
    };
    format!(
        "commit {}{dirty}\nlibtorch {}\nbuilt by cargo xtask gpu-bundle\n",
        git(&["rev-parse", "HEAD"]),
        libtorch.trim()
    )
}
