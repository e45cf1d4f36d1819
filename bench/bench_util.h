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

#include <qnoise/qnoise.h>

#if defined(__GNUC__) && defined(__x86_64__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

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

/* ------------------------------------------------------------------------------------------ */
/* machine limits                                                                              */

/* FMA peak of one thread, GFLOP/s: 12 independent chains of vector FMAs (enough to hide the
 * latency on two ports). */
#if BENCH_X86
#define PEAK_CHAINS(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

__attribute__((target("avx512f"))) static inline double peak_avx512(long iters)
{
#define P5_DECL(q) __m512 a##q = _mm512_set1_ps((float)(q));
#define P5_STEP(q) a##q = _mm512_fmadd_ps(a##q, m, b);
#define P5_SUM(q) s = _mm512_add_ps(s, a##q);
    const __m512 m = _mm512_set1_ps(0.9999999f), b = _mm512_set1_ps(1e-7f);
    __m512 s = _mm512_setzero_ps();
    volatile float sink;
    double t0;
    long i;
    PEAK_CHAINS(P5_DECL)
    t0 = now();
    for (i = 0; i < iters; i++) {
        PEAK_CHAINS(P5_STEP)
    }
    t0 = now() - t0;
    PEAK_CHAINS(P5_SUM)
    sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return 2.0 * 16 * 12 * (double)iters / t0 / 1e9;
}

__attribute__((target("avx2,fma"))) static inline double peak_avx2(long iters)
{
#define P2_DECL(q) __m256 a##q = _mm256_set1_ps((float)(q));
#define P2_STEP(q) a##q = _mm256_fmadd_ps(a##q, m, b);
#define P2_SUM(q) s = _mm256_add_ps(s, a##q);
    const __m256 m = _mm256_set1_ps(0.9999999f), b = _mm256_set1_ps(1e-7f);
    __m256 s = _mm256_setzero_ps();
    float out[8];
    volatile float sink;
    double t0;
    long i;
    PEAK_CHAINS(P2_DECL)
    t0 = now();
    for (i = 0; i < iters; i++) {
        PEAK_CHAINS(P2_STEP)
    }
    t0 = now() - t0;
    PEAK_CHAINS(P2_SUM)
    _mm256_storeu_ps(out, s);
    sink = out[0];
    (void)sink;
    return 2.0 * 8 * 12 * (double)iters / t0 / 1e9;
}
#endif

/* FMA peak of one thread for the ISA the kernels use, GFLOP/s; 0 without a probe for it. */
static inline double peak_fma(qn_isa isa, long iters)
{
#if BENCH_X86
    if (isa == QN_ISA_AVX512)
        return peak_avx512(iters);
    if (isa == QN_ISA_AVX2)
        return peak_avx2(iters);
#endif
    (void)isa;
    (void)iters;
    return 0.0;
}

/* FMA peak of `threads` threads running at once (OpenMP; one thread without it), GFLOP/s summed
 * over the threads: the best of `runs` runs of `iters` iterations each. */
static inline double measure_peak(qn_isa isa, int threads, int runs, long iters)
{
    double best = 0.0;
    int r;
    for (r = 0; r < runs; r++) {
        double g = 0.0;
#if defined(_OPENMP)
#pragma omp parallel num_threads(threads) reduction(+ : g)
#endif
        g += peak_fma(isa, iters);
        if (g > best)
            best = g;
    }
    (void)threads;
    return best;
}

/* Sum of n floats (the read-bandwidth loop): vector loads into four independent accumulators.
 * v is 64-byte aligned; the tail past the last whole block of 64 (32 for AVX2) is not read. */
#if BENCH_X86
__attribute__((target("avx512f"))) static inline float read_sum512(const float *v, size_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    size_t i;
    for (i = 0; i + 64 <= n; i += 64) {
        s0 = _mm512_add_ps(s0, _mm512_load_ps(v + i));
        s1 = _mm512_add_ps(s1, _mm512_load_ps(v + i + 16));
        s2 = _mm512_add_ps(s2, _mm512_load_ps(v + i + 32));
        s3 = _mm512_add_ps(s3, _mm512_load_ps(v + i + 48));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

__attribute__((target("avx2"))) static inline float read_sum256(const float *v, size_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    float out[8];
    size_t i;
    for (i = 0; i + 32 <= n; i += 32) {
        s0 = _mm256_add_ps(s0, _mm256_load_ps(v + i));
        s1 = _mm256_add_ps(s1, _mm256_load_ps(v + i + 8));
        s2 = _mm256_add_ps(s2, _mm256_load_ps(v + i + 16));
        s3 = _mm256_add_ps(s3, _mm256_load_ps(v + i + 24));
    }
    _mm256_storeu_ps(out, _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
#endif

/* read_sum512 / read_sum256 for the ISA the kernels use, a scalar loop without either. */
static inline float read_sum(qn_isa isa, const float *v, size_t n)
{
    float s = 0.0f;
    size_t i;
#if BENCH_X86
    if (isa == QN_ISA_AVX512)
        return read_sum512(v, n);
    if (isa == QN_ISA_AVX2)
        return read_sum256(v, n);
#endif
    (void)isa;
    for (i = 0; i < n; i++)
        s += v[i];
    return s;
}

#endif /* QN_BENCH_UTIL_H */
