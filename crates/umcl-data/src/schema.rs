//! Label schemas: the ordered set of findings a label vector holds, and the four states a
//! label can be in.
//!
//! The built-in [`Schema::chest_xray`] has CheXpert's 14 observations plus the findings only
//! ChestX-ray14 names (emphysema, fibrosis, hernia), 17 keys in a fixed order.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::{DataError, Result};

/// The state of one label in one sample.
///
/// Follows the CheXpert convention on disk: `1` positive, `0` negative, `-1` uncertain,
/// empty for not mentioned.
///
/// ```
/// use umcl_data::schema::LabelState;
/// assert_eq!("-1".parse::<LabelState>().unwrap(), LabelState::Uncertain);
/// assert_eq!("".parse::<LabelState>().unwrap(), LabelState::Unmentioned);
/// assert_eq!(LabelState::Positive.as_chexpert(), "1");
/// assert!("2".parse::<LabelState>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum LabelState {
    /// The finding is present.
    Positive,
    /// The finding is stated to be absent.
    Negative,
    /// The finding is mentioned with uncertainty ("possible", "cannot be excluded").
    Uncertain,
    /// The finding is not mentioned.
    #[default]
    Unmentioned,
}

impl LabelState {
    /// The CheXpert CSV spelling: `1`, `0`, `-1`, or empty.
    pub fn as_chexpert(self) -> &'static str {
        match self {
            Self::Positive => "1",
            Self::Negative => "0",
            Self::Uncertain => "-1",
            Self::Unmentioned => "",
        }
    }

    /// CheXpert's precedence for two statements about one finding (several mentions in a
    /// report, or several source columns mapped to one key): positive over uncertain over
    /// negative over unmentioned.
    ///
    /// ```
    /// use umcl_data::schema::LabelState::*;
    /// assert_eq!(Negative.merge(Uncertain), Uncertain);
    /// assert_eq!(Positive.merge(Uncertain), Positive);
    /// assert_eq!(Unmentioned.merge(Negative), Negative);
    /// ```
    pub fn merge(self, other: LabelState) -> LabelState {
        let rank = |s: LabelState| match s {
            Self::Positive => 3,
            Self::Uncertain => 2,
            Self::Negative => 1,
            Self::Unmentioned => 0,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }

    /// A compact integer code for arrays: positive 1, negative 0, uncertain -1,
    /// unmentioned -2.
    pub fn code(self) -> i8 {
        match self {
            Self::Positive => 1,
            Self::Negative => 0,
            Self::Uncertain => -1,
            Self::Unmentioned => -2,
        }
    }

    /// The state with this [`code`](Self::code), or `None` for any other number.
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Positive),
            0 => Some(Self::Negative),
            -1 => Some(Self::Uncertain),
            -2 => Some(Self::Unmentioned),
            _ => None,
        }
    }

    /// Whether the label says anything (every state but [`Unmentioned`](Self::Unmentioned)).
    pub fn is_mentioned(self) -> bool {
        self != Self::Unmentioned
    }

    /// The four states, in the order positive, negative, uncertain, unmentioned.
    pub const ALL: [LabelState; 4] = [
        Self::Positive,
        Self::Negative,
        Self::Uncertain,
        Self::Unmentioned,
    ];
}

/// A label value that is not one of `1`, `0`, `-1` (also `1.0`, `0.0`, `-1.0`) or empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown label value `{0}` (expected 1, 0, -1 or empty)")]
pub struct UnknownLabelValue(pub String);

impl FromStr for LabelState {
    type Err = UnknownLabelValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1" | "1.0" => Ok(Self::Positive),
            "0" | "0.0" => Ok(Self::Negative),
            "-1" | "-1.0" => Ok(Self::Uncertain),
            "" => Ok(Self::Unmentioned),
            other => Err(UnknownLabelValue(other.to_string())),
        }
    }
}

impl fmt::Display for LabelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::Uncertain => "uncertain",
            Self::Unmentioned => "unmentioned",
        })
    }
}

/// The keys of the built-in chest X-ray schema, in label-vector order.
pub const CHEST_XRAY_KEYS: [&str; 17] = [
    "no_finding",
    "enlarged_cardiomediastinum",
    "cardiomegaly",
    "lung_opacity",
    "lung_lesion",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "pleural_other",
    "fracture",
    "support_devices",
    "emphysema",
    "fibrosis",
    "hernia",
];

/// The text of the built-in chest X-ray schema (`data/schemas/chest-xray.toml`).
pub const CHEST_XRAY_TOML: &str = include_str!("../data/schemas/chest-xray.toml");

/// One label of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelDef {
    /// The key (lower_snake_case), as written in manifests.
    pub key: String,
    /// A human name ("Pleural Effusion"), also used in prompts.
    pub display: String,
    /// Other phrases for the finding ("effusion", "pleural fluid").
    pub synonyms: Vec<String>,
}

/// An ordered set of labels, and the names that datasets use for them.
///
/// ```
/// use umcl_data::schema::Schema;
/// let schema = Schema::chest_xray();
/// assert_eq!(schema.len(), 17);
/// assert_eq!(schema.index_of("cardiomegaly"), Some(2));
/// // ChestX-ray14's Mass and Nodule are both lung lesions.
/// let lesion = schema.index_of("lung_lesion").unwrap();
/// assert_eq!(schema.lookup("chestx-ray14", "Nodule"), Some(&[lesion][..]));
/// // CheXpert column names.
/// assert_eq!(schema.lookup("chexpert", "Pleural Effusion"), Some(&[10][..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    name: String,
    labels: Vec<LabelDef>,
    /// dataset -> normalized name -> label indices.
    datasets: BTreeMap<String, BTreeMap<String, Vec<usize>>>,
    /// `0..labels.len()`, so that a key lookup can return a slice like a table lookup.
    identity: Vec<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    name: String,
    labels: Vec<LabelFile>,
    #[serde(default)]
    datasets: BTreeMap<String, BTreeMap<String, OneOrMany>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelFile {
    key: String,
    display: Option<String>,
    #[serde(default)]
    synonyms: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// How names are compared: lower case, `_` as a space, runs of spaces as one.
fn normalize_name(name: &str) -> String {
    name.replace('_', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

impl Schema {
    /// The built-in chest X-ray schema: the 17 [`CHEST_XRAY_KEYS`] with display names,
    /// synonyms and the names CheXpert, ChestX-ray14, IU X-ray and the COVID-19 collection use.
    pub fn chest_xray() -> Schema {
        static BUILTIN: OnceLock<Schema> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                Schema::from_toml_str(CHEST_XRAY_TOML, Path::new("<built-in chest-xray.toml>"))
                    .unwrap_or_else(|err| panic!("the built-in schema is invalid: {err}"))
            })
            .clone()
    }

    /// A built-in schema by name (`chest-xray`), or else a schema TOML file at that path.
    pub fn resolve(name_or_path: &str) -> Result<Schema> {
        match name_or_path {
            "chest-xray" => Ok(Self::chest_xray()),
            path => Self::load(Path::new(path)),
        }
    }

    /// Reads a schema TOML file (the format of `data/schemas/chest-xray.toml`).
    pub fn load(path: &Path) -> Result<Schema> {
        let text = std::fs::read_to_string(path).map_err(|err| DataError::io(path, err))?;
        Self::from_toml_str(&text, path)
    }

    /// Parses a schema from TOML text; `origin` names the text in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Schema> {
        let file: SchemaFile = toml::from_str(text)
            .map_err(|err| DataError::file(origin, err.to_string().trim_end().to_string()))?;
        let bad = |message: String| DataError::file(origin, message);
        if file.name.trim().is_empty() {
            return Err(bad("the schema `name` is empty".into()));
        }
        if file.labels.is_empty() {
            return Err(bad("the schema has no [[labels]]".into()));
        }
        let mut labels: Vec<LabelDef> = Vec::with_capacity(file.labels.len());
        for label in file.labels {
            let key = label.key;
            let well_formed = !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !well_formed {
                return Err(bad(format!(
                    "label key `{key}` must be non-empty lower_snake_case (a-z, 0-9, _)"
                )));
            }
            if labels.iter().any(|l| l.key == key) {
                return Err(bad(format!("label key `{key}` appears twice")));
            }
            let display = label.display.unwrap_or_else(|| {
                let spaced = key.replace('_', " ");
                let mut chars = spaced.chars();
                chars
                    .next()
                    .map(|c| c.to_uppercase().chain(chars).collect())
                    .unwrap_or_default()
            });
            labels.push(LabelDef {
                key,
                display,
                synonyms: label.synonyms,
            });
        }
        let mut datasets = BTreeMap::new();
        for (dataset, names) in file.datasets {
            let mut table: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for (name, targets) in names {
                let targets = match targets {
                    OneOrMany::One(key) => vec![key],
                    OneOrMany::Many(keys) => keys,
                };
                let mut indices = Vec::with_capacity(targets.len());
                for key in &targets {
                    let index = labels.iter().position(|l| &l.key == key).ok_or_else(|| {
                        bad(format!(
                            "[datasets.{dataset}] maps `{name}` to `{key}`, which is not a label key"
                        ))
                    })?;
                    indices.push(index);
                }
                if table.insert(normalize_name(&name), indices).is_some() {
                    return Err(bad(format!(
                        "[datasets.{dataset}] names `{name}` twice (names match case-insensitively)"
                    )));
                }
            }
            datasets.insert(dataset, table);
        }
        Ok(Schema {
            name: file.name,
            identity: (0..labels.len()).collect(),
            labels,
            datasets,
        })
    }

    /// The schema's name, as written in manifest headers.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the schema has no labels (never true for a loaded schema).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels in label-vector order.
    pub fn labels(&self) -> &[LabelDef] {
        &self.labels
    }

    /// The keys in label-vector order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.labels.iter().map(|l| l.key.as_str())
    }

    /// The position of `key` in the label vector.
    pub fn index_of(&self, key: &str) -> Option<usize> {
        self.labels.iter().position(|l| l.key == key)
    }

    /// The datasets this schema has name tables for.
    pub fn datasets(&self) -> impl Iterator<Item = &str> + '_ {
        self.datasets.keys().map(String::as_str)
    }

    /// The label indices that `name` stands for in `dataset`.
    ///
    /// A dataset with a table is looked up in its table only; any other dataset's names are
    /// matched against the schema's keys and display names. Names match case-insensitively,
    /// with `_` and runs of spaces as one space. `Some(&[])` is a name the dataset uses that
    /// carries no label; `None` is a name the schema does not know.
    pub fn lookup(&self, dataset: &str, name: &str) -> Option<&[usize]> {
        let wanted = normalize_name(name);
        if let Some(table) = self.datasets.get(dataset) {
            return table.get(&wanted).map(Vec::as_slice);
        }
        self.labels
            .iter()
            .position(|l| normalize_name(&l.key) == wanted || normalize_name(&l.display) == wanted)
            .map(|i| &self.identity[i..=i])
    }

    /// The label indices that the table of `dataset` reaches, in schema order (empty when the
    /// schema has no table for it).
    pub fn dataset_coverage(&self, dataset: &str) -> Vec<usize> {
        let mut covered: Vec<usize> = self
            .datasets
            .get(dataset)
            .into_iter()
            .flat_map(|t| t.values().flatten().copied())
            .collect();
        covered.sort_unstable();
        covered.dedup();
        covered
    }
}
