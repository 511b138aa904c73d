//! [`SourceRequest`]: every option any adapter takes, as a front end (the CLI's flags, the
//! Python package's keywords) collects them, checked and turned into one [`Source`].
//!
//! The checks (an option of another adapter, several inputs to an adapter that takes one, an
//! image folder for an adapter whose images lie under its input) are made here once; each
//! front end only spells the option in its own words ([`SourceMisuse`] names it with an
//! [`SourceOption`]).

use std::path::PathBuf;

use super::{chestxray14, chexpert, covid, dicom, generic, iu_xray, mimic, Source, SourceKind};

/// The options of `umcl data prepare` / `umcl.prepare`, for any adapter.
#[derive(Debug, Clone, Default)]
pub struct SourceRequest {
    /// The dataset's file(s) or folder; only chexpert takes several.
    pub inputs: Vec<PathBuf>,
    /// The folder image paths are relative to (not for mimic-cxr and dicom).
    pub image_root: Option<PathBuf>,
    /// mimic-cxr: the reports folder.
    pub reports: Option<PathBuf>,
    /// mimic-cxr: the metadata CSV.
    pub metadata: Option<PathBuf>,
    /// mimic-cxr: the label CSV.
    pub labels: Option<PathBuf>,
    /// mimic-cxr: which label file the default name points at.
    pub label_set: Option<mimic::MimicLabels>,
    /// covid-cxr: the whole note or its imaging part.
    pub notes: Option<covid::CovidNotes>,
    /// generic: the file format.
    pub format: Option<generic::GenericFormat>,
    /// generic: the samples' source name.
    pub source_name: Option<String>,
    /// generic: the id column.
    pub id: Option<String>,
    /// generic: the patient column.
    pub patient: Option<String>,
    /// generic: the image column.
    pub image: Option<String>,
    /// generic: text columns.
    pub text: Vec<String>,
    /// generic: label columns (`auto`: every column the schema knows).
    pub label_columns: Vec<String>,
    /// generic: the column listing positive findings.
    pub label_list: Option<String>,
    /// generic: the separator of `label_list`.
    pub list_separator: Option<String>,
    /// dicom: the CSV of labels or reports.
    pub table: Option<PathBuf>,
}

/// An option of [`SourceRequest`] that belongs to one adapter, for front ends to spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // each is the field of the same name
pub enum SourceOption {
    Reports,
    Metadata,
    Labels,
    LabelSet,
    Notes,
    Format,
    SourceName,
    Id,
    Patient,
    Image,
    Text,
    LabelColumns,
    LabelList,
    ListSeparator,
    Table,
}

/// A request that does not fit its adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceMisuse {
    /// `option` was given, but only `owner` takes it.
    NotFor {
        /// The option given.
        option: SourceOption,
        /// The adapter that takes it.
        owner: SourceKind,
    },
    /// `given` inputs to an adapter that takes one.
    OneInput {
        /// How many inputs were given.
        given: usize,
    },
    /// An image folder for an adapter whose images are found from its input.
    NoImageRoot {
        /// Where that adapter's images are.
        why: &'static str,
    },
}

impl SourceRequest {
    /// The options given, each with the adapter that takes it.
    fn given(&self) -> [(SourceOption, SourceKind, bool); 15] {
        use SourceKind::{CovidCxr, Dicom, Generic, MimicCxr};
        use SourceOption::*;
        [
            (Reports, MimicCxr, self.reports.is_some()),
            (Metadata, MimicCxr, self.metadata.is_some()),
            (Labels, MimicCxr, self.labels.is_some()),
            (LabelSet, MimicCxr, self.label_set.is_some()),
            (Format, Generic, self.format.is_some()),
            (SourceName, Generic, self.source_name.is_some()),
            (Id, Generic, self.id.is_some()),
            (Patient, Generic, self.patient.is_some()),
            (Image, Generic, self.image.is_some()),
            (Text, Generic, !self.text.is_empty()),
            (LabelColumns, Generic, !self.label_columns.is_empty()),
            (LabelList, Generic, self.label_list.is_some()),
            (ListSeparator, Generic, self.list_separator.is_some()),
            (Notes, CovidCxr, self.notes.is_some()),
            (Table, Dicom, self.table.is_some()),
        ]
    }

    /// The adapter `kind` with these options; an error when an option belongs to another
    /// adapter, when an adapter that takes one input gets several, or when an image folder is
    /// given to an adapter that finds its images itself (checked in that order).
    ///
    /// ```
    /// use umcl_data::sources::{SourceKind, SourceMisuse, SourceOption, SourceRequest};
    ///
    /// let request = SourceRequest {
    ///     inputs: vec!["metadata.csv".into()],
    ///     table: Some("labels.csv".into()),
    ///     ..Default::default()
    /// };
    /// assert_eq!(
    ///     request.clone().into_source(SourceKind::CovidCxr).unwrap_err(),
    ///     SourceMisuse::NotFor { option: SourceOption::Table, owner: SourceKind::Dicom }
    /// );
    /// assert_eq!(request.into_source(SourceKind::Dicom).unwrap().kind(), SourceKind::Dicom);
    /// ```
    pub fn into_source(self, kind: SourceKind) -> Result<Source, SourceMisuse> {
        if let Some((option, owner, _)) = self
            .given()
            .into_iter()
            .find(|&(_, owner, given)| given && owner != kind)
        {
            return Err(SourceMisuse::NotFor { option, owner });
        }
        let mut inputs = self.inputs;
        if kind != SourceKind::Chexpert && inputs.len() != 1 {
            return Err(SourceMisuse::OneInput {
                given: inputs.len(),
            });
        }
        let why = match kind {
            SourceKind::MimicCxr => Some("images are under INPUT/files"),
            SourceKind::Dicom => Some("the images are the files under INPUT"),
            _ => None,
        };
        if let (Some(why), Some(_)) = (why, &self.image_root) {
            return Err(SourceMisuse::NoImageRoot { why });
        }
        let image_root = self.image_root;
        Ok(match kind {
            SourceKind::Chexpert => Source::Chexpert(chexpert::ChexpertOptions {
                csv_files: inputs,
                image_root,
            }),
            SourceKind::ChestXray14 => Source::ChestXray14(chestxray14::Chestxray14Options {
                csv_file: inputs.remove(0),
                image_root,
            }),
            SourceKind::IuXray => Source::IuXray(iu_xray::IuXrayOptions {
                csv_file: inputs.remove(0),
                image_root,
            }),
            SourceKind::CovidCxr => Source::CovidCxr(covid::CovidOptions {
                csv_file: inputs.remove(0),
                image_root,
                notes: self.notes.unwrap_or_default(),
            }),
            SourceKind::MimicCxr => Source::MimicCxr(mimic::MimicOptions {
                root: inputs.remove(0),
                metadata: self.metadata,
                labels: self.labels,
                label_set: self.label_set.unwrap_or_default(),
                reports: self.reports,
            }),
            SourceKind::Generic => Source::Generic(generic::GenericOptions {
                file: inputs.remove(0),
                format: self.format,
                source_name: self.source_name,
                id: self.id,
                patient: self.patient,
                image: self.image,
                text: self.text,
                label_columns: self.label_columns,
                label_list: self.label_list,
                list_separator: self.list_separator,
                image_root,
            }),
            SourceKind::Dicom => Source::Dicom(dicom::DicomOptions {
                root: inputs.remove(0),
                table: self.table,
            }),
        })
    }
}
