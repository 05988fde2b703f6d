"""Writes the FEATURE_EXTRACTION fixtures (tests/fixtures/embed/<model>.safetensors) that
tests/unit/test_embed.c compares `cpeft embed` against.

For each tiny model: a few token-id sequences of different lengths (the ids file the test writes is
in the metadata "ids", one sequence per line), run as one right-padded batch through the base model
(AutoModel: last_hidden_state), pooled as sentence-transformers' Pooling module does — mean over the
real tokens (sum(h * mask) / clamp(sum(mask), 1e-9)), the first token (cls), the last real token
(lasttoken) — and the mean L2-normalised as its Normalize module does (F.normalize, eps 1e-12).
Stored: embed.mean, embed.cls, embed.last, embed.mean_normalized, each (N, C) float32.

Run from the repository root with the reference venv:
    tests/reference/.venv/bin/python tests/reference/make_embed_fixtures.py
Running it twice gives identical files.
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from oracle_common import save_tensors  # noqa: E402

from transformers import AutoModel  # noqa: E402

MODELS = {
    "gpt2_tiny": "tests/fixtures/models/gpt2_tiny",
    "llama_tiny": "tests/fixtures/llama/models/llama_tiny",
    "bert_base": "tests/fixtures/encoders/models/bert_base",        # a BertModel: sentence-transformers' kind
    "roberta_base": "tests/fixtures/encoders/models/roberta_base",
}
SEQUENCES = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10], [11], [12, 13, 14, 15, 16]]


def main() -> int:
    out_dir = "tests/fixtures/embed"
    os.makedirs(out_dir, exist_ok=True)
    for name, path in MODELS.items():
        model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
        T = max(len(s) for s in SEQUENCES)
        ids = torch.zeros(len(SEQUENCES), T, dtype=torch.long)
        mask = torch.zeros(len(SEQUENCES), T, dtype=torch.long)
        for i, s in enumerate(SEQUENCES):
            ids[i, :len(s)] = torch.tensor(s)
            mask[i, :len(s)] = 1
        with torch.no_grad():
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(h.dtype)
        mean = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        last = torch.stack([h[i, len(s) - 1] for i, s in enumerate(SEQUENCES)])
        tensors = {"embed.mean": mean, "embed.cls": h[:, 0], "embed.last": last,
                   "embed.mean_normalized": F.normalize(mean, p=2, dim=1)}
        meta = {"model": path, "ids": "\n".join(" ".join(str(t) for t in s) for s in SEQUENCES)}
        save_tensors(os.path.join(out_dir, f"{name}.safetensors"), {k: v.contiguous() for k, v in tensors.items()}, meta)
        print(f"{name}: {len(SEQUENCES)} sequences, hidden {h.shape[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
