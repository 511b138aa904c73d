//! The IU X-ray and COVID-19 adapters on the real files in `../shared/data`, when present (a
//! fresh clone has none: the tests then print a notice and pass). The expected counts come from
//! `tests/scripts/real_data_counts.py`, which reads the same files with Python's csv module and
//! no umcl code.

use std::path::PathBuf;

use umcl_data::manifest::{write_manifest, Manifest, Stats};
use umcl_data::schema::Schema;
use umcl_data::sources::{covid, iu_xray, ReadOptions};

fn shared(rel: &str) -> Option<PathBuf> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if path.exists() {
        Some(path)
    } else {
        println!(
            "skipped: {} is absent (shared data is not part of a fresh clone)",
            path.display()
        );
        None
    }
}

/// Positives per key, as `key=count` for the keys with any.
fn positives(stats: &Stats, source: &str, schema: &Schema) -> Vec<String> {
    schema
        .keys()
        .zip(&stats.sources[source].states)
        .filter(|(_, counts)| counts[0] > 0)
        .map(|(key, counts)| format!("{key}={}", counts[0]))
        .collect()
}

#[test]
fn iu_xray_real_reports() {
    let Some(csv_file) = shared("iu-xray-reports/reports-dev.csv") else {
        return;
    };
    let schema = Schema::chest_xray();
    let options = iu_xray::IuXrayOptions {
        csv_file,
        image_root: None,
    };
    let prepared = iu_xray::prepare(&options, &schema, ReadOptions::default()).unwrap();
    assert!(prepared.skipped.is_empty());
    let stats = Stats::count(&prepared.samples, schema.len());
    let iu = &stats.sources["iu-xray"];
    assert_eq!((iu.samples, iu.patients, iu.with_text), (1979, 1979, 1965));
    assert_eq!(
        positives(&stats, "iu-xray", &schema),
        [
            "no_finding=703",
            "cardiomegaly=177",
            "lung_opacity=299",
            "lung_lesion=56",
            "edema=25",
            "consolidation=14",
            "pneumonia=20",
            "atelectasis=174",
            "pneumothorax=14",
            "pleural_effusion=82",
            "fracture=29",
            "support_devices=196",
            "emphysema=60",
            "hernia=20"
        ]
    );
    // Index terms record no negations or doubts.
    assert!(iu.states.iter().all(|c| c[1] == 0 && c[2] == 0));

    // The manifest round-trips.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("iu.jsonl");
    write_manifest(&path, &schema, &prepared.samples).unwrap();
    assert_eq!(Manifest::read(&path).unwrap().samples, prepared.samples);
}

#[test]
fn covid_real_metadata() {
    let Some(csv_file) = shared("covid-cxr-512/metadata.csv") else {
        return;
    };
    let schema = Schema::chest_xray();
    let options = covid::CovidOptions {
        csv_file,
        image_root: None,
        notes: covid::CovidNotes::Full,
    };
    // Five rows repeat an earlier row's image file under another patient id: strict reading
    // stops at the first (physical line 558; clinical notes span lines).
    let err = covid::prepare(&options, &schema, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("metadata.csv:558: sample id `000001-24_jpg` repeats line 456"),
        "{err}"
    );
    let read = ReadOptions {
        skip_bad: true,
        check_images: true,
    };
    let prepared = covid::prepare(&options, &schema, read).unwrap();
    assert_eq!(prepared.skipped.len(), 5);
    let stats = Stats::count(&prepared.samples, schema.len());
    let c = &stats.sources["covid-cxr"];
    assert_eq!(
        (c.samples, c.patients, c.with_image, c.with_text),
        (648, 349, 648, 537)
    );
    assert_eq!(
        positives(&stats, "covid-cxr", &schema),
        ["no_finding=19", "lung_opacity=16", "pneumonia=547"]
    );
    // `todo` rows have no label; the raw finding is kept for every sample.
    assert_eq!(c.samples - c.with_labels, 78);
    let covid19 = prepared
        .samples
        .iter()
        .filter(|s| s.meta["finding"].contains("COVID-19"))
        .count();
    assert_eq!(covid19, 439 + 12);
}
