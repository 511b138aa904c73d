//! Patient-level train/val/test splits, deterministic from a seed and three fractions.
//!
//! Samples are grouped by patient ([`Sample::group_key`]: source and patient id, or the sample
//! alone when its source names no patient). Groups are ordered by a seeded hash of their key,
//! so the order of the manifest does not matter, and the first `round(n * train)` groups go to
//! train, the next `round(n * val)` to val, the rest to test (largest-remainder rounding, so the
//! three counts add up to `n`). No patient is in two splits.
//!
//! [`Split::fold`] makes fold `k` of a patient-level K-fold cross-validation instead, stratified
//! by a property of each patient (a label, a metadata field), so that every fold's test part
//! holds about 1/K of each stratum's patients.
//!
//! The split is written next to the manifest as `STEM.splits.json`: the seed, the fractions,
//! the sample ids of each part, so a run can be reproduced from the file alone, and the
//! manifest's fingerprint (its sample count and a hash of its ids), so a split read for a
//! manifest that has changed since is refused instead of silently leaving samples out
//! ([`Split::check`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::manifest::sibling_path;
use crate::rng::splitmix64;
use crate::sample::Sample;
use umcl_fs::write_atomic;

/// One part of a split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// Training.
    Train,
    /// Validation.
    Val,
    /// Test.
    Test,
}

impl Part {
    /// The three parts.
    pub const ALL: [Part; 3] = [Part::Train, Part::Val, Part::Test];

    /// `train`, `val` or `test`.
    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Val => "val",
            Part::Test => "test",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to split: a seed and the train/val/test fractions of patients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    /// The seed of the patient order.
    pub seed: u64,
    /// Fractions of patients for train, val and test; non-negative, summing to 1.
    pub fractions: [f64; 3],
}

impl SplitSpec {
    /// A spec; the fractions must be finite, non-negative and sum to 1 (within 1e-6).
    pub fn new(seed: u64, fractions: [f64; 3]) -> Result<SplitSpec> {
        let sum: f64 = fractions.iter().sum();
        if fractions.iter().any(|f| !f.is_finite() || *f < 0.0) || (sum - 1.0).abs() > 1e-6 {
            return Err(DataError::Invalid(format!(
                "split fractions {fractions:?} must be non-negative and sum to 1"
            )));
        }
        Ok(SplitSpec { seed, fractions })
    }
}

/// Parses `0.8,0.1,0.1`, or `0.8,0.1` with test taking the rest.
///
/// ```
/// use umcl_data::split::parse_fractions;
/// let [train, val, test] = parse_fractions("0.8,0.1").unwrap();
/// assert_eq!((train, val), (0.8, 0.1));
/// assert!((test - 0.1).abs() < 1e-12);
/// assert!(parse_fractions("0.8,0.5").is_err());
/// ```
pub fn parse_fractions(text: &str) -> Result<[f64; 3]> {
    let bad = || {
        DataError::Invalid(format!(
            "fractions `{text}`: expected TRAIN,VAL[,TEST] such as 0.8,0.1,0.1"
        ))
    };
    let parts = text
        .split(',')
        .map(|p| f64::from_str(p.trim()).map_err(|_| bad()))
        .collect::<Result<Vec<_>>>()?;
    let fractions = match parts[..] {
        [train, val] => [train, val, 1.0 - train - val],
        [train, val, test] => [train, val, test],
        _ => return Err(bad()),
    };
    SplitSpec::new(0, fractions)?;
    Ok(fractions)
}

/// Fold `fold` (from 0) of a `folds`-fold cross-validation by patient (see [`Split::fold`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldSpec {
    /// The seed of the patient order.
    pub seed: u64,
    /// Number of folds, at least 2.
    pub folds: usize,
    /// The fold that is the test part, `0..folds`.
    pub fold: usize,
    /// Percent of the other folds' patients (per stratum) kept for validation.
    pub val_percent: u32,
    /// What the patients were stratified by (`labels`, `meta.finding`, `none`).
    pub stratify: String,
}

/// How a manifest is split: by fractions of patients, or one fold of a cross-validation
/// stratified by [`FoldSpec::stratify`] (read by [`stratum`]). What `umcl data split` and the
/// Python `umcl.split` choose between.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitMethod {
    /// Train/val/test fractions of patients.
    Fractions(SplitSpec),
    /// One fold of a patient-level, stratified K-fold cross-validation.
    Fold(FoldSpec),
}

/// What a sample's stratum is, for [`Split::fold`].
pub type Stratum = Box<dyn Fn(&Sample) -> String + Send + Sync>;

/// The stratum `how` names, as `umcl data split --stratify` takes it: `labels` (the sample's
/// positive keys among `keys`, the manifest's label keys, joined by `+`), `meta.NAME` (the
/// metadata field NAME, empty when absent) or `none` (one stratum).
///
/// ```
/// use umcl_data::sample::Sample;
/// use umcl_data::schema::{LabelState, Schema};
/// use umcl_data::split::stratum;
///
/// let schema = Schema::chest_xray();
/// let keys: Vec<String> = schema.keys().map(String::from).collect();
/// let mut sample = Sample::new("s1", "demo", &schema);
/// sample.labels[schema.index_of("edema").unwrap()] = LabelState::Positive;
/// sample.meta.insert("finding".into(), "Pneumonia".into());
/// assert_eq!(stratum("labels", &keys)?(&sample), "edema");
/// assert_eq!(stratum("meta.finding", &keys)?(&sample), "Pneumonia");
/// assert!(stratum("colour", &keys).is_err());
/// # Ok::<(), umcl_data::error::DataError>(())
/// ```
pub fn stratum(how: &str, keys: &[String]) -> Result<Stratum> {
    let keys = keys.to_vec();
    Ok(match how {
        "none" => Box::new(|_| String::new()),
        "labels" => Box::new(move |s| {
            keys.iter()
                .zip(&s.labels)
                .filter(|(_, st)| **st == crate::schema::LabelState::Positive)
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join("+")
        }),
        other => match other.strip_prefix("meta.") {
            Some(field) if !field.is_empty() => {
                let field = field.to_string();
                Box::new(move |s| s.meta.get(&field).cloned().unwrap_or_default())
            }
            _ => {
                return Err(DataError::Invalid(format!(
                    "stratify `{other}`: expected labels, meta.NAME or none"
                )))
            }
        },
    })
}

/// A split of one manifest's samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// How it was made (for a fold, the fractions of patients it came out with).
    pub spec: SplitSpec,
    /// The fold, when this is one fold of a cross-validation.
    pub fold: Option<FoldSpec>,
    /// Sample ids per part, in manifest order.
    pub ids: [Vec<String>; 3],
    /// Patient (group) counts per part.
    pub groups: [usize; 3],
    /// The fingerprint of the samples it was made from (`None` in files of version 1).
    pub made_from: Option<Fingerprint>,
}

/// What identifies a manifest's set of samples: their count and an order-independent hash
/// of their ids. Adding, removing or renaming a sample changes it; relabelling does not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// Number of samples.
    pub samples: usize,
    /// The hash of the ids, 16 hex digits.
    pub ids_hash: String,
}

impl Fingerprint {
    /// The fingerprint of `samples`.
    pub fn of(samples: &[Sample]) -> Fingerprint {
        let hash = samples.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(group_hash(FINGERPRINT_SEED, &s.id))
        });
        Fingerprint {
            samples: samples.len(),
            ids_hash: format!("{hash:016x}"),
        }
    }
}

/// The seed of the id hash of [`Fingerprint`].
const FINGERPRINT_SEED: u64 = 0x5EED_F1A9_E4D1_D500;

impl Split {
    /// Splits `samples` by patient.
    pub fn new(samples: &[Sample], spec: SplitSpec) -> Split {
        let mut keys: Vec<(u64, String)> = samples
            .iter()
            .map(|s| s.group_key())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|key| (group_hash(spec.seed, &key), key))
            .collect();
        keys.sort();
        let counts = largest_remainder(keys.len(), spec.fractions);
        let mut part_of: HashMap<String, Part> = HashMap::with_capacity(keys.len());
        let mut next = keys.into_iter().map(|(_, key)| key);
        for (part, count) in Part::ALL.into_iter().zip(counts) {
            for key in next.by_ref().take(count) {
                part_of.insert(key, part);
            }
        }
        let mut ids: [Vec<String>; 3] = Default::default();
        for sample in samples {
            let part = part_of
                .get(&sample.group_key())
                .copied()
                .unwrap_or(Part::Test);
            ids[part as usize].push(sample.id.clone());
        }
        Split {
            spec,
            fold: None,
            ids,
            groups: counts,
            made_from: Some(Fingerprint::of(samples)),
        }
    }

    /// The split of a manifest's samples by `method`; a fold's stratum is read against the
    /// manifest's label keys.
    pub fn of_manifest(manifest: &crate::manifest::Manifest, method: SplitMethod) -> Result<Split> {
        match method {
            SplitMethod::Fractions(spec) => Ok(Split::new(&manifest.samples, spec)),
            SplitMethod::Fold(spec) => {
                let by = stratum(&spec.stratify, &manifest.header.keys)?;
                Split::fold(&manifest.samples, spec, by)
            }
        }
    }

    /// Fold `spec.fold` of a patient-level `spec.folds`-fold cross-validation: the test part is
    /// that fold's patients, validation `spec.val_percent`% of the others, training the rest.
    ///
    /// Each patient's stratum is `stratum` of its first sample. Within a stratum, patients are
    /// ordered by a seeded hash of their key and dealt to the folds in turn, the turn carrying
    /// on from one stratum to the next (strata in name order), so every fold gets about 1/K of
    /// each stratum and the folds differ in size by at most one patient. The validation
    /// patients are the first `round(val_percent% * n)` of each stratum's remaining patients, in
    /// the same order. Over the K folds, every patient is in exactly one test part.
    ///
    /// ```
    /// use umcl_data::sample::Sample;
    /// use umcl_data::schema::Schema;
    /// use umcl_data::split::{FoldSpec, Split, Part};
    ///
    /// let schema = Schema::chest_xray();
    /// let samples: Vec<Sample> = (0..20)
    ///     .map(|i| {
    ///         let mut s = Sample::new(format!("s{i}"), "demo", &schema);
    ///         s.patient_id = Some(format!("p{i}"));
    ///         s
    ///     })
    ///     .collect();
    /// let spec = |fold| FoldSpec { seed: 0, folds: 5, fold, val_percent: 0, stratify: "none".into() };
    /// let tests: Vec<usize> = (0..5)
    ///     .map(|k| Split::fold(&samples, spec(k), |_| String::new()).unwrap().ids(Part::Test).len())
    ///     .collect();
    /// assert_eq!(tests, [4, 4, 4, 4, 4]);
    /// ```
    pub fn fold<F>(samples: &[Sample], spec: FoldSpec, stratum: F) -> Result<Split>
    where
        F: Fn(&Sample) -> String,
    {
        if spec.folds < 2 || spec.fold >= spec.folds || spec.val_percent >= 100 {
            return Err(DataError::Invalid(format!(
                "fold {} of {} folds with {}% validation: need at least 2 folds, a fold below \
                 their number and under 100% validation",
                spec.fold, spec.folds, spec.val_percent
            )));
        }
        // Patient -> stratum of its first sample.
        let mut first: BTreeMap<String, String> = BTreeMap::new();
        for sample in samples {
            first
                .entry(sample.group_key())
                .or_insert_with(|| stratum(sample));
        }
        let mut strata: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
        for (key, st) in first {
            strata
                .entry(st)
                .or_default()
                .push((group_hash(spec.seed, &key), key));
        }
        let mut part_of: HashMap<String, Part> = HashMap::new();
        let mut counts = [0usize; 3];
        let mut turn = 0usize;
        for patients in strata.values_mut() {
            patients.sort();
            let mut rest = Vec::new();
            for (_, key) in patients.iter() {
                if turn % spec.folds == spec.fold {
                    part_of.insert(key.clone(), Part::Test);
                    counts[Part::Test as usize] += 1;
                } else {
                    rest.push(key.clone());
                }
                turn += 1;
            }
            let val = (rest.len() as f64 * f64::from(spec.val_percent) / 100.0).round() as usize;
            for (i, key) in rest.into_iter().enumerate() {
                let part = if i < val { Part::Val } else { Part::Train };
                counts[part as usize] += 1;
                part_of.insert(key, part);
            }
        }
        let n: usize = counts.iter().sum();
        let fractions = counts.map(|c| c as f64 / n.max(1) as f64);
        let mut ids: [Vec<String>; 3] = Default::default();
        for sample in samples {
            let part = part_of
                .get(&sample.group_key())
                .copied()
                .unwrap_or(Part::Test);
            ids[part as usize].push(sample.id.clone());
        }
        Ok(Split {
            spec: SplitSpec {
                seed: spec.seed,
                fractions: if n == 0 { [1.0, 0.0, 0.0] } else { fractions },
            },
            fold: Some(spec),
            ids,
            groups: counts,
            made_from: Some(Fingerprint::of(samples)),
        })
    }

    /// An error unless this split (read from `path`) was made from exactly `samples`: a
    /// manifest that gained, lost or renamed samples since would train without the new ones
    /// and validate on whatever still matches. A split of version 1, without a fingerprint,
    /// must at least place every sample.
    pub fn check(&self, samples: &[Sample], path: &Path) -> Result<()> {
        let lookup = self.lookup();
        let unplaced = samples
            .iter()
            .filter(|s| !lookup.contains_key(s.id.as_str()))
            .count();
        let now = Fingerprint::of(samples);
        let matches = match &self.made_from {
            Some(then) => *then == now,
            None => unplaced == 0,
        };
        if matches {
            return Ok(());
        }
        let then = self
            .made_from
            .as_ref()
            .map_or(String::new(), |f| format!(" of {} samples", f.samples));
        Err(DataError::file(
            path,
            format!(
                "this split was made for another version of the manifest{then}; the manifest \
                 now has {} samples, {unplaced} of them in no part: make a new split \
                 (`umcl data split`, or delete this file and training makes one)",
                now.samples
            ),
        ))
    }

    /// The ids of one part.
    pub fn ids(&self, part: Part) -> &[String] {
        &self.ids[part as usize]
    }

    /// Sample id -> part.
    pub fn lookup(&self) -> HashMap<&str, Part> {
        Part::ALL
            .into_iter()
            .flat_map(|part| self.ids(part).iter().map(move |id| (id.as_str(), part)))
            .collect()
    }

    /// Writes the split atomically, creating its folder when needed; `manifest` is recorded
    /// by file name.
    pub fn write(&self, path: &Path, manifest: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|err| DataError::io(dir, err))?;
        }
        let file = SplitFile {
            format: SPLIT_FORMAT.to_string(),
            version: 2,
            made_from: self.made_from.clone(),
            manifest: manifest
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            unit: "patient".into(),
            fold: self.fold.clone(),
            seed: self.spec.seed,
            fractions: self.spec.fractions,
            patients: Part::ALL
                .into_iter()
                .map(|p| (p.name().to_string(), self.groups[p as usize]))
                .collect(),
            train: self.ids[0].clone(),
            val: self.ids[1].clone(),
            test: self.ids[2].clone(),
        };
        let mut text = serde_json::to_vec_pretty(&file)
            .map_err(|err| DataError::Invalid(format!("cannot encode the split: {err}")))?;
        text.push(b'\n');
        Ok(write_atomic(path, &text)?)
    }

    /// Reads a split file; an id in two parts is an error.
    pub fn read(path: &Path) -> Result<Split> {
        let text = std::fs::read_to_string(path).map_err(|err| DataError::io(path, err))?;
        let file: SplitFile = serde_json::from_str(&text)
            .map_err(|err| DataError::file(path, format!("not a split file: {err}")))?;
        if file.format != SPLIT_FORMAT || !(1..=2).contains(&file.version) {
            return Err(DataError::file(
                path,
                format!(
                    "format `{}` version {}, expected `{SPLIT_FORMAT}` version 1 or 2",
                    file.format, file.version
                ),
            ));
        }
        let spec = SplitSpec::new(file.seed, file.fractions)
            .map_err(|err| DataError::file(path, err.to_string()))?;
        let split = Split {
            spec,
            fold: file.fold,
            groups: Part::ALL.map(|p| file.patients.get(p.name()).copied().unwrap_or(0)),
            ids: [file.train, file.val, file.test],
            made_from: file.made_from,
        };
        let mut seen: HashMap<&str, Part> = HashMap::new();
        for part in Part::ALL {
            for id in split.ids(part) {
                if let Some(other) = seen.insert(id, part) {
                    return Err(DataError::file(
                        path,
                        format!("sample `{id}` is in both {other} and {part}"),
                    ));
                }
            }
        }
        Ok(split)
    }
}

const SPLIT_FORMAT: &str = "umcl-split";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitFile {
    format: String,
    version: u32,
    manifest: String,
    /// Version 2 on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    made_from: Option<Fingerprint>,
    unit: String,
    /// Present when the split is one fold of a cross-validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fold: Option<FoldSpec>,
    seed: u64,
    fractions: [f64; 3],
    patients: BTreeMap<String, usize>,
    train: Vec<String>,
    val: Vec<String>,
    test: Vec<String>,
}

/// The split file that belongs to a manifest: `dir/STEM.splits.json` for `dir/STEM.jsonl`.
pub fn split_path(manifest: &Path) -> PathBuf {
    sibling_path(manifest, ".splits.json")
}

/// A seeded, platform-independent hash of a group key.
fn group_hash(seed: u64, key: &str) -> u64 {
    let mut state = seed;
    let mut hash = splitmix64(&mut state);
    for byte in key.bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut mixed = hash;
    splitmix64(&mut mixed)
}

/// Splits `n` into three counts proportional to `fractions`, rounding by largest remainder
/// (ties to the earlier part).
fn largest_remainder(n: usize, fractions: [f64; 3]) -> [usize; 3] {
    let exact = fractions.map(|f| f * n as f64);
    let mut counts = exact.map(|e| e.floor() as usize);
    let mut left = n.saturating_sub(counts.iter().sum());
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        counts[i] += 1;
        left -= 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::largest_remainder;

    #[test]
    fn counts_add_up_and_follow_fractions() {
        // 10 * (0.8, 0.1, 0.1) is exact.
        assert_eq!(largest_remainder(10, [0.8, 0.1, 0.1]), [8, 1, 1]);
        // 3 * (0.8, 0.1, 0.1) = (2.4, 0.3, 0.3): floors (2, 0, 0), the one left goes to the
        // largest remainder, 0.4 of train.
        assert_eq!(largest_remainder(3, [0.8, 0.1, 0.1]), [3, 0, 0]);
        // 7 * (0.5, 0.25, 0.25) = (3.5, 1.75, 1.75): floors (3, 1, 1), two left go to val and
        // test (0.75 each) before train (0.5).
        assert_eq!(largest_remainder(7, [0.5, 0.25, 0.25]), [3, 2, 2]);
        assert_eq!(largest_remainder(0, [0.8, 0.1, 0.1]), [0, 0, 0]);
    }
}
