//! Build-script helper for the umcl crates that link libtorch.
//!
//! tch's `torch-sys` finds libtorch at build time (`LIBTORCH`, or `LIBTORCH_USE_PYTORCH=1`
//! to ask Python's `torch`) and links it, but leaves binaries without a run path, so every
//! binary and test would need `LD_LIBRARY_PATH`. A crate that links tch calls
//! [`link_libtorch`] from its `build.rs`:
//!
//! ```toml
//! [build-dependencies]
//! umcl-build = "0.1"
//! ```
//!
//! and its `build.rs` is `fn main() { umcl_build::link_libtorch(); }`.
//!
//! It finds libtorch the way torch-sys does ([`find_libtorch`]), adds an rpath to the real
//! `lib` folder for the crate's own binaries, tests and examples (a run path is not passed on
//! to crates that depend on this one: their binaries find libtorch through `LD_LIBRARY_PATH`,
//! as tch documents), and sets `UMCL_LIBTORCH_BUILD_VERSION` for `env!`.
//!
//! Set `UMCL_NO_RPATH=1` to build binaries for another host, which then run with
//! `LD_LIBRARY_PATH` naming that host's `torch/lib`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A libtorch install found at build time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Libtorch {
    /// The folder holding `include/` and `lib/`.
    pub root: PathBuf,
    /// The version it was built as (`2.11.0`), where known.
    pub version: Option<String>,
    /// Whether it uses the C++11 ABI (`_GLIBCXX_USE_CXX11_ABI`).
    pub cxx11_abi: bool,
}

impl Libtorch {
    /// The C++ header folders to compile against.
    pub fn include_dirs(&self) -> [PathBuf; 2] {
        let include = self.root.join("include");
        [include.join("torch/csrc/api/include"), include]
    }
}

/// Finds libtorch as torch-sys does: the folder named by `LIBTORCH`, or, with
/// `LIBTORCH_USE_PYTORCH=1`, the `torch` package of `PYTHON_SYS_EXECUTABLE` (default `python`).
/// `LIBTORCH_CXX11_ABI=0|1` overrides the ABI.
///
/// The error says which variables to set.
pub fn find_libtorch() -> Result<Libtorch, String> {
    for var in [
        "LIBTORCH",
        "LIBTORCH_USE_PYTORCH",
        "LIBTORCH_CXX11_ABI",
        "PYTHON_SYS_EXECUTABLE",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let mut found = if let Some(root) = env::var_os("LIBTORCH").filter(|v| !v.is_empty()) {
        from_dir(PathBuf::from(root))?
    } else if env::var("LIBTORCH_USE_PYTORCH").is_ok_and(|v| !v.is_empty() && v != "0") {
        from_python()?
    } else {
        return Err(NOT_FOUND.to_owned());
    };
    if let Ok(abi) = env::var("LIBTORCH_CXX11_ABI") {
        found.cxx11_abi = abi != "0";
    }
    Ok(found)
}

const NOT_FOUND: &str = "libtorch not found: set LIBTORCH to a libtorch folder (one holding \
include/ and lib/, such as the `torch` folder of a PyTorch install), or set \
LIBTORCH_USE_PYTORCH=1 to use the torch package of `python` (or of PYTHON_SYS_EXECUTABLE). \
Inside the umcl workspace, `cargo xtask setup` installs it and .cargo/config.toml sets LIBTORCH.";

fn from_dir(root: PathBuf) -> Result<Libtorch, String> {
    if !root.join("include").is_dir() {
        return Err(format!(
            "LIBTORCH={} has no include/ folder; it must name a libtorch folder (holding \
             include/ and lib/)",
            root.display()
        ));
    }
    // `cargo xtask setup` writes the version beside its libtorch; a PyTorch install has
    // `version.py`; a libtorch zip has `build-version`.
    let version_file = root.join("build-version");
    println!("cargo:rerun-if-changed={}", version_file.display());
    let version = fs::read_to_string(&version_file)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty());
    Ok(Libtorch {
        root,
        version,
        // PyPI wheels of torch 2.x and libtorch cxx11 zips: the C++11 ABI.
        cxx11_abi: true,
    })
}

fn from_python() -> Result<Libtorch, String> {
    let python = env::var("PYTHON_SYS_EXECUTABLE").unwrap_or_else(|_| "python".to_owned());
    let script = "import os, torch; print(os.path.dirname(torch.__file__)); \
                  print(torch.__version__.split('+')[0]); \
                  print(int(torch._C._GLIBCXX_USE_CXX11_ABI))";
    let out = Command::new(&python)
        .args(["-c", script])
        .output()
        .map_err(|e| format!("LIBTORCH_USE_PYTORCH is set but `{python}` could not run: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "LIBTORCH_USE_PYTORCH is set but `{python}` could not import torch: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines().map(str::trim);
    let (Some(dir), Some(version), Some(abi)) = (lines.next(), lines.next(), lines.next()) else {
        return Err(format!("`{python}` printed no torch location: {text:?}"));
    };
    let mut found = from_dir(PathBuf::from(dir))?;
    found.version = Some(version.to_owned());
    found.cxx11_abi = abi != "0";
    Ok(found)
}

/// The whole build-script job of a crate that links tch: finds libtorch, sets
/// `UMCL_LIBTORCH_BUILD_VERSION`, and adds an rpath to libtorch's real `lib` folder unless
/// `UMCL_NO_RPATH=1`. Returns what it found.
///
/// Where neither variable is set it warns and returns `None`: torch-sys, which runs first,
/// has then found libtorch some other way (a system install) or already failed the build
/// with its own message.
pub fn link_libtorch() -> Option<Libtorch> {
    let libtorch = match find_libtorch() {
        Ok(found) => found,
        Err(message) => {
            println!("cargo:warning={message}");
            println!("cargo:rustc-env=UMCL_LIBTORCH_BUILD_VERSION=unknown");
            return None;
        }
    };
    println!(
        "cargo:rustc-env=UMCL_LIBTORCH_BUILD_VERSION={}",
        libtorch.version.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rerun-if-env-changed=UMCL_NO_RPATH");
    let no_rpath = env::var("UMCL_NO_RPATH").is_ok_and(|v| !v.is_empty() && v != "0");
    if !no_rpath {
        add_rpath(&libtorch.root.join("lib").join("libtorch_cpu.so"));
    }
    Some(libtorch)
}

/// It must be the real folder, not a link to it: libtorch_cpu finds libcudart through its
/// own `$ORIGIN/../../nvidia/...` run path, which is relative to where it really lies.
fn add_rpath(cpu: &Path) {
    println!("cargo:rerun-if-changed={}", cpu.display());
    match fs::canonicalize(cpu) {
        Ok(real) => {
            if let Some(dir) = real.parent() {
                println!(
                    "cargo:rustc-link-arg=-Wl,--enable-new-dtags,-rpath,{}",
                    dir.display()
                );
            }
        }
        Err(err) => println!(
            "cargo:warning=no rpath to libtorch ({}: {err}); binaries need LD_LIBRARY_PATH",
            cpu.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_headers_is_refused_with_its_name() {
        let dir = env::temp_dir().join(format!("umcl-build-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let err = from_dir(dir.clone()).unwrap_err();
        assert!(err.contains(&dir.display().to_string()), "{err}");
        assert!(err.contains("include/"), "{err}");
        fs::create_dir_all(dir.join("include")).unwrap();
        fs::write(dir.join("build-version"), "2.11.0\n").unwrap();
        let found = from_dir(dir.clone()).unwrap();
        assert_eq!(found.version.as_deref(), Some("2.11.0"));
        assert_eq!(found.include_dirs()[1], dir.join("include"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
