//! The CLI under hostile conditions: a reader that closes the pipe early (`umcl info | head
//! -1`) ends the printing, not the command (no panic, exit 0, files still written); absurd
//! sizes and thread counts are refused with their bound.

use std::process::Stdio;

mod common;
use common::umcl;

/// Runs `umcl ARGS` with its standard output a pipe whose reading end is closed before the
/// command writes anything; returns the status and standard error.
fn with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = umcl()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_is_a_normal_end() {
    let (status, err) = with_closed_stdout(&["info", "--device", "cpu"]);
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");

    // `data phantom` prints a summary after writing its files; the files are all there.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phantom");
    let (status, err) = with_closed_stdout(&[
        "data",
        "phantom",
        "--n",
        "12",
        "--size",
        "32",
        "--threads",
        "1",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(status.success(), "{status:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.join("manifest.jsonl").is_file());
}

/// Sizes and counts no machine could serve are refused at once, with the bound, instead of
/// hanging while threads spawn or memory fills.
#[test]
fn absurd_sizes_and_thread_counts_are_refused_with_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phantom");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &[
                "data",
                "phantom",
                "--out",
                out,
                "--n",
                "18446744073709551615",
            ],
            "at most 1000000",
        ),
        (
            &["data", "phantom", "--out", out, "--size", "60000"],
            "at most 4096",
        ),
        (
            &["data", "phantom", "--out", out, "--threads", "100000"],
            "at most 1024",
        ),
        (&["info", "--threads", "100000"], "at most 1024"),
        (
            &[
                "data",
                "convert",
                "--input",
                out,
                "--out",
                out,
                "--threads",
                "100000",
            ],
            "at most 1024",
        ),
        (
            &[
                "data", "convert", "--input", out, "--out", out, "--size", "60000",
            ],
            "at most 16384",
        ),
    ];
    for (args, needle) in cases {
        let started = std::time::Instant::now();
        let run = umcl().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} was accepted");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(started.elapsed().as_secs() < 60, "{args:?} took too long");
    }
}

/// An error's cause is printed once: error types either hold their cause in the message or
/// chain it, never both (anyhow's `{:#}` would print it twice).
#[test]
fn an_error_says_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let run = umcl()
        .current_dir(dir.path())
        .args(["train", "--config", "missing.toml"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(err.contains("missing.toml"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
}
