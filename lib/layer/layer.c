/*
 * libqnoise: Quant-Noise layers (linear, conv2d, embedding).
 * SPDX-License-Identifier: MIT
 *
 * Forward with noise of step s:
 *   bits  = mask(seed, layer_id, s)                  1 bit per block, regenerated, never stored long
 *   W_eff = W with noised blocks replaced by phi(block) (proxy also scales kept blocks by 1/(1-p))
 *   y     = op(x, W_eff) + b                         via cblas_sgemm (conv: im2col first)
 * Backward of step s:
 *   dx  = dy . W_eff                                 (overwritten)
 *   dW += scale (.) (dy^T x)                         scale per block: kept 1 (proxy 1/(1-p)),
 *                                                    noised 1 (STE; SCALAR 0 outside the range)
 *                                                    or 0 (DropConnect)
 *   db += sum_batch dy
 * W_eff and the mask live in the workspace from a forward to the backward of
 * the same step, so backward does not rebuild them (one pass over W per step).
 */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include <qnoise/rng.h>

#include "format/packed.h"
#include "format/qtensor_internal.h"
#include "layer/layer_internal.h"
#include "qn_config.h"

#if QN_HAVE_OPENMP
#include <omp.h>
#endif

/* Streaming passes split across OpenMP threads above this many blocks (a chunk is a multiple of 64). */
#define QN_PAR_MIN_BLOCKS ((size_t)1 << 16)
#define QN_PAR_CHUNK_BLOCKS ((size_t)1 << 14)

#define QN_ALIGN_UP(x) (((x) + (QN_ALIGN - 1)) & ~(size_t)(QN_ALIGN - 1))

/* ---------------------------------------------------------------------------------------------- */
/* creation, settings                                                                             */

static qn_status qn_layer_new(qn_context *ctx, qn_layer_kind kind, size_t rows, size_t cols, qn_layer **out)
{
    qn_layer *l;
    size_t n;
    if (qn_mul_overflow(rows, cols, &n) || qn_mul_overflow(n, sizeof(float), &n))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "qn_layer_create: a %zu x %zu weight overflows size_t", rows, cols);
    l = (qn_layer *)qn_calloc(ctx, 1, sizeof *l);
    if (!l)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_layer_create: out of memory");
    l->ctx = ctx;
    l->kind = kind;
    l->rows = rows;
    l->cols = cols;
    l->noise = QN_NOISE_NONE;
    l->p = 0.0f;
    l->bs = 1;
    l->nblocks = rows * cols;
    l->grad = QN_GRAD_STE;
    l->sq_bits = 8;
    l->sq_obs = QN_OBSERVER_MINMAX;
    l->sq_scheme = QN_QSCHEME_AFFINE;
    l->sq_update = 1000;
    l->pq_k = 0;
    l->pq_iters = 15;
    l->pq_update = 1000;
    l->sh = l->sw = l->dh = l->dw = 1;
    l->groups = 1;
    qn_rng_layer_key(0, 0, l->key);
    *out = l;
    return QN_OK;
}

QN_API qn_status qn_layer_create_linear(qn_context *ctx, size_t in_features, size_t out_features, qn_layer **out)
{
    if (!ctx || !out)
        return ctx ? qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_linear: out is NULL") : QN_ERR_INVALID_ARG;
    *out = NULL;
    if (in_features == 0 || out_features == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_linear: in_features (%zu) and out_features (%zu) must be positive",
                       in_features, out_features);
    return qn_layer_new(ctx, QN_LAYER_LINEAR, out_features, in_features, out);
}

QN_API qn_status qn_layer_create_embedding(qn_context *ctx, size_t num_embeddings, size_t dim, qn_layer **out)
{
    if (!ctx || !out)
        return ctx ? qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_embedding: out is NULL") : QN_ERR_INVALID_ARG;
    *out = NULL;
    if (num_embeddings == 0 || dim == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_embedding: num_embeddings (%zu) and dim (%zu) must be positive",
                       num_embeddings, dim);
    if (num_embeddings > (size_t)INT64_MAX)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_embedding: num_embeddings exceeds int64 indices");
    return qn_layer_new(ctx, QN_LAYER_EMBEDDING, num_embeddings, dim, out);
}

QN_API qn_status qn_layer_create_conv2d(qn_context *ctx, size_t in_channels, size_t out_channels, size_t kernel_h,
                                        size_t kernel_w, size_t stride, size_t padding, size_t dilation, size_t groups,
                                        qn_layer **out)
{
    qn_status st;
    size_t cols;
    if (!ctx || !out)
        return ctx ? qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_layer_create_conv2d: out is NULL") : QN_ERR_INVALID_ARG;
    *out = NULL;
    if (in_channels == 0 || out_channels == 0 || kernel_h == 0 || kernel_w == 0 || stride == 0 || dilation == 0 ||
        groups == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG,
                       "qn_layer_create_conv2d: channels, kernel, stride, dilation and groups must be positive");
    if (in_channels % groups || out_channels % groups)
        return qn_fail(ctx, QN_ERR_INVALID_ARG,
                       "qn_layer_create_conv2d: groups (%zu) must divide in_channels (%zu) and out_channels (%zu)", groups,
                       in_channels, out_channels);
    if (qn_mul_overflow(in_channels / groups, kernel_h, &cols) || qn_mul_overflow(cols, kernel_w, &cols))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "qn_layer_create_conv2d: filter size overflows size_t");
    st = qn_layer_new(ctx, QN_LAYER_CONV2D, out_channels, cols, out);
    if (st == QN_OK) {
        qn_layer *l = *out;
        l->cin = in_channels;
        l->cout = out_channels;
        l->kh = kernel_h;
        l->kw = kernel_w;
        l->sh = l->sw = stride;
        l->ph = l->pw = padding;
        l->dh = l->dw = dilation;
        l->groups = groups;
    }
    return st;
}

static void qn_layer_invalidate(qn_layer *l)
{
    l->eff_valid = 0;
}

static void qn_layer_drop_quant_state(qn_layer *l)
{
    qn_free(l->ctx, l->sq_scale);
    qn_free(l->ctx, l->sq_zero);
    l->sq_scale = NULL;
    l->sq_zero = NULL;
    l->sq_valid = 0;
    l->sq_count = 0;
    l->sq_ma.valid = 0;
    qn_free(l->ctx, l->pq_centroids);
    qn_free(l->ctx, l->pq_codes);
    l->pq_centroids = NULL;
    l->pq_codes = NULL;
    l->pq_valid = 0;
    l->pq_count = 0;
    qn_layer_invalidate(l);
}

QN_API void qn_layer_destroy(qn_layer *layer)
{
    qn_context *ctx;
    if (!layer)
        return;
    ctx = layer->ctx;
    qn_layer_drop_quant_state(layer);
    qn_layer_pq_drop(layer);
    qn_packed_destroy(layer->qpk);
    if (layer->ws_owned)
        qn_free(ctx, layer->ws);
    qn_free(ctx, layer);
}

/* Output spatial size of one axis, 0 when empty. */
static size_t qn_conv_out(size_t in, size_t k, size_t s, size_t pad, size_t dil)
{
    size_t span, padded;
    if (qn_mul_overflow(dil, k - 1, &span) || qn_add_overflow(span, 1, &span) || qn_mul_overflow(pad, 2, &padded) ||
        qn_add_overflow(padded, in, &padded))
        return 0;
    if (padded < span)
        return 0;
    return (padded - span) / s + 1;
}

static qn_status qn_conv_update_output(qn_layer *l, const char *fn)
{
    size_t oh, ow, t;
    if (l->ih == 0)
        return QN_OK;
    oh = qn_conv_out(l->ih, l->kh, l->sh, l->ph, l->dh);
    ow = qn_conv_out(l->iw, l->kw, l->sw, l->pw, l->dw);
    if (oh == 0 || ow == 0)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: input %zu x %zu gives an empty output with this kernel", fn, l->ih,
                       l->iw);
    if (qn_mul_overflow(oh, ow, &t) || qn_mul_overflow(t, l->cols, &t) || qn_mul_overflow(t, sizeof(float), &t) ||
        qn_mul_overflow(l->ih, l->iw, &t) || qn_mul_overflow(t, l->cin, &t) || qn_mul_overflow(t, sizeof(float), &t) ||
        qn_mul_overflow(oh * ow, l->cout, &t) || qn_mul_overflow(t, sizeof(float), &t))
        return qn_fail(l->ctx, QN_ERR_OVERFLOW, "%s: activation sizes overflow size_t", fn);
    l->oh = oh;
    l->ow = ow;
    return QN_OK;
}

QN_API qn_status qn_layer_set_conv2d_geometry(qn_layer *layer, size_t stride_h, size_t stride_w, size_t pad_h,
                                              size_t pad_w, size_t dilation_h, size_t dilation_w)
{
    qn_layer saved;
    qn_status st;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (layer->kind != QN_LAYER_CONV2D)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_conv2d_geometry: not a conv2d layer");
    if (stride_h == 0 || stride_w == 0 || dilation_h == 0 || dilation_w == 0)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_conv2d_geometry: stride and dilation must be positive");
    saved = *layer;
    layer->sh = stride_h;
    layer->sw = stride_w;
    layer->ph = pad_h;
    layer->pw = pad_w;
    layer->dh = dilation_h;
    layer->dw = dilation_w;
    st = qn_conv_update_output(layer, "qn_layer_set_conv2d_geometry");
    if (st != QN_OK) {
        *layer = saved;
        return st;
    }
    return QN_OK;
}

QN_API qn_status qn_layer_set_input_size(qn_layer *layer, size_t height, size_t width)
{
    size_t ih, iw;
    qn_status st;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (layer->kind != QN_LAYER_CONV2D)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_input_size: not a conv2d layer");
    if (height == 0 || width == 0)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_input_size: height and width must be positive");
    ih = layer->ih;
    iw = layer->iw;
    layer->ih = height;
    layer->iw = width;
    st = qn_conv_update_output(layer, "qn_layer_set_input_size");
    if (st != QN_OK) {
        layer->ih = ih;
        layer->iw = iw;
    }
    return st;
}

QN_API qn_status qn_layer_get_output_size(const qn_layer *layer, size_t *height, size_t *width)
{
    if (!layer || !height || !width)
        return QN_ERR_INVALID_ARG;
    if (layer->kind != QN_LAYER_CONV2D)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_get_output_size: not a conv2d layer");
    if (layer->ih == 0)
        return qn_fail(layer->ctx, QN_ERR_NOT_TRAINED, "qn_layer_get_output_size: call qn_layer_set_input_size first");
    *height = layer->oh;
    *width = layer->ow;
    return QN_OK;
}

QN_API qn_status qn_layer_get_sizes(const qn_layer *layer, size_t *weight_count, size_t *bias_count,
                                    size_t *in_per_sample, size_t *out_per_sample)
{
    size_t in = 0, outn = 0;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    switch (layer->kind) {
    case QN_LAYER_LINEAR:
        in = layer->cols;
        outn = layer->rows;
        break;
    case QN_LAYER_EMBEDDING:
        in = 1;
        outn = layer->cols;
        break;
    case QN_LAYER_CONV2D:
        if (layer->ih == 0 && (in_per_sample || out_per_sample))
            return qn_fail(layer->ctx, QN_ERR_NOT_TRAINED, "qn_layer_get_sizes: call qn_layer_set_input_size first");
        in = layer->cin * layer->ih * layer->iw;
        outn = layer->cout * layer->oh * layer->ow;
        break;
    }
    if (weight_count)
        *weight_count = layer->rows * layer->cols;
    if (bias_count)
        *bias_count = layer->kind == QN_LAYER_EMBEDDING ? 0 : layer->rows;
    if (in_per_sample)
        *in_per_sample = in;
    if (out_per_sample)
        *out_per_sample = outn;
    return QN_OK;
}

QN_API qn_status qn_layer_get_kind(const qn_layer *layer, qn_layer_kind *out)
{
    if (!layer || !out)
        return QN_ERR_INVALID_ARG;
    *out = layer->kind;
    return QN_OK;
}

QN_API qn_status qn_layer_bind(qn_layer *layer, float *weight, float *bias)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (!weight)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_bind: weight is NULL");
    if (bias && layer->kind == QN_LAYER_EMBEDDING)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_bind: an embedding takes no bias");
    layer->w = weight;
    layer->b = bias;
    layer->qtb = NULL;
    qn_packed_destroy(layer->qpk);
    layer->qpk = NULL;
    qn_layer_drop_quant_state(layer);
    return QN_OK;
}

QN_API qn_status qn_layer_bind_compressed(qn_layer *layer, const qn_qtensor *weight, const float *bias)
{
    static const char fn[] = "qn_layer_bind_compressed";
    qn_packed *pk = NULL;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (!weight)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: weight is NULL", fn);
    if (bias && layer->kind == QN_LAYER_EMBEDDING)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: an embedding takes no bias", fn);
    if (weight->rows != layer->rows || weight->cols != layer->cols)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "%s: a %zu x %zu tensor for a %zu x %zu weight", fn,
                       weight->rows, weight->cols, layer->rows, layer->cols);
    if (layer->kind == QN_LAYER_LINEAR || (layer->kind == QN_LAYER_CONV2D && layer->groups == 1)) {
        /* repack once for the packed-GEMM kernels (a conv2d runs them on its im2col rows);
           grouped convs and embeddings decode per forward */
        qn_status st = qn_packed_create(layer->ctx, weight, &pk);
        if (st != QN_OK && st != QN_ERR_UNSUPPORTED)
            return st;
    }
    qn_layer_pq_drop(layer);
    qn_layer_drop_quant_state(layer);
    qn_packed_destroy(layer->qpk);
    layer->qpk = pk;
    layer->qtb = weight;
    layer->w = NULL;
    layer->b = bias;
    return QN_OK;
}

QN_API qn_status qn_layer_set_noise(qn_layer *layer, qn_noise_kind kind, float p, size_t block_size)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (kind != QN_NOISE_NONE && kind != QN_NOISE_PROXY && kind != QN_NOISE_SCALAR && kind != QN_NOISE_PQ)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_noise: unknown noise kind %d", (int)kind);
    if (!(p >= 0.0f && p < 1.0f))
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_noise: p = %g is not in [0, 1)", (double)p);
    if (block_size == 0 || layer->cols % block_size)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG,
                       "qn_layer_set_noise: block_size %zu does not divide the blocked axis (%zu)", block_size,
                       layer->cols);
    if (kind == QN_NOISE_PQ && layer->pq_k && layer->pq_k > layer->rows * (layer->cols / block_size))
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG,
                       "qn_layer_set_noise: %zu centroids but only %zu blocks of %zu", layer->pq_k,
                       layer->rows * (layer->cols / block_size), block_size);
    if (kind == QN_NOISE_PQ && layer->rows * (layer->cols / block_size) < 2)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_noise: PQ noise needs at least 2 blocks");
    layer->noise = kind;
    layer->p = p;
    layer->bs = block_size;
    layer->nblocks = layer->rows * (layer->cols / block_size);
    qn_layer_drop_quant_state(layer);
    return QN_OK;
}

QN_API qn_status qn_layer_set_seed(qn_layer *layer, uint64_t seed, uint64_t layer_id)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    layer->seed = seed;
    layer->layer_id = layer_id;
    qn_rng_layer_key(seed, layer_id, layer->key);
    layer->pq_valid = 0; /* k-means seeds from it */
    qn_layer_invalidate(layer);
    return QN_OK;
}

QN_API qn_status qn_layer_set_grad_mode(qn_layer *layer, qn_grad_mode mode)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (mode != QN_GRAD_STE && mode != QN_GRAD_DROPCONNECT)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_grad_mode: unknown mode %d", (int)mode);
    layer->grad = mode;
    return QN_OK;
}

QN_API qn_status qn_layer_set_scalar_noise(qn_layer *layer, unsigned bits, qn_observer observer, qn_qscheme scheme,
                                           uint32_t update_step)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (bits < 2 || bits > 8)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_scalar_noise: bits = %u is not in 2..8", bits);
    if (observer != QN_OBSERVER_MINMAX && observer != QN_OBSERVER_PER_CHANNEL &&
        observer != QN_OBSERVER_MOVING_AVERAGE && observer != QN_OBSERVER_HISTOGRAM)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_scalar_noise: unknown observer %d", (int)observer);
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_scalar_noise: unknown scheme %d", (int)scheme);
    if (update_step == 0)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_scalar_noise: update_step must be >= 1");
    layer->sq_bits = bits;
    layer->sq_obs = observer;
    layer->sq_scheme = scheme;
    layer->sq_update = update_step;
    qn_layer_drop_quant_state(layer);
    return QN_OK;
}

QN_API qn_status qn_layer_set_pq_noise(qn_layer *layer, size_t n_centroids, unsigned iterations, uint32_t update_step)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (n_centroids < 2 || n_centroids > 65536)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_pq_noise: n_centroids = %zu is not in 2..65536",
                       n_centroids);
    if (layer->noise == QN_NOISE_PQ && n_centroids > layer->nblocks)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_pq_noise: %zu centroids but only %zu blocks",
                       n_centroids, layer->nblocks);
    if (iterations == 0 || update_step == 0)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_pq_noise: iterations and update_step must be >= 1");
    layer->pq_k = n_centroids;
    layer->pq_iters = iterations;
    layer->pq_update = update_step;
    qn_layer_drop_quant_state(layer);
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* workspace                                                                                      */

typedef struct qn_ws_layout {
    size_t weff, mask, scratch, total; /* byte offsets; scratch = im2col columns / grad buffer */
} qn_ws_layout;

static int qn_layer_needs_weff(const qn_layer *l)
{
    /* a compressed layer decodes W_hat into the same region */
    return l->kind != QN_LAYER_EMBEDDING &&
           (l->cq || (l->qtb && !l->qpk) || (l->noise != QN_NOISE_NONE && l->p > 0.0f));
}

static qn_status qn_layer_layout(const qn_layer *l, size_t batch, qn_ws_layout *lay)
{
    size_t wbytes = l->rows * l->cols * sizeof(float); /* checked at creation */
    size_t nbr = l->cols / l->bs;
    /* an embedding samples the mask of one row at a time */
    size_t mask_bytes = ((l->kind == QN_LAYER_EMBEDDING ? nbr : l->nblocks) + 63) / 64 * 8;
    size_t scratch = 0, t;
    memset(lay, 0, sizeof *lay);
    switch (l->kind) {
    case QN_LAYER_LINEAR:
        /* the noisy backward saves blocks into the W_eff region; a compressed one needs dW_hat;
           a packed weight needs the packed GEMM's scratch */
        scratch = l->cq ? wbytes : (l->qpk ? qn_packed_workspace_size(l->qpk, batch) + QN_ALIGN : 0);
        break;
    case QN_LAYER_CONV2D:
        if (l->ih == 0)
            return qn_fail(l->ctx, QN_ERR_NOT_TRAINED, "conv2d layer: call qn_layer_set_input_size first");
        if (l->qpk) {
            /* packed weight: im2col columns, the same transposed (rows of patches), the output
               rows of one sample, then the packed GEMM's scratch */
            size_t p = l->oh * l->ow;
            scratch = 2 * QN_ALIGN_UP(l->cols * p * sizeof(float)) + QN_ALIGN_UP(p * l->rows * sizeof(float)) +
                      qn_packed_workspace_size(l->qpk, p) + QN_ALIGN;
        } else {
            /* im2col columns of one group, then a gradient accumulator as large as W */
            scratch = QN_ALIGN_UP(l->cols * l->oh * l->ow * sizeof(float)) + wbytes;
        }
        break;
    case QN_LAYER_EMBEDDING:
        scratch = 0;
        break;
    }
    if (qn_layer_needs_weff(l))
        lay->weff = 0, t = QN_ALIGN_UP(wbytes);
    else
        t = 0;
    lay->mask = t;
    t += QN_ALIGN_UP(mask_bytes);
    lay->scratch = t;
    t += QN_ALIGN_UP(scratch);
    lay->total = t ? t : QN_ALIGN;
    return QN_OK;
}

QN_API qn_status qn_layer_workspace_size(const qn_layer *layer, size_t batch, size_t *bytes)
{
    qn_ws_layout lay;
    qn_status st;
    if (!layer || !bytes)
        return QN_ERR_INVALID_ARG;
    st = qn_layer_layout(layer, batch, &lay);
    if (st != QN_OK)
        return st;
    *bytes = lay.total;
    return QN_OK;
}

QN_API qn_status qn_layer_set_workspace(qn_layer *layer, void *workspace, size_t bytes)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (workspace && bytes == 0)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_set_workspace: zero bytes");
    if (layer->ws_owned)
        qn_free(layer->ctx, layer->ws);
    layer->ws = (unsigned char *)workspace;
    layer->ws_bytes = workspace ? bytes : 0;
    layer->ws_owned = 0;
    qn_layer_invalidate(layer);
    return QN_OK;
}

/* Make sure the workspace holds `need` bytes; returns its base or NULL with *st set. */
static unsigned char *qn_layer_ws(qn_layer *l, size_t need, const char *fn, qn_status *st)
{
    if (l->ws && l->ws_bytes >= need)
        return l->ws;
    if (l->ws && !l->ws_owned) {
        *st = qn_fail(l->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: workspace of %zu bytes, %zu needed", fn, l->ws_bytes, need);
        return NULL;
    }
    {
        unsigned char *nw = (unsigned char *)qn_malloc(l->ctx, need);
        if (!nw) {
            *st = qn_fail(l->ctx, QN_ERR_OUT_OF_MEMORY, "%s: cannot allocate a %zu-byte workspace", fn, need);
            return NULL;
        }
        if (l->ws_owned)
            qn_free(l->ctx, l->ws);
        l->ws = nw;
        l->ws_bytes = need;
        l->ws_owned = 1;
        l->eff_valid = 0;
    }
    return l->ws;
}

/* ---------------------------------------------------------------------------------------------- */
/* noise state refresh (scalar qparams, PQ codebook)                                              */

static qn_status qn_layer_refresh_scalar(qn_layer *l)
{
    size_t nch = qn_observer_channels(l->sq_obs, l->rows);
    float *scale;
    int32_t *zero;
    qn_ma_state ma = l->sq_ma;
    qn_status st;
    if (l->sq_valid && (l->sq_count % l->sq_update) != 0)
        return QN_OK;
    scale = l->sq_scale ? l->sq_scale : (float *)qn_malloc(l->ctx, nch * sizeof(float));
    zero = l->sq_zero ? l->sq_zero : (int32_t *)qn_malloc(l->ctx, nch * sizeof(int32_t));
    if (!scale || !zero) {
        if (!l->sq_scale)
            qn_free(l->ctx, scale);
        if (!l->sq_zero)
            qn_free(l->ctx, zero);
        return qn_fail(l->ctx, QN_ERR_OUT_OF_MEMORY, "scalar noise: out of memory");
    }
    l->sq_scale = scale;
    l->sq_zero = zero;
    l->sq_nch = nch;
    st = qn_observe_qparams(l->ctx, l->sq_obs, l->sq_scheme, l->sq_bits, l->w, l->rows, l->cols, &ma, scale, zero);
    if (st != QN_OK) {
        l->sq_valid = 0;
        return st;
    }
    l->sq_ma = ma;
    l->sq_valid = 1;
    return QN_OK;
}

static qn_status qn_layer_refresh_pq(qn_layer *l)
{
    qn_kmeans_params kp;
    qn_kmeans_result res;
    size_t k = l->pq_k ? l->pq_k : (l->nblocks < 256 ? l->nblocks : 256);
    float *cent;
    uint32_t *codes32;
    size_t i;
    qn_status st;
    if (l->pq_valid && (l->pq_count % l->pq_update) != 0)
        return QN_OK;
    cent = (float *)qn_malloc(l->ctx, k * l->bs * sizeof(float));
    codes32 = (uint32_t *)qn_malloc(l->ctx, l->nblocks * sizeof(uint32_t));
    if (!l->pq_codes)
        l->pq_codes = (uint16_t *)qn_malloc(l->ctx, l->nblocks * sizeof(uint16_t));
    if (!cent || !codes32 || !l->pq_codes) {
        qn_free(l->ctx, cent);
        qn_free(l->ctx, codes32);
        return qn_fail(l->ctx, QN_ERR_OUT_OF_MEMORY, "PQ noise: out of memory");
    }
    qn_kmeans_defaults(&kp, k, l->seed ^ (l->layer_id * 0x9E3779B97F4A7C15ull) ^ l->pq_count);
    kp.iterations = l->pq_iters;
    /* the blocks of W are its rows cut into runs of bs: W itself, viewed as nblocks x bs */
    st = qn_kmeans_train(l->ctx, l->w, l->nblocks, l->bs, &kp, cent, codes32, &res);
    if (st != QN_OK) {
        qn_free(l->ctx, cent);
        qn_free(l->ctx, codes32);
        return st;
    }
    for (i = 0; i < l->nblocks; i++)
        l->pq_codes[i] = (uint16_t)codes32[i];
    qn_free(l->ctx, codes32);
    qn_free(l->ctx, l->pq_centroids);
    l->pq_centroids = cent;
    l->pq_valid = 1;
    qn_log(l->ctx, QN_LOG_DEBUG, "PQ noise: k-means K=%zu bs=%zu over %zu blocks, mse %g", k, l->bs, l->nblocks,
           res.objective);
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* masks and W_eff                                                                                */

static uint32_t qn_threshold24(float p)
{
    return (uint32_t)ceilf(p * 16777216.0f);
}

/*
 * The whole mask of `step`. Large masks are cut into chunks of whole 64-bit
 * words sampled by several threads: each bit depends only on its block index,
 * so the result is the same at any thread count.
 */
static size_t qn_layer_sample_mask(const qn_layer *l, uint64_t step, uint64_t *bits)
{
    uint32_t thr = qn_threshold24(l->p);
    const qn_kernels *k = l->ctx->k;
    size_t n = l->nblocks, nchunks = (n + QN_PAR_CHUNK_BLOCKS - 1) / QN_PAR_CHUNK_BLOCKS;
    uint64_t set = 0;
    long c;
    int nt = qn_threads(l->ctx);
    if (n < QN_PAR_MIN_BLOCKS || nt == 1)
        return (size_t)k->mask_bits(l->key, step, 0, n, thr, bits);
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) reduction(+ : set) num_threads(nt) if (nt > 1)
#endif
    for (c = 0; c < (long)nchunks; c++) {
        size_t first = (size_t)c * QN_PAR_CHUNK_BLOCKS;
        size_t count = n - first < QN_PAR_CHUNK_BLOCKS ? n - first : QN_PAR_CHUNK_BLOCKS;
        set += k->mask_bits(l->key, step, first, count, thr, bits + first / 64);
    }
    return (size_t)set;
}

static int qn_bit(const uint64_t *bits, size_t b)
{
    return (int)((bits[b >> 6] >> (b & 63u)) & 1u);
}

/* The replacement of block b (row r, block column j) into dst[bs]. */
static void qn_layer_phi(const qn_layer *l, size_t r, size_t j, const float *src, float *dst)
{
    size_t t, bs = l->bs;
    switch (l->noise) {
    case QN_NOISE_PROXY:
        for (t = 0; t < bs; t++)
            dst[t] = 0.0f;
        break;
    case QN_NOISE_SCALAR: {
        size_t ch = l->sq_nch > 1 ? r : 0;
        int32_t qmin, qmax;
        qn_qgrid(l->sq_scheme, l->sq_bits, &qmin, &qmax);
        for (t = 0; t < bs; t++)
            dst[t] = qn_fake_quant(src[t], l->sq_scale[ch], l->sq_zero[ch], qmin, qmax);
        break;
    }
    case QN_NOISE_PQ: {
        const float *c = l->pq_centroids + (size_t)l->pq_codes[r * (l->cols / bs) + j] * bs;
        for (t = 0; t < bs; t++)
            dst[t] = c[t];
        break;
    }
    case QN_NOISE_NONE:
        for (t = 0; t < bs; t++)
            dst[t] = src[t];
        break;
    }
}

/* W_eff rows [r0, r1) into weff (row-major, same shape as W). */
static void qn_layer_build_rows(const qn_layer *l, const uint64_t *bits, size_t r0, size_t r1, float *weff)
{
    size_t nbr = l->cols / l->bs, r, j, t;
    float keep = l->noise == QN_NOISE_PROXY ? 1.0f / (1.0f - l->p) : 1.0f;
    if (l->noise == QN_NOISE_PROXY) {
        /* one streaming pass: dropped blocks 0, kept blocks W / (1 - p), split across threads */
        size_t nb = (r1 - r0) * nbr, nchunks = (nb + QN_PAR_CHUNK_BLOCKS - 1) / QN_PAR_CHUNK_BLOCKS;
        const qn_kernels *k = l->ctx->k;
        long c;
        int nt = qn_threads(l->ctx);
        if (nb < QN_PAR_MIN_BLOCKS || nt == 1) {
            k->block_scale(l->w + r0 * l->cols, weff, nb, l->bs, bits, r0 * nbr, keep, 0.0f, 0);
            return;
        }
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
        for (c = 0; c < (long)nchunks; c++) {
            size_t first = (size_t)c * QN_PAR_CHUNK_BLOCKS;
            size_t count = nb - first < QN_PAR_CHUNK_BLOCKS ? nb - first : QN_PAR_CHUNK_BLOCKS;
            k->block_scale(l->w + r0 * l->cols + first * l->bs, weff + first * l->bs, count, l->bs, bits,
                           r0 * nbr + first, keep, 0.0f, 0);
        }
        return;
    }
    for (r = r0; r < r1; r++) {
        const float *wr = l->w + r * l->cols;
        float *er = weff + (r - r0) * l->cols;
        for (j = 0; j < nbr; j++) {
            const float *src = wr + j * l->bs;
            float *dst = er + j * l->bs;
            if (qn_bit(bits, r * nbr + j)) {
                qn_layer_phi(l, r, j, src, dst);
            } else if (keep != 1.0f) {
                for (t = 0; t < l->bs; t++)
                    dst[t] = src[t] * keep;
            } else {
                memcpy(dst, src, l->bs * sizeof(float));
            }
        }
    }
}

/*
 * Per-element gradient factor of the noisy weight: dW += factor * G.
 * Kept blocks: 1 (proxy 1/(1-p)); noised: DropConnect 0, STE 1, SCALAR STE
 * 1 inside [lo, hi] of the channel and 0 outside.
 */
static void qn_layer_grad_row(const qn_layer *l, const uint64_t *bits, size_t bit_base, size_t r, const float *g,
                              float *dw)
{
    size_t nbr = l->cols / l->bs, j, t, bs = l->bs;
    float keep = l->noise == QN_NOISE_PROXY ? 1.0f / (1.0f - l->p) : 1.0f;
    float lo = 0, hi = 0;
    if (l->noise != QN_NOISE_SCALAR || l->grad == QN_GRAD_DROPCONNECT) {
        /* the factor is constant per block: kept `keep`, noised 1 (STE) or 0 (DropConnect) */
        l->ctx->k->block_scale(g, dw, nbr, bs, bits, bit_base, keep, l->grad == QN_GRAD_DROPCONNECT ? 0.0f : 1.0f, 1);
        return;
    }
    {
        size_t ch = l->sq_nch > 1 ? r : 0;
        int32_t qmin, qmax;
        qn_qgrid(l->sq_scheme, l->sq_bits, &qmin, &qmax);
        lo = (float)(qmin - l->sq_zero[ch]) * l->sq_scale[ch];
        hi = (float)(qmax - l->sq_zero[ch]) * l->sq_scale[ch];
    }
    for (j = 0; j < nbr; j++) {
        const float *gb = g + j * bs;
        float *db = dw + j * bs;
        if (!qn_bit(bits, bit_base + j)) {
            for (t = 0; t < bs; t++)
                db[t] += keep * gb[t];
        } else if (l->grad == QN_GRAD_DROPCONNECT) {
            continue;
        } else if (l->noise == QN_NOISE_SCALAR) {
            const float *wb = l->w + r * l->cols + j * bs;
            for (t = 0; t < bs; t++)
                if (wb[t] >= lo && wb[t] <= hi)
                    db[t] += gb[t];
        } else {
            for (t = 0; t < bs; t++)
                db[t] += gb[t];
        }
    }
}

/*
 * Prepare the noise of `step`: refresh qparams / codebook when due (forward
 * only), sample the mask into the workspace and build W_eff there. With
 * `from_forward` the refresh counters advance.
 */
static qn_status qn_layer_prepare(qn_layer *l, uint64_t step, int from_forward, unsigned char *ws,
                                  const qn_ws_layout *lay)
{
    qn_status st;
    uint64_t *bits = (uint64_t *)(ws + lay->mask);
    if (l->eff_valid && l->eff_step == step && !from_forward)
        return QN_OK;
    if (l->noise == QN_NOISE_SCALAR) {
        if (from_forward || !l->sq_valid) {
            st = qn_layer_refresh_scalar(l);
            if (st != QN_OK)
                return st;
        }
    } else if (l->noise == QN_NOISE_PQ) {
        if (from_forward || !l->pq_valid) {
            st = qn_layer_refresh_pq(l);
            if (st != QN_OK)
                return st;
        }
    }
    if (l->kind != QN_LAYER_EMBEDDING)
        qn_layer_sample_mask(l, step, bits);
    if (qn_layer_needs_weff(l))
        qn_layer_build_rows(l, bits, 0, l->rows, (float *)(ws + lay->weff));
    if (from_forward) {
        if (l->noise == QN_NOISE_SCALAR)
            l->sq_count++;
        else if (l->noise == QN_NOISE_PQ)
            l->pq_count++;
    }
    l->eff_valid = 1;
    l->eff_step = step;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* linear                                                                                         */

static void qn_linear_fwd(const qn_layer *l, size_t batch, const float *x, const float *w, float *y)
{
    size_t i;
    if (l->b) {
        for (i = 0; i < batch; i++)
            memcpy(y + i * l->rows, l->b, l->rows * sizeof(float));
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)l->rows, (int)l->cols, 1.0f, x, (int)l->cols,
                w, (int)l->cols, l->b ? 1.0f : 0.0f, y, (int)l->rows);
}

/* ---------------------------------------------------------------------------------------------- */
/* conv2d via im2col                                                                              */

/* cols[(c*kh + ky)*kw + kx][oy*ow + ox] for the channels of group g of one sample. */
static void qn_im2col(const qn_layer *l, const float *xs, size_t g, float *cols)
{
    size_t cg = l->cin / l->groups, c, ky, kx, oy, ox, ohw = l->oh * l->ow;
    for (c = 0; c < cg; c++) {
        const float *xc = xs + (g * cg + c) * l->ih * l->iw;
        for (ky = 0; ky < l->kh; ky++) {
            for (kx = 0; kx < l->kw; kx++) {
                float *row = cols + ((c * l->kh + ky) * l->kw + kx) * ohw;
                for (oy = 0; oy < l->oh; oy++) {
                    /* iy = oy*sh - ph + ky*dh, computed without unsigned wrap */
                    size_t a = oy * l->sh + ky * l->dh;
                    float *dst = row + oy * l->ow;
                    if (a < l->ph || a - l->ph >= l->ih) {
                        memset(dst, 0, l->ow * sizeof(float));
                        continue;
                    }
                    {
                        const float *src = xc + (a - l->ph) * l->iw;
                        for (ox = 0; ox < l->ow; ox++) {
                            size_t bx = ox * l->sw + kx * l->dw;
                            dst[ox] = (bx < l->pw || bx - l->pw >= l->iw) ? 0.0f : src[bx - l->pw];
                        }
                    }
                }
            }
        }
    }
}

/* dx (group g channels of one sample) += col2im(cols). */
static void qn_col2im(const qn_layer *l, const float *cols, size_t g, float *dxs)
{
    size_t cg = l->cin / l->groups, c, ky, kx, oy, ox, ohw = l->oh * l->ow;
    for (c = 0; c < cg; c++) {
        float *dc = dxs + (g * cg + c) * l->ih * l->iw;
        for (ky = 0; ky < l->kh; ky++) {
            for (kx = 0; kx < l->kw; kx++) {
                const float *row = cols + ((c * l->kh + ky) * l->kw + kx) * ohw;
                for (oy = 0; oy < l->oh; oy++) {
                    size_t a = oy * l->sh + ky * l->dh;
                    const float *src = row + oy * l->ow;
                    float *dst;
                    if (a < l->ph || a - l->ph >= l->ih)
                        continue;
                    dst = dc + (a - l->ph) * l->iw;
                    for (ox = 0; ox < l->ow; ox++) {
                        size_t bx = ox * l->sw + kx * l->dw;
                        if (bx >= l->pw && bx - l->pw < l->iw)
                            dst[bx - l->pw] += src[ox];
                    }
                }
            }
        }
    }
}

static void qn_conv_fwd(const qn_layer *l, size_t batch, const float *x, const float *w, float *y, float *cols)
{
    size_t n, g, o, og = l->cout / l->groups, ohw = l->oh * l->ow;
    size_t in_ps = l->cin * l->ih * l->iw, out_ps = l->cout * ohw;
    for (n = 0; n < batch; n++) {
        float *yn = y + n * out_ps;
        for (g = 0; g < l->groups; g++) {
            float *yg = yn + g * og * ohw;
            if (l->b) {
                for (o = 0; o < og; o++) {
                    size_t i;
                    float bv = l->b[g * og + o];
                    for (i = 0; i < ohw; i++)
                        yg[o * ohw + i] = bv;
                }
            }
            qn_im2col(l, x + n * in_ps, g, cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)og, (int)ohw, (int)l->cols, 1.0f,
                        w + g * og * l->cols, (int)l->cols, cols, (int)ohw, l->b ? 1.0f : 0.0f, yg, (int)ohw);
        }
    }
}

/*
 * Conv2d (groups == 1) on a packed compressed weight: per sample, the im2col columns are
 * transposed into rows of patches (oh*ow x cols), multiplied by the packed GEMM
 * (y_t = patches . W_hat^T + b, oh*ow x cout) and transposed back into NCHW.
 */
static void qn_conv_fwd_packed(const qn_layer *l, size_t batch, const float *x, float *y, unsigned char *scratch)
{
    const size_t p = l->oh * l->ow, k = l->cols, r = l->rows;
    const size_t in_ps = l->cin * l->ih * l->iw, out_ps = l->cout * p;
    float *cols = (float *)scratch;
    float *patches = (float *)(scratch + QN_ALIGN_UP(k * p * sizeof(float)));
    float *yt = (float *)(scratch + 2 * QN_ALIGN_UP(k * p * sizeof(float)));
    uintptr_t sp = ((uintptr_t)((unsigned char *)yt + QN_ALIGN_UP(p * r * sizeof(float))) + (QN_ALIGN - 1)) &
                   ~(uintptr_t)(QN_ALIGN - 1);
    void *gws = qn_packed_workspace_size(l->qpk, p) ? (void *)sp : NULL;
    size_t n, i, j, i0, j0;
    for (n = 0; n < batch; n++) {
        float *yn = y + n * out_ps;
        qn_im2col(l, x + n * in_ps, 0, cols);
        for (i0 = 0; i0 < k; i0 += 32) /* cols [k][p] -> patches [p][k], in 32 x 32 tiles */
            for (j0 = 0; j0 < p; j0 += 32)
                for (i = i0; i < k && i < i0 + 32; i++)
                    for (j = j0; j < p && j < j0 + 32; j++)
                        patches[j * k + i] = cols[i * p + j];
        qn_packed_gemm(l->qpk, p, patches, k, l->b, yt, r, gws);
        for (j0 = 0; j0 < p; j0 += 32) /* yt [p][r] -> yn [r][p] */
            for (i0 = 0; i0 < r; i0 += 32)
                for (j = j0; j < p && j < j0 + 32; j++)
                    for (i = i0; i < r && i < i0 + 32; i++)
                        yn[i * p + j] = yt[j * r + i];
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* argument checks shared by the entry points                                                     */

static qn_status qn_layer_check_io(qn_layer *l, size_t batch, const void *x, const void *y, const char *fn)
{
    size_t in_ps = 0, out_ps = 0, t;
    if (!l->w && !l->qtb)
        return qn_fail(l->ctx, QN_ERR_NOT_TRAINED, "%s: no weight bound (qn_layer_bind)", fn);
    if (!x || !y)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: x and y/dy must not be NULL", fn);
    if (batch == 0)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: batch must be positive", fn);
    if (l->kind == QN_LAYER_CONV2D && l->ih == 0)
        return qn_fail(l->ctx, QN_ERR_NOT_TRAINED, "%s: call qn_layer_set_input_size first", fn);
    qn_layer_get_sizes(l, NULL, NULL, &in_ps, &out_ps);
    if (qn_mul_overflow(batch, in_ps, &t) || qn_mul_overflow(t, sizeof(float), &t) || qn_mul_overflow(batch, out_ps, &t) ||
        qn_mul_overflow(t, sizeof(float), &t))
        return qn_fail(l->ctx, QN_ERR_OVERFLOW, "%s: batch %zu overflows the activation sizes", fn, batch);
    if (batch > (size_t)INT32_MAX || l->rows > (size_t)INT32_MAX || l->cols > (size_t)INT32_MAX ||
        (l->kind == QN_LAYER_CONV2D && l->oh * l->ow > (size_t)INT32_MAX))
        return qn_fail(l->ctx, QN_ERR_UNSUPPORTED, "%s: dimensions beyond the 32-bit BLAS interface", fn);
    if (l->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        size_t i;
        for (i = 0; i < batch; i++)
            if (idx[i] < 0 || (uint64_t)idx[i] >= (uint64_t)l->rows)
                return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "%s: index %lld at position %zu is outside [0, %zu)", fn,
                               (long long)idx[i], i, l->rows);
    }
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* embedding                                                                                      */

/* The mask bits of row r's blocks (bit j = block r*nbr + j) for `step`. */
static void qn_embedding_row_mask(const qn_layer *l, size_t r, uint64_t step, uint64_t *rowbits)
{
    size_t nbr = l->cols / l->bs;
    l->ctx->k->mask_bits(l->key, step, (uint64_t)r * nbr, nbr, qn_threshold24(l->p), rowbits);
}

/* Row r of W_eff into dst (cols floats) for the mask of `step`. */
static void qn_embedding_row(const qn_layer *l, size_t r, uint64_t step, uint64_t *rowbits, float *dst)
{
    size_t nbr = l->cols / l->bs, j, t;
    const float *wr = l->w + r * l->cols;
    float keep = l->noise == QN_NOISE_PROXY ? 1.0f / (1.0f - l->p) : 1.0f;
    qn_embedding_row_mask(l, r, step, rowbits);
    for (j = 0; j < nbr; j++) {
        if (qn_bit(rowbits, j)) {
            qn_layer_phi(l, r, j, wr + j * l->bs, dst + j * l->bs);
        } else {
            for (t = 0; t < l->bs; t++)
                dst[j * l->bs + t] = wr[j * l->bs + t] * keep;
        }
    }
}

/* Index of the lowest set bit of a non-zero word. */
static unsigned qn_ctz64(uint64_t m)
{
#if defined(__GNUC__)
    return (unsigned)__builtin_ctzll(m);
#else
    unsigned n = 0;
    while (!(m & 1u)) {
        m >>= 1;
        n++;
    }
    return n;
#endif
}

/*
 * Linear dW += factor (.) (dy^T x) without an extra pass over dW: the noised
 * blocks' old gradients are saved (a p-fraction of dW, into the W_eff region
 * once dx no longer needs it), one cblas_sgemm accumulates alpha * dy^T x into
 * the whole of dW with alpha = the kept factor, and the noised blocks are then
 * fixed from their saved values: DropConnect restores them; proxy STE rescales
 * their increment by (1 - p), i.e. factor 1; scalar STE restores the elements
 * outside [lo, hi]. The increment of a fixed block is recovered as new - old,
 * whose rounding error is that of one more float addition.
 */
/* Block copy and proxy-STE fix with constant-size bodies for the usual block sizes (the compiler
 * turns them into a few vector moves instead of a memcpy call per block). */
#define QN_BLOCK_CASES(BODY)                                                                                           \
    switch (bs) {                                                                                                      \
    case 4: {                                                                                                          \
        const size_t n_ = 4;                                                                                           \
        BODY;                                                                                                          \
        break;                                                                                                         \
    }                                                                                                                  \
    case 8: {                                                                                                          \
        const size_t n_ = 8;                                                                                           \
        BODY;                                                                                                          \
        break;                                                                                                         \
    }                                                                                                                  \
    case 16: {                                                                                                         \
        const size_t n_ = 16;                                                                                          \
        BODY;                                                                                                          \
        break;                                                                                                         \
    }                                                                                                                  \
    default: {                                                                                                         \
        const size_t n_ = bs;                                                                                          \
        BODY;                                                                                                          \
        break;                                                                                                         \
    }                                                                                                                  \
    }

/*
 * Walks the set bits of a mask in order, with a second cursor QN_PF_AHEAD set
 * bits ahead that prefetches the block it points at: noised blocks are
 * scattered over a weight-sized buffer, so each one is a cache miss that the
 * hardware prefetchers cannot predict; prefetching them early overlaps the misses.
 */
#define QN_PF_AHEAD 64

typedef struct qn_bit_cursor {
    const uint64_t *bits;
    size_t words, w;
    uint64_t m;
} qn_bit_cursor;

static void qn_cursor_init(qn_bit_cursor *c, const uint64_t *bits, size_t words)
{
    c->bits = bits;
    c->words = words;
    c->w = 0;
    c->m = words ? bits[0] : 0;
}

/* The next set bit, or SIZE_MAX at the end. */
static size_t qn_cursor_next(qn_bit_cursor *c)
{
    size_t b;
    while (!c->m) {
        if (++c->w >= c->words)
            return SIZE_MAX;
        c->m = c->bits[c->w];
    }
    b = c->w * 64 + qn_ctz64(c->m);
    c->m &= c->m - 1;
    return b;
}

static void qn_prefetch(const void *p)
{
#if defined(__GNUC__)
    __builtin_prefetch(p, 1, 3);
#else
    (void)p;
#endif
}

#define QN_WALK_NOISED(bits, words, base, bs, BODY)                                                                     \
    do {                                                                                                               \
        qn_bit_cursor cur_, pf_;                                                                                       \
        size_t b_, k_ = 0, a_;                                                                                         \
        qn_cursor_init(&cur_, bits, words);                                                                            \
        qn_cursor_init(&pf_, bits, words);                                                                             \
        for (a_ = 0; a_ < QN_PF_AHEAD; a_++) {                                                                         \
            size_t p_ = qn_cursor_next(&pf_);                                                                          \
            if (p_ == SIZE_MAX)                                                                                        \
                break;                                                                                                 \
            qn_prefetch((base) + p_ * (bs));                                                                           \
        }                                                                                                              \
        while ((b_ = qn_cursor_next(&cur_)) != SIZE_MAX) {                                                             \
            size_t p_ = qn_cursor_next(&pf_);                                                                          \
            if (p_ != SIZE_MAX)                                                                                        \
                qn_prefetch((base) + p_ * (bs));                                                                       \
            BODY;                                                                                                      \
            k_++;                                                                                                      \
        }                                                                                                              \
    } while (0)

static void qn_gather_blocks(const uint64_t *bits, size_t words, size_t bs, const float *src, float *saved)
{
    size_t t;
    QN_BLOCK_CASES(QN_WALK_NOISED(bits, words, src, n_, {
        const float *sb = src + b_ * n_;
        float *db = saved + k_ * n_;
        for (t = 0; t < n_; t++)
            db[t] = sb[t];
    }))
}

static void qn_restore_blocks(const uint64_t *bits, size_t words, size_t bs, const float *saved, float *dst)
{
    size_t t;
    QN_BLOCK_CASES(QN_WALK_NOISED(bits, words, dst, n_, {
        float *db = dst + b_ * n_;
        const float *sb = saved + k_ * n_;
        for (t = 0; t < n_; t++)
            db[t] = sb[t];
    }))
}

/* d = o + (d - o) * back on the noised blocks: their increment alpha*G becomes alpha*G*(1-p) = G. */
static void qn_rescale_blocks(const uint64_t *bits, size_t words, size_t bs, const float *saved, float *dst,
                              float back)
{
    size_t t;
    QN_BLOCK_CASES(QN_WALK_NOISED(bits, words, dst, n_, {
        float *db = dst + b_ * n_;
        const float *sb = saved + k_ * n_;
        for (t = 0; t < n_; t++)
            db[t] = sb[t] + (db[t] - sb[t]) * back;
    }))
}

static void qn_linear_noisy_dw(const qn_layer *l, const uint64_t *bits, float *saved, int M, const float *dy,
                               const float *x, float *dweight)
{
    size_t bs = l->bs, nbr = l->cols / bs, words = (l->nblocks + 63) / 64, w, k;
    int R = (int)l->rows, C = (int)l->cols;
    float alpha = l->noise == QN_NOISE_PROXY ? 1.0f / (1.0f - l->p) : 1.0f;
    float back = 1.0f - l->p;
    int32_t qmin = 0, qmax = 0;
    if (l->noise == QN_NOISE_SCALAR)
        qn_qgrid(l->sq_scheme, l->sq_bits, &qmin, &qmax);
    qn_gather_blocks(bits, words, bs, dweight, saved);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, M, alpha, dy, R, x, C, 1.0f, dweight, C);
    if (l->grad == QN_GRAD_DROPCONNECT) {
        qn_restore_blocks(bits, words, bs, saved, dweight);
        return;
    }
    if (l->noise == QN_NOISE_PROXY) {
        qn_rescale_blocks(bits, words, bs, saved, dweight, back);
        return;
    }
    for (w = 0, k = 0; w < words; w++) {
        uint64_t m = bits[w];
        while (m) {
            size_t b = w * 64 + qn_ctz64(m), t;
            float *d = dweight + b * bs;
            const float *o = saved + k * bs;
            m &= m - 1;
            k++;
            if (l->grad == QN_GRAD_DROPCONNECT) {
                memcpy(d, o, bs * sizeof(float));
            } else if (l->noise == QN_NOISE_PROXY) {
                for (t = 0; t < bs; t++)
                    d[t] = o[t] + (d[t] - o[t]) * back;
            } else if (l->noise == QN_NOISE_SCALAR) {
                size_t r = b / nbr, ch = l->sq_nch > 1 ? r : 0;
                float lo = (float)(qmin - l->sq_zero[ch]) * l->sq_scale[ch];
                float hi = (float)(qmax - l->sq_zero[ch]) * l->sq_scale[ch];
                const float *wb = l->w + b * bs;
                for (t = 0; t < bs; t++)
                    if (!(wb[t] >= lo && wb[t] <= hi))
                        d[t] = o[t];
            }
        }
    }
}

static void qn_bias_grad(const qn_layer *l, size_t batch, size_t per, const float *dy, float *dbias)
{
    size_t n, o, i;
    for (n = 0; n < batch; n++) {
        for (o = 0; o < l->rows; o++) {
            const float *d = dy + (n * l->rows + o) * per;
            float s = 0.0f;
            for (i = 0; i < per; i++)
                s += d[i];
            dbias[o] += s;
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* PQ-compressed forward / backward (layer_pq.c holds the state)                                  */

static qn_status qn_layer_forward_pq(qn_layer *l, size_t batch, const void *x, float *y)
{
    qn_ws_layout lay;
    unsigned char *ws;
    qn_status st;
    float *what;
    if (l->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        size_t i;
        for (i = 0; i < batch; i++) {
            if (l->qtb)
                qn_qtensor_decode_rows(l->qtb, (size_t)idx[i], 1, y + i * l->cols);
            else
                qn_layer_pq_decode_row(l, (size_t)idx[i], y + i * l->cols);
        }
        return QN_OK;
    }
    st = qn_layer_layout(l, batch, &lay);
    if (st != QN_OK)
        return st;
    ws = qn_layer_ws(l, lay.total, "qn_layer_forward", &st);
    if (!ws)
        return st;
    if (l->qpk && l->kind == QN_LAYER_CONV2D) {
        qn_conv_fwd_packed(l, batch, (const float *)x, y, ws + lay.scratch);
        return QN_OK;
    }
    if (l->qpk) {
        /* the packed GEMM wants 64-byte aligned scratch; a caller's workspace may be less aligned */
        uintptr_t sp = ((uintptr_t)(ws + lay.scratch) + (QN_ALIGN - 1)) & ~(uintptr_t)(QN_ALIGN - 1);
        qn_packed_gemm(l->qpk, batch, (const float *)x, l->cols, l->b, y, l->rows,
                       qn_packed_workspace_size(l->qpk, batch) ? (void *)sp : NULL);
        return QN_OK;
    }
    what = (float *)(ws + lay.weff);
    if (l->qtb)
        qn_qtensor_decode_rows(l->qtb, 0, l->rows, what);
    else
        qn_layer_pq_decode(l, what);
    if (l->kind == QN_LAYER_LINEAR)
        qn_linear_fwd(l, batch, (const float *)x, what, y);
    else
        qn_conv_fwd(l, batch, (const float *)x, what, y, (float *)(ws + lay.scratch));
    l->eff_valid = 1; /* W_hat stays for the backward of this step */
    return QN_OK;
}

static qn_status qn_layer_backward_pq(qn_layer *l, size_t batch, const void *x, const float *dy, float *dx,
                                      float *dc, float *dbias)
{
    qn_ws_layout lay;
    unsigned char *ws;
    qn_status st;
    const float *what;
    float *g;
    if (l->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        size_t i, nbr = l->cols / l->cq_bs;
        for (i = 0; i < batch; i++)
            qn_layer_pq_reduce_grad(l, (size_t)idx[i] * nbr, nbr, dy + i * l->cols, dc);
        return QN_OK;
    }
    st = qn_layer_layout(l, batch, &lay);
    if (st != QN_OK)
        return st;
    ws = qn_layer_ws(l, lay.total, "qn_layer_backward", &st);
    if (!ws)
        return st;
    if (!l->eff_valid)
        qn_layer_pq_decode(l, (float *)(ws + lay.weff));
    what = (const float *)(ws + lay.weff);
    if (l->kind == QN_LAYER_LINEAR) {
        int M = (int)batch, R = (int)l->rows, C = (int)l->cols;
        g = (float *)(ws + lay.scratch);
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, C, R, 1.0f, dy, R, what, C, 0.0f, dx, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, M, 1.0f, dy, R, (const float *)x, C, 0.0f, g, C);
        if (dbias)
            qn_bias_grad(l, batch, 1, dy, dbias);
    } else {
        const float *xf = (const float *)x;
        size_t ohw = l->oh * l->ow, og = l->cout / l->groups, n, gi;
        size_t in_ps = l->cin * l->ih * l->iw, out_ps = l->cout * ohw;
        float *cols = (float *)(ws + lay.scratch);
        g = (float *)(ws + lay.scratch + QN_ALIGN_UP(l->cols * ohw * sizeof(float)));
        memset(g, 0, l->rows * l->cols * sizeof(float));
        if (dx)
            memset(dx, 0, batch * in_ps * sizeof(float));
        for (n = 0; n < batch; n++) {
            const float *dyn = dy + n * out_ps;
            for (gi = 0; gi < l->groups; gi++) {
                const float *dyg = dyn + gi * og * ohw;
                qn_im2col(l, xf + n * in_ps, gi, cols);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)og, (int)l->cols, (int)ohw, 1.0f, dyg,
                            (int)ohw, cols, (int)ohw, 1.0f, g + gi * og * l->cols, (int)l->cols);
                if (dx) {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l->cols, (int)ohw, (int)og, 1.0f,
                                what + gi * og * l->cols, (int)l->cols, dyg, (int)ohw, 0.0f, cols, (int)ohw);
                    qn_col2im(l, cols, gi, dx + n * in_ps);
                }
            }
        }
        if (dbias)
            qn_bias_grad(l, batch, ohw, dy, dbias);
    }
    qn_layer_pq_reduce_grad(l, 0, l->cq_nblocks, g, dc);
    l->eff_valid = 0; /* the optimizer may move the centroids now */
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* public forward / backward                                                                      */

QN_API qn_status qn_layer_forward(qn_layer *layer, size_t batch, const void *x, float *y)
{
    qn_status st;
    qn_ws_layout lay;
    unsigned char *ws;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    st = qn_layer_check_io(layer, batch, x, y, "qn_layer_forward");
    if (st != QN_OK)
        return st;
    if (layer->cq || layer->qtb)
        return qn_layer_forward_pq(layer, batch, x, y);
    switch (layer->kind) {
    case QN_LAYER_LINEAR:
        qn_linear_fwd(layer, batch, (const float *)x, layer->w, y);
        break;
    case QN_LAYER_EMBEDDING: {
        const int64_t *idx = (const int64_t *)x;
        size_t i;
        for (i = 0; i < batch; i++)
            memcpy(y + i * layer->cols, layer->w + (size_t)idx[i] * layer->cols, layer->cols * sizeof(float));
        break;
    }
    case QN_LAYER_CONV2D:
        st = qn_layer_layout(layer, batch, &lay);
        if (st != QN_OK)
            return st;
        ws = qn_layer_ws(layer, lay.total, "qn_layer_forward", &st);
        if (!ws)
            return st;
        qn_conv_fwd(layer, batch, (const float *)x, layer->w, y, (float *)(ws + lay.scratch));
        break;
    }
    return QN_OK;
}

QN_API qn_status qn_layer_forward_noisy(qn_layer *layer, size_t batch, const void *x, float *y, uint64_t step)
{
    qn_status st;
    qn_ws_layout lay;
    unsigned char *ws;
    const float *weff;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    st = qn_layer_check_io(layer, batch, x, y, "qn_layer_forward_noisy");
    if (st != QN_OK)
        return st;
    if (layer->cq || layer->qtb || layer->noise == QN_NOISE_NONE || layer->p == 0.0f)
        return qn_layer_forward(layer, batch, x, y);
    st = qn_layer_layout(layer, batch, &lay);
    if (st != QN_OK)
        return st;
    ws = qn_layer_ws(layer, lay.total, "qn_layer_forward_noisy", &st);
    if (!ws)
        return st;
    if (layer->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        size_t i;
        /* refresh qparams / codebook when due; the rows are built on the fly */
        st = qn_layer_prepare(layer, step, 1, ws, &lay);
        if (st != QN_OK)
            return st;
        for (i = 0; i < batch; i++)
            qn_embedding_row(layer, (size_t)idx[i], step, (uint64_t *)(ws + lay.mask), y + i * layer->cols);
        return QN_OK;
    }
    st = qn_layer_prepare(layer, step, 1, ws, &lay);
    if (st != QN_OK)
        return st;
    weff = (const float *)(ws + lay.weff);
    if (layer->kind == QN_LAYER_LINEAR)
        qn_linear_fwd(layer, batch, (const float *)x, weff, y);
    else
        qn_conv_fwd(layer, batch, (const float *)x, weff, y, (float *)(ws + lay.scratch));
    return QN_OK;
}

QN_API qn_status qn_layer_backward(qn_layer *layer, size_t batch, const void *x, const float *dy, float *dx,
                                   float *dweight, float *dbias, uint64_t step)
{
    qn_status st;
    qn_ws_layout lay;
    unsigned char *ws;
    const float *weff;
    uint64_t *bits;
    int noisy;
    qn_layer *l = layer;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    st = qn_layer_check_io(layer, batch, x, dy, "qn_layer_backward");
    if (st != QN_OK)
        return st;
    if (!dweight)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "qn_layer_backward: dweight must not be NULL");
    if (l->kind == QN_LAYER_EMBEDDING && dx)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "qn_layer_backward: an embedding has no dx (pass NULL)");
    if (l->kind == QN_LAYER_EMBEDDING && dbias)
        return qn_fail(l->ctx, QN_ERR_INVALID_ARG, "qn_layer_backward: an embedding has no bias gradient (pass NULL)");
    if (l->qtb)
        return qn_fail(l->ctx, QN_ERR_UNSUPPORTED,
                       "qn_layer_backward: the layer is bound to a compressed tensor (evaluation only)");
    if (l->cq)
        return qn_layer_backward_pq(l, batch, x, dy, dx, dweight, dbias);
    noisy = l->noise != QN_NOISE_NONE && l->p > 0.0f;
    st = qn_layer_layout(l, batch, &lay);
    if (st != QN_OK)
        return st;
    ws = qn_layer_ws(l, lay.total, "qn_layer_backward", &st);
    if (!ws)
        return st;
    if (noisy) {
        st = qn_layer_prepare(l, step, 0, ws, &lay);
        if (st != QN_OK)
            return st;
    }
    bits = (uint64_t *)(ws + lay.mask);
    weff = noisy && qn_layer_needs_weff(l) ? (const float *)(ws + lay.weff) : l->w;

    if (l->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        size_t i;
        for (i = 0; i < batch; i++) {
            size_t r = (size_t)idx[i];
            if (noisy) {
                qn_embedding_row_mask(l, r, step, bits);
                qn_layer_grad_row(l, bits, 0, r, dy + i * l->cols, dweight + r * l->cols);
            } else {
                size_t t;
                for (t = 0; t < l->cols; t++)
                    dweight[r * l->cols + t] += dy[i * l->cols + t];
            }
        }
        return QN_OK;
    }

    if (l->kind == QN_LAYER_LINEAR) {
        const float *xf = (const float *)x;
        int M = (int)batch, R = (int)l->rows, C = (int)l->cols;
        if (dx)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, C, R, 1.0f, dy, R, weff, C, 0.0f, dx, C);
        if (!noisy || (l->noise == QN_NOISE_PQ && l->grad == QN_GRAD_STE)) {
            /* every factor is 1: plain accumulation */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, R, C, M, 1.0f, dy, R, xf, C, 1.0f, dweight, C);
        } else {
            qn_linear_noisy_dw(l, bits, (float *)(ws + lay.weff), M, dy, xf, dweight);
            l->eff_valid = 0; /* the W_eff region was reused for the saved blocks */
        }
        if (dbias)
            qn_bias_grad(l, batch, 1, dy, dbias);
        return QN_OK;
    }

    /* conv2d */
    {
        const float *xf = (const float *)x;
        size_t ohw = l->oh * l->ow, og = l->cout / l->groups, n, g, r;
        size_t in_ps = l->cin * l->ih * l->iw, out_ps = l->cout * ohw;
        float *cols = (float *)(ws + lay.scratch);
        float *gacc = (float *)(ws + lay.scratch + QN_ALIGN_UP(l->cols * ohw * sizeof(float)));
        float *gdst = noisy ? gacc : dweight;
        if (noisy)
            memset(gacc, 0, l->rows * l->cols * sizeof(float));
        if (dx)
            memset(dx, 0, batch * in_ps * sizeof(float));
        for (n = 0; n < batch; n++) {
            const float *dyn = dy + n * out_ps;
            for (g = 0; g < l->groups; g++) {
                const float *dyg = dyn + g * og * ohw;
                qn_im2col(l, xf + n * in_ps, g, cols);
                /* dW_g += dy_g . cols^T */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)og, (int)l->cols, (int)ohw, 1.0f, dyg, (int)ohw,
                            cols, (int)ohw, 1.0f, gdst + g * og * l->cols, (int)l->cols);
                if (dx) {
                    /* dcols = W_g^T . dy_g, then scatter back */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l->cols, (int)ohw, (int)og, 1.0f,
                                weff + g * og * l->cols, (int)l->cols, dyg, (int)ohw, 0.0f, cols, (int)ohw);
                    qn_col2im(l, cols, g, dx + n * in_ps);
                }
            }
        }
        if (noisy)
            for (r = 0; r < l->rows; r++)
                qn_layer_grad_row(l, bits, r * (l->cols / l->bs), r, gacc + r * l->cols, dweight + r * l->cols);
        if (dbias)
            qn_bias_grad(l, batch, ohw, dy, dbias);
    }
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* mask export                                                                                    */

QN_API qn_status qn_layer_mask_size(const qn_layer *layer, size_t *n_blocks, size_t *n_bytes)
{
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (!n_blocks && !n_bytes)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_mask_size: both outputs are NULL");
    if (n_blocks)
        *n_blocks = layer->nblocks;
    if (n_bytes)
        *n_bytes = (layer->nblocks + 7) / 8;
    return QN_OK;
}

QN_API qn_status qn_layer_export_mask(const qn_layer *layer, uint64_t step, uint8_t *bits, size_t n_bytes,
                                      size_t *n_noised)
{
    size_t need, i, words;
    uint64_t *tmp;
    size_t set;
    if (!layer)
        return QN_ERR_INVALID_ARG;
    if (!bits)
        return qn_fail(layer->ctx, QN_ERR_INVALID_ARG, "qn_layer_export_mask: bits is NULL");
    need = (layer->nblocks + 7) / 8;
    if (n_bytes < need)
        return qn_fail(layer->ctx, QN_ERR_BUFFER_TOO_SMALL, "qn_layer_export_mask: %zu bytes given, %zu needed", n_bytes,
                       need);
    words = (layer->nblocks + 63) / 64;
    tmp = (uint64_t *)qn_malloc(layer->ctx, words * sizeof(uint64_t));
    if (!tmp)
        return qn_fail(layer->ctx, QN_ERR_OUT_OF_MEMORY, "qn_layer_export_mask: out of memory");
    if (layer->noise == QN_NOISE_NONE) {
        memset(tmp, 0, words * sizeof(uint64_t));
        set = 0;
    } else {
        set = qn_layer_sample_mask(layer, step, tmp);
    }
    for (i = 0; i < need; i++)
        bits[i] = (uint8_t)(tmp[i >> 3] >> ((i & 7u) * 8));
    qn_free(layer->ctx, tmp);
    if (n_noised)
        *n_noised = set;
    return QN_OK;
}
