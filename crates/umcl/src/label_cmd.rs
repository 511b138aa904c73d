//! `umcl label`: free-text reports in a CSV to CheXpert-style label columns, with the
//! rule-based labeler of `umcl_data::labeler`; `--explain` says why each label was given.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use umcl_data::labeler::{Labeler, Mention, Reading};
use umcl_data::schema::{LabelState, CHEST_XRAY_KEYS};
use umcl_fs::AtomicFile;

use crate::stdout::outln;

/// How many skipped rows the summary lists one by one (all are counted).
const LISTED_SKIPS: usize = 20;

/// The column layout of the output CSV.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The id column, then one column per umcl label key (1, 0, -1 or empty)
    Umcl,
    /// The CheXpert labeler's CSV: `Reports` (the text), then its 14 observation columns
    /// with 1.0 / 0.0 / -1.0 / empty
    Chexpert,
}

/// CheXpert labeler's output columns after `Reports`, in its order, with our keys.
const CHEXPERT_COLUMNS: [(&str, &str); 14] = [
    ("No Finding", "no_finding"),
    ("Enlarged Cardiomediastinum", "enlarged_cardiomediastinum"),
    ("Cardiomegaly", "cardiomegaly"),
    ("Lung Lesion", "lung_lesion"),
    ("Lung Opacity", "lung_opacity"),
    ("Edema", "edema"),
    ("Consolidation", "consolidation"),
    ("Pneumonia", "pneumonia"),
    ("Atelectasis", "atelectasis"),
    ("Pneumothorax", "pneumothorax"),
    ("Pleural Effusion", "pleural_effusion"),
    ("Pleural Other", "pleural_other"),
    ("Fracture", "fracture"),
    ("Support Devices", "support_devices"),
];

/// Arguments of `umcl label`.
#[derive(Args)]
pub struct LabelArgs {
    /// CSV file with a header row and one report per row
    #[arg(long, required_unless_present = "text", conflicts_with = "text")]
    input: Option<PathBuf>,
    /// One report text to label; prints its labels (and, with --explain, why) instead of
    /// writing a CSV
    #[arg(long)]
    text: Option<String>,
    /// Column that identifies a report; copied to the output
    #[arg(long, default_value = "uid")]
    id_column: String,
    /// Comma-separated report text columns, read in this order as report sections
    #[arg(long, value_delimiter = ',', default_value = "findings,impression")]
    text_columns: Vec<String>,
    /// Output CSV (written atomically); its columns follow --format
    #[arg(long, required_unless_present = "text")]
    output: Option<PathBuf>,
    /// Output columns: umcl (id + 17 label keys) or chexpert (the CheXpert labeler's CSV)
    #[arg(long, value_enum, default_value = "umcl")]
    format: Format,
    /// Labeler rules in TOML, repeatable: the first file is the base, later files add or
    /// remove phrases (`builtin` names the built-in rules, so `--rules builtin --rules
    /// site.toml` adds a site's rules to them) [default: builtin]
    #[arg(long)]
    rules: Vec<PathBuf>,
    /// Print, per report and label, the phrase, the cue and the clause that decided it
    #[arg(long)]
    explain: bool,
    /// Skip malformed rows (wrong field count, non-UTF-8 text), count them and list them in
    /// the summary, instead of stopping at the first one
    #[arg(long)]
    skip_bad: bool,
}

/// Runs `umcl label`.
pub fn run(args: LabelArgs) -> Result<()> {
    let labeler = if args.rules.is_empty() {
        Labeler::builtin()
    } else {
        Labeler::from_paths(&args.rules)?
    };
    let (Some(input), Some(output)) = (&args.input, &args.output) else {
        // --text (clap makes --input and --output required otherwise).
        let text = args.text.as_deref().unwrap_or_default();
        let reading = labeler.read(&[text]);
        let labels: Vec<String> = reading
            .labels
            .iter()
            .filter(|(_, s)| *s != LabelState::Unmentioned)
            .map(|(k, s)| format!("{k}={}", s.as_chexpert()))
            .collect();
        if reading.radiological {
            outln!("{}", labels.join(" "));
        } else {
            outln!("(no labels: no radiological content)");
        }
        if args.explain {
            explain(&labeler, "text", &[text], &reading);
        }
        return Ok(());
    };
    let summary = label_file(&labeler, &args, input, output)?;
    outln!(
        "labeled {} reports from {} into {} (rules `{}`)",
        summary.written,
        input.display(),
        output.display(),
        labeler.name()
    );
    if summary.empty > 0 {
        outln!(
            "{} reports had no text in {}: all their labels are left empty",
            summary.empty,
            args.text_columns.join(", ")
        );
    }
    if summary.not_radiological > 0 {
        outln!(
            "{} reports had no radiological content (no finding, no radiological wording outside \
             skipped sections such as Indication or History): all their labels are left empty",
            summary.not_radiological
        );
    }
    if !summary.skipped.is_empty() {
        outln!("skipped {} malformed rows:", summary.skipped.len());
        for reason in summary.skipped.iter().take(LISTED_SKIPS) {
            outln!("  {reason}");
        }
        if summary.skipped.len() > LISTED_SKIPS {
            outln!("  ... and {} more", summary.skipped.len() - LISTED_SKIPS);
        }
    }
    Ok(())
}

/// Prints why each label of one report has its value: the deciding mention's phrase, cue and
/// clause, or why `no_finding` is (not) set.
fn explain(labeler: &Labeler, id: &str, sections: &[&str], reading: &Reading) {
    outln!("{id}:");
    if !reading.radiological {
        outln!("  no labels: no finding is mentioned and no radiological wording is used");
        return;
    }
    let mentions = labeler.mentions(sections);
    let decisive = |key: &str, state: LabelState| -> Option<&Mention> {
        mentions
            .iter()
            .find(|m| m.finding == key && m.state == state)
    };
    for (key, state) in reading.labels.iter() {
        if key == "no_finding" {
            let mut blockers: Vec<String> = Vec::new();
            for m in mentions
                .iter()
                .filter(|m| matches!(m.state, LabelState::Positive | LabelState::Uncertain))
                .filter(|m| m.finding != "support_devices")
            {
                let blocker = format!("{} `{}`", m.finding, m.phrase);
                if !blockers.contains(&blocker) {
                    blockers.push(blocker);
                }
            }
            match state {
                LabelState::Positive => outln!(
                    "  no_finding = 1: no finding is positive or uncertain (support devices do \
                     not count)"
                ),
                _ => outln!("  no_finding = empty: {}", blockers.join(", ")),
            }
            continue;
        }
        if state == LabelState::Unmentioned {
            continue;
        }
        let Some(m) = decisive(key, state) else {
            continue;
        };
        let cue = match (&m.cue, state) {
            (Some(cue), _) => format!("cue `{cue}`"),
            (None, LabelState::Positive) => "no cue reaches it".to_string(),
            (None, _) => "the phrase itself says so".to_string(),
        };
        outln!(
            "  {key} = {}: `{}`, {cue}, in \"{}\"",
            state.as_chexpert(),
            m.phrase,
            m.clause
        );
    }
    for m in mentions
        .iter()
        .filter(|m| !CHEST_XRAY_KEYS.contains(&m.finding.as_str()))
        .filter(|m| m.state != LabelState::Negative)
    {
        outln!("  ({}: `{}` in \"{}\")", m.finding, m.phrase, m.clause);
    }
}

struct Summary {
    written: usize,
    empty: usize,
    not_radiological: usize,
    skipped: Vec<String>,
}

fn label_file(
    labeler: &Labeler,
    args: &LabelArgs,
    input: &std::path::Path,
    output: &std::path::Path,
) -> Result<Summary> {
    let name = input.display();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_path(input)
        .with_context(|| format!("cannot open {name}"))?;
    let header = reader
        .byte_headers()
        .with_context(|| format!("{name}:1: cannot read the header row"))?
        .clone();
    let header: Vec<&str> = header
        .iter()
        .enumerate()
        .map(|(i, h)| {
            std::str::from_utf8(h)
                .with_context(|| format!("{name}:1: header field {} is not valid UTF-8", i + 1))
        })
        .collect::<Result<_>>()?;
    let column = |wanted: &str| {
        header.iter().position(|h| *h == wanted).with_context(|| {
            format!(
                "{name}:1: no column `{wanted}` (columns: {})",
                header.join(", ")
            )
        })
    };
    let id_col = column(&args.id_column)?;
    if args.text_columns.is_empty() {
        bail!("--text-columns names no column");
    }
    let text_cols: Vec<usize> = args
        .text_columns
        .iter()
        .map(|c| column(c))
        .collect::<Result<_>>()?;

    let mut writer = csv::Writer::from_writer(AtomicFile::create(output)?);
    let head: Vec<&str> = match args.format {
        Format::Umcl => std::iter::once(args.id_column.as_str())
            .chain(CHEST_XRAY_KEYS)
            .collect(),
        Format::Chexpert => std::iter::once("Reports")
            .chain(CHEXPERT_COLUMNS.iter().map(|c| c.0))
            .collect(),
    };
    writer
        .write_record(&head)
        .with_context(|| format!("cannot write {}", output.display()))?;

    let mut summary = Summary {
        written: 0,
        empty: 0,
        not_radiological: 0,
        skipped: Vec::new(),
    };
    let mut record = csv::ByteRecord::new();
    loop {
        let line_hint = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(err) => {
                let line = err.position().map_or(line_hint, |p| p.line());
                let reason = match err.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("{name}:{line}: found {len} fields, the header has {expected_len}")
                    }
                    _ => format!("{name}:{line}: {err}"),
                };
                if args.skip_bad && !matches!(err.kind(), csv::ErrorKind::Io(_)) {
                    summary.skipped.push(reason);
                    continue;
                }
                bail!("{reason}{}", skip_hint(args.skip_bad));
            }
        }
        let line = record.position().map_or(line_hint, |p| p.line());
        let field = |col: usize| -> Result<&str, String> {
            let bytes = record.get(col).unwrap_or_default();
            std::str::from_utf8(bytes).map_err(|e| {
                format!(
                    "{name}:{line}: column `{}` is not valid UTF-8 (byte {})",
                    header[col],
                    e.valid_up_to() + 1
                )
            })
        };
        let mut sections: Vec<&str> = Vec::with_capacity(text_cols.len());
        let parsed = field(id_col).and_then(|id| {
            for &c in &text_cols {
                sections.push(field(c)?);
            }
            Ok(id)
        });
        let id = match parsed {
            Ok(id) => id,
            Err(reason) if args.skip_bad => {
                summary.skipped.push(reason);
                continue;
            }
            Err(reason) => bail!("{reason}{}", skip_hint(false)),
        };
        let reading = if sections.iter().all(|s| s.trim().is_empty()) {
            summary.empty += 1;
            None
        } else {
            let reading = labeler.read(&sections);
            summary.not_radiological += usize::from(!reading.radiological);
            if args.explain {
                explain(
                    labeler,
                    &format!("{name}:{line} ({id})"),
                    &sections,
                    &reading,
                );
            }
            Some(reading)
        };
        let state = |key: &str| {
            reading
                .and_then(|r| r.labels.get(key))
                .unwrap_or(LabelState::Unmentioned)
        };
        let joined;
        let mut row: Vec<&str> = Vec::with_capacity(1 + CHEST_XRAY_KEYS.len());
        match args.format {
            Format::Umcl => {
                row.push(id);
                row.extend(CHEST_XRAY_KEYS.iter().map(|k| state(k).as_chexpert()));
            }
            Format::Chexpert => {
                joined = sections
                    .iter()
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
                row.push(&joined);
                row.extend(CHEXPERT_COLUMNS.iter().map(|c| chexpert_value(state(c.1))));
            }
        }
        writer
            .write_record(&row)
            .with_context(|| format!("cannot write {}", output.display()))?;
        summary.written += 1;
    }
    let out = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", output.display(), e.error()))?;
    out.commit()?;
    Ok(summary)
}

/// A state as the CheXpert labeler writes it.
fn chexpert_value(state: LabelState) -> &'static str {
    match state {
        LabelState::Positive => "1.0",
        LabelState::Negative => "0.0",
        LabelState::Uncertain => "-1.0",
        LabelState::Unmentioned => "",
    }
}

fn skip_hint(skip_bad: bool) -> &'static str {
    if skip_bad {
        ""
    } else {
        " (use --skip-bad to skip and count such rows)"
    }
}
