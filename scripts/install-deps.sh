#!/usr/bin/env bash
# Makes sure the Debian packages cpeft builds against are present.
# As root it installs what is missing with apt-get; otherwise it names the exact command to run.
# Usage: scripts/install-deps.sh [--with-fuzz]
set -euo pipefail

packages=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libpcre2-dev libutf8proc-dev zlib1g-dev libzstd-dev)
if [[ "${1:-}" == "--with-fuzz" ]]; then packages+=(clang libclang-rt-dev libomp-dev); fi  # libomp-dev: omp.h for clang

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "cpeft: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
    echo "cpeft: missing Debian packages: ${missing[*]}" >&2
    echo "cpeft: install them with:  sudo apt-get install ${missing[*]}" >&2
    exit 1
fi
