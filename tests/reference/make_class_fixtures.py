#!/usr/bin/env python3
"""Fixtures for cpeft's classification data and metrics (tests/unit/test_class_data.c, test_metrics.c).

    tests/reference/.venv/bin/python tests/reference/make_class_fixtures.py [--out tests/fixtures/class]

Writes:
  metrics.json  accuracy_score and f1_score(average="macro") from scikit-learn, and seqeval's
                precision / recall / F1 / support ("micro avg" of classification_report, default
                mode) on hand-made cases: no predicted entities, all wrong, I- without B-, type
                changes inside a chunk, single-token entities, E-/S- tags, bare tags, a class only
                predicted, random tag soups.
  words.json    tokenizer(words, is_split_into_words=True[, truncation=True, max_length=m]):
                input_ids, word_ids() and the run_ner.py labels (tag on the first sub-token, -100
                elsewhere) for BERT uncased (BertTokenizer from ../shared/data/bert-vocab) and GPT-2
                (../shared/data/gpt2-tokenizer, add_prefix_space=True as run_ner.py sets it);
                tokenizer(a, b, truncation=True, max_length=m) for pairs (input_ids, token_type_ids;
                GPT-2 as its tokenizer.json has it, without the prefix space).
  csv.json      what csv.reader (delimiter "," or "\\t") reads from tricky inputs (quotes, doubled
                quotes, newlines inside quotes, CRLF and CR line ends, text after a closing quote).
Deterministic: a rerun changes no byte.
"""
import argparse
import csv
import io
import json
import os
import random
import shutil
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data"


def metrics_cases():
    from sklearn.metrics import accuracy_score, f1_score
    from seqeval.metrics import classification_report, f1_score as sf1, precision_score, recall_score

    cls = [
        ("binary", [0, 1, 1, 0, 1, 1, 0, 0], [0, 1, 0, 0, 1, 1, 1, 0]),
        ("all_wrong", [0, 1, 0, 1], [1, 0, 1, 0]),
        ("perfect", [2, 0, 1, 2], [2, 0, 1, 2]),
        ("class_only_predicted", [0, 0, 1, 1], [0, 3, 1, 1]),
        ("class_only_true", [0, 2, 1, 1], [0, 0, 1, 1]),
        ("gap_in_ids", [0, 5, 5, 2, 0], [0, 5, 2, 2, 5]),
        ("one_class", [1, 1, 1], [1, 1, 1]),
    ]
    rng = random.Random(12)
    for k in range(3):
        n = 40 + 7 * k
        t = [rng.randrange(4) for _ in range(n)]
        p = [x if rng.random() < 0.6 else rng.randrange(4) for x in t]
        cls.append((f"random_{k}", t, p))
    out_cls = [{"name": n, "y_true": t, "y_pred": p, "accuracy": accuracy_score(t, p),
                "macro_f1": f1_score(t, p, average="macro", zero_division=0)} for n, t, p in cls]

    seq = [
        ("simple", [["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-LOC"]]),
        ("no_predicted_entities", [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]], [["O", "O", "O", "O"], ["O", "O"]]),
        ("no_entities_at_all", [["O", "O"]], [["O", "O"]]),
        ("all_wrong", [["B-PER", "O", "B-LOC", "I-LOC"]], [["O", "B-PER", "B-LOC", "O"]]),
        ("i_without_b", [["I-PER", "I-PER", "O", "O", "I-LOC"]], [["B-PER", "I-PER", "O", "I-LOC", "I-LOC"]]),
        ("type_change_inside", [["B-PER", "I-LOC", "I-LOC", "O"]], [["B-PER", "I-PER", "I-LOC", "O"]]),
        ("single_token_entities", [["B-PER", "B-PER", "B-LOC", "O", "B-MISC"]], [["B-PER", "B-LOC", "B-LOC", "O", "B-MISC"]]),
        ("boundary_across_sentences", [["O", "B-PER"], ["I-PER", "O"]], [["O", "B-PER"], ["I-PER", "O"]]),
        ("ioe_iobes", [["S-PER", "B-LOC", "E-LOC", "O", "I-ORG", "E-ORG"]], [["S-PER", "B-LOC", "I-LOC", "E-LOC", "B-ORG", "E-ORG"]]),
        ("bare_tags", [["B", "I", "O", "B", "B-X"]], [["B", "I", "I", "O", "B-X"]]),
        ("hyphenated_types", [["B-creative-work", "I-creative-work", "O", "B-person"]], [["B-creative-work", "I-creative-work", "O", "I-person"]]),
        ("mixed_types", [["B-A", "I-A", "B-B", "I-B", "I-B", "O", "B-A"], ["B-C", "O"]],
                        [["B-A", "I-A", "I-B", "I-B", "I-B", "O", "B-A"], ["B-C", "I-C"]]),
        ("end_at_sentence_end", [["O", "B-PER", "I-PER"], ["B-PER"]], [["O", "B-PER", "O"], ["I-PER"]]),
    ]
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "E-ORG", "S-LOC"]
    for k in range(4):
        t, p = [], []
        for _ in range(6 + k):
            n = rng.randrange(1, 12)
            t.append([rng.choice(tags) for _ in range(n)])
            p.append([x if rng.random() < 0.5 else rng.choice(tags) for x in t[-1]])
        seq.append((f"random_{k}", t, p))
    out_seq = []
    for n, t, p in seq:
        rep = classification_report(t, p, output_dict=True, zero_division=0)
        micro = rep["micro avg"]
        out_seq.append({"name": n, "y_true": t, "y_pred": p,
                        "precision": precision_score(t, p, zero_division=0),
                        "recall": recall_score(t, p, zero_division=0),
                        "f1": sf1(t, p, zero_division=0),
                        "report_micro": {"precision": micro["precision"], "recall": micro["recall"],
                                         "f1": micro["f1-score"], "support": int(micro["support"])},
                        "per_type": {k: {"precision": v["precision"], "recall": v["recall"], "f1": v["f1-score"],
                                         "support": int(v["support"])}
                                     for k, v in rep.items() if not k.endswith(" avg")}})
    return {"classification": out_cls, "seqeval": out_seq}


WORD_CASES = [
    ("plain", ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."], 0),
    ("subwords", ["Empire", "Statebuilding", "unbelievably", "@paulwalk", "#hashtag", "http://t.co/x"], 0),
    ("unicode", ["café", "naïve", "Zürich", "東京", "🙂", "—"], 0),
    ("space_in_word", ["New York", "is", "big"], 0),
    ("special_literal", ["[CLS]", "<|endoftext|>", "x"], 0),
    ("truncated_mid_word", ["a", "b", "unbelievably", "unbelievably", "c", "d", "e"], 8),
    ("truncated_many", ["w%d" % i for i in range(30)], 12),
]
PAIR_CASES = [
    ("short", "the movie was great", "i loved it", 0),
    ("trunc_both", "a b c d e f g h i j", "k l m n o p q r s t u v", 11),
    ("trunc_second_only", "a b", "c d e f g h i j k l m n", 10),
    ("trunc_first_only", "a b c d e f g h i j k l m n", "o p", 10),
    ("trunc_odd", "a b c d e f g", "h i j k l m n", 12),
    ("trunc_single", "one two three four five six seven eight nine ten", None, 6),
]


def gpt2_tokenizer(add_prefix_space):
    from transformers import AutoTokenizer
    d = tempfile.mkdtemp()
    shutil.copy(os.path.join(SHARED, "gpt2-tokenizer", "tokenizer.json"), os.path.join(d, "tokenizer.json"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 1024, "eos_token": "<|endoftext|>",
                   "bos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}, f)
    tok = AutoTokenizer.from_pretrained(d, add_prefix_space=add_prefix_space)
    shutil.rmtree(d)
    return tok


def bert_tokenizer():
    from transformers import BertTokenizer
    vocab = {}
    with open(os.path.join(SHARED, "bert-vocab", "bert-base-uncased-vocab.txt"), encoding="utf-8") as f:
        for i, line in enumerate(f.readlines()):
            vocab[line.rstrip("\n")] = i
    return BertTokenizer(vocab=vocab, do_lower_case=True)


def word_cases():
    out = {}
    bert = bert_tokenizer()
    for name, tok, ptok in (("bert-uncased", bert, bert), ("gpt2", gpt2_tokenizer(True), gpt2_tokenizer(False))):
        words = []
        for cname, ws, m in WORD_CASES:
            kw = {"truncation": True, "max_length": m} if m else {}
            enc = tok(ws, is_split_into_words=True, **kw)
            wid = enc.word_ids()
            tags = list(range(len(ws)))  # tag of word w is w: the label array shows which word it came from
            labels, prev = [], None
            for w in wid:
                labels.append(-100 if w is None or w == prev else tags[w])
                prev = w
            full = len(tok(ws, is_split_into_words=True)["input_ids"])
            words.append({"name": cname, "words": ws, "max_length": m, "input_ids": enc["input_ids"],
                          "word_ids": [-1 if w is None else w for w in wid], "labels": labels,
                          "truncated": bool(m) and full > m})
        pairs = []
        for cname, a, b, m in PAIR_CASES:
            kw = {"truncation": True, "max_length": m} if m else {}
            enc = ptok(a, b, **kw) if b is not None else ptok(a, **kw)
            tt = enc.get("token_type_ids")
            pairs.append({"name": cname, "a": a, "b": b, "max_length": m, "input_ids": enc["input_ids"],
                          "token_type_ids": tt})
        out[name] = {"words": words, "pairs": pairs}
    return out


CSV_CASES = [
    ("plain", ",", 'sentence,label\nhello world,1\nbye,0\n'),
    ("quoted_delim", ",", 'sentence,label\n"a, b",1\n"say ""hi""",0\n'),
    ("newline_in_quotes", ",", 'sentence,label\n"line one\nline two",1\nnext,0\n'),
    ("crlf", ",", 'sentence,label\r\n"a\r\nb",1\r\nc,0\r\n'),
    ("cr_only", ",", 'sentence,label\rx,1\ry,0\r'),
    ("after_closing_quote", ",", 'sentence,label\n"ab"cd,1\n'),
    ("quote_inside_unquoted", ",", 'sentence,label\nit"s,1\n'),
    ("blank_lines", ",", 'sentence,label\n\nx,1\n\n\ny,0'),
    ("empty_fields", ",", 'sentence,label\n,1\n"",0\n'),
    ("tsv_glue", "\t", 'sentence\tlabel\nit \'s a charming , often affecting journey . \t1\n"quoted\ttab"\t0\n'),
    ("no_final_newline", "\t", 'a\tb\nx\ty'),
]


def csv_cases():
    out = []
    for name, delim, text in CSV_CASES:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delim) if r != []]
        out.append({"name": name, "delimiter": delim, "text": text, "rows": rows})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "class"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for name, obj in (("metrics.json", metrics_cases()), ("words.json", word_cases()), ("csv.json", csv_cases())):
        with open(os.path.join(a.out, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, ensure_ascii=False, indent=1)
            f.write("\n")
        print("wrote", os.path.join(a.out, name))


if __name__ == "__main__":
    main()
