//! The rule file as written in TOML, and how rule files layer: what serde reads before
//! [`super::compile`] checks the merged rules and turns them into a matcher.
//!
//! Every field is optional in the TOML so that a file can be a *layer* over earlier ones: its
//! lists add to theirs, its windows replace theirs, its `[[label]]` and `[[extra]]` entries
//! extend the entries of the same key (or add new ones), and its `remove` list takes phrases
//! out of every role they had. The first file is the *base*: it must name itself and set the
//! scope windows.

use serde::Deserialize;

use super::LabelerError;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    /// Phrases taken out of every role earlier files gave them (layers only).
    #[serde(default)]
    pub(super) remove: Vec<String>,
    /// Phrases that contain a cue or mention word but are neither (`no change`); skipped.
    #[serde(default)]
    pub(super) pseudo: Vec<String>,
    #[serde(default)]
    pub(super) scope: ScopeRules,
    #[serde(default)]
    pub(super) negation: CueRules,
    #[serde(default)]
    pub(super) uncertainty: CueRules,
    #[serde(default)]
    pub(super) sections: SectionRules,
    #[serde(default)]
    pub(super) content: ContentRules,
    #[serde(default)]
    pub(super) no_finding: NoFindingRules,
    #[serde(default, rename = "label")]
    pub(super) labels: Vec<FindingRules>,
    #[serde(default, rename = "extra")]
    pub(super) extras: Vec<FindingRules>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeRules {
    #[serde(default)]
    pub(super) terminators: Vec<String>,
    pub(super) pre_window: Option<u32>,
    pub(super) post_window: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct CueRules {
    #[serde(default)]
    pub(super) pre: Vec<String>,
    #[serde(default)]
    pub(super) post: Vec<String>,
    /// Overrides `scope.pre_window` for these cues.
    pub(super) pre_window: Option<u32>,
    /// Overrides `scope.post_window` for these cues.
    pub(super) post_window: Option<u32>,
}

/// Section headers (`indication:`): text after a `skip` header is not labelled.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SectionRules {
    #[serde(default)]
    pub(super) skip: Vec<String>,
    #[serde(default)]
    pub(super) keep: Vec<String>,
}

/// Radiological words that are no finding themselves (`lungs`, `radiograph`): a text with none
/// of these and no mention has no radiological content.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ContentRules {
    #[serde(default)]
    pub(super) phrases: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NoFindingRules {
    #[serde(default)]
    pub(super) ignore: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FindingRules {
    pub(super) key: String,
    #[serde(default)]
    pub(super) mentions: Vec<String>,
    #[serde(default)]
    pub(super) uncertain_mentions: Vec<String>,
    #[serde(default)]
    pub(super) ignore: Vec<String>,
    #[serde(default, rename = "attribute")]
    pub(super) attributes: Vec<AttributeRules>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttributeRules {
    pub(super) subjects: Vec<String>,
    #[serde(default)]
    pub(super) positive: Vec<String>,
    #[serde(default)]
    pub(super) negative: Vec<String>,
    #[serde(default)]
    pub(super) uncertain: Vec<String>,
    pub(super) window: u32,
}

/// Lowercase, collapse white space, trim: the form in which phrases are compared.
pub(super) fn normalize_phrase(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

impl RuleFile {
    /// Parses one rule file. `source` names it in errors.
    pub(super) fn parse(text: &str, source: &str) -> Result<Self, LabelerError> {
        let file: RuleFile = toml::from_str(text).map_err(|e| LabelerError::Toml {
            source_name: if source.is_empty() {
                "the rules".into()
            } else {
                source.to_string()
            },
            error: e,
        })?;
        let mut seen = std::collections::HashSet::new();
        for f in &file.labels {
            if !seen.insert(f.key.as_str()) {
                return Err(invalid(source, format!("label `{}` appears twice", f.key)));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for f in &file.extras {
            if !seen.insert(f.key.as_str()) {
                return Err(invalid(
                    source,
                    format!("extra finding `{}` appears twice", f.key),
                ));
            }
        }
        Ok(file)
    }

    /// Checks that a base file sets what the rules need.
    pub(super) fn check_base(&self, source: &str) -> Result<(), LabelerError> {
        let missing = [
            ("name", self.name.is_none()),
            ("scope.pre_window", self.scope.pre_window.is_none()),
            ("scope.post_window", self.scope.post_window.is_none()),
        ];
        let missing: Vec<&str> = missing.iter().filter(|m| m.1).map(|m| m.0).collect();
        if !missing.is_empty() {
            return Err(invalid(
                source,
                format!(
                    "the first rule file is the base and must set {} (to add to the built-in \
                     rules, give `builtin` first: --rules builtin --rules <file>)",
                    missing.join(", ")
                ),
            ));
        }
        if !self.remove.is_empty() {
            return Err(invalid(
                source,
                "`remove` takes phrases out of earlier rule files, and the first file has none"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Lays `layer` over these rules: first its `remove` list, then its additions.
    pub(super) fn layer(&mut self, layer: RuleFile, source: &str) -> Result<(), LabelerError> {
        for phrase in &layer.remove {
            let norm = normalize_phrase(phrase);
            if self.remove_phrase(&norm) == 0 {
                return Err(invalid(
                    source,
                    format!("`remove` names `{phrase}`, which no earlier rule file uses"),
                ));
            }
        }
        if let Some(name) = layer.name {
            self.name = Some(match self.name.take() {
                Some(base) => format!("{base}+{name}"),
                None => name,
            });
        }
        if let Some(description) = layer.description {
            self.description = Some(description);
        }
        self.pseudo.extend(layer.pseudo);
        self.scope.terminators.extend(layer.scope.terminators);
        self.scope.pre_window = layer.scope.pre_window.or(self.scope.pre_window);
        self.scope.post_window = layer.scope.post_window.or(self.scope.post_window);
        for (mine, theirs) in [
            (&mut self.negation, layer.negation),
            (&mut self.uncertainty, layer.uncertainty),
        ] {
            mine.pre.extend(theirs.pre);
            mine.post.extend(theirs.post);
            mine.pre_window = theirs.pre_window.or(mine.pre_window);
            mine.post_window = theirs.post_window.or(mine.post_window);
        }
        self.sections.skip.extend(layer.sections.skip);
        self.sections.keep.extend(layer.sections.keep);
        self.content.phrases.extend(layer.content.phrases);
        self.no_finding.ignore.extend(layer.no_finding.ignore);
        merge_findings(&mut self.labels, layer.labels);
        merge_findings(&mut self.extras, layer.extras);
        Ok(())
    }

    /// Removes a (normalised) phrase from every list; returns how many places held it.
    fn remove_phrase(&mut self, phrase: &str) -> usize {
        let mut removed = 0;
        let mut strip = |list: &mut Vec<String>| {
            let before = list.len();
            list.retain(|p| normalize_phrase(p) != phrase);
            removed += before - list.len();
        };
        strip(&mut self.pseudo);
        strip(&mut self.scope.terminators);
        for cues in [&mut self.negation, &mut self.uncertainty] {
            strip(&mut cues.pre);
            strip(&mut cues.post);
        }
        strip(&mut self.sections.skip);
        strip(&mut self.sections.keep);
        strip(&mut self.content.phrases);
        for f in self.labels.iter_mut().chain(self.extras.iter_mut()) {
            strip(&mut f.mentions);
            strip(&mut f.uncertain_mentions);
            strip(&mut f.ignore);
            for a in &mut f.attributes {
                strip(&mut a.subjects);
                strip(&mut a.positive);
                strip(&mut a.negative);
                strip(&mut a.uncertain);
            }
        }
        removed
    }
}

fn merge_findings(mine: &mut Vec<FindingRules>, theirs: Vec<FindingRules>) {
    for f in theirs {
        match mine.iter_mut().find(|m| m.key == f.key) {
            Some(m) => {
                m.mentions.extend(f.mentions);
                m.uncertain_mentions.extend(f.uncertain_mentions);
                m.ignore.extend(f.ignore);
                m.attributes.extend(f.attributes);
            }
            None => mine.push(f),
        }
    }
}

fn invalid(source: &str, message: String) -> LabelerError {
    LabelerError::Invalid(if source.is_empty() {
        message
    } else {
        format!("{source}: {message}")
    })
}
