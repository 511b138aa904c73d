//! Properties of the losses that need no reference numbers: finite-difference gradients,
//! invariants (distinct labels give CLIP, masking removes exactly the flagged pairs, batch
//! permutation), numerics at the edges, chunked = dense, and input validation. Expected values
//! are derived in comments.

use tch::{Device, Kind, Tensor};
use umcl_losses::{
    clip_loss, itl_loss, ItlLossConfig, LabelSimilarity, LossError, Target, UncertainPolicy,
};

const CPU: Device = Device::Cpu;

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn randn(shape: &[i64], kind: Kind) -> Tensor {
    Tensor::randn(shape, (kind, CPU))
}

/// Random codes in {-2, -1, 0, 1} with few findings, so that label vectors repeat.
fn random_labels(n: i64, k: i64) -> Tensor {
    Tensor::randint_low(-2, 2, [n, k], (Kind::Int64, CPU))
}

/// The configurations most tests sweep: each target, with and without masking.
fn configs() -> Vec<ItlLossConfig> {
    let base = ItlLossConfig::default();
    vec![
        ItlLossConfig {
            target: Target::Identity,
            similarity: LabelSimilarity::Cosine,
            false_negative_threshold: Some(0.5),
            ..base.clone()
        },
        base.clone(),
        ItlLossConfig {
            false_negative_threshold: Some(0.3),
            uncertain: UncertainPolicy::AsPositive,
            image_to_text_weight: 0.8,
            text_to_image_weight: 0.2,
            ..base.clone()
        },
        ItlLossConfig {
            target: Target::Soft,
            similarity: LabelSimilarity::Cosine,
            uncertain: UncertainPolicy::AsNegative,
            label_temperature: 0.3,
            ..base
        },
    ]
}

/// Loss and gradients with respect to (img, txt, logit_scale).
fn loss_and_grads(
    img: &Tensor,
    txt: &Tensor,
    labels: &Tensor,
    ls: &Tensor,
    cfg: &ItlLossConfig,
) -> (f64, Tensor, Tensor, Tensor) {
    let (i, t, s) = (leaf(img), leaf(txt), leaf(ls));
    let out = itl_loss(&i, &t, labels, &s, cfg).unwrap();
    out.loss.backward();
    (out.loss.double_value(&[]), i.grad(), t.grad(), s.grad())
}

#[test]
fn gradients_match_central_finite_differences() {
    tch::manual_seed(1);
    let (n, d) = (5, 4);
    let img = randn(&[n, d], Kind::Double);
    let txt = randn(&[n, d], Kind::Double);
    let ls = Tensor::from(0.8f64);
    // Rows 0 and 1 agree, 2 shares finding 0 with them, 3 is unlabelled, 4 is uncertain only.
    let labels = Tensor::from_slice2(&[
        [1i64, 0, -2],
        [1, 0, 0],
        [1, 1, 0],
        [-2, -2, -2],
        [-1, -2, -2],
    ]);
    let h = 1e-6;
    for cfg in configs() {
        for chunk in [None, Some(2)] {
            let cfg = ItlLossConfig {
                chunk_size: chunk,
                ..cfg.clone()
            };
            let (_, gi, gt, gs) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
            let value = |i: &Tensor, t: &Tensor, s: &Tensor| {
                itl_loss(i, t, &labels, s, &cfg)
                    .unwrap()
                    .loss
                    .double_value(&[])
            };
            for (which, analytic) in [(0, &gi), (1, &gt)] {
                for idx in 0..n * d {
                    let (r, c) = (idx / d, idx % d);
                    let bump = |eps: f64| {
                        let p = [&img, &txt][which].copy();
                        let _ = p.get(r).get(c).g_add_scalar_(eps);
                        if which == 0 {
                            value(&p, &txt, &ls)
                        } else {
                            value(&img, &p, &ls)
                        }
                    };
                    let numeric = (bump(h) - bump(-h)) / (2.0 * h);
                    let a = analytic.double_value(&[r, c]);
                    assert!(
                        (a - numeric).abs() < 1e-7,
                        "{cfg:?} input {which} [{r},{c}]: {a} vs {numeric}"
                    );
                }
            }
            let numeric =
                (value(&img, &txt, &(&ls + h)) - value(&img, &txt, &(&ls - h))) / (2.0 * h);
            let a = gs.double_value(&[]);
            assert!(
                (a - numeric).abs() < 1e-7,
                "{cfg:?} logit_scale: {a} vs {numeric}"
            );
        }
    }
}

#[test]
fn multi_positive_with_all_labels_distinct_equals_clip() {
    tch::manual_seed(2);
    let (n, d) = (6, 5);
    let img = randn(&[n, d], Kind::Float);
    let txt = randn(&[n, d], Kind::Float);
    let ls = Tensor::from(2.0f32);
    // One positive finding each, all different: no two label vectors agree, so A = I.
    let labels = Tensor::eye(n, (Kind::Int64, CPU));
    let (ci, ct, cs) = (leaf(&img), leaf(&txt), leaf(&ls));
    let clip = clip_loss(&ci, &ct, &cs).unwrap();
    clip.backward();
    for chunk in [None, Some(4)] {
        let cfg = ItlLossConfig {
            chunk_size: chunk,
            ..Default::default()
        };
        let (v, gi, gt, gs) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
        assert!((v - clip.double_value(&[])).abs() < 1e-6);
        assert!(max_diff(&gi, &ci.grad()) < 1e-6);
        assert!(max_diff(&gt, &ct.grad()) < 1e-6);
        assert!(max_diff(&gs, &cs.grad()) < 1e-6);
    }
}

#[test]
fn unlabelled_batch_gives_clip_for_every_target() {
    tch::manual_seed(3);
    let img = randn(&[7, 3], Kind::Float);
    let txt = randn(&[7, 3], Kind::Float);
    let ls = Tensor::from(1.0f32);
    let clip = clip_loss(&img, &txt, &ls).unwrap().double_value(&[]);
    // All unmentioned, or only uncertain under Ignore: no sample is labelled.
    let labels = Tensor::full([7, 4], -2i64, (Kind::Int64, CPU));
    let _ = labels.get(2).get(1).fill_(-1);
    for cfg in configs() {
        for chunk in [None, Some(3)] {
            let cfg = ItlLossConfig {
                uncertain: UncertainPolicy::Ignore,
                image_to_text_weight: 0.5,
                text_to_image_weight: 0.5,
                chunk_size: chunk,
                ..cfg.clone()
            };
            let out = itl_loss(&img, &txt, &labels, &ls, &cfg).unwrap();
            assert!((out.loss.double_value(&[]) - clip).abs() < 1e-6, "{cfg:?}");
            assert_eq!(out.diagnostics().labeled_rows, 0);
            assert_eq!(out.diagnostics().masked_pairs, 0);
            assert_eq!(out.diagnostics().mean_positives_per_row, 1.0);
        }
    }
}

/// Hand-made batch: findings {0}, {0, 1}, {2}, unlabelled. Jaccard({0}, {0,1}) = 1/2, every
/// other labelled pair 0, so a threshold of 0.5 flags exactly (0, 1) and (1, 0).
#[test]
fn masking_removes_exactly_the_flagged_pairs() {
    tch::manual_seed(4);
    let img = randn(&[4, 3], Kind::Double);
    let txt = randn(&[4, 3], Kind::Double);
    let ls = Tensor::from(1.3f64);
    let labels = Tensor::from_slice2(&[[1i64, 0, 0], [1, 1, 0], [0, 0, 1], [-2, -2, -2]]);
    // The loss written out with the kept columns listed by hand.
    let norm = |t: &Tensor| t / t.norm_scalaropt_dim(2.0, [1], true);
    let logits = norm(&img).matmul(&norm(&txt).tr()) * ls.exp();
    let kept: [&[i64]; 4] = [&[0, 2, 3], &[1, 2, 3], &[0, 1, 2, 3], &[0, 1, 2, 3]];
    let direction = |l: &Tensor| {
        (0..4)
            .map(|i| {
                let row = l
                    .get(i)
                    .index_select(0, &Tensor::from_slice(kept[i as usize]));
                row.logsumexp([0], false).double_value(&[]) - l.double_value(&[i, i])
            })
            .sum::<f64>()
            / 4.0
    };
    let expected = 0.5 * direction(&logits) + 0.5 * direction(&logits.tr());
    for chunk in [None, Some(1), Some(3)] {
        let cfg = ItlLossConfig {
            target: Target::Identity,
            false_negative_threshold: Some(0.5),
            chunk_size: chunk,
            ..Default::default()
        };
        let out = itl_loss(&img, &txt, &labels, &ls, &cfg).unwrap();
        assert_eq!(out.diagnostics().masked_pairs, 2);
        assert!((out.loss.double_value(&[]) - expected).abs() < 1e-12);
        // Just above 1/2 nothing is flagged and the loss is CLIP's.
        let cfg = ItlLossConfig {
            false_negative_threshold: Some(0.51),
            ..cfg
        };
        let out = itl_loss(&img, &txt, &labels, &ls, &cfg).unwrap();
        assert_eq!(out.diagnostics().masked_pairs, 0);
        let clip = clip_loss(&img, &txt, &ls).unwrap().double_value(&[]);
        assert!((out.loss.double_value(&[]) - clip).abs() < 1e-12);
    }
}

/// Positive sets under each uncertainty policy for `[0, 1, -1]` vs `[0, 1, 0]` and the
/// uncertain-only `[-2, -1, -2]`:
/// - AsPositive: {1, 2}, {1}, {1}: rows 1 and 2 agree -> positives 1, 2, 2;
/// - AsNegative: {1}, {1}, {}: rows 0 and 1 agree -> 2, 2, 1;
/// - Ignore: finding 2 is not compared for (0, 1), so they agree; row 2 is unlabelled -> 2, 2, 1.
#[test]
fn uncertainty_policies_decide_agreement() {
    let labels = Tensor::from_slice2(&[[0i64, 1, -1], [0, 1, 0], [-2, -1, -2]]);
    let img = Tensor::eye(3, (Kind::Float, CPU));
    let ls = Tensor::from(0.0f32);
    for (policy, positives, labelled) in [
        (UncertainPolicy::AsPositive, 5.0, 3),
        (UncertainPolicy::AsNegative, 5.0, 3),
        (UncertainPolicy::Ignore, 5.0, 2),
    ] {
        let cfg = ItlLossConfig {
            uncertain: policy,
            ..Default::default()
        };
        let d = itl_loss(&img, &img, &labels, &ls, &cfg)
            .unwrap()
            .diagnostics();
        assert_eq!(d.mean_positives_per_row, positives / 3.0, "{policy:?}");
        assert_eq!(d.labeled_rows, labelled, "{policy:?}");
    }
    // Which pair agrees differs: under AsPositive row 0 agrees with nobody, so moving text 0
    // changes only row 0's own term; the check above fixes the counts, this fixes the pairs.
    let cfg = ItlLossConfig {
        uncertain: UncertainPolicy::AsPositive,
        ..Default::default()
    };
    let (_, _, gt, _) = loss_and_grads(&img, &img, &labels, &ls, &cfg);
    let cfg = ItlLossConfig {
        uncertain: UncertainPolicy::AsNegative,
        ..Default::default()
    };
    let (_, _, gt2, _) = loss_and_grads(&img, &img, &labels, &ls, &cfg);
    assert!(max_diff(&gt, &gt2) > 1e-3);
}

#[test]
fn permuting_the_batch_leaves_the_loss_unchanged() {
    tch::manual_seed(5);
    let (n, d) = (9, 4);
    let img = randn(&[n, d], Kind::Double);
    let txt = randn(&[n, d], Kind::Double);
    let labels = random_labels(n, 2);
    let ls = Tensor::from(1.7f64);
    let perm = Tensor::randperm(n, (Kind::Int64, CPU));
    let p = |t: &Tensor| t.index_select(0, &perm);
    for cfg in configs() {
        for chunk in [None, Some(4)] {
            let cfg = ItlLossConfig {
                chunk_size: chunk,
                ..cfg.clone()
            };
            let (v, gi, gt, gs) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
            let (vp, gip, gtp, gsp) = loss_and_grads(&p(&img), &p(&txt), &p(&labels), &ls, &cfg);
            assert!((v - vp).abs() < 1e-12, "{cfg:?}");
            assert!(max_diff(&p(&gi), &gip) < 1e-12);
            assert!(max_diff(&p(&gt), &gtp) < 1e-12);
            assert!(max_diff(&gs, &gsp) < 1e-12);
        }
    }
}

/// Unmentioned findings count as absent and are compared like negatives, so appending 70 of
/// them to every sample changes no pair: not the targets, the masks or the diagnostics. With
/// 75 findings the pairs are evaluated from their counts instead of the lookup tables used for
/// small label sets (`K + 1 <= 64`), so this also checks that both ways agree.
#[test]
fn padding_with_unmentioned_findings_changes_nothing() {
    tch::manual_seed(11);
    let (n, k, pad) = (24, 5, 70);
    let img = randn(&[n, 8], Kind::Double);
    let txt = randn(&[n, 8], Kind::Double);
    let ls = Tensor::from(2.0f64);
    let labels = random_labels(n, k);
    let padded = Tensor::cat(
        &[&labels, &Tensor::full([n, pad], -2, (Kind::Int64, CPU))],
        1,
    );
    for base in configs() {
        for chunk in [None, Some(7)] {
            let cfg = ItlLossConfig {
                chunk_size: chunk,
                ..base.clone()
            };
            let small = itl_loss(&img, &txt, &labels, &ls, &cfg).unwrap();
            let large = itl_loss(&img, &txt, &padded, &ls, &cfg).unwrap();
            let (a, b) = (small.loss.double_value(&[]), large.loss.double_value(&[]));
            assert!((a - b).abs() < 1e-12, "{cfg:?}: {a} vs {b}");
            assert_eq!(small.diagnostics(), large.diagnostics(), "{cfg:?}");
        }
    }
}

fn all_finite(t: &Tensor) -> bool {
    t.isfinite().all().int64_value(&[]) == 1
}

/// Every label vector the same and every feature the same: all logits equal `c`.
/// - Identity with threshold 1: every off-diagonal pair is flagged, each row keeps only its
///   own logit, so each term is `c - c = 0` and the loss is exactly 0.
/// - Multi-positive: every pair is a positive, the target is uniform, each term is
///   `LSE = c + ln B` minus the mean `c`: the loss is `ln B`.
#[test]
fn all_masked_and_all_positive_rows_stay_finite() {
    let n = 6;
    let labels = Tensor::from_slice2(&[[1i64, 0]; 6]);
    for kind in [Kind::BFloat16, Kind::Half, Kind::Float] {
        let feats = Tensor::ones([n, 8], (kind, CPU));
        let ls = Tensor::from(100f32.ln());
        for chunk in [None, Some(4)] {
            let masked = ItlLossConfig {
                target: Target::Identity,
                false_negative_threshold: Some(1.0),
                chunk_size: chunk,
                ..Default::default()
            };
            let all_positive = ItlLossConfig {
                chunk_size: chunk,
                ..Default::default()
            };
            for (cfg, expected, masked_pairs) in [
                (masked, 0.0, n * (n - 1)),
                (all_positive, (n as f64).ln(), 0),
            ] {
                let (i, t, s) = (leaf(&feats), leaf(&feats), leaf(&ls));
                let out = itl_loss(&i, &t, &labels, &s, &cfg).unwrap();
                assert_eq!(out.loss.kind(), Kind::Float);
                out.loss.backward();
                let v = out.loss.double_value(&[]);
                // Logits are 100 (1 + rounding): a few fp32 steps of 7.6e-6 at 100.
                assert!(
                    (v - expected).abs() < 5e-5,
                    "{kind:?} {cfg:?}: {v} vs {expected}"
                );
                assert_eq!(out.diagnostics().masked_pairs, masked_pairs);
                for g in [i.grad(), t.grad(), s.grad()] {
                    assert!(all_finite(&g), "{kind:?} {cfg:?}");
                }
            }
        }
    }
}

#[test]
fn half_precision_inputs_with_a_large_scale_stay_finite() {
    tch::manual_seed(6);
    let labels = random_labels(32, 3);
    for kind in [Kind::BFloat16, Kind::Half] {
        let img = randn(&[32, 16], kind);
        let txt = randn(&[32, 16], kind);
        let ls = Tensor::from(100f32.ln());
        for cfg in configs() {
            let (v, gi, gt, gs) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
            assert!(v.is_finite());
            assert_eq!(gi.kind(), kind);
            assert!(all_finite(&gi) && all_finite(&gt) && all_finite(&gs));
        }
    }
}

#[test]
fn chunked_equals_dense_at_several_sizes_and_chunks() {
    tch::manual_seed(7);
    for n in [1, 2, 17, 64, 300] {
        let img = randn(&[n, 32], Kind::Float);
        let txt = &img + randn(&[n, 32], Kind::Float);
        let labels = random_labels(n, 3);
        let ls = Tensor::from(100f32.ln());
        for cfg in configs() {
            let (v, gi, gt, gs) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
            for chunk in [1, 7, 64, 512] {
                let cfg = ItlLossConfig {
                    chunk_size: Some(chunk),
                    ..cfg.clone()
                };
                let (vc, gic, gtc, gsc) = loss_and_grads(&img, &txt, &labels, &ls, &cfg);
                let what = format!("B {n} chunk {chunk} {cfg:?}");
                // Relative: at scale 100 each row's term is a difference of two logits near
                // 100, whose fp32 spacing is 7.6e-6, and the blocked matmul rounds them
                // differently from the full one.
                assert!(
                    (v - vc).abs() <= 1e-5 * v.abs().max(1.0),
                    "{what}: loss {v} vs {vc}"
                );
                assert!(max_diff(&gi, &gic) <= 1e-5, "{what}: grad img");
                assert!(max_diff(&gt, &gtc) <= 1e-5, "{what}: grad txt");
                // d loss / d logit_scale = sum_ij G_ij L_ij is of the loss's size: relative, as above.
                let tol = 1e-5 * gs.abs().double_value(&[]).max(1.0);
                assert!(
                    max_diff(&gs, &gsc) <= tol,
                    "{what}: grad scale {gs} vs {gsc}"
                );
            }
        }
    }
}

fn error_of(
    img: &Tensor,
    txt: &Tensor,
    labels: &Tensor,
    ls: &Tensor,
    cfg: &ItlLossConfig,
) -> LossError {
    itl_loss(img, txt, labels, ls, cfg).unwrap_err()
}

#[test]
fn bad_inputs_give_errors() {
    let f = Tensor::ones([3, 2], (Kind::Float, CPU));
    let labels = Tensor::zeros([3, 4], (Kind::Int64, CPU));
    let ls = Tensor::from(0.0f32);
    let cfg = ItlLossConfig::default();
    let e = |img: &Tensor, txt: &Tensor, lab: &Tensor, s: &Tensor| error_of(img, txt, lab, s, &cfg);

    assert!(matches!(
        e(&f.reshape([6]), &f, &labels, &ls),
        LossError::NotMatrix { .. }
    ));
    assert!(matches!(
        e(&f, &f.reshape([2, 3]), &labels, &ls),
        LossError::ShapeMismatch { .. }
    ));
    let ints = Tensor::ones([3, 2], (Kind::Int64, CPU));
    assert!(matches!(
        e(&ints, &f, &labels, &ls),
        LossError::NotFloat { .. }
    ));
    let empty = Tensor::ones([0, 2], (Kind::Float, CPU));
    assert!(matches!(
        e(&empty, &empty, &labels.narrow(0, 0, 0), &ls),
        LossError::Empty(_)
    ));
    let two = Tensor::from_slice(&[0.0f32, 1.0]);
    assert!(matches!(
        e(&f, &f, &labels, &two),
        LossError::LogitScaleShape(_)
    ));
    assert!(matches!(
        e(&f, &f, &labels.narrow(0, 0, 2), &ls),
        LossError::LabelShape { batch: 3, .. }
    ));
    assert!(matches!(
        e(&f, &f, &labels.to_kind(Kind::Float), &ls),
        LossError::LabelKind(_)
    ));
    let bad = labels.copy();
    let _ = bad.get(1).get(2).fill_(2);
    let _ = bad.get(2).get(0).fill_(-3);
    let err = e(&f, &f, &bad, &ls);
    assert!(
        matches!(
            err,
            LossError::LabelCode {
                row: 1,
                column: 2,
                value: 2
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "label code 2 at row 1, column 2 is not one of 1, 0, -1, -2"
    );

    let bad_configs = [
        (
            "label_temperature",
            ItlLossConfig {
                label_temperature: f64::NAN,
                ..cfg.clone()
            },
        ),
        (
            "label_temperature",
            ItlLossConfig {
                label_temperature: 0.0,
                ..cfg.clone()
            },
        ),
        (
            "false_negative_threshold",
            ItlLossConfig {
                false_negative_threshold: Some(-0.1),
                ..cfg.clone()
            },
        ),
        (
            "false_negative_threshold",
            ItlLossConfig {
                false_negative_threshold: Some(1.5),
                ..cfg.clone()
            },
        ),
        (
            "false_negative_threshold",
            ItlLossConfig {
                false_negative_threshold: Some(f64::NAN),
                ..cfg.clone()
            },
        ),
        (
            "false_negative_threshold",
            ItlLossConfig {
                target: Target::Soft,
                false_negative_threshold: Some(0.5),
                ..cfg.clone()
            },
        ),
        (
            "image_to_text_weight",
            ItlLossConfig {
                image_to_text_weight: -1.0,
                ..cfg.clone()
            },
        ),
        (
            "text_to_image_weight",
            ItlLossConfig {
                text_to_image_weight: f64::INFINITY,
                ..cfg.clone()
            },
        ),
        (
            "image_to_text_weight",
            ItlLossConfig {
                image_to_text_weight: 0.0,
                text_to_image_weight: 0.0,
                ..cfg.clone()
            },
        ),
        (
            "chunk_size",
            ItlLossConfig {
                chunk_size: Some(0),
                ..cfg.clone()
            },
        ),
    ];
    for (field, bad) in bad_configs {
        match error_of(&f, &f, &labels, &ls, &bad) {
            LossError::Config { field: got, .. } => assert_eq!(got, field, "{bad:?}"),
            other => panic!("{bad:?}: expected a config error, got {other}"),
        }
    }
    // clip_loss validates its inputs the same way.
    assert!(matches!(
        clip_loss(&f, &f.reshape([2, 3]), &ls),
        Err(LossError::ShapeMismatch { .. })
    ));
}

/// `check_labels: false` skips only the check: valid codes give the same loss and diagnostics.
#[test]
fn unchecked_valid_labels_give_the_checked_result() {
    let (n, d, k) = (12, 8, 5);
    let img = randn(&[n, d], Kind::Double);
    let txt = randn(&[n, d], Kind::Double);
    let labels = random_labels(n, k);
    let ls = Tensor::from(1.5f64);
    for cfg in configs() {
        let checked = itl_loss(&img, &txt, &labels, &ls, &cfg).unwrap();
        let unchecked = ItlLossConfig {
            check_labels: false,
            ..cfg.clone()
        };
        let unchecked = itl_loss(&img, &txt, &labels, &ls, &unchecked).unwrap();
        assert_eq!(
            checked.loss.double_value(&[]),
            unchecked.loss.double_value(&[]),
            "{cfg:?}"
        );
        assert_eq!(checked.diagnostics(), unchecked.diagnostics(), "{cfg:?}");
    }
}
