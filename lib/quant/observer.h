/*
 * libqnoise internal: scalar quantization parameters (observers) and fake quantization.
 * SPDX-License-Identifier: MIT
 *
 * Conventions (PyTorch's, so that its observers can serve as the oracle):
 *   affine:    qmin = 0,                 qmax = 2^bits - 1
 *   symmetric: qmin = -(2^(bits-1) - 1), qmax = 2^(bits-1) - 1, zero = 0
 *   q(w)   = clamp(nearbyint(w * (1/s)) + z, qmin, qmax)      (round half to even)
 *   fq(w)  = (q(w) - z) * s
 *   range  = [lo, hi] = [(qmin - z) * s, (qmax - z) * s]      (always contains 0)
 */
#ifndef QN_QUANT_OBSERVER_H
#define QN_QUANT_OBSERVER_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include <qnoise/quant.h>

#include "core/internal.h"

/* Running state of the moving-average observer (per tensor). */
typedef struct qn_ma_state {
    int valid;        /* 0 until the first observation */
    float min, max;   /* running values */
} qn_ma_state;

#define QN_MA_AVERAGING_CONSTANT 0.01f
#define QN_HISTOGRAM_BINS 2048

/* The integer grid of `bits` (2..8) under `scheme`. */
void qn_qgrid(qn_qscheme scheme, unsigned bits, int32_t *qmin, int32_t *qmax);

/*
 * Quantization parameters of w (rows x cols, row-major, all finite).
 * Per-channel observers write `rows` pairs (one per row = output channel);
 * the others write one pair. `ma` is required for QN_OBSERVER_MOVING_AVERAGE
 * (read and updated), ignored otherwise. Scratch comes from the context
 * allocator (histogram: 2048 counters). Returns QN_ERR_INVALID_ARG for bad
 * bits/observer/scheme or non-finite input, QN_ERR_OUT_OF_MEMORY; on error
 * scale/zero/ma are untouched.
 */
qn_status qn_observe_qparams(const qn_context *ctx, qn_observer obs, qn_qscheme scheme,
                             unsigned bits, const float *w, size_t rows, size_t cols,
                             qn_ma_state *ma, float *scale, int32_t *zero);

/* Number of (scale, zero) pairs qn_observe_qparams writes for this observer. */
size_t qn_observer_channels(qn_observer obs, size_t rows);

/* Fake-quantize one value (see the conventions above). */
static inline float qn_fake_quant(float w, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    float q = nearbyintf(w * (1.0f / s)) + (float)z;
    if (q < (float)qmin)
        q = (float)qmin;
    if (q > (float)qmax)
        q = (float)qmax;
    return (q - (float)z) * s;
}

#endif /* QN_QUANT_OBSERVER_H */
