//! Any CSV (or TSV) or JSON Lines file, with the columns chosen by the caller.
//!
//! Labels come in one of two shapes, or both: label columns holding `1/0/-1/blank` (each
//! column's name looked up in the schema: the table named like the source, then keys and
//! display names), or one column listing the positive findings (`Cardiomegaly|Edema`, or a JSON
//! array). In JSON Lines, a field's value may be a string, a number, `null` (empty) or, for the
//! list column, an array of strings.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::{check_image, dir_of, open_maybe_gz, Collector, CsvTable, Prepared, ReadOptions};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenericFormat {
    /// Comma-separated, with a header row (`.tsv`: tab-separated).
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Which columns (CSV) or fields (JSON Lines) hold what.
#[derive(Debug, Clone, Default)]
pub struct GenericOptions {
    /// The input file.
    pub file: PathBuf,
    /// The format (default: from the extension; `.jsonl`/`.ndjson` are JSON Lines).
    pub format: Option<GenericFormat>,
    /// The `source` of every sample, also the schema table that label names are looked up in
    /// (default: `generic`).
    pub source_name: Option<String>,
    /// The sample id column (default: `FILESTEM-LINE`).
    pub id: Option<String>,
    /// The patient column.
    pub patient: Option<String>,
    /// The image path column; paths are relative to `image_root`.
    pub image: Option<String>,
    /// Text columns, joined by newlines in this order.
    pub text: Vec<String>,
    /// Label columns in `1/0/-1/blank`; `["auto"]`: every column whose name the schema knows.
    pub label_columns: Vec<String>,
    /// A column listing the positive findings.
    pub label_list: Option<String>,
    /// The separator in `label_list` (default `|`).
    pub list_separator: Option<String>,
    /// The folder relative image paths start from (default: the input file's folder).
    pub image_root: Option<PathBuf>,
}

/// One record's fields, whatever the file format.
trait Record {
    /// The field's text (empty for a missing or null field); an error names the line.
    fn text(&self, field: &str) -> Result<String>;
    /// The items of a list field.
    fn list(&self, field: &str, separator: &str) -> Result<Vec<String>>;
    fn error(&self, message: String) -> DataError;
}

struct CsvRecord<'a, 't> {
    row: &'a super::CsvRow<'t>,
    table_cols: &'a [(String, usize)],
}

impl Record for CsvRecord<'_, '_> {
    fn text(&self, field: &str) -> Result<String> {
        let col = self
            .table_cols
            .iter()
            .find(|(name, _)| name == field)
            .map(|&(_, col)| col);
        match col {
            Some(col) => Ok(self.row.get(col)?.to_string()),
            None => Ok(String::new()),
        }
    }

    fn list(&self, field: &str, separator: &str) -> Result<Vec<String>> {
        Ok(split_list(&self.text(field)?, separator))
    }

    fn error(&self, message: String) -> DataError {
        self.row.error(message)
    }
}

struct JsonRecord<'a> {
    path: &'a Path,
    line: u64,
    object: serde_json::Map<String, serde_json::Value>,
}

impl Record for JsonRecord<'_> {
    fn text(&self, field: &str) -> Result<String> {
        match self.object.get(field) {
            None | Some(serde_json::Value::Null) => Ok(String::new()),
            Some(serde_json::Value::String(s)) => Ok(s.trim().to_string()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
            Some(other) => Err(self.error(format!(
                "field `{field}` is {other}, expected a string or a number"
            ))),
        }
    }

    fn list(&self, field: &str, separator: &str) -> Result<Vec<String>> {
        match self.object.get(field) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s.trim().to_string()),
                    other => {
                        Err(self.error(format!("field `{field}` holds {other}, expected strings")))
                    }
                })
                .filter(|item| item.as_ref().map_or(true, |s| !s.is_empty()))
                .collect(),
            _ => Ok(split_list(&self.text(field)?, separator)),
        }
    }

    fn error(&self, message: String) -> DataError {
        DataError::at(self.path, self.line, message)
    }
}

fn split_list(text: &str, separator: &str) -> Vec<String> {
    text.split(separator)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The resolved column choices.
struct Plan<'a> {
    options: &'a GenericOptions,
    schema: &'a Schema,
    source: String,
    stem: String,
    separator: String,
    image_root: PathBuf,
    /// (column name, label indices) of the label columns.
    label_columns: Vec<(String, Vec<usize>)>,
    read: ReadOptions,
}

impl Plan<'_> {
    fn sample(&self, record: &dyn Record, line: u64) -> Result<Sample> {
        let options = self.options;
        let id = match &options.id {
            Some(col) => {
                let id = record.text(col)?;
                if id.is_empty() {
                    return Err(record.error(format!("the id column `{col}` is empty")));
                }
                id
            }
            None => format!("{}-{line}", self.stem),
        };
        let mut sample = Sample::new(id, self.source.clone(), self.schema);
        if let Some(col) = &options.patient {
            let patient = record.text(col)?;
            sample.patient_id = (!patient.is_empty()).then_some(patient);
        }
        if let Some(col) = &options.image {
            let image = record.text(col)?;
            if image.is_empty() {
                return Err(record.error(format!("the image column `{col}` is empty")));
            }
            sample.image = Some(check_image(
                self.read,
                self.image_root.join(image),
                &options.file,
                line,
            )?);
        }
        let mut texts = Vec::new();
        for col in &options.text {
            let text = record.text(col)?;
            if !text.is_empty() {
                texts.push(text);
            }
        }
        sample.set_text(&texts.join("\n"));
        for (col, targets) in &self.label_columns {
            let value = record.text(col)?;
            let state: LabelState = value
                .parse()
                .map_err(|err| record.error(format!("column `{col}`: {err}")))?;
            for &index in targets {
                sample.labels[index] = sample.labels[index].merge(state);
            }
        }
        if let Some(col) = &options.label_list {
            for name in record.list(col, &self.separator)? {
                let targets = self.schema.lookup(&self.source, &name).ok_or_else(|| {
                    record.error(format!(
                        "unknown label `{name}` in `{col}` (schema `{}`)",
                        self.schema.name()
                    ))
                })?;
                for &index in targets {
                    sample.labels[index] = LabelState::Positive;
                }
            }
        }
        Ok(sample)
    }

    /// Resolves label column names; `available` lists the file's columns where known.
    fn resolve_labels(&mut self, available: Option<&[String]>, path: &Path) -> Result<()> {
        let wanted: Vec<String> = if self.options.label_columns == ["auto"] {
            let available = available.ok_or_else(|| {
                DataError::Invalid(
                    "--label-cols auto needs a CSV header; name the label fields of a JSON Lines file"
                        .into(),
                )
            })?;
            available
                .iter()
                .filter(|name| self.schema.lookup(&self.source, name).is_some())
                .cloned()
                .collect()
        } else {
            self.options.label_columns.clone()
        };
        for name in wanted {
            if let Some(available) = available {
                if !available.contains(&name) {
                    return Err(DataError::file(
                        path,
                        format!(
                            "missing column `{name}` (the header has: {})",
                            available.join(", ")
                        ),
                    ));
                }
            }
            let targets = self.schema.lookup(&self.source, &name).ok_or_else(|| {
                DataError::file(
                    path,
                    format!(
                        "label column `{name}` names no label of schema `{}`",
                        self.schema.name()
                    ),
                )
            })?;
            self.label_columns.push((name, targets.to_vec()));
        }
        Ok(())
    }
}

/// Reads a CSV or JSON Lines file as the options say.
pub fn prepare(options: &GenericOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let path = &options.file;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(name);
    let format =
        options
            .format
            .unwrap_or(if name.ends_with(".jsonl") || name.ends_with(".ndjson") {
                GenericFormat::Jsonl
            } else {
                GenericFormat::Csv
            });
    let stem = name.split('.').next().unwrap_or("row").to_string();
    let mut plan = Plan {
        options,
        schema,
        source: options
            .source_name
            .clone()
            .unwrap_or_else(|| "generic".into()),
        stem,
        separator: options.list_separator.clone().unwrap_or_else(|| "|".into()),
        image_root: options.image_root.clone().unwrap_or_else(|| dir_of(path)),
        label_columns: Vec::new(),
        read,
    };
    let mut collector = Collector::new(read);
    match format {
        GenericFormat::Csv => {
            let delimiter = if name.ends_with(".tsv") { b'\t' } else { b',' };
            let mut table = CsvTable::open_with(path, delimiter)?;
            let headers = table.headers().to_vec();
            let named = options
                .id
                .iter()
                .chain(&options.patient)
                .chain(&options.image)
                .chain(&options.text)
                .chain(&options.label_list);
            for column in named {
                table.column(column)?;
            }
            plan.resolve_labels(Some(&headers), path)?;
            let table_cols: Vec<(String, usize)> = headers
                .iter()
                .enumerate()
                .map(|(i, h)| (h.clone(), i))
                .collect();
            collector.read_rows(&mut table, path, |row, _| {
                let record = CsvRecord {
                    row,
                    table_cols: &table_cols,
                };
                plan.sample(&record, row.line).map(Some)
            })?;
        }
        GenericFormat::Jsonl => {
            plan.resolve_labels(None, path)?;
            // Every field the options name, with its role, and whether any record has it.
            let mut named: Vec<(&str, &str, bool)> = Vec::new();
            let flags = [
                ("the id field", options.id.iter().collect::<Vec<_>>()),
                ("the patient field", options.patient.iter().collect()),
                ("the image field", options.image.iter().collect()),
                ("a text field", options.text.iter().collect()),
                ("the label-list field", options.label_list.iter().collect()),
                ("a label field", options.label_columns.iter().collect()),
            ];
            for (flag, fields) in &flags {
                for field in fields {
                    named.push((flag, field.as_str(), false));
                }
            }
            let mut fields_seen: Vec<String> = Vec::new();
            let reader = BufReader::new(open_maybe_gz(path)?);
            for (index, bytes) in reader.split(b'\n').enumerate() {
                let line = index as u64 + 1;
                let bytes = bytes.map_err(|err| DataError::io(path, err))?;
                let sample = (|| {
                    let text = std::str::from_utf8(&bytes).map_err(|err| {
                        DataError::at(
                            path,
                            line,
                            format!("not valid UTF-8 (bad byte at offset {})", err.valid_up_to()),
                        )
                    })?;
                    // A byte-order mark some editors put at the start of a file.
                    let text = if line == 1 {
                        text.strip_prefix('\u{feff}').unwrap_or(text)
                    } else {
                        text
                    };
                    if text.trim().is_empty() {
                        return Ok(None);
                    }
                    let object = match serde_json::from_str(text) {
                        Ok(serde_json::Value::Object(object)) => object,
                        Ok(_) => return Err(DataError::at(path, line, "not a JSON object")),
                        Err(err) => {
                            return Err(DataError::at(path, line, format!("malformed JSON: {err}")))
                        }
                    };
                    for (_, field, seen) in named.iter_mut() {
                        *seen |= object.contains_key(*field);
                    }
                    for key in object.keys() {
                        if fields_seen.len() < 50 && !fields_seen.contains(key) {
                            fields_seen.push(key.clone());
                        }
                    }
                    let record = JsonRecord { path, line, object };
                    plan.sample(&record, line).map(Some)
                })();
                collector.accept(path, line, sample)?;
            }
            // A field no record has is a misspelt name, not a file without such data: the
            // CSV reader refuses a missing column the same way.
            let missing: Vec<String> = named
                .iter()
                .filter(|(_, _, seen)| !seen)
                .map(|(role, field, _)| format!("`{field}` ({role})"))
                .collect();
            if !missing.is_empty() {
                return Err(DataError::file(
                    path,
                    format!(
                        "no record has the field {}; the records' fields are: {}",
                        missing.join(", "),
                        if fields_seen.is_empty() {
                            "(none)".to_string()
                        } else {
                            fields_seen.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    Ok(collector.finish())
}
