"""The "lora_sweep" fixture family: what PEFT 0.21.2 makes of the adapter configs on which the PEFT-matrix sweep
(sweep_peft_matrix.py) found cpeft different, so that `make test` holds those fixes without Python.

Imported by generate.py after oracle_llama (its models are used). Per case, tests/fixtures/lora_sweep/<case>/:

    peft_config.json      the config handed to PEFT and to cpeft (`cpeft adapter init --peft-config`), as written
    expected.json         what get_peft_model(base, LoraConfig.from_pretrained(...)) + save_pretrained give:
                          saved_config (adapter_config.json's text, target/exclude lists sorted as oracle_lora.py does),
                          saved_tensors (key -> [dtype, shape]), lora_modules, ranks, scalings,
                          print_trainable_parameters, repr; base_dir (relative to tests/fixtures)
    adapter/              reload cases only: PEFT's saved adapter (init_lora_weights false, seeded), and expected.json's
                          resaved_config is what PeftModel.from_pretrained + save_pretrained write for it

plus errors.json: configs PEFT refuses, with the exception type and message. Models load with the fixtures root as the
working directory, so base_model_name_or_path is "models/<name>" or "llama/models/<name>".
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings

import torch

from oracle_common import Context, Item, family, fresh_dir, write_json
from oracle_lora import (base_rel, counts, in_dir, layer_info, load_base, name_seed, normalise_saved_config,
                         saved_tensors)

QWEN2_3L_LINEAR = [f"model.layers.{i}.{m}" for i in range(3) for m in (
    "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
    "mlp.down_proj")]

# name: (model, root, config as written, what it pins down, reload). Configs other than the minimal ones give
# peft_version, so that each case differs from the old cpeft only in what it is about.
V = {"peft_version": "0.21.2"}
CASES = {
    "minimal_config_neo": ("gpt_neo_tiny", "", {"peft_type": "LORA", "target_modules": ["q_proj", "c_fc"]},
                           "only peft_type and target_modules: lora_alpha 8 and peft_version 0.21.2 as LoraConfig fills them",
                           False),
    "minimal_default_targets_gpt2": ("gpt2_tiny", "", {"peft_type": "LORA", "r": 4},
                                     "r only: alpha 8 (scaling 2), default targets, peft_version filled", False),
    "many_names_qwen2": ("qwen2_layer_types", "llama",
                         {**V, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
                          "target_modules": QWEN2_3L_LINEAR},
                         "21 full names (>= 20): matched and saved as the 7 minimal suffixes", False),
    "many_names_layer_filter_qwen2": ("qwen2_layer_types", "llama",
                                      {**V, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
                                       "target_modules": QWEN2_3L_LINEAR, "layers_to_transform": [1]},
                                      "21 full names + layers_to_transform [1]: shortened first, so the layer filter "
                                      "(which exact names skip) applies: layer 1 only", False),
    "duplicate_names_neo": ("gpt_neo_tiny", "", {**V, "peft_type": "LORA", "r": 2, "lora_alpha": 4,
                                                 "target_modules": ["q_proj", "v_proj", "q_proj"]},
                            "a name given twice: target_modules is a set in PEFT, saved once", False),
    "all_linear_excluded_qwen2": ("qwen2_layer_types", "llama",
                                  {**V, "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 2, "lora_alpha": 4,
                                   "target_modules": "all-linear", "exclude_modules": ["layers.0.self_attn.k_proj"]},
                                  "all-linear expands before exclude_modules applies: saved as the 7 suffixes", False),
    "task_seq_cls_mistral": ("mistral_tiny", "llama",
                             {**V, "peft_type": "LORA", "task_type": "SEQ_CLS", "r": 2, "lora_alpha": 4,
                              "target_modules": ["q_proj"], "modules_to_save": ["norm"], "init_lora_weights": False},
                             "SEQ_CLS appends classifier, score to modules_to_save (again on reload)", True),
    "task_question_ans_qwen2": ("qwen2_tiny", "llama",
                                {**V, "peft_type": "LORA", "task_type": "QUESTION_ANS", "r": 2, "lora_alpha": 4,
                                 "target_modules": ["q_proj"]},
                                "QUESTION_ANS appends qa_outputs; PeftModelForQuestionAnswering", False),
    "task_feature_extraction_llama": ("llama_tiny", "llama",
                                      {**V, "peft_type": "LORA", "task_type": "FEATURE_EXTRACTION", "r": 2, "lora_alpha": 4,
                                       "target_modules": ["v_proj"]},
                                      "PeftModelForFeatureExtraction", False),
}

ERROR_CASES = {
    "invalid_task_type": ("llama_tiny", "llama", {"peft_type": "LORA", "task_type": "CAUSAL", "r": 8, "lora_alpha": 8,
                                                  "target_modules": ["q_proj"]}),
}


def _peft_config(cfg: dict):
    """LoraConfig.from_pretrained of `cfg` written as adapter_config.json (PEFT's loading path, defaults included)."""
    from peft import LoraConfig
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "adapter_config.json"), "w") as f:
            json.dump(cfg, f)
        return LoraConfig.from_pretrained(tmp)


def _save(pm, d: str) -> tuple[str, dict]:
    pm.save_pretrained(d)
    readme = os.path.join(d, "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    normalise_saved_config(os.path.join(d, "adapter_config.json"))
    return open(os.path.join(d, "adapter_config.json")).read(), saved_tensors(os.path.join(d, "adapter_model.safetensors"))


def write_case(ctx: Context, name: str) -> None:
    from peft import PeftModel, get_peft_model
    model, root, cfg, what, reload = CASES[name]
    d = ctx.path("lora_sweep", name)
    fresh_dir(d)
    with open(os.path.join(d, "peft_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    with warnings.catch_warnings(), in_dir(ctx.out):
        warnings.simplefilter("ignore")
        torch.manual_seed(name_seed("lora_sweep", name, "init"))
        pm = get_peft_model(load_base(ctx, model, root), _peft_config(cfg))
        c = counts(pm)
        info = layer_info(pm, "default")
        rep = str(pm)
        with tempfile.TemporaryDirectory() as tmp:
            text, tensors = _save(pm, os.path.join(tmp, "a"))
            out = {"model": model, "base_dir": base_rel(model, root), "case": name, "description": what,
                   "saved_config": text, "saved_tensors": tensors, "repr": rep,
                   "print_trainable_parameters": c["print_trainable_parameters"], **info}
            if reload:
                shutil.copytree(os.path.join(tmp, "a"), os.path.join(d, "adapter"))
                again = PeftModel.from_pretrained(load_base(ctx, model, root), os.path.relpath(os.path.join(d, "adapter")))
                out["resaved_config"], _ = _save(again, os.path.join(tmp, "b"))
    write_json(os.path.join(d, "expected.json"), out)


def write_errors(ctx: Context) -> None:
    from peft import get_peft_model
    out = {}
    for name, (model, root, cfg) in ERROR_CASES.items():
        with warnings.catch_warnings(), in_dir(ctx.out):
            warnings.simplefilter("ignore")
            try:
                get_peft_model(load_base(ctx, model, root), _peft_config(cfg))
                raise AssertionError(f"{name}: PEFT accepted {cfg}")
            except AssertionError:
                raise
            except Exception as e:  # noqa: BLE001
                out[name] = {"base_dir": base_rel(model, root), "config": cfg, "type": type(e).__name__, "message": str(e)}
    write_json(ctx.path("lora_sweep", "errors.json"), out)


@family("lora_sweep", dirs=["lora_sweep"])
def fam_lora_sweep(ctx: Context) -> list[Item]:
    """PEFT's reading of the configs the PEFT-matrix sweep found cpeft reading differently (defaults, >= 20 targets, tasks)."""
    items = [Item(n, (lambda n=n: write_case(ctx, n)), [f"lora_sweep/{n}"]) for n in CASES]
    items.append(Item("errors", lambda: write_errors(ctx), ["lora_sweep/errors.json"]))
    return items


def check_lora_sweep(ctx: Context) -> list[str]:
    notes = []
    for name, (model, root, cfg, _, reload) in CASES.items():
        p = ctx.path("lora_sweep", name, "expected.json")
        if not os.path.exists(p):
            continue
        exp = json.load(open(p))
        saved = json.loads(exp["saved_config"])
        assert saved["peft_version"] == "0.21.2" and saved["base_model_name_or_path"] == exp["base_dir"], name
        assert len(exp["lora_modules"]) * 2 == sum(".lora_" in k for k in exp["saved_tensors"]), name
        if reload:
            assert os.path.isfile(ctx.path("lora_sweep", name, "adapter", "adapter_model.safetensors")), name
        notes.append(f"{name}: {len(exp['lora_modules'])} LoRA modules, target_modules {saved['target_modules']}, "
                     f"modules_to_save {saved['modules_to_save']}")
    return notes


CHECKERS = {"lora_sweep": check_lora_sweep}
