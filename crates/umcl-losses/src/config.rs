//! [`ItlLossConfig`]: which target the Image-Text-Label loss uses and how it reads labels.

use crate::LossError;

/// The target distribution of each row of the logits. Named `identity`, `multi-positive` and
/// `soft` in configs (with the `serde` feature) and by [`Display`](std::fmt::Display).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Target {
    /// CLIP's identity target: only the sample's own pair is positive. With false-negative
    /// masking this is "CLIP without the label-duplicate negatives".
    Identity,
    /// UniCL-style multi-positive target: every pair whose label vectors agree (equal positive
    /// sets, see [`UncertainPolicy`]) is a positive, and the target row is uniform over them.
    MultiPositive,
    /// MedCLIP-style soft target: the row-softmax of the label-similarity matrix divided by
    /// [`ItlLossConfig::label_temperature`], over the labelled columns.
    Soft,
}

/// How the similarity of two label vectors is measured (soft targets and the masking
/// threshold). Both are in `[0, 1]` and equal 1 exactly when the positive sets are equal.
/// Named `cosine` and `jaccard` in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum LabelSimilarity {
    /// `|A ∩ B| / sqrt(|A| |B|)` of the positive sets, the cosine of the 0/1 vectors.
    Cosine,
    /// `|A ∩ B| / |A ∪ B|` of the positive sets.
    Jaccard,
}

/// What an uncertain label (code -1) means when two label vectors are compared. Named
/// `positive`, `negative` and `ignore` in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum UncertainPolicy {
    /// U-Ones: an uncertain finding counts as present.
    #[cfg_attr(feature = "serde", serde(rename = "positive"))]
    AsPositive,
    /// U-Zeros: an uncertain finding counts as absent.
    #[cfg_attr(feature = "serde", serde(rename = "negative"))]
    AsNegative,
    /// The finding is left out of every comparison that involves this sample: for the pair
    /// `(i, j)` only findings that neither `i` nor `j` marks uncertain are compared. A sample
    /// whose mentioned findings are all uncertain is unlabelled.
    Ignore,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Identity => "identity",
            Self::MultiPositive => "multi-positive",
            Self::Soft => "soft",
        })
    }
}

impl std::fmt::Display for LabelSimilarity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Cosine => "cosine",
            Self::Jaccard => "jaccard",
        })
    }
}

impl std::fmt::Display for UncertainPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AsPositive => "positive",
            Self::AsNegative => "negative",
            Self::Ignore => "ignore",
        })
    }
}

/// Configuration of [`itl_loss`](crate::itl_loss). [`Default`] gives the values listed on each
/// field.
///
/// ```
/// use umcl_losses::{ItlLossConfig, Target};
/// let cfg = ItlLossConfig { target: Target::Soft, label_temperature: 0.2, ..Default::default() };
/// assert!(cfg.validate().is_ok());
/// let bad = ItlLossConfig { label_temperature: f64::NAN, ..Default::default() };
/// assert!(bad.validate().is_err());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ItlLossConfig {
    /// The target of each row. Default [`Target::MultiPositive`].
    pub target: Target,
    /// Label similarity for soft targets and the masking threshold. Default
    /// [`LabelSimilarity::Jaccard`].
    pub similarity: LabelSimilarity,
    /// Meaning of uncertain labels. Default [`UncertainPolicy::Ignore`].
    pub uncertain: UncertainPolicy,
    /// Temperature of the soft targets' row-softmax (used by [`Target::Soft`] only; validated
    /// always): finite and > 0. Default 0.1.
    pub label_temperature: f64,
    /// False-negative masking: a pair `(i, j)`, `i != j`, of two labelled samples whose label
    /// similarity is at or above this value and that is not a positive of the target is
    /// removed from the softmax denominators of both directions. In `(0, 1]`; not allowed with
    /// [`Target::Soft`], whose targets already give similar pairs weight. Default `None` (off).
    pub false_negative_threshold: Option<f64>,
    /// Weight of the image-to-text cross-entropy (rows of the logits). Default 0.5.
    pub image_to_text_weight: f64,
    /// Weight of the text-to-image cross-entropy (columns of the logits). Default 0.5.
    pub text_to_image_weight: f64,
    /// `None`: the dense loss, which holds `B x B` matrices. `Some(c)`: the chunked loss, which
    /// holds `c x B` blocks, so its memory grows linearly with the batch; same value and
    /// gradients. Default `None`.
    pub chunk_size: Option<usize>,
    /// Check every label code (-2..=1) and return [`LossError::LabelCode`](crate::LossError)
    /// naming the first bad one. The check waits for the device once when the labels are on
    /// an accelerator (codes on the CPU are checked there, before the copy). `false`: the
    /// caller guarantees the codes (umcl-data's `LabelState::code` values always are) and the
    /// loss makes no host synchronisation; a bad code is then an index error inside libtorch.
    /// Default `true`.
    pub check_labels: bool,
}

impl Default for ItlLossConfig {
    fn default() -> Self {
        Self {
            target: Target::MultiPositive,
            similarity: LabelSimilarity::Jaccard,
            uncertain: UncertainPolicy::Ignore,
            label_temperature: 0.1,
            false_negative_threshold: None,
            image_to_text_weight: 0.5,
            text_to_image_weight: 0.5,
            chunk_size: None,
            check_labels: true,
        }
    }
}

impl ItlLossConfig {
    /// Checks every field's range; [`itl_loss`](crate::itl_loss) calls this first.
    pub fn validate(&self) -> Result<(), LossError> {
        let bad = |field, reason: String| Err(LossError::Config { field, reason });
        let t = self.label_temperature;
        if !(t.is_finite() && t > 0.0) {
            return bad(
                "label_temperature",
                format!("must be finite and > 0, got {t}"),
            );
        }
        if let Some(th) = self.false_negative_threshold {
            if !(th > 0.0 && th <= 1.0) {
                return bad(
                    "false_negative_threshold",
                    format!("must be in (0, 1], got {th}"),
                );
            }
            if self.target == Target::Soft {
                return bad(
                    "false_negative_threshold",
                    "cannot be used with soft targets, which already give similar pairs \
                     target weight"
                        .into(),
                );
            }
        }
        for (field, w) in [
            ("image_to_text_weight", self.image_to_text_weight),
            ("text_to_image_weight", self.text_to_image_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return bad(field, format!("must be finite and >= 0, got {w}"));
            }
        }
        if self.image_to_text_weight + self.text_to_image_weight <= 0.0 {
            return bad(
                "image_to_text_weight",
                "and text_to_image_weight are both 0".into(),
            );
        }
        if self.chunk_size == Some(0) {
            return bad("chunk_size", "must be >= 1".into());
        }
        Ok(())
    }
}
