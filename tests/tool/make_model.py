#!/usr/bin/env python3
"""Write a small safetensors file the way a PyTorch export looks, with the
standard library only (an independent writer for the tool's end-to-end test).

usage: make_model.py OUT.safetensors
Tensors: fc1.weight F32 [64, 32], fc1.bias F32 [64], conv.weight F16 [16, 8, 3, 3],
odd.weight F32 [10, 7], emb.weight BF16 [100, 16], bn.num_batches_tracked I64 [].
SPDX-License-Identifier: MIT
"""
import json
import random
import struct
import sys

random.seed(1)


def f32(n):
    return struct.pack('<%df' % n, *[random.gauss(0, 1) for _ in range(n)])


def f16(n):
    return struct.pack('<%de' % n, *[random.gauss(0, 1) for _ in range(n)])


def bf16(n):
    out = bytearray()
    for _ in range(n):
        out += struct.pack('<f', random.gauss(0, 1))[2:4]  # truncation is a valid bf16 value
    return bytes(out)


TENSORS = [
    ('fc1.weight', 'F32', [64, 32], f32(64 * 32)),
    ('fc1.bias', 'F32', [64], f32(64)),
    ('conv.weight', 'F16', [16, 8, 3, 3], f16(16 * 8 * 9)),
    ('odd.weight', 'F32', [10, 7], f32(70)),
    ('emb.weight', 'BF16', [100, 16], bf16(1600)),
    ('bn.num_batches_tracked', 'I64', [], struct.pack('<q', 5)),
]


def main():
    header, data, off = {}, b'', 0
    for name, dtype, shape, raw in TENSORS:
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [off, off + len(raw)]}
        off += len(raw)
        data += raw
    header['__metadata__'] = {'format': 'pt'}
    text = json.dumps(header).encode()
    text += b' ' * ((8 - len(text) % 8) % 8)
    with open(sys.argv[1], 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + data)


if __name__ == '__main__':
    main()
