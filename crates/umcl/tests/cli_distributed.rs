//! Data-parallel `umcl train --nproc N` on 127.0.0.1 (Gloo): two ranks give what one process
//! gives, a killed rank stops the run within the timeout and the run resumes, and a bad launch
//! environment is a clear error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{ok, tokenizer, umcl};

/// A tiny phantom set and a config whose model has no batch-dependent layer (a one-block ViT,
/// no dropout), so splitting a batch over ranks changes nothing but rounding. The loss is the
/// label-aware one with the prompt term.
fn tiny_setup(dir: &Path, tokenizer: &Path) -> PathBuf {
    common::tiny_phantom(dir);
    let cfg = dir.join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[run]
out_dir = "{out}"
threads = 1
steps = 6
log_every = 1
checkpoint_every = 2
keep_last = 10
progress = false
[data]
manifest = "{manifest}"
val_fraction = 0.2
image_size = 32
batch_size = 16
accum_steps = 1
workers = 1
prefetch = 2
max_text_len = 24
augment = true
[model]
image = "vit32-p8-w32-d1"
text_preset = "bert-L1-H32"
tokenizer = "{tok}"
embed_dim = 16
prompt_ctx = 2
text_dropout = 0.0
[loss]
kind = "itl"
prompt_weight = 0.5
[optim]
warmup_steps = 2
[eval]
every = 0
max_samples = 16
[dist]
timeout_s = 10
"#,
            out = dir.join("runs").display(),
            manifest = dir.join("phantom/manifest.jsonl").display(),
            tok = tokenizer.display(),
        ),
    )
    .unwrap();
    cfg
}

fn train(cfg: &Path, name: &str, extra: &[&str]) -> Command {
    let mut c = umcl();
    c.arg("train")
        .arg("--config")
        .arg(cfg)
        .args(["--quiet", "--set"])
        .arg(format!("run.name={name}"))
        .args(extra);
    c
}

/// The records of every logged step in a run's `metrics.jsonl`.
fn step_records(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// (loss, contrastive, prompt) of every logged step.
fn step_losses(run: &Path) -> Vec<[f64; 3]> {
    step_records(run)
        .iter()
        .map(|v| ["loss", "contrastive", "prompt"].map(|k| v[k].as_f64().unwrap()))
        .collect()
}

/// `grad_buckets_overlapped` of every logged step (absent without the overlapped all-reduce).
fn overlapped_buckets(run: &Path) -> Vec<Option<(u64, u64)>> {
    step_records(run)
        .iter()
        .map(|v| {
            let pair = v["grad_buckets_overlapped"].as_array()?;
            Some((pair[0].as_u64().unwrap(), pair[1].as_u64().unwrap()))
        })
        .collect()
}

fn weights(checkpoint: &Path) -> HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(checkpoint.join("model.safetensors"))
        .unwrap()
        .into_iter()
        .collect()
}

/// The largest absolute difference between two checkpoints' weights (same names required).
fn max_weight_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(name, t)| {
            let u = b.get(name).unwrap_or_else(|| panic!("{name} missing"));
            (t - u).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn two_ranks_give_the_losses_and_weights_of_one_process() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let runs = dir.path().join("runs");
    let last = "checkpoints/step-00000006";
    // The gradient all-reduce overlapped with the backward pass (the default) and after it.
    for (accum, overlap) in [("1", true), ("2", true), ("1", false)] {
        let set = format!("data.accum_steps={accum}");
        let one = format!("one-a{accum}");
        let two = format!("two-a{accum}-overlap-{overlap}");
        if !runs.join(&one).exists() {
            ok(train(&cfg, &one, &["--set", &set]).output().unwrap());
        }
        let overlap_set = format!("dist.overlap={overlap}");
        let out = ok(train(
            &cfg,
            &two,
            &["--set", &set, "--set", &overlap_set, "--nproc", "2"],
        )
        .output()
        .unwrap());
        // Rank 0 alone reports and writes.
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(stdout.matches("run directory:").count(), 1, "{stdout}");

        let (a, b) = (step_losses(&runs.join(&one)), step_losses(&runs.join(&two)));
        assert_eq!(a.len(), 6);
        assert_eq!(a.len(), b.len());
        for (step, (x, y)) in a.iter().zip(&b).enumerate() {
            for k in 0..3 {
                assert!(
                    (x[k] - y[k]).abs() <= 1e-5,
                    "accum {accum}, overlap {overlap}, step {}: term {k} is {} in one process, {} on two ranks",
                    step + 1,
                    x[k],
                    y[k]
                );
            }
        }
        // With the overlap, rank 0's buckets start inside the backward pass once they are
        // rebuilt after the first step: those of the weights every rank trains, then the class
        // prompts and the logit scale (rank 0's only) in a bucket of their own. With two
        // micro-batches the class prompts take their gradient in the first one, which is not
        // the armed pass, so their bucket is all-reduced after it.
        let overlapped = overlapped_buckets(&runs.join(&two));
        if overlap {
            // Rank 0 misses only the prompts' bucket with two micro-batches.
            let missed = if accum == "1" { 0 } else { 1 };
            assert!(overlapped[0].is_some(), "{overlapped:?}");
            assert!(
                overlapped[1..]
                    .iter()
                    .all(|o| o.is_some_and(|(early, all)| all >= 2 && early + missed == all)),
                "accum {accum}: {overlapped:?}"
            );
        } else {
            assert!(overlapped.iter().all(Option::is_none), "{overlapped:?}");
        }
        // The prompt term takes part (the class prompts' gradient comes from rank 0 only).
        assert!(a.iter().all(|x| x[2] > 0.0));
        let diff = max_weight_diff(&runs.join(&one).join(last), &runs.join(&two).join(last));
        assert!(
            diff <= 1e-5,
            "accum {accum}, overlap {overlap}: final weights differ by up to {diff}"
        );
    }
    // One rank is the plain run plus a no-op all-reduce: bit for bit the same weights.
    ok(train(&cfg, "one-rank", &["--nproc", "1"]).output().unwrap());
    let a = std::fs::read(runs.join("one-a1").join(last).join("model.safetensors")).unwrap();
    let b = std::fs::read(runs.join("one-rank").join(last).join("model.safetensors")).unwrap();
    assert!(a == b, "a one-rank run differs from a plain run");
}

#[test]
fn a_killed_rank_stops_the_run_within_the_timeout_and_the_run_resumes() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let runs = dir.path().join("runs");
    let timeout = ["--set", "dist.timeout_s=5", "--nproc", "2"];
    ok(train(&cfg, "full", &timeout).output().unwrap());

    // Rank 1 dies by SIGKILL in the middle of step 4 (after its backward pass, in which its
    // gradient all-reduce started, before it waits for it): rank 0 waits in that all-reduce
    // and must stop on its own.
    let started = Instant::now();
    let out = train(&cfg, "killed", &timeout)
        .env("UMCL_TEST_SIGKILL_AT_STEP", "3")
        .env("UMCL_TEST_SIGKILL_RANK", "1")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("rank 1 was killed by signal 9"), "{err}");
    // Rank 0 ended by itself with an error naming the collective (not killed by the launcher).
    assert!(err.contains("rank 0 exited with status 1"), "{err}");
    assert!(err.contains("distributed: all_reduce"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        elapsed < Duration::from_secs(5 + 10),
        "the run took {elapsed:?} to stop"
    );
    let ckpts = runs.join("killed/checkpoints");
    assert!(ckpts.join("step-00000002").exists());
    assert!(!ckpts.join("step-00000004").exists());

    // Resumed on two ranks, it ends where the uninterrupted run ended.
    ok(train(
        &cfg,
        "killed",
        &[timeout.as_slice(), &["--resume", "latest"]].concat(),
    )
    .output()
    .unwrap());
    let last = "checkpoints/step-00000006";
    let diff = max_weight_diff(
        &runs.join("full").join(last),
        &runs.join("killed").join(last),
    );
    assert_eq!(diff, 0.0, "the resumed run ends elsewhere");
    let steps = step_losses(&runs.join("killed"));
    assert_eq!(steps, step_losses(&runs.join("full")));
}

#[test]
fn a_bad_launch_environment_is_a_clear_error() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let run = |name: &str, env: &[(&str, &str)], extra: &[&str]| {
        let mut c = train(&cfg, name, extra);
        for (k, v) in env {
            c.env(k, v);
        }
        let started = Instant::now();
        let out = c.output().unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(!out.status.success(), "{name} succeeded");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        err
    };
    let err = run("missing", &[("RANK", "0"), ("WORLD_SIZE", "2")], &[]);
    assert!(err.contains("MASTER_ADDR, MASTER_PORT missing"), "{err}");

    let full = [
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29999"),
        ("WORLD_SIZE", "2"),
    ];
    let err = run("conflict", &[&full[..], &[("RANK", "2")]].concat(), &[]);
    assert!(err.contains("RANK=2 is not below WORLD_SIZE=2"), "{err}");

    let err = run("nested", &[("RANK", "0")], &["--nproc", "2"]);
    assert!(err.contains("RANK is already set"), "{err}");

    let err = run("uneven", &[], &["--nproc", "3"]);
    assert!(
        err.contains("does not split evenly over --nproc 3"),
        "{err}"
    );

    // Rank 0 cannot serve the rendezvous on a port another program holds.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let err = run(
        "busy",
        &[
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", &port),
            ("WORLD_SIZE", "1"),
            ("RANK", "0"),
        ],
        &[],
    );
    assert!(
        err.contains(&format!(
            "could not serve the rendezvous store on 127.0.0.1:{port}"
        )),
        "{err}"
    );
    // A rank whose peers never come gives up after the timeout instead of waiting forever.
    let err = run(
        "alone",
        &[
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1"),
            ("WORLD_SIZE", "2"),
            ("RANK", "1"),
        ],
        &["--set", "dist.timeout_s=2"],
    );
    assert!(
        err.contains("rank 1 could not reach the rendezvous store at 127.0.0.1:1"),
        "{err}"
    );
    assert!(!dir.path().join("runs").exists(), "work started");
}
