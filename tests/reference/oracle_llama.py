"""Llama-family fixtures (Llama, Mistral, Qwen2): what transformers 5.23 + PEFT 0.21.2 compute (issue 7, item 1).

Imported by generate.py (the @family decorators register the families; generate.py adds CHECKERS). Everything
goes under tests/fixtures/llama/ (formats: tests/reference/README.md, section "Llama-family fixtures"):

    models/<name>/                 tiny random checkpoints (save_pretrained), RMSNorm weights and biases perturbed
    forward/<model>.<case>.safetensors   logits, hidden states, loss (the layout of tests/fixtures/forward)
    info/<name>.json               parameter counts, shapes, str(model) (tiny models and real configs on meta)
    info/rope.json                 inv_freq of every tiny model, the dynamic-RoPE rule and its statefulness
    info/rope_configs.json         config.json forms of the RoPE keys and what transformers makes of each
    configs/<short>/config.json    real configs (SmolLM2-135M, TinyLlama-1.1B, Mistral-7B-v0.1, Qwen2-0.5B)
    grads/<case>/                  PEFT LoRA adapter + loss, logits (adapter on/off) and the gradient of every
                                   trainable tensor (the layout of tests/fixtures/train/grads)
    generate.json                  greedy generate() outputs (left-padded batches and single prompts)

Families: llama_models, llama_forward, llama_info, llama_grads, llama_generate (run in this order; later ones
write a missing tiny model first). The checkers re-derive every forward fixture with an independent float64
implementation written from the documented rules (RMSNorm, RoPE types, GQA, sliding window, biases).
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
import zlib
from dataclasses import dataclass, field

import torch
from torch import nn

import oracle_models as om
from oracle_common import Context, Item, family, fresh_dir, load_tensors, save_tensors, write_json
from oracle_lora import in_dir, lora_inputs, make_config
from oracle_train import grad_labels, trainable_key_map, write_adapter

ROOT = "llama"                      # everything lives under tests/fixtures/llama
FORWARD_T = 13
GEN_NEW = 12
GEN_PAD = 0


def name_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


def lpath(ctx: Context, *parts: str) -> str:
    return ctx.path(ROOT, *parts)


# =================================================================================================
# tiny models


@dataclass
class LlamaSpec:
    name: str
    arch: str                       # "llama" | "mistral" | "qwen2"
    config: dict
    seed: int
    description: str
    forward_T: int = FORWARD_T
    extra_cases: list = field(default_factory=list)


_COMMON = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
               intermediate_size=48, vocab_size=97, max_position_embeddings=64, rms_norm_eps=1e-5,
               hidden_act="silu", initializer_range=0.2, bos_token_id=96, eos_token_id=96, attention_dropout=0.0)
LLAMA_TINY = dict(_COMMON, rope_theta=10000.0, tie_word_embeddings=False)
SMALL = dict(_COMMON, hidden_size=16, intermediate_size=24, vocab_size=61, bos_token_id=60, eos_token_id=60)

SPECS: list[LlamaSpec] = [
    LlamaSpec("llama_tiny", "llama", LLAMA_TINY, seed=5001,
              description="Llama H=32 nH=4 nKV=2 (GQA) L=2 I=48 V=97 maxpos 64, theta 1e4, untied"),
    LlamaSpec("llama_tied_linear_rope", "llama",
              dict(LLAMA_TINY, num_key_value_heads=4, tie_word_embeddings=True, rope_theta=500000.0,
                   rope_scaling={"rope_type": "linear", "factor": 2.0}), seed=5002,
              description="Llama like llama_tiny, MHA (nKV=4), tied embeddings, rope linear factor 2, theta 5e5"),
    LlamaSpec("llama3_rope", "llama",
              dict(LLAMA_TINY, hidden_size=24, num_attention_heads=2, num_key_value_heads=1, head_dim=12,
                   rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                 "original_max_position_embeddings": 32}), seed=5003,
              description="Llama H=24 nH=2 nKV=1 hd=12, rope llama3 (factor 8, low 1, high 4, original maxpos 32: "
                          "the 6 frequencies cover all three branches)"),
    LlamaSpec("llama_dynamic_rope", "llama",
              dict(LLAMA_TINY, max_position_embeddings=16, rope_scaling={"rope_type": "dynamic", "factor": 2.0}),
              seed=5004, forward_T=24, extra_cases=["short"],
              description="Llama like llama_tiny, maxpos 16, rope dynamic factor 2; cases T=24 (> 16: rescaled base) "
                          "and short (T=13: original frequencies)"),
    LlamaSpec("llama_head_dim", "llama", dict(LLAMA_TINY, head_dim=12), seed=5005,
              description="Llama H=32 nH=4 nKV=2 with explicit head_dim 12 (!= H/nH = 8): q_proj [48,32], o_proj [32,48]"),
    LlamaSpec("mistral_tiny", "mistral", dict(_COMMON, sliding_window=5, tie_word_embeddings=False), seed=5006,
              description="Mistral H=32 nH=4 nKV=2 L=2 V=97 maxpos 64, sliding_window 5 (every layer)"),
    LlamaSpec("qwen2_tiny", "qwen2", dict(_COMMON, tie_word_embeddings=True), seed=5007,
              description="Qwen2 H=32 nH=4 nKV=2 L=2 V=97 maxpos 64, q/k/v biases, tied; use_sliding_window False"),
    # hardening (issue 10): biases and Qwen2's sliding layers, on smaller models (the fixture size budget)
    LlamaSpec("llama_bias", "llama", dict(SMALL, attention_bias=True, mlp_bias=True, tie_word_embeddings=False),
              seed=5008, description="Llama H=16 nH=4 nKV=2 L=2 I=24 V=61, attention_bias (q/k/v/o_proj biases) and "
                                     "mlp_bias (gate/up/down_proj biases), untied"),
    LlamaSpec("qwen2_sliding", "qwen2",
              dict(SMALL, num_hidden_layers=3, use_sliding_window=True, sliding_window=4, max_window_layers=1,
                   attention_bias=False, mlp_bias=True, tie_word_embeddings=True), seed=5009,
              description="Qwen2 H=16 nH=4 nKV=2 L=3 I=24 V=61, use_sliding_window, sliding_window 4, max_window_layers 1 "
                          "(layer_types full, sliding, sliding); attention_bias false / mlp_bias true, keys Qwen2 ignores "
                          "(q/k/v biases, none on o_proj or the MLP); tied"),
    LlamaSpec("qwen2_layer_types", "qwen2",
              dict(SMALL, num_hidden_layers=3, use_sliding_window=True, sliding_window=3, max_window_layers=1,
                   layer_types=["sliding_attention", "full_attention", "sliding_attention"], tie_word_embeddings=False),
              seed=5010, description="Qwen2 H=16 nH=4 nKV=2 L=3 I=24 V=61, sliding_window 3 with an explicit layer_types "
                                     "(sliding, full, sliding), which wins over max_window_layers 1; untied"),
    # issue 15: Qwen3 (q_norm / k_norm per head before RoPE, attention_bias on q/k/v/o_proj, explicit head_dim)
    LlamaSpec("qwen3_tiny", "qwen3",
              dict(SMALL, head_dim=6, attention_bias=True, use_sliding_window=True, sliding_window=4,
                   max_window_layers=1, tie_word_embeddings=True), seed=5011,
              description="Qwen3 H=16 nH=4 nKV=2 hd=6 (!= H/nH) L=2 I=24 V=61, q_norm/k_norm (perturbed), "
                          "attention_bias (q/k/v/o_proj biases), use_sliding_window window 4 from layer 1; tied"),
    # issue 15: Gemma (RMSNorm by 1 + weight, embeddings x sqrt(hidden), GeGLU gelu_pytorch_tanh, explicit head_dim)
    LlamaSpec("gemma_tiny", "gemma",
              dict(SMALL, head_dim=6, hidden_act="gelu_pytorch_tanh", attention_bias=True, pad_token_id=0,
                   tie_word_embeddings=True), seed=5012,
              description="Gemma H=16 nH=4 nKV=2 hd=6 L=2 I=24 V=61, RMSNorm (1 + weight) perturbed, embeddings x "
                          "sqrt(16), GeGLU (gelu_pytorch_tanh), attention_bias, pad 0, tied"),
]
SPEC = {s.name: s for s in SPECS}

ARCH = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "gemma": ("GemmaConfig", "GemmaForCausalLM"),
}


def config_for(arch: str, cfg: dict):
    import transformers
    cfg_cls, model_cls = ARCH[arch]
    c = getattr(transformers, cfg_cls)(**cfg)
    c.architectures = [model_cls]
    return c


def model_class(arch: str):
    import transformers
    return getattr(transformers, ARCH[arch][1])


def is_rmsnorm(mod: nn.Module) -> bool:
    return "RMSNorm" in type(mod).__name__


@torch.no_grad()
def perturb(model: nn.Module, gen: torch.Generator) -> list[str]:
    """RMSNorm weights +0.25*N(0,1) (init 1) and every Linear bias +0.1*N(0,1) (init 0), so a wrong norm weight or a
    dropped bias shows. Returns the names of the perturbed parameters."""
    changed = []
    for name, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if is_rmsnorm(mod):
            mod.weight.add_(0.25 * torch.randn(mod.weight.shape, generator=gen))
            changed.append(f"{name}.weight")
        elif isinstance(mod, nn.Linear) and mod.bias is not None:
            mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            changed.append(f"{name}.bias")
    return changed


def build(spec: LlamaSpec, overrides: dict | None = None):
    """The f32 model of a spec, eval mode, eager attention (a function of the spec alone)."""
    gen = om.seed(spec.seed)
    config = config_for(spec.arch, dict(spec.config, **(overrides or {})))
    config._attn_implementation = "eager"
    model = model_class(spec.arch)(config)
    perturb(model, gen)
    return model.eval()


def save_model(spec: LlamaSpec, d: str) -> None:
    fresh_dir(d)
    build(spec).save_pretrained(d)


def model_dir(ctx: Context, name: str) -> str:
    d = lpath(ctx, "models", name)
    if not os.path.isfile(os.path.join(d, "config.json")):
        ctx.log(f"  (llama/models/{name} missing: writing it first)")
        save_model(SPEC[name], d)
    return d


def load(ctx: Context, name: str):
    """Fresh from_pretrained(f32, eager), eval. Fresh every time: dynamic RoPE keeps state between forwards."""
    return om.load_tiny(model_dir(ctx, name), dtype=torch.float32)


@family("llama_models", dirs=[f"{ROOT}/models"])
def fam_models(ctx: Context) -> list[Item]:
    """Tiny Llama / Mistral / Qwen2 checkpoints (save_pretrained), RMSNorm weights and biases perturbed."""
    return [Item(s.name, (lambda s=s: save_model(s, lpath(ctx, "models", s.name))), [f"{ROOT}/models/{s.name}"])
            for s in SPECS]


def check_models(ctx: Context) -> list[str]:
    notes = []
    for spec in SPECS:
        d = lpath(ctx, "models", spec.name)
        if not os.path.isdir(d):
            continue
        sd, _ = load_tensors(os.path.join(d, "model.safetensors"))
        ref = build(spec).state_dict()
        for k, v in sd.items():
            assert v.dtype == torch.float32 and torch.equal(v, ref[k]), (spec.name, k)
        assert set(sd) == {k for k in ref if k != "lm_head.weight" or not spec.config["tie_word_embeddings"]}, spec.name
        cfg = json.load(open(os.path.join(d, "config.json")))
        assert cfg["model_type"] == spec.arch and "rope_parameters" in cfg and "rope_scaling" not in cfg, cfg
        if spec.arch == "qwen2":
            assert any(k.endswith("q_proj.bias") for k in sd) and not any("o_proj.bias" in k or "mlp" in k and "bias" in k
                                                                         for k in sd)
            assert cfg["sliding_window"] == (spec.config["sliding_window"] if spec.config.get("use_sliding_window") else None)
            derived = derived_layer_types(cfg)
            if "layer_types" in spec.config:     # the explicit list wins, and here it differs from the derivation
                assert cfg["layer_types"] == spec.config["layer_types"] != derived, (cfg["layer_types"], derived)
            else:
                assert cfg["layer_types"] == derived, (cfg["layer_types"], derived)
        if spec.config.get("attention_bias") or spec.config.get("mlp_bias"):
            notes.append(f"{spec.name}: bias tensors {sorted({k.split('.', 3)[-1] for k in sd if k.endswith('bias')})}")
        notes.append(f"{spec.name}: {len(sd)} tensors, {sum(v.numel() for v in sd.values()):,} stored values, "
                     f"rope_parameters {cfg['rope_parameters']}, layer_types {cfg.get('layer_types')}")
    # which config switches each model type reads for its biases (cpeft follows the same table)
    for arch, want in (("llama", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
                       ("mistral", set()), ("qwen2", {"q_proj", "k_proj", "v_proj"})):
        c = config_for(arch, dict(SMALL, num_hidden_layers=1, attention_bias=True, mlp_bias=True))
        got = {n.split(".")[-2] for n, _ in model_class(arch)(c).named_parameters() if n.endswith(".bias")}
        assert got == want, (arch, got)
        c = config_for(arch, dict(SMALL, num_hidden_layers=1, attention_bias=False, mlp_bias=False))
        got_off = {n.split(".")[-2] for n, _ in model_class(arch)(c).named_parameters() if n.endswith(".bias")}
        assert got_off == (want if arch == "qwen2" else set()), (arch, got_off)
        notes.append(f"{arch} with attention_bias=mlp_bias=True has biases on {sorted(got) or 'nothing'}; "
                     f"with both False on {sorted(got_off) or 'nothing'}")
    return notes


def derived_layer_types(cfg: dict) -> list[str]:
    """Qwen2Config's derivation when config.json has no layer_types (configuration_qwen2.py): the window is
    sliding_window if use_sliding_window else None; layer i slides iff there is a window and i >= max_window_layers."""
    window = cfg.get("sliding_window") if cfg.get("use_sliding_window") else None
    return ["sliding_attention" if window is not None and i >= cfg.get("max_window_layers", 28) else "full_attention"
            for i in range(cfg["num_hidden_layers"])]


def layer_windows(cfg: dict) -> list:
    """Each layer's window (None = full causal): Mistral's sliding_window on every layer; Qwen2 per layer_types."""
    L = cfg["num_hidden_layers"]
    if cfg["model_type"] == "mistral":
        return [cfg.get("sliding_window")] * L
    if cfg["model_type"] in ("qwen2", "qwen3"):
        w = cfg["sliding_window"] if cfg.get("use_sliding_window") else None
        types = cfg["layer_types"] if cfg.get("layer_types") is not None else derived_layer_types(cfg)
        return [w if t == "sliding_attention" else None for t in types]
    return [None] * L


# =================================================================================================
# forward


CASE_DESC = {
    "plain": "B=2, T={T}, no padding, attention_mask all ones, default position_ids",
    "right_pad": "B=3, T={T}, row lengths {T}/{T4}/{T7} right-padded with id 0, default position_ids (arange)",
    "left_pad": "B=3, T={T}, row lengths {T}/{T4}/{T7} left-padded with id 0, default position_ids (arange, ignoring padding)",
    "left_pad_pos": "B=3, T={T}, row lengths {T}/{T4}/{T7} left-padded with id 0, explicit position_ids = cumsum(mask)-1, "
                    "pads set to 1 (as generate() does)",
    "short": "B=2, T={T}, no padding (T <= max_position_embeddings: dynamic RoPE keeps the original frequencies)",
}


def forward_cases(spec: LlamaSpec) -> list[str]:
    return ["plain", "right_pad", "left_pad", "left_pad_pos"] + spec.extra_cases


def case_T(spec: LlamaSpec, case: str) -> int:
    return FORWARD_T if case == "short" else spec.forward_T


def case_inputs(spec: LlamaSpec, case: str) -> dict:
    group = "padded" if case in ("right_pad", "left_pad", "left_pad_pos") else case
    gen = torch.Generator().manual_seed(name_seed("llama", "forward", spec.name, group))
    return om.make_case("plain" if case == "short" else case, spec.config["vocab_size"], case_T(spec, case), gen)


@torch.no_grad()
def run_forward(model, inputs: dict) -> dict:
    kw = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"],
              output_hidden_states=True, use_cache=False, return_dict=True)
    if "position_ids" in inputs:
        kw["position_ids"] = inputs["position_ids"]
    out = model(**kw)
    return {"logits": out.logits.float(), "hidden_states": torch.stack(out.hidden_states).float(),
            "loss": out.loss.float().reshape(())}


def write_forward(ctx: Context, spec: LlamaSpec, case: str) -> None:
    inputs = case_inputs(spec, case)
    res = run_forward(load(ctx, spec.name), inputs)
    T = case_T(spec, case)
    tensors = dict(inputs)
    tensors.update(res)
    save_tensors(lpath(ctx, "forward", f"{spec.name}.{case}.safetensors"), tensors,
                 {"model": spec.name, "case": case, "description": CASE_DESC[case].format(T=T, T4=T - 4, T7=T - 7)})


@family("llama_forward", dirs=[f"{ROOT}/forward"])
def fam_forward(ctx: Context) -> list[Item]:
    """Llama-family logits, hidden states and loss on padded / unpadded batches (T > window, T > maxpos)."""
    return [Item(f"{s.name}.{c}", (lambda s=s, c=c: write_forward(ctx, s, c)),
                 [f"{ROOT}/forward/{s.name}.{c}.safetensors"]) for s in SPECS for c in forward_cases(s)]


# ---- an independent float64 implementation of the documented rules (used by the checkers) ----------------------


def ref_inv_freq(cfg: dict, seq_len: int) -> torch.Tensor:
    """inv_freq (float64) from a saved config.json, for a forward whose max(position_ids)+1 is seq_len."""
    rp = cfg["rope_parameters"]
    theta = float(rp["rope_theta"])
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    d = int(hd * rp.get("partial_rotary_factor", 1.0))
    k = torch.arange(0, d, 2, dtype=torch.float64) / d
    kind = rp.get("rope_type", "default")
    if kind == "dynamic" and seq_len > cfg["max_position_embeddings"]:
        f = rp["factor"]
        theta = theta * ((f * seq_len / cfg["max_position_embeddings"]) - (f - 1)) ** (d / (d - 2))
    inv = 1.0 / theta ** k
    if kind == "linear":
        inv = inv / rp["factor"]
    elif kind == "llama3":
        f, lo, hi, orig = rp["factor"], rp["low_freq_factor"], rp["high_freq_factor"], rp["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        s = (orig / wl - lo) / (hi - lo)
        out = torch.where(wl > orig / lo, inv / f, inv)
        mid = (wl >= orig / hi) & (wl <= orig / lo)
        inv = torch.where(mid, (1 - s) * inv / f + s * inv, out)
    else:
        assert kind in ("default", "dynamic"), kind
    return inv


def llama3_branches(cfg: dict) -> list[str]:
    rp = cfg["rope_parameters"]
    inv = ref_inv_freq(dict(cfg, rope_parameters={"rope_theta": rp["rope_theta"]}), 1)
    wl = 2 * math.pi / inv
    orig = rp["original_max_position_embeddings"]
    return ["scaled" if w > orig / rp["low_freq_factor"] else "unchanged" if w < orig / rp["high_freq_factor"]
            else "smoothed" for w in wl.tolist()]


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos + rot * sin


def ref_forward(cfg: dict, sd: dict, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    """Logits in float64 from config.json + state dict: embed; per layer x += o(attn(rms(x))), x += down(silu(gate(a))
    * up(a)), a = rms(x); final rms; lm_head (tied -> embed_tokens). Attention: q/k/v (+bias), RoPE rotate_half with
    cos/sin of position_ids, GQA (query head h uses kv head h // (nH/nKV)), scores * hd^-0.5, key j visible from query
    i iff j <= i and mask[j] and (no window or i - j < window) (indices, not position ids), softmax. The window is
    per layer (layer_windows)."""
    sd = {k: v.double() for k, v in sd.items()}
    B, T = ids.shape
    nH, nKV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or cfg["hidden_size"] // nH
    eps = cfg["rms_norm_eps"]
    windows = layer_windows(cfg)
    if pos is None:
        pos = torch.arange(T).expand(B, T)
    inv = ref_inv_freq(cfg, int(pos.max()) + 1)
    ang = pos.double()[..., None] * inv                      # [B, T, hd/2]
    cos = torch.cat([ang, ang], -1).cos()[:, None]           # [B, 1, T, hd]
    sin = torch.cat([ang, ang], -1).sin()[:, None]

    gemma = cfg["model_type"] == "gemma"

    def rms(x, w):                                           # gemma: scaled by 1 + weight
        return ((1 + w) if gemma else w) * (x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps))

    def lin(x, name):
        y = x @ sd[name + ".weight"].T
        return y + sd[name + ".bias"] if name + ".bias" in sd else y

    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    x = sd["model.embed_tokens.weight"][ids]
    if gemma:                                                # GemmaTextScaledWordEmbedding: x sqrt(hidden_size)
        x = x * float(torch.tensor(cfg["hidden_size"] ** 0.5, dtype=torch.float32))
    act = (lambda g: torch.nn.functional.gelu(g, approximate="tanh")) if gemma else torch.nn.functional.silu
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        W = windows[layer]
        vis = (j <= i) if W is None else (j <= i) & (i - j < W)
        vis = vis[None, None] & mask.bool()[:, None, None, :]     # [B, 1, T, T]
        a = rms(x, sd[p + "input_layernorm.weight"])
        q = lin(a, p + "self_attn.q_proj").view(B, T, nH, hd)
        k = lin(a, p + "self_attn.k_proj").view(B, T, nKV, hd)
        if p + "self_attn.q_norm.weight" in sd:              # qwen3: RMSNorm over each head's hd, before RoPE
            q, k = rms(q, sd[p + "self_attn.q_norm.weight"]), rms(k, sd[p + "self_attn.k_norm.weight"])
        q, k = q.transpose(1, 2), k.transpose(1, 2)
        v = lin(a, p + "self_attn.v_proj").view(B, T, nKV, hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(nH // nKV, dim=1)
        v = v.repeat_interleave(nH // nKV, dim=1)
        s = (q @ k.transpose(-1, -2)) * hd ** -0.5
        s = s.masked_fill(~vis, float("-inf"))
        att = torch.nan_to_num(torch.softmax(s, -1))         # fully masked (pad) query rows -> 0 (not compared)
        o = (att @ v).transpose(1, 2).reshape(B, T, nH * hd)
        x = x + lin(o, p + "self_attn.o_proj")
        a = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = lin(a, p + "mlp.gate_proj")
        x = x + lin(act(g) * lin(a, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, sd["model.norm.weight"])
    head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return x @ head.T


def real_rows(mask: torch.Tensor) -> torch.Tensor:
    return mask.bool()


def manual_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    V = logits.shape[-1]
    lg = logits[:, :-1].reshape(-1, V).double()
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    return (torch.logsumexp(lg[keep], -1) - lg[keep].gather(1, tg[keep, None]).squeeze(1)).mean()


def check_forward(ctx: Context) -> list[str]:
    notes = []
    fdir = lpath(ctx, "forward")
    if not os.path.isdir(fdir):
        return notes
    worst_ref, worst_loss = 0.0, 0.0
    got: dict = {}
    for spec in SPECS:
        d = model_dir(ctx, spec.name)
        cfg = json.load(open(os.path.join(d, "config.json")))
        sd, _ = load_tensors(os.path.join(d, "model.safetensors"))
        L, H, V = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["vocab_size"]
        head = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
        for case in forward_cases(spec):
            p = os.path.join(fdir, f"{spec.name}.{case}.safetensors")
            if not os.path.exists(p):
                continue
            t, meta = load_tensors(p)
            got[(spec.name, case)] = t
            assert meta["model"] == spec.name and meta["case"] == case and meta["description"]
            B, T = t["input_ids"].shape
            assert T == case_T(spec, case)
            assert ("position_ids" in t) == (case == "left_pad_pos")
            assert t["logits"].shape == (B, T, V) and t["logits"].dtype == torch.float32
            assert t["hidden_states"].shape == (L + 1, B, T, H), t["hidden_states"].shape
            assert t["loss"].shape == () and t["loss"].dtype == torch.float32
            for k in ("input_ids", "attention_mask", "labels"):
                assert t[k].dtype == torch.int64
            assert torch.all(t["labels"][t["attention_mask"] == 0] == -100)
            dl = abs(manual_loss(t["logits"], t["labels"]).item() - t["loss"].item())
            worst_loss = max(worst_loss, dl)
            assert dl < 1e-5, (spec.name, case, dl)
            # hidden_states[0] = embeddings, [-1] = after the final norm: logits = hs[-1] @ head^T
            scale = torch.tensor(H ** 0.5, dtype=torch.float32) if cfg["model_type"] == "gemma" else 1.0
            assert torch.equal(t["hidden_states"][0], sd["model.embed_tokens.weight"][t["input_ids"]] * scale)
            assert torch.allclose(t["hidden_states"][-1] @ head.T, t["logits"], atol=1e-5, rtol=1e-5)
            # the independent float64 implementation agrees on every real query position
            ref = ref_forward(cfg, sd, t["input_ids"], t["attention_mask"], t.get("position_ids"))
            m = real_rows(t["attention_mask"])
            diff = (ref[m] - t["logits"][m].double()).abs().max().item()
            worst_ref = max(worst_ref, diff)
            assert diff < 2e-4, (spec.name, case, diff)
        if (spec.name, "right_pad") in got and (spec.name, "left_pad_pos") in got:
            r, l = got[(spec.name, "right_pad")], got[(spec.name, "left_pad_pos")]
            diff = max((r["logits"][b, :n] - l["logits"][b, -n:]).abs().max().item()
                       for b, n in enumerate(r["attention_mask"].sum(1).tolist()))
            assert diff < 1e-4, (spec.name, diff)
            notes.append(f"{spec.name}: right_pad vs left_pad_pos real-token logits max|diff| {diff:.1e}; plain logits "
                         f"std {got[(spec.name, 'plain')]['logits'].std().item():.3f}, loss "
                         f"{got[(spec.name, 'plain')]['loss'].item():.4f}")
    notes.append(f"every forward fixture == float64 re-implementation of the documented rules on real query positions "
                 f"(max|diff| {worst_ref:.1e}); loss == float64 CE (max|diff| {worst_loss:.1e})")
    notes += check_ablations(ctx, got)
    return notes


@torch.no_grad()
def variant_logits(ctx: Context, spec: LlamaSpec, case: str, overrides: dict, drop: str | None = None) -> torch.Tensor:
    """Logits of the saved weights under a modified config (or with some tensors zeroed)."""
    m = build(spec, overrides)
    sd = load(ctx, spec.name).state_dict()
    if drop:
        sd = {k: (torch.zeros_like(v) if drop in k else v) for k, v in sd.items()}
    m.load_state_dict(sd)
    return run_forward(m, case_inputs(spec, case))["logits"]


def check_ablations(ctx: Context, got: dict) -> list[str]:
    """Each feature the fixtures are meant to exercise changes the logits (so getting it wrong shows)."""
    notes = []

    def have(n, c="plain"):
        return (n, c) in got

    if have("mistral_tiny"):
        spec, ref = SPEC["mistral_tiny"], got[("mistral_tiny", "plain")]["logits"]
        W = spec.config["sliding_window"]
        lg = variant_logits(ctx, spec, "plain", {"sliding_window": None})
        early, late = (lg[:, :W] - ref[:, :W]).abs().max().item(), (lg[:, W:] - ref[:, W:]).abs().max().item()
        assert early < 1e-5 and late > 1e-2, (early, late)
        lg6 = variant_logits(ctx, spec, "plain", {"sliding_window": W + 1})
        first = int(((lg6 - ref).abs().amax((0, 2)) > 1e-5).nonzero()[0])
        assert first == W, first          # window W: query i sees keys i-W+1..i; W+1 first differs at i = W
        notes.append(f"mistral_tiny without sliding_window: logits at t<{W} equal ({early:.1e}), after differ "
                     f"({late:.3f}); window {W + 1} first differs at t={first} -> key j visible iff i-j < {W}")
    if have("qwen2_tiny"):
        spec, ref = SPEC["qwen2_tiny"], got[("qwen2_tiny", "plain")]["logits"]
        for part in ("q_proj.bias", "k_proj.bias", "v_proj.bias"):
            d = (variant_logits(ctx, spec, "plain", {}, drop=part) - ref).abs().max().item()
            assert d > 1e-2, (part, d)
            notes.append(f"qwen2_tiny with {part} zeroed: logits max|diff| {d:.3f}")
    if have("llama_bias"):
        spec, ref = SPEC["llama_bias"], got[("llama_bias", "plain")]["logits"]
        for part in ("q_proj.bias", "k_proj.bias", "v_proj.bias", "o_proj.bias", "gate_proj.bias", "up_proj.bias",
                     "down_proj.bias"):
            d = (variant_logits(ctx, spec, "plain", {}, drop=part) - ref).abs().max().item()
            assert d > 1e-3, (part, d)
            notes.append(f"llama_bias with {part} zeroed: logits max|diff| {d:.3f}")
    if have("qwen2_sliding"):
        spec, ref = SPEC["qwen2_sliding"], got[("qwen2_sliding", "plain")]["logits"]
        W = spec.config["sliding_window"]
        lg = variant_logits(ctx, spec, "plain", {"use_sliding_window": False})
        early, late = (lg[:, :W] - ref[:, :W]).abs().max().item(), (lg[:, W:] - ref[:, W:]).abs().max().item()
        assert early < 1e-5 and late > 1e-2, (early, late)
        lg5 = variant_logits(ctx, spec, "plain", {"sliding_window": W + 1})
        first = int(((lg5 - ref).abs().amax((0, 2)) > 1e-5).nonzero()[0])
        assert first == W, first
        d0 = (variant_logits(ctx, spec, "plain", {"max_window_layers": 0}) - ref).abs().max().item()
        assert d0 > 1e-2, d0
        notes.append(f"qwen2_sliding without use_sliding_window: logits at t<{W} equal ({early:.1e}), after differ "
                     f"({late:.3f}); window {W + 1} first differs at t={first}; max_window_layers 0 (layer 0 slides "
                     f"too) differs by {d0:.3f}")
    if have("qwen2_layer_types"):
        spec, ref = SPEC["qwen2_layer_types"], got[("qwen2_layer_types", "plain")]["logits"]
        d = (variant_logits(ctx, spec, "plain", {"layer_types": None}) - ref).abs().max().item()
        assert d > 1e-2, d
        notes.append(f"qwen2_layer_types with layer_types derived from max_window_layers instead: logits max|diff| {d:.3f}")
    for name, over in (("llama_tied_linear_rope", {"rope_scaling": None}),
                       ("llama3_rope", {"rope_scaling": None}),
                       ("llama_dynamic_rope", {"rope_scaling": None}),
                       ("llama_tiny", {"rope_theta": 20000.0})):
        if have(name):
            d = (variant_logits(ctx, SPEC[name], "plain", over) - got[(name, "plain")]["logits"]).abs().max().item()
            assert d > 1e-2, (name, d)
            notes.append(f"{name} with {over}: plain logits max|diff| {d:.3f}")
    if have("llama_dynamic_rope", "short"):
        d = (variant_logits(ctx, SPEC["llama_dynamic_rope"], "short", {"rope_scaling": None})
             - got[("llama_dynamic_rope", "short")]["logits"]).abs().max().item()
        assert d == 0.0, d
        notes.append("llama_dynamic_rope short (T=13 <= 16) == the same weights without rope_scaling, bit for bit")
    if have("llama_head_dim"):
        assert got[("llama_head_dim", "plain")]["logits"].shape[-1] == 97
    return notes


# =================================================================================================
# info + real configs


def model_info(model, model_type: str) -> dict:
    params = list(model.named_parameters())
    dtypes: dict[str, int] = {}
    for _, p in params:
        k = str(p.dtype).replace("torch.", "")
        dtypes[k] = dtypes.get(k, 0) + p.numel()
    return {
        "model_type": model_type,
        "num_parameters": sum(p.numel() for _, p in params),
        "num_parameter_tensors": len(params),
        "parameters": [[n, list(p.shape), str(p.dtype).replace("torch.", "")] for n, p in params],
        "repr": str(model),
        "dtypes": dtypes,
        "tie_word_embeddings": bool(model.config.tie_word_embeddings),
    }


# Published config.json values (transformers 4.x key style: rope_theta / rope_scaling at top level), no hub access.
REAL = {
    "SmolLM2-135M": ("llama", "HuggingFaceTB/SmolLM2-135M", dict(
        attention_bias=False, attention_dropout=0.0, bos_token_id=0, eos_token_id=0, hidden_act="silu",
        hidden_size=576, initializer_range=0.041666666666666664, intermediate_size=1536, is_llama_config=True,
        max_position_embeddings=8192, num_attention_heads=9, num_hidden_layers=30, num_key_value_heads=3,
        pretraining_tp=1, rms_norm_eps=1e-5, rope_interleaved=False, rope_scaling=None, rope_theta=100000.0,
        tie_word_embeddings=True, use_cache=True, vocab_size=49152)),
    "TinyLlama-1.1B": ("llama", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", dict(
        attention_bias=False, bos_token_id=1, eos_token_id=2, hidden_act="silu", hidden_size=2048,
        initializer_range=0.02, intermediate_size=5632, max_position_embeddings=2048, num_attention_heads=32,
        num_hidden_layers=22, num_key_value_heads=4, pretraining_tp=1, rms_norm_eps=1e-5, rope_scaling=None,
        rope_theta=10000.0, tie_word_embeddings=False, use_cache=True, vocab_size=32000)),
    "Mistral-7B-v0.1": ("mistral", "mistralai/Mistral-7B-v0.1", dict(
        bos_token_id=1, eos_token_id=2, hidden_act="silu", hidden_size=4096, initializer_range=0.02,
        intermediate_size=14336, max_position_embeddings=32768, num_attention_heads=32, num_hidden_layers=32,
        num_key_value_heads=8, rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False,
        use_cache=True, vocab_size=32000)),
    "Qwen2-0.5B": ("qwen2", "Qwen/Qwen2-0.5B", dict(
        attention_dropout=0.0, bos_token_id=151643, eos_token_id=151643, hidden_act="silu", hidden_size=896,
        initializer_range=0.02, intermediate_size=4864, max_position_embeddings=131072, max_window_layers=24,
        num_attention_heads=14, num_hidden_layers=24, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        sliding_window=131072, tie_word_embeddings=True, use_cache=True, use_sliding_window=False, vocab_size=151936)),
}
REAL_EXPECTED = {"SmolLM2-135M": 134_515_008, "TinyLlama-1.1B": 1_100_048_384, "Mistral-7B-v0.1": 7_241_732_096,
                 "Qwen2-0.5B": 494_032_768}


def build_meta(short: str):
    arch, _, cfg = REAL[short]
    config = config_for(arch, cfg)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        m = model_class(arch)(config)
    return config, m.eval()


def write_info_tiny(ctx: Context, spec: LlamaSpec) -> None:
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(model_dir(ctx, spec.name), attn_implementation="eager").eval()
    info = model_info(m, m.config.model_type)
    info["source"] = f"tests/fixtures/llama/models/{spec.name} loaded with from_pretrained (default dtype='auto')"
    info["description"] = spec.description
    write_json(lpath(ctx, "info", f"{spec.name}.json"), info)


def write_real(ctx: Context, short: str) -> None:
    arch, hub, cfg = REAL[short]
    config, m = build_meta(short)
    info = model_info(m, config.model_type)
    info["source"] = f"{hub} config (published values, transformers 4.x keys), built on the meta device"
    info["published_config"] = dict(cfg, architectures=[ARCH[arch][1]], model_type=arch)
    info["rope_parameters"] = dict(config.rope_parameters)
    if short in REAL_EXPECTED:
        assert info["num_parameters"] == REAL_EXPECTED[short], (short, info["num_parameters"], REAL_EXPECTED[short])
    write_json(lpath(ctx, "info", f"{short}.json"), info)
    d = lpath(ctx, "configs", short)
    fresh_dir(d)
    config.save_pretrained(d)


@torch.no_grad()
def write_rope(ctx: Context) -> None:
    """inv_freq per tiny model (what transformers' rotary module holds) + the dynamic rule, shown on the model."""
    out = {"models": {}}
    for spec in SPECS:
        m = load(ctx, spec.name)
        rot = m.model.rotary_emb
        cfg = json.load(open(os.path.join(model_dir(ctx, spec.name), "config.json")))
        e = {"rope_parameters": cfg["rope_parameters"], "inv_freq": rot.inv_freq.tolist(),
             "attention_scaling": float(rot.attention_scaling),
             "head_dim": cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"], "max_position_embeddings": cfg["max_position_embeddings"]}
        if cfg["rope_parameters"]["rope_type"] == "llama3":
            e["llama3_branch"] = llama3_branches(cfg)
        out["models"][spec.name] = e
    # dynamic: which inv_freq each forward uses, for a sequence of forwards on ONE model object
    spec = SPEC["llama_dynamic_rope"]
    cfg = json.load(open(os.path.join(model_dir(ctx, spec.name), "config.json")))
    gen = torch.Generator().manual_seed(name_seed("llama", "rope", "dynamic"))
    ids = torch.randint(1, spec.config["vocab_size"], (1, 24), generator=gen)

    def fwd(m, T):
        return m(input_ids=ids[:, :T], use_cache=False).logits[0, -1]

    seq = []
    m = load(ctx, spec.name)
    for T in (10, 20, 24, 18, 16, 15, 17):
        lg = fwd(m, T)
        fresh = fwd(load(ctx, spec.name), T)
        inv = m.model.rotary_emb.inv_freq.clone()
        seq.append({"T": T, "inv_freq_after": inv.tolist(), "max_seq_len_cached_after": int(m.model.rotary_emb.max_seq_len_cached),
                    "same_as_fresh_model": bool(torch.equal(lg, fresh)),
                    "max_abs_diff_vs_fresh_model": float((lg - fresh).abs().max()),
                    "inv_freq_equals_stateless_rule": bool(torch.allclose(inv.double(), ref_inv_freq(cfg, T), rtol=1e-6, atol=0))})
    base_T = {T: float(cfg["rope_parameters"]["rope_theta"] * ((2.0 * T / 16) - 1) ** (8 / 6)) for T in (17, 20, 24)}
    out["dynamic"] = {
        "model": spec.name,
        "rule": "LlamaRotaryEmbedding.forward is wrapped by dynamic_rope_update: seq_len = max(position_ids) + 1 over the "
                "whole batch (a tensor). If seq_len > max_seq_len_cached (initially max_position_embeddings): inv_freq is "
                "recomputed with base' = rope_theta * ((factor * seq_len / max_position_embeddings) - (factor - 1)) ** "
                "(dim / (dim - 2)) (evaluated as a float32 tensor) and max_seq_len_cached = seq_len. If seq_len < "
                "max_position_embeddings (strictly) and max_seq_len_cached > max_position_embeddings: inv_freq is reset to "
                "the original and max_seq_len_cached = max_position_embeddings. Otherwise the current inv_freq is kept. "
                "One inv_freq per forward (all rows, all layers); attention_scaling 1.",
        "stateful": "the module keeps state: after a longer forward, a forward with max_position_embeddings <= seq_len < "
                    "max_seq_len_cached reuses the longer forward's frequencies (a fresh model would use its own seq_len). "
                    "The forward fixtures use a freshly loaded model per case, where the stateless rule (base' from this "
                    "forward's own seq_len when > max_position_embeddings, else the original) holds.",
        "generate": "during generate() with a KV cache each decoding step's seq_len is its position + 1, so inv_freq "
                    "changes every step once past max_position_embeddings while cached keys keep the rotation they got "
                    "when they were computed",
        "base_for_seq_len": base_T,
        "sequence_on_one_model": seq,
        "ids": ids.tolist(),
    }
    write_json(lpath(ctx, "info", "rope.json"), out)


# config.json forms of the RoPE keys: transformers 5.23 reads them through RotaryEmbeddingConfigMixin
# (modeling_rope_utils.py): rope_parameters = rope_scaling (when a non-empty dict) or rope_parameters; rope_theta,
# when that dict lacks it, comes from the top level (else default_theta 1e4); a llama3 dict's
# original_max_position_embeddings is the top-level one when config.json has it, else the dict's, else
# max_position_embeddings; linear/dynamic need factor, llama3 also low/high_freq_factor (a KeyError otherwise).
ROPE_BASE = dict(hidden_size=16, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=1, intermediate_size=8,
                 vocab_size=16, max_position_embeddings=64, rms_norm_eps=1e-5, tie_word_embeddings=False)
L3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0}
ROPE_CONFIGS = [
    ("params_without_theta_top_theta", "llama", dict(rope_parameters={"rope_type": "default"}, rope_theta=500000.0)),
    ("params_without_theta_top_theta_mistral", "mistral", dict(rope_parameters={"rope_type": "default"}, rope_theta=500000.0)),
    ("params_without_theta_top_theta_qwen2", "qwen2", dict(rope_parameters={"rope_type": "linear", "factor": 2.0},
                                                           rope_theta=1000000.0)),
    ("params_theta_wins_over_top", "llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
                                                 rope_theta=500000.0)),
    ("params_empty_top_theta", "llama", dict(rope_parameters={}, rope_theta=500000.0)),
    ("params_null_top_theta", "llama", dict(rope_parameters=None, rope_theta=500000.0)),
    ("top_theta_only", "llama", dict(rope_theta=500000)),
    ("nothing", "llama", {}),
    ("scaling_wins_over_params", "llama", dict(rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
                                               rope_scaling={"rope_type": "linear", "factor": 2.0}, rope_theta=300.0)),
    ("scaling_null_params_used", "llama", dict(rope_parameters={"rope_type": "linear", "factor": 3.0}, rope_scaling=None,
                                               rope_theta=300.0)),
    ("scaling_empty_params_used", "llama", dict(rope_parameters={"rope_type": "linear", "factor": 3.0}, rope_scaling={},
                                                rope_theta=300.0)),
    ("scaling_theta_wins_over_top", "llama", dict(rope_scaling={"rope_type": "linear", "factor": 2.0, "rope_theta": 300.0},
                                                  rope_theta=500000.0)),
    ("scaling_type_key", "llama", dict(rope_scaling={"type": "dynamic", "factor": 2.0})),
    ("rope_type_wins_over_type", "llama", dict(rope_scaling={"rope_type": "linear", "type": "dynamic", "factor": 2.0})),
    ("default_ignores_factor", "llama", dict(rope_scaling={"rope_type": "default", "factor": 2.0})),
    ("llama3_orig_defaults_to_max_positions", "llama", dict(rope_parameters=dict(L3))),
    ("llama3_scaling_orig_defaults_to_max_positions", "qwen2", dict(rope_scaling=dict(L3), rope_theta=20000.0)),
    ("llama3_top_orig", "llama", dict(rope_scaling=dict(L3), original_max_position_embeddings=16)),
    ("llama3_top_orig_wins_over_dict", "mistral", dict(rope_parameters=dict(L3, original_max_position_embeddings=32),
                                                       original_max_position_embeddings=16)),
    ("llama3_dict_orig", "llama", dict(rope_parameters=dict(L3, original_max_position_embeddings=32))),
    ("linear_ignores_top_orig", "llama", dict(rope_scaling={"rope_type": "linear", "factor": 2.0},
                                              original_max_position_embeddings=16)),
    ("default_ignores_top_partial", "llama", dict(rope_parameters={"rope_type": "default"}, partial_rotary_factor=0.5)),
    ("dict_partial_wins_over_top", "llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0,
                                                                  "partial_rotary_factor": 1.0}, partial_rotary_factor=0.5)),
    ("linear_top_partial", "llama", dict(rope_parameters={"rope_type": "linear", "factor": 2.0}, partial_rotary_factor=0.5)),
    ("linear_without_factor", "llama", dict(rope_scaling={"rope_type": "linear"})),
    ("dynamic_without_factor", "llama", dict(rope_parameters={"rope_type": "dynamic"})),
    ("llama3_without_low_freq_factor", "llama", dict(rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                                   "high_freq_factor": 4.0})),
    ("top_theta_null", "llama", dict(rope_theta=None)),
    ("params_theta_null", "llama", dict(rope_parameters={"rope_type": "default", "rope_theta": None}, rope_theta=300.0)),
]


def rope_config_case(arch: str, extra: dict) -> dict:
    """What transformers makes of one config.json: the standardised rope_parameters and the rotary module's
    inv_freq, or the first error on the way to a forward (config, model, or the forward itself)."""
    import tempfile
    from transformers import AutoConfig
    cfg = dict(ROPE_BASE, model_type=arch, architectures=[ARCH[arch][1]], **extra)
    out = {"arch": arch, "config": cfg}
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(cfg, f)
        stage = "config"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                c = AutoConfig.from_pretrained(d)
                stage = "model"
                torch.manual_seed(0)
                c._attn_implementation = "eager"
                m = model_class(arch)(c).eval()
                stage = "forward"
                with torch.no_grad():
                    m(input_ids=torch.tensor([[1, 2, 3]]))
        except Exception as e:  # noqa: BLE001  (any failure is the answer)
            out["error"] = {"stage": stage, "message": f"{type(e).__name__}: {str(e).splitlines()[0]}".replace(d, "<dir>")}
            return out
    out["rope_parameters"] = dict(c.rope_parameters)
    out["inv_freq"] = m.model.rotary_emb.inv_freq.tolist()
    return out


def write_rope_configs(ctx: Context) -> None:
    import transformers
    transformers.logging.set_verbosity_error()
    cases = {name: rope_config_case(arch, extra) for name, arch, extra in ROPE_CONFIGS}
    write_json(lpath(ctx, "info", "rope_configs.json"), {
        "description": "config.json forms of the RoPE keys for llama/mistral/qwen2 and what transformers 5.23 makes of "
                       "each: the standardised rope_parameters and LlamaRotaryEmbedding.inv_freq (float32), or the first "
                       "error on the way to a forward (stage config: AutoConfig.from_pretrained; model: building the "
                       "model; forward: a 3-token forward)",
        "cases": cases})


@family("llama_info", dirs=[f"{ROOT}/info", f"{ROOT}/configs"])
def fam_info(ctx: Context) -> list[Item]:
    """Llama-family parameter counts / shapes / str(model), real configs (meta device), RoPE frequencies."""
    items = [Item(s.name, (lambda s=s: write_info_tiny(ctx, s)), [f"{ROOT}/info/{s.name}.json"]) for s in SPECS]
    items += [Item(k, (lambda k=k: write_real(ctx, k)), [f"{ROOT}/info/{k}.json", f"{ROOT}/configs/{k}/config.json"])
              for k in REAL]
    items.append(Item("rope", lambda: write_rope(ctx), [f"{ROOT}/info/rope.json"]))
    items.append(Item("rope_configs", lambda: write_rope_configs(ctx), [f"{ROOT}/info/rope_configs.json"]))
    return items


def check_info(ctx: Context) -> list[str]:
    from transformers import AutoConfig
    notes = []
    for name in [s.name for s in SPECS] + list(REAL):
        p = lpath(ctx, "info", f"{name}.json")
        if not os.path.exists(p):
            continue
        info = json.load(open(p))
        assert sum(info["dtypes"].values()) == info["num_parameters"]
        assert sum(math.prod(s) for _, s, _ in info["parameters"]) == info["num_parameters"]
        if name in REAL:
            assert info["num_parameters"] == REAL_EXPECTED[name]
            c = AutoConfig.from_pretrained(lpath(ctx, "configs", name))
            arch, _, cfg = REAL[name]
            assert c.model_type == arch and c.hidden_size == cfg["hidden_size"]
            assert c.rope_parameters["rope_theta"] == cfg["rope_theta"]
            j = json.load(open(lpath(ctx, "configs", name, "config.json")))
            assert j["architectures"] == [ARCH[arch][1]] and "rope_theta" not in j and "rope_parameters" in j
            notes.append(f"{name}: {info['num_parameters']:,} parameters (as published)")
    p = lpath(ctx, "info", "rope.json")
    if os.path.exists(p):
        j = json.load(open(p))
        for name, e in j["models"].items():
            cfg = json.load(open(os.path.join(model_dir(ctx, name), "config.json")))
            ref = ref_inv_freq(cfg, 1)
            assert torch.allclose(torch.tensor(e["inv_freq"], dtype=torch.float64), ref, rtol=1e-6, atol=0), name
        br = j["models"]["llama3_rope"]["llama3_branch"]
        assert set(br) == {"unchanged", "smoothed", "scaled"}, br
        seq = j["dynamic"]["sequence_on_one_model"]
        stale = [s["T"] for s in seq if not s["same_as_fresh_model"]]
        notes.append(f"rope: inv_freq of every model == float64 rule (rtol 1e-6); llama3 branches {br}; dynamic on one "
                     f"model object differs from a fresh model at T in {stale} (stateful cache)")
    p = lpath(ctx, "info", "rope_configs.json")
    if os.path.exists(p):
        cases = json.load(open(p))["cases"]
        for name, e in cases.items():
            if "error" not in e:   # the recorded frequencies follow from the recorded standardised parameters
                rp = dict(e["rope_parameters"])
                if rp["rope_type"] == "default":   # LlamaRotaryEmbedding's default init ignores partial_rotary_factor
                    rp.pop("partial_rotary_factor", None)
                ref = ref_inv_freq(dict(e["config"], rope_parameters=rp), 1)
                assert torch.allclose(torch.tensor(e["inv_freq"], dtype=torch.float64), ref, rtol=1e-6, atol=0), name
        notes.append(f"rope_configs: {sum('error' not in e for e in cases.values())} forms' inv_freq == float64 rule on "
                     f"their standardised rope_parameters; {sum('error' in e for e in cases.values())} fail in transformers")
    return notes


# =================================================================================================
# LoRA gradients


@dataclass
class GradCase:
    name: str
    model: str
    config: dict
    description: str


GRAD_CASES = [
    GradCase("llama_qv", "llama_tiny", dict(target_modules=None, r=4, lora_alpha=8),
             "llama_tiny, target_modules=None -> PEFT's default for llama (q_proj, v_proj), r=4 alpha=8"),
    GradCase("llama_all_linear", "llama_tied_linear_rope", dict(target_modules="all-linear", r=2, lora_alpha=4),
             "llama_tied_linear_rope (tied, MHA, linear rope): all-linear (q,k,v,o,gate,up,down; not lm_head), r=2 alpha=4"),
    GradCase("mistral_qkvo", "mistral_tiny", dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], r=4, lora_alpha=8),
             "mistral_tiny (sliding window 5 < T=11): q,k,v,o_proj, r=4 alpha=8"),
    GradCase("qwen2_mlp_bias", "qwen2_tiny",
             dict(target_modules=["q_proj", "gate_proj", "down_proj"], bias="lora_only", r=4, lora_alpha=8),
             "qwen2_tiny: q_proj (has a bias), gate_proj, down_proj; bias='lora_only' -> q_proj.base_layer.bias trains"),
    GradCase("llama_bias_all", "llama_bias", dict(target_modules="all-linear", bias="all", r=2, lora_alpha=4),
             "llama_bias (attention_bias, mlp_bias): all-linear, bias='all' -> every q/k/v/o/gate/up/down bias trains, "
             "r=2 alpha=4"),
    GradCase("qwen2_sliding_qkvo", "qwen2_sliding",
             dict(target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], r=4, lora_alpha=8),
             "qwen2_sliding (layers 1, 2 slide with window 4 < T=11): q,k,v,o_proj, r=4 alpha=8"),
    GradCase("qwen3_all_linear", "qwen3_tiny", dict(target_modules="all-linear", r=2, lora_alpha=4),
             "qwen3_tiny (q_norm/k_norm between q/k_proj and RoPE; layer 1 slides, window 4 < T=11): all-linear, "
             "r=2 alpha=4"),
    GradCase("qwen3_qv", "qwen3_tiny", dict(target_modules=None, r=4, lora_alpha=8),
             "qwen3_tiny, target_modules=None -> PEFT's default for qwen3 (q_proj, v_proj), r=4 alpha=8"),
    GradCase("gemma_all_linear", "gemma_tiny", dict(target_modules="all-linear", r=2, lora_alpha=4),
             "gemma_tiny (1 + weight norms, scaled embeddings, GeGLU): all-linear, r=2 alpha=4"),
]
GRAD_BY_NAME = {c.name: c for c in GRAD_CASES}


def load_base(ctx: Context, name: str):
    """cwd must be tests/fixtures/llama: the base loads as "models/<name>" (what PEFT records)."""
    model_dir(ctx, name)
    m = om.load_tiny(f"models/{name}", dtype=torch.float32)
    assert m.name_or_path == f"models/{name}", m.name_or_path
    return m


def build_peft(ctx: Context, case: GradCase):
    from peft import get_peft_model
    base = load_base(ctx, case.model)
    torch.manual_seed(name_seed("llama", "grads", case.name, "init"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base, make_config(dict(case.config, lora_dropout=0.0, init_lora_weights=False)))
    for n, m in pm.named_modules():
        if isinstance(m, nn.Dropout):
            assert m.p == 0.0, (case.name, n)
    return pm


def write_grads(ctx: Context, case: GradCase) -> None:
    d = lpath(ctx, "grads", case.name)
    fresh_dir(d)
    with in_dir(lpath(ctx)):
        pm = build_peft(ctx, case)
        kmap, extra = trainable_key_map(pm)
        cfg_saved = write_adapter(pm, d, kmap, extra)
        inputs = lora_inputs(case.model, pm.config.vocab_size)
        inputs["labels"] = grad_labels(inputs, torch.Generator().manual_seed(name_seed("llama", "grads", case.name)))
        pm.train()
        pm.zero_grad(set_to_none=True)
        out = pm(**inputs, use_cache=False)
        out.loss.backward()
        pm.eval()
        with torch.no_grad():
            kw = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
            logits_adapter = pm(**kw).logits.float().clone()
            with warnings.catch_warnings(record=True) as wlist:
                warnings.simplefilter("always")
                with pm.disable_adapter():
                    logits_disabled = pm(**kw).logits.float().clone()
    disable_warnings = sorted({str(w.message) for w in wlist})
    params = dict(pm.named_parameters())
    res = dict(inputs)
    res["loss"] = out.loss.detach().float().reshape(())
    res["logits"] = out.logits.detach().float()
    res["logits_adapter"] = logits_adapter
    res["logits_disabled"] = logits_disabled
    stats = {}
    for n, k in kmap.items():
        g = params[n].grad
        assert g is not None, n
        res["grad." + k] = g.detach().clone()
        stats[k] = {"shape": list(g.shape), "norm": float(g.double().norm()), "nonzero": int(torch.count_nonzero(g)),
                    "param": n}
    save_tensors(os.path.join(d, "expected.safetensors"), res, {"model": case.model, "case": case.name})
    write_json(os.path.join(d, "expected.json"), {
        "case": case.name, "model": case.model, "base_dir": f"models/{case.model}",
        "base_dir_relative_to": "tests/fixtures/llama", "description": case.description,
        "config_saved": cfg_saved, "loss": float(res["loss"]), "grads": stats, "saved_not_trainable": extra,
        "disable_adapter_warnings": disable_warnings,
        "num_trainable_tensors": len(kmap), "num_label_tokens": int((inputs["labels"][:, 1:] != -100).sum()),
        "max_abs_diff": {"logits_adapter_vs_train_logits": float((logits_adapter - res["logits"]).abs().max()),
                         "logits_adapter_vs_disabled": float((logits_adapter - logits_disabled).abs().max())},
        "how": "PeftModel.train(); loss = model(input_ids, attention_mask, labels).loss (mean CE over shifted labels "
               "!= -100); loss.backward(); grad.<saved key> = param.grad. logits = that train-mode forward; "
               "logits_adapter = eval() no_grad forward (adapter active); logits_disabled = inside disable_adapter()",
    })


@family("llama_grads", dirs=[f"{ROOT}/grads"])
def fam_grads(ctx: Context) -> list[Item]:
    """PEFT LoRA on the Llama-family tiny models: adapter, loss, logits (adapter on/off), every trainable gradient."""
    return [Item(c.name, (lambda c=c: write_grads(ctx, c)), [f"{ROOT}/grads/{c.name}"]) for c in GRAD_CASES]


def check_grads(ctx: Context) -> list[str]:
    from peft import PeftModel
    notes = []
    for case in GRAD_CASES:
        d = lpath(ctx, "grads", case.name)
        if not os.path.exists(os.path.join(d, "expected.json")):
            continue
        t, meta = load_tensors(os.path.join(d, "expected.safetensors"))
        exp = json.load(open(os.path.join(d, "expected.json")))
        assert meta == {"model": case.model, "case": case.name}
        assert t["input_ids"].shape == (2, 11) and int(t["attention_mask"].sum()) == 22 - 3
        assert int((t["labels"] == -100).sum()) == 3 + 4
        adapter, _ = load_tensors(os.path.join(d, "adapter_model.safetensors"))
        gkeys = sorted(k[5:] for k in t if k.startswith("grad."))
        assert gkeys == sorted(set(adapter) - set(exp["saved_not_trainable"])), (gkeys, sorted(adapter))
        for k in gkeys:
            g = t["grad." + k]
            assert g.shape == adapter[k].shape and torch.isfinite(g).all() and float(g.abs().max()) > 0, k
        m = t["attention_mask"].bool()
        assert float((t["logits_adapter"] - t["logits"]).abs().max()) < 1e-5
        assert float((t["logits_adapter"][m] - t["logits_disabled"][m]).abs().max()) > 1e-2
        inputs = {k: t[k] for k in ("input_ids", "attention_mask", "labels")}
        worst = {}
        with in_dir(lpath(ctx)), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for dt in (torch.float32, torch.float64):
                pm = PeftModel.from_pretrained(load_base(ctx, case.model), f"grads/{case.name}", is_trainable=True).to(dt)
                kmap, extra = trainable_key_map(pm)
                assert sorted(kmap.values()) == gkeys and extra == exp["saved_not_trainable"]
                pm.train()
                out = pm(**inputs, use_cache=False)
                out.loss.backward()
                ref = manual_loss(out.logits, inputs["labels"])
                assert abs(float(ref) - float(t["loss"])) < 1e-5
                params = dict(pm.named_parameters())
                worst[str(dt)[6:]] = max(float((params[n].grad.double() - t["grad." + k].double()).norm()
                                               / t["grad." + k].double().norm()) for n, k in kmap.items())
        # the disabled-adapter logits are the base model's: the float64 re-implementation agrees
        cfg = json.load(open(os.path.join(model_dir(ctx, case.model), "config.json")))
        sd, _ = load_tensors(os.path.join(model_dir(ctx, case.model), "model.safetensors"))
        base_diff = float((ref_forward(cfg, sd, t["input_ids"], t["attention_mask"], None)[m]
                           - t["logits_disabled"][m].double()).abs().max())
        assert base_diff < 2e-4, base_diff
        assert worst["float32"] < 1e-6 and worst["float64"] < 1e-4, worst
        notes.append(f"grads/{case.name}: {len(gkeys)} trainable tensors, all non-zero; loss {float(t['loss']):.4f}; "
                     f"reload f32 rel diff {worst['float32']:.1e}, vs f64 {worst['float64']:.1e}; logits_disabled vs "
                     f"float64 base {base_diff:.1e}")
    return notes


# =================================================================================================
# greedy generation

GEN_MODELS = [  # (entry, model dir relative to tests/fixtures, adapter dir relative to tests/fixtures/llama, merged)
    ("llama_tiny", "llama/models/llama_tiny", None, False),
    ("mistral_tiny", "llama/models/mistral_tiny", None, False),
    ("qwen2_tiny", "llama/models/qwen2_tiny", None, False),
    ("llama_tiny+llama_qv", "llama/models/llama_tiny", "grads/llama_qv", False),
    ("llama_tiny+llama_qv_merged", "llama/models/llama_tiny", "grads/llama_qv", True),
    ("llama_dynamic_rope", "llama/models/llama_dynamic_rope", None, False),
    ("llama_bias", "llama/models/llama_bias", None, False),
    ("qwen2_sliding", "llama/models/qwen2_sliding", None, False),
    ("qwen2_layer_types", "llama/models/qwen2_layer_types", None, False),
    ("qwen3_tiny", "llama/models/qwen3_tiny", None, False),
    ("qwen3_tiny+qwen3_qv", "llama/models/qwen3_tiny", "grads/qwen3_qv", False),
    ("gemma_tiny", "llama/models/gemma_tiny", None, False),
    ("gpt_neo_tiny", "models/gpt_neo_tiny", None, False),
    ("gpt2_tiny", "models/gpt2_tiny", None, False),
]
GEN_LENS = [5, 3]


def gen_prompts(entry: str, V: int) -> dict:
    model = entry.split("+")[0]
    gen = torch.Generator().manual_seed(name_seed("llama", "generate", model))
    rows = [torch.randint(1, V - 1, (n,), generator=gen).tolist() for n in GEN_LENS]   # no V-1 (bos/eos id)
    T = max(GEN_LENS)
    ids = [[GEN_PAD] * (T - len(r)) + r for r in rows]
    mask = [[0] * (T - len(r)) + [1] * len(r) for r in rows]
    return {"rows": rows, "input_ids": ids, "attention_mask": mask}


def gen_model(ctx: Context, entry: str, mdir: str, adapter: str | None, merged: bool):
    if mdir.startswith(ROOT + "/"):
        model_dir(ctx, mdir.split("/")[-1])
    elif not os.path.isfile(ctx.path(mdir, "config.json")):
        ctx.log(f"  ({mdir} missing: writing it first)")
        om.save_tiny(om.TINY_BY_NAME[mdir.split("/")[-1]], ctx.path(mdir))
    m = om.load_tiny(ctx.path(mdir), dtype=torch.float32)
    # No EOS stop: GenerationConfig(eos_token_id=None) passed to generate() does NOT override the model's
    # generation_config (None counts as unset), so clear it on the model itself.
    m.generation_config.eos_token_id = None
    if adapter is None:
        return m
    from peft import PeftModel
    if not os.path.exists(lpath(ctx, adapter, "adapter_config.json")):
        write_grads(ctx, GRAD_BY_NAME[adapter.split("/")[-1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(m, lpath(ctx, adapter)).eval()
        return pm.merge_and_unload() if merged else pm


@torch.no_grad()
def greedy(model, ids: torch.Tensor, mask: torch.Tensor, new: int, max_new: int | None = None) -> list:
    from transformers import GenerationConfig
    gc = GenerationConfig(max_new_tokens=max_new or new, do_sample=False, num_beams=1, eos_token_id=None,
                          pad_token_id=GEN_PAD, bos_token_id=None)
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc)
    return out.tolist()


@torch.no_grad()
def naive_greedy(model, ids: torch.Tensor, mask: torch.Tensor, new: int) -> tuple[list, float]:
    """Full re-computation every step (no cache), position_ids = cumsum(mask) - 1 with pads at 1; also returns the
    smallest top-1 margin seen (how safe the argmax is)."""
    margin = float("inf")
    for _ in range(new):
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        lg = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
        top = lg.topk(2, -1).values
        margin = min(margin, float((top[:, 0] - top[:, 1]).min()))
        nxt = lg.argmax(-1, keepdim=True)
        ids = torch.cat([ids, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids.tolist(), margin


def gen_entry(ctx: Context, entry: str, mdir: str, adapter: str | None, merged: bool) -> dict:
    V = gen_model(ctx, entry, mdir, adapter, merged).config.vocab_size
    p = gen_prompts(entry, V)
    new = 20 if entry == "llama_dynamic_rope" else GEN_NEW
    ids = torch.tensor(p["input_ids"])
    mask = torch.tensor(p["attention_mask"])
    res = {"model_dir": mdir, "adapter_dir": f"llama/{adapter}" if adapter else None, "merged": merged,
           "max_new_tokens": new, "batch": {"input_ids": p["input_ids"], "attention_mask": p["attention_mask"]}}
    res["batch"]["output_ids"] = greedy(gen_model(ctx, entry, mdir, adapter, merged), ids, mask, new)
    naive, margin = naive_greedy(gen_model(ctx, entry, mdir, adapter, merged), ids, mask, new)
    res["batch"]["no_cache_output_ids"] = naive
    res["batch"]["no_cache_equal"] = naive == res["batch"]["output_ids"]
    res["batch"]["min_top1_margin"] = margin
    singles = []
    for r in p["rows"]:
        sid = torch.tensor([r])
        smask = torch.ones_like(sid)
        out = greedy(gen_model(ctx, entry, mdir, adapter, merged), sid, smask, new)
        singles.append({"input_ids": [r], "attention_mask": smask.tolist(), "output_ids": out})
    res["single"] = singles
    # a left-padded row generates what the same prompt generates alone
    res["batch_rows_equal_single"] = [res["batch"]["output_ids"][b][len(p["input_ids"][b]) - len(r):] == singles[b]["output_ids"][0]
                                      for b, r in enumerate(p["rows"])]
    return res


def write_generate(ctx: Context) -> None:
    out = {"settings": {
        "call": "model.generate(input_ids, attention_mask, generation_config=GenerationConfig(max_new_tokens=12, "
                "do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0, bos_token_id=None)) on a freshly "
                "loaded model (from_pretrained dtype=float32, attn_implementation='eager', eval) whose "
                "model.generation_config.eos_token_id was set to None first (so exactly max_new_tokens come out; the "
                "eos_token_id=None of the passed GenerationConfig alone does not override the model's eos 96: None "
                "counts as unset); PeftModel.from_pretrained for adapters, merge_and_unload() for merged",
        "prompts": "ids drawn from [1, V-1): never the pad id 0 nor the bos/eos id V-1 = 96",
        "output_ids": "the full sequences: the (padded) prompt followed by max_new_tokens generated tokens",
        "batch": "2 prompts of lengths 5 and 3, left-padded with id 0 to length 5; single: each prompt alone (B=1)",
        "positions": "generate() passes position_ids = cumsum(attention_mask) - 1 with pads set to 1 (prefill), then "
                     "the next position per step; the KV cache is DynamicCache (sliding layers keep window-1 keys)",
        "no_cache_output_ids": "greedy by full re-computation every step (use_cache=False, same position rule); "
                               "min_top1_margin = smallest logit gap between the top-2 tokens over those steps",
        "llama_dynamic_rope": "max_new_tokens=20 (total length 25 > max_position_embeddings 16): the cached run and "
                              "the no-cache run use different RoPE frequencies for early keys (see info/rope.json)",
    }, "entries": {}}
    for entry, mdir, adapter, merged in GEN_MODELS:
        out["entries"][entry] = gen_entry(ctx, entry, mdir, adapter, merged)
    write_json(lpath(ctx, "generate.json"), out)


@family("llama_generate", dirs=[])
def fam_generate(ctx: Context) -> list[Item]:
    """Greedy generate() on Llama / Mistral / Qwen2 / LoRA (+merged) / GPT-Neo / GPT-2 tiny models."""
    return [Item("llama_generate", lambda: write_generate(ctx), [f"{ROOT}/generate.json"])]


def check_generate(ctx: Context) -> list[str]:
    p = lpath(ctx, "generate.json")
    if not os.path.exists(p):
        return []
    j = json.load(open(p))
    notes = []
    for entry, mdir, adapter, merged in GEN_MODELS:
        e = j["entries"][entry]
        b = e["batch"]
        n = e["max_new_tokens"]
        assert all(len(o) == len(i) + n for o, i in zip(b["output_ids"], b["input_ids"]))
        assert all(o[:len(i)] == i for o, i in zip(b["output_ids"], b["input_ids"]))
        for s in e["single"]:
            assert len(s["output_ids"][0]) == len(s["input_ids"][0]) + n
        # regenerate: identical
        ids, mask = torch.tensor(b["input_ids"]), torch.tensor(b["attention_mask"])
        again = greedy(gen_model(ctx, entry, mdir, adapter, merged), ids, mask, n)
        assert again == b["output_ids"], entry
        notes.append(f"{entry}: batch no-cache equal {b['no_cache_equal']} (min top-1 margin {b['min_top1_margin']:.3f}); "
                     f"rows equal alone {e['batch_rows_equal_single']}; row0 new {b['output_ids'][0][5:]}")
    a, m = j["entries"]["llama_tiny+llama_qv"], j["entries"]["llama_tiny+llama_qv_merged"]
    notes.append(f"adapter vs merged batch outputs equal: {a['batch']['output_ids'] == m['batch']['output_ids']}; "
                 f"adapter vs base differ: {a['batch']['output_ids'] != j['entries']['llama_tiny']['batch']['output_ids']}")
    return notes


# =================================================================================================


def check_all(ctx: Context, which: str) -> list[str]:
    notes = {"llama_models": check_models, "llama_forward": check_forward, "llama_info": check_info,
             "llama_grads": check_grads, "llama_generate": check_generate}[which](ctx)
    if which == "llama_generate" or which == "llama_grads":
        size = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(lpath(ctx)) for f in fs)
        notes.append(f"tests/fixtures/llama total {size:,} bytes")
        assert size < 2_500_000, size
    return notes


CHECKERS = {k: (lambda ctx, k=k: check_all(ctx, k))
            for k in ("llama_models", "llama_forward", "llama_info", "llama_grads", "llama_generate")}
