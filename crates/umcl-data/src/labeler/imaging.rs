//! The imaging part of a free text: its sentences with radiological content.

use super::Labeler;

impl Labeler {
    /// The sentences of `text` that the rules read as radiological (a finding mentioned in any
    /// state, or radiological wording such as `lungs` or `radiograph`), joined by one space;
    /// empty when there are none. For clinical notes that mix history, treatment and imaging,
    /// this keeps what an image can be matched with.
    ///
    /// Sentences end at `.`, `?` or `!` before white space, and at line breaks.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    ///
    /// let note = "A 65-year-old man with fever for five days. Chest radiograph showed \
    ///             bilateral opacities.\nHe was intubated on day 3.";
    /// let imaging = Labeler::builtin().imaging_part(note);
    /// assert_eq!(imaging, "Chest radiograph showed bilateral opacities.");
    /// assert_eq!(Labeler::builtin().imaging_part("Fever and cough."), "");
    /// ```
    pub fn imaging_part(&self, text: &str) -> String {
        let mut out = String::new();
        for sentence in sentences(text) {
            if self.read(&[sentence]).radiological {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(sentence);
            }
        }
        out
    }
}

/// The trimmed, non-empty sentences of `text`.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len();
        let mut next = rest.len();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            let after = chars.peek().map(|&(_, n)| n);
            let ends = match c {
                '\n' | '\r' => true,
                '.' | '?' | '!' => after.is_none_or(char::is_whitespace),
                _ => false,
            };
            if ends {
                end = if matches!(c, '\n' | '\r') {
                    i
                } else {
                    i + c.len_utf8()
                };
                next = i + c.len_utf8();
                break;
            }
        }
        let sentence = rest[..end].trim();
        rest = &rest[next..];
        if !sentence.is_empty() {
            return Some(sentence);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::sentences;

    #[test]
    fn sentences_end_at_stops_before_space_and_at_line_breaks() {
        let text = "Temp 38.5 C. Why? CT: ground-glass!\r\n\nDr.Smith saw him.";
        let got: Vec<&str> = sentences(text).collect();
        assert_eq!(
            got,
            [
                "Temp 38.5 C.",
                "Why?",
                "CT: ground-glass!",
                "Dr.Smith saw him."
            ]
        );
        assert_eq!(sentences("  \n ").count(), 0);
        assert_eq!(
            sentences("no stop at the end").collect::<Vec<_>>(),
            ["no stop at the end"]
        );
    }
}
