//! A reader that closes the pipe early (`umcl info | head -1`) ends the printing, not the
//! command: no panic, exit 0, and the files the command writes are still written.

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
