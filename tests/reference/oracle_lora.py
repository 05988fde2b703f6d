"""The "lora" fixture family: what PEFT 0.21.2 does with LoRA adapters on the tiny models.

Imported by generate.py (its @family decorator registers the family; generate.py adds CHECKERS).
Formats: tests/reference/README.md, section "LoRA fixtures". Per case, tests/fixtures/lora/<case>/:

    adapter_config.json, adapter_model.safetensors     peft_model.save_pretrained(dir) (README.md removed;
                                                        target_modules/exclude_modules lists sorted, see below)
    adapters/<name>/...                                 multi-adapter case: one directory per adapter
    expected.safetensors                                inputs + logits (adapter on / disabled / merged / ...)
    expected.json                                       counts, printed lines, repr, LoRA modules, scalings,
                                                        ranks, warnings, the saved config

plus meta_<short>.json (real-size models on the meta device), errors.json (exception type + message of
invalid configurations), loaded_counts.json (print_trainable_parameters after PeftModel.from_pretrained, frozen
and is_trainable=True), config_counts.json (the same after get_peft_model with the saved config, inference_mode true
and false) and cpeft_roundtrip/<case>/ (the reverse direction: files cpeft writes, read by PEFT and
transformers; needs --cpeft).

Determinism: PEFT saves `target_modules` (a Python set) in set-iteration order, which depends on
PYTHONHASHSEED. We rewrite adapter_config.json with those lists sorted, using PEFT's exact serialisation
(json.dumps(indent=2, sort_keys=True), no trailing newline) and check that re-serialising PEFT's own file
reproduces it byte for byte first, so the only change is the list order (any order is a valid PEFT output).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import math
import re
import warnings
import zlib
from dataclasses import dataclass, field

import torch

import oracle_models as om
from oracle_common import Context, Item, family, fresh_dir, load_tensors, save_tensors, write_json, write_text

LORA_B, LORA_T, LORA_PAD = 2, 11, 3      # batch, length, right padding of row 2 (id 0)
LOGIT_KEYS = ["logits", "logits_disabled", "logits_merged", "logits_unmerged", "logits_merged_unloaded"]
SET_KEYS = ("target_modules", "exclude_modules")   # config fields PEFT stores as sets


def name_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


def tiny_dir(ctx: Context, name: str) -> str:
    """tests/fixtures/models/<name>, written first if a partial run lacks it (as generate.model_dir)."""
    d = ctx.path("models", name)
    if not os.path.isfile(os.path.join(d, "config.json")):
        ctx.log(f"  (models/{name} missing: writing it first)")
        om.save_tiny(om.TINY_BY_NAME[name], d)
    return d


@contextlib.contextmanager
def in_dir(path: str):
    """Run with cwd = the fixtures root, so that models load as "models/<name>": that relative path is what
    PEFT writes as base_model_name_or_path, and save_embedding_layers="auto" finds its config.json there."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def base_rel(name: str, root: str = "") -> str:
    """The model directory relative to the fixtures root: models/<name>, or llama/models/<name> (root "llama")."""
    return f"{root}/models/{name}" if root else f"models/{name}"


def load_base(ctx: Context, name: str, root: str = "", dtype: str = ""):
    if root == "llama":
        import oracle_llama as ol                 # imported by generate.py after this module
        ol.model_dir(ctx, name)
    else:
        assert not root, root
        tiny_dir(ctx, name)
    m = om.load_tiny(base_rel(name, root), dtype=getattr(torch, dtype) if dtype else torch.float32)   # cwd = ctx.out
    assert m.name_or_path == base_rel(name, root), m.name_or_path
    return m


def lora_inputs(model_name: str, vocab: int) -> dict:
    gen = torch.Generator().manual_seed(name_seed("lora", "inputs", model_name))
    ids = torch.randint(1, vocab, (LORA_B, LORA_T), generator=gen, dtype=torch.int64)
    mask = torch.ones(LORA_B, LORA_T, dtype=torch.int64)
    ids[1, LORA_T - LORA_PAD:] = 0
    mask[1, LORA_T - LORA_PAD:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def logits_of(model, inputs: dict) -> torch.Tensor:
    out = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], use_cache=False)
    return out.logits.detach().float().clone()


class Recorder:
    """Collects the warnings emitted per stage (dedup within a stage). PEFT's own ones (warnings.warn called
    from a file of the peft package) go to by_stage; others (e.g. transformers' FutureWarning about
    `is_gradient_checkpointing`, triggered by get_peft_model) to `other` as "Category: message"."""

    def __init__(self):
        self.by_stage: dict[str, list[str]] = {}
        self.other: list[str] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
        msgs = self.by_stage.setdefault(name, [])
        for w in caught:
            m = str(w.message)
            if f"{os.sep}peft{os.sep}" in w.filename:
                if m not in msgs:
                    msgs.append(m)
            elif f"{w.category.__name__}: {m}" not in self.other:
                self.other.append(f"{w.category.__name__}: {m}")
        if not msgs:
            del self.by_stage[name]

    def all(self) -> list[str]:
        out = []
        for msgs in self.by_stage.values():
            for m in msgs:
                if m not in out:
                    out.append(m)
        return out


def counts(pm) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    trainable, total = pm.get_nb_trainable_parameters()
    return {"trainable": int(trainable), "all": int(total), "print_trainable_parameters": buf.getvalue().rstrip("\n"),
            "notebook_line": "trainable params: %d || all params: %d || trainable%%: %r"
                             % (trainable, total, 100 * trainable / total)}


def lora_layers(pm):
    from peft.tuners.lora import LoraLayer
    return [(n, m) for n, m in pm.base_model.model.named_modules() if isinstance(m, LoraLayer)]


def layer_info(pm, adapter: str) -> dict:
    mods, scal, ranks = [], {}, {}
    for n, m in lora_layers(pm):
        if adapter in m.r:
            mods.append(n)
            scal[n] = float(m.scaling[adapter])
            ranks[n] = int(m.r[adapter])
    return {"lora_modules": sorted(mods), "scalings": scal, "ranks": ranks}


@torch.no_grad()
def perturb_trainables(pm, seed_: int) -> list[str]:
    """Make the adapter non-trivial and the saved extras matter: zero-initialised LoRA tensors (B of Linear
    with init True, A of Embedding) get random values; every other trainable parameter (bias="all" /
    "lora_only" biases, modules_to_save copies) gets small random offsets, as training would."""
    gen = torch.Generator().manual_seed(seed_)
    touched = []
    for n, p in pm.named_parameters():
        if not p.requires_grad:
            continue
        if "lora_" in n:
            if torch.count_nonzero(p) == 0:
                fan_in = p.shape[1] if p.dim() == 2 else 1
                if "lora_embedding_A" in n:
                    p.copy_(0.1 * torch.randn(p.shape, generator=gen))
                else:                       # the nn.Linear default init bound of the layer (1/sqrt(fan_in))
                    p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) / fan_in ** 0.5)
                touched.append(n)
        else:
            p.add_(0.1 * torch.randn(p.shape, generator=gen))
            touched.append(n)
    return touched


def normalise_saved_config(path: str) -> dict:
    """Sort set-valued lists in adapter_config.json (PEFT writes them in set order, which depends on the
    hash seed); keep PEFT's exact serialisation. Returns the parsed config."""
    raw = open(path, encoding="utf-8").read()
    cfg = json.loads(raw)
    assert json.dumps(cfg, indent=2, sort_keys=True) == raw, "PEFT's adapter_config.json format changed"
    for k in SET_KEYS:
        if isinstance(cfg.get(k), list):
            cfg[k] = sorted(cfg[k])
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))
    return cfg


def saved_tensors(path: str) -> dict:
    t, meta = load_tensors(path)
    assert meta == {"format": "pt"}, meta
    return {k: [str(v.dtype).replace("torch.", ""), list(v.shape)] for k, v in sorted(t.items())}


def save_adapter(pm, d: str, **kw) -> None:
    pm.save_pretrained(d, **kw)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)


# =================================================================================================
# single-adapter cases


@dataclass
class Case:
    name: str
    model: str
    config: dict                       # LoraConfig kwargs (task_type CAUSAL_LM added unless given; None: no task_type)
    description: str
    root: str = ""                     # "llama": the model is tests/fixtures/llama/models/<model>
    save_kw: dict = field(default_factory=dict)   # save_pretrained kwargs (save_embedding_layers)
    record_merged: bool = False        # also record what merge_and_unload().save_pretrained writes (merged_save)
    dtype: str = ""                    # "bfloat16": the adapter is made on the model loaded in its own dtype (PEFT
                                       # saves modules_to_save copies and biases in it); every logit is then computed
                                       # from the saved files on the f32 base (as cpeft computes)

    @property
    def base_dir(self) -> str:
        return base_rel(self.model, self.root)


CASES = [
    Case("neo_notebook", "gpt_neo_tiny",
         dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj"],
              init_lora_weights=False),
         "the notebook's LoraConfig (r=8, alpha 16, dropout 0.1, q/k/v, CAUSAL_LM), init_lora_weights=False"),
    Case("neo_default_targets", "gpt_neo_tiny", dict(target_modules=None, r=4, lora_alpha=8, init_lora_weights=False),
         "target_modules=None -> PEFT's default table for gpt_neo (q_proj, v_proj)"),
    Case("gpt2_default_conv1d", "gpt2_tiny", dict(target_modules=None, r=4, lora_alpha=8),
         "default targets for gpt2 (c_attn, a Conv1D): fan_in_fan_out forced True with a warning; lora_B perturbed"),
    Case("gpt2_all_linear_rslora", "gpt2_odd",
         dict(target_modules="all-linear", r=2, lora_alpha=3, use_rslora=True, init_lora_weights=False),
         "all-linear (every Conv1D, not lm_head) with rsLoRA: scaling = alpha/sqrt(r)"),
    Case("neo_regex", "gpt_neo_odd", dict(target_modules=r".*\.h\.1\..*(q_proj|out_proj)", r=3, lora_alpha=5),
         "regex target_modules (full match): q_proj and out_proj of layer 1 only; lora_B perturbed"),
    Case("neo_layers_patterns", "gpt_neo_tiny",
         dict(target_modules=["q_proj", "v_proj", "c_fc"], layers_to_transform=[0, 2], layers_pattern="h",
              rank_pattern={"c_fc": 2}, alpha_pattern={"v_proj": 3}, r=4, lora_alpha=8, init_lora_weights=False),
         "layers_to_transform [0,2] with layers_pattern 'h'; rank_pattern c_fc:2, alpha_pattern v_proj:3"),
    Case("neo_exclude_bias_all", "gpt_neo_tiny",
         dict(target_modules=["c_fc", "c_proj"], exclude_modules=["h.0.mlp.c_proj"], bias="all", r=2, lora_alpha=4),
         "exclude_modules suffix; bias='all' (every bias in the model trained+saved; perturbed); lora_B perturbed"),
    Case("gpt2_lora_only_mts", "gpt2_tiny",
         dict(target_modules=["c_attn", "mlp.c_proj"], bias="lora_only", modules_to_save=["ln_f"], r=2, lora_alpha=2),
         "bias='lora_only' (biases of wrapped layers) + modules_to_save ln_f (copy perturbed); lora_B perturbed"),
    Case("neo_embedding", "gpt_neo_tiny", dict(target_modules=["wte", "q_proj"], r=4, lora_alpha=4),
         "Embedding LoRA on the tied input embedding wte + q_proj; lora_embedding_A and lora_B perturbed"),
    Case("gpt2_untied_lm_head", "gpt2_untied", dict(target_modules=["c_attn", "lm_head"], r=2, lora_alpha=4),
         "c_attn (Conv1D) + lm_head (nn.Linear) on an untied GPT-2: save_embedding_layers='auto' saves lm_head"),
] + [Case(*c[:4], **c[4], record_merged=True) for c in [
    # embedding targets and save_embedding_layers (issue 10, item 3), no task_type (auto_mapping, item 7)
    ("llama_embed_auto", "llama_tiny", dict(target_modules=["embed_tokens", "q_proj"], r=4, lora_alpha=8, task_type=None),
     "embed_tokens + q_proj on an untied Llama, no task_type: 'auto' saves embed_tokens.base_layer.weight only; "
     "auto_mapping written", dict(root="llama")),
    ("qwen2_embed_tied_auto", "qwen2_tiny", dict(target_modules=["embed_tokens", "v_proj"], r=2, lora_alpha=4, task_type=None),
     "embed_tokens + v_proj on a tied Qwen2, no task_type: 'auto' saves embed_tokens.base_layer.weight only", dict(root="llama")),
    ("mistral_embed_false", "mistral_tiny", dict(target_modules=["embed_tokens", "q_proj"], r=2, lora_alpha=2),
     "embed_tokens + q_proj on Mistral saved with save_embedding_layers=False: no embedding weight",
     dict(root="llama", save_kw=dict(save_embedding_layers=False))),
    ("llama_embed_true", "llama_tiny", dict(target_modules=["embed_tokens", "k_proj"], r=2, lora_alpha=4),
     "embed_tokens + k_proj, save_embedding_layers=True: as 'auto' (the embedding is targeted)",
     dict(root="llama", save_kw=dict(save_embedding_layers=True))),
    ("qwen2_true_untargeted", "qwen2_tiny", dict(target_modules=["q_proj"], r=2, lora_alpha=4),
     "q_proj only on a tied Qwen2 with save_embedding_layers=True: embed_tokens.weight and lm_head.weight whole",
     dict(root="llama", save_kw=dict(save_embedding_layers=True))),
    ("gpt2_wte_true", "gpt2_tiny", dict(target_modules=["wte", "c_attn"], r=2, lora_alpha=4, task_type=None),
     "wte (not an EMBEDDING_LAYER_NAME) + c_attn, save_embedding_layers=True, no task_type: wte.base_layer.weight and "
     "the tied lm_head.weight", dict(save_kw=dict(save_embedding_layers=True))),
    ("llama_mts_head_true", "llama_tiny", dict(target_modules=["q_proj"], modules_to_save=["lm_head"], r=2, lora_alpha=2),
     "modules_to_save lm_head with save_embedding_layers=True: lm_head.original_module.weight and "
     "lm_head.modules_to_save.weight besides the copy", dict(root="llama", save_kw=dict(save_embedding_layers=True))),
    # embedding target + modules_to_save lm_head (item 4)
    ("llama_embed_mts_lm_head", "llama_tiny",
     dict(target_modules=["embed_tokens", "q_proj"], modules_to_save=["lm_head"], r=2, lora_alpha=4),
     "embed_tokens LoRA + modules_to_save lm_head: the copy as lm_head.weight and embed_tokens.base_layer.weight",
     dict(root="llama")),
    ("qwen2_embed_mts_lm_head", "qwen2_tiny",
     dict(target_modules=["embed_tokens", "q_proj"], modules_to_save=["lm_head"], r=2, lora_alpha=4),
     "the same on a tied Qwen2", dict(root="llama")),
    # modules_to_save on a tied embedding or head: merging unties (items 8, 9)
    ("gpt2_mts_lm_head_tied", "gpt2_tiny", dict(target_modules=["c_attn"], modules_to_save=["lm_head"], r=2, lora_alpha=4),
     "modules_to_save lm_head on the tied GPT-2: the copy is counted once; merged: tie_word_embeddings false", dict()),
    ("gpt2_mts_wte_tied", "gpt2_tiny", dict(target_modules=["c_attn"], modules_to_save=["wte"], r=2, lora_alpha=4),
     "modules_to_save wte on the tied GPT-2: merged keeps the original head, tie_word_embeddings false", dict()),
    ("qwen2_mts_embed_tied", "qwen2_tiny", dict(target_modules=["q_proj"], modules_to_save=["embed_tokens"], r=2, lora_alpha=4),
     "modules_to_save embed_tokens on a tied Qwen2: merged keeps the original head, tie_word_embeddings false",
     dict(root="llama")),
    # a bf16 model (issue 10 follow-up): PEFT saves the modules_to_save copies and the bias="all" biases in BF16
    ("gpt2_bf16_mts_bias", "gpt2_tiny_bf16",
     dict(target_modules=["c_attn"], modules_to_save=["ln_f", "lm_head"], bias="all", r=2, lora_alpha=4),
     "bf16 GPT-2 (tied): modules_to_save ln_f and lm_head, bias='all': copies and biases saved BF16, LoRA F32",
     dict(dtype="bfloat16")),
    # layers_pattern given as a full path (item 10)
    ("llama_layers_pattern_path", "llama_tiny",
     dict(target_modules=["q_proj", "v_proj"], layers_to_transform=[1], layers_pattern="model.layers", r=2, lora_alpha=4),
     "layers_pattern 'model.layers' (matched at the start of the name): layer 1 only", dict(root="llama")),
    ("gpt2_layers_pattern_path", "gpt2_tiny",
     dict(target_modules=["c_attn"], layers_to_transform=[0], layers_pattern="transformer.h", r=2, lora_alpha=4),
     "layers_pattern 'transformer.h': layer 0 only", dict()),
]]
CASES_BY_NAME = {c.name: c for c in CASES}


def make_config(kw: dict):
    from peft import LoraConfig, TaskType
    kw = dict(kw)
    kw.setdefault("task_type", TaskType.CAUSAL_LM)
    return LoraConfig(**kw)


def close(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


EMBED_WARNING = "Setting `save_embedding_layers` to `True` as embedding layers found in `target_modules`."


def write_case(ctx: Context, case: Case) -> None:
    from peft import get_peft_model
    d = ctx.path("lora", case.name)
    fresh_dir(d)
    rec = Recorder()
    with in_dir(ctx.out):
        base = load_base(ctx, case.model, case.root, case.dtype)
        inputs = lora_inputs(case.model, base.config.vocab_size)
        base_logits = logits_of(load_base(ctx, case.model, case.root) if case.dtype else base, inputs)
        torch.manual_seed(name_seed("lora", case.name, "init"))
        with rec.stage("LoraConfig"):
            cfg = make_config(case.config)
        with rec.stage("get_peft_model"):
            pm = get_peft_model(base, cfg)
        perturbed = perturb_trainables(pm, name_seed("lora", case.name, "perturb"))
        pm.eval()
        c = counts(pm)
        info = layer_info(pm, "default")
        if case.dtype:      # saved from the model in its own dtype; the logits from those files on the f32 base
            from peft import PeftModel
            with rec.stage("save_pretrained"):
                save_adapter(pm, d, **case.save_kw)
            rep = str(pm)
            with rec.stage("from_pretrained_f32"):
                pm = PeftModel.from_pretrained(load_base(ctx, case.model, case.root), f"lora/{case.name}").eval()
        res = dict(inputs)
        with rec.stage("forward"):
            res["logits"] = logits_of(pm, inputs)
        with rec.stage("disable_adapter"):
            with pm.disable_adapter():
                res["logits_disabled"] = logits_of(pm, inputs)
        with rec.stage("merge_adapter"):
            pm.merge_adapter()
            res["logits_merged"] = logits_of(pm, inputs)
        with rec.stage("unmerge_adapter"):
            pm.unmerge_adapter()
            res["logits_unmerged"] = logits_of(pm, inputs)
        if not case.dtype:
            with rec.stage("save_pretrained"):
                save_adapter(pm, d, **case.save_kw)
        with rec.stage("merge_and_unload"):
            merged = copy.deepcopy(pm).merge_and_unload()
            res["logits_merged_unloaded"] = logits_of(merged, inputs)
        merged_save = merged_files(merged) if case.record_merged else None
        if not case.dtype:
            rep = str(pm)
    config_saved = normalise_saved_config(os.path.join(d, "adapter_config.json"))
    save_tensors(os.path.join(d, "expected.safetensors"), res, {"model": case.model, "case": case.name})
    out = dict(c)
    out.update(info)
    out.update({
        "model": case.model, "base_dir": case.base_dir, "case": case.name,
        "description": case.description, "repr": rep, "warnings": rec.all(), "warnings_by_stage": rec.by_stage,
        "warnings_other": rec.other,
        "config_saved": config_saved, "perturbed": perturbed,
        "saved_tensors": saved_tensors(os.path.join(d, "adapter_model.safetensors")),
        "save_embedding_layers_auto": EMBED_WARNING in rec.by_stage.get("save_pretrained", []),
        "max_abs_diff": {"logits_vs_base": close(res["logits"], base_logits),
                         "disabled_vs_base": close(res["logits_disabled"], base_logits),
                         "merged_vs_logits": close(res["logits_merged"], res["logits"]),
                         "unmerged_vs_logits": close(res["logits_unmerged"], res["logits"]),
                         "merged_unloaded_vs_merged": close(res["logits_merged_unloaded"], res["logits_merged"])},
    })
    if case.save_kw:
        out["save_kw"] = case.save_kw
    if case.dtype:
        out["dtype"] = case.dtype
    if merged_save is not None:
        out["merged_save"] = merged_save
    write_json(os.path.join(d, "expected.json"), out)


def merged_files(merged) -> dict:
    """What merge_and_unload().save_pretrained(dir) writes: config.json's tie_word_embeddings (PEFT unties it when
    the head no longer shares the input embedding's weight) and the tensors of model.safetensors."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        merged.save_pretrained(tmp)
        cfg = json.load(open(os.path.join(tmp, "config.json")))
        return {"tie_word_embeddings": cfg.get("tie_word_embeddings"),
                "tensors": saved_tensors(os.path.join(tmp, "model.safetensors"))}


# =================================================================================================
# what PeftModel.from_pretrained reports (issue 10, item 11)


def write_loaded_counts(ctx: Context) -> None:
    """For every single-adapter case: print_trainable_parameters() after PeftModel.from_pretrained(base, dir) (the
    default is_trainable=False: adapter weights frozen, biases of bias="all"/"lora_only" still trainable) and with
    is_trainable=True (the adapter's own parameters trainable)."""
    from peft import PeftModel
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with in_dir(ctx.out):
            for c in CASES:
                if not os.path.exists(os.path.join(ctx.path("lora", c.name), "adapter_config.json")):
                    continue
                loaded = PeftModel.from_pretrained(load_base(ctx, c.model, c.root), f"lora/{c.name}")
                trainable = PeftModel.from_pretrained(load_base(ctx, c.model, c.root), f"lora/{c.name}", is_trainable=True)
                out[c.name] = {"base_dir": c.base_dir, "from_pretrained": counts(loaded),
                               "from_pretrained_trainable": counts(trainable)}
    write_json(ctx.path("lora", "loaded_counts.json"), out)


def write_config_counts(ctx: Context) -> None:
    """For every single-adapter case: print_trainable_parameters() after get_peft_model(base, config) with the saved
    adapter_config.json (inference_mode true, as save_pretrained writes it: set_adapter(..., inference_mode=True)
    freezes the adapter's layers and modules_to_save copies, biases of bias="all"/"lora_only" stay trainable) and with
    the same config but inference_mode false."""
    from peft import LoraConfig, get_peft_model
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with in_dir(ctx.out):
            for c in CASES:
                if not os.path.exists(os.path.join(ctx.path("lora", c.name), "adapter_config.json")):
                    continue
                e = {"base_dir": c.base_dir}
                for mode in (True, False):
                    cfg = LoraConfig.from_pretrained(f"lora/{c.name}")
                    assert cfg.inference_mode is True, c.name
                    cfg.inference_mode = mode
                    e[f"inference_mode_{str(mode).lower()}"] = counts(get_peft_model(load_base(ctx, c.model, c.root), cfg))
                out[c.name] = e
    write_json(ctx.path("lora", "config_counts.json"), out)


# =================================================================================================
# multi-adapter case

MULTI = "neo_multi"
MULTI_MODEL = "gpt_neo_tiny"
MULTI_A = dict(target_modules=["q_proj", "v_proj"], r=4, lora_alpha=8, init_lora_weights=False)
MULTI_B = dict(target_modules=["k_proj", "v_proj", "out_proj"], r=4, lora_alpha=4, init_lora_weights=False)
MULTI_WEIGHTS = [0.7, 0.3]


def write_multi(ctx: Context) -> None:
    from peft import get_peft_model
    d = ctx.path("lora", MULTI)
    fresh_dir(d)
    rec = Recorder()
    with in_dir(ctx.out):
        base = load_base(ctx, MULTI_MODEL)
        inputs = lora_inputs(MULTI_MODEL, base.config.vocab_size)
        base_logits = logits_of(base, inputs)
        torch.manual_seed(name_seed("lora", MULTI, "init"))
        with rec.stage("get_peft_model"):
            pm = get_peft_model(base, make_config(MULTI_A), adapter_name="a")
        with rec.stage("add_adapter"):
            pm.add_adapter("b", make_config(MULTI_B))
        pm.eval()
        top = counts(pm)                       # as PEFT reports right after add_adapter ("a" active)
        rep_ab = str(pm)
        per_adapter = {}
        res = dict(inputs)
        with rec.stage("set_adapter"):
            for n in ("a", "b"):
                pm.set_adapter(n)
                per_adapter[n] = counts(pm)
                res[f"logits_{n}"] = logits_of(pm, inputs)
            pm.base_model.set_adapter(["a", "b"])
        both = counts(pm)
        with rec.stage("forward"):
            res["logits_ab"] = logits_of(pm, inputs)
            res["logits"] = res["logits_ab"]
        with rec.stage("disable_adapter"):
            with pm.disable_adapter():
                res["logits_disabled"] = logits_of(pm, inputs)
        with rec.stage("merge_adapter"):
            pm.merge_adapter()
            res["logits_merged"] = logits_of(pm, inputs)
        with rec.stage("unmerge_adapter"):
            pm.unmerge_adapter()
            res["logits_unmerged"] = logits_of(pm, inputs)
        with rec.stage("merge_and_unload"):
            res["logits_merged_unloaded"] = logits_of(copy.deepcopy(pm).merge_and_unload(), inputs)
        with rec.stage("add_weighted_adapter"):
            pm.add_weighted_adapter(["a", "b"], MULTI_WEIGHTS, "lin", combination_type="linear")
            pm.add_weighted_adapter(["a", "b"], MULTI_WEIGHTS, "cat", combination_type="cat")
        with rec.stage("set_adapter"):
            for n in ("lin", "cat"):
                pm.set_adapter(n)
                res[f"logits_{n}"] = logits_of(pm, inputs)
            for n in ("a", "b", "lin", "cat"):
                pm.set_adapter(n)
                per_adapter[n + "@all4"] = counts(pm)
        with rec.stage("save_pretrained"):
            save_adapter(pm, os.path.join(d, "adapters"), selected_adapters=["a", "b", "lin", "cat"])
        rep_all = str(pm)
        infos = {n: layer_info(pm, n) for n in ("a", "b", "lin", "cat")}
    adapters = {}
    for n in ("a", "b", "lin", "cat"):
        ad = os.path.join(d, "adapters", n)
        adapters[n] = {"config_saved": normalise_saved_config(os.path.join(ad, "adapter_config.json")),
                       "saved_tensors": saved_tensors(os.path.join(ad, "adapter_model.safetensors"))}
        adapters[n].update(infos[n])
    assert sorted(os.listdir(os.path.join(d, "adapters"))) == ["a", "b", "cat", "lin"], os.listdir(os.path.join(d, "adapters"))
    save_tensors(os.path.join(d, "expected.safetensors"), res, {"model": MULTI_MODEL, "case": MULTI})
    out = dict(top)
    out.update({
        "model": MULTI_MODEL, "base_dir": f"models/{MULTI_MODEL}", "case": MULTI,
        "description": "adapters a (q,v r4 a8) + b (k,v,out_proj r4 a4); logits = logits_ab (both active via "
                       "base_model.set_adapter(['a','b'])), and so are disabled/merged/unmerged/merged_unloaded; "
                       "lin/cat = add_weighted_adapter([a,b],[0.7,0.3]) linear/cat",
        "repr": rep_ab, "repr_all": rep_all, "warnings": rec.all(), "warnings_by_stage": rec.by_stage,
        "warnings_other": rec.other,
        "counts_active": per_adapter, "counts_ab_active": both, "adapters": adapters,
        "lora_modules": sorted(set().union(*[set(infos[n]["lora_modules"]) for n in ("a", "b")])),
        "scalings": {n: infos[n]["scalings"] for n in infos}, "ranks": {n: infos[n]["ranks"] for n in infos},
        "config_saved": {n: adapters[n]["config_saved"] for n in adapters},
        "weights": MULTI_WEIGHTS,
        "max_abs_diff": {"disabled_vs_base": close(res["logits_disabled"], base_logits),
                         "merged_vs_logits": close(res["logits_merged"], res["logits"]),
                         "unmerged_vs_logits": close(res["logits_unmerged"], res["logits"])},
    })
    write_json(os.path.join(d, "expected.json"), out)


# =================================================================================================
# real-size models on the meta device

META_CASES = {
    "gpt-neo-1.3B": dict(r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["q_proj", "k_proj", "v_proj"]),
    "gpt2": dict(),
    "gpt-neo-125M": dict(),
}
META_EXPECTED = {"gpt-neo-1.3B": (2_359_296, 1_317_935_104)}


def write_meta(ctx: Context, short: str) -> None:
    from peft import get_peft_model
    _, model = om.build_meta(short)
    cfg_kw = dict(META_CASES[short])
    rec = Recorder()
    # init_lora_weights=False: nothing to initialise on the meta device (PEFT creates the LoRA Linear
    # modules and moves them to the base weight's device, meta).
    cfg_kw["init_lora_weights"] = False
    with rec.stage("get_peft_model"):
        pm = get_peft_model(model, make_config(cfg_kw))
    c = counts(pm)
    if short in META_EXPECTED:
        assert (c["trainable"], c["all"]) == META_EXPECTED[short], (short, c)
    info = layer_info(pm, "default")
    out = dict(c)
    out.update({"model": short, "config": {k: v for k, v in cfg_kw.items()}, "repr": str(pm),
                "warnings": rec.all(), "warnings_other": rec.other, "n_lora_modules": len(info["lora_modules"]),
                "how": "om.build_meta(short) (meta device, published config) + get_peft_model with "
                       "init_lora_weights=False (the count does not depend on the init)"})
    out["config"]["task_type"] = "CAUSAL_LM"
    write_json(ctx.path("lora", f"meta_{short}.json"), out)


# =================================================================================================
# errors


ERROR_CASES = {
    "target_not_found": dict(target_modules=["nonexistent"]),
    "all_excluded": dict(target_modules=["q_proj"], exclude_modules=["q_proj"]),
    "r_zero": dict(target_modules=["q_proj"], r=0),
    "layers_pattern_without_layers_to_transform": dict(target_modules=["q_proj"], layers_pattern="h"),
    "regex_matches_nothing": dict(target_modules=r".*\.nothing_(here|there)"),
}


def write_errors(ctx: Context) -> None:
    from peft import get_peft_model
    out = {}
    for name, kw in ERROR_CASES.items():
        rec = Recorder()
        stage = "LoraConfig"
        with in_dir(ctx.out):
            base = load_base(ctx, "gpt_neo_tiny")
            try:
                with rec.stage("LoraConfig"):
                    cfg = make_config(kw)
                stage = "get_peft_model"
                with rec.stage("get_peft_model"):
                    get_peft_model(base, cfg)
                raise AssertionError(f"{name}: PEFT accepted {kw}")
            except AssertionError:
                raise
            except Exception as e:  # noqa: BLE001
                out[name] = {"model": "gpt_neo_tiny", "config": {k: v for k, v in kw.items()}, "raised_in": stage,
                             "type": type(e).__name__, "type_module": type(e).__module__,
                             "mro": [k.__name__ for k in type(e).__mro__ if k not in (object, BaseException)],
                             "message": str(e), "warnings": rec.all()}
    write_json(ctx.path("lora", "errors.json"), out)


ROUNDTRIP_CASES = {
    # name: (tiny model, adapter_config.json written for `cpeft adapter init`)
    "rt_neo_qkv": ("gpt_neo_tiny", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "lora_alpha": 8,
                                     "lora_dropout": 0.1, "target_modules": ["q_proj", "k_proj", "v_proj"],
                                     "init_lora_weights": False}),
    "rt_gpt2_default": ("gpt2_tiny", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 6,
                                       "init_lora_weights": False}),
    "rt_gpt2_all_linear": ("gpt2_odd", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 3, "lora_alpha": 5,
                                         "target_modules": "all-linear", "use_rslora": True,
                                         "init_lora_weights": False}),
    "rt_neo_embedding_mts": ("gpt_neo_tiny", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2,
                                               "lora_alpha": 2, "target_modules": ["wte", "out_proj"],
                                               "modules_to_save": ["ln_f"], "bias": "lora_only",
                                               "init_lora_weights": False}),
}
ROUNDTRIP_SEED = 7
# Later cases (issue 10) as dicts: {"model", "root" ("llama": tests/fixtures/llama/models), and either "config" (for
# `cpeft adapter init`, as above) or "adapter_from" (a PEFT-saved adapter of this family that `cpeft merge` merges)}.
ROUNDTRIP_CASES.update({
    "rt_llama_embed_mts": dict(model="llama_tiny", root="llama", config={
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "init_lora_weights": False,
        "target_modules": ["embed_tokens", "q_proj"], "modules_to_save": ["lm_head"]}),
    "rt_qwen2_embed_tied": dict(model="qwen2_tiny", root="llama", config={     # alpha 0.25: logits of order 10
        "peft_type": "LORA", "r": 2, "lora_alpha": 0.25, "init_lora_weights": False,
        "target_modules": ["embed_tokens", "v_proj"]}),
    "rt_gpt2_layers_path": dict(model="gpt2_tiny", config={
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "init_lora_weights": False,
        "target_modules": ["c_attn"], "layers_to_transform": [1], "layers_pattern": "transformer.h"}),
    "rt_merge_gpt2_mts_wte": dict(model="gpt2_tiny", adapter_from="gpt2_mts_wte_tied"),
    "rt_merge_gpt2_mts_lm_head": dict(model="gpt2_tiny", adapter_from="gpt2_mts_lm_head_tied"),
    "rt_merge_qwen2_mts_embed": dict(model="qwen2_tiny", root="llama", adapter_from="qwen2_mts_embed_tied"),
    "rt_merge_qwen2_embed_mts_head": dict(model="qwen2_tiny", root="llama", adapter_from="qwen2_embed_mts_lm_head"),
    # a bf16 model: cpeft writes the modules_to_save copies and bias="all" biases BF16, as PEFT does ("dtype" records
    # the tensor dtypes of cpeft's file and of PEFT's own save of it on the bf16 model)
    "rt_gpt2_bf16_mts_bias": dict(model="gpt2_tiny_bf16", dtype="bfloat16", config={
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4, "init_lora_weights": False,
        "target_modules": ["c_attn"], "modules_to_save": ["ln_f"], "bias": "all"}),
})


def write_roundtrip_case(ctx: Context, case: str) -> None:
    """cpeft -> PEFT: `cpeft adapter init` writes an adapter, PEFT loads it (PeftModel.from_pretrained) and its
    logits are recorded; `cpeft merge` writes a full checkpoint, transformers loads it and its logits are
    recorded. The C test checks that cpeft reproduces the adapter byte for byte from the same seed and that its
    own logits equal what PEFT and transformers computed from cpeft's files."""
    if isinstance(ROUNDTRIP_CASES[case], dict):
        return write_roundtrip_case_v2(ctx, case)
    import subprocess
    import tempfile
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    if not ctx.cpeft:
        raise SystemExit("lora:cpeft_roundtrip needs --cpeft build/cpeft")
    cpeft = os.path.abspath(ctx.cpeft)
    model_name, cfg = ROUNDTRIP_CASES[case]
    d = ctx.path("lora", "cpeft_roundtrip", case)
    fresh_dir(d)
    with open(os.path.join(d, "peft_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    with in_dir(ctx.out):
        tiny_dir(ctx, model_name)
        base_rel = f"models/{model_name}"
        adapter_rel = os.path.relpath(os.path.join(d, "adapter"), ctx.out)
        subprocess.run([cpeft, "adapter", "init", "--model", base_rel, "--peft-config",
                        os.path.relpath(os.path.join(d, "peft_config.json"), ctx.out), "--seed", str(ROUNDTRIP_SEED),
                        "--out", adapter_rel], check=True, capture_output=True)
        base = load_base(ctx, model_name)
        inputs = lora_inputs(model_name, base.config.vocab_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = PeftModel.from_pretrained(base, adapter_rel).eval()
        logits_peft = logits_of(pm, inputs)
        with tempfile.TemporaryDirectory() as tmp:
            merged = os.path.join(tmp, "merged")
            subprocess.run([cpeft, "merge", "--model", base_rel, "--adapter", adapter_rel, "--out", merged],
                           check=True, capture_output=True)
            mm = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager").eval()
            logits_merged = logits_of(mm, inputs)
            merged_files = sorted(os.listdir(merged))
    base_logits = logits_of(load_base(ctx, model_name).eval(), inputs) if False else None
    save_tensors(os.path.join(d, "expected.safetensors"),
                 {**inputs, "logits_peft": logits_peft, "logits_merged_transformers": logits_merged},
                 {"model": model_name, "case": case})
    write_json(os.path.join(d, "expected.json"), {
        "model": model_name, "base_dir": f"models/{model_name}", "seed": ROUNDTRIP_SEED,
        "how": "cpeft adapter init (seed) -> PeftModel.from_pretrained; cpeft merge -> AutoModelForCausalLM",
        "merged_files": merged_files, "merged_vs_peft_max_abs_diff": close(logits_merged, logits_peft)})


def write_roundtrip_case_v2(ctx: Context, case: str) -> None:
    """As write_roundtrip_case, for the dict cases: the adapter is either written by `cpeft adapter init` from
    "config" (then PEFT loads cpeft's file) or is the PEFT-saved lora/<adapter_from> (then only the merge direction
    is cpeft's). Records also the merged checkpoint's tensors and the tie_word_embeddings transformers reads."""
    import subprocess
    import tempfile
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    if not ctx.cpeft:
        raise SystemExit("lora:cpeft_roundtrip needs --cpeft build/cpeft")
    cpeft = os.path.abspath(ctx.cpeft)
    spec = ROUNDTRIP_CASES[case]
    model_name, root = spec["model"], spec.get("root", "")
    d = ctx.path("lora", "cpeft_roundtrip", case)
    fresh_dir(d)
    base_dir = base_rel(model_name, root)
    with in_dir(ctx.out):
        base = load_base(ctx, model_name, root)
        if "config" in spec:
            with open(os.path.join(d, "peft_config.json"), "w") as f:
                json.dump(spec["config"], f, indent=2, sort_keys=True)
            adapter_rel = os.path.relpath(os.path.join(d, "adapter"), ctx.out)
            subprocess.run([cpeft, "adapter", "init", "--model", base_dir, "--peft-config",
                            os.path.relpath(os.path.join(d, "peft_config.json"), ctx.out), "--seed", str(ROUNDTRIP_SEED),
                            "--out", adapter_rel], check=True, capture_output=True)
            how = "cpeft adapter init (seed) -> PeftModel.from_pretrained; cpeft merge -> AutoModelForCausalLM"
        else:
            adapter_rel = f"lora/{spec['adapter_from']}"
            assert os.path.isfile(os.path.join(adapter_rel, "adapter_config.json")), adapter_rel
            how = f"PEFT's {adapter_rel} -> cpeft merge -> AutoModelForCausalLM"
        inputs = lora_inputs(model_name, base.config.vocab_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = PeftModel.from_pretrained(base, adapter_rel).eval()
        logits_peft = logits_of(pm, inputs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            logits_peft_merged = logits_of(pm.merge_and_unload(), inputs)
        with tempfile.TemporaryDirectory() as tmp:
            merged = os.path.join(tmp, "merged")
            subprocess.run([cpeft, "merge", "--model", base_dir, "--adapter", adapter_rel, "--out", merged],
                           check=True, capture_output=True)
            mm = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32, attn_implementation="eager").eval()
            logits_merged = logits_of(mm, inputs)
            merged_files = sorted(os.listdir(merged))
            merged_tensors = saved_tensors(os.path.join(merged, "model.safetensors"))
            tie = mm.config.tie_word_embeddings
    # a bf16 base: cpeft's merged checkpoint is bf16 (the base dtype), PEFT's f32 merge is not rounded
    assert close(logits_merged, logits_peft_merged) < (0.1 if spec.get("dtype") else 1e-4), (case, close(logits_merged, logits_peft_merged))
    save_tensors(os.path.join(d, "expected.safetensors"),
                 {**inputs, "logits_peft": logits_peft, "logits_merged_transformers": logits_merged},
                 {"model": model_name, "case": case})
    out = {"model": model_name, "base_dir": base_dir, "how": how, "merged_files": merged_files,
           "merged_tensors": merged_tensors, "merged_tie_word_embeddings": tie,
           "merged_vs_peft_max_abs_diff": close(logits_merged, logits_peft),
           "merged_vs_peft_merge_and_unload_max_abs_diff": close(logits_merged, logits_peft_merged)}
    if "config" in spec:
        out["seed"] = ROUNDTRIP_SEED
    else:
        out["adapter_from"] = adapter_rel
    if spec.get("dtype"):   # what PEFT itself writes for this adapter on the model in its own dtype
        from peft import PeftModel
        with in_dir(ctx.out), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            PeftModel.from_pretrained(load_base(ctx, model_name, root, spec["dtype"]), adapter_rel).save_pretrained(tmp)
            out["peft_resaved_tensors"] = saved_tensors(os.path.join(tmp, "adapter_model.safetensors"))
            out["adapter_tensors"] = saved_tensors(os.path.join(adapter_rel, "adapter_model.safetensors"))
        a, b = out["adapter_tensors"], out["peft_resaved_tensors"]
        assert a == b, (case, {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)})
    write_json(os.path.join(d, "expected.json"), out)


def write_roundtrip(ctx: Context) -> None:
    for case in ROUNDTRIP_CASES:
        write_roundtrip_case(ctx, case)


# =================================================================================================
# registration


@family("lora", dirs=["lora"])
def fam_lora(ctx: Context) -> list[Item]:
    """LoRA adapters as PEFT 0.21.2 saves them + logits (active/disabled/merged/unloaded), counts, repr, errors."""
    items = [Item(c.name, (lambda c=c: write_case(ctx, c)), [f"lora/{c.name}"]) for c in CASES]
    items.append(Item(MULTI, lambda: write_multi(ctx), [f"lora/{MULTI}"]))
    items += [Item(f"meta_{s}", (lambda s=s: write_meta(ctx, s)), [f"lora/meta_{s}.json"]) for s in META_CASES]
    items.append(Item("errors", lambda: write_errors(ctx), ["lora/errors.json"]))
    items.append(Item("loaded_counts", lambda: write_loaded_counts(ctx), ["lora/loaded_counts.json"]))
    items.append(Item("config_counts", lambda: write_config_counts(ctx), ["lora/config_counts.json"]))
    items += [Item(f"cpeft_roundtrip.{c}", (lambda c=c: write_roundtrip_case(ctx, c)), [f"lora/cpeft_roundtrip/{c}"])
              for c in ROUNDTRIP_CASES]
    return items


# =================================================================================================
# read-back checks


def pattern_value(patterns: dict, module: str, default):
    """PEFT's get_pattern_key: first pattern (dict order) with re.match(r"(.*\.)?(<pat>)$", module)."""
    for k, v in patterns.items():
        if re.match(rf"(.*\.)?({k})$", module):
            return v
    return default


def config_scaling(cfg: dict, module: str) -> tuple[int, float]:
    r = pattern_value(cfg.get("rank_pattern") or {}, module, cfg["r"])
    alpha = pattern_value(cfg.get("alpha_pattern") or {}, module, cfg["lora_alpha"])
    return r, (alpha / math.sqrt(r) if cfg.get("use_rslora") else alpha / r)


def adapter_deltas(model, adapter_dir: str) -> tuple[dict, dict, dict]:
    """Read a saved adapter the way cpeft must: returns ({module: delta in the module's weight layout},
    {param name in the base model: tensor to assign}, {module: (r, scaling)})."""
    from transformers.pytorch_utils import Conv1D
    cfg = json.load(open(os.path.join(adapter_dir, "adapter_config.json")))
    t, _ = load_tensors(os.path.join(adapter_dir, "adapter_model.safetensors"))
    pre = "base_model.model."
    deltas, assign, scal = {}, {}, {}
    for k in sorted(t):
        assert k.startswith(pre), k
        key = k[len(pre):]
        for a_suf, b_suf in ((".lora_A.weight", ".lora_B.weight"), (".lora_embedding_A", ".lora_embedding_B")):
            if key.endswith(a_suf):
                mod = key[: -len(a_suf)]
                A, B = t[k].double(), t[pre + mod + b_suf].double()
                r, s = config_scaling(cfg, mod)
                assert A.shape[0] == r and B.shape[1] == r, (mod, A.shape, B.shape, r)
                base = model.get_submodule(mod)
                ba = B @ A
                if isinstance(base, (Conv1D, torch.nn.Embedding)):   # weight stored (in, out) / (V, d)
                    ba = ba.T
                else:
                    assert isinstance(base, torch.nn.Linear), type(base)
                deltas[mod] = ba * s
                scal[mod] = (r, s)
                break
        else:
            if key.endswith((".lora_B.weight", ".lora_embedding_B")):
                continue
            if ".original_module." in key or ".modules_to_save." in key:
                continue        # save_embedding_layers=True on a wrapped embedding: the original (unused) / unloaded
            assign[key.replace(".base_layer.", ".")] = t[k]     # biases, modules_to_save, embeddings' base_layer
    return deltas, assign, scal


@torch.no_grad()
def apply_manual(model, deltas: dict, assign: dict) -> None:
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    for name, v in assign.items():
        p = model.get_parameter(name)
        v = v.to(p.dtype)                          # a bf16 model's copies and biases are saved BF16 (exact in f32)
        if tied and p is model.get_input_embeddings().weight and not torch.allclose(p, v, rtol=0, atol=1e-5):
            # a (trained) modules_to_save copy of a tied embedding or head replaces that module's weight only; an
            # embedding's saved base_layer weight is the shared weight itself (after merge + unmerge: rounded)
            mod = model.get_submodule(name.rpartition(".")[0])
            mod.weight = torch.nn.Parameter(p.detach().clone())
            p = mod.weight
        assert p.shape == v.shape, (name, p.shape, v.shape)
        p.copy_(v)
    for mod, d in deltas.items():
        w = model.get_submodule(mod).weight
        w.copy_((w.double() + d).float())          # in place: a tied lm_head sees the change too


def check_case_dir(ctx: Context, case: str, model_name: str, exp: dict) -> list[str]:
    from peft import PeftModel
    notes = []
    d = ctx.path("lora", case)
    t, meta = load_tensors(os.path.join(d, "expected.safetensors"))
    assert meta == {"model": model_name, "case": case}, meta
    base_cfg = json.load(open(ctx.path(exp["base_dir"], "config.json")))
    V = base_cfg["vocab_size"]
    root = exp["base_dir"].split("/models/")[0] if "/models/" in exp["base_dir"] else ""
    assert t["input_ids"].shape == (LORA_B, LORA_T) and t["input_ids"].dtype == torch.int64
    assert t["attention_mask"].dtype == torch.int64 and int(t["attention_mask"].sum()) == LORA_B * LORA_T - LORA_PAD
    for k, v in t.items():
        if k.startswith("logits"):
            assert v.shape == (LORA_B, LORA_T, V) and v.dtype == torch.float32, (k, v.shape, v.dtype)
    inputs = {"input_ids": t["input_ids"], "attention_mask": t["attention_mask"]}
    assert (t["logits_unmerged"] - t["logits"]).abs().max() < 1e-5
    merged_gap = (t["logits_merged"] - t["logits"]).abs().max().item()
    mts = exp["config_saved"].get("modules_to_save") if "adapters" not in exp else None
    tied_emb = base_cfg.get("tie_word_embeddings", True) and not (mts and "lm_head" in mts) and any(
        k.endswith(("wte.lora_embedding_A", "embed_tokens.lora_embedding_A", "lm_head.lora_A.weight"))
        for k in exp.get("saved_tensors", {}))
    if tied_emb:
        # PEFT merges the embedding delta in place into the weight lm_head shares: merged logits are another model.
        assert merged_gap > 1e-2, merged_gap
        notes.append(f"{case}: merged != unmerged (max|diff| {merged_gap:.3f}): merging the embedding (or head) changes the tied other one")
    else:
        assert merged_gap < 1e-5, (case, merged_gap)
    assert (t["logits_merged_unloaded"] - t["logits_merged"]).abs().max() < 1e-5
    with in_dir(ctx.out):
        base_logits = logits_of(load_base(ctx, model_name, root), inputs)
        cfg0 = exp["config_saved"] if "adapters" not in exp else exp["config_saved"]["a"]
        if cfg0["bias"] == "none":     # disabled: LoRA off, modules_to_save originals back; trained biases stay
            # 1e-5: the committed logits may come from another machine (its BLAS kernels differ by ~2e-6)
            assert (t["logits_disabled"] - base_logits).abs().max() < 1e-5, case
        else:
            assert (t["logits_disabled"] - base_logits).abs().max() > 1e-3, case
        if "adapters" in exp:
            return notes + check_multi(ctx, t, exp, inputs)
        # 1. PEFT loads the saved adapter and reproduces the logits
        pm = PeftModel.from_pretrained(load_base(ctx, model_name, root), f"lora/{case}").eval()
        got = logits_of(pm, inputs)
        assert (got - t["logits"]).abs().max() < 1e-5, (case, (got - t["logits"]).abs().max())
        # 2. the files read as documented (keys, scaling from the config, Conv1D/Embedding layout) give the merged logits
        model = load_base(ctx, model_name, root)
        deltas, assign, scal = adapter_deltas(model, d)
    assert sorted(deltas) == exp["lora_modules"], (sorted(deltas), exp["lora_modules"])
    for m, (r, s) in scal.items():
        assert exp["ranks"][m] == r and abs(exp["scalings"][m] - s) < 1e-15, (m, r, s)
    effect = (t["logits"] - base_logits).abs().max().item()
    assert effect > 0.1, (case, effect)               # the adapter is not a no-op
    if exp.get("dtype"):    # LoRA tensors F32 (autocast_adapter_dtype), the model's own tensors in its dtype
        for k, (dt, _) in exp["saved_tensors"].items():
            assert dt == ("float32" if ".lora_" in k else exp["dtype"]), (case, k, dt)
        notes.append(f"{case}: LoRA tensors float32, modules_to_save copies and biases {exp['dtype']}")
    apply_manual(model, deltas, assign)
    man = logits_of(model, inputs)
    gap = (man - t["logits_merged"]).abs().max().item()
    assert gap < 1e-5, (case, gap)
    notes.append(f"{case}: PEFT reload == logits; manual merge from the files vs logits_merged {gap:.1e}; "
                 f"adapter effect {effect:.2f}")
    return notes


def check_multi(ctx: Context, t: dict, exp: dict, inputs: dict) -> list[str]:
    from peft import PeftModel
    ad = lambda n: ctx.path("lora", MULTI, "adapters", n)  # noqa: E731
    pm = PeftModel.from_pretrained(load_base(ctx, MULTI_MODEL), f"lora/{MULTI}/adapters/a", adapter_name="a")
    pm.load_adapter(f"lora/{MULTI}/adapters/b", adapter_name="b")
    pm.eval()
    for n in ("a", "b"):
        pm.set_adapter(n)
        assert (logits_of(pm, inputs) - t[f"logits_{n}"]).abs().max() < 1e-5, n
    pm.base_model.set_adapter(["a", "b"])
    assert (logits_of(pm, inputs) - t["logits_ab"]).abs().max() < 1e-5
    gaps = {}
    # manual: a + b merged; lin and cat from their files; cat also as sum_i w_i s_i B_i A_i of a and b
    dl = {}
    for n in ("a", "b", "lin", "cat"):
        m = load_base(ctx, MULTI_MODEL)
        dl[n], assign, scal = adapter_deltas(m, ad(n))
        assert not assign
        for mod, (r, s) in scal.items():
            assert exp["ranks"][n][mod] == r and abs(exp["scalings"][n][mod] - s) < 1e-15
    combos = {"ab": ({**dl["a"]}, "logits_merged"), "lin": (dl["lin"], "logits_lin"), "cat": (dl["cat"], "logits_cat")}
    for mod, v in dl["b"].items():
        combos["ab"][0][mod] = combos["ab"][0].get(mod, 0) + v
    w = dict(zip(("a", "b"), MULTI_WEIGHTS))
    wsum = {}
    for n in ("a", "b"):
        for mod, v in dl[n].items():
            wsum[mod] = wsum.get(mod, 0) + w[n] * v
    combos["cat=sum w_i s_i B_i A_i"] = (wsum, "logits_cat")
    for label, (deltas, ref) in combos.items():
        m = load_base(ctx, MULTI_MODEL)
        apply_manual(m, deltas, {})
        gaps[label] = (logits_of(m, inputs) - t[ref]).abs().max().item()
        assert gaps[label] < 1e-5, (label, gaps[label])
    lin_vs = (t["logits_lin"] - t["logits_cat"]).abs().max().item()
    assert lin_vs > 1e-3
    return [f"{MULTI}: PEFT reload of a, b == logits_a/b/ab; manual merges vs PEFT: "
            + ", ".join(f"{k} {v:.1e}" for k, v in gaps.items())
            + f"; linear != cat (max|diff| {lin_vs:.3f}: linear has cross terms B_i A_j)"]


def check_lora(ctx: Context) -> list[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # the warnings of reloading were recorded when writing
        return _check_lora(ctx)


def _check_lora(ctx: Context) -> list[str]:
    notes = []
    root = ctx.path("lora")
    for c in CASES + [Case(MULTI, MULTI_MODEL, {}, "")]:
        p = os.path.join(root, c.name, "expected.json")
        if not os.path.exists(p):
            continue
        exp = json.load(open(p))
        assert exp["model"] == c.model and exp["base_dir"] == c.base_dir
        assert not os.path.exists(os.path.join(root, c.name, "README.md"))
        notes += check_case_dir(ctx, c.name, c.model, exp)
    for short in META_CASES:
        p = os.path.join(root, f"meta_{short}.json")
        if os.path.exists(p):
            j = json.load(open(p))
            if short in META_EXPECTED:
                assert (j["trainable"], j["all"]) == META_EXPECTED[short]
            notes.append(f"meta {short}: {j['print_trainable_parameters']}")
    p = os.path.join(root, "errors.json")
    if os.path.exists(p):
        assert sorted(json.load(open(p))) == sorted(ERROR_CASES)
    p = os.path.join(root, "loaded_counts.json")
    if os.path.exists(p):
        for name, j in json.load(open(p)).items():
            exp = json.load(open(os.path.join(root, name, "expected.json")))
            # is_trainable=True counts as get_peft_model did; the default freezes the adapter (biases stay trainable)
            assert j["from_pretrained_trainable"]["print_trainable_parameters"] == exp["print_trainable_parameters"], name
            assert j["from_pretrained"]["all"] == exp["all"], name
            assert (j["from_pretrained"]["trainable"] == 0) == (exp["config_saved"]["bias"] == "none"), name
        notes.append(f"loaded_counts: {len(json.load(open(p)))} cases; from_pretrained freezes the adapter")
    p = os.path.join(root, "config_counts.json")
    if os.path.exists(p):
        loaded = json.load(open(os.path.join(root, "loaded_counts.json")))
        for name, j in json.load(open(p)).items():
            exp = json.load(open(os.path.join(root, name, "expected.json")))
            # inference_mode false: as the case's own get_peft_model; true: as from_pretrained (frozen)
            assert j["inference_mode_false"]["print_trainable_parameters"] == exp["print_trainable_parameters"], name
            assert j["inference_mode_true"] == loaded[name]["from_pretrained"], name
        notes.append(f"config_counts: {len(json.load(open(p)))} cases; get_peft_model with inference_mode true counts as "
                     f"from_pretrained, with false as the case's get_peft_model")
    if os.path.isdir(root):
        size = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(root) for f in fs)
        assert size < 3e6, size
        notes.append(f"lora/ total {size:,} bytes")
    return notes


CHECKERS = {"lora": check_lora}
