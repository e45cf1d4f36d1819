#!/usr/bin/env python3
# Prints the golden per-block words asserted in tests/test_rng.c, from an
# implementation of Philox4x32-10 and of the rng.h contract written separately
# from the C one. Optional to run: python3 tests/rng_golden.py

M0, M1, W0, W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
MASK = 0xffffffff
def philox(ctr, key, rounds=10):
    x0, x1, x2, x3 = ctr
    k0, k1 = key
    for r in range(rounds):
        p0 = M0 * x0; p1 = M1 * x2
        x0, x1, x2, x3 = ((p1 >> 32) ^ x1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ x3 ^ k1) & MASK, p0 & MASK
        k0 = (k0 + W0) & MASK; k1 = (k1 + W1) & MASK
    return [x0, x1, x2, x3]
assert philox([0x243f6a88,0x85a308d3,0x13198a2e,0x03707344],[0xa4093822,0x299f31d0]) == [0xd16cfe09,0x94fdcceb,0x5001e420,0x24126ea1]
def lo(v): return v & MASK
def hi(v): return (v >> 32) & MASK
def block_u32(seed, layer, step, b):
    k = philox([lo(layer), hi(layer), 0x71756e6f, 0x6c617972], [lo(seed), hi(seed)])[:2]
    g = b >> 2
    return philox([lo(g), hi(g), lo(step), hi(step)], k)[b & 3]
cases = [(0,0,0,0),(0,0,0,1),(0,0,0,3),(0,0,0,4),(1,0,0,0),(0,1,0,0),(0,0,1,0),
         (0x0123456789abcdef, 7, 1000, 12345),(2**64-1, 2**64-1, 2**64-1, 2**64-1),(42, 3, 2**33+5, 2**40+2)]
for c in cases:
    w = block_u32(*c)
    print("    {0x%xull, 0x%xull, 0x%xull, 0x%xull, 0x%08xu}," % (c + (w,)))
