/*
 * libqnoise internal: model loaders over bytes in memory (the fuzz targets' entry points).
 * SPDX-License-Identifier: MIT
 *
 * The same loaders as qn_model_load_gguf / qn_model_load_safetensors (they
 * share the code after the container is opened), reading from size bytes at
 * data instead of a file. The bytes are only borrowed while the call runs:
 * the model copies what it keeps. Messages name the source "memory".
 */
#ifndef QN_FORMAT_MODEL_INTERNAL_H
#define QN_FORMAT_MODEL_INTERNAL_H

#include <stddef.h>

#include <qnoise/qtensor.h>

/* A GGUF file image; checksums are verified as by qn_model_load_gguf. *out = NULL on error. */
qn_status qn_model_load_gguf_memory(qn_context *ctx, const void *data, size_t size, qn_model **out);

/*
 * A safetensors file image; flags as qn_model_load_safetensors (QN_LOAD_SKIP_UNSUPPORTED;
 * QN_LOAD_NO_MMAP is meaningless here). QN_ERR_UNSUPPORTED without jansson. *out = NULL on error.
 */
qn_status qn_model_load_safetensors_memory(qn_context *ctx, const void *data, size_t size, unsigned flags,
                                           qn_model **out);

#endif /* QN_FORMAT_MODEL_INTERNAL_H */
