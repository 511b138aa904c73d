//! `cargo xtask train`: the main job on the built-in phantom data, one run or a spread over
//! seeds of the Image-Text-Label loss and the CLIP ablation.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::{cargo, parse_flag_value, setup, status, weights};

/// One finished training run.
struct Run {
    name: String,
    method: &'static str,
    seed: Option<u64>,
    /// Zero-shot accuracy on phantom 5x200 with learned and with hand-written prompts.
    learned: Option<f64>,
    handwritten: Option<f64>,
    seconds: f64,
}

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let (flags, extra) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[..i], &args[i + 1..]),
        None => (args, &[][..]),
    };
    let (seeds, flags) = parse_flag_value(flags, "--seeds")?;
    let seeds: Option<u64> = seeds
        .map(|v| match v.parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => bail!("--seeds takes a count of at least 1, got `{v}`"),
        })
        .transpose()?;
    let ablation = crate::parse_flags(&flags, &["--ablation"])?.contains(&"--ablation");
    setup::ensure(root, false)?;
    weights::MINILM.ensure(root)?; // its tokenizer.json is the default config's tokenizer
    status(cargo(root).args(["build", "--release", "--package", "umcl"]))?;
    let umcl = root.join("target/release/umcl");
    let phantom = root.join("data/phantom");
    if !phantom.join("manifest.jsonl").exists() || !phantom.join("eval-5x200.jsonl").exists() {
        status(
            Command::new(&umcl)
                .current_dir(root)
                .args(["data", "phantom", "--out", "data/phantom", "--n", "4000"])
                .args(["--size", "96", "--seed", "0"]),
        )?;
    }
    let base = next_run_name(root, "phantom-cpu");
    let mut plan: Vec<(String, &'static str, Option<u64>, Vec<String>)> = Vec::new();
    let itl = "Image-Text-Label loss + learned prompts";
    let clip = "CLIP loss (ablation)";
    let clip_set = || vec!["--set".to_string(), "loss.kind=clip".to_string()];
    match seeds {
        None => {
            plan.push((base.clone(), itl, None, vec![]));
            if ablation {
                plan.push((format!("{base}-clip"), clip, None, clip_set()));
            }
        }
        Some(n) => {
            for seed in 0..n {
                let seed_set = vec!["--set".to_string(), format!("run.seed={seed}")];
                plan.push((format!("{base}-s{seed}"), itl, Some(seed), seed_set.clone()));
                let mut sets = seed_set;
                sets.extend(clip_set());
                plan.push((format!("{base}-clip-s{seed}"), clip, Some(seed), sets));
            }
        }
    }
    let mut runs = Vec::new();
    for (name, method, seed, sets) in plan {
        let started = std::time::Instant::now();
        let since = SystemTime::now();
        let train = || {
            let mut cmd = Command::new(&umcl);
            cmd.current_dir(root)
                .args(["train", "--preset", "phantom-cpu", "--set"])
                .arg(format!("run.name={name}"))
                .args(&sets)
                .args(extra);
            cmd
        };
        let run_dir = run_dir(root, train())?;
        let mut cmd = train();
        if seeds.is_some() {
            cmd.arg("--quiet");
        }
        eprintln!("xtask: $ {cmd:?}");
        let out = cmd
            .stderr(Stdio::inherit())
            .output()
            .context("could not start umcl train")?;
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            bail!("umcl train failed ({})", out.status);
        }
        let (learned, handwritten) = zero_shot(&run_dir.join("results.json"), since)?;
        runs.push(Run {
            name,
            method,
            seed,
            learned,
            handwritten,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    println!("\nphantom 5x200 zero-shot accuracy (SYNTHETIC data):");
    let table = run_table(&runs);
    print!("{table}");
    if seeds.is_some() {
        let spread = spread_table(&runs);
        print!("\n{spread}");
        let path = root.join("runs").join(format!("{base}-seeds.md"));
        let text = format!(
            "# `cargo xtask train --seeds {}`\n\n{table}\n{spread}",
            seeds.unwrap_or(0)
        );
        setup::write_atomic(&path, text.as_bytes())?;
        println!("\nwritten to {}", path.display());
    }
    Ok(())
}

/// The run directory a `umcl train` command will write: `<run.out_dir>/<run.name>` of the
/// configuration it resolves (preset, `--set` overrides and the user's arguments), read back
/// with `--print-config`.
fn run_dir(root: &Path, mut train: Command) -> Result<PathBuf> {
    let out = train
        .arg("--print-config")
        .stderr(Stdio::inherit())
        .output()
        .context("could not start umcl train --print-config")?;
    if !out.status.success() {
        bail!("umcl train --print-config failed ({})", out.status);
    }
    let text = String::from_utf8(out.stdout)
        .context("umcl train --print-config printed something that is not UTF-8")?;
    let dir = run_dir_of_config(&text).context("reading `umcl train --print-config`")?;
    Ok(root.join(dir))
}

/// `<run.out_dir>/<run.name>` of a training configuration in TOML.
fn run_dir_of_config(toml_text: &str) -> Result<PathBuf> {
    #[derive(Deserialize)]
    struct Config {
        run: RunSection,
    }
    #[derive(Deserialize)]
    struct RunSection {
        name: String,
        out_dir: PathBuf,
    }
    let config: Config = toml::from_str(toml_text).context("parsing the configuration")?;
    Ok(config.run.out_dir.join(config.run.name))
}

/// The part of a run's `results.json` (umcl-train's `RunSummary`) we read.
#[derive(Deserialize)]
struct RunResults {
    /// The final zero-shot evaluation, when the run had one.
    zero_shot: Option<ZeroShot>,
}

#[derive(Deserialize)]
struct ZeroShot {
    learned: Option<Accuracy>,
    handwritten: Accuracy,
}

#[derive(Deserialize)]
struct Accuracy {
    accuracy: f64,
}

/// The zero-shot accuracies with learned and with hand-written prompts from a run's
/// `results.json`, which must have been written after `since` (by this run, not an older
/// one); `(None, None)` when the run had no zero-shot evaluation.
fn zero_shot(path: &Path, since: SystemTime) -> Result<(Option<f64>, Option<f64>)> {
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("umcl train finished but left no {}", path.display()))?;
    if modified < since {
        bail!(
            "{} is older than this run: umcl train did not write it",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    zero_shot_of_results(&text).with_context(|| format!("parsing {}", path.display()))
}

fn zero_shot_of_results(json: &str) -> Result<(Option<f64>, Option<f64>)> {
    let results: RunResults = serde_json::from_str(json)?;
    Ok(match results.zero_shot {
        Some(z) => (z.learned.map(|a| a.accuracy), Some(z.handwritten.accuracy)),
        None => (None, None),
    })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

fn run_table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| run | method | seed | learned prompts | hand-written prompts | wall time |\n\
         |---|---|---|---|---|---|\n",
    );
    for r in runs {
        out.push_str(&format!(
            "| runs/{} | {} | {} | {} | {} | {:.0} s |\n",
            r.name,
            r.method,
            r.seed.map_or_else(|| "-".to_string(), |s| s.to_string()),
            fmt(r.learned),
            fmt(r.handwritten),
            r.seconds
        ));
    }
    out
}

/// Mean, sample standard deviation, min and max.
pub(crate) fn stats(values: &[f64]) -> Option<[f64; 4]> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 {
        (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some([mean, sd, min, max])
}

fn spread_table(runs: &[Run]) -> String {
    let mut out = String::from(
        "| method | prompts | seeds | mean | sd | min | max |\n|---|---|---|---|---|---|---|\n",
    );
    let methods: Vec<&str> = runs.iter().fold(Vec::new(), |mut m, r| {
        if !m.contains(&r.method) {
            m.push(r.method);
        }
        m
    });
    let mut means = Vec::new();
    for method in &methods {
        for (prompts, pick) in [
            ("learned", (|r: &Run| r.learned) as fn(&Run) -> Option<f64>),
            ("hand-written", |r: &Run| r.handwritten),
        ] {
            let values: Vec<f64> = runs
                .iter()
                .filter(|r| r.method == *method)
                .filter_map(pick)
                .collect();
            if let Some([mean, sd, min, max]) = stats(&values) {
                out.push_str(&format!(
                    "| {method} | {prompts} | {} | {mean:.3} | {sd:.3} | {min:.3} | {max:.3} |\n",
                    values.len()
                ));
                if prompts == "learned" {
                    means.push((*method, mean, min));
                }
            }
        }
    }
    if let [(a, mean_a, min_a), (b, mean_b, min_b)] = means.as_slice() {
        out.push_str(&format!(
            "\nlearned prompts, {a} minus {b}: mean {:+.3}, min {:+.3}\n",
            mean_a - mean_b,
            min_a - min_b
        ));
    }
    out
}

/// `runs/<base>` if free, else `runs/<base>-2`, `-3`, ...
fn next_run_name(root: &Path, base: &str) -> String {
    let runs = root.join("runs");
    let taken = |n: &str| {
        runs.join(n).exists()
            || std::fs::read_dir(&runs).is_ok_and(|mut d| {
                d.any(|e| {
                    e.is_ok_and(|e| {
                        e.file_name()
                            .to_str()
                            .is_some_and(|f| f.starts_with(&format!("{n}-s")))
                    })
                })
            })
    };
    if !taken(base) {
        return base.to_string();
    }
    (2..)
        .map(|i| format!("{base}-{i}"))
        .find(|n| !taken(n))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_accuracies_from_results_json() {
        // Trimmed from a real run's results.json (the fields RunSummary writes).
        let both = r#"{
            "run_dir": "runs/phantom-cpu",
            "steps": 1000,
            "final_loss": 1.23,
            "best": [0.97, 900],
            "zero_shot": {
                "manifest": "data/phantom/eval-5x200.jsonl",
                "samples": 1000,
                "left_out": 0,
                "classes": ["a", "b"],
                "learned": {"accuracy": 0.993, "macro_f1": 0.99, "ci": null},
                "handwritten": {"accuracy": 0.981, "macro_f1": 0.98, "ci": null},
                "multilabel": null
            },
            "samples_per_second": 50.0,
            "data_wait_share": 0.01
        }"#;
        assert_eq!(
            zero_shot_of_results(both).unwrap(),
            (Some(0.993), Some(0.981))
        );
        let only = r#"{"zero_shot": {"learned": null, "handwritten": {"accuracy": 0.5}}}"#;
        assert_eq!(zero_shot_of_results(only).unwrap(), (None, Some(0.5)));
        let none = r#"{"steps": 10, "zero_shot": null}"#;
        assert_eq!(zero_shot_of_results(none).unwrap(), (None, None));
        assert!(zero_shot_of_results(r#"{"zero_shot": {"learned": null}}"#).is_err());
        assert!(zero_shot_of_results("steps: 500").is_err());
    }

    #[test]
    fn results_json_must_exist_and_be_new() {
        let dir = std::env::temp_dir().join(format!("xtask-train-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("results.json");
        let missing = zero_shot(&path, SystemTime::now()).unwrap_err();
        assert!(
            format!("{missing:#}").contains("results.json"),
            "{missing:#}"
        );
        std::fs::write(&path, r#"{"zero_shot": null}"#).unwrap();
        assert_eq!(
            zero_shot(&path, SystemTime::UNIX_EPOCH).unwrap(),
            (None, None)
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(3600);
        let stale = zero_shot(&path, later).unwrap_err();
        assert!(format!("{stale:#}").contains("older"), "{stale:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_dir_is_out_dir_and_name() {
        let config = "[run]\nname = \"phantom-cpu-s1\"\nout_dir = \"runs\"\nseed = 1\n\n\
                      [data]\nbatch_size = 32\n";
        assert_eq!(
            run_dir_of_config(config).unwrap(),
            Path::new("runs/phantom-cpu-s1")
        );
        assert!(run_dir_of_config("[data]\nbatch_size = 32\n").is_err());
    }

    #[test]
    fn spread_is_mean_sample_sd_min_max() {
        let [mean, sd, min, max] = stats(&[0.9, 1.0, 0.8]).unwrap();
        assert!((mean - 0.9).abs() < 1e-12);
        assert!((sd - 0.1).abs() < 1e-12);
        assert_eq!((min, max), (0.8, 1.0));
        assert_eq!(stats(&[]), None);
    }
}
