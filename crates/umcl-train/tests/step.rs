//! One training step (`umcl_train::step`): gradient accumulation is exact, dropout is replayed
//! between the caching and the gradient pass, BatchNorm's running statistics move once per
//! step, and the prompt-label term is the same under bf16 autocast.

use std::collections::BTreeMap;

use tch::{Device, Kind, Tensor};
use umcl_losses::{itl_loss, prompt_label_loss, ItlLossConfig};
use umcl_models::bert::BertConfig;
use umcl_models::dual::{ClassName, DualConfig, DualEncoder};
use umcl_models::image::ImageEncoderConfig;
use umcl_models::prompt::{PromptConfig, SpecialTokens};
use umcl_train::embed::{rows_where, TensorBatch};
use umcl_train::step::{forward_backward, part_seed, Contrastive, StepConfig, CLASSES};

const N: i64 = 16;

/// torch's default generator is global to the process and these tests seed it: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}
const K: i64 = 17;

/// A small dual encoder: `image` as the trainer names encoders, a 1-layer BERT with `dropout`,
/// two prompted classes.
fn model(image: &str, dropout: f64) -> DualEncoder {
    tch::manual_seed(11);
    let text = BertConfig {
        vocab_size: 64,
        hidden_size: 32,
        num_hidden_layers: 1,
        num_attention_heads: 1,
        intermediate_size: 64,
        hidden_dropout_prob: dropout,
        attention_probs_dropout_prob: dropout,
        ..BertConfig::base()
    };
    let mut c = DualConfig::new(ImageEncoderConfig::preset(image).unwrap(), text);
    c.embed_dim = 16;
    c.prompt = Some(PromptConfig {
        n_ctx: 2,
        ..Default::default()
    });
    c.classes = vec![
        ClassName {
            name: "a".into(),
            token_ids: vec![7],
        },
        ClassName {
            name: "b".into(),
            token_ids: vec![8, 9],
        },
    ];
    c.special_tokens = SpecialTokens {
        cls: 1,
        sep: 2,
        pad: 0,
    };
    // A start inside the cap, so that the scale gets a gradient.
    c.logit_scale_init = 2.0;
    DualEncoder::new(&c, Device::Cpu).unwrap()
}

/// A batch of 16 with repeated single findings (many positives), one text-less and one
/// image-less sample.
fn batch() -> TensorBatch {
    tch::manual_seed(5);
    let opts = (Kind::Int64, Device::Cpu);
    let mut labels = Tensor::full([N, K], -2i64, opts);
    let finding = Tensor::randint(3, [N], opts);
    let _ = labels.narrow(1, 0, 3).fill_(0);
    let _ = labels.scatter_(1, &finding.unsqueeze(1), &Tensor::ones([N, 1], opts));
    let mask = Tensor::ones([N, 12], opts);
    let _ = mask.narrow(0, 0, 5).narrow(1, 9, 3).fill_(0);
    let mut has_image = vec![true; N as usize];
    let mut has_text = vec![true; N as usize];
    has_image[3] = false;
    has_text[10] = false;
    TensorBatch {
        images: Tensor::randn([N, 3, 32, 32], (Kind::Float, Device::Cpu)),
        input_ids: Tensor::randint_low(10, 64, [N, 12], opts),
        attention_mask: mask,
        labels,
        has_image,
        has_text,
        ids: (0..N).map(|i| format!("s{i}")).collect(),
    }
}

fn config(accum_steps: usize) -> StepConfig {
    StepConfig {
        contrastive: Contrastive::Itl(ItlLossConfig::default()),
        prompt_weight: 0.5,
        class_index: vec![0, 1],
        accum_steps,
        autocast: None,
    }
}

/// The gradients of the trainable variables by name, cleared from the model.
fn take_grads(m: &DualEncoder) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    for (name, v) in m.vs.trainable_variables_named() {
        let g = v.grad();
        if g.defined() {
            out.insert(name, g.copy());
            let _ = v.grad().zero_();
        }
    }
    out
}

/// Largest `|a - b|` over all entries of a gradient, relative to the largest `|b|`.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    (a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-30)
}

fn assert_same_grads(got: &BTreeMap<String, Tensor>, want: &BTreeMap<String, Tensor>, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: different parameters got gradients"
    );
    // Softmax is invariant to a shift of the attention scores along the keys, so the exact
    // gradient of a key bias is zero: both sides may hold only rounding noise.
    for (name, g) in got
        .iter()
        .filter(|(n, _)| n.ends_with("attention.self.key.bias"))
    {
        for (side, t) in [("accumulated", g), ("reference", &want[name])] {
            let m = t.abs().max().double_value(&[]);
            assert!(
                m < 1e-6,
                "{what}: {side} gradient of {name} is {m:.1e}, not zero"
            );
        }
    }
    let bad: Vec<String> = got
        .iter()
        .filter(|(n, _)| !n.ends_with("attention.self.key.bias"))
        .map(|(name, g)| {
            (
                name,
                rel_diff(g, &want[name]),
                want[name].abs().max().double_value(&[]),
            )
        })
        .filter(|(_, r, _)| *r >= 1e-5)
        .map(|(name, r, m)| format!("{name}: {r:.2e} (max {m:.2e})"))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: gradients differ (relative):\n{}",
        bad.join("\n")
    );
    for must in ["logit_scale", "prompt.ctx", "text_projection.weight"] {
        assert!(
            want[must].abs().max().double_value(&[]) > 0.0,
            "{must} has no gradient"
        );
    }
}

trait NamedTrainable {
    fn trainable_variables_named(&self) -> Vec<(String, Tensor)>;
}

impl NamedTrainable for tch::nn::VarStore {
    fn trainable_variables_named(&self) -> Vec<(String, Tensor)> {
        self.variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect()
    }
}

#[test]
fn accumulation_over_2_and_4_micro_batches_equals_one_batch_without_batchnorm() {
    let _serial = serial();
    // ViT (LayerNorm, no BatchNorm), no dropout: nothing depends on how the batch is split.
    let m = model("vit32-p8-w32-d1", 0.0);
    let b = batch();
    let one = forward_backward(&m, &b, &config(1), 3, None).unwrap();
    let want = take_grads(&m);
    for k in [2, 4] {
        let out = forward_backward(&m, &b, &config(k), 3, None).unwrap();
        assert!((out.total - one.total).abs() < 1e-5 * one.total.abs());
        // Logit scale and prompts included: their direct gradient is taken once per step.
        assert_same_grads(&take_grads(&m), &want, &format!("accum_steps = {k}"));
    }
}

/// The gradient of the full-batch loss on features computed micro-batch by micro-batch with
/// gradients, each with its micro-batch seed: what accumulation must reproduce.
fn reference_grads(
    m: &DualEncoder,
    b: &TensorBatch,
    k: i64,
    seed: i64,
) -> BTreeMap<String, Tensor> {
    let (mut imgs, mut txts) = (Vec::new(), Vec::new());
    for j in 0..k {
        let (a, z) = (j * N / k, (j + 1) * N / k);
        tch::manual_seed(part_seed(seed, j as u64));
        imgs.push(m.encode_image(&b.images.narrow(0, a, z - a), true).unwrap());
        txts.push(
            m.encode_text(
                &b.input_ids.narrow(0, a, z - a),
                &b.attention_mask.narrow(0, a, z - a),
                true,
            )
            .unwrap(),
        );
    }
    let (img, txt) = (Tensor::cat(&imgs, 0), Tensor::cat(&txts, 0));
    tch::manual_seed(part_seed(seed, CLASSES));
    let classes = m.encode_classes(true).unwrap();
    let pairs: Vec<i64> = (0..N)
        .filter(|&i| b.has_image[i as usize] && b.has_text[i as usize])
        .collect();
    let rows = Tensor::from_slice(&pairs);
    let itl = itl_loss(
        &img.index_select(0, &rows),
        &txt.index_select(0, &rows),
        &b.labels.index_select(0, &rows),
        &m.log_logit_scale(),
        &ItlLossConfig::default(),
    )
    .unwrap()
    .loss;
    let prompt = prompt_label_loss(
        &[
            (&img, &rows_where(&b.has_image, Device::Cpu)),
            (&txt, &rows_where(&b.has_text, Device::Cpu)),
        ],
        &classes,
        &b.labels,
        &Tensor::from_slice(&[0i64, 1]),
        &m.log_logit_scale(),
    )
    .unwrap();
    (itl + prompt * 0.5).backward();
    take_grads(m)
}

#[test]
fn dropout_is_replayed_so_accumulation_is_the_gradient_of_the_batch_loss() {
    let _serial = serial();
    let m = model("vit32-p8-w32-d1", 0.1);
    let b = batch();
    for k in [2usize, 4] {
        forward_backward(&m, &b, &config(k), 9, None).unwrap();
        let got = take_grads(&m);
        let want = reference_grads(&m, &b, k as i64, 9);
        assert_same_grads(&got, &want, &format!("dropout, accum_steps = {k}"));
    }
    // The masks are really drawn: another step seed gives other gradients.
    forward_backward(&m, &b, &config(2), 10, None).unwrap();
    let other = take_grads(&m);
    let want = reference_grads(&m, &b, 2, 9);
    let r = rel_diff(
        &other["text.embeddings.word_embeddings.weight"],
        &want["text.embeddings.word_embeddings.weight"],
    );
    assert!(r > 1e-3, "dropout changed nothing ({r:.1e})");
}

/// The running means and variances of the model's BatchNorm layers, by name.
fn running_stats(m: &DualEncoder) -> BTreeMap<String, Tensor> {
    m.vs.variables()
        .into_iter()
        .filter(|(n, _)| n.ends_with("running_mean") || n.ends_with("running_var"))
        .map(|(n, t)| (n, t.copy()))
        .collect()
}

fn set_running_stats(m: &DualEncoder, values: &BTreeMap<String, Tensor>) {
    let _guard = tch::no_grad_guard();
    for (n, mut t) in m.vs.variables() {
        if let Some(v) = values.get(&n) {
            t.copy_(v);
        }
    }
}

#[test]
fn batchnorm_accumulation_updates_running_stats_once_and_matches_its_objective() {
    let _serial = serial();
    let m = model("resnet18-w8", 0.0);
    let b = batch();
    let start = running_stats(&m);
    assert!(start.len() > 10, "a ResNet has BatchNorm layers");
    for k in [1i64, 2, 4] {
        // Expected: the mean of one update per micro-batch, each from the start values.
        let expected: BTreeMap<String, Tensor> = start
            .keys()
            .map(|n| (n.clone(), start[n].zeros_like()))
            .collect();
        for j in 0..k {
            set_running_stats(&m, &start);
            let (a, z) = (j * N / k, (j + 1) * N / k);
            let _guard = tch::no_grad_guard();
            let _ = m.encode_image(&b.images.narrow(0, a, z - a), true).unwrap();
            for (n, t) in running_stats(&m) {
                let mut e = expected[&n].shallow_clone();
                e += t / k as f64;
            }
        }
        set_running_stats(&m, &start);
        forward_backward(&m, &b, &config(k as usize), 4, None).unwrap();
        let got = take_grads(&m);
        for (n, t) in running_stats(&m) {
            let r = rel_diff(&t, &expected[&n]);
            assert!(
                r < 1e-6,
                "accum_steps = {k}: {n} moved differently ({r:.1e})"
            );
            assert!(!t.equal(&start[&n]), "accum_steps = {k}: {n} did not move");
        }
        // BatchNorm normalises each micro-batch by itself, in both passes: the gradient is
        // that of the loss on features computed micro-batch by micro-batch.
        set_running_stats(&m, &start);
        let want = reference_grads(&m, &b, k, 4);
        assert_same_grads(&got, &want, &format!("ResNet, accum_steps = {k}"));
    }
}

/// CPU bf16 autocast while the guard lives (ATen's own switch).
struct Bf16Autocast(#[allow(dead_code)] umcl_torch_ext::runtime::AutocastGuard);

#[test]
fn prompt_label_term_under_bf16_autocast_matches_fp32() {
    let _serial = serial();
    tch::manual_seed(2);
    let b = batch();
    let emb = Tensor::randn([N, 16], (Kind::Float, Device::Cpu));
    let txt = Tensor::randn([N, 16], (Kind::Float, Device::Cpu));
    let classes = Tensor::randn([3, 16], (Kind::Float, Device::Cpu));
    let idx = Tensor::from_slice(&[0i64, 1, 2]);
    // The forward pass under autocast when `cast`, the backward pass outside it.
    let run = |cast: bool| {
        let leaf = |t: &Tensor| t.detach().copy().set_requires_grad(true);
        let (e, t, c, s) = (
            leaf(&emb),
            leaf(&txt),
            leaf(&classes),
            leaf(&Tensor::from(14.0f32).log()),
        );
        let loss = {
            let _ac = cast.then(|| {
                Bf16Autocast(
                    umcl_torch_ext::runtime::autocast(Device::Cpu, Kind::BFloat16).unwrap(),
                )
            });
            if cast {
                let probe = emb.matmul(&classes.tr());
                assert_eq!(probe.kind(), Kind::BFloat16, "autocast is on");
            }
            prompt_label_loss(
                &[
                    (&e, &rows_where(&b.has_image, Device::Cpu)),
                    (&t, &rows_where(&b.has_text, Device::Cpu)),
                ],
                &c,
                &b.labels,
                &idx,
                &s,
            )
            .unwrap()
        };
        loss.backward();
        (loss.detach(), [e.grad(), t.grad(), c.grad(), s.grad()])
    };
    let (loss, grads) = run(false);
    let (loss_ac, grads_ac) = run(true);
    assert_eq!(loss_ac.kind(), Kind::Float);
    assert!(rel_diff(&loss_ac, &loss) < 1e-5);
    for (g_ac, g) in grads_ac.iter().zip(&grads) {
        assert!(rel_diff(g_ac, g) < 1e-5, "{}", rel_diff(g_ac, g));
    }
}
