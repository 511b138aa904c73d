//! Labeler speed on one core, in reports per second (target: at least 50,000/s).
//!
//! Reads the IU chest X-ray reports from `../shared/data/iu-xray-reports/reports-dev.csv`
//! when present; otherwise falls back to a small built-in set of report-like texts and says
//! so (those are shorter than real reports, so their rate is not comparable).
//!
//! `cargo bench -p umcl-data --bench labeler`; criterion prints the rate as `thrpt` in
//! elements (reports) per second.
//!
//! Side by side (with the IU reports and `.venv-ref` present): the Python regex labeler
//! `benches/reference/labeler.py`, which applies the same rule file the same way, labels the
//! same reports; the bench prints how often the two agree (reports with all 17 labels equal,
//! and single labels) with the first disagreements, times both over 3 passes on one core, and
//! prints the comparison as a result line (`umcl-bench-row`, the format `cargo xtask bench`
//! reads; see xtask/src/bench.rs).

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use umcl_data::labeler::Labeler;

mod common;
use common::reference_json;

/// Report-like texts for machines without the shared data (written for this bench).
const FALLBACK: &[(&str, &str)] = &[
    (
        "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
        "No acute cardiopulmonary disease.",
    ),
    (
        "Heart size is mildly enlarged. There is a small left pleural effusion with adjacent \
         basilar atelectasis. No pneumothorax.",
        "Cardiomegaly with small left effusion.",
    ),
    (
        "Right internal jugular central venous catheter tip in the SVC. Patchy opacity in the \
         right lower lobe which may represent pneumonia.",
        "Possible right lower lobe pneumonia. Atelectasis cannot be excluded.",
    ),
    (
        "No focal consolidation, pleural effusion, or pneumothorax. Calcified granuloma in the \
         left upper lobe. Degenerative changes of the thoracic spine.",
        "No active disease.",
    ),
    (
        "Hyperinflated lungs compatible with emphysema. Small hiatal hernia. Healed left rib \
         fractures. Sternotomy wires are intact.",
        "Emphysema. No acute process.",
    ),
];

fn reports_csv() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/iu-xray-reports/reports-dev.csv")
}

fn load_reports() -> (Vec<(String, String)>, String) {
    let path = reports_csv();
    let fallback = |why: String| {
        let reports = FALLBACK
            .iter()
            .map(|(f, i)| (f.to_string(), i.to_string()))
            .collect();
        (
            reports,
            format!(
                "built-in fallback set of {} reports ({why})",
                FALLBACK.len()
            ),
        )
    };
    let Ok(mut reader) = csv::Reader::from_path(&path) else {
        return fallback(format!("{} is absent", path.display()));
    };
    let Ok(headers) = reader.headers().cloned() else {
        return fallback(format!("{} has no readable header", path.display()));
    };
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(f), Some(i)) = (col("findings"), col("impression")) else {
        return fallback(format!("{} lacks findings/impression", path.display()));
    };
    let reports: Vec<(String, String)> = reader
        .records()
        .filter_map(Result::ok)
        .map(|r| (r[f].to_string(), r[i].to_string()))
        .collect();
    let n = reports.len();
    (reports, format!("{n} IU reports from {}", path.display()))
}

fn bench_labeler(c: &mut Criterion) {
    let labeler = Labeler::builtin();
    let (reports, source) = load_reports();
    let bytes: usize = reports.iter().map(|(f, i)| f.len() + i.len()).sum();
    println!(
        "labeler bench on {source}; mean report {} bytes",
        bytes / reports.len().max(1)
    );
    let mut group = c.benchmark_group("labeler");
    group.throughput(Throughput::Elements(reports.len() as u64));
    group.bench_function("label_sections", |b| {
        b.iter(|| {
            let mut positives = 0usize;
            for (findings, impression) in &reports {
                let labels = labeler.label_sections(black_box(&[findings, impression]));
                positives += labels
                    .0
                    .iter()
                    .filter(|s| **s == umcl_data::schema::LabelState::Positive)
                    .count();
            }
            positives
        })
    });
    group.finish();
    side_by_side(&labeler);
}

/// The IU reports as (uid, findings, impression), or `None` when the file is absent.
fn reports_with_uid(path: &Path) -> Option<Vec<(String, String, String)>> {
    let mut reader = csv::Reader::from_path(path).ok()?;
    let headers = reader.headers().ok()?.clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (u, f, i) = (col("uid")?, col("findings")?, col("impression")?);
    Some(
        reader
            .records()
            .filter_map(Result::ok)
            .map(|r| (r[u].to_string(), r[f].to_string(), r[i].to_string()))
            .collect(),
    )
}

/// Agreement with the Python regex labeler and reports/s of both, on the IU reports.
fn side_by_side(labeler: &Labeler) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let csv_path = reports_csv();
    let Some(reports) = reports_with_uid(&csv_path) else {
        eprintln!(
            "labeler bench: {} is absent, skipping the Python side by side",
            csv_path.display()
        );
        return;
    };
    let python = root.join(".venv-ref/bin/python");
    if !python.exists() {
        eprintln!(
            "labeler bench: {} is absent, skipping the Python side by side (cargo xtask ref-venv)",
            python.display()
        );
        return;
    }
    let raw = root.join("target/bench/raw");
    std::fs::create_dir_all(&raw).expect("the bench output folder can be created");
    let theirs_path = raw.join("labeler-python-labels.txt");
    let passes = 3;
    let out = std::process::Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/labeler.py"))
        .arg("--rules")
        .arg(root.join("crates/umcl-data/data/labeler/chest-xray.toml"))
        .arg("--reports")
        .arg(&csv_path)
        .arg("--labels-out")
        .arg(&theirs_path)
        .args(["--passes", &passes.to_string()])
        .output()
        .expect("the reference labeler starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(theirs_rate) = reference_json(&stdout).and_then(|v| v["reports_per_s"].as_f64())
    else {
        eprintln!(
            "labeler bench: the Python labeler failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    };
    let theirs: HashMap<String, Vec<i8>> = std::fs::read_to_string(&theirs_path)
        .expect("the reference wrote its labels")
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let uid = f.next()?.to_string();
            Some((uid, f.filter_map(|c| c.parse().ok()).collect()))
        })
        .collect();

    // Agreement, report by report and label by label.
    let (mut same_reports, mut same_labels, mut labels_total) = (0usize, 0usize, 0usize);
    let mut shown = 0;
    for (uid, findings, impression) in &reports {
        let ours: Vec<i8> = labeler
            .label_sections(&[findings, impression])
            .0
            .iter()
            .map(|s| s.code())
            .collect();
        let Some(py) = theirs.get(uid) else {
            labels_total += ours.len();
            continue;
        };
        let equal = ours.iter().zip(py).filter(|(a, b)| a == b).count();
        same_labels += equal;
        labels_total += ours.len();
        if equal == ours.len() && py.len() == ours.len() {
            same_reports += 1;
        } else if shown < 5 {
            shown += 1;
            let diff: Vec<String> = umcl_data::schema::CHEST_XRAY_KEYS
                .iter()
                .zip(ours.iter().zip(py))
                .filter(|(_, (a, b))| a != b)
                .map(|(k, (a, b))| format!("{k}: umcl {a}, python {b}"))
                .collect();
            println!("  disagreement, report uid {uid}: {}", diff.join("; "));
        }
    }
    let n = reports.len();
    let report_agree = same_reports as f64 / n.max(1) as f64;
    let label_agree = same_labels as f64 / labels_total.max(1) as f64;
    println!(
        "agreement with the Python regex labeler on {n} IU reports: {same_reports} reports \
         identical ({:.2}%), {:.3}% of labels",
        100.0 * report_agree,
        100.0 * label_agree
    );

    // Speed, timed like the reference (warm-up, then the same passes over the same reports).
    for (_, f, i) in reports.iter().take(50) {
        black_box(labeler.label_sections(&[f, i]));
    }
    let t0 = Instant::now();
    for _ in 0..passes {
        for (_, f, i) in &reports {
            black_box(labeler.label_sections(&[f, i]));
        }
    }
    let ours_rate = (n * passes) as f64 / t0.elapsed().as_secs_f64();
    println!(
        "labeler reports/s on one core: umcl {ours_rate:.0}, Python regex {theirs_rate:.0}: {:.1}x",
        ours_rate / theirs_rate
    );
    // The result line: tag, group, case, ours, reference, unit, lower|higher, device, note.
    println!(
        "umcl-bench-row\tlabeler\t{n} IU reports, one core\t{ours_rate:.1}\t{theirs_rate:.1}\t\
         reports/s\thigher\tcpu\tvs Python regex labeler; agreement {:.2}% of reports, {:.3}% \
         of labels",
        100.0 * report_agree,
        100.0 * label_agree
    );
}

criterion_group!(benches, bench_labeler);
criterion_main!(benches);
