/*
 * libqnoise internal: k-means over blocks (the engine behind PQ noise and PQ compression).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_QUANT_KMEANS_H
#define QN_QUANT_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include <qnoise/quant.h>

#include "core/internal.h"

typedef struct qn_kmeans_params {
    size_t k;                  /* centroids, 1 <= k <= n (after subsampling) and <= 65536 */
    unsigned iterations;       /* Lloyd iterations (E-step + M-step), >= 1 */
    double tol;                /* stop early when the relative objective change < tol; 0 = never */
    uint64_t seed;             /* all random choices derive from it (Philox, rng.h) */
    qn_kmeans_init init;       /* random distinct blocks or k-means++ */
    unsigned max_split_tries;  /* empty-cluster repair rounds per iteration (fairseq: 30..100) */
    float split_eps;           /* relative perturbation of a split (e.g. 1e-6 of the scale) */
    size_t max_samples;        /* train on at most this many blocks (0 = all); reported */
} qn_kmeans_params;

typedef struct qn_kmeans_result {
    double objective;          /* mean squared error per block over ALL n blocks, final codebook */
    unsigned iterations_run;
    size_t n_trained;          /* blocks actually used for training (== n unless subsampled) */
    size_t n_splits;           /* empty clusters repaired by splitting */
    size_t n_empty;            /* clusters still empty at the end */
} qn_kmeans_result;

/* Sensible defaults: iterations 20, tol 1e-4, random init, 30 split tries, eps 1e-6, no subsampling. */
void qn_kmeans_defaults(qn_kmeans_params *p, size_t k, uint64_t seed);

/*
 * Train a k x dim codebook on x (n rows of dim floats, contiguous, finite).
 * Writes centroids (k*dim) and, when codes is not NULL, the final assignment
 * of all n rows (nearest centroid, lowest index on ties). Deterministic for a
 * given (x, params, kernel ISA). Uses ctx's kernels and allocator; reports
 * progress ("kmeans", iteration, iterations) and may return QN_ERR_CANCELLED.
 * On error the outputs are untouched and nothing leaks.
 */
qn_status qn_kmeans_train(const qn_context *ctx, const float *x, size_t n, size_t dim,
                          const qn_kmeans_params *p, float *centroids, uint32_t *codes,
                          qn_kmeans_result *res);

#endif /* QN_QUANT_KMEANS_H */
