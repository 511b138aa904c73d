//! The error type of every loss entry point.

use tch::{Device, TchError};

/// Why a loss could not be computed: a tensor of the wrong shape, kind or device, a label code
/// outside the four states, or an invalid [`ItlLossConfig`](crate::ItlLossConfig).
#[derive(Debug, thiserror::Error)]
pub enum LossError {
    /// A feature tensor is not a matrix `[batch, dim]`.
    #[error("{name} must be a 2-D [batch, dim] tensor, got shape {shape:?}")]
    NotMatrix {
        /// Which argument (`image features` or `text features`).
        name: &'static str,
        /// Its shape.
        shape: Vec<i64>,
    },
    /// The batch holds no sample or the feature dimension is zero.
    #[error("empty input: features of shape {0:?}")]
    Empty(Vec<i64>),
    /// Image and text features differ in shape.
    #[error("image features {image:?} and text features {text:?} differ in shape")]
    ShapeMismatch {
        /// Shape of the image features.
        image: Vec<i64>,
        /// Shape of the text features.
        text: Vec<i64>,
    },
    /// A tensor that must hold floating-point numbers does not.
    #[error("{name} must be a floating-point tensor, got {kind}")]
    NotFloat {
        /// Which argument.
        name: &'static str,
        /// Its kind, as `{:?}` writes it.
        kind: String,
    },
    /// A tensor is on another device than the image features.
    #[error("{name} is on {found:?} but the image features are on {expected:?}")]
    DeviceMismatch {
        /// Which argument.
        name: &'static str,
        /// The device of the image features.
        expected: Device,
        /// The device of this argument.
        found: Device,
    },
    /// The logit scale does not hold exactly one value.
    #[error("logit_scale must hold exactly one value, got shape {0:?}")]
    LogitScaleShape(Vec<i64>),
    /// The labels are not a `[batch, K]` matrix for this batch.
    #[error("labels must be a [{batch}, K] tensor, got shape {shape:?}")]
    LabelShape {
        /// The batch size of the features.
        batch: i64,
        /// The shape of the labels.
        shape: Vec<i64>,
    },
    /// The labels are not an integer tensor.
    #[error("labels must be integer codes (i8, i16, i32, i64 or u8), got {0}")]
    LabelKind(String),
    /// A label code is not one of 1 (positive), 0 (negative), -1 (uncertain), -2 (unmentioned).
    #[error("label code {value} at row {row}, column {column} is not one of 1, 0, -1, -2")]
    LabelCode {
        /// Row (sample) of the first bad code.
        row: i64,
        /// Column (finding) of the first bad code.
        column: i64,
        /// The code found.
        value: i64,
    },
    /// A field of the config is out of its range.
    #[error("invalid loss config: {field} {reason}")]
    Config {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// libtorch refused an operation (for example, out of memory).
    #[error(transparent)]
    Torch(#[from] TchError),
}
