//! The unified sample: one image, one text, one label vector, or any of them, from one source.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::schema::{LabelState, Schema};

/// One training sample in the unified (image, text, labels) form.
///
/// An image-report pair has an image and a text; an image-label set an image and labels; a
/// labelled report a text and labels. `labels` has one state per key of the schema, in schema
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Unique within a manifest (e.g. a DICOM id or an image file name).
    pub id: String,
    /// The patient, where the source names one; splits never put a patient in two parts.
    pub patient_id: Option<String>,
    /// The image file. In memory a path usable from the working directory; in a manifest
    /// relative to the manifest's directory, or absolute.
    pub image: Option<PathBuf>,
    /// The report text (never empty: no text is `None`).
    pub text: Option<String>,
    /// One state per schema key, in schema order.
    pub labels: Vec<LabelState>,
    /// The adapter that made the sample (`chexpert`, `mimic-cxr`, ...).
    pub source: String,
    /// Source-specific extras kept for later use (a view position, COVID's raw `finding`).
    pub meta: BTreeMap<String, String>,
}

impl Sample {
    /// A sample with every label unmentioned and nothing else set.
    pub fn new(id: impl Into<String>, source: impl Into<String>, schema: &Schema) -> Sample {
        Sample {
            id: id.into(),
            patient_id: None,
            image: None,
            text: None,
            labels: vec![LabelState::Unmentioned; schema.len()],
            source: source.into(),
            meta: BTreeMap::new(),
        }
    }

    /// Sets the text, turning text that is empty after trimming into no text.
    pub fn set_text(&mut self, text: &str) {
        let text = text.trim();
        self.text = (!text.is_empty()).then(|| text.to_string());
    }

    /// The key that splits group by: source and patient, or source and sample id when the
    /// source names no patient. Merged manifests from several sources never collide.
    pub fn group_key(&self) -> String {
        match self.patient_id.as_deref().map(str::trim) {
            // A blank patient id names no patient: it must not join every such sample into
            // one patient.
            Some(patient) if !patient.is_empty() => {
                format!("{}\u{1f}patient\u{1f}{patient}", self.source)
            }
            _ => format!("{}\u{1f}sample\u{1f}{}", self.source, self.id),
        }
    }

    /// Whether any label is mentioned.
    pub fn has_labels(&self) -> bool {
        self.labels.iter().any(|s| s.is_mentioned())
    }
}
