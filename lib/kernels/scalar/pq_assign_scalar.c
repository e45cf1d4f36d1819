/*
 * libqnoise: the PQ kernels, portable reference: assignment with precomputed
 * centroid norms (pq_assign) and codebook accumulation (codebook_accumulate).
 * SPDX-License-Identifier: MIT
 *
 * These are the oracles every SIMD twin is tested against.
 *
 * pq_assign: plain loops, the dot
 * x.c_j summed in one float accumulator in t order (t = 0 .. dim-1), no fused
 * multiply-add, d_j = c_norms[j] - 2 * dot, and a strict < so the lowest index
 * wins exact ties.
 *
 * codebook_accumulate: row after row, one double addition per element, and the
 * squared error in the eight interleaved partial sums and the fixed final tree
 * of the contract in kernels.h. The SIMD twins must reproduce it bit for bit.
 *
 * Keep both obviously correct.
 */
#include "kernels/kernels.h"

#include <math.h> /* INFINITY (a constant; no libm call) */

/* GCC already disables contraction in ISO C mode; clang would fuse d += a * b. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void qn_k_pq_assign_scalar(const float *x, size_t n, size_t ldx, const float *c,
                           const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                           float *dists)
{
    size_t i, j, t;

    for (i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        /* Start at +inf with index 0: if every d_j is +inf they all tie and
         * index 0 is the lowest. */
        float best = INFINITY;
        uint32_t best_j = 0;

        for (j = 0; j < k; j++) {
            const float *cj = c + j * dim;
            float dot = 0.0f, d;
            for (t = 0; t < dim; t++)
                dot += xi[t] * cj[t];
            d = c_norms[j] - 2.0f * dot;
            if (d < best) {
                best = d;
                best_j = (uint32_t)j;
            }
        }
        codes[i] = best_j;
        if (dists) {
            float xn = 0.0f, v;
            for (t = 0; t < dim; t++)
                xn += xi[t] * xi[t];
            v = xn + best;
            dists[i] = v > 0.0f ? v : 0.0f;
        }
    }
}

void qn_k_codebook_accumulate_scalar(const float *x, size_t n, size_t ldx, size_t dim,
                                     const uint32_t *codes, const float *c, double *sums,
                                     uint64_t *counts, double *err)
{
    size_t i, t, l;

    for (i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        const size_t j = codes[i];
        double *s = sums + j * dim;
        for (t = 0; t < dim; t++)
            s[t] += (double)xi[t];
        counts[j] += 1;
        if (err) {
            const float *cj = c + j * dim;
            double p[8] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (t = 0; t < dim; t += 8) {
                for (l = 0; l < 8 && t + l < dim; l++) {
                    const double d = (double)xi[t + l] - (double)cj[t + l];
                    p[l] += d * d;
                }
            }
            err[j] += ((p[0] + p[4]) + (p[2] + p[6])) + ((p[1] + p[5]) + (p[3] + p[7]));
        }
    }
}
