//! Batching: manifest samples become batches of plain arrays, prepared ahead on a background
//! thread by a rayon pool.
//!
//! A [`Batch`] holds images `[B, C, H, W]` (f32, normalised), `input_ids` and `attention_mask`
//! `[B, L]` (i64), labels `[B, K]` (i8, [`LabelState::code`]: 1 positive, 0 negative,
//! -1 uncertain, -2 unmentioned) and the sample ids. A sample without an image has a zero
//! image and `has_image = false`; one without text has an all-padding row with a zero mask and
//! `has_text = false`.
//!
//! Each epoch is shuffled by `(seed, epoch)`; each sample's augmentation is drawn from
//! `(seed, epoch, sample index)`, so batches do not depend on the pool size or timing. The
//! [`Epoch`] iterator reports how long its consumer waited for batches.
//!
//! ```no_run
//! use std::sync::Arc;
//! use umcl_data::loader::{Loader, LoaderConfig};
//! use umcl_data::manifest::Manifest;
//!
//! let manifest = Manifest::read("data/phantom/manifest.jsonl".as_ref())?;
//! let loader = Loader::new(manifest.samples, None, LoaderConfig::default())?;
//! let mut epoch = loader.epoch(0);
//! for batch in &mut epoch {
//!     let batch = batch?;
//!     assert_eq!(batch.images.shape()[1..], [3, 224, 224]);
//! }
//! println!("waited {:?}", epoch.stats().waited);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};
use ndarray::{Array2, Array4, Axis};
use rayon::prelude::*;

use crate::augment::Augment;
use crate::images::{ImageError, Preprocess};
use crate::rng::Rng;
use crate::sample::Sample;
use crate::schema::LabelState;
use crate::synth::Synthesizer;
use crate::tokenize::{Padding, TokenizeError, Tokenizer};

/// What can go wrong while building batches.
#[derive(Debug, thiserror::Error)]
pub enum LoaderError {
    /// A sample's image could not be loaded (the error names the file).
    #[error("sample `{id}`: {error}")]
    Image {
        /// The sample id.
        id: String,
        /// What went wrong with its image (part of the message, not a separate cause, so
        /// that a cause chain does not print it twice).
        error: ImageError,
    },
    /// The texts of a batch could not be tokenized.
    #[error("batch starting with sample `{first_id}`: {error}")]
    Tokenize {
        /// The id of the batch's first sample.
        first_id: String,
        /// The tokenizer's error (part of the message).
        error: TokenizeError,
    },
    /// An invalid option or sample set.
    #[error("loader: {0}")]
    Invalid(String),
}

/// How the loader batches, preprocesses and schedules.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Samples per batch. Default 32.
    pub batch_size: usize,
    /// Threads of the rayon pool that loads images. Default 2.
    pub threads: usize,
    /// Batches prepared ahead of the consumer. Default 4.
    pub prefetch: usize,
    /// Seed of the shuffle and of the augmentation. Default 0.
    pub seed: u64,
    /// Shuffle the samples each epoch. Default true.
    pub shuffle: bool,
    /// Leave out the last batch when it is smaller than `batch_size`. Default false.
    pub drop_last: bool,
    /// Skip (and count) samples whose image fails to load instead of stopping with an error.
    /// Default false.
    pub skip_bad: bool,
    /// Resize and normalisation.
    pub preprocess: Preprocess,
    /// Training augmentation; `None` for evaluation.
    pub augment: Option<Augment>,
    /// How token rows are padded. Default [`Padding::Longest`].
    pub padding: Padding,
    /// Samples with labels and no text get a report synthesised from their labels, drawn anew
    /// every epoch from `(seed, epoch, sample id)`. `None` (the default): such samples have no
    /// text.
    pub synthesize: Option<Arc<Synthesizer>>,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            threads: 2,
            prefetch: 4,
            seed: 0,
            shuffle: true,
            drop_last: false,
            skip_bad: false,
            preprocess: Preprocess::default(),
            augment: None,
            padding: Padding::Longest,
            synthesize: None,
        }
    }
}

/// One batch of samples as plain arrays.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Normalised images `[B, C, H, W]`; zeros for samples without an image.
    pub images: Array4<f32>,
    /// Whether sample `b` has an image.
    pub has_image: Vec<bool>,
    /// Token ids `[B, L]`; `L` is 0 when the loader has no tokenizer.
    pub input_ids: Array2<i64>,
    /// 1 for real tokens, 0 for padding, `[B, L]`.
    pub attention_mask: Array2<i64>,
    /// Whether sample `b` has a text.
    pub has_text: Vec<bool>,
    /// Label codes `[B, K]`: 1 positive, 0 negative, -1 uncertain, -2 unmentioned.
    pub labels: Array2<i8>,
    /// Sample ids.
    pub ids: Vec<String>,
    /// Positions of the samples in the loader's sample list.
    pub indices: Vec<usize>,
    /// Where the image array goes back to when the batch is dropped, for a later batch.
    recycle: Option<Arc<Recycler>>,
}

impl Drop for Batch {
    /// Hands the image array back to the loader, which fills it again for a later batch
    /// instead of allocating (and the kernel zero-filling) about 19 MB per batch of 32.
    fn drop(&mut self) {
        if let Some(r) = self.recycle.take() {
            let (data, offset) = std::mem::take(&mut self.images).into_raw_vec_and_offset();
            if offset.unwrap_or(0) == 0 {
                r.put(data);
            }
        }
    }
}

/// Image arrays of dropped batches, kept for the next ones (at most `cap`).
#[derive(Default)]
struct Recycler {
    spare: std::sync::Mutex<Vec<Vec<f32>>>,
    cap: usize,
}

impl std::fmt::Debug for Recycler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recycler")
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl Recycler {
    /// A spare array of exactly `len` values (with stale contents), or a new zeroed one.
    fn take(&self, len: usize) -> Vec<f32> {
        let found = self.spare.lock().ok().and_then(|mut spare| {
            let at = spare.iter().position(|v| v.len() == len)?;
            Some(spare.swap_remove(at))
        });
        found.unwrap_or_else(|| vec![0.0; len])
    }

    fn put(&self, data: Vec<f32>) {
        if data.is_empty() {
            return;
        }
        if let Ok(mut spare) = self.spare.lock() {
            if spare.len() < self.cap {
                spare.push(data);
            }
        }
    }
}

impl Batch {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the batch has no samples (the loader never yields one).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A sample left out under `skip_bad`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The sample id.
    pub id: String,
    /// Why it was left out.
    pub reason: String,
}

/// What an epoch did, so far.
#[derive(Debug, Clone, Default)]
pub struct EpochStats {
    /// Batches handed to the consumer.
    pub batches: usize,
    /// Samples in those batches.
    pub samples: usize,
    /// Time the consumer spent waiting in [`Iterator::next`].
    pub waited: Duration,
    /// Samples left out under `skip_bad`.
    pub skipped: Vec<Skipped>,
}

/// Turns samples into batches; see the module documentation.
pub struct Loader {
    shared: Arc<Shared>,
}

struct Shared {
    samples: Vec<Sample>,
    tokenizer: Option<Arc<Tokenizer>>,
    cfg: LoaderConfig,
    pool: rayon::ThreadPool,
    keys: usize,
    recycler: Arc<Recycler>,
    /// Cumulative sampling weights, one per sample, when the epoch draws by weight.
    cumulative: Option<Vec<f64>>,
}

/// Batches being built on the pool at once: while the last images of one batch finish, the
/// idle threads start on the next, so no thread waits at a batch boundary.
const IN_FLIGHT: usize = 2;

impl Loader {
    /// A loader over `samples`. Checks the options and that every sample has as many labels
    /// as the first.
    pub fn new(
        samples: Vec<Sample>,
        tokenizer: Option<Arc<Tokenizer>>,
        cfg: LoaderConfig,
    ) -> Result<Self, LoaderError> {
        let invalid = |m: String| Err(LoaderError::Invalid(m));
        if cfg.batch_size == 0 {
            return invalid("batch_size must be at least 1".into());
        }
        if cfg.threads == 0 || cfg.threads > crate::MAX_THREADS {
            return invalid(format!(
                "threads must be between 1 and {}, got {}",
                crate::MAX_THREADS,
                cfg.threads
            ));
        }
        cfg.preprocess
            .validate()
            .map_err(|e| LoaderError::Invalid(e.to_string()))?;
        if let Some(aug) = &cfg.augment {
            aug.validate()
                .map_err(|e| LoaderError::Invalid(e.to_string()))?;
            if cfg.preprocess.size < 2 {
                return invalid("augmentation needs an image size of at least 2".into());
            }
        }
        let keys = samples.first().map_or(0, |s| s.labels.len());
        if let Some(s) = samples.iter().find(|s| s.labels.len() != keys) {
            return invalid(format!(
                "sample `{}` has {} labels, the first sample {keys}",
                s.id,
                s.labels.len()
            ));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(cfg.threads)
            .thread_name(|i| format!("umcl-loader-{i}"))
            .build()
            .map_err(|e| LoaderError::Invalid(format!("cannot start the thread pool: {e}")))?;
        // Batches alive at once: the consumer's, those in the channel, the one waiting to go
        // in, and those being built.
        let cap = cfg.prefetch.max(1) + IN_FLIGHT + 1;
        Ok(Self {
            shared: Arc::new(Shared {
                samples,
                tokenizer,
                cfg,
                recycler: Arc::new(Recycler {
                    spare: Default::default(),
                    cap,
                }),
                pool,
                keys,
                cumulative: None,
            }),
        })
    }

    /// A loader whose epochs draw `samples.len()` samples with replacement, sample `i` with
    /// probability `weights[i] / sum(weights)` (PyTorch's `WeightedRandomSampler`), from
    /// `(seed, epoch)`: to mix sources in chosen proportions. Equal weights give
    /// [`Loader::new`]'s plain shuffle. Every weight must be finite and above 0.
    pub fn with_weights(
        samples: Vec<Sample>,
        weights: &[f64],
        tokenizer: Option<Arc<Tokenizer>>,
        cfg: LoaderConfig,
    ) -> Result<Self, LoaderError> {
        if weights.len() != samples.len() {
            return Err(LoaderError::Invalid(format!(
                "{} weights for {} samples",
                weights.len(),
                samples.len()
            )));
        }
        if let Some((i, w)) = weights
            .iter()
            .enumerate()
            .find(|(_, w)| !(w.is_finite() && **w > 0.0))
        {
            return Err(LoaderError::Invalid(format!(
                "the weight of sample `{}` is {w}; weights must be finite and above 0",
                samples[i].id
            )));
        }
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        let mut loader = Self::new(samples, tokenizer, cfg)?;
        if !equal {
            let mut sum = 0.0;
            let cumulative = weights
                .iter()
                .map(|w| {
                    sum += w;
                    sum
                })
                .collect();
            Arc::get_mut(&mut loader.shared)
                .expect("a new loader is not shared yet")
                .cumulative = Some(cumulative);
        }
        Ok(loader)
    }

    /// The samples, in their original order.
    pub fn samples(&self) -> &[Sample] {
        &self.shared.samples
    }

    /// The number of batches in an epoch (before any skip).
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.shared.samples.len(), self.shared.cfg.batch_size);
        if self.shared.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The sample order of `epoch`: shuffled by `(seed, epoch)`, or the original order; with
    /// weights ([`Loader::with_weights`]), drawn by weight from `(seed, epoch)`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        if let Some(cumulative) = &self.shared.cumulative {
            let total = cumulative.last().copied().unwrap_or(0.0);
            let mut rng = Rng::for_sample(self.shared.cfg.seed, epoch, u64::MAX);
            return (0..cumulative.len())
                .map(|_| {
                    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
                    cumulative
                        .partition_point(|&c| c <= u)
                        .min(cumulative.len() - 1)
                })
                .collect();
        }
        let mut order: Vec<usize> = (0..self.shared.samples.len()).collect();
        if self.shared.cfg.shuffle {
            let mut rng = Rng::for_sample(self.shared.cfg.seed, epoch, u64::MAX);
            for i in (1..order.len()).rev() {
                let j = rng.below(i as u64 + 1) as usize;
                order.swap(i, j);
            }
        }
        order
    }

    /// Starts preparing `epoch`'s batches on a background thread, up to `prefetch` ahead.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        self.epoch_from(epoch, 0)
    }

    /// Like [`Loader::epoch`], but starting at batch `first` of the epoch: the batches a resumed
    /// run has not seen yet, without loading the ones before.
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Epoch {
        let cfg = &self.shared.cfg;
        let order = self.order(epoch);
        let mut chunks: Vec<Vec<usize>> = order
            .chunks(cfg.batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        if cfg.drop_last && chunks.last().is_some_and(|c| c.len() < cfg.batch_size) {
            chunks.pop();
        }
        chunks.drain(..first.min(chunks.len()));
        self.spawn(chunks, epoch)
    }

    /// Part `rank` of `world` of every batch of `epoch`, from batch `first` on: each batch of
    /// [`Loader::epoch_from`] is cut into `world` contiguous parts (of equal size when
    /// `batch_size` is a multiple of `world`), and this loader yields part `rank`. The ranks of
    /// a data-parallel run together load exactly the batches one process would, each sample
    /// once and with the same augmentation (which depends on the sample, not on the rank).
    pub fn epoch_shard(&self, epoch: u64, first: usize, rank: usize, world: usize) -> Epoch {
        let cfg = &self.shared.cfg;
        let world = world.max(1);
        let order = self.order(epoch);
        let mut chunks: Vec<&[usize]> = order.chunks(cfg.batch_size).collect();
        if cfg.drop_last && chunks.last().is_some_and(|c| c.len() < cfg.batch_size) {
            chunks.pop();
        }
        let parts: Vec<Vec<usize>> = chunks
            .into_iter()
            .skip(first)
            .map(|c| {
                let hi = ((rank + 1) * c.len() / world).min(c.len());
                c[(rank * c.len() / world).min(hi)..hi].to_vec()
            })
            .collect();
        self.spawn(parts, epoch)
    }

    /// Builds `chunks` (one batch each) on a background thread, up to `prefetch` ahead.
    fn spawn(&self, chunks: Vec<Vec<usize>>, epoch: u64) -> Epoch {
        let cfg = &self.shared.cfg;
        let (tx, rx) = bounded(cfg.prefetch.max(1) - 1);
        let shared = Arc::clone(&self.shared);
        let handle = std::thread::Builder::new()
            .name("umcl-loader".into())
            .spawn(move || {
                // Up to IN_FLIGHT batches are built on the pool at once, handed on in order.
                // After a stop (an error, or the consumer gone) the batches in flight are
                // still waited for, so no job outlives the epoch.
                let mut chunks = chunks.into_iter();
                let mut pending = std::collections::VecDeque::new();
                let mut stopped = false;
                loop {
                    while !stopped && pending.len() < IN_FLIGHT {
                        let Some(chunk) = chunks.next() else { break };
                        let (job_tx, job_rx) = bounded::<Built>(1);
                        let job_shared = Arc::clone(&shared);
                        shared.pool.spawn(move || {
                            let msg =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                    job_shared.build(&chunk, epoch)
                                }))
                                .unwrap_or_else(|_| {
                                    Err(LoaderError::Invalid(
                                        "internal: building a batch panicked".into(),
                                    ))
                                });
                            // Drop the loader's state before handing over, so the pool never
                            // outlives its last user on one of its own threads.
                            drop(job_shared);
                            let _ = job_tx.send(msg);
                        });
                        pending.push_back(job_rx);
                    }
                    let Some(job_rx) = pending.pop_front() else {
                        break;
                    };
                    let msg = job_rx.recv().unwrap_or_else(|_| {
                        Err(LoaderError::Invalid(
                            "internal: a batch job ended without a result".into(),
                        ))
                    });
                    if stopped {
                        continue;
                    }
                    let stop = msg.is_err();
                    if tx.send(msg).is_err() || stop {
                        stopped = true;
                    }
                }
            });
        match handle {
            Ok(handle) => Epoch {
                rx: Some(rx),
                handle: Some(handle),
                stats: EpochStats::default(),
            },
            Err(e) => {
                let (tx, rx) = bounded(1);
                let _ = tx.send(Err(LoaderError::Invalid(format!(
                    "cannot start the loader thread: {e}"
                ))));
                Epoch {
                    rx: Some(rx),
                    handle: None,
                    stats: EpochStats::default(),
                }
            }
        }
    }
}

/// Token ids, attention masks and whether each row has a text.
type Tokens = (Array2<i64>, Array2<i64>, Vec<bool>);

/// A built batch (`None` when every sample of it was skipped) and the samples skipped.
type Built = Result<(Option<Batch>, Vec<Skipped>), LoaderError>;

impl Shared {
    /// Loads the samples `idx` into one batch on the pool.
    fn build(&self, idx: &[usize], epoch: u64) -> Built {
        let cfg = &self.cfg;
        let pre = &cfg.preprocess;
        let (c, s) = (pre.channels, pre.size);
        let b = idx.len();
        let plane = c * s * s;
        // Every row is written in full (zeros for a sample without an image), so a recycled
        // array needs no clearing.
        let mut flat = self.recycler.take(b * plane);
        let (image_results, text) = self.pool.install(|| {
            rayon::join(
                || {
                    flat.par_chunks_mut(plane)
                        .zip(idx.par_iter())
                        .map(|(out, &i)| self.load_image(i, epoch, out))
                        .collect::<Vec<Result<bool, ImageError>>>()
                },
                || self.tokenize(idx, epoch),
            )
        });
        let (input_ids, attention_mask, has_text) = text?;
        let images = Array4::from_shape_vec((b, c, s, s), flat)
            .map_err(|e| LoaderError::Invalid(format!("internal: image batch shape: {e}")))?;
        let mut skipped = Vec::new();
        let mut keep = Vec::with_capacity(b);
        let mut has_image = Vec::with_capacity(b);
        for (row, (r, &i)) in image_results.into_iter().zip(idx).enumerate() {
            match r {
                Ok(present) => {
                    keep.push(row);
                    has_image.push(present);
                }
                Err(source) => {
                    let id = self.samples[i].id.clone();
                    if cfg.skip_bad {
                        skipped.push(Skipped {
                            id,
                            reason: source.to_string(),
                        });
                    } else {
                        return Err(LoaderError::Image { id, error: source });
                    }
                }
            }
        }
        if keep.is_empty() {
            return Ok((None, skipped));
        }
        let rows = |a: Array2<i64>| {
            if keep.len() == b {
                a
            } else {
                a.select(Axis(0), &keep)
            }
        };
        let images = if keep.len() == b {
            images
        } else {
            images.select(Axis(0), &keep)
        };
        let kept: Vec<usize> = keep.iter().map(|&r| idx[r]).collect();
        let mut labels = Array2::<i8>::zeros((kept.len(), self.keys));
        for (mut row, &i) in labels.outer_iter_mut().zip(&kept) {
            for (o, l) in row.iter_mut().zip(&self.samples[i].labels) {
                *o = LabelState::code(*l);
            }
        }
        let batch = Batch {
            images,
            has_image,
            input_ids: rows(input_ids),
            attention_mask: rows(attention_mask),
            has_text: keep.iter().map(|&r| has_text[r]).collect(),
            labels,
            ids: kept.iter().map(|&i| self.samples[i].id.clone()).collect(),
            indices: kept,
            recycle: Some(Arc::clone(&self.recycler)),
        };
        Ok((Some(batch), skipped))
    }

    /// Loads, resizes, augments and normalises sample `i`'s image into `out`. `Ok(false)` when
    /// the sample has no image; errors name the file.
    fn load_image(&self, i: usize, epoch: u64, out: &mut [f32]) -> Result<bool, ImageError> {
        let Some(path) = &self.samples[i].image else {
            out.fill(0.0);
            return Ok(false);
        };
        let pre = &self.cfg.preprocess;
        let params = self
            .cfg
            .augment
            .as_ref()
            .map(|aug| aug.sample(pre.size, self.cfg.seed, epoch, i as u64));
        pre.load_into(path, params.as_ref(), out)?;
        Ok(true)
    }

    /// The text of sample `i` in `epoch`: its own, or one synthesised from its labels.
    fn text(&self, i: usize, epoch: u64) -> Option<Cow<'_, str>> {
        let sample = &self.samples[i];
        match (&sample.text, &self.cfg.synthesize) {
            (Some(text), _) => Some(Cow::Borrowed(text)),
            (None, Some(synth)) if sample.has_labels() => Some(Cow::Owned(synth.synthesize_for(
                &sample.id,
                &sample.labels,
                epoch_seed(self.cfg.seed, epoch),
            ))),
            _ => None,
        }
    }

    /// Token ids, masks and text presence of the samples `idx`.
    fn tokenize(&self, idx: &[usize], epoch: u64) -> Result<Tokens, LoaderError> {
        let all: Vec<Option<Cow<'_, str>>> = idx.iter().map(|&i| self.text(i, epoch)).collect();
        let has_text: Vec<bool> = all.iter().map(Option::is_some).collect();
        let b = idx.len();
        let Some(tok) = &self.tokenizer else {
            return Ok((Array2::zeros((b, 0)), Array2::zeros((b, 0)), has_text));
        };
        let texts: Vec<&str> = all.iter().filter_map(|t| t.as_deref()).collect();
        let enc = tok
            .encode_batch(&texts, self.cfg.padding)
            .map_err(|error| LoaderError::Tokenize {
                first_id: self.samples[idx[0]].id.clone(),
                error,
            })?;
        let len = match self.cfg.padding {
            Padding::MaxLen => tok.max_len(),
            Padding::Longest => enc.seq_len,
        };
        let mut ids = Array2::from_elem((b, len), tok.pad_id());
        let mut mask = Array2::zeros((b, len));
        let mut next = 0;
        for (row, &present) in has_text.iter().enumerate() {
            if !present {
                continue;
            }
            for (k, (&t, &m)) in enc.input_ids[next]
                .iter()
                .zip(&enc.attention_mask[next])
                .enumerate()
            {
                ids[[row, k]] = t;
                mask[[row, k]] = m;
            }
            next += 1;
        }
        Ok((ids, mask, has_text))
    }
}

/// The synthesis seed of `epoch`: the loader's seed in epoch 0, well-spread ones after.
fn epoch_seed(seed: u64, epoch: u64) -> u64 {
    if epoch == 0 {
        seed
    } else {
        seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
    }
}

/// The batches of one epoch, prepared ahead on a background thread. Dropping it stops the
/// preparation.
pub struct Epoch {
    rx: Option<Receiver<Built>>,
    handle: Option<JoinHandle<()>>,
    stats: EpochStats,
}

impl Epoch {
    /// Batches, samples, waiting time and skips so far.
    pub fn stats(&self) -> &EpochStats {
        &self.stats
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let rx = self.rx.as_ref()?;
            let t0 = Instant::now();
            let msg = rx.recv();
            self.stats.waited += t0.elapsed();
            match msg {
                Err(_) => {
                    self.rx = None;
                    return None;
                }
                Ok(Err(e)) => {
                    self.rx = None;
                    return Some(Err(e));
                }
                Ok(Ok((batch, skipped))) => {
                    self.stats.skipped.extend(skipped);
                    if let Some(batch) = batch {
                        self.stats.batches += 1;
                        self.stats.samples += batch.len();
                        return Some(Ok(batch));
                    }
                }
            }
        }
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        // Closing the channel makes the producer's next send fail, so it stops.
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
