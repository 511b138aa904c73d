//! The hand-written x86-64 kernels of the resize (AVX2 horizontal pass, AVX 8 x 8 transpose)
//! and the run-time check that picks them; each gives the scalar code's values bit for bit.

#[cfg(target_arch = "x86_64")]
use super::resample::{strips_body, Pixel, Taps};

/// Whether the AVX2 code paths run: the CPU has AVX2 (and, in unit tests, they have not been
/// turned off to compare them with the scalar code, which computes the same values).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn use_avx2() -> bool {
    #[cfg(test)]
    if SCALAR_ONLY.with(|c| c.get()) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx2")
}

#[cfg(test)]
thread_local! {
    /// Turns the AVX2 paths off on this thread (unit tests only).
    pub(crate) static SCALAR_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// [`strips_body`] compiled with AVX2 enabled, so its loops vectorise 8 wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn strips_avx2<P: Pixel>(
    src: &[P],
    w: usize,
    tx: &Taps,
    ty: &Taps,
    col_lo: usize,
    cols: usize,
    gain: f32,
    vert: &mut [f32],
    vert_t: &mut [f32],
    out_h: usize,
    win: [usize; 4],
    out_t: &mut [f32],
) {
    strips_body::<P, true>(
        src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
    );
}

/// Four output columns of the horizontal pass of [`strips_body`] (8 rows each): the same sums
/// in the same order, in AVX registers. `at[j]` is the first group of column `j`, `wt` its
/// `n` weights after those of the columns before; the results go to `out_t[o[j]..o[j] + 8]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn horizontal4_avx2(
    vert_t: &[f32],
    at: &[usize; 4],
    wt: &[f32],
    n: usize,
    o: &[usize; 4],
    out_t: &mut [f32],
) {
    use std::arch::x86_64::*;
    let vp = vert_t.as_ptr();
    let wp = wt.as_ptr();
    let mut a = [_mm256_setzero_ps(); 4];
    for k in 0..n {
        for j in 0..4 {
            let wk = _mm256_set1_ps(*wp.add(j * n + k));
            let v = _mm256_loadu_ps(vp.add(at[j] + k * 8));
            a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(wk, v));
        }
    }
    let op = out_t.as_mut_ptr();
    for j in 0..4 {
        _mm256_storeu_ps(op.add(o[j]), a[j]);
    }
}

/// The 8 x 8 blocks of [`transpose_into`] in rows `0..r8` and columns `0..c8` (multiples of
/// 8).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
pub(super) unsafe fn transpose_blocks_avx(
    src: &[f32],
    rows: usize,
    cols: usize,
    r8: usize,
    c8: usize,
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
    for r0 in (0..r8).step_by(8) {
        for c0 in (0..c8).step_by(8) {
            let at = |k: usize| sp.add((r0 + k) * cols + c0);
            let (a0, a1, a2, a3) = (
                _mm256_loadu_ps(at(0)),
                _mm256_loadu_ps(at(1)),
                _mm256_loadu_ps(at(2)),
                _mm256_loadu_ps(at(3)),
            );
            let (a4, a5, a6, a7) = (
                _mm256_loadu_ps(at(4)),
                _mm256_loadu_ps(at(5)),
                _mm256_loadu_ps(at(6)),
                _mm256_loadu_ps(at(7)),
            );
            let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
            let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
            let (t4, t5) = (_mm256_unpacklo_ps(a4, a5), _mm256_unpackhi_ps(a4, a5));
            let (t6, t7) = (_mm256_unpacklo_ps(a6, a7), _mm256_unpackhi_ps(a6, a7));
            let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
            let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
            let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
            let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
            let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
            let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
            let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
            let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
            let to = |k: usize| dp.add((c0 + k) * rows + r0);
            _mm256_storeu_ps(to(0), _mm256_permute2f128_ps::<0x20>(s0, s4));
            _mm256_storeu_ps(to(1), _mm256_permute2f128_ps::<0x20>(s1, s5));
            _mm256_storeu_ps(to(2), _mm256_permute2f128_ps::<0x20>(s2, s6));
            _mm256_storeu_ps(to(3), _mm256_permute2f128_ps::<0x20>(s3, s7));
            _mm256_storeu_ps(to(4), _mm256_permute2f128_ps::<0x31>(s0, s4));
            _mm256_storeu_ps(to(5), _mm256_permute2f128_ps::<0x31>(s1, s5));
            _mm256_storeu_ps(to(6), _mm256_permute2f128_ps::<0x31>(s2, s6));
            _mm256_storeu_ps(to(7), _mm256_permute2f128_ps::<0x31>(s3, s7));
        }
    }
}
