/*
 * Helpers shared by the Check test programs (never installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_TESTS_QN_TEST_H
#define QN_TESTS_QN_TEST_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

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

/* Squared L2 distance of two dim-float vectors, accumulated in double (the oracle of the kernels). */
static inline double qn_test_sq_dist(const float *x, const float *c, size_t dim)
{
    double s = 0.0;
    size_t t;
    for (t = 0; t < dim; t++) {
        double e = (double)x[t] - (double)c[t];
        s += e * e;
    }
    return s;
}

/* The smallest qn_test_sq_dist from x to the k rows of c (k >= 1). */
static inline double qn_test_min_sq_dist(const float *x, const float *c, size_t k, size_t dim)
{
    double best = qn_test_sq_dist(x, c, dim);
    size_t j;
    for (j = 1; j < k; j++) {
        double d = qn_test_sq_dist(x, c + j * dim, dim);
        if (d < best)
            best = d;
    }
    return best;
}

/*
 * A counting allocator for qn_context_create_ex that can be told to fail:
 * allocation number fail_from (1-based) and every later one return NULL
 * (0: never). Tests compare allocs with frees to prove nothing leaked.
 */
typedef struct counting_alloc {
    int allocs, frees, fail_from;
    size_t last_align;
} counting_alloc;

static inline void *count_alloc(void *user, size_t size, size_t alignment)
{
    counting_alloc *a = (counting_alloc *)user;
    void *p = NULL;
    if (a->fail_from && a->allocs + 1 >= a->fail_from)
        return NULL;
    if (posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size) != 0)
        return NULL;
    a->allocs++;
    a->last_align = alignment;
    return p;
}

static inline void count_free(void *user, void *ptr)
{
    counting_alloc *a = (counting_alloc *)user;
    if (ptr) {
        a->frees++;
        free(ptr);
    }
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
