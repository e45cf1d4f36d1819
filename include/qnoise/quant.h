/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * quant.h: quantizer settings shared by the noise and the compressors.
 */
#ifndef QNOISE_QUANT_H
#define QNOISE_QUANT_H

#include <qnoise/common.h>

#ifdef __cplusplus
extern "C" {
#endif

/** How scalar quantization picks its range. Values are pinned. */
typedef enum qn_observer {
    QN_OBSERVER_MINMAX = 0,         /**< per tensor: [min(w, 0), max(w, 0)] */
    QN_OBSERVER_PER_CHANNEL = 1,    /**< min-max per output channel (row of the weight) */
    QN_OBSERVER_MOVING_AVERAGE = 2, /**< per tensor, min/max averaged over refreshes (constant 0.01) */
    QN_OBSERVER_HISTOGRAM = 3       /**< per tensor, 2048-bin histogram, clipping range of least L2 error */
} qn_observer;

/** Integer grid of scalar quantization. Values are pinned. */
typedef enum qn_qscheme {
    QN_QSCHEME_AFFINE = 0,   /**< unsigned grid [0, 2^bits - 1] with a zero point */
    QN_QSCHEME_SYMMETRIC = 1 /**< signed grid [-(2^(bits-1) - 1), 2^(bits-1) - 1], zero point 0 */
} qn_qscheme;

/** k-means initialisation. Values are pinned. */
typedef enum qn_kmeans_init {
    QN_KMEANS_INIT_RANDOM = 0,    /**< K distinct blocks drawn uniformly */
    QN_KMEANS_INIT_PLUSPLUS = 1   /**< k-means++ (D^2 sampling) */
} qn_kmeans_init;

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_QUANT_H */
