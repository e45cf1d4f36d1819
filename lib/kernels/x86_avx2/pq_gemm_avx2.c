/*
 * libqnoise: the PQ GEMM kernels for AVX2 + FMA (contracts in kernels.h, driver in
 * lib/format/packed_pq.c).
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx2 -mfma. Every helper is static so no AVX2 code can
 * be merged into generic code by the linker. No heap, no globals.
 *
 * The same shapes as the AVX-512 twin with 8-lane vectors:
 * pq_lut         8 codebook entries per vector, eight vectors per pass.
 * pq_lut_gather  8 consecutive output rows per vector; one code load (8 bytes,
 *                or 16 for 16-bit codes) serves one gather per batch row, up to
 *                4 batch rows per pass; 2 or 4 row vectors in flight. Partial
 *                row blocks use maskload/maskstore for y and bias.
 * pq_blut        x transposed on the stack, one broadcast and one FMA per
 *                (entry, t) and 8 lanes (two vectors for 16 lanes), eight
 *                independent FMA chains per pass.
 * pq_blut_add    four output rows per step, one 32/64-bit load of their codes,
 *                one or two vector loads and adds per row.
 * pq_decode      vector copies for bs 4, 8 and 16, memcpy otherwise.
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

/* QB vectors of 8 entries of one table: QB independent FMA chains in t order. */
PQG_INLINE void pql_pass(const float *xv, const float *c0, size_t ldct, size_t bs, float *l, const int QB)
{
    __m256 a[8], b = _mm256_set1_ps(xv[0]);
    size_t t;
    int e;
    PQG_UNROLL
    for (e = 0; e < QB; e++)
        a[e] = _mm256_mul_ps(b, _mm256_loadu_ps(c0 + 8 * e));
    for (t = 1; t < bs; t++) {
        const float *ctt = c0 + t * ldct;
        b = _mm256_set1_ps(xv[t]);
        PQG_UNROLL
        for (e = 0; e < QB; e++)
            a[e] = _mm256_fmadd_ps(b, _mm256_loadu_ps(ctt + 8 * e), a[e]);
    }
    PQG_UNROLL
    for (e = 0; e < QB; e++)
        _mm256_storeu_ps(l + 8 * e, a[e]);
}

void qn_k_pq_lut_avx2(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                      size_t k, size_t nj, float *lut, size_t ldl)
{
    const size_t nq = (k + 15) / 16 * 2; /* 8-float vectors up to round16(k) */
    size_t jj, m, qb;
    for (jj = 0; jj < nj; jj++) {
        for (m = 0; m < M; m++) {
            const float *xv = x + m * ldx + jj * bs;
            float *l = lut + (jj * M + m) * ldl;
            for (qb = 0; qb + 8 <= nq; qb += 8)
                pql_pass(xv, ct + qb * 8, ldct, bs, l + qb * 8, 8);
            for (; qb < nq; qb += 2)
                pql_pass(xv, ct + qb * 8, ldct, bs, l + qb * 8, 2);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_lut_gather                                                                               */

/* 8 codes at offset off, widened to 32-bit indices. */
PQG_INLINE __m256i pqg_idx8(const void *codes, size_t off, const int wide)
{
    if (wide)
        return _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)codes + off)));
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)((const uint8_t *)codes + off)));
}

/* Lane mask (all ones in lanes < left) for maskload/maskstore. */
PQG_INLINE __m256i pqg_mask8(size_t left)
{
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int l = left >= 8 ? 8 : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(l), lanes);
}

PQG_INLINE void pqg_gather_block(const float *lut, size_t ldl, size_t ldj, const void *codes, size_t ldc,
                                 size_t nj, size_t o, size_t n, const float *bias, int init, float *y,
                                 size_t ldy, const int MG, const int U, const int wide)
{
    __m256 acc[4][4];
    __m256i mk[4];
    size_t jj;
    int i, u;
    PQG_UNROLL
    for (u = 0; u < U; u++) {
        size_t base = o + 8 * (size_t)u;
        mk[u] = pqg_mask8(base < n ? n - base : 0);
    }
    PQG_UNROLL
    for (i = 0; i < MG; i++)
        PQG_UNROLL
        for (u = 0; u < U; u++) {
            if (!init)
                acc[i][u] = _mm256_maskload_ps(y + (size_t)i * ldy + o + 8 * (size_t)u, mk[u]);
            else if (bias)
                acc[i][u] = _mm256_maskload_ps(bias + o + 8 * (size_t)u, mk[u]);
            else
                acc[i][u] = _mm256_setzero_ps();
        }
    for (jj = 0; jj < nj; jj++) {
        const float *l = lut + jj * ldj;
        /* codes stream from memory when the weight is cold: fetch this subspace's row ahead (an
         * address past the end is harmless: prefetches do not fault) */
        _mm_prefetch((const char *)((uintptr_t)codes + (jj * ldc + o + PQG_PREFETCH) * (wide ? 2u : 1u)), _MM_HINT_T0);
        __m256i ix[4];
        PQG_UNROLL
        for (u = 0; u < U; u++)
            ix[u] = pqg_idx8(codes, jj * ldc + o + 8 * (size_t)u, wide);
        PQG_UNROLL
        for (i = 0; i < MG; i++)
            PQG_UNROLL
            for (u = 0; u < U; u++)
                acc[i][u] = _mm256_add_ps(acc[i][u], _mm256_i32gather_ps(l + (size_t)i * ldl, ix[u], 4));
    }
    PQG_UNROLL
    for (i = 0; i < MG; i++)
        PQG_UNROLL
        for (u = 0; u < U; u++)
            _mm256_maskstore_ps(y + (size_t)i * ldy + o + 8 * (size_t)u, mk[u], acc[i][u]);
}

PQG_INLINE void pqg_gather_rows(const float *lut, size_t ldl, size_t ldj, const void *codes, size_t ldc,
                                size_t nj, size_t n, const float *bias, int init, float *y, size_t ldy,
                                const int MG, const int U, const int wide)
{
    size_t o;
    for (o = 0; o < n; o += 8 * (size_t)U)
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
    default:
        pqg_gather_rows(lut, ldl, ldj, codes, ldc, nj, n, bias, init, y, ldy, 4, 2, wide);
        break;
    }
}

void qn_k_pq_lut_gather_avx2(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                             size_t ldy)
{
    size_t m0;
    for (m0 = 0; m0 < M; m0 += 4) {
        size_t mg = M - m0 < 4 ? M - m0 : 4;
        if (wide)
            pqg_gather_group(lut + m0 * ldl, ldl, M * ldl, codes, ldc, nj, n, bias, init, y + m0 * ldy, ldy, mg, 1);
        else
            pqg_gather_group(lut + m0 * ldl, ldl, M * ldl, codes, ldc, nj, n, bias, init, y + m0 * ldy, ldy, mg, 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_blut                                                                                     */

/*
 * Entries of one subspace for the t-block [t0, t0 + tb) of the table bl (k entries, NV vectors
 * of 8 lanes each): xt[t*16 + m] holds x of lane m at t0 + t. first: start from 0, else add to
 * bl. QE entries per pass (QE * NV = 8 independent FMA chains), the rest one at a time.
 */
PQG_INLINE void pqb_block(const float *xt, const float *c, size_t bs, size_t t0, size_t tb, size_t k, float *bl,
                          int first, const int NV, const int QE)
{
    const size_t W = 8 * (size_t)NV;
    __m256 a[8];
    size_t q, t;
    int v, e;
    for (q = 0; q + (size_t)QE <= k; q += (size_t)QE) {
        const float *cq = c + q * bs + t0;
        PQG_UNROLL
        for (e = 0; e < QE; e++)
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                a[e * NV + v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(bl + (q + (size_t)e) * W + 8 * (size_t)v);
        for (t = 0; t < tb; t++) {
            __m256 xx[2];
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                xx[v] = _mm256_load_ps(xt + t * 16 + 8 * (size_t)v);
            PQG_UNROLL
            for (e = 0; e < QE; e++) {
                __m256 cc = _mm256_set1_ps(cq[(size_t)e * bs + t]);
                PQG_UNROLL
                for (v = 0; v < NV; v++)
                    a[e * NV + v] = _mm256_fmadd_ps(cc, xx[v], a[e * NV + v]);
            }
        }
        PQG_UNROLL
        for (e = 0; e < QE; e++)
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                _mm256_storeu_ps(bl + (q + (size_t)e) * W + 8 * (size_t)v, a[e * NV + v]);
    }
    for (; q < k; q++) {
        const float *cq = c + q * bs + t0;
        PQG_UNROLL
        for (v = 0; v < NV; v++)
            a[v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(bl + q * W + 8 * (size_t)v);
        for (t = 0; t < tb; t++) {
            __m256 cc = _mm256_set1_ps(cq[t]);
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                a[v] = _mm256_fmadd_ps(cc, _mm256_load_ps(xt + t * 16 + 8 * (size_t)v), a[v]);
        }
        PQG_UNROLL
        for (v = 0; v < NV; v++)
            _mm256_storeu_ps(bl + q * W + 8 * (size_t)v, a[v]);
    }
}

void qn_k_pq_blut_avx2(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                       size_t nj, size_t W, float *blut)
{
    _Alignas(64) float xt[16 * 16];
    size_t jj, t0, t, m;
    memset(xt, 0, sizeof xt); /* lanes mg..15 stay zero */
    for (jj = 0; jj < nj; jj++) {
        float *bl = blut + jj * k * W;
        for (t0 = 0; t0 < bs; t0 += 16) {
            size_t tb = bs - t0 < 16 ? bs - t0 : 16;
            for (m = 0; m < mg; m++) {
                const float *xr = x + m * ldx + jj * bs + t0;
                for (t = 0; t < tb; t++)
                    xt[t * 16 + m] = xr[t];
            }
            if (W == 16)
                pqb_block(xt, c, bs, t0, tb, k, bl, t0 == 0, 2, 4);
            else
                pqb_block(xt, c, bs, t0, tb, k, bl, t0 == 0, 1, 8);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_blut_add                                                                                 */

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

/* NV vectors of 8 lanes per row (W = 8 NV). */
PQG_INLINE void pqa_add(const float *blut, size_t k, const void *codes, size_t ldc, size_t nj, size_t n,
                        int init, float *acc, const int NV, const int wide)
{
    const unsigned sh = wide ? 16u : 8u;
    const uint64_t fm = wide ? 0xffffu : 0xffu;
    const size_t W = 8 * (size_t)NV, ldj = k * W;
    size_t o, jj;
    int v, r;
    for (o = 0; o + 4 <= n; o += 4) {
        float *a = acc + o * W;
        const float *bl = blut;
        __m256 s[4][2];
        PQG_UNROLL
        for (r = 0; r < 4; r++)
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                s[r][v] = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a + (size_t)r * W + 8 * (size_t)v);
        for (jj = 0; jj < nj; jj++, bl += ldj) {
            uint64_t w = pqa_codes4(codes, jj * ldc + o, wide);
            PQG_UNROLL
            for (r = 0; r < 4; r++) {
                const float *e = bl + (size_t)((w >> (sh * (unsigned)r)) & fm) * W;
                PQG_UNROLL
                for (v = 0; v < NV; v++)
                    s[r][v] = _mm256_add_ps(s[r][v], _mm256_loadu_ps(e + 8 * (size_t)v));
            }
        }
        PQG_UNROLL
        for (r = 0; r < 4; r++)
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                _mm256_storeu_ps(a + (size_t)r * W + 8 * (size_t)v, s[r][v]);
    }
    for (; o < n; o++) {
        float *a = acc + o * W;
        __m256 s[2];
        PQG_UNROLL
        for (v = 0; v < NV; v++)
            s[v] = init ? _mm256_setzero_ps() : _mm256_loadu_ps(a + 8 * (size_t)v);
        for (jj = 0; jj < nj; jj++) {
            const float *e = blut + jj * ldj + pqa_code1(codes, jj * ldc + o, wide) * W;
            PQG_UNROLL
            for (v = 0; v < NV; v++)
                s[v] = _mm256_add_ps(s[v], _mm256_loadu_ps(e + 8 * (size_t)v));
        }
        PQG_UNROLL
        for (v = 0; v < NV; v++)
            _mm256_storeu_ps(a + 8 * (size_t)v, s[v]);
    }
}

void qn_k_pq_blut_add_avx2(const float *blut, size_t k, size_t W, const void *codes, size_t ldc, int wide,
                           size_t nj, size_t n, int init, float *acc)
{
    if (W == 16) {
        if (wide)
            pqa_add(blut, k, codes, ldc, nj, n, init, acc, 2, 1);
        else
            pqa_add(blut, k, codes, ldc, nj, n, init, acc, 2, 0);
    } else {
        if (wide)
            pqa_add(blut, k, codes, ldc, nj, n, init, acc, 1, 1);
        else
            pqa_add(blut, k, codes, ldc, nj, n, init, acc, 1, 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* pq_decode                                                                                   */

PQG_INLINE void pqd_rows(const void *codes, size_t ldc, const float *c, size_t bs, size_t nr, size_t nj,
                         float *panel, size_t ldp, const int BS, const int wide)
{
    size_t r, jj;
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
                _mm256_storeu_ps(d, _mm256_loadu_ps(e));
                _mm256_storeu_ps(d + 8, _mm256_loadu_ps(e + 8));
            } else {
                memcpy(d, e, bs * sizeof(float));
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

void qn_k_pq_decode_avx2(const void *codes, size_t ldc, int wide, const float *c, size_t bs, size_t nr,
                         size_t nj, float *panel, size_t ldp)
{
    if (wide)
        pqd_dispatch(codes, ldc, c, bs, nr, nj, panel, ldp, 1);
    else
        pqd_dispatch(codes, ldc, c, bs, nr, nj, panel, ldp, 0);
}
