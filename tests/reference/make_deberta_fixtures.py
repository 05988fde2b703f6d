"""Writes the DeBERTa disentangled-attention fixtures (tests/fixtures/deberta/) from transformers'
DebertaV2 and Deberta models; read by tests/unit/test_disentangled_attention.c.

    tests/reference/.venv/bin/python tests/reference/make_deberta_fixtures.py [--out tests/fixtures]

buckets.safetensors  make_log_bucket_position over relative positions -600..600 for
                     (position_buckets, max_relative_positions) configs, DeBERTa-v3's own (256, 512)
                     among them: `relative_position` (N) i64, `configs` (n,2) i64, `buckets` (n,N) i64.
<case>.safetensors   a tiny random model (hidden 32, 4 heads, 2 layers) run on a padded batch; for
                     each layer L the inputs of its attention.self (DisentangledSelfAttention) as
                     transformers passes them, and what the module computes, re-run alone with
                     autograd (eval mode, no dropout):
                       L.hidden (B,T,C)          hidden states in
                       L.rel_embeddings (R,C)    the encoder's rel_embeddings (layer-normed when
                                                 norm_rel_ebd), all R rows the module receives
                       L.out (B,T,C)             context out;  L.probs (B,NH,T,T)
                       L.dout (B,T,C)            a random output gradient; the loss is sum(out·dout)
                       L.d_hidden, L.d_rel_embeddings   torch's gradients of the inputs
                       L.w.<param>               the module's parameters (query_proj.weight, ...)
                     v2 also: the projections the module makes, L.q L.k L.v (B,T,C) and
                     L.pos_key L.pos_query (2·span,C), and their gradients L.dq ... L.d_pos_query.
                     Shared: key_mask (B,T) i64 (the 2-D attention mask), rel_pos (T,T) i64 (the
                     encoder's relative_pos). Metadata: version, NH, hs, span, first_row,
                     scale_factor, c2p, p2c, share_att_key, position_buckets,
                     max_relative_positions (resolved), layers.

Deterministic: fixed seeds, one torch thread, oracle_common.save_tensors.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import save_tensors, setup_torch  # noqa: E402

from transformers import DebertaConfig, DebertaModel, DebertaV2Config, DebertaV2Model  # noqa: E402
from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position  # noqa: E402

B, T = 2, 9
COMMON = dict(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=16, type_vocab_size=0, relative_attention=True, hidden_dropout_prob=0.0,
              attention_probs_dropout_prob=0.0, pad_token_id=0)

# name: (version, extra config)
CASES = {
    "v2_c2p_p2c_shared": (2, dict(pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=0,
                                  max_relative_positions=-1)),
    "v2_c2p_buckets": (2, dict(pos_att_type=["c2p"], share_att_key=False, position_buckets=8,
                               max_relative_positions=12)),
    "v2_c2p_p2c_buckets_ln": (2, dict(pos_att_type=["p2c", "c2p"], share_att_key=False, position_buckets=8,
                                      max_relative_positions=-1, norm_rel_ebd="layer_norm")),
    "v2_c2p_p2c_clamped": (2, dict(pos_att_type=["p2c", "c2p"], share_att_key=True, position_buckets=0,
                                   max_relative_positions=3, norm_rel_ebd="layer_norm")),
    "v2_p2c_unshared": (2, dict(pos_att_type=["p2c"], share_att_key=False, position_buckets=0,
                                max_relative_positions=5)),
    "v1_c2p_p2c": (1, dict(pos_att_type=["c2p", "p2c"], max_relative_positions=-1)),
    "v1_c2p_clamped": (1, dict(pos_att_type=["c2p"], max_relative_positions=4)),
    "v1_p2c_clamped": (1, dict(pos_att_type=["p2c"], max_relative_positions=3)),
}


def write_buckets(out_dir):
    rel = torch.arange(-600, 601, dtype=torch.long)
    configs = [(256, 512), (8, 12), (8, 16), (8, 3), (4, 100), (16, 64), (6, 7), (32, 512), (10, 1024)]
    rows = [make_log_bucket_position(rel, b, m).to(torch.long) for b, m in configs]
    save_tensors(os.path.join(out_dir, "buckets.safetensors"),
                 {"relative_position": rel, "configs": torch.tensor(configs, dtype=torch.long),
                  "buckets": torch.stack(rows)}, {})
    print(f"  buckets: {len(configs)} configs x {rel.numel()} relative positions")


def randomize(model, g):
    """Weights big enough that the attention is far from uniform: normal(0, 0.3), layer norms 1 ± 0.2."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def run_case(out_dir, name, version, extra, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = (DebertaV2Config if version == 2 else DebertaConfig)(**COMMON, **extra)
    model = (DebertaV2Model if version == 2 else DebertaModel)(cfg).eval()
    randomize(model, g)
    ids = torch.randint(1, cfg.vocab_size, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, T - 3:] = 0                      # row 1: three padding tokens at the end
    ids[1, T - 3:] = 0

    captured = []

    def pre_hook(mod, args, kwargs):
        captured.append(dict(hidden=args[0].detach().clone(), mask=args[1].detach().clone(),
                             relative_pos=kwargs["relative_pos"].detach().clone(),
                             rel_embeddings=kwargs["rel_embeddings"].detach().clone()))

    handles = [layer.attention.self.register_forward_pre_hook(pre_hook, with_kwargs=True)
               for layer in model.encoder.layer]
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
    for h in handles:
        h.remove()

    att0 = model.encoder.layer[0].attention.self
    NH, hs = att0.num_attention_heads, att0.attention_head_size
    C = NH * hs
    max_rel = att0.max_relative_positions
    if version == 2:
        span, first_row = att0.pos_ebd_size, 0
        scale_factor = 1 + ("c2p" in att0.pos_att_type) + ("p2c" in att0.pos_att_type)
    else:
        span = min(T, max_rel)
        first_row = max_rel - span
        scale_factor = 1 + len(att0.pos_att_type)

    rel_pos = captured[0]["relative_pos"]
    assert rel_pos.shape == (1, T, T)
    m4 = captured[0]["mask"]
    assert torch.equal(m4.reshape(B, T, T).bool(), (mask[:, :, None] * mask[:, None, :]).bool())
    tensors = {"key_mask": mask, "rel_pos": rel_pos.reshape(T, T).to(torch.long)}

    for L, (layer, cap) in enumerate(zip(model.encoder.layer, captured)):
        att = layer.attention.self
        hidden = cap["hidden"].clone().requires_grad_()
        rel_emb = cap["rel_embeddings"].clone().requires_grad_()
        # the projections the module makes (v2): Linear outputs, by module and call
        outs = {}

        def keep(mod_name):
            def hook(mod, inp, out):
                out.retain_grad()
                outs.setdefault(mod_name, []).append(out)
            return hook

        hooks = [mod.register_forward_hook(keep(n)) for n, mod in att.named_children() if isinstance(mod, torch.nn.Linear)]
        out, probs = att(hidden, cap["mask"], output_attentions=True, relative_pos=cap["relative_pos"],
                         rel_embeddings=rel_emb)
        for h in hooks:
            h.remove()
        dout = torch.randn(out.shape, generator=g)
        (out * dout).sum().backward()
        p = f"{L}."
        tensors.update({p + "hidden": hidden.detach(), p + "rel_embeddings": rel_emb.detach(), p + "out": out.detach(),
                        p + "probs": probs.detach(), p + "dout": dout, p + "d_hidden": hidden.grad,
                        p + "d_rel_embeddings": rel_emb.grad})
        for pn, param in att.named_parameters():
            tensors[p + "w." + pn] = param.detach()
        if version == 2:
            q, k, v = outs["query_proj"][0], outs["key_proj"][0], outs["value_proj"][0]
            proj = {"q": q, "k": k, "v": v}
            if "c2p" in att.pos_att_type:
                proj["pos_key"] = outs["key_proj"][1] if att.share_att_key else outs["pos_key_proj"][0]
            if "p2c" in att.pos_att_type:
                proj["pos_query"] = outs["query_proj"][1] if att.share_att_key else outs["pos_query_proj"][0]
            for n, t in proj.items():  # the positional ones are (1, 2·span, C): saved as (2·span, C)
                pos = n.startswith("pos")
                tensors[p + n] = t.detach()[0] if pos else t.detach()
                tensors[p + ("d_" if pos else "d") + n] = t.grad[0] if pos else t.grad

    meta = dict(version=version, NH=NH, hs=hs, span=span, first_row=first_row, scale_factor=scale_factor,
                c2p=int("c2p" in att0.pos_att_type), p2c=int("p2c" in att0.pos_att_type),
                share_att_key=int(bool(getattr(att0, "share_att_key", False))),
                position_buckets=getattr(att0, "position_buckets", 0), max_relative_positions=max_rel,
                layers=len(captured), norm_rel_ebd=getattr(cfg, "norm_rel_ebd", "none"))
    save_tensors(os.path.join(out_dir, name + ".safetensors"), tensors, {k: str(v) for k, v in meta.items()})
    print(f"  {name}: v{version} span {span} first_row {first_row} scale_factor {scale_factor} "
          f"pos_att_type {att0.pos_att_type} buckets {meta['position_buckets']} max_rel {max_rel}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    setup_torch()
    out_dir = os.path.join(args.out, "deberta")
    os.makedirs(out_dir, exist_ok=True)
    write_buckets(out_dir)
    for i, (name, (version, extra)) in enumerate(CASES.items()):
        run_case(out_dir, name, version, extra, 1000 + i)


if __name__ == "__main__":
    main()
