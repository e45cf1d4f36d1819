/*
 * libFuzzer target: the safetensors reader (lib/format/safetensors.h).
 * SPDX-License-Identifier: MIT
 *
 * Opens the input as a safetensors image, then describes every tensor, looks
 * it up by name, converts the F32/F16/BF16 ones to fp32 (and checks that a
 * too-small buffer is refused), and walks the metadata. The reader must never
 * crash, leak or trip a sanitizer; a rejected input is fine.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned touch(const void *p, size_t n)
{
    const volatile unsigned char *b = (const volatile unsigned char *)p;
    unsigned s = 0;
    size_t i;
    for (i = 0; i < n; i++)
        s += b[i];
    return s;
}

static void walk_tensor(const qn_st_file *f, size_t i)
{
    qn_st_info info;
    const char *name = qn_st_tensor_name(f, i);
    size_t found = (size_t)-1;
    unsigned d;
    uint64_t numel = 1;
    if (!name || qn_st_tensor_info(f, i, &info) != QN_OK)
        abort();
    if (!qn_st_find(f, name, &found) || found != i) /* names are unique */
        abort();
    if (info.rank > QN_ST_MAX_RANK || !qn_st_dtype_name(info.dtype))
        abort();
    for (d = 0; d < info.rank; d++)
        numel *= info.shape[d];
    if (numel != info.numel || info.nbytes != numel * qn_st_dtype_size(info.dtype))
        abort();
    if (info.nbytes)
        touch(info.data, info.nbytes);
    if (info.dtype == QN_ST_F32 || info.dtype == QN_ST_F16 || info.dtype == QN_ST_BF16) {
        /* the data fit in the input, so numel is bounded by its size */
        size_t n = (size_t)info.numel;
        float *out = (float *)malloc(n ? n * sizeof(float) : 1);
        if (!out)
            return;
        if (qn_st_read_f32(f, i, out, n) != QN_OK)
            abort();
        if (n && qn_st_read_f32(f, i, out, n - 1) != QN_ERR_BUFFER_TOO_SMALL)
            abort();
        free(out);
    } else {
        float one;
        if (qn_st_read_f32(f, i, &one, 1) == QN_OK)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qn_context *ctx = NULL;
    qn_st_file *f = NULL;
    size_t i;
    if (qn_context_create(&ctx) != QN_OK)
        return 0;
    if (qn_st_open_memory(ctx, data, size, &f) == QN_OK) {
        qn_st_info info;
        for (i = 0; i < qn_st_tensor_count(f); i++)
            walk_tensor(f, i);
        if (qn_st_tensor_name(f, qn_st_tensor_count(f)) != NULL ||
            qn_st_tensor_info(f, qn_st_tensor_count(f), &info) == QN_OK)
            abort();
        for (i = 0; i < qn_st_metadata_count(f); i++) {
            const char *k = NULL, *v = NULL;
            if (qn_st_metadata_at(f, i, &k, &v) != QN_OK || !k || !v)
                abort();
            touch(k, strlen(k));
            touch(v, strlen(v));
            if (qn_st_metadata_get(f, k) != v) /* keys are unique */
                abort();
        }
        (void)qn_st_metadata_get(f, "format");
        qn_st_close(f);
    } else if (f) {
        abort();
    }
    qn_context_destroy(ctx);
    return 0;
}
