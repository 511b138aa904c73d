//! Linear probe: multinomial logistic regression on frozen image features.

use std::collections::VecDeque;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::classification::{argmax, softmax_rows};
use super::{
    bootstrap_ci, check_matrix, roc_auc, Interval, MetricsError, MulticlassResult, Result,
};

/// Settings of the logistic regression fit. The defaults suit features of a few hundred
/// dimensions and a few thousand samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProbeConfig {
    /// Inverse L2 strength with scikit-learn's meaning: the fit minimises
    /// `sum_i CE_i + ||W||^2 / (2 c)` (bias not penalised). Default 1.0.
    pub c: f64,
    /// Most L-BFGS iterations. Default 500.
    pub max_iter: usize,
    /// Stop when the largest gradient entry of the per-sample objective
    /// (`mean_i CE_i + ||W||^2 / (2 c n)`) is at most this. Default 1e-6.
    pub tol: f64,
    /// L-BFGS history length (pairs of steps and gradient changes). Default 10.
    pub memory: usize,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            c: 1.0,
            max_iter: 500,
            tol: 1e-6,
            memory: 10,
        }
    }
}

/// A fitted multinomial logistic regression over standardised features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticRegression {
    /// Per-feature mean of the training features.
    pub mean: Vec<f64>,
    /// Per-feature standard deviation (population, ddof 0) of the training features; 1 where it
    /// is 0.
    pub std: Vec<f64>,
    /// Weights `[C][D]` over the standardised features.
    pub weights: Vec<Vec<f64>>,
    /// Bias per class.
    pub bias: Vec<f64>,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
    /// Final value of the per-sample objective `mean_i CE_i + ||W||^2 / (2 c n)`.
    pub objective: f64,
}

/// The objective of a fit, over the parameters `[W (C*D, row-major), b (C)]`.
struct Objective {
    x: Array2<f64>,
    onehot: Array2<f64>,
    classes: usize,
    lambda: f64,
}

impl Objective {
    fn split(&self, theta: &Array1<f64>) -> (Array2<f64>, Array1<f64>) {
        let d = self.x.ncols();
        let w = theta.slice(ndarray::s![..self.classes * d]).to_owned();
        let w = w
            .into_shape_with_order((self.classes, d))
            .unwrap_or_else(|_| Array2::zeros((self.classes, d)));
        let b = theta.slice(ndarray::s![self.classes * d..]).to_owned();
        (w, b)
    }

    /// Value and gradient.
    fn eval(&self, theta: &Array1<f64>) -> (f64, Array1<f64>) {
        let n = self.x.nrows() as f64;
        let (w, b) = self.split(theta);
        let mut z = self.x.dot(&w.t()) + &b;
        let mut loss = 0.0;
        for (mut row, y) in z.rows_mut().into_iter().zip(self.onehot.rows()) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let picked: f64 = row.iter().zip(y.iter()).map(|(z, t)| z * t).sum();
            row.mapv_inplace(|v| (v - m).exp());
            let s = row.sum();
            // -log softmax(z)_y = log sum exp(z - m) + m - z_y
            loss += s.ln() + m - picked;
            row.mapv_inplace(|v| v / s);
        }
        // z now holds the probabilities P; the logit gradient is (P - Y) / n.
        let g_logits = (z - &self.onehot) / n;
        let gw = g_logits.t().dot(&self.x) + &(&w * self.lambda);
        let gb = g_logits.sum_axis(Axis(0));
        let value = loss / n + 0.5 * self.lambda * w.iter().map(|v| v * v).sum::<f64>();
        let mut grad = Vec::with_capacity(theta.len());
        grad.extend(gw.iter());
        grad.extend(gb.iter());
        (value, Array1::from(grad))
    }
}

/// Minimises `obj` from zero by L-BFGS with a backtracking (Armijo) line search. Deterministic.
/// Returns the parameters, the objective, the iterations and whether the tolerance was reached.
fn lbfgs(obj: &Objective, dim: usize, cfg: &ProbeConfig) -> (Array1<f64>, f64, usize, bool) {
    let mut theta = Array1::<f64>::zeros(dim);
    let (mut f, mut g) = obj.eval(&theta);
    let mut hist: VecDeque<(Array1<f64>, Array1<f64>, f64)> = VecDeque::with_capacity(cfg.memory);
    let inf_norm = |v: &Array1<f64>| v.iter().fold(0.0f64, |a, x| a.max(x.abs()));
    for it in 0..cfg.max_iter {
        if inf_norm(&g) <= cfg.tol {
            return (theta, f, it, true);
        }
        // Two-loop recursion: d = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * s.dot(&q);
            q.scaled_add(-a, y);
            alphas.push(a);
        }
        let gamma = match hist.back() {
            Some((s, y, _)) => s.dot(y) / y.dot(y),
            None => 1.0 / g.dot(&g).sqrt().max(1.0),
        };
        q *= gamma;
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * y.dot(&q);
            q.scaled_add(a - b, s);
        }
        let mut d = -q;
        let mut slope = g.dot(&d);
        if slope >= 0.0 {
            hist.clear();
            d = -&g;
            slope = g.dot(&d);
        }
        let mut t = 1.0;
        let accepted = loop {
            let trial = &theta + &(&d * t);
            let (ft, gt) = obj.eval(&trial);
            if ft.is_finite() && ft <= f + 1e-4 * t * slope {
                break Some((trial, ft, gt));
            }
            t *= 0.5;
            if t < 1e-20 {
                break None;
            }
        };
        let Some((next, fn_, gn)) = accepted else {
            return (theta, f, it, inf_norm(&g) <= cfg.tol);
        };
        let s = &next - &theta;
        let y = &gn - &g;
        let sy = s.dot(&y);
        if sy > 1e-12 * y.dot(&y).max(f64::MIN_POSITIVE) {
            if hist.len() == cfg.memory {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        theta = next;
        f = fn_;
        g = gn;
    }
    let converged = inf_norm(&g) <= cfg.tol;
    (theta, f, cfg.max_iter, converged)
}

fn check_xy(
    x: ArrayView2<'_, f32>,
    y: &[usize],
    what_x: &'static str,
    what_y: &'static str,
) -> Result<()> {
    check_matrix(x, what_x)?;
    if y.len() != x.nrows() {
        return Err(MetricsError::Shape {
            what: what_y,
            expected: format!("{} labels (one per row of {what_x})", x.nrows()),
            found: format!("{} labels", y.len()),
        });
    }
    Ok(())
}

impl LogisticRegression {
    /// Fits `num_classes`-way multinomial logistic regression to features `x` `[N, D]` and
    /// labels `y` (each below `num_classes`).
    ///
    /// The features are standardised with the training mean and standard deviation; the fit
    /// minimises `mean_i CE_i + ||W||^2 / (2 c n)` (scikit-learn's `LogisticRegression(C=c)`
    /// objective divided by `c n`, so the same minimiser) by L-BFGS from zero parameters, which
    /// makes it deterministic. Classes absent from `y` get rows too; their bias goes down so
    /// they are rarely predicted.
    pub fn fit(
        x: ArrayView2<'_, f32>,
        y: &[usize],
        num_classes: usize,
        config: &ProbeConfig,
    ) -> Result<Self> {
        check_xy(x, y, "training features", "training labels")?;
        if !(config.c.is_finite() && config.c > 0.0) {
            return Err(MetricsError::InvalidArgument {
                name: "c",
                reason: format!("must be finite and positive, got {}", config.c),
            });
        }
        if config.memory == 0 || !(config.tol.is_finite() && config.tol >= 0.0) {
            return Err(MetricsError::InvalidArgument {
                name: "probe config",
                reason: "memory must be at least 1 and tol finite and non-negative".to_string(),
            });
        }
        if num_classes == 0 {
            return Err(MetricsError::InvalidArgument {
                name: "num_classes",
                reason: "must be at least 1".to_string(),
            });
        }
        if let Some(index) = y.iter().position(|&l| l >= num_classes) {
            return Err(MetricsError::LabelOutOfRange {
                what: "training labels",
                index,
                label: y[index],
                classes: num_classes,
            });
        }
        let x = x.mapv(f64::from);
        let n = x.nrows();
        let mean = x
            .mean_axis(Axis(0))
            .unwrap_or_else(|| Array1::zeros(x.ncols()));
        let std = x
            .std_axis(Axis(0), 0.0)
            .mapv(|s| if s > 1e-12 { s } else { 1.0 });
        let xs = (&x - &mean) / &std;
        let mut onehot = Array2::<f64>::zeros((n, num_classes));
        for (i, &c) in y.iter().enumerate() {
            onehot[[i, c]] = 1.0;
        }
        let obj = Objective {
            x: xs,
            onehot,
            classes: num_classes,
            lambda: 1.0 / (config.c * n as f64),
        };
        let d = x.ncols();
        let (theta, objective, iterations, converged) =
            lbfgs(&obj, num_classes * d + num_classes, config);
        let (w, b) = obj.split(&theta);
        Ok(Self {
            mean: mean.to_vec(),
            std: std.to_vec(),
            weights: w.rows().into_iter().map(|r| r.to_vec()).collect(),
            bias: b.to_vec(),
            iterations,
            converged,
            objective,
        })
    }

    /// Class probabilities `[N][C]` of the rows of `x`.
    pub fn predict_proba(&self, x: ArrayView2<'_, f32>) -> Result<Vec<Vec<f64>>> {
        check_matrix(x, "features")?;
        if x.ncols() != self.mean.len() {
            return Err(MetricsError::Shape {
                what: "features",
                expected: format!("{} columns (as in training)", self.mean.len()),
                found: format!("{} columns", x.ncols()),
            });
        }
        Ok(softmax_rows(self.logits(x).into_iter()))
    }

    fn logits(&self, x: ArrayView2<'_, f32>) -> Vec<Vec<f64>> {
        let mean = Array1::from(self.mean.clone());
        let std = Array1::from(self.std.clone());
        let xs = (x.mapv(f64::from) - &mean) / &std;
        let (c, d) = (self.weights.len(), self.mean.len());
        let w = Array2::from_shape_fn((c, d), |(i, j)| self.weights[i][j]);
        let z = xs.dot(&w.t()) + &Array1::from(self.bias.clone());
        z.rows().into_iter().map(|r| r.to_vec()).collect()
    }
}

/// Indices (ascending) of a stratified subset holding `fraction` of each class: for a class of
/// `m` samples, `max(1, round(fraction * m))` of them, chosen by a ChaCha8 shuffle seeded with
/// `seed` (classes in ascending order share one generator). `fraction` must be in (0, 1].
///
/// ```
/// use umcl_train::metrics::stratified_subset;
/// let labels = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
/// let idx = stratified_subset(&labels, 0.1, 3).unwrap();
/// // class 0: round(0.1 * 10) = 1; class 1: round(0.2) = 0, raised to 1.
/// assert_eq!(idx.len(), 2);
/// assert_eq!(idx.iter().filter(|&&i| labels[i] == 1).count(), 1);
/// ```
pub fn stratified_subset(labels: &[usize], fraction: f64, seed: u64) -> Result<Vec<usize>> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(MetricsError::InvalidArgument {
            name: "fraction",
            reason: format!("must be in (0, 1], got {fraction}"),
        });
    }
    if labels.is_empty() {
        return Err(MetricsError::Empty { what: "labels" });
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); classes];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l].push(i);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    for mut members in by_class.into_iter().filter(|m| !m.is_empty()) {
        let k = ((fraction * members.len() as f64).round() as usize).clamp(1, members.len());
        members.shuffle(&mut rng);
        out.extend_from_slice(&members[..k]);
    }
    out.sort_unstable();
    Ok(out)
}

/// A linear-probe evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// Fraction of the training labels used.
    pub fraction: f64,
    /// Seed of the subset.
    pub seed: u64,
    /// Training samples used.
    pub train_used: usize,
    /// L-BFGS iterations run.
    pub iterations: usize,
    /// Whether the fit reached its gradient tolerance.
    pub converged: bool,
    /// Scores on the test set.
    pub metrics: MulticlassResult,
    /// Per class, the one-vs-rest ROC AUC of its probability on the test set, with its
    /// bootstrap interval; `None` for a class absent from (or alone in) the test set. Filled
    /// by [`ProbeResult::with_bootstrap`].
    #[serde(default)]
    pub auc: Vec<Option<Interval>>,
}

impl ProbeResult {
    /// Fills the test metrics' bootstrap intervals (see [`MulticlassResult::with_bootstrap`])
    /// and each class's one-vs-rest ROC AUC with its interval.
    pub fn with_bootstrap(mut self, resamples: usize, seed: u64) -> Result<Self> {
        self.metrics = self.metrics.with_bootstrap(resamples, seed)?;
        let m = &self.metrics;
        self.auc = (0..m.per_class.len())
            .map(|c| {
                let auc_of = |idx: &[usize]| {
                    let s: Vec<f64> = idx.iter().map(|&i| m.probabilities[i][c]).collect();
                    let y: Vec<bool> = idx.iter().map(|&i| m.truth[i] == c).collect();
                    roc_auc(&s, &y).ok().flatten().unwrap_or(f64::NAN)
                };
                bootstrap_ci(m.truth.len(), resamples, seed, auc_of).ok()
            })
            .collect();
        Ok(self)
    }

    /// A markdown summary: the fit, each class's ROC AUC, then the test metrics' tables.
    pub fn to_markdown(&self) -> String {
        let auc: String = self
            .auc
            .iter()
            .zip(&self.metrics.class_names)
            .filter_map(|(a, name)| {
                a.map(|a| {
                    format!(
                        "| ROC AUC, {name} vs rest | {:.4} | [{:.4}, {:.4}] |\n",
                        a.estimate, a.low, a.high
                    )
                })
            })
            .collect();
        let auc = if auc.is_empty() {
            String::new()
        } else {
            format!("| metric | value | 95% CI |\n|---|---|---|\n{auc}\n")
        };
        format!(
            "Linear probe on {:.0}% of the training labels ({} samples, seed {}; L-BFGS {} iterations, {}).\n\n{auc}{}",
            self.fraction * 100.0,
            self.train_used,
            self.seed,
            self.iterations,
            if self.converged { "converged" } else { "not converged" },
            self.metrics.to_markdown()
        )
    }
}

/// [`linear_probe_with`] with the default [`ProbeConfig`].
pub fn linear_probe(
    train_x: ArrayView2<'_, f32>,
    train_y: &[usize],
    test_x: ArrayView2<'_, f32>,
    test_y: &[usize],
    fraction: f64,
    seed: u64,
) -> Result<ProbeResult> {
    linear_probe_with(
        train_x,
        train_y,
        test_x,
        test_y,
        fraction,
        seed,
        &ProbeConfig::default(),
    )
}

/// Linear probe: fits [`LogisticRegression`] on the stratified subset
/// ([`stratified_subset`]`(train_y, fraction, seed)`) of the frozen training features and
/// scores it on the test set. The number of classes is one more than the largest label in
/// `train_y` and `test_y`.
///
/// ```
/// use ndarray::array;
/// use umcl_train::metrics::linear_probe;
/// let train = array![[0.0f32, 1.0], [0.2, 0.9], [1.0, 0.0], [0.9, 0.1]];
/// let test = array![[0.1f32, 1.0], [1.0, 0.2]];
/// let r = linear_probe(train.view(), &[0, 0, 1, 1], test.view(), &[0, 1], 1.0, 0).unwrap();
/// assert_eq!(r.metrics.accuracy, 1.0);
/// ```
pub fn linear_probe_with(
    train_x: ArrayView2<'_, f32>,
    train_y: &[usize],
    test_x: ArrayView2<'_, f32>,
    test_y: &[usize],
    fraction: f64,
    seed: u64,
    config: &ProbeConfig,
) -> Result<ProbeResult> {
    check_xy(train_x, train_y, "training features", "training labels")?;
    check_xy(test_x, test_y, "test features", "test labels")?;
    if test_x.ncols() != train_x.ncols() {
        return Err(MetricsError::Shape {
            what: "test features",
            expected: format!("{} columns (as the training features)", train_x.ncols()),
            found: format!("{} columns", test_x.ncols()),
        });
    }
    let classes = train_y
        .iter()
        .chain(test_y)
        .copied()
        .max()
        .map_or(0, |m| m + 1);
    let subset = stratified_subset(train_y, fraction, seed)?;
    let x = train_x.select(Axis(0), &subset);
    let y: Vec<usize> = subset.iter().map(|&i| train_y[i]).collect();
    let model = LogisticRegression::fit(x.view(), &y, classes, config)?;
    let logits = model.logits(test_x);
    let predictions: Vec<usize> = logits.iter().map(|r| argmax(r)).collect();
    let probabilities = softmax_rows(logits.into_iter());
    let metrics = MulticlassResult::assemble(test_y, &predictions, probabilities, classes)?;
    Ok(ProbeResult {
        fraction,
        seed,
        train_used: subset.len(),
        iterations: model.iterations,
        converged: model.converged,
        metrics,
        auc: Vec::new(),
    })
}
