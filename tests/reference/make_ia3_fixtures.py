#!/usr/bin/env python3
"""(IA)³ fixtures (tests/parity/test_ia3.c), from transformers + PEFT 0.21.2, on the tiny models already committed
(GPT-2 with Conv1D, GPT-Neo, Llama with biases, BERT SEQ_CLS, RoBERTa TOKEN_CLS). Under tests/fixtures/ia3/:

    <case>/                 PEFT's adapter (save_pretrained; init_ia3_weights=False, so ia3_l is N(0, 1) and every
                            check can fail) + expected.safetensors: input_ids, attention_mask, labels; logits
                            (active), logits_disabled, logits_merged (merge_adapter), logits_unmerged; loss and
                            grad.<saved key> of every trainable tensor after one backward (eval mode: the encoders'
                            dropout off, as cpeft's trainer runs them); merged.<name> for the target modules'
                            weights and biases after merge_and_unload + expected.json: counts, the lines of
                            print_trainable_parameters (both formats), print(model), base_dir, task_type, and
                            adapter_config.json as PEFT writes it again after PeftModel.from_pretrained
    multi/                  GPT-2 with adapters "default" (PEFT's defaults) and "two" (c_attn, c_fc, mlp.c_proj, the
                            last two feed-forward): logits of each alone and of both active (the product), the
                            gradients of both through the product (grad.<adapter>.<key>), counts, repr; combo/:
                            add_weighted_adapter(["default", "two"], [0.7, -0.4]) saved, and its logits
    roundtrip/<case>/       cpeft -> PEFT: `cpeft adapter init --seed 7` writes adapter/ (init_ia3_weights=false),
                            PeftModel.from_pretrained reads it (logits_peft); `cpeft merge` writes a checkpoint that
                            transformers reads (logits_merged_transformers)
    steps/<case>/           10 AdamW steps (oracle_train.py's loop and micro-batches for the decoders; the
                            clstrain/ batches and loop for BERT SEQ_CLS): the initial adapter, losses, grad norms, lrs,
                            final.<key>
    errors.json             PEFT's messages: feedforward_modules not a subset of target_modules, no default targets /
                            feed-forward modules for a model type (distilbert), two peft types on one model, and
                            PEFT refusing its own all-linear adapter whose feedforward_modules are names (the config)

    tests/reference/.venv/bin/python tests/reference/make_ia3_fixtures.py --cpeft build/cpeft
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "ia3")
SET_KEYS = ("target_modules", "exclude_modules", "feedforward_modules")  # modules_to_save is a list
B, T, PAD = 2, 9, 3
SEED = 7


def name_seed(*parts):
    return zlib.crc32("/".join(parts).encode()) & 0x7FFFFFFF


CASES = [
    dict(name="gpt2_default", base="tests/fixtures/models/gpt2_tiny", task="CAUSAL_LM", cfg={},
         what="GPT-2 (Conv1D): PEFT's defaults c_attn (output, with its bias) and mlp.c_proj (feed-forward input)"),
    dict(name="neo_all_linear", base="tests/fixtures/models/gpt_neo_tiny", task="CAUSAL_LM",
         cfg=dict(target_modules="all-linear", feedforward_modules=r".*\.mlp\.c_(fc|proj)",
                  exclude_modules=["transformer.h.0.attn.attention.k_proj"]),
         what="GPT-Neo (Linear): all-linear, c_fc and c_proj feed-forward by regex, one k_proj excluded"),
    dict(name="llama_bias_default", base="tests/fixtures/llama/models/llama_bias", task="CAUSAL_LM", cfg={},
         what="Llama with attention and MLP biases: PEFT's defaults k_proj, v_proj (biases scaled on merge), down_proj"),
    dict(name="bert_seqcls", base="tests/fixtures/encoders/models/bert_seqcls", task="SEQ_CLS", cfg={},
         what="BERT SEQ_CLS: PEFT's defaults key, value, output.dense (both attention.output.dense and the FFN's "
              "output.dense are feed-forward: str.endswith), classifier in modules_to_save (its copy perturbed)"),
    dict(name="deberta_seqcls", base="tests/fixtures/deberta_models/models/deb_seqcls", task="SEQ_CLS", cfg={},
         what="DeBERTa (v1) SEQ_CLS: PEFT's defaults in_proj (the fused q/k/v output) and output.dense, the "
              "ContextPooler and classifier: classifier in modules_to_save"),
    dict(name="qwen2_seqcls", base="tests/fixtures/decoder_heads/models/qwen2_seqcls_left", task="SEQ_CLS", cfg={},
         what="Qwen2 SEQ_CLS (a decoder's score head, pooled at the last non-pad token): PEFT's defaults q_proj, "
              "v_proj (with biases), down_proj; score in modules_to_save"),
    dict(name="roberta_tokcls_regex", base="tests/fixtures/encoders/models/roberta_tokcls", task="TOKEN_CLS",
         cfg=dict(target_modules=r".*\.(key|value|intermediate\.dense|output\.dense)",
                  feedforward_modules=r".*\.output\.dense"),
         what="RoBERTa TOKEN_CLS: regex targets and regex feed-forward modules, classifier copy perturbed"),
]
ROUNDTRIP = [
    dict(name="rt_gpt2", base="tests/fixtures/models/gpt2_tiny", task="CAUSAL_LM",
         config={"peft_type": "IA3", "task_type": "CAUSAL_LM", "init_ia3_weights": False}),
    dict(name="rt_llama_bias", base="tests/fixtures/llama/models/llama_bias", task="CAUSAL_LM",
         config={"peft_type": "IA3", "task_type": "CAUSAL_LM", "init_ia3_weights": False}),
    dict(name="rt_bert_seqcls", base="tests/fixtures/encoders/models/bert_seqcls", task="SEQ_CLS",
         config={"peft_type": "IA3", "task_type": "SEQ_CLS", "init_ia3_weights": False}),
]


def auto_class(task):
    import transformers as tf
    return {"CAUSAL_LM": tf.AutoModelForCausalLM, "SEQ_CLS": tf.AutoModelForSequenceClassification,
            "TOKEN_CLS": tf.AutoModelForTokenClassification}[task]


def load_base(base, task):
    return auto_class(task).from_pretrained(base, dtype=torch.float32, attn_implementation="eager").eval()


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def save_tensors(path, tensors):
    from safetensors.torch import save_file
    save_file({k: v.detach().contiguous() for k, v in sorted(tensors.items())}, path, metadata={"format": "pt"})


def save_adapter_config_sorted(p):
    """Set-valued lists sorted (PEFT writes them in hash-seed order), PEFT's serialisation kept."""
    raw = open(p, encoding="utf-8").read()
    cfg = json.loads(raw)
    assert json.dumps(cfg, indent=2, sort_keys=True) == raw, "PEFT's adapter_config.json format changed"
    for k in SET_KEYS:
        if isinstance(cfg.get(k), list):
            cfg[k] = sorted(cfg[k])
    with open(p, "w", encoding="utf-8", newline="\n") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True))


def save_adapter(pm, d, **kw):
    """save_pretrained, README removed, set-valued lists sorted."""
    pm.save_pretrained(d, **kw)
    for root, _, files in os.walk(d):
        if "README.md" in files:
            os.remove(os.path.join(root, "README.md"))
        if "adapter_config.json" in files:
            save_adapter_config_sorted(os.path.join(root, "adapter_config.json"))


def inputs_for(name, model, task):
    cfg = model.config
    gen = torch.Generator().manual_seed(name_seed("ia3", "inputs", name))
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    ids = torch.randint(2, cfg.vocab_size, (B, T), generator=gen, dtype=torch.int64)
    mask = torch.ones(B, T, dtype=torch.int64)
    ids[1, T - PAD:] = pad
    mask[1, T - PAD:] = 0
    if task == "CAUSAL_LM":
        labels = ids.clone()
        labels[mask == 0] = -100
    elif task == "SEQ_CLS":
        labels = torch.randint(0, cfg.num_labels, (B,), generator=gen, dtype=torch.int64)
    else:
        labels = torch.randint(0, cfg.num_labels, (B, T), generator=gen, dtype=torch.int64)
        labels[mask == 0] = -100
    return {"input_ids": ids, "attention_mask": mask}, labels


@torch.no_grad()
def logits_of(model, inputs):
    kw = {"use_cache": False} if "Causal" in type(model).__name__ or "CausalLM" in type(model).__name__ else {}
    return model(**inputs, **kw).logits.detach().float().clone()


def counts(pm):
    t, a = pm.get_nb_trainable_parameters()
    return {"trainable": t, "all": a,
            "print_trainable_parameters": f"trainable params: {t:,d} || all params: {a:,d} || trainable%: {100 * t / a:.4f}",
            "notebook_line": f"trainable params: {t} || all params: {a} || trainable%: {100 * t / a}"}


def key_map(pm, adapter="default"):
    """{parameter: saved key (base_model.model....)} for the trainable parameters, by storage identity with
    get_peft_model_state_dict (exactly PEFT's renaming)."""
    from peft.utils import get_peft_model_state_dict
    sd = get_peft_model_state_dict(pm, adapter_name=adapter)
    by_ptr = {v.data_ptr(): k for k, v in sd.items()}
    out = {}
    for n, p in pm.named_parameters():
        if p.requires_grad:
            k = by_ptr[p.data_ptr()]
            out[n] = k if k.startswith("base_model.model.") else "base_model.model." + k
    return out


def perturb_saved_copies(pm, name):
    """The classifier copy of modules_to_save starts as the original: move it, so a cpeft that read the original
    instead would fail."""
    gen = torch.Generator().manual_seed(name_seed("ia3", "mts", name))
    with torch.no_grad():
        for n, p in pm.named_parameters():
            if ".modules_to_save." in n:
                p.add_(0.3 * torch.randn(p.shape, generator=gen))


def peft_model(case, base):
    from peft import IA3Config, get_peft_model
    torch.manual_seed(name_seed("ia3", "init", case["name"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fan_in_fan_out on Conv1D
        pm = get_peft_model(base, IA3Config(task_type=case["task"], init_ia3_weights=False, **case["cfg"]))
    perturb_saved_copies(pm, case["name"])
    return pm.eval()


def peft_resaved_config(case, d):
    """adapter_config.json as PEFT writes it after PeftModel.from_pretrained: the SEQ_CLS / TOKEN_CLS wrapper appends
    its head names to modules_to_save again ("classifier", "score" twice), as cpeft does when it loads the file."""
    from peft import PeftModel
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        PeftModel.from_pretrained(load_base(case["base"], case["task"]), d).save_pretrained(tmp)
        save_adapter_config_sorted(os.path.join(tmp, "adapter_config.json"))
        return open(os.path.join(tmp, "adapter_config.json"), encoding="utf-8").read()


def target_tensors(pm):
    """The state-dict names (as merge_and_unload leaves them) of the weights and biases of every IA3 layer."""
    from peft.tuners.ia3 import IA3Layer
    names = []
    for n, m in pm.base_model.model.named_modules():
        if isinstance(m, IA3Layer):
            base = m.get_base_layer()
            names.append(n + ".weight")
            if base.bias is not None:
                names.append(n + ".bias")
    return names


def write_case(case):
    d = os.path.join(OUT, case["name"])
    os.makedirs(d)
    base = load_base(case["base"], case["task"])
    inputs, labels = inputs_for(case["name"], base, case["task"])
    pm = peft_model(case, base)
    save_adapter(pm, d)
    t = dict(inputs)
    t["labels"] = labels
    resaved = peft_resaved_config(case, d)
    t["logits"] = logits_of(pm, inputs)
    with pm.disable_adapter():
        t["logits_disabled"] = logits_of(pm, inputs)
    # one backward: the gradient of every trainable tensor, by its saved key
    kmap = key_map(pm)
    pm.zero_grad(set_to_none=True)
    out = pm(**inputs, labels=labels, **({"use_cache": False} if case["task"] == "CAUSAL_LM" else {}))
    out.loss.backward()
    t["loss"] = out.loss.detach().reshape(1)
    for n, p in pm.named_parameters():
        if p.requires_grad:
            t["grad." + kmap[n]] = p.grad.detach().clone()
    pm.zero_grad(set_to_none=True)
    info = dict(counts(pm), repr=str(pm), base_dir=case["base"], task_type=case["task"], description=case["what"],
                grads=sorted(kmap.values()), peft_resaved_config=resaved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm.merge_adapter()
        t["logits_merged"] = logits_of(pm, inputs)
        pm.unmerge_adapter()  # "Unmerge result can be inaccurate for (IA)^3"
        t["logits_unmerged"] = logits_of(pm, inputs)
        names = target_tensors(pm)
        merged = pm.merge_and_unload()
    sd = merged.state_dict()
    for n in names:
        t["merged." + n] = sd[n].detach().clone()
    t["logits_merged_unloaded"] = logits_of(merged, inputs)
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), info)
    print(f"{case['name']}: {info['print_trainable_parameters']}")


def write_multi():
    from peft import IA3Config
    d = os.path.join(OUT, "multi")
    os.makedirs(d)
    case = dict(name="multi", base="tests/fixtures/models/gpt2_tiny", task="CAUSAL_LM", cfg={})
    base = load_base(case["base"], "CAUSAL_LM")
    inputs, labels = inputs_for("multi", base, "CAUSAL_LM")
    pm = peft_model(case, base)
    torch.manual_seed(name_seed("ia3", "init", "multi", "two"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm.add_adapter("two", IA3Config(task_type="CAUSAL_LM", init_ia3_weights=False,
                                        target_modules=["c_attn", "c_fc", "mlp.c_proj"],
                                        feedforward_modules=["c_fc", "mlp.c_proj"]))
    save_adapter(pm, d)  # default in d/, two in d/two/
    t = dict(inputs)
    t["logits_default"] = logits_of(pm, inputs)
    pm.base_model.set_adapter("two")
    t["logits_two"] = logits_of(pm, inputs)
    pm.base_model.set_adapter(["default", "two"])  # both active, both trainable (set_adapter sets requires_grad)
    t["logits_both"] = logits_of(pm, inputs)
    # the gradient of each adapter's vectors through the product
    from peft.utils import get_peft_model_state_dict
    t["labels"] = labels
    out = pm(**inputs, labels=labels, use_cache=False)
    out.loss.backward()
    t["loss"] = out.loss.detach().reshape(1)
    for adapter in ("default", "two"):
        by_ptr = {v.data_ptr(): k for k, v in get_peft_model_state_dict(pm, adapter_name=adapter).items()}
        for n, p in pm.named_parameters():
            if p.data_ptr() in by_ptr:
                assert p.requires_grad, n
                k = by_ptr[p.data_ptr()]
                k = k if k.startswith("base_model.model.") else "base_model.model." + k
                t[f"grad.{adapter}.{k}"] = p.grad.detach().clone()
    pm.zero_grad(set_to_none=True)
    # add_weighted_adapter: Σ w_i ia3_l on the union of the targets and feed-forward modules
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm.add_weighted_adapter(["default", "two"], [0.7, -0.4], "combo")
    pm.base_model.set_adapter("combo")
    t["logits_combo"] = logits_of(pm, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        pm.save_pretrained(tmp, selected_adapters=["combo"])
        shutil.copytree(os.path.join(tmp, "combo"), os.path.join(d, "combo"))
    save_adapter_config_sorted(os.path.join(d, "combo", "adapter_config.json"))
    readme = os.path.join(d, "combo", "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    pm.base_model.set_adapter(["default", "two"])
    info = dict(counts(pm), repr=str(pm), base_dir=case["base"], task_type="CAUSAL_LM",
                description="GPT-2: default (PEFT's defaults) and two (c_attn, c_fc, mlp.c_proj; the last two "
                            "feed-forward); both active multiply their vectors; counts with both active")
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), info)


def write_roundtrip(case, cpeft):
    from peft import PeftModel
    d = os.path.join(OUT, "roundtrip", case["name"])
    os.makedirs(d)
    with open(os.path.join(d, "peft_config.json"), "w") as f:
        json.dump(case["config"], f, indent=2, sort_keys=True)
    adapter = os.path.join(d, "adapter")
    rel = lambda p: os.path.relpath(p, ROOT)
    subprocess.run([cpeft, "adapter", "init", "--model", case["base"], "--peft-config", rel(os.path.join(d, "peft_config.json")),
                    "--seed", str(SEED), "--out", rel(adapter)], check=True, capture_output=True, cwd=ROOT)
    base = load_base(case["base"], case["task"])
    inputs, _ = inputs_for(case["name"], base, case["task"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = PeftModel.from_pretrained(base, rel(adapter)).eval()
    t = dict(inputs)
    t["logits_peft"] = logits_of(pm, inputs)
    with tempfile.TemporaryDirectory() as tmp:
        merged = os.path.join(tmp, "merged")
        subprocess.run([cpeft, "merge", "--model", case["base"], "--adapter", rel(adapter), "--out", merged],
                       check=True, capture_output=True, cwd=ROOT)
        t["logits_merged_transformers"] = logits_of(load_base(merged, case["task"]), inputs)
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), {
        "base_dir": case["base"], "task_type": case["task"], "seed": SEED,
        "how": "cpeft adapter init (seed) -> PeftModel.from_pretrained; cpeft merge -> transformers"})


def write_steps_decoder(name, base_dir, cfg):
    """oracle_train.py's 10-step loop on its micro-batches, with an IA3 adapter."""
    sys.path.insert(0, HERE)
    import oracle_train as ot
    from peft import IA3Config, get_peft_model
    d = os.path.join(OUT, "steps", name)
    os.makedirs(d)
    base = load_base(base_dir, "CAUSAL_LM")
    torch.manual_seed(name_seed("ia3", "steps", name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(base, IA3Config(task_type="CAUSAL_LM", **cfg))
    save_adapter(pm, d)
    batches = ot.step_batches("ia3_" + name, base.config.vocab_size)
    kmap = key_map(pm)
    res = ot.train_steps(pm, batches)
    t = {}
    for i, mb in enumerate(batches):
        for k, v in mb.items():
            t[f"{k}_{i}"] = v
    params = dict(pm.named_parameters())
    for n, k in kmap.items():
        t["final." + k] = params[n].detach().clone()
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), dict(base_dir=base_dir, config=ot.STEP_CFG, losses=res["losses"],
                                                       grad_norms=res["grad_norms"], lrs=res["lrs"]))
    print(name, "losses", [round(x, 4) for x in res["losses"]])


def write_steps_bert():
    """make_class_train_fixtures.py's SEQ_CLS loop and micro-batches (clstrain/steps/bert_seqcls), with IA3."""
    from peft import IA3Config, get_peft_model
    from safetensors.torch import load_file
    from transformers import get_scheduler
    src = os.path.join(ROOT, "tests", "fixtures", "clstrain", "steps", "bert_seqcls")
    exp = json.load(open(os.path.join(src, "expected.json")))
    cfg = exp["config"]
    d = os.path.join(OUT, "steps", "bert_seqcls")
    os.makedirs(d)
    base_dir = "tests/fixtures/clstrain/steps/bert_seqcls/base"
    model = load_base(base_dir, "SEQ_CLS")
    torch.manual_seed(name_seed("ia3", "steps", "bert_seqcls"))
    pm = get_peft_model(model, IA3Config(task_type="SEQ_CLS"))
    save_adapter(pm, d)
    kmap = key_map(pm)
    data = load_file(os.path.join(src, "expected.safetensors"))
    ga, steps = cfg["gradient_accumulation_steps"], cfg["num_training_steps"]
    batches = [{k: data[f"{k}_{i}"] for k in ("input_ids", "attention_mask", "token_type_ids", "labels")}
               for i in range(steps * ga)]
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"], weight_decay=cfg["weight_decay"])
    sched = get_scheduler("linear", opt, num_warmup_steps=cfg["num_warmup_steps"], num_training_steps=steps)
    losses, norms, lrs = [], [], []
    for step in range(steps):
        mbs = batches[step * ga:(step + 1) * ga]
        N = sum(int((mb["labels"] != -100).sum()) for mb in mbs)
        total = 0.0
        for mb in mbs:
            logits = pm(input_ids=mb["input_ids"], attention_mask=mb["attention_mask"],
                        token_type_ids=mb["token_type_ids"]).logits
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), mb["labels"].reshape(-1),
                                                     ignore_index=-100, reduction="sum") / N
            loss.backward()
            total += float(loss.detach())
        gn = torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        lrs.append(opt.param_groups[0]["lr"])
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        losses.append(total)
        norms.append(float(gn))
    t = {}
    for i, mb in enumerate(batches):
        for k, v in mb.items():
            t[f"{k}_{i}"] = v
    named = dict(pm.named_parameters())
    for n, k in kmap.items():
        t["final." + k] = named[n].detach().clone()
    save_tensors(os.path.join(d, "expected.safetensors"), t)
    write_json(os.path.join(d, "expected.json"), dict(base_dir=base_dir, task_type="SEQ_CLS", labels=exp["labels"],
                                                       config=cfg, losses=losses, grad_norms=norms, lrs=lrs))
    print("bert_seqcls losses", [round(x, 4) for x in losses])


def peft_error(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - PEFT raises ValueError / its own subclasses
        return f"{type(e).__name__}: {e}"
    raise AssertionError("PEFT did not refuse")


def write_errors():
    from peft import IA3Config, LoraConfig, get_peft_model
    distil = "tests/fixtures/encoders/models/distilbert_seqcls"
    errs = {
        "feedforward_not_subset": peft_error(lambda: IA3Config(target_modules=["k_proj", "v_proj"],
                                                               feedforward_modules=["down_proj"])),
        "no_default_targets": peft_error(lambda: get_peft_model(load_base(distil, "SEQ_CLS"), IA3Config(task_type="SEQ_CLS"))),
        "no_default_feedforward": peft_error(lambda: get_peft_model(load_base(distil, "SEQ_CLS"),
                                                                    IA3Config(task_type="SEQ_CLS", target_modules=["q_lin"]))),
    }

    def two_types():
        pm = get_peft_model(load_base("tests/fixtures/models/gpt2_tiny", "CAUSAL_LM"), IA3Config(task_type="CAUSAL_LM"))
        pm.add_adapter("lora", LoraConfig(task_type="CAUSAL_LM", target_modules=["c_attn"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errs["two_peft_types"] = peft_error(two_types)
    errs["distilbert_base"] = distil
    # PEFT saves all-linear as the full names; feedforward_modules given as names is then no subset of them, and PEFT
    # refuses to load its own adapter (IA3Config.__post_init__): so does cpeft
    from peft import PeftModel
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        neo = "tests/fixtures/models/gpt_neo_tiny"
        get_peft_model(load_base(neo, "CAUSAL_LM"), IA3Config(task_type="CAUSAL_LM", target_modules="all-linear",
                                                              feedforward_modules=["c_fc", "mlp.c_proj"])).save_pretrained(tmp)
        save_adapter_config_sorted(os.path.join(tmp, "adapter_config.json"))
        errs["all_linear_reload_config"] = open(os.path.join(tmp, "adapter_config.json")).read()
        errs["all_linear_reload"] = peft_error(lambda: PeftModel.from_pretrained(load_base(neo, "CAUSAL_LM"), tmp))
    write_json(os.path.join(OUT, "errors.json"), errs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpeft", required=True, help="build/cpeft (the roundtrip cases run it)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    os.chdir(ROOT)  # base_model_name_or_path is written relative to the repository root
    cpeft = os.path.abspath(args.cpeft)
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for c in CASES:
        write_case(c)
    write_multi()
    for c in ROUNDTRIP:
        write_roundtrip(c, cpeft)
    write_steps_decoder("gpt2_default", "tests/fixtures/models/gpt2_tiny", {})
    write_steps_decoder("llama_qkv_mlp", "tests/fixtures/llama/models/llama_tiny",
                        dict(target_modules=["q_proj", "k_proj", "v_proj", "up_proj", "down_proj"],
                             feedforward_modules=["down_proj"], init_ia3_weights=False))
    write_steps_bert()
    write_errors()


if __name__ == "__main__":
    main()
