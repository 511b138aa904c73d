//! Source adapters: each reads one public dataset's files and returns unified [`Sample`]s.
//!
//! | adapter | reads | patient | text | labels |
//! |---|---|---|---|---|
//! | [`mimic`] `mimic-cxr` | metadata CSV, chexpert or negbio CSV, report files | `subject_id` | findings + impression | 1/0/-1/blank |
//! | [`chexpert`] `chexpert` | `train.csv` / `valid.csv` | from `Path` | none | 1/0/-1/blank |
//! | [`chestxray14`] `chestx-ray14` | `Data_Entry_2017.csv` | `Patient ID` | none | named = positive, rest negative |
//! | [`iu_xray`] `iu-xray` | the reports CSV | `uid` | findings + impression | MeSH head terms = positive |
//! | [`covid`] `covid-cxr` | `metadata.csv` | `patientid` | `clinical_notes` | from `finding` |
//! | [`generic`] `generic` | any CSV or JSONL | chosen by flags | chosen | chosen |
//! | [`dicom`] `dicom` | a folder of DICOM files, optional CSV | Patient ID | from the CSV | from the CSV |
//!
//! Bad rows (malformed CSV, a wrong field count, an unknown label value, a missing image file,
//! non-UTF-8 text, a repeated sample id) are an error naming file and line, or with
//! [`ReadOptions::skip_bad`] a skip that [`Prepared::skipped`] lists. Nothing is dropped
//! silently.

pub mod chestxray14;
pub mod chexpert;
pub mod covid;
pub mod dicom;
pub mod generic;
pub mod iu_xray;
pub mod mimic;
mod request;

pub use self::request::{SourceMisuse, SourceOption, SourceRequest};

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;

use crate::error::{DataError, Result};
use crate::sample::Sample;
use crate::schema::LabelState;

/// Options every adapter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    /// Skip bad rows (counted and listed in [`Prepared::skipped`]) instead of failing.
    pub skip_bad: bool,
    /// Check that every image file exists (a missing one is a bad row).
    pub check_images: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            skip_bad: false,
            check_images: true,
        }
    }
}

/// What an adapter produced.
#[derive(Debug, Default)]
pub struct Prepared {
    /// The samples, in input order.
    pub samples: Vec<Sample>,
    /// The rows skipped under [`ReadOptions::skip_bad`], each naming its file and line.
    pub skipped: Vec<DataError>,
}

impl Prepared {
    /// Writes the samples as a manifest at `path` (atomically) and the skipped rows, one per
    /// line, next to it (`STEM.skipped.txt`), as `umcl data prepare` does. A list left by an
    /// earlier run is removed when this one skipped nothing, so the list never describes
    /// another manifest. Returns the list's path when rows were skipped.
    pub fn write(&self, path: &Path, schema: &crate::schema::Schema) -> Result<Option<PathBuf>> {
        crate::manifest::write_manifest(path, schema, &self.samples)?;
        let list = crate::manifest::sibling_path(path, ".skipped.txt");
        let text: String = self.skipped.iter().map(|err| format!("{err}\n")).collect();
        let skipped = !self.skipped.is_empty();
        umcl_fs::write_or_remove(&list, skipped.then_some(text.as_bytes()))?;
        Ok(skipped.then_some(list))
    }

    /// Keeps only the samples whose `meta["view"]` is frontal ([`is_frontal`]), as
    /// `--frontal-only` asks, and returns how many were left out, by view (`(none)` for
    /// samples without one), so that the caller can report them.
    ///
    /// ```
    /// use umcl_data::sample::Sample;
    /// use umcl_data::schema::Schema;
    /// use umcl_data::sources::Prepared;
    ///
    /// let schema = Schema::chest_xray();
    /// let mut prepared = Prepared::default();
    /// for (id, view) in [("a", Some("PA")), ("b", Some("LATERAL")), ("c", None)] {
    ///     let mut s = Sample::new(id, "dicom", &schema);
    ///     if let Some(view) = view {
    ///         s.meta.insert("view".into(), view.into());
    ///     }
    ///     prepared.samples.push(s);
    /// }
    /// let left_out = prepared.keep_frontal();
    /// assert_eq!(prepared.samples.len(), 1);
    /// assert_eq!(left_out.get("LATERAL"), Some(&1));
    /// assert_eq!(left_out.get("(none)"), Some(&1));
    /// ```
    pub fn keep_frontal(&mut self) -> std::collections::BTreeMap<String, usize> {
        let mut left_out = std::collections::BTreeMap::new();
        self.samples.retain(|s| {
            let view = s.meta.get("view").map(String::as_str);
            let keep = view.is_some_and(is_frontal);
            if !keep {
                *left_out
                    .entry(view.unwrap_or("(none)").to_string())
                    .or_insert(0) += 1;
            }
            keep
        });
        left_out
    }
}

/// Whether a view name is frontal: `PA`, `AP`, `Frontal` (CheXpert), or one starting with
/// `PA ` / `AP ` (`AP AXIAL`, `PA LLD`), in any case. `LATERAL`, `LL`, `RL`, oblique views and
/// anything else are not.
pub fn is_frontal(view: &str) -> bool {
    let v = view.trim().to_ascii_uppercase();
    matches!(v.as_str(), "PA" | "AP" | "FRONTAL") || v.starts_with("PA ") || v.starts_with("AP ")
}

/// One adapter with its options: what `umcl data prepare` and the Python `umcl.prepare` build
/// from their arguments, so that both read a dataset the same way.
///
/// ```no_run
/// use umcl_data::schema::Schema;
/// use umcl_data::sources::{covid::CovidOptions, ReadOptions, Source};
///
/// let source = Source::CovidCxr(CovidOptions {
///     csv_file: "covid-cxr-512/metadata.csv".into(),
///     ..Default::default()
/// });
/// let prepared = source.prepare(&Schema::chest_xray(), ReadOptions::default())?;
/// println!("{} samples, {} rows skipped", prepared.samples.len(), prepared.skipped.len());
/// # Ok::<(), umcl_data::error::DataError>(())
/// ```
#[derive(Debug, Clone)]
pub enum Source {
    /// MIMIC-CXR-JPG.
    MimicCxr(mimic::MimicOptions),
    /// CheXpert.
    Chexpert(chexpert::ChexpertOptions),
    /// NIH ChestX-ray14.
    ChestXray14(chestxray14::Chestxray14Options),
    /// IU X-ray (OpenI) reports.
    IuXray(iu_xray::IuXrayOptions),
    /// The COVID-19 image data collection.
    CovidCxr(covid::CovidOptions),
    /// Any CSV or JSONL file.
    Generic(generic::GenericOptions),
    /// A folder of DICOM files.
    Dicom(dicom::DicomOptions),
}

impl Source {
    /// Which adapter this is.
    pub fn kind(&self) -> SourceKind {
        match self {
            Self::MimicCxr(_) => SourceKind::MimicCxr,
            Self::Chexpert(_) => SourceKind::Chexpert,
            Self::ChestXray14(_) => SourceKind::ChestXray14,
            Self::IuXray(_) => SourceKind::IuXray,
            Self::CovidCxr(_) => SourceKind::CovidCxr,
            Self::Generic(_) => SourceKind::Generic,
            Self::Dicom(_) => SourceKind::Dicom,
        }
    }

    /// Reads the dataset into samples of `schema`.
    pub fn prepare(&self, schema: &crate::schema::Schema, read: ReadOptions) -> Result<Prepared> {
        match self {
            Self::MimicCxr(o) => mimic::prepare(o, schema, read),
            Self::Chexpert(o) => chexpert::prepare(o, schema, read),
            Self::ChestXray14(o) => chestxray14::prepare(o, schema, read),
            Self::IuXray(o) => iu_xray::prepare(o, schema, read),
            Self::CovidCxr(o) => covid::prepare(o, schema, read),
            Self::Generic(o) => generic::prepare(o, schema, read),
            Self::Dicom(o) => dicom::prepare(o, schema, read),
        }
    }
}

/// The adapters, by the name `umcl data prepare --source NAME` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// MIMIC-CXR-JPG.
    MimicCxr,
    /// CheXpert.
    Chexpert,
    /// NIH ChestX-ray14.
    ChestXray14,
    /// IU X-ray (OpenI) reports.
    IuXray,
    /// The COVID-19 image data collection.
    CovidCxr,
    /// Any CSV or JSONL file.
    Generic,
    /// A folder of DICOM files.
    Dicom,
}

impl SourceKind {
    /// Every adapter.
    pub const ALL: [SourceKind; 7] = [
        Self::MimicCxr,
        Self::Chexpert,
        Self::ChestXray14,
        Self::IuXray,
        Self::CovidCxr,
        Self::Generic,
        Self::Dicom,
    ];

    /// The name on the command line and in the samples' `source` field.
    pub fn name(self) -> &'static str {
        match self {
            Self::MimicCxr => "mimic-cxr",
            Self::Chexpert => "chexpert",
            Self::ChestXray14 => "chestx-ray14",
            Self::IuXray => "iu-xray",
            Self::CovidCxr => "covid-cxr",
            Self::Generic => "generic",
            Self::Dicom => "dicom",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SourceKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        let wanted = s.to_ascii_lowercase().replace('_', "-");
        let alias = match wanted.as_str() {
            "mimic" | "mimic-cxr-jpg" => "mimic-cxr",
            "chestxray14" | "nih" | "cxr14" => "chestx-ray14",
            "iu" | "openi" => "iu-xray",
            "covid" | "covid-chestxray" => "covid-cxr",
            "csv" | "jsonl" => "generic",
            "dcm" | "dicom-folder" => "dicom",
            other => other,
        };
        Self::ALL
            .into_iter()
            .find(|k| k.name() == alias)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|k| k.name()).collect();
                DataError::Invalid(format!(
                    "unknown source `{s}` (known: {})",
                    names.join(", ")
                ))
            })
    }
}

/// Collects samples and bad rows, enforcing unique ids.
pub(crate) struct Collector {
    options: ReadOptions,
    prepared: Prepared,
    ids: HashMap<String, (PathBuf, u64)>,
}

impl Collector {
    pub(crate) fn new(options: ReadOptions) -> Collector {
        Collector {
            options,
            prepared: Prepared::default(),
            ids: HashMap::new(),
        }
    }

    /// Takes the outcome of one row read at `path:line`: a sample, nothing, or a bad row.
    pub(crate) fn accept(
        &mut self,
        path: &Path,
        line: u64,
        row: Result<Option<Sample>>,
    ) -> Result<()> {
        let result = row.and_then(|sample| match sample {
            None => Ok(()),
            Some(sample) => {
                if let Some((first_path, first_line)) = self.ids.get(&sample.id) {
                    let at = if first_path == path {
                        format!("line {first_line}")
                    } else {
                        format!("{}:{first_line}", first_path.display())
                    };
                    return Err(DataError::at(
                        path,
                        line,
                        format!("sample id `{}` repeats {at}", sample.id),
                    ));
                }
                self.ids
                    .insert(sample.id.clone(), (path.to_path_buf(), line));
                self.prepared.samples.push(sample);
                Ok(())
            }
        });
        match result {
            Err(err) if self.options.skip_bad => {
                self.prepared.skipped.push(err);
                Ok(())
            }
            other => other,
        }
    }

    /// The loop every CSV adapter runs: each row of `table` (read from `path`) goes through
    /// `read_row`, which makes it a sample, nothing, or an error at the row's line; an
    /// unreadable row is an error too. Errors stop the read, or are counted skips with
    /// `skip_bad`, as in [`accept`](Self::accept).
    pub(crate) fn read_rows(
        &mut self,
        table: &mut CsvTable,
        path: &Path,
        mut read_row: impl FnMut(&CsvRow<'_>, ReadOptions) -> Result<Option<Sample>>,
    ) -> Result<()> {
        self.read_rows_each(table, path, |row, options| {
            Ok(read_row(row, options)?.map(Ok).into_iter().collect())
        })
    }

    /// [`read_rows`](Self::read_rows) for rows that give any number of samples, each of
    /// which may fail alone (a report row with one sample per image), or none (a label file
    /// read into a table first). An error of the whole row stands for all of them.
    pub(crate) fn read_rows_each(
        &mut self,
        table: &mut CsvTable,
        path: &Path,
        mut read_row: impl FnMut(&CsvRow<'_>, ReadOptions) -> Result<Vec<Result<Sample>>>,
    ) -> Result<()> {
        let options = self.options;
        while let Some(row) = table.next_row()? {
            let (line, samples) = match row {
                Err(err) => (0, Err(err)),
                Ok(row) => (row.line, read_row(&row, options)),
            };
            match samples {
                Err(err) => self.accept(path, line, Err(err))?,
                Ok(samples) => {
                    for sample in samples {
                        self.accept(path, line, sample.map(Some))?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Prepared {
        self.prepared
    }
}

/// Checks an image path when asked to; a missing file is an error at `path:line`.
pub(crate) fn check_image(
    options: ReadOptions,
    image: PathBuf,
    path: &Path,
    line: u64,
) -> Result<PathBuf> {
    if options.check_images && !image.is_file() {
        let what = if image.is_dir() {
            "is a folder, not an image file"
        } else {
            "not found"
        };
        return Err(DataError::at(
            path,
            line,
            format!("image file {} {what}", image.display()),
        ));
    }
    Ok(image)
}

/// Opens a file for reading, decompressing it when its name ends in `.gz`.
pub(crate) fn open_maybe_gz(path: &Path) -> Result<Box<dyn Read>> {
    let file = File::open(path).map_err(|err| DataError::io(path, err))?;
    if path.extension().is_some_and(|e| e == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

/// The directory a file lies in (`.` for a bare file name).
pub(crate) fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The byte offsets of the newlines and double quotes of a file, as far as it has been read.
#[derive(Default)]
struct Marks {
    newlines: Vec<u64>,
    quotes: Vec<u64>,
    /// Bytes read so far.
    len: u64,
    /// Whether the end of the file was reached.
    eof: bool,
}

/// A reader that notes where the newlines and quotes are in what it passes on.
struct MarkingReader {
    inner: Box<dyn Read>,
    offset: u64,
    marks: Rc<RefCell<Marks>>,
}

impl Read for MarkingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut marks = self.marks.borrow_mut();
        for (i, &b) in buf[..n].iter().enumerate() {
            match b {
                b'\n' => marks.newlines.push(self.offset + i as u64),
                b'"' => marks.quotes.push(self.offset + i as u64),
                _ => {}
            }
        }
        self.offset += n as u64;
        marks.len = self.offset;
        marks.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

/// A CSV file with a header row, read record by record with 1-based line numbers.
///
/// Line numbers are counted here rather than taken from the csv crate, whose line count lags
/// one behind in files with CRLF line ends. A quote left open swallows the rest of the file
/// into one field, which the csv crate accepts; here it is a bad row at the line it opens on.
pub(crate) struct CsvTable {
    path: PathBuf,
    reader: csv::Reader<MarkingReader>,
    headers: Vec<String>,
    marks: Rc<RefCell<Marks>>,
}

/// One CSV record and the line it starts on.
pub(crate) struct CsvRow<'t> {
    table: &'t CsvTable,
    record: csv::ByteRecord,
    /// The line the record starts on.
    pub(crate) line: u64,
}

impl CsvTable {
    pub(crate) fn open(path: &Path) -> Result<CsvTable> {
        Self::open_with(path, b',')
    }

    pub(crate) fn open_with(path: &Path, delimiter: u8) -> Result<CsvTable> {
        let marks = Rc::new(RefCell::new(Marks::default()));
        let input = MarkingReader {
            inner: open_maybe_gz(path)?,
            offset: 0,
            marks: Rc::clone(&marks),
        };
        let mut reader = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .has_headers(true)
            .flexible(false)
            .from_reader(input);
        let raw = match reader.byte_headers() {
            Ok(raw) => raw.clone(),
            Err(err) => return Err(csv_error(path, err, |_| 1)),
        };
        if raw.is_empty() {
            return Err(DataError::file(
                path,
                "empty file, expected a CSV header row",
            ));
        }
        let mut headers = Vec::with_capacity(raw.len());
        for field in raw.iter() {
            let header = std::str::from_utf8(field)
                .map_err(|_| DataError::at(path, 1, "the header row is not valid UTF-8"))?;
            headers.push(header.trim().to_string());
        }
        Ok(CsvTable {
            path: path.to_path_buf(),
            reader,
            headers,
            marks,
        })
    }

    /// The index of a column the adapter needs.
    pub(crate) fn column(&self, name: &str) -> Result<usize> {
        self.optional_column(name).ok_or_else(|| {
            DataError::file(
                &self.path,
                format!(
                    "missing column `{name}` (the header has: {})",
                    self.headers.join(", ")
                ),
            )
        })
    }

    /// The index of a column that may be absent.
    pub(crate) fn optional_column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    pub(crate) fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The next record, or a bad row at its line; `Ok(None)` at the end of the file. The outer
    /// error is an I/O failure that ends reading (never a row to skip).
    pub(crate) fn next_row(&mut self) -> Result<Option<Result<CsvRow<'_>>>> {
        let mut record = csv::ByteRecord::new();
        match self.reader.read_byte_record(&mut record) {
            Ok(false) => Ok(None),
            Ok(true) => {
                let start = record.position().map_or(0, |p| p.byte());
                let line = self.line_at(start);
                if self.quote_open_to_eof(start) {
                    return Ok(Some(Err(self.unclosed_quote(start))));
                }
                Ok(Some(Ok(CsvRow {
                    table: self,
                    record,
                    line,
                })))
            }
            Err(err) if matches!(err.kind(), csv::ErrorKind::Io(_)) => {
                Err(csv_error(&self.path, err, |p| self.line_of(p)))
            }
            Err(err) => {
                let start = err.position().map(|p| p.byte());
                if let Some(start) = start.filter(|&b| self.quote_open_to_eof(b)) {
                    return Ok(Some(Err(self.unclosed_quote(start))));
                }
                Ok(Some(Err(csv_error(&self.path, err, |p| self.line_of(p)))))
            }
        }
    }

    /// The 1-based line a record starts on: one more than the newlines before its first byte.
    /// (A record after a CRLF starts, for the csv crate, at the `\n`, hence `<=`.)
    fn line_of(&self, position: &csv::Position) -> u64 {
        self.line_at(position.byte())
    }

    fn line_at(&self, byte: u64) -> u64 {
        let marks = self.marks.borrow();
        marks.newlines.partition_point(|&offset| offset <= byte) as u64 + 1
    }

    fn unclosed_quote(&self, start: u64) -> DataError {
        DataError::at(
            &self.path,
            self.line_at(start),
            "a quoted field is never closed: the row runs to the end of the file",
        )
    }

    /// Whether the record that starts at `start` runs to the end of the file with an odd
    /// number of `"` in it: a quote left open.
    fn quote_open_to_eof(&self, start: u64) -> bool {
        let end = self.reader.position().byte();
        let marks = self.marks.borrow();
        if !(marks.eof && end >= marks.len) {
            return false;
        }
        let quotes = marks.quotes.partition_point(|&offset| offset < end)
            - marks.quotes.partition_point(|&offset| offset < start);
        quotes % 2 == 1
    }
}

impl CsvRow<'_> {
    /// The trimmed text of field `col`; a non-UTF-8 field is an error naming line and column.
    pub(crate) fn get(&self, col: usize) -> Result<&str> {
        let bytes = self.record.get(col).unwrap_or_default();
        std::str::from_utf8(bytes).map(str::trim).map_err(|err| {
            self.error(format!(
                "column `{}` is not valid UTF-8 (bad byte at offset {})",
                self.table.headers[col],
                err.valid_up_to()
            ))
        })
    }

    /// The field `col`, or an error when it is empty.
    pub(crate) fn required(&self, col: usize) -> Result<&str> {
        let value = self.get(col)?;
        if value.is_empty() {
            return Err(self.error(format!("column `{}` is empty", self.table.headers[col])));
        }
        Ok(value)
    }

    /// A label state in CheXpert notation in column `col`.
    pub(crate) fn label_state(&self, col: usize) -> Result<LabelState> {
        let value = self.get(col)?;
        value
            .parse()
            .map_err(|err| self.error(format!("column `{}`: {err}", self.table.headers[col])))
    }

    /// An error at this row's line.
    pub(crate) fn error(&self, message: impl Into<String>) -> DataError {
        DataError::at(&self.table.path, self.line, message)
    }
}

fn csv_error(path: &Path, err: csv::Error, line_of: impl Fn(&csv::Position) -> u64) -> DataError {
    let line = err.position().map(line_of);
    let message = match err.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("wrong number of fields: {len}, the header has {expected_len}"),
        csv::ErrorKind::Utf8 { err, .. } => format!("not valid UTF-8 (field {})", err.field() + 1),
        csv::ErrorKind::Io(io) => {
            return DataError::io(path, std::io::Error::new(io.kind(), io.to_string()))
        }
        _ => format!("malformed CSV: {err}"),
    };
    match line {
        Some(line) => DataError::at(path, line, message),
        None => DataError::file(path, message),
    }
}

/// The optional columns kept in a sample's `meta`, as (meta key, column) pairs for those the
/// table has.
pub(crate) fn meta_columns<'k>(
    table: &CsvTable,
    wanted: &[(&'k str, &str)],
) -> Vec<(&'k str, usize)> {
    wanted
        .iter()
        .filter_map(|&(key, name)| table.optional_column(name).map(|col| (key, col)))
        .collect()
}

/// Copies the non-empty `meta` columns of `row` into `sample.meta`.
pub(crate) fn read_meta(
    row: &CsvRow<'_>,
    columns: &[(&str, usize)],
    sample: &mut Sample,
) -> Result<()> {
    for &(key, col) in columns {
        let value = row.get(col)?;
        if !value.is_empty() {
            sample.meta.insert(key.to_string(), value.to_string());
        }
    }
    Ok(())
}
