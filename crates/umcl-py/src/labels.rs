//! `umcl.Labeler` (reports to labels) and `umcl.Synthesizer` (labels to text).

use std::path::PathBuf;

use numpy::{IntoPyArray, PyArray2};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};
use rayon::prelude::*;
use umcl_data::labeler::{self, Labels, NUM_LABELS};
use umcl_data::schema::{LabelState, Schema, CHEST_XRAY_KEYS};
use umcl_data::synth::{self, SynthOptions};

use crate::errors::Raise;

/// A rayon pool of `threads` workers (default: the machine's cores), checked against
/// `umcl_data::MAX_THREADS`.
pub(crate) fn pool(threads: Option<usize>, name: &'static str) -> PyResult<rayon::ThreadPool> {
    let threads = match threads {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    if threads == 0 || threads > umcl_data::MAX_THREADS {
        return Err(PyValueError::new_err(format!(
            "threads must be between 1 and {}, got {threads}",
            umcl_data::MAX_THREADS
        )));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(move |i| format!("umcl-{name}-{i}"))
        .build()
        .map_err(|e| PyValueError::new_err(format!("cannot start {threads} threads: {e}")))
}

/// One report: a text, or its sections (findings, impression, ...) in order.
enum Report {
    Text(String),
    Sections(Vec<String>),
}

impl Report {
    /// A `str` is one text, any other sequence a list of sections. A `str` that is not valid
    /// Unicode (a lone surrogate) raises `UnicodeEncodeError`, anything else `TypeError`.
    fn extract(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        if obj.is_instance_of::<PyString>() {
            return obj.extract().map(Report::Text);
        }
        let items = obj.try_iter().map_err(|_| {
            PyTypeError::new_err(format!(
                "a report is a str or a list of str, got {}",
                obj.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let mut sections = Vec::new();
        for item in items {
            let item = item?;
            if !item.is_instance_of::<PyString>() {
                return Err(PyTypeError::new_err("a report's sections must be str"));
            }
            sections.push(item.extract()?);
        }
        Ok(Report::Sections(sections))
    }

    fn sections(&self) -> Vec<&str> {
        match self {
            Report::Text(t) => vec![t.as_str()],
            Report::Sections(s) => s.iter().map(String::as_str).collect(),
        }
    }
}

/// `{key: 1 | 0 | -1 | None}` in schema order; `None` is not mentioned.
pub(crate) fn labels_dict<'py, K: AsRef<str>>(
    py: Python<'py>,
    keys: &[K],
    states: &[LabelState],
) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (key, state) in keys.iter().zip(states) {
        let value = state.is_mentioned().then(|| state.code());
        dict.set_item(key.as_ref(), value)?;
    }
    Ok(dict)
}

/// A rule-based chest X-ray report labeler: negation, uncertainty, CheXpert's 14 findings and
/// 3 more (see `Labeler.keys`).
///
/// `rules` is None for the built-in rules, a rule file (TOML) or a list of them laid over each
/// other, where the name "builtin" stands for the built-in rules. `threads` sets how many
/// threads `label_array` uses (default: every core).
#[pyclass(module = "umcl", frozen)]
pub struct Labeler {
    inner: labeler::Labeler,
    pool: rayon::ThreadPool,
}

#[pymethods]
impl Labeler {
    #[new]
    #[pyo3(signature = (rules=None, threads=None))]
    fn new(rules: Option<&Bound<'_, PyAny>>, threads: Option<usize>) -> PyResult<Self> {
        let inner = match rules {
            None => labeler::Labeler::builtin(),
            Some(r) => {
                let paths: Vec<PathBuf> = match r.extract::<PathBuf>() {
                    Ok(path) => vec![path],
                    Err(_) => r.extract().map_err(|_| {
                        PyTypeError::new_err("rules must be None, a path or a list of paths")
                    })?,
                };
                labeler::Labeler::from_paths(&paths).or_raise()?
            }
        };
        Ok(Self {
            inner,
            pool: pool(threads, "labeler")?,
        })
    }

    /// The label keys, in the order of `label_array`'s columns.
    #[getter]
    fn keys(&self) -> Vec<&'static str> {
        CHEST_XRAY_KEYS.to_vec()
    }

    /// The name the rules give themselves.
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Labels one report (a text, or a list of its sections): `{key: 1 | 0 | -1 | None}`,
    /// 1 positive, 0 negative, -1 uncertain, None not mentioned.
    fn label<'py>(
        &self,
        py: Python<'py>,
        report: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let report = Report::extract(report)?;
        let labels = self.inner.label_sections(&report.sections());
        labels_dict(py, &CHEST_XRAY_KEYS, &labels.0)
    }

    /// Labels many reports (texts, or lists of sections) in parallel with the GIL released:
    /// an int8 array `[n, len(keys)]` of 1 positive, 0 negative, -1 uncertain and
    /// `umcl.UNMENTIONED` (-2) not mentioned.
    fn label_array<'py>(
        &self,
        py: Python<'py>,
        reports: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<i8>>> {
        if reports.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "label_array takes a list of reports; label takes one",
            ));
        }
        let reports = reports
            .try_iter()?
            .map(|r| Report::extract(&r?))
            .collect::<PyResult<Vec<Report>>>()?;
        let rows: Vec<Labels> = py.detach(|| {
            self.pool.install(|| {
                reports
                    .par_iter()
                    .map(|r| self.inner.label_sections(&r.sections()))
                    .collect()
            })
        });
        let codes: Vec<i8> = rows
            .iter()
            .flat_map(|l| l.0.iter().map(|s| s.code()))
            .collect();
        Ok(
            ndarray::Array2::from_shape_vec((rows.len(), NUM_LABELS), codes)
                .expect("one row of NUM_LABELS codes per report")
                .into_pyarray(py),
        )
    }

    /// The sentences of `text` the labeler reads as radiological (findings, impressions),
    /// joined by spaces: a clinical note's imaging part; "" when it has none.
    fn imaging_part(&self, py: Python<'_>, text: &str) -> String {
        py.detach(|| self.inner.imaging_part(text))
    }

    fn __repr__(&self) -> String {
        format!("Labeler(name={:?})", self.inner.name())
    }
}

/// Turns label vectors into report-like text (the labels-to-text half of unification), from
/// sentence pools per label and state.
///
/// The text for a sample depends only on `(seed, sample_id, labels)`: with the default options
/// it is the text `umcl.Loader(..., seed=seed, synthesize=True)` gives that sample in epoch 0
/// (later epochs draw from other seeds).
#[pyclass(module = "umcl", frozen)]
pub struct Synthesizer {
    inner: synth::Synthesizer,
    schema: Schema,
    seed: u64,
}

/// The label states of `labels`: a dict `{key: code | None}` (keys not given are not
/// mentioned) or a sequence of one code per schema key.
pub(crate) fn states_of(labels: &Bound<'_, PyAny>, schema: &Schema) -> PyResult<Vec<LabelState>> {
    let state = |code: Option<i64>, what: &dyn std::fmt::Display| match code {
        None => Ok(LabelState::Unmentioned),
        Some(c) => LabelState::from_code(c).ok_or_else(|| {
            PyValueError::new_err(format!(
                "{what}: label code {c}, expected 1, 0, -1, -2 or None"
            ))
        }),
    };
    let mut states = vec![LabelState::Unmentioned; schema.len()];
    if let Ok(dict) = labels.cast::<PyDict>() {
        for (key, value) in dict.iter() {
            let key: String = key.extract()?;
            let at = schema.index_of(&key).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "unknown label `{key}` (schema {} has: {})",
                    schema.name(),
                    schema.keys().collect::<Vec<_>>().join(", ")
                ))
            })?;
            states[at] = state(value.extract()?, &format_args!("label `{key}`"))?;
        }
    } else {
        let codes: Vec<Option<i64>> = labels.extract().map_err(|_| {
            PyTypeError::new_err("labels must be a dict {key: code} or a sequence of codes")
        })?;
        if codes.len() != schema.len() {
            return Err(PyValueError::new_err(format!(
                "{} label codes, schema {} has {} keys",
                codes.len(),
                schema.name(),
                schema.len()
            )));
        }
        for (i, code) in codes.into_iter().enumerate() {
            states[i] = state(code, &format_args!("label {i}"))?;
        }
    }
    Ok(states)
}

#[pymethods]
impl Synthesizer {
    #[new]
    #[pyo3(signature = (seed=0, schema="chest-xray", extra_negatives=0, shuffle=true))]
    fn new(seed: u64, schema: &str, extra_negatives: usize, shuffle: bool) -> PyResult<Self> {
        let schema = Schema::resolve(schema).or_raise()?;
        let inner = synth::Synthesizer::builtin(&schema)
            .or_raise()?
            .with_options(SynthOptions {
                extra_negatives,
                shuffle,
            });
        Ok(Self {
            inner,
            schema,
            seed,
        })
    }

    /// The schema's label keys.
    #[getter]
    fn keys(&self) -> Vec<String> {
        self.schema.keys().map(String::from).collect()
    }

    /// A text saying what `labels` say: `labels` is a dict `{key: 1 | 0 | -1 | None}` or a
    /// sequence of one code per key (a row of `Labeler.label_array`). "" when every label is
    /// unmentioned.
    #[pyo3(signature = (labels, sample_id=""))]
    fn text(&self, labels: &Bound<'_, PyAny>, sample_id: &str) -> PyResult<String> {
        let states = states_of(labels, &self.schema)?;
        Ok(self.inner.synthesize_for(sample_id, &states, self.seed))
    }

    fn __repr__(&self) -> String {
        format!(
            "Synthesizer(seed={}, schema={:?})",
            self.seed,
            self.schema.name()
        )
    }
}
