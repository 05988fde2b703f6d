"""The Llama family's decoder-harness specs (the older llama/mistral/qwen2 fixtures live in oracle_llama.py)."""
from decoder_spec import DecoderSpec

SMALL = dict(hidden_size=16, num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2, intermediate_size=24,
             vocab_size=61, max_position_embeddings=64, rms_norm_eps=1e-5, initializer_range=0.2, bos_token_id=60,
             eos_token_id=60, attention_dropout=0.0)

SPECS = [
    DecoderSpec("qwen3", "qwen3",
                dict(SMALL, head_dim=6, attention_bias=True, use_sliding_window=True, sliding_window=4,
                     max_window_layers=1, tie_word_embeddings=True), seed=1,
                desc="Qwen3 H=16 nH=4 nKV=2 hd=6 L=2: q_norm/k_norm per head before RoPE, attention_bias on "
                     "q/k/v/o_proj, sliding window 4 from layer 1, tied"),
    DecoderSpec("gemma", "gemma",
                dict(SMALL, head_dim=6, hidden_act="gelu_pytorch_tanh", attention_bias=True, pad_token_id=0,
                     tie_word_embeddings=True), seed=2,
                desc="Gemma H=16 nH=4 nKV=2 hd=6 L=2: RMSNorm (1 + weight), embeddings x sqrt(16), GeGLU "
                     "(gelu_pytorch_tanh), attention_bias, tied"),
]
