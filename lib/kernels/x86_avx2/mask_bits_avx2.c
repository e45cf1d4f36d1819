/*
 * libqnoise: Quant-Noise mask bits, AVX2.
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx2 -mfma. Every helper is static so no AVX2 code can
 * be merged into generic code by the linker. Integer-only: the result is bit
 * for bit the one of qn_k_mask_bits_scalar.
 *
 * Philox4x32-10 (include/qnoise/rng.h) is vectorised across counters: one
 * vector per counter word holds 8 consecutive groups (group g = blocks
 * 4g .. 4g+3), lane l = group g0 + l, so c0 = lo32(g0 + l) and c1 =
 * hi32(g0 + l) with the carry of the low word applied per lane (a lane
 * carried iff max_epu32(c0, lo32(g0)) != c0). c2/c3 start as the broadcast
 * step words. The 32x32->64 products use _mm256_mul_epu32 on the even lanes
 * and on the odd lanes shifted down, and the high/low halves are put back in
 * place with a shift and a blend. The key is bumped by the Weyl constants
 * between rounds exactly as in rng.h (the 10 round keys are computed once per
 * call). In round 0 c2 is the same in every lane, so its product is scalar.
 *
 * Decisions: output word j of lane l is block 4(g0 + l) + j, and it is
 * noised iff (w >> 8) < threshold24 (a signed compare is exact: both sides are
 * below 2^24; threshold 0 and >= 2^24 are answered without any Philox). The
 * four compare results (0 / -1 per lane) are merged into block order by byte
 * blends, byte 4l + j taken from word j, and vpmovmskb reads one bit per byte:
 * 32 decisions in block order. Two vectors of 8 groups make one 64-bit
 * "stream word" of 16 groups.
 *
 * Alignment: stream word s holds blocks 4*(first_block >> 2) + 64 s + 0..63,
 * so it starts on a group boundary; output word k is the 64 stream bits from
 * off = first_block & 3 on, i.e. (W_s >> off) | (W_{s+1} << (64 - off)). No
 * scalar head or tail: blocks past the end are computed (a pure function of
 * the counter, no memory is touched) and their bits masked off in the last
 * output word. The group counter is taken modulo 2^62, as the scalar kernel's
 * (first_block + i) >> 2 is when the 64-bit block index wraps.
 *
 * The main loop produces two stream words (4 vectors, 32 groups) per
 * iteration: four independent Philox chains that the core overlaps.
 */
#include <qnoise/rng.h>

#include "kernels/kernels.h"

#include <immintrin.h>

#define MB_ROUNDS 10
#define MB_LANES 8                        /* groups per vector */
#define MB_WORD_GROUPS 16                 /* groups per 64-bit stream word */
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
    uint32_t thr24;          /* 0 < threshold24 < 2^24 */
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
    ctx->thr24 = thr24;
}

/* High and low 32 bits of the 8 products c[l] * m (m a broadcast multiplier). */
MB_INLINE void mb_mulhilo(__m256i c, __m256i m, __m256i *hi, __m256i *lo)
{
    const __m256i pe = _mm256_mul_epu32(c, m);                        /* even lanes */
    const __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m); /* odd lanes */
    *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
}

/* Philox4x32-10 state of 8 groups: word j of every lane in c[j]. */
typedef struct mb_state {
    __m256i c0, c1, c2, c3;
} mb_state;

/* Counters of groups g .. g+7 (g taken modulo 2^62), after round 0. */
MB_INLINE void mb_init_round0(const mb_ctx *ctx, uint64_t g, mb_state *s)
{
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lo = _mm256_set1_epi32((int)(uint32_t)g);
    const __m256i c0 = _mm256_add_epi32(lo, iota);
    /* -1 where lo32 did not wrap, 0 where it did: c1 = (hi + 1) + that */
    const __m256i nowrap = _mm256_cmpeq_epi32(_mm256_max_epu32(c0, lo), c0);
    const __m256i c1 = _mm256_and_si256(
        _mm256_add_epi32(_mm256_set1_epi32((int)((uint32_t)(g >> 32) + 1u)), nowrap),
        _mm256_set1_epi32(0x3fffffff));
    __m256i hi0, lo0;
    /* round 0: the c2 product is a scalar; c3 = hi32(step) in every lane */
    mb_mulhilo(c0, _mm256_set1_epi32((int)QN_PHILOX_M0), &hi0, &lo0);
    s->c0 = _mm256_xor_si256(c1, _mm256_set1_epi32((int)(ctx->r0_hi1 ^ ctx->k0[0])));
    s->c1 = _mm256_set1_epi32((int)ctx->r0_lo1);
    s->c2 = _mm256_xor_si256(hi0, _mm256_set1_epi32((int)(ctx->step_hi ^ ctx->k1[0])));
    s->c3 = lo0;
}

/* One Philox round with round key (k0, k1). */
MB_INLINE void mb_round(mb_state *s, uint32_t k0, uint32_t k1)
{
    __m256i hi0, lo0, hi1, lo1;
    mb_mulhilo(s->c0, _mm256_set1_epi32((int)QN_PHILOX_M0), &hi0, &lo0);
    mb_mulhilo(s->c2, _mm256_set1_epi32((int)QN_PHILOX_M1), &hi1, &lo1);
    s->c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, s->c1), _mm256_set1_epi32((int)k0));
    s->c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, s->c3), _mm256_set1_epi32((int)k1));
    s->c1 = lo1;
    s->c3 = lo0;
}

/* The 32 decisions of the state (after round 9) in block order. */
MB_INLINE uint32_t mb_decide(const mb_ctx *ctx, const mb_state *s)
{
    const __m256i t = _mm256_set1_epi32((int)ctx->thr24);
    const __m256i d0 = _mm256_cmpgt_epi32(t, _mm256_srli_epi32(s->c0, 8));
    const __m256i d1 = _mm256_cmpgt_epi32(t, _mm256_srli_epi32(s->c1, 8));
    const __m256i d2 = _mm256_cmpgt_epi32(t, _mm256_srli_epi32(s->c2, 8));
    const __m256i d3 = _mm256_cmpgt_epi32(t, _mm256_srli_epi32(s->c3, 8));
    /* 16-bit halves: bytes 0-1 of each lane from d0/d1, bytes 2-3 from d2/d3 */
    const __m256i d02 = _mm256_blend_epi16(d0, d2, 0xAA);
    const __m256i d13 = _mm256_blend_epi16(d1, d3, 0xAA);
    /* odd bytes from d13: byte j of each lane now comes from dj */
    const __m256i v = _mm256_blendv_epi8(d02, d13, _mm256_set1_epi16((short)0xff00));
    return (uint32_t)_mm256_movemask_epi8(v);
}

/* Stream word of groups g .. g+15: two vectors of 8 groups, interleaved. */
static inline uint64_t mb_gen1(const mb_ctx *ctx, uint64_t g)
{
    mb_state s, t;
    int r;
    mb_init_round0(ctx, g & MB_GROUP_MASK, &s);
    mb_init_round0(ctx, (g + MB_LANES) & MB_GROUP_MASK, &t);
    for (r = 1; r < MB_ROUNDS; r++) {
        mb_round(&s, ctx->k0[r], ctx->k1[r]);
        mb_round(&t, ctx->k0[r], ctx->k1[r]);
    }
    return (uint64_t)mb_decide(ctx, &s) | (uint64_t)mb_decide(ctx, &t) << 32;
}

/* Stream words of groups g .. g+15 and g+16 .. g+31: four vectors, interleaved. */
static inline void mb_gen2(const mb_ctx *ctx, uint64_t g, uint64_t *w0, uint64_t *w1)
{
    mb_state s, t, u, v;
    int r;
    mb_init_round0(ctx, g & MB_GROUP_MASK, &s);
    mb_init_round0(ctx, (g + MB_LANES) & MB_GROUP_MASK, &t);
    mb_init_round0(ctx, (g + 2 * MB_LANES) & MB_GROUP_MASK, &u);
    mb_init_round0(ctx, (g + 3 * MB_LANES) & MB_GROUP_MASK, &v);
    for (r = 1; r < MB_ROUNDS; r++) {
        mb_round(&s, ctx->k0[r], ctx->k1[r]);
        mb_round(&t, ctx->k0[r], ctx->k1[r]);
        mb_round(&u, ctx->k0[r], ctx->k1[r]);
        mb_round(&v, ctx->k0[r], ctx->k1[r]);
    }
    *w0 = (uint64_t)mb_decide(ctx, &s) | (uint64_t)mb_decide(ctx, &t) << 32;
    *w1 = (uint64_t)mb_decide(ctx, &u) | (uint64_t)mb_decide(ctx, &v) << 32;
}

#define MB_GROUPS_PER_WORD MB_WORD_GROUPS
#define MB_ENTRY qn_k_mask_bits_avx2
#include "kernels/mask_bits_driver.inc.h"
