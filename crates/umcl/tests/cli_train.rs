//! End-to-end tests of `umcl train`, `umcl eval` and `umcl classify` on a tiny phantom set:
//! exact resume after SIGKILL, bad configurations rejected before any work.

use std::path::{Path, PathBuf};

mod common;
use common::{ok, tokenizer, umcl};

/// A tiny phantom dataset and a config that trains on it in seconds.
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
steps = 8
log_every = 1
checkpoint_every = 2
keep_last = 10
progress = false
[data]
manifest = "{manifest}"
val_fraction = 0.2
image_size = 32
batch_size = 16
accum_steps = 2
workers = 1
prefetch = 2
max_text_len = 24
[model]
image = "resnet18-w4"
text_preset = "bert-L1-H32"
tokenizer = "{tok}"
embed_dim = 16
prompt_ctx = 2
[optim]
warmup_steps = 2
[eval]
every = 4
max_samples = 16
final_manifest = "{eval}"
"#,
            out = dir.join("runs").display(),
            manifest = dir.join("phantom/manifest.jsonl").display(),
            eval = dir.join("phantom/eval-5x200.jsonl").display(),
            tok = tokenizer.display(),
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn a_run_killed_mid_step_and_resumed_ends_bitwise_identical() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let train = |name: &str| {
        let mut c = umcl();
        c.arg("train")
            .arg("--config")
            .arg(&cfg)
            .args(["--quiet", "--set"])
            .arg(format!("run.name={name}"));
        c
    };
    ok(train("full").output().unwrap());

    // Killed by SIGKILL in the middle of step 6: the newest checkpoint is step 4.
    let killed = train("killed")
        .env("UMCL_TEST_SIGKILL_AT_STEP", "5")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(killed.status.signal(), Some(9), "{killed:?}");
    let ckpts = dir.path().join("runs/killed/checkpoints");
    assert!(ckpts.join("step-00000004").exists());
    assert!(!ckpts.join("step-00000006").exists());

    ok(train("killed")
        .args(["--resume", "latest"])
        .output()
        .unwrap());
    for file in ["model.safetensors", "optimizer.safetensors"] {
        let a = std::fs::read(
            dir.path()
                .join("runs/full/checkpoints/step-00000008")
                .join(file),
        )
        .unwrap();
        let b = std::fs::read(ckpts.join("step-00000008").join(file)).unwrap();
        assert!(
            a == b,
            "{file} differs between the uninterrupted and the resumed run"
        );
    }
    // The metrics log reads as one run: steps 1..=8 once each.
    let log = std::fs::read_to_string(dir.path().join("runs/killed/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("\"kind\":\"step\""))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["step"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>());

    // The run directory has what a user reads, and the trained model evaluates and classifies.
    for f in [
        "summary.md",
        "results.json",
        "loss.png",
        "lr.png",
        "config.toml",
    ] {
        assert!(dir.path().join("runs/full").join(f).exists(), "{f}");
    }
    let out = ok(umcl()
        .args(["eval", "--task", "zeroshot", "--checkpoint"])
        .arg(dir.path().join("runs/full"))
        .arg("--manifest")
        .arg(dir.path().join("phantom/eval-5x200.jsonl"))
        .arg("--output")
        .arg(dir.path().join("eval"))
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Learned prompts"));
    assert!(dir.path().join("eval/results.json").exists());
    // Retrieval on the validation part of the patient split that training wrote.
    let out = ok(umcl()
        .args([
            "eval",
            "--task",
            "retrieval",
            "--part",
            "val",
            "--checkpoint",
        ])
        .arg(dir.path().join("runs/full"))
        .arg("--manifest")
        .arg(dir.path().join("phantom/manifest.jsonl"))
        .output()
        .unwrap());
    assert!(String::from_utf8_lossy(&out.stdout).contains("R@1"));
    assert!(dir.path().join("phantom/manifest.val.jsonl").exists());
    let out = umcl()
        .args([
            "eval",
            "--task",
            "retrieval",
            "--part",
            "test",
            "--checkpoint",
        ])
        .arg(dir.path().join("runs/full"))
        .arg("--manifest")
        .arg(dir.path().join("phantom/manifest.jsonl"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("test part is empty"),
        "{err}"
    );
    // A zero-shot task whose truth is a metadata field: the phantom eval images tagged with
    // their finding, cardiomegaly against the rest, one value excluded.
    let eval_manifest = dir.path().join("phantom/eval-5x200.jsonl");
    let mut tagged = String::new();
    let (mut cardio, mut rest, mut excluded) = (0, 0, 0);
    for (i, line) in std::fs::read_to_string(&eval_manifest)
        .unwrap()
        .lines()
        .enumerate()
    {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if i > 0 {
            let finding = v["labels"]
                .as_object()
                .unwrap()
                .iter()
                .find(|(_, code)| code.as_i64() == Some(1))
                .map(|(k, _)| k.clone())
                .unwrap();
            match finding.as_str() {
                "cardiomegaly" => cardio += 1,
                "edema" => excluded += 1,
                _ => rest += 1,
            }
            v["meta"] = serde_json::json!({ "finding": finding });
        }
        tagged.push_str(&v.to_string());
        tagged.push('\n');
    }
    let tagged_path = dir.path().join("phantom/tagged.jsonl");
    std::fs::write(&tagged_path, tagged).unwrap();
    let task = dir.path().join("task.toml");
    let task_text = |rest_line: &str| {
        format!(
            "name = \"cardiomegaly vs rest\"\nfield = \"finding\"\nexclude = [\"edema\"]\n\
             [[classes]]\nname = \"cardio\"\nvalues = [\"cardiomegaly\"]\nprompts = [\"enlarged heart\"]\n\
             [[classes]]\nname = \"rest\"\n{rest_line}\nprompts = [\"normal heart size\"]\n"
        )
    };
    std::fs::write(&task, task_text("rest = true")).unwrap();
    let eval_task = || {
        let mut c = umcl();
        c.args(["eval", "--task", "zeroshot", "--task-file"])
            .arg(&task)
            .arg("--checkpoint")
            .arg(dir.path().join("runs/full"))
            .arg("--manifest")
            .arg(&tagged_path);
        c
    };
    let out = ok(eval_task().output().unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("{} samples ({excluded} left out)", cardio + rest)),
        "{text}"
    );
    assert!(text.contains("ROC AUC of `cardio`"), "{text}");
    // Without a `rest` class, a finding no class names is an error naming the sample.
    std::fs::write(&task, task_text("values = [\"pneumothorax\"]")).unwrap();
    let out = eval_task().output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("belongs to no class") && err.contains("sample `"),
        "{err}"
    );
    let out = ok(umcl()
        .args(["classify", "--top-k", "2", "--checkpoint"])
        .arg(dir.path().join("runs/full"))
        .arg(dir.path().join("phantom/eval-5x200/0000.png"))
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    // A DICOM file classifies like a PNG (decoded by docs/dicom.md's policy).
    let dcm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../umcl-data/tests/dicom/fixtures/mono1_12in16_window_explicit.dcm");
    let out = ok(umcl()
        .args(["classify", "--top-k", "2", "--checkpoint"])
        .arg(dir.path().join("runs/full"))
        .arg(&dcm)
        .output()
        .unwrap());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("mono1_12in16_window_explicit.dcm"), "{text}");
}

#[test]
fn bad_configs_are_rejected_before_any_work_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 9] = [
        (&["--set", "run.name=.."], "run.name"),
        (&["--set", "run.name=a/b"], "run.name"),
        (&["--set", "data.workers=100000"], "data.workers"),
        (&["--set", "run.threads=100000"], "run.threads"),
        (&["--set", "optim.lr=nan"], "optim.lr"),
        (&["--set", "optim.lr=-1e-4"], "optim.lr"),
        (&["--set", "optim.lrr=1"], "optim.lrr"),
        (&["--set", "data.batch_size=0"], "data.batch_size"),
        (&["--preset", "nope"], "unknown preset"),
    ];
    for (args, needle) in cases {
        let out = umcl()
            .current_dir(dir.path())
            .arg("train")
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !dir.path().join("runs").exists(),
            "work started for {args:?}"
        );
    }
    std::fs::write(dir.path().join("bad.toml"), "[optim]\nlr = \"fast\"\n").unwrap();
    let out = umcl()
        .current_dir(dir.path())
        .args(["train", "--config", "bad.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.toml") && err.contains("lr"),
        "{err}"
    );
    // A missing manifest is named, with the command that makes the phantom data.
    let out = umcl()
        .current_dir(dir.path())
        .args(["train", "--set", "data.manifest=nowhere/manifest.jsonl"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere/manifest.jsonl") && err.contains("umcl data phantom"),
        "{err}"
    );
}

/// `umcl train --config CFG --quiet --set run.name=NAME ARGS`.
fn train_run(cfg: &Path, name: &str, args: &[&str]) -> std::process::Output {
    umcl()
        .arg("train")
        .arg("--config")
        .arg(cfg)
        .args(["--quiet", "--set"])
        .arg(format!("run.name={name}"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A process id that no process has any more.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn a_run_directory_in_use_is_refused_naming_its_holder() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let run = dir.path().join("runs/conc");
    // Another run holds the directory (here: this test process).
    let held = umcl_fs::DirLock::acquire(&run).unwrap();
    let out = train_run(&cfg, "conc", &[]);
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("in use by process {}", std::process::id())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    for file in ["config.toml", "metrics.jsonl", "checkpoints"] {
        assert!(!run.join(file).exists(), "the refused run wrote {file}");
    }
    drop(held);

    // Free again, with what a killed run left behind: its partial checkpoint directory and a
    // temporary file are removed when the next run takes the directory.
    let dead = dead_pid();
    let partial = run.join(format!("checkpoints/.tmp-step-00000002-{dead}"));
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join("model.safetensors"), b"half").unwrap();
    let temp = run.join(format!(".config.toml.tmp-{dead}"));
    std::fs::write(&temp, b"half").unwrap();
    let out = ok(train_run(&cfg, "conc", &["--set", "run.steps=2"]));
    assert!(!partial.exists() && !temp.exists(), "{}", stderr_of(&out));
    assert!(run.join("checkpoints/step-00000002").exists());
}

#[test]
fn a_refused_resume_leaves_the_run_as_it_was_and_bad_weights_are_refused() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    ok(train_run(&cfg, "r", &["--set", "run.steps=2"]));
    let run = dir.path().join("runs/r");
    let config = std::fs::read(run.join("config.toml")).unwrap();
    let missing = dir.path().join("no-such-checkpoint");
    let refused: [&[&str]; 3] = [
        &["--resume", "latest", "--set", "data.image_size=64"],
        &["--resume", "latest", "--set", "model.embed_dim=8"],
        &["--resume", missing.to_str().unwrap()],
    ];
    for args in refused {
        let out = train_run(&cfg, "r", args);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(
            std::fs::read(run.join("config.toml")).unwrap(),
            config,
            "{args:?} rewrote config.toml"
        );
    }

    // Weights with NaN in them (as a diverged run's) are refused by name, not evaluated.
    for ckpt in std::fs::read_dir(run.join("checkpoints")).unwrap() {
        let file = ckpt.unwrap().path().join("model.safetensors");
        let mut named = tch::Tensor::read_safetensors(&file).unwrap();
        named[0].1 = &named[0].1 * f64::NAN;
        tch::Tensor::write_safetensors(&named, &file).unwrap();
    }
    let out = umcl()
        .args(["classify", "--checkpoint"])
        .arg(&run)
        .arg(dir.path().join("phantom/eval-5x200/0000.png"))
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert!(!out.status.success(), "classify accepted NaN weights");
    assert!(err.contains("NaN or infinite"), "{err}");
}

#[test]
fn a_diverged_run_does_not_call_diverged_weights_good() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let out = train_run(
        &cfg,
        "nan",
        &["--set", "optim.lr=1e30", "--set", "optim.warmup_steps=0"],
    );
    let err = stderr_of(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("the loss became"), "{err}");
    assert!(err.contains("were not saved"), "{err}");
    assert!(!err.contains("sound and saved"), "{err}");
    // Whatever checkpoint the run has holds finite weights: they load.
    let ckpts = dir.path().join("runs/nan/checkpoints");
    for entry in std::fs::read_dir(&ckpts).into_iter().flatten() {
        let file = entry.unwrap().path().join("model.safetensors");
        for (name, t) in tch::Tensor::read_safetensors(&file).unwrap() {
            let finite = t.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{}: {name} is not finite", file.display());
        }
    }
}

/// Starts `umcl train` (long enough not to end by itself) and waits until `metrics.jsonl`
/// shows its first step.
fn start_long_run(dir: &Path, cfg: &Path, name: &str, args: &[&str]) -> std::process::Child {
    let child = umcl()
        .arg("train")
        .arg("--config")
        .arg(cfg)
        .args(["--quiet", "--set", "run.steps=100000", "--set"])
        .arg(format!("run.name={name}"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let metrics = dir.join("runs").join(name).join("metrics.jsonl");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&metrics).is_ok_and(|t| t.contains("\"step\"")) {
        assert!(
            started.elapsed().as_secs() < 120,
            "the run never logged a step"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

fn signal(child: &std::process::Child, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);
}

#[test]
fn ctrl_c_saves_and_says_where_and_a_second_one_ends_at_once() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);

    let child = start_long_run(dir.path(), &cfg, "int", &[]);
    signal(&child, libc::SIGINT);
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted after step"), "{err}");
    assert!(err.contains("continue with --resume latest"), "{err}");
    // The checkpoint it names is there, and the run continues from it.
    let step: u64 = err
        .split("interrupted after step ")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap();
    let ckpt = dir
        .path()
        .join(format!("runs/int/checkpoints/step-{step:08}"));
    assert!(ckpt.join("state.json").is_file(), "{err}");
    let resumed = ok(train_run(
        &cfg,
        "int",
        &[
            "--resume",
            "latest",
            "--set",
            &format!("run.steps={}", step + 1),
        ],
    ));
    assert!(!stderr_of(&resumed).contains("panicked"));

    // SIGTERM does the same.
    let child = start_long_run(dir.path(), &cfg, "term", &[]);
    signal(&child, libc::SIGTERM);
    let out = child.wait_with_output().unwrap();
    assert!(
        stderr_of(&out).contains("interrupted after step"),
        "{}",
        stderr_of(&out)
    );

    // Two Ctrl-C: the second ends the process at once (128 + SIGINT). Steps are made slow
    // (large images) so that the second comes while the first step is still running; the
    // second is sent once the first has been handled (its note is on stderr), as two
    // signals sent together may arrive as one.
    let mut child = start_long_run(
        dir.path(),
        &cfg,
        "twice",
        &[
            "--set",
            "data.image_size=320",
            "--set",
            "data.accum_steps=1",
        ],
    );
    let mut stderr = child.stderr.take().unwrap();
    signal(&child, libc::SIGINT);
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    use std::io::Read;
    while !String::from_utf8_lossy(&seen).contains("again to end at once") {
        assert_eq!(stderr.read(&mut byte).unwrap(), 1, "stderr ended early");
        seen.push(byte[0]);
    }
    signal(&child, libc::SIGINT);
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = stderr.read_to_string(&mut rest);
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(!rest.contains("interrupted after step"), "{rest}");
}

#[test]
fn a_missing_final_manifest_is_reported_before_training() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let out = train_run(&cfg, "fm", &["--set", "eval.final_manifest=nowhere.jsonl"]);
    let err = stderr_of(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("eval.final_manifest") && err.contains("nowhere.jsonl"),
        "{err}"
    );
    assert!(
        !dir.path().join("runs/fm/checkpoints").exists(),
        "it trained first"
    );
}

#[test]
fn skipped_images_are_listed_and_counted_in_training_and_validation_even_when_quiet() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    // Every fourth phantom image is damaged: some fall in training, some in validation.
    let mut damaged = 0;
    let mut images: Vec<_> = std::fs::read_dir(dir.path().join("phantom/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    images.sort();
    for path in images.iter().step_by(4) {
        std::fs::write(path, b"not a png").unwrap();
        damaged += 1;
    }
    assert!(damaged > 10);
    let out = ok(train_run(
        &cfg,
        "skips",
        &[
            "--set",
            "data.skip_bad=true",
            "--set",
            "data.accum_steps=1",
            "--set",
            "eval.max_samples=1000",
        ],
    ));
    let run = dir.path().join("runs/skips");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let (train, val) = (
        results["skipped_samples"].as_u64().unwrap(),
        results["skipped_validation"].as_u64().unwrap(),
    );
    assert!(train > 0 && val > 0, "train {train}, validation {val}");
    let listed = std::fs::read_to_string(run.join("skipped.txt")).unwrap();
    assert!(listed.lines().count() as u64 >= train + val, "{listed}");
    // --quiet hides notes, not the counts: the summary and the final report say them.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("skipped samples"), "{stdout}");
    let summary = std::fs::read_to_string(run.join("summary.md")).unwrap();
    assert!(summary.contains("Skipped samples"), "{summary}");
}

#[test]
fn pretrained_weights_load_completely_with_a_saved_report_or_are_refused_naming_keys() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    ok(train_run(&cfg, "src", &["--set", "run.steps=2"]));
    // The trained image encoder as torchvision names a ResNet's keys, plus the classifier head
    // such files carry: what a user brings.
    let model = dir
        .path()
        .join("runs/src/checkpoints/step-00000002/model.safetensors");
    let mut image: Vec<(String, tch::Tensor)> = tch::Tensor::read_safetensors(&model)
        .unwrap()
        .into_iter()
        .filter_map(|(k, t)| k.strip_prefix("image.").map(|k| (k.to_string(), t)))
        .collect();
    let n_image = image.len();
    image.push((
        "fc.weight".into(),
        tch::Tensor::zeros([10, 32], tch::kind::FLOAT_CPU),
    ));
    let good = dir.path().join("resnet.safetensors");
    tch::Tensor::write_safetensors(&image, &good).unwrap();

    // With the MiniLM text encoder too: both imports are complete and reported.
    let minilm = tok.parent().unwrap();
    let set_image = format!("model.image_weights={}", good.display());
    let set_text = format!("model.text_dir={}", minilm.display());
    let out = ok(train_run(
        &cfg,
        "warm",
        &[
            "--set",
            &set_image,
            "--set",
            &set_text,
            "--set",
            "run.steps=2",
        ],
    ));
    let report: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("runs/warm/imports.json")).unwrap(),
    )
    .unwrap();
    let part = |name: &str| {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["part"] == name)
            .unwrap_or_else(|| panic!("no {name} import in {report}"))
            .clone()
    };
    let (text, img) = (part("text"), part("image"));
    assert_eq!(img["complete"], true, "{img}");
    assert_eq!(img["loaded"].as_array().unwrap().len(), n_image);
    assert_eq!(img["ignored"], serde_json::json!(["fc.weight"]));
    assert_eq!(text["complete"], true, "{text}");
    // all-MiniLM-L6-v2: 6 layers of 16 tensors, 5 embedding tensors; its pooler is left out.
    assert_eq!(
        text["loaded"].as_array().unwrap().len(),
        6 * 16 + 5,
        "{text}"
    );
    assert!(stderr_of(&out).is_empty() || !stderr_of(&out).contains("panicked"));

    // One key renamed: the run is refused before training, naming both sides.
    let mut bad = image;
    let at = bad
        .iter()
        .position(|(k, _)| k == "layer1.0.conv1.weight")
        .unwrap();
    bad[at].0 = "layer1.0.convX.weight".into();
    let bad_path = dir.path().join("renamed.safetensors");
    tch::Tensor::write_safetensors(&bad, &bad_path).unwrap();
    let out = train_run(
        &cfg,
        "bad",
        &[
            "--set",
            &format!("model.image_weights={}", bad_path.display()),
        ],
    );
    let err = stderr_of(&out);
    assert!(!out.status.success(), "a partial import was accepted");
    assert!(err.contains("1 missing: layer1.0.conv1.weight"), "{err}");
    assert!(err.contains("1 unexpected: layer1.0.convX.weight"), "{err}");
    assert!(err.contains("renamed.safetensors"), "{err}");
    assert!(!dir.path().join("runs/bad/checkpoints").exists());
}

#[test]
fn several_manifests_train_together_with_their_own_splits_and_no_shared_patient() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    // A second source: another phantom set in its own folder (image paths relative to it).
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    ok(umcl()
        .args([
            "data",
            "phantom",
            "--n",
            "64",
            "--size",
            "32",
            "--seed",
            "2",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(b.join("phantom"))
        .output()
        .unwrap());
    let a_manifest = dir.path().join("phantom/manifest.jsonl");
    let b_manifest = b.join("phantom/manifest.jsonl");
    // Phantom sets number their patients alike: the second source gets ids of its own.
    let text = std::fs::read_to_string(&b_manifest).unwrap();
    std::fs::write(
        &b_manifest,
        text.replace("\"patient_id\":\"phantom-", "\"patient_id\":\"b-phantom-"),
    )
    .unwrap();
    let both = format!(
        "data.manifests=[{{ path = \"{}\" }}, {{ path = \"{}\", weight = 3.0 }}]",
        a_manifest.display(),
        b_manifest.display()
    );
    let out = ok(train_run(
        &cfg,
        "two",
        &["--set", &both, "--set", "run.steps=2"],
    ));
    assert!(!stderr_of(&out).contains("panicked"));
    // Each manifest got its own patient split file.
    for m in [&a_manifest, &b_manifest] {
        let split = m.with_file_name("manifest.splits.json");
        assert!(split.is_file(), "no split beside {}", m.display());
    }
    // A missing manifest and a zero weight are refused by name.
    let gone = format!(
        "data.manifests=[{{ path = \"{}\" }}, {{ path = \"{}\" }}]",
        a_manifest.display(),
        dir.path().join("nowhere.jsonl").display()
    );
    let err = stderr_of(&train_run(&cfg, "x", &["--set", &gone]));
    assert!(err.contains("nowhere.jsonl: no such manifest"), "{err}");
    let zero = format!(
        "data.manifests=[{{ path = \"{}\", weight = 0.0 }}]",
        a_manifest.display()
    );
    let err = stderr_of(&train_run(&cfg, "x", &["--set", &zero]));
    assert!(err.contains("data.manifests[0].weight"), "{err}");

    // The same patients in two manifests whose splits disagree: refused, naming a patient.
    let c = dir.path().join("c");
    std::fs::create_dir_all(&c).unwrap();
    let c_manifest = c.join("manifest.jsonl");
    let text = std::fs::read_to_string(&a_manifest).unwrap();
    // The copy's image paths point back to the first set's images.
    let images = dir.path().join("phantom");
    let text = text.replace(
        "\"image\":\"",
        &format!("\"image\":\"{}/", images.display()),
    );
    std::fs::write(&c_manifest, text).unwrap();
    ok(umcl()
        .args(["data", "split", "--seed", "7", "--fractions", "0.5,0.5"])
        .arg(&c_manifest)
        .output()
        .unwrap());
    let leak = format!(
        "data.manifests=[{{ path = \"{}\" }}, {{ path = \"{}\" }}]",
        a_manifest.display(),
        c_manifest.display()
    );
    let out = train_run(&cfg, "leak", &["--set", &leak]);
    let err = stderr_of(&out);
    assert!(
        !out.status.success(),
        "a patient in two splits was accepted"
    );
    assert!(
        err.contains("one patient may not be in training and validation"),
        "{err}"
    );
    assert!(err.contains("manifest.jsonl"), "{err}");
}

#[test]
fn the_initial_model_is_a_checkpoint_and_a_fold_probe_scores_only_the_test_patients() {
    let Some(tok) = tokenizer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny_setup(dir.path(), &tok);
    let manifest = dir.path().join("phantom/manifest.jsonl");
    // Fold 1 of 3, stratified by labels.
    let split = ok(umcl()
        .args(["data", "split"])
        .arg(&manifest)
        .args(["--folds", "3", "--fold", "1", "--stratify", "labels"])
        .output()
        .unwrap());
    let said = String::from_utf8_lossy(&split.stdout).into_owned();
    assert!(said.contains("fold 1 of 3"), "{said}");
    let split_file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("phantom/manifest.splits.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(split_file["fold"]["folds"], 3);
    let tested = split_file["test"].as_array().unwrap().len();
    let others =
        split_file["train"].as_array().unwrap().len() + split_file["val"].as_array().unwrap().len();

    // --init-only: checkpoint 0, no step trained.
    let out = train_run(&cfg, "init", &["--init-only"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("steps: 0 (the initial model, saved as checkpoint 0)")
            && !said.contains("NaN"),
        "{said}"
    );
    let run = dir.path().join("runs/init");
    assert!(run
        .join("checkpoints/step-00000000/model.safetensors")
        .exists());
    assert!(!run.join("checkpoints/step-00000002").exists());

    // The probe is fitted on the other folds and scored on the test fold, with per-class AUC.
    let results = dir.path().join("probe");
    let out = ok(umcl()
        .args(["eval", "--checkpoint"])
        .arg(&run)
        .arg("--manifest")
        .arg(&manifest)
        .args(["--task", "linear-probe", "--part", "test"])
        .args(["--probe-features", "pooled", "--output"])
        .arg(&results)
        .output()
        .unwrap());
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "fitted on {others} samples of the other parts, scored on {tested} samples of test"
        )),
        "{err}"
    );
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(results.join("results.json")).unwrap())
            .unwrap();
    let full = &r.as_array().unwrap()[2];
    assert_eq!(full["fraction"], 1.0);
    let auc = full["auc"].as_array().unwrap();
    assert!(!auc.is_empty());
    for a in auc.iter().filter(|a| !a.is_null()) {
        let (e, lo, hi) = (
            a["estimate"].as_f64().unwrap(),
            a["low"].as_f64().unwrap(),
            a["high"].as_f64().unwrap(),
        );
        assert!((0.0..=1.0).contains(&e) && lo <= e && e <= hi, "{a}");
    }
    // A task file goes with a probe only on a split part.
    let out = umcl()
        .args(["eval", "--checkpoint"])
        .arg(&run)
        .arg("--manifest")
        .arg(&manifest)
        .args(["--task", "linear-probe", "--task-file", "no-such.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr_of(&out).contains("--task linear-probe with --part"));
}
