#!/usr/bin/env python3
"""cpeft reference oracle: regenerate tests/fixtures with the real transformers / peft stack.

    tests/reference/.venv/bin/python tests/reference/generate.py --out tests/fixtures \
        [--cpeft build/cpeft] [--only PATTERN ...] [--list] [--no-check]

Fixture families (run in this order; see tests/reference/README.md for the file formats):

    models    tests/fixtures/models/<name>/            tiny random checkpoints (save_pretrained)
    forward   tests/fixtures/forward/<model>.<case>.safetensors   logits, hidden states, loss
    info      tests/fixtures/info/<name>.json          parameter counts, dtypes, str(model)
    configs   tests/fixtures/configs/<short>/config.json   real-model configs (published values)
    eval      tests/fixtures/eval/                     `cpeft eval` loss over id and text streams
    lora      tests/fixtures/lora/<case>/              PEFT LoRA adapters + logits, counts, repr, errors (oracle_lora.py)
    train     tests/fixtures/train/                    gradients, AdamW steps, lr schedules, training data (oracle_train.py)
    llama_*   tests/fixtures/llama/                    Llama/Mistral/Qwen2: models, forward, info, grads, generate (oracle_llama.py)

--only takes family names, item names or "family:item", shell globs allowed, e.g.
    --only forward            --only 'gpt2_*'          --only 'forward:gpt_neo_tiny.*'
A family run without --only first clears the directories it owns, so removed items leave no files.

Adding a family (adapters, gradients, generation, ...): write `@family("name", dirs=[...])` over a
function `fn(ctx) -> list[Item]` (in this file or in a module imported below) and, optionally, a
checker `@checker("name")` that reads the files back. Nothing else needs to change.

Everything is deterministic: fixed seeds (derived from names with crc32, never Python's hash()),
one torch thread, sorted JSON keys, our own safetensors writer with sorted metadata. Rerunning
produces bit-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import zlib

sys.dont_write_bytecode = True   # no __pycache__ next to the oracle modules
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from oracle_common import (  # noqa: E402
    FAMILIES, Context, Item, dir_size, family, fresh_dir, load_tensors, save_tensors, selected,
    setup_torch, write_json,
)
import oracle_models as om  # noqa: E402

CHECKERS: dict[str, callable] = {}


def checker(name: str):
    def deco(fn):
        CHECKERS[name] = fn
        return fn
    return deco


def name_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


def versions() -> dict:
    import peft
    import safetensors
    import transformers
    return {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__,
            "peft": peft.__version__, "safetensors": safetensors.__version__}


# =================================================================================================
# family: models


@family("models", dirs=["models"])
def fam_models(ctx: Context) -> list[Item]:
    """Tiny random checkpoints: config.json + model.safetensors (or shards + index)."""
    items = []
    for spec in om.TINY:
        d = ctx.path("models", spec.name)
        items.append(Item(spec.name, (lambda spec=spec, d=d: om.save_tiny(spec, d)), [f"models/{spec.name}"]))
    return items


def model_dir(ctx: Context, name: str) -> str:
    """The saved checkpoint of a tiny model; written first if a partial (--only) run lacks it."""
    d = ctx.path("models", name)
    if not os.path.isfile(os.path.join(d, "config.json")):
        ctx.log(f"  (models/{name} missing: writing it first)")
        om.save_tiny(om.TINY_BY_NAME[name], d)
    return d


@checker("models")
def check_models(ctx: Context) -> list[str]:
    notes = []
    for spec in om.TINY:
        d = ctx.path("models", spec.name)
        if not os.path.isdir(d):
            continue
        files = sorted(os.listdir(d))
        if spec.max_shard_size:
            shards = [f for f in files if f.startswith("model-") and f.endswith(".safetensors")]
            assert len(shards) >= 3 and "model.safetensors.index.json" in files, files
            notes.append(f"{spec.name}: {len(shards)} shards: {', '.join(shards)}")
        else:
            assert "model.safetensors" in files, files
        # every saved tensor has the declared dtype; the checkpoint reloads to the f32 base weights
        sd = {}
        for f in files:
            if f.endswith(".safetensors"):
                t, meta = load_tensors(os.path.join(d, f))
                sd.update(t)
        for k, v in sd.items():
            assert v.dtype == spec.save_dtype, (spec.name, k, v.dtype)
        base = om.build_tiny(spec).state_dict()
        for k, v in sd.items():
            ref = base[k].to(spec.save_dtype)
            assert torch.equal(v, ref), (spec.name, k)
        tied = "lm_head.weight" not in sd
        assert tied == spec.config.get("tie_word_embeddings", True), (spec.name, tied)
    return notes


# =================================================================================================
# family: forward

FORWARD_T = 13


def forward_cases(spec: om.TinySpec) -> list[str]:
    base = om.TINY_BY_NAME[spec.base] if spec.base else spec
    cases = ["plain", "right_pad", "left_pad", "left_pad_pos"]
    if base.long_case:
        cases.append("long")
    return cases


CASE_DESCRIPTIONS = {
    "plain": "B=2, T=13, no padding, attention_mask all ones, default position_ids",
    "right_pad": "B=3, T=13, row lengths 13/9/6 right-padded with id 0, default position_ids (arange)",
    "left_pad": "B=3, T=13, row lengths 13/9/6 left-padded with id 0, default position_ids (arange, ignoring padding)",
    "left_pad_pos": "B=3, T=13, row lengths 13/9/6 left-padded with id 0, explicit position_ids = cumsum(mask)-1, pads set to 1 (as generate() does)",
    "long": "B=2, T=n_positions, no padding",
}


def case_inputs(spec: om.TinySpec, case: str) -> dict:
    base = om.TINY_BY_NAME[spec.base] if spec.base else spec
    cfg = om.config_for(base.arch, base.config)
    T = cfg.max_position_embeddings if case == "long" else FORWARD_T
    # Inputs depend on the base model and the case only: derived checkpoints (bf16, f16, sharded) get
    # exactly the inputs of their f32 original. The three padded cases share their token rows, so
    # right_pad and left_pad_pos must agree on every real token.
    group = "padded" if case in ("right_pad", "left_pad", "left_pad_pos") else case
    gen = torch.Generator().manual_seed(name_seed("forward", base.name, group))
    return om.make_case(case, cfg.vocab_size, T, gen)


@torch.no_grad()
def run_forward(model, inputs: dict) -> dict:
    kw = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"],
              output_hidden_states=True, use_cache=False, return_dict=True)
    if "position_ids" in inputs:
        kw["position_ids"] = inputs["position_ids"]
    out = model(**kw)
    return {"logits": out.logits.float(), "hidden_states": torch.stack(out.hidden_states).float(),
            "loss": out.loss.float().reshape(())}


def load_for_forward(ctx: Context, name: str):
    key = ("f32model", name)
    if key not in ctx.cache:
        ctx.cache[key] = om.load_tiny(model_dir(ctx, name), dtype=torch.float32)
    return ctx.cache[key]


def write_forward(ctx: Context, spec: om.TinySpec, case: str) -> None:
    model = load_for_forward(ctx, spec.name)
    inputs = case_inputs(spec, case)
    res = run_forward(model, inputs)
    tensors = dict(inputs)
    tensors.update(res)
    desc = CASE_DESCRIPTIONS[case]
    if spec.save_dtype != torch.float32:
        desc += f"; weights stored {str(spec.save_dtype).replace('torch.', '')}, loaded with dtype=float32"
    save_tensors(ctx.path("forward", f"{spec.name}.{case}.safetensors"), tensors,
                 {"model": spec.name, "case": case, "description": desc})


@family("forward", dirs=["forward"])
def fam_forward(ctx: Context) -> list[Item]:
    """Logits, hidden states and causal-LM loss of every tiny model on padded / unpadded batches."""
    items = []
    for spec in om.TINY:
        for case in forward_cases(spec):
            items.append(Item(f"{spec.name}.{case}", (lambda s=spec, c=case: write_forward(ctx, s, c)),
                              [f"forward/{spec.name}.{case}.safetensors"]))
    return items


def manual_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    V = logits.shape[-1]
    lg = logits[:, :-1].reshape(-1, V).double()
    tg = labels[:, 1:].reshape(-1)
    keep = tg != -100
    lse = torch.logsumexp(lg[keep], -1)
    picked = lg[keep].gather(1, tg[keep, None]).squeeze(1)
    return (lse - picked).mean()


@checker("forward")
def check_forward(ctx: Context) -> list[str]:
    notes = []
    fdir = ctx.path("forward")
    if not os.path.isdir(fdir):
        return notes
    worst_loss = 0.0
    for spec in om.TINY:
        base = om.TINY_BY_NAME[spec.base] if spec.base else spec
        cfg = om.config_for(base.arch, base.config)
        L, H, V = cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size
        got = {}
        for case in forward_cases(spec):
            p = os.path.join(fdir, f"{spec.name}.{case}.safetensors")
            if not os.path.exists(p):
                continue
            t, meta = load_tensors(p)
            got[case] = t
            assert meta["model"] == spec.name and meta["case"] == case and meta["description"]
            B, T = t["input_ids"].shape
            assert t["attention_mask"].shape == (B, T) and t["labels"].shape == (B, T)
            assert ("position_ids" in t) == (case == "left_pad_pos")
            assert t["logits"].shape == (B, T, V) and t["logits"].dtype == torch.float32
            assert t["hidden_states"].shape == (L + 1, B, T, H), t["hidden_states"].shape
            assert t["loss"].shape == () and t["loss"].dtype == torch.float32
            for k in ("input_ids", "attention_mask", "labels"):
                assert t[k].dtype == torch.int64
            assert torch.all(t["labels"][t["attention_mask"] == 0] == -100)
            ml = manual_loss(t["logits"], t["labels"])
            d = abs(ml.item() - t["loss"].item())
            worst_loss = max(worst_loss, d)
            assert d < 1e-5, (spec.name, case, ml.item(), t["loss"].item())
            # the last hidden state is after ln_f: logits = hs[-1] @ lm_head^T
            model = load_for_forward(ctx, spec.name)
            lg = t["hidden_states"][-1] @ model.lm_head.weight.T
            assert torch.allclose(lg, t["logits"], atol=1e-5, rtol=1e-5), (spec.name, case)
        # left padding with generate()-style positions gives the same real-token outputs as right padding
        if "right_pad" in got and "left_pad_pos" in got:
            r, l = got["right_pad"], got["left_pad_pos"]
            diff = 0.0
            for b in range(r["input_ids"].shape[0]):
                n = int(r["attention_mask"][b].sum())
                diff = max(diff, (r["logits"][b, :n] - l["logits"][b, -n:]).abs().max().item())
            assert diff < 1e-4, (spec.name, diff)
            notes.append(f"{spec.name}: right_pad vs left_pad_pos real-token logits max|diff| = {diff:.2e}")
        if "plain" in got:
            lg = got["plain"]["logits"]
            notes.append(f"{spec.name}: plain logits std {lg.std().item():.3f}, loss {got['plain']['loss'].item():.4f}")
    notes.append(f"all forward fixtures: |model loss - manual float64 CE| <= {worst_loss:.2e}")

    # Derived checkpoints: sharded == original bit for bit; bf16/f16 differ from f32 but only a little.
    def logits_of(n, c):
        p = os.path.join(fdir, f"{n}.{c}.safetensors")
        return load_tensors(p)[0]["logits"] if os.path.exists(p) else None
    a, b = logits_of("gpt_neo_tiny", "plain"), logits_of("gpt_neo_tiny_sharded", "plain")
    if a is not None and b is not None:
        assert torch.equal(a, b)
        notes.append("gpt_neo_tiny_sharded logits == gpt_neo_tiny logits (bit-identical)")
    for low, base in (("gpt2_tiny_bf16", "gpt2_tiny"), ("gpt_neo_tiny_f16", "gpt_neo_tiny")):
        a, b = logits_of(base, "plain"), logits_of(low, "plain")
        if a is not None and b is not None:
            notes.append(f"{low} vs {base}: plain logits max|diff| = {(a - b).abs().max().item():.3e} (weight rounding)")

    # The local window matters: the same gpt_neo_tiny weights with every layer global give other logits.
    if "gpt_neo_tiny" in [s.name for s in om.TINY] and logits_of("gpt_neo_tiny", "plain") is not None:
        spec = om.TINY_BY_NAME["gpt_neo_tiny"]
        glob = om.build_tiny(spec, config_overrides={"attention_types": [[["global"], 3]]})
        glob.load_state_dict(load_for_forward(ctx, "gpt_neo_tiny").state_dict())
        inputs = case_inputs(spec, "plain")
        res = run_forward(glob, inputs)
        ref = logits_of("gpt_neo_tiny", "plain")
        T = ref.shape[1]
        W = spec.config["window_size"]
        early = (res["logits"][:, :W] - ref[:, :W]).abs().max().item()
        late = (res["logits"][:, W:] - ref[:, W:]).abs().max().item()
        assert early < 1e-5 and late > 1e-2, (early, late)
        notes.append(f"gpt_neo_tiny all-global variant: logits at t<{W} equal (max|diff| {early:.1e}), "
                     f"at t>={W} differ (max|diff| {late:.3f}) -> the window matters")

    # scale_attn_by_inverse_layer_idx matters for gpt2_odd (layers 1 and 2 are scaled by 1/2, 1/3).
    if logits_of("gpt2_odd", "plain") is not None:
        spec = om.TINY_BY_NAME["gpt2_odd"]
        plain = om.build_tiny(spec, config_overrides={"scale_attn_by_inverse_layer_idx": False})
        plain.load_state_dict(load_for_forward(ctx, "gpt2_odd").state_dict())
        d = (run_forward(plain, case_inputs(spec, "plain"))["logits"] - logits_of("gpt2_odd", "plain")).abs().max().item()
        assert d > 1e-2, d
        notes.append(f"gpt2_odd without scale_attn_by_inverse_layer_idx: logits max|diff| {d:.3f} -> the flag matters")
    return notes


# =================================================================================================
# family: info


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


def write_info_tiny(ctx: Context, spec: om.TinySpec) -> None:
    from transformers import AutoModelForCausalLM
    # Default from_pretrained loading (transformers 5 default dtype="auto": checkpoint dtype kept).
    m = AutoModelForCausalLM.from_pretrained(model_dir(ctx, spec.name), attn_implementation="eager").eval()
    info = model_info(m, m.config.model_type)
    info["source"] = f"tests/fixtures/models/{spec.name} loaded with from_pretrained (default dtype='auto')"
    write_json(ctx.path("info", f"{spec.name}.json"), info)


def write_info_real(ctx: Context, short: str) -> None:
    config, m = om.build_meta(short)
    info = model_info(m, config.model_type)
    info["source"] = f"{om.REAL_CONFIGS[short][1]} config (published values), built on the meta device"
    if short in om.REAL_EXPECTED_PARAMS:
        assert info["num_parameters"] == om.REAL_EXPECTED_PARAMS[short], (short, info["num_parameters"])
    write_json(ctx.path("info", f"{short}.json"), info)


@family("info", dirs=["info"])
def fam_info(ctx: Context) -> list[Item]:
    """Parameter counts, per-dtype counts and str(model) for tiny and real-size models."""
    items = [Item(s.name, (lambda s=s: write_info_tiny(ctx, s)), [f"info/{s.name}.json"]) for s in om.TINY]
    items += [Item(k, (lambda k=k: write_info_real(ctx, k)), [f"info/{k}.json"]) for k in om.REAL_CONFIGS]
    return items


@checker("info")
def check_info(ctx: Context) -> list[str]:
    notes = []
    for name in [s.name for s in om.TINY] + list(om.REAL_CONFIGS):
        p = ctx.path("info", f"{name}.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            info = json.load(f)
        assert sum(info["dtypes"].values()) == info["num_parameters"]
        assert sum(int(torch.tensor(s).prod()) if s else 1 for _, s, _ in info["parameters"]) == info["num_parameters"]
        if name in om.REAL_CONFIGS:
            notes.append(f"{name}: {info['num_parameters']:,} parameters")
    return notes


# =================================================================================================
# family: configs


def write_config(ctx: Context, short: str) -> None:
    config, _ = om.build_meta(short)
    d = ctx.path("configs", short)
    fresh_dir(d)
    config.save_pretrained(d)
    # transformers writes dtype only when known; the hub files say float32 for these checkpoints.


@family("configs", dirs=["configs"])
def fam_configs(ctx: Context) -> list[Item]:
    """config.json of real checkpoints, constructed from their published values (no hub access)."""
    return [Item(k, (lambda k=k: write_config(ctx, k)), [f"configs/{k}/config.json"]) for k in om.REAL_CONFIGS]


@checker("configs")
def check_configs(ctx: Context) -> list[str]:
    from transformers import AutoConfig
    for short, (arch, _, cfg) in om.REAL_CONFIGS.items():
        p = ctx.path("configs", short, "config.json")
        if not os.path.exists(p):
            continue
        with open(p) as f:
            j = json.load(f)
        assert j["model_type"] == arch and j["architectures"] == [
            {"gpt_neo": "GPTNeoForCausalLM", "gpt2": "GPT2LMHeadModel"}[arch]], j
        c = AutoConfig.from_pretrained(os.path.dirname(p))
        assert c.hidden_size == om.config_for(arch, cfg).hidden_size
    return []


# =================================================================================================
# family: eval — `cpeft eval` end to end: loss over consecutive blocks of a token stream

EVAL_SEQ_LEN = 32
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared", "data")
# A GPT-2 with the real 50,257-token vocabulary (tiny otherwise, stored in bf16 to stay small) so
# that text can go through the real GPT-2 tokenizer.
EVAL_VOCAB_SPEC = om.TinySpec("gpt2_vocab", "gpt2", dict(om.GPT2_TINY, n_embd=8, n_head=2, n_layer=1,
                              vocab_size=50257, bos_token_id=50256, eos_token_id=50256),
                              seed=3001, save_dtype=torch.bfloat16, attn_gain=4.0,
                              description="GPT-2 H=8 L=1 with the real GPT-2 vocabulary, bf16")


@torch.no_grad()
def eval_stream(model, ids: list[int], seq_len: int) -> dict:
    """What `cpeft eval` reports: blocks of seq_len (last partial kept), each predicting tokens 2..n."""
    total, count = 0.0, 0
    for start in range(0, len(ids), seq_len):
        block = torch.tensor([ids[start:start + seq_len]])
        if block.shape[1] < 2:
            continue
        out = model(input_ids=block, labels=block, use_cache=False)
        n = block.shape[1] - 1
        total += float(out.loss.double()) * n
        count += n
    loss = total / count
    import math
    return {"seq_len": seq_len, "loss": loss, "perplexity": math.exp(loss), "tokens": count, "stream_tokens": len(ids)}


def write_eval_ids(ctx: Context) -> None:
    spec = om.TINY_BY_NAME["gpt_neo_tiny"]
    gen = torch.Generator().manual_seed(name_seed("eval", spec.name))
    ids = torch.randint(1, spec.config["vocab_size"], (300,), generator=gen).tolist()
    with open(ctx.path("eval", "gpt_neo_tiny.ids.txt"), "w") as f:
        for i in range(0, len(ids), 20):
            f.write(" ".join(str(x) for x in ids[i:i + 20]) + "\n")
    res = eval_stream(load_for_forward(ctx, spec.name), ids, EVAL_SEQ_LEN)
    write_json(ctx.path("eval", "gpt_neo_tiny.ids.json"), dict(res, model="models/gpt_neo_tiny"))


def write_eval_text(ctx: Context) -> None:
    from tokenizers import Tokenizer
    out_dir = ctx.path("eval", EVAL_VOCAB_SPEC.name)
    om.save_tiny(EVAL_VOCAB_SPEC, out_dir)
    src = open(os.path.join(SHARED_DATA, "tinyshakespeare", "input.txt"), encoding="utf-8").read()
    text = src[:3000]
    with open(ctx.path("eval", "shakespeare.txt"), "w", encoding="utf-8") as f:
        f.write(text)
    tok = Tokenizer.from_file(os.path.join(SHARED_DATA, "gpt2-tokenizer", "tokenizer.json"))
    ids = tok.encode(text).ids
    model = om.load_tiny(out_dir, dtype=torch.float32)
    res = eval_stream(model, ids, EVAL_SEQ_LEN)
    write_json(ctx.path("eval", "shakespeare.json"),
               dict(res, model=f"eval/{EVAL_VOCAB_SPEC.name}", tokenizer="../shared/data/gpt2-tokenizer/tokenizer.json",
                    text="eval/shakespeare.txt (first 3,000 characters of tiny Shakespeare; see its SOURCE.md)"))


@family("eval", dirs=["eval"])
def fam_eval(ctx: Context) -> list[Item]:
    """`cpeft eval`: mean loss over blocks of a token-id file and of a text tokenized with GPT-2's tokenizer."""
    return [Item("gpt_neo_tiny.ids", lambda: write_eval_ids(ctx), ["eval/gpt_neo_tiny.ids.txt", "eval/gpt_neo_tiny.ids.json"]),
            Item("shakespeare", lambda: write_eval_text(ctx), ["eval/shakespeare.txt", "eval/shakespeare.json", "eval/gpt2_vocab"])]


import oracle_lora  # noqa: E402  (registers the "lora" family)
CHECKERS.update(oracle_lora.CHECKERS)
import oracle_train  # noqa: E402  (registers the "train" family)
CHECKERS.update(oracle_train.CHECKERS)
import oracle_llama  # noqa: E402  (registers the "llama_*" families)
CHECKERS.update(oracle_llama.CHECKERS)
import oracle_lora_sweep  # noqa: E402  (registers "lora_sweep"; uses the llama models)
CHECKERS.update(oracle_lora_sweep.CHECKERS)


# =================================================================================================
# driver


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.dirname(HERE)), "tests", "fixtures"))
    ap.add_argument("--cpeft", default=None, help="path of build/cpeft (families that cross-check files cpeft writes)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME")
    ap.add_argument("--list", action="store_true", help="list families and items, write nothing")
    ap.add_argument("--no-check", action="store_true", help="skip reading the fixtures back")
    ap.add_argument("-q", "--quiet", action="store_true")
    args = ap.parse_args(argv)

    setup_torch()
    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    ctx = Context(out=os.path.abspath(args.out), cpeft=args.cpeft, verbose=not args.quiet)
    if args.list:
        for fam in FAMILIES:
            print(f"{fam.name}: {fam.doc}")
            for it in fam.fn(ctx):
                print(f"  {fam.name}:{it.name}")
        return 0

    ran = []
    for fam in FAMILIES:
        items = [it for it in fam.fn(ctx) if selected(fam.name, it.name, args.only)]
        if not items:
            continue
        whole = len(items) == len(fam.fn(ctx))
        if whole:
            for d in fam.dirs:
                fresh_dir(ctx.path(d))
        ctx.log(f"[{fam.name}] {len(items)} item(s)")
        for it in items:
            it.run()
            ctx.log(f"  {fam.name}:{it.name}")
        ran.append(fam.name)

    if not args.no_check:
        for name in ran:
            if name in CHECKERS:
                for note in CHECKERS[name](ctx):
                    ctx.log(f"  check {name}: {note}")
    for fam in FAMILIES:
        if fam.name in ran:
            for d in fam.dirs:
                ctx.log(f"  {d}/: {dir_size(ctx.path(d)) / 1024:.0f} KiB")
    ctx.log(f"total {args.out}: {dir_size(ctx.out) / 1024:.0f} KiB  ({', '.join(f'{k} {v}' for k, v in versions().items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
