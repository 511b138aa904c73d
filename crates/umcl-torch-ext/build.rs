//! Compiles the C++ bridge in `csrc/` against the same libtorch headers and ABI flags that
//! torch-sys uses, after the shared rpath logic of `crates/torch-build.rs`.

use std::env;
use std::fs;
use std::path::PathBuf;

#[path = "../torch-build.rs"]
mod torch_build;

fn main() {
    torch_build::main();
    println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
    println!("cargo:rerun-if-changed=csrc");
    let Some(libtorch) = env::var_os("LIBTORCH").map(PathBuf::from) else {
        panic!("LIBTORCH is not set; run `cargo xtask setup` (the workspace's .cargo/config.toml sets it)");
    };
    let include = libtorch.join("include");
    // torch 2.11 wheels from PyPI are built with the C++11 ABI; torch-sys defaults to the same.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".to_owned());
    let mut sources: Vec<PathBuf> = fs::read_dir("csrc")
        .expect("csrc/ exists")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
        .collect();
    sources.sort();
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .std("c++17")
        .include(&include)
        .include(include.join("torch/csrc/api/include"))
        .include("csrc")
        .define("_GLIBCXX_USE_CXX11_ABI", abi.as_str())
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .files(&sources)
        .compile("umcl_torch_ext");
}
