"""Shared plumbing for the cpeft reference oracle (tests/reference/generate.py).

Everything here is deliberately boring: deterministic seeding, deterministic file writing, and the
registry that maps fixture families to the functions that produce them.

A *family* is one kind of fixture (models, forward, info, configs; later: adapters, gradients,
generation ...). A family is a function `fn(ctx) -> list[Item]`; each Item is one unit of output
(one model directory, one forward case, one JSON file) with a name and a callable that writes it.
`--only` selects items by family name, by item name, or by "family:item", with shell-style globs.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Callable

import torch

# ------------------------------------------------------------------------------------------------
# context and registry


@dataclass
class Context:
    out: str                      # the fixtures root, e.g. tests/fixtures
    cpeft: str | None = None      # path of the cpeft CLI (for families that cross-check files it writes)
    verbose: bool = True
    cache: dict = field(default_factory=dict)   # per-run memo (e.g. loaded models)

    def path(self, *parts: str) -> str:
        return os.path.join(self.out, *parts)

    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)


@dataclass
class Item:
    name: str                     # unique within its family, e.g. "gpt2_tiny" or "gpt2_tiny.right_pad"
    run: Callable[[], None]       # writes the item's files
    outputs: list[str] = field(default_factory=list)   # paths relative to ctx.out (for the report)


@dataclass
class Family:
    name: str
    fn: Callable[[Context], list[Item]]
    doc: str
    dirs: list[str]               # directories under ctx.out that this family owns exclusively


FAMILIES: list[Family] = []


def family(name: str, dirs: list[str]):
    """Decorator registering a fixture family. Families run in registration order."""
    def deco(fn):
        FAMILIES.append(Family(name=name, fn=fn, doc=(fn.__doc__ or "").strip().split("\n")[0], dirs=dirs))
        return fn
    return deco


def selected(fam: str, item: str, only: list[str] | None) -> bool:
    if not only:
        return True
    for pat in only:
        if ":" in pat:
            f, i = pat.split(":", 1)
            if fnmatch.fnmatchcase(fam, f) and (fnmatch.fnmatchcase(item, i) or fnmatch.fnmatchcase(item, i + ".*")):
                return True
        elif (fnmatch.fnmatchcase(fam, pat) or fnmatch.fnmatchcase(item, pat)
              or fnmatch.fnmatchcase(item, pat + ".*")):
            return True
    return False


# ------------------------------------------------------------------------------------------------
# determinism


def setup_torch() -> None:
    # One thread: BLAS reductions are then split the same way on every machine and every run.
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.set_default_dtype(torch.float32)


def seed(s: int) -> torch.Generator:
    torch.manual_seed(s)
    return torch.Generator().manual_seed(s)


# ------------------------------------------------------------------------------------------------
# writing files


def write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_text(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


_ST_DTYPE = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
    torch.bool: "BOOL",
}


def save_tensors(path: str, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Write a .safetensors file byte-for-byte reproducibly.

    safetensors.torch.save_file serialises `__metadata__` from a Rust HashMap, so its key order changes
    from process to process and fixture files would never be bit-identical across runs. This writer
    produces the same layout as the library (tensors ordered by dtype size descending, then name;
    header padded with spaces to a multiple of 8) but with sorted metadata keys. The result is read
    back with safetensors.safe_open in verify steps.
    """
    import struct
    os.makedirs(os.path.dirname(path), exist_ok=True)
    items = []
    for name, t in tensors.items():
        t = t.detach().to("cpu").contiguous()
        items.append((name, t))
    items.sort(key=lambda kv: (-kv[1].element_size(), kv[0]))
    header = {"__metadata__": {k: str(v) for k, v in sorted(metadata.items())}}
    blobs, off = [], 0
    for name, t in items:
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": _ST_DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hjson = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def load_tensors(path: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open
    with safe_open(path, framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def fresh_dir(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def dir_size(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total
