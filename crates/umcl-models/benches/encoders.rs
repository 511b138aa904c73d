//! Forward and forward+backward time of each encoder on the CPU (2 intra-op threads), random
//! weights, fp32, at the sizes of the training presets in `crates/umcl-train/data/configs/`:
//!
//! - `phantom-cpu`: ResNet-18 at width 16 on 64 px and BERT with 2 layers of 128 on 48 tokens,
//!   batch 64;
//! - the MIMIC presets (GPU runs, measured here at batch 2 so the suite stays short):
//!   ResNet-50 and ViT-B/16 at 224 px, BERT-base at 128 tokens.
//!
//! `cargo xtask bench models`; numbers in docs/benchmarks.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tch::{nn, Device, Kind, Tensor};
use umcl_models::bert::{Bert, BertConfig, Pooling};
use umcl_models::image::{ImageEncoder, ImageEncoderConfig};
use umcl_models::resnet::ResNetConfig;
use umcl_models::vit::VitConfig;

fn image(c: &mut Criterion, name: &str, config: ImageEncoderConfig, batch: i64, size: i64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ImageEncoder::new(&vs.root(), &config).unwrap();
    let x = Tensor::randn([batch, 3, size, size], (Kind::Float, Device::Cpu));
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("forward", |b| {
        b.iter(|| {
            let _guard = tch::no_grad_guard();
            model.forward_t(&x, false).unwrap().pooled
        })
    });
    g.bench_function("forward+backward", |b| {
        b.iter(|| {
            let f = model.forward_t(&x, true).unwrap();
            f.pooled.square().sum(Kind::Float).backward();
        })
    });
    g.finish();
}

fn text(c: &mut Criterion, name: &str, config: BertConfig, batch: i64, seq: i64) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Bert::new(&vs.root(), &config).unwrap();
    let ids = Tensor::randint(config.vocab_size, [batch, seq], (Kind::Int64, Device::Cpu));
    let mask = ids.ones_like();
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    g.bench_function("forward", |b| {
        b.iter(|| {
            let _guard = tch::no_grad_guard();
            let out = model.forward_ids(&ids, &mask, false).unwrap();
            model.pool(&out, Pooling::Mean).unwrap()
        })
    });
    g.bench_function("forward+backward", |b| {
        b.iter(|| {
            let out = model.forward_ids(&ids, &mask, true).unwrap();
            let pooled = model.pool(&out, Pooling::Mean).unwrap();
            pooled.square().sum(Kind::Float).backward();
        })
    });
    g.finish();
}

fn encoders(c: &mut Criterion) {
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let resnet18_w16 = ResNetConfig {
        width: 16,
        ..ResNetConfig::resnet18()
    };
    let bert_l2_h128 = BertConfig {
        hidden_size: 128,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 512,
        ..BertConfig::base()
    };
    image(
        c,
        "phantom_resnet18_w16_b64_64px",
        ImageEncoderConfig::Resnet(resnet18_w16),
        64,
        64,
    );
    text(c, "phantom_bert_l2_h128_b64_t48", bert_l2_h128, 64, 48);
    image(
        c,
        "mimic_resnet50_b2_224px",
        ImageEncoderConfig::Resnet(ResNetConfig::resnet50()),
        2,
        224,
    );
    image(
        c,
        "mimic_vit_b16_b2_224px",
        ImageEncoderConfig::Vit(VitConfig::base()),
        2,
        224,
    );
    text(c, "mimic_bert_base_b2_t128", BertConfig::base(), 2, 128);
}

criterion_group!(benches, encoders);
criterion_main!(benches);
