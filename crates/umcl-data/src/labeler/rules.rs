//! The rule file as written in TOML: what serde reads before [`super::compile`] checks it
//! and turns it into a matcher.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) name: String,
    #[serde(default)]
    pub(super) description: String,
    /// Phrases that contain a cue or mention word but are neither (`no change`); skipped.
    #[serde(default)]
    pub(super) pseudo: Vec<String>,
    pub(super) scope: ScopeRules,
    pub(super) negation: CueRules,
    pub(super) uncertainty: CueRules,
    #[serde(default)]
    pub(super) no_finding: NoFindingRules,
    #[serde(rename = "label")]
    pub(super) labels: Vec<FindingRules>,
    #[serde(default, rename = "extra")]
    pub(super) extras: Vec<FindingRules>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeRules {
    pub(super) terminators: Vec<String>,
    pub(super) pre_window: u32,
    pub(super) post_window: u32,
}

#[derive(Deserialize)]
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
