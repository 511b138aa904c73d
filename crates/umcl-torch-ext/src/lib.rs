//! The libtorch runtime of umcl and the libtorch functions that tch does not bind, reached
//! through a small C++ bridge (`csrc/`) compiled against the same headers and ABI as
//! torch-sys: [`runtime`] (start-up: CUDA backend, device, threads, CPU heap; autocast on and
//! off), [`fused`] AdamW, [`dist`] process groups and [`grad_sync`], the [`cuda_driver`]
//! probe, and the tensor [`ops`] the encoders and the losses share.
//!
//! Every bridge function catches C++ exceptions and returns them as [`ExtError`], so a failure
//! in libtorch is a `Result`, never an abort.
//!
//! ```
//! let version = umcl_torch_ext::torch_version();
//! assert!(version.starts_with("2."));
//! ```

#![warn(missing_docs)]

use std::ffi::{c_char, CStr};

pub mod cuda_driver;
pub mod dist;
mod dl;
pub mod fused;
pub mod grad_sync;
pub mod ops;
pub mod runtime;

mod ffi {
    use std::ffi::c_char;

    extern "C" {
        pub fn umcl_ext_free_error(message: *mut c_char);
        pub fn umcl_ext_torch_version() -> *const c_char;
    }
}

/// A C++ exception raised inside libtorch (or the bridge), with its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {message}")]
pub struct ExtError {
    /// Which bridge call failed.
    pub context: &'static str,
    /// The exception's `what()`.
    pub message: String,
}

/// Turns a bridge return value (NULL or an owned message) into a `Result`.
///
/// # Safety
/// `message` must be NULL or a pointer returned by a bridge function and not yet freed.
#[allow(dead_code)]
pub(crate) unsafe fn check(context: &'static str, message: *mut c_char) -> Result<(), ExtError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: the bridge returns a NUL-terminated malloc'd string, freed exactly once here.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    unsafe { ffi::umcl_ext_free_error(message) };
    Err(ExtError {
        context,
        message: text,
    })
}

/// The libtorch version the bridge was compiled against, e.g. `"2.11.0"`.
pub fn torch_version() -> &'static str {
    // SAFETY: returns a pointer to a static NUL-terminated string literal.
    let version = unsafe { CStr::from_ptr(ffi::umcl_ext_torch_version()) };
    version.to_str().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    #[test]
    fn bridge_matches_the_libtorch_that_tch_links() {
        let built = env!("UMCL_LIBTORCH_BUILD_VERSION");
        assert!(
            built.starts_with(super::torch_version()),
            "bridge compiled against {} but tch links {built}",
            super::torch_version()
        );
    }
}
