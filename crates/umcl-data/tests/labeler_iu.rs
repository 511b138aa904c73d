//! Scores the built-in labeler against the human MeSH index terms of the IU chest X-ray
//! reports in `../shared/data/iu-xray-reports/reports-dev.csv`, as that data's README says:
//! per label precision/recall/F1 of "labeler says 1" against "a mapped head term is present",
//! and the macro-F1 over labels with at least 10 positives, which must reach 0.90.
//!
//! Skips with a notice when `../shared/data` is absent (a fresh clone has none). Run with
//! `-- --nocapture` to see the table. `UMCL_LABELER_DUMP=<label key>` also prints that label's
//! false positives and false negatives, for whoever improves the rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use umcl_data::labeler::Labeler;
use umcl_data::schema::{LabelState, CHEST_XRAY_KEYS};

/// The README's mapping from MeSH head terms to label keys.
const MESH_TO_LABEL: &[(&str, &[&str])] = &[
    ("no_finding", &["normal"]),
    ("cardiomegaly", &["Cardiomegaly"]),
    ("atelectasis", &["Pulmonary Atelectasis"]),
    ("pleural_effusion", &["Pleural Effusion"]),
    ("edema", &["Pulmonary Edema"]),
    (
        "pneumothorax",
        &["Pneumothorax", "Hydropneumothorax", "Hemopneumothorax"],
    ),
    ("consolidation", &["Consolidation"]),
    ("pneumonia", &["Pneumonia"]),
    (
        "lung_opacity",
        &["Opacity", "Airspace Disease", "Infiltrate"],
    ),
    ("lung_lesion", &["Nodule", "Mass"]),
    ("fracture", &["Fractures, Bone"]),
    (
        "support_devices",
        &[
            "Catheters, Indwelling",
            "Implanted Medical Device",
            "Surgical Instruments",
            "Tube, Inserted",
            "Medical Device",
            "Stents",
        ],
    ),
    (
        "emphysema",
        &["Emphysema", "Pulmonary Emphysema", "Bullous Emphysema"],
    ),
    ("hernia", &["Hernia, Hiatal", "Hernia, Diaphragmatic"]),
];

fn data_file() -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/iu-xray-reports/reports-dev.csv");
    path.exists().then_some(path)
}

#[derive(Default)]
struct Counts {
    tp: u32,
    fp: u32,
    fn_: u32,
}

impl Counts {
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: u32, b: u32) -> f64 {
    if b == 0 {
        0.0
    } else {
        f64::from(a) / f64::from(b)
    }
}

#[test]
fn iu_reports_macro_f1_reaches_target() {
    let Some(path) = data_file() else {
        println!(
            "SKIPPED: ../shared/data/iu-xray-reports/reports-dev.csv is absent; labeler not scored"
        );
        return;
    };
    let labeler = Labeler::builtin();
    let dump = std::env::var("UMCL_LABELER_DUMP").ok();
    let mut reader = csv::Reader::from_path(&path).expect("the shared IU CSV reads");
    let headers = reader
        .headers()
        .expect("the shared IU CSV has a header")
        .clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name} missing"))
    };
    let (findings, impression, mesh) = (col("findings"), col("impression"), col("mesh_major"));
    let mut counts: BTreeMap<&str, Counts> = BTreeMap::new();
    let mut reports = 0;
    for record in reader.records() {
        let record = record.expect("the shared IU CSV parses");
        reports += 1;
        let labels = labeler.label_sections(&[&record[findings], &record[impression]]);
        let heads: Vec<&str> = record[mesh]
            .split(';')
            .map(|term| term.split('/').next().unwrap_or("").trim())
            .collect();
        for (key, terms) in MESH_TO_LABEL {
            let truth = heads.iter().any(|h| terms.contains(h));
            let said = labels.get(key) == Some(LabelState::Positive);
            let c = counts.entry(key).or_default();
            match (said, truth) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => {}
            }
            if dump.as_deref() == Some(*key) && said != truth {
                let kind = if said { "FP" } else { "FN" };
                let found: Vec<String> = labeler
                    .mentions(&[&record[findings], &record[impression]])
                    .into_iter()
                    .filter(|m| m.state != LabelState::Negative)
                    .map(|m| format!("{}={}:{}", m.finding, m.state.as_chexpert(), m.phrase))
                    .collect();
                println!(
                    "{kind} {:?} [{}] | {} | {} | {}",
                    labels.get(key),
                    found.join(", "),
                    &record[findings],
                    &record[impression],
                    &record[mesh]
                );
            }
        }
    }
    println!(
        "labeler `{}` on {reports} IU reports ({})",
        labeler.name(),
        path.display()
    );
    println!(
        "{:<18} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6}",
        "label", "pos", "tp", "fp", "P", "R", "F1"
    );
    let mut f1s = Vec::new();
    // Schema order, so the table reads like the label vector.
    for key in CHEST_XRAY_KEYS {
        let Some(c) = counts.get(key) else { continue };
        let positives = c.tp + c.fn_;
        let scored = positives >= 10;
        if scored {
            f1s.push(c.f1());
        }
        println!(
            "{key:<18} {positives:>5} {:>5} {:>5} {:>6.3} {:>6.3} {:>6.3}{}",
            c.tp,
            c.fp,
            c.precision(),
            c.recall(),
            c.f1(),
            if scored {
                ""
            } else {
                "  (under 10 positives: not in the macro-F1)"
            }
        );
    }
    let macro_f1 = f1s.iter().sum::<f64>() / f1s.len() as f64;
    println!("macro-F1 over {} labels: {macro_f1:.4}", f1s.len());
    assert!(
        macro_f1 >= 0.90,
        "macro-F1 {macro_f1:.4} is under the 0.90 target"
    );
}
