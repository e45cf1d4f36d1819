/*
 * libqnoise: nearest centroid by squared L2 distance, AVX-512 F/BW/VL/DQ.
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx512f -mavx512bw -mavx512vl -mavx512dq. Every helper
 * is static so no AVX-512 code can be merged into generic code by the linker.
 *
 * Distances are sum_t (x[t] - c[t])^2 computed as a difference then a fused
 * multiply-add (small dim: one accumulator per centroid, t in order; large
 * dim: 16 partial sums then a fixed horizontal sum). Within a call every
 * centroid goes through exactly the same operations, so equal centroids give
 * bit-equal distances and the strict < below keeps the lowest index on ties.
 * x == c gives exactly 0.
 *
 * Small dim (<= NL2_TILE_MAXDIM): vectorise across centroids.
 *   The codebook is packed, one chunk at a time, into a stack buffer of tiles
 *   of 16 centroids stored transposed, tile[t][lane] = c[(j0 + lane)*dim + t].
 *   Lanes past k hold +inf, so their distance is +inf and never wins a strict
 *   <. For a group of NL2_ROWS rows, each tile costs per t one load of
 *   tile[t], one broadcast of x[r][t] per row, a subtract and an FMA; each row
 *   keeps, per lane, its best distance and index in registers. At the end of
 *   the chunk each row reduces its 16 lanes (min distance, then the lowest
 *   index among lanes holding it) and merges into the row-block result with a
 *   strict < (chunks come in increasing index order). Rows are taken in
 *   blocks of NL2_RB so that, when the codebook needs several chunks, each
 *   chunk is packed once per block; when it fits in one chunk it is packed
 *   once per call. dims 4, 8, 16 and 32 get unrolled copies of the inner loop.
 *
 * Large dim: vectorise across dim (16 floats per step, masked tail), NL2_ROWS
 *   rows against one centroid at a time sharing its loads, horizontal sum,
 *   then a scalar strict < in index order.
 */
#include "kernels/kernels.h"

#include <immintrin.h>
#include <math.h> /* INFINITY (a constant; no libm call) */

#define NL2_W 16           /* lanes per vector = centroids per tile */
#define NL2_ROWS 4         /* x rows processed together (written out below) */
#define NL2_RB 256         /* x rows per block */
#define NL2_BUF 4096       /* floats in the packed-chunk buffer (16 KiB) */
#define NL2_TILE_MAXDIM 64 /* largest dim for the tiled path (>= 4 tiles per chunk) */

#if defined(__GNUC__)
#define NL2_INLINE static inline __attribute__((always_inline))
#else
#define NL2_INLINE static inline
#endif

/*
 * Pack centroids [j0, j0 + cnt) into ceil(cnt / 16) transposed tiles:
 * buf[(tile * dim + t) * 16 + lane] = c[(j0 + tile * 16 + lane) * dim + t],
 * +inf in the lanes past cnt.
 */
static void nl2_pack(const float *c, size_t dim, size_t j0, size_t cnt, float *buf)
{
    size_t ntiles = (cnt + NL2_W - 1) / NL2_W;
    size_t j, t;

    for (j = 0; j < ntiles * NL2_W; j++) {
        float *dst = buf + (j / NL2_W) * dim * NL2_W + j % NL2_W;
        if (j < cnt) {
            const float *src = c + (j0 + j) * dim;
            for (t = 0; t < dim; t++)
                dst[t * NL2_W] = src[t];
        } else {
            for (t = 0; t < dim; t++)
                dst[t * NL2_W] = INFINITY;
        }
    }
}

/* Keep, per lane, the smaller of (acc, *bd) with its index; a strict < keeps
 * the earlier (lower) index on ties. */
NL2_INLINE void nl2_keep(__m512 acc, __m512i idx, __m512 *bd, __m512i *bi)
{
    __mmask16 lt = _mm512_cmp_ps_mask(acc, *bd, _CMP_LT_OQ);
    *bd = _mm512_mask_mov_ps(*bd, lt, acc);
    *bi = _mm512_mask_mov_epi32(*bi, lt, idx);
}

/* The smallest distance of the lanes of bd and the lowest index among the
 * lanes holding it. Lanes never updated hold (+inf, 0): they matter only when
 * every distance is +inf, and then index 0 is the right answer. */
NL2_INLINE void nl2_reduce(__m512 bd, __m512i bi, float *best_d, uint32_t *best_i)
{
    float m = _mm512_reduce_min_ps(bd);
    __mmask16 eq = _mm512_cmp_ps_mask(bd, _mm512_set1_ps(m), _CMP_EQ_OQ);
    *best_d = m;
    *best_i = (uint32_t)_mm512_mask_reduce_min_epu32(eq, bi);
}

/*
 * Best (distance, index) over the ntiles packed tiles in buf, for the 4 rows
 * xr[0..3]; j0 is the index of the first packed centroid. dim is a constant at
 * the call sites that want an unrolled loop. The 4 rows are written out (not
 * looped over) so that every accumulator stays in a register with gcc too.
 */
NL2_INLINE void nl2_tiles(const float *xr[NL2_ROWS], const float *buf, size_t ntiles,
                          size_t dim, uint32_t j0, float best_d[NL2_ROWS],
                          uint32_t best_i[NL2_ROWS])
{
    const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3];
    const __m512i step = _mm512_set1_epi32(NL2_W);
    __m512i idx = _mm512_add_epi32(
        _mm512_set1_epi32((int)j0),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512 bd0 = _mm512_set1_ps(INFINITY), bd1 = bd0, bd2 = bd0, bd3 = bd0;
    __m512i bi0 = _mm512_setzero_si512(), bi1 = bi0, bi2 = bi0, bi3 = bi0;
    size_t tile, t;

    for (tile = 0; tile < ntiles; tile++) {
        const float *ct = buf + tile * dim * NL2_W;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (t = 0; t < dim; t++) {
            const __m512 cv = _mm512_loadu_ps(ct + t * NL2_W);
            const __m512 e0 = _mm512_sub_ps(_mm512_set1_ps(x0[t]), cv);
            const __m512 e1 = _mm512_sub_ps(_mm512_set1_ps(x1[t]), cv);
            const __m512 e2 = _mm512_sub_ps(_mm512_set1_ps(x2[t]), cv);
            const __m512 e3 = _mm512_sub_ps(_mm512_set1_ps(x3[t]), cv);
            a0 = _mm512_fmadd_ps(e0, e0, a0);
            a1 = _mm512_fmadd_ps(e1, e1, a1);
            a2 = _mm512_fmadd_ps(e2, e2, a2);
            a3 = _mm512_fmadd_ps(e3, e3, a3);
        }
        nl2_keep(a0, idx, &bd0, &bi0);
        nl2_keep(a1, idx, &bd1, &bi1);
        nl2_keep(a2, idx, &bd2, &bi2);
        nl2_keep(a3, idx, &bd3, &bi3);
        idx = _mm512_add_epi32(idx, step);
    }
    nl2_reduce(bd0, bi0, &best_d[0], &best_i[0]);
    nl2_reduce(bd1, bi1, &best_d[1], &best_i[1]);
    nl2_reduce(bd2, bi2, &best_d[2], &best_i[2]);
    nl2_reduce(bd3, bi3, &best_d[3], &best_i[3]);
}

static void nl2_tiles_dispatch(const float *xr[NL2_ROWS], const float *buf, size_t ntiles,
                               size_t dim, uint32_t j0, float best_d[NL2_ROWS],
                               uint32_t best_i[NL2_ROWS])
{
    switch (dim) {
    case 4:
        nl2_tiles(xr, buf, ntiles, 4, j0, best_d, best_i);
        break;
    case 8:
        nl2_tiles(xr, buf, ntiles, 8, j0, best_d, best_i);
        break;
    case 16:
        nl2_tiles(xr, buf, ntiles, 16, j0, best_d, best_i);
        break;
    case 32:
        nl2_tiles(xr, buf, ntiles, 32, j0, best_d, best_i);
        break;
    default:
        nl2_tiles(xr, buf, ntiles, dim, j0, best_d, best_i);
        break;
    }
}

static void nl2_tiled(const float *x, size_t n, size_t ldx, const float *c, size_t k, size_t dim,
                      uint32_t *codes, float *dists)
{
    _Alignas(64) float buf[NL2_BUF];
    float rb_d[NL2_RB];
    uint32_t rb_i[NL2_RB];
    const size_t chunk = NL2_BUF / (dim * NL2_W) * NL2_W; /* centroids per chunk */
    size_t packed = (size_t)-1; /* j0 of the chunk now in buf */
    size_t i0, j0, r;
    int q;

    for (i0 = 0; i0 < n; i0 += NL2_RB) {
        const size_t nb = n - i0 < NL2_RB ? n - i0 : NL2_RB;
        for (r = 0; r < nb; r++) {
            rb_d[r] = INFINITY;
            rb_i[r] = 0;
        }
        for (j0 = 0; j0 < k; j0 += chunk) {
            const size_t cnt = k - j0 < chunk ? k - j0 : chunk;
            const size_t ntiles = (cnt + NL2_W - 1) / NL2_W;
            if (packed != j0) {
                nl2_pack(c, dim, j0, cnt, buf);
                packed = j0;
            }
            for (r = 0; r < nb; r += NL2_ROWS) {
                const float *xr[NL2_ROWS];
                float d[NL2_ROWS];
                uint32_t id[NL2_ROWS];
                /* Past the last row, repeat it; those results are dropped. */
                for (q = 0; q < NL2_ROWS; q++) {
                    size_t row = r + (size_t)q < nb ? r + (size_t)q : nb - 1;
                    xr[q] = x + (i0 + row) * ldx;
                }
                nl2_tiles_dispatch(xr, buf, ntiles, dim, (uint32_t)j0, d, id);
                for (q = 0; q < NL2_ROWS && r + (size_t)q < nb; q++) {
                    if (d[q] < rb_d[r + (size_t)q]) {
                        rb_d[r + (size_t)q] = d[q];
                        rb_i[r + (size_t)q] = id[q];
                    }
                }
            }
        }
        for (r = 0; r < nb; r++) {
            codes[i0 + r] = rb_i[r];
            if (dists)
                dists[i0 + r] = rb_d[r];
        }
    }
}

static void nl2_wide(const float *x, size_t n, size_t ldx, const float *c, size_t k, size_t dim,
                     uint32_t *codes, float *dists)
{
    const size_t full = dim / NL2_W * NL2_W;
    const __mmask16 tail = (__mmask16)((1u << (dim - full)) - 1u);
    size_t i, j, t;
    int q;

    for (i = 0; i < n; i += NL2_ROWS) {
        const float *xr[NL2_ROWS];
        float bd[NL2_ROWS];
        uint32_t bi[NL2_ROWS];
        const float *x0, *x1, *x2, *x3;
        /* Past the last row, repeat it; those results are dropped. */
        for (q = 0; q < NL2_ROWS; q++) {
            size_t row = i + (size_t)q < n ? i + (size_t)q : n - 1;
            xr[q] = x + row * ldx;
            bd[q] = INFINITY;
            bi[q] = 0;
        }
        x0 = xr[0];
        x1 = xr[1];
        x2 = xr[2];
        x3 = xr[3];
        for (j = 0; j < k; j++) {
            const float *cj = c + j * dim;
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            float d[NL2_ROWS];
            for (t = 0; t < full; t += NL2_W) {
                const __m512 cv = _mm512_loadu_ps(cj + t);
                const __m512 e0 = _mm512_sub_ps(_mm512_loadu_ps(x0 + t), cv);
                const __m512 e1 = _mm512_sub_ps(_mm512_loadu_ps(x1 + t), cv);
                const __m512 e2 = _mm512_sub_ps(_mm512_loadu_ps(x2 + t), cv);
                const __m512 e3 = _mm512_sub_ps(_mm512_loadu_ps(x3 + t), cv);
                a0 = _mm512_fmadd_ps(e0, e0, a0);
                a1 = _mm512_fmadd_ps(e1, e1, a1);
                a2 = _mm512_fmadd_ps(e2, e2, a2);
                a3 = _mm512_fmadd_ps(e3, e3, a3);
            }
            if (tail) {
                /* Masked-off lanes are not read (no fault) and add (0 - 0)^2. */
                const __m512 cv = _mm512_maskz_loadu_ps(tail, cj + full);
                const __m512 e0 = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x0 + full), cv);
                const __m512 e1 = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x1 + full), cv);
                const __m512 e2 = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x2 + full), cv);
                const __m512 e3 = _mm512_sub_ps(_mm512_maskz_loadu_ps(tail, x3 + full), cv);
                a0 = _mm512_fmadd_ps(e0, e0, a0);
                a1 = _mm512_fmadd_ps(e1, e1, a1);
                a2 = _mm512_fmadd_ps(e2, e2, a2);
                a3 = _mm512_fmadd_ps(e3, e3, a3);
            }
            d[0] = _mm512_reduce_add_ps(a0);
            d[1] = _mm512_reduce_add_ps(a1);
            d[2] = _mm512_reduce_add_ps(a2);
            d[3] = _mm512_reduce_add_ps(a3);
            for (q = 0; q < NL2_ROWS; q++) {
                if (d[q] < bd[q]) {
                    bd[q] = d[q];
                    bi[q] = (uint32_t)j;
                }
            }
        }
        for (q = 0; q < NL2_ROWS && i + (size_t)q < n; q++) {
            codes[i + (size_t)q] = bi[q];
            if (dists)
                dists[i + (size_t)q] = bd[q];
        }
    }
}

void qn_k_nearest_l2_avx512(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                            size_t dim, uint32_t *codes, float *dists)
{
    if (dim <= NL2_TILE_MAXDIM)
        nl2_tiled(x, n, ldx, c, k, dim, codes, dists);
    else
        nl2_wide(x, n, ldx, c, k, dim, codes, dists);
}
