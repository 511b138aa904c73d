//! Peak memory of one forward + backward pass of each loss, on the CPU.
//!
//! libtorch's CPU allocations bypass Rust's allocator, so this measures the process: each
//! configuration runs in a fresh child process (this binary with `--child`), which builds its
//! inputs, reads `VmHWM` (peak resident set) from `/proc/self/status`, runs one pass, reads it
//! again, and prints the growth. Large tensors are `mmap`ed and returned on free, so the growth
//! is the peak of memory live at once during the pass, on top of the inputs (glibc's mmap
//! threshold is pinned at 128 KiB for the children so that freed blocks are not kept).
//! `cargo bench -p umcl-losses --bench loss_memory`.

use std::process::Command;

mod common;

fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM line")
}

fn child(n: i64, name: &str) {
    tch::set_num_threads(1);
    let (_, cfg) = common::variants()
        .into_iter()
        .find(|(v, _)| *v == name)
        .expect("known variant");
    // A small pass first, so that libtorch's one-time set-up is not counted.
    let (img, txt, labels) = common::inputs(64);
    common::step(&img, &txt, &labels, &cfg);
    let (img, txt, labels) = common::inputs(n);
    let before = vm_hwm_kib();
    common::step(&img, &txt, &labels, &cfg);
    let after = vm_hwm_kib();
    println!("{}", after.saturating_sub(before));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let n = args[i + 1].parse().expect("batch size");
        child(n, &args[i + 2]);
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| B | loss | peak growth (MiB) | B x B fp32 matrix (MiB) |");
    println!("|---|---|---|---|");
    for n in [256i64, 1024, 4096, 16384] {
        for (name, _) in common::variants() {
            // Beyond 4096 only two chunked losses: dense would need several GiB of B x B
            // matrices (the point of chunking), and each pass takes minutes on 2 cores.
            if n > 4096 && !matches!(name, "identity_chunked" | "multi_positive_chunked") {
                continue;
            }
            let out = Command::new(&exe)
                .args(["--child", &n.to_string(), name])
                // Every block of 128 KiB or more gets its own mapping and goes back to the
                // system when freed, so the resident peak is the peak of live tensors.
                .env("MALLOC_MMAP_THRESHOLD_", "131072")
                .output()
                .expect("run child");
            let kib: u64 = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or_else(|_| {
                    panic!("child failed: {}", String::from_utf8_lossy(&out.stderr))
                });
            let matrix = (n * n * 4) as f64 / (1024.0 * 1024.0);
            println!(
                "| {n} | {name} | {:.1} | {matrix:.0} |",
                kib as f64 / 1024.0
            );
        }
    }
}
