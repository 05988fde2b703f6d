#!/usr/bin/env bash
# Side-by-side benchmarks of cpeft against PyTorch (transformers / PEFT) on this machine, in one run.
# Results go to BENCHMARKS.md (the section for each benchmark is rewritten) and bench/work/results.jsonl.
#
#   bench/run.sh [forward|train|generate|bf16|classify|prompt|seq2seq|decoders|gguf|serve|serve-soak] (needs `make` and `make reference-venv`
#                                    (serve and serve-soak do not); models are created
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
[[ -x $PY || ${1:-} == serve* ]] || { echo "bench: run 'make reference-venv' first" >&2; exit 1; }
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

# `cpeft serve` under load (bench/serve_load.c, C clients over loopback): throughput and p50 / p99 latency
# for SERVE_CLIENTS ("1 4 16") concurrent clients with SERVE_ADAPTERS ("1 8") adapters (random LoRA r=8 on
# q_proj,v_proj from `cpeft adapter init`, requests round robin over them), on the default model
# (SERVE_MODEL, default models/smollm2-135m-instruct: scripts/fetch-default-model.sh), SERVE_TOKENS (64)
# new tokens per request, SERVE_REQUESTS (4) requests per client. The target: 16 clients over 8 adapters
# at >= 80% of the throughput of 16 clients on one adapter. A smoke run on the tiny test model:
#   SERVE_MODEL=tests/fixtures/sft/tiny_chat_model SERVE_CLIENTS="1 4" SERVE_TOKENS=8 BENCH_WORK=/tmp/w bench/run.sh serve
# serve-soak: SOAK_SECONDS (3600) of mixed requests (8 adapters and the base, 8 clients) with the server's
# RSS sampled every SOAK_SAMPLE (60) seconds; fails on a failed request or RSS growing by more than 10%
# over the sample taken after the first interval.
serve_start() { # model flags... -> SERVE_PID, SERVE_PORT
    local model=$1; shift
    build/cpeft serve --model "$model" --port 0 "$@" 2>"$WORK/serve.log" >/dev/null &
    SERVE_PID=$!
    SERVE_PORT=
    for _ in $(seq 600); do
        SERVE_PORT=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$WORK/serve.log")
        [[ -n $SERVE_PORT ]] && return 0
        kill -0 $SERVE_PID 2>/dev/null || break
        sleep 0.2
    done
    echo "bench serve: the server did not start:" >&2; cat "$WORK/serve.log" >&2; exit 1
}
serve_adapters() { # model n -> "--adapter DIR:aI ..." (made once in $WORK/serve_adapters)
    local model=$1 n=$2 flags=
    mkdir -p "$WORK/serve_adapters"
    echo '{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "init_lora_weights": false}' \
        > "$WORK/serve_adapters/lora.json"
    for i in $(seq "$n"); do
        local d="$WORK/serve_adapters/$(basename "$model")-a$i"
        [[ -f $d/adapter_config.json ]] || build/cpeft adapter init --model "$model" --peft-config "$WORK/serve_adapters/lora.json" \
            --out "$d" --seed "$i" >/dev/null
        flags+=" --adapter $d:a$i"
    done
    echo "$flags"
}
run_serve() {
    local model=${SERVE_MODEL:-models/smollm2-135m-instruct} out="$WORK/serve.jsonl"
    [[ -e $model ]] || { echo "bench serve: $model is missing (scripts/fetch-default-model.sh)" >&2; exit 1; }
    [[ -x build/bench/serve_load ]] || make -s all build/bench/serve_load
    : > "$out"
    # shellcheck disable=SC2046
    serve_start "$model" $(serve_adapters "$model" 8) --max-batch 16 --max-queue 256
    for na in ${SERVE_ADAPTERS:-1 8}; do
        local models; models=$(seq -s, -f 'a%g' 1 "$na")
        for c in ${SERVE_CLIENTS:-1 4 16}; do
            build/bench/serve_load --port "$SERVE_PORT" --clients "$c" --requests $((c * ${SERVE_REQUESTS:-4})) \
                --max-tokens "${SERVE_TOKENS:-64}" --models "$models" --prompt "Once upon a time, in a small village" | tee -a "$out"
        done
    done
    kill -TERM $SERVE_PID; wait $SERVE_PID
    echo "bench serve: exit $? after SIGTERM; results in $out"
    awk -F'[:,]' '/"clients"/ { c = $0; sub(/.*"clients": /, "", c); sub(/,.*/, "", c); m = $0; sub(/.*"models": /, "", m); sub(/,.*/, "", m);
                   t = $0; sub(/.*"tokens_per_s": /, "", t); sub(/,.*/, "", t); tps[c "x" m] = t }
         END { for (k in tps) printf "  %s (clients x adapters): %s tok/s\n", k, tps[k];
               if (tps["16x1"] > 0) printf "  16 clients, 8 adapters / 1 adapter: %.2f (target >= 0.80)\n", tps["16x8"] / tps["16x1"] }' "$out"
}
run_serve_soak() {
    local model=${SERVE_MODEL:-models/smollm2-135m-instruct} secs=${SOAK_SECONDS:-3600} every=${SOAK_SAMPLE:-60}
    [[ -e $model ]] || { echo "bench serve-soak: $model is missing (scripts/fetch-default-model.sh)" >&2; exit 1; }
    [[ -x build/bench/serve_load ]] || make -s all build/bench/serve_load
    # shellcheck disable=SC2046
    serve_start "$model" $(serve_adapters "$model" 8) --max-batch 16 --max-queue 256
    local base; base=$(basename "$model" .gguf)
    build/bench/serve_load --port "$SERVE_PORT" --clients 8 --seconds "$secs" --max-tokens "${SERVE_TOKENS:-32}" \
        --models "a1,a2,a3,a4,a5,a6,a7,a8,$base" > "$WORK/soak.json" &
    local load=$! first= last= t=0
    while kill -0 $load 2>/dev/null; do
        last=$(awk '/VmRSS/ {print $2}' /proc/$SERVE_PID/status)
        [[ $t -gt 0 ]] && first=${first:-$last} # the baseline after the first interval: arenas and caches at size
        echo "  soak t=${t}s RSS ${last} kB"
        sleep "$every"; t=$((t + every))
    done
    wait $load; local rc=$?
    kill -TERM $SERVE_PID; wait $SERVE_PID; local src=$?
    cat "$WORK/soak.json"
    echo "bench serve-soak: load generator exit $rc, server exit $src, RSS first sample $first kB, last $last kB"
    [[ $rc -eq 0 && $src -eq 0 && $last -le $((first + first / 10)) ]]
}

# Decoding from compact weights (issue 19): SmolLM2-135M-Instruct as GGUF F32 / Q8_0 / Q4_K_M / Q4_1, batch 1, greedy,
# 128 new tokens: cpeft (generate_bench on the file) against llama.cpp's llama-bench tg128 with the same thread count, both
# cpeft modes (8-bit activations, --exact-quant), cpeft f32 against transformers f32 on the checkpoint directory, and the
# greedy agreement with llama.cpp (bench/gguf_compare.py; GGUF_AGREE=0 skips it). llama.cpp is built once from llama-cpp-python's
# sdist into $WORK/llama.cpp (bench/build_llama_cpp.sh). GGUF_MODEL (the HF checkpoint), GGUF_NEW (128), GGUF_TYPES.
# Smoke run: GGUF_NEW=8 GEN_ITERS=1 GGUF_TYPES=Q4_1 GGUF_AGREE=0 bench/run.sh gguf
run_gguf() {
    local out=$WORK/gguf.jsonl
    : > "$out"
    [[ -x build/bench/generate_bench ]] || make -s build/bench/generate_bench
    local bin; bin=$(bench/build_llama_cpp.sh)
    local hf=${GGUF_MODEL:-/work/main/models/smollm2-135m-instruct} new=${GGUF_NEW:-128} dir=$WORK/gguf
    local threads; threads=$(nproc)
    local base=$dir/$(basename "$hf").F32.gguf
    mkdir -p "$dir"
    mkdir -p "$WORK/pystub" # the converter imports sentencepiece, which BPE models never use
    [[ -f $WORK/pystub/sentencepiece.py ]] || printf 'class SentencePieceProcessor:\n    pass\n' > "$WORK/pystub/sentencepiece.py"
    [[ -f $base ]] || PYTHONPATH=$WORK/pystub $PY "$WORK/llama.cpp/convert_hf_to_gguf.py" "$hf" --outtype f32 --outfile "$base" >&2
    local files=() t c o f
    for t in ${GGUF_TYPES:-Q8_0 Q4_K_M Q4_1}; do
        f=$dir/$(basename "$hf").$t.gguf
        [[ -f $f ]] || "$bin/llama-quantize" "$base" "$f" "$t" >&2
        files+=("$f")
        echo "bench gguf: $t batch 1, prompt 32, $new new tokens, greedy ($GEN_ITERS runs each), llama-bench tg$new -t $threads" >&2
        o=$("$bin/llama-bench" -m "$f" -p 0 -n "$new" -t "$threads" -r "$GEN_ITERS" -o json 2>/dev/null |
            $PY -c 'import json,sys; r=json.load(sys.stdin)[0]; print(json.dumps({"impl": "llama.cpp", "tokens_per_s": r["avg_ts"], "threads": r["n_threads"]}))')
        for mode in 0 1; do
            c=$(build/bench/generate_bench --model "$f" --batch 1 --prompt 32 --new "$new" --warmup 1 --iters "$GEN_ITERS" --exact-quant $mode)
            echo "{\"bench\": \"gguf\", \"weights\": \"$t$([[ $mode == 1 ]] && echo ' exact')\", \"cpeft\": $c, \"other\": $o}" | tee -a "$out"
        done
    done
    echo "bench gguf: f32 checkpoint, cpeft vs transformers" >&2
    c=$(build/bench/generate_bench --model "$hf" --batch 1 --prompt 32 --new "$new" --warmup 1 --iters "$GEN_ITERS")
    o=$($PY bench/pytorch_generate.py --model "$hf" --batch 1 --prompt 32 --new "$new" --warmup 1 --iters "$GEN_ITERS" 2>/dev/null | tail -1 |
        $PY -c 'import json,sys; r=json.loads(sys.stdin.read()); r["impl"]="transformers"; print(json.dumps(r))')
    echo "{\"bench\": \"gguf\", \"weights\": \"f32 (directory)\", \"cpeft\": $c, \"other\": $o}" | tee -a "$out"
    if [[ ${GGUF_AGREE:-1} != 0 ]]; then
        local ll; ll=$(bench/llama_logits.sh)
        $PY bench/gguf_compare.py --cpeft build/cpeft --llama-simple "$bin/llama-simple" --tokenizer "$hf" --new 32 \
            --llama-logits "$ll" --cpeft-logits build/bench/cpeft_logits "$base" "${files[@]}" | tee -a "$out"
    fi
    $PY bench/update_benchmarks.py gguf "$out"
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
    gguf) run_gguf ;;
    serve) run_serve ;;
    serve-soak) run_serve_soak ;;
    *) echo "bench: unknown benchmark $1 (forward, train, generate, bf16, classify, prompt, seq2seq, decoders, gguf, serve, serve-soak)" >&2; exit 2 ;;
esac
