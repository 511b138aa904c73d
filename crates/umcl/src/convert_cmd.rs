//! `umcl data convert`: a folder of DICOM files decoded once into PNGs, with a manifest.
//!
//! Each file goes through the decoding policy of `docs/dicom.md` (the same code the loader
//! uses), is resized so that its longer side is `--size` (aspect kept; no `--size`: full
//! resolution), and is written as an 8- or 16-bit grayscale PNG under `--out`, mirroring the
//! input's folders. `convert.csv` lists every PNG with its DICOM file, patient, UIDs, view and
//! the window used; `umcl data prepare --source generic --image-col png ...` reads it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rayon::prelude::*;
use umcl_data::images::dicom::{self, DicomInfo};
use umcl_data::sources::dicom::{find_files, relative_path};

#[derive(Args)]
pub struct ConvertArgs {
    /// The folder of DICOM files (searched recursively)
    #[arg(long, value_name = "DIR")]
    input: PathBuf,
    /// The folder the PNGs and convert.csv go to
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The longer side of each PNG, in pixels (aspect ratio kept) [default: full size]
    #[arg(long, value_name = "PX")]
    size: Option<usize>,
    /// 8- or 16-bit PNGs (16 keeps the levels of 12-bit data)
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(8..=16))]
    bits: u8,
    /// Decoding threads [default: the machine's cores]
    #[arg(long)]
    threads: Option<usize>,
    /// Skip files that cannot be decoded (counted, and listed in convert.skipped.txt) instead
    /// of stopping at the first
    #[arg(long)]
    skip_bad: bool,
}

/// The largest `--size`: larger than any radiograph's side, and small enough that an
/// upscaled image fits in memory.
const MAX_SIZE: usize = 16384;

/// One converted file: the manifest row.
struct Converted {
    png: String,
    dicom: String,
    width: usize,
    height: usize,
    info: DicomInfo,
}

/// The manifest's columns.
const COLUMNS: [&str; 12] = [
    "png",
    "dicom",
    "sop_instance_uid",
    "patient_id",
    "study_uid",
    "series_uid",
    "view",
    "window",
    "photometric",
    "frames",
    "width",
    "height",
];

pub fn run(args: &ConvertArgs) -> Result<()> {
    if let Some(size) = args.size {
        if size == 0 || size > MAX_SIZE {
            bail!("--size must be from 1 to at most {MAX_SIZE}, got {size}");
        }
    }
    if let Some(threads) = args.threads {
        if threads == 0 || threads > umcl_data::MAX_THREADS {
            bail!(
                "--threads must be from 1 to at most {}, got {threads}",
                umcl_data::MAX_THREADS
            );
        }
    }
    if args.bits != 8 && args.bits != 16 {
        bail!("--bits must be 8 or 16, got {}", args.bits);
    }
    if !args.input.is_dir() {
        bail!(
            "{}: not a folder (expected a folder of DICOM files)",
            args.input.display()
        );
    }
    let files = find_files(&args.input)?;
    if files.is_empty() {
        bail!(
            "{}: no DICOM files (.dcm, .dicom, or with the DICM magic)",
            args.input.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating the folder {}", args.out.display()))?;
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(umcl_data::MAX_THREADS))
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("starting the decoding threads")?;
    let done = AtomicUsize::new(0);
    let progress = Mutex::new(Instant::now());
    let start = Instant::now();
    let total = files.len();
    let results: Vec<Result<Converted>> = pool.install(|| {
        files
            .par_iter()
            .map(|file| {
                let result = convert_one(args, file);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if let Ok(mut last) = progress.lock() {
                    if last.elapsed() >= Duration::from_secs(2) || n == total {
                        *last = Instant::now();
                        let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-9);
                        eprintln!("umcl: converted {n}/{total} files ({rate:.1}/s)");
                    }
                }
                result
            })
            .collect()
    });
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for result in results {
        match result {
            Ok(row) => rows.push(row),
            Err(err) if args.skip_bad => skipped.push(format!("{err:#}")),
            Err(err) => return Err(err),
        }
    }
    let manifest = args.out.join("convert.csv");
    write_manifest(&manifest, &rows)?;
    // A list left by an earlier run goes when this one skipped nothing.
    let list = args.out.join("convert.skipped.txt");
    let text: String = skipped.iter().map(|e| format!("{e}\n")).collect();
    umcl_fs::write_or_remove(&list, (!skipped.is_empty()).then_some(text.as_bytes()))?;
    let multi = rows.iter().filter(|r| r.info.frames > 1).count();
    println!(
        "wrote {} {}-bit PNGs and {} in {:.1} s ({} threads)",
        rows.len(),
        args.bits,
        manifest.display(),
        start.elapsed().as_secs_f64(),
        threads
    );
    if multi > 0 {
        println!("  {multi} multi-frame files: only the first frame of each was converted");
    }
    if !skipped.is_empty() {
        println!(
            "skipped {} files that could not be decoded (--skip-bad), listed in {}:",
            skipped.len(),
            list.display()
        );
        for e in skipped.iter().take(20) {
            println!("  {e}");
        }
    }
    Ok(())
}

/// Decodes, resizes and writes one file.
fn convert_one(args: &ConvertArgs, file: &Path) -> Result<Converted> {
    let (image, info) = dicom::load(file)?;
    let image = match args.size {
        Some(size) => {
            let (w, h) = (image.width(), image.height());
            let (nw, nh) = if w >= h {
                (
                    size,
                    ((h * size) as f64 / w as f64).round().max(1.0) as usize,
                )
            } else {
                (
                    ((w * size) as f64 / h as f64).round().max(1.0) as usize,
                    size,
                )
            };
            image.resized(nw, nh)?
        }
        None => image,
    };
    let png_rel = Path::new(&relative_path(&args.input, file)).with_extension("png");
    let png = args.out.join(&png_rel);
    if let Some(dir) = png.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the folder {}", dir.display()))?;
    }
    let bytes = match args.bits {
        16 => image.encode_png16(),
        _ => image.encode_png(),
    }
    .map_err(|e| anyhow::anyhow!("{}: cannot encode the PNG: {e}", file.display()))?;
    umcl_fs::write_atomic(&png, &bytes)?;
    Ok(Converted {
        png: png_rel.to_string_lossy().into_owned(),
        dicom: file.display().to_string(),
        width: image.width(),
        height: image.height(),
        info,
    })
}

/// Writes convert.csv atomically.
fn write_manifest(path: &Path, rows: &[Converted]) -> Result<()> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record(COLUMNS)?;
    for r in rows {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        csv.write_record([
            r.png.clone(),
            r.dicom.clone(),
            opt(&r.info.sop_uid),
            opt(&r.info.patient_id),
            opt(&r.info.study_uid),
            opt(&r.info.series_uid),
            opt(&r.info.view_position),
            r.info.voi.to_string(),
            r.info.photometric.clone(),
            r.info.frames.to_string(),
            r.width.to_string(),
            r.height.to_string(),
        ])?;
    }
    let bytes = csv.into_inner().context("writing the manifest")?;
    umcl_fs::write_atomic(path, &bytes)?;
    Ok(())
}
