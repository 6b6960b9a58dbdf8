"""Writes the seed corpus of tests/fuzz/safetensors_header_fuzz.cpp: small valid files written by
the reference safetensors package (every dtype, metadata, 0-d and empty tensors, a sharded-model
style header) and a few hand-made invalid ones, each a starting point the mutator can bend.

    .venv/bin/python tests/fuzz/make_safetensors_corpus.py   # rewrites the corpus folder
"""
import pathlib
import struct

import torch
from safetensors.torch import save

OUT = pathlib.Path(__file__).resolve().parent / "corpus" / "safetensors_header_fuzz"


def raw(header: str, data: bytes = b"", length: int | None = None) -> bytes:
    encoded = header.encode()
    return struct.pack("<Q", len(encoded) if length is None else length) + encoded + data


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    seeds = {
        "valid_empty": save({}),
        "valid_one_f32": save({"w": torch.tensor([1.5, -2.0])}),
        "valid_scalar": save({"s": torch.tensor(3.25)}),
        "valid_empty_tensor": save({"e": torch.zeros(0, 3), "x": torch.ones(1, dtype=torch.uint8)}),
        "valid_metadata": save({"w": torch.ones(2, 2, dtype=torch.bfloat16)}, metadata={"format": "pt", "k": "v\u2713"}),
        "valid_all_dtypes": save({
            str(d).replace("torch.", ""): torch.zeros(2, dtype=d)
            for d in [torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn,
                      torch.float8_e5m2, torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8,
                      torch.uint16, torch.uint32, torch.uint64, torch.bool]}),
        "valid_layer": save({
            "model.layers.0.self_attn.q_proj.weight": torch.zeros(4, 4, dtype=torch.bfloat16),
            "model.layers.0.self_attn.q_proj.bias": torch.zeros(4, dtype=torch.bfloat16),
            "model.norm.weight": torch.ones(4),
        }, metadata={"format": "pt"}),
        "invalid_overlap": raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},'
                               '"b":{"dtype":"U8","shape":[2],"data_offsets":[1,3]}}', b"abc"),
        "invalid_hole": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}', b"ab"),
        "invalid_length": raw('{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}', b"ab", length=1 << 40),
        "invalid_dtype": raw('{"a":{"dtype":"F8_E8M0","shape":[2],"data_offsets":[0,2]}}', b"ab"),
        "invalid_shape": raw('{"a":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}}', b"abcd"),
        "invalid_duplicate": raw('{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
                                 '"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', b"a"),
        "invalid_nested": raw('{"__metadata__":{"k":{"x":[1]}},"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}}', b"a"),
    }
    for name, data in seeds.items():
        (OUT / f"{name}.safetensors").write_bytes(data)
    print(f"{len(seeds)} seeds in {OUT}")


if __name__ == "__main__":
    main()
