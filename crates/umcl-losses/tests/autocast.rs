//! The losses under bf16 autocast: targets and masks exactly as in fp32, loss and gradients
//! within 1e-5 (relative) of the fp32 computation, for fp32 inputs, on the CPU.
//!
//! Without the losses' own autocast switch, the pair codes of 17 findings (up to 3 * 18^3)
//! would go through a bf16 matmul, which holds integers exactly only up to 256: two samples
//! with the same single finding have code 18^2 + 18 + 1 = 343, which bf16 rounds to 344.

use tch::{Device, Kind, Tensor};
use umcl_losses::{
    clip_loss, itl_loss, itl_targets, FullPrecision, ItlLossConfig, LabelSimilarity, Target,
    UncertainPolicy,
};

/// CPU bf16 autocast for the guard's life, through ATen's own state functions (the test must
/// not depend on umcl-models, whose `runtime::autocast` does the same).
struct Bf16Autocast;

mod aten {
    extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
    }
}

impl Bf16Autocast {
    fn on() -> Self {
        // SAFETY: device type CPU (0), scalar type BFloat16 (15); thread-local state only.
        unsafe {
            aten::set_autocast_dtype(0, 15);
            aten::set_autocast_enabled(0, true);
        }
        // The switch works: a plain fp32 matmul now gives bf16.
        let a = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::BFloat16, "autocast is not on");
        Bf16Autocast
    }
}

impl Drop for Bf16Autocast {
    fn drop(&mut self) {
        // SAFETY: as in `on`.
        unsafe { aten::set_autocast_enabled(0, false) };
    }
}

/// 17 findings as in the chest X-ray schema; most samples have one finding out of three, so
/// many pairs agree and the codes reach past 256.
fn labels(n: i64) -> Tensor {
    tch::manual_seed(7);
    let k = 17;
    let mut codes = Tensor::full([n, k], 0i64, (Kind::Int64, Device::Cpu));
    let finding = Tensor::randint(3, [n], (Kind::Int64, Device::Cpu));
    let _ = codes.scatter_(
        1,
        &finding.unsqueeze(1),
        &Tensor::ones([n, 1], (Kind::Int64, Device::Cpu)),
    );
    // A few unmentioned, uncertain and unlabelled rows.
    let _ = codes.narrow(1, 10, 7).fill_(-2);
    let _ = codes.narrow(0, 0, 3).narrow(1, 5, 1).fill_(-1);
    let _ = codes.narrow(0, n - 2, 2).fill_(-2);
    codes
}

fn configs() -> Vec<ItlLossConfig> {
    let base = ItlLossConfig::default();
    let mut out = Vec::new();
    for similarity in [LabelSimilarity::Jaccard, LabelSimilarity::Cosine] {
        for threshold in [None, Some(0.3)] {
            out.push(ItlLossConfig {
                target: Target::Identity,
                similarity,
                false_negative_threshold: threshold.or(Some(0.5)),
                ..base.clone()
            });
            out.push(ItlLossConfig {
                target: Target::MultiPositive,
                similarity,
                false_negative_threshold: threshold,
                ..base.clone()
            });
            // Soft targets already weigh same-diagnosis pairs; masking them is
            // rejected by the config, so they appear once per similarity.
            if threshold.is_none() {
                out.push(ItlLossConfig {
                    target: Target::Soft,
                    similarity,
                    false_negative_threshold: None,
                    label_temperature: 0.2,
                    uncertain: UncertainPolicy::AsPositive,
                    ..base.clone()
                });
            }
        }
    }
    let chunked: Vec<_> = out
        .iter()
        .map(|c| ItlLossConfig {
            chunk_size: Some(16),
            ..c.clone()
        })
        .collect();
    out.extend(chunked);
    out
}

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    let scale = b.abs().max().double_value(&[]).max(1e-30);
    (a - b).abs().max().double_value(&[]) / scale
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

/// Loss value and gradients with respect to (img, txt, logit scale): the forward pass under
/// bf16 autocast when `cast`, the backward pass outside it (as PyTorch and our trainer do).
fn itl_run(
    img: &Tensor,
    txt: &Tensor,
    labels: &Tensor,
    cfg: &ItlLossConfig,
    cast: bool,
) -> (Tensor, [Tensor; 3], (i64, f64)) {
    let (i, t, s) = (leaf(img), leaf(txt), leaf(&Tensor::from(3.0f32)));
    let out = {
        let _ac = cast.then(Bf16Autocast::on);
        itl_loss(&i, &t, labels, &s, cfg).unwrap()
    };
    assert_eq!(out.loss.kind(), Kind::Float);
    out.loss.backward();
    let d = out.diagnostics();
    (
        out.loss.detach(),
        [i.grad(), t.grad(), s.grad()],
        (d.masked_pairs, d.mean_positives_per_row),
    )
}

#[test]
fn targets_and_masks_under_bf16_autocast_equal_fp32_exactly() {
    let codes = labels(64);
    for cfg in configs() {
        let plain = itl_targets(&codes, &cfg).unwrap();
        let cast = {
            let _ac = Bf16Autocast::on();
            itl_targets(&codes, &cfg).unwrap()
        };
        assert_eq!(cast.target.kind(), Kind::Float);
        assert!(
            cast.target.equal(&plain.target),
            "targets differ under autocast: {cfg:?}"
        );
        assert!(
            cast.removed.equal(&plain.removed),
            "masks differ under autocast: {cfg:?}"
        );
    }
    // The case bf16 would break: two samples with the same single finding are positives.
    let one = Tensor::from_slice2(&[[1i64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]; 2]);
    let _ac = Bf16Autocast::on();
    let t = itl_targets(&one, &ItlLossConfig::default()).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(t.target.view([-1])).unwrap(),
        vec![0.5; 4]
    );
}

#[test]
fn itl_loss_and_gradients_under_bf16_autocast_match_fp32() {
    tch::manual_seed(3);
    let n = 64;
    let codes = labels(n);
    let img = Tensor::randn([n, 32], (Kind::Float, Device::Cpu));
    let txt = &img * 0.5 + Tensor::randn([n, 32], (Kind::Float, Device::Cpu));
    for cfg in configs() {
        let (loss, grads, diag) = itl_run(&img, &txt, &codes, &cfg, false);
        let (loss_ac, grads_ac, diag_ac) = itl_run(&img, &txt, &codes, &cfg, true);
        assert_eq!(diag, diag_ac, "{cfg:?}");
        assert!(
            rel_diff(&loss_ac, &loss) < 1e-5,
            "loss {loss_ac} vs {loss}: {cfg:?}"
        );
        for (name, (g_ac, g)) in ["img", "txt", "logit_scale"]
            .iter()
            .zip(grads_ac.iter().zip(&grads))
        {
            assert_eq!(g_ac.kind(), Kind::Float);
            let r = rel_diff(g_ac, g);
            assert!(
                r < 1e-5,
                "gradient of {name}: relative difference {r}: {cfg:?}"
            );
        }
    }
}

#[test]
fn clip_loss_under_bf16_autocast_matches_fp32() {
    tch::manual_seed(4);
    let img = Tensor::randn([48, 16], (Kind::Float, Device::Cpu));
    let txt = Tensor::randn([48, 16], (Kind::Float, Device::Cpu));
    let run = |cast: bool| {
        let (i, t, s) = (leaf(&img), leaf(&txt), leaf(&Tensor::from(4.0f32)));
        let loss = {
            let _ac = cast.then(Bf16Autocast::on);
            clip_loss(&i, &t, &s).unwrap()
        };
        loss.backward();
        (loss.detach(), [i.grad(), t.grad(), s.grad()])
    };
    let (loss, grads) = run(false);
    let (loss_ac, grads_ac) = run(true);
    assert!(rel_diff(&loss_ac, &loss) < 1e-5);
    for (g_ac, g) in grads_ac.iter().zip(&grads) {
        assert!(rel_diff(g_ac, g) < 1e-5);
    }
}

#[test]
fn the_guard_switches_autocast_off_and_restores_it() {
    assert!(!FullPrecision::autocast_active());
    let _ac = Bf16Autocast::on();
    assert!(FullPrecision::autocast_active());
    {
        let _fp32 = FullPrecision::new();
        assert!(!FullPrecision::autocast_active());
        let a = Tensor::ones([2, 2], (Kind::Float, Device::Cpu));
        assert_eq!(a.matmul(&a).kind(), Kind::Float);
        let _inner = FullPrecision::new();
    }
    assert!(FullPrecision::autocast_active());
}
