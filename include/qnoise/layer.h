/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * layer.h: Quant-Noise layers (linear, conv2d, embedding) for C/C++ training code.
 *
 * The caller owns the weights, biases, activations and gradients; a layer only
 * points at them (qn_layer_bind) and never writes the weights. On every
 * training step call qn_layer_forward_noisy(step) then qn_layer_backward(step)
 * with the same step: the mask of noised blocks is a pure function of
 * (seed, layer_id, step, block index) (see rng.h), so backward regenerates it
 * and every data-parallel rank draws the same one.
 *
 * Layouts are PyTorch's, row-major: linear W[out][in], x[batch][in],
 * y[batch][out] = x W^T + b; conv2d W[out][in/groups][kh][kw] on NCHW
 * activations; embedding W[num][dim], x = int64_t indices[batch], y[batch][dim].
 * Blocks (the unit of noise and of PQ) are block_size consecutive weights of
 * one row of the weight viewed as a matrix [out][in*kh*kw/groups] (linear:
 * [out][in], embedding: [num][dim]); block b = row * (cols / block_size) + j.
 */
#ifndef QNOISE_LAYER_H
#define QNOISE_LAYER_H

#include <qnoise/common.h>
#include <qnoise/quant.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A Quant-Noise layer. Opaque; not thread-safe (one thread per layer at a time). */
typedef struct qn_layer qn_layer;

/** What a noised block becomes during a training forward. Values are pinned. */
typedef enum qn_noise_kind {
    QN_NOISE_NONE = 0,   /**< no noise: forward_noisy equals forward */
    QN_NOISE_PROXY = 1,  /**< dropped (zero), kept blocks scaled by 1/(1-p) */
    QN_NOISE_SCALAR = 2, /**< intN fake-quantized value (observer, bits 2..8) */
    QN_NOISE_PQ = 3      /**< its PQ centroid (k-means over the layer's blocks) */
} qn_noise_kind;

/** The kind of a layer. Values are pinned. */
typedef enum qn_layer_kind {
    QN_LAYER_LINEAR = 1,   /**< y = x W^T + b */
    QN_LAYER_CONV2D = 2,   /**< 2-D convolution, NCHW, via im2col + sgemm */
    QN_LAYER_EMBEDDING = 3 /**< y[i] = W[x[i]] */
} qn_layer_kind;

/** Gradient of the noised blocks. Values are pinned. */
typedef enum qn_grad_mode {
    QN_GRAD_STE = 0,        /**< straight-through (default; zero outside the intN range for SCALAR) */
    QN_GRAD_DROPCONNECT = 1 /**< zero gradient for noised blocks */
} qn_grad_mode;

/** Create a linear layer W[out_features][in_features]. */
QN_API qn_status qn_layer_create_linear(qn_context *ctx, size_t in_features, size_t out_features,
                                        qn_layer **out);

/** Create an embedding W[num_embeddings][dim] looked up by int64_t indices. */
QN_API qn_status qn_layer_create_embedding(qn_context *ctx, size_t num_embeddings, size_t dim,
                                           qn_layer **out);

/**
 * Create a conv2d layer W[out_channels][in_channels/groups][kernel_h][kernel_w]
 * with square stride, zero padding and dilation (see qn_layer_set_conv2d_geometry
 * for separate vertical/horizontal values). Call qn_layer_set_input_size before
 * the first forward.
 */
QN_API qn_status qn_layer_create_conv2d(qn_context *ctx, size_t in_channels, size_t out_channels,
                                        size_t kernel_h, size_t kernel_w, size_t stride,
                                        size_t padding, size_t dilation, size_t groups,
                                        qn_layer **out);

/** Conv2d: set stride, zero padding and dilation per axis (stride, dilation >= 1). */
QN_API qn_status qn_layer_set_conv2d_geometry(qn_layer *layer, size_t stride_h, size_t stride_w,
                                              size_t pad_h, size_t pad_w, size_t dilation_h,
                                              size_t dilation_w);

/** Conv2d: the spatial size (height, width) of the input; fails if the output would be empty. */
QN_API qn_status qn_layer_set_input_size(qn_layer *layer, size_t height, size_t width);

/** Conv2d: the spatial size of the output for the current input size. */
QN_API qn_status qn_layer_get_output_size(const qn_layer *layer, size_t *height, size_t *width);

/**
 * Element counts: weights, biases (= output features/channels; 0 for an
 * embedding), floats (or indices) of one input sample, floats of one output
 * sample. Any out pointer may be NULL. Conv2d needs its input size for the last two.
 */
QN_API qn_status qn_layer_get_sizes(const qn_layer *layer, size_t *weight_count, size_t *bias_count,
                                    size_t *in_per_sample, size_t *out_per_sample);

/** The kind of @p layer in @p out. */
QN_API qn_status qn_layer_get_kind(const qn_layer *layer, qn_layer_kind *out);

/** Destroy a layer; NULL is a no-op. The bound buffers are the caller's and are not freed. */
QN_API void qn_layer_destroy(qn_layer *layer);

/**
 * Point the layer at the caller's weight (never written by the library) and
 * bias (may be NULL: no bias; embeddings take none). They must stay valid
 * while the layer is used. Binding again discards cached noise state.
 */
QN_API qn_status qn_layer_bind(qn_layer *layer, float *weight, float *bias);

/**
 * Choose the noise: @p kind, rate @p p in [0, 1) (each block is noised with
 * probability p, independently) and @p block_size, which must divide the
 * blocked axis (linear: in, embedding: dim, conv2d: in/groups*kh*kw).
 */
QN_API qn_status qn_layer_set_noise(qn_layer *layer, qn_noise_kind kind, float p, size_t block_size);

/** Seed of the masks and the layer's id; distinct ids give independent masks. */
QN_API qn_status qn_layer_set_seed(qn_layer *layer, uint64_t seed, uint64_t layer_id);

/** Gradient of the noised blocks: straight-through (default) or DropConnect (zero). */
QN_API qn_status qn_layer_set_grad_mode(qn_layer *layer, qn_grad_mode mode);

/**
 * SCALAR noise settings: @p bits in 2..8, the observer and grid that pick the
 * range, and @p update_step >= 1: the range is recomputed from the current
 * weight on the first noisy forward and then every update_step noisy forwards.
 * Defaults: 8 bits, min-max, affine, 1000.
 */
QN_API qn_status qn_layer_set_scalar_noise(qn_layer *layer, unsigned bits, qn_observer observer,
                                           qn_qscheme scheme, uint32_t update_step);

/**
 * PQ noise settings: @p n_centroids (2..65536, at most the number of blocks),
 * k-means @p iterations >= 1, and @p update_step >= 1: centroids and
 * assignments are recomputed by k-means over the layer's blocks on the first
 * noisy forward and then every update_step noisy forwards.
 * Defaults: min(256, blocks) centroids, 15 iterations, 1000.
 */
QN_API qn_status qn_layer_set_pq_noise(qn_layer *layer, size_t n_centroids, unsigned iterations,
                                       uint32_t update_step);

/**
 * Bytes of workspace forward/forward_noisy/backward need for @p batch samples
 * with the current settings (conv2d: after qn_layer_set_input_size).
 */
QN_API qn_status qn_layer_workspace_size(const qn_layer *layer, size_t batch, size_t *bytes);

/**
 * Give the layer a caller-owned workspace of @p bytes (64-byte alignment
 * recommended), so that the hot path allocates nothing; calls that need more
 * fail with QN_ERR_BUFFER_TOO_SMALL. NULL returns to a workspace the layer
 * allocates from the context on first need and keeps.
 */
QN_API qn_status qn_layer_set_workspace(qn_layer *layer, void *workspace, size_t bytes);

/** Eval forward on the clean weights (never a mask). y is overwritten. */
QN_API qn_status qn_layer_forward(qn_layer *layer, size_t batch, const void *x, float *y);

/** Training forward with the noise of @p step. y is overwritten; W is never written. */
QN_API qn_status qn_layer_forward_noisy(qn_layer *layer, size_t batch, const void *x, float *y,
                                        uint64_t step);

/**
 * Backward of the noisy forward of @p step (use the same step; with QN_NOISE_NONE
 * it is the backward of qn_layer_forward). dx = dy W_eff is overwritten (dx may
 * be NULL; embeddings take none); dweight += and dbias += (accumulate; dbias
 * may be NULL). The weight must not change between the forward and this call.
 */
QN_API qn_status qn_layer_backward(qn_layer *layer, size_t batch, const void *x, const float *dy,
                                   float *dx, float *dweight, float *dbias, uint64_t step);

/** Number of blocks and bytes of the mask bitmap (1 bit per block). */
QN_API qn_status qn_layer_mask_size(const qn_layer *layer, size_t *n_blocks, size_t *n_bytes);

/**
 * Export the mask of @p step: bit b (byte b/8, bit b%8, LSB first) is 1 when
 * block b is noised. @p n_noised (may be NULL) receives the count.
 */
QN_API qn_status qn_layer_export_mask(const qn_layer *layer, uint64_t step, uint8_t *bits,
                                      size_t n_bytes, size_t *n_noised);

/*
 * PQ-compressed layers (iPQ). Compressing runs k-means over the blocks of the
 * bound weight and switches the layer to W_hat[block b] = centroid[code[b]]:
 * forward, forward_noisy (no noise on a compressed layer) and backward use
 * W_hat; the assignments are frozen and backward's `dweight` receives the
 * centroid gradients (K x block_size floats, +=) instead of weight gradients,
 * which the caller's optimizer applies to the layer's centroid buffer.
 * Codes are in block order (b = row * (cols / block_size) + j, as the masks).
 */

/** How backward reduces dL/dW_hat over the blocks assigned to one centroid. Values are pinned. */
typedef enum qn_centroid_grad {
    QN_CENTROID_GRAD_MEAN = 0, /**< mean over the assigned blocks (default; the paper's) */
    QN_CENTROID_GRAD_SUM = 1   /**< sum over the assigned blocks (fairseq's PQLinear) */
} qn_centroid_grad;

/**
 * Compress the bound weight with PQ: @p n_centroids (2..65536, at most the
 * number of blocks) centroids of @p block_size floats (dividing the blocked
 * axis), k-means with @p iterations (>= 1) and @p seed. On error the layer is
 * unchanged. Compressing again replaces the previous compression.
 */
QN_API qn_status qn_layer_compress_pq(qn_layer *layer, size_t block_size, size_t n_centroids,
                                      unsigned iterations, uint64_t seed);

/**
 * Compress with a given codebook (K x block_size floats, finite) and codes
 * (one per block, < K), e.g. reloaded from a file; nothing is trained.
 */
QN_API qn_status qn_layer_set_pq(qn_layer *layer, size_t block_size, size_t n_centroids,
                                 const float *centroids, const uint16_t *codes);

/** Return a compressed layer to its dense bound weight (no-op when not compressed). */
QN_API qn_status qn_layer_decompress(qn_layer *layer);

/** Whether the layer is PQ-compressed: *compressed = 1 or 0. */
QN_API qn_status qn_layer_is_compressed(const qn_layer *layer, int *compressed);

/** Block size, centroids and blocks of a compressed layer (QN_ERR_NOT_TRAINED otherwise); outs may be NULL. */
QN_API qn_status qn_layer_get_pq_shape(const qn_layer *layer, size_t *block_size, size_t *n_centroids,
                                       size_t *n_blocks);

/**
 * The layer's centroid buffer (K x block_size floats) for the caller's
 * optimizer to update in place between steps; valid until the layer is
 * compressed again, decompressed or destroyed. Values must stay finite.
 */
QN_API qn_status qn_layer_pq_centroids(qn_layer *layer, float **centroids);

/** Copy the codes (n_blocks, block order) of a compressed layer into @p codes. */
QN_API qn_status qn_layer_get_pq_codes(const qn_layer *layer, uint16_t *codes, size_t n_blocks);

/** Copy the number of blocks assigned to each centroid (K entries) into @p counts. */
QN_API qn_status qn_layer_get_pq_counts(const qn_layer *layer, uint32_t *counts, size_t n_centroids);

/** Centroid gradient reduction of a compressed layer's backward (default mean). */
QN_API qn_status qn_layer_set_centroid_grad(qn_layer *layer, qn_centroid_grad mode);

/** Write the dense weight a compressed layer computes with (rows x cols, the weight's layout). */
QN_API qn_status qn_layer_decode_weight(const qn_layer *layer, float *weight, size_t count);

/**
 * Error of a compressed layer against its bound weight W: relative MSE
 * ||W - W_hat||^2 / ||W||^2 and SNR = -10 log10(relative MSE) in dB (+inf
 * when exact). Either out pointer may be NULL.
 */
QN_API qn_status qn_layer_pq_error(const qn_layer *layer, double *rel_mse, double *snr_db);

/**
 * Store the codebook of a compressed layer as int8 with one scale (and zero
 * point for QN_QSCHEME_AFFINE) per codebook: the centroids are rounded to that
 * grid in place, so forward uses exactly the int8 values. @p mse (may be NULL)
 * receives the mean squared decode error per centroid coordinate.
 */
QN_API qn_status qn_layer_pq_codebook_int8(qn_layer *layer, qn_qscheme scheme, double *mse);

/**
 * The int8 codebook of the current centroids under the grid chosen by
 * qn_layer_pq_codebook_int8 (QN_ERR_NOT_TRAINED before): values (K x
 * block_size), scale and zero point with centroid = (value - zero_point) * scale.
 */
QN_API qn_status qn_layer_get_pq_codebook_int8(const qn_layer *layer, int8_t *values, size_t count,
                                               float *scale, int32_t *zero_point);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_LAYER_H */
