//! The losses against the committed PyTorch reference: `tests/reference/make_fixtures.py`
//! wrote `tests/fixtures/*.safetensors` (inputs, loss, gradients, diagnostics) and
//! `cases.json` (configs). Every case is checked dense and chunked (chunks of 5 rows, so the
//! 12-row batch ends with a partial chunk).

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Kind, Tensor};
use umcl_losses::{clip_loss, itl_loss, ItlLossConfig, LabelSimilarity, Target, UncertainPolicy};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(name: &str) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixtures().join(format!("{name}.safetensors")))
        .unwrap()
        .into_iter()
        .collect()
}

fn config(case: &serde_json::Value, chunk_size: Option<usize>) -> ItlLossConfig {
    let s = |k: &str| case[k].as_str().unwrap().to_string();
    ItlLossConfig {
        target: match s("target").as_str() {
            "identity" => Target::Identity,
            "multi_positive" => Target::MultiPositive,
            "soft" => Target::Soft,
            t => panic!("unknown target {t}"),
        },
        similarity: match s("similarity").as_str() {
            "jaccard" => LabelSimilarity::Jaccard,
            "cosine" => LabelSimilarity::Cosine,
            t => panic!("unknown similarity {t}"),
        },
        uncertain: match s("uncertain").as_str() {
            "ignore" => UncertainPolicy::Ignore,
            "as_positive" => UncertainPolicy::AsPositive,
            "as_negative" => UncertainPolicy::AsNegative,
            t => panic!("unknown policy {t}"),
        },
        label_temperature: case["label_temperature"].as_f64().unwrap(),
        false_negative_threshold: case["threshold"].as_f64(),
        image_to_text_weight: case["w_it"].as_f64().unwrap(),
        text_to_image_weight: case["w_ti"].as_f64().unwrap(),
        chunk_size,
        check_labels: true,
    }
}

/// Largest absolute difference, in f64.
fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double))
        .abs()
        .max()
        .double_value(&[])
}

fn leaf(t: &Tensor) -> Tensor {
    t.detach().copy().set_requires_grad(true)
}

/// Checks a computed loss and the gradients of its three leaves against the fixture keys
/// `{prefix}loss`, `{prefix}grad_img`, ...
fn check(
    name: &str,
    fx: &HashMap<String, Tensor>,
    prefix: &str,
    loss: &Tensor,
    leaves: [&Tensor; 3],
    tol: (f64, f64),
) {
    let (loss_tol, grad_tol) = tol;
    let d = max_diff(&loss.reshape([1]), &fx[&format!("{prefix}loss")]);
    assert!(d <= loss_tol, "{name}: {prefix}loss differs by {d}");
    for (leaf, key) in leaves
        .iter()
        .zip(["grad_img", "grad_txt", "grad_logit_scale"])
    {
        let d = max_diff(&leaf.grad(), &fx[&format!("{prefix}{key}")]);
        assert!(d <= grad_tol, "{name}: {prefix}{key} differs by {d}");
    }
}

#[test]
fn every_case_matches_the_pytorch_reference_dense_and_chunked() {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = cases.as_array().unwrap();
    assert_eq!(cases.len(), 7, "every case of make_fixtures.py is checked");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let fx = load(name);
        // fp64 cases compute in fp64: agreement to rounding. The bf16 case computes in fp32 and
        // its feature gradients are rounded to bf16 (8 significant bits) on the way out.
        let tol = if case["dtype"] == "bfloat16" {
            (1e-5, 4e-3)
        } else {
            (1e-12, 1e-12)
        };
        for chunk in [None, Some(5)] {
            let (img, txt, ls) = (leaf(&fx["img"]), leaf(&fx["txt"]), leaf(&fx["logit_scale"]));
            let out = itl_loss(&img, &txt, &fx["labels"], &ls, &config(case, chunk)).unwrap();
            out.loss.backward();
            let label = format!("{name} chunk {chunk:?}");
            check(&label, &fx, "", &out.loss, [&img, &txt, &ls], tol);
            let diag = out.diagnostics();
            assert_eq!(
                diag.masked_pairs,
                fx["masked_pairs"].int64_value(&[0]),
                "{label}"
            );
            assert_eq!(
                diag.labeled_rows,
                fx["labeled_rows"].int64_value(&[0]),
                "{label}"
            );
            let positives = fx["positives"].int64_value(&[0]) as f64 / 12.0;
            assert!(
                (diag.mean_positives_per_row - positives).abs() < 1e-12,
                "{label}"
            );
        }
        if fx.contains_key("clip_loss") {
            let (img, txt, ls) = (leaf(&fx["img"]), leaf(&fx["txt"]), leaf(&fx["logit_scale"]));
            let loss = clip_loss(&img, &txt, &ls).unwrap();
            loss.backward();
            check(name, &fx, "clip_", &loss, [&img, &txt, &ls], tol);
        }
    }
}

/// The prompt-label term against `tests/reference/make_prompt_label_fixture.py`, which
/// decides every weight sample by sample in Python: loss and all four gradients in fp64, and
/// the fp32 path within fp32 rounding.
#[test]
fn prompt_label_term_matches_the_pytorch_reference() {
    let fx = load("prompt_label");
    let run = |kind: Kind| {
        let [img, txt, classes, scale] =
            ["image", "text", "classes", "logit_scale"].map(|k| leaf(&fx[k].to_kind(kind)));
        let loss = umcl_losses::prompt_label_loss(
            &[(&img, &fx["image_rows"]), (&txt, &fx["text_rows"])],
            &classes,
            &fx["labels"],
            &fx["class_index"],
            &scale,
        )
        .unwrap();
        loss.backward();
        (loss, [img.grad(), txt.grad(), classes.grad(), scale.grad()])
    };
    for (kind, tol) in [(Kind::Double, 1e-10), (Kind::Float, 1e-5)] {
        let (loss, grads) = run(kind);
        assert_eq!(loss.kind(), kind);
        let d = max_diff(&loss, &fx["loss"]);
        assert!(d < tol, "{kind:?}: loss differs by {d}");
        for (grad, key) in grads.iter().zip([
            "grad_image",
            "grad_text",
            "grad_classes",
            "grad_logit_scale",
        ]) {
            let d = max_diff(grad, &fx[key]);
            assert!(d < tol, "{kind:?}: {key} differs by {d}");
        }
    }
}
