/*
 * libqnoise: public entry points over the kernel table.
 * SPDX-License-Identifier: MIT
 */
#include <math.h>

#include <qnoise/kernels.h>

#include "core/internal.h"

static int qn_all_finite(const float *v, size_t rows, size_t ld, size_t cols)
{
    size_t i, j;
    for (i = 0; i < rows; i++) {
        const float *r = v + i * ld;
        for (j = 0; j < cols; j++)
            if (!isfinite(r[j]))
                return 0;
    }
    return 1;
}

QN_API qn_status qn_nearest_l2(const qn_context *ctx, const float *x, size_t n, size_t ldx,
                               size_t dim, const float *centroids, size_t k, uint32_t *codes,
                               float *sq_dists)
{
    size_t span;
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!x || !centroids || !codes)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_nearest_l2: x, centroids and codes must not be NULL");
    if (n == 0 || dim == 0 || k == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_nearest_l2: n, dim and k must be positive (n=%zu dim=%zu k=%zu)",
                       n, dim, k);
    if (ldx < dim)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_nearest_l2: ldx (%zu) < dim (%zu)", ldx, dim);
    if (k > UINT32_MAX)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_nearest_l2: k (%zu) does not fit a 32-bit code", k);
    if (qn_mul_overflow(n - 1, ldx, &span) || qn_add_overflow(span, dim, &span) ||
        qn_mul_overflow(span, sizeof(float), &span) || qn_mul_overflow(k, dim, &span) ||
        qn_mul_overflow(span, sizeof(float), &span) || qn_mul_overflow(n, sizeof(uint32_t), &span))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "qn_nearest_l2: buffer sizes overflow size_t");
    if (!qn_all_finite(x, n, ldx, dim) || !qn_all_finite(centroids, k, dim, dim))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_nearest_l2: NaN or Inf in the input");
    ctx->k->nearest_l2(x, n, ldx, centroids, k, dim, codes, sq_dists);
    return QN_OK;
}
