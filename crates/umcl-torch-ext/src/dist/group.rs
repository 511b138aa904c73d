//! A process group on Gloo or NCCL and its collectives.

use std::ffi::{c_void, CString};
use std::time::Duration;

use tch::Tensor;

use super::ffi;
use super::nccl::nccl_constructor;
use super::store::Store;
use super::{millis, DistError, ReduceOp};
use crate::{check, ExtError};

/// Where Gloo's transport binds on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlooDevice {
    /// A network interface by name (torch's `GLOO_SOCKET_IFNAME`).
    Interface(String),
    /// The address a host name resolves to (e.g. `127.0.0.1` for one-node runs).
    Hostname(String),
    /// The address this machine's own host name resolves to (torch's default).
    Default,
}

/// One rank's membership in a group of processes, on the Gloo or the NCCL backend.
pub struct ProcessGroup {
    ptr: *mut c_void,
    rank: usize,
    size: usize,
    timeout: Duration,
    // The group keeps its store connection alive (c10d holds its own reference too).
    _store: Option<Store>,
}

// SAFETY: c10d process groups are used from one thread at a time by umcl (`&self` methods do
// not run concurrently in the trainer); Gloo itself queues work on its own threads.
unsafe impl Send for ProcessGroup {}

impl ProcessGroup {
    /// Joins the Gloo group as `rank` of `size`, meeting the others through `store`. Blocks
    /// until every rank has joined or `timeout` passes; `timeout` is also the bound of every
    /// later collective. `threads` is Gloo's worker thread count (0: Gloo's default, 2).
    pub fn gloo(
        store: Store,
        rank: usize,
        size: usize,
        device: &GlooDevice,
        threads: usize,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        check_membership(rank, size)?;
        let (iface, host) = match device {
            GlooDevice::Interface(i) => (Some(i.as_str()), None),
            GlooDevice::Hostname(h) => (None, Some(h.as_str())),
            GlooDevice::Default => (None, None),
        };
        let to_c = |s: Option<&str>| {
            s.map(|s| {
                CString::new(s)
                    .map_err(|_| DistError::Invalid(format!("`{s}` contains a NUL byte")))
            })
            .transpose()
        };
        let (iface, host) = (to_c(iface)?, to_c(host)?);
        let ptr_of = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live store handle, NULL or valid C strings, `ptr` written only on success.
        unsafe {
            check(
                "ProcessGroupGloo",
                ffi::umcl_c10d_gloo_new(
                    store.ptr,
                    rank as i32,
                    size as i32,
                    millis(timeout),
                    ptr_of(&iface),
                    ptr_of(&host),
                    threads as i32,
                    &mut ptr,
                ),
            )?;
        }
        Ok(Self::joined(ptr, rank, size, timeout, store))
    }

    /// Joins the NCCL group as `rank` of `size` on CUDA device `device_index` (torchrun's
    /// `LOCAL_RANK`), meeting the others through `store`. Collectives then take CUDA tensors
    /// and run on the current CUDA stream without blocking the host; `timeout` bounds each of
    /// them through NCCL's watchdog.
    ///
    /// NCCL lives in `libtorch_cuda.so`, which umcl loads only at run time, so this group
    /// comes from a separate library, `libumcl_nccl.so` (built by `cargo xtask nccl` or
    /// `cargo xtask gpu-bundle`), found as described in [`nccl_library_candidates`](super::nccl_library_candidates). Without
    /// it, or without CUDA, this returns an error saying which.
    pub fn nccl(
        store: Store,
        rank: usize,
        size: usize,
        device_index: usize,
        timeout: Duration,
    ) -> Result<Self, DistError> {
        check_membership(rank, size)?;
        let create = nccl_constructor()?;
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live store handle; `create` has the signature of umcl_c10d_nccl_new
        // (nccl/umcl_nccl.cpp); `ptr` is written only on success.
        unsafe {
            check(
                "ProcessGroupNCCL",
                create(
                    store.ptr,
                    rank as i32,
                    size as i32,
                    millis(timeout),
                    i32::try_from(device_index).unwrap_or(i32::MAX),
                    &mut ptr,
                ),
            )?;
        }
        Ok(Self::joined(ptr, rank, size, timeout, store))
    }

    /// The group around a handle a bridge constructor returned; it keeps `store` alive.
    fn joined(ptr: *mut c_void, rank: usize, size: usize, timeout: Duration, store: Store) -> Self {
        Self {
            ptr,
            rank,
            size,
            timeout,
            _store: Some(store),
        }
    }

    /// This process's rank, `0..size`.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The bound of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The bridge's group handle.
    pub(crate) fn ptr(&self) -> *mut c_void {
        self.ptr
    }

    /// Runs a bridge collective; a failure names this rank.
    ///
    /// # Safety
    /// `message` must be NULL or an owned message returned by the bridge.
    pub(crate) unsafe fn collective(
        &self,
        what: &'static str,
        message: *mut std::ffi::c_char,
    ) -> Result<(), DistError> {
        // SAFETY: forwarded from the caller.
        unsafe { check_ranked(what, message, self.rank, self.size) }
    }

    fn check_tensor(t: &Tensor, what: &str) -> Result<(), DistError> {
        if !t.is_contiguous() {
            return Err(DistError::Invalid(format!(
                "{what}: the tensor must be contiguous"
            )));
        }
        Ok(())
    }

    /// Reduces `tensor` element-wise over all ranks, in place; every rank ends with the result.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<(), DistError> {
        Self::check_tensor(tensor, "all_reduce")?;
        let op = match op {
            ReduceOp::Sum => 0,
            ReduceOp::Max => 1,
            ReduceOp::Min => 2,
        };
        // SAFETY: live group; `as_mut_ptr` is the at::Tensor* the bridge expects.
        unsafe {
            self.collective(
                "all_reduce",
                ffi::umcl_c10d_all_reduce(
                    self.ptr,
                    tensor.as_mut_ptr() as *mut c_void,
                    op,
                    millis(self.timeout),
                ),
            )?;
        }
        Ok(())
    }

    /// Every rank's `input` (the same shape everywhere), concatenated along dimension 0 in rank
    /// order (stacked for scalars). The result carries no gradient; see
    /// [`ProcessGroup::all_gather_with_local`] for one that does.
    pub fn all_gather(&self, input: &Tensor) -> Result<Tensor, DistError> {
        let mut out = std::ptr::null_mut();
        // SAFETY: live group and tensor; on success `out` is a new heap at::Tensor that
        // `Tensor::from_ptr` takes ownership of.
        unsafe {
            self.collective(
                "all_gather",
                ffi::umcl_c10d_all_gather(
                    self.ptr,
                    input.as_ptr() as *mut c_void,
                    millis(self.timeout),
                    &mut out,
                ),
            )?;
            Ok(Tensor::from_ptr(out as *mut _))
        }
    }

    /// Like [`ProcessGroup::all_gather`] of `local` (rows `[rank * n, (rank + 1) * n)` of the
    /// result), but with this rank's own rows replaced by `local` itself, so gradients of a loss
    /// on the gathered tensor flow back into `local` (open_clip's "gather with grad / local
    /// loss" scheme without a backward collective). Summing the parameter gradients over ranks
    /// afterwards gives the gradient of the same loss computed in one process, provided terms
    /// that do not go through `local` are counted on one rank only.
    pub fn all_gather_with_local(&self, local: &Tensor) -> Result<Tensor, DistError> {
        let gathered = self.all_gather(local)?;
        if self.size == 1 {
            return Ok(local.shallow_clone());
        }
        let n = local.size().first().copied().unwrap_or(1);
        let mut parts = gathered.split(n, 0);
        parts[self.rank] = local.shallow_clone();
        Ok(Tensor::cat(&parts, 0))
    }

    /// Copies rank `root`'s `tensor` into every rank's `tensor`, in place.
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistError> {
        Self::check_tensor(tensor, "broadcast")?;
        // SAFETY: live group; `as_mut_ptr` is the at::Tensor* the bridge expects.
        unsafe {
            self.collective(
                "broadcast",
                ffi::umcl_c10d_broadcast(
                    self.ptr,
                    tensor.as_mut_ptr() as *mut c_void,
                    root as i32,
                    millis(self.timeout),
                ),
            )?;
        }
        Ok(())
    }

    /// Returns once every rank has called `barrier`.
    pub fn barrier(&self) -> Result<(), DistError> {
        // SAFETY: live group.
        unsafe {
            self.collective(
                "barrier",
                ffi::umcl_c10d_barrier(self.ptr, millis(self.timeout)),
            )?
        };
        Ok(())
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: created by umcl_c10d_gloo_new or umcl_c10d_nccl_new, freed once.
        unsafe { ffi::umcl_c10d_group_free(self.ptr) }
    }
}

/// A bridge result (see [`check`]) as a [`DistError::Comm`] whose message names `rank` of
/// `size`.
///
/// # Safety
/// `message` must be NULL or an owned message returned by the bridge.
pub(crate) unsafe fn check_ranked(
    what: &'static str,
    message: *mut std::ffi::c_char,
    rank: usize,
    size: usize,
) -> Result<(), DistError> {
    // SAFETY: forwarded from the caller.
    unsafe { check(what, message) }.map_err(|e| {
        DistError::Comm(ExtError {
            context: e.context,
            message: format!("rank {rank} of {size}: {}", e.message),
        })
    })
}

/// `rank` must be one of `0..size`.
fn check_membership(rank: usize, size: usize) -> Result<(), DistError> {
    if size == 0 || rank >= size {
        return Err(DistError::Invalid(format!(
            "rank {rank} is not in a group of {size}"
        )));
    }
    Ok(())
}
