#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
Writes tests/data/torch_small.safetensors: a small PyTorch state dict saved
the way a PyTorch user's safetensors export lays it out, by an independent
writer (this script, struct + json only; the safetensors pip package is not
used and not needed). tests/test_safetensors.c reads the committed file, so
neither Python nor PyTorch is needed at test time.

Run it with Debian's PyTorch (apt-get install python3-torch):
    /usr/bin/python3 tests/torch_safetensors.py [OUT]
and commit the result if it changed (it is byte-for-byte deterministic).

What it mirrors of that exporter's output, as the format describes it:
  - "__metadata__": {"format": "pt"} first, then the tensors, in compact JSON;
  - tensors ordered by decreasing element size, then by name, with no gaps;
  - the header right-padded with spaces to a multiple of 8 bytes;
  - little-endian C-order data straight from the tensors' storage.
The values are exact in their dtypes so the C test can spell them out:
F16 and BF16 include 1, -2.5, the largest finite value, the smallest
subnormal, infinity and NaN.
"""
import json
import struct
import sys

import torch

DTYPE_NAMES = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64",
}


def state_dict():
    inf, nan = float("inf"), float("nan")
    return {
        # nn.Linear(2, 3)
        "fc.weight": (torch.arange(6, dtype=torch.float32).reshape(3, 2) * 0.5 - 1.25),
        "fc.bias": torch.tensor([0.125, -3.0, 1e-3], dtype=torch.float32),
        # an fp16 embedding [2, 3]
        "emb.weight": torch.tensor([[1.0, -2.5, 65504.0], [2.0 ** -24, inf, nan]], dtype=torch.float16),
        # a bf16 projection [2, 2]
        "proj.weight": torch.tensor([[1.0, -2.5], [2.0 ** -133, -inf]], dtype=torch.bfloat16),
        # BatchNorm's counter: a rank-0 int64 tensor
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        # an empty tensor and a bool mask
        "empty": torch.zeros(0, 4, dtype=torch.float32),
        "mask": torch.tensor([True, False, True]),
    }


def raw_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: the same bits as int16
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def main():
    if sys.byteorder != "little":
        sys.exit("this script writes the host's byte order; run it on a little-endian machine")
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/data/torch_small.safetensors"
    sd = state_dict()
    order = sorted(sd, key=lambda n: (-sd[n].element_size(), n))
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in order:
        t = sd[name]
        b = raw_bytes(t)
        assert len(b) == t.numel() * t.element_size()
        header[name] = {"dtype": DTYPE_NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    print(f"{out}: {8 + len(text) + offset} bytes, header {len(text)} bytes, {len(sd)} tensors")


if __name__ == "__main__":
    main()
