/*
 * libqnoise: iterative product quantization over registered layers, and the
 * size accounting of the compressed model.
 * SPDX-License-Identifier: MIT
 *
 * A stage compresses all its layers or none: every layer's k-means runs into a
 * detached state first (qn_layer_pq_train), and only when all succeeded are
 * the states installed (qn_layer_pq_commit, which cannot fail).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <qnoise/ipq.h>

#include "layer/layer_internal.h"

typedef struct qn_ipq_entry {
    qn_layer *layer;
    char *name;
    unsigned stage;
    size_t bs, k;
} qn_ipq_entry;

struct qn_ipq {
    qn_context *ctx;
    qn_ipq_entry *e;
    size_t n, cap;
    size_t extra_params;
    unsigned iterations;
    uint64_t seed;
    qn_centroid_grad grad;
    qn_codebook_precision precision;
    int any_done;
    unsigned last_stage; /* valid when any_done */
};

QN_API qn_status qn_ipq_create(qn_context *ctx, qn_ipq **out)
{
    qn_ipq *q;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    q = (qn_ipq *)qn_calloc(ctx, 1, sizeof *q);
    if (!q) {
        *out = NULL;
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_ipq_create: out of memory");
    }
    q->ctx = ctx;
    q->iterations = 15;
    q->grad = QN_CENTROID_GRAD_MEAN;
    q->precision = QN_CODEBOOK_FP16;
    *out = q;
    return QN_OK;
}

QN_API void qn_ipq_destroy(qn_ipq *ipq)
{
    size_t i;
    if (!ipq)
        return;
    for (i = 0; i < ipq->n; i++)
        qn_free(ipq->ctx, ipq->e[i].name);
    qn_free(ipq->ctx, ipq->e);
    qn_free(ipq->ctx, ipq);
}

QN_API qn_status qn_ipq_add_layer(qn_ipq *ipq, qn_layer *layer, const char *name, unsigned stage, size_t block_size,
                                  size_t n_centroids)
{
    static const char fn[] = "qn_ipq_add_layer";
    size_t i, nb, len;
    char *nm = NULL;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (!layer)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: layer is NULL", fn);
    for (i = 0; i < ipq->n; i++)
        if (ipq->e[i].layer == layer)
            return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: the layer is already registered (as #%zu)", fn, i);
    if (ipq->any_done && stage <= ipq->last_stage)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: stage %u is already done", fn, stage);
    if (block_size == 0 || layer->cols % block_size)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: block_size %zu does not divide the blocked axis (%zu)", fn,
                       block_size, layer->cols);
    nb = layer->rows * (layer->cols / block_size);
    if (n_centroids < 2 || n_centroids > 65536 || n_centroids > nb)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: %zu centroids for %zu blocks (must be 2..min(65536, blocks))",
                       fn, n_centroids, nb);
    if (ipq->n == ipq->cap) {
        size_t nc = ipq->cap ? ipq->cap * 2 : 8;
        qn_ipq_entry *ne = (qn_ipq_entry *)qn_malloc(ipq->ctx, nc * sizeof *ne);
        if (!ne)
            return qn_fail(ipq->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (ipq->n)
            memcpy(ne, ipq->e, ipq->n * sizeof *ne);
        qn_free(ipq->ctx, ipq->e);
        ipq->e = ne;
        ipq->cap = nc;
    }
    if (name) {
        len = strlen(name);
        nm = (char *)qn_malloc(ipq->ctx, len + 1);
        if (!nm)
            return qn_fail(ipq->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        memcpy(nm, name, len + 1);
    }
    ipq->e[ipq->n].layer = layer;
    ipq->e[ipq->n].name = nm;
    ipq->e[ipq->n].stage = stage;
    ipq->e[ipq->n].bs = block_size;
    ipq->e[ipq->n].k = n_centroids;
    ipq->n++;
    return QN_OK;
}

QN_API qn_status qn_ipq_add_params(qn_ipq *ipq, size_t count)
{
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (qn_add_overflow(ipq->extra_params, count, &ipq->extra_params))
        return qn_fail(ipq->ctx, QN_ERR_OVERFLOW, "qn_ipq_add_params: parameter count overflows size_t");
    return QN_OK;
}

QN_API qn_status qn_ipq_set_iterations(qn_ipq *ipq, unsigned iterations)
{
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (iterations == 0)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_set_iterations: iterations must be >= 1");
    ipq->iterations = iterations;
    return QN_OK;
}

QN_API qn_status qn_ipq_set_seed(qn_ipq *ipq, uint64_t seed)
{
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    ipq->seed = seed;
    return QN_OK;
}

QN_API qn_status qn_ipq_set_centroid_grad(qn_ipq *ipq, qn_centroid_grad mode)
{
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (mode != QN_CENTROID_GRAD_MEAN && mode != QN_CENTROID_GRAD_SUM)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_set_centroid_grad: unknown mode %d", (int)mode);
    ipq->grad = mode;
    return QN_OK;
}

QN_API qn_status qn_ipq_set_codebook_precision(qn_ipq *ipq, qn_codebook_precision precision)
{
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (precision != QN_CODEBOOK_FP32 && precision != QN_CODEBOOK_FP16)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG,
                       "qn_ipq_set_codebook_precision: %d is not FP32 or FP16 (int8 comes from qn_ipq_codebooks_int8)",
                       (int)precision);
    ipq->precision = precision;
    return QN_OK;
}

/* The lowest registered stage above `after` (any stage when !have_after); 0 when none. */
static int qn_ipq_next_stage(const qn_ipq *q, int have_after, unsigned after, unsigned *stage)
{
    size_t i;
    int found = 0;
    for (i = 0; i < q->n; i++) {
        unsigned s = q->e[i].stage;
        if (have_after && s <= after)
            continue;
        if (!found || s < *stage)
            *stage = s;
        found = 1;
    }
    return found;
}

QN_API qn_status qn_ipq_get_stages(const qn_ipq *ipq, unsigned *n_stages, unsigned *n_done)
{
    unsigned total = 0, done = 0, s = 0;
    int have = 0;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    while (qn_ipq_next_stage(ipq, have, s, &s)) {
        total++;
        if (ipq->any_done && s <= ipq->last_stage)
            done++;
        have = 1;
    }
    if (n_stages)
        *n_stages = total;
    if (n_done)
        *n_done = done;
    return QN_OK;
}

/* A per-layer seed: splitmix64 of the schedule seed and the registration index. */
static uint64_t qn_ipq_layer_seed(uint64_t seed, size_t index)
{
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

QN_API qn_status qn_ipq_advance(qn_ipq *ipq, unsigned *stage)
{
    static const char fn[] = "qn_ipq_advance";
    qn_layer_pq_state *st;
    unsigned s = 0;
    size_t i, m = 0, done = 0;
    qn_status rc = QN_OK;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (!qn_ipq_next_stage(ipq, ipq->any_done, ipq->last_stage, &s))
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: every stage is done", fn);
    for (i = 0; i < ipq->n; i++)
        m += ipq->e[i].stage == s;
    st = (qn_layer_pq_state *)qn_calloc(ipq->ctx, m, sizeof *st);
    if (!st)
        return qn_fail(ipq->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (i = 0; i < ipq->n && rc == QN_OK; i++) {
        if (ipq->e[i].stage != s)
            continue;
        rc = qn_progress(ipq->ctx, "ipq", (uint64_t)done, (uint64_t)m);
        if (rc != QN_OK)
            break;
        rc = qn_layer_pq_train(ipq->e[i].layer, ipq->e[i].bs, ipq->e[i].k, ipq->iterations,
                               qn_ipq_layer_seed(ipq->seed, i), &st[done], fn);
        if (rc == QN_OK)
            done++;
    }
    if (rc == QN_OK)
        rc = qn_progress(ipq->ctx, "ipq", (uint64_t)m, (uint64_t)m);
    if (rc != QN_OK) {
        for (i = 0; i < done; i++)
            qn_layer_pq_state_free(ipq->ctx, &st[i]);
        qn_free(ipq->ctx, st);
        return rc;
    }
    for (i = 0, done = 0; i < ipq->n; i++) {
        if (ipq->e[i].stage != s)
            continue;
        qn_layer_pq_commit(ipq->e[i].layer, &st[done++]);
        ipq->e[i].layer->cq_grad = ipq->grad;
    }
    qn_free(ipq->ctx, st);
    ipq->any_done = 1;
    ipq->last_stage = s;
    if (stage)
        *stage = s;
    qn_log(ipq->ctx, QN_LOG_INFO, "%s: stage %u compressed (%zu layers)", fn, s, m);
    return QN_OK;
}

QN_API qn_status qn_ipq_codebooks_int8(qn_ipq *ipq, qn_qscheme scheme, double *max_mse)
{
    static const char fn[] = "qn_ipq_codebooks_int8";
    size_t i, t, n;
    double worst = 0.0;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: unknown scheme %d", fn, (int)scheme);
    /* check everything first so that an error changes nothing */
    for (i = 0; i < ipq->n; i++) {
        const qn_layer *l = ipq->e[i].layer;
        if (!l->cq)
            continue;
        n = l->cq_k * l->cq_bs;
        for (t = 0; t < n; t++)
            if (!isfinite(l->cq_c[t]))
                return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "%s: layer #%zu has a non-finite centroid", fn, i);
    }
    for (i = 0; i < ipq->n; i++) {
        double mse = 0.0;
        qn_status rc;
        if (!ipq->e[i].layer->cq)
            continue;
        /* cannot fail after the checks above (the min-max observer allocates nothing) */
        rc = qn_layer_pq_codebook_int8(ipq->e[i].layer, scheme, &mse);
        if (rc != QN_OK)
            return rc;
        if (mse > worst)
            worst = mse;
    }
    if (max_mse)
        *max_mse = worst;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* size accounting                                                                                */

static unsigned qn_ceil_log2(size_t k)
{
    unsigned b = 0;
    while (((size_t)1 << b) < k)
        b++;
    return b;
}

typedef struct qn_ipq_sizes {
    double v[9];
} qn_ipq_sizes;

/* Bytes of one compressed layer's codebook in the precision it is stored in. */
static double qn_codebook_bytes(const qn_ipq *q, const qn_layer *l)
{
    double n = (double)l->cq_k * (double)l->cq_bs;
    if (l->cq_i8)
        return n + 8.0; /* int8 values + float scale + int32 zero point */
    return n * (q->precision == QN_CODEBOOK_FP32 ? 4.0 : 2.0);
}

static double qn_codes_packed_bytes(const qn_layer *l)
{
    double bits = (double)l->cq_nblocks * (double)qn_ceil_log2(l->cq_k);
    return ceil(bits / 8.0);
}

static void qn_ipq_compute(const qn_ipq *q, qn_ipq_sizes *z)
{
    size_t i;
    double params = (double)q->extra_params, other = (double)q->extra_params * 4.0;
    memset(z, 0, sizeof *z);
    for (i = 0; i < q->n; i++) {
        const qn_layer *l = q->e[i].layer;
        double numel = (double)l->rows * (double)l->cols;
        double bias = (l->kind == QN_LAYER_EMBEDDING || !l->b) ? 0.0 : (double)l->rows;
        params += numel + bias;
        other += bias * 4.0;
        if (!l->cq) {
            other += numel * 4.0;
            continue;
        }
        {
            unsigned w = l->cq_k <= 16 ? 4u : (l->cq_k <= 256 ? 8u : 16u);
            z->v[QN_SIZE_CODES] += numel * log2((double)l->cq_k) / (double)l->cq_bs / 8.0;
            z->v[QN_SIZE_CODES_PACKED] += qn_codes_packed_bytes(l);
            z->v[QN_SIZE_CODES_ALIGNED] += ceil((double)l->cq_nblocks * (double)w / 8.0);
            z->v[QN_SIZE_CENTROIDS_FP16] += (double)l->cq_k * (double)l->cq_bs * 2.0;
            z->v[QN_SIZE_CENTROIDS] += qn_codebook_bytes(q, l);
        }
    }
    z->v[QN_SIZE_BASELINE] = params * 4.0;
    z->v[QN_SIZE_OTHER] = other;
    z->v[QN_SIZE_TOTAL] = z->v[QN_SIZE_CODES] + z->v[QN_SIZE_CENTROIDS_FP16] + other;
    z->v[QN_SIZE_TOTAL_PACKED] = z->v[QN_SIZE_CODES_PACKED] + z->v[QN_SIZE_CENTROIDS] + other;
}

QN_API qn_status qn_ipq_get_size(const qn_ipq *ipq, qn_size_item item, double *bytes)
{
    qn_ipq_sizes z;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if ((int)item < 0 || (int)item > (int)QN_SIZE_TOTAL_PACKED)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_get_size: unknown item %d", (int)item);
    if (!bytes)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_get_size: bytes is NULL");
    qn_ipq_compute(ipq, &z);
    *bytes = z.v[item];
    return QN_OK;
}

QN_API qn_status qn_ipq_num_layers(const qn_ipq *ipq, size_t *n_layers)
{
    if (!ipq || !n_layers)
        return QN_ERR_INVALID_ARG;
    *n_layers = ipq->n;
    return QN_OK;
}

QN_API qn_status qn_ipq_layer_report(const qn_ipq *ipq, size_t index, int *compressed, double *bytes, double *rel_mse,
                                     double *snr_db)
{
    const qn_layer *l;
    double rel = 0.0, snr = INFINITY, b;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (index >= ipq->n)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_layer_report: index %zu of %zu layers", index, ipq->n);
    l = ipq->e[index].layer;
    if (l->cq) {
        if (!l->w)
            return qn_fail(ipq->ctx, QN_ERR_NOT_TRAINED, "qn_ipq_layer_report: layer #%zu has no bound weight", index);
        qn_layer_pq_error(l, &rel, &snr);
        b = qn_codes_packed_bytes(l) + qn_codebook_bytes(ipq, l);
    } else {
        b = (double)l->rows * (double)l->cols * 4.0;
    }
    if (compressed)
        *compressed = l->cq;
    if (bytes)
        *bytes = b;
    if (rel_mse)
        *rel_mse = rel;
    if (snr_db)
        *snr_db = snr;
    return QN_OK;
}

/* A growable text buffer from the context allocator. */
typedef struct qn_text {
    const qn_context *ctx;
    char *p;
    size_t len, cap;
    int oom;
} qn_text;

static void qn_text_add(qn_text *t, const char *fmt, ...) QN_PRINTF(2, 3);

static void qn_text_add(qn_text *t, const char *fmt, ...)
{
    va_list ap;
    int n;
    if (t->oom)
        return;
    va_start(ap, fmt);
    n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->oom = 1;
        return;
    }
    if (!t->p || t->len + (size_t)n + 1 > t->cap) {
        size_t nc = t->cap ? t->cap : 1024;
        char *np;
        while (nc < t->len + (size_t)n + 1)
            nc *= 2;
        np = (char *)qn_malloc(t->ctx, nc);
        if (!np) {
            t->oom = 1;
            return;
        }
        if (t->p)
            memcpy(np, t->p, t->len);
        qn_free(t->ctx, t->p);
        t->p = np;
        t->cap = nc;
        va_start(ap, fmt);
        n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
    }
    t->len += (size_t)n;
}

QN_API qn_status qn_ipq_report(const qn_ipq *ipq, char *buf, size_t cap, size_t *length)
{
    static const char *item_names[] = {"baseline (all fp32)", "codes, fairseq (log2 K bits)",
                                       "codes, packed (ceil log2 K bits)", "codes, 4/8/16-bit",
                                       "centroids, fp16 (fairseq)", "centroids, stored", "other (fp32)",
                                       "total, fairseq accounting", "total, exact packed"};
    qn_text t;
    qn_ipq_sizes z;
    size_t i;
    if (!ipq)
        return QN_ERR_INVALID_ARG;
    if (!length)
        return qn_fail(ipq->ctx, QN_ERR_INVALID_ARG, "qn_ipq_report: length is NULL");
    memset(&t, 0, sizeof t);
    t.ctx = ipq->ctx;
    qn_text_add(&t, "%-20s %5s %11s %4s %6s %12s %10s %8s\n", "layer", "stage", "shape", "bs", "K", "bytes",
                "rel.MSE", "SNR dB");
    for (i = 0; i < ipq->n; i++) {
        const qn_ipq_entry *e = &ipq->e[i];
        const qn_layer *l = e->layer;
        char shape[48], nm[24];
        int cq = 0;
        double bytes = 0.0, rel = 0.0, snr = 0.0;
        qn_status rc = qn_ipq_layer_report(ipq, i, &cq, &bytes, &rel, &snr);
        if (rc != QN_OK) {
            qn_free(ipq->ctx, t.p);
            return rc;
        }
        snprintf(shape, sizeof shape, "%zux%zu", l->rows, l->cols);
        if (e->name)
            snprintf(nm, sizeof nm, "%s", e->name);
        else
            snprintf(nm, sizeof nm, "#%zu", i);
        if (cq)
            qn_text_add(&t, "%-20s %5u %11s %4zu %6zu %12.0f %10.3e %8.2f\n", nm, e->stage, shape, e->bs, e->k, bytes,
                        rel, snr);
        else
            qn_text_add(&t, "%-20s %5u %11s %4zu %6zu %12.0f %10s %8s\n", nm, e->stage, shape, e->bs, e->k, bytes,
                        "dense", "-");
    }
    qn_ipq_compute(ipq, &z);
    for (i = 0; i < sizeof item_names / sizeof item_names[0]; i++)
        qn_text_add(&t, "%-34s %14.1f B %10.4f MiB\n", item_names[i], z.v[i], z.v[i] / 1048576.0);
    if (z.v[QN_SIZE_TOTAL] > 0.0 && z.v[QN_SIZE_TOTAL_PACKED] > 0.0)
        qn_text_add(&t, "compression ratio: %.2fx (fairseq accounting), %.2fx (exact packed)\n",
                    z.v[QN_SIZE_BASELINE] / z.v[QN_SIZE_TOTAL], z.v[QN_SIZE_BASELINE] / z.v[QN_SIZE_TOTAL_PACKED]);
    if (t.oom) {
        qn_free(ipq->ctx, t.p);
        return qn_fail(ipq->ctx, QN_ERR_OUT_OF_MEMORY, "qn_ipq_report: out of memory");
    }
    *length = t.len;
    if (buf) {
        if (cap < t.len + 1) {
            qn_free(ipq->ctx, t.p);
            return qn_fail(ipq->ctx, QN_ERR_BUFFER_TOO_SMALL, "qn_ipq_report: %zu bytes given, %zu needed", cap,
                           t.len + 1);
        }
        memcpy(buf, t.p, t.len + 1);
    }
    qn_free(ipq->ctx, t.p);
    return QN_OK;
}
