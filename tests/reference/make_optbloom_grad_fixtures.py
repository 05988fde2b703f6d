"""Tiny OPT and BLOOM models with LoRA adapters for tests/unit/test_backward.c's finite-difference
gradient cases (the block variants: OPT post-LN, BLOOM residual-from-LayerNorm with 6 heads, whose
ALiBi slopes are not a power of two's). Parity with transformers is the decoder harness's job
(tests/reference/decoders/optbloom.py); these only need to be models cpeft loads.

    tests/reference/.venv/bin/python tests/reference/make_optbloom_grad_fixtures.py
"""
import os

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForCausalLM

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "optbloom")
MODELS = {
    "opt_post": ("opt", dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=4,
                             max_position_embeddings=32, do_layer_norm_before=False,
                             activation_function="gelu")),  # smooth: ReLU kinks spoil finite differences
    "bloom_post": ("bloom", dict(vocab_size=61, hidden_size=24, n_layer=2, n_head=6,
                                 apply_residual_connection_post_layernorm=True)),
}
# LoRA on every Linear and the token embedding, every bias trained (LayerNorms' included)
ADAPTERS = {
    "opt_post": dict(target_modules=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2", "embed_tokens"], bias="all"),
    "bloom_post": dict(target_modules=["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h", "word_embeddings"],
                       bias="all"),
}

for name, (model_type, cfg) in MODELS.items():
    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **cfg)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.3)
    model.save_pretrained(os.path.join(OUT, name))
    peft = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, **ADAPTERS[name]))
    peft.save_pretrained(os.path.join(OUT, name + "_lora"))
