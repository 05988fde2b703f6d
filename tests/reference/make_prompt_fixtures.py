"""Fixtures for the scaffold's prompt-learning hook points: PEFT's prompt tuning (virtual input
embeddings) and prefix tuning (key/value prefix in every layer) on tiny GPT-2 / GPT-Neo / Llama models
of tests/fixtures, with the table set to seeded random values. For each: the table ((n, C) for prompt
tuning, (n, 2·L·kv_dim) for prefix tuning), a padded batch with labels, PeftModelForCausalLM's logits
((B, n+T, V) / (B, T, V)) and loss, and the gradient of the loss with respect to the table.

    tests/reference/.venv/bin/python tests/reference/make_prompt_fixtures.py
writes tests/fixtures/prompt/<model>.safetensors and <model>_prefix.safetensors.
"""
import os

import torch
from peft import PrefixTuningConfig, PromptTuningConfig, get_peft_model
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "fixtures")
MODELS = {
    "gpt2_tiny": "models/gpt2_tiny",
    "gpt_neo_tiny": "models/gpt_neo_tiny",
    "llama_tiny": "llama/models/llama_tiny",
}
N_VIRTUAL = 3


def case(name: str, rel: str, seed: int, prefix: bool = False) -> None:
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, rel), torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    cfg = (PrefixTuningConfig if prefix else PromptTuningConfig)(task_type="CAUSAL_LM", num_virtual_tokens=N_VIRTUAL)
    pm = get_peft_model(model, cfg)
    table = pm.prompt_encoder["default"].embedding.weight
    with torch.no_grad():
        table.copy_(torch.randn_like(table) * 0.5)
    V = model.config.vocab_size
    B, T = 2, 7
    ids = torch.randint(3, V, (B, T))
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, :2] = 0  # left padding in row 1
    labels = ids.clone()
    labels[1, :2] = -100
    out = pm(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    tensors = {
        "table": table.detach().clone().contiguous(),
        "input_ids": ids.contiguous(),
        "attention_mask": mask.contiguous(),
        "labels": labels.contiguous(),
        "logits": out.logits.detach().contiguous(),
        "loss": out.loss.detach().reshape(1).contiguous(),
        "table_grad": table.grad.detach().clone().contiguous(),
    }
    os.makedirs(os.path.join(ROOT, "prompt"), exist_ok=True)
    out_name = f"{name}_prefix" if prefix else name
    save_file(tensors, os.path.join(ROOT, "prompt", f"{out_name}.safetensors"),
              metadata={"model": rel, "n_virtual": str(N_VIRTUAL), "kind": "prefix" if prefix else "prompt"})
    print(f"{out_name}: logits {tuple(out.logits.shape)}, loss {out.loss.item():.6f}")


if __name__ == "__main__":
    for i, (name, rel) in enumerate(MODELS.items()):
        case(name, rel, 100 + i)
        case(name, rel, 200 + i, prefix=True)
