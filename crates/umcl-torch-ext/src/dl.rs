//! The one place the crate talks to the dynamic loader: libraries opened for the life of the
//! process (libtorch_cuda, the optional NCCL group, the CUDA driver) and their symbols.

use std::ffi::{c_void, CStr, CString};
use std::path::Path;

/// A library opened with `RTLD_NOW | RTLD_GLOBAL`, never closed: code it registers (CUDA
/// backends, process groups) must stay loaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Library(*mut c_void);

// SAFETY: a dlopen handle is a process-wide token; dlsym on it is thread-safe.
unsafe impl Send for Library {}
unsafe impl Sync for Library {}

impl Library {
    /// Opens the library at `path`. The error is the loader's message.
    pub(crate) fn open(path: &Path) -> Result<Library, String> {
        let c_path = CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
        Self::open_c(&c_path)
    }

    /// Opens a library by the name the loader searches for (`libcuda.so.1`).
    pub(crate) fn open_c(name: &CStr) -> Result<Library, String> {
        // SAFETY: dlopen with a valid NUL-terminated name.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            Err(last_error())
        } else {
            Ok(Library(handle))
        }
    }

    /// The address of `name` in this library.
    pub(crate) fn symbol(&self, name: &CStr) -> Result<*mut c_void, String> {
        // SAFETY: dlsym on a handle from dlopen, with a valid NUL-terminated name.
        let ptr = unsafe { libc::dlsym(self.0, name.as_ptr()) };
        if ptr.is_null() {
            Err(last_error())
        } else {
            Ok(ptr)
        }
    }
}

/// The loader's last error message.
fn last_error() -> String {
    // SAFETY: dlerror returns NULL or a NUL-terminated string valid until the next dl call.
    let message = unsafe { libc::dlerror() };
    if message.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: non-NULL and NUL-terminated (above), read before any other dl call.
    unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned()
}
