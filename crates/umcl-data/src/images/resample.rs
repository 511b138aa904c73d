//! Resampling: the separable antialiased triangle filter, run in 8-row strips with the
//! result kept transposed, and the transpose itself.

#[cfg(target_arch = "x86_64")]
use super::simd::{horizontal4_avx2, strips_avx2, transpose_blocks_avx};
use super::GrayImage;

/// A rectangle in continuous source coordinates (pixel `i` covers `[i, i + 1)`); it may reach
/// outside the image, where pixels count as 0 (black padding).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rect {
    pub x0: f64,
    pub y0: f64,
    pub w: f64,
    pub h: f64,
}

/// Filter taps of a 1-D resampling: output `i` reads `stride` source pixels from `start[i]`
/// with the weights `weights[i * stride..]` (unused taps weigh 0), so every output reads the
/// same number of pixels and the inner loops have a fixed length.
pub(super) struct Taps {
    pub(super) start: Vec<usize>,
    pub(super) stride: usize,
    pub(super) weights: Vec<f32>,
}

/// The last few [`Taps`] made, by their arguments: images of one size, fitted the same way,
/// reuse their filters.
#[derive(Default)]
pub(crate) struct TapsCache {
    entries: Vec<(TapsKey, std::rc::Rc<Taps>)>,
}

/// The arguments of [`taps`]: source size, start and extent (as bits), output size.
type TapsKey = (usize, u64, u64, usize);

impl TapsCache {
    /// `taps(n, x0, extent, out)`, made once.
    pub(super) fn get(&mut self, n: usize, x0: f64, extent: f64, out: usize) -> std::rc::Rc<Taps> {
        let key = (n, x0.to_bits(), extent.to_bits(), out);
        if let Some((_, t)) = self.entries.iter().find(|(k, _)| *k == key) {
            return std::rc::Rc::clone(t);
        }
        let t = std::rc::Rc::new(taps(n, x0, extent, out));
        if self.entries.len() == 8 {
            self.entries.remove(0);
        }
        self.entries.push((key, std::rc::Rc::clone(&t)));
        t
    }
}

impl Taps {
    /// The source range `[lo, hi)` the outputs `outputs` read.
    pub(super) fn span_of(&self, outputs: std::ops::Range<usize>) -> (usize, usize) {
        let starts = &self.start[outputs];
        let lo = starts.iter().copied().min().unwrap_or(0);
        let hi = starts.iter().map(|s| s + self.stride).max().unwrap_or(lo);
        (lo, hi)
    }
}

/// Triangle-filter taps mapping the source interval `[x0, x0 + extent)` onto `out` samples
/// over a source axis of `n` pixels. The support widens with the downscale factor (an
/// antialiased resize, like PIL's bilinear). The interval clips the filter; weights are
/// normalised over the clipped filter, then taps outside `[0, n)` are dropped: those pixels
/// are black padding and add nothing.
fn taps(n: usize, x0: f64, extent: f64, out: usize) -> Taps {
    let scale = extent / out as f64;
    let support = scale.max(1.0);
    let stride = ((2.0 * support).ceil() as usize + 2).min(n);
    let mut t = Taps {
        start: Vec::with_capacity(out),
        stride,
        weights: vec![0.0; out * stride],
    };
    let lo_rect = x0.floor();
    let hi_rect = (x0 + extent).ceil();
    let mut kept = Vec::with_capacity(stride + 2);
    for i in 0..out {
        let centre = x0 + (i as f64 + 0.5) * scale;
        let lo = (centre - support).floor().max(lo_rect) as i64;
        let hi = ((centre + support).ceil().min(hi_rect) as i64).max(lo);
        let mut total = 0.0;
        kept.clear();
        for j in lo..hi {
            let d = (j as f64 + 0.5 - centre) / support;
            let w = (1.0 - d.abs()).max(0.0);
            total += w;
            if j >= 0 && (j as usize) < n && w > 0.0 {
                kept.push((j as usize, w));
            }
        }
        let inv = if total > 0.0 { 1.0 / total } else { 0.0 };
        let first = kept.first().map_or(0, |&(j, _)| j);
        let start = first.min(n - stride);
        t.start.push(start);
        for &(j, w) in &kept {
            t.weights[i * stride + (j - start)] = (w * inv) as f32;
        }
    }
    t
}

/// A source pixel type of the resize: 8-bit, 16-bit or float.
pub(crate) trait Pixel: Copy {
    fn to_f32(self) -> f32;
}

impl Pixel for u8 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Pixel for u16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self as f32
    }
}

impl Pixel for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

/// Resamples the part `rect` of a `w` x `h` image `src` to `out_w` x `out_h`, multiplying by
/// `gain` (1/255 for 8-bit pixels). Separable antialiased triangle filter; see `resample_t`.
pub(crate) fn resample<P: Pixel>(
    src: &[P],
    w: usize,
    h: usize,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    gain: f32,
) -> GrayImage {
    let mut tmp = Vec::new();
    let mut out_t = vec![0.0f32; out_w * out_h];
    let mut cache = TapsCache::default();
    resample_t(
        src, w, h, rect, out_w, out_h, gain, &mut tmp, &mut cache, None, &mut out_t,
    );
    let mut out = Vec::new();
    transpose(&out_t, out_w, out_h, &mut out);
    out.truncate(out_w * out_h);
    GrayImage {
        width: out_w,
        height: out_h,
        data: out,
    }
}

/// [`resample`], writing the result transposed: `out_t[x * out_h + y]` is output pixel
/// `(x, y)`. The output is made in strips of 8 rows, each staying in the L1 cache: the
/// vertical pass filters the source rows into the strip's 8 rows (whole rows
/// at a time, which vectorises), a transpose turns them into `cols` groups of 8, and the
/// horizontal pass filters those groups into the strip's part of every output column, 8 rows
/// at a time. `tmp` is scratch space. Each output is the same sum, in the same order, as a
/// direct separable filter computes (vertical taps in order with zero weights skipped, then
/// every horizontal tap in order). With `window = [x_lo, x_hi, y_lo, y_hi]` only those output
/// columns and rows are written (and only the source pixels they need are read).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resample_t<P: Pixel>(
    src: &[P],
    w: usize,
    h: usize,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    gain: f32,
    tmp: &mut Vec<f32>,
    cache: &mut TapsCache,
    window: Option<[usize; 4]>,
    out_t: &mut [f32],
) {
    let tx = cache.get(w, rect.x0, rect.w, out_w);
    let ty = cache.get(h, rect.y0, rect.h, out_h);
    let (tx, ty) = (&*tx, &*ty);
    let win = match window {
        Some([x0, x1, y0, y1]) => [x0.min(out_w), x1.min(out_w), y0.min(out_h), y1.min(out_h)],
        None => [0, out_w, 0, out_h],
    };
    if win[0] >= win[1] || win[2] >= win[3] {
        return;
    }
    let (col_lo, col_hi) = tx.span_of(win[0]..win[1]);
    let cols = col_hi - col_lo;
    if tmp.len() < 16 * cols {
        tmp.resize(16 * cols, 0.0);
    }
    let (vert, vert_t) = tmp.split_at_mut(8 * cols);
    let out_t = &mut out_t[..out_w * out_h];
    #[cfg(target_arch = "x86_64")]
    if crate::images::use_avx2() {
        // SAFETY: the CPU has AVX2.
        unsafe {
            strips_avx2(
                src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
            )
        };
        return;
    }
    strips_body::<P, false>(
        src, w, tx, ty, col_lo, cols, gain, vert, vert_t, out_h, win, out_t,
    );
}

/// Taps of the vertical pass added up at once; more go in several rounds.
const VTAPS: usize = 12;

/// `acc[c] (+)= sum_k w_k * row_k[c]`, the taps in order: onto `acc` when `accumulate`, else
/// from 0 (and all zeros for no taps). 16 columns at a time, the sums in registers.
#[inline(always)]
fn vertical_rows<P: Pixel>(rows: &[(&[P], f32)], accumulate: bool, acc: &mut [f32]) {
    let cols = acc.len();
    let c16 = cols / 16 * 16;
    let rows_ok = rows.iter().all(|(r, _)| r.len() == cols);
    assert!(rows_ok, "vertical pass rows have the output's length");
    for c0 in (0..c16).step_by(16) {
        let mut a = [0.0f32; 16];
        if accumulate {
            a.copy_from_slice(&acc[c0..c0 + 16]);
        }
        let mut it = rows.iter();
        if !accumulate {
            if let Some(&(row, wk)) = it.next() {
                let r: &[P; 16] = row[c0..c0 + 16]
                    .try_into()
                    .unwrap_or_else(|_| unreachable!());
                for t in 0..16 {
                    a[t] = wk * r[t].to_f32();
                }
            }
        }
        for &(row, wk) in it {
            let r: &[P; 16] = row[c0..c0 + 16]
                .try_into()
                .unwrap_or_else(|_| unreachable!());
            for t in 0..16 {
                a[t] += wk * r[t].to_f32();
            }
        }
        acc[c0..c0 + 16].copy_from_slice(&a);
    }
    for c in c16..cols {
        let mut a = if accumulate { acc[c] } else { 0.0 };
        let mut it = rows.iter();
        if !accumulate {
            if let Some(&(row, wk)) = it.next() {
                a = wk * row[c].to_f32();
            }
        }
        for &(row, wk) in it {
            a += wk * row[c].to_f32();
        }
        acc[c] = a;
    }
}

/// The strips of [`resample_t`].
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) fn strips_body<P: Pixel, const AVX2: bool>(
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
    let [x_lo, x_hi, y_lo, y_hi] = win;
    for r0 in (y_lo..y_hi).step_by(8) {
        let rb = (y_hi - r0).min(8);
        // Vertical: output rows r0..r0 + rb, each a weighted sum of source rows (the nonzero
        // taps, in order), 16 columns at a time with the sums held in registers.
        for (j, acc) in vert[..rb * cols].chunks_exact_mut(cols).enumerate() {
            let i = r0 + j;
            let mut rows: [(&[P], f32); VTAPS] = [(&[], 0.0); VTAPS];
            let mut nr = 0;
            let mut started = false;
            for k in 0..ty.stride {
                let wk = ty.weights[i * ty.stride + k] * gain;
                if wk == 0.0 {
                    continue;
                }
                if nr == VTAPS {
                    // More taps than fit (a downscale by more than about 5): add these up
                    // first, the rest onto them, in the same order.
                    vertical_rows(&rows, started, acc);
                    started = true;
                    nr = 0;
                }
                let at = (ty.start[i] + k) * w + col_lo;
                rows[nr] = (&src[at..at + cols], wk);
                nr += 1;
            }
            if nr > 0 || !started {
                vertical_rows(&rows[..nr], started, acc);
            }
        }
        // vert_t[c * 8 + j] = vert[j * cols + c] (rows beyond rb stay unused).
        if rb == 8 {
            transpose_into(&vert[..8 * cols], 8, cols, &mut vert_t[..8 * cols]);
        } else {
            for j in 0..rb {
                for c in 0..cols {
                    vert_t[c * 8 + j] = vert[j * cols + c];
                }
            }
        }
        // Horizontal: output columns x..x + 4 (independent sums, so they overlap in the
        // pipeline), rows r0..r0 + rb. Every tap is added, zero weights too, as the scalar
        // filter always did: adding 0 x (a finite value) changes nothing.
        let n = tx.stride;
        let mut x = x_lo;
        while x < x_hi {
            let q = (x_hi - x).min(4);
            let mut acc = [[0.0f32; 8]; 4];
            let mut at = [0usize; 4];
            for (a, &start) in at.iter_mut().zip(&tx.start[x..x + q]) {
                *a = (start - col_lo) * 8;
            }
            #[cfg(target_arch = "x86_64")]
            if AVX2 && q == 4 && rb == 8 {
                let wt = &tx.weights[x * n..(x + 4) * n];
                let o = [0, 1, 2, 3].map(|j| (x + j) * out_h + r0);
                assert!(at.iter().all(|&a| a + n * 8 <= vert_t.len()));
                assert!(o.iter().all(|&o| o + 8 <= out_t.len()));
                // SAFETY: AVX2 is only set by the caller that checked the CPU has it; the
                // reads and writes are in bounds (asserted above).
                unsafe { horizontal4_avx2(vert_t, &at, wt, n, &o, out_t) };
                x += 4;
                continue;
            }
            if q == 4 {
                let wt = &tx.weights[x * n..(x + 4) * n];
                for k in 0..n {
                    for j in 0..4 {
                        let wk = wt[j * n + k];
                        let group = &vert_t[at[j] + k * 8..at[j] + k * 8 + 8];
                        for (a, &v) in acc[j].iter_mut().zip(group) {
                            *a += wk * v;
                        }
                    }
                }
            } else {
                for j in 0..q {
                    for k in 0..n {
                        let wk = tx.weights[(x + j) * n + k];
                        let group = &vert_t[at[j] + k * 8..at[j] + k * 8 + 8];
                        for (a, &v) in acc[j].iter_mut().zip(group) {
                            *a += wk * v;
                        }
                    }
                }
            }
            for (j, a) in acc.iter().enumerate().take(q) {
                let o = (x + j) * out_h + r0;
                out_t[o..o + rb].copy_from_slice(&a[..rb]);
            }
            x += q;
        }
    }
}

/// `dst = src^T` for a `rows` x `cols` matrix `src` (row-major); `dst` is resized to fit.
pub(crate) fn transpose(src: &[f32], rows: usize, cols: usize, dst: &mut Vec<f32>) {
    if dst.len() < rows * cols {
        dst.resize(rows * cols, 0.0);
    }
    transpose_into(&src[..rows * cols], rows, cols, &mut dst[..rows * cols]);
}

/// `dst[c * rows + r] = src[r * cols + c]`: 8 x 8 blocks in AVX registers where the CPU has
/// AVX, the edges (and everything elsewhere) one value at a time.
pub(super) fn transpose_into(src: &[f32], rows: usize, cols: usize, dst: &mut [f32]) {
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols);
    let (mut r8, mut c8) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if crate::images::use_avx2() {
        (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
        // SAFETY: the CPU has AVX; every block read and written lies inside the first
        // rows * cols values of src and dst (checked above).
        unsafe { transpose_blocks_avx(src, rows, cols, r8, c8, dst) };
    }
    for r in 0..rows {
        let from = if r < r8 { c8 } else { 0 };
        for c in from..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// Resamples the part `rect` of `img` to `out_w` x `out_h`.
pub(crate) fn resize_rect(img: &GrayImage, rect: Rect, out_w: usize, out_h: usize) -> GrayImage {
    resample(&img.data, img.width, img.height, rect, out_w, out_h, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_one_inside_and_less_at_padding() {
        // Downscale 8 -> 4: each output covers 2 source pixels, support 2.
        let t = taps(8, 0.0, 8.0, 4);
        for i in 0..4 {
            let s: f32 = t.weights[i * t.stride..(i + 1) * t.stride].iter().sum();
            assert!((s - 1.0).abs() < 1e-6, "row {i} sums to {s}");
            assert!(t.start[i] + t.stride <= 8);
        }
        // Pad 4 pixels to 8 (x0 = -2): output 0 has centre -1 and support 2; clipped to the
        // rect [-2, 6) it reads -2 and -1 (padding, triangle weights 0.75 and 0.75) and pixel
        // 0 (0.25): normalised, the real pixel weighs 0.25 / 1.75 = 1/7.
        let t = taps(4, -2.0, 8.0, 4);
        let s0: f32 = t.weights[..t.stride].iter().sum();
        assert!((s0 - 1.0 / 7.0).abs() < 1e-6, "first output weighs {s0}");
    }
}

#[cfg(test)]
mod resample_tests {
    use super::*;
    use crate::images::SCALAR_ONLY;

    /// A seeded pseudo-random byte image.
    fn noise(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut rng = crate::rng::Rng::new(seed);
        (0..w * h).map(|_| rng.next_u64() as u8).collect()
    }

    /// The separable filter written out directly: the vertical pass (zero weights skipped),
    /// then the horizontal one (every tap, from 0), each sum in tap order.
    fn direct<P: Pixel>(
        src: &[P],
        w: usize,
        h: usize,
        rect: Rect,
        out_w: usize,
        out_h: usize,
        gain: f32,
    ) -> Vec<f32> {
        let tx = taps(w, rect.x0, rect.w, out_w);
        let ty = taps(h, rect.y0, rect.h, out_h);
        let (col_lo, col_hi) = tx.span_of(0..out_w);
        let cols = col_hi - col_lo;
        let mut tmp = vec![0.0f32; out_h * cols];
        for i in 0..out_h {
            for k in 0..ty.stride {
                let wk = ty.weights[i * ty.stride + k] * gain;
                if wk == 0.0 {
                    continue;
                }
                for c in 0..cols {
                    tmp[i * cols + c] += wk * src[(ty.start[i] + k) * w + col_lo + c].to_f32();
                }
            }
        }
        let mut out = vec![0.0f32; out_w * out_h];
        for y in 0..out_h {
            for x in 0..out_w {
                let mut acc = 0.0f32;
                for k in 0..tx.stride {
                    acc += tmp[y * cols + tx.start[x] - col_lo + k] * tx.weights[x * tx.stride + k];
                }
                out[y * out_w + x] = acc;
            }
        }
        out
    }

    fn rect(x0: f64, y0: f64, w: f64, h: f64) -> Rect {
        Rect { x0, y0, w, h }
    }

    /// Downscales (by up to 22, more taps than one round of the vertical pass), upscales,
    /// padding and odd sizes: the strip kernel gives the direct filter's values exactly, with
    /// and without AVX2.
    #[test]
    fn strips_give_the_direct_filter_bit_for_bit() {
        let cases = [
            (37, 29, rect(0.0, 0.0, 37.0, 29.0), 13, 11),
            (20, 31, rect(-5.0, 0.0, 31.0, 31.0), 16, 16),
            (5, 7, rect(0.0, 0.0, 5.0, 7.0), 12, 9),
            (200, 150, rect(0.0, 0.0, 200.0, 150.0), 9, 7),
            (64, 48, rect(0.0, -8.0, 64.0, 64.0), 24, 24),
        ];
        for (i, &(w, h, r, ow, oh)) in cases.iter().enumerate() {
            let src = noise(w, h, i as u64);
            let want = direct(&src, w, h, r, ow, oh, 1.0 / 255.0);
            for scalar in [false, true] {
                SCALAR_ONLY.with(|c| c.set(scalar));
                let got = resample(&src, w, h, r, ow, oh, 1.0 / 255.0);
                SCALAR_ONLY.with(|c| c.set(false));
                assert_eq!(got.pixels(), &want[..], "case {i}, scalar only: {scalar}");
            }
            let f: Vec<f32> = src.iter().map(|&v| v as f32 / 255.0).collect();
            let got = resample(&f, w, h, r, ow, oh, 1.0);
            assert_eq!(
                got.pixels(),
                &direct(&f, w, h, r, ow, oh, 1.0)[..],
                "case {i}, f32"
            );
        }
    }

    /// A window computes just its part of the (transposed) output, with the same values.
    #[test]
    fn a_window_gives_the_same_values_inside_it() {
        let (w, h, n) = (53, 47, 21);
        let src = noise(w, h, 9);
        let r = rect(0.0, 0.0, w as f64, h as f64);
        let mut full = vec![0.0f32; n * n];
        let (mut tmp, mut cache) = (Vec::new(), TapsCache::default());
        resample_t(
            &src, w, h, r, n, n, 1.0, &mut tmp, &mut cache, None, &mut full,
        );
        let mut part = vec![-1.0f32; n * n];
        let win = [3, 17, 5, 14];
        resample_t(
            &src,
            w,
            h,
            r,
            n,
            n,
            1.0,
            &mut tmp,
            &mut cache,
            Some(win),
            &mut part,
        );
        for x in 0..n {
            for y in 0..n {
                let inside = (win[0]..win[1]).contains(&x) && (win[2]..win[3]).contains(&y);
                let (a, b) = (part[x * n + y], full[x * n + y]);
                assert_eq!(inside, a == b, "({x}, {y}): {a} vs {b}");
            }
        }
    }

    #[test]
    fn transpose_is_a_transpose() {
        for (rows, cols) in [(8, 16), (13, 21), (24, 9), (1, 5)] {
            let src: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
            for scalar in [false, true] {
                SCALAR_ONLY.with(|c| c.set(scalar));
                let mut dst = Vec::new();
                transpose(&src, rows, cols, &mut dst);
                SCALAR_ONLY.with(|c| c.set(false));
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(dst[c * rows + r], src[r * cols + c]);
                    }
                }
            }
        }
    }
}
