//! Reading a report: normalise the text, find every rule phrase in one matcher pass, drop the
//! sections that are not labelled, split the rest into clauses and resolve each mention
//! against the cues around it.

use std::cell::RefCell;

use aho_corasick::Input;

use super::compile::{Polarity, Role};
use super::{Labeler, Labels, Mention, Reading, NO_FINDING, NUM_LABELS};
use crate::schema::LabelState;

impl Labeler {
    /// Labels one report text.
    pub fn label(&self, text: &str) -> Labels {
        self.label_sections(&[text])
    }

    /// Labels a report given as sections (e.g. findings and impression); each section ends a
    /// sentence. Allocation-free after the first call on a thread (buffers are reused).
    pub fn label_sections(&self, sections: &[&str]) -> Labels {
        self.read(sections).labels
    }

    /// Labels a report and says whether it had radiological content at all: a text with no
    /// mention and no radiological wording (a clinical note) gets no labels, not even
    /// `no_finding`.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    /// use umcl_data::schema::LabelState;
    ///
    /// let labeler = Labeler::builtin();
    /// let note = labeler.read(&["Patient with fever and cough for five days."]);
    /// assert!(!note.radiological && note.labels.is_empty());
    /// let report = labeler.read(&["The lungs are clear."]);
    /// assert!(report.radiological);
    /// assert_eq!(report.labels.get("no_finding"), Some(LabelState::Positive));
    /// ```
    pub fn read(&self, sections: &[&str]) -> Reading {
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.read_into(sections, &mut scratch),
            // Only reachable if labeling re-entered itself on this thread; use fresh buffers.
            Err(_) => self.read_into(sections, &mut Scratch::default()),
        })
    }

    /// Every mention the rules find in a report, with the state its cues give it, the cue
    /// that decided and its clause, in text order: the labeler's reasoning, for checking and
    /// explaining labels. Extra findings (those outside the schema that only cancel
    /// `no_finding`) are included; skipped sections (`Indication: ...`) are not.
    ///
    /// ```
    /// use umcl_data::labeler::Labeler;
    /// use umcl_data::schema::LabelState;
    ///
    /// let mentions = Labeler::builtin().mentions(&["No pneumothorax or effusion."]);
    /// assert_eq!(mentions[0].finding, "pneumothorax");
    /// assert_eq!(mentions[1].state, LabelState::Negative);
    /// assert_eq!(mentions[1].phrase, "effusion");
    /// assert_eq!(mentions[1].cue.as_deref(), Some("no"));
    /// assert_eq!(mentions[1].clause, "no pneumothorax or effusion");
    /// ```
    pub fn mentions(&self, sections: &[&str]) -> Vec<Mention> {
        let mut s = Scratch::default();
        let mut out = Vec::new();
        self.run(sections, &mut s, Some(&mut out));
        out
    }

    fn read_into(&self, sections: &[&str], s: &mut Scratch) -> Reading {
        self.run(sections, s, None);
        let mut labels = Labels::default();
        if !s.radiological {
            return Reading {
                labels,
                radiological: false,
            };
        }
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
        Reading {
            labels,
            radiological: true,
        }
    }

    fn run(&self, sections: &[&str], s: &mut Scratch, mut sink: Option<&mut Vec<Mention>>) {
        s.text.clear();
        s.section_ends.clear();
        for section in sections {
            push_normalized(&mut s.text, section);
            // A section break is a sentence break.
            s.text.extend_from_slice(b" . ");
            s.section_ends.push(s.text.len() as u32);
        }
        let headers = self.find_events(s);
        if headers {
            self.skip_sections(s);
        }
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
            let ctx = ClauseCtx {
                text: &s.text,
                clauses: &s.clauses,
                clause,
                question: s.clauses.question[clause as usize],
            };
            self.resolve_clause(
                &ctx,
                &s.events[start..end],
                &mut s.states,
                sink.as_deref_mut(),
            );
            start = end;
        }
        // Radiological content: a finding of the schema was read (in any state), or the text
        // uses radiological wording. Extra findings (`chronic`, `elevated`) and bare attribute
        // subjects (`heart` in "heart rate") are common in clinical notes and do not count.
        s.radiological = s.states[1..NUM_LABELS]
            .iter()
            .any(|st| *st != LabelState::Unmentioned)
            || s.events
                .iter()
                .any(|e| self.patterns[e.pattern as usize].content);
    }

    /// One pass of the matcher: every phrase occurrence on word boundaries, with its word
    /// position, sentence and clause. Returns whether a section header was found.
    fn find_events(&self, s: &mut Scratch) -> bool {
        s.events.clear();
        s.clauses.clear();
        let hay = &s.text[..];
        let clauses = &mut s.clauses;
        let mut pos = 0;
        let mut counter = Counter::default();
        let mut headers = false;
        while pos < hay.len() {
            let Some(m) = self.matcher.find(Input::new(hay).span(pos..hay.len())) else {
                break;
            };
            let info = self.patterns[m.pattern().as_usize()];
            let before_ok = info.open_start || m.start() == 0 || !is_word_byte(hay[m.start() - 1]);
            let after_ok = info.open_end || m.end() == hay.len() || !is_word_byte(hay[m.end()]);
            if !(before_ok && after_ok) {
                pos = m.start() + 1;
                continue;
            }
            // A cue joined to the next word by a hyphen is a prefix of that word, not a cue:
            // "non-displaced fracture" states a fracture.
            if info.cue
                && hay.get(m.end()) == Some(&b'-')
                && hay.get(m.end() + 1).is_some_and(|&b| is_word_byte(b))
            {
                pos = m.end();
                continue;
            }
            counter.advance(hay, m.start(), clauses);
            let word_start = counter.words;
            let clause = counter.clause;
            let sentence = counter.sentence;
            counter.advance(hay, m.end(), clauses);
            let roles = &self.roles[info.roles_start as usize..info.roles_end as usize];
            s.events.push(Event {
                pattern: m.pattern().as_u32(),
                byte_start: m.start() as u32,
                byte_end: m.end() as u32,
                word_start,
                word_end: counter.words,
                clause,
                sentence,
            });
            headers |= info.header;
            if roles.contains(&Role::Terminator) {
                counter.new_clause(m.start(), m.end(), false, clauses);
            }
            pos = m.end();
        }
        counter.advance(hay, hay.len(), clauses);
        headers
    }

    /// Drops the events of skipped sections and all header events. Text after a `skip`
    /// header (`indication:`) is skipped up to the next header of its section, or, when no
    /// header follows, to the end of the sentence after the header.
    fn skip_sections(&self, s: &mut Scratch) {
        let section_end = |byte: u32| {
            s.section_ends
                .iter()
                .copied()
                .find(|&end| byte < end)
                .unwrap_or(u32::MAX)
        };
        let is_header = |e: &Event| self.patterns[e.pattern as usize].header;
        let mut keep = std::mem::take(&mut s.keep);
        keep.clear();
        keep.resize(s.events.len(), true);
        for (i, e) in s.events.iter().enumerate() {
            if !is_header(e) {
                continue;
            }
            keep[i] = false;
            if !self.roles_of(e).contains(&Role::SkipSection) {
                continue;
            }
            let end = section_end(e.byte_start);
            let next_header = s.events[i + 1..]
                .iter()
                .take_while(|n| n.byte_start < end)
                .any(is_header);
            for (j, n) in s.events.iter().enumerate().skip(i + 1) {
                if n.byte_start >= end || is_header(n) {
                    break;
                }
                if !next_header && n.sentence > e.sentence + 1 {
                    break;
                }
                keep[j] = false;
            }
        }
        let mut k = 0;
        s.events.retain(|_| {
            k += 1;
            keep[k - 1]
        });
        s.keep = keep;
    }

    /// Whether the event mentions a finding by itself (not as an attribute's subject).
    fn names_finding(&self, e: &Event) -> bool {
        self.roles_of(e)
            .iter()
            .any(|r| matches!(r, Role::Mention(..)))
    }

    fn roles_of(&self, e: &Event) -> &[Role] {
        let info = self.patterns[e.pattern as usize];
        &self.roles[info.roles_start as usize..info.roles_end as usize]
    }

    /// Resolves the mentions of one clause and merges them into `states`.
    fn resolve_clause(
        &self,
        ctx: &ClauseCtx<'_>,
        events: &[Event],
        states: &mut [LabelState],
        mut sink: Option<&mut Vec<Mention>>,
    ) {
        for (i, e) in events.iter().enumerate() {
            for &role in self.roles_of(e) {
                match role {
                    Role::Mention(f, uncertain) => {
                        let (mut st, mut cue) = self.cue_state(ctx, events, i, i);
                        if uncertain && st == LabelState::Positive {
                            st = LabelState::Uncertain;
                            cue = Cue::None;
                        }
                        states[f as usize] = states[f as usize].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            out.push(self.mention(ctx, events, f, st, cue, (e, e)));
                        }
                    }
                    Role::Attribute(g, polarity) => {
                        let group = &self.groups[g as usize];
                        // The subject pairs with the attribute only when no other finding is
                        // named between them: "large hiatal hernia over the cardiac silhouette"
                        // says nothing about the heart's size.
                        let subject = events.iter().enumerate().find(|&(j, s)| {
                            self.roles_of(s).contains(&Role::Subject(g))
                                && word_gap(s, e).min(word_gap(e, s)) <= group.window
                                && !events[j.min(i) + 1..j.max(i)]
                                    .iter()
                                    .any(|between| self.names_finding(between))
                        });
                        let Some((j, _)) = subject else {
                            continue;
                        };
                        let (st, cue) = match polarity {
                            Polarity::Negative => (LabelState::Negative, Cue::None),
                            Polarity::Uncertain => {
                                match self.cue_state(ctx, events, j.min(i), j.max(i)) {
                                    (LabelState::Negative, cue) => (LabelState::Negative, cue),
                                    _ => (LabelState::Uncertain, Cue::None),
                                }
                            }
                            Polarity::Positive => self.cue_state(ctx, events, j.min(i), j.max(i)),
                        };
                        let g = group.finding as usize;
                        states[g] = states[g].merge(st);
                        if let Some(out) = sink.as_deref_mut() {
                            let span = if j < i {
                                (&events[j], e)
                            } else {
                                (e, &events[j])
                            };
                            out.push(self.mention(ctx, events, group.finding, st, cue, span));
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    fn mention(
        &self,
        ctx: &ClauseCtx<'_>,
        events: &[Event],
        finding: u16,
        state: LabelState,
        cue: Cue,
        (a, b): (&Event, &Event),
    ) -> Mention {
        let slice = |from: u32, to: u32| {
            String::from_utf8_lossy(&ctx.text[from as usize..to as usize]).into_owned()
        };
        let (from, to) = ctx.clauses.span(ctx.clause, ctx.text.len());
        let clause = slice(from, to);
        let clause = clause.trim_matches(|c: char| c == ' ' || c.is_ascii_punctuation());
        Mention {
            finding: self.finding_names[finding as usize].clone(),
            state,
            phrase: slice(a.byte_start, b.byte_end),
            cue: match cue {
                Cue::None => None,
                Cue::Question => Some("?".into()),
                Cue::Event(k) => Some(slice(events[k].byte_start, events[k].byte_end)),
            },
            clause: clause.to_string(),
        }
    }

    /// The state a mention spanning events `first..=last` of a clause gets from the cues
    /// around it: the nearest cue in reach decides (pre-cues may also sit inside the span,
    /// as in `heart is not enlarged`). A positive mention in a question is uncertain.
    fn cue_state(
        &self,
        ctx: &ClauseCtx<'_>,
        events: &[Event],
        first: usize,
        last: usize,
    ) -> (LabelState, Cue) {
        let (head, tail) = (&events[first], &events[last]);
        let mut best: Option<(u32, LabelState, usize)> = None;
        let mut consider = |gap: u32, st: LabelState, k: usize| {
            if best.is_none_or(|(g, _, _)| gap < g) {
                best = Some((gap, st, k));
            }
        };
        for (k, c) in events.iter().enumerate() {
            if k == first || k == last || !self.patterns[c.pattern as usize].cue {
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
                        consider(gap, st, k);
                    }
                } else if !pre && k > first && c.word_start >= head.word_end {
                    let gap = c.word_start.saturating_sub(tail.word_end);
                    if gap <= post_window {
                        consider(gap, st, k);
                    }
                }
            }
        }
        match best {
            Some((_, st, k)) => (st, Cue::Event(k)),
            None if ctx.question => (LabelState::Uncertain, Cue::Question),
            None => (LabelState::Positive, Cue::None),
        }
    }
}

/// What decided a mention's state.
#[derive(Clone, Copy)]
enum Cue {
    None,
    /// The clause is a question (`Pneumonia?`, `?effusion`).
    Question,
    /// The cue event at this index of the clause.
    Event(usize),
}

/// The clause being resolved.
struct ClauseCtx<'a> {
    text: &'a [u8],
    clauses: &'a Clauses,
    clause: u32,
    question: bool,
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
    sentence: u32,
}

/// Per clause of the text: where it starts and ends, and whether it is a question.
#[derive(Default)]
struct Clauses {
    start: Vec<u32>,
    /// The end of every clause but the last (a terminator phrase belongs to neither side).
    end: Vec<u32>,
    question: Vec<bool>,
}

impl Clauses {
    fn clear(&mut self) {
        self.start.clear();
        self.end.clear();
        self.question.clear();
        self.start.push(0);
        self.question.push(false);
    }

    /// Byte range of clause `c` in a text of `len` bytes.
    fn span(&self, c: u32, len: usize) -> (u32, u32) {
        let c = c as usize;
        let end = self.end.get(c).copied().unwrap_or(len as u32);
        (self.start[c], end)
    }
}

#[derive(Default)]
struct Scratch {
    text: Vec<u8>,
    section_ends: Vec<u32>,
    events: Vec<Event>,
    clauses: Clauses,
    states: Vec<LabelState>,
    radiological: bool,
    /// Which events survive section skipping.
    keep: Vec<bool>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Bytes that belong to words: ASCII letters and digits, and every byte of a non-ASCII
/// character.
pub(super) fn is_word_byte(b: u8) -> bool {
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

/// Counts words, sentences and clauses while walking the normalized text left to right.
#[derive(Default)]
struct Counter {
    pos: usize,
    words: u32,
    sentence: u32,
    clause: u32,
    in_word: bool,
    /// A word has been seen since the last clause break.
    clause_has_word: bool,
}

impl Counter {
    fn advance(&mut self, hay: &[u8], to: usize, clauses: &mut Clauses) {
        while self.pos < to {
            let b = hay[self.pos];
            if is_word_byte(b) {
                if !self.in_word {
                    self.words += 1;
                    self.in_word = true;
                    self.clause_has_word = true;
                }
            } else {
                let next_is_word = hay.get(self.pos + 1).is_some_and(|&n| is_word_byte(n));
                match b {
                    b'.' if !hay.get(self.pos + 1).is_some_and(u8::is_ascii_digit) => {
                        self.new_sentence(self.pos, false, clauses);
                    }
                    // `?effusion`, `? CHF`: a question mark before a word, or at the start of
                    // a clause, asks about what follows.
                    b'?' if (!self.in_word && next_is_word) || !self.clause_has_word => {
                        self.new_sentence(self.pos, true, clauses);
                    }
                    // `Pneumonia?`: the clause that ends here is a question.
                    b'?' => {
                        if let Some(q) = clauses.question.last_mut() {
                            *q = true;
                        }
                        self.new_sentence(self.pos, false, clauses);
                    }
                    b'!' | b';' | b':' => self.new_sentence(self.pos, false, clauses),
                    _ => {}
                }
                self.in_word = false;
            }
            self.pos += 1;
        }
    }

    /// A sentence break at byte `at` (`.`, `?`, ...).
    fn new_sentence(&mut self, at: usize, question: bool, clauses: &mut Clauses) {
        self.sentence += 1;
        self.new_clause(at, at + 1, question, clauses);
    }

    /// The clause ends at byte `end`; the next starts at `start`.
    fn new_clause(&mut self, end: usize, start: usize, question: bool, clauses: &mut Clauses) {
        self.clause += 1;
        self.clause_has_word = false;
        clauses.end.push(end as u32);
        clauses.start.push(start as u32);
        clauses.question.push(question);
    }
}
