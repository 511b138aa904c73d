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

use std::ffi::{c_void, CString};

use crate::dl::Library;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::Duration;

use tch::Tensor;

use crate::{check, ExtError};

mod ffi {
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

/// A c10d TCPStore: the key-value server (on rank 0) and clients through which the ranks of a
/// group find each other.
pub struct Store {
    ptr: *mut c_void,
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
    /// `cargo xtask gpu-bundle`), found as described in [`nccl_library_candidates`]. Without
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

/// The file name of the optional NCCL library.
pub const NCCL_LIBRARY: &str = "libumcl_nccl.so";

type NcclNew = unsafe extern "C" fn(
    store: *mut c_void,
    rank: i32,
    size: i32,
    timeout_ms: i64,
    device_index: i32,
    out: *mut *mut c_void,
) -> *mut std::ffi::c_char;

/// Where [`ProcessGroup::nccl`] looks for [`NCCL_LIBRARY`], in order: the file named by
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
fn nccl_constructor() -> Result<NcclNew, DistError> {
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

/// The torchrun variables a launcher sets for each worker: the four [`LaunchEnv::from_env`]
/// requires (`RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), then the two it defaults.
pub const LAUNCH_VARIABLES: [&str; 6] = [
    "RANK",
    "WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
];

/// The torchrun-style environment of one worker process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// `MASTER_ADDR`: the host of rank 0's store.
    pub master_addr: String,
    /// `MASTER_PORT`: the store's port.
    pub master_port: u16,
    /// `RANK`: this process's global rank.
    pub rank: usize,
    /// `WORLD_SIZE`: the number of processes.
    pub world_size: usize,
    /// `LOCAL_RANK`: the rank on this node (defaults to `RANK`).
    pub local_rank: usize,
    /// `LOCAL_WORLD_SIZE`: processes on this node (defaults to `WORLD_SIZE`).
    pub local_world_size: usize,
}

impl LaunchEnv {
    /// Reads the launch variables from the process environment. `Ok(None)` when none of
    /// `RANK`, `WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT` is set (a plain single-process run);
    /// an error naming the variable when some are set but the set is incomplete, unparsable or
    /// contradictory.
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`LaunchEnv::from_env`], reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let required = &LAUNCH_VARIABLES[..4];
        let present: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| get(k).is_some())
            .collect();
        if present.is_empty() {
            return Ok(None);
        }
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|k| get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(DistError::Env(format!(
                "{} set but {} missing (a distributed run needs all of RANK, WORLD_SIZE, \
                 MASTER_ADDR, MASTER_PORT)",
                present.join(", "),
                missing.join(", ")
            )));
        }
        let num = |k: &str| -> Result<Option<usize>, DistError> {
            get(k)
                .map(|v| {
                    v.trim().parse::<usize>().map_err(|_| {
                        DistError::Env(format!("{k}=`{v}` is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let rank = num("RANK")?.unwrap_or(0);
        let world_size = num("WORLD_SIZE")?.unwrap_or(0);
        if world_size == 0 {
            return Err(DistError::Env("WORLD_SIZE must be at least 1".into()));
        }
        if rank >= world_size {
            return Err(DistError::Env(format!(
                "RANK={rank} is not below WORLD_SIZE={world_size}"
            )));
        }
        let local_world_size = num("LOCAL_WORLD_SIZE")?.unwrap_or(world_size);
        let local_rank = num("LOCAL_RANK")?.unwrap_or(rank);
        if local_world_size == 0 || local_world_size > world_size {
            return Err(DistError::Env(format!(
                "LOCAL_WORLD_SIZE={local_world_size} must be in 1..=WORLD_SIZE={world_size}"
            )));
        }
        if local_rank >= local_world_size {
            return Err(DistError::Env(format!(
                "LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world_size}"
            )));
        }
        let port_text = get("MASTER_PORT").unwrap_or_default();
        let master_port = port_text
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                DistError::Env(format!(
                    "MASTER_PORT=`{port_text}` is not a port in 1..=65535"
                ))
            })?;
        let master_addr = get("MASTER_ADDR").unwrap_or_default().trim().to_owned();
        if master_addr.is_empty() {
            return Err(DistError::Env("MASTER_ADDR is empty".into()));
        }
        Ok(Some(Self {
            master_addr,
            master_port,
            rank,
            world_size,
            local_rank,
            local_world_size,
        }))
    }

    /// Whether `MASTER_ADDR` names this machine's loopback (`localhost`, `127.x.y.z`, `::1`).
    pub fn is_loopback(&self) -> bool {
        if self.master_addr == "localhost" {
            return true;
        }
        self.master_addr
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    }

    /// Gloo's transport device as torch chooses it: `GLOO_SOCKET_IFNAME` when set, the
    /// loopback address for a loopback `MASTER_ADDR`, else the host name's address.
    pub fn gloo_device(&self) -> GlooDevice {
        match std::env::var("GLOO_SOCKET_IFNAME") {
            Ok(iface) if !iface.is_empty() => GlooDevice::Interface(iface),
            _ if self.is_loopback() => GlooDevice::Hostname("127.0.0.1".into()),
            _ => GlooDevice::Default,
        }
    }
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
