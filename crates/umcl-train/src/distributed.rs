//! Data-parallel training over several processes, on c10d's process groups
//! ([`umcl_torch_ext::dist`]): Gloo when the run is on the CPU, NCCL when it is on CUDA (each
//! rank on `cuda:LOCAL_RANK`).
//!
//! A run is distributed when the process is started with torchrun's environment (`RANK`,
//! `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; `umcl train --nproc N` sets it for N local
//! workers). Then, per optimizer step of global batch `B` over `W` ranks:
//!
//! 1. each rank loads its contiguous `B / W` part of the batch one process would load
//!    ([`umcl_data::loader::Loader::epoch_shard`]);
//! 2. each rank encodes its part; the features of all ranks are all-gathered, with this rank's
//!    own rows kept as the live tensors ([`Dist::gather_with_local`]), so every rank computes
//!    the loss of the whole batch and gradients flow to its own features (open_clip's "gather
//!    with grad" result without a backward collective);
//! 3. the parameter gradients are summed over ranks in buckets ([`Dist::reduce_grads`]), each
//!    bucket's all-reduce starting inside the backward pass as soon as its gradients are ready
//!    ([`Dist::arm`], [`umcl_torch_ext::grad_sync`]). Terms that reach parameters other than
//!    through the rank's own features (the logit scale, the class prompts) are kept on rank 0
//!    only, so the sum is the gradient of the one-process loss;
//! 4. every rank applies the same update, so the replicas stay equal; they start equal because
//!    rank 0's weights are broadcast after initialisation or resume ([`Dist::broadcast_vars`]).
//!
//! Rank 0 alone writes checkpoints, metrics, the report and progress.

use std::time::Duration;

use tch::{Device, Kind, Tensor};
pub use umcl_torch_ext::dist::LAUNCH_VARIABLES;
use umcl_torch_ext::dist::{self, Backend, LaunchEnv, ProcessGroup, ReduceOp};
use umcl_torch_ext::grad_sync::{buckets, GradSync, Overlap};

use crate::config::{DistConfig, TrainConfig};
use crate::error::TrainError;

/// This process's place in a data-parallel run.
pub struct Dist {
    group: ProcessGroup,
    bucket_elems: usize,
    /// Where the group's tensors live: the CPU for Gloo, this rank's GPU for NCCL.
    device: Device,
    /// Whether [`Dist::hook_grads`] sets up the overlapped all-reduce.
    overlap: bool,
    /// The overlapped all-reduce, once hooked.
    sync: Option<GradSync>,
}

impl Dist {
    /// Joins the run described by `env` (from [`LaunchEnv::from_env`]), on Gloo for a CPU
    /// `device` and on NCCL for a CUDA one (which must be `cuda:LOCAL_RANK`). A batch the ranks
    /// cannot split evenly or a failed rendezvous is an error.
    pub fn join(cfg: &TrainConfig, env: &LaunchEnv, device: Device) -> Result<Self, TrainError> {
        let world = env.world_size;
        let bad = |key: &str, reason: String| {
            TrainError::Config(crate::config::ConfigError::Invalid {
                key: key.into(),
                reason,
            })
        };
        if !cfg.data.batch_size.is_multiple_of(world) {
            return Err(bad(
                "data.batch_size",
                format!(
                    "{} does not split evenly over WORLD_SIZE={world} ranks",
                    cfg.data.batch_size
                ),
            ));
        }
        let local = cfg.data.batch_size / world;
        if cfg.data.accum_steps > local {
            return Err(bad(
                "data.accum_steps",
                format!(
                    "{} micro-batches do not fit in a per-rank batch of {local}",
                    cfg.data.accum_steps
                ),
            ));
        }
        if cfg.data.skip_bad && world > 1 {
            // A skipped sample would leave the ranks with batches of different sizes.
            return Err(bad(
                "data.skip_bad",
                "is not supported in distributed runs (the ranks' batches must stay equal)".into(),
            ));
        }
        if let Device::Cuda(index) = device {
            if index != env.local_rank {
                return Err(bad(
                    "run.device",
                    format!(
                        "cuda:{index}, but an NCCL rank trains on cuda:LOCAL_RANK = cuda:{}",
                        env.local_rank
                    ),
                ));
            }
        }
        Self::form(env, device, &cfg.dist)
    }

    /// A data-parallel run of one rank on 127.0.0.1 (Gloo for a CPU `device`, NCCL for a CUDA
    /// one), with the buckets and overlap of `cfg` (its timeout is replaced by 120 s): the
    /// trainer's distributed code path without other ranks, to measure its cost against the
    /// plain step (`umcl bench step --dist`).
    pub fn single(device: Device, cfg: &DistConfig) -> Result<Self, TrainError> {
        let env = LaunchEnv {
            master_addr: "127.0.0.1".into(),
            master_port: 0, // the OS chooses
            rank: 0,
            world_size: 1,
            local_rank: match device {
                Device::Cuda(index) => index,
                _ => 0,
            },
            local_world_size: 1,
        };
        let cfg = DistConfig {
            timeout_s: 120,
            ..cfg.clone()
        };
        Self::form(&env, device, &cfg)
    }

    /// Forms the group of `env` on the backend of `device`: NCCL for CUDA, else Gloo.
    fn form(env: &LaunchEnv, device: Device, cfg: &DistConfig) -> Result<Self, TrainError> {
        let backend = match device {
            Device::Cuda(_) => Backend::Nccl,
            _ => Backend::Gloo,
        };
        let group = dist::init_backend(env, backend, Duration::from_secs(cfg.timeout_s))?;
        Ok(Self {
            group,
            bucket_elems: ((cfg.bucket_mb * 1024.0 * 1024.0) / 4.0).max(1.0) as usize,
            device,
            overlap: cfg.overlap,
            sync: None,
        })
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.group.rank()
    }

    /// The number of ranks.
    pub fn world(&self) -> usize {
        self.group.size()
    }

    /// `x` of every rank concatenated along dimension 0 in rank order, with this rank's rows
    /// being `x` itself (gradients flow into them).
    pub fn gather_with_local(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.group.all_gather_with_local(x)?)
    }

    /// `x` of every rank concatenated along dimension 0 in rank order (no gradient).
    pub fn gather(&self, x: &Tensor) -> Result<Tensor, TrainError> {
        Ok(self.group.all_gather(x)?)
    }

    /// A flag of every rank, in rank order.
    pub fn gather_flags(&self, flags: &[bool]) -> Result<Vec<bool>, TrainError> {
        let t = Tensor::from_slice(&flags.iter().map(|&f| i64::from(f)).collect::<Vec<_>>())
            .to_device(self.device);
        let all = Vec::<i64>::try_from(self.group.all_gather(&t)?.to_device(Device::Cpu))?;
        Ok(all.into_iter().map(|v| v != 0).collect())
    }

    /// Copies rank 0's values of `vars` into every rank's, in buckets.
    pub fn broadcast_vars(&self, vars: &[Tensor]) -> Result<(), TrainError> {
        let _guard = tch::no_grad_guard();
        let refs: Vec<&Tensor> = vars.iter().collect();
        for range in buckets(&refs, self.bucket_elems) {
            let bucket = &refs[range];
            let views: Vec<Tensor> = bucket.iter().map(|v| v.detach().reshape([-1])).collect();
            let kinds: Vec<Kind> = bucket.iter().map(|v| v.kind()).collect();
            // One flat buffer per bucket in the widest kind of the bucket (f64 keeps every
            // f32/i64 value exactly up to 2^53).
            let mut flat = Tensor::cat(
                &views
                    .iter()
                    .map(|v| v.to_kind(Kind::Double))
                    .collect::<Vec<_>>(),
                0,
            );
            self.group.broadcast(&mut flat, 0)?;
            let mut offset = 0;
            for ((var, view), kind) in bucket.iter().zip(&views).zip(kinds) {
                let n = view.numel() as i64;
                let part = flat.narrow(0, offset, n).to_kind(kind).view_as(var);
                let mut target = var.detach();
                target.copy_(&part);
                offset += n;
            }
        }
        Ok(())
    }

    /// Hooks the trainable `vars` for the overlapped all-reduce when `dist.overlap` is on (a
    /// no-op otherwise). Call it once, before the first step, with the tensors later passed to
    /// [`Dist::reduce_grads`].
    pub fn hook_grads(&mut self, vars: &[Tensor]) -> Result<(), TrainError> {
        if !self.overlap || self.sync.is_some() {
            return Ok(());
        }
        let trainable: Vec<&Tensor> = vars.iter().filter(|v| v.requires_grad()).collect();
        if trainable.is_empty() {
            return Ok(());
        }
        self.sync = Some(GradSync::new(&self.group, &trainable, self.bucket_elems)?);
        Ok(())
    }

    /// Call right before the last backward pass of a step (the only one without gradient
    /// accumulation): with the overlapped all-reduce, buckets start inside it.
    pub fn arm(&self) -> Result<(), TrainError> {
        if let Some(sync) = &self.sync {
            sync.arm()?;
        }
        Ok(())
    }

    /// Sums the gradients of the trainable `vars` over all ranks, in buckets of the configured
    /// size: finishes the overlapped all-reduce started by [`Dist::arm`] when
    /// [`Dist::hook_grads`] set it up, else all-reduces every bucket now. A gradient that
    /// exists on some rank but not on this one counts as zero here (and is created); one that
    /// exists on no rank stays absent, as in a one-process run.
    pub fn reduce_grads(&mut self, vars: &[Tensor]) -> Result<(), TrainError> {
        let Some(sync) = &mut self.sync else {
            return self.all_reduce_grads(vars);
        };
        sync.finish()?;
        // After the first step, buckets follow the order gradients became ready (once).
        sync.rebuild(&self.group)?;
        Ok(())
    }

    /// Of the last step, with the overlapped all-reduce: how many gradient buckets started
    /// inside the backward pass.
    pub fn overlap(&self) -> Option<Overlap> {
        self.sync.as_ref().map(GradSync::overlap)
    }

    /// [`Dist::reduce_grads`] after the backward pass, bucket by bucket.
    fn all_reduce_grads(&self, vars: &[Tensor]) -> Result<(), TrainError> {
        let trainable: Vec<&Tensor> = vars.iter().filter(|v| v.requires_grad()).collect();
        let has: Vec<f32> = trainable
            .iter()
            .map(|v| if v.grad().defined() { 1.0 } else { 0.0 })
            .collect();
        let mut any = Tensor::from_slice(&has).to_device(self.device);
        self.group.all_reduce(&mut any, ReduceOp::Max)?;
        let any = Vec::<f32>::try_from(any.to_device(Device::Cpu))?;
        let missing: Vec<&Tensor> = trainable
            .iter()
            .zip(any.iter().zip(&has))
            .filter(|(_, (a, h))| **a > 0.0 && **h == 0.0)
            .map(|(v, _)| *v)
            .collect();
        if !missing.is_empty() {
            // Zero gradients for them: a backward pass of a zero-weighted sum creates them.
            let zero = Tensor::stack(
                &missing
                    .iter()
                    .map(|v| v.sum(Kind::Float) * 0.0)
                    .collect::<Vec<_>>(),
                0,
            )
            .sum(Kind::Float);
            zero.backward();
        }
        let grads: Vec<Tensor> = trainable
            .iter()
            .zip(&any)
            .filter(|(_, a)| **a > 0.0)
            .map(|(v, _)| v.grad())
            .collect();
        let _guard = tch::no_grad_guard();
        let refs: Vec<&Tensor> = grads.iter().collect();
        for range in buckets(&refs, self.bucket_elems) {
            let bucket = &refs[range];
            let mut flat = Tensor::cat(
                &bucket.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
                0,
            );
            self.group.all_reduce(&mut flat, ReduceOp::Sum)?;
            let mut offset = 0;
            for g in bucket {
                let n = g.numel() as i64;
                let mut target = g.shallow_clone();
                target.copy_(&flat.narrow(0, offset, n).view_as(g));
                offset += n;
            }
        }
        Ok(())
    }

    /// Returns once every rank has arrived.
    pub fn barrier(&self) -> Result<(), TrainError> {
        Ok(self.group.barrier()?)
    }
}
