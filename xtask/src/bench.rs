//! `cargo xtask bench`: the criterion suites and the side-by-side comparisons, one table.
//!
//! Each group runs `cargo bench` on some bench targets (or, for `train-step`, the training-step
//! comparison). Results come from three places, all read after the group ran:
//! - criterion's `target/criterion/**/new/{estimates,benchmark}.json` written during this run
//!   (ours only: median time, and the rate when the bench declared a throughput);
//! - the side-by-side benches' raw files `target/bench/raw/*.tsv` written during this run, one
//!   line per case: `group, case, ours, reference, unit, lower|higher, device, note`;
//! - the image-pipeline bench's printed `umcl ... threads=N: X images/s` and
//!   `reference ... threads=N: X images/s` lines.
//!
//! The table (group, case, ours, reference, ratio, device) is printed and written to
//! `target/bench/results.json` and `target/bench/results.md`. The ratio is always "how many
//! times faster we are": reference time / our time, or our rate / reference rate.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context, Result};

/// One bench group: what `cargo xtask bench NAME` runs.
struct Group {
    name: &'static str,
    about: &'static str,
    /// `cargo bench` invocations: (package, bench targets; empty = all of the package's).
    suites: &'static [(&'static str, &'static [&'static str])],
    /// Part of `cargo xtask bench` without a group.
    default: bool,
}

const GROUPS: &[Group] = &[
    Group {
        name: "data",
        about: "umcl-data: labeler (vs a Python regex labeler), image pipeline (vs PIL + torchvision), phantom, loader",
        suites: &[("umcl-data", &[])],
        default: true,
    },
    Group {
        name: "labeler",
        about: "the report labeler vs a Python regex labeler with the same rules (part of data)",
        suites: &[("umcl-data", &["labeler"])],
        default: false,
    },
    Group {
        name: "images",
        about: "the image pipeline vs PIL + torchvision (part of data)",
        suites: &[("umcl-data", &["images"])],
        default: false,
    },
    Group {
        name: "models",
        about: "umcl-models: encoder forward/backward (criterion)",
        suites: &[("umcl-models", &[])],
        default: true,
    },
    Group {
        name: "losses",
        about: "umcl-losses: losses and memory (criterion), fwd+bwd vs PyTorch eager at B=1024, 4096",
        suites: &[("umcl-losses", &[])],
        default: true,
    },
    Group {
        name: "losses-vs-torch",
        about: "only the losses side by side with PyTorch eager (part of losses)",
        suites: &[("umcl-losses", &["losses_vs_torch"])],
        default: false,
    },
    Group {
        name: "train",
        about: "umcl-train's criterion benches (if any)",
        suites: &[("umcl-train", &[])],
        default: true,
    },
    Group {
        name: "train-step",
        about: "the training step vs PyTorch eager on the CPU (slow: minutes on 2 cores)",
        suites: &[],
        default: true,
    },
];

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub group: String,
    pub case: String,
    pub ours: f64,
    pub reference: Option<f64>,
    /// `ms`, `s`, `reports/s`, ...
    pub unit: String,
    /// True when a larger value is better (a rate).
    pub higher_is_better: bool,
    pub device: String,
    pub note: String,
}

impl Row {
    /// How many times faster ours is than the reference (> 1: we are faster).
    pub fn ratio(&self) -> Option<f64> {
        let r = self.reference?;
        if r <= 0.0 || self.ours <= 0.0 {
            return None;
        }
        Some(if self.higher_is_better {
            self.ours / r
        } else {
            r / self.ours
        })
    }
}

fn usage_groups() -> String {
    let mut s = String::from("bench groups (no group: every group marked *):\n");
    for g in GROUPS {
        let star = if g.default { "*" } else { " " };
        let _ = writeln!(s, "  {star} {:16} {}", g.name, g.about);
    }
    s
}

/// `cargo xtask bench [--list] [--skip GROUP]... [GROUP]...`
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let mut selected: Vec<&Group> = Vec::new();
    let mut skipped = BTreeSet::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => {
                print!("{}", usage_groups());
                return Ok(());
            }
            "--skip" => {
                let Some(name) = it.next() else {
                    bail!("--skip needs a group name\n\n{}", usage_groups());
                };
                find_group(name)?;
                skipped.insert(name.clone());
            }
            other if other.starts_with('-') => {
                bail!("unexpected argument `{other}`\n\n{}", usage_groups())
            }
            name => selected.push(find_group(name)?),
        }
    }
    if selected.is_empty() {
        selected = GROUPS.iter().filter(|g| g.default).collect();
    }
    selected.retain(|g| !skipped.contains(g.name));
    if selected.is_empty() {
        bail!("no bench group left to run");
    }
    crate::setup::ensure(root, false)?;
    // A failing group is reported at the end; the others still run and are tabulated.
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for group in &selected {
        eprintln!("xtask: bench: group {}", group.name);
        let started = SystemTime::now();
        let mut printed = Vec::new();
        if group.name == "train-step" {
            if let Err(e) = train_step(root) {
                eprintln!("xtask: bench: group train-step: {e:#}");
                failed.push(group.name);
            }
        }
        for (package, benches) in group.suites {
            if !package_has_benches(root, package)? {
                eprintln!("xtask: bench: {package} has no benches, skipping");
                continue;
            }
            let mut cmd = crate::cargo(root);
            cmd.args(["bench", "--package", package]);
            for b in *benches {
                cmd.args(["--bench", b]);
            }
            match run_capturing(&mut cmd) {
                Ok(lines) => printed.extend(lines),
                Err(e) => {
                    eprintln!("xtask: bench: group {}: {e:#}", group.name);
                    failed.push(group.name);
                }
            }
        }
        rows.extend(criterion_rows(root, started, group.name)?);
        rows.extend(raw_rows(root, started));
        rows.extend(image_rows(&printed));
    }
    let command = std::iter::once("cargo xtask bench".to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    report(root, &rows, &command)?;
    if !failed.is_empty() {
        bail!(
            "bench groups that failed (see above): {}",
            failed.join(", ")
        );
    }
    Ok(())
}

fn find_group(name: &str) -> Result<&'static Group> {
    match GROUPS.iter().find(|g| g.name == name) {
        Some(g) => Ok(g),
        None => bail!("unknown bench group `{name}`\n\n{}", usage_groups()),
    }
}

/// Whether the package's manifest declares a `[[bench]]` (or has a `benches/` folder).
fn package_has_benches(root: &Path, package: &str) -> Result<bool> {
    let dir = root.join("crates").join(package);
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml"))
        .with_context(|| format!("reading {}/Cargo.toml", dir.display()))?;
    Ok(manifest.contains("[[bench]]") || dir.join("benches").is_dir())
}

/// Runs a command, echoing and keeping its stdout lines (stderr passes through).
fn run_capturing(cmd: &mut Command) -> Result<Vec<String>> {
    let line = format!("{cmd:?}");
    eprintln!("xtask: $ {line}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not start {line}"))?;
    let mut kept = Vec::new();
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            let l = l.context("reading the bench output")?;
            println!("{l}");
            kept.push(l);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("{line} failed ({status})");
    }
    Ok(kept)
}

/// The training-step comparison on this machine's CPU: B1's `xtask/gpu/train_step.sh BUNDLE
/// OUT` run against a bundle-shaped folder `target/bench/train-step-bundle` (`bin/umcl` = the
/// release build here, `reference/train_step.py`), as `run.sh` runs it on a GPU host; the
/// script writes its `*.tsv` rows into `target/bench/raw/`.
fn train_step(root: &Path) -> Result<()> {
    let script = root.join("xtask/gpu/train_step.sh");
    let reference = root.join("crates/umcl-train/benches/reference/train_step.py");
    if !script.exists() || !reference.exists() {
        eprintln!(
            "xtask: bench: {} or {} is absent, skipping the training-step comparison",
            script.display(),
            reference.display()
        );
        return Ok(());
    }
    crate::status(crate::cargo(root).args(["build", "--release", "--package", "umcl"]))?;
    let bundle = root.join("target/bench/train-step-bundle");
    for sub in ["bin", "reference"] {
        std::fs::create_dir_all(bundle.join(sub))?;
    }
    link(&root.join("target/release/umcl"), &bundle.join("bin/umcl"))?;
    link(&reference, &bundle.join("reference/train_step.py"))?;
    let out = root.join("target/bench/raw");
    std::fs::create_dir_all(&out)?;
    crate::status(
        Command::new("bash")
            .arg(&script)
            .arg(&bundle)
            .arg(&out)
            .current_dir(root)
            .env("DEVICE", "cpu")
            .env("PYTHON", root.join(".venv-ref/bin/python")),
    )
}

/// Points `link` at `target` (replacing what was there).
fn link(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        std::fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}

fn modified_since(path: &Path, since: SystemTime) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since)
}

/// Rows from criterion's estimates written since `since`, in bench group `group`.
fn criterion_rows(root: &Path, since: SystemTime, group: &str) -> Result<Vec<Row>> {
    let base = root.join("target/criterion");
    let mut found = Vec::new();
    collect_estimates(&base, &mut found);
    found.sort();
    let device = std::env::var("UMCL_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let mut rows = Vec::new();
    for est in found {
        if !modified_since(&est, since) {
            continue;
        }
        let text = std::fs::read_to_string(&est)?;
        let Some(ns) = json_number_after(&text, "\"median\"", "\"point_estimate\"") else {
            continue;
        };
        let bench_json =
            std::fs::read_to_string(est.with_file_name("benchmark.json")).unwrap_or_default();
        let case = json_string(&bench_json, "full_id").unwrap_or_else(|| {
            est.parent()
                .and_then(|p| p.parent())
                .and_then(|p| p.strip_prefix(&base).ok())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        });
        let elements = json_number_after(&bench_json, "\"throughput\"", "\"Elements\"");
        let (ours, unit, higher) = match elements {
            Some(n) if ns > 0.0 => (n / (ns * 1e-9), "elements/s".to_string(), true),
            _ => (ns * 1e-6, "ms".to_string(), false),
        };
        rows.push(Row {
            group: group.to_string(),
            case,
            ours,
            reference: None,
            unit,
            higher_is_better: higher,
            device: device.clone(),
            note: "criterion median".into(),
        });
    }
    Ok(rows)
}

fn collect_estimates(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "report") {
                continue;
            }
            collect_estimates(&p, out);
        } else if p.file_name().is_some_and(|n| n == "estimates.json")
            && p.parent()
                .and_then(|d| d.file_name())
                .is_some_and(|n| n == "new")
        {
            out.push(p);
        }
    }
}

/// The number after `key`, looked for after `anchor` (a minimal reader for criterion's JSON).
fn json_number_after(text: &str, anchor: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(anchor)?..];
    let rest = &rest[rest.find(key)? + key.len()..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// A string field of a one-level JSON object (no escapes in the value).
fn json_string(text: &str, key: &str) -> Option<String> {
    let k = format!("\"{key}\":");
    let rest = text[text.find(&k)? + k.len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Rows of the side-by-side benches' raw files written since `since`; a line that does not
/// parse (a case whose run failed) is reported and left out.
fn raw_rows(root: &Path, since: SystemTime) -> Vec<Row> {
    let dir = root.join("target/bench/raw");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tsv") && modified_since(p, since))
        .collect();
    files.sort();
    let mut rows = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            eprintln!("xtask: bench: cannot read {}", f.display());
            continue;
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_raw_line(line) {
                Ok(row) => rows.push(row),
                Err(e) => eprintln!(
                    "xtask: bench: {}:{}: result line left out: {e:#}",
                    f.display(),
                    i + 1
                ),
            }
        }
    }
    rows
}

/// `group \t case \t ours \t reference \t unit \t lower|higher \t device \t note`; the
/// reference may be empty.
pub(crate) fn parse_raw_line(line: &str) -> Result<Row> {
    let f: Vec<&str> = line.split('\t').collect();
    if f.len() < 7 {
        bail!("expected at least 7 tab-separated fields, got {}", f.len());
    }
    let num = |s: &str, what: &str| -> Result<f64> {
        s.trim()
            .parse::<f64>()
            .with_context(|| format!("{what} `{s}` is not a number"))
    };
    let higher_is_better = match f[5].trim() {
        "higher" => true,
        "lower" => false,
        other => bail!("field 6 must be `lower` or `higher`, got `{other}`"),
    };
    Ok(Row {
        group: f[0].trim().to_string(),
        case: f[1].trim().to_string(),
        ours: num(f[2], "ours")?,
        reference: match f[3].trim() {
            "" => None,
            s => Some(num(s, "reference")?),
        },
        unit: f[4].trim().to_string(),
        higher_is_better,
        device: f[6].trim().to_string(),
        note: f.get(7).map(|s| s.trim().to_string()).unwrap_or_default(),
    })
}

/// Rows from the image bench's printed rates (`umcl  threads=1: 123.4 images/s`, and the same
/// for `reference pil` / `reference tensor`; the fastest reference is compared).
fn image_rows(lines: &[String]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    let mut refs: Vec<(String, String, f64)> = Vec::new(); // (threads, variant, rate)
    for l in lines {
        let Some((head, tail)) = l.split_once(": ") else {
            continue;
        };
        let Some(rate) = tail
            .trim()
            .strip_suffix(" images/s")
            .and_then(|r| r.trim().parse::<f64>().ok())
        else {
            continue;
        };
        let words: Vec<&str> = head.split_whitespace().collect();
        let Some(threads) = words
            .iter()
            .find_map(|w| w.strip_prefix("threads="))
            .map(str::to_string)
        else {
            continue;
        };
        match words.first() {
            Some(&"reference") => {
                refs.push((threads, words.get(1).unwrap_or(&"?").to_string(), rate))
            }
            Some(&"umcl") => {
                let best = refs
                    .iter()
                    .filter(|(t, _, _)| *t == threads)
                    .max_by(|a, b| a.2.total_cmp(&b.2));
                rows.push(Row {
                    group: "images".into(),
                    case: format!("decode+resize+augment 224, {threads} thread(s)"),
                    ours: rate,
                    reference: best.map(|b| b.2),
                    unit: "images/s".into(),
                    higher_is_better: true,
                    device: "cpu".into(),
                    note: best
                        .map(|b| format!("vs PIL + torchvision ({} variant)", b.1))
                        .unwrap_or_else(|| "no reference".into()),
                });
            }
            _ => {}
        }
    }
    rows
}

fn fmt_num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// What the numbers were measured on: CPU model, cores, OS, rustc.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores; {rustc}")
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc_date(secs)
}

/// Seconds since the epoch as `YYYY-MM-DD HH:MM UTC`.
fn utc_date(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Prints the table and writes `target/bench/results.{json,md}`.
pub(crate) fn report(root: &Path, rows: &[Row], command: &str) -> Result<()> {
    let header = ["group", "case", "ours", "reference", "ratio", "device"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.group.clone(),
                r.case.clone(),
                format!("{} {}", fmt_num(r.ours), r.unit),
                r.reference
                    .map(|v| format!("{} {}", fmt_num(v), r.unit))
                    .unwrap_or_else(|| "-".into()),
                r.ratio()
                    .map(|x| format!("{x:.2}x"))
                    .unwrap_or_else(|| "-".into()),
                r.device.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for c in &cells {
        for (w, s) in widths.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |c: &[String]| {
        c.iter()
            .zip(widths)
            .map(|(s, w)| format!("{s:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("\n{}", line(&header.map(str::to_string)).trim_end());
    for c in &cells {
        println!("{}", line(c).trim_end());
    }
    println!("(ratio: how many times faster ours is than the reference)");

    let (date, machine) = (utc_now(), machine());
    let dir = root.join("target/bench");
    std::fs::create_dir_all(&dir)?;
    let mut md = format!(
        "# umcl benchmarks\n\n- date: {date}\n- machine: {machine}\n- command: `{command}`\n\
         - ratio: how many times faster ours is than the reference (reference time / ours, \
         or our rate / reference rate)\n\n\
         | group | case | ours | reference | ratio | device | note |\n|---|---|---|---|---|---|---|\n"
    );
    for (c, r) in cells.iter().zip(rows) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            r.note.replace('|', "/")
        );
    }
    write_atomic(&dir.join("results.md"), &md)?;
    let mut json = format!(
        "{{\n  \"date\": \"{}\",\n  \"machine\": \"{}\",\n  \"command\": \"{}\",\n  \"results\": [",
        json_escape(&date),
        json_escape(&machine),
        json_escape(command)
    );
    for (i, r) in rows.iter().enumerate() {
        let opt = |v: Option<f64>| v.map_or("null".to_string(), |x| format!("{x}"));
        let _ = write!(
            json,
            "{}\n    {{\"group\": \"{}\", \"case\": \"{}\", \"ours\": {}, \"reference\": {}, \
             \"unit\": \"{}\", \"higher_is_better\": {}, \"ratio\": {}, \"device\": \"{}\", \
             \"note\": \"{}\"}}",
            if i == 0 { "" } else { "," },
            json_escape(&r.group),
            json_escape(&r.case),
            r.ours,
            opt(r.reference),
            json_escape(&r.unit),
            r.higher_is_better,
            opt(r.ratio()),
            json_escape(&r.device),
            json_escape(&r.note)
        );
    }
    json.push_str("\n  ]\n}\n");
    write_atomic(&dir.join("results.json"), &json)?;
    eprintln!(
        "xtask: bench: wrote {} and {}",
        dir.join("results.json").display(),
        dir.join("results.md").display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_line_parses_and_ratio_means_faster() {
        let time = parse_raw_line("losses\tclip B=1024\t10\t15\tms\tlower\tcpu\tnote").unwrap();
        assert_eq!(time.reference, Some(15.0));
        assert!((time.ratio().unwrap() - 1.5).abs() < 1e-12);
        let rate =
            parse_raw_line("labeler\tIU reports\t30000\t10000\treports/s\thigher\tcpu").unwrap();
        assert!((rate.ratio().unwrap() - 3.0).abs() < 1e-12);
        let none = parse_raw_line("losses\tx\t1\t\tms\tlower\tcuda\t").unwrap();
        assert_eq!(none.ratio(), None);
        assert!(parse_raw_line("losses\tx\t1\t2\tms\tfaster\tcpu").is_err());
        assert!(parse_raw_line("losses\tx\tone\t2\tms\tlower\tcpu").is_err());
    }

    #[test]
    fn criterion_json_fields() {
        let est = r#"{"mean":{"point_estimate":5.0},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":2.5e6}}"#;
        assert_eq!(
            json_number_after(est, "\"median\"", "\"point_estimate\""),
            Some(2.5e6)
        );
        let b = r#"{"group_id":"labeler","throughput":{"Elements":1979},"full_id":"labeler/label_sections"}"#;
        assert_eq!(
            json_number_after(b, "\"throughput\"", "\"Elements\""),
            Some(1979.0)
        );
        assert_eq!(
            json_string(b, "full_id").as_deref(),
            Some("labeler/label_sections")
        );
        let none = r#"{"throughput":null,"full_id":"x"}"#;
        assert_eq!(
            json_number_after(none, "\"throughput\"", "\"Elements\""),
            None
        );
    }

    #[test]
    fn image_lines_pick_the_fastest_reference() {
        let lines: Vec<String> = [
            "reference pil    threads=1:     40.0 images/s",
            "reference tensor threads=1:     50.0 images/s",
            "umcl             threads=1:    100.0 images/s",
            "reference pil    threads=2:     70.0 images/s",
            "umcl             threads=2:    140.0 images/s",
            "ratio umcl / fastest reference (tensor), threads=1: 2.00x",
        ]
        .map(String::from)
        .to_vec();
        let rows = image_rows(&lines);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].reference, Some(50.0));
        assert!((rows[0].ratio().unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(rows[1].reference, Some(70.0));
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        // `date -u -d @1700000000` and a leap day.
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_date(1_709_208_000), "2024-02-29 12:00 UTC");
    }
}
