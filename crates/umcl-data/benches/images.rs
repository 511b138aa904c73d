//! The image pipeline (decode -> resize to 224 -> augment -> normalise) on the JPEGs of
//! `../shared/data/covid-cxr-512`, one thread and two, side by side with the PIL + torchvision
//! reference (`benches/reference/pil_pipeline.py`, run with `.venv-ref/bin/python`) doing the
//! same operations on the same files. Prints the ratios at the end, and one result line per
//! thread count (`umcl-bench-row`, the format `cargo xtask bench` reads; see
//! xtask/src/bench.rs); docs/benchmarks.md keeps the numbers.
//!
//! Skips with a notice when the shared data set is absent; skips the reference when the
//! reference venv is absent. The JPEG decoder is part of what is measured: the numbers in
//! docs/benchmarks.md are with libjpeg-turbo (`--features libjpeg`); the bench prints which
//! decoder it ran with.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;
use umcl_data::augment::Augment;
use umcl_data::images::{Fit, Preprocess, JPEG_DECODER};

mod common;
use common::{cpu_seconds, reference_json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn jpegs() -> Option<Vec<PathBuf>> {
    let dir = repo_root().join("../shared/data/covid-cxr-512/images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "images bench: {} is absent, skipping (the shared data set is not part of the repo)",
            dir.display()
        );
        return None;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    Some(files)
}

fn pre() -> Preprocess {
    Preprocess {
        size: 224,
        fit: Fit::Stretch,
        ..Preprocess::default()
    }
}

/// One image through the whole pipeline, into `out`: read, decode, resize (8-bit pixels go
/// straight into the filter), augment and normalise, as the loader does it.
fn pipeline(path: &Path, index: u64, aug: &Augment, pre: &Preprocess, out: &mut [f32]) {
    let params = aug.sample(pre.size, 0, 0, index);
    pre.load_into(path, Some(&params), out)
        .expect("the bench images decode");
}

fn run_all(files: &[PathBuf], threads: usize) {
    let aug = Augment::default();
    let pre = pre();
    if threads == 1 {
        let mut out = vec![0.0f32; pre.output_len()];
        for (i, f) in files.iter().enumerate() {
            pipeline(f, i as u64, &aug, &pre, &mut out);
        }
    } else {
        files.par_iter().enumerate().for_each_init(
            || vec![0.0f32; pre.output_len()],
            |out, (i, f)| pipeline(f, i as u64, &aug, &pre, out),
        );
    }
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("a rayon pool")
}

fn bench(c: &mut Criterion) {
    let Some(files) = jpegs() else { return };
    println!("images bench: JPEG decoder: {JPEG_DECODER}");
    let mut g = c.benchmark_group("image_pipeline_224");
    g.sample_size(10);
    g.throughput(Throughput::Elements(files.len() as u64));
    for threads in [1, 2] {
        let p = pool(threads);
        g.bench_function(format!("umcl_{threads}_thread"), |b| {
            b.iter(|| p.install(|| run_all(&files, threads)))
        });
    }
    g.finish();
    side_by_side(&files);
}

/// Times our pipeline and runs the Python reference in the same process run, then prints
/// images/s and the ratios.
fn side_by_side(files: &[PathBuf]) {
    let python = repo_root().join(".venv-ref/bin/python");
    if !python.exists() {
        eprintln!(
            "images bench: {} is absent, skipping the PIL + torchvision reference (cargo xtask ref-venv)",
            python.display()
        );
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/pil_pipeline.py");
    let dir = files[0].parent().expect("files have a folder");
    let passes = 3;
    for threads in [1usize, 2] {
        let p = pool(threads);
        p.install(|| run_all(&files[..20.min(files.len())], threads)); // warm-up
        let images = (files.len() * passes) as f64;
        let cpu0 = cpu_seconds();
        let t0 = Instant::now();
        for _ in 0..passes {
            p.install(|| run_all(files, threads));
        }
        let ours = images / t0.elapsed().as_secs_f64();
        let ours_cpu = cpu_seconds().zip(cpu0).map(|(b, a)| (b.0 - a.0) / images);
        let mut best: Option<(String, f64)> = None;
        for variant in ["pil", "tensor"] {
            let out = std::process::Command::new(&python)
                .arg(&script)
                .args(["--images", &dir.to_string_lossy()])
                .args(["--workers", &threads.to_string()])
                .args(["--passes", &passes.to_string()])
                .args(["--variant", variant])
                .output()
                .expect("the reference script runs");
            let text = String::from_utf8_lossy(&out.stdout);
            let reported = reference_json(&text);
            let field = |name: &str| reported.as_ref().and_then(|v| v[name].as_f64());
            let Some(rate) = field("images_per_s") else {
                eprintln!(
                    "images bench: reference {variant} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                continue;
            };
            println!("reference {variant:6} threads={threads}: {rate:8.1} images/s");
            // CPU time per image of the timed loops, when the script reports it (1 worker).
            if let (Some(theirs), Some(ours)) = (field("cpu_ms_per_image"), ours_cpu) {
                println!(
                    "  CPU per image: reference {theirs:.3} ms, umcl {:.3} ms: {:.2}x",
                    ours * 1e3,
                    theirs / (ours * 1e3)
                );
            }
            if best.as_ref().is_none_or(|(_, r)| rate > *r) {
                best = Some((variant.to_string(), rate));
            }
        }
        println!("umcl             threads={threads}: {ours:8.1} images/s");
        if let Some((variant, rate)) = &best {
            println!(
                "ratio umcl / fastest reference ({variant}), threads={threads}: {:.2}x",
                ours / rate
            );
        }
        // The result line (tag, group, case, ours, reference, unit, lower|higher, device,
        // note), compared with the fastest reference variant.
        // The note names the JPEG decoder: the numbers depend on it (feature `libjpeg`).
        let (reference, note) = match &best {
            Some((variant, rate)) => (
                format!("{rate:.1}"),
                format!("vs PIL + torchvision ({variant} variant); JPEG: {JPEG_DECODER}"),
            ),
            None => (String::new(), format!("no reference; JPEG: {JPEG_DECODER}")),
        };
        println!(
            "umcl-bench-row\timages\tdecode+resize+augment 224, {threads} thread(s)\t{ours:.1}\t\
             {reference}\timages/s\thigher\tcpu\t{note}"
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
