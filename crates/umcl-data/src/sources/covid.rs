//! The COVID-19 image data collection (`metadata.csv`, Cohen et al. 2020).
//!
//! One X-ray per row. Text is `clinical_notes` (empty: no text, not an error), whole or, with
//! [`CovidNotes::Imaging`], only its imaging part ([`Labeler::imaging_part`]). The patient is
//! `patientid`. The image is the `image` column (as in `shared/data/covid-cxr-512`) or else
//! `images/` + `filename`, relative to the CSV's directory. A row whose `modality` is not X-ray
//! (CT in the full collection) is a bad row: an error, or skipped with `skip_bad`. The sample id
//! is the image file's stem, so a row repeating an earlier row's image file is a bad row too
//! (the 2020-06-22 snapshot has five, under a second patient id).
//!
//! Labels come from `finding` through the schema's `covid-cxr` table, each part of a combined
//! finding (`COVID-19, ARDS`, `Pneumonia/Viral/COVID-19`) looked up on its own: COVID-19, SARS,
//! MERS, influenza, varicella, and the bacterial and fungal pneumonias (Streptococcus,
//! Klebsiella, Legionella, Mycoplasma, Pneumocystis, E.Coli, Lipoid, ...) are pneumonia
//! positive; `No Finding` is no_finding positive; ARDS is lung_opacity positive; `todo` (not yet
//! labelled) leaves every label unmentioned. An unknown finding is a bad row, and so is a row
//! with no label and no text (a `todo` finding with no notes, or with no imaging sentence in
//! them under [`CovidNotes::Imaging`]): nothing to train on. The raw string is kept in
//! `meta["finding"]`, with `view`, `offset`, `sex`, `age` and `license` where present.

use std::path::{Path, PathBuf};

use super::{
    check_image, dir_of, meta_columns, read_meta, Collector, CsvTable, Prepared, ReadOptions,
};
use crate::error::Result;
use crate::labeler::Labeler;
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};

/// Where the COVID-19 collection's files are, and which part of the notes is the text.
#[derive(Debug, Clone, Default)]
pub struct CovidOptions {
    /// `metadata.csv`.
    pub csv_file: PathBuf,
    /// The folder image paths are relative to (default: the CSV's directory).
    pub image_root: Option<PathBuf>,
    /// Which part of `clinical_notes` becomes the sample's text.
    pub notes: CovidNotes,
}

/// Which part of a row's `clinical_notes` becomes the sample's text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CovidNotes {
    /// The whole note (history, course, treatment and imaging).
    #[default]
    Full,
    /// The sentences the built-in labeler reads as radiological ([`Labeler::imaging_part`]);
    /// a note without any leaves the sample without text (a bad row if it has no label either).
    Imaging,
}

/// Reads the collection's `metadata.csv`.
pub fn prepare(options: &CovidOptions, schema: &Schema, read: ReadOptions) -> Result<Prepared> {
    let csv_path = &options.csv_file;
    let mut table = CsvTable::open(csv_path)?;
    let patient_col = table.column("patientid")?;
    let finding_col = table.column("finding")?;
    let notes_col = table.column("clinical_notes")?;
    let image_col = table.optional_column("image");
    let filename_col = table.column("filename")?;
    let modality_col = table.optional_column("modality");
    let meta_cols = meta_columns(
        &table,
        &[
            ("view", "view"),
            ("offset", "offset"),
            ("sex", "sex"),
            ("age", "age"),
            ("license", "license"),
        ],
    );
    let root = options
        .image_root
        .clone()
        .unwrap_or_else(|| dir_of(csv_path));
    let labeler = (options.notes == CovidNotes::Imaging).then(Labeler::builtin);
    let mut collector = Collector::new(read);
    collector.read_rows(&mut table, csv_path, |row, read| {
            if let Some(col) = modality_col {
                let modality = row.get(col)?;
                if !modality.is_empty() && !modality.eq_ignore_ascii_case("x-ray") {
                    return Err(row.error(format!(
                        "modality `{modality}` is not an X-ray (pass --skip-bad to leave such rows out)"
                    )));
                }
            }
            let rel = match image_col {
                Some(col) => row.required(col)?.to_string(),
                None => format!("images/{}", row.required(filename_col)?),
            };
            let id = Path::new(&rel)
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or(&rel)
                .to_string();
            let mut sample = Sample::new(id, "covid-cxr", schema);
            sample.patient_id = Some(row.required(patient_col)?.to_string());
            sample.image = Some(check_image(read, root.join(&rel), csv_path, row.line)?);
            let notes = row.get(notes_col)?;
            match &labeler {
                Some(labeler) => sample.set_text(&labeler.imaging_part(notes)),
                None => sample.set_text(notes),
            }
            let finding = row.required(finding_col)?;
            for part in finding
                .split([',', '/'])
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let targets = schema.lookup("covid-cxr", part).ok_or_else(|| {
                    row.error(format!(
                        "unknown finding `{part}` in `finding` (`{finding}`)"
                    ))
                })?;
                for &index in targets {
                    sample.labels[index] = LabelState::Positive;
                }
            }
            if sample.text.is_none() && !sample.has_labels() {
                let why = match options.notes {
                    CovidNotes::Full => "the row has no clinical notes",
                    CovidNotes::Imaging => "its clinical notes have no imaging sentence",
                };
                return Err(row.error(format!(
                    "nothing to train on: finding `{finding}` gives no label and {why} \
                     (pass --skip-bad to leave such rows out)"
                )));
            }
            sample.meta.insert("finding".into(), finding.to_string());
            read_meta(row, &meta_cols, &mut sample)?;
            Ok(Some(sample))
    })?;
    Ok(collector.finish())
}
