//! `umcl data phantom`: the built-in SYNTHETIC phantom chest-radiograph dataset.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use umcl_data::phantom::{self, PhantomOptions};

use crate::stdout::outln;

/// Options of `umcl data phantom`.
#[derive(Args)]
pub struct PhantomArgs {
    /// The folder to write (created if absent)
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Training samples
    #[arg(long, default_value_t = 5000)]
    n: usize,
    /// Image side in pixels
    #[arg(long, default_value_t = 224)]
    size: usize,
    /// Seed of the training set (the evaluation split "phantom 5x200" is fixed)
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads [default: one per core]
    #[arg(long)]
    threads: Option<usize>,
    /// Do not write the evaluation split
    #[arg(long)]
    no_eval: bool,
    /// Also write a contact sheet PNG (one row per finding) to this file
    #[arg(long, value_name = "PNG")]
    contact_sheet: Option<PathBuf>,
}

/// Runs `umcl data phantom`.
pub fn run(args: &PhantomArgs) -> Result<()> {
    if args.size < 8 {
        bail!("--size must be at least 8, got {}", args.size);
    }
    let opts = PhantomOptions {
        n: args.n,
        size: args.size,
        seed: args.seed,
        threads: args.threads.unwrap_or(0),
        eval: !args.no_eval,
    };
    let t0 = Instant::now();
    let summary = phantom::write_dataset(&args.out, &opts)
        .with_context(|| format!("cannot write the phantom dataset to {}", args.out.display()))?;
    let secs = t0.elapsed().as_secs_f64();
    outln!(
        "SYNTHETIC phantom data (no real patient data) in {}",
        args.out.display()
    );
    outln!("manifest   {}", summary.manifest.display());
    for (source, n) in summary.per_source {
        outln!("  {source:15} {n}");
    }
    if let Some(eval) = &summary.eval_manifest {
        outln!("eval       {} (phantom 5x200)", eval.display());
    }
    outln!(
        "images     {} at {} px in {secs:.1} s ({:.0}/s)",
        summary.images,
        args.size,
        summary.images as f64 / secs.max(1e-9)
    );
    if let Some(path) = &args.contact_sheet {
        phantom::contact_sheet(5, 112.min(args.size), args.seed)
            .save_png(path)
            .with_context(|| "cannot write the contact sheet".to_string())?;
        outln!("contact    {}", path.display());
    }
    Ok(())
}
