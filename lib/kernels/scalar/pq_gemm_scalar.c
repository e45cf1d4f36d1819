/*
 * libqnoise: the PQ GEMM kernels, portable reference: lookup tables and their
 * gather-add with output rows in the lanes (pq_lut, pq_lut_gather) or with the
 * batch in the lanes (pq_blut, pq_blut_add), and the decode of W_hat rows into
 * a panel (pq_decode). Contracts: kernels.h.
 * SPDX-License-Identifier: MIT
 *
 * These are the oracles the SIMD twins are tested against. The table builders
 * sum in t order without FMA; the gather-adds add the tables in subspace
 * order, one float addition at a time (the SIMD twins do the same per lane,
 * so they are bit-identical); pq_decode copies.
 */
#include "kernels/kernels.h"

#include <string.h>

/* GCC already disables contraction in ISO C mode; clang would fuse s += a * b. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void qn_k_pq_lut_scalar(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                        size_t k, size_t nj, float *lut, size_t ldl)
{
    size_t jj, m, q, t;
    for (jj = 0; jj < nj; jj++) {
        for (m = 0; m < M; m++) {
            const float *xv = x + m * ldx + jj * bs;
            float *l = lut + (jj * M + m) * ldl;
            for (q = 0; q < k; q++) {
                float s = xv[0] * ct[q];
                for (t = 1; t < bs; t++)
                    s += xv[t] * ct[t * ldct + q];
                l[q] = s;
            }
        }
    }
}

void qn_k_pq_lut_gather_scalar(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                               int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                               size_t ldy)
{
    const uint8_t *c8 = (const uint8_t *)codes;
    const uint16_t *c16 = (const uint16_t *)codes;
    size_t m, o, jj;
    for (m = 0; m < M; m++) {
        float *ym = y + m * ldy;
        for (o = 0; o < n; o++) {
            float s = init ? (bias ? bias[o] : 0.0f) : ym[o];
            for (jj = 0; jj < nj; jj++) {
                size_t q = wide ? c16[jj * ldc + o] : c8[jj * ldc + o];
                s += lut[(jj * M + m) * ldl + q];
            }
            ym[o] = s;
        }
    }
}

void qn_k_pq_blut_scalar(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                         size_t nj, size_t W, float *blut)
{
    size_t jj, q, m, t;
    for (jj = 0; jj < nj; jj++) {
        for (q = 0; q < k; q++) {
            const float *cq = c + q * bs;
            float *l = blut + (jj * k + q) * W;
            for (m = 0; m < W; m++) {
                const float *xv = x + m * ldx + jj * bs;
                float s;
                if (m >= mg) {
                    l[m] = 0.0f;
                    continue;
                }
                s = xv[0] * cq[0];
                for (t = 1; t < bs; t++)
                    s += xv[t] * cq[t];
                l[m] = s;
            }
        }
    }
}

void qn_k_pq_blut_add_scalar(const float *blut, size_t k, size_t W, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, int init, float *acc)
{
    const uint8_t *c8 = (const uint8_t *)codes;
    const uint16_t *c16 = (const uint16_t *)codes;
    size_t o, jj, l;
    for (o = 0; o < n; o++) {
        float *a = acc + o * W;
        if (init)
            for (l = 0; l < W; l++)
                a[l] = 0.0f;
        for (jj = 0; jj < nj; jj++) {
            size_t q = wide ? c16[jj * ldc + o] : c8[jj * ldc + o];
            const float *e = blut + (jj * k + q) * W;
            for (l = 0; l < W; l++)
                a[l] += e[l];
        }
    }
}

void qn_k_pq_decode_scalar(const void *codes, size_t ldc, int wide, const float *c, size_t bs, size_t nr,
                           size_t nj, float *panel, size_t ldp)
{
    const uint8_t *c8 = (const uint8_t *)codes;
    const uint16_t *c16 = (const uint16_t *)codes;
    size_t r, jj;
    for (r = 0; r < nr; r++) {
        float *row = panel + r * ldp;
        for (jj = 0; jj < nj; jj++) {
            size_t q = wide ? c16[jj * ldc + r] : c8[jj * ldc + r];
            memcpy(row + jj * bs, c + q * bs, bs * sizeof(float));
        }
    }
}
