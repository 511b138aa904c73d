//! Scope cases of the built-in labeler rules, written as snapshots: each test renders every
//! non-empty label as `key=value` (CheXpert values: 1, 0, -1) and the comment says why.

use umcl_data::labeler::{Labeler, LabelerError};
use umcl_data::schema::LabelState;

fn render(text: &str) -> String {
    let labels = Labeler::builtin().label(text);
    labels
        .iter()
        .filter(|(_, s)| *s != LabelState::Unmentioned)
        .map(|(k, s)| format!("{k}={}", s.as_chexpert()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn pre_negation_spreads_over_a_list() {
    // "no" scopes to the end of its clause, across "or": both findings are negated and,
    // with nothing positive, the report is "no finding".
    assert_eq!(
        render("No pneumothorax or effusion."),
        "no_finding=1 pneumothorax=0 pleural_effusion=0"
    );
    assert_eq!(
        render("There is no evidence of focal consolidation, effusion, or pneumothorax."),
        "no_finding=1 consolidation=0 pneumothorax=0 pleural_effusion=0"
    );
}

#[test]
fn sentence_boundary_ends_negation() {
    // "normal" pairs with "heart size" (negative cardiomegaly); the period ends that
    // sentence, so the effusion of the next one is positive and cancels no_finding.
    assert_eq!(
        render("Heart size normal. Small left effusion."),
        "cardiomegaly=0 pleural_effusion=1"
    );
    // The same across "No X. Y is present."
    assert_eq!(
        render("No pneumothorax. Effusion is present."),
        "pneumothorax=0 pleural_effusion=1"
    );
}

#[test]
fn terminator_ends_negation() {
    // "but" closes the clause of "no": the effusion after it is positive.
    assert_eq!(
        render("No pneumothorax, but there is a small right effusion."),
        "pneumothorax=0 pleural_effusion=1"
    );
    // "and the" starts a new statement with its own subject.
    assert_eq!(
        render("No pneumothorax and the heart is enlarged."),
        "cardiomegaly=1 pneumothorax=0"
    );
    // A post-cue after its mention: "is no longer seen".
    assert_eq!(
        render("The effusion is no longer seen."),
        "no_finding=1 pleural_effusion=0"
    );
}

#[test]
fn uncertainty_before_and_after() {
    // Pre-cue "cannot exclude" (one phrase, so its "not" is no negation).
    assert_eq!(render("Cannot exclude pneumonia."), "pneumonia=-1");
    // Post-cue "cannot be excluded" and "is not excluded".
    assert_eq!(render("Pneumonia cannot be excluded."), "pneumonia=-1");
    assert_eq!(
        render("Small effusion is not excluded."),
        "pleural_effusion=-1"
    );
    // "may represent" reaches the mention after it; the opacity itself is stated plainly.
    assert_eq!(
        render("Basilar opacity may represent atelectasis."),
        "lung_opacity=1 atelectasis=-1"
    );
    // A differential: "versus" is a cue on both sides.
    assert_eq!(
        render("Atelectasis versus pneumonia."),
        "pneumonia=-1 atelectasis=-1"
    );
    assert_eq!(render("Possible small pneumothorax."), "pneumothorax=-1");
}

#[test]
fn post_negation() {
    // "has resolved" after the mention negates it.
    assert_eq!(
        render("The left pneumothorax has resolved."),
        "no_finding=1 pneumothorax=0"
    );
    assert_eq!(
        render("Pleural effusion is not seen."),
        "no_finding=1 pleural_effusion=0"
    );
}

#[test]
fn attribute_rules() {
    // "normal heart size": attribute before its subject.
    assert_eq!(render("Normal heart size."), "no_finding=1 cardiomegaly=0");
    // "heart is not enlarged": the cue sits between subject and attribute.
    assert_eq!(
        render("The heart is not enlarged."),
        "no_finding=1 cardiomegaly=0"
    );
    assert_eq!(
        render("The cardiac silhouette is mildly enlarged."),
        "cardiomegaly=1"
    );
    // Borderline enlargement is enlargement (the IU indexers agree).
    assert_eq!(render("Stable borderline cardiomegaly."), "cardiomegaly=1");
    // "upper limits of normal" is a normal heart.
    assert_eq!(
        render("Heart size is upper limits of normal."),
        "no_finding=1 cardiomegaly=0"
    );
    // "lungs are clear" states that there is no opacity.
    assert_eq!(
        render("The lungs are clear."),
        "no_finding=1 lung_opacity=0"
    );
    // A line tip in the SVC implies a catheter even when the device word is missing.
    assert_eq!(
        render("Right chest XXXX with tip in the SVC."),
        "no_finding=1 support_devices=1"
    );
}

#[test]
fn longest_phrase_wins() {
    // "pericardial effusion" is an ignore phrase that hides "effusion".
    assert_eq!(render("Small pericardial effusion."), "no_finding=1");
    // "no change" is a pseudo-negation: the effusion stays positive.
    assert_eq!(
        render("No change in the small left pleural effusion."),
        "pleural_effusion=1"
    );
    // "free of" is one negation cue.
    assert_eq!(
        render("Lungs are free of infiltrate."),
        "no_finding=1 lung_opacity=0"
    );
}

#[test]
fn mentions_combine_positive_first() {
    // Negative on the left, positive on the right: positive wins (CheXpert's order).
    assert_eq!(
        render("No left effusion. Small right effusion."),
        "pleural_effusion=1"
    );
    // Uncertain beats negative.
    assert_eq!(
        render("No pneumothorax. Possible pneumothorax at the apex."),
        "pneumothorax=-1"
    );
}

#[test]
fn no_finding_rules() {
    // Support devices do not cancel no_finding (CheXpert convention).
    assert_eq!(
        render("Sternotomy wires are intact. Lungs are clear."),
        "no_finding=1 lung_opacity=0 support_devices=1"
    );
    // An abnormality outside the schema (granuloma) cancels it without setting a label.
    assert_eq!(render("Calcified granuloma in the right upper lobe."), "");
    // An empty report, or a text without radiological content, gets no labels at all: no
    // finding is something a radiologist says, not the absence of words.
    assert_eq!(render(""), "");
    assert_eq!(
        render("Fever and cough for five days, started on antibiotics."),
        ""
    );
    // A report that says only "normal things" is a normal report.
    assert_eq!(render("No acute cardiopulmonary process."), "no_finding=1");
}

#[test]
fn sections_are_sentences() {
    // Without the section break "no" would reach into the impression.
    let labeler = Labeler::builtin();
    let labels = labeler.label_sections(&["No pneumothorax", "effusion on the right"]);
    assert_eq!(labels.get("pleural_effusion"), Some(LabelState::Positive));
    assert_eq!(labels.get("pneumothorax"), Some(LabelState::Negative));
    assert_eq!(labels.get("not_a_key"), None);
}

#[test]
fn decimal_point_is_no_sentence_end() {
    // "2.5" must not split the sentence; the negation still covers the fracture.
    assert_eq!(render("No 2.5 cm fracture."), "no_finding=1 fracture=0");
}

const MINIMAL: &str = r#"
name = "t"
[scope]
terminators = ["but"]
pre_window = 3
post_window = 2
[negation]
pre = ["no"]
[uncertainty]
pre = ["possible"]
"#;

fn custom(extra: &str) -> Result<Labeler, LabelerError> {
    Labeler::from_toml_str(&format!("{MINIMAL}{extra}"))
}

#[test]
fn custom_rules_windows_and_prefixes() {
    let labeler = custom("[[label]]\nkey = \"atelectasis\"\nmentions = [\"atelecta*\"]\n").unwrap();
    // The prefix phrase matches "atelectatic" too.
    assert_eq!(
        labeler.label("Atelectatic change.").get("atelectasis"),
        Some(LabelState::Positive)
    );
    // pre_window = 3: "no" reaches across three words but not four.
    assert_eq!(
        labeler.label("No a b c atelectasis.").get("atelectasis"),
        Some(LabelState::Negative)
    );
    assert_eq!(
        labeler.label("No a b c d atelectasis.").get("atelectasis"),
        Some(LabelState::Positive)
    );
    // Uncertainty cues may have their own reach: here 1 word before the mention.
    let short = Labeler::from_toml_str(&format!(
        "{}\n[[label]]\nkey = \"edema\"\nmentions = [\"edema\"]\n",
        MINIMAL.replace(
            "pre = [\"possible\"]",
            "pre = [\"possible\"]\npre_window = 1"
        )
    ))
    .unwrap();
    assert_eq!(
        short.label("Possible mild edema.").get("edema"),
        Some(LabelState::Uncertain)
    );
    assert_eq!(
        short.label("Possible a b edema.").get("edema"),
        Some(LabelState::Positive)
    );
    // ... while negation keeps scope.pre_window (3).
    assert_eq!(
        short.label("No a b c edema.").get("edema"),
        Some(LabelState::Negative)
    );
    // Words are matched whole: "no" inside "nodal" is no cue.
    assert_eq!(
        labeler.label("Nodal atelectasis.").get("atelectasis"),
        Some(LabelState::Positive)
    );
}

#[test]
fn custom_rules_are_checked() {
    let err = |extra: &str| custom(extra).unwrap_err().to_string();
    assert!(
        err("[[label]]\nkey = \"lung_cancer\"\nmentions = [\"x\"]\n")
            .contains("unknown label key `lung_cancer`")
    );
    assert!(err("[[label]]\nkey = \"no_finding\"\nmentions = [\"x\"]\n").contains("computed"));
    assert!(err("[[label]]\nkey = \"edema\"\nmentions = [\" \"]\n").contains("empty phrase"));
    assert!(err("[[label]]\nkey = \"edema\"\nmentions = [\"a*b\"]\n").contains("`*` may only end"));
    assert!(
        err("[[label]]\nkey = \"edema\"\n[[label]]\nkey = \"edema\"\n").contains("appears twice")
    );
    assert!(
        err("[[label]]\nkey = \"edema\"\nmentions = [\"x\"]\nignore = [\"x\"]\n")
            .contains("both ignored")
    );
    assert!(
        err("[no_finding]\nignore = [\"devices\"]\n[[label]]\nkey = \"edema\"\n")
            .contains("unknown finding `devices`")
    );
    // A misspelt field is an error, not a silently ignored rule.
    assert!(err("[[label]]\nkey = \"edema\"\nmention = [\"x\"]\n").contains("unknown field"));
}

#[test]
fn hyphenated_prefixes_are_no_negation() {
    // "non-" and "un-" joined to a word modify that word; the finding stays positive.
    assert_eq!(
        render("Non-displaced fracture of the left fifth rib."),
        "fracture=1"
    );
    assert_eq!(
        render("Non-specific interstitial opacities."),
        "lung_opacity=1"
    );
    // A free-standing cue still negates, and a hyphenated negative attribute is one.
    assert_eq!(render("No displaced fracture."), "no_finding=1 fracture=0");
    assert_eq!(render("Non-enlarged heart."), "no_finding=1 cardiomegaly=0");
}

#[test]
fn questions_are_uncertain() {
    assert_eq!(render("Pneumonia?"), "pneumonia=-1");
    assert_eq!(
        render("?Small left apical pneumothorax."),
        "pneumothorax=-1"
    );
    assert_eq!(render("? CHF"), "edema=-1");
    // Only the clause that asks: the statement before it stands.
    assert_eq!(
        render("Small left effusion. Is there a pneumothorax?"),
        "pneumothorax=-1 pleural_effusion=1"
    );
    // A question does not undo a negation.
    assert_eq!(render("No pneumothorax?"), "no_finding=1 pneumothorax=0");
}

#[test]
fn skipped_sections_are_not_labelled() {
    // The indication's pneumonia is the clinician's question, not a finding.
    assert_eq!(
        render("INDICATION: Fever, rule out pneumonia. FINDINGS: The lungs are clear."),
        "no_finding=1 lung_opacity=0"
    );
    // Without a following header, a skipped section ends with the sentence after it.
    assert_eq!(
        render("History: CHF. Small bilateral effusions."),
        "pleural_effusion=1"
    );
    // Comparison lines say what an earlier study showed.
    assert_eq!(
        render("Comparison: chest radiograph showing pneumonia. Impression: No acute process."),
        "no_finding=1"
    );
    // A header is only a header with its colon.
    assert_eq!(render("History of pneumonia."), "pneumonia=1");
}

#[test]
fn texts_without_radiological_content_get_no_labels() {
    let labeler = Labeler::builtin();
    for note in [
        "Patient presented with fever, cough and shortness of breath for five days.",
        "72-year-old man with hypertension, admitted for chest pain; heart rate 112.",
        "Swab positive for SARS-CoV-2. Started on oxygen by nasal cannula.",
        "Indication: pneumonia.",
    ] {
        let reading = labeler.read(&[note]);
        assert!(!reading.radiological, "{note}");
        assert!(reading.labels.is_empty(), "{note}");
    }
    for report in [
        "No acute cardiopulmonary process.",
        "Heart size normal.",
        "Chest radiograph: unremarkable.",
        "No pneumothorax.",
        "Small pericardial effusion.",
    ] {
        let reading = labeler.read(&[report]);
        assert!(reading.radiological, "{report}");
        assert_eq!(
            reading.labels.get("no_finding"),
            Some(LabelState::Positive),
            "{report}"
        );
    }
}

#[test]
fn an_attribute_does_not_pair_across_another_finding() {
    // "large" describes the hernia, not the heart.
    assert_eq!(
        render("Large hiatal hernia projecting over the cardiac silhouette."),
        "hernia=1"
    );
    assert_eq!(render("The cardiac silhouette is large."), "cardiomegaly=1");
}

#[test]
fn mentions_carry_their_cue_and_clause() {
    let mentions = Labeler::builtin()
        .mentions(&["Small left effusion, but pneumothorax cannot be excluded. Pneumonia?"]);
    let found: Vec<(String, Option<String>, String)> = mentions
        .into_iter()
        .map(|m| (m.finding, m.cue, m.clause))
        .collect();
    assert_eq!(
        found,
        vec![
            (
                "pleural_effusion".to_string(),
                None,
                "small left effusion".to_string()
            ),
            (
                "pneumothorax".to_string(),
                Some("cannot be excluded".to_string()),
                "pneumothorax cannot be excluded".to_string()
            ),
            (
                "pneumonia".to_string(),
                Some("?".to_string()),
                "pneumonia".to_string()
            ),
        ]
    );
}

#[test]
fn rule_files_layer() {
    use umcl_data::labeler::{RuleSource, BUILTIN_RULES};
    let layered = |site: &str| {
        Labeler::from_layers(&[
            RuleSource::new("builtin", BUILTIN_RULES),
            RuleSource::new("site.toml", site),
        ])
    };
    // Added phrases and cues work; removed ones are gone from every role.
    let site = layered(
        "name = \"site\"\nremove = [\"versus\", \"vs\"]\n[uncertainty]\npre = [\"cannot rule\"]\n\
         [[label]]\nkey = \"edema\"\nmentions = [\"wet lungs\"]\n",
    )
    .unwrap();
    assert_eq!(site.name(), "chest-xray+site");
    assert_eq!(
        site.label("Wet lungs.").get("edema"),
        Some(LabelState::Positive)
    );
    assert_eq!(
        site.label("Atelectasis versus pneumonia.").get("pneumonia"),
        Some(LabelState::Positive)
    );
    // Windows are replaced.
    let narrow = layered("[scope]\npre_window = 1\n").unwrap();
    assert_eq!(
        narrow
            .label("No left-sided large effusion.")
            .get("pleural_effusion"),
        Some(LabelState::Positive)
    );
    // Errors name the file.
    let err = layered("remove = [\"no such phrase\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("site.toml") && err.contains("`no such phrase`"),
        "{err}"
    );
    let err = layered("[[label]]\nkey = \"lung_cancer\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown label key `lung_cancer`"), "{err}");
    let err = layered("[negation\n").unwrap_err().to_string();
    assert!(err.contains("site.toml"), "{err}");
    // The first file is the base: it must be complete and cannot remove anything.
    let err = Labeler::from_layers(&[RuleSource::new("site.toml", "remove = [\"no\"]")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("must set name, scope.pre_window, scope.post_window"),
        "{err}"
    );
    assert!(Labeler::from_layers(&[]).is_err());
}

#[test]
fn rule_files_by_path() {
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site.toml");
    std::fs::write(
        &site,
        "[[label]]\nkey = \"edema\"\nmentions = [\"wet lungs\"]\n",
    )
    .unwrap();
    let labeler = Labeler::from_paths(&[std::path::Path::new("builtin"), &site]).unwrap();
    assert_eq!(
        labeler.label("Wet lungs.").get("edema"),
        Some(LabelState::Positive)
    );
    // A missing file is an error that names it.
    let missing = dir.path().join("missing.toml");
    let err = Labeler::from_paths(&[std::path::Path::new("builtin"), &missing])
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.toml"), "{err}");
}
