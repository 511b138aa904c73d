//! State-level evaluation of the built-in labeler on a committed corpus of report sentences
//! (`tests/fixtures/labeler/state-corpus.jsonl`), each annotated by hand with the state of
//! every finding it mentions: positive, negative or uncertain (a finding not listed is not
//! mentioned). The sentences were written for this corpus in the style of real reports, one
//! construction per group (negation before and after, hyphenated prefixes, questions, hedges,
//! scope across conjunctions, comparisons, synonyms and abbreviations, misspellings, ...), plus
//! clinical notes with no radiological content, which must get no labels at all.
//!
//! The test prints per-state precision and recall (the table in docs/labeler.md) and holds
//! the corpus at its current score: every sentence must be read exactly right except those
//! listed, with the reason, in `state-corpus.known-failures`. A rule change that breaks a
//! sentence fails; one that fixes a listed sentence fails too, until the list is updated, so
//! the list stays true.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use umcl_data::labeler::Labeler;
use umcl_data::schema::{LabelState, CHEST_XRAY_KEYS};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/labeler")
        .join(name)
}

struct Sentence {
    id: String,
    construction: String,
    text: String,
    report: bool,
    states: BTreeMap<String, LabelState>,
}

fn parse_state(s: &str) -> LabelState {
    match s {
        "positive" => LabelState::Positive,
        "negative" => LabelState::Negative,
        "uncertain" => LabelState::Uncertain,
        other => panic!("unknown state `{other}` in the corpus"),
    }
}

fn corpus() -> Vec<Sentence> {
    let path = fixture("state-corpus.jsonl");
    let text = std::fs::read_to_string(&path).expect("the state corpus is committed");
    let mut ids = BTreeSet::new();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1));
            let field = |k: &str| {
                v[k].as_str()
                    .unwrap_or_else(|| panic!("line {}: no {k}", i + 1))
            };
            let id = field("id").to_string();
            assert!(ids.insert(id.clone()), "id {id} repeats");
            let states = v["states"]
                .as_object()
                .unwrap_or_else(|| panic!("line {}: no states", i + 1))
                .iter()
                .map(|(k, s)| {
                    assert!(
                        CHEST_XRAY_KEYS[1..].contains(&k.as_str()),
                        "{id}: unknown label key {k}"
                    );
                    (
                        k.clone(),
                        parse_state(s.as_str().expect("a state is a string")),
                    )
                })
                .collect();
            Sentence {
                id,
                construction: field("construction").to_string(),
                text: field("text").to_string(),
                report: v["report"].as_bool().unwrap_or(true),
                states,
            }
        })
        .collect()
}

fn known_failures() -> BTreeSet<String> {
    let text = std::fs::read_to_string(fixture("state-corpus.known-failures"))
        .expect("the known-failures list is committed");
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

const STATES: [(LabelState, &str); 4] = [
    (LabelState::Positive, "positive"),
    (LabelState::Negative, "negative"),
    (LabelState::Uncertain, "uncertain"),
    (LabelState::Unmentioned, "not mentioned"),
];

#[test]
fn state_corpus_holds_its_score() {
    let labeler = Labeler::builtin();
    let sentences = corpus();
    assert!(
        sentences.len() >= 300,
        "the corpus has {} sentences",
        sentences.len()
    );
    let known = known_failures();
    // confusion[truth][said] over every (sentence, finding) pair of the report sentences.
    let mut confusion = [[0u32; 4]; 4];
    let index = |s: LabelState| STATES.iter().position(|(st, _)| *st == s).unwrap_or(3);
    let mut wrong: BTreeMap<String, String> = BTreeMap::new();
    let mut per_construction: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for s in &sentences {
        let reading = labeler.read(&[&s.text]);
        let mut errors = Vec::new();
        if !s.report {
            if reading.radiological || !reading.labels.is_empty() {
                errors.push("a clinical note read as a report".to_string());
            }
        } else {
            for key in &CHEST_XRAY_KEYS[1..] {
                let truth = s
                    .states
                    .get(*key)
                    .copied()
                    .unwrap_or(LabelState::Unmentioned);
                let said = reading.labels.get(key).unwrap_or(LabelState::Unmentioned);
                confusion[index(truth)][index(said)] += 1;
                if truth != said {
                    errors.push(format!(
                        "{key}: said {} want {}",
                        STATES[index(said)].1,
                        STATES[index(truth)].1
                    ));
                }
            }
        }
        let c = per_construction.entry(&s.construction).or_default();
        c.1 += 1;
        if errors.is_empty() {
            c.0 += 1;
        } else {
            wrong.insert(s.id.clone(), format!("{} | {}", s.text, errors.join("; ")));
        }
    }

    println!("state corpus: {} sentences", sentences.len());
    println!(
        "{:<14} {:>7} {:>7} {:>7} {:>7}",
        "state", "truth", "said", "P", "R"
    );
    for (i, (_, name)) in STATES.iter().enumerate() {
        let truth: u32 = confusion[i].iter().sum();
        let said: u32 = confusion.iter().map(|row| row[i]).sum();
        let tp = confusion[i][i];
        println!(
            "{name:<14} {truth:>7} {said:>7} {:>7.3} {:>7.3}",
            f64::from(tp) / f64::from(said.max(1)),
            f64::from(tp) / f64::from(truth.max(1))
        );
    }
    println!("\nsentences read exactly right, per construction:");
    for (name, (right, all)) in &per_construction {
        println!("  {name:<20} {right:>4} / {all:<4}");
    }
    let right: u32 = per_construction.values().map(|c| c.0).sum();
    println!("  {:<20} {right:>4} / {}", "all", sentences.len());
    if !wrong.is_empty() {
        println!("\nsentences read wrong:");
        for (id, why) in &wrong {
            println!("  {id}: {why}");
        }
    }

    let newly_wrong: Vec<&String> = wrong.keys().filter(|id| !known.contains(*id)).collect();
    let fixed: Vec<&String> = known.iter().filter(|id| !wrong.contains_key(*id)).collect();
    assert!(
        newly_wrong.is_empty(),
        "sentences the labeler read right before now read wrong: {newly_wrong:?} (see above)"
    );
    assert!(
        fixed.is_empty(),
        "listed as known failures but now read right: {fixed:?}; remove them from \
         tests/fixtures/labeler/state-corpus.known-failures"
    );
}
