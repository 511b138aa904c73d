//! What a finished run leaves for people: `results.json`, `summary.md` and PNG plots of the
//! loss, the learning rate and the validation metric, all in the run directory.

use std::path::Path;

use umcl_fs::write_atomic;

use crate::config::TrainConfig;
use crate::error::TrainError;
use crate::trainer::RunSummary;

/// Curves read back from `metrics.jsonl`.
#[derive(Debug, Default, Clone)]
pub struct Curves {
    /// (step, loss)
    pub loss: Vec<(f64, f64)>,
    /// (step, learning rate)
    pub lr: Vec<(f64, f64)>,
    /// (step, validation mean AUC)
    pub val_auc: Vec<(f64, f64)>,
}

/// Reads the step and eval records of a run's `metrics.jsonl`.
pub fn read_curves(path: &Path) -> Result<Curves, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    let mut curves = Curves::default();
    for (i, line) in text.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            message: format!("line {}: {e}", i + 1),
        })?;
        let num = |key: &str| v.get(key).and_then(serde_json::Value::as_f64);
        let Some(step) = num("step") else { continue };
        match v.get("kind").and_then(|k| k.as_str()) {
            Some("step") => {
                if let Some(l) = num("loss") {
                    curves.loss.push((step, l));
                }
                if let Some(lr) = num("lr") {
                    curves.lr.push((step, lr));
                }
            }
            Some("eval") => {
                if let Some(a) = num("val_mean_auc") {
                    curves.val_auc.push((step, a));
                }
            }
            _ => {}
        }
    }
    Ok(curves)
}

/// Writes `results.json`, `summary.md`, `loss.png`, `lr.png` and `val_auc.png`.
pub fn write_run_report(
    run_dir: &Path,
    cfg: &TrainConfig,
    summary: &RunSummary,
) -> Result<(), TrainError> {
    let json = serde_json::to_string_pretty(summary)
        .map_err(|e| TrainError::io(run_dir.join("results.json"), e))?;
    write_atomic(&run_dir.join("results.json"), json.as_bytes())?;

    let curves = read_curves(&run_dir.join("metrics.jsonl"))?;
    let plot_err = |e: crate::plots::PlotError| TrainError::Eval(format!("plot: {e}"));
    if !curves.loss.is_empty() {
        crate::plots::plot_curves(
            &run_dir.join("loss.png"),
            "training loss",
            &[("loss", curves.loss.clone())],
            "step",
            "loss",
        )
        .map_err(plot_err)?;
        crate::plots::plot_curves(
            &run_dir.join("lr.png"),
            "learning rate",
            &[("lr", curves.lr.clone())],
            "step",
            "learning rate",
        )
        .map_err(plot_err)?;
    }
    if !curves.val_auc.is_empty() {
        crate::plots::plot_curves(
            &run_dir.join("val_auc.png"),
            "validation mean AUC (zero-shot)",
            &[("mean AUC", curves.val_auc.clone())],
            "step",
            "mean AUC",
        )
        .map_err(plot_err)?;
    }

    let mut md = format!(
        "# Run `{}`\n\nLoss `{}`{}, image encoder `{}`, {} steps of batch {}.\n\n",
        cfg.run.name,
        cfg.loss.kind,
        if cfg.loss.kind == crate::config::LossKind::Itl {
            format!(" ({})", cfg.loss.target)
        } else {
            String::new()
        },
        cfg.model.image,
        summary.steps,
        cfg.data.batch_size
    );
    md.push_str(&format!(
        "| | |\n|---|---|\n| final loss | {:.4} |\n| best validation mean AUC | {} |\n| samples/s | {:.1} |\n| data-wait share | {:.1}% |\n\n",
        summary.final_loss,
        summary
            .best
            .map_or("n/a".into(), |(v, s)| format!("{v:.4} (step {s})")),
        summary.samples_per_second,
        100.0 * summary.data_wait_share
    ));
    if summary.skipped_samples + summary.skipped_validation > 0 {
        md.push_str(&format!(
            "**Skipped samples** (`data.skip_bad`, unreadable images, listed in `skipped.txt`): \
             {} in training (every epoch counted), {} in validation.\n\n",
            summary.skipped_samples, summary.skipped_validation
        ));
    }
    if let Some(z) = &summary.zero_shot {
        md.push_str("## Zero-shot\n\n");
        md.push_str(&z.to_markdown());
        md.push('\n');
    }
    md.push_str(
        "\nPlots: `loss.png`, `lr.png`, `val_auc.png`. Metrics per step: `metrics.jsonl`.\n",
    );
    Ok(write_atomic(&run_dir.join("summary.md"), md.as_bytes())?)
}
