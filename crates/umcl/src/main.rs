//! `umcl`: the command line of the umcl framework.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use tch::{Kind, Tensor};
use umcl_torch_ext::runtime::{self, BackendConfig, DeviceRequest};

mod bench_cmd;
mod convert_cmd;
mod data_cmd;
mod label_cmd;
mod models_cmd;
mod phantom_cmd;
mod stdout;
mod train_cmd;

use stdout::outln;

/// Unified medical image-text-label contrastive pretraining.
#[derive(Parser)]
#[command(name = "umcl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print versions, CUDA/cuDNN availability, the chosen device and thread count.
    ///
    /// Also runs a tiny tensor operation on the chosen device to prove it works.
    ///
    /// Example: umcl info --device auto
    Info(BackendArgs),
    /// Sentence embeddings from a pretrained text encoder: one row per input line, as .npy.
    ///
    /// Example: umcl embed --text-encoder DIR --texts sentences.txt --output emb.npy
    Embed(models_cmd::EmbedArgs),
    /// Continuous prompts: read learned context vectors back as words.
    #[command(subcommand)]
    Prompts(models_cmd::PromptsCommand),
    /// Unified manifests: prepare one from a dataset, print its counts, split it by patient.
    ///
    /// Example: umcl data prepare --source chexpert --input CheXpert-v1.0-small/train.csv --out chexpert.jsonl
    Data(data_cmd::DataArgs),
    /// Label free-text reports with the rule-based labeler: one CSV row per report, one
    /// column per label key (1 positive, 0 negative, -1 uncertain, empty not mentioned).
    ///
    /// Example: umcl label --input reports.csv --id-column uid --text-columns findings,impression --output labels.csv
    Label(label_cmd::LabelArgs),
    /// Train a dual encoder with the Image-Text-Label loss and continuous prompts.
    ///
    /// Example: umcl train --preset phantom-cpu --set run.steps=200
    Train(train_cmd::TrainArgs),
    /// Evaluate a trained model: zero-shot, retrieval or linear probe, with 95% intervals.
    ///
    /// Example: umcl eval --checkpoint runs/phantom-cpu --manifest data/phantom/eval-5x200.jsonl --task zeroshot
    Eval(train_cmd::EvalArgs),
    /// Zero-shot classification of image files with a trained model: top-k classes.
    ///
    /// Example: umcl classify --checkpoint runs/phantom-cpu image.png
    Classify(train_cmd::ClassifyArgs),
    /// Benchmarks: `bench step` times the training step (forward, loss, backward, AdamW) on
    /// random inputs, for comparison with the PyTorch reference.
    ///
    /// Example: umcl bench step --model resnet50-bert-base --batch 64 --steps 5 --json step.json
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
}

/// Options that choose where libtorch runs.
#[derive(Args)]
struct BackendArgs {
    /// auto (CUDA when present), cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    device: DeviceRequest,
    /// Intra-op threads [default: physical cores]
    #[arg(long)]
    threads: Option<usize>,
}

impl BackendArgs {
    fn init(&self) -> Result<runtime::Backend> {
        Ok(runtime::init(&BackendConfig {
            device: self.device,
            threads: self.threads,
            ..Default::default()
        })?)
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Log lines (checkpoints, validation) on stderr: UMCL_LOG=info (or debug for every metrics
    // line); warnings only by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMCL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) if stdout::failed() => std::process::ExitCode::FAILURE,
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("umcl: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Info(args) => info(&args),
        Command::Embed(args) => models_cmd::embed(&args),
        Command::Prompts(cmd) => models_cmd::prompts(&cmd),
        Command::Data(args) => data_cmd::run(args),
        Command::Label(args) => label_cmd::run(args),
        Command::Train(args) => train_cmd::train(&args),
        Command::Eval(args) => train_cmd::eval(&args),
        Command::Classify(args) => train_cmd::classify(&args),
        Command::Bench(cmd) => bench_cmd::run(&cmd),
    }
}

fn info(args: &BackendArgs) -> Result<()> {
    let backend = args.init()?;
    outln!("{backend}");
    let x = Tensor::arange(6, (Kind::Float, backend.device)).reshape([2, 3]);
    let sum = x
        .matmul(&x.transpose(0, 1))
        .f_sum(Kind::Float)
        .and_then(|s| s.f_double_value(&[]))
        .context("tensor check failed")?;
    let device = runtime::device_name(backend.device);
    // [[0,1,2],[3,4,5]] times its transpose is [[5,14],[14,50]], summing to 83.
    anyhow::ensure!(
        sum == 83.0,
        "tensor check on {device} gave {sum}, expected 83"
    );
    outln!("check      ok (2x3 matmul on {device})");
    outln!("jpeg       {}", umcl_data::images::JPEG_DECODER);
    Ok(())
}
