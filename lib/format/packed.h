/*
 * libqnoise internal: a compressed weight repacked for this CPU, and the
 * packed-matrix GEMM that runs on it without forming the dense weight.
 * SPDX-License-Identifier: MIT
 *
 *   y[M x rows] = x[M x cols] . W_hat^T (+ bias)
 *
 * W_hat is the decode of a qn_qtensor (qtensor_internal.h): PQ codes and a
 * codebook, or scalar intN codes with per-tensor or per-row scale and zero
 * point. Repacking into CPU-specific layouts happens once, in
 * qn_packed_create (e.g. codes transposed to [blocks per row][rows] so that
 * SIMD lanes take consecutive output rows); files keep the plain layout.
 *
 * Each kind implements qn_packed_ops (packed_pq.c, packed_int.c); packed.c
 * dispatches on the tensor's kind. The tensor must outlive nothing: a packed
 * weight copies what it needs.
 */
#ifndef QN_FORMAT_PACKED_H
#define QN_FORMAT_PACKED_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"
#include "format/qtensor_internal.h"

typedef struct qn_packed qn_packed;

typedef struct qn_packed_ops {
    /* Scratch bytes gemm needs for M rows of x (may be 0). */
    size_t (*workspace_size)(const qn_packed *p, size_t M);
    /*
     * y[m * ldy + o] = sum_c x[m * ldx + c] * W_hat[o][c] (+ bias[o]) for m < M,
     * o < rows. ws: workspace_size(M) bytes, 64-byte aligned (NULL when 0).
     * x, y and bias need no alignment; x and y do not overlap. Cannot fail.
     * Uses up to qn_threads(ctx) OpenMP threads.
     */
    void (*gemm)(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y, size_t ldy,
                 void *ws);
    /* Free impl. */
    void (*destroy)(qn_packed *p);
} qn_packed_ops;

struct qn_packed {
    const qn_context *ctx;
    qn_qtensor_kind kind;
    size_t rows, cols;
    const qn_packed_ops *ops;
    void *impl; /* owned by the kind's code */
};

/* Repack qt for the context's kernels. QN_ERR_OUT_OF_MEMORY; *out NULL on error. */
qn_status qn_packed_create(const qn_context *ctx, const qn_qtensor *qt, qn_packed **out);

/* Free; NULL is a no-op. */
void qn_packed_destroy(qn_packed *p);

/* Scratch of qn_packed_gemm for M rows. */
size_t qn_packed_workspace_size(const qn_packed *p, size_t M);

/* y = x . W_hat^T (+ bias); see qn_packed_ops.gemm. */
void qn_packed_gemm(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y, size_t ldy,
                    void *ws);

/* Kind-specific initialisers: fill p->ops and p->impl (p->ctx, kind, rows, cols already set). */
qn_status qn_packed_pq_init(qn_packed *p, const qn_qtensor *qt);
qn_status qn_packed_int_init(qn_packed *p, const qn_qtensor *qt);

#endif /* QN_FORMAT_PACKED_H */
