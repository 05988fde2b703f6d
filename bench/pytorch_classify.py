#!/usr/bin/env python3
"""PyTorch + PEFT side of the classification recipes: LoRA fine-tuning of an encoder for SST-2
(SEQ_CLS) or WNUT-17 (TOKEN_CLS) with transformers' *ForSequenceClassification /
*ForTokenClassification and PEFT's get_peft_model, the same recipe `cpeft train --task-type ...`
runs (README "Classification"), then accuracy / macro-F1 or seqeval's entity F1 on the test file.

    tests/reference/.venv/bin/python bench/pytorch_classify.py --task SEQ_CLS --model models/all-minilm-l6-v2 \
        --train data/sst2/train.tsv --eval data/sst2/test.tsv [--max-train 8192] [--epochs 1] [--steps N]
        [--targets all-linear]

Recipe (both sides): examples in file order, the first --max-train of them; shuffled each epoch
with torch.Generator seeded by --seed; batches of --batch-size padded to their longest (max
--max-seq-length tokens); LoRA r / alpha / dropout on PEFT's default targets for the model type,
the head in modules_to_save (PEFT's SEQ_CLS / TOKEN_CLS rule); AdamW (lr, weight_decay 0, betas
0.9/0.999, eps 1e-8), linear schedule with --warmup-ratio, no gradient clipping; eval in batches of 64.
With --steps N it only times N training steps (after one warm-up step) and prints tokens/s and peak
RSS as JSON (the benchmark row).
"""
import argparse
import csv
import json
import resource
import statistics
import sys
import time

import torch


def read_tsv(path, text_field, label_field):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r[text_field] for r in rows], [r[label_field] for r in rows]


def read_conll(path):
    sents, tags, words, labels = [], [], [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            if words:
                sents.append(words); tags.append(labels); words, labels = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        words.append(parts[0]); labels.append(parts[-1])
    if words:
        sents.append(words); tags.append(labels)
    return sents, tags


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=["SEQ_CLS", "TOKEN_CLS"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--eval")
    ap.add_argument("--text-field", default="sentence")
    ap.add_argument("--label-field", default="label")
    ap.add_argument("--max-train", type=int, default=0)
    ap.add_argument("--epochs", type=float, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup-ratio", type=float, default=0.06)
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--targets", default="", help="LoRA target_modules: a,b,c or all-linear (default: PEFT's table)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--steps", type=int, default=0, help="only time this many steps (benchmark)")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import peft
    import transformers
    from transformers import AutoTokenizer, AutoModelForSequenceClassification, AutoModelForTokenClassification
    transformers.logging.set_verbosity_error()
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)

    if args.task == "SEQ_CLS":
        texts, labels = read_tsv(args.train, args.text_field, args.label_field)
        names = sorted(set(labels), key=lambda x: (int(x) if x.lstrip("-").isdigit() else 0, x))
    else:
        texts, labels = read_conll(args.train)
        names = sorted({t for s in labels for t in s})
    if args.max_train:
        texts, labels = texts[:args.max_train], labels[:args.max_train]
    label2id = {n: i for i, n in enumerate(names)}
    cls = AutoModelForSequenceClassification if args.task == "SEQ_CLS" else AutoModelForTokenClassification
    model = cls.from_pretrained(args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label2id,
                                dtype=torch.float32)
    targets = None if not args.targets else args.targets if args.targets == "all-linear" else args.targets.split(",")
    cfg = peft.LoraConfig(task_type=args.task, r=args.r, lora_alpha=args.alpha, lora_dropout=args.dropout,
                          target_modules=targets)
    model = peft.get_peft_model(model, cfg)

    def encode(batch_texts, batch_labels):
        if args.task == "SEQ_CLS":
            enc = tok(batch_texts, truncation=True, max_length=args.max_seq_length, padding=True, return_tensors="pt")
            enc["labels"] = torch.tensor([label2id[y] for y in batch_labels])
            return enc
        enc = tok(batch_texts, is_split_into_words=True, truncation=True, max_length=args.max_seq_length, padding=True,
                  return_tensors="pt")
        lab = []
        for i, tags in enumerate(batch_labels):
            prev, row = None, []
            for w in enc.word_ids(i):
                row.append(-100 if w is None or w == prev else label2id[tags[w]])
                prev = w
            lab.append(row)
        enc["labels"] = torch.tensor(lab)
        return enc

    n = len(texts)
    steps_per_epoch = (n + args.batch_size - 1) // args.batch_size
    total = args.steps + 1 if args.steps else int(round(steps_per_epoch * args.epochs))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr, weight_decay=0.0)
    sched = transformers.get_linear_schedule_with_warmup(opt, int(args.warmup_ratio * total), total)
    gen = torch.Generator().manual_seed(args.seed)
    model.train()
    step, times, tokens, losses = 0, [], [], []
    while step < total:
        for b in torch.randperm(n, generator=gen).split(args.batch_size):
            if step >= total:
                break
            enc = encode([texts[i] for i in b], [labels[i] for i in b])
            t0 = time.perf_counter()
            out = model(**enc)
            out.loss.backward()
            opt.step(); sched.step(); opt.zero_grad()
            times.append(time.perf_counter() - t0)
            tokens.append(int(enc["attention_mask"].sum()))
            losses.append(float(out.loss))
            step += 1
    if args.steps:
        spt = statistics.median(t / max(k, 1) for t, k in zip(times[1:], tokens[1:]))
        print(json.dumps({"tokens_per_s": 1.0 / spt, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                          "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
                          "threads": torch.get_num_threads(), "batch": args.batch_size, "seq": args.max_seq_length}))
        return 0
    result = {"train_loss_first": losses[0], "train_loss_last10": sum(losses[-10:]) / len(losses[-10:]), "steps": step,
              "train_seconds": sum(times)}
    if args.eval:
        model.eval()
        if args.task == "SEQ_CLS":
            etexts, elabels = read_tsv(args.eval, args.text_field, args.label_field)
        else:
            etexts, elabels = read_conll(args.eval)
        preds = []
        with torch.no_grad():
            for i in range(0, len(etexts), 64):
                enc = encode(etexts[i:i + 64], elabels[i:i + 64])
                logits = model(**{k: v for k, v in enc.items() if k != "labels"}).logits
                if args.task == "SEQ_CLS":
                    preds += logits.argmax(-1).tolist()
                else:
                    am = logits.argmax(-1)
                    for r in range(am.shape[0]):
                        row, prev = [], None
                        for t, w in enumerate(enc.word_ids(r)):
                            if w is not None and w != prev:
                                row.append(names[am[r, t]])
                            prev = w
                        preds.append(row + ["O"] * (len(elabels[i + r]) - len(row)))
        if args.task == "SEQ_CLS":
            gold = [label2id[y] for y in elabels]
            result["accuracy"] = sum(p == g for p, g in zip(preds, gold)) / len(gold)
            from sklearn.metrics import f1_score
            result["macro_f1"] = f1_score(gold, preds, average="macro")
        else:
            from seqeval.metrics import f1_score, precision_score, recall_score
            result.update(precision=precision_score(elabels, preds), recall=recall_score(elabels, preds),
                          f1=f1_score(elabels, preds))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
