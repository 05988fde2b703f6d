"""OPT and BLOOM parity fixtures for the shared decoder harness (tests/reference/decoder_spec.py):
one spec per config switch of issue 15."""
from decoder_spec import DecoderSpec

_OPT = dict(vocab_size=61, hidden_size=16, num_hidden_layers=2, ffn_dim=24, num_attention_heads=2,
            max_position_embeddings=32, pad_token_id=1, bos_token_id=2, eos_token_id=2)
_BLOOM = dict(vocab_size=61, hidden_size=16, n_layer=2, n_head=4, pad_token_id=3, bos_token_id=1, eos_token_id=2)

SPECS = [
    DecoderSpec("opt_tiny", "opt", dict(_OPT), "OPT pre-LN (do_layer_norm_before), learned positions offset 2, ReLU, "
                "final_layer_norm", seed=101),
    DecoderSpec("opt_post_ln", "opt", dict(_OPT, do_layer_norm_before=False, num_attention_heads=4),
                "OPT-350m style post-LN blocks, no final layer norm", seed=102, prompt=False),
    DecoderSpec("opt_no_bias", "opt", dict(_OPT, enable_bias=False, _remove_final_layer_norm=True,
                activation_function="gelu"), "enable_bias false, _remove_final_layer_norm, gelu",
                seed=103, steps=False, prompt=False, seq_cls=False),
    DecoderSpec("opt_dropout", "opt", dict(_OPT, dropout=0.1, attention_dropout=0.1),
                "dropout / attention_dropout (eval parity; training draws cpeft's masks)", seed=104,
                steps=False, generate=False, ia3=False, prompt=False, seq_cls=False),
    DecoderSpec("bloom_tiny", "bloom", dict(_BLOOM), "BLOOM ALiBi (4 heads), word_embeddings_layernorm, "
                "per-head fused query_key_value, tied lm_head", seed=201),
    DecoderSpec("bloom_post_residual", "bloom", dict(_BLOOM, hidden_size=24, n_head=6,
                apply_residual_connection_post_layernorm=True),
                "apply_residual_connection_post_layernorm, 6 heads (ALiBi slopes of a non-power of two)",
                seed=202, prompt=False),
    DecoderSpec("bloom_dropout", "bloom", dict(_BLOOM, hidden_dropout=0.1, attention_dropout=0.1),
                "hidden_dropout / attention_dropout", seed=203, steps=False, generate=False, ia3=False,
                prompt=False, seq_cls=False),
]
