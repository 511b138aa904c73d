//! The bad-input corpus (`tests/corpus/`) and a sweep of every subcommand over it.
//!
//! The corpus is made by [`write_corpus`] below: damaged, truncated and bomb images; CSV and
//! JSON Lines files with a byte-order mark, CRLF line ends, latin-1 bytes, embedded newlines,
//! ragged rows, bad label values and misspelt field names; broken manifests; bad configs; a
//! split made for another manifest. `the_committed_corpus_is_what_the_generator_makes` keeps
//! the committed files and the generator in step (`UMCL_REGENERATE_CORPUS=1` rewrites them).
//!
//! The sweep asserts, for every case: no exit status 101 and no "panicked"; the expected
//! outcome (an error, or success with counted skips where `--skip-bad` asked for them); and a
//! message naming the file with its line, or the key.

use std::path::{Path, PathBuf};
use std::process::Output;

use image::{codecs::jpeg::JpegEncoder, ExtendedColorType, ImageEncoder};

mod common;
use common::{tokenizer, umcl};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// A `w` x `h` grayscale or RGB JPEG with some structure.
fn jpeg(w: u32, h: u32, colour: bool) -> Vec<u8> {
    let channels = if colour { 3 } else { 1 };
    let pixels: Vec<u8> = (0..w * h * channels)
        .map(|i| ((i * 7919) % 251) as u8)
        .collect();
    let mut out = Vec::new();
    let kind = if colour {
        ExtendedColorType::Rgb8
    } else {
        ExtendedColorType::L8
    };
    JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(&pixels, w, h, kind)
        .unwrap();
    out
}

/// A PNG chunk with its CRC.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

/// An 8-bit grayscale PNG of `w` x `h` whose data is `rows` (None: one tiny empty chunk).
fn png(w: u32, h: u32, rows: Option<&[u8]>) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let data = match rows {
        Some(rows) => {
            use std::io::Write;
            let mut raw = Vec::new();
            for row in rows.chunks(w as usize) {
                raw.push(0); // filter: none
                raw.extend_from_slice(row);
            }
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(&raw).unwrap();
            z.finish().unwrap()
        }
        None => vec![0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    };
    chunk(&mut out, b"IDAT", &data);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// `bytes` with the JPEG frame header's size set to `w` x `h`.
fn claim_jpeg_size(bytes: &[u8], w: u16, h: u16) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let sof = out.windows(2).position(|m| m == [0xFF, 0xC0]).unwrap();
    out[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    out[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    out
}

/// Every file of the corpus: (path relative to the corpus folder, bytes).
fn corpus_files() -> Vec<(&'static str, Vec<u8>)> {
    let gray = jpeg(64, 64, false);
    let colour = jpeg(64, 64, true);
    let good_png = png(
        32,
        32,
        Some(&(0..32 * 32).map(|i| (i % 256) as u8).collect::<Vec<_>>()),
    );
    let header = r#"{"format":"umcl-manifest","version":1,"schema":"chest-xray","keys":["no_finding","enlarged_cardiomediastinum","cardiomegaly","lung_opacity","lung_lesion","edema","consolidation","pneumonia","atelectasis","pneumothorax","pleural_effusion","pleural_other","fracture","support_devices","emphysema","fibrosis","hernia"]}"#;
    let sample = |id: &str, image: &str| {
        format!(
            r#"{{"id":"{id}","source":"corpus","image":"{image}","text":"Clear lungs.","labels":{{}}}}"#
        )
    };
    let mut files: Vec<(&'static str, Vec<u8>)> = vec![
        // Images.
        ("images/ok.png", good_png.clone()),
        ("images/ok.jpg", gray.clone()),
        ("images/truncated-half.jpg", gray[..gray.len() / 2].to_vec()),
        ("images/truncated-400.jpg", gray[..400].to_vec()),
        ("images/truncated-colour.jpg", colour[..colour.len() / 2].to_vec()),
        ("images/truncated.png", good_png[..good_png.len() / 2].to_vec()),
        ("images/bomb-gray.jpg", claim_jpeg_size(&gray, 65000, 65000)),
        ("images/bomb-colour.jpg", claim_jpeg_size(&colour, 65000, 65000)),
        ("images/bomb.png", png(60000, 60000, None)),
        ("images/empty.png", Vec::new()),
        ("images/text.png", b"this is not an image\n".to_vec()),
        // CSV (the generic adapter: case, file, report, Edema).
        ("csv/ok.csv", b"case,file,report,Edema\nc1,../images/ok.png,Clear.,0\n".to_vec()),
        ("csv/bom.csv", b"\xEF\xBB\xBFcase,file,report,Edema\nc1,../images/ok.png,Clear.,0\n".to_vec()),
        (
            "csv/crlf-multiline.csv",
            b"case,file,report,Edema\r\nc1,../images/ok.png,\"two\r\nlines\",1\r\nc2,../images/ok.png,ok,7\r\n"
                .to_vec(),
        ),
        ("csv/latin1.csv", b"case,file,report,Edema\nc1,../images/ok.png,r\xE9sum\xE9,0\n".to_vec()),
        ("csv/ragged.csv", b"case,file,report,Edema\nc1,../images/ok.png\n".to_vec()),
        (
            "csv/bad-labels.csv",
            b"case,file,report,Edema\nc1,../images/ok.png,a,1\nc2,../images/ok.png,b,maybe\nc3,../images/ok.png,c,9\n"
                .to_vec(),
        ),
        ("csv/missing-image.csv", b"case,file,report,Edema\nc1,../images/nowhere.png,a,1\n".to_vec()),
        // JSON Lines (the generic adapter: case, report).
        ("jsonl/bom.jsonl", b"\xEF\xBB\xBF{\"case\": \"j1\", \"report\": \"Clear.\"}\n".to_vec()),
        ("jsonl/malformed.jsonl", b"{\"case\": \"j1\", \"report\": \"ok\"}\n{\"case\": \"j2\", \"report\": \n".to_vec()),
        ("jsonl/latin1.jsonl", b"{\"case\": \"j1\", \"report\": \"r\xE9sum\xE9\"}\n".to_vec()),
        ("jsonl/not-object.jsonl", b"[1, 2, 3]\n".to_vec()),
        // Reports for `umcl label` (uid, findings, impression).
        (
            "reports/latin1.csv",
            b"uid,findings,impression\n1,Clear lungs.,Normal.\n2,Caf\xE9 opacity.,\n3,,\n".to_vec(),
        ),
        ("reports/no-text-column.csv", b"uid,notes\n1,Clear.\n".to_vec()),
        // Manifests.
        ("manifests/not-a-manifest.jsonl", b"{\"hello\": 1}\n".to_vec()),
        ("manifests/empty.jsonl", Vec::new()),
        (
            "manifests/bad-line.jsonl",
            format!("{header}\n{}\n{{\"id\": 3}}\n", sample("a", "../images/ok.png")).into_bytes(),
        ),
        (
            "manifests/bom.jsonl",
            format!("\u{feff}{header}\n{}\n", sample("a", "../images/ok.png")).into_bytes(),
        ),
        // Configs.
        ("configs/syntax.toml", b"[optim\nlr = 1\n".to_vec()),
        ("configs/unknown-key.toml", b"[optim]\nlearning_rate = 0.1\n".to_vec()),
        (
            "configs/nan.toml",
            b"[model]\ntokenizer = \"tokenizer.json\"\n[optim]\nlr = nan\n".to_vec(),
        ),
        ("configs/wrong-type.toml", b"[data]\nbatch_size = \"large\"\n".to_vec()),
        ("configs/latin1.toml", b"[run]\nname = \"r\xE9sum\xE9\"\n".to_vec()),
    ];
    // A manifest and a split made for another version of it (two samples more).
    let mut manifest = format!("{header}\n");
    for i in 0..10 {
        manifest.push_str(&sample(&format!("m{i}"), "../images/ok.png"));
        manifest.push('\n');
    }
    files.push(("splits/grown.jsonl", manifest.into_bytes()));
    let ids = |r: std::ops::Range<usize>| {
        r.map(|i| format!("\"m{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    files.push((
        "splits/grown.splits.json",
        format!(
            "{{\"format\": \"umcl-split\", \"version\": 2, \"manifest\": \"grown.jsonl\", \
             \"made_from\": {{\"samples\": 8, \"ids_hash\": \"0000000000000000\"}}, \
             \"unit\": \"patient\", \"seed\": 0, \"fractions\": [0.75, 0.25, 0.0], \
             \"patients\": {{\"train\": 6, \"val\": 2, \"test\": 0}}, \
             \"train\": [{}], \"val\": [{}], \"test\": []}}\n",
            ids(0..6),
            ids(6..8)
        )
        .into_bytes(),
    ));
    files
}

/// Writes the corpus into `dir`.
fn write_corpus(dir: &Path) {
    for (name, bytes) in corpus_files() {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn the_committed_corpus_is_what_the_generator_makes() {
    if std::env::var_os("UMCL_REGENERATE_CORPUS").is_some() {
        write_corpus(&corpus_dir());
    }
    for (name, bytes) in corpus_files() {
        let committed = std::fs::read(corpus_dir().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e} (UMCL_REGENERATE_CORPUS=1 writes it)"));
        assert!(
            committed == bytes,
            "{name} differs from the generator's (UMCL_REGENERATE_CORPUS=1 rewrites it)"
        );
    }
}

/// What a case must end with.
enum Expect {
    /// A failure whose stderr holds every needle.
    Error(&'static [&'static str]),
    /// Success whose stdout or stderr holds every needle.
    Ok(&'static [&'static str]),
}

fn check(label: &str, out: &Output, expect: &Expect) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{label}: exit 101\n{stderr}");
    assert!(!stderr.contains("panicked"), "{label}: panicked\n{stderr}");
    match expect {
        Expect::Error(needles) => {
            assert!(
                !out.status.success(),
                "{label}: accepted\n{stdout}\n{stderr}"
            );
            for n in *needles {
                assert!(stderr.contains(n), "{label}: no `{n}` in\n{stderr}");
            }
        }
        Expect::Ok(needles) => {
            assert!(out.status.success(), "{label}: failed\n{stderr}");
            for n in *needles {
                assert!(
                    stdout.contains(n) || stderr.contains(n),
                    "{label}: no `{n}` in\n{stdout}\n{stderr}"
                );
            }
        }
    }
}

#[test]
fn every_subcommand_over_the_corpus() {
    let corpus = corpus_dir();
    let work = tempfile::tempdir().unwrap();
    let c = |p: &str| corpus.join(p).to_string_lossy().into_owned();
    let out = |p: &str| work.path().join(p).to_string_lossy().into_owned();
    let generic = |input: &str, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "data",
            "prepare",
            "--source",
            "generic",
            "--id-col",
            "case",
            "--text-col",
            "report",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(["--input".into(), c(input), "--out".into(), out("m.jsonl")]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let csv_cols = ["--image-col", "file", "--label-cols", "Edema"];
    let mut cases: Vec<(String, Vec<String>, Expect)> = vec![
        (
            "csv ok".into(),
            generic("csv/ok.csv", &csv_cols),
            Expect::Ok(&["1 samples"]),
        ),
        (
            "csv bom".into(),
            generic("csv/bom.csv", &csv_cols),
            Expect::Ok(&["1 samples"]),
        ),
        (
            "csv crlf + embedded newline".into(),
            generic("csv/crlf-multiline.csv", &csv_cols),
            Expect::Error(&["crlf-multiline.csv:4", "`7`"]),
        ),
        (
            "csv latin-1".into(),
            generic("csv/latin1.csv", &csv_cols),
            Expect::Error(&["latin1.csv:2", "UTF-8"]),
        ),
        (
            "csv ragged".into(),
            generic("csv/ragged.csv", &csv_cols),
            Expect::Error(&["ragged.csv:2"]),
        ),
        (
            "csv bad labels".into(),
            generic("csv/bad-labels.csv", &csv_cols),
            Expect::Error(&["bad-labels.csv:3", "maybe"]),
        ),
        (
            "csv bad labels, skipped".into(),
            generic(
                "csv/bad-labels.csv",
                &[&csv_cols[..], &["--skip-bad"]].concat(),
            ),
            Expect::Ok(&["skipped 2", "bad-labels.csv:3", "bad-labels.csv:4"]),
        ),
        (
            "csv missing column".into(),
            generic(
                "csv/ok.csv",
                &["--image-col", "file", "--label-cols", "Edemaa"],
            ),
            Expect::Error(&["ok.csv", "Edemaa"]),
        ),
        (
            "csv missing image".into(),
            generic("csv/missing-image.csv", &csv_cols),
            Expect::Error(&["missing-image.csv:2", "nowhere.png", "not found"]),
        ),
        (
            "jsonl bom".into(),
            generic("jsonl/bom.jsonl", &[]),
            Expect::Ok(&["1 samples"]),
        ),
        (
            "jsonl malformed".into(),
            generic("jsonl/malformed.jsonl", &[]),
            Expect::Error(&["malformed.jsonl:2", "malformed JSON"]),
        ),
        (
            "jsonl latin-1".into(),
            generic("jsonl/latin1.jsonl", &[]),
            Expect::Error(&["latin1.jsonl:1", "UTF-8"]),
        ),
        (
            "jsonl not an object".into(),
            generic("jsonl/not-object.jsonl", &[]),
            Expect::Error(&["not-object.jsonl:1", "not a JSON object"]),
        ),
        (
            "jsonl misspelt fields".into(),
            {
                let mut a = generic("jsonl/bom.jsonl", &[]);
                let i = a.iter().position(|x| x == "report").unwrap();
                a[i] = "reprot".into();
                a.extend(["--patient-col".into(), "patinet".into()]);
                a
            },
            Expect::Error(&["bom.jsonl", "`reprot`", "`patinet`"]),
        ),
        (
            "label latin-1".into(),
            vec![
                "label".into(),
                "--input".into(),
                c("reports/latin1.csv"),
                "--output".into(),
                out("l.csv"),
            ],
            Expect::Error(&["latin1.csv:3"]),
        ),
        (
            "label latin-1, skipped".into(),
            vec![
                "label".into(),
                "--input".into(),
                c("reports/latin1.csv"),
                "--output".into(),
                out("l.csv"),
                "--skip-bad".into(),
            ],
            Expect::Ok(&["skipped 1"]),
        ),
        (
            "label without the text column".into(),
            vec![
                "label".into(),
                "--input".into(),
                c("reports/no-text-column.csv"),
                "--output".into(),
                out("l.csv"),
            ],
            Expect::Error(&["no-text-column.csv", "findings"]),
        ),
        (
            "stats of a non-manifest".into(),
            vec![
                "data".into(),
                "stats".into(),
                c("manifests/not-a-manifest.jsonl"),
            ],
            Expect::Error(&["not-a-manifest.jsonl:1"]),
        ),
        (
            "stats of an empty file".into(),
            vec!["data".into(), "stats".into(), c("manifests/empty.jsonl")],
            Expect::Error(&["empty.jsonl", "empty file"]),
        ),
        (
            "stats of a bad line".into(),
            vec!["data".into(), "stats".into(), c("manifests/bad-line.jsonl")],
            Expect::Error(&["bad-line.jsonl:3"]),
        ),
        (
            "stats with a BOM".into(),
            vec!["data".into(), "stats".into(), c("manifests/bom.jsonl")],
            Expect::Ok(&["corpus"]),
        ),
        (
            "stats with a stale split".into(),
            vec!["data".into(), "stats".into(), c("splits/grown.jsonl")],
            Expect::Ok(&["in no part"]),
        ),
        (
            "split of a bad manifest".into(),
            vec![
                "data".into(),
                "split".into(),
                c("manifests/bad-line.jsonl"),
                "--out".into(),
                out("s.json"),
            ],
            Expect::Error(&["bad-line.jsonl:3"]),
        ),
        (
            "split with bad fractions".into(),
            vec![
                "data".into(),
                "split".into(),
                c("manifests/bom.jsonl"),
                "--fractions".into(),
                "0.9,0.9,nan".into(),
                "--out".into(),
                out("s.json"),
            ],
            Expect::Error(&["fraction"]),
        ),
        (
            "phantom, absurd size".into(),
            vec![
                "data".into(),
                "phantom".into(),
                "--out".into(),
                out("ph"),
                "--size".into(),
                "99999".into(),
            ],
            Expect::Error(&["at most 4096"]),
        ),
        (
            "info, no such device".into(),
            vec!["info".into(), "--device".into(), "tpu".into()],
            Expect::Error(&["tpu"]),
        ),
        (
            "bench, batch of one".into(),
            vec![
                "bench".into(),
                "step".into(),
                "--model".into(),
                "resnet50-image-only".into(),
                "--batch".into(),
                "1".into(),
                "--device".into(),
                "cpu".into(),
            ],
            Expect::Error(&["--batch >= 2"]),
        ),
    ];
    for (file, needle) in [
        ("configs/syntax.toml", "syntax.toml"),
        ("configs/unknown-key.toml", "learning_rate"),
        ("configs/nan.toml", "optim.lr"),
        ("configs/wrong-type.toml", "batch_size"),
        ("configs/latin1.toml", "latin1.toml"),
    ] {
        let needles: &'static [&'static str] = Box::leak(vec![needle].into_boxed_slice());
        cases.push((
            format!("train --config {file}"),
            vec!["train".into(), "--config".into(), c(file)],
            Expect::Error(needles),
        ));
    }
    for (label, args, expect) in &cases {
        let run = umcl().current_dir(work.path()).args(args).output().unwrap();
        check(label, &run, expect);
    }
    eprintln!("{} corpus cases checked", cases.len());
}

/// The image cases need a trained model: a tiny one on the phantom set (seconds).
#[test]
fn classify_and_train_over_the_corpus_images() {
    let Some(tok) = tokenizer() else { return };
    let work = tempfile::tempdir().unwrap();
    common::tiny_phantom(work.path());
    let cfg = work.path().join("tiny.toml");
    std::fs::write(
        &cfg,
        format!(
            "[run]\nout_dir = \"{out}\"\nname = \"m\"\nthreads = 1\nsteps = 2\nlog_every = 1\n\
             checkpoint_every = 2\nprogress = false\n[data]\nmanifest = \"{m}\"\nimage_size = 32\n\
             batch_size = 16\nworkers = 1\nmax_text_len = 24\n[model]\nimage = \"resnet18-w4\"\n\
             text_preset = \"bert-L1-H32\"\ntokenizer = \"{tok}\"\nembed_dim = 16\nprompt_ctx = 2\n\
             [eval]\nevery = 0\n",
            out = work.path().join("runs").display(),
            m = work.path().join("phantom/manifest.jsonl").display(),
            tok = tok.display()
        ),
    )
    .unwrap();
    common::ok(
        umcl()
            .args(["train", "--quiet", "--config"])
            .arg(&cfg)
            .output()
            .unwrap(),
    );
    let model = work.path().join("runs/m");
    let images = corpus_dir().join("images");
    for (file, needle) in [
        ("truncated-half.jpg", "truncated"),
        ("truncated-400.jpg", "truncated"),
        ("truncated-colour.jpg", "truncated"),
        ("truncated.png", "truncated-png"),
        ("bomb-gray.jpg", "limit"),
        ("bomb-colour.jpg", "limit"),
        ("bomb.png", "limit"),
        ("empty.png", "empty.png"),
        ("text.png", "text.png"),
    ] {
        let run = umcl()
            .args(["classify", "--checkpoint"])
            .arg(&model)
            .arg(images.join(file))
            .output()
            .unwrap();
        let needles: &'static [&'static str] = if needle == "truncated-png" {
            Box::leak(vec![file].into_boxed_slice())
        } else {
            Box::leak(vec![file, needle].into_boxed_slice())
        };
        check(&format!("classify {file}"), &run, &Expect::Error(needles));
    }
    // `umcl eval ... | true`: the reader is gone before the results are printed, and the
    // output folder is still written.
    let results = work.path().join("eval-out");
    let mut child = umcl()
        .args(["eval", "--task", "zeroshot", "--checkpoint"])
        .arg(&model)
        .arg("--manifest")
        .arg(work.path().join("phantom/eval-5x200.jsonl"))
        .arg("--output")
        .arg(&results)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let run = child.wait_with_output().unwrap();
    check("eval with a closed stdout", &run, &Expect::Ok(&[]));
    assert!(results.join("results.json").is_file());
    // A split made for another version of the manifest: refused, not evaluated on a part.
    let run = umcl()
        .args([
            "eval",
            "--task",
            "zeroshot",
            "--part",
            "val",
            "--checkpoint",
        ])
        .arg(&model)
        .arg("--manifest")
        .arg(corpus_dir().join("splits/grown.jsonl"))
        .output()
        .unwrap();
    check(
        "eval --part with a stale split",
        &run,
        &Expect::Error(&["grown.splits.json", "another version of the manifest"]),
    );
    for file in ["ok.png", "ok.jpg"] {
        let run = umcl()
            .args(["classify", "--checkpoint"])
            .arg(&model)
            .arg(images.join(file))
            .output()
            .unwrap();
        check(&format!("classify {file}"), &run, &Expect::Ok(&[]));
    }
}
