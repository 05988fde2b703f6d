"""Writes the DeBERTa model fixtures (tests/fixtures/deberta_models/) that tests/parity/test_deberta.c compares
cpeft against: tiny random DeBERTa (v1) and DeBERTa-v2 models made with the real transformers classes and PEFT
LoRA on them, in the layout of make_encoder_fixtures.py (whose input, label and forward helpers this reuses):

    models/<model>/                   save_pretrained (f32; "_bf16" / "_f16" copies stored in that dtype)
    forward/<model>.safetensors       inputs, logits / last_hidden_state, hidden_states (L+1,B,T,C), loss;
                                      metadata: model, task, labels, repr, num_parameters
    grads/<case>/                     PEFT adapter + expected.safetensors (logits, loss, grad.<saved key> of every
                                      trainable tensor after loss.backward(); metadata: str(PeftModel), the
                                      trainable and total parameter counts) + expected.json

The models cover each switch: relative_attention on/off, pos_att_type c2p / p2c / both (list or "a|b" string),
share_att_key, position_buckets (log buckets reached at T = 9), max_relative_positions below T (clamped spans),
norm_rel_ebd "layer_norm", position_biased_input on/off, type_vocab_size 0 / 2, embedding_size != hidden_size
(embed_proj), pooler_hidden_act, the v2 ConvLayer (conv_kernel_size 3 with 2 groups, 5), and DeBERTa's own loss for
float (B,K) labels under problem_type null (soft-label cross-entropy, not BCE). Weights: init with initializer_range 0.2; every LayerNorm (DebertaLayerNorm
included), Linear bias and v1's q_bias / v_bias perturbed. Inputs: B=3, T=9, right-padded to 9, 6, 4 tokens.
LoRA cases include the backward cut: LoRA in layer 0 only, and rel_embeddings (with encoder.LayerNorm) in
modules_to_save next to LoRA in the top layer only.

Run from the repository root with the reference venv:
    tests/reference/.venv/bin/python tests/reference/make_deberta_model_fixtures.py
"""
import os
import shutil
import sys
import warnings

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_encoder_fixtures as enc  # noqa: E402
from oracle_common import save_tensors  # noqa: E402
from oracle_train import trainable_key_map, write_adapter  # noqa: E402

import json  # noqa: E402
import transformers  # noqa: E402

ROOT = "tests/fixtures/deberta_models"

COMMON = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, initializer_range=0.2, pad_token_id=0, layer_norm_eps=1e-7)

V3 = dict(relative_attention=True, position_buckets=8, norm_rel_ebd="layer_norm", share_att_key=True,
          pos_att_type=["p2c", "c2p"], position_biased_input=False, max_relative_positions=-1)

# name: (model type, transformers class, config overrides, seed)
MODELS = {
    "debv2_seqcls": ("deberta-v2", "DebertaV2ForSequenceClassification", dict(V3, num_labels=3), 501),
    "debv2_tokcls": ("deberta-v2", "DebertaV2ForTokenClassification",
                     dict(relative_attention=True, pos_att_type="c2p|p2c", max_relative_positions=6, type_vocab_size=2,
                          embedding_size=24, num_labels=4, hidden_act="gelu_new"), 502),
    "debv2_base": ("deberta-v2", "DebertaV2Model",
                   dict(relative_attention=True, position_buckets=6, max_relative_positions=20, share_att_key=True,
                        norm_rel_ebd="layer_norm", pos_att_type=["c2p"], position_biased_input=False), 503),
    "debv2_seqcls_norel": ("deberta-v2", "DebertaV2ForSequenceClassification",
                           dict(relative_attention=False, pos_att_type=["c2p", "p2c"], num_labels=1, pooler_hidden_act="tanh",
                                type_vocab_size=2), 504),
    "debv2_conv_tokcls": ("deberta-v2", "DebertaV2ForTokenClassification",
                          dict(V3, conv_kernel_size=3, conv_groups=2, conv_act="gelu", embedding_size=24, num_labels=3), 505),
    "debv2_conv_seqcls": ("deberta-v2", "DebertaV2ForSequenceClassification",
                          dict(relative_attention=True, pos_att_type="p2c|c2p", conv_kernel_size=5, num_labels=2), 506),
    "deb_seqcls": ("deberta", "DebertaForSequenceClassification",
                   dict(relative_attention=True, pos_att_type="c2p|p2c", position_biased_input=False, num_labels=3), 601),
    "deb_tokcls": ("deberta", "DebertaForTokenClassification",
                   dict(relative_attention=True, pos_att_type=["c2p"], max_relative_positions=5, type_vocab_size=2,
                        embedding_size=24, num_labels=5), 602),
    "deb_base": ("deberta", "DebertaModel", dict(relative_attention=True, pos_att_type=["p2c"], max_relative_positions=16), 603),
    "debv2_seqcls_soft": ("deberta-v2", "DebertaV2ForSequenceClassification",
                          dict(relative_attention=True, pos_att_type=["c2p"], max_relative_positions=4, num_labels=3,
                               soft_labels=True), 507),
    "deb_seqcls_multilabel": ("deberta", "DebertaForSequenceClassification",
                              dict(relative_attention=True, pos_att_type=["c2p", "p2c"], max_relative_positions=7, num_labels=4,
                                   problem_type="multi_label_classification", hidden_act="relu"), 604),
}
DTYPE_COPIES = {"debv2_seqcls_bf16": ("debv2_seqcls", torch.bfloat16), "deb_seqcls_f16": ("deb_seqcls", torch.float16)}

# LoRA cases: name → (model, LoraConfig kwargs)
GRADS = {
    "debv2_seqcls_default": ("debv2_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "debv2_tokcls_all": ("debv2_tokcls", dict(task_type="TOKEN_CLS", r=2, lora_alpha=4,
                                              target_modules=["query_proj", "key_proj", "value_proj", "pos_key_proj",
                                                              "pos_query_proj", "dense", "embed_proj"])),
    "debv2_seqcls_layer0": ("debv2_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query_proj", "key_proj"],
                                                 layers_to_transform=[0])),
    "debv2_seqcls_relemb": ("debv2_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["value_proj"],
                                                 layers_to_transform=[1],
                                                 modules_to_save=["classifier", "rel_embeddings", "encoder.LayerNorm"])),
    "debv2_conv_embproj": ("debv2_conv_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=8, target_modules=["embed_proj", "value_proj"],
                                                      modules_to_save=["classifier", "encoder.conv"])),
    "debv2_conv_default": ("debv2_conv_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "debv2_soft_default": ("debv2_seqcls_soft", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "deb_seqcls_default": ("deb_seqcls", dict(task_type="SEQ_CLS", r=4, lora_alpha=8)),
    "deb_tokcls_pos": ("deb_tokcls", dict(task_type="TOKEN_CLS", r=4, lora_alpha=16, target_modules=["in_proj", "pos_proj", "dense"])),
    "deb_seqcls_relemb": ("deb_seqcls", dict(task_type="SEQ_CLS", r=2, lora_alpha=4, target_modules=["in_proj"],
                                             layers_to_transform=[1], modules_to_save=["classifier", "rel_embeddings"])),
    "deb_multilabel_pq": ("deb_seqcls_multilabel", dict(task_type="SEQ_CLS", r=4, lora_alpha=8,
                                                        target_modules=["in_proj", "pos_q_proj", "pos_proj"])),
}


def labels_for(model, task: str, seed: int):
    """make_encoder_fixtures' labels, except for the soft_labels model: float (B,K) rows of class probabilities
    with problem_type null, which DeBERTa's head turns into -(log_softmax(logits)·labels).sum(-1).mean()."""
    if getattr(model.config, "soft_labels", False):
        gen = torch.Generator().manual_seed(seed)
        return "label_values", torch.softmax(2 * torch.randn(enc.B, model.config.num_labels, generator=gen), -1)
    return enc.labels_for(model, task, seed)


def make_model(name: str):
    mtype, cls, over, seed = MODELS[name]
    cfg_cls = transformers.AutoConfig.for_model(mtype).__class__
    cfg = cfg_cls(**dict(COMMON, **over))
    cfg.architectures = [cls]
    torch.manual_seed(seed)
    model = getattr(transformers, cls)(cfg)
    gen = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        for n, mod in sorted(model.named_modules(), key=lambda kv: kv[0]):
            if isinstance(mod, nn.LayerNorm) or type(mod).__name__ == "DebertaLayerNorm":
                mod.weight.add_(0.25 * torch.randn(mod.weight.shape, generator=gen))
                mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            elif isinstance(mod, nn.Linear) and mod.bias is not None:
                mod.bias.add_(0.1 * torch.randn(mod.bias.shape, generator=gen))
            if hasattr(mod, "q_bias"):
                mod.q_bias.add_(0.1 * torch.randn(mod.q_bias.shape, generator=gen))
                mod.v_bias.add_(0.1 * torch.randn(mod.v_bias.shape, generator=gen))
    return model.eval()


def write_forward(name: str, model, src_name: str):
    task = enc.task_of(type(model).__name__)
    seed = MODELS[src_name][3]
    inp = enc.inputs_for(model, seed + 1)
    lab_name, lab = labels_for(model, task, seed + 2)
    with torch.no_grad():
        out = enc.run_model(model, inp, lab_name, lab)
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
    save_tensors(os.path.join(ROOT, "forward", f"{name}.safetensors"), t,
                 {"model": name, "task": task, "labels": {"labels": "ids", "label_values": "values"}.get(lab_name, ""),
                  "repr": str(model), "num_parameters": str(sum(p.numel() for p in model.parameters()))})


def write_grads(case: str):
    from peft import LoraConfig, get_peft_model
    mname, kw = GRADS[case]
    model = make_model(mname)
    task = enc.task_of(type(model).__name__)
    seed = MODELS[mname][3]
    pm = get_peft_model(model, LoraConfig(lora_dropout=0.0, **kw))
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for n, p in sorted(pm.named_parameters()):
            if "lora_B" in n:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    pm.eval()
    kmap, extra = trainable_key_map(pm)
    d = os.path.join(ROOT, "grads", case)
    os.makedirs(d, exist_ok=True)
    cfg = write_adapter(pm, d, kmap, extra)
    inp = enc.inputs_for(model, seed + 1)
    lab_name, lab = labels_for(model, task, seed + 3)
    out = pm(**inp, labels=lab)
    out.loss.backward()
    t = dict(inp)
    t[lab_name] = lab
    t["logits"] = out.logits.detach()
    t["loss"] = out.loss.detach().reshape(1).float()
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        assert params[n].grad is not None and params[n].grad.abs().max() > 0, (case, n, "no gradient")
        t["grad." + k] = params[n].grad
    save_tensors(os.path.join(d, "expected.safetensors"), t,
                 {"task": task, "labels": {"labels": "ids", "label_values": "values"}[lab_name], "repr": str(pm),
                  "trainable": str(sum(p.numel() for p in pm.parameters() if p.requires_grad)),
                  "all": str(sum(p.numel() for p in pm.parameters()))})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump({"base_dir": f"models/{mname}", "task": task, "target_modules": sorted(cfg["target_modules"]),
                   "modules_to_save": cfg.get("modules_to_save"), "trainable": sorted(kmap.values())}, f, indent=2,
                  sort_keys=True)
        f.write("\n")


def main():
    warnings.simplefilter("ignore")
    if os.path.isdir(ROOT):
        shutil.rmtree(ROOT)
    for name in MODELS:
        model = make_model(name)
        model.save_pretrained(os.path.join(ROOT, "models", name))
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
