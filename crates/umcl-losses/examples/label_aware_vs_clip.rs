//! The Image-Text-Label loss next to CLIP's on one small batch where two samples share a
//! diagnosis: CLIP counts the second as a negative, the label-aware targets count it as a
//! positive.
//!
//! Run with `cargo run -p umcl-losses --example label_aware_vs_clip`, or copy this file into
//! a project that depends on `umcl-losses` and `tch` (libtorch found through `LIBTORCH` or
//! `LIBTORCH_USE_PYTORCH=1`, as tch documents).

use tch::{Kind, Tensor};
use umcl_losses::{clip_loss, itl_loss, itl_targets, ItlLossConfig, Target};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tch::manual_seed(0);
    let (batch, dim) = (6, 16);
    let img = Tensor::randn([batch, dim], (Kind::Float, tch::Device::Cpu));
    // Texts close to their own images.
    let txt = &img + Tensor::randn([batch, dim], (Kind::Float, tch::Device::Cpu)) * 0.5;
    let logit_scale = Tensor::from(10.0f32).log();

    // Findings: [effusion, pneumonia]; 1 positive, 0 negative, -1 uncertain, -2 unmentioned.
    let labels = Tensor::from_slice2(&[
        [1i64, 0],
        [1, 0], // the same diagnosis as sample 0
        [0, 1],
        [0, 0],
        [-1, 1],
        [-2, -2], // an image-report pair without labels: identity target
    ]);

    let clip = clip_loss(&img, &txt, &logit_scale)?;
    println!("CLIP loss:                  {:.4}", clip.double_value(&[]));
    for (name, target) in [
        ("multi-positive", Target::MultiPositive),
        ("soft", Target::Soft),
    ] {
        let cfg = ItlLossConfig {
            target,
            ..ItlLossConfig::default()
        };
        let out = itl_loss(&img, &txt, &labels, &logit_scale, &cfg)?;
        let d = out.diagnostics();
        println!(
            "ITL loss ({name:>14}): {:.4}  ({} labelled rows, {:.2} positives per row)",
            out.loss.double_value(&[]),
            d.labeled_rows,
            d.mean_positives_per_row
        );
    }
    let targets = itl_targets(&labels, &ItlLossConfig::default())?;
    println!(
        "multi-positive targets, row 0: {:?}",
        row(&targets.target, 0)
    );
    Ok(())
}

fn row(t: &Tensor, i: i64) -> Vec<f64> {
    (0..t.size()[1]).map(|j| t.double_value(&[i, j])).collect()
}
