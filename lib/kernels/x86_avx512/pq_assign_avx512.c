/*
 * libqnoise: the PQ kernels for AVX-512 F/BW/VL/DQ: assignment with
 * precomputed centroid norms (pq_assign) and codebook accumulation
 * (codebook_accumulate, at the end of the file).
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx512f -mavx512bw -mavx512vl -mavx512dq.
 * Every helper is static so no AVX-512 code can be merged into generic code
 * by the linker. No heap, no globals.
 *
 * Contract: qn_k_pq_assign_fn in kernels.h. For each row x the kernel picks
 * the j minimising d_j = c_norms[j] - 2 x.c_j (strict <, lowest index on exact
 * ties) and writes max(0, ||x||^2 + min_j d_j) to dists when asked.
 *
 * Main path (dim <= PQA_MAXDIM): INPUT ROWS in the lanes.
 *   A tile is 16 consecutive rows of x transposed on the stack,
 *   xt[tile][t][lane] = x[(i0 + tile*16 + lane)*ldx + t] (0 for rows past n;
 *   their results are dropped). One pass over the codebook serves up to PQA_NT
 *   tiles (64 rows): the codebook (k*dim floats + k norms) is streamed from
 *   L1/L2 with broadcasts of c[j*dim+t] and c_norms[j], so per centroid and
 *   per t there is one broadcast and one FMA per tile, and every tile keeps,
 *   per lane, its running minimum and the index that reached it (a compare
 *   and masked moves). Centroids are unrolled by two; no horizontal reduction
 *   is ever needed because each lane is its own row. dims 4, 8, 16 and 32 get
 *   unrolled copies of the t loop.
 *   The tiles hold 2x (exact scaling), so each lane computes d_j directly:
 *   the accumulator starts at c_norms[j] (a broadcast from memory) and
 *   subtracts (2x[t]) * c[t] by fused negative multiply-add in t order, so no
 *   zeroing and no final combine step are needed; dists = max(0,
 *   ||2x||^2 / 4 + d_min) (the factor 1/4 is exact). Every centroid goes through exactly the same
 *   operations in every lane, so bit-identical centroids give bit-identical
 *   values and, since centroids are visited in increasing j with a strict <,
 *   the lowest index wins on every ISA. Rounding differs from the scalar oracle only by FMA: the chosen
 *   centroid's true distance is within a relative 1e-5 of the true minimum
 *   (plus the cancellation floor of the fused formula, see kernels.h).
 *
 * Large dim (> PQA_MAXDIM, the tile would not fit the stack buffer): one row
 *   against one centroid at a time, the dot vectorised across dim (fixed
 *   horizontal sum), then d = norm - 2*dot and a scalar strict <.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h> /* INFINITY (a constant; no libm call) */

#define PQA_W 16                        /* lanes per vector = rows per tile */
#define PQA_NT 4                        /* most tiles per pass over the codebook */
#define PQA_BUF 4096                     /* floats in the transposed-x buffer (16 KiB) */
#define PQA_MAXDIM (PQA_BUF / PQA_W)     /* largest dim with at least one tile */

/* Unroll the t loop (fully when dim is a constant at the call site). */
#if defined(__clang__)
#define PQA_UNROLL _Pragma("unroll 32")
#elif defined(__GNUC__)
#define PQA_UNROLL _Pragma("GCC unroll 32")
#else
#define PQA_UNROLL
#endif

#if defined(__GNUC__)
#define PQA_INLINE static inline __attribute__((always_inline))
#else
#define PQA_INLINE static inline
#endif

typedef __m512 VF;
typedef __m512i VI;
#define LOADU(p) _mm512_loadu_ps(p)
#define STOREU(p, v) _mm512_storeu_ps((p), (v))
#define STOREI(p, v) _mm512_storeu_si512((void *)(p), (v))
#define FMADD(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define FNMADD(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define SET1(v) _mm512_set1_ps(v)
#define SET1I(v) _mm512_set1_epi32(v)
#define ADDI(a, b) _mm512_add_epi32((a), (b))
#define MAXPS(a, b) _mm512_max_ps((a), (b))
#define ZERO _mm512_setzero_ps()
#define ZEROI _mm512_setzero_si512()

/* Per lane: where d < bd (ordered, strict), take d and its index. */
#define KEEP(d, jvec, bd, bi)                                                                     \
    do {                                                                                           \
        const __mmask16 lt_ = _mm512_cmp_ps_mask((d), (bd), _CMP_LT_OQ);                           \
        bd = _mm512_mask_mov_ps(bd, lt_, (d));                                                     \
        bi = _mm512_mask_mov_epi32(bi, lt_, (jvec));                                               \
    } while (0)

/* Dot of a and b over dim floats: 16 FMA partial sums, masked tail, fixed
 * horizontal sum (the same operations for every centroid). */
static float pqa_dot(const float *a, const float *b, size_t dim)
{
    const size_t full = dim / 16 * 16;
    const __mmask16 tail = (__mmask16)((1u << (dim - full)) - 1u);
    __m512 s = _mm512_setzero_ps();
    size_t t;
    for (t = 0; t < full; t += 16)
        s = _mm512_fmadd_ps(_mm512_loadu_ps(a + t), _mm512_loadu_ps(b + t), s);
    if (tail)
        s = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, a + full),
                            _mm512_maskz_loadu_ps(tail, b + full), s);
    return _mm512_reduce_add_ps(s);
}

/*
 * Transpose rows [i0, i0 + cnt) of x, times 2 (exact), into nt tiles of xt:
 * xt[(tile*dim + t)*W + lane] = 2 x[(i0 + tile*W + lane)*ldx + t], zero past cnt.
 * Blocks of 8 rows x 8 columns go through an in-register 8 x 8 transpose
 * (masked loads for a column tail, zero vectors past cnt); dims below 4 are
 * copied element by element.
 */
static void pqa_transpose(const float *x, size_t ldx, size_t i0, size_t cnt, size_t dim,
                          size_t nt, float *xt)
{
    size_t r, t;
    if (dim < 4) {
        for (r = 0; r < nt * PQA_W; r++) {
            float *dst = xt + (r / PQA_W) * dim * PQA_W + r % PQA_W;
            if (r < cnt) {
                const float *src = x + (i0 + r) * ldx;
                for (t = 0; t < dim; t++)
                    dst[t * PQA_W] = 2.0f * src[t];
            } else {
                for (t = 0; t < dim; t++)
                    dst[t * PQA_W] = 0.0f;
            }
        }
        return;
    }
    for (r = 0; r < nt * PQA_W; r += 8) {
        float *dst = xt + (r / PQA_W) * dim * PQA_W + r % PQA_W;
        size_t t0;
        for (t0 = 0; t0 < dim; t0 += 8) {
            const size_t w = dim - t0 < 8 ? dim - t0 : 8;
            const __mmask8 m = (__mmask8)((1u << w) - 1u);
            __m256 v[8], a[8], b[8];
            size_t q;
            for (q = 0; q < 8; q++)
                v[q] = r + q < cnt ? _mm256_maskz_loadu_ps(m, x + (i0 + r + q) * ldx + t0)
                                   : _mm256_setzero_ps();
            a[0] = _mm256_unpacklo_ps(v[0], v[1]);
            a[1] = _mm256_unpackhi_ps(v[0], v[1]);
            a[2] = _mm256_unpacklo_ps(v[2], v[3]);
            a[3] = _mm256_unpackhi_ps(v[2], v[3]);
            a[4] = _mm256_unpacklo_ps(v[4], v[5]);
            a[5] = _mm256_unpackhi_ps(v[4], v[5]);
            a[6] = _mm256_unpacklo_ps(v[6], v[7]);
            a[7] = _mm256_unpackhi_ps(v[6], v[7]);
            b[0] = _mm256_shuffle_ps(a[0], a[2], 0x44);
            b[1] = _mm256_shuffle_ps(a[0], a[2], 0xee);
            b[2] = _mm256_shuffle_ps(a[1], a[3], 0x44);
            b[3] = _mm256_shuffle_ps(a[1], a[3], 0xee);
            b[4] = _mm256_shuffle_ps(a[4], a[6], 0x44);
            b[5] = _mm256_shuffle_ps(a[4], a[6], 0xee);
            b[6] = _mm256_shuffle_ps(a[5], a[7], 0x44);
            b[7] = _mm256_shuffle_ps(a[5], a[7], 0xee);
            /* column t0 + q of the 8 rows, in lanes 0..7 */
            v[0] = _mm256_permute2f128_ps(b[0], b[4], 0x20);
            v[1] = _mm256_permute2f128_ps(b[1], b[5], 0x20);
            v[2] = _mm256_permute2f128_ps(b[2], b[6], 0x20);
            v[3] = _mm256_permute2f128_ps(b[3], b[7], 0x20);
            v[4] = _mm256_permute2f128_ps(b[0], b[4], 0x31);
            v[5] = _mm256_permute2f128_ps(b[1], b[5], 0x31);
            v[6] = _mm256_permute2f128_ps(b[2], b[6], 0x31);
            v[7] = _mm256_permute2f128_ps(b[3], b[7], 0x31);
            for (q = 0; q < w; q++)
                _mm256_storeu_ps(dst + (t0 + q) * PQA_W, _mm256_add_ps(v[q], v[q]));
        }
    }
}

/* One tile step of the half-distance: a -= x*b (first step: a = h - x*b). */
#define PQA_DOT2(q)                                                                               \
    if (NT > q) {                                                                                  \
        const VF xv = LOADU(x##q + t * PQA_W);                                                     \
        a0##q = FNMADD(xv, b0, a0##q);                                                             \
        a1##q = FNMADD(xv, b1, a1##q);                                                             \
    }
#define PQA_FIRST2(q)                                                                             \
    VF a0##q = ZERO, a1##q = ZERO;                                                                 \
    if (NT > q) {                                                                                  \
        const VF xv = LOADU(x##q);                                                                 \
        a0##q = FNMADD(xv, b0, h0);                                                                \
        a1##q = FNMADD(xv, b1, h1);                                                                \
    }
#define PQA_DOT1(q)                                                                               \
    if (NT > q) {                                                                                  \
        a0##q = FNMADD(LOADU(x##q + t * PQA_W), b0, a0##q);                                       \
    }
#define PQA_FIRST1(q)                                                                             \
    VF a0##q = ZERO;                                                                               \
    if (NT > q)                                                                                    \
        a0##q = FNMADD(LOADU(x##q), b0, h0);
/* Keep the per-lane strict minimum of the half-distance and its index. */
#define PQA_KEEP(q, acc, jvec)                                                                    \
    if (NT > q) {                                                                                  \
        KEEP(acc##q, jvec, bd##q, bi##q);                                                          \
    }
#define PQA_TILES(M) M(0) M(1) M(2) M(3)
#define PQA_KEEP_A0(q) PQA_KEEP(q, a0, jv)
#define PQA_KEEP_A1(q) PQA_KEEP(q, a1, jv1)
#define PQA_STORE(q)                                                                              \
    if (NT > q) {                                                                                  \
        STOREU(bd_out + q * PQA_W, bd##q);                                                         \
        STOREI(bi_out + q * PQA_W, bi##q);                                                         \
    }

/*
 * Per-lane best (d, index) over all k centroids for NT tiles at xt. NT and,
 * at the call sites that want an unrolled t loop, dim are constants. The tiles
 * are written out (not looped over) so that every accumulator stays in a
 * register with gcc too.
 */
PQA_INLINE void pqa_pass(const float *xt, const int NT, const size_t dim, const float *c,
                         const float *cn, size_t k, float *bd_out, uint32_t *bi_out)
{
    const VI one = SET1I(1), two = SET1I(2);
    const float *x0 = xt, *x1 = xt + dim * PQA_W, *x2 = xt + 2 * dim * PQA_W,
                *x3 = xt + 3 * dim * PQA_W;
    VF bd0 = SET1(INFINITY), bd1 = bd0, bd2 = bd0, bd3 = bd0;
    VI bi0 = ZEROI, bi1 = bi0, bi2 = bi0, bi3 = bi0;
    VI jv = ZEROI;
    size_t j, t;

    (void)x1;
    (void)x2;
    (void)x3;
    for (j = 0; j + 2 <= k; j += 2) {
        const float *c0 = c + j * dim, *c1 = c0 + dim;
        const VI jv1 = ADDI(jv, one);
        {
            const VF h0 = SET1(cn[j]), h1 = SET1(cn[j + 1]);
            VF b0 = SET1(c0[0]), b1 = SET1(c1[0]);
            PQA_TILES(PQA_FIRST2)
            PQA_UNROLL
            for (t = 1; t < dim; t++) {
                b0 = SET1(c0[t]);
                b1 = SET1(c1[t]);
                PQA_TILES(PQA_DOT2)
            }
            /* j before j + 1: the strict < keeps the lower index on ties. */
            PQA_TILES(PQA_KEEP_A0)
            PQA_TILES(PQA_KEEP_A1)
        }
        jv = ADDI(jv, two);
    }
    if (j < k) {
        const float *c0 = c + j * dim;
        const VF h0 = SET1(cn[j]);
        VF b0 = SET1(c0[0]);
        PQA_TILES(PQA_FIRST1)
        for (t = 1; t < dim; t++) {
            b0 = SET1(c0[t]);
            PQA_TILES(PQA_DOT1)
        }
        PQA_TILES(PQA_KEEP_A0)
    }
    PQA_TILES(PQA_STORE)
}

#define PQA_PASS_DIMS(NTV)                                                                        \
    switch (dim) {                                                                                 \
    case 4:                                                                                        \
        pqa_pass(xt, NTV, 4, c, cn, k, bd, bi);                                                    \
        break;                                                                                     \
    case 8:                                                                                        \
        pqa_pass(xt, NTV, 8, c, cn, k, bd, bi);                                                    \
        break;                                                                                     \
    case 16:                                                                                       \
        pqa_pass(xt, NTV, 16, c, cn, k, bd, bi);                                                   \
        break;                                                                                     \
    case 32:                                                                                       \
        pqa_pass(xt, NTV, 32, c, cn, k, bd, bi);                                                   \
        break;                                                                                     \
    default:                                                                                       \
        pqa_pass(xt, NTV, dim, c, cn, k, bd, bi);                                                  \
        break;                                                                                     \
    }

static void pqa_pass_dispatch(const float *xt, size_t nt, size_t dim, const float *c,
                              const float *cn, size_t k, float *bd, uint32_t *bi)
{
    if (nt == PQA_NT) {
        PQA_PASS_DIMS(PQA_NT)
    } else if (nt == PQA_NT / 2) {
        PQA_PASS_DIMS(PQA_NT / 2)
    } else {
        /* Tails only: generic dim. */
        pqa_pass(xt, 1, dim, c, cn, k, bd, bi);
    }
}

/* Large dim: row by row, the dot vectorised across dim. */
static void pqa_wide(const float *x, size_t n, size_t ldx, const float *c, const float *cn,
                     size_t k, size_t dim, uint32_t *codes, float *dists)
{
    size_t i, j;
    for (i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        float best = INFINITY;
        uint32_t best_j = 0;
        for (j = 0; j < k; j++) {
            const float d = cn[j] - 2.0f * pqa_dot(xi, c + j * dim, dim);
            if (d < best) {
                best = d;
                best_j = (uint32_t)j;
            }
        }
        codes[i] = best_j;
        if (dists) {
            const float v = pqa_dot(xi, xi, dim) + best;
            dists[i] = v > 0.0f ? v : 0.0f;
        }
    }
}

void qn_k_pq_assign_avx512(const float *x, size_t n, size_t ldx, const float *c,
                         const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                         float *dists)
{
    _Alignas(64) float xt[PQA_BUF];
    _Alignas(64) float bd[PQA_NT * PQA_W];
    _Alignas(64) uint32_t bi[PQA_NT * PQA_W];
    size_t ntmax, i0 = 0, nt, r, t, q;

    if (dim > PQA_MAXDIM) {
        pqa_wide(x, n, ldx, c, c_norms, k, dim, codes, dists);
        return;
    }
    ntmax = PQA_BUF / (dim * PQA_W);
    if (ntmax > PQA_NT)
        ntmax = PQA_NT;
    while (i0 < n) {
        const size_t rem = n - i0;
        size_t cnt;
        /* Fewer tiles for a short tail; a larger-dim pass may fit fewer. */
        nt = rem > (PQA_NT / 2) * PQA_W ? PQA_NT : rem > PQA_W ? PQA_NT / 2 : 1;
        while (nt > ntmax)
            nt /= 2; /* nt stays PQA_NT, PQA_NT / 2 or 1 */
        cnt = rem < nt * PQA_W ? rem : nt * PQA_W;
        pqa_transpose(x, ldx, i0, cnt, dim, nt, xt);
        pqa_pass_dispatch(xt, nt, dim, c, c_norms, k, bd, bi);
        for (r = 0; r < cnt; r++)
            codes[i0 + r] = bi[r];
        if (dists) {
            for (q = 0; q < nt; q++) {
                const float *xq = xt + q * dim * PQA_W;
                VF xn = ZERO;
                for (t = 0; t < dim; t++) {
                    const VF xv = LOADU(xq + t * PQA_W);
                    xn = FMADD(xv, xv, xn);
                }
                /* ||2x||^2 / 4 + best; max(v, 0) returns 0 for v = NaN too. */
                STOREU(bd + q * PQA_W, MAXPS(FMADD(xn, SET1(0.25f), LOADU(bd + q * PQA_W)), ZERO));
            }
            for (r = 0; r < cnt; r++)
                dists[i0 + r] = bd[r];
        }
        i0 += cnt;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* codebook_accumulate                                                                            */
/*
 * Contract: qn_k_codebook_accumulate_fn in kernels.h (bit-identical with
 * scalar). Rows stay in order; the dim axis goes into the lanes: eight floats
 * of a row become eight doubles (exact), added to the eight sums of its
 * centroid with one vaddpd. The squared error keeps the contract's eight
 * interleaved partial sums in one vector (lane l holds P_l: lane l of chunk
 * t/8 is element t + l) and reduces it with the contract's tree: upper half
 * onto lower half (P_l + P_{l+4}), then the two 128-bit halves, then the two
 * doubles. Lanes past dim are loaded as 0 and contribute +0, which changes no
 * sum. No FMA anywhere.
 */

PQA_INLINE double cba_tree(__m512d p)
{
    const __m256d h = _mm256_add_pd(_mm512_castpd512_pd256(p), _mm512_extractf64x4_pd(p, 1));
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

/* One row; dim is a constant at the call sites that want the loop unrolled. */
PQA_INLINE void cba_row(const float *xi, const size_t dim, const float *cj, double *s,
                        double *e)
{
    const size_t full = dim / 8 * 8;
    const __mmask8 tail = (__mmask8)((1u << (dim - full)) - 1u);
    __m512d p = _mm512_setzero_pd();
    size_t t;
    for (t = 0; t < full; t += 8) {
        const __m512d xv = _mm512_cvtps_pd(_mm256_loadu_ps(xi + t));
        _mm512_storeu_pd(s + t, _mm512_add_pd(_mm512_loadu_pd(s + t), xv));
        if (e) {
            const __m512d d = _mm512_sub_pd(xv, _mm512_cvtps_pd(_mm256_loadu_ps(cj + t)));
            p = _mm512_add_pd(p, _mm512_mul_pd(d, d));
        }
    }
    if (tail) {
        const __m512d xv = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(tail, xi + full));
        _mm512_mask_storeu_pd(s + full, tail,
                              _mm512_add_pd(_mm512_maskz_loadu_pd(tail, s + full), xv));
        if (e) {
            const __m512d d =
                _mm512_sub_pd(xv, _mm512_cvtps_pd(_mm256_maskz_loadu_ps(tail, cj + full)));
            p = _mm512_add_pd(p, _mm512_mul_pd(d, d));
        }
    }
    if (e)
        *e += cba_tree(p);
}

PQA_INLINE void cba_rows(const float *x, size_t n, size_t ldx, const size_t dim,
                         const uint32_t *codes, const float *c, double *sums, uint64_t *counts,
                         double *err)
{
    size_t i;
    if (err) {
        for (i = 0; i < n; i++) {
            const size_t j = codes[i];
            cba_row(x + i * ldx, dim, c + j * dim, sums + j * dim, err + j);
            counts[j] += 1;
        }
    } else {
        for (i = 0; i < n; i++) {
            const size_t j = codes[i];
            cba_row(x + i * ldx, dim, NULL, sums + j * dim, NULL);
            counts[j] += 1;
        }
    }
}

void qn_k_codebook_accumulate_avx512(const float *x, size_t n, size_t ldx, size_t dim,
                                     const uint32_t *codes, const float *c, double *sums,
                                     uint64_t *counts, double *err)
{
    switch (dim) {
    case 4:
        cba_rows(x, n, ldx, 4, codes, c, sums, counts, err);
        break;
    case 8:
        cba_rows(x, n, ldx, 8, codes, c, sums, counts, err);
        break;
    case 16:
        cba_rows(x, n, ldx, 16, codes, c, sums, counts, err);
        break;
    default:
        cba_rows(x, n, ldx, dim, codes, c, sums, counts, err);
        break;
    }
}
