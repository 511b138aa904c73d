//! From loader batches to tensors, and from a model to embeddings of whole sample sets:
//! the shared ground of training and evaluation.

use std::sync::Arc;

use tch::{Device, Kind, Tensor};
use umcl_data::loader::{Batch, Loader, LoaderConfig};
use umcl_data::sample::Sample;
use umcl_data::schema::Schema;
use umcl_data::synth::PromptTemplates;
use umcl_data::tokenize::{Padding, Tokenizer};
use umcl_models::dual::DualEncoder;
use umcl_torch_ext::ops::l2_normalize;

use crate::error::TrainError;

/// One loader batch as tensors on the training device.
pub struct TensorBatch {
    /// `[B, C, H, W]` f32 (zeros where a sample has no image).
    pub images: Tensor,
    /// `[B, L]` i64.
    pub input_ids: Tensor,
    /// `[B, L]` i64.
    pub attention_mask: Tensor,
    /// `[B, K]` i64 label codes (1, 0, -1, -2).
    pub labels: Tensor,
    /// Rows with an image.
    pub has_image: Vec<bool>,
    /// Rows with a text.
    pub has_text: Vec<bool>,
    /// Sample ids.
    pub ids: Vec<String>,
}

impl TensorBatch {
    /// Moves a loader batch to `device`.
    pub fn from_batch(batch: &Batch, device: Device) -> Result<Self, TrainError> {
        let to = |shape: &[usize]| shape.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let images = Tensor::from_slice(
            batch
                .images
                .as_slice()
                .ok_or_else(|| TrainError::Eval("loader images are not contiguous".into()))?,
        )
        .reshape(to(batch.images.shape()));
        let ids = batch.input_ids.as_standard_layout();
        let mask = batch.attention_mask.as_standard_layout();
        let labels = batch.labels.as_standard_layout();
        let as_slice = |s: Option<&[i64]>| {
            s.map(Tensor::from_slice)
                .ok_or_else(|| TrainError::Eval("loader arrays are not contiguous".into()))
        };
        let input_ids = as_slice(ids.as_slice())?.reshape(to(batch.input_ids.shape()));
        let attention_mask = as_slice(mask.as_slice())?.reshape(to(batch.attention_mask.shape()));
        let labels = Tensor::from_slice(
            labels
                .as_slice()
                .ok_or_else(|| TrainError::Eval("loader labels are not contiguous".into()))?,
        )
        .reshape(to(batch.labels.shape()))
        .to_kind(Kind::Int64);
        Ok(Self {
            images: images.to_device(device),
            input_ids: input_ids.to_device(device),
            attention_mask: attention_mask.to_device(device),
            labels: labels.to_device(device),
            has_image: batch.has_image.clone(),
            has_text: batch.has_text.clone(),
            ids: batch.ids.clone(),
        })
    }
}

/// Indices (as an i64 tensor on `device`) of the rows where `flags` is true.
pub fn rows_where(flags: &[bool], device: Device) -> Tensor {
    let idx: Vec<i64> = flags
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| i as i64)
        .collect();
    Tensor::from_slice(&idx).to_device(device)
}

/// Embeddings of a sample set, in sample order, on the CPU, L2-normalised.
pub struct Embedded {
    /// The samples' ids.
    pub ids: Vec<String>,
    /// `[N, D]` image embeddings (rows of samples without an image are zero).
    pub image: Tensor,
    /// `[N, D]` text embeddings (rows of samples without a text are zero).
    pub text: Tensor,
    /// `[N, K]` label codes.
    pub labels: Tensor,
    /// Which rows have an image.
    pub has_image: Vec<bool>,
    /// Which rows have a text.
    pub has_text: Vec<bool>,
    /// Samples left out because their image could not be read (with `skip_bad`; without it
    /// such a sample is an error).
    pub skipped: Vec<umcl_data::loader::Skipped>,
}

/// Runs the model in evaluation mode over `samples` (no augmentation, no shuffle).
pub fn embed_samples(
    model: &DualEncoder,
    samples: Vec<Sample>,
    tokenizer: &Arc<Tokenizer>,
    base: &LoaderConfig,
    device: Device,
) -> Result<Embedded, TrainError> {
    let loader = Loader::new(
        samples,
        Some(tokenizer.clone()),
        LoaderConfig {
            shuffle: false,
            drop_last: false,
            augment: None,
            ..base.clone()
        },
    )?;
    let _guard = tch::no_grad_guard();
    let mut out = Embedded {
        ids: Vec::new(),
        image: Tensor::empty([0], (Kind::Float, Device::Cpu)),
        text: Tensor::empty([0], (Kind::Float, Device::Cpu)),
        labels: Tensor::empty([0], (Kind::Int64, Device::Cpu)),
        has_image: Vec::new(),
        has_text: Vec::new(),
        skipped: Vec::new(),
    };
    let (mut images, mut texts, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut epoch = loader.epoch(0);
    for batch in &mut epoch {
        let b = TensorBatch::from_batch(&batch?, device)?;
        let img = l2_normalize(&model.encode_image(&b.images, false)?.to_kind(Kind::Float));
        let txt = l2_normalize(
            &model
                .encode_text(&b.input_ids, &b.attention_mask, false)?
                .to_kind(Kind::Float),
        );
        let keep = |t: Tensor, flags: &[bool]| {
            let m = Tensor::from_slice(&flags.iter().map(|&f| f as u8 as f32).collect::<Vec<_>>())
                .to_device(device)
                .unsqueeze(1);
            (t * m).to_device(Device::Cpu)
        };
        images.push(keep(img, &b.has_image));
        texts.push(keep(txt, &b.has_text));
        labels.push(b.labels.to_device(Device::Cpu));
        out.ids.extend(b.ids);
        out.has_image.extend(b.has_image);
        out.has_text.extend(b.has_text);
    }
    out.skipped = epoch.stats().skipped.clone();
    if out.ids.is_empty() {
        return Err(TrainError::Eval("no samples to embed".into()));
    }
    out.image = Tensor::cat(&images, 0);
    out.text = Tensor::cat(&texts, 0);
    out.labels = Tensor::cat(&labels, 0);
    Ok(out)
}

/// Image vectors of `samples` that have an image, in their order, L2-normalised on the CPU:
/// the projected embeddings, or with `pooled` the encoder's features before the projection.
/// Returns the ids of the rows (samples whose image could not be read are an error, as in
/// [`embed_samples`]).
pub fn embed_images(
    model: &DualEncoder,
    samples: Vec<Sample>,
    tokenizer: &Arc<Tokenizer>,
    base: &LoaderConfig,
    pooled: bool,
    device: Device,
) -> Result<(Vec<String>, Tensor), TrainError> {
    let samples: Vec<Sample> = samples.into_iter().filter(|s| s.image.is_some()).collect();
    let loader = Loader::new(
        samples,
        Some(tokenizer.clone()),
        LoaderConfig {
            shuffle: false,
            drop_last: false,
            augment: None,
            ..base.clone()
        },
    )?;
    let _guard = tch::no_grad_guard();
    let (mut ids, mut rows) = (Vec::new(), Vec::new());
    for batch in &mut loader.epoch(0) {
        let b = TensorBatch::from_batch(&batch?, device)?;
        let v = if pooled {
            model.image_features(&b.images, false)?
        } else {
            model.encode_image(&b.images, false)?
        };
        rows.push(l2_normalize(&v.to_kind(Kind::Float)).to_device(Device::Cpu));
        ids.extend(b.ids);
    }
    if ids.is_empty() {
        return Err(TrainError::Eval("no images to embed".into()));
    }
    Ok((ids, Tensor::cat(&rows, 0)))
}

/// Class embeddings `[C, D]` (L2-normalised, CPU) from hand-written prompt ensembles: the
/// mean of the normalised embeddings of each class's prompts, normalised again.
pub fn prompt_ensemble(
    model: &DualEncoder,
    tokenizer: &Tokenizer,
    prompts: &[Vec<String>],
    device: Device,
) -> Result<Tensor, TrainError> {
    let _guard = tch::no_grad_guard();
    let mut rows = Vec::with_capacity(prompts.len());
    for texts in prompts {
        let enc = tokenizer.encode_batch(texts, Padding::Longest)?;
        let flat = |rows: &[Vec<i64>]| {
            Tensor::from_slice(&rows.concat())
                .reshape([rows.len() as i64, enc.seq_len as i64])
                .to_device(device)
        };
        let emb = l2_normalize(
            &model
                .encode_text(&flat(&enc.input_ids), &flat(&enc.attention_mask), false)?
                .to_kind(Kind::Float),
        );
        rows.push(l2_normalize(&emb.mean_dim(0, true, Kind::Float)).to_device(Device::Cpu));
    }
    Ok(Tensor::cat(&rows, 0))
}

/// The hand-written class prompts of schema `keys` (built-in templates).
pub fn class_prompts(schema: &Schema, keys: &[String]) -> Result<Vec<Vec<String>>, TrainError> {
    let templates = PromptTemplates::builtin();
    keys.iter()
        .map(|k| templates.class(schema, k).map_err(TrainError::from))
        .collect()
}

/// Learned-prompt class embeddings `[C, D]` (L2-normalised, CPU).
pub fn learned_classes(model: &DualEncoder) -> Result<Tensor, TrainError> {
    let _guard = tch::no_grad_guard();
    Ok(l2_normalize(&model.encode_classes(false)?.to_kind(Kind::Float)).to_device(Device::Cpu))
}
