//! Phantom generation speed at 224 px: rendering alone and rendering + PNG encoding, on one
//! thread and on a pool of two (the target: >= 500 images/s on 2 cores).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rayon::prelude::*;
use umcl_data::phantom;

mod common;
use common::cpu_seconds;

const BATCH: u64 = 64;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("phantom_224");
    g.sample_size(10);
    g.throughput(Throughput::Elements(BATCH));
    let render = |i: u64| phantom::render(&phantom::draw_findings(0, i), 224, 0, i);
    // Summing a pixel of each image keeps the renders from being optimised away.
    let first = |i: u64| render(i).pixels()[0];
    g.bench_function("render_1_thread", |b| {
        b.iter(|| (0..BATCH).map(first).sum::<f32>())
    });
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a rayon pool");
    g.bench_function("render_2_threads", |b| {
        b.iter(|| pool.install(|| (0..BATCH).into_par_iter().map(first).sum::<f32>()))
    });
    g.bench_function("render_png_2_threads", |b| {
        b.iter(|| {
            pool.install(|| {
                (0..BATCH)
                    .into_par_iter()
                    .map(|i| render(i).encode_png().map(|v| v.len()).unwrap_or(0))
                    .sum::<usize>()
            })
        })
    });
    g.finish();

    // CPU time per image on one thread: on a busy machine the wall-clock rates above depend
    // on what else runs; this does much less. Two idle cores give about 2 / CPU time.
    let n = 200;
    for (name, png) in [("render", false), ("render + PNG", true)] {
        let Some((c0, _)) = cpu_seconds() else { return };
        let mut bytes = 0;
        for i in 0..n {
            let img = render(i);
            bytes += if png {
                img.encode_png().map(|v| v.len()).unwrap_or(0)
            } else {
                img.pixels().len()
            };
        }
        let Some((c1, _)) = cpu_seconds() else { return };
        let per = (c1 - c0) / n as f64;
        println!(
            "{name}: {:.2} ms CPU per 224 px image ({bytes} bytes), {:.0} images/s per core",
            per * 1e3,
            1.0 / per
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
