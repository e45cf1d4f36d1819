/*
 * libqnoise internal: knobs of the packed PQ GEMM (packed_pq.c), for the tests
 * and the benchmark. Never installed; the library itself only uses the
 * defaults.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_PACKED_PQ_H
#define QN_FORMAT_PACKED_PQ_H

#include <stddef.h>

#include "format/packed.h"

/* The three ways packed_pq.c computes y = x . W_hat^T (see the comment at its top). */
typedef enum qn_pq_path {
    QN_PQ_PATH_AUTO = 0,   /* chosen per call from M, k and rows (the defaults below) */
    QN_PQ_PATH_GATHER = 1, /* tables x_j . c, output rows in the lanes, gathers */
    QN_PQ_PATH_BATCH = 2,  /* tables x_j . c, batch rows in the lanes, vector loads */
    QN_PQ_PATH_DECODE = 3  /* decode panels of W_hat, cblas_sgemm on them */
} qn_pq_path;

typedef struct qn_packed_pq_tuning {
    qn_pq_path force;    /* AUTO, or the path every call takes */
    size_t gather_max_m; /* AUTO: M < gather_max_m takes the gather path (when k <= 4 rows) */
    size_t decode_min_m; /* AUTO, rows / 2 < k <= rows: M >= decode_min_m decodes, smaller M batch */
    size_t lut_bytes;    /* target bytes per chunk of tables (at least one subspace); 0: the defaults */
    size_t tile_rows;    /* decode path: output rows per panel (1 .. 2^20) */
    size_t tile_cols;    /* decode path: columns per panel, rounded down to whole blocks (1 .. 2^20) */
    size_t par_min_work; /* fewer table lookups (M * rows * cols / bs) than this run on one thread */
} qn_packed_pq_tuning;

/* Read the knobs of a packed weight of kind PQ. QN_ERR_INVALID_ARG for another kind. */
qn_status qn_packed_pq_get_tuning(const qn_packed *p, qn_packed_pq_tuning *t);

/*
 * Set them (QN_ERR_INVALID_ARG for another kind or a value out of range). Not thread-safe with
 * a concurrent gemm on the same weight; query the workspace size again afterwards.
 */
qn_status qn_packed_pq_set_tuning(qn_packed *p, const qn_packed_pq_tuning *t);

/* The path a gemm of M rows takes with the current knobs (never AUTO). */
qn_pq_path qn_packed_pq_path(const qn_packed *p, size_t M);

#endif /* QN_FORMAT_PACKED_PQ_H */
