"""Gemma 2 and Phi-3 tiny models (models/llama*.c variants) for make_decoder_fixtures.py."""

from decoder_spec import DecoderSpec, LoraCase

_G2 = dict(vocab_size=71, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=1)

SPECS = [
    DecoderSpec("gemma2_softcap", "gemma2",
                dict(_G2, sliding_window=4, query_pre_attn_scalar=12, attn_logit_softcapping=2.0, final_logit_softcapping=3.0),
                "gemma2: both soft-cappings, query_pre_attn_scalar 12, window 4 on layer 0 (default layer_types), tied",
                # seed 21 drew an ill-conditioned all-linear case: PyTorch's own f32 gradients differed from
                # its f64 ones by 8.3e-5 relative (cpeft's by 8.8e-5); with 26 PyTorch f32 vs f64 is 6.5e-6
                seed=26),
    DecoderSpec("gemma2_nocap", "gemma2",
                dict(_G2, sliding_window=3, attn_logit_softcapping=None, final_logit_softcapping=None, attention_bias=True,
                     layer_types=["full_attention", "sliding_attention"], tie_word_embeddings=False),
                "gemma2: no soft-capping, attention_bias, explicit layer_types, untied",
                seed=22, prompt=False, ia3=False),
    DecoderSpec("gemma2_attncap", "gemma2",
                dict(_G2, sliding_window=4, attn_logit_softcapping=1.5, final_logit_softcapping=None),
                "gemma2: attention soft-capping only",
                seed=23, steps=False, prompt=False, ia3=False, seq_cls=False),
    DecoderSpec("gemma2_finalcap", "gemma2",
                dict(_G2, sliding_window=4, attn_logit_softcapping=None, final_logit_softcapping=2.5),
                "gemma2: final logit soft-capping only",
                seed=24, steps=False, prompt=False, ia3=False, seq_cls=False),
    # PEFT 0.21.2 has no phi3 entry in its default tables: the default LoRA case names the targets
    DecoderSpec("phi3_partial", "phi3",
                dict(vocab_size=71, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, partial_rotary_factor=0.5, sliding_window=5, max_position_embeddings=64,
                     pad_token_id=0, bos_token_id=1, eos_token_id=2),
                "phi3: fused qkv_proj (GQA) and gate_up_proj, partial rotary 0.5, sliding_window 5",
                seed=31, ia3=False,
                lora=[LoraCase("fused", dict(target_modules=["qkv_proj", "gate_up_proj"], r=4, lora_alpha=8),
                               "the fused projections (PEFT has no phi3 default)"),
                      LoraCase("all_linear", dict(target_modules="all-linear", r=2, lora_alpha=4), "all-linear, r=2 alpha=4")]),
]

# GLM (transformers' native GLM-4 port): PEFT 0.21.2 has no glm entry (only chatglm's query_key_value)
_GLM = dict(vocab_size=71, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
_GLM_LORA = [LoraCase("qv_gate_up", dict(target_modules=["q_proj", "v_proj", "gate_up_proj"], r=4, lora_alpha=8),
                      "q/v and the fused gate_up_proj (PEFT has no glm default)"),
             LoraCase("all_linear", dict(target_modules="all-linear", r=2, lora_alpha=4), "all-linear, r=2 alpha=4")]
SPECS += [
    DecoderSpec("glm", "glm", dict(_GLM, rms_norm_eps=1e-6),
                "glm: q/k/v biases (attention_bias default), fused gate_up_proj, partial rotary 0.5 (default) in "
                "interleaved pairs, untied", seed=41, ia3=False, lora=_GLM_LORA),
    DecoderSpec("glm_full_rotary", "glm",
                dict(_GLM, attention_bias=False, partial_rotary_factor=1.0, tie_word_embeddings=True,
                     rope_parameters=dict(rope_type="default", rope_theta=500.0, partial_rotary_factor=1.0)),
                "glm: no attention bias, interleaved RoPE over the whole head (rope_theta 500), tied",
                seed=42, steps=False, prompt=False, ia3=False, seq_cls=False, lora=_GLM_LORA),
]
