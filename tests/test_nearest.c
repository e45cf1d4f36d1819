/*
 * qn_nearest_l2 through the shared library, for every ISA cap, against a
 * double-precision brute-force oracle; bad input leaves outputs untouched.
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

START_TEST(matches_oracle_for_every_isa)
{
    static const size_t dims[] = {1, 3, 4, 8, 9, 16, 17, 32};
    static const size_t ks[] = {1, 2, 5, 16, 17, 64, 256, 300};
    qn_context *ctx = NULL;
    qn_isa cap = (qn_isa)_i;
    size_t di, ki;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, cap, &ctx), QN_OK);
    sm_state = 1234 + (uint64_t)_i;
    for (di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        for (ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            size_t dim = dims[di], k = ks[ki], n = 37, ldx = dim + 3, i, j;
            float *x = malloc(sizeof(float) * n * ldx), *c = malloc(sizeof(float) * k * dim);
            float *d = malloc(sizeof(float) * n);
            uint32_t *codes = malloc(sizeof(uint32_t) * n);
            for (i = 0; i < n * ldx; i++)
                x[i] = frand();
            for (i = 0; i < k * dim; i++)
                c[i] = frand();
            ck_assert_int_eq(qn_nearest_l2(ctx, x, n, ldx, dim, c, k, codes, d), QN_OK);
            for (i = 0; i < n; i++) {
                double best = INFINITY, got;
                for (j = 0; j < k; j++) {
                    double e = dist_d(x + i * ldx, c + j * dim, dim);
                    if (e < best)
                        best = e;
                }
                ck_assert_uint_lt(codes[i], k);
                got = dist_d(x + i * ldx, c + (size_t)codes[i] * dim, dim);
                ck_assert_msg(got <= best * (1 + 1e-5) + 1e-6, "dim %zu k %zu row %zu: %g > %g", dim, k, i,
                              got, best);
                ck_assert_msg(fabs(d[i] - got) <= 1e-5 * got + 1e-6, "reported %g, true %g", d[i], got);
            }
            free(x);
            free(c);
            free(d);
            free(codes);
        }
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(bad_input_leaves_outputs_untouched)
{
    qn_context *ctx = NULL;
    float x[8] = {0}, c[8] = {0};
    uint32_t codes[2] = {77, 77};
    float d[2] = {5, 5};
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_nearest_l2(NULL, x, 1, 4, 4, c, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, NULL, 1, 4, 4, c, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, 4, NULL, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, 4, c, 2, NULL, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 0, 4, 4, c, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, 0, c, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, 4, c, 0, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 2, 3, 4, c, 2, codes, d), QN_ERR_INVALID_ARG); /* ldx < dim */
    ck_assert_int_eq(qn_nearest_l2(ctx, x, SIZE_MAX / 2, 4, 4, c, 2, codes, d), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, SIZE_MAX / 2, c, 4, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 4, 4, c, (size_t)UINT32_MAX + 1, codes, d), QN_ERR_INVALID_ARG);
    x[5] = INFINITY;
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 2, 4, 4, c, 2, codes, d), QN_ERR_INVALID_ARG);
    x[5] = 0;
    c[7] = NAN;
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 2, 4, 4, c, 2, codes, d), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(codes[0], 77);
    ck_assert_uint_eq(codes[1], 77);
    ck_assert(d[0] == 5 && d[1] == 5);
    /* the same call with clean data succeeds, and the dists pointer is optional */
    c[7] = 1;
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 2, 4, 4, c, 2, codes, NULL), QN_OK);
    ck_assert_uint_eq(codes[0], 0);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(hand_computed_example)
{
    /* x = (1, 1); centroids (0,0) d=2, (1,2) d=1, (3,1) d=4, (1,0) d=1 -> index 1 (lowest of the tie) */
    qn_context *ctx = NULL;
    const float x[2] = {1, 1}, c[8] = {0, 0, 1, 2, 3, 1, 1, 0};
    uint32_t code = 9;
    float d = -1;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 2, 2, c, 4, &code, &d), QN_OK);
    ck_assert_uint_eq(code, 1);
    ck_assert(d == 1.0f);
    qn_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("nearest");
    TCase *tc = tcase_create("api");
    tcase_add_loop_test(tc, matches_oracle_for_every_isa, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_test(tc, bad_input_leaves_outputs_untouched);
    tcase_add_test(tc, hand_computed_example);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
