#!/usr/bin/env bash
# Builds bench/llama_logits.cpp against the static llama.cpp libraries bench/build_llama_cpp.sh built
# (bench/work/llama.cpp/build) into bench/work/llama_logits; prints its path. Never committed output.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_WORK:-bench/work}
DIR=$WORK/llama.cpp
B=$DIR/build
OUT=$WORK/llama_logits
if [[ ! -x $OUT || bench/llama_logits.cpp -nt $OUT ]]; then
    nice -n 10 c++ -O2 -std=c++17 -I"$DIR/include" -I"$DIR/ggml/include" bench/llama_logits.cpp -o "$OUT" \
        "$B/src/libllama.a" "$B/ggml/src/libggml.a" "$B/ggml/src/libggml-cpu.a" "$B/ggml/src/libggml-base.a" \
        -fopenmp -lpthread -ldl -lm >&2
fi
echo "$OUT"
