/*
 * libqnoise: the context (allocator, log, progress, kernel choice).
 * SPDX-License-Identifier: MIT
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "qn_config.h"

#if QN_HAVE_OPENMP
#include <omp.h>
#endif

static void *qn_default_alloc(void *user, size_t size, size_t alignment)
{
    size_t rounded;
    (void)user;
    if (size == 0 || qn_add_overflow(size, alignment - 1, &rounded))
        return NULL;
    rounded -= rounded % alignment; /* C11 aligned_alloc wants a multiple */
    return aligned_alloc(alignment, rounded);
}

static void qn_default_free(void *user, void *ptr)
{
    (void)user;
    free(ptr);
}

static int qn_isa_valid(qn_isa isa)
{
    return isa == QN_ISA_SCALAR || isa == QN_ISA_AVX2 || isa == QN_ISA_AVX512;
}

static int qn_level_valid(qn_log_level l)
{
    return l >= QN_LOG_ERROR && l <= QN_LOG_DEBUG;
}

static void qn_vlog(const qn_context *ctx, qn_log_level level, const char *fmt, va_list ap)
{
    char buf[512];
    if (!ctx || !ctx->log || level > ctx->log_max)
        return;
    vsnprintf(buf, sizeof buf, fmt, ap);
    ctx->log(ctx->log_user, level, buf);
}

void qn_log(const qn_context *ctx, qn_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qn_vlog(ctx, level, fmt, ap);
    va_end(ap);
}

qn_status qn_fail(const qn_context *ctx, qn_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qn_vlog(ctx, QN_LOG_ERROR, fmt, ap);
    va_end(ap);
    return st;
}

void *qn_malloc(const qn_context *ctx, size_t size)
{
    if (size == 0)
        return NULL;
    return ctx->alloc(ctx->alloc_user, size, QN_ALIGN);
}

void *qn_calloc(const qn_context *ctx, size_t count, size_t size)
{
    size_t bytes;
    void *p;
    if (qn_mul_overflow(count, size, &bytes) || bytes == 0)
        return NULL;
    p = qn_malloc(ctx, bytes);
    if (p)
        memset(p, 0, bytes);
    return p;
}

void qn_free(const qn_context *ctx, void *ptr)
{
    if (ptr)
        ctx->free(ctx->alloc_user, ptr);
}

qn_status qn_progress_values(const qn_context *ctx, const char *what, uint64_t done,
                             uint64_t total, const double *values, size_t n_values)
{
    if (!ctx)
        return QN_OK;
    if ((ctx->progress && ctx->progress(ctx->progress_user, what, done, total) != 0) ||
        (ctx->progress_values &&
         ctx->progress_values(ctx->progress_values_user, what, done, total,
                              n_values ? values : NULL, n_values) != 0)) {
        qn_log(ctx, QN_LOG_INFO, "%s: cancelled by the progress callback at %llu/%llu", what,
               (unsigned long long)done, (unsigned long long)total);
        return QN_ERR_CANCELLED;
    }
    return QN_OK;
}

qn_status qn_progress(const qn_context *ctx, const char *what, uint64_t done, uint64_t total)
{
    return qn_progress_values(ctx, what, done, total, NULL, 0);
}

/* Recompute the kernel table from the CPU, the environment cap and the caller's cap. */
static void qn_context_choose_kernels(qn_context *ctx)
{
    qn_isa cap = ctx->isa_cap < ctx->env_cap ? ctx->isa_cap : ctx->env_cap;
    ctx->k = qn_kernels_select(cap);
}

QN_API qn_status qn_context_create_ex(qn_alloc_fn alloc, qn_free_fn free_fn, void *alloc_user,
                                      qn_log_fn log, void *log_user,
                                      qn_progress_fn progress, void *progress_user,
                                      qn_isa isa_cap, qn_context **out)
{
    qn_context tmp, *ctx;
    const char *env;
    if (!out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    memset(&tmp, 0, sizeof tmp);
    tmp.log = log;
    tmp.log_user = log_user;
    tmp.log_max = QN_LOG_INFO;
    if ((alloc == NULL) != (free_fn == NULL))
        return qn_fail(&tmp, QN_ERR_INVALID_ARG,
                       "qn_context_create_ex: alloc and free must be both set or both NULL");
    if (!qn_isa_valid(isa_cap))
        return qn_fail(&tmp, QN_ERR_INVALID_ARG, "qn_context_create_ex: unknown isa_cap %d",
                       (int)isa_cap);
    tmp.alloc = alloc ? alloc : qn_default_alloc;
    tmp.free = free_fn ? free_fn : qn_default_free;
    tmp.alloc_user = alloc ? alloc_user : NULL;
    tmp.progress = progress;
    tmp.progress_user = progress_user;
    tmp.isa_cap = isa_cap;
    tmp.threads = 1;
    tmp.env_cap = QN_ISA_AVX512;
    env = getenv("QN_ISA");
    if (env && *env) {
        qn_isa e;
        if (qn_isa_from_name(env, &e) == QN_OK)
            tmp.env_cap = e;
        else
            qn_log(&tmp, QN_LOG_WARN,
                   "QN_ISA=\"%.32s\" is not one of scalar, avx2, avx512; ignored", env);
    }
    qn_context_choose_kernels(&tmp);
    ctx = (qn_context *)tmp.alloc(tmp.alloc_user, sizeof *ctx, QN_ALIGN);
    if (!ctx)
        return qn_fail(&tmp, QN_ERR_OUT_OF_MEMORY, "qn_context_create_ex: out of memory");
    *ctx = tmp;
    qn_log(ctx, QN_LOG_DEBUG, "context created: kernels %s (cpu best %s)", ctx->k->name,
           qn_isa_name(qn_kernels_best_isa()));
    *out = ctx;
    return QN_OK;
}

QN_API qn_status qn_context_create(qn_context **out)
{
    return qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, QN_ISA_AVX512, out);
}

QN_API void qn_context_destroy(qn_context *ctx)
{
    if (ctx)
        ctx->free(ctx->alloc_user, ctx);
}

QN_API qn_status qn_context_set_log(qn_context *ctx, qn_log_fn log, void *user, qn_log_level max_level)
{
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!qn_level_valid(max_level))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_context_set_log: unknown level %d", (int)max_level);
    ctx->log = log;
    ctx->log_user = user;
    ctx->log_max = max_level;
    return QN_OK;
}

QN_API qn_status qn_context_set_progress(qn_context *ctx, qn_progress_fn progress, void *user)
{
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    ctx->progress = progress;
    ctx->progress_user = user;
    return QN_OK;
}

QN_API qn_status qn_context_set_progress_values(qn_context *ctx, qn_progress_values_fn progress,
                                                void *user)
{
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    ctx->progress_values = progress;
    ctx->progress_values_user = user;
    return QN_OK;
}

QN_API qn_status qn_context_set_isa_cap(qn_context *ctx, qn_isa isa)
{
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!qn_isa_valid(isa))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_context_set_isa_cap: unknown isa %d", (int)isa);
    ctx->isa_cap = isa;
    qn_context_choose_kernels(ctx);
    return QN_OK;
}

QN_API qn_status qn_context_get_isa(const qn_context *ctx, qn_isa *out)
{
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = ctx->k->isa;
    return QN_OK;
}

QN_API qn_status qn_context_set_threads(qn_context *ctx, unsigned threads)
{
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (threads > 4096)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_context_set_threads: %u threads is not plausible", threads);
#if !QN_HAVE_OPENMP
    if (threads != 1)
        qn_log(ctx, QN_LOG_WARN, "qn_context_set_threads: built without OpenMP, calls stay single-threaded");
#endif
    ctx->threads = threads;
    return QN_OK;
}

QN_API qn_status qn_context_get_threads(const qn_context *ctx, unsigned *out)
{
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = ctx->threads;
    return QN_OK;
}

int qn_threads(const qn_context *ctx)
{
#if QN_HAVE_OPENMP
    if (ctx->threads == 0)
        return omp_get_max_threads();
    return (int)ctx->threads;
#else
    (void)ctx;
    return 1;
#endif
}
