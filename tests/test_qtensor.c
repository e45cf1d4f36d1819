/*
 * Compressed tensors (qtensor.h) through the shared library and the public
 * headers only. Every expectation is computed here, independently of the
 * library: a double nearest-centroid oracle, tensors rebuilt from the codes
 * and the codebook, scales recomputed from the data, an fp16 rounding written
 * here, byte counts worked out by hand, error figures by hand.
 *
 *   - qn_qtensor_from_pq: codes are a nearest centroid of their block,
 *     decode == centroid[code], get_pq, code width 4/8/16 bits by K, exact
 *     byte counts (fp32, fp16, int8 codebooks) on odd shapes, determinism,
 *     K == blocks reproduces the weight exactly;
 *   - qn_qtensor_from_scalar(_ex): bits 2..8, per tensor affine and per row
 *     symmetric (and the other grid/observer pairs): scale from the data,
 *     error <= scale/2, values on the grid, at most 2^bits levels, byte
 *     counts; the histogram observer on a heavy-tailed tensor;
 *   - qn_qtensor_set_codebook_precision: fp16 (exact round to nearest even,
 *     representable, reported MSE), int8 symmetric/affine (grid, error,
 *     levels, MSE), sizes, refusals leave the tensor unchanged;
 *   - set_shape / get_shape, from_pq_codes (copies, bad input), from_layer
 *     (linear, conv2d, grouped conv2d, embedding, int8 codebooks),
 *     qn_qtensor_error by hand;
 *   - qn_layer_bind_compressed (linear, conv2d 3x3 pad 1, embedding; PQ and
 *     scalar): forward == a dense layer on the decoded weight (and a slow
 *     reference for linear/embedding), forward_noisy == forward, backward
 *     refused with outputs untouched, mismatches refused with the binding
 *     kept, qn_layer_bind returns to the dense (noisy) path;
 *   - bad input everywhere and allocation-failure sweeps: clear status,
 *     *out == NULL, a logged message, nothing leaked.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

/* ------------------------------------------------------------------------------------------ */
/* helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

static int sentinel_obj;
/* A non-NULL value for *out that must be replaced by NULL on failure (never dereferenced). */
#define SENTINEL ((qn_qtensor *)(void *)&sentinel_obj)

static float *rand_vec(uint64_t *st, size_t n)
{
    float *v = (float *)malloc((n ? n : 1) * sizeof(float));
    size_t i;
    ck_assert_ptr_nonnull(v);
    for (i = 0; i < n; i++)
        v[i] = qn_test_uniform(st);
    return v;
}

/* rows x cols: uniform [-1, 1) times a per-row gain, times `scale`, plus `offset`. */
static float *make_weight(uint64_t seed, size_t rows, size_t cols, float scale, float offset)
{
    uint64_t st = seed;
    float *w = (float *)malloc(rows * cols * sizeof(float));
    size_t r, j;
    ck_assert_ptr_nonnull(w);
    for (r = 0; r < rows; r++) {
        float gain = 0.25f + 0.35f * (float)(r % 5);
        for (j = 0; j < cols; j++)
            w[r * cols + j] = qn_test_uniform(&st) * gain * scale + offset;
    }
    return w;
}

static qn_context *ctx_new(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

/* Log capture: counts error lines and keeps the last one. */
typedef struct log_cap {
    int errors;
    char last[512];
} log_cap;

static void cap_log(void *user, qn_log_level level, const char *message)
{
    log_cap *c = (log_cap *)user;
    if (level == QN_LOG_ERROR) {
        c->errors++;
        snprintf(c->last, sizeof c->last, "%s", message);
    }
}

/* A context with the counting allocator (never failing until told) and the log capture. */
static qn_context *ctx_counting(counting_alloc *a, log_cap *cap)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, a, cap ? cap_log : NULL, cap, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    if (cap)
        ck_assert_int_eq(qn_context_set_log(ctx, cap_log, cap, QN_LOG_ERROR), QN_OK);
    return ctx;
}

static size_t ceil_div(size_t a, size_t b)
{
    return (a + b - 1) / b;
}

/* The PQ tensor rebuilt here from get_codes / get_centroids: W[b] = C[code[b]]. */
static float *rebuild_pq(const qn_qtensor *qt, size_t rows, size_t cols, size_t bs, size_t k)
{
    size_t nb = rows * cols / bs, b;
    uint16_t *codes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    float *c = (float *)malloc(k * bs * sizeof(float)), *w = (float *)malloc(rows * cols * sizeof(float));
    ck_assert_int_eq(qn_qtensor_get_codes(qt, codes, nb), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, c, k * bs), QN_OK);
    for (b = 0; b < nb; b++) {
        ck_assert_uint_lt(codes[b], k);
        memcpy(w + b * bs, c + (size_t)codes[b] * bs, bs * sizeof(float));
    }
    free(codes);
    free(c);
    return w;
}

static float *decode_new(const qn_qtensor *qt, size_t n)
{
    float *d = (float *)malloc(n * sizeof(float));
    ck_assert_ptr_nonnull(d);
    ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
    return d;
}

/* Number of distinct values among n floats (n small; quadratic is fine for a test). */
static size_t n_distinct(const float *v, size_t n)
{
    size_t i, j, cnt = 0;
    for (i = 0; i < n; i++) {
        for (j = 0; j < i; j++)
            if (v[j] == v[i])
                break;
        if (j == i)
            cnt++;
    }
    return cnt;
}

/* fp16 round to nearest, ties to even, written here in double (no overflow handling needed). */
static float fp16_round(float f)
{
    double a = fabs((double)f), q;
    int e;
    if (a == 0.0)
        return f;
    if (a < ldexp(1.0, -14)) {
        q = ldexp(nearbyint(ldexp(a, 24)), -24); /* subnormal: multiples of 2^-24 */
    } else {
        (void)frexp(a, &e);                             /* a in [2^(e-1), 2^e) */
        q = ldexp(nearbyint(ldexp(a, 11 - e)), e - 11); /* 11 significant bits */
    }
    return (float)(f < 0.0f ? -q : q);
}

/* Whether v is exactly an fp16 value (finite). */
static int fp16_exact(float v)
{
    double a = fabs((double)v), m;
    int e;
    if (a == 0.0)
        return 1;
    if (a > 65504.0)
        return 0;
    if (a < ldexp(1.0, -14)) {
        m = ldexp(a, 24);
        return m == floor(m);
    }
    m = ldexp(frexp(a, &e), 11);
    return m == floor(m);
}

/* |x - round(x)| */
static double frac_dist(double x)
{
    return fabs(x - nearbyint(x));
}

/* ------------------------------------------------------------------------------------------ */
/* from_pq: nearest codes, decode, parameters, code width and byte counts                     */
/* ------------------------------------------------------------------------------------------ */

typedef struct pq_case {
    size_t rows, cols, bs, k;
    float scale;
    unsigned code_bits;
    size_t nbytes_fp32, nbytes_fp16, nbytes_int8; /* by hand, see the comments */
} pq_case;

static const pq_case pq_cases[] = {
    /* 8 blocks/row, K 16 -> 4 bits: 4 B/row -> 160; codebook 16*8 = 128 values: 512 / 256 / 128+8 */
    {40, 64, 8, 16, 1.0f, 4, 160 + 512, 160 + 256, 160 + 136},
    /* K 17 -> 8 bits: 8 B/row -> 320; 17*8 = 136 values: 544 / 272 / 136+8 */
    {40, 64, 8, 17, 1.0f, 8, 320 + 544, 320 + 272, 320 + 144},
    /* K 256 -> 8 bits: 320; 256*8 = 2048 values: 8192 / 4096 / 2048+8 */
    {40, 64, 8, 256, 1.0f, 8, 320 + 8192, 320 + 4096, 320 + 2056},
    /* K 257 -> 16 bits: 16 B/row -> 640; 257*8 = 2056 values: 8224 / 4112 / 2056+8 */
    {40, 64, 8, 257, 1.0f, 16, 640 + 8224, 640 + 4112, 640 + 2064},
    /* rows 3, cols 24, bs 8: 3 blocks/row, 4 bits = 12 bits -> 2 B/row -> 6; 4*8 = 32 values: 128 / 64 / 40 */
    {3, 24, 8, 4, 1.0f, 4, 6 + 128, 6 + 64, 6 + 40},
    /* 15 blocks/row of 2, K 17 -> 8 bits: 15 B/row -> 105; 17*2 = 34 values: 136 / 68 / 42 */
    {7, 30, 2, 17, 1000.0f, 8, 105 + 136, 105 + 68, 105 + 42},
    /* 5 blocks/row, 4 bits = 20 bits -> 3 B/row -> 6; 4*2 = 8 values: 32 / 16 / 16 */
    {2, 10, 2, 4, 1.0f, 4, 6 + 32, 6 + 16, 6 + 16},
    /* 3 blocks/row of 5 -> 2 B/row -> 10; 3*5 = 15 values: 60 / 30 / 23 (tiny values: fp16 subnormals) */
    {5, 15, 5, 3, 1e-4f, 4, 10 + 60, 10 + 30, 10 + 23},
    /* 100 blocks/row of 3, K 257 -> 16 bits: 200 B/row -> 600; 257*3 = 771 values: 3084 / 1542 / 779 */
    {3, 300, 3, 257, 1.0f, 16, 600 + 3084, 600 + 1542, 600 + 779},
};
#define N_PQ_CASES ((int)(sizeof pq_cases / sizeof pq_cases[0]))

START_TEST(from_pq_codes_nearest_and_sizes)
{
    const pq_case *pc = &pq_cases[_i];
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    size_t nb = pc->rows * pc->cols / pc->bs, b, bs = 0, k = 0, rows = 0, cols = 0, ndim = 0, shape[4] = {0, 0, 0, 0};
    float *w = make_weight(1000 + (uint64_t)_i, pc->rows, pc->cols, pc->scale, 0.0f), *c, *dec, *reb;
    uint16_t *codes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    unsigned code_bits = 0;
    qn_codebook_precision prec = QN_CODEBOOK_INT8;
    qn_qtensor_kind kind = QN_QTENSOR_SCALAR;
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, pc->rows, pc->cols, pc->bs, pc->k, 42, &qt), QN_OK);
    ck_assert_ptr_nonnull(qt);
    ck_assert_int_eq(qn_qtensor_get_kind(qt, &kind), QN_OK);
    ck_assert_int_eq(kind, QN_QTENSOR_PQ);
    ck_assert_int_eq(qn_qtensor_get_matrix(qt, &rows, &cols), QN_OK);
    ck_assert_uint_eq(rows, pc->rows);
    ck_assert_uint_eq(cols, pc->cols);
    ck_assert_int_eq(qn_qtensor_get_matrix(qt, NULL, NULL), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, &bs, &k, &code_bits, &prec), QN_OK);
    ck_assert_uint_eq(bs, pc->bs);
    ck_assert_uint_eq(k, pc->k);
    ck_assert_uint_eq(code_bits, pc->code_bits);
    ck_assert_int_eq(prec, QN_CODEBOOK_FP32);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, NULL, NULL), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_scalar(qt, NULL, NULL, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_shape(qt, &ndim, shape), QN_OK);
    ck_assert_uint_eq(ndim, 2);
    ck_assert_uint_eq(shape[0], pc->rows);
    ck_assert_uint_eq(shape[1], pc->cols);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_fp32);
    /* the formula, as a second check of the table */
    ck_assert_uint_eq(pc->nbytes_fp32,
                      pc->rows * ceil_div(pc->cols / pc->bs * pc->code_bits, 8) + pc->k * pc->bs * 4);
    /* every code is a nearest centroid of its block (double oracle) */
    c = (float *)malloc(pc->k * pc->bs * sizeof(float));
    ck_assert_int_eq(qn_qtensor_get_codes(qt, codes, nb), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, c, pc->k * pc->bs), QN_OK);
    for (b = 0; b < nb; b++) {
        double d, best;
        ck_assert_uint_lt(codes[b], pc->k);
        d = qn_test_sq_dist(w + b * pc->bs, c + (size_t)codes[b] * pc->bs, pc->bs);
        best = qn_test_min_sq_dist(w + b * pc->bs, c, pc->k, pc->bs);
        ck_assert_msg(d <= best * (1.0 + 1e-5) + 1e-30, "case %d block %zu: code %u at %g, nearest at %g", _i, b,
                      (unsigned)codes[b], d, best);
    }
    for (b = 0; b < pc->k * pc->bs; b++)
        ck_assert(isfinite(c[b]));
    /* decode == C[code] */
    dec = decode_new(qt, pc->rows * pc->cols);
    reb = rebuild_pq(qt, pc->rows, pc->cols, pc->bs, pc->k);
    ck_assert_mem_eq(dec, reb, pc->rows * pc->cols * sizeof(float));
    /* the precisions' byte counts */
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_SYMMETRIC, NULL), QN_OK);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_fp16);
    ck_assert_uint_eq(pc->nbytes_fp16,
                      pc->rows * ceil_div(pc->cols / pc->bs * pc->code_bits, 8) + pc->k * pc->bs * 2);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, NULL), QN_OK);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_int8);
    ck_assert_uint_eq(pc->nbytes_int8,
                      pc->rows * ceil_div(pc->cols / pc->bs * pc->code_bits, 8) + pc->k * pc->bs + 8);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, &code_bits, &prec), QN_OK);
    ck_assert_int_eq(prec, QN_CODEBOOK_INT8);
    ck_assert_uint_eq(code_bits, pc->code_bits); /* the codes do not change */
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    free(w), free(codes), free(c), free(dec), free(reb);
}
END_TEST

START_TEST(from_pq_deterministic_and_exact_when_k_is_blocks)
{
    qn_context *ctx = ctx_new(), *ctx2 = ctx_new();
    qn_qtensor *a = NULL, *b = NULL, *e = NULL;
    const size_t rows = 24, cols = 32, bs = 4, k = 20, nb = rows * cols / bs;
    float *w = make_weight(7, rows, cols, 1.0f, 0.1f), *ca, *cb, *d;
    uint16_t *xa = (uint16_t *)malloc(nb * sizeof(uint16_t)), *xb = (uint16_t *)malloc(nb * sizeof(uint16_t));
    double rel = -1.0, snr = 0.0, mx = -1.0;
    ca = (float *)malloc(k * bs * sizeof(float));
    cb = (float *)malloc(k * bs * sizeof(float));
    /* same seed twice (and another context): identical codes and centroids */
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, rows, cols, bs, k, 99, &a), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx2, w, rows, cols, bs, k, 99, &b), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(a, xa, nb), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(b, xb, nb), QN_OK);
    ck_assert_mem_eq(xa, xb, nb * sizeof(uint16_t));
    ck_assert_int_eq(qn_qtensor_get_centroids(a, ca, k * bs), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(b, cb, k * bs), QN_OK);
    ck_assert_mem_eq(ca, cb, k * bs * sizeof(float));
    qn_qtensor_destroy(b);
    b = NULL;
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, rows, cols, bs, k, 99, &b), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(b, xb, nb), QN_OK);
    ck_assert_mem_eq(xa, xb, nb * sizeof(uint16_t));
    /* the weight is not written */
    {
        float *w2 = make_weight(7, rows, cols, 1.0f, 0.1f);
        ck_assert_mem_eq(w, w2, rows * cols * sizeof(float));
        free(w2);
    }
    /* K == number of blocks (distinct random blocks): every block is its own centroid, decode is exact */
    qn_qtensor_destroy(a);
    a = NULL;
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 3, 8, 4, 6, 5, &e), QN_OK);
    d = decode_new(e, 24);
    ck_assert_mem_eq(d, w, 24 * sizeof(float));
    ck_assert_int_eq(qn_qtensor_error(e, w, &rel, &snr, &mx), QN_OK);
    ck_assert(rel == 0.0);
    ck_assert(mx == 0.0);
    ck_assert(isinf(snr) && snr > 0.0);
    qn_qtensor_destroy(e);
    qn_qtensor_destroy(b);
    qn_context_destroy(ctx);
    qn_context_destroy(ctx2);
    free(w), free(xa), free(xb), free(ca), free(cb), free(d);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* scalar                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/*
 * Check a scalar tensor against its weight: per channel (row) or per tensor
 * scale computed here, every decoded value within scale/2 of the weight and
 * on the grid (value/scale integral: (q - z) is an integer), at most `levels`
 * distinct values per channel.
 */
static void check_scalar(const qn_qtensor *qt, const float *w, size_t rows, size_t cols, unsigned bits,
                         qn_qscheme scheme, int per_channel, const char *what)
{
    float *dec = decode_new(qt, rows * cols);
    size_t nch = per_channel ? rows : 1, per = per_channel ? cols : rows * cols, ch, i;
    size_t levels = scheme == QN_QSCHEME_SYMMETRIC ? ((size_t)1 << bits) - 1 : (size_t)1 << bits;
    for (ch = 0; ch < nch; ch++) {
        const float *x = w + ch * per, *y = dec + ch * per;
        double lo = 0.0, hi = 0.0, s;
        for (i = 0; i < per; i++) {
            lo = fmin(lo, (double)x[i]);
            hi = fmax(hi, (double)x[i]);
        }
        if (scheme == QN_QSCHEME_SYMMETRIC)
            s = fmax(-lo, hi) / (double)(((unsigned)1 << (bits - 1)) - 1);
        else
            s = (hi - lo) / (double)(((unsigned)1 << bits) - 1);
        if (s == 0.0) { /* an all-zero channel decodes to zeros */
            for (i = 0; i < per; i++)
                ck_assert_msg(y[i] == 0.0f, "%s: channel %zu is zero but decodes to %g", what, ch, (double)y[i]);
            continue;
        }
        for (i = 0; i < per; i++) {
            double e = fabs((double)y[i] - (double)x[i]);
            ck_assert_msg(e <= 0.5 * s * (1.0 + 1e-5) + 1e-30, "%s bits %u ch %zu [%zu]: w %.9g decoded %.9g, scale %.9g",
                          what, bits, ch, i, (double)x[i], (double)y[i], s);
            ck_assert_msg(frac_dist((double)y[i] / s) <= 1e-3, "%s bits %u ch %zu [%zu]: %.9g is off the grid of %.9g",
                          what, bits, ch, i, (double)y[i], s);
        }
        ck_assert_msg(n_distinct(y, per) <= levels, "%s bits %u ch %zu: %zu levels > %zu", what, bits, ch,
                      n_distinct(y, per), levels);
        /* the extremes of the range are reached (the grid is not narrower than min-max) */
        if (scheme == QN_QSCHEME_SYMMETRIC) {
            double m = 0.0;
            for (i = 0; i < per; i++)
                m = fmax(m, fabs((double)y[i]));
            ck_assert_msg(fabs(m - fmax(-lo, hi)) <= 1e-5 * fmax(-lo, hi), "%s: largest |value| %g, max|w| %g", what,
                          m, fmax(-lo, hi));
        }
    }
    free(dec);
}

static size_t scalar_nbytes(size_t rows, size_t cols, unsigned bits, size_t nch)
{
    return rows * ceil_div(cols * (bits <= 4 ? 4u : 8u), 8) + nch * 8;
}

START_TEST(from_scalar_bits)
{
    const unsigned bits = (unsigned)_i;
    static const size_t shapes[3][2] = {{13, 37}, {1, 5}, {6, 64}};
    static const float offsets[3] = {0.0f, 0.7f, -0.3f};
    qn_context *ctx = ctx_new();
    size_t si;
    for (si = 0; si < 3; si++) {
        size_t rows = shapes[si][0], cols = shapes[si][1], r = 0, c = 0;
        float *w = make_weight(300 + bits * 7 + si, rows, cols, 1.0f, offsets[si]);
        qn_qtensor *qt = NULL;
        unsigned gb = 0, cbits = 0;
        qn_qscheme gs = QN_QSCHEME_SYMMETRIC;
        int pc = -1;
        qn_qtensor_kind kind = QN_QTENSOR_PQ;
        if (si == 2) { /* one all-zero row, one all-positive row */
            memset(w + 2 * cols, 0, cols * sizeof(float));
            for (c = 0; c < cols; c++)
                w[4 * cols + c] = fabsf(w[4 * cols + c]) + 0.5f;
        }
        /* per tensor, affine */
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, rows, cols, bits, 0, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_kind(qt, &kind), QN_OK);
        ck_assert_int_eq(kind, QN_QTENSOR_SCALAR);
        ck_assert_int_eq(qn_qtensor_get_scalar(qt, &gb, &gs, &pc), QN_OK);
        ck_assert_uint_eq(gb, bits);
        ck_assert_int_eq(gs, QN_QSCHEME_AFFINE);
        ck_assert_int_eq(pc, 0);
        ck_assert_int_eq(qn_qtensor_get_scalar(qt, NULL, NULL, NULL), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, &cbits, NULL), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_matrix(qt, &r, &c), QN_OK);
        ck_assert_uint_eq(r, rows);
        ck_assert_uint_eq(c, cols);
        check_scalar(qt, w, rows, cols, bits, QN_QSCHEME_AFFINE, 0, "per tensor affine");
        ck_assert_uint_eq(qn_qtensor_nbytes(qt), scalar_nbytes(rows, cols, bits, 1));
        qn_qtensor_destroy(qt);
        qt = NULL;
        /* per row, symmetric */
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, rows, cols, bits, 1, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_scalar(qt, &gb, &gs, &pc), QN_OK);
        ck_assert_uint_eq(gb, bits);
        ck_assert_int_eq(gs, QN_QSCHEME_SYMMETRIC);
        ck_assert_int_eq(pc, 1);
        check_scalar(qt, w, rows, cols, bits, QN_QSCHEME_SYMMETRIC, 1, "per row symmetric");
        ck_assert_uint_eq(qn_qtensor_nbytes(qt), scalar_nbytes(rows, cols, bits, rows));
        qn_qtensor_destroy(qt);
        qt = NULL;
        /* the other pairs through _ex: per row affine, per tensor symmetric */
        ck_assert_int_eq(
            qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_AFFINE, &qt),
            QN_OK);
        ck_assert_int_eq(qn_qtensor_get_scalar(qt, &gb, &gs, &pc), QN_OK);
        ck_assert_int_eq(gs, QN_QSCHEME_AFFINE);
        ck_assert_int_eq(pc, 1);
        check_scalar(qt, w, rows, cols, bits, QN_QSCHEME_AFFINE, 1, "per row affine");
        ck_assert_uint_eq(qn_qtensor_nbytes(qt), scalar_nbytes(rows, cols, bits, rows));
        qn_qtensor_destroy(qt);
        qt = NULL;
        ck_assert_int_eq(
            qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, QN_OBSERVER_MINMAX, QN_QSCHEME_SYMMETRIC, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_scalar(qt, &gb, &gs, &pc), QN_OK);
        ck_assert_int_eq(gs, QN_QSCHEME_SYMMETRIC);
        ck_assert_int_eq(pc, 0);
        check_scalar(qt, w, rows, cols, bits, QN_QSCHEME_SYMMETRIC, 0, "per tensor symmetric");
        qn_qtensor_destroy(qt);
        qt = NULL;
        /* the moving average acts as min-max */
        ck_assert_int_eq(qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, QN_OBSERVER_MOVING_AVERAGE,
                                                   QN_QSCHEME_AFFINE, &qt),
                         QN_OK);
        check_scalar(qt, w, rows, cols, bits, QN_QSCHEME_AFFINE, 0, "moving average");
        qn_qtensor_destroy(qt);
        free(w);
    }
    qn_context_destroy(ctx);
}
END_TEST

/* Hand-made scalar example: the exact decoded values. */
START_TEST(from_scalar_by_hand)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    /* per tensor affine, 2 bits: range [-1, 2], scale 3/3 = 1, zero point 1: grid {-1, 0, 1, 2} */
    const float w[6] = {-1.0f, 2.0f, 0.4f, 0.6f, 1.2f, -0.7f};
    const float want_t[6] = {-1.0f, 2.0f, 0.0f, 1.0f, 1.0f, -1.0f};
    /* per row symmetric, 3 bits (grid -3..3): row 0 max|w| 2 -> scale 2/3; row 1 max|w| 1.2 -> scale 0.4 */
    float d[6];
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 2, 3, 2, 0, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
    {
        size_t i;
        for (i = 0; i < 6; i++)
            ck_assert_msg(fabsf(d[i] - want_t[i]) <= 1e-6f, "[%zu] %g != %g", i, (double)d[i], (double)want_t[i]);
    }
    /* 2 rows of 3 at 4-bit codes: 2 bytes/row + one (scale, zero) = 4 + 8 */
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), 12);
    qn_qtensor_destroy(qt);
    qt = NULL;
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 2, 3, 3, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
    {
        /* row 0: -1 / (2/3) = -1.5 -> -2 (ties to even) -> -4/3; 2 -> 3 -> 2; 0.4 -> 0.6 -> 1 -> 2/3
         * row 1: 0.6 / 0.4 = 1.5 -> 2 -> 0.8; 1.2 -> 3 -> 1.2; -0.7 -> -1.75 -> -2 -> -0.8 */
        const double want[6] = {-4.0 / 3.0, 2.0, 2.0 / 3.0, 0.8, 1.2, -0.8};
        size_t i;
        for (i = 0; i < 6; i++) {
            if (i == 0) /* -1.5 is a tie: -1 or -2 are both within scale/2 */
                ck_assert(fabs(d[0] + 4.0 / 3.0) <= 1e-6 || fabs(d[0] + 2.0 / 3.0) <= 1e-6);
            else if (i == 3)
                ck_assert(fabs(d[3] - 0.8) <= 1e-6 || fabs(d[3] - 0.4) <= 1e-6);
            else
                ck_assert_msg(fabs(d[i] - want[i]) <= 1e-6, "[%zu] %g != %g", i, (double)d[i], want[i]);
        }
    }
    /* 2 bytes/row + two (scale, zero) = 4 + 16 */
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), 20);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

static double mse_of(const qn_qtensor *qt, const float *w, size_t n)
{
    float *d = decode_new(qt, n);
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++) {
        double e = (double)d[i] - (double)w[i];
        s += e * e;
    }
    free(d);
    return s / (double)n;
}

/*
 * Heavy tails. Laplace (b = 0.1): the histogram observer's clipping range is
 * no worse in MSE than min-max (the tails are rare enough that clipping them
 * pays). Cauchy: only sane bounds -- its greedy search (PyTorch's
 * _non_linear_param_search, which accepts its first shrinking step
 * unconditionally) may clip a lone extreme outlier and lose to min-max.
 */
START_TEST(from_scalar_histogram_heavy_tails)
{
    const size_t rows = 32, cols = 128, n = rows * cols;
    const unsigned bits = (unsigned)_i;
    qn_context *ctx = ctx_new();
    qn_qtensor *mm = NULL, *hist = NULL;
    float *w = (float *)malloc(n * sizeof(float)), *d;
    uint64_t st = 4242;
    double e_mm, e_hist, lo = 0.0, hi = 0.0;
    size_t i, dist;
    for (dist = 0; dist < 2; dist++) {
        lo = hi = 0.0;
        for (i = 0; i < n; i++) {
            double u = ((double)(qn_test_next(&st) >> 40) + 0.5) / 16777216.0; /* (0, 1) */
            if (dist == 0)
                w[i] = (float)(u < 0.5 ? 0.1 * log(2.0 * u) : -0.1 * log(2.0 * (1.0 - u)));
            else
                w[i] = (float)(0.05 * tan(3.14159265358979 * (u - 0.5)));
            lo = fmin(lo, (double)w[i]);
            hi = fmax(hi, (double)w[i]);
        }
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, rows, cols, bits, 0, &mm), QN_OK);
        ck_assert_int_eq(
            qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, QN_OBSERVER_HISTOGRAM, QN_QSCHEME_AFFINE, &hist),
            QN_OK);
        e_mm = mse_of(mm, w, n);
        e_hist = mse_of(hist, w, n);
        if (dist == 0) {
            ck_assert_msg(e_hist <= e_mm * (1.0 + 1e-3), "Laplace, bits %u: histogram MSE %g > min-max MSE %g", bits,
                          e_hist, e_mm);
            /* at 3..5 bits clipping a Laplace tail pays clearly (optimal clipping gains are tens of percent) */
            if (bits <= 5)
                ck_assert_msg(e_hist <= 0.95 * e_mm, "Laplace, bits %u: histogram MSE %g not below min-max %g", bits,
                              e_hist, e_mm);
        }
        /* min-max itself: MSE <= scale^2 / 4 */
        ck_assert(e_mm <= ((hi - lo) / (double)((1u << bits) - 1)) * ((hi - lo) / (double)((1u << bits) - 1)) / 4.0);
        /* sane: finite, at most 2^bits levels, nothing beyond the data's range (plus half a step) */
        d = decode_new(hist, n);
        ck_assert_uint_le(n_distinct(d, n), (size_t)1 << bits);
        for (i = 0; i < n; i++) {
            ck_assert(isfinite(d[i]));
            double half = 0.5 * (hi - lo) / (double)((1u << bits) - 1) * (1.0 + 1e-5); /* half a min-max step */
            ck_assert_msg((double)d[i] >= lo - half && (double)d[i] <= hi + half, "dist %zu bits %u: %g outside [%g, %g]",
                          dist, bits, (double)d[i], lo, hi);
        }
        ck_assert(isfinite(e_hist) && e_hist <= (hi - lo) * (hi - lo));
        free(d);
        qn_qtensor_destroy(mm);
        qn_qtensor_destroy(hist);
        mm = hist = NULL;
    }
    qn_context_destroy(ctx);
    free(w);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* codebook precision                                                                          */
/* ------------------------------------------------------------------------------------------ */

START_TEST(codebook_fp16)
{
    const pq_case *pc = &pq_cases[_i];
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    size_t n = pc->k * pc->bs, i, nb = pc->rows * pc->cols / pc->bs;
    float *w = make_weight(2000 + (uint64_t)_i, pc->rows, pc->cols, pc->scale, 0.0f);
    float *before = (float *)malloc(n * sizeof(float)), *after = (float *)malloc(n * sizeof(float)), *dec, *reb;
    uint16_t *c0 = (uint16_t *)malloc(nb * sizeof(uint16_t)), *c1 = (uint16_t *)malloc(nb * sizeof(uint16_t));
    double mse = -1.0, err = 0.0;
    qn_codebook_precision prec = QN_CODEBOOK_FP32;
    int changed = 0;
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, pc->rows, pc->cols, pc->bs, pc->k, 3, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, before, n), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, c0, nb), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, after, n), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, c1, nb), QN_OK);
    ck_assert_mem_eq(c0, c1, nb * sizeof(uint16_t));
    for (i = 0; i < n; i++) {
        double e = (double)before[i] - (double)after[i];
        ck_assert_msg(fp16_exact(after[i]), "case %d centroid value %zu: %.9g is not an fp16 value", _i, i,
                      (double)after[i]);
        ck_assert_msg(after[i] == fp16_round(before[i]), "case %d [%zu]: %.9g rounds to %.9g in fp16, got %.9g", _i, i,
                      (double)before[i], (double)fp16_round(before[i]), (double)after[i]);
        err += e * e;
        changed |= after[i] != before[i];
    }
    ck_assert(changed); /* random fp32 values are not all fp16 values */
    ck_assert_double_eq_tol(mse, err / (double)n, 1e-9 * (err / (double)n) + 1e-300);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, NULL, &prec), QN_OK);
    ck_assert_int_eq(prec, QN_CODEBOOK_FP16);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_fp16);
    dec = decode_new(qt, pc->rows * pc->cols);
    reb = rebuild_pq(qt, pc->rows, pc->cols, pc->bs, pc->k);
    ck_assert_mem_eq(dec, reb, pc->rows * pc->cols * sizeof(float));
    /* again: nothing left to round */
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse), QN_OK);
    ck_assert(mse == 0.0);
    /* back to fp32: values kept, 4 bytes each */
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP32, QN_QSCHEME_AFFINE, &mse), QN_OK);
    ck_assert(mse == 0.0);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, before, n), QN_OK);
    ck_assert_mem_eq(before, after, n * sizeof(float));
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_fp32);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    free(w), free(before), free(after), free(dec), free(reb), free(c0), free(c1);
}
END_TEST

START_TEST(codebook_int8)
{
    const pq_case *pc = &pq_cases[_i / 2];
    const qn_qscheme scheme = _i % 2 ? QN_QSCHEME_AFFINE : QN_QSCHEME_SYMMETRIC;
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    size_t n = pc->k * pc->bs, i;
    /* an asymmetric range so that the two grids differ */
    float *w = make_weight(3000 + (uint64_t)_i, pc->rows, pc->cols, pc->scale, 0.4f * pc->scale);
    float *before = (float *)malloc(n * sizeof(float)), *after = (float *)malloc(n * sizeof(float)), *dec, *reb;
    double mse = -1.0, err = 0.0, lo = 0.0, hi = 0.0, s;
    qn_codebook_precision prec = QN_CODEBOOK_FP32;
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, pc->rows, pc->cols, pc->bs, pc->k, 8, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, before, n), QN_OK);
    for (i = 0; i < n; i++) {
        lo = fmin(lo, (double)before[i]);
        hi = fmax(hi, (double)before[i]);
    }
    s = scheme == QN_QSCHEME_SYMMETRIC ? fmax(-lo, hi) / 127.0 : (hi - lo) / 255.0;
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, scheme, &mse), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, after, n), QN_OK);
    for (i = 0; i < n; i++) {
        double e = (double)before[i] - (double)after[i];
        ck_assert_msg(fabs(e) <= 0.5 * s * (1.0 + 1e-5), "case %d [%zu]: %.9g -> %.9g, scale %.9g", _i, i,
                      (double)before[i], (double)after[i], s);
        ck_assert_msg(frac_dist((double)after[i] / s) <= 1e-3, "case %d [%zu]: %.9g is off the grid of %.9g", _i, i,
                      (double)after[i], s);
        if (scheme == QN_QSCHEME_SYMMETRIC)
            ck_assert(fabs((double)after[i] / s) <= 127.0 + 1e-3);
        err += e * e;
    }
    ck_assert_uint_le(n_distinct(after, n), scheme == QN_QSCHEME_SYMMETRIC ? 255 : 256);
    ck_assert_double_eq_tol(mse, err / (double)n, 1e-9 * (err / (double)n) + 1e-300);
    ck_assert(mse <= s * s / 4.0 * (1.0 + 1e-4));
    ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, NULL, &prec), QN_OK);
    ck_assert_int_eq(prec, QN_CODEBOOK_INT8);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), pc->nbytes_int8);
    dec = decode_new(qt, pc->rows * pc->cols);
    reb = rebuild_pq(qt, pc->rows, pc->cols, pc->bs, pc->k);
    ck_assert_mem_eq(dec, reb, pc->rows * pc->cols * sizeof(float));
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    free(w), free(before), free(after), free(dec), free(reb);
}
END_TEST

START_TEST(codebook_precision_refusals)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *sq = NULL, *pq = NULL;
    float w[16], c[4] = {1.0f, -2.0f, 70000.0f, 0.5f}, c0[4], got[4];
    uint16_t codes[4] = {0, 1, 1, 0};
    size_t i;
    double mse = 123.0;
    qn_codebook_precision prec = QN_CODEBOOK_INT8;
    for (i = 0; i < 16; i++)
        w[i] = (float)i * 0.25f - 2.0f;
    memcpy(c0, c, sizeof c);
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 4, 4, 8, 0, &sq), QN_OK);
    /* a scalar tensor has no codebook */
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(sq, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(sq, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, &mse),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(sq, QN_CODEBOOK_FP32, QN_QSCHEME_AFFINE, &mse),
                     QN_ERR_INVALID_ARG);
    ck_assert(mse == 123.0);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(NULL, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse),
                     QN_ERR_INVALID_ARG);
    /* 2 x 4, bs 2, K 2; a centroid of 70000 is beyond fp16 */
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, 2, 4, 2, 2, c, codes, &pq), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(pq, (qn_codebook_precision)7, QN_QSCHEME_AFFINE, &mse),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(pq, QN_CODEBOOK_INT8, (qn_qscheme)9, &mse),
                     QN_ERR_INVALID_ARG);
    ck_assert(mse == 123.0);
    ck_assert_int_eq(qn_qtensor_get_centroids(pq, got, 4), QN_OK);
    ck_assert_mem_eq(got, c0, sizeof c0);
    {
        qn_status s = qn_qtensor_set_codebook_precision(pq, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse);
        ck_assert_int_eq(qn_qtensor_get_centroids(pq, got, 4), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_pq(pq, NULL, NULL, NULL, &prec), QN_OK);
        if (s == QN_OK) { /* if accepted, never a silent infinity */
            for (i = 0; i < 4; i++)
                ck_assert_msg(isfinite(got[i]), "fp16 codebook holds %g", (double)got[i]);
        } else { /* refused: unchanged */
            ck_assert_int_eq(s, QN_ERR_INVALID_ARG);
            ck_assert_mem_eq(got, c0, sizeof c0);
            ck_assert_int_eq(prec, QN_CODEBOOK_FP32);
            ck_assert(mse == 123.0);
        }
    }
    qn_qtensor_destroy(sq);
    qn_qtensor_destroy(pq);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* shape                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static void expect_shape(const qn_qtensor *qt, size_t ndim, size_t a, size_t b, size_t c, size_t d)
{
    size_t got_nd = 99, sh[QN_QTENSOR_MAX_DIMS] = {99, 99, 99, 99}, want[4];
    size_t i;
    want[0] = a, want[1] = b, want[2] = c, want[3] = d;
    ck_assert_int_eq(qn_qtensor_get_shape(qt, &got_nd, sh), QN_OK);
    ck_assert_uint_eq(got_nd, ndim);
    for (i = 0; i < ndim; i++)
        ck_assert_msg(sh[i] == want[i], "dim %zu: %zu != %zu", i, sh[i], want[i]);
}

START_TEST(shape_set_get)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL, *col = NULL;
    float *w = make_weight(5, 6, 12, 1.0f, 0.0f);
    const size_t conv[4] = {6, 3, 2, 2}, conv2[4] = {6, 1, 3, 4}, three[3] = {6, 2, 6}, two[2] = {6, 12};
    const size_t ones[4] = {6, 12, 1, 1}, five[5] = {6, 12, 1, 1, 1};
    const size_t bad_rows[2] = {5, 12}, bad_prod[4] = {6, 3, 2, 3}, zero[4] = {6, 0, 2, 2}, one[1] = {6};
    const size_t ovf[4] = {6, SIZE_MAX / 2 + 1, 4, 3}, bad0[2] = {0, 12};
    size_t nd = 0, sh[4];
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 6, 12, 4, 1, &qt), QN_OK);
    expect_shape(qt, 2, 6, 12, 0, 0);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, conv), QN_OK);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, conv2), QN_OK);
    expect_shape(qt, 4, 6, 1, 3, 4);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 3, three), QN_OK);
    expect_shape(qt, 3, 6, 2, 6, 0);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, ones), QN_OK);
    expect_shape(qt, 4, 6, 12, 1, 1);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 2, two), QN_OK);
    expect_shape(qt, 2, 6, 12, 0, 0);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, conv), QN_OK);
    /* refusals leave {6, 3, 2, 2} */
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 2, bad_rows), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, bad_prod), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, zero), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 2, bad0), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 1, one), QN_ERR_INVALID_ARG); /* 1-D needs cols == 1 */
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 0, conv), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 5, five), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, NULL), QN_ERR_INVALID_ARG);
    expect_shape(qt, 4, 6, 3, 2, 2);
    {
        qn_status s = qn_qtensor_set_shape(qt, 4, ovf);
        ck_assert(s == QN_ERR_INVALID_ARG || s == QN_ERR_OVERFLOW);
        expect_shape(qt, 4, 6, 3, 2, 2);
    }
    ck_assert_int_eq(qn_qtensor_set_shape(NULL, 2, two), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_shape(NULL, &nd, sh), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_shape(qt, NULL, sh), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_shape(qt, &nd, NULL), QN_ERR_INVALID_ARG);
    /* the shape is a view: the matrix and the decoded data do not change */
    {
        size_t r = 0, c = 0;
        float *d = decode_new(qt, 72);
        ck_assert_int_eq(qn_qtensor_get_matrix(qt, &r, &c), QN_OK);
        ck_assert_uint_eq(r, 6);
        ck_assert_uint_eq(c, 12);
        check_scalar(qt, w, 6, 12, 4, QN_QSCHEME_SYMMETRIC, 1, "after set_shape");
        free(d);
    }
    /* a 1-D shape for a column (e.g. a bias kept as a 4 x 1 matrix) */
    {
        const float b[4] = {0.5f, -1.0f, 0.25f, 2.0f};
        const size_t s1[1] = {4};
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, b, 4, 1, 8, 0, &col), QN_OK);
        ck_assert_int_eq(qn_qtensor_set_shape(col, 1, s1), QN_OK);
        expect_shape(col, 1, 4, 0, 0, 0);
    }
    qn_qtensor_destroy(qt);
    qn_qtensor_destroy(col);
    qn_context_destroy(ctx);
    free(w);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* from_pq_codes                                                                               */
/* ------------------------------------------------------------------------------------------ */

START_TEST(from_pq_codes_copies_and_refuses)
{
    counting_alloc a = {0, 0, 0, 0};
    log_cap cap;
    qn_context *ctx;
    qn_qtensor *qt = NULL;
    /* 4 x 6, bs 3: 8 blocks, K 3 */
    float c[9] = {1, 2, 3, -1, -2, -3, 0.5f, 0.25f, 0.125f}, d[24];
    uint16_t codes[8] = {0, 1, 2, 0, 1, 2, 2, 1}, got[8];
    float gotc[9];
    size_t i, bs = 0, k = 0;
    unsigned cb = 0;
    memset(&cap, 0, sizeof cap);
    ctx = ctx_counting(&a, &cap);
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), QN_OK);
    /* copies: changing the caller's arrays changes nothing */
    c[0] = 100.0f;
    codes[0] = 2;
    ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
    {
        const float c0[9] = {1, 2, 3, -1, -2, -3, 0.5f, 0.25f, 0.125f};
        const uint16_t k0[8] = {0, 1, 2, 0, 1, 2, 2, 1};
        for (i = 0; i < 24; i++)
            ck_assert_float_eq(d[i], c0[k0[i / 3] * 3 + i % 3]);
        ck_assert_int_eq(qn_qtensor_get_codes(qt, got, 8), QN_OK);
        ck_assert_mem_eq(got, k0, sizeof k0);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, gotc, 9), QN_OK);
        ck_assert_mem_eq(gotc, c0, sizeof c0);
    }
    c[0] = 1.0f;
    codes[0] = 0;
    ck_assert_int_eq(qn_qtensor_get_pq(qt, &bs, &k, &cb, NULL), QN_OK);
    ck_assert_uint_eq(bs, 3);
    ck_assert_uint_eq(k, 3);
    ck_assert_uint_eq(cb, 4);
    /* 2 codes/row at 4 bits: 1 byte/row -> 4; 9 fp32 values -> 36 */
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), 40);
    /* too small buffers: refused, untouched */
    memset(got, 0xab, sizeof got);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, got, 7), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(got[0], 0xabab);
    memset(gotc, 0, sizeof gotc);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, gotc, 8), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert(gotc[0] == 0.0f);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, NULL, 8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, NULL, 9), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_codes(NULL, got, 8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_get_centroids(NULL, gotc, 9), QN_ERR_INVALID_ARG);
    qn_qtensor_destroy(qt);

#define EXPECT_PQC_FAILS(expr, what)                                                                           \
    do {                                                                                                       \
        int e0 = cap.errors;                                                                                   \
        qt = SENTINEL;                                                                                         \
        ck_assert_msg((expr) == QN_ERR_INVALID_ARG, "%s: not refused", what);                                  \
        ck_assert_msg(qt == NULL, "%s: *out not NULL", what);                                                  \
        ck_assert_msg(cap.errors > e0, "%s: no message logged", what);                                         \
    } while (0)

    codes[5] = 3;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), "code == K");
    codes[5] = 65535;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), "code 65535");
    codes[5] = 2;
    c[4] = NAN;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), "NaN centroid");
    c[4] = INFINITY;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), "+Inf centroid");
    c[8] = -INFINITY;
    c[4] = -2.0f;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, &qt), "-Inf centroid");
    c[8] = 0.125f;
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 4, 2, c, codes, &qt), "bs 4 does not divide 6");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 0, 2, c, codes, &qt), "bs 0");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 7, 2, c, codes, &qt), "bs > cols");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 1, 6, 3, 3, c, codes, &qt), "K 3 > 2 blocks");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 1, c, codes, &qt), "K 1");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 0, c, codes, &qt), "K 0");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 0, 6, 3, 3, c, codes, &qt), "rows 0");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 0, 3, 3, c, codes, &qt), "cols 0");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, NULL, codes, &qt), "NULL centroids");
    EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, NULL, &qt), "NULL codes");
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, 4, 6, 3, 3, c, codes, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_from_pq_codes(NULL, 4, 6, 3, 3, c, codes, &qt), QN_ERR_INVALID_ARG);
    /* K above 65536, with enough blocks (65537 blocks of 1) */
    {
        const size_t n = 65537;
        float *cc = (float *)calloc(n, sizeof(float));
        uint16_t *kk = (uint16_t *)calloc(n, sizeof(uint16_t));
        for (i = 0; i < n; i++)
            cc[i] = (float)i;
        EXPECT_PQC_FAILS(qn_qtensor_from_pq_codes(ctx, 1, n, 1, n, cc, kk, &qt), "K 65537");
        free(cc);
        free(kk);
    }
    qn_context_destroy(ctx);
    ck_assert_int_eq(a.allocs, a.frees);
#undef EXPECT_PQC_FAILS
}
END_TEST

/* K = 65536: 16-bit codes, every code value usable. */
START_TEST(from_pq_codes_k65536)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    const size_t rows = 256, cols = 256, n = rows * cols, k = 65536;
    float *c = (float *)malloc(k * sizeof(float)), *d = (float *)malloc(n * sizeof(float));
    uint16_t *codes = (uint16_t *)malloc(n * sizeof(uint16_t));
    unsigned cb = 0;
    size_t i;
    for (i = 0; i < k; i++)
        c[i] = (float)i * 0.5f - 1000.0f;
    for (i = 0; i < n; i++)
        codes[i] = (uint16_t)(65535u - (unsigned)((i * 7919u) % 65536u));
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, rows, cols, 1, k, c, codes, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, &cb, NULL), QN_OK);
    ck_assert_uint_eq(cb, 16);
    /* 256 codes/row x 2 B = 512 B/row -> 131072; 65536 fp32 values -> 262144 */
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), 131072 + 262144);
    ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
    for (i = 0; i < n; i++)
        ck_assert(d[i] == c[codes[i]]);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    free(c), free(d), free(codes);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* from_layer                                                                                  */
/* ------------------------------------------------------------------------------------------ */

typedef struct layer_case {
    int kind; /* 0 linear, 1 conv2d, 2 grouped conv2d, 3 embedding */
    size_t bs, k;
    size_t ndim, shape[4];
    unsigned code_bits;
    size_t nbytes_fp32, nbytes_int8;
} layer_case;

static const layer_case layer_cases[] = {
    /* linear 32 -> 16: 4 blocks/row, 4 bits -> 2 B/row -> 32; 16*8 = 128 values: 512 / 136 */
    {0, 8, 16, 2, {16, 32, 0, 0}, 4, 32 + 512, 32 + 136},
    /* conv 5 -> 6, 3x3: cols 45, bs 9: 5 blocks/row -> 3 B/row -> 18; 12*9 = 108 values: 432 / 116 */
    {1, 9, 12, 4, {6, 5, 3, 3}, 4, 18 + 432, 18 + 116},
    /* conv 4 -> 6, 3x3, groups 2: cols 2*9 = 18, bs 6: 3 blocks/row -> 2 B/row -> 12; 8*6 = 48 values: 192 / 56 */
    {2, 6, 8, 4, {6, 2, 3, 3}, 4, 12 + 192, 12 + 56},
    /* embedding 40 x 12, bs 4: 3 blocks/row, K 32 -> 8 bits: 3 B/row -> 120; 32*4 = 128 values: 512 / 136 */
    {3, 4, 32, 2, {40, 12, 0, 0}, 8, 120 + 512, 120 + 136},
};

static qn_layer *make_layer(qn_context *ctx, int kind)
{
    qn_layer *l = NULL;
    switch (kind) {
    case 0:
        ck_assert_int_eq(qn_layer_create_linear(ctx, 32, 16, &l), QN_OK);
        break;
    case 1:
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 5, 6, 3, 3, 1, 1, 1, 1, &l), QN_OK);
        break;
    case 2:
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 2, &l), QN_OK);
        break;
    default:
        ck_assert_int_eq(qn_layer_create_embedding(ctx, 40, 12, &l), QN_OK);
        break;
    }
    return l;
}

START_TEST(from_layer_kinds)
{
    const layer_case *lc = &layer_cases[_i];
    uint64_t st = 500 + (uint64_t)_i;
    qn_context *ctx = ctx_new();
    qn_layer *l = make_layer(ctx, lc->kind);
    qn_qtensor *qt = NULL;
    size_t wn = 0, rows, cols, r = 0, c = 0, bs = 0, k = 0, nb, i;
    float *w, *dl, *dq, *lc_c = NULL, *qc;
    uint16_t *lcodes, *qcodes;
    unsigned cb = 0;
    qn_codebook_precision prec = QN_CODEBOOK_FP16;
    ck_assert_int_eq(qn_layer_get_sizes(l, &wn, NULL, NULL, NULL), QN_OK);
    rows = lc->shape[0];
    cols = wn / rows;
    nb = wn / lc->bs;
    w = rand_vec(&st, wn);
    dl = (float *)malloc(wn * sizeof(float));
    lcodes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    qcodes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    qc = (float *)malloc(lc->k * lc->bs * sizeof(float));
    /* not compressed (unbound, then bound) */
    qt = SENTINEL;
    ck_assert_int_eq(qn_qtensor_from_layer(l, &qt), QN_ERR_NOT_TRAINED);
    ck_assert_ptr_null(qt);
    ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
    qt = SENTINEL;
    ck_assert_int_eq(qn_qtensor_from_layer(l, &qt), QN_ERR_NOT_TRAINED);
    ck_assert_ptr_null(qt);
    ck_assert_int_eq(qn_qtensor_from_layer(l, NULL), QN_ERR_INVALID_ARG);
    qt = SENTINEL;
    ck_assert_int_eq(qn_qtensor_from_layer(NULL, &qt), QN_ERR_INVALID_ARG);
    /* compressed */
    ck_assert_int_eq(qn_layer_compress_pq(l, lc->bs, lc->k, 8, 11), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_layer(l, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_matrix(qt, &r, &c), QN_OK);
    ck_assert_uint_eq(r, rows);
    ck_assert_uint_eq(c, cols);
    expect_shape(qt, lc->ndim, lc->shape[0], lc->shape[1], lc->shape[2], lc->shape[3]);
    ck_assert_int_eq(qn_qtensor_get_pq(qt, &bs, &k, &cb, &prec), QN_OK);
    ck_assert_uint_eq(bs, lc->bs);
    ck_assert_uint_eq(k, lc->k);
    ck_assert_uint_eq(cb, lc->code_bits);
    ck_assert_int_eq(prec, QN_CODEBOOK_FP32);
    ck_assert_uint_eq(qn_qtensor_nbytes(qt), lc->nbytes_fp32);
    ck_assert_int_eq(qn_layer_decode_weight(l, dl, wn), QN_OK);
    dq = decode_new(qt, wn);
    ck_assert_mem_eq(dq, dl, wn * sizeof(float));
    ck_assert_int_eq(qn_layer_get_pq_codes(l, lcodes, nb), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, qcodes, nb), QN_OK);
    ck_assert_mem_eq(lcodes, qcodes, nb * sizeof(uint16_t));
    ck_assert_int_eq(qn_layer_pq_centroids(l, &lc_c), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, qc, lc->k * lc->bs), QN_OK);
    ck_assert_mem_eq(qc, lc_c, lc->k * lc->bs * sizeof(float));
    /* a copy: later changes to the layer's centroids do not reach the tensor */
    lc_c[0] += 1.0f;
    free(dq);
    dq = decode_new(qt, wn);
    ck_assert_mem_eq(dq, dl, wn * sizeof(float));
    lc_c[0] -= 1.0f;
    qn_qtensor_destroy(qt);
    qt = NULL;

    /* int8 codebook: stays int8, sizes count int8, values are the layer's int8 values */
    {
        const qn_qscheme scheme = _i % 2 ? QN_QSCHEME_AFFINE : QN_QSCHEME_SYMMETRIC;
        size_t n = lc->k * lc->bs;
        int8_t *v = (int8_t *)malloc(n);
        float scale = 0.0f;
        int32_t zp = 0;
        double mse = -1.0;
        ck_assert_int_eq(qn_layer_pq_codebook_int8(l, scheme, &mse), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_layer(l, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, &cb, &prec), QN_OK);
        ck_assert_int_eq(prec, QN_CODEBOOK_INT8);
        ck_assert_uint_eq(cb, lc->code_bits);
        ck_assert_uint_eq(qn_qtensor_nbytes(qt), lc->nbytes_int8);
        ck_assert_int_eq(qn_layer_get_pq_codebook_int8(l, v, n, &scale, &zp), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, qc, n), QN_OK);
        for (i = 0; i < n; i++)
            ck_assert_float_eq(qc[i], ((float)v[i] - (float)zp) * scale);
        ck_assert_int_eq(qn_layer_decode_weight(l, dl, wn), QN_OK);
        free(dq);
        dq = decode_new(qt, wn);
        ck_assert_mem_eq(dq, dl, wn * sizeof(float));
        qn_qtensor_destroy(qt);
        qt = NULL;
        /* fine-tuning moves the layer's centroids off the grid: the tensor keeps int8 values on it */
        for (i = 0; i < n; i++)
            lc_c[i] += 0.3f * scale;
        ck_assert_int_eq(qn_layer_get_pq_codebook_int8(l, v, n, &scale, &zp), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_layer(l, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_pq(qt, NULL, NULL, NULL, &prec), QN_OK);
        ck_assert_int_eq(prec, QN_CODEBOOK_INT8);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, qc, n), QN_OK);
        for (i = 0; i < n; i++) {
            ck_assert_float_eq(qc[i], ((float)v[i] - (float)zp) * scale);
            ck_assert(fabsf(qc[i] - lc_c[i]) <= 0.5f * scale * (1.0f + 1e-5f));
        }
        qn_qtensor_destroy(qt);
        free(v);
    }
    qn_layer_destroy(l);
    qn_context_destroy(ctx);
    free(w), free(dl), free(dq), free(lcodes), free(qcodes), free(qc);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* error report                                                                                */
/* ------------------------------------------------------------------------------------------ */

START_TEST(error_by_hand)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL, *sq = NULL;
    /* 2 x 4, bs 2: decoded rows (1,2,1,2) (1,1,1,1) */
    const float c[4] = {1, 2, 1, 1};
    const uint16_t codes[4] = {0, 0, 1, 1};
    /* reference: errors 0 0 2 2 / -1 -1 0 -1: 11; ||ref||^2 = 1+4+9+16+0+0+1+0 = 31; max 2 */
    const float ref[8] = {1, 2, 3, 4, 0, 0, 1, 0};
    const float same[8] = {1, 2, 1, 2, 1, 1, 1, 1};
    double rel = -1, snr = -1, mx = -1;
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, 2, 4, 2, 2, c, codes, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_error(qt, ref, &rel, &snr, &mx), QN_OK);
    ck_assert_double_eq_tol(rel, 11.0 / 31.0, 1e-12);
    ck_assert_double_eq_tol(snr, 10.0 * log10(31.0 / 11.0), 1e-9); /* 4.4998... dB */
    ck_assert_double_eq_tol(snr, 4.4998, 1e-3);
    ck_assert_double_eq_tol(mx, 2.0, 1e-12);
    ck_assert_int_eq(qn_qtensor_error(qt, ref, NULL, NULL, NULL), QN_OK);
    rel = -1;
    ck_assert_int_eq(qn_qtensor_error(qt, ref, &rel, NULL, NULL), QN_OK);
    ck_assert_double_eq_tol(rel, 11.0 / 31.0, 1e-12);
    /* the largest error negative (ref < decoded): ref (1,2,1,2,1,1,1,-3): one error of -4;
     * ||ref||^2 = 1+4+1+4+1+1+1+9 = 22; rel 16/22 */
    {
        const float neg[8] = {1, 2, 1, 2, 1, 1, 1, -3};
        ck_assert_int_eq(qn_qtensor_error(qt, neg, &rel, &snr, &mx), QN_OK);
        ck_assert_double_eq_tol(mx, 4.0, 1e-12);
        ck_assert_double_eq_tol(rel, 16.0 / 22.0, 1e-12);
        ck_assert_double_eq_tol(snr, 10.0 * log10(22.0 / 16.0), 1e-9);
    }
    /* exact */
    ck_assert_int_eq(qn_qtensor_error(qt, same, &rel, &snr, &mx), QN_OK);
    ck_assert(rel == 0.0);
    ck_assert(mx == 0.0);
    ck_assert(isinf(snr) && snr > 0.0);
    /* refusals leave the outputs */
    rel = snr = mx = 7.0;
    ck_assert_int_eq(qn_qtensor_error(qt, NULL, &rel, &snr, &mx), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_error(NULL, ref, &rel, &snr, &mx), QN_ERR_INVALID_ARG);
    ck_assert(rel == 7.0 && snr == 7.0 && mx == 7.0);
    /* a scalar tensor: per tensor affine 8 bits of [0, 2.55]: scale 0.01, values on the grid are exact */
    {
        const float w[4] = {0.0f, 2.55f, 1.0f, 0.5f};
        const float ref2[4] = {0.0f, 2.55f, 1.0f, 0.505f}; /* the last one off by 0.005 (0.5 is on the grid) */
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 2, 2, 8, 0, &sq), QN_OK);
        ck_assert_int_eq(qn_qtensor_error(sq, ref2, &rel, &snr, &mx), QN_OK);
        ck_assert_double_eq_tol(mx, 0.005, 1e-6);
        /* 0.005^2 / (2.55^2 + 1 + 0.505^2) */
        ck_assert_double_eq_tol(rel, 0.000025 / (6.5025 + 1.0 + 0.255025), 1e-8);
    }
    qn_qtensor_destroy(qt);
    qn_qtensor_destroy(sq);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* qn_layer_bind_compressed                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Slow references: linear y = x W^T + b and embedding y[i] = W[idx[i]], in double. */
static void ref_linear(const float *x, const float *w, const float *b, size_t batch, size_t in, size_t out, double *y)
{
    size_t n, o, j;
    for (n = 0; n < batch; n++)
        for (o = 0; o < out; o++) {
            double s = b ? (double)b[o] : 0.0;
            for (j = 0; j < in; j++)
                s += (double)x[n * in + j] * (double)w[o * in + j];
            y[n * out + o] = s;
        }
}

static void assert_close(const float *got, const float *want, size_t n, double rel, const char *what)
{
    size_t i;
    for (i = 0; i < n; i++)
        ck_assert_msg(fabs((double)got[i] - (double)want[i]) <= rel * (1.0 + fabs((double)want[i])),
                      "%s [%zu]: %.9g vs %.9g", what, i, (double)got[i], (double)want[i]);
}

START_TEST(bind_compressed_forward)
{
    /* kind 0 linear, 1 conv2d 3x3 pad 1, 2 embedding, 3 conv2d 3x3 stride 2 pad 1 groups 2 */
    const int kind = _i / 2, use_pq = !(_i % 2);
    uint64_t st = 900 + (uint64_t)_i;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL, *d = NULL;
    qn_qtensor *qt = NULL, *bad = NULL, *bad2 = NULL, *bad3 = NULL;
    size_t wn = 0, bn = 0, inps = 0, outps = 0, rows, cols, batch = 3, i, bs_pq = 4, nbs = 4;
    float *w, *bias = NULL, *wd, *y, *y2, *yref, *dx, *dw, *db, *xf = NULL;
    int64_t idx[5] = {0, 29, 5, 5, 17};
    const void *x;
    int differs = 0;
    switch (kind) {
    case 0: /* linear 48 -> 20 */
        ck_assert_int_eq(qn_layer_create_linear(ctx, 48, 20, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_linear(ctx, 48, 20, &d), QN_OK);
        rows = 20;
        bs_pq = 8;
        break;
    case 1: /* conv 4 -> 8, 3x3, padding 1, on 5 x 6 */
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 8, 3, 3, 1, 1, 1, 1, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 8, 3, 3, 1, 1, 1, 1, &d), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 5, 6), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(d, 5, 6), QN_OK);
        rows = 8;
        break;
    case 3: /* conv 4 -> 6, 3x3, stride 2, padding 1, groups 2 (cols 2*9 = 18), on 7 x 5 */
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 2, 1, 1, 2, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 2, 1, 1, 2, &d), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 7, 5), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(d, 7, 5), QN_OK);
        rows = 6;
        bs_pq = 6;
        nbs = 2;
        break;
    default: /* embedding 30 x 12 */
        ck_assert_int_eq(qn_layer_create_embedding(ctx, 30, 12, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_embedding(ctx, 30, 12, &d), QN_OK);
        rows = 30;
        batch = 5;
        break;
    }
    ck_assert_int_eq(qn_layer_get_sizes(l, &wn, &bn, &inps, &outps), QN_OK);
    cols = wn / rows;
    w = rand_vec(&st, wn);
    if (bn)
        bias = rand_vec(&st, bn);
    if (kind == 2) {
        x = idx;
    } else {
        xf = rand_vec(&st, batch * inps);
        x = xf;
    }
    y = (float *)malloc(batch * outps * sizeof(float));
    y2 = (float *)malloc(batch * outps * sizeof(float));
    yref = (float *)malloc(batch * outps * sizeof(float));
    dx = (float *)malloc((batch * inps + 1) * sizeof(float));
    dw = (float *)malloc(wn * sizeof(float));
    db = (float *)malloc((bn + 1) * sizeof(float));
    if (use_pq)
        ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, rows, cols, bs_pq, 16, 1, &qt), QN_OK);
    else
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, rows, cols, kind == 1 ? 8 : (kind == 0 ? 4 : (kind == 2 ? 3 : 2)),
                                                kind != 1,
                                                &qt),
                         QN_OK);
    wd = decode_new(qt, wn);
    if (use_pq) {
        float *reb = rebuild_pq(qt, rows, cols, bs_pq, 16);
        ck_assert_mem_eq(reb, wd, wn * sizeof(float));
        free(reb);
    }
    /* start from a dense binding with noise configured (and, for linear, a PQ-compressed layer) */
    ck_assert_int_eq(qn_layer_bind(l, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.5f, nbs), QN_OK);
    if (kind == 0)
        ck_assert_int_eq(qn_layer_compress_pq(l, 8, 4, 3, 0), QN_OK);
    ck_assert_int_eq(qn_layer_bind_compressed(l, qt, bias), QN_OK);
    /* forward == dense layer on the decoded weight */
    ck_assert_int_eq(qn_layer_bind(d, wd, bias), QN_OK);
    ck_assert_int_eq(qn_layer_forward(d, batch, x, yref), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
    assert_close(y, yref, batch * outps, 1e-5, "forward vs dense");
    if (kind == 0) {
        double *r = (double *)malloc(batch * outps * sizeof(double));
        ref_linear(xf, wd, bias, batch, cols, rows, r);
        for (i = 0; i < batch * outps; i++)
            ck_assert_msg(fabs((double)y[i] - r[i]) <= 1e-5 * (1.0 + fabs(r[i])), "[%zu] %g vs %g", i, (double)y[i],
                          r[i]);
        free(r);
    } else if (kind == 2) {
        for (i = 0; i < batch; i++)
            ck_assert_mem_eq(y + i * cols, wd + (size_t)idx[i] * cols, cols * sizeof(float));
    }
    /* forward_noisy == forward, even with noise configured (before and after binding) */
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y2, 3), QN_OK);
    ck_assert_mem_eq(y2, y, batch * outps * sizeof(float));
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_SCALAR, 0.9f, nbs), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y2, 4), QN_OK);
    ck_assert_mem_eq(y2, y, batch * outps * sizeof(float));
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, nbs), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y2, 5), QN_OK);
    ck_assert_mem_eq(y2, y, batch * outps * sizeof(float));
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.5f, nbs), QN_OK);
    /* backward is refused and touches nothing */
    for (i = 0; i < batch * inps + 1; i++)
        dx[i] = 7.0f;
    for (i = 0; i < wn; i++)
        dw[i] = 7.0f;
    for (i = 0; i < bn + 1; i++)
        db[i] = 7.0f;
    ck_assert_int_eq(qn_layer_backward(l, batch, x, y, kind == 2 ? NULL : dx, dw, kind == 2 ? NULL : db, 3),
                     QN_ERR_UNSUPPORTED);
    for (i = 0; i < batch * inps + 1; i++)
        ck_assert(dx[i] == 7.0f);
    for (i = 0; i < wn; i++)
        ck_assert(dw[i] == 7.0f);
    for (i = 0; i < bn + 1; i++)
        ck_assert(db[i] == 7.0f);
    /* mismatched tensors are refused and the binding stays */
    {
        float *wb = rand_vec(&st, 2 * (rows + 1) * cols);
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, wb, rows + 1, cols, 8, 0, &bad), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, wb, cols, rows, 8, 0, &bad2), QN_OK); /* transposed */
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, wb, rows, 2 * cols, 8, 0, &bad3), QN_OK); /* rows match */
        free(wb);
    }
    ck_assert_int_eq(qn_layer_bind_compressed(l, bad, bias), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_bind_compressed(l, bad2, bias), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_bind_compressed(l, bad3, bias), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_bind_compressed(l, NULL, bias), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_bind_compressed(NULL, qt, bias), QN_ERR_INVALID_ARG);
    if (kind == 2) {
        float eb[30];
        memset(eb, 0, sizeof eb);
        ck_assert_int_eq(qn_layer_bind_compressed(l, qt, eb), QN_ERR_INVALID_ARG); /* an embedding takes no bias */
    }
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y2), QN_OK);
    ck_assert_mem_eq(y2, y, batch * outps * sizeof(float));
    /* the same tensor may be bound to two layers; without bias when the layer has one */
    if (bn) {
        ck_assert_int_eq(qn_layer_bind_compressed(d, qt, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_forward(d, batch, x, y2), QN_OK);
        for (i = 0; i < batch * outps; i++) {
            size_t o = kind == 0 ? i % outps : (i % outps) / (outps / bn);
            ck_assert_msg(fabs((double)y2[i] + (double)bias[o] - (double)y[i]) <= 1e-5 * (1.0 + fabs((double)y[i])),
                          "no-bias [%zu]", i);
        }
    }
    /* qn_layer_bind returns to the dense path (with its noise) */
    ck_assert_int_eq(qn_layer_bind(l, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_bind(d, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_forward(d, batch, x, yref), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
    ck_assert_mem_eq(y, yref, batch * outps * sizeof(float));
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y2, 3), QN_OK);
    for (i = 0; i < batch * outps; i++)
        differs |= y2[i] != y[i];
    ck_assert_msg(differs, "forward_noisy after rebinding the dense weight shows no noise");
    for (i = 0; i < wn; i++)
        dw[i] = 0.0f;
    ck_assert_int_eq(qn_layer_backward(l, batch, x, y, kind == 2 ? NULL : dx, dw, kind == 2 ? NULL : db, 3), QN_OK);
    qn_layer_destroy(l);
    qn_layer_destroy(d);
    qn_qtensor_destroy(qt);
    qn_qtensor_destroy(bad);
    qn_qtensor_destroy(bad2);
    qn_qtensor_destroy(bad3);
    qn_context_destroy(ctx);
    free(w), free(bias), free(wd), free(y), free(y2), free(yref), free(dx), free(dw), free(db), free(xf);
}
END_TEST

/* A caller workspace: the size asked after binding is enough; a smaller one is refused or suffices. */
START_TEST(bind_compressed_caller_workspace)
{
    uint64_t st = 31;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL, *d = NULL;
    qn_qtensor *qt = NULL;
    const size_t in = 40, out = 24, batch = 4;
    float *w = rand_vec(&st, in * out), *bias = rand_vec(&st, out), *x = rand_vec(&st, batch * in), *wd;
    float y[4 * 24], yref[4 * 24];
    size_t dense_bytes = 0, bytes = 0, i;
    unsigned char *small, *big;
    qn_status s;
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &l), QN_OK);
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &d), QN_OK);
    ck_assert_int_eq(qn_layer_bind(l, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_workspace_size(l, batch, &dense_bytes), QN_OK);
    small = (unsigned char *)malloc(dense_bytes);
    ck_assert_int_eq(qn_layer_set_workspace(l, small, dense_bytes), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, out, in, 4, 32, 2, &qt), QN_OK);
    wd = decode_new(qt, in * out);
    ck_assert_int_eq(qn_layer_bind(d, wd, bias), QN_OK);
    ck_assert_int_eq(qn_layer_forward(d, batch, x, yref), QN_OK);
    ck_assert_int_eq(qn_layer_bind_compressed(l, qt, bias), QN_OK);
    for (i = 0; i < batch * out; i++)
        y[i] = 42.0f;
    s = qn_layer_forward(l, batch, x, y); /* small is exactly dense_bytes long: ASan/valgrind see any overrun */
    if (s == QN_OK) {
        assert_close(y, yref, batch * out, 1e-5, "small workspace");
    } else {
        ck_assert_int_eq(s, QN_ERR_BUFFER_TOO_SMALL);
        for (i = 0; i < batch * out; i++)
            ck_assert(y[i] == 42.0f);
    }
    ck_assert_int_eq(qn_layer_workspace_size(l, batch, &bytes), QN_OK);
    big = (unsigned char *)malloc(bytes);
    ck_assert_int_eq(qn_layer_set_workspace(l, big, bytes), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
    assert_close(y, yref, batch * out, 1e-5, "workspace of workspace_size");
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, 1), QN_OK);
    assert_close(y, yref, batch * out, 1e-5, "noisy, workspace of workspace_size");
    qn_layer_destroy(l);
    qn_layer_destroy(d);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
    free(w), free(bias), free(x), free(wd), free(small), free(big);
}
END_TEST

/* fp16 rounding at the edges: ties (to even), subnormals, underflow to zero, signs. */
START_TEST(codebook_fp16_edges)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    /* 16 values, one centroid of 16 (K = 2 with the second centroid 0), used by 2 blocks */
    float c[32], before[32], after[32];
    uint16_t codes[2] = {0, 1};
    double mse = -1.0, err = 0.0;
    size_t i;
    memset(c, 0, sizeof c);
    c[0] = 1.0f + 0x1p-11f;        /* tie between 1 and 1 + 2^-10: even -> 1 */
    c[1] = 1.0f + 3.0f * 0x1p-11f; /* tie between 1 + 2^-10 and 1 + 2^-9: even -> 1 + 2^-9 */
    c[2] = -(1.0f + 0x1p-11f);     /* -1 */
    c[3] = 0x1p-25f;               /* tie between 0 and the smallest subnormal 2^-24: even -> 0 */
    c[4] = 3.0f * 0x1p-25f;        /* tie between 2^-24 and 2^-23: even -> 2^-23 */
    c[5] = 0x1p-26f;               /* below half the smallest subnormal -> 0 */
    c[6] = 0x1p-14f;               /* the smallest normal: exact */
    c[7] = 0x1p-14f - 0x1p-25f;    /* tie between 2^-14 - 2^-24 (odd) and 2^-14 (even) -> 2^-14 */
    c[8] = 65504.0f;               /* the largest fp16: exact */
    c[9] = 2049.0f;                /* tie between 2048 and 2050: even -> 2048 */
    c[10] = 2051.0f;               /* tie between 2050 and 2052: even -> 2052 */
    c[11] = 0.1f;                  /* an ordinary value */
    c[12] = -3.0e-6f;              /* a negative subnormal */
    c[13] = 1.0f + 0x1p-11f + 0x1p-20f; /* just above the tie -> up */
    c[14] = -0.0f;
    c[15] = 1000.3f;
    for (i = 16; i < 32; i++)
        c[i] = (float)i;
    ck_assert_int_eq(qn_qtensor_from_pq_codes(ctx, 1, 32, 16, 2, c, codes, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, before, 32), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, &mse), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, after, 32), QN_OK);
    /* the hand-made expectations, and the test-side rounding agrees with them */
    ck_assert(fp16_round(c[0]) == 1.0f);
    ck_assert(fp16_round(c[1]) == 1.0f + 0x1p-9f);
    ck_assert(fp16_round(c[3]) == 0.0f);
    ck_assert(fp16_round(c[4]) == 0x1p-23f);
    ck_assert(fp16_round(c[7]) == 0x1p-14f);
    ck_assert(fp16_round(c[9]) == 2048.0f);
    ck_assert(fp16_round(c[10]) == 2052.0f);
    ck_assert(fp16_round(c[13]) == 1.0f + 0x1p-10f);
    for (i = 0; i < 32; i++) {
        double e = (double)before[i] - (double)after[i];
        ck_assert_msg(after[i] == fp16_round(before[i]), "[%zu]: %a rounds to %a in fp16, got %a", i, (double)before[i],
                      (double)fp16_round(before[i]), (double)after[i]);
        ck_assert(fp16_exact(after[i]));
        err += e * e;
    }
    ck_assert_double_eq_tol(mse, err / 32.0, 1e-9 * err / 32.0 + 1e-300);
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

/* Finite but extreme weights: either a clean refusal or a finite result within the usual bounds. */
START_TEST(extreme_finite_values)
{
    qn_context *ctx = ctx_new();
    qn_qtensor *qt = NULL;
    float w[16], d[16], c[6];
    uint16_t codes[8];
    size_t i, b;
    qn_status s;
    for (i = 0; i < 16; i++)
        w[i] = (i % 2 ? 1.0f : -1.0f) * 3e38f * ((float)(i + 1) / 16.0f);
    /* per tensor affine: the range 6e38 exceeds FLT_MAX */
    qt = SENTINEL;
    s = qn_qtensor_from_scalar(ctx, w, 4, 4, 8, 0, &qt);
    if (s == QN_OK) {
        ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
        for (i = 0; i < 16; i++)
            ck_assert(isfinite(d[i]));
        qn_qtensor_destroy(qt);
    } else {
        ck_assert(s == QN_ERR_INVALID_ARG || s == QN_ERR_OVERFLOW || s == QN_ERR_UNSUPPORTED);
        ck_assert_ptr_null(qt);
    }
    /* per row symmetric: each row's max|w| / 127 is representable */
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 4, 4, 8, 1, &qt), QN_OK);
    check_scalar(qt, w, 4, 4, 8, QN_QSCHEME_SYMMETRIC, 1, "extreme per row");
    qn_qtensor_destroy(qt);
    qt = NULL;
    /*
     * PQ at 1e18 (squared distances ~1e36, still floats): codes nearest. At 3e38
     * only finiteness: float squared distances overflow there, and k-means then
     * picks a code that is not nearest (a known limit, see test_kmeans.c's
     * huge_values_stay_finite), so nearness is not asked.
     */
    {
        float w18[16];
        for (i = 0; i < 16; i++)
            w18[i] = w[i] * 1e-20f * (1.0f / 3.0f);
        ck_assert_int_eq(qn_qtensor_from_pq(ctx, w18, 4, 4, 2, 3, 1, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_codes(qt, codes, 8), QN_OK);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, c, 6), QN_OK);
        for (b = 0; b < 8; b++) {
            double dd = qn_test_sq_dist(w18 + 2 * b, c + 2 * (size_t)codes[b], 2);
            double best = qn_test_min_sq_dist(w18 + 2 * b, c, 3, 2);
            ck_assert_msg(dd <= best * (1.0 + 1e-5), "1e18: block %zu: %g > %g", b, dd, best);
        }
        qn_qtensor_destroy(qt);
        qt = NULL;
    }
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 4, 4, 2, 3, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_codes(qt, codes, 8), QN_OK);
    ck_assert_int_eq(qn_qtensor_get_centroids(qt, c, 6), QN_OK);
    for (i = 0; i < 6; i++)
        ck_assert(isfinite(c[i]));
    for (b = 0; b < 8; b++)
        ck_assert_uint_lt(codes[b], 3);
    {
        /* an int8 codebook of that range: refused (unchanged) or finite */
        float c2[6];
        double mse = 9.0;
        s = qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, &mse);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, c2, 6), QN_OK);
        if (s == QN_OK) {
            for (i = 0; i < 6; i++)
                ck_assert(isfinite(c2[i]));
            ck_assert(isfinite(mse));
        } else {
            ck_assert_mem_eq(c2, c, sizeof c);
            ck_assert(mse == 9.0);
        }
        s = qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, &mse);
        ck_assert_int_eq(s, QN_OK); /* max|c| / 127 is fine */
        ck_assert_int_eq(qn_qtensor_decode(qt, d), QN_OK);
        for (i = 0; i < 16; i++)
            ck_assert(isfinite(d[i]));
    }
    {
        double rel = -1, snr = 0, mx = -1;
        ck_assert_int_eq(qn_qtensor_error(qt, w, &rel, &snr, &mx), QN_OK);
        ck_assert(isfinite(rel) && rel >= 0.0 && rel < 1.0);
        ck_assert(isfinite(mx));
    }
    qn_qtensor_destroy(qt);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* bad input                                                                                   */
/* ------------------------------------------------------------------------------------------ */

START_TEST(bad_input_creators)
{
    counting_alloc a = {0, 0, 0, 0};
    log_cap cap;
    qn_context *ctx;
    qn_qtensor *qt = NULL;
    float w[64];
    size_t i;
    float nonfinite[3];
    nonfinite[0] = NAN;
    nonfinite[1] = INFINITY;
    nonfinite[2] = -INFINITY;
    for (i = 0; i < 64; i++)
        w[i] = (float)i / 32.0f - 1.0f;
    memset(&cap, 0, sizeof cap);
    ctx = ctx_counting(&a, &cap);

#define EXPECT_FAILS(expr, want, what)                                                                         \
    do {                                                                                                       \
        int e0 = cap.errors;                                                                                   \
        qn_status s_;                                                                                          \
        qt = SENTINEL;                                                                                         \
        s_ = (expr);                                                                                           \
        ck_assert_msg(s_ == (want), "%s: status %d, want %d", what, (int)s_, (int)(want));                     \
        ck_assert_msg(qt == NULL, "%s: *out not NULL", what);                                                  \
        ck_assert_msg(cap.errors > e0, "%s: no message logged", what);                                         \
    } while (0)

    /* from_pq: 8 x 8 */
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, NULL, 8, 8, 4, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq NULL w");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 0, 8, 4, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq rows 0");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 0, 4, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq cols 0");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 0, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq bs 0");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 3, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq bs 3 !| 8");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 16, 2, 0, &qt), QN_ERR_INVALID_ARG, "pq bs 16 > cols");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 1, 0, &qt), QN_ERR_INVALID_ARG, "pq K 1");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 0, 0, &qt), QN_ERR_INVALID_ARG, "pq K 0");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 17, 0, &qt), QN_ERR_INVALID_ARG, "pq K 17 > 16 blocks");
    EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 65537, 0, &qt), QN_ERR_INVALID_ARG, "pq K 65537");
    for (i = 0; i < 3; i++) {
        float save = w[37];
        w[37] = nonfinite[i];
        EXPECT_FAILS(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 4, 0, &qt), QN_ERR_INVALID_ARG, "pq non-finite w");
        w[37] = save;
    }
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 8, 8, 4, 4, 0, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_from_pq(NULL, w, 8, 8, 4, 4, 0, &qt), QN_ERR_INVALID_ARG);
    {
        qn_status s;
        qt = SENTINEL;
        s = qn_qtensor_from_pq(ctx, w, SIZE_MAX / 2, 8, 4, 4, 0, &qt);
        ck_assert(s == QN_ERR_OVERFLOW || s == QN_ERR_INVALID_ARG);
        ck_assert_ptr_null(qt);
    }

    /* from_scalar: 8 x 8 */
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, NULL, 8, 8, 4, 0, &qt), QN_ERR_INVALID_ARG, "scalar NULL w");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 0, 8, 4, 0, &qt), QN_ERR_INVALID_ARG, "scalar rows 0");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 0, 4, 1, &qt), QN_ERR_INVALID_ARG, "scalar cols 0");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 1, 0, &qt), QN_ERR_INVALID_ARG, "scalar bits 1");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 9, 1, &qt), QN_ERR_INVALID_ARG, "scalar bits 9");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 0, 0, &qt), QN_ERR_INVALID_ARG, "scalar bits 0");
    EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 16, 0, &qt), QN_ERR_INVALID_ARG, "scalar bits 16");
    for (i = 0; i < 3; i++) {
        float save = w[63];
        w[63] = nonfinite[i];
        EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 4, 0, &qt), QN_ERR_INVALID_ARG, "scalar non-finite");
        EXPECT_FAILS(qn_qtensor_from_scalar(ctx, w, 8, 8, 8, 1, &qt), QN_ERR_INVALID_ARG, "scalar non-finite/ch");
        EXPECT_FAILS(qn_qtensor_from_scalar_ex(ctx, w, 8, 8, 8, QN_OBSERVER_HISTOGRAM, QN_QSCHEME_AFFINE, &qt),
                     QN_ERR_INVALID_ARG, "scalar non-finite/hist");
        w[63] = save;
    }
    EXPECT_FAILS(qn_qtensor_from_scalar_ex(ctx, w, 8, 8, 4, (qn_observer)9, QN_QSCHEME_AFFINE, &qt),
                 QN_ERR_INVALID_ARG, "scalar_ex observer 9");
    EXPECT_FAILS(qn_qtensor_from_scalar_ex(ctx, w, 8, 8, 4, QN_OBSERVER_MINMAX, (qn_qscheme)5, &qt),
                 QN_ERR_INVALID_ARG, "scalar_ex scheme 5");
    EXPECT_FAILS(qn_qtensor_from_scalar_ex(ctx, w, 8, 8, 1, QN_OBSERVER_MINMAX, QN_QSCHEME_SYMMETRIC, &qt),
                 QN_ERR_INVALID_ARG, "scalar_ex bits 1");
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 8, 8, 4, 0, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_qtensor_from_scalar(NULL, w, 8, 8, 4, 0, &qt), QN_ERR_INVALID_ARG);
    {
        qn_status s;
        qt = SENTINEL;
        s = qn_qtensor_from_scalar(ctx, w, SIZE_MAX / 2, 8, 4, 0, &qt);
        ck_assert(s == QN_ERR_OVERFLOW || s == QN_ERR_INVALID_ARG);
        ck_assert_ptr_null(qt);
    }

    /* accessors on NULL */
    {
        float out[4];
        size_t r, c;
        qn_qtensor_kind kind;
        ck_assert_int_eq(qn_qtensor_decode(NULL, out), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_kind(NULL, &kind), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_matrix(NULL, &r, &c), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_pq(NULL, NULL, NULL, NULL, NULL), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_scalar(NULL, NULL, NULL, NULL), QN_ERR_INVALID_ARG);
        qn_qtensor_destroy(NULL);
        /* and on a real tensor with NULL outs */
        ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 2, 2, 8, 0, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_decode(qt, NULL), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_kind(qt, NULL), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_codes(qt, (uint16_t *)out, 4), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_qtensor_get_centroids(qt, out, 4), QN_ERR_INVALID_ARG);
        qn_qtensor_destroy(qt);
    }
    qn_context_destroy(ctx);
    ck_assert_int_eq(a.allocs, a.frees);
#undef EXPECT_FAILS
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* allocation failures                                                                         */
/* ------------------------------------------------------------------------------------------ */

enum { OP_PQ, OP_SCALAR_T, OP_SCALAR_CH, OP_HIST, OP_PQ_CODES, OP_LAYER, OP_ERROR, OP_INT8, OP_BIND, N_OPS };
static const char *const op_names[N_OPS] = {"from_pq",       "from_scalar per tensor", "from_scalar per channel",
                                            "histogram",     "from_pq_codes",          "from_layer",
                                            "qtensor_error", "codebook int8",          "bind_compressed forward"};

START_TEST(allocation_failures)
{
    const int op = _i;
    const size_t rows = 16, cols = 24, n = rows * cols;
    uint64_t st = 77;
    float *w = rand_vec(&st, n), c[12];
    uint16_t codes[96];
    int fail_at, failures = 0;
    size_t i;
    for (i = 0; i < 12; i++)
        c[i] = (float)i;
    for (i = 0; i < 96; i++)
        codes[i] = (uint16_t)(i % 3);
    for (fail_at = 1; fail_at < 2000; fail_at++) {
        counting_alloc a = {0, 0, 0, 0};
        qn_context *ctx = ctx_counting(&a, NULL);
        qn_qtensor *qt = SENTINEL, *pre = NULL;
        qn_layer *l = NULL;
        float y[2 * 16], x[2 * 24];
        double rel = 5.0, snr = 5.0, mx = 5.0;
        qn_status s = QN_OK;
        for (i = 0; i < 48; i++)
            x[i] = (float)i * 0.01f;
        /* setup (never failing) */
        if (op == OP_LAYER || op == OP_BIND) {
            ck_assert_int_eq(qn_layer_create_linear(ctx, cols, rows, &l), QN_OK);
            ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
            if (op == OP_LAYER)
                ck_assert_int_eq(qn_layer_compress_pq(l, 4, 8, 5, 1), QN_OK);
        }
        if (op == OP_ERROR || op == OP_INT8 || op == OP_BIND)
            ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, rows, cols, 4, 8, 1, &pre), QN_OK);
        a.fail_from = a.allocs + fail_at;
        switch (op) {
        case OP_PQ:
            s = qn_qtensor_from_pq(ctx, w, rows, cols, 4, 8, 1, &qt);
            break;
        case OP_SCALAR_T:
            s = qn_qtensor_from_scalar(ctx, w, rows, cols, 4, 0, &qt);
            break;
        case OP_SCALAR_CH:
            s = qn_qtensor_from_scalar(ctx, w, rows, cols, 8, 1, &qt);
            break;
        case OP_HIST:
            s = qn_qtensor_from_scalar_ex(ctx, w, rows, cols, 6, QN_OBSERVER_HISTOGRAM, QN_QSCHEME_AFFINE, &qt);
            break;
        case OP_PQ_CODES:
            s = qn_qtensor_from_pq_codes(ctx, rows, cols, 4, 3, c, codes, &qt);
            break;
        case OP_LAYER:
            s = qn_qtensor_from_layer(l, &qt);
            break;
        case OP_ERROR:
            s = qn_qtensor_error(pre, w, &rel, &snr, &mx);
            break;
        case OP_INT8:
            s = qn_qtensor_set_codebook_precision(pre, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, &rel);
            break;
        default:
            s = qn_layer_bind_compressed(l, pre, NULL);
            if (s == QN_OK)
                s = qn_layer_forward(l, 2, x, y);
            break;
        }
        a.fail_from = 0;
        if (s != QN_OK) {
            failures++;
            ck_assert_msg(s == QN_ERR_OUT_OF_MEMORY, "%s, allocation %d failing: status %d", op_names[op], fail_at,
                          (int)s);
            if (op <= OP_LAYER)
                ck_assert_msg(qt == NULL, "%s, allocation %d failing: *out not NULL", op_names[op], fail_at);
            if (op == OP_ERROR)
                ck_assert(rel == 5.0 && snr == 5.0 && mx == 5.0);
            if (op == OP_INT8) {
                qn_codebook_precision prec = QN_CODEBOOK_INT8;
                ck_assert_int_eq(qn_qtensor_get_pq(pre, NULL, NULL, NULL, &prec), QN_OK);
                ck_assert_int_eq(prec, QN_CODEBOOK_FP32);
                ck_assert(rel == 5.0);
            }
        } else if (op <= OP_LAYER) {
            ck_assert_ptr_nonnull(qt);
            ck_assert(qt != SENTINEL);
            qn_qtensor_destroy(qt);
        }
        qn_layer_destroy(l);
        qn_qtensor_destroy(pre);
        qn_context_destroy(ctx);
        ck_assert_msg(a.allocs == a.frees, "%s, allocation %d failing: %d allocations, %d frees", op_names[op],
                      fail_at, a.allocs, a.frees);
        if (s == QN_OK)
            break;
    }
    ck_assert_msg(fail_at < 2000, "%s never succeeded", op_names[op]);
    /* every creator allocates, so at least one failure was seen */
    if (op <= OP_ERROR)
        ck_assert_msg(failures > 0, "%s: no allocation to fail", op_names[op]);
    free(w);
}
END_TEST

/* Cancelling the k-means through the progress callback: a clean failure, nothing leaked. */
static int cancel_now(void *user, const char *what, uint64_t done, uint64_t total)
{
    int *calls = (int *)user;
    (void)what, (void)done, (void)total;
    ++*calls;
    return 1;
}

START_TEST(from_pq_cancelled)
{
    counting_alloc a = {0, 0, 0, 0};
    qn_context *ctx = NULL;
    qn_qtensor *qt = SENTINEL;
    int calls = 0;
    uint64_t st = 3;
    float *w = rand_vec(&st, 64 * 32);
    qn_status s;
    ck_assert_int_eq(
        qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, cancel_now, &calls, QN_ISA_AVX512, &ctx), QN_OK);
    s = qn_qtensor_from_pq(ctx, w, 64, 32, 4, 16, 0, &qt);
    if (calls > 0) {
        ck_assert_int_eq(s, QN_ERR_CANCELLED);
        ck_assert_ptr_null(qt);
    } else { /* no progress reported for this size: it simply succeeds */
        ck_assert_int_eq(s, QN_OK);
        qn_qtensor_destroy(qt);
    }
    qn_context_destroy(ctx);
    ck_assert_int_eq(a.allocs, a.frees);
    free(w);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

static Suite *qtensor_suite(void)
{
    Suite *s = suite_create("qtensor");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, from_pq_codes_nearest_and_sizes, 0, N_PQ_CASES);
    tcase_add_test(tc, from_pq_deterministic_and_exact_when_k_is_blocks);
    tcase_add_loop_test(tc, from_scalar_bits, 2, 9);
    tcase_add_test(tc, from_scalar_by_hand);
    tcase_add_loop_test(tc, from_scalar_histogram_heavy_tails, 3, 7);
    tcase_add_loop_test(tc, codebook_fp16, 0, N_PQ_CASES);
    tcase_add_loop_test(tc, codebook_int8, 0, 2 * N_PQ_CASES);
    tcase_add_test(tc, codebook_precision_refusals);
    tcase_add_test(tc, shape_set_get);
    tcase_add_test(tc, from_pq_codes_copies_and_refuses);
    tcase_add_test(tc, from_pq_codes_k65536);
    tcase_add_loop_test(tc, from_layer_kinds, 0, (int)(sizeof layer_cases / sizeof layer_cases[0]));
    tcase_add_test(tc, error_by_hand);
    tcase_add_loop_test(tc, bind_compressed_forward, 0, 8);
    tcase_add_test(tc, bind_compressed_caller_workspace);
    tcase_add_test(tc, codebook_fp16_edges);
    tcase_add_test(tc, extreme_finite_values);
    tcase_add_test(tc, bad_input_creators);
    tcase_add_loop_test(tc, allocation_failures, 0, N_OPS);
    tcase_add_test(tc, from_pq_cancelled);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(qtensor_suite());
}
