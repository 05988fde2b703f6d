#!/usr/bin/env python3
"""PyTorch side of the generation benchmark: transformers' generate() (greedy, KV cache) on random prompts.

    tests/reference/.venv/bin/python bench/pytorch_generate.py --model DIR --batch 1 --prompt 32 --new 128 \
        [--warmup 1] [--iters 3] [--threads N] [--num-beams 1]

no_grad, eval(), float32, transformers' default attention (eager for GPT-Neo, its only CPU attention; sdpa for
GPT-2), DynamicCache. The model's eos is cleared (model.generation_config.eos_token_id = None) so that every row
generates exactly --new tokens, as the C side does. Prints one JSON line:
    {"tokens_per_s", "seconds_per_run", "new_tokens", "peak_rss_mib", "torch", "transformers", "threads", ...}
An encoder-decoder (config.is_encoder_decoder: t5) is loaded with AutoModelForSeq2SeqLM: the prompt is its
encoder input and the output starts with the decoder start token (not counted). --num-beams N > 1 is beam search
(early_stopping False, length_penalty 1: generate()'s defaults), the best sequence per prompt counted.
seconds_per_run is the median of the timed runs; tokens_per_s = batch*new / seconds_per_run (prefill included).
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
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--num-beams", type=int, default=1, help="> 1: beam search")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch default)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the dtype the model is loaded and computed in (bfloat16: as a BF16 checkpoint's users load it)")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    s2s = bool(getattr(AutoConfig.from_pretrained(args.model), "is_encoder_decoder", False))
    cls = AutoModelForSeq2SeqLM if s2s else AutoModelForCausalLM
    model = cls.from_pretrained(args.model, dtype=getattr(torch, args.dtype)).eval()
    model.generation_config.eos_token_id = None
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.prompt), generator=gen)
    mask = torch.ones_like(ids)

    times, produced = [], 0
    with torch.no_grad():
        for i in range(args.warmup + args.iters):
            t0 = time.perf_counter()
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new, do_sample=False,
                                 pad_token_id=0, num_beams=args.num_beams)
            dt = time.perf_counter() - t0
            produced = (out.shape[1] - (1 if s2s else args.prompt)) * args.batch
            if i >= args.warmup:
                times.append(dt)
    spr = statistics.median(times)
    print(json.dumps({
        "tokens_per_s": produced / spr,
        "seconds_per_run": spr,
        "new_tokens": produced,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "batch": args.batch, "prompt": args.prompt, "new": args.new, "iters": args.iters, "num_beams": args.num_beams,
        "model": os.path.abspath(args.model),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
