"""Tiny random models and real-model configs used by the cpeft reference oracle.

Every tiny model is a function of its spec alone (fixed seed), so the saved checkpoints are the same
on every run. Weights are drawn with a large initializer_range (so attention is far from uniform and
logits have real spread), then every LayerNorm weight/bias and every Linear/Conv1D bias is moved away
from its init value (1 / 0) so that a wrong LayerNorm or a dropped bias shows up in the outputs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from oracle_common import fresh_dir, seed


@dataclass
class TinySpec:
    name: str
    arch: str                       # "gpt_neo" | "gpt2"
    config: dict
    seed: int
    save_dtype: torch.dtype = torch.float32
    base: str | None = None         # same weights as this spec (then seed/config are taken from it)
    max_shard_size: str | None = None
    long_case: bool = False         # forward family adds a "long" case (T = max positions)
    description: str = ""
    attn_gain: float = 1.0          # attention scores x this (q and k weights x sqrt(gain)) so that
                                    # attention is peaked, not near-uniform, after the 1/sqrt(hd) scaling


_DROP0_NEO = dict(embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0)
_DROP0_GPT2 = dict(embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)

GPT_NEO_TINY = dict(
    hidden_size=32, num_heads=4, num_layers=3,
    attention_types=[[["global", "local"], 1], [["local"], 1]],
    window_size=5, vocab_size=97, max_position_embeddings=64, intermediate_size=None,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, initializer_range=0.2,
    bos_token_id=96, eos_token_id=96, **_DROP0_NEO,
)
GPT_NEO_ODD = dict(
    hidden_size=36, num_heads=3, num_layers=2,
    attention_types=[[["local", "global"], 1]],
    window_size=3, vocab_size=101, max_position_embeddings=40, intermediate_size=50,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, initializer_range=0.2,
    bos_token_id=100, eos_token_id=100, **_DROP0_NEO,
)
GPT2_TINY = dict(
    n_embd=32, n_head=4, n_layer=2, vocab_size=97, n_positions=64, n_inner=None,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, initializer_range=0.2,
    bos_token_id=96, eos_token_id=96, **_DROP0_GPT2,
)
GPT2_ODD = dict(
    n_embd=30, n_head=5, n_layer=3, n_inner=44, vocab_size=89, n_positions=40,
    scale_attn_by_inverse_layer_idx=True, activation_function="gelu_new",
    layer_norm_epsilon=1e-5, initializer_range=0.2,
    bos_token_id=88, eos_token_id=88, **_DROP0_GPT2,
)

TINY: list[TinySpec] = [
    TinySpec("gpt_neo_tiny", "gpt_neo", GPT_NEO_TINY, seed=1001,
             description="GPT-Neo H=32 nH=4 L=3 (global,local,local) window 5, V=97"),
    TinySpec("gpt_neo_odd", "gpt_neo", GPT_NEO_ODD, seed=1002,
             description="GPT-Neo H=36 nH=3 L=2 (local,global) window 3, I=50, V=101, maxpos 40"),
    TinySpec("gpt2_tiny", "gpt2", GPT2_TINY, seed=2001, long_case=True, attn_gain=4.0,
             description="GPT-2 H=32 nH=4 L=2 V=97 npos 64, tied head"),
    TinySpec("gpt2_odd", "gpt2", GPT2_ODD, seed=2002, attn_gain=8.0,
             description="GPT-2 H=30 nH=5 L=3 I=44 V=89 npos 40, scale_attn_by_inverse_layer_idx"),
    TinySpec("gpt2_untied", "gpt2", dict(GPT2_TINY, tie_word_embeddings=False), seed=2003, attn_gain=4.0,
             description="GPT-2 like gpt2_tiny but tie_word_embeddings=False (own lm_head.weight)"),
    TinySpec("gpt2_tiny_bf16", "gpt2", GPT2_TINY, seed=2001, base="gpt2_tiny", save_dtype=torch.bfloat16,
             description="gpt2_tiny weights saved in bf16; expected outputs = bf16 weights upcast, f32 compute"),
    TinySpec("gpt_neo_tiny_f16", "gpt_neo", GPT_NEO_TINY, seed=1001, base="gpt_neo_tiny",
             save_dtype=torch.float16,
             description="gpt_neo_tiny weights saved in f16; expected outputs = f16 weights upcast, f32 compute"),
    TinySpec("gpt_neo_tiny_sharded", "gpt_neo", GPT_NEO_TINY, seed=1001, base="gpt_neo_tiny",
             max_shard_size="64KB",
             description="gpt_neo_tiny saved in 4 safetensors shards + model.safetensors.index.json"),
]
TINY_BY_NAME = {s.name: s for s in TINY}


def config_for(arch: str, cfg: dict):
    from transformers import GPT2Config, GPTNeoConfig
    cls = {"gpt_neo": GPTNeoConfig, "gpt2": GPT2Config}[arch]
    c = cls(**cfg)
    c.architectures = [{"gpt_neo": "GPTNeoForCausalLM", "gpt2": "GPT2LMHeadModel"}[arch]]
    return c


def model_class(arch: str):
    from transformers import GPT2LMHeadModel, GPTNeoForCausalLM
    return {"gpt_neo": GPTNeoForCausalLM, "gpt2": GPT2LMHeadModel}[arch]


@torch.no_grad()
def perturb(model: nn.Module, gen: torch.Generator) -> None:
    """Move LayerNorm weights/biases and all biases away from their init values, deterministically."""
    from transformers.pytorch_utils import Conv1D
    for name, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
        if isinstance(mod, nn.LayerNorm):
            mod.weight.add_(0.25 * torch.randn(mod.weight.shape, generator=gen))
            mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
        elif isinstance(mod, (nn.Linear, Conv1D)) and getattr(mod, "bias", None) is not None:
            mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))


@torch.no_grad()
def sharpen_attention(model: nn.Module, arch: str, gain: float) -> None:
    if gain == 1.0:
        return
    g = gain ** 0.5
    for name, mod in model.named_modules():
        if arch == "gpt_neo" and name.endswith("attn.attention"):
            mod.q_proj.weight.mul_(g)
            mod.k_proj.weight.mul_(g)
        elif arch == "gpt2" and name.endswith(".attn") and hasattr(mod, "c_attn"):
            H = mod.embed_dim            # Conv1D weight [in, 3H]: columns Q | K | V
            mod.c_attn.weight[:, : 2 * H].mul_(g)
            mod.c_attn.bias[: 2 * H].mul_(g)


def build_tiny(spec: TinySpec, attn_implementation: str = "eager", config_overrides: dict | None = None):
    """The f32 model of a spec (for derived specs: of its base), in eval mode."""
    if spec.base is not None:
        spec = TINY_BY_NAME[spec.base]
    cfg = dict(spec.config, **(config_overrides or {}))
    gen = seed(spec.seed)
    config = config_for(spec.arch, cfg)
    config._attn_implementation = attn_implementation
    model = model_class(spec.arch)(config)
    perturb(model, gen)
    sharpen_attention(model, spec.arch, spec.attn_gain)
    return model.eval()


def save_tiny(spec: TinySpec, out_dir: str) -> None:
    model = build_tiny(spec)
    if spec.save_dtype != torch.float32:
        model = model.to(spec.save_dtype)
    fresh_dir(out_dir)
    kw = {}
    if spec.max_shard_size:
        kw["max_shard_size"] = spec.max_shard_size
    model.save_pretrained(out_dir, **kw)


def load_tiny(model_dir: str, dtype=torch.float32):
    """Load a saved tiny checkpoint as the C code does: upcast to f32, eager attention, eval."""
    from transformers import AutoModelForCausalLM
    m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager")
    return m.eval()


# ------------------------------------------------------------------------------------------------
# real models: configs with their published values (no hub access); built on the meta device.

REAL_CONFIGS = {
    "gpt-neo-1.3B": ("gpt_neo", "EleutherAI/gpt-neo-1.3B", dict(
        activation_function="gelu_new", attention_dropout=0.0, embed_dropout=0.0, resid_dropout=0.0,
        attention_types=[[["global", "local"], 12]], bos_token_id=50256, eos_token_id=50256,
        hidden_size=2048, initializer_range=0.02, intermediate_size=None, layer_norm_epsilon=1e-5,
        max_position_embeddings=2048, num_heads=16, num_layers=24, vocab_size=50257, window_size=256,
        use_cache=True, tokenizer_class="GPT2Tokenizer",
        summary_activation=None, summary_first_dropout=0.1, summary_proj_to_labels=True,
        summary_type="cls_index", summary_use_proj=True,
    )),
    "gpt-neo-125M": ("gpt_neo", "EleutherAI/gpt-neo-125M", dict(
        activation_function="gelu_new", attention_dropout=0.0, embed_dropout=0.0, resid_dropout=0.0,
        attention_types=[[["global", "local"], 6]], bos_token_id=50256, eos_token_id=50256,
        hidden_size=768, initializer_range=0.02, intermediate_size=None, layer_norm_epsilon=1e-5,
        max_position_embeddings=2048, num_heads=12, num_layers=12, vocab_size=50257, window_size=256,
        use_cache=True, tokenizer_class="GPT2Tokenizer",
        summary_activation=None, summary_first_dropout=0.1, summary_proj_to_labels=True,
        summary_type="cls_index", summary_use_proj=True,
    )),
    "gpt2": ("gpt2", "openai-community/gpt2", dict(
        activation_function="gelu_new", attn_pdrop=0.1, bos_token_id=50256, embd_pdrop=0.1,
        eos_token_id=50256, initializer_range=0.02, layer_norm_epsilon=1e-5, n_ctx=1024, n_embd=768,
        n_head=12, n_layer=12, n_positions=1024, resid_pdrop=0.1, summary_activation=None,
        summary_first_dropout=0.1, summary_proj_to_labels=True, summary_type="cls_index",
        summary_use_proj=True, task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
        vocab_size=50257,
    )),
    "gpt2-medium": ("gpt2", "openai-community/gpt2-medium", dict(
        activation_function="gelu_new", attn_pdrop=0.1, bos_token_id=50256, embd_pdrop=0.1,
        eos_token_id=50256, initializer_range=0.02, layer_norm_epsilon=1e-5, n_ctx=1024, n_embd=1024,
        n_head=16, n_layer=24, n_positions=1024, n_special=0, predict_special_tokens=True,
        resid_pdrop=0.1, summary_activation=None, summary_first_dropout=0.1,
        summary_proj_to_labels=True, summary_type="cls_index", summary_use_proj=True,
        task_specific_params={"text-generation": {"do_sample": True, "max_length": 50}},
        vocab_size=50257,
    )),
}

# Published parameter counts we assert against (tied lm_head counted once).
REAL_EXPECTED_PARAMS = {"gpt-neo-1.3B": 1_315_575_808, "gpt2": 124_439_808}


def build_meta(short: str):
    arch, hub_id, cfg = REAL_CONFIGS[short]
    config = config_for(arch, cfg)
    config._attn_implementation = "eager"
    with torch.device("meta"):
        model = model_class(arch)(config)
    return config, model.eval()


# ------------------------------------------------------------------------------------------------
# inputs


def _rows(gen: torch.Generator, B: int, T: int, V: int) -> torch.Tensor:
    # Real tokens are drawn from [1, V): id 0 is the pad id, so pad positions are obvious in a dump.
    return torch.randint(1, V, (B, T), generator=gen, dtype=torch.int64)


def make_case(case: str, V: int, T: int, gen: torch.Generator) -> dict:
    """Inputs of one forward case. Returns dict with input_ids, attention_mask, labels, [position_ids]."""
    if case == "plain":
        B, lens = 2, [T, T]
    elif case == "long":
        B, lens = 2, [T, T]
    elif case in ("right_pad", "left_pad", "left_pad_pos"):
        B, lens = 3, [T, T - 4, T - 7]
    else:
        raise ValueError(case)
    toks = _rows(gen, B, T, V)
    ids = torch.zeros(B, T, dtype=torch.int64)
    mask = torch.zeros(B, T, dtype=torch.int64)
    for b, n in enumerate(lens):
        if case == "right_pad" or case in ("plain", "long"):
            ids[b, :n] = toks[b, :n]
            mask[b, :n] = 1
        else:
            ids[b, T - n:] = toks[b, :n]
            mask[b, T - n:] = 1
    labels = ids.clone()
    labels[mask == 0] = -100
    # A few extra ignored labels at real positions (never the first real token of a row: that one is
    # never a target anyway, since labels are shifted inside the model).
    for b, n in enumerate(lens):
        real = torch.nonzero(mask[b]).flatten()
        pick = torch.randperm(n - 1, generator=gen)[:2] + 1
        labels[b, real[pick]] = -100
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if case == "left_pad_pos":
        pos = mask.cumsum(-1) - 1
        pos = pos.masked_fill(mask == 0, 1)
        out["position_ids"] = pos
    return out
