//! Training augmentation: random resized crop, a small rotation and shift, brightness and
//! contrast jitter, and an optional horizontal flip (off by default: in a chest X-ray the
//! heart's side matters).
//!
//! Every random choice comes from [`Augment::sample`], seeded by `(seed, epoch, sample index)`,
//! so a sample gets the same augmentation whatever the thread count or loading order.
//! [`apply`] does crop, rotation, flip, jitter and normalisation in two passes over the
//! output: one bilinear resampling through the composed affine map, one for the intensities.
//!
//! ```
//! use umcl_data::augment::Augment;
//!
//! let aug = Augment::default();
//! let a = aug.sample(224, 7, 0, 42);
//! assert_eq!(a, aug.sample(224, 7, 0, 42)); // same seed, epoch, index: same choice
//! assert_ne!(a, aug.sample(224, 7, 1, 42)); // next epoch: another one
//! ```

use std::path::Path;

use crate::images::{GrayImage, ImageError, Preprocess};
use crate::rng::Rng;

/// Ranges of the random training transforms. Each is drawn uniformly from its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Augment {
    /// Range of the crop's area as a fraction of the image (torchvision's `scale`).
    /// Default `(0.7, 1.0)`.
    pub scale: (f32, f32),
    /// Range of the crop's aspect ratio, width over height, drawn log-uniformly.
    /// Default `(3/4, 4/3)`.
    pub ratio: (f32, f32),
    /// Largest rotation in degrees, either way. Default 7.
    pub rotate_deg: f32,
    /// Largest shift as a fraction of the side, in x and in y. Default 0.05.
    pub translate: f32,
    /// Brightness factor drawn from `[1 - b, 1 + b]`. Default 0.2.
    pub brightness: f32,
    /// Contrast factor drawn from `[1 - c, 1 + c]`. Default 0.2.
    pub contrast: f32,
    /// Flip left-right with probability 1/2. Default off.
    pub hflip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Self {
            scale: (0.7, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            rotate_deg: 7.0,
            translate: 0.05,
            brightness: 0.2,
            contrast: 0.2,
            hflip: false,
        }
    }
}

/// One sample's drawn augmentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AugmentParams {
    /// The crop, `[x0, y0, width, height]` in pixels of the (already resized) square.
    pub crop: [f32; 4],
    /// Rotation in degrees, counter-clockwise.
    pub angle_deg: f32,
    /// Shift in pixels of the output, `[dx, dy]`.
    pub shift: [f32; 2],
    /// Whether the image is flipped left-right.
    pub flip: bool,
    /// Brightness factor (1 = unchanged).
    pub brightness: f32,
    /// Contrast factor (1 = unchanged).
    pub contrast: f32,
}

impl AugmentParams {
    /// The identity: whole image, no rotation, shift, flip or jitter.
    pub fn identity(size: usize) -> Self {
        Self {
            crop: [0.0, 0.0, size as f32, size as f32],
            angle_deg: 0.0,
            shift: [0.0, 0.0],
            flip: false,
            brightness: 1.0,
            contrast: 1.0,
        }
    }
}

impl Augment {
    /// Checks that every range is finite and ordered, scale within `(0, 1]`, ratio above 0,
    /// jitter within `[0, 1)`.
    pub fn validate(&self) -> Result<(), ImageError> {
        let bad = |what: &str| Err(ImageError::Invalid(format!("augment: {what}")));
        let finite = [
            self.scale.0,
            self.scale.1,
            self.ratio.0,
            self.ratio.1,
            self.rotate_deg,
            self.translate,
            self.brightness,
            self.contrast,
        ]
        .iter()
        .all(|v| v.is_finite());
        if !finite {
            return bad("every range must be a finite number");
        }
        if !(0.0 < self.scale.0 && self.scale.0 <= self.scale.1 && self.scale.1 <= 1.0) {
            return bad("scale must satisfy 0 < min <= max <= 1");
        }
        if !(0.0 < self.ratio.0 && self.ratio.0 <= self.ratio.1) {
            return bad("ratio must satisfy 0 < min <= max");
        }
        if self.rotate_deg < 0.0 || self.translate < 0.0 || self.translate >= 0.5 {
            return bad("rotate_deg must be >= 0 and translate within [0, 0.5)");
        }
        if !(0.0..1.0).contains(&self.brightness) || !(0.0..1.0).contains(&self.contrast) {
            return bad("brightness and contrast must be within [0, 1)");
        }
        Ok(())
    }

    /// Draws the augmentation of sample `index` in `epoch` for a `size` x `size` image.
    pub fn sample(&self, size: usize, seed: u64, epoch: u64, index: u64) -> AugmentParams {
        let mut rng = Rng::for_sample(seed, epoch, index);
        let s = size as f32;
        let area = s * s;
        let (lr0, lr1) = (self.ratio.0.ln(), self.ratio.1.ln());
        // As torchvision's RandomResizedCrop: up to 10 tries, then the whole image.
        let mut crop = [0.0, 0.0, s, s];
        for _ in 0..10 {
            let target = area * rng.uniform(self.scale.0, self.scale.1);
            let aspect = rng.uniform(lr0, lr1).exp();
            let w = (target * aspect).sqrt();
            let h = (target / aspect).sqrt();
            if w <= s && h <= s {
                let x0 = rng.uniform(0.0, s - w);
                let y0 = rng.uniform(0.0, s - h);
                crop = [x0, y0, w, h];
                break;
            }
        }
        let angle_deg = rng.uniform(-self.rotate_deg, self.rotate_deg);
        let t = self.translate * s;
        let shift = [rng.uniform(-t, t), rng.uniform(-t, t)];
        let flip = self.hflip && rng.next_u64() & 1 == 1;
        let brightness = rng.uniform(1.0 - self.brightness, 1.0 + self.brightness);
        let contrast = rng.uniform(1.0 - self.contrast, 1.0 + self.contrast);
        AugmentParams {
            crop,
            angle_deg,
            shift,
            flip,
            brightness,
            contrast,
        }
    }
}

/// Applies `params` to `img` (a `pre.size` square, as [`Preprocess::resize`] makes it) and
/// writes the normalised result into `out` (`[C, H, W]`, `pre.output_len()` values).
///
/// In order: crop the rectangle and scale it to the full square; rotate about the centre and
/// shift (pixels brought in from outside are black); flip; multiply by the brightness factor
/// and clamp to `[0, 1]`; blend with the image mean by the contrast factor and clamp;
/// normalise. Crop, rotation and flip are one affine map, sampled once bilinearly.
pub fn apply(
    img: &GrayImage,
    params: &AugmentParams,
    pre: &Preprocess,
    out: &mut [f32],
) -> Result<(), ImageError> {
    pre.check_out(out)?;
    let n = pre.size;
    if n < 2 || img.width() != n || img.height() != n {
        return Err(ImageError::Invalid(format!(
            "augment expects a {n}x{n} image (n >= 2), got {}x{}",
            img.width(),
            img.height()
        )));
    }
    apply_strided(img.pixels(), n, false, params, pre, out)
}

/// [`apply`] on the `n` x `n` pixels `src`, stored row after row, or column after column when
/// `transposed` (as the loader's resize leaves them). `out` has been checked.
pub(crate) fn apply_strided(
    src: &[f32],
    n: usize,
    transposed: bool,
    params: &AugmentParams,
    pre: &Preprocess,
    out: &mut [f32],
) -> Result<(), ImageError> {
    pre.check_out(out)?;
    if n < 2 || n != pre.size || src.len() < n * n {
        return Err(ImageError::Invalid(format!(
            "augment expects a {n}x{n} image (n >= 2) of size {}",
            pre.size
        )));
    }
    let plane = n * n;
    let s = n as f32;
    let c = s / 2.0;
    let (sin, cos) = params.angle_deg.to_radians().sin_cos();
    let [cx0, cy0, cw, ch] = params.crop;
    let (kx, ky) = (cw / s, ch / s);
    // Output pixel centre p = (u + 0.5, v + 0.5). Undo shift and rotation about the centre,
    // q = R (p - c - shift) + c with R = [[cos, -sin], [sin, cos]] (y points down, so the
    // content turns counter-clockwise on screen, as torchvision's positive angles do); undo
    // the flip, q.x -> s - q.x; then source = crop origin + q * crop size / s, sampled at
    // (pixel - 0.5). All affine in (u, v): q = q0 + u * du + v * dv.
    let fx = if params.flip { -1.0 } else { 1.0 };
    let map = |px: f32, py: f32| -> (f32, f32) {
        let (dx, dy) = (px - c - params.shift[0], py - c - params.shift[1]);
        let qx = cos * dx - sin * dy + c;
        let qy = sin * dx + cos * dy + c;
        let qx = if params.flip { s - qx } else { qx };
        (qx, qy)
    };
    let (q0x, q0y) = map(0.5, 0.5);
    let dux = cos * fx;
    let duy = sin;
    let dvx = -sin * fx;
    let dvy = cos;
    // Walk the source position in 16.16 fixed point: exact enough (224 steps add at most
    // 224 * 2^-17 px of rounding) and free of float-to-int conversions in the loop. The
    // output pixel is inside the crop frame exactly when its source position lies in
    // [crop origin - 0.5, crop end - 0.5), as the map from frame to source is increasing.
    let fixed = |v: f32| (v * ONE).round().clamp(-1e9, 1e9) as i32;
    let (xs, ys) = if transposed { (n, 1) } else { (1, n) };
    let w = Warp {
        src: &src[..plane],
        n,
        du: [fixed(dux * kx), fixed(duy * ky)],
        lo: [fixed(cx0 - 0.5), fixed(cy0 - 0.5)],
        hi: [fixed(cx0 + cw - 0.5), fixed(cy0 + ch - 0.5)],
        max_fixed: ((n - 1) as i32) << 16,
        last: (n - 2) as i32,
        step: [xs as i32, ys as i32],
        brightness: params.brightness,
    };
    let first = &mut out[..plane];
    let mut sum = 0.0f64;
    for v in 0..n {
        let qx = q0x + v as f32 * dvx;
        let qy = q0y + v as f32 * dvy;
        let start = [fixed(cx0 + qx * kx - 0.5), fixed(cy0 + qy * ky - 0.5)];
        sum += w.row(start, &mut first[v * n..(v + 1) * n]) as f64;
    }
    // Contrast blends with the mean of the brightness-adjusted image, as torchvision does;
    // then normalise, writing every channel from the one value.
    let mean = (sum / plane as f64) as f32;
    let k = params.contrast;
    let base = (1.0 - k) * mean;
    let mut affine = [(0.0f32, 0.0f32); 3];
    for (c, a) in affine.iter_mut().enumerate().take(pre.channels) {
        let inv = 1.0 / pre.std[c];
        *a = (inv, -pre.mean[c] * inv);
    }
    contrast_normalise(out, plane, pre.channels, k, base, &affine);
    Ok(())
}

/// The part of the `n` x `n` resized image [`apply`] reads for `params`, as `[x_lo, x_hi,
/// y_lo, y_hi]` (half-open, with a pixel of margin): only source positions inside the crop
/// frame are sampled, with their right and lower neighbours.
pub(crate) fn read_window(params: &AugmentParams, n: usize) -> [usize; 4] {
    let [cx0, cy0, cw, ch] = params.crop;
    let range = |lo: f32, len: f32| -> (usize, usize) {
        let a = ((lo - 0.5).floor() - 1.0).max(0.0);
        let b = ((lo + len - 0.5).ceil() + 2.0).max(0.0);
        if !(a.is_finite() && b.is_finite()) {
            return (0, n);
        }
        ((a as usize).min(n), (b as usize).min(n))
    };
    let (x0, x1) = range(cx0, cw);
    let (y0, y1) = range(cy0, ch);
    [x0, x1, y0, y1]
}

// The loader's path is a method of `Preprocess` but is written here: it ends in the warp
// above, and `images` does not depend on `augment` (the dependency runs one way only).
impl Preprocess {
    /// Reads, decodes and resizes an image file as [`Preprocess::load`] does, applies the
    /// augmentation `params` when given (as [`apply`] does) and writes the result normalised
    /// into `out` (`[C, H, W]`, [`Preprocess::output_len`] values); without `params`, what
    /// [`Preprocess::load`] then [`Preprocess::process`] give. The loader's path: it reuses
    /// per-thread buffers for the file, the decoded pixels and the resized image, so a steady
    /// stream of images allocates nothing, and with `params` it decodes and resizes only the
    /// part of the image the crop reads. Errors name the file.
    pub fn load_into(
        &self,
        path: impl AsRef<Path>,
        params: Option<&AugmentParams>,
        out: &mut [f32],
    ) -> Result<(), ImageError> {
        let path = path.as_ref();
        self.check_out(out)?;
        if params.is_some() && self.size < 2 {
            return Err(ImageError::Invalid(format!(
                "augment expects a {0}x{0} image (n >= 2)",
                self.size
            )));
        }
        let n = self.size;
        // With augmentation only the crop's part of the resized image is read.
        let window = params.map(|p| read_window(p, n));
        self.with_resized_t(path, window, |resized, tmp| match params {
            Some(p) => apply_strided(resized, n, true, p, self, out),
            None => {
                crate::images::transpose(resized, n, n, tmp);
                self.normalise_into(&tmp[..n * n], out);
                Ok(())
            }
        })
    }
}

/// 16.16 fixed point.
const ONE: f32 = 65536.0;

/// The bilinear warp of one image: source pixels, their steps in x and y, and the fixed-point
/// frame of the crop.
struct Warp<'a> {
    src: &'a [f32],
    n: usize,
    /// Source step per output pixel along a row, x and y.
    du: [i32; 2],
    /// The crop frame: source positions in `[lo, hi)` are inside.
    lo: [i32; 2],
    hi: [i32; 2],
    max_fixed: i32,
    last: i32,
    /// Index step of source x and y.
    step: [i32; 2],
    brightness: f32,
}

impl Warp<'_> {
    /// Writes one output row, starting at the source position `start`, brightness applied and
    /// clamped; returns its sum, added in 8 lanes (pixel `u` into lane `u % 8`, the lanes then
    /// pairwise), so the vector and the scalar code agree to the bit.
    fn row(&self, start: [i32; 2], row: &mut [f32]) -> f32 {
        debug_assert_eq!(row.len(), self.n);
        let mut lanes = [0.0f32; 8];
        #[allow(unused_mut)]
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if crate::images::use_avx2() {
            // SAFETY: the CPU has AVX2.
            done = unsafe { self.row_avx2(start, row, &mut lanes) };
        }
        for (u, o) in row.iter_mut().enumerate().skip(done) {
            let sx = start[0].wrapping_add((u as i32).wrapping_mul(self.du[0]));
            let sy = start[1].wrapping_add((u as i32).wrapping_mul(self.du[1]));
            let val = self.pixel(sx, sy);
            *o = val;
            lanes[u % 8] += val;
        }
        ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]))
            + ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))
    }

    /// The output value at the source position `(sx, sy)`.
    #[inline(always)]
    fn pixel(&self, sx: i32, sy: i32) -> f32 {
        let inside = sx >= self.lo[0] && sx < self.hi[0] && sy >= self.lo[1] && sy < self.hi[1];
        if !inside {
            return 0.0;
        }
        let x = sx.clamp(0, self.max_fixed);
        let y = sy.clamp(0, self.max_fixed);
        let x0 = (x >> 16).min(self.last);
        let y0 = (y >> 16).min(self.last);
        let ax = (x - (x0 << 16)) as f32 * (1.0 / ONE);
        let ay = (y - (y0 << 16)) as f32 * (1.0 / ONE);
        let i = (x0 * self.step[0] + y0 * self.step[1]) as usize;
        let (sx1, sy1) = (self.step[0] as usize, self.step[1] as usize);
        let (p00, p01) = (self.src[i], self.src[i + sx1]);
        let (p10, p11) = (self.src[i + sy1], self.src[i + sy1 + sx1]);
        let top = p00 + ax * (p01 - p00);
        let bot = p10 + ax * (p11 - p10);
        ((top + ay * (bot - top)) * self.brightness).clamp(0.0, 1.0)
    }

    /// The first `8 * (n / 8)` pixels of the row, 8 at a time (gathering the 4 neighbours);
    /// returns how many it wrote.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn row_avx2(&self, start: [i32; 2], row: &mut [f32], lanes: &mut [f32; 8]) -> usize {
        use std::arch::x86_64::*;
        let n8 = row.len() / 8 * 8;
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let mut sx = _mm256_add_epi32(
            _mm256_set1_epi32(start[0]),
            _mm256_mullo_epi32(lane, _mm256_set1_epi32(self.du[0])),
        );
        let mut sy = _mm256_add_epi32(
            _mm256_set1_epi32(start[1]),
            _mm256_mullo_epi32(lane, _mm256_set1_epi32(self.du[1])),
        );
        let step_x = _mm256_set1_epi32(self.du[0].wrapping_mul(8));
        let step_y = _mm256_set1_epi32(self.du[1].wrapping_mul(8));
        // sx >= lo  <=>  sx > lo - 1 (lo is far from i32::MIN).
        let lo_x = _mm256_set1_epi32(self.lo[0] - 1);
        let lo_y = _mm256_set1_epi32(self.lo[1] - 1);
        let hi_x = _mm256_set1_epi32(self.hi[0]);
        let hi_y = _mm256_set1_epi32(self.hi[1]);
        let zero_i = _mm256_setzero_si256();
        let max_f = _mm256_set1_epi32(self.max_fixed);
        let last = _mm256_set1_epi32(self.last);
        let xs = _mm256_set1_epi32(self.step[0]);
        let ys = _mm256_set1_epi32(self.step[1]);
        let inv = _mm256_set1_ps(1.0 / ONE);
        let x_adjacent = self.step[0] == 1;
        debug_assert!(x_adjacent || self.step[1] == 1);
        let far = if x_adjacent {
            self.step[1]
        } else {
            self.step[0]
        };
        let b = _mm256_set1_ps(self.brightness);
        let zero = _mm256_setzero_ps();
        let one = _mm256_set1_ps(1.0);
        let mut acc = _mm256_loadu_ps(lanes.as_ptr());
        let base = self.src.as_ptr();
        let mut u = 0;
        while u < n8 {
            let inside = _mm256_and_si256(
                _mm256_and_si256(_mm256_cmpgt_epi32(sx, lo_x), _mm256_cmpgt_epi32(hi_x, sx)),
                _mm256_and_si256(_mm256_cmpgt_epi32(sy, lo_y), _mm256_cmpgt_epi32(hi_y, sy)),
            );
            let x = _mm256_min_epi32(_mm256_max_epi32(sx, zero_i), max_f);
            let y = _mm256_min_epi32(_mm256_max_epi32(sy, zero_i), max_f);
            let x0 = _mm256_min_epi32(_mm256_srai_epi32::<16>(x), last);
            let y0 = _mm256_min_epi32(_mm256_srai_epi32::<16>(y), last);
            let ax = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_sub_epi32(x, _mm256_slli_epi32::<16>(x0))),
                inv,
            );
            let ay = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_sub_epi32(y, _mm256_slli_epi32::<16>(y0))),
                inv,
            );
            // Indices stay inside the image: x0, y0 <= n - 2 after the clamps. The two
            // neighbours along the axis whose index step is 1 are adjacent, so each gather
            // fetches a pair (as one 64-bit value): pixels 0, 1, 4, 5 in one gather and 2, 3,
            // 6, 7 in another, which the even/odd split below puts back in order.
            let i00 = _mm256_add_epi32(_mm256_mullo_epi32(x0, xs), _mm256_mullo_epi32(y0, ys));
            let lo = _mm256_castsi256_si128(i00);
            let hi = _mm256_extracti128_si256::<1>(i00);
            let ia = _mm_unpacklo_epi64(lo, hi);
            let ib = _mm_unpackhi_epi64(lo, hi);
            let other = _mm_set1_epi32(far);
            let a0 = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(base as *const f64, ia));
            let a1 = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(base as *const f64, ib));
            let b0 = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(
                base as *const f64,
                _mm_add_epi32(ia, other),
            ));
            let b1 = _mm256_castpd_ps(_mm256_i32gather_pd::<4>(
                base as *const f64,
                _mm_add_epi32(ib, other),
            ));
            // (near, near + 1) pairs at the index and at index + far.
            let a_near = _mm256_shuffle_ps::<0x88>(a0, a1);
            let a_next = _mm256_shuffle_ps::<0xDD>(a0, a1);
            let b_near = _mm256_shuffle_ps::<0x88>(b0, b1);
            let b_next = _mm256_shuffle_ps::<0xDD>(b0, b1);
            // Step 1 along x: pairs are (p00, p01) and (p10, p11); along y: (p00, p10) and
            // (p01, p11).
            let (p00, p01, p10, p11) = if x_adjacent {
                (a_near, a_next, b_near, b_next)
            } else {
                (a_near, b_near, a_next, b_next)
            };
            let top = _mm256_add_ps(p00, _mm256_mul_ps(ax, _mm256_sub_ps(p01, p00)));
            let bot = _mm256_add_ps(p10, _mm256_mul_ps(ax, _mm256_sub_ps(p11, p10)));
            let val = _mm256_mul_ps(
                _mm256_add_ps(top, _mm256_mul_ps(ay, _mm256_sub_ps(bot, top))),
                b,
            );
            // clamp(0, 1) as f32::clamp does it, NaN included (max_ps and min_ps return
            // their second operand when one is NaN).
            let val = _mm256_min_ps(one, _mm256_max_ps(zero, val));
            let val = _mm256_and_ps(val, _mm256_castsi256_ps(inside));
            _mm256_storeu_ps(row.as_mut_ptr().add(u), val);
            acc = _mm256_add_ps(acc, val);
            sx = _mm256_add_epi32(sx, step_x);
            sy = _mm256_add_epi32(sy, step_y);
            u += 8;
        }
        _mm256_storeu_ps(lanes.as_mut_ptr(), acc);
        n8
    }
}

/// Contrast (`z = clamp(v * k + base, 0, 1)`) and normalisation of the first plane of `out`
/// into each of the `channels` planes. With AVX2 where the CPU has it (same operations).
fn contrast_normalise(
    out: &mut [f32],
    plane: usize,
    channels: usize,
    k: f32,
    base: f32,
    affine: &[(f32, f32); 3],
) {
    #[cfg(target_arch = "x86_64")]
    if crate::images::use_avx2() {
        // SAFETY: the CPU has AVX2.
        unsafe { contrast_normalise_avx2(out, plane, channels, k, base, affine) };
        return;
    }
    contrast_normalise_body(out, plane, channels, k, base, affine);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn contrast_normalise_avx2(
    out: &mut [f32],
    plane: usize,
    channels: usize,
    k: f32,
    base: f32,
    affine: &[(f32, f32); 3],
) {
    contrast_normalise_body(out, plane, channels, k, base, affine);
}

#[inline(always)]
fn contrast_normalise_body(
    out: &mut [f32],
    plane: usize,
    channels: usize,
    k: f32,
    base: f32,
    affine: &[(f32, f32); 3],
) {
    let (head, tail) = out.split_at_mut(plane);
    if channels == 3 {
        let (c1, c2) = tail.split_at_mut(plane);
        for ((o0, o1), o2) in head.iter_mut().zip(c1.iter_mut()).zip(c2.iter_mut()) {
            let z = (*o0 * k + base).clamp(0.0, 1.0);
            *o0 = z * affine[0].0 + affine[0].1;
            *o1 = z * affine[1].0 + affine[1].1;
            *o2 = z * affine[2].0 + affine[2].1;
        }
    } else {
        for o0 in head.iter_mut() {
            let z = (*o0 * k + base).clamp(0.0, 1.0);
            *o0 = z * affine[0].0 + affine[0].1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::{Fit, SCALAR_ONLY};

    /// The vector warp and contrast code give the scalar code's values bit for bit, from the
    /// image stored row after row or column after column, flipped or not, for sizes with and
    /// without a partial group of 8.
    #[test]
    fn vector_and_scalar_paths_agree_bit_for_bit() {
        for n in [24usize, 13] {
            let mut rng = Rng::new(n as u64);
            let img: Vec<f32> = (0..n * n).map(|_| rng.unit()).collect();
            let img_t: Vec<f32> = (0..n * n).map(|i| img[(i % n) * n + i / n]).collect();
            for channels in [1, 3] {
                let pre = Preprocess {
                    size: n,
                    fit: Fit::Stretch,
                    channels,
                    ..Preprocess::default()
                };
                let aug = Augment {
                    hflip: true,
                    ..Augment::default()
                };
                for index in 0..6 {
                    let p = aug.sample(n, 3, 1, index);
                    let run = |src: &[f32], transposed: bool, scalar: bool| {
                        let mut out = vec![0.0f32; pre.output_len()];
                        SCALAR_ONLY.with(|c| c.set(scalar));
                        apply_strided(src, n, transposed, &p, &pre, &mut out).unwrap();
                        SCALAR_ONLY.with(|c| c.set(false));
                        out
                    };
                    let want = run(&img, false, true);
                    assert_eq!(run(&img, false, false), want, "n {n}, sample {index}");
                    assert_eq!(run(&img_t, true, false), want, "n {n}, sample {index}, t");
                    assert_eq!(run(&img_t, true, true), want, "n {n}, sample {index}, t, s");
                }
            }
        }
    }

    /// Every pixel the warp reads lies in `read_window`.
    #[test]
    fn the_read_window_covers_every_read() {
        let n = 32;
        let aug = Augment::default();
        let pre = Preprocess {
            size: n,
            fit: Fit::Stretch,
            channels: 1,
            ..Preprocess::default()
        };
        for index in 0..50 {
            let p = aug.sample(n, 0, 0, index);
            let [x0, x1, y0, y1] = read_window(&p, n);
            // NaN outside the window: any read of it shows in the output.
            let img: Vec<f32> = (0..n * n)
                .map(|i| {
                    let (x, y) = (i % n, i / n);
                    let inside = (x0..x1).contains(&x) && (y0..y1).contains(&y);
                    if inside {
                        0.5
                    } else {
                        f32::NAN
                    }
                })
                .collect();
            for scalar in [false, true] {
                let mut out = vec![0.0f32; n * n];
                SCALAR_ONLY.with(|c| c.set(scalar));
                apply_strided(&img, n, false, &p, &pre, &mut out).unwrap();
                SCALAR_ONLY.with(|c| c.set(false));
                assert!(out.iter().all(|v| v.is_finite()), "sample {index}: {p:?}");
            }
        }
    }
}
