//! The batch loader on small hand-made samples: every image is flat with a value that names
//! its sample, so each batch row can be traced back.

use std::path::Path;
use std::sync::Arc;

use image::{ImageBuffer, Luma};
use umcl_data::augment::Augment;
use umcl_data::images::{Fit, Preprocess};
use umcl_data::loader::{Batch, Loader, LoaderConfig, LoaderError};
use umcl_data::sample::Sample;
use umcl_data::schema::{LabelState, Schema};
use umcl_data::tokenize::{Padding, Tokenizer};

/// Sample `i` has a flat 12x10 image of value `10 i` (8-bit), the text "small effusion" when
/// `i` is even, and label 0 positive when `i % 3 == 0`. Sample 4 has no image.
fn samples(dir: &Path, n: usize) -> Vec<Sample> {
    let schema = Schema::chest_xray();
    (0..n)
        .map(|i| {
            let mut s = Sample::new(format!("s{i}"), "test", &schema);
            if i != 4 {
                let path = dir.join(format!("s{i}.png"));
                ImageBuffer::<Luma<u8>, _>::from_pixel(12, 10, Luma([(10 * i) as u8]))
                    .save(&path)
                    .unwrap();
                s.image = Some(path);
            }
            if i % 2 == 0 {
                s.set_text(if i % 4 == 0 { "small effusion" } else { "no" });
            }
            if i % 3 == 0 {
                s.labels[0] = LabelState::Positive;
            }
            s
        })
        .collect()
}

fn config(batch_size: usize, threads: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        threads,
        prefetch: 2,
        seed: 5,
        preprocess: Preprocess {
            size: 8,
            fit: Fit::Stretch,
            mean: [0.0; 3],
            std: [1.0; 3],
            channels: 1,
        },
        ..LoaderConfig::default()
    }
}

fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

#[test]
fn every_sample_once_per_epoch_with_traceable_rows() {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new(samples(dir.path(), 11), None, config(4, 2)).unwrap();
    assert_eq!(loader.batches_per_epoch(), 3);
    let batches = collect(&loader, 0);
    assert_eq!(
        batches.iter().map(Batch::len).collect::<Vec<_>>(),
        [4, 4, 3]
    );
    let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
    seen.sort();
    assert_eq!(seen, (0..11).collect::<Vec<_>>());
    for b in &batches {
        assert_eq!(b.images.shape(), [b.len(), 1, 8, 8]);
        assert_eq!(b.labels.shape(), [b.len(), 17]);
        assert_eq!(b.input_ids.shape(), [b.len(), 0]);
        for (row, &i) in b.indices.iter().enumerate() {
            assert_eq!(b.ids[row], format!("s{i}"));
            // A flat image stays flat through the resize: value 10 i / 255, or 0 without image.
            let want = if i == 4 { 0.0 } else { 10.0 * i as f32 / 255.0 };
            assert!(b
                .images
                .slice(ndarray::s![row, .., .., ..])
                .iter()
                .all(|&v| (v - want).abs() < 1e-5));
            assert_eq!(b.has_image[row], i != 4);
            assert_eq!(b.has_text[row], i % 2 == 0);
            assert_eq!(b.labels[[row, 0]], if i % 3 == 0 { 1 } else { -2 });
            assert_eq!(b.labels[[row, 1]], -2);
        }
    }
}

#[test]
fn shuffle_follows_the_seed_and_drop_last_drops_the_short_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples(dir.path(), 11);
    let a = Loader::new(s.clone(), None, config(4, 1)).unwrap();
    let b = Loader::new(s.clone(), None, config(4, 2)).unwrap();
    assert_eq!(a.order(0), b.order(0));
    assert_ne!(a.order(0), a.order(1));
    let other = Loader::new(
        s.clone(),
        None,
        LoaderConfig {
            seed: 6,
            ..config(4, 1)
        },
    )
    .unwrap();
    assert_ne!(a.order(0), other.order(0));
    let plain = Loader::new(
        s.clone(),
        None,
        LoaderConfig {
            shuffle: false,
            drop_last: true,
            ..config(4, 1)
        },
    )
    .unwrap();
    assert_eq!(plain.order(3), (0..11).collect::<Vec<_>>());
    let batches = collect(&plain, 0);
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].indices, [4, 5, 6, 7]);
}

#[test]
fn augmented_batches_do_not_depend_on_the_pool_size() {
    let dir = tempfile::tempdir().unwrap();
    // Images with structure, so that crops and rotations change them.
    let mut s = samples(dir.path(), 9);
    for (i, sample) in s.iter_mut().enumerate() {
        if let Some(path) = &sample.image {
            ImageBuffer::from_fn(12, 10, |x, y| Luma([(x * 20 + y * 3 + i as u32) as u8]))
                .save(path)
                .unwrap();
        }
    }
    let aug = |threads| LoaderConfig {
        augment: Some(Augment::default()),
        ..config(3, threads)
    };
    let one = Loader::new(s.clone(), None, aug(1)).unwrap();
    let two = Loader::new(s.clone(), None, aug(2)).unwrap();
    let (a, b) = (collect(&one, 2), collect(&two, 2));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.indices, y.indices);
        assert_eq!(x.images, y.images);
    }
    // And augmentation did something: epoch 3 differs from epoch 2 for the same sample.
    let c = collect(&one, 3);
    let row = |bs: &[Batch], i: usize| {
        bs.iter()
            .find_map(|b| {
                b.indices
                    .iter()
                    .position(|&j| j == i)
                    .map(|r| b.images.slice(ndarray::s![r, .., .., ..]).to_owned())
            })
            .unwrap()
    };
    assert_ne!(row(&a, 0), row(&c, 0));
}

#[test]
fn a_bad_image_is_an_error_naming_it_or_a_counted_skip() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = samples(dir.path(), 6);
    s[2].image = Some(dir.path().join("gone.png"));
    std::fs::write(s[3].image.as_ref().unwrap(), b"not a png").unwrap();
    let strict = Loader::new(
        s.clone(),
        None,
        LoaderConfig {
            shuffle: false,
            ..config(2, 2)
        },
    )
    .unwrap();
    let mut epoch = strict.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    let err = epoch.next().unwrap().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, LoaderError::Image { .. }));
    assert!(msg.contains("s2") && msg.contains("gone.png"), "{msg}");
    assert!(epoch.next().is_none(), "an error ends the epoch");

    let lenient = Loader::new(
        s,
        None,
        LoaderConfig {
            shuffle: false,
            skip_bad: true,
            ..config(2, 2)
        },
    )
    .unwrap();
    let mut epoch = lenient.epoch(0);
    // A Batch hands its image array back to the loader on drop, so fields are taken, not
    // moved out.
    let got: Vec<usize> = (&mut epoch)
        .flat_map(|b| std::mem::take(&mut b.unwrap().indices))
        .collect();
    // Batch [2, 3] lost both samples and is not yielded at all.
    assert_eq!(got, [0, 1, 4, 5]);
    let stats = epoch.stats();
    assert_eq!((stats.batches, stats.samples), (2, 4));
    let skipped: Vec<&str> = stats.skipped.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(skipped, ["s2", "s3"]);
    assert!(stats.skipped[1].reason.contains("cannot decode"));
}

#[test]
fn invalid_configs_and_ragged_labels_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = samples(dir.path(), 3);
    assert!(Loader::new(s.clone(), None, config(0, 1)).is_err());
    assert!(Loader::new(s.clone(), None, config(2, 0)).is_err());
    let mut nan = config(2, 1);
    nan.preprocess.std[0] = f32::NAN;
    assert!(Loader::new(s.clone(), None, nan).is_err());
    let mut ragged = s;
    ragged[1].labels.pop();
    let err = Loader::new(ragged, None, config(2, 1)).err().unwrap();
    assert!(err.to_string().contains("s1"), "{err}");
}

/// A word-level tokenizer.json: [PAD] 0, [UNK] 1, no 2, effusion 3, small 4, split on
/// whitespace, no special tokens.
const TOKENIZER_JSON: &str = r#"{
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [],
  "normalizer": null,
  "pre_tokenizer": {"type": "Whitespace"},
  "post_processor": null,
  "decoder": null,
  "model": {"type": "WordLevel", "vocab": {"[PAD]": 0, "[UNK]": 1, "no": 2, "effusion": 3, "small": 4}, "unk_token": "[UNK]"}
}"#;

#[test]
fn texts_become_padded_ids_and_masks() {
    let dir = tempfile::tempdir().unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    std::fs::write(&tok_path, TOKENIZER_JSON).unwrap();
    let tok = Arc::new(Tokenizer::from_file(&tok_path, 8).unwrap());
    let loader = Loader::new(
        samples(dir.path(), 4),
        Some(tok.clone()),
        LoaderConfig {
            shuffle: false,
            ..config(4, 2)
        },
    )
    .unwrap();
    let b = collect(&loader, 0).remove(0);
    // s0 "small effusion" = [4, 3]; s1 no text; s2 "no" = [2]; s3 no text. Padded to the
    // longest (2) with [PAD] = 0; rows without text are all padding with a zero mask.
    assert_eq!(b.input_ids.shape(), [4, 2]);
    assert_eq!(b.input_ids.row(0).to_vec(), [4, 3]);
    assert_eq!(b.input_ids.row(2).to_vec(), [2, 0]);
    assert_eq!(b.attention_mask.row(0).to_vec(), [1, 1]);
    assert_eq!(b.attention_mask.row(1).to_vec(), [0, 0]);
    assert_eq!(b.attention_mask.row(2).to_vec(), [1, 0]);
    assert_eq!(b.has_text, [true, false, true, false]);
    // Padding to max_len gives 8 columns.
    let fixed = Loader::new(
        samples(dir.path(), 4),
        Some(tok),
        LoaderConfig {
            shuffle: false,
            padding: Padding::MaxLen,
            ..config(4, 1)
        },
    )
    .unwrap();
    let b = collect(&fixed, 0).remove(0);
    assert_eq!(b.input_ids.shape(), [4, 8]);
    assert_eq!(b.attention_mask.row(0).sum(), 2);
}

#[test]
fn dropping_an_epoch_early_stops_its_thread() {
    let dir = tempfile::tempdir().unwrap();
    let loader = Loader::new(samples(dir.path(), 40), None, config(2, 2)).unwrap();
    let mut epoch = loader.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    drop(epoch); // must return: the producer sees the closed channel and ends
    assert_eq!(collect(&loader, 1).len(), 20);
}

#[test]
fn shards_of_an_epoch_are_disjoint_and_make_up_the_unsharded_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(4, 1);
    cfg.drop_last = true;
    cfg.augment = Some(Augment::default());
    let loader = Loader::new(samples(dir.path(), 11), None, cfg).unwrap();
    for first in [0, 1] {
        let whole: Vec<Batch> = loader.epoch_from(3, first).map(|b| b.unwrap()).collect();
        let parts: Vec<Vec<Batch>> = (0..2)
            .map(|rank| {
                loader
                    .epoch_shard(3, first, rank, 2)
                    .map(|b| b.unwrap())
                    .collect()
            })
            .collect();
        assert_eq!(whole.len(), 2 - first);
        for (k, batch) in whole.iter().enumerate() {
            let (a, b) = (&parts[0][k], &parts[1][k]);
            assert_eq!((a.len(), b.len()), (2, 2));
            let joined: Vec<usize> = a.indices.iter().chain(&b.indices).copied().collect();
            assert_eq!(joined, batch.indices, "batch {k} from {first}");
            // The same pixels (augmentation included) as in the unsharded batch.
            let rows = batch.images.outer_iter().collect::<Vec<_>>();
            for (row, img) in a
                .images
                .outer_iter()
                .chain(b.images.outer_iter())
                .enumerate()
            {
                assert_eq!(img, rows[row], "batch {k} row {row}");
            }
        }
    }
}

#[test]
fn labelled_samples_without_text_get_a_report_drawn_anew_each_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let tok_path = dir.path().join("tokenizer.json");
    std::fs::write(&tok_path, TOKENIZER_JSON).unwrap();
    let tok = Arc::new(Tokenizer::from_file(&tok_path, 64).unwrap());
    let synth = umcl_data::synth::Synthesizer::builtin(&Schema::chest_xray()).unwrap();
    let cfg = LoaderConfig {
        shuffle: false,
        synthesize: Some(Arc::new(synth)),
        ..config(12, 2)
    };
    let loader = Loader::new(samples(dir.path(), 12), Some(tok.clone()), cfg.clone()).unwrap();
    // s3 and s9 have a label and no text: synthesised. s1, s5, s7, s11 have neither: no text.
    let mut lengths = Vec::new();
    let first = collect(&loader, 0).remove(0);
    for epoch in 0..8 {
        let b = collect(&loader, epoch).remove(0);
        assert_eq!(
            b.has_text,
            [true, false, true, true, true, false, true, false, true, true, true, false]
        );
        // A sample's own text is the same every epoch (the padding follows the batch's
        // longest text, which changes with the synthesised ones).
        let tokens = |batch: &Batch, row: usize| {
            let len = batch.attention_mask.row(row).sum() as usize;
            batch
                .input_ids
                .row(row)
                .iter()
                .take(len)
                .copied()
                .collect::<Vec<_>>()
        };
        for row in [0, 2, 4] {
            assert_eq!(
                tokens(&b, row),
                tokens(&first, row),
                "epoch {epoch} row {row}"
            );
        }
        lengths.push((b.attention_mask.row(3).sum(), b.attention_mask.row(9).sum()));
    }
    assert!(lengths.iter().all(|&(a, b)| a > 0 && b > 0));
    assert!(
        lengths.iter().any(|l| *l != lengths[0]),
        "the synthesised reports never changed: {lengths:?}"
    );
    // An epoch is a function of the seed: built again, the same tokens.
    let again = Loader::new(samples(dir.path(), 12), Some(tok.clone()), cfg).unwrap();
    assert_eq!(
        collect(&again, 5)[0].input_ids,
        collect(&loader, 5)[0].input_ids
    );
    // Without a synthesizer such samples have no text.
    let plain = Loader::new(
        samples(dir.path(), 12),
        Some(tok),
        LoaderConfig {
            shuffle: false,
            ..config(12, 2)
        },
    )
    .unwrap();
    assert!(!collect(&plain, 0)[0].has_text[3]);
}

#[test]
fn weighted_epochs_draw_in_proportion_and_equal_weights_shuffle_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    // The last 10 samples weigh 3 each: 30 of 60, so half of every draw on average.
    let weights: Vec<f64> = (0..n).map(|i| if i >= 30 { 3.0 } else { 1.0 }).collect();
    let loader =
        Loader::with_weights(samples(dir.path(), n), &weights, None, config(8, 1)).unwrap();
    let mut heavy = 0usize;
    let epochs = 200;
    for epoch in 0..epochs {
        let order = loader.order(epoch);
        assert_eq!(order.len(), n);
        assert_eq!(order, loader.order(epoch), "the draw follows (seed, epoch)");
        heavy += order.iter().filter(|&&i| i >= 30).count();
    }
    let share = heavy as f64 / (epochs as usize * n) as f64;
    // 8000 draws: sd of the share is about 0.0056.
    assert!(
        (share - 0.5).abs() < 0.03,
        "share of the heavy samples {share}"
    );

    let plain = Loader::new(samples(dir.path(), n), None, config(8, 1)).unwrap();
    let equal =
        Loader::with_weights(samples(dir.path(), n), &vec![2.5; n], None, config(8, 1)).unwrap();
    assert_eq!(plain.order(3), equal.order(3));

    let err = Loader::with_weights(
        samples(dir.path(), n),
        &vec![1.0; n - 1],
        None,
        config(8, 1),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("39 weights for 40 samples"), "{err}");
    let mut bad = vec![1.0; n];
    bad[5] = f64::NAN;
    let err = Loader::with_weights(samples(dir.path(), n), &bad, None, config(8, 1))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
}
