#!/usr/bin/env python3
"""Create a random, full-size checkpoint for benchmarks (seeded): GPT-Neo-125M or GPT-2-124M (causal LM),
or a sequence classifier shaped as bert-base-uncased (bert) or all-MiniLM-L6-v2 (minilm), 2 labels, or an
encoder-decoder shaped as t5-small (t5: d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, vocab 32128, relu (v1.0),
tied head), or the decoders of issue 15: EleutherAI/pythia-160m's shape (pythia: GPT-NeoX, hidden 768, 12 layers,
12 heads, rotary_pct 0.25, parallel residual, vocab 50304, untied) and Qwen/Qwen3-0.6B's (qwen3: hidden 1024, 28
layers, 16 heads, 8 kv heads, head_dim 128, intermediate 3072, vocab 151936, tied), and
HuggingFaceTB/SmolLM2-135M's (smollm2: Llama, hidden 576, 30 layers, 9 heads, 3 kv heads, intermediate 1536,
vocab 49152, rope_theta 100000, tied). gpt2_2k is GPT-2-124M with n_positions 2048 (GPT-2 has 1024), so that
the training benchmark can run it at 1 × 2048 (0.8M more parameters in wpe, nothing else changes).

    tests/reference/.venv/bin/python bench/make_bench_model.py --arch gpt_neo|gpt2|gpt2_2k|bert|minilm|t5|pythia|qwen3|smollm2 --out DIR [--dtype f32|f16|bf16]

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
    elif arch in ("gpt2", "gpt2_2k"):    # openai-community/gpt2 (gpt2_2k: 2048 positions)
        c = GPT2Config(n_embd=768, n_layer=12, n_head=12, n_positions=2048 if arch == "gpt2_2k" else 1024, vocab_size=50257,
                       activation_function="gelu_new", embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0,
                       layer_norm_epsilon=1e-5, bos_token_id=50256, eos_token_id=50256)
        c.architectures = ["GPT2LMHeadModel"]
    elif arch in ("bert", "minilm"):   # bert-base-uncased / sentence-transformers/all-MiniLM-L6-v2
        from transformers import BertConfig
        big = arch == "bert"
        c = BertConfig(vocab_size=30522, hidden_size=768 if big else 384, num_hidden_layers=12 if big else 6,
                       num_attention_heads=12, intermediate_size=3072 if big else 1536, max_position_embeddings=512,
                       hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2, pad_token_id=0)
        c.architectures = ["BertForSequenceClassification"]
    elif arch == "t5":      # google-t5/t5-small
        from transformers import T5Config
        c = T5Config(vocab_size=32128, d_model=512, d_kv=64, d_ff=2048, num_layers=6, num_decoder_layers=6, num_heads=8,
                     relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                     feed_forward_proj="relu", tie_word_embeddings=True, pad_token_id=0, eos_token_id=1,
                     decoder_start_token_id=0)
        c.architectures = ["T5ForConditionalGeneration"]
    elif arch == "pythia":  # EleutherAI/pythia-160m
        from transformers import GPTNeoXConfig
        c = GPTNeoXConfig(vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                          intermediate_size=3072, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000,
                          max_position_embeddings=2048, layer_norm_eps=1e-5, use_parallel_residual=True,
                          tie_word_embeddings=False, attention_dropout=0.0, hidden_dropout=0.0, bos_token_id=0,
                          eos_token_id=0)
        c.architectures = ["GPTNeoXForCausalLM"]
    elif arch == "qwen3":   # Qwen/Qwen3-0.6B
        from transformers import Qwen3Config
        c = Qwen3Config(vocab_size=151936, hidden_size=1024, num_hidden_layers=28, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=128, intermediate_size=3072, hidden_act="silu",
                        max_position_embeddings=40960, rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False,
                        tie_word_embeddings=True, bos_token_id=151643, eos_token_id=151645)
        c.architectures = ["Qwen3ForCausalLM"]
    elif arch == "smollm2":  # HuggingFaceTB/SmolLM2-135M
        from transformers import LlamaConfig
        c = LlamaConfig(vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
                        num_key_value_heads=3, intermediate_size=1536, hidden_act="silu", max_position_embeddings=8192,
                        rms_norm_eps=1e-5, rope_theta=100000.0, attention_bias=False, mlp_bias=False,
                        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0)
        c.architectures = ["LlamaForCausalLM"]
    else:
        raise SystemExit(f"unknown --arch {arch}")
    return c


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=["gpt_neo", "gpt2", "gpt2_2k", "bert", "minilm", "t5", "pythia", "qwen3", "smollm2"])
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    from transformers import BertForSequenceClassification, GPT2LMHeadModel, GPTNeoForCausalLM, T5ForConditionalGeneration
    torch.manual_seed(args.seed)
    config = config_for(args.arch)
    from transformers import AutoModelForCausalLM
    cls = {"gpt_neo": GPTNeoForCausalLM, "gpt2": GPT2LMHeadModel, "gpt2_2k": GPT2LMHeadModel, "t5": T5ForConditionalGeneration,
           "pythia": AutoModelForCausalLM.from_config, "qwen3": AutoModelForCausalLM.from_config,
           "smollm2": AutoModelForCausalLM.from_config}.get(
        args.arch, BertForSequenceClassification)
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
