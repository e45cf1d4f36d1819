/*
 * libqnoise: PQ assignment with precomputed centroid norms, portable reference.
 * SPDX-License-Identifier: MIT
 *
 * This is the oracle every SIMD twin is tested against: plain loops, the dot
 * x.c_j summed in one float accumulator in t order (t = 0 .. dim-1), no fused
 * multiply-add, d_j = c_norms[j] - 2 * dot, and a strict < so the lowest index
 * wins exact ties. Keep it obviously correct.
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
