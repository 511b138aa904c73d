//! Checkpoints: everything a run needs to continue exactly where it stopped.
//!
//! A checkpoint is a directory `checkpoints/step-NNNNNNNN/` in the run directory holding
//! - `model.safetensors` + `model.json`: the dual encoder and its config,
//! - `optimizer.safetensors`: AdamW's moments and step,
//! - `state.json`: the step, the data position, the best validation result so far and the
//!   run's resolved config.
//!
//! The directory is written under a temporary name and renamed into place, so a run killed at
//! any moment leaves either a whole checkpoint or none. Random state needs no saving: dropout
//! is reseeded from `(seed, step)` at every step and the data order and augmentation are
//! functions of `(seed, epoch, sample)`. The last `keep_last` checkpoints are kept, and a copy
//! of the best one as `checkpoints/best/`.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::Tensor;
use umcl_models::dual::DualEncoder;

use crate::error::TrainError;
use crate::optim::AdamW;

/// The non-tensor part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// The epoch the next batch comes from.
    pub epoch: u64,
    /// The index of the next batch within that epoch.
    pub batch_in_epoch: u64,
    /// Samples consumed so far.
    pub samples_seen: u64,
    /// The best validation result so far: (metric value, step).
    pub best: Option<(f64, u64)>,
    /// The resolved run configuration (TOML).
    pub config: String,
}

/// The checkpoints of one run directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
    keep_last: usize,
}

const STEP_PREFIX: &str = "step-";

impl Checkpoints {
    /// Checkpoints under `run_dir/checkpoints`, keeping the last `keep_last` (at least 1).
    pub fn new(run_dir: &Path, keep_last: usize) -> Self {
        Self {
            dir: run_dir.join("checkpoints"),
            keep_last: keep_last.max(1),
        }
    }

    /// The checkpoints directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes a checkpoint for `state.step` and prunes old ones; returns its directory.
    pub fn save(
        &self,
        model: &DualEncoder,
        optimizer: &AdamW,
        state: &TrainState,
    ) -> Result<PathBuf, TrainError> {
        fs::create_dir_all(&self.dir).map_err(|e| TrainError::io(&self.dir, e))?;
        let name = format!("{STEP_PREFIX}{:08}", state.step);
        let tmp = self.dir.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        }
        fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        model.save(&tmp.join("model.safetensors"))?;
        let opt_state: Vec<(String, Tensor)> = optimizer
            .state()
            .into_iter()
            .map(|(n, t)| (n, t.to_device(tch::Device::Cpu).contiguous()))
            .collect();
        let opt_path = tmp.join("optimizer.safetensors");
        Tensor::write_safetensors(&opt_state, &opt_path)
            .map_err(|e| TrainError::io(&opt_path, e))?;
        let json = serde_json::to_string_pretty(state)
            .map_err(|e| TrainError::io(tmp.join("state.json"), e))?;
        fs::write(tmp.join("state.json"), json).map_err(|e| TrainError::io(&tmp, e))?;
        let target = self.dir.join(&name);
        if target.exists() {
            fs::remove_dir_all(&target).map_err(|e| TrainError::io(&target, e))?;
        }
        fs::rename(&tmp, &target).map_err(|e| TrainError::io(&target, e))?;
        self.prune()?;
        Ok(target)
    }

    /// Copies the checkpoint at `path` to `checkpoints/best`, replacing the previous best.
    pub fn mark_best(&self, path: &Path) -> Result<PathBuf, TrainError> {
        let best = self.dir.join("best");
        let tmp = self.dir.join(format!(".tmp-best-{}", std::process::id()));
        let old = self.dir.join(format!(".old-best-{}", std::process::id()));
        for stale in [&tmp, &old] {
            if stale.exists() {
                fs::remove_dir_all(stale).map_err(|e| TrainError::io(stale, e))?;
            }
        }
        fs::create_dir_all(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
        for entry in fs::read_dir(path).map_err(|e| TrainError::io(path, e))? {
            let entry = entry.map_err(|e| TrainError::io(path, e))?;
            let to = tmp.join(entry.file_name());
            fs::copy(entry.path(), &to).map_err(|e| TrainError::io(&to, e))?;
        }
        if best.exists() {
            fs::rename(&best, &old).map_err(|e| TrainError::io(&best, e))?;
        }
        fs::rename(&tmp, &best).map_err(|e| TrainError::io(&best, e))?;
        if old.exists() {
            fs::remove_dir_all(&old).map_err(|e| TrainError::io(&old, e))?;
        }
        Ok(best)
    }

    /// The step checkpoints present, oldest first.
    pub fn list(&self) -> Vec<(u64, PathBuf)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(u64, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let step = name.strip_prefix(STEP_PREFIX)?.parse().ok()?;
                e.path()
                    .join("state.json")
                    .exists()
                    .then(|| (step, e.path()))
            })
            .collect();
        found.sort();
        found
    }

    /// The newest complete checkpoint.
    pub fn latest(&self) -> Option<PathBuf> {
        self.list().pop().map(|(_, p)| p)
    }

    fn prune(&self) -> Result<(), TrainError> {
        let all = self.list();
        let excess = all.len().saturating_sub(self.keep_last);
        for (_, path) in all.into_iter().take(excess) {
            fs::remove_dir_all(&path).map_err(|e| TrainError::io(&path, e))?;
        }
        Ok(())
    }
}

/// Reads `state.json` of a checkpoint directory.
pub fn read_state(path: &Path) -> Result<TrainState, TrainError> {
    let file = path.join("state.json");
    let text = fs::read_to_string(&file).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("cannot read state.json: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("state.json: {e}"),
    })
}

/// Loads a checkpoint's model weights and optimizer state into `model` and `optimizer`
/// (which must have been built from the same config) and returns its state.
pub fn restore(
    path: &Path,
    model: &DualEncoder,
    optimizer: &mut AdamW,
) -> Result<TrainState, TrainError> {
    let state = read_state(path)?;
    umcl_models::import::import_safetensors(
        &model.vs,
        &path.join("model.safetensors"),
        &umcl_models::import::identity_keys,
        false,
    )?;
    let opt_path = path.join("optimizer.safetensors");
    let tensors = Tensor::read_safetensors(&opt_path).map_err(|e| TrainError::io(&opt_path, e))?;
    let device = model.vs.device();
    optimizer
        .load_state(
            tensors
                .into_iter()
                .map(|(n, t)| (n, t.to_device(device)))
                .collect(),
        )
        .map_err(|message| TrainError::Checkpoint {
            path: path.to_path_buf(),
            message,
        })?;
    Ok(state)
}
