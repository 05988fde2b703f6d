#!/usr/bin/env bash
# The main job on the built-in default (what `make demo` runs).
#
# Until LoRA training (issue 5) and a real pretrained default model (issue 7) land, this walks the
# part of the user's notebook that cpeft does today: the notebook's own model, EleutherAI's
# GPT-Neo-1.3B, described from its config.json alone (no weights needed) — its PyTorch module tree
# and exact parameter count — and then a real forward pass and evaluation on a small bundled
# GPT-Neo checkpoint (random weights made by the reference generator), checked against transformers.
set -euo pipefail
cd "$(dirname "$0")/.."
CPEFT=build/cpeft
NEO13=tests/fixtures/configs/gpt-neo-1.3B
TINY=tests/fixtures/models/gpt_neo_tiny

echo "== cpeft info $NEO13 --tree   (the notebook's print(pretrained_model))"
$CPEFT info "$NEO13" --tree
echo
echo "== cpeft info $NEO13"
$CPEFT info "$NEO13"
echo
echo "== cpeft info $TINY   (a bundled 3-layer GPT-Neo with global and local attention)"
$CPEFT info "$TINY"
echo
# 2,000 token ids in the tiny model's vocabulary, drawn deterministically.
ids=$(mktemp)
awk 'BEGIN { srand(7); for (i = 0; i < 2000; i++) printf "%d%s", 1 + int(rand() * 96), (i % 20 == 19 ? "\n" : " ") }' > "$ids"
echo "== cpeft eval --model $TINY --data-ids <2,000 ids> --seq-len 64"
$CPEFT eval --model "$TINY" --data-ids "$ids" --seq-len 64
rm -f "$ids"
echo
echo "Random weights know nothing of the data, so the perplexity is of the order of the 97-token vocabulary"
echo "(higher, since random logits are confidently wrong). \`make test\` checks these logits against"
echo "transformers to 1e-5."
