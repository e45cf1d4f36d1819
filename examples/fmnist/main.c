/*
 * qnoise-fmnist: the end-to-end demo of libqnoise. Trains an MLP (and, with
 * --full, a small CNN) on Fashion-MNIST without noise and with Quant-Noise
 * (proxy, exact PQ, scalar intN), compresses every trained model with int8,
 * int4 and iPQ over a sweep of block sizes and centroid counts (one-shot, and
 * staged with centroid fine-tuning, plus int8 codebooks), writes each
 * compressed model as GGUF, reloads it and measures test accuracy through the
 * compressed weights (packed kernels). Prints the table, writes results.md and
 * results.svg into --out. See docs/results.md.
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

#include "data.h"
#include "net.h"
#include "report.h"

/* ---------------------------------------------------------------------------------------------- */
/* configuration                                                                                  */

typedef struct config {
    const char *out, *data;
    int quick, full;
    size_t train_n, test_n;   /* 0: all */
    int epochs;               /* training epochs of every variant */
    size_t batch;
    float lr0, lr_ft;         /* initial rate of the MLP (cosine to lr_ft), fine-tuning rate */
    float lr0_cnn;            /* initial rate of the CNN (0.05 diverged with proxy noise on its convs) */
    int epochs_cnn;           /* training epochs of the CNN (slower per epoch: im2col convs) */
    int n_scales_cnn;         /* block scales of the CNN's sweep (the first n of scales) */
    size_t ft_steps;          /* fine-tuning batches after each iPQ stage */
    float p;                  /* noise rate of every Quant-Noise variant */
    int n_seeds;
    int archs[2];
    int n_archs;
    size_t scales[3];         /* block scales of the sweep (1, 2, 4: blocks 8, 16, 32 in linear layers) */
    int n_scales;
    size_t ks[3];             /* centroid counts of the sweep */
    int n_ks;
    size_t noise_k;           /* K of the exact PQ noise */
    unsigned threads;         /* 0: the library's default */
} config;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnoise-fmnist [--quick | --full] [--out DIR] [--data DIR] [--model mlp|cnn|both] [--threads N]\n"
            "\n"
            "Train on Fashion-MNIST with and without Quant-Noise, compress every model (int8, int4,\n"
            "iPQ over block sizes 8/16/32 and K = 256/64/16, one-shot and staged with centroid\n"
            "fine-tuning, int8 codebooks), evaluate the compressed models (written as GGUF and\n"
            "reloaded) on the 10,000 test images through the packed kernels, and report.\n"
            "\n"
            "  --quick       smoke test: 8,000 training and 2,000 test images, 2 epochs, block 8 only\n"
            "                (under a minute; with --model both about a minute)\n"
            "  (default)     the MLP, one seed, the whole sweep (a few minutes on 2 cores)\n"
            "  --full        the MLP and the CNN, two seeds (under an hour on 2 cores)\n"
            "  --out DIR     where results.md, results.svg and the .gguf models go (default fmnist-out)\n"
            "  --data DIR    the IDX files (default " FM_DEFAULT_DIR ", from Debian's\n"
            "                dataset-fashion-mnist package)\n"
            "  --model M     mlp, cnn or both (default: mlp; --full: both)\n"
            "  --threads N   library threads (default: all cores; results are reproducible for a given\n"
            "                thread count and ISA)\n"
            "  --epochs N    training epochs of every model (default: MLP 4, CNN 3; --quick 2)\n"
            "  --help        this text\n"
            "\n"
            "Exit status: 0 done, 1 failure (data missing or corrupt, a library error, a file that\n"
            "does not round-trip, or an uncompressed accuracy not far above chance), 2 bad usage.\n");
}

/* ---------------------------------------------------------------------------------------------- */
/* training variants and compression rows                                                         */

enum { V_NONE, V_PROXY, V_PQ, V_INT8, V_INT4 };

typedef struct variant {
    int kind;      /* V_* */
    size_t scale;  /* block scale (PROXY, PQ) */
    char name[32];
} variant;

static void variant_noise(const config *c, const variant *v, fm_noise *nz)
{
    memset(nz, 0, sizeof *nz);
    nz->scale = v->scale ? v->scale : 1;
    nz->p = c->p;
    nz->update = 200;
    switch (v->kind) {
    case V_PROXY:
        nz->kind = QN_NOISE_PROXY;
        break;
    case V_PQ:
        nz->kind = QN_NOISE_PQ;
        nz->n_centroids = c->noise_k;
        break;
    case V_INT8:
    case V_INT4:
        nz->kind = QN_NOISE_SCALAR;
        nz->bits = v->kind == V_INT8 ? 8 : 4;
        nz->scale = 1;
        nz->update = 50;
        break;
    default:
        nz->kind = QN_NOISE_NONE;
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* compressed models: build, write, reload, evaluate                                              */

static int st_ok(qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "qnoise-fmnist: %s: %s\n", what, qn_status_str(st));
        return 0;
    }
    return 1;
}

/* Add unit i's bias (and, when dense, weight) to the model. */
static int add_dense_unit(qn_model *m, const fm_unit *u, int with_weight)
{
    char name[64];
    size_t shape[4];
    if (with_weight) {
        size_t nd = 2;
        shape[0] = u->out_c;
        if (u->conv) {
            shape[1] = u->in_c;
            shape[2] = shape[3] = u->kh;
            nd = 4;
        } else {
            shape[1] = u->in_c;
        }
        snprintf(name, sizeof name, "%s.weight", u->name);
        if (!st_ok(qn_model_add_dense(m, name, nd, shape, u->w), "add weight"))
            return -1;
    }
    shape[0] = u->bn;
    snprintf(name, sizeof name, "%s.bias", u->name);
    return st_ok(qn_model_add_dense(m, name, 1, shape, u->b), "add bias") ? 0 : -1;
}

/* Add a compressed weight (the model owns qt on success; destroyed here on failure). */
static int add_qt_unit(qn_model *m, const fm_unit *u, qn_qtensor *qt)
{
    char name[64];
    if (u->conv) {
        size_t shape[4];
        shape[0] = u->out_c;
        shape[1] = u->in_c;
        shape[2] = shape[3] = u->kh;
        if (!st_ok(qn_qtensor_set_shape(qt, 4, shape), "set shape")) {
            qn_qtensor_destroy(qt);
            return -1;
        }
    }
    snprintf(name, sizeof name, "%s.weight", u->name);
    if (!st_ok(qn_model_add_qtensor(m, name, qt), "add compressed weight")) {
        qn_qtensor_destroy(qt);
        return -1;
    }
    return add_dense_unit(m, u, 0);
}

/* Exact bytes of a model: compressed tensors at qn_qtensor_nbytes, dense ones at 4 bytes per value. */
static double model_bytes(const qn_model *m)
{
    size_t n = 0, i;
    double bytes = 0;
    qn_model_count(m, &n);
    for (i = 0; i < n; i++) {
        int comp = 0;
        size_t nd = 0, shape[QN_QTENSOR_MAX_DIMS], k, cnt = 1;
        qn_model_get_info(m, i, &comp, &nd, shape);
        if (comp) {
            const qn_qtensor *qt = NULL;
            qn_model_get_qtensor(m, i, &qt);
            bytes += (double)qn_qtensor_nbytes(qt);
        } else {
            for (k = 0; k < nd; k++)
                cnt *= shape[k];
            bytes += 4.0 * (double)cnt;
        }
    }
    return bytes;
}

/*
 * Write @p m to path as GGUF, reload it, check every tensor decodes to the same
 * values, bind the layers of a fresh network to the reloaded (compressed)
 * tensors and measure test accuracy through them.
 */
static int eval_via_gguf(const config *c, fm_arch arch, const qn_model *m, const char *path, const fm_data *test,
                         double *acc)
{
    qn_context *ctx = NULL;
    qn_model *back = NULL;
    fm_net ev;
    size_t n = 0, n2 = 0, i;
    float *a = NULL, *b = NULL;
    int rc = -1, have_net = 0;
    memset(&ev, 0, sizeof ev);
    if (!st_ok(qn_model_save_gguf(m, path), path))
        return -1;
    if (!st_ok(qn_context_create(&ctx), "context"))
        return -1;
    if (c->threads)
        qn_context_set_threads(ctx, c->threads);
    if (!st_ok(qn_model_load_gguf(ctx, path, 0, &back), path))
        goto out;
    qn_model_count(m, &n);
    qn_model_count(back, &n2);
    if (n != n2) {
        fprintf(stderr, "qnoise-fmnist: %s: %zu tensors written, %zu read back\n", path, n, n2);
        goto out;
    }
    /* round trip: every tensor decodes to the same bits */
    for (i = 0; i < n; i++) {
        size_t nd = 0, shape[QN_QTENSOR_MAX_DIMS], k, cnt = 1, j;
        const char *name = NULL;
        qn_model_get_info(m, i, NULL, &nd, shape);
        qn_model_get_name(m, i, &name);
        for (k = 0; k < nd; k++)
            cnt *= shape[k];
        a = (float *)malloc(cnt * sizeof(float));
        b = (float *)malloc(cnt * sizeof(float));
        if (!a || !b || qn_model_find(back, name, &j) != QN_OK || qn_model_get_dense(m, i, a, cnt) != QN_OK ||
            qn_model_get_dense(back, j, b, cnt) != QN_OK || memcmp(a, b, cnt * sizeof(float)) != 0) {
            fprintf(stderr, "qnoise-fmnist: %s: tensor %s does not round-trip\n", path, name ? name : "?");
            goto out;
        }
        free(a);
        free(b);
        a = b = NULL;
    }
    /* the evaluation network, bound to the reloaded tensors */
    if (fm_net_create(&ev, ctx, arch, 1000, 0) != 0)
        goto out;
    have_net = 1;
    for (i = 0; i < (size_t)ev.n; i++) {
        fm_unit *u = &ev.u[i];
        char name[64];
        size_t wi = 0, bi = 0;
        int comp = 0;
        snprintf(name, sizeof name, "%s.weight", u->name);
        if (!st_ok(qn_model_find(back, name, &wi), name))
            goto out;
        snprintf(name, sizeof name, "%s.bias", u->name);
        if (!st_ok(qn_model_find(back, name, &bi), name) || !st_ok(qn_model_get_dense(back, bi, u->b, u->bn), name))
            goto out;
        qn_model_get_info(back, wi, &comp, NULL, NULL);
        if (comp) {
            const qn_qtensor *qt = NULL;
            if (!st_ok(qn_model_get_qtensor(back, wi, &qt), "compressed tensor") ||
                !st_ok(qn_layer_bind_compressed(u->l, qt, u->b), "bind compressed"))
                goto out;
        } else if (!st_ok(qn_model_get_dense(back, wi, u->w, u->wn), "dense weight")) {
            goto out;
        }
    }
    *acc = fm_net_accuracy(&ev, test);
    rc = *acc < 0 ? -1 : 0;
out:
    free(a);
    free(b);
    if (have_net)
        fm_net_destroy(&ev);
    qn_model_destroy(back);
    qn_context_destroy(ctx);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* the experiment                                                                                 */

typedef struct run_state {
    const config *c;
    qn_context *ctx;
    const fm_data *train, *test;
    fm_arch arch;
    int seed;
    fm_results *res;
    int ai; /* arch index in res */
} run_state;

static void lr_at(const config *c, fm_arch arch, int epoch, int epochs, float *lr)
{
    double t = epochs > 1 ? (double)epoch / (double)(epochs - 1) : 1.0;
    double lr0 = arch == FM_CNN ? c->lr0_cnn : c->lr0;
    *lr = (float)(c->lr_ft + 0.5 * (lr0 - c->lr_ft) * (1.0 + cos(3.141592653589793 * t)));
}

/* Train a fresh network with variant v for c->epochs epochs. */
static int train_variant(run_state *rs, const variant *v, fm_net *net, uint64_t *step)
{
    const config *c = rs->c;
    fm_noise nz;
    int e, epochs = rs->arch == FM_CNN ? c->epochs_cnn : c->epochs;
    variant_noise(c, v, &nz);
    if (fm_net_create(net, rs->ctx, rs->arch, c->batch, 1000u + (uint64_t)rs->seed) != 0)
        return -1;
    if (fm_net_set_noise(net, &nz, 77u + (uint64_t)rs->seed) != 0)
        return -1;
    for (e = 0; e < epochs; e++) {
        double t0 = now(), loss = 0, tacc = 0;
        float lr;
        lr_at(c, rs->arch, e, epochs, &lr);
        if (fm_net_train(net, rs->train, c->batch, lr, 5000u * (uint64_t)rs->seed + (uint64_t)e, 0, step, &loss,
                         &tacc) != 0)
            return -1;
        printf("[%s seed %d] %-10s epoch %d/%d  lr %.4f  noisy train loss %.4f  train acc %5.2f%%  (%.1f s)\n",
               fm_arch_name(rs->arch), rs->seed, v->name, e + 1, epochs, (double)lr, loss, 100 * tacc, now() - t0);
        fflush(stdout);
    }
    return 0;
}

static int set_cell(run_state *rs, int row, int col, double acc)
{
    return fm_results_set(rs->res, rs->ai, row, col, rs->seed, acc);
}

/* Scalar compression of every weight to bits (per-channel symmetric), evaluated through GGUF. */
static int do_scalar(run_state *rs, const fm_net *net, const variant *v, unsigned bits, int row, int col)
{
    qn_model *m = NULL;
    char path[4096];
    double acc = 0, bytes, t0 = now();
    int i, rc = -1;
    if (!st_ok(qn_model_create(rs->ctx, &m), "model"))
        return -1;
    for (i = 0; i < net->n; i++) {
        const fm_unit *u = &net->u[i];
        qn_qtensor *qt = NULL;
        if (!st_ok(qn_qtensor_from_scalar(rs->ctx, u->w, u->out_c, u->wn / u->out_c, bits, 1, &qt), "scalar") ||
            add_qt_unit(m, u, qt) != 0)
            goto out;
    }
    snprintf(path, sizeof path, "%s/%s-s%d-%s-int%u.gguf", rs->c->out, fm_arch_name(rs->arch), rs->seed, v->name, bits);
    bytes = model_bytes(m);
    fm_results_set_size(rs->res, rs->ai, row, bytes);
    if (eval_via_gguf(rs->c, rs->arch, m, path, rs->test, &acc) != 0)
        goto out;
    printf("[%s seed %d] %-10s int%u per-channel: %.4f MiB  test acc %5.2f%%  (%.1f s)\n", fm_arch_name(rs->arch),
           rs->seed, v->name, bits, bytes / 1048576.0, 100 * acc, now() - t0);
    rc = set_cell(rs, row, col, acc);
out:
    qn_model_destroy(m);
    return rc;
}

/* Build the model of a (partly) iPQ-compressed network: compressed layers from the layers, the rest dense. */
static qn_model *ipq_model(run_state *rs, fm_net *net)
{
    qn_model *m = NULL;
    int i;
    if (!st_ok(qn_model_create(rs->ctx, &m), "model"))
        return NULL;
    for (i = 0; i < net->n; i++) {
        const fm_unit *u = &net->u[i];
        int comp = 0;
        qn_layer_is_compressed(u->l, &comp);
        if (comp) {
            qn_qtensor *qt = NULL;
            if (!st_ok(qn_qtensor_from_layer(u->l, &qt), "from layer") || add_qt_unit(m, u, qt) != 0)
                goto fail;
        } else if (add_dense_unit(m, u, 1) != 0) {
            goto fail;
        }
    }
    return m;
fail:
    qn_model_destroy(m);
    return NULL;
}

/*
 * iPQ at (scale, K) of a copy of net: one-shot (every layer at once, no
 * training) when staged == 0; else one stage per layer, each followed by
 * ft_steps batches of fine-tuning (centroids of compressed layers, weights of
 * the others, biases), then also with int8 codebooks (row + 1).
 */
static int do_ipq(run_state *rs, const fm_net *trained, const variant *v, size_t scale, size_t k, int staged, int row,
                  int col, uint64_t *step)
{
    const config *c = rs->c;
    fm_net net;
    qn_ipq *ipq = NULL;
    qn_model *m = NULL;
    char path[4096], tag[64];
    double acc = 0, bytes, t0 = now();
    int i, n_layers = 0, rc = -1, pass;
    unsigned n_stages = 0, s;
    if (fm_net_clone(&net, trained) != 0)
        return -1;
    if (!st_ok(qn_ipq_create(rs->ctx, &ipq), "ipq") || !st_ok(qn_ipq_set_seed(ipq, 11u + (uint64_t)rs->seed), "ipq seed"))
        goto out;
    for (i = 0; i < net.n; i++) {
        fm_unit *u = &net.u[i];
        size_t bs = fm_unit_block(u, scale), blocks = u->wn / bs;
        /* layers with fewer than 2K blocks stay fp32 (fm_unit_block always divides the row) */
        if (blocks < 2 * k) {
            qn_ipq_add_params(ipq, u->wn + u->bn);
            continue;
        }
        if (!st_ok(qn_ipq_add_layer(ipq, u->l, u->name, staged ? (unsigned)n_layers : 0u, bs, k), "ipq add layer"))
            goto out;
        qn_ipq_add_params(ipq, u->bn);
        n_layers++;
    }
    if (n_layers == 0) {
        rc = 0; /* nothing to compress at this point: the row stays empty */
        goto out;
    }
    if (staged) {
        fm_noise nz;
        variant_noise(c, v, &nz);
        if (fm_net_set_noise(&net, &nz, 77u + (uint64_t)rs->seed) != 0)
            goto out;
    }
    qn_ipq_get_stages(ipq, &n_stages, NULL);
    for (s = 0; s < n_stages; s++) {
        if (!st_ok(qn_ipq_advance(ipq, NULL), "ipq stage"))
            goto out;
        if (staged) {
            double loss = 0;
            fm_net_reset_momentum(&net);
            if (fm_net_train(&net, rs->train, c->batch, c->lr_ft, 9000u + 100u * (uint64_t)rs->seed + s, c->ft_steps,
                             step, &loss, NULL) != 0)
                goto out;
            printf("[%s seed %d] %-10s iPQ b%zu K%zu stage %u/%u compressed, %zu fine-tuning steps, loss %.4f\n",
                   fm_arch_name(rs->arch), rs->seed, v->name, 8 * scale, k, s + 1,
                   n_stages, c->ft_steps, loss);
        }
    }
    for (pass = 0; pass < (staged ? 2 : 1); pass++) {
        if (pass == 1 && !st_ok(qn_ipq_codebooks_int8(ipq, QN_QSCHEME_SYMMETRIC, NULL), "int8 codebooks"))
            goto out;
        m = ipq_model(rs, &net);
        if (!m)
            goto out;
        snprintf(tag, sizeof tag, "ipq-b%zu-k%zu-%s%s", 8 * scale, k,
                 staged ? "staged" : "oneshot", pass ? "-int8cb" : "");
        snprintf(path, sizeof path, "%s/%s-s%d-%s-%s.gguf", c->out, fm_arch_name(rs->arch), rs->seed, v->name, tag);
        bytes = model_bytes(m);
        fm_results_set_size(rs->res, rs->ai, row + pass, bytes);
        if (eval_via_gguf(c, rs->arch, m, path, rs->test, &acc) != 0)
            goto out;
        printf("[%s seed %d] %-10s %-26s %.4f MiB (x%.1f)  test acc %5.2f%%  (%.1f s)\n", fm_arch_name(rs->arch),
               rs->seed, v->name, tag, bytes / 1048576.0,
               4.0 * (double)fm_net_params(&net) / bytes, 100 * acc, now() - t0);
        fflush(stdout);
        if (set_cell(rs, row + pass, col, acc) != 0)
            goto out;
        qn_model_destroy(m);
        m = NULL;
    }
    rc = 0;
out:
    qn_model_destroy(m);
    qn_ipq_destroy(ipq);
    fm_net_destroy(&net);
    return rc;
}

/* Everything for one architecture and seed. */
static int run_arch_seed(run_state *rs)
{
    const config *c = rs->c;
    variant vs[16];
    int nv = 0, vi, si, ki, rc = -1, n_scales = rs->arch == FM_CNN ? c->n_scales_cnn : c->n_scales;
    /* the training variants this configuration needs */
    vs[nv].kind = V_NONE;
    vs[nv].scale = 1;
    snprintf(vs[nv++].name, sizeof vs[0].name, "none");
    for (si = 0; si < n_scales; si++) {
        vs[nv].kind = V_PROXY;
        vs[nv].scale = c->scales[si];
        snprintf(vs[nv++].name, sizeof vs[0].name, "proxy-b%zu", 8 * c->scales[si]);
        vs[nv].kind = V_PQ;
        vs[nv].scale = c->scales[si];
        snprintf(vs[nv++].name, sizeof vs[0].name, "pq-b%zu", 8 * c->scales[si]);
    }
    vs[nv].kind = V_INT4;
    vs[nv].scale = 1;
    snprintf(vs[nv++].name, sizeof vs[0].name, "int4-noise");
    if (!c->quick) {
        vs[nv].kind = V_INT8;
        vs[nv].scale = 1;
        snprintf(vs[nv++].name, sizeof vs[0].name, "int8-noise");
    }
    for (vi = 0; vi < nv; vi++) {
        const variant *v = &vs[vi];
        fm_net net, extra;
        uint64_t step = 0;
        double acc;
        int col = v->kind == V_NONE ? FM_COL_NONE : v->kind == V_PROXY ? FM_COL_PROXY : FM_COL_EXACT;
        if (train_variant(rs, v, &net, &step) != 0) {
            fm_net_destroy(&net);
            return -1;
        }
        acc = fm_net_accuracy(&net, rs->test);
        fm_results_set_trained(rs->res, rs->ai, v->name, rs->seed, acc);
        /* the uncompressed model given the fine-tuning's extra steps (same rate, same noise) */
        if (fm_net_clone(&extra, &net) != 0)
            goto fail;
        {
            fm_noise nz;
            uint64_t st2 = step;
            size_t extra_steps = c->ft_steps * (size_t)net.n;
            double loss = 0, acc2;
            variant_noise(c, v, &nz);
            if (fm_net_set_noise(&extra, &nz, 77u + (uint64_t)rs->seed) != 0 ||
                fm_net_train(&extra, rs->train, c->batch, c->lr_ft, 777u + (uint64_t)rs->seed, extra_steps, &st2, &loss,
                             NULL) != 0) {
                fm_net_destroy(&extra);
                goto fail;
            }
            acc2 = fm_net_accuracy(&extra, rs->test);
            fm_results_set_extra(rs->res, rs->ai, v->name, rs->seed, acc2);
            printf("[%s seed %d] %-10s uncompressed %5.2f%%, after %zu more steps (the fine-tuning budget) %5.2f%%\n",
                   fm_arch_name(rs->arch), rs->seed, v->name, 100 * acc, extra_steps, 100 * acc2);
            fm_net_destroy(&extra);
        }
        /* scalar rows: no noise, proxy at scale 1 and the matching scalar noise */
        if (v->kind == V_NONE || (v->kind == V_PROXY && v->scale == 1) || v->kind == V_INT8 || v->kind == V_INT4) {
            int col_s = v->kind == V_NONE ? FM_COL_NONE : v->kind == V_PROXY ? FM_COL_PROXY : FM_COL_EXACT;
            if ((v->kind != V_INT4 && do_scalar(rs, &net, v, 8, FM_ROW_INT8, col_s) != 0) ||
                (v->kind != V_INT8 && do_scalar(rs, &net, v, 4, FM_ROW_INT4, col_s) != 0))
                goto fail;
        }
        /* iPQ rows: no noise at every point, proxy / exact PQ noise at the points of their block size */
        if (v->kind == V_NONE || v->kind == V_PROXY || v->kind == V_PQ) {
            for (si = 0; si < n_scales; si++) {
                if (v->kind != V_NONE && v->scale != c->scales[si])
                    continue;
                for (ki = 0; ki < c->n_ks; ki++) {
                    int row = fm_results_ipq_row(rs->res, si, ki);
                    if (do_ipq(rs, &net, v, c->scales[si], c->ks[ki], 0, row, col, &step) != 0 ||
                        do_ipq(rs, &net, v, c->scales[si], c->ks[ki], 1, row + 1, col, &step) != 0)
                        goto fail;
                }
            }
        }
        fm_net_destroy(&net);
        continue;
    fail:
        fm_net_destroy(&net);
        return -1;
    }
    rc = 0;
    return rc;
}

static int parse_size(const char *s, size_t *out)
{
    char *end = NULL;
    unsigned long v;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || !end || *end || end == s || v == 0 || v > 1000000ul)
        return -1;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    config c;
    fm_data train, test;
    fm_results *res = NULL;
    qn_context *ctx = NULL;
    char err[8192], path[4096];
    double t0 = now();
    int i, ai, si, rc = 1;
    size_t v;
    const char *model = NULL;
    int epochs_given = 0;
    char recipe[512];
    memset(&c, 0, sizeof c);
    memset(&train, 0, sizeof train);
    memset(&test, 0, sizeof test);
    c.out = "fmnist-out";
    c.data = FM_DEFAULT_DIR;
    c.epochs = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            c.quick = 1;
        else if (!strcmp(argv[i], "--full"))
            c.full = 1;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "--out") || !strcmp(argv[i], "--data")) && i + 1 < argc) {
            if (!strcmp(argv[i], "--out"))
                c.out = argv[++i];
            else
                c.data = argv[++i];
        } else if (!strcmp(argv[i], "--model") && i + 1 < argc &&
                   (!strcmp(argv[i + 1], "mlp") || !strcmp(argv[i + 1], "cnn") || !strcmp(argv[i + 1], "both"))) {
            model = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc && parse_size(argv[i + 1], &v) == 0 && v <= 1024) {
            c.threads = (unsigned)v;
            i++;
        } else if (!strcmp(argv[i], "--epochs") && i + 1 < argc && parse_size(argv[i + 1], &v) == 0 && v <= 1000) {
            c.epochs = (int)v;
            epochs_given = 1;
            i++;
        } else {
            fprintf(stderr, "qnoise-fmnist: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!c.threads) { /* all online cores (the library's own default is 1) */
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c.threads = n < 1 ? 1u : n > 64 ? 64u : (unsigned)n;
    }
    if (c.quick && c.full) {
        fprintf(stderr, "qnoise-fmnist: --quick and --full exclude each other\n");
        return 2;
    }
    c.batch = 128;
    c.lr0 = 0.05f;
    c.lr0_cnn = 0.02f;
    c.lr_ft = 0.005f;
    c.p = 0.1f;
    c.noise_k = 16;
    c.archs[0] = FM_MLP;
    c.n_archs = 1;
    c.n_seeds = 1;
    c.ks[0] = 256;
    c.ks[1] = 64;
    c.ks[2] = 16;
    c.n_ks = 3;
    c.scales[0] = 1;
    c.scales[1] = 2;
    c.scales[2] = 4;
    c.n_scales = 3;
    c.ft_steps = 100;
    if (c.quick) {
        c.train_n = 8000;
        c.test_n = 2000;
        if (!c.epochs)
            c.epochs = 2;
        c.n_scales = 1;
        c.ks[1] = 16;
        c.n_ks = 2;
        c.ft_steps = 20;
    }
    if (c.full) {
        c.archs[1] = FM_CNN;
        c.n_archs = 2;
        c.n_seeds = 2;
    }
    if (model) {
        c.n_archs = 0;
        if (strcmp(model, "cnn") != 0)
            c.archs[c.n_archs++] = FM_MLP;
        if (strcmp(model, "mlp") != 0)
            c.archs[c.n_archs++] = FM_CNN;
    }
    if (!c.epochs)
        c.epochs = 4;
    c.epochs_cnn = c.quick || epochs_given ? c.epochs : 3;
    c.n_scales_cnn = c.n_scales;

    if (fm_load(c.data, "train", c.train_n, &train, err, sizeof err) != 0 ||
        fm_load(c.data, "t10k", c.test_n, &test, err, sizeof err) != 0) {
        fprintf(stderr, "qnoise-fmnist: %s\n", err);
        goto out;
    }
    if (mkdir(c.out, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "qnoise-fmnist: cannot create %s: %s\n", c.out, strerror(errno));
        goto out;
    }
    printf("qnoise-fmnist: libqnoise %s; %zu training and %zu test images from %s; %s run\n", qn_version(), train.n,
           test.n, c.data, c.quick ? "quick" : c.full ? "full" : "default");
    snprintf(recipe, sizeof recipe,
             "MLP: %d epoch(s), lr %.3f cosine to %.4f; CNN: %d epoch(s), lr %.3f cosine to %.4f; batch %zu, SGD with "
             "momentum 0.9; Quant-Noise p = %.2f; exact PQ noise with K = %zu; iPQ fine-tuning %zu steps per stage "
             "at lr %.4f. Block sizes b8/b16/b32 are those of linear layers (3x3 convs: 9/18/36, the 1x1 conv: "
             "4/8/16), lowered to the nearest divisor of the row where needed (the MLP's 784 inputs: 28 for b32); "
             "a layer with fewer than 2K blocks stays fp32",
             c.epochs, (double)c.lr0, (double)c.lr_ft, c.epochs_cnn, (double)c.lr0_cnn, (double)c.lr_ft, c.batch,
             (double)c.p, c.noise_k, c.ft_steps, (double)c.lr_ft);
    printf("  %s; output in %s\n", recipe, c.out);
    printf("  library threads: %u\n", c.threads);
    fflush(stdout);
    if (!st_ok(qn_context_create(&ctx), "context") || !st_ok(qn_context_set_threads(ctx, c.threads), "threads"))
        goto out;
    {
        size_t bs[3];
        for (si = 0; si < c.n_scales; si++)
            bs[si] = 8 * c.scales[si];
        res = fm_results_create(c.n_archs, c.n_seeds, bs, c.n_scales, c.ks, c.n_ks);
    }
    if (!res) {
        fprintf(stderr, "qnoise-fmnist: out of memory\n");
        goto out;
    }
    for (ai = 0; ai < c.n_archs; ai++) {
        fm_net probe;
        int s;
        if (fm_net_create(&probe, ctx, (fm_arch)c.archs[ai], 1, 0) != 0)
            goto out;
        fm_results_set_arch(res, ai, fm_arch_name((fm_arch)c.archs[ai]), fm_net_params(&probe));
        fm_net_destroy(&probe);
        for (s = 1; s <= c.n_seeds; s++) {
            run_state rs;
            rs.c = &c;
            rs.ctx = ctx;
            rs.train = &train;
            rs.test = &test;
            rs.arch = (fm_arch)c.archs[ai];
            rs.seed = s;
            rs.res = res;
            rs.ai = ai;
            if (run_arch_seed(&rs) != 0)
                goto out;
        }
    }
    {
        fm_report_info info;
        memset(&info, 0, sizeof info);
        info.mode = c.quick ? "--quick" : c.full ? "--full" : "default";
        info.train_n = train.n;
        info.test_n = test.n;
        info.epochs = c.epochs;
        info.recipe = recipe;
        info.ft_steps = c.ft_steps;
        info.batch = c.batch;
        info.p = c.p;
        info.noise_k = c.noise_k;
        info.seconds = now() - t0;
        info.version = qn_version();
        snprintf(path, sizeof path, "%s/results.md", c.out);
        if (fm_report_write(res, &info, path, stdout) != 0)
            goto out;
        snprintf(path, sizeof path, "%s/results.svg", c.out);
        if (fm_plot_write(res, path) != 0)
            goto out;
        printf("wrote %s/results.md, %s/results.svg and the .gguf models (%.0f s in all)\n", c.out, c.out, now() - t0);
    }
    /* robust checks: the uncompressed models learned (far above the 10% of chance) */
    rc = fm_results_min_trained(res) > 0.5 ? 0 : 1;
    if (rc)
        fprintf(stderr, "qnoise-fmnist: an uncompressed model stayed below 50%% test accuracy\n");
out:
    fm_results_destroy(res);
    qn_context_destroy(ctx);
    fm_free(&train);
    fm_free(&test);
    return rc;
}
