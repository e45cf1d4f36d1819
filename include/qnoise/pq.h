/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * pq.h: product quantization of weight blocks (the k-means codebook behind PQ
 * noise and iPQ compression). Blocks are rows of block_size floats.
 */
#ifndef QNOISE_PQ_H
#define QNOISE_PQ_H

#include <qnoise/common.h>
#include <qnoise/quant.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A product quantizer: K centroids of block_size floats. Opaque; const calls are thread-safe. */
typedef struct qn_pq qn_pq;

/** Create a quantizer for blocks of @p block_size floats with @p n_centroids (2..65536) centroids. */
QN_API qn_status qn_pq_create(qn_context *ctx, size_t block_size, size_t n_centroids, qn_pq **out);

/** Destroy a quantizer; NULL is a no-op. */
QN_API void qn_pq_destroy(qn_pq *pq);

/** Seed of every random choice of training (initialisation, subsampling, splits). Default 0. */
QN_API qn_status qn_pq_set_seed(qn_pq *pq, uint64_t seed);

/** Lloyd iterations of training (>= 1). Default 20. */
QN_API qn_status qn_pq_set_iterations(qn_pq *pq, unsigned iterations);

/** Initialisation: random distinct blocks (default) or k-means++. */
QN_API qn_status qn_pq_set_init(qn_pq *pq, qn_kmeans_init init);

/** Stop early when the relative objective change falls to @p tol or below (>= 0; 0 never). Default 1e-4. */
QN_API qn_status qn_pq_set_tolerance(qn_pq *pq, double tol);

/** Train on at most @p max_samples blocks drawn without replacement (0 = all; default). Reported, never silent. */
QN_API qn_status qn_pq_set_max_samples(qn_pq *pq, size_t max_samples);

/**
 * Train the codebook by k-means on @p n_blocks blocks (n_blocks x block_size
 * floats, finite). Needs at least K blocks (after subsampling). On error the
 * previous codebook, if any, is kept. Each iteration goes to the context's
 * progress callbacks ("kmeans"; with values: objective and imbalance, see
 * qn_progress_values_fn), either of which may cancel (QN_ERR_CANCELLED).
 * Deterministic for a given seed and thread count (qn_context_set_threads);
 * with another thread count the centroids may differ in the last bits.
 */
QN_API qn_status qn_pq_train(qn_pq *pq, const float *blocks, size_t n_blocks);

/**
 * The nearest centroid of each block (lowest index on exact ties) into
 * @p codes[n_blocks]. The fused distance ||c||^2 - 2 x.c is used where its
 * rounding is proven harmless: a code's squared distance is then within a
 * relative 1e-3 of the nearest in the worst case (about 1e-6 in practice);
 * other blocks (far from the origin compared with their spread, on a
 * centroid, ...) are assigned by exact differences (relative 1e-5). Codes do
 * not depend on the thread count. Allocates nothing.
 */
QN_API qn_status qn_pq_assign(const qn_pq *pq, const float *blocks, size_t n_blocks, uint16_t *codes);

/** Rebuild blocks from codes: blocks[i] = centroid[codes[i]] (n_blocks x block_size floats). */
QN_API qn_status qn_pq_decode(const qn_pq *pq, const uint16_t *codes, size_t n_blocks, float *blocks);

/** Copy the codebook (K x block_size floats) into @p centroids. */
QN_API qn_status qn_pq_get_centroids(const qn_pq *pq, float *centroids);

/** Replace the codebook with @p centroids (K x block_size floats, finite); the quantizer counts as trained. */
QN_API qn_status qn_pq_set_centroids(qn_pq *pq, const float *centroids);

/** Mean squared error per block of the last training, over all its blocks. */
QN_API qn_status qn_pq_objective(const qn_pq *pq, double *mean_sq_error);

/**
 * What the last training did: blocks actually trained on (less than given when
 * subsampled), iterations run (early stop), empty clusters repaired by
 * splitting, and clusters still empty. Any out pointer may be NULL.
 */
QN_API qn_status qn_pq_get_training_info(const qn_pq *pq, size_t *n_trained, unsigned *iterations_run,
                                         size_t *n_splits, size_t *n_empty);

/** Block size and number of centroids of @p pq. Either out pointer may be NULL. */
QN_API qn_status qn_pq_get_shape(const qn_pq *pq, size_t *block_size, size_t *n_centroids);

/**
 * One Lloyd E-step on a shard, for a k-means whose data is spread over
 * processes (each process reduces the arrays with its own collective, then
 * calls qn_pq_update_from_sums). Assigns the @p n_blocks blocks (finite) to
 * the current codebook as qn_pq_assign does and ADDS to the caller's arrays:
 * @p sums (K x block_size doubles) the sum of the blocks assigned to each
 * centroid, @p counts (K) how many, and, when @p sq_err is not NULL, the total
 * squared distance of the blocks to their centroids. The call's own totals are
 * formed first (in double, in block order per thread, threads added in order)
 * and then added, so the results are deterministic for a given thread count;
 * across thread counts they may differ in the last bits. Needs a codebook
 * (QN_ERR_NOT_TRAINED). On error nothing is written.
 */
QN_API qn_status qn_pq_partial_sums(const qn_pq *pq, const float *blocks, size_t n_blocks, double *sums,
                                    uint64_t *counts, double *sq_err);

/**
 * The Lloyd M-step from reduced sums: centroid k becomes sums_k / counts_k
 * (computed in double, rounded once to float); centroids with count 0 are
 * kept and counted in @p n_empty (may be NULL). Every sum must be finite and
 * every new centroid must fit a float (QN_ERR_INVALID_ARG otherwise). Needs a
 * codebook (QN_ERR_NOT_TRAINED). The quantizer no longer counts as trained by
 * qn_pq_train (no objective or training info). On error nothing is written.
 */
QN_API qn_status qn_pq_update_from_sums(qn_pq *pq, const double *sums, const uint64_t *counts,
                                        size_t *n_empty);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_PQ_H */
