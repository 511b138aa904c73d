//! `umcl prompts explain`: a dual encoder whose shared context was initialised from the phrase
//! "a chest x-ray of" must be read back as exactly those words (distance 0), in order.

mod common;

use std::path::Path;
use std::process::Command;

use tch::Device;
use umcl_data::tokenize::Tokenizer;
use umcl_models::bert::BertConfig;
use umcl_models::dual::{ClassName, DualConfig, DualEncoder};
use umcl_models::image::ImageEncoderConfig;
use umcl_models::prompt::PromptConfig;
use umcl_models::resnet::ResNetConfig;

#[test]
fn explain_reads_a_phrase_initialised_context_back() {
    let Some(tok_path) = common::tokenizer() else {
        return;
    };
    let tok = Tokenizer::from_file(&tok_path, 64).unwrap();
    let phrase = tok.encode_plain("a chest x-ray of").unwrap();
    let mut config = DualConfig::new(
        ImageEncoderConfig::Resnet(ResNetConfig {
            width: 4,
            layers: [1, 1, 1, 1],
            ..ResNetConfig::resnet18()
        }),
        BertConfig {
            hidden_size: 16,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 32,
            ..BertConfig::base()
        },
    );
    config.embed_dim = 8;
    config.prompt = Some(PromptConfig {
        init_phrase_ids: Some(phrase.clone()),
        ..Default::default()
    });
    config.classes = vec![ClassName {
        name: "effusion".into(),
        token_ids: tok.encode_plain("effusion").unwrap(),
    }];
    config.tokenizer = Some(tok_path.clone());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_prompts");
    std::fs::create_dir_all(&dir).unwrap();
    let ckpt = dir.join("model.safetensors");
    DualEncoder::new(&config, Device::Cpu)
        .unwrap()
        .save(&ckpt)
        .unwrap();

    let o = Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(["prompts", "explain"])
        .arg(&ckpt)
        .args(["--top", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "shared context:");
    // "a chest x-ray of" is 6 word pieces: a, chest, x, -, ray, of.
    let expected = ["a", "chest", "x", "-", "ray", "of"];
    assert_eq!(phrase.len(), expected.len());
    for (i, word) in expected.iter().enumerate() {
        assert_eq!(
            lines[i + 1],
            format!("  v{:<3} {word} (0.000)", i + 1),
            "{stdout}"
        );
    }
}

#[test]
fn explain_without_config_names_the_file() {
    let o = Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(["prompts", "explain", "/nonexistent/model.safetensors"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/model.json"), "{err}");
}
