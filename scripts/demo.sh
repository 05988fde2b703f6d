#!/usr/bin/env bash
# The main job on the built-in default (what `make demo` runs).
#
# Until LoRA training (issue 5) and a real pretrained default model (issue 7) land, this walks the
# part of the user's notebook that cpeft does today: the notebook's model, EleutherAI's
# GPT-Neo-1.3B, from its config.json alone (no weights needed) — its PyTorch module tree, its exact
# parameter count, the notebook's LoraConfig applied with print_trainable_parameters() and the
# wrapped PeftModel — the notebook's GPT-2 tokenizer checks, and then a real forward pass,
# evaluation, LoRA adapter and merged checkpoint on a small bundled GPT-Neo checkpoint (random
# weights made by the reference generator), all checked against transformers and PEFT by `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
CPEFT=build/cpeft
NEO13=tests/fixtures/configs/gpt-neo-1.3B
TINY=tests/fixtures/models/gpt_neo_tiny
GPT2_TOKENIZER=../shared/data/gpt2-tokenizer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { if [[ -t 1 ]]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

step "In [3]: pretrained_model      (cpeft info $NEO13 --tree)"
$CPEFT info "$NEO13" --tree

step "The notebook's LoraConfig(task_type=CAUSAL_LM, r=8, lora_alpha=16, lora_dropout=0.1, target_modules=[q_proj, k_proj, v_proj])"
cat > "$work/notebook_lora.json" <<'JSON'
{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
 "target_modules": ["q_proj", "k_proj", "v_proj"]}
JSON
step "In [6]: model.print_trainable_parameters()      (cpeft info $NEO13 --peft-config notebook_lora.json)"
$CPEFT info "$NEO13" --peft-config "$work/notebook_lora.json"
step "In [9]: model      (first 40 lines of cpeft info ... --peft-config notebook_lora.json --tree)"
$CPEFT info "$NEO13" --peft-config "$work/notebook_lora.json" --tree | head -40

if [[ -f $GPT2_TOKENIZER/tokenizer.json ]]; then
    step "The notebook's GPT-2 tokenizer: bos/eos, id 21106, pad      (cpeft tokenize --special / --id)"
    $CPEFT tokenize --tokenizer "$GPT2_TOKENIZER" --special || true
    $CPEFT tokenize --tokenizer "$GPT2_TOKENIZER" --id 21106
    $CPEFT tokenize --tokenizer "$GPT2_TOKENIZER" --tokens "Below is an instruction that describes a task."
else
    step "(the GPT-2 tokenizer checks need ../shared/data/gpt2-tokenizer beside the repository; skipped)"
fi

step "A real forward pass: cpeft info $TINY   (a bundled 3-layer GPT-Neo, global and local attention)"
$CPEFT info "$TINY"
awk 'BEGIN { srand(7); for (i = 0; i < 2000; i++) printf "%d%s", 1 + int(rand() * 96), (i % 20 == 19 ? "\n" : " ") }' > "$work/ids.txt"
step "cpeft eval --model $TINY --data-ids <2,000 ids> --seq-len 64"
$CPEFT eval --model "$TINY" --data-ids "$work/ids.txt" --seq-len 64

step "A LoRA adapter on it (q/k/v, r=8, init_lora_weights=false so it changes the output), saved as PEFT saves it"
cat > "$work/lora.json" <<'JSON'
{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
 "target_modules": ["q_proj", "k_proj", "v_proj"], "init_lora_weights": false}
JSON
$CPEFT adapter init --model "$TINY" --peft-config "$work/lora.json" --seed 1 --out "$work/adapter"
ls -l "$work/adapter"
step "cpeft eval with the adapter (unmerged side path), then merged into a full checkpoint"
$CPEFT eval --model "$TINY" --data-ids "$work/ids.txt" --seq-len 64 --adapter "$work/adapter"
$CPEFT merge --model "$TINY" --adapter "$work/adapter" --out "$work/merged"
$CPEFT eval --model "$work/merged" --data-ids "$work/ids.txt" --seq-len 64
echo
echo "Random weights know nothing of the data, so the perplexity is of the order of the 97-token vocabulary."
echo "The adapter and the merged checkpoint give the same loss; \`make test\` checks every number above against"
echo "transformers and PEFT."
