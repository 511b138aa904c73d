//! Percentile bootstrap confidence intervals.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{MetricsError, Result};

/// A point estimate with its 95% percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The statistic on the full sample.
    pub estimate: f64,
    /// 2.5th percentile of the statistic over the resamples.
    pub low: f64,
    /// 97.5th percentile of the statistic over the resamples.
    pub high: f64,
    /// How many resamples gave a defined (finite) statistic.
    pub resamples: usize,
}

thread_local! {
    /// Group of each item for [`by_groups`]: groups as lists of item indices, and the number
    /// of items they cover.
    static GROUPS: std::cell::RefCell<Option<(usize, Vec<Vec<usize>>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with every [`bootstrap_ci`] over `group_of.len()` items (on this thread)
/// resampling whole groups instead of items: `group_of[i]` names item `i`'s group (a patient),
/// and each resample draws as many groups as there are, with replacement, taking all their
/// items. Images of one patient are not independent; resampling patients gives the interval
/// of a new set of patients. Other item counts are resampled item by item as usual.
///
/// ```
/// use umcl_train::metrics::{bootstrap_ci, by_groups};
/// // Two patients: the first with three images all right, the second with one image wrong.
/// let correct = [1.0, 1.0, 1.0, 0.0];
/// let mean = |idx: &[usize]| idx.iter().map(|&i| correct[i]).sum::<f64>() / idx.len() as f64;
/// let ci = by_groups(&[0, 0, 0, 1], || bootstrap_ci(4, 2000, 1, mean)).unwrap();
/// // A resample holds patient 1 twice (1.0), patient 2 twice (0.0) or one of each (0.75).
/// assert_eq!((ci.low, ci.high), (0.0, 1.0));
/// ```
pub fn by_groups<R>(group_of: &[usize], f: impl FnOnce() -> R) -> R {
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (item, &g) in group_of.iter().enumerate() {
        groups.entry(g).or_default().push(item);
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let previous = GROUPS.with(|cell| cell.replace(Some((group_of.len(), groups))));
    // Restored however `f` ends (a panic included).
    struct Restore(Option<(usize, Vec<Vec<usize>>)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            GROUPS.with(|cell| *cell.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// The 95% percentile bootstrap interval of `statistic` over `n` items (or over groups of
/// them, inside [`by_groups`]).
///
/// `statistic` receives the indices of a sample (`0..n` for the estimate; for each of the
/// `resamples` resamples, `n` indices drawn uniformly with replacement) and returns the value;
/// a non-finite value (NaN) marks the statistic undefined on that resample (for example an AUC
/// on a resample with one label value only) and the resample is skipped. The bounds are the
/// 2.5th and 97.5th percentiles of the defined values, interpolated linearly between order
/// statistics (numpy's default `percentile`). The draws come from ChaCha8 seeded with `seed`,
/// so a seed gives the same interval on every machine.
///
/// Errors: `n == 0` or `resamples == 0`, a non-finite estimate, or no defined resample.
///
/// ```
/// use umcl_train::metrics::bootstrap_ci;
/// let correct = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0];
/// let mean = |idx: &[usize]| idx.iter().map(|&i| correct[i]).sum::<f64>() / idx.len() as f64;
/// let ci = bootstrap_ci(correct.len(), 1000, 7, mean).unwrap();
/// assert_eq!(ci.estimate, 0.75);
/// assert!(ci.low <= 0.75 && 0.75 <= ci.high);
/// ```
pub fn bootstrap_ci<F>(n: usize, resamples: usize, seed: u64, mut statistic: F) -> Result<Interval>
where
    F: FnMut(&[usize]) -> f64,
{
    if n == 0 {
        return Err(MetricsError::Empty {
            what: "bootstrap sample",
        });
    }
    if resamples == 0 {
        return Err(MetricsError::InvalidArgument {
            name: "resamples",
            reason: "must be at least 1".to_string(),
        });
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = statistic(&all);
    if !estimate.is_finite() {
        return Err(MetricsError::InvalidArgument {
            name: "statistic",
            reason: format!("is {estimate} on the full sample"),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let groups = GROUPS.with(|cell| {
        cell.borrow()
            .as_ref()
            .filter(|(items, _)| *items == n)
            .map(|(_, g)| g.clone())
    });
    let mut idx = vec![0usize; n];
    let mut values = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        match &groups {
            Some(groups) => {
                idx.clear();
                for _ in 0..groups.len() {
                    idx.extend_from_slice(&groups[rng.gen_range(0..groups.len())]);
                }
            }
            None => {
                for slot in idx.iter_mut() {
                    *slot = rng.gen_range(0..n);
                }
            }
        }
        let v = statistic(&idx);
        if v.is_finite() {
            values.push(v);
        }
    }
    if values.is_empty() {
        return Err(MetricsError::Undefined { what: "statistic" });
    }
    values.sort_by(f64::total_cmp);
    Ok(Interval {
        estimate,
        low: percentile(&values, 0.025),
        high: percentile(&values, 0.975),
        resamples: values.len(),
    })
}

/// The `q` quantile of sorted, non-empty `v`, linear between order statistics.
fn percentile(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    let frac = pos - lo as f64;
    v[lo] + (v[hi] - v[lo]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        // np.percentile([1, 2, 3, 4, 5], 2.5) = 1 + 0.025*4*(2-1) = 1.1; 97.5 -> 4 + 0.9 = 4.9.
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((percentile(&v, 0.025) - 1.1).abs() < 1e-12);
        assert!((percentile(&v, 0.975) - 4.9).abs() < 1e-12);
        assert_eq!(percentile(&[3.0], 0.975), 3.0);
    }
}
