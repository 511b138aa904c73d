//! libtorch start-up, done once per process before any other tch call: the CUDA backend,
//! the device, the intra-op thread count, the CPU heap policy; and autocast, switched on
//! ([`autocast`]) or off ([`FullPrecision`]) through the C++ bridge.
//!
//! The torch wheel splits CUDA into `libtorch_cuda.so`, which our binaries do not link (rustc
//! links with `--as-needed`, and we build on machines without a GPU). Its static initialisers
//! register the CUDA backend, so [`init`] loads it with `dlopen` from the directory of the
//! `libtorch_cpu.so` this process loaded, or from the path in `UMCL_LIBTORCH_CUDA`. On a machine
//! without the CUDA libraries the load fails cleanly and everything runs on the CPU.
//!
//! ```no_run
//! use umcl_torch_ext::runtime::{self, BackendConfig};
//!
//! let backend = runtime::init(&BackendConfig::default())?;
//! println!("{backend}");
//! let x = tch::Tensor::ones([2, 2], (tch::Kind::Float, backend.device));
//! # Ok::<(), umcl_torch_ext::runtime::BackendError>(())
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

use tch::{Cuda, Device, Kind};

use crate::cuda_driver;
use crate::dl::Library;

/// Environment variable naming an explicit `libtorch_cuda.so` to load.
pub const CUDA_LIB_ENV: &str = "UMCL_LIBTORCH_CUDA";

/// Errors from backend start-up.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A device string that is not `auto`, `cpu`, `cuda` or `cuda:N`.
    #[error("invalid device `{0}`: expected auto, cpu, cuda or cuda:N")]
    InvalidDevice(String),
    /// CUDA was asked for but is not usable.
    #[error("device `{requested}` asked for, but CUDA is not available ({reason})")]
    CudaUnavailable {
        /// The device string as given.
        requested: String,
        /// Why CUDA is not available.
        reason: String,
    },
    /// A CUDA ordinal beyond the devices present.
    #[error("device cuda:{index} asked for, but only {count} CUDA device(s) are present")]
    NoSuchCudaDevice {
        /// The ordinal asked for.
        index: usize,
        /// The number of devices present.
        count: usize,
    },
    /// A thread count of zero.
    #[error("thread count must be at least 1")]
    ZeroThreads,
    /// A thread count above [`MAX_THREADS`].
    #[error("thread count must be at most {MAX_THREADS}, got {0}")]
    TooManyThreads(usize),
    /// Autocast asked for a dtype other than bf16 or fp16.
    #[error("autocast supports bf16 and fp16, not {0:?}")]
    AutocastKind(Kind),
}

/// Which device to run on, as the user writes it: `auto | cpu | cuda | cuda:N`.
///
/// ```
/// use umcl_torch_ext::runtime::DeviceRequest;
/// assert_eq!("cuda:1".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(1));
/// assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
/// assert!("gpu".parse::<DeviceRequest>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceRequest {
    /// The first CUDA device when CUDA is available, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// The CUDA device with this ordinal (`cuda` means `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cpu" => Ok(Self::Cpu),
            "cuda" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| BackendError::InvalidDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// What [`init`] should set up.
#[derive(Debug, Clone, Default)]
pub struct BackendConfig {
    /// The device to use. Default: [`DeviceRequest::Auto`].
    pub device: DeviceRequest,
    /// Intra-op threads. Default (`None`): the physical cores this process may run on.
    pub threads: Option<usize>,
    /// What happens to freed CPU memory. Default: [`CpuHeap::System`].
    pub cpu_heap: CpuHeap,
}

/// What happens to freed CPU memory: a policy of glibc's `malloc`, which libtorch's CPU
/// allocator (and Rust's) allocate from.
///
/// A training step allocates and frees the same large activation tensors every time. Under
/// glibc's defaults each block over the mmap threshold (at most 32 MiB) is mapped when
/// allocated and unmapped when freed, so every step maps fresh pages that the kernel must fault
/// in and zero again: on the CPU that was a fifth of a ResNet-50 + BERT-base step (measured in
/// docs/benchmarks.md). [`CpuHeap::Keep`] serves every block from the heap and never returns
/// freed memory, so later steps reuse pages already mapped, at the cost of a higher peak
/// resident size (freed holes stay mapped). glibc's per-thread arenas cannot hold blocks over
/// 64 MiB, so those are still mapped when allocated off the main thread; the forward and
/// backward passes of a training step run on the thread that calls them.
///
/// The policy is process-wide and one-way: once kept, memory stays kept for the life of the
/// process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuHeap {
    /// glibc's defaults.
    #[default]
    System,
    /// No memory maps for large blocks and no trimming of the heap (`mallopt(M_MMAP_MAX, 0)`,
    /// `mallopt(M_TRIM_THRESHOLD, -1)`). On a libc other than glibc this is `System`.
    Keep,
}

impl std::str::FromStr for CpuHeap {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "system" => Ok(Self::System),
            "keep" => Ok(Self::Keep),
            other => Err(format!("`{other}`: expected system or keep")),
        }
    }
}

impl fmt::Display for CpuHeap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::System => "system",
            Self::Keep => "keep",
        })
    }
}

/// Applies `policy` to this process's `malloc`; returns whether freed memory is now kept.
/// [`init`] calls it with [`BackendConfig::cpu_heap`].
///
/// ```
/// use umcl_torch_ext::runtime::{apply_cpu_heap, CpuHeap};
/// // `System` changes nothing (and reports whether an earlier call kept memory).
/// let kept_before = apply_cpu_heap(CpuHeap::System);
/// assert_eq!(kept_before, apply_cpu_heap(CpuHeap::System));
/// ```
pub fn apply_cpu_heap(policy: CpuHeap) -> bool {
    use std::sync::atomic::{AtomicBool, Ordering};
    static KEPT: AtomicBool = AtomicBool::new(false);
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if policy == CpuHeap::Keep && !KEPT.load(Ordering::SeqCst) {
        // SAFETY: mallopt only changes glibc's allocation parameters; both are documented
        // settings (M_TRIM_THRESHOLD -1 is the largest threshold: never trim).
        let ok = unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
        };
        KEPT.store(ok, Ordering::SeqCst);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = policy;
    KEPT.load(Ordering::SeqCst)
}

/// The outcome of loading `libtorch_cuda.so`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaLoad {
    /// Loaded from this path.
    Loaded(PathBuf),
    /// Not loaded; the reason in one line.
    Unavailable(String),
}

/// The backend as set up by [`init`]; `Display` prints the `umcl info` block.
#[derive(Debug, Clone)]
pub struct Backend {
    /// The device chosen.
    pub device: Device,
    /// Intra-op threads set.
    pub threads: usize,
    /// Whether CUDA is usable, and why not.
    pub cuda: CudaLoad,
    /// Number of CUDA devices (0 without CUDA).
    pub cuda_devices: usize,
    /// Whether cuDNN is usable.
    pub cudnn: bool,
    /// The directory of the `libtorch_cpu.so` in use, if found.
    pub torch_lib_dir: Option<PathBuf>,
    /// The libtorch version in use, read from the wheel's `version.py` when present.
    pub libtorch_version: Option<String>,
    /// Name and total memory in bytes of the chosen CUDA device.
    pub gpu: Option<(String, u64)>,
    /// The CPU heap policy in effect.
    pub cpu_heap: CpuHeap,
}

/// The libtorch version this crate was built against.
pub const LIBTORCH_BUILD_VERSION: &str = env!("UMCL_LIBTORCH_BUILD_VERSION");

/// Loads the CUDA backend (once), chooses the device and sets the thread count.
///
/// Safe to call more than once: the CUDA load happens on the first call only.
pub fn init(config: &BackendConfig) -> Result<Backend, BackendError> {
    let cuda = load_cuda().clone();
    let (cuda_devices, cudnn) = match cuda {
        CudaLoad::Loaded(_) if Cuda::is_available() => (
            usize::try_from(Cuda::device_count()).unwrap_or(0),
            Cuda::cudnn_is_available(),
        ),
        _ => (0, false),
    };
    let unavailable = || match &cuda {
        CudaLoad::Unavailable(reason) => reason.clone(),
        CudaLoad::Loaded(_) => "libtorch_cuda.so loaded, but no CUDA device is visible".into(),
    };
    let device = match config.device {
        DeviceRequest::Cpu => Device::Cpu,
        DeviceRequest::Auto if cuda_devices > 0 => Device::Cuda(0),
        DeviceRequest::Auto => Device::Cpu,
        DeviceRequest::Cuda(_) if cuda_devices == 0 => {
            return Err(BackendError::CudaUnavailable {
                requested: config.device.to_string(),
                reason: unavailable(),
            })
        }
        DeviceRequest::Cuda(index) if index >= cuda_devices => {
            return Err(BackendError::NoSuchCudaDevice {
                index,
                count: cuda_devices,
            })
        }
        DeviceRequest::Cuda(index) => Device::Cuda(index),
    };
    let threads = match config.threads {
        Some(0) => return Err(BackendError::ZeroThreads),
        Some(n) if n > MAX_THREADS => return Err(BackendError::TooManyThreads(n)),
        Some(n) => n,
        None => physical_cores(),
    };
    tch::set_num_threads(i32::try_from(threads).unwrap_or(i32::MAX));
    let cpu_heap = if apply_cpu_heap(config.cpu_heap) {
        CpuHeap::Keep
    } else {
        CpuHeap::System
    };
    let torch_lib_dir = loaded_torch_lib_dir();
    let libtorch_version = torch_lib_dir.as_deref().and_then(runtime_torch_version);
    let gpu = match device {
        Device::Cuda(index) => cuda_driver::device_name_and_memory(index),
        _ => None,
    };
    Ok(Backend {
        device,
        threads,
        cuda,
        cuda_devices,
        cudnn,
        torch_lib_dir,
        libtorch_version,
        gpu,
        cpu_heap,
    })
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let version = self.libtorch_version.as_deref().unwrap_or("unknown");
        writeln!(f, "umcl       {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(
            f,
            "libtorch   {version} (built against {LIBTORCH_BUILD_VERSION})"
        )?;
        if let Some(dir) = &self.torch_lib_dir {
            writeln!(f, "torch lib  {}", dir.display())?;
        }
        match &self.cuda {
            CudaLoad::Loaded(_) if self.cuda_devices > 0 => {
                writeln!(f, "CUDA       available, {} device(s)", self.cuda_devices)?
            }
            CudaLoad::Loaded(path) => writeln!(
                f,
                "CUDA       not available (loaded {}, but no device is visible)",
                path.display()
            )?,
            CudaLoad::Unavailable(reason) => writeln!(f, "CUDA       not available ({reason})")?,
        }
        let cudnn = if self.cudnn {
            "available"
        } else {
            "not available"
        };
        writeln!(f, "cuDNN      {cudnn}")?;
        match (&self.device, &self.gpu) {
            (Device::Cuda(i), Some((name, bytes))) => writeln!(
                f,
                "device     cuda:{i} ({name}, {:.1} GiB)",
                *bytes as f64 / (1u64 << 30) as f64
            )?,
            (Device::Cuda(i), None) => writeln!(f, "device     cuda:{i}")?,
            _ => writeln!(f, "device     cpu")?,
        }
        writeln!(f, "threads    {} (intra-op)", self.threads)?;
        write!(f, "cpu heap   {}", self.cpu_heap)
    }
}

/// The user-facing name of a device: `cpu`, `cuda:N`.
///
/// ```
/// assert_eq!(umcl_torch_ext::runtime::device_name(tch::Device::Cuda(1)), "cuda:1");
/// ```
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Cpu => "cpu".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Loads `libtorch_cuda.so` once per process; later calls return the first outcome.
pub fn load_cuda() -> &'static CudaLoad {
    static LOAD: OnceLock<CudaLoad> = OnceLock::new();
    LOAD.get_or_init(|| {
        let path = match std::env::var_os(CUDA_LIB_ENV) {
            Some(path) => PathBuf::from(path),
            None => match loaded_torch_lib_dir() {
                Some(dir) => dir.join("libtorch_cuda.so"),
                None => {
                    return CudaLoad::Unavailable(
                        "libtorch_cpu.so is not among the loaded libraries".into(),
                    )
                }
            },
        };
        if !path.exists() {
            return CudaLoad::Unavailable(format!("{} does not exist", path.display()));
        }
        match Library::open(&path) {
            Ok(_) => CudaLoad::Loaded(path),
            Err(reason) => {
                CudaLoad::Unavailable(format!("libtorch_cuda.so could not be loaded: {reason}"))
            }
        }
    })
}

/// The directory of the `libtorch_cpu.so` mapped into this process, from `/proc/self/maps`.
pub fn loaded_torch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}

/// `torch/version.py`'s `__version__` next to a wheel's `torch/lib`.
fn runtime_torch_version(lib_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lib_dir.parent()?.join("version.py")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("__version__ = "))
        .map(|v| v.trim().trim_matches(['\'', '"']).to_string())
}

/// The most intra-op threads [`init`] sets: far above any machine's cores, far below a count
/// whose start-up would hang the machine.
pub const MAX_THREADS: usize = 1024;

/// Physical cores among the CPUs this process may run on (hyper-threads counted once).
pub fn physical_cores() -> usize {
    let fallback = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) } == 0;
    if !ok {
        return fallback;
    }
    let mut cores = std::collections::BTreeSet::new();
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: cpu < CPU_SETSIZE.
        if !unsafe { libc::CPU_ISSET(cpu, &set) } {
            continue;
        }
        let topo = format!("/sys/devices/system/cpu/cpu{cpu}/topology");
        let read = |name: &str| std::fs::read_to_string(format!("{topo}/{name}")).ok();
        match (read("physical_package_id"), read("core_id")) {
            (Some(package), Some(core)) => {
                cores.insert((package.trim().to_string(), core.trim().to_string()));
            }
            _ => return fallback,
        }
    }
    if cores.is_empty() {
        fallback
    } else {
        cores.len()
    }
}

/// ATen's autocast state through the bridge (`csrc/autocast.cpp`). Devices: 0 = CPU,
/// 1 = CUDA; dtypes: c10::ScalarType codes (15 = bf16, 5 = fp16).
mod ffi {
    extern "C" {
        pub fn umcl_autocast_is_enabled(device: i32) -> bool;
        pub fn umcl_autocast_set_enabled(device: i32, enabled: bool);
        pub fn umcl_autocast_get_dtype(device: i32) -> i32;
        pub fn umcl_autocast_set_dtype(device: i32, dtype: i32);
        pub fn umcl_autocast_increment_nesting() -> i64;
        pub fn umcl_autocast_decrement_nesting() -> i64;
        pub fn umcl_autocast_clear_cache();
    }
}

/// Mixed precision for the ops run while the guard lives (like `torch.autocast`).
///
/// Matmuls and convolutions run in `kind` (bf16 or fp16); numerically sensitive ops stay fp32.
/// Dropping the guard restores the previous state. Guards nest.
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// let guard = umcl_torch_ext::runtime::autocast(Device::Cpu, Kind::BFloat16)?;
/// assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
/// drop(guard);
/// # Ok::<(), umcl_torch_ext::runtime::BackendError>(())
/// ```
pub fn autocast(device: Device, kind: Kind) -> Result<AutocastGuard, BackendError> {
    let scalar_type = match kind {
        Kind::BFloat16 => 15,
        Kind::Half => 5,
        other => return Err(BackendError::AutocastKind(other)),
    };
    let device_type = match device {
        Device::Cuda(_) => 1,
        _ => 0,
    };
    // The CUDA backend registers itself when libtorch_cuda loads: load it before autocast
    // is touched.
    let _ = load_cuda();
    // SAFETY: bridge functions taking valid device and dtype codes; they touch only this
    // thread's autocast state.
    unsafe {
        let guard = AutocastGuard {
            device_type,
            prev_enabled: ffi::umcl_autocast_is_enabled(device_type),
            prev_dtype: ffi::umcl_autocast_get_dtype(device_type),
        };
        ffi::umcl_autocast_set_dtype(device_type, scalar_type);
        ffi::umcl_autocast_set_enabled(device_type, true);
        ffi::umcl_autocast_increment_nesting();
        Ok(guard)
    }
}

/// Restores the autocast state on drop; see [`autocast`].
#[must_use = "autocast is on only while the guard lives"]
pub struct AutocastGuard {
    device_type: i32,
    prev_enabled: bool,
    prev_dtype: i32,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: as in `autocast`; mirrors torch.autocast.__exit__.
        unsafe {
            if ffi::umcl_autocast_decrement_nesting() == 0 {
                ffi::umcl_autocast_clear_cache();
            }
            ffi::umcl_autocast_set_enabled(self.device_type, self.prev_enabled);
            ffi::umcl_autocast_set_dtype(self.device_type, self.prev_dtype);
        }
    }
}

/// Autocast off for the CPU and CUDA while the guard lives; dropping it restores the previous
/// state. Guards nest. The losses hold one while they build their graph, so their results do
/// not depend on the caller's autocast.
///
/// ```
/// use tch::{Device, Kind, Tensor};
/// use umcl_torch_ext::runtime::{autocast, FullPrecision};
/// let a = Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
/// let _mixed = autocast(Device::Cpu, Kind::BFloat16)?;
/// assert!(FullPrecision::autocast_active());
/// {
///     let _fp32 = FullPrecision::new();
///     assert_eq!(a.matmul(&a).kind(), Kind::Float);
/// }
/// assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
/// # Ok::<(), umcl_torch_ext::runtime::BackendError>(())
/// ```
#[must_use = "autocast is off only while the guard lives"]
pub struct FullPrecision {
    previous: [bool; 2],
}

/// The CPU and CUDA device codes of the bridge.
const AUTOCAST_DEVICES: [i32; 2] = [0, 1];

impl FullPrecision {
    /// Switches autocast off on this thread (CPU and CUDA).
    pub fn new() -> Self {
        let mut previous = [false; 2];
        for (was, &device) in previous.iter_mut().zip(&AUTOCAST_DEVICES) {
            // SAFETY: bridge functions taking a valid device code; they touch only this
            // thread's autocast state.
            unsafe {
                *was = ffi::umcl_autocast_is_enabled(device);
                if *was {
                    ffi::umcl_autocast_set_enabled(device, false);
                }
            }
        }
        Self { previous }
    }

    /// Whether autocast is on for the CPU or CUDA on this thread.
    pub fn autocast_active() -> bool {
        // SAFETY: as in `new`.
        AUTOCAST_DEVICES
            .iter()
            .any(|&device| unsafe { ffi::umcl_autocast_is_enabled(device) })
    }
}

impl Default for FullPrecision {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FullPrecision {
    fn drop(&mut self) {
        for (&was, &device) in self.previous.iter().zip(&AUTOCAST_DEVICES) {
            if was {
                // SAFETY: as in `new`.
                unsafe { ffi::umcl_autocast_set_enabled(device, true) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_strings_parse() {
        assert_eq!(
            "auto".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Auto
        );
        assert_eq!(
            " CPU ".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cpu
        );
        assert_eq!(
            "cuda".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(0)
        );
        assert_eq!(
            "cuda:3".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(3)
        );
        for bad in ["", "gpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0"] {
            assert!(bad.parse::<DeviceRequest>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn init_on_cpu_reports_the_loaded_libtorch() {
        let backend = init(&BackendConfig {
            device: DeviceRequest::Cpu,
            threads: Some(1),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(backend.device, Device::Cpu);
        assert_eq!(tch::get_num_threads(), 1);
        let dir = backend
            .torch_lib_dir
            .as_ref()
            .expect("libtorch_cpu.so mapped");
        assert!(dir.join("libtorch_cpu.so").exists());
        let version = backend.libtorch_version.as_deref().unwrap_or("none");
        assert!(
            version.starts_with(LIBTORCH_BUILD_VERSION),
            "runtime {version} vs built {LIBTORCH_BUILD_VERSION}"
        );
        let report = backend.to_string();
        assert!(report.contains("device     cpu"), "{report}");
        assert!(report.contains("threads    1"), "{report}");
    }

    #[test]
    fn zero_threads_and_missing_cuda_devices_are_errors() {
        let zero = init(&BackendConfig {
            device: DeviceRequest::Cpu,
            threads: Some(0),
            ..Default::default()
        });
        assert!(matches!(zero, Err(BackendError::ZeroThreads)));
        if !Cuda::is_available() {
            let cuda = init(&BackendConfig {
                device: DeviceRequest::Cuda(0),
                threads: Some(1),
                ..Default::default()
            });
            assert!(matches!(cuda, Err(BackendError::CudaUnavailable { .. })));
        }
    }

    #[test]
    fn physical_cores_is_positive_and_bounded() {
        let cores = physical_cores();
        let logical = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(cores >= 1 && cores <= logical, "{cores} of {logical}");
    }

    #[test]
    fn bf16_autocast_on_cpu_changes_matmul_dtype_and_restores() {
        let a = tch::Tensor::ones([4, 4], (Kind::Float, Device::Cpu));
        {
            let _outer = autocast(Device::Cpu, Kind::BFloat16).unwrap();
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            {
                let _inner = autocast(Device::Cpu, Kind::BFloat16).unwrap();
                assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
            }
            // Still on after the inner guard is dropped.
            assert_eq!(a.matmul(&a).kind(), Kind::BFloat16);
        }
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        assert!(matches!(
            autocast(Device::Cpu, Kind::Float),
            Err(BackendError::AutocastKind(Kind::Float))
        ));
    }
}
