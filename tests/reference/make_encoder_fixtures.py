"""Writes the encoder fixtures (tests/fixtures/encoders/) that tests/parity/test_encoders.c compares cpeft against:
tiny random BERT-family models made with the real transformers classes (5.23) and PEFT (0.21.2) LoRA on them.

    models/<model>/                   save_pretrained of a *ForSequenceClassification / *ForTokenClassification /
                                      *Model (f32; "_bf16" / "_f16" copies stored in that dtype)
    forward/<model>.safetensors       inputs (input_ids, attention_mask, token_type_ids, labels or label_values)
                                      and what the model returns: logits (B,K) / (B,T,K) / last_hidden_state
                                      (B,T,C) for *Model, hidden_states (L+1,B,T,C), loss (1)
                                      metadata: model, task (PEFT's name), labels ("ids" / "values" / "")
    grads/<case>/                     PEFT adapter (LoraConfig with task_type SEQ_CLS / TOKEN_CLS, so the head is in
                                      modules_to_save; lora_B drawn non-zero) + expected.safetensors: the inputs,
                                      logits and loss with the adapter, and grad.<saved key> of every trainable
                                      tensor after loss.backward(); expected.json: base_dir, task, target_modules

Weights: init with initializer_range 0.2 (so that a wrong detail shows in the logits), LayerNorm weights and
biases perturbed. Inputs: B=3, T=9, rows right-padded to 9, 6 and 4 real tokens, pad id 0 at the padding,
token_type_ids 0 then 1 (a sentence pair) on real tokens (zeros with type_vocab_size 1).
The forward fixtures' metadata also hold str(model) ("repr") and the parameter count ("num_parameters").

Run from the repository root with the reference venv:
    tests/reference/.venv/bin/python tests/reference/make_encoder_fixtures.py
"""
import json
import os
import shutil
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import save_tensors  # noqa: E402
from oracle_train import trainable_key_map, write_adapter  # noqa: E402

import transformers  # noqa: E402

ROOT = "tests/fixtures/encoders"
B, T = 3, 9
LENGTHS = [9, 6, 4]

COMMON = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, type_vocab_size=2, initializer_range=0.2, pad_token_id=0)
# DistilBertConfig names the same sizes differently (dim, n_layers, n_heads, hidden_dim) and has no token types
DISTIL = dict(vocab_size=99, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64,
              initializer_range=0.2, pad_token_id=0)
# Decoders with their classification heads (tests/fixtures/decoder_heads/, same layout): pad_token_id 0
DEC_ROOT = "tests/fixtures/decoder_heads"
_GPT2 = dict(n_embd=32, n_head=4, n_layer=2, vocab_size=99, n_positions=64, activation_function="gelu_new",
             layer_norm_epsilon=1e-5, initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=1, embd_pdrop=0.0, attn_pdrop=0.0, resid_pdrop=0.0)
_NEO = dict(hidden_size=32, num_heads=4, num_layers=2, attention_types=[[["global", "local"], 1]], window_size=4,
            vocab_size=99, max_position_embeddings=64, activation_function="gelu_new", layer_norm_epsilon=1e-5,
            initializer_range=0.2, pad_token_id=0, bos_token_id=1, eos_token_id=1, embed_dropout=0.0, attention_dropout=0.0, resid_dropout=0.0)
_LLAMA = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              vocab_size=99, max_position_embeddings=64, initializer_range=0.2, pad_token_id=0, rms_norm_eps=1e-5)
COMMON_OF = {"distilbert": DISTIL, "gpt2": _GPT2, "gpt_neo": _NEO, "llama": _LLAMA, "mistral": dict(_LLAMA, sliding_window=None),
             "qwen2": _LLAMA}
DECODERS = {"gpt2", "gpt_neo", "llama", "mistral", "qwen2"}

# name: (model type, transformers class, config overrides, seed)
MODELS = {
    "bert_seqcls": ("bert", "BertForSequenceClassification", dict(num_labels=3), 101),
    "bert_seqcls_regression": ("bert", "BertForSequenceClassification",
                               dict(num_labels=1, hidden_act="gelu_new", layer_norm_eps=1e-5), 102),
    "bert_seqcls_multilabel": ("bert", "BertForSequenceClassification",
                               dict(num_labels=4, problem_type="multi_label_classification", hidden_act="relu",
                                    id2label={"0": "a", "1": "b", "2": "c", "3": "d"},
                                    label2id={"a": 0, "b": 1, "c": 2, "d": 3}), 103),
    "bert_tokcls": ("bert", "BertForTokenClassification", dict(num_labels=5, hidden_act="silu", type_vocab_size=3), 104),
    "bert_base": ("bert", "BertModel", dict(), 105),
    "roberta_seqcls": ("roberta", "RobertaForSequenceClassification", dict(num_labels=2, pad_token_id=1, type_vocab_size=1), 201),
    "roberta_tokcls": ("roberta", "RobertaForTokenClassification",
                       dict(num_labels=4, pad_token_id=1, hidden_act="gelu_new", classifier_dropout=0.2), 202),
    "roberta_base": ("roberta", "RobertaModel", dict(pad_token_id=1, type_vocab_size=1), 203),
    "xlmr_seqcls": ("xlm-roberta", "XLMRobertaForSequenceClassification",
                    dict(num_labels=3, pad_token_id=1, type_vocab_size=1, problem_type="single_label_classification"), 301),
    "xlmr_tokcls": ("xlm-roberta", "XLMRobertaForTokenClassification", dict(num_labels=3, pad_token_id=1, type_vocab_size=1), 302),
    # DistilBERT: pre_classifier + ReLU + classifier; sinusoidal_pos_embds (the table is still saved and loaded)
    "distilbert_seqcls": ("distilbert", "DistilBertForSequenceClassification", dict(num_labels=3), 401),
    "distilbert_tokcls": ("distilbert", "DistilBertForTokenClassification",
                          dict(num_labels=4, activation="relu", sinusoidal_pos_embds=True), 402),
    "distilbert_base": ("distilbert", "DistilBertModel", dict(sinusoidal_pos_embds=True), 403),
    # ELECTRA: embedding_size != hidden_size gives embeddings_project; ElectraClassificationHead (dense, gelu, out_proj)
    "electra_seqcls": ("electra", "ElectraForSequenceClassification", dict(num_labels=3, embedding_size=16), 501),
    "electra_tokcls": ("electra", "ElectraForTokenClassification",
                       dict(num_labels=4, embedding_size=32, hidden_act="gelu_new"), 502),
    "electra_base": ("electra", "ElectraModel", dict(embedding_size=24), 503),
    # LayoutLM: 2-D position embeddings from bbox (x0, y0, x1, y1; h = y1 - y0, w = x1 - x0)
    "layoutlm_seqcls": ("layoutlm", "LayoutLMForSequenceClassification",
                        dict(num_labels=2, max_2d_position_embeddings=50), 601),
    "layoutlm_tokcls": ("layoutlm", "LayoutLMForTokenClassification",
                        dict(num_labels=5, max_2d_position_embeddings=40, type_vocab_size=1), 602),
    "layoutlm_base": ("layoutlm", "LayoutLMModel", dict(max_2d_position_embeddings=30), 603),
}
# decoder heads: "_left" models are run with left padding
MODELS.update({
    "gpt2_seqcls": ("gpt2", "GPT2ForSequenceClassification", dict(num_labels=3), 701),
    "gpt2_seqcls_left": ("gpt2", "GPT2ForSequenceClassification", dict(num_labels=3), 701),
    "gpt2_seqcls_nopad": ("gpt2", "GPT2ForSequenceClassification", dict(num_labels=2, pad_token_id=None), 702),
    "gpt2_tokcls": ("gpt2", "GPT2ForTokenClassification", dict(num_labels=4), 703),
    "gpt_neo_seqcls_left": ("gpt_neo", "GPTNeoForSequenceClassification",
                            dict(num_labels=2, problem_type="multi_label_classification"), 801),
    "gpt_neo_tokcls": ("gpt_neo", "GPTNeoForTokenClassification", dict(num_labels=3), 802),
    "llama_seqcls": ("llama", "LlamaForSequenceClassification", dict(num_labels=3), 901),
    "llama_seqcls_left": ("llama", "LlamaForSequenceClassification", dict(num_labels=1), 902),
    "llama_tokcls_left": ("llama", "LlamaForTokenClassification", dict(num_labels=4), 903),
    "mistral_seqcls": ("mistral", "MistralForSequenceClassification", dict(num_labels=2), 911),
    "qwen2_seqcls_left": ("qwen2", "Qwen2ForSequenceClassification", dict(num_labels=3), 921),
    "qwen2_tokcls": ("qwen2", "Qwen2ForTokenClassification", dict(num_labels=2), 922),
})

# dtype copies: name → (source model, dtype)
DTYPE_COPIES = {"bert_seqcls_bf16": ("bert_seqcls", torch.bfloat16), "bert_tokcls_f16": ("bert_tokcls", torch.float16)}

TASK_OF = {"ForSequenceClassification": "SEQ_CLS", "ForTokenClassification": "TOKEN_CLS"}

# LoRA cases: name → (model, LoraConfig kwargs)
GRADS = {
    "bert_seqcls_default": ("bert_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "bert_seqcls_regression": ("bert_seqcls_regression", dict(task_type="SEQ_CLS", r=2, lora_alpha=4,
                                                              target_modules=["query", "key", "value", "dense"])),
    "bert_seqcls_multilabel": ("bert_seqcls_multilabel", dict(task_type="SEQ_CLS", r=4, lora_alpha=16)),
    "bert_tokcls_dense": ("bert_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=8,
                                              target_modules=["query", "value", "dense"])),
    "roberta_seqcls_default": ("roberta_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "roberta_tokcls_kv": ("roberta_tokcls", dict(task_type="TOKEN_CLS", r=2, lora_alpha=8, target_modules=["key", "value"])),
    "xlmr_seqcls_default": ("xlmr_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "xlmr_tokcls_default": ("xlmr_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=8)),
    # DistilBERT has no PEFT default targets
    "distilbert_seqcls_qv": ("distilbert_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["q_lin", "v_lin"])),
    "distilbert_tokcls_all": ("distilbert_tokcls", dict(task_type="TOKEN_CLS", r=2, lora_alpha=4,
                                                        target_modules=["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"])),
    "electra_seqcls_default": ("electra_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "electra_seqcls_proj": ("electra_seqcls", dict(task_type="SEQ_CLS", r=2, lora_alpha=8,
                                                   target_modules=["query", "value", "embeddings_project"])),
    "electra_tokcls_default": ("electra_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=8)),
    "layoutlm_seqcls_default": ("layoutlm_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "gpt2_seqcls_default": ("gpt2_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "gpt2_seqcls_left_default": ("gpt2_seqcls_left", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "gpt_neo_tokcls_default": ("gpt_neo_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=8)),
    "llama_seqcls_left_default": ("llama_seqcls_left", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "llama_tokcls_left_mlp": ("llama_tokcls_left", dict(task_type="TOKEN_CLS", r=2, lora_alpha=4,
                                                        target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"])),
    "qwen2_seqcls_left_default": ("qwen2_seqcls_left", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "layoutlm_tokcls_emb": ("layoutlm_tokcls", dict(task_type="TOKEN_CLS", r=2, lora_alpha=4,
                                                    target_modules=["query", "value", "x_position_embeddings",
                                                                    "h_position_embeddings"])),
}


def task_of(cls: str) -> str:
    for suffix, task in TASK_OF.items():
        if cls.endswith(suffix):
            return task
    return "FEATURE_EXTRACTION"


def make_model(name: str):
    mtype, cls, over, seed = MODELS[name]
    cfg_cls = transformers.AutoConfig.for_model(mtype).__class__
    cfg = cfg_cls(**dict(COMMON_OF.get(mtype, COMMON), **over))
    cfg.architectures = [cls]
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(cfg)
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
            if isinstance(mod, nn.LayerNorm) or type(mod).__name__.endswith("RMSNorm"):
                mod.weight.add_(0.25 * torch.randn(mod.weight.shape, generator=gen))
                if getattr(mod, "bias", None) is not None:
                    mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            elif isinstance(mod, nn.Linear) and mod.bias is not None:
                mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
    return model.eval()


def root_of(name: str) -> str:
    return DEC_ROOT if MODELS[name][0] in DECODERS else ROOT


def inputs_for(model, seed: int, name: str = "") -> dict:
    gen = torch.Generator().manual_seed(seed)
    if model.config.model_type in DECODERS:  # no token types; right or left padding; B=1 without a pad token
        pad = model.config.pad_token_id
        ids = torch.randint(2, model.config.vocab_size, (B, T), generator=gen)
        mask = torch.zeros(B, T, dtype=torch.long)
        for b, n in enumerate(LENGTHS):
            real = slice(T - n, T) if name.endswith("_left") else slice(0, n)
            mask[b, real] = 1
        if pad is None:
            return {"input_ids": ids[:1], "attention_mask": torch.ones(1, T, dtype=torch.long)}
        ids[mask == 0] = pad
        return {"input_ids": ids, "attention_mask": mask}
    V, tv = model.config.vocab_size, getattr(model.config, "type_vocab_size", None)
    pad = model.config.pad_token_id
    ids = torch.randint(2, V, (B, T), generator=gen)
    mask = torch.zeros(B, T, dtype=torch.long)
    tt = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(LENGTHS):
        mask[b, :n] = 1
        ids[b, n:] = pad
        if tv is not None and tv > 1:
            tt[b, n // 2:n] = 1 if tv < 3 else torch.randint(1, tv, (1,), generator=gen).item()
    out = {"input_ids": ids, "attention_mask": mask}
    if model.config.model_type != "distilbert":  # DistilBERT takes no token_type_ids
        out["token_type_ids"] = tt
    if model.config.model_type == "layoutlm":    # boxes x0 <= x1, y0 <= y1 inside [0, max_2d), zeros at padding
        M = model.config.max_2d_position_embeddings
        lo = torch.randint(0, M // 2, (B, T, 2), generator=gen)
        hi = lo + torch.randint(0, M // 2, (B, T, 2), generator=gen)
        box = torch.cat([lo, hi], dim=-1)
        box[mask == 0] = 0
        out["bbox"] = box
    return out


def labels_for(model, task: str, seed: int, mask=None):
    """(name in the batch, tensor): class ids (B) / (B,T) with -100 at padding and one more position, or float
    values (B) / (B,K) for regression and multi-label."""
    gen = torch.Generator().manual_seed(seed)
    K = model.config.num_labels
    Bn = B if model.config.pad_token_id is not None or model.config.model_type not in DECODERS else 1
    if task == "TOKEN_CLS":
        y = torch.randint(0, K, (B, T), generator=gen)
        for b, n in enumerate(LENGTHS):
            if mask is None:
                y[b, n:] = -100
            y[b, 0] = -100
        if mask is not None:
            y[mask == 0] = -100
        return "labels", y
    if task == "SEQ_CLS":
        if K == 1:
            return "label_values", torch.randn(Bn, generator=gen)
        if model.config.problem_type == "multi_label_classification":
            return "label_values", (torch.rand(Bn, K, generator=gen) > 0.5).float()
        return "labels", torch.randint(0, K, (Bn,), generator=gen)
    return "", None


def run_model(model, inp: dict, lab_name: str, lab):
    kw = dict(inp, output_hidden_states=True)
    if lab is not None:
        kw["labels"] = lab
    return model(**kw)


def write_forward(name: str, model, src_name: str):
    task = task_of(type(model).__name__)
    seed = MODELS[src_name][3]
    inp = inputs_for(model, seed + 1, src_name)
    lab_name, lab = labels_for(model, task, seed + 2, inp["attention_mask"])
    with torch.no_grad():
        out = run_model(model, inp, lab_name, lab)
    t = dict(inp)
    if lab is not None:
        t[lab_name] = lab
    if task == "FEATURE_EXTRACTION":
        t["logits"] = out.last_hidden_state
        t["loss"] = torch.zeros(1)
    else:
        t["logits"] = out.logits
        t["loss"] = out.loss.reshape(1).float()
    t["hidden_states"] = torch.stack(out.hidden_states)
    save_tensors(os.path.join(root_of(src_name), "forward", f"{name}.safetensors"), t,
                 {"model": name, "task": task, "labels": {"labels": "ids", "label_values": "values"}.get(lab_name, ""),
                  "repr": str(model), "num_parameters": str(sum(p.numel() for p in model.parameters()))})


def write_grads(case: str):
    from peft import LoraConfig, get_peft_model
    mname, kw = GRADS[case]
    model = make_model(mname)
    task = task_of(type(model).__name__)
    seed = MODELS[mname][3]
    pm = get_peft_model(model, LoraConfig(lora_dropout=0.0, **kw))
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    pm.eval()
    kmap, extra = trainable_key_map(pm)
    d = os.path.join(root_of(mname), "grads", case)
    os.makedirs(d, exist_ok=True)
    cfg = write_adapter(pm, d, kmap, extra)
    inp = inputs_for(model, seed + 1, mname)
    lab_name, lab = labels_for(model, task, seed + 3, inp["attention_mask"])
    out = pm(**inp, labels=lab)
    out.loss.backward()
    t = dict(inp)
    t[lab_name] = lab
    t["logits"] = out.logits.detach()
    t["loss"] = out.loss.detach().reshape(1).float()
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        t["grad." + k] = params[n].grad
    save_tensors(os.path.join(d, "expected.safetensors"), t,
                 {"task": task, "labels": {"labels": "ids", "label_values": "values"}[lab_name]})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"base_dir": f"models/{mname}", "task": task, "target_modules": sorted(cfg["target_modules"]),
                   "modules_to_save": cfg.get("modules_to_save"), "trainable": sorted(kmap.values())}, f, indent=2,
                  sort_keys=True)
        f.write("\n")


def main():
    warnings.simplefilter("ignore")
    for r in (ROOT, DEC_ROOT):
        if os.path.isdir(r):
            shutil.rmtree(r)
    for name in MODELS:
        model = make_model(name)
        model.save_pretrained(os.path.join(root_of(name), "models", name))
        write_forward(name, model, name)
    for name, (src, dtype) in DTYPE_COPIES.items():
        model = make_model(src)
        model.to(dtype).save_pretrained(os.path.join(ROOT, "models", name))
        model = model.float()  # the same rounded weights, computed in f32 (cpeft widens them as it reads)
        model.config.dtype = torch.float32
        write_forward(name, model, src)
    for case in GRADS:
        write_grads(case)
    print("wrote", ROOT)


if __name__ == "__main__":
    main()
