//! The FFI side of the libjpeg shim, `csrc/jpeg_gray.c` (built by `build.rs` with the
//! cargo feature `libjpeg`): single-component JPEGs decoded by the system's libjpeg-turbo.

use std::ffi::{c_char, c_int, CStr};

extern "C" {
    fn umcl_jpeg_gray(
        data: *const u8,
        len: usize,
        scale_denom: c_int,
        region: *const usize,
        out: *mut u8,
        cap: usize,
        width: *mut usize,
        height: *mut usize,
        msg: *mut c_char,
        msg_cap: usize,
    ) -> c_int;
}

/// Decodes a grayscale JPEG scaled by `1 / scale_denom` into `buf[..w * h]` (growing it
/// when needed); `Ok(None)` when the JPEG is not grayscale.
///
/// With `region = [row0, row1, col0, col1]`, only those rows and columns of `buf` are
/// decoded (see the shim); the rest keeps what it held.
pub(super) fn decode_gray(
    bytes: &[u8],
    scale_denom: c_int,
    region: Option<[usize; 4]>,
    buf: &mut Vec<u8>,
) -> Result<Option<(usize, usize)>, String> {
    let mut msg = [0 as c_char; 200];
    for _ in 0..2 {
        let (mut w, mut h) = (0usize, 0usize);
        // SAFETY: the shim reads `bytes` and writes at most `buf.len()` bytes of `buf`,
        // a message of at most `msg.len()` bytes (NUL included) and the two sizes.
        let status = unsafe {
            umcl_jpeg_gray(
                bytes.as_ptr(),
                bytes.len(),
                scale_denom,
                region.as_ref().map_or(std::ptr::null(), |r| r.as_ptr()),
                buf.as_mut_ptr(),
                buf.len(),
                &mut w,
                &mut h,
                msg.as_mut_ptr(),
                msg.len(),
            )
        };
        match status {
            0 if w > 0 && h > 0 => return Ok(Some((w, h))),
            0 => return Err("image has no pixels".into()),
            2 => return Ok(None),
            3 => {
                super::decode::check_pixels(w, h)?;
                let len = w
                    .checked_mul(h)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| "image has no pixels".to_string())?;
                buf.resize(len, 0);
            }
            _ => {
                // SAFETY: the shim always NUL-terminates the message it writes.
                let text = unsafe { CStr::from_ptr(msg.as_ptr()) };
                return Err(format!("libjpeg: {}", text.to_string_lossy()));
            }
        }
    }
    Err("internal: the decode buffer did not fit".into())
}
