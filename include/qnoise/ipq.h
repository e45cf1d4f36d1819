/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * ipq.h: iterative product quantization (iPQ) of a model's layers, int8
 * codebooks and size accounting.
 *
 * Register the layers to compress, each with a stage number, block size and
 * number of centroids. Each qn_ipq_advance() compresses the layers of the next
 * stage (lowest stage number first) with k-means and switches them to their
 * compressed weights (qn_layer_compress_pq); keep training between stages: the
 * layers still dense train as before, the compressed ones train their
 * centroids (qn_layer_backward's dweight becomes the centroid gradient,
 * qn_layer_pq_centroids the buffer to update). Re-create the optimizer state
 * of the compressed layers at each stage, as the paper does.
 */
#ifndef QNOISE_IPQ_H
#define QNOISE_IPQ_H

#include <qnoise/common.h>
#include <qnoise/layer.h>
#include <qnoise/quant.h>

#ifdef __cplusplus
extern "C" {
#endif

/** An iPQ schedule over registered layers. Opaque; not thread-safe. */
typedef struct qn_ipq qn_ipq;

/** Precision codebooks are stored in, for the size accounting. Values are pinned. */
typedef enum qn_codebook_precision {
    QN_CODEBOOK_FP32 = 0, /**< 4 bytes per centroid coordinate */
    QN_CODEBOOK_FP16 = 1, /**< 2 bytes (fairseq's accounting; the default) */
    QN_CODEBOOK_INT8 = 2  /**< 1 byte, plus a float scale and an int32 zero point per codebook */
} qn_codebook_precision;

/**
 * Items of the size accounting, in bytes. "fairseq" items follow fairseq's
 * SizeTracker: codes at log2(K)/block_size bits per weight (fractional),
 * centroids at fp16, every other parameter at fp32. Values are pinned.
 */
typedef enum qn_size_item {
    QN_SIZE_BASELINE = 0,        /**< every parameter at fp32 */
    QN_SIZE_CODES = 1,           /**< fairseq: numel * log2(K) / block_size bits */
    QN_SIZE_CODES_PACKED = 2,    /**< exact: ceil(log2 K) bits per block, packed per layer */
    QN_SIZE_CODES_ALIGNED = 3,   /**< codes at 4, 8 or 16 bits (the storage widths) */
    QN_SIZE_CENTROIDS_FP16 = 4,  /**< fairseq: K * block_size * 2 */
    QN_SIZE_CENTROIDS = 5,       /**< in the stored precision (int8: + scale + zero point) */
    QN_SIZE_OTHER = 6,           /**< parameters not compressed (biases, dense layers, extras) at fp32 */
    QN_SIZE_TOTAL = 7,           /**< fairseq: CODES + CENTROIDS_FP16 + OTHER */
    QN_SIZE_TOTAL_PACKED = 8     /**< exact: CODES_PACKED + CENTROIDS + OTHER */
} qn_size_item;

/** Create an empty schedule (15 k-means iterations, seed 0, mean centroid gradients, fp16 codebooks). */
QN_API qn_status qn_ipq_create(qn_context *ctx, qn_ipq **out);

/** Destroy a schedule (the layers stay as they are); NULL is a no-op. */
QN_API void qn_ipq_destroy(qn_ipq *ipq);

/**
 * Register @p layer (it must outlive the schedule) under @p name (copied; may
 * be NULL) for @p stage with @p block_size and @p n_centroids, checked as
 * qn_layer_compress_pq checks them. A layer is registered once.
 */
QN_API qn_status qn_ipq_add_layer(qn_ipq *ipq, qn_layer *layer, const char *name, unsigned stage,
                                  size_t block_size, size_t n_centroids);

/** Count @p count more model parameters that stay fp32 (norms, unregistered layers) in the sizes. */
QN_API qn_status qn_ipq_add_params(qn_ipq *ipq, size_t count);

/** k-means iterations of every stage (>= 1; default 15, fairseq's pipeline). */
QN_API qn_status qn_ipq_set_iterations(qn_ipq *ipq, unsigned iterations);

/** Seed of the k-means runs (each layer derives its own from it and its registration index). */
QN_API qn_status qn_ipq_set_seed(qn_ipq *ipq, uint64_t seed);

/** Centroid gradient reduction given to the layers it compresses (default mean). */
QN_API qn_status qn_ipq_set_centroid_grad(qn_ipq *ipq, qn_centroid_grad mode);

/** Precision of the codebooks for the size accounting (FP32 or FP16; INT8 comes from qn_ipq_codebooks_int8). */
QN_API qn_status qn_ipq_set_codebook_precision(qn_ipq *ipq, qn_codebook_precision precision);

/** Number of distinct stages registered and of stages compressed so far. Either out may be NULL. */
QN_API qn_status qn_ipq_get_stages(const qn_ipq *ipq, unsigned *n_stages, unsigned *n_done);

/**
 * Compress the layers of the next stage; @p stage (may be NULL) receives its
 * number. All layers of the stage are compressed or none (on error, including
 * QN_ERR_CANCELLED from the progress callback, nothing changes). Returns
 * QN_ERR_INVALID_ARG when every stage is done.
 */
QN_API qn_status qn_ipq_advance(qn_ipq *ipq, unsigned *stage);

/**
 * Turn the codebooks of every compressed layer to int8 (qn_layer_pq_codebook_int8
 * with @p scheme) and count them as int8 from then on. @p max_mse (may be
 * NULL) receives the largest per-layer decode MSE.
 */
QN_API qn_status qn_ipq_codebooks_int8(qn_ipq *ipq, qn_qscheme scheme, double *max_mse);

/** One item of the size accounting of the model as it stands, in bytes. */
QN_API qn_status qn_ipq_get_size(const qn_ipq *ipq, qn_size_item item, double *bytes);

/** Number of registered layers. */
QN_API qn_status qn_ipq_num_layers(const qn_ipq *ipq, size_t *n_layers);

/**
 * Report of registered layer @p index: whether it is compressed, its exact
 * stored bytes (packed codes + codebook; fp32 weight while dense), relative
 * MSE and SNR in dB against its bound weight (0 and +inf while dense). Outs may be NULL.
 */
QN_API qn_status qn_ipq_layer_report(const qn_ipq *ipq, size_t index, int *compressed, double *bytes,
                                     double *rel_mse, double *snr_db);

/**
 * A human-readable table of the layers and the sizes into @p buf (@p cap
 * bytes, NUL-terminated); @p length receives the text length without the NUL.
 * With buf == NULL only the length is computed; a too small buffer gives
 * QN_ERR_BUFFER_TOO_SMALL with *length set and buf untouched.
 */
QN_API qn_status qn_ipq_report(const qn_ipq *ipq, char *buf, size_t cap, size_t *length);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_IPQ_H */
