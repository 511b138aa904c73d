//! Tests of `umcl_train::metrics` and `umcl_train::plots`: hand-computable cases (derivations in
//! the comments) and a cross-check against `tests/fixtures/metrics_reference.json`, written by
//! `tests/reference/metrics_reference.py` (numpy + torch, float64).

use ndarray::{array, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;
use umcl_train::metrics::{
    bootstrap_ci, linear_probe, linear_probe_with, retrieval, roc_auc, roc_curve,
    stratified_subset, zero_shot_multiclass, zero_shot_multilabel, LogisticRegression,
    MetricsError, MulticlassResult, MultilabelResult, ProbeConfig, RetrievalResult,
};
use umcl_train::plots::{plot_curves_sized, plot_roc_sized, PlotError};

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/metrics_reference.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture readable"))
        .expect("fixture is JSON")
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("integer") as usize)
        .collect()
}

fn matrix(v: &Value) -> Array2<f32> {
    let rows: Vec<Vec<f64>> = v.as_array().expect("rows").iter().map(f64s).collect();
    let (r, c) = (rows.len(), rows[0].len());
    Array2::from_shape_vec(
        (r, c),
        rows.into_iter().flatten().map(|x| x as f32).collect(),
    )
    .expect("rectangular")
}

fn trapezoid(pts: &[(f64, f64)]) -> f64 {
    pts.windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[0].1 + w[1].1) / 2.0)
        .sum()
}

// ---------------------------------------------------------------- AUC and ROC

#[test]
fn auc_hand_cases() {
    // positives 0.35, 0.8; negatives 0.1, 0.4. Pairs won by the positive: (0.35 > 0.1),
    // (0.8 > 0.1), (0.8 > 0.4); lost: (0.35 < 0.4). AUC = 3/4.
    assert_eq!(
        roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]).unwrap(),
        Some(0.75)
    );
    // perfect ranking: every positive above every negative -> 1; reversed -> 0.
    assert_eq!(
        roc_auc(&[1.0, 2.0, 3.0, 4.0], &[false, false, true, true]).unwrap(),
        Some(1.0)
    );
    assert_eq!(
        roc_auc(&[4.0, 3.0, 2.0, 1.0], &[false, false, true, true]).unwrap(),
        Some(0.0)
    );
    // all scores tied: every pair counts 1/2 -> 0.5.
    assert_eq!(
        roc_auc(&[0.3; 5], &[true, false, false, true, false]).unwrap(),
        Some(0.5)
    );
    // ties across labels: positives 0.5, 0.5, 0.9; negatives 0.5, 0.1 (6 pairs):
    // 0.5 vs 0.5 = 1/2 (twice), 0.5 vs 0.1 = 1 (twice), 0.9 vs both = 2 -> (1 + 2 + 2) / 6 = 5/6.
    let a = roc_auc(
        &[0.5, 0.5, 0.9, 0.5, 0.1],
        &[true, true, true, false, false],
    )
    .unwrap()
    .unwrap();
    assert!((a - 5.0 / 6.0).abs() < 1e-15);
}

#[test]
fn auc_undefined_and_bad_input() {
    assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]).unwrap(), None);
    assert_eq!(roc_auc(&[0.1, 0.2], &[false, false]).unwrap(), None);
    assert_eq!(roc_curve(&[0.1, 0.2], &[false, false]).unwrap(), None);
    assert_eq!(
        roc_auc(&[], &[]),
        Err(MetricsError::Empty { what: "scores" })
    );
    assert!(matches!(
        roc_auc(&[0.1, 0.2], &[true]),
        Err(MetricsError::Shape { what: "labels", .. })
    ));
    assert_eq!(
        roc_auc(&[0.1, f64::NAN, 0.3], &[true, false, true]),
        Err(MetricsError::NonFinite {
            what: "scores",
            row: 1,
            column: 0
        })
    );
}

#[test]
fn roc_curve_hand_case() {
    // thresholds 0.8, 0.4, 0.35, 0.1 on positives {0.35, 0.8}, negatives {0.1, 0.4}:
    // >=0.8: tp 1 fp 0 -> (0, .5); >=0.4: (0.5, 0.5); >=0.35: (0.5, 1); >=0.1: (1, 1).
    let c = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])
        .unwrap()
        .unwrap();
    assert_eq!(
        c,
        vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    );
    assert_eq!(trapezoid(&c), 0.75);
    // a perfect ranking: (0,0) -> (0,1) -> (1,1); the intermediate points of the vertical run
    // (0, 1/3), (0, 2/3) and of the horizontal run are dropped.
    let c = roc_curve(
        &[6.0, 5.0, 4.0, 3.0, 2.0, 1.0],
        &[true, true, true, false, false, false],
    )
    .unwrap()
    .unwrap();
    assert_eq!(c, vec![(0.0, 0.0), (0.0, 1.0), (1.0, 1.0)]);
}

#[test]
fn auc_and_roc_match_the_reference() {
    let f = fixture();
    for case in f["auc"].as_array().unwrap() {
        let scores = f64s(&case["scores"]);
        let labels: Vec<bool> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_bool().unwrap())
            .collect();
        let auc = roc_auc(&scores, &labels).unwrap().unwrap();
        assert!(
            (auc - case["auc"].as_f64().unwrap()).abs() < 1e-12,
            "{auc} vs {}",
            case["auc"]
        );
        // Our curve keeps a subset of the full curve's points, with the same area.
        let full: Vec<(f64, f64)> = case["roc_full"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
            .collect();
        let ours = roc_curve(&scores, &labels).unwrap().unwrap();
        assert!(ours.len() <= full.len());
        for p in &ours {
            assert!(
                full.iter()
                    .any(|q| (q.0 - p.0).abs() < 1e-12 && (q.1 - p.1).abs() < 1e-12),
                "{p:?} not on the reference curve"
            );
        }
        assert!((trapezoid(&ours) - auc).abs() < 1e-12);
    }
}

// ---------------------------------------------------------------- multi-class

/// truth [0,0,0,0,1,1,2,2,2], predicted [0,0,0,1,1,2,2,2,2]; confusion (rows truth):
/// [3,1,0] [0,1,1] [0,0,3]. Class 0: P 3/3, R 3/4, F1 6/7. Class 1: P 1/2, R 1/2, F1 1/2.
/// Class 2: P 3/4, R 3/3, F1 6/7. Macro-F1 (6/7 + 1/2 + 6/7) / 3 = 31/42; accuracy 7/9.
fn three_class() -> MulticlassResult {
    MulticlassResult::from_predictions(
        &[0, 0, 0, 0, 1, 1, 2, 2, 2],
        &[0, 0, 0, 1, 1, 2, 2, 2, 2],
        3,
    )
    .unwrap()
}

#[test]
fn confusion_and_macro_f1_by_hand() {
    let r = three_class();
    assert_eq!(
        r.confusion,
        vec![vec![3, 1, 0], vec![0, 1, 1], vec![0, 0, 3]]
    );
    assert!((r.accuracy - 7.0 / 9.0).abs() < 1e-15);
    assert!((r.macro_f1 - 31.0 / 42.0).abs() < 1e-15);
    assert!((r.per_class[0].f1 - 6.0 / 7.0).abs() < 1e-15);
    assert_eq!(
        (r.per_class[1].precision, r.per_class[1].recall),
        (0.5, 0.5)
    );
    assert_eq!(
        (
            r.per_class[2].precision,
            r.per_class[2].support,
            r.per_class[2].predicted
        ),
        (0.75, 3, 4)
    );
    // A fourth class that occurs nowhere is listed with zeros and left out of the mean.
    let r4 = MulticlassResult::from_predictions(&r.truth, &r.predictions, 4).unwrap();
    assert!((r4.macro_f1 - 31.0 / 42.0).abs() < 1e-15);
    assert_eq!(r4.per_class[3].f1, 0.0);
}

#[test]
fn multiclass_bad_input() {
    assert_eq!(
        MulticlassResult::from_predictions(&[], &[], 2),
        Err(MetricsError::Empty { what: "truth" })
    );
    assert!(matches!(
        MulticlassResult::from_predictions(&[0, 1], &[0], 2),
        Err(MetricsError::Shape { .. })
    ));
    assert_eq!(
        MulticlassResult::from_predictions(&[0, 2], &[0, 1], 2),
        Err(MetricsError::LabelOutOfRange {
            what: "truth",
            index: 1,
            label: 2,
            classes: 2
        })
    );
    let img = array![[1.0f32, 0.0], [0.0, 0.0]];
    let cls = array![[1.0f32, 0.0], [0.0, 1.0]];
    assert_eq!(
        zero_shot_multiclass(img.view(), cls.view(), &[0, 1], 10.0),
        Err(MetricsError::ZeroNorm {
            what: "image embeddings",
            row: 1
        })
    );
    let img = array![[1.0f32, f32::NAN]];
    assert_eq!(
        zero_shot_multiclass(img.view(), cls.view(), &[0], 10.0),
        Err(MetricsError::NonFinite {
            what: "image embeddings",
            row: 0,
            column: 1
        })
    );
    let img = array![[1.0f32, 0.0, 0.0]];
    assert!(matches!(
        zero_shot_multiclass(img.view(), cls.view(), &[0], 10.0),
        Err(MetricsError::Shape { .. })
    ));
    let img = array![[1.0f32, 0.0]];
    assert!(matches!(
        zero_shot_multiclass(img.view(), cls.view(), &[0], 0.0),
        Err(MetricsError::InvalidArgument { .. })
    ));
    let empty = Array2::<f32>::zeros((0, 2));
    assert_eq!(
        zero_shot_multiclass(empty.view(), cls.view(), &[], 10.0),
        Err(MetricsError::Empty {
            what: "image embeddings"
        })
    );
}

#[test]
fn zero_shot_multiclass_matches_the_reference() {
    let f = fixture();
    let z = &f["zero_shot"];
    let r = zero_shot_multiclass(
        matrix(&z["images"]).view(),
        matrix(&z["classes"]).view(),
        &usizes(&z["truth"]),
        z["scale"].as_f64().unwrap(),
    )
    .unwrap();
    assert_eq!(r.predictions, usizes(&z["predictions"]));
    assert!((r.accuracy - z["accuracy"].as_f64().unwrap()).abs() < 1e-12);
    assert!((r.macro_f1 - z["macro_f1"].as_f64().unwrap()).abs() < 1e-12);
    for (ours, theirs) in r
        .probabilities
        .iter()
        .zip(z["probabilities"].as_array().unwrap())
    {
        for (a, b) in ours.iter().zip(f64s(theirs)) {
            // cosines in f32 here, f64 there: |d cos| ~ 1e-7, times scale 10.
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
    let m = &f["multiclass"];
    let r =
        MulticlassResult::from_predictions(&usizes(&m["truth"]), &usizes(&m["pred"]), 5).unwrap();
    assert!((r.accuracy - m["accuracy"].as_f64().unwrap()).abs() < 1e-12);
    assert!((r.macro_f1 - m["macro_f1"].as_f64().unwrap()).abs() < 1e-12);
    let conf: Vec<Vec<usize>> = m["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .map(usizes)
        .collect();
    assert_eq!(r.confusion, conf);
}

// ---------------------------------------------------------------- multi-label

#[test]
fn zero_shot_multilabel_matches_the_reference() {
    let f = fixture();
    let m = &f["multilabel"];
    let codes: Vec<Vec<i64>> = m["codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect()
        })
        .collect();
    let truth = Array2::from_shape_fn((codes.len(), 3), |(i, c)| match codes[i][c] {
        1 => Some(true),
        0 => Some(false),
        _ => None,
    });
    let r = zero_shot_multilabel(
        matrix(&m["images"]).view(),
        matrix(&m["pos"]).view(),
        matrix(&m["neg"]).view(),
        truth.view(),
        m["scale"].as_f64().unwrap(),
    )
    .unwrap();
    for (ours, theirs) in r.scores.iter().zip(m["log_odds"].as_array().unwrap()) {
        for (a, b) in ours.iter().zip(f64s(theirs)) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}"); // f32 cosines, scale 20
        }
    }
    let aucs = m["aucs"].as_array().unwrap();
    for (c, want) in aucs.iter().enumerate() {
        match want.as_f64() {
            Some(w) => assert!((r.per_class[c].auc.unwrap() - w).abs() < 1e-12),
            None => {
                assert_eq!(r.per_class[c].auc, None);
                assert!(r.per_class[c].roc.is_empty());
            }
        }
    }
    assert_eq!(r.classes_in_mean, 2);
    assert!((r.mean_auc.unwrap() - m["mean_auc"].as_f64().unwrap()).abs() < 1e-12);
    let r = r.with_bootstrap(300, 1).unwrap();
    let ci = r.ci.unwrap();
    assert!(ci.low <= ci.estimate && ci.estimate <= ci.high, "{ci:?}");
}

#[test]
fn multilabel_bad_input() {
    let scores = array![[0.1, 0.2], [0.3, 0.4]];
    let truth = array![[Some(true)], [Some(false)]];
    assert!(matches!(
        MultilabelResult::from_scores(scores.view(), truth.view()),
        Err(MetricsError::Shape { what: "truth", .. })
    ));
    let img = array![[1.0f32, 0.0]];
    let pos = array![[1.0f32, 0.0], [0.0, 1.0]];
    let neg = array![[0.0f32, 1.0]];
    let truth = array![[Some(true), None]];
    assert!(matches!(
        zero_shot_multilabel(img.view(), pos.view(), neg.view(), truth.view(), 10.0),
        Err(MetricsError::Shape {
            what: "negative prompt embeddings",
            ..
        })
    ));
    // No class with both labels: mean undefined, the bootstrap says so instead of panicking.
    let r = MultilabelResult::from_scores(
        array![[0.1], [0.2]].view(),
        array![[Some(true)], [None]].view(),
    )
    .unwrap();
    assert_eq!(r.mean_auc, None);
    assert_eq!(
        r.with_bootstrap(10, 0),
        Err(MetricsError::Undefined { what: "mean AUC" })
    );
}

// ---------------------------------------------------------------- retrieval

#[test]
fn retrieval_ranks_by_hand() {
    // Images e1, e2, e3; texts e2, e2, (0.8, 0, 0.6). cos(image i, text j) = component i of text j:
    //            text0 text1 text2
    //   image0 [  0     0     0.8 ]   own 0: text1 ties, text2 higher -> rank 3 (tied)
    //   image1 [  1     1     0   ]   own 1: text0 ties               -> rank 2 (tied)
    //   image2 [  0     0     0.6 ]   own 0.6: none higher            -> rank 1
    // Columns (text queries): text0 [0,1,0] own 0: image1 higher, image2 ties -> 3 (tied);
    // text1 [0,1,0] own 1 -> 1; text2 [0.8,0,0.6] own 0.6: image0 higher -> 2.
    // A tie counts against the query.
    let images = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let texts = array![[0.0f32, 1.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]];
    let r = retrieval(images.view(), texts.view()).unwrap();
    assert_eq!(r.i2t_ranks, vec![3, 2, 1]);
    assert_eq!(r.t2i_ranks, vec![3, 1, 2]);
    assert_eq!((r.i2t.tied, r.t2i.tied), (2, 1));
    assert!((r.i2t.r1 - 1.0 / 3.0).abs() < 1e-15);
    assert!((r.t2i.r1 - 1.0 / 3.0).abs() < 1e-15);
    assert_eq!((r.i2t.r5, r.i2t.r10), (1.0, 1.0));
    assert_eq!((r.i2t.median_rank, r.t2i.median_rank), (2.0, 2.0));
    assert!((r.t2i.mean_rank - 2.0).abs() < 1e-15);
    let bad = array![[1.0f32, 0.0, 0.0]];
    assert!(matches!(
        retrieval(images.view(), bad.view()),
        Err(MetricsError::Shape {
            what: "text embeddings",
            ..
        })
    ));
}

#[test]
fn shared_images_and_repeated_reports_do_not_inflate_retrieval() {
    // 24 samples share one image, each with its own report: text -> image chance is 1/24,
    // and counting ties for the query gave R@1 = 1.
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let one_image: Vec<f32> = (0..8).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
    let images = Array2::from_shape_fn((24, 8), |(_, j)| one_image[j]);
    let texts = Array2::from_shape_fn((24, 8), |_| rng.gen_range(-1.0f32..1.0));
    let r = retrieval(images.view(), texts.view()).unwrap();
    assert_eq!(r.t2i.r1, 0.0, "{:?}", r.t2i_ranks);
    assert_eq!(r.t2i.tied, 24);
    assert!(r.t2i_ranks.iter().all(|&k| k == 24));
    // The other direction with one repeated report for every image.
    let r = retrieval(texts.view(), images.view()).unwrap();
    assert_eq!((r.i2t.r1, r.i2t.tied), (0.0, 24));
    assert!(r.to_markdown().contains("| tied queries |"));
}

#[test]
fn retrieval_matches_the_reference() {
    let f = fixture();
    let t = &f["retrieval"];
    let r = retrieval(matrix(&t["images"]).view(), matrix(&t["texts"]).view()).unwrap();
    assert_eq!(r.i2t_ranks, usizes(&t["i2t_ranks"]));
    assert_eq!(r.t2i_ranks, usizes(&t["t2i_ranks"]));
    for (ours, theirs) in [(&r.i2t, &t["i2t"]), (&r.t2i, &t["t2i"])] {
        assert!((ours.r1 - theirs["r1"].as_f64().unwrap()).abs() < 1e-12);
        assert!((ours.r5 - theirs["r5"].as_f64().unwrap()).abs() < 1e-12);
        assert!((ours.r10 - theirs["r10"].as_f64().unwrap()).abs() < 1e-12);
        assert_eq!(ours.median_rank, theirs["median_rank"].as_f64().unwrap());
        assert_eq!(ours.tied as u64, theirs["tied"].as_u64().unwrap());
    }
}

#[test]
fn retrieval_blocks_agree_with_a_direct_count() {
    // 1500 pairs cross the 1024-row block boundary; check every rank against a direct count.
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let n = 1500;
    let img = Array2::from_shape_fn((n, 8), |_| rng.gen_range(-1.0f32..1.0));
    let txt = Array2::from_shape_fn((n, 8), |(i, j)| img[[i, j]] + rng.gen_range(-1.0f32..1.0));
    let r = retrieval(img.view(), txt.view()).unwrap();
    let norm = |a: &Array2<f32>| {
        let mut a = a.clone();
        for mut row in a.rows_mut() {
            let s = row.iter().map(|v| v * v).sum::<f32>().sqrt();
            row.mapv_inplace(|v| v / s);
        }
        a
    };
    let sim = norm(&img).dot(&norm(&txt).t());
    let mut disagreements = 0;
    for i in (0..n).step_by(7) {
        let direct = 1 + (0..n).filter(|&j| sim[[i, j]] > sim[[i, i]]).count();
        // a different f32 summation order may move a near-tie by one
        if direct.abs_diff(r.i2t_ranks[i]) > 1 {
            disagreements += 1;
        }
    }
    assert_eq!(disagreements, 0);
    assert!(
        r.i2t.r10 > 0.02,
        "paired texts should rank well above chance (10/1500)"
    );
}

// ---------------------------------------------------------------- linear probe

fn blobs(
    n_per: usize,
    classes: usize,
    dim: usize,
    spread: f32,
    seed: u64,
) -> (Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let y: Vec<usize> = (0..n_per * classes).map(|i| i % classes).collect();
    let x = Array2::from_shape_fn((y.len(), dim), |(i, j)| {
        let centre = if j % classes == y[i] { 3.0 } else { 0.0 };
        centre + spread * rng.gen_range(-1.0f32..1.0)
    });
    (x, y)
}

#[test]
fn probe_separates_separable_data() {
    // Class c has feature c (mod 3) at 3 +- 0.5 and the others at 0 +- 0.5: separable by a margin.
    let (train, ty) = blobs(40, 3, 6, 0.5, 1);
    let (test, sy) = blobs(30, 3, 6, 0.5, 2);
    for fraction in [0.1, 1.0] {
        let r = linear_probe(train.view(), &ty, test.view(), &sy, fraction, 0).unwrap();
        assert_eq!(r.metrics.accuracy, 1.0, "fraction {fraction}");
        assert_eq!(r.metrics.macro_f1, 1.0);
        assert!(r.converged);
    }
}

#[test]
fn probe_is_at_chance_on_shuffled_labels() {
    // Labels independent of the features: test accuracy ~ 1/3 (sd sqrt(2/9/600) = 0.019).
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let train = Array2::from_shape_fn((600, 10), |_| rng.gen_range(-1.0f32..1.0));
    let test = Array2::from_shape_fn((600, 10), |_| rng.gen_range(-1.0f32..1.0));
    let ty: Vec<usize> = (0..600).map(|_| rng.gen_range(0..3)).collect();
    let sy: Vec<usize> = (0..600).map(|_| rng.gen_range(0..3)).collect();
    let r = linear_probe(train.view(), &ty, test.view(), &sy, 1.0, 0).unwrap();
    assert!(
        (0.25..0.42).contains(&r.metrics.accuracy),
        "{}",
        r.metrics.accuracy
    );
}

#[test]
fn logistic_regression_matches_the_reference() {
    let f = fixture();
    let l = &f["logreg"];
    let (xtr, ytr) = (matrix(&l["train_x"]), usizes(&l["train_y"]));
    let xte = matrix(&l["test_x"]);
    for fit in l["fits"].as_array().unwrap() {
        let cfg = ProbeConfig {
            c: fit["c"].as_f64().unwrap(),
            max_iter: 5000,
            tol: 1e-10,
            memory: 10,
        };
        let m = LogisticRegression::fit(xtr.view(), &ytr, 3, &cfg).unwrap();
        assert!(m.converged, "{} iterations", m.iterations);
        assert!(
            (m.objective - fit["objective"].as_f64().unwrap()).abs() < 1e-9,
            "{} vs {}",
            m.objective,
            fit["objective"]
        );
        let p = m.predict_proba(xte.view()).unwrap();
        for (ours, theirs) in p.iter().zip(fit["test_probabilities"].as_array().unwrap()) {
            for (a, b) in ours.iter().zip(f64s(theirs)) {
                assert!((a - b).abs() < 1e-6, "{a} vs {b}");
            }
        }
        for (ours, theirs) in m.weights.iter().zip(fit["weights"].as_array().unwrap()) {
            for (a, b) in ours.iter().zip(f64s(theirs)) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }
}

#[test]
fn stratified_subsets_keep_every_class() {
    // 500 of class 0, 80 of class 1, 20 of class 2.
    let labels: Vec<usize> = (0..600)
        .map(|i| {
            if i < 500 {
                0
            } else if i < 580 {
                1
            } else {
                2
            }
        })
        .collect();
    let count = |idx: &[usize], c| idx.iter().filter(|&&i| labels[i] == c).count();
    // 1%: round(5) = 5, round(0.8) = 1, round(0.2) = 0 -> 1.
    let s = stratified_subset(&labels, 0.01, 4).unwrap();
    assert_eq!((count(&s, 0), count(&s, 1), count(&s, 2)), (5, 1, 1));
    // 10%: 50, 8, 2.
    let s = stratified_subset(&labels, 0.1, 4).unwrap();
    assert_eq!((count(&s, 0), count(&s, 1), count(&s, 2)), (50, 8, 2));
    assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
    assert_eq!(
        s,
        stratified_subset(&labels, 0.1, 4).unwrap(),
        "deterministic"
    );
    assert_ne!(
        s,
        stratified_subset(&labels, 0.1, 5).unwrap(),
        "seed matters"
    );
    assert_eq!(
        stratified_subset(&labels, 1.0, 4).unwrap(),
        (0..600).collect::<Vec<_>>()
    );
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(matches!(
            stratified_subset(&labels, bad, 0),
            Err(MetricsError::InvalidArgument {
                name: "fraction",
                ..
            })
        ));
    }
}

#[test]
fn probe_bad_input() {
    let x = array![[1.0f32, 0.0], [0.0, 1.0]];
    assert!(matches!(
        linear_probe(x.view(), &[0], x.view(), &[0, 1], 1.0, 0),
        Err(MetricsError::Shape {
            what: "training labels",
            ..
        })
    ));
    let x3 = array![[1.0f32, 0.0, 1.0]];
    assert!(matches!(
        linear_probe(x.view(), &[0, 1], x3.view(), &[0], 1.0, 0),
        Err(MetricsError::Shape {
            what: "test features",
            ..
        })
    ));
    let nan = array![[1.0f32, f32::NAN], [0.0, 1.0]];
    assert!(matches!(
        linear_probe(nan.view(), &[0, 1], x.view(), &[0, 1], 1.0, 0),
        Err(MetricsError::NonFinite { .. })
    ));
    let cfg = ProbeConfig {
        c: 0.0,
        ..ProbeConfig::default()
    };
    assert!(matches!(
        linear_probe_with(x.view(), &[0, 1], x.view(), &[0, 1], 1.0, 0, &cfg),
        Err(MetricsError::InvalidArgument { name: "c", .. })
    ));
}

// ---------------------------------------------------------------- bootstrap

#[test]
fn bootstrap_contains_the_estimate_and_shrinks_with_n() {
    // A statistic: the mean of 0/1 outcomes with 70% ones.
    let width = |n: usize| {
        let ones: Vec<f64> = (0..n).map(|i| if i % 10 < 7 { 1.0 } else { 0.0 }).collect();
        let ci = bootstrap_ci(n, 1000, 3, |idx| {
            idx.iter().map(|&i| ones[i]).sum::<f64>() / idx.len() as f64
        })
        .unwrap();
        assert!((ci.estimate - 0.7).abs() < 1e-12);
        assert!(ci.low <= ci.estimate && ci.estimate <= ci.high, "{ci:?}");
        assert_eq!(ci.resamples, 1000);
        ci.high - ci.low
    };
    // Normal approximation: width ~ 2 * 1.96 * sqrt(0.21 / n): 0.254 at 50, 0.0254 at 5000.
    let (w50, w5000) = (width(50), width(5000));
    assert!((0.18..0.33).contains(&w50), "{w50}");
    assert!((0.018..0.033).contains(&w5000), "{w5000}");
}

#[test]
fn bootstrap_is_deterministic_and_checks_input() {
    let v: Vec<f64> = (0..40).map(|i| (i as f64).sin()).collect();
    let mean = |idx: &[usize]| idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64;
    assert_eq!(
        bootstrap_ci(40, 200, 11, mean).unwrap(),
        bootstrap_ci(40, 200, 11, mean).unwrap()
    );
    assert_ne!(
        bootstrap_ci(40, 200, 11, mean).unwrap(),
        bootstrap_ci(40, 200, 12, mean).unwrap()
    );
    assert_eq!(
        bootstrap_ci(0, 10, 0, mean),
        Err(MetricsError::Empty {
            what: "bootstrap sample"
        })
    );
    assert!(matches!(
        bootstrap_ci(40, 0, 0, mean),
        Err(MetricsError::InvalidArgument {
            name: "resamples",
            ..
        })
    ));
    // Undefined on every resample (but defined on the full sample).
    let mut first = true;
    let err = bootstrap_ci(5, 10, 0, |_| {
        if std::mem::take(&mut first) {
            1.0
        } else {
            f64::NAN
        }
    });
    assert_eq!(err, Err(MetricsError::Undefined { what: "statistic" }));
}

#[test]
fn result_intervals_bracket_their_estimates() {
    let r = three_class().with_bootstrap(500, 2).unwrap();
    let ci = r.ci.unwrap();
    assert_eq!(ci.accuracy.estimate, r.accuracy);
    assert_eq!(ci.macro_f1.estimate, r.macro_f1);
    assert!(ci.accuracy.low <= r.accuracy && r.accuracy <= ci.accuracy.high);
    assert!(ci.macro_f1.low <= r.macro_f1 && r.macro_f1 <= ci.macro_f1.high);
    let images = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let texts = array![[0.0f32, 1.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]];
    let r = retrieval(images.view(), texts.view())
        .unwrap()
        .with_bootstrap(200, 0)
        .unwrap();
    let ci = r.ci.unwrap();
    assert!(ci.i2t.r1.low <= r.i2t.r1 && r.i2t.r1 <= ci.i2t.r1.high);
    assert_eq!((ci.i2t.r5.low, ci.i2t.r5.high), (1.0, 1.0)); // every rank <= 5
}

// ---------------------------------------------------------------- serialisation and markdown

#[test]
fn results_round_trip_through_json() {
    let r = three_class().with_bootstrap(50, 0).unwrap();
    let back: MulticlassResult = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
    assert_eq!(back, r);
    let images = array![[1.0f32, 0.0], [0.0, 1.0]];
    let rr = retrieval(images.view(), images.view()).unwrap();
    let back: RetrievalResult = serde_json::from_str(&serde_json::to_string(&rr).unwrap()).unwrap();
    assert_eq!(back, rr);
    let ml = MultilabelResult::from_scores(
        array![[0.1], [0.2]].view(),
        array![[Some(false)], [Some(true)]].view(),
    )
    .unwrap();
    let back: MultilabelResult =
        serde_json::from_str(&serde_json::to_string(&ml).unwrap()).unwrap();
    assert_eq!(back, ml);
}

#[test]
fn markdown_tables() {
    let r = three_class()
        .with_class_names(&["normal", "effusion", "a|b"])
        .unwrap();
    expect_test::expect![[r#"
        | metric | value | 95% CI |
        |---|---|---|
        | accuracy | 0.7778 |  |
        | macro-F1 | 0.7381 |  |
        | samples | 9 | |

        | class | precision | recall | F1 | support |
        |---|---|---|---|---|
        | normal | 1.0000 | 0.7500 | 0.8571 | 4 |
        | effusion | 0.5000 | 0.5000 | 0.5000 | 2 |
        | a\|b | 0.7500 | 1.0000 | 0.8571 | 3 |

        | truth \ predicted | normal | effusion | a\|b |
        |---|---|---|---|
        | normal | 3 | 1 | 0 |
        | effusion | 0 | 1 | 1 |
        | a\|b | 0 | 0 | 3 |
    "#]]
    .assert_eq(&r.to_markdown());
    assert!(matches!(
        three_class().with_class_names(&["one"]),
        Err(MetricsError::Shape { .. })
    ));
    let images = array![[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    let texts = array![[0.0f32, 1.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]];
    let rr = retrieval(images.view(), texts.view()).unwrap();
    expect_test::expect![[r#"
        | direction | R@1 | R@5 | R@10 | median rank | pairs | tied queries |
        |---|---|---|---|---|---|---|
        | image to text | 0.3333 | 1.0000 | 1.0000 | 2 | 3 | 2 |
        | text to image | 0.3333 | 1.0000 | 1.0000 | 2 | 3 | 1 |
    "#]]
    .assert_eq(&rr.to_markdown());
    let ml = MultilabelResult::from_scores(
        array![[0.1, 0.5], [0.2, 0.5], [0.3, 0.1]].view(),
        array![
            [Some(false), Some(true)],
            [Some(true), Some(true)],
            [None, None]
        ]
        .view(),
    )
    .unwrap();
    expect_test::expect![[r#"
        | metric | value | 95% CI |
        |---|---|---|
        | mean AUC | 1.0000 |  |
        | classes in mean | 1 of 2 | |

        | class | AUC | positives | negatives |
        |---|---|---|---|
        | class 0 | 1.0000 | 1 | 1 |
        | class 1 | n/a | 2 | 0 |
    "#]]
    .assert_eq(&ml.to_markdown());
}

// ---------------------------------------------------------------- plots

/// Width and height from a PNG's IHDR chunk (bytes 16..24, big-endian), after the signature.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn plots_write_pngs_of_the_requested_size() {
    let dir = tempfile::tempdir().unwrap();
    let loss: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 3.0 * (-(s as f64) / 60.0).exp() + 0.2))
        .collect();
    let lr: Vec<(f64, f64)> = (0..200)
        .map(|s| (s as f64, 1e-4 * (s as f64 / 20.0).min(1.0)))
        .collect();
    let path = dir.path().join("loss.png");
    plot_curves_sized(
        &path,
        "training loss",
        &[
            ("train", loss.clone()),
            (
                "val",
                vec![(50.0, 1.4), (100.0, 0.9), (150.0, f64::NAN), (199.0, 0.6)],
            ),
        ],
        "step",
        "loss",
        (640, 400),
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(png_size(&bytes), (640, 400));
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (640, 400));
    // Something other than the white background was drawn.
    let rgb = img.to_rgb8();
    assert!(rgb.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 1000);

    let lr_path = dir.path().join("lr.png");
    plot_curves_sized(
        &lr_path,
        "learning rate",
        &[("lr", lr)],
        "step",
        "learning rate",
        (500, 300),
    )
    .unwrap();
    assert_eq!(png_size(&std::fs::read(&lr_path).unwrap()), (500, 300));

    let roc = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true])
        .unwrap()
        .unwrap();
    let roc_path = dir.path().join("roc.png");
    plot_roc_sized(&roc_path, &[("effusion", roc, 0.75)], (420, 420)).unwrap();
    assert_eq!(png_size(&std::fs::read(&roc_path).unwrap()), (420, 420));

    // Only the three plots are left: the temporary files were renamed away.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
}

#[test]
fn plots_report_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.png");
    assert!(matches!(
        plot_curves_sized(
            &p,
            "t",
            &[("a", vec![(0.0, f64::NAN)])],
            "x",
            "y",
            (100, 100)
        ),
        Err(PlotError::NoData(_))
    ));
    assert!(matches!(
        plot_curves_sized(&p, "t", &[("a", vec![(0.0, 1.0)])], "x", "y", (0, 100)),
        Err(PlotError::InvalidSize { .. })
    ));
    // A single point (one evaluation) is a valid plot.
    plot_curves_sized(&p, "t", &[("a", vec![(3.0, 0.5)])], "x", "y", (200, 150)).unwrap();
    let missing = dir.path().join("no/such/dir/x.png");
    assert!(matches!(
        plot_curves_sized(
            &missing,
            "t",
            &[("a", vec![(0.0, 1.0)])],
            "x",
            "y",
            (100, 100)
        ),
        Err(PlotError::Io { .. })
    ));
}
