//! The last step of unification, run on a manifest's samples before training: reports get
//! labels from the labeler, labels get text from the synthesizer, so every sample is an
//! (image, text, labels) triple with as much of each as can be had.
//!
//! ```
//! use umcl_data::labeler::Labeler;
//! use umcl_data::sample::Sample;
//! use umcl_data::schema::{LabelState, Schema};
//! use umcl_data::synth::Synthesizer;
//! use umcl_data::unify::{unify, TextSynthesis, UnifyOptions};
//!
//! let schema = Schema::chest_xray();
//! let mut report = Sample::new("r1", "example", &schema);
//! report.image = Some("r1.png".into());
//! report.text = Some("Small left pleural effusion.".into());
//! let mut labelled = Sample::new("l1", "example", &schema);
//! labelled.image = Some("l1.png".into());
//! labelled.labels[schema.index_of("edema").unwrap()] = LabelState::Positive;
//!
//! let opts = UnifyOptions { label_reports: true, text: TextSynthesis::Once { seed: 0 } };
//! let out = unify(vec![report, labelled], &opts, &Labeler::builtin(),
//!                 &Synthesizer::builtin(&schema).unwrap(), "example".as_ref()).unwrap();
//! assert_eq!(out.labelled_by_labeler, 1);
//! assert_eq!(out.synthesized, 1);
//! assert!(out.samples[1].text.as_deref().unwrap().to_lowercase().contains("edema"));
//! ```

use std::path::Path;

use crate::error::{DataError, Result};
use crate::labeler::Labeler;
use crate::sample::Sample;
use crate::synth::Synthesizer;

/// When a labelled sample without text gets a synthesized report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextSynthesis {
    /// Never: such a sample trains without text.
    Off,
    /// Once, here, drawn with `seed` (per sample, independent of order).
    Once {
        /// The base seed.
        seed: u64,
    },
    /// Later, anew each epoch, by the loader (`LoaderConfig::synthesize`): left without text
    /// here, but counted as usable.
    PerEpoch,
}

/// What [`unify`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnifyOptions {
    /// Label reports that have no labels with the labeler.
    pub label_reports: bool,
    /// Reports for labels without text.
    pub text: TextSynthesis,
}

/// The unified samples and what was done to them.
#[derive(Debug, Clone)]
pub struct Unified {
    /// The samples, in the manifest's order.
    pub samples: Vec<Sample>,
    /// Samples whose labels came from the labeler.
    pub labelled_by_labeler: usize,
    /// Texts the labeler found no radiological content in (a clinical note, not a report):
    /// they stay without labels.
    pub not_radiological: usize,
    /// Samples whose text was synthesized here.
    pub synthesized: usize,
    /// Samples without an image (they train the text side only).
    pub report_only: usize,
}

/// Unifies `samples` (read from `origin`, named in errors). A sample left with nothing to
/// train on is an error naming how many there are and the first ids: one with no text (nor
/// text to come, under [`TextSynthesis::PerEpoch`]) and no image, or an image with neither
/// text nor labels.
pub fn unify(
    mut samples: Vec<Sample>,
    opts: &UnifyOptions,
    labeler: &Labeler,
    synth: &Synthesizer,
    origin: &Path,
) -> Result<Unified> {
    let mut labelled_by_labeler = 0;
    let mut not_radiological = 0;
    if opts.label_reports {
        for s in samples.iter_mut().filter(|s| !s.has_labels()) {
            if let Some(text) = &s.text {
                let reading = labeler.read(&[text]);
                not_radiological += usize::from(!reading.radiological);
                s.labels = reading.labels.0.to_vec();
                labelled_by_labeler += usize::from(s.has_labels());
            }
        }
    }
    let mut synthesized = 0;
    if let TextSynthesis::Once { seed } = opts.text {
        for s in samples
            .iter_mut()
            .filter(|s| s.text.is_none() && s.has_labels())
        {
            s.text = Some(synth.synthesize_for(&s.id, &s.labels, seed));
            synthesized += 1;
        }
    }
    let per_epoch = opts.text == TextSynthesis::PerEpoch;
    // Text, or labels to synthesise it from each epoch.
    let text_coming = |s: &Sample| s.text.is_some() || (per_epoch && s.has_labels());
    // No text: without an image nothing is left; with one, only its labels could train it
    // (the prompt-label term), so an image with neither is nothing to train on either.
    let unusable: Vec<&str> = samples
        .iter()
        .filter(|s| !text_coming(s) && (s.image.is_none() || !s.has_labels()))
        .map(|s| s.id.as_str())
        .collect();
    if !unusable.is_empty() {
        let first: Vec<&str> = unusable.iter().take(3).copied().collect();
        return Err(DataError::file(
            origin,
            format!(
                "{} samples of {} have nothing to train on: no text, and neither an image \
                 with labels nor labels to write a text from (first: {})",
                unusable.len(),
                samples.len(),
                first.join(", ")
            ),
        ));
    }
    let report_only = samples.iter().filter(|s| s.image.is_none()).count();
    Ok(Unified {
        samples,
        labelled_by_labeler,
        not_radiological,
        synthesized,
        report_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{LabelState, Schema};

    #[test]
    fn a_sample_with_nothing_to_train_on_is_an_error_naming_it_unless_text_comes_later() {
        let schema = Schema::chest_xray();
        let mut empty = Sample::new("lonely", "test", &schema);
        empty.labels[0] = LabelState::Positive;
        let synth = Synthesizer::builtin(&schema).unwrap();
        let run = |text| {
            let opts = UnifyOptions {
                label_reports: true,
                text,
            };
            unify(
                vec![empty.clone()],
                &opts,
                &Labeler::builtin(),
                &synth,
                Path::new("m.jsonl"),
            )
        };
        let err = run(TextSynthesis::Off).unwrap_err().to_string();
        assert!(err.contains("m.jsonl") && err.contains("lonely"), "{err}");
        let later = run(TextSynthesis::PerEpoch).unwrap();
        assert_eq!((later.synthesized, later.report_only), (0, 1));
        let once = run(TextSynthesis::Once { seed: 1 }).unwrap();
        assert_eq!(once.synthesized, 1);
        assert!(once.samples[0].text.is_some());

        // An image without text or labels trains nothing (the loss would be 0); with labels
        // it trains the prompt-label term.
        let mut image_only = Sample::new("blank", "test", &schema);
        image_only.image = Some("x.png".into());
        let opts = UnifyOptions {
            label_reports: true,
            text: TextSynthesis::Once { seed: 1 },
        };
        let labeler = Labeler::builtin();
        let err = unify(
            vec![image_only.clone()],
            &opts,
            &labeler,
            &synth,
            Path::new("m.jsonl"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("blank") && err.contains("nothing to train on"),
            "{err}"
        );
        image_only.labels[0] = LabelState::Negative;
        let off = UnifyOptions {
            label_reports: true,
            text: TextSynthesis::Off,
        };
        assert!(unify(
            vec![image_only],
            &off,
            &labeler,
            &synth,
            Path::new("m.jsonl")
        )
        .is_ok());
    }
}
