//! c10d's TCPStore, through which the ranks of a group find each other.

use std::ffi::{c_void, CString};
use std::time::Duration;

use super::ffi;
use super::{millis, DistError};
use crate::check;

/// A c10d TCPStore: the key-value server (on rank 0) and clients through which the ranks of a
/// group find each other.
pub struct Store {
    pub(super) ptr: *mut c_void,
}

// SAFETY: c10d's TCPStore is thread-safe (its client serialises requests under a mutex).
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// Connects to the store at `host:port`; with `is_server`, first starts it there (port 0
    /// lets the OS choose, see [`Store::port`]). A server waits until `world_size` processes
    /// (itself included) are connected, a client retries connecting; both give up after
    /// `timeout` with an error.
    pub fn connect(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        Self::open(host, port, is_server, world_size, true, timeout)
    }

    /// Starts a server without waiting for the clients (they may connect later, while the
    /// process group forms). Used when the server's port must be known before clients start.
    pub fn serve(
        host: &str,
        port: u16,
        world_size: usize,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        Self::open(host, port, true, world_size, false, timeout)
    }

    fn open(
        host: &str,
        port: u16,
        is_server: bool,
        world_size: usize,
        wait_workers: bool,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        let host_c = CString::new(host)
            .map_err(|_| DistError::Invalid(format!("host `{host}` contains a NUL byte")))?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: valid C string, `ptr` is written only on success.
        unsafe {
            check(
                "TCPStore",
                ffi::umcl_c10d_store_new(
                    host_c.as_ptr(),
                    port,
                    is_server,
                    world_size as i64,
                    wait_workers,
                    millis(timeout),
                    &mut ptr,
                ),
            )?;
        }
        Ok(Self { ptr })
    }

    /// The port the store listens on.
    pub fn port(&self) -> u16 {
        // SAFETY: `ptr` is a live store handle.
        unsafe { ffi::umcl_c10d_store_port(self.ptr) }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by umcl_c10d_store_new, freed once.
        unsafe { ffi::umcl_c10d_store_free(self.ptr) }
    }
}
