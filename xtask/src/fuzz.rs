//! `cargo xtask fuzz [--seconds N] [TARGET]...`: the stable-Rust fuzzer (`crates/umcl-fuzz`)
//! over each input reader in turn, one process per target, then one table.
//!
//! Writes `target/fuzz/results.md` (target, executions, seconds, crashes, distinct panics)
//! and the crashing inputs as `target/fuzz/TARGET-N.bin`; fails when anything crashed.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::{cargo, status};

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    crate::setup::ensure(root, false)?;
    status(cargo(root).args(["build", "--release", "--package", "umcl-fuzz"]))?;
    let fuzzer = root.join("target/release/umcl-fuzz");
    // The fuzzer names its own targets (xtask depends on no workspace crate).
    let listed = Command::new(&fuzzer)
        .arg("--list")
        .output()
        .with_context(|| format!("starting {}", fuzzer.display()))?;
    let all: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let mut seconds = 600u64;
    let mut targets: Vec<String> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--seconds" => {
                seconds = args
                    .get(i + 1)
                    .context("--seconds needs a value")?
                    .parse()
                    .context("--seconds takes a whole number")?;
                i += 2;
            }
            t if all.iter().any(|a| a == t) => {
                targets.push(t.to_string());
                i += 1;
            }
            other => bail!("unknown argument `{other}`; targets: {}", all.join(" ")),
        }
    }
    if targets.is_empty() {
        targets = all;
    }
    let out = root.join("target/fuzz");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut table = String::from(
        "| target | executions | seconds | crashes | distinct panics |\n|---|---|---|---|---|\n",
    );
    let mut failed = Vec::new();
    for target in &targets {
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let run = Command::new(&fuzzer)
            .current_dir(root)
            .args([target.as_str(), "--seconds", &seconds.to_string()])
            .arg("--out")
            .arg(&out)
            .output()
            .with_context(|| format!("starting umcl-fuzz {target}"))?;
        eprint!("{}", String::from_utf8_lossy(&run.stderr));
        let stdout = String::from_utf8_lossy(&run.stdout);
        let Some(line) = stdout.lines().find(|l| l.starts_with("umcl-fuzz\t")) else {
            failed.push(format!("{target} (ended without a result: {})", run.status));
            let _ = writeln!(
                table,
                "| {target} | - | - | ended abnormally ({}) | - |",
                run.status
            );
            continue;
        };
        let f: Vec<&str> = line.split('\t').collect();
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} | {} |",
            f[1], f[2], f[3], f[4], f[5]
        );
        if !run.status.success() {
            failed.push(target.clone());
        }
    }
    print!("{table}");
    std::fs::write(out.join("results.md"), &table)
        .with_context(|| format!("writing {}", out.join("results.md").display()))?;
    if !failed.is_empty() {
        bail!(
            "crashes in: {} (inputs in {})",
            failed.join(", "),
            out.display()
        );
    }
    Ok(())
}
