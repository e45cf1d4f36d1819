/*
 * Packed int8 / int4 GEMM (format/packed_int.c, kernels int_gemm_*): every ISA this machine
 * runs, every path (fp32 activations in registers, fp32 panels + sgemm, quantized
 * activations), 1 and 2 threads, against a double-precision reference decoded here from the
 * tensor's codes, scales and zero points; the integer kernels and the panel decode bit for bit
 * against scalar and qn_qtensor_decode; allocation failures.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qtensor.h>

#include "format/packed_int.h"
#include "format/qtensor_internal.h"
#include "kernels/kernels.h"

#define REQUIRE(cond, ...)                                                                                    \
    do {                                                                                                      \
        if (!(cond))                                                                                          \
            ck_abort_msg(__VA_ARGS__);                                                                        \
    } while (0)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define Y_SENTINEL 12345.0f

/* fp32 paths: |y - ref| <= F32_REL * sum_c |x_c W_oc| (+ |b|) (decoded panels), or F32_REL times
 * the folded magnitude (registers path, fold_weight): cols * 2^-24 would be the worst case of the
 * longest sums here (8200 terms), random signs give a few 2^-24. */
#define F32_REL 1e-5

static const qn_isa isas[] = {QN_ISA_SCALAR, QN_ISA_AVX2, QN_ISA_AVX512};

/* A context with exactly `isa`, or NULL when this machine (or QN_ISA) does not run it. */
static qn_context *ctx_for(qn_isa isa, unsigned threads)
{
    qn_context *ctx = NULL;
    qn_isa got;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, isa, &ctx), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &got), QN_OK);
    if (got != isa) {
        qn_context_destroy(ctx);
        return NULL;
    }
    ck_assert_int_eq(qn_context_set_threads(ctx, threads), QN_OK);
    return ctx;
}

/* A rows x cols scalar tensor of random weights, each row with its own offset and spread (so
 * per-channel affine zero points differ from row to row). */
static qn_qtensor *make_qt(qn_context *ctx, size_t rows, size_t cols, unsigned bits, qn_qscheme scheme,
                           int per_channel, uint64_t seed)
{
    float *w = (float *)malloc(rows * cols * sizeof(float));
    qn_qtensor *qt = NULL;
    size_t r, c;
    ck_assert_ptr_nonnull(w);
    for (r = 0; r < rows; r++) {
        float a = qn_test_uniform(&seed), b = 0.2f + 1.5f * (qn_test_uniform(&seed) + 1.0f);
        for (c = 0; c < cols; c++)
            w[r * cols + c] = a + b * qn_test_uniform(&seed);
    }
    ck_assert_int_eq(qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits,
                                               per_channel ? QN_OBSERVER_PER_CHANNEL : QN_OBSERVER_MINMAX, scheme,
                                               &qt),
                     QN_OK);
    free(w);
    return qt;
}

/* The decoded weight, in double, from the tensor's fields. */
static double wref(const qn_qtensor *qt, size_t o, size_t c)
{
    size_t ch = qt->per_channel ? o : 0;
    return ((double)((int32_t)qt->q[o * qt->cols + c] + qt->qmin) - (double)qt->zero[ch]) * (double)qt->scale[ch];
}

typedef struct problem {
    const qn_qtensor *qt;
    size_t M, rows, cols, ldx, ldy, off;
    float *xb, *x, *bb, *bias;
    double *ref, *mag, *fold; /* M x rows */
    double *wabs;             /* rows: sum_c |W_oc| */
} problem;

/*
 * The repacked value v and zero point z' of the documented repack (packed_int.c): the registers
 * path folds z' out of its sums, y = s (sum x (v - c0) - (z' - c0) sum x) with |c0| <= 15, so its
 * rounding is relative to s sum_c |x_c| (|v_c| + |z'| + 15), not to sum |x W|.
 */
static double fold_weight(const qn_qtensor *qt, size_t o, size_t c)
{
    size_t ch = qt->per_channel ? o : 0;
    int32_t q = qt->q[o * qt->cols + c], shift = (qt->bits == 8 && qt->scheme == QN_QSCHEME_AFFINE) ? 128 : 0;
    int32_t v = qt->bits <= 4 ? q : q + qt->qmin - shift;
    int32_t zp = qt->bits <= 4 ? qt->zero[ch] - qt->qmin : qt->zero[ch] - shift;
    return (fabs((double)v) + fabs((double)zp) + 15.0) * (double)qt->scale[ch];
}

static void problem_init(problem *pb, const qn_qtensor *qt, size_t M, int with_bias, uint64_t seed)
{
    size_t m, o, c;
    double *wrow;
    memset(pb, 0, sizeof *pb);
    pb->qt = qt;
    pb->M = M;
    pb->rows = qt->rows;
    pb->cols = qt->cols;
    pb->ldx = qt->cols + 3;
    pb->ldy = qt->rows + 5;
    pb->off = 1 + (size_t)(seed % 3);
    /* x: exactly M*ldx - 3 floats used (no slack after the last row), gaps are NaN */
    pb->xb = (float *)malloc(((M - 1) * pb->ldx + pb->cols + pb->off) * sizeof(float));
    ck_assert_ptr_nonnull(pb->xb);
    pb->x = pb->xb + pb->off;
    for (m = 0; m < M; m++)
        for (c = 0; c < pb->ldx && (m + 1 < M || c < pb->cols); c++)
            pb->x[m * pb->ldx + c] = c < pb->cols ? qn_test_uniform(&seed) : NAN;
    if (with_bias) {
        pb->bb = (float *)malloc((pb->rows + pb->off) * sizeof(float));
        ck_assert_ptr_nonnull(pb->bb);
        pb->bias = pb->bb + pb->off;
        for (o = 0; o < pb->rows; o++)
            pb->bias[o] = qn_test_uniform(&seed);
    }
    pb->ref = (double *)malloc(M * pb->rows * sizeof(double));
    pb->mag = (double *)malloc(M * pb->rows * sizeof(double));
    pb->fold = (double *)malloc(M * pb->rows * sizeof(double));
    pb->wabs = (double *)malloc(pb->rows * sizeof(double));
    ck_assert(pb->ref && pb->mag && pb->fold && pb->wabs);
    for (o = 0; o < pb->rows; o++) {
        double wa = 0.0;
        for (c = 0; c < pb->cols; c++)
            wa += fabs(wref(qt, o, c));
        pb->wabs[o] = wa;
    }
    wrow = (double *)malloc(2 * pb->cols * sizeof(double));
    ck_assert_ptr_nonnull(wrow);
    for (o = 0; o < pb->rows; o++) {
        for (c = 0; c < pb->cols; c++) {
            wrow[c] = wref(qt, o, c);
            wrow[pb->cols + c] = fold_weight(qt, o, c);
        }
        for (m = 0; m < M; m++) {
            double s = pb->bias ? (double)pb->bias[o] : 0.0, a = pb->bias ? fabs((double)pb->bias[o]) : 0.0, f = a;
            for (c = 0; c < pb->cols; c++) {
                double xc = (double)pb->x[m * pb->ldx + c], t = xc * wrow[c];
                s += t;
                a += fabs(t);
                f += fabs(xc) * wrow[pb->cols + c];
            }
            pb->ref[m * pb->rows + o] = s;
            pb->mag[m * pb->rows + o] = a;
            pb->fold[m * pb->rows + o] = f;
        }
    }
    free(wrow);
}

static void problem_free(problem *pb)
{
    free(pb->xb);
    free(pb->bb);
    free(pb->ref);
    free(pb->mag);
    free(pb->fold);
    free(pb->wabs);
}

/* The activation scale of row m in the quantized path (as quantize_row computes it). */
static double act_scale(const problem *pb, size_t m, unsigned L)
{
    float lo = 0.0f, hi = 0.0f;
    size_t c;
    for (c = 0; c < pb->cols; c++) {
        float v = pb->x[m * pb->ldx + c];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    return (double)((hi - lo) / (float)L);
}

static const char *path_name(qn_packed_int_path path)
{
    switch (path) {
    case QN_PACKED_INT_REGISTERS:
        return "registers";
    case QN_PACKED_INT_SGEMM:
        return "sgemm";
    case QN_PACKED_INT_QUANTIZED:
        return "quantized";
    case QN_PACKED_INT_PANELS:
        return "panels";
    case QN_PACKED_INT_AUTO:
        break;
    }
    return "auto";
}

/* Run one path on one context and check every output against the reference. */
static void run_check(qn_context *ctx, const problem *pb, qn_packed_int_path path, const char *what)
{
    const qn_qtensor *qt = pb->qt;
    qn_packed *p = NULL;
    size_t ws_size, ylen = pb->M * pb->ldy + pb->off + 8, m, o, i;
    float *yb = (float *)malloc(ylen * sizeof(float)), *y = yb + pb->off;
    void *ws = NULL;
    qn_isa isa;
    unsigned L;
    ck_assert_ptr_nonnull(yb);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    for (i = 0; i < ylen; i++)
        yb[i] = Y_SENTINEL;
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
    ck_assert_int_eq(qn_packed_int_set_path(p, path), QN_OK);
    qn_packed_int_set_thread_min_work(p, 0); /* the library's threshold would keep these shapes on one thread */
    ck_assert_int_eq(qn_packed_int_path_for(p, pb->M), path);
    L = qn_packed_int_act_max(p);
    ws_size = qn_packed_workspace_size(p, pb->M);
    if (ws_size) {
        ws = aligned_alloc(64, (ws_size + 63) / 64 * 64);
        ck_assert_ptr_nonnull(ws);
    }
    qn_packed_gemm(p, pb->M, pb->x, pb->ldx, pb->bias, y, pb->ldy, ws);

    for (i = 0; i < pb->off; i++)
        REQUIRE(yb[i] == Y_SENTINEL, "%s: wrote before y", what);
    for (m = 0; m < pb->M; m++) {
        for (o = 0; o < pb->ldy; o++) {
            float v = y[m * pb->ldy + o];
            double ref, mag, tol;
            if (o >= pb->rows) {
                REQUIRE(v == Y_SENTINEL, "%s: wrote y[%zu][%zu] past rows", what, m, o);
                continue;
            }
            ref = pb->ref[m * pb->rows + o];
            mag = pb->mag[m * pb->rows + o];
            tol = F32_REL * mag + 1e-30;
            if (path == QN_PACKED_INT_REGISTERS)
                tol = F32_REL * pb->fold[m * pb->rows + o] + 1e-30;
            if (path == QN_PACKED_INT_QUANTIZED) {
                /* |x - x_hat| <= scale / 2 per activation, plus float rounding */
                double sx = act_scale(pb, m, L);
                tol = 0.5 * sx * pb->wabs[o] * (1.0 + 1e-4) + F32_REL * (mag + sx * pb->wabs[o]) + 1e-30;
            }
            REQUIRE(fabs((double)v - ref) <= tol,
                    "%s %s isa %s: M=%zu rows=%zu cols=%zu bits=%u %s %s: y[%zu][%zu] = %.9g, reference %.9g "
                    "(tolerance %.3g)",
                    what, path_name(path), qn_isa_name(isa), pb->M, pb->rows, pb->cols, qt->bits,
                    qt->scheme == QN_QSCHEME_AFFINE ? "affine" : "symmetric",
                    qt->per_channel ? "per-channel" : "per-tensor", m, o, (double)v, ref, tol);
        }
    }
    for (i = pb->off + pb->M * pb->ldy; i < ylen; i++)
        REQUIRE(yb[i] == Y_SENTINEL, "%s: wrote past y", what);
    free(ws);
    free(yb);
    qn_packed_destroy(p);
}

typedef struct shape {
    size_t M, rows, cols;
} shape;

/* Small odd shapes (tiles of 4 and 8 rows of x, 16-row panels, 4/8-column groups). */
static const shape small_shapes[] = {
    {1, 1, 1}, {2, 17, 3}, {3, 15, 9}, {5, 33, 7}, {9, 16, 64}, {13, 31, 130}, {1, 40, 257},
};

static void check_all_paths(const problem *pb, size_t isa_lo, size_t isa_hi, const char *what)
{
    static const qn_packed_int_path paths[] = {QN_PACKED_INT_REGISTERS, QN_PACKED_INT_PANELS, QN_PACKED_INT_SGEMM,
                                               QN_PACKED_INT_QUANTIZED};
    static const unsigned threads[] = {1, 2};
    size_t a, b, t;
    for (a = isa_lo; a < isa_hi; a++)
        for (t = 0; t < COUNT(threads); t++) {
            qn_context *ctx;
            if (threads[t] > 1 && pb->rows <= 16) /* one panel: a second thread has nothing to do */
                continue;
            ctx = ctx_for(isas[a], threads[t]);
            if (!ctx)
                continue;
            for (b = 0; b < COUNT(paths); b++)
                run_check(ctx, pb, paths[b], what);
            qn_context_destroy(ctx);
        }
}

/* Every bits / scheme / granularity on small odd shapes, every ISA, path and thread count. */
START_TEST(int_gemm_small_shapes)
{
    qn_context *ctx = NULL;
    unsigned bits;
    int scheme, pc;
    size_t s;
    uint64_t seed = 0x1234u;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    for (bits = 2; bits <= 8; bits++)
        for (scheme = 0; scheme < 2; scheme++)
            for (pc = 0; pc < 2; pc++)
                for (s = (bits + (unsigned)scheme + (unsigned)pc) % 2; s < COUNT(small_shapes); s += 2) {
                    /* every other shape per grid (each shape still meets every bit width) */
                    const shape sh = small_shapes[s];
                    qn_qtensor *qt = make_qt(ctx, sh.rows, sh.cols, bits,
                                             scheme ? QN_QSCHEME_SYMMETRIC : QN_QSCHEME_AFFINE, pc, seed++);
                    problem pb;
                    problem_init(&pb, qt, sh.M, (int)(s & 1), seed++);
                    check_all_paths(&pb, 0, COUNT(isas), "small");
                    problem_free(&pb);
                    qn_qtensor_destroy(qt);
                }
    qn_context_destroy(ctx);
}
END_TEST

/*
 * Shapes with several sgemm panel groups (256 rows) and column chunks (1024 columns), and several
 * column blocks in the panel path (1 MiB of x per block). SIMD ISAs
 * only: the scalar kernel is the same code on the small shapes, and slow under valgrind.
 */
START_TEST(int_gemm_large_shapes)
{
    static const shape shapes[] = {{3, 290, 1031}, {70, 37, 413}, {33, 17, 8200}};
    static const unsigned bitsv[] = {8, 6, 4, 3};
    qn_context *ctx = NULL;
    size_t s, b;
    uint64_t seed = 0x9876u;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    for (s = 0; s < COUNT(shapes); s++)
        for (b = 0; b < COUNT(bitsv); b += s == 2 ? 2 : 1) { /* the widest shape: int8 and int4 only */
            qn_qscheme scheme = (b & 1) ? QN_QSCHEME_SYMMETRIC : QN_QSCHEME_AFFINE;
            qn_qtensor *qt = make_qt(ctx, shapes[s].rows, shapes[s].cols, bitsv[b], scheme, (int)((b >> 1) & 1) ^ (int)s,
                                     seed++);
            problem pb;
            problem_init(&pb, qt, shapes[s].M, (int)((b + s) & 1), seed++);
            check_all_paths(&pb, 1, COUNT(isas), "large");
            problem_free(&pb);
            qn_qtensor_destroy(qt);
        }
    qn_context_destroy(ctx);
}
END_TEST

/* AUTO takes registers below the crossover and panels (or sgemm) from it; M = 0 does nothing. */
START_TEST(int_gemm_auto_path)
{
    qn_context *ctx = NULL;
    qn_qtensor *qt;
    qn_packed *p = NULL;
    float y = Y_SENTINEL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    qt = make_qt(ctx, 20, 30, 8, QN_QSCHEME_AFFINE, 1, 5);
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
    ck_assert_int_eq(qn_packed_int_path_for(p, 1), QN_PACKED_INT_REGISTERS);
    ck_assert_int_eq(qn_packed_int_path_for(p, QN_PACKED_INT_PANELS_MIN_M - 1), QN_PACKED_INT_REGISTERS);
    ck_assert_int_eq(qn_packed_int_path_for(p, QN_PACKED_INT_PANELS_MIN_M),
                     QN_PACKED_INT_SGEMM_MIN_M == QN_PACKED_INT_PANELS_MIN_M ? QN_PACKED_INT_SGEMM
                                                                            : QN_PACKED_INT_PANELS);
    if (QN_PACKED_INT_SGEMM_MIN_M > 0)
        ck_assert_int_eq(qn_packed_int_path_for(p, QN_PACKED_INT_SGEMM_MIN_M), QN_PACKED_INT_SGEMM);
    ck_assert_uint_eq(qn_packed_workspace_size(p, 0), 0);
    ck_assert_uint_ge(qn_packed_workspace_size(p, 1), sizeof(float)); /* the row sums of x */
    ck_assert_uint_ge(qn_packed_workspace_size(p, QN_PACKED_INT_PANELS_MIN_M), QN_PACKED_INT_PANELS_MIN_M * 30 * 4);
    qn_packed_gemm(p, 0, NULL, 30, NULL, &y, 20, NULL);
    ck_assert(y == Y_SENTINEL);
    ck_assert_int_eq(qn_packed_int_set_path(p, (qn_packed_int_path)5), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_packed_int_set_path(NULL, QN_PACKED_INT_AUTO), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_packed_int_set_path(p, QN_PACKED_INT_QUANTIZED), QN_OK);
    ck_assert_int_eq(qn_packed_int_path_for(p, 1000), QN_PACKED_INT_QUANTIZED);
    ck_assert_uint_ge(qn_packed_workspace_size(p, 3), 3 * 32);
    qn_packed_destroy(p);
    qn_packed_destroy(NULL);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

/* Quantized activations are refused where the int32 sums could overflow. */
START_TEST(int_gemm_quantized_refused_when_too_wide)
{
    qn_context *ctx = NULL;
    qn_qtensor *qt;
    qn_packed *p = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    qt = make_qt(ctx, 2, 70000, 8, QN_QSCHEME_AFFINE, 0, 6);
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
    ck_assert_int_eq(qn_packed_int_set_path(p, QN_PACKED_INT_QUANTIZED), QN_ERR_UNSUPPORTED);
    ck_assert_int_eq(qn_packed_int_path_for(p, 1), QN_PACKED_INT_REGISTERS);
    qn_packed_destroy(p);
    qn_qtensor_destroy(qt);
    qt = make_qt(ctx, 2, 70000, 4, QN_QSCHEME_SYMMETRIC, 0, 7); /* int4: |v - zero| <= 8 */
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
    ck_assert_int_eq(qn_packed_int_set_path(p, QN_PACKED_INT_QUANTIZED), QN_OK);
    qn_packed_destroy(p);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

/* Integer kernels bit for bit against scalar on random codes; panel decode against qn_qtensor_decode. */
START_TEST(int_gemm_kernels_bit_exact)
{
    static const shape shapes[] = {{1, 5, 3}, {7, 16, 8}, {9, 35, 61}, {12, 20, 129}};
    const qn_kernels *sc = qn_kernels_for_isa(QN_ISA_SCALAR);
    qn_cpu_features f;
    qn_context *ctx = NULL;
    unsigned bits;
    size_t s, a, i, m;
    uint64_t seed = 77;
    qn_cpu_probe(&f);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, QN_ISA_SCALAR, &ctx), QN_OK);
    for (bits = 2; bits <= 8; bits++)
        for (s = 0; s < COUNT(shapes); s++) {
            const shape sh = shapes[s];
            qn_qtensor *qt = make_qt(ctx, sh.rows, sh.cols, bits, (bits & 1) ? QN_QSCHEME_SYMMETRIC : QN_QSCHEME_AFFINE,
                                     (int)(s & 1), seed++);
            qn_packed *p = NULL;
            const qn_k_intw *w;
            size_t kg, ldq, np, ldy = sh.rows + 3, g0;
            uint8_t *xq;
            qn_k_xq *xp;
            float *dec, *y0, *y1, *panel;
            ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
            w = qn_packed_int_weights(p);
            kg = QN_K_INT_KG(w->int4);
            ldq = w->groups * kg + 5;
            np = (sh.rows + 15) / 16;
            xq = (uint8_t *)calloc(sh.M * ldq, 1);
            xp = (qn_k_xq *)malloc(sh.M * sizeof *xp);
            dec = (float *)malloc(sh.rows * sh.cols * sizeof(float));
            y0 = (float *)malloc(sh.M * ldy * sizeof(float));
            y1 = (float *)malloc(sh.M * ldy * sizeof(float));
            panel = (float *)malloc(w->groups * kg * 16 * sizeof(float));
            ck_assert(xq && xp && dec && y0 && y1 && panel);
            ck_assert_int_eq(qn_qtensor_decode(qt, dec), QN_OK);
            for (a = 1; a < COUNT(isas); a++) {
                const qn_kernels *k = qn_kernels_for_isa(isas[a]);
                int variant;
                if (!k)
                    continue;
                /* panel decode, in ranges of 3 groups */
                for (i = 0; i < np; i++)
                    for (g0 = 0; g0 < w->groups; g0 += 3) {
                        size_t g1 = g0 + 3 < w->groups ? g0 + 3 : w->groups, c, r;
                        size_t c1 = g1 * kg < sh.cols ? g1 * kg : sh.cols;
                        k->int_decode(w, i, g0, g1, panel, 16);
                        for (c = g0 * kg; c < c1; c++)
                            for (r = 0; r < 16; r++) {
                                float want = 16 * i + r < sh.rows ? dec[(16 * i + r) * sh.cols + c] : 0.0f;
                                float got = panel[(c - g0 * kg) * 16 + r];
                                REQUIRE(memcmp(&got, &want, sizeof got) == 0,
                                        "%s decode bits %u row %zu col %zu: %.9g, want %.9g", k->name, bits,
                                        16 * i + r, c, (double)got, (double)want);
                            }
                    }
                /* quantized kernels: vpmaddubsw (codes <= 127), then VNNI (<= 255) */
                for (variant = 0; variant < 2; variant++) {
                    qn_k_int_gemm_q_fn fn = variant ? k->int_gemm_q_vnni : k->int_gemm_q;
                    unsigned L = variant ? 255 : 127;
                    size_t c;
                    if (!fn || (variant && !f.vnni))
                        continue;
                    for (m = 0; m < sh.M; m++) {
                        for (c = 0; c < sh.cols; c++)
                            xq[m * ldq + c] = (uint8_t)(qn_test_next(&seed) % (L + 1));
                        xp[m].scale = 0.5f + qn_test_uniform(&seed) * 0.25f;
                        xp[m].zero = (int32_t)(qn_test_next(&seed) % (L + 1));
                        xp[m].sum = (int32_t)(qn_test_next(&seed) % 100000) - 50000;
                    }
                    for (i = 0; i < sh.M * ldy; i++)
                        y0[i] = y1[i] = Y_SENTINEL;
                    sc->int_gemm_q(w, 0, np, sh.M, xq, ldq, xp, (bits & 1) ? NULL : dec, y0, ldy);
                    fn(w, 0, np, sh.M, xq, ldq, xp, (bits & 1) ? NULL : dec, y1, ldy);
                    REQUIRE(memcmp(y0, y1, sh.M * ldy * sizeof(float)) == 0,
                            "%s int_gemm_q%s bits %u M %zu rows %zu cols %zu differs from scalar", k->name,
                            variant ? "_vnni" : "", bits, sh.M, sh.rows, sh.cols);
                }
            }
            free(xq);
            free(xp);
            free(dec);
            free(y0);
            free(y1);
            free(panel);
            qn_packed_destroy(p);
            qn_qtensor_destroy(qt);
        }
    qn_context_destroy(ctx);
}
END_TEST

/* Every allocation of qn_packed_create failing in turn: QN_ERR_OUT_OF_MEMORY, nothing leaked. */
START_TEST(int_gemm_out_of_memory)
{
    counting_alloc ca = {0, 0, 0, 0};
    qn_context *ctx = NULL, *qctx = NULL;
    qn_qtensor *qt;
    qn_packed *p;
    int k, base, ok = 0;
    ck_assert_int_eq(qn_context_create(&qctx), QN_OK);
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &ca, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx),
                     QN_OK);
    qt = make_qt(qctx, 33, 70, 4, QN_QSCHEME_AFFINE, 1, 9);
    for (k = 1; k < 100 && !ok; k++) {
        qn_status st;
        base = ca.allocs - ca.frees;
        ca.fail_from = ca.allocs + k;
        p = (qn_packed *)1;
        st = qn_packed_create(ctx, qt, &p);
        ca.fail_from = 0;
        if (st == QN_OK) {
            ok = 1;
            qn_packed_destroy(p);
        } else {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_ptr_null(p);
        }
        ck_assert_int_eq(ca.allocs - ca.frees, base);
    }
    ck_assert(ok);
    ck_assert_int_gt(k, 3); /* several allocations were made to fail */
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    qn_context_destroy(qctx);
    ck_assert_int_eq(ca.allocs, ca.frees);
}
END_TEST

static Suite *int_gemm_suite(void)
{
    Suite *s = suite_create("int_gemm");
    TCase *tc = tcase_create("int_gemm");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, int_gemm_small_shapes);
    tcase_add_test(tc, int_gemm_large_shapes);
    tcase_add_test(tc, int_gemm_auto_path);
    tcase_add_test(tc, int_gemm_quantized_refused_when_too_wide);
    tcase_add_test(tc, int_gemm_kernels_bit_exact);
    tcase_add_test(tc, int_gemm_out_of_memory);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(int_gemm_suite());
}
