/*
 * qn_pq through the shared library: training recovers separated clusters,
 * the objective matches a recomputation, assign matches a double-precision
 * brute force (ties to the lowest index), determinism, subsampling, a set
 * codebook, K = 65536, bad input leaving outputs untouched, allocation
 * failures reported without leaks, partial sums of shards against a Lloyd
 * step written here, progress values against a recomputation, and threads.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

static uint64_t sm_state;
static float frand(void)
{
    return qn_test_uniform(&sm_state);
}

static double dist_d(const float *a, const float *b, size_t dim)
{
    double s = 0;
    size_t t;
    for (t = 0; t < dim; t++)
        s += ((double)a[t] - b[t]) * ((double)a[t] - b[t]);
    return s;
}

/* n blocks of dim uniform floats in [-1, 1). */
static float *rand_blocks(size_t n, size_t dim, uint64_t seed)
{
    float *x = malloc(sizeof(float) * n * dim);
    size_t i;
    ck_assert_ptr_nonnull(x);
    sm_state = seed;
    for (i = 0; i < n * dim; i++)
        x[i] = frand();
    return x;
}

/*
 * per_cluster blocks around each of the 2^dim corners of [-5, 5]^dim (k = 2^dim
 * clusters, separation 10), noise in [-0.01, 0.01), interleaved: block i
 * belongs to cluster i % k.
 */
#define CL_NOISE 0.01f
static float *cluster_blocks(size_t dim, size_t per_cluster, uint64_t seed)
{
    const size_t k = (size_t)1 << dim, n = k * per_cluster;
    float *x = malloc(sizeof(float) * n * dim);
    size_t i, t;
    ck_assert_ptr_nonnull(x);
    sm_state = seed;
    for (i = 0; i < n; i++)
        for (t = 0; t < dim; t++)
            x[i * dim + t] = (((i % k) >> t) & 1u ? 5.0f : -5.0f) + CL_NOISE * frand();
    return x;
}

static qn_context *new_ctx(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

/* ---------------------------------------------------------------------------------------------- */

START_TEST(recovers_separated_clusters)
{
    const size_t dim = 3, k = 8, per = 40, n = k * per;
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    float *x = cluster_blocks(dim, per, 11 + (uint64_t)_i), *y = malloc(sizeof(float) * n * dim);
    uint16_t *codes = malloc(sizeof(uint16_t) * n);
    uint16_t code_of[8];
    size_t i, j, t, bs = 0, kk = 0, n_trained = 0, n_empty = 99;
    double obj = -1;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_get_shape(pq, &bs, &kk), QN_OK);
    ck_assert_uint_eq(bs, dim);
    ck_assert_uint_eq(kk, k);
    /* k-means++: random init may seed two centroids in one cluster, a genuine local minimum */
    ck_assert_int_eq(qn_pq_set_init(pq, QN_KMEANS_INIT_PLUSPLUS), QN_OK);
    ck_assert_int_eq(qn_pq_set_seed(pq, (uint64_t)_i), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &n_trained, NULL, NULL, &n_empty), QN_OK);
    ck_assert_uint_eq(n_trained, n);
    ck_assert_uint_eq(n_empty, 0);
    ck_assert_int_eq(qn_pq_assign(pq, x, n, codes), QN_OK);

    /* one code per cluster, all distinct */
    for (j = 0; j < k; j++)
        code_of[j] = codes[j];
    for (i = 0; i < n; i++) {
        ck_assert_uint_lt(codes[i], k);
        ck_assert_uint_eq(codes[i], code_of[i % k]);
    }
    for (i = 0; i < k; i++)
        for (j = i + 1; j < k; j++)
            ck_assert_uint_ne(code_of[i], code_of[j]);

    /* decode(assign(x)) is within the noise: the centroid is a mean of points within CL_NOISE */
    ck_assert_int_eq(qn_pq_decode(pq, codes, n, y), QN_OK);
    for (i = 0; i < n * dim; i++)
        ck_assert_msg(fabsf(y[i] - x[i]) <= 2 * CL_NOISE, "element %zu: %g vs %g", i, (double)y[i], (double)x[i]);
    for (i = 0; i < n; i++)
        for (t = 0; t < dim; t++)
            ck_assert_msg(fabsf(y[i * dim + t] - (((i % k) >> t) & 1u ? 5.0f : -5.0f)) <= CL_NOISE, "centre");

    ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_OK);
    ck_assert(obj >= 0 && obj <= dim * (double)(2 * CL_NOISE) * (2 * CL_NOISE));

    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    free(x);
    free(y);
    free(codes);
}
END_TEST

START_TEST(objective_matches_recomputation)
{
    const size_t dim = 4, k = 16, n = 1000;
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    float *x = rand_blocks(n, dim, 21), *y = malloc(sizeof(float) * n * dim);
    uint16_t *codes = malloc(sizeof(uint16_t) * n);
    double obj = -1, ref = 0;
    size_t i;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
    ck_assert(obj == -1);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_OK);
    ck_assert_int_eq(qn_pq_assign(pq, x, n, codes), QN_OK);
    ck_assert_int_eq(qn_pq_decode(pq, codes, n, y), QN_OK);
    for (i = 0; i < n; i++)
        ref += dist_d(x + i * dim, y + i * dim, dim);
    ref /= (double)n;
    ck_assert_msg(fabs(obj - ref) <= 1e-5 * ref, "objective %.9g, recomputed %.9g", obj, ref);
    ck_assert(ref > 0);

    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    free(x);
    free(y);
    free(codes);
}
END_TEST

START_TEST(assign_matches_brute_force_for_every_isa)
{
    static const size_t dims[] = {1, 3, 8, 17};
    static const size_t ks[] = {2, 5, 16, 300};
    qn_context *ctx = NULL;
    size_t di, ki;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, (qn_isa)_i, &ctx), QN_OK);
    for (di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        for (ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            const size_t dim = dims[di], k = ks[ki], n = 5000; /* > one 4096-block chunk */
            const size_t dup_hi = k - 1, dup_lo = k > 2 ? k / 2 - 1 : 0;
            float *x = rand_blocks(n, dim, 100 + di * 10 + ki), *c = rand_blocks(k, dim, 7 + ki);
            uint16_t *codes = malloc(sizeof(uint16_t) * n);
            qn_pq *pq = NULL;
            size_t i, j;
            /* centroid dup_hi duplicates dup_lo (for k = 2 both are 0 and 1); block 0 sits on it */
            memcpy(c + dup_hi * dim, c + dup_lo * dim, dim * sizeof(float));
            memcpy(x, c + dup_lo * dim, dim * sizeof(float));
            ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
            ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
            ck_assert_int_eq(qn_pq_assign(pq, x, n, codes), QN_OK);
            ck_assert_uint_eq(codes[0], dup_lo);
            for (i = 0; i < n; i++) {
                double best = INFINITY, got;
                size_t arg = 0;
                for (j = 0; j < k; j++) {
                    double e = dist_d(x + i * dim, c + j * dim, dim);
                    if (e < best) {
                        best = e;
                        arg = j;
                    }
                }
                ck_assert_uint_lt(codes[i], k);
                ck_assert_uint_ne(codes[i], dup_hi); /* the lower duplicate always wins */
                got = dist_d(x + i * dim, c + (size_t)codes[i] * dim, dim);
                if (codes[i] != arg)
                    ck_assert_msg(got <= best * (1 + 1e-5) + 1e-6, "dim %zu k %zu block %zu: code %u (%g), oracle %zu (%g)",
                                  dim, k, i, (unsigned)codes[i], got, arg, best);
            }
            qn_pq_destroy(pq);
            free(x);
            free(c);
            free(codes);
        }
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(training_is_deterministic)
{
    const size_t dim = 4, k = 8, n = 600;
    qn_context *ctx = new_ctx();
    qn_pq *a = NULL, *b = NULL;
    float *x = rand_blocks(n, dim, 31);
    float ca[8 * 4], cb[8 * 4];
    double o1 = -1, o5 = -1, o20 = -1;
    unsigned it = 0;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &a), QN_OK);
    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &b), QN_OK);
    ck_assert_int_eq(qn_pq_set_seed(a, 42), QN_OK);
    ck_assert_int_eq(qn_pq_set_seed(b, 42), QN_OK);
    ck_assert_int_eq(qn_pq_set_init(a, (qn_kmeans_init)_i), QN_OK);
    ck_assert_int_eq(qn_pq_set_init(b, (qn_kmeans_init)_i), QN_OK);
    ck_assert_int_eq(qn_pq_train(a, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_train(b, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(a, ca), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(b, cb), QN_OK);
    ck_assert_int_eq(memcmp(ca, cb, sizeof ca), 0);
    /* retraining the same object gives the same bytes again */
    ck_assert_int_eq(qn_pq_train(a, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(a, ca), QN_OK);
    ck_assert_int_eq(memcmp(ca, cb, sizeof ca), 0);

    /* more iterations never raise the objective (same seed, same init) */
    ck_assert_int_eq(qn_pq_set_tolerance(a, 0), QN_OK);
    ck_assert_int_eq(qn_pq_set_iterations(a, 1), QN_OK);
    ck_assert_int_eq(qn_pq_train(a, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_objective(a, &o1), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(a, NULL, &it, NULL, NULL), QN_OK);
    ck_assert_uint_eq(it, 1);
    ck_assert_int_eq(qn_pq_set_iterations(a, 5), QN_OK);
    ck_assert_int_eq(qn_pq_train(a, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_objective(a, &o5), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(a, NULL, &it, NULL, NULL), QN_OK);
    ck_assert_uint_eq(it, 5);
    ck_assert_int_eq(qn_pq_set_iterations(a, 20), QN_OK);
    ck_assert_int_eq(qn_pq_train(a, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_objective(a, &o20), QN_OK);
    ck_assert_msg(o5 <= o1 * (1 + 1e-6), "5 iterations %.9g > 1 iteration %.9g", o5, o1);
    ck_assert_msg(o20 <= o5 * (1 + 1e-6), "20 iterations %.9g > 5 iterations %.9g", o20, o5);

    qn_pq_destroy(a);
    qn_pq_destroy(b);
    qn_context_destroy(ctx);
    free(x);
}
END_TEST

START_TEST(subsampling_is_reported)
{
    const size_t dim = 2, k = 4, n = 1000;
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    float *x = rand_blocks(n, dim, 41);
    size_t n_trained = 0, n_splits = 99, n_empty = 99;
    unsigned it = 0;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_max_samples(pq, 100), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &n_trained, &it, &n_splits, &n_empty), QN_OK);
    ck_assert_uint_eq(n_trained, 100);
    ck_assert(it >= 1 && it <= 20);
    ck_assert_uint_le(n_empty, k);
    /* max_samples above n: every block */
    ck_assert_int_eq(qn_pq_set_max_samples(pq, 5000), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &n_trained, NULL, NULL, NULL), QN_OK);
    ck_assert_uint_eq(n_trained, n);
    ck_assert_int_eq(qn_pq_set_max_samples(pq, 0), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &n_trained, NULL, NULL, NULL), QN_OK);
    ck_assert_uint_eq(n_trained, n);
    /* fewer samples than centroids */
    ck_assert_int_eq(qn_pq_set_max_samples(pq, 3), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &n_trained, NULL, NULL, NULL), QN_OK);
    ck_assert_uint_eq(n_trained, n); /* the previous training stays */

    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    free(x);
}
END_TEST

START_TEST(set_centroids_without_training)
{
    /* bs 2, K 3: (0,0), (10,0), (0,10) */
    const float c[6] = {0, 0, 10, 0, 0, 10};
    const float x[8] = {1, 1, 9, -1, -2, 8, 6, 0.5f};
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    uint16_t codes[4] = {9, 9, 9, 9};
    float y[8], got[6];
    double obj = -7;
    size_t nt = 77;

    ck_assert_int_eq(qn_pq_create(ctx, 2, 3, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
    ck_assert_int_eq(memcmp(got, c, sizeof c), 0);
    ck_assert_int_eq(qn_pq_assign(pq, x, 4, codes), QN_OK);
    ck_assert_uint_eq(codes[0], 0);
    ck_assert_uint_eq(codes[1], 1);
    ck_assert_uint_eq(codes[2], 2);
    ck_assert_uint_eq(codes[3], 1);
    ck_assert_int_eq(qn_pq_decode(pq, codes, 4, y), QN_OK);
    ck_assert(y[0] == 0 && y[1] == 0 && y[2] == 10 && y[3] == 0 && y[4] == 0 && y[5] == 10 && y[6] == 10 &&
              y[7] == 0);
    /* no training happened: no objective, no training info */
    ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
    ck_assert(obj == -7);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &nt, NULL, NULL, NULL), QN_ERR_NOT_TRAINED);
    ck_assert_uint_eq(nt, 77);

    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(k_65536_uses_every_code)
{
    const size_t k = 65536;
    const float x[6] = {65535.0f, 0.0f, 1.0f, 65534.0f, 40000.0f, 70000.0f};
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    float *c = malloc(sizeof(float) * k), y[6];
    uint16_t codes[6], back[3] = {65535, 0, 40000};
    size_t j;

    for (j = 0; j < k; j++)
        c[j] = (float)j;
    ck_assert_int_eq(qn_pq_create(ctx, 1, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
    ck_assert_int_eq(qn_pq_assign(pq, x, 6, codes), QN_OK);
    ck_assert_uint_eq(codes[0], 65535);
    ck_assert_uint_eq(codes[1], 0);
    ck_assert_uint_eq(codes[2], 1);
    ck_assert_uint_eq(codes[3], 65534);
    ck_assert_uint_eq(codes[4], 40000);
    ck_assert_uint_eq(codes[5], 65535);
    ck_assert_int_eq(qn_pq_decode(pq, back, 3, y), QN_OK); /* every uint16 is a valid code */
    ck_assert(y[0] == 65535.0f && y[1] == 0.0f && y[2] == 40000.0f);
    qn_pq_destroy(pq);
    free(c);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(bad_input_leaves_outputs_untouched)
{
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL, *sentinel = (qn_pq *)&ctx;
    float x[40], c[8], y[8], keep[8];
    uint16_t codes[4] = {77, 77, 77, 77}, bad_codes[2] = {1, 4};
    double obj = -3;
    size_t nt = 55, ns = 55, ne = 55, bs = 55, kk = 55, i;
    unsigned it = 55;

    for (i = 0; i < 40; i++)
        x[i] = (float)i;
    for (i = 0; i < 8; i++) {
        c[i] = (float)(i * 3);
        y[i] = -9;
    }

    /* create: failing create sets *out NULL */
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(NULL, 2, 4, &pq), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(pq);
    ck_assert_int_eq(qn_pq_create(ctx, 2, 4, NULL), QN_ERR_INVALID_ARG);
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(ctx, 0, 4, &pq), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(pq);
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(ctx, 2, 0, &pq), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(pq);
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(ctx, 2, 1, &pq), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(pq);
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(ctx, 2, 65537, &pq), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(pq);
    pq = sentinel;
    ck_assert_int_eq(qn_pq_create(ctx, SIZE_MAX / 2, 4, &pq), QN_ERR_OVERFLOW);
    ck_assert_ptr_null(pq);
    qn_pq_destroy(NULL);

    ck_assert_int_eq(qn_pq_create(ctx, 2, 4, &pq), QN_OK);

    /* setters */
    ck_assert_int_eq(qn_pq_set_seed(NULL, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_iterations(NULL, 3), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_iterations(pq, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_init(NULL, QN_KMEANS_INIT_RANDOM), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_init(pq, (qn_kmeans_init)2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_init(pq, (qn_kmeans_init)-1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_tolerance(NULL, 0.1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, -1e-9), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, NAN), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, INFINITY), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_max_samples(NULL, 10), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_shape(NULL, &bs, &kk), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(bs, 55);
    ck_assert_uint_eq(kk, 55);
    ck_assert_int_eq(qn_pq_get_shape(pq, NULL, NULL), QN_OK);

    /* not trained yet */
    ck_assert_int_eq(qn_pq_assign(pq, x, 4, codes), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_pq_decode(pq, codes + 0, 1, y), QN_ERR_NOT_TRAINED); /* code 77 is never looked at */
    ck_assert_int_eq(qn_pq_get_centroids(pq, y), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_pq_get_training_info(pq, &nt, &it, &ns, &ne), QN_ERR_NOT_TRAINED);

    /* train */
    ck_assert_int_eq(qn_pq_train(NULL, x, 20), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_train(pq, NULL, 20), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_train(pq, x, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_train(pq, x, 3), QN_ERR_INVALID_ARG); /* n_blocks < K */
    ck_assert_int_eq(qn_pq_train(pq, x, SIZE_MAX / 4), QN_ERR_OVERFLOW);
    x[13] = NAN;
    ck_assert_int_eq(qn_pq_train(pq, x, 20), QN_ERR_INVALID_ARG);
    x[13] = INFINITY;
    ck_assert_int_eq(qn_pq_train(pq, x, 20), QN_ERR_INVALID_ARG);
    x[13] = 13;
    /* still untrained after the failures */
    ck_assert_int_eq(qn_pq_get_centroids(pq, y), QN_ERR_NOT_TRAINED);

    /* set_centroids */
    ck_assert_int_eq(qn_pq_set_centroids(NULL, c), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_set_centroids(pq, NULL), QN_ERR_INVALID_ARG);
    c[5] = NAN;
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_ERR_INVALID_ARG);
    c[5] = -INFINITY;
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_centroids(pq, y), QN_ERR_NOT_TRAINED);
    for (i = 0; i < 8; i++)
        ck_assert(y[i] == -9);
    c[5] = 15;

    /* a trained quantizer: a failing train keeps its codebook */
    ck_assert_int_eq(qn_pq_train(pq, x, 20), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(pq, keep), QN_OK);
    x[7] = NAN;
    ck_assert_int_eq(qn_pq_train(pq, x, 20), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_train(pq, x, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_centroids(pq, y), QN_OK);
    ck_assert_int_eq(memcmp(y, keep, sizeof y), 0);
    for (i = 0; i < 8; i++)
        y[i] = -9;

    /* assign: NaN anywhere (even in the last block) writes no code */
    ck_assert_int_eq(qn_pq_assign(NULL, x, 4, codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_assign(pq, NULL, 4, codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_assign(pq, x, 4, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_assign(pq, x, 0, codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_assign(pq, x, SIZE_MAX / 4, codes), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_pq_assign(pq, x, 4, codes), QN_ERR_INVALID_ARG); /* x[7] is NaN */
    x[7] = 7;
    ck_assert_int_eq(qn_pq_assign(pq, x, 4, codes), QN_OK);
    for (i = 0; i < 4; i++)
        codes[i] = 77;

    /* decode: an out-of-range code anywhere writes nothing */
    ck_assert_int_eq(qn_pq_decode(NULL, bad_codes, 1, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_decode(pq, NULL, 1, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_decode(pq, bad_codes, 1, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_decode(pq, bad_codes, 0, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_decode(pq, bad_codes, SIZE_MAX / 4, y), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_pq_decode(pq, bad_codes, 2, y), QN_ERR_INVALID_ARG); /* code 4 with K = 4 */
    for (i = 0; i < 8; i++)
        ck_assert(y[i] == -9);

    /* getters */
    ck_assert_int_eq(qn_pq_get_centroids(NULL, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_centroids(pq, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_objective(NULL, &obj), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_objective(pq, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_training_info(NULL, &nt, &it, &ns, &ne), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_pq_get_training_info(pq, NULL, NULL, NULL, NULL), QN_OK);

    for (i = 0; i < 4; i++)
        ck_assert_uint_eq(codes[i], 77);
    for (i = 0; i < 8; i++)
        ck_assert(y[i] == -9);
    ck_assert(obj == -3);
    ck_assert(nt == 55 && ns == 55 && ne == 55 && it == 55);

    /* the settings rejected above did not change anything: defaults still train */
    ck_assert_int_eq(qn_pq_train(pq, x, 20), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(pq, y), QN_OK);
    ck_assert_int_eq(memcmp(y, keep, sizeof y), 0);

    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* allocation failures                                                                            */

START_TEST(allocation_failures_report_oom_without_leaks)
{
    /* _i: 0 random init, 1 k-means++ with subsampling (more scratch buffers) */
    const size_t dim = 3, k = 6, n = 300;
    float *x = rand_blocks(n, dim, 51), c0[6 * 3], got[6 * 3];
    int fail_from, succeeded = 0;
    size_t i;
    for (i = 0; i < k * dim; i++)
        c0[i] = (float)i;

    for (fail_from = 1; fail_from <= 64 && !succeeded; fail_from++) {
        counting_alloc a = {0, 0, 0, 0};
        qn_context *ctx = NULL;
        qn_pq *pq = (qn_pq *)&a;
        qn_status st;
        double obj = -5;
        a.fail_from = fail_from;
        st = qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx);
        if (st != QN_OK) {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_int_eq(a.allocs, a.frees);
            continue;
        }
        st = qn_pq_create(ctx, dim, k, &pq);
        if (st != QN_OK) {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_ptr_null(pq);
        } else {
            ck_assert_int_eq(qn_pq_set_centroids(pq, c0), QN_OK); /* allocates nothing */
            if (_i) {
                ck_assert_int_eq(qn_pq_set_init(pq, QN_KMEANS_INIT_PLUSPLUS), QN_OK);
                ck_assert_int_eq(qn_pq_set_max_samples(pq, 100), QN_OK);
            }
            st = qn_pq_train(pq, x, n);
            if (st != QN_OK) {
                /* the set codebook survives, and no training statistics appear */
                ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
                ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
                ck_assert_int_eq(memcmp(got, c0, sizeof c0), 0);
                ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
                ck_assert(obj == -5);
            } else {
                uint16_t codes[8];
                ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_OK);
                ck_assert_int_eq(qn_pq_assign(pq, x, 8, codes), QN_OK); /* allocates nothing */
                succeeded = 1;
            }
            qn_pq_destroy(pq);
        }
        qn_context_destroy(ctx);
        ck_assert_msg(a.allocs == a.frees, "fail_from %d: %d allocations, %d frees", fail_from, a.allocs, a.frees);
    }
    ck_assert_msg(succeeded, "training never succeeded within 64 allocations");
    ck_assert_int_gt(fail_from, 4); /* at least context, pq, codebook and training scratch failed once */
    free(x);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* partial sums and the update from reduced sums (distributed k-means)                            */

/*
 * One Lloyd step in double, written here: the exact nearest centroid of each
 * block (asserting that the runner-up is clearly farther, so rounding cannot
 * change the assignment), per-centroid sums, counts and the total squared error.
 */
static void ref_lloyd_step(const float *x, size_t n, size_t dim, const float *c, size_t k, double *sums,
                           uint64_t *counts, double *sq_err)
{
    size_t i, j, t;
    memset(sums, 0, k * dim * sizeof(double));
    memset(counts, 0, k * sizeof(uint64_t));
    *sq_err = 0;
    for (i = 0; i < n; i++) {
        double best = INFINITY, second = INFINITY;
        size_t arg = 0;
        for (j = 0; j < k; j++) {
            const double d = dist_d(x + i * dim, c + j * dim, dim);
            if (d < best) {
                second = best;
                best = d;
                arg = j;
            } else if (d < second) {
                second = d;
            }
        }
        /* a gap far above the kernels' rounding (about 1e-7 of ||x||^2 here) */
        ck_assert_msg(second - best > 1e-5 * second, "test data: block %zu has a near tie", i);
        counts[arg]++;
        for (t = 0; t < dim; t++)
            sums[arg * dim + t] += x[i * dim + t];
        *sq_err += best;
    }
}

START_TEST(partial_sums_of_shards_give_one_lloyd_step)
{
    const size_t dim = 6, k = 16, n = 3000;
    const size_t cuts[4] = {0, 1000, 2300, 3000}; /* three shards of different sizes */
    float *x = rand_blocks(n, dim, 61), c[16 * 6], got[16 * 6];
    double sums[16 * 6], ref_sums[16 * 6], sq_err, ref_err, obj;
    uint64_t counts[16], ref_counts[16];
    size_t i, j, t, n_empty = 99;
    unsigned threads;

    /* 15 centroids on data blocks, the last far from all data: it gets no block */
    for (j = 0; j + 1 < k; j++)
        memcpy(c + j * dim, x + (j * 181 + 7) * dim, dim * sizeof(float));
    for (t = 0; t < dim; t++)
        c[(k - 1) * dim + t] = 100.0f;
    ref_lloyd_step(x, n, dim, c, k, ref_sums, ref_counts, &ref_err);
    ck_assert_uint_eq(ref_counts[k - 1], 0);

    for (threads = 1; threads <= 2; threads++) {
        qn_context *ctx = new_ctx();
        qn_pq *pq = NULL;
        ck_assert_int_eq(qn_context_set_threads(ctx, threads), QN_OK);
        ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
        ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
        memset(sums, 0, sizeof sums);
        memset(counts, 0, sizeof counts);
        sq_err = 0;
        for (i = 0; i < 3; i++)
            ck_assert_int_eq(qn_pq_partial_sums(pq, x + cuts[i] * dim, cuts[i + 1] - cuts[i], sums, counts, &sq_err),
                             QN_OK);
        for (j = 0; j < k; j++) {
            ck_assert_uint_eq(counts[j], ref_counts[j]);
            for (t = 0; t < dim; t++)
                ck_assert_msg(fabs(sums[j * dim + t] - ref_sums[j * dim + t]) <= 1e-12 * (double)counts[j],
                              "sum %zu[%zu]: %.17g, reference %.17g", j, t, sums[j * dim + t], ref_sums[j * dim + t]);
        }
        ck_assert_msg(fabs(sq_err - ref_err) <= 1e-12 * ref_err, "squared error %.17g, reference %.17g", sq_err,
                      ref_err);

        ck_assert_int_eq(qn_pq_update_from_sums(pq, sums, counts, &n_empty), QN_OK);
        ck_assert_uint_eq(n_empty, 1);
        ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
        for (j = 0; j < k; j++)
            for (t = 0; t < dim; t++) {
                const double m = j + 1 < k ? ref_sums[j * dim + t] / (double)ref_counts[j] : 100.0;
                ck_assert_msg(fabs(got[j * dim + t] - m) <= 1.2e-7 * fabs(m) + 1e-30,
                              "centroid %zu[%zu]: %.9g, reference mean %.9g", j, t, (double)got[j * dim + t], m);
            }
        /* the codebook no longer comes from qn_pq_train */
        ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
        qn_pq_destroy(pq);
        qn_context_destroy(ctx);
    }
    free(x);
}
END_TEST

/* Fill the caller arrays of partial_sums with a pattern; true when it is still there. */
#define PS_K 3
#define PS_BS 2
typedef struct ps_out {
    double sums[PS_K * PS_BS], sq_err;
    uint64_t counts[PS_K];
    size_t n_empty;
} ps_out;

static void ps_fill(ps_out *o)
{
    size_t i;
    for (i = 0; i < PS_K * PS_BS; i++)
        o->sums[i] = 7.5;
    for (i = 0; i < PS_K; i++)
        o->counts[i] = 9;
    o->sq_err = 5.25;
    o->n_empty = 42;
}

static int ps_untouched(const ps_out *o)
{
    ps_out ref;
    ps_fill(&ref);
    return memcmp(ref.sums, o->sums, sizeof ref.sums) == 0 && memcmp(ref.counts, o->counts, sizeof ref.counts) == 0 &&
           ref.sq_err == o->sq_err && ref.n_empty == o->n_empty;
}

START_TEST(partial_sums_and_update_reject_bad_input)
{
    const float c[PS_K * PS_BS] = {0, 0, 10, 0, 0, 10};
    float x[8] = {1, 1, 9, -1, -2, 8, 6, 0.5f}, got[PS_K * PS_BS];
    double bad_sums[PS_K * PS_BS];
    uint64_t ones[PS_K] = {1, 1, 1};
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    ps_out o;
    size_t i;

    ck_assert_int_eq(qn_pq_create(ctx, PS_BS, PS_K, &pq), QN_OK);
#define PS_EXPECT(call, status)                                                                                        \
    do {                                                                                                               \
        ps_fill(&o);                                                                                                   \
        ck_assert_int_eq((call), (status));                                                                            \
        ck_assert_msg(ps_untouched(&o), "outputs written by a failing call");                                        \
    } while (0)

    /* no codebook yet */
    PS_EXPECT(qn_pq_partial_sums(pq, x, 4, o.sums, o.counts, &o.sq_err), QN_ERR_NOT_TRAINED);
    PS_EXPECT(qn_pq_update_from_sums(pq, o.sums, o.counts, &o.n_empty), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);

    PS_EXPECT(qn_pq_partial_sums(NULL, x, 4, o.sums, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_partial_sums(pq, NULL, 4, o.sums, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_partial_sums(pq, x, 4, NULL, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_partial_sums(pq, x, 4, o.sums, NULL, &o.sq_err), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_partial_sums(pq, x, 0, o.sums, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_partial_sums(pq, x, SIZE_MAX / 4, o.sums, o.counts, &o.sq_err), QN_ERR_OVERFLOW);
    x[7] = NAN; /* in the last block */
    PS_EXPECT(qn_pq_partial_sums(pq, x, 4, o.sums, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    x[7] = INFINITY;
    PS_EXPECT(qn_pq_partial_sums(pq, x, 4, o.sums, o.counts, &o.sq_err), QN_ERR_INVALID_ARG);
    x[7] = 0.5f;

    /* a good call adds (hand-checked: blocks 0 -> centroid 0, 1 and 3 -> 1, 2 -> 2) and sq_err may be NULL */
    ps_fill(&o);
    ck_assert_int_eq(qn_pq_partial_sums(pq, x, 4, o.sums, o.counts, NULL), QN_OK);
    ck_assert(o.counts[0] == 10 && o.counts[1] == 11 && o.counts[2] == 10);
    ck_assert(o.sums[0] == 8.5 && o.sums[1] == 8.5);   /* 7.5 + (1, 1) */
    ck_assert(o.sums[2] == 22.5 && o.sums[3] == 7.0);  /* 7.5 + (9 + 6, -1 + 0.5) */
    ck_assert(o.sums[4] == 5.5 && o.sums[5] == 15.5);  /* 7.5 + (-2, 8) */
    ck_assert(o.sq_err == 5.25);
    ck_assert_int_eq(qn_pq_partial_sums(pq, x, 4, o.sums, o.counts, &o.sq_err), QN_OK);
    /* 2 + (1 + 1) + (4 + 4) + (16 + 0.25) */
    ck_assert_msg(o.sq_err == 5.25 + 28.25, "sq_err %.17g", o.sq_err);

    /* update: NULLs, non-finite sums, means that overflow a float; the codebook stays */
    PS_EXPECT(qn_pq_update_from_sums(NULL, o.sums, o.counts, &o.n_empty), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_update_from_sums(pq, NULL, o.counts, &o.n_empty), QN_ERR_INVALID_ARG);
    PS_EXPECT(qn_pq_update_from_sums(pq, o.sums, NULL, &o.n_empty), QN_ERR_INVALID_ARG);
    for (i = 0; i < PS_K * PS_BS; i++)
        bad_sums[i] = 1.0;
    bad_sums[5] = NAN;
    ps_fill(&o);
    ck_assert_int_eq(qn_pq_update_from_sums(pq, bad_sums, ones, &o.n_empty), QN_ERR_INVALID_ARG);
    bad_sums[5] = -INFINITY;
    ck_assert_int_eq(qn_pq_update_from_sums(pq, bad_sums, ones, &o.n_empty), QN_ERR_INVALID_ARG);
    bad_sums[5] = 1e300; /* finite, but 1e300 / 1 is no float */
    ck_assert_int_eq(qn_pq_update_from_sums(pq, bad_sums, ones, &o.n_empty), QN_ERR_INVALID_ARG);
    ck_assert(ps_untouched(&o));
    ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
    ck_assert_int_eq(memcmp(got, c, sizeof c), 0);
    /* the same non-finite value under a zero count is still rejected */
    bad_sums[5] = NAN;
    ones[2] = 0;
    ck_assert_int_eq(qn_pq_update_from_sums(pq, bad_sums, ones, NULL), QN_ERR_INVALID_ARG);
    /* and a good update with n_empty NULL */
    bad_sums[5] = 1.0;
    ck_assert_int_eq(qn_pq_update_from_sums(pq, bad_sums, ones, NULL), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
    ck_assert(got[0] == 1 && got[1] == 1 && got[2] == 1 && got[3] == 1 && got[4] == 0 && got[5] == 10);
#undef PS_EXPECT
    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* progress with values                                                                           */

typedef struct values_rec {
    int plain_calls, value_calls;
    int stop_plain_at, stop_values_at; /* return non-zero at this call (1-based); 0 never */
    int bad;
    uint64_t total;
    double obj[64], imb[64];
} values_rec;

static int rec_plain(void *user, const char *what, uint64_t done, uint64_t total)
{
    values_rec *r = (values_rec *)user;
    r->plain_calls++;
    if (strcmp(what, "kmeans") != 0 || done != (uint64_t)r->plain_calls || total != r->total)
        r->bad = 1;
    return r->stop_plain_at != 0 && r->plain_calls >= r->stop_plain_at;
}

static int rec_values(void *user, const char *what, uint64_t done, uint64_t total, const double *values,
                      size_t n_values)
{
    values_rec *r = (values_rec *)user;
    r->value_calls++;
    if (strcmp(what, "kmeans") != 0 || done != (uint64_t)r->value_calls || total != r->total || n_values != 2 ||
        !values || r->value_calls > 64)
        r->bad = 1;
    else {
        r->obj[r->value_calls - 1] = values[0];
        r->imb[r->value_calls - 1] = values[1];
    }
    return r->stop_values_at != 0 && r->value_calls >= r->stop_values_at;
}

/* x = {0, 1, 10, 11}, K = 2: whatever the start, the last iteration reports objective 0.25, imbalance 1. */
START_TEST(progress_values_hand_checked)
{
    static const float x[4] = {0, 1, 10, 11};
    qn_context *ctx = new_ctx();
    uint64_t seed;
    int init;
    for (init = 0; init <= 1; init++) {
        for (seed = 0; seed < 8; seed++) {
            values_rec r;
            qn_pq *pq = NULL;
            int i;
            memset(&r, 0, sizeof r);
            r.total = 20;
            ck_assert_int_eq(qn_context_set_progress(ctx, rec_plain, &r), QN_OK);
            ck_assert_int_eq(qn_context_set_progress_values(ctx, rec_values, &r), QN_OK);
            ck_assert_int_eq(qn_pq_create(ctx, 1, 2, &pq), QN_OK);
            ck_assert_int_eq(qn_pq_set_seed(pq, seed), QN_OK);
            ck_assert_int_eq(qn_pq_set_init(pq, (qn_kmeans_init)init), QN_OK);
            ck_assert_int_eq(qn_pq_train(pq, x, 4), QN_OK);
            ck_assert_int_eq(r.bad, 0);
            ck_assert_int_ge(r.value_calls, 1);
            ck_assert_int_eq(r.plain_calls, r.value_calls); /* both, every iteration */
            ck_assert_msg(r.obj[r.value_calls - 1] == 0.25 && r.imb[r.value_calls - 1] == 1.0,
                          "init %d seed %llu: last iteration reports %.17g, %.17g", init, (unsigned long long)seed,
                          r.obj[r.value_calls - 1], r.imb[r.value_calls - 1]);
            for (i = 0; i < r.value_calls; i++) {
                /* k sum(c^2) >= (sum c)^2 = n^2 */
                ck_assert(r.imb[i] >= 1.0);
                if (i > 0)
                    ck_assert(r.obj[i] <= r.obj[i - 1]);
            }
            qn_pq_destroy(pq);
        }
    }
    qn_context_destroy(ctx);
}
END_TEST

/*
 * The values of iteration T + 1 describe the assignment to the centroids after
 * T iterations, which a training with T iterations returns (same seed): check
 * them against an exact nearest-centroid computation over those centroids.
 */
START_TEST(progress_values_match_recomputation)
{
    const size_t dim = 4, k = 8, n = 2000;
    float *x = rand_blocks(n, dim, 71), ct[8 * 4];
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    values_rec r;
    unsigned T;
    size_t n_splits = 99;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_seed(pq, 5), QN_OK);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, 0), QN_OK);
    memset(&r, 0, sizeof r);
    r.total = 6;
    ck_assert_int_eq(qn_context_set_progress_values(ctx, rec_values, &r), QN_OK);
    ck_assert_int_eq(qn_pq_set_iterations(pq, 6), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(r.bad, 0);
    ck_assert_int_eq(r.value_calls, 6);
    ck_assert_int_eq(qn_pq_get_training_info(pq, NULL, NULL, &n_splits, NULL), QN_OK);
    ck_assert_uint_eq(n_splits, 0); /* no repair changed an assignment */
    ck_assert_int_eq(qn_context_set_progress_values(ctx, NULL, NULL), QN_OK);

    for (T = 1; T <= 5; T++) {
        double sums[8 * 4], err;
        uint64_t counts[8];
        double imb = 0;
        size_t j;
        ck_assert_int_eq(qn_pq_set_iterations(pq, T), QN_OK);
        ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
        ck_assert_int_eq(qn_pq_get_centroids(pq, ct), QN_OK);
        ref_lloyd_step(x, n, dim, ct, k, sums, counts, &err);
        for (j = 0; j < k; j++)
            imb += (double)counts[j] * (double)counts[j];
        imb *= (double)k / ((double)n * (double)n);
        ck_assert_msg(fabs(r.obj[T] - err / (double)n) <= 1e-12 * err / (double)n,
                      "iteration %u: objective %.17g, recomputed %.17g", T + 1, r.obj[T], err / (double)n);
        ck_assert_msg(fabs(r.imb[T] - imb) <= 1e-14 * imb, "iteration %u: imbalance %.17g, recomputed %.17g", T + 1,
                      r.imb[T], imb);
    }
    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    free(x);
}
END_TEST

START_TEST(progress_values_cancel)
{
    const size_t dim = 2, k = 4, n = 300;
    float *x = rand_blocks(n, dim, 81), c[8] = {0, 0, 1, 1, -1, 0, 0, -1}, got[8];
    qn_context *ctx = new_ctx();
    qn_pq *pq = NULL;
    values_rec r;
    double obj = -2;
    int stop;

    ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, 0), QN_OK);
    ck_assert_int_eq(qn_pq_set_iterations(pq, 5), QN_OK);
    ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
    ck_assert_int_eq(qn_context_set_progress(ctx, rec_plain, &r), QN_OK);
    ck_assert_int_eq(qn_context_set_progress_values(ctx, rec_values, &r), QN_OK);
    for (stop = 1; stop <= 5; stop++) {
        /* the values callback cancels at iteration `stop` */
        memset(&r, 0, sizeof r);
        r.total = 5;
        r.stop_values_at = stop;
        ck_assert_int_eq(qn_pq_train(pq, x, n), QN_ERR_CANCELLED);
        ck_assert_int_eq(r.value_calls, stop);
        ck_assert_int_eq(r.plain_calls, stop);
        ck_assert_int_eq(r.bad, 0);
        /* the plain callback cancels: the values callback is not called for that iteration */
        memset(&r, 0, sizeof r);
        r.total = 5;
        r.stop_plain_at = stop;
        ck_assert_int_eq(qn_pq_train(pq, x, n), QN_ERR_CANCELLED);
        ck_assert_int_eq(r.plain_calls, stop);
        ck_assert_int_eq(r.value_calls, stop - 1);
        /* nothing changed */
        ck_assert_int_eq(qn_pq_get_centroids(pq, got), QN_OK);
        ck_assert_int_eq(memcmp(got, c, sizeof c), 0);
        ck_assert_int_eq(qn_pq_objective(pq, &obj), QN_ERR_NOT_TRAINED);
        ck_assert(obj == -2);
    }
    /* either callback alone, never cancelling: one call per iteration */
    ck_assert_int_eq(qn_context_set_progress(ctx, NULL, NULL), QN_OK);
    memset(&r, 0, sizeof r);
    r.total = 5;
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(r.value_calls, 5);
    ck_assert_int_eq(r.plain_calls, 0);
    qn_pq_destroy(pq);
    qn_context_destroy(ctx);
    free(x);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* threads                                                                                        */

START_TEST(threads_keep_codes_and_are_deterministic)
{
    const size_t dim = 8, k = 64, n = 20000;
    float *x = rand_blocks(n, dim, 91), *c = rand_blocks(k, dim, 92);
    float *c1 = malloc(sizeof(float) * k * dim), *c2 = malloc(sizeof(float) * k * dim);
    float *c2b = malloc(sizeof(float) * k * dim);
    uint16_t *codes[3];
    double sums[3][64 * 8], err[3];
    uint64_t counts[3][64];
    double o1 = 0, o2 = 0;
    unsigned threads;
    size_t i;

    /* every 37th block sits on a centroid: those are assigned by exact differences, in batches
     * that the thread ranges cut differently */
    for (i = 0; i < n; i += 37)
        memcpy(x + i * dim, c + (i % k) * dim, dim * sizeof(float));
    for (threads = 1; threads <= 3; threads++) {
        qn_context *ctx = new_ctx();
        qn_pq *pq = NULL;
        ck_assert_int_eq(qn_context_set_threads(ctx, threads), QN_OK);
        ck_assert_int_eq(qn_pq_create(ctx, dim, k, &pq), QN_OK);
        ck_assert_int_eq(qn_pq_set_centroids(pq, c), QN_OK);
        codes[threads - 1] = malloc(sizeof(uint16_t) * n);
        ck_assert_int_eq(qn_pq_assign(pq, x, n, codes[threads - 1]), QN_OK);
        memset(sums[threads - 1], 0, sizeof sums[0]);
        memset(counts[threads - 1], 0, sizeof counts[0]);
        err[threads - 1] = 0;
        ck_assert_int_eq(qn_pq_partial_sums(pq, x, n, sums[threads - 1], counts[threads - 1], &err[threads - 1]),
                         QN_OK);
        if (threads <= 2) {
            /* training: the same thread count gives the same bytes */
            ck_assert_int_eq(qn_pq_set_seed(pq, 3), QN_OK);
            ck_assert_int_eq(qn_pq_set_iterations(pq, 8), QN_OK);
            ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
            ck_assert_int_eq(qn_pq_get_centroids(pq, threads == 1 ? c1 : c2), QN_OK);
            ck_assert_int_eq(qn_pq_objective(pq, threads == 1 ? &o1 : &o2), QN_OK);
            ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
            ck_assert_int_eq(qn_pq_get_centroids(pq, c2b), QN_OK);
            ck_assert_int_eq(memcmp(threads == 1 ? c1 : c2, c2b, sizeof(float) * k * dim), 0);
        }
        qn_pq_destroy(pq);
        qn_context_destroy(ctx);
    }
    /* codes are per block: identical for every thread count; sums differ only in rounding */
    for (i = 0; i < n; i++) {
        ck_assert_uint_eq(codes[0][i], codes[1][i]);
        ck_assert_uint_eq(codes[0][i], codes[2][i]);
        if (i % 37 == 0)
            ck_assert_uint_eq(codes[0][i], i % k);
    }
    ck_assert_int_eq(memcmp(counts[0], counts[1], sizeof counts[0]), 0);
    ck_assert_int_eq(memcmp(counts[0], counts[2], sizeof counts[0]), 0);
    for (i = 0; i < k * dim; i++) {
        ck_assert(fabs(sums[1][i] - sums[0][i]) <= 1e-12 * (double)n);
        ck_assert(fabs(sums[2][i] - sums[0][i]) <= 1e-12 * (double)n);
    }
    ck_assert(fabs(err[1] - err[0]) <= 1e-12 * err[0] && fabs(err[2] - err[0]) <= 1e-12 * err[0]);
    /* trainings with 1 and 2 threads agree closely (k-means can amplify last-bit differences only
     * through near ties; uniform data with 8 iterations stays within a loose bound) */
    ck_assert_msg(fabs(o1 - o2) <= 1e-3 * o1, "objective %.9g with 1 thread, %.9g with 2", o1, o2);
    for (i = 0; i < 3; i++)
        free(codes[i]);
    free(c1);
    free(c2);
    free(c2b);
    free(c);
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pq");
    TCase *tc = tcase_create("api");
    tcase_add_loop_test(tc, recovers_separated_clusters, 0, 4);
    tcase_add_test(tc, objective_matches_recomputation);
    tcase_add_loop_test(tc, assign_matches_brute_force_for_every_isa, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, training_is_deterministic, QN_KMEANS_INIT_RANDOM, QN_KMEANS_INIT_PLUSPLUS + 1);
    tcase_add_test(tc, subsampling_is_reported);
    tcase_add_test(tc, set_centroids_without_training);
    tcase_add_test(tc, k_65536_uses_every_code);
    tcase_add_test(tc, bad_input_leaves_outputs_untouched);
    tcase_add_loop_test(tc, allocation_failures_report_oom_without_leaks, 0, 2);
    tcase_add_test(tc, partial_sums_of_shards_give_one_lloyd_step);
    tcase_add_test(tc, partial_sums_and_update_reject_bad_input);
    tcase_add_test(tc, progress_values_hand_checked);
    tcase_add_test(tc, progress_values_match_recomputation);
    tcase_add_test(tc, progress_values_cancel);
    tcase_add_test(tc, threads_keep_codes_and_are_deterministic);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
