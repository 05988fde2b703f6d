#!/usr/bin/env python3
"""Fixtures for cpeft's seq2seq data (tests/unit/test_s2s_data.c): transformers' run_summarization.py
preprocessing, DataCollatorForSeq2Seq and shift_tokens_right.

    tests/reference/.venv/bin/python tests/reference/make_s2s_data_fixtures.py [--out tests/fixtures/s2s_data]

Writes:
  records.jsonl, records.csv, records.tsv   the same source / target records (fields "document" and
                "summary"; Unicode, quotes, commas, tabs escaped for TSV by csv's quoting, long texts).
  expected.json for the T5 tokenizer (tests/fixtures/tokenizers/t5, T5TokenizerFast: "$A </s>") and the
                RoBERTa one (tests/fixtures/tokenizers/roberta: "<s> $A </s>", BART's template):
                tokenizer(["summarize: " + s], max_length=16, truncation=True)["input_ids"] and
                tokenizer(text_target=targets, max_length=12, truncation=True)["input_ids"], the number of
                records cut on each side; DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100) on
                records 0..3 and 4..6 (input_ids, attention_mask, labels); shift_tokens_right (BART's
                function and T5's _shift_right on a tiny T5ForConditionalGeneration) of those labels with
                pad 0 / decoder_start 0 (T5) and pad 1 / decoder_start 2 (BART's ids).
                For data/e2e-nlg/devset.csv (fields mr / ref, no prefix, T5 tokenizer, lengths 64 / 64):
                the ids of the first 12 records, the token sums and the truncation counts of the whole file.
Deterministic: a rerun changes no byte.
"""
import argparse
import csv
import json
import os
from collections import OrderedDict

import torch
from transformers import DataCollatorForSeq2Seq, PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration
from transformers.models.bart.modeling_bart import shift_tokens_right

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK = os.path.join(ROOT, "tests", "fixtures", "tokenizers")

RECORDS = [
    ("The quick brown fox jumps over the lazy dog near the river bank.", "A fox jumps over a dog."),
    ("Short.", "S."),
    ("Prices rose 3.5% in May, the statistics office said on Tuesday; food and energy led the rise.",
     "Prices rose 3.5% in May, led by food and energy costs."),
    ("Café «naïve» résumé — über straße, 東京 and emoji 😀 in one line.", "Unicode text, kept."),
    ("She said \"hello, world\" and left\tquietly.", "She greeted the world and left quietly, without a word more."),
    ("name[Alimentum], area[city centre], familyFriendly[no]",
     "There is a place in the city centre, Alimentum, that is not family-friendly."),
    ("A very long document " + " ".join(f"word{i}" for i in range(40)) + " end.",
     "A very long summary " + " ".join(f"w{i}" for i in range(30)) + " end."),
]
SOURCE_PREFIX = "summarize: "
MAX_SOURCE, MAX_TARGET = 16, 12


def load_tok(name, eos, pad, bos=None):
    kw = dict(tokenizer_file=os.path.join(TOK, name, "tokenizer.json"), eos_token=eos, pad_token=pad)
    if bos:
        kw["bos_token"] = bos
    return PreTrainedTokenizerFast(**kw)


def shift_t5(labels, pad, start):
    cfg = T5Config(vocab_size=64, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2, pad_token_id=pad,
                   decoder_start_token_id=start)
    return T5ForConditionalGeneration(cfg)._shift_right(labels)


def tokenizer_case(tok, pad_id, start_id):
    sources = [SOURCE_PREFIX + s for s, _ in RECORDS]
    targets = [t for _, t in RECORDS]
    enc = tok(sources, max_length=MAX_SOURCE, truncation=True)
    lab = tok(text_target=targets, max_length=MAX_TARGET, truncation=True)
    full_src = tok(sources)["input_ids"]
    full_tgt = tok(text_target=targets)["input_ids"]
    out = OrderedDict(source_ids=enc["input_ids"], target_ids=lab["input_ids"],
                      n_truncated_source=sum(len(f) > MAX_SOURCE for f in full_src),
                      n_truncated_target=sum(len(f) > MAX_TARGET for f in full_tgt),
                      pad_id=pad_id, decoder_start_token_id=start_id, batches=[])
    collator = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, return_tensors="pt")
    for a, b in ((0, 4), (4, 7)):
        feats = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
                  "labels": lab["input_ids"][i]} for i in range(a, b)]
        batch = collator(feats)
        labels = batch["labels"]
        bart = shift_tokens_right(labels, pad_id, start_id)
        t5 = shift_t5(labels, pad_id, start_id)
        assert torch.equal(bart, t5)
        out["batches"].append(OrderedDict(start=a, size=b - a, input_ids=batch["input_ids"].tolist(),
                                          attention_mask=batch["attention_mask"].tolist(), labels=labels.tolist(),
                                          decoder_input_ids=bart.tolist()))
    return out


def e2e_case(tok):
    with open(os.path.join(ROOT, "data", "e2e-nlg", "devset.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    src = tok([r["mr"] for r in rows])["input_ids"]
    tgt = tok(text_target=[r["ref"] for r in rows])["input_ids"]
    cut_s = [s[:63] + [s[-1]] if len(s) > 64 else s for s in src]
    cut_t = [t[:63] + [t[-1]] if len(t) > 64 else t for t in tgt]
    check = tok([r["mr"] for r in rows[:50]], max_length=64, truncation=True)["input_ids"]
    assert check == cut_s[:50]
    return OrderedDict(path="data/e2e-nlg/devset.csv", source_field="mr", target_field="ref", max_length=64,
                       n=len(rows), n_source_tokens=sum(map(len, cut_s)), n_target_tokens=sum(map(len, cut_t)),
                       n_truncated_source=sum(len(s) > 64 for s in src), n_truncated_target=sum(len(t) > 64 for t in tgt),
                       source_ids=cut_s[:12], target_ids=cut_t[:12])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "s2s_data"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "records.jsonl"), "w", encoding="utf-8") as f:
        for s, t in RECORDS:
            f.write(json.dumps({"id": len(s), "document": s, "summary": t}, ensure_ascii=False) + "\n")
    for name, delim in (("records.csv", ","), ("records.tsv", "\t")):
        with open(os.path.join(args.out, name), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, delimiter=delim, lineterminator="\n")
            w.writerow(["summary", "id", "document"])
            for s, t in RECORDS:
                w.writerow([t, len(s), s])
    t5 = load_tok("t5", eos="</s>", pad="<pad>")
    roberta = load_tok("roberta", eos="</s>", pad="<pad>", bos="<s>")
    exp = OrderedDict(source_prefix=SOURCE_PREFIX, max_source_length=MAX_SOURCE, max_target_length=MAX_TARGET,
                      t5=tokenizer_case(t5, t5.pad_token_id, t5.pad_token_id),
                      roberta=tokenizer_case(roberta, roberta.pad_token_id, roberta.eos_token_id),
                      e2e=e2e_case(t5))
    with open(os.path.join(args.out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main()
