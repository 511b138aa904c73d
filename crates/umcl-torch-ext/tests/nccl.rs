//! The NCCL process group through the optional `libumcl_nccl.so`.
//!
//! The library is loaded once per process, so each case runs in a child process: this test
//! binary started again on `child_probe` with `UMCL_NCCL_PROBE=1` and the environment of the
//! case. The child forms a 1-rank NCCL group and, when that works (a GPU host), all-reduces a
//! CUDA tensor and runs the overlapped gradient all-reduce on a CUDA parameter; it prints one
//! `probe:` line that the parent checks.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tch::{Device, Kind, Tensor};
use umcl_torch_ext::dist::{ProcessGroup, ReduceOp, Store};
use umcl_torch_ext::grad_sync::GradSync;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `child_probe` in a fresh process with `envs`; returns its `probe:` line.
fn probe(envs: &[(&str, &Path)]) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "child_probe", "--nocapture", "--test-threads=1"])
        .env("UMCL_NCCL_PROBE", "1");
    for (key, value) in envs {
        cmd.env(key, value);
    }
    let out = cmd.output().expect("the test binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("probe: ").map(|(_, rest)| rest))
        .map(str::to_owned);
    line.unwrap_or_else(|| {
        panic!(
            "no probe line; status {}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Not a test of its own: the body of the child process (a no-op when run normally).
#[test]
fn child_probe() {
    if std::env::var_os("UMCL_NCCL_PROBE").is_none() {
        return;
    }
    let timeout = Duration::from_secs(30);
    let store = Store::serve("127.0.0.1", 0, 1, timeout).expect("a 1-rank store");
    match ProcessGroup::nccl(store, 0, 1, 0, timeout) {
        Err(e) => println!("probe: error: {e}"),
        Ok(group) => {
            let mut t = Tensor::from_slice(&[1.5f32, -2.0]).to_device(Device::Cuda(0));
            let reduced = group.all_reduce(&mut t, ReduceOp::Sum);
            let cpu_rejected = group
                .all_reduce(
                    &mut Tensor::ones([2], (Kind::Float, Device::Cpu)),
                    ReduceOp::Sum,
                )
                .is_err();
            let values = Vec::<f32>::try_from(t.to_device(Device::Cpu)).unwrap_or_default();
            // The overlapped gradient all-reduce: its hook runs on autograd's CUDA thread.
            let w = Tensor::ones([3], (Kind::Float, Device::Cuda(0))).set_requires_grad(true);
            let synced = GradSync::new(&group, &[&w], 1 << 20).and_then(|sync| {
                sync.arm()?;
                (&w * 2.0).sum(Kind::Float).backward();
                sync.finish()?;
                Ok(sync.overlap())
            });
            let grad = Vec::<f32>::try_from(w.grad().to_device(Device::Cpu)).unwrap_or_default();
            println!(
                "probe: ok: {reduced:?} {values:?} cpu rejected: {cpu_rejected}; \
                 grad sync: {synced:?} {grad:?}"
            );
        }
    }
}

#[test]
fn a_missing_library_is_named_with_the_command_that_builds_it() {
    let line = probe(&[("UMCL_NCCL_LIB", Path::new("/nonexistent/libumcl_nccl.so"))]);
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.contains("/nonexistent/libumcl_nccl.so"), "{line}");
    assert!(line.contains("cargo xtask nccl"), "{line}");
}

#[test]
fn the_built_library_loads_against_torchs_cuda_build() {
    let lib = workspace().join("target/nccl/libumcl_nccl.so");
    let torch_lib = workspace().join(".venv-ref/lib/python3.11/site-packages/torch/lib");
    if !lib.exists() || !torch_lib.join("libtorch_cuda.so").exists() {
        eprintln!(
            "skipped: needs {} (cargo xtask nccl) and the full torch of .venv-ref",
            lib.display()
        );
        return;
    }
    let line = probe(&[("UMCL_NCCL_LIB", &lib), ("LD_LIBRARY_PATH", &torch_lib)]);
    if line.starts_with("ok: ") {
        // A GPU host: the group formed and summed over its one rank, and the overlapped
        // gradient all-reduce started its one bucket inside the backward pass.
        assert_eq!(
            line,
            "ok: Ok(()) [1.5, -2.0] cpu rejected: true; \
             grad sync: Ok(Overlap { buckets: 1, early: 1 }) [2.0, 2.0, 2.0]"
        );
    } else {
        // No GPU: the library loaded and resolved against libtorch_cuda.so (else the error
        // would be dlopen's), and its own check refused to make a group.
        assert_eq!(
            line,
            "error: ProcessGroupNCCL: the NCCL process group needs a CUDA device; none is visible"
        );
    }
}
