/*
 * Allocation-failure sweep over the public entry points that allocate.
 *
 * For each scenario the set-up runs with a working allocator; then the
 * allocator fails allocation n of the call under test (and every later one),
 * for n = 1, 2, ... until the call succeeds. Every failing run must return
 * QN_ERR_OUT_OF_MEMORY, leave the caller's outputs untouched (sentinel
 * buffers compared byte for byte; objects keep their previous state), and,
 * after everything is destroyed, leak nothing (allocations == frees). The
 * number of allocation sites each call went through is printed, so
 * docs/reliability.md can quote it.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

#define SENT 0x5a

typedef struct fixture {
    counting_alloc a;
    qn_context *ctx;
    uint64_t rng;
    char dir[128];
} fixture;

static float *vec(fixture *f, size_t n)
{
    float *v = (float *)malloc(n * sizeof(float) + 4);
    size_t i;
    ck_assert_ptr_nonnull(v);
    for (i = 0; i < n; i++)
        v[i] = qn_test_uniform(&f->rng);
    return v;
}

static void *sentinel(size_t bytes)
{
    void *p = malloc(bytes + 1);
    ck_assert_ptr_nonnull(p);
    memset(p, SENT, bytes);
    return p;
}

static int untouched(const void *p, size_t bytes)
{
    const unsigned char *c = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < bytes; i++)
        if (c[i] != SENT)
            return 0;
    return 1;
}

/* Arm the allocator: allocation number n from now on fails. */
static void arm(fixture *f, int n)
{
    f->a.fail_from = f->a.allocs + n;
}

static void disarm(fixture *f)
{
    f->a.fail_from = 0;
}

enum {
    S_LINEAR_PROXY_FWD, S_LINEAR_PROXY_BWD, S_LINEAR_SCALAR_HIST_FWD, S_LINEAR_PQ_FWD, S_CONV_PROXY_FWD,
    S_CONV_PROXY_BWD, S_EMB_SCALAR_FWD, S_COMPRESS_PQ, S_COMPRESSED_BWD, S_CODEBOOK_INT8, S_PQ_CREATE, S_PQ_TRAIN,
    S_PQ_ASSIGN, S_PQ_PARTIAL, S_SCALAR_CREATE, S_SCALAR_OBSERVE_HIST, S_SCALAR_QUANTIZE, S_IPQ_CREATE, S_IPQ_ADD,
    S_IPQ_ADVANCE, S_IPQ_REPORT, S_QT_FROM_PQ, S_QT_FROM_SCALAR_HIST, S_QT_FROM_PQ_CODES, S_QT_FROM_LAYER, S_QT_ERROR,
    S_QT_INT8, S_MODEL_CREATE, S_MODEL_ADD_DENSE, S_MODEL_ADD_QT, S_MODEL_SAVE_GGUF, S_MODEL_LOAD_GGUF,
    S_MODEL_SAVE_ST, S_MODEL_LOAD_ST, S_BIND_COMPRESSED, S_BOUND_FORWARD, S_NEAREST, S_COUNT
};

static const char *const names[S_COUNT] = {
    "layer linear proxy forward_noisy", "layer linear proxy backward", "layer linear scalar(histogram) forward_noisy",
    "layer linear PQ-noise forward_noisy", "layer conv2d proxy forward_noisy", "layer conv2d proxy backward",
    "layer embedding scalar forward_noisy", "qn_layer_compress_pq", "compressed layer backward",
    "qn_layer_pq_codebook_int8", "qn_pq_create", "qn_pq_train", "qn_pq_assign", "qn_pq_partial_sums",
    "qn_scalar_create", "qn_scalar_observe (histogram)", "qn_scalar_quantize", "qn_ipq_create", "qn_ipq_add_layer",
    "qn_ipq_advance", "qn_ipq_report", "qn_qtensor_from_pq", "qn_qtensor_from_scalar_ex (histogram)",
    "qn_qtensor_from_pq_codes", "qn_qtensor_from_layer", "qn_qtensor_error", "qn_qtensor_set_codebook_precision",
    "qn_model_create", "qn_model_add_dense", "qn_model_add_qtensor", "qn_model_save_gguf", "qn_model_load_gguf",
    "qn_model_save_safetensors", "qn_model_load_safetensors", "qn_layer_bind_compressed",
    "qn_layer_forward (bound compressed)", "qn_nearest_l2",
};

static int is_cq(qn_layer *l)
{
    int c = -1;
    ck_assert_int_eq(qn_layer_is_compressed(l, &c), QN_OK);
    return c;
}

/* Write a small model (one dense, one PQ tensor) to dir/name with the working allocator. */
static void write_model(fixture *f, const char *path, int gguf)
{
    qn_model *m = NULL;
    qn_qtensor *qt = NULL;
    float *w = vec(f, 16 * 8);
    size_t shp[1] = {16};
    ck_assert_int_eq(qn_model_create(f->ctx, &m), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "bias", 1, shp, w), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_pq(f->ctx, w, 16, 8, 4, 4, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "weight", qt), QN_OK);
    ck_assert_int_eq(gguf ? qn_model_save_gguf(m, path) : qn_model_save_safetensors(m, path, 0), QN_OK);
    qn_model_destroy(m);
    free(w);
}

/* One run of scenario s with allocation n of the call failing; returns the call's status. */
static qn_status run(fixture *f, int s, int n)
{
    qn_status st = QN_OK;
    qn_layer *l = NULL;
    float *w = NULL, *x = NULL, *y = NULL, *dy = NULL, *dx = NULL, *dw = NULL;
    char path[256];
    switch (s) {
    case S_LINEAR_PROXY_FWD:
    case S_LINEAR_PROXY_BWD:
    case S_LINEAR_SCALAR_HIST_FWD:
    case S_LINEAR_PQ_FWD:
    case S_COMPRESS_PQ:
    case S_COMPRESSED_BWD:
    case S_CODEBOOK_INT8: {
        w = vec(f, 16 * 12);
        x = vec(f, 3 * 12);
        dy = vec(f, 3 * 16);
        y = (float *)sentinel(3 * 16 * sizeof(float));
        dx = (float *)sentinel(3 * 12 * sizeof(float));
        dw = (float *)sentinel(16 * 12 * sizeof(float));
        ck_assert_int_eq(qn_layer_create_linear(f->ctx, 12, 16, &l), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
        if (s == S_LINEAR_PROXY_FWD || s == S_LINEAR_PROXY_BWD)
            ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.3f, 4), QN_OK);
        if (s == S_LINEAR_SCALAR_HIST_FWD) {
            ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_SCALAR, 0.5f, 4), QN_OK);
            ck_assert_int_eq(qn_layer_set_scalar_noise(l, 4, QN_OBSERVER_HISTOGRAM, QN_QSCHEME_AFFINE, 10), QN_OK);
        }
        if (s == S_LINEAR_PQ_FWD) {
            ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, 4), QN_OK);
            ck_assert_int_eq(qn_layer_set_pq_noise(l, 8, 3, 10), QN_OK);
        }
        if (s == S_COMPRESSED_BWD || s == S_CODEBOOK_INT8)
            ck_assert_int_eq(qn_layer_compress_pq(l, 4, 8, 3, 1), QN_OK);
        arm(f, n);
        if (s == S_LINEAR_PROXY_BWD || s == S_COMPRESSED_BWD)
            st = qn_layer_backward(l, 3, x, dy, dx, dw, NULL, 1);
        else if (s == S_COMPRESS_PQ)
            st = qn_layer_compress_pq(l, 4, 8, 3, 1);
        else if (s == S_CODEBOOK_INT8)
            st = qn_layer_pq_codebook_int8(l, QN_QSCHEME_AFFINE, NULL);
        else
            st = qn_layer_forward_noisy(l, 3, x, y, 1);
        disarm(f);
        if (st != QN_OK) {
            ck_assert(untouched(y, 3 * 16 * sizeof(float)));
            ck_assert(untouched(dx, 3 * 12 * sizeof(float)));
            ck_assert(untouched(dw, 16 * 12 * sizeof(float)));
            if (s == S_COMPRESS_PQ)
                ck_assert_int_eq(is_cq(l), 0);
        }
        break;
    }
    case S_CONV_PROXY_FWD:
    case S_CONV_PROXY_BWD:
        w = vec(f, 4 * 2 * 9);
        x = vec(f, 2 * 2 * 5 * 5);
        dy = vec(f, 2 * 4 * 5 * 5);
        y = (float *)sentinel(2 * 4 * 25 * sizeof(float));
        dx = (float *)sentinel(2 * 2 * 25 * sizeof(float));
        dw = (float *)sentinel(4 * 2 * 9 * sizeof(float));
        ck_assert_int_eq(qn_layer_create_conv2d(f->ctx, 2, 4, 3, 3, 1, 1, 1, 1, &l), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 5, 5), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.3f, 9), QN_OK);
        arm(f, n);
        st = s == S_CONV_PROXY_FWD ? qn_layer_forward_noisy(l, 2, x, y, 4) : qn_layer_backward(l, 2, x, dy, dx, dw, NULL, 4);
        disarm(f);
        if (st != QN_OK) {
            ck_assert(untouched(y, 2 * 4 * 25 * sizeof(float)));
            ck_assert(untouched(dx, 2 * 2 * 25 * sizeof(float)));
            ck_assert(untouched(dw, 4 * 2 * 9 * sizeof(float)));
        }
        break;
    case S_EMB_SCALAR_FWD: {
        int64_t idx[3] = {0, 5, 9};
        w = vec(f, 10 * 8);
        y = (float *)sentinel(3 * 8 * sizeof(float));
        ck_assert_int_eq(qn_layer_create_embedding(f->ctx, 10, 8, &l), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_SCALAR, 0.5f, 4), QN_OK);
        arm(f, n);
        st = qn_layer_forward_noisy(l, 3, idx, y, 2);
        disarm(f);
        if (st != QN_OK)
            ck_assert(untouched(y, 3 * 8 * sizeof(float)));
        break;
    }
    case S_PQ_CREATE:
    case S_PQ_TRAIN:
    case S_PQ_ASSIGN:
    case S_PQ_PARTIAL: {
        qn_pq *pq = (qn_pq *)&st;
        uint16_t *codes = (uint16_t *)sentinel(64 * 2);
        double *sums = (double *)sentinel(8 * 4 * sizeof(double));
        uint64_t *counts = (uint64_t *)sentinel(8 * sizeof(uint64_t));
        float cb[32];
        w = vec(f, 64 * 4);
        if (s == S_PQ_CREATE) {
            arm(f, n);
            st = qn_pq_create(f->ctx, 4, 8, &pq);
            disarm(f);
            if (st != QN_OK)
                ck_assert_ptr_null(pq);
        } else {
            ck_assert_int_eq(qn_pq_create(f->ctx, 4, 8, &pq), QN_OK);
            if (s != S_PQ_TRAIN)
                ck_assert_int_eq(qn_pq_train(pq, w, 64), QN_OK);
            arm(f, n);
            if (s == S_PQ_TRAIN)
                st = qn_pq_train(pq, w, 64);
            else if (s == S_PQ_ASSIGN)
                st = qn_pq_assign(pq, w, 64, codes);
            else
                st = qn_pq_partial_sums(pq, w, 64, sums, counts, NULL);
            disarm(f);
            if (st != QN_OK) {
                ck_assert(untouched(codes, 64 * 2));
                ck_assert(untouched(sums, 8 * 4 * sizeof(double)));
                ck_assert(untouched(counts, 8 * sizeof(uint64_t)));
                if (s == S_PQ_TRAIN)
                    ck_assert_int_eq(qn_pq_get_centroids(pq, cb), QN_ERR_NOT_TRAINED);
            }
        }
        if (pq != (qn_pq *)&st)
            qn_pq_destroy(pq);
        free(codes), free(sums), free(counts);
        break;
    }
    case S_SCALAR_CREATE:
    case S_SCALAR_OBSERVE_HIST:
    case S_SCALAR_QUANTIZE: {
        qn_scalar_quantizer *q = NULL;
        size_t bytes = 0;
        uint8_t *codes;
        w = vec(f, 8 * 16);
        if (s == S_SCALAR_CREATE) {
            arm(f, n);
            st = qn_scalar_create(f->ctx, 4, QN_QSCHEME_AFFINE, QN_OBSERVER_HISTOGRAM, &q);
            disarm(f);
            if (st != QN_OK)
                ck_assert_ptr_null(q);
            qn_scalar_destroy(q);
            break;
        }
        ck_assert_int_eq(qn_scalar_create(f->ctx, 4, QN_QSCHEME_AFFINE, QN_OBSERVER_HISTOGRAM, &q), QN_OK);
        if (s == S_SCALAR_QUANTIZE)
            ck_assert_int_eq(qn_scalar_observe(q, w, 8, 16), QN_OK);
        ck_assert_int_eq(qn_scalar_packed_size(q, 8, 16, &bytes) == QN_OK || s == S_SCALAR_OBSERVE_HIST, 1);
        codes = (uint8_t *)sentinel(bytes + 64);
        arm(f, n);
        st = s == S_SCALAR_OBSERVE_HIST ? qn_scalar_observe(q, w, 8, 16) : qn_scalar_quantize(q, w, 8, 16, codes, bytes);
        disarm(f);
        if (st != QN_OK)
            ck_assert(untouched(codes, bytes + 64));
        free(codes);
        qn_scalar_destroy(q);
        break;
    }
    case S_IPQ_CREATE:
    case S_IPQ_ADD:
    case S_IPQ_ADVANCE:
    case S_IPQ_REPORT: {
        qn_ipq *q = NULL;
        qn_layer *l2 = NULL;
        size_t len = 0;
        char *text = (char *)sentinel(4096);
        w = vec(f, 16 * 12);
        x = vec(f, 20 * 8);
        ck_assert_int_eq(qn_layer_create_linear(f->ctx, 12, 16, &l), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_create_embedding(f->ctx, 20, 8, &l2), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l2, x, NULL), QN_OK);
        if (s == S_IPQ_CREATE) {
            arm(f, n);
            st = qn_ipq_create(f->ctx, &q);
            disarm(f);
        } else {
            ck_assert_int_eq(qn_ipq_create(f->ctx, &q), QN_OK);
            if (s != S_IPQ_ADD) {
                ck_assert_int_eq(qn_ipq_add_layer(q, l, "fc", 0, 4, 8), QN_OK);
                ck_assert_int_eq(qn_ipq_add_layer(q, l2, "emb", 0, 4, 8), QN_OK);
            }
            if (s == S_IPQ_REPORT)
                ck_assert_int_eq(qn_ipq_advance(q, NULL), QN_OK);
            arm(f, n);
            if (s == S_IPQ_ADD)
                st = qn_ipq_add_layer(q, l, "fc", 0, 4, 8);
            else if (s == S_IPQ_ADVANCE)
                st = qn_ipq_advance(q, NULL);
            else
                st = qn_ipq_report(q, text, 4096, &len);
            disarm(f);
            if (st != QN_OK) {
                ck_assert(untouched(text, 4096));
                if (s == S_IPQ_ADVANCE) {
                    ck_assert_int_eq(is_cq(l), 0);
                    ck_assert_int_eq(is_cq(l2), 0);
                }
                if (s == S_IPQ_ADD) {
                    size_t nl = 9;
                    ck_assert_int_eq(qn_ipq_num_layers(q, &nl), QN_OK);
                    ck_assert_uint_eq(nl, 0);
                }
            }
        }
        qn_ipq_destroy(q);
        qn_layer_destroy(l2);
        free(text);
        break;
    }
    case S_QT_FROM_PQ:
    case S_QT_FROM_SCALAR_HIST:
    case S_QT_FROM_PQ_CODES:
    case S_QT_FROM_LAYER:
    case S_QT_ERROR:
    case S_QT_INT8: {
        qn_qtensor *qt = (qn_qtensor *)&st, *base = NULL;
        double rel = -1.0;
        uint16_t codes[32];
        float cb[16], before[16], after[16];
        size_t i;
        w = vec(f, 16 * 8);
        for (i = 0; i < 32; i++)
            codes[i] = (uint16_t)(i % 4);
        if (s == S_QT_FROM_LAYER) {
            ck_assert_int_eq(qn_layer_create_linear(f->ctx, 8, 16, &l), QN_OK);
            ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
            ck_assert_int_eq(qn_layer_compress_pq(l, 4, 4, 3, 0), QN_OK);
        }
        if (s == S_QT_ERROR || s == S_QT_INT8) {
            ck_assert_int_eq(qn_qtensor_from_pq(f->ctx, w, 16, 8, 4, 4, 0, &base), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_centroids(base, before, 16), QN_OK);
        }
        arm(f, n);
        switch (s) {
        case S_QT_FROM_PQ:
            st = qn_qtensor_from_pq(f->ctx, w, 16, 8, 4, 4, 0, &qt);
            break;
        case S_QT_FROM_SCALAR_HIST:
            st = qn_qtensor_from_scalar_ex(f->ctx, w, 16, 8, 4, QN_OBSERVER_HISTOGRAM, QN_QSCHEME_AFFINE, &qt);
            break;
        case S_QT_FROM_PQ_CODES:
            for (i = 0; i < 16; i++)
                cb[i] = (float)i;
            st = qn_qtensor_from_pq_codes(f->ctx, 16, 8, 4, 4, cb, codes, &qt);
            break;
        case S_QT_FROM_LAYER:
            st = qn_qtensor_from_layer(l, &qt);
            break;
        case S_QT_ERROR:
            st = qn_qtensor_error(base, w, &rel, NULL, NULL);
            break;
        default:
            st = qn_qtensor_set_codebook_precision(base, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, NULL);
            break;
        }
        disarm(f);
        if (s == S_QT_ERROR || s == S_QT_INT8) {
            if (st != QN_OK) {
                ck_assert(rel == -1.0);
                ck_assert_int_eq(qn_qtensor_get_centroids(base, after, 16), QN_OK);
                ck_assert_mem_eq(before, after, sizeof before);
            }
        } else if (st != QN_OK) {
            ck_assert_ptr_null(qt);
        } else {
            qn_qtensor_destroy(qt);
        }
        qn_qtensor_destroy(base);
        break;
    }
    case S_MODEL_CREATE:
    case S_MODEL_ADD_DENSE:
    case S_MODEL_ADD_QT:
    case S_MODEL_SAVE_GGUF:
    case S_MODEL_LOAD_GGUF:
    case S_MODEL_SAVE_ST:
    case S_MODEL_LOAD_ST: {
        qn_model *m = (qn_model *)&st, *r = NULL;
        qn_qtensor *qt = NULL;
        size_t shp[2] = {16, 8}, cnt = 99;
        int gguf = s == S_MODEL_SAVE_GGUF || s == S_MODEL_LOAD_GGUF;
        w = vec(f, 16 * 8);
        snprintf(path, sizeof path, "%s/m.%s", f->dir, gguf ? "gguf" : "safetensors");
        unlink(path);
        if (s == S_MODEL_LOAD_GGUF || s == S_MODEL_LOAD_ST)
            write_model(f, path, gguf);
        if (s == S_MODEL_CREATE) {
            arm(f, n);
            st = qn_model_create(f->ctx, &m);
            disarm(f);
            if (st != QN_OK)
                ck_assert_ptr_null(m);
            else
                qn_model_destroy(m);
            break;
        }
        if (s == S_MODEL_LOAD_GGUF || s == S_MODEL_LOAD_ST) {
            arm(f, n);
            st = s == S_MODEL_LOAD_GGUF ? qn_model_load_gguf(f->ctx, path, 0, &r) : qn_model_load_safetensors(f->ctx, path, 0, &r);
            disarm(f);
            if (st != QN_OK)
                ck_assert_ptr_null(r);
            qn_model_destroy(r);
            break;
        }
        ck_assert_int_eq(qn_model_create(f->ctx, &m), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_pq(f->ctx, w, 16, 8, 4, 4, 0, &qt), QN_OK);
        if (s == S_MODEL_SAVE_GGUF || s == S_MODEL_SAVE_ST) {
            ck_assert_int_eq(qn_model_add_dense(m, "d", 2, shp, w), QN_OK);
            ck_assert_int_eq(qn_model_add_qtensor(m, "q", qt), QN_OK);
            qt = NULL;
        }
        arm(f, n);
        if (s == S_MODEL_ADD_DENSE)
            st = qn_model_add_dense(m, "d", 2, shp, w);
        else if (s == S_MODEL_ADD_QT)
            st = qn_model_add_qtensor(m, "q", qt);
        else if (s == S_MODEL_SAVE_GGUF)
            st = qn_model_save_gguf(m, path);
        else
            st = qn_model_save_safetensors(m, path, 0);
        disarm(f);
        if (st == QN_OK && s == S_MODEL_ADD_QT)
            qt = NULL; /* owned by the model now */
        if (st != QN_OK) {
            if (s == S_MODEL_ADD_DENSE || s == S_MODEL_ADD_QT) {
                ck_assert_int_eq(qn_model_count(m, &cnt), QN_OK);
                ck_assert_uint_eq(cnt, 0);
            } else {
                ck_assert_int_eq(access(path, F_OK), -1); /* nothing written */
            }
        }
        qn_qtensor_destroy(qt);
        qn_model_destroy(m);
        break;
    }
    case S_BIND_COMPRESSED:
    case S_BOUND_FORWARD: {
        qn_qtensor *qt = NULL;
        w = vec(f, 16 * 8);
        x = vec(f, 3 * 8);
        y = (float *)sentinel(3 * 16 * sizeof(float));
        ck_assert_int_eq(qn_qtensor_from_scalar(f->ctx, w, 16, 8, 8, 1, &qt), QN_OK);
        ck_assert_int_eq(qn_layer_create_linear(f->ctx, 8, 16, &l), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, w, NULL), QN_OK);
        if (s == S_BOUND_FORWARD)
            ck_assert_int_eq(qn_layer_bind_compressed(l, qt, NULL), QN_OK);
        arm(f, n);
        st = s == S_BIND_COMPRESSED ? qn_layer_bind_compressed(l, qt, NULL) : qn_layer_forward(l, 3, x, y);
        disarm(f);
        if (st != QN_OK && s == S_BIND_COMPRESSED) {
            /* still bound to the dense weight: the forward works and equals W x */
            ck_assert_int_eq(qn_layer_forward(l, 3, w, y), QN_OK);
        } else if (st != QN_OK) {
            ck_assert(untouched(y, 3 * 16 * sizeof(float)));
        }
        qn_layer_destroy(l);
        l = NULL;
        qn_qtensor_destroy(qt);
        break;
    }
    case S_NEAREST: {
        uint32_t *codes = (uint32_t *)sentinel(40 * 4);
        w = vec(f, 40 * 4);
        x = vec(f, 8 * 4);
        arm(f, n);
        st = qn_nearest_l2(f->ctx, w, 40, 4, 4, x, 8, codes, NULL);
        disarm(f);
        if (st != QN_OK)
            ck_assert(untouched(codes, 40 * 4));
        free(codes);
        break;
    }
    default:
        ck_abort_msg("unknown scenario");
    }
    qn_layer_destroy(l);
    free(w), free(x), free(y), free(dy), free(dx), free(dw);
    return st;
}

START_TEST(sweep)
{
    int s = _i, n, sites = -1;
    fixture f;
    memset(&f, 0, sizeof f);
    snprintf(f.dir, sizeof f.dir, "/tmp/qn_alloc_sweep_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(f.dir));
    for (n = 1; n < 10000; n++) {
        qn_status st;
        memset(&f.a, 0, sizeof f.a);
        f.rng = 1234;
        ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &f.a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &f.ctx),
                         QN_OK);
        st = run(&f, s, n);
        qn_context_destroy(f.ctx);
        ck_assert_msg(st == QN_OK || st == QN_ERR_OUT_OF_MEMORY, "%s: allocation %d failing gave %s", names[s], n,
                      qn_status_str(st));
        ck_assert_msg(f.a.allocs == f.a.frees, "%s: allocation %d failing leaked %d blocks", names[s], n,
                      f.a.allocs - f.a.frees);
        if (st == QN_OK) {
            sites = n - 1;
            break;
        }
    }
    ck_assert_int_ge(sites, 0);
    printf("alloc-sweep: %-45s %3d allocation sites\n", names[s], sites);
    {
        char p[256];
        snprintf(p, sizeof p, "%s/m.gguf", f.dir);
        unlink(p);
        snprintf(p, sizeof p, "%s/m.safetensors", f.dir);
        unlink(p);
        rmdir(f.dir);
    }
}
END_TEST

START_TEST(context_create)
{
    counting_alloc a = {0, 0, 1, 0};
    qn_context *ctx = (qn_context *)&a;
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx),
                     QN_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("alloc_sweep");
    TCase *tc = tcase_create("sweep");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, sweep, 0, S_COUNT);
    tcase_add_test(tc, context_create);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
