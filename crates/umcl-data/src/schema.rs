//! Label schemas: the ordered set of findings a label vector holds, and the four states a
//! label can be in.
//!
//! The built-in [`Schema::chest_xray`] has CheXpert's 14 observations plus the findings only
//! ChestX-ray14 names (emphysema, fibrosis, hernia), 17 keys in a fixed order.

use std::fmt;
use std::str::FromStr;

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
