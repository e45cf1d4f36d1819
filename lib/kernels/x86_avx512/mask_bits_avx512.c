/*
 * libqnoise: Quant-Noise mask bits, AVX-512 F/BW/VL/DQ.
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx512f -mavx512bw -mavx512vl -mavx512dq. Every helper
 * is static so no AVX-512 code can be merged into generic code by the linker.
 * Integer-only: the result is bit for bit the one of qn_k_mask_bits_scalar.
 *
 * Philox4x32-10 (include/qnoise/rng.h) is vectorised across counters: one
 * vector per counter word holds 16 consecutive groups (group g = blocks
 * 4g .. 4g+3), lane l = group g0 + l, so c0 = lo32(g0 + l) and c1 =
 * hi32(g0 + l) with the carry of the low word applied per lane. c2/c3 start as
 * the broadcast step words. The 32x32->64 products use _mm512_mul_epu32 on the
 * even lanes and on the odd lanes shifted down, and one two-source permute
 * (vpermt2d) each puts the high and the low halves back in lane order; the two
 * three-way xors of a round are one vpternlogd each. The key is bumped by the Weyl constants
 * between rounds exactly as in rng.h (the 10 round keys are computed once per
 * call). In round 0 c2 is the same in every lane, so its product is scalar.
 *
 * Decisions: output word j of lane l is block 4(g0 + l) + j, and it is
 * noised iff w < threshold24 << 8 (the same as (w >> 8) < threshold24 when
 * 0 < threshold24 < 2^24; 0 and >= 2^24 are answered without any Philox).
 * The four compare masks (16 bits each, one bit per lane) are interleaved into
 * block order by turning them into a byte pattern: byte 4l + j of a vector is
 * 0xff iff word j of lane l is noised (masked moves/ors of the constants
 * 0xff << 8j), and vpmovb2m reads one bit per byte, i.e. 64 decisions in
 * block order = one 64-bit "stream word".
 *
 * Alignment: stream word s holds blocks 4*(first_block >> 2) + 64 s + 0..63,
 * so it starts on a group boundary; output word k is the 64 stream bits from
 * off = first_block & 3 on, i.e. (W_s >> off) | (W_{s+1} << (64 - off)). No
 * scalar head or tail: blocks past the end are computed (a pure function of
 * the counter, no memory is touched) and their bits masked off in the last
 * output word. The group counter is taken modulo 2^62, as the scalar kernel's
 * (first_block + i) >> 2 is when the 64-bit block index wraps.
 *
 * The main loop produces two stream words (32 groups) per iteration, two
 * independent Philox chains that the out-of-order core overlaps.
 */
#include <qnoise/rng.h>

#include "kernels/kernels.h"

#include <immintrin.h>

#define MB_ROUNDS 10
#define MB_LANES 16                    /* groups per vector */
#define MB_GROUP_MASK 0x3fffffffffffffffu /* group = block index >> 2 < 2^62 */

#if defined(__GNUC__)
#define MB_INLINE static inline __attribute__((always_inline))
#else
#define MB_INLINE static inline
#endif

/* Everything a call needs besides the group: round keys, step, threshold. */
typedef struct mb_ctx {
    uint32_t k0[MB_ROUNDS], k1[MB_ROUNDS];
    uint32_t r0_hi1, r0_lo1; /* M1 * lo32(step): round 0 product of c2 (same in every lane) */
    uint32_t step_hi;        /* hi32(step) = c3 of round 0 */
    uint32_t thr8;           /* threshold24 << 8, 0 < threshold24 < 2^24 */
} mb_ctx;

static void mb_setup(mb_ctx *ctx, const uint32_t layer_key[2], uint64_t step, uint32_t thr24)
{
    uint32_t a = layer_key[0], b = layer_key[1];
    uint64_t p1 = (uint64_t)QN_PHILOX_M1 * (uint32_t)step;
    int r;
    for (r = 0; r < MB_ROUNDS; r++) {
        ctx->k0[r] = a;
        ctx->k1[r] = b;
        a += QN_PHILOX_W0;
        b += QN_PHILOX_W1;
    }
    ctx->r0_hi1 = (uint32_t)(p1 >> 32);
    ctx->r0_lo1 = (uint32_t)p1;
    ctx->step_hi = (uint32_t)(step >> 32);
    ctx->thr8 = thr24 << 8;
}

/*
 * High and low 32 bits of the 16 products c[l] * m (m a broadcast multiplier).
 * Product 2i sits in qword i of pe, product 2i+1 in qword i of po: the high
 * halves are the odd dwords of both (indices 16+ select po), the low halves
 * the even ones.
 */
MB_INLINE void mb_mulhilo(__m512i c, __m512i m, __m512i *hi, __m512i *lo)
{
    const __m512i pe = _mm512_mul_epu32(c, m);                        /* even lanes */
    const __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(c, 32), m); /* odd lanes */
    const __m512i ihi = _mm512_setr_epi32(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
    const __m512i ilo = _mm512_setr_epi32(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30);
    *hi = _mm512_permutex2var_epi32(pe, ihi, po);
    *lo = _mm512_permutex2var_epi32(pe, ilo, po);
}

/* Philox4x32-10 state of 16 groups: word j of every lane in c[j]. */
typedef struct mb_state {
    __m512i c0, c1, c2, c3;
} mb_state;

/* Counters of groups g .. g+15 (g taken modulo 2^62), after round 0. */
MB_INLINE void mb_init_round0(const mb_ctx *ctx, uint64_t g, mb_state *s)
{
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lo = _mm512_set1_epi32((int)(uint32_t)g);
    const __m512i hi = _mm512_set1_epi32((int)(uint32_t)(g >> 32));
    const __m512i c0 = _mm512_add_epi32(lo, iota);
    const __mmask16 carry = _mm512_cmplt_epu32_mask(c0, lo);
    __m512i c1 = _mm512_mask_add_epi32(hi, carry, hi, _mm512_set1_epi32(1));
    __m512i hi0, lo0;
    c1 = _mm512_and_si512(c1, _mm512_set1_epi32(0x3fffffff));
    /* round 0: the c2 product is a scalar; c3 = hi32(step) in every lane */
    mb_mulhilo(c0, _mm512_set1_epi32((int)QN_PHILOX_M0), &hi0, &lo0);
    s->c0 = _mm512_xor_si512(c1, _mm512_set1_epi32((int)(ctx->r0_hi1 ^ ctx->k0[0])));
    s->c1 = _mm512_set1_epi32((int)ctx->r0_lo1);
    s->c2 = _mm512_xor_si512(hi0, _mm512_set1_epi32((int)(ctx->step_hi ^ ctx->k1[0])));
    s->c3 = lo0;
}

/* One Philox round with round key (k0, k1). */
MB_INLINE void mb_round(mb_state *s, uint32_t k0, uint32_t k1)
{
    __m512i hi0, lo0, hi1, lo1;
    mb_mulhilo(s->c0, _mm512_set1_epi32((int)QN_PHILOX_M0), &hi0, &lo0);
    mb_mulhilo(s->c2, _mm512_set1_epi32((int)QN_PHILOX_M1), &hi1, &lo1);
    s->c0 = _mm512_ternarylogic_epi32(hi1, s->c1, _mm512_set1_epi32((int)k0), 0x96);
    s->c2 = _mm512_ternarylogic_epi32(hi0, s->c3, _mm512_set1_epi32((int)k1), 0x96);
    s->c1 = lo1;
    s->c3 = lo0;
}

/* The 64 decisions of the state (after round 9) in block order. */
MB_INLINE uint64_t mb_decide(const mb_ctx *ctx, const mb_state *s)
{
    const __m512i t = _mm512_set1_epi32((int)ctx->thr8);
    const __mmask16 m0 = _mm512_cmplt_epu32_mask(s->c0, t);
    const __mmask16 m1 = _mm512_cmplt_epu32_mask(s->c1, t);
    const __mmask16 m2 = _mm512_cmplt_epu32_mask(s->c2, t);
    const __mmask16 m3 = _mm512_cmplt_epu32_mask(s->c3, t);
    __m512i v = _mm512_maskz_mov_epi32(m0, _mm512_set1_epi32(0x000000ff));
    v = _mm512_mask_or_epi32(v, m1, v, _mm512_set1_epi32(0x0000ff00));
    v = _mm512_mask_or_epi32(v, m2, v, _mm512_set1_epi32(0x00ff0000));
    v = _mm512_mask_or_epi32(v, m3, v, _mm512_set1_epi32((int)0xff000000u));
    return (uint64_t)_mm512_movepi8_mask(v);
}

/* Stream word of groups g .. g+15. */
static inline uint64_t mb_gen1(const mb_ctx *ctx, uint64_t g)
{
    mb_state s;
    int r;
    mb_init_round0(ctx, g & MB_GROUP_MASK, &s);
    for (r = 1; r < MB_ROUNDS; r++)
        mb_round(&s, ctx->k0[r], ctx->k1[r]);
    return mb_decide(ctx, &s);
}

/* Stream words of groups g .. g+15 and g+16 .. g+31, interleaved. */
static inline void mb_gen2(const mb_ctx *ctx, uint64_t g, uint64_t *w0, uint64_t *w1)
{
    mb_state s, t;
    int r;
    mb_init_round0(ctx, g & MB_GROUP_MASK, &s);
    mb_init_round0(ctx, (g + MB_LANES) & MB_GROUP_MASK, &t);
    for (r = 1; r < MB_ROUNDS; r++) {
        mb_round(&s, ctx->k0[r], ctx->k1[r]);
        mb_round(&t, ctx->k0[r], ctx->k1[r]);
    }
    *w0 = mb_decide(ctx, &s);
    *w1 = mb_decide(ctx, &t);
}

#define MB_GROUPS_PER_WORD MB_LANES
#define MB_ENTRY qn_k_mask_bits_avx512
#include "kernels/mask_bits_driver.inc.h"
