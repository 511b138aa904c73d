//! `cargo xtask bench`: the criterion suites and the side-by-side comparisons, one table.
//!
//! Each group runs `cargo bench` on some bench targets (or, for `train-step`, the training-step
//! comparison script, and for `python`, the Python package's comparison script) and keeps what
//! the commands print on stdout. Rows come from two places:
//! - **result lines** (the side-by-side benches): every comparison prints one line per case in
//!   the format below, read from the captured stdout by [`parse_result_line`];
//! - criterion's `target/criterion/**/new/{estimates,benchmark}.json` written during this run
//!   (ours only: the median time, and the rate when the bench declared a throughput). A
//!   criterion bench never sees its own measurement (criterion 0.5 keeps it to its reports), so
//!   it cannot print it as a result line; these files are read with serde_json instead.
//!
//! # Result lines
//!
//! One line per case, nine tab-separated fields, the first being the fixed tag
//! [`RESULT_TAG`]:
//!
//! ```text
//! umcl-bench-row  GROUP  CASE  OURS  REFERENCE  UNIT  lower|higher  DEVICE  NOTE
//! ```
//!
//! - `GROUP`, `CASE`: the table's first two columns (`losses`, `clip B=1024`);
//! - `OURS`, `REFERENCE`: decimal numbers in `UNIT` (`ms`, `images/s`, ...); `REFERENCE` may be
//!   empty (no reference ran);
//! - `lower|higher`: which way is better (`lower` for times, `higher` for rates);
//! - `DEVICE`: what it ran on (`cpu`, `cuda`, a GPU's name);
//! - `NOTE`: free text, may be empty (no tabs).
//!
//! Lines without the tag are ignored; a tagged line that does not parse is an error naming the
//! line (its group is reported as failed). Emitters: `crates/umcl-data/benches/labeler.rs`,
//! `images.rs` and `dicom.rs`, `crates/umcl-py/benches/compare.py`,
//! `crates/umcl-losses/benches/losses_vs_torch.rs`, `xtask/gpu/train_step.sh` and
//! `xtask/gpu/dist_step.sh`; `xtask/gpu/run.sh` collects the same lines on a GPU host.
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
use serde::{Deserialize, Serialize};

/// The first field of a result line.
pub(crate) const RESULT_TAG: &str = "umcl-bench-row";

/// A comparison script of a group: its stdout lines (the result lines among them) and whether
/// it succeeded.
type Script = fn(&Path) -> (Vec<String>, Result<()>);

/// One bench group: what `cargo xtask bench NAME` runs.
struct Group {
    name: &'static str,
    about: &'static str,
    /// `cargo bench` invocations: (package, bench targets; empty = all of the package's).
    suites: &'static [(&'static str, &'static [&'static str])],
    /// A comparison script run before the suites.
    script: Option<Script>,
    /// Part of `cargo xtask bench` without a group.
    default: bool,
}

const GROUPS: &[Group] = &[
    Group {
        name: "data",
        about: "umcl-data: labeler (vs a Python regex labeler), image pipeline (vs PIL + torchvision), DICOM (vs pydicom), phantom, loader",
        suites: &[("umcl-data", &[])],
        script: None,
        default: true,
    },
    Group {
        name: "labeler",
        about: "the report labeler vs a Python regex labeler with the same rules (part of data)",
        suites: &[("umcl-data", &["labeler"])],
        script: None,
        default: false,
    },
    Group {
        name: "images",
        about: "the image pipeline vs PIL + torchvision (part of data)",
        suites: &[("umcl-data", &["images"])],
        script: None,
        default: false,
    },
    Group {
        name: "dicom",
        about: "DICOM (2500x2048, 12-bit) to the 224 tensor vs pydicom + numpy + PIL (part of data)",
        suites: &[("umcl-data", &["dicom"])],
        script: None,
        default: false,
    },
    Group {
        name: "models",
        about: "umcl-models: encoder forward/backward (criterion)",
        suites: &[("umcl-models", &[])],
        script: None,
        default: true,
    },
    Group {
        name: "losses",
        about: "umcl-losses: losses and memory (criterion), fwd+bwd vs PyTorch eager at B=1024, 4096",
        suites: &[("umcl-losses", &[])],
        script: None,
        default: true,
    },
    Group {
        name: "losses-vs-torch",
        about: "only the losses side by side with PyTorch eager (part of losses)",
        suites: &[("umcl-losses", &["losses_vs_torch"])],
        script: None,
        default: false,
    },
    Group {
        name: "python",
        about: "the Python package vs a Python regex labeler, PIL + torchvision and DataLoader (needs ../shared/data)",
        suites: &[],
        script: Some(python_compare),
        default: true,
    },
    Group {
        name: "train-step",
        about: "the training step vs PyTorch eager on the CPU (slow: minutes on 2 cores)",
        suites: &[],
        script: Some(train_step),
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
        let mut ok = true;
        if let Some(script) = group.script {
            let (lines, result) = script(root);
            printed.extend(lines);
            if let Err(e) = result {
                eprintln!("xtask: bench: group {}: {e:#}", group.name);
                ok = false;
            }
        }
        for (package, benches) in group.suites {
            if !package_has_benches(root, package)? {
                eprintln!("xtask: bench: {package} has no benches, skipping");
                continue;
            }
            let mut cmd = crate::cargo(root);
            cmd.args(["bench", "--package", package]);
            if *package == "umcl-data" {
                // The decoder the CLI ships with (its default feature), whose speed
                // docs/benchmarks.md records; alone, umcl-data builds with zune-jpeg.
                cmd.args(["--features", "libjpeg"]);
            }
            for b in *benches {
                cmd.args(["--bench", b]);
            }
            let (lines, result) = run_capturing(&mut cmd);
            printed.extend(lines);
            if let Err(e) = result {
                eprintln!("xtask: bench: group {}: {e:#}", group.name);
                ok = false;
            }
        }
        rows.extend(criterion_rows(root, started, group.name));
        let (found, bad) = result_rows(&printed);
        rows.extend(found);
        for e in &bad {
            eprintln!("xtask: bench: group {}: {e:#}", group.name);
        }
        if !ok || !bad.is_empty() {
            failed.push(group.name);
        }
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

/// Whether the package has bench targets: a `[[bench]]` in its manifest, or a file cargo
/// finds on its own (`benches/*.rs`, `benches/*/main.rs`). A `benches/` folder holding only
/// reference scripts does not count.
fn package_has_benches(root: &Path, package: &str) -> Result<bool> {
    let dir = root.join("crates").join(package);
    let path = dir.join("Cargo.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let declared = manifest
        .get("bench")
        .and_then(toml::Value::as_array)
        .is_some_and(|benches| !benches.is_empty());
    let found = std::fs::read_dir(dir.join("benches")).is_ok_and(|entries| {
        entries
            .flatten()
            .map(|e| e.path())
            .any(|p| p.extension().is_some_and(|e| e == "rs") || p.join("main.rs").is_file())
    });
    Ok(declared || found)
}

/// Runs a command, echoing and keeping its stdout lines (stderr passes through). The lines
/// printed before a failure are kept too: a bench binary that fails late has already printed
/// the result lines of its earlier cases.
fn run_capturing(cmd: &mut Command) -> (Vec<String>, Result<()>) {
    let line = format!("{cmd:?}");
    eprintln!("xtask: $ {line}");
    let mut kept = Vec::new();
    let mut child = match cmd.stdout(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(e) => {
            return (
                kept,
                Err(e).with_context(|| format!("could not start {line}")),
            )
        }
    };
    let mut read = Ok(());
    if let Some(out) = child.stdout.take() {
        for l in BufReader::new(out).lines() {
            match l {
                Ok(l) => {
                    println!("{l}");
                    kept.push(l);
                }
                Err(e) => {
                    read = Err(e).with_context(|| format!("reading the output of {line}"));
                    break;
                }
            }
        }
    }
    let result = match child.wait() {
        Ok(status) if status.success() => read,
        Ok(status) => Err(anyhow::anyhow!("{line} failed ({status})")),
        Err(e) => Err(e).with_context(|| format!("waiting for {line}")),
    };
    (kept, result)
}

/// The training-step comparison on this machine's CPU: `xtask/gpu/train_step.sh BUNDLE OUT`
/// run against a bundle-shaped folder `target/bench/train-step-bundle` (`bin/umcl` = the
/// release build here, `reference/train_step.py`), as `run.sh` runs it on a GPU host. Returns
/// the script's stdout lines (its result lines among them) and whether it succeeded.
fn train_step(root: &Path) -> (Vec<String>, Result<()>) {
    let script = root.join("xtask/gpu/train_step.sh");
    let reference = root.join("crates/umcl-train/benches/reference/train_step.py");
    if !script.exists() || !reference.exists() {
        eprintln!(
            "xtask: bench: {} or {} is absent, skipping the training-step comparison",
            script.display(),
            reference.display()
        );
        return (Vec::new(), Ok(()));
    }
    let prepare = || -> Result<PathBuf> {
        crate::status(crate::cargo(root).args(["build", "--release", "--package", "umcl"]))?;
        let bundle = root.join("target/bench/train-step-bundle");
        for sub in ["bin", "reference"] {
            let dir = bundle.join(sub);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        link(&root.join("target/release/umcl"), &bundle.join("bin/umcl"))?;
        link(&reference, &bundle.join("reference/train_step.py"))?;
        Ok(bundle)
    };
    let bundle = match prepare() {
        Ok(bundle) => bundle,
        Err(e) => return (Vec::new(), Err(e)),
    };
    // The script also keeps each run's JSON and log (and a copy of its rows) under OUT.
    let out = root.join("target/bench/raw");
    if let Err(e) = std::fs::create_dir_all(&out) {
        return (
            Vec::new(),
            Err(e).with_context(|| format!("creating {}", out.display())),
        );
    }
    run_capturing(
        Command::new("bash")
            .arg(&script)
            .arg(&bundle)
            .arg(&out)
            .current_dir(root)
            .env("DEVICE", "cpu")
            .env("PYTHON", root.join(".venv-ref/bin/python")),
    )
}

/// The Python package side by side with its Python references
/// (`crates/umcl-py/benches/compare.py`), run by `.venv-ref`'s python with the release build
/// of the package installed there. Returns the script's stdout lines and whether it succeeded.
fn python_compare(root: &Path) -> (Vec<String>, Result<()>) {
    let data = root.join("../shared/data");
    let prepare = || -> Result<PathBuf> {
        if !data.join("covid-cxr-512").is_dir() || !data.join("iu-xray-reports").is_dir() {
            bail!(
                "{} with covid-cxr-512 and iu-xray-reports is missing",
                data.display()
            );
        }
        let venv = crate::setup::ensure_ref_venv(root)?;
        crate::python::install(root, &venv, true)
    };
    match prepare() {
        Ok(python) => run_capturing(
            Command::new(python)
                .arg(root.join("crates/umcl-py/benches/compare.py"))
                .arg("--data")
                .arg(&data)
                .current_dir(root),
        ),
        Err(e) => (Vec::new(), Err(e)),
    }
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

/// The part of criterion's `new/estimates.json` we read.
#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    /// Nanoseconds per iteration.
    point_estimate: f64,
}

/// The part of criterion's `new/benchmark.json` we read.
#[derive(Deserialize)]
struct BenchmarkId {
    full_id: String,
    /// `{"Elements": n}`, `{"Bytes": n}` or null.
    throughput: Option<Throughput>,
}

#[derive(Deserialize)]
struct Throughput {
    #[serde(rename = "Elements")]
    elements: Option<f64>,
}

/// Reads and parses one of criterion's JSON files.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Rows from criterion's estimates written since `since`, in bench group `group`. A file that
/// cannot be read is reported and left out.
fn criterion_rows(root: &Path, since: SystemTime, group: &str) -> Vec<Row> {
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
        let ns = match read_json::<Estimates>(&est) {
            Ok(e) => e.median.point_estimate,
            Err(e) => {
                eprintln!("xtask: bench: criterion result left out: {e:#}");
                continue;
            }
        };
        // benchmark.json names the case and its throughput; without it the folder names the
        // case and the time is reported.
        let id = read_json::<BenchmarkId>(&est.with_file_name("benchmark.json")).ok();
        let case = id.as_ref().map(|b| b.full_id.clone()).unwrap_or_else(|| {
            est.parent()
                .and_then(|p| p.parent())
                .and_then(|p| p.strip_prefix(&base).ok())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        });
        let elements = id.and_then(|b| b.throughput).and_then(|t| t.elements);
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
    rows
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

/// The rows among a command's stdout lines, and an error for each tagged line that does not
/// parse.
fn result_rows(lines: &[String]) -> (Vec<Row>, Vec<anyhow::Error>) {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for line in lines {
        match parse_result_line(line) {
            Ok(Some(row)) => rows.push(row),
            Ok(None) => {}
            Err(e) => bad.push(e),
        }
    }
    (rows, bad)
}

/// Parses one line of a bench's output: `None` for a line that is not a result line (no
/// [`RESULT_TAG`] field at its start), the row for a well-formed one, and an error quoting the
/// line for a malformed one.
pub(crate) fn parse_result_line(line: &str) -> Result<Option<Row>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let Some(rest) = line.strip_prefix(RESULT_TAG) else {
        return Ok(None);
    };
    let Some(rest) = rest.strip_prefix('\t') else {
        // `umcl-bench-rows ...` and the like are not ours; a tag followed by anything but a tab
        // is a malformed result line.
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            bail!("malformed result line {line:?}: the tag must be followed by a tab");
        }
        return Ok(None);
    };
    parse_fields(rest)
        .map(Some)
        .with_context(|| format!("malformed result line {line:?}"))
}

/// The eight fields after the tag.
fn parse_fields(fields: &str) -> Result<Row> {
    let f: Vec<&str> = fields.split('\t').collect();
    if f.len() != 8 {
        bail!(
            "expected 9 tab-separated fields ({RESULT_TAG}, group, case, ours, reference, unit, \
             lower|higher, device, note), got {}",
            f.len() + 1
        );
    }
    let num = |s: &str, what: &str| -> Result<f64> {
        match s.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => bail!("{what} `{s}` is not a finite number"),
        }
    };
    let text = |s: &str, what: &str| -> Result<String> {
        match s.trim() {
            "" => bail!("the {what} field is empty"),
            t => Ok(t.to_string()),
        }
    };
    let higher_is_better = match f[5].trim() {
        "higher" => true,
        "lower" => false,
        other => bail!("the 7th field must be `lower` or `higher`, got `{other}`"),
    };
    Ok(Row {
        group: text(f[0], "group")?,
        case: text(f[1], "case")?,
        ours: num(f[2], "ours")?,
        reference: match f[3].trim() {
            "" => None,
            s => Some(num(s, "reference")?),
        },
        unit: text(f[4], "unit")?,
        higher_is_better,
        device: text(f[6], "device")?,
        note: f[7].trim().to_string(),
    })
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

/// `target/bench/results.json`.
#[derive(Serialize)]
struct ResultsFile<'a> {
    date: &'a str,
    machine: &'a str,
    command: &'a str,
    results: Vec<ResultEntry<'a>>,
}

/// One row of `results.json`: the [`Row`] and its ratio.
#[derive(Serialize)]
struct ResultEntry<'a> {
    group: &'a str,
    case: &'a str,
    ours: f64,
    reference: Option<f64>,
    unit: &'a str,
    higher_is_better: bool,
    ratio: Option<f64>,
    device: &'a str,
    note: &'a str,
}

impl<'a> From<&'a Row> for ResultEntry<'a> {
    fn from(r: &'a Row) -> Self {
        ResultEntry {
            group: &r.group,
            case: &r.case,
            ours: r.ours,
            reference: r.reference,
            unit: &r.unit,
            higher_is_better: r.higher_is_better,
            ratio: r.ratio(),
            device: &r.device,
            note: &r.note,
        }
    }
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
    let results = ResultsFile {
        date: &date,
        machine: &machine,
        command,
        results: rows.iter().map(ResultEntry::from).collect(),
    };
    let mut json = serde_json::to_string_pretty(&results).context("encoding results.json")?;
    json.push('\n');
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

    fn row(line: &str) -> Row {
        match parse_result_line(line) {
            Ok(Some(row)) => row,
            other => panic!("{line:?} should be a result line, got {other:?}"),
        }
    }

    #[test]
    fn result_line_parses_and_ratio_means_faster() {
        let time = row("umcl-bench-row\tlosses\tclip B=1024\t10\t15\tms\tlower\tcpu\tnote");
        assert_eq!(time.group, "losses");
        assert_eq!(time.case, "clip B=1024");
        assert_eq!(time.reference, Some(15.0));
        assert_eq!(time.note, "note");
        assert!((time.ratio().unwrap() - 1.5).abs() < 1e-12);
        let rate =
            row("umcl-bench-row\tlabeler\tIU reports\t30000\t10000\treports/s\thigher\tcpu\t");
        assert!(rate.higher_is_better);
        assert!((rate.ratio().unwrap() - 3.0).abs() < 1e-12);
        let none = row("umcl-bench-row\tlosses\tx\t1\t\tms\tlower\tcuda\t\r");
        assert_eq!(none.reference, None);
        assert_eq!(none.ratio(), None);
    }

    #[test]
    fn lines_without_the_tag_are_not_results() {
        for line in [
            "",
            "image_pipeline_224/umcl_1_thread  time: [1.2 s 1.3 s 1.4 s]",
            "losses\tclip\t10\t15\tms\tlower\tcpu\tnote",
            "umcl-bench-rows\tsomething else",
            "reference pil    threads=1:     40.0 images/s",
        ] {
            assert!(
                matches!(parse_result_line(line), Ok(None)),
                "{line:?} is not a result line"
            );
        }
    }

    #[test]
    fn malformed_result_lines_are_errors_naming_the_line() {
        let cases = [
            (
                "umcl-bench-row\tlosses\tx\t1\t2\tms\tfaster\tcpu\t",
                "`lower` or `higher`",
            ),
            (
                "umcl-bench-row\tlosses\tx\tone\t2\tms\tlower\tcpu\t",
                "ours `one`",
            ),
            (
                "umcl-bench-row\tlosses\tx\t1\tNaN\tms\tlower\tcpu\t",
                "reference `NaN`",
            ),
            ("umcl-bench-row\tlosses\tx\t1\t2\tms\tlower\tcpu", "got 8"),
            (
                "umcl-bench-row\tlosses\tx\t1\t2\tms\tlower\tcpu\tn\textra",
                "got 10",
            ),
            (
                "umcl-bench-row\t\tx\t1\t2\tms\tlower\tcpu\t",
                "group field is empty",
            ),
            (
                "umcl-bench-row losses x 1 2 ms lower cpu",
                "followed by a tab",
            ),
        ];
        for (line, why) in cases {
            let err = match parse_result_line(line) {
                Err(e) => format!("{e:#}"),
                Ok(r) => panic!("{line:?} should not parse, got {r:?}"),
            };
            assert!(
                err.contains(&format!("{line:?}")),
                "the error names the line: {err}"
            );
            assert!(err.contains(why), "the error says why ({why}): {err}");
        }
    }

    #[test]
    fn result_rows_keep_rows_and_report_bad_lines() {
        let lines: Vec<String> = [
            "Benchmarking labeler/label_sections: Warming up",
            "umcl-bench-row\timages\t1 thread\t100\t50\timages/s\thigher\tcpu\tvs PIL",
            "umcl-bench-row\timages\t2 threads\t140\t\timages/s\thigher\tcpu\t",
            "umcl-bench-row\timages\tbroken",
        ]
        .map(String::from)
        .to_vec();
        let (rows, bad) = result_rows(&lines);
        assert_eq!(rows.len(), 2);
        assert!((rows[0].ratio().unwrap() - 2.0).abs() < 1e-12);
        assert_eq!(rows[1].reference, None);
        assert_eq!(bad.len(), 1);
        assert!(format!("{:#}", bad[0]).contains("broken"));
    }

    #[test]
    fn criterion_json_fields() {
        let est: Estimates = serde_json::from_str(
            r#"{"mean":{"point_estimate":5.0},"median":{"confidence_interval":{"lower_bound":1.0},"point_estimate":2.5e6}}"#,
        )
        .unwrap();
        assert_eq!(est.median.point_estimate, 2.5e6);
        let b: BenchmarkId = serde_json::from_str(
            r#"{"group_id":"labeler","throughput":{"Elements":1979},"full_id":"labeler/label_sections"}"#,
        )
        .unwrap();
        assert_eq!(b.full_id, "labeler/label_sections");
        assert_eq!(b.throughput.and_then(|t| t.elements), Some(1979.0));
        for throughput in ["null", r#"{"Bytes":4096}"#] {
            let b: BenchmarkId =
                serde_json::from_str(&format!(r#"{{"throughput":{throughput},"full_id":"x"}}"#))
                    .unwrap();
            assert_eq!(b.throughput.and_then(|t| t.elements), None);
        }
    }

    #[test]
    fn results_json_has_every_field_and_the_ratio() {
        let rows = [
            row("umcl-bench-row\tlosses\tclip \"B\"=1024\t10\t15\tms\tlower\tcpu\ta \\ note"),
            row("umcl-bench-row\tmodels\tvit\t3\t\tms\tlower\tcpu\t"),
        ];
        let file = ResultsFile {
            date: "2026-12-05 10:00 UTC",
            machine: "test box",
            command: "cargo xtask bench losses",
            results: rows.iter().map(ResultEntry::from).collect(),
        };
        let v: serde_json::Value =
            serde_json::from_str(&serde_json::to_string_pretty(&file).unwrap()).unwrap();
        assert_eq!(v["command"], "cargo xtask bench losses");
        let first = &v["results"][0];
        assert_eq!(first["case"], "clip \"B\"=1024");
        assert_eq!(first["note"], "a \\ note");
        assert_eq!(first["reference"], 15.0);
        assert_eq!(first["ratio"], 1.5);
        assert_eq!(first["higher_is_better"], false);
        assert!(v["results"][1]["reference"].is_null());
        assert!(v["results"][1]["ratio"].is_null());
    }

    #[test]
    fn every_group_runs_something() {
        let root = crate::workspace_root();
        for g in GROUPS {
            assert!(
                !g.suites.is_empty() || g.script.is_some(),
                "group {} runs nothing",
                g.name
            );
            for (package, _) in g.suites {
                assert!(
                    package_has_benches(&root, package).unwrap(),
                    "group {}: {package} has no benches",
                    g.name
                );
            }
        }
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), "1970-01-01 00:00 UTC");
        // `date -u -d @1700000000`, a leap day, March 1 of 2100 (not a leap year) and the
        // last second of a year.
        assert_eq!(utc_date(1_700_000_000), "2023-11-14 22:13 UTC");
        assert_eq!(utc_date(1_709_208_000), "2024-02-29 12:00 UTC");
        assert_eq!(utc_date(4_107_542_400), "2100-03-01 00:00 UTC");
        assert_eq!(utc_date(1_767_225_599), "2025-12-31 23:59 UTC");
    }
}
