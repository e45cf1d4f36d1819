/*
 * libqnoise: PQ-compressed layers (the state iPQ switches a layer to).
 * SPDX-License-Identifier: MIT
 *
 * A compressed layer computes with W_hat[block b] = C[code[b]] (blocks as the
 * noise's: runs of cq_bs along the rows of the weight matrix, b = row * (cols
 * / cq_bs) + j). The codes are frozen; the centroids C are the trainable
 * parameters. Backward computes dL/dW_hat exactly as a dense layer would and
 * reduces it over the blocks of each centroid:
 *   sum:  dC[k] += sum_{b : code[b] = k} g[b]
 *   mean: dC[k] += sum_{b : code[b] = k} g[b] / count[k]
 * in block order (deterministic). Centroids with no block get no gradient.
 *
 * int8 codebooks: the centroids are rounded in place to an int8 grid chosen
 * by the min-max observer over the whole codebook (symmetric [-127, 127] with
 * zero point 0, or affine [0, 255] stored as v = q - 128 with zero point
 * z - 128), so the float centroids the layer computes with are exactly the
 * int8 values times the scale.
 */
#include <math.h>
#include <string.h>

#include "layer/layer_internal.h"
#include "quant/kmeans.h"
#include "quant/observer.h"

#define QN_PQ_MAX_K ((size_t)65536)

/* ---------------------------------------------------------------------------------------------- */
/* state                                                                                          */

void qn_layer_pq_state_free(qn_context *ctx, qn_layer_pq_state *st)
{
    qn_free(ctx, st->c);
    qn_free(ctx, st->codes);
    qn_free(ctx, st->counts);
    memset(st, 0, sizeof *st);
}

void qn_layer_pq_drop(qn_layer *l)
{
    qn_free(l->ctx, l->cq_c);
    qn_free(l->ctx, l->cq_codes);
    qn_free(l->ctx, l->cq_counts);
    l->cq_c = NULL;
    l->cq_codes = NULL;
    l->cq_counts = NULL;
    l->cq = 0;
    l->cq_bs = l->cq_k = l->cq_nblocks = 0;
    l->cq_i8 = 0;
    l->eff_valid = 0;
}

void qn_layer_pq_commit(qn_layer *l, qn_layer_pq_state *st)
{
    qn_layer_pq_drop(l);
    l->cq = 1;
    l->cq_bs = st->bs;
    l->cq_k = st->k;
    l->cq_nblocks = st->nblocks;
    l->cq_c = st->c;
    l->cq_codes = st->codes;
    l->cq_counts = st->counts;
    memset(st, 0, sizeof *st);
}

/* Shape checks shared by compress and set; returns the block count in *nb. */
static qn_status qn_layer_pq_check(const qn_layer *l, size_t bs, size_t k, size_t *nb, const char *fn)
{
    *nb = 0;
    if (!l->w)
        return qn_fail(l->ctx, QN_ERR_NOT_TRAINED, "%s: bind a weight first", fn);
    if (bs == 0 || l->cols % bs)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: block_size %zu does not divide the blocked axis (%zu)", fn,
                       bs, l->cols);
    *nb = l->rows * (l->cols / bs);
    if (k < 2 || k > QN_PQ_MAX_K)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: %zu centroids (must be 2..65536)", fn, k);
    if (k > *nb)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: %zu centroids but only %zu blocks of %zu", fn, k, *nb, bs);
    return QN_OK;
}

static qn_status qn_layer_pq_alloc(qn_context *ctx, size_t bs, size_t k, size_t nb, qn_layer_pq_state *st,
                                   const char *fn)
{
    memset(st, 0, sizeof *st);
    st->bs = bs;
    st->k = k;
    st->nblocks = nb;
    st->c = (float *)qn_malloc(ctx, k * bs * sizeof(float));
    st->codes = (uint16_t *)qn_malloc(ctx, nb * sizeof(uint16_t));
    st->counts = (uint32_t *)qn_calloc(ctx, k, sizeof(uint32_t));
    if (!st->c || !st->codes || !st->counts) {
        qn_layer_pq_state_free(ctx, st);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    return QN_OK;
}

qn_status qn_layer_pq_train(qn_layer *l, size_t bs, size_t k, unsigned iterations, uint64_t seed,
                            qn_layer_pq_state *st, const char *fn)
{
    qn_kmeans_params kp;
    qn_kmeans_result res;
    uint32_t *codes32;
    size_t nb = 0, i;
    qn_status s = qn_layer_pq_check(l, bs, k, &nb, fn);
    if (s != QN_OK)
        return s;
    if (iterations == 0)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: iterations must be >= 1", fn);
    s = qn_layer_pq_alloc(l->ctx, bs, k, nb, st, fn);
    if (s != QN_OK)
        return s;
    codes32 = (uint32_t *)qn_malloc(l->ctx, nb * sizeof(uint32_t));
    if (!codes32) {
        qn_layer_pq_state_free(l->ctx, st);
        return qn_fail(l->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    qn_kmeans_defaults(&kp, k, seed);
    kp.iterations = iterations;
    /* the blocks of W are its rows cut into runs of bs: W itself viewed as nb x bs */
    s = qn_kmeans_train(l->ctx, l->w, nb, bs, &kp, st->c, codes32, &res);
    if (s != QN_OK) {
        qn_free(l->ctx, codes32);
        qn_layer_pq_state_free(l->ctx, st);
        return s;
    }
    for (i = 0; i < nb; i++) {
        st->codes[i] = (uint16_t)codes32[i];
        st->counts[codes32[i]]++;
    }
    qn_free(l->ctx, codes32);
    st->mse = res.objective;
    qn_log(l->ctx, QN_LOG_INFO, "%s: K=%zu bs=%zu over %zu blocks, %u iterations, mse per block %g, %zu empty", fn,
           k, bs, nb, res.iterations_run, res.objective, res.n_empty);
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* decode and gradient reduction                                                                  */

void qn_layer_pq_decode_row(const qn_layer *l, size_t r, float *dst)
{
    size_t nbr = l->cols / l->cq_bs, j;
    const uint16_t *codes = l->cq_codes + r * nbr;
    for (j = 0; j < nbr; j++)
        memcpy(dst + j * l->cq_bs, l->cq_c + (size_t)codes[j] * l->cq_bs, l->cq_bs * sizeof(float));
}

void qn_layer_pq_decode(const qn_layer *l, float *w)
{
    size_t b, bs = l->cq_bs;
    for (b = 0; b < l->cq_nblocks; b++)
        memcpy(w + b * bs, l->cq_c + (size_t)l->cq_codes[b] * bs, bs * sizeof(float));
}

void qn_layer_pq_reduce_grad(const qn_layer *l, size_t b0, size_t nb, const float *g, float *dc)
{
    size_t b, t, bs = l->cq_bs;
    int mean = l->cq_grad == QN_CENTROID_GRAD_MEAN;
    for (b = 0; b < nb; b++) {
        size_t k = l->cq_codes[b0 + b];
        const float *gb = g + b * bs;
        float *d = dc + k * bs;
        if (mean) {
            float inv = 1.0f / (float)l->cq_counts[k]; /* count >= 1: block b is assigned to k */
            for (t = 0; t < bs; t++)
                d[t] += gb[t] * inv;
        } else {
            for (t = 0; t < bs; t++)
                d[t] += gb[t];
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* public API                                                                                     */

QN_API qn_status qn_layer_compress_pq(qn_layer *layer, size_t block_size, size_t n_centroids, unsigned iterations,
                                      uint64_t seed)
{
    qn_layer_pq_state st;
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_pq_train(layer, block_size, n_centroids, iterations, seed, &st, "qn_layer_compress_pq");
    if (s != QN_OK)
        return s;
    qn_layer_pq_commit(layer, &st);
    return QN_OK;
}

QN_API qn_status qn_layer_set_pq(qn_layer *layer, size_t block_size, size_t n_centroids, const float *centroids,
                                 const uint16_t *codes)
{
    static const char fn[] = "qn_layer_set_pq";
    qn_layer_pq_state st;
    size_t nb = 0, i;
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (!centroids || !codes)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: centroids and codes must not be NULL", fn);
    s = qn_layer_pq_check(layer, block_size, n_centroids, &nb, fn);
    if (s != QN_OK)
        return s;
    for (i = 0; i < n_centroids * block_size; i++)
        if (!isfinite(centroids[i]))
            return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: centroid value %zu is not finite", fn, i);
    for (i = 0; i < nb; i++)
        if (codes[i] >= n_centroids)
            return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: code %zu is %u, not below K = %zu", fn, i,
                           (unsigned)codes[i], n_centroids);
    s = qn_layer_pq_alloc(layer->ctx, block_size, n_centroids, nb, &st, fn);
    if (s != QN_OK)
        return s;
    memcpy(st.c, centroids, n_centroids * block_size * sizeof(float));
    memcpy(st.codes, codes, nb * sizeof(uint16_t));
    for (i = 0; i < nb; i++)
        st.counts[codes[i]]++;
    qn_layer_pq_commit(layer, &st);
    return QN_OK;
}

QN_API qn_status qn_layer_decompress(qn_layer *layer)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    qn_layer_pq_drop(layer);
    return QN_OK;
}

QN_API qn_status qn_layer_is_compressed(const qn_layer *layer, int *compressed)
{
    if (!layer || !compressed)
        return QN_ERR_INVALID_ARG;
    *compressed = layer->cq;
    return QN_OK;
}

static qn_status qn_layer_need_pq(const qn_layer *l, const char *fn)
{
    if (!l->cq)
        return qn_fail(l->ctx, QN_ERR_NOT_TRAINED, "%s: the layer is not PQ-compressed", fn);
    return QN_OK;
}

QN_API qn_status qn_layer_get_pq_shape(const qn_layer *layer, size_t *block_size, size_t *n_centroids,
                                       size_t *n_blocks)
{
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, "qn_layer_get_pq_shape");
    if (s != QN_OK)
        return s;
    if (block_size)
        *block_size = layer->cq_bs;
    if (n_centroids)
        *n_centroids = layer->cq_k;
    if (n_blocks)
        *n_blocks = layer->cq_nblocks;
    return QN_OK;
}

QN_API qn_status qn_layer_pq_centroids(qn_layer *layer, float **centroids)
{
    qn_status s;
    if (!layer || !centroids)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, "qn_layer_pq_centroids");
    if (s != QN_OK)
        return s;
    *centroids = layer->cq_c;
    return QN_OK;
}

QN_API qn_status qn_layer_get_pq_codes(const qn_layer *layer, uint16_t *codes, size_t n_blocks)
{
    static const char fn[] = "qn_layer_get_pq_codes";
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, fn);
    if (s != QN_OK)
        return s;
    if (!codes)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: codes is NULL", fn);
    if (n_blocks < layer->cq_nblocks)
        return qn_fail(layer->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu codes, %zu needed", fn, n_blocks,
                       layer->cq_nblocks);
    memcpy(codes, layer->cq_codes, layer->cq_nblocks * sizeof(uint16_t));
    return QN_OK;
}

QN_API qn_status qn_layer_get_pq_counts(const qn_layer *layer, uint32_t *counts, size_t n_centroids)
{
    static const char fn[] = "qn_layer_get_pq_counts";
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, fn);
    if (s != QN_OK)
        return s;
    if (!counts)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: counts is NULL", fn);
    if (n_centroids < layer->cq_k)
        return qn_fail(layer->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu counts, %zu needed", fn, n_centroids,
                       layer->cq_k);
    memcpy(counts, layer->cq_counts, layer->cq_k * sizeof(uint32_t));
    return QN_OK;
}

QN_API qn_status qn_layer_set_centroid_grad(qn_layer *layer, qn_centroid_grad mode)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (mode != QN_CENTROID_GRAD_MEAN && mode != QN_CENTROID_GRAD_SUM)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_centroid_grad: unknown mode %d", (int)mode);
    layer->cq_grad = mode;
    return QN_OK;
}

QN_API qn_status qn_layer_decode_weight(const qn_layer *layer, float *weight, size_t count)
{
    static const char fn[] = "qn_layer_decode_weight";
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, fn);
    if (s != QN_OK)
        return s;
    if (!weight)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: weight is NULL", fn);
    if (count < layer->rows * layer->cols)
        return qn_fail(layer->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu floats, %zu needed", fn, count,
                       layer->rows * layer->cols);
    qn_layer_pq_decode(layer, weight);
    return QN_OK;
}

QN_API qn_status qn_layer_pq_error(const qn_layer *layer, double *rel_mse, double *snr_db)
{
    double num = 0.0, den = 0.0, rel;
    size_t b, t, bs;
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, "qn_layer_pq_error");
    if (s != QN_OK)
        return s;
    bs = layer->cq_bs;
    for (b = 0; b < layer->cq_nblocks; b++) {
        const float *w = layer->w + b * bs, *c = layer->cq_c + (size_t)layer->cq_codes[b] * bs;
        for (t = 0; t < bs; t++) {
            double e = (double)w[t] - (double)c[t];
            num += e * e;
            den += (double)w[t] * (double)w[t];
        }
    }
    rel = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
    if (rel_mse)
        *rel_mse = rel;
    if (snr_db)
        *snr_db = rel > 0.0 ? -10.0 * log10(rel) : INFINITY;
    return QN_OK;
}

/* Symmetric [-127, 127] or affine [0, 255] (stored shifted by -128) grid of the codebook. */
static qn_status qn_codebook_grid(const qn_layer *l, qn_qscheme scheme, float *scale, int32_t *zero, int32_t *qmin,
                                  int32_t *qmax)
{
    qn_status s = qn_observe_qparams(l->ctx, QN_OBSERVER_MINMAX, scheme, 8, l->cq_c, l->cq_k, l->cq_bs, NULL,
                                     scale, zero);
    if (s != QN_OK)
        return s;
    qn_qgrid(scheme, 8, qmin, qmax);
    return QN_OK;
}

QN_API qn_status qn_layer_pq_codebook_int8(qn_layer *layer, qn_qscheme scheme, double *mse)
{
    static const char fn[] = "qn_layer_pq_codebook_int8";
    float scale;
    int32_t zero, qmin, qmax;
    size_t i, n;
    double err = 0.0;
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, fn);
    if (s != QN_OK)
        return s;
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: unknown scheme %d", fn, (int)scheme);
    n = layer->cq_k * layer->cq_bs;
    for (i = 0; i < n; i++)
        if (!isfinite(layer->cq_c[i]))
            return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: centroid value %zu is not finite", fn, i);
    s = qn_codebook_grid(layer, scheme, &scale, &zero, &qmin, &qmax);
    if (s != QN_OK)
        return s;
    for (i = 0; i < n; i++) {
        float v = qn_fake_quant(layer->cq_c[i], scale, zero, qmin, qmax);
        double e = (double)layer->cq_c[i] - (double)v;
        err += e * e;
        layer->cq_c[i] = v;
    }
    layer->cq_i8 = 1;
    layer->cq_i8_scheme = scheme;
    layer->cq_i8_scale = scale;
    /* affine codes q in [0, 255] are stored as q - 128 */
    layer->cq_i8_zero = scheme == QN_QSCHEME_AFFINE ? zero - 128 : 0;
    layer->eff_valid = 0;
    if (mse)
        *mse = err / (double)n;
    qn_log(layer->ctx, QN_LOG_INFO, "%s: scale %g, zero point %d, decode mse %g", fn, (double)scale,
           (int)layer->cq_i8_zero, err / (double)n);
    return QN_OK;
}

QN_API qn_status qn_layer_get_pq_codebook_int8(const qn_layer *layer, int8_t *values, size_t count, float *scale,
                                               int32_t *zero_point)
{
    static const char fn[] = "qn_layer_get_pq_codebook_int8";
    size_t i, n;
    qn_status s;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    s = qn_layer_need_pq(layer, fn);
    if (s != QN_OK)
        return s;
    if (!layer->cq_i8)
        return qn_fail(layer->ctx, QN_ERR_NOT_TRAINED, "%s: call qn_layer_pq_codebook_int8 first", fn);
    if (!values || !scale || !zero_point)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: values, scale and zero_point must not be NULL", fn);
    n = layer->cq_k * layer->cq_bs;
    if (count < n)
        return qn_fail(layer->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: room for %zu values, %zu needed", fn, count, n);
    for (i = 0; i < n; i++) {
        float q = nearbyintf(layer->cq_c[i] * (1.0f / layer->cq_i8_scale)) + (float)layer->cq_i8_zero;
        if (q < -128.0f || !(q == q))
            q = -128.0f;
        if (q > 127.0f)
            q = 127.0f;
        if (layer->cq_i8_scheme == QN_QSCHEME_SYMMETRIC && q < -127.0f)
            q = -127.0f;
        values[i] = (int8_t)q;
    }
    *scale = layer->cq_i8_scale;
    *zero_point = layer->cq_i8_zero;
    return QN_OK;
}
