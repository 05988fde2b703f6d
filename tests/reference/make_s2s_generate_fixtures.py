#!/usr/bin/env python3
"""Generation fixtures of the encoder-decoders (tests/fixtures/beam/s2s.json, read by tests/parity/test_beam.c), from
transformers 5.23's generate() + PEFT 0.21.2 on the tiny T5 / mT5 / BART models of make_t5_fixtures.py and
make_bart_fixtures.py (run those first):

    beam search   generate(num_beams=N, length_penalty, early_stopping, no_repeat_ngram_size, num_return_sequences,
                  output_scores=True, return_dict_in_generate=True): each returned sequence after the decoder's start
                  token (as many tokens as its beam_indices), and sequences_scores;
    greedy        generate(num_beams=1): the new tokens up to the first eos — BART's with its config's
                  forced_eos_token_id (every tiny BART config sets it: the last new token is eos) and, in one case,
                  forced_bos_token_id given to generate().

    cli           `cpeft generate --num-beams 4 --num-return-sequences 2` on text through t5_v11's tokenizer.

Prompts are the encoder's input, right-padded with the model's pad id (attention_mask 0 there). Each case's eos is a
token a beam of the first prompt emits early (make_beam_fixtures.py's pick_eos), so that sequences end on it.

    tests/reference/.venv/bin/python tests/reference/make_s2s_generate_fixtures.py
"""
import json
import os
import warnings

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "beam")

# model key -> (directory under the repository root, class, pad id, the config's eos id)
MODELS = {
    "t5_v10": ("tests/fixtures/t5/models/t5_v10", "t5", 0, 1),
    "t5_v11": ("tests/fixtures/t5/models/t5_v11", "t5", 0, 1),
    "mt5": ("tests/fixtures/t5/models/mt5", "mt5", 0, 1),
    "bart_default": ("tests/fixtures/bart/models/bart_default", "bart", 1, 2),
    "bart_scaled": ("tests/fixtures/bart/models/bart_scaled", "bart", 1, 2),
    "bart_asym": ("tests/fixtures/bart/models/bart_asym", "bart", 1, 2),
}

P_SHORT = [17, 5, 42, 2]
P_LONG = [61, 8, 33, 90, 14, 27, 3, 55, 70]
P_MID = [9, 44, 12, 80, 6]


def load(key):
    from transformers import BartForConditionalGeneration, MT5ForConditionalGeneration, T5ForConditionalGeneration
    d, kind, _, _ = MODELS[key]
    cls = {"t5": T5ForConditionalGeneration, "mt5": MT5ForConditionalGeneration, "bart": BartForConditionalGeneration}[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(os.path.join(ROOT, d), dtype=torch.float32, attn_implementation="eager").eval()


def right_pad(prompts, pad):
    T = max(len(p) for p in prompts)
    ids = [p + [pad] * (T - len(p)) for p in prompts]
    mask = [[1] * len(p) + [0] * (T - len(p)) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask)


def settings(key, **kw):
    _, _, pad, eos = MODELS[key]
    s = dict(num_beams=2, length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=0, num_return_sequences=1,
             repetition_penalty=1.0, max_new_tokens=10, eos_token_id=eos, pad_token_id=pad)
    s.update(kw)
    return s


def run(model, prompts, s):
    ids, mask = right_pad(prompts, s["pad_token_id"])
    kw = dict(attention_mask=mask, max_new_tokens=s["max_new_tokens"], do_sample=False, num_beams=s["num_beams"],
              length_penalty=s["length_penalty"], early_stopping=s["early_stopping"],
              num_return_sequences=s["num_return_sequences"], eos_token_id=s["eos_token_id"],
              pad_token_id=s["pad_token_id"], output_scores=True, return_dict_in_generate=True,
              use_cache=s.get("use_cache", True))
    if s["no_repeat_ngram_size"]:
        kw["no_repeat_ngram_size"] = s["no_repeat_ngram_size"]
    if s.get("forced_bos_token_id") is not None:
        kw["forced_bos_token_id"] = s["forced_bos_token_id"]
    if s["repetition_penalty"] != 1.0:
        kw["repetition_penalty"] = s["repetition_penalty"]
    if s.get("adapter_names"):
        kw["adapter_names"] = s["adapter_names"]
    if s["num_beams"] == 1:
        for k in ("num_beams", "length_penalty", "early_stopping", "num_return_sequences"):
            kw.pop(k)
    with torch.no_grad():
        out = model.generate(input_ids=ids, **kw)
    if s["num_beams"] == 1:
        eos = s["eos_token_id"] if isinstance(s["eos_token_id"], list) else [s["eos_token_id"]]
        rows = [r[1:] for r in out.sequences.tolist()]
        return [r[:next((i + 1 for i, t in enumerate(r) if t in eos), len(r))] for r in rows], None
    lens = (out.beam_indices >= 0).sum(dim=1).tolist()
    return [row[1:1 + n] for row, n in zip(out.sequences.tolist(), lens)], out.sequences_scores.tolist()


def pick_eos(model, key, prompts):
    """A token a beam of the first prompt emits at its 2nd or 3rd step, in no prompt and not the pad."""
    s = settings(key, num_beams=4, num_return_sequences=4, max_new_tokens=6)
    seqs, _ = run(model, prompts[:1], s)
    used = {t for p in prompts for t in p}
    for pos in (2, 1, 3, 4):
        for q in seqs:
            if len(q) > pos and q[pos] not in used and q[pos] != s["pad_token_id"]:
                return q[pos]
    raise SystemExit("no eos candidate")


def main():
    from peft import PeftModel
    torch.set_num_threads(1)
    res = []

    def add(name, key, model, prompts, s, adapters=()):
        seqs, scores = run(model, prompts, s)
        eos = s["eos_token_id"] if isinstance(s["eos_token_id"], list) else [s["eos_token_id"]]
        n_eos = sum(1 for q in seqs if q and q[-1] in eos)
        res.append(dict(name=name, model=MODELS[key][0], prompts=prompts, settings=s, sequences=seqs, scores=scores,
                        adapters=list(adapters), finished_on_eos=n_eos))
        print(f"  {name:36s} eos-ended {n_eos}/{len(seqs)} scores {scores and [round(x, 4) for x in scores]}")

    batch = [P_SHORT, P_LONG, P_MID]
    for key in MODELS:
        m = load(key)
        s0 = dict(use_cache=False) if key == "bart_asym" else {}  # DynamicCache sized by the encoder's 2 layers
        e = pick_eos(m, key, batch)
        add(f"{key}.nb2_single", key, m, [P_LONG], settings(key, eos_token_id=e, **s0))
        add(f"{key}.nb4_lp0.5_es_true_nrs2", key, m, batch,
            settings(key, num_beams=4, length_penalty=0.5, early_stopping=True, num_return_sequences=2, eos_token_id=e,
                     **s0))
        add(f"{key}.nb4_lp2_es_never_nrs4", key, m, batch,
            settings(key, num_beams=4, length_penalty=2.0, early_stopping="never", num_return_sequences=4,
                     eos_token_id=e, **s0))
        add(f"{key}.nb3_ngram2_rep1.3_nrs3", key, m, batch,
            settings(key, num_beams=3, no_repeat_ngram_size=2, repetition_penalty=1.3, num_return_sequences=3,
                     eos_token_id=e, max_new_tokens=12, **s0))
        add(f"{key}.nb4_lp-0.5_no_eos_reached", key, m, batch,
            settings(key, num_beams=4, eos_token_id=[97], num_return_sequences=2, length_penalty=-0.5,
                     early_stopping="never", max_new_tokens=7, **s0))
        add(f"{key}.greedy_ngram2", key, m, batch,
            settings(key, num_beams=1, no_repeat_ngram_size=2, max_new_tokens=12, eos_token_id=e, **s0))
        if MODELS[key][1] == "bart":  # the config's forced_eos_token_id ends every row that reaches max_new_tokens
            add(f"{key}.greedy_forced_eos", key, m, batch, settings(key, num_beams=1, max_new_tokens=9, **s0))
    m = load("bart_default")
    add("bart_default.greedy_forced_bos", "bart_default", m, batch,
        settings("bart_default", num_beams=1, max_new_tokens=8, forced_bos_token_id=0))
    add("bart_default.nb3_forced_bos_nrs2", "bart_default", m, batch,
        settings("bart_default", num_beams=3, max_new_tokens=8, forced_bos_token_id=0, num_return_sequences=2))

    for key, adir in [("t5_v11", "tests/fixtures/t5/lora/lora_v11_decoder"),
                      ("bart_default", "tests/fixtures/bart/lora/lora_default"),
                      ("bart_scaled", "tests/fixtures/bart/lora/lora_scaled_decoder")]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = PeftModel.from_pretrained(load(key), os.path.join(ROOT, adir)).eval()
        ad = [{"dir": adir, "name": "default"}]
        e = pick_eos(pm, key, batch)
        name = os.path.basename(adir)
        add(f"{name}.nb4_nrs2", key, pm, batch, settings(key, num_beams=4, num_return_sequences=2, eos_token_id=e), ad)
        add(f"{name}.nb2_es_true_lp2", key, pm, batch,
            settings(key, num_beams=2, early_stopping=True, length_penalty=2.0, eos_token_id=e), ad)

    # `cpeft generate --model t5_v11 --prompt TEXT --num-beams 4 --num-return-sequences 2 --json`: the prompt through
    # the model's tokenizer (make_t5_fixtures.py writes it; its </s> kept), transformers' sequences, scores and text
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(ROOT, MODELS["t5_v11"][0], "tokenizer.json"))
    cli = []
    m = load("t5_v11")
    for text in ["summarize: the cat sat on the mat", "a big red dog"]:
        ids = tok.encode(text).ids
        s = settings("t5_v11", num_beams=4, num_return_sequences=2, max_new_tokens=8, length_penalty=0.6)
        seqs, scores = run(m, [ids], s)
        cli.append(dict(prompt=text, input_ids=ids, sequences=seqs, scores=scores,
                        texts=[tok.decode(q, skip_special_tokens=True) for q in seqs]))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "s2s.json"), "w") as f:
        json.dump(dict(transformers_version=__import__("transformers").__version__, cases=res,
                       cli=dict(model=MODELS["t5_v11"][0], settings=s, rows=cli)), f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}/s2s.json ({len(res)} cases)")


if __name__ == "__main__":
    main()
