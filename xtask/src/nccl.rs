//! `cargo xtask nccl`: builds `target/nccl/libumcl_nccl.so`, the optional library that gives
//! umcl an NCCL process group (`crates/umcl-torch-ext/nccl/umcl_nccl.cpp`).
//!
//! It is compiled here, on a machine without CUDA, against:
//! - torch's own headers (`.libtorch/include`, the version tch links);
//! - the CUDA, cuBLAS, cuSPARSE, cuSOLVER and NCCL headers of the reference venv's full torch
//!   install (`.venv-ref`, made by `cargo xtask ref-venv` if missing: `ProcessGroupNCCL.hpp`
//!   includes `ATen/cuda/CUDAContext.h` and `nccl.h`);
//! - two small header-only wheels that no torch install carries, `nvidia-cuda-crt` and
//!   `nvidia-cuda-cccl` (`crt/host_config.h`, `nv/target`), into `.cache/cuda-headers`.
//!
//! The library records `libtorch_cuda.so` and friends as needed libraries without a run path:
//! at run time they are the ones the process has already loaded, or those on
//! `LD_LIBRARY_PATH` (the GPU host's torch/lib).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// Header-only wheels (CUDA 13.0, the toolkit torch 2.11's cu130 build uses).
const HEADER_WHEELS: [&str; 2] = ["nvidia-cuda-crt==13.0.88", "nvidia-cuda-cccl==13.0.85"];

/// Builds the library (when a source or header is newer than it) and returns its path.
pub(crate) fn build(root: &Path) -> Result<PathBuf> {
    let source = root.join("crates/umcl-torch-ext/nccl/umcl_nccl.cpp");
    let bridge = root.join("crates/umcl-torch-ext/csrc");
    let out = root.join("target/nccl/libumcl_nccl.so");
    let inputs = [
        source.clone(),
        bridge.join("bridge.h"),
        bridge.join("c10d_handles.h"),
    ];
    if is_fresh(&out, &inputs) {
        eprintln!("xtask: nccl: {} is up to date", out.display());
        return Ok(out);
    }
    crate::setup::ensure(root, false)?;
    let venv = crate::setup::ensure_ref_venv(root)?;
    let torch = crate::setup::torch_dir(&venv)
        .with_context(|| format!("no torch installed in {}", venv.display()))?;
    let site = torch.parent().context("site-packages")?.to_path_buf();
    let headers = header_wheels(root)?;
    let torch_include = root.join(".libtorch/include");
    let torch_lib = site.join("torch/lib");
    for needed in [
        site.join("nvidia/nccl/include/nccl.h"),
        site.join("nvidia/cu13/include/cublas_v2.h"),
        torch_lib.join("libtorch_cuda.so"),
    ] {
        if !needed.exists() {
            bail!(
                "{} is missing: the reference venv should hold torch's full CUDA install",
                needed.display()
            );
        }
    }
    std::fs::create_dir_all(out.parent().context("target/nccl")?)?;
    let tmp = out.with_extension("so.tmp");
    let mut cmd = Command::new(std::env::var("CXX").unwrap_or_else(|_| "g++".into()));
    cmd.args(["-shared", "-fPIC", "-O2", "-std=c++17"])
        .args(["-D_GLIBCXX_USE_CXX11_ABI=1", "-DGLOG_USE_GLOG_EXPORT"])
        .args(["-Wno-unused-parameter", "-Wno-interference-size"])
        .arg(format!("-I{}", torch_include.display()))
        .arg(format!(
            "-I{}",
            torch_include.join("torch/csrc/api/include").display()
        ))
        .arg(format!("-I{}", bridge.display()))
        .arg(format!("-I{}", site.join("nvidia/cu13/include").display()))
        .arg(format!("-I{}", headers.display()))
        .arg(format!("-I{}", site.join("nvidia/nccl/include").display()))
        .arg("-o")
        .arg(&tmp)
        .arg(&source)
        .arg(format!("-L{}", torch_lib.display()))
        .args(["-Wl,--no-as-needed", "-ltorch_cuda", "-lc10_cuda"])
        .args(["-ltorch_cpu", "-lc10"]);
    crate::status(&mut cmd).context("compiling the NCCL library")?;
    std::fs::rename(&tmp, &out)
        .with_context(|| format!("moving {} to {}", tmp.display(), out.display()))?;
    eprintln!("xtask: nccl: built {}", out.display());
    Ok(out)
}

/// `out` exists and is newer than every input.
fn is_fresh(out: &Path, inputs: &[PathBuf]) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let Some(built) = modified(out) else {
        return false;
    };
    inputs
        .iter()
        .all(|i| modified(i).is_some_and(|t| t <= built))
}

/// The include folder of the header-only wheels, installed on first use.
fn header_wheels(root: &Path) -> Result<PathBuf> {
    let target = root.join(".cache/cuda-headers");
    let include = target.join("nvidia/cu13/include");
    let stamp = target.join("umcl.stamp");
    let want = HEADER_WHEELS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) && include.is_dir() {
        return Ok(include);
    }
    if target.exists() {
        std::fs::remove_dir_all(&target)
            .with_context(|| format!("removing {}", target.display()))?;
    }
    let python = root.join(".venv/bin/python");
    crate::status(
        Command::new(&python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-q"])
            .args(["--no-deps", "--target"])
            .arg(&target)
            .args(HEADER_WHEELS),
    )
    .context("installing the CUDA header wheels")?;
    std::fs::write(&stamp, want)?;
    Ok(include)
}
