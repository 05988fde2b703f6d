#!/usr/bin/env python3
"""Greedy outputs of cpeft and llama.cpp on the same GGUF files: for each file and prompt, how many of
the first new tokens agree. bench/run.sh gguf runs it (llama.cpp built by bench/build_llama_cpp.sh).

  gguf_compare.py --cpeft build/cpeft --llama-simple BIN --tokenizer DIR --new 32 FILE.gguf...
                  [--llama-logits bench/work/llama_logits --cpeft-logits build/bench/cpeft_logits]

cpeft's tokens come from `cpeft generate --json` (greedy, its default decoding mode: 8-bit activations
for quantized weights; --exact-quant also runs the exact mode); llama-simple prints text, which is
encoded again with the model's tokenizer (tokenizers package) and compared id by id. Prints one JSON
line per file: {"file", "type", "prompts", "agree": [n per prompt], "agree_exact": [...], "new"}; with
--llama-logits (bench/llama_logits.sh builds it) and --cpeft-logits, also "logit_diff_step1" and
"logit_diff_step1_exact": the max |logit difference| of the prefill (the first new token's logits) per
prompt, llama.cpp with its default context (f16 KV cache) against cpeft.
"""
import argparse, json, os, subprocess, sys

PROMPTS = ["The capital of France is", "def fibonacci(n):", "Once upon a time, in a small village,"]


def cpeft_tokens(cpeft, model, prompt, new, exact):
    cmd = [cpeft, "generate", "--model", model, "--prompt", prompt, "--max-new-tokens", str(new), "--json",
           "--repetition-penalty", "1.0"] + (["--exact-quant"] if exact else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.splitlines()[0])["tokens"]


def llama_text(simple, model, prompt, new):
    out = subprocess.run([simple, "-m", model, "-n", str(new), prompt], capture_output=True, check=True).stdout
    text = out.decode("utf-8", "replace")
    return text[len(prompt):] if text.startswith(prompt) else text


def step1_logits(cmd, out):
    subprocess.run(cmd + [out], capture_output=True, check=True)
    import numpy as np
    return np.fromfile(out, dtype=np.float32)


def logit_diff(llama_logits, cpeft_logits, model, ids, exact, tmp):
    ids = ",".join(map(str, ids))
    a = step1_logits([llama_logits, "-m", model, "--tokens", ids, "-n", "1", "--out"], tmp + ".l")
    b = step1_logits([cpeft_logits, "--model", model, "--tokens", ids, "--new", "1", "--exact-quant", str(int(exact)), "--out"], tmp + ".c")
    return round(float(abs(a - b).max()), 4)


def agree(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpeft", required=True)
    ap.add_argument("--llama-simple", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--llama-logits")
    ap.add_argument("--cpeft-logits")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(a.tokenizer, "tokenizer.json"))
    for f in a.files:
        row = {"bench": "gguf_agree", "file": os.path.basename(f), "new": a.new, "prompts": len(PROMPTS), "agree": [], "agree_exact": []}
        for p in PROMPTS:
            ref = tok.encode(llama_text(a.llama_simple, f, p, a.new), add_special_tokens=False).ids[: a.new]
            # the last re-encoded token may be cut in the middle of a word: compare up to new - 1
            n = min(a.new - 1, len(ref))
            row["agree"].append(min(agree(cpeft_tokens(a.cpeft, f, p, a.new, False), ref), n))
            row["agree_exact"].append(min(agree(cpeft_tokens(a.cpeft, f, p, a.new, True), ref), n))
            if a.llama_logits and a.cpeft_logits:
                import tempfile
                ids = tok.encode(p, add_special_tokens=False).ids
                with tempfile.TemporaryDirectory() as d:
                    for key, exact in (("logit_diff_step1", False), ("logit_diff_step1_exact", True)):
                        row.setdefault(key, []).append(logit_diff(a.llama_logits, a.cpeft_logits, f, ids, exact, os.path.join(d, "x")))
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
