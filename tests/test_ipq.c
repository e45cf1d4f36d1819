/*
 * PQ-compressed layers, int8 codebooks and the iPQ schedule, through the
 * shared library and the public headers only.
 *
 *   - compress: codes are the nearest centroid of each block (slow double
 *     oracle), counts are the code histogram, the decoded weight is
 *     centroid[code] (rebuilt here from the codes), forward and forward_noisy
 *     equal a dense layer bound to that rebuilt weight, W is never written;
 *   - centroid gradients against central finite differences of the forward
 *     (linear, conv2d 3x3 with bs 9, conv2d 1x1 with bs 4, embedding), sum and
 *     mean modes, dx against the dense layer, dbias += ;
 *   - int8 codebooks: grid bounds, exact on-grid centroids, error <= scale/2,
 *     MSE reported equals the one recomputed here;
 *   - error report against a hand computation;
 *   - iPQ stages: which layers are compressed after each advance, sizes by
 *     hand for a small model (fairseq and exact accounting, int8), report
 *     text, cancellation and allocation failures change nothing and leak nothing;
 *   - fine-tuning the centroids by SGD on a regression task lowers the loss;
 *   - bad input: clear status, layer unchanged.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/ipq.h>
#include <qnoise/layer.h>

static float *rand_vec(uint64_t *st, size_t n)
{
    float *v = (float *)malloc(n * sizeof(float));
    size_t i;
    ck_assert_ptr_nonnull(v);
    for (i = 0; i < n; i++)
        v[i] = qn_test_uniform(st);
    return v;
}

static qn_context *ctx_new(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

/* W_hat rebuilt from the layer's codes and centroids (blocks of bs along rows of rows x cols). */
static float *rebuild(qn_layer *l, size_t rows, size_t cols)
{
    size_t bs, k, nb, b;
    float *c = NULL, *w = (float *)malloc(rows * cols * sizeof(float));
    uint16_t *codes;
    ck_assert_int_eq(qn_layer_get_pq_shape(l, &bs, &k, &nb), QN_OK);
    ck_assert_uint_eq(nb, rows * cols / bs);
    codes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    ck_assert_int_eq(qn_layer_get_pq_codes(l, codes, nb), QN_OK);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &c), QN_OK);
    for (b = 0; b < nb; b++) {
        ck_assert_uint_lt(codes[b], k);
        memcpy(w + b * bs, c + (size_t)codes[b] * bs, bs * sizeof(float));
    }
    free(codes);
    return w;
}

/* ------------------------------------------------------------------------------------------ */

START_TEST(compress_linear_codes_and_forward)
{
    uint64_t st = 11;
    size_t in = 48, out = 20, bs = 8, k = 16, nb = out * in / bs, b, j, batch = 5, i;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL, *dense = NULL;
    float *w = rand_vec(&st, in * out), *bias = rand_vec(&st, out), *x = rand_vec(&st, batch * in);
    float *wcopy = (float *)malloc(in * out * sizeof(float)), *what, *y1, *y2, *dec, *c = NULL;
    uint16_t *codes = (uint16_t *)malloc(nb * sizeof(uint16_t));
    uint32_t *counts = (uint32_t *)calloc(k, sizeof(uint32_t)), *hist = (uint32_t *)calloc(k, sizeof(uint32_t));
    int cq = 1;
    memcpy(wcopy, w, in * out * sizeof(float));
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &l), QN_OK);
    ck_assert_int_eq(qn_layer_bind(l, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_is_compressed(l, &cq), QN_OK);
    ck_assert_int_eq(cq, 0);
    ck_assert_int_eq(qn_layer_get_pq_shape(l, NULL, NULL, NULL), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_compress_pq(l, bs, k, 10, 7), QN_OK);
    ck_assert_int_eq(qn_layer_is_compressed(l, &cq), QN_OK);
    ck_assert_int_eq(cq, 1);
    ck_assert_int_eq(qn_layer_get_pq_codes(l, codes, nb), QN_OK);
    ck_assert_int_eq(qn_layer_get_pq_counts(l, counts, k), QN_OK);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &c), QN_OK);
    /* each code is a nearest centroid of its block */
    for (b = 0; b < nb; b++) {
        double d = qn_test_sq_dist(w + b * bs, c + (size_t)codes[b] * bs, bs);
        double best = qn_test_min_sq_dist(w + b * bs, c, k, bs);
        ck_assert(d <= best * (1.0 + 1e-5) + 1e-9);
        hist[codes[b]]++;
    }
    for (j = 0; j < k; j++)
        ck_assert_uint_eq(hist[j], counts[j]);
    what = rebuild(l, out, in);
    dec = (float *)malloc(in * out * sizeof(float));
    ck_assert_int_eq(qn_layer_decode_weight(l, dec, in * out), QN_OK);
    ck_assert_mem_eq(dec, what, in * out * sizeof(float));
    /* forward == dense layer on W_hat; forward_noisy too (no noise on a compressed layer) */
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.5f, bs), QN_OK);
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &dense), QN_OK);
    ck_assert_int_eq(qn_layer_bind(dense, what, bias), QN_OK);
    y1 = (float *)malloc(batch * out * sizeof(float));
    y2 = (float *)malloc(batch * out * sizeof(float));
    ck_assert_int_eq(qn_layer_forward(dense, batch, x, y2), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y1), QN_OK);
    for (i = 0; i < batch * out; i++)
        ck_assert_float_eq_tol(y1[i], y2[i], 1e-5f);
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y1, 3), QN_OK);
    for (i = 0; i < batch * out; i++)
        ck_assert_float_eq_tol(y1[i], y2[i], 1e-5f);
    ck_assert_mem_eq(w, wcopy, in * out * sizeof(float));
    /* decompress: back to the dense bound weight */
    ck_assert_int_eq(qn_layer_decompress(l), QN_OK);
    ck_assert_int_eq(qn_layer_is_compressed(l, &cq), QN_OK);
    ck_assert_int_eq(cq, 0);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_NONE, 0.0f, 1), QN_OK);
    ck_assert_int_eq(qn_layer_bind(dense, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y1), QN_OK);
    ck_assert_int_eq(qn_layer_forward(dense, batch, x, y2), QN_OK);
    ck_assert_mem_eq(y1, y2, batch * out * sizeof(float));
    qn_layer_destroy(l);
    qn_layer_destroy(dense);
    qn_context_destroy(ctx);
    free(w), free(bias), free(x), free(wcopy), free(what), free(y1), free(y2), free(dec), free(codes), free(counts),
        free(hist);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* finite differences of the centroid gradient                                                */

typedef struct fd_case {
    int kind; /* 0 linear, 1 conv 3x3, 2 conv 1x1, 3 embedding */
    size_t bs, k;
} fd_case;

static const fd_case fd_cases[] = {
    {0, 4, 8}, {1, 9, 6}, {2, 4, 5}, {3, 4, 10},
};

static double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

START_TEST(centroid_grad_finite_differences)
{
    const fd_case *fc = &fd_cases[_i];
    uint64_t st = 100 + (uint64_t)_i;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL, *dense = NULL;
    size_t batch = 3, wn, bn, inps, outps, i, t, k, bs;
    float *w, *bias = NULL, *y, *r, *dc_sum, *dc_mean, *dx = NULL, *dx_ref = NULL, *db = NULL, *dbias_ref = NULL;
    float *c = NULL, *what, *dw_dense;
    void *x;
    int64_t idx[3] = {4, 0, 4};
    uint32_t *counts;
    switch (fc->kind) {
    case 0:
        ck_assert_int_eq(qn_layer_create_linear(ctx, 12, 7, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_linear(ctx, 12, 7, &dense), QN_OK);
        break;
    case 1:
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 3, 4, 3, 3, 1, 1, 1, 1, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 3, 4, 3, 3, 1, 1, 1, 1, &dense), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 5, 4), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(dense, 5, 4), QN_OK);
        break;
    case 2:
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 8, 6, 1, 1, 1, 0, 1, 1, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, 8, 6, 1, 1, 1, 0, 1, 1, &dense), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 3, 3), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(dense, 3, 3), QN_OK);
        break;
    default:
        ck_assert_int_eq(qn_layer_create_embedding(ctx, 6, 8, &l), QN_OK);
        ck_assert_int_eq(qn_layer_create_embedding(ctx, 6, 8, &dense), QN_OK);
        break;
    }
    ck_assert_int_eq(qn_layer_get_sizes(l, &wn, &bn, &inps, &outps), QN_OK);
    w = rand_vec(&st, wn);
    if (bn)
        bias = rand_vec(&st, bn);
    if (fc->kind == 3) {
        x = idx;
    } else {
        x = rand_vec(&st, batch * inps);
    }
    r = rand_vec(&st, batch * outps);
    y = (float *)malloc(batch * outps * sizeof(float));
    ck_assert_int_eq(qn_layer_bind(l, w, bias), QN_OK);
    ck_assert_int_eq(qn_layer_compress_pq(l, fc->bs, fc->k, 5, 1), QN_OK);
    ck_assert_int_eq(qn_layer_get_pq_shape(l, &bs, &k, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &c), QN_OK);
    counts = (uint32_t *)malloc(k * sizeof(uint32_t));
    ck_assert_int_eq(qn_layer_get_pq_counts(l, counts, k), QN_OK);
    dc_sum = (float *)calloc(k * bs, sizeof(float));
    dc_mean = (float *)calloc(k * bs, sizeof(float));
    if (fc->kind != 3) {
        dx = (float *)malloc(batch * inps * sizeof(float));
        dx_ref = (float *)malloc(batch * inps * sizeof(float));
        db = (float *)calloc(bn, sizeof(float));
        dbias_ref = (float *)calloc(bn, sizeof(float));
    }
    /* L = sum(y * r): dL/dy = r */
    ck_assert_int_eq(qn_layer_set_centroid_grad(l, QN_CENTROID_GRAD_SUM), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, 1), QN_OK);
    ck_assert_int_eq(qn_layer_backward(l, batch, x, r, dx, dc_sum, db, 1), QN_OK);
    ck_assert_int_eq(qn_layer_set_centroid_grad(l, QN_CENTROID_GRAD_MEAN), QN_OK);
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
    ck_assert_int_eq(qn_layer_backward(l, batch, x, r, NULL, dc_mean, NULL, 1), QN_OK);
    /* dx and db against the dense layer on the rebuilt weight */
    what = rebuild(l, fc->kind == 3 ? 6 : bn, wn / (fc->kind == 3 ? 6 : bn));
    dw_dense = (float *)calloc(wn, sizeof(float));
    ck_assert_int_eq(qn_layer_bind(dense, what, bias), QN_OK);
    ck_assert_int_eq(qn_layer_backward(dense, batch, x, r, dx_ref, dw_dense, dbias_ref, 0), QN_OK);
    if (dx)
        for (i = 0; i < batch * inps; i++)
            ck_assert_float_eq_tol(dx[i], dx_ref[i], 1e-4f);
    for (i = 0; i < bn; i++)
        ck_assert_float_eq_tol(db[i], dbias_ref[i], 1e-4f);
    /* central differences on every centroid coordinate: L is linear in C, so eps may be large */
    for (i = 0; i < k; i++) {
        for (t = 0; t < bs; t++) {
            float save = c[i * bs + t];
            double lp, lm, fd;
            c[i * bs + t] = save + 0.25f;
            ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
            lp = dot_d(y, r, batch * outps);
            c[i * bs + t] = save - 0.25f;
            ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
            lm = dot_d(y, r, batch * outps);
            c[i * bs + t] = save;
            fd = (lp - lm) / 0.5;
            ck_assert_msg(fabs(fd - dc_sum[i * bs + t]) <= 1e-3 * (1.0 + fabs(fd)), "case %d c[%zu][%zu]: fd %g bwd %g",
                          _i, i, t, fd, (double)dc_sum[i * bs + t]);
            if (counts[i])
                ck_assert_msg(fabs(fd / counts[i] - dc_mean[i * bs + t]) <= 1e-3 * (1.0 + fabs(fd)),
                              "mean case %d c[%zu][%zu]", _i, i, t);
            else
                ck_assert_float_eq(dc_mean[i * bs + t], 0.0f);
        }
    }
    qn_layer_destroy(l);
    qn_layer_destroy(dense);
    qn_context_destroy(ctx);
    free(w), free(bias), free(r), free(y), free(counts), free(dc_sum), free(dc_mean), free(dx), free(dx_ref), free(db),
        free(dbias_ref), free(what), free(dw_dense);
    if (fc->kind != 3)
        free(x);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */

START_TEST(set_pq_and_bad_input)
{
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL;
    float w[4 * 8], c[3 * 4], *cp = NULL, out[32];
    uint16_t codes[8] = {0, 1, 2, 0, 1, 2, 0, 1}, got[8];
    size_t i;
    int cq = -1;
    for (i = 0; i < 32; i++)
        w[i] = (float)i * 0.1f - 1.0f;
    for (i = 0; i < 12; i++)
        c[i] = (float)i;
    ck_assert_int_eq(qn_layer_create_linear(ctx, 8, 4, &l), QN_OK);
    /* not bound */
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 2, 5, 0), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_compress_pq(l, 3, 2, 5, 0), QN_ERR_INVALID_ARG); /* 3 does not divide 8 */
    ck_assert_int_eq(qn_layer_compress_pq(l, 0, 2, 5, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 1, 5, 0), QN_ERR_INVALID_ARG); /* K < 2 */
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 9, 5, 0), QN_ERR_INVALID_ARG); /* K > 8 blocks */
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 2, 0, 0), QN_ERR_INVALID_ARG); /* 0 iterations */
    ck_assert_int_eq(qn_layer_compress_pq(NULL, 4, 2, 5, 0), QN_ERR_INVALID_ARG);
    w[5] = NAN;
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 2, 5, 0), QN_ERR_INVALID_ARG); /* non-finite weight */
    w[5] = 0.0f;
    ck_assert_int_eq(qn_layer_is_compressed(l, &cq), QN_OK);
    ck_assert_int_eq(cq, 0);
    ck_assert_int_eq(qn_layer_set_pq(l, 4, 3, NULL, codes), QN_ERR_INVALID_ARG);
    codes[7] = 3;
    ck_assert_int_eq(qn_layer_set_pq(l, 4, 3, c, codes), QN_ERR_INVALID_ARG); /* code >= K */
    codes[7] = 1;
    c[2] = INFINITY;
    ck_assert_int_eq(qn_layer_set_pq(l, 4, 3, c, codes), QN_ERR_INVALID_ARG);
    c[2] = 2.0f;
    ck_assert_int_eq(qn_layer_is_compressed(l, &cq), QN_OK);
    ck_assert_int_eq(cq, 0);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &cp), QN_ERR_NOT_TRAINED);
    ck_assert_ptr_null(cp);
    ck_assert_int_eq(qn_layer_set_pq(l, 4, 3, c, codes), QN_OK);
    ck_assert_int_eq(qn_layer_decode_weight(l, out, 32), QN_OK);
    for (i = 0; i < 32; i++)
        ck_assert_float_eq(out[i], c[codes[i / 4] * 4 + i % 4]);
    /* a failed recompression leaves the previous one */
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 9, 5, 0), QN_ERR_INVALID_ARG);
    memset(got, 0xff, sizeof got);
    ck_assert_int_eq(qn_layer_get_pq_codes(l, got, 7), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_uint_eq(got[0], 0xffff);
    ck_assert_int_eq(qn_layer_get_pq_codes(l, got, 8), QN_OK);
    ck_assert_mem_eq(got, codes, sizeof codes);
    ck_assert_int_eq(qn_layer_decode_weight(l, out, 31), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(qn_layer_set_centroid_grad(l, (qn_centroid_grad)7), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_get_pq_codebook_int8(l, (int8_t *)got, 12, (float *)out, (int32_t *)out),
                     QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_pq_codebook_int8(l, (qn_qscheme)5, NULL), QN_ERR_INVALID_ARG);
    qn_layer_destroy(l);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(error_report_by_hand)
{
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL;
    /* 2 x 4 weight, bs 2: blocks (1,2) (3,4) (0,0) (1,0); centroids (1,2) (1,1) */
    float w[8] = {1, 2, 3, 4, 0, 0, 1, 0}, c[4] = {1, 2, 1, 1};
    uint16_t codes[4] = {0, 0, 1, 1};
    double rel = -1, snr = -1;
    /* errors: (0,0) (2,2) (-1,-1) (0,-1): 0 + 8 + 2 + 1 = 11; ||W||^2 = 1+4+9+16+1 = 31 */
    ck_assert_int_eq(qn_layer_create_linear(ctx, 4, 2, &l), QN_OK);
    ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_pq_error(l, &rel, &snr), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_set_pq(l, 2, 2, c, codes), QN_OK);
    ck_assert_int_eq(qn_layer_pq_error(l, &rel, &snr), QN_OK);
    ck_assert_double_eq_tol(rel, 11.0 / 31.0, 1e-12);
    ck_assert_double_eq_tol(snr, -10.0 * log10(11.0 / 31.0), 1e-9);
    qn_layer_destroy(l);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(int8_codebook)
{
    qn_qscheme scheme = _i ? QN_QSCHEME_AFFINE : QN_QSCHEME_SYMMETRIC;
    uint64_t st = 77;
    size_t in = 32, out = 16, bs = 8, k = 32, i, n = k * bs;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL;
    float *w = rand_vec(&st, in * out), *c = NULL, *before = (float *)malloc(n * sizeof(float)), scale = 0.0f;
    int8_t *v = (int8_t *)malloc(n);
    int32_t zp = 99;
    double mse = -1.0, err = 0.0, lo = 0.0, hi = 0.0;
    for (i = 0; i < in * out; i++)
        w[i] = w[i] * 3.0f + 0.5f; /* an asymmetric range */
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &l), QN_OK);
    ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_compress_pq(l, bs, k, 8, 3), QN_OK);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &c), QN_OK);
    memcpy(before, c, n * sizeof(float));
    for (i = 0; i < n; i++) {
        lo = fmin(lo, before[i]);
        hi = fmax(hi, before[i]);
    }
    ck_assert_int_eq(qn_layer_pq_codebook_int8(l, scheme, &mse), QN_OK);
    ck_assert_int_eq(qn_layer_get_pq_codebook_int8(l, v, n, &scale, &zp), QN_OK);
    ck_assert(scale > 0.0f);
    if (scheme == QN_QSCHEME_SYMMETRIC) {
        ck_assert_int_eq(zp, 0);
        ck_assert_float_eq_tol(scale, (float)(fmax(-lo, hi) / 127.0), 1e-6f * scale + 1e-9f);
    } else {
        ck_assert_float_eq_tol(scale, (float)((hi - lo) / 255.0), 1e-6f * scale + 1e-9f);
        ck_assert(zp >= -128 && zp <= 127);
    }
    for (i = 0; i < n; i++) {
        double e;
        if (scheme == QN_QSCHEME_SYMMETRIC)
            ck_assert_int_ge(v[i], -127);
        /* the layer's centroid is exactly the int8 value decoded */
        ck_assert_float_eq(c[i], ((float)v[i] - (float)zp) * scale);
        e = (double)before[i] - (double)c[i];
        ck_assert_msg(fabs(e) <= 0.5 * scale * (1.0 + 1e-5), "coordinate %zu error %g scale %g", i, e, (double)scale);
        err += e * e;
    }
    ck_assert_double_eq_tol(mse, err / (double)n, 1e-12 + 1e-6 * err / (double)n);
    ck_assert(mse <= (double)scale * scale / 4.0);
    qn_layer_destroy(l);
    qn_context_destroy(ctx);
    free(w), free(before), free(v);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* iPQ schedule                                                                                */

typedef struct model3 {
    qn_layer *fc, *emb, *fc2;
    float *w1, *b1, *w2, *w3, *b3;
} model3;

static void model3_init(qn_context *ctx, model3 *m, uint64_t seed)
{
    uint64_t st = seed;
    ck_assert_int_eq(qn_layer_create_linear(ctx, 32, 64, &m->fc), QN_OK);    /* 2048 weights + 64 bias */
    ck_assert_int_eq(qn_layer_create_embedding(ctx, 100, 16, &m->emb), QN_OK); /* 1600 weights */
    ck_assert_int_eq(qn_layer_create_linear(ctx, 64, 10, &m->fc2), QN_OK);   /* 640 weights + 10 bias */
    m->w1 = rand_vec(&st, 2048);
    m->b1 = rand_vec(&st, 64);
    m->w2 = rand_vec(&st, 1600);
    m->w3 = rand_vec(&st, 640);
    m->b3 = rand_vec(&st, 10);
    ck_assert_int_eq(qn_layer_bind(m->fc, m->w1, m->b1), QN_OK);
    ck_assert_int_eq(qn_layer_bind(m->emb, m->w2, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(m->fc2, m->w3, m->b3), QN_OK);
}

static void model3_free(model3 *m)
{
    qn_layer_destroy(m->fc);
    qn_layer_destroy(m->emb);
    qn_layer_destroy(m->fc2);
    free(m->w1), free(m->b1), free(m->w2), free(m->w3), free(m->b3);
}

static int is_cq(qn_layer *l)
{
    int c = -1;
    ck_assert_int_eq(qn_layer_is_compressed(l, &c), QN_OK);
    return c;
}

static double size_of(const qn_ipq *q, qn_size_item it)
{
    double b = -1.0;
    ck_assert_int_eq(qn_ipq_get_size(q, it, &b), QN_OK);
    return b;
}

START_TEST(ipq_stages_and_sizes)
{
    qn_context *ctx = ctx_new();
    qn_ipq *q = NULL;
    model3 m;
    unsigned ns = 9, nd = 9, stage = 99;
    size_t len = 0, n = 0;
    char *text;
    double max_mse = -1.0, bytes = 0, rel = 0, snr = 0;
    int cq = -1;
    model3_init(ctx, &m, 5);
    ck_assert_int_eq(qn_ipq_create(ctx, &q), QN_OK);
    /* fc: bs 8, K 16 at stage 3; emb: bs 4, K 24 at stage 7; fc2 stays dense (counted as extra params) */
    ck_assert_int_eq(qn_ipq_add_layer(q, m.emb, "emb", 7, 4, 24), QN_OK);
    ck_assert_int_eq(qn_ipq_add_layer(q, m.fc, "fc", 3, 8, 16), QN_OK);
    ck_assert_int_eq(qn_ipq_add_layer(q, m.fc, "again", 4, 8, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_ipq_add_layer(q, m.fc2, "bad", 4, 3, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_ipq_add_layer(q, m.fc2, "bad", 4, 8, 81), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_ipq_add_params(q, 650), QN_OK);
    ck_assert_int_eq(qn_ipq_num_layers(q, &n), QN_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(qn_ipq_get_stages(q, &ns, &nd), QN_OK);
    ck_assert_uint_eq(ns, 2);
    ck_assert_uint_eq(nd, 0);
    /* baseline: (2048 + 64 + 1600 + 650) * 4 */
    ck_assert_double_eq(size_of(q, QN_SIZE_BASELINE), 4362.0 * 4.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_TOTAL), 4362.0 * 4.0);
    ck_assert_int_eq(qn_ipq_advance(q, &stage), QN_OK);
    ck_assert_uint_eq(stage, 3);
    ck_assert_int_eq(is_cq(m.fc), 1);
    ck_assert_int_eq(is_cq(m.emb), 0);
    ck_assert_int_eq(qn_ipq_get_stages(q, &ns, &nd), QN_OK);
    ck_assert_uint_eq(nd, 1);
    ck_assert_int_eq(qn_ipq_add_layer(q, m.fc2, "late", 2, 8, 16), QN_ERR_INVALID_ARG); /* stage already past */
    /* fc: 256 blocks, 4-bit codes: 128 bytes every way; centroids fp16 16*8*2 = 256 */
    ck_assert_double_eq(size_of(q, QN_SIZE_CODES), 128.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CODES_PACKED), 128.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CODES_ALIGNED), 128.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS_FP16), 256.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS), 256.0);
    /* other: fc bias 64 + emb 1600 + extras 650, at 4 bytes */
    ck_assert_double_eq(size_of(q, QN_SIZE_OTHER), 2314.0 * 4.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_TOTAL), 128.0 + 256.0 + 9256.0);
    ck_assert_int_eq(qn_ipq_advance(q, &stage), QN_OK);
    ck_assert_uint_eq(stage, 7);
    ck_assert_int_eq(is_cq(m.emb), 1);
    ck_assert_int_eq(qn_ipq_advance(q, &stage), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(stage, 7);
    /* emb: 400 blocks, K = 24: fairseq 1600 * log2(24) / 4 / 8; packed 400 * 5 bits = 250; 8-bit 400 */
    ck_assert_double_eq_tol(size_of(q, QN_SIZE_CODES), 128.0 + 1600.0 * log2(24.0) / 32.0, 1e-9);
    ck_assert_double_eq(size_of(q, QN_SIZE_CODES_PACKED), 128.0 + 250.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CODES_ALIGNED), 128.0 + 400.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS), 256.0 + 192.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_OTHER), (64.0 + 650.0) * 4.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_TOTAL_PACKED), 378.0 + 448.0 + 2856.0);
    ck_assert_int_eq(qn_ipq_set_codebook_precision(q, QN_CODEBOOK_FP32), QN_OK);
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS), 896.0);
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS_FP16), 448.0);
    ck_assert_int_eq(qn_ipq_set_codebook_precision(q, QN_CODEBOOK_INT8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_ipq_codebooks_int8(q, QN_QSCHEME_SYMMETRIC, &max_mse), QN_OK);
    ck_assert(max_mse > 0.0);
    /* int8: 128 + 8 and 96 + 8 */
    ck_assert_double_eq(size_of(q, QN_SIZE_CENTROIDS), 240.0);
    ck_assert_int_eq(qn_ipq_layer_report(q, 1, &cq, &bytes, &rel, &snr), QN_OK);
    ck_assert_int_eq(cq, 1);
    ck_assert_double_eq(bytes, 128.0 + 136.0);
    ck_assert(rel > 0.0 && rel < 1.0);
    ck_assert_double_eq_tol(snr, -10.0 * log10(rel), 1e-9);
    ck_assert_int_eq(qn_ipq_layer_report(q, 2, &cq, &bytes, &rel, &snr), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_ipq_get_size(q, (qn_size_item)42, &bytes), QN_ERR_INVALID_ARG);
    /* the report */
    ck_assert_int_eq(qn_ipq_report(q, NULL, 0, &len), QN_OK);
    ck_assert_uint_gt(len, 100);
    text = (char *)malloc(len + 1);
    memset(text, 'x', len + 1);
    ck_assert_int_eq(qn_ipq_report(q, text, len, &n), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(text[0], 'x');
    ck_assert_int_eq(qn_ipq_report(q, text, len + 1, &n), QN_OK);
    ck_assert_uint_eq(n, len);
    ck_assert_uint_eq(strlen(text), len);
    ck_assert_ptr_nonnull(strstr(text, "emb"));
    ck_assert_ptr_nonnull(strstr(text, "fc"));
    ck_assert_ptr_nonnull(strstr(text, "compression ratio"));
    free(text);
    qn_ipq_destroy(q);
    model3_free(&m);
    qn_context_destroy(ctx);
}
END_TEST

static int cancel_at(void *user, const char *what, uint64_t done, uint64_t total)
{
    int *left = (int *)user;
    (void)what, (void)done, (void)total;
    return --*left < 0;
}

START_TEST(ipq_all_or_nothing)
{
    model3 m;
    int cancel = 0, tries;
    unsigned nd = 9;
    qn_context *ctx = NULL;
    qn_ipq *q = NULL;
    /* cancel after 1, 2, ... progress calls: either the whole stage or nothing */
    for (tries = 1; tries < 200; tries++) {
        int done;
        ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, cancel_at, &cancel, QN_ISA_AVX512, &ctx), QN_OK);
        model3_init(ctx, &m, 9);
        ck_assert_int_eq(qn_ipq_create(ctx, &q), QN_OK);
        ck_assert_int_eq(qn_ipq_add_layer(q, m.fc, NULL, 0, 8, 16), QN_OK);
        ck_assert_int_eq(qn_ipq_add_layer(q, m.emb, NULL, 0, 4, 16), QN_OK);
        ck_assert_int_eq(qn_ipq_set_iterations(q, 4), QN_OK);
        cancel = tries;
        {
            qn_status s = qn_ipq_advance(q, NULL);
            ck_assert(s == QN_OK || s == QN_ERR_CANCELLED);
            done = s == QN_OK;
        }
        ck_assert_int_eq(is_cq(m.fc), done);
        ck_assert_int_eq(is_cq(m.emb), done);
        ck_assert_int_eq(qn_ipq_get_stages(q, NULL, &nd), QN_OK);
        ck_assert_uint_eq(nd, (unsigned)done);
        qn_ipq_destroy(q);
        model3_free(&m);
        qn_context_destroy(ctx);
        if (done)
            break;
    }
    ck_assert_int_lt(tries, 200);
}
END_TEST

START_TEST(ipq_allocation_failures)
{
    int n;
    for (n = 1; n < 400; n++) {
        counting_alloc a = {0, 0, 0, 0};
        qn_context *ctx = NULL;
        qn_ipq *q = NULL;
        model3 m;
        qn_status s;
        ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx), QN_OK);
        model3_init(ctx, &m, 3);
        a.fail_from = a.allocs + n;
        s = qn_ipq_create(ctx, &q);
        if (s == QN_OK)
            s = qn_ipq_add_layer(q, m.fc, "fc", 0, 8, 16);
        if (s == QN_OK)
            s = qn_ipq_add_layer(q, m.emb, "emb", 0, 4, 16);
        if (s == QN_OK)
            s = qn_ipq_advance(q, NULL);
        if (s != QN_OK) {
            ck_assert_int_eq(s, QN_ERR_OUT_OF_MEMORY);
            ck_assert_int_eq(is_cq(m.fc), 0);
            ck_assert_int_eq(is_cq(m.emb), 0);
        }
        a.fail_from = 0;
        qn_ipq_destroy(q);
        model3_free(&m);
        qn_context_destroy(ctx);
        ck_assert_int_eq(a.allocs, a.frees);
        if (s == QN_OK)
            return;
    }
    ck_abort_msg("never succeeded");
}
END_TEST

/* Fine-tuning the centroids of a compressed linear layer by SGD lowers a regression loss. */
START_TEST(finetune_centroids_lowers_loss)
{
    uint64_t st = 2024;
    size_t in = 16, out = 8, batch = 64, i, steps, kk;
    qn_context *ctx = ctx_new();
    qn_layer *l = NULL;
    float *w = rand_vec(&st, in * out), *wt = rand_vec(&st, in * out), *x = rand_vec(&st, batch * in);
    float *target = (float *)malloc(batch * out * sizeof(float)), *y = (float *)malloc(batch * out * sizeof(float));
    float *dy = (float *)malloc(batch * out * sizeof(float)), *c = NULL, *dc;
    double loss0 = 0.0, loss = 0.0;
    size_t o, j, n;
    /* targets from another weight, so the compressed layer starts far off */
    for (n = 0; n < batch; n++)
        for (o = 0; o < out; o++) {
            double s = 0.0;
            for (j = 0; j < in; j++)
                s += (double)x[n * in + j] * (double)wt[o * in + j];
            target[n * out + o] = (float)s;
        }
    ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &l), QN_OK);
    ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_compress_pq(l, 4, 8, 10, 0), QN_OK);
    ck_assert_int_eq(qn_layer_pq_centroids(l, &c), QN_OK);
    dc = (float *)malloc(8 * 4 * sizeof(float));
    for (steps = 0; steps < 200; steps++) {
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, steps), QN_OK);
        loss = 0.0;
        for (i = 0; i < batch * out; i++) {
            double e = (double)y[i] - (double)target[i];
            loss += e * e / (double)batch;
            dy[i] = (float)(2.0 * e / (double)batch);
        }
        if (steps == 0)
            loss0 = loss;
        memset(dc, 0, 8 * 4 * sizeof(float));
        ck_assert_int_eq(qn_layer_backward(l, batch, x, dy, NULL, dc, NULL, steps), QN_OK);
        for (kk = 0; kk < 32; kk++)
            c[kk] -= 0.05f * dc[kk];
    }
    ck_assert_msg(loss < 0.8 * loss0, "loss %g -> %g", loss0, loss);
    qn_layer_destroy(l);
    qn_context_destroy(ctx);
    free(w), free(wt), free(x), free(target), free(y), free(dy), free(dc);
}
END_TEST

static Suite *ipq_suite(void)
{
    Suite *s = suite_create("ipq");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, compress_linear_codes_and_forward);
    tcase_add_loop_test(tc, centroid_grad_finite_differences, 0, (int)(sizeof fd_cases / sizeof fd_cases[0]));
    tcase_add_test(tc, set_pq_and_bad_input);
    tcase_add_test(tc, error_report_by_hand);
    tcase_add_loop_test(tc, int8_codebook, 0, 2);
    tcase_add_test(tc, ipq_stages_and_sizes);
    tcase_add_test(tc, ipq_all_or_nothing);
    tcase_add_test(tc, ipq_allocation_failures);
    tcase_add_test(tc, finetune_centroids_lowers_loss);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(ipq_suite());
}
