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
 * of all n rows (nearest centroid, lowest index on ties, within the slack of
 * qn_assign_rows). Deterministic for a given (x, params, kernel ISA, thread
 * count): the rows are cut into one contiguous range per thread
 * (qn_threads(ctx)), each range sums into its own buffers, and the buffers
 * are added in range order; codes do not depend on the thread count, sums and
 * objective may differ between thread counts in the last bits (summation
 * order). Uses ctx's kernels and allocator; reports progress ("kmeans",
 * iteration, iterations; values: objective of the iteration's assignment and
 * its imbalance, see qn_progress_values_fn) and may return QN_ERR_CANCELLED.
 * On error the outputs are untouched and nothing leaks.
 */
qn_status qn_kmeans_train(const qn_context *ctx, const float *x, size_t n, size_t dim,
                          const qn_kmeans_params *p, float *centroids, uint32_t *codes,
                          qn_kmeans_result *res);

/* ------------------------------------------------------------------------- */
/* Assignment with the fused kernel, shared by k-means and qn_pq              */
/* ------------------------------------------------------------------------- */

/* Largest dim the fused kernel is used for (its error bound grows with dim). */
#define QN_FUSED_MAX_DIM ((size_t)256)

/*
 * A fused choice is kept only when its proven rounding error leaves the
 * chosen centroid's squared distance within this relative slack of the
 * nearest one; every other row is assigned again by exact differences.
 */
#define QN_ASSIGN_REL 1e-3

/*
 * cn[j] = ||c_j||^2 of the k centroids (dim floats each), summed in double
 * and rounded once (clamped to FLT_MAX). Returns the largest sum, in double.
 */
double qn_centroid_norms(const float *c, size_t k, size_t dim, float *cn);

/*
 * Whether the fused kernel may run on rows whose elements are at most xmax in
 * magnitude against centroids whose squared norms are at most cn_max: dim <=
 * QN_FUSED_MAX_DIM, and no intermediate of the fused formula can overflow.
 */
int qn_fused_usable(size_t dim, double xmax, double cn_max);

/*
 * Nearest centroid of the n rows of x (stride ldx) among the k centroids c
 * (k x dim), into codes. With cn == NULL: the exact-difference kernel
 * (nearest_l2). With cn (the norms of qn_centroid_norms, and
 * qn_fused_usable true): the fused kernel (pq_assign, dists into `scratch`, n
 * floats), then per row a bound on the rounding of the fused formula: with
 * D the distance the kernel reports and m2 = cn[code], the choice is kept iff
 *     g (16 D + 14 m2) <= QN_ASSIGN_REL / 2 * D,    g = 1.001 (dim + 2) 2^-24,
 * which proves (for the summation shapes of every ISA's pq_assign) that the
 * chosen squared distance is within a relative QN_ASSIGN_REL of the minimum;
 * other rows (data far from the origin compared with its spread, a row on a
 * centroid, ...) are assigned again by nearest_l2 (relative 1e-5). Per row,
 * so codes do not depend on how the caller splits the rows. Returns the
 * number of rows assigned again.
 */
size_t qn_assign_rows(const qn_kernels *kt, const float *x, size_t n, size_t ldx, size_t dim,
                      const float *c, const float *cn, size_t k, uint32_t *codes, float *scratch);

#endif /* QN_QUANT_KMEANS_H */
