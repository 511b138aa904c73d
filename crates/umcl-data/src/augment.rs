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

use crate::images::{GrayImage, ImageError, Preprocess};

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
    let src = img.pixels();
    let b = params.brightness;
    // Walk the source position in 16.16 fixed point: exact enough (224 steps add at most
    // 224 * 2^-17 px of rounding) and free of float-to-int conversions in the loop. The
    // output pixel is inside the crop frame exactly when its source position lies in
    // [crop origin - 0.5, crop end - 0.5), as the map from frame to source is increasing.
    const ONE: f32 = 65536.0;
    let fixed = |v: f32| (v * ONE).round() as i64;
    let (sx_du, sy_du) = (fixed(dux * kx), fixed(duy * ky));
    let (sx_lo, sx_hi) = (fixed(cx0 - 0.5), fixed(cx0 + cw - 0.5));
    let (sy_lo, sy_hi) = (fixed(cy0 - 0.5), fixed(cy0 + ch - 0.5));
    let max_fixed = ((n - 1) as i64) << 16;
    let last = n - 2;
    let first = &mut out[..plane];
    let mut sum = 0.0f64;
    for v in 0..n {
        let qx = q0x + v as f32 * dvx;
        let qy = q0y + v as f32 * dvy;
        let mut sx = fixed(cx0 + qx * kx - 0.5);
        let mut sy = fixed(cy0 + qy * ky - 0.5);
        let row = &mut first[v * n..(v + 1) * n];
        let mut row_sum = 0.0f32;
        for o in row.iter_mut() {
            let inside = sx >= sx_lo && sx < sx_hi && sy >= sy_lo && sy < sy_hi;
            let val = if inside {
                let x = sx.clamp(0, max_fixed);
                let y = sy.clamp(0, max_fixed);
                let x0 = ((x >> 16) as usize).min(last);
                let y0 = ((y >> 16) as usize).min(last);
                let ax = (x - ((x0 as i64) << 16)) as f32 * (1.0 / ONE);
                let ay = (y - ((y0 as i64) << 16)) as f32 * (1.0 / ONE);
                let i = y0 * n + x0;
                let (p00, p01) = (src[i], src[i + 1]);
                let (p10, p11) = (src[i + n], src[i + n + 1]);
                let top = p00 + ax * (p01 - p00);
                let bot = p10 + ax * (p11 - p10);
                ((top + ay * (bot - top)) * b).clamp(0.0, 1.0)
            } else {
                0.0
            };
            *o = val;
            row_sum += val;
            sx += sx_du;
            sy += sy_du;
        }
        sum += row_sum as f64;
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
    let (head, tail) = out.split_at_mut(plane);
    if pre.channels == 3 {
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
    Ok(())
}

/// A small, fast generator (SplitMix64) for per-sample random choices. Not for cryptography.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub(crate) fn new(seed: u64) -> Self {
        Self(mix(seed))
    }

    /// The generator of one sample in one epoch: independent of any other sample's.
    pub(crate) fn for_sample(seed: u64, epoch: u64, index: u64) -> Self {
        Self::new(
            mix(seed ^ 0x5DEE_CE66_D1CE_4E5B)
                ^ mix(epoch.wrapping_add(0x9E37_79B9))
                ^ mix(index.wrapping_mul(0xD6E8_FEB8_6659_FD93).wrapping_add(1)),
        )
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in `[lo, hi)` (or `lo` when the range is empty).
    pub(crate) fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `[0, n)`; `n` must be at least 1.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

/// The SplitMix64 finaliser: a bijective hash of 64-bit values.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
