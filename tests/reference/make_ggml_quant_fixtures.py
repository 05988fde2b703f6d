"""Fixtures for ggml's reference quantizers (io/ggml_quant.c's cp_ggml_quantize_row).

Writes tests/fixtures/ggml_quant/input.f32 (8 rows x 256 float32 values: normal at several
scales, a zero block, a constant block, ties for the largest magnitude, rounding halves) and
q8_0.bin, q4_0.bin, q4_1.bin: the same values quantized by the `gguf` package's
gguf.quants.quantize (bit-exact with ggml-quants.c's quantize_row_*_ref, the package says).
The package has no Q4_K quantizer (only its dequantizer), so Q4_K is checked in C by its error.
"""
import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize

out = os.path.join(os.path.dirname(__file__), "..", "fixtures", "ggml_quant")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(16)
x = np.empty((8, 256), np.float32)
for r, scale in enumerate([1.0, 0.02, 1e-3, 30.0, 0.5, 1.0, 0.1, 4.0]):
    x[r] = rng.standard_normal(256).astype(np.float32) * np.float32(scale)
x[1, 32:64] = 0.0                        # a zero block
x[2, 64:96] = 0.25                       # a constant block
x[3, 0:32] = np.linspace(-8, 8, 32)      # ties: -8 and 8 have the largest magnitude
x[4, 96:128] = np.arange(32) * 0.5 - 8   # halves after scaling
x[5, :] = np.abs(x[5, :])                # all positive (Q4_1's min > 0, Q4_K's min clamped)
x.tofile(os.path.join(out, "input.f32"))
for name, t in [("q8_0", T.Q8_0), ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)]:
    quantize(x, t).tofile(os.path.join(out, name + ".bin"))
print("wrote", out)
