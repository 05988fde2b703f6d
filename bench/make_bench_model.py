#!/usr/bin/env python3
"""Create a random, full-size GPT-Neo-125M or GPT-2-124M checkpoint for benchmarks (seeded).

    tests/reference/.venv/bin/python bench/make_bench_model.py --arch gpt_neo|gpt2 --out DIR [--dtype f32|f16|bf16]

The directory gets config.json + model.safetensors from save_pretrained, exactly as a hub checkpoint
would (tied lm_head not stored). No hub access, no tokenizer: benchmarks feed random token ids.
"""

import argparse
import os
import sys

import torch

DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def config_for(arch: str):
    from transformers import GPT2Config, GPTNeoConfig
    if arch == "gpt_neo":   # EleutherAI/gpt-neo-125M
        c = GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12, attention_types=[[["global", "local"], 6]],
                         window_size=256, vocab_size=50257, max_position_embeddings=2048, intermediate_size=None,
                         activation_function="gelu_new", embed_dropout=0.0, attention_dropout=0.0,
                         resid_dropout=0.0, layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256)
        c.architectures = ["GPTNeoForCausalLM"]
    elif arch == "gpt2":    # openai-community/gpt2
        c = GPT2Config(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257,
                       activation_function="gelu_new", embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,
                       layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256)
        c.architectures = ["GPT2LMHeadModel"]
    else:
        raise SystemExit(f"unknown --arch {arch}")
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=["gpt_neo", "gpt2"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    from transformers import GPT2LMHeadModel, GPTNeoForCausalLM
    torch.manual_seed(args.seed)
    config = config_for(args.arch)
    cls = GPTNeoForCausalLM if args.arch == "gpt_neo" else GPT2LMHeadModel
    model = cls(config).eval()
    if DTYPES[args.dtype] != torch.float32:
        model = model.to(DTYPES[args.dtype])
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: {args.arch} {n:,} parameters, {args.dtype}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
