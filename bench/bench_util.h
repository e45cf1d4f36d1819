/*
 * Helpers shared by the benchmark programs (never installed).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_BENCH_UTIL_H
#define QN_BENCH_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Monotonic wall time in seconds. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* n floats in [-0.5, 0.5) from a seeded LCG (benchmarks need data, not statistics). */
static inline void fill(float *v, size_t n, uint64_t seed)
{
    size_t i;
    for (i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        v[i] = (float)((double)(seed >> 40) / 16777216.0 - 0.5);
    }
}

/* 64-byte aligned, zeroed; exits the benchmark on failure. */
static inline void *xalloc(size_t bytes)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes) != 0) {
        fprintf(stderr, "out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    memset(p, 0, bytes);
    return p;
}

#endif /* QN_BENCH_UTIL_H */
