#!/usr/bin/env python3
"""GGUF fixtures of the LayerNorm architectures (gpt_neox and phi2 with partial RoPE, bloom) for
tests/unit/test_gguf_arch.c: part of `make_gguf_fixtures.py make-arch` (which calls
make_arch_layernorm; see its docstring for the environment). Not run by itself.
"""
import os

import numpy as np

import gguf
from gguf import GGMLQuantizationType as Q

from make_gguf_fixtures import AH, AI, AL, ANH, ARCH_IDS, bpe_vocab, encode_tensor

# ---- LayerNorm architectures with partial RoPE: gpt_neox, phi2 ------------------------------------

# name: (GGUF arch, gguf-py MODEL_ARCH, model_type, the tiny model's config, tokenizer.ggml.pre)
LN_ARCHS = {
    # sequential residual (a non-default use_parallel_residual), 2 heads of 16, rotary_pct 0.25
    "gpt_neox": ("gptneox", "GPTNEOX", "gpt_neox",
                 dict(hidden_size=AH, intermediate_size=AI, num_hidden_layers=AL, num_attention_heads=2,
                      rotary_pct=0.25, rotary_emb_base=10000, use_parallel_residual=False, layer_norm_eps=1e-5,
                      max_position_embeddings=256, tie_word_embeddings=False), "gpt-2"),
    # 4 heads of 8 (num_key_value_heads = heads, as llama.cpp writes), partial_rotary_factor 0.5,
    # intermediate 4 * hidden (llama.cpp writes feed_forward_length = 4 * n_embd)
    "phi2": ("phi2", "PHI2", "phi",
             dict(hidden_size=AH, intermediate_size=4 * AH, num_hidden_layers=AL, num_attention_heads=ANH,
                  num_key_value_heads=ANH, partial_rotary_factor=0.5, rope_theta=10000.0, layer_norm_eps=1e-5,
                  max_position_embeddings=256, tie_word_embeddings=False), "phi-2"),
}
LN_TYPES = {"token_embd": Q.Q8_0, "attn_qkv": Q.F16, "attn_q": Q.F16, "attn_k": Q.BF16, "attn_v": Q.Q8_0,
            "attn_output": Q.Q4_0, "ffn_up": Q.Q5_1, "ffn_down": Q.Q4_1, "output": Q.Q8_0}


def llamacpp_qkv_reorder(w, n_head):
    """convert_hf_to_gguf.py GPTNeoXModel / BloomModel.modify_tensors: the fused query_key_value from
    Hugging Face's per-head rows (n_head, 3, head_dim) to [all q; all k; all v] (weight or bias)."""
    rest = w.shape[1:]
    x = w.reshape((n_head, 3, -1) + rest)
    return np.concatenate([x[:, 0].reshape((-1,) + rest), x[:, 1].reshape((-1,) + rest),
                           x[:, 2].reshape((-1,) + rest)], axis=0)


def qkv_to_heads(g, n_head):
    """The inverse, written the other way round: (3, n_head, head_dim) -> (n_head, 3, head_dim)."""
    rest = g.shape[1:]
    return np.ascontiguousarray(np.swapaxes(g.reshape((3, n_head, -1) + rest), 0, 1).reshape(g.shape))


def write_ln_gguf(path, name, hf, cfg, vocab_kv):
    """The HF tensors `hf` in llama.cpp's layout for gptneox / phi2: TensorNameMap names, the fused
    q/k/v re-ordered (gptneox), the keys each converter class writes and no others."""
    import torch
    arch, marchname, _, _, _ = LN_ARCHS[name]
    rng = np.random.default_rng(11)
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, marchname), AL)
    nh, C = cfg.num_attention_heads, cfg.hidden_size
    w = gguf.GGUFWriter(path, arch)
    w.add_string("general.name", f"tiny-{name}")
    w.add_string("general.license", "apache-2.0")
    w.add_uint32(f"{arch}.context_length", cfg.max_position_embeddings)
    w.add_uint32(f"{arch}.embedding_length", C)
    w.add_uint32(f"{arch}.block_count", cfg.num_hidden_layers)
    if name == "gpt_neox":  # GPTNeoXModel.set_gguf_parameters
        w.add_uint32(f"{arch}.feed_forward_length", cfg.intermediate_size)
        w.add_uint32(f"{arch}.rope.dimension_count", int(LN_ARCHS[name][3]["rotary_pct"] * (C // nh)))
        w.add_uint32(f"{arch}.attention.head_count", nh)
        w.add_bool(f"{arch}.use_parallel_residual", LN_ARCHS[name][3]["use_parallel_residual"])
        w.add_float32(f"{arch}.attention.layer_norm_epsilon", cfg.layer_norm_eps)
    else:  # Phi2Model.set_gguf_parameters
        w.add_uint32(f"{arch}.feed_forward_length", 4 * C)
        w.add_uint32(f"{arch}.attention.head_count", nh)
        w.add_uint32(f"{arch}.attention.head_count_kv", nh)
        w.add_float32(f"{arch}.attention.layer_norm_epsilon", cfg.layer_norm_eps)
        w.add_uint32(f"{arch}.rope.dimension_count", int(LN_ARCHS[name][3]["partial_rotary_factor"] * C) // nh)
        w.add_bool("tokenizer.ggml.add_bos_token", False)
    w.add_uint32("general.file_type", 7)
    for k, (kind, v) in vocab_kv.items():
        getattr(w, "add_" + kind)(k, v)
    for hname, t in hf.items():
        gname = tmap.get_name(hname, try_suffixes=(".weight", ".bias"))
        assert gname, hname
        x = t.detach().to(torch.float32).numpy()
        if ".attn_qkv." in gname:
            x = llamacpp_qkv_reorder(x, nh)
        kind = gname.split(".")[-2] if gname.startswith("blk.") else gname.split(".")[0]
        qt = LN_TYPES.get(kind, Q.F32) if x.ndim == 2 else Q.F32
        data, raw, _ = encode_tensor(rng, x, qt)
        w.add_tensor(gname, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def ln_expected(path, name, hf_names, n_head):
    """transformers has no GGUF loader for gptneox or phi2: the expected tensors are the gguf
    package's dequantization with the documented transform undone (the fused q/k/v back per head),
    under the Hugging Face names that TensorNameMap maps to them (inverted; gpt_neox's LM head under
    its checkpoints' name embed_out)."""
    tmap = gguf.get_tensor_name_map(getattr(gguf.MODEL_ARCH, LN_ARCHS[name][1]), AL)
    names = {tmap.get_name(h, try_suffixes=(".weight", ".bias")): h for h in hf_names}
    out = {}
    for t in gguf.GGUFReader(path).tensors:
        v = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(s) for s in reversed(t.shape)])
        if ".attn_qkv." in t.name:
            v = qkv_to_heads(v, n_head)
        h = names[t.name]
        out["embed_out.weight" if name == "gpt_neox" and h == "lm_head.weight" else h] = np.ascontiguousarray(v)
    return out


def make_arch_layernorm(out, meta):
    """<arch>.gguf, <arch>.expected.safetensors, <arch>.logits.safetensors for gpt_neox and phi2;
    their entries in `meta`. The expected tensors are checked against the original ones: equal where
    the GGUF holds them in F32, equal to their f16 rounding where F16 (the fused q/k/v: the re-order
    and its inverse); the oracle is transformers' model with them loaded."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
    tokens, types, merges = bpe_vocab()
    for name, (arch, _, model_type, kw, pre) in LN_ARCHS.items():
        torch.manual_seed(1234)
        vkv = {"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.pre": ("string", pre),
               "tokenizer.ggml.tokens": ("array", tokens), "tokenizer.ggml.token_type": ("array", types),
               "tokenizer.ggml.merges": ("array", merges), "tokenizer.ggml.bos_token_id": ("uint32", 0),
               "tokenizer.ggml.eos_token_id": ("uint32", 0)}
        cfg = AutoConfig.for_model(model_type, vocab_size=len(tokens), bos_token_id=0, eos_token_id=0, **kw)
        model = AutoModelForCausalLM.from_config(cfg).to(torch.float32)
        with torch.no_grad():  # norms and biases away from their initial 1 / 0
            for k, p in model.named_parameters():
                if p.ndim == 1:
                    p.copy_((0.0 if k.endswith("bias") else 1.0) + 0.1 * torch.randn_like(p))
        hf = dict(model.state_dict())
        path = os.path.join(out, f"{name}.gguf")
        write_ln_gguf(path, name, hf, cfg, vkv)
        exp = ln_expected(path, name, list(hf), cfg.num_attention_heads)
        exact = 0
        for k, v in exp.items():
            o = hf["lm_head.weight" if k == "embed_out.weight" else k].numpy()
            if ".query_key_value." in k:  # F16 (weight) / F32 (bias) in the GGUF: the re-order undone exactly
                assert v.tobytes() == o.astype(np.float16 if v.ndim == 2 else np.float32).astype(np.float32).tobytes(), k
                exact += 1
            elif v.ndim == 1:
                assert v.tobytes() == o.tobytes(), k
                exact += 1
        oracle = AutoModelForCausalLM.from_config(cfg).to(torch.float32).eval()
        sd = {("lm_head.weight" if k == "embed_out.weight" else k): torch.from_numpy(v) for k, v in exp.items()}
        res = oracle.load_state_dict(sd, strict=True)
        ids = torch.tensor([ARCH_IDS])
        with torch.no_grad():
            logits = oracle(ids).logits.float().numpy()
        save_file(exp, path.replace(".gguf", ".expected.safetensors"))
        save_file({"logits": np.ascontiguousarray(logits)}, path.replace(".gguf", ".logits.safetensors"))
        undo = ", the fused q/k/v put back per head" if name == "gpt_neox" else " (no transform)"
        how = (f"the gguf package's dequantization{undo} (transformers has no {arch} GGUF loader); {exact} "
               "tensors equal to the original (or its f16 rounding)")
        quant = max(float(np.abs(v - hf["lm_head.weight" if k == "embed_out.weight" else k].numpy()).max())
                    for k, v in exp.items())
        meta[name] = {"input_ids": ARCH_IDS, "n_tensors": len(exp), "head_dim": AH // cfg.num_attention_heads,
                      "tied": False, "expected_from": how}
        print(f"  {name}: {len(exp)} tensors from {how}; max |expected - original| {quant:.3g} (quantization)")
    make_bloom(out, meta)


# ---- bloom: the fused q/k/v as gptneox, ALiBi, output.weight a copy of the embedding ---------------

def write_bloom_gguf(path, hf, cfg, vocab_kv):
    """BloomModel of convert_hf_to_gguf.py: its keys (context_length = seq_length or hidden, ffn 4 *
    hidden, head_count_kv = head_count), "transformer." stripped before TensorNameMap, the fused q/k/v
    re-ordered, and output.weight written as a copy of the embedding (the checkpoint has no lm_head)."""
    import torch
    rng = np.random.default_rng(11)
    tmap = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BLOOM, AL)
    nh, C = cfg.n_head, cfg.hidden_size
    w = gguf.GGUFWriter(path, "bloom")
    w.add_string("general.name", "tiny-bloom")
    w.add_string("general.license", "apache-2.0")
    w.add_uint32("bloom.context_length", getattr(cfg, "seq_length", None) or C)
    w.add_uint32("bloom.embedding_length", C)
    w.add_uint32("bloom.feed_forward_length", 4 * C)
    w.add_uint32("bloom.block_count", cfg.n_layer)
    w.add_uint32("bloom.attention.head_count", nh)
    w.add_uint32("bloom.attention.head_count_kv", nh)
    w.add_float32("bloom.attention.layer_norm_epsilon", cfg.layer_norm_epsilon)
    w.add_uint32("general.file_type", 7)
    for k, (kind, v) in vocab_kv.items():
        getattr(w, "add_" + kind)(k, v)
    for hname, t in hf.items():
        if hname == "lm_head.weight":  # tied: not in the checkpoint's files
            continue
        gname = tmap.get_name(hname.replace("transformer.", "", 1), try_suffixes=(".weight", ".bias"))
        assert gname, hname
        x = t.detach().to(torch.float32).numpy()
        if ".attn_qkv." in gname:
            x = llamacpp_qkv_reorder(x, nh)
        kind = gname.split(".")[-2] if gname.startswith("blk.") else gname.split(".")[0]
        qt = LN_TYPES.get(kind, Q.F32) if x.ndim == 2 else Q.F32
        data, raw, _ = encode_tensor(rng, x, qt)
        w.add_tensor(gname, data, raw_dtype=raw)
        if gname == "token_embd.weight":
            w.add_tensor("output.weight", data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_bloom(out, meta):
    """bloom.gguf, bloom.expected.safetensors (transformers' GGUF loader: BloomTensorProcessor undoes
    the re-order; checked against the original tensors too), bloom.logits.safetensors."""
    import torch
    from safetensors.numpy import save_file
    from transformers import AutoConfig, AutoModelForCausalLM
    tokens, types, merges = bpe_vocab()
    torch.manual_seed(1234)
    vkv = {"tokenizer.ggml.model": ("string", "gpt2"), "tokenizer.ggml.pre": ("string", "gpt-2"),
           "tokenizer.ggml.tokens": ("array", tokens), "tokenizer.ggml.token_type": ("array", types),
           "tokenizer.ggml.merges": ("array", merges), "tokenizer.ggml.bos_token_id": ("uint32", 1),
           "tokenizer.ggml.eos_token_id": ("uint32", 2), "tokenizer.ggml.padding_token_id": ("uint32", 0)}
    cfg = AutoConfig.for_model("bloom", vocab_size=len(tokens), hidden_size=AH, n_layer=AL, n_head=ANH,
                               layer_norm_epsilon=1e-5, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = AutoModelForCausalLM.from_config(cfg).to(torch.float32)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_((0.0 if k.endswith("bias") else 1.0) + 0.1 * torch.randn_like(p))
    hf = dict(model.state_dict())
    path = os.path.join(out, "bloom.gguf")
    write_bloom_gguf(path, hf, cfg, vkv)
    oracle = AutoModelForCausalLM.from_pretrained(out, gguf_file="bloom.gguf", dtype=torch.float32).eval()
    assert oracle.config.tie_word_embeddings
    exp = {k: np.ascontiguousarray(v.numpy()) for k, v in oracle.state_dict().items() if k != "lm_head.weight"}
    assert set(exp) == set(hf) - {"lm_head.weight"}, set(exp) ^ set(hf)
    exact = 0
    for k, v in exp.items():
        o = hf[k].numpy()
        if ".query_key_value." in k:  # the loader's re-order undone, against the original's f16 rounding
            assert v.tobytes() == o.astype(np.float16 if v.ndim == 2 else np.float32).astype(np.float32).tobytes(), k
            exact += 1
        elif v.ndim == 1:
            assert v.tobytes() == o.tobytes(), k
            exact += 1
    with torch.no_grad():
        logits = oracle(torch.tensor([ARCH_IDS])).logits.float().numpy()
    save_file(exp, path.replace(".gguf", ".expected.safetensors"))
    save_file({"logits": np.ascontiguousarray(logits)}, path.replace(".gguf", ".logits.safetensors"))
    how = ("transformers' GGUF loader (AutoModelForCausalLM.from_pretrained(dir, gguf_file=...)); "
           f"{exact} tensors equal to the original (or its f16 rounding)")
    quant = max(float(np.abs(v - hf[k].numpy()).max()) for k, v in exp.items())
    meta["bloom"] = {"input_ids": ARCH_IDS, "n_tensors": len(exp), "head_dim": AH // ANH, "tied": True,
                     "expected_from": how}
    print(f"  bloom: {len(exp)} tensors from {how}; max |expected - original| {quant:.3g} (quantization)")
