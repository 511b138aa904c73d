//! Evaluation metrics on plain numbers, free of tch: the model computes embeddings, these
//! functions score them.
//!
//! - [`zero_shot_multiclass`]: one prompt embedding per class, softmax over scaled cosine
//!   similarity, accuracy, per-class precision/recall/F1, macro-F1 and the confusion matrix.
//! - [`zero_shot_multilabel`]: a positive and a negative prompt per finding, the score of a
//!   finding is the softmax probability of the positive prompt within its pair; per-class ROC AUC
//!   (exact, ties at half credit, see [`roc_auc`]) and their mean.
//! - [`retrieval`]: image i is paired with text i; recall at 1/5/10 and the median rank, both
//!   directions.
//! - [`linear_probe`]: multinomial L2-regularised logistic regression on frozen, standardised
//!   features, fitted by L-BFGS on a stratified 1%/10%/100% subset of the training labels.
//! - [`bootstrap_ci`]: deterministic percentile 95% confidence intervals; each result has a
//!   `with_bootstrap` method that fills its `ci` field.
//!
//! Every result serialises with serde (JSON) and renders itself as a markdown table
//! (`to_markdown`). Embedding matrices are row-major [`ndarray::ArrayView2<f32>`]s, one row per
//! item; build one from a flat buffer with `ArrayView2::from_shape((rows, dim), &buffer)`.
//! Bad input (empty matrices, NaN, zero-norm rows, mismatched shapes, labels out of range) gives a
//! [`MetricsError`], never a panic.

mod bootstrap;
mod classification;
mod probe;
mod retrieval;
mod roc;

pub use bootstrap::{bootstrap_ci, by_groups, Interval};
pub use classification::{zero_shot_multiclass, ClassStats, MulticlassCi, MulticlassResult};
pub use probe::{
    linear_probe, linear_probe_with, stratified_subset, LogisticRegression, ProbeConfig,
    ProbeResult,
};
pub use retrieval::{retrieval, RecallAtK, RecallCi, RetrievalCi, RetrievalResult};
pub use roc::{roc_auc, roc_curve, zero_shot_multilabel, ClassAuc, MultilabelResult};

use ndarray::{Array2, ArrayView2};

/// Why a metric could not be computed. Every variant names the argument at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricsError {
    /// An input holds no item (or a matrix has no column).
    #[error("{what} is empty")]
    Empty {
        /// Which argument.
        what: &'static str,
    },
    /// An input has the wrong length or shape for the others.
    #[error("{what}: expected {expected}, got {found}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The shape or length it must have.
        expected: String,
        /// The shape or length it has.
        found: String,
    },
    /// An input holds NaN or an infinity.
    #[error("{what} holds a non-finite value at row {row}, column {column}")]
    NonFinite {
        /// Which argument.
        what: &'static str,
        /// Row of the first bad value.
        row: usize,
        /// Column of the first bad value (0 for a vector).
        column: usize,
    },
    /// An embedding row is all zeros, so it has no direction to compare.
    #[error("{what} row {row} has zero norm and cannot be L2-normalised")]
    ZeroNorm {
        /// Which argument.
        what: &'static str,
        /// The row.
        row: usize,
    },
    /// A class label is not below the number of classes.
    #[error("{what}[{index}] = {label} is not a class index below {classes}")]
    LabelOutOfRange {
        /// Which argument.
        what: &'static str,
        /// Position of the label.
        index: usize,
        /// The label found.
        label: usize,
        /// The number of classes.
        classes: usize,
    },
    /// A scalar argument is out of its range.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A statistic is undefined for every bootstrap resample (for example an AUC when every
    /// resample holds one label value only).
    #[error("{what} is undefined on every bootstrap resample")]
    Undefined {
        /// The statistic.
        what: &'static str,
    },
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, MetricsError>;

/// Checks that `x` is a non-empty matrix of finite values.
pub(crate) fn check_matrix<T: Copy + Into<f64>>(
    x: ArrayView2<'_, T>,
    what: &'static str,
) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        return Err(MetricsError::Empty { what });
    }
    for (row, r) in x.rows().into_iter().enumerate() {
        if let Some(column) = r.iter().position(|v| !(*v).into().is_finite()) {
            return Err(MetricsError::NonFinite { what, row, column });
        }
    }
    Ok(())
}

/// Checks `x` (finite, non-empty) and returns it with every row scaled to unit L2 norm (norms
/// accumulated in f64).
pub(crate) fn l2_normalized(x: ArrayView2<'_, f32>, what: &'static str) -> Result<Array2<f32>> {
    check_matrix(x, what)?;
    let mut out = x.to_owned();
    for (row, mut r) in out.rows_mut().into_iter().enumerate() {
        let norm = r
            .iter()
            .map(|&v| f64::from(v) * f64::from(v))
            .sum::<f64>()
            .sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(MetricsError::ZeroNorm { what, row });
        }
        r.mapv_inplace(|v| (f64::from(v) / norm) as f32);
    }
    Ok(out)
}

/// Checks that two embedding matrices have the same dimension.
pub(crate) fn check_same_dim(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    what: &'static str,
) -> Result<()> {
    if a.ncols() != b.ncols() {
        return Err(MetricsError::Shape {
            what,
            expected: format!("{} columns (the image embedding dimension)", a.ncols()),
            found: format!("{} columns", b.ncols()),
        });
    }
    Ok(())
}

/// Checks that a scale is finite and positive.
pub(crate) fn check_scale(scale: f64) -> Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(MetricsError::InvalidArgument {
            name: "scale",
            reason: format!("must be finite and positive, got {scale}"),
        });
    }
    Ok(())
}

/// `class 0`, `class 1`, ...: the names a result carries until `with_class_names`.
pub(crate) fn default_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("class {i}")).collect()
}

/// Checks that `names` has one entry per class and returns them owned.
pub(crate) fn owned_names<S: AsRef<str>>(names: &[S], classes: usize) -> Result<Vec<String>> {
    if names.len() != classes {
        return Err(MetricsError::Shape {
            what: "class names",
            expected: format!("{classes} names"),
            found: format!("{} names", names.len()),
        });
    }
    Ok(names.iter().map(|s| s.as_ref().to_string()).collect())
}

/// A value for a markdown cell: four decimals, or `n/a`.
pub(crate) fn cell(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.4}"),
        None => "n/a".to_string(),
    }
}

/// A confidence interval for a markdown cell: `[low, high]`, or empty.
pub(crate) fn ci_cell(ci: Option<&Interval>) -> String {
    match ci {
        Some(i) => format!("[{:.4}, {:.4}]", i.low, i.high),
        None => String::new(),
    }
}

/// Escapes the characters that would break a markdown table cell.
pub(crate) fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
