"""Fixtures for prompt tuning, p-tuning and prefix tuning as PEFT methods (issue 13), on the tiny GPT-2,
GPT-Neo and Llama models of tests/fixtures, with PEFT's PeftModelForCausalLM:

    tests/reference/.venv/bin/python tests/reference/make_prompt_method_fixtures.py [--cpeft build/cpeft]

writes tests/fixtures/prompt_methods/<model>_<case>/ for each model and case:
  adapter/                 PEFT's save_pretrained of the adapter (adapter_config.json, adapter_model.safetensors:
                           "prompt_embeddings", the encoder's output), README.md removed
  encoder.safetensors      every parameter of the training-mode prompt encoder, keyed as PEFT names them under
                           prompt_encoder.default ("embedding.weight", "mlp_head.0.weight", "lstm_head.weight_ih_l0")
  expected.safetensors     a left-padded batch with labels; logits and loss of the training-mode model; the gradient
                           of the loss for every encoder parameter ("grad.<key>"); logits of the adapter loaded by
                           PeftModel.from_pretrained ("logits_loaded"); for generation cases the prompts ("gen_ids",
                           "gen_mask") and PEFT's greedy new tokens ("gen_tokens")
  expected.json            print_trainable_parameters' numbers and print(model), for the training-mode model and
                           the loaded one
and <encoder>_<case>/ for PeftModelForSequenceClassification / ForTokenClassification on the tiny BERT and RoBERTa
classifiers of tests/fixtures/encoders (the same files, with the classifier's modules_to_save copy in the gradients and the
adapter, and resaved_config.json: PEFT's save of the adapter it loaded, whose modules_to_save lists the head names
twice); and steps_<model>_<case>/: 10 AdamW steps of PEFT + transformers (oracle_train.py's loop and micro-batches) from
encoder.safetensors: losses, gradient norms and learning rates per step (expected.json), every encoder parameter
after the last step ("final.<key>" in expected.safetensors); and steps_<encoder>_<case>/, the same for
PeftModelForSequenceClassification on the tiny BERT and RoBERTa (make_class_train_fixtures.py's loop and loss on random
4-row micro-batches, the model's dropout 0 on both sides, the classifier's modules_to_save copy trained and compared too).
The encoder parameters are PEFT's own initialisation re-drawn from a fixed seed (scaled normal values), except
pt_text, whose table is PEFT's TEXT init from the character tokenizer of tests/fixtures/generate.

With --cpeft, also tests/fixtures/prompt_methods/cpeft_<model>_<case>/: `cpeft adapter init --seed 7` writes an
adapter from peft_config.json (cpeft's own random init), PeftModel.from_pretrained loads it, and its logits on the
batch are recorded ("logits_peft"); PEFT's save_pretrained of that loaded model writes the same two files byte for
byte (checked here). The C test re-creates the adapter from the same seed, checks the files are the ones committed, and that
cpeft's logits equal PEFT's.

Paths in the configs are relative to tests/fixtures (the script runs there), as the C test runs them.
Deterministic: fixed seeds, one torch thread.
"""
import argparse
import contextlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import warnings

import torch
from peft import PeftModel, PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

torch.set_num_threads(1)
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "fixtures"))
MODELS = {"gpt2": "models/gpt2_tiny", "neo": "models/gpt_neo_tiny", "llama": "llama/models/llama_tiny"}
TOKENIZER = "generate/char_tokenizer"
B, T = 2, 7

CASES = {
    "pt": dict(kind="PROMPT_TUNING", num_virtual_tokens=3),
    "pt_text": dict(kind="PROMPT_TUNING", num_virtual_tokens=5, prompt_tuning_init="TEXT", prompt_tuning_init_text="abc",
                    tokenizer_name_or_path=TOKENIZER),
    "ptune_mlp": dict(kind="P_TUNING", num_virtual_tokens=3, encoder_hidden_size=16),
    "ptune_lstm": dict(kind="P_TUNING", num_virtual_tokens=3, encoder_reparameterization_type="LSTM", encoder_hidden_size=8),
    "prefix": dict(kind="PREFIX_TUNING", num_virtual_tokens=3),
    "prefix_proj": dict(kind="PREFIX_TUNING", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16),
}
GENERATE = {"pt", "ptune_mlp", "prefix", "prefix_proj"}
ROUNDTRIP = {"pt": "gpt2", "ptune_lstm": "llama", "prefix_proj": "llama", "prefix": "neo", "ptune_mlp": "neo"}
P_SHORT = [5, 17, 42, 8]
P_LONG = [61, 3, 29, 77, 12, 50]


def config(case, task="CAUSAL_LM"):
    kw = dict(CASES[case])
    cls = {"PROMPT_TUNING": PromptTuningConfig, "P_TUNING": PromptEncoderConfig, "PREFIX_TUNING": PrefixTuningConfig}[kw.pop("kind")]
    return cls(task_type=task, **kw)


def load(rel):
    return AutoModelForCausalLM.from_pretrained(rel, dtype=torch.float32, attn_implementation="eager").eval()


def batch(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :2] = 0  # left padding in row 1
    ids[1, :2] = 96
    labels = ids.clone()
    labels[1, :2] = -100
    return ids, mask, labels


def counts(pm):
    t, a = pm.get_nb_trainable_parameters()
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        pm.print_trainable_parameters()
    # the seed notebook's format (PEFT < 0.11): the percentage as Python prints the float
    return {"trainable": t, "all": a, "line": buf.getvalue().strip(),
            "line_notebook": f"trainable params: {t} || all params: {a} || trainable%: {100 * t / a}"}


def encoder_params(pm):
    prefix = "prompt_encoder.default."
    return {n[len(prefix):]: p for n, p in pm.named_parameters() if n.startswith(prefix)}


def generate(pm, eos):
    T0 = max(len(P_SHORT), len(P_LONG))
    ids = torch.tensor([[eos] * (T0 - len(P_SHORT)) + P_SHORT, P_LONG])
    mask = torch.tensor([[0] * (T0 - len(P_SHORT)) + [1] * len(P_SHORT), [1] * len(P_LONG)])
    with torch.no_grad():
        out = pm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, eos_token_id=None,
                          pad_token_id=eos)
    return ids, mask, out[:, T0:].contiguous()


def write_case(model_key, case, seed):
    rel = MODELS[model_key]
    d = os.path.join("prompt_methods", f"{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load(rel), config(case))
    params = encoder_params(pm)
    if case != "pt_text":
        with torch.no_grad():
            for p in params.values():
                p.copy_(torch.randn_like(p) * 0.5)
    train_counts, train_repr = counts(pm), str(pm)
    save_file({k: v.detach().clone().contiguous() for k, v in params.items()}, os.path.join(d, "encoder.safetensors"),
              metadata={"format": "pt"})
    vocab = pm.base_model.config.vocab_size
    ids, mask, labels = batch(vocab, seed)
    out = pm(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits.detach(),
               "loss": out.loss.detach().reshape(1)}
    for k, p in params.items():
        tensors["grad." + k] = p.grad.detach().clone()
    adapter = os.path.join(d, "adapter")
    pm.save_pretrained(adapter)
    if os.path.exists(os.path.join(adapter, "README.md")):
        os.remove(os.path.join(adapter, "README.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl = PeftModel.from_pretrained(load(rel), adapter).eval()
    with torch.no_grad():
        tensors["logits_loaded"] = pl(input_ids=ids, attention_mask=mask).logits
    info = {"model": rel, "case": case, "train": train_counts, "repr": train_repr, "loaded": counts(pl), "repr_loaded": str(pl),
            "seed": seed}
    if case in GENERATE:
        eos = pl.base_model.config.eos_token_id
        gi, gm, gt = generate(pl, eos)
        tensors.update({"gen_ids": gi, "gen_mask": gm, "gen_tokens": gt})
        info["generate"] = {"max_new_tokens": 6, "pad_token_id": eos}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    diff = (tensors["logits_loaded"] - tensors["logits"]).abs().max().item()
    print(f"{d}: loss {out.loss.item():.6f}, {train_counts['line']}, loaded vs training logits {diff:.1e}")


ENCODERS = {"bert_seqcls": ("encoders/models/bert_seqcls", "SEQ_CLS"), "roberta_seqcls": ("encoders/models/roberta_seqcls", "SEQ_CLS"),
            "bert_tokcls": ("encoders/models/bert_tokcls", "TOKEN_CLS")}
ENCODER_CASES = [("bert_seqcls", "pt"), ("bert_seqcls", "prefix"), ("bert_seqcls", "ptune_lstm"), ("roberta_seqcls", "pt"),
                 ("roberta_seqcls", "ptune_mlp"), ("roberta_seqcls", "prefix_proj"), ("bert_tokcls", "pt"), ("bert_tokcls", "prefix")]


def write_encoder_case(model_key, case, seed):
    """PeftModelForSequenceClassification / ForTokenClassification: a right-padded batch (BERT with token_type_ids that
    change mid-row), logits and loss of the training-mode model (TOKEN_CLS prompt tuning: logits only, PEFT's loss
    fails on its unpadded labels), the gradients of the encoder and of the classifier's modules_to_save copy
    ("grad.<key>", the copy under its saved key), the adapter (prompt_embeddings + the classifier) and its logits loaded."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
    rel, task = ENCODERS[model_key]
    auto = AutoModelForSequenceClassification if task == "SEQ_CLS" else AutoModelForTokenClassification
    d = os.path.join("prompt_methods", f"{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(auto.from_pretrained(rel, dtype=torch.float32).eval(), config(case, task))
    pm.eval()
    params = encoder_params(pm)
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.randn_like(p) * 0.5)
    train_counts, train_repr = counts(pm), str(pm)
    save_file({k: v.detach().clone().contiguous() for k, v in params.items()}, os.path.join(d, "encoder.safetensors"),
              metadata={"format": "pt"})
    cfg = pm.base_model.config
    g = torch.Generator().manual_seed(seed)
    Bn, Tn = 2, 6
    ids = torch.randint(5, cfg.vocab_size, (Bn, Tn), generator=g)
    mask = torch.ones(Bn, Tn, dtype=torch.long)
    mask[1, 4:] = 0
    ids[1, 4:] = cfg.pad_token_id
    inputs = {"input_ids": ids, "attention_mask": mask}
    if cfg.type_vocab_size > 1:
        tt = torch.zeros(Bn, Tn, dtype=torch.long)
        tt[:, 3:] = 1
        inputs["token_type_ids"] = tt
    labelled = not (task == "TOKEN_CLS" and case != "prefix")
    if task == "SEQ_CLS":
        labels = torch.tensor([1, 0])
    else:
        labels = torch.randint(0, cfg.num_labels, (Bn, Tn), generator=g)
        labels[1, 4:] = -100
    out = pm(**inputs, labels=labels if labelled else None)
    tensors = dict(inputs, labels=labels, logits=out.logits.detach())
    if labelled:
        out.loss.backward()
        tensors["loss"] = out.loss.detach().reshape(1)
        for n, p in pm.named_parameters():
            if p.grad is None:
                continue
            key = n[len("prompt_encoder.default."):] if n.startswith("prompt_encoder.default.") else n.replace("modules_to_save.default.", "")
            tensors["grad." + key] = p.grad.detach().clone()
    adapter = os.path.join(d, "adapter")
    pm.save_pretrained(adapter)
    os.remove(os.path.join(adapter, "README.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl = PeftModel.from_pretrained(auto.from_pretrained(rel, dtype=torch.float32).eval(), adapter).eval()
    with torch.no_grad():
        tensors["logits_loaded"] = pl(**inputs).logits
    # PEFT's save of the loaded adapter: loading appended "classifier", "score" to modules_to_save again
    with tempfile.TemporaryDirectory() as tmp:
        pl.save_pretrained(tmp)
        shutil.copy(os.path.join(tmp, "adapter_config.json"), os.path.join(d, "resaved_config.json"))
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    info = {"model": rel, "case": case, "task": task, "labelled": labelled, "train": train_counts, "repr": train_repr,
            "loaded": counts(pl), "repr_loaded": str(pl), "seed": seed}
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    print(f"{d}: logits {tuple(out.logits.shape)}{f', loss {out.loss.item():.6f}' if labelled else ''}, {train_counts['line']}")


def write_roundtrip(cpeft, case, model_key):
    rel = MODELS[model_key]
    d = os.path.join("prompt_methods", f"cpeft_{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    cfg = config(case).to_dict()
    cfg = {k: (v.value if hasattr(v, "value") else v) for k, v in cfg.items()}
    cfg["base_model_name_or_path"] = rel
    with open(os.path.join(d, "peft_config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    adapter = os.path.join(d, "adapter")
    subprocess.run([cpeft, "adapter", "init", "--model", rel, "--peft-config", os.path.join(d, "peft_config.json"), "--seed", "7",
                    "--out", adapter], check=True, capture_output=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl = PeftModel.from_pretrained(load(rel), adapter).eval()
    ids, mask, _ = batch(pl.base_model.config.vocab_size, 5)
    with torch.no_grad():
        logits = pl(input_ids=ids, attention_mask=mask).logits
    # PEFT writes cpeft's files back byte for byte
    with tempfile.TemporaryDirectory() as tmp:
        pl.save_pretrained(tmp)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            with open(os.path.join(tmp, name), "rb") as a, open(os.path.join(adapter, name), "rb") as b:
                assert a.read() == b.read(), f"{d}: PEFT's save_pretrained changes {name}"
    save_file({"input_ids": ids, "attention_mask": mask, "logits_peft": logits.contiguous()}, os.path.join(d, "expected.safetensors"),
              metadata={"format": "pt"})
    print(f"{d}: PEFT loaded cpeft's adapter, logits {tuple(logits.shape)}")


def start_steps(pm, d):
    """A steps case's starting point: the encoder re-drawn (0.5·N(0,1)) into encoder.safetensors, the adapter saved."""
    params = encoder_params(pm)
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.randn_like(p) * 0.5)
    save_file({k: v.detach().clone().contiguous() for k, v in params.items()}, os.path.join(d, "encoder.safetensors"),
              metadata={"format": "pt"})
    pm.save_pretrained(os.path.join(d, "adapter"))
    os.remove(os.path.join(d, "adapter", "README.md"))


STEPS = {"pt": "gpt2", "ptune_mlp": "neo", "ptune_lstm": "llama", "prefix": "llama", "prefix_proj": "gpt2"}


def write_steps(case, model_key):
    """10 AdamW steps (oracle_train.py's loop: accumulation 2, warmup + linear decay, clipping, the loss over the step's
    label tokens) from the case's encoder parameters: losses, gradient norms, learning rates per step and every encoder
    parameter after the last step."""
    import sys
    sys.path.insert(0, HERE)
    import oracle_train as ot
    rel = MODELS[model_key]
    d = os.path.join("prompt_methods", f"steps_{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(77)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load(rel), config(case))
    start_steps(pm, d)
    batches = ot.step_batches(os.path.basename(rel), pm.base_model.config.vocab_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = ot.train_steps(pm, batches)
    tensors = {f"{k}_{i}": v for i, mb in enumerate(batches) for k, v in mb.items()}
    for k, p in encoder_params(pm).items():
        tensors["final." + k] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(dict(res, model=rel, case=case, config=ot.STEP_CFG), f, indent=1, sort_keys=True)
    print(f"{d}: losses {res['losses'][0]:.4f} -> {res['losses'][-1]:.4f}")


ENCODER_STEPS = [("bert_seqcls", "pt"), ("bert_seqcls", "ptune_mlp"), ("bert_seqcls", "prefix"), ("roberta_seqcls", "pt"),
                 ("roberta_seqcls", "ptune_mlp"), ("roberta_seqcls", "prefix"), ("roberta_seqcls", "prefix_proj")]
# make_class_train_fixtures.py's loop, with prompt learning's usual larger learning rate
CLASS_STEP_CFG = dict(lr=3e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, scheduler="linear", num_warmup_steps=2,
                      num_training_steps=10, gradient_accumulation_steps=2, micro_batch_size=4, max_grad_norm=1.0)


def class_step_batches(cfg_model, seed):
    """20 micro-batches of 4 right-padded rows (lengths 3..T, T in [5, 8]), BERT's with token_type_ids that turn to 1
    mid-row; the label is a function of the row's first token, so there is something to learn."""
    g = torch.Generator().manual_seed(seed)
    c, out = CLASS_STEP_CFG, []
    for _ in range(c["num_training_steps"] * c["gradient_accumulation_steps"]):
        Bn, Tn = c["micro_batch_size"], int(torch.randint(5, 9, (1,), generator=g))
        ids = torch.randint(5, cfg_model.vocab_size, (Bn, Tn), generator=g)
        mask = torch.ones(Bn, Tn, dtype=torch.long)
        for r in range(1, Bn):
            n = int(torch.randint(3, Tn + 1, (1,), generator=g))
            mask[r, n:] = 0
            ids[r, n:] = cfg_model.pad_token_id
        mb = {"input_ids": ids, "attention_mask": mask}
        if cfg_model.type_vocab_size > 1:
            tt = torch.zeros(Bn, Tn, dtype=torch.long)
            for r in range(Bn):
                tt[r, int(torch.randint(1, Tn, (1,), generator=g)):] = 1
            mb["token_type_ids"] = tt * mask
        mb["labels"] = ids[:, 0] % cfg_model.num_labels
        out.append(mb)
    return out


def write_encoder_steps(model_key, case, seed):
    """10 AdamW steps of PeftModelForSequenceClassification (make_class_train_fixtures.py's loop: the loss of a step is
    the sum over its micro-batches of the summed cross-entropy / the step's rows) with the model's dropout at 0 on both
    sides, from the case's encoder parameters and the classifier's modules_to_save copy of the base head: losses,
    gradient norms and learning rates per step, every trained tensor after the last step ("final.<key>": the encoder's
    under PEFT's names, the classifier copy under its saved key)."""
    from transformers import AutoModelForSequenceClassification, get_scheduler
    rel, task = ENCODERS[model_key]
    d = os.path.join("prompt_methods", f"steps_{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    base = AutoModelForSequenceClassification.from_pretrained(rel, dtype=torch.float32, hidden_dropout_prob=0.0,
                                                              attention_probs_dropout_prob=0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base, config(case, task))
    assert all(m.p == 0 for m in pm.modules() if isinstance(m, torch.nn.Dropout)), "model dropout must be 0"
    start_steps(pm, d)
    batches = class_step_batches(pm.base_model.config, seed)
    c = CLASS_STEP_CFG
    trained = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"])
    sched = get_scheduler(c["scheduler"], opt, num_warmup_steps=c["num_warmup_steps"], num_training_steps=c["num_training_steps"])
    ga, losses, norms, lrs = c["gradient_accumulation_steps"], [], [], []
    pm.train()
    for step in range(c["num_training_steps"]):
        mbs = batches[step * ga:(step + 1) * ga]
        N = sum(int(mb["labels"].numel()) for mb in mbs)
        total = 0.0
        for mb in mbs:
            logits = pm(**{k: v for k, v in mb.items() if k != "labels"}).logits
            loss = torch.nn.functional.cross_entropy(logits, mb["labels"], reduction="sum") / N
            loss.backward()
            total += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(trained, c["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        losses.append(total)
        norms.append(float(gn))
    tensors = {f"{k}_{i}": v for i, mb in enumerate(batches) for k, v in mb.items()}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            key = n[len("prompt_encoder.default."):] if n.startswith("prompt_encoder.default.") else n.replace("modules_to_save.default.", "")
            tensors["final." + key] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(dict(losses=losses, grad_norms=norms, lrs=lrs, model=rel, case=case, task=task, model_dropout=0, config=c),
                  f, indent=1, sort_keys=True)
    print(f"{d}: losses {losses[0]:.4f} -> {losses[-1]:.4f}, {len([k for k in tensors if k.startswith('final.')])} trained tensors")


# ---- encoder-decoders: PeftModelForSeq2SeqLM on the tiny T5 v1.0, v1.1 and mT5 of tests/fixtures/t5 ----------------

S2S_MODELS = {"t5_v10": "t5/models/t5_v10", "t5_v11": "t5/models/t5_v11", "mt5": "t5/models/mt5"}
S2S_CASES = ["pt", "ptune_mlp", "ptune_lstm", "prefix", "prefix_proj"]
S2S_T, S2S_TD = 7, 5


def load_s2s(rel):
    from transformers import AutoModelForSeq2SeqLM
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return AutoModelForSeq2SeqLM.from_pretrained(rel, dtype=torch.float32, attn_implementation="eager").eval()


def s2s_batch(vocab, seed):
    """Right-padded encoder rows (row 1 by 3), labels with -100 at the end of row 1 and a decoder mask over them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, vocab, (B, S2S_T), generator=g)
    mask = torch.ones(B, S2S_T, dtype=torch.long)
    ids[1, S2S_T - 3:] = 0
    mask[1, S2S_T - 3:] = 0
    labels = torch.randint(2, vocab, (B, S2S_TD), generator=g)
    dmask = torch.ones(B, S2S_TD, dtype=torch.long)
    labels[1, S2S_TD - 2:] = -100
    dmask[1, S2S_TD - 2:] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "decoder_attention_mask": dmask}


def s2s_generate(pm):
    """PeftModelForSeq2SeqLM.generate, greedy, 6 new tokens, no eos, on two right-padded prompts: the tokens after
    the decoder start token."""
    T0 = max(len(P_SHORT), len(P_LONG))
    ids = torch.tensor([P_SHORT + [0] * (T0 - len(P_SHORT)), P_LONG])
    mask = torch.tensor([[1] * len(P_SHORT) + [0] * (T0 - len(P_SHORT)), [1] * len(P_LONG)])
    with torch.no_grad():
        out = pm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False, num_beams=1, eos_token_id=None,
                          pad_token_id=0, decoder_start_token_id=0)
    return ids, mask, out[:, 1:].contiguous()


def write_s2s_case(model_key, case, seed):
    """expected.* as write_case's for PeftModelForSeq2SeqLM: logits (B, Td, V) of the decoder, the loss, the encoder
    gradients (prompt tuning / p-tuning: the rows after the encoder's P get none), the adapter, its logits loaded and
    PEFT's greedy generate() of it."""
    rel = S2S_MODELS[model_key]
    d = os.path.join("prompt_methods", f"{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(load_s2s(rel), config(case, "SEQ_2_SEQ_LM"))
    pm.eval()
    params = encoder_params(pm)
    with torch.no_grad():
        for p in params.values():
            p.copy_(torch.randn_like(p) * 0.5)
    train_counts, train_repr = counts(pm), str(pm)
    save_file({k: v.detach().clone().contiguous() for k, v in params.items()}, os.path.join(d, "encoder.safetensors"),
              metadata={"format": "pt"})
    inputs = s2s_batch(pm.base_model.config.vocab_size, seed)
    out = pm(**inputs)
    out.loss.backward()
    tensors = dict(inputs, logits=out.logits.detach(), loss=out.loss.detach().reshape(1))
    for k, p in params.items():
        tensors["grad." + k] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    adapter = os.path.join(d, "adapter")
    pm.save_pretrained(adapter)
    os.remove(os.path.join(adapter, "README.md"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pl = PeftModel.from_pretrained(load_s2s(rel), adapter).eval()
    with torch.no_grad():
        tensors["logits_loaded"] = pl(**{k: v for k, v in inputs.items() if k != "labels"},
                                      decoder_input_ids=pl.base_model._shift_right(inputs["labels"])).logits
    gi, gm, gt = s2s_generate(pl)
    tensors.update({"gen_ids": gi, "gen_mask": gm, "gen_tokens": gt})
    info = {"model": rel, "case": case, "task": "SEQ_2_SEQ_LM", "train": train_counts, "repr": train_repr, "loaded": counts(pl),
            "repr_loaded": str(pl), "seed": seed, "generate": {"max_new_tokens": 6, "pad_token_id": 0}}
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(info, f, indent=1, sort_keys=True)
    diff = (tensors["logits_loaded"] - tensors["logits"]).abs().max().item()
    print(f"{d}: loss {out.loss.item():.6f}, {train_counts['line']}, loaded vs training logits {diff:.1e}, generated {gt.tolist()}")


S2S_STEPS = [("t5_v10", "pt"), ("t5_v11", "prefix"), ("mt5", "ptune_mlp"), ("t5_v10", "prefix_proj")]
S2S_STEP_CFG = dict(lr=3e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, scheduler="linear", num_warmup_steps=2,
                    num_training_steps=10, gradient_accumulation_steps=2, max_grad_norm=1.0)


def write_s2s_steps(model_key, case, seed):
    """10 AdamW steps of PeftModelForSeq2SeqLM (make_t5_fixtures.py's loop: the loss of a micro-batch weighted by its
    label tokens over the step's, the model's dropout at 0) from the case's encoder parameters: losses, gradient norms,
    learning rates per step and every encoder parameter after the last step."""
    from transformers import get_scheduler
    rel = S2S_MODELS[model_key]
    d = os.path.join("prompt_methods", f"steps_{model_key}_{case}")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    torch.manual_seed(seed)
    base = load_s2s(rel)
    for mod in base.modules():  # the model's dropout off (cpeft: model_dropout 0), T5Attention's float one included
        if isinstance(mod, torch.nn.Dropout):
            mod.p = 0.0
        if hasattr(mod, "dropout") and isinstance(mod.dropout, float):
            mod.dropout = 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base, config(case, "SEQ_2_SEQ_LM"))
    start_steps(pm, d)
    c = S2S_STEP_CFG
    ga = c["gradient_accumulation_steps"]
    g = torch.Generator().manual_seed(seed)
    batches = []
    for i in range(c["num_training_steps"] * ga):
        Tb, Tdb = 5 + i % 4, 3 + i % 3
        ids = torch.randint(2, 99, (2, Tb), generator=g)
        mask = torch.ones(2, Tb, dtype=torch.int64)
        mask[1, Tb - 1 - i % 2:] = 0
        ids[mask == 0] = 0
        lab = torch.randint(2, 99, (2, Tdb), generator=g)
        if i % 2:
            lab[0, Tdb - 1:] = -100
        batches.append({"input_ids": ids, "attention_mask": mask, "labels": lab})
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"])
    sched = get_scheduler(c["scheduler"], opt, num_warmup_steps=c["num_warmup_steps"], num_training_steps=c["num_training_steps"])
    pm.train()
    losses, norms, lrs = [], [], []
    for s in range(c["num_training_steps"]):
        mbs = batches[s * ga:(s + 1) * ga]
        N = sum(int((mb["labels"] != -100).sum()) for mb in mbs)
        step_loss = 0.0
        for mb in mbs:
            loss = pm(**mb, use_cache=False).loss * int((mb["labels"] != -100).sum()) / N
            loss.backward()
            step_loss += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(float(gn))
    tensors = {f"{k}_{i}": v for i, mb in enumerate(batches) for k, v in mb.items()}
    for k, p in encoder_params(pm).items():
        tensors["final." + k] = p.detach().clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(dict(losses=losses, grad_norms=norms, lrs=lrs, model=rel, case=case, task="SEQ_2_SEQ_LM", model_dropout=0,
                       config=c), f, indent=1, sort_keys=True)
    print(f"{d}: losses {losses[0]:.4f} -> {losses[-1]:.4f}")


def write_s2s():
    for i, model_key in enumerate(S2S_MODELS):
        for j, case in enumerate(S2S_CASES):
            write_s2s_case(model_key, case, 4000 + 10 * i + j)
    for k, (model_key, case) in enumerate(S2S_STEPS):
        write_s2s_steps(model_key, case, 5000 + k)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpeft", help="build/cpeft, for the cpeft -> PEFT cases")
    ap.add_argument("--s2s-only", action="store_true", help="only the encoder-decoder (T5) cases")
    args = ap.parse_args()
    cpeft = os.path.abspath(args.cpeft) if args.cpeft else None
    os.chdir(ROOT)
    write_s2s()
    if args.s2s_only:
        return
    for i, model_key in enumerate(MODELS):
        for j, case in enumerate(CASES):
            write_case(model_key, case, 1000 + 10 * i + j)
    for k, (model_key, case) in enumerate(ENCODER_CASES):
        write_encoder_case(model_key, case, 2000 + k)
    for case, model_key in STEPS.items():
        write_steps(case, model_key)
    for k, (model_key, case) in enumerate(ENCODER_STEPS):
        write_encoder_steps(model_key, case, 3000 + k)
    if cpeft:
        for case, model_key in ROUNDTRIP.items():
            write_roundtrip(cpeft, case, model_key)


if __name__ == "__main__":
    main()
