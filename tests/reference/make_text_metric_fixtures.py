#!/usr/bin/env python3
"""Fixtures for cpeft's generation metrics (tests/unit/test_text_metrics.c): sacreBLEU and rouge-score.

    tests/reference/.venv/bin/python tests/reference/make_text_metric_fixtures.py [--out tests/fixtures/text_metrics]

Writes metrics.json:
  tokenize  for each text: Tokenizer13a()(text.rstrip()) (what BLEU compares) and rouge-score's default
            tokenizer (lowercase, non-[a-z0-9] runs split), joined by spaces.
  cases     each a list of segments (a hypothesis and one or more references, their numbers varying)
            with sacrebleu.corpus_bleu(hyps, refs) at its defaults (13a, exp smoothing, effective order
            off; shorter reference streams padded with None as sacreBLEU allows) — score, counts,
            totals, precisions, bp, ratio, sys_len, ref_len and str(score) — and ROUGE-L from
            RougeScorer(["rougeL"], use_stemmer=False).score_multi(refs, hyp) per segment, with the mean
            F, precision and recall over the segments.
cli/: the e2e_perturbed case as e2e_hyp.txt (one hypothesis a line) and e2e_refs.jsonl ({"refs": [...]}
a line), the two_reference_files case as hyp.txt, ref1.txt, ref2.txt, for `cpeft score` (test_score_cli.c).
Cases: hand-made punctuation, numbers, HTML entities, <skipped>, "-\\n", Unicode letters and spaces,
empty hypotheses, no match at all, hypotheses too short for 3-grams, multiple references, random
character soups, and real E2E NLG references (data/e2e-nlg/testset_w_refs.csv) with perturbed
hypotheses. Deterministic: a rerun changes no byte.
"""
import argparse
import csv
import json
import os
import random
from collections import OrderedDict

import sacrebleu
from rouge_score import rouge_scorer, tokenize as rouge_tokenize
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

TEXTS = [
    "The cat sat on the mat.",
    "Hello, world! How are you?",
    "3.14 is pi, and 1,000 people came at 10.30.",
    "Prices: $5.00-$7.50 (approx.), 12-3 score; 2-for-1.",
    "a-b c--d 9-9 x-9 -5 5-",
    "&quot;quoted&quot; &amp; &lt;tag&gt; &amp;quot; &AMP; & alone",
    "<skipped> word <skipped>",
    "line-\nbreak and\nnewline",
    "trailing spaces   \t ",
    "  leading and   inner\t\ttabs",
    "Café naïve — résumé «quotes» “curly” ‘single’",
    "İstanbul KELVIN \u212a degrees STRASSE straße",
    "中文字符，句号。 日本語のテキスト",
    "nbsp\u00a0here em\u2003space nel\u0085char fs\u001cgs\u001drs\u001eus\u001f end",
    "zero\u200bwidth no-break\u202fspace ideographic\u3000space",
    "{curly} [square] ^caret_ `tick` ~tilde| @at #hash %pct *star +plus =eq",
    "end with dot.",
    "..., .5 5. a.b a,b 1.a a.1 ,, .,",
    "",
    "   ",
    "UPPER lower MiXeD 123abc abc123",
    "emoji 😀 test 🎉!",
    "tab\tseparated\tvalues\r\nwindows line",
    "O'Neil's cafe isn't bad -- it's \"fine\".",
    "." * 200,  # every pass grows the line: four times its length in the end
    ". " * 100 + ".,.,.,.,",
    "1-1-1-1-1-1 2--2 3.-4 5,-6",
]


def bleu_stats(hyps, refs_per_seg):
    n_refs = max(len(r) for r in refs_per_seg)
    streams = [[r[k] if k < len(r) else None for r in refs_per_seg] for k in range(n_refs)]
    b = sacrebleu.corpus_bleu(hyps, streams)
    return OrderedDict(score=b.score, counts=list(b.counts), totals=list(b.totals), precisions=list(b.precisions),
                       bp=b.bp, ratio=b.ratio, sys_len=b.sys_len, ref_len=b.ref_len, str=str(b))


def rouge_stats(hyps, refs_per_seg):
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per = [scorer.score_multi(r, h)["rougeL"] for h, r in zip(hyps, refs_per_seg)]
    n = len(per)
    return OrderedDict(fmeasure=sum(s.fmeasure for s in per) / n, precision=sum(s.precision for s in per) / n,
                       recall=sum(s.recall for s in per) / n, per_segment=[s.fmeasure for s in per])


def case(name, segs):
    hyps = [h for h, _ in segs]
    refs = [r for _, r in segs]
    return OrderedDict(name=name, segments=[OrderedDict(hyp=h, refs=r) for h, r in segs],
                       bleu=bleu_stats(hyps, refs), rouge=rouge_stats(hyps, refs))


def soup(rng, alphabet, n):
    return "".join(rng.choice(alphabet) for _ in range(n))


def perturb(rng, text):
    words = text.split()
    kind = rng.randrange(6)
    if kind == 0 and len(words) > 3:  # drop words
        words = [w for w in words if rng.random() > 0.2]
    elif kind == 1 and len(words) > 3:  # swap neighbours
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif kind == 2:  # truncate
        words = words[:max(1, len(words) // 2)]
    elif kind == 3:  # lowercase and strip punctuation
        words = [w.lower().strip(".,") for w in words]
    elif kind == 4:  # repeat a phrase
        words = words + words[:3]
    return " ".join(words)


def e2e_cases(rng):
    path = os.path.join(ROOT, "data", "e2e-nlg", "testset_w_refs.csv")
    groups = OrderedDict()
    with open(path, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            groups.setdefault(row["mr"], []).append(row["ref"])
    mrs = list(groups)[:40]
    segs = []
    for mr in mrs:
        refs = groups[mr]
        if len(refs) < 2:
            continue
        k = rng.randrange(len(refs))
        hyp = perturb(rng, refs[k])
        segs.append((hyp, [r for i, r in enumerate(refs) if i != k]))
    return segs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "text_metrics"))
    args = ap.parse_args()
    rng = random.Random(1234)
    tok13a = Tokenizer13a()

    alphabet = list("abcXYZ019 .,-;:!?'\"&<>()/\\[]{}@#$%^*_+=|~`\t\n") + \
        ["&amp;", "&quot;", "&lt;", "&gt;", "<skipped>", "-\n", "é", "İ", "\u212a", "\u00a0", "\u2003", "\u0085",
         "\u001c", "中", "😀", "1.5", "2,000", "3-4"]
    texts = list(TEXTS) + [soup(rng, alphabet, rng.randrange(1, 40)) for _ in range(60)]
    tokenize = [OrderedDict(text=t, bleu13a=tok13a(t.rstrip()), rouge=" ".join(rouge_tokenize.tokenize(t, None)))
                for t in texts]

    cases = []
    cases.append(case("simple", [
        ("The cat sat on the mat.", ["The cat is sitting on the mat."]),
        ("There is a dog in the garden.", ["A dog is in the garden."]),
        ("It rains today, 5 mm.", ["Today it rains, 5 mm."]),
    ]))
    cases.append(case("identical", [("the same words here .", ["the same words here ."]),
                                    ("and here too", ["and here too"])]))
    cases.append(case("punctuation_numbers", [(TEXTS[2], [TEXTS[2].replace("1,000", "1000")]),
                                              (TEXTS[3], ["Prices: $5.00 - $7.50, 12-3 score; 2-for-1."]),
                                              (TEXTS[4], [TEXTS[17]]), (TEXTS[5], ["\"quoted\" & <tag> &quot;"]),
                                              (TEXTS[6], ["word"]), (TEXTS[7], ["linebreak and newline"])]))
    cases.append(case("unicode", [(TEXTS[10], ["Cafe naive - resume «quotes»"]),
                                  (TEXTS[11], ["istanbul kelvin k degrees"]),
                                  (TEXTS[12], ["中文字符，句号。"]), (TEXTS[13], ["nbsp here em space"]),
                                  (TEXTS[14], [TEXTS[14]]), (TEXTS[21], ["emoji 😀 test 🎉 !"])]))
    cases.append(case("empty_hypotheses", [("", ["a reference"]), ("   ", ["another one here"]),
                                           ("some words match here", ["some words match here"])]))
    cases.append(case("all_empty_hypotheses", [("", ["a reference"]), ("", ["b"])]))
    cases.append(case("no_match", [("alpha beta gamma delta", ["one two three four five"])]))
    cases.append(case("short_hypotheses_no_trigrams", [("the cat", ["the cat sat"]), ("a", ["a dog"])]))
    cases.append(case("zero_match_order_smoothed", [("the cat dog sat mat", ["the cat sat on the mat"])]))
    cases.append(case("longer_than_reference", [("the the the the the the the the", ["the cat"])]))
    cases.append(case("multiple_references", [
        ("The restaurant is near the river.", ["The restaurant is by the river.", "It is near the river.",
                                              "Near the river is the restaurant."]),
        ("cheap food in the centre", ["cheap food", "The centre has cheap food."]),
        ("a family friendly place", ["a family friendly place", "child friendly", "kids welcome here", "x"]),
    ]))
    cases.append(case("reference_length_tie", [("a b c d", ["a b c", "a b c d e"]), ("x y", ["x", "x y z"])]))
    cases.append(case("empty_reference", [("words here", ["", "words"]), ("", [""])]))
    for k in range(4):
        segs = []
        for _ in range(rng.randrange(3, 12)):
            refs = [soup(rng, alphabet, rng.randrange(0, 30)) for _ in range(rng.randrange(1, 4))]
            hyp = refs[0] if rng.random() < 0.3 else soup(rng, alphabet, rng.randrange(0, 30))
            segs.append((hyp, refs))
        cases.append(case(f"soup_{k}", segs))
    words = "the a cat dog sat on mat river food cheap . , near by is in family friendly".split()
    for k in range(4):
        segs = []
        for _ in range(rng.randrange(5, 20)):
            refs = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 15))) for _ in range(rng.randrange(1, 5))]
            hyp = " ".join(rng.choice(words) for _ in range(rng.randrange(0, 15)))
            segs.append((hyp, refs))
        cases.append(case(f"word_soup_{k}", segs))
    cases.append(case("e2e_perturbed", e2e_cases(rng)))
    two = []
    for _ in range(20):
        refs = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 15))) for _ in range(2)]
        two.append((" ".join(rng.choice(words) for _ in range(rng.randrange(0, 15))), refs))
    cases.append(case("two_reference_files", two))

    os.makedirs(os.path.join(args.out, "cli"), exist_ok=True)
    by_name = {c["name"]: c for c in cases}

    def write_lines(name, lines):
        with open(os.path.join(args.out, "cli", name), "w", encoding="utf-8", newline="") as f:
            f.write("".join(x + "\n" for x in lines))

    segs = by_name["e2e_perturbed"]["segments"]
    write_lines("e2e_hyp.txt", [g["hyp"] for g in segs])
    write_lines("e2e_refs.jsonl", [json.dumps({"mr": k, "refs": g["refs"]}, ensure_ascii=False) for k, g in enumerate(segs)])
    segs = by_name["two_reference_files"]["segments"]
    write_lines("hyp.txt", [g["hyp"] for g in segs])
    write_lines("ref1.txt", [g["refs"][0] for g in segs])
    write_lines("ref2.txt", [g["refs"][1] for g in segs])
    out = OrderedDict(sacrebleu=sacrebleu.__version__, tokenize=tokenize, cases=cases)
    with open(os.path.join(args.out, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
