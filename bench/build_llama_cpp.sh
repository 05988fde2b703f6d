#!/usr/bin/env bash
# Builds llama.cpp's llama-bench, llama-simple and llama-quantize into bench/work/llama.cpp/ (never committed)
# from the llama.cpp source vendored in PyPI's llama-cpp-python sdist, for bench/run.sh gguf and the greedy
# comparison (bench/gguf_compare.sh). Idempotent: does nothing when the tools are built.
#   LLAMA_CPP_SDIST=path/to/llama_cpp_python-*.tar.gz (default: /tmp/lcpp/*.tar.gz, else `pip download`)
#   LLAMA_CPP_JOBS (1): the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${BENCH_WORK:-bench/work}
DIR=$WORK/llama.cpp
BIN=$DIR/build/bin
if [[ -x $BIN/llama-bench && -x $BIN/llama-simple && -x $BIN/llama-quantize ]]; then echo "$BIN"; exit 0; fi
mkdir -p "$WORK"
sdist=${LLAMA_CPP_SDIST:-$(ls /tmp/lcpp/llama_cpp_python-*.tar.gz 2>/dev/null | tail -1 || true)}
if [[ -z $sdist || ! -f $sdist ]]; then
    PY=tests/reference/.venv/bin/python
    $PY -m pip download --no-deps --no-binary :all: -d "$WORK/sdist" llama-cpp-python >&2
    sdist=$(ls "$WORK"/sdist/llama_cpp_python-*.tar.gz | tail -1)
fi
if [[ ! -f $DIR/CMakeLists.txt ]]; then
    top=$(basename "$sdist" .tar.gz)
    tar xzf "$sdist" -C "$WORK" "$top/vendor/llama.cpp"
    rm -rf "$DIR"
    mv "$WORK/$top/vendor/llama.cpp" "$DIR"
    rm -rf "${WORK:?}/$top"
fi
cmake -S "$DIR" -B "$DIR/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
nice -n 10 cmake --build "$DIR/build" -j"${LLAMA_CPP_JOBS:-1}" --target llama-bench llama-simple llama-quantize >&2
echo "$BIN"
