"""OPT and BLOOM parity fixtures for the shared decoder harness (tests/reference/decoder_spec.py):
one spec per config switch of issue 15. Dropout is not a spec: the harness needs every dropout 0
(OPT and BLOOM draw it functionally, so it is not in the repr either)."""
from decoder_spec import DecoderSpec, LoraCase

# PEFT's default targets, all-linear, and (post-LN / residual-from-LayerNorm specs) LoRA on the Linears + the tied
# token embedding with biases trained: tests/unit/test_backward.c's finite-difference cases use that adapter too
_LORA = [LoraCase("default", dict(target_modules=None, r=4, lora_alpha=8), "PEFT's default targets for the type"),
         LoraCase("all_linear", dict(target_modules="all-linear", r=2, lora_alpha=4), "all-linear, r=2 alpha=4")]
# OPT: not k_proj with a trained bias: k_proj.bias adds q.b_k to every score of a query, which softmax ignores, so
# its exact gradient is 0 and f32 gives noise (~1e-9) that no relative tolerance passes; k_proj is in all_linear
_OPT_EMBED = LoraCase("embed_bias", dict(target_modules=["q_proj", "v_proj", "out_proj", "fc1", "fc2", "embed_tokens"],
                      bias="lora_only", r=2, lora_alpha=4), "every Linear but k_proj + embed_tokens, bias=lora_only")
_BLOOM_EMBED = LoraCase("embed_bias", dict(target_modules=["query_key_value", "dense", "dense_h_to_4h",
                        "dense_4h_to_h", "word_embeddings"], bias="all", r=2, lora_alpha=4),
                        "every Linear + word_embeddings, bias=all")

_OPT = dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=2,
            max_position_embeddings=32, pad_token_id=1, bos_token_id=2, eos_token_id=2,
            dropout=0.0, attention_dropout=0.0,   # the harness wants every dropout 0 (OPT's default dropout is 0.1)
            init_std=0.1)   # at OPT's 0.02 the keys barely differ from their (perturbed) bias: q's gradient is
                            # ~1e-5 of v's, a cancellation f32 cannot resolve to 1e-4 (cpeft and torch then differ)
_BLOOM = dict(vocab_size=61, hidden_size=16, n_layer=2, n_head=4, pad_token_id=3, bos_token_id=1, eos_token_id=2)

SPECS = [
    DecoderSpec("opt_tiny", "opt", dict(_OPT), "OPT pre-LN (do_layer_norm_before), learned positions offset 2, ReLU, "
                "final_layer_norm", seed=101),
    DecoderSpec("opt_post_ln", "opt", dict(_OPT, do_layer_norm_before=False, num_attention_heads=4,
                activation_function="gelu"),   # smooth for test_backward's finite differences (ReLU: opt_tiny)
                "post-LN blocks (do_layer_norm_before false), no final layer norm, gelu", seed=102, prompt=False,
                lora=_LORA + [_OPT_EMBED]),
    DecoderSpec("opt_350m", "opt", dict(_OPT, do_layer_norm_before=False, word_embed_proj_dim=12),
                "OPT-350m's shape: word_embed_proj_dim 12 != hidden_size 16 (project_in after embed_tokens, project_out "
                "after the blocks, lm_head and score of width 12), post-LN, ReLU", seed=104, steps=False,
                prompt=False,
                lora=_LORA + [LoraCase("embed_proj", dict(target_modules=["embed_tokens", "project_in", "project_out", "v_proj"],
                                                          r=2, lora_alpha=4), "the tied embed_tokens (width 12) through project_in")]),   # PEFT's prompt tuning takes token_dim = hidden_size: its concat with the 12-wide inputs fails
    DecoderSpec("opt_no_bias", "opt", dict(_OPT, enable_bias=False, _remove_final_layer_norm=True,
                activation_function="gelu"), "enable_bias false, _remove_final_layer_norm, gelu",
                seed=103, steps=False, prompt=False, seq_cls=False),
    DecoderSpec("opt_no_affine", "opt", dict(_OPT, layer_norm_elementwise_affine=False),
                "layer_norm_elementwise_affine false: LayerNorms without weight and bias", seed=105, steps=False,
                ia3=False, prompt=False, seq_cls=False),
    DecoderSpec("bloom_tiny", "bloom", dict(_BLOOM), "BLOOM ALiBi (4 heads), word_embeddings_layernorm, "
                "per-head fused query_key_value, tied lm_head", seed=201),
    DecoderSpec("bloom_post_residual", "bloom", dict(_BLOOM, hidden_size=24, n_head=6,
                apply_residual_connection_post_layernorm=True),
                "apply_residual_connection_post_layernorm, 6 heads (ALiBi slopes of a non-power of two)",
                seed=202, prompt=False, steps=False, lora=_LORA + [_BLOOM_EMBED]),
]
