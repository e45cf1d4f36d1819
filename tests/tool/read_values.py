#!/usr/bin/env python3
"""Print NAME DTYPE SHAPE SUM-OF-SQUARES for every tensor of a safetensors file
(standard library only), so the tool test can compare files independently.
SPDX-License-Identifier: MIT
"""
import json
import struct
import sys


def main():
    with open(sys.argv[1], 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    fmt = {'F32': ('f', 4), 'F16': ('e', 2), 'I32': ('i', 4), 'I64': ('q', 8), 'U8': ('B', 1), 'U16': ('H', 2),
           'I8': ('b', 1)}
    for name in sorted(k for k in header if k != '__metadata__'):
        t = header[name]
        b, e = t['data_offsets']
        raw = blob[base + b:base + e]
        if t['dtype'] == 'BF16':
            vals = [struct.unpack('<f', b'\0\0' + raw[i:i + 2])[0] for i in range(0, len(raw), 2)]
        else:
            c, size = fmt[t['dtype']]
            vals = struct.unpack('<%d%s' % (len(raw) // size, c), raw)
        print(name, t['dtype'], 'x'.join(str(d) for d in t['shape']) or 'scalar', repr(sum(float(v) * v for v in vals)))


if __name__ == '__main__':
    main()
