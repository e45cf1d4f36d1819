/*
 * Quant-Noise training overhead, side by side with plain OpenBLAS in one process.
 * SPDX-License-Identifier: MIT
 *
 * For each shape (Linear out x in, batch) and thread count it times:
 *   plain fwd      cblas_sgemm  y = x W^T                         (the anchor)
 *   plain fwd+bwd  the three GEMMs: y = x W^T, dx = dy W, dW += dy^T x
 *   noisy fwd      qn_layer_forward_noisy  (proxy, p = 0.1, block 8)
 *   noisy fwd+bwd  qn_layer_forward_noisy + qn_layer_backward (dx, dW, db)
 * and prints the ratios noisy/plain. "N thr" sets both OpenBLAS's threads and
 * the library's (qn_context_set_threads); run it through bench/run.sh, which
 * sets OMP_WAIT_POLICY=passive so idle OpenMP threads do not spin against BLAS.
 * It also times the noise pass alone (the mask and W_eff kernels: one read and
 * one write of W) against the copy bandwidth of a W-sized buffer measured in
 * the same run.
 *
 * usage: bench_layer [--quick]     (--quick: fewer repetitions, for CI smoke runs)
 */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qnoise/qnoise.h>

#include "bench_util.h"
#include "kernels/kernels.h" /* the bench links the internal library to time the noise pass alone */

extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

/* median of reps timings of fn */
#define TIME_MEDIAN(reps, out, body)                                                                                   \
    do {                                                                                                               \
        double ts_[64];                                                                                                \
        int r_, a_, b_;                                                                                                \
        for (r_ = 0; r_ < (reps); r_++) {                                                                              \
            double t0_ = now();                                                                                        \
            body;                                                                                                      \
            ts_[r_] = now() - t0_;                                                                                     \
        }                                                                                                              \
        for (a_ = 1; a_ < (reps); a_++)                                                                                \
            for (b_ = a_; b_ > 0 && ts_[b_ - 1] > ts_[b_]; b_--) {                                                     \
                double t_ = ts_[b_];                                                                                   \
                ts_[b_] = ts_[b_ - 1];                                                                                 \
                ts_[b_ - 1] = t_;                                                                                      \
            }                                                                                                          \
        (out) = ts_[(reps) / 2];                                                                                       \
    } while (0)

/* median of n values (sorts a copy) */
static double median(const double *v, int n)
{
    double s[64];
    int i, j;
    for (i = 0; i < n; i++) {
        double t = v[i];
        for (j = i; j > 0 && s[j - 1] > t; j--)
            s[j] = s[j - 1];
        s[j] = t;
    }
    return s[n / 2];
}

static int check(qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "%s: %s\n", what, qn_status_str(st));
        exit(1);
    }
    return 0;
}

static void run_shape(qn_context *ctx, int out, int in, int batch, int threads, int reps)
{
    size_t wn = (size_t)out * in;
    float *w = xalloc(wn * sizeof(float)), *dw = xalloc(wn * sizeof(float));
    float *b = xalloc((size_t)out * sizeof(float)), *db = xalloc((size_t)out * sizeof(float));
    float *x = xalloc((size_t)batch * in * sizeof(float)), *dx = xalloc((size_t)batch * in * sizeof(float));
    float *y = xalloc((size_t)batch * out * sizeof(float)), *dy = xalloc((size_t)batch * out * sizeof(float));
    qn_layer *l = NULL;
    void *ws;
    size_t wsb;
    double pf[64], nf[64], pfb[64], nfb[64], rf[64], rfb[64];
    uint64_t step = 0;
    int r;

    fill(w, wn, 1);
    fill(x, (size_t)batch * in, 2);
    fill(dy, (size_t)batch * out, 3);
    check(qn_layer_create_linear(ctx, (size_t)in, (size_t)out, &l), "create");
    check(qn_layer_bind(l, w, b), "bind");
    check(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.1f, 8), "noise");
    check(qn_layer_set_seed(l, 7, 0), "seed");
    check(qn_layer_workspace_size(l, (size_t)batch, &wsb), "workspace size");
    ws = xalloc(wsb);
    check(qn_layer_set_workspace(l, ws, wsb), "workspace");

    /* warm-up */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
    check(qn_layer_forward_noisy(l, (size_t)batch, x, y, step), "forward_noisy");

    /* plain and noisy alternate within each repetition so that both see the same machine (these
       2-core VMs are noisy); the ratio printed is the median of the per-repetition ratios */
    for (r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
        pf[r] = now() - t0;
        t0 = now();
        check(qn_layer_forward_noisy(l, (size_t)batch, x, y, ++step), "forward_noisy");
        nf[r] = now() - t0;
        t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, batch, out, in, 1.0f, x, in, w, in, 0.0f, y, out);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, batch, in, out, 1.0f, dy, out, w, in, 0.0f, dx, in);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, batch, 1.0f, dy, out, x, in, 1.0f, dw, in);
        pfb[r] = now() - t0;
        t0 = now();
        ++step;
        check(qn_layer_forward_noisy(l, (size_t)batch, x, y, step), "forward_noisy");
        check(qn_layer_backward(l, (size_t)batch, x, dy, dx, dw, db, step), "backward");
        nfb[r] = now() - t0;
        rf[r] = nf[r] / pf[r];
        rfb[r] = nfb[r] / pfb[r];
    }
    printf("%5d x %-5d batch %4d  %d thr | fwd plain %8.2f ms noisy %8.2f ms  x%.3f | fwd+bwd plain %8.2f ms "
           "noisy %8.2f ms  x%.3f\n",
           out, in, batch, threads, 1e3 * median(pf, reps), 1e3 * median(nf, reps), median(rf, reps),
           1e3 * median(pfb, reps), 1e3 * median(nfb, reps), median(rfb, reps));
    qn_layer_destroy(l);
    free(ws);
    free(w);
    free(dw);
    free(b);
    free(db);
    free(x);
    free(dx);
    free(y);
    free(dy);
}

typedef struct copy_job {
    const char *src;
    char *dst;
    size_t bytes;
} copy_job;

static void *copy_part(void *arg)
{
    copy_job *j = (copy_job *)arg;
    memcpy(j->dst, j->src, j->bytes);
    return NULL;
}

/* memcpy of `bytes` split over two threads */
static void copy2(const void *src, void *dst, size_t bytes)
{
    pthread_t th;
    copy_job a = {(const char *)src, (char *)dst, bytes / 2};
    copy_job b = {(const char *)src + bytes / 2, (char *)dst + bytes / 2, bytes - bytes / 2};
    pthread_create(&th, NULL, copy_part, &a);
    copy_part(&b);
    pthread_join(th, NULL);
}

/*
 * The noise pass alone, as forward_noisy runs it on one thread: draw the mask
 * bits of every block (mask_bits) and write W_eff (block_scale: dropped blocks
 * 0, kept blocks W/(1-p)), against the bandwidth of a plain copy of W (one
 * read and one write, like the pass) on one and on two threads.
 */
static void run_noise_pass(qn_context *ctx, int out, int in, int reps)
{
    size_t wn = (size_t)out * in, bytes = wn * sizeof(float), nb = wn / 8;
    float *w = xalloc(bytes), *weff = xalloc(bytes), *copy = xalloc(bytes);
    uint64_t *bits = xalloc((nb + 63) / 64 * 8);
    qn_isa isa = QN_ISA_SCALAR;
    const qn_kernels *k;
    uint32_t key[2];
    double t_mask, t_scale, t_copy1, t_copy2, gb = 2.0 * (double)bytes / 1e9;
    uint64_t step = 0;
    qn_context_get_isa(ctx, &isa);
    k = qn_kernels_select(isa);
    fill(w, wn, 5);
    memcpy(copy, w, bytes);
    memcpy(weff, w, bytes);
    qn_rng_layer_key(7, 0, key);
    TIME_MEDIAN(reps, t_mask, k->mask_bits(key, ++step, 0, nb, (uint32_t)(0.1 * 16777216.0 + 0.5), bits));
    TIME_MEDIAN(reps, t_scale, k->block_scale(w, weff, nb, 8, bits, 0, 1.0f / 0.9f, 0.0f, 0));
    TIME_MEDIAN(reps, t_copy1, memcpy(copy, w, bytes));
    TIME_MEDIAN(reps, t_copy2, copy2(w, copy, bytes));
    printf("noise pass %d x %d, %s kernels, 1 thread: mask %.2f ms + W_eff %.2f ms (read W + write W_eff, %.0f MiB "
           "each: %.1f GB/s)\n",
           out, in, k->name, 1e3 * t_mask, 1e3 * t_scale, (double)bytes / 1048576.0, gb / t_scale);
    printf("copy of W: 1 thread %.2f ms = %.1f GB/s, 2 threads %.2f ms = %.1f GB/s; the W_eff pass reaches %.0f%% of "
           "the 1-thread and %.0f%% of the 2-thread copy bandwidth\n",
           1e3 * t_copy1, gb / t_copy1, 1e3 * t_copy2, gb / t_copy2, 100.0 * t_copy1 / t_scale,
           100.0 * t_copy2 / t_scale);
    free(w);
    free(weff);
    free(copy);
    free(bits);
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    int reps = quick ? 3 : 15, t;
    qn_context *ctx = NULL;
    qn_isa isa;
    setvbuf(stdout, NULL, _IOLBF, 0);
    check(qn_context_create(&ctx), "context");
    qn_context_get_isa(ctx, &isa);
    printf("libqnoise %s, kernels %s; OpenBLAS core %s; Linear proxy noise p = 0.1, block 8; medians of %d alternating runs\n",
           qn_version(), qn_isa_name(isa), openblas_get_corename(), reps);
    for (t = 1; t <= 2; t++) {
        /* QN_BENCH_LIB_THREADS=n pins the library's threads (to compare with BLAS-only threading) */
        const char *lt = getenv("QN_BENCH_LIB_THREADS");
        openblas_set_num_threads(t);
        qn_context_set_threads(ctx, lt ? (unsigned)atoi(lt) : (unsigned)t);
        if (quick) {
            run_shape(ctx, 1024, 1024, 32, t, reps);
            continue;
        }
        run_shape(ctx, 4096, 4096, 64, t, reps);
        run_shape(ctx, 4096, 4096, 512, t, reps);
        run_shape(ctx, 1024, 1024, 32, t, reps);
    }
    run_noise_pass(ctx, quick ? 1024 : 4096, quick ? 1024 : 4096, reps);
    qn_context_destroy(ctx);
    return 0;
}
