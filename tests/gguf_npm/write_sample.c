/*
 * Writes a sample GGUF file with lib/format/gguf.c and a JSON description of
 * everything in it (metadata with types, tensor names, shapes, types,
 * offsets, bytes and CRC32C), for check.mjs to compare against what the
 * independent reader @huggingface/gguf finds in the file.
 * Usage: gguf_npm_writer OUT.gguf OUT.json
 * SPDX-License-Identifier: MIT
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/half.h"

typedef struct out {
    qn_gguf_writer *w;
    FILE *js;
    int n_kv;
    int failed;
} out;

static void check(out *o, qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "gguf_npm_writer: %s: %s\n", what, qn_status_str(st));
        o->failed = 1;
    }
}

/* A JSON string: quotes, backslashes and control bytes escaped, other bytes (UTF-8) as they are. */
static void json_str(FILE *js, const char *s, size_t n)
{
    size_t k;
    fputc('"', js);
    for (k = 0; k < n; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\')
            fprintf(js, "\\%c", c);
        else if (c < 0x20)
            fprintf(js, "\\u%04x", c);
        else
            fputc(c, js);
    }
    fputc('"', js);
}

/* Start a metadata entry: {"key": ..., "type": T[, "subType": S], "value": */
static void kv_begin(out *o, const char *key, int type, int sub)
{
    fprintf(o->js, "%s\n    {\"key\": ", o->n_kv++ ? "," : "");
    json_str(o->js, key, strlen(key));
    fprintf(o->js, ", \"type\": %d", type);
    if (sub >= 0)
        fprintf(o->js, ", \"subType\": %d", sub);
    fprintf(o->js, ", \"value\": ");
}

static void kv_u64(out *o, const char *key, uint64_t v)
{
    check(o, qn_gguf_add_u64(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_U64, -1);
    fprintf(o->js, "\"%" PRIu64 "\"}", v);
}

static void kv_i64(out *o, const char *key, int64_t v)
{
    check(o, qn_gguf_add_i64(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_I64, -1);
    fprintf(o->js, "\"%" PRId64 "\"}", v);
}

/* Integer types that fit a JSON number exactly. */
static void kv_int(out *o, const char *key, qn_gguf_type type, int64_t v)
{
    qn_status st = QN_ERR_INVALID_ARG;
    switch (type) {
    case QN_GGUF_U8:
        st = qn_gguf_add_u8(o->w, key, (uint8_t)v);
        break;
    case QN_GGUF_I8:
        st = qn_gguf_add_i8(o->w, key, (int8_t)v);
        break;
    case QN_GGUF_U16:
        st = qn_gguf_add_u16(o->w, key, (uint16_t)v);
        break;
    case QN_GGUF_I16:
        st = qn_gguf_add_i16(o->w, key, (int16_t)v);
        break;
    case QN_GGUF_U32:
        st = qn_gguf_add_u32(o->w, key, (uint32_t)v);
        break;
    case QN_GGUF_I32:
        st = qn_gguf_add_i32(o->w, key, (int32_t)v);
        break;
    default:
        break;
    }
    check(o, st, key);
    kv_begin(o, key, (int)type, -1);
    fprintf(o->js, "%" PRId64 "}", v);
}

static void kv_f32(out *o, const char *key, float v)
{
    check(o, qn_gguf_add_f32(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_F32, -1);
    fprintf(o->js, "%.9g}", (double)v);
}

static void kv_f64(out *o, const char *key, double v)
{
    check(o, qn_gguf_add_f64(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_F64, -1);
    fprintf(o->js, "%.17g}", v);
}

static void kv_bool(out *o, const char *key, int v)
{
    check(o, qn_gguf_add_bool(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_BOOL, -1);
    fprintf(o->js, "%s}", v ? "true" : "false");
}

static void kv_str(out *o, const char *key, const char *v)
{
    check(o, qn_gguf_add_string(o->w, key, v), key);
    kv_begin(o, key, QN_GGUF_STRING, -1);
    json_str(o->js, v, strlen(v));
    fputc('}', o->js);
}

/* Numeric arrays: elements given as int64 (or double for floats) and narrowed here. */
static void kv_arr(out *o, const char *key, qn_gguf_type type, const int64_t *iv, const double *fv, size_t n)
{
    unsigned char buf[8 * 16] = {0};
    size_t k;
    for (k = 0; k < n; k++) {
        unsigned char *p = buf + k * 8;
        switch (type) {
        case QN_GGUF_U8:
        case QN_GGUF_BOOL: {
            uint8_t x = (uint8_t)iv[k];
            memcpy(buf + k, &x, 1);
            break;
        }
        case QN_GGUF_I8: {
            int8_t x = (int8_t)iv[k];
            memcpy(buf + k, &x, 1);
            break;
        }
        case QN_GGUF_U16: {
            uint16_t x = (uint16_t)iv[k];
            memcpy(buf + 2 * k, &x, 2);
            break;
        }
        case QN_GGUF_I16: {
            int16_t x = (int16_t)iv[k];
            memcpy(buf + 2 * k, &x, 2);
            break;
        }
        case QN_GGUF_U32: {
            uint32_t x = (uint32_t)iv[k];
            memcpy(buf + 4 * k, &x, 4);
            break;
        }
        case QN_GGUF_I32: {
            int32_t x = (int32_t)iv[k];
            memcpy(buf + 4 * k, &x, 4);
            break;
        }
        case QN_GGUF_F32: {
            float x = (float)fv[k];
            memcpy(buf + 4 * k, &x, 4);
            break;
        }
        case QN_GGUF_U64:
        case QN_GGUF_I64:
            memcpy(p, &iv[k], 8);
            break;
        case QN_GGUF_F64:
            memcpy(p, &fv[k], 8);
            break;
        default:
            break;
        }
    }
    check(o, qn_gguf_add_array(o->w, key, type, buf, n), key);
    kv_begin(o, key, QN_GGUF_ARRAY, (int)type);
    fputc('[', o->js);
    for (k = 0; k < n; k++) {
        if (k)
            fputs(", ", o->js);
        if (type == QN_GGUF_U64)
            fprintf(o->js, "\"%" PRIu64 "\"", (uint64_t)iv[k]);
        else if (type == QN_GGUF_I64)
            fprintf(o->js, "\"%" PRId64 "\"", iv[k]);
        else if (type == QN_GGUF_F32)
            fprintf(o->js, "%.9g", (double)(float)fv[k]);
        else if (type == QN_GGUF_F64)
            fprintf(o->js, "%.17g", fv[k]);
        else if (type == QN_GGUF_BOOL)
            fputs(iv[k] ? "true" : "false", o->js);
        else
            fprintf(o->js, "%" PRId64, iv[k]);
    }
    fputs("]}", o->js);
}

static void kv_strs(out *o, const char *key, const char *const *s, size_t n)
{
    size_t k;
    check(o, qn_gguf_add_string_array(o->w, key, s, NULL, n), key);
    kv_begin(o, key, QN_GGUF_ARRAY, QN_GGUF_STRING);
    fputc('[', o->js);
    for (k = 0; k < n; k++) {
        if (k)
            fputs(", ", o->js);
        json_str(o->js, s[k], strlen(s[k]));
    }
    fputs("]}", o->js);
}

typedef struct sample {
    const char *name;
    uint32_t type, n_dims;
    uint64_t dims[4];
    unsigned char *data;
    size_t nbytes;
} sample;

int main(int argc, char **argv)
{
    static const int64_t u8v[3] = {1, 2, 255}, i8v[2] = {-1, 5}, u16v[2] = {0, 65535}, i16v[3] = {-300, 300, 0};
    static const int64_t u32v[2] = {7, 4000000000}, i32v[2] = {-1, 2147483647}, boolv[3] = {1, 0, 1};
    static const int64_t i64v[2] = {-5, (int64_t)1 << 62};
    static const double f32v[3] = {0.5, -1.25, 1e-3}, f64v[2] = {1.5, -2.25e100};
    static const char *const strv[3] = {"alpha", "", "\xce\xb3"};
    int64_t u64v[2];
    sample s[6] = {
        {"w.f32.1d", QN_GGML_F32, 1, {7, 1, 1, 1}, NULL, 0},
        {"w.f16.2d", QN_GGML_F16, 2, {3, 2, 1, 1}, NULL, 0},
        {"w.i8.3d", QN_GGML_I8, 3, {4, 3, 2, 1}, NULL, 0},
        {"w.i16.4d", QN_GGML_I16, 4, {2, 2, 3, 2}, NULL, 0},
        {"w.i32.2d", QN_GGML_I32, 2, {5, 3, 1, 1}, NULL, 0},
        {"w.f32.4d", QN_GGML_F32, 4, {1, 2, 1, 3}, NULL, 0},
    };
    qn_context *ctx = NULL;
    out o;
    size_t t, k;
    uint64_t off = 0;
    int rc = 0;
    uint64_t u64max = UINT64_MAX - 615; /* 18446744073709551000 */

    if (argc != 3) {
        fprintf(stderr, "usage: %s OUT.gguf OUT.json\n", argv[0]);
        return 2;
    }
    memset(&o, 0, sizeof o);
    u64v[0] = 1;
    {
        uint64_t big = ((uint64_t)1 << 63) + 5;
        memcpy(&u64v[1], &big, 8);
    }
    if (qn_context_create(&ctx) != QN_OK || qn_gguf_writer_create(ctx, &o.w) != QN_OK) {
        fprintf(stderr, "gguf_npm_writer: cannot create the context or the writer\n");
        return 1;
    }
    o.js = fopen(argv[2], "w");
    if (!o.js) {
        perror(argv[2]);
        return 1;
    }
    fprintf(o.js, "{\n  \"metadata\": [");
    kv_str(&o, "general.architecture", "qnoise");
    kv_str(&o, "general.name", "gguf-npm-sample");
    kv_int(&o, "qnoise.format_version", QN_GGUF_U32, 1);
    kv_int(&o, "s.u8", QN_GGUF_U8, 250);
    kv_int(&o, "s.i8", QN_GGUF_I8, -7);
    kv_int(&o, "s.u16", QN_GGUF_U16, 65000);
    kv_int(&o, "s.i16", QN_GGUF_I16, -1234);
    kv_int(&o, "s.u32", QN_GGUF_U32, 3000000000);
    kv_int(&o, "s.i32", QN_GGUF_I32, -123456789);
    kv_u64(&o, "s.u64", u64max);
    kv_i64(&o, "s.i64", INT64_MIN + 808);
    kv_f32(&o, "s.f32", 0.1f);
    kv_f64(&o, "s.f64", 2.718281828459045);
    kv_bool(&o, "s.bool", 1);
    kv_bool(&o, "s.bool0", 0);
    kv_str(&o, "s.utf8", "na\xc3\xafve \xe2\x80\x93 \xc3\xbc");
    kv_str(&o, "s.empty", "");
    kv_arr(&o, "a.u8", QN_GGUF_U8, u8v, NULL, 3);
    kv_arr(&o, "a.i8", QN_GGUF_I8, i8v, NULL, 2);
    kv_arr(&o, "a.u16", QN_GGUF_U16, u16v, NULL, 2);
    kv_arr(&o, "a.i16", QN_GGUF_I16, i16v, NULL, 3);
    kv_arr(&o, "a.u32", QN_GGUF_U32, u32v, NULL, 2);
    kv_arr(&o, "a.i32", QN_GGUF_I32, i32v, NULL, 2);
    kv_arr(&o, "a.f32", QN_GGUF_F32, NULL, f32v, 3);
    kv_arr(&o, "a.bool", QN_GGUF_BOOL, boolv, NULL, 3);
    kv_arr(&o, "a.u64", QN_GGUF_U64, u64v, NULL, 2);
    kv_arr(&o, "a.i64", QN_GGUF_I64, i64v, NULL, 2);
    kv_arr(&o, "a.f64", QN_GGUF_F64, NULL, f64v, 2);
    kv_arr(&o, "a.empty", QN_GGUF_U32, NULL, NULL, 0);
    kv_strs(&o, "a.str", strv, 3);

    /* tensors with deterministic values, some negative */
    for (t = 0; t < 6; t++) {
        size_t nel = 1, esz = qn_ggml_type_size(s[t].type);
        for (k = 0; k < s[t].n_dims; k++)
            nel *= (size_t)s[t].dims[k];
        s[t].nbytes = nel * esz;
        s[t].data = (unsigned char *)malloc(s[t].nbytes);
        if (!s[t].data)
            return 1;
        for (k = 0; k < nel; k++) {
            long v = (long)((k * 37 + t * 11) % 201) - 100;
            if (s[t].type == QN_GGML_F32) {
                float x = (float)v * 0.125f;
                memcpy(s[t].data + 4 * k, &x, 4);
            } else if (s[t].type == QN_GGML_F16) {
                uint16_t x = qn_f32_to_f16((float)v * 0.25f);
                memcpy(s[t].data + 2 * k, &x, 2);
            } else if (s[t].type == QN_GGML_I8) {
                int8_t x = (int8_t)v;
                memcpy(s[t].data + k, &x, 1);
            } else if (s[t].type == QN_GGML_I16) {
                int16_t x = (int16_t)(v * 300);
                memcpy(s[t].data + 2 * k, &x, 2);
            } else {
                int32_t x = (int32_t)(v * 20000000);
                memcpy(s[t].data + 4 * k, &x, 4);
            }
        }
        check(&o, qn_gguf_add_tensor(o.w, s[t].name, s[t].type, s[t].n_dims, s[t].dims, s[t].data, s[t].nbytes),
              s[t].name);
    }
    /* what the writer adds itself */
    kv_begin(&o, QN_GGUF_KEY_ALIGNMENT, QN_GGUF_U32, -1);
    fprintf(o.js, "%u}", QN_GGUF_WRITE_ALIGNMENT);
    kv_begin(&o, QN_GGUF_KEY_CRC32C, QN_GGUF_ARRAY, QN_GGUF_U32);
    fputc('[', o.js);
    for (t = 0; t < 6; t++)
        fprintf(o.js, "%s%u", t ? ", " : "", (unsigned)qn_crc32c(0, s[t].data, s[t].nbytes));
    fputs("]}\n  ],\n  \"tensors\": [", o.js);
    for (t = 0; t < 6; t++) {
        off = (off + QN_GGUF_WRITE_ALIGNMENT - 1) / QN_GGUF_WRITE_ALIGNMENT * QN_GGUF_WRITE_ALIGNMENT;
        fprintf(o.js, "%s\n    {\"name\": ", t ? "," : "");
        json_str(o.js, s[t].name, strlen(s[t].name));
        fprintf(o.js, ", \"type\": %u, \"shape\": [", (unsigned)s[t].type);
        for (k = 0; k < s[t].n_dims; k++)
            fprintf(o.js, "%s\"%" PRIu64 "\"", k ? ", " : "", s[t].dims[k]);
        fprintf(o.js, "], \"offset\": \"%" PRIu64 "\", \"crc32c\": %u, \"hex\": \"", off,
                (unsigned)qn_crc32c(0, s[t].data, s[t].nbytes));
        for (k = 0; k < s[t].nbytes; k++)
            fprintf(o.js, "%02x", s[t].data[k]);
        fputs("\"}", o.js);
        off += s[t].nbytes;
    }
    fprintf(o.js, "\n  ],\n  \"alignment\": %u\n}\n", QN_GGUF_WRITE_ALIGNMENT);
    if (fclose(o.js) != 0) {
        perror(argv[2]);
        o.failed = 1;
    }
    if (!o.failed)
        check(&o, qn_gguf_write_file(o.w, argv[1]), argv[1]);
    rc = o.failed;
    qn_gguf_writer_destroy(o.w);
    for (t = 0; t < 6; t++)
        free(s[t].data);
    qn_context_destroy(ctx);
    return rc;
}
