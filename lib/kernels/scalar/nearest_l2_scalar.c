/*
 * libqnoise: nearest centroid by squared L2 distance, portable reference.
 * SPDX-License-Identifier: MIT
 *
 * This is the oracle every SIMD twin is tested against: plain loops, one float
 * accumulator summed in t order (t = 0 .. dim-1), no fused multiply-add, and a
 * strict < so the lowest index wins exact ties. Keep it obviously correct.
 */
#include "kernels/kernels.h"

#include <math.h> /* INFINITY (a constant; no libm call) */

/* GCC already disables contraction in ISO C mode; clang would fuse d += e * e. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void qn_k_nearest_l2_scalar(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                            size_t dim, uint32_t *codes, float *dists)
{
    size_t i, j, t;

    for (i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        /* Start at +inf with index 0: if every distance overflows to +inf they
         * all tie and index 0 is the lowest. */
        float best = INFINITY;
        uint32_t best_j = 0;

        for (j = 0; j < k; j++) {
            const float *cj = c + j * dim;
            float d = 0.0f;
            for (t = 0; t < dim; t++) {
                float e = xi[t] - cj[t];
                d += e * e;
            }
            if (d < best) {
                best = d;
                best_j = (uint32_t)j;
            }
        }
        codes[i] = best_j;
        if (dists)
            dists[i] = best;
    }
}
