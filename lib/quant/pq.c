/*
 * libqnoise: product quantization of weight blocks (public API in qnoise/pq.h).
 * SPDX-License-Identifier: MIT
 *
 * A qn_pq owns a K x block_size codebook and the K squared norms of its
 * centroids, both allocated at creation; the norms are recomputed whenever
 * the codebook changes. Training runs the k-means engine (quant/kmeans.h)
 * into a fresh buffer and swaps it in only on success, so a failing or
 * cancelled training keeps the previous codebook and statistics.
 *
 * Assignment (assign, partial_sums) goes through qn_assign_rows (kmeans.h):
 * the fused pq_assign kernel with the stored norms, and exact differences for
 * the rows whose fused choice cannot be certified, in chunks of QN_PQ_CHUNK
 * blocks through stack buffers (32-bit codes narrowed to uint16, K <= 65536),
 * so assign allocates nothing and const calls are thread-safe. With several
 * threads (qn_context_set_threads) the blocks are cut into one contiguous
 * range per thread; codes are per block and do not depend on the cut.
 * partial_sums sums each range into its own buffers and adds them in range
 * order, so its result is deterministic for a given thread count.
 * Every call validates all of its input before writing any output.
 */
#include <float.h>
#include <math.h> /* isfinite */
#include <string.h>

#include <qnoise/pq.h>

#include "core/internal.h"
#include "qn_config.h"
#include "quant/kmeans.h"

#define QN_PQ_MIN_K ((size_t)2)
#define QN_PQ_MAX_K ((size_t)65536)
#define QN_PQ_CHUNK ((size_t)4096)     /* blocks per kernel call in assign */
#define QN_PQ_MIN_RANGE ((size_t)2048) /* fewer blocks per thread are not worth a thread */

struct qn_pq {
    qn_context *ctx;
    size_t bs;          /* block size (floats) */
    size_t k;           /* centroids */
    float *c;           /* k x bs codebook */
    float *cn;          /* k squared norms of the centroids (the fused kernel's input) */
    double cn_max;      /* the largest of them, in double */
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

/* Like qn_pq_finite, and the largest magnitude in *vmax (for the fused kernel's overflow check). */
static int qn_pq_finite_max(const float *v, size_t count, size_t *bad, double *vmax)
{
    double mx = 0.0;
    size_t i;
    for (i = 0; i < count; i++) {
        const double a = v[i] < 0 ? -(double)v[i] : (double)v[i];
        if (!isfinite(v[i])) {
            *bad = i;
            return 0;
        }
        if (a > mx)
            mx = a;
    }
    *vmax = mx;
    return 1;
}

/* Recompute the norms after the codebook changed. */
static void qn_pq_codebook_changed(qn_pq *pq)
{
    pq->cn_max = qn_centroid_norms(pq->c, pq->k, pq->bs, pq->cn);
}

/* Threads (row ranges) for n blocks: the context's, at most one per QN_PQ_MIN_RANGE blocks. */
static int qn_pq_ranges(const qn_pq *pq, size_t n_blocks)
{
    size_t nr = (size_t)qn_threads(pq->ctx), cap = n_blocks / QN_PQ_MIN_RANGE;
    if (nr > cap)
        nr = cap;
    if (nr > 1024)
        nr = 1024;
    return nr < 1 ? 1 : (int)nr;
}

/* Blocks [lo, hi) of range r of nr over n blocks: contiguous, sizes differ by at most 1. */
static void qn_pq_range(size_t n, int nr, int r, size_t *lo, size_t *hi)
{
    const size_t base = n / (size_t)nr, rem = n % (size_t)nr, ur = (size_t)r;
    *lo = ur * base + (ur < rem ? ur : rem);
    *hi = *lo + base + (ur < rem ? 1 : 0);
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
    pq->cn = (float *)qn_malloc(ctx, n_centroids * sizeof(float));
    if (!pq->c || !pq->cn) {
        qn_free(ctx, pq->c);
        qn_free(ctx, pq->cn);
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
    qn_free(pq->ctx, pq->cn);
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
    qn_pq_codebook_changed(pq);
    pq->res = res;
    pq->has_codebook = 1;
    pq->has_training = 1;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* assign, decode                                                                                 */

/* The norms for qn_assign_rows: NULL when the fused kernel must not run on these blocks. */
static const float *qn_pq_fused_norms(const qn_pq *pq, double xmax)
{
    return qn_fused_usable(pq->bs, xmax, pq->cn_max) ? pq->cn : NULL;
}

QN_API qn_status qn_pq_assign(const qn_pq *pq, const float *blocks, size_t n_blocks, uint16_t *codes)
{
    size_t n, bytes, bad;
    double xmax = 0.0;
    const float *cn;
    int nr;
    long r;

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
    if (!qn_pq_finite_max(blocks, n, &bad, &xmax))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "qn_pq_assign: blocks[%zu] (block %zu) is not finite", bad,
                       bad / pq->bs);

    cn = qn_pq_fused_norms(pq, xmax);
    nr = qn_pq_ranges(pq, n_blocks);
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nr) if (nr > 1)
#endif
    for (r = 0; r < (long)nr; r++) {
        uint32_t buf[QN_PQ_CHUNK];
        float dists[QN_PQ_CHUNK];
        size_t lo, hi, i0, i;
        qn_pq_range(n_blocks, nr, (int)r, &lo, &hi);
        for (i0 = lo; i0 < hi; i0 += QN_PQ_CHUNK) {
            const size_t cnt = hi - i0 < QN_PQ_CHUNK ? hi - i0 : QN_PQ_CHUNK;
            qn_assign_rows(pq->ctx->k, blocks + i0 * pq->bs, cnt, pq->bs, pq->bs, pq->c, cn, pq->k, buf,
                           dists);
            for (i = 0; i < cnt; i++)
                codes[i0 + i] = (uint16_t)buf[i]; /* buf[i] < k <= 65536 */
        }
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
    qn_pq_codebook_changed(pq);
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

/* ---------------------------------------------------------------------------------------------- */
/* distributed k-means: partial sums and the update from reduced sums                             */

QN_API qn_status qn_pq_partial_sums(const qn_pq *pq, const float *blocks, size_t n_blocks, double *sums,
                                    uint64_t *counts, double *sq_err)
{
    const char *fn = "qn_pq_partial_sums";
    size_t n, bytes, bad, kd, per, total_doubles, j;
    double xmax = 0.0, err_total;
    const float *cn;
    double *buf, *rsum, *rerr;
    uint64_t *rcnt;
    int nr;
    long r, q;

    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!blocks || !sums || !counts)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "%s: blocks, sums and counts must not be NULL", fn);
    if (n_blocks == 0)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "%s: n_blocks must be >= 1", fn);
    if (qn_mul_overflow(n_blocks, pq->bs, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(pq->ctx, QN_ERR_OVERFLOW, "%s: %zu blocks of %zu floats overflow size_t", fn, n_blocks,
                       pq->bs);
    if (!pq->has_codebook)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "%s: train or set the centroids first", fn);
    if (!qn_pq_finite_max(blocks, n, &bad, &xmax))
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "%s: blocks[%zu] (block %zu) is not finite", fn, bad,
                       bad / pq->bs);

    /* Per range: K x bs sums, K errors (doubles) and K counts, plus a chunk of codes and distances. */
    nr = qn_pq_ranges(pq, n_blocks);
    kd = pq->k * pq->bs; /* cannot overflow: checked at creation */
    per = kd + pq->k;
    if (qn_mul_overflow(per, (size_t)nr, &total_doubles) ||
        qn_mul_overflow(total_doubles, sizeof(double), &bytes))
        return qn_fail(pq->ctx, QN_ERR_OVERFLOW, "%s: %d partial sums of %zu x %zu overflow size_t", fn, nr,
                       pq->k, pq->bs);
    buf = (double *)qn_malloc(pq->ctx, bytes);
    rcnt = (uint64_t *)qn_malloc(pq->ctx, (size_t)nr * pq->k * sizeof(uint64_t));
    if (!buf || !rcnt) {
        qn_free(pq->ctx, buf);
        qn_free(pq->ctx, rcnt);
        return qn_fail(pq->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory for %d partial sums of %zu x %zu", fn,
                       nr, pq->k, pq->bs);
    }

    cn = qn_pq_fused_norms(pq, xmax);
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nr) if (nr > 1)
#endif
    for (r = 0; r < (long)nr; r++) {
        uint32_t codes[QN_PQ_CHUNK];
        float dists[QN_PQ_CHUNK];
        double *s = buf + (size_t)r * per, *e = s + kd;
        uint64_t *c = rcnt + (size_t)r * pq->k;
        size_t lo, hi, i0, i;
        for (i = 0; i < per; i++)
            s[i] = 0.0;
        for (i = 0; i < pq->k; i++)
            c[i] = 0;
        qn_pq_range(n_blocks, nr, (int)r, &lo, &hi);
        for (i0 = lo; i0 < hi; i0 += QN_PQ_CHUNK) {
            const size_t cnt = hi - i0 < QN_PQ_CHUNK ? hi - i0 : QN_PQ_CHUNK;
            const float *x = blocks + i0 * pq->bs;
            qn_assign_rows(pq->ctx->k, x, cnt, pq->bs, pq->bs, pq->c, cn, pq->k, codes, dists);
            pq->ctx->k->codebook_accumulate(x, cnt, pq->bs, pq->bs, codes, pq->c, s, c, e);
        }
    }

    /* This call's totals (ranges added in order into range 0), then added to the caller's arrays. */
    rsum = buf;
    rerr = buf + kd;
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nr) if (nr > 1 && kd >= 16384)
#endif
    for (q = 0; q < (long)kd; q++) {
        int rr;
        double v = rsum[q];
        for (rr = 1; rr < nr; rr++)
            v += buf[(size_t)rr * per + (size_t)q];
        sums[q] += v;
    }
    err_total = 0.0;
    for (j = 0; j < pq->k; j++) {
        int rr;
        double e = rerr[j];
        uint64_t c = rcnt[j];
        for (rr = 1; rr < nr; rr++) {
            e += buf[(size_t)rr * per + kd + j];
            c += rcnt[(size_t)rr * pq->k + j];
        }
        counts[j] += c;
        err_total += e;
    }
    if (sq_err)
        *sq_err += err_total;
    qn_free(pq->ctx, buf);
    qn_free(pq->ctx, rcnt);
    return QN_OK;
}

QN_API qn_status qn_pq_update_from_sums(qn_pq *pq, const double *sums, const uint64_t *counts,
                                        size_t *n_empty)
{
    const char *fn = "qn_pq_update_from_sums";
    size_t j, t, empty = 0;

    if (!pq)
        return QN_ERR_INVALID_ARG;
    if (!sums || !counts)
        return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "%s: sums and counts must not be NULL", fn);
    if (!pq->has_codebook)
        return qn_fail(pq->ctx, QN_ERR_NOT_TRAINED, "%s: train or set the centroids first", fn);
    /* Validate everything before writing anything. */
    for (j = 0; j < pq->k; j++) {
        for (t = 0; t < pq->bs; t++) {
            const double v = sums[j * pq->bs + t];
            if (!isfinite(v))
                return qn_fail(pq->ctx, QN_ERR_INVALID_ARG, "%s: sums[%zu] (centroid %zu) is not finite", fn,
                               j * pq->bs + t, j);
            if (counts[j] > 0) {
                const double m = v / (double)counts[j];
                if (!(m <= FLT_MAX && m >= -FLT_MAX))
                    return qn_fail(pq->ctx, QN_ERR_INVALID_ARG,
                                   "%s: centroid %zu, element %zu (%g) does not fit a float", fn, j, t, m);
            }
        }
    }
    for (j = 0; j < pq->k; j++) {
        if (counts[j] == 0) {
            empty++;
            continue;
        }
        for (t = 0; t < pq->bs; t++)
            pq->c[j * pq->bs + t] = (float)(sums[j * pq->bs + t] / (double)counts[j]);
    }
    qn_pq_codebook_changed(pq);
    pq->has_training = 0; /* no longer the codebook a training produced */
    if (n_empty)
        *n_empty = empty;
    return QN_OK;
}
