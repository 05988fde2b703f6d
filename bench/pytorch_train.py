#!/usr/bin/env python3
"""PyTorch side of the training benchmark: LoRA, prompt-tuning or prefix-tuning training throughput of
transformers + PEFT.

    tests/reference/.venv/bin/python bench/pytorch_train.py --model DIR --targets q_proj,k_proj,v_proj \
        --r 8 --alpha 16 --batch 4 --seq 256 --steps 5 --warmup 1 [--threads N] [--gradient-checkpointing] \
        [--peft-type LORA|PROMPT_TUNING|P_TUNING|PREFIX_TUNING --num-virtual-tokens 20]
        [--task SEQ_2_SEQ_LM --target-seq 64] [--bf16]

Loads the model with AutoModelForCausalLM (float32, transformers' default attention: sdpa for GPT-2, eager
for GPT-Neo), wraps it with get_peft_model(LoraConfig(r, lora_alpha, lora_dropout=0, target_modules,
task_type CAUSAL_LM)), and runs `warmup + steps` optimizer steps in train mode on fixed random token ids
(labels = input_ids, attention_mask all ones). One step = forward with labels, loss.backward(),
torch.optim.AdamW(trainable params, lr 1e-4).step(), zero_grad(set_to_none=True). With
--gradient-checkpointing the base model gets gradient_checkpointing_enable(use_reentrant=False) before
get_peft_model. --peft-type PROMPT_TUNING / P_TUNING / PREFIX_TUNING uses PromptTuningConfig /
PromptEncoderConfig / PrefixTuningConfig(num_virtual_tokens, task_type) in place of the LoraConfig (their
defaults: RANDOM init, the MLP encoder, no prefix projection); PEFT pads the labels and mask itself, and
tokens/s counts the batch's tokens, not the virtual ones. --task SEQ_2_SEQ_LM loads AutoModelForSeq2SeqLM
(t5) and trains on random encoder ids (batch, seq) and random labels (batch, target_seq) that the model
shifts into its decoder inputs; tokens/s then counts batch × (seq + target_seq), encoder and decoder
tokens both (train_bench counts the same). --bf16 runs forward and loss under
torch.autocast("cpu", dtype=torch.bfloat16) (what TrainingArguments(bf16=True) does on a CPU: parameters,
gradients and AdamW state stay f32), backward outside it as the Trainer does. Prints one JSON line:
    {"tokens_per_s", "seconds_per_step", "peak_rss_mib", "torch", "transformers", "peft", "threads",
     "batch", "seq", "steps", "r", "alpha", "targets", "gradient_checkpointing", "trainable_params",
     "final_loss", "model", "task", "peft_type", "num_virtual_tokens", "bf16"}
seconds_per_step is the median of the timed steps (after the warmup steps); tokens_per_s = batch*seq /
seconds_per_step. peak_rss_mib is resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) / 1024 — it
includes the Python interpreter and torch itself.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time
import warnings

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--targets", default="q_proj,k_proj,v_proj", help="comma-separated target_modules")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed optimizer steps")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--task", default="CAUSAL_LM", choices=["CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS", "SEQ_2_SEQ_LM"],
                    help="SEQ_CLS / TOKEN_CLS: the model's *ForSequenceClassification / *ForTokenClassification "
                         "(num_labels from its config), random class labels, PEFT's head in modules_to_save")
    ap.add_argument("--target-seq", type=int, default=64, help="SEQ_2_SEQ_LM: the labels' length")
    ap.add_argument("--peft-type", default="LORA", choices=["LORA", "PROMPT_TUNING", "P_TUNING", "PREFIX_TUNING"])
    ap.add_argument("--num-virtual-tokens", type=int, default=20, help="prompt learning: the virtual tokens")
    ap.add_argument("--bf16", action="store_true", help="forward under torch.autocast('cpu', dtype=torch.bfloat16)")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    import peft
    import transformers
    from peft import LoraConfig, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, TaskType, get_peft_model
    from transformers import (AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoModelForSequenceClassification,
                              AutoModelForTokenClassification)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.simplefilter("ignore")          # fan_in_fan_out for GPT-2's Conv1D etc.

    cls = {"CAUSAL_LM": AutoModelForCausalLM, "SEQ_CLS": AutoModelForSequenceClassification,
           "TOKEN_CLS": AutoModelForTokenClassification, "SEQ_2_SEQ_LM": AutoModelForSeq2SeqLM}[args.task]
    model = cls.from_pretrained(args.model, dtype=torch.float32)
    model.config.use_cache = False
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if args.peft_type == "LORA":
        cfg = LoraConfig(r=args.r, lora_alpha=args.alpha, lora_dropout=0.0, task_type=getattr(TaskType, args.task),
                         target_modules=[t for t in args.targets.split(",") if t])
    else:
        prompt_cls = {"PROMPT_TUNING": PromptTuningConfig, "P_TUNING": PromptEncoderConfig,
                      "PREFIX_TUNING": PrefixTuningConfig}[args.peft_type]
        cfg = prompt_cls(task_type=getattr(TaskType, args.task), num_virtual_tokens=args.num_virtual_tokens)
    model = get_peft_model(model, cfg)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr)

    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)
    mask = torch.ones_like(ids)
    labels = ids
    s2s = args.task == "SEQ_2_SEQ_LM"
    if s2s:
        labels = torch.randint(2, model.config.vocab_size, (args.batch, args.target_seq), generator=gen)
    elif args.task != "CAUSAL_LM":
        K = model.config.num_labels
        labels = torch.randint(0, K, (args.batch,) if args.task == "SEQ_CLS" else (args.batch, args.seq), generator=gen)

    times, loss = [], float("nan")
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(input_ids=ids, attention_mask=mask, labels=labels, **({"use_cache": False} if args.task in ("CAUSAL_LM", "SEQ_2_SEQ_LM") else {}))
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        loss = float(out.loss.detach())
        if i >= args.warmup:
            times.append(dt)
    sps = statistics.median(times)
    print(json.dumps({
        "tokens_per_s": args.batch * (args.seq + (args.target_seq if s2s else 0)) / sps,
        "seconds_per_step": sps,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch, "seq": args.seq, "steps": args.steps, "r": args.r, "alpha": args.alpha,
        "targets": args.targets, "gradient_checkpointing": args.gradient_checkpointing,
        "trainable_params": sum(p.numel() for p in params), "final_loss": loss,
        "model": os.path.abspath(args.model), "task": args.task, "peft_type": args.peft_type,
        "num_virtual_tokens": 0 if args.peft_type == "LORA" else args.num_virtual_tokens,
        "target_seq": args.target_seq if s2s else 0, "bf16": args.bf16,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
