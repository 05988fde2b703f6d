#!/usr/bin/env bash
# Makes sure the Debian packages cpeft builds against are present.
# As root it installs what is missing with apt-get; otherwise it names the exact command to run.
# Open MPI (libopenmpi-dev, openmpi-bin: data-parallel training under mpirun / srun, docs/distributed.md)
# is installed too as root; without root and without it, the build goes on single-process with a note.
# MPI=0 in the environment (make MPI=0) leaves it out.
# Usage: scripts/install-deps.sh [--with-fuzz]
set -euo pipefail

packages=(build-essential pkg-config libopenblas-openmp-dev libcjson-dev libpcre2-dev libutf8proc-dev zlib1g-dev libzstd-dev libcairo2-dev)
optional=()
if [[ "${MPI:-auto}" != "0" ]]; then optional+=(libopenmpi-dev openmpi-bin); fi
optional+=(libmicrohttpd-dev)  # `cpeft serve` (without it, the rest builds and serve says how to get it)
if [[ "${1:-}" == "--with-fuzz" ]]; then packages+=(clang libclang-rt-dev libomp-dev); fi  # libomp-dev: omp.h for clang

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=(); missing_optional=()
for p in "${packages[@]}"; do installed "$p" || missing+=("$p"); done
for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done
[[ ${#missing[@]} -eq 0 && ${#missing_optional[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "cpeft: installing missing Debian packages: ${missing[*]} ${missing_optional[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends "${missing[@]}" "${missing_optional[@]}" >&2
elif [[ ${#missing[@]} -gt 0 ]]; then
    echo "cpeft: missing Debian packages: ${missing[*]} ${missing_optional[*]}" >&2
    echo "cpeft: install them with:  sudo apt-get install ${missing[*]} ${missing_optional[*]}" >&2
    exit 1
else
    echo "cpeft: optional packages missing: ${missing_optional[*]} (Open MPI: mpirun / srun training;" >&2
    echo "cpeft: libmicrohttpd-dev: cpeft serve): sudo apt-get install ${missing_optional[*]}; make MPI=0 silences Open MPI" >&2
fi
