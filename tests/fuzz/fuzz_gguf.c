/*
 * libFuzzer target: the GGUF reader (lib/format/gguf.h).
 * SPDX-License-Identifier: MIT
 *
 * Opens the input as a GGUF image, walks every metadata pair through every
 * typed accessor (the right one and a wrong one), every tensor description
 * and its bytes, the lookups by key and name, and verifies the checksums.
 * The reader must never crash, leak, read out of bounds or trip UBSan; a
 * rejected input is fine. Any accessor that succeeds must return pointers
 * that lie inside the input, which this target checks by touching them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read every byte of a range the reader handed out (ASan reports it if it lies outside the input). */
static unsigned touch(const void *p, size_t n)
{
    const volatile unsigned char *b = (const volatile unsigned char *)p;
    unsigned s = 0;
    size_t i;
    for (i = 0; i < n; i++)
        s += b[i];
    return s;
}

/* A NUL-terminated copy of a key or name, for the lookups; NULL when it holds a NUL. */
static char *zcopy(const char *s, size_t n)
{
    char *c;
    if (memchr(s, '\0', n))
        return NULL;
    c = (char *)malloc(n + 1);
    if (!c)
        return NULL;
    memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

static void walk_kv(const qn_gguf_file *f, size_t i)
{
    const char *key = NULL, *s = NULL;
    size_t klen = 0, slen = 0;
    qn_gguf_type type = QN_GGUF_U8, et = QN_GGUF_U8;
    uint64_t count = 0, u64 = 0, j;
    const void *raw = NULL;
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
        int b;
    } v;
    char *z;
    if (qn_gguf_kv_key(f, i, &key, &klen) != QN_OK || qn_gguf_kv_type(f, i, &type) != QN_OK)
        abort(); /* every index below kv_count is valid */
    touch(key, klen);
    z = zcopy(key, klen);
    if (z) {
        size_t found = qn_gguf_find_kv(f, z);
        if (found != i) /* keys are unique, so the lookup finds this pair */
            abort();
        free(z);
    }
    /* every typed getter: exactly the one of the stored type succeeds */
    (void)qn_gguf_get_u8(f, i, &v.u8);
    (void)qn_gguf_get_i8(f, i, &v.i8);
    (void)qn_gguf_get_u16(f, i, &v.u16);
    (void)qn_gguf_get_i16(f, i, &v.i16);
    (void)qn_gguf_get_u32(f, i, &v.u32);
    (void)qn_gguf_get_i32(f, i, &v.i32);
    (void)qn_gguf_get_u64(f, i, &v.u64);
    (void)qn_gguf_get_i64(f, i, &v.i64);
    (void)qn_gguf_get_f32(f, i, &v.f32);
    (void)qn_gguf_get_f64(f, i, &v.f64);
    (void)qn_gguf_get_bool(f, i, &v.b);
    (void)qn_gguf_get_uint(f, i, &u64);
    if (qn_gguf_get_string(f, i, &s, &slen) == QN_OK)
        touch(s, slen);
    if (qn_gguf_get_array(f, i, &et, &count, &raw) != QN_OK)
        return;
    if (et == QN_GGUF_STRING) {
        qn_gguf_str_iter it;
        uint64_t n = 0;
        if (qn_gguf_array_strings(f, i, &it) != QN_OK)
            abort();
        while (qn_gguf_str_next(&it, &s, &slen)) {
            touch(s, slen);
            n++;
        }
        if (n != count)
            abort();
        /* random access to the first few and the last */
        for (j = 0; j < count && j < 4; j++)
            if (qn_gguf_get_array_string(f, i, j, &s, &slen) != QN_OK)
                abort();
        if (count && qn_gguf_get_array_string(f, i, count - 1, &s, &slen) != QN_OK)
            abort();
        (void)qn_gguf_get_array_string(f, i, count, &s, &slen); /* one past: an error */
        return;
    }
    if (raw && count) {
        /* the element bytes, then a copy of at most 4096 elements (the reader checked the sizes) */
        static const size_t esz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        size_t n = (size_t)count, e = (size_t)et < sizeof esz / sizeof esz[0] ? esz[et] : 0;
        if (e == 0)
            abort();
        touch(raw, n * e);
        if (n <= 4096) {
            void *buf = malloc(n * e);
            if (buf) {
                if (qn_gguf_get_array_copy(f, i, et, buf, n) != QN_OK)
                    abort();
                (void)qn_gguf_get_array_copy(f, i, et, buf, n - 1); /* too small: an error */
                free(buf);
            }
        }
    }
}

static void walk_tensor(const qn_gguf_file *f, size_t i)
{
    qn_gguf_tensor t;
    uint64_t nel = 1;
    uint32_t d;
    char *z;
    if (qn_gguf_tensor_info(f, i, &t) != QN_OK)
        abort();
    if (t.n_dims < 1 || t.n_dims > QN_GGUF_MAX_DIMS || qn_ggml_type_size(t.type) == 0)
        abort();
    for (d = 0; d < t.n_dims; d++)
        nel *= t.dims[d];
    if (nel != t.n_elements || t.nbytes != nel * qn_ggml_type_size(t.type))
        abort();
    touch(t.name, t.name_len);
    if (t.nbytes)
        touch(t.data, t.nbytes);
    z = zcopy(t.name, t.name_len);
    if (z) {
        if (qn_gguf_find_tensor(f, z) != i)
            abort();
        free(z);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    qn_context *ctx = NULL;
    qn_gguf_file *f = NULL;
    size_t i, bad = 0;
    if (qn_context_create(&ctx) != QN_OK)
        return 0;
    if (qn_gguf_open_memory(ctx, data, size, &f) == QN_OK) {
        (void)qn_gguf_version(f);
        (void)qn_gguf_alignment(f);
        if (qn_gguf_data_offset(f) > size && qn_gguf_tensor_count(f) > 0)
            abort();
        for (i = 0; i < qn_gguf_kv_count(f); i++)
            walk_kv(f, i);
        for (i = 0; i < qn_gguf_tensor_count(f); i++)
            walk_tensor(f, i);
        /* bad indices are errors, never reads */
        (void)qn_gguf_kv_type(f, qn_gguf_kv_count(f), NULL);
        {
            qn_gguf_tensor t;
            if (qn_gguf_tensor_info(f, qn_gguf_tensor_count(f), &t) == QN_OK)
                abort();
        }
        (void)qn_gguf_find_kv(f, "general.alignment");
        (void)qn_gguf_find_tensor(f, "w");
        (void)qn_gguf_has_checksums(f);
        (void)qn_gguf_verify(f, &bad);
        qn_gguf_close(f);
    } else if (f) {
        abort(); /* *out is NULL on failure */
    }
    qn_context_destroy(ctx);
    return 0;
}
