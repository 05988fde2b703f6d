#!/usr/bin/env bash
# make demo-classify: LoRA on the built-in default encoder (all-MiniLM-L6-v2, fetched by
# scripts/fetch-encoder-model.sh) for SST-2 sentiment (SEQ_CLS) and WNUT-17 named entities (TOKEN_CLS),
# printing the metrics of the fresh head before training and of the trained adapter after.
#
# The recipe is the one bench/pytorch_classify.py runs on the PyTorch + PEFT side (README
# "Classification"): the first MAX_TRAIN records of the training file, 1 epoch, batch 32, at most 64
# tokens, LoRA r 8 / alpha 16 / dropout 0.1 on PEFT's default targets with the classifier in
# modules_to_save, AdamW lr LR, linear schedule with 6% warmup, no gradient clipping, seed 42.
# Environment: SST2_MAX_TRAIN (default 8192), WNUT_MAX_TRAIN (0: all 3394 sentences), LR (1e-3),
# EPOCHS (1), OUT (default bench/work/demo-classify).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SST2_MAX_TRAIN=${SST2_MAX_TRAIN:-8192}
WNUT_MAX_TRAIN=${WNUT_MAX_TRAIN:-0}
LR=${LR:-1e-3}
EPOCHS=${EPOCHS:-1}
OUT=${OUT:-bench/work/demo-classify}
model=models/all-minilm-l6-v2
scripts/fetch-encoder-model.sh
mkdir -p "$OUT"
common=(--model "$model" --max-seq-length 64 --per-device-train-batch-size 32 --learning-rate "$LR"
        --num-train-epochs "$EPOCHS" --warmup-ratio 0.06 --max-grad-norm 0 --lora-r 8 --lora-alpha 16
        --lora-dropout 0.1 --seed 42 --logging-steps 25 --save-steps 0 --overwrite-output-dir --progress lines)

echo "== SST-2 (SEQ_CLS): train.tsv, first $SST2_MAX_TRAIN records; accuracy on test.tsv (GLUE dev, 872) =="
start=$(date +%s)
build/cpeft train "${common[@]}" --task-type SEQ_CLS --data data/sst2/train.tsv --eval-data data/sst2/test.tsv \
    --max-train-samples "$SST2_MAX_TRAIN" --output-dir "$OUT/sst2"
echo "SST-2: $(( $(date +%s) - start )) s"
build/cpeft predict --model "$model" --adapter "$OUT/sst2" --data data/sst2/test.tsv --max-seq-length 64 \
    --metrics-out "$OUT/sst2/test_metrics.json" > "$OUT/sst2/predictions.jsonl"

echo "== WNUT-17 (TOKEN_CLS): wnut17train.conll; entity F1 on emerging.test.annotated =="
start=$(date +%s)
build/cpeft train "${common[@]}" --task-type TOKEN_CLS --data data/wnut17/wnut17train.conll \
    --eval-data data/wnut17/emerging.test.annotated --max-train-samples "$WNUT_MAX_TRAIN" --output-dir "$OUT/wnut17"
echo "WNUT-17: $(( $(date +%s) - start )) s"
echo "adapters, metrics.jsonl and loss.png under $OUT/"
