//! The phantom generator: deterministic, and each finding visibly changes the image where
//! it should. Comparisons are against the same anatomy without the finding: `Scene` draws
//! the anatomy before the findings from the same stream, so for every finding but
//! atelectasis (which moves the anatomy) image `i` with and without it differ only there.

use umcl_data::manifest::Manifest;
use umcl_data::phantom::{self, Finding, PhantomOptions};
use umcl_data::schema::{LabelState, Schema};

const N: usize = 64;

fn pair(f: Finding, index: u64) -> (Vec<f32>, Vec<f32>) {
    let with = phantom::render(&[f], N, 3, index);
    let without = phantom::render(&[Finding::NoFinding], N, 3, index);
    (with.pixels().to_vec(), without.pixels().to_vec())
}

/// Sum of (with - without) over the rows `rows` and columns `cols`.
fn diff(f: Finding, index: u64, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> f32 {
    let (a, b) = pair(f, index);
    let mut s = 0.0;
    for y in rows {
        for x in cols.clone() {
            s += a[y * N + x] - b[y * N + x];
        }
    }
    s
}

#[test]
fn rendering_is_deterministic_and_varies_with_the_index() {
    let a = phantom::render(&[Finding::Edema], 48, 1, 9);
    assert_eq!(a, phantom::render(&[Finding::Edema], 48, 1, 9));
    assert_ne!(a, phantom::render(&[Finding::Edema], 48, 1, 10));
    assert_ne!(a, phantom::render(&[Finding::Edema], 48, 2, 9));
    assert!(a.pixels().iter().all(|v| (0.0..=1.0).contains(v)));
}

#[test]
fn every_finding_changes_the_image() {
    for f in &Finding::ALL[1..] {
        for i in 0..8 {
            let (a, b) = pair(*f, i);
            let max = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f32::max);
            assert!(max > 0.1, "{f} on image {i}: largest change {max}");
        }
    }
}

#[test]
fn findings_change_the_image_where_they_should() {
    let (top, bottom) = (0..N / 2, N / 2..N);
    let (left, right) = (0..N / 2, N / 2..N);
    for i in 0..8 {
        // Effusion fills lung bases with fluid: brighter, more below the middle than above.
        let low = diff(Finding::PleuralEffusion, i, bottom.clone(), 0..N);
        let high = diff(Finding::PleuralEffusion, i, top.clone(), 0..N);
        assert!(
            low > 1.0 && low > 4.0 * high.abs(),
            "effusion {i}: {low} vs {high}"
        );
        // Pneumothorax: a rim of air without markings, darker than the lung was, at least
        // 30 pixels (a lung covers about 600 of the 4096; the rim is a third of it or more).
        let (a, b) = pair(Finding::Pneumothorax, i);
        let dark = a.iter().zip(&b).filter(|(x, y)| *y - *x > 0.05).count();
        assert!(dark >= 30, "pneumothorax {i}: {dark} darker pixels");
        // Edema: haze over both lungs.
        for cols in [left.clone(), right.clone()] {
            let d = diff(Finding::Edema, i, 0..N, cols);
            assert!(d > 1.0, "edema {i}: {d}");
        }
        // Cardiomegaly: a bigger heart covers dark lung in the lower half.
        let d = diff(Finding::Cardiomegaly, i, bottom.clone(), 0..N);
        assert!(d > 1.0, "cardiomegaly {i}: {d}");
        // Consolidation: a dense opacity, brighter.
        assert!(diff(Finding::Consolidation, i, 0..N, 0..N) > 1.0);
    }
}

#[test]
fn training_findings_follow_the_stated_distribution() {
    // 1/4 no finding; else 1 finding (0.7) or 2: expected 0.75 * 1.3 = 0.975 findings per
    // image with a finding.
    let n = 8000u64;
    let mut none = 0;
    let mut counts = [0usize; 10];
    for i in 0..n {
        let f = phantom::draw_findings(11, i);
        assert_eq!(f, phantom::draw_findings(11, i));
        if f == [Finding::NoFinding] {
            none += 1;
        } else {
            assert!(f.len() <= 2 && !f.contains(&Finding::NoFinding));
            if f.len() == 2 {
                assert_ne!(f[0], f[1]);
            }
        }
        for x in f {
            counts[Finding::ALL.iter().position(|&y| y == x).unwrap()] += 1;
        }
    }
    let frac = none as f64 / n as f64;
    assert!((frac - 0.25).abs() < 0.02, "{frac}");
    // Each of the 9 findings: 0.975 * 8000 / 9 = 867 expected.
    for c in &counts[1..] {
        assert!((760..980).contains(c), "{counts:?}");
    }
}

#[test]
fn labels_follow_chexpert_no_finding() {
    let schema = Schema::chest_xray();
    let at = |l: &[LabelState], k: &str| l[schema.index_of(k).unwrap()];
    let l = phantom::labels_for(&schema, &[Finding::SupportDevices]);
    assert_eq!(at(&l, "no_finding"), LabelState::Positive);
    assert_eq!(at(&l, "support_devices"), LabelState::Positive);
    assert_eq!(at(&l, "edema"), LabelState::Negative);
    assert_eq!(at(&l, "fracture"), LabelState::Unmentioned);
    let l = phantom::labels_for(&schema, &[Finding::Edema, Finding::Cardiomegaly]);
    assert_eq!(at(&l, "no_finding"), LabelState::Negative);
    assert_eq!(at(&l, "edema"), LabelState::Positive);
    assert_eq!(at(&l, "cardiomegaly"), LabelState::Positive);
    assert_eq!(l.iter().filter(|s| s.is_mentioned()).count(), 10);
    assert_eq!("pneumothorax".parse::<Finding>(), Ok(Finding::Pneumothorax));
    assert!("fracture".parse::<Finding>().is_err());
}

#[test]
fn the_dataset_has_three_sources_and_the_fixed_eval_split() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PhantomOptions {
        n: 60,
        size: 16,
        seed: 4,
        threads: 2,
        eval: true,
    };
    let summary = phantom::write_dataset(dir.path(), &opts).unwrap();
    let train = Manifest::read(&summary.manifest).unwrap();
    assert_eq!(train.samples.len(), 60);
    let total: usize = summary.per_source.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 60);
    assert!(
        summary.per_source.iter().all(|(_, n)| *n > 0),
        "{summary:?}"
    );
    for s in &train.samples {
        match s.source.as_str() {
            phantom::sources::IMAGE_REPORT => {
                assert!(s.image.is_some() && s.text.is_some() && !s.has_labels())
            }
            phantom::sources::IMAGE_LABELS => {
                assert!(s.image.is_some() && s.text.is_none() && s.has_labels())
            }
            phantom::sources::REPORT_ONLY => {
                assert!(s.image.is_none() && s.text.is_some() && s.has_labels())
            }
            other => panic!("unexpected source {other}"),
        }
        if let Some(p) = &s.image {
            let img = umcl_data::images::load(p).unwrap();
            assert_eq!((img.width(), img.height()), (16, 16));
        }
    }
    let eval = Manifest::read(summary.eval_manifest.as_ref().unwrap()).unwrap();
    assert_eq!(eval.samples.len(), 1000);
    let schema = Schema::chest_xray();
    for (k, f) in Finding::EVAL.iter().enumerate() {
        let key = schema.index_of(f.key()).unwrap();
        let pos = eval
            .samples
            .iter()
            .filter(|s| s.labels[key] == LabelState::Positive)
            .count();
        assert_eq!(pos, 200, "{f}");
        assert_eq!(phantom::eval_finding(k * 200 + 199), *f);
    }
    let readme = std::fs::read_to_string(dir.path().join("README.txt")).unwrap();
    assert!(readme.contains("SYNTHETIC"));
    // The eval split ignores the training seed; the training set follows it.
    let dir2 = tempfile::tempdir().unwrap();
    phantom::write_dataset(dir2.path(), &PhantomOptions { seed: 5, ..opts }).unwrap();
    let read = |d: &std::path::Path, f: &str| std::fs::read(d.join(f)).unwrap();
    assert_eq!(
        read(dir.path(), "eval-5x200.jsonl"),
        read(dir2.path(), "eval-5x200.jsonl")
    );
    assert_eq!(
        read(dir.path(), "eval-5x200/0123.png"),
        read(dir2.path(), "eval-5x200/0123.png")
    );
    assert_ne!(
        read(dir.path(), "manifest.jsonl"),
        read(dir2.path(), "manifest.jsonl")
    );
}

#[test]
fn a_too_small_size_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let opts = PhantomOptions {
        size: 4,
        ..PhantomOptions::default()
    };
    let err = phantom::write_dataset(dir.path(), &opts).unwrap_err();
    assert!(err.to_string().contains("at least 8"), "{err}");
}
