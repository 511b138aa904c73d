//! Gradient all-reduce overlapped with the backward pass, the job c10d's `Reducer` does for
//! PyTorch's `DistributedDataParallel`.
//!
//! [`GradSync`] sets a hook on every parameter that runs right after its gradient has been
//! accumulated. Parameters are grouped into buckets of about `bucket_elems` elements. During
//! an armed backward pass ([`GradSync::arm`]) a bucket whose gradients are all ready is
//! flattened and its all-reduce (sum) starts at once on the process group, while autograd goes
//! on with the layers below; [`GradSync::finish`] starts the rest, waits, and writes the sums
//! back into the gradients. Buckets start strictly in bucket order, so every rank issues the
//! same collectives in the same order.
//!
//! A parameter that got no gradient on this rank counts as zero; one that got a gradient on no
//! rank stays without one. The buckets first follow the reverse of the parameter order (the
//! last layers' gradients are ready first); [`GradSync::rebuild`] re-forms them in the order
//! rank 0 actually saw, after one step, as DDP does.
//!
//! ```
//! use std::time::Duration;
//! use tch::{Kind, Tensor};
//! use umcl_torch_ext::dist::{GlooDevice, ProcessGroup, Store};
//! use umcl_torch_ext::grad_sync::GradSync;
//!
//! let store = Store::serve("127.0.0.1", 0, 1, Duration::from_secs(10))?;
//! let group = ProcessGroup::gloo(
//!     store, 0, 1, &GlooDevice::Hostname("127.0.0.1".into()), 1, Duration::from_secs(10),
//! )?;
//! let w = Tensor::ones([3], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
//! let mut sync = GradSync::new(&group, &[&w], 1 << 20)?;
//! sync.arm()?;
//! (&w * 2.0).sum(Kind::Float).backward(); // the all-reduce starts inside this call
//! sync.finish()?;
//! sync.rebuild(&group)?;
//! assert_eq!(Vec::<f32>::try_from(w.grad())?, vec![2.0; 3]); // one rank: the sum is itself
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::c_void;
use std::ops::Range;

use tch::{Device, Tensor};

use crate::dist::{DistError, ProcessGroup, ReduceOp};

mod ffi {
    use std::ffi::{c_char, c_void};

    extern "C" {
        pub fn umcl_grad_sync_new(
            group: *mut c_void,
            params: *const *const c_void,
            n: usize,
            order: *const i64,
            sizes: *const i64,
            n_buckets: usize,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn umcl_grad_sync_arm(sync: *mut c_void) -> *mut c_char;
        pub fn umcl_grad_sync_finish(sync: *mut c_void) -> *mut c_char;
        pub fn umcl_grad_sync_order(
            sync: *mut c_void,
            out: *mut i64,
            cap: usize,
            n: *mut usize,
        ) -> *mut c_char;
        pub fn umcl_grad_sync_set_buckets(
            sync: *mut c_void,
            order: *const i64,
            sizes: *const i64,
            n_buckets: usize,
        ) -> *mut c_char;
        pub fn umcl_grad_sync_stats(sync: *mut c_void, buckets: *mut usize, early: *mut usize);
        pub fn umcl_grad_sync_free(sync: *mut c_void);
    }
}

/// Consecutive ranges of `tensors` holding at most `limit` elements each (a larger tensor
/// alone); tensors of different kinds or devices never share a range.
///
/// ```
/// use tch::{Kind, Tensor};
/// let t = |n: i64| Tensor::zeros([n], (Kind::Float, tch::Device::Cpu));
/// let ts = [t(3), t(4), t(9), t(1)];
/// let refs: Vec<&Tensor> = ts.iter().collect();
/// assert_eq!(umcl_torch_ext::grad_sync::buckets(&refs, 8), vec![0..2, 2..3, 3..4]);
/// ```
pub fn buckets(tensors: &[&Tensor], limit: usize) -> Vec<Range<usize>> {
    buckets_first(tensors, limit, limit)
}

/// [`buckets`] with a different limit for the first range.
fn buckets_first(tensors: &[&Tensor], first: usize, limit: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    let mut size = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let n = t.numel();
        let fits = out.last().is_some_and(|b| {
            let head = tensors[b.start];
            let cap = if out.len() == 1 { first } else { limit };
            size + n <= cap && head.kind() == t.kind() && head.device() == t.device()
        });
        match out.last_mut() {
            Some(b) if fits => b.end = i + 1,
            _ => {
                out.push(i..i + 1);
                size = 0;
            }
        }
        size += n;
    }
    out
}

/// The size limit, in elements, of the first bucket after [`GradSync::rebuild`] (1 MiB of
/// f32, as PyTorch's DDP): the gradients ready first start communicating early, whatever
/// the bucket size.
pub const FIRST_BUCKET_ELEMS: usize = 1 << 18;

/// What [`GradSync::overlap`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    /// Buckets per step.
    pub buckets: usize,
    /// Buckets whose all-reduce started inside the backward pass.
    pub early: usize,
}

/// Overlapped, bucketed gradient all-reduce (sum over ranks) of a fixed set of parameters.
/// See the [module documentation](self).
pub struct GradSync {
    ptr: *mut c_void,
    params: Vec<Tensor>,
    bucket_elems: usize,
    rank: usize,
    size: usize,
    /// Whether [`GradSync::rebuild`] has run.
    rebuilt: bool,
}

// SAFETY: the C++ side guards its state with a mutex; the handle is used by one thread at a
// time (the training loop), the hooks run on autograd's threads.
unsafe impl Send for GradSync {}

impl GradSync {
    /// Hooks `params` (leaf tensors that require gradients, on the group's device kind, with
    /// no post-accumulate-grad hook of their own) for all-reduce on `group` in buckets of at
    /// most `bucket_elems` elements, first in reverse parameter order. The hooks are removed
    /// when the `GradSync` is dropped.
    pub fn new(
        group: &ProcessGroup,
        params: &[&Tensor],
        bucket_elems: usize,
    ) -> Result<Self, DistError> {
        let order: Vec<usize> = (0..params.len()).rev().collect();
        let (order_c, sizes_c) = bucket_plan(params, &[&order], bucket_elems, false)?;
        let ptrs: Vec<*const c_void> = params.iter().map(|p| p.as_ptr() as *const c_void).collect();
        let mut ptr = std::ptr::null_mut();
        // SAFETY: live group handle and tensors borrowed for the call; the arrays hold the
        // lengths passed; `ptr` is written only on success.
        unsafe {
            group.collective(
                "gradient sync",
                ffi::umcl_grad_sync_new(
                    group.ptr(),
                    ptrs.as_ptr(),
                    ptrs.len(),
                    order_c.as_ptr(),
                    sizes_c.as_ptr(),
                    sizes_c.len(),
                    crate::dist::millis(group.timeout()),
                    &mut ptr,
                ),
            )?;
        }
        Ok(Self {
            ptr,
            params: params.iter().map(|p| p.shallow_clone()).collect(),
            bucket_elems,
            rank: group.rank(),
            size: group.size(),
            rebuilt: false,
        })
    }

    /// Arms the hooks for the next backward pass (the last one before the optimizer step);
    /// earlier passes of the same step only accumulate.
    pub fn arm(&self) -> Result<(), DistError> {
        // SAFETY: live handle.
        unsafe { self.call("gradient sync: arm", ffi::umcl_grad_sync_arm(self.ptr)) }
    }

    /// After the armed backward pass: starts the buckets still waiting, waits for every
    /// all-reduce, and leaves the sum over ranks in each parameter's gradient. A peer that
    /// failed or timed out is an error.
    pub fn finish(&self) -> Result<(), DistError> {
        // SAFETY: live handle.
        unsafe {
            self.call(
                "all_reduce (gradients)",
                ffi::umcl_grad_sync_finish(self.ptr),
            )
        }
    }

    /// Of the last finished step: how many buckets there are, and how many of them started
    /// their all-reduce inside the backward pass (overlapped with it) rather than in
    /// [`GradSync::finish`].
    pub fn overlap(&self) -> Overlap {
        let (mut buckets, mut early) = (0usize, 0usize);
        // SAFETY: live handle; both outputs are written.
        unsafe { ffi::umcl_grad_sync_stats(self.ptr, &mut buckets, &mut early) };
        Overlap { buckets, early }
    }

    /// Re-forms the buckets in the order rank 0's gradients became ready during the passes so
    /// far (broadcast, so all ranks agree) and stops recording. Parameters ready on every rank
    /// come first; those ready on rank 0 only (the logit scale, say) and those not ready there
    /// follow in buckets of their own, as they would hold back the buckets they share on the
    /// ranks that lack them. Call it on every rank after one finished step; later calls do
    /// nothing.
    pub fn rebuild(&mut self, group: &ProcessGroup) -> Result<(), DistError> {
        if self.rebuilt {
            return Ok(());
        }
        let n = self.params.len();
        let mut seen = vec![0i64; n];
        let mut count = 0usize;
        // SAFETY: live handle; `seen` holds `n` entries.
        unsafe {
            self.call(
                "gradient sync: order",
                ffi::umcl_grad_sync_order(self.ptr, seen.as_mut_ptr(), n, &mut count),
            )?;
        }
        seen.truncate(count);
        let device = self.params.first().map_or(Device::Cpu, Tensor::device);
        // Rank 0's order, and which parameters were ready on every rank: a parameter that
        // some rank never sees ready (rank 0's logit scale, say) would hold back its bucket,
        // and every bucket after it, there.
        let mut everywhere = vec![0i64; n];
        for &p in &seen {
            everywhere[p as usize] = 1;
        }
        let mut everywhere_t = Tensor::from_slice(&everywhere).to_device(device);
        group.all_reduce(&mut everywhere_t, ReduceOp::Min)?;
        seen.resize(n, -1);
        let mut rank0_t = Tensor::from_slice(&seen).to_device(device);
        group.broadcast(&mut rank0_t, 0)?;
        let everywhere = to_vec(&everywhere_t)?;
        // Each parameter at most once (the bridge records a parameter when first ready).
        let rank0: Vec<usize> = to_vec(&rank0_t)?
            .into_iter()
            .filter_map(|p| usize::try_from(p).ok().filter(|&p| p < n))
            .collect();
        // Three groups, each in buckets of its own, so that a bucket holds only parameters
        // that are ready on the same ranks: ready everywhere (rank 0's order), ready on rank 0
        // but not everywhere (rank 0's order), the rest (not ready on rank 0).
        let (ready_everywhere, ready_on_rank0): (Vec<usize>, Vec<usize>) =
            rank0.iter().partition(|&&p| everywhere[p] > 0);
        let mut on_rank0 = vec![false; n];
        for &p in &rank0 {
            on_rank0[p] = true;
        }
        let rest: Vec<usize> = (0..n).rev().filter(|&p| !on_rank0[p]).collect();
        let params: Vec<&Tensor> = self.params.iter().collect();
        let (order_c, sizes_c) = bucket_plan(
            &params,
            &[&ready_everywhere, &ready_on_rank0, &rest],
            self.bucket_elems,
            true,
        )?;
        // SAFETY: live handle; the arrays hold the lengths passed.
        unsafe {
            self.call(
                "gradient sync: rebuild",
                ffi::umcl_grad_sync_set_buckets(
                    self.ptr,
                    order_c.as_ptr(),
                    sizes_c.as_ptr(),
                    sizes_c.len(),
                ),
            )?;
        }
        self.rebuilt = true;
        Ok(())
    }

    /// # Safety
    /// `message` must be NULL or an owned message returned by the bridge.
    unsafe fn call(
        &self,
        what: &'static str,
        message: *mut std::ffi::c_char,
    ) -> Result<(), DistError> {
        // SAFETY: forwarded from the caller.
        unsafe { crate::dist::check_ranked(what, message, self.rank, self.size) }
    }
}

impl Drop for GradSync {
    fn drop(&mut self) {
        // SAFETY: created by umcl_grad_sync_new, freed once; the parameters are still alive.
        unsafe { ffi::umcl_grad_sync_free(self.ptr) }
    }
}

fn to_vec(t: &Tensor) -> Result<Vec<i64>, DistError> {
    Vec::<i64>::try_from(t.to_device(Device::Cpu))
        .map_err(|e| DistError::Invalid(format!("gradient sync: order: {e}")))
}

/// The bridge's bucket description of `params` taken in the order of `segments`, each segment
/// bucketed on its own (the very first bucket at most [`FIRST_BUCKET_ELEMS`] when
/// `first_small`): the order as indices and the number of parameters of each bucket.
fn bucket_plan(
    params: &[&Tensor],
    segments: &[&[usize]],
    limit: usize,
    first_small: bool,
) -> Result<(Vec<i64>, Vec<i64>), DistError> {
    if params.is_empty() {
        return Err(DistError::Invalid("gradient sync: no parameters".into()));
    }
    let mut order = Vec::with_capacity(params.len());
    let mut sizes = Vec::new();
    for (k, segment) in segments.iter().enumerate() {
        let ordered: Vec<&Tensor> = segment.iter().map(|&i| params[i]).collect();
        let first = if k == 0 && first_small {
            limit.min(FIRST_BUCKET_ELEMS)
        } else {
            limit
        };
        sizes.extend(
            buckets_first(&ordered, first, limit)
                .into_iter()
                .map(|r| r.len() as i64),
        );
        order.extend(segment.iter().map(|&i| i as i64));
    }
    Ok((order, sizes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn buckets_respect_the_limit_and_the_kind() {
        let t = |n: i64, kind: Kind| Tensor::zeros([n], (kind, Device::Cpu));
        let ts = [
            t(3, Kind::Float),
            t(4, Kind::Float),
            t(9, Kind::Float),
            t(1, Kind::Float),
            t(1, Kind::Int64),
            t(2, Kind::Int64),
        ];
        let refs: Vec<&Tensor> = ts.iter().collect();
        assert_eq!(buckets(&refs, 8), vec![0..2, 2..3, 3..4, 4..6]);
        assert_eq!(
            buckets_first(&refs, 3, 8),
            vec![0..1, 1..2, 2..3, 3..4, 4..6]
        );
        assert_eq!(buckets_first(&refs, 100, 8), vec![0..4, 4..6]);
    }
}
