//! DICOM decoding against the fixtures of `tests/dicom/make_fixtures.py`, which writes each
//! file with pydicom and computes its expected pixels with numpy, on its own, from the policy
//! in docs/dicom.md. Lossless files must match to float precision; lossy JPEG within one
//! stored 8-bit level (through the window). Bad files must give an error that names the file, never a panic.

use std::path::{Path, PathBuf};

use serde_json::Value;
use umcl_data::images::dicom::{self, DicomInfo, Voi, WindowFunction};
use umcl_data::images::{self, Fit, Preprocess};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dicom/fixtures")
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Checks the metadata of `info` against the fixture's record; a list of mismatches.
fn check_info(name: &str, info: &DicomInfo, want: &Value, problems: &mut Vec<String>) {
    let mut same = |field: &str, got: Option<&str>| {
        let w = want[field].as_str();
        if got != w {
            problems.push(format!("{name}: {field} is {got:?}, expected {w:?}"));
        }
    };
    same("patient_id", info.patient_id.as_deref());
    same("study_uid", info.study_uid.as_deref());
    same("series_uid", info.series_uid.as_deref());
    same("sop_uid", info.sop_uid.as_deref());
    same("view_position", info.view_position.as_deref());
    same("photometric", Some(&info.photometric));
    same("transfer_syntax", Some(&info.transfer_syntax));
    let sizes = [
        ("rows", info.rows as u64),
        ("cols", info.cols as u64),
        ("frames", info.frames as u64),
    ];
    for (field, got) in sizes {
        if want[field].as_u64() != Some(got) {
            problems.push(format!(
                "{name}: {field} is {got}, expected {}",
                want[field]
            ));
        }
    }
    let voi = &want["voi"];
    let ok = match (voi["kind"].as_str(), &info.voi) {
        (Some("lut"), Voi::Lut { .. }) | (Some("none"), Voi::None) => true,
        (
            Some("window"),
            Voi::Window {
                index,
                count,
                center,
                width,
                function,
                ..
            },
        ) => {
            let f = match function {
                WindowFunction::Linear => "LINEAR",
                WindowFunction::LinearExact => "LINEAR_EXACT",
                WindowFunction::Sigmoid => "SIGMOID",
            };
            Some(*index as u64) == voi["index"].as_u64()
                && Some(*count as u64) == voi["count"].as_u64()
                && Some(*center) == voi["center"].as_f64()
                && Some(*width) == voi["width"].as_f64()
                && Some(f) == voi["function"].as_str()
        }
        (Some("percentile"), Voi::Percentile { range, .. }) => match (voi["lo"].as_f64(), range) {
            (Some(lo), Some((l, h))) => {
                (lo - l).abs() < 1e-9 && (voi["hi"].as_f64().unwrap_or(f64::NAN) - h).abs() < 1e-9
            }
            (None, _) => true,
            _ => false,
        },
        _ => false,
    };
    if !ok {
        problems.push(format!("{name}: window {:?}, expected {voi}", info.voi));
    }
}

/// Decodes every fixture of `list` that has expected pixels and compares.
fn check_list(list: &[Value]) -> (usize, Vec<String>) {
    let mut problems = Vec::new();
    let mut checked = 0;
    for want in list {
        let name = want["file"].as_str().unwrap();
        let path = fixtures().join(name);
        let Some(expected_file) = want["expected"].as_str() else {
            continue;
        };
        let (image, info) = match dicom::load(&path) {
            Ok(x) => x,
            Err(err) => {
                problems.push(format!("{name}: {err}"));
                continue;
            }
        };
        check_info(name, &info, want, &mut problems);
        let expected = read_f32(&fixtures().join(expected_file));
        if expected.len() != image.pixels().len() {
            problems.push(format!(
                "{name}: {} pixels, expected {}",
                image.pixels().len(),
                expected.len()
            ));
            continue;
        }
        // Lossy JPEG: the expected pixels come from libjpeg-turbo (Pillow), ours from
        // jpeg-decoder; the two may differ by one level of the 8-bit stored value, which the
        // window then stretches by its gain (display units per stored level).
        let lossy = want["lossy"].as_bool().unwrap_or(false);
        let limit = if lossy {
            let voi = &want["voi"];
            let gain = match (voi["kind"].as_str(), voi["width"].as_f64()) {
                (Some("window"), Some(w)) if voi["function"] == "LINEAR" => 1.0 / (w - 1.0),
                _ => 1.0 / 255.0,
            };
            gain as f32 + 1e-5
        } else {
            1e-5
        };
        let worst = image
            .pixels()
            .iter()
            .zip(&expected)
            .map(|(&a, &b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        if worst > limit {
            problems.push(format!("{name}: worst difference {worst} (limit {limit})"));
        }
        checked += 1;
    }
    (checked, problems)
}

#[test]
fn generated_fixtures_decode_to_the_numpy_reference() {
    let all = expected();
    let good = all["good"].as_array().unwrap();
    let (checked, problems) = check_list(good);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert_eq!(
        checked,
        good.len(),
        "every good fixture has expected pixels"
    );
    // Every transfer syntax of docs/dicom.md's table that umcl decodes has a fixture.
    for uid in [
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.5",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.57",
        "1.2.840.10008.1.2.4.70",
    ] {
        assert!(
            good.iter().any(|g| g["transfer_syntax"] == uid),
            "no fixture with transfer syntax {uid}"
        );
    }
}

#[test]
fn pydicom_test_files_decode_to_the_numpy_reference() {
    let all = expected();
    let list = all["pydicom"].as_array().unwrap();
    let (checked, problems) = check_list(list);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        checked >= 2,
        "only {checked} pydicom files have expected pixels"
    );
    // Those pydicom cannot decode alone: metadata, and they decode (or, for 12-bit lossy JPEG,
    // fail saying why).
    for want in list.iter().filter(|w| w["expected"].is_null()) {
        let name = want["file"].as_str().unwrap();
        match dicom::load(fixtures().join(name)) {
            Ok((_, info)) => {
                let mut problems = Vec::new();
                check_info(name, &info, want, &mut problems);
                assert!(problems.is_empty(), "{}", problems.join("\n"));
            }
            Err(err) => {
                let twelve_bit_jpeg = want["transfer_syntax"] == "1.2.840.10008.1.2.4.51";
                assert!(
                    twelve_bit_jpeg && err.to_string().contains("12-bit lossy JPEG"),
                    "{name}: {err}"
                );
            }
        }
    }
}

#[test]
fn bad_files_are_errors_that_name_the_file() {
    let all = expected();
    for bad in all["bad"].as_array().unwrap() {
        let name = bad["file"].as_str().unwrap();
        let path = fixtures().join(name);
        let result = std::panic::catch_unwind(|| dicom::load(&path));
        let Ok(result) = result else {
            panic!("{name}: the decoder panicked");
        };
        let err = match result {
            Ok(_) => panic!("{name} ({}) decoded", bad["what"]),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains(name.rsplit('/').next().unwrap()),
            "{name}: `{err}` does not name the file"
        );
        if let Some(expect) = bad["expect"].as_str() {
            assert!(
                err.to_lowercase().contains(&expect.to_lowercase()),
                "{name}: `{err}` does not say `{expect}`"
            );
        }
        // The header reader, used by the DICOM adapter, fails or succeeds without panicking.
        let header = std::panic::catch_unwind(|| dicom::read_info(&path));
        assert!(header.is_ok(), "{name}: read_info panicked");
    }
}

#[test]
fn monochrome1_is_monochrome2_inverted() {
    let (one, _) = dicom::load(fixtures().join("mono1_12in16_window_explicit.dcm")).unwrap();
    let (two, _) = dicom::load(fixtures().join("mono2_12in16_window_explicit.dcm")).unwrap();
    for (a, b) in one.pixels().iter().zip(two.pixels()) {
        assert!((a + b - 1.0).abs() < 1e-6, "{a} + {b} != 1");
    }
}

#[test]
fn every_image_path_reads_dicom() {
    let path = fixtures().join("mono1_12in16_window_explicit.dcm");
    let (direct, _) = dicom::load(&path).unwrap();
    // images::load, what `umcl classify` and the adapters' checks use.
    assert_eq!(images::load(&path).unwrap(), direct);
    // A file named without .dcm is found by its DICM magic.
    let dir = tempfile::tempdir().unwrap();
    let renamed = dir.path().join("IM0001");
    std::fs::copy(&path, &renamed).unwrap();
    assert_eq!(images::load(&renamed).unwrap(), direct);
    // The loader's path (Preprocess::load_into) and Preprocess::load agree with resizing the
    // decoded image.
    let pre = Preprocess {
        size: 16,
        fit: Fit::PadToSquare,
        mean: [0.0; 3],
        std: [1.0; 3],
        channels: 1,
    };
    let resized = pre.resize(&direct);
    assert_eq!(pre.load(&path).unwrap(), resized);
    let mut out = vec![0.0; pre.output_len()];
    pre.load_into(&path, None, &mut out).unwrap();
    for (a, b) in out.iter().zip(resized.pixels()) {
        assert!((a - b).abs() < 1e-6);
    }
}

#[test]
fn the_header_reader_agrees_with_the_decoder() {
    for want in expected()["good"].as_array().unwrap() {
        let path = fixtures().join(want["file"].as_str().unwrap());
        let header = dicom::read_info(&path).unwrap();
        let (_, mut decoded) = dicom::load(&path).unwrap();
        // Only the percentile range needs the pixels.
        if let Voi::Percentile { range, .. } = &mut decoded.voi {
            *range = None;
        }
        assert_eq!(header, decoded, "{}", path.display());
    }
}

#[test]
fn the_dicom_adapter_joins_a_table_and_filters_views() {
    use umcl_data::schema::{LabelState, Schema};
    use umcl_data::sources::{dicom::DicomOptions, ReadOptions, Source};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("export");
    std::fs::create_dir_all(root.join("b")).unwrap();
    let all = expected();
    let good = all["good"].as_array().unwrap();
    let pick = |name: &str| good.iter().find(|g| g["file"] == name).unwrap().clone();
    let pa = pick("mono2_12in16_window_explicit.dcm");
    let lateral = pick("mono2_window_unknown_function.dcm");
    std::fs::copy(
        fixtures().join("mono2_12in16_window_explicit.dcm"),
        root.join("a.dcm"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("mono2_window_unknown_function.dcm"),
        root.join("b/c.dcm"),
    )
    .unwrap();
    std::fs::write(root.join("notes.txt"), "not an image").unwrap();
    let table = dir.path().join("labels.csv");
    std::fs::write(
        &table,
        format!(
            "sop_instance_uid,Cardiomegaly,report\n{},1,Enlarged heart.\n",
            pa["sop_uid"].as_str().unwrap()
        ),
    )
    .unwrap();
    let schema = Schema::chest_xray();
    let source = Source::Dicom(DicomOptions {
        root: root.clone(),
        table: Some(table.clone()),
    });
    let mut prepared = source.prepare(&schema, ReadOptions::default()).unwrap();
    assert_eq!(prepared.samples.len(), 2, "the text file is not a sample");
    let first = &prepared.samples[0];
    assert_eq!(first.id, pa["sop_uid"].as_str().unwrap());
    assert_eq!(first.patient_id.as_deref(), pa["patient_id"].as_str());
    assert_eq!(first.text.as_deref(), Some("Enlarged heart."));
    let cardio = schema.index_of("cardiomegaly").unwrap();
    assert_eq!(first.labels[cardio], LabelState::Positive);
    assert_eq!(first.meta["view"], "PA");
    assert_eq!(first.meta["study_uid"], pa["study_uid"].as_str().unwrap());
    assert!(
        first.meta["window"].starts_with("window 1/1"),
        "{}",
        first.meta["window"]
    );
    let second = &prepared.samples[1];
    assert_eq!(second.meta["file"], "b/c.dcm");
    assert_eq!(
        second.meta["view"],
        lateral["view_position"].as_str().unwrap()
    );
    assert!(
        !second.has_labels() && second.text.is_none(),
        "no row: image only"
    );
    let left_out = prepared.keep_frontal();
    assert_eq!(prepared.samples.len(), 1);
    assert_eq!(left_out.get("LATERAL"), Some(&1));

    // A row that matches no file is a bad row at its line.
    std::fs::write(&table, "sop_instance_uid,Cardiomegaly\n1.2.3.4,1\n").unwrap();
    let err = source
        .prepare(&schema, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels.csv:2") && err.contains("matches no DICOM file"),
        "{err}"
    );
    // A file whose header is broken is an error naming it, or a counted skip. (The adapter
    // reads headers only: damaged pixel data is found when the image is loaded.)
    std::fs::copy(
        fixtures().join("bad/preamble_only.dcm"),
        root.join("broken.dcm"),
    )
    .unwrap();
    std::fs::write(&table, "file,Cardiomegaly\na.dcm,0\n").unwrap();
    let err = source
        .prepare(&schema, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.dcm"), "{err}");
    let skip = ReadOptions {
        skip_bad: true,
        ..ReadOptions::default()
    };
    let prepared = source.prepare(&schema, skip).unwrap();
    assert_eq!(prepared.samples.len(), 2);
    assert_eq!(prepared.skipped.len(), 1);
    let skipped = prepared.skipped[0].to_string();
    assert_eq!(
        skipped.matches("broken.dcm").count(),
        1,
        "named once: {skipped}"
    );
    assert_eq!(
        prepared.samples[0].labels[cardio],
        LabelState::Negative,
        "keyed by file"
    );
    // A bare file name that two files share (b/c.dcm, d/c.dcm) is an ambiguous key; a path
    // under the folder is not.
    std::fs::remove_file(root.join("broken.dcm")).unwrap();
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::fs::copy(
        fixtures().join("mono2_two_windows.dcm"),
        root.join("d/c.dcm"),
    )
    .unwrap();
    std::fs::write(&table, "file,Cardiomegaly\nc.dcm,0\n").unwrap();
    let err = source
        .prepare(&schema, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("labels.csv:2") && err.contains("names 2 DICOM files"),
        "{err}"
    );
    std::fs::write(&table, "file,Cardiomegaly\nd/c.dcm,1\n").unwrap();
    let prepared = source.prepare(&schema, ReadOptions::default()).unwrap();
    let by_path = prepared
        .samples
        .iter()
        .find(|s| s.meta["file"] == "d/c.dcm")
        .unwrap();
    assert_eq!(by_path.labels[cardio], LabelState::Positive);
    std::fs::remove_dir_all(root.join("d")).unwrap();
    // The same image exported twice: the second copy is a bad file naming the first.
    std::fs::copy(root.join("a.dcm"), root.join("z.dcm")).unwrap();
    let err = source
        .prepare(&schema, ReadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("z.dcm") && err.contains("repeats that of a.dcm"),
        "{err}"
    );
}

#[test]
fn the_loader_batches_dicom_samples_with_augmentation() {
    use umcl_data::augment::Augment;
    use umcl_data::loader::{Loader, LoaderConfig};
    use umcl_data::schema::Schema;
    use umcl_data::sources::{dicom::DicomOptions, ReadOptions, Source};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("export");
    std::fs::create_dir_all(&root).unwrap();
    for name in [
        "mono1_12in16_window_explicit.dcm",
        "mono2_12in16_two_frames.dcm",
        "mono2_8bit_rle.dcm",
        "rgb_planar1.dcm",
    ] {
        std::fs::copy(fixtures().join(name), root.join(name)).unwrap();
    }
    let schema = Schema::chest_xray();
    let prepared = Source::Dicom(DicomOptions { root, table: None })
        .prepare(&schema, ReadOptions::default())
        .unwrap();
    let two_frames = prepared
        .samples
        .iter()
        .find(|s| s.meta["file"] == "mono2_12in16_two_frames.dcm")
        .unwrap();
    assert_eq!(two_frames.meta["frames"], "2 (the first is used)");
    let pre = Preprocess {
        size: 12,
        fit: Fit::PadToSquare,
        mean: [0.0; 3],
        std: [1.0; 3],
        channels: 1,
    };
    let want: Vec<Vec<f32>> = prepared
        .samples
        .iter()
        .map(|s| {
            pre.load(s.image.as_ref().unwrap())
                .unwrap()
                .pixels()
                .to_vec()
        })
        .collect();
    let config = |augment| LoaderConfig {
        batch_size: 2,
        threads: 2,
        preprocess: pre.clone(),
        augment,
        ..LoaderConfig::default()
    };
    // Without augmentation each row is the file's decoded, resized image.
    let loader = Loader::new(prepared.samples.clone(), None, config(None)).unwrap();
    let mut seen = 0;
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        for (row, &index) in batch.indices.iter().enumerate() {
            let got: Vec<f32> = batch
                .images
                .slice(ndarray::s![row, 0, .., ..])
                .iter()
                .copied()
                .collect();
            for (a, b) in got.iter().zip(&want[index]) {
                assert!((a - b).abs() < 1e-5, "sample {index}: {a} vs {b}");
            }
            seen += 1;
        }
    }
    assert_eq!(seen, 4);
    // With augmentation (the cropping path), every image still decodes and stays in range.
    let loader = Loader::new(prepared.samples, None, config(Some(Augment::default()))).unwrap();
    for batch in loader.epoch(1) {
        let batch = batch.unwrap();
        assert!(batch.images.iter().all(|v| v.is_finite()));
    }
}
