// Shared by the two benches: inputs and the configurations compared.

use tch::{Device, Kind, Tensor};
use umcl_losses::{ItlLossConfig, LabelSimilarity, Target};

/// Projection width of the features (CLIP-style 512).
pub const DIM: i64 = 512;
/// Rows per chunk of the chunked loss.
pub const CHUNK: usize = 256;

/// Seeded features `[n, DIM]` and chest-X-ray-like label codes `[n, 17]`: a third of the
/// samples are "no finding", the rest have one or two of 16 findings, 10% of the entries are
/// uncertain, and a fifth of the samples are unlabelled (all unmentioned).
pub fn inputs(n: i64) -> (Tensor, Tensor, Tensor) {
    tch::manual_seed(0);
    let opts = (Kind::Float, Device::Cpu);
    let img = Tensor::randn([n, DIM], opts);
    let txt = &img + Tensor::randn([n, DIM], opts);
    let u = || Tensor::rand([n, 1], opts);
    let findings = Tensor::rand([n, 16], opts);
    let draw = u() * 0.2;
    let mut codes = findings.lt_tensor(&draw).to_kind(Kind::Int64); // about 1.6 positives
    codes = codes.where_self(&Tensor::rand([n, 16], opts).ge(0.1), &codes.full_like(-1));
    let normal = u().lt(1.0 / 3.0);
    codes = codes.where_self(&normal.logical_not(), &codes.zeros_like());
    let no_finding = normal.to_kind(Kind::Int64);
    let mut labels = Tensor::cat(&[no_finding, codes], 1);
    let unlabelled = u().lt(0.2);
    labels = labels.where_self(&unlabelled.logical_not(), &labels.full_like(-2));
    (img, txt, labels)
}

/// The losses compared: (name, config); `None` is `clip_loss`.
pub fn variants() -> Vec<(&'static str, Option<ItlLossConfig>)> {
    let mp = ItlLossConfig::default();
    let masked = ItlLossConfig {
        false_negative_threshold: Some(0.5),
        ..mp.clone()
    };
    let soft = ItlLossConfig {
        target: Target::Soft,
        similarity: LabelSimilarity::Cosine,
        ..mp.clone()
    };
    let chunked = |c: &ItlLossConfig| ItlLossConfig {
        chunk_size: Some(CHUNK),
        ..c.clone()
    };
    let identity = ItlLossConfig {
        target: Target::Identity,
        ..mp.clone()
    };
    vec![
        ("clip", None),
        ("multi_positive", Some(mp.clone())),
        ("multi_positive_masked", Some(masked.clone())),
        ("soft", Some(soft.clone())),
        ("identity_chunked", Some(chunked(&identity))),
        ("multi_positive_chunked", Some(chunked(&mp))),
        ("multi_positive_masked_chunked", Some(chunked(&masked))),
        ("soft_chunked", Some(chunked(&soft))),
    ]
}

/// One forward and backward pass on fresh leaves.
pub fn step(img: &Tensor, txt: &Tensor, labels: &Tensor, cfg: &Option<ItlLossConfig>) {
    let i = img.detach().set_requires_grad(true);
    let t = txt.detach().set_requires_grad(true);
    let s = Tensor::from(100f32.ln()).set_requires_grad(true);
    let loss = match cfg {
        None => umcl_losses::clip_loss(&i, &t, &s).expect("valid inputs"),
        Some(cfg) => {
            umcl_losses::itl_loss(&i, &t, labels, &s, cfg)
                .expect("valid inputs")
                .loss
        }
    };
    loss.backward();
}
