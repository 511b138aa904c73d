//! The source adapters on small hand-written fixtures with the real column headers
//! (`tests/fixtures/`), good rows and bad.

use std::path::{Path, PathBuf};

use umcl_data::error::DataError;
use umcl_data::sample::Sample;
use umcl_data::schema::{LabelState, Schema};
use umcl_data::sources::{
    chestxray14, chexpert, covid, generic, iu_xray, mimic, Prepared, ReadOptions,
};

use LabelState::{Negative as N, Positive as P, Unmentioned as M};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

const STRICT: ReadOptions = ReadOptions {
    skip_bad: false,
    check_images: true,
};
const SKIP: ReadOptions = ReadOptions {
    skip_bad: true,
    check_images: true,
};

/// The labels of a sample as `key=state` for the mentioned ones, in schema order.
fn mentioned(sample: &Sample) -> Vec<String> {
    let schema = Schema::chest_xray();
    schema
        .keys()
        .zip(&sample.labels)
        .filter(|(_, s)| s.is_mentioned())
        .map(|(k, s)| format!("{k}={}", s.code()))
        .collect()
}

fn by_id<'a>(prepared: &'a Prepared, id: &str) -> &'a Sample {
    prepared
        .samples
        .iter()
        .find(|s| s.id == id)
        .unwrap_or_else(|| panic!("no sample {id}"))
}

fn messages(errors: &[DataError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| {
            // Keep the file name and what follows, not the checkout's absolute path.
            let text = e.to_string();
            let at = text.find("fixtures/").map_or(0, |i| i + "fixtures/".len());
            text[at..].to_string()
        })
        .collect()
}

#[test]
fn chexpert_reads_labels_patients_and_images() {
    let schema = Schema::chest_xray();
    let dir = fixture("chexpert/CheXpert-v1.0-small");
    let options = chexpert::ChexpertOptions {
        csv_files: vec![dir.join("train.csv"), dir.join("valid.csv")],
        image_root: None,
    };
    let prepared = chexpert::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 6);
    assert!(prepared.skipped.is_empty());

    let s = by_id(
        &prepared,
        "CheXpert-v1.0-small/train/patient00002/study2/view1_frontal.jpg",
    );
    assert_eq!(s.patient_id.as_deref(), Some("patient00002"));
    assert_eq!(s.source, "chexpert");
    assert_eq!(s.text, None);
    // Row: Cardiomegaly -1, Lung Opacity 1, Edema -1, Consolidation -1, Atelectasis -1,
    // Pleural Effusion -1, Fracture 1.
    assert_eq!(
        mentioned(s),
        [
            "cardiomegaly=-1",
            "lung_opacity=1",
            "edema=-1",
            "consolidation=-1",
            "atelectasis=-1",
            "pleural_effusion=-1",
            "fracture=1"
        ]
    );
    assert_eq!(s.meta["sex"], "Female");
    assert_eq!(s.meta["view"], "Frontal");
    // The image is found above the CSV's directory, since Path starts with its name.
    assert!(s.image.as_ref().unwrap().is_file());

    let v = by_id(
        &prepared,
        "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
    );
    let expected: Vec<LabelState> = vec![N, P, P, P, N, N, N, N, N, N, N, N, N, N, M, M, M];
    assert_eq!(v.labels, expected);
}

#[test]
fn chexpert_bad_rows_name_file_and_line() {
    let schema = Schema::chest_xray();
    let options = chexpert::ChexpertOptions {
        csv_files: vec![fixture("chexpert/CheXpert-v1.0-small/bad.csv")],
        image_root: None,
    };
    let err = chexpert::prepare(&options, &schema, STRICT).unwrap_err();
    assert_eq!(
        messages(&[err]),
        ["chexpert/CheXpert-v1.0-small/bad.csv:3: wrong number of fields: 9, the header has 19"]
    );

    let prepared = chexpert::prepare(&options, &schema, SKIP).unwrap();
    let ids: Vec<_> = prepared.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
            "CheXpert-v1.0-small/train/patient00002/study1/view2_lateral.jpg"
        ]
    );
    let skipped = messages(&prepared.skipped);
    assert_eq!(skipped.len(), 4, "{skipped:#?}");
    assert_eq!(
        skipped[0],
        "chexpert/CheXpert-v1.0-small/bad.csv:3: wrong number of fields: 9, the header has 19"
    );
    assert_eq!(
        skipped[1],
        "chexpert/CheXpert-v1.0-small/bad.csv:4: column `Lung Opacity`: unknown label value `2.0` (expected 1, 0, -1 or empty)"
    );
    assert!(
        skipped[2].starts_with("chexpert/CheXpert-v1.0-small/bad.csv:5: image file ")
            && skipped[2].ends_with("patient00009/study1/view1_frontal.jpg not found"),
        "{}",
        skipped[2]
    );
    assert_eq!(
        skipped[3],
        "chexpert/CheXpert-v1.0-small/bad.csv:6: column `Sex` is not valid UTF-8 (bad byte at offset 1)"
    );
}

#[test]
fn missing_column_is_named() {
    let schema = Schema::chest_xray();
    // The ChestX-ray14 file has no `Path` column.
    let options = chexpert::ChexpertOptions {
        csv_files: vec![fixture("chestxray14/Data_Entry_2017.csv")],
        image_root: None,
    };
    let err = chexpert::prepare(&options, &schema, SKIP)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("chestxray14/Data_Entry_2017.csv: missing column `Path` (the header has: Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender, View Position, OriginalImage[Width, Height], OriginalImagePixelSpacing[x, y], )"),
        "{err}"
    );
}

#[test]
fn chestxray14_named_findings_positive_the_rest_negative() {
    let schema = Schema::chest_xray();
    let options = chestxray14::Chestxray14Options {
        csv_file: fixture("chestxray14/Data_Entry_2017.csv"),
        image_root: None,
    };
    let prepared = chestxray14::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 5);
    let s = by_id(&prepared, "00000003_000.png");
    assert_eq!(s.patient_id.as_deref(), Some("3"));
    // Mass and Nodule -> lung_lesion, Infiltration -> lung_opacity, Pleural_Thickening ->
    // pleural_other; the other ChestX-ray14 findings negative; enlarged_cardiomediastinum,
    // fracture and support_devices have no ChestX-ray14 name and stay unmentioned.
    let expected: Vec<LabelState> = vec![N, M, N, P, P, N, N, N, N, N, N, P, M, M, N, N, N];
    assert_eq!(s.labels, expected);
    assert!(s
        .image
        .as_ref()
        .unwrap()
        .ends_with("images_002/images/00000003_000.png"));
    assert_eq!(s.meta["view"], "PA");

    let normal = by_id(&prepared, "00000002_000.png");
    assert_eq!(normal.labels[0], P);
    assert_eq!(
        normal.labels.iter().filter(|s| **s == N).count(),
        13,
        "the 13 other keys ChestX-ray14 names"
    );
    assert_eq!(
        mentioned(by_id(&prepared, "00000004_000.png"))
            .into_iter()
            .filter(|m| m.ends_with("=1"))
            .collect::<Vec<_>>(),
        ["pleural_effusion=1", "hernia=1"]
    );
}

#[test]
fn chestxray14_bad_rows() {
    let schema = Schema::chest_xray();
    let options = chestxray14::Chestxray14Options {
        csv_file: fixture("chestxray14/bad.csv"),
        image_root: None,
    };
    let err = chestxray14::prepare(&options, &schema, STRICT).unwrap_err();
    assert_eq!(
        messages(&[err]),
        ["chestxray14/bad.csv:3: unknown finding `Cardiomegally` in `Finding Labels`"]
    );
    let prepared = chestxray14::prepare(&options, &schema, SKIP).unwrap();
    let ids: Vec<_> = prepared.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["00000001_000.png", "00000004_000.png"]);
    let skipped = messages(&prepared.skipped);
    assert_eq!(skipped.len(), 3);
    assert!(skipped[1].starts_with("chestxray14/bad.csv:4: image file "));
    assert_eq!(
        skipped[2],
        "chestxray14/bad.csv:5: wrong number of fields: 11, the header has 12"
    );
}

#[test]
fn iu_xray_reports_text_and_mesh_labels() {
    let schema = Schema::chest_xray();
    let options = iu_xray::IuXrayOptions {
        csv_file: fixture("iu/reports.csv"),
        image_root: None,
    };
    let prepared = iu_xray::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 4);
    let s = by_id(&prepared, "iu-7");
    assert_eq!(s.patient_id.as_deref(), Some("7"));
    assert_eq!(s.image, None);
    assert_eq!(
        s.text.as_deref(),
        Some("The cardiac contours are normal. XXXX basilar atelectasis.\nBasilar atelectasis.\nNo confluent lobar consolidation or pleural effusion.")
    );
    // Spondylosis has no label; nothing is negative (indexers record no negations).
    assert_eq!(mentioned(s), ["atelectasis=1"]);
    assert_eq!(s.meta["image_ids"], "CXR7_IM-2263-1001;CXR7_IM-2263-2001");
    assert_eq!(
        mentioned(by_id(&prepared, "iu-11")),
        [
            "cardiomegaly=1",
            "pleural_effusion=1",
            "support_devices=1",
            "hernia=1"
        ]
    );
    let empty = by_id(&prepared, "iu-13");
    assert_eq!(empty.text, None);
    assert!(mentioned(empty).is_empty());

    // With an image folder: one sample per image, sharing the report.
    let options = iu_xray::IuXrayOptions {
        image_root: Some(fixture("iu/images")),
        ..options
    };
    let err = iu_xray::prepare(&options, &schema, STRICT).unwrap_err();
    assert!(
        err.to_string().contains("iu/reports.csv:6: image file ")
            && err
                .to_string()
                .ends_with("CXR13_IM-0218-1001.png not found"),
        "{err}"
    );
    let prepared = iu_xray::prepare(&options, &schema, SKIP).unwrap();
    let ids: Vec<_> = prepared.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "CXR1_1_IM-0001-3001",
            "CXR1_1_IM-0001-4001",
            "CXR7_IM-2263-1001",
            "CXR7_IM-2263-2001",
            "CXR11_IM-0067-1001"
        ]
    );
    let first = &prepared.samples[0];
    assert_eq!(first.meta["report"], "iu-1");
    assert_eq!(mentioned(first), ["no_finding=1"]);
    assert_eq!(prepared.skipped.len(), 1);
}

#[test]
fn covid_findings_map_and_raw_finding_is_kept() {
    let schema = Schema::chest_xray();
    let options = covid::CovidOptions {
        csv_file: fixture("covid/metadata.csv"),
        image_root: None,
        notes: covid::CovidNotes::Full,
    };
    let prepared = covid::prepare(&options, &schema, SKIP).unwrap();
    let summary: Vec<String> = prepared
        .samples
        .iter()
        .map(|s| {
            format!(
                "{} patient={} text={} finding={} {:?}",
                s.id,
                s.patient_id.as_deref().unwrap_or("-"),
                s.text.is_some(),
                s.meta["finding"],
                mentioned(s)
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            r#"a-covid_jpeg patient=2 text=true finding=COVID-19 ["pneumonia=1"]"#,
            r#"b-covid_jpeg patient=2 text=true finding=COVID-19, ARDS ["lung_opacity=1", "pneumonia=1"]"#,
            r#"c-todo_png patient=5 text=true finding=todo []"#,
            r#"d-normal_jpg patient=6 text=false finding=No Finding ["no_finding=1"]"#,
            r#"e-strep_jpg patient=7 text=true finding=Streptococcus ["pneumonia=1"]"#,
        ]
    );
    let b = &prepared.samples[1];
    assert_eq!(
        b.text.as_deref(),
        Some("Bilateral opacities.\nIntubated on day 3.")
    );
    assert_eq!(b.meta["view"], "AP Supine");
    assert_eq!(b.meta["license"], "CC BY");
    // No label and no text: nothing to train on, a bad row.
    assert_eq!(
        messages(&prepared.skipped),
        [
            "covid/metadata.csv:8: nothing to train on: finding `todo` gives no label and the row \
          has no clinical notes (pass --skip-bad to leave such rows out)"
        ]
    );
}

#[test]
fn covid_imaging_notes_keep_the_radiological_sentences() {
    let schema = Schema::chest_xray();
    let options = covid::CovidOptions {
        csv_file: fixture("covid/metadata.csv"),
        image_root: None,
        notes: covid::CovidNotes::Imaging,
    };
    let prepared = covid::prepare(&options, &schema, SKIP).unwrap();
    let texts: Vec<Option<&str>> = prepared.samples.iter().map(|s| s.text.as_deref()).collect();
    assert_eq!(
        texts,
        [
            Some(
                "Chest radiographs obtained on admission showed an infiltrate in the upper lobe \
                 of the left lung"
            ),
            Some("Bilateral opacities."),
            None,
            Some("Lobar consolidation."),
        ]
    );
    // The `todo` row's note is history only: with no imaging sentence and no label, it is left
    // out and reported, as is the `todo` row without notes.
    let skipped = messages(&prepared.skipped);
    assert_eq!(skipped.len(), 2);
    assert_eq!(
        skipped[0],
        "covid/metadata.csv:5: nothing to train on: finding `todo` gives no label and its \
         clinical notes have no imaging sentence (pass --skip-bad to leave such rows out)"
    );
    assert!(skipped[1].starts_with("covid/metadata.csv:8: nothing to train on"));
    // Without --skip-bad the first such row stops the read, naming its line.
    let err = covid::prepare(&options, &schema, STRICT).unwrap_err();
    assert!(
        err.to_string()
            .contains("metadata.csv:5: nothing to train on"),
        "{err}"
    );
}

#[test]
fn covid_bad_rows() {
    let schema = Schema::chest_xray();
    let options = covid::CovidOptions {
        csv_file: fixture("covid/bad.csv"),
        image_root: None,
        notes: covid::CovidNotes::Full,
    };
    let prepared = covid::prepare(&options, &schema, SKIP).unwrap();
    assert_eq!(prepared.samples.len(), 1);
    let skipped = messages(&prepared.skipped);
    assert_eq!(skipped.len(), 4);
    assert_eq!(
        skipped[0],
        "covid/bad.csv:3: unknown finding `Martian flu` in `finding` (`Martian flu`)"
    );
    assert_eq!(
        skipped[1],
        "covid/bad.csv:4: modality `CT` is not an X-ray (pass --skip-bad to leave such rows out)"
    );
    assert_eq!(
        skipped[2],
        "covid/bad.csv:5: sample id `a-covid_jpeg` repeats line 2"
    );
    assert!(skipped[3].starts_with("covid/bad.csv:6: image file "));
}

#[test]
fn mimic_joins_metadata_labels_and_reports() {
    let schema = Schema::chest_xray();
    let root = fixture("mimic/jpg");
    let options = mimic::MimicOptions {
        root: root.clone(),
        reports: Some(fixture("mimic/reports")),
        ..Default::default()
    };
    let prepared = mimic::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 4);
    let pa = by_id(&prepared, "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014");
    assert_eq!(pa.patient_id.as_deref(), Some("10000032"));
    assert_eq!(pa.meta["study_id"], "50414267");
    assert_eq!(pa.meta["view"], "PA");
    assert_eq!(
        pa.text.as_deref(),
        Some("There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular opacities that most likely represent nipple shadows. The cardiomediastinal silhouette is normal.\nNo acute cardiopulmonary process.")
    );
    assert_eq!(mentioned(pa), ["no_finding=1"]);
    // Both images of the study share its report.
    let lateral = by_id(&prepared, "174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962");
    assert_eq!(lateral.text, pa.text);
    // No FINDINGS or IMPRESSION header: the last paragraph.
    let no_sections = by_id(&prepared, "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab");
    assert_eq!(
        no_sections.text.as_deref(),
        Some("Lungs are clear. Heart size is normal. No pleural effusion.")
    );
    let ap = by_id(&prepared, "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714");
    assert_eq!(
        ap.text.as_deref(),
        Some("Enlarged heart with moderate right pleural effusion. Endotracheal tube 4 cm above the carina.")
    );
    assert_eq!(
        mentioned(ap),
        [
            "cardiomegaly=1",
            "lung_opacity=1",
            "edema=0",
            "atelectasis=-1",
            "pneumothorax=0",
            "pleural_effusion=1",
            "support_devices=1"
        ]
    );
    assert!(ap.image.as_ref().unwrap().is_file());

    // NegBio labels instead; no reports: no text.
    let options = mimic::MimicOptions {
        root,
        label_set: mimic::MimicLabels::Negbio,
        ..Default::default()
    };
    let prepared = mimic::prepare(&options, &schema, STRICT).unwrap();
    let ap = by_id(&prepared, "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714");
    assert_eq!(ap.labels[schema.index_of("atelectasis").unwrap()], P);
    assert!(prepared.samples.iter().all(|s| s.text.is_none()));
}

#[test]
fn mimic_missing_report_is_a_bad_row() {
    let schema = Schema::chest_xray();
    let options = mimic::MimicOptions {
        root: fixture("mimic/jpg"),
        // The images' folder has no report files.
        reports: Some(fixture("mimic/jpg")),
        ..Default::default()
    };
    let err = mimic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mimic-cxr-2.0.0-metadata.csv:2: ") && err.contains("s50414267.txt"),
        "{err}"
    );
    let prepared = mimic::prepare(&options, &schema, SKIP).unwrap();
    assert_eq!(prepared.samples.len(), 0);
    assert_eq!(prepared.skipped.len(), 4);
}

#[test]
fn mimic_reads_gzipped_csvs() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let root = fixture("mimic/jpg");
    for name in ["mimic-cxr-2.0.0-metadata", "mimic-cxr-2.0.0-chexpert"] {
        let text = std::fs::read(root.join(format!("{name}.csv"))).unwrap();
        let file = std::fs::File::create(dir.path().join(format!("{name}.csv.gz"))).unwrap();
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        gz.write_all(&text).unwrap();
        gz.finish().unwrap();
    }
    let options = mimic::MimicOptions {
        root: dir.path().to_path_buf(),
        ..Default::default()
    };
    let read = ReadOptions {
        skip_bad: false,
        check_images: false,
    };
    let prepared = mimic::prepare(&options, &Schema::chest_xray(), read).unwrap();
    assert_eq!(prepared.samples.len(), 4);
    assert_eq!(
        mentioned(&prepared.samples[3]).len(),
        7,
        "labels joined from the gzipped label file"
    );
}

#[test]
fn report_sections_split_on_upper_case_headers() {
    let sections = mimic::report_sections(
        " FINAL REPORT\n INDICATION:  cough\n FINDINGS:\n Clear\n lungs.\n IMPRESSION: Normal.\n",
    );
    let names: Vec<_> = sections.iter().map(|(n, t)| format!("{n}|{t}")).collect();
    assert_eq!(
        names,
        [
            "|FINAL REPORT",
            "INDICATION|cough",
            "FINDINGS|Clear lungs.",
            "IMPRESSION|Normal."
        ]
    );
    assert_eq!(mimic::report_text(""), None);
}

fn generic_options(file: &str) -> generic::GenericOptions {
    generic::GenericOptions {
        file: fixture(file),
        id: Some("case".into()),
        patient: Some("subject".into()),
        image: Some("file".into()),
        text: vec!["report".into()],
        ..Default::default()
    }
}

#[test]
fn generic_csv_label_columns_and_list() {
    let schema = Schema::chest_xray();
    let mut options = generic_options("generic/samples.csv");
    options.label_columns = vec!["auto".into()];
    let prepared = generic::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 3);
    let c2 = by_id(&prepared, "c2");
    assert_eq!(c2.patient_id.as_deref(), Some("s1"));
    assert_eq!(c2.text, None);
    assert_eq!(c2.source, "generic");
    assert_eq!(mentioned(c2), ["cardiomegaly=0", "edema=-1"]);
    assert!(c2.image.as_ref().unwrap().is_file());

    // The list column instead: named findings positive.
    let mut options = generic_options("generic/samples.csv");
    options.label_list = Some("diagnoses".into());
    options.source_name = Some("my-hospital".into());
    let prepared = generic::prepare(&options, &schema, STRICT).unwrap();
    let c3 = by_id(&prepared, "c3");
    assert_eq!(mentioned(c3), ["edema=1", "pleural_effusion=1"]);
    assert_eq!(c3.source, "my-hospital");

    // A label column the schema does not know, and a column the file lacks.
    let mut options = generic_options("generic/samples.csv");
    options.label_columns = vec!["report".into()];
    let err = generic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with("label column `report` names no label of schema `chest-xray`"),
        "{err}"
    );
    let mut options = generic_options("generic/samples.csv");
    options.text = vec!["impression".into()];
    let err = generic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing column `impression`"), "{err}");
}

#[test]
fn generic_jsonl_values_and_bad_lines() {
    let schema = Schema::chest_xray();
    let mut options = generic_options("generic/samples.jsonl");
    options.label_columns = vec!["cardiomegaly".into()];
    options.label_list = Some("findings".into());
    options.image = None;
    let prepared = generic::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples.len(), 2, "the blank line is no sample");
    let j1 = by_id(&prepared, "j1");
    assert_eq!(j1.patient_id.as_deref(), Some("17"));
    assert_eq!(mentioned(j1), ["cardiomegaly=1", "hernia=1"]);
    let j2 = by_id(&prepared, "j2");
    assert_eq!(j2.patient_id, None);
    assert_eq!(j2.text, None);
    assert_eq!(mentioned(j2), ["no_finding=1", "cardiomegaly=-1"]);

    let mut options = generic_options("generic/bad.jsonl");
    options.label_columns = vec!["cardiomegaly".into()];
    options.label_list = Some("findings".into());
    options.image = None;
    // This file's records have no patient and no report field.
    options.patient = None;
    options.text = Vec::new();
    let prepared = generic::prepare(&options, &schema, SKIP).unwrap();
    let ids: Vec<_> = prepared.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["j1", "j5"]);
    let skipped = messages(&prepared.skipped);
    assert_eq!(skipped.len(), 6, "{skipped:#?}");
    assert_eq!(
        skipped[0],
        "generic/bad.jsonl:2: column `cardiomegaly`: unknown label value `3` (expected 1, 0, -1 or empty)"
    );
    assert!(skipped[1].starts_with("generic/bad.jsonl:3: malformed JSON: "));
    assert_eq!(
        skipped[2],
        "generic/bad.jsonl:4: not valid UTF-8 (bad byte at offset 29)"
    );
    assert_eq!(skipped[3], "generic/bad.jsonl:5: not a JSON object");
    assert_eq!(
        skipped[4],
        "generic/bad.jsonl:6: sample id `j1` repeats line 1"
    );
    assert_eq!(
        skipped[5],
        "generic/bad.jsonl:7: unknown label `Dragon` in `findings` (schema `chest-xray`)"
    );
}

#[test]
fn jsonl_fields_no_record_has_are_errors_and_a_bom_is_skipped() {
    let schema = Schema::chest_xray();
    // Misspelt field names: every record lacks them, so nothing would be read.
    let mut options = generic_options("generic/samples.jsonl");
    options.image = None;
    options.text = vec!["reprot".into()];
    options.patient = Some("patinet".into());
    let err = generic::prepare(&options, &schema, SKIP)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("generic/samples.jsonl")
            && err.contains("`patinet` (the patient field)")
            && err.contains("`reprot` (a text field)")
            && err.contains(
                "the records' fields are: cardiomegaly, case, file, findings, report, subject"
            ),
        "{err}"
    );
    // A byte-order mark before the first record.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bom.jsonl");
    std::fs::write(
        &path,
        "\u{feff}{\"case\": \"b1\", \"report\": \"Clear lungs.\"}\n",
    )
    .unwrap();
    let options = generic::GenericOptions {
        file: path,
        id: Some("case".into()),
        text: vec!["report".into()],
        ..Default::default()
    };
    let prepared = generic::prepare(&options, &schema, STRICT).unwrap();
    assert_eq!(prepared.samples[0].id, "b1");
}

#[test]
fn crlf_files_get_the_right_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crlf.csv");
    std::fs::write(
        &path,
        "case,report,Edema\r\nc1,\"two\r\nlines\",1\r\nc2,ok,7\r\n",
    )
    .unwrap();
    let options = generic::GenericOptions {
        file: path,
        id: Some("case".into()),
        text: vec!["report".into()],
        label_columns: vec!["Edema".into()],
        ..Default::default()
    };
    let err = generic::prepare(&options, &Schema::chest_xray(), STRICT)
        .unwrap_err()
        .to_string();
    // Line 1 header, lines 2-3 the first record, line 4 the bad one.
    assert!(
        err.ends_with(
            "crlf.csv:4: column `Edema`: unknown label value `7` (expected 1, 0, -1 or empty)"
        ),
        "{err}"
    );
}

#[test]
fn an_unclosed_quote_is_a_bad_row_not_a_swallowed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("open.csv");
    // Row 3 opens a quote that never closes: the csv crate reads rows 3-5 as one record.
    std::fs::write(
        &path,
        "case,report,Edema\nc1,fine,1\nc2,\"never closed,0\nc3,lost,1\nc4,lost,0\n",
    )
    .unwrap();
    let options = generic::GenericOptions {
        file: path,
        id: Some("case".into()),
        text: vec!["report".into()],
        label_columns: vec!["Edema".into()],
        ..Default::default()
    };
    let schema = Schema::chest_xray();
    let err = generic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "open.csv:3: a quoted field is never closed: the row runs to the end of the file"
        ),
        "{err}"
    );
    let prepared = generic::prepare(&options, &schema, SKIP).unwrap();
    assert_eq!(prepared.samples.len(), 1);
    assert_eq!(prepared.skipped.len(), 1);

    // Open in the last column, the swallowed rows even leave the field count right.
    std::fs::write(
        &options.file,
        "case,report\nc1,fine\nc2,\"never closed\nc3,lost\n",
    )
    .unwrap();
    let options = generic::GenericOptions {
        label_columns: Vec::new(),
        ..options
    };
    let err = generic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(
        err.ends_with(
            "open.csv:3: a quoted field is never closed: the row runs to the end of the file"
        ),
        "{err}"
    );
}

#[test]
fn an_image_path_that_is_a_folder_is_named_as_one() {
    let schema = Schema::chest_xray();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scan.png")).unwrap();
    let path = dir.path().join("list.csv");
    std::fs::write(&path, "case,file,report\nc1,scan.png,Clear.\n").unwrap();
    let options = generic::GenericOptions {
        file: path,
        id: Some("case".into()),
        image: Some("file".into()),
        text: vec!["report".into()],
        ..Default::default()
    };
    let err = generic::prepare(&options, &schema, STRICT)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("list.csv:2") && err.contains("is a folder, not an image file"),
        "{err}"
    );
}
