/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * qtensor.h: compressed tensors (scalar intN or PQ) and named-tensor models
 * saved to and loaded from GGUF and safetensors files (docs/format.md).
 *
 * A compressed tensor is a weight viewed as a rows x cols matrix (rows =
 * output features/channels, cols = everything else in PyTorch order; a conv
 * weight [out][in/groups][kh][kw] has cols = in/groups*kh*kw) with a logical
 * PyTorch shape of 1 to 4 dimensions. PQ: blocks of block_size along each
 * row, b = row * (cols / block_size) + j, codes of 4, 8 or 16 bits (K <= 16,
 * <= 256, <= 65536), a K x block_size codebook in fp32, fp16 or int8 + scale.
 * Scalar: codes of bits (2..8) per weight with a scale and zero point per
 * tensor or per row. Opaque; const calls are thread-safe.
 */
#ifndef QNOISE_QTENSOR_H
#define QNOISE_QTENSOR_H

#include <qnoise/common.h>
#include <qnoise/ipq.h>
#include <qnoise/layer.h>
#include <qnoise/quant.h>

#ifdef __cplusplus
extern "C" {
#endif

/** A compressed tensor. Opaque. */
typedef struct qn_qtensor qn_qtensor;

/** What a compressed tensor holds. Values are pinned. */
typedef enum qn_qtensor_kind {
    QN_QTENSOR_SCALAR = 1, /**< intN codes with scale and zero point */
    QN_QTENSOR_PQ = 2      /**< PQ codes and a codebook */
} qn_qtensor_kind;

/** Most dimensions of a logical shape. */
#define QN_QTENSOR_MAX_DIMS 4

/**
 * Compress a rows x cols weight (finite) with PQ: k-means (20 iterations,
 * seed @p seed) to @p n_centroids (2..65536, at most the number of blocks)
 * centroids of @p block_size (dividing cols). Codebook in fp32; shape {rows, cols}.
 */
QN_API qn_status qn_qtensor_from_pq(qn_context *ctx, const float *w, size_t rows, size_t cols, size_t block_size,
                                    size_t n_centroids, uint64_t seed, qn_qtensor **out);

/**
 * Compress a rows x cols weight (finite) to @p bits (2..8) with min-max
 * ranges: per row and symmetric when @p per_channel, else per tensor affine.
 */
QN_API qn_status qn_qtensor_from_scalar(qn_context *ctx, const float *w, size_t rows, size_t cols, unsigned bits,
                                        int per_channel, qn_qtensor **out);

/** Scalar compression with any observer and grid of quant.h (the moving average acts as min-max). */
QN_API qn_status qn_qtensor_from_scalar_ex(qn_context *ctx, const float *w, size_t rows, size_t cols, unsigned bits,
                                           qn_observer observer, qn_qscheme scheme, qn_qtensor **out);

/**
 * A PQ tensor from a quantizer's output: @p centroids (K x block_size,
 * finite) and @p codes (rows * cols / block_size, each < K), both copied.
 */
QN_API qn_status qn_qtensor_from_pq_codes(qn_context *ctx, size_t rows, size_t cols, size_t block_size,
                                          size_t n_centroids, const float *centroids, const uint16_t *codes,
                                          qn_qtensor **out);

/**
 * The compressed weight of a PQ-compressed layer (qn_layer_compress_pq / iPQ),
 * with the layer's PyTorch weight shape; an int8 codebook (qn_layer_pq_codebook_int8) stays int8.
 */
QN_API qn_status qn_qtensor_from_layer(const qn_layer *layer, qn_qtensor **out);

/** Destroy a compressed tensor; NULL is a no-op. */
QN_API void qn_qtensor_destroy(qn_qtensor *qt);

/** Decode to fp32, rows x cols (the PyTorch layout of the logical shape). */
QN_API qn_status qn_qtensor_decode(const qn_qtensor *qt, float *out);

/**
 * Exact compressed size in bytes: packed codes (rows padded to whole bytes),
 * codebook in its precision (+ 4-byte scale and zero point for int8), and the
 * scalar scales and zero points (4 + 4 bytes each) — the tensor data a GGUF file holds.
 */
QN_API size_t qn_qtensor_nbytes(const qn_qtensor *qt);

/** Kind of @p qt. */
QN_API qn_status qn_qtensor_get_kind(const qn_qtensor *qt, qn_qtensor_kind *kind);

/** The matrix view: rows (output axis) and cols. Either out may be NULL. */
QN_API qn_status qn_qtensor_get_matrix(const qn_qtensor *qt, size_t *rows, size_t *cols);

/** Set the logical PyTorch shape (1..4 dims): shape[0] == rows and the product of the rest == cols. */
QN_API qn_status qn_qtensor_set_shape(qn_qtensor *qt, size_t ndim, const size_t *shape);

/** The logical shape: *ndim and shape[0..ndim) (room for QN_QTENSOR_MAX_DIMS). */
QN_API qn_status qn_qtensor_get_shape(const qn_qtensor *qt, size_t *ndim, size_t *shape);

/** PQ parameters (QN_ERR_INVALID_ARG for a scalar tensor). Outs may be NULL. */
QN_API qn_status qn_qtensor_get_pq(const qn_qtensor *qt, size_t *block_size, size_t *n_centroids,
                                   unsigned *code_bits, qn_codebook_precision *precision);

/** Scalar parameters (QN_ERR_INVALID_ARG for a PQ tensor): bits, grid, 1 if per row. Outs may be NULL. */
QN_API qn_status qn_qtensor_get_scalar(const qn_qtensor *qt, unsigned *bits, qn_qscheme *scheme,
                                       int *per_channel);

/**
 * Store the PQ codebook in @p precision: FP32, FP16 (centroids rounded to
 * fp16) or INT8 (one grid per codebook with @p int8_scheme, as
 * qn_layer_pq_codebook_int8). Rounding is applied to the values, so decode
 * shows its effect; @p mse (may be NULL) receives the mean squared change.
 */
QN_API qn_status qn_qtensor_set_codebook_precision(qn_qtensor *qt, qn_codebook_precision precision,
                                                   qn_qscheme int8_scheme, double *mse);

/** PQ codes (rows * cols / block_size, block order) into @p codes. */
QN_API qn_status qn_qtensor_get_codes(const qn_qtensor *qt, uint16_t *codes, size_t n_codes);

/** The PQ codebook as fp32 values (K x block_size) into @p centroids. */
QN_API qn_status qn_qtensor_get_centroids(const qn_qtensor *qt, float *centroids, size_t count);

/**
 * Error of the decoded tensor against @p reference (rows x cols): relative
 * MSE ||ref - dec||^2 / ||ref||^2, SNR in dB, and the largest absolute error.
 * Outs may be NULL.
 */
QN_API qn_status qn_qtensor_error(const qn_qtensor *qt, const float *reference, double *rel_mse, double *snr_db,
                                  double *max_abs_err);

/**
 * Run the layer's qn_layer_forward on the compressed weight @p weight
 * (rows x cols must match the layer's weight) and @p bias (may be NULL). The
 * layer keeps a reference; the caller keeps ownership and keeps both alive
 * while bound. qn_layer_bind (dense) or binding again replaces it. A layer bound
 * this way is for evaluation: forward_noisy equals forward, backward is refused.
 */
QN_API qn_status qn_layer_bind_compressed(qn_layer *layer, const qn_qtensor *weight, const float *bias);

/* ---------------------------------------------------------------------------------------------- */
/* models: named tensors, dense fp32 or compressed, and their files                              */

/** A set of named tensors (dense fp32 or compressed), in insertion order. Opaque. */
typedef struct qn_model qn_model;

/** Flags of the loaders. */
#define QN_LOAD_NO_MMAP 1u          /**< read the file with plain reads instead of mmap */
#define QN_LOAD_SKIP_UNSUPPORTED 2u /**< safetensors: skip (and log) tensors that are not F32/F16/BF16 */

/** Create an empty model. */
QN_API qn_status qn_model_create(qn_context *ctx, qn_model **out);

/** Destroy a model and the tensors it owns; NULL is a no-op. */
QN_API void qn_model_destroy(qn_model *model);

/** Add a dense fp32 tensor of @p ndim (0..4) dims (copied). Names are unique, non-empty, <= 4096 bytes. */
QN_API qn_status qn_model_add_dense(qn_model *model, const char *name, size_t ndim, const size_t *shape,
                                    const float *data);

/** Add a compressed tensor; the model takes ownership on success only. */
QN_API qn_status qn_model_add_qtensor(qn_model *model, const char *name, qn_qtensor *qt);

/** Number of tensors. */
QN_API qn_status qn_model_count(const qn_model *model, size_t *count);

/** Index of the tensor called @p name (QN_ERR_INVALID_ARG when there is none). */
QN_API qn_status qn_model_find(const qn_model *model, const char *name, size_t *index);

/** Name of tensor @p index (owned by the model). */
QN_API qn_status qn_model_get_name(const qn_model *model, size_t index, const char **name);

/** Whether tensor @p index is compressed, and its shape (room for QN_QTENSOR_MAX_DIMS). Outs may be NULL. */
QN_API qn_status qn_model_get_info(const qn_model *model, size_t index, int *compressed, size_t *ndim,
                                   size_t *shape);

/** Tensor @p index as fp32 (decoded when compressed) into @p out of @p count floats. */
QN_API qn_status qn_model_get_dense(const qn_model *model, size_t index, float *out, size_t count);

/** The compressed tensor @p index (owned by the model; QN_ERR_INVALID_ARG for a dense one). */
QN_API qn_status qn_model_get_qtensor(const qn_model *model, size_t index, const qn_qtensor **qt);

/** Write the model as a GGUF v3 file (atomically: a temporary file renamed into place). */
QN_API qn_status qn_model_save_gguf(const qn_model *model, const char *path);

/** Read a GGUF file written by qn_model_save_gguf; checksums are verified. */
QN_API qn_status qn_model_load_gguf(qn_context *ctx, const char *path, unsigned flags, qn_model **out);

/**
 * Write a safetensors file: with @p decoded, every tensor as F32; otherwise
 * dense tensors as F32 and compressed ones in native dtypes (codes, codebook,
 * scales) with their parameters as JSON in the "qnoise" metadata string.
 */
QN_API qn_status qn_model_save_safetensors(const qn_model *model, const char *path, int decoded);

/**
 * Read a safetensors file: F32/F16/BF16 tensors become dense fp32 tensors, and
 * compressed tensors written by qn_model_save_safetensors are restored.
 */
QN_API qn_status qn_model_load_safetensors(qn_context *ctx, const char *path, unsigned flags, qn_model **out);

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_QTENSOR_H */
