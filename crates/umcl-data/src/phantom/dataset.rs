//! The dataset on disk: the training manifest, the fixed evaluation split "phantom 5x200"
//! and their images, written atomically and in parallel.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{draw_findings, render, Finding};
use crate::error::DataError;
use crate::manifest::write_manifest;
use crate::rng::Rng;
use crate::sample::Sample;
use crate::schema::{LabelState, Schema};
use crate::synth::Synthesizer;
use umcl_fs::write_atomic;

/// The seed of the evaluation split: fixed, so "phantom 5x200" is the same set whatever
/// `--seed` the training set has.
pub const EVAL_SEED: u64 = 0x5EED_5200;
/// Images per finding in the evaluation split.
pub const EVAL_PER_FINDING: usize = 200;

const TAG_SOURCE: u64 = 0xA7A7_0003;

/// Source names of the phantom manifests.
pub mod sources {
    /// Image and synthesized report, no labels.
    pub const IMAGE_REPORT: &str = "phantom-report";
    /// Image and labels, no text.
    pub const IMAGE_LABELS: &str = "phantom-labels";
    /// Report and labels, no image.
    pub const REPORT_ONLY: &str = "phantom-text";
    /// The evaluation split: image and labels.
    pub const EVAL: &str = "phantom-5x200";
}

/// What [`write_dataset`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhantomOptions {
    /// Training samples.
    pub n: usize,
    /// Image side in pixels.
    pub size: usize,
    /// Seed of the training set (the evaluation split ignores it).
    pub seed: u64,
    /// Worker threads; 0 for one per core.
    pub threads: usize,
    /// Also write the evaluation split "phantom 5x200".
    pub eval: bool,
}

impl Default for PhantomOptions {
    fn default() -> Self {
        Self {
            n: 5000,
            size: 224,
            seed: 0,
            threads: 0,
            eval: true,
        }
    }
}

/// What [`write_dataset`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhantomSummary {
    /// The training manifest.
    pub manifest: PathBuf,
    /// Training samples per source, in the order image+report, image+labels, report only.
    pub per_source: [(&'static str, usize); 3],
    /// The evaluation manifest, when written.
    pub eval_manifest: Option<PathBuf>,
    /// Images written, both sets.
    pub images: usize,
}

/// The label vector (chest X-ray schema) of an image with `findings`: every phantom finding
/// positive or negative, the other keys unmentioned. `no_finding` follows CheXpert: positive
/// when nothing but support devices is present.
pub fn labels_for(schema: &Schema, findings: &[Finding]) -> Vec<LabelState> {
    let mut labels = vec![LabelState::Unmentioned; schema.len()];
    let pathology = findings
        .iter()
        .any(|&f| f != Finding::NoFinding && f != Finding::SupportDevices);
    for f in Finding::ALL {
        let present = match f {
            Finding::NoFinding => !pathology,
            _ => findings.contains(&f),
        };
        if let Some(i) = schema.index_of(f.key()) {
            labels[i] = if present {
                LabelState::Positive
            } else {
                LabelState::Negative
            };
        }
    }
    labels
}

/// The findings of image `k` of the evaluation split: one finding, 200 of each of
/// [`Finding::EVAL`] in order.
pub fn eval_finding(k: usize) -> Finding {
    Finding::EVAL[(k / EVAL_PER_FINDING).min(Finding::EVAL.len() - 1)]
}

/// The largest phantom image side ([`PhantomOptions::size`]).
pub const MAX_SIZE: usize = 4096;
/// The most training samples a phantom set has ([`PhantomOptions::n`]).
pub const MAX_SAMPLES: usize = 1_000_000;

/// Writes the phantom dataset into `dir`:
///
/// - `images/phantom-NNNNNN.png` and `manifest.jsonl`: `n` training samples in three sources,
///   image + report (1/2), image + labels (3/10) and report + labels without image (1/5).
///   Reports come from the labels-to-text synthesis ([`Synthesizer`]) of the positives and
///   up to two negatives; image + report samples carry no labels (as real report datasets).
/// - `eval-5x200/NNNN.png` and `eval-5x200.jsonl`: the fixed evaluation split, 200 images
///   each of [`Finding::EVAL`], one finding per image, labelled positive for it and negative
///   for the other four.
/// - `README.txt`, saying the data are synthetic.
///
/// Every file is written atomically; images in parallel on `threads` threads.
pub fn write_dataset(dir: &Path, opts: &PhantomOptions) -> Result<PhantomSummary, DataError> {
    if !(8..=MAX_SIZE).contains(&opts.size) {
        return Err(DataError::Invalid(format!(
            "phantom image size must be at least 8 and at most {MAX_SIZE}, got {}",
            opts.size
        )));
    }
    if opts.n > MAX_SAMPLES {
        return Err(DataError::Invalid(format!(
            "a phantom set has at most {MAX_SAMPLES} training samples, got {}",
            opts.n
        )));
    }
    if opts.threads > crate::MAX_THREADS {
        return Err(DataError::Invalid(format!(
            "at most {} threads, got {}",
            crate::MAX_THREADS,
            opts.threads
        )));
    }
    let schema = Schema::chest_xray();
    let synth = Synthesizer::builtin(&schema)?;
    let images_dir = dir.join("images");
    std::fs::create_dir_all(&images_dir).map_err(|e| DataError::io(&images_dir, e))?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.threads)
        .build()
        .map_err(|e| DataError::Invalid(format!("cannot start the thread pool: {e}")))?;

    let train: Vec<Result<Sample, DataError>> = pool.install(|| {
        (0..opts.n as u64)
            .into_par_iter()
            .map(|i| train_sample(i, opts, &schema, &synth, &images_dir))
            .collect()
    });
    let train = train.into_iter().collect::<Result<Vec<_>, _>>()?;
    let manifest = dir.join("manifest.jsonl");
    write_manifest(&manifest, &schema, &train)?;
    let count = |s: &str| train.iter().filter(|x| x.source == s).count();
    let per_source = [
        (sources::IMAGE_REPORT, count(sources::IMAGE_REPORT)),
        (sources::IMAGE_LABELS, count(sources::IMAGE_LABELS)),
        (sources::REPORT_ONLY, count(sources::REPORT_ONLY)),
    ];
    let mut images = train.iter().filter(|s| s.image.is_some()).count();

    let eval_manifest = if opts.eval {
        let eval_dir = dir.join("eval-5x200");
        std::fs::create_dir_all(&eval_dir).map_err(|e| DataError::io(&eval_dir, e))?;
        let total = EVAL_PER_FINDING * Finding::EVAL.len();
        let eval: Vec<Result<Sample, DataError>> = pool.install(|| {
            (0..total)
                .into_par_iter()
                .map(|k| eval_sample(k, opts.size, &schema, &eval_dir))
                .collect()
        });
        let eval = eval.into_iter().collect::<Result<Vec<_>, _>>()?;
        images += eval.len();
        let path = dir.join("eval-5x200.jsonl");
        write_manifest(&path, &schema, &eval)?;
        Some(path)
    } else {
        None
    };
    let readme = dir.join("README.txt");
    write_atomic(&readme, README.as_bytes())?;
    Ok(PhantomSummary {
        manifest,
        per_source,
        eval_manifest,
        images,
    })
}

const README: &str = "\
SYNTHETIC DATA. Every image in this folder was drawn by umcl's phantom generator from
analytic shapes; no image shows a real patient, and nothing here may be used for any
clinical or diagnostic purpose. The reports are synthesized from the labels.

manifest.jsonl      training samples (sources phantom-report, phantom-labels, phantom-text)
eval-5x200.jsonl    the fixed evaluation split: 200 images each of cardiomegaly,
                    pleural_effusion, pneumothorax, consolidation, edema
Regenerate with: umcl data phantom --out DIR --n N --size S --seed K
";

fn train_sample(
    i: u64,
    opts: &PhantomOptions,
    schema: &Schema,
    synth: &Synthesizer,
    images_dir: &Path,
) -> Result<Sample, DataError> {
    let findings = draw_findings(opts.seed, i);
    let id = format!("phantom-{i:06}");
    let mut rng = Rng::for_sample(opts.seed, TAG_SOURCE, i);
    let pick = rng.unit();
    let source = if pick < 0.5 {
        sources::IMAGE_REPORT
    } else if pick < 0.8 {
        sources::IMAGE_LABELS
    } else {
        sources::REPORT_ONLY
    };
    let mut sample = Sample::new(&id, source, schema);
    sample.patient_id = Some(id.clone());
    let truth = labels_for(schema, &findings);
    if source != sources::IMAGE_LABELS {
        // The report states the positives and up to two of the negatives.
        let mut said = truth.clone();
        let negatives: Vec<usize> = (0..said.len())
            .filter(|&k| said[k] == LabelState::Negative)
            .collect();
        let keep = rng.below(3) as usize;
        let mut kept = 0;
        for (n, &k) in negatives.iter().enumerate() {
            let left = negatives.len() - n;
            if kept < keep && rng.below(left as u64) < (keep - kept) as u64 {
                kept += 1;
            } else {
                said[k] = LabelState::Unmentioned;
            }
        }
        sample.set_text(&synth.synthesize_for(&id, &said, opts.seed));
        if source == sources::REPORT_ONLY {
            sample.labels = said;
        }
    } else {
        sample.labels = truth;
    }
    if source != sources::REPORT_ONLY {
        let path = images_dir.join(format!("{id}.png"));
        render(&findings, opts.size, opts.seed, i)
            .save_png(&path)
            .map_err(|e| DataError::file(&path, e.to_string()))?;
        sample.image = Some(path);
    }
    let names: Vec<&str> = findings.iter().map(|f| f.key()).collect();
    sample.meta.insert("findings".into(), names.join(","));
    sample.meta.insert("synthetic".into(), "true".into());
    Ok(sample)
}

fn eval_sample(
    k: usize,
    size: usize,
    schema: &Schema,
    eval_dir: &Path,
) -> Result<Sample, DataError> {
    let finding = eval_finding(k);
    let id = format!("phantom5x200-{k:04}");
    let mut sample = Sample::new(&id, sources::EVAL, schema);
    sample.patient_id = Some(id.clone());
    for f in Finding::EVAL {
        if let Some(i) = schema.index_of(f.key()) {
            sample.labels[i] = if f == finding {
                LabelState::Positive
            } else {
                LabelState::Negative
            };
        }
    }
    let path = eval_dir.join(format!("{k:04}.png"));
    render(&[finding], size, EVAL_SEED, k as u64)
        .save_png(&path)
        .map_err(|e| DataError::file(&path, e.to_string()))?;
    sample.image = Some(path);
    sample.meta.insert("findings".into(), finding.key().into());
    sample.meta.insert("synthetic".into(), "true".into());
    Ok(sample)
}
