/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * kernels.h: direct access to the dispatched compute kernels.
 */
#ifndef QNOISE_KERNELS_H
#define QNOISE_KERNELS_H

#include <qnoise/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Nearest centroid by squared L2 distance, with the kernels of @p ctx.
 *
 * For each of the @p n rows of @p x (row i starts at x + i*ldx and has @p dim
 * floats; ldx >= dim), codes[i] receives the index of the nearest of the @p k
 * rows of @p centroids (k x dim, contiguous), the lowest index on exact ties;
 * when @p sq_dists is not NULL it receives that squared distance. Inputs must
 * be finite (QN_ERR_INVALID_ARG otherwise). On error nothing is written.
 * Thread-safe on a shared context.
 */
QN_API qn_status qn_nearest_l2(const qn_context *ctx, const float *x, size_t n, size_t ldx,
                               size_t dim, const float *centroids, size_t k, uint32_t *codes,
                               float *sq_dists);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_KERNELS_H */
