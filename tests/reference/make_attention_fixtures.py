"""Writes the attention fixtures (tests/fixtures/attention/) from PyTorch eager attention and
transformers' own position-bias functions; read by tests/unit/test_attention_ext.c.

    tests/reference/.venv/bin/python tests/reference/make_attention_fixtures.py [--out tests/fixtures]

buckets.safetensors  T5Attention._relative_position_bucket over relative positions -1100..1100 (past every max_distance) for
                     (bidirectional, num_buckets, max_distance) configs, T5's own and ones where the
                     float32 log arithmetic decides a bucket (double arithmetic would differ by one):
                     `relative_position` (N) i64, `configs` (n,3) i64, `buckets` (n,N) i32.
alibi.safetensors    bloom's _get_alibi_slopes and MPT's build_mpt_alibi_tensor slopes for 1..80
                     heads, concatenated (head counts 1, 2, ..., 80): `bloom_slopes`, `mpt_slopes` f32.
<case>.safetensors   one attention call: inputs in cpeft's layout — q (B,T,NH*hs), k and v
                     (B,TK,NKV*hs), key_mask (B,TK) i64, dout (B,T,NH*hs), `scale` (1) f32, and per
                     case bias (NH,T,TK) / (B,NH,T,TK) or the T5 table (num_buckets,NH) — and what
                     torch computes: out, probs (B,NH,T,TK), and the gradients of sum(out·dout):
                     dq, dk, dv, d_bias, d_table. Metadata: the mode (see CASES).

Eager attention is softmax(q·kᵀ·scale + bias + mask)·v as transformers writes it for each family:
T5 (eager_attention_forward with position_bias from T5Attention.compute_bias), BERT-style padding,
BLOOM (build_alibi_tensor + baddbmm), MPT (build_mpt_alibi_tensor + masked_fill), Falcon
(build_alibi_tensor in bf16, added before the scaling and again in the mask). Masks are additive
0 / finfo.min in one tensor (or masked_fill with finfo.min for MPT), so a query that sees no key is
uniform over all keys (cpeft's CP_ATTN_EMPTY_ALL).

Deterministic: fixed seeds, one torch thread, oracle_common.save_tensors. Running it twice gives
identical files.
"""
import argparse
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import save_tensors, setup_torch  # noqa: E402

from transformers.models.bloom.modeling_bloom import _get_alibi_slopes, build_alibi_tensor as bloom_alibi  # noqa: E402
from transformers.models.falcon.modeling_falcon import build_alibi_tensor as falcon_alibi  # noqa: E402
from transformers.models.mpt.modeling_mpt import build_mpt_alibi_tensor  # noqa: E402
from transformers.models.t5.configuration_t5 import T5Config  # noqa: E402
from transformers.models.t5.modeling_t5 import T5Attention, eager_attention_forward as t5_eager  # noqa: E402

MIN = torch.finfo(torch.float32).min


def gen(seed):
    return torch.Generator().manual_seed(seed)


def pad_mask(B, TK, kind):
    """(B,TK) int64: 'none', or row b padded with 2b + 1 keys at the 'right' or 'left' end."""
    m = torch.ones(B, TK, dtype=torch.int64)
    if kind == "none":
        return m
    for b in range(B):
        n = min(2 * b + 1, TK - 1)
        if kind == "right":
            m[b, TK - n:] = 0
        else:
            m[b, :n] = 0
    return m


def additive(mask, T, causal, past=0):
    """One additive mask (B,1,T,TK): 0 where query i may see key j, finfo.min elsewhere."""
    B, TK = mask.shape
    keep = mask.bool()[:, None, None, :].expand(B, 1, T, TK)
    if causal:
        i = torch.arange(T)[:, None] + past
        j = torch.arange(TK)[None, :]
        keep = keep & (j <= i)[None, None]
    return torch.where(keep, torch.zeros(()), torch.full((), MIN))


def heads(x, B, n, hs):
    """(B,L,n*hs) -> (B,n,L,hs)"""
    return x.view(B, -1, n, hs).transpose(1, 2)


def leaves(B, T, TK, NH, NKV, hs, seed):
    g = gen(seed)
    q = torch.randn(B, T, NH * hs, generator=g).requires_grad_()
    k = torch.randn(B, TK, NKV * hs, generator=g).requires_grad_()
    v = torch.randn(B, TK, NKV * hs, generator=g).requires_grad_()
    dout = torch.randn(B, T, NH * hs, generator=g)
    return q, k, v, dout


def finish(name, out_dir, meta, q, k, v, dout, out, probs, mask, scale, extra_in=None, extra_grad=None):
    """Backpropagates sum(out·dout) and writes the case."""
    (out * dout).sum().backward()
    t = {"q": q.detach(), "k": k.detach(), "v": v.detach(), "dout": dout, "key_mask": mask,
         "scale": torch.tensor([scale], dtype=torch.float32), "out": out.detach(), "dq": q.grad, "dk": k.grad,
         "dv": v.grad}
    if probs is not None:
        t["probs"] = probs.detach()
    for n, x in (extra_in or {}).items():
        t[n] = x.detach()
    for n, x in (extra_grad or {}).items():
        t[n] = x.grad
    meta = {k_: str(v_) for k_, v_ in meta.items()}
    save_tensors(os.path.join(out_dir, name + ".safetensors"), t, meta)
    print(f"  {name}: B,T,TK,NH,NKV,hs = {q.shape[0]},{q.shape[1]},{k.shape[1]},{meta['NH']},{meta['NKV']},{meta['hs']}")


def eager(qh, kh, vh, scores_fn, B, T, NH, hs):
    """softmax(scores)·v with probs; scores_fn gets (B,NH,T,TK) raw q·kᵀ."""
    probs = torch.softmax(scores_fn(qh @ kh.transpose(-1, -2)), dim=-1)
    out = (probs @ vh).transpose(1, 2).reshape(B, T, NH * hs)
    return out, probs


def repeat_kv(x, NH):
    return x.repeat_interleave(NH // x.shape[1], dim=1)


def base_meta(NH, NKV, hs, bidirectional, past=0, **kw):
    return dict(NH=NH, NKV=NKV, hs=hs, bidirectional=int(bidirectional), past=past, **kw)


def case_bert_pad(out_dir):
    """Encoder self-attention (BERT family): bidirectional, right padding, 1/sqrt(hs)."""
    B, T, NH, hs = 3, 9, 4, 8
    q, k, v, dout = leaves(B, T, T, NH, NH, hs, 11)
    mask = pad_mask(B, T, "right")
    scale = hs ** -0.5
    out, probs = eager(heads(q, B, NH, hs), heads(k, B, NH, hs), heads(v, B, NH, hs),
                       lambda s: s * scale + additive(mask, T, False), B, T, NH, hs)
    finish("bert_pad", out_dir, base_meta(NH, NH, hs, True), q, k, v, dout, out, probs, mask, scale)


def case_cross_gqa_bias(out_dir):
    """Cross-attention over TK = 11 encoder keys (left padding) with grouped kv heads and a full
    (B,NH,T,TK) additive bias that gets a gradient."""
    B, T, TK, NH, NKV, hs = 2, 5, 11, 4, 2, 6
    q, k, v, dout = leaves(B, T, TK, NH, NKV, hs, 12)
    bias = torch.randn(B, NH, T, TK, generator=gen(112)).requires_grad_()
    mask = pad_mask(B, TK, "left")
    scale = hs ** -0.5
    out, probs = eager(heads(q, B, NH, hs), repeat_kv(heads(k, B, NKV, hs), NH), repeat_kv(heads(v, B, NKV, hs), NH),
                       lambda s: s * scale + bias + additive(mask, T, False), B, T, NH, hs)
    finish("cross_gqa_bias", out_dir, base_meta(NH, NKV, hs, True, bias="full"), q, k, v, dout, out, probs, mask, scale,
           {"bias": bias}, {"d_bias": bias})


def t5_case(out_dir, name, B, T, TK, NH, hs, past, is_decoder, nb, md, pad, seed):
    """T5 self-attention: scale 1, the relative position bias of T5Attention.compute_bias (its
    embedding table random), one additive mask (causal + padding in the decoder)."""
    cfg = T5Config(d_model=NH * hs, d_kv=hs, num_heads=NH, relative_attention_num_buckets=nb,
                   relative_attention_max_distance=md, is_decoder=is_decoder, dropout_rate=0.0)
    att = T5Attention(cfg, has_relative_attention_bias=True).eval()
    with torch.no_grad():
        att.relative_attention_bias.weight.copy_(torch.randn(nb, NH, generator=gen(seed + 100)))
    bias = att.compute_bias(T, TK, past_seen_tokens=past)  # (1,NH,T,TK)
    q, k, v, dout = leaves(B, T, TK, NH, NH, hs, seed)
    mask = pad_mask(B, TK, pad)
    out, probs = t5_eager(att, heads(q, B, NH, hs), heads(k, B, NH, hs), heads(v, B, NH, hs),
                          additive(mask, T, is_decoder, past), scaling=1.0, dropout=0.0, position_bias=bias)
    out = out.reshape(B, T, NH * hs)
    bias.retain_grad()
    meta = base_meta(NH, NH, hs, not is_decoder, past, bias="t5", num_buckets=nb, max_distance=md)
    finish(name, out_dir, meta, q, k, v, dout, out, probs, mask, 1.0,
           {"table": att.relative_attention_bias.weight, "bias": bias[0]},
           {"d_table": att.relative_attention_bias.weight, "d_bias": bias})


def case_bloom(out_dir):
    """BLOOM: ALiBi from the cumulative mask (left padding: the padding queries see no key),
    scores = alibi.baddbmm(q, kᵀ, alpha=1/sqrt(hs)), one additive causal + padding mask."""
    B, T, NH, hs = 3, 10, 6, 4
    q, k, v, dout = leaves(B, T, T, NH, NH, hs, 13)
    mask = pad_mask(B, T, "left")
    inv = 1.0 / math.sqrt(hs)
    alibi = bloom_alibi(mask, NH, torch.float32)  # (B*NH,1,T)
    qb = heads(q, B, NH, hs).reshape(B * NH, T, hs)
    kb = heads(k, B, NH, hs).reshape(B * NH, T, hs).transpose(-1, -2)
    scores = alibi.baddbmm(batch1=qb, batch2=kb, beta=1.0, alpha=inv).view(B, NH, T, T) + additive(mask, T, True)
    probs = torch.softmax(scores, dim=-1)
    out = (probs @ heads(v, B, NH, hs)).transpose(1, 2).reshape(B, T, NH * hs)
    finish("bloom_alibi", out_dir, base_meta(NH, NH, hs, False, alibi="bloom"), q, k, v, dout, out, probs, mask, inv)


def case_mpt(out_dir):
    """MPT: slope · (j − (TK−1)) from build_mpt_alibi_tensor (max_seq_len longer than TK, sliced as
    MptAttention does), scores·softmax_scale + bias, masked_fill(finfo.min), right padding."""
    B, T, NH, hs, max_seq_len = 2, 9, 6, 4, 16
    q, k, v, dout = leaves(B, T, T, NH, NH, hs, 14)
    mask = pad_mask(B, T, "right")
    scale = hs ** -0.5
    pb = build_mpt_alibi_tensor(NH, max_seq_len, alibi_bias_max=8)  # (NH,1,max_seq_len)
    pb = pb[:, max(0, pb.size(1) - T):, max(0, pb.size(2) - T):]
    fill = additive(mask, T, True) < 0

    def scores(s):
        return (s * scale + pb).masked_fill(fill, MIN)
    out, probs = eager(heads(q, B, NH, hs), heads(k, B, NH, hs), heads(v, B, NH, hs), scores, B, T, NH, hs)
    finish("mpt_alibi", out_dir, base_meta(NH, NH, hs, False, alibi="mpt"), q, k, v, dout, out, probs, mask, scale)


def case_falcon(out_dir):
    """Falcon with alibi (falcon-rw): build_alibi_tensor rounds slopes, positions (past 256 they are
    not exact in bf16) and products to bf16, logits = (q·kᵀ + A)·(1/sqrt(hd)) + A/sqrt(hd) with the
    causal + padding min. 9 heads: the ninth slope, 2^-0.5, is not a power of two, so rounding the
    position before the product shows."""
    B, T, NH, hs = 2, 264, 9, 2
    q, k, v, dout = leaves(B, T, T, NH, NH, hs, 15)
    mask = pad_mask(B, T, "left")
    inv = 1.0 / math.sqrt(hs)
    A = falcon_alibi(mask, NH, torch.float32).reshape(B, NH, 1, T)
    causal = torch.masked_fill(A / math.sqrt(hs), additive(mask, T, True) < -1, MIN)  # (B,NH,T,T)

    def scores(s):
        logits = s + A
        logits = logits * inv
        return logits + causal
    out, _ = eager(heads(q, B, NH, hs), heads(k, B, NH, hs), heads(v, B, NH, hs), scores, B, T, NH, hs)
    finish("falcon_alibi", out_dir, base_meta(NH, NH, hs, False, alibi="falcon"), q, k, v, dout, out, None, mask, inv)


def write_buckets(out_dir):
    rel = torch.arange(-1100, 1101)
    configs = [(1, 32, 128), (0, 32, 128), (1, 64, 256), (0, 16, 64), (1, 8, 20), (0, 8, 20), (1, 128, 512),
               # the float32 arithmetic decides these (double math gives one bucket less somewhere)
               (0, 36, 32), (0, 54, 64), (0, 72, 64), (0, 108, 128), (1, 72, 32), (1, 108, 64)]
    buckets = torch.stack([T5Attention._relative_position_bucket(rel, bidirectional=bool(b), num_buckets=nb,
                                                                 max_distance=md) for b, nb, md in configs])
    save_tensors(os.path.join(out_dir, "buckets.safetensors"),
                 {"relative_position": rel, "configs": torch.tensor(configs, dtype=torch.int64), "buckets": buckets.to(torch.int32)},
                 {"what": "T5Attention._relative_position_bucket"})
    print(f"  buckets: {len(configs)} configs x {rel.numel()} relative positions")


def write_alibi(out_dir):
    heads_ = range(1, 81)
    bloom = torch.cat([_get_alibi_slopes(n, torch.device("cpu")) for n in heads_])
    mpt = torch.cat([build_mpt_alibi_tensor(n, 2, alibi_bias_max=8)[:, 0, 0] * -1.0 for n in heads_])
    save_tensors(os.path.join(out_dir, "alibi.safetensors"), {"bloom_slopes": bloom, "mpt_slopes": mpt},
                 {"heads": "1..80 concatenated", "mpt_alibi_bias_max": "8"})
    print(f"  alibi: slopes for 1..80 heads")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    setup_torch()
    out_dir = os.path.join(args.out, "attention")
    os.makedirs(out_dir, exist_ok=True)
    write_buckets(out_dir)
    write_alibi(out_dir)
    case_bert_pad(out_dir)
    case_cross_gqa_bias(out_dir)
    t5_case(out_dir, "t5_encoder", B=3, T=12, TK=12, NH=4, hs=4, past=0, is_decoder=False, nb=8, md=20, pad="right",
            seed=16)
    t5_case(out_dir, "t5_decoder", B=2, T=10, TK=10, NH=3, hs=4, past=0, is_decoder=True, nb=8, md=20, pad="right",
            seed=17)
    # the last T = 2 queries after past = 4 keys (a cache, or trainable prefix keys): gradients too
    t5_case(out_dir, "t5_decoder_past", B=2, T=2, TK=6, NH=3, hs=4, past=4, is_decoder=True, nb=8, md=20,
            pad="left", seed=18)
    case_bloom(out_dir)
    case_mpt(out_dir)
    case_falcon(out_dir)


if __name__ == "__main__":
    main()
