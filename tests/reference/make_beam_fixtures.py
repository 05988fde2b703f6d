"""Writes the beam-search fixtures (tests/fixtures/beam/beam.json) with transformers' generate(num_beams=N)
and PEFT's PeftModel.generate() on the tiny checkpoints already in tests/fixtures.

    tests/reference/.venv/bin/python tests/reference/make_beam_fixtures.py [--out tests/fixtures]

Each case: a model (gpt2_tiny, gpt_neo_tiny, llama_tiny), optionally LoRA adapters (unmerged; a mixed-adapter
batch with adapter_names), the prompts (token ids, unpadded; several are left-padded into one batch), the
settings (num_beams, length_penalty, early_stopping true / false / "never", no_repeat_ngram_size,
num_return_sequences, repetition_penalty, max_new_tokens, eos and pad ids) and what generate() returned with
output_scores=True, return_dict_in_generate=True:
    sequences   per returned sequence (prompt-major, num_return_sequences per prompt), its new tokens up to
                its own length (the count of beam_indices >= 0: generate() pads shorter ones to the longest)
    scores      sequences_scores (sum of log-probs / generated_length ** length_penalty)
    min_gap     the smallest gap between two neighbouring candidates' accumulated scores around each step's
                cut (how close a different selection was; for information)
The eos ids of most cases are tokens the model's beams produce within the first steps (picked from a run
with the model's own eos), so that beams finish on eos and the finished-beam bookkeeping is exercised.

Deterministic: no random numbers beyond the fixed checkpoints; one torch thread; sorted JSON keys.
"""
import argparse
import json
import os

import torch
from transformers import AutoModelForCausalLM

P_SHORT = [5, 17, 42, 8]
P_LONG = [61, 3, 29, 77, 12, 50, 9, 33, 70]
P_MID = [11, 88, 2, 40, 23, 64]

MODELS = {"gpt2_tiny": "models/gpt2_tiny", "gpt_neo_tiny": "models/gpt_neo_tiny",
          "llama_tiny": "llama/models/llama_tiny"}


def load(out, name):
    m = AutoModelForCausalLM.from_pretrained(os.path.join(out, MODELS[name]), dtype=torch.float32,
                                             attn_implementation="eager")
    return m.eval()


def left_pad(prompts, pad):
    T = max(len(p) for p in prompts)
    ids = [[pad] * (T - len(p)) + p for p in prompts]
    mask = [[0] * (T - len(p)) + [1] * len(p) for p in prompts]
    return torch.tensor(ids), torch.tensor(mask), T


def run(model, prompts, s):
    ids, mask, T = left_pad(prompts, s["pad_token_id"])
    kw = dict(attention_mask=mask, max_new_tokens=s["max_new_tokens"], do_sample=False, num_beams=s["num_beams"],
              length_penalty=s["length_penalty"], early_stopping=s["early_stopping"],
              num_return_sequences=s["num_return_sequences"], eos_token_id=s["eos_token_id"],
              pad_token_id=s["pad_token_id"], output_scores=True, return_dict_in_generate=True)
    if s["no_repeat_ngram_size"]:
        kw["no_repeat_ngram_size"] = s["no_repeat_ngram_size"]
    if s["repetition_penalty"] != 1.0:
        kw["repetition_penalty"] = s["repetition_penalty"]
    if s.get("adapter_names"):
        kw["adapter_names"] = s["adapter_names"]
    if s["num_beams"] == 1:  # greedy: no beam arguments, no beam_indices; a row ends at its first eos
        for k in ("num_beams", "length_penalty", "early_stopping", "num_return_sequences"):
            kw.pop(k)
    with torch.no_grad():
        out = model.generate(input_ids=ids, **kw)
    if s["num_beams"] == 1:
        eos = s["eos_token_id"] if isinstance(s["eos_token_id"], list) else [s["eos_token_id"]]
        rows = [r[T:] for r in out.sequences.tolist()]
        seqs = [r[:next((i + 1 for i, t in enumerate(r) if t in eos), len(r))] for r in rows]
        return seqs, None, None
    lens = (out.beam_indices >= 0).sum(dim=1).tolist()
    seqs = [row[T:T + n] for row, n in zip(out.sequences.tolist(), lens)]
    # how close the per-step candidate selection came to a tie: the processed log-probs (out.scores, (B*nb, V)
    # per step) do not carry the running scores, so the gap is measured on each row's own top scores
    gap = float("inf")
    for sc in out.scores:
        top = torch.topk(sc.double(), 3, dim=-1).values
        fin = torch.isfinite(top[:, 1]) & torch.isfinite(top[:, 2])
        if fin.any():
            gap = min(gap, float((top[:, 1] - top[:, 2])[fin].min()), float((top[:, 0] - top[:, 1])[fin].min()))
    return seqs, out.sequences_scores.tolist(), gap


def pick_eos(model, prompts, pad, base_eos):
    """A token that a beam of the first prompt emits at its 2nd or 3rd step (and that is not in any prompt)."""
    s = settings(num_beams=4, num_return_sequences=4, max_new_tokens=6, eos_token_id=base_eos, pad_token_id=pad)
    seqs, _, _ = run(model, prompts, s)
    used = {t for p in prompts for t in p}
    for pos in (2, 1, 3, 4):
        for q in seqs:
            if len(q) > pos and q[pos] not in used and q[pos] != pad:
                return q[pos]
    raise SystemExit("no eos candidate")


def settings(**kw):
    s = dict(num_beams=2, length_penalty=1.0, early_stopping=False, no_repeat_ngram_size=0, num_return_sequences=1,
             repetition_penalty=1.0, max_new_tokens=12, eos_token_id=96, pad_token_id=96)
    s.update(kw)
    return s


def cases(out):
    res = []

    def add(name, model_name, model, prompts, s, adapters=()):
        seqs, scores, gap = run(model, prompts, s)
        eos = s["eos_token_id"] if isinstance(s["eos_token_id"], list) else [s["eos_token_id"]]
        n_eos = sum(1 for q in seqs if q and q[-1] in eos)
        case = dict(name=name, model=MODELS[model_name], prompts=prompts, settings=s, sequences=seqs, scores=scores,
                    min_gap=gap, adapters=list(adapters), finished_on_eos=n_eos)
        res.append(case)
        print(f"  {name:34s} gap {gap if gap is None else f'{gap:.1e}'} eos-ended {n_eos}/{len(seqs)} scores {scores and [round(x, 4) for x in scores]}")
        return case

    batch = [P_SHORT, P_LONG, P_MID]
    for mn in ["gpt2_tiny", "gpt_neo_tiny", "llama_tiny"]:
        m = load(out, mn)
        e = pick_eos(m, batch, 96, 96)
        e2 = pick_eos(m, [P_MID, P_SHORT], 96, [96, e])
        add(f"{mn}.nb2_single", mn, m, [P_LONG], settings(eos_token_id=e, max_new_tokens=10))
        add(f"{mn}.nb2_batch", mn, m, batch, settings(eos_token_id=e))
        add(f"{mn}.nb4_lp0.5_es_true_nrs2", mn, m, batch,
            settings(num_beams=4, length_penalty=0.5, early_stopping=True, num_return_sequences=2, eos_token_id=e))
        add(f"{mn}.nb4_lp2_es_never_nrs4", mn, m, batch,
            settings(num_beams=4, length_penalty=2.0, early_stopping="never", num_return_sequences=4,
                     eos_token_id=e))
        add(f"{mn}.nb4_lp1_es_false_ngram2_nrs3", mn, m, batch,
            settings(num_beams=4, no_repeat_ngram_size=2, num_return_sequences=3, eos_token_id=e,
                     max_new_tokens=16))
        add(f"{mn}.nb3_es_true_ngram3_rep1.3", mn, m, batch,
            settings(num_beams=3, early_stopping=True, no_repeat_ngram_size=3, repetition_penalty=1.3,
                     num_return_sequences=2, eos_token_id=e, max_new_tokens=14))
        add(f"{mn}.nb4_two_eos", mn, m, [P_MID, P_SHORT],
            settings(num_beams=4, eos_token_id=[e, e2], num_return_sequences=2, length_penalty=0.5))
        # no_repeat_ngram_size applies to greedy decoding too
        add(f"{mn}.greedy_ngram2", mn, m, batch, settings(num_beams=1, no_repeat_ngram_size=2, max_new_tokens=16))
        add(f"{mn}.greedy_ngram3_rep1.2", mn, m, batch,
            settings(num_beams=1, no_repeat_ngram_size=3, repetition_penalty=1.2, max_new_tokens=16, eos_token_id=e))
        add(f"{mn}.nb4_no_eos_reached", mn, m, batch,
            settings(num_beams=4, eos_token_id=95, num_return_sequences=2, early_stopping="never",
                     length_penalty=-0.5, max_new_tokens=8))

    from peft import PeftModel
    base = load(out, "gpt_neo_tiny")
    pm = PeftModel.from_pretrained(base, os.path.join(out, "lora", "neo_notebook")).eval()
    ad = [{"dir": "lora/neo_notebook", "name": "default"}]
    e = pick_eos(pm, batch, 96, 96)
    add("neo_notebook.nb4_lp1", "gpt_neo_tiny", pm, batch,
        settings(num_beams=4, num_return_sequences=2, eos_token_id=e, no_repeat_ngram_size=2), ad)
    add("neo_notebook.nb2_es_true", "gpt_neo_tiny", pm, batch,
        settings(num_beams=2, early_stopping=True, eos_token_id=e, length_penalty=2.0), ad)

    base = load(out, "llama_tiny")
    pm = PeftModel.from_pretrained(base, os.path.join(out, "llama", "grads", "llama_qv")).eval()
    ad = [{"dir": "llama/grads/llama_qv", "name": "default"}]
    e = pick_eos(pm, batch, 96, 96)
    add("llama_qv.nb4_nrs2", "llama_tiny", pm, batch,
        settings(num_beams=4, num_return_sequences=2, eos_token_id=e, early_stopping="never"), ad)

    base = load(out, "gpt_neo_tiny")
    mdir = os.path.join(out, "lora", "neo_multi", "adapters")
    pm = PeftModel.from_pretrained(base, os.path.join(mdir, "a"), adapter_name="a")
    pm.load_adapter(os.path.join(mdir, "b"), adapter_name="b")
    pm.eval()
    multi = [{"dir": "lora/neo_multi/adapters/a", "name": "a"}, {"dir": "lora/neo_multi/adapters/b", "name": "b"}]
    names = ["a", "__base__", "b"]
    e = pick_eos(pm, batch, 96, 96)
    add("neo_multi.mixed_nb3", "gpt_neo_tiny", pm, batch,
        settings(num_beams=3, num_return_sequences=2, eos_token_id=e, adapter_names=names), multi)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    d = os.path.join(args.out, "beam")
    os.makedirs(d, exist_ok=True)
    res = cases(args.out)
    assert sum(c["finished_on_eos"] for c in res) >= len(res) // 2, "too few beams end on eos"
    with open(os.path.join(d, "beam.json"), "w") as f:
        json.dump(dict(transformers_version=__import__("transformers").__version__, cases=res), f, indent=1,
                  sort_keys=True)
        f.write("\n")
    print(f"wrote {d}/beam.json ({len(res)} cases)")


if __name__ == "__main__":
    main()
