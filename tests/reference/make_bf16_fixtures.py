#!/usr/bin/env python3
"""bf16 compute fixtures (tests/parity/test_bf16.c): `--bf16` against PyTorch's CPU autocast(bfloat16), on the
LoRA gradient cases already committed (their tiny models, adapters and batches). Under tests/fixtures/bf16/:

    <case>/expected.safetensors    for the batch of tests/fixtures/<case_dir>/expected.safetensors:
        logits_autocast, loss_autocast, grad_autocast.<saved key>
            PeftModel.train(); with torch.autocast("cpu", dtype=torch.bfloat16): out = model(**batch);
            out.loss.backward() (the Hugging Face Trainer's bf16=True on a CPU). Every nn.Linear / Conv1D
            product runs in bf16, LoRA's included, and returns bf16; matmul/bmm of attention in bf16;
            softmax, norms and the loss in f32; parameters and their gradients f32.
        logits_emulated, loss_emulated, grad_emulated.<saved key>
            cpeft's definition of --bf16, written out in f32 PyTorch: each frozen Linear / Conv1D (the LoRA
            base layers, the untargeted ones and the LM head) computes bf16(x) . bf16(W) + b in f32 and its
            input gradient bf16(dY) . bf16(W) (round to nearest even: .bfloat16()); the LoRA products,
            attention, norms and loss stay f32; outputs f32.
    <case>/expected.json           case_dir (the source case), base_dir, what each tensor is, and the
                                   differences autocast vs emulated and each vs f32 (printed too).

    tests/reference/.venv/bin/python tests/reference/make_bf16_fixtures.py   (about 20 s)
"""
import json
import os
import sys
import warnings

import torch
import torch.nn.functional as F

CASES = ["train/grads/gpt2_odd_all_linear", "train/grads/neo_qkv", "llama/grads/llama_all_linear"]
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures")


NUDGE = 0.0  # sensitivity runs: every value is scaled by (1 + NUDGE) before it is rounded


def r(t):
    return (t * (1 + NUDGE) if NUDGE else t).bfloat16().float()


class Bf16Product(torch.autograd.Function):
    """y = bf16(x) . bf16(W)^T + b (W stored (out, in)); dx = bf16(dy) . bf16(W); W and b frozen."""

    @staticmethod
    def forward(ctx, x, w_nt, b):
        ctx.save_for_backward(w_nt)
        y = r(x) @ r(w_nt).t()
        return y + b if b is not None else y

    @staticmethod
    def backward(ctx, gy):
        (w_nt,) = ctx.saved_tensors
        return r(gy) @ r(w_nt), None, None


def emulate(model):
    from transformers.pytorch_utils import Conv1D
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and not mod.weight.requires_grad:
            mod.forward = (lambda m: lambda x: Bf16Product.apply(x, m.weight, m.bias))(mod)
            n += 1
        elif isinstance(mod, Conv1D) and not mod.weight.requires_grad:
            def conv(x, m=mod):
                y = Bf16Product.apply(x.reshape(-1, x.shape[-1]), m.weight.t(), m.bias)
                return y.view(x.shape[:-1] + (m.nf,))
            mod.forward = conv
            n += 1
    return n


def load(fix_root, case_dir, base_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    cwd = os.getcwd()
    os.chdir(fix_root)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, attn_implementation="eager")
            pm = PeftModel.from_pretrained(base, case_dir, is_trainable=True)
    finally:
        os.chdir(cwd)
    pm.train()
    return pm


def run(pm, batch, autocast):
    pm.zero_grad(set_to_none=True)
    if autocast:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = pm(**batch, use_cache=False)
    else:
        out = pm(**batch, use_cache=False)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}
    return out.logits.detach().float(), float(out.loss.detach()), grads


def saved_key(name):
    """PEFT's saved key of a trainable parameter name (the adapter name dropped)."""
    k = name.replace(".default", "")
    return k


def main():
    from safetensors.torch import load_file, save_file
    for case in CASES:
        fix_root = os.path.join(ROOT, "llama") if case.startswith("llama/") else ROOT
        rel = case[len("llama/"):] if case.startswith("llama/") else case
        exp = json.load(open(os.path.join(ROOT, case, "expected.json")))
        src = load_file(os.path.join(ROOT, case, "expected.safetensors"))
        batch = {k: src[k] for k in ("input_ids", "attention_mask", "labels")}
        res = {}
        global NUDGE
        for mode in ("f32", "autocast", "emulated", "nudged_up", "nudged_down"):
            pm = load(fix_root, rel, exp["base_dir"])
            n = emulate(pm) if mode not in ("f32", "autocast") else 0
            NUDGE = {"nudged_up": 2.0**-22, "nudged_down": -2.0**-22}.get(mode, 0.0)
            res[mode] = run(pm, batch, mode == "autocast")
            NUDGE = 0.0
            if mode == "emulated":
                assert n > 0
                n_emulated = n
        keys = {}
        adapter = load_file(os.path.join(ROOT, case, "adapter_model.safetensors"))
        for name in res["f32"][2]:
            k = saved_key(name)
            assert k in adapter, (k, sorted(adapter))
            keys[name] = k
        mask = batch["attention_mask"].bool()

        def logit_diff(a, b):
            return float((a - b)[mask].abs().max())

        def grad_rel(ga, gb):  # per tensor |ga - gb| / |gb| (Frobenius), the largest
            return max(float((ga[n] - gb[n]).norm() / gb[n].norm()) for n in ga)

        diffs = {
            "logits autocast vs f32": logit_diff(res["autocast"][0], res["f32"][0]),
            "logits emulated vs f32": logit_diff(res["emulated"][0], res["f32"][0]),
            "logits autocast vs emulated": logit_diff(res["autocast"][0], res["emulated"][0]),
            "loss autocast vs f32": abs(res["autocast"][1] - res["f32"][1]),
            "loss emulated vs f32": abs(res["emulated"][1] - res["f32"][1]),
            "loss autocast vs emulated": abs(res["autocast"][1] - res["emulated"][1]),
            "grads autocast vs f32 (rel)": grad_rel(res["autocast"][2], res["f32"][2]),
            "grads emulated vs f32 (rel)": grad_rel(res["emulated"][2], res["f32"][2]),
            "grads autocast vs emulated (rel)": grad_rel(res["autocast"][2], res["emulated"][2]),
            # how far the emulation moves when every value it rounds moves by 2 f32 ulps (2^-22 relative): values
            # next to a bf16 rounding boundary round the other way, which any f32 difference upstream can cause
            "logits emulated sensitivity": max(logit_diff(res[k][0], res["emulated"][0]) for k in ("nudged_up", "nudged_down")),
            "loss emulated sensitivity": max(abs(res[k][1] - res["emulated"][1]) for k in ("nudged_up", "nudged_down")),
            "grads emulated sensitivity (rel)": max(grad_rel(res[k][2], res["emulated"][2]) for k in ("nudged_up", "nudged_down")),
        }
        out = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "labels": batch["labels"]}
        for mode in ("autocast", "emulated"):
            out[f"logits_{mode}"] = res[mode][0].contiguous()
            out[f"loss_{mode}"] = torch.tensor([res[mode][1]], dtype=torch.float32)
            for name, k in keys.items():
                out[f"grad_{mode}.{k}"] = res[mode][2][name].contiguous()
        d = os.path.join(ROOT, "bf16", os.path.basename(case))
        os.makedirs(d, exist_ok=True)
        save_file({k: v.contiguous() for k, v in sorted(out.items())}, os.path.join(d, "expected.safetensors"),
                  metadata={"format": "pt"})
        info = {"case_dir": case, "base_dir": exp["base_dir"], "frozen_products_emulated": n_emulated,
                "torch": torch.__version__, "differences": diffs,
                "how": __doc__.split("\n\n")[1].strip().splitlines()}
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8", newline="\n") as f:
            json.dump(info, f, indent=2, sort_keys=True)
            f.write("\n")
        print(case, n_emulated, "frozen products;", ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))


if __name__ == "__main__":
    sys.exit(main())
