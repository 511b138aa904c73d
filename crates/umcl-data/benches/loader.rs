//! Loader overhead: a consumer that does nothing, against the single-thread pipeline rate
//! times the pool size (the target: within 15%). Uses the JPEGs of
//! `../shared/data/covid-cxr-512` when present, else 512 px phantom PNGs written to a
//! temporary folder. Prints the ratio at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use umcl_data::augment::Augment;
use umcl_data::images::{Preprocess, JPEG_DECODER};
use umcl_data::loader::{Loader, LoaderConfig};
use umcl_data::phantom;
use umcl_data::sample::Sample;
use umcl_data::schema::Schema;

mod common;
use common::cpu_seconds;

const THREADS: usize = 2;

fn images(tmp: &Path) -> Vec<PathBuf> {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/covid-cxr-512/images");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        files.sort();
        if !files.is_empty() {
            return files;
        }
    }
    eprintln!(
        "loader bench: {} is absent, using 256 phantom images at 512 px instead",
        dir.display()
    );
    (0..256u64)
        .map(|i| {
            let p = tmp.join(format!("{i}.png"));
            phantom::render(&phantom::draw_findings(0, i), 512, 0, i)
                .save_png(&p)
                .expect("a writable temporary folder");
            p
        })
        .collect()
}

fn config() -> LoaderConfig {
    LoaderConfig {
        batch_size: 32,
        threads: THREADS,
        prefetch: 4,
        augment: Some(Augment::default()),
        ..LoaderConfig::default()
    }
}

fn single_thread(files: &[PathBuf], cfg: &LoaderConfig) {
    let pre: &Preprocess = &cfg.preprocess;
    let aug = cfg.augment.as_ref().expect("augmenting config");
    let mut out = vec![0.0f32; pre.output_len()];
    for (i, f) in files.iter().enumerate() {
        let p = aug.sample(pre.size, cfg.seed, 0, i as u64);
        pre.load_into(f, Some(&p), &mut out)
            .expect("bench images decode");
    }
}

fn drain(loader: &Loader) -> usize {
    loader
        .epoch(0)
        .map(|b| b.expect("bench batches load").len())
        .sum()
}

fn bench(c: &mut Criterion) {
    let tmp = std::env::temp_dir().join(format!("umcl-loader-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("a temporary folder");
    let files = images(&tmp);
    let schema = Schema::chest_xray();
    let samples: Vec<Sample> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let mut s = Sample::new(format!("{i}"), "bench", &schema);
            s.image = Some(f.clone());
            s
        })
        .collect();
    let cfg = config();
    let loader = Loader::new(samples, None, cfg.clone()).expect("a loader");
    let mut g = c.benchmark_group("loader_224");
    g.sample_size(10);
    g.throughput(Throughput::Elements(files.len() as u64));
    g.bench_function("pipeline_1_thread", |b| {
        b.iter(|| single_thread(&files, &cfg))
    });
    g.bench_function(format!("loader_{THREADS}_threads_idle_consumer"), |b| {
        b.iter(|| drain(&loader))
    });
    g.finish();

    // Side by side, in one run: the ratio the target is stated in.
    let reps = 3;
    single_thread(&files[..16.min(files.len())], &cfg);
    let cpu0 = cpu_seconds();
    let t = Instant::now();
    for _ in 0..reps {
        single_thread(&files, &cfg);
    }
    let single = (reps * files.len()) as f64 / t.elapsed().as_secs_f64();
    let cpu1 = cpu_seconds();
    let t = Instant::now();
    let mut n = 0;
    let mut waited = 0.0;
    for _ in 0..reps {
        let mut epoch = loader.epoch(0);
        n += (&mut epoch)
            .map(|b| b.expect("bench batches load").len())
            .sum::<usize>();
        waited += epoch.stats().waited.as_secs_f64();
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu2 = cpu_seconds();
    let rate = n as f64 / secs;
    if let (Some(a), Some(b), Some(c)) = (cpu0, cpu1, cpu2) {
        let per_single = (b.0 - a.0) / (reps * files.len()) as f64;
        let per_loader = (c.0 - b.0) / n as f64;
        println!(
            "CPU per image: pipeline {:.3} ms, loader {:.3} ms: with {THREADS} idle cores the \
             loader would reach {:.2} x ({THREADS} x single thread)",
            per_single * 1e3,
            per_loader * 1e3,
            per_single / per_loader
        );
    }
    println!("JPEG decoder: {JPEG_DECODER}");
    println!("pipeline, 1 thread:           {single:8.1} images/s");
    println!("loader, {THREADS} threads, idle consumer: {rate:8.1} images/s (consumer waited {:.0}% of the time)", 100.0 * waited / secs);
    println!(
        "loader / ({THREADS} x single thread): {:.2}",
        rate / (THREADS as f64 * single)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

criterion_group!(benches, bench);
criterion_main!(benches);
