//! The renderer: one synthetic frontal radiograph as a pure function of its findings and
//! `(seed, index)` (anatomy, findings and film grain drawn analytically per pixel).

use std::f32::consts::{FRAC_PI_2, PI};

use super::Finding;
use crate::images::GrayImage;
use crate::rng::{mix, Rng};

/// Domain tag of the anatomy drawn per image: it keeps that random stream apart from the
/// others (findings, source choice) of the same `(seed, index)`.
const TAG_ANATOMY: u64 = 0xA7A7_0001;

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    // A product with the reciprocal: for constant edges the compiler folds it to a constant.
    let t = ((x - e0) * (1.0 / (e1 - e0))).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// A smooth bump: 1 at t = 0, 0 from |t| = 1 on, `(1 - t^2)^2` between.
#[inline(always)]
fn bump(t2: f32) -> f32 {
    if t2 >= 1.0 {
        0.0
    } else {
        let a = 1.0 - t2;
        a * a
    }
}

/// atan2 within about 0.005 rad, without a libm call.
#[inline(always)]
fn fast_atan2(y: f32, x: f32) -> f32 {
    let (ax, ay) = (x.abs(), y.abs());
    let a = ax.min(ay) / ax.max(ay).max(1e-12);
    let s = a * a;
    let mut r = ((-0.046_496_475 * s + 0.159_314_22) * s - 0.327_622_76) * s * a + a;
    if ay > ax {
        r = FRAC_PI_2 - r;
    }
    if x < 0.0 {
        r = PI - r;
    }
    if y < 0.0 {
        -r
    } else {
        r
    }
}

/// Value noise on a `n` x `n` lattice over the unit square, bilinear with smooth weights.
struct Noise {
    n: usize,
    grid: Vec<f32>,
}

impl Noise {
    fn new(rng: &mut Rng, n: usize) -> Self {
        let grid = (0..(n + 1) * (n + 1))
            .map(|_| rng.unit() * 2.0 - 1.0)
            .collect();
        Self { n, grid }
    }

    /// In [-1, 1].
    #[inline(always)]
    fn at(&self, u: f32, v: f32) -> f32 {
        let n = self.n as f32;
        let x = (u.clamp(0.0, 1.0) * n).min(n - 1e-4);
        let y = (v.clamp(0.0, 1.0) * n).min(n - 1e-4);
        let (xi, yi) = (x as usize, y as usize);
        let (fx, fy) = (x - xi as f32, y - yi as f32);
        let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
        let w = self.n + 1;
        let g = &self.grid;
        let a = g[yi * w + xi] + sx * (g[yi * w + xi + 1] - g[yi * w + xi]);
        let b = g[(yi + 1) * w + xi] + sx * (g[(yi + 1) * w + xi + 1] - g[(yi + 1) * w + xi]);
        a + sy * (b - a)
    }
}

/// A point `(u, v)`.
type Point = (f32, f32);

/// Distance from `p` to the segment `a`-`b`.
#[inline(always)]
fn seg_dist(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> f32 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let (px, py) = (p.0 - a.0, p.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 > 0.0 {
        ((px * dx + py * dy) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (ex, ey) = (px - t * dx, py - t * dy);
    (ex * ex + ey * ey).sqrt()
}

/// A thin bright curve (a tube or wire), as a polyline with a bounding box.
struct Wire {
    points: Vec<(f32, f32)>,
    half_width: f32,
    intensity: f32,
    bbox: [f32; 4],
}

impl Wire {
    fn new(points: Vec<(f32, f32)>, half_width: f32, intensity: f32) -> Self {
        let pad = half_width * 2.0;
        let mut bbox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for &(x, y) in &points {
            bbox[0] = bbox[0].min(x - pad);
            bbox[1] = bbox[1].min(y - pad);
            bbox[2] = bbox[2].max(x + pad);
            bbox[3] = bbox[3].max(y + pad);
        }
        Self {
            points,
            half_width,
            intensity,
            bbox,
        }
    }

    /// A quadratic Bezier curve from `a` through control `c` to `b`, as 10 segments.
    fn bezier(
        a: (f32, f32),
        c: (f32, f32),
        b: (f32, f32),
        half_width: f32,
        intensity: f32,
    ) -> Self {
        let pts = (0..=10)
            .map(|i| {
                let t = i as f32 / 10.0;
                let s = 1.0 - t;
                (
                    s * s * a.0 + 2.0 * s * t * c.0 + t * t * b.0,
                    s * s * a.1 + 2.0 * s * t * c.1 + t * t * b.1,
                )
            })
            .collect();
        Self::new(pts, half_width, intensity)
    }

    #[inline(always)]
    fn at(&self, u: f32, v: f32) -> f32 {
        if u < self.bbox[0] || u > self.bbox[2] || v < self.bbox[1] || v > self.bbox[3] {
            return 0.0;
        }
        let mut d = f32::MAX;
        for w in self.points.windows(2) {
            d = d.min(seg_dist((u, v), w[0], w[1]));
        }
        self.intensity * smoothstep(self.half_width * 1.6, self.half_width * 0.6, d)
    }
}

/// A soft blob made of a few bumps, thresholded with noise into a patchy or dense opacity.
struct Blob {
    parts: Vec<(f32, f32, f32, f32)>, // centre u, v, radius, weight
    lo: f32,
    hi: f32,
    noise: f32,
    intensity: f32,
    bbox: [f32; 4],
}

impl Blob {
    fn new(parts: Vec<(f32, f32, f32, f32)>, lo: f32, hi: f32, noise: f32, intensity: f32) -> Self {
        let mut bbox = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        for &(x, y, r, _) in &parts {
            bbox[0] = bbox[0].min(x - r);
            bbox[1] = bbox[1].min(y - r);
            bbox[2] = bbox[2].max(x + r);
            bbox[3] = bbox[3].max(y + r);
        }
        Self {
            parts,
            lo,
            hi,
            noise,
            intensity,
            bbox,
        }
    }

    #[inline(always)]
    fn at(&self, u: f32, v: f32, n: f32) -> f32 {
        if u < self.bbox[0] || u > self.bbox[2] || v < self.bbox[1] || v > self.bbox[3] {
            return 0.0;
        }
        let mut d = 0.0;
        for &(x, y, r, w) in &self.parts {
            let (dx, dy) = (u - x, v - y);
            d += w * bump((dx * dx + dy * dy) / (r * r));
        }
        self.intensity * smoothstep(self.lo, self.hi, d + self.noise * n) * (0.8 + 0.2 * n)
    }
}

/// One lung field: an ellipse, cut medially by the mediastinum and below by the diaphragm.
#[derive(Clone, Copy)]
struct Lung {
    cx: f32,
    cy: f32,
    rx: f32,
    ry: f32,
    /// The dome: lowest at `base`, rising by `dome_h` at `dome_c`, over half-width `dome_w`.
    base: f32,
    dome_h: f32,
    dome_c: f32,
    dome_w: f32,
}

impl Lung {
    #[inline(always)]
    fn dome(&self, u: f32) -> f32 {
        let t = ((u - self.dome_c) / self.dome_w).clamp(-1.0, 1.0);
        self.base - self.dome_h * (1.0 - t * t)
    }

    /// `sqrt` of the ellipse's implicit function: below 1 inside.
    #[inline(always)]
    fn radius(&self, u: f32, v: f32) -> f32 {
        let (dx, dy) = ((u - self.cx) / self.rx, (v - self.cy) / self.ry);
        (dx * dx + dy * dy).sqrt()
    }
}

const LUT_N: usize = 257;

/// Everything drawn in one image, decided before the pixel loop.
struct Scene {
    cx: f32,
    /// Horizontal shift of the mediastinum (volume loss pulls it to one side).
    shift: f32,
    body_w: f32,
    lungs: [Lung; 2],
    /// Heart ellipse: centre, radii.
    heart: (f32, f32, f32, f32),
    knob: (f32, f32, f32),
    bubble: Option<(f32, f32, f32, f32)>,
    rib_spacing: f32,
    rib_phase: [f32; 2],
    clavicles: [Wire; 2],
    hila: [(f32, f32); 2],
    streaks: [f32; 64],
    lung_tone: f32,
    tissue: f32,
    gain: f32,
    /// `x^gamma` sampled at `LUT_N` points of [0, 1].
    lut: Vec<f32>,
    low: Noise,
    mid: Noise,
    grain: f32,
    // Findings.
    effusion: [Option<(f32, f32)>; 2], // level above base, meniscus rise
    pneumothorax: Option<(usize, Lung)>,
    blobs: Vec<(Blob, bool)>, // (opacity, air bronchograms)
    /// Atelectasis band: end points and half-thickness.
    plate: Option<(Point, Point, f32)>,
    edema: Option<(f32, f32)>, // radius, intensity
    lesion: Option<(f32, f32, f32, f32)>,
    wires: Vec<Wire>,
    pacemaker: Option<[f32; 4]>,
}

impl Scene {
    fn new(findings: &[Finding], seed: u64, index: u64) -> Self {
        let mut rng = Rng::for_sample(seed, TAG_ANATOMY, index);
        let r = &mut rng;
        let has = |f: Finding| findings.contains(&f);
        let cx = 0.5 + r.uniform(-0.015, 0.015);
        let body_w = r.uniform(0.40, 0.46);
        let half_gap = r.uniform(0.17, 0.20);
        let rx = r.uniform(0.125, 0.15);
        let ry = r.uniform(0.33, 0.37);
        let cy = r.uniform(0.48, 0.52);
        let base = [r.uniform(0.72, 0.77), 0.0];
        let base = [base[0], base[0] + r.uniform(0.005, 0.03)]; // left dome lower
        let mut lungs = [0usize, 1].map(|s| {
            let sign = if s == 0 { -1.0 } else { 1.0 };
            let lcx = cx + sign * half_gap;
            Lung {
                cx: lcx,
                cy,
                rx,
                ry,
                base: base[s],
                dome_h: r.uniform(0.05, 0.08),
                dome_c: lcx - sign * 0.02,
                dome_w: rx * 1.05,
            }
        });
        let mut shift = 0.0;
        // Atelectasis: volume loss on one side.
        let mut plate = None;
        if has(Finding::Atelectasis) {
            let s = r.below(2) as usize;
            let sign = if s == 0 { -1.0 } else { 1.0 };
            lungs[s].base -= r.uniform(0.04, 0.07);
            lungs[s].dome_h += 0.02;
            shift = sign * r.uniform(0.015, 0.03);
            let l = lungs[s];
            let pu = l.cx + sign * r.uniform(-0.02, 0.05);
            let pv = l.base - r.uniform(0.10, 0.20);
            let len = r.uniform(0.06, 0.10);
            let ang = r.uniform(-0.3, 0.3);
            let (sa, ca) = ang.sin_cos();
            plate = Some((
                (pu - ca * len, pv - sa * len),
                (pu + ca * len, pv + sa * len),
                r.uniform(0.008, 0.013),
            ));
        }
        let thorax_w = (lungs[1].cx + rx) - (lungs[0].cx - rx);
        let ctr = if has(Finding::Cardiomegaly) {
            r.uniform(0.58, 0.70)
        } else {
            r.uniform(0.40, 0.48)
        };
        let hrx = ctr * thorax_w / 2.0;
        let hry = r.uniform(0.13, 0.16) * (0.8 + 0.5 * ctr);
        let heart = (
            cx + shift + hrx * r.uniform(0.22, 0.32),
            lungs[1].base - hry * r.uniform(0.55, 0.7),
            hrx,
            hry,
        );
        let knob = (
            cx + shift + r.uniform(0.035, 0.055),
            r.uniform(0.27, 0.31),
            0.035,
        );
        let bubble = (r.unit() < 0.6).then(|| {
            (
                lungs[1].cx + r.uniform(-0.02, 0.04),
                lungs[1].base + r.uniform(0.03, 0.05),
                r.uniform(0.03, 0.05),
                r.uniform(0.02, 0.03),
            )
        });
        let clavicles = [-1.0f32, 1.0].map(|sign| {
            let a = (cx + sign * 0.035, r.uniform(0.16, 0.19));
            let b = (cx + sign * r.uniform(0.28, 0.33), r.uniform(0.09, 0.12));
            let c = ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0 + 0.015);
            Wire::bezier(a, c, b, r.uniform(0.010, 0.013), 0.16)
        });
        let hila = [
            (cx + shift - r.uniform(0.07, 0.09), r.uniform(0.40, 0.44)),
            (cx + shift + r.uniform(0.07, 0.09), r.uniform(0.41, 0.45)),
        ];
        let mut streaks = [0.0; 64];
        for s in &mut streaks {
            *s = r.unit();
        }
        let low = Noise::new(r, 6);
        let mid = Noise::new(r, 24);
        let mut scene = Scene {
            cx,
            shift,
            body_w,
            lungs,
            heart,
            knob,
            bubble,
            rib_spacing: r.uniform(0.062, 0.072),
            rib_phase: [r.unit(), r.unit()],
            clavicles,
            hila,
            streaks,
            lung_tone: r.uniform(0.12, 0.17),
            tissue: r.uniform(0.40, 0.46),
            gain: r.uniform(0.92, 1.08),
            lut: {
                let gamma = r.uniform(0.9, 1.1);
                (0..LUT_N)
                    .map(|i| (i as f32 / (LUT_N - 1) as f32).powf(gamma))
                    .collect()
            },
            low,
            mid,
            grain: r.uniform(0.010, 0.02),
            effusion: [None, None],
            pneumothorax: None,
            blobs: Vec::new(),
            plate,
            edema: None,
            lesion: None,
            wires: Vec::new(),
            pacemaker: None,
        };
        scene.add_findings(findings, r);
        scene
    }

    fn add_findings(&mut self, findings: &[Finding], r: &mut Rng) {
        for &f in findings {
            match f {
                Finding::PleuralEffusion => {
                    let sides = match r.below(5) {
                        0 => [true, true],
                        1 | 2 => [true, false],
                        _ => [false, true],
                    };
                    for (s, on) in sides.into_iter().enumerate() {
                        if on {
                            self.effusion[s] = Some((r.uniform(0.14, 0.28), r.uniform(0.04, 0.08)));
                        }
                    }
                }
                Finding::Pneumothorax => {
                    let s = r.below(2) as usize;
                    let sign = if s == 0 { -1.0 } else { 1.0 };
                    let f = r.uniform(0.5, 0.78);
                    let l = self.lungs[s];
                    let c = Lung {
                        cx: l.cx - sign * (1.0 - f) * l.rx * 0.9,
                        cy: l.cy + (1.0 - f) * l.ry * 0.35,
                        rx: l.rx * f,
                        ry: l.ry * (0.55 + 0.35 * f),
                        ..l
                    };
                    self.pneumothorax = Some((s, c));
                }
                Finding::Consolidation => {
                    let s = r.below(2) as usize;
                    let sign = if s == 0 { -1.0 } else { 1.0 };
                    let l = self.lungs[s];
                    let zone = r.uniform(0.25, 0.62);
                    // Mostly lateral, clear of the heart.
                    let u0 = l.cx + sign * r.uniform(-0.15, 0.5) * l.rx;
                    let mut parts = Vec::new();
                    for _ in 0..2 + r.below(3) {
                        parts.push((
                            u0 + r.uniform(-0.05, 0.05),
                            zone + r.uniform(-0.05, 0.05),
                            r.uniform(0.06, 0.10),
                            1.0,
                        ));
                    }
                    let blob = Blob::new(parts, 0.2, 0.55, 0.3, r.uniform(0.30, 0.40));
                    self.blobs.push((blob, true));
                }
                Finding::Pneumonia => {
                    let mut parts = Vec::new();
                    let both = r.unit() < 0.4;
                    let first = r.below(2) as usize;
                    for k in 0..3 + r.below(4) {
                        let s = if both && k % 2 == 1 { 1 - first } else { first };
                        let l = self.lungs[s];
                        parts.push((
                            l.cx + r.uniform(-0.6, 0.6) * l.rx,
                            r.uniform(0.35, 0.68),
                            r.uniform(0.05, 0.085),
                            1.0,
                        ));
                    }
                    let blob = Blob::new(parts, 0.1, 0.85, 0.5, r.uniform(0.18, 0.26));
                    self.blobs.push((blob, false));
                }
                Finding::Edema => {
                    self.edema = Some((r.uniform(0.2, 0.27), r.uniform(0.22, 0.3)));
                }
                Finding::LungLesion => {
                    let s = r.below(2) as usize;
                    let l = self.lungs[s];
                    let rad = if r.unit() < 0.5 {
                        r.uniform(0.018, 0.03)
                    } else {
                        r.uniform(0.045, 0.07)
                    };
                    self.lesion = Some((
                        l.cx + r.uniform(-0.5, 0.5) * l.rx,
                        r.uniform(0.25, 0.62),
                        rad,
                        r.uniform(0.26, 0.36),
                    ));
                }
                Finding::SupportDevices => self.add_devices(r),
                Finding::NoFinding | Finding::Cardiomegaly | Finding::Atelectasis => {}
            }
        }
    }

    fn add_devices(&mut self, r: &mut Rng) {
        let cx = self.cx + self.shift;
        let w = 0.0065;
        let mut any = false;
        while !any {
            if r.unit() < 0.6 {
                // Endotracheal tube: down the trachea, tip above the carina.
                let tip = r.uniform(0.26, 0.32);
                self.wires
                    .push(Wire::new(vec![(cx, 0.0), (cx, tip)], w * 1.4, 0.55));
                any = true;
            }
            if r.unit() < 0.6 {
                // Central venous catheter from a subclavian vein into the SVC.
                let sign = if r.below(2) == 0 { -1.0 } else { 1.0 };
                let a = (cx + sign * r.uniform(0.22, 0.3), r.uniform(0.13, 0.17));
                let b = (cx - 0.03 + r.uniform(-0.01, 0.01), r.uniform(0.36, 0.44));
                let c = (cx - 0.03 + sign * 0.05, a.1 + 0.02);
                self.wires.push(Wire::bezier(a, c, b, w, 0.6));
                any = true;
            }
            if r.unit() < 0.4 {
                // Nasogastric tube: down the oesophagus into the stomach.
                let l = self.lungs[1];
                let end = (l.cx + r.uniform(-0.02, 0.04), l.base + r.uniform(0.06, 0.1));
                let mid = (cx + 0.01, l.base - 0.02);
                self.wires
                    .push(Wire::new(vec![(cx + 0.008, 0.0), mid, end], w * 1.1, 0.5));
                any = true;
            }
            if r.unit() < 0.5 {
                // ECG leads: small rings with wires.
                for _ in 0..2 + r.below(3) {
                    let p = (r.uniform(0.15, 0.85), r.uniform(0.15, 0.8));
                    let q = (p.0 + r.uniform(-0.2, 0.2), p.1 + r.uniform(0.1, 0.3));
                    let ring: Vec<(f32, f32)> = (0..=12)
                        .map(|k| {
                            let a = k as f32 / 12.0 * 2.0 * PI;
                            (p.0 + 0.018 * a.cos(), p.1 + 0.018 * a.sin())
                        })
                        .collect();
                    self.wires.push(Wire::new(ring, w * 0.9, 0.6));
                    let c = ((p.0 + q.0) / 2.0 + 0.05, (p.1 + q.1) / 2.0);
                    self.wires.push(Wire::bezier(p, c, q, w * 0.5, 0.35));
                }
                any = true;
            }
            if r.unit() < 0.2 {
                // Pacemaker box in the left upper chest, lead to the right ventricle.
                let (bu, bv) = (
                    self.lungs[1].cx + r.uniform(0.0, 0.08),
                    r.uniform(0.16, 0.22),
                );
                self.pacemaker = Some([bu - 0.045, bv - 0.03, bu + 0.045, bv + 0.03]);
                let tip = (
                    self.heart.0 + self.heart.2 * 0.3,
                    self.heart.1 + self.heart.3 * 0.4,
                );
                self.wires
                    .push(Wire::bezier((bu, bv), (cx - 0.02, 0.3), tip, w, 0.55));
                any = true;
            }
        }
    }

    /// The gray value at `(u, v)`; `e` is the edge softness (about a pixel).
    #[inline(always)]
    fn shade(&self, u: f32, v: f32, e: f32, grain: f32) -> f32 {
        let cx = self.cx;
        let mc = cx + self.shift;
        let low = self.low.at(u, v);
        let mid = self.mid.at(u, v);
        // Body outline: neck, sloping shoulders, chest.
        let hw = if v < 0.05 {
            0.09
        } else if v < 0.2 {
            let t = smoothstep(0.05, 0.2, v);
            0.09 + t * (self.body_w + 0.02 - 0.09)
        } else {
            self.body_w + 0.02 - 0.03 * ((v - 0.2) / 0.8)
        };
        let body = smoothstep(hw + e, hw - e, (u - cx).abs());
        let mut val = 0.04 + body * (self.tissue - 0.04 + 0.03 * low);
        // Spine and vertebrae, trachea.
        let du_m = (u - mc).abs();
        let spine = smoothstep(0.045 + e, 0.04 - e, du_m);
        if spine > 0.0 {
            let disc = ((v * 13.0).fract() - 0.5).abs();
            val += spine * (0.10 - 0.05 * smoothstep(0.06, 0.0, disc)) * body;
        }
        if v < 0.36 {
            let tr = smoothstep(0.018 + e, 0.013 - e, (u - mc).abs()) * smoothstep(0.36, 0.32, v);
            val -= 0.12 * tr;
        }
        // Lungs.
        let s = if u < cx { 0 } else { 1 };
        let l = &self.lungs[s];
        let rr = l.radius(u, v);
        let el = e.max(0.01);
        let ell = smoothstep(1.0 + el / l.rx, 1.0 - el / l.rx, rr);
        let mut lung = 0.0;
        if ell > 0.0 {
            let med = 0.05 + 0.025 * smoothstep(0.15, 0.55, v);
            let medial = smoothstep(med - el, med + el, (u - mc).abs());
            let dome = l.dome(u);
            let above = smoothstep(dome + el, dome - el, v);
            lung = ell * medial * above;
            // Effusion fills the hemithorax (the ellipse, below the dome too) from the base.
            if let Some((level, rise)) = self.effusion[s] {
                let lateral =
                    ((u - l.cx) / l.rx * if s == 0 { -1.0 } else { 1.0 }).clamp(-1.0, 1.0);
                let lat = (lateral + 1.0) * 0.5;
                let top = l.base - level - rise * lat * lat;
                let fluid = smoothstep(top - 0.012, top + 0.012, v) * ell * medial;
                lung *= 1.0 - fluid;
                val += fluid * 0.03 * smoothstep(top, l.base, v);
            }
        }
        if lung > 0.0 {
            // Vessel markings: streaks radiating from the hilum, fading outwards.
            let (hu, hv) = self.hila[s];
            let (dx, dy) = (u - hu, v - hv);
            let rad = (dx * dx + dy * dy).sqrt();
            let ang = fast_atan2(dy, dx);
            let t = (ang / PI + 1.0) * 32.0;
            let i = t as usize & 63;
            let f = t.fract();
            let st = self.streaks[i] + f * (self.streaks[(i + 1) & 63] - self.streaks[i]);
            let fall = (1.0 - rad / 0.34).max(0.0);
            let mut marks = 0.10 * smoothstep(0.45, 0.85, st) * fall * fall * (0.6 + 0.4 * mid)
                + 0.02 * mid
                + 0.12 * bump(rad * rad / (0.07 * 0.07));
            let mut tone = self.lung_tone + 0.04 * smoothstep(0.35, 0.12, v) - 0.02 * rr;
            if let Some((ps, c)) = &self.pneumothorax {
                if *ps == s {
                    let cr = c.radius(u, v);
                    let inside = smoothstep(1.0 + e / c.rx, 1.0 - e / c.rx, cr);
                    let line = (1.0 - ((cr - 1.0) * c.rx).abs() / (1.2 * e)).max(0.0);
                    marks *= inside;
                    tone = tone * inside + 0.045 * (1.0 - inside) + 0.09 * inside;
                    tone += 0.22 * line;
                }
            }
            if let Some((er, ei)) = self.edema {
                let (hu2, hv2) = self.hila[s];
                let (ex, ey) = (u - hu2, v - hv2);
                let haze = bump((ex * ex + ey * ey * 1.6) / (er * er));
                marks *= 1.0 - 0.5 * haze;
                tone += ei * haze * (0.75 + 0.25 * mid);
                // Kerley B lines: short horizontal lines at the lateral bases.
                let lateral = (u - l.cx).abs() / l.rx;
                if lateral > 0.7 && v > l.base - 0.16 {
                    let k = ((v * 70.0).fract() - 0.5).abs();
                    tone += 0.06 * smoothstep(0.12, 0.0, k) * smoothstep(0.7, 0.85, lateral);
                }
            }
            let lung_val = tone + marks;
            val = val * (1.0 - lung) + lung_val * lung;
        }
        // Posterior ribs: arcs sloping down laterally, brighter over the lungs.
        let d = (u - cx).abs();
        if v > 0.08 && v < 0.85 && d < self.body_w {
            let arc = v + 0.15 * d - 1.2 * d * d;
            let band = (arc / self.rib_spacing + self.rib_phase[s]).fract();
            let rib = smoothstep(0.0, 0.05, band) * smoothstep(0.4, 0.33, band);
            let edge = smoothstep(0.3, 0.36, band) * smoothstep(0.4, 0.36, band);
            let dome = l.dome(u);
            let fade = smoothstep(0.08, 0.14, v)
                * smoothstep(self.body_w, self.body_w - 0.05, d)
                * smoothstep(dome + 0.04, dome - 0.01, v);
            val += (0.055 * rib + 0.035 * edge) * fade * (0.35 + 0.65 * lung);
        }
        // Opacities inside the lungs.
        if ell > 0.0 {
            let hemi = ell * smoothstep(l.dome(u) + 0.04, l.dome(u) - 0.01, v);
            for (blob, bronchi) in &self.blobs {
                let o = blob.at(u, v, mid);
                if o > 0.0 {
                    let mut o = o * hemi;
                    if *bronchi {
                        let b = ((mid * 9.0 + u * 40.0).sin()).abs();
                        o *= 1.0 - 0.35 * smoothstep(0.15, 0.0, b);
                    }
                    val += o;
                }
            }
            if let Some((a, b, w)) = self.plate {
                let dd = seg_dist((u, v), a, b);
                val += 0.28 * smoothstep(w + e, w * 0.3, dd) * hemi;
            }
            if let Some((lu, lv, lr, li)) = self.lesion {
                let (dx, dy) = (u - lu, v - lv);
                let rr = (dx * dx + dy * dy).sqrt();
                let rl = lr * (1.0 + 0.12 * mid);
                val += li * smoothstep(rl + e, rl - e, rr);
            }
        }
        // Heart, aortic knob, gastric bubble.
        let (hx, hy, hrx, hry) = self.heart;
        let (hdx, hdy) = ((u - hx) / hrx, (v - hy) / hry);
        let hr = (hdx * hdx + hdy * hdy).sqrt();
        let heart = smoothstep(1.0 + e / hrx, 1.0 - e / hrx, hr) * smoothstep(0.86, 0.6, v);
        let (ku, kv, kr) = self.knob;
        let kd = ((u - ku) * (u - ku) + (v - kv) * (v - kv)).sqrt();
        let knob = smoothstep(kr + e, kr - e, kd);
        let cardiac = heart.max(knob);
        if cardiac > 0.0 {
            let target = self.tissue + 0.08;
            val = val * (1.0 - cardiac) + target.max(val) * cardiac;
        }
        if let Some((bu, bv, bx, by)) = self.bubble {
            let (dx, dy) = ((u - bu) / bx, (v - bv) / by);
            let g = (dx * dx + dy * dy).sqrt();
            val -= 0.12 * smoothstep(1.0 + e / by, 1.0 - e / by, g);
        }
        // Clavicles.
        if v < 0.3 {
            for c in &self.clavicles {
                val += c.at(u, v);
            }
        }
        // Devices: radio-opaque, drawn over everything.
        for w in &self.wires {
            let d = w.at(u, v);
            if d > 0.0 {
                val = val.max(0.35 + d);
            }
        }
        if let Some([x0, y0, x1, y1]) = self.pacemaker {
            if u > x0 && u < x1 && v > y0 && v < y1 {
                val = 0.95;
            }
        }
        // Film response and grain.
        let t = (val * self.gain).clamp(0.0, 1.0) * (LUT_N - 1) as f32;
        let i = (t as usize).min(LUT_N - 2);
        let val = self.lut[i] + (t - i as f32) * (self.lut[i + 1] - self.lut[i]);
        (val + self.grain * grain).clamp(0.0, 1.0)
    }
}

/// Renders one `size` x `size` phantom radiograph with `findings`, deterministic in
/// `(seed, index)`. A finding listed twice is drawn once; `NoFinding` draws nothing.
///
/// # Panics
/// When `size` is 0.
pub fn render(findings: &[Finding], size: usize, seed: u64, index: u64) -> GrayImage {
    assert!(size > 0, "phantom size must be at least 1");
    let mut fs = findings.to_vec();
    fs.sort();
    fs.dedup();
    let scene = Scene::new(&fs, seed, index);
    let n = size as f32;
    let e = (1.2 / n).max(0.004);
    let mut data = vec![0.0f32; size * size];
    let grain_seed = mix(seed ^ mix(index ^ 0x6A11));
    for (y, row) in data.chunks_exact_mut(size).enumerate() {
        let v = (y as f32 + 0.5) / n;
        for (x, px) in row.iter_mut().enumerate() {
            let u = (x as f32 + 0.5) / n;
            let h = mix(grain_seed ^ ((y as u64) << 32 | x as u64));
            let grain = (h >> 40) as f32 * (2.0 / (1u64 << 24) as f32) - 1.0;
            *px = scene.shade(u, v, e, grain);
        }
    }
    GrayImage::from_square(size, data)
}

/// A contact sheet: one row per finding of [`Finding::ALL`] (in that order), `per_row`
/// examples each, `size` px tiles with a 2 px black gap. Row `r`, column `c` is training-style
/// image `r * per_row + c` with that single finding.
pub fn contact_sheet(per_row: usize, size: usize, seed: u64) -> GrayImage {
    let gap = 2;
    let rows = Finding::ALL.len();
    let (w, h) = (per_row * (size + gap) + gap, rows * (size + gap) + gap);
    let mut data = vec![0.0f32; w * h];
    for (r, &f) in Finding::ALL.iter().enumerate() {
        for c in 0..per_row {
            let tile = render(&[f], size, seed, (r * per_row + c) as u64);
            let (x0, y0) = (gap + c * (size + gap), gap + r * (size + gap));
            for (y, src) in tile.pixels().chunks_exact(size).enumerate() {
                data[(y0 + y) * w + x0..(y0 + y) * w + x0 + size].copy_from_slice(src);
            }
        }
    }
    GrayImage::new(w, h, data).unwrap_or_else(|_| GrayImage::from_square(1, vec![0.0]))
}
