"""Python regex report labeler with the rules of umcl's labeler, for the `labeler` bench.

Reads the same rule file (crates/umcl-data/data/labeler/chest-xray.toml: mention phrases, ignore
and pseudo phrases, negation and uncertainty cues before and after a mention, scope terminators
and windows, section headers, radiological content words, attribute rules, extra abnormalities,
no_finding exemptions) and applies the rules the way crates/umcl-data/src/labeler/ (mod.rs,
scan.rs) documents them, written independently in Python. Only one rule file is read (no
layers); a table or list that the file leaves out counts as empty.

1. ASCII-lowercase the text, collapse white space; each section (input column) ends with " . ".
2. One regex (a trie of every rule phrase, so the longest phrase wins at a position) finds
   phrases leftmost-longest; a match not on word boundaries is dropped and the search goes on
   one character later. Only a side of a phrase that is a word character needs a boundary: a
   phrase ending in `*` (a word prefix) or in punctuation (`indication:`) may be followed by
   anything, one starting with punctuation may follow anything. A cue glued to the next word
   by a hyphen ("non-displaced") is a prefix, not a cue: it is dropped and the search goes on
   after it.
3. Sentences end at `.` (not before a digit), `?`, `!`, `;`, `:`; a terminator phrase ends a
   clause after itself. A `?` that asks about what follows (one with no word of its clause
   before it, as in "? CHF", or one touching the next word but not the previous, as in
   "?effusion") ends the clause and makes the next clause a question; any other `?`
   ("Pneumonia?") makes the clause it ends a question.
4. Section headers (`[sections]`; only when the text has one): header matches themselves are
   dropped; after a `skip` header the matches up to the next header of the same input column
   are dropped, or, with no later header in that column, those of the sentence that follows
   the header (its own colon ends the header's sentence).
5. Cues act inside their clause within their word windows: the nearest cue in reach decides a
   mention (negation -> 0, uncertainty -> -1); with no cue a mention is 1, or -1 in a question.
   Attribute rules pair a subject and an attribute within a word window in one clause, unless
   a finding mention stands between the two.
6. Per label: positive over uncertain over negative over unmentioned (-2); no_finding is 1
   when no finding (except the exempt ones) is positive or uncertain, else -2.
7. A text is radiological when some schema label was read (any state) or a remaining match is a
   `[content]` phrase or a finding's ignore phrase; otherwise all 17 codes are -2, no_finding
   included (a clinical note, or an empty report).

Label codes: 1 positive, 0 negative, -1 uncertain, -2 unmentioned.

  .venv-ref/bin/python crates/umcl-data/benches/reference/labeler.py \
      --rules crates/umcl-data/data/labeler/chest-xray.toml \
      --reports ../shared/data/iu-xray-reports/reports-dev.csv \
      --labels-out /tmp/py-labels.tsv --passes 3
Writes `uid<TAB>17 codes` per report (with --labels-out) and prints one JSON line:
{"reports", "passes", "seconds", "reports_per_s", "cpu_s", "python"}.
"""

import argparse
import csv
import json
import re
import sys
import time
from bisect import bisect_left

try:
    import tomllib
except ImportError:  # Python < 3.11
    import tomli as tomllib

KEYS = [
    "no_finding", "enlarged_cardiomediastinum", "cardiomegaly", "lung_opacity", "lung_lesion",
    "edema", "consolidation", "pneumonia", "atelectasis", "pneumothorax", "pleural_effusion",
    "pleural_other", "fracture", "support_devices", "emphysema", "fibrosis", "hernia",
]
POS, NEG, UNC, UNM = 1, 0, -1, -2
RANK = {POS: 3, UNC: 2, NEG: 1, UNM: 0}
NEG_PRE, NEG_POST, UNC_PRE, UNC_POST, TERM, IGNORE = "neg_pre", "neg_post", "unc_pre", \
    "unc_post", "term", "ignore"
SKIP, KEEP, CONTENT = "skip", "keep", "content"
INF = float("inf")
CUES = (NEG_PRE, NEG_POST, UNC_PRE, UNC_POST)
WS_RUN = re.compile("[ \t\n\r\x0c]+")
ASCII_WORD = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# Word runs (ASCII letters and digits, any non-ASCII character) of a normalized (lowercased) text,
# and the characters that end a sentence (a '.' only when no digit follows it).
WORD_RUN = re.compile("[0-9a-z\x80-\U0010ffff]+")
BREAK = re.compile(r"\.(?![0-9])|[?!;:]")


def is_word(ch):
    """ASCII letters and digits, and every non-ASCII character."""
    return ch >= "\x80" or ch in ASCII_WORD


def normalize(text):
    """ASCII-lowercased, each white-space run one space, a trailing space when non-empty."""
    out = WS_RUN.sub(" ", text)
    if out.startswith(" "):
        out = out[1:]
    if out and not out.endswith(" "):
        out += " "
    return out.translate(LOWER)


def trie_regex(words):
    """A regex matching each word, the longest one at a given position (greedy trie)."""
    trie = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def emit(node):
        end = "" in node
        kids = [re.escape(ch) + emit(sub) for ch, sub in sorted(node.items()) if ch != ""]
        if not kids:
            return ""
        body = kids[0] if len(kids) == 1 else "(?:" + "|".join(kids) + ")"
        return "(?:" + body + ")?" if end else body

    return re.compile(emit(trie))


class Labeler:
    def __init__(self, rules_text):
        rules = tomllib.loads(rules_text)
        self.phrases, self.index, self.roles = [], {}, []
        self.add_all(rules.get("pseudo", []), IGNORE)
        scope = rules["scope"]
        self.add_all(scope.get("terminators", []), TERM)
        neg, unc = rules.get("negation", {}), rules.get("uncertainty", {})
        self.add_all(neg.get("pre", []), NEG_PRE)
        self.add_all(neg.get("post", []), NEG_POST)
        self.add_all(unc.get("pre", []), UNC_PRE)
        self.add_all(unc.get("post", []), UNC_POST)
        sections = rules.get("sections", {})
        self.add_all(sections.get("skip", []), SKIP)
        self.add_all(sections.get("keep", []), KEEP)
        self.add_all(rules.get("content", {}).get("phrases", []), CONTENT)
        self.neg_windows = (neg.get("pre_window", scope["pre_window"]),
                            neg.get("post_window", scope["post_window"]))
        self.unc_windows = (unc.get("pre_window", scope["pre_window"]),
                            unc.get("post_window", scope["post_window"]))
        self.findings = list(KEYS)
        self.group_finding, self.group_window = [], []
        ignored = set()  # a finding's ignore phrases are radiological wording
        for finding, extra in [(f, False) for f in rules.get("label", [])] + \
                [(f, True) for f in rules.get("extra", [])]:
            if extra:
                self.findings.append(finding["key"])
                idx = len(self.findings) - 1
            else:
                idx = KEYS.index(finding["key"])
            self.add_all(finding.get("mentions", []), ("mention", idx, False))
            self.add_all(finding.get("uncertain_mentions", []), ("mention", idx, True))
            self.add_all(finding.get("ignore", []), IGNORE)
            ignored.update(self.norm(p) for p in finding.get("ignore", []))
            for attr in finding.get("attribute", []):
                g = len(self.group_finding)
                self.group_finding.append(idx)
                self.group_window.append(attr["window"])
                self.add_all(attr["subjects"], ("subject", g))
                for pol, st in (("positive", POS), ("negative", NEG), ("uncertain", UNC)):
                    self.add_all(attr.get(pol, []), ("attr", g, st))
        exempt = set(rules.get("no_finding", {}).get("ignore", []))
        self.exempt = [name in exempt for name in self.findings]
        # Per phrase: which sides need a word boundary, and flags the scan looks up per match.
        self.open_end = [p.endswith("*") or not is_word(p[-1]) for p in self.phrases]
        self.open_start = [not is_word(p[0]) for p in self.phrases]
        self.cue = [any(r in CUES for r in rs) for rs in self.roles]
        self.term = [TERM in rs for rs in self.roles]
        self.header = [SKIP in rs or KEEP in rs for rs in self.roles]
        self.skip = [SKIP in rs for rs in self.roles]
        self.content = [p in ignored or CONTENT in rs for p, rs in zip(self.phrases, self.roles)]
        self.names_finding = [any(type(r) is tuple and r[0] == "mention" for r in rs)
                              for rs in self.roles]
        needles = [p.rstrip("*") for p in self.phrases]
        self.by_needle = {}
        for i, n in enumerate(needles):  # the first of equal needles, as the Rust matcher
            self.by_needle.setdefault(n, i)
        self.regex = trie_regex(needles)

    @staticmethod
    def norm(p):
        return " ".join(w.lower() for w in p.split())

    def add_all(self, phrases, role):
        for p in phrases:
            norm = self.norm(p)
            i = self.index.get(norm)
            if i is None:
                i = self.index[norm] = len(self.phrases)
                self.phrases.append(norm)
                self.roles.append([])
            if role not in self.roles[i]:
                self.roles[i].append(role)

    def events(self, hay):
        """(phrase id, word start, word end, clause, char start, sentence) of every phrase on
        word boundaries, the set of question clauses, and whether a section header was seen."""
        out = []
        n = len(hay)
        # Word k (0-based) starts at starts[k]: the words before position p are
        # bisect_left(starts, p). Sentence breaks are walked in order as the matches advance.
        starts = [m.start() for m in WORD_RUN.finditer(hay)]
        breaks = [m.start() for m in BREAK.finditer(hay)]
        nb = len(breaks)
        bi, clause, sentence, clause_from = 0, 0, 0, 0
        questions = set()
        headers = False

        def advance(to):
            """Takes the sentence breaks before `to` into account."""
            nonlocal bi, clause, sentence, clause_from
            while bi < nb and breaks[bi] < to:
                at = breaks[bi]
                bi += 1
                if hay[at] == "?":
                    # '?' opens a question when glued to the next word outside a word, or when
                    # its clause has no word yet; otherwise the clause it ends is the question.
                    if (not (at > 0 and is_word(hay[at - 1])) and at + 1 < n
                            and is_word(hay[at + 1])) or \
                            bisect_left(starts, clause_from) == bisect_left(starts, at):
                        questions.add(clause + 1)
                    else:
                        questions.add(clause)
                sentence += 1
                clause += 1
                clause_from = at + 1

        search = self.regex.search
        by_needle, open_start, open_end, cue = self.by_needle, self.open_start, self.open_end, \
            self.cue
        pos = 0
        while pos < n:
            m = search(hay, pos)
            if m is None:
                break
            s, e = m.span()
            pid = by_needle[m.group()]
            if (s > 0 and not open_start[pid] and is_word(hay[s - 1])) or \
                    (e < n and not open_end[pid] and is_word(hay[e])):
                pos = s + 1
                continue
            if cue[pid] and e + 1 < n and hay[e] == "-" and is_word(hay[e + 1]):
                pos = e  # "non-displaced": a prefix, no cue
                continue
            if bi < nb and breaks[bi] < s:
                advance(s)
            cl, se = clause, sentence
            if bi < nb and breaks[bi] < e:
                advance(e)
            out.append((pid, bisect_left(starts, s), bisect_left(starts, e), cl, s, se))
            if self.term[pid]:
                clause += 1
                clause_from = e
            if self.header[pid]:
                headers = True
            pos = e
        advance(n)  # the last '?' may still make a clause a question
        return out, questions, headers

    def skip_sections(self, ev, section_ends):
        """The events outside skipped sections, without the header events."""
        header = self.header
        keep = [True] * len(ev)
        for i, e in enumerate(ev):
            if not header[e[0]]:
                continue
            keep[i] = False
            if not self.skip[e[0]]:
                continue
            end = next((x for x in section_ends if e[4] < x), INF)
            next_header = False
            for x in ev[i + 1:]:
                if x[4] >= end:
                    break
                if header[x[0]]:
                    next_header = True
                    break
            # With no later header in its section, the skip ends with the sentence after it.
            last_sentence = INF if next_header else e[5] + 1
            for j in range(i + 1, len(ev)):
                x = ev[j]
                if x[4] >= end or header[x[0]] or x[5] > last_sentence:
                    break
                keep[j] = False
        return [e for e, k in zip(ev, keep) if k]

    def cue_state(self, ev, first, last, question):
        head, tail = ev[first], ev[last]
        best = None
        cue = self.cue
        for k, c in enumerate(ev):
            if k == first or k == last or not cue[c[0]]:
                continue
            for role in self.roles[c[0]]:
                if role == NEG_PRE:
                    pre, st, (pw, qw) = True, NEG, self.neg_windows
                elif role == UNC_PRE:
                    pre, st, (pw, qw) = True, UNC, self.unc_windows
                elif role == NEG_POST:
                    pre, st, (pw, qw) = False, NEG, self.neg_windows
                elif role == UNC_POST:
                    pre, st, (pw, qw) = False, UNC, self.unc_windows
                else:
                    continue
                if pre and k < last and c[2] <= tail[1]:
                    gap = max(0, head[1] - c[2])
                    if gap <= pw and (best is None or gap < best[0]):
                        best = (gap, st)
                elif not pre and k > first and c[1] >= head[2]:
                    gap = max(0, c[1] - tail[2])
                    if gap <= qw and (best is None or gap < best[0]):
                        best = (gap, st)
        if best is None:
            return UNC if question else POS
        return best[1]

    def resolve(self, ev, states, question):
        def merge(f, st):
            if RANK[st] > RANK[states[f]]:
                states[f] = st

        names = self.names_finding
        for i, e in enumerate(ev):
            for role in self.roles[e[0]]:
                if role[0] == "mention":
                    st = self.cue_state(ev, i, i, question)
                    if role[2] and st == POS:
                        st = UNC
                    merge(role[1], st)
                elif role[0] == "attr":
                    g, pol = role[1], role[2]
                    win = self.group_window[g]
                    subject = ("subject", g)
                    j = next((j for j, s in enumerate(ev)
                              if subject in self.roles[s[0]]
                              and min(max(0, e[1] - s[2]), max(0, s[1] - e[2])) <= win
                              and not any(names[b[0]] for b in ev[min(i, j) + 1:max(i, j)])),
                             None)
                    if j is None:
                        continue
                    if pol == NEG:
                        st = NEG
                    elif pol == UNC:
                        st = NEG if self.cue_state(ev, min(i, j), max(i, j), question) == NEG \
                            else UNC
                    else:
                        st = self.cue_state(ev, min(i, j), max(i, j), question)
                    merge(self.group_finding[g], st)

    def label(self, sections):
        parts, section_ends, length = [], [], 0
        for s in sections:
            part = normalize(s) + " . "
            parts.append(part)
            length += len(part)
            section_ends.append(length)
        hay = "".join(parts)
        ev, questions, headers = self.events(hay)
        if headers:
            ev = self.skip_sections(ev, section_ends)
        states = [UNM] * len(self.findings)
        start = 0
        while start < len(ev):
            clause = ev[start][3]
            end = start
            while end < len(ev) and ev[end][3] == clause:
                end += 1
            self.resolve(ev[start:end], states, clause in questions)
            start = end
        labels = states[:len(KEYS)]
        if all(st == UNM for st in labels[1:]) and \
                not any(self.content[e[0]] for e in ev):
            return [UNM] * len(KEYS)  # no radiological content
        any_finding = any(i != 0 and not self.exempt[i] and st in (POS, UNC)
                          for i, st in enumerate(states))
        labels[0] = UNM if any_finding else POS
        return labels


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", required=True)
    ap.add_argument("--reports", required=True, help="CSV with uid, findings, impression")
    ap.add_argument("--labels-out")
    ap.add_argument("--passes", type=int, default=3)
    args = ap.parse_args()
    with open(args.rules, encoding="utf-8") as fh:
        labeler = Labeler(fh.read())
    with open(args.reports, newline="", encoding="utf-8") as fh:
        reports = [(r["uid"], r["findings"], r["impression"]) for r in csv.DictReader(fh)]
    if args.labels_out:
        with open(args.labels_out, "w", encoding="utf-8") as fh:
            for uid, f, i in reports:
                fh.write(uid + "\t" + "\t".join(map(str, labeler.label([f, i]))) + "\n")
    for _, f, i in reports[:50]:  # warm-up
        labeler.label([f, i])
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(args.passes):
        for _, f, i in reports:
            labeler.label([f, i])
    secs, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    print(json.dumps({
        "reports": len(reports), "passes": args.passes, "seconds": secs,
        "reports_per_s": len(reports) * args.passes / secs, "cpu_s": cpu,
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
