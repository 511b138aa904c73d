//! `cargo xtask covid [--quick]`: the real-data benchmark on the COVID-19 image data collection
//! (`../shared/data/covid-cxr-512`), by patient-level stratified cross-validation.
//!
//! Per fold (5 folds, stratified by the collection's `finding`; 10% of the other folds'
//! patients validate), three arms start from the same ImageNet EfficientNet-Lite0 and the same
//! frozen MiniLM text encoder (the `covid-cxr` preset):
//! - `imagenet`: no image-text training (`umcl train --init-only`): the baseline;
//! - `umcl`: the preset as it is: the Image-Text-Label loss (soft targets) with learned prompts,
//!   `steps` steps;
//! - `clip`: CLIP's loss, no prompts, the same steps.
//!
//! `--arms a,b,...` picks among these and three Image-Text-Label target kinds, each set
//! explicitly, which is how the preset's target was chosen: `umcl-multi` (multi-positive
//! targets), `umcl-fnm` (CLIP's identity target with false-negative masking: pairs with the
//! same labels are no negatives) and `umcl-soft` (soft targets from label similarity), all with
//! learned prompts.
//!
//! Each arm is scored on the fold's test patients: a linear probe on the frozen pooled image
//! features (fitted on the fold's other patients) for COVID-19 vs other findings and for
//! pneumonia vs no finding (ROC AUC); zero-shot ROC AUC of the same two tasks (hand-written
//! prompts, `data/tasks/*.toml`); image-to-text and text-to-image R@10 on the notes, with the
//! pairs per fold (chance R@10 is 10 / pairs). The text, in training and in retrieval, is the
//! imaging part of each clinical note (`umcl data prepare --notes imaging`: the sentences the
//! labeler reads as radiological), up to the preset's 128 tokens. Intervals inside `umcl eval`
//! resample patients. The table gives mean, sd and min over the folds.
//!
//! `--steps N` sets the steps of the trained arms (default 100, about 7 epochs). On the 2-core
//! box, after the release build, three arms took 39.3 minutes (on the whole notes) and five
//! arms, four of them trained, 70.1 minutes (on their imaging part). `--quick`: folds 0 and 1
//! of the 5, 20 steps: a smoke run of the whole pipeline (5.5 minutes), not a result.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{cargo, setup, status, weights};

/// The arms `--arms` may name, with what each sets on top of the `covid-cxr` preset.
const ARMS: [(&str, &[&str]); 6] = [
    ("imagenet", &[]),
    ("umcl", &[]),
    (
        "clip",
        &[
            "loss.kind=clip",
            "loss.prompt_weight=0",
            "model.prompt_ctx=0",
        ],
    ),
    (
        "umcl-multi",
        &[
            "loss.target=multi-positive",
            "loss.false_negative_threshold=0.0",
        ],
    ),
    (
        "umcl-fnm",
        &["loss.target=identity", "loss.false_negative_threshold=1.0"],
    ),
    (
        "umcl-soft",
        &["loss.target=soft", "loss.false_negative_threshold=0.0"],
    ),
];

/// One metric of one arm on one fold.
struct Score {
    arm: &'static str,
    fold: usize,
    metric: &'static str,
    value: Option<f64>,
}

const METRICS: [&str; 6] = [
    "probe AUC, COVID-19 vs other",
    "probe AUC, pneumonia vs no finding",
    "zero-shot AUC, COVID-19 vs other",
    "zero-shot AUC, pneumonia vs no finding",
    "image to text R@10",
    "text to image R@10",
];

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let (steps, flags) = crate::parse_flag_value(args, "--steps")?;
    let (arms, flags) = crate::parse_flag_value(&flags, "--arms")?;
    let arms: Vec<&'static str> = match arms {
        None => vec!["imagenet", "umcl", "clip"],
        Some(list) => list
            .split(',')
            .map(|a| {
                ARMS.iter()
                    .find(|(name, _)| *name == a.trim())
                    .map(|(name, _)| *name)
                    .with_context(|| {
                        let names: Vec<&str> = ARMS.iter().map(|(n, _)| *n).collect();
                        format!("--arms: unknown arm `{a}` (arms: {})", names.join(", "))
                    })
            })
            .collect::<Result<_>>()?,
    };
    let quick = crate::parse_flags(&flags, &["--quick"])?.contains(&"--quick");
    let (folds, run_folds, default_steps): (usize, Vec<usize>, u64) = if quick {
        (5, vec![0, 1], 20)
    } else {
        (5, (0..5).collect(), 100)
    };
    let steps = match steps {
        None => default_steps,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => bail!("--steps takes a count of at least 1, got `{v}`"),
        },
    };
    let metadata = root.join("../shared/data/covid-cxr-512/metadata.csv");
    if !metadata.exists() {
        bail!(
            "{} is absent: this benchmark needs the shared COVID-19 collection",
            metadata.display()
        );
    }
    setup::ensure(root, false)?;
    weights::MINILM.ensure(root)?;
    weights::find("efficientnet-lite0")?.ensure(root)?;
    status(cargo(root).args(["build", "--release", "--package", "umcl"]))?;
    let umcl = root.join("target/release/umcl");
    let out = root.join(if quick {
        "target/covid-quick"
    } else {
        "target/covid"
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let manifest = out.join("manifest.jsonl");
    let umcl_cmd = || {
        let mut cmd = Command::new(&umcl);
        cmd.current_dir(root);
        cmd
    };
    status(
        umcl_cmd()
            .args(["data", "prepare", "--source", "covid-cxr", "--input"])
            .arg(&metadata)
            .arg("--out")
            .arg(&manifest)
            .args(["--skip-bad", "--notes", "imaging"]),
    )?;
    let started = Instant::now();
    let mut scores = Vec::new();
    // Image-note pairs of each fold's test part: chance R@10 is 10 / pairs.
    let mut pairs: Vec<Option<u64>> = Vec::new();
    for &fold in &run_folds {
        status(
            umcl_cmd()
                .args(["data", "split"])
                .arg(&manifest)
                .args(["--folds", &folds.to_string(), "--fold", &fold.to_string()])
                .args(["--stratify", "meta.finding", "--seed", "0"]),
        )?;
        let split = out.join("manifest.splits.json");
        let kept = out.join(format!("fold-{fold}.splits.json"));
        std::fs::copy(&split, &kept).with_context(|| format!("copying {}", split.display()))?;
        for &arm in &arms {
            let name = format!("{arm}-f{fold}");
            let mut train = umcl_cmd();
            train
                .args(["train", "--preset", "covid-cxr", "--quiet", "--set"])
                .arg(format!("data.manifest={}", manifest.display()))
                .arg("--set")
                .arg(format!("run.out_dir={}", out.join("runs").display()))
                .args(["--set", &format!("run.name={name}")])
                .args(["--set", &format!("run.steps={steps}")])
                .args(["--set", &format!("run.checkpoint_every={steps}")])
                .args(["--set", &format!("eval.every={}", steps.div_ceil(2))])
                .args(["--set", "optim.warmup_steps=5"]);
            if arm == "imagenet" {
                train.arg("--init-only");
            }
            let sets = ARMS
                .iter()
                .find(|(n, _)| *n == arm)
                .map_or(&[][..], |a| a.1);
            for set in sets {
                train.args(["--set", set]);
            }
            // A rerun starts the arm afresh.
            let run_dir = out.join("runs").join(&name);
            if run_dir.exists() {
                std::fs::remove_dir_all(&run_dir)
                    .with_context(|| format!("removing {}", run_dir.display()))?;
            }
            status(&mut train)?;
            let eval = |task: &str, extra: &[&str], dir: &str| -> Result<Value> {
                let results = out.join("eval").join(&name).join(dir);
                status(
                    umcl_cmd()
                        .args(["eval", "--checkpoint"])
                        .arg(&run_dir)
                        .arg("--manifest")
                        .arg(&manifest)
                        .args(["--task", task, "--part", "test", "--output"])
                        .arg(&results)
                        .args(extra)
                        .stdout(std::process::Stdio::null()),
                )?;
                let path = results.join("results.json");
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            };
            let task_file = "data/tasks/covid-vs-other.toml";
            let probe_auc = |v: &Value| full_probe_auc(v);
            let covid = eval(
                "linear-probe",
                &["--probe-features", "pooled", "--task-file", task_file],
                "probe-covid",
            )?;
            let pneumonia = eval(
                "linear-probe",
                &[
                    "--probe-features",
                    "pooled",
                    "--classes",
                    "pneumonia,no_finding",
                ],
                "probe-pneumonia",
            )?;
            let zero = eval("zeroshot", &["--task-file", task_file], "zeroshot-covid")?;
            let zero_pneumonia = eval(
                "zeroshot",
                &["--task-file", "data/tasks/pneumonia-vs-no-finding.toml"],
                "zeroshot-pneumonia",
            )?;
            let retrieval = eval("retrieval", &[], "retrieval")?;
            if arm == arms[0] {
                pairs.push(retrieval["pairs"].as_u64());
            }
            let values = [
                probe_auc(&covid),
                probe_auc(&pneumonia),
                zero["auc"]["estimate"].as_f64(),
                zero_pneumonia["auc"]["estimate"].as_f64(),
                retrieval["i2t"]["r10"].as_f64(),
                retrieval["t2i"]["r10"].as_f64(),
            ];
            for (metric, value) in METRICS.into_iter().zip(values) {
                scores.push(Score {
                    arm,
                    fold,
                    metric,
                    value,
                });
            }
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let table = table(&scores, &arms, &run_folds);
    let chance: Vec<String> = pairs
        .iter()
        .map(|&n| match n {
            Some(n) if n > 0 => format!("{n} ({:.3})", (10.0 / n as f64).min(1.0)),
            _ => "-".into(),
        })
        .collect();
    let text = format!(
        "# `cargo xtask covid{}`\n\n{} of {folds} folds (stratified by finding, split seed 0), {steps} \
         steps per trained arm, {minutes:.1} min after the release build.\n\n{table}\n\
         Retrieval pairs per fold (chance R@10 = 10 / pairs): {}.\n",
        if quick { " --quick" } else { "" },
        run_folds.len(),
        chance.join(", ")
    );
    print!("\n{text}");
    let path = out.join("results.md");
    setup::write_atomic(&path, text.as_bytes())?;
    println!("\nwritten to {}", path.display());
    Ok(())
}

/// The ROC AUC of the first class of a linear probe fitted on all the training labels.
fn full_probe_auc(results: &Value) -> Option<f64> {
    results
        .as_array()?
        .iter()
        .find(|r| r["fraction"].as_f64() == Some(1.0))?["auc"]
        .get(0)?["estimate"]
        .as_f64()
}

/// Per metric and arm: each fold's value, then mean, sd and min over the folds.
fn table(scores: &[Score], arms: &[&str], folds: &[usize]) -> String {
    let mut out = String::from("| metric | arm |");
    for f in folds {
        out.push_str(&format!(" fold {f} |"));
    }
    out.push_str(" mean | sd | min |\n|---|---|");
    out.push_str(&"---|".repeat(folds.len() + 3));
    out.push('\n');
    for metric in METRICS {
        for &arm in arms {
            let values: Vec<Option<f64>> = folds
                .iter()
                .map(|&f| {
                    scores
                        .iter()
                        .find(|s| s.arm == arm && s.fold == f && s.metric == metric)
                        .and_then(|s| s.value)
                })
                .collect();
            out.push_str(&format!("| {metric} | {arm} |"));
            for v in &values {
                out.push_str(&format!(" {} |", fmt(*v)));
            }
            let present: Vec<f64> = values.iter().flatten().copied().collect();
            match crate::train::stats(&present) {
                Some([mean, sd, min, _]) => {
                    out.push_str(&format!(" {mean:.3} | {sd:.3} | {min:.3} |\n"))
                }
                None => out.push_str(" - | - | - |\n"),
            }
        }
    }
    out
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}
