#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""
Expected observer outputs for tests/test_observer.c, from PyTorch 1.13
(Debian bookworm: apt-get install python3-torch; run it with that Python,
e.g. /usr/bin/python3 tests/observer_reference.py > ref.inc).

It prints C source (the data sets and a table of expected (scale,
zero_point) pairs) to paste between the GENERATED markers of
tests/test_observer.c. Not run by the build: the C test carries the numbers.

PyTorch is driven with an explicit quant_min/quant_max per bit width:
  affine:    dtype quint8, [0, 2^bits - 1],  per_tensor_affine / per_channel_affine
  symmetric: dtype qint8,  [-(2^(bits-1) - 1), 2^(bits-1) - 1],
             per_tensor_symmetric / per_channel_symmetric
Observers: MinMaxObserver, PerChannelMinMaxObserver (ch_axis = 0),
MovingAverageMinMaxObserver (default averaging_constant 0.01, fed two tensors
in sequence) and HistogramObserver (2048 bins) with two adjustments that
libqnoise makes on purpose:
  - dst_nbins is set to 2^bits (1.13 always uses 2^8 for (q)int8 whatever
    quant_min/quant_max say: fairseq's int4 bug);
  - 1.13 builds the histogram with histc(min=int(min), max=int(max)), i.e.
    with truncated bounds. The data sets are chosen so that this equals the
    histogram over [min, max] (bounds that are integers, or both inside
    (-1, 1), where histc falls back to the data range); the script asserts it.
"""
import sys
import warnings

try:
    import torch
except ImportError:
    sys.exit("observer_reference.py needs PyTorch 1.13 (Debian: apt-get install python3-torch)")
from torch.ao.quantization.observer import (
    HistogramObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    PerChannelMinMaxObserver,
)

BITS = range(2, 9)
SCHEMES = ("affine", "symmetric")

# ---------------------------------------------------------------------------
# Data sets (float32 after conversion; printed back exactly for the C test)
# ---------------------------------------------------------------------------

# 16 values of both signs inside (-1, 1)
MIXED16 = [
    -0.8125, -0.4, -0.33, -0.05, 0.0, 0.07, 0.12, 0.2, 0.25, 0.31,
    0.42, 0.5, 0.61, 0.7, 0.77, 0.93,
]

# 24 values, all positive
POS24 = [
    0.113, 0.827, 0.543, 0.644, 0.37, 0.094, 0.047, 0.504, 0.282, 0.556,
    0.327, 0.966, 0.879, 0.214, 0.282, 0.117, 0.362, 0.767, 0.846, 0.36,
    0.411, 0.414, 0.21, 0.123,
]

# 64 values near 0 (sd 0.3) with min -1.0 and one outlier 12.0
OUTLIER64 = [
    -0.063, -0.155, 0.045, -0.537, 0.085, -0.097, -0.218, 0.03, -0.585, -0.048,
    -0.219, 0.123, 0.133, -0.278, -0.28, -0.441, -0.236, 0.096, 0.257, 0.069,
    -1.0, 0.01, -0.26, 0.059, -0.245, 0.072, -0.061, 0.257, 0.061, 0.411,
    -0.122, 0.227, 0.068, 0.509, -0.589, 0.262, -0.307, -0.261, -0.006, -0.453,
    -0.358, -0.152, -0.097, -0.571, -0.262, -0.044, 12.0, -0.04, -0.199, -0.001,
    -0.154, 0.352, -0.243, 0.018, -0.147, 0.256, -0.291, 0.263, -0.359, -0.41,
    -0.165, 0.028, -0.456, -0.151,
]

# 4 x 8 (rows = output channels): mixed, all positive, all negative, wider
MAT4X8 = [
    [-0.9, -0.35, 0.0, 0.15, 0.4, -0.6, 0.8, 0.25],
    [0.1, 0.45, 1.25, 2.0, 0.7, 0.05, 1.6, 0.9],
    [-0.3, -1.1, -0.05, -0.75, -2.5, -0.2, -1.8, -0.6],
    [-3.0, 1.5, -0.4, 0.9, -1.75, 0.33, 1.1, -2.2],
]

# 300 heavy-tailed (Laplace, b = 0.3) values, min -2.0, max 3.0; 12 x 25 per channel
HEAVY300 = [
    0.001, -0.082, 0.181, 0.035, 0.271, 0.32, -0.162, 0.17, -0.249, 0.001,
    -0.131, -0.039, 0.24, -0.048, 1.009, -0.299, -0.106, -0.479, -1.054, 0.028,
    0.017, -0.039, -0.155, -0.908, -0.418, 0.04, -0.239, -0.214, 0.293, 0.103,
    -0.059, 0.15, 0.04, -0.456, 0.4, 0.009, -0.113, -0.005, -0.071, 0.04,
    -0.469, -0.066, 0.07, 0.132, -0.386, 0.139, 0.228, 0.367, -0.175, -0.084,
    -0.259, 0.672, -0.144, 0.314, 0.335, -0.648, 0.067, 0.043, -0.192, 0.03,
    -0.006, 0.143, 0.137, 0.097, -0.176, -0.6, 0.145, -0.113, 0.047, -0.166,
    -0.049, 0.004, -0.281, -0.158, -0.6, 0.009, -0.18, 0.289, 0.071, 0.357,
    0.84, 0.054, 0.514, -0.193, 0.457, -0.023, -0.009, -0.406, -0.429, -0.135,
    0.254, -0.997, 0.591, -0.476, -0.142, 0.158, 0.164, 0.645, 0.56, 0.153,
    3.0, -0.861, -0.263, -0.371, -0.457, -0.063, -1.639, -0.099, -0.387, 0.15,
    0.036, 0.123, 0.358, -0.457, -0.128, -0.238, -0.308, 0.433, 0.011, -0.328,
    -0.051, 0.422, -0.479, -0.554, 0.408, 1.62, 0.399, -0.288, -0.306, 0.374,
    0.273, -0.669, 0.249, -0.171, 0.037, -0.079, -0.002, -0.338, -0.047, 0.092,
    1.02, 0.375, -0.165, 0.001, 0.057, -0.144, -0.168, -1.206, 0.01, -0.111,
    -0.12, -0.011, -0.161, 0.347, -0.469, -0.548, 0.351, 0.031, 0.155, 0.331,
    -0.2, 0.186, 0.121, -0.076, 0.031, -0.059, 0.279, -0.009, -0.089, 0.094,
    -0.155, -0.133, 0.066, 0.21, -0.055, -0.094, -0.047, 0.3, 0.062, -1.237,
    0.226, 0.061, -0.458, -0.31, 0.861, -0.472, -0.317, 0.1, -0.181, -0.497,
    -0.949, -0.2, 0.213, -1.348, 0.719, -0.175, 0.317, 0.588, 0.093, -0.7,
    -1.019, -0.207, 0.105, -0.153, -0.37, -0.196, 0.188, -0.115, 0.291, -0.299,
    -0.027, -2.0, 0.136, -0.229, -0.285, 0.013, 0.428, 0.059, 0.672, 0.578,
    0.357, -0.554, 0.77, 0.278, 0.346, 0.155, -0.286, -0.129, 0.387, 0.09,
    -0.891, 0.111, 0.149, 0.059, -0.099, -0.159, 0.068, 0.026, -0.134, -0.058,
    -0.027, -0.041, -0.044, 0.802, 0.008, 0.387, -0.242, -0.018, 0.28, -0.164,
    0.088, 0.561, 0.079, -0.681, -0.207, -0.153, 0.26, -0.224, -0.198, 0.007,
    0.087, 0.406, -0.089, -0.207, 0.018, 0.499, -0.713, 0.172, -0.585, -0.088,
    0.148, 0.328, 0.027, -0.075, 0.238, -0.181, -0.152, 0.902, -0.175, -0.896,
    -0.247, 0.089, 0.838, 0.183, 0.266, 0.773, 0.076, 0.076, 0.211, 0.132,
    0.131, 0.013, 0.195, -0.141, 0.398, 0.093, -0.205, -0.409, 0.367, 0.063,
]

DATA = {
    # name: (values, rows, cols)
    "mixed16": (MIXED16, 1, 16),
    "pos24": (POS24, 1, 24),
    "outlier64": (OUTLIER64, 1, 64),
    "mat4x8": ([v for row in MAT4X8 for v in row], 4, 8),
    "heavy300": (HEAVY300, 12, 25),
}
PER_TENSOR = ["mixed16", "pos24", "outlier64", "mat4x8", "heavy300"]
PER_CHANNEL = ["mat4x8", "heavy300"]
MA_SEQUENCES = [("mixed16", "outlier64"), ("outlier64", "pos24"), ("mat4x8", "heavy300")]
HISTOGRAM = ["mixed16", "pos24", "outlier64", "mat4x8", "heavy300"]


def tensor(name):
    vals, rows, cols = DATA[name]
    return torch.tensor(vals, dtype=torch.float32).reshape(rows, cols)


def grid(scheme, bits, per_channel=False):
    if scheme == "affine":
        qs = torch.per_channel_affine if per_channel else torch.per_tensor_affine
        return dict(dtype=torch.quint8, qscheme=qs, quant_min=0, quant_max=2**bits - 1)
    qs = torch.per_channel_symmetric if per_channel else torch.per_tensor_symmetric
    q = 2 ** (bits - 1) - 1
    return dict(dtype=torch.qint8, qscheme=qs, quant_min=-q, quant_max=q)


def cfloat(v):
    """A C float literal that parses back to exactly the float32 value v."""
    s = "%.9g" % float(v)
    if "." not in s and "e" not in s and "n" not in s:
        s += ".0"
    return s + "f"


def main():
    if not torch.__version__.startswith("1.13"):
        sys.stderr.write("warning: written for PyTorch 1.13, this is %s\n" % torch.__version__)
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    cases = []   # (label, data, data2, observer, scheme, bits, ma_min, ma_max, pairs)

    for name in HISTOGRAM:
        x = tensor(name).flatten()
        lo, hi = float(x.min()), float(x.max())
        if int(lo) != int(hi):
            assert int(lo) == lo and int(hi) == hi, name + ": 1.13's histc would truncate the range"

    for bits in BITS:
        for scheme in SCHEMES:
            for name in PER_TENSOR:
                obs = MinMaxObserver(**grid(scheme, bits))
                obs(tensor(name))
                s, z = obs.calculate_qparams()
                cases.append((name, name, None, "MINMAX", scheme, bits, 0.0, 0.0,
                              [(float(s[0]), int(z[0]))]))
            for name in PER_CHANNEL:
                obs = PerChannelMinMaxObserver(ch_axis=0, **grid(scheme, bits, per_channel=True))
                obs(tensor(name))
                s, z = obs.calculate_qparams()
                cases.append((name, name, None, "PER_CHANNEL", scheme, bits, 0.0, 0.0,
                              [(float(a), int(b)) for a, b in zip(s, z)]))
            for first, second in MA_SEQUENCES:
                obs = MovingAverageMinMaxObserver(**grid(scheme, bits))
                obs(tensor(first))
                obs(tensor(second))
                s, z = obs.calculate_qparams()
                cases.append((first + "+" + second, first, second, "MOVING_AVERAGE", scheme, bits,
                              float(obs.min_val), float(obs.max_val), [(float(s[0]), int(z[0]))]))
            for name in HISTOGRAM:
                x = tensor(name)
                obs = HistogramObserver(**grid(scheme, bits))
                obs.dst_nbins = 2**bits
                obs(x)
                flat = x.flatten()
                want = torch.histc(flat, 2048, min=float(flat.min()), max=float(flat.max()))
                assert torch.equal(obs.histogram, want), name + ": histogram differs"
                s, z = obs.calculate_qparams()
                cases.append((name, name, None, "HISTOGRAM", scheme, bits, 0.0, 0.0,
                              [(float(s[0]), int(z[0]))]))

    out = sys.stdout
    out.write("/* BEGIN GENERATED by tests/observer_reference.py (torch.__version__ %s) */\n"
              % torch.__version__)
    for name, (vals, rows, cols) in DATA.items():
        flat = torch.tensor(vals, dtype=torch.float32)
        out.write("static const float ref_%s[%d] = {\n" % (name, rows * cols))
        lits = [cfloat(v) for v in flat]
        for i in range(0, len(lits), 6):
            out.write("    " + ", ".join(lits[i:i + 6]) + ",\n")
        out.write("};\n")
    out.write("\nstatic const ref_case ref_cases[] = {\n")
    scales, zeros = [], []
    for label, data, data2, obsname, scheme, bits, ma_min, ma_max, pairs in cases:
        _, rows, cols = DATA[data]
        d2 = "ref_" + data2 if data2 else "NULL"
        n2 = (DATA[data2][1] * DATA[data2][2]) if data2 else 0
        out.write('    {"%s", ref_%s, %d, %d, %s, %d, QN_OBSERVER_%s, QN_QSCHEME_%s, %d, %s, %s, %d, %d},\n'
                  % (label, data, rows, cols, d2, n2, obsname, scheme.upper(), bits,
                     cfloat(ma_min), cfloat(ma_max), len(scales), len(pairs)))
        for s, z in pairs:
            scales.append(s)
            zeros.append(z)
    out.write("};\n\nstatic const float ref_scale[%d] = {\n" % len(scales))
    lits = [cfloat(s) for s in scales]
    for i in range(0, len(lits), 6):
        out.write("    " + ", ".join(lits[i:i + 6]) + ",\n")
    out.write("};\n\nstatic const int32_t ref_zero[%d] = {\n" % len(zeros))
    for i in range(0, len(zeros), 16):
        out.write("    " + ", ".join("%d" % z for z in zeros[i:i + 16]) + ",\n")
    out.write("};\n/* END GENERATED */\n")


if __name__ == "__main__":
    main()
