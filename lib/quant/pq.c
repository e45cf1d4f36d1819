/*
 * libqnoise: product quantization of weight blocks (public API in qnoise/pq.h).
 * SPDX-License-Identifier: MIT
 *
 * A qn_pq owns a K x block_size codebook allocated at creation. Training runs
 * the k-means engine (quant/kmeans.h) into a fresh buffer and swaps it in only
 * on success, so a failing or cancelled training keeps the previous codebook
 * and statistics. Assignment goes through the context's nearest_l2 kernel in
 * chunks of QN_PQ_CHUNK blocks via a stack buffer of 32-bit codes narrowed to
 * uint16 (K <= 65536), so const calls allocate nothing and are thread-safe.
 * Every call validates all of its input before writing any output.
 */
#include <math.h> /* isfinite */
#include <string.h>

#include <qnoise/pq.h>

#include "core/internal.h"
#include "quant/kmeans.h"

#define QN_PQ_MIN_K ((size_t)2)
#define QN_PQ_MAX_K ((size_t)65536)
#define QN_PQ_CHUNK ((size_t)4096) /* blocks per kernel call in assign */

struct qn_pq {
    qn_context *ctx;
    size_t bs;          /* block size (floats) */
    size_t k;           /* centroids */
    float *c;           /* k x bs codebook */
    int has_codebook;   /* trained or set_centroids */
    int has_training;   /* the codebook comes from a training: stats below are valid */
    /* training settings */
    uint64_t seed;
    unsigned iterations;
    qn_kmeans_init init;
    double tol;
    size_t max_samples;
    /* last training */
    qn_kmeans_result res;
};

static int qn_pq_finite(const float *v, size_t count, size_t *bad)
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
/* creation, settings                                                                             */

QN_API qn_status qn_pq_create(qn_context *ctx, size_t block_size, size_t n_centroids, qn_pq **out)
{
    qn_pq *pq;
    size_t n, bytes;
    if (out)
        *out = NULL;
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_pq_create: out is NULL");
    if (block_size == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_pq_create: block_size must be >= 1");
    if (n_centroids < QN_PQ_MIN_K || n_centroids > QN_PQ_MAX_K)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_pq_create: n_centroids = %zu is not in %zu..%zu", n_centroids,
                       QN_PQ_MIN_K, QN_PQ_MAX_K);
    if (qn_mul_overflow(n_centroids, block_size, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "qn_pq_create: a %zu x %zu codebook overflows size_t", n_centroids,
                       block_size);
    pq = (qn_pq *)qn_calloc(ctx, 1, sizeof *pq);
    if (!pq)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_pq_create: out of memory");
    pq->c = (float *)qn_malloc(ctx, bytes);
    if (!pq->c) {
        qn_free(ctx, pq);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_pq_create: out of memory for a %zu x %zu codebook",
                       n_centroids, block_size);
    }
    pq->ctx = ctx;
    pq->bs = block_size;
    pq->k = n_centroids;
    pq->has_codebook = 0;
    pq->has_training = 0;
    pq->seed = 0;
    pq->iterations = 20;
    pq->init = QN_KMEANS_INIT_RANDOM;
    pq->tol = 1e-4;
    pq->max_samples = 0;
    *out = pq;
    return QN_OK;
}

QN_API void qn_pq_destroy(qn_pq *pq)
{
    if (!pq)
        return;
    qn_free(pq->ctx, pq->c);
    qn_free(pq->ctx, pq);
}

QN_API qn_status qn_pq_set_seed(qn_pq *pq, uint64_t seed)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    pq->seed = seed;
    return QN_OK;
}

QN_API qn_status qn_pq_set_iterations(qn_pq *pq, unsigned iterations)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (iterations == 0)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_set_iterations: iterations must be >= 1");
    pq->iterations = iterations;
    return QN_OK;
}

QN_API qn_status qn_pq_set_init(qn_pq *pq, qn_kmeans_init init)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (init != QN_KMEANS_INIT_RANDOM && init != QN_KMEANS_INIT_PLUSPLUS)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_set_init: unknown init %d", (int)init);
    pq->init = init;
    return QN_OK;
}

QN_API qn_status qn_pq_set_tolerance(qn_pq *pq, double tol)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!(tol >= 0.0) || !isfinite(tol))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_set_tolerance: tol = %g must be finite and >= 0", tol);
    pq->tol = tol;
    return QN_OK;
}

QN_API qn_status qn_pq_set_max_samples(qn_pq *pq, size_t max_samples)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    pq->max_samples = max_samples;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* training                                                                                       */

QN_API qn_status qn_pq_train(qn_pq *pq, const float *blocks, size_t n_blocks)
{
    qn_kmeans_params kp;
    qn_kmeans_result res;
    size_t n, bytes, ns, bad;
    float *fresh;
    qn_status st;

    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!blocks)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_train: blocks is NULL");
    if (n_blocks == 0)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_train: n_blocks must be >= 1");
    if (qn_mul_overflow(n_blocks, pq->bs, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(pq->ctx, QN_ERR_OVERFLOW, "qn_pq_train: %zu blocks of %zu floats overflow size_t", n_blocks,
                       pq->bs);
    ns = (pq->max_samples > 0 && n_blocks > pq->max_samples) ? pq->max_samples : n_blocks;
    if (ns < pq->k)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG,
                       "qn_pq_train: %zu training blocks (of %zu given, max_samples %zu) are fewer than the %zu centroids",
                       ns, n_blocks, pq->max_samples, pq->k);
    if (!qn_pq_finite(blocks, n, &bad))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_train: blocks[%zu] (block %zu) is not finite", bad,
                       bad / pq->bs);

    fresh = (float *)qn_malloc(pq->ctx, pq->k * pq->bs * sizeof(float));
    if (!fresh)
        return qn_fail(pq->ctx, QN_ERR_OUT_OF_MEMORY, "qn_pq_train: out of memory for a %zu x %zu codebook", pq->k,
                       pq->bs);
    qn_kmeans_defaults(&kp, pq->k, pq->seed);
    kp.iterations = pq->iterations;
    kp.tol = pq->tol;
    kp.init = pq->init;
    kp.max_samples = pq->max_samples;
    memset(&res, 0, sizeof res);
    st = qn_kmeans_train(pq->ctx, blocks, n_blocks, pq->bs, &kp, fresh, NULL, &res);
    if (st != QN_OK) {
        qn_free(pq->ctx, fresh);
        return st; /* the engine logged why; the previous codebook stays */
    }
    qn_free(pq->ctx, pq->c);
    pq->c = fresh;
    pq->res = res;
    pq->has_codebook = 1;
    pq->has_training = 1;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* assign, decode                                                                                 */

QN_API qn_status qn_pq_assign(const qn_pq *pq, const float *blocks, size_t n_blocks, uint16_t *codes)
{
    uint32_t buf[QN_PQ_CHUNK];
    size_t n, bytes, bad, i0, i;

    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!blocks || !codes)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_assign: blocks and codes must not be NULL");
    if (n_blocks == 0)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_assign: n_blocks must be >= 1");
    if (qn_mul_overflow(n_blocks, pq->bs, &n) || qn_mul_overflow(n, sizeof(float), &bytes) ||
        qn_mul_overflow(n_blocks, sizeof(uint16_t), &bytes))
        return qn_fail(pq->ctx, QN_ERR_OVERFLOW, "qn_pq_assign: %zu blocks of %zu floats overflow size_t", n_blocks,
                       pq->bs);
    if (!pq->has_codebook)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "qn_pq_assign: train or set the centroids first");
    if (!qn_pq_finite(blocks, n, &bad))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_assign: blocks[%zu] (block %zu) is not finite", bad,
                       bad / pq->bs);

    for (i0 = 0; i0 < n_blocks; i0 += QN_PQ_CHUNK) {
        const size_t cnt = n_blocks - i0 < QN_PQ_CHUNK ? n_blocks - i0 : QN_PQ_CHUNK;
        pq->ctx->k->nearest_l2(blocks + i0 * pq->bs, cnt, pq->bs, pq->c, pq->k, pq->bs, buf, NULL);
        for (i = 0; i < cnt; i++)
            codes[i0 + i] = (uint16_t)buf[i]; /* buf[i] < k <= 65536 */
    }
    return QN_OK;
}

QN_API qn_status qn_pq_decode(const qn_pq *pq, const uint16_t *codes, size_t n_blocks, float *blocks)
{
    size_t n, bytes, i;

    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!codes || !blocks)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_decode: codes and blocks must not be NULL");
    if (n_blocks == 0)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_decode: n_blocks must be >= 1");
    if (qn_mul_overflow(n_blocks, pq->bs, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(pq->ctx, QN_ERR_OVERFLOW, "qn_pq_decode: %zu blocks of %zu floats overflow size_t", n_blocks,
                       pq->bs);
    if (!pq->has_codebook)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "qn_pq_decode: train or set the centroids first");
    for (i = 0; i < n_blocks; i++)
        if ((size_t)codes[i] >= pq->k)
            return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_decode: codes[%zu] = %u is not below %zu", i,
                           (unsigned)codes[i], pq->k);
    for (i = 0; i < n_blocks; i++)
        memcpy(blocks + i * pq->bs, pq->c + (size_t)codes[i] * pq->bs, pq->bs * sizeof(float));
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* codebook and statistics                                                                        */

QN_API qn_status qn_pq_get_centroids(const qn_pq *pq, float *centroids)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!centroids)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_get_centroids: centroids is NULL");
    if (!pq->has_codebook)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "qn_pq_get_centroids: train or set the centroids first");
    memcpy(centroids, pq->c, pq->k * pq->bs * sizeof(float));
    return QN_OK;
}

QN_API qn_status qn_pq_set_centroids(qn_pq *pq, const float *centroids)
{
    size_t bad;
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!centroids)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_set_centroids: centroids is NULL");
    if (!qn_pq_finite(centroids, pq->k * pq->bs, &bad))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_set_centroids: centroids[%zu] (centroid %zu) is not finite",
                       bad, bad / pq->bs);
    memcpy(pq->c, centroids, pq->k * pq->bs * sizeof(float));
    pq->has_codebook = 1;
    pq->has_training = 0; /* the statistics of an earlier training no longer describe this codebook */
    return QN_OK;
}

QN_API qn_status qn_pq_objective(const qn_pq *pq, double *mean_sq_error)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!mean_sq_error)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_objective: mean_sq_error is NULL");
    if (!pq->has_training)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "qn_pq_objective: the codebook does not come from a training");
    *mean_sq_error = pq->res.objective;
    return QN_OK;
}

QN_API qn_status qn_pq_get_training_info(const qn_pq *pq, size_t *n_trained, unsigned *iterations_run,
                                         size_t *n_splits, size_t *n_empty)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!pq->has_training)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED,
                       "qn_pq_get_training_info: the codebook does not come from a training");
    if (n_trained)
        *n_trained = pq->res.n_trained;
    if (iterations_run)
        *iterations_run = pq->res.iterations_run;
    if (n_splits)
        *n_splits = pq->res.n_splits;
    if (n_empty)
        *n_empty = pq->res.n_empty;
    return QN_OK;
}

QN_API qn_status qn_pq_get_shape(const qn_pq *pq, size_t *block_size, size_t *n_centroids)
{
    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (block_size)
        *block_size = pq->bs;
    if (n_centroids)
        *n_centroids = pq->k;
    return QN_OK;
}
