/*
 * PQ assignment throughput: the library's pq_assign kernel (fused
 * ||c||^2 - 2 x.c, precomputed norms) and its nearest_l2 kernel, side by side
 * with faiss IndexFlatL2 (k = 1 search) on the same data, in one process,
 * single thread.
 * SPDX-License-Identifier: MIT
 *
 * For each shape (N blocks of bs floats, K centroids) it prints the median
 * time, blocks/s and effective GFLOP/s = 2 N K bs / time for each contender
 * (and the rates of the best repetition),
 * the ratio library/faiss (throughput; > 1 means the library is faster) and
 * how many codes agree with faiss (ties and near-ties may differ). The
 * library side uses the best ISA of this CPU (qn_kernels_select). Without
 * faiss (not found at configure time) it says so and times the library only.
 * Run with OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=passive as for bench_layer.
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
#endif

#define MAX_REPS 15

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
    printf("  %-22s %9.2f ms %8.2f M blocks/s %7.1f GFLOP/s   (best %6.2f M blocks/s %7.1f GFLOP/s)\n",
           who, 1e3 * t, (double)n / t / 1e6, fl / t / 1e9, (double)n / tbest / 1e6,
           fl / tbest / 1e9);
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

int main(int argc, char **argv)
{
    static const size_t shapes[][2] = {{8, 256}, {4, 256}, {16, 256}, {8, 4096}}; /* bs, K */
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const size_t n = quick ? 262144 / 16 : 262144;
    const qn_kernels *kt = qn_kernels_select(qn_cpu_best_isa());
    size_t s;

    openblas_set_num_threads(1);
    printf("bench_pq: libqnoise %s, kernels %s, single thread\n", qn_version(), kt->name);
#if QN_BENCH_HAVE_FAISS
    printf("faiss %s: IndexFlatL2 search k=1, OpenMP and OpenBLAS at 1 thread\n",
           qn_bench_faiss_version());
#else
    printf("faiss: not found at configure time; timing the library only\n");
#endif
    for (s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        const int reps = quick ? 3 : shapes[s][1] > 1024 ? 3 : 7;
        run_shape(kt, n, shapes[s][0], shapes[s][1], reps);
    }
    return 0;
}
