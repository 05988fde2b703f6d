"""The "train" fixture family: what PyTorch + PEFT compute when training LoRA adapters (issue 5).

Imported by generate.py (its @family decorator registers the family; generate.py adds CHECKERS).
Formats: tests/reference/README.md, section "Training fixtures". Under tests/fixtures/train/:

    grads/<case>/      adapter (PEFT save_pretrained) + expected.safetensors (inputs, labels, loss, logits,
                       grad.<saved key> of every trainable tensor after one forward+backward in train mode)
                       + expected.json (key map, config, sanity numbers)
    steps/<case>/      the same initial adapter + expected.safetensors (20 micro-batches, final.<saved key>
                       after 10 AdamW steps) + expected.json (losses, grad_norms, lrs per step, the config)
    schedules.json     get_scheduler lr multipliers (constant, constant_with_warmup, linear, cosine;
                       warmup 3 steps and warmup ratio 0.1) over 20 steps
    adamw.safetensors  torch.optim.AdamW on 3 odd-shaped tensors, 5 steps of stored gradients
    data_alpaca_gpt2.json   Alpaca-template rendering + GPT-2 tokenization + labels; plain-text blocks

The training loop of steps/ is the definition cpeft implements (see train_steps): AdamW over the trainable
parameters (one group), linear schedule with warmup, gradient accumulation 2, clip_grad_norm_ 1.0, and the
loss normalised over the label tokens of the whole optimizer step by passing num_items_in_batch to the model
(as the HF Trainer does).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import warnings
import zlib
from dataclasses import dataclass

import torch

import oracle_models as om
from oracle_common import Context, Item, family, fresh_dir, load_tensors, save_tensors, write_json
from oracle_lora import in_dir, load_base, lora_inputs, make_config, normalise_saved_config, save_adapter

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(HERE))), "shared", "data")
GRAD_B, GRAD_T, GRAD_PAD = 2, 11, 3          # as lora_inputs: row 2 right-padded by 3 (id 0)


def name_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


# =================================================================================================
# adapters


@dataclass
class TrainCase:
    name: str
    model: str
    config: dict        # LoraConfig kwargs (task_type CAUSAL_LM, lora_dropout 0, init_lora_weights False added)
    description: str


_COMMON = dict(lora_dropout=0.0, init_lora_weights=False)
CASES = [
    TrainCase("neo_qkv", "gpt_neo_tiny",
              dict(target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "c_fc", "c_proj"], r=4, lora_alpha=8),
              "GPT-Neo: attention q,k,v,out_proj and mlp c_fc,c_proj (nn.Linear), r=4 alpha=8"),
    TrainCase("neo_embedding_bias", "gpt_neo_tiny",
              dict(target_modules=["wte", "q_proj", "v_proj"], bias="all", r=4, lora_alpha=8),
              "GPT-Neo: Embedding LoRA on the tied wte + q_proj, v_proj; bias='all' (every bias of the model trains)"),
    TrainCase("gpt2_conv1d_mts", "gpt2_tiny",
              dict(target_modules=["c_attn", "mlp.c_proj"], bias="lora_only", modules_to_save=["ln_f"], r=4, lora_alpha=8),
              "GPT-2: Conv1D c_attn + mlp.c_proj, bias='lora_only' (their biases train), modules_to_save ln_f"),
    TrainCase("gpt2_odd_all_linear", "gpt2_odd",
              dict(target_modules="all-linear", use_rslora=True, r=3, lora_alpha=5),
              "GPT-2 odd shapes: all-linear (every Conv1D, not lm_head), rsLoRA scaling alpha/sqrt(r)"),
    TrainCase("gpt2_untied_lm_head", "gpt2_untied",
              dict(target_modules=["c_attn", "lm_head"], r=4, lora_alpha=8),
              "untied GPT-2: c_attn (Conv1D) + lm_head (nn.Linear); the frozen base lm_head is saved too"),
]
CASES_BY_NAME = {c.name: c for c in CASES}
STEP_CASES = ["neo_qkv", "gpt2_conv1d_mts"]


def build_peft(ctx: Context, case: TrainCase):
    """The PEFT model of a case, with its initial adapter values (a function of the case name)."""
    from peft import get_peft_model
    base = load_base(ctx, case.model)               # cwd = ctx.out
    for n, m in base.named_modules():               # the tiny configs have every dropout at 0: check
        if isinstance(m, torch.nn.Dropout):
            assert m.p == 0.0, (case.model, n, m.p)
    torch.manual_seed(name_seed("train", case.name, "init"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # fan_in_fan_out for Conv1D; recorded by the lora family
        pm = get_peft_model(base, make_config(dict(case.config, **_COMMON)))
    for n, m in pm.named_modules():
        if isinstance(m, torch.nn.Dropout):
            assert m.p == 0.0, (case.name, n, m.p)
    return pm


def trainable_key_map(pm) -> tuple[dict, list]:
    """{parameter name: saved key} for every trainable parameter, and the saved keys that are not trainable.
    A parameter is matched to the tensor get_peft_model_state_dict (what save_pretrained writes) holds for it
    by storage identity, so the map is exactly PEFT's renaming; it must be one-to-one."""
    from peft.utils import get_peft_model_state_dict
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # save_embedding_layers="auto" warns for lm_head targets
        sd = get_peft_model_state_dict(pm)
    by_ptr = {}
    for k, v in sd.items():
        by_ptr.setdefault(v.data_ptr(), []).append(k)
    kmap = {}
    for n, p in pm.named_parameters():
        if not p.requires_grad:
            continue
        keys = by_ptr.get(p.data_ptr(), [])
        assert len(keys) == 1, (n, keys)
        assert sd[keys[0]].shape == p.shape, (n, keys[0])
        kmap[n] = "base_model.model." + keys[0] if not keys[0].startswith("base_model.model.") else keys[0]
    assert len(set(kmap.values())) == len(kmap), "two trainable parameters map to one saved key"
    saved = {k if k.startswith("base_model.model.") else "base_model.model." + k for k in sd}
    extra = sorted(saved - set(kmap.values()))
    return kmap, extra


def write_adapter(pm, d: str, kmap: dict, extra: list) -> dict:
    """save_pretrained into d (README removed, set lists sorted); check the file holds exactly the trainable
    tensors (+ the non-trainable extras PEFT adds) with the parameters' current values."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")             # save_embedding_layers for lm_head (recorded by the lora family)
        save_adapter(pm, d)
    cfg = normalise_saved_config(os.path.join(d, "adapter_config.json"))
    t, meta = load_tensors(os.path.join(d, "adapter_model.safetensors"))
    assert sorted(t) == sorted(list(kmap.values()) + extra), (sorted(t), sorted(kmap.values()), extra)
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        assert torch.equal(t[k], params[n].detach()), k
    return cfg


def grad_labels(inputs: dict, gen: torch.Generator) -> torch.Tensor:
    """labels = input_ids with -100 at pads and at 2 other real positions per row (never position 0)."""
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    for b in range(labels.shape[0]):
        n = int(inputs["attention_mask"][b].sum())
        pick = torch.randperm(n - 1, generator=gen)[:2] + 1
        labels[b, pick] = -100
    return labels


def exact_zero_slices(pm, kmap: dict) -> dict:
    """{saved key: [start, end)} of trainable elements whose exact gradient is 0: the key part of a trainable
    GPT-2 c_attn bias (adding b_k to every key adds q.b_k to every score of a query, which softmax ignores). In f32
    their gradient is rounding noise (~1e-9), which Adam turns into steps of about lr: compare them with a
    tolerance of sum(lrs), not elementwise."""
    out = {}
    for n, k in kmap.items():
        if k.endswith(".attn.c_attn.base_layer.bias") or k.endswith(".attn.c_attn.bias"):
            H = pm.config.n_embd
            out[k] = [H, 2 * H]
    return out


def write_grads(ctx: Context, case: TrainCase) -> None:
    d = ctx.path("train", "grads", case.name)
    fresh_dir(d)
    with in_dir(ctx.out):
        pm = build_peft(ctx, case)
        kmap, extra = trainable_key_map(pm)
        cfg_saved = write_adapter(pm, d, kmap, extra)
        inputs = lora_inputs(case.model, pm.config.vocab_size)
        inputs["labels"] = grad_labels(inputs, torch.Generator().manual_seed(name_seed("train", "grads", case.name)))
        pm.train()
        pm.zero_grad(set_to_none=True)
        out = pm(**inputs, use_cache=False)
        out.loss.backward()
    params = dict(pm.named_parameters())
    res = dict(inputs)
    res["loss"] = out.loss.detach().float().reshape(())
    res["logits"] = out.logits.detach().float()
    stats = {}
    for n, k in kmap.items():
        g = params[n].grad
        assert g is not None, n
        res["grad." + k] = g.detach().clone()
        stats[k] = {"shape": list(g.shape), "norm": float(g.double().norm()), "nonzero": int(torch.count_nonzero(g)),
                    "param": n}
    save_tensors(os.path.join(d, "expected.safetensors"), res, {"model": case.model, "case": case.name})
    write_json(os.path.join(d, "expected.json"), {
        "case": case.name, "model": case.model, "base_dir": f"models/{case.model}", "description": case.description,
        "config_saved": cfg_saved, "loss": float(res["loss"]), "grads": stats,
        "saved_not_trainable": extra, "exact_zero_grad": exact_zero_slices(pm, kmap),
        "num_trainable_tensors": len(kmap), "num_label_tokens": int((inputs["labels"][:, 1:] != -100).sum()),
        "how": "PeftModel.train(); loss = model(input_ids, attention_mask, labels).loss (mean CE over shifted "
               "labels != -100); loss.backward(); grad.<saved key> = param.grad",
    })


# =================================================================================================
# optimizer steps

STEP_CFG = dict(lr=2e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.01, scheduler="linear", num_warmup_steps=2,
                num_training_steps=10, gradient_accumulation_steps=2, max_grad_norm=1.0, micro_batch_size=2,
                num_micro_batches=20)


STEP_CYCLE, STEP_NOISE = 4, 0.1


def step_batches(model_name: str, V: int) -> list[dict]:
    """20 fixed micro-batches (B=2, T in [7, 13]). Each row walks a fixed cycle of 4 random tokens from a random
    phase, with 10% of the tokens replaced by random ones, so the adapter visibly learns in 10 steps (the loss
    falls by ~0.7-0.8 nats). Row 2 is right-padded (by 1-3) in some even micro-batches; every third micro-batch
    masks a prompt-like prefix of row 1; label counts differ from batch to batch."""
    gen = torch.Generator().manual_seed(name_seed("train", "steps", "data", model_name))
    cycle = (torch.randperm(V - 1, generator=gen) + 1)[:STEP_CYCLE]
    out = []
    for i in range(STEP_CFG["num_micro_batches"]):
        T = int(torch.randint(7, 14, (1,), generator=gen))
        ids = torch.zeros(2, T, dtype=torch.int64)
        mask = torch.ones(2, T, dtype=torch.int64)
        for b in range(2):
            s = int(torch.randint(0, STEP_CYCLE, (1,), generator=gen))
            for j in range(T):
                if float(torch.rand(1, generator=gen)) >= STEP_NOISE:
                    ids[b, j] = int(cycle[(s + j) % STEP_CYCLE])
                else:
                    ids[b, j] = int(torch.randint(1, V, (1,), generator=gen))
        pad = int(torch.randint(0, 4, (1,), generator=gen)) if i % 2 == 0 else 0
        if pad:
            ids[1, T - pad:] = 0
            mask[1, T - pad:] = 0
        labels = ids.clone()
        labels[mask == 0] = -100
        if i % 3 == 1:
            labels[0, : int(torch.randint(1, 4, (1,), generator=gen))] = -100
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def n_items(mb: dict) -> int:
    return int((mb["labels"][:, 1:] != -100).sum())


def train_steps(pm, batches: list[dict], record: bool = True, alt: bool = False) -> dict:
    """The loop that defines cpeft's training semantics. alt=True uses loss*n_micro/N instead of passing
    num_items_in_batch (used by the checker: both must agree)."""
    from transformers import get_scheduler
    c = STEP_CFG
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"])
    sched = get_scheduler(c["scheduler"], opt, num_warmup_steps=c["num_warmup_steps"],
                          num_training_steps=c["num_training_steps"])
    ga = c["gradient_accumulation_steps"]
    losses, norms, lrs, micro, nums = [], [], [], [], []
    pm.train()
    opt.zero_grad(set_to_none=True)
    for step in range(c["num_training_steps"]):
        mbs = batches[step * ga:(step + 1) * ga]
        N = sum(n_items(mb) for mb in mbs)
        step_loss, ml = 0.0, []
        for mb in mbs:
            if alt:
                loss = pm(**mb, use_cache=False).loss * n_items(mb) / N
            else:
                loss = pm(**mb, use_cache=False, num_items_in_batch=torch.tensor(N)).loss
            loss.backward()
            ml.append(float(loss.detach()))
            step_loss += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(params, c["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(step_loss)
        norms.append(float(gn))
        micro.append(ml)
        nums.append(N)
    return {"losses": losses, "grad_norms": norms, "lrs": lrs, "micro_losses": micro, "num_items": nums}


def write_steps(ctx: Context, case: TrainCase) -> None:
    d = ctx.path("train", "steps", case.name)
    fresh_dir(d)
    with in_dir(ctx.out):
        pm = build_peft(ctx, case)
        kmap, extra = trainable_key_map(pm)
        cfg_saved = write_adapter(pm, d, kmap, extra)
        batches = step_batches(case.model, pm.config.vocab_size)
        res = train_steps(pm, batches)
    g = ctx.path("train", "grads", case.name, "adapter_model.safetensors")
    if os.path.exists(g):   # the same initial adapter as the gradient case
        assert open(g, "rb").read() == open(os.path.join(d, "adapter_model.safetensors"), "rb").read()
    tensors = {}
    for i, mb in enumerate(batches):
        for k, v in mb.items():
            tensors[f"{k}_{i}"] = v
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        tensors["final." + k] = params[n].detach().clone()
    save_tensors(os.path.join(d, "expected.safetensors"), tensors, {"model": case.model, "case": case.name})
    write_json(os.path.join(d, "expected.json"), dict(res, **{
        "case": case.name, "model": case.model, "base_dir": f"models/{case.model}", "config": STEP_CFG,
        "config_saved": cfg_saved, "grads_case": f"grads/{case.name}",
        "exact_zero_grad": exact_zero_slices(pm, kmap),
        "loss_normalisation": "per optimizer step, N = sum over its micro-batches of (labels[:, 1:] != -100).sum(); "
                              "each micro-batch runs model(..., labels, num_items_in_batch=N) (transformers' "
                              "ForCausalLMLoss: sum-CE / N) and is backpropagated unscaled; losses[k] = sum of the "
                              "two micro-batch losses = mean token CE over the step",
        "lr_meaning": "lrs[k] = optimizer.param_groups[0]['lr'] when optimizer.step() of step k runs "
                      "(before scheduler.step()); the HF Trainer logs the one after",
        "grad_norm_meaning": "the total 2-norm clip_grad_norm_ returns (before clipping); grads are then multiplied "
                             "by min(1, max_grad_norm / (norm + 1e-6))",
    }))


# =================================================================================================
# schedules

SCHED_STEPS, SCHED_WARMUP, SCHED_RATIO = 20, 3, 0.1
SCHED_TYPES = ["constant", "constant_with_warmup", "linear", "cosine"]


def warmup_steps_rule(warmup, n: int) -> int:
    """TrainingArguments.get_warmup_steps of transformers 5.23 (warmup_ratio is gone: a float warmup_steps in
    [0, 1) is the ratio)."""
    from transformers import TrainingArguments
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, warmup_steps=warmup, report_to=[], use_cpu=True)
        return int(args.get_warmup_steps(n))


def write_schedules(ctx: Context) -> None:
    from transformers import get_scheduler
    ratio_warmup = warmup_steps_rule(SCHED_RATIO, SCHED_STEPS)
    assert ratio_warmup == math.ceil(SCHED_RATIO * SCHED_STEPS) == 2
    cases = []
    for kind in SCHED_TYPES:
        for wname, w in (("steps", SCHED_WARMUP), ("ratio", ratio_warmup)):
            p = torch.nn.Parameter(torch.zeros(1))
            opt = torch.optim.AdamW([p], lr=1.0)
            kw = {} if kind == "constant" else {"num_warmup_steps": w}
            if kind in ("linear", "cosine"):
                kw["num_training_steps"] = SCHED_STEPS
            sched = get_scheduler(kind, opt, **kw)
            lrs = []
            for _ in range(SCHED_STEPS):
                lrs.append(opt.param_groups[0]["lr"])
                opt.step()
                sched.step()
            cases.append({"type": kind, "warmup": wname, "num_warmup_steps": w, "lr_multipliers": lrs})
    examples = []
    for n, w in ((20, 0.1), (10, 0.05), (100, 0.07), (7, 0.5), (20, 0.0), (20, 3), (20, 1), (20, 3.7), (1000, 0.03)):
        examples.append({"num_training_steps": n, "warmup_steps_arg": w, "warmup_steps": warmup_steps_rule(w, n)})
    write_json(ctx.path("train", "schedules.json"), {
        "num_training_steps": SCHED_STEPS, "warmup_steps": SCHED_WARMUP, "warmup_ratio": SCHED_RATIO,
        "warmup_steps_from_ratio": ratio_warmup, "base_lr": 1.0, "schedules": cases,
        "warmup_rule": "transformers 5.23 TrainingArguments has no warmup_ratio; warmup_steps (float) >= 1 -> "
                       "int(warmup_steps) (truncated), else math.ceil(num_training_steps * warmup_steps) in "
                       "float64 (so 100 * 0.07 = 7.000000000000001 -> 8)",
        "warmup_examples": examples,
        "meaning": "lr_multipliers[k] = param_groups[0]['lr'] (base lr 1.0) used by optimizer step k, i.e. after k "
                   "scheduler.step() calls; constant ignores warmup; cosine has num_cycles 0.5",
        "formulas": {
            "constant": "1",
            "constant_with_warmup": "k < w ? k / max(1, w) : 1",
            "linear": "k < w ? k / max(1, w) : max(0, (n - k) / max(1, n - w))",
            "cosine": "k < w ? k / max(1, w) : max(0, 0.5 * (1 + cos(pi * 2 * 0.5 * (k - w) / max(1, n - w))))",
        },
    })


# =================================================================================================
# AdamW

ADAMW_CFG = dict(lr=1e-2, betas=[0.9, 0.95], eps=1e-6, weight_decay=0.1, steps=5)
ADAMW_SHAPES = [[3, 5], [7], [2, 3, 4]]


def write_adamw(ctx: Context) -> None:
    c = ADAMW_CFG
    gen = torch.Generator().manual_seed(name_seed("train", "adamw"))
    init = [torch.randn(s, generator=gen) for s in ADAMW_SHAPES]
    params = [torch.nn.Parameter(t.clone()) for t in init]
    opt = torch.optim.AdamW(params, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"])
    out = {}
    scales = [1.0, 0.01, 3.0, 1e-4, 0.5]        # gradients of different magnitudes (eps and bias correction matter)
    for i, t in enumerate(init):
        out[f"param.{i}.init"] = t
    for s in range(c["steps"]):
        for i, p in enumerate(params):
            g = torch.randn(p.shape, generator=gen) * scales[s]
            if s == 2 and i == 1:
                g[2] = 0.0                       # one element with a zero gradient in one step
            out[f"grad.{i}.{s}"] = g
            p.grad = g.clone()
        opt.step()
        for i, p in enumerate(params):
            out[f"param.{i}.{s}"] = p.detach().clone()
    for i, p in enumerate(params):
        st = opt.state[p]
        out[f"state.{i}.exp_avg"] = st["exp_avg"].clone()
        out[f"state.{i}.exp_avg_sq"] = st["exp_avg_sq"].clone()
    meta = {k: json.dumps(v) for k, v in c.items()}
    meta["description"] = ("torch.optim.AdamW (single-tensor, foreach=False on CPU); param.<i>.<s> = values after "
                           "step s (0-based) with grad.<i>.<s>; state.<i>.* = moments after the last step")
    save_tensors(ctx.path("train", "adamw.safetensors"), out, meta)


def adamw_reference(p, grads, c):
    """The documented update in float64 (checker): decoupled decay, bias-corrected moments."""
    b1, b2 = c["betas"]
    p = p.double().clone()
    m = torch.zeros_like(p)
    v = torch.zeros_like(p)
    outs = []
    for t, g in enumerate(grads, start=1):
        g = g.double()
        p = p * (1 - c["lr"] * c["weight_decay"])
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        denom = (v / (1 - b2 ** t)).sqrt() + c["eps"]
        p = p - c["lr"] * mhat / denom
        outs.append(p.clone())
    return outs


# =================================================================================================
# data

ALPACA_PROMPT = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                 "request.\n\n### Instruction:\n{instruction}\n\n### Response:\n")
ALPACA_PROMPT_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further "
                       "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
                       "{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
DATA_MAX_LEN, EOS_ID, BLOCK, PLAIN_CHARS = 128, 50256, 64, 2000


def render(tok, rec: dict) -> dict:
    prompt = (ALPACA_PROMPT_INPUT if rec.get("input") else ALPACA_PROMPT).format(**rec)
    p_ids = tok.encode(prompt).ids
    o_ids = tok.encode(rec["output"], add_special_tokens=False).ids
    ids = p_ids + o_ids + [EOS_ID]
    labels = [-100] * len(p_ids) + o_ids + [EOS_ID]
    return {"instruction": rec["instruction"], "input": rec["input"], "output": rec["output"], "prompt": prompt,
            "prompt_len": len(p_ids), "untruncated_len": len(ids), "truncated": len(ids) > DATA_MAX_LEN,
            "joint_encoding_equal": tok.encode(prompt + rec["output"]).ids == p_ids + o_ids,
            "input_ids": ids[:DATA_MAX_LEN], "labels": labels[:DATA_MAX_LEN]}


def write_data(ctx: Context) -> None:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(SHARED_DATA, "gpt2-tokenizer", "tokenizer.json"))
    recs = json.load(open(os.path.join(SHARED_DATA, "alpaca-subset", "alpaca_tiny.json"), encoding="utf-8"))
    records = [dict(render(tok, r), index=i) for i, r in enumerate(recs[:5])]
    i_in = next(i for i, r in enumerate(recs) if r.get("input"))
    extra = [dict(render(tok, recs[i_in]), index=i_in)]          # the first record with an input (template 2)
    text = open(os.path.join(SHARED_DATA, "tinyshakespeare", "input.txt"), encoding="utf-8").read()[:PLAIN_CHARS]
    ids = tok.encode(text).ids
    blocks = [ids[i:i + BLOCK] for i in range(0, len(ids), BLOCK)]
    if blocks and len(blocks[-1]) < 2:
        blocks.pop()
    write_json(ctx.path("train", "data_alpaca_gpt2.json"), {
        "tokenizer": "../shared/data/gpt2-tokenizer/tokenizer.json (tokenizers library, Tokenizer.from_file)",
        "source": "../shared/data/alpaca-subset/alpaca_tiny.json", "max_seq_length": DATA_MAX_LEN, "eos_id": EOS_ID,
        "templates": {"no_input": ALPACA_PROMPT, "with_input": ALPACA_PROMPT_INPUT},
        "rule": "prompt = template (with_input when `input` is non-empty); input_ids = encode(prompt).ids + "
                "encode(output, add_special_tokens=False).ids + [eos]; labels = [-100] * len(prompt ids) + the rest; "
                "both cut to max_seq_length from the right (a truncated record loses its eos). The GPT-2 "
                "tokenizer adds no special tokens, so add_special_tokens does not change the ids.",
        "records": records, "extra_records": extra,
        "plain": {"source": "../shared/data/tinyshakespeare/input.txt", "chars": PLAIN_CHARS, "text": text,
                  "block_size": BLOCK, "num_tokens": len(ids),
                  "rule": "encode(text).ids as one stream (no eos), cut into consecutive blocks of block_size; the "
                          "last partial block is kept if it has >= 2 tokens; labels = input_ids",
                  "blocks": blocks},
    })


# =================================================================================================
# registration


@family("train", dirs=["train"])
def fam_train(ctx: Context) -> list[Item]:
    """Training: PEFT gradients of every trainable tensor, 10 AdamW steps, lr schedules, AdamW, tokenized data."""
    items = [Item(f"grads.{c.name}", (lambda c=c: write_grads(ctx, c)), [f"train/grads/{c.name}"]) for c in CASES]
    items += [Item(f"steps.{n}", (lambda n=n: write_steps(ctx, CASES_BY_NAME[n])), [f"train/steps/{n}"])
              for n in STEP_CASES]
    items.append(Item("schedules", lambda: write_schedules(ctx), ["train/schedules.json"]))
    items.append(Item("adamw", lambda: write_adamw(ctx), ["train/adamw.safetensors"]))
    items.append(Item("data", lambda: write_data(ctx), ["train/data_alpaca_gpt2.json"]))
    return items


# =================================================================================================
# read-back checks


def load_trainable(ctx: Context, case: TrainCase, adapter_rel: str):
    from peft import PeftModel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(load_base(ctx, case.model), adapter_rel, is_trainable=True)
    return pm


def check_grads(ctx: Context, case: TrainCase) -> str:
    d = ctx.path("train", "grads", case.name)
    t, meta = load_tensors(os.path.join(d, "expected.safetensors"))
    exp = json.load(open(os.path.join(d, "expected.json")))
    assert meta == {"model": case.model, "case": case.name}, meta
    assert t["input_ids"].shape == (GRAD_B, GRAD_T) and t["labels"].dtype == torch.int64
    assert int(t["attention_mask"].sum()) == GRAD_B * GRAD_T - GRAD_PAD
    assert int((t["labels"] == -100).sum()) == GRAD_PAD + 2 * GRAD_B
    adapter, _ = load_tensors(os.path.join(d, "adapter_model.safetensors"))
    gkeys = sorted(k[len("grad."):] for k in t if k.startswith("grad."))
    assert gkeys == sorted(set(adapter) - set(exp["saved_not_trainable"])), (gkeys, sorted(adapter))
    for k in gkeys:                                  # every trainable tensor gets a gradient
        g = t["grad." + k]
        assert g.shape == adapter[k].shape and g.dtype == torch.float32 and torch.isfinite(g).all(), k
        assert float(g.abs().max()) > 0, ("zero gradient", case.name, k)
    inputs = {k: t[k] for k in ("input_ids", "attention_mask", "labels")}
    # 1. reloading the saved adapter with is_trainable=True gives the same loss and gradients
    # 2. the same in float64: how close the f32 gradients are to exact (cpeft's tolerance is 1e-4 relative)
    worst = {}
    with in_dir(ctx.out):
        for dt in (torch.float32, torch.float64):
            pm = load_trainable(ctx, case, f"train/grads/{case.name}").to(dt)
            kmap, extra = trainable_key_map(pm)
            assert sorted(kmap.values()) == gkeys and extra == exp["saved_not_trainable"], (sorted(kmap.values()), extra)
            pm.train()
            out = pm(**inputs, use_cache=False)
            out.loss.backward()
            # the loss is the mean token CE over shifted labels (float64 recomputation from the logits)
            lg = out.logits.double()[:, :-1].reshape(-1, out.logits.shape[-1])
            lab = inputs["labels"][:, 1:].reshape(-1)
            ref = torch.nn.functional.cross_entropy(lg, lab, ignore_index=-100)
            assert abs(float(ref) - float(t["loss"])) < 1e-5, (float(ref), float(t["loss"]))
            params = dict(pm.named_parameters())
            rel = 0.0
            for n, k in kmap.items():
                g, e = params[n].grad.double(), t["grad." + k].double()
                rel = max(rel, float((g - e).norm() / e.norm()))
                if k in exp["exact_zero_grad"] and dt == torch.float64:
                    a, b = exp["exact_zero_grad"][k]
                    assert float(g[a:b].abs().max()) < 1e-12 * float(g.norm()), (k, g[a:b])
                    worst["noise_f32"] = max(worst.get("noise_f32", 0.0), float(e[a:b].abs().max()))
            worst[str(dt).replace("torch.", "")] = rel
    assert worst["float32"] < 1e-6, worst
    assert worst["float64"] < 1e-4, worst
    noise = (f"; key-bias grads exactly 0 in f64, f32 noise up to {worst['noise_f32']:.1e}"
             if "noise_f32" in worst else "")
    return (f"grads/{case.name}: {len(gkeys)} trainable tensors, all gradients non-zero; loss {float(t['loss']):.4f}; "
            f"reload f32 rel diff {worst['float32']:.1e}, vs f64 {worst['float64']:.1e}{noise}")


def check_steps(ctx: Context, case: TrainCase) -> str:
    d = ctx.path("train", "steps", case.name)
    t, meta = load_tensors(os.path.join(d, "expected.safetensors"))
    exp = json.load(open(os.path.join(d, "expected.json")))
    nb = STEP_CFG["num_micro_batches"]
    batches = [{k: t[f"{k}_{i}"] for k in ("input_ids", "attention_mask", "labels")} for i in range(nb)]
    Ts = [b["input_ids"].shape[1] for b in batches]
    assert min(Ts) >= 7 and max(Ts) <= 13 and all(b["input_ids"].shape[0] == 2 for b in batches)
    assert any(int(b["attention_mask"].sum()) < b["attention_mask"].numel() for b in batches)
    L = exp["losses"]
    assert len(L) == len(exp["grad_norms"]) == len(exp["lrs"]) == STEP_CFG["num_training_steps"]
    assert exp["lrs"][0] == 0.0 and abs(exp["lrs"][2] - STEP_CFG["lr"]) < 1e-12
    assert L[-1] < L[0] and sum(L[-3:]) < sum(L[:3]), L          # decreasing-ish
    notes = []
    with in_dir(ctx.out):
        # replay from the stored adapter and batches: same sequence (num_items_in_batch and loss*n/N agree)
        init, _ = load_tensors(os.path.join(d, "adapter_model.safetensors"))
        for variant in ("replay", "loss*n/N", "float64"):
            pm = load_trainable(ctx, case, f"train/steps/{case.name}")
            if variant == "float64":
                pm = pm.double()
            kmap, _ = trainable_key_map(pm)
            res = train_steps(pm, batches, alt=(variant == "loss*n/N"))
            dl = max(abs(a - b) for a, b in zip(res["losses"], L))
            dn = max(abs(a - b) / b for a, b in zip(res["grad_norms"], exp["grad_norms"]))
            params = dict(pm.named_parameters())
            df, dz = 0.0, 0.0
            for n, k in kmap.items():
                diff = (params[n].detach().double() - t["final." + k].double()).abs()
                if k in exp["exact_zero_grad"]:
                    a, b = exp["exact_zero_grad"][k]
                    dz = max(dz, float(diff[a:b].max()))
                    moved = float((t["final." + k][a:b].double() - init[k][a:b].double()).abs().max())
                    assert moved <= sum(exp["lrs"]) * 1.01, (k, moved)      # noise steps are at most ~lr each
                    diff = torch.cat([diff[:a], diff[b:]])
                df = max(df, float(diff.max()))
            assert res["lrs"] == exp["lrs"] and res["num_items"] == exp["num_items"]
            tol = {"replay": 0.0, "loss*n/N": 1e-5, "float64": 1e-4}[variant]
            assert dl <= 2e-6 and dn <= tol and df <= 1e-5, (variant, dl, dn, df)
            if variant == "replay":
                assert dl == 0.0 and df == 0.0 and dz == 0.0, (dl, df, dz)      # bit-exact rerun
            notes.append(f"{variant}: max|dloss| {dl:.1e}, |dnorm|/norm {dn:.1e}, final {df:.1e}"
                         + (f" (key-bias noise elements {dz:.1e})" if exp["exact_zero_grad"] else ""))
            assert sorted("final." + k for k in kmap.values()) == sorted(k for k in t if k.startswith("final."))
        # the step loss is the mean token CE over both micro-batches (at the step's starting weights)
        pm = load_trainable(ctx, case, f"train/steps/{case.name}")
        pm.train()
        with torch.no_grad():
            tot, cnt = 0.0, 0
            for mb in batches[:2]:
                lg = pm(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"], use_cache=False).logits
                lab = mb["labels"][:, 1:].reshape(-1)
                tot += float(torch.nn.functional.cross_entropy(lg[:, :-1].reshape(-1, lg.shape[-1]).double(), lab,
                                                               ignore_index=-100, reduction="sum"))
                cnt += int((lab != -100).sum())
        assert cnt == exp["num_items"][0] and abs(tot / cnt - L[0]) < 1e-5, (tot / cnt, L[0])
    clipped = sum(1 for g in exp["grad_norms"] if g > STEP_CFG["max_grad_norm"])
    return (f"steps/{case.name}: losses {L[0]:.4f} -> {L[-1]:.4f}, grad norms {min(exp['grad_norms']):.2f}.."
            f"{max(exp['grad_norms']):.2f} ({clipped}/10 clipped), N per step {exp['num_items']}; " + "; ".join(notes))


def check_other(ctx: Context) -> list[str]:
    notes = []
    p = ctx.path("train", "schedules.json")
    if os.path.exists(p):
        j = json.load(open(p))
        n = j["num_training_steps"]
        for s in j["schedules"]:
            w, lr = s["num_warmup_steps"], s["lr_multipliers"]
            for k, v in enumerate(lr):
                if s["type"] == "constant":
                    ref = 1.0
                elif k < w:
                    ref = k / max(1, w)
                elif s["type"] == "constant_with_warmup":
                    ref = 1.0
                elif s["type"] == "linear":
                    ref = max(0.0, (n - k) / max(1, n - w))
                else:
                    ref = max(0.0, 0.5 * (1 + math.cos(math.pi * 0.5 * 2 * (k - w) / max(1, n - w))))
                assert abs(ref - v) < 1e-12, (s["type"], s["warmup"], k, v, ref)
        for e in j["warmup_examples"]:
            w = e["warmup_steps_arg"]
            ref = int(w) if w >= 1 else math.ceil(e["num_training_steps"] * w)
            assert ref == e["warmup_steps"], e
        notes.append(f"schedules: {len(j['schedules'])} schedules match the closed forms; ratio {j['warmup_ratio']} of "
                     f"{n} -> {j['warmup_steps_from_ratio']} warmup steps; examples "
                     + ", ".join(f"{e['num_training_steps']}x{e['warmup_steps_arg']}->{e['warmup_steps']}"
                                 for e in j["warmup_examples"]))
    p = ctx.path("train", "adamw.safetensors")
    if os.path.exists(p):
        t, meta = load_tensors(p)
        c = {k: json.loads(meta[k]) for k in ADAMW_CFG}
        worst = 0.0
        for i in range(len(ADAMW_SHAPES)):
            ref = adamw_reference(t[f"param.{i}.init"], [t[f"grad.{i}.{s}"] for s in range(c["steps"])], c)
            for s in range(c["steps"]):
                worst = max(worst, float((ref[s] - t[f"param.{i}.{s}"].double()).abs().max()))
        assert worst < 1e-6, worst
        notes.append(f"adamw: float64 re-derivation of the update matches torch (max|diff| {worst:.1e})")
    p = ctx.path("train", "data_alpaca_gpt2.json")
    if os.path.exists(p):
        j = json.load(open(p))
        for r in j["records"] + j["extra_records"]:
            ids, lab = r["input_ids"], r["labels"]
            assert len(ids) == len(lab) == min(r["untruncated_len"], j["max_seq_length"])
            assert lab[: r["prompt_len"]] == [-100] * r["prompt_len"]
            assert lab[r["prompt_len"]:] == ids[r["prompt_len"]:]
            assert (ids[-1] == j["eos_id"]) == (not r["truncated"])
        assert any(r["truncated"] for r in j["records"]) and j["extra_records"][0]["input"]
        bl = j["plain"]["blocks"]
        assert sum(len(b) for b in bl) <= j["plain"]["num_tokens"] and all(len(b) == j["plain"]["block_size"] for b in bl[:-1])
        notes.append(f"data: {len(j['records'])} records (lengths {[len(r['input_ids']) for r in j['records']]}, "
                     f"{sum(r['truncated'] for r in j['records'])} truncated) + 1 with input; plain "
                     f"{j['plain']['num_tokens']} tokens -> {len(bl)} blocks (last {len(bl[-1])})")
    return notes


def check_train(ctx: Context) -> list[str]:
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in CASES:
            if os.path.exists(ctx.path("train", "grads", c.name, "expected.json")):
                notes.append(check_grads(ctx, c))
        for n in STEP_CASES:
            if os.path.exists(ctx.path("train", "steps", n, "expected.json")):
                notes.append(check_steps(ctx, CASES_BY_NAME[n]))
        notes += check_other(ctx)
    root = ctx.path("train")
    if os.path.isdir(root):
        size = sum(os.path.getsize(os.path.join(a, f)) for a, _, fs in os.walk(root) for f in fs)
        assert size < 1.5e6, size
        notes.append(f"train/ total {size:,} bytes")
    return notes


CHECKERS = {"train": check_train}
