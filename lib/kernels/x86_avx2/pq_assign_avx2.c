/*
 * libqnoise: the PQ kernels for AVX2 + FMA: assignment with precomputed
 * centroid norms (pq_assign) and codebook accumulation (codebook_accumulate,
 * at the end of the file).
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx2 -mfma.
 * Every helper is static so no AVX2 code can be merged into generic code
 * by the linker. No heap, no globals.
 *
 * Contract: qn_k_pq_assign_fn in kernels.h. For each row x the kernel picks
 * the j minimising d_j = c_norms[j] - 2 x.c_j (strict <, lowest index on exact
 * ties) and writes max(0, ||x||^2 + min_j d_j) to dists when asked.
 *
 * Main path (dim <= PQA_MAXDIM): INPUT ROWS in the lanes.
 *   A tile is 8 consecutive rows of x transposed on the stack,
 *   xt[tile][t][lane] = x[(i0 + tile*8 + lane)*ldx + t] (0 for rows past n;
 *   their results are dropped). One pass over the codebook serves up to PQA_NT
 *   tiles (16 rows): the codebook (k*dim floats + k norms) is streamed from
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

#define PQA_W 8                        /* lanes per vector = rows per tile */
#define PQA_NT 2                        /* most tiles per pass over the codebook */
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

typedef __m256 VF;
typedef __m256i VI;
#define LOADU(p) _mm256_loadu_ps(p)
#define STOREU(p, v) _mm256_storeu_ps((p), (v))
#define STOREI(p, v) _mm256_storeu_si256((__m256i *)(void *)(p), (v))
#define FMADD(a, b, c) _mm256_fmadd_ps((a), (b), (c))
/* acc - 2x.c as fmadd(-2x, c, acc): the tile holds -2x (exact), and valgrind 3.19 cannot
 * decode the 256-bit vfnmadd forms, so the AVX2 path stays runnable under memcheck. */
#define FNMADD(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define SET1(v) _mm256_set1_ps(v)
#define SET1I(v) _mm256_set1_epi32(v)
#define ADDI(a, b) _mm256_add_epi32((a), (b))
#define MAXPS(a, b) _mm256_max_ps((a), (b))
#define ZERO _mm256_setzero_ps()
#define ZEROI _mm256_setzero_si256()

/* Per lane: where d < bd (ordered, strict), take d and its index. */
#define KEEP(d, jvec, bd, bi)                                                                     \
    do {                                                                                           \
        const __m256 lt_ = _mm256_cmp_ps((d), (bd), _CMP_LT_OQ);                                   \
        bd = _mm256_blendv_ps(bd, (d), lt_);                                                       \
        bi = _mm256_castps_si256(                                                                  \
            _mm256_blendv_ps(_mm256_castsi256_ps(bi), _mm256_castsi256_ps(jvec), lt_));            \
    } while (0)

/* Dot of a and b over dim floats: 8 FMA partial sums, scalar tail, fixed
 * horizontal sum (the same operations for every centroid). */
static float pqa_dot(const float *a, const float *b, size_t dim)
{
    const size_t full = dim / 8 * 8;
    __m256 s = _mm256_setzero_ps();
    __m128 h;
    float r;
    size_t t;
    for (t = 0; t < full; t += 8)
        s = _mm256_fmadd_ps(_mm256_loadu_ps(a + t), _mm256_loadu_ps(b + t), s);
    h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, _MM_SHUFFLE(1, 1, 1, 1)));
    r = _mm_cvtss_f32(h);
    for (t = full; t < dim; t++)
        r = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a[t]), _mm_set_ss(b[t]), _mm_set_ss(r)));
    return r;
}

/*
 * Transpose rows [i0, i0 + cnt) of x, times -2 (exact), into nt tiles of xt:
 * xt[(tile*dim + t)*W + lane] = -2 x[(i0 + tile*W + lane)*ldx + t], zero past cnt.
 */
static void pqa_transpose(const float *x, size_t ldx, size_t i0, size_t cnt, size_t dim,
                          size_t nt, float *xt)
{
    size_t r, t;
    for (r = 0; r < nt * PQA_W; r++) {
        float *dst = xt + (r / PQA_W) * dim * PQA_W + r % PQA_W;
        if (r < cnt) {
            const float *src = x + (i0 + r) * ldx;
            for (t = 0; t < dim; t++)
                dst[t * PQA_W] = -2.0f * src[t];
        } else {
            for (t = 0; t < dim; t++)
                dst[t * PQA_W] = 0.0f;
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

void qn_k_pq_assign_avx2(const float *x, size_t n, size_t ldx, const float *c,
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
 * scalar). Rows stay in order; eight floats of a row at a time become two
 * vectors of four doubles (exact) added to the sums of its centroid. The
 * squared error keeps the contract's eight interleaved partial sums in two
 * vectors, lo = (P_0..P_3) and hi = (P_4..P_7), reduced with the contract's
 * tree: lo + hi = (P_l + P_{l+4}), then the two 128-bit halves, then the two
 * doubles. A tail of fewer than eight floats is a group of four (lanes
 * P_0..P_3) and/or up to three more built from scalar loads with zeros in
 * the other lanes (zeros contribute +0 and change no sum; their sums are
 * added element by element). No FMA, and no masked loads (valgrind runs this
 * ISA).
 */

PQA_INLINE double cba_tree(__m256d lo, __m256d hi)
{
    const __m256d h = _mm256_add_pd(lo, hi);
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(h), _mm256_extractf128_pd(h, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
}

/* The squared-error terms of eight floats of x and c (as doubles) added to lo and hi. */
#define CBA_ERR8(xlo, xhi, cp)                                                                    \
    do {                                                                                           \
        const __m256 cv_ = _mm256_loadu_ps(cp);                                                    \
        const __m256d dlo_ = _mm256_sub_pd(xlo, _mm256_cvtps_pd(_mm256_castps256_ps128(cv_)));      \
        const __m256d dhi_ = _mm256_sub_pd(xhi, _mm256_cvtps_pd(_mm256_extractf128_ps(cv_, 1)));    \
        lo = _mm256_add_pd(lo, _mm256_mul_pd(dlo_, dlo_));                                         \
        hi = _mm256_add_pd(hi, _mm256_mul_pd(dhi_, dhi_));                                         \
    } while (0)

/* One row; dim is a constant at the call sites that want the loop unrolled. */
PQA_INLINE void cba_row(const float *xi, const size_t dim, const float *cj, double *s,
                        double *e)
{
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    size_t t, r, q;
    int in_hi = 0;
    for (t = 0; t + 8 <= dim; t += 8) {
        const __m256 xv = _mm256_loadu_ps(xi + t);
        const __m256d xlo = _mm256_cvtps_pd(_mm256_castps256_ps128(xv));
        const __m256d xhi = _mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1));
        _mm256_storeu_pd(s + t, _mm256_add_pd(_mm256_loadu_pd(s + t), xlo));
        _mm256_storeu_pd(s + t + 4, _mm256_add_pd(_mm256_loadu_pd(s + t + 4), xhi));
        if (e)
            CBA_ERR8(xlo, xhi, cj + t);
    }
    if (dim - t >= 4) {
        /* four elements at t = 0 mod 8: lanes P_0..P_3 */
        const __m256d x4 = _mm256_cvtps_pd(_mm_loadu_ps(xi + t));
        _mm256_storeu_pd(s + t, _mm256_add_pd(_mm256_loadu_pd(s + t), x4));
        if (e) {
            const __m256d d4 = _mm256_sub_pd(x4, _mm256_cvtps_pd(_mm_loadu_ps(cj + t)));
            lo = _mm256_add_pd(lo, _mm256_mul_pd(d4, d4));
        }
        t += 4;
        in_hi = 1;
    }
    r = dim - t; /* 0..3 elements left, in lanes P_0.. (or P_4.. after a group of four) */
    if (r > 0) {
        for (q = 0; q < r; q++)
            s[t + q] += (double)xi[t + q];
        if (e) {
            /* built from scalar loads: no store-to-load round trip */
            const __m128 xv = _mm_setr_ps(xi[t], r > 1 ? xi[t + 1] : 0.0f, r > 2 ? xi[t + 2] : 0.0f, 0.0f);
            const __m128 cv = _mm_setr_ps(cj[t], r > 1 ? cj[t + 1] : 0.0f, r > 2 ? cj[t + 2] : 0.0f, 0.0f);
            const __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(xv), _mm256_cvtps_pd(cv));
            if (in_hi)
                hi = _mm256_add_pd(hi, _mm256_mul_pd(d, d));
            else
                lo = _mm256_add_pd(lo, _mm256_mul_pd(d, d));
        }
    }
    if (e)
        *e += cba_tree(lo, hi);
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

void qn_k_codebook_accumulate_avx2(const float *x, size_t n, size_t ldx, size_t dim,
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
