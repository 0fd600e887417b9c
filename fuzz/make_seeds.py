#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the binary seed files of fuzz/seeds/ (safetensors, hf_encoder, npy), written by
hand from the formats' specifications with the standard library only, so that the seeds
are reproducible and small. The text seeds are committed as written.

    python3 fuzz/make_seeds.py [fuzz/seeds]
"""
import json
import os
import struct
import sys


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes), stored in this order."""
    header, offset, body = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        body += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def f32(values):
    return struct.pack("<%df" % len(values), *values)


def f16(values):
    return struct.pack("<%de" % len(values), *values)


def ramp(n, scale=0.01):
    return [((i * 7) % 13 - 6) * scale for i in range(n)]


def tiny_bert(prefix, half=False, heads=True):
    """The fuzz targets' tiny BERT (vocab 8, hidden 4, 2 layers, 2 heads, FFN 6, 6 positions)."""
    V, H, I, P, T, L = 8, 4, 6, 6, 2, 2
    pack, dtype = (f16, "F16") if half else (f32, "F32")
    t = []

    def add(name, shape, ones=False):
        n = 1
        for d in shape:
            n *= d
        t.append((name, dtype, shape, pack([1.0] * n if ones else ramp(n))))

    def lin(name, out, inp):
        add(name + ".weight", [out, inp])
        add(name + ".bias", [out])

    def norm(name):
        add(name + ".weight", [H], ones=True)
        add(name + ".bias", [H])

    e = prefix + "embeddings."
    add(e + "word_embeddings.weight", [V, H])
    add(e + "position_embeddings.weight", [P, H])
    add(e + "token_type_embeddings.weight", [T, H])
    norm(e + "LayerNorm")
    for i in range(L):
        l = "%sencoder.layer.%d." % (prefix, i)
        for s in ("query", "key", "value"):
            lin(l + "attention.self." + s, H, H)
        lin(l + "attention.output.dense", H, H)
        norm(l + "attention.output.LayerNorm")
        lin(l + "intermediate.dense", I, H)
        lin(l + "output.dense", H, I)
        norm(l + "output.LayerNorm")
    if heads:
        lin(prefix + "pooler.dense", H, H)
        lin("cls.predictions.transform.dense", H, H)
        norm("cls.predictions.transform.LayerNorm")
        add("cls.predictions.bias", [V])
    return safetensors(t, {"format": "pt"})


def npy(descr, shape, raw, fortran=False, version=1):
    d = "{'descr': '%s', 'fortran_order': %s, 'shape': (%s), }" % (
        descr, "True" if fortran else "False", "".join("%d," % s for s in shape))
    head_len = 2 if version == 1 else 4
    pad = -(6 + 2 + head_len + len(d) + 1) % 64
    d = (d + " " * pad + "\n").encode("latin-1")
    length = struct.pack("<H", len(d)) if version == 1 else struct.pack("<I", len(d))
    return b"\x93NUMPY" + bytes([version, 0]) + length + d + raw


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
    files = {
        "safetensors/f32_pair.safetensors": safetensors(
            [("bias", "F32", [3], f32([0.5, -1.0, 2.0])), ("weight", "F32", [2, 3], f32(ramp(6)))],
            {"format": "pt"}),
        "safetensors/all_dtypes.safetensors": safetensors([
            ("a_f16", "F16", [2], f16([1.0, -0.5])),
            ("b_bf16", "BF16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
            ("c_f64", "F64", [1, 2], struct.pack("<2d", 3.25, -1e300)),
            ("d_i32", "I32", [3], struct.pack("<3i", 1, -2, 2**31 - 1)),
            ("e_i64", "I64", [1], struct.pack("<q", -2**63)),
            ("f_u8", "U8", [2, 2], bytes([0, 1, 128, 255])),
            ("g_bool", "BOOL", [3], bytes([0, 1, 2])),
        ]),
        "safetensors/empty_and_scalar.safetensors": safetensors(
            [("empty", "F32", [0, 4], b""), ("scalar", "F64", [], struct.pack("<d", 1.5))]),
        "hf_encoder/tiny_bert_mlm.safetensors": tiny_bert("bert."),
        "hf_encoder/tiny_bert_model_f16.safetensors": tiny_bert("", half=True, heads=False),
        "npy/f4_2x3.npy": npy("<f4", [2, 3], f32(ramp(6))),
        "npy/i8_2x2.npy": npy("<i8", [2, 2], struct.pack("<4q", 101, 7592, 2088, 102)),
        "npy/f8_fortran_v2.npy": npy("<f8", [2, 2], struct.pack("<4d", 1, 2, 3, 4), fortran=True, version=2),
        "npy/i4_1x3.npy": npy("<i4", [1, 3], struct.pack("<3i", 0, 1, -1)),
    }
    for rel, data in files.items():
        path = os.path.join(out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        print("%-45s %6d bytes" % (rel, len(data)))


if __name__ == "__main__":
    main()
