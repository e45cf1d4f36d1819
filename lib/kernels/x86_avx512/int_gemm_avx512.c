/*
 * libqnoise: GEMM on int8/int4 scalar-quantized weights, AVX-512 (F, BW, VL, DQ; the VNNI
 * kernel carries its own target attribute and is called only when the CPU has VNNI).
 * SPDX-License-Identifier: MIT
 *
 * Layout (kernels.h, qn_k_intw): a 64-byte block holds 16 rows x 4 int8 columns (or 8 int4
 * columns); its 16-byte chunk i holds rows 4l + i (l = 0..3), 4 bytes each.
 *
 * fp32 activations, weights decoded in registers (int_gemm_f32): a chunk widened to 16 int32
 * lanes is (row 4l + i, column j) in lane 4l + j; int8 is converted to float (vpmovsxbd +
 * vcvtdq2ps), int4 decoded by one vpermps per nibble through a 16-entry table (u - c4), and
 * multiplied with the 4 activations x[4g .. 4g+3] repeated in every 128-bit lane (one
 * vbroadcastf32x4). The zero point is folded out of the loop (y = s (sum x v - z sum x)), so a
 * group of 64 int8 weights costs 8 decode uops and 4 FMAs per row of x. Four accumulators per row
 * of x (one per chunk) are folded at the end of the panel by an in-lane horizontal add that
 * leaves the 16 rows in order. Up to F32_MT rows of x share each decode.
 *
 * Decoded panels (int_decode + f32_panel): the decode writes W^T exactly as the dense decode
 * ((v - z) * s, in-lane 4 x 4 transposes), and the micro-kernel multiplies 8 packed rows of x by
 * up to 32 weight rows: per column 2 loads, 8 broadcasts, 16 FMAs, no horizontal sums.
 *
 * Quantized activations: a whole block is one vector of 16 rows x 4 int8 (int4: two, the low
 * and the high nibbles); vpdpbusd (or vpmaddubsw + vpmaddwd) with the 4 activation bytes
 * broadcast accumulates 16 int32 sums, permuted back to row order in the epilogue.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QN_AI static inline __attribute__((always_inline))

/* Rows of x per pass of the fp32 kernel (4 accumulators each). */
#define F32_MT 4
/* Software prefetch distance of the weight stream (bytes): the hardware prefetcher alone left
 * a single stream well below the memory bandwidth on these VMs. */
#define F32_PREFETCH 4096
/* Rows of x per pass of the quantized kernels (one accumulator each). */
#define Q_MT 8

/* Per 128-bit lane: [sum a, sum b, sum c, sum d] of that lane's 4 floats. */
QN_AI __m512 i512_hadd4(__m512 a, __m512 b, __m512 c, __m512 d)
{
    __m512 ab = _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
    __m512 cd = _mm512_add_ps(_mm512_shuffle_ps(c, d, 0x88), _mm512_shuffle_ps(c, d, 0xDD));
    return _mm512_add_ps(_mm512_shuffle_ps(ab, cd, 0x88), _mm512_shuffle_ps(ab, cd, 0xDD));
}

/* Lane 4l + j of the result = v[4l + i]: a per-row value spread over the lanes of chunk i. */
QN_AI __m512 i512_chunk_pattern(__m512 v, int i)
{
    __m512i idx = _mm512_add_epi32(_mm512_set_epi32(12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0),
                                   _mm512_set1_epi32(i));
    return _mm512_permutexvar_ps(idx, v);
}

/* The 16 valid-row mask of panel p. */
QN_AI __mmask16 i512_rowmask(const qn_k_intw *w, size_t p)
{
    size_t n = w->rows - p * 16;
    return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
}

/* One group of an int8 panel for mt rows of x (xv: their activation patterns). */
QN_AI void f32_group8(const uint8_t *blk, const __m512 *xv, const size_t mt, __m512 acc[][4])
{
    int i;
    size_t m;
    _Pragma("GCC unroll 16")
    for (i = 0; i < 4; i++) {
        __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * i));
        __m512 d = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
        _Pragma("GCC unroll 16")
        for (m = 0; m < mt; m++)
            acc[m][i] = _mm512_fmadd_ps(d, xv[m], acc[m][i]);
    }
}

/*
 * One group of an int4 panel: low nibbles are columns 8g + j, high nibbles 8g + 4 + j. vpermps
 * reads only the low 4 bits of each index, so the table (tbl[u] = u - c4) decodes a nibble in
 * one instruction without masking.
 */
QN_AI void f32_group4(const uint8_t *blk, __m512 tbl, const __m512 *xlo, const __m512 *xhi, const size_t mt,
                      __m512 acc[][4])
{
    int i;
    size_t m;
    _Pragma("GCC unroll 16")
    for (i = 0; i < 4; i++) {
        __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * i)));
        __m512 dl = _mm512_permutexvar_ps(b, tbl);
        __m512 dh = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), tbl);
        _Pragma("GCC unroll 16")
        for (m = 0; m < mt; m++) {
            acc[m][i] = _mm512_fmadd_ps(dl, xlo[m], acc[m][i]);
            acc[m][i] = _mm512_fmadd_ps(dh, xhi[m], acc[m][i]);
        }
    }
}

/* Row sums of mt rows of x (starting at x) against panel p: res[m] holds the 16 rows in order. */
QN_AI void f32_tile(const qn_k_intw *w, size_t p, __m512 tbl, const float *x, size_t ldx, const size_t mt,
                    __m512 *res)
{
    __m512 acc[F32_MT][4];
    __m512 xa[F32_MT], xb[F32_MT];
    const uint8_t *blk = w->w + p * w->groups * 64;
    size_t m, g, cols = w->cols;
    int i;
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++)
        _Pragma("GCC unroll 16")
        for (i = 0; i < 4; i++)
            acc[m][i] = _mm512_setzero_ps();
    if (!w->int4) {
        size_t full = cols / 4, rem = cols % 4;
        for (g = 0; g < full; g++, blk += 64) {
            _mm_prefetch((const char *)blk + F32_PREFETCH, _MM_HINT_T0);
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++)
                xa[m] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + 4 * g));
            f32_group8(blk, xa, mt, acc);
        }
        if (rem) {
            __mmask8 k = (__mmask8)((1u << rem) - 1u);
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++)
                xa[m] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(k, x + m * ldx + 4 * g));
            f32_group8(blk, xa, mt, acc);
        }
    } else {
        size_t full = cols / 8, rem = cols % 8;
        for (g = 0; g < full; g++, blk += 64) {
            _mm_prefetch((const char *)blk + F32_PREFETCH, _MM_HINT_T0);
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++) {
                xa[m] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + 8 * g));
                xb[m] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + 8 * g + 4));
            }
            f32_group4(blk, tbl, xa, xb, mt, acc);
        }
        if (rem) {
            __mmask8 klo = (__mmask8)((1u << (rem < 4 ? rem : 4)) - 1u);
            __mmask8 khi = (__mmask8)(rem > 4 ? (1u << (rem - 4)) - 1u : 0u);
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++) {
                xa[m] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(klo, x + m * ldx + 8 * g));
                xb[m] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(khi, x + m * ldx + 8 * g + 4));
            }
            f32_group4(blk, tbl, xa, xb, mt, acc);
        }
    }
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++)
        res[m] = i512_hadd4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
}

/* M = 1 against two adjacent panels at once: two weight streams in flight instead of one. */
QN_AI void f32_pair1(const qn_k_intw *w, size_t p, __m512 tbl, const float *x, __m512 *res)
{
    __m512 acc[2][4], xa[1], xb[1];
    const size_t G = w->groups, cols = w->cols;
    const uint8_t *b0 = w->w + p * G * 64, *b1 = b0 + G * 64;
    size_t g;
    int i;
    _Pragma("GCC unroll 16")
    for (i = 0; i < 4; i++) {
        acc[0][i] = _mm512_setzero_ps();
        acc[1][i] = _mm512_setzero_ps();
    }
    if (!w->int4) {
        size_t full = cols / 4, rem = cols % 4;
        for (g = 0; g < full; g++, b0 += 64, b1 += 64) {
            _mm_prefetch((const char *)b0 + F32_PREFETCH, _MM_HINT_T0);
            _mm_prefetch((const char *)b1 + F32_PREFETCH, _MM_HINT_T0);
            xa[0] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + 4 * g));
            f32_group8(b0, xa, 1, &acc[0]);
            f32_group8(b1, xa, 1, &acc[1]);
        }
        if (rem) {
            xa[0] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps((__mmask8)((1u << rem) - 1u), x + 4 * g));
            f32_group8(b0, xa, 1, &acc[0]);
            f32_group8(b1, xa, 1, &acc[1]);
        }
    } else {
        size_t full = cols / 8, rem = cols % 8;
        for (g = 0; g < full; g++, b0 += 64, b1 += 64) {
            _mm_prefetch((const char *)b0 + F32_PREFETCH, _MM_HINT_T0);
            _mm_prefetch((const char *)b1 + F32_PREFETCH, _MM_HINT_T0);
            xa[0] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + 8 * g));
            xb[0] = _mm512_broadcast_f32x4(_mm_loadu_ps(x + 8 * g + 4));
            f32_group4(b0, tbl, xa, xb, 1, &acc[0]);
            f32_group4(b1, tbl, xa, xb, 1, &acc[1]);
        }
        if (rem) {
            __mmask8 klo = (__mmask8)((1u << (rem < 4 ? rem : 4)) - 1u);
            __mmask8 khi = (__mmask8)(rem > 4 ? (1u << (rem - 4)) - 1u : 0u);
            xa[0] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(klo, x + 8 * g));
            xb[0] = _mm512_broadcast_f32x4(_mm_maskz_loadu_ps(khi, x + 8 * g + 4));
            f32_group4(b0, tbl, xa, xb, 1, &acc[0]);
            f32_group4(b1, tbl, xa, xb, 1, &acc[1]);
        }
    }
    res[0] = i512_hadd4(acc[0][0], acc[0][1], acc[0][2], acc[0][3]);
    res[1] = i512_hadd4(acc[1][0], acc[1][1], acc[1][2], acc[1][3]);
}

/* y = b + s (sum - (zero - c0) xsum) for the rows of panel p. */
QN_AI void f32_store(const qn_k_intw *w, size_t p, __m512 sum, float xs, float c0, const float *bias, float *yrow)
{
    __mmask16 rm = i512_rowmask(w, p);
    __m512 zc = _mm512_sub_ps(_mm512_loadu_ps(w->zero + 16 * p), _mm512_set1_ps(c0));
    __m512 v = _mm512_sub_ps(sum, _mm512_mul_ps(zc, _mm512_set1_ps(xs)));
    v = _mm512_mul_ps(v, _mm512_loadu_ps(w->scale + 16 * p));
    if (bias)
        v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(rm, bias + 16 * p));
    _mm512_mask_storeu_ps(yrow + 16 * p, rm, v);
}

void qn_k_int_gemm_f32_avx512(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                              const float *xsum, const float *bias, float *y, size_t ldy)
{
    const float c0 = w->int4 ? w->c4 : 0.0f;
    const __m512 tbl = _mm512_sub_ps(
        _mm512_set_ps(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_ps(c0));
    size_t p = p0, m0, m;
    while (p < p1) {
        __m512 res[F32_MT];
        if (M == 1 && p + 1 < p1) {
            f32_pair1(w, p, tbl, x, res);
            f32_store(w, p, res[0], xsum[0], c0, bias, y);
            f32_store(w, p + 1, res[1], xsum[0], c0, bias, y);
            p += 2;
            continue;
        }
        for (m0 = 0; m0 < M; m0 += F32_MT) {
            size_t mt = M - m0 < F32_MT ? M - m0 : F32_MT;
            const float *xm = x + m0 * ldx;
            switch (mt) {
            case 1:
                f32_tile(w, p, tbl, xm, ldx, 1, res);
                break;
            case 2:
                f32_tile(w, p, tbl, xm, ldx, 2, res);
                break;
            case 3:
                f32_tile(w, p, tbl, xm, ldx, 3, res);
                break;
            default:
                f32_tile(w, p, tbl, xm, ldx, F32_MT, res);
                break;
            }
            for (m = 0; m < mt; m++)
                f32_store(w, p, res[m], xsum[m0 + m], c0, bias, y + (m0 + m) * ldy);
        }
        p++;
    }
}

/* In-lane 4 x 4 transpose: lane l of r[j] = [a[l][j], b[l][j], c[l][j], d[l][j]]. */
QN_AI void i512_transpose4(__m512 a, __m512 b, __m512 c, __m512 d, __m512 *r)
{
    __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
    __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
    r[0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    r[1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2)));
    r[2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
    r[3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3)));
}

void qn_k_int_decode_avx512(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo)
{
    size_t kg = QN_K_INT_KG(w->int4), c0 = kg * g0, c1 = kg * g1 < w->cols ? kg * g1 : w->cols, g, j;
    __m512 zv = _mm512_loadu_ps(w->zero + 16 * p), sv = _mm512_loadu_ps(w->scale + 16 * p);
    __m512 zp[4], sp[4], d[8], col[8];
    const uint8_t *blk = w->w + (p * w->groups + g0) * 64;
    const __m512i nib = _mm512_set1_epi32(15);
    int i;
    _Pragma("GCC unroll 16")
    for (i = 0; i < 4; i++) {
        zp[i] = i512_chunk_pattern(zv, i);
        sp[i] = i512_chunk_pattern(sv, i);
    }
    for (g = g0; g < g1; g++, blk += 64) {
        size_t cg = kg * g, n = c1 - cg < kg ? c1 - cg : kg;
        _Pragma("GCC unroll 16")
        for (i = 0; i < 4; i++) {
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(blk + 16 * i));
            if (!w->int4) {
                d[i] = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), zp[i]), sp[i]);
            } else {
                __m512i v = _mm512_cvtepu8_epi32(b);
                d[i] = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_and_si512(v, nib)), zp[i]), sp[i]);
                d[4 + i] = _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4)), zp[i]), sp[i]);
            }
        }
        i512_transpose4(d[0], d[1], d[2], d[3], col);
        if (w->int4)
            i512_transpose4(d[4], d[5], d[6], d[7], col + 4);
        for (j = 0; j < n; j++)
            _mm512_storeu_ps(out + (cg + j - c0) * ldo, col[j]);
    }
}

/* Row order of the int32 lanes of a whole block: lane d holds row 4 (d % 4) + d / 4. */
QN_AI __m512i i512_block_to_rows(__m512i a)
{
    const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    return _mm512_permutexvar_epi32(idx, a);
}

/* Epilogue of the quantized kernels (kernels.h order of operations). */
QN_AI void q_store(const qn_k_intw *w, size_t p, __m512i a, const qn_k_xq *xp, __m512 bv, int has_bias,
                   __mmask16 rm, float *yrow)
{
    __m512i cs = _mm512_loadu_si512((const void *)(w->colsum + 16 * p));
    __m512i zi = _mm512_loadu_si512((const void *)(w->zero_i + 16 * p));
    __m512i t = i512_block_to_rows(a);
    __m512 f = _mm512_mul_ps(_mm512_loadu_ps(w->scale + 16 * p), _mm512_set1_ps(xp->scale)), v;
    t = _mm512_sub_epi32(t, _mm512_mullo_epi32(_mm512_set1_epi32(xp->zero), cs));
    t = _mm512_sub_epi32(t, _mm512_mullo_epi32(zi, _mm512_set1_epi32(xp->sum)));
    v = _mm512_mul_ps(_mm512_cvtepi32_ps(t), f);
    if (has_bias)
        v = _mm512_add_ps(v, bv);
    _mm512_mask_storeu_ps(yrow + 16 * p, rm, v);
}

/* Four activation bytes as one int32, broadcast. */
QN_AI __m512i q_bcast(const uint8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm512_set1_epi32(v);
}

/* u8 x s8 products of 4 consecutive bytes added to the int32 lanes of acc (pairs in int16: u <= 127). */
QN_AI __m512i q_dot_bw(__m512i acc, __m512i u, __m512i s)
{
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
}

/*
 * The quantized kernels: Q_TILE(name, DOT, attrs) defines the always-inline tile of mt rows of x
 * (a constant after inlining, so the accumulators live in registers) against panel p.
 */
#define Q_TILE(NAME, DOT, ATTRS)                                                                              \
    static inline __attribute__((always_inline)) ATTRS void NAME(                                           \
        const qn_k_intw *w, size_t p, const uint8_t *xm, size_t ldxq, const qn_k_xq *xp, __m512 bv,           \
        int has_bias, __mmask16 rm, float *y, size_t ldy, size_t mt)                                          \
    {                                                                                                         \
        const __m512i nib = _mm512_set1_epi8(15);                                                             \
        const uint8_t *blk = w->w + p * w->groups * 64;                                                       \
        size_t m, g, G = w->groups;                                                                           \
        __m512i acc[Q_MT];                                                                                    \
        _Pragma("GCC unroll 16")                                                                              \
        for (m = 0; m < mt; m++)                                                                              \
            acc[m] = _mm512_setzero_si512();                                                                  \
        if (!w->int4) {                                                                                       \
            for (g = 0; g < G; g++, blk += 64) {                                                              \
                __m512i wv = _mm512_loadu_si512((const void *)blk);                                           \
                _Pragma("GCC unroll 16")                                                                      \
                for (m = 0; m < mt; m++)                                                                      \
                    acc[m] = DOT(acc[m], q_bcast(xm + m * ldxq + 4 * g), wv);                                 \
            }                                                                                                 \
        } else {                                                                                              \
            for (g = 0; g < G; g++, blk += 64) {                                                              \
                __m512i wv = _mm512_loadu_si512((const void *)blk);                                           \
                __m512i lo = _mm512_and_si512(wv, nib);                                                       \
                __m512i hi = _mm512_and_si512(_mm512_srli_epi16(wv, 4), nib);                                 \
                _Pragma("GCC unroll 16")                                                                      \
                for (m = 0; m < mt; m++) {                                                                    \
                    acc[m] = DOT(acc[m], q_bcast(xm + m * ldxq + 8 * g), lo);                                 \
                    acc[m] = DOT(acc[m], q_bcast(xm + m * ldxq + 8 * g + 4), hi);                             \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
        _Pragma("GCC unroll 16")                                                                              \
        for (m = 0; m < mt; m++)                                                                              \
            q_store(w, p, acc[m], xp + m, bv, has_bias, rm, y + m * ldy);                                     \
    }

/* The kernel: panels, then tiles of rows of x, each tile size a separate instance. */
#define Q_KERNEL_BODY(TILE)                                                                                   \
    do {                                                                                                      \
        size_t p, m0;                                                                                         \
        for (p = p0; p < p1; p++) {                                                                           \
            __mmask16 rm = i512_rowmask(w, p);                                                                \
            __m512 bv = bias ? _mm512_maskz_loadu_ps(rm, bias + 16 * p) : _mm512_setzero_ps();                \
            for (m0 = 0; m0 < M; m0 += Q_MT) {                                                                \
                size_t mt = M - m0 < Q_MT ? M - m0 : Q_MT;                                                    \
                const uint8_t *xm = xq + m0 * ldxq;                                                           \
                float *ym = y + m0 * ldy;                                                                     \
                int hb = bias != NULL;                                                                        \
                switch (mt) {                                                                                 \
                case 1: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 1); break;                         \
                case 2: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 2); break;                         \
                case 3: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 3); break;                         \
                case 4: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 4); break;                         \
                case 5: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 5); break;                         \
                case 6: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 6); break;                         \
                case 7: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, 7); break;                         \
                default: TILE(w, p, xm, ldxq, xp + m0, bv, hb, rm, ym, ldy, Q_MT); break;                     \
                }                                                                                             \
            }                                                                                                 \
        }                                                                                                     \
    } while (0)

Q_TILE(q_tile_bw, q_dot_bw, )

void qn_k_int_gemm_q_avx512(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                            const qn_k_xq *xp, const float *bias, float *y, size_t ldy)
{
    Q_KERNEL_BODY(q_tile_bw);
}

#define QN_TARGET_VNNI target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")
#define Q_DOT_VNNI(acc, u, s) _mm512_dpbusd_epi32((acc), (u), (s))
Q_TILE(q_tile_vnni, Q_DOT_VNNI, __attribute__((QN_TARGET_VNNI)))

void qn_k_int_gemm_q_vnni(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                          const qn_k_xq *xp, const float *bias, float *y, size_t ldy) __attribute__((QN_TARGET_VNNI));

void qn_k_int_gemm_q_vnni(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                          const qn_k_xq *xp, const float *bias, float *y, size_t ldy)
{
    Q_KERNEL_BODY(q_tile_vnni);
}

/* ------------------------------------------------------------------------------------------ */
/* f32_panel: a tile of 8 packed rows of x against a decoded panel of up to 32 weight rows     */
/* (one or two vectors): per column 2 loads, 8 broadcasts from one contiguous stream, 16 FMAs. */

#define P_MT 8

QN_AI void panel_tile(const float *panel, size_t ldp, const int two, __mmask16 k0, __mmask16 k1, size_t kc,
                      const float *xt, const float *bias, int init, float *y, size_t ldy, const size_t mt)
{
    __m512 a0[P_MT], a1[P_MT];
    size_t m, c;
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        if (init) {
            a0[m] = bias ? _mm512_maskz_loadu_ps(k0, bias) : _mm512_setzero_ps();
            a1[m] = bias && two ? _mm512_maskz_loadu_ps(k1, bias + 16) : _mm512_setzero_ps();
        } else {
            a0[m] = _mm512_maskz_loadu_ps(k0, y + m * ldy);
            a1[m] = two ? _mm512_maskz_loadu_ps(k1, y + m * ldy + 16) : _mm512_setzero_ps();
        }
    }
    for (c = 0; c < kc; c++) {
        const float *pc = panel + c * ldp, *xc = xt + 8 * c;
        __m512 w0 = _mm512_loadu_ps(pc), w1 = two ? _mm512_loadu_ps(pc + 16) : _mm512_setzero_ps();
        _Pragma("GCC unroll 16")
        for (m = 0; m < mt; m++) {
            __m512 xb = _mm512_set1_ps(xc[m]);
            a0[m] = _mm512_fmadd_ps(xb, w0, a0[m]);
            if (two)
                a1[m] = _mm512_fmadd_ps(xb, w1, a1[m]);
        }
    }
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        _mm512_mask_storeu_ps(y + m * ldy, k0, a0[m]);
        if (two)
            _mm512_mask_storeu_ps(y + m * ldy + 16, k1, a1[m]);
    }
}

#define PANEL_CASES(TWO)                                                                                      \
    switch (mt) {                                                                                             \
    case 1: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 1); break;                       \
    case 2: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 2); break;                       \
    case 3: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 3); break;                       \
    case 4: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 4); break;                       \
    case 5: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 5); break;                       \
    case 6: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 6); break;                       \
    case 7: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, 7); break;                       \
    default: panel_tile(panel, ldp, TWO, k0, k1, kc, xt, bias, init, ym, ldy, P_MT); break;                   \
    }

void qn_k_f32_panel_avx512(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                           size_t ldxp, const float *bias, int init, float *y, size_t ldy)
{
    __mmask16 k0 = nr >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << nr) - 1u);
    __mmask16 k1 = nr >= 32 ? (__mmask16)0xFFFF : (nr > 16 ? (__mmask16)((1u << (nr - 16)) - 1u) : (__mmask16)0);
    size_t m0;
    for (m0 = 0; m0 < M; m0 += P_MT) {
        size_t mt = M - m0 < P_MT ? M - m0 : P_MT;
        const float *xt = xp + (m0 / 8) * ldxp;
        float *ym = y + m0 * ldy;
        if (nr > 16) {
            PANEL_CASES(1)
        } else {
            PANEL_CASES(0)
        }
    }
}
