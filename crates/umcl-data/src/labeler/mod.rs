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

mod compile;
mod imaging;
mod rules;
mod scan;

use aho_corasick::AhoCorasick;

use crate::schema::{LabelState, CHEST_XRAY_KEYS};

use compile::{AttributeGroup, PatternInfo, Role};

/// The built-in chest X-ray rules, as shipped in `data/labeler/chest-xray.toml`.
pub const BUILTIN_RULES: &str = include_str!("../../data/labeler/chest-xray.toml");

/// The name that stands for [`BUILTIN_RULES`] in [`Labeler::from_paths`] and `--rules`.
pub const BUILTIN_NAME: &str = "builtin";

/// Number of labels a [`Labels`] holds (the keys of [`CHEST_XRAY_KEYS`]).
pub const NUM_LABELS: usize = CHEST_XRAY_KEYS.len();

/// Index of `no_finding` in [`CHEST_XRAY_KEYS`].
const NO_FINDING: usize = 0;

/// Errors from loading labeler rules.
#[derive(Debug, thiserror::Error)]
pub enum LabelerError {
    /// A rule file cannot be read.
    #[error("cannot read labeler rules {path}: {error}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// A rule file is not valid TOML or does not have the expected fields.
    #[error("labeler rules {source_name}: {error}")]
    Toml {
        /// The file (or source name) the TOML came from.
        source_name: String,
        /// What serde or the TOML parser says.
        error: toml::de::Error,
    },
    /// The rules parse but say something impossible (unknown key, empty phrase, ...).
    #[error("labeler rules: {0}")]
    Invalid(String),
    /// The phrase matcher could not be built from the rules' phrases.
    #[error("labeler rules: cannot build the phrase matcher: {0}")]
    Matcher(aho_corasick::BuildError),
}

// By hand, not `#[from]`: the message already holds the cause, and a cause chain (`{:#}`)
// would print it twice.
impl From<aho_corasick::BuildError> for LabelerError {
    fn from(e: aho_corasick::BuildError) -> Self {
        LabelerError::Matcher(e)
    }
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

    /// True when every label is [`LabelState::Unmentioned`].
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|s| *s == LabelState::Unmentioned)
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
    /// The cue that decided the state (`no`, `cannot be excluded`, `?` for a question), or
    /// `None` when no cue reached the mention (the phrase or attribute speaks for itself).
    pub cue: Option<String>,
    /// The clause the mention was read in, normalised (lowercase, single spaces).
    pub clause: String,
}

/// Where a rule file comes from: a name for errors (a path, `builtin`) and its TOML text.
#[derive(Debug, Clone, Copy)]
pub struct RuleSource<'a> {
    /// Names the source in error messages.
    pub name: &'a str,
    /// The TOML text.
    pub text: &'a str,
}

impl<'a> RuleSource<'a> {
    /// A source named `name` with TOML `text`.
    pub fn new(name: &'a str, text: &'a str) -> Self {
        Self { name, text }
    }
}

/// The labels of one report and whether the text had any radiological content
/// (see [`Labeler::read`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The label vector; all [`LabelState::Unmentioned`] when `radiological` is false.
    pub labels: Labels,
    /// False when the labelled part of the text holds no mention and no radiological wording
    /// (`lungs`, `radiograph`, ... from the rules' `[content]`): a clinical note, not a report.
    /// Such a text gets no `no_finding`.
    pub radiological: bool,
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

impl std::fmt::Debug for Labeler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labeler")
            .field("name", &self.name)
            .field("phrases", &self.patterns.len())
            .finish_non_exhaustive()
    }
}

impl Labeler {
    /// Rules from files laid over each other (see [`Labeler::from_layers`]); the path
    /// `builtin` stands for the built-in rules, so `["builtin", "site.toml"]` adds a site's
    /// rules to them.
    pub fn from_paths<P: AsRef<std::path::Path>>(paths: &[P]) -> Result<Self, LabelerError> {
        let mut texts = Vec::with_capacity(paths.len());
        for path in paths {
            let path = path.as_ref();
            let text = if path == std::path::Path::new(BUILTIN_NAME) {
                BUILTIN_RULES.to_string()
            } else {
                std::fs::read_to_string(path).map_err(|error| LabelerError::Io {
                    path: path.to_path_buf(),
                    error,
                })?
            };
            texts.push((path.display().to_string(), text));
        }
        let sources: Vec<RuleSource<'_>> = texts
            .iter()
            .map(|(name, text)| RuleSource::new(name, text))
            .collect();
        Self::from_layers(&sources)
    }

    /// The `name` the rules give themselves.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The rules' `description`.
    pub fn description(&self) -> &str {
        &self.description
    }
}
