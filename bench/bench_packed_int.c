/*
 * Packed int8 / int4 GEMM (qn_packed on scalar-quantized weights) side by side with OpenBLAS on
 * the dense fp32 matrix, in one process.
 * SPDX-License-Identifier: MIT
 *
 * y[M x out] = x[M x in] . W^T for out x in = 4096 x 4096 and 1024 x 1024, M in {1, 8, 64, 256},
 * 1 thread and all threads (OpenBLAS's and the library's). Anchor: cblas_sgemv for M = 1,
 * cblas_sgemm for M >= 8, on the dense fp32 matrix. Weights: int8 (8-bit per-channel) and int4
 * (4-bit per-channel), fp32 activations (the default path: exact up to fp32 summation order);
 * "int8 q" is the opt-in quantized-activation path (u8 + vpdpbusd with VNNI).
 *
 * hot:  the same matrix every call (it stays in the 260 MiB L3 of these machines).
 * cold: calls rotate over copies totalling > 1.1 GiB (dense: 18 x 64 MiB; int8 and int4 as
 *       many copies of their packed weights), so every call streams its weight from memory.
 *
 * The program measures the machine first: FMA peak (a loop of independent FMAs, per core and on
 * all cores) and read bandwidth (a vector sum over 1 GiB, 1 thread and all threads), then prints
 * achieved GB/s of weight (M = 1) or GFLOP/s (M >= 64) against them. Timings are medians of
 * repetitions that alternate dense and packed (the VMs are noisy); ratios are medians of the
 * per-repetition ratios (dense time / packed time: > 1 means packed is faster).
 *
 * It also measures the crossover of the fp32 paths (weights decoded in registers against fp32
 * panels + cblas_sgemm) over M, and the accuracy of the quantized path on random data.
 *
 * usage: bench_packed_int [--quick]    (--quick: 1024 x 1024 only, fewer copies and repetitions)
 * Run through bench/run.sh (OPENBLAS_CORETYPE, OMP_WAIT_POLICY=passive).
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <qnoise/qnoise.h>

#include "bench_util.h"
#include "format/packed_int.h" /* internal: the packed weight and its paths */

extern void openblas_set_num_threads(int num_threads);
extern char *openblas_get_corename(void);

#define MAX_REPS 16
#define COLD_BYTES ((size_t)1100 << 20)

static int g_threads_all = 2;
static double g_peak1, g_peak_all; /* GFLOP/s */
static double g_bw1, g_bw_all;     /* GB/s, read */

static void die(const char *what)
{
    fprintf(stderr, "bench_packed_int: %s failed\n", what);
    exit(1);
}

static double median(const double *v, int n)
{
    double s[MAX_REPS];
    int i, j;
    for (i = 0; i < n; i++) {
        double t = v[i];
        for (j = i; j > 0 && s[j - 1] > t; j--)
            s[j] = s[j - 1];
        s[j] = t;
    }
    return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ------------------------------------------------------------------------------------------ */
/* machine limits                                                                              */

typedef struct probe_job {
    const float *v;
    size_t n;
    double result;
    int kind; /* 0 peak, 1 bandwidth */
} probe_job;

static void *probe_run(void *arg)
{
    probe_job *j = (probe_job *)arg;
#if BENCH_X86
    if (j->kind == 0) {
        j->result = peak_avx512(20000000L);
    } else {
        volatile float sink = read_sum512(j->v, j->n);
        (void)sink;
    }
#else
    (void)j;
#endif
    return NULL;
}

/* Peak of `nt` cores running the FMA loop at once (GFLOP/s, sum over cores). */
static double peak_on(int nt)
{
    pthread_t th[8];
    probe_job jobs[8];
    double s = 0.0;
    int i;
    memset(jobs, 0, sizeof jobs);
    for (i = 0; i < nt; i++) {
        jobs[i].kind = 0;
        jobs[i].result = 0.0;
        if (i > 0 && pthread_create(&th[i], NULL, probe_run, &jobs[i]) != 0)
            die("pthread_create");
    }
    probe_run(&jobs[0]);
    for (i = 1; i < nt; i++)
        pthread_join(th[i], NULL);
    for (i = 0; i < nt; i++)
        s += jobs[i].result;
    return s;
}

/* Read bandwidth of `nt` threads summing disjoint parts of v (GB/s). */
static double bandwidth_on(const float *v, size_t n, int nt)
{
    pthread_t th[8];
    probe_job jobs[8];
    double t0;
    int i;
    memset(jobs, 0, sizeof jobs);
    for (i = 0; i < nt; i++) {
        jobs[i].kind = 1;
        jobs[i].v = v + n / (size_t)nt * (size_t)i;
        jobs[i].n = n / (size_t)nt;
    }
    t0 = now();
    for (i = 1; i < nt; i++)
        if (pthread_create(&th[i], NULL, probe_run, &jobs[i]) != 0)
            die("pthread_create");
    probe_run(&jobs[0]);
    for (i = 1; i < nt; i++)
        pthread_join(th[i], NULL);
    return (double)(n * sizeof(float)) / (now() - t0) / 1e9;
}

static void measure_machine(int quick)
{
    size_t n = quick ? ((size_t)256 << 20) / 4 : ((size_t)1 << 30) / 4;
    float *v = (float *)xalloc(n * sizeof(float));
    double b1 = 0, ba = 0, p1 = 0, pa = 0;
    int r;
    fill(v, n, 3);
    for (r = 0; r < 3; r++) {
        double t;
        t = bandwidth_on(v, n, 1);
        b1 = t > b1 ? t : b1;
        t = bandwidth_on(v, n, g_threads_all);
        ba = t > ba ? t : ba;
        t = peak_on(1);
        p1 = t > p1 ? t : p1;
        t = peak_on(g_threads_all);
        pa = t > pa ? t : pa;
    }
    free(v);
    /* the best seen so far: other jobs on these shared VMs only ever lower a measurement */
    g_bw1 = b1 > g_bw1 ? b1 : g_bw1;
    g_bw_all = ba > g_bw_all ? ba : g_bw_all;
    g_peak1 = p1 > g_peak1 ? p1 : g_peak1;
    g_peak_all = pa > g_peak_all ? pa : g_peak_all;
    printf("machine: FMA peak %.0f GFLOP/s (1 core), %.0f GFLOP/s (%d cores); read bandwidth %.1f GB/s (1 thread), "
           "%.1f GB/s (%d threads) [this probe: %.0f, %.0f GFLOP/s, %.1f, %.1f GB/s]\n",
           g_peak1, g_peak_all, g_threads_all, g_bw1, g_bw_all, g_threads_all, p1, pa, b1, ba);
}

/* ------------------------------------------------------------------------------------------ */
/* the operations timed                                                                        */

typedef struct shape_data {
    size_t rows, cols;
    float **dense;  /* copies of the fp32 matrix */
    size_t ndense;
    qn_packed **p8; /* copies of the packed int8 weight */
    size_t n8;
    qn_packed **p4; /* int4 */
    size_t n4;
    float *x, *y;
    void *ws;
    size_t ws_size;
} shape_data;

typedef enum kind { K_DENSE, K_INT8, K_INT4, K_INT8Q } kind;

static void call_once(shape_data *sd, kind k, size_t copy, size_t M)
{
    switch (k) {
    case K_DENSE: {
        const float *w = sd->dense[copy % sd->ndense];
        if (M == 1)
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)sd->rows, (int)sd->cols, 1.0f, w, (int)sd->cols, sd->x, 1,
                        0.0f, sd->y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)sd->rows, (int)sd->cols, 1.0f, sd->x,
                        (int)sd->cols, w, (int)sd->cols, 0.0f, sd->y, (int)sd->rows);
        break;
    }
    case K_INT8:
    case K_INT8Q:
        qn_packed_gemm(sd->p8[copy % sd->n8], M, sd->x, sd->cols, NULL, sd->y, sd->rows, sd->ws);
        break;
    case K_INT4:
        qn_packed_gemm(sd->p4[copy % sd->n4], M, sd->x, sd->cols, NULL, sd->y, sd->rows, sd->ws);
        break;
    }
}

static size_t copies_of(const shape_data *sd, kind k)
{
    return k == K_DENSE ? sd->ndense : (k == K_INT4 ? sd->n4 : sd->n8);
}

/*
 * Seconds per call: hot repeats copy 0, cold walks through the copies from *next on (never the
 * same copy twice in one measurement, so each call streams its weight). At least 3 calls and
 * about min_s seconds.
 */
static double time_calls(shape_data *sd, kind k, size_t M, int cold, size_t *next, double min_s)
{
    size_t ncopy = copies_of(sd, k), n = 0, maxn = cold ? ncopy : 100000;
    double t0, t;
    call_once(sd, k, cold ? (*next)++ : 0, M); /* warm the code path (and, hot, the matrix) */
    t0 = now();
    do {
        call_once(sd, k, cold ? (*next)++ : 0, M);
        n++;
        t = now() - t0;
    } while ((t < min_s || n < 3) && n < maxn);
    return t / (double)n;
}

static void set_paths(shape_data *sd, qn_packed_int_path path8, qn_packed_int_path path4)
{
    size_t i;
    for (i = 0; i < sd->n8; i++)
        if (qn_packed_int_set_path(sd->p8[i], path8) != QN_OK)
            die("qn_packed_int_set_path");
    for (i = 0; i < sd->n4; i++)
        if (qn_packed_int_set_path(sd->p4[i], path4) != QN_OK)
            die("qn_packed_int_set_path");
}

/* Workspace for the largest M and every path. */
static void ensure_ws(shape_data *sd, size_t M)
{
    static const qn_packed_int_path paths[] = {QN_PACKED_INT_REGISTERS, QN_PACKED_INT_SGEMM,
                                               QN_PACKED_INT_QUANTIZED, QN_PACKED_INT_PANELS};
    size_t need = 0, i;
    for (i = 0; i < 4; i++) {
        size_t a, b;
        set_paths(sd, paths[i], paths[i] == QN_PACKED_INT_QUANTIZED ? QN_PACKED_INT_REGISTERS : paths[i]);
        a = qn_packed_workspace_size(sd->p8[0], M);
        b = qn_packed_workspace_size(sd->p4[0], M);
        need = a > need ? a : need;
        need = b > need ? b : need;
    }
    set_paths(sd, QN_PACKED_INT_AUTO, QN_PACKED_INT_AUTO);
    if (need > sd->ws_size) {
        free(sd->ws);
        sd->ws = xalloc((need + 63) / 64 * 64);
        sd->ws_size = need;
    }
}

static qn_packed **make_copies(qn_context *ctx, const qn_qtensor *qt, size_t n)
{
    qn_packed **v = (qn_packed **)calloc(n, sizeof *v);
    size_t i;
    if (!v)
        die("calloc");
    for (i = 0; i < n; i++)
        if (qn_packed_create(ctx, qt, &v[i]) != QN_OK)
            die("qn_packed_create");
    return v;
}

static size_t ncopies(size_t bytes, int quick)
{
    size_t n = (COLD_BYTES + bytes - 1) / bytes;
    (void)quick;
    return n < 2 ? 2 : n;
}

static void shape_setup(qn_context *ctx, shape_data *sd, size_t rows, size_t cols, int quick)
{
    float *w = (float *)xalloc(rows * cols * sizeof(float));
    qn_qtensor *q8 = NULL, *q4 = NULL;
    size_t i, b8, b4;
    double t0 = now();
    memset(sd, 0, sizeof *sd);
    sd->rows = rows;
    sd->cols = cols;
    fill(w, rows * cols, 11);
    if (qn_qtensor_from_scalar(ctx, w, rows, cols, 8, 1, &q8) != QN_OK ||
        qn_qtensor_from_scalar(ctx, w, rows, cols, 4, 1, &q4) != QN_OK)
        die("qn_qtensor_from_scalar");
    sd->ndense = ncopies(rows * cols * sizeof(float), quick);
    sd->dense = (float **)calloc(sd->ndense, sizeof(float *));
    if (!sd->dense)
        die("calloc");
    sd->dense[0] = w;
    for (i = 1; i < sd->ndense; i++) {
        sd->dense[i] = (float *)xalloc(rows * cols * sizeof(float));
        memcpy(sd->dense[i], w, rows * cols * sizeof(float));
    }
    b8 = (rows + 15) / 16 * 16 * ((cols + 3) / 4 * 4);
    b4 = b8 / 2;
    sd->n8 = ncopies(b8, quick);
    sd->n4 = ncopies(b4, quick);
    sd->p8 = make_copies(ctx, q8, sd->n8);
    sd->p4 = make_copies(ctx, q4, sd->n4);
    qn_qtensor_destroy(q8);
    qn_qtensor_destroy(q4);
    sd->x = (float *)xalloc(256 * cols * sizeof(float));
    sd->y = (float *)xalloc(256 * rows * sizeof(float));
    fill(sd->x, 256 * cols, 5);
    ensure_ws(sd, 256);
    printf("\n%zu x %zu: dense %zu copies x %.1f MiB, int8 %zu x %.1f MiB, int4 %zu x %.1f MiB (set up in %.1f s)\n",
           rows, cols, sd->ndense, (double)(rows * cols * 4) / 1048576.0, sd->n8, (double)b8 / 1048576.0, sd->n4,
           (double)b4 / 1048576.0, now() - t0);
}

static void shape_free(shape_data *sd)
{
    size_t i;
    for (i = 0; i < sd->ndense; i++)
        free(sd->dense[i]);
    for (i = 0; i < sd->n8; i++)
        qn_packed_destroy(sd->p8[i]);
    for (i = 0; i < sd->n4; i++)
        qn_packed_destroy(sd->p4[i]);
    free(sd->dense);
    free(sd->p8);
    free(sd->p4);
    free(sd->x);
    free(sd->y);
    free(sd->ws);
}

/* ------------------------------------------------------------------------------------------ */
/* the table                                                                                   */

static void rate(char *buf, size_t len, double t, size_t M, size_t bytes, size_t rows, size_t cols, int nt)
{
    if (M == 1) {
        double gbs = (double)bytes / t / 1e9, bw = nt > 1 ? g_bw_all : g_bw1;
        snprintf(buf, len, "%.1f GB/s (%.0f%% bw)", gbs, 100.0 * gbs / bw);
    } else {
        double gf = 2.0 * (double)M * (double)rows * (double)cols / t / 1e9, pk = nt > 1 ? g_peak_all : g_peak1;
        snprintf(buf, len, "%.0f GFLOP/s (%.0f%% pk)", gf, 100.0 * gf / pk);
    }
}

static const char *path_label(qn_packed_int_path path)
{
    switch (path) {
    case QN_PACKED_INT_REGISTERS:
        return "registers";
    case QN_PACKED_INT_PANELS:
        return "panels";
    case QN_PACKED_INT_SGEMM:
        return "panels+sgemm";
    case QN_PACKED_INT_QUANTIZED:
        return "quantized x";
    case QN_PACKED_INT_AUTO:
        break;
    }
    return "auto";
}

static void run_batch(shape_data *sd, size_t M, int nt, int reps, int quick)
{
    static const kind kinds[] = {K_DENSE, K_INT8, K_INT4, K_INT8Q};
    static const char *names[] = {"dense", "int8", "int4", "int8 q"};
    double t[4][2][MAX_REPS], ratio[4][2][MAX_REPS];
    size_t next[4] = {0, 0, 0, 0};
    size_t bytes[4];
    double min_s = quick ? 0.05 : 0.15;
    int r, k, cold;
    bytes[0] = sd->rows * sd->cols * 4;
    bytes[1] = bytes[3] = (sd->rows + 15) / 16 * 16 * ((sd->cols + 3) / 4 * 4);
    bytes[2] = bytes[1] / 2;
    for (r = 0; r < reps; r++)
        for (cold = 0; cold < 2; cold++)
            for (k = 0; k < 4; k++) {
                if (kinds[k] == K_INT8Q)
                    set_paths(sd, QN_PACKED_INT_QUANTIZED, QN_PACKED_INT_AUTO);
                t[k][cold][r] = time_calls(sd, kinds[k], M, cold, &next[k], min_s);
                if (kinds[k] == K_INT8Q)
                    set_paths(sd, QN_PACKED_INT_AUTO, QN_PACKED_INT_AUTO);
                ratio[k][cold][r] = t[0][cold][r] / t[k][cold][r];
            }
    for (k = 0; k < 4; k++) {
        char hb[64], cb[64];
        double th = median(t[k][0], reps), tc = median(t[k][1], reps);
        rate(hb, sizeof hb, th, M, bytes[k], sd->rows, sd->cols, nt);
        rate(cb, sizeof cb, tc, M, bytes[k], sd->rows, sd->cols, nt);
        if (k == 0)
            printf("| %zu x %zu | %3zu | %d | %-6s | %s | hot %8.3f ms %-22s | cold %8.3f ms %-22s | | |\n", sd->rows,
                   sd->cols, M, nt, names[k], M == 1 ? "sgemv" : "sgemm", 1e3 * th, hb, 1e3 * tc, cb);
        else
            printf("| %zu x %zu | %3zu | %d | %-6s | %s | hot %8.3f ms %-22s | cold %8.3f ms %-22s | hot x%.2f | cold "
                   "x%.2f |\n",
                   sd->rows, sd->cols, M, nt, names[k],
                   k == 3 ? "quantized x" : path_label(qn_packed_int_path_for(sd->p8[0], M)),
                   1e3 * th, hb, 1e3 * tc, cb, median(ratio[k][0], reps), median(ratio[k][1], reps));
    }
}

/* First M of Ms from which ratio[i] > 1 holds to the end (0: never). */
static size_t first_for_good(const size_t *Ms, const double *ratio, size_t n)
{
    size_t i, at = 0;
    for (i = 0; i < n; i++) {
        if (ratio[i] > 1.0 && !at)
            at = Ms[i];
        if (ratio[i] <= 1.0)
            at = 0;
    }
    return at;
}

/* fp32 paths over M (hot, this thread count): registers, panels + micro-kernel, panels + sgemm. */
static void crossover(shape_data *sd, int nt, int reps, int quick)
{
    static const size_t Ms[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256};
    enum { NM = sizeof Ms / sizeof Ms[0] };
    static const qn_packed_int_path paths[] = {QN_PACKED_INT_REGISTERS, QN_PACKED_INT_PANELS, QN_PACKED_INT_SGEMM};
    double rp[2][NM], ps[2][NM];
    size_t i, next = 0, w;
    double min_s = quick ? 0.03 : 0.1;
    printf("\nfp32 paths, %zu x %zu, hot, %d thread(s): ms per call, registers / panels / panels+sgemm; dense sgemm\n",
           sd->rows, sd->cols, nt);
    for (i = 0; i < NM; i++) {
        double t[2][3][MAX_REPS], d[MAX_REPS], med[2][3];
        size_t M = Ms[i], k;
        int r;
        for (r = 0; r < reps; r++) {
            for (k = 0; k < 3; k++) {
                set_paths(sd, paths[k], paths[k]);
                t[0][k][r] = time_calls(sd, K_INT8, M, 0, &next, min_s);
                t[1][k][r] = time_calls(sd, K_INT4, M, 0, &next, min_s);
            }
            d[r] = M == 1 ? 0.0 : time_calls(sd, K_DENSE, M, 0, &next, min_s);
        }
        set_paths(sd, QN_PACKED_INT_AUTO, QN_PACKED_INT_AUTO);
        for (w = 0; w < 2; w++) {
            for (k = 0; k < 3; k++)
                med[w][k] = median(t[w][k], reps);
            rp[w][i] = med[w][0] / med[w][1];
            ps[w][i] = med[w][1] / med[w][2];
        }
        printf("  M %3zu: int8 %8.3f / %8.3f / %8.3f ms, int4 %8.3f / %8.3f / %8.3f ms, dense %8.3f ms\n", M,
               1e3 * med[0][0], 1e3 * med[0][1], 1e3 * med[0][2], 1e3 * med[1][0], 1e3 * med[1][1], 1e3 * med[1][2],
               1e3 * median(d, reps));
    }
    printf("measured crossovers (faster from this M on, up to 256; 0: never): registers -> panels int8 M = %zu, "
           "int4 M = %zu; panels -> sgemm int8 M = %zu, int4 M = %zu. The library switches at M = %d (panels) and "
           "%d (sgemm, 0: never)\n",
           first_for_good(Ms, rp[0], NM), first_for_good(Ms, rp[1], NM), first_for_good(Ms, ps[0], NM),
           first_for_good(Ms, ps[1], NM), QN_PACKED_INT_PANELS_MIN_M, QN_PACKED_INT_SGEMM_MIN_M);
}

/* Error of the quantized path against the fp32 path on random data (relative to |y| and to sum |x w|). */
static void accuracy(shape_data *sd)
{
    size_t M = 8, n = M * sd->rows, i, w;
    float *yf = (float *)xalloc(n * sizeof(float)), *yq = (float *)xalloc(n * sizeof(float));
    for (w = 0; w < 2; w++) {
        qn_packed *p = w ? sd->p4[0] : sd->p8[0];
        double e2 = 0.0, r2 = 0.0, emax = 0.0;
        if (qn_packed_int_set_path(p, QN_PACKED_INT_REGISTERS) != QN_OK)
            die("set_path");
        qn_packed_gemm(p, M, sd->x, sd->cols, NULL, yf, sd->rows, sd->ws);
        if (qn_packed_int_set_path(p, QN_PACKED_INT_QUANTIZED) != QN_OK)
            die("set_path");
        qn_packed_gemm(p, M, sd->x, sd->cols, NULL, yq, sd->rows, sd->ws);
        qn_packed_int_set_path(p, QN_PACKED_INT_AUTO);
        for (i = 0; i < n; i++) {
            double e = (double)yq[i] - (double)yf[i];
            e2 += e * e;
            r2 += (double)yf[i] * (double)yf[i];
            emax = fabs(e) > emax ? fabs(e) : emax;
        }
        printf("quantized activations (u%u), %s weights, %zu x %zu, uniform x and w: relative RMS error %.2e "
               "(max |error| %.2e, RMS |y| %.2e)\n",
               qn_packed_int_act_max(p) == 255 ? 8u : 7u, w ? "int4" : "int8", sd->rows, sd->cols, sqrt(e2 / r2),
               emax, sqrt(r2 / (double)n));
    }
    free(yf);
    free(yq);
}

int main(int argc, char **argv)
{
    static const size_t Ms[] = {1, 8, 64, 256};
    const int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    const int reps = quick ? 3 : 5;
    qn_context *ctx = NULL;
    qn_isa isa;
    shape_data sd;
    size_t s, m;
    int t;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (qn_context_create(&ctx) != QN_OK)
        die("qn_context_create");
    qn_context_get_isa(ctx, &isa);
    if (getenv("QN_BENCH_THREADS"))
        g_threads_all = atoi(getenv("QN_BENCH_THREADS"));
    g_threads_all = g_threads_all < 1 ? 1 : (g_threads_all > 8 ? 8 : g_threads_all);
    printf("bench_packed_int: libqnoise %s, kernels %s, OpenBLAS core %s; %d repetitions\n", qn_version(),
           qn_isa_name(isa), openblas_get_corename(), reps);
    for (s = quick ? 1 : 0; s < 2; s++) {
        size_t n = s == 0 ? 4096 : 1024;
        measure_machine(quick);
        shape_setup(ctx, &sd, n, n, quick);
        printf("| shape | M | thr | weights | kernel | hot | cold | dense/packed hot | dense/packed cold |\n");
        printf("|---|---|---|---|---|---|---|---|---|\n");
        for (t = 1; t <= g_threads_all; t += g_threads_all - 1 > 0 ? g_threads_all - 1 : 1) {
            openblas_set_num_threads(t);
            qn_context_set_threads(ctx, (unsigned)t);
            for (m = 0; m < sizeof Ms / sizeof Ms[0]; m++)
                run_batch(&sd, Ms[m], t, reps, quick);
        }
        for (t = 1; t <= g_threads_all; t += g_threads_all - 1 > 0 ? g_threads_all - 1 : 1) {
            openblas_set_num_threads(t);
            qn_context_set_threads(ctx, (unsigned)t);
            crossover(&sd, t, quick ? 2 : 3, quick);
        }
        openblas_set_num_threads(1);
        qn_context_set_threads(ctx, 1);
        accuracy(&sd);
        shape_free(&sd);
    }
    qn_context_destroy(ctx);
    return 0;
}
