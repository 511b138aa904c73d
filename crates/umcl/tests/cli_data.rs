//! `umcl data prepare|stats|split` as a user runs them, on the fixtures of umcl-data and, when
//! present, on the real files in `../shared/data`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use umcl_data::manifest::Manifest;
use umcl_data::split::{Part, Split};

fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_data-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn fixture(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../umcl-data/tests/fixtures")
        .join(rel)
        .to_string_lossy()
        .into_owned()
}

fn umcl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

fn prepare_chexpert(dir: &Path) -> PathBuf {
    // Into a folder that does not exist yet: prepare makes it.
    let out = dir.join("new/folder/chexpert.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "chexpert",
        "--input",
        &fixture("chexpert/CheXpert-v1.0-small/train.csv"),
        "--input",
        &fixture("chexpert/CheXpert-v1.0-small/valid.csv"),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(
        stdout,
        format!(
            "wrote 6 samples to {} (source chexpert, schema chest-xray): 4 patients, 6 with image, 0 with text, 6 with labels\n",
            out.display()
        )
    );
    out
}

#[test]
fn prepare_stats_and_split_chexpert() {
    let dir = scratch("chexpert");
    let manifest = prepare_chexpert(&dir);
    let stats = ok(umcl(&["data", "stats", manifest.to_str().unwrap()]));
    // Counted by hand from train.csv (5 rows, patients 1-3) and valid.csv (1 row, patient
    // 64541, every observation 0 but Enlarged Cardiomediastinum, Cardiomegaly and Lung Opacity):
    // e.g. lung_opacity is 1 in rows 2-4 of train and in valid; consolidation is -1 in rows 2-4.
    let expected = format!(
        "manifest {} (schema chest-xray, 17 keys)

source            samples patients    image     text   labels
chexpert                6        4        6        0        6

label                         positive  negative uncertain unmentioned   [chexpert]
no_finding                           1         1         0           4
enlarged_cardiomediastinum           1         0         0           5
cardiomegaly                         1         0         1           4
lung_opacity                         4         0         0           2
lung_lesion                          0         1         0           5
edema                                1         1         1           3
consolidation                        0         1         3           2
pneumonia                            0         1         0           5
atelectasis                          0         1         1           4
pneumothorax                         0         3         0           3
pleural_effusion                     0         1         1           4
pleural_other                        0         1         0           5
fracture                             3         1         0           2
support_devices                      1         1         0           4
emphysema                            0         0         0           6
fibrosis                             0         0         0           6
hernia                               0         0         0           6
",
        manifest.display()
    );
    assert_eq!(stats, expected);

    let split_out = ok(umcl(&[
        "data",
        "split",
        manifest.to_str().unwrap(),
        "--seed",
        "3",
        "--fractions",
        "0.5,0.25",
    ]));
    let split_file = manifest.with_file_name("chexpert.splits.json");
    assert!(split_out.starts_with(&format!(
        "wrote {} (seed 3, fractions [0.5, 0.25, 0.25], by patient)\n",
        split_file.display()
    )));
    let split = Split::read(&split_file).unwrap();
    // 4 patients: 2 train, 1 val, 1 test; patient00002 (3 images) sits in one part.
    assert_eq!(split.groups, [2, 1, 1]);
    let samples = Manifest::read(&manifest).unwrap().samples;
    let lookup = split.lookup();
    let parts: std::collections::HashSet<Part> = samples
        .iter()
        .filter(|s| s.patient_id.as_deref() == Some("patient00002"))
        .map(|s| lookup[s.id.as_str()])
        .collect();
    assert_eq!(parts.len(), 1);
    // The same seed writes the same file; stats now reports the split too.
    let first = std::fs::read(&split_file).unwrap();
    ok(umcl(&[
        "data",
        "split",
        manifest.to_str().unwrap(),
        "--seed",
        "3",
        "--fractions",
        "0.5,0.25,0.25",
    ]));
    assert_eq!(std::fs::read(&split_file).unwrap(), first);
    let stats = ok(umcl(&["data", "stats", manifest.to_str().unwrap()]));
    assert!(
        stats.contains("(seed 3, fractions [0.5, 0.25, 0.25])\n  train  "),
        "{stats}"
    );
}

#[test]
fn bad_rows_stop_with_file_and_line_or_are_skipped_and_listed() {
    let dir = scratch("bad");
    let out = dir.join("bad.jsonl");
    let bad = fixture("chexpert/CheXpert-v1.0-small/bad.csv");
    let args = [
        "data",
        "prepare",
        "--source",
        "chexpert",
        "--input",
        &bad,
        "--out",
        out.to_str().unwrap(),
    ];
    let output = umcl(&args);
    assert!(!output.status.success());
    assert_eq!(
        text(&output.stderr),
        format!("umcl: error: {bad}:3: wrong number of fields: 9, the header has 19\n")
    );
    assert!(!out.exists(), "no manifest after an error");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no temporary file"
    );

    let mut skip = args.to_vec();
    skip.push("--skip-bad");
    let stdout = ok(umcl(&skip));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert!(lines[0].starts_with("wrote 2 samples to "));
    assert_eq!(lines[1], "skipped 4 bad rows (--skip-bad):");
    assert_eq!(
        lines[2],
        format!("  {bad}:3: wrong number of fields: 9, the header has 19")
    );
    assert!(lines[3].starts_with(&format!(
        "  {bad}:4: column `Lung Opacity`: unknown label value `2.0`"
    )));
    assert!(lines[4].starts_with(&format!("  {bad}:5: image file ")));
    assert!(lines[5].starts_with(&format!("  {bad}:6: column `Sex` is not valid UTF-8")));
    let list = dir.join("bad.skipped.txt");
    assert_eq!(lines[6], format!("  (also listed in {})", list.display()));
    assert_eq!(std::fs::read_to_string(&list).unwrap().lines().count(), 4);
    assert_eq!(Manifest::read(&out).unwrap().samples.len(), 2);
    // A clean run over the same output removes the stale list.
    ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "chexpert",
        "--input",
        &fixture("chexpert/CheXpert-v1.0-small/valid.csv"),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(!list.exists());
}

#[test]
fn misuse_is_explained() {
    let dir = scratch("misuse");
    let out = dir.join("m.jsonl");
    let out = out.to_str().unwrap();
    let input = fixture("covid/metadata.csv");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--source", "covid", "--input", &input, "--out", out, "--reports", "x"],
            "umcl: error: --reports applies only to --source mimic-cxr\n",
        ),
        (
            &["--source", "padchest", "--input", &input, "--out", out],
            "umcl: error: unknown source `padchest` (known: mimic-cxr, chexpert, chestx-ray14, iu-xray, covid-cxr, generic, dicom)\n",
        ),
        (
            &["--source", "covid-cxr", "--input", &input, "--input", &input, "--out", out],
            "umcl: error: --source covid-cxr takes one --input (only chexpert takes several)\n",
        ),
        (
            &["--source", "iu-xray", "--input", &input, "--out", out, "--notes", "imaging"],
            "umcl: error: --notes applies only to --source covid-cxr\n",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["data", "prepare"];
        all.extend_from_slice(args);
        let output = umcl(&all);
        assert!(!output.status.success());
        assert_eq!(text(&output.stderr), *expected);
    }
    // A schema file that does not exist.
    let output = umcl(&[
        "data",
        "prepare",
        "--source",
        "covid-cxr",
        "--input",
        &input,
        "--out",
        out,
        "--schema",
        "nope.toml",
    ]);
    assert!(text(&output.stderr).starts_with("umcl: error: cannot load the schema: nope.toml: "));
}

#[test]
fn stats_refuses_an_invalid_manifest() {
    let dir = scratch("invalid");
    let path = dir.join("m.jsonl");
    std::fs::write(
        &path,
        "{\"format\":\"umcl-manifest\",\"version\":1,\"schema\":\"s\",\"keys\":[\"a\"]}\n{\"id\":\"x\",\"labels\":{\"b\":1},\"source\":\"t\"}\n",
    )
    .unwrap();
    let output = umcl(&["data", "stats", path.to_str().unwrap()]);
    assert!(!output.status.success());
    assert_eq!(
        text(&output.stderr),
        format!(
            "umcl: error: {}:2: sample `x`: unknown label key `b` (schema `s`)\n",
            path.display()
        )
    );
}

#[test]
fn generic_csv_with_chosen_columns() {
    let dir = scratch("generic");
    let out = dir.join("g.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "generic",
        "--input",
        &fixture("generic/samples.csv"),
        "--out",
        out.to_str().unwrap(),
        "--id-col",
        "case",
        "--patient-col",
        "subject",
        "--image-col",
        "file",
        "--text-col",
        "report",
        "--label-cols",
        "Cardiomegaly,Edema",
        "--source-name",
        "clinic",
    ]));
    assert!(
        stdout.contains("wrote 3 samples to")
            && stdout.contains("2 patients, 3 with image, 2 with text, 2 with labels"),
        "{stdout}"
    );
    let manifest = std::fs::read_to_string(&out).unwrap();
    let second = manifest.lines().nth(2).unwrap();
    assert!(
        second.starts_with(r#"{"id":"c2","patient_id":"s1","image":"#),
        "{second}"
    );
    assert!(
        second.ends_with(r#""labels":{"cardiomegaly":0,"edema":-1},"source":"clinic"}"#),
        "{second}"
    );
}

fn shared(rel: &str) -> Option<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel);
    if path.exists() {
        Some(path.to_string_lossy().into_owned())
    } else {
        println!(
            "skipped: {} is absent (shared data is not part of a fresh clone)",
            path.display()
        );
        None
    }
}

#[test]
fn real_covid_and_iu_files() {
    let (Some(covid), Some(iu)) = (
        shared("covid-cxr-512/metadata.csv"),
        shared("iu-xray-reports/reports-dev.csv"),
    ) else {
        return;
    };
    let dir = scratch("real");
    let covid_out = dir.join("covid.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "covid-cxr",
        "--input",
        &covid,
        "--out",
        covid_out.to_str().unwrap(),
        "--skip-bad",
    ]));
    assert!(
        stdout.contains("wrote 648 samples") && stdout.contains("skipped 5 bad rows"),
        "{stdout}"
    );
    let iu_out = dir.join("iu.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "iu-xray",
        "--input",
        &iu,
        "--out",
        iu_out.to_str().unwrap(),
    ]));
    assert!(stdout.contains("wrote 1979 samples"), "{stdout}");
    ok(umcl(&["data", "split", covid_out.to_str().unwrap()]));
    let stats = ok(umcl(&[
        "data",
        "stats",
        covid_out.to_str().unwrap(),
        iu_out.to_str().unwrap(),
    ]));
    assert!(
        stats.contains("\ncovid-cxr             648      349      648      537      570\n"),
        "{stats}"
    );
    assert!(
        stats
            .contains("\npneumonia                          547         0         0         101\n"),
        "{stats}"
    );
    assert!(
        stats.contains("\niu-xray              1979     1979        0     1965     1407\n"),
        "{stats}"
    );
}

#[test]
fn long_skip_lists_go_to_a_file() {
    let dir = scratch("long");
    let input = dir.join("many.csv");
    let mut csv = String::from("case,Edema\n");
    for i in 0..25 {
        csv += &format!("c{i},9\n");
    }
    csv += "ok,1\n";
    std::fs::write(&input, csv).unwrap();
    let out = dir.join("many.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "generic",
        "--input",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--id-col",
        "case",
        "--label-cols",
        "Edema",
        "--skip-bad",
    ]));
    let list = dir.join("many.skipped.txt");
    assert!(
        stdout.ends_with(&format!(
            "  ... and 5 more, all listed in {}\n",
            list.display()
        )),
        "{stdout}"
    );
    let listed = std::fs::read_to_string(&list).unwrap();
    assert_eq!(listed.lines().count(), 25);
    assert!(listed.lines().last().unwrap().ends_with(
        "many.csv:26: column `Edema`: unknown label value `9` (expected 1, 0, -1 or empty)"
    ));
    assert_eq!(Manifest::read(&out).unwrap().samples.len(), 1);
}

#[test]
fn stats_into_a_closed_pipe_is_not_a_panic() {
    let dir = scratch("pipe");
    let manifest = prepare_chexpert(&dir);
    // The reader goes away before umcl writes (it takes far longer to start than this).
    let mut child = Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(["data", "stats", manifest.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr), "");
}

fn dicom_fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../umcl-data/tests/dicom/fixtures")
        .join(rel)
}

/// A folder of three DICOM files (PA, LATERAL, no view) and one that cannot be decoded.
fn dicom_folder(dir: &Path) -> PathBuf {
    let root = dir.join("export");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    for (from, to) in [
        ("mono1_12in16_window_explicit.dcm", "pa.dcm"),
        ("mono2_window_unknown_function.dcm", "sub/lateral.dcm"),
        ("mono2_two_windows.dcm", "noview.dcm"),
    ] {
        std::fs::copy(dicom_fixture(from), root.join(to)).unwrap();
    }
    root
}

#[test]
fn data_prepare_reads_a_dicom_folder_and_keeps_frontal_views() {
    let dir = scratch("dicom-prepare");
    let root = dicom_folder(&dir);
    let out = dir.join("dicom.jsonl");
    let stdout = ok(umcl(&[
        "data",
        "prepare",
        "--source",
        "dicom",
        "--input",
        &root.to_string_lossy(),
        "--out",
        &out.to_string_lossy(),
        "--frontal-only",
    ]));
    assert!(stdout.contains("wrote 1 samples"), "{stdout}");
    assert!(
        stdout.contains(
            "left out 2 samples that are not frontal views (--frontal-only): 1 (none), 1 LATERAL"
        ),
        "{stdout}"
    );
    let manifest = Manifest::read(&out).unwrap();
    let sample = &manifest.samples[0];
    assert_eq!(sample.meta["view"], "AP");
    assert_eq!(sample.patient_id.as_deref(), Some("UMCL-001"));
    // A flag of another source is refused.
    let refused = umcl(&[
        "data",
        "prepare",
        "--source",
        "covid-cxr",
        "--input",
        "x.csv",
        "--out",
        "y.jsonl",
        "--table",
        "t.csv",
    ]);
    assert!(text(&refused.stderr).contains("--table applies only to --source dicom"));
}

#[test]
fn data_convert_writes_pngs_and_a_manifest_and_reports_bad_files() {
    let dir = scratch("dicom-convert");
    let root = dicom_folder(&dir);
    let out = dir.join("png");
    let args = |extra: &[&str]| {
        let mut v = vec![
            "data".to_string(),
            "convert".into(),
            "--input".into(),
            root.to_string_lossy().into_owned(),
            "--out".into(),
            out.to_string_lossy().into_owned(),
            "--size".into(),
            "20".into(),
            "--threads".into(),
            "2".into(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        umcl(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let stdout = ok(run(&["--bits", "16"]));
    assert!(stdout.contains("wrote 3 16-bit PNGs"), "{stdout}");
    // 40 x 32 scaled to a longer side of 20: 20 x 16, 16-bit, and the pixels are the decoded
    // image resized.
    let png = image::open(out.join("pa.png")).unwrap();
    assert_eq!((png.width(), png.height()), (20, 16));
    let png = png.into_luma16();
    let (decoded, _) =
        umcl_data::images::dicom::load(dicom_fixture("mono1_12in16_window_explicit.dcm")).unwrap();
    let want = decoded.resized(20, 16).unwrap().to_u16();
    assert_eq!(png.as_raw(), &want);
    let manifest = std::fs::read_to_string(out.join("convert.csv")).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(lines.len(), 4, "{manifest}");
    assert!(lines[0].starts_with("png,dicom,sop_instance_uid,patient_id"));
    assert!(manifest.contains("sub/lateral.png"), "{manifest}");
    // A file that cannot be decoded stops the run, naming it; --skip-bad counts and lists it.
    std::fs::copy(
        dicom_fixture("bad/jpeg2000_unsupported.dcm"),
        root.join("j2k.dcm"),
    )
    .unwrap();
    let failed = run(&[]);
    assert!(!failed.status.success());
    let err = text(&failed.stderr);
    assert!(
        err.contains("j2k.dcm") && err.contains("1.2.840.10008.1.2.4.90"),
        "{err}"
    );
    let stdout = ok(run(&["--skip-bad"]));
    assert!(
        stdout.contains("wrote 3 8-bit PNGs") && stdout.contains("skipped 1 files"),
        "{stdout}"
    );
    let listed = std::fs::read_to_string(out.join("convert.skipped.txt")).unwrap();
    assert!(listed.contains("j2k.dcm"));
}
