/*
 * Packed PQ GEMM (lib/format/packed_pq.c) against OpenBLAS on the dense fp32
 * matrix, side by side in one process.
 * SPDX-License-Identifier: MIT
 *
 * Shapes out x in = 4096 x 4096 and 1024 x 1024, PQ with bs = 8 and K = 256
 * (random codes and codebook: speed does not depend on the values; the dense
 * matrix is the decode of the same tensor, and the outputs are compared);
 * batch M in {1, 8, 64, 256}; 1 thread and all threads (OpenBLAS through
 * openblas_set_num_threads, the library through qn_context_set_threads).
 *
 * hot   the same matrix on every call (dense 64 MiB mostly comes from L3/DRAM
 *       anyway; PQ's 2 MiB of codes from L2/L3)
 * cold  calls rotate over copies totalling more than 1 GiB, so every call
 *       streams its weights from memory: >= 17 copies of the dense matrix,
 *       hundreds of packed PQ weights (2 MiB of codes each for 4096 x 4096)
 *
 * Anchors: M = 1 against cblas_sgemv (OpenBLAS's sgemm with M = 1 is several
 * times slower than its sgemv), M >= 8 against cblas_sgemm. Each figure is
 * the median over repetitions, dense and PQ alternating inside each
 * repetition; ratios are dense time / PQ time (> 1: PQ faster).
 *
 * Also measured here: the FMA peak (independent FMA chains) and the memory
 * bandwidth (read and copy of 1 GiB) with 1 and all threads, the GB/s and
 * GFLOP/s each kernel reaches against them, and the crossovers of the three
 * PQ paths (gather / batch / decode, forced through packed_pq.h) over M.
 *
 * usage: bench_packed_pq [--quick]   (fewer repetitions, no M sweep)
 * Run it through bench/run.sh (OPENBLAS_CORETYPE, OMP_WAIT_POLICY=passive).
 */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

#include "bench_util.h"
#include "format/packed_pq.h"
#include "format/qtensor_internal.h"

#if defined(_OPENMP)
#include <omp.h>
#endif

extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

#define MAX_REPS 15
#define COLD_BYTES ((size_t)1100 << 20) /* > 1 GiB of weights per side */
#define BS 8
#define K 256

static void check(qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "%s: %s\n", what, qn_status_str(st));
        exit(1);
    }
}

static double median(double *v, int n)
{
    int i, j;
    for (i = 1; i < n; i++)
        for (j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static int n_procs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

/* ------------------------------------------------------------------------------------------ */
/* machine limits                                                                              */

/*
 * Gather rate of one thread, G elements/s: 16-lane (8 for AVX2) gathers from an L1-resident
 * 1 KiB table with indices in registers, 8 independent accumulators: the ceiling of the gather
 * path's inner loop. Best of 30 short runs.
 */
#if BENCH_X86
__attribute__((target("avx512f"))) static double gather_avx512(const float *tab, long iters)
{
    __m512i i0 = _mm512_setr_epi32(3, 77, 140, 9, 201, 55, 18, 240, 99, 6, 170, 33, 250, 61, 128, 12);
    const __m512i step = _mm512_set1_epi32(37), mask = _mm512_set1_epi32(255);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    volatile float sink;
    double t0 = now();
    long i;
    for (i = 0; i < iters; i++) {
        __m512i i1 = _mm512_and_si512(_mm512_add_epi32(i0, step), mask);
        a0 = _mm512_add_ps(a0, _mm512_i32gather_ps(i0, tab, 4));
        a1 = _mm512_add_ps(a1, _mm512_i32gather_ps(i1, tab, 4));
        a2 = _mm512_add_ps(a2, _mm512_i32gather_ps(i0, tab + 256, 4));
        a3 = _mm512_add_ps(a3, _mm512_i32gather_ps(i1, tab + 256, 4));
        a4 = _mm512_add_ps(a4, _mm512_i32gather_ps(i0, tab + 512, 4));
        a5 = _mm512_add_ps(a5, _mm512_i32gather_ps(i1, tab + 512, 4));
        a6 = _mm512_add_ps(a6, _mm512_i32gather_ps(i0, tab + 768, 4));
        a7 = _mm512_add_ps(a7, _mm512_i32gather_ps(i1, tab + 768, 4));
        i0 = _mm512_and_si512(_mm512_add_epi32(i1, step), mask);
    }
    t0 = now() - t0;
    a0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                       _mm512_add_ps(_mm512_add_ps(a4, a5), _mm512_add_ps(a6, a7)));
    sink = _mm512_reduce_add_ps(a0);
    (void)sink;
    return 8.0 * 16.0 * (double)iters / t0 / 1e9;
}

__attribute__((target("avx2"))) static double gather_avx2(const float *tab, long iters)
{
    __m256i i0 = _mm256_setr_epi32(3, 77, 140, 9, 201, 55, 18, 240);
    const __m256i step = _mm256_set1_epi32(37), mask = _mm256_set1_epi32(255);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    float out[8];
    volatile float sink;
    double t0 = now();
    long i;
    for (i = 0; i < iters; i++) {
        __m256i i1 = _mm256_and_si256(_mm256_add_epi32(i0, step), mask);
        a0 = _mm256_add_ps(a0, _mm256_i32gather_ps(tab, i0, 4));
        a1 = _mm256_add_ps(a1, _mm256_i32gather_ps(tab, i1, 4));
        a2 = _mm256_add_ps(a2, _mm256_i32gather_ps(tab + 256, i0, 4));
        a3 = _mm256_add_ps(a3, _mm256_i32gather_ps(tab + 256, i1, 4));
        a4 = _mm256_add_ps(a4, _mm256_i32gather_ps(tab + 512, i0, 4));
        a5 = _mm256_add_ps(a5, _mm256_i32gather_ps(tab + 512, i1, 4));
        a6 = _mm256_add_ps(a6, _mm256_i32gather_ps(tab + 768, i0, 4));
        a7 = _mm256_add_ps(a7, _mm256_i32gather_ps(tab + 768, i1, 4));
        i0 = _mm256_and_si256(_mm256_add_epi32(i1, step), mask);
    }
    t0 = now() - t0;
    a0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                       _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    _mm256_storeu_ps(out, a0);
    sink = out[0];
    (void)sink;
    return 8.0 * 8.0 * (double)iters / t0 / 1e9;
}
#endif

static double measure_gather(qn_isa isa)
{
    float *tab = (float *)xalloc(1024 * sizeof(float));
    double best = 0.0;
    int r;
    fill(tab, 1024, 3);
    for (r = 0; r < 30; r++) {
        double g = 0.0;
#if BENCH_X86
        if (isa == QN_ISA_AVX512)
            g = gather_avx512(tab, 20000L);
        else if (isa == QN_ISA_AVX2)
            g = gather_avx2(tab, 20000L);
#endif
        if (g > best)
            best = g;
    }
    (void)isa;
    free(tab);
    return best;
}

/* Read bandwidth of one thread from L2 (a 512 KiB buffer read over and over), GB/s (best of 30). */
static double measure_l2(qn_isa isa)
{
    const size_t n = 128 * 1024; /* 512 KiB of floats */
    float *a = (float *)xalloc(n * sizeof(float));
    volatile float sink = 0.0f;
    double best = 0.0;
    int r, i;
    fill(a, n, 5);
    for (r = 0; r < 30; r++) {
        double t0 = now(), t;
        float s = 0.0f;
        for (i = 0; i < 20; i++)
            s += read_sum(isa, a, n);
        t = now() - t0;
        sink += s;
        if (20.0 * (double)n * 4 / t / 1e9 > best)
            best = 20.0 * (double)n * 4 / t / 1e9;
    }
    (void)sink;
    free(a);
    return best;
}

/* Read and copy bandwidth, GB/s, of `threads` threads over a 1 GiB buffer (best of three). */
static void measure_bw(qn_isa isa, int threads, double *read_gbs, double *copy_gbs)
{
    const size_t n = (size_t)1 << 28; /* 1 GiB of floats */
    float *a = (float *)xalloc(n * sizeof(float)), *b = (float *)xalloc(n / 2 * sizeof(float));
    volatile float sink = 0.0f;
    int r;
    *read_gbs = *copy_gbs = 0.0;
    fill(a, n, 1);
    for (r = 0; r < 3; r++) {
        double t0 = now(), t;
        float s = 0.0f;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) reduction(+ : s)
#endif
        {
            size_t tid = 0, nt = 1, lo, hi;
#if defined(_OPENMP)
            tid = (size_t)omp_get_thread_num();
            nt = (size_t)omp_get_num_threads();
#endif
            lo = n / nt / 64 * 64 * tid; /* 64-float aligned parts */
            hi = tid + 1 == nt ? n : n / nt / 64 * 64 * (tid + 1);
            s += read_sum(isa, a + lo, hi - lo);
        }
        t = now() - t0;
        sink += s;
        if ((double)n * 4 / t / 1e9 > *read_gbs)
            *read_gbs = (double)n * 4 / t / 1e9;
        t0 = now();
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads)
#endif
        {
            size_t tid = 0, nt = 1, lo, hi, half = n / 2;
#if defined(_OPENMP)
            tid = (size_t)omp_get_thread_num();
            nt = (size_t)omp_get_num_threads();
#endif
            lo = half / nt * tid;
            hi = tid + 1 == nt ? half : half / nt * (tid + 1);
            memcpy(b + lo, a + half + lo, (hi - lo) * sizeof(float));
        }
        t = now() - t0;
        /* bytes read + bytes written */
        if ((double)n * 4 / t / 1e9 > *copy_gbs)
            *copy_gbs = (double)n * 4 / t / 1e9;
    }
    (void)sink;
    (void)threads;
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------------------------ */
/* one shape                                                                                   */

typedef struct bench_shape {
    size_t rows, cols;
    qn_qtensor *qt;
    float **dense; /* n_dense copies, [0] is the hot one */
    size_t n_dense;
    qn_packed **pq; /* n_pq copies, [0] is the hot one */
    size_t n_pq;
    size_t pq_bytes; /* streamed per call: codes + codebook */
    size_t next_dense, next_pq;
} bench_shape;

static void shape_init(bench_shape *s, qn_context *ctx, size_t rows, size_t cols)
{
    const size_t nb = rows * cols / BS, dense_bytes = rows * cols * sizeof(float);
    float *cb = (float *)xalloc(K * BS * sizeof(float));
    uint16_t *codes = (uint16_t *)xalloc(nb * sizeof(uint16_t));
    uint64_t seed = 42;
    size_t i;
    memset(s, 0, sizeof *s);
    s->rows = rows;
    s->cols = cols;
    fill(cb, K * BS, 7);
    for (i = 0; i < nb; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        codes[i] = (uint16_t)((seed >> 33) % K);
    }
    check(qn_qtensor_from_pq_codes(ctx, rows, cols, BS, K, cb, codes, &s->qt), "qtensor");
    s->n_dense = (COLD_BYTES + dense_bytes - 1) / dense_bytes + 1;
    s->dense = (float **)xalloc(s->n_dense * sizeof(float *));
    for (i = 0; i < s->n_dense; i++) {
        s->dense[i] = (float *)xalloc(dense_bytes);
        if (i == 0)
            check(qn_qtensor_decode(s->qt, s->dense[0]), "decode");
        else
            memcpy(s->dense[i], s->dense[0], dense_bytes);
    }
    s->pq_bytes = cols / BS * ((rows + 63) / 64 * 64) + 2 * K * BS * sizeof(float);
    s->n_pq = (COLD_BYTES + s->pq_bytes - 1) / s->pq_bytes + 1;
    s->pq = (qn_packed **)xalloc(s->n_pq * sizeof(qn_packed *));
    for (i = 0; i < s->n_pq; i++)
        check(qn_packed_create(ctx, s->qt, &s->pq[i]), "pack");
    free(cb);
    free(codes);
}

static void shape_free(bench_shape *s)
{
    size_t i;
    for (i = 0; i < s->n_dense; i++)
        free(s->dense[i]);
    for (i = 0; i < s->n_pq; i++)
        qn_packed_destroy(s->pq[i]);
    free(s->dense);
    free(s->pq);
    qn_qtensor_destroy(s->qt);
}

static void dense_call(const float *w, size_t rows, size_t cols, size_t M, const float *x, float *y)
{
    if (M == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)rows, (int)cols, 1.0f, w, (int)cols, x, 1, 0.0f, y, 1);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)rows, (int)cols, 1.0f, x, (int)cols, w,
                    (int)cols, 0.0f, y, (int)rows);
}

/* Seconds per call: hot repeats copy 0; cold walks on through the copies (each last used a full rotation ago). */
static double time_dense(bench_shape *s, size_t M, const float *x, float *y, int cold, double min_s)
{
    double t0 = now(), t;
    long calls = 0;
    do {
        const float *w = s->dense[0];
        if (cold) {
            s->next_dense = s->next_dense % (s->n_dense - 1) + 1;
            w = s->dense[s->next_dense];
        }
        dense_call(w, s->rows, s->cols, M, x, y);
        calls++;
        t = now() - t0;
    } while (t < min_s || (cold && calls < 4));
    return t / (double)calls;
}

static double time_pq(bench_shape *s, size_t M, const float *x, float *y, void *ws, int cold, double min_s)
{
    double t0 = now(), t;
    long calls = 0;
    do {
        const qn_packed *p = s->pq[0];
        if (cold) {
            s->next_pq = s->next_pq % (s->n_pq - 1) + 1;
            p = s->pq[s->next_pq];
        }
        qn_packed_gemm(p, M, x, s->cols, NULL, y, s->rows, ws);
        calls++;
        t = now() - t0;
    } while (t < min_s || (cold && calls < 4));
    return t / (double)calls;
}

/* Largest |a - b| relative to max |b| (the PQ output against the dense one). */
static double max_rel_diff(const float *a, const float *b, size_t n)
{
    double d = 0.0, m = 1e-30;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i], v = (double)b[i];
        if (e < 0)
            e = -e;
        if (v < 0)
            v = -v;
        if (e > d)
            d = e;
        if (v > m)
            m = v;
    }
    return d / m;
}

typedef struct limits {
    double peak1, peakN, read1, readN, copy1, copyN, gather1, l2read1;
} limits;

static const char *path_name(qn_pq_path p)
{
    switch (p) {
    case QN_PQ_PATH_GATHER:
        return "gather";
    case QN_PQ_PATH_BATCH:
        return "batch";
    case QN_PQ_PATH_DECODE:
        return "decode";
    default:
        return "auto";
    }
}

/* "met" / "MISSED" for ratio >= want. */
static const char *verdict(double ratio, double want)
{
    return ratio >= want ? "met" : "MISSED";
}

static void run_shape(qn_context *ctx, bench_shape *s, int threads, int reps, const limits *lim, void *ws)
{
    static const size_t Ms[] = {1, 8, 64, 256};
    const double peak = threads > 1 ? lim->peakN : lim->peak1, bw = threads > 1 ? lim->readN : lim->read1;
    const double dense_bytes = (double)s->rows * (double)s->cols * 4.0;
    size_t mi;
    openblas_set_num_threads(threads);
    check(qn_context_set_threads(ctx, (unsigned)threads), "threads");
    printf("\n%zu x %zu, bs %d, K %d, %d thread%s: dense %.0f MiB (%zu copies when cold), PQ %.2f MiB of codes + "
           "codebooks (%zu copies when cold); ms per call, ratio = dense time / PQ time\n",
           s->rows, s->cols, BS, K, threads, threads > 1 ? "s" : "", dense_bytes / 1048576.0, s->n_dense,
           (double)s->pq_bytes / 1048576.0, s->n_pq);
    printf("%4s %-6s %9s %9s %9s %9s  %-6s %7s %7s  %s\n", "M", "dense", "dense hot", "cold", "PQ hot", "cold", "path",
           "hot x", "cold x", "target");
    for (mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        const size_t M = Ms[mi];
        float *x = (float *)xalloc(M * s->cols * sizeof(float));
        float *yd = (float *)xalloc(M * s->rows * sizeof(float)), *yq = (float *)xalloc(M * s->rows * sizeof(float));
        double dh[MAX_REPS], dc[MAX_REPS], qh[MAX_REPS], qc[MAX_REPS], rh[MAX_REPS], rc[MAX_REPS];
        double min_s = M >= 64 ? 0.15 : 0.08, tdh, tdc, tqh, tqc, gf, diff, xh, xc, lookups;
        char target[96];
        int r;
        fill(x, M * s->cols, 11 + M);
        dense_call(s->dense[0], s->rows, s->cols, M, x, yd);
        qn_packed_gemm(s->pq[0], M, x, s->cols, NULL, yq, s->rows, ws);
        diff = max_rel_diff(yq, yd, M * s->rows);
        for (r = 0; r < reps; r++) {
            dh[r] = time_dense(s, M, x, yd, 0, min_s);
            qh[r] = time_pq(s, M, x, yq, ws, 0, min_s);
            dc[r] = time_dense(s, M, x, yd, 1, min_s);
            qc[r] = time_pq(s, M, x, yq, ws, 1, min_s);
            rh[r] = dh[r] / qh[r];
            rc[r] = dc[r] / qc[r];
        }
        tdh = median(dh, reps);
        tdc = median(dc, reps);
        tqh = median(qh, reps);
        tqc = median(qc, reps);
        xh = median(rh, reps);
        xc = median(rc, reps);
        if (M == 1)
            snprintf(target, sizeof target, "cold >= 8x %s, hot >= 4x %s", verdict(xc, 8.0), verdict(xh, 4.0));
        else if (M == 8)
            snprintf(target, sizeof target, "cold >= 3x %s", verdict(xc, 3.0));
        else
            snprintf(target, sizeof target, ">= 0.9x hot %s, cold %s", verdict(xh, 0.9), verdict(xc, 0.9));
        printf("%4zu %-6s %9.3f %9.3f %9.3f %9.3f  %-6s %7.2f %7.2f  %s\n", M, M == 1 ? "sgemv" : "sgemm", 1e3 * tdh,
               1e3 * tdc, 1e3 * tqh, 1e3 * tqc, path_name(qn_packed_pq_path(s->pq[0], M)), xh, xc, target);
        gf = 2.0 * (double)M * (double)s->rows * (double)s->cols / 1e9;
        lookups = (double)M * (double)s->rows * (double)(s->cols / BS);
        printf("     dense cold: %.1f GB/s (%.0f%% of memory read), %.1f GFLOP/s (%.0f%% of FMA peak)\n",
               dense_bytes / tdc / 1e9, 100.0 * dense_bytes / tdc / 1e9 / bw, gf / tdc, 100.0 * gf / tdc / peak);
        if (qn_packed_pq_path(s->pq[0], M) == QN_PQ_PATH_GATHER)
            printf("     PQ hot: %.2f G gathered elements/s (%.0f%% of the gather rate x %d thread%s)", lookups / tqh / 1e9,
                   100.0 * lookups / tqh / 1e9 / (lim->gather1 * threads), threads, threads > 1 ? "s" : "");
        else {
            /* every (output row, subspace) loads one table entry of W = 8 or 16 floats */
            const double w = M <= 8 ? 8.0 : 16.0, groups = (double)((M + (M <= 8 ? 7 : 15)) / (M <= 8 ? 8 : 16));
            const double tb = groups * (double)s->rows * (double)(s->cols / BS) * w * 4.0;
            printf("     PQ hot: table entries read %.1f GB/s (%.0f%% of L2 read x %d thread%s)", tb / tqh / 1e9,
                   100.0 * tb / tqh / 1e9 / (lim->l2read1 * threads), threads, threads > 1 ? "s" : "");
        }
        printf("; cold: codes streamed %.2f GB/s (%.0f%% of memory read); dense-equivalent %.1f GFLOP/s; "
               "max |PQ - dense| / max |dense| %.1e\n",
               (double)s->pq_bytes / tqc / 1e9, 100.0 * (double)s->pq_bytes / tqc / 1e9 / bw, gf / tqc, diff);
        free(x);
        free(yd);
        free(yq);
    }
}

/* Seconds per call of one packed weight, hot. */
static double time_hot(const qn_packed *p, size_t M, const float *x, size_t cols, float *y, size_t rows, void *ws,
                       double min_s)
{
    double t0 = now(), t;
    long calls = 0;
    do {
        qn_packed_gemm(p, M, x, cols, NULL, y, rows, ws);
        calls++;
        t = now() - t0;
    } while (t < min_s);
    return t / (double)calls;
}

/* Largest workspace of p over M <= max_m, every forced path and 1 .. nall threads. */
static size_t max_workspace(qn_context *ctx, qn_packed *p, size_t max_m, int nall)
{
    qn_packed_pq_tuning base, t;
    size_t M, b, best = 0;
    int th, f;
    check(qn_packed_pq_get_tuning(p, &base), "tuning");
    for (th = 1; th <= nall; th++) {
        check(qn_context_set_threads(ctx, (unsigned)th), "threads");
        for (f = 0; f <= 3; f++) {
            t = base;
            t.force = (qn_pq_path)f;
            check(qn_packed_pq_set_tuning(p, &t), "tuning");
            for (M = 1; M <= max_m; M++) {
                b = qn_packed_workspace_size(p, M);
                if (b > best)
                    best = b;
            }
        }
    }
    check(qn_packed_pq_set_tuning(p, &base), "tuning");
    return best;
}

/* Hot time of each forced path over M on one packed weight, and the measured crossovers. */
static void sweep(qn_context *ctx, qn_packed *p, size_t rows, size_t cols, size_t k, int threads, int reps, void *ws)
{
    static const size_t Ms[] = {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512};
    static const qn_pq_path paths[] = {QN_PQ_PATH_GATHER, QN_PQ_PATH_BATCH, QN_PQ_PATH_DECODE};
    enum { NM = sizeof Ms / sizeof Ms[0] };
    qn_packed_pq_tuning base, t;
    double tms[NM][3];
    size_t mi, pi, cross_gb = 0, cross_bd = 0;
    openblas_set_num_threads(threads);
    check(qn_context_set_threads(ctx, (unsigned)threads), "threads");
    check(qn_packed_pq_get_tuning(p, &base), "tuning");
    printf("\npath sweep, %zu x %zu, bs %d, K %zu, %d thread%s, hot, ms per call (median of %d; gather not timed past "
           "M = 16):\n%5s %10s %10s %10s  %s\n",
           rows, cols, BS, k, threads, threads > 1 ? "s" : "", reps, "M", "gather", "batch", "decode", "auto takes");
    for (mi = 0; mi < sizeof Ms / sizeof Ms[0]; mi++) {
        const size_t M = Ms[mi];
        float *x = (float *)xalloc(M * cols * sizeof(float)), *y = (float *)xalloc(M * rows * sizeof(float));
        double v[3][MAX_REPS], tm[3];
        int r;
        fill(x, M * cols, 3 + M);
        /* the paths alternate inside each repetition */
        for (r = 0; r < reps; r++)
            for (pi = 0; pi < 3; pi++) {
                v[pi][r] = 0.0;
                if (M > 16 && paths[pi] == QN_PQ_PATH_GATHER)
                    continue;
                t = base;
                t.force = paths[pi];
                check(qn_packed_pq_set_tuning(p, &t), "tuning");
                v[pi][r] = time_hot(p, M, x, cols, y, rows, ws, 0.03);
            }
        check(qn_packed_pq_set_tuning(p, &base), "tuning");
        for (pi = 0; pi < 3; pi++)
            tms[mi][pi] = tm[pi] = median(v[pi], reps);
        if (tm[0] > 0.0)
            printf("%5zu %10.3f %10.3f %10.3f  %s\n", M, 1e3 * tm[0], 1e3 * tm[1], 1e3 * tm[2],
                   path_name(qn_packed_pq_path(p, M)));
        else
            printf("%5zu %10s %10.3f %10.3f  %s\n", M, "-", 1e3 * tm[1], 1e3 * tm[2], path_name(qn_packed_pq_path(p, M)));
        free(x);
        free(y);
    }
    /* crossover: the smallest M from which the later path is faster at every larger M measured */
    for (mi = NM; mi-- > 0;) {
        if (tms[mi][0] > 0.0 && tms[mi][1] >= tms[mi][0])
            break;
        if (tms[mi][0] > 0.0)
            cross_gb = Ms[mi];
    }
    for (mi = NM; mi-- > 0 && Ms[mi] >= cross_gb;) {
        if (tms[mi][2] >= tms[mi][1])
            break;
        cross_bd = Ms[mi];
    }
    printf("measured crossovers (the later path faster from there on): gather -> batch at M = %zu; ", cross_gb);
    if (cross_bd)
        printf("batch (LUT) -> decode at M = %zu\n", cross_bd);
    else
        printf("batch (LUT) -> decode: never, up to M = 512\n");
}

int main(int argc, char **argv)
{
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int reps = quick ? 3 : 7, nall = n_procs();
    qn_context *ctx = NULL;
    qn_isa isa;
    limits lim;
    bench_shape s;
    size_t si;
    void *ws;
    setvbuf(stdout, NULL, _IOLBF, 0);
    check(qn_context_create(&ctx), "context");
    check(qn_context_get_isa(ctx, &isa), "isa");
    /* best of 30 runs of a few ms: on a shared machine some of them run undisturbed */
    lim.peak1 = measure_peak(isa, 1, 30, 1000000L);
    lim.peakN = measure_peak(isa, nall, 30, 1000000L);
    measure_bw(isa, 1, &lim.read1, &lim.copy1);
    measure_bw(isa, nall, &lim.readN, &lim.copyN);
    lim.gather1 = measure_gather(isa);
    lim.l2read1 = measure_l2(isa);
    printf("bench_packed_pq: libqnoise %s, kernels %s, OpenBLAS core %s, %d cores; medians of %d repetitions\n",
           qn_version(), qn_isa_name(isa), openblas_get_corename(), nall, reps);
    printf("machine: FMA peak %.1f GFLOP/s (1 thread), %.1f (%d threads); memory read %.1f GB/s (1 thread), %.1f "
           "(%d); copy (read + write) %.1f / %.1f GB/s\n",
           lim.peak1, lim.peakN, nall, lim.read1, lim.readN, nall, lim.copy1, lim.copyN);
    printf("machine, 1 thread: gathers from an L1 table %.2f G elements/s; reads from L2 %.1f GB/s\n", lim.gather1,
           lim.l2read1);
    for (si = 0; si < 2; si++) {
        const size_t n = si == 0 ? 4096 : 1024;
        shape_init(&s, ctx, n, n);
        ws = xalloc(max_workspace(ctx, s.pq[0], 512, nall) + 64);
        run_shape(ctx, &s, 1, reps, &lim, ws);
        if (nall > 1)
            run_shape(ctx, &s, nall, reps, &lim, ws);
        if (!quick) {
            sweep(ctx, s.pq[0], n, n, K, 1, reps, ws);
            if (nall > 1)
                sweep(ctx, s.pq[0], n, n, K, nall, reps, ws);
        }
        free(ws);
        shape_free(&s);
    }
    if (!quick) {
        /* k = rows: where decode + sgemm overtakes the tables */
        const size_t n = 4096, kb = 4096, nb = n * n / BS;
        float *cb = (float *)xalloc(kb * BS * sizeof(float));
        uint16_t *codes = (uint16_t *)xalloc(nb * sizeof(uint16_t));
        qn_qtensor *qt = NULL;
        qn_packed *p = NULL;
        size_t i;
        fill(cb, kb * BS, 9);
        for (i = 0; i < nb; i++)
            codes[i] = (uint16_t)((i * 2654435761u >> 7) % kb);
        check(qn_qtensor_from_pq_codes(ctx, n, n, BS, kb, cb, codes, &qt), "qtensor");
        check(qn_packed_create(ctx, qt, &p), "pack");
        ws = xalloc(max_workspace(ctx, p, 512, nall) + 64);
        sweep(ctx, p, n, n, kb, 1, reps, ws);
        if (nall > 1)
            sweep(ctx, p, n, n, kb, nall, reps, ws);
        free(ws);
        qn_packed_destroy(p);
        qn_qtensor_destroy(qt);
        free(cb);
        free(codes);
    }
    qn_context_destroy(ctx);
    return 0;
}
