//! The losses compute in full precision whatever autocast is active.
//!
//! Autocast (`torch.autocast`, or umcl-torch-ext's `runtime::autocast`) runs every matmul in bf16 or
//! fp16, including the `B x B` logits and the integer pair codes of the targets: bf16 holds
//! integers exactly only up to 256, and its 8-bit mantissa moves a logit of 50 by up to 0.1. So
//! [`clip_loss`](crate::clip_loss) and [`itl_loss`](crate::itl_loss) switch autocast off for the
//! CPU and CUDA while they build their graph ([`FullPrecision`], umcl-torch-ext's switch
//! through its C++ bridge), and cast half-precision
//! features to fp32 first. The backward pass of those ops then runs in the precision of the
//! forward pass, as autograd records it.

pub use umcl_torch_ext::runtime::FullPrecision;
