#!/usr/bin/env python3
"""Rewrites one section of BENCHMARKS.md from a benchmark's JSON lines (written by bench/run.sh).

    python bench/update_benchmarks.py forward bench/work/forward.jsonl      (or train, generate, bf16, classify, prompt, seq2seq, decoders, gguf)
"""
import datetime
import json
import os
import platform
import re
import subprocess
import sys


# The vector extensions worth naming, as /proc/cpuinfo spells them (fallback when a row has no cpu_features).
CPUINFO_FLAGS = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                 "amx_tile", "avx2", "fma", "avx", "sse4_2"]


def machine(rows) -> str:
    """The header's machine: CPU model, cores, memory, OS, then the instruction sets the CPU reports,
    the kernel variant cpeft ran and the sgemm core OpenBLAS chose (from the cpeft JSON rows)."""
    cpu = "unknown CPU"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                cpu = line.split(":", 1)[1].strip()
    except OSError:
        pass
    c = rows[0].get("cpeft", {}) if rows else {}
    features = c.get("cpu_features")
    if not features:
        flags = set()
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
        features = " ".join(f for f in CPUINFO_FLAGS if f in flags) or "no AVX"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    text = (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}; "
            f"instruction sets: {features}")
    if "kernels" in c:
        text += f"; cpeft kernels: {c['kernels']} ({c.get('build', 'portable')} build, chosen at run time)"
    if "blas_core" in c:
        text += f"; OpenBLAS sgemm core: {c['blas_core']}"
    return text


def forward_section(rows) -> str:
    out = ["## Forward pass (inference), batch 4 × 256 tokens, f32", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides in one run of "
           "`bench/run.sh forward`, random weights of the real model sizes, logits for every position "
           "(what `model(input_ids)` returns), median of the timed iterations, all cores.", "",
           "| model | cpeft tokens/s | PyTorch tokens/s | speed-up | cpeft peak RSS | PyTorch peak RSS | RSS ratio |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"gpt_neo": "GPT-Neo-125M shape", "gpt2": "GPT-2-124M shape"}
    for r in rows:
        c, p = r["cpeft"], r["pytorch"]
        out.append(f"| {names.get(r['arch'], r['arch'])} | {c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | "
                   f"{c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['peak_rss_mib']:.0f} MiB | "
                   f"{p['peak_rss_mib']:.0f} MiB | {c['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")
    p = rows[0]["pytorch"]
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, {p.get('threads', '?')} threads "
            "(GPT-2 with its default SDPA attention, GPT-Neo eager, its only CPU attention). cpeft: OpenBLAS sgemm "
            "for every matmul, OpenMP elsewhere; F32 weights memory-mapped from the safetensors file. Peak RSS "
            "includes the interpreter and libraries on the PyTorch side.", ""]
    return "\n".join(out)


FROZEN = ("frozen forward", "frozen input grad")
RUNS = ("cpeft", "cpeft_bf16", "cpeft_q8_0", "cpeft_q4_k", "pytorch", "pytorch_bf16")


def runs(row):
    """A train row's six runs (cpeft f32, bf16, q8_0+bf16, q4_k+bf16, PyTorch f32, bf16), {} where one failed."""
    return [row.get(k) if isinstance(row.get(k), dict) else {} for k in RUNS]


def frozen_gflops(c) -> float:
    """GFLOP/s of the frozen-weight products (forward + input gradient, LM head excluded) from a cpeft row's
    CPEFT_PROFILE object ({phase: [s/step, utilisation, flops/step]}); 0 without one."""
    prof = c.get("profile") or {}
    t = sum(prof.get(k, [0, 0, 0])[0] for k in FROZEN)
    f = sum(prof.get(k, [0, 0, 0])[2] for k in FROZEN)
    return f / t / 1e9 if t > 0 else 0.0


def train_section(rows) -> str:
    """`bench/run.sh train`: a "gemm_peak" row, then one row per model and shape with cpeft f32 / bf16 / q8_0+bf16 /
    q4_k+bf16 and PyTorch + PEFT f32 / bf16 autocast."""
    peak = next((r for r in rows if r.get("bench") == "gemm_peak"), {})
    rows = [r for r in rows if r.get("bench") == "train"]
    names = {"gpt_neo": "GPT-Neo-125M shape", "gpt2": "GPT-2-124M shape", "smollm2": "SmolLM2-135M shape"}
    c0, p0 = rows[0]["cpeft"], rows[0]["pytorch"]
    out = ["## LoRA training step (forward + backward + AdamW): f32, bf16 and a quantized base, r = 8", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; everything in one run of `bench/run.sh train`, "
           "random weights of the real model sizes (GPT-2 made with 2048 positions so that it runs 1 × 2048), LoRA r=8 "
           "alpha=16 on c_attn (GPT-2) or q, k, v (GPT-Neo, SmolLM2), AdamW, median of "
           f"{c0.get('steps', '?')} timed steps, all cores; `--gradient-checkpointing` on both sides where the table "
           "says recompute. cpeft bf16 = `--bf16` (frozen-weight products and the LM head in bf16 with f32 sums); "
           "Q8_0 / Q4_K = `--quantize q8_0|q4_k --bf16` (the base quantized at load, blocks dequantized into the bf16 "
           "kernel's panels: QLoRA with compute dtype bfloat16); PyTorch bf16 = `torch.autocast(\"cpu\", "
           "dtype=torch.bfloat16)` around the forward. Peak RSS includes the interpreter and torch on the PyTorch side.", "",
           "| model | batch × seq | recompute | cpeft f32 | cpeft bf16 | cpeft Q8_0 | cpeft Q4_K | PyTorch f32 | PyTorch bf16 | "
           "f32 ÷ PT f32 | bf16 ÷ PT f32 | bf16 ÷ PT bf16 | Q4_K ÷ cpeft bf16 |",
           "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def tps(x):
        return x.get("tokens_per_s", 0.0) if isinstance(x, dict) else 0.0

    def ratio(a, b):
        return f"{a / b:.2f}×" if a and b else "–"

    for r in rows:
        c, cb, q8, q4, p, pb = runs(r)
        gc = "yes" if c.get("gradient_checkpointing") else "no"
        out.append(f"| {names.get(r['arch'], r['arch'])} | {r['batch']} × {r['seq']} | {gc} | {tps(c):.0f} | {tps(cb):.0f} | "
                   f"{tps(q8):.0f} | {tps(q4):.0f} | {tps(p):.0f} | {tps(pb):.0f} | {ratio(tps(c), tps(p))} | "
                   f"{ratio(tps(cb), tps(p))} | {ratio(tps(cb), tps(pb))} | {ratio(tps(q4), tps(cb))} |")
    out += ["", "Peak RSS (MiB) and its ratio to the PyTorch side (f32 to PyTorch f32, bf16 to PyTorch bf16, Q4_K to PyTorch f32):", "",
            "| model | batch × seq | cpeft f32 | cpeft bf16 | cpeft Q8_0 | cpeft Q4_K | PyTorch f32 | PyTorch bf16 | f32 ratio | "
            "bf16 ratio | Q4_K ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def rss(x):
        return x.get("peak_rss_mib", 0.0) if isinstance(x, dict) else 0.0

    def frac(a, b):
        return f"{a / b:.2f}" if a and b else "–"

    for r in rows:
        c, cb, q8, q4, p, pb = runs(r)
        out.append(f"| {names.get(r['arch'], r['arch'])} | {r['batch']} × {r['seq']} | {rss(c):.0f} | {rss(cb):.0f} | {rss(q8):.0f} | "
                   f"{rss(q4):.0f} | {rss(p):.0f} | {rss(pb):.0f} | {frac(rss(c), rss(p))} | {frac(rss(cb), rss(pb))} | "
                   f"{frac(rss(q4), rss(p))} |")
    pf, pbf = peak.get("gflops_f32", 0.0), peak.get("gflops_bf16", 0.0)
    out += ["", f"Achieved GFLOP/s of the frozen-weight products (forward and input gradient through the base's Linear / "
            f"Conv1D weights, LM head excluded; flops and time from CPEFT_PROFILE=1) against the GEMM peak measured in "
            f"the same run (`gemm_bench --peak`, {peak.get('N', '?')} × {peak.get('C', '?')} × {peak.get('OC', '?')}): "
            f"f32 sgemm {pf:.0f} GFLOP/s, bf16 kernel on packed panels {pbf:.0f} GFLOP/s.", "",
            "| model | batch × seq | f32 GFLOP/s | of f32 peak | bf16 GFLOP/s | of bf16 peak | Q8_0 GFLOP/s | Q4_K GFLOP/s | of bf16 peak |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def pct(a, b):
        return f"{100 * a / b:.0f}%" if a and b else "–"

    for r in rows:
        c, cb, q8, q4 = runs(r)[:4]
        g32, gb, g8, g4 = (frozen_gflops(x) if isinstance(x, dict) else 0.0 for x in (c, cb, q8, q4))
        out.append(f"| {names.get(r['arch'], r['arch'])} | {r['batch']} × {r['seq']} | {g32:.0f} | {pct(g32, pf)} | {gb:.0f} | "
                   f"{pct(gb, pbf)} | {g8:.0f} | {g4:.0f} | {pct(g4, pbf)} |")
    out += ["", f"PyTorch {p0.get('torch', '?')}, transformers {p0.get('transformers', '?')}, PEFT {p0.get('peft', '?')}, "
            f"{p0.get('threads', '?')} threads. The per-phase profile of every cpeft run is in the JSON lines "
            "(bench/work/train.jsonl, `profile`: seconds per step, core utilisation, flops per step).", ""]
    return "\n".join(out)


def generate_section(rows) -> str:
    r0 = rows[0]
    out = [f"## Generation (greedy, KV cache), prompt {r0['cpeft']['prompt']} tokens, {r0['cpeft']['new']} new tokens, f32", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides one after the other in one run of "
           "`bench/run.sh generate`: cpeft's `cp_model_generate` (what `cpeft generate` runs) against transformers' "
           "`generate(do_sample=False)` with its DynamicCache, random weights of the real model size, random prompts "
           "without padding, eos off so every row makes all its tokens; new tokens per second over the whole call "
           "(prefill included), median of the timed runs, all cores.", "",
           "| model | batch | cpeft tokens/s | PyTorch tokens/s | speed-up | cpeft s/run | PyTorch s/run | cpeft peak RSS | PyTorch peak RSS |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    names = {"gpt_neo": "GPT-Neo-125M shape", "gpt2": "GPT-2-124M shape"}
    for r in rows:
        c, p = r["cpeft"], r["pytorch"]
        out.append(f"| {names.get(r['arch'], r['arch'])} | {c['batch']} | {c['tokens_per_s']:.1f} | {p['tokens_per_s']:.1f} | "
                   f"{c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['seconds_per_run']:.2f} | {p['seconds_per_run']:.2f} | "
                   f"{c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB |")
    p = rows[0]["pytorch"]
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, {p.get('threads', '?')} threads, "
            "GPT-Neo with eager attention (its only CPU attention). A decoding step is bound by reading the weights once "
            "(about 0.5 GB for this model): cpeft runs its few-row products with kernels that stream each weight row "
            "once (src/kernels/skinny.c) instead of sgemm, which packs the whole matrix first, and runs the LM head on "
            "the last position only.", ""]
    return "\n".join(out)


def bf16_section(rows) -> str:
    out = ["## A BF16 checkpoint: forward (batch 4 × 256) and generation (prompt 32, 128 new, batch 1)", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; all sides in one run of `bench/run.sh bf16`, "
           "on a GPT-Neo-125M-shaped checkpoint saved in bfloat16 (random weights, `save_pretrained`). cpeft keeps the "
           "BF16 matrices as stored (memory-mapped) and computes in f32, its kernels widening the weights as they read "
           "them; PyTorch is run twice: loaded in bfloat16 (`dtype=torch.bfloat16`, computing in bf16, what the "
           "checkpoint's users do) and in float32 (the precision cpeft computes in). Median of the timed runs, all cores.", "",
           "| run | cpeft tokens/s | PyTorch bf16 tokens/s | PyTorch f32 tokens/s | cpeft peak RSS | PyTorch bf16 peak RSS | PyTorch f32 peak RSS |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c, p, f = r["cpeft"], r["pytorch"], r["pytorch_f32"]
        out.append(f"| {r['run']} | {c['tokens_per_s']:.1f} | {p['tokens_per_s']:.1f} | {f['tokens_per_s']:.1f} | "
                   f"{c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB | {f['peak_rss_mib']:.0f} MiB |")
    p = rows[0]["pytorch"]
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, {p.get('threads', '?')} threads. "
            "The checkpoint is 239 MiB; holding it widened to f32 would take 478 MiB. PyTorch in bfloat16 multiplies "
            "with the CPU's bf16 dot-product instructions (oneDNN), at twice the f32 rate and with bf16 rounding of "
            "every product; cpeft computes in f32 here, and bf16 compute of its own is issue 16.", ""]
    return "\n".join(out)


def classify_section(rows) -> str:
    out = ["## LoRA training of a sequence classifier (SEQ_CLS), batch 32 × 64 tokens, f32, r = 8", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides in one run of `bench/run.sh "
           "classify`, random weights of the real model sizes saved as BertForSequenceClassification (2 labels), LoRA "
           "r=8 alpha=16 on query and value (PEFT's default for BERT) with the classifier in modules_to_save (PEFT's "
           "SEQ_CLS rule), random token ids and labels, AdamW, median of the timed steps, all cores. Peak RSS includes "
           "the interpreter and torch on the PyTorch side.", "",
           "| model | cpeft tokens/s | PyTorch + PEFT tokens/s | speed-up | cpeft peak RSS | PyTorch peak RSS | RSS ratio |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"minilm": "all-MiniLM-L6-v2 shape (22.7M)", "bert": "bert-base shape (109M)"}
    for r in rows:
        c, p = r["cpeft"], r["pytorch"]
        out.append(f"| {names.get(r['arch'], r['arch'])} | {c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | "
                   f"{c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB | "
                   f"{c['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")
    p = rows[0]["pytorch"]
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, PEFT {p.get('peft', '?')}, "
            f"{p.get('threads', '?')} threads.", ""]
    return "\n".join(out)


def prompt_section(rows) -> str:
    c0 = rows[0]["cpeft"]
    out = [f"## Prompt tuning and prefix tuning training step (forward + backward + AdamW), batch {c0['batch']} × "
           f"{c0['seq']} tokens, {c0.get('num_virtual_tokens', '?')} virtual tokens, f32", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides in one run of `bench/run.sh prompt`, "
           "random weights of the real model size, CAUSAL_LM, PEFT's PromptTuningConfig / PrefixTuningConfig (RANDOM init, "
           "no prefix projection) on the PyTorch side and `--peft-type` on cpeft's, random token ids, AdamW, median of the "
           "timed steps, all cores. tokens/s counts the batch's tokens, not the virtual ones. Peak RSS includes the "
           "interpreter and torch on the PyTorch side.", "",
           "| model | method | cpeft tokens/s | PyTorch + PEFT tokens/s | speed-up | cpeft peak RSS | PyTorch peak RSS | RSS ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    names = {"gpt_neo-random": "GPT-Neo-125M shape", "gpt2-random": "GPT-2-124M shape"}
    methods = {"PROMPT_TUNING": "prompt tuning", "PREFIX_TUNING": "prefix tuning", "P_TUNING": "p-tuning"}
    for r in rows:
        c, p = r["cpeft"], r["pytorch"]
        out.append(f"| {names.get(r['arch'], r['arch'])} | {methods.get(r['peft_type'], r['peft_type'])} | {c['tokens_per_s']:.0f} | "
                   f"{p['tokens_per_s']:.0f} | {c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['peak_rss_mib']:.0f} MiB | "
                   f"{p['peak_rss_mib']:.0f} MiB | {c['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")
    p = rows[0]["pytorch"]
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, PEFT {p.get('peft', '?')}, "
            f"{p.get('threads', '?')} threads.", ""]
    return "\n".join(out)


def seq2seq_section(rows) -> str:
    """`bench/run.sh seq2seq`: LoRA training rows ("run": "train") and generation rows ("run": "generate")."""
    tr = [r for r in rows if r.get("run") == "train"]
    gen = [r for r in rows if r.get("run") == "generate"]
    c0 = tr[0]["cpeft"] if tr else {}
    out = [f"## Sequence-to-sequence (SEQ_2_SEQ_LM): LoRA training and generation, t5-small shape, f32", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides in one run of `bench/run.sh seq2seq`, "
           "random weights of t5-small's size (d_model 512, 6 + 6 layers, 8 heads, d_ff 2048, vocab 32128, relu, tied "
           "head) saved as T5ForConditionalGeneration, all cores. Peak RSS includes the interpreter and torch on the "
           "PyTorch side.", "",
           f"Training: LoRA r=8 alpha=16 on q and v (PEFT's default for T5), batch {c0.get('batch', '?')} × (source "
           f"{c0.get('seq', '?')} + target {c0.get('target_seq', '?')}) random tokens, the labels shifted into the decoder "
           "inputs by the model, AdamW, median of the timed steps; tokens/s counts source and target tokens.", "",
           "| run | cpeft tokens/s | PyTorch + PEFT tokens/s | speed-up | cpeft peak RSS | PyTorch peak RSS | RSS ratio |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for r in tr:
        c, p = r["cpeft"], r["pytorch"]
        out.append(f"| LoRA training step | {c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | "
                   f"{c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB | "
                   f"{c['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")
    out += ["", "Generation: random source ids as the encoder input, new tokens from the decoder start token with no eos stop "
            "(every row generates all its tokens), cpeft's cp_model_generate against transformers' generate() (KV cache), "
            "median of the timed runs; tokens/s counts the new tokens of the returned sequences.", "",
            "| decoding | batch | source | new tokens | cpeft tokens/s | transformers tokens/s | speed-up | cpeft peak RSS | "
            "PyTorch peak RSS |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in gen:
        c, p = r["cpeft"], r["pytorch"]
        beams = c.get("num_beams", 1)
        out.append(f"| {'greedy' if beams == 1 else f'beam {beams}'} | {c['batch']} | {c['prompt']} | {c['new']} | "
                   f"{c['tokens_per_s']:.0f} | {p['tokens_per_s']:.0f} | {c['tokens_per_s'] / p['tokens_per_s']:.2f}× | "
                   f"{c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB |")
    p = rows[0]["pytorch"] if rows else {}
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, PEFT {p.get('peft', '?')}, "
            f"{p.get('threads', '?')} threads.", ""]
    return "\n".join(out)


def decoders_section(rows) -> str:
    """`bench/run.sh decoders`: per model, a LoRA training row and a greedy generation row."""
    names = {"pythia": "Pythia-160M shape (GPT-NeoX)", "qwen3": "Qwen3-0.6B shape"}
    out = ["## More decoders: Pythia-160M and Qwen3-0.6B shapes, LoRA training and greedy generation, f32", "",
           f"Measured {datetime.date.today().isoformat()} on {machine(rows)}; both sides in one run of `bench/run.sh decoders`, "
           "random weights of each model's size saved with save_pretrained (pythia: GPT-NeoX hidden 768, 12 layers, 12 "
           "heads, rotary_pct 0.25, parallel residual, vocab 50304, untied; qwen3: hidden 1024, 28 layers, 16 heads, 8 kv "
           "heads, head_dim 128, intermediate 3072, vocab 151936, tied), all cores. Training: LoRA r=8 alpha=16 on PEFT's "
           "default targets, batch 4 × 256 random tokens, AdamW, median of the timed steps. Generation: batch 1, 32-token "
           "random prompt, 128 new tokens, greedy, no eos stop, against transformers' generate() (KV cache). Peak RSS "
           "includes the interpreter and torch on the PyTorch side.", "",
           "| model | run | cpeft tokens/s | PyTorch tokens/s | speed-up | cpeft peak RSS | PyTorch peak RSS | RSS ratio |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        c, p = r["cpeft"], r["pytorch"]
        run = f"LoRA training ({r.get('targets', '')})" if r["run"] == "train" else "greedy generation, batch 1"
        out.append(f"| {names.get(r['arch'], r['arch'])} | {run} | {c['tokens_per_s']:.1f} | {p['tokens_per_s']:.1f} | "
                   f"{c['tokens_per_s'] / p['tokens_per_s']:.2f}× | {c['peak_rss_mib']:.0f} MiB | {p['peak_rss_mib']:.0f} MiB | "
                   f"{c['peak_rss_mib'] / p['peak_rss_mib']:.2f} |")
    p = rows[0]["pytorch"] if rows else {}
    out += ["", f"PyTorch {p.get('torch', '?')}, transformers {p.get('transformers', '?')}, PEFT {p.get('peft', '?')}, "
            f"{p.get('threads', '?')} threads.", ""]
    return "\n".join(out)


def gguf_section(rows) -> str:
    """`bench/run.sh gguf`: batch-1 greedy decoding of SmolLM2-135M-Instruct GGUF files, cpeft vs llama.cpp's
    llama-bench (tg128, same thread count), cpeft f32 vs transformers f32, and greedy agreement with llama.cpp."""
    speed = [r for r in rows if r.get("bench") == "gguf"]
    agreement = [r for r in rows if r.get("bench") == "gguf_agree"]
    n_new = speed[0]["cpeft"].get("new", 128) if speed else 128
    iters = "A smoke run (too few tokens to compare speeds). " if n_new < 128 else ""
    out = [f"## Decoding from compact weights (issue 19): SmolLM2-135M-Instruct, batch 1, {n_new} new tokens, greedy", "",
           f"{iters}"
           f"Measured {datetime.date.today().isoformat()} on {machine(speed)}; one run of `bench/run.sh gguf`. GGUF files "
           "made from the Hugging Face checkpoint by llama.cpp's convert_hf_to_gguf.py (F32) and llama-quantize (Q8_0, "
           "Q4_K_M — for this model mostly Q5_0, as its 576-wide rows are no multiple of 256 —, Q4_1), llama.cpp built "
           "from the source in llama-cpp-python's sdist (bench/build_llama_cpp.sh, not committed). cpeft: "
           "build/bench/generate_bench on the same file (32-token random prompt, prefill included; quantized weights "
           "decode with 8-bit activations, as llama.cpp does; `exact` rows: --exact-quant); llama.cpp: llama-bench "
           "tg128 (decode only), the same thread count. f32: cpeft on the checkpoint directory against transformers' "
           "generate() in f32. Targets (issue 19): ≥ llama.cpp on Q8_0, Q4_K and Q4_1; f32 ≥ 2.5× transformers.", "",
           "| weights | cpeft tokens/s | other | other tokens/s | cpeft / other | cpeft peak RSS |",
           "|---|---:|---|---:|---:|---:|"]
    for r in speed:
        c, o = r["cpeft"], r.get("other") or {}
        ot = o.get("tokens_per_s")
        ratio = f"{c['tokens_per_s'] / ot:.2f}×" if ot else "—"
        out.append(f"| {r['weights']} | {c['tokens_per_s']:.1f} | {o.get('impl', '—')} | "
                   f"{ot if ot is None else f'{ot:.1f}'} | {ratio} | {c['peak_rss_mib']:.0f} MiB |")
    if agreement:
        out += ["", "Greedy agreement with llama.cpp (llama-simple) on the same file: new tokens equal before the first "
                "difference, of " + str(agreement[0]["new"]) + ", per prompt (bench/gguf_compare.py; llama.cpp keeps its "
                "KV cache in f16, so near-tied logits may go either way; with 8-bit activations a last-bit difference "
                "anywhere flips roundings and moves logits by up to about 1, see docs/architecture.md), and the max "
                "|logit difference| of the first new token per prompt (bench/llama_logits.cpp, bench/cpeft_logits.c):", "",
                "| file | 8-bit activations (default) | --exact-quant | step-1 max abs logit diff, default | --exact-quant |",
                "|---|---|---|---|---|"]
        for r in agreement:
            d, de = r.get("logit_diff_step1"), r.get("logit_diff_step1_exact")
            out.append(f"| {r['file']} | {', '.join(map(str, r['agree']))} | {', '.join(map(str, r['agree_exact']))} | "
                       f"{', '.join(map(str, d)) if d else '—'} | {', '.join(map(str, de)) if de else '—'} |")
    out.append("")
    return "\n".join(out)


def main() -> int:
    name, path = sys.argv[1], sys.argv[2]
    rows = [json.loads(l) for l in open(path) if l.strip()]
    section = {"forward": forward_section, "train": train_section, "generate": generate_section,
               "bf16": bf16_section, "classify": classify_section, "prompt": prompt_section,
               "seq2seq": seq2seq_section, "decoders": decoders_section, "gguf": gguf_section}[name](rows)
    doc_path = "BENCHMARKS.md"
    doc = open(doc_path).read() if os.path.exists(doc_path) else "# Benchmarks\n\nEvery table is written by `bench/run.sh`; both sides run on the same machine in the same run.\n"
    begin, end = f"<!-- bench:{name}:begin -->", f"<!-- bench:{name}:end -->"
    block = f"{begin}\n{section}\n{end}"
    if begin in doc:
        doc = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    open(doc_path, "w").write(doc)
    print(f"updated {doc_path} ({name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
