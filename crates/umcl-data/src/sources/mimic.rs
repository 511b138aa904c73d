//! MIMIC-CXR-JPG: `mimic-cxr-2.0.0-metadata.csv` (one row per image), a label file
//! (`mimic-cxr-2.0.0-chexpert.csv` or `-negbio.csv`, one row per study, the 14 CheXpert
//! observations in `1/0/-1/blank`), and the free-text reports of MIMIC-CXR
//! (`files/pXX/pSUBJECT/sSTUDY.txt`). The CSVs may be gzipped (`.csv.gz`, as distributed).
//!
//! One sample per image (id = `dicom_id`, patient = `subject_id`), with its study's labels (all
//! unmentioned for a study the label file lacks) and its study's report: the findings and
//! impression sections, or the last section when the report has neither.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::chexpert::{observation_columns, read_observations};
use super::{check_image, Collector, CsvTable, Prepared, ReadOptions};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};

/// Which of MIMIC-CXR-JPG's two label files to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MimicLabels {
    /// `mimic-cxr-2.0.0-chexpert.csv`, from the CheXpert labeler.
    #[default]
    Chexpert,
    /// `mimic-cxr-2.0.0-negbio.csv`, from NegBio.
    Negbio,
}

/// Where the MIMIC-CXR-JPG files are.
#[derive(Debug, Clone, Default)]
pub struct MimicOptions {
    /// The MIMIC-CXR-JPG folder: the CSVs and `files/`.
    pub root: PathBuf,
    /// The metadata CSV (default: `root/mimic-cxr-2.0.0-metadata.csv[.gz]`).
    pub metadata: Option<PathBuf>,
    /// The label CSV (default: `root/mimic-cxr-2.0.0-{chexpert,negbio}.csv[.gz]`).
    pub labels: Option<PathBuf>,
    /// Which label file the default name points at.
    pub label_set: MimicLabels,
    /// The MIMIC-CXR reports folder (holding `files/`, or `files/` itself); none: no text.
    pub reports: Option<PathBuf>,
}

/// `root/name.csv`, or `root/name.csv.gz` when only that exists.
fn default_csv(root: &Path, name: &str) -> PathBuf {
    let plain = root.join(format!("{name}.csv"));
    let gz = root.join(format!("{name}.csv.gz"));
    if !plain.exists() && gz.exists() {
        gz
    } else {
        plain
    }
}

/// The `files/pXX/pSUBJECT/sSTUDY` folder of a study, relative to a `files/` parent.
fn study_dir(subject: &str, study: &str) -> PathBuf {
    let group: String = subject.chars().take(2).collect();
    PathBuf::from("files")
        .join(format!("p{group}"))
        .join(format!("p{subject}"))
        .join(format!("s{study}"))
}

/// A numeric MIMIC id (`subject_id`, `study_id`) from column `col`, without a `p`/`s` prefix.
fn mimic_id(row: &super::CsvRow<'_>, col: usize, name: &str) -> Result<String> {
    let value = row.required(col)?;
    let digits = value.trim_start_matches(['p', 's']);
    let digits = digits.strip_suffix(".0").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(row.error(format!("`{name}` is `{value}`, expected a number")));
    }
    Ok(digits.to_string())
}

/// Reads the labels file into (subject, study) -> label vector.
fn read_labels(
    path: &Path,
    schema: &Schema,
    collector: &mut Collector,
) -> Result<HashMap<(String, String), Vec<LabelState>>> {
    let mut table = CsvTable::open(path)?;
    let subject_col = table.column("subject_id")?;
    let study_col = table.column("study_id")?;
    let columns = observation_columns(&table, schema)?;
    let mut labels = HashMap::new();
    collector.read_rows_each(&mut table, path, |row, _| {
        let key = (
            mimic_id(row, subject_col, "subject_id")?,
            mimic_id(row, study_col, "study_id")?,
        );
        let mut sample = Sample::new("", "mimic-cxr", schema);
        read_observations(row, &columns, &mut sample)?;
        if labels.contains_key(&key) {
            return Err(row.error(format!("study s{} appears twice", key.1)));
        }
        labels.insert(key, sample.labels);
        // The labels join the image rows later; this file gives no samples itself.
        Ok(Vec::new())
    })?;
    Ok(labels)
}

/// Reads MIMIC-CXR-JPG.
pub fn prepare(options: &MimicOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let root = &options.root;
    let metadata_path = options
        .metadata
        .clone()
        .unwrap_or_else(|| default_csv(root, "mimic-cxr-2.0.0-metadata"));
    let labels_path = options.labels.clone().unwrap_or_else(|| {
        default_csv(
            root,
            match options.label_set {
                MimicLabels::Chexpert => "mimic-cxr-2.0.0-chexpert",
                MimicLabels::Negbio => "mimic-cxr-2.0.0-negbio",
            },
        )
    });
    let reports_root = options.reports.as_ref().map(|dir| {
        if dir.join("files").is_dir() {
            dir.clone()
        } else {
            // `dir` is `files/` itself: study paths start with `files/`.
            dir.parent().map(Path::to_path_buf).unwrap_or_default()
        }
    });
    let mut collector = Collector::new(read);
    let labels = read_labels(&labels_path, schema, &mut collector)?;

    let mut table = CsvTable::open(&metadata_path)?;
    let dicom_col = table.column("dicom_id")?;
    let subject_col = table.column("subject_id")?;
    let study_col = table.column("study_id")?;
    let view_col = table.optional_column("ViewPosition");
    // Images of one study are adjacent in the metadata file: read each report once.
    let mut last_report: Option<(String, Result<Option<String>>)> = None;
    collector.read_rows(&mut table, &metadata_path, |row, read| {
        let dicom = row.required(dicom_col)?;
        let subject = mimic_id(row, subject_col, "subject_id")?;
        let study = mimic_id(row, study_col, "study_id")?;
        let mut sample = Sample::new(dicom, "mimic-cxr", schema);
        let dir = study_dir(&subject, &study);
        sample.image = Some(check_image(
            read,
            root.join(&dir).join(format!("{dicom}.jpg")),
            &metadata_path,
            row.line,
        )?);
        if let Some(reports_root) = &reports_root {
            if last_report.as_ref().map(|(s, _)| s) != Some(&study) {
                let path = reports_root.join(dir.with_extension("txt"));
                last_report = Some((study.clone(), read_report(&path)));
            }
            if let Some((_, report)) = &last_report {
                match report {
                    Ok(text) => sample.text = text.clone(),
                    Err(err) => return Err(row.error(err.to_string())),
                }
            }
        }
        if let Some(states) = labels.get(&(subject.clone(), study.clone())) {
            sample.labels = states.clone();
        }
        sample.patient_id = Some(subject);
        sample.meta.insert("study_id".into(), study);
        if let Some(col) = view_col {
            let view = row.get(col)?;
            if !view.is_empty() {
                sample.meta.insert("view".into(), view.to_string());
            }
        }
        Ok(Some(sample))
    })?;
    Ok(collector.finish())
}

/// Reads one report file and extracts its text ([`report_text`]).
fn read_report(path: &Path) -> Result<Option<String>> {
    let bytes = std::fs::read(path).map_err(|err| DataError::io(path, err))?;
    let text = String::from_utf8(bytes).map_err(|err| {
        DataError::file(
            path,
            format!(
                "not valid UTF-8 (bad byte at offset {})",
                err.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(report_text(&text))
}

/// The sections of a free-text radiology report, by their upper-case `NAME:` headers, in order;
/// text before the first header is under the name `""`. Whitespace inside a section is
/// collapsed to single spaces.
pub fn report_sections(report: &str) -> Vec<(String, String)> {
    let mut sections: Vec<(String, String)> = vec![(String::new(), String::new())];
    for line in report.lines() {
        let trimmed = line.trim_start();
        let header = trimmed.split_once(':').filter(|(name, _)| {
            let name = name.trim();
            name.len() >= 3
                && name.chars().any(|c| c.is_ascii_uppercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == ' ' || c == '&' || c == '/')
        });
        let content = match header {
            Some((name, rest)) => {
                sections.push((name.trim().to_string(), String::new()));
                rest
            }
            None => trimmed,
        };
        if let Some((_, text)) = sections.last_mut() {
            for word in content.split_whitespace() {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(word);
            }
        }
    }
    sections.retain(|(name, text)| !name.is_empty() || !text.is_empty());
    sections
}

/// The training text of a report: the FINDINGS and IMPRESSION sections (one line each), else the
/// last paragraph (as MIMIC-CXR's own section script does); `None` for a report with no text.
///
/// ```
/// use umcl_data::sources::mimic::report_text;
/// let report = "  FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n FINDINGS:  Heart size is\n normal.\n\n IMPRESSION:  No acute process.\n";
/// assert_eq!(report_text(report).unwrap(), "Heart size is normal.\nNo acute process.");
/// ```
pub fn report_text(report: &str) -> Option<String> {
    let sections = report_sections(report);
    let find = |names: &[&str]| {
        sections
            .iter()
            .rev()
            .find(|(name, text)| names.contains(&name.as_str()) && !text.is_empty())
            .map(|(_, text)| text.as_str())
    };
    let findings = find(&["FINDINGS", "FINDINGS AND IMPRESSION"]);
    let impression = find(&["IMPRESSION", "CONCLUSION", "CONCLUSIONS"]);
    let parts: Vec<&str> = findings.into_iter().chain(impression).collect();
    if !parts.is_empty() {
        return Some(parts.join("\n"));
    }
    last_paragraph(report)
}

/// The last block of non-blank lines, whitespace collapsed.
fn last_paragraph(report: &str) -> Option<String> {
    let mut last: Vec<&str> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in report.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                last = std::mem::take(&mut current);
            }
        } else {
            current.extend(line.split_whitespace());
        }
    }
    if !current.is_empty() {
        last = current;
    }
    (!last.is_empty()).then(|| last.join(" "))
}
