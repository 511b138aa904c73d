//! Distributed data parallelism on c10d, PyTorch's own distributed engine inside libtorch:
//! rendezvous through a [`Store`] (c10d's TCPStore), a [`ProcessGroup`] on Gloo (CPU tensors)
//! or NCCL (CUDA tensors, through the optional `libumcl_nccl.so`, see [`ProcessGroup::nccl`]),
//! and the collectives a data-parallel trainer needs ([`ProcessGroup::all_reduce`],
//! [`ProcessGroup::all_gather`], [`ProcessGroup::broadcast`], [`ProcessGroup::barrier`]).
//!
//! On Gloo every collective is bounded by the group's timeout and returns a [`DistError`] when a
//! peer fails or does not answer in time; nothing aborts the process. On NCCL the collectives
//! are queued on the CUDA stream and NCCL's watchdog enforces the timeout.
//!
//! [`LaunchEnv`] reads the environment that torchrun, Slurm scripts and Kubernetes operators set
//! (`MASTER_ADDR`, `MASTER_PORT`, `RANK`, `WORLD_SIZE`, `LOCAL_RANK`), and [`init`] turns it into
//! a process group:
//!
//! ```no_run
//! use std::time::Duration;
//! use umcl_torch_ext::dist::{self, LaunchEnv};
//!
//! let env = LaunchEnv::from_env()?.expect("started by a launcher");
//! let group = dist::init(&env, Duration::from_secs(60))?;
//! let mut t = tch::Tensor::from_slice(&[group.rank() as f32]);
//! group.all_reduce(&mut t, dist::ReduceOp::Sum)?;
//! # Ok::<(), dist::DistError>(())
//! ```

use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::ExtError;

mod group;
mod launch;
mod nccl;
mod store;

pub(crate) use group::check_ranked;
pub use group::{GlooDevice, ProcessGroup};
pub use launch::{LaunchEnv, LAUNCH_VARIABLES};
pub use nccl::{nccl_library_candidates, NCCL_LIBRARY};
pub use store::Store;

pub(crate) mod ffi {
    use std::ffi::{c_char, c_void};

    extern "C" {
        pub fn umcl_c10d_store_new(
            host: *const c_char,
            port: u16,
            is_server: bool,
            world_size: i64,
            wait_workers: bool,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn umcl_c10d_store_port(store: *mut c_void) -> u16;
        pub fn umcl_c10d_store_free(store: *mut c_void);
        pub fn umcl_c10d_gloo_new(
            store: *mut c_void,
            rank: i32,
            size: i32,
            timeout_ms: i64,
            iface: *const c_char,
            hostname: *const c_char,
            threads: i32,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn umcl_c10d_group_free(group: *mut c_void);
        pub fn umcl_c10d_all_reduce(
            group: *mut c_void,
            tensor: *mut c_void,
            op: i32,
            timeout_ms: i64,
        ) -> *mut c_char;
        pub fn umcl_c10d_all_gather(
            group: *mut c_void,
            input: *mut c_void,
            timeout_ms: i64,
            out: *mut *mut c_void,
        ) -> *mut c_char;
        pub fn umcl_c10d_broadcast(
            group: *mut c_void,
            tensor: *mut c_void,
            root: i32,
            timeout_ms: i64,
        ) -> *mut c_char;
        pub fn umcl_c10d_barrier(group: *mut c_void, timeout_ms: i64) -> *mut c_char;
    }
}

/// What can go wrong in distributed setup or communication.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DistError {
    /// The launch environment is incomplete or contradicts itself.
    #[error("distributed launch environment: {0}")]
    Env(String),
    /// A c10d call failed (a peer closed its connection, a timeout, a port in use, ...).
    #[error("{0}")]
    Comm(ExtError),
    /// An argument the bridge cannot take (a CUDA tensor on Gloo, a non-contiguous tensor).
    #[error("{0}")]
    Invalid(String),
}

// By hand rather than `#[from]`: the message already holds the cause, which an error-chain
// printer would otherwise repeat.
impl From<ExtError> for DistError {
    fn from(e: ExtError) -> Self {
        DistError::Comm(e)
    }
}

pub(crate) fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

/// The reduction of [`ProcessGroup::all_reduce`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise maximum.
    Max,
    /// Element-wise minimum.
    Min,
}

/// Which c10d backend a process group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Gloo: CPU tensors, TCP between ranks.
    Gloo,
    /// NCCL: CUDA tensors, `cuda:LOCAL_RANK` per rank ([`ProcessGroup::nccl`]).
    Nccl,
}

/// Forms the Gloo process group described by `env`: rank 0 starts the TCPStore on
/// `MASTER_PORT` (an error if the port is taken), every rank connects to it and joins the group.
/// `timeout` bounds the rendezvous and every later collective.
pub fn init(env: &LaunchEnv, timeout: Duration) -> Result<ProcessGroup, DistError> {
    init_backend(env, Backend::Gloo, timeout)
}

/// Like [`init`], on the given backend; an NCCL rank uses CUDA device `LOCAL_RANK`.
pub fn init_backend(
    env: &LaunchEnv,
    backend: Backend,
    timeout: Duration,
) -> Result<ProcessGroup, DistError> {
    let store = rendezvous(env, timeout)?;
    match backend {
        Backend::Gloo => ProcessGroup::gloo(
            store,
            env.rank,
            env.world_size,
            &env.gloo_device(),
            0,
            timeout,
        ),
        Backend::Nccl => {
            ProcessGroup::nccl(store, env.rank, env.world_size, env.local_rank, timeout)
        }
    }
}

/// Rank 0 serves the TCPStore on `MASTER_PORT`, every rank connects to it.
fn rendezvous(env: &LaunchEnv, timeout: Duration) -> Result<Store, DistError> {
    if !env.is_loopback() {
        // Resolve early so a typo in MASTER_ADDR is named, not reported as a connect timeout.
        (env.master_addr.as_str(), env.master_port)
            .to_socket_addrs()
            .map_err(|e| {
                DistError::Env(format!(
                    "MASTER_ADDR=`{}` does not resolve: {e}",
                    env.master_addr
                ))
            })?;
    }
    let is_server = env.rank == 0;
    Store::connect(
        &env.master_addr,
        env.master_port,
        is_server,
        env.world_size,
        timeout,
    )
    .map_err(|e| match (is_server, e) {
        (true, DistError::Comm(c)) => DistError::Comm(ExtError {
            context: "TCPStore",
            message: format!(
                "rank 0 could not serve the rendezvous store on {}:{} (is the port in use, or \
                 did a rank not start?): {}",
                env.master_addr, env.master_port, c.message
            ),
        }),
        (false, DistError::Comm(c)) => DistError::Comm(ExtError {
            context: "TCPStore",
            message: format!(
                "rank {} could not reach the rendezvous store at {}:{}: {}",
                env.rank, env.master_addr, env.master_port, c.message
            ),
        }),
        (_, other) => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const FULL: [(&str, &str); 4] = [
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];

    #[test]
    fn no_variables_mean_no_distributed_run() {
        assert_eq!(LaunchEnv::from_lookup(lookup(&[])).unwrap(), None);
    }

    #[test]
    fn full_environment_parses_with_local_defaults() {
        let env = LaunchEnv::from_lookup(lookup(&FULL)).unwrap().unwrap();
        assert_eq!((env.rank, env.world_size), (1, 2));
        assert_eq!((env.local_rank, env.local_world_size), (1, 2));
        assert_eq!(env.master_port, 29500);
        assert!(env.is_loopback());
    }

    #[test]
    fn missing_variables_are_named() {
        let err = LaunchEnv::from_lookup(lookup(&FULL[..2]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_ADDR, MASTER_PORT missing"), "{err}");
    }

    #[test]
    fn conflicting_variables_are_named() {
        let mut vars = FULL.to_vec();
        vars[0] = ("RANK", "2");
        let err = LaunchEnv::from_lookup(lookup(&vars))
            .unwrap_err()
            .to_string();
        assert!(err.contains("RANK=2 is not below WORLD_SIZE=2"), "{err}");
        let mut vars = FULL.to_vec();
        vars.push(("LOCAL_RANK", "3"));
        let err = LaunchEnv::from_lookup(lookup(&vars))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LOCAL_RANK=3"), "{err}");
        let mut vars = FULL.to_vec();
        vars[3] = ("MASTER_PORT", "http");
        let err = LaunchEnv::from_lookup(lookup(&vars))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_PORT=`http`"), "{err}");
    }
}
