//! CheXpert (`train.csv`, `valid.csv`): one image per row, 14 observations in `1/0/-1/blank`.
//!
//! The patient is the `patientNNNNN` component of `Path`; the sample id is `Path` itself. Images
//! are found under the directory above the CSV's when `Path` starts with the CSV's directory
//! name (`CheXpert-v1.0-small/train/...` next to `CheXpert-v1.0-small/train.csv`), else under
//! the CSV's directory, or under [`ChexpertOptions::image_root`].

use std::path::{Path, PathBuf};

use super::{
    check_image, dir_of, meta_columns, read_meta, Collector, CsvRow, CsvTable, Prepared,
    ReadOptions,
};
use crate::error::Result;
use crate::sample::Sample;
use crate::schema::Schema;

/// The 14 observation columns of CheXpert (and of MIMIC-CXR-JPG's chexpert and negbio files).
pub const CHEXPERT_COLUMNS: [&str; 14] = [
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
];

/// Where the CheXpert files are.
#[derive(Debug, Clone, Default)]
pub struct ChexpertOptions {
    /// `train.csv`, `valid.csv` or both.
    pub csv_files: Vec<PathBuf>,
    /// The directory `Path` is relative to (default: found from the CSV's location).
    pub image_root: Option<PathBuf>,
}

/// The label columns of a CheXpert-style table, as (column, label indices) pairs; every one of
/// the 14 observation columns must be there.
pub(crate) fn observation_columns(
    table: &CsvTable,
    schema: &Schema,
) -> Result<Vec<(usize, Vec<usize>)>> {
    let mut columns = Vec::new();
    for name in CHEXPERT_COLUMNS {
        let col = table.column(name)?;
        if let Some(targets) = schema.lookup("chexpert", name) {
            columns.push((col, targets.to_vec()));
        }
    }
    Ok(columns)
}

/// Fills `sample.labels` from the observation columns of `row`.
pub(crate) fn read_observations(
    row: &CsvRow<'_>,
    columns: &[(usize, Vec<usize>)],
    sample: &mut Sample,
) -> Result<()> {
    for (col, targets) in columns {
        let state = row.label_state(*col)?;
        for &index in targets {
            sample.labels[index] = sample.labels[index].merge(state);
        }
    }
    Ok(())
}

/// Reads CheXpert CSVs.
pub fn prepare(options: &ChexpertOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let mut collector = Collector::new(read);
    for csv_path in &options.csv_files {
        let mut table = CsvTable::open(csv_path)?;
        let path_col = table.column("Path")?;
        let labels = observation_columns(&table, schema)?;
        let meta_cols = meta_columns(
            &table,
            &[
                ("sex", "Sex"),
                ("age", "Age"),
                ("view", "Frontal/Lateral"),
                ("projection", "AP/PA"),
            ],
        );
        let csv_dir = dir_of(csv_path);
        collector.read_rows(&mut table, csv_path, |row, read| {
            let rel = row.required(path_col)?;
            let mut sample = Sample::new(rel, "chexpert", schema);
            let patient = Path::new(rel)
                .components()
                .filter_map(|c| c.as_os_str().to_str())
                .find(|c| c.starts_with("patient"))
                .ok_or_else(|| row.error(format!("no `patientNNNNN` component in Path `{rel}`")))?;
            sample.patient_id = Some(patient.to_string());
            let root = options
                .image_root
                .clone()
                .unwrap_or_else(|| image_root_for(&csv_dir, rel));
            sample.image = Some(check_image(read, root.join(rel), csv_path, row.line)?);
            read_observations(row, &labels, &mut sample)?;
            read_meta(row, &meta_cols, &mut sample)?;
            Ok(Some(sample))
        })?;
    }
    Ok(collector.finish())
}

/// The directory a CheXpert `Path` is relative to: the CSV directory's parent when `Path`
/// starts with the CSV directory's name, else the CSV directory.
fn image_root_for(csv_dir: &Path, rel: &str) -> PathBuf {
    let first = Path::new(rel).components().next();
    let absolute = std::path::absolute(csv_dir).unwrap_or_else(|_| csv_dir.to_path_buf());
    match (first, absolute.file_name(), absolute.parent()) {
        (Some(first), Some(name), Some(parent)) if first.as_os_str() == name => {
            parent.to_path_buf()
        }
        _ => csv_dir.to_path_buf(),
    }
}
