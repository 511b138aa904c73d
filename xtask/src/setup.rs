//! `cargo xtask setup`: torch from PyPI into a project-local venv, and the `.libtorch` folder
//! that `LIBTORCH` (see `.cargo/config.toml`) points at.
//!
//! Layout after a run (all git-ignored):
//! - `.venv/`: python venv with `torch==<pin>` and the two small nvidia runtime wheels
//!   (`--no-deps`: libtorch_cpu needs libcudart and libcupti, nothing else), or the full
//!   CUDA torch with `--cuda`.
//! - `.libtorch/include` -> the wheel's `torch/include`; `.libtorch/lib/` holds links to the
//!   four libraries tch links; `.libtorch/build-version` is checked by torch-sys.
//! - `.libtorch/umcl-setup.stamp`: what was installed. When it matches the pins and the
//!   libraries are present, setup returns at once without touching the network.
//! - `.venv-ref/` (only from `ref-venv`): full torch plus the reference libraries pinned in
//!   `xtask/requirements-ref.txt`, for the scripts that make test fixtures and benchmarks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

use crate::status;

/// The libraries tch links against, linked into `.libtorch/lib`.
const LINKED_LIBS: [&str; 4] = [
    "libtorch_cpu.so",
    "libc10.so",
    "libtorch.so",
    "libgomp.so.1",
];

/// Version pins read from `[workspace.metadata.umcl]` in the top-level Cargo.toml.
#[derive(Debug, PartialEq, Deserialize)]
struct Pins {
    torch: String,
    #[serde(rename = "nvidia-cuda-runtime")]
    cuda_runtime: String,
    #[serde(rename = "nvidia-cuda-cupti")]
    cuda_cupti: String,
}

impl Pins {
    fn read(root: &Path) -> Result<Self> {
        let path = root.join("Cargo.toml");
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// The pins of a workspace manifest's text.
    fn parse(manifest: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Manifest {
            workspace: Workspace,
        }
        #[derive(Deserialize)]
        struct Workspace {
            metadata: Metadata,
        }
        #[derive(Deserialize)]
        struct Metadata {
            umcl: Pins,
        }
        let manifest: Manifest =
            toml::from_str(manifest).context("reading the pins of [workspace.metadata.umcl]")?;
        Ok(manifest.workspace.metadata.umcl)
    }

    fn stamp(&self, cuda: bool) -> String {
        let flavour = if cuda { "full-cuda" } else { "minimal" };
        format!(
            "torch={} nvidia-cuda-runtime={} nvidia-cuda-cupti={} install={flavour}\n",
            self.torch, self.cuda_runtime, self.cuda_cupti
        )
    }
}

/// Makes sure torch is installed and `.libtorch` laid out; returns the torch package dir.
///
/// A plain `ensure(root, false)` accepts an existing full (`--cuda`) install as well.
pub fn ensure(root: &Path, cuda: bool) -> Result<PathBuf> {
    let pins = Pins::read(root)?;
    let libtorch = root.join(".libtorch");
    let stamp_path = libtorch.join("umcl-setup.stamp");
    let venv = root.join(".venv");
    if let Ok(stamp) = fs::read_to_string(&stamp_path) {
        let wanted_ok = stamp == pins.stamp(cuda) || (!cuda && stamp == pins.stamp(true));
        if wanted_ok
            && LINKED_LIBS
                .iter()
                .all(|l| libtorch.join("lib").join(l).exists())
        {
            if let Some(torch) = torch_dir(&venv) {
                return Ok(torch);
            }
        }
    }

    check_prerequisites()?;
    if !venv.join("bin/python").exists() {
        status(Command::new("python3").args(["-m", "venv"]).arg(&venv))
            .context("creating the project venv (Debian: apt-get install python3-venv)")?;
    }
    let python = venv.join("bin/python");
    check_pip(&python)?;
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--disable-pip-version-check"]);
    let torch_req = format!("torch=={}", pins.torch);
    if cuda {
        // The whole CUDA build: 24 wheels, about 2.7 GB.
        pip.arg(&torch_req);
    } else {
        pip.args(["--no-deps", &torch_req])
            .arg(format!("nvidia-cuda-runtime=={}", pins.cuda_runtime))
            .arg(format!("nvidia-cuda-cupti=={}", pins.cuda_cupti));
    }
    status(&mut pip).context("installing torch from PyPI into .venv")?;

    let torch = torch_dir(&venv).ok_or_else(|| {
        anyhow!(
            "pip finished but {} has no torch package",
            venv.join("lib").display()
        )
    })?;
    lay_out_libtorch(&libtorch, &torch, &pins.torch)?;
    write_atomic(&stamp_path, pins.stamp(cuda).as_bytes())?;
    eprintln!(
        "xtask: setup: torch {} ready ({}); LIBTORCH={}",
        pins.torch,
        if cuda {
            "full CUDA install"
        } else {
            "minimal install"
        },
        libtorch.display()
    );
    Ok(torch)
}

/// Creates `.venv-ref`: full torch plus the pinned reference libraries.
pub fn ensure_ref_venv(root: &Path) -> Result<PathBuf> {
    let pins = Pins::read(root)?;
    let venv = ensure_pinned_venv(
        root,
        ".venv-ref",
        "xtask/requirements-ref.txt",
        &[format!("torch=={}", pins.torch)],
        "umcl-ref.stamp",
    )
    .context("installing the reference venv")?;
    eprintln!("xtask: ref-venv ready: {}/bin/python", venv.display());
    Ok(venv)
}

/// Creates `.venv-py`: the Python package's build and test tools, pinned in
/// `xtask/requirements-py.txt` (maturin, pytest, numpy), with no torch.
pub fn ensure_py_venv(root: &Path) -> Result<PathBuf> {
    ensure_pinned_venv(
        root,
        ".venv-py",
        "xtask/requirements-py.txt",
        &[],
        "umcl-py.stamp",
    )
    .context("installing the Python package's venv")
}

/// The venv `name` in `root` with `packages` and the pins of `requirements` installed by pip,
/// made or updated only when they differ from what its stamp file records.
fn ensure_pinned_venv(
    root: &Path,
    name: &str,
    requirements: &str,
    packages: &[String],
    stamp_name: &str,
) -> Result<PathBuf> {
    let venv = root.join(name);
    let requirements = root.join(requirements);
    let req_text = fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let stamp_path = venv.join(stamp_name);
    let stamp: String = packages
        .iter()
        .map(|p| format!("{p}\n"))
        .chain(std::iter::once(req_text))
        .collect();
    if fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        return Ok(venv);
    }
    check_prerequisites()?;
    if !venv.join("bin/python").exists() {
        status(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    }
    check_pip(&venv.join("bin/python"))?;
    status(
        Command::new(venv.join("bin/python"))
            .args(["-m", "pip", "install", "--disable-pip-version-check"])
            .args(packages)
            .arg("-r")
            .arg(&requirements),
    )?;
    write_atomic(&stamp_path, stamp.as_bytes())?;
    Ok(venv)
}

/// One message per missing tool, naming the Debian package that provides it.
fn check_prerequisites() -> Result<()> {
    let mut missing = Vec::new();
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works("python3", &["--version"]) {
        missing.push("python3 (Debian package: python3)");
    } else if !works("python3", &["-c", "import venv, ensurepip"]) {
        missing.push("the python venv module with ensurepip (Debian package: python3-venv)");
    }
    if !works("g++", &["--version"]) {
        missing.push("a C++ compiler, needed to build torch-sys (Debian package: g++)");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "missing prerequisites:\n  - {}\ninstall them, e.g. `sudo apt-get install python3 python3-venv python3-pip g++`, and run again",
            missing.join("\n  - ")
        )
    }
}

fn check_pip(python: &Path) -> Result<()> {
    let ok = Command::new(python)
        .args(["-m", "pip", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        bail!(
            "{} has no pip: install it (Debian packages: python3-pip python3-venv), remove the venv and run again",
            python.display()
        );
    }
    Ok(())
}

/// `<venv>/lib/python3.X/site-packages/torch`, if installed.
pub(crate) fn torch_dir(venv: &Path) -> Option<PathBuf> {
    let lib = fs::read_dir(venv.join("lib")).ok()?;
    lib.filter_map(|entry| entry.ok())
        .map(|entry| entry.path().join("site-packages/torch"))
        .find(|torch| torch.join("lib/libtorch_cpu.so").exists())
}

fn lay_out_libtorch(libtorch: &Path, torch: &Path, version: &str) -> Result<()> {
    if libtorch.exists() {
        fs::remove_dir_all(libtorch)
            .with_context(|| format!("removing the old {}", libtorch.display()))?;
    }
    let lib = libtorch.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    symlink(&torch.join("include"), &libtorch.join("include"))?;
    for name in LINKED_LIBS {
        symlink(&torch.join("lib").join(name), &lib.join(name))?;
    }
    write_atomic(&libtorch.join("build-version"), version.as_bytes())
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    if !target.exists() {
        bail!("expected {} in the torch wheel", target.display());
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} -> {}", link.display(), target.display()))
}

/// Writes through a temporary file in the same directory, then renames.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_come_from_workspace_metadata() {
        let manifest = r#"
[workspace]
members = ["xtask"]

[workspace.metadata.umcl]
torch = "2.11.0"
nvidia-cuda-runtime = "13.0.96.*"
nvidia-cuda-cupti = "13.0.85.*" # a comment

[workspace.dependencies]
torch = "not this one"
"#;
        assert_eq!(
            Pins::parse(manifest).unwrap(),
            Pins {
                torch: "2.11.0".into(),
                cuda_runtime: "13.0.96.*".into(),
                cuda_cupti: "13.0.85.*".into(),
            }
        );
        let missing = "[workspace.metadata.umcl]\ntorch = \"2.11.0\"\n";
        let err = format!("{:#}", Pins::parse(missing).unwrap_err());
        assert!(err.contains("nvidia-cuda-runtime"), "{err}");
    }

    #[test]
    fn the_workspace_has_its_pins() {
        let pins = Pins::read(&crate::workspace_root()).unwrap();
        assert!(!pins.torch.is_empty());
    }
}
