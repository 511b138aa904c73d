//! Labeler speed on one core, in reports per second (target: at least 50,000/s).
//!
//! Reads the IU chest X-ray reports from `../shared/data/iu-xray-reports/reports-dev.csv`
//! when present; otherwise falls back to a small built-in set of report-like texts and says
//! so (those are shorter than real reports, so their rate is not comparable).
//!
//! `cargo bench -p umcl-data --bench labeler`; criterion prints the rate as `thrpt` in
//! elements (reports) per second.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use umcl_data::labeler::Labeler;

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

fn load_reports() -> (Vec<(String, String)>, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/iu-xray-reports/reports-dev.csv");
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
}

criterion_group!(benches, bench_labeler);
criterion_main!(benches);
