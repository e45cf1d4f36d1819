/*
 * libqnoise: scalar intN quantization (public API in qnoise/quant.h).
 * SPDX-License-Identifier: MIT
 *
 * A qn_scalar_quantizer holds its settings, the (scale, zero point) pairs of
 * its last observation (one, or one per row for the per-channel observer) and
 * the moving-average state. The observers are those of quant/observer.c.
 * Observation computes into temporaries and swaps them in only on success, so
 * a failing observation keeps the previous parameters and moving-average
 * state. Every call validates all of its input before writing any output;
 * const calls allocate nothing and are thread-safe.
 *
 * Fake quantization is qn_fake_quant; quantize computes the same float grid
 * value q and stores q - qmin, and dequantize evaluates (q - z) * s with the
 * same float operations, so dequantize(quantize(w)) == fake_quantize(w) to
 * the bit.
 */
#include <math.h> /* isfinite, nearbyintf */
#include <string.h>

#include <qnoise/quant.h>

#include "core/internal.h"
#include "quant/observer.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

struct qn_scalar_quantizer {
    qn_context *ctx;
    unsigned bits;
    qn_qscheme scheme;
    qn_observer obs;
    int32_t qmin, qmax;
    size_t channels;   /* 0 until the first successful observation */
    float *pc;         /* per-channel: one allocation, channels scales then channels zero points */
    float s1;          /* per tensor: the pair */
    int32_t z1;
    qn_ma_state ma;    /* moving average: running range */
};

/* Scale and zero point of row r (per tensor: the one pair). */
static void qn_scalar_pair(const qn_scalar_quantizer *q, size_t r, float *s, int32_t *z)
{
    if (q->obs == QN_OBSERVER_PER_CHANNEL) {
        *s = q->pc[r];
        *z = ((const int32_t *)(const void *)(q->pc + q->channels))[r];
    } else {
        *s = q->s1;
        *z = q->z1;
    }
}

/* The grid value q(w) of qn_fake_quant as an integer in [qmin, qmax] (same float operations). */
static int32_t qn_scalar_code(float w, float s, int32_t z, int32_t qmin, int32_t qmax)
{
    float v = nearbyintf(w * (1.0f / s)) + (float)z;
    if (v < (float)qmin)
        v = (float)qmin;
    if (v > (float)qmax)
        v = (float)qmax;
    return (int32_t)v;
}

/* ceil(n * bits / 8) without forming n * bits: 0, or 1 on overflow. */
static int qn_scalar_bytes(size_t n, unsigned bits, size_t *bytes)
{
    const size_t whole = (n / 8) * bits; /* n / 8 <= SIZE_MAX / 8, bits <= 8: no overflow */
    const size_t rest = ((n % 8) * bits + 7) / 8;
    return qn_add_overflow(whole, rest, bytes);
}

/*
 * Common checks of a rows x cols weight for an already-observed quantizer:
 * sizes, overflow, NOT_TRAINED, and the per-channel row count. Sets *n.
 */
static qn_status qn_scalar_check_shape(const qn_scalar_quantizer *q, const char *fn, size_t rows, size_t cols,
                                       size_t *n)
{
    size_t bytes;
    if (rows == 0 || cols == 0)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "%s: empty weight (%zu x %zu)", fn, rows, cols);
    if (qn_mul_overflow(rows, cols, n) || qn_mul_overflow(*n, sizeof(float), &bytes))
        return qn_fail(q->ctx, QN_ERR_OVERFLOW, "%s: a %zu x %zu weight overflows size_t", fn, rows, cols);
    if (q->channels == 0)
        return qn_fail(q->ctx, QN_ERR_NOT_TRAINED, "%s: observe a weight first", fn);
    if (q->obs == QN_OBSERVER_PER_CHANNEL && rows != q->channels)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "%s: %zu rows, but the per-channel parameters have %zu", fn,
                       rows, q->channels);
    return QN_OK;
}

static int qn_scalar_finite(const float *v, size_t count, size_t *bad)
{
    size_t i;
    for (i = 0; i < count; i++) {
        if (!isfinite(v[i])) {
            *bad = i;
            return 0;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------------------------------------- */
/* creation                                                                                       */

QN_API qn_status qn_scalar_create(qn_context *ctx, unsigned bits, qn_qscheme scheme, qn_observer observer,
                                  qn_scalar_quantizer **out)
{
    qn_scalar_quantizer *q;
    if (out)
        *out = NULL;
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_scalar_create: out is NULL");
    if (bits < 2 || bits > 8)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_scalar_create: bits = %u is outside 2..8", bits);
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_scalar_create: unknown scheme %d", (int)scheme);
    if (observer != QN_OBSERVER_MINMAX && observer != QN_OBSERVER_PER_CHANNEL &&
        observer != QN_OBSERVER_MOVING_AVERAGE && observer != QN_OBSERVER_HISTOGRAM)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_scalar_create: unknown observer %d", (int)observer);
    q = (qn_scalar_quantizer *)qn_calloc(ctx, 1, sizeof *q);
    if (!q)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_scalar_create: out of memory");
    q->ctx = ctx;
    q->bits = bits;
    q->scheme = scheme;
    q->obs = observer;
    qn_qgrid(scheme, bits, &q->qmin, &q->qmax);
    q->channels = 0;
    q->pc = NULL;
    q->s1 = 0.0f;
    q->z1 = 0;
    q->ma.valid = 0;
    q->ma.min = 0.0f;
    q->ma.max = 0.0f;
    *out = q;
    return QN_OK;
}

QN_API void qn_scalar_destroy(qn_scalar_quantizer *q)
{
    if (!q)
        return;
    qn_free(q->ctx, q->pc);
    qn_free(q->ctx, q);
}

/* ---------------------------------------------------------------------------------------------- */
/* observation, parameters                                                                        */

QN_API qn_status qn_scalar_observe(qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols)
{
    size_t n, bytes, bad;
    qn_status st;

    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!w)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_observe: w is NULL");
    if (rows == 0 || cols == 0)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_observe: empty weight (%zu x %zu)", rows, cols);
    if (qn_mul_overflow(rows, cols, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(q->ctx, QN_ERR_OVERFLOW, "qn_scalar_observe: a %zu x %zu weight overflows size_t", rows,
                       cols);
    if (q->obs == QN_OBSERVER_PER_CHANNEL && q->channels != 0 && rows != q->channels)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG,
                       "qn_scalar_observe: %zu rows, but the first observation had %zu (per channel)", rows,
                       q->channels);
    if (!qn_scalar_finite(w, n, &bad))
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_observe: w[%zu] (row %zu) is not finite", bad,
                       bad / cols);

    if (q->obs == QN_OBSERVER_PER_CHANNEL) {
        /* rows scales then rows zero points (both 4-byte) in one fresh buffer */
        float *fresh;
        size_t pair_bytes;
        if (qn_mul_overflow(rows, sizeof(float) + sizeof(int32_t), &pair_bytes))
            return qn_fail(q->ctx, QN_ERR_OVERFLOW, "qn_scalar_observe: %zu channel parameters overflow size_t",
                           rows);
        fresh = (float *)qn_malloc(q->ctx, pair_bytes);
        if (!fresh)
            return qn_fail(q->ctx, QN_ERR_OUT_OF_MEMORY,
                           "qn_scalar_observe: out of memory for %zu channel parameters", rows);
        st = qn_observe_qparams(q->ctx, q->obs, q->scheme, q->bits, w, rows, cols, NULL, fresh,
                                (int32_t *)(void *)(fresh + rows));
        if (st != QN_OK) {
            qn_free(q->ctx, fresh);
            return st; /* the observer logged why; the previous parameters stay */
        }
        qn_free(q->ctx, q->pc);
        q->pc = fresh;
        q->channels = rows;
        return QN_OK;
    } else {
        qn_ma_state ma = q->ma;
        float s = 0.0f;
        int32_t z = 0;
        st = qn_observe_qparams(q->ctx, q->obs, q->scheme, q->bits, w, rows, cols, &ma, &s, &z);
        if (st != QN_OK)
            return st; /* the observer logged why; parameters and running range stay */
        q->s1 = s;
        q->z1 = z;
        q->ma = ma;
        q->channels = 1;
        return QN_OK;
    }
}

QN_API qn_status qn_scalar_channels(const qn_scalar_quantizer *q, size_t *n_channels)
{
    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!n_channels)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_channels: n_channels is NULL");
    if (q->channels == 0)
        return qn_fail(q->ctx, QN_ERR_NOT_TRAINED, "qn_scalar_channels: observe a weight first");
    *n_channels = q->channels;
    return QN_OK;
}

QN_API qn_status qn_scalar_get_qparams(const qn_scalar_quantizer *q, float *scales, int32_t *zero_points,
                                       size_t n)
{
    size_t r;
    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!scales || !zero_points)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_get_qparams: scales and zero_points must not be NULL");
    if (q->channels == 0)
        return qn_fail(q->ctx, QN_ERR_NOT_TRAINED, "qn_scalar_get_qparams: observe a weight first");
    if (n < q->channels)
        return qn_fail(q->ctx, QN_ERR_BUFFER_TOO_SMALL, "qn_scalar_get_qparams: capacity %zu < %zu channels", n,
                       q->channels);
    for (r = 0; r < q->channels; r++)
        qn_scalar_pair(q, r, &scales[r], &zero_points[r]);
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* fake quantization, packed codes                                                                */

QN_API qn_status qn_scalar_fake_quantize(const qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols,
                                         float *out)
{
    size_t n, bad, r, c;
    qn_status st;

    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!w || !out)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_fake_quantize: w and out must not be NULL");
    st = qn_scalar_check_shape(q, "qn_scalar_fake_quantize", rows, cols, &n);
    if (st != QN_OK)
        return st;
    if (!qn_scalar_finite(w, n, &bad))
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_fake_quantize: w[%zu] (row %zu) is not finite", bad,
                       bad / cols);
    for (r = 0; r < rows; r++) {
        float s;
        int32_t z;
        qn_scalar_pair(q, q->obs == QN_OBSERVER_PER_CHANNEL ? r : 0, &s, &z);
        for (c = 0; c < cols; c++)
            out[r * cols + c] = qn_fake_quant(w[r * cols + c], s, z, q->qmin, q->qmax); /* element-wise: in place ok */
    }
    return QN_OK;
}

QN_API qn_status qn_scalar_packed_size(const qn_scalar_quantizer *q, size_t rows, size_t cols, size_t *bytes)
{
    size_t n, b;
    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!bytes)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_packed_size: bytes is NULL");
    if (rows == 0 || cols == 0)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_packed_size: empty weight (%zu x %zu)", rows, cols);
    if (qn_mul_overflow(rows, cols, &n) || qn_scalar_bytes(n, q->bits, &b))
        return qn_fail(q->ctx, QN_ERR_OVERFLOW, "qn_scalar_packed_size: a %zu x %zu weight overflows size_t", rows,
                       cols);
    *bytes = b;
    return QN_OK;
}

QN_API qn_status qn_scalar_quantize(const qn_scalar_quantizer *q, const float *w, size_t rows, size_t cols,
                                    uint8_t *codes, size_t codes_bytes)
{
    size_t n, need, bad, r, c, p = 0;
    uint32_t acc = 0;
    unsigned nacc = 0;
    qn_status st;

    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!w || !codes)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_quantize: w and codes must not be NULL");
    st = qn_scalar_check_shape(q, "qn_scalar_quantize", rows, cols, &n);
    if (st != QN_OK)
        return st;
    if (qn_scalar_bytes(n, q->bits, &need))
        return qn_fail(q->ctx, QN_ERR_OVERFLOW, "qn_scalar_quantize: a %zu x %zu weight overflows size_t", rows,
                       cols);
    if (codes_bytes < need)
        return qn_fail(q->ctx, QN_ERR_BUFFER_TOO_SMALL, "qn_scalar_quantize: %zu code bytes, %zu needed",
                       codes_bytes, need);
    if (!qn_scalar_finite(w, n, &bad))
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_quantize: w[%zu] (row %zu) is not finite", bad,
                       bad / cols);

    /* LSB-first stream: code i occupies bits [i*bits, i*bits + bits) */
    for (r = 0; r < rows; r++) {
        float s;
        int32_t z;
        qn_scalar_pair(q, q->obs == QN_OBSERVER_PER_CHANNEL ? r : 0, &s, &z);
        for (c = 0; c < cols; c++) {
            const int32_t v = qn_scalar_code(w[r * cols + c], s, z, q->qmin, q->qmax);
            acc |= (uint32_t)(v - q->qmin) << nacc;
            nacc += q->bits;
            while (nacc >= 8) {
                codes[p++] = (uint8_t)(acc & 0xffu);
                acc >>= 8;
                nacc -= 8;
            }
        }
    }
    if (nacc > 0)
        codes[p++] = (uint8_t)(acc & 0xffu); /* the unused high bits are 0 */
    return QN_OK;
}

QN_API qn_status qn_scalar_dequantize(const qn_scalar_quantizer *q, const uint8_t *codes, size_t codes_bytes,
                                      size_t rows, size_t cols, float *out)
{
    size_t n, need, i, r, c, p;
    uint32_t mask, acc;
    unsigned nacc;
    qn_status st;

    if (!q)
        return QN_ERR_INVALID_ARG;
    if (!codes || !out)
        return qn_fail(q->ctx, QN_ERR_INVALID_ARG, "qn_scalar_dequantize: codes and out must not be NULL");
    st = qn_scalar_check_shape(q, "qn_scalar_dequantize", rows, cols, &n);
    if (st != QN_OK)
        return st;
    if (qn_scalar_bytes(n, q->bits, &need))
        return qn_fail(q->ctx, QN_ERR_OVERFLOW, "qn_scalar_dequantize: a %zu x %zu weight overflows size_t", rows,
                       cols);
    if (codes_bytes < need)
        return qn_fail(q->ctx, QN_ERR_BUFFER_TOO_SMALL, "qn_scalar_dequantize: %zu code bytes, %zu needed",
                       codes_bytes, need);
    mask = ((uint32_t)1 << q->bits) - 1u;

    /* symmetric: the field 2^bits - 1 (q = qmax + 1) is never produced; check all before writing */
    if (q->scheme == QN_QSCHEME_SYMMETRIC) {
        const uint32_t top = (uint32_t)(q->qmax - q->qmin);
        acc = 0;
        nacc = 0;
        p = 0;
        for (i = 0; i < n; i++) {
            uint32_t f;
            while (nacc < q->bits) {
                acc |= (uint32_t)codes[p++] << nacc;
                nacc += 8;
            }
            f = acc & mask;
            acc >>= q->bits;
            nacc -= q->bits;
            if (f > top)
                return qn_fail(q->ctx, QN_ERR_CORRUPT_DATA,
                               "qn_scalar_dequantize: code %zu is %u, above the symmetric maximum %u", i,
                               (unsigned)f, (unsigned)top);
        }
    }

    acc = 0;
    nacc = 0;
    p = 0;
    for (r = 0; r < rows; r++) {
        float s;
        int32_t z;
        qn_scalar_pair(q, q->obs == QN_OBSERVER_PER_CHANNEL ? r : 0, &s, &z);
        for (c = 0; c < cols; c++) {
            float v;
            while (nacc < q->bits) {
                acc |= (uint32_t)codes[p++] << nacc;
                nacc += 8;
            }
            v = (float)((int32_t)(acc & mask) + q->qmin);
            acc >>= q->bits;
            nacc -= q->bits;
            v = v - (float)z; /* (q - z) * s, as qn_fake_quant */
            out[r * cols + c] = v * s;
        }
    }
    return QN_OK;
}
