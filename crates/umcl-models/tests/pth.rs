//! The `.pth` reader against checkpoints written by `torch.save` (fixtures from
//! tests/reference/export_pth.py): both formats, ten dtypes, shared storages, non-contiguous
//! views, nested training checkpoints, and files it must refuse.

use std::path::{Path, PathBuf};

use tch::{Kind, Tensor};
use umcl_models::import::{import_weights, read_weights, KeyAction};
use umcl_models::pth::{read_pth, sniff, Format};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pth")
        .join(name)
}

/// Every tensor of `got` equals the expected one of the same name, in the same order, with
/// the same dtype and shape.
fn assert_same(got: &[(String, Tensor)], expected: &str) {
    let want = Tensor::read_safetensors(fixture(expected)).unwrap();
    let mut want_names: Vec<&str> = want.iter().map(|(n, _)| n.as_str()).collect();
    let mut got_names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    want_names.sort();
    got_names.sort();
    assert_eq!(got_names, want_names);
    for (name, t) in got {
        let (_, w) = want.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(t.kind(), w.kind(), "{name}");
        assert_eq!(t.size(), w.size(), "{name}");
        assert!(t.equal(w), "{name}: {t} vs {w}");
    }
}

#[test]
fn both_formats_give_every_dtype_shared_storage_and_view() {
    for file in ["dtypes.zip.pth", "dtypes.legacy.pth"] {
        let got = read_pth(&fixture(file)).unwrap();
        assert_same(&got, "dtypes.expected.safetensors");
        // File order is kept.
        assert_eq!(got[0].0, "f32", "{file}");
        assert_eq!(got.last().unwrap().0, "shared.cols", "{file}");
        // The views keep PyTorch's strides (they are views, not copies).
        let t = &got.iter().find(|(n, _)| n == "shared.t").unwrap().1;
        assert_eq!(t.stride(), vec![1, 5], "{file}");
        assert!(!t.is_contiguous());
    }
    assert_eq!(
        sniff(&fixture("dtypes.zip.pth")).unwrap(),
        Some(Format::Zip)
    );
    assert_eq!(
        sniff(&fixture("dtypes.legacy.pth")).unwrap(),
        Some(Format::Legacy)
    );
}

#[test]
fn protocol_4_and_nested_checkpoints_are_read() {
    assert_same(
        &read_pth(&fixture("protocol4.zip.pth")).unwrap(),
        "protocol4.expected.safetensors",
    );
    assert_same(
        &read_pth(&fixture("nested.zip.pth")).unwrap(),
        "nested.expected.safetensors",
    );
}

#[test]
fn foreign_objects_and_code_are_refused_by_name() {
    let err = read_pth(&fixture("foreign.zip.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`argparse.Namespace`"), "{err}");
    assert!(err.contains("foreign.zip.pth"), "{err}");
    let err = read_pth(&fixture("code.legacy.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`posix.system`"), "{err}");
    assert!(err.contains("never runs code"), "{err}");
    let err = read_pth(&fixture("module.zip.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`torch.nn.modules.linear.Linear`"), "{err}");
}

#[test]
fn damaged_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for (file, keep) in [
        ("dtypes.zip.pth", 3000),
        ("dtypes.legacy.pth", 2000),
        ("dtypes.legacy.pth", 100),
    ] {
        let bytes = std::fs::read(fixture(file)).unwrap();
        let cut = dir.path().join(format!("cut-{keep}-{file}"));
        std::fs::write(&cut, &bytes[..keep]).unwrap();
        let err = read_pth(&cut).unwrap_err().to_string();
        assert!(err.contains(&cut.display().to_string()), "{err}");
        assert!(err.contains("not a readable PyTorch checkpoint"), "{err}");
    }
    let text = dir.path().join("notes.pth");
    std::fs::write(&text, "hello").unwrap();
    let err = read_pth(&text).unwrap_err().to_string();
    assert!(err.contains("neither a torch zip archive"), "{err}");
    let err = read_pth(&dir.path().join("absent.pth"))
        .unwrap_err()
        .to_string();
    assert!(err.ends_with("absent.pth: no such file"), "{err}");
}

#[test]
fn read_weights_takes_either_format_by_content() {
    let dir = tempfile::tempdir().unwrap();
    // A .bin name on a zip checkpoint: the content decides, not the extension.
    let bin = dir.path().join("pytorch_model.bin");
    std::fs::copy(fixture("protocol4.zip.pth"), &bin).unwrap();
    assert_same(
        &read_weights(&bin).unwrap(),
        "protocol4.expected.safetensors",
    );
    assert_same(
        &read_weights(&fixture("protocol4.expected.safetensors")).unwrap(),
        "protocol4.expected.safetensors",
    );
}

#[test]
fn a_pth_file_imports_like_safetensors() {
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let root = vs.root();
    let _ = tch::nn::linear(&root / "net" / "layer", 3, 2, Default::default());
    let map = |k: &str| KeyAction::Load(k.to_string());
    let report = import_weights(&vs, "net.", &fixture("nested.zip.pth"), &map, false).unwrap();
    assert!(report.is_complete(), "{report}");
    let want = Tensor::read_safetensors(fixture("nested.expected.safetensors")).unwrap();
    let w = &want.iter().find(|(n, _)| n == "layer.weight").unwrap().1;
    assert!(vs.variables()["net.layer.weight"].equal(w));
    assert_eq!(vs.variables()["net.layer.weight"].kind(), Kind::Float);
}

#[test]
fn a_compressed_record_is_refused() {
    use std::io::{Read, Write};
    // dtypes.zip.pth re-packed with its records deflated (torch never compresses them).
    let mut src =
        zip::ZipArchive::new(std::fs::File::open(fixture("dtypes.zip.pth")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let packed = dir.path().join("deflated.pth");
    let mut out = zip::ZipWriter::new(std::fs::File::create(&packed).unwrap());
    let deflated =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).unwrap();
        out.start_file(f.name(), deflated).unwrap();
        out.write_all(&bytes).unwrap();
    }
    out.finish().unwrap();
    let err = read_pth(&packed).unwrap_err().to_string();
    assert!(err.contains("is compressed"), "{err}");
}
