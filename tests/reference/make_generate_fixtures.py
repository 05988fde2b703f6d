"""Writes the generation fixtures (tests/fixtures/generate/) with transformers' generate() and
PEFT's PeftModel.generate() on the tiny checkpoints already in tests/fixtures/models.

    tests/reference/.venv/bin/python tests/reference/make_generate_fixtures.py [--out tests/fixtures]

generate.json  greedy cases: one prompt and left-padded batches, GPT-Neo (local window shorter than
               the sequence) and GPT-2, base / unmerged LoRA adapter / merged (merge_and_unload) /
               mixed-adapter batches (adapter_names with "__base__"), eos lists ending rows early
               (finished rows continue with pad_token_id, as generate() pads them), repetition
               penalty. Each case records the prompts (token ids, unpadded), the settings and
               `sequences`: the new tokens generate() returned per row (pads after eos included),
               plus `min_margin`, the smallest gap between the best and second-best processed score
               over all steps (how close greedy came to a tie).
char_tokenizer/  a character-level tokenizer.json for the 97-token tiny models; text_cases in generate.json are
               text prompts (plain, Alpaca template, a stop string) through it and gpt_neo_tiny.
processors.json  the logits processors and warpers of sampling, applied in generate()'s order
               (repetition penalty, temperature, top-k, top-p) to fixed scores: the C sampler's
               filtering is compared to these (torch's RNG itself cannot be reproduced).

Deterministic: no random numbers beyond the fixed checkpoints; one torch thread; sorted JSON keys.
Running it twice gives identical files.
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM
from transformers.generation.logits_process import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


def load(out, name):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(out, "models", name), dtype=torch.float32,
                                             attn_implementation="eager")
    return m.eval()


def left_pad(prompts, pad):
    T = max(len(p) for p in prompts)
    ids = [[pad] * (T - len(p)) + p for p in prompts]
    mask = [[0] * (T - len(p)) + [1] * len(p) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask), T


def run_case(model, prompts, max_new_tokens, eos, pad, repetition_penalty=None, adapter_names=None):
    ids, mask, T = left_pad(prompts, pad)
    kw = dict(attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos,
              pad_token_id=pad, output_scores=True, return_dict_in_generate=True)
    if repetition_penalty is not None:
        kw["repetition_penalty"] = repetition_penalty
    if adapter_names is not None:
        kw["adapter_names"] = adapter_names
    with torch.no_grad():
        out = model.generate(input_ids=ids, **kw)
    seqs = out.sequences[:, T:].tolist()
    margin = float("inf")
    for s in out.scores:  # (B, V) processed scores at each step
        top2 = torch.topk(s.double(), 2, dim=-1).values
        margin = min(margin, float((top2[:, 0] - top2[:, 1]).min()))
    return seqs, margin


def pick_stop_ids(rows):
    """Two eos ids under which the rows stop at different steps (>= 2) and one row runs to the end."""
    toks = sorted({t for r in rows for t in r})
    wishes = [lambda st, done: st.count(None) == 1 and min(done) >= 2,   # best: one row runs to the end
              lambda st, done: st.count(None) == 1,
              lambda st, done: st.count(None) <= 1]
    for wish in wishes:
        for a in toks:
            for b in toks:
                if b <= a:
                    continue
                steps = [next((i for i, t in enumerate(r) if t in (a, b)), None) for r in rows]
                done = [s for s in steps if s is not None]
                if done and len(done) == len(set(done)) and wish(steps, done):
                    return [a, b]
    raise SystemExit("no pair of eos ids stops the rows at distinct steps")


# Prompts (token ids) for vocabularies of 97 / 101.
P_SHORT = [5, 17, 42, 8]
P_LONG = [61, 3, 29, 77, 12, 50, 9, 33, 70]
P_MID = [11, 88, 2, 40, 23, 64]


def cases(out):
    res = []

    def add(name, model_name, model, prompts, max_new, eos, pad, **kw):
        meta = kw.pop("meta", {})
        seqs, margin = run_case(model, prompts, max_new, eos, pad, **kw)
        case = dict(name=name, model=f"models/{model_name}", prompts=prompts, max_new_tokens=max_new,
                    eos_token_id=eos, pad_token_id=pad, sequences=seqs, min_margin=round(margin, 6),
                    repetition_penalty=kw.get("repetition_penalty", 1.0),
                    adapter_names=kw.get("adapter_names"), adapters=[], merged=False)
        case.update(meta)
        res.append(case)
        print(f"  {name:34s} margin {margin:.2e}  {seqs}")

    for model_name in ["gpt_neo_tiny", "gpt2_tiny", "gpt_neo_odd", "gpt2_odd", "gpt2_untied"]:
        m = load(out, model_name)
        eos = m.config.eos_token_id
        add(f"{model_name}.single", model_name, m, [P_LONG], 24, eos, eos)
        add(f"{model_name}.batch", model_name, m, [P_SHORT, P_LONG], 20, eos, eos)
        if model_name in ("gpt_neo_tiny", "gpt2_tiny"):
            add(f"{model_name}.rep_penalty", model_name, m, [P_SHORT, P_MID], 16, eos, eos, repetition_penalty=1.5)
            # eos ids picked from the tokens the base model emits, so that rows stop at different steps
            base, _ = run_case(m, [P_SHORT, P_LONG, P_MID], 12, eos, eos)
            stop = pick_stop_ids(base)
            add(f"{model_name}.eos_list", model_name, m, [P_SHORT, P_LONG, P_MID], 12, stop, eos)

    from peft import PeftModel

    base = load(out, "gpt_neo_tiny")
    nb = os.path.join(out, "lora", "neo_notebook")
    pm = PeftModel.from_pretrained(base, nb).eval()
    ad = dict(adapters=[{"dir": "lora/neo_notebook", "name": "default"}])
    add("neo_notebook.single", "gpt_neo_tiny", pm, [P_LONG], 24, 96, 96, meta=dict(ad))
    add("neo_notebook.batch", "gpt_neo_tiny", pm, [P_SHORT, P_LONG], 20, 96, 96, meta=dict(ad))
    merged = pm.merge_and_unload().eval()
    add("neo_notebook_merged.batch", "gpt_neo_tiny", merged, [P_SHORT, P_LONG], 20, 96, 96,
        meta=dict(ad, merged=True))

    base = load(out, "gpt_neo_tiny")
    mdir = os.path.join(out, "lora", "neo_multi", "adapters")
    pm = PeftModel.from_pretrained(base, os.path.join(mdir, "a"), adapter_name="a")
    pm.load_adapter(os.path.join(mdir, "b"), adapter_name="b")
    pm.eval()
    multi = dict(adapters=[{"dir": "lora/neo_multi/adapters/a", "name": "a"},
                           {"dir": "lora/neo_multi/adapters/b", "name": "b"}])
    names = ["a", "__base__", "b", "a"]
    add("neo_multi.mixed", "gpt_neo_tiny", pm, [P_SHORT, P_LONG, P_MID, P_LONG], 20, 96, 96,
        adapter_names=names, meta=dict(multi))
    # each adapter alone, as the mixed rows must equal these
    for name in ["a", "b"]:
        pm.set_adapter(name)
        add(f"neo_multi.only_{name}", "gpt_neo_tiny", pm, [P_SHORT, P_LONG, P_MID], 20, 96, 96,
            meta=dict(multi, active=name))
    return res


def char_tokenizer(d):
    """A character-level tokenizer for the 97-token tiny models: "\n" and the printable ASCII characters are
    ids 0..95, <|endoftext|> (special) is 96, the model's eos. Written as tokenizer.json + tokenizer_config.json."""
    vocab = {"\n": 0}
    for c in range(32, 127):
        vocab[chr(c)] = len(vocab)
    tok = {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 96, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None, "pre_tokenizer": None, "post_processor": None, "decoder": {"type": "Fuse"},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": []},
    }
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w") as f:
        json.dump(tok, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "model_max_length": 64,
                   "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=1, sort_keys=True)
        f.write("\n")


def text_cases(out):
    """Text prompts through the char tokenizer on gpt_neo_tiny (a temporary directory holding the model's files
    and the tokenizer, as the C test assembles it): plain, Alpaca-templated and with a stop string."""
    import shutil
    import tempfile

    from transformers import AutoTokenizer
    tdir = os.path.join(out, "generate", "char_tokenizer")
    char_tokenizer(tdir)
    res = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in ["config.json", "generation_config.json", "model.safetensors"]:
            shutil.copy(os.path.join(out, "models", "gpt_neo_tiny", f), tmp)
        for f in ["tokenizer.json", "tokenizer_config.json"]:
            shutil.copy(os.path.join(tdir, f), tmp)
        tok = AutoTokenizer.from_pretrained(tmp)
        m = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, attn_implementation="eager").eval()
        alpaca = ("Below is an instruction that describes a task. Write a response that appropriately completes the "
                  "request.\n\n### Instruction:\n{}\n\n### Response:\n")
        # The Alpaca prompt (146 characters) does not fit the 64 positions: cpeft keeps its last 63 tokens and
        # stops when the sequence fills the positions, 2 new tokens later; transformers is given the same.
        P = m.config.max_position_embeddings
        prompts = [("plain", "Hello, world", None), ("alpaca", "Say hi", "alpaca")]
        for name, text, template in prompts:
            full = alpaca.format(text) if template else text
            ids = tok(full)["input_ids"]
            kept = ids[-(P - 1):]
            new_max = 24 if len(kept) == len(ids) else P + 1 - len(kept)
            x = torch.tensor([kept])
            with torch.no_grad():
                o = m.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=new_max,
                               do_sample=False, pad_token_id=96)
            new = o[0, len(kept):].tolist()
            res.append(dict(name=name, prompt=text, template=template, prompt_ids=ids, kept=len(kept),
                            tokens=new, text=tok.decode(new, skip_special_tokens=True), max_new_tokens=24))
        # a stop string: two characters from inside the plain continuation
        base = res[0]
        stop = base["text"][2:4]
        enc = tok(base["prompt"], return_tensors="pt")
        with torch.no_grad():
            o = m.generate(**enc, max_new_tokens=24, do_sample=False, pad_token_id=96, stop_strings=[stop],
                           tokenizer=tok)
        new = o[0, enc["input_ids"].shape[1]:].tolist()
        res.append(dict(name="stop", prompt=base["prompt"], template=None, prompt_ids=base["prompt_ids"], stop=stop,
                        tokens=new, text=tok.decode(new, skip_special_tokens=True), max_new_tokens=24))
    for r in res:
        print(f"  text.{r['name']:29s} {r['text']!r}")
    return res


def processors():
    g = torch.Generator().manual_seed(1234)
    V = 40
    scores = (torch.randn(3, V, generator=g) * 2.0).to(torch.float32)
    scores[1, 7] = scores[1, 3]        # a tie at the top-k threshold
    ids = torch.tensor([[1, 2, 3, 3], [7, 7, 7, 0], [39, 5, 0, 0]])
    out = []
    settings = [
        dict(repetition_penalty=1.3, temperature=1.0, top_k=0, top_p=1.0),
        dict(repetition_penalty=1.0, temperature=0.7, top_k=10, top_p=1.0),
        dict(repetition_penalty=1.0, temperature=1.0, top_k=0, top_p=0.9),
        dict(repetition_penalty=1.2, temperature=0.8, top_k=12, top_p=0.8),
        dict(repetition_penalty=1.0, temperature=1.5, top_k=50, top_p=0.5),
        dict(repetition_penalty=0.8, temperature=1.0, top_k=1, top_p=1.0),
        dict(repetition_penalty=1.0, temperature=1.0, top_k=0, top_p=0.01),
    ]
    for s in settings:
        procs = LogitsProcessorList()
        if s["repetition_penalty"] != 1.0:
            procs.append(RepetitionPenaltyLogitsProcessor(s["repetition_penalty"]))
        if s["temperature"] != 1.0:
            procs.append(TemperatureLogitsWarper(s["temperature"]))
        if s["top_k"] != 0:
            procs.append(TopKLogitsWarper(s["top_k"]))
        if s["top_p"] < 1.0:
            procs.append(TopPLogitsWarper(s["top_p"]))
        res = procs(ids, scores.clone())
        probs = torch.softmax(res, dim=-1)
        out.append(dict(settings=s, processed=[[None if v == float("-inf") else float(v) for v in row]
                                               for row in res.tolist()],
                        probs=probs.tolist()))
    return dict(vocab=V, scores=scores.tolist(), input_ids=ids.tolist(), cases=out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    d = os.path.join(args.out, "generate")
    os.makedirs(d, exist_ok=True)
    res = cases(args.out)
    texts = text_cases(args.out)
    with open(os.path.join(d, "generate.json"), "w") as f:
        json.dump(dict(transformers_version=__import__("transformers").__version__, cases=res, text_cases=texts), f,
                  indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(d, "processors.json"), "w") as f:
        json.dump(processors(), f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {d}/generate.json ({len(res)} cases) and processors.json")


if __name__ == "__main__":
    main()
