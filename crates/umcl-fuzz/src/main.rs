//! `umcl-fuzz TARGET --seconds N [--seed S] [--out DIR]`: fuzzing of umcl's input readers on
//! stable Rust, as `cargo xtask fuzz` runs it.
//!
//! No coverage feedback (that needs nightly's sanitizer coverage): inputs are the bad-input
//! corpus (`crates/umcl/tests/corpus`) and a few well-formed seeds, mutated by a seeded
//! generator (bit flips, byte and chunk insertion, deletion, duplication, truncation, splices
//! of two seeds, and "interesting" bytes and numbers). Each input goes through one reader
//! under `catch_unwind`: an error is the expected outcome, a panic is a crash. Crashing
//! inputs are written to `DIR/TARGET-N.bin`; the run prints executions, crashes and the
//! distinct panic messages, and exits 1 when anything crashed.
//!
//! `umcl-fuzz --list` prints the targets. Targets: `labeler`, `csv` (the generic CSV adapter), `jsonl` (the generic JSON Lines
//! adapter), `manifest`, `config` (the TOML config with `--set` overrides), `image` (PNG and
//! JPEG decoding with every decoder of the build), `safetensors` (weight import), `pth` (the
//! PyTorch checkpoint reader, seeded with umcl-models' checkpoint fixtures).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

const TARGETS: [&str; 8] = [
    "labeler",
    "csv",
    "jsonl",
    "manifest",
    "config",
    "image",
    "safetensors",
    "pth",
];

/// SplitMix64: the mutation stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Bytes mutators like to put in: boundaries, separators, markers.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xFF",
    b"\xFF\xD9",
    b"\xFF\xDA",
    b"\xFF\xC0",
    b"\"",
    b",",
    b"\n",
    b"\r\n",
    b"\xEF\xBB\xBF",
    b"-1",
    b"nan",
    b"inf",
    b"1e309",
    b"18446744073709551615",
    b"-9223372036854775808",
    b"[",
    b"{",
    b"}",
    b"=",
    b"\\",
    b"\xC3\x28",
    b"no ",
    b"not ",
    b"may represent ",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], max_len: usize) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(len + 1);
                let piece = INTERESTING[rng.below(INTERESTING.len())];
                data.splice(i..i, piece.iter().copied());
            }
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(64)).min(len);
                data.drain(a..b);
            }
            4 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(256)).min(len);
                let piece = data[a..b].to_vec();
                let i = rng.below(len + 1);
                data.splice(i..i, piece);
            }
            5 if len > 0 => data.truncate(rng.below(len)),
            6 => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(data.len() + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            7 if len >= 2 => {
                // Overwrite two bytes with a big-endian number (sizes, lengths).
                let i = rng.below(len - 1);
                let v = [0u16, 1, 0x7FFF, 0xFFFF, 65000][rng.below(5)].to_be_bytes();
                data[i..i + 2].copy_from_slice(&v);
            }
            _ => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next() as u8);
            }
        }
    }
    data.truncate(max_len);
    data
}

/// Every file under `dir` whose name ends with one of `exts`.
fn files(dir: &Path, exts: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            out.extend(files(&path, exts));
        } else if exts.iter().any(|e| path.to_string_lossy().ends_with(e)) {
            if let Ok(bytes) = std::fs::read(&path) {
                out.push(bytes);
            }
        }
    }
    out
}

/// The seeds of a target: corpus files plus well-formed examples.
fn seeds(target: &str, corpus: &Path, scratch: &Path) -> Result<Vec<Vec<u8>>> {
    let mut s = match target {
        "labeler" => vec![
            b"No acute cardiopulmonary process.".to_vec(),
            b"Mild cardiomegaly. No pleural effusion or pneumothorax. Possible left basilar atelectasis versus pneumonia.".to_vec(),
            b"The heart is enlarged. There may be small bilateral effusions; no edema.".to_vec(),
        ],
        "csv" => files(corpus, &[".csv"]),
        "jsonl" => files(&corpus.join("jsonl"), &[".jsonl"]),
        "manifest" => files(&corpus.join("manifests"), &[".jsonl"]),
        "config" => {
            let mut s = files(&corpus.join("configs"), &[".toml"]);
            let preset = umcl_train::config::TrainConfig::preset("phantom-cpu")?.to_toml();
            s.push(format!("{preset}\n#SET run.name=x\n#SET optim.lr=1e-3\n").into_bytes());
            s
        }
        "image" => files(&corpus.join("images"), &[".png", ".jpg"]),
        "safetensors" => {
            let path = scratch.join("seed.safetensors");
            let a = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
            let b = tch::Tensor::from_slice(&[7i64]);
            tch::Tensor::write_safetensors(&[("w", &a), ("b", &b)], &path)?;
            vec![std::fs::read(&path)?]
        }
        // torch.save's zip and legacy checkpoints, and the foreign-object and code ones.
        "pth" => files(
            &corpus.join("../../../umcl-models/tests/fixtures/pth"),
            &[".pth"],
        ),
        other => bail!("unknown target `{other}`; targets: {}", TARGETS.join(", ")),
    };
    if s.is_empty() {
        bail!("no seeds for `{target}` under {}", corpus.display());
    }
    s.sort();
    s.dedup();
    Ok(s)
}

/// Runs one input through the target's reader; errors are fine, panics propagate.
fn run_one(target: &str, data: &[u8], scratch: &Path, vs: &tch::nn::VarStore) {
    use umcl_data::schema::Schema;
    use umcl_data::sources::{generic, ReadOptions};
    let read = ReadOptions {
        skip_bad: data.len().is_multiple_of(2),
        check_images: false,
    };
    match target {
        "labeler" => {
            static LABELER: std::sync::OnceLock<umcl_data::labeler::Labeler> =
                std::sync::OnceLock::new();
            let labeler = LABELER.get_or_init(umcl_data::labeler::Labeler::builtin);
            let _ = labeler.label(&String::from_utf8_lossy(data));
        }
        "csv" | "jsonl" => {
            let path = scratch.join(if target == "csv" {
                "in.csv"
            } else {
                "in.jsonl"
            });
            std::fs::write(&path, data).expect("the scratch folder is writable");
            let options = generic::GenericOptions {
                file: path,
                id: data.len().is_multiple_of(3).then(|| "case".into()),
                patient: Some("subject".into()),
                image: (target == "csv").then(|| "file".into()),
                text: vec!["report".into()],
                label_columns: if target == "csv" {
                    vec!["Edema".into()]
                } else {
                    Vec::new()
                },
                label_list: (target == "jsonl").then(|| "findings".into()),
                ..Default::default()
            };
            let _ = generic::prepare(&options, &Schema::chest_xray(), read);
        }
        "manifest" => {
            let path = scratch.join("m.jsonl");
            std::fs::write(&path, data).expect("the scratch folder is writable");
            if let Ok(reader) = umcl_data::manifest::ManifestReader::open(&path) {
                for sample in reader {
                    let _ = sample;
                }
            }
        }
        "config" => {
            let text = String::from_utf8_lossy(data);
            let (body, sets): (Vec<&str>, Vec<&str>) =
                text.lines().partition(|l| !l.starts_with("#SET "));
            if let Ok(mut cfg) =
                umcl_train::config::TrainConfig::from_toml_str(&body.join("\n"), "fuzz.toml")
            {
                let sets: Vec<String> = sets.iter().map(|l| l[5..].to_string()).collect();
                let _ = cfg.apply_overrides(&sets);
                let _ = cfg.to_toml();
            }
        }
        "image" => {
            let _ = umcl_data::images::decode_with(
                data,
                "fuzz",
                umcl_data::images::JpegDecoder::ZuneJpeg,
            );
            let _ = umcl_data::images::decode(data, "fuzz");
        }
        "safetensors" => {
            let path = scratch.join("w.safetensors");
            std::fs::write(&path, data).expect("the scratch folder is writable");
            let _ = umcl_models::import::import_safetensors(
                vs,
                &path,
                &umcl_models::import::identity_keys,
                true,
            );
        }
        "pth" => {
            let path = scratch.join("w.pth");
            std::fs::write(&path, data).expect("the scratch folder is writable");
            let _ = umcl_models::pth::read_pth(&path);
        }
        _ => unreachable!("targets are checked before the loop"),
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut target = None;
    let (mut seconds, mut seed) = (60u64, 0u64);
    let mut out = PathBuf::from("target/fuzz");
    let mut corpus = PathBuf::from("crates/umcl/tests/corpus");
    let mut i = 0;
    while i < args.len() {
        let value = || args.get(i + 1).context("a flag without its value");
        match args[i].as_str() {
            "--seconds" => seconds = value()?.parse().context("--seconds")?,
            "--seed" => seed = value()?.parse().context("--seed")?,
            "--out" => out = PathBuf::from(value()?),
            "--corpus" => corpus = PathBuf::from(value()?),
            "--list" => {
                // For `cargo xtask fuzz`, which cannot depend on this crate.
                println!("{}", TARGETS.join(" "));
                return Ok(());
            }
            t if !t.starts_with("--") && target.is_none() => {
                target = Some(t.to_string());
                i += 1;
                continue;
            }
            other => bail!("unknown argument `{other}`"),
        }
        i += 2;
    }
    let target = target.with_context(|| format!("name a target: {}", TARGETS.join(", ")))?;
    tch::set_num_threads(1);
    let scratch = out.join(format!("scratch-{target}-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let seeds = seeds(&target, &corpus, &scratch)?;
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _w = vs.root().zeros("w", &[2, 2]);
    // Panics are counted, not printed one by one.
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed ^ 0xF022_5EED);
    let max_len = seeds.iter().map(Vec::len).max().unwrap_or(0) * 2 + 64;
    let (started, budget) = (Instant::now(), Duration::from_secs(seconds));
    let mut execs = 0u64;
    let mut crashes: BTreeMap<String, usize> = BTreeMap::new();
    let mut saved = 0;
    while started.elapsed() < budget {
        // Seeds first, as they are; then mutants.
        let data = if (execs as usize) < seeds.len() {
            seeds[execs as usize].clone()
        } else {
            mutate(&mut rng, &seeds, max_len)
        };
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| run_one(&target, &data, &scratch, &vs)));
        execs += 1;
        if let Err(payload) = result {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(no message)".into());
            let seen = crashes.entry(message).or_insert(0);
            *seen += 1;
            if *seen == 1 && saved < 20 {
                let path = out.join(format!("{target}-{saved}.bin"));
                std::fs::write(&path, &data)?;
                saved += 1;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let total: usize = crashes.values().sum();
    println!(
        "umcl-fuzz\t{target}\t{execs}\t{:.0}\t{total}\t{}",
        started.elapsed().as_secs_f64(),
        crashes.len()
    );
    for (message, n) in &crashes {
        eprintln!("  {n} x {message}");
    }
    if total > 0 {
        eprintln!("crashing inputs: {}/{target}-*.bin", out.display());
        std::process::exit(1);
    }
    Ok(())
}
