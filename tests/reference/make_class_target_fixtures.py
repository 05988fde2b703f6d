"""PEFT's target resolution on classification models, where the head meets target_modules.

PeftModelForSequenceClassification puts its heads ("classifier", "score") into modules_to_save before the
adapter is injected, so they are never targets, and "all-linear" leaves the SEQ_CLS head out of the list
it saves; PeftModelForTokenClassification appends them after, so a target list that reaches the head wraps
it first and the modules_to_save wrapper then refuses it (TypeError "modules_to_save cannot be applied to
modules of type <class 'peft.tuners.lora.layer.Linear'>").

For each case, on a tiny model of tests/fixtures/encoders or decoder_heads, writes
tests/fixtures/class_targets/<case>/
    adapter_config.json   the config as a user writes it (LoraConfig / IA3Config fields, target_modules
                          "all-linear" or a list)
    expected.json         {"model": <fixture model dir>, "task_type", "error": PEFT's message or null,
                           "target_modules": the sorted list PEFT saves (null on error),
                           "modules_to_save": as saved, "trainable_line": print_trainable_parameters()}
Usage: tests/reference/.venv/bin/python tests/reference/make_class_target_fixtures.py
"""
import contextlib
import io
import json
import os
import shutil
import tempfile
import warnings

import transformers
from peft import IA3Config, LoraConfig, get_peft_model

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
OUT = os.path.join(FIX, "class_targets")

ENC = "encoders/models"
DEC = "decoder_heads/models"
CASES = {
    "bert_seqcls_all_linear": (f"{ENC}/bert_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "roberta_seqcls_all_linear": (f"{ENC}/roberta_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "distilbert_seqcls_all_linear": (f"{ENC}/distilbert_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "gpt2_seqcls_all_linear": (f"{DEC}/gpt2_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "llama_seqcls_all_linear": (f"{DEC}/llama_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "bert_seqcls_list_classifier": (f"{ENC}/bert_seqcls", "LORA", dict(task_type="SEQ_CLS", target_modules=["query", "classifier"], r=2, lora_alpha=4)),
    "bert_tokcls_all_linear": (f"{ENC}/bert_tokcls", "LORA", dict(task_type="TOKEN_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "bert_tokcls_list_classifier": (f"{ENC}/bert_tokcls", "LORA", dict(task_type="TOKEN_CLS", target_modules=["query", "classifier"], r=2, lora_alpha=4)),
    "bert_tokcls_list_classifier_saved": (f"{ENC}/bert_tokcls", "LORA", dict(task_type="TOKEN_CLS", target_modules=["query", "classifier"],
                                                                              modules_to_save=["classifier"], r=2, lora_alpha=4)),
    "llama_tokcls_all_linear": (f"{DEC}/llama_tokcls_left", "LORA", dict(task_type="TOKEN_CLS", target_modules="all-linear", r=2, lora_alpha=4)),
    "gpt2_tokcls_score": (f"{DEC}/gpt2_tokcls", "LORA", dict(task_type="TOKEN_CLS", target_modules=["c_attn", "classifier"], r=2, lora_alpha=4)),
    "roberta_tokcls_all_linear_ia3": (f"{ENC}/roberta_tokcls", "IA3", dict(task_type="TOKEN_CLS", target_modules="all-linear",
                                                                          feedforward_modules=[])),
    "bert_seqcls_all_linear_ia3": (f"{ENC}/bert_seqcls", "IA3", dict(task_type="SEQ_CLS", target_modules="all-linear", feedforward_modules=[])),
}
CLASS_OF = {"SEQ_CLS": transformers.AutoModelForSequenceClassification, "TOKEN_CLS": transformers.AutoModelForTokenClassification}


def user_config(method: str, kw: dict) -> dict:
    """The config file a user writes: the fields given, as PEFT's to_dict would write them."""
    cfg = (LoraConfig if method == "LORA" else IA3Config)(**kw).to_dict()
    for k in ("target_modules", "feedforward_modules", "modules_to_save"):
        if isinstance(cfg.get(k), set):
            cfg[k] = sorted(cfg[k])
    cfg["peft_type"] = method
    cfg["task_type"] = kw["task_type"]
    return {k: (v.value if hasattr(v, "value") else v) for k, v in cfg.items()}


def main():
    warnings.simplefilter("ignore")
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    for case, (model_dir, method, kw) in CASES.items():
        d = os.path.join(OUT, case)
        os.makedirs(d)
        with open(os.path.join(d, "adapter_config.json"), "w") as f:
            json.dump(user_config(method, kw), f, indent=2, sort_keys=True)
        model = CLASS_OF[kw["task_type"]].from_pretrained(os.path.join(FIX, model_dir))
        cfg = (LoraConfig if method == "LORA" else IA3Config)(**kw)
        exp = {"model": model_dir, "task_type": kw["task_type"], "error": None, "target_modules": None,
               "modules_to_save": None, "trainable_line": None}
        try:
            pm = get_peft_model(model, cfg)
        except (TypeError, ValueError) as e:
            exp["error"] = str(e)
        else:
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                pm.print_trainable_parameters()
            exp["trainable_line"] = buf.getvalue().strip()
            with tempfile.TemporaryDirectory() as t:
                pm.save_pretrained(t)
                saved = json.load(open(os.path.join(t, "adapter_config.json")))
            tm = saved["target_modules"]
            exp["target_modules"] = sorted(tm) if isinstance(tm, list) else tm
            exp["modules_to_save"] = saved["modules_to_save"]
        with open(os.path.join(d, "expected.json"), "w") as f:
            json.dump(exp, f, indent=2, sort_keys=True)
        print(f"{case}: {exp['error'] or exp['target_modules']}")


if __name__ == "__main__":
    main()
