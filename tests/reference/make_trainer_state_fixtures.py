#!/usr/bin/env python3
"""trainer_state.json as transformers' Trainer writes it, for cpeft's (issue 18, item 3).

    tests/reference/.venv/bin/python tests/reference/make_trainer_state_fixtures.py --out tests/fixtures

A tiny run of the real Trainer (tests/fixtures/models/gpt2_tiny + a PEFT LoRA adapter, random token
rows, CPU, seed 3): 6 steps, logging / eval / save every 2, save_total_limit 2, load_best_model_at_end,
report_to none. Written under trainer_state/hf/:

    trainer_state.json          output_dir/trainer_state.json (trainer.save_state(), as the example
                                scripts call it)
    checkpoint_state.json       the last checkpoint's checkpoint-6/trainer_state.json
    run.json                    the checkpoints left after the rotation, the TrainingArguments used,
                                and the log_history keys of each kind of entry

The files are the Trainer's bytes except for the run-dependent values (times, rates, flos, losses,
norms), which are replaced by 0 so that reruns give the same files; tests/unit/test_trainer_state.c
compares their keys, nesting and the deterministic values with cpeft's run of the same settings.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VOLATILE = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "train_runtime",
            "train_samples_per_second", "train_steps_per_second", "total_flos", "train_loss", "loss",
            "grad_norm", "eval_loss", "best_metric"}


def scrub(obj):
    if isinstance(obj, dict):
        return {k: (0 if k in VOLATILE and isinstance(v, (int, float)) else scrub(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    return obj


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, default_data_collator

    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tests", "fixtures", "models", "gpt2_tiny"))
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, task_type="CAUSAL_LM", target_modules=["c_attn"]))
    g = torch.Generator().manual_seed(3)
    V = model.config.vocab_size

    def rows(n):
        out = []
        for _ in range(n):
            ids = torch.randint(0, V, (12,), generator=g).tolist()
            out.append({"input_ids": ids, "attention_mask": [1] * 12, "labels": ids})
        return out

    train, evald = rows(16), rows(4)
    work = tempfile.mkdtemp()
    cwd = os.getcwd()
    os.chdir(work)
    try:
        targs = dict(output_dir="out", max_steps=6, per_device_train_batch_size=2, learning_rate=1e-2, logging_steps=2,
                     eval_strategy="steps", eval_steps=2, save_steps=2, save_total_limit=2, load_best_model_at_end=True,
                     report_to="none", use_cpu=True, seed=3, disable_tqdm=True)
        trainer = Trainer(model=model, args=TrainingArguments(**targs), train_dataset=train, eval_dataset=evald,
                          data_collator=default_data_collator)
        trainer.train()
        trainer.save_state()
        dst = os.path.join(args.out, "trainer_state", "hf")
        if os.path.isdir(dst):
            shutil.rmtree(dst)
        os.makedirs(dst)
        ckpts = sorted(d for d in os.listdir("out") if d.startswith("checkpoint-"))
        for name, src in (("trainer_state.json", "out/trainer_state.json"),
                          ("checkpoint_state.json", f"out/{ckpts[-1]}/trainer_state.json")):
            with open(src, encoding="utf-8") as f:
                state = json.load(f)
            with open(os.path.join(dst, name), "w", encoding="utf-8", newline="\n") as f:
                f.write(json.dumps(scrub(state), indent=2, sort_keys=True) + "\n")
        kinds = {}
        with open("out/trainer_state.json", encoding="utf-8") as f:
            for e in json.load(f)["log_history"]:
                kind = "eval" if "eval_loss" in e else "train" if "loss" in e else "summary"
                kinds.setdefault(kind, sorted(e))
        run = {"checkpoints_left": ckpts, "training_arguments": targs, "log_history_keys": kinds}
        with open(os.path.join(dst, "run.json"), "w", encoding="utf-8", newline="\n") as f:
            f.write(json.dumps(run, indent=1, sort_keys=True) + "\n")
    finally:
        os.chdir(cwd)
        shutil.rmtree(work)


if __name__ == "__main__":
    sys.exit(main())
