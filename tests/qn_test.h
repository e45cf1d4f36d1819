/*
 * Helpers shared by the Check test programs (never installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_TESTS_QN_TEST_H
#define QN_TESTS_QN_TEST_H

#include <check.h>
#include <stdint.h>

/* splitmix64: a small seeded generator for test data (tests never use rand()). */
static inline uint64_t qn_test_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A float uniform in [-1, 1) with 24 random bits. */
static inline float qn_test_uniform(uint64_t *state)
{
    return (float)((double)(qn_test_next(state) >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* Run every test of the suite (CK_RUN_SUITE / CK_RUN_CASE / CK_FORK honoured); exit status. */
static inline int qn_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;
    srunner_run_all(sr, CK_ENV);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}

#endif /* QN_TESTS_QN_TEST_H */
