/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * common.h: export macro, version, status codes, the library context.
 */
#ifndef QNOISE_COMMON_H
#define QNOISE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(QN_BUILDING_LIBRARY)
#define QN_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(QN_STATIC)
#define QN_API __declspec(dllimport)
#elif defined(__GNUC__) && __GNUC__ >= 4
#define QN_API __attribute__((visibility("default")))
#else
#define QN_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Major version: changes only when the ABI breaks (it is the SONAME suffix). */
#define QN_VERSION_MAJOR 1
/** Minor version: grows when functions are added (a new version-script node). */
#define QN_VERSION_MINOR 0
/** Patch version: fixes only. */
#define QN_VERSION_PATCH 0
/** The version as a string, "MAJOR.MINOR.PATCH". */
#define QN_VERSION_STRING "1.0.0"
/** The version as one comparable number: MAJOR*10000 + MINOR*100 + PATCH. */
#define QN_VERSION_NUMBER (QN_VERSION_MAJOR * 10000 + QN_VERSION_MINOR * 100 + QN_VERSION_PATCH)

/**
 * Result of every fallible call. Values are pinned and only ever appended.
 * On any error the outputs of the call (buffers, counts, the caller's weights
 * and gradients) are left untouched, with one exception: a create function
 * sets its handle out-parameter *out to NULL, so no stale handle survives.
 */
typedef enum qn_status {
    QN_OK = 0,                   /**< success */
    QN_ERR_INVALID_ARG = 1,      /**< NULL, zero or out-of-range argument, bad shape */
    QN_ERR_OUT_OF_MEMORY = 2,    /**< the allocator returned NULL */
    QN_ERR_BUFFER_TOO_SMALL = 3, /**< a caller buffer or workspace is too small */
    QN_ERR_UNSUPPORTED = 4,      /**< valid request this build or CPU cannot serve */
    QN_ERR_CORRUPT_DATA = 5,     /**< malformed, truncated or checksum-failing input */
    QN_ERR_NOT_TRAINED = 6,      /**< object used before it was trained or bound */
    QN_ERR_BACKEND = 7,          /**< a backend (BLAS, OS) call failed */
    QN_ERR_IO = 8,               /**< a file could not be opened, read or written */
    QN_ERR_OVERFLOW = 9,         /**< a size computation would overflow size_t */
    QN_ERR_CANCELLED = 10        /**< a progress callback asked to stop */
} qn_status;

/** A static English description of @p s; never NULL, "unknown status" for unknown values. */
QN_API const char *qn_status_str(qn_status s);

/** The runtime library version as "MAJOR.MINOR.PATCH"; compare with QN_VERSION_STRING. */
QN_API const char *qn_version(void);

/** The runtime library version as MAJOR*10000 + MINOR*100 + PATCH. */
QN_API uint32_t qn_version_number(void);

/**
 * Instruction-set levels of the compiled kernels, ordered: a cap of L allows
 * every level <= L. Values are pinned.
 */
typedef enum qn_isa {
    QN_ISA_SCALAR = 0, /**< portable C reference kernels (always present) */
    QN_ISA_AVX2 = 1,   /**< x86-64 AVX2 + FMA */
    QN_ISA_AVX512 = 2  /**< x86-64 AVX-512 F/BW/VL/DQ */
} qn_isa;

/** Short lower-case name of @p isa ("scalar", "avx2", "avx512"); "unknown" otherwise. */
QN_API const char *qn_isa_name(qn_isa isa);

/** Parse "scalar", "avx2" or "avx512" (as in the QN_ISA variable) into @p out. */
QN_API qn_status qn_isa_from_name(const char *name, qn_isa *out);

/** The best level this CPU and OS support among those compiled into this build. */
QN_API qn_isa qn_cpu_best_isa(void);

/** Severity of a log message. Values are pinned. */
typedef enum qn_log_level {
    QN_LOG_ERROR = 1, /**< a call is failing; the message says why */
    QN_LOG_WARN = 2,  /**< something was adjusted or ignored */
    QN_LOG_INFO = 3,  /**< one line per long operation */
    QN_LOG_DEBUG = 4  /**< detail for developers */
} qn_log_level;

/** Allocate @p size bytes aligned to @p alignment (a power of two); NULL on failure. */
typedef void *(*qn_alloc_fn)(void *user, size_t size, size_t alignment);
/** Release memory from the matching qn_alloc_fn; @p ptr may be NULL. */
typedef void (*qn_free_fn)(void *user, void *ptr);
/** Receive one log line (no trailing newline); called on the thread that made the call. */
typedef void (*qn_log_fn)(void *user, qn_log_level level, const char *message);
/**
 * Progress of a long operation named @p what: @p done of @p total units.
 * Return 0 to go on, non-zero to stop the operation with QN_ERR_CANCELLED.
 */
typedef int (*qn_progress_fn)(void *user, const char *what, uint64_t done, uint64_t total);
/**
 * Progress with values: as qn_progress_fn, plus @p n_values numbers that
 * describe the state (@p values is NULL and @p n_values 0 when the operation
 * has none). For "kmeans" (done = iteration, total = iterations), after each
 * iteration: values[0] = objective, the mean squared error per block of the
 * assignment made in this iteration, over the trained blocks, to the centroids
 * it was made with (before their update); values[1] = imbalance factor
 * k * sum(count_j^2) / n^2 of that assignment (1 = perfectly balanced).
 * Return 0 to go on, non-zero to stop with QN_ERR_CANCELLED.
 */
typedef int (*qn_progress_values_fn)(void *user, const char *what, uint64_t done, uint64_t total,
                                     const double *values, size_t n_values);

/**
 * The library context: allocator, log and progress callbacks, and the kernel
 * table chosen for this CPU. Opaque. A context may be shared by threads as long
 * as none of them changes its settings concurrently.
 */
typedef struct qn_context qn_context;

/**
 * Create a context with the default allocator, no log output, no progress
 * callback and the best kernels of this CPU (capped by the QN_ISA environment
 * variable when it is set). *out is set to NULL on failure.
 */
QN_API qn_status qn_context_create(qn_context **out);

/**
 * Create a context with a custom allocator (@p alloc and @p free both set or
 * both NULL for the default), log and progress callbacks (each may be NULL),
 * and an ISA cap: the kernels used are the best of min(CPU, QN_ISA, @p isa_cap).
 */
QN_API qn_status qn_context_create_ex(qn_alloc_fn alloc, qn_free_fn free_fn, void *alloc_user,
                                      qn_log_fn log, void *log_user,
                                      qn_progress_fn progress, void *progress_user,
                                      qn_isa isa_cap, qn_context **out);

/** Destroy a context; NULL is a no-op. Objects created from it must be destroyed first. */
QN_API void qn_context_destroy(qn_context *ctx);

/** Replace the log callback (NULL silences) and the most verbose level delivered. */
QN_API qn_status qn_context_set_log(qn_context *ctx, qn_log_fn log, void *user, qn_log_level max_level);

/** Replace the progress callback (NULL removes it). */
QN_API qn_status qn_context_set_progress(qn_context *ctx, qn_progress_fn progress, void *user);

/** Set the progress-with-values callback (NULL removes it); it is called after the plain one. */
QN_API qn_status qn_context_set_progress_values(qn_context *ctx, qn_progress_values_fn progress,
                                                void *user);

/** Cap the kernels of this context at @p isa (also capped by the CPU and QN_ISA). */
QN_API qn_status qn_context_set_isa_cap(qn_context *ctx, qn_isa isa);

/**
 * Threads the library may use inside one call (streaming noise passes,
 * k-means training, PQ assignment and partial sums) when built with OpenMP:
 * 1 (the default) never starts a thread, 0 means OpenMP's default (all
 * cores). Work is cut into one contiguous range per thread and partial sums
 * are added in range order, so results are deterministic for a given thread
 * count; codes never depend on it, sums and k-means centroids may differ
 * between thread counts in the last bits. BLAS threads are not affected:
 * they remain the application's setting. With several library threads and a
 * multi-threaded BLAS, set OMP_WAIT_POLICY=passive so idle OpenMP threads do
 * not spin against the BLAS threads.
 */
QN_API qn_status qn_context_set_threads(qn_context *ctx, unsigned threads);

/** The thread setting of @p ctx (see qn_context_set_threads) in @p out. */
QN_API qn_status qn_context_get_threads(const qn_context *ctx, unsigned *out);

/** The instruction-set level of the kernels this context uses, in @p out. */
QN_API qn_status qn_context_get_isa(const qn_context *ctx, qn_isa *out);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_COMMON_H */
