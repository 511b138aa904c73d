//! The losses side by side with PyTorch eager: forward + backward of CLIP and the dense
//! label-aware losses (multi-positive, masked, soft; the configs of `benches/common`) at
//! B = 1024 and 4096, D = 512, fp32, one thread, ours and the reference
//! (`benches/reference/losses_bench.py`, which imports the tests' PyTorch loss) on the same
//! inputs, timed the same way (2 warm-up passes, then at least 5 passes and about 3 s, median).
//! `cargo bench -p umcl-losses --bench losses_vs_torch`.
//!
//! The inputs are written to a temporary folder (`loss_inputs_B<n>.*`) for the reference, which
//! also returns its loss values: the bench checks that both sides computed the same loss. The
//! table goes to stdout, followed by one result line per case (`umcl-bench-row`, the format
//! `cargo xtask bench` reads from stdout; see xtask/src/bench.rs); the same lines go to
//! `target/bench/raw/losses-<device>.tsv`, which the GPU bundle's `run.sh` collects.
//!
//! Environment: `UMCL_BENCH_DEVICE=cuda` (both sides on CUDA), `UMCL_BENCH_THREADS` (1),
//! `UMCL_BENCH_BATCHES` (`1024,4096`), `UMCL_BENCH_SECONDS` (3), `UMCL_BENCH_OUT` (the raw
//! folder), `UMCL_REF_PYTHON` (`.venv-ref/bin/python`), `UMCL_LOSSES_REF` (the script). The
//! reference is skipped with a notice when its python is absent.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use tch::{Device, Tensor};

mod common;

/// The dense variants that have a PyTorch counterpart in the reference script.
const VARIANTS: [&str; 4] = ["clip", "multi_positive", "multi_positive_masked", "soft"];

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize().unwrap_or(root)
}

/// Writes a tensor's elements as raw little-endian bytes.
fn write_raw(path: &Path, t: &Tensor) {
    let flat = t.flatten(0, -1);
    let bytes: Vec<u8> = match flat.kind() {
        tch::Kind::Int64 => Vec::<i64>::try_from(&flat)
            .expect("i64 tensor")
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => Vec::<f32>::try_from(&flat)
            .expect("f32 tensor")
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
    };
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Median and minimum milliseconds of `f`, timed like the reference does.
fn time_ms(seconds: f64, mut f: impl FnMut()) -> (f64, f64, usize) {
    f();
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 200 && (times.len() < 5 || start.elapsed().as_secs_f64() < seconds) {
        let t0 = Instant::now();
        f();
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let n = times.len();
    let median = if n % 2 == 1 {
        times[n / 2]
    } else {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    };
    (median, times[0], n)
}

fn main() {
    let threads: i32 = env_or("UMCL_BENCH_THREADS", "1").parse().unwrap_or(1);
    tch::set_num_threads(threads);
    let dev = match env_or("UMCL_BENCH_DEVICE", "cpu").as_str() {
        "cuda" => Device::Cuda(0),
        _ => Device::Cpu,
    };
    let device_name = if dev.is_cuda() { "cuda" } else { "cpu" };
    let seconds: f64 = env_or("UMCL_BENCH_SECONDS", "3").parse().unwrap_or(3.0);
    let batches = env_or("UMCL_BENCH_BATCHES", "1024,4096");
    let out = PathBuf::from(env_or(
        "UMCL_BENCH_OUT",
        &repo_root().join("target/bench/raw").to_string_lossy(),
    ));
    std::fs::create_dir_all(&out).expect("the bench output folder can be created");
    // The inputs for the reference (16 MiB at B = 4096) live in a temporary folder.
    let inputs = std::env::temp_dir().join(format!("umcl-loss-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&inputs).expect("a temporary folder can be created");
    let prefix = inputs.join("loss_inputs");
    let configs: HashMap<_, _> = common::variants().into_iter().collect();

    // Ours: (batch, variant) -> (median ms, min ms, iterations, loss value).
    let mut ours = Vec::new();
    for n in batches
        .split(',')
        .filter_map(|b| b.trim().parse::<i64>().ok())
    {
        let (img, txt, labels) = common::inputs(n);
        write_raw(
            &prefix.with_file_name(format!("loss_inputs_B{n}.img.bin")),
            &img,
        );
        write_raw(
            &prefix.with_file_name(format!("loss_inputs_B{n}.txt.bin")),
            &txt,
        );
        write_raw(
            &prefix.with_file_name(format!("loss_inputs_B{n}.labels.bin")),
            &labels,
        );
        let head = format!(
            "{{\"batch\": {n}, \"dim\": {}, \"labels\": {}}}\n",
            common::DIM,
            labels.size()[1]
        );
        std::fs::write(
            prefix.with_file_name(format!("loss_inputs_B{n}.json")),
            head,
        )
        .expect("the input header can be written");
        let (img, txt, labels) = (
            img.to_device(dev),
            txt.to_device(dev),
            labels.to_device(dev),
        );
        for name in VARIANTS {
            let cfg = &configs[name];
            let value = {
                let s = Tensor::from(100f32.ln()).to_device(dev);
                let loss = match cfg {
                    None => umcl_losses::clip_loss(&img, &txt, &s).expect("valid inputs"),
                    Some(c) => {
                        umcl_losses::itl_loss(&img, &txt, &labels, &s, c)
                            .expect("valid inputs")
                            .loss
                    }
                };
                loss.double_value(&[])
            };
            let (median, min, iters) = time_ms(seconds, || {
                common::step(&img, &txt, &labels, cfg);
                if dev.is_cuda() {
                    tch::Cuda::synchronize(0);
                }
            });
            println!(
                "umcl      B={n:5} {name:22} {median:9.2} ms (min {min:.2}, {iters} passes) loss {value:.6}"
            );
            ours.push((n, name, median, value));
        }
    }

    // The reference, in its own process after ours (never at the same time).
    let python = PathBuf::from(env_or(
        "UMCL_REF_PYTHON",
        &repo_root().join(".venv-ref/bin/python").to_string_lossy(),
    ));
    let script = env_or(
        "UMCL_LOSSES_REF",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/reference/losses_bench.py"
        ),
    );
    let mut theirs: HashMap<(i64, String), (f64, f64, String)> = HashMap::new();
    if !python.exists() {
        eprintln!(
            "losses_vs_torch: {} is absent, skipping the PyTorch reference (cargo xtask ref-venv)",
            python.display()
        );
    } else {
        let run = Command::new(&python)
            .arg(&script)
            .arg("--inputs")
            .arg(&prefix)
            .args(["--batches", &batches, "--device", device_name])
            .args(["--threads", &threads.to_string()])
            .args(["--seconds", &seconds.to_string()])
            .env("OMP_NUM_THREADS", threads.to_string())
            .output();
        match run {
            Ok(o) if o.status.success() => {
                // One JSON object per (batch, variant); other lines are the script's prose.
                for line in String::from_utf8_lossy(&o.stdout).lines() {
                    let Ok(row) = serde_json::from_str::<serde_json::Value>(line) else {
                        continue;
                    };
                    let (Some(b), Some(v), Some(ms), Some(loss)) = (
                        row["batch"].as_i64(),
                        row["variant"].as_str(),
                        row["ms_median"].as_f64(),
                        row["loss"].as_f64(),
                    ) else {
                        continue;
                    };
                    let torch = row["torch"].as_str().unwrap_or("?").to_string();
                    println!("reference B={b:5} {v:22} {ms:9.2} ms loss {loss:.6} (torch {torch})");
                    theirs.insert((b, v.to_string()), (ms, loss, torch));
                }
            }
            Ok(o) => eprintln!(
                "losses_vs_torch: the reference failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("losses_vs_torch: cannot start {}: {e}", python.display()),
        }
    }

    let _ = std::fs::remove_dir_all(&inputs);

    // Result lines: tag, group, case, ours, reference, unit, lower|higher, device, note.
    let mut tsv = String::new();
    println!("\nfwd+bwd, {device_name}, {threads} thread(s): ours vs PyTorch eager (ratio = reference time / ours)");
    for (n, name, ms, value) in &ours {
        let case = format!("{name} B={n}");
        match theirs.get(&(*n, name.to_string())) {
            Some((ref_ms, ref_loss, torch)) => {
                let close =
                    (value - ref_loss).abs() <= 1e-4 * value.abs().max(ref_loss.abs()) + 1e-5;
                let same = if close {
                    "same loss value".to_string()
                } else {
                    format!("LOSS DIFFERS: ours {value:.6}, reference {ref_loss:.6}")
                };
                println!(
                    "  {case:32} ours {ms:9.2} ms  reference {ref_ms:9.2} ms  {:5.2}x  {same}",
                    ref_ms / ms
                );
                let _ = writeln!(
                    tsv,
                    "umcl-bench-row\tlosses\t{case}\t{ms:.4}\t{ref_ms:.4}\tms\tlower\t{device_name}\ttorch {torch}, {threads} thread(s), {same}"
                );
            }
            None => {
                println!("  {case:32} ours {ms:9.2} ms  (no reference)");
                let _ = writeln!(
                    tsv,
                    "umcl-bench-row\tlosses\t{case}\t{ms:.4}\t\tms\tlower\t{device_name}\t{threads} thread(s), no reference"
                );
            }
        }
    }
    let path = out.join(format!("losses-{device_name}.tsv"));
    let tmp = path.with_extension("tsv.tmp");
    std::fs::write(&tmp, &tsv).expect("the results can be written");
    std::fs::rename(&tmp, &path).expect("the results can be renamed into place");
    print!("\n{tsv}");
    println!("wrote {}", path.display());
}
