#!/usr/bin/env bash
# make demo-classify: LoRA on the built-in default encoder (all-MiniLM-L6-v2, fetched by
# scripts/fetch-encoder-model.sh) for SST-2 sentiment (SEQ_CLS) and WNUT-17 named entities (TOKEN_CLS),
# printing the metrics of the fresh head before training and of the trained adapter after.
#
# The recipes are the ones bench/pytorch_classify.py runs on the PyTorch + PEFT side (README
# "Classification", BENCHMARKS.md): LoRA r 8 / alpha 16 / dropout 0.1 on query, key, value and every
# dense layer (PEFT's all-linear for BERT SEQ_CLS, spelled out because PEFT's all-linear would also
# wrap TOKEN_CLS's classifier) with the classifier in modules_to_save, the model's own dropout on, at
# most 64 tokens, AdamW lr LR, linear schedule with 6% warmup, no gradient clipping, seed 42.
#   SST-2: the first SST2_MAX_TRAIN (16384) records of train.tsv, 1 epoch, batch 32 (512 steps)
#   WNUT-17: all 3394 training sentences, WNUT_EPOCHS (2) epochs, batch 8 (850 steps; with batch 32
#            and as many epochs both sides still predict "O" everywhere)
# Environment: SST2_MAX_TRAIN, WNUT_MAX_TRAIN (0: all), WNUT_EPOCHS, LR (1e-3), TARGETS
# (query,key,value,dense), OUT (default bench/work/demo-classify).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
SST2_MAX_TRAIN=${SST2_MAX_TRAIN:-16384}
WNUT_MAX_TRAIN=${WNUT_MAX_TRAIN:-0}
WNUT_EPOCHS=${WNUT_EPOCHS:-2}
LR=${LR:-1e-3}
TARGETS=${TARGETS:-query,key,value,dense}
OUT=${OUT:-bench/work/demo-classify}
model=models/all-minilm-l6-v2
scripts/fetch-encoder-model.sh
mkdir -p "$OUT"
common=(--model "$model" --max-seq-length 64 --learning-rate "$LR" --target-modules "$TARGETS"
        --warmup-ratio 0.06 --max-grad-norm 0 --lora-r 8 --lora-alpha 16 --lora-dropout 0.1 --seed 42
        --logging-steps 50 --save-steps 0 --overwrite-output-dir --progress lines)

echo "== SST-2 (SEQ_CLS): train.tsv, first $SST2_MAX_TRAIN records; accuracy on test.tsv (GLUE dev, 872) =="
start=$(date +%s)
build/cpeft train "${common[@]}" --task-type SEQ_CLS --per-device-train-batch-size 32 --num-train-epochs 1 --data data/sst2/train.tsv --eval-data data/sst2/test.tsv \
    --max-train-samples "$SST2_MAX_TRAIN" --output-dir "$OUT/sst2"
echo "SST-2: $(( $(date +%s) - start )) s"
build/cpeft predict --model "$model" --adapter "$OUT/sst2" --data data/sst2/test.tsv --max-seq-length 64 \
    --metrics-out "$OUT/sst2/test_metrics.json" > "$OUT/sst2/predictions.jsonl"

echo "== WNUT-17 (TOKEN_CLS): wnut17train.conll; entity F1 on emerging.test.annotated =="
start=$(date +%s)
build/cpeft train "${common[@]}" --task-type TOKEN_CLS --per-device-train-batch-size 8 --num-train-epochs "$WNUT_EPOCHS" --data data/wnut17/wnut17train.conll \
    --eval-data data/wnut17/emerging.test.annotated --max-train-samples "$WNUT_MAX_TRAIN" --output-dir "$OUT/wnut17"
echo "WNUT-17: $(( $(date +%s) - start )) s"
echo "adapters, metrics.jsonl and loss_curve.png under $OUT/"
