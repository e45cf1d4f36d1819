/*
 * libqnoise: compressed tensors (scalar intN and PQ).
 * SPDX-License-Identifier: MIT
 *
 * In memory a tensor keeps its codes unpacked (uint16 for PQ, uint8 for
 * scalar) and its codebook as the fp32 values decode uses; packing to 4, 8 or
 * 16 bits happens when a file is written (model.c), and qn_qtensor_nbytes
 * reports the packed size.
 */
#include <math.h>
#include <string.h>

#include "format/half.h"
#include "format/qtensor_internal.h"
#include "layer/layer_internal.h"
#include "quant/kmeans.h"
#include "quant/observer.h"

#define QN_QT_MAX_K ((size_t)65536)

static unsigned qn_pq_code_bits(size_t k)
{
    return k <= 16 ? 4u : (k <= 256 ? 8u : 16u);
}

qn_status qn_qtensor_alloc(qn_context *ctx, qn_qtensor_kind kind, size_t rows, size_t cols, qn_qtensor **out,
                           const char *fn)
{
    qn_qtensor *qt;
    size_t n;
    if (rows == 0 || cols == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: empty %zu x %zu matrix", fn, rows, cols);
    if (qn_mul_overflow(rows, cols, &n) || qn_mul_overflow(n, sizeof(float), &n))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: a %zu x %zu matrix overflows size_t", fn, rows, cols);
    qt = (qn_qtensor *)qn_calloc(ctx, 1, sizeof *qt);
    if (!qt)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    qt->ctx = ctx;
    qt->kind = kind;
    qt->rows = rows;
    qt->cols = cols;
    qt->ndim = 2;
    qt->shape[0] = rows;
    qt->shape[1] = cols;
    qt->prec = QN_CODEBOOK_FP32;
    *out = qt;
    return QN_OK;
}

qn_status qn_qtensor_alloc_pq(qn_qtensor *qt, size_t bs, size_t k, const char *fn)
{
    size_t nb;
    if (bs == 0 || qt->cols % bs)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: block_size %zu does not divide cols (%zu)", fn, bs, qt->cols);
    nb = qt->rows * (qt->cols / bs);
    if (k < 2 || k > QN_QT_MAX_K)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: %zu centroids (must be 2..65536)", fn, k);
    if (k > nb)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: %zu centroids but only %zu blocks of %zu", fn, k, nb, bs);
    qt->bs = bs;
    qt->k = k;
    qt->code_bits = qn_pq_code_bits(k);
    qt->codes = (uint16_t *)qn_malloc(qt->ctx, nb * sizeof(uint16_t));
    qt->c = (float *)qn_malloc(qt->ctx, k * bs * sizeof(float));
    if (!qt->codes || !qt->c)
        return qn_fail(qt->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    return QN_OK;
}

qn_status qn_qtensor_alloc_scalar(qn_qtensor *qt, unsigned bits, qn_qscheme scheme, int per_channel, const char *fn)
{
    if (bits < 2 || bits > 8)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: bits = %u (must be 2..8)", fn, bits);
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: unknown scheme %d", fn, (int)scheme);
    qt->bits = bits;
    qt->scheme = scheme;
    qt->per_channel = per_channel ? 1 : 0;
    qt->nch = per_channel ? qt->rows : 1;
    qt->code_bits = bits <= 4 ? 4u : 8u;
    qn_qgrid(scheme, bits, &qt->qmin, &qt->qmax);
    qt->scale = (float *)qn_malloc(qt->ctx, qt->nch * sizeof(float));
    qt->zero = (int32_t *)qn_malloc(qt->ctx, qt->nch * sizeof(int32_t));
    qt->q = (uint8_t *)qn_malloc(qt->ctx, qt->rows * qt->cols);
    if (!qt->scale || !qt->zero || !qt->q)
        return qn_fail(qt->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    return QN_OK;
}

QN_API void qn_qtensor_destroy(qn_qtensor *qt)
{
    qn_context *ctx;
    if (!qt)
        return;
    ctx = qt->ctx;
    qn_free(ctx, qt->codes);
    qn_free(ctx, qt->c);
    qn_free(ctx, qt->scale);
    qn_free(ctx, qt->zero);
    qn_free(ctx, qt->q);
    qn_free(ctx, qt);
}

static qn_status qn_check_finite(const qn_context *ctx, const float *w, size_t n, const char *fn, const char *what)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (!isfinite(w[i]))
            return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: %s[%zu] is not finite", fn, what, i);
    return QN_OK;
}

QN_API qn_status qn_qtensor_from_pq(qn_context *ctx, const float *w, size_t rows, size_t cols, size_t block_size,
                                    size_t n_centroids, uint64_t seed, qn_qtensor **out)
{
    static const char fn[] = "qn_qtensor_from_pq";
    qn_qtensor *qt = NULL;
    qn_kmeans_params kp;
    qn_kmeans_result res;
    uint32_t *codes32;
    size_t nb, i;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!w)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: w is NULL", fn);
    st = qn_qtensor_alloc(ctx, QN_QTENSOR_PQ, rows, cols, &qt, fn);
    if (st == QN_OK)
        st = qn_qtensor_alloc_pq(qt, block_size, n_centroids, fn);
    if (st != QN_OK) {
        qn_qtensor_destroy(qt);
        return st;
    }
    nb = rows * (cols / block_size);
    codes32 = (uint32_t *)qn_malloc(ctx, nb * sizeof(uint32_t));
    if (!codes32) {
        qn_qtensor_destroy(qt);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    qn_kmeans_defaults(&kp, n_centroids, seed);
    st = qn_kmeans_train(ctx, w, nb, block_size, &kp, qt->c, codes32, &res);
    if (st != QN_OK) {
        qn_free(ctx, codes32);
        qn_qtensor_destroy(qt);
        return st;
    }
    for (i = 0; i < nb; i++)
        qt->codes[i] = (uint16_t)codes32[i];
    qn_free(ctx, codes32);
    *out = qt;
    return QN_OK;
}

QN_API qn_status qn_qtensor_from_scalar_ex(qn_context *ctx, const float *w, size_t rows, size_t cols, unsigned bits,
                                           qn_observer observer, qn_qscheme scheme, qn_qtensor **out)
{
    static const char fn[] = "qn_qtensor_from_scalar";
    qn_qtensor *qt = NULL;
    qn_ma_state ma;
    size_t r, j;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!w)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: w is NULL", fn);
    if (observer != QN_OBSERVER_MINMAX && observer != QN_OBSERVER_PER_CHANNEL &&
        observer != QN_OBSERVER_MOVING_AVERAGE && observer != QN_OBSERVER_HISTOGRAM)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: unknown observer %d", fn, (int)observer);
    st = qn_qtensor_alloc(ctx, QN_QTENSOR_SCALAR, rows, cols, &qt, fn);
    if (st == QN_OK)
        st = qn_qtensor_alloc_scalar(qt, bits, scheme, observer == QN_OBSERVER_PER_CHANNEL, fn);
    if (st == QN_OK)
        st = qn_check_finite(ctx, w, rows * cols, fn, "w");
    if (st == QN_OK) {
        memset(&ma, 0, sizeof ma);
        st = qn_observe_qparams(ctx, observer, scheme, bits, w, rows, cols, &ma, qt->scale, qt->zero);
    }
    if (st != QN_OK) {
        qn_qtensor_destroy(qt);
        return st;
    }
    for (r = 0; r < rows; r++) {
        float s = qt->scale[qt->per_channel ? r : 0];
        int32_t z = qt->zero[qt->per_channel ? r : 0];
        for (j = 0; j < cols; j++) {
            float q = nearbyintf(w[r * cols + j] * (1.0f / s)) + (float)z;
            if (q < (float)qt->qmin)
                q = (float)qt->qmin;
            if (q > (float)qt->qmax)
                q = (float)qt->qmax;
            qt->q[r * cols + j] = (uint8_t)((int32_t)q - qt->qmin);
        }
    }
    *out = qt;
    return QN_OK;
}

QN_API qn_status qn_qtensor_from_scalar(qn_context *ctx, const float *w, size_t rows, size_t cols, unsigned bits,
                                        int per_channel, qn_qtensor **out)
{
    return qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, per_channel ? QN_OBSERVER_PER_CHANNEL : QN_OBSERVER_MINMAX,
                                     per_channel ? QN_QSCHEME_SYMMETRIC : QN_QSCHEME_AFFINE, out);
}

QN_API qn_status qn_qtensor_from_pq_codes(qn_context *ctx, size_t rows, size_t cols, size_t block_size,
                                          size_t n_centroids, const float *centroids, const uint16_t *codes,
                                          qn_qtensor **out)
{
    static const char fn[] = "qn_qtensor_from_pq_codes";
    qn_qtensor *qt = NULL;
    size_t nb, i;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!centroids || !codes)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: centroids and codes must not be NULL", fn);
    st = qn_qtensor_alloc(ctx, QN_QTENSOR_PQ, rows, cols, &qt, fn);
    if (st == QN_OK)
        st = qn_qtensor_alloc_pq(qt, block_size, n_centroids, fn);
    if (st == QN_OK)
        st = qn_check_finite(ctx, centroids, n_centroids * block_size, fn, "centroids");
    if (st == QN_OK) {
        nb = rows * (cols / block_size);
        for (i = 0; i < nb && st == QN_OK; i++)
            if (codes[i] >= n_centroids)
                st = qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: code %zu is %u, not below K = %zu", fn, i,
                             (unsigned)codes[i], n_centroids);
    }
    if (st != QN_OK) {
        qn_qtensor_destroy(qt);
        return st;
    }
    memcpy(qt->c, centroids, n_centroids * block_size * sizeof(float));
    memcpy(qt->codes, codes, rows * (cols / block_size) * sizeof(uint16_t));
    *out = qt;
    return QN_OK;
}

QN_API qn_status qn_qtensor_from_layer(const qn_layer *layer, qn_qtensor **out)
{
    static const char fn[] = "qn_qtensor_from_layer";
    qn_qtensor *qt = NULL;
    qn_status st;
    if (!layer || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!layer->cq)
        return qn_fail(layer->ctx, QN_ERR_NOT_TRAINED, "%s: the layer is not PQ-compressed", fn);
    st = qn_qtensor_from_pq_codes(layer->ctx, layer->rows, layer->cols, layer->cq_bs, layer->cq_k, layer->cq_c,
                                  layer->cq_codes, &qt);
    if (st != QN_OK)
        return st;
    if (layer->kind == QN_LAYER_CONV2D) {
        qt->ndim = 4;
        qt->shape[0] = layer->cout;
        qt->shape[1] = layer->cin / layer->groups;
        qt->shape[2] = layer->kh;
        qt->shape[3] = layer->kw;
    }
    if (layer->cq_i8) {
        qt->prec = QN_CODEBOOK_INT8;
        qt->cb_scheme = layer->cq_i8_scheme;
        qt->cb_scale = layer->cq_i8_scale;
        qt->cb_zero = layer->cq_i8_zero;
        /* centroids moved off the grid by later fine-tuning return to it */
        {
            size_t i;
            for (i = 0; i < qt->k * qt->bs; i++)
                qt->c[i] = (float)((int32_t)qn_qtensor_cb_int8(qt, i) - qt->cb_zero) * qt->cb_scale;
        }
    }
    *out = qt;
    return QN_OK;
}

int8_t qn_qtensor_cb_int8(const qn_qtensor *qt, size_t i)
{
    float q = nearbyintf(qt->c[i] * (1.0f / qt->cb_scale)) + (float)qt->cb_zero;
    float lo = qt->cb_scheme == QN_QSCHEME_SYMMETRIC ? -127.0f : -128.0f;
    if (!(q >= lo))
        q = lo;
    if (q > 127.0f)
        q = 127.0f;
    return (int8_t)q;
}

void qn_qtensor_decode_rows(const qn_qtensor *qt, size_t r0, size_t n, float *out)
{
    size_t r, j, b, nbr;
    if (qt->kind == QN_QTENSOR_PQ) {
        nbr = qt->cols / qt->bs;
        for (b = 0; b < n * nbr; b++)
            memcpy(out + b * qt->bs, qt->c + (size_t)qt->codes[r0 * nbr + b] * qt->bs, qt->bs * sizeof(float));
        return;
    }
    for (r = r0; r < r0 + n; r++) {
        float s = qt->scale[qt->per_channel ? r : 0];
        int32_t z = qt->zero[qt->per_channel ? r : 0];
        const uint8_t *q = qt->q + r * qt->cols;
        float *o = out + (r - r0) * qt->cols;
        for (j = 0; j < qt->cols; j++)
            o[j] = ((float)((int32_t)q[j] + qt->qmin) - (float)z) * s;
    }
}

QN_API qn_status qn_qtensor_decode(const qn_qtensor *qt, float *out)
{
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (!out)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "qn_qtensor_decode: out is NULL");
    qn_qtensor_decode_rows(qt, 0, qt->rows, out);
    return QN_OK;
}

size_t qn_qtensor_row_code_bytes(const qn_qtensor *qt)
{
    size_t per_row = qt->kind == QN_QTENSOR_PQ ? qt->cols / qt->bs : qt->cols;
    return (per_row * qt->code_bits + 7) / 8;
}

void qn_qtensor_pack_row(const qn_qtensor *qt, size_t r, uint8_t *dst)
{
    size_t n = qt->kind == QN_QTENSOR_PQ ? qt->cols / qt->bs : qt->cols, i;
    size_t nbytes = qn_qtensor_row_code_bytes(qt);
    memset(dst, 0, nbytes);
    for (i = 0; i < n; i++) {
        unsigned v = qt->kind == QN_QTENSOR_PQ ? qt->codes[r * n + i] : qt->q[r * n + i];
        if (qt->code_bits == 4)
            dst[i / 2] |= (uint8_t)((v & 0xfu) << (4 * (i & 1)));
        else if (qt->code_bits == 8)
            dst[i] = (uint8_t)v;
        else {
            dst[2 * i] = (uint8_t)(v & 0xffu);
            dst[2 * i + 1] = (uint8_t)(v >> 8);
        }
    }
}

int qn_qtensor_unpack_row(qn_qtensor *qt, size_t r, const uint8_t *src)
{
    size_t n = qt->kind == QN_QTENSOR_PQ ? qt->cols / qt->bs : qt->cols, i;
    unsigned limit = qt->kind == QN_QTENSOR_PQ ? (unsigned)qt->k : (unsigned)(qt->qmax - qt->qmin + 1);
    int bad = 0;
    for (i = 0; i < n; i++) {
        unsigned v;
        if (qt->code_bits == 4)
            v = (src[i / 2] >> (4 * (i & 1))) & 0xfu;
        else if (qt->code_bits == 8)
            v = src[i];
        else
            v = (unsigned)src[2 * i] | ((unsigned)src[2 * i + 1] << 8);
        if (v >= limit) {
            bad = 1;
            v = 0;
        }
        if (qt->kind == QN_QTENSOR_PQ)
            qt->codes[r * n + i] = (uint16_t)v;
        else
            qt->q[r * n + i] = (uint8_t)v;
    }
    return bad;
}

QN_API size_t qn_qtensor_nbytes(const qn_qtensor *qt)
{
    size_t n;
    if (!qt)
        return 0;
    n = qt->rows * qn_qtensor_row_code_bytes(qt);
    if (qt->kind == QN_QTENSOR_PQ) {
        size_t cb = qt->k * qt->bs;
        switch (qt->prec) {
        case QN_CODEBOOK_FP32:
            n += cb * 4;
            break;
        case QN_CODEBOOK_FP16:
            n += cb * 2;
            break;
        case QN_CODEBOOK_INT8:
            n += cb + 8;
            break;
        }
    } else {
        n += qt->nch * 8;
    }
    return n;
}

QN_API qn_status qn_qtensor_get_kind(const qn_qtensor *qt, qn_qtensor_kind *kind)
{
    if (!qt || !kind)
        return QN_ERR_INVALID_ARG;
    *kind = qt->kind;
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_matrix(const qn_qtensor *qt, size_t *rows, size_t *cols)
{
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (rows)
        *rows = qt->rows;
    if (cols)
        *cols = qt->cols;
    return QN_OK;
}

QN_API qn_status qn_qtensor_set_shape(qn_qtensor *qt, size_t ndim, const size_t *shape)
{
    static const char fn[] = "qn_qtensor_set_shape";
    size_t i, p = 1;
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (ndim < 1 || ndim > QN_QTENSOR_MAX_DIMS || !shape)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: %zu dimensions (must be 1..4)", fn, ndim);
    for (i = 1; i < ndim; i++)
        if (qn_mul_overflow(p, shape[i], &p))
            return qn_fail(qt->ctx, QN_ERR_OVERFLOW, "%s: the shape overflows size_t", fn);
    if (shape[0] != qt->rows || p != qt->cols)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG,
                       "%s: shape[0] = %zu and the product of the rest = %zu do not match the %zu x %zu matrix", fn,
                       shape[0], p, qt->rows, qt->cols);
    qt->ndim = ndim;
    for (i = 0; i < QN_QTENSOR_MAX_DIMS; i++)
        qt->shape[i] = i < ndim ? shape[i] : 0;
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_shape(const qn_qtensor *qt, size_t *ndim, size_t *shape)
{
    size_t i;
    if (!qt || !ndim || !shape)
        return QN_ERR_INVALID_ARG;
    *ndim = qt->ndim;
    for (i = 0; i < qt->ndim; i++)
        shape[i] = qt->shape[i];
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_pq(const qn_qtensor *qt, size_t *block_size, size_t *n_centroids, unsigned *code_bits,
                                   qn_codebook_precision *precision)
{
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (qt->kind != QN_QTENSOR_PQ)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "qn_qtensor_get_pq: not a PQ tensor");
    if (block_size)
        *block_size = qt->bs;
    if (n_centroids)
        *n_centroids = qt->k;
    if (code_bits)
        *code_bits = qt->code_bits;
    if (precision)
        *precision = qt->prec;
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_scalar(const qn_qtensor *qt, unsigned *bits, qn_qscheme *scheme, int *per_channel)
{
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (qt->kind != QN_QTENSOR_SCALAR)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "qn_qtensor_get_scalar: not a scalar tensor");
    if (bits)
        *bits = qt->bits;
    if (scheme)
        *scheme = qt->scheme;
    if (per_channel)
        *per_channel = qt->per_channel;
    return QN_OK;
}

QN_API qn_status qn_qtensor_set_codebook_precision(qn_qtensor *qt, qn_codebook_precision precision,
                                                   qn_qscheme int8_scheme, double *mse)
{
    static const char fn[] = "qn_qtensor_set_codebook_precision";
    size_t i, n;
    double err = 0.0;
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (qt->kind != QN_QTENSOR_PQ)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: not a PQ tensor", fn);
    n = qt->k * qt->bs;
    switch (precision) {
    case QN_CODEBOOK_FP32:
        break;
    case QN_CODEBOOK_FP16:
        for (i = 0; i < n; i++)
            if (!(fabsf(qt->c[i]) < 65520.0f)) /* 65520 and above round to infinity */
                return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: centroid value %g is out of the fp16 range", fn,
                               (double)qt->c[i]);
        for (i = 0; i < n; i++) {
            float v = qn_f16_to_f32(qn_f32_to_f16(qt->c[i]));
            double e = (double)qt->c[i] - (double)v;
            err += e * e;
            qt->c[i] = v;
        }
        break;
    case QN_CODEBOOK_INT8: {
        float scale;
        int32_t zero;
        qn_status st;
        if (int8_scheme != QN_QSCHEME_AFFINE && int8_scheme != QN_QSCHEME_SYMMETRIC)
            return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: unknown scheme %d", fn, (int)int8_scheme);
        st = qn_observe_qparams(qt->ctx, QN_OBSERVER_MINMAX, int8_scheme, 8, qt->c, qt->k, qt->bs, NULL, &scale,
                                &zero);
        if (st != QN_OK)
            return st;
        qt->cb_scheme = int8_scheme;
        qt->cb_scale = scale;
        qt->cb_zero = int8_scheme == QN_QSCHEME_AFFINE ? zero - 128 : 0;
        for (i = 0; i < n; i++) {
            float v = (float)((int32_t)qn_qtensor_cb_int8(qt, i) - qt->cb_zero) * scale;
            double e = (double)qt->c[i] - (double)v;
            err += e * e;
            qt->c[i] = v;
        }
        break;
    }
    default:
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: unknown precision %d", fn, (int)precision);
    }
    qt->prec = precision;
    if (mse)
        *mse = err / (double)n;
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_codes(const qn_qtensor *qt, uint16_t *codes, size_t n_codes)
{
    static const char fn[] = "qn_qtensor_get_codes";
    size_t nb;
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (qt->kind != QN_QTENSOR_PQ)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: not a PQ tensor", fn);
    if (!codes)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: codes is NULL", fn);
    nb = qt->rows * (qt->cols / qt->bs);
    if (n_codes < nb)
        return qn_fail(qt->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu codes, %zu needed", fn, n_codes, nb);
    memcpy(codes, qt->codes, nb * sizeof(uint16_t));
    return QN_OK;
}

QN_API qn_status qn_qtensor_get_centroids(const qn_qtensor *qt, float *centroids, size_t count)
{
    static const char fn[] = "qn_qtensor_get_centroids";
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (qt->kind != QN_QTENSOR_PQ)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: not a PQ tensor", fn);
    if (!centroids)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: centroids is NULL", fn);
    if (count < qt->k * qt->bs)
        return qn_fail(qt->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu floats, %zu needed", fn, count,
                       qt->k * qt->bs);
    memcpy(centroids, qt->c, qt->k * qt->bs * sizeof(float));
    return QN_OK;
}

QN_API qn_status qn_qtensor_error(const qn_qtensor *qt, const float *reference, double *rel_mse, double *snr_db,
                                  double *max_abs_err)
{
    static const char fn[] = "qn_qtensor_error";
    float *dec;
    double num = 0.0, den = 0.0, mx = 0.0, rel;
    size_t i, n;
    if (!qt)
        return QN_ERR_INVALID_ARG;
    if (!reference)
        return qn_fail(qt->ctx, QN_ERR_INVALID_ARG, "%s: reference is NULL", fn);
    n = qt->rows * qt->cols;
    dec = (float *)qn_malloc(qt->ctx, n * sizeof(float));
    if (!dec)
        return qn_fail(qt->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    qn_qtensor_decode(qt, dec);
    for (i = 0; i < n; i++) {
        double e = (double)reference[i] - (double)dec[i];
        num += e * e;
        den += (double)reference[i] * (double)reference[i];
        if (fabs(e) > mx)
            mx = fabs(e);
    }
    qn_free(qt->ctx, dec);
    rel = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    if (rel_mse)
        *rel_mse = rel;
    if (snr_db)
        *snr_db = rel > 0.0 ? -10.0 * log10(rel) : INFINITY;
    if (max_abs_err)
        *max_abs_err = mx;
    return QN_OK;
}
