//! A rule-based labeler that turns free-text chest X-ray reports into label vectors.
//!
//! The rules are data: phrases that mention each finding, negation and uncertainty cues that act
//! before or after a mention, and scope terminators, in a TOML file. The built-in rules
//! (`data/labeler/chest-xray.toml`, compiled in) label the 17 keys of
//! [`CHEST_XRAY_KEYS`]; [`Labeler::from_toml_str`] loads your own. `docs/labeler.md` describes
//! the rule format and the measured quality and speed.
//!
//! How a report is read:
//! 1. The text is lowercased and its runs of white space collapse to one space.
//! 2. One Aho-Corasick pass finds every rule phrase, leftmost-longest, on word boundaries (a
//!    phrase ending in `*` matches a word prefix). The longest phrase wins, so `pericardial
//!    effusion` (an ignore phrase) hides `effusion`, and `cannot be excluded` hides `not`.
//! 3. Sentences end at `.` (not between digits), `?`, `!`, `;` and `:`; a clause also ends at a
//!    terminator phrase (`but`, `however`, ...). Cues act only inside their clause, and only
//!    within a window of words (`pre_window` before the mention, `post_window` after; the
//!    negation and uncertainty cues may each have their own).
//! 4. A mention is negative when its nearest cue is a negation cue, uncertain when it is an
//!    uncertainty cue, and positive when no cue reaches it. Attribute rules pair a subject with
//!    an attribute in one clause (`heart` + `enlarged` is cardiomegaly, `heart size` + `normal`
//!    is its negation).
//! 5. Per label, mentions combine as in CheXpert: positive over uncertain over negative; a label
//!    never mentioned stays [`LabelState::Unmentioned`]. `no_finding` is positive when no
//!    finding (other than those the rules exempt, such as support devices) and no extra
//!    abnormality is positive or uncertain, and unmentioned otherwise.
//!
//! ```
//! use umcl_data::labeler::Labeler;
//! use umcl_data::schema::LabelState;
//!
//! let labeler = Labeler::builtin();
//! let labels = labeler.label("Heart size normal. Small left effusion. No pneumothorax.");
//! assert_eq!(labels.get("pleural_effusion"), Some(LabelState::Positive));
//! assert_eq!(labels.get("pneumothorax"), Some(LabelState::Negative));
//! assert_eq!(labels.get("cardiomegaly"), Some(LabelState::Negative));
//! assert_eq!(labels.get("no_finding"), Some(LabelState::Unmentioned));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, Input, MatchKind};
use serde::Deserialize;

use crate::schema::{LabelState, CHEST_XRAY_KEYS};

/// The built-in chest X-ray rules, as shipped in `data/labeler/chest-xray.toml`.
pub const BUILTIN_RULES: &str = include_str!("../../data/labeler/chest-xray.toml");

/// Number of labels a [`Labels`] holds (the keys of [`CHEST_XRAY_KEYS`]).
pub const NUM_LABELS: usize = CHEST_XRAY_KEYS.len();

/// Index of `no_finding` in [`CHEST_XRAY_KEYS`].
const NO_FINDING: usize = 0;

/// Errors from loading labeler rules.
#[derive(Debug, thiserror::Error)]
pub enum LabelerError {
    /// The rules are not valid TOML or do not have the expected fields.
    #[error("labeler rules: {0}")]
    Toml(#[from] toml::de::Error),
    /// The rules parse but say something impossible (unknown key, empty phrase, ...).
    #[error("labeler rules: {0}")]
    Invalid(String),
    /// The phrase matcher could not be built from the rules' phrases.
    #[error("labeler rules: cannot build the phrase matcher: {0}")]
    Matcher(#[from] aho_corasick::BuildError),
}

/// The labels of one report, one [`LabelState`] per key of [`CHEST_XRAY_KEYS`], in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Labels(pub [LabelState; NUM_LABELS]);

impl Labels {
    /// The state of `key`, or `None` when `key` is not one of [`CHEST_XRAY_KEYS`].
    pub fn get(&self, key: &str) -> Option<LabelState> {
        CHEST_XRAY_KEYS
            .iter()
            .position(|k| *k == key)
            .map(|i| self.0[i])
    }

    /// `(key, state)` pairs in schema order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, LabelState)> + '_ {
        CHEST_XRAY_KEYS.iter().copied().zip(self.0.iter().copied())
    }
}

/// One mention found in a report (see [`Labeler::mentions`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// The finding's key: a schema key, or an extra finding's key from the rules.
    pub finding: String,
    /// What the cues around the mention make of it (never [`LabelState::Unmentioned`]).
    pub state: LabelState,
    /// The matched text, lowercased (subject to attribute for attribute rules).
    pub phrase: String,
}

// ---------------------------------------------------------------------------------------------
// The rule file, as written in TOML.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: String,
    #[serde(default)]
    description: String,
    /// Phrases that contain a cue or mention word but are neither (`no change`); skipped.
    #[serde(default)]
    pseudo: Vec<String>,
    scope: ScopeRules,
    negation: CueRules,
    uncertainty: CueRules,
    #[serde(default)]
    no_finding: NoFindingRules,
    #[serde(rename = "label")]
    labels: Vec<FindingRules>,
    #[serde(default, rename = "extra")]
    extras: Vec<FindingRules>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeRules {
    terminators: Vec<String>,
    pre_window: u32,
    post_window: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CueRules {
    #[serde(default)]
    pre: Vec<String>,
    #[serde(default)]
    post: Vec<String>,
    /// Overrides `scope.pre_window` for these cues.
    pre_window: Option<u32>,
    /// Overrides `scope.post_window` for these cues.
    post_window: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoFindingRules {
    #[serde(default)]
    ignore: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindingRules {
    key: String,
    #[serde(default)]
    mentions: Vec<String>,
    #[serde(default)]
    uncertain_mentions: Vec<String>,
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default, rename = "attribute")]
    attributes: Vec<AttributeRules>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttributeRules {
    subjects: Vec<String>,
    #[serde(default)]
    positive: Vec<String>,
    #[serde(default)]
    negative: Vec<String>,
    #[serde(default)]
    uncertain: Vec<String>,
    window: u32,
}

// ---------------------------------------------------------------------------------------------
// Compiled rules.

/// What a matched phrase does. One phrase may have several roles (`normal` is the negative
/// attribute of several subjects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Polarity {
    Positive,
    Negative,
    Uncertain,
}

struct AttributeGroup {
    finding: u16,
    window: u32,
}

/// A rule-based report labeler; see the [module docs](self) for how it reads a report.
pub struct Labeler {
    name: String,
    description: String,
    matcher: AhoCorasick,
    /// Per pattern: its roles (a range into `roles`) and whether it matches a word prefix.
    patterns: Vec<PatternInfo>,
    roles: Vec<Role>,
    groups: Vec<AttributeGroup>,
    /// Finding table: the schema keys (indices 0..17) then the extra abnormalities.
    finding_names: Vec<String>,
    /// Findings whose positive or uncertain state does not cancel `no_finding`.
    no_finding_ignores: Vec<bool>,
    /// Reach in words of negation cues, before and after a mention.
    negation_windows: (u32, u32),
    /// Reach in words of uncertainty cues, before and after a mention.
    uncertainty_windows: (u32, u32),
}

#[derive(Clone, Copy)]
struct PatternInfo {
    roles_start: u32,
    roles_end: u32,
    prefix: bool,
}

impl std::fmt::Debug for Labeler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labeler")
            .field("name", &self.name)
            .field("phrases", &self.patterns.len())
            .finish_non_exhaustive()
    }
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

/// Lowercase, collapse white space, trim.
fn normalize_phrase(phrase: &str) -> String {
    phrase
        .split_whitespace()
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
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
        let file: RuleFile = toml::from_str(toml_text)?;
        let mut b = Builder {
            phrases: Vec::new(),
            index: HashMap::new(),
            roles: Vec::new(),
        };
        let mut finding_names: Vec<String> =
            CHEST_XRAY_KEYS.iter().map(|k| k.to_string()).collect();
        let mut groups = Vec::new();
        let mut seen = [false; NUM_LABELS];

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
                if std::mem::replace(&mut seen[i], true) {
                    return Err(LabelerError::Invalid(format!(
                        "label `{}` appears twice",
                        finding.key
                    )));
                }
                i
            };
            let id = u16::try_from(idx)
                .map_err(|_| LabelerError::Invalid("too many findings".into()))?;
            let ctx = format!("finding `{}`", finding.key);
            b.add_all(&finding.mentions, Role::Mention(id, false), &ctx)?;
            b.add_all(&finding.uncertain_mentions, Role::Mention(id, true), &ctx)?;
            b.add_all(&finding.ignore, Role::Ignore, &ctx)?;
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
                prefix: phrase.ends_with('*'),
            });
        }
        let needles: Vec<&str> = b.phrases.iter().map(|p| p.trim_end_matches('*')).collect();
        let matcher = AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)?;
        Ok(Self {
            name: file.name,
            description: file.description,
            matcher,
            patterns,
            roles,
            groups,
            finding_names,
            no_finding_ignores,
            negation_windows: (
                file.negation.pre_window.unwrap_or(file.scope.pre_window),
                file.negation.post_window.unwrap_or(file.scope.post_window),
            ),
            uncertainty_windows: (
                file.uncertainty.pre_window.unwrap_or(file.scope.pre_window),
                file.uncertainty
                    .post_window
                    .unwrap_or(file.scope.post_window),
            ),
        })
    }

    /// The `name` the rules give themselves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules' `description`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Labels one report text.
    pub fn label(&self, text: &str) -> Labels {
        self.label_sections(&[text])
    }

    /// Labels a report given as sections (e.g. findings and impression); each section ends a
    /// sentence. Allocation-free after the first call on a thread (buffers are reused).
    pub fn label_sections(&self, sections: &[&str]) -> Labels {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.label_into(sections, &mut scratch),
            // Only reachable if labeling re-entered itself on this thread; use fresh buffers.
            Err(_) => self.label_into(sections, &mut Scratch::default()),
        })
    }

    /// Every mention the rules find in a report, with the state its cues give it, in text
    /// order: the labeler's reasoning, for checking and improving rules. Extra findings (those
    /// outside the schema that only cancel `no_finding`) are included.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    /// use umcl_data::schema::LabelState;
    ///
    /// let mentions = Labeler::builtin().mentions(&["No pneumothorax or effusion."]);
    /// assert_eq!(mentions[0].finding, "pneumothorax");
    /// assert_eq!(mentions[1].state, LabelState::Negative);
    /// assert_eq!(mentions[1].phrase, "effusion");
    /// ```
    pub fn mentions(&self, sections: &[&str]) -> Vec<Mention> {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        self.run(sections, &mut s, Some(&mut out));
        out
    }

    fn mention(
        &self,
        text: &[u8],
        finding: u16,
        state: LabelState,
        a: &Event,
        b: &Event,
    ) -> Mention {
        Mention {
            finding: self.finding_names[finding as usize].clone(),
            state,
            phrase: String::from_utf8_lossy(&text[a.byte_start as usize..b.byte_end as usize])
                .into_owned(),
        }
    }

    fn label_into(&self, sections: &[&str], s: &mut Scratch) -> Labels {
        self.run(sections, s, None);
        let mut labels = Labels::default();
        labels.0[1..].copy_from_slice(&s.states[1..NUM_LABELS]);
        let any_finding = s.states.iter().enumerate().any(|(i, st)| {
            i != NO_FINDING
                && !self.no_finding_ignores[i]
                && matches!(st, LabelState::Positive | LabelState::Uncertain)
        });
        labels.0[NO_FINDING] = if any_finding {
            LabelState::Unmentioned
        } else {
            LabelState::Positive
        };
        labels
    }

    fn run(&self, sections: &[&str], s: &mut Scratch, mut sink: Option<&mut Vec<Mention>>) {
        s.text.clear();
        for section in sections {
            push_normalized(&mut s.text, section);
            // A section break is a sentence break.
            s.text.extend_from_slice(b" . ");
        }
        self.find_events(s);
        s.states.clear();
        s.states
            .resize(self.finding_names.len(), LabelState::Unmentioned);
        let mut start = 0;
        while start < s.events.len() {
            let clause = s.events[start].clause;
            let mut end = start;
            while end < s.events.len() && s.events[end].clause == clause {
                end += 1;
            }
            self.resolve_clause(
                &s.text,
                &s.events[start..end],
                &mut s.states,
                sink.as_deref_mut(),
            );
            start = end;
        }
    }

    /// One pass of the matcher: every phrase occurrence on word boundaries, with its word
    /// position and clause number.
    fn find_events(&self, s: &mut Scratch) {
        s.events.clear();
        let hay = &s.text[..];
        let mut pos = 0;
        let mut counter = Counter::default();
        while pos < hay.len() {
            let Some(m) = self.matcher.find(Input::new(hay).span(pos..hay.len())) else {
                break;
            };
            let info = self.patterns[m.pattern().as_usize()];
            let before_ok = m.start() == 0 || !is_word_byte(hay[m.start() - 1]);
            let after_ok = info.prefix || m.end() == hay.len() || !is_word_byte(hay[m.end()]);
            if !(before_ok && after_ok) {
                pos = m.start() + 1;
                continue;
            }
            counter.advance(hay, m.start());
            let word_start = counter.words;
            let clause = counter.clause;
            counter.advance(hay, m.end());
            let roles = &self.roles[info.roles_start as usize..info.roles_end as usize];
            s.events.push(Event {
                pattern: m.pattern().as_u32(),
                byte_start: m.start() as u32,
                byte_end: m.end() as u32,
                word_start,
                word_end: counter.words,
                clause,
            });
            if roles.contains(&Role::Terminator) {
                counter.clause += 1;
            }
            pos = m.end();
        }
    }

    fn roles_of(&self, e: &Event) -> &[Role] {
        let info = self.patterns[e.pattern as usize];
        &self.roles[info.roles_start as usize..info.roles_end as usize]
    }

    /// Resolves the mentions of one clause and merges them into `states`.
    fn resolve_clause(
        &self,
        text: &[u8],
        events: &[Event],
        states: &mut [LabelState],
        mut sink: Option<&mut Vec<Mention>>,
    ) {
        for (i, e) in events.iter().enumerate() {
            for &role in self.roles_of(e) {
                match role {
                    Role::Mention(f, uncertain) => {
                        let mut st = self.cue_state(events, i, i);
                        if uncertain && st == LabelState::Positive {
                            st = LabelState::Uncertain;
                        }
                        states[f as usize] = states[f as usize].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            out.push(self.mention(text, f, st, e, e));
                        }
                    }
                    Role::Attribute(g, polarity) => {
                        let group = &self.groups[g as usize];
                        let subject = events.iter().enumerate().find(|(_, s)| {
                            self.roles_of(s).contains(&Role::Subject(g))
                                && word_gap(s, e).min(word_gap(e, s)) <= group.window
                        });
                        let Some((j, _)) = subject else {
                            continue;
                        };
                        let st = match polarity {
                            Polarity::Negative => LabelState::Negative,
                            Polarity::Uncertain => match self.cue_state(events, j.min(i), j.max(i))
                            {
                                LabelState::Negative => LabelState::Negative,
                                _ => LabelState::Uncertain,
                            },
                            Polarity::Positive => self.cue_state(events, j.min(i), j.max(i)),
                        };
                        let g = group.finding as usize;
                        states[g] = states[g].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            let (a, b) = if j < i {
                                (&events[j], e)
                            } else {
                                (e, &events[j])
                            };
                            out.push(self.mention(text, group.finding, st, a, b));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The state a mention spanning events `first..=last` of a clause gets from the cues
    /// around it: the nearest cue in reach decides (pre-cues may also sit inside the span,
    /// as in `heart is not enlarged`).
    fn cue_state(&self, events: &[Event], first: usize, last: usize) -> LabelState {
        let (head, tail) = (&events[first], &events[last]);
        let mut best: Option<(u32, LabelState)> = None;
        let mut consider = |gap: u32, st: LabelState| {
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, st));
            }
        };
        for (k, c) in events.iter().enumerate() {
            if k == first || k == last {
                continue;
            }
            for &role in self.roles_of(c) {
                let (pre, st, (pre_window, post_window)) = match role {
                    Role::NegPre => (true, LabelState::Negative, self.negation_windows),
                    Role::UncPre => (true, LabelState::Uncertain, self.uncertainty_windows),
                    Role::NegPost => (false, LabelState::Negative, self.negation_windows),
                    Role::UncPost => (false, LabelState::Uncertain, self.uncertainty_windows),
                    _ => continue,
                };
                if pre && k < last && c.word_end <= tail.word_start {
                    // Measured to the span's start, so a cue inside the span has gap 0.
                    let gap = head.word_start.saturating_sub(c.word_end);
                    if gap <= pre_window {
                        consider(gap, st);
                    }
                } else if !pre && k > first && c.word_start >= head.word_end {
                    let gap = c.word_start.saturating_sub(tail.word_end);
                    if gap <= post_window {
                        consider(gap, st);
                    }
                }
            }
        }
        best.map_or(LabelState::Positive, |(_, st)| st)
    }
}

/// Words strictly between the end of `a` and the start of `b` (0 when they touch or overlap).
fn word_gap(a: &Event, b: &Event) -> u32 {
    b.word_start.saturating_sub(a.word_end)
}

#[derive(Clone, Copy, Debug)]
struct Event {
    pattern: u32,
    byte_start: u32,
    byte_end: u32,
    word_start: u32,
    word_end: u32,
    clause: u32,
}

#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    events: Vec<Event>,
    states: Vec<LabelState>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Bytes that belong to words: ASCII letters and digits, and every byte of a non-ASCII
/// character.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Appends `text` lowercased (ASCII), with each run of white space as one space.
fn push_normalized(out: &mut Vec<u8>, text: &str) {
    let mut space = true;
    for &b in text.as_bytes() {
        if b.is_ascii_whitespace() {
            if !space {
                out.push(b' ');
                space = true;
            }
        } else {
            out.push(b.to_ascii_lowercase());
            space = false;
        }
    }
    if !space {
        out.push(b' ');
    }
}

/// Counts words and clause breaks while walking the normalized text left to right.
#[derive(Default)]
struct Counter {
    pos: usize,
    words: u32,
    clause: u32,
    in_word: bool,
}

impl Counter {
    fn advance(&mut self, hay: &[u8], to: usize) {
        while self.pos < to {
            let b = hay[self.pos];
            if is_word_byte(b) {
                if !self.in_word {
                    self.words += 1;
                    self.in_word = true;
                }
            } else {
                self.in_word = false;
                let ends = match b {
                    b'.' => !hay.get(self.pos + 1).is_some_and(u8::is_ascii_digit),
                    b'?' | b'!' | b';' | b':' => true,
                    _ => false,
                };
                if ends {
                    self.clause += 1;
                }
            }
            self.pos += 1;
        }
    }
}
