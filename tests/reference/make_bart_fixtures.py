#!/usr/bin/env python3
"""BART fixtures (tests/parity/test_bart.c), from transformers 5.23 + PEFT 0.21.2. Under tests/fixtures/bart/:

    models/<name>/          tiny random BartForConditionalGeneration (d_model 32), LayerNorms and final_logits_bias
                            drawn away from their init (so every check can fail):
                            bart_default  BartConfig's defaults (gelu, post-LN, no embedding scale), 2 + 2 layers
                            bart_asym     3 decoder layers against 2, encoder_ffn_dim 40 / decoder_ffn_dim 24,
                                          4 encoder heads / 2 decoder heads, relu
                            bart_scaled   scale_embedding (sqrt(d_model)), gelu_new, decoder_start_token_id 0
    <name>/expected.*       input_ids / attention_mask (padding in row 1), labels (B,Td) with -100 and
                            decoder_attention_mask (padding in row 1); logits (eval, eager attention) and loss
                            (decoder inputs shifted from the labels); logits_dec_ids (explicit decoder_input_ids,
                            no decoder mask); num_parameters and print(model)
    lora/<case>/, ia3/<case>/  PEFT's adapter (init_lora_weights / init_ia3_weights False) + expected.safetensors:
                            inputs, logits, loss and grad.<saved key> of every trainable tensor after one backward of
                            the mean loss (eval mode) + expected.json: counts, print_trainable_parameters, print(peft_model)
    steps/<case>/           10 AdamW steps as make_t5_fixtures.py's (the model's dropout 0)
    roundtrip/<case>/       cpeft -> PEFT: `cpeft adapter init --seed 7` writes adapter/, PeftModel.from_pretrained
                            reads it (logits_peft); `cpeft merge` of it read by transformers (logits_merged_transformers)

    tests/reference/.venv/bin/python tests/reference/make_bart_fixtures.py --cpeft build/cpeft

The helpers (seeds, writers, counts, adapter saving, the step loop's batches) are make_t5_fixtures.py's.
"""
import argparse
import os
import shutil
import subprocess
import tempfile
import warnings

import torch
from safetensors import safe_open

import make_t5_fixtures as t5
from make_t5_fixtures import counts, key_map, name_seed, save_adapter, save_tensors, write_json

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "bart")
B, T, TD, V = 2, 11, 7, 99
PAD = 1
SEED = 7


def rel(p):
    return os.path.relpath(p, ROOT)


MODELS = {
    "bart_default": dict(),
    "bart_asym": dict(decoder_layers=3, encoder_ffn_dim=40, decoder_ffn_dim=24, decoder_attention_heads=2,
                      activation_function="relu"),
    "bart_scaled": dict(scale_embedding=True, activation_function="gelu_new", decoder_start_token_id=0),
}


def config_for(name):
    from transformers import BartConfig
    base = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=40,
                dropout=0.1, attention_dropout=0.1, activation_dropout=0.1, pad_token_id=PAD, bos_token_id=0,
                eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2)
    base.update(MODELS[name])
    return BartConfig(**base)


def load(d):
    from transformers import BartForConditionalGeneration
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BartForConditionalGeneration.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()


def write_model(name):
    from transformers import BartForConditionalGeneration
    d = os.path.join(OUT, "models", name)
    os.makedirs(d)
    torch.manual_seed(name_seed("bart", "model", name))
    m = BartForConditionalGeneration(config_for(name))
    with torch.no_grad():  # LayerNorms away from (1, 0), a final_logits_bias that is not zero
        for n, p in m.named_parameters():
            if "layer_norm" in n or "layernorm" in n:
                p.copy_((1 if n.endswith("weight") else 0) + 0.2 * torch.randn(p.shape))
        m.final_logits_bias.copy_(0.5 * torch.randn(m.final_logits_bias.shape))
    m.save_pretrained(d)
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))
    return d


def inputs_for(name):
    g = torch.Generator().manual_seed(name_seed("bart", "inputs", name))
    ids = torch.randint(3, V, (B, T), generator=g)
    ids[:, -1] = 2  # </s>
    mask = torch.ones(B, T, dtype=torch.int64)
    ids[1, T - 3:] = PAD
    mask[1, T - 3:] = 0
    ids[1, T - 4] = 2
    lab = torch.randint(3, V, (B, TD), generator=g)
    dmask = torch.ones(B, TD, dtype=torch.int64)
    lab[1, TD - 2:] = -100
    dmask[1, TD - 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": lab, "decoder_attention_mask": dmask}


def write_expected(name, d):
    m = load(d)
    inp = inputs_for(name)
    t = dict(inp)
    with torch.no_grad():
        out = m(**inp, use_cache=False)
        t["logits"] = out.logits
        t["loss"] = out.loss.reshape(1)
        g = torch.Generator().manual_seed(name_seed("bart", "dec_ids", name))
        dec = torch.randint(0, V, (B, TD), generator=g)
        t["decoder_input_ids"] = dec
        t["logits_dec_ids"] = m(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], decoder_input_ids=dec,
                                use_cache=False).logits
    e = os.path.join(OUT, name)
    os.makedirs(e)
    save_tensors(os.path.join(e, "expected.safetensors"), t)
    write_json(os.path.join(e, "expected.json"), {
        "base_dir": rel(d), "num_parameters": sum(p.numel() for p in m.parameters()), "repr": str(m),
        "lm_head_tied": m.lm_head.weight is m.model.shared.weight, "loss": float(out.loss)})


# ---- PEFT ----------------------------------------------------------------------------------------

PEFT_CASES = [
    dict(name="lora_default", model="bart_default", method="LORA", cfg={},
         what="bart: PEFT's default targets q_proj, v_proj (encoder, decoder self- and cross-attention)"),
    dict(name="lora_asym_all_linear", model="bart_asym", method="LORA", cfg=dict(target_modules="all-linear", r=2, lora_alpha=5),
         what="3 decoder layers, 2 decoder heads, relu: all-linear (every Linear but lm_head)"),
    dict(name="lora_scaled_decoder", model="bart_scaled", method="LORA",
         cfg=dict(target_modules=r".*decoder.*(self_attn|encoder_attn)\.(q_proj|v_proj)|.*decoder.*fc1", r=4, lora_alpha=8),
         what="scale_embedding, gelu_new: LoRA on the decoder's q_proj, v_proj and fc1 only: the encoder trains nothing"),
    dict(name="lora_scaled_embed", model="bart_scaled", method="LORA", cfg=dict(target_modules=["embed_tokens", "out_proj"], r=2),
         what="LoRA on encoder.embed_tokens and decoder.embed_tokens (tied to shared, scaled by sqrt(d_model)) and out_proj"),
    dict(name="ia3_default", model="bart_default", method="IA3", cfg={},
         what="bart IA3: PEFT's defaults q_proj, v_proj, fc2 (fc2 feed-forward) in both stacks and the cross-attention"),
    dict(name="ia3_asym", model="bart_asym", method="IA3", cfg={},
         what="bart IA3 on the asymmetric model (decoder ffn 24, 2 decoder heads)"),
]


def peft_model(case, base):
    from peft import IA3Config, LoraConfig, get_peft_model
    torch.manual_seed(name_seed("bart", "init", case["name"]))
    if case["method"] == "LORA":
        cfg = LoraConfig(task_type="SEQ_2_SEQ_LM", init_lora_weights=False, **case["cfg"])
    else:
        cfg = IA3Config(task_type="SEQ_2_SEQ_LM", init_ia3_weights=False, **case["cfg"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(base, cfg).eval()


def write_peft_case(case):
    base_dir = os.path.join(OUT, "models", case["model"])
    pm = peft_model(case, load(base_dir))
    d = os.path.join(OUT, "ia3" if case["method"] == "IA3" else "lora", case["name"])
    save_adapter(pm, d)
    inp = inputs_for(case["name"])
    kmap = key_map(pm)
    out = pm(**inp, use_cache=False)
    out.loss.backward()
    t = dict(inp, logits=out.logits.detach(), loss=out.loss.detach().reshape(1))
    for n, p in pm.named_parameters():
        if p.requires_grad:
            t["grad." + kmap[n]] = p.grad
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    enc_trains = any(p.requires_grad for n, p in pm.named_parameters() if ".encoder." in n)
    write_json(os.path.join(d, "expected.json"), dict(counts(pm), base_dir=rel(base_dir), description=case["what"],
                                                      repr=str(pm), encoder_trains=enc_trains, task_type="SEQ_2_SEQ_LM"))


def write_steps(name, model):
    base_dir = os.path.join(OUT, "models", model)
    base = load(base_dir)
    for mod in base.modules():  # the model's dropout off (cpeft: model_dropout 0): BART's are floats on the modules
        for attr in ("dropout", "activation_dropout"):
            if isinstance(getattr(mod, attr, None), float):
                setattr(mod, attr, 0.0)
    case = dict(name=name, method="LORA", cfg=dict(r=4, lora_alpha=8, lora_dropout=0.0,
                                                   target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc2"]))
    pm = peft_model(case, base)
    d = os.path.join(OUT, "steps", name)
    save_adapter(pm, d)
    kmap = key_map(pm)
    c = t5.STEP_CFG
    ga = c["gradient_accumulation_steps"]
    batches, t = [], {}
    for i in range(c["num_training_steps"] * ga):
        g = torch.Generator().manual_seed(name_seed("bart", "steps", name, str(i)))
        Tb, Tdb = 5 + i % 4, 3 + i % 3
        ids = torch.randint(3, V, (2, Tb), generator=g)
        mask = torch.ones(2, Tb, dtype=torch.int64)
        mask[1, Tb - 1 - i % 2:] = 0
        ids[mask == 0] = PAD
        lab = torch.randint(3, V, (2, Tdb), generator=g)
        if i % 2:
            lab[0, Tdb - 1:] = -100
        mb = {"input_ids": ids, "attention_mask": mask, "labels": lab}
        batches.append(mb)
        for k, v in mb.items():
            t[f"{k}_{i}"] = v
    losses, norms, lrs = t5.train_s2s_steps(pm, batches, c)
    for n, p in pm.named_parameters():
        if p.requires_grad:
            t["final." + kmap[n]] = p.detach()
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), {"base_dir": rel(base_dir), "config": c, "losses": losses,
                                                  "grad_norms": norms, "lrs": lrs})


ROUNDTRIP = [
    dict(name="rt_lora_default", model="bart_default", config={"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": 4,
                                                               "lora_alpha": 8, "init_lora_weights": False}),
    dict(name="rt_ia3_asym", model="bart_asym", config={"peft_type": "IA3", "task_type": "SEQ_2_SEQ_LM",
                                                        "init_ia3_weights": False}),
]


def write_roundtrip(case, cpeft):
    from peft import PeftModel
    d = os.path.join(OUT, "roundtrip", case["name"])
    os.makedirs(d)
    write_json(os.path.join(d, "peft_config.json"), case["config"])
    adapter = os.path.join(d, "adapter")
    base_dir = os.path.join(OUT, "models", case["model"])
    subprocess.run([cpeft, "adapter", "init", "--model", rel(base_dir), "--peft-config", rel(os.path.join(d, "peft_config.json")),
                    "--seed", str(SEED), "--out", rel(adapter)], check=True, capture_output=True, cwd=ROOT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(load(base_dir), rel(adapter)).eval()
    inp = inputs_for(case["name"])
    with torch.no_grad():
        out = pm(**inp, use_cache=False)
    t = dict(inp, logits_peft=out.logits)
    with tempfile.TemporaryDirectory() as tmp:  # cpeft merge -> transformers (final_logits_bias written too)
        merged = os.path.join(tmp, "merged")
        subprocess.run([cpeft, "merge", "--model", rel(base_dir), "--adapter", rel(adapter), "--out", merged], check=True,
                       capture_output=True, cwd=ROOT)
        with safe_open(os.path.join(merged, "model.safetensors"), "pt") as f:
            assert "final_logits_bias" in f.keys(), "cpeft merge left out final_logits_bias"
        with torch.no_grad():
            t["logits_merged_transformers"] = load(merged)(**inp, use_cache=False).logits
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), {"base_dir": rel(base_dir), "seed": SEED,
                                                  "how": "cpeft adapter init (seed) -> PeftModel.from_pretrained; "
                                                         "cpeft merge -> transformers"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpeft", help="build/cpeft (the roundtrip cases run it; without it they are not written)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for name in MODELS:
        write_expected(name, write_model(name))
    for case in PEFT_CASES:
        write_peft_case(case)
    write_steps("lora_default", "bart_default")
    if a.cpeft:
        cpeft = os.path.abspath(a.cpeft)
        for case in ROUNDTRIP:
            write_roundtrip(case, cpeft)


if __name__ == "__main__":
    main()
