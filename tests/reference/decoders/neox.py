"""GPT-NeoX (Pythia), GPT-J and Phi: the rotary LayerNorm decoders (src/models/rotary_common.c)."""
from decoder_spec import DecoderSpec

COMMON = dict(vocab_size=61, max_position_embeddings=64, initializer_range=0.2, bos_token_id=60, eos_token_id=60)
MINOR = dict(steps=False, prompt=False, ia3=False, seq_cls=False)

SPECS = [
    DecoderSpec("gpt_neox", "gpt_neox",
                dict(COMMON, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=24,
                     rotary_pct=0.5, rotary_emb_base=500.0, use_parallel_residual=True, hidden_act="gelu",
                     attention_bias=True, tie_word_embeddings=False, layer_norm_eps=1e-5), seed=11,
                desc="GPT-NeoX H=16 nH=2 hd=8 L=2: fused per-head query_key_value, rotary_pct 0.5 (4 of 8 dims), "
                     "rotary_emb_base 500, parallel residual, gelu, attention_bias, untied lm_head"),
    DecoderSpec("gpt_neox_sequential", "gpt_neox",
                dict(COMMON, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=20,
                     rotary_pct=0.25, use_parallel_residual=False, hidden_act="gelu_new", attention_bias=False,
                     tie_word_embeddings=True, rope_scaling=dict(type="linear", factor=2.0), layer_norm_eps=1e-6),
                seed=12, **MINOR,
                desc="GPT-NeoX sequential residual (use_parallel_residual false), rotary_pct 0.25, linear rope "
                     "scaling x2, gelu_new, no attention bias, tied"),
    DecoderSpec("gptj", "gptj",
                dict(COMMON, n_embd=16, n_head=2, n_layer=2, n_inner=24, rotary_dim=4, n_positions=64,
                     tie_word_embeddings=False),
                seed=13,
                desc="GPT-J H=16 nH=2 hd=8 L=2: bias-free q/k/v/out_proj, interleaved RoPE on 4 of 8 dims, "
                     "parallel attention + MLP from ln_1, gelu_new, lm_head with bias"),
    DecoderSpec("phi", "phi",
                dict(COMMON, hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                     intermediate_size=24, partial_rotary_factor=0.5, rope_theta=1000.0, qk_layernorm=False,
                     tie_word_embeddings=False),
                seed=14,
                desc="Phi H=16 nH=4 nKV=2 hd=4 L=2: q/k/v with bias, partial rotary 0.5, rope_theta 1000, "
                     "parallel block from input_layernorm, gelu_new, lm_head with bias"),
    DecoderSpec("phi_qk_layernorm", "phi",
                dict(COMMON, hidden_size=16, num_attention_heads=2, num_hidden_layers=2, intermediate_size=24,
                     qk_layernorm=True, tie_word_embeddings=False, pad_token_id=0),
                seed=15, **MINOR,
                desc="Phi qk_layernorm: LayerNorm over each head of q and k before RoPE; default partial rotary 0.5"),
]
