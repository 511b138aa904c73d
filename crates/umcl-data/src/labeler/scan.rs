//! Reading a report: normalise the text, find every rule phrase in one matcher pass, split
//! it into clauses and resolve each mention against the cues around it.

use std::cell::RefCell;

use aho_corasick::Input;

use super::compile::{Polarity, Role};
use super::{Labeler, Labels, Mention, NO_FINDING, NUM_LABELS};
use crate::schema::LabelState;

impl Labeler {
    /// Labels one report text.
    pub fn label(&self, text: &str) -> Labels {
        self.label_sections(&[text])
    }

    /// Labels a report given as sections (e.g. findings and impression); each section ends a
    /// sentence. Allocation-free after the first call on a thread (buffers are reused).
    pub fn label_sections(&self, sections: &[&str]) -> Labels {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.label_into(sections, &mut scratch),
            // Only reachable if labeling re-entered itself on this thread; use fresh buffers.
            Err(_) => self.label_into(sections, &mut Scratch::default()),
        })
    }

    /// Every mention the rules find in a report, with the state its cues give it, in text
    /// order: the labeler's reasoning, for checking and improving rules. Extra findings (those
    /// outside the schema that only cancel `no_finding`) are included.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    /// use umcl_data::schema::LabelState;
    ///
    /// let mentions = Labeler::builtin().mentions(&["No pneumothorax or effusion."]);
    /// assert_eq!(mentions[0].finding, "pneumothorax");
    /// assert_eq!(mentions[1].state, LabelState::Negative);
    /// assert_eq!(mentions[1].phrase, "effusion");
    /// ```
    pub fn mentions(&self, sections: &[&str]) -> Vec<Mention> {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        self.run(sections, &mut s, Some(&mut out));
        out
    }

    fn mention(
        &self,
        text: &[u8],
        finding: u16,
        state: LabelState,
        a: &Event,
        b: &Event,
    ) -> Mention {
        Mention {
            finding: self.finding_names[finding as usize].clone(),
            state,
            phrase: String::from_utf8_lossy(&text[a.byte_start as usize..b.byte_end as usize])
                .into_owned(),
        }
    }

    fn label_into(&self, sections: &[&str], s: &mut Scratch) -> Labels {
        self.run(sections, s, None);
        let mut labels = Labels::default();
        labels.0[1..].copy_from_slice(&s.states[1..NUM_LABELS]);
        let any_finding = s.states.iter().enumerate().any(|(i, st)| {
            i != NO_FINDING
                && !self.no_finding_ignores[i]
                && matches!(st, LabelState::Positive | LabelState::Uncertain)
        });
        labels.0[NO_FINDING] = if any_finding {
            LabelState::Unmentioned
        } else {
            LabelState::Positive
        };
        labels
    }

    fn run(&self, sections: &[&str], s: &mut Scratch, mut sink: Option<&mut Vec<Mention>>) {
        s.text.clear();
        for section in sections {
            push_normalized(&mut s.text, section);
            // A section break is a sentence break.
            s.text.extend_from_slice(b" . ");
        }
        self.find_events(s);
        s.states.clear();
        s.states
            .resize(self.finding_names.len(), LabelState::Unmentioned);
        let mut start = 0;
        while start < s.events.len() {
            let clause = s.events[start].clause;
            let mut end = start;
            while end < s.events.len() && s.events[end].clause == clause {
                end += 1;
            }
            self.resolve_clause(
                &s.text,
                &s.events[start..end],
                &mut s.states,
                sink.as_deref_mut(),
            );
            start = end;
        }
    }

    /// One pass of the matcher: every phrase occurrence on word boundaries, with its word
    /// position and clause number.
    fn find_events(&self, s: &mut Scratch) {
        s.events.clear();
        let hay = &s.text[..];
        let mut pos = 0;
        let mut counter = Counter::default();
        while pos < hay.len() {
            let Some(m) = self.matcher.find(Input::new(hay).span(pos..hay.len())) else {
                break;
            };
            let info = self.patterns[m.pattern().as_usize()];
            let before_ok = m.start() == 0 || !is_word_byte(hay[m.start() - 1]);
            let after_ok = info.prefix || m.end() == hay.len() || !is_word_byte(hay[m.end()]);
            if !(before_ok && after_ok) {
                pos = m.start() + 1;
                continue;
            }
            counter.advance(hay, m.start());
            let word_start = counter.words;
            let clause = counter.clause;
            counter.advance(hay, m.end());
            let roles = &self.roles[info.roles_start as usize..info.roles_end as usize];
            s.events.push(Event {
                pattern: m.pattern().as_u32(),
                byte_start: m.start() as u32,
                byte_end: m.end() as u32,
                word_start,
                word_end: counter.words,
                clause,
            });
            if roles.contains(&Role::Terminator) {
                counter.clause += 1;
            }
            pos = m.end();
        }
    }

    fn roles_of(&self, e: &Event) -> &[Role] {
        let info = self.patterns[e.pattern as usize];
        &self.roles[info.roles_start as usize..info.roles_end as usize]
    }

    /// Resolves the mentions of one clause and merges them into `states`.
    fn resolve_clause(
        &self,
        text: &[u8],
        events: &[Event],
        states: &mut [LabelState],
        mut sink: Option<&mut Vec<Mention>>,
    ) {
        for (i, e) in events.iter().enumerate() {
            for &role in self.roles_of(e) {
                match role {
                    Role::Mention(f, uncertain) => {
                        let mut st = self.cue_state(events, i, i);
                        if uncertain && st == LabelState::Positive {
                            st = LabelState::Uncertain;
                        }
                        states[f as usize] = states[f as usize].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            out.push(self.mention(text, f, st, e, e));
                        }
                    }
                    Role::Attribute(g, polarity) => {
                        let group = &self.groups[g as usize];
                        let subject = events.iter().enumerate().find(|(_, s)| {
                            self.roles_of(s).contains(&Role::Subject(g))
                                && word_gap(s, e).min(word_gap(e, s)) <= group.window
                        });
                        let Some((j, _)) = subject else {
                            continue;
                        };
                        let st = match polarity {
                            Polarity::Negative => LabelState::Negative,
                            Polarity::Uncertain => match self.cue_state(events, j.min(i), j.max(i))
                            {
                                LabelState::Negative => LabelState::Negative,
                                _ => LabelState::Uncertain,
                            },
                            Polarity::Positive => self.cue_state(events, j.min(i), j.max(i)),
                        };
                        let g = group.finding as usize;
                        states[g] = states[g].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            let (a, b) = if j < i {
                                (&events[j], e)
                            } else {
                                (e, &events[j])
                            };
                            out.push(self.mention(text, group.finding, st, a, b));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The state a mention spanning events `first..=last` of a clause gets from the cues
    /// around it: the nearest cue in reach decides (pre-cues may also sit inside the span,
    /// as in `heart is not enlarged`).
    fn cue_state(&self, events: &[Event], first: usize, last: usize) -> LabelState {
        let (head, tail) = (&events[first], &events[last]);
        let mut best: Option<(u32, LabelState)> = None;
        let mut consider = |gap: u32, st: LabelState| {
            if best.is_none_or(|(g, _)| gap < g) {
                best = Some((gap, st));
            }
        };
        for (k, c) in events.iter().enumerate() {
            if k == first || k == last {
                continue;
            }
            for &role in self.roles_of(c) {
                let (pre, st, (pre_window, post_window)) = match role {
                    Role::NegPre => (true, LabelState::Negative, self.negation_windows),
                    Role::UncPre => (true, LabelState::Uncertain, self.uncertainty_windows),
                    Role::NegPost => (false, LabelState::Negative, self.negation_windows),
                    Role::UncPost => (false, LabelState::Uncertain, self.uncertainty_windows),
                    _ => continue,
                };
                if pre && k < last && c.word_end <= tail.word_start {
                    // Measured to the span's start, so a cue inside the span has gap 0.
                    let gap = head.word_start.saturating_sub(c.word_end);
                    if gap <= pre_window {
                        consider(gap, st);
                    }
                } else if !pre && k > first && c.word_start >= head.word_end {
                    let gap = c.word_start.saturating_sub(tail.word_end);
                    if gap <= post_window {
                        consider(gap, st);
                    }
                }
            }
        }
        best.map_or(LabelState::Positive, |(_, st)| st)
    }
}

/// Words strictly between the end of `a` and the start of `b` (0 when they touch or overlap).
fn word_gap(a: &Event, b: &Event) -> u32 {
    b.word_start.saturating_sub(a.word_end)
}

#[derive(Clone, Copy, Debug)]
struct Event {
    pattern: u32,
    byte_start: u32,
    byte_end: u32,
    word_start: u32,
    word_end: u32,
    clause: u32,
}

#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    events: Vec<Event>,
    states: Vec<LabelState>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Bytes that belong to words: ASCII letters and digits, and every byte of a non-ASCII
/// character.
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b >= 0x80
}

/// Appends `text` lowercased (ASCII), with each run of white space as one space.
fn push_normalized(out: &mut Vec<u8>, text: &str) {
    let mut space = true;
    for &b in text.as_bytes() {
        if b.is_ascii_whitespace() {
            if !space {
                out.push(b' ');
                space = true;
            }
        } else {
            out.push(b.to_ascii_lowercase());
            space = false;
        }
    }
    if !space {
        out.push(b' ');
    }
}

/// Counts words and clause breaks while walking the normalized text left to right.
#[derive(Default)]
struct Counter {
    pos: usize,
    words: u32,
    clause: u32,
    in_word: bool,
}

impl Counter {
    fn advance(&mut self, hay: &[u8], to: usize) {
        while self.pos < to {
            let b = hay[self.pos];
            if is_word_byte(b) {
                if !self.in_word {
                    self.words += 1;
                    self.in_word = true;
                }
            } else {
                self.in_word = false;
                let ends = match b {
                    b'.' => !hay.get(self.pos + 1).is_some_and(u8::is_ascii_digit),
                    b'?' | b'!' | b';' | b':' => true,
                    _ => false,
                };
                if ends {
                    self.clause += 1;
                }
            }
            self.pos += 1;
        }
    }
}
