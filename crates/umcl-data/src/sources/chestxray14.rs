//! NIH ChestX-ray14 (`Data_Entry_2017.csv`): one image per row, `Finding Labels` a
//! `|`-separated list of the 14 findings or `No Finding`.
//!
//! A named finding is positive; every other key that the schema's `chestx-ray14` table reaches
//! is negative (the dataset states the absence of the findings it does not name); keys the
//! dataset has no name for (fracture, support devices, ...) stay unmentioned. Mass and Nodule
//! both map to lung_lesion, Infiltration to lung_opacity, Pleural_Thickening to pleural_other.
//!
//! Images are looked up by file name under [`Chestxray14Options::image_root`] (default: the
//! CSV's directory), in `images/` or in the `images_NNN/images/` folders of the NIH download.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::{
    check_image, dir_of, meta_columns, read_meta, Collector, CsvTable, Prepared, ReadOptions,
};
use crate::error::{DataError, Result};
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};

/// Where the ChestX-ray14 files are.
#[derive(Debug, Clone, Default)]
pub struct Chestxray14Options {
    /// `Data_Entry_2017.csv` (or `Data_Entry_2017_v2020.csv`).
    pub csv_file: PathBuf,
    /// The folder to find images under (default: the CSV's directory).
    pub image_root: Option<PathBuf>,
}

/// File name -> path of every file up to three folders below `root`.
fn index_images(root: &Path) -> Result<HashMap<String, PathBuf>> {
    let mut found = HashMap::new();
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if depth == 0 => return Err(DataError::io(&dir, err)),
            Err(_) => continue,
        };
        for entry in entries {
            let entry = entry.map_err(|err| DataError::io(&dir, err))?;
            let path = entry.path();
            if path.is_dir() {
                if depth < 3 {
                    stack.push((path, depth + 1));
                }
            } else if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
                found.entry(name.to_string()).or_insert(path);
            }
        }
    }
    Ok(found)
}

/// Reads `Data_Entry_2017.csv`.
pub fn prepare(
    options: &Chestxray14Options,
    schema: &Schema,
    read: ReadOptions,
) -> Result<Prepared> {
    let csv_path = &options.csv_file;
    let mut table = CsvTable::open(csv_path)?;
    let image_col = table.column("Image Index")?;
    let labels_col = table.column("Finding Labels")?;
    let patient_col = table.column("Patient ID")?;
    let meta_cols = meta_columns(
        &table,
        &[
            ("follow_up", "Follow-up #"),
            ("age", "Patient Age"),
            ("sex", "Patient Gender"),
            ("view", "View Position"),
        ],
    );
    let covered = schema.dataset_coverage("chestx-ray14");
    let root = options
        .image_root
        .clone()
        .unwrap_or_else(|| dir_of(csv_path));
    let index = if read.check_images {
        index_images(&root)?
    } else {
        HashMap::new()
    };
    let mut collector = Collector::new(read);
    collector.read_rows(&mut table, csv_path, |row, read| {
        let name = row.required(image_col)?;
        let mut sample = Sample::new(name, "chestx-ray14", schema);
        sample.patient_id = Some(row.required(patient_col)?.to_string());
        let image = index
            .get(name)
            .cloned()
            .unwrap_or_else(|| root.join("images").join(name));
        sample.image = Some(check_image(read, image, csv_path, row.line)?);
        for &index in &covered {
            sample.labels[index] = LabelState::Negative;
        }
        let findings = row.required(labels_col)?;
        for finding in findings.split('|').map(str::trim).filter(|f| !f.is_empty()) {
            let targets = schema.lookup("chestx-ray14", finding).ok_or_else(|| {
                row.error(format!("unknown finding `{finding}` in `Finding Labels`"))
            })?;
            for &index in targets {
                sample.labels[index] = LabelState::Positive;
            }
        }
        read_meta(row, &meta_cols, &mut sample)?;
        Ok(Some(sample))
    })?;
    Ok(collector.finish())
}
