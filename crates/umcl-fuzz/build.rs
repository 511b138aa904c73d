//! Finds libtorch as tch does and gives this crate's binaries and tests a run path to it.

fn main() {
    umcl_build::link_libtorch();
}
