/*
 * libqnoise internal: the context, logging, allocation and checked size math.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_CORE_INTERNAL_H
#define QN_CORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include <qnoise/common.h>

#include "kernels/kernels.h"

#if defined(__GNUC__)
#define QN_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define QN_PRINTF(a, b)
#endif

/* Default alignment of library allocations: one cache line, enough for AVX-512. */
#define QN_ALIGN 64

struct qn_context {
    qn_alloc_fn alloc;
    qn_free_fn free;
    void *alloc_user;
    qn_log_fn log;
    void *log_user;
    qn_log_level log_max;
    qn_progress_fn progress;
    void *progress_user;
    qn_progress_values_fn progress_values;
    void *progress_values_user;
    qn_isa isa_cap;     /* what the caller asked for */
    qn_isa env_cap;     /* QN_ISA at creation, or QN_ISA_AVX512 when unset */
    const qn_kernels *k; /* the table in use: best of min(cpu, env_cap, isa_cap) */
    unsigned threads;    /* library threads per call: 1 default, 0 = OpenMP default */
};

/* Deliver a message at `level` through the context's log callback, if any. */
void qn_log(const qn_context *ctx, qn_log_level level, const char *fmt, ...) QN_PRINTF(3, 4);

/* Log `fmt` at QN_LOG_ERROR and return `st`: `return qn_fail(ctx, QN_ERR_..., "...")`. */
qn_status qn_fail(const qn_context *ctx, qn_status st, const char *fmt, ...) QN_PRINTF(3, 4);

/* Aligned allocation through the context allocator (NULL when size is 0 or on failure). */
void *qn_malloc(const qn_context *ctx, size_t size);
void *qn_calloc(const qn_context *ctx, size_t count, size_t size);
void qn_free(const qn_context *ctx, void *ptr);

/* Threads a parallel region of the library may use (>= 1). */
int qn_threads(const qn_context *ctx);

/* Report progress; returns QN_ERR_CANCELLED when the callback asks to stop. */
qn_status qn_progress(const qn_context *ctx, const char *what, uint64_t done, uint64_t total);

/*
 * Report progress with n_values numbers (values may be NULL when n_values is
 * 0): the plain callback, then the values callback, each when set; the first
 * non-zero return cancels (QN_ERR_CANCELLED) and the other is not called.
 * qn_progress is this with no values.
 */
qn_status qn_progress_values(const qn_context *ctx, const char *what, uint64_t done,
                             uint64_t total, const double *values, size_t n_values);

/* Checked size arithmetic: return 0 and set *out, or return 1 on overflow. */
static inline int qn_mul_overflow(size_t a, size_t b, size_t *out)
{
#if defined(__GNUC__)
    return __builtin_mul_overflow(a, b, out);
#else
    if (a != 0 && b > SIZE_MAX / a)
        return 1;
    *out = a * b;
    return 0;
#endif
}

static inline int qn_add_overflow(size_t a, size_t b, size_t *out)
{
#if defined(__GNUC__)
    return __builtin_add_overflow(a, b, out);
#else
    if (b > SIZE_MAX - a)
        return 1;
    *out = a + b;
    return 0;
#endif
}

#endif /* QN_CORE_INTERNAL_H */
