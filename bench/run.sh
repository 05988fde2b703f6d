#!/usr/bin/env bash
# Side-by-side benchmarks of cpeft against PyTorch (transformers / PEFT) on this machine, in one run.
# Results go to BENCHMARKS.md (the section for each benchmark is rewritten) and bench/work/results.jsonl.
#
#   bench/run.sh [forward|train|generate|bf16|classify|prompt|seq2seq|decoders] (needs `make` and `make reference-venv`; models are created
#                                    once in bench/work/ from random weights with save_pretrained)
# ITERS (5) timed steps / iterations; for a smoke run of `prompt` on a small model,
#   ITERS=1 WARMUP=0 PROMPT_MODEL=tests/fixtures/models/gpt_neo_tiny PROMPT_SEQ=16 BENCH_WORK=/tmp/w bench/run.sh prompt
# (BENCH_WORK keeps bench/work/prompt.jsonl; the BENCHMARKS.md table is rewritten all the same).
set -euo pipefail
cd "$(dirname "$0")/.."
# OpenBLAS as a default install runs it: its own choice of kernels for this CPU (cpeft respects a
# user's OPENBLAS_CORETYPE, and some machines' environments pin one, e.g. Haswell on an AVX-512 CPU)
unset OPENBLAS_CORETYPE
PY=tests/reference/.venv/bin/python
WORK=${BENCH_WORK:-bench/work}
ITERS=${ITERS:-5}
WARMUP=${WARMUP:-1}
GEN_ITERS=${GEN_ITERS:-3}
mkdir -p "$WORK"
[[ -x $PY ]] || { echo "bench: run 'make reference-venv' first" >&2; exit 1; }
[[ -x build/bench/forward_bench ]] || make -s all build/bench/forward_bench

model_dir() { # arch [dtype] -> directory (created on first use)
    local dir=$WORK/$1-random${2:+-$2}
    [[ -f $dir/model.safetensors ]] || $PY bench/make_bench_model.py --arch "$1" --out "$dir" ${2:+--dtype $2} >&2
    echo "$dir"
}

run_forward() {
    local out=$WORK/forward.jsonl
    : > "$out"
    for arch in gpt_neo gpt2; do
        local dir; dir=$(model_dir $arch)
        echo "bench forward: $arch (batch 4 x 256 tokens, $ITERS iterations each)" >&2
        local c p
        c=$(build/bench/forward_bench --model "$dir" --batch 4 --seq 256 --warmup 1 --iters "$ITERS")
        p=$($PY bench/pytorch_forward.py --model "$dir" --batch 4 --seq 256 --warmup 1 --iters "$ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"forward\", \"arch\": \"$arch\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    done
    $PY bench/update_benchmarks.py forward "$out"
}

# The training matrix of issue 16 (item 5), in one run: GEMM peak (f32 and bf16), then per model and shape
# cpeft f32, --bf16, --quantize q8_0 --bf16, --quantize q4_k --bf16 (each with CPEFT_PROFILE=1: the
# per-phase profile and the flops of the frozen-weight products) and PyTorch + PEFT f32 and bf16 autocast.
#   TRAIN_MODELS  arch[=dir] ... (gpt2 gpt_neo smollm2; gpt2 is made with 2048 positions: gpt2_2k)
#   TRAIN_SHAPES  BxT ...        (4x256 1x2048)
#   TRAIN_GC_SEQ  recompute (--gradient-checkpointing, both sides) from this T on (2048)
#   TRAIN_ITERS   timed steps per run (3: the whole matrix ~15-20 minutes on the idle 2-core machine)
# Smoke run on the tiny fixtures (seconds; rewrites BENCHMARKS.md's train table, restore it after):
#   TRAIN_MODELS="gpt2=tests/fixtures/models/gpt2_tiny gpt_neo=tests/fixtures/models/gpt_neo_tiny" \
#   TRAIN_SHAPES="2x32 1x64" TRAIN_GC_SEQ=64 TRAIN_ITERS=1 WARMUP=0 PEAK_SECONDS=0.1 BENCH_WORK=/tmp/w bench/run.sh train
run_train() {
    local out=$WORK/train.jsonl iters=${TRAIN_ITERS:-3}
    : > "$out"
    make -s build/bench/train_bench build/bench/gemm_bench
    echo "bench train: GEMM peak (f32 sgemm and the bf16 kernel on packed panels)" >&2
    build/bench/gemm_bench --peak --min-seconds "${PEAK_SECONDS:-3}" | tee -a "$out"
    local spec
    for spec in ${TRAIN_MODELS:-gpt2 gpt_neo smollm2}; do
        local arch=${spec%%=*} dir targets
        if [[ $spec == *=* ]]; then dir=${spec#*=}; elif [[ $arch == gpt2 ]]; then dir=$(model_dir gpt2_2k); else dir=$(model_dir "$arch"); fi
        case $arch in gpt2) targets=c_attn ;; *) targets=q_proj,k_proj,v_proj ;; esac
        local shape
        for shape in ${TRAIN_SHAPES:-4x256 1x2048}; do
            local B=${shape%x*} T=${shape#*x} gc=""
            (( T >= ${TRAIN_GC_SEQ:-2048} )) && gc=--gradient-checkpointing
            local args="--targets $targets --r 8 --alpha 16 --batch $B --seq $T --warmup $WARMUP --steps $iters $gc"
            echo "bench train: $arch LoRA r=8 on $targets, $B x $T ${gc:-(no recompute)}, $iters steps each: cpeft f32, bf16, q8_0+bf16, q4_k+bf16; PyTorch f32, bf16" >&2
            local c32 cb cq8 cq4 p32 pb
            c32=$(CPEFT_PROFILE=1 build/bench/train_bench --model "$dir" $args 2>/dev/null || true)
            cb=$(CPEFT_PROFILE=1 build/bench/train_bench --model "$dir" $args --bf16 2>/dev/null || true)
            cq8=$(CPEFT_PROFILE=1 build/bench/train_bench --model "$dir" $args --quantize q8_0 --bf16 2>/dev/null || true)
            cq4=$(CPEFT_PROFILE=1 build/bench/train_bench --model "$dir" $args --quantize q4_k --bf16 2>/dev/null || true)
            p32=$($PY bench/pytorch_train.py --model "$dir" $args 2>/dev/null | tail -1 || true)
            pb=$($PY bench/pytorch_train.py --model "$dir" $args --bf16 2>/dev/null | tail -1 || true)
            local v; for v in c32 cb cq8 cq4 p32 pb; do [[ -n ${!v} ]] || printf -v "$v" '{}'; done # a failed run: an empty cell
            echo "{\"bench\": \"train\", \"arch\": \"$arch\", \"targets\": \"$targets\", \"batch\": $B, \"seq\": $T, \"cpeft\": $c32, \"cpeft_bf16\": $cb, \"cpeft_q8_0\": $cq8, \"cpeft_q4_k\": $cq4, \"pytorch\": $p32, \"pytorch_bf16\": $pb}" | tee -a "$out"
        done
    done
    $PY bench/update_benchmarks.py train "$out"
}

run_generate() {
    local out=$WORK/generate.jsonl
    : > "$out"
    [[ -x build/bench/generate_bench ]] || make -s build/bench/generate_bench
    local dir; dir=$(model_dir gpt_neo)
    for batch in 1 8; do
        echo "bench generate: gpt_neo batch $batch, prompt 32, 128 new tokens, greedy ($GEN_ITERS runs each)" >&2
        local c p
        c=$(build/bench/generate_bench --model "$dir" --batch $batch --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS")
        p=$($PY bench/pytorch_generate.py --model "$dir" --batch $batch --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"generate\", \"arch\": \"gpt_neo\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    done
    $PY bench/update_benchmarks.py generate "$out"
}

# LoRA training of a sequence classifier (SEQ_CLS; PEFT's default targets query, value and the classifier
# in modules_to_save), batch 32 x 64 tokens, as issue 12 measures it.
run_classify() {
    local out=$WORK/classify.jsonl
    : > "$out"
    [[ -x build/bench/train_bench ]] || make -s build/bench/train_bench
    for arch in minilm bert; do
        local dir; dir=$(model_dir $arch)
        echo "bench classify: $arch SEQ_CLS LoRA r=8 on query,value (batch 32 x 64 tokens, $ITERS steps each)" >&2
        local c p
        c=$(build/bench/train_bench --model "$dir" --task SEQ_CLS --targets query,value --r 8 --alpha 16 --batch 32 --seq 64 --warmup 1 --steps "$ITERS")
        p=$($PY bench/pytorch_train.py --model "$dir" --task SEQ_CLS --targets query,value --r 8 --alpha 16 --batch 32 --seq 64 --warmup 1 --steps "$ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"classify\", \"arch\": \"$arch\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    done
    $PY bench/update_benchmarks.py classify "$out"
}

# Prompt tuning and prefix tuning training (CAUSAL_LM, 20 virtual tokens, RANDOM init, no projection) on the
# model `train` uses, batch 4 x 256 tokens, as issue 13 measures it.
run_prompt() {
    local out=$WORK/prompt.jsonl
    : > "$out"
    [[ -x build/bench/train_bench ]] || make -s build/bench/train_bench
    local dir=${PROMPT_MODEL:-$(model_dir gpt_neo)} seq=${PROMPT_SEQ:-256} nvt=${PROMPT_TOKENS:-20}
    for type in PROMPT_TUNING PREFIX_TUNING; do
        echo "bench prompt: $(basename "$dir") $type, $nvt virtual tokens (batch 4 x $seq tokens, $ITERS steps each)" >&2
        local c p
        c=$(build/bench/train_bench --model "$dir" --peft-type $type --num-virtual-tokens "$nvt" --batch 4 --seq "$seq" --warmup "$WARMUP" --steps "$ITERS")
        p=$($PY bench/pytorch_train.py --model "$dir" --peft-type $type --num-virtual-tokens "$nvt" --batch 4 --seq "$seq" --warmup "$WARMUP" --steps "$ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"prompt\", \"arch\": \"$(basename "$dir")\", \"peft_type\": \"$type\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    done
    $PY bench/update_benchmarks.py prompt "$out"
}

# A BF16 checkpoint: cpeft keeps its matrices BF16 and computes in f32 (kernels widen as they read);
# PyTorch loaded in bfloat16 (what the checkpoint's users do) and in float32 (the precision cpeft computes in).
run_bf16() {
    local out=$WORK/bf16.jsonl
    : > "$out"
    [[ -x build/bench/generate_bench ]] || make -s build/bench/generate_bench
    local dir; dir=$(model_dir gpt_neo bf16)
    local c p pf
    echo "bench bf16: gpt_neo forward (batch 4 x 256 tokens, $ITERS iterations each)" >&2
    c=$(build/bench/forward_bench --model "$dir" --batch 4 --seq 256 --warmup 1 --iters "$ITERS")
    p=$($PY bench/pytorch_forward.py --model "$dir" --batch 4 --seq 256 --warmup 1 --iters "$ITERS" --dtype bfloat16 2>/dev/null | tail -1)
    pf=$($PY bench/pytorch_forward.py --model "$dir" --batch 4 --seq 256 --warmup 1 --iters "$ITERS" 2>/dev/null | tail -1)
    echo "{\"bench\": \"bf16\", \"run\": \"forward\", \"arch\": \"gpt_neo\", \"cpeft\": $c, \"pytorch\": $p, \"pytorch_f32\": $pf}" | tee -a "$out"
    echo "bench bf16: gpt_neo generate batch 1, prompt 32, 128 new tokens ($GEN_ITERS runs each)" >&2
    c=$(build/bench/generate_bench --model "$dir" --batch 1 --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS")
    p=$($PY bench/pytorch_generate.py --model "$dir" --batch 1 --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS" --dtype bfloat16 2>/dev/null | tail -1)
    pf=$($PY bench/pytorch_generate.py --model "$dir" --batch 1 --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS" 2>/dev/null | tail -1)
    echo "{\"bench\": \"bf16\", \"run\": \"generate\", \"arch\": \"gpt_neo\", \"cpeft\": $c, \"pytorch\": $p, \"pytorch_f32\": $pf}" | tee -a "$out"
    $PY bench/update_benchmarks.py bf16 "$out"
}

# Sequence-to-sequence on a t5-small-shaped model (issue 14): LoRA training (r=8 on q, v; batch 8 x (source 128 +
# target 64)), then generation from 128-token sources, 64 new tokens, greedy and beam 4, batch 1 and 8.
# For a smoke run on a small model: S2S_MODEL=DIR S2S_BATCH=2 S2S_SRC=16 S2S_TGT=8 S2S_NEW=8 ITERS=1 GEN_ITERS=1
# WARMUP=0 BENCH_WORK=/tmp/w bench/run.sh seq2seq (S2S_BEAMS="1" skips beam search).
run_seq2seq() {
    local out=$WORK/seq2seq.jsonl
    : > "$out"
    [[ -x build/bench/train_bench && -x build/bench/generate_bench ]] || make -s build/bench/train_bench build/bench/generate_bench
    local dir=${S2S_MODEL:-$(model_dir t5)} B=${S2S_BATCH:-8} src=${S2S_SRC:-128} tgt=${S2S_TGT:-64} new=${S2S_NEW:-64}
    local c p
    echo "bench seq2seq: $(basename "$dir") LoRA r=8 on q,v (batch $B x (source $src + target $tgt), $ITERS steps each)" >&2
    c=$(build/bench/train_bench --model "$dir" --task SEQ_2_SEQ_LM --targets q,v --r 8 --alpha 16 --batch "$B" --seq "$src" --target-seq "$tgt" --warmup "$WARMUP" --steps "$ITERS")
    p=$($PY bench/pytorch_train.py --model "$dir" --task SEQ_2_SEQ_LM --targets q,v --r 8 --alpha 16 --batch "$B" --seq "$src" --target-seq "$tgt" --warmup "$WARMUP" --steps "$ITERS" 2>/dev/null | tail -1)
    echo "{\"bench\": \"seq2seq\", \"run\": \"train\", \"arch\": \"$(basename "$dir")\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    for beams in ${S2S_BEAMS:-1 4}; do
        for batch in 1 $B; do
            echo "bench seq2seq: generate batch $batch, source $src, $new new tokens, num_beams $beams ($GEN_ITERS runs each)" >&2
            c=$(build/bench/generate_bench --model "$dir" --batch "$batch" --prompt "$src" --new "$new" --num-beams "$beams" --warmup "$WARMUP" --iters "$GEN_ITERS")
            p=$($PY bench/pytorch_generate.py --model "$dir" --batch "$batch" --prompt "$src" --new "$new" --num-beams "$beams" --warmup "$WARMUP" --iters "$GEN_ITERS" 2>/dev/null | tail -1)
            echo "{\"bench\": \"seq2seq\", \"run\": \"generate\", \"arch\": \"$(basename "$dir")\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
        done
    done
    $PY bench/update_benchmarks.py seq2seq "$out"
}

# The decoders of issue 15 at real sizes: Pythia-160M (GPT-NeoX) and Qwen3-0.6B shapes, random weights. LoRA training
# with PEFT's default targets (query_key_value; q_proj,v_proj), r=8, batch 4 x 256, and greedy generation at batch 1
# (prompt 32, 128 new tokens) against transformers. DEC_ARCHS picks the models (default "pythia qwen3").
run_decoders() {
    local out=$WORK/decoders.jsonl
    : > "$out"
    [[ -x build/bench/train_bench && -x build/bench/generate_bench ]] || make -s build/bench/train_bench build/bench/generate_bench
    local targets c p
    for arch in ${DEC_ARCHS:-pythia qwen3}; do
        local dir; dir=$(model_dir $arch)
        if [[ $arch == pythia ]]; then targets=query_key_value; else targets=q_proj,v_proj; fi
        echo "bench decoders: $arch LoRA r=8 on $targets (batch 4 x 256 tokens, $ITERS steps each)" >&2
        c=$(build/bench/train_bench --model "$dir" --targets $targets --r 8 --alpha 16 --batch 4 --seq 256 --warmup "$WARMUP" --steps "$ITERS")
        p=$($PY bench/pytorch_train.py --model "$dir" --targets $targets --r 8 --alpha 16 --batch 4 --seq 256 --warmup "$WARMUP" --steps "$ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"decoders\", \"run\": \"train\", \"arch\": \"$arch\", \"targets\": \"$targets\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
        echo "bench decoders: $arch generate batch 1, prompt 32, 128 new tokens, greedy ($GEN_ITERS runs each)" >&2
        c=$(build/bench/generate_bench --model "$dir" --batch 1 --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS")
        p=$($PY bench/pytorch_generate.py --model "$dir" --batch 1 --prompt 32 --new 128 --warmup 1 --iters "$GEN_ITERS" 2>/dev/null | tail -1)
        echo "{\"bench\": \"decoders\", \"run\": \"generate\", \"arch\": \"$arch\", \"cpeft\": $c, \"pytorch\": $p}" | tee -a "$out"
    done
    $PY bench/update_benchmarks.py decoders "$out"
}

case "${1:-forward}" in
    forward) run_forward ;;
    train) run_train ;;
    generate) run_generate ;;
    bf16) run_bf16 ;;
    classify) run_classify ;;
    prompt) run_prompt ;;
    seq2seq) run_seq2seq ;;
    decoders) run_decoders ;;
    *) echo "bench: unknown benchmark $1 (forward, train, generate, bf16, classify, prompt, seq2seq, decoders)" >&2; exit 2 ;;
esac
