/*
 * libFuzzer target: the compressed-tensor decoder, through the model loaders.
 * SPDX-License-Identifier: MIT
 *
 * An input starting with "GGUF" is loaded by qn_model_load_gguf_memory, any
 * other by qn_model_load_safetensors_memory (the same code as the path
 * loaders after the container is open). A GGUF input is loaded twice: as it
 * is, and with its qnoise.tensor_crc32c checksums recomputed, so that
 * mutations of tensor data reach the decoder instead of stopping at the
 * checksum (the fuzzer cannot forge a CRC). On success every tensor is read back
 * with qn_model_get_dense (compressed ones decoded), its compressed view is
 * queried and decoded with qn_qtensor_decode, its error is measured against
 * the decoded values (which must then be exactly zero), and the first
 * compressed tensor with a 2-D shape is bound to a linear layer
 * (qn_layer_bind_compressed) that runs a forward.
 *
 * The decoded size of a tensor is the caller's choice of buffer, not something
 * the loader allocates: this target skips decoding tensors above
 * QN_FUZZ_MAX_DECODE floats so that the fuzzer's memory limit keeps watching
 * the loader's own allocations.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

#include "format/gguf.h"
#include "format/half.h"
#include "format/model_internal.h"

#define QN_FUZZ_MAX_DECODE ((size_t)1 << 22) /* floats: 16 MiB */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_qtensor(const qn_qtensor *qt, const float *dense, size_t numel)
{
    qn_qtensor_kind kind;
    size_t rows = 0, cols = 0, ndim = 0, shape[QN_QTENSOR_MAX_DIMS], i, p = 1;
    float *dec;
    double rel = -1.0, snr = 0.0, mx = -1.0;
    if (qn_qtensor_get_kind(qt, &kind) != QN_OK || qn_qtensor_get_matrix(qt, &rows, &cols) != QN_OK ||
        qn_qtensor_get_shape(qt, &ndim, shape) != QN_OK)
        abort();
    if (ndim < 1 || ndim > QN_QTENSOR_MAX_DIMS || shape[0] != rows)
        abort();
    for (i = 1; i < ndim; i++)
        p *= shape[i];
    if (p != cols || rows * cols != numel)
        abort();
    (void)qn_qtensor_nbytes(qt);
    if (kind == QN_QTENSOR_PQ) {
        size_t bs = 0, k = 0, nb;
        unsigned bits = 0;
        qn_codebook_precision prec;
        uint16_t *codes;
        if (qn_qtensor_get_pq(qt, &bs, &k, &bits, &prec) != QN_OK || bs == 0 || cols % bs || k < 2)
            abort();
        nb = rows * (cols / bs);
        codes = (uint16_t *)malloc(nb * sizeof *codes);
        if (codes) {
            if (qn_qtensor_get_codes(qt, codes, nb) != QN_OK)
                abort();
            for (i = 0; i < nb; i++)
                if (codes[i] >= k) /* the loader rejects codes >= K */
                    abort();
            free(codes);
        }
    } else if (kind == QN_QTENSOR_SCALAR) {
        unsigned bits = 0;
        if (qn_qtensor_get_scalar(qt, &bits, NULL, NULL) != QN_OK || bits < 2 || bits > 8)
            abort();
    } else {
        abort();
    }
    dec = (float *)malloc(numel * sizeof *dec);
    if (!dec)
        return;
    if (qn_qtensor_decode(qt, dec) != QN_OK)
        abort();
    /* the model's dense copy is the same decode, bit for bit; every value finite */
    for (i = 0; i < numel; i++)
        if (memcmp(&dec[i], &dense[i], sizeof(float)) != 0 || !isfinite(dec[i]))
            abort();
    if (qn_qtensor_error(qt, dec, &rel, &snr, &mx) != QN_OK || rel != 0.0 || mx != 0.0)
        abort();
    free(dec);
}

/* Bind qt to a linear layer (cols inputs, rows outputs) and run a forward of 2 samples. */
static void forward_compressed(qn_context *ctx, const qn_qtensor *qt)
{
    qn_layer *l = NULL;
    size_t rows = 0, cols = 0, i;
    float *x, *y, *bias;
    qn_qtensor_get_matrix(qt, &rows, &cols);
    if (rows * cols > QN_FUZZ_MAX_DECODE || rows > 4096 || cols > 4096)
        return;
    if (qn_layer_create_linear(ctx, cols, rows, &l) != QN_OK)
        return;
    x = (float *)malloc(2 * cols * sizeof *x);
    y = (float *)malloc(2 * rows * sizeof *y);
    bias = (float *)malloc(rows * sizeof *bias);
    if (x && y && bias) {
        for (i = 0; i < 2 * cols; i++)
            x[i] = (float)((int)(i % 7) - 3) * 0.25f;
        for (i = 0; i < rows; i++)
            bias[i] = 0.5f;
        if (qn_layer_bind_compressed(l, qt, bias) != QN_OK)
            abort();
        if (qn_layer_forward(l, 2, x, y) != QN_OK)
            abort();
    }
    free(x);
    free(y);
    free(bias);
    qn_layer_destroy(l);
}

/*
 * A copy of a GGUF image with every qnoise.tensor_crc32c entry recomputed, or
 * NULL when the container does not open or has no well-formed checksum array.
 */
static uint8_t *with_fixed_checksums(const qn_context *ctx, const uint8_t *data, size_t size)
{
    qn_gguf_file *f = NULL;
    uint8_t *copy = NULL;
    const void *raw = NULL;
    qn_gguf_type et;
    uint64_t count = 0;
    size_t kv, t;
    if (qn_gguf_open_memory(ctx, data, size, &f) != QN_OK)
        return NULL;
    kv = qn_gguf_find_kv(f, QN_GGUF_KEY_CRC32C);
    if (kv != QN_GGUF_NOT_FOUND && qn_gguf_get_array(f, kv, &et, &count, &raw) == QN_OK && et == QN_GGUF_U32 &&
        count == qn_gguf_tensor_count(f) && (copy = (uint8_t *)malloc(size)) != NULL) {
        memcpy(copy, data, size);
        for (t = 0; t < count; t++) {
            qn_gguf_tensor info;
            uint32_t c;
            uint8_t *dst = copy + ((const uint8_t *)raw - data) + 4 * t;
            if (qn_gguf_tensor_info(f, t, &info) != QN_OK)
                abort();
            c = qn_crc32c(0, info.data, info.nbytes);
            dst[0] = (uint8_t)c;
            dst[1] = (uint8_t)(c >> 8);
            dst[2] = (uint8_t)(c >> 16);
            dst[3] = (uint8_t)(c >> 24);
        }
    }
    qn_gguf_close(f);
    return copy;
}

static void exercise(qn_context *ctx, const uint8_t *data, size_t size, int gguf);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qn_context *ctx = NULL;
    if (qn_context_create(&ctx) != QN_OK)
        return 0;
    if (size >= 4 && memcmp(data, "GGUF", 4) == 0) {
        uint8_t *fixed = with_fixed_checksums(ctx, data, size);
        exercise(ctx, data, size, 1);
        if (fixed && memcmp(fixed, data, size) != 0)
            exercise(ctx, fixed, size, 1);
        free(fixed);
    } else {
        exercise(ctx, data, size, 0);
    }
    qn_context_destroy(ctx);
    return 0;
}

static void exercise(qn_context *ctx, const uint8_t *data, size_t size, int gguf)
{
    qn_model *m = NULL;
    qn_status st;
    size_t n = 0, i;
    int bound = 0;
    if (gguf)
        st = qn_model_load_gguf_memory(ctx, data, size, &m);
    else
        st = qn_model_load_safetensors_memory(ctx, data, size, QN_LOAD_SKIP_UNSUPPORTED, &m);
    if (st != QN_OK) {
        if (m)
            abort(); /* *out is NULL on failure */
        return;
    }
    if (qn_model_count(m, &n) != QN_OK)
        abort();
    for (i = 0; i < n; i++) {
        const char *name = NULL;
        const qn_qtensor *qt = NULL;
        size_t ndim = 0, shape[QN_QTENSOR_MAX_DIMS], numel = 1, j, idx = (size_t)-1;
        int compressed = -1;
        float *dense;
        if (qn_model_get_name(m, i, &name) != QN_OK || !name || qn_model_find(m, name, &idx) != QN_OK || idx != i)
            abort();
        if (qn_model_get_info(m, i, &compressed, &ndim, shape) != QN_OK || ndim > QN_QTENSOR_MAX_DIMS)
            abort();
        for (j = 0; j < ndim; j++)
            numel *= shape[j]; /* bounded: the loader checked the product */
        if (numel > QN_FUZZ_MAX_DECODE)
            continue;
        dense = (float *)malloc(numel ? numel * sizeof *dense : 1);
        if (!dense)
            continue;
        if (qn_model_get_dense(m, i, dense, numel) != QN_OK)
            abort();
        if (numel && qn_model_get_dense(m, i, dense, numel - 1) != QN_ERR_BUFFER_TOO_SMALL)
            abort();
        if (compressed) {
            if (qn_model_get_qtensor(m, i, &qt) != QN_OK || !qt)
                abort();
            check_qtensor(qt, dense, numel);
            if (!bound && ndim == 2) {
                forward_compressed(ctx, qt);
                bound = 1;
            }
        } else if (qn_model_get_qtensor(m, i, &qt) == QN_OK) {
            abort();
        }
        free(dense);
    }
    qn_model_destroy(m);
}
