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
    while let Some(row) = table.next_row()? {
        let Ok(row) = row else {
            collector.accept(csv_path, 0, row.map(|_| None))?;
            continue;
        };
        let line = row.line;
        let report = (|| {
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
            Ok((sample, image_ids))
        })();
        match (report, &options.image_root) {
            (Err(err), _) => collector.accept(csv_path, line, Err(err))?,
            (Ok((mut sample, image_ids)), None) => {
                if !image_ids.is_empty() {
                    sample.meta.insert("image_ids".into(), image_ids.join(";"));
                }
                collector.accept(csv_path, line, Ok(Some(sample)))?;
            }
            (Ok((sample, image_ids)), Some(root)) => {
                if image_ids.is_empty() {
                    collector.accept(csv_path, line, Err(row.error("no `image_ids`")))?;
                }
                for image_id in image_ids {
                    let found = EXTENSIONS
                        .iter()
                        .map(|ext| root.join(format!("{image_id}.{ext}")))
                        .find(|p| p.is_file())
                        .unwrap_or_else(|| root.join(format!("{image_id}.png")));
                    let per_image = check_image(read, found, csv_path, line).map(|image| {
                        let mut per_image = sample.clone();
                        per_image.id = image_id.clone();
                        per_image.image = Some(image);
                        per_image.meta.insert("report".into(), sample.id.clone());
                        Some(per_image)
                    });
                    collector.accept(csv_path, line, per_image)?;
                }
            }
        }
    }
    Ok(collector.finish())
}
