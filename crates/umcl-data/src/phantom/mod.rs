//! The phantom dataset: SYNTHETIC chest-radiograph-like images, drawn from analytic shapes.
//! No image here shows a real patient and none may be used for any clinical purpose.
//!
//! [`render`] draws one frontal (PA) view: the body outline, two lung fields cut by the
//! diaphragm domes, mediastinum, spine, heart, clavicles, posterior ribs, vessel markings and
//! film noise, then the asked-for findings on top, each with a random position, size and
//! intensity:
//!
//! | finding | what is drawn |
//! |---|---|
//! | `cardiomegaly` | a heart with cardiothoracic ratio 0.58-0.70 (otherwise 0.40-0.48) |
//! | `pleural_effusion` | fluid filling a lung base up to a meniscus that rises laterally, blunting the costophrenic angle |
//! | `pneumothorax` | a collapsed lung with a visible pleural line and a dark rim without markings |
//! | `consolidation` | a dense, homogeneous lobar opacity with air bronchograms |
//! | `pneumonia` | several patchy, fluffy opacities |
//! | `atelectasis` | a plate-like band with volume loss (raised hemidiaphragm, shifted mediastinum) |
//! | `edema` | bilateral perihilar haze with Kerley B lines at the bases |
//! | `lung_lesion` | a round nodule or mass |
//! | `support_devices` | tubes and lines: endotracheal tube, central line, nasogastric tube, ECG leads, pacemaker |
//!
//! Everything is a pure function of `(seed, index)`: the same call draws the same image on any
//! machine and thread count. [`write_dataset`] writes a training manifest (three sources that
//! exercise unification) and the fixed evaluation split "phantom 5x200".
//!
//! ```
//! use umcl_data::phantom::{render, Finding};
//!
//! let a = render(&[Finding::Cardiomegaly], 64, 7, 0);
//! assert_eq!((a.width(), a.height()), (64, 64));
//! assert_eq!(a, render(&[Finding::Cardiomegaly], 64, 7, 0)); // deterministic
//! ```

mod dataset;
mod render;

pub use self::dataset::{
    eval_finding, labels_for, sources, write_dataset, PhantomOptions, PhantomSummary,
    EVAL_PER_FINDING, EVAL_SEED, MAX_SAMPLES, MAX_SIZE,
};
pub use self::render::{contact_sheet, render};

use std::fmt;
use std::str::FromStr;

use crate::rng::Rng;

/// The findings the phantom can draw (and `NoFinding`, drawn as nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Finding {
    /// No finding: nothing drawn.
    NoFinding,
    /// An enlarged heart.
    Cardiomegaly,
    /// Fluid in the pleural space.
    PleuralEffusion,
    /// Air in the pleural space.
    Pneumothorax,
    /// A dense lobar opacity.
    Consolidation,
    /// Patchy opacities.
    Pneumonia,
    /// A plate-like band with volume loss.
    Atelectasis,
    /// Perihilar haze.
    Edema,
    /// A nodule or mass.
    LungLesion,
    /// Tubes and lines.
    SupportDevices,
}

impl Finding {
    /// Every finding, `NoFinding` first.
    pub const ALL: [Finding; 10] = [
        Finding::NoFinding,
        Finding::Cardiomegaly,
        Finding::PleuralEffusion,
        Finding::Pneumothorax,
        Finding::Consolidation,
        Finding::Pneumonia,
        Finding::Atelectasis,
        Finding::Edema,
        Finding::LungLesion,
        Finding::SupportDevices,
    ];

    /// The five findings of the evaluation split "phantom 5x200", in its order.
    pub const EVAL: [Finding; 5] = [
        Finding::Cardiomegaly,
        Finding::PleuralEffusion,
        Finding::Pneumothorax,
        Finding::Consolidation,
        Finding::Edema,
    ];

    /// The label key of the chest X-ray schema.
    pub fn key(self) -> &'static str {
        match self {
            Finding::NoFinding => "no_finding",
            Finding::Cardiomegaly => "cardiomegaly",
            Finding::PleuralEffusion => "pleural_effusion",
            Finding::Pneumothorax => "pneumothorax",
            Finding::Consolidation => "consolidation",
            Finding::Pneumonia => "pneumonia",
            Finding::Atelectasis => "atelectasis",
            Finding::Edema => "edema",
            Finding::LungLesion => "lung_lesion",
            Finding::SupportDevices => "support_devices",
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// A name that is not one of the phantom's findings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown phantom finding `{0}`")]
pub struct UnknownFinding(pub String);

impl FromStr for Finding {
    type Err = UnknownFinding;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Finding::ALL
            .into_iter()
            .find(|f| f.key() == s)
            .ok_or_else(|| UnknownFinding(s.to_string()))
    }
}

/// Domain tag of the findings drawn per training image: it keeps that random stream apart
/// from the others (anatomy, source choice) of the same `(seed, index)`.
const TAG_FINDINGS: u64 = 0xA7A7_0002;

/// The findings of training image `index`: no finding with probability 1/4, else one
/// finding (probability 0.7 of the rest) or two different ones, drawn uniformly.
pub fn draw_findings(seed: u64, index: u64) -> Vec<Finding> {
    let mut rng = Rng::for_sample(seed, TAG_FINDINGS, index);
    if rng.unit() < 0.25 {
        return vec![Finding::NoFinding];
    }
    let pool = &Finding::ALL[1..];
    let first = rng.below(pool.len() as u64) as usize;
    let mut out = vec![pool[first]];
    if rng.unit() >= 0.7 {
        // Uniform over the other findings: skip over the first.
        let mut second = rng.below(pool.len() as u64 - 1) as usize;
        if second >= first {
            second += 1;
        }
        out.push(pool[second]);
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// Small drawing helpers. Coordinates are normalised: u (left to right) and v (top to bottom) in
// [0, 1]; the patient's right is on the image's left, as on a PA film.
