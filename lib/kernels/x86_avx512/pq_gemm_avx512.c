/*
 * libqnoise: the PQ GEMM kernels for AVX-512 F/BW/VL/DQ (contracts in kernels.h,
 * driver in lib/format/packed_pq.c).
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx512f -mavx512bw -mavx512vl -mavx512dq. Every helper
 * is static so no AVX-512 code can be merged into generic code by the linker.
 * No heap, no globals.
 *
 * pq_lut         tables for output rows in the lanes: 16 codebook entries per
 *                vector, eight vectors per pass, x broadcast, FMA in t order.
 * pq_lut_gather  16 consecutive output rows per vector: their codes of
 *                subspace jj are loaded once (16 bytes, or 32 for 16-bit
 *                codes), widened to 32-bit indices, and serve one gather per
 *                batch row m (up to 8 rows of x per pass, so one code load
 *                serves 8 gathers); 2 or 4 row vectors are in flight.
 * pq_blut        tables for the batch in the lanes: x transposed on the stack
 *                (t-major, 16 lanes), one broadcast of a codebook value and one
 *                FMA per (entry, t), eight entries (independent chains) per pass.
 * pq_blut_add    four output rows per step: their four codes are one 32-bit
 *                load (64-bit for 16-bit codes), each selects a W-float table
 *                entry that is one aligned vector load and one add.
 * pq_decode      one vector copy per block (bs 4, 8, 16), masked copies for
 *                other block sizes.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <string.h>

#if defined(__GNUC__)
#define PQG_INLINE static inline __attribute__((always_inline))
#else
#define PQG_INLINE static inline
#endif

/* Output rows ahead of the current block whose codes the gather kernel prefetches. */
#define PQG_PREFETCH 256

/* Fully unroll the small constant loops over registers (accumulator arrays must not live on the stack). */
#if defined(__clang__)
/* a full unroll of a loop whose trip count is only known in some inlined copies is a hint, not an error */
#pragma clang diagnostic ignored "-Wpass-failed"
#define PQG_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define PQG_UNROLL _Pragma("GCC unroll 16")
#else
#define PQG_UNROLL
#endif

/* ------------------------------------------------------------------------------------------ */
/* pq_lut                                                                                      */

/* QB vectors of 16 entries of one table: QB independent FMA chains in t order. */
PQG_INLINE void pql_pass(const float *xv, const float *c0, size_t ldct, size_t bs, float *l, const int QB)
{
    __m512 a[8], b = _mm512_set1_ps(xv[0]);
    size_t t;
    int e;
    PQG_UNROLL
    for (e = 0; e < QB; e++)
        a[e] = _mm512_mul_ps(b, _mm512_loadu_ps(c0 + 16 * e));
    for (t = 1; t < bs; t++) {
        const float *ctt = c0 + t * ldct;
        b = _mm512_set1_ps(xv[t]);
        PQG_UNROLL
        for (e = 0; e < QB; e++)
            a[e] = _mm512_fmadd_ps(b, _mm512_loadu_ps(ctt + 16 * e), a[e]);
    }
    PQG_UNROLL
    for (e = 0; e < QB; e++)
        _mm512_storeu_ps(l + 16 * e, a[e]);
}

void qn_k_pq_lut_avx512(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                        size_t k, size_t nj, float *lut, size_t ldl)
{
    const size_t nq = (k + 15) / 16;
    size_t jj, m, qb;
    for (jj = 0; jj < nj; jj++) {
        for (m = 0; m < M; m++) {
            const float *xv = x + m * ldx + jj * bs;
            float *l = lut + (jj * M + m) * ldl;
            for (qb = 0; qb + 8 <= nq; qb += 8)
                pql_pass(xv, ct + qb * 16, ldct, bs, l + qb * 16, 8);
            for (; qb + 4 <= nq; qb += 4)
                pql_pass(xv, ct + qb * 16, ldct, bs, l + qb * 16, 4);
            for (; qb < nq; qb++)
                pql_pass(xv, ct + qb * 16, ldct, bs, l + qb * 16, 1);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_lut_gather                                                                               */

/* 16 codes at offset off, widened to 32-bit indices. */
PQG_INLINE __m512i pqg_idx16(const void *codes, size_t off, const int wide)
{
    if (wide)
        return _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)codes + off)));
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)((const uint8_t *)codes + off)));
}

/*
 * Output rows [o, o + 16U) (masked to n) for the MG batch rows whose tables start at lut (row i
 * of the group at lut + i*ldl, subspace jj at + jj*ldj) and whose outputs start at y.
 */
PQG_INLINE void pqg_gather_block(const float *lut, size_t ldl, size_t ldj, const void *codes, size_t ldc,
                                 size_t nj, size_t o, size_t n, const float *bias, int init, float *y,
                                 size_t ldy, const int MG, const int U, const int wide)
{
    __m512 acc[8][4];
    __mmask16 mk[4];
    size_t jj;
    int i, u;
    PQG_UNROLL
    for (u = 0; u < U; u++) {
        size_t base = o + 16 * (size_t)u;
        size_t left = base < n ? n - base : 0;
        mk[u] = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
    }
    PQG_UNROLL
    for (i = 0; i < MG; i++)
        PQG_UNROLL
        for (u = 0; u < U; u++) {
            if (!init)
                acc[i][u] = _mm512_maskz_loadu_ps(mk[u], y + (size_t)i * ldy + o + 16 * (size_t)u);
            else if (bias)
                acc[i][u] = _mm512_maskz_loadu_ps(mk[u], bias + o + 16 * (size_t)u);
            else
                acc[i][u] = _mm512_setzero_ps();
        }
    for (jj = 0; jj < nj; jj++) {
        const float *l = lut + jj * ldj;
        /* codes stream from memory when the weight is cold: fetch this subspace's row ahead (an
         * address past the end is harmless: prefetches do not fault) */
        _mm_prefetch((const char *)((uintptr_t)codes + (jj * ldc + o + PQG_PREFETCH) * (wide ? 2u : 1u)), _MM_HINT_T0);
        __m512i ix[4];
        PQG_UNROLL
        for (u = 0; u < U; u++)
            ix[u] = pqg_idx16(codes, jj * ldc + o + 16 * (size_t)u, wide);
        PQG_UNROLL
        for (i = 0; i < MG; i++)
            PQG_UNROLL
            for (u = 0; u < U; u++)
                acc[i][u] = _mm512_add_ps(acc[i][u], _mm512_i32gather_ps(ix[u], l + (size_t)i * ldl, 4));
    }
    PQG_UNROLL
    for (i = 0; i < MG; i++)
        PQG_UNROLL
        for (u = 0; u < U; u++)
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + o + 16 * (size_t)u, mk[u], acc[i][u]);
}

PQG_INLINE void pqg_gather_rows(const float *lut, size_t ldl, size_t ldj, const void *codes, size_t ldc,
                                size_t nj, size_t n, const float *bias, int init, float *y, size_t ldy,
                                const int MG, const int U, const int wide)
{
    size_t o;
    for (o = 0; o < n; o += 16 * (size_t)U)
        pqg_gather_block(lut, ldl, ldj, codes, ldc, nj, o, n, bias, init, y, ldy, MG, U, wide);
}

static void pqg_gather_group(const float *lut, size_t ldl, size_t ldj, const void *codes, size_t ldc,
                             size_t nj, size_t n, const float *bias, int init, float *y, size_t ldy,
                             size_t mg, const int wide)
{
    switch (mg) {
    case 1:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 1, 4, wide);
        break;
    case 2:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 2, 4, wide);
        break;
    case 3:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 3, 2, wide);
        break;
    case 4:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 4, 2, wide);
        break;
    case 5:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 5, 2, wide);
        break;
    case 6:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 6, 2, wide);
        break;
    case 7:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 7, 2, wide);
        break;
    default:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 8, 2, wide);
        break;
    }
}

void qn_k_pq_lut_gather_avx512(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                               int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                               size_t ldy)
{
    size_t m0;
    for (m0 = 0; m0 < M; m0 += 8) {
        size_t mg = M - m0 < 8 ? M - m0 : 8;
        if (wide)
            pqg_gather_group(lut + m0 * ldl, ldl, M * ldl, codes, ldc, nj, n, bias, init, y + m0 * ldy, ldy, mg, 1);
        else
            pqg_gather_group(lut + m0 * ldl, ldl, M * ldl, codes, ldc, nj, n, bias, init, y + m0 * ldy, ldy, mg, 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_blut                                                                                     */

/* Table entries per pass of pqb_block16 / pqb_block8: independent FMA chains to hide the latency. */
#define PQB_QE 8

/*
 * Entries of one subspace for the t-block [t0, t0 + tb) of the W-lane table bl (k entries):
 * xt[t*16 + m] holds x of lane m at t0 + t. first: start from 0, else add to bl.
 * TB > 0 is the block length as a constant (xt kept in registers), 0 reads it from tb.
 * PQB_QE entries per pass, each its own chain of FMAs in t order.
 */
PQG_INLINE void pqb_block16(const float *xt, const float *c, size_t bs, size_t t0, size_t tb, const int TB,
                            size_t k, float *bl, int first)
{
    __m512 xv[16], a[PQB_QE];
    const size_t n_t = TB > 0 ? (size_t)TB : tb;
    size_t q, t;
    int e;
    if (TB > 0)
        PQG_UNROLL
        for (t = 0; t < (size_t)TB; t++)
            xv[t] = _mm512_load_ps(xt + t * 16);
    for (q = 0; q + PQB_QE <= k; q += PQB_QE) {
        const float *cq = c + q * bs + t0;
        PQG_UNROLL
        for (e = 0; e < PQB_QE; e++)
            a[e] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(bl + (q + (size_t)e) * 16);
        PQG_UNROLL
        for (t = 0; t < n_t; t++) {
            __m512 xx = TB > 0 ? xv[t] : _mm512_load_ps(xt + t * 16);
            PQG_UNROLL
            for (e = 0; e < PQB_QE; e++)
                a[e] = _mm512_fmadd_ps(_mm512_set1_ps(cq[(size_t)e * bs + t]), xx, a[e]);
        }
        PQG_UNROLL
        for (e = 0; e < PQB_QE; e++)
            _mm512_storeu_ps(bl + (q + (size_t)e) * 16, a[e]);
    }
    for (; q < k; q++) {
        const float *c0 = c + q * bs + t0;
        __m512 a0 = first ? _mm512_setzero_ps() : _mm512_loadu_ps(bl + q * 16);
        for (t = 0; t < n_t; t++)
            a0 = _mm512_fmadd_ps(_mm512_set1_ps(c0[t]), _mm512_load_ps(xt + t * 16), a0);
        _mm512_storeu_ps(bl + q * 16, a0);
    }
}

/* The same for 8 lanes (xt rows still 16 floats apart; lanes 8..15 unused). */
PQG_INLINE void pqb_block8(const float *xt, const float *c, size_t bs, size_t t0, size_t tb, const int TB,
                           size_t k, float *bl, int first)
{
    __m256 xv[16], a[PQB_QE];
    const size_t n_t = TB > 0 ? (size_t)TB : tb;
    size_t q, t;
    int e;
    if (TB > 0)
        PQG_UNROLL
        for (t = 0; t < (size_t)TB; t++)
            xv[t] = _mm256_load_ps(xt + t * 16);
    for (q = 0; q + PQB_QE <= k; q += PQB_QE) {
        const float *cq = c + q * bs + t0;
        PQG_UNROLL
        for (e = 0; e < PQB_QE; e++)
            a[e] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(bl + (q + (size_t)e) * 8);
        PQG_UNROLL
        for (t = 0; t < n_t; t++) {
            __m256 xx = TB > 0 ? xv[t] : _mm256_load_ps(xt + t * 16);
            PQG_UNROLL
            for (e = 0; e < PQB_QE; e++)
                a[e] = _mm256_mask_fmadd_ps(_mm256_set1_ps(cq[(size_t)e * bs + t]), 0xff, xx, a[e]);
        }
        PQG_UNROLL
        for (e = 0; e < PQB_QE; e++)
            _mm256_storeu_ps(bl + (q + (size_t)e) * 8, a[e]);
    }
    for (; q < k; q++) {
        const float *c0 = c + q * bs + t0;
        __m256 a0 = first ? _mm256_setzero_ps() : _mm256_loadu_ps(bl + q * 8);
        for (t = 0; t < n_t; t++)
            a0 = _mm256_mask_fmadd_ps(_mm256_set1_ps(c0[t]), 0xff, _mm256_load_ps(xt + t * 16), a0);
        _mm256_storeu_ps(bl + q * 8, a0);
    }
}

void qn_k_pq_blut_avx512(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                         size_t nj, size_t W, float *blut)
{
    _Alignas(64) float xt[16 * 16];
    size_t jj, t0, t, m;
    memset(xt, 0, sizeof xt); /* lanes mg..15 stay zero */
    for (jj = 0; jj < nj; jj++) {
        float *bl = blut + jj * k * W;
        for (t0 = 0; t0 < bs; t0 += 16) {
            size_t tb = bs - t0 < 16 ? bs - t0 : 16;
            int first = t0 == 0;
            for (m = 0; m < mg; m++) {
                const float *xr = x + m * ldx + jj * bs + t0;
                for (t = 0; t < tb; t++)
                    xt[t * 16 + m] = xr[t];
            }
            if (W == 16) {
                if (tb == 16)
                    pqb_block16(xt, c, bs, t0, tb, 16, k, bl, first);
                else if (tb == 8)
                    pqb_block16(xt, c, bs, t0, tb, 8, k, bl, first);
                else if (tb == 4)
                    pqb_block16(xt, c, bs, t0, tb, 4, k, bl, first);
                else
                    pqb_block16(xt, c, bs, t0, tb, 0, k, bl, first);
            } else {
                if (tb == 16)
                    pqb_block8(xt, c, bs, t0, tb, 16, k, bl, first);
                else if (tb == 8)
                    pqb_block8(xt, c, bs, t0, tb, 8, k, bl, first);
                else if (tb == 4)
                    pqb_block8(xt, c, bs, t0, tb, 4, k, bl, first);
                else
                    pqb_block8(xt, c, bs, t0, tb, 0, k, bl, first);
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_blut_add                                                                                 */

/* Four codes of consecutive rows at codes + off, as a 64-bit word of 8- or 16-bit fields. */
PQG_INLINE uint64_t pqa_codes4(const void *codes, size_t off, const int wide)
{
    uint64_t w = 0;
    if (wide) {
        memcpy(&w, (const uint16_t *)codes + off, 8);
    } else {
        uint32_t v;
        memcpy(&v, (const uint8_t *)codes + off, 4);
        w = v;
    }
    return w;
}

PQG_INLINE size_t pqa_code1(const void *codes, size_t off, const int wide)
{
    return wide ? ((const uint16_t *)codes)[off] : ((const uint8_t *)codes)[off];
}

PQG_INLINE void pqa_add16(const float *blut, size_t k, const void *codes, size_t ldc, size_t nj, size_t n,
                          int init, float *acc, const int wide)
{
    const unsigned sh = wide ? 16u : 8u;
    const uint64_t fm = wide ? 0xffffu : 0xffu;
    const size_t ldj = k * 16;
    size_t o, jj;
    for (o = 0; o + 4 <= n; o += 4) {
        float *a = acc + o * 16;
        const float *bl = blut;
        __m512 a0 = init ? _mm512_setzero_ps() : _mm512_loadu_ps(a);
        __m512 a1 = init ? _mm512_setzero_ps() : _mm512_loadu_ps(a + 16);
        __m512 a2 = init ? _mm512_setzero_ps() : _mm512_loadu_ps(a + 32);
        __m512 a3 = init ? _mm512_setzero_ps() : _mm512_loadu_ps(a + 48);
        for (jj = 0; jj < nj; jj++, bl += ldj) {
            uint64_t w = pqa_codes4(codes, jj * ldc + o, wide);
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(bl + (size_t)(w & fm) * 16));
            a1 = _mm512_add_ps(a1, _mm512_loadu_ps(bl + (size_t)((w >> sh) & fm) * 16));
            a2 = _mm512_add_ps(a2, _mm512_loadu_ps(bl + (size_t)((w >> (2 * sh)) & fm) * 16));
            a3 = _mm512_add_ps(a3, _mm512_loadu_ps(bl + (size_t)((w >> (3 * sh)) & fm) * 16));
        }
        _mm512_storeu_ps(a, a0);
        _mm512_storeu_ps(a + 16, a1);
        _mm512_storeu_ps(a + 32, a2);
        _mm512_storeu_ps(a + 48, a3);
    }
    for (; o < n; o++) {
        float *a = acc + o * 16;
        __m512 a0 = init ? _mm512_setzero_ps() : _mm512_loadu_ps(a);
        for (jj = 0; jj < nj; jj++)
            a0 = _mm512_add_ps(a0, _mm512_loadu_ps(blut + jj * ldj + pqa_code1(codes, jj * ldc + o, wide) * 16));
        _mm512_storeu_ps(a, a0);
    }
}

PQG_INLINE void pqa_add8(const float *blut, size_t k, const void *codes, size_t ldc, size_t nj, size_t n,
                         int init, float *acc, const int wide)
{
    const unsigned sh = wide ? 16u : 8u;
    const uint64_t fm = wide ? 0xffffu : 0xffu;
    const size_t ldj = k * 8;
    size_t o, jj;
    for (o = 0; o + 4 <= n; o += 4) {
        float *a = acc + o * 8;
        const float *bl = blut;
        __m256 a0 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a);
        __m256 a1 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a + 8);
        __m256 a2 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a + 16);
        __m256 a3 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a + 24);
        for (jj = 0; jj < nj; jj++, bl += ldj) {
            uint64_t w = pqa_codes4(codes, jj * ldc + o, wide);
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(bl + (size_t)(w & fm) * 8));
            a1 = _mm256_add_ps(a1, _mm256_loadu_ps(bl + (size_t)((w >> sh) & fm) * 8));
            a2 = _mm256_add_ps(a2, _mm256_loadu_ps(bl + (size_t)((w >> (2 * sh)) & fm) * 8));
            a3 = _mm256_add_ps(a3, _mm256_loadu_ps(bl + (size_t)((w >> (3 * sh)) & fm) * 8));
        }
        _mm256_storeu_ps(a, a0);
        _mm256_storeu_ps(a + 8, a1);
        _mm256_storeu_ps(a + 16, a2);
        _mm256_storeu_ps(a + 24, a3);
    }
    for (; o < n; o++) {
        float *a = acc + o * 8;
        __m256 a0 = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a);
        for (jj = 0; jj < nj; jj++)
            a0 = _mm256_add_ps(a0, _mm256_loadu_ps(blut + jj * ldj + pqa_code1(codes, jj * ldc + o, wide) * 8));
        _mm256_storeu_ps(a, a0);
    }
}

void qn_k_pq_blut_add_avx512(const float *blut, size_t k, size_t W, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, int init, float *acc)
{
    if (W == 16) {
        if (wide)
            pqa_add16(blut, k, codes, ldc, nj, n, init, acc, 1);
        else
            pqa_add16(blut, k, codes, ldc, nj, n, init, acc, 0);
    } else {
        if (wide)
            pqa_add8(blut, k, codes, ldc, nj, n, init, acc, 1);
        else
            pqa_add8(blut, k, codes, ldc, nj, n, init, acc, 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_decode                                                                                   */

PQG_INLINE void pqd_rows(const void *codes, size_t ldc, const float *c, size_t bs, size_t nr, size_t nj,
                         float *panel, size_t ldp, const int BS, const int wide)
{
    size_t r, jj, t0;
    for (r = 0; r < nr; r++) {
        float *row = panel + r * ldp;
        for (jj = 0; jj < nj; jj++) {
            const float *e = c + pqa_code1(codes, jj * ldc + r, wide) * bs;
            float *d = row + jj * bs;
            if (BS == 4) {
                _mm_storeu_ps(d, _mm_loadu_ps(e));
            } else if (BS == 8) {
                _mm256_storeu_ps(d, _mm256_loadu_ps(e));
            } else if (BS == 16) {
                _mm512_storeu_ps(d, _mm512_loadu_ps(e));
            } else {
                for (t0 = 0; t0 < bs; t0 += 16) {
                    size_t left = bs - t0;
                    __mmask16 mk = left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1u);
                    _mm512_mask_storeu_ps(d + t0, mk, _mm512_maskz_loadu_ps(mk, e + t0));
                }
            }
        }
    }
}

PQG_INLINE void pqd_dispatch(const void *codes, size_t ldc, const float *c, size_t bs, size_t nr, size_t nj,
                             float *panel, size_t ldp, const int wide)
{
    if (bs == 8)
        pqd_rows(codes, ldc, c, bs, nr, nj, panel, ldp, 8, wide);
    else if (bs == 4)
        pqd_rows(codes, ldc, c, bs, nr, nj, panel, ldp, 4, wide);
    else if (bs == 16)
        pqd_rows(codes, ldc, c, bs, nr, nj, panel, ldp, 16, wide);
    else
        pqd_rows(codes, ldc, c, bs, nr, nj, panel, ldp, 0, wide);
}

void qn_k_pq_decode_avx512(const void *codes, size_t ldc, int wide, const float *c, size_t bs, size_t nr,
                           size_t nj, float *panel, size_t ldp)
{
    if (wide)
        pqd_dispatch(codes, ldc, c, bs, nr, nj, panel, ldp, 1);
    else
        pqd_dispatch(codes, ldc, c, bs, nr, nj, panel, ldp, 0);
}
