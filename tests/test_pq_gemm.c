/*
 * Packed PQ GEMM (lib/format/packed_pq.c and the pq_* kernels): every path
 * (gather, batch, decode, auto) on every ISA this machine runs, with 1 and 2
 * threads, against a double-precision reference computed here from the codes
 * and the codebook; odd shapes (M, rows, cols not multiples of any tile),
 * every block size and codebook size the issue names, misaligned x and y
 * with leading dimensions past the width, bias or none, default and tiny
 * tiles. The gather-add and decode kernels are also held bit for bit against
 * scalar, as their contract says. Packing under failing allocators leaks
 * nothing.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

#include "format/packed_pq.h"
#include "format/qtensor_internal.h"
#include "kernels/kernels.h"

#define REQUIRE(cond, ...)                                                                                            \
    do {                                                                                                               \
        if (!(cond))                                                                                                   \
            ck_abort_msg(__VA_ARGS__);                                                                                 \
    } while (0)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
/* |y - exact| <= TOL * sum |x_c w_c| (+ |bias|): a few (bs + cols / bs) roundings of 2^-24 at most */
#define TOL 1e-5

static const qn_isa isas[] = {QN_ISA_SCALAR, QN_ISA_AVX2, QN_ISA_AVX512};

typedef struct shape {
    size_t M, rows, cols, bs, k;
} shape;

/* Every bs of {1, 3, 4, 8, 9, 16} (and 20, 33) and k of {2, 16, 17, 256, 257, 4096}; no size a multiple
 * of a tile. */
static const shape shapes[] = {
    {1, 37, 24, 3, 17},   {2, 65, 27, 9, 2},    {3, 130, 32, 16, 256}, {5, 70, 40, 1, 16},
    {9, 33, 64, 8, 257},  {17, 350, 48, 4, 4096}, {1, 200, 72, 8, 256}, {8, 129, 48, 8, 256},
    {4, 21, 45, 9, 17},   {33, 66, 20, 4, 16},  {16, 90, 96, 16, 2},  {7, 131, 30, 3, 257},
    /* blocks longer than one 16-float vector (the batch tables go in t-blocks of 16) */
    {3, 40, 40, 20, 16},  {10, 30, 66, 33, 17},
};

/* A context on exactly `isa` with `threads`, or NULL when this machine (or QN_ISA) cannot. */
static qn_context *ctx_for(qn_isa isa, unsigned threads)
{
    qn_context *ctx = NULL;
    qn_isa got;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_context_set_isa_cap(ctx, isa), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &got), QN_OK);
    if (got != isa) {
        qn_context_destroy(ctx);
        return NULL;
    }
    ck_assert_int_eq(qn_context_set_threads(ctx, threads), QN_OK);
    return ctx;
}

static qn_qtensor *make_qt(qn_context *ctx, const shape *sh, uint64_t seed, int int8_codebook)
{
    size_t n_codes = sh->rows * sh->cols / sh->bs, i;
    float *cb = (float *)malloc(sh->k * sh->bs * sizeof(float));
    uint16_t *codes = (uint16_t *)malloc(n_codes * sizeof(uint16_t));
    qn_qtensor *qt = NULL;
    ck_assert_ptr_nonnull(cb);
    ck_assert_ptr_nonnull(codes);
    for (i = 0; i < sh->k * sh->bs; i++)
        cb[i] = qn_test_uniform(&seed);
    for (i = 0; i < n_codes; i++)
        codes[i] = (uint16_t)(qn_test_next(&seed) % sh->k);
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, sh->rows, sh->cols, sh->bs, sh->k, cb, codes, &qt), QN_OK);
    if (int8_codebook)
        ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, NULL), QN_OK);
    free(cb);
    free(codes);
    return qt;
}

/* W_hat[o][c] in double from the tensor's codes and codebook values. */
static double w_hat(const qn_qtensor *qt, size_t o, size_t c)
{
    size_t nbr = qt->cols / qt->bs;
    return (double)qt->c[(size_t)qt->codes[o * nbr + c / qt->bs] * qt->bs + c % qt->bs];
}

typedef struct fixture {
    shape sh;
    qn_qtensor *qt;
    size_t ldx, ldy;
    float *xbase, *x;  /* x = xbase + 1: 4 bytes off any alignment */
    float *bias;
    double *ref, *scale; /* [M][rows] without bias, and sum |x w| */
} fixture;

static void fixture_init(fixture *f, qn_context *ctx, const shape *sh, uint64_t seed, int int8_codebook)
{
    size_t m, o, c;
    f->sh = *sh;
    f->qt = make_qt(ctx, sh, seed, int8_codebook);
    f->ldx = sh->cols + 3;
    f->ldy = sh->rows + 5;
    f->xbase = (float *)malloc((sh->M * f->ldx + 1) * sizeof(float));
    f->bias = (float *)malloc(sh->rows * sizeof(float));
    f->ref = (double *)malloc(sh->M * sh->rows * sizeof(double));
    f->scale = (double *)malloc(sh->M * sh->rows * sizeof(double));
    ck_assert(f->xbase && f->bias && f->ref && f->scale);
    f->x = f->xbase + 1;
    seed ^= 0x5eedull;
    for (m = 0; m < sh->M * f->ldx + 1; m++)
        f->xbase[m] = qn_test_uniform(&seed);
    for (o = 0; o < sh->rows; o++)
        f->bias[o] = qn_test_uniform(&seed);
    for (m = 0; m < sh->M; m++)
        for (o = 0; o < sh->rows; o++) {
            double s = 0.0, a = 0.0;
            for (c = 0; c < sh->cols; c++) {
                double p = (double)f->x[m * f->ldx + c] * w_hat(f->qt, o, c);
                s += p;
                a += fabs(p);
            }
            f->ref[m * sh->rows + o] = s;
            f->scale[m * sh->rows + o] = a;
        }
}

static void fixture_free(fixture *f)
{
    qn_qtensor_destroy(f->qt);
    free(f->xbase);
    free(f->bias);
    free(f->ref);
    free(f->scale);
}

/* Pack on ctx, run one gemm with the given knobs and check every element (and that gaps stay NaN). */
static void run_case(const fixture *f, const qn_context *ctx, qn_pq_path path, int tiny, int with_bias,
                     const char *what)
{
    const shape *sh = &f->sh;
    qn_packed *p = NULL;
    qn_packed_pq_tuning tun;
    size_t ws_bytes, m, o;
    void *ws = NULL;
    float *ybase, *y;
    const size_t ny = sh->M * f->ldy + 2;
    ck_assert_int_eq(qn_packed_create(ctx, f->qt, &p), QN_OK);
    ck_assert_int_eq(qn_packed_pq_get_tuning(p, &tun), QN_OK);
    tun.force = path;
    tun.par_min_work = 0; /* use the threads even on these small shapes */
    if (tiny) {
        tun.lut_bytes = 1; /* one subspace per table chunk */
        tun.tile_rows = 24;
        tun.tile_cols = 20;
    }
    ck_assert_int_eq(qn_packed_pq_set_tuning(p, &tun), QN_OK);
    if (path != QN_PQ_PATH_AUTO)
        ck_assert_int_eq(qn_packed_pq_path(p, sh->M), path);
    ws_bytes = qn_packed_workspace_size(p, sh->M);
    if (ws_bytes) {
        ws = aligned_alloc(64, (ws_bytes + 63) / 64 * 64);
        ck_assert_ptr_nonnull(ws);
        memset(ws, 0xff, ws_bytes); /* NaN garbage: nothing may be read before it is written */
    }
    ybase = (float *)malloc(ny * sizeof(float));
    ck_assert_ptr_nonnull(ybase);
    for (m = 0; m < ny; m++)
        ybase[m] = NAN;
    y = ybase + 1;
    qn_packed_gemm(p, sh->M, f->x, f->ldx, with_bias ? f->bias : NULL, y, f->ldy, ws);
    for (m = 0; m < sh->M; m++) {
        for (o = 0; o < f->ldy; o++) {
            float got = y[m * f->ldy + o];
            if (o >= sh->rows) {
                REQUIRE(isnan(got), "%s: y[%zu][%zu] past the width was written", what, m, o);
                continue;
            }
            {
                double b = with_bias ? (double)f->bias[o] : 0.0;
                double want = f->ref[m * sh->rows + o] + b;
                double tol = TOL * (f->scale[m * sh->rows + o] + fabs(b)) + 1e-30;
                REQUIRE(fabs((double)got - want) <= tol,
                        "%s: M %zu rows %zu cols %zu bs %zu k %zu: y[%zu][%zu] = %.9g, want %.9g (tol %.3g)", what,
                        sh->M, sh->rows, sh->cols, sh->bs, sh->k, m, o, (double)got, want, tol);
            }
        }
    }
    REQUIRE(isnan(ybase[0]) && isnan(ybase[ny - 1]), "%s: y written out of bounds", what);
    free(ybase);
    free(ws);
    qn_packed_destroy(p);
}

static const qn_pq_path paths[] = {QN_PQ_PATH_GATHER, QN_PQ_PATH_BATCH, QN_PQ_PATH_DECODE, QN_PQ_PATH_AUTO};
static const char *const path_names[] = {"auto", "gather", "batch", "decode"};

/* One shape (the loop index) on every ISA, thread count, path, tile setting; bias alternates. */
START_TEST(gemm_matches_reference)
{
    qn_context *host = NULL;
    fixture f;
    size_t ii, pi;
    unsigned th;
    int tiny;
    ck_assert_int_eq(qn_context_create(&host), QN_OK);
    fixture_init(&f, host, &shapes[_i], 1000 + (uint64_t)_i, 0);
    for (ii = 0; ii < COUNT(isas); ii++)
        for (th = 1; th <= 2; th++) {
            qn_context *ctx = ctx_for(isas[ii], th);
            if (!ctx)
                continue;
            for (pi = 0; pi < COUNT(paths); pi++)
                for (tiny = 0; tiny <= 1; tiny++) {
                    char what[96];
                    int with_bias = (int)((pi + (size_t)tiny + th + (size_t)_i) & 1);
                    snprintf(what, sizeof what, "%s, %u thr, %s, %s tiles, bias %d", qn_isa_name(isas[ii]), th,
                             path_names[paths[pi]], tiny ? "tiny" : "default", with_bias);
                    run_case(&f, ctx, paths[pi], tiny, with_bias, what);
                }
            qn_context_destroy(ctx);
        }
    fixture_free(&f);
    qn_context_destroy(host);
}
END_TEST

/* An int8 codebook: the packed weight uses the rounded values the tensor decodes to. */
START_TEST(gemm_int8_codebook)
{
    static const shape sh = {6, 80, 32, 8, 256};
    qn_context *host = NULL;
    fixture f;
    size_t ii, pi;
    ck_assert_int_eq(qn_context_create(&host), QN_OK);
    fixture_init(&f, host, &sh, 77, 1);
    for (ii = 0; ii < COUNT(isas); ii++) {
        qn_context *ctx = ctx_for(isas[ii], 1);
        if (!ctx)
            continue;
        for (pi = 0; pi < COUNT(paths); pi++)
            run_case(&f, ctx, paths[pi], 0, 1, "int8 codebook");
        qn_context_destroy(ctx);
    }
    fixture_free(&f);
    qn_context_destroy(host);
}
END_TEST

/* Defaults (packed_pq.c): M < 4 gathers, larger M puts the batch in the lanes, k large against rows decodes. */
START_TEST(auto_path_choice)
{
    static const shape small_k = {1, 600, 32, 8, 256}, mid_k = {1, 300, 32, 8, 256}, big_k = {1, 100, 336, 8, 4096};
    qn_context *ctx = NULL;
    qn_qtensor *qa, *qb, *qc;
    qn_packed *pa = NULL, *pb = NULL, *pc = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    qa = make_qt(ctx, &small_k, 5, 0);
    qb = make_qt(ctx, &big_k, 6, 0);
    qc = make_qt(ctx, &mid_k, 7, 0);
    ck_assert_int_eq(qn_packed_create(ctx, qa, &pa), QN_OK);
    ck_assert_int_eq(qn_packed_create(ctx, qb, &pb), QN_OK);
    ck_assert_int_eq(qn_packed_create(ctx, qc, &pc), QN_OK);
    ck_assert_int_eq(qn_packed_pq_path(pa, 1), QN_PQ_PATH_GATHER);
    ck_assert_int_eq(qn_packed_pq_path(pa, 3), QN_PQ_PATH_GATHER);
    ck_assert_int_eq(qn_packed_pq_path(pa, 4), QN_PQ_PATH_BATCH);
    ck_assert_int_eq(qn_packed_pq_path(pa, 512), QN_PQ_PATH_BATCH);
    ck_assert_int_eq(qn_packed_pq_path(pb, 1), QN_PQ_PATH_DECODE);
    ck_assert_int_eq(qn_packed_pq_path(pb, 64), QN_PQ_PATH_DECODE);
    ck_assert_int_eq(qn_packed_pq_path(pc, 1), QN_PQ_PATH_GATHER);
    ck_assert_int_eq(qn_packed_pq_path(pc, 32), QN_PQ_PATH_BATCH);
    ck_assert_int_eq(qn_packed_pq_path(pc, 33), QN_PQ_PATH_DECODE);
    ck_assert_uint_eq(qn_packed_workspace_size(pa, 0), 0);
    qn_packed_destroy(pa);
    qn_packed_destroy(pb);
    qn_packed_destroy(pc);
    qn_qtensor_destroy(qa);
    qn_qtensor_destroy(qb);
    qn_qtensor_destroy(qc);
    qn_context_destroy(ctx);
}
END_TEST

/* M = 0 writes nothing; a code past the codebook is refused at packing. */
START_TEST(edge_cases)
{
    static const shape sh = {1, 10, 16, 4, 16};
    qn_context *ctx = NULL;
    qn_qtensor *qt;
    qn_packed *p = (qn_packed *)1;
    float y[10], x[16] = {0};
    size_t i;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    qt = make_qt(ctx, &sh, 9, 0);
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_OK);
    for (i = 0; i < 10; i++)
        y[i] = 42.0f;
    qn_packed_gemm(p, 0, x, 16, NULL, y, 10, NULL);
    for (i = 0; i < 10; i++)
        ck_assert(y[i] == 42.0f);
    qn_packed_destroy(p);
    qn_packed_destroy(NULL);
    qt->codes[7] = 16; /* break the invariant the file reader checks */
    p = (qn_packed *)1;
    ck_assert_int_eq(qn_packed_create(ctx, qt, &p), QN_ERR_CORRUPT_DATA);
    ck_assert_ptr_null(p);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

/* Every allocation of the packing fails in turn: QN_ERR_OUT_OF_MEMORY, NULL, nothing leaked. */
START_TEST(packing_out_of_memory)
{
    static const shape sh = {1, 40, 64, 8, 300};
    counting_alloc ca = {0, 0, 0, 0};
    qn_context *host = NULL, *ctx = NULL;
    qn_qtensor *qt;
    int fail_from;
    ck_assert_int_eq(qn_context_create(&host), QN_OK);
    qt = make_qt(host, &sh, 3, 0);
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &ca, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx), QN_OK);
    for (fail_from = 1;; fail_from++) {
        qn_packed *p = (qn_packed *)1;
        qn_status st;
        int before_a = ca.allocs, before_f = ca.frees;
        ca.fail_from = ca.allocs + fail_from;
        st = qn_packed_create(ctx, qt, &p);
        ca.fail_from = 0;
        if (st == QN_OK) {
            ck_assert_ptr_nonnull(p);
            qn_packed_destroy(p);
            ck_assert_int_eq(ca.allocs - before_a, ca.frees - before_f);
            break;
        }
        ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
        ck_assert_ptr_null(p);
        ck_assert_int_eq(ca.allocs - before_a, ca.frees - before_f);
        ck_assert_int_lt(fail_from, 20);
    }
    ck_assert_int_ge(fail_from, 5); /* the object, the impl, codes, codebook, transposed codebook */
    qn_context_destroy(ctx);
    qn_qtensor_destroy(qt);
    qn_context_destroy(host);
}
END_TEST

/* Gather-adds and decode: every ISA bit for bit against scalar (integer-indexed adds and copies). */
START_TEST(exact_kernels_match_scalar)
{
    const qn_kernels *ks = qn_kernels_for_isa(QN_ISA_SCALAR);
    uint64_t seed = 99;
    size_t ii, wide, i;
    for (ii = 1; ii < COUNT(isas); ii++) {
        const qn_kernels *kt = qn_kernels_for_isa(isas[ii]);
        if (!kt)
            continue;
        for (wide = 0; wide <= 1; wide++) {
            const size_t k = wide ? 300 : 200, ldl = 304, M = 11, nj = 5, n = 77, ldc = 128, ldy = 81;
            const size_t nl = nj * M * ldl, nb = nj * k * 16;
            size_t W;
            float *lut = (float *)malloc(nl * sizeof(float)), *blut = (float *)malloc(nb * sizeof(float));
            float *y0 = (float *)malloc(M * ldy * sizeof(float)), *y1 = (float *)malloc(M * ldy * sizeof(float));
            float *a0 = (float *)malloc(n * 16 * sizeof(float)), *a1 = (float *)malloc(n * 16 * sizeof(float));
            /* decode runs block sizes 1 .. 16 over the same codebook storage */
            float *c = (float *)malloc(k * 16 * sizeof(float)), *bias = (float *)malloc(n * sizeof(float));
            float *p0 = (float *)malloc(n * nj * 16 * sizeof(float)), *p1 = (float *)malloc(n * nj * 16 * sizeof(float));
            uint16_t *c16 = (uint16_t *)malloc(nj * ldc * sizeof(uint16_t));
            uint8_t *c8 = (uint8_t *)malloc(nj * ldc);
            const void *codes = wide ? (const void *)c16 : (const void *)c8;
            ck_assert(lut && blut && y0 && y1 && a0 && a1 && c && bias && p0 && p1 && c16 && c8);
            for (i = 0; i < nl; i++)
                lut[i] = qn_test_uniform(&seed);
            for (i = 0; i < nb; i++)
                blut[i] = qn_test_uniform(&seed);
            for (i = 0; i < k * 16; i++)
                c[i] = qn_test_uniform(&seed);
            for (i = 0; i < n; i++)
                bias[i] = qn_test_uniform(&seed);
            for (i = 0; i < nj * ldc; i++) {
                c16[i] = (uint16_t)(qn_test_next(&seed) % k);
                c8[i] = (uint8_t)c16[i];
            }
            for (i = 0; i < M * ldy; i++)
                y0[i] = y1[i] = qn_test_uniform(&seed);
            ks->pq_lut_gather(lut, ldl, M, codes, ldc, (int)wide, nj, n, bias, 1, y0, ldy);
            kt->pq_lut_gather(lut, ldl, M, codes, ldc, (int)wide, nj, n, bias, 1, y1, ldy);
            ks->pq_lut_gather(lut, ldl, M, codes, ldc, (int)wide, nj, n, NULL, 0, y0, ldy);
            kt->pq_lut_gather(lut, ldl, M, codes, ldc, (int)wide, nj, n, NULL, 0, y1, ldy);
            ck_assert_mem_eq(y0, y1, M * ldy * sizeof(float));
            for (W = 8; W <= 16; W += 8) {
                ks->pq_blut_add(blut, k, W, codes, ldc, (int)wide, nj, n, 1, a0);
                kt->pq_blut_add(blut, k, W, codes, ldc, (int)wide, nj, n, 1, a1);
                ks->pq_blut_add(blut, k, W, codes, ldc, (int)wide, nj - 2, n, 0, a0);
                kt->pq_blut_add(blut, k, W, codes, ldc, (int)wide, nj - 2, n, 0, a1);
                ck_assert_mem_eq(a0, a1, n * W * sizeof(float));
            }
            for (i = 1; i <= 16; i += 3) {
                size_t nbs = i, nd = nj;
                ks->pq_decode(codes, ldc, (int)wide, c, nbs, n, nd, p0, nd * nbs);
                kt->pq_decode(codes, ldc, (int)wide, c, nbs, n, nd, p1, nd * nbs);
                ck_assert_mem_eq(p0, p1, n * nd * nbs * sizeof(float));
            }
            free(lut);
            free(blut);
            free(y0);
            free(y1);
            free(a0);
            free(a1);
            free(c);
            free(bias);
            free(p0);
            free(p1);
            free(c16);
            free(c8);
        }
    }
}
END_TEST

static Suite *pq_gemm_suite(void)
{
    Suite *s = suite_create("pq_gemm");
    TCase *tc = tcase_create("gemm");
    tcase_set_timeout(tc, 240);
    tcase_add_loop_test(tc, gemm_matches_reference, 0, (int)COUNT(shapes));
    tcase_add_test(tc, gemm_int8_codebook);
    tcase_add_test(tc, auto_path_choice);
    tcase_add_test(tc, edge_cases);
    tcase_add_test(tc, packing_out_of_memory);
    tcase_add_test(tc, exact_kernels_match_scalar);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(pq_gemm_suite());
}
