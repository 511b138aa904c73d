//! The optional NCCL process group: `libumcl_nccl.so`, found and loaded once.

use std::ffi::c_void;

use super::DistError;
use crate::dl::Library;

/// The file name of the optional NCCL library.
pub const NCCL_LIBRARY: &str = "libumcl_nccl.so";

pub(super) type NcclNew = unsafe extern "C" fn(
    store: *mut c_void,
    rank: i32,
    size: i32,
    timeout_ms: i64,
    device_index: i32,
    out: *mut *mut c_void,
) -> *mut std::ffi::c_char;

/// Where [`ProcessGroup::nccl`](super::ProcessGroup::nccl) looks for [`NCCL_LIBRARY`], in order: the file named by
/// `UMCL_NCCL_LIB` (alone, when set); else next to the running executable, in `../lib/` of it
/// (the GPU bundle's layout) and in `../nccl/` of it (`target/nccl/`, where `cargo xtask nccl`
/// puts it for `target/release/umcl`).
pub fn nccl_library_candidates() -> Vec<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("UMCL_NCCL_LIB") {
        return vec![path.into()];
    }
    let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(std::path::Path::to_path_buf))
    else {
        return Vec::new();
    };
    vec![
        dir.join(NCCL_LIBRARY),
        dir.join("../lib").join(NCCL_LIBRARY),
        dir.join("../nccl").join(NCCL_LIBRARY),
    ]
}

/// Loads the NCCL library (once per process) and returns its constructor.
pub(super) fn nccl_constructor() -> Result<NcclNew, DistError> {
    static LOADED: std::sync::OnceLock<Result<usize, String>> = std::sync::OnceLock::new();
    let loaded = LOADED.get_or_init(|| {
        let candidates = nccl_library_candidates();
        let Some(path) = candidates.iter().find(|p| p.is_file()) else {
            return Err(format!(
                "the NCCL process group needs {NCCL_LIBRARY} (build it with `cargo xtask nccl`, \
                 or set UMCL_NCCL_LIB); looked for {}",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        let library = Library::open(path).map_err(|reason| {
            format!(
                "loading {}: {reason} (the NCCL group resolves against libtorch_cuda.so, which \
                 umcl loads only when run.device is CUDA)",
                path.display()
            )
        })?;
        let symbol = library
            .symbol(c"umcl_c10d_nccl_new")
            .map_err(|reason| format!("{}: {reason}", path.display()))?;
        Ok(symbol as usize)
    });
    match loaded {
        // SAFETY: the address of umcl_c10d_nccl_new, whose C signature is `NcclNew`.
        Ok(address) => Ok(unsafe { std::mem::transmute::<usize, NcclNew>(*address) }),
        Err(message) => Err(DistError::Invalid(message.clone())),
    }
}
