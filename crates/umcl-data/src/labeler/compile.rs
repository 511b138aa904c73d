//! Compiling the rules: the phrases of a [`super::rules::RuleFile`] become one Aho-Corasick
//! matcher and, per phrase, the roles it plays (mention, cue, terminator, ...).

use std::collections::HashMap;

use aho_corasick::{AhoCorasickBuilder, MatchKind};

use super::rules::{normalize_phrase, RuleFile};
use super::{Labeler, LabelerError, RuleSource, BUILTIN_RULES, NO_FINDING};
use crate::schema::CHEST_XRAY_KEYS;

/// What a matched phrase does. One phrase may have several roles (`normal` is the negative
/// attribute of several subjects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Mentions finding `.0` (an index into the finding table); `.1` is true for phrases that
    /// are uncertain by themselves (`suspicious opacity` style wording kept in the rules).
    Mention(u16, bool),
    /// Subject of attribute group `.0`.
    Subject(u16),
    /// Attribute of group `.0` with the given meaning.
    Attribute(u16, Polarity),
    NegPre,
    NegPost,
    UncPre,
    UncPost,
    Terminator,
    Ignore,
    /// A section header after which text is not labelled (`indication:`).
    SkipSection,
    /// A section header after which text is labelled again (`findings:`).
    KeepSection,
    /// Radiological wording that is no finding (`lungs`, `radiograph`).
    Content,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Polarity {
    Positive,
    Negative,
    Uncertain,
}

pub(super) struct AttributeGroup {
    pub(super) finding: u16,
    pub(super) window: u32,
}

#[derive(Clone, Copy)]
pub(super) struct PatternInfo {
    pub(super) roles_start: u32,
    pub(super) roles_end: u32,
    /// The phrase ends in `*` or in punctuation (`indication:`), so it needs no word boundary
    /// after it.
    pub(super) open_end: bool,
    /// The phrase starts with punctuation, so it needs no word boundary before it.
    pub(super) open_start: bool,
    /// A negation or uncertainty cue.
    pub(super) cue: bool,
    /// A section header.
    pub(super) header: bool,
    /// Radiological wording that sets no label: a `[content]` phrase or a finding's ignore
    /// phrase (`pericardial effusion`).
    pub(super) content: bool,
}

struct Builder {
    phrases: Vec<String>,
    index: HashMap<String, usize>,
    roles: Vec<Vec<Role>>,
}

impl Builder {
    fn add(&mut self, phrase: &str, role: Role, context: &str) -> Result<(), LabelerError> {
        let norm = normalize_phrase(phrase);
        let body = norm.trim_end_matches('*');
        if body.is_empty() || !body.bytes().any(|b| b.is_ascii_alphanumeric() || b >= 0x80) {
            return Err(LabelerError::Invalid(format!(
                "empty phrase `{phrase}` in {context}"
            )));
        }
        if norm.matches('*').count() > 1 || (norm.contains('*') && !norm.ends_with('*')) {
            return Err(LabelerError::Invalid(format!(
                "phrase `{phrase}` in {context}: `*` may only end a phrase"
            )));
        }
        let id = match self.index.get(&norm) {
            Some(&id) => id,
            None => {
                self.phrases.push(norm.clone());
                self.roles.push(Vec::new());
                self.index.insert(norm, self.phrases.len() - 1);
                self.phrases.len() - 1
            }
        };
        let roles = &mut self.roles[id];
        if !roles.contains(&role) {
            if role == Role::Ignore && !roles.is_empty() || roles.contains(&Role::Ignore) {
                return Err(LabelerError::Invalid(format!(
                    "phrase `{phrase}` in {context} is both ignored and used elsewhere"
                )));
            }
            roles.push(role);
        }
        Ok(())
    }

    fn add_all(
        &mut self,
        phrases: &[String],
        role: Role,
        context: &str,
    ) -> Result<(), LabelerError> {
        phrases.iter().try_for_each(|p| self.add(p, role, context))
    }
}

impl Labeler {
    /// The built-in chest X-ray rules ([`BUILTIN_RULES`]).
    pub fn builtin() -> Self {
        // The built-in rules are part of the crate and are checked by this crate's tests;
        // a failure here is a bug in the shipped file, not bad user input.
        Self::from_toml_str(BUILTIN_RULES).expect("the built-in labeler rules are valid")
    }

    /// Rules from a TOML document in the format of `data/labeler/chest-xray.toml`.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    /// use umcl_data::schema::LabelState;
    ///
    /// let rules = r#"
    ///     name = "tiny"
    ///     [scope]
    ///     terminators = ["but"]
    ///     pre_window = 6
    ///     post_window = 3
    ///     [negation]
    ///     pre = ["no"]
    ///     [uncertainty]
    ///     pre = ["possible"]
    ///     [[label]]
    ///     key = "pneumothorax"
    ///     mentions = ["pneumothorax"]
    /// "#;
    /// let labeler = Labeler::from_toml_str(rules).unwrap();
    /// let labels = labeler.label("Possible pneumothorax.");
    /// assert_eq!(labels.get("pneumothorax"), Some(LabelState::Uncertain));
    /// assert!(Labeler::from_toml_str("name = 3").is_err());
    /// ```
    pub fn from_toml_str(toml_text: &str) -> Result<Self, LabelerError> {
        Self::from_layers(&[RuleSource::new("", toml_text)])
    }

    /// Rules from several TOML documents laid over each other, the first being the base: later
    /// files add phrases, cues, terminators and findings, replace windows, and take phrases out
    /// by name with `remove = ["..."]`. Errors name the source they come from.
    ///
    /// ```
    /// use umcl_data::labeler::{Labeler, RuleSource, BUILTIN_RULES};
    /// use umcl_data::schema::LabelState;
    ///
    /// let site = r#"
    ///     name = "site"
    ///     remove = ["fx"]                  # "fx" means something else here
    ///     [[label]]
    ///     key = "pneumothorax"
    ///     mentions = ["pneumo"]
    /// "#;
    /// let labeler = Labeler::from_layers(&[
    ///     RuleSource::new("builtin", BUILTIN_RULES),
    ///     RuleSource::new("site.toml", site),
    /// ])
    /// .unwrap();
    /// assert_eq!(labeler.name(), "chest-xray+site");
    /// let labels = labeler.label("Small left apical pneumo. Fx of the wrist.");
    /// assert_eq!(labels.get("pneumothorax"), Some(LabelState::Positive));
    /// assert_eq!(labels.get("fracture"), Some(LabelState::Unmentioned));
    /// ```
    pub fn from_layers(sources: &[RuleSource<'_>]) -> Result<Self, LabelerError> {
        let Some((base, layers)) = sources.split_first() else {
            return Err(LabelerError::Invalid("no rule file given".into()));
        };
        let mut file = RuleFile::parse(base.text, base.name)?;
        file.check_base(base.name)?;
        for layer in layers {
            file.layer(RuleFile::parse(layer.text, layer.name)?, layer.name)?;
        }
        Self::compile(file).map_err(|e| match (e, sources.len()) {
            (LabelerError::Invalid(m), 1) if base.name.is_empty() => LabelerError::Invalid(m),
            (LabelerError::Invalid(m), 1) => LabelerError::Invalid(format!("{}: {m}", base.name)),
            (LabelerError::Invalid(m), _) => {
                let names: Vec<&str> = sources.iter().map(|s| s.name).collect();
                LabelerError::Invalid(format!("{} (layered): {m}", names.join(" + ")))
            }
            (e, _) => e,
        })
    }

    fn compile(file: RuleFile) -> Result<Self, LabelerError> {
        let mut b = Builder {
            phrases: Vec::new(),
            index: HashMap::new(),
            roles: Vec::new(),
        };
        let mut finding_names: Vec<String> =
            CHEST_XRAY_KEYS.iter().map(|k| k.to_string()).collect();
        let mut groups = Vec::new();
        let mut ignored_findings = std::collections::HashSet::new();

        b.add_all(&file.pseudo, Role::Ignore, "pseudo")?;
        b.add_all(
            &file.scope.terminators,
            Role::Terminator,
            "scope.terminators",
        )?;
        b.add_all(&file.negation.pre, Role::NegPre, "negation.pre")?;
        b.add_all(&file.negation.post, Role::NegPost, "negation.post")?;
        b.add_all(&file.uncertainty.pre, Role::UncPre, "uncertainty.pre")?;
        b.add_all(&file.uncertainty.post, Role::UncPost, "uncertainty.post")?;
        b.add_all(&file.sections.skip, Role::SkipSection, "sections.skip")?;
        b.add_all(&file.sections.keep, Role::KeepSection, "sections.keep")?;
        b.add_all(&file.content.phrases, Role::Content, "content.phrases")?;

        let all = file
            .labels
            .iter()
            .map(|f| (f, false))
            .chain(file.extras.iter().map(|f| (f, true)));
        for (finding, extra) in all {
            let idx = if extra {
                if CHEST_XRAY_KEYS.contains(&finding.key.as_str())
                    || finding_names.contains(&finding.key)
                {
                    return Err(LabelerError::Invalid(format!(
                        "extra finding `{}` repeats a schema key or another extra finding",
                        finding.key
                    )));
                }
                finding_names.push(finding.key.clone());
                finding_names.len() - 1
            } else {
                let Some(i) = CHEST_XRAY_KEYS.iter().position(|k| *k == finding.key) else {
                    return Err(LabelerError::Invalid(format!(
                        "unknown label key `{}` (expected one of {})",
                        finding.key,
                        CHEST_XRAY_KEYS.join(", ")
                    )));
                };
                if i == NO_FINDING {
                    return Err(LabelerError::Invalid(
                        "`no_finding` is computed from the other labels and takes no phrases"
                            .into(),
                    ));
                }
                i
            };
            let id = u16::try_from(idx)
                .map_err(|_| LabelerError::Invalid("too many findings".into()))?;
            let ctx = format!("finding `{}`", finding.key);
            b.add_all(&finding.mentions, Role::Mention(id, false), &ctx)?;
            b.add_all(&finding.uncertain_mentions, Role::Mention(id, true), &ctx)?;
            b.add_all(&finding.ignore, Role::Ignore, &ctx)?;
            // "Pericardial effusion" is no pleural effusion, but it is radiology.
            ignored_findings.extend(finding.ignore.iter().map(|p| normalize_phrase(p)));
            for attr in &finding.attributes {
                let g = u16::try_from(groups.len())
                    .map_err(|_| LabelerError::Invalid("too many attribute rules".into()))?;
                if attr.subjects.is_empty() {
                    return Err(LabelerError::Invalid(format!(
                        "an attribute rule of {ctx} has no subjects"
                    )));
                }
                groups.push(AttributeGroup {
                    finding: id,
                    window: attr.window,
                });
                b.add_all(&attr.subjects, Role::Subject(g), &ctx)?;
                b.add_all(&attr.positive, Role::Attribute(g, Polarity::Positive), &ctx)?;
                b.add_all(&attr.negative, Role::Attribute(g, Polarity::Negative), &ctx)?;
                b.add_all(
                    &attr.uncertain,
                    Role::Attribute(g, Polarity::Uncertain),
                    &ctx,
                )?;
            }
        }

        let mut no_finding_ignores = vec![false; finding_names.len()];
        for key in &file.no_finding.ignore {
            let Some(i) = finding_names.iter().position(|k| k == key) else {
                return Err(LabelerError::Invalid(format!(
                    "no_finding.ignore names unknown finding `{key}`"
                )));
            };
            no_finding_ignores[i] = true;
        }

        let mut roles = Vec::new();
        let mut patterns = Vec::with_capacity(b.phrases.len());
        for (phrase, r) in b.phrases.iter().zip(&b.roles) {
            let start = roles.len() as u32;
            roles.extend_from_slice(r);
            patterns.push(PatternInfo {
                roles_start: start,
                roles_end: roles.len() as u32,
                open_end: phrase.ends_with('*')
                    || !phrase.bytes().last().is_some_and(super::scan::is_word_byte),
                open_start: !phrase.bytes().next().is_some_and(super::scan::is_word_byte),
                cue: r.iter().any(|r| {
                    matches!(
                        r,
                        Role::NegPre | Role::NegPost | Role::UncPre | Role::UncPost
                    )
                }),
                header: r
                    .iter()
                    .any(|r| matches!(r, Role::SkipSection | Role::KeepSection)),
                content: ignored_findings.contains(phrase) || r.contains(&Role::Content),
            });
        }
        let needles: Vec<&str> = b.phrases.iter().map(|p| p.trim_end_matches('*')).collect();
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)?;
        // Checked by `RuleFile::check_base` for the base file; layers cannot unset them.
        let (Some(pre_window), Some(post_window)) = (file.scope.pre_window, file.scope.post_window)
        else {
            return Err(LabelerError::Invalid(
                "the rules set no scope.pre_window or scope.post_window".into(),
            ));
        };
        Ok(Self {
            name: file.name.unwrap_or_default(),
            description: file.description.unwrap_or_default(),
            matcher,
            patterns,
            roles,
            groups,
            finding_names,
            no_finding_ignores,
            negation_windows: (
                file.negation.pre_window.unwrap_or(pre_window),
                file.negation.post_window.unwrap_or(post_window),
            ),
            uncertainty_windows: (
                file.uncertainty.pre_window.unwrap_or(pre_window),
                file.uncertainty.post_window.unwrap_or(post_window),
            ),
        })
    }
}
