//! End-to-end test of `umcl bench step` at a tiny size: it trains, times, and writes the JSON
//! line the side-by-side script (`xtask/gpu/train_step.sh`) reads.

use std::process::{Command, Output};

/// `umcl bench step --model resnet50-image-only ARGS`.
fn bench_step(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(["bench", "step", "--model", "resnet50-image-only"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn bench_step_writes_one_json_line_with_the_shared_fields() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("step.json");
    let out = bench_step(&[
        "--batch",
        "2",
        "--image-size",
        "32",
        "--warmup",
        "1",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--breakdown",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let written = std::fs::read_to_string(&json).unwrap();
    assert_eq!(stdout.trim(), written.trim(), "stdout and --json differ");
    let v: serde_json::Value = serde_json::from_str(written.trim()).unwrap();
    assert_eq!(v["impl"], "umcl");
    assert_eq!(v["model"], "resnet50-image-only");
    assert_eq!(v["device"], "cpu");
    assert_eq!(v["dtype"], "fp32");
    assert_eq!(v["optimizer"], "adamw-fused");
    // torchvision's resnet50 (1000 classes), as train_step.py prints it for the same model.
    assert_eq!(v["params"], 25_557_032);
    assert_eq!(v["step_times_s"].as_array().unwrap().len(), 2);
    let median = v["median_step_s"].as_f64().unwrap();
    let rate = v["samples_per_s"].as_f64().unwrap();
    assert!(median > 0.0 && (rate - 2.0 / median).abs() < 1e-9 * rate);
    assert!(v["loss"].as_f64().unwrap().is_finite());
    for phase in ["forward_and_loss", "backward", "optimizer"] {
        assert!(v["breakdown_s"][phase].as_f64().unwrap() > 0.0, "{phase}");
    }
}

#[test]
fn bench_step_refuses_a_batch_of_one() {
    let out = bench_step(&["--batch", "1", "--device", "cpu"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--batch >= 2"), "{stderr}");
}

/// `--dist` times the step through a 1-rank process group, as `xtask/gpu/dist_step.sh` does:
/// the image-only model must arm the gradient hooks before its backward pass, as the trainer's
/// step does, or the all-reduce finds nothing to finish.
#[test]
fn bench_step_runs_the_image_only_model_data_parallel() {
    let out = bench_step(&[
        "--batch",
        "2",
        "--image-size",
        "32",
        "--warmup",
        "0",
        "--steps",
        "2",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--dist",
    ]);
    assert!(
        out.status.success(),
        "stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    assert_eq!(v["dist"], true);
    let buckets = &v["dist_buckets"];
    assert!(buckets["buckets"].as_u64().unwrap() > 0, "{buckets}");
    assert!(v["loss"].as_f64().unwrap().is_finite());
}
