/*
 * qn_context: creation, custom allocator, log callback, ISA cap, bad input.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

typedef struct log_sink {
    int count;
    qn_log_level last_level;
    char last[512];
} log_sink;

static void sink_log(void *user, qn_log_level level, const char *msg)
{
    log_sink *s = (log_sink *)user;
    s->count++;
    s->last_level = level;
    strncpy(s->last, msg, sizeof s->last - 1);
    s->last[sizeof s->last - 1] = '\0';
}

static int never_called_progress(void *user, const char *what, uint64_t done, uint64_t total)
{
    (void)what;
    (void)done;
    (void)total;
    ++*(int *)user;
    return 0;
}

START_TEST(create_destroy_default)
{
    qn_context *ctx = NULL;
    qn_isa isa = (qn_isa)42;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_ptr_nonnull(ctx);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert(isa == QN_ISA_SCALAR || isa == QN_ISA_AVX2 || isa == QN_ISA_AVX512);
    ck_assert_int_le(isa, qn_cpu_best_isa());
    qn_context_destroy(ctx);
    qn_context_destroy(NULL); /* no-op */
}
END_TEST

START_TEST(create_rejects_null_out)
{
    ck_assert_int_eq(qn_context_create(NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, QN_ISA_AVX512, NULL),
                     QN_ERR_INVALID_ARG);
}
END_TEST

START_TEST(custom_allocator_sees_every_allocation)
{
    counting_alloc a = {0, 0, 0, 0};
    qn_context *ctx = NULL;
    float x[3] = {1, 2, 3}, c[6] = {0, 0, 0, 1, 2, 3};
    uint32_t code = 7;
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    ck_assert_int_ge(a.allocs, 1);
    ck_assert_uint_ge(a.last_align, 16);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 3, 3, c, 2, &code, NULL), QN_OK);
    ck_assert_uint_eq(code, 1);
    qn_context_destroy(ctx);
    ck_assert_int_eq(a.allocs, a.frees);
}
END_TEST

START_TEST(failing_allocator_reports_oom)
{
    counting_alloc a = {0, 0, 1, 0};
    log_sink s;
    qn_context *ctx = (qn_context *)&a; /* must be reset to NULL */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &a, sink_log, &s, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_ERR_OUT_OF_MEMORY);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(a.allocs, 0);
    ck_assert_int_eq(a.frees, 0);
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(s.last_level, QN_LOG_ERROR);
}
END_TEST

START_TEST(half_allocator_rejected_with_message)
{
    counting_alloc a = {0, 0, 0, 0};
    log_sink s;
    qn_context *ctx = (qn_context *)&a;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(qn_context_create_ex(count_alloc, NULL, &a, sink_log, &s, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(s.last_level, QN_LOG_ERROR);
    ck_assert_ptr_nonnull(strstr(s.last, "alloc"));
    ctx = (qn_context *)&a;
    ck_assert_int_eq(qn_context_create_ex(NULL, count_free, &a, NULL, NULL, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(a.allocs, 0);
}
END_TEST

START_TEST(unknown_isa_cap_rejected)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, (qn_isa)3, &ctx),
                     QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(ctx);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, (qn_isa)-1, &ctx),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_context_set_isa_cap(ctx, (qn_isa)17), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_context_set_isa_cap(NULL, QN_ISA_SCALAR), QN_ERR_INVALID_ARG);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(isa_cap_limits_kernels)
{
    qn_context *ctx = NULL;
    qn_isa isa, best = qn_cpu_best_isa();
    const char *env = getenv("QN_ISA");
    qn_isa env_cap = QN_ISA_AVX512;
    if (env && *env)
        ck_assert_int_eq(qn_isa_from_name(env, &env_cap), QN_OK);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, QN_ISA_SCALAR, &ctx),
                     QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_eq(isa, QN_ISA_SCALAR);
    ck_assert_int_eq(qn_context_set_isa_cap(ctx, QN_ISA_AVX512), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_eq(isa, best < env_cap ? best : env_cap);
    ck_assert_int_eq(qn_context_set_isa_cap(ctx, QN_ISA_AVX2), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_le(isa, QN_ISA_AVX2);
    ck_assert_int_le(isa, best);
    qn_context_destroy(ctx);
    ck_assert_int_eq(qn_context_get_isa(NULL, &isa), QN_ERR_INVALID_ARG);
}
END_TEST

START_TEST(environment_caps_kernels)
{
    /* Runs in its own process under CK_FORK; restores QN_ISA otherwise. */
    char *saved = getenv("QN_ISA") ? strdup(getenv("QN_ISA")) : NULL;
    qn_context *ctx = NULL;
    qn_isa isa;
    log_sink s;
    ck_assert_int_eq(setenv("QN_ISA", "scalar", 1), 0);
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_eq(isa, QN_ISA_SCALAR);
    /* a larger caller cap cannot lift the environment cap */
    ck_assert_int_eq(qn_context_set_isa_cap(ctx, QN_ISA_AVX512), QN_OK);
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_eq(isa, QN_ISA_SCALAR);
    qn_context_destroy(ctx);

    memset(&s, 0, sizeof s);
    ck_assert_int_eq(setenv("QN_ISA", "sse9", 1), 0);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, sink_log, &s, NULL, NULL, QN_ISA_AVX512, &ctx),
                     QN_OK);
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(s.last_level, QN_LOG_WARN);
    ck_assert_ptr_nonnull(strstr(s.last, "QN_ISA"));
    ck_assert_int_eq(qn_context_get_isa(ctx, &isa), QN_OK);
    ck_assert_int_eq(isa, qn_cpu_best_isa()); /* ignored, not obeyed */
    qn_context_destroy(ctx);

    if (saved) {
        setenv("QN_ISA", saved, 1);
        free(saved);
    } else {
        unsetenv("QN_ISA");
    }
}
END_TEST

START_TEST(log_levels_filter_and_errors_are_logged)
{
    qn_context *ctx = NULL;
    log_sink s;
    float x[2] = {NAN, 0}, c[2] = {0, 0};
    uint32_t code = 12345;
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_context_set_log(ctx, sink_log, &s, QN_LOG_DEBUG), QN_OK);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 2, 2, c, 1, &code, NULL), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(code, 12345);
    ck_assert_int_eq(s.count, 1);
    ck_assert_int_eq(s.last_level, QN_LOG_ERROR);
    ck_assert_ptr_nonnull(strstr(s.last, "qn_nearest_l2"));
    /* NULL callback silences */
    ck_assert_int_eq(qn_context_set_log(ctx, NULL, NULL, QN_LOG_DEBUG), QN_OK);
    ck_assert_int_eq(qn_nearest_l2(ctx, x, 1, 2, 2, c, 1, &code, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(s.count, 1);
    /* bad levels */
    ck_assert_int_eq(qn_context_set_log(ctx, sink_log, &s, (qn_log_level)0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_context_set_log(ctx, sink_log, &s, (qn_log_level)5), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_context_set_log(NULL, sink_log, &s, QN_LOG_ERROR), QN_ERR_INVALID_ARG);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(progress_setter_validates)
{
    qn_context *ctx = NULL;
    int calls = 0;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, never_called_progress, &calls,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    ck_assert_int_eq(qn_context_set_progress(ctx, NULL, NULL), QN_OK);
    ck_assert_int_eq(qn_context_set_progress(ctx, never_called_progress, &calls), QN_OK);
    ck_assert_int_eq(qn_context_set_progress(NULL, never_called_progress, &calls), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(calls, 0);
    qn_context_destroy(ctx);
}
END_TEST

static int never_called_progress_values(void *user, const char *what, uint64_t done, uint64_t total,
                                        const double *values, size_t n_values)
{
    (void)what;
    (void)done;
    (void)total;
    (void)values;
    (void)n_values;
    ++*(int *)user;
    return 0;
}

START_TEST(progress_values_setter_validates)
{
    qn_context *ctx = NULL;
    int calls = 0;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_context_set_progress_values(ctx, never_called_progress_values, &calls), QN_OK);
    ck_assert_int_eq(qn_context_set_progress_values(ctx, NULL, NULL), QN_OK);
    ck_assert_int_eq(qn_context_set_progress_values(NULL, never_called_progress_values, &calls),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(calls, 0); /* setting a callback never calls it */
    qn_context_destroy(ctx);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("context");
    TCase *tc = tcase_create("context");
    tcase_add_test(tc, create_destroy_default);
    tcase_add_test(tc, create_rejects_null_out);
    tcase_add_test(tc, custom_allocator_sees_every_allocation);
    tcase_add_test(tc, failing_allocator_reports_oom);
    tcase_add_test(tc, half_allocator_rejected_with_message);
    tcase_add_test(tc, unknown_isa_cap_rejected);
    tcase_add_test(tc, isa_cap_limits_kernels);
    tcase_add_test(tc, environment_caps_kernels);
    tcase_add_test(tc, log_levels_filter_and_errors_are_logged);
    tcase_add_test(tc, progress_setter_validates);
    tcase_add_test(tc, progress_values_setter_validates);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
