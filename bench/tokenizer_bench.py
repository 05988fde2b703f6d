#!/usr/bin/env python3
"""Side-by-side tokenizer benchmark: cpeft (build/bench/tokenizer_bench) vs the Rust `tokenizers`
library, one thread each, on the same ~10 MB of text.

    tests/reference/.venv/bin/python bench/tokenizer_bench.py [--mb 10] [--tokenizer DIR_OR_JSON]

The text is the shared data sets concatenated (tinyshakespeare, alpaca, e2e-nlg, wnut17, sst2 and
the notebook, which is half Chinese), repeated up to the size asked for. It is split into documents
at blank lines; both sides encode every document without special tokens (the library through
encode_batch with TOKENIZERS_PARALLELISM=false and RAYON_NUM_THREADS=1, so one thread and no
Python loop), then each encodes the whole text as one string (--whole). Totals must agree.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

from tokenizers import Tokenizer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")


def corpus(mb):
    parts = []
    d = os.path.join(SHARED, "data")
    for rel in ("tinyshakespeare/input.txt", "alpaca-subset/alpaca_en_demo.json", "e2e-nlg/devset.csv",
                "wnut17/wnut17train.conll", "sst2/dev.tsv"):
        with open(os.path.join(d, rel), encoding="utf-8") as f:
            parts.append(f.read())
    with open(os.path.join(SHARED, "spec", "notebook.txt"), encoding="utf-8") as f:
        parts.append(f.read())
    base = "\n\n".join(parts)
    text = ""
    while len(text.encode("utf-8")) < mb * 1_000_000:
        text += base + "\n\n"
    return text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=10)
    ap.add_argument("--tokenizer", default=os.path.join(SHARED, "data", "gpt2-tokenizer"))
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bench", "tokenizer_bench"))
    args = ap.parse_args()
    text = corpus(args.mb)
    data = text.encode("utf-8")
    path = args.tokenizer
    json_path = os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path
    tok = Tokenizer.from_file(json_path)
    docs, i = [], 0
    while i < len(text):
        j = text.find("\n\n", i)
        j = len(text) if j < 0 else j + 2
        docs.append(text[i:j])
        i = j

    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(data)
        tmp = f.name
    try:
        results = []
        for mode in ("docs", "whole"):
            t0 = time.perf_counter()
            if mode == "docs":
                encs = tok.encode_batch(docs, add_special_tokens=False)
                n_tok = sum(len(e.ids) for e in encs)
            else:
                n_tok = len(tok.encode(text, add_special_tokens=False).ids)
            secs = time.perf_counter() - t0
            cmd = [args.bin, path, tmp] + (["--whole"] if mode == "whole" else [])
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
            fields = dict(x.strip().split(" ", 1)[::-1] for x in out.split(":", 1)[1].split(","))
            c_tok, c_secs = int(fields["tokens"]), float(fields["s"])
            results.append((mode, n_tok, secs, c_tok, c_secs))
        mb = len(data) / 1e6
        print(f"text: {mb:.2f} MB, {len(docs)} documents; tokenizer: {json_path}")
        print(f"{'mode':<7} {'library':<22} {'seconds':>8} {'MB/s':>8} {'tokens/s':>12} {'tokens':>10}")
        ok = True
        for mode, n_tok, secs, c_tok, c_secs in results:
            print(f"{mode:<7} {'tokenizers (Rust) ' + __import__('tokenizers').__version__:<22} {secs:8.3f} "
                  f"{mb / secs:8.2f} {n_tok / secs:12.0f} {n_tok:10d}")
            print(f"{mode:<7} {'cpeft':<22} {c_secs:8.3f} {mb / c_secs:8.2f} {c_tok / c_secs:12.0f} {c_tok:10d}"
                  f"   {secs / c_secs:.2f}x")
            if c_tok != n_tok:
                print(f"MISMATCH: {mode}: cpeft {c_tok} tokens, tokenizers {n_tok}")
                ok = False
        print("token counts agree" if ok else "token counts DIFFER")
        sys.exit(0 if ok else 1)
    finally:
        os.unlink(tmp)


if __name__ == "__main__":
    main()
