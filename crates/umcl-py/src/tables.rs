//! `umcl.prepare`, `umcl.read_manifest` and `umcl.split`: dataset adapters, unified manifests
//! and patient-level splits, with the rows as a `umcl.Table`.

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray1, PyArray2};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use umcl_data::manifest::Manifest;
use umcl_data::sample::Sample;
use umcl_data::schema::Schema;
use umcl_data::sources::{
    covid, generic, mimic, ReadOptions, SourceKind, SourceMisuse, SourceOption, SourceRequest,
};
use umcl_data::split::{self as rsplit, FoldSpec, Part, SplitMethod, SplitSpec};

use crate::errors::Raise;
use crate::labels::labels_dict;

/// The fixed columns of `Table.columns()`; label columns are named by their keys.
const COLUMNS: [&str; 6] = ["id", "patient_id", "image", "text", "source", "meta"];

/// Unified samples (image, text, labels), from `umcl.prepare` or `umcl.read_manifest`.
///
/// `rows()` gives one dict per sample; `columns()` a dict of columns that
/// `pandas.DataFrame(table.columns())` takes as is; `labels()` the label codes as an int8
/// array `[n, len(keys)]`.
#[pyclass(module = "umcl", frozen)]
pub struct Table {
    pub(crate) samples: Vec<Sample>,
    keys: Vec<String>,
    /// The schema's name.
    #[pyo3(get)]
    pub(crate) schema: String,
    /// Rows skipped under `skip_bad=True`, each message naming its file and line.
    #[pyo3(get)]
    skipped: Vec<String>,
    /// The manifest this table was read from or written to, if any.
    #[pyo3(get)]
    path: Option<PathBuf>,
    /// Where the skipped rows were listed (`STEM.skipped.txt`), if any were.
    #[pyo3(get)]
    skipped_list: Option<PathBuf>,
    /// Samples left out by `frontal_only=True`, counted by view (`(none)`: no view).
    #[pyo3(get)]
    left_out: std::collections::BTreeMap<String, usize>,
}

fn path_str(p: &Option<PathBuf>) -> Option<String> {
    p.as_ref().map(|p| p.display().to_string())
}

#[pymethods]
impl Table {
    /// The label keys, in the order of `labels()`' columns.
    #[getter]
    fn keys(&self) -> Vec<String> {
        self.keys.clone()
    }

    /// The sample ids, in order.
    #[getter]
    fn ids(&self) -> Vec<String> {
        self.samples.iter().map(|s| s.id.clone()).collect()
    }

    fn __len__(&self) -> usize {
        self.samples.len()
    }

    /// One dict per sample: id, patient_id, image, text, source, labels (`{key: 1 | 0 | -1 |
    /// None}`) and meta.
    fn rows<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        self.samples
            .iter()
            .map(|s| {
                let row = PyDict::new(py);
                row.set_item("id", &s.id)?;
                row.set_item("patient_id", &s.patient_id)?;
                row.set_item("image", path_str(&s.image))?;
                row.set_item("text", &s.text)?;
                row.set_item("source", &s.source)?;
                row.set_item("labels", labels_dict(py, &self.keys, &s.labels)?)?;
                row.set_item("meta", &s.meta)?;
                Ok(row)
            })
            .collect()
    }

    /// The label codes, int8 `[n, len(keys)]`: 1 positive, 0 negative, -1 uncertain,
    /// `umcl.UNMENTIONED` (-2) not mentioned.
    fn labels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<i8>> {
        let codes: Vec<i8> = self
            .samples
            .iter()
            .flat_map(|s| s.labels.iter().map(|l| l.code()))
            .collect();
        ndarray::Array2::from_shape_vec((self.samples.len(), self.keys.len()), codes)
            .expect("every sample has one label per key")
            .into_pyarray(py)
    }

    /// Columns for `pandas.DataFrame`: id, patient_id, image, text, source (lists, None where
    /// absent), meta (a list of dicts) and one int8 array of codes per label key.
    fn columns<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let cols = PyDict::new(py);
        let s = &self.samples;
        cols.set_item("id", s.iter().map(|s| &s.id).collect::<Vec<_>>())?;
        cols.set_item(
            "patient_id",
            s.iter().map(|s| &s.patient_id).collect::<Vec<_>>(),
        )?;
        cols.set_item(
            "image",
            s.iter().map(|s| path_str(&s.image)).collect::<Vec<_>>(),
        )?;
        cols.set_item("text", s.iter().map(|s| &s.text).collect::<Vec<_>>())?;
        cols.set_item("source", s.iter().map(|s| &s.source).collect::<Vec<_>>())?;
        cols.set_item("meta", s.iter().map(|s| &s.meta).collect::<Vec<_>>())?;
        for (k, key) in self.keys.iter().enumerate() {
            if COLUMNS.contains(&key.as_str()) {
                return Err(PyValueError::new_err(format!(
                    "label key `{key}` is also the name of a column; use labels() instead"
                )));
            }
            let codes: Vec<i8> = s.iter().map(|s| s.labels[k].code()).collect();
            cols.set_item(key, PyArray1::from_vec(py, codes))?;
        }
        Ok(cols)
    }

    fn __repr__(&self) -> String {
        format!(
            "Table({} samples, schema {:?}, {} skipped)",
            self.samples.len(),
            self.schema,
            self.skipped.len()
        )
    }
}

/// The keyword argument that sets `option`.
fn keyword(option: SourceOption) -> &'static str {
    match option {
        SourceOption::Reports => "reports",
        SourceOption::Metadata => "metadata",
        SourceOption::Labels => "labels",
        SourceOption::LabelSet => "label_set",
        SourceOption::Notes => "notes",
        SourceOption::Format => "format",
        SourceOption::SourceName => "source_name",
        SourceOption::Id => "id_col",
        SourceOption::Patient => "patient_col",
        SourceOption::Image => "image_col",
        SourceOption::Text => "text_cols",
        SourceOption::LabelColumns => "label_cols",
        SourceOption::LabelList => "label_list_col",
        SourceOption::ListSeparator => "list_sep",
        SourceOption::Table => "table",
    }
}

/// Reads one dataset into unified samples, as `umcl data prepare` does, and with `out` writes
/// them as a manifest (atomically) with the skipped rows listed next to it.
///
/// `source` is mimic-cxr, chexpert, chestx-ray14, iu-xray, covid-cxr, generic or dicom; `input`
/// the dataset's file or folder (a list of files for chexpert; for dicom a folder of DICOM
/// files, with `table` a CSV of labels or reports keyed by `sop_instance_uid` or `file`).
/// `frontal_only=True` keeps only frontal views and counts the others in `Table.left_out`. Bad rows raise `umcl.DataError`
/// naming file and line, or with `skip_bad=True` are skipped and listed in `Table.skipped`.
#[pyfunction]
#[pyo3(signature = (
    source, input, *, out=None, schema="chest-xray", skip_bad=false, check_images=true,
    images=None, notes=None, reports=None, metadata=None, labels=None, label_set=None,
    format=None, source_name=None, id_col=None, patient_col=None, image_col=None,
    text_cols=None, label_cols=None, label_list_col=None, list_sep=None, table=None,
    frontal_only=false
))]
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    py: Python<'_>,
    source: &str,
    input: &Bound<'_, PyAny>,
    out: Option<PathBuf>,
    schema: &str,
    skip_bad: bool,
    check_images: bool,
    images: Option<PathBuf>,
    notes: Option<String>,
    reports: Option<PathBuf>,
    metadata: Option<PathBuf>,
    labels: Option<PathBuf>,
    label_set: Option<String>,
    format: Option<String>,
    source_name: Option<String>,
    id_col: Option<String>,
    patient_col: Option<String>,
    image_col: Option<String>,
    text_cols: Option<Vec<String>>,
    label_cols: Option<Vec<String>>,
    label_list_col: Option<String>,
    list_sep: Option<String>,
    table: Option<PathBuf>,
    frontal_only: bool,
) -> PyResult<Table> {
    let kind: SourceKind = source
        .parse::<SourceKind>()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let inputs: Vec<PathBuf> = match input.extract::<PathBuf>() {
        Ok(one) => vec![one],
        Err(_) => input.extract()?,
    };
    let choice =
        |name: &str, value: Option<String>, allowed: &[&str]| -> PyResult<Option<String>> {
            match value {
                Some(v) if !allowed.contains(&v.as_str()) => Err(PyValueError::new_err(format!(
                    "{name}={v:?}: expected one of {allowed:?}"
                ))),
                v => Ok(v),
            }
        };
    let request = SourceRequest {
        inputs,
        image_root: images,
        reports,
        metadata,
        labels,
        label_set: choice("label_set", label_set, &["chexpert", "negbio"])?.map(|s| {
            if s == "negbio" {
                mimic::MimicLabels::Negbio
            } else {
                mimic::MimicLabels::Chexpert
            }
        }),
        notes: choice("notes", notes, &["full", "imaging"])?.map(|s| {
            if s == "imaging" {
                covid::CovidNotes::Imaging
            } else {
                covid::CovidNotes::Full
            }
        }),
        format: choice("format", format, &["csv", "jsonl"])?.map(|s| {
            if s == "jsonl" {
                generic::GenericFormat::Jsonl
            } else {
                generic::GenericFormat::Csv
            }
        }),
        source_name,
        id: id_col,
        patient: patient_col,
        image: image_col,
        text: text_cols.unwrap_or_default(),
        label_columns: label_cols.unwrap_or_default(),
        label_list: label_list_col,
        list_separator: list_sep,
        table,
    };
    let source = request.into_source(kind).map_err(|misuse| {
        PyValueError::new_err(match misuse {
            SourceMisuse::NotFor { option, owner } => {
                format!("{} applies only to source {owner}", keyword(option))
            }
            SourceMisuse::OneInput { given } => {
                format!("source {kind} takes one input, got {given} (only chexpert takes several)")
            }
            SourceMisuse::NoImageRoot { why } => {
                format!("images does not apply to {kind}: {why}")
            }
        })
    })?;
    let schema = Schema::resolve(schema).or_raise()?;
    let read = ReadOptions {
        skip_bad,
        check_images,
    };
    let (prepared, skipped_list) = py
        .detach(|| -> umcl_data::error::Result<_> {
            let mut prepared = source.prepare(&schema, read)?;
            let left_out = if frontal_only {
                prepared.keep_frontal()
            } else {
                Default::default()
            };
            let list = match &out {
                Some(path) => prepared.write(path, &schema)?,
                None => None,
            };
            Ok(((prepared, left_out), list))
        })
        .or_raise()?;
    let (prepared, left_out) = prepared;
    Ok(Table {
        keys: schema.keys().map(String::from).collect(),
        schema: schema.name().to_string(),
        skipped: prepared.skipped.iter().map(|e| e.to_string()).collect(),
        samples: prepared.samples,
        path: out,
        skipped_list,
        left_out,
    })
}

/// Reads a unified manifest (JSON Lines, as `umcl data prepare` writes). Image paths come
/// back resolved against the manifest's folder. A malformed line raises `umcl.DataError`
/// naming the file and line.
#[pyfunction]
pub fn read_manifest(py: Python<'_>, path: PathBuf) -> PyResult<Table> {
    let manifest = py.detach(|| Manifest::read(&path)).or_raise()?;
    Ok(Table {
        keys: manifest.header.keys,
        schema: manifest.header.schema,
        skipped: Vec::new(),
        samples: manifest.samples,
        path: Some(path),
        skipped_list: None,
        left_out: Default::default(),
    })
}

/// A patient-level split of a manifest's samples: sample ids per part.
#[pyclass(module = "umcl", frozen)]
pub struct Split {
    /// Sample ids of the training part, in manifest order.
    #[pyo3(get)]
    train: Vec<String>,
    /// Sample ids of the validation part.
    #[pyo3(get)]
    val: Vec<String>,
    /// Sample ids of the test part.
    #[pyo3(get)]
    test: Vec<String>,
    /// Patients per part, `(train, val, test)`.
    #[pyo3(get)]
    patients: (usize, usize, usize),
    /// Where the split was written (`STEM.splits.json` by default).
    #[pyo3(get)]
    path: PathBuf,
}

#[pymethods]
impl Split {
    /// `{sample id: "train" | "val" | "test"}`, for a pandas column:
    /// `df["part"] = df["id"].map(split.part_of())`.
    fn part_of(&self) -> std::collections::HashMap<&str, &'static str> {
        [
            (&self.train, "train"),
            (&self.val, "val"),
            (&self.test, "test"),
        ]
        .into_iter()
        .flat_map(|(ids, part)| ids.iter().map(move |id| (id.as_str(), part)))
        .collect()
    }

    fn __repr__(&self) -> String {
        format!(
            "Split(train={}, val={}, test={} samples; {})",
            self.train.len(),
            self.val.len(),
            self.test.len(),
            self.path.display()
        )
    }
}

/// Splits a manifest's samples by patient and writes the split next to it
/// (`STEM.splits.json`, or `out`), as `umcl data split` does: the same seed and fractions
/// give the same split. With `folds` and `fold`, the test part is fold `fold` of a stratified
/// `folds`-fold cross-validation (`stratify`: "labels", "meta.NAME" or "none"), with
/// `val_percent` percent of the other folds' patients kept for validation.
#[pyfunction]
#[pyo3(signature = (
    manifest, seed=0, fractions=(0.8, 0.1, 0.1), *, folds=None, fold=None,
    stratify="labels", val_percent=10, out=None
))]
#[allow(clippy::too_many_arguments)]
pub fn split(
    py: Python<'_>,
    manifest: PathBuf,
    seed: u64,
    fractions: (f64, f64, f64),
    folds: Option<usize>,
    fold: Option<usize>,
    stratify: &str,
    val_percent: u32,
    out: Option<PathBuf>,
) -> PyResult<Split> {
    let path = out.unwrap_or_else(|| rsplit::split_path(&manifest));
    let made = py.detach(|| -> umcl_data::error::Result<_> {
        let m = Manifest::read(&manifest)?;
        let method = match (folds, fold) {
            (Some(folds), Some(fold)) => SplitMethod::Fold(FoldSpec {
                seed,
                folds,
                fold,
                val_percent,
                stratify: stratify.to_string(),
            }),
            (None, None) => {
                let (a, b, c) = fractions;
                SplitMethod::Fractions(SplitSpec::new(seed, [a, b, c])?)
            }
            _ => {
                return Err(umcl_data::error::DataError::Invalid(
                    "folds and fold go together".into(),
                ))
            }
        };
        let split = rsplit::Split::of_manifest(&m, method)?;
        split.write(&path, &manifest)?;
        Ok(split)
    });
    let split = made.or_raise()?;
    let ids = |p: Part| split.ids(p).to_vec();
    Ok(Split {
        train: ids(Part::Train),
        val: ids(Part::Val),
        test: ids(Part::Test),
        patients: (split.groups[0], split.groups[1], split.groups[2]),
        path,
    })
}
