/*
 * libqnoise internal: the ISA-independent half of the SIMD mask-bit samplers.
 * SPDX-License-Identifier: MIT
 *
 * A template, included at the end of x86_avx2/mask_bits_avx2.c and
 * x86_avx512/mask_bits_avx512.c (never on its own). The including file
 * defines, before including it:
 *   mb_ctx, mb_setup(ctx, key, step, threshold24)   its Philox state and setup
 *   mb_gen1(ctx, g)            the 64 decisions of groups g .. g + MB_GROUPS_PER_WORD - 1
 *   mb_gen2(ctx, g, &w0, &w1)  the next two such words, interleaved for throughput
 *   MB_GROUPS_PER_WORD         groups of 4 blocks per 64-bit word (16)
 *   MB_ENTRY                   the name of the exported kernel
 * and gets the exported kernel: whole 64-bit output words cut from the
 * group-aligned stream at the offset first_block & 3, the zeroed tail and the
 * popcount. Everything here is static inline, compiled with the includer's
 * flags only.
 */
#ifndef QN_KERNELS_MASK_BITS_DRIVER_INC
#define QN_KERNELS_MASK_BITS_DRIVER_INC

static inline uint64_t mb_popcount64(uint64_t x)
{
    x = x - ((x >> 1) & 0x5555555555555555u);
    x = (x & 0x3333333333333333u) + ((x >> 2) & 0x3333333333333333u);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fu;
    return (x * 0x0101010101010101u) >> 56;
}

/* The 64 stream bits from bit off (0..3) on: a of stream word s, b of s + 1. */
static inline uint64_t mb_funnel(uint64_t a, uint64_t b, unsigned off)
{
    return off ? (a >> off) | (b << (64u - off)) : a;
}

/* Threshold 0 (nothing noised) or >= 2^24 (everything noised): no Philox needed. */
static uint64_t mb_fill(uint64_t *bits, size_t count, int all)
{
    const size_t full = count / 64;
    const unsigned tail = (unsigned)(count % 64);
    const uint64_t v = all ? ~(uint64_t)0 : 0;
    size_t k;
    for (k = 0; k < full; k++)
        bits[k] = v;
    if (tail)
        bits[full] = v & (~(uint64_t)0 >> (64u - tail));
    return all ? (uint64_t)count : 0;
}

uint64_t MB_ENTRY(const uint32_t layer_key[2], uint64_t step, uint64_t first_block, size_t count,
                  uint32_t threshold24, uint64_t *bits)
{
    const unsigned tail = (unsigned)(count % 64);
    const unsigned off = (unsigned)(first_block & 3u);
    const size_t nout = count / 64 + (tail != 0);
    /* stream words holding bits [off, off + count), without overflowing size_t */
    const size_t nstream = count / 64 + (tail + off + 63u) / 64u;
    uint64_t g = first_block >> 2, cur, set = 0;
    size_t k;
    mb_ctx ctx;

    if (count == 0)
        return 0;
    if (threshold24 == 0 || threshold24 >= (1u << 24))
        return mb_fill(bits, count, threshold24 != 0);
    mb_setup(&ctx, layer_key, step, threshold24);

    cur = mb_gen1(&ctx, g);
    g += MB_GROUPS_PER_WORD;
    /* output words k and k + 1, neither the last: stream words k + 1, k + 2 exist */
    for (k = 0; k + 2 < nout; k += 2) {
        uint64_t n1, n2, w0, w1;
        mb_gen2(&ctx, g, &n1, &n2);
        g += 2 * MB_GROUPS_PER_WORD;
        w0 = mb_funnel(cur, n1, off);
        w1 = mb_funnel(n1, n2, off);
        bits[k] = w0;
        bits[k + 1] = w1;
        set += mb_popcount64(w0) + mb_popcount64(w1);
        cur = n2;
    }
    for (; k < nout; k++) {
        uint64_t next = 0, w;
        if (k + 1 < nstream) {
            next = mb_gen1(&ctx, g);
            g += MB_GROUPS_PER_WORD;
        }
        w = mb_funnel(cur, next, off);
        if (k + 1 == nout && tail)
            w &= ~(uint64_t)0 >> (64u - tail);
        bits[k] = w;
        set += mb_popcount64(w);
        cur = next;
    }
    return set;
}

#endif /* QN_KERNELS_MASK_BITS_DRIVER_INC */
