#!/usr/bin/env python3
"""Fixtures of SEQ_2_SEQ_LM training (tests/unit/test_s2s_train.c), from transformers + PEFT. Under
tests/fixtures/s2strain/:

    train.csv, eval.jsonl   the first 24 / next 6 records of data/e2e-nlg/devset.csv (fields mr, ref), the eval
                            records as JSONL
    steps/<case>/           10 AdamW steps on tests/fixtures/t5/models/t5_v10 (relu, tied head; the model's dropout
                            0) with the tokenizer of tests/fixtures/t5/models/t5_v11 (the same 99 ids), the data
                            prepared as run_summarization.py does: tokenizer(SOURCE_PREFIX + mr, max_length=40,
                            truncation=True), tokenizer(text_target=ref, max_length=24, truncation=True),
                            DataCollatorForSeq2Seq(label_pad_token_id=-100) on micro-batches of 4 records of
                            train.csv in file order, cycled; T5ForConditionalGeneration shifts the labels into
                            the decoder inputs. The loop: AdamW (lr 2e-3, wd 0.01), linear warmup 2 over 10 steps,
                            accumulation 2, clip_grad_norm_ 1.0, each micro-batch's mean loss weighted by its
                            target tokens / the step's (cpeft's trainer normalisation). Cases: lora (PEFT's
                            default targets q, v; r 4, alpha 8, init_lora_weights False), ia3 (PEFT's default
                            k, v, wo; init_ia3_weights False). Files: the initial adapter, expected.safetensors
                            (the micro-batches input_ids_i / attention_mask_i / labels_i and final.<key>),
                            expected.json (losses, grad norms, lrs, config).
    gen/                    `cpeft eval-generate`: data.csv (the first 60 records of devset.csv), adapter/ (a PEFT
                            LoRA r 8 on every linear of tests/fixtures/t5/models/t5_v11, trained 150 AdamW steps
                            on data.csv so that its predictions are words), expected.json: for each distinct mr in order of first appearance, the greedy
                            prediction of transformers' generate() (max_new_tokens 16, the source prefixed) and the
                            refs of its rows; sacrebleu.corpus_bleu and rouge-score's score_multi (mean F / P / R)
                            of those predictions against those references.

    tests/reference/.venv/bin/python tests/reference/make_s2s_train_fixtures.py
Deterministic: a rerun changes no byte.
"""
import csv
import json
import os
import shutil
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "s2strain")
BASE = os.path.join(ROOT, "tests", "fixtures", "t5", "models", "t5_v10")
TOKDIR = os.path.join(ROOT, "tests", "fixtures", "t5", "models", "t5_v11")
SOURCE_PREFIX = "data to text: "
CFG = dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, num_warmup_steps=2, num_training_steps=10,
           gradient_accumulation_steps=2, micro_batch_size=4, max_grad_norm=1.0, max_source_length=40,
           max_target_length=24, source_prefix=SOURCE_PREFIX)


def records():
    with open(os.path.join(ROOT, "data", "e2e-nlg", "devset.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[:24], rows[24:30]


def write_data(train, ev):
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "train.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["mr", "ref"])
        for r in train:
            w.writerow([r["mr"], r["ref"]])
    with open(os.path.join(OUT, "eval.jsonl"), "w", encoding="utf-8") as f:
        for r in ev:
            f.write(json.dumps({"mr": r["mr"], "ref": r["ref"]}, ensure_ascii=False) + "\n")


def tokenizer():
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(TOKDIR, "tokenizer.json"), eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


def main():
    from transformers import DataCollatorForSeq2Seq, T5ForConditionalGeneration, get_scheduler
    from safetensors.torch import save_file
    import peft
    shutil.rmtree(OUT, ignore_errors=True)
    train, ev = records()
    write_data(train, ev)
    tok = tokenizer()
    feats = []
    for r in train:
        src = tok(SOURCE_PREFIX + r["mr"], max_length=CFG["max_source_length"], truncation=True)
        tgt = tok(text_target=r["ref"], max_length=CFG["max_target_length"], truncation=True)
        feats.append({"input_ids": src["input_ids"], "attention_mask": src["attention_mask"], "labels": tgt["input_ids"]})
    coll = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, return_tensors="pt")
    B, ga = CFG["micro_batch_size"], CFG["gradient_accumulation_steps"]
    n_micro = CFG["num_training_steps"] * ga
    batches = []
    for i in range(n_micro):
        mb = coll([feats[(i * B + k) % len(feats)] for k in range(B)])
        batches.append({k: mb[k] for k in ("input_ids", "attention_mask", "labels")})
    for case in ("lora", "ia3"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = T5ForConditionalGeneration.from_pretrained(BASE, dtype=torch.float32, attn_implementation="eager")
        for mod in base.modules():  # the model's dropout off (cpeft: model_dropout 0), attention's included
            if isinstance(mod, torch.nn.Dropout):
                mod.p = 0.0
            if hasattr(mod, "dropout") and isinstance(mod.dropout, float):
                mod.dropout = 0.0
        torch.manual_seed(7)
        if case == "lora":
            pc = peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=4, lora_alpha=8, lora_dropout=0.0, init_lora_weights=False)
        else:
            pc = peft.IA3Config(task_type="SEQ_2_SEQ_LM", init_ia3_weights=False)
        pm = peft.get_peft_model(base, pc)
        d = os.path.join(OUT, "steps", case)
        pm.save_pretrained(d)
        os.remove(os.path.join(d, "README.md"))
        p = os.path.join(d, "adapter_config.json")
        ac = json.load(open(p))
        ac["base_model_name_or_path"] = os.path.relpath(BASE, ROOT)
        for k in ("target_modules", "feedforward_modules"):
            if isinstance(ac.get(k), list):
                ac[k] = sorted(ac[k])
        with open(p, "w") as f:
            json.dump(ac, f, indent=2, sort_keys=True)
        sd0 = peft.get_peft_model_state_dict(pm)
        by_ptr = {v.data_ptr(): k for k, v in sd0.items()}
        params = [q for q in pm.parameters() if q.requires_grad]
        opt = torch.optim.AdamW(params, lr=CFG["lr"], betas=tuple(CFG["betas"]), eps=CFG["eps"],
                                weight_decay=CFG["weight_decay"])
        sched = get_scheduler("linear", opt, num_warmup_steps=CFG["num_warmup_steps"],
                              num_training_steps=CFG["num_training_steps"])
        pm.train()
        losses, norms, lrs = [], [], []
        for s in range(CFG["num_training_steps"]):
            mbs = batches[s * ga:(s + 1) * ga]
            N = sum(int((mb["labels"] != -100).sum()) for mb in mbs)
            total = 0.0
            for mb in mbs:
                n = int((mb["labels"] != -100).sum())
                loss = pm(**mb, use_cache=False).loss * n / N
                loss.backward()
                total += float(loss.detach())
            gn = torch.nn.utils.clip_grad_norm_(params, CFG["max_grad_norm"])
            lrs.append(opt.param_groups[0]["lr"])
            opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
            losses.append(total)
            norms.append(float(gn))
        tensors = {}
        for i, mb in enumerate(batches):
            for k, t in mb.items():
                tensors[f"{k}_{i}"] = t.contiguous()
        for name, q in pm.named_parameters():
            if q.requires_grad:
                tensors["final." + by_ptr[q.data_ptr()]] = q.detach().clone().contiguous()
        save_file(tensors, os.path.join(d, "expected.safetensors"))
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump({"case": case, "base_dir": os.path.relpath(BASE, ROOT), "config": CFG, "losses": losses,
                       "grad_norms": norms, "lrs": lrs}, f, indent=2)
        print(case, "losses", [round(x, 4) for x in losses])


def write_gen():
    import sacrebleu
    from rouge_score import rouge_scorer
    from transformers import T5ForConditionalGeneration
    import peft
    d = os.path.join(OUT, "gen")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(ROOT, "data", "e2e-nlg", "devset.csv"), newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))[:60]
    with open(os.path.join(d, "data.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["mr", "ref"])
        for r in rows:
            w.writerow([r["mr"], r["ref"]])
    groups = {}
    for r in rows:
        groups.setdefault(r["mr"], []).append(r["ref"])
    tok = tokenizer()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = T5ForConditionalGeneration.from_pretrained(TOKDIR, dtype=torch.float32, attn_implementation="eager").eval()
    for mod in base.modules():
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout") and isinstance(mod.dropout, float):
            mod.dropout = 0.0
    torch.manual_seed(11)
    pm = peft.get_peft_model(base, peft.LoraConfig(task_type="SEQ_2_SEQ_LM", r=8, lora_alpha=16,
                                                   target_modules=["q", "k", "v", "o", "wi_0", "wi_1", "wo"]))
    # trained a little (AdamW lr 1e-2, 150 steps of 8 random records), so that the predictions are words
    from transformers import DataCollatorForSeq2Seq
    feats = [{"input_ids": tok(SOURCE_PREFIX + r["mr"], max_length=64, truncation=True)["input_ids"],
              "labels": tok(text_target=r["ref"], max_length=48, truncation=True)["input_ids"]} for r in rows]
    coll = DataCollatorForSeq2Seq(tok, label_pad_token_id=-100, return_tensors="pt")
    opt = torch.optim.AdamW([q for q in pm.parameters() if q.requires_grad], lr=1e-2)
    g = torch.Generator().manual_seed(0)
    pm.train()
    for _ in range(150):
        idx = torch.randint(0, len(feats), (8,), generator=g).tolist()
        pm(**coll([feats[i] for i in idx])).loss.backward()
        opt.step()
        opt.zero_grad()
    pm.eval()
    ad = os.path.join(d, "adapter")
    pm.save_pretrained(ad)
    os.remove(os.path.join(ad, "README.md"))
    p = os.path.join(ad, "adapter_config.json")
    ac = json.load(open(p))
    ac["base_model_name_or_path"] = os.path.relpath(TOKDIR, ROOT)
    ac["target_modules"] = sorted(ac["target_modules"])
    with open(p, "w") as f:
        json.dump(ac, f, indent=2, sort_keys=True)
    preds = []
    for mr in groups:
        enc = tok(SOURCE_PREFIX + mr, return_tensors="pt")
        with torch.no_grad():
            out = pm.generate(**enc, max_new_tokens=16, do_sample=False, num_beams=1)
        preds.append(tok.decode(out[0], skip_special_tokens=True))
    refs = list(groups.values())
    n_refs = max(len(r) for r in refs)
    streams = [[r[k] if k < len(r) else None for r in refs] for k in range(n_refs)]
    b = sacrebleu.corpus_bleu(preds, streams)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    per = [scorer.score_multi(r, h)["rougeL"] for h, r in zip(preds, refs)]
    n = len(per)
    exp = {"source_prefix": SOURCE_PREFIX, "max_new_tokens": 16, "sources": list(groups), "predictions": preds,
           "references": refs, "bleu": b.score, "bleu_counts": b.counts, "bleu_totals": b.totals, "hyp_len": b.sys_len,
           "ref_len": b.ref_len, "rougeL": sum(x.fmeasure for x in per) / n,
           "rougeL_precision": sum(x.precision for x in per) / n, "rougeL_recall": sum(x.recall for x in per) / n,
           "sacrebleu": sacrebleu.__version__}
    with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(exp, f, indent=2, ensure_ascii=False)
    print("gen", len(preds), "segments,", str(b), "rougeL", exp["rougeL"])


if __name__ == "__main__":
    import sys
    if "--gen-only" not in sys.argv:
        main()
    write_gen()
