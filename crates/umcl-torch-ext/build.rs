//! Compiles the C++ bridge in `csrc/` against the same libtorch headers and ABI flags that
//! torch-sys uses, after `umcl_build::link_libtorch` (libtorch found as tch finds it, and a
//! run path for this crate's tests).

use std::fs;
use std::path::PathBuf;

fn main() {
    // The bridge needs the headers: without libtorch the build stops here with what to set.
    let libtorch = match umcl_build::link_libtorch() {
        Some(found) => found,
        None => match umcl_build::find_libtorch() {
            Ok(found) => found,
            Err(message) => panic!("umcl-torch-ext: {message}"),
        },
    };
    println!("cargo:rerun-if-changed=csrc");
    let abi = if libtorch.cxx11_abi { "1" } else { "0" };
    let [api_include, include] = libtorch.include_dirs();
    let mut sources: Vec<PathBuf> = fs::read_dir("csrc")
        .expect("csrc/ is part of the crate")
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
        .include(&api_include)
        .include("csrc")
        .define("_GLIBCXX_USE_CXX11_ABI", abi)
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .files(&sources)
        .compile("umcl_torch_ext");
}
