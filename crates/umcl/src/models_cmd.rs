//! `umcl embed` (sentence embeddings from a pretrained text encoder) and `umcl prompts explain`
//! (the vocabulary words nearest to each learned prompt vector).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use tch::{Kind, Tensor};
use umcl_data::tokenize::{Padding, Tokenizer};
use umcl_models::bert::Pooling;
use umcl_models::text::PretrainedBert;

use crate::stdout::outln;
use crate::BackendArgs;

/// Options of `umcl embed`.
#[derive(Args)]
pub struct EmbedArgs {
    /// Folder with config.json, model.safetensors and tokenizer.json (a Hugging Face BERT)
    #[arg(long, value_name = "DIR")]
    text_encoder: PathBuf,
    /// UTF-8 text file, one sentence per line
    #[arg(long, value_name = "FILE.txt")]
    texts: PathBuf,
    /// Output .npy (float32, shape [lines, hidden]); written atomically
    #[arg(long, value_name = "OUT.npy")]
    output: PathBuf,
    /// cls, mean, or mean-last-K (mean over tokens of the average of the last K layers)
    #[arg(long, default_value = "mean", value_parser = parse_pooling)]
    pooling: Pooling,
    /// Keep the pooled vectors as they are instead of L2-normalising them
    #[arg(long)]
    no_normalize: bool,
    /// Sentences per forward pass
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Truncate sentences to this many tokens [default: the model's max positions]
    #[arg(long)]
    max_len: Option<usize>,
    /// Load even if the weight file misses or adds keys (they are listed on stderr)
    #[arg(long)]
    allow_partial: bool,
    #[command(flatten)]
    backend: BackendArgs,
}

fn parse_pooling(s: &str) -> Result<Pooling, String> {
    match s {
        "cls" => Ok(Pooling::Cls),
        "mean" => Ok(Pooling::Mean),
        _ => match s.strip_prefix("mean-last-").map(str::parse::<usize>) {
            Some(Ok(k)) if k > 0 => Ok(Pooling::MeanLastK(k)),
            _ => Err(format!(
                "`{s}` is not a pooling: use cls, mean or mean-last-K (K >= 1)"
            )),
        },
    }
}

/// Runs `umcl embed`.
pub fn embed(args: &EmbedArgs) -> Result<()> {
    if args.batch_size == 0 {
        bail!("--batch-size must be at least 1");
    }
    let backend = args.backend.init()?;
    let texts = read_lines(&args.texts)?;
    let dir = &args.text_encoder;
    let model = PretrainedBert::load(dir, backend.device, args.allow_partial).map_err(|e| {
        let hint = if matches!(e, umcl_models::ModelError::Import { .. }) {
            " (--allow-partial loads what matches)"
        } else {
            ""
        };
        anyhow::Error::new(e).context(format!(
            "loading the text encoder from {}{hint}",
            dir.display()
        ))
    })?;
    if !model.report.is_complete() {
        eprintln!("umcl: warning: partial load: {}", model.report);
    }
    let max_len = args
        .max_len
        .unwrap_or(model.bert.config().max_position_embeddings as usize);
    let tok = Tokenizer::from_file(dir.join("tokenizer.json"), max_len)?;
    let mut rows = Vec::with_capacity(texts.len());
    for (b, chunk) in texts.chunks(args.batch_size).enumerate() {
        let batch = tok
            .encode_batch(chunk, Padding::Longest)
            .with_context(|| format!("tokenizing lines from {}", b * args.batch_size + 1))?;
        let emb = model.embed(
            &batch.input_ids,
            &batch.attention_mask,
            args.pooling,
            !args.no_normalize,
        )?;
        rows.push(emb.to_device(tch::Device::Cpu).to_kind(Kind::Float));
    }
    let all = Tensor::cat(&rows, 0);
    let (n, d) = all.size2()?;
    let data = Vec::<f32>::try_from(all.contiguous().view([-1]))?;
    write_npy_f32(&args.output, &[n as usize, d as usize], &data)?;
    outln!(
        "wrote {} ({n} x {d}, float32, {} pooling{})",
        args.output.display(),
        pooling_name(args.pooling),
        if args.no_normalize {
            ""
        } else {
            ", L2-normalised"
        }
    );
    Ok(())
}

fn pooling_name(p: Pooling) -> String {
    match p {
        Pooling::Cls => "cls".into(),
        Pooling::Mean => "mean".into(),
        Pooling::MeanLastK(k) => format!("mean-last-{k}"),
    }
}

/// The lines of a UTF-8 text file (a final newline ends the last line; `\r\n` is accepted).
/// A line that is not UTF-8 or is empty is an error naming the file and line.
fn read_lines(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = Vec::new();
    let body = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
    if body.is_empty() {
        bail!("{}: no text lines", path.display());
    }
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw)
            .map_err(|e| anyhow::anyhow!("{}:{}: not valid UTF-8 ({e})", path.display(), i + 1))?;
        if line.trim().is_empty() {
            bail!(
                "{}:{}: empty line (one sentence per line)",
                path.display(),
                i + 1
            );
        }
        lines.push(line.to_string());
    }
    Ok(lines)
}

/// Writes a little-endian float32 `.npy` (format version 1.0), atomically.
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape_text = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape_text}, }}");
    // Magic (6) + version (2) + length (2) + header, padded with spaces so that the data
    // starts on a 64-byte boundary, ending in a newline.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut bytes = Vec::with_capacity(10 + header.len() + data.len() * 4);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    umcl_fs::write_atomic(path, &bytes)?;
    Ok(())
}

/// Options of `umcl prompts explain`.
#[derive(Args)]
pub struct ExplainArgs {
    /// A dual-encoder checkpoint (.safetensors with its .json config beside it)
    checkpoint: PathBuf,
    /// tokenizer.json to turn ids into words [default: the one named in the checkpoint's config]
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Words to show per context vector
    #[arg(long, default_value_t = 5)]
    top: i64,
}

/// `umcl prompts` subcommands.
#[derive(clap::Subcommand)]
pub enum PromptsCommand {
    /// Print the vocabulary words nearest (Euclidean) to each learned context vector.
    ///
    /// Example: umcl prompts explain runs/x/model.safetensors --top 5
    Explain(ExplainArgs),
}

/// Runs a `umcl prompts` subcommand.
pub fn prompts(cmd: &PromptsCommand) -> Result<()> {
    match cmd {
        PromptsCommand::Explain(args) => explain(args),
    }
}

fn explain(args: &ExplainArgs) -> Result<()> {
    use umcl_models::dual::{config_path, DualConfig};
    if args.top < 1 {
        bail!("--top must be at least 1");
    }
    let cfg_path = config_path(&args.checkpoint);
    let config = DualConfig::from_file(&cfg_path)?;
    let tensors = umcl_models::import::read_safetensors(&args.checkpoint)?;
    let find = |name: &str| tensors.iter().find(|(k, _)| k == name).map(|(_, t)| t);
    let ctx = find("prompt.ctx").with_context(|| {
        format!(
            "{} has no prompt.ctx: the model has no continuous prompts",
            args.checkpoint.display()
        )
    })?;
    let words = find("text.embeddings.word_embeddings.weight").with_context(|| {
        format!(
            "{} has no text.embeddings.word_embeddings.weight",
            args.checkpoint.display()
        )
    })?;
    let tok_path = match (&args.tokenizer, &config.tokenizer) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if p.is_relative() => {
            cfg_path.parent().map_or_else(|| p.clone(), |d| d.join(p))
        }
        (None, Some(p)) => p.clone(),
        (None, None) => bail!(
            "{} names no tokenizer: pass --tokenizer tokenizer.json",
            cfg_path.display()
        ),
    };
    let tok = Tokenizer::from_file(&tok_path, 512)?;
    let near = umcl_models::prompt::nearest_words(ctx, words, args.top);
    let m = ctx.size()[ctx.dim() - 2] as usize;
    let groups: Vec<String> = if ctx.dim() == 3 {
        config
            .classes
            .iter()
            .map(|c| format!("class \"{}\"", c.name))
            .collect()
    } else {
        vec!["shared context".to_string()]
    };
    for (g, title) in groups.iter().enumerate() {
        outln!("{title}:");
        for (i, row) in near[g * m..(g + 1) * m].iter().enumerate() {
            let shown: Vec<String> = row
                .iter()
                .map(|&(id, dist)| {
                    let word = u32::try_from(id)
                        .ok()
                        .and_then(|id| tok.id_to_token(id))
                        .unwrap_or_else(|| format!("<{id}>"));
                    format!("{word} ({dist:.3})")
                })
                .collect();
            outln!("  v{:<3} {}", i + 1, shown.join("  "));
        }
    }
    Ok(())
}
