#!/usr/bin/env python3
"""T5 / mT5 fixtures (tests/parity/test_t5.c), from transformers 5.23 + PEFT 0.21.2. Under tests/fixtures/t5/:

    models/<name>/          tiny random T5ForConditionalGeneration / MT5ForConditionalGeneration (d_model 32):
                            t5_v10   relu (v1.0), lm_head tied to shared, decoder output scaled by d_model^-0.5,
                                     relative buckets 8 / max distance 20 (log buckets within 11 tokens)
                            t5_v11   gated-gelu (v1.1 / Flan), tie_word_embeddings false (no rescale) and an lm_head
                                     of its own in the checkpoint (transformers 5 then leaves it untied)
                            mt5      MT5Config defaults (gated-gelu), an lm_head of its own, never rescaled
                            t5_asym  num_decoder_layers 3 != num_layers 2, num_heads * d_kv = 24 != d_model,
                                     gated-silu, buckets 8 / 16
                            t5_v10_bf16  t5_v10's weights stored in bfloat16
    <name>/expected.*       input_ids / attention_mask (padding in row 1), labels (B,Td) with -100 and
                            decoder_attention_mask (padding in row 1); logits (eval, eager attention), loss and
                            decoder_hidden_states
                            (decoder inputs shifted from the labels); logits_dec_ids (explicit decoder_input_ids,
                            no decoder mask); num_parameters and print(model)
    lora/<case>/, ia3/<case>/  PEFT's adapter (init_lora_weights / init_ia3_weights False, so every check can fail)
                            + expected.safetensors: inputs, logits, loss and grad.<saved key> of every trainable tensor
                            after one backward of the mean loss (eval mode) + expected.json: counts, the
                            print_trainable_parameters line, print(peft_model), which stack trains
    steps/<case>/           10 AdamW steps (the model's and LoRA's dropout 0; accumulation 2, clip 1.0, linear
                            schedule with warmup 2; each micro-batch's loss weighted by its labels / the step's, as
                            cpeft's trainer normalises): the initial adapter, micro-batches, losses, grad norms, lrs,
                            final.<key>
    roundtrip/<case>/       cpeft -> PEFT: `cpeft adapter init --seed 7` writes adapter/, PeftModel.from_pretrained
                            reads it (logits_peft); `cpeft merge` writes a checkpoint transformers reads
                            (logits_merged_transformers)

    tests/reference/.venv/bin/python tests/reference/make_t5_fixtures.py --cpeft build/cpeft
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile
import warnings
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "t5")
B, T, TD = 2, 11, 7
SEED = 7
STEP_CFG = dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, scheduler="linear", num_warmup_steps=2,
                num_training_steps=10, gradient_accumulation_steps=2, max_grad_norm=1.0)


def name_seed(*parts):
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


def rel(p):
    return os.path.relpath(p, ROOT)


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_tensors(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in sorted(tensors.items())}, path, metadata={"format": "pt"})


MODELS = {
    "t5_v10": dict(cls="t5", cfg=dict(feed_forward_proj="relu", decoder_start_token_id=0, relative_attention_num_buckets=8,
                                      relative_attention_max_distance=20), own_head=False),
    "t5_v11": dict(cls="t5", cfg=dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, decoder_start_token_id=0),
                   own_head=True),
    "mt5": dict(cls="mt5", cfg=dict(), own_head=True),
    "t5_asym": dict(cls="t5", cfg=dict(feed_forward_proj="gated-silu", num_decoder_layers=3, d_kv=6, d_ff=40,
                                       decoder_start_token_id=0, relative_attention_num_buckets=8,
                                       relative_attention_max_distance=16), own_head=False),
}


def config_for(spec):
    from transformers import MT5Config, T5Config
    base = dict(vocab_size=99, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4, dropout_rate=0.1)
    base.update(spec["cfg"])
    return (MT5Config if spec["cls"] == "mt5" else T5Config)(**base)


def model_class(kind):
    import transformers as tf
    return tf.MT5ForConditionalGeneration if kind == "mt5" else tf.T5ForConditionalGeneration


def load(d, kind):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_class(kind).from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()


def write_model(name, spec):
    from safetensors.torch import load_file, save_file
    d = os.path.join(OUT, "models", name)
    os.makedirs(d)
    torch.manual_seed(name_seed("t5", "model", name))
    m = model_class(spec["cls"])(config_for(spec))
    with torch.no_grad():  # the default init is far from a trained model's scale: smaller, so the logits stay O(1)
        for n, p in m.named_parameters():
            if "layer_norm" in n:
                p.copy_(1 + 0.2 * torch.randn(p.shape))
    m.save_pretrained(d)
    if spec["own_head"]:
        sd = load_file(os.path.join(d, "model.safetensors"))
        g = torch.Generator().manual_seed(name_seed("t5", "lm_head", name))
        # d_model^-0.5: logits of the tied models' scale (transformers' init draws N(0, 1), logits in the tens)
        sd["lm_head.weight"] = torch.randn(sd["shared.weight"].shape, generator=g) * sd["shared.weight"].shape[1] ** -0.5
        save_file(sd, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    for f in os.listdir(d):
        if f not in ("config.json", "model.safetensors"):
            os.remove(os.path.join(d, f))
    return d


def inputs_for(name, V=99, labels=True):
    g = torch.Generator().manual_seed(name_seed("t5", "inputs", name))
    ids = torch.randint(2, V, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.int64)
    ids[1, T - 3:] = 0
    mask[1, T - 3:] = 0
    lab = torch.randint(2, V, (B, TD), generator=g)
    dmask = torch.ones(B, TD, dtype=torch.int64)
    lab[1, TD - 2:] = -100
    dmask[1, TD - 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": lab, "decoder_attention_mask": dmask}


def write_expected(name, spec, d):
    m = load(d, spec["cls"])
    inp = inputs_for(name)
    t = dict(inp)
    with torch.no_grad():
        out = m(**inp, use_cache=False, output_hidden_states=True)
        t["logits"] = out.logits
        t["loss"] = out.loss.reshape(1)
        t["decoder_hidden_states"] = torch.stack(out.decoder_hidden_states)  # (L_dec+1, B, Td, C)
        g = torch.Generator().manual_seed(name_seed("t5", "dec_ids", name))
        dec = torch.randint(0, 99, (B, TD), generator=g)
        t["decoder_input_ids"] = dec
        t["logits_dec_ids"] = m(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], decoder_input_ids=dec,
                                use_cache=False).logits
    e = os.path.join(OUT, name)
    os.makedirs(e)
    save_tensors(os.path.join(e, "expected.safetensors"), t)
    write_json(os.path.join(e, "expected.json"), {
        "base_dir": rel(d), "num_parameters": sum(p.numel() for p in m.parameters()), "repr": str(m),
        "lm_head_tied": m.lm_head.weight is m.shared.weight, "loss": float(out.loss)})


def write_bf16(src):
    from safetensors.torch import load_file, save_file
    d = os.path.join(OUT, "models", "t5_v10_bf16")
    os.makedirs(d)
    shutil.copy(os.path.join(src, "config.json"), d)
    sd = load_file(os.path.join(src, "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, os.path.join(d, "model.safetensors"), metadata={"format": "pt"})
    m = load(d, "t5")  # bf16 values widened to f32, as cpeft computes
    inp = inputs_for("t5_v10_bf16")
    with torch.no_grad():
        out = m(**inp, use_cache=False)
    e = os.path.join(OUT, "t5_v10_bf16")
    os.makedirs(e)
    save_tensors(os.path.join(e, "expected.safetensors"), dict(inp, logits=out.logits, loss=out.loss.reshape(1)))
    write_json(os.path.join(e, "expected.json"), {"base_dir": rel(d), "num_parameters": sum(p.numel() for p in m.parameters()),
                                                  "repr": str(m), "lm_head_tied": True, "loss": float(out.loss)})


# ---- PEFT ----------------------------------------------------------------------------------------

PEFT_CASES = [
    dict(name="lora_v10_default", model="t5_v10", method="LORA", cfg={},
         what="t5 v1.0: PEFT's default targets q, v (encoder self-attention, decoder self- and cross-attention)"),
    dict(name="lora_v11_decoder", model="t5_v11", method="LORA",
         cfg=dict(target_modules=r".*decoder.*(SelfAttention|EncDecAttention)\.(q|v)", r=4, lora_alpha=8),
         what="t5 v1.1: LoRA on the decoder's q and v only (a regex): the encoder trains nothing"),
    dict(name="lora_mt5_all_linear", model="mt5", method="LORA", cfg=dict(target_modules="all-linear", r=2, lora_alpha=5),
         what="mt5: all-linear (every Linear but lm_head), untied lm_head"),
    dict(name="lora_asym_default", model="t5_asym", method="LORA", cfg=dict(r=3, lora_alpha=6),
         what="3 decoder blocks, inner 24 != d_model: default targets q, v"),
    dict(name="lora_asym_relbias", model="t5_asym", method="LORA", cfg=dict(target_modules=["relative_attention_bias", "o"], r=2),
         what="LoRA on both stacks' relative_attention_bias tables (Embedding) and o: every layer's bias gradient"),
    dict(name="lora_v11_embed", model="t5_v11", method="LORA", cfg=dict(target_modules=["embed_tokens", "wo"], r=2),
         what="t5 v1.1: LoRA on encoder.embed_tokens and decoder.embed_tokens (tied to shared) and wo"),
    dict(name="ia3_v11_default", model="t5_v11", method="IA3", cfg={},
         what="t5 v1.1 IA3: PEFT's defaults k, v, wo (wo feed-forward) in both stacks and the cross-attention"),
    dict(name="ia3_mt5_default", model="mt5", method="IA3", cfg={},
         what="mt5 IA3: PEFT's defaults k, v, wi_1 (no feed-forward modules)"),
]


def peft_model(case, base):
    from peft import IA3Config, LoraConfig, get_peft_model
    torch.manual_seed(name_seed("t5", "init", case["name"]))
    if case["method"] == "LORA":
        cfg = LoraConfig(task_type="SEQ_2_SEQ_LM", init_lora_weights=False, **case["cfg"])
    else:
        cfg = IA3Config(task_type="SEQ_2_SEQ_LM", init_ia3_weights=False, **case["cfg"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return get_peft_model(base, cfg).eval()


def key_map(pm):
    from peft.utils import get_peft_model_state_dict
    sd = get_peft_model_state_dict(pm)
    by_ptr = {v.data_ptr(): k for k, v in sd.items()}
    return {n: by_ptr[p.data_ptr()] for n, p in pm.named_parameters() if p.requires_grad}


def counts(pm):
    t, a = pm.get_nb_trainable_parameters()
    return {"trainable": t, "all": a,
            "print_trainable_parameters": f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}"}


def save_adapter(pm, d):
    pm.save_pretrained(d)
    os.remove(os.path.join(d, "README.md"))
    p = os.path.join(d, "adapter_config.json")
    cfg = json.load(open(p))
    for k in ("target_modules", "feedforward_modules"):
        if isinstance(cfg.get(k), list):
            cfg[k] = sorted(cfg[k])
    with open(p, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))


def write_peft_case(case):
    spec = MODELS[case["model"]]
    base_dir = os.path.join(OUT, "models", case["model"])
    pm = peft_model(case, load(base_dir, spec["cls"]))
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


def n_items(mb):
    return int((mb["labels"] != -100).sum())


def train_s2s_steps(pm, batches, c):
    """The seq2seq training loop of the steps fixtures (cpeft's semantics): AdamW + c's scheduler over
    c["num_training_steps"] steps of c["gradient_accumulation_steps"] micro-batches each, every micro-batch's
    mean loss weighted by its share of the step's target tokens, gradients clipped to c["max_grad_norm"].
    Returns the step losses, the gradient norms before clipping and the learning rates."""
    ga = c["gradient_accumulation_steps"]
    from transformers import get_scheduler
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"])
    sched = get_scheduler(c["scheduler"], opt, num_warmup_steps=c["num_warmup_steps"], num_training_steps=c["num_training_steps"])
    pm.train()
    losses, norms, lrs = [], [], []
    for s in range(c["num_training_steps"]):
        mbs = batches[s * ga:(s + 1) * ga]
        N = sum(n_items(mb) for mb in mbs)
        step_loss = 0.0
        for mb in mbs:
            loss = pm(**mb, use_cache=False).loss * n_items(mb) / N
            loss.backward()
            step_loss += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(float(gn))
    return losses, norms, lrs


def write_steps(name, model):
    spec = MODELS[model]
    base_dir = os.path.join(OUT, "models", model)
    base = load(base_dir, spec["cls"])
    for mod in base.modules():  # the model's dropout off (cpeft: model_dropout 0), attention's included
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout") and isinstance(mod.dropout, float):
            mod.dropout = 0.0
    case = dict(name=name, method="LORA", cfg=dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q", "k", "v", "o", "wo"]))
    pm = peft_model(case, base)
    d = os.path.join(OUT, "steps", name)
    save_adapter(pm, d)
    kmap = key_map(pm)
    c = STEP_CFG
    ga = c["gradient_accumulation_steps"]
    batches, t = [], {}
    for i in range(c["num_training_steps"] * ga):
        g = torch.Generator().manual_seed(name_seed("t5", "steps", name, str(i)))
        Tb, Tdb = 5 + i % 4, 3 + i % 3
        ids = torch.randint(2, 99, (2, Tb), generator=g)
        mask = torch.ones(2, Tb, dtype=torch.int64)
        mask[1, Tb - 1 - i % 2:] = 0
        ids[mask == 0] = 0
        lab = torch.randint(2, 99, (2, Tdb), generator=g)
        if i % 2:
            lab[0, Tdb - 1:] = -100
        mb = {"input_ids": ids, "attention_mask": mask, "labels": lab}
        batches.append(mb)
        for k, v in mb.items():
            t[f"{k}_{i}"] = v
    losses, norms, lrs = train_s2s_steps(pm, batches, c)
    for n, p in pm.named_parameters():
        if p.requires_grad:
            t["final." + kmap[n]] = p.detach()
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), {"base_dir": rel(base_dir), "config": c, "losses": losses,
                                                  "grad_norms": norms, "lrs": lrs})


ROUNDTRIP = [
    dict(name="rt_lora_v11", model="t5_v11", config={"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": 4,
                                                      "lora_alpha": 8, "init_lora_weights": False}),
    dict(name="rt_lora_v10", model="t5_v10", config={"peft_type": "LORA", "task_type": "SEQ_2_SEQ_LM", "r": 2,
                                                      "lora_alpha": 4, "target_modules": "all-linear",
                                                      "init_lora_weights": False}),
    dict(name="rt_ia3_mt5", model="mt5", config={"peft_type": "IA3", "task_type": "SEQ_2_SEQ_LM", "init_ia3_weights": False}),
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
        pm = PeftModel.from_pretrained(load(base_dir, MODELS[case["model"]]["cls"]), rel(adapter)).eval()
    inp = inputs_for(case["name"])
    with torch.no_grad():
        out = pm(**inp, use_cache=False)
    t = dict(inp, logits_peft=out.logits)
    with tempfile.TemporaryDirectory() as tmp:  # cpeft merge -> transformers
        merged = os.path.join(tmp, "merged")
        subprocess.run([cpeft, "merge", "--model", rel(base_dir), "--adapter", rel(adapter), "--out", merged], check=True,
                       capture_output=True, cwd=ROOT)
        with torch.no_grad():
            t["logits_merged_transformers"] = load(merged, MODELS[case["model"]]["cls"])(**inp, use_cache=False).logits
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), {"base_dir": rel(base_dir), "seed": SEED,
                                                  "how": "cpeft adapter init (seed) -> PeftModel.from_pretrained; "
                                                         "cpeft merge -> transformers"})


GENERATE = [
    # a repetition penalty (transformers' sees the decoder's ids, start token included): these tiny models repeat
    dict(name="greedy_v10", model="t5_v10", adapter=None, max_new_tokens=12, eos=None, repetition_penalty=1.6),
    dict(name="greedy_v11_lora", model="t5_v11", adapter="lora/lora_v11_decoder", max_new_tokens=10, eos=None),
    dict(name="greedy_mt5_eos", model="mt5", adapter=None, max_new_tokens=12, eos="first"),
    # transformers' DynamicCache is sized by num_layers (the encoder's 2) and fails at decoder layer 2: no cache there
    dict(name="greedy_asym", model="t5_asym", adapter="lora/lora_asym_default", max_new_tokens=9, eos=None, use_cache=False,
         repetition_penalty=1.3),
]


def write_tokenizer(d):
    """A T5-style tokenizer of 99 pieces for the tiny models (the pipeline of tests/fixtures/tokenizers/t5: Precompiled
    nmt_nfkc normalizer, WhitespaceSplit + Metaspace, "$A </s>", a Unigram model), so that `cpeft generate --prompt`
    runs end to end: tokenizer.json and tokenizer_config.json into model directory d."""
    t = json.load(open(os.path.join(ROOT, "tests", "fixtures", "tokenizers", "t5", "tokenizer.json"), encoding="utf-8"))
    letters = "abcdefghijklmnopqrstuvwxyz"
    words = ["▁the", "▁cat", "▁sat", "▁on", "▁mat", "▁dog", "▁a", "▁is", "▁in",
             "▁and", "▁to", "▁red", "▁big", "▁summarize", ":"]
    vocab = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["▁", -3.0]]
    vocab += [[w, -2.0] for w in words] + [["▁" + c, -4.0] for c in letters] + [[c, -6.0] for c in letters]
    for bg in ["th", "he", "in", "er", "an", "re", "on", "at", "en", "nd", "ti", "es", "or", "te", "of", "ed", "is", "it",
               "al", "ar", "st", "to", "nt", "ng", "se", "ha", "as", "ou", "io", "le"]:
        if len(vocab) < 99:
            vocab.append([bg, -5.0])
    assert len(vocab) == 99
    t["model"]["vocab"] = vocab
    t["added_tokens"] = [a for a in t["added_tokens"] if a["id"] < 3]
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False, indent=2)
    write_json(os.path.join(d, "tokenizer_config.json"), {"eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>",
                                                          "model_max_length": 512, "tokenizer_class": "T5Tokenizer"})


def write_generate_cli():
    """`cpeft generate --model t5_v11 --prompt TEXT --max-new-tokens 8 --json`: the prompt through the tokenizer (its
    </s> kept: the encoder's input), greedy generate(), the tokens and the text decoded without special tokens."""
    from tokenizers import Tokenizer
    d = os.path.join(OUT, "models", "t5_v11")
    write_tokenizer(d)
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    m = load(d, "t5")
    prompts = ["summarize: the cat sat on the mat", "a big red dog"]
    rows = []
    for p in prompts:
        ids = tok.encode(p).ids
        with torch.no_grad():
            seq = m.generate(input_ids=torch.tensor([ids]), max_new_tokens=8, do_sample=False, num_beams=1, eos_token_id=1,
                             pad_token_id=0, decoder_start_token_id=0)
        new = seq[0, 1:].tolist()
        if 1 in new:
            new = new[:new.index(1) + 1]
        rows.append({"prompt": p, "input_ids": ids, "tokens": new, "text": tok.decode(new, skip_special_tokens=True)})
    write_json(os.path.join(OUT, "generate", "cli.json"), {"model": rel(d), "max_new_tokens": 8, "rows": rows})


def write_generate(case):
    """greedy generate() (num_beams 1, the cache) on three prompts of different lengths (right-padded for the
    encoder); eos "first": eos_token_id is row 0's second new token, so that row stops early and the others go on."""
    from peft import PeftModel
    base_dir = os.path.join(OUT, "models", case["model"])
    m = load(base_dir, MODELS[case["model"]]["cls"])
    if case["adapter"]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = PeftModel.from_pretrained(m, os.path.join(OUT, case["adapter"])).eval()
    g = torch.Generator().manual_seed(name_seed("t5", "generate", case["name"]))
    lens = [7, 4, 9]
    prompts = [torch.randint(2, 99, (n,), generator=g).tolist() for n in lens]
    ids = torch.zeros(len(lens), max(lens), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for r, p in enumerate(prompts):
        ids[r, :len(p)] = torch.tensor(p)
        mask[r, :len(p)] = 1
    kw = dict(max_new_tokens=case["max_new_tokens"], do_sample=False, num_beams=1, pad_token_id=0, decoder_start_token_id=0,
              use_cache=case.get("use_cache", True), repetition_penalty=case.get("repetition_penalty", 1.0))
    eos = 1
    if case["eos"] == "first":
        with torch.no_grad():
            first = m.generate(input_ids=ids, attention_mask=mask, eos_token_id=eos, **kw)
        eos = int(first[0, 2])
    with torch.no_grad():
        seq = m.generate(input_ids=ids, attention_mask=mask, eos_token_id=eos, **kw)
    out = []
    for r in range(len(lens)):
        toks = seq[r, 1:].tolist()
        if eos in toks:
            toks = toks[:toks.index(eos) + 1]
        out.append(toks)
    d = os.path.join(OUT, "generate")
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, case["name"] + ".json"), {
        "base_dir": rel(base_dir), "adapter": rel(os.path.join(OUT, case["adapter"])) if case["adapter"] else None,
        "prompts": prompts, "max_new_tokens": case["max_new_tokens"], "eos_token_id": eos, "tokens": out,
        "repetition_penalty": case.get("repetition_penalty", 1.0),
        "how": "transformers generate(), greedy, use_cache, right-padded encoder inputs; tokens after the start token, "
               "up to and including eos"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpeft", required=True, help="build/cpeft (the roundtrip cases run it)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for name, spec in MODELS.items():
        d = write_model(name, spec)
        write_expected(name, spec, d)
    write_bf16(os.path.join(OUT, "models", "t5_v10"))
    for case in PEFT_CASES:
        write_peft_case(case)
    write_steps("lora_v10", "t5_v10")
    cpeft = os.path.abspath(a.cpeft)
    for case in ROUNDTRIP:
        write_roundtrip(case, cpeft)
    for case in GENERATE:
        write_generate(case)
    write_generate_cli()


if __name__ == "__main__":
    main()
