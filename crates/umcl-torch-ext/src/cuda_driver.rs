//! The CUDA driver API (libcuda, which every GPU host has), opened once: device names and
//! memory without a CUDA toolkit. Everything is `None` on a machine without the driver.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use crate::dl::Library;

type CuInit = unsafe extern "C" fn(u32) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CuMemGetInfo = unsafe extern "C" fn(*mut usize, *mut usize) -> c_int;

struct Driver {
    device_get: CuDeviceGet,
    device_name: CuDeviceGetName,
    device_total_mem: CuDeviceTotalMem,
    mem_get_info: CuMemGetInfo,
}

fn driver() -> Option<&'static Driver> {
    static DRIVER: OnceLock<Option<Driver>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let lib = Library::open_c(c"libcuda.so.1").ok()?;
            // SAFETY: the driver API's documented C signatures, as the type aliases spell them.
            unsafe {
                let init = std::mem::transmute::<*mut c_void, CuInit>(lib.symbol(c"cuInit").ok()?);
                if init(0) != 0 {
                    return None;
                }
                Some(Driver {
                    device_get: std::mem::transmute::<*mut c_void, CuDeviceGet>(
                        lib.symbol(c"cuDeviceGet").ok()?,
                    ),
                    device_name: std::mem::transmute::<*mut c_void, CuDeviceGetName>(
                        lib.symbol(c"cuDeviceGetName").ok()?,
                    ),
                    device_total_mem: std::mem::transmute::<*mut c_void, CuDeviceTotalMem>(
                        lib.symbol(c"cuDeviceTotalMem_v2").ok()?,
                    ),
                    mem_get_info: std::mem::transmute::<*mut c_void, CuMemGetInfo>(
                        lib.symbol(c"cuMemGetInfo_v2").ok()?,
                    ),
                })
            }
        })
        .as_ref()
}

/// The name and total memory in bytes of CUDA device `index`.
pub fn device_name_and_memory(index: usize) -> Option<(String, u64)> {
    let d = driver()?;
    // SAFETY: driver calls with the documented signatures and a buffer of the stated size.
    unsafe {
        let mut device: c_int = 0;
        if (d.device_get)(&mut device, c_int::try_from(index).ok()?) != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 256];
        if (d.device_name)(buf.as_mut_ptr(), buf.len() as c_int, device) != 0 {
            return None;
        }
        let mut bytes = 0usize;
        if (d.device_total_mem)(&mut bytes, device) != 0 {
            return None;
        }
        let name = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
        Some((name, bytes as u64))
    }
}

/// `(free, total)` bytes of the current CUDA context's device (what
/// `torch.cuda.mem_get_info` reports); `None` without a context.
pub fn memory_info() -> Option<(u64, u64)> {
    let d = driver()?;
    let (mut free, mut total) = (0usize, 0usize);
    // SAFETY: cuMemGetInfo_v2(size_t* free, size_t* total) in the calling thread's context.
    if unsafe { (d.mem_get_info)(&mut free, &mut total) } != 0 {
        return None;
    }
    Some((free as u64, total as u64))
}
