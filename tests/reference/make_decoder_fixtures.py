#!/usr/bin/env python3
"""Parity fixtures for decoder architectures, one directory per spec (tests/reference/decoder_spec.py).

    make_decoder_fixtures.py [--out tests/fixtures/decoders] [--only NAME ...] [--list]

Specs come from tests/reference/decoders/*.py (each defines SPECS). For each spec, under --out/<name>/:

  model/                        the tiny random model (save_pretrained of transformers' own class, f32)
  expected.json                 what the spec has and every scalar fact the C test checks (counts, repr,
                                print_trainable_parameters lines, generated tokens, step losses ...)
  forward.safetensors           input_ids (3,T): row 0 full, row 1 left-padded by 3, row 2 right-padded by 2
                                (pad id 0, never a real token); labels (-100 at pads); logits, loss of the
                                plain forward (no position_ids, as a user calls it)
  lora/<case>/                  PEFT's adapter (B perturbed: the adapter changes the output), and
                                expected.safetensors: loss, logits_adapter (eval), grad.<saved key>
  steps/                        adapter (= lora/<first case>'s) and expected.safetensors: the 20
                                micro-batches of oracle_train.step_batches and final.<saved key> after 10
                                AdamW steps (oracle_train.train_steps: warmup 2, linear decay, accumulation 2,
                                clipping 1.0); losses / grad norms / lrs in expected.json
  ia3/                          PEFT's default IA3 adapter (ia3_l perturbed), logits_adapter, gradients
  prompt/pt, prompt/prefix      prompt tuning (8 virtual tokens) / prefix tuning (4): PEFT's saved adapter,
                                the encoder's parameters (encoder.safetensors, drawn N(0, 0.5²)), logits and
                                loss of the training forward, grad.<encoder parameter>
  seq_cls/                      model/ (<Prefix>ForSequenceClassification, num_labels 3, pad_token_id 0) and
                                a SEQ_CLS LoRA adapter (score in modules_to_save): logits (B,3), loss, grads

Greedy generation (expected.json "generate"): prompts of 5 and 3 tokens, 8 new tokens, no eos, base and
with lora/<first case>; transformers' generate() with its KV cache, checked against a no-cache loop.

Deterministic: a rerun writes the same bytes. Needs only the reference venv.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import io
import os
import sys
import warnings
import zlib

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from decoder_spec import DecoderSpec  # noqa: E402
from oracle_common import fresh_dir, save_tensors, setup_torch, write_json  # noqa: E402
from oracle_lora import in_dir  # noqa: E402
from oracle_train import STEP_CFG, grad_labels, step_batches, train_steps, trainable_key_map, write_adapter  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GEN_LENS, GEN_NEW, PAD = [5, 3], 8, 0
N_LABELS = 3


def seed_of(*parts) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def load_specs() -> list[DecoderSpec]:
    specs = []
    for path in sorted(glob.glob(os.path.join(HERE, "decoders", "*.py"))):
        name = "decoder_specs_" + os.path.splitext(os.path.basename(path))[0]
        mod_spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(mod)
        specs += mod.SPECS
    names = [s.name for s in specs]
    assert len(set(names)) == len(names), f"duplicate spec names: {names}"
    return specs


# ---- the tiny model ------------------------------------------------------------------------------------------------

def config_of(spec: DecoderSpec, seq_cls: bool = False):
    from transformers import AutoConfig
    c = AutoConfig.for_model(spec.model_type, **spec.config)
    if seq_cls:
        c.num_labels = N_LABELS
        c.pad_token_id = PAD
    return c


def model_class(spec: DecoderSpec, seq_cls: bool = False):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    return (AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM)._model_mapping[type(config_of(spec))]


@torch.no_grad()
def perturb(model: nn.Module, gen: torch.Generator) -> None:
    """Every 1-D parameter (norm weights and biases) gets + 0.2·N(0,1): a wrong norm or a dropped bias shows."""
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if p.ndim == 1:
            p.add_(0.2 * torch.randn(p.shape, generator=gen))


def build_model(spec: DecoderSpec, seq_cls: bool = False):
    gen = torch.Generator().manual_seed(seed_of(spec.name, spec.seed, "weights"))
    torch.manual_seed(seed_of(spec.name, spec.seed, "init"))
    config = config_of(spec, seq_cls)
    config._attn_implementation = "eager"
    config.architectures = [model_class(spec, seq_cls).__name__]
    model = model_class(spec, seq_cls)(config)
    if seq_cls:        # the base weights of the causal LM, and a drawn head
        base = load_model("model")
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        assert all(k.startswith("score.") for k in missing), missing
        with torch.no_grad():
            model.score.weight.normal_(0, 0.5, generator=gen)
    else:
        perturb(model, gen)
    for n, m in model.named_modules():
        if isinstance(m, nn.Dropout):
            assert m.p == 0.0, f"{spec.name}: {n} has dropout {m.p}; set every dropout of the spec's config to 0"
    return model.eval()


def load_model(rel: str, seq_cls: bool = False):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    cls = AutoModelForSequenceClassification if seq_cls else AutoModelForCausalLM
    return cls.from_pretrained(rel, dtype=torch.float32, attn_implementation="eager").eval()


def batch(spec: DecoderSpec, V: int, T: int) -> dict:
    gen = torch.Generator().manual_seed(seed_of(spec.name, "batch"))
    ids = torch.randint(1, V, (3, T), generator=gen, dtype=torch.int64)
    mask = torch.ones(3, T, dtype=torch.int64)
    ids[1, :3], mask[1, :3] = PAD, 0
    ids[2, T - 2:], mask[2, T - 2:] = PAD, 0
    labels = ids.clone()
    labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def print_line(pm) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    return buf.getvalue().strip()


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


# ---- the parts ---------------------------------------------------------------------------------------------------

def write_forward(spec: DecoderSpec, info: dict) -> None:
    m = load_model("model")
    b = batch(spec, m.config.vocab_size, spec.T)
    with torch.no_grad():
        out = m(**b, use_cache=False)
    save_tensors(os.path.join(".", "forward.safetensors"), dict(b, logits=out.logits.float(), loss=out.loss.float().reshape(1)),
                 {"spec": spec.name})
    params = list(m.named_parameters())
    info["info"] = {"class": type(m).__name__, "num_parameters": sum(p.numel() for _, p in params),
                    "parameters": [[n, list(p.shape)] for n, p in params], "repr": str(m)}
    info["forward"] = {"loss": float(out.loss)}


def peft_model(spec: DecoderSpec, config, seq_cls: bool = False, perturb_all: bool = True, tag: str = ""):
    from peft import get_peft_model
    base = load_model("seq_cls/model" if seq_cls else "model", seq_cls)
    torch.manual_seed(seed_of(spec.name, tag, "peft init"))
    with quiet():
        pm = get_peft_model(base, config)
    if perturb_all:   # away from PEFT's zero init (lora_B) / ones (ia3_l), so the adapter changes the output
        gen = torch.Generator().manual_seed(seed_of(spec.name, tag, "perturb"))
        with torch.no_grad():
            for n, p in sorted(pm.named_parameters(), key=lambda kv: kv[0]):
                if p.requires_grad:
                    p.add_(0.3 * torch.randn(p.shape, generator=gen))
    return pm


def grads_case(spec: DecoderSpec, pm, d: str, b: dict, seq_cls: bool = False) -> dict:
    """Saves the adapter into d with loss, logits and every trainable gradient; returns the facts for expected.json."""
    kmap, extra = trainable_key_map(pm)
    line, counts = print_line(pm), pm.get_nb_trainable_parameters()
    cfg_saved = write_adapter(pm, d, kmap, extra)
    pm.train()
    pm.zero_grad(set_to_none=True)
    out = pm(**b, use_cache=False) if not seq_cls else pm(**b)
    out.loss.backward()
    pm.eval()
    with torch.no_grad():
        kw = dict(input_ids=b["input_ids"], attention_mask=b["attention_mask"])
        logits_adapter = (pm(**kw, use_cache=False) if not seq_cls else pm(**kw)).logits.float().clone()
    params = dict(pm.named_parameters())
    res = dict(b, loss=out.loss.detach().float().reshape(1), logits_adapter=logits_adapter)
    for n, k in kmap.items():
        res["grad." + k] = params[n].grad.detach().clone()
    save_tensors(os.path.join(d, "expected.safetensors"), res, {"spec": spec.name})
    return {"dir": d, "config_saved": cfg_saved, "loss": float(out.loss.detach()), "line": line,
            "trainable": counts[0], "all": counts[1], "num_trainable_tensors": len(kmap)}


def write_lora(spec: DecoderSpec, info: dict) -> None:
    from peft import LoraConfig
    info["lora"] = []
    for case in spec.lora:
        d = os.path.join("lora", case.name)
        fresh_dir(d)
        pm = peft_model(spec, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **case.config), tag=case.name)
        b = batch(spec, pm.config.vocab_size, spec.T)
        b["labels"] = grad_labels(b, torch.Generator().manual_seed(seed_of(spec.name, case.name, "labels")))
        info["lora"].append(dict(grads_case(spec, pm, d, b), name=case.name, desc=case.desc))


def write_steps(spec: DecoderSpec, info: dict) -> None:
    from peft import LoraConfig
    case = spec.lora[0]
    fresh_dir("steps")
    pm = peft_model(spec, LoraConfig(task_type="CAUSAL_LM", lora_dropout=0.0, **case.config), perturb_all=False,
                    tag="steps")
    kmap, extra = trainable_key_map(pm)
    write_adapter(pm, "steps", kmap, extra)
    batches = step_batches(spec.name, pm.config.vocab_size)
    res = train_steps(pm, batches)
    tensors = {f"{k}_{i}": v for i, mb in enumerate(batches) for k, v in mb.items()}
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        tensors["final." + k] = params[n].detach().clone()
    save_tensors(os.path.join("steps", "expected.safetensors"), tensors, {"spec": spec.name})
    info["steps"] = dict(res, lora_case=case.name, config=STEP_CFG)


def write_ia3(spec: DecoderSpec, info: dict) -> None:
    from peft import IA3Config
    fresh_dir("ia3")
    pm = peft_model(spec, IA3Config(task_type="CAUSAL_LM"), tag="ia3")
    b = batch(spec, pm.config.vocab_size, spec.T)
    b["labels"] = grad_labels(b, torch.Generator().manual_seed(seed_of(spec.name, "ia3", "labels")))
    info["ia3"] = grads_case(spec, pm, "ia3", b)


def write_prompt(spec: DecoderSpec, info: dict) -> None:
    from peft import PrefixTuningConfig, PromptTuningConfig
    info["prompt"] = []
    for name, config in [("pt", PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=8)),
                         ("prefix", PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))]:
        d = os.path.join("prompt", name)
        fresh_dir(d)
        pm = peft_model(spec, config, perturb_all=False, tag=name)
        emb = pm.prompt_encoder["default"].embedding.weight
        with torch.no_grad():
            emb.copy_(torch.randn(emb.shape, generator=torch.Generator().manual_seed(seed_of(spec.name, name))) * 0.5)
        line = print_line(pm)
        b = batch(spec, pm.base_model.config.vocab_size, spec.T)
        pm.train()
        out = pm(**b)
        out.loss.backward()
        with quiet():
            pm.save_pretrained(d)
        if os.path.exists(os.path.join(d, "README.md")):
            os.remove(os.path.join(d, "README.md"))
        enc = {n[len("prompt_encoder.default."):]: p for n, p in pm.named_parameters()
               if n.startswith("prompt_encoder.default.")}
        save_tensors(os.path.join(d, "encoder.safetensors"), {n: p.detach().clone() for n, p in enc.items()},
                     {"spec": spec.name})
        save_tensors(os.path.join(d, "expected.safetensors"),
                     dict(b, logits=out.logits.detach().float(), loss=out.loss.detach().float().reshape(1),
                          **{"grad." + n: p.grad.detach().clone() for n, p in enc.items()}), {"spec": spec.name})
        info["prompt"].append({"name": name, "dir": d, "loss": float(out.loss.detach()), "line": line})


def write_seq_cls(spec: DecoderSpec, info: dict) -> None:
    from peft import LoraConfig
    fresh_dir("seq_cls")
    with quiet():
        build_model(spec, seq_cls=True).save_pretrained("seq_cls/model")
    pm = peft_model(spec, LoraConfig(task_type="SEQ_CLS", lora_dropout=0.0, **spec.lora[0].config), seq_cls=True,
                    tag="seq_cls")
    b = batch(spec, pm.config.vocab_size, spec.T)
    b["labels"] = torch.arange(3, dtype=torch.int64) % N_LABELS
    info["seq_cls"] = grads_case(spec, pm, "seq_cls", b, seq_cls=True)


@torch.no_grad()
def greedy(model, ids, mask, cache: bool) -> tuple[list, float]:
    from transformers import GenerationConfig
    if cache:
        gc = GenerationConfig(max_new_tokens=GEN_NEW, do_sample=False, num_beams=1, eos_token_id=None,
                              pad_token_id=PAD, bos_token_id=None)
        return model.generate(input_ids=ids, attention_mask=mask, generation_config=gc)[:, ids.shape[1]:].tolist(), 0.0
    margin, T0 = float("inf"), ids.shape[1]
    for _ in range(GEN_NEW):
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        lg = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=False).logits[:, -1]
        top = lg.topk(2, -1).values
        margin = min(margin, float((top[:, 0] - top[:, 1]).min()))
        nxt = lg.argmax(-1, keepdim=True)
        ids, mask = torch.cat([ids, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
    return ids[:, T0:].tolist(), margin


def write_generate(spec: DecoderSpec, info: dict) -> None:
    from peft import PeftModel
    m = load_model("model")
    m.generation_config.eos_token_id = None
    V = m.config.vocab_size
    gen = torch.Generator().manual_seed(seed_of(spec.name, "generate"))
    rows = [torch.randint(1, V, (n,), generator=gen).tolist() for n in GEN_LENS]
    T = max(GEN_LENS)
    ids = torch.tensor([[PAD] * (T - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
    res = {"prompts": rows, "max_new_tokens": GEN_NEW, "pad_token_id": PAD, "runs": []}
    for adapter in [None, os.path.join("lora", spec.lora[0].name)]:
        def fresh():
            base = load_model("model")
            base.generation_config.eos_token_id = None
            if adapter is None:
                return base
            with quiet():
                return PeftModel.from_pretrained(base, adapter).eval()
        out, _ = greedy(fresh(), ids, mask, cache=True)
        naive, margin = greedy(fresh(), ids, mask, cache=False)
        assert naive == out, f"{spec.name}: transformers' cached generation differs from its no-cache loop"
        singles = [greedy(fresh(), torch.tensor([r]), torch.ones(1, len(r), dtype=torch.int64), cache=True)[0][0]
                   for r in rows]
        assert singles == out, f"{spec.name}: a left-padded row generates differently from the prompt alone"
        res["runs"].append({"adapter": adapter, "tokens": out, "min_top1_margin": margin})
    info["generate"] = res


def write_spec(spec: DecoderSpec, out_root: str) -> None:
    d = os.path.join(out_root, spec.name)
    fresh_dir(d)
    info = {"name": spec.name, "model_type": spec.model_type, "desc": spec.desc, "config": spec.config}
    with in_dir(d):
        with quiet():
            build_model(spec).save_pretrained("model")
        write_forward(spec, info)
        write_lora(spec, info)
        if spec.steps:
            write_steps(spec, info)
        if spec.ia3:
            write_ia3(spec, info)
        if spec.prompt:
            write_prompt(spec, info)
        if spec.seq_cls:
            write_seq_cls(spec, info)
        if spec.generate:
            write_generate(spec, info)
        write_json(os.path.join(".", "expected.json"), info)
    print(f"{spec.name}: loss {info['forward']['loss']:.6f}, {info['info']['num_parameters']} parameters, "
          f"{', '.join(k for k in ('lora', 'steps', 'ia3', 'prompt', 'seq_cls', 'generate') if k in info)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "fixtures", "decoders"))
    ap.add_argument("--only", nargs="*", help="spec names")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    setup_torch()
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    specs = load_specs()
    if a.list:
        for s in specs:
            print(f"{s.name:28s} {s.model_type:12s} {s.desc}")
        return
    unknown = set(a.only or []) - {s.name for s in specs}
    if unknown:
        sys.exit(f"unknown spec(s): {', '.join(sorted(unknown))}")
    for s in specs:
        if not a.only or s.name in a.only:
            write_spec(s, os.path.abspath(a.out))


if __name__ == "__main__":
    main()
