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


if __name__ == "__main__":
    main()
