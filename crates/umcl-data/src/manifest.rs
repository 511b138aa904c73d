//! Unified manifests: JSON Lines, a header line, then one sample per line.
//!
//! ```text
//! {"format":"umcl-manifest","version":1,"schema":"chest-xray","keys":["no_finding",...]}
//! {"id":"p1/s1/v1","patient_id":"p1","image":"images/v1.jpg","text":"...","labels":{"cardiomegaly":1,"edema":-1},"source":"chexpert"}
//! ```
//!
//! Only mentioned labels are in the `labels` map, with CheXpert codes (1 positive, 0 negative,
//! -1 uncertain). `patient_id`, `image`, `text` and `meta` are left out when absent. Image paths
//! are relative to the manifest's directory, or absolute. Reading validates every line and names
//! the file and line of the first problem; writing is atomic (a temporary file in the same
//! directory, renamed over the target when complete).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{DataError, Result};
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};
use crate::sources::dir_of;
use umcl_fs::AtomicFile;

/// The `format` of a manifest header.
pub const FORMAT: &str = "umcl-manifest";
/// The manifest format version this crate reads and writes.
pub const VERSION: u32 = 1;

/// The first line of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    /// The schema's name.
    pub schema: String,
    /// The schema's keys, in label-vector order.
    pub keys: Vec<String>,
}

impl Header {
    /// The header for manifests of `schema`.
    pub fn for_schema(schema: &Schema) -> Header {
        Header {
            format: FORMAT.to_string(),
            version: VERSION,
            schema: schema.name().to_string(),
            keys: schema.keys().map(str::to_string).collect(),
        }
    }

    /// Checks that this header's keys are `schema`'s keys, in the same order.
    pub fn check_schema(&self, schema: &Schema, path: &Path) -> Result<()> {
        if self.keys.iter().map(String::as_str).eq(schema.keys()) {
            Ok(())
        } else {
            Err(DataError::at(
                path,
                1,
                format!(
                    "the manifest's keys (schema `{}`) differ from those of schema `{}`",
                    self.schema,
                    schema.name()
                ),
            ))
        }
    }
}

/// A file next to a manifest: `dir/STEM{suffix}` for `dir/STEM.jsonl` (splits, skip lists).
pub fn sibling_path(manifest: &Path, suffix: &str) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "manifest".into());
    manifest.with_file_name(format!("{stem}{suffix}"))
}

/// The labels of a sample as a JSON map of mentioned keys to CheXpert codes, in schema order.
struct LabelsOut<'a> {
    keys: &'a [String],
    states: &'a [LabelState],
}

impl Serialize for LabelsOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mentioned = || {
            self.keys
                .iter()
                .zip(self.states)
                .filter(|(_, s)| s.is_mentioned())
        };
        let mut map = serializer.serialize_map(Some(mentioned().count()))?;
        for (key, state) in mentioned() {
            map.serialize_entry(key, &state.code())?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct RecordOut<'a> {
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    patient_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    labels: LabelsOut<'a>,
    source: &'a str,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    id: String,
    #[serde(default)]
    patient_id: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, serde_json::Value>,
    source: String,
    #[serde(default)]
    meta: BTreeMap<String, String>,
}

/// `path` made absolute against the working directory, without touching the file system.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes a manifest sample by sample; nothing appears at the target path before
/// [`finish`](Self::finish).
pub struct ManifestWriter {
    file: AtomicFile,
    keys: Vec<String>,
    dir: PathBuf,
    ids: HashMap<String, u64>,
    line: u64,
}

impl ManifestWriter {
    /// Starts a manifest of `schema` at `path`.
    pub fn create(path: &Path, schema: &Schema) -> Result<ManifestWriter> {
        let header = Header::for_schema(schema);
        let mut file = AtomicFile::create(path)?;
        let mut line = serde_json::to_vec(&header)
            .map_err(|err| DataError::Invalid(format!("cannot encode the header: {err}")))?;
        line.push(b'\n');
        file.write_all(&line)
            .map_err(|err| DataError::io(path, err))?;
        Ok(ManifestWriter {
            file,
            keys: header.keys,
            dir: absolute(&dir_of(path)),
            ids: HashMap::new(),
            line: 1,
        })
    }

    /// Appends one sample. Its image path is written relative to the manifest's directory when
    /// the image lies under it, else absolute.
    pub fn write(&mut self, sample: &Sample) -> Result<()> {
        let target = self.file.target().to_path_buf();
        let next_line = self.line + 1;
        let bad = |message: String| DataError::at(&target, next_line, message);
        if sample.labels.len() != self.keys.len() {
            return Err(bad(format!(
                "sample `{}` has {} labels, the schema has {}",
                sample.id,
                sample.labels.len(),
                self.keys.len()
            )));
        }
        if sample.id.is_empty() {
            return Err(bad("a sample has an empty id".into()));
        }
        if let Some(first) = self.ids.insert(sample.id.clone(), next_line) {
            return Err(bad(format!(
                "sample id `{}` repeats line {first}",
                sample.id
            )));
        }
        let image = match &sample.image {
            None => None,
            Some(image) => {
                let absolute_image = absolute(image);
                let written = absolute_image
                    .strip_prefix(&self.dir)
                    .map(Path::to_path_buf)
                    .unwrap_or(absolute_image);
                Some(written.to_str().map(str::to_string).ok_or_else(|| {
                    bad(format!(
                        "image path {} of sample `{}` is not UTF-8",
                        image.display(),
                        sample.id
                    ))
                })?)
            }
        };
        let record = RecordOut {
            id: &sample.id,
            patient_id: sample.patient_id.as_deref(),
            image: image.as_deref(),
            text: sample.text.as_deref(),
            labels: LabelsOut {
                keys: &self.keys,
                states: &sample.labels,
            },
            source: &sample.source,
            meta: &sample.meta,
        };
        let mut line = serde_json::to_vec(&record)
            .map_err(|err| bad(format!("cannot encode sample `{}`: {err}", sample.id)))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .map_err(|err| DataError::io(self.file.target(), err))?;
        self.line = next_line;
        Ok(())
    }

    /// Renames the finished manifest into place.
    pub fn finish(self) -> Result<()> {
        Ok(self.file.commit()?)
    }
}

/// Writes `samples` as a manifest of `schema` at `path`, atomically.
pub fn write_manifest(path: &Path, schema: &Schema, samples: &[Sample]) -> Result<()> {
    let mut writer = ManifestWriter::create(path, schema)?;
    for sample in samples {
        writer.write(sample)?;
    }
    writer.finish()
}

/// Reads a manifest one sample at a time, validating as it goes.
///
/// Every error names the manifest and line: a bad header, a line that is not a sample object,
/// an unknown field or label key, a label code other than 1, 0, -1, an empty id, text or
/// source, a repeated id.
pub struct ManifestReader {
    path: PathBuf,
    dir: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: u64,
    header: Header,
    key_index: HashMap<String, usize>,
    ids: HashMap<String, u64>,
    failed: bool,
}

impl ManifestReader {
    /// Opens a manifest and reads its header.
    pub fn open(path: &Path) -> Result<ManifestReader> {
        let file = File::open(path).map_err(|err| DataError::io(path, err))?;
        let mut lines = BufReader::new(file).lines();
        let first = match lines.next() {
            None => {
                return Err(DataError::file(
                    path,
                    "empty file, expected a manifest header",
                ))
            }
            Some(line) => line.map_err(|err| line_error(path, 1, err))?,
        };
        // A byte-order mark some editors put at the start of a file.
        let first = match first.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => first,
        };
        let header: Header = serde_json::from_str(&first)
            .map_err(|err| DataError::at(path, 1, format!("not a manifest header: {err}")))?;
        if header.format != FORMAT {
            return Err(DataError::at(
                path,
                1,
                format!("format is `{}`, expected `{FORMAT}`", header.format),
            ));
        }
        if header.version != VERSION {
            return Err(DataError::at(
                path,
                1,
                format!(
                    "manifest version {} is not supported (this umcl reads version {VERSION})",
                    header.version
                ),
            ));
        }
        let mut key_index = HashMap::new();
        for (i, key) in header.keys.iter().enumerate() {
            if key_index.insert(key.clone(), i).is_some() {
                return Err(DataError::at(path, 1, format!("key `{key}` appears twice")));
            }
        }
        if key_index.is_empty() {
            return Err(DataError::at(path, 1, "the header lists no keys"));
        }
        Ok(ManifestReader {
            path: path.to_path_buf(),
            dir: dir_of(path),
            lines,
            line: 1,
            header,
            key_index,
            ids: HashMap::new(),
            failed: false,
        })
    }

    /// The manifest's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn parse(&mut self, text: &str) -> Result<Sample> {
        let line = self.line;
        let bad = |message: String| DataError::at(&self.path, line, message);
        let record: RecordIn =
            serde_json::from_str(text).map_err(|err| bad(format!("not a sample: {err}")))?;
        if record.id.is_empty() {
            return Err(bad("empty `id`".into()));
        }
        if record.source.is_empty() {
            return Err(bad(format!("sample `{}` has an empty `source`", record.id)));
        }
        if record.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(bad(format!(
                "sample `{}` has an empty `text` (leave the field out instead)",
                record.id
            )));
        }
        let mut labels = vec![LabelState::Unmentioned; self.header.keys.len()];
        for (key, value) in &record.labels {
            let index = *self.key_index.get(key).ok_or_else(|| {
                bad(format!(
                    "sample `{}`: unknown label key `{key}` (schema `{}`)",
                    record.id, self.header.schema
                ))
            })?;
            labels[index] = value
                .as_i64()
                .and_then(LabelState::from_code)
                .filter(|s| s.is_mentioned())
                .ok_or_else(|| {
                    bad(format!(
                        "sample `{}`: label `{key}` is {value}, expected 1, 0 or -1",
                        record.id
                    ))
                })?;
        }
        if let Some(first) = self.ids.insert(record.id.clone(), line) {
            return Err(bad(format!(
                "sample id `{}` repeats line {first}",
                record.id
            )));
        }
        let image = match record.image {
            Some(image) if image.is_empty() => {
                return Err(bad(format!("sample `{}` has an empty `image`", record.id)))
            }
            Some(image) => Some(self.dir.join(image)),
            None => None,
        };
        Ok(Sample {
            id: record.id,
            patient_id: record.patient_id,
            image,
            text: record.text,
            labels,
            source: record.source,
            meta: record.meta,
        })
    }
}

fn line_error(path: &Path, line: u64, err: std::io::Error) -> DataError {
    if err.kind() == std::io::ErrorKind::InvalidData {
        DataError::at(path, line, "not valid UTF-8")
    } else {
        DataError::io(path, err)
    }
}

impl Iterator for ManifestReader {
    type Item = Result<Sample>;

    fn next(&mut self) -> Option<Result<Sample>> {
        if self.failed {
            return None;
        }
        loop {
            let text = self.lines.next()?;
            self.line += 1;
            let result = match text {
                Err(err) => Err(line_error(&self.path, self.line, err)),
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => self.parse(&text),
            };
            self.failed = result.is_err();
            return Some(result);
        }
    }
}

/// A manifest read whole.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The header line.
    pub header: Header,
    /// The samples, in file order, with image paths resolved against the manifest's directory.
    pub samples: Vec<Sample>,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest> {
        let mut reader = ManifestReader::open(path)?;
        let samples = reader.by_ref().collect::<Result<Vec<_>>>()?;
        Ok(Manifest {
            header: reader.header,
            samples,
        })
    }
}

/// Counts over a manifest's samples: per source, and per source, label and state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Per source, by name.
    pub sources: BTreeMap<String, SourceStats>,
}

/// The counts of one source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Samples.
    pub samples: usize,
    /// Distinct patient ids (samples without one are not counted).
    pub patients: usize,
    /// Samples with an image.
    pub with_image: usize,
    /// Samples with text.
    pub with_text: usize,
    /// Samples with at least one mentioned label.
    pub with_labels: usize,
    /// Per label (schema order), the count of each state in [`LabelState::ALL`] order.
    pub states: Vec<[usize; 4]>,
    patient_ids: std::collections::HashSet<String>,
}

impl Stats {
    /// Counts `samples` of a schema with `keys` labels.
    pub fn count<'a>(samples: impl IntoIterator<Item = &'a Sample>, keys: usize) -> Stats {
        let mut stats = Stats::default();
        for sample in samples {
            stats.add(sample, keys);
        }
        stats
    }

    /// Adds one sample.
    pub fn add(&mut self, sample: &Sample, keys: usize) {
        let source = self.sources.entry(sample.source.clone()).or_default();
        if source.states.len() < keys {
            source.states.resize(keys, [0; 4]);
        }
        source.samples += 1;
        if let Some(patient) = &sample.patient_id {
            if source.patient_ids.insert(patient.clone()) {
                source.patients += 1;
            }
        }
        source.with_image += usize::from(sample.image.is_some());
        source.with_text += usize::from(sample.text.is_some());
        source.with_labels += usize::from(sample.has_labels());
        for (counts, state) in source.states.iter_mut().zip(&sample.labels) {
            let slot = LabelState::ALL.iter().position(|s| s == state).unwrap_or(3);
            counts[slot] += 1;
        }
    }

    /// All sources added up (patients are summed: sources never share patients).
    pub fn total(&self) -> SourceStats {
        let mut total = SourceStats::default();
        for source in self.sources.values() {
            total.samples += source.samples;
            total.patients += source.patients;
            total.with_image += source.with_image;
            total.with_text += source.with_text;
            total.with_labels += source.with_labels;
            if total.states.len() < source.states.len() {
                total.states.resize(source.states.len(), [0; 4]);
            }
            for (sum, counts) in total.states.iter_mut().zip(&source.states) {
                for (s, c) in sum.iter_mut().zip(counts) {
                    *s += c;
                }
            }
        }
        total
    }
}
