"""Python regex report labeler with the rules of umcl's labeler, for the `labeler` bench.

Reads the same rule file (crates/umcl-data/data/labeler/chest-xray.toml: mention phrases, ignore and pseudo
phrases, negation and uncertainty cues before and after a mention, scope terminators and
windows, attribute rules, extra abnormalities, no_finding exemptions) and applies the rules
the way crates/umcl-data/src/labeler.rs documents them, written independently in Python:

1. ASCII-lowercase the text, collapse white space; each section ends with " . ".
2. One regex (a trie of every rule phrase, so the longest phrase wins at a position) finds
   phrases leftmost-longest; a match not on word boundaries is dropped and the search goes on
   one character later. A phrase ending in `*` matches a word prefix.
3. Sentences end at `.` (not before a digit), `?`, `!`, `;`, `:`; a terminator phrase ends a
   clause after itself. Cues act inside their clause within their word windows.
4. The nearest cue in reach decides a mention (negation -> 0, uncertainty -> -1, none -> 1);
   attribute rules pair a subject and an attribute within a word window in one clause.
5. Per label: positive over uncertain over negative over unmentioned (-2); no_finding is 1
   when no finding (except the exempt ones) is positive or uncertain, else -2.

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
WS = " \t\n\r\x0c"
LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
DIGITS = "0123456789"


def is_word(ch):
    return ch.isascii() and ch.isalnum() or ord(ch) >= 0x80


def normalize(text):
    """ASCII-lowercased, each white-space run one space, a trailing space when non-empty."""
    out = []
    space = True
    for ch in text:
        if ch in WS:
            if not space:
                out.append(" ")
                space = True
        else:
            out.append(ch)
            space = False
    if not space:
        out.append(" ")
    return "".join(out).translate(LOWER)


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
        self.add_all(scope["terminators"], TERM)
        neg, unc = rules["negation"], rules["uncertainty"]
        self.add_all(neg.get("pre", []), NEG_PRE)
        self.add_all(neg.get("post", []), NEG_POST)
        self.add_all(unc.get("pre", []), UNC_PRE)
        self.add_all(unc.get("post", []), UNC_POST)
        self.neg_windows = (neg.get("pre_window", scope["pre_window"]),
                            neg.get("post_window", scope["post_window"]))
        self.unc_windows = (unc.get("pre_window", scope["pre_window"]),
                            unc.get("post_window", scope["post_window"]))
        self.findings = list(KEYS)
        self.group_finding, self.group_window = [], []
        for finding, extra in [(f, False) for f in rules["label"]] + \
                [(f, True) for f in rules.get("extra", [])]:
            if extra:
                self.findings.append(finding["key"])
                idx = len(self.findings) - 1
            else:
                idx = KEYS.index(finding["key"])
            self.add_all(finding.get("mentions", []), ("mention", idx, False))
            self.add_all(finding.get("uncertain_mentions", []), ("mention", idx, True))
            self.add_all(finding.get("ignore", []), IGNORE)
            for attr in finding.get("attribute", []):
                g = len(self.group_finding)
                self.group_finding.append(idx)
                self.group_window.append(attr["window"])
                self.add_all(attr["subjects"], ("subject", g))
                for pol, st in (("positive", POS), ("negative", NEG), ("uncertain", UNC)):
                    self.add_all(attr.get(pol, []), ("attr", g, st))
        exempt = set(rules.get("no_finding", {}).get("ignore", []))
        self.exempt = [name in exempt for name in self.findings]
        self.prefix = [p.endswith("*") for p in self.phrases]
        needles = [p.rstrip("*") for p in self.phrases]
        self.by_needle = {}
        for i, n in enumerate(needles):  # the first of equal needles, as the Rust matcher
            self.by_needle.setdefault(n, i)
        self.regex = trie_regex(needles)

    def add_all(self, phrases, role):
        for p in phrases:
            norm = " ".join(w.lower() for w in p.split())
            i = self.index.get(norm)
            if i is None:
                i = self.index[norm] = len(self.phrases)
                self.phrases.append(norm)
                self.roles.append([])
            if role not in self.roles[i]:
                self.roles[i].append(role)

    def events(self, hay):
        """(phrase id, word start, word end, clause) of every phrase on word boundaries."""
        out = []
        n = len(hay)
        pos = 0
        cpos, words, clause, in_word = 0, 0, 0, False

        def advance(to):
            nonlocal cpos, words, clause, in_word
            while cpos < to:
                ch = hay[cpos]
                if is_word(ch):
                    if not in_word:
                        words += 1
                        in_word = True
                else:
                    in_word = False
                    if ch == ".":
                        if not (cpos + 1 < n and hay[cpos + 1] in DIGITS):
                            clause += 1
                    elif ch in "?!;:":
                        clause += 1
                cpos += 1

        search = self.regex.search
        while pos < n:
            m = search(hay, pos)
            if m is None:
                break
            s, e = m.span()
            pid = self.by_needle[m.group()]
            if (s > 0 and is_word(hay[s - 1])) or \
                    (not self.prefix[pid] and e < n and is_word(hay[e])):
                pos = s + 1
                continue
            advance(s)
            ws, cl = words, clause
            advance(e)
            out.append((pid, ws, words, cl))
            if TERM in self.roles[pid]:
                clause += 1
            pos = e
        return out

    def cue_state(self, ev, first, last):
        head, tail = ev[first], ev[last]
        best = None
        for k, c in enumerate(ev):
            if k == first or k == last:
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
        return POS if best is None else best[1]

    def resolve(self, ev, states):
        def merge(f, st):
            if RANK[st] > RANK[states[f]]:
                states[f] = st

        for i, e in enumerate(ev):
            for role in self.roles[e[0]]:
                if role[0] == "mention":
                    st = self.cue_state(ev, i, i)
                    if role[2] and st == POS:
                        st = UNC
                    merge(role[1], st)
                elif role[0] == "attr":
                    g, pol = role[1], role[2]
                    win = self.group_window[g]
                    j = next((j for j, s in enumerate(ev)
                              if ("subject", g) in self.roles[s[0]]
                              and min(max(0, e[1] - s[2]), max(0, s[1] - e[2])) <= win), None)
                    if j is None:
                        continue
                    if pol == NEG:
                        st = NEG
                    elif pol == UNC:
                        st = NEG if self.cue_state(ev, min(i, j), max(i, j)) == NEG else UNC
                    else:
                        st = self.cue_state(ev, min(i, j), max(i, j))
                    merge(self.group_finding[g], st)

    def label(self, sections):
        hay = "".join(normalize(s) + " . " for s in sections)
        ev = self.events(hay)
        states = [UNM] * len(self.findings)
        start = 0
        while start < len(ev):
            end = start
            while end < len(ev) and ev[end][3] == ev[start][3]:
                end += 1
            self.resolve(ev[start:end], states)
            start = end
        labels = states[:len(KEYS)]
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
