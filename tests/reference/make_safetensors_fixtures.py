"""Writes the safetensors interop fixtures (tests/fixtures/safetensors/) with Python safetensors,
and the fuzzing seeds (tests/fuzz/seeds/fuzz_safetensors/): the fixtures plus malformed images.

The fixtures are what tests/unit/test_safetensors.c compares cp_st_write's bytes against, so
every value here is fixed (no random numbers) and each file has at most one metadata key: Python
keeps metadata in a Rust HashMap whose order is random per process.

Run from the repository root with the reference venv:
    tests/reference/.venv/bin/python tests/reference/make_safetensors_fixtures.py
Running it twice gives identical files.
"""
import argparse
import os
import struct

import torch
from safetensors.torch import save_file


def arange(n, dtype, scale=1.0, shift=0.0):
    return (torch.arange(n, dtype=torch.float64) * scale + shift).to(dtype)


def mixed():
    # Names chosen so that dtype order and name order disagree; values mirrored in the C test.
    return {
        "a.bias": torch.tensor([0.5, -1.25, 3.0], dtype=torch.float32),
        "a.b": torch.tensor([7.0], dtype=torch.float32),
        "Z.upper": torch.tensor([-2.0], dtype=torch.float32),
        "b.weight": arange(6, torch.bfloat16, 0.5, -1.0).reshape(2, 3),
        "c.weight": arange(6, torch.float16, 0.25, -0.5).reshape(3, 2),
        "d.index": torch.tensor([0, -1, 1 << 40, (1 << 63) - 1], dtype=torch.int64),
        "e.scalar": torch.tensor(3.5, dtype=torch.float32),
        "f.empty": torch.zeros((0, 3), dtype=torch.float32),
        "f.empty_bf16": torch.zeros((2, 0), dtype=torch.bfloat16),
        "g.mask": torch.tensor([True, False, True, True, False]),
        "h.bytes": torch.tensor([0, 127, 255], dtype=torch.uint8),
        "i.i8": torch.tensor([-128, 127], dtype=torch.int8),
        "j.i16": torch.tensor([-300, 300], dtype=torch.int16),
        "k.i32": torch.tensor([-70000, 0, 70000], dtype=torch.int32),
        "l.f64": torch.tensor([1.0 / 3.0, -2.5], dtype=torch.float64),
        "m.f8": arange(4, torch.float8_e4m3fn, 0.5),
        "n.f8": arange(3, torch.float8_e5m2, 2.0),
        "o.c64": torch.tensor([1 + 2j, -3.5 + 0.5j], dtype=torch.complex64),
        "p.i64_scalar": torch.tensor(-42, dtype=torch.int64),
    }


def peft_lora():
    # A LoRA adapter as PEFT saves it: two layers, q/v projections, r=4, hidden 16, F32.
    out = {}
    base = "base_model.model.model.layers.{}.self_attn.{}.lora_{}.weight"
    for layer in range(2):
        for k, proj in enumerate(("q_proj", "v_proj")):
            seed = layer * 2 + k
            out[base.format(layer, proj, "A")] = arange(64, torch.float32, 1 / 64, -0.5 + seed).reshape(4, 16)
            out[base.format(layer, proj, "B")] = arange(64, torch.float32, -1 / 32, seed).reshape(16, 4)
    return out


def escapes():
    names = ['quote"', "back\\slash", "ctl\x01\x1f\n\t\b\f\r", "del\x7f", "utf8\u00e9\u20ac\U0001f600", "slash/"]
    return {n: torch.tensor([float(i)], dtype=torch.float32) for i, n in enumerate(names)}


FIXTURES = {
    "mixed.safetensors": (mixed, {"format": "pt"}),
    "peft_lora.safetensors": (peft_lora, {"format": "pt"}),
    "no_metadata.safetensors": (lambda: {"w": arange(5, torch.float16, 0.5)}, None),
    "empty.safetensors": (lambda: {}, None),
    "escapes.safetensors": (escapes, {"k\"\\\n\u00e9": "v\x02\u20ac"}),
}


def image(header, data=b""):
    """A file image with `header` (str or bytes) used verbatim and unpadded."""
    if isinstance(header, str):
        header = header.encode()
    return struct.pack("<Q", len(header)) + header + data


def malformed_seeds():
    entry = '"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'
    return {
        "bad_short": b"\x08\x00\x00",
        "bad_len_huge": struct.pack("<Q", 1 << 62) + b"{}",
        "bad_len_past_end": struct.pack("<Q", 100) + b"{}",
        "bad_not_object": image("[1,2]"),
        "bad_json": image('{"t":{"dtype":"F32",'),
        "bad_utf8": image(b'{"\xff":{}}'),
        "bad_nul_escape": image('{"a\\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"x"),
        "bad_dtype": image('{"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}', bytes(8)),
        "bad_missing_shape": image('{"t":{"dtype":"F32","data_offsets":[0,8]}}', bytes(8)),
        "bad_float_offset": image('{"t":{"dtype":"U8","shape":[2],"data_offsets":[0,1.5]}}', bytes(2)),
        "bad_negative_dim": image('{"t":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}'),
        "bad_too_many_dims": image('{"t":{"dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1]}}', b"x"),
        "bad_numel_overflow": image('{"t":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,0]}}'),
        "bad_size": image('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}', bytes(4)),
        "bad_gap": image('{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
                         '"u":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}', bytes(12)),
        "bad_overlap": image('{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
                             '"u":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', bytes(8)),
        "bad_duplicate": image("{" + entry + "," + entry + "}", bytes(8)),
        "bad_metadata": image('{"__metadata__":{"a":1}}'),
        "bad_trailing_data": image("{" + entry + "}", bytes(9)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fixtures", default="tests/fixtures/safetensors")
    p.add_argument("--seeds", default="tests/fuzz/seeds/fuzz_safetensors")
    args = p.parse_args()
    os.makedirs(args.fixtures, exist_ok=True)
    os.makedirs(args.seeds, exist_ok=True)
    for name, (make, metadata) in FIXTURES.items():
        path = os.path.join(args.fixtures, name)
        save_file(make(), path, metadata=metadata)
        with open(path, "rb") as f:
            data = f.read()
        with open(os.path.join(args.seeds, "valid_" + name.replace(".safetensors", "")), "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes")
    for name, data in malformed_seeds().items():
        with open(os.path.join(args.seeds, name), "wb") as f:
            f.write(data)
    print(f"{args.seeds}: {len(FIXTURES)} valid and {len(malformed_seeds())} malformed seeds")


if __name__ == "__main__":
    main()
