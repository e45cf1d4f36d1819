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
    QN_OBSERVER_HISTOGRAM = 3       /**< per tensor, 2048-bin histogram, PyTorch's greedy search for the clipping range of least L2 error (may clip isolated outliers) */
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

/**
 * A scalar intN quantizer: an observer that picks (scale, zero point) from
 * weights, then fake quantization, packed codes and decoding. Opaque; const
 * calls are thread-safe.
 *
 * Grid: affine [0, 2^bits - 1] with zero point z; symmetric
 * [-(2^(bits-1) - 1), 2^(bits-1) - 1] with z = 0. q(w) = clamp(round(w/s) + z,
 * qmin, qmax) (round half to even), value (q - z) * s. Per-channel observers
 * give one (s, z) per row (output channel) of a rows x cols weight; the others
 * one pair. Packed codes: q - qmin as an unsigned bits-wide field, row-major,
 * one contiguous LSB-first bit stream (code i occupies bits [i*bits, i*bits+bits)).
 */
typedef struct qn_scalar_quantizer qn_scalar_quantizer;

/** Create a quantizer of @p bits (2..8) with @p scheme and @p observer. */
QN_API qn_status qn_scalar_create(qn_context *ctx, unsigned bits, qn_qscheme scheme, qn_observer observer,
                                  qn_scalar_quantizer **out);

/** Destroy a quantizer; NULL is a no-op. */
QN_API void qn_scalar_destroy(qn_scalar_quantizer *q);

/**
 * Observe a rows x cols weight (finite) and set the quantization parameters
 * from it (the moving-average observer folds it into its running range; the
 * others start afresh). A per-channel quantizer keeps the row count of its
 * first observation; later observations must have the same number of rows.
 */
QN_API qn_status qn_scalar_observe(qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols);

/** Number of (scale, zero point) pairs after observing (1, or rows for per-channel). */
QN_API qn_status qn_scalar_channels(const qn_scalar_quantizer *q, size_t *n_channels);

/** Copy the parameters into @p scales and @p zero_points (capacity @p n each, >= channels). */
QN_API qn_status qn_scalar_get_qparams(const qn_scalar_quantizer *q, float *scales, int32_t *zero_points,
                                       size_t n);

/** Fake-quantize a rows x cols weight into @p out (which may be @p w itself: in place). */
QN_API qn_status qn_scalar_fake_quantize(const qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols,
                                         float *out);

/** Bytes of the packed codes of a rows x cols weight: ceil(rows*cols*bits / 8). */
QN_API qn_status qn_scalar_packed_size(const qn_scalar_quantizer *q, size_t rows, size_t cols, size_t *bytes);

/** Quantize a rows x cols weight into packed codes (@p codes_bytes >= qn_scalar_packed_size). */
QN_API qn_status qn_scalar_quantize(const qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols,
                                    uint8_t *codes, size_t codes_bytes);

/** Decode packed codes of a rows x cols weight into floats. */
QN_API qn_status qn_scalar_dequantize(const qn_scalar_quantizer *q, const uint8_t *codes, size_t codes_bytes,
                                      size_t rows, size_t cols, float *out);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_QUANT_H */
