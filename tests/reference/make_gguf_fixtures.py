#!/usr/bin/env python3
"""GGUF fixtures for tests/unit/test_gguf.c, and a parity check of `cpeft convert` against Python.

    make_gguf_fixtures.py make  [--out tests/fixtures/gguf]
    make_gguf_fixtures.py make-arch [--out tests/fixtures/gguf]   (only the qwen2/qwen3/gemma/gemma2/phi3/gpt_neox/phi2/bloom files)
    make_gguf_fixtures.py seeds [--out tests/fuzz/seeds/fuzz_gguf]
    make_gguf_fixtures.py check --convert "build/cpeft convert" [--out tests/fixtures/gguf] [--gguf REAL.gguf]

Needs the reference venv (numpy, torch, transformers, safetensors, tokenizers) plus the `gguf`
package (llama.cpp's gguf-py, 0.19.0), e.g. `pip install --target /tmp/gguf-py --no-deps gguf==0.19.0`
and PYTHONPATH=/tmp/gguf-py. Deterministic: a rerun of `make` writes the same bytes.

`make` writes, under --out:
  tiny-llama-bpe.gguf   GGUF v3, a random 1-layer llama (hidden 64, 4 heads, 2 kv heads, MLP 256,
                        tied embeddings) with tensors in F32, F16, BF16, Q8_0, Q4_0, Q4_1 and Q4_K,
                        and a byte-level BPE tokenizer (tokenizer.ggml.pre "smollm", control and
                        user-defined tokens, merges, chat template).
  tiny-llama-spm.gguf   GGUF v2, the same shape with MLP 128, untied (output.weight) with a SentencePiece BPE
                        tokenizer: byte tokens, scores, no merges (derived, as transformers does).
  *.expected.safetensors  the Hugging Face tensors the conversion must produce: the gguf package's
                        dequantization, with Q and K rows put back in rotate-half order by
                        transformers' reverse permutation (an implementation independent of cpeft).
  quant-zoo.gguf        alignment 64; tensors "zoo.<TYPE>" of random blocks (scales set to finite
                        values) for every type cpeft dequantizes, plus one IQ2_XS (unsupported).
  quant-zoo.expected.safetensors  their f32 values from the gguf package.
  spm-3000.gguf         metadata only: the 3000-piece SentencePiece vocabulary of
                        tests/fixtures/tokenizers/llama as llama.cpp writes one (scores, token types).
  expected.json         hyper-parameters, and token ids that transformers' own GGUF tokenizer
                        loader (AutoTokenizer.from_pretrained(dir, gguf_file=...)) gives for a corpus.
  qwen2 qwen3 gemma gemma2 phi3 .gguf (make-arch, also run by make, with its own seeds)  a tiny random
                        transformers model of each written in llama.cpp's layout (TensorNameMap names,
                        gemma's norms + 1, no lm_head when tied); <arch>.expected.safetensors: the HF
                        tensors from transformers' GGUF loader (qwen2, qwen3, gemma2, phi3) or the gguf
                        package's dequantization with norms - 1 (gemma); <arch>.logits.safetensors: the
                        oracle model's logits for arch.json's ids.
  gpt_neox.gguf phi2.gguf bloom.gguf (make-arch, make_gguf_ln_fixtures.py)  likewise for llama.cpp's
                        gptneox (fused query_key_value re-ordered to [q; k; v], partial rotary, sequential
                        residual), phi2 (partial rotary) and bloom (the fused q/k/v as gptneox, output a
                        copy of the embedding): expected tensors from the gguf package's dequantization
                        with the re-order undone (gpt_neox, phi2; transformers has no loader for them) or
                        transformers' GGUF loader (bloom), checked against the original tensors.

`check` converts each model fixture (and --gguf, e.g. the SmolLM2 GGUF) with the given command and
compares with Python: every tensor bit for bit with the gguf package's dequantization + transformers'
un-permutation, tokenizer.json against transformers' GGUF tokenizer on a corpus, and the logits of
AutoModelForCausalLM loaded from the directory against AutoModelForCausalLM loaded from the GGUF.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as Q
except ImportError:
    sys.exit("make_gguf_fixtures.py needs the `gguf` package (pip install gguf==0.19.0); see the docstring")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

CORPUS = [
    "Hello world",
    "the weather in the hills is fine",
    "  two leading spaces\tand a tab\n\nand new lines",
    "The year 2024 had 366 days; pi = 3.14159!",
    "<|im_start|>user\nwhat is the answer?<|im_end|>\n",
    "<think>reasoning</think> done",
    "naïve café, déjà vu 😀 日本語",
    "don't won't I'm you're they've",
    "there were three tall trees",
    "",
]


# ---- llama.cpp's conventions, written out independently ------------------------------------------

def llamacpp_permute(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute: Hugging Face rotate-half rows -> interleaved."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def reverse_permute(w, n_head):
    """transformers' LlamaTensorProcessor._reverse_permute_weights."""
    dim = w.shape[0] // n_head // 2
    return w.reshape(n_head, dim, 2, *w.shape[1:]).swapaxes(2, 1).reshape(w.shape)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


# ---- random blocks with finite scales ---------------------------------------------------------------

BLOCK = {t: gguf.GGML_QUANT_SIZES[t] for t in Q}
# (byte offset, kind) of the scale fields inside one block: "h" f16, "f" f32
SCALES = {
    Q.Q4_0: [(0, "h")], Q.Q4_1: [(0, "h"), (2, "h")], Q.Q5_0: [(0, "h")], Q.Q5_1: [(0, "h"), (2, "h")],
    Q.Q8_0: [(0, "h")], Q.Q2_K: [(80, "h"), (82, "h")], Q.Q3_K: [(108, "h")], Q.Q4_K: [(0, "h"), (2, "h")],
    Q.Q5_K: [(0, "h"), (2, "h")], Q.Q6_K: [(208, "h")], Q.Q8_K: [(0, "f")], Q.IQ2_XS: [(0, "h")],
}


def random_blocks(rng, qtype, rows, cols, scale=0.01):
    """rows x cols elements of `qtype` as random block bytes whose scale fields are finite."""
    bs, ts = BLOCK[qtype]
    nb = rows * cols // bs
    raw = rng.integers(0, 256, size=(nb, ts), dtype=np.uint8)
    for off, kind in SCALES[qtype]:
        if kind == "h":
            v = (rng.uniform(0.2, 1.0, nb) * scale).astype(np.float16)
            raw[:, off:off + 2] = v.view(np.uint8).reshape(nb, 2)
        else:
            v = (rng.uniform(0.2, 1.0, nb) * scale).astype(np.float32)
            raw[:, off:off + 4] = v.view(np.uint8).reshape(nb, 4)
    return raw.reshape(rows, cols // bs * ts)


def encode_tensor(rng, w, qtype):
    """(data for GGUFWriter.add_tensor, raw_dtype, the f32 values the GGUF holds) for weight w."""
    if qtype == Q.F32:
        return w.astype(np.float32), None, w.astype(np.float32)
    if qtype == Q.F16:
        h = w.astype(np.float16)
        return h, None, h.astype(np.float32)
    if qtype in (Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0):
        q = gguf.quants.quantize(w.astype(np.float32), qtype)
    else:  # K-quants: the gguf package only dequantizes them
        q = random_blocks(rng, qtype, w.shape[0], w.shape[1], scale=0.002)
    return q, qtype, gguf.quants.dequantize(q, qtype).reshape(w.shape).astype(np.float32)


# ---- the fixtures ------------------------------------------------------------------------------------

H, NH, NKV, L = 64, 4, 2, 1
HD = H // NH


def bpe_vocab():
    """A tiny byte-level BPE: 3 control tokens, 1 user-defined, 256 bytes, 12 merges."""
    b2u = bytes_to_unicode()
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>"]
    types = [3, 3, 3, 4]
    tokens += [b2u[b] for b in range(256)]
    types += [1] * 256
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a", "e r", "o n", "Ġ s", "r e", "Ġ w", "a t", "e n"]
    for m in merges:
        tokens.append(m.replace(" ", ""))
        types.append(1)
    tokens += ["</think>"]
    types += [4]
    return tokens, types, merges


def spm_vocab():
    """A tiny SentencePiece BPE vocabulary as llama.cpp writes one: <unk> <s> </s>, 256 byte
    tokens, then pieces by descending score, single characters last."""
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [2, 3, 3] + [6] * 256
    scores = [0.0] * len(tokens)
    pieces = ["▁t", "he", "▁the", "in", "▁a", "er", "on", "▁s", "re", "▁w", "at", "en", "▁th", "ll", "▁he",
              "llo", "▁hello", "or", "ld", "▁wor", "▁world", "▁i", "is", "▁is"]
    chars = list("▁etaoinshrdlcumwfgypbvkjxqz.,!?'")
    for k, p in enumerate(pieces + chars):
        tokens.append(p)
        types.append(1)
        scores.append(-float(k))
    return tokens, types, scores


def model_weights(rng, V, tied, I):
    """Hugging Face-layout random weights."""
    def m(r, c, s=0.08):
        return rng.normal(0, s, size=(r, c)).astype(np.float32)
    w = {"model.embed_tokens.weight": m(V, H, 0.5), "model.norm.weight": 1 + 0.1 * rng.normal(size=H).astype(np.float32)}
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + 0.1 * rng.normal(size=H).astype(np.float32)
        w[p + "post_attention_layernorm.weight"] = 1 + 0.1 * rng.normal(size=H).astype(np.float32)
        w[p + "self_attn.q_proj.weight"] = m(NH * HD, H)
        w[p + "self_attn.k_proj.weight"] = m(NKV * HD, H)
        w[p + "self_attn.v_proj.weight"] = m(NKV * HD, H)
        w[p + "self_attn.o_proj.weight"] = m(H, NH * HD)
        w[p + "mlp.gate_proj.weight"] = m(I, H)
        w[p + "mlp.up_proj.weight"] = m(I, H)
        w[p + "mlp.down_proj.weight"] = m(H, I)
    if not tied:
        w["lm_head.weight"] = m(V, H)
    return w


HF_OF = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
         "output.weight": "lm_head.weight"}
BLOCK_HF = {"attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
            "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
            "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj"}


def hf_name(gname):
    if gname in HF_OF:
        return HF_OF[gname]
    _, l, s, kind = gname.split(".")
    return f"model.layers.{l}.{BLOCK_HF[s]}.{kind}"


def write_model(path, rng, version, vocab_kv, V, tied, types, I):
    from safetensors.numpy import save_file
    hf = model_weights(rng, V, tied, I)
    w = gguf.GGUFWriter(path, "llama")
    w.add_string("general.name", os.path.basename(path).replace(".gguf", ""))
    w.add_string("general.license", "apache-2.0")
    w.add_uint32("llama.block_count", L)
    w.add_uint32("llama.context_length", 256)
    w.add_uint32("llama.embedding_length", H)
    w.add_uint32("llama.feed_forward_length", I)
    w.add_uint32("llama.attention.head_count", NH)
    w.add_uint32("llama.attention.head_count_kv", NKV)
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32("llama.rope.dimension_count", HD)
    w.add_uint32("llama.vocab_size", V)
    w.add_uint32("general.file_type", 7)
    for k, (kind, v) in vocab_kv.items():
        getattr(w, "add_" + kind)(k, v)
    expected = {}
    gnames = ["token_embd.weight"] + [f"blk.{l}.{s}.weight" for l in range(L) for s in BLOCK_HF] + ["output_norm.weight"]
    if not tied:
        gnames.append("output.weight")
    for gname in gnames:
        hname = hf_name(gname)
        x = hf[hname]
        if ".attn_q." in gname:
            x = llamacpp_permute(x, NH)
        if ".attn_k." in gname:
            x = llamacpp_permute(x, NKV)
        data, raw, _ = encode_tensor(rng, x, types.get(gname.split(".")[-2] if gname.startswith("blk.") else gname, Q.F32))
        w.add_tensor(gname, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version != 3:  # v2 and v3 differ only in the version field (v3 allows big-endian files)
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(np.uint32(version).tobytes())
    # Expected HF tensors: read back, dequantize with the gguf package, reverse-permute as transformers does.
    r = gguf.GGUFReader(path)
    for t in r.tensors:
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(s) for s in reversed(t.shape)])
        if ".attn_q." in t.name:
            v = reverse_permute(v, NH)
        if ".attn_k." in t.name:
            v = reverse_permute(v, NKV)
        expected[hf_name(t.name)] = np.ascontiguousarray(v)
    save_file(expected, path.replace(".gguf", ".expected.safetensors"))
    return expected


def hf_tokenizer_from_gguf(path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(path), gguf_file=os.path.basename(path))


def make(out):
    from safetensors.numpy import save_file
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(20240607)
    expected = {}

    # 1. byte-level BPE model, GGUF v3, tied
    tokens, types, merges = bpe_vocab()
    chat = ("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n'}}{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
    kv = {"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.pre": ("string", "smollm"),
          "tokenizer.ggml.tokens": ("array", tokens), "tokenizer.ggml.token_type": ("array", types),
          "tokenizer.ggml.merges": ("array", merges), "tokenizer.ggml.bos_token_id": ("uint32", 1),
          "tokenizer.ggml.eos_token_id": ("uint32", 2), "tokenizer.ggml.unknown_token_id": ("uint32", 0),
          "tokenizer.ggml.padding_token_id": ("uint32", 2), "tokenizer.ggml.add_bos_token": ("bool", False),
          "tokenizer.chat_template": ("string", chat)}
    bpe_types = {"token_embd.weight": Q.Q8_0, "attn_q": Q.F16, "attn_k": Q.BF16, "attn_v": Q.Q4_0, "attn_output": Q.Q4_1,
                 "ffn_gate": Q.Q8_0, "ffn_up": Q.F16, "ffn_down": Q.Q4_K}
    p = os.path.join(out, "tiny-llama-bpe.gguf")
    write_model(p, rng, 3, kv, len(tokens), True, bpe_types, I=256)
    tk = hf_tokenizer_from_gguf(p)
    expected["tiny-llama-bpe"] = {
        "vocab_size": len(tokens), "tied": True, "n_merges": len(merges),
        "encodings": [[t, tk(t).input_ids] for t in CORPUS],
    }

    # 2. SentencePiece model, GGUF v2, untied, no merges
    tokens, types, scores = spm_vocab()
    kv = {"tokenizer.ggml.model": ("string", "llama"), "tokenizer.ggml.tokens": ("array", tokens),
          "tokenizer.ggml.scores": ("array", [float(s) for s in scores]),
          "tokenizer.ggml.token_type": ("array", types), "tokenizer.ggml.bos_token_id": ("uint32", 1),
          "tokenizer.ggml.eos_token_id": ("uint32", 2), "tokenizer.ggml.unknown_token_id": ("uint32", 0),
          "tokenizer.ggml.add_bos_token": ("bool", True), "tokenizer.ggml.add_eos_token": ("bool", False)}
    spm_types = {"token_embd.weight": Q.F16, "output.weight": Q.Q8_0, "attn_q": Q.Q8_0, "attn_k": Q.Q4_1,
                 "attn_v": Q.F32, "attn_output": Q.BF16, "ffn_gate": Q.Q4_0, "ffn_up": Q.Q8_0, "ffn_down": Q.Q4_0}
    p = os.path.join(out, "tiny-llama-spm.gguf")
    write_model(p, rng, 2, kv, len(tokens), False, spm_types, I=128)
    tk = hf_tokenizer_from_gguf(p)
    expected["tiny-llama-spm"] = {
        "vocab_size": len(tokens), "tied": False,
        "encodings": [[t, tk(t).input_ids] for t in CORPUS],
    }

    # 3. every dequantizable type, alignment 64
    zoo_types = [Q.F32, Q.F16, Q.BF16, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q8_0, Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K,
                 Q.Q6_K, Q.Q8_K]
    p = os.path.join(out, "quant-zoo.gguf")
    w = gguf.GGUFWriter(p, "zoo")
    w.add_custom_alignment(64)
    zoo = {}
    for t in zoo_types:
        x = rng.normal(0, 1, size=(2, 256)).astype(np.float32)
        if t in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K):
            data, raw = random_blocks(rng, t, 2, 256, scale=0.05), t
        else:
            data, raw, _ = encode_tensor(rng, x, t)
        w.add_tensor(f"zoo.{t.name}", data, raw_dtype=raw)
    w.add_tensor("zoo.IQ2_XS", random_blocks(rng, Q.IQ2_XS, 1, 256), raw_dtype=Q.IQ2_XS)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for t in gguf.GGUFReader(p).tensors:
        if t.tensor_type == Q.Q8_K:  # the gguf package has no Q8_K: {f32 d; i8 qs[256]; i16 bsums[16]}
            b = np.asarray(t.data, dtype=np.uint8).reshape(-1, 292)
            v = b[:, :4].copy().view(np.float32) * b[:, 4:260].view(np.int8).astype(np.float32)
            zoo[t.name] = np.ascontiguousarray(v.reshape(2, 256))
        elif t.tensor_type != Q.IQ2_XS:
            zoo[t.name] = np.ascontiguousarray(gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(2, 256))
    save_file(zoo, os.path.join(out, "quant-zoo.expected.safetensors"))

    # 4. a real-size SentencePiece vocabulary, metadata only
    tj = json.load(open(os.path.join(ROOT, "tests/fixtures/tokenizers/llama/tokenizer.json")))
    vocab = sorted(tj["model"]["vocab"].items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    tokens = [t for t, _ in vocab]
    types = [2 if t == "<unk>" else 3 if t in ("<s>", "</s>") else 6 if t.startswith("<0x") and len(t) == 6 else 1
             for t in tokens]
    scores = np.array([0.0 if ty != 1 else -float(i) for i, ty in enumerate(types)], dtype=np.float32)
    p = os.path.join(out, "spm-3000.gguf")
    w = gguf.GGUFWriter(p, "llama")
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.scores", [float(s) for s in scores])
    w.add_array("tokenizer.ggml.token_type", types)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)
    w.add_uint32("tokenizer.ggml.unknown_token_id", 0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tk = hf_tokenizer_from_gguf(p)
    corpus = CORPUS + [l for l in open(os.path.join(ROOT, "tests/fixtures/tokenizers/SOURCE.md"), encoding="utf-8")
                       .read().splitlines() if l.strip()][:40]
    expected["spm-3000"] = {"encodings": [[t, tk(t).input_ids] for t in corpus]}

    with open(os.path.join(out, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)
        f.write("\n")
    for n in sorted(os.listdir(out)):
        print(f"  {n}: {os.path.getsize(os.path.join(out, n))} bytes")


# ---- other architectures: qwen2, qwen3, gemma, gemma2, phi3 ------------------------------------------------------

# (GGUF arch, gguf-py MODEL_ARCH, head_dim written as attention.key_length (None: hidden / heads), vocab)
ARCHS = {
    "qwen2": ("qwen2", "QWEN2", None, "bpe"),
    "qwen3": ("qwen3", "QWEN3", 16, "bpe"),
    "gemma": ("gemma", "GEMMA", 16, "spm"),
    "gemma2": ("gemma2", "GEMMA2", 16, "spm"),
    "phi3": ("phi3", "PHI3", None, "bpe"),
}
GEMMA_LIKE = ("gemma", "gemma2")  # norms stored as 1 + w, no rope base, no lm_head (tied)
AH, ANH, ANKV, AL, AI = 32, 4, 2, 2, 64
ARCH_TYPES = {"token_embd": Q.Q8_0, "attn_q": Q.F16, "attn_k": Q.BF16, "attn_v": Q.Q8_0, "attn_output": Q.Q4_0,
              "ffn_gate": Q.Q5_1, "ffn_up": Q.F32, "ffn_down": Q.Q4_1, "output": Q.Q8_0}
ARCH_IDS = [3, 17, 100, 261, 270, 5, 42, 200]


def arch_config(name, V, bos, eos):
    """The Hugging Face config of the tiny random model that the fixture's GGUF is made from."""
    from transformers import AutoConfig
    arch, _, hd, _ = ARCHS[name]
    kw = dict(vocab_size=V, hidden_size=AH, intermediate_size=AI, num_hidden_layers=AL, num_attention_heads=ANH,
              num_key_value_heads=ANKV, max_position_embeddings=256, rms_norm_eps=1e-6, bos_token_id=bos,
              eos_token_id=eos, tie_word_embeddings=name != "qwen2")
    kw["head_dim"] = hd or AH // ANH
    if name == "qwen2":
        kw["rope_theta"] = 1000000.0
    if name == "gemma2":  # caps other than Gemma2Config's defaults, so that reading the keys shows
        kw.update(attn_logit_softcapping=20.0, final_logit_softcapping=15.0, sliding_window=4,
                  query_pre_attn_scalar=hd)
    if name == "phi3":  # partial rotary (rope.dimension_count 4 of head_dim 8) and a window the 8 ids pass
        kw.update(partial_rotary_factor=0.5, sliding_window=5, rope_theta=5000.0, pad_token_id=0)
    return AutoConfig.for_model(name, **kw)


def write_arch_gguf(path, name, hf, cfg, vocab_kv):
    """Writes the HF tensors `hf` in llama.cpp's layout: gguf-py's TensorNameMap names, the
    architecture's keys, gemma's norms as 1 + w, no lm_head for tied models, nothing permuted."""
    import torch
    arch, marchname, hd, _ = ARCHS[name]
    rng = np.random.default_rng(11)
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, marchname), AL)
    w = gguf.GGUFWriter(path, arch)
    w.add_string("general.name", f"tiny-{name}")
    w.add_string("general.license", "apache-2.0")
    w.add_uint32(f"{arch}.block_count", AL)
    w.add_uint32(f"{arch}.context_length", 256)
    w.add_uint32(f"{arch}.embedding_length", AH)
    w.add_uint32(f"{arch}.feed_forward_length", AI)
    w.add_uint32(f"{arch}.attention.head_count", ANH)
    w.add_uint32(f"{arch}.attention.head_count_kv", ANKV)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    if name not in GEMMA_LIKE:  # llama.cpp's Gemma(2)Model writes no rope base (10000)
        w.add_float32(f"{arch}.rope.freq_base", float(getattr(cfg, "rope_theta", None) or cfg.rope_parameters["rope_theta"]))
    if hd:
        w.add_uint32(f"{arch}.attention.key_length", hd)
        w.add_uint32(f"{arch}.attention.value_length", hd)
    if name == "gemma2":  # convert_hf_to_gguf.py Gemma2Model.set_gguf_parameters
        w.add_float32(f"{arch}.attn_logit_softcapping", cfg.attn_logit_softcapping)
        w.add_float32(f"{arch}.final_logit_softcapping", cfg.final_logit_softcapping)
        w.add_uint32(f"{arch}.attention.sliding_window", cfg.sliding_window)
    if name == "phi3":  # Phi3MiniModel.set_gguf_parameters: partial rotary as a count, the window, the original context
        w.add_uint32(f"{arch}.rope.dimension_count", int(cfg.rope_parameters["partial_rotary_factor"] * AH) // ANH)
        w.add_uint32(f"{arch}.attention.sliding_window", cfg.sliding_window)
        w.add_uint32(f"{arch}.rope.scaling.original_context_length", 256)
    w.add_uint32("general.file_type", 7)
    for k, (kind, v) in vocab_kv.items():
        getattr(w, "add_" + kind)(k, v)
    for hname, t in hf.items():
        if hname == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        gname = tmap.get_name(hname, try_suffixes=(".weight", ".bias"))
        assert gname, hname
        x = t.detach().to(torch.float32)
        if name in GEMMA_LIKE and hname.endswith("norm.weight"):
            x = x + 1  # convert_hf_to_gguf.py GemmaModel / Gemma2Model.modify_tensors
        x = x.numpy()
        kind = gname.split(".")[-2] if gname.startswith("blk.") else gname.split(".")[0]
        qt = ARCH_TYPES.get(kind, Q.F32) if x.ndim == 2 else Q.F32
        data, raw, _ = encode_tensor(rng, x, qt)
        w.add_tensor(gname, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def gemma_expected(path):
    """gemma: transformers' GGUF loader has no gemma; the expected tensors are the gguf package's
    dequantization with the documented transform (norms - 1 in f32), under the names TensorNameMap
    gives (inverted)."""
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.GEMMA, AL)
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(s) for s in reversed(t.shape)])
        if t.name.endswith("norm.weight"):
            v = v - np.float32(1)
        out[t.name] = np.ascontiguousarray(v)
    names = {}
    for l in range(AL):
        for hs in ("input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                   "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"):
            names[tmap.get_name(f"model.layers.{l}.{hs}.weight", try_suffixes=(".weight",))] = f"model.layers.{l}.{hs}.weight"
    for hs in ("model.embed_tokens.weight", "model.norm.weight"):
        names[tmap.get_name(hs, try_suffixes=(".weight",))] = hs
    return {names[k]: v for k, v in out.items()}


def make_arch(out):
    """<arch>.gguf, <arch>.expected.safetensors (the HF tensors) and <arch>.logits.safetensors (the
    logits of ARCH_IDS) for qwen2, qwen3, gemma, gemma2 and phi3 (then gpt_neox, phi2 and bloom through
    make_gguf_ln_fixtures.py); arch.json."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoModelForCausalLM
    meta = {}
    for name in ARCHS:
        torch.manual_seed(1234)
        if ARCHS[name][3] == "bpe":
            tokens, types, merges = bpe_vocab()
            vkv = {"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.pre": ("string", "qwen2"),
                   "tokenizer.ggml.tokens": ("array", tokens), "tokenizer.ggml.token_type": ("array", types),
                   "tokenizer.ggml.merges": ("array", merges), "tokenizer.ggml.bos_token_id": ("uint32", 0),
                   "tokenizer.ggml.eos_token_id": ("uint32", 2), "tokenizer.ggml.padding_token_id": ("uint32", 0),
                   "tokenizer.ggml.add_bos_token": ("bool", False)}
            bos, eos = 0, 2
        else:
            tokens, types, scores = spm_vocab()
            vkv = {"tokenizer.ggml.model": ("string", "llama"), "tokenizer.ggml.tokens": ("array", tokens),
                   "tokenizer.ggml.scores": ("array", [float(x) for x in scores]),
                   "tokenizer.ggml.token_type": ("array", types), "tokenizer.ggml.bos_token_id": ("uint32", 1),
                   "tokenizer.ggml.eos_token_id": ("uint32", 2), "tokenizer.ggml.unknown_token_id": ("uint32", 0),
                   "tokenizer.ggml.padding_token_id": ("uint32", 0), "tokenizer.ggml.add_bos_token": ("bool", True)}
            bos, eos = 1, 2
        V = len(tokens)
        cfg = arch_config(name, V, bos, eos)
        model = AutoModelForCausalLM.from_config(cfg).to(torch.float32)
        with torch.no_grad():  # norms and biases away from their initial 1 / 0
            for k, p in model.named_parameters():
                if p.ndim == 1:
                    p.copy_((0.0 if name in GEMMA_LIKE or k.endswith("bias") else 1.0) + 0.1 * torch.randn_like(p))
        hf = dict(model.state_dict())
        path = os.path.join(out, f"{name}.gguf")
        write_arch_gguf(path, name, hf, cfg, vkv)
        ids = torch.tensor([ARCH_IDS])
        if name == "gemma":
            exp = gemma_expected(path)
            oracle = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
            missing = oracle.load_state_dict({k: torch.from_numpy(v) for k, v in exp.items()}, strict=False)
            assert set(missing.missing_keys) <= {"lm_head.weight"}, missing
            oracle.tie_weights()
            how = "the gguf package's dequantization, norms - 1 (transformers has no gemma GGUF loader)"
        else:
            kw = {}
            if name == "qwen3":  # transformers' qwen3 GGUF loader ignores attention.key_length (head_dim 128)
                from transformers import AutoConfig
                c = AutoConfig.from_pretrained(out, gguf_file=os.path.basename(path))
                c.head_dim = ARCHS[name][2]
                kw["config"] = c
            oracle = AutoModelForCausalLM.from_pretrained(out, gguf_file=os.path.basename(path), dtype=torch.float32,
                                                          **kw).eval()
            exp = {k: np.ascontiguousarray(v.numpy()) for k, v in oracle.state_dict().items()
                   if not (k == "lm_head.weight" and oracle.config.tie_word_embeddings)}
            how = "transformers' GGUF loader (AutoModelForCausalLM.from_pretrained(dir, gguf_file=...))"
            if name in ("gemma2", "phi3"):
                # transformers' gemma2 / phi3 GGUF configs ignore the soft-caps, the window and (phi3) the
                # partial rotary: its loader's tensors, run by the original config (what the keys say)
                oracle = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
                missing = oracle.load_state_dict({k: torch.from_numpy(v) for k, v in exp.items()}, strict=False)
                assert set(missing.missing_keys) <= {"lm_head.weight"}, missing
                oracle.tie_weights()
                how += ", run with the original config"
        with torch.no_grad():
            logits = oracle(ids).logits.float().numpy()
        save_file(exp, path.replace(".gguf", ".expected.safetensors"))
        save_file({"logits": np.ascontiguousarray(logits)}, path.replace(".gguf", ".logits.safetensors"))
        quant = max(float(np.abs(exp[k] - hf[k].numpy()).max()) for k in exp)
        meta[name] = {"input_ids": ARCH_IDS, "n_tensors": len(exp), "head_dim": ARCHS[name][2] or AH // ANH,
                      "tied": bool(cfg.tie_word_embeddings), "expected_from": how}
        print(f"  {name}: {len(exp)} tensors from {how}; max |expected - original| {quant:.3g} (quantization)")
    from make_gguf_ln_fixtures import make_arch_layernorm  # gpt_neox, phi2, bloom
    make_arch_layernorm(out, meta)
    with open(os.path.join(out, "arch.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


def check_arch(convert, out):
    """Converts each architecture fixture with cpeft, loads the directory in transformers and compares
    its tensors (bit for bit) and logits with the expected ones."""
    import torch
    from safetensors.numpy import load_file as load_np
    from transformers import AutoModelForCausalLM
    ok = True
    meta = json.load(open(os.path.join(out, "arch.json")))
    for name, m in meta.items():
        gpath = os.path.join(out, f"{name}.gguf")
        with tempfile.TemporaryDirectory() as tmp:
            d = os.path.join(tmp, "hf")
            res = subprocess.run(shlex.split(convert) + ["--gguf", gpath, "--out", d], capture_output=True, text=True)
            if res.returncode:
                print(name, res.stdout, res.stderr)
                ok = False
                continue
            from safetensors.torch import load_file as load_pt
            got = {k: v.float().numpy() for k, v in load_pt(os.path.join(d, "model.safetensors")).items()}
            exp = load_np(gpath.replace(".gguf", ".expected.safetensors"))
            same = sum(k in got and got[k].tobytes() == v.tobytes() for k, v in exp.items())
            model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
            with torch.no_grad():
                a = model(torch.tensor([m["input_ids"]])).logits.numpy()
            b = load_np(gpath.replace(".gguf", ".logits.safetensors"))["logits"]
            diff = float(np.abs(a - b).max())
            print(f"{name}: {same}/{len(exp)} tensors bit-identical ({len(got)} written); logits of transformers on "
                  f"the converted directory vs the oracle: max diff {diff:.3e}")
            ok &= same == len(exp) == len(got) and diff <= 1e-5
    return ok


# ---- fuzzer seeds -----------------------------------------------------------------------------------

def write_gguf(path, arch, kvs, tensors, alignment=None, version=3):
    w = gguf.GGUFWriter(path, arch)
    if alignment:
        w.add_custom_alignment(alignment)
    for k, (kind, v) in kvs.items():
        getattr(w, "add_" + kind)(k, v)
    for name, data, raw in tensors:
        w.add_tensor(name, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    if version != 3:
        with open(path, "r+b") as f:
            f.seek(4)
            f.write(np.uint32(version).tobytes())


def mini_llama_tensors(rng, V, h, i, types, tied=True):
    nh, nkv = 2, 1
    hd = h // nh
    shapes = {"token_embd.weight": (V, h), "blk.0.attn_norm.weight": (h,), "blk.0.attn_q.weight": (nh * hd, h),
              "blk.0.attn_k.weight": (nkv * hd, h), "blk.0.attn_v.weight": (nkv * hd, h),
              "blk.0.attn_output.weight": (h, nh * hd), "blk.0.ffn_norm.weight": (h,), "blk.0.ffn_gate.weight": (i, h),
              "blk.0.ffn_up.weight": (i, h), "blk.0.ffn_down.weight": (h, i), "output_norm.weight": (h,)}
    if not tied:
        shapes["output.weight"] = (V, h)
    out = []
    for name, shape in shapes.items():
        x = rng.normal(0, 0.1, size=shape).astype(np.float32)
        qt = types.get(name, Q.F32) if len(shape) == 2 else Q.F32
        data, raw, _ = encode_tensor(rng, x, qt)
        out.append((name, data, raw))
    return out


def llama_kv(h, i, V, extra):
    kv = {"llama.block_count": ("uint32", 1), "llama.context_length": ("uint32", 64),
          "llama.embedding_length": ("uint32", h), "llama.feed_forward_length": ("uint32", i),
          "llama.attention.head_count": ("uint32", 2), "llama.attention.head_count_kv": ("uint32", 1),
          "llama.attention.layer_norm_rms_epsilon": ("float32", 1e-6), "llama.rope.freq_base": ("float32", 10000.0),
          "llama.vocab_size": ("uint32", V)}
    kv.update(extra)
    return kv


def seeds(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(7)
    toks = ["<|end|>", "a", "b", "c", "Ġ", "ab", "Ġa", "Ġab", "<think>"]
    bpe = {"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.pre": ("string", "smollm"),
           "tokenizer.ggml.tokens": ("array", toks), "tokenizer.ggml.token_type": ("array", [3, 1, 1, 1, 1, 1, 1, 1, 4]),
           "tokenizer.ggml.merges": ("array", ["a b", "Ġ a", "Ġa b"]), "tokenizer.ggml.eos_token_id": ("uint32", 0),
           "tokenizer.ggml.add_bos_token": ("bool", False),
           "tokenizer.chat_template": ("string", "{% for m in messages %}{{ m['content'] }}{% endfor %}")}
    types = {"token_embd.weight": Q.Q8_0, "blk.0.attn_q.weight": Q.F16, "blk.0.attn_k.weight": Q.BF16,
             "blk.0.attn_v.weight": Q.Q4_0, "blk.0.attn_output.weight": Q.Q4_1, "blk.0.ffn_gate.weight": Q.Q5_0,
             "blk.0.ffn_up.weight": Q.Q5_1}
    write_gguf(os.path.join(out, "mini-llama-bpe.gguf"), "llama", llama_kv(32, 32, len(toks), bpe),
               mini_llama_tensors(rng, len(toks), 32, 32, types))
    for pre, name in (("llama-bpe", "mini-llama3-pre.gguf"), ("qwen2", "mini-qwen2-pre.gguf")):
        kv = dict(bpe, **{"tokenizer.ggml.pre": ("string", pre)})
        write_gguf(os.path.join(out, name), "llama", llama_kv(32, 32, len(toks), kv), [])
    stoks = ["<unk>", "<s>", "</s>", "<0x41>", "<0xE2>", "▁", "a", "b", "▁a", "ab", "▁ab", "é"]
    spm = {"tokenizer.ggml.model": ("string", "llama"), "tokenizer.ggml.tokens": ("array", stoks),
           "tokenizer.ggml.scores": ("array", [0.0, 0.0, 0.0, 0.0, 0.0, -5.0, -6.0, -7.0, -1.0, -2.0, -3.0, -8.0]),
           "tokenizer.ggml.token_type": ("array", [2, 3, 3, 6, 6, 1, 1, 1, 1, 1, 1, 1]),
           "tokenizer.ggml.bos_token_id": ("uint32", 1), "tokenizer.ggml.eos_token_id": ("uint32", 2),
           "tokenizer.ggml.add_space_prefix": ("bool", True), "llama.rope.scaling.type": ("string", "linear"),
           "llama.rope.scaling.factor": ("float32", 2.0)}
    write_gguf(os.path.join(out, "mini-llama-spm-v2.gguf"), "llama", llama_kv(32, 32, len(stoks), spm),
               mini_llama_tensors(rng, len(stoks), 32, 32, {"output.weight": Q.Q8_0}, tied=False), version=2)
    blocks = [(f"zoo.{t.name}", random_blocks(rng, t, 1, 256), t)
              for t in (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_K, Q.IQ2_XS)]
    write_gguf(os.path.join(out, "blocks-align64.gguf"), "zoo", {}, blocks, alignment=64)
    kv = {"t.u8": ("uint8", 200), "t.i8": ("int8", -100), "t.u16": ("uint16", 60000), "t.i16": ("int16", -30000),
          "t.u32": ("uint32", 4000000000), "t.i32": ("int32", -2000000000), "t.f32": ("float32", 1.5),
          "t.bool": ("bool", True), "t.str": ("string", "héllo"), "t.u64": ("uint64", 2 ** 63 + 5),
          "t.i64": ("int64", -(2 ** 62)), "t.f64": ("float64", 2.25), "t.arr_i32": ("array", [1, -2, 3]),
          "t.arr_f32": ("array", [0.5, 1.5]), "t.arr_bool": ("array", [True, False]),
          "t.arr_str": ("array", ["x", "", "zz"]), "t.nested": ("array", [[1, 2], [3]])}
    write_gguf(os.path.join(out, "all-value-types.gguf"), "none", kv, [("one", np.ones(4, np.float32), None)],
               alignment=16)
    for n in sorted(os.listdir(out)):
        print(f"  {n}: {os.path.getsize(os.path.join(out, n))} bytes")


# ---- check: cpeft convert against Python ----------------------------------------------------------

def check_one(convert, gpath, texts):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
    r = gguf.GGUFReader(gpath)
    nh = int(r.fields["llama.attention.head_count"].contents())
    nkv = int(r.fields["llama.attention.head_count_kv"].contents())
    with tempfile.TemporaryDirectory() as tmp:
        d = os.path.join(tmp, "hf")
        res = subprocess.run(shlex.split(convert) + ["--gguf", gpath, "--out", d], capture_output=True, text=True)
        if res.returncode:
            print(res.stdout, res.stderr)
            return False
        st = load_file(os.path.join(d, "model.safetensors"))
        same = 0
        for t in r.tensors:
            v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(s) for s in reversed(t.shape)])
            if ".attn_q." in t.name:
                v = reverse_permute(v, nh)
            if ".attn_k." in t.name:
                v = reverse_permute(v, nkv)
            o = st[hf_name(t.name)].float().numpy()
            if o.shape == v.shape and np.array_equal(o.view(np.uint32), v.view(np.uint32)):
                same += 1
            else:
                print(f"  MISMATCH {t.name}")
        print(f"  tensors: {same}/{len(r.tensors)} bit-identical to the gguf package's dequantization + un-permutation")
        tk_dir = AutoTokenizer.from_pretrained(d)
        tk_gguf = AutoTokenizer.from_pretrained(os.path.dirname(gpath), gguf_file=os.path.basename(gpath))
        diff = [t for t in texts if tk_dir(t).input_ids != tk_gguf(t).input_ids]
        for t in diff:
            print(f"  TOKENIZER DIFF {t!r}: {tk_dir(t).input_ids[:16]} vs {tk_gguf(t).input_ids[:16]}")
        dec = [t for t in texts if tk_dir.decode(tk_dir(t).input_ids) != tk_gguf.decode(tk_gguf(t).input_ids)]
        print(f"  tokenizer: {len(texts) - len(diff)}/{len(texts)} texts encode identically, "
              f"{len(texts) - len(dec)}/{len(texts)} decode identically (directory vs transformers' GGUF loader)")
        m_dir = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
        m_gguf = AutoModelForCausalLM.from_pretrained(os.path.dirname(gpath), gguf_file=os.path.basename(gpath),
                                                      dtype=torch.float32).eval()
        ids = tk_dir(texts[1], return_tensors="pt").input_ids
        with torch.no_grad():
            a, b = m_dir(ids).logits, m_gguf(ids).logits
        print(f"  logits ({ids.shape[1]} tokens): max |directory - GGUF| = {(a - b).abs().max().item():.3e} "
              f"(max |logit| {a.abs().max().item():.2f})")
        return same == len(r.tensors) and not diff


def check(args):
    ok = True
    for n in ("tiny-llama-bpe", "tiny-llama-spm"):
        print(n)
        ok &= check_one(args.convert, os.path.join(args.out, n + ".gguf"), CORPUS)
    if args.gguf:
        print(args.gguf)
        ok &= check_one(args.convert, args.gguf, CORPUS + ["What is the capital of France?"])
    ok &= check_arch(args.convert, args.out)
    print("overall okay" if ok else "MISMATCHES")
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["make", "make-arch", "seeds", "check"])
    ap.add_argument("--out", help="default: tests/fixtures/gguf (make, check), tests/fuzz/seeds/fuzz_gguf (seeds)")
    ap.add_argument("--convert", default=os.path.join(ROOT, "build/cpeft") + " convert")
    ap.add_argument("--gguf", help="also check this GGUF (e.g. models/.cache/.../SmolLM2-135M-Instruct.Q4_1.gguf)")
    args = ap.parse_args()
    if args.what == "seeds":
        seeds(args.out or os.path.join(ROOT, "tests/fuzz/seeds/fuzz_gguf"))
        return 0
    args.out = args.out or os.path.join(ROOT, "tests/fixtures/gguf")
    if args.what == "make":
        make(args.out)
        return 0
    if args.what == "make-arch":
        make_arch(args.out)
        return 0
    return check(args)


if __name__ == "__main__":
    sys.exit(main())
