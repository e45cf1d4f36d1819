/*
 * Status codes, version and ISA names, through the installed API only.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <stdio.h>
#include <string.h>

#include <qnoise/qnoise.h>

START_TEST(status_values_are_pinned)
{
    /* These numbers are ABI: a reordering would silently change callers' switch tables. */
    ck_assert_int_eq(QN_OK, 0);
    ck_assert_int_eq(QN_ERR_INVALID_ARG, 1);
    ck_assert_int_eq(QN_ERR_OUT_OF_MEMORY, 2);
    ck_assert_int_eq(QN_ERR_BUFFER_TOO_SMALL, 3);
    ck_assert_int_eq(QN_ERR_UNSUPPORTED, 4);
    ck_assert_int_eq(QN_ERR_CORRUPT_DATA, 5);
    ck_assert_int_eq(QN_ERR_NOT_TRAINED, 6);
    ck_assert_int_eq(QN_ERR_BACKEND, 7);
    ck_assert_int_eq(QN_ERR_IO, 8);
    ck_assert_int_eq(QN_ERR_OVERFLOW, 9);
    ck_assert_int_eq(QN_ERR_CANCELLED, 10);
    ck_assert_int_eq(QN_ISA_SCALAR, 0);
    ck_assert_int_eq(QN_ISA_AVX2, 1);
    ck_assert_int_eq(QN_ISA_AVX512, 2);
    ck_assert_int_eq(QN_LOG_ERROR, 1);
    ck_assert_int_eq(QN_LOG_DEBUG, 4);
}
END_TEST

START_TEST(status_strings_distinct_and_never_null)
{
    const char *seen[11];
    int i, j;
    for (i = 0; i <= 10; i++) {
        seen[i] = qn_status_str((qn_status)i);
        ck_assert_ptr_nonnull(seen[i]);
        ck_assert_int_gt((int)strlen(seen[i]), 0);
        ck_assert_str_ne(seen[i], "unknown status");
        for (j = 0; j < i; j++)
            ck_assert_str_ne(seen[i], seen[j]);
    }
    ck_assert_str_eq(qn_status_str(QN_OK), "success");
    ck_assert_str_eq(qn_status_str((qn_status)11), "unknown status");
    ck_assert_str_eq(qn_status_str((qn_status)-1), "unknown status");
    ck_assert_str_eq(qn_status_str((qn_status)1000000), "unknown status");
}
END_TEST

START_TEST(version_matches_headers)
{
    char expect[32];
    snprintf(expect, sizeof expect, "%d.%d.%d", QN_VERSION_MAJOR, QN_VERSION_MINOR, QN_VERSION_PATCH);
    ck_assert_str_eq(qn_version(), expect);
    ck_assert_str_eq(qn_version(), QN_VERSION_STRING);
    ck_assert_uint_eq(qn_version_number(), (unsigned)QN_VERSION_NUMBER);
    ck_assert_uint_eq(qn_version_number(),
                      (unsigned)(QN_VERSION_MAJOR * 10000 + QN_VERSION_MINOR * 100 + QN_VERSION_PATCH));
#ifdef QN_EXPECT_VERSION
    /* meson passes project(version) so the runtime cannot drift from the build */
    ck_assert_str_eq(qn_version(), QN_EXPECT_VERSION);
#endif
}
END_TEST

START_TEST(isa_names_round_trip)
{
    qn_isa isa = (qn_isa)99;
    int i;
    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        ck_assert_int_eq(qn_isa_from_name(qn_isa_name((qn_isa)i), &isa), QN_OK);
        ck_assert_int_eq(isa, i);
    }
    ck_assert_str_eq(qn_isa_name(QN_ISA_SCALAR), "scalar");
    ck_assert_str_eq(qn_isa_name(QN_ISA_AVX2), "avx2");
    ck_assert_str_eq(qn_isa_name(QN_ISA_AVX512), "avx512");
    ck_assert_str_eq(qn_isa_name((qn_isa)7), "unknown");
    isa = QN_ISA_AVX2;
    ck_assert_int_eq(qn_isa_from_name("AVX2", &isa), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_isa_from_name("", &isa), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_isa_from_name("avx512x", &isa), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(isa, QN_ISA_AVX2); /* untouched on error */
    ck_assert_int_eq(qn_isa_from_name(NULL, &isa), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_isa_from_name("avx2", NULL), QN_ERR_INVALID_ARG);
}
END_TEST

START_TEST(cpu_best_isa_is_known)
{
    qn_isa best = qn_cpu_best_isa();
    ck_assert(best == QN_ISA_SCALAR || best == QN_ISA_AVX2 || best == QN_ISA_AVX512);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("status");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, status_values_are_pinned);
    tcase_add_test(tc, status_strings_distinct_and_never_null);
    tcase_add_test(tc, version_matches_headers);
    tcase_add_test(tc, isa_names_round_trip);
    tcase_add_test(tc, cpu_best_isa_is_known);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
