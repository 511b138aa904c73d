//! `umcl label` end to end: a small CSV in, the label CSV out; bad rows stop the run with
//! the file and line named, or with `--skip-bad` are skipped, counted and listed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A fresh scratch directory under the target dir for one test.
fn scratch(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("cli_label-{test}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

fn umcl_label(input: &Path, output: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umcl"))
        .arg("label")
        .arg("--input")
        .arg(input)
        .args([
            "--id-column",
            "uid",
            "--text-columns",
            "findings,impression",
        ])
        .arg("--output")
        .arg(output)
        .args(extra)
        .output()
        .expect("umcl runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const HEADER: &str = "uid,findings,impression\n";

#[test]
fn labels_a_small_csv() {
    let dir = scratch("small");
    let input = dir.join("reports.csv");
    let output = dir.join("labels.csv");
    std::fs::write(
        &input,
        format!(
            "{HEADER}\
             a1,\"Heart size normal. Small left effusion.\",No pneumothorax.\n\
             a2,The lungs are clear.,No acute cardiopulmonary abnormality.\n\
             a3,,Cannot exclude pneumonia.\n\
             a4,,\n"
        ),
    )
    .unwrap();
    let out = umcl_label(&input, &output, &[]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("labeled 4 reports"), "{stdout}");
    assert!(stdout.contains("1 reports had no text"), "{stdout}");
    // Column order: uid, then CHEST_XRAY_KEYS (no_finding, enlarged_cardiomediastinum,
    // cardiomegaly, lung_opacity, lung_lesion, edema, consolidation, pneumonia, atelectasis,
    // pneumothorax, pleural_effusion, pleural_other, fracture, support_devices, emphysema,
    // fibrosis, hernia).
    let csv = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "uid,no_finding,enlarged_cardiomediastinum,cardiomegaly,lung_opacity,lung_lesion,edema,\
         consolidation,pneumonia,atelectasis,pneumothorax,pleural_effusion,pleural_other,\
         fracture,support_devices,emphysema,fibrosis,hernia"
    );
    // a1: "heart size normal" negates cardiomegaly, the effusion is positive (so no
    // no_finding), the pneumothorax is negated.
    assert_eq!(lines[1], "a1,,,0,,,,,,,0,1,,,,,,");
    // a2: "lungs are clear" negates lung opacity; nothing is positive, so no_finding is 1.
    assert_eq!(lines[2], "a2,1,,,0,,,,,,,,,,,,,");
    // a3: "cannot exclude" makes pneumonia uncertain, which also rules out no_finding.
    assert_eq!(lines[3], "a3,,,,,,,,-1,,,,,,,,,");
    // a4: no text at all: every label left empty, not "no finding".
    assert_eq!(lines[4], "a4,,,,,,,,,,,,,,,,,");
    assert_eq!(lines.len(), 5);
}

/// Rows 2 and 4 of the file (lines 3 and 5) are bad: a missing field and non-UTF-8 text.
fn write_bad_input(dir: &Path) -> PathBuf {
    let input = dir.join("bad.csv");
    let mut bytes = HEADER.as_bytes().to_vec();
    bytes.extend_from_slice(b"b1,No effusion.,Normal.\n");
    bytes.extend_from_slice(b"b2,only two fields\n");
    bytes.extend_from_slice(b"b3,Small effusion.,\n");
    bytes.extend_from_slice(b"b4,Caf\xe9 au lait effusion.,\n");
    std::fs::write(&input, bytes).unwrap();
    input
}

#[test]
fn malformed_row_names_file_and_line_and_writes_nothing() {
    let dir = scratch("malformed");
    let input = write_bad_input(&dir);
    let output = dir.join("labels.csv");
    let out = umcl_label(&input, &output, &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:3: found 2 fields, the header has 3",
            input.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("--skip-bad"), "{stderr}");
    // Atomic output: no partial file and no temporary file left behind.
    assert!(!output.exists());
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(leftovers.len(), 1, "only the input remains: {leftovers:?}");
}

#[test]
fn non_utf8_text_names_file_line_and_column() {
    let dir = scratch("utf8");
    let input = dir.join("latin1.csv");
    std::fs::write(&input, b"uid,findings,impression\nc1,Caf\xe9.,x\n").unwrap();
    let output = dir.join("labels.csv");
    let out = umcl_label(&input, &output, &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:2: column `findings` is not valid UTF-8",
            input.display()
        )),
        "{stderr}"
    );
    assert!(!output.exists());
}

#[test]
fn skip_bad_counts_and_lists_skipped_rows() {
    let dir = scratch("skip");
    let input = write_bad_input(&dir);
    let output = dir.join("labels.csv");
    let out = umcl_label(&input, &output, &["--skip-bad"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("labeled 2 reports"), "{stdout}");
    assert!(stdout.contains("skipped 2 malformed rows:"), "{stdout}");
    assert!(
        stdout.contains(&format!("{}:3: found 2 fields", input.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{}:5: column `findings` is not valid UTF-8",
            input.display()
        )),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&output).unwrap();
    let ids: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["b1", "b3"]);
}

#[test]
fn missing_column_is_named() {
    let dir = scratch("column");
    let input = dir.join("reports.csv");
    std::fs::write(&input, "id,findings,impression\nx,No effusion.,\n").unwrap();
    let output = dir.join("labels.csv");
    let out = umcl_label(&input, &output, &[]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains(":1: no column `uid`"), "{stderr}");
}

fn umcl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(args)
        .output()
        .expect("umcl runs")
}

#[test]
fn chexpert_format_matches_the_chexpert_labeler_csv() {
    let dir = scratch("chexpert");
    let input = dir.join("reports.csv");
    let output = dir.join("labeled_reports.csv");
    std::fs::write(
        &input,
        format!(
            "{HEADER}\
             c1,Heart size normal and lungs are clear.,No edema or pneumonia.\n\
             c2,Left pleural effusion with adjacent atelectasis.,Possible pneumonia.\n\
             c3,Fever and cough for three days.,\n"
        ),
    )
    .unwrap();
    let out = umcl_label(&input, &output, &["--format", "chexpert"]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("1 reports had no radiological content"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    // The CheXpert labeler's header, in its order (Lung Lesion before Lung Opacity).
    assert_eq!(
        lines[0],
        "Reports,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Lesion,Lung Opacity,\
         Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,\
         Fracture,Support Devices"
    );
    // Its values: 1.0 / 0.0 / -1.0 / empty; the report text first, sections joined.
    assert_eq!(
        lines[1],
        "Heart size normal and lungs are clear. No edema or pneumonia.,1.0,,0.0,,0.0,0.0,,0.0,,,,,,"
    );
    assert_eq!(
        lines[2],
        "Left pleural effusion with adjacent atelectasis. Possible pneumonia.,,,,,,,,-1.0,1.0,,1.0,,,"
    );
    // A clinical note with no radiological content: no labels, not even No Finding.
    assert_eq!(lines[3], "Fever and cough for three days.,,,,,,,,,,,,,,");
    assert_eq!(lines.len(), 4);
}

#[test]
fn layered_rules_add_and_remove_phrases() {
    let dir = scratch("layers");
    let site = dir.join("site.toml");
    std::fs::write(
        &site,
        "name = \"site\"\n\
         remove = [\"fx\"]\n\
         [negation]\n\
         pre = [\"nil\"]\n\
         [[label]]\n\
         key = \"pneumothorax\"\n\
         mentions = [\"pneumo\"]\n",
    )
    .unwrap();
    let site = site.to_str().unwrap();
    let label = |report: &str, rules: &[&str]| {
        let mut args = vec!["label", "--text", report];
        for r in rules {
            args.extend(["--rules", r]);
        }
        let out = umcl(&args);
        assert!(out.status.success(), "stderr: {}", text_of(&out));
        text(&out.stdout).trim().to_string()
    };
    let report = "Nil pneumo. Fx of the left 5th rib.";
    // Built in: "pneumo" is no mention, "nil" no cue, "fx" a fracture.
    assert_eq!(label(report, &[]), "fracture=1");
    // The site layer adds a mention and a cue and removes "fx".
    assert_eq!(
        label(report, &["builtin", site]),
        "no_finding=1 pneumothorax=0"
    );
    // A layer alone is no base: the error says how to layer it.
    let out = umcl(&["label", "--text", report, "--rules", site]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("must set scope.pre_window"), "{err}");
    assert!(err.contains("--rules builtin --rules"), "{err}");
    // Removing a phrase nobody uses is an error naming the file and the phrase.
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "remove = [\"pneumothoraks\"]\n").unwrap();
    let out = umcl(&[
        "label",
        "--text",
        report,
        "--rules",
        "builtin",
        "--rules",
        typo.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("typo.toml") && err.contains("`pneumothoraks`"),
        "{err}"
    );
}

fn text_of(out: &Output) -> String {
    text(&out.stderr)
}

#[test]
fn explain_names_phrase_cue_and_clause() {
    let out = umcl(&[
        "label",
        "--explain",
        "--text",
        "Indication: rule out pneumonia. Findings: No pneumothorax. Small left effusion? \
         Non-displaced fracture of the left fifth rib.",
    ]);
    assert!(out.status.success(), "stderr: {}", text_of(&out));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "pneumothorax=0 pleural_effusion=-1 fracture=1");
    assert!(
        stdout.contains("pneumothorax = 0: `pneumothorax`, cue `no`, in \"no pneumothorax\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("pleural_effusion = -1: `effusion`, cue `?`, in \"small left effusion\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("fracture = 1: `fracture`, no cue reaches it"),
        "{stdout}"
    );
    assert!(stdout.contains("no_finding = empty:"), "{stdout}");
    // The indication's pneumonia is skipped: no label, no explanation.
    assert!(!stdout.contains("pneumonia"), "{stdout}");
}
