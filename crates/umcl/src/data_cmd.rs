//! `umcl data prepare|stats|split|convert`: unified manifests from public datasets, their
//! counts, patient-level splits, and DICOM folders decoded once to PNG.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use umcl_data::manifest::{Manifest, ManifestReader, SourceStats, Stats};
use umcl_data::schema::Schema;
use umcl_data::sources::{
    covid, generic, mimic, Prepared, ReadOptions, SourceKind, SourceMisuse, SourceOption,
    SourceRequest,
};
use umcl_data::split::{self, Part, Split, SplitMethod, SplitSpec};

/// Unified (image, text, labels) manifests.
#[derive(Args)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Convert one dataset into a unified manifest (JSON Lines).
    ///
    /// Sources and what --input is: chexpert: train.csv and/or valid.csv; chestx-ray14:
    /// Data_Entry_2017.csv; iu-xray: the reports CSV; covid-cxr: metadata.csv; mimic-cxr: the
    /// MIMIC-CXR-JPG folder (with --reports for text); generic: a CSV/TSV/JSONL file, columns
    /// chosen by the --*-col flags; dicom: a folder of DICOM files (with --table for labels or
    /// reports keyed by sop_instance_uid or file).
    ///
    /// Example: umcl data prepare --source covid-cxr --input covid-cxr-512/metadata.csv --out covid.jsonl
    Prepare(Box<PrepareArgs>),
    /// Print counts per source, label and state of one or more manifests.
    ///
    /// Example: umcl data stats covid.jsonl
    Stats(StatsArgs),
    /// Write a patient-level train/val/test split next to a manifest (STEM.splits.json).
    ///
    /// Example: umcl data split covid.jsonl --seed 0 --fractions 0.8,0.1,0.1
    Split(SplitArgs),
    /// Write the built-in SYNTHETIC phantom chest-radiograph dataset: images, a manifest of
    /// three sources (image + report, image + labels, report only) and the fixed evaluation
    /// split "phantom 5x200".
    ///
    /// Example: umcl data phantom --out data/phantom --n 5000 --size 224 --seed 0
    Phantom(crate::phantom_cmd::PhantomArgs),
    /// Decode a folder of DICOM files once into 8- or 16-bit PNGs (docs/dicom.md's policy:
    /// Modality and VOI LUTs, MONOCHROME1 inverted), in parallel, with a manifest of what was
    /// written (PNG path, DICOM file, patient, UIDs, view, window).
    ///
    /// Example: umcl data convert --input dicoms/ --out pngs/ --size 1024 --bits 8
    Convert(crate::convert_cmd::ConvertArgs),
}

#[derive(Args)]
struct PrepareArgs {
    /// mimic-cxr, chexpert, chestx-ray14, iu-xray, covid-cxr, generic or dicom
    #[arg(long)]
    source: String,
    /// The dataset's file(s) or folder (see above); chexpert takes several
    #[arg(long = "input", required = true, value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// The manifest to write (written atomically)
    #[arg(long, value_name = "MANIFEST")]
    out: PathBuf,
    /// The label schema: `chest-xray` or a schema TOML file
    #[arg(long, default_value = "chest-xray")]
    schema: String,
    /// Skip bad rows (counted and listed) instead of stopping at the first
    #[arg(long)]
    skip_bad: bool,
    /// Do not check that image files exist
    #[arg(long)]
    no_check_images: bool,
    /// The folder image paths are relative to [default: from the input's location]
    #[arg(long, value_name = "DIR")]
    images: Option<PathBuf>,
    /// mimic-cxr: the MIMIC-CXR reports folder (holding files/pXX/...); without it, no text
    #[arg(long, value_name = "DIR")]
    reports: Option<PathBuf>,
    /// mimic-cxr: the metadata CSV [default: INPUT/mimic-cxr-2.0.0-metadata.csv[.gz]]
    #[arg(long, value_name = "CSV")]
    metadata: Option<PathBuf>,
    /// mimic-cxr: the label CSV [default: INPUT/mimic-cxr-2.0.0-LABEL_SET.csv[.gz]]
    #[arg(long, value_name = "CSV")]
    labels: Option<PathBuf>,
    /// mimic-cxr: which label file, chexpert or negbio
    #[arg(long, value_parser = ["chexpert", "negbio"])]
    label_set: Option<String>,
    /// generic: csv or jsonl [default: from the extension]
    #[arg(long, value_parser = ["csv", "jsonl"])]
    format: Option<String>,
    /// generic: the samples' source name, also the schema table label names are looked up in
    #[arg(long, value_name = "NAME")]
    source_name: Option<String>,
    /// generic: the sample id column [default: FILESTEM-LINE]
    #[arg(long, value_name = "COL")]
    id_col: Option<String>,
    /// generic: the patient id column
    #[arg(long, value_name = "COL")]
    patient_col: Option<String>,
    /// generic: the image path column
    #[arg(long, value_name = "COL")]
    image_col: Option<String>,
    /// generic: a text column (repeat to join several with newlines)
    #[arg(long, value_name = "COL")]
    text_col: Vec<String>,
    /// generic: label columns in 1/0/-1/blank, comma-separated, or `auto` for every column the
    /// schema knows
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    label_cols: Vec<String>,
    /// generic: a column listing positive findings
    #[arg(long, value_name = "COL")]
    label_list_col: Option<String>,
    /// generic: the separator of --label-list-col [default: |]
    #[arg(long, value_name = "SEP")]
    list_sep: Option<String>,
    /// covid-cxr: the text is the whole clinical note (`full`) or its imaging part
    /// (`imaging`: the sentences the built-in labeler reads as radiological) [default: full]
    #[arg(long, value_parser = ["full", "imaging"])]
    notes: Option<String>,
    /// dicom: a CSV of labels (columns the schema knows, 1/0/-1/blank) and/or a `report`
    /// column, keyed by `sop_instance_uid` or `file`
    #[arg(long, value_name = "CSV")]
    table: Option<PathBuf>,
    /// Keep only frontal views (PA, AP, Frontal; see docs/dicom.md): samples with another view
    /// or none are left out, and counted by view
    #[arg(long)]
    frontal_only: bool,
}

#[derive(Args)]
struct StatsArgs {
    /// Manifest files
    #[arg(required = true, value_name = "MANIFEST")]
    manifests: Vec<PathBuf>,
}

#[derive(Args)]
struct SplitArgs {
    /// The manifest to split
    #[arg(value_name = "MANIFEST")]
    manifest: PathBuf,
    /// The seed of the patient order
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fractions of patients: `TRAIN,VAL[,TEST]`
    #[arg(long, default_value = "0.8,0.1,0.1", conflicts_with = "folds")]
    fractions: String,
    /// Make one fold of a patient-level K-fold cross-validation instead: the test part is
    /// fold --fold of K (needs --fold)
    #[arg(long, value_name = "K", requires = "fold")]
    folds: Option<usize>,
    /// The fold (0..K) that is the test part
    #[arg(long, requires = "folds")]
    fold: Option<usize>,
    /// With --folds: what to stratify the folds by: `labels` (each patient's positive labels),
    /// `meta.NAME` (a metadata field, e.g. meta.finding) or `none`
    #[arg(long, default_value = "labels", requires = "folds")]
    stratify: String,
    /// With --folds: percent of the other folds' patients kept for validation
    #[arg(long, default_value_t = 10, requires = "folds")]
    val_percent: u32,
    /// Where to write the split [default: next to the manifest, STEM.splits.json]
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

/// Runs `umcl data ...`.
pub fn run(args: DataArgs) -> Result<()> {
    match args.command {
        DataCommand::Prepare(args) => prepare(&args),
        DataCommand::Stats(args) => stats(&args),
        DataCommand::Split(args) => split_cmd(&args),
        DataCommand::Phantom(args) => crate::phantom_cmd::run(&args),
        DataCommand::Convert(args) => crate::convert_cmd::run(&args),
    }
}

impl PrepareArgs {
    /// The adapter's options; the flags of another adapter are refused by name.
    fn request(&self) -> SourceRequest {
        SourceRequest {
            inputs: self.inputs.clone(),
            image_root: self.images.clone(),
            reports: self.reports.clone(),
            metadata: self.metadata.clone(),
            labels: self.labels.clone(),
            label_set: self.label_set.as_deref().map(|s| match s {
                "negbio" => mimic::MimicLabels::Negbio,
                _ => mimic::MimicLabels::Chexpert,
            }),
            notes: self.notes.as_deref().map(|s| match s {
                "imaging" => covid::CovidNotes::Imaging,
                _ => covid::CovidNotes::Full,
            }),
            format: self.format.as_deref().map(|s| match s {
                "jsonl" => generic::GenericFormat::Jsonl,
                _ => generic::GenericFormat::Csv,
            }),
            source_name: self.source_name.clone(),
            id: self.id_col.clone(),
            patient: self.patient_col.clone(),
            image: self.image_col.clone(),
            text: self.text_col.clone(),
            label_columns: self.label_cols.clone(),
            label_list: self.label_list_col.clone(),
            list_separator: self.list_sep.clone(),
            table: self.table.clone(),
        }
    }
}

/// The flag that sets `option`.
fn flag(option: SourceOption) -> &'static str {
    match option {
        SourceOption::Reports => "--reports",
        SourceOption::Metadata => "--metadata",
        SourceOption::Labels => "--labels",
        SourceOption::LabelSet => "--label-set",
        SourceOption::Notes => "--notes",
        SourceOption::Format => "--format",
        SourceOption::SourceName => "--source-name",
        SourceOption::Id => "--id-col",
        SourceOption::Patient => "--patient-col",
        SourceOption::Image => "--image-col",
        SourceOption::Text => "--text-col",
        SourceOption::LabelColumns => "--label-cols",
        SourceOption::LabelList => "--label-list-col",
        SourceOption::ListSeparator => "--list-sep",
        SourceOption::Table => "--table",
    }
}

fn prepare(args: &PrepareArgs) -> Result<()> {
    let kind: SourceKind = args.source.parse()?;
    let source = match args.request().into_source(kind) {
        Ok(source) => source,
        Err(SourceMisuse::NotFor { option, owner }) => {
            bail!("{} applies only to --source {owner}", flag(option))
        }
        Err(SourceMisuse::OneInput { .. }) => {
            bail!("--source {kind} takes one --input (only chexpert takes several)")
        }
        Err(SourceMisuse::NoImageRoot { why }) => {
            bail!("--images does not apply to {kind}: {why}")
        }
    };
    if kind == SourceKind::Generic && args.label_cols.is_empty() && args.label_list_col.is_none() {
        eprintln!("umcl: note: no --label-cols or --label-list-col: every label is unmentioned");
    }
    let schema = Schema::resolve(&args.schema).context("cannot load the schema")?;
    let read = ReadOptions {
        skip_bad: args.skip_bad,
        check_images: !args.no_check_images,
    };
    let mut prepared: Prepared = source.prepare(&schema, read)?;
    let left_out = if args.frontal_only {
        prepared.keep_frontal()
    } else {
        Default::default()
    };
    create_parent(&args.out)?;
    let list = prepared.write(&args.out, &schema)?;
    let total = Stats::count(&prepared.samples, schema.len()).total();
    let mut out = String::new();
    writeln!(
            out,
        "wrote {} samples to {} (source {kind}, schema {}): {} patients, {} with image, {} with text, {} with labels",
        total.samples,
        args.out.display(),
        schema.name(),
        total.patients,
        total.with_image,
        total.with_text,
        total.with_labels
    )?;
    if !left_out.is_empty() {
        let views: Vec<String> = left_out.iter().map(|(v, n)| format!("{n} {v}")).collect();
        writeln!(
            out,
            "left out {} samples that are not frontal views (--frontal-only): {}",
            left_out.values().sum::<usize>(),
            views.join(", ")
        )?;
    }
    if let Some(list) = list {
        const SHOWN: usize = 20;
        writeln!(
            out,
            "skipped {} bad rows (--skip-bad):",
            prepared.skipped.len()
        )?;
        for err in prepared.skipped.iter().take(SHOWN) {
            writeln!(out, "  {err}")?;
        }
        if prepared.skipped.len() > SHOWN {
            writeln!(
                out,
                "  ... and {} more, all listed in {}",
                prepared.skipped.len() - SHOWN,
                list.display()
            )?;
        } else {
            writeln!(out, "  (also listed in {})", list.display())?;
        }
    }
    emit(&out)
}

/// Prints `text` to stdout; a closed pipe (`umcl data stats ... | head`) is not an error.
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

fn stats(args: &StatsArgs) -> Result<()> {
    let mut out = String::new();
    for (i, path) in args.manifests.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        let mut reader = ManifestReader::open(path)?;
        let keys = reader.header().keys.clone();
        let schema_name = reader.header().schema.clone();
        let mut stats = Stats::default();
        let mut ids = Vec::new();
        for sample in reader.by_ref() {
            let sample = sample?;
            stats.add(&sample, keys.len());
            ids.push(sample.id);
        }
        writeln!(
            out,
            "manifest {} (schema {schema_name}, {} keys)",
            path.display(),
            keys.len()
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "source", "samples", "patients", "image", "text", "labels"
        )?;
        let total = stats.total();
        let mut rows: Vec<(&str, &SourceStats)> =
            stats.sources.iter().map(|(n, s)| (n.as_str(), s)).collect();
        if stats.sources.len() > 1 {
            rows.push(("all", &total));
        }
        for (name, s) in &rows {
            writeln!(
                out,
                "{:<16} {:>8} {:>8} {:>8} {:>8} {:>8}",
                name, s.samples, s.patients, s.with_image, s.with_text, s.with_labels
            )?;
        }
        for (name, s) in &rows {
            writeln!(out)?;
            writeln!(
                out,
                "{:<28} {:>9} {:>9} {:>9} {:>11}   [{name}]",
                "label", "positive", "negative", "uncertain", "unmentioned"
            )?;
            for (key, counts) in keys.iter().zip(&s.states) {
                writeln!(
                    out,
                    "{:<28} {:>9} {:>9} {:>9} {:>11}",
                    key, counts[0], counts[1], counts[2], counts[3]
                )?;
            }
        }
        let split_file = split::split_path(path);
        if split_file.exists() {
            let split = Split::read(&split_file)?;
            let lookup = split.lookup();
            let missing = ids
                .iter()
                .filter(|id| !lookup.contains_key(id.as_str()))
                .count();
            writeln!(out)?;
            writeln!(
                out,
                "split {} (seed {}, fractions {:?})",
                split_file.display(),
                split.spec.seed,
                split.spec.fractions
            )?;
            for part in Part::ALL {
                writeln!(
                    out,
                    "  {:<6} {:>8} samples {:>8} patients",
                    part.name(),
                    split.ids(part).len(),
                    split.groups[part as usize]
                )?;
            }
            if missing > 0 {
                writeln!(
            out,
            "  note: {missing} samples of the manifest are in no part (the split is older than the manifest)")?;
            }
        }
    }
    emit(&out)
}

/// Creates the folder an output file goes into, as `--out` of `umcl data phantom` does.
fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the folder {}", dir.display())),
        _ => Ok(()),
    }
}

fn split_cmd(args: &SplitArgs) -> Result<()> {
    let manifest = Manifest::read(&args.manifest)?;
    let method = match (args.folds, args.fold) {
        (Some(folds), Some(fold)) => SplitMethod::Fold(split::FoldSpec {
            seed: args.seed,
            folds,
            fold,
            val_percent: args.val_percent,
            stratify: args.stratify.clone(),
        }),
        _ => SplitMethod::Fractions(SplitSpec::new(
            args.seed,
            split::parse_fractions(&args.fractions)?,
        )?),
    };
    let split = Split::of_manifest(&manifest, method)?;
    let spec = split.spec;
    let path = args
        .out
        .clone()
        .unwrap_or_else(|| split::split_path(&args.manifest));
    split.write(&path, &args.manifest)?;
    let mut out = String::new();
    match &split.fold {
        Some(f) => writeln!(
            out,
            "wrote {} (fold {} of {}, seed {}, stratified by {}, {}% of the other folds for \
             validation, by patient)",
            path.display(),
            f.fold,
            f.folds,
            f.seed,
            f.stratify,
            f.val_percent
        )?,
        None => writeln!(
            out,
            "wrote {} (seed {}, fractions {:?}, by patient)",
            path.display(),
            spec.seed,
            spec.fractions
        )?,
    }
    for part in Part::ALL {
        writeln!(
            out,
            "  {:<6} {:>8} samples {:>8} patients",
            part.name(),
            split.ids(part).len(),
            split.groups[part as usize]
        )?;
    }
    emit(&out)
}
