//! Build script shared by every crate that links tch (named by `build = "../torch-build.rs"`).
//!
//! torch-sys links libtorch but gives binaries no run path, so without help every binary and
//! test would need `LD_LIBRARY_PATH`. This script adds an rpath to the real `torch/lib` of the
//! project venv (found through `$LIBTORCH/lib/libtorch_cpu.so`, a link laid by `cargo xtask
//! setup`). It must be the real directory: libtorch_cpu finds libcudart through its own
//! `$ORIGIN/../../nvidia/...` run path.
//!
//! Set `UMCL_NO_RPATH=1` to build binaries for a GPU host, which then run with
//! `LD_LIBRARY_PATH` naming that host's own `torch/lib`.
//!
//! It also records the libtorch version built against as `UMCL_LIBTORCH_BUILD_VERSION`.

use std::env;
use std::fs;
use std::path::PathBuf;

pub fn main() {
    println!("cargo:rerun-if-env-changed=UMCL_NO_RPATH");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        println!("cargo:rustc-env=UMCL_LIBTORCH_BUILD_VERSION=unknown");
        return;
    };
    let version_file = libtorch.join("build-version");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = fs::read_to_string(&version_file).unwrap_or_else(|_| "unknown".into());
    println!(
        "cargo:rustc-env=UMCL_LIBTORCH_BUILD_VERSION={}",
        version.trim()
    );

    let no_rpath = env::var("UMCL_NO_RPATH").is_ok_and(|v| !v.is_empty() && v != "0");
    if no_rpath {
        return;
    }
    let cpu = libtorch.join("lib").join("libtorch_cpu.so");
    println!("cargo:rerun-if-changed={}", cpu.display());
    match fs::canonicalize(&cpu) {
        Ok(real) => {
            if let Some(dir) = real.parent() {
                println!(
                    "cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{}",
                    dir.display()
                );
            }
        }
        Err(err) => println!(
            "cargo:warning=no rpath to libtorch ({}: {err}); run `cargo xtask setup`",
            cpu.display()
        ),
    }
}
