//! Labels to text: report-like sentences synthesized from a label vector, and the hand-written
//! zero-shot prompt templates.
//!
//! Image-label samples have no report; the paper gives them one by turning labels into text.
//! [`Synthesizer::synthesize`] picks one sentence per mentioned label from the pools in
//! `data/text/sentences.toml` (positive, negative or uncertain, with `{severity}`,
//! `{location}`, ... variants), optionally adds negative sentences for a few unmentioned labels,
//! and shuffles. It draws from a ChaCha8 stream only, through its own index sampling, so a seed
//! gives the same text on every platform; [`Synthesizer::synthesize_for`] seeds per sample from
//! a base seed and the sample id, so a sample's text does not depend on the order samples are
//! visited in.
//!
//! ```
//! use umcl_data::schema::{LabelState, Schema};
//! use umcl_data::synth::Synthesizer;
//! let schema = Schema::chest_xray();
//! let synth = Synthesizer::builtin(&schema).unwrap();
//! let mut labels = vec![LabelState::Unmentioned; schema.len()];
//! labels[schema.index_of("cardiomegaly").unwrap()] = LabelState::Positive;
//! labels[schema.index_of("pneumothorax").unwrap()] = LabelState::Negative;
//! let text = synth.synthesize_for("sample-1", &labels, 0);
//! assert_eq!(text, synth.synthesize_for("sample-1", &labels, 0));
//! assert!(text.contains("pneumothorax"));
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use rand_chacha::rand_core::RngCore;
use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::rng::{rng_from_seed, sample_seed};
use crate::schema::{LabelState, Schema};

/// The seed validation text is synthesized with, so that validation sees the same text every
/// epoch and every run.
pub const VALIDATION_SEED: u64 = 0;

/// The built-in sentence pools (`data/text/sentences.toml`).
pub const SENTENCES_TOML: &str = include_str!("../data/text/sentences.toml");
/// The built-in zero-shot prompt templates (`data/text/prompts.toml`).
pub const PROMPTS_TOML: &str = include_str!("../data/text/prompts.toml");

/// The pools of one label: sentences per state and word lists for placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct LabelPool {
    /// Sentences stating the finding.
    #[serde(default)]
    pub positive: Vec<String>,
    /// Sentences stating its absence.
    #[serde(default)]
    pub negative: Vec<String>,
    /// Sentences hedging about it.
    #[serde(default)]
    pub uncertain: Vec<String>,
    /// Word lists filling `{name}` placeholders (`severity`, `location`, `side`, ...).
    #[serde(flatten)]
    pub variants: BTreeMap<String, Vec<String>>,
}

impl LabelPool {
    fn sentences(&self, state: LabelState) -> &[String] {
        match state {
            LabelState::Positive => &self.positive,
            LabelState::Negative => &self.negative,
            LabelState::Uncertain => &self.uncertain,
            LabelState::Unmentioned => &[],
        }
    }
}

/// Sentence pools per label key, with default word lists for placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentencePools {
    /// Word lists used when a label has no list of that name.
    #[serde(default)]
    pub defaults: BTreeMap<String, Vec<String>>,
    /// Pools by label key.
    #[serde(default)]
    pub labels: BTreeMap<String, LabelPool>,
}

impl SentencePools {
    /// The built-in pools.
    pub fn builtin() -> SentencePools {
        static BUILTIN: OnceLock<SentencePools> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Self::from_toml_str(SENTENCES_TOML, Path::new("<built-in sentences.toml>"))
                    .unwrap_or_else(|err| panic!("the built-in sentence pools are invalid: {err}"))
            })
            .clone()
    }

    /// Parses pools from TOML text; `origin` names the text in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<SentencePools> {
        toml::from_str(text)
            .map_err(|err| DataError::file(origin, err.to_string().trim_end().to_string()))
    }

    /// Reads a pools TOML file.
    pub fn load(path: &Path) -> Result<SentencePools> {
        let text = std::fs::read_to_string(path).map_err(|err| DataError::io(path, err))?;
        Self::from_toml_str(&text, path)
    }

    /// Adds `other`'s sentences and words to these pools (lists are appended).
    pub fn merge(mut self, other: SentencePools) -> SentencePools {
        for (name, words) in other.defaults {
            self.defaults.entry(name).or_default().extend(words);
        }
        for (key, pool) in other.labels {
            let mine = self.labels.entry(key).or_default();
            mine.positive.extend(pool.positive);
            mine.negative.extend(pool.negative);
            mine.uncertain.extend(pool.uncertain);
            for (name, words) in pool.variants {
                mine.variants.entry(name).or_default().extend(words);
            }
        }
        self
    }
}

/// How [`Synthesizer::synthesize`] composes a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthOptions {
    /// Up to this many negative sentences about unmentioned labels are added (the number is
    /// drawn uniformly from `0..=extra_negatives`). Default 0.
    pub extra_negatives: usize,
    /// Shuffle the sentences (default true); off, they follow schema order.
    pub shuffle: bool,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            extra_negatives: 0,
            shuffle: true,
        }
    }
}

/// One piece of a parsed sentence template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// A placeholder: the word list to draw from.
    Slot(usize),
}

#[derive(Debug, Clone, Default)]
struct Compiled {
    /// Sentence templates per state: positive, negative, uncertain.
    sentences: [Vec<Vec<Piece>>; 3],
}

/// Turns label vectors of one schema into text.
#[derive(Debug, Clone)]
pub struct Synthesizer {
    /// Per schema label.
    labels: Vec<Compiled>,
    /// The word lists placeholders refer to.
    words: Vec<Vec<String>>,
    options: SynthOptions,
}

fn state_slot(state: LabelState) -> Option<usize> {
    match state {
        LabelState::Positive => Some(0),
        LabelState::Negative => Some(1),
        LabelState::Uncertain => Some(2),
        LabelState::Unmentioned => None,
    }
}

/// A uniform index below `n` (n > 0) from the stream; the modulo bias is below 2^-50 for any
/// pool size used here.
fn below(rng: &mut dyn RngCore, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

/// Fisher-Yates with [`below`].
fn shuffle<T>(rng: &mut dyn RngCore, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

impl Synthesizer {
    /// A synthesizer over the built-in pools for `schema`: the pools of the schema's keys (a
    /// key without a pool says nothing; pools of keys the schema lacks are left out).
    pub fn builtin(schema: &Schema) -> Result<Synthesizer> {
        let mut pools = SentencePools::builtin();
        pools.labels.retain(|key, _| schema.index_of(key).is_some());
        Self::from_pools(schema, &pools)
    }

    /// A synthesizer over `pools` for `schema`. Every pool key must be a schema key, and every
    /// `{name}` placeholder must have a word list (the label's own, or in `defaults`).
    pub fn from_pools(schema: &Schema, pools: &SentencePools) -> Result<Synthesizer> {
        let origin = "sentence pools";
        for key in pools.labels.keys() {
            if schema.index_of(key).is_none() {
                return Err(DataError::Invalid(format!(
                    "{origin}: `{key}` is not a key of schema `{}`",
                    schema.name()
                )));
            }
        }
        let mut words: Vec<Vec<String>> = Vec::new();
        let mut word_ids: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut labels = Vec::with_capacity(schema.len());
        for key in schema.keys() {
            let mut compiled = Compiled::default();
            if let Some(pool) = pools.labels.get(key) {
                for state in [
                    LabelState::Positive,
                    LabelState::Negative,
                    LabelState::Uncertain,
                ] {
                    let slot = state_slot(state).unwrap_or_default();
                    for sentence in pool.sentences(state) {
                        let pieces = parse_template(sentence, |name| {
                            let (owner, list) = match pool.variants.get(name) {
                                Some(list) => (key, list),
                                None => ("", pools.defaults.get(name)?),
                            };
                            if list.is_empty() {
                                return None;
                            }
                            let id = *word_ids
                                .entry((owner.to_string(), name.to_string()))
                                .or_insert_with(|| {
                                    words.push(list.clone());
                                    words.len() - 1
                                });
                            Some(id)
                        })
                        .map_err(|message| {
                            DataError::Invalid(format!(
                                "{origin}: {key} {state} sentence `{sentence}`: {message}"
                            ))
                        })?;
                        compiled.sentences[slot].push(pieces);
                    }
                }
            }
            labels.push(compiled);
        }
        Ok(Synthesizer {
            labels,
            words,
            options: SynthOptions::default(),
        })
    }

    /// The same synthesizer with other options.
    pub fn with_options(mut self, options: SynthOptions) -> Synthesizer {
        self.options = options;
        self
    }

    /// The options in use.
    pub fn options(&self) -> SynthOptions {
        self.options
    }

    /// Text for `labels` (one state per schema key), drawing from `rng`. Empty when no mentioned
    /// label has a sentence.
    pub fn synthesize(&self, labels: &[LabelState], rng: &mut dyn RngCore) -> String {
        let mut sentences = Vec::new();
        let mut silent = Vec::new();
        for (index, &state) in labels.iter().enumerate().take(self.labels.len()) {
            match state_slot(state) {
                Some(slot) => {
                    let pool = &self.labels[index].sentences[slot];
                    if !pool.is_empty() {
                        sentences.push(self.render(&pool[below(rng, pool.len())], rng));
                    }
                }
                None if !self.labels[index].sentences[1].is_empty() => silent.push(index),
                None => {}
            }
        }
        if self.options.extra_negatives > 0 && !silent.is_empty() {
            let count = below(rng, self.options.extra_negatives + 1).min(silent.len());
            for i in 0..count {
                let j = i + below(rng, silent.len() - i);
                silent.swap(i, j);
                let pool = &self.labels[silent[i]].sentences[1];
                sentences.push(self.render(&pool[below(rng, pool.len())], rng));
            }
        }
        if self.options.shuffle {
            shuffle(rng, &mut sentences);
        }
        sentences.join(" ")
    }

    /// Text for one sample, from a stream seeded by `seed` and the sample id: the same for the
    /// same (id, labels, seed) whatever else is synthesized before it.
    pub fn synthesize_for(&self, sample_id: &str, labels: &[LabelState], seed: u64) -> String {
        self.synthesize(labels, &mut rng_from_seed(sample_seed(seed, sample_id)))
    }

    fn render(&self, pieces: &[Piece], rng: &mut dyn RngCore) -> String {
        let mut text = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => text.push_str(t),
                Piece::Slot(id) => {
                    let list = &self.words[*id];
                    text.push_str(&list[below(rng, list.len())]);
                }
            }
        }
        capitalize(&text)
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Splits `template` into text and `{name}` slots, resolving each name with `lookup`.
fn parse_template(
    template: &str,
    mut lookup: impl FnMut(&str) -> Option<usize>,
) -> std::result::Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            pieces.push(Piece::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "a `{` without its `}`".to_string())?;
        let name = &after[..close];
        let id = lookup(name).ok_or_else(|| {
            format!(
                "no word list `{name}` for the placeholder (neither the label's nor in [defaults])"
            )
        })?;
        pieces.push(Piece::Slot(id));
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` without its `{`".into());
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest.to_string()));
    }
    if pieces.is_empty() {
        return Err("empty sentence".into());
    }
    Ok(pieces)
}

/// Prompt lists of one label that replace the general ones.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptOverride {
    class: Option<Vec<String>>,
    positive: Option<Vec<String>>,
    negative: Option<Vec<String>>,
}

/// The hand-written zero-shot prompts: class prompts and `{finding}` / `no {finding}` pairs.
///
/// ```
/// use umcl_data::schema::Schema;
/// use umcl_data::synth::PromptTemplates;
/// let schema = Schema::chest_xray();
/// let prompts = PromptTemplates::builtin();
/// let pair = prompts.pair(&schema, "pleural_effusion").unwrap();
/// assert_eq!(pair.positive[0], "pleural effusion.");
/// assert_eq!(pair.negative[0], "no pleural effusion.");
/// assert_eq!(prompts.class_for_name("COVID-19")[0], "a chest x-ray showing COVID-19.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptTemplates {
    class: Vec<String>,
    positive: Vec<String>,
    negative: Vec<String>,
    #[serde(default)]
    names: BTreeMap<String, String>,
    #[serde(default)]
    labels: BTreeMap<String, PromptOverride>,
}

/// The positive and negative prompts of one label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPair {
    /// Prompts saying the finding is present.
    pub positive: Vec<String>,
    /// Prompts saying it is absent.
    pub negative: Vec<String>,
}

impl PromptTemplates {
    /// The built-in templates.
    pub fn builtin() -> PromptTemplates {
        static BUILTIN: OnceLock<PromptTemplates> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Self::from_toml_str(PROMPTS_TOML, Path::new("<built-in prompts.toml>"))
                    .unwrap_or_else(|err| panic!("the built-in prompts are invalid: {err}"))
            })
            .clone()
    }

    /// Parses templates from TOML text; `origin` names the text in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<PromptTemplates> {
        let templates: PromptTemplates = toml::from_str(text)
            .map_err(|err| DataError::file(origin, err.to_string().trim_end().to_string()))?;
        let lists = [&templates.class, &templates.positive, &templates.negative];
        if lists.iter().any(|l| l.is_empty()) {
            return Err(DataError::file(
                origin,
                "`class`, `positive` and `negative` each need at least one template",
            ));
        }
        Ok(templates)
    }

    /// Reads a templates TOML file.
    pub fn load(path: &Path) -> Result<PromptTemplates> {
        let text = std::fs::read_to_string(path).map_err(|err| DataError::io(path, err))?;
        Self::from_toml_str(&text, path)
    }

    /// The name `{finding}` stands for: the `[names]` entry, else the display name in lower
    /// case.
    pub fn finding_name(&self, schema: &Schema, key: &str) -> Result<String> {
        let index = schema.index_of(key).ok_or_else(|| {
            DataError::Invalid(format!(
                "`{key}` is not a key of schema `{}`",
                schema.name()
            ))
        })?;
        Ok(self
            .names
            .get(key)
            .cloned()
            .unwrap_or_else(|| schema.labels()[index].display.to_lowercase()))
    }

    /// The class prompts of a schema label.
    pub fn class(&self, schema: &Schema, key: &str) -> Result<Vec<String>> {
        let name = self.finding_name(schema, key)?;
        let templates = self.override_of(key, |o| o.class.as_ref(), &self.class);
        Ok(fill(templates, &name))
    }

    /// The class prompts for any class name ("COVID-19"), from the general templates.
    pub fn class_for_name(&self, name: &str) -> Vec<String> {
        fill(&self.class, name)
    }

    /// The positive and negative prompts of a schema label.
    pub fn pair(&self, schema: &Schema, key: &str) -> Result<PromptPair> {
        let name = self.finding_name(schema, key)?;
        Ok(PromptPair {
            positive: fill(
                self.override_of(key, |o| o.positive.as_ref(), &self.positive),
                &name,
            ),
            negative: fill(
                self.override_of(key, |o| o.negative.as_ref(), &self.negative),
                &name,
            ),
        })
    }

    fn override_of<'a>(
        &'a self,
        key: &str,
        pick: impl Fn(&'a PromptOverride) -> Option<&'a Vec<String>>,
        general: &'a [String],
    ) -> &'a [String] {
        self.labels
            .get(key)
            .and_then(pick)
            .map_or(general, Vec::as_slice)
    }
}

fn fill(templates: &[String], name: &str) -> Vec<String> {
    templates
        .iter()
        .map(|t| t.replace("{finding}", name))
        .collect()
}
