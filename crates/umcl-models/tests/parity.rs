//! Parity with PyTorch: each encoder loads the weights that
//! `tests/reference/export_weights.py` exported from torchvision, timm or transformers and must
//! reproduce that library's outputs for the same inputs (fp32, CPU, eval mode) within 1e-4.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};
use umcl_models::bert::{bert_keys, Bert, BertConfig, Pooling};
use umcl_models::import::{import_safetensors, import_tensors, read_safetensors};
use umcl_models::resnet::{torchvision_keys, ResNet, ResNetConfig};
use umcl_models::vit::{hf_vit_to_timm, timm_keys, Vit, VitConfig};

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn io(dir: &Path, name: &str) -> HashMap<String, Tensor> {
    read_safetensors(&dir.join(format!("{name}.io.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

/// Max absolute difference, asserted below `TOL`; returns it for the printed record.
fn check(what: &str, got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.size(), want.size(), "{what}: shape");
    let diff = (got - want).abs().max().double_value(&[]);
    println!("{what}: max abs diff {diff:.3e}");
    assert!(diff <= TOL, "{what}: max abs diff {diff} > {TOL}");
    diff
}

fn bert_from(dir: &Path, name: &str) -> (nn::VarStore, Bert) {
    let config = BertConfig::from_file(&dir.join(format!("{name}.json"))).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let bert = Bert::new(&vs.root(), &config).unwrap();
    let report = import_safetensors(
        &vs,
        &dir.join(format!("{name}.safetensors")),
        &bert_keys,
        false,
    )
    .unwrap();
    assert!(report.is_complete(), "{report}");
    // The pooler is ignored on purpose (and the position_ids buffer, which older files hold).
    assert!(report.ignored.contains(&"pooler.dense.weight".to_string()));
    assert!(report
        .ignored
        .iter()
        .all(|k| k.starts_with("pooler.") || k.ends_with("position_ids")));
    (vs, bert)
}

fn bert_parity(dir: &Path, name: &str) {
    let (_vs, bert) = bert_from(dir, name);
    let io = io(dir, name);
    let ids = &io["in.input_ids"];
    let mask = &io["in.attention_mask"];
    let out = bert.forward_ids(ids, mask, false).unwrap();
    check(
        &format!("{name} last_hidden_state"),
        &out.last_hidden_state,
        &io["out.last_hidden_state"],
    );
    for (i, h) in out.hidden_states.iter().enumerate() {
        check(
            &format!("{name} hidden_states.{i}"),
            h,
            &io[&format!("out.hidden_states.{i}")],
        );
    }
    check(
        &format!("{name} cls"),
        &bert.pool(&out, Pooling::Cls).unwrap(),
        &io["out.cls"],
    );
    check(
        &format!("{name} mean"),
        &bert.pool(&out, Pooling::Mean).unwrap(),
        &io["out.mean"],
    );
    check(
        &format!("{name} mean_last_2"),
        &bert.pool(&out, Pooling::MeanLastK(2)).unwrap(),
        &io["out.mean_last_2"],
    );
    let out = bert
        .forward_embeds(&io["in.inputs_embeds"], mask, false)
        .unwrap();
    check(
        &format!("{name} inputs_embeds"),
        &out.last_hidden_state,
        &io["out.embeds_last_hidden_state"],
    );
}

#[test]
fn bert_matches_transformers() {
    bert_parity(&fixtures(), "bert_tiny");
}

#[test]
fn bert_loads_prefixed_legacy_keys() {
    // The same weights under `module.bert.` with gamma/beta LayerNorm names, as older
    // checkpoints write them, load into the same model and give the same output.
    let dir = fixtures();
    let tensors = read_safetensors(&dir.join("bert_tiny.safetensors")).unwrap();
    let renamed: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(k, v)| {
            let k = k
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("module.bert.{k}"), v)
        })
        .collect();
    let config = BertConfig::from_file(&dir.join("bert_tiny.json")).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let bert = Bert::new(&vs.root(), &config).unwrap();
    let report = import_tensors(&vs, renamed, Path::new("renamed"), &bert_keys, false).unwrap();
    assert!(report.is_complete());
    let io = io(&dir, "bert_tiny");
    let out = bert
        .forward_ids(&io["in.input_ids"], &io["in.attention_mask"], false)
        .unwrap();
    check(
        "bert_tiny legacy keys",
        &out.last_hidden_state,
        &io["out.last_hidden_state"],
    );
}

#[test]
fn bert_rejects_a_file_of_another_size() {
    let dir = fixtures();
    let config = BertConfig {
        num_hidden_layers: 3,
        ..BertConfig::from_file(&dir.join("bert_tiny.json")).unwrap()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _bert = Bert::new(&vs.root(), &config).unwrap();
    let err = import_safetensors(&vs, &dir.join("bert_tiny.safetensors"), &bert_keys, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("16 missing: encoder.layer.2."), "{err}");
    let wider = BertConfig {
        intermediate_size: 256,
        ..BertConfig::from_file(&dir.join("bert_tiny.json")).unwrap()
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _bert = Bert::new(&vs.root(), &wider).unwrap();
    let err = import_safetensors(&vs, &dir.join("bert_tiny.safetensors"), &bert_keys, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("6 shape-mismatched"), "{err}");
}

#[test]
fn fp16_file_keeps_the_model_fp32() {
    let dir = fixtures();
    let tensors: Vec<(String, Tensor)> = read_safetensors(&dir.join("bert_tiny.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let v = if v.is_floating_point() {
                v.to_kind(Kind::Half)
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let config = BertConfig::from_file(&dir.join("bert_tiny.json")).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let bert = Bert::new(&vs.root(), &config).unwrap();
    let report = import_tensors(&vs, tensors, Path::new("half"), &bert_keys, false).unwrap();
    assert!(report
        .converted
        .iter()
        .all(|(_, from, to)| *from == Kind::Half && *to == Kind::Float));
    assert_eq!(report.converted.len(), report.loaded.len());
    assert!(vs.variables().values().all(|v| v.kind() == Kind::Float));
    // And it still computes what transformers computed (within fp16 rounding of the weights).
    let io = io(&dir, "bert_tiny");
    let out = bert
        .forward_ids(&io["in.input_ids"], &io["in.attention_mask"], false)
        .unwrap();
    assert_eq!(out.last_hidden_state.kind(), Kind::Float);
    let diff = (&out.last_hidden_state - &io["out.last_hidden_state"])
        .abs()
        .max()
        .double_value(&[]);
    assert!(
        diff > 0.0 && diff < 0.05,
        "fp16-rounded weights: diff {diff}"
    );
}

/// Full sizes, on demand: `export_weights.py --full`, then
/// `UMCL_PARITY_FULL=1 cargo test -p umcl-models --release --test parity full_size -- --nocapture`.
#[test]
fn full_size() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/parity-full");
    if std::env::var_os("UMCL_PARITY_FULL").is_none() || !dir.is_dir() {
        eprintln!(
            "skipping full-size parity: set UMCL_PARITY_FULL=1 after running export_weights.py --full ({})",
            dir.display()
        );
        return;
    }
    bert_parity(&dir, "bert_base");
    resnet_parity(&dir, "resnet18", ResNetConfig::resnet18());
    resnet_parity(&dir, "resnet50", ResNetConfig::resnet50());
    vit_parity(&dir, "vit_base", VitConfig::base(), &[224, 384]);
}

fn resnet_parity(dir: &Path, name: &str, config: ResNetConfig) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = ResNet::new(&vs.root(), &config).unwrap();
    let report = import_safetensors(
        &vs,
        &dir.join(format!("{name}.safetensors")),
        &torchvision_keys,
        false,
    )
    .unwrap();
    assert!(report.is_complete(), "{report}");
    // fc.weight, fc.bias and one num_batches_tracked per BatchNorm are ignored on purpose.
    assert!(report.ignored.contains(&"fc.weight".to_string()));
    assert!(report
        .ignored
        .iter()
        .all(|k| k.starts_with("fc.") || k.ends_with("num_batches_tracked")));
    let io = io(dir, name);
    let f = model.forward_t(&io["in.images"], false).unwrap();
    check(&format!("{name} grid"), &f.local, &io["out.grid"]);
    check(&format!("{name} pooled"), &f.pooled, &io["out.pooled"]);
}

fn resnet_fixture_config(name: &str) -> ResNetConfig {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn resnet18_structure_matches_torchvision() {
    resnet_parity(
        &fixtures(),
        "resnet18_w8",
        resnet_fixture_config("resnet18_w8"),
    );
}

#[test]
fn resnet50_structure_matches_torchvision() {
    resnet_parity(
        &fixtures(),
        "resnet50_w8",
        resnet_fixture_config("resnet50_w8"),
    );
}

#[test]
fn resnet_rejects_the_wrong_block_type() {
    // Bottleneck weights into a basic-block model: missing and unexpected keys, never silent.
    let config = ResNetConfig {
        block: umcl_models::resnet::Block::Basic,
        ..resnet_fixture_config("resnet50_w8")
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = ResNet::new(&vs.root(), &config).unwrap();
    let err = import_safetensors(
        &vs,
        &fixtures().join("resnet50_w8.safetensors"),
        &torchvision_keys,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("unexpected: layer1.0.bn3.bias"), "{err}");
    assert!(err.contains("shape-mismatched"), "{err}");
}

fn vit_parity(dir: &Path, name: &str, config: VitConfig, sizes: &[i64]) {
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Vit::new(&vs.root(), &config).unwrap();
    let report = import_safetensors(
        &vs,
        &dir.join(format!("{name}.safetensors")),
        &timm_keys,
        false,
    )
    .unwrap();
    assert!(report.is_complete(), "{report}");
    let io = io(dir, name);
    for s in sizes {
        let f = model
            .forward_t(&io[&format!("in.images_{s}")], false)
            .unwrap();
        let tokens = &io[&format!("out.tokens_{s}")];
        let n = tokens.size()[1];
        check(
            &format!("{name} {s}px pooled"),
            &f.pooled,
            &io[&format!("out.pooled_{s}")],
        );
        check(
            &format!("{name} {s}px patch tokens"),
            &f.local,
            &tokens.narrow(1, 1, n - 1),
        );
    }
}

#[test]
fn vit_matches_timm_with_resampled_positions() {
    let text = std::fs::read_to_string(fixtures().join("vit_tiny_d2.json")).unwrap();
    let config: VitConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(config.embed_dim, VitConfig::tiny().embed_dim);
    // 32 px is the configured size; 48 px resamples the 2x2 position grid to 3x3.
    vit_parity(&fixtures(), "vit_tiny_d2", config, &[32, 48]);
}

#[test]
fn vit_loads_hugging_face_files() {
    let dir = fixtures();
    let config = VitConfig {
        image_size: 32,
        patch_size: 16,
        in_channels: 3,
        embed_dim: 64,
        depth: 2,
        num_heads: 4,
        mlp_ratio: 2.0,
        layer_norm_eps: 1e-12,
    };
    let vs = nn::VarStore::new(Device::Cpu);
    let model = Vit::new(&vs.root(), &config).unwrap();
    let tensors = read_safetensors(&dir.join("hf_vit_tiny.safetensors")).unwrap();
    let (tensors, dropped) = hf_vit_to_timm(tensors).unwrap();
    assert_eq!(dropped, vec!["pooler.dense.bias", "pooler.dense.weight"]);
    let report = import_tensors(&vs, tensors, Path::new("hf_vit_tiny"), &timm_keys, false).unwrap();
    assert!(report.is_complete(), "{report}");
    let io = io(&dir, "hf_vit_tiny");
    let f = model.forward_t(&io["in.images"], false).unwrap();
    check("hf_vit_tiny pooled", &f.pooled, &io["out.pooled"]);
    let tokens = &io["out.tokens"];
    check(
        "hf_vit_tiny patch tokens",
        &f.local,
        &tokens.narrow(1, 1, tokens.size()[1] - 1),
    );
}
