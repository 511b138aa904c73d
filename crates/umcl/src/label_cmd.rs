//! `umcl label`: free-text reports in a CSV to CheXpert-style label columns, with the
//! rule-based labeler of `umcl_data::labeler`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use umcl_data::labeler::Labeler;
use umcl_data::schema::CHEST_XRAY_KEYS;
use umcl_fs::AtomicFile;

use crate::stdout::outln;

/// How many skipped rows the summary lists one by one (all are counted).
const LISTED_SKIPS: usize = 20;

/// Arguments of `umcl label`.
#[derive(Args)]
pub struct LabelArgs {
    /// CSV file with a header row and one report per row
    #[arg(long)]
    input: PathBuf,
    /// Column that identifies a report; copied to the output
    #[arg(long, default_value = "uid")]
    id_column: String,
    /// Comma-separated report text columns, read in this order as report sections
    #[arg(long, value_delimiter = ',', default_value = "findings,impression")]
    text_columns: Vec<String>,
    /// Output CSV: the id column, then one column per label key (1, 0, -1 or empty)
    #[arg(long)]
    output: PathBuf,
    /// Labeler rules in TOML [default: the built-in chest X-ray rules]
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Skip malformed rows (wrong field count, non-UTF-8 text), count them and list them in
    /// the summary, instead of stopping at the first one
    #[arg(long)]
    skip_bad: bool,
}

/// Runs `umcl label`.
pub fn run(args: LabelArgs) -> Result<()> {
    let labeler = match &args.rules {
        None => Labeler::builtin(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read labeler rules {}", path.display()))?;
            Labeler::from_toml_str(&text).with_context(|| format!("in {}", path.display()))?
        }
    };
    let summary = label_file(&labeler, &args)?;
    outln!(
        "labeled {} reports from {} into {} (rules `{}`)",
        summary.written,
        args.input.display(),
        args.output.display(),
        labeler.name()
    );
    if summary.empty > 0 {
        outln!(
            "{} reports had no text in {}: all their labels are left empty",
            summary.empty,
            args.text_columns.join(", ")
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

struct Summary {
    written: usize,
    empty: usize,
    skipped: Vec<String>,
}

fn label_file(labeler: &Labeler, args: &LabelArgs) -> Result<Summary> {
    let input = &args.input;
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

    let mut writer = csv::Writer::from_writer(AtomicFile::create(&args.output)?);
    let mut head = vec![args.id_column.as_str()];
    head.extend(CHEST_XRAY_KEYS);
    writer
        .write_record(&head)
        .with_context(|| format!("cannot write {}", args.output.display()))?;

    let mut summary = Summary {
        written: 0,
        empty: 0,
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
        let mut row = Vec::with_capacity(1 + CHEST_XRAY_KEYS.len());
        row.push(id);
        if sections.iter().all(|s| s.trim().is_empty()) {
            summary.empty += 1;
            row.extend(std::iter::repeat_n("", CHEST_XRAY_KEYS.len()));
        } else {
            let labels = labeler.label_sections(&sections);
            row.extend(labels.0.iter().map(|s| s.as_chexpert()));
        }
        writer
            .write_record(&row)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
        summary.written += 1;
    }
    let out = writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot write {}: {}", args.output.display(), e.error()))?;
    out.commit()?;
    Ok(summary)
}

fn skip_hint(skip_bad: bool) -> &'static str {
    if skip_bad {
        ""
    } else {
        " (use --skip-bad to skip and count such rows)"
    }
}
