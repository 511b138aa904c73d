//! Forward + backward time of each loss at B = 256, 1024, 4096 (D = 512, fp32), dense and
//! chunked, on the CPU with one intra-op thread (and on CUDA when the loaded libtorch has it,
//! device chosen by `UMCL_BENCH_DEVICE=cuda`). `cargo bench -p umcl-losses --bench losses`.
//!
//! One thread: on the shared 2-core box other builds keep the load at 5-7, and two OpenMP
//! threads that wait for each other there made every pass 10-100x slower and the spread
//! wider than the differences measured. `UMCL_BENCH_THREADS=n` overrides.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use std::time::Duration;
use tch::Device;

mod common;

fn device() -> Device {
    match std::env::var("UMCL_BENCH_DEVICE").as_deref() {
        Ok("cuda") => Device::Cuda(0),
        _ => Device::Cpu,
    }
}

fn losses(c: &mut Criterion) {
    let threads = std::env::var("UMCL_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(1);
    tch::set_num_threads(threads);
    let dev = device();
    for n in [256i64, 1024, 4096] {
        let mut group = c.benchmark_group(format!("loss_fwd_bwd/B{n}"));
        group.sample_size(10);
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(if n >= 4096 { 12 } else { 4 }));
        let (img, txt, labels) = common::inputs(n);
        let (img, txt, labels) = (
            img.to_device(dev),
            txt.to_device(dev),
            labels.to_device(dev),
        );
        for (name, cfg) in common::variants() {
            // These two cost like their siblings plus masking / soft targets; leaving them out
            // keeps the run short on 2 cores (loss_memory still measures them).
            if matches!(name, "multi_positive_masked_chunked" | "soft_chunked") {
                continue;
            }
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    common::step(&img, &txt, &labels, &cfg);
                    if dev.is_cuda() {
                        tch::Cuda::synchronize(0);
                    }
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, losses);
criterion_main!(benches);
