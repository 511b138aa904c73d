//! From free-text reports to labels, and from labels back to training text: the two
//! directions of umcl's data unification, with the built-in chest X-ray schema, labeler
//! rules and sentence pools.
//!
//! Run with `cargo run -p umcl-data --example reports_to_training_text`, or copy this file
//! into a project that depends on `umcl-data` (no libtorch needed).

use umcl_data::labeler::Labeler;
use umcl_data::schema::{LabelState, Schema};
use umcl_data::synth::Synthesizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = Schema::chest_xray();
    let labeler = Labeler::builtin();
    let synth = Synthesizer::builtin(&schema)?;

    let reports = [
        "Small left pleural effusion. No pneumothorax.",
        "Heart size is normal. Possible right lower lobe pneumonia.",
        "No acute cardiopulmonary process.",
    ];
    for (i, report) in reports.iter().enumerate() {
        // Report -> labels: rule-based mentions with negation and uncertainty.
        let labels = labeler.label(report);
        let found: Vec<String> = labels
            .iter()
            .filter(|(_, state)| *state != LabelState::Unmentioned)
            .map(|(key, state)| format!("{key}={}", state.as_chexpert()))
            .collect();
        println!("report {i}: {report}");
        println!("  labels: {}", found.join(", "));

        // Labels -> text: the sentence a label-only sample would train with. Labels carry no
        // side or size, so the synthesizer draws them from its pools (seeded per sample).
        let states: Vec<LabelState> = schema
            .keys()
            .map(|key| labels.get(key).unwrap_or_default())
            .collect();
        let text = synth.synthesize_for(&format!("report-{i}"), &states, 0);
        println!("  synthesized: {text}");
    }
    Ok(())
}
