//! Labels-to-text synthesis and the zero-shot prompt templates. The snapshots pin the text a
//! seed gives (regenerate with `UPDATE_EXPECT=1 cargo test -p umcl-data --test synth` after a
//! deliberate change to the pools or the sampling, and read the diff).

use std::path::Path;

use expect_test::expect;
use umcl_data::rng::rng_from_seed;
use umcl_data::schema::{LabelState, Schema};
use umcl_data::synth::{PromptTemplates, SentencePools, SynthOptions, Synthesizer};

fn labels(schema: &Schema, states: &[(&str, LabelState)]) -> Vec<LabelState> {
    let mut labels = vec![LabelState::Unmentioned; schema.len()];
    for (key, state) in states {
        labels[schema.index_of(key).unwrap()] = *state;
    }
    labels
}

fn examples(schema: &Schema) -> Vec<(&'static str, Vec<LabelState>)> {
    use LabelState::*;
    vec![
        ("normal", labels(schema, &[("no_finding", Positive)])),
        (
            "chf",
            labels(
                schema,
                &[
                    ("cardiomegaly", Positive),
                    ("edema", Uncertain),
                    ("pleural_effusion", Positive),
                    ("pneumothorax", Negative),
                ],
            ),
        ),
        (
            "icu",
            labels(
                schema,
                &[
                    ("support_devices", Positive),
                    ("atelectasis", Positive),
                    ("consolidation", Negative),
                    ("pneumonia", Uncertain),
                    ("fracture", Negative),
                ],
            ),
        ),
        ("nothing", labels(schema, &[])),
    ]
}

fn render(synth: &Synthesizer, seed: u64) -> String {
    let schema = Schema::chest_xray();
    examples(&schema)
        .into_iter()
        .map(|(id, labels)| format!("{id}: {}\n", synth.synthesize_for(id, &labels, seed)))
        .collect()
}

#[test]
fn snapshot_seed_0() {
    let synth = Synthesizer::builtin(&Schema::chest_xray()).unwrap();
    expect![[r#"
        normal: No acute intrathoracic abnormality is seen.
        chf: There is no pneumothorax. The heart is enlarged. There is a large bilateral pleural effusion. Possible mild pulmonary edema.
        icu: Linear atelectasis in the right middle lobe. An endotracheal tube is in place. There is no consolidation. No displaced rib fractures. Findings may represent early pneumonia in the right lower lobe.
        nothing: 
    "#]]
    .assert_eq(&render(&synth, 0));
}

#[test]
fn snapshot_seed_1_with_extra_negatives() {
    let synth = Synthesizer::builtin(&Schema::chest_xray())
        .unwrap()
        .with_options(SynthOptions {
            extra_negatives: 3,
            shuffle: true,
        });
    expect![[r#"
        normal: The lungs are clear.
        chf: There is severe enlargement of the cardiac silhouette. No pneumothorax. There is a large bilateral pleural effusion. Pulmonary vascular congestion, possibly early edema. No suspicious pulmonary nodule or mass.
        icu: Linear atelectasis in the right upper lobe. An endotracheal tube is in place. Pneumonia cannot be excluded. No focal consolidation. No acute fracture.
        nothing: No cardiomegaly.
    "#]]
    .assert_eq(&render(&synth, 1));
}

#[test]
fn unshuffled_text_follows_schema_order() {
    let schema = Schema::chest_xray();
    let synth = Synthesizer::builtin(&schema)
        .unwrap()
        .with_options(SynthOptions {
            extra_negatives: 0,
            shuffle: false,
        });
    let (_, chf) = &examples(&schema)[1];
    expect!["Mild cardiomegaly. Possible mild pulmonary edema. There is no pneumothorax. Moderate bilateral pleural effusion."].assert_eq(&synth.synthesize_for("chf", chf, 5));
}

#[test]
fn one_sentence_per_mentioned_label_from_the_right_pool() {
    let schema = Schema::chest_xray();
    let pools = SentencePools::builtin();
    let synth = Synthesizer::builtin(&schema).unwrap();
    let (_, chf) = &examples(&schema)[1];
    for seed in 0..50 {
        let text = synth.synthesize_for("chf", chf, seed);
        // Four mentioned labels, four sentences (none of the pools' sentences has an inner
        // full stop followed by a space).
        assert_eq!(text.matches(". ").count() + 1, 4, "{text}");
        let negative = &pools.labels["pneumothorax"].negative;
        assert!(negative.iter().any(|s| text.contains(s.as_str())), "{text}");
        assert!(!text.contains('{'), "placeholders are filled: {text}");
    }
}

#[test]
fn per_sample_seeding_ignores_order_and_rng_is_deterministic() {
    let schema = Schema::chest_xray();
    let synth = Synthesizer::builtin(&schema).unwrap();
    let all = examples(&schema);
    let forward: Vec<String> = all
        .iter()
        .map(|(id, l)| synth.synthesize_for(id, l, 9))
        .collect();
    let mut backward: Vec<String> = all
        .iter()
        .rev()
        .map(|(id, l)| synth.synthesize_for(id, l, 9))
        .collect();
    backward.reverse();
    assert_eq!(forward, backward);
    // The same labels under another id or seed read differently (for this example at least).
    let (_, icu) = &all[2];
    let texts: std::collections::HashSet<String> = (0..10)
        .map(|seed| synth.synthesize_for("icu", icu, seed))
        .collect();
    assert!(texts.len() > 5, "{texts:?}");
    // An explicit stream.
    let a = synth.synthesize(icu, &mut rng_from_seed(42));
    let b = synth.synthesize(icu, &mut rng_from_seed(42));
    assert_eq!(a, b);
}

#[test]
fn pools_can_be_extended_and_bad_pools_are_refused() {
    let schema = Schema::chest_xray();
    let extra = SentencePools::from_toml_str(
        "[labels.hernia]\npositive = [\"A {size} {kind} hernia.\"]\nkind = [\"hiatal\"]\n",
        Path::new("extra.toml"),
    )
    .unwrap();
    let pools = SentencePools::builtin().merge(extra);
    assert_eq!(pools.labels["hernia"].positive.len(), 3);
    let synth = Synthesizer::from_pools(&schema, &pools).unwrap();
    let hernia = labels(&schema, &[("hernia", LabelState::Positive)]);
    let texts: std::collections::HashSet<String> = (0..40)
        .map(|seed| synth.synthesize_for("h", &hernia, seed))
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.ends_with("hiatal hernia.") && t.starts_with("A ")),
        "{texts:?}"
    );

    let bad = SentencePools::from_toml_str(
        "[labels.edema]\npositive = [\"{colour} edema.\"]\n",
        Path::new("bad.toml"),
    )
    .unwrap();
    let err = Synthesizer::from_pools(&schema, &bad)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "sentence pools: edema positive sentence `{colour} edema.`: no word list `colour` for the placeholder (neither the label's nor in [defaults])"
    );
    let unknown = SentencePools::from_toml_str(
        "[labels.dragon]\npositive = [\"A dragon.\"]\n",
        Path::new("u.toml"),
    )
    .unwrap();
    let err = Synthesizer::from_pools(&schema, &unknown)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "sentence pools: `dragon` is not a key of schema `chest-xray`"
    );
}

#[test]
fn every_builtin_label_has_sentences() {
    let schema = Schema::chest_xray();
    let pools = SentencePools::builtin();
    for key in schema.keys() {
        let pool = &pools.labels[key];
        assert!(!pool.positive.is_empty(), "{key}");
        if key != "no_finding" {
            assert!(
                !pool.negative.is_empty() && !pool.uncertain.is_empty(),
                "{key}"
            );
        }
    }
}

#[test]
fn prompt_templates_snapshot() {
    let schema = Schema::chest_xray();
    let prompts = PromptTemplates::builtin();
    let mut out = String::new();
    for key in [
        "no_finding",
        "cardiomegaly",
        "pleural_effusion",
        "lung_lesion",
    ] {
        let pair = prompts.pair(&schema, key).unwrap();
        out += &format!(
            "{key}\n  class: {:?}\n  positive: {:?}\n  negative: {:?}\n",
            prompts.class(&schema, key).unwrap(),
            pair.positive,
            pair.negative
        );
    }
    out += &format!("COVID-19 class: {:?}\n", prompts.class_for_name("COVID-19"));
    expect![[r#"
        no_finding
          class: ["a normal chest x-ray.", "a chest radiograph with no acute cardiopulmonary abnormality.", "no acute cardiopulmonary process."]
          positive: ["no acute cardiopulmonary process.", "the lungs are clear.", "normal chest radiograph."]
          negative: ["abnormal chest radiograph.", "there are acute findings."]
        cardiomegaly
          class: ["a chest x-ray showing cardiomegaly.", "a chest radiograph with cardiomegaly.", "findings consistent with cardiomegaly.", "cardiomegaly."]
          positive: ["cardiomegaly.", "there is cardiomegaly.", "findings suggesting cardiomegaly."]
          negative: ["no cardiomegaly.", "there is no cardiomegaly.", "no evidence of cardiomegaly."]
        pleural_effusion
          class: ["a chest x-ray showing pleural effusion.", "a chest radiograph with pleural effusion.", "findings consistent with pleural effusion.", "pleural effusion."]
          positive: ["pleural effusion.", "there is pleural effusion.", "findings suggesting pleural effusion."]
          negative: ["no pleural effusion.", "there is no pleural effusion.", "no evidence of pleural effusion."]
        lung_lesion
          class: ["a chest x-ray showing a lung lesion.", "a chest radiograph with a lung lesion.", "findings consistent with a lung lesion.", "a lung lesion."]
          positive: ["a lung lesion.", "there is a lung lesion.", "findings suggesting a lung lesion."]
          negative: ["no a lung lesion.", "there is no a lung lesion.", "no evidence of a lung lesion."]
        COVID-19 class: ["a chest x-ray showing COVID-19.", "a chest radiograph with COVID-19.", "findings consistent with COVID-19.", "COVID-19."]
    "#]].assert_eq(&out);
    assert!(prompts.class(&schema, "dragon").is_err());
}
