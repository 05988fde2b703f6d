#!/usr/bin/env python3
"""PyTorch side of the forward benchmark: transformers forward on random token ids.

    tests/reference/.venv/bin/python bench/pytorch_forward.py --model DIR --batch 4 --seq 256 \
        --warmup 1 --iters 5 [--threads N]

Runs no_grad, eval(), transformers' default attention (sdpa for GPT-2, eager for GPT-Neo), float32 (weights upcast if stored lower), and
prints one JSON line:
    {"tokens_per_s", "seconds_per_iter", "peak_rss_mib", "torch", "transformers", "threads",
     "batch", "seq", "iters", "model"}
seconds_per_iter is the median of the timed iterations; tokens_per_s = batch*seq / seconds_per_iter.
peak_rss_mib is resource.getrusage(RUSAGE_SELF).ru_maxrss (KiB on Linux) / 1024 — it includes the
Python interpreter and torch itself.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the dtype the model is loaded and computed in (bfloat16: as a BF16 checkpoint's users load it)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoModelForCausalLM
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=getattr(torch, args.dtype))  # default attention (sdpa where the model has it)
    model.eval()
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.seq), generator=gen)
    mask = torch.ones_like(ids)

    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask, use_cache=False)
            dt = time.perf_counter() - t0
            if i >= args.warmup:
                times.append(dt)
    spi = statistics.median(times)
    print(json.dumps({
        "tokens_per_s": args.batch * args.seq / spi,
        "seconds_per_iter": spi,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch, "seq": args.seq, "iters": args.iters,
        "model": os.path.abspath(args.model),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
