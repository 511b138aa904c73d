//! Patient-level splits: no patient in two parts, deterministic, independent of sample order.

use std::collections::{HashMap, HashSet};

use umcl_data::sample::Sample;
use umcl_data::schema::Schema;
use umcl_data::split::{split_path, Part, Split, SplitSpec};

/// 200 patients with 1 to 4 samples each, plus 20 samples with no patient id, from two sources
/// that reuse the same patient ids.
fn samples() -> Vec<Sample> {
    let schema = Schema::chest_xray();
    let mut out = Vec::new();
    for source in ["alpha", "beta"] {
        for p in 0..100 {
            for v in 0..(1 + p % 4) {
                let mut s = Sample::new(format!("{source}-{p}-{v}"), source, &schema);
                s.patient_id = Some(format!("p{p}"));
                out.push(s);
            }
        }
    }
    for i in 0..20 {
        out.push(Sample::new(format!("loose-{i}"), "gamma", &schema));
    }
    out
}

fn part_of(split: &Split) -> HashMap<String, Part> {
    split
        .lookup()
        .into_iter()
        .map(|(id, part)| (id.to_string(), part))
        .collect()
}

#[test]
fn no_patient_is_in_two_parts() {
    let samples = samples();
    let spec = SplitSpec::new(7, [0.7, 0.15, 0.15]).unwrap();
    let split = Split::new(&samples, spec);
    let parts = part_of(&split);
    assert_eq!(
        parts.len(),
        samples.len(),
        "every sample in exactly one part"
    );
    let mut patient_parts: HashMap<String, HashSet<Part>> = HashMap::new();
    for s in &samples {
        patient_parts
            .entry(s.group_key())
            .or_default()
            .insert(parts[&s.id]);
    }
    assert!(patient_parts.values().all(|p| p.len() == 1));
    // 220 groups (2 x 100 patients + 20 loose samples): 154, 33, 33.
    assert_eq!(split.groups, [154, 33, 33]);
    // The same patient id in two sources is two patients, split on their own.
    let alpha: HashSet<Part> = (0..100).map(|p| parts[&format!("alpha-{p}-0")]).collect();
    assert_eq!(alpha.len(), 3);
}

#[test]
fn deterministic_from_seed_and_independent_of_order() {
    let samples = samples();
    let spec = SplitSpec::new(3, [0.8, 0.1, 0.1]).unwrap();
    let a = Split::new(&samples, spec);
    let mut reversed = samples.clone();
    reversed.reverse();
    let b = Split::new(&reversed, spec);
    assert_eq!(part_of(&a), part_of(&b));
    let other = Split::new(&samples, SplitSpec::new(4, [0.8, 0.1, 0.1]).unwrap());
    assert_ne!(part_of(&a), part_of(&other), "another seed, another split");
}

#[test]
fn split_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("chexpert.jsonl");
    let path = split_path(&manifest);
    assert_eq!(path, dir.path().join("chexpert.splits.json"));
    let split = Split::new(&samples(), SplitSpec::new(1, [0.5, 0.25, 0.25]).unwrap());
    split.write(&path, &manifest).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("\"manifest\": \"chexpert.jsonl\""), "{text}");
    assert!(text.contains("\"seed\": 1"));
    assert_eq!(Split::read(&path).unwrap(), split);

    // An id in two parts is refused.
    let broken = text.replacen("\"test\": [", "\"test\": [\n    \"alpha-0-0\",", 1);
    let broken = if split.ids(Part::Test).iter().any(|id| id == "alpha-0-0") {
        broken.replacen("\"train\": [", "\"train\": [\n    \"alpha-0-0\",", 1)
    } else {
        broken
    };
    std::fs::write(&path, broken).unwrap();
    let err = Split::read(&path).unwrap_err().to_string();
    assert!(err.contains("sample `alpha-0-0` is in both"), "{err}");
}

#[test]
fn fractions_are_checked() {
    assert!(SplitSpec::new(0, [0.8, 0.1, 0.2]).is_err());
    assert!(SplitSpec::new(0, [1.1, -0.1, 0.0]).is_err());
    assert!(SplitSpec::new(0, [f64::NAN, 0.5, 0.5]).is_err());
    assert!(SplitSpec::new(0, [1.0, 0.0, 0.0]).is_ok());
}

#[test]
fn a_split_refuses_a_manifest_that_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.splits.json");
    let mut all = samples();
    let split = Split::new(&all, SplitSpec::new(1, [0.8, 0.2, 0.0]).unwrap());
    split.write(&path, &dir.path().join("m.jsonl")).unwrap();
    let split = Split::read(&path).unwrap();
    split.check(&all, &path).unwrap();
    // The same samples in another order: the same manifest.
    all.reverse();
    split.check(&all, &path).unwrap();

    // 40 samples appended: they would never train.
    let schema = Schema::chest_xray();
    let mut grown = all.clone();
    for i in 0..40 {
        grown.push(Sample::new(format!("new-{i}"), "alpha", &schema));
    }
    let err = split.check(&grown, &path).unwrap_err().to_string();
    assert!(
        err.contains("m.splits.json") && err.contains("40 of them in no part"),
        "{err}"
    );
    // A renamed sample (same count) is a different manifest too.
    let mut renamed = all.clone();
    renamed[0].id = "renamed".into();
    assert!(split.check(&renamed, &path).is_err());
    // Samples removed: every remaining one is placed, but validation would shrink unseen.
    assert!(split.check(&all[..all.len() - 5], &path).is_err());

    // A version-1 file (no fingerprint) still reads, and must place every sample.
    let v1 = std::fs::read_to_string(&path).unwrap();
    let start = v1.find("\"made_from\"").unwrap();
    let end = start + v1[start..].find('}').unwrap() + 2;
    let v1 = format!("{}{}", &v1[..start], &v1[end..]).replace("\"version\": 2", "\"version\": 1");
    std::fs::write(&path, v1).unwrap();
    let old = Split::read(&path).unwrap();
    assert_eq!(old.made_from, None);
    old.check(&all, &path).unwrap();
    assert!(old.check(&grown, &path).is_err());
}

#[test]
fn a_blank_patient_id_names_no_patient() {
    let schema = Schema::chest_xray();
    let samples: Vec<Sample> = (0..50)
        .map(|i| {
            let mut s = Sample::new(format!("s{i}"), "x", &schema);
            s.patient_id = Some(if i % 2 == 0 {
                String::new()
            } else {
                "  ".into()
            });
            s
        })
        .collect();
    let split = Split::new(&samples, SplitSpec::new(0, [0.8, 0.2, 0.0]).unwrap());
    // Fifty patients of one sample each, not one patient of fifty.
    assert_eq!(split.groups.iter().sum::<usize>(), 50);
    assert_eq!(split.ids(Part::Val).len(), 10);
}

fn fold_spec(fold: usize, val_percent: u32) -> umcl_data::split::FoldSpec {
    umcl_data::split::FoldSpec {
        seed: 3,
        folds: 5,
        fold,
        val_percent,
        stratify: "meta.finding".into(),
    }
}

/// The stratum of the fold tests: a patient-level "finding", one in five patients rare.
fn with_findings(mut samples: Vec<Sample>) -> Vec<Sample> {
    for s in &mut samples {
        let p: usize = s
            .patient_id
            .as_deref()
            .and_then(|p| p[1..].parse().ok())
            .unwrap_or(0);
        let finding = if p.is_multiple_of(5) {
            "rare"
        } else {
            "common"
        };
        s.meta.insert("finding".into(), finding.into());
    }
    samples
}

#[test]
fn folds_put_every_patient_in_one_test_part() {
    let samples = with_findings(samples());
    let stratum = |s: &Sample| s.meta.get("finding").cloned().unwrap_or_default();
    let mut tested: HashMap<String, usize> = HashMap::new();
    let mut rare_per_fold = Vec::new();
    let mut patients_per_fold = Vec::new();
    for fold in 0..5 {
        let split = Split::fold(&samples, fold_spec(fold, 10), stratum).unwrap();
        // No patient in two parts of one fold.
        let parts = part_of(&split);
        let mut part_of_patient: HashMap<String, Part> = HashMap::new();
        for s in &samples {
            let p = parts[&s.id];
            assert_eq!(*part_of_patient.entry(s.group_key()).or_insert(p), p);
        }
        for id in split.ids(Part::Test) {
            *tested.entry(id.clone()).or_default() += 1;
        }
        let test: HashSet<&String> = split.ids(Part::Test).iter().collect();
        let test_patients: HashSet<String> = samples
            .iter()
            .filter(|s| test.contains(&s.id))
            .map(|s| s.group_key())
            .collect();
        rare_per_fold.push(
            samples
                .iter()
                .filter(|s| test_patients.contains(&s.group_key()) && stratum(s) == "rare")
                .map(|s| s.group_key())
                .collect::<HashSet<_>>()
                .len(),
        );
        patients_per_fold.push(test_patients.len());
        // Validation is 10% of the other folds' patients.
        let val = split.groups[Part::Val as usize] as f64;
        let others = (split.groups[0] + split.groups[1]) as f64;
        assert!((val / others - 0.1).abs() < 0.02, "{val} of {others}");
        assert_eq!(split.fold.as_ref().unwrap().fold, fold);
    }
    // Over the 5 folds every sample is tested exactly once.
    assert_eq!(tested.len(), samples.len());
    assert!(tested.values().all(|&n| n == 1));
    // 220 patients (200 + 20 loose samples): 44 per fold; the 60 rare ones (p0, p5, ... of
    // both sources and the loose samples, which have no patient number) 12 per fold.
    assert_eq!(patients_per_fold, [44, 44, 44, 44, 44]);
    assert_eq!(rare_per_fold, [12, 12, 12, 12, 12]);
}

#[test]
fn folds_are_deterministic_and_round_trip() {
    let samples = with_findings(samples());
    let stratum = |s: &Sample| s.meta.get("finding").cloned().unwrap_or_default();
    let a = Split::fold(&samples, fold_spec(2, 10), stratum).unwrap();
    let mut reversed = samples.clone();
    reversed.reverse();
    let b = Split::fold(&reversed, fold_spec(2, 10), stratum).unwrap();
    assert_eq!(part_of(&a), part_of(&b), "the sample order does not matter");
    let other_seed = Split::fold(
        &samples,
        umcl_data::split::FoldSpec {
            seed: 4,
            ..fold_spec(2, 10)
        },
        stratum,
    )
    .unwrap();
    assert_ne!(part_of(&a), part_of(&other_seed));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let path = split_path(&manifest);
    a.write(&path, &manifest).unwrap();
    let read = Split::read(&path).unwrap();
    assert_eq!(read, a);
    read.check(&samples, &path).unwrap();
}

#[test]
fn bad_fold_specs_are_errors() {
    let samples = samples();
    for (folds, fold, val) in [(1, 0, 10), (5, 5, 10), (5, 0, 100)] {
        let spec = umcl_data::split::FoldSpec {
            seed: 0,
            folds,
            fold,
            val_percent: val,
            stratify: "none".into(),
        };
        assert!(Split::fold(&samples, spec, |_| String::new()).is_err());
    }
}
