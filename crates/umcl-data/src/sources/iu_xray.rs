//! IU X-ray (OpenI) reports, as the CSV `uid, image_ids, indication, findings, impression,
//! mesh_major, mesh_minor` (see `shared/data/README.md`).
//!
//! Text is the findings and impression sections. Labels come from the MeSH index terms: the head
//! term (before the first `/`) of each `;`-separated term in `mesh_major` and `mesh_minor` that
//! the schema's `iu-xray` table names is positive. Indexers did not record negated findings, so
//! every other label is unmentioned. The patient is the `uid` (the collection names no other).
//!
//! Without [`IuXrayOptions::image_root`] each report is one sample (id `iu-UID`) with no image;
//! with it, each image id is one sample (id = the image id) sharing its report's text and labels.

use std::path::PathBuf;

use super::{check_image, Collector, CsvTable, Prepared, ReadOptions};
use crate::error::Result;
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};

/// Where the IU X-ray files are.
#[derive(Debug, Clone, Default)]
pub struct IuXrayOptions {
    /// The reports CSV.
    pub csv_file: PathBuf,
    /// A folder holding the images as `IMAGE_ID.png` (or `.jpg`); none: reports only.
    pub image_root: Option<PathBuf>,
}

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Reads the IU X-ray reports CSV.
pub fn prepare(options: &IuXrayOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let csv_path = &options.csv_file;
    let mut table = CsvTable::open(csv_path)?;
    let uid_col = table.column("uid")?;
    let images_col = table.column("image_ids")?;
    let findings_col = table.column("findings")?;
    let impression_col = table.column("impression")?;
    let mesh_cols = [table.column("mesh_major")?, table.column("mesh_minor")?];
    let indication_col = table.optional_column("indication");
    let mut collector = Collector::new(read);
    collector.read_rows_each(&mut table, csv_path, |row, read| {
        let uid = row.required(uid_col)?;
        let mut sample = Sample::new(format!("iu-{uid}"), "iu-xray", schema);
        sample.patient_id = Some(uid.to_string());
        let text = [row.get(findings_col)?, row.get(impression_col)?]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        sample.set_text(&text);
        for col in mesh_cols {
            for term in row.get(col)?.split(';') {
                let head = term.split('/').next().unwrap_or_default().trim();
                if head.is_empty() {
                    continue;
                }
                for &index in schema.lookup("iu-xray", head).unwrap_or_default() {
                    sample.labels[index] = LabelState::Positive;
                }
            }
        }
        if let Some(col) = indication_col {
            let indication = row.get(col)?;
            if !indication.is_empty() {
                sample
                    .meta
                    .insert("indication".into(), indication.to_string());
            }
        }
        let image_ids: Vec<String> = row
            .get(images_col)?
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let Some(root) = &options.image_root else {
            // Reports only: one sample per report, its images named in the metadata.
            if !image_ids.is_empty() {
                sample.meta.insert("image_ids".into(), image_ids.join(";"));
            }
            return Ok(vec![Ok(sample)]);
        };
        if image_ids.is_empty() {
            return Err(row.error("no `image_ids`"));
        }
        // One sample per image, each checked on its own.
        Ok(image_ids
            .into_iter()
            .map(|image_id| {
                let found = EXTENSIONS
                    .iter()
                    .map(|ext| root.join(format!("{image_id}.{ext}")))
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| root.join(format!("{image_id}.png")));
                check_image(read, found, csv_path, row.line).map(|image| {
                    let mut per_image = sample.clone();
                    per_image.id = image_id;
                    per_image.image = Some(image);
                    per_image.meta.insert("report".into(), sample.id.clone());
                    per_image
                })
            })
            .collect())
    })?;
    Ok(collector.finish())
}
