/*
 * PQ throughput, side by side with faiss in one process:
 *
 * 1. Assignment: the library's pq_assign kernel (fused ||c||^2 - 2 x.c,
 *    precomputed norms) and its nearest_l2 kernel against faiss IndexFlatL2
 *    (k = 1 search) on the same data, single thread.
 * 2. A full k-means iteration (assign + update): qn_pq_train timed between
 *    consecutive progress callbacks (one iteration each; the first is
 *    skipped), with 1 and 2 library threads, against faiss::Clustering's own
 *    per-iteration times on the same data (all rows, no subsampling), with 1
 *    and 2 OpenMP threads.
 * SPDX-License-Identifier: MIT
 *
 * Every line gives the median time (and rates of the best repetition for the
 * kernels), effective GFLOP/s = 2 N K bs / time and the fraction of the FMA
 * peak measured at start-up by a tight loop of independent FMAs on this core.
 * The library side uses the best ISA of this CPU (qn_kernels_select). Without
 * faiss (not found at configure time) it says so and times the library only.
 * Run through bench/run.sh (OPENBLAS_CORETYPE, OMP_WAIT_POLICY=passive).
 *
 * usage: bench_pq [--quick]     (--quick: N / 16 and fewer repetitions)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qnoise/qnoise.h>

#include "bench_util.h"
#include "kernels/kernels.h" /* the bench links the internal library to time the kernels alone */

extern void openblas_set_num_threads(int num_threads);

#if QN_BENCH_HAVE_FAISS
void *qn_bench_faiss_new(const float *c, size_t k, size_t dim);
int qn_bench_faiss_search(void *index, const float *x, size_t n, float *dists, int64_t *labels);
void qn_bench_faiss_free(void *index);
const char *qn_bench_faiss_version(void);
int qn_bench_faiss_kmeans(const float *x, size_t n, size_t dim, size_t k, int niter, int threads,
                          double *iter_seconds, double *final_obj);
#endif

#define MAX_REPS 15
#define MAX_ITERS 32

/* FMA peak of one core, GFLOP/s; 0 until measured. */
static double g_peak;

/* " (xx % of peak)" for a rate in GFLOP/s, or "" without a measured peak. */
static const char *of_peak(double gflops, char *buf, size_t len)
{
    if (g_peak > 0.0)
        snprintf(buf, len, " %3.0f%% of peak", 100.0 * gflops / g_peak);
    else
        buf[0] = '\0';
    return buf;
}

/* Sorts v; returns the median (v[0] is then the best). */
static double median(double *v, int n)
{
    int i, j;
    for (i = 1; i < n; i++)
        for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

/* Median time, and the best rep's rates in brackets (a shared machine adds noise). */
static void report(const char *who, double t, double tbest, size_t n, size_t k, size_t bs)
{
    const double fl = 2.0 * (double)n * (double)k * (double)bs;
    char pk[32];
    printf("  %-22s %9.2f ms %8.2f M blocks/s %7.1f GFLOP/s%s (best %6.2f M blocks/s %7.1f GFLOP/s)\n",
           who, 1e3 * t, (double)n / t / 1e6, fl / t / 1e9, of_peak(fl / t / 1e9, pk, sizeof pk),
           (double)n / tbest / 1e6, fl / tbest / 1e9);
}

static void run_shape(const qn_kernels *kt, size_t n, size_t bs, size_t k, int reps)
{
    float *x = xalloc(n * bs * sizeof(float));
    float *c = xalloc(k * bs * sizeof(float));
    float *cn = xalloc(k * sizeof(float));
    float *d = xalloc(n * sizeof(float));
    uint32_t *codes = xalloc(n * sizeof(uint32_t));
    uint32_t *codes2 = xalloc(n * sizeof(uint32_t));
    double ts[MAX_REPS], t_pq, t_nl2;
    size_t i, j, t, agree;
    int r;

    fill(x, n * bs, 42 + bs);
    /* centroids drawn from the data, as k-means would start */
    for (j = 0; j < k; j++)
        memcpy(c + j * bs, x + ((j * 2654435761u) % n) * bs, bs * sizeof(float));
    for (j = 0; j < k; j++) {
        double s = 0.0;
        for (t = 0; t < bs; t++)
            s += (double)c[j * bs + t] * (double)c[j * bs + t];
        cn[j] = (float)s;
    }

    printf("N = %zu blocks, bs = %zu, K = %zu (%d reps, median)\n", n, bs, k, reps);
    kt->pq_assign(x, n, bs, c, cn, k, bs, codes, d); /* warm-up */
    for (r = 0; r < reps; r++) {
        double t0 = now();
        kt->pq_assign(x, n, bs, c, cn, k, bs, codes, NULL);
        ts[r] = now() - t0;
    }
    t_pq = median(ts, reps);
    report("qnoise pq_assign", t_pq, ts[0], n, k, bs);

    kt->nearest_l2(x, n, bs, c, k, bs, codes2, d);
    for (r = 0; r < reps; r++) {
        double t0 = now();
        kt->nearest_l2(x, n, bs, c, k, bs, codes2, NULL);
        ts[r] = now() - t0;
    }
    t_nl2 = median(ts, reps);
    report("qnoise nearest_l2", t_nl2, ts[0], n, k, bs);
    for (i = 0, agree = 0; i < n; i++)
        agree += codes[i] == codes2[i];
    printf("  pq_assign / nearest_l2 throughput %.2fx, codes agree %.4f%%\n", t_nl2 / t_pq,
           100.0 * (double)agree / (double)n);

#if QN_BENCH_HAVE_FAISS
    {
        void *index = qn_bench_faiss_new(c, k, bs);
        int64_t *labels = xalloc(n * sizeof(int64_t));
        double t_f;
        if (!index || qn_bench_faiss_search(index, x, n, d, labels) != 0) {
            printf("  faiss: search failed\n");
        } else {
            for (r = 0; r < reps; r++) {
                double t0 = now();
                qn_bench_faiss_search(index, x, n, d, labels);
                ts[r] = now() - t0;
            }
            t_f = median(ts, reps);
            report("faiss IndexFlatL2 k=1", t_f, ts[0], n, k, bs);
            for (i = 0, agree = 0; i < n; i++)
                agree += (int64_t)codes[i] == labels[i];
            printf("  library/faiss throughput: pq_assign %.2fx, nearest_l2 %.2fx; codes agree "
                   "%.4f%%\n",
                   t_f / t_pq, t_f / t_nl2, 100.0 * (double)agree / (double)n);
        }
        qn_bench_faiss_free(index);
        free(labels);
    }
#endif
    free(x);
    free(c);
    free(cn);
    free(d);
    free(codes);
    free(codes2);
}

/* ------------------------------------------------------------------------------------------ */
/* k-means iterations                                                                         */

typedef struct iter_clock {
    double t[MAX_ITERS];
    int n;
    size_t redo; /* rows re-assigned by exact differences in the last iteration (DEBUG log) */
} iter_clock;

static int clock_progress(void *user, const char *what, uint64_t done, uint64_t total)
{
    iter_clock *c = (iter_clock *)user;
    (void)what;
    (void)done;
    (void)total;
    if (c->n < MAX_ITERS)
        c->t[c->n++] = now();
    return 0;
}

static void clock_log(void *user, qn_log_level level, const char *msg)
{
    iter_clock *c = (iter_clock *)user;
    const char *p = strstr(msg, "filled, ");
    size_t v;
    (void)level;
    if (p && sscanf(p + 8, "%zu", &v) == 1)
        c->redo = v;
}

/* Median of v[0..n) (sorts v). */
static double median_of(double *v, int n)
{
    return median(v, n);
}

/* Per-iteration seconds of qn_pq_train on `threads` threads: median over iterations 2..niter (best in *best). */
static double lib_iteration(const float *x, size_t n, size_t bs, size_t k, int niter, unsigned threads,
                            double *obj, size_t *redo, double *best)
{
    qn_context *ctx = NULL;
    qn_pq *pq = NULL;
    iter_clock clk;
    double d[MAX_ITERS], t;
    int i;
    memset(&clk, 0, sizeof clk);
    if (qn_context_create(&ctx) != QN_OK || qn_context_set_threads(ctx, threads) != QN_OK ||
        qn_context_set_progress(ctx, clock_progress, &clk) != QN_OK ||
        qn_context_set_log(ctx, clock_log, &clk, QN_LOG_DEBUG) != QN_OK ||
        qn_pq_create(ctx, bs, k, &pq) != QN_OK || qn_pq_set_iterations(pq, (unsigned)niter) != QN_OK ||
        qn_pq_set_tolerance(pq, 0.0) != QN_OK || qn_pq_set_seed(pq, 1) != QN_OK ||
        qn_pq_train(pq, x, n) != QN_OK || qn_pq_objective(pq, obj) != QN_OK || clk.n != niter) {
        fprintf(stderr, "bench_pq: qn_pq_train failed\n");
        exit(1);
    }
    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    for (i = 1; i < clk.n; i++)
        d[i - 1] = clk.t[i] - clk.t[i - 1];
    *redo = clk.redo;
    t = median_of(d, clk.n - 1);
    *best = d[0];
    return t;
}

static void kmeans_shape(size_t n, size_t bs, size_t k, int niter)
{
    float *x = xalloc(n * bs * sizeof(float));
    const double fl = 2.0 * (double)n * (double)k * (double)bs;
    double t1, t2, b1, b2, obj1, obj2;
    size_t redo1, redo2;
    char pk[32];

    fill(x, n * bs, 7 + bs + k);
    printf("k-means iteration (assign + update), N = %zu, bs = %zu, K = %zu (median of iterations 2..%d, best "
           "in brackets)\n",
           n, bs, k, niter);
    t1 = lib_iteration(x, n, bs, k, niter, 1, &obj1, &redo1, &b1);
    t2 = lib_iteration(x, n, bs, k, niter, 2, &obj2, &redo2, &b2);
    printf("  %-26s %9.2f ms/iter (%6.2f) %7.2f M blocks/s %7.1f GFLOP/s%s; %.2f%% of rows re-assigned exactly\n",
           "qnoise, 1 thread", 1e3 * t1, 1e3 * b1, (double)n / t1 / 1e6, fl / t1 / 1e9,
           of_peak(fl / t1 / 1e9, pk, sizeof pk), 100.0 * (double)redo1 / (double)n);
    printf("  %-26s %9.2f ms/iter (%6.2f) %7.2f M blocks/s %7.1f GFLOP/s; 2 threads / 1 thread: %.2fx faster\n",
           "qnoise, 2 threads", 1e3 * t2, 1e3 * b2, (double)n / t2 / 1e6, fl / t2 / 1e9, t1 / t2);
#if QN_BENCH_HAVE_FAISS
    {
        double its[MAX_ITERS], f1 = 0.0, f2 = 0.0, fobj1 = 0.0, fobj2 = 0.0;
        int ok1, ok2;
        ok1 = qn_bench_faiss_kmeans(x, n, bs, k, niter, 1, its, &fobj1) == 0;
        if (ok1)
            f1 = median_of(its + 1, niter - 1);
        ok2 = qn_bench_faiss_kmeans(x, n, bs, k, niter, 2, its, &fobj2) == 0;
        if (ok2)
            f2 = median_of(its + 1, niter - 1);
        if (ok1)
            printf("  %-26s %9.2f ms/iter          %7.2f M blocks/s   library/faiss (1 thread): %.1fx\n",
                   "faiss Clustering, 1 thread", 1e3 * f1, (double)n / f1 / 1e6, f1 / t1);
        if (ok2)
            printf("  %-26s %9.2f ms/iter          %7.2f M blocks/s   library/faiss (2 threads): %.1fx\n",
                   "faiss Clustering, 2 thr.", 1e3 * f2, (double)n / f2 / 1e6, f2 / t2);
        if (ok1)
            printf("  objective per block after %d iterations: qnoise %.6g, faiss %.6g (different inits)\n", niter,
                   obj1, fobj1);
        if (!ok1 || !ok2)
            printf("  faiss: clustering failed\n");
    }
#else
    printf("  objective per block after %d iterations: %.6g (1 thread), %.6g (2 threads)\n", niter, obj1, obj2);
#endif
    free(x);
}

int main(int argc, char **argv)
{
    static const size_t shapes[][2] = {{8, 256}, {4, 256}, {16, 256}, {8, 4096}}; /* bs, K */
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const size_t n = quick ? 262144 / 16 : 262144;
    const qn_kernels *kt = qn_kernels_select(qn_cpu_best_isa());
    size_t s;

    openblas_set_num_threads(1);
    g_peak = measure_peak(kt->isa, 1, 3, 40000000L); /* best of three runs of about 0.2 s each */
    printf("bench_pq: libqnoise %s, kernels %s; FMA peak of one core measured %.1f GFLOP/s\n", qn_version(),
           kt->name, g_peak);
#if QN_BENCH_HAVE_FAISS
    printf("faiss %s: IndexFlatL2 search k=1 and Clustering; OpenBLAS at 1 thread\n", qn_bench_faiss_version());
#else
    printf("faiss: not found at configure time; timing the library only\n");
#endif
    printf("\n== assignment kernels, single thread ==\n");
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int reps = quick ? 3 : shapes[s][1] > 1024 ? 3 : 7;
        run_shape(kt, n, shapes[s][0], shapes[s][1], reps);
    }
    printf("\n== k-means iterations ==\n");
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int niter = quick ? 4 : shapes[s][1] > 1024 ? 5 : 10;
        kmeans_shape(n, shapes[s][0], shapes[s][1], niter);
    }
    return 0;
}
