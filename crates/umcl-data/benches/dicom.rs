//! DICOM to the training tensor: a 2500 x 2048, 12-in-16-bit, MONOCHROME1, windowed,
//! uncompressed chest X-ray (made by `benches/reference/dicom_pipeline.py --make`) read,
//! decoded (Modality LUT, window, inversion), padded to a square, resized to 224 and
//! normalised to 3 channels, on one thread; side by side with pydicom + numpy + PIL doing the
//! same steps (`dicom_pipeline.py --files`), in the same run. Prints the ratio and one result
//! line (`umcl-bench-row`, the format `cargo xtask bench` reads). Skips with a notice when the
//! reference venv (`cargo xtask ref-venv`) is absent, since it also makes the file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use umcl_data::images::Preprocess;

mod common;
use common::{cpu_seconds, reference_json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/reference/dicom_pipeline.py")
}

/// Makes the bench file under target/ with the reference script; `None` (with a notice) when
/// the reference venv is absent or the script fails.
fn bench_file(python: &Path) -> Option<PathBuf> {
    let dir = repo_root().join("target/bench-dicom");
    let file = dir.join("cxr_2500x2048_mono1.dcm");
    if file.exists() {
        return Some(file);
    }
    std::fs::create_dir_all(&dir).ok()?;
    let out = std::process::Command::new(python)
        .arg(script())
        .arg("--make")
        .arg(&file)
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "dicom bench: making the bench file failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    Some(file)
}

fn bench(c: &mut Criterion) {
    let python = repo_root().join(".venv-ref/bin/python");
    if !python.exists() {
        eprintln!(
            "dicom bench: {} is absent, skipping (it makes the bench file and runs the \
             pydicom reference; cargo xtask ref-venv)",
            python.display()
        );
        return;
    }
    let Some(file) = bench_file(&python) else {
        return;
    };
    let pre = Preprocess::default();
    let mut out = vec![0.0f32; pre.output_len()];
    let one = |out: &mut [f32]| {
        pre.load_into(&file, None, out)
            .expect("the bench file decodes")
    };
    let mut g = c.benchmark_group("dicom_224");
    g.sample_size(10);
    g.bench_function("umcl_1_thread", |b| b.iter(|| one(&mut out)));
    g.finish();

    // Side by side: the same number of passes over the file, ours then the reference's.
    let passes = 10;
    one(&mut out); // warm-up
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    for _ in 0..passes {
        one(&mut out);
    }
    let ours_ms = t0.elapsed().as_secs_f64() * 1e3 / passes as f64;
    let ours_cpu_ms = cpu_seconds()
        .zip(cpu0)
        .map(|(b, a)| (b.0 - a.0) * 1e3 / passes as f64);
    let reference = std::process::Command::new(&python)
        .arg(script())
        .arg("--files")
        .arg(&file)
        .args(["--passes", &passes.to_string()])
        .output()
        .expect("the reference script runs");
    let reported = reference_json(&String::from_utf8_lossy(&reference.stdout));
    let field = |name: &str| reported.as_ref().and_then(|v| v[name].as_f64());
    println!("umcl                       : {ours_ms:8.2} ms per image (1 thread)");
    let (theirs, note) = match field("ms_per_image") {
        Some(theirs) => {
            println!("pydicom + numpy + PIL      : {theirs:8.2} ms per image (1 thread)");
            println!("ratio (reference / umcl)   : {:.2}x", theirs / ours_ms);
            if let (Some(theirs_cpu), Some(ours_cpu)) = (field("cpu_ms_per_image"), ours_cpu_ms) {
                println!(
                    "CPU per image: reference {theirs_cpu:.2} ms, umcl {ours_cpu:.2} ms: {:.2}x",
                    theirs_cpu / ours_cpu
                );
            }
            (
                format!("{theirs:.3}"),
                "vs pydicom + numpy + PIL, 1 thread".to_string(),
            )
        }
        None => {
            eprintln!(
                "dicom bench: the reference failed: {}",
                String::from_utf8_lossy(&reference.stderr)
            );
            (String::new(), "no reference".to_string())
        }
    };
    println!(
        "umcl-bench-row\tdicom\t2500x2048 12-bit MONOCHROME1 DICOM to 224 tensor\t{ours_ms:.3}\t\
         {theirs}\tms\tlower\tcpu\t{note}"
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
