//! A folder of DICOM files (a PACS export, a dataset's DICOM release), with an optional CSV of
//! labels or reports keyed by SOP Instance UID or by file.
//!
//! Every file under the folder whose name ends in `.dcm` / `.dicom`, or that has the `DICM`
//! magic, is one sample. Only its header is read here; the pixels are decoded when the image
//! is loaded ([`crate::images::dicom`]). The sample's id is the SOP Instance UID (else the
//! file's path under the folder), its patient the Patient ID, and its `meta` holds
//! `study_uid`, `series_uid`, `sop_uid`, `view` (View Position), `window` (the VOI the
//! decoding policy picks), `file`, and for a multi-frame file `frames` (only the first frame
//! is decoded).
//!
//! The CSV, when given, is read like the generic adapter's: its key column is
//! `sop_instance_uid` (or `SOPInstanceUID`), else `file` (a path under the folder, or a bare
//! file name that only one file has: a name several files share is a bad row); label columns are every column the schema knows, in
//! `1/0/-1/blank`; a `report` (or `text`) column is the text. A row whose key matches no file
//! is a bad row; a file without a row is an image-only sample.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{generic, Collector, CsvTable, Prepared, ReadOptions};
use crate::error::{DataError, Result};
use crate::images::dicom;
use crate::sample::Sample;
use crate::schema::Schema;

/// What `--source dicom` reads.
#[derive(Debug, Clone, Default)]
pub struct DicomOptions {
    /// The folder searched (recursively) for DICOM files.
    pub root: PathBuf,
    /// A CSV of labels and/or reports, keyed by SOP Instance UID or file.
    pub table: Option<PathBuf>,
}

/// The key columns a table may have, in the order they are looked for.
const SOP_COLUMNS: [&str; 2] = ["sop_instance_uid", "SOPInstanceUID"];
const FILE_COLUMN: &str = "file";
const TEXT_COLUMNS: [&str; 2] = ["report", "text"];

/// Every DICOM file under `root`, sorted by path.
pub fn find_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|err| DataError::io(&dir, err))?;
        for entry in entries {
            let entry = entry.map_err(|err| DataError::io(&dir, err))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|err| DataError::io(&path, err))?;
            if kind.is_dir() {
                stack.push(path);
            } else if looks_like_dicom(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether the file is DICOM by [`dicom::is_dicom`], from its name and first 132 bytes.
fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    let mut head = Vec::with_capacity(132);
    let read = std::fs::File::open(path).and_then(|f| f.take(132).read_to_end(&mut head));
    // An unreadable file is still listed when its name says DICOM: reading its header then
    // fails with an error naming it, rather than the file vanishing from the listing.
    dicom::is_dicom(if read.is_ok() { &head } else { &[] }, path)
}

/// What an image error says, without the file name that [`DataError::file`] adds again.
fn image_message(err: crate::images::ImageError) -> String {
    use crate::images::ImageError;
    match err {
        ImageError::Decode { message, .. } => message,
        ImageError::Read { err, .. } => format!("cannot read the file: {err}"),
        other => other.to_string(),
    }
}

/// The path of `file` under `root`, with `/` separators: a sample's `meta["file"]`, and where
/// `umcl data convert` puts its PNG.
///
/// ```
/// use std::path::Path;
/// use umcl_data::sources::dicom::relative_path;
///
/// assert_eq!(relative_path(Path::new("export"), Path::new("export/p1/IM1.dcm")), "p1/IM1.dcm");
/// ```
pub fn relative_path(root: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(root).unwrap_or(file);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// One sample per DICOM file, joined with the table's rows.
pub fn prepare(options: &DicomOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let root = &options.root;
    if !root.is_dir() {
        return Err(DataError::file(
            root,
            "not a folder (expected a folder of DICOM files)",
        ));
    }
    let files = find_files(root)?;
    if files.is_empty() {
        return Err(DataError::file(
            root,
            "no DICOM files (.dcm, .dicom, or with the DICM magic) in this folder",
        ));
    }
    let mut rows = match &options.table {
        Some(table) => Some(Rows::read(table, schema, read)?),
        None => None,
    };
    // Bare file names that several files share: a row keyed by one of them is ambiguous.
    let mut names: HashMap<String, usize> = HashMap::new();
    for file in &files {
        let rel = relative_path(root, file);
        let name = rel.rsplit('/').next().unwrap_or(&rel).to_string();
        *names.entry(name).or_insert(0) += 1;
    }
    if let Some(rows) = &mut rows {
        rows.shared_names = names.into_iter().filter(|&(_, n)| n > 1).collect();
    }
    let mut collector = Collector::new(read);
    // The file each SOP Instance UID was first seen in: a repeat (the same image exported
    // twice) is a bad file that names the first.
    let mut first_of: HashMap<String, String> = HashMap::new();
    for file in &files {
        let rel = relative_path(root, file);
        let sample = dicom::read_info(file)
            .map_err(|err| DataError::file(file, image_message(err)))
            .and_then(|info| match &info.sop_uid {
                Some(uid) => match first_of.get(uid) {
                    Some(first) => Err(DataError::file(
                        file,
                        format!("SOP Instance UID {uid} repeats that of {first} (the same image twice?)"),
                    )),
                    None => {
                        first_of.insert(uid.clone(), rel.clone());
                        Ok(info)
                    }
                },
                None => Ok(info),
            })
            .map(|info| {
                let mut sample = Sample::new(
                    info.sop_uid.clone().unwrap_or_else(|| rel.clone()),
                    "dicom",
                    schema,
                );
                sample.patient_id = info.patient_id.clone();
                sample.image = Some(file.clone());
                let meta = [
                    ("study_uid", info.study_uid.clone()),
                    ("series_uid", info.series_uid.clone()),
                    ("sop_uid", info.sop_uid.clone()),
                    ("view", info.view_position.clone()),
                    ("window", Some(info.voi.to_string())),
                    ("file", Some(rel.clone())),
                    // Only the first frame is decoded: say so where there are more.
                    (
                        "frames",
                        (info.frames > 1).then(|| format!("{} (the first is used)", info.frames)),
                    ),
                ];
                for (key, value) in meta {
                    if let Some(value) = value {
                        sample.meta.insert(key.into(), value);
                    }
                }
                if let Some(rows) = &mut rows {
                    if let Some(row) = rows.take(info.sop_uid.as_deref(), &rel) {
                        sample.labels = row.labels;
                        sample.text = row.text;
                    }
                }
                Some(sample)
            });
        collector.accept(file, 0, sample)?;
    }
    if let Some(rows) = rows {
        for (key, line) in rows.unmatched() {
            let message = match rows.shared_names.get(&key) {
                Some(n) if !rows.by_sop => format!(
                    "`{}` {key} names {n} DICOM files under {}: give its path under the folder",
                    rows.key_column,
                    root.display()
                ),
                _ => format!(
                    "`{}` {key} matches no DICOM file under {}",
                    rows.key_column,
                    root.display()
                ),
            };
            let err = DataError::at(&rows.path, line, message);
            collector.accept(&rows.path, line, Err(err))?;
        }
        for err in rows.skipped {
            collector.accept(&rows.path, 0, Err(err))?;
        }
    }
    Ok(collector.finish())
}

/// The table's rows by key, each taken at most once.
struct Rows {
    path: PathBuf,
    key_column: String,
    by_sop: bool,
    rows: HashMap<String, (u64, Sample)>,
    /// The table's bad rows, under `skip_bad`.
    skipped: Vec<DataError>,
    /// Bare file names that several files under the folder share, with their counts.
    shared_names: HashMap<String, usize>,
}

impl Rows {
    fn read(path: &Path, schema: &Schema, read: ReadOptions) -> Result<Rows> {
        let table = CsvTable::open(path)?;
        let find = |names: &[&str]| {
            names
                .iter()
                .find(|n| table.optional_column(n).is_some())
                .map(|n| n.to_string())
        };
        let (key_column, by_sop) = match (find(&SOP_COLUMNS), find(&[FILE_COLUMN])) {
            (Some(col), _) => (col, true),
            (None, Some(col)) => (col, false),
            (None, None) => {
                return Err(DataError::file(
                    path,
                    format!(
                        "no key column: expected `sop_instance_uid` or `file` (the header has: {})",
                        table.headers().join(", ")
                    ),
                ))
            }
        };
        let text = find(&TEXT_COLUMNS);
        drop(table);
        // The generic adapter reads the rows (labels, text, every bad-row check), with the key
        // as the sample id, so a repeated key is a bad row too.
        let generic = generic::GenericOptions {
            file: path.to_path_buf(),
            format: Some(generic::GenericFormat::Csv),
            source_name: Some("dicom".into()),
            id: Some(key_column.clone()),
            text: text.into_iter().collect(),
            label_columns: vec!["auto".into()],
            ..Default::default()
        };
        let prepared = generic::prepare(&generic, schema, read)?;
        // The line of each key, for the message about a row that matches no file.
        let lines = key_lines(path, &key_column)?;
        let rows = prepared
            .samples
            .into_iter()
            .map(|s| {
                let line = lines.get(&s.id).copied().unwrap_or(0);
                (s.id.clone(), (line, s))
            })
            .collect();
        Ok(Rows {
            path: path.to_path_buf(),
            key_column,
            by_sop,
            rows,
            skipped: prepared.skipped,
            shared_names: HashMap::new(),
        })
    }

    /// The row for a file with SOP Instance UID `sop` at `rel` under the folder.
    fn take(&mut self, sop: Option<&str>, rel: &str) -> Option<Sample> {
        if self.by_sop {
            return sop.and_then(|sop| self.rows.remove(sop)).map(|(_, s)| s);
        }
        if let Some((_, s)) = self.rows.remove(rel) {
            return Some(s);
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if self.shared_names.contains_key(name) {
            return None;
        }
        self.rows.remove(name).map(|(_, s)| s)
    }

    /// The keys of the rows no file took, with their lines, in line order.
    fn unmatched(&self) -> Vec<(String, u64)> {
        let mut left: Vec<_> = self
            .rows
            .iter()
            .map(|(key, (line, _))| (key.clone(), *line))
            .collect();
        left.sort_by_key(|&(_, line)| line);
        left
    }
}

/// The line of each key in the table's key column.
fn key_lines(path: &Path, key_column: &str) -> Result<HashMap<String, u64>> {
    let mut table = CsvTable::open(path)?;
    let col = table.column(key_column)?;
    let mut lines = HashMap::new();
    while let Some(row) = table.next_row()? {
        if let Ok(row) = row {
            if let Ok(key) = row.get(col) {
                lines.entry(key.to_string()).or_insert(row.line);
            }
        }
    }
    Ok(lines)
}
