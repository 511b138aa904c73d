//! The losses compute in full precision whatever autocast is active.
//!
//! Autocast (`torch.autocast`, or umcl-models' `backend::autocast`) runs every matmul in bf16 or
//! fp16, including the `B x B` logits and the integer pair codes of the targets: bf16 holds
//! integers exactly only up to 256, and its 8-bit mantissa moves a logit of 50 by up to 0.1. So
//! [`clip_loss`](crate::clip_loss) and [`itl_loss`](crate::itl_loss) switch autocast off for the
//! CPU and CUDA while they build their graph ([`FullPrecision`]), and cast half-precision
//! features to fp32 first. The backward pass of those ops then runs in the precision of the
//! forward pass, as autograd records it.

/// ATen's autocast state functions, linked from libtorch (which tch links). Both
/// `c10::DeviceType` values are `int8_t` enums; C++ `bool` is one byte, as Rust's.
mod aten {
    extern "C" {
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
    }
}

/// `c10::DeviceType::CPU` and `c10::DeviceType::CUDA`.
const DEVICE_TYPES: [i8; 2] = [0, 1];

/// Autocast off for the CPU and CUDA while the guard lives; dropping it restores the previous
/// state. Guards nest.
///
/// ```
/// use umcl_losses::FullPrecision;
/// let guard = FullPrecision::new();
/// assert!(!FullPrecision::autocast_active());
/// drop(guard);
/// ```
#[must_use = "autocast is off only while the guard lives"]
pub struct FullPrecision {
    previous: [bool; 2],
}

impl FullPrecision {
    /// Switches autocast off on this thread (CPU and CUDA).
    pub fn new() -> Self {
        let mut previous = [false; 2];
        for (was, &device) in previous.iter_mut().zip(&DEVICE_TYPES) {
            // SAFETY: the ATen functions take a valid device type code and only touch this
            // thread's dispatch-key state.
            unsafe {
                *was = aten::is_autocast_enabled(device);
                if *was {
                    aten::set_autocast_enabled(device, false);
                }
            }
        }
        Self { previous }
    }

    /// Whether autocast is on for the CPU or CUDA on this thread.
    pub fn autocast_active() -> bool {
        // SAFETY: as in `new`.
        DEVICE_TYPES
            .iter()
            .any(|&device| unsafe { aten::is_autocast_enabled(device) })
    }
}

impl Default for FullPrecision {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FullPrecision {
    fn drop(&mut self) {
        for (&was, &device) in self.previous.iter().zip(&DEVICE_TYPES) {
            if was {
                // SAFETY: as in `new`.
                unsafe { aten::set_autocast_enabled(device, true) };
            }
        }
    }
}
