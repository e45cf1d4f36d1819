/*
 * The GGUF container (lib/format/gguf.c): exact bytes of a tiny file, round
 * trips of every metadata type and every tensor type and rank (mmap, plain
 * read and memory), every truncation of a small file, one crafted file per
 * kind of corruption, checksums, writer misuse, atomic replacement, and
 * allocation failure at every step of open and write.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/gguf.h"
#include "format/half.h"

#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ------------------------------------------------------------------------- */
/* Contexts: log capture, counting allocator that also records sizes         */
/* ------------------------------------------------------------------------- */

typedef struct env {
    counting_alloc ca;
    size_t max_size; /* largest single request */
    char last[512];  /* last error message */
    int n_errors;
} env;

static void env_log(void *user, qn_log_level level, const char *msg)
{
    env *e = (env *)user;
    if (level == QN_LOG_ERROR) {
        snprintf(e->last, sizeof e->last, "%s", msg);
        e->n_errors++;
    }
}

static void *env_alloc(void *user, size_t size, size_t alignment)
{
    env *e = (env *)user;
    if (size > e->max_size)
        e->max_size = size;
    return count_alloc(&e->ca, size, alignment);
}

static void env_free(void *user, void *ptr)
{
    count_free(&((env *)user)->ca, ptr);
}

static qn_context *make_env_ctx(env *e)
{
    qn_context *ctx = NULL;
    memset(e, 0, sizeof *e);
    ck_assert_int_eq(qn_context_create_ex(env_alloc, env_free, e, env_log, e, NULL, NULL, QN_ISA_AVX512, &ctx),
                     QN_OK);
    ck_assert_int_eq(qn_context_set_log(ctx, env_log, e, QN_LOG_ERROR), QN_OK);
    return ctx;
}

/* Destroy ctx and check every allocation made through it was freed. */
static void end_env_ctx(qn_context *ctx, env *e)
{
    qn_context_destroy(ctx);
    ck_assert_int_eq(e->ca.allocs, e->ca.frees);
}

/* ------------------------------------------------------------------------- */
/* Temporary directories and files                                            */
/* ------------------------------------------------------------------------- */

static void make_tmpdir(char *dir, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/qn_gguf_XXXXXX", base && *base ? base : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

/* Entries of dir other than . and .. (count), and whether any name contains ".tmp-". */
static int dir_entries(const char *dir, int *tmp_leftovers)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    *tmp_leftovers = 0;
    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        n++;
        if (strstr(de->d_name, ".tmp-"))
            (*tmp_leftovers)++;
    }
    closedir(d);
    return n;
}

static void remove_tmpdir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    if (!d)
        return;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (unlink(path) != 0)
            rmdir(path);
    }
    closedir(d);
    rmdir(dir);
}

/* Read a whole file into malloc'd memory. */
static unsigned char *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    long n;
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    ck_assert_int_ge(n, 0);
    rewind(fp);
    buf = (unsigned char *)malloc(n ? (size_t)n : 1);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(data, 1, n, fp), n);
    ck_assert_int_eq(fclose(fp), 0);
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* ------------------------------------------------------------------------- */
/* A byte builder for hand-made files                                         */
/* ------------------------------------------------------------------------- */

typedef struct bb {
    unsigned char *p;
    size_t n, cap;
} bb;

static void bb_bytes(bb *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = (unsigned char *)realloc(b->p, cap);
        ck_assert_ptr_nonnull(b->p);
        b->cap = cap;
    }
    if (n)
        memcpy(b->p + b->n, s, n);
    b->n += n;
}

static void bb_le(bb *b, uint64_t v, size_t n)
{
    unsigned char t[8];
    size_t k;
    for (k = 0; k < n; k++)
        t[k] = (unsigned char)(v >> (8 * k));
    bb_bytes(b, t, n);
}

static void bb_u8(bb *b, uint8_t v)
{
    bb_le(b, v, 1);
}
static void bb_u32(bb *b, uint32_t v)
{
    bb_le(b, v, 4);
}
static void bb_u64(bb *b, uint64_t v)
{
    bb_le(b, v, 8);
}
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_bytes(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t align)
{
    while (b->n % align)
        bb_u8(b, 0);
}
static void bb_free(bb *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

static void bb_header(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    bb_bytes(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_tensors);
    bb_u64(b, n_kv);
}

static void bb_kv_u32(bb *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, QN_GGUF_U32);
    bb_u32(b, v);
}

static void bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset)
{
    uint32_t d;
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (d = 0; d < n_dims; d++)
        bb_u64(b, dims[d]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

static void bb_data(bb *b, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++)
        bb_u8(b, (uint8_t)(k * 7 + 1));
}

/*
 * Open the bytes of b from an exactly sized heap copy (so ASan sees any read
 * past the end) and expect status st; when sub is set, the logged message
 * must contain it (and, for a failure, "memory").
 */
static void expect_open(const bb *b, qn_status st, const char *sub)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    unsigned char *copy = (unsigned char *)malloc(b->n ? b->n : 1);
    qn_gguf_file *f = (qn_gguf_file *)1;
    qn_status got;
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, b->p, b->n);
    got = qn_gguf_open_memory(ctx, copy, b->n, &f);
    REQUIRE(got == st, "status %d (%s), expected %d; log: %s", (int)got, qn_status_str(got), (int)st, e.last);
    if (st != QN_OK) {
        ck_assert_ptr_null(f);
        REQUIRE(strstr(e.last, "memory") != NULL, "message does not name the source: %s", e.last);
    }
    if (sub)
        REQUIRE(strstr(e.last, sub) != NULL, "message lacks \"%s\": %s", sub, e.last);
    REQUIRE(e.max_size < 4096, "an allocation of %zu bytes for a %zu-byte file", e.max_size, b->n);
    qn_gguf_close(f == (qn_gguf_file *)1 ? NULL : f);
    free(copy);
    end_env_ctx(ctx, &e);
}

/* ------------------------------------------------------------------------- */
/* Sample content                                                             */
/* ------------------------------------------------------------------------- */

static const uint32_t all_types[5] = {QN_GGML_F32, QN_GGML_F16, QN_GGML_I8, QN_GGML_I16, QN_GGML_I32};
static const uint64_t shapes[4][4] = {{5, 1, 1, 1}, {3, 2, 1, 1}, {2, 3, 2, 1}, {2, 1, 3, 2}};

typedef struct sample_tensor {
    char name[32];
    uint32_t type, n_dims;
    uint64_t dims[4];
    unsigned char *data;
    size_t nbytes;
} sample_tensor;

#define N_SAMPLE 21 /* 5 types x 4 ranks + one empty tensor */

static void make_samples(sample_tensor *s)
{
    uint64_t seed = 42;
    size_t k, i, j;
    for (k = 0; k < N_SAMPLE; k++) {
        sample_tensor *t = &s[k];
        size_t nel = 1;
        memset(t, 0, sizeof *t);
        if (k < 20) {
            t->type = all_types[k / 4];
            t->n_dims = (uint32_t)(k % 4 + 1);
            snprintf(t->name, sizeof t->name, "blk.%zu.%s.w%ud", k, qn_ggml_type_name(t->type), t->n_dims);
            for (j = 0; j < 4; j++)
                t->dims[j] = j < t->n_dims ? shapes[k % 4][j] : 1;
        } else {
            t->type = QN_GGML_F32;
            t->n_dims = 2;
            snprintf(t->name, sizeof t->name, "empty");
            t->dims[0] = 0;
            t->dims[1] = 4;
            t->dims[2] = t->dims[3] = 1;
        }
        for (j = 0; j < t->n_dims; j++)
            nel *= (size_t)t->dims[j];
        t->nbytes = nel * qn_ggml_type_size(t->type);
        t->data = (unsigned char *)malloc(t->nbytes ? t->nbytes : 1);
        ck_assert_ptr_nonnull(t->data);
        for (i = 0; i < t->nbytes; i++)
            t->data[i] = (unsigned char)qn_test_next(&seed);
    }
}

static void free_samples(sample_tensor *s)
{
    size_t k;
    for (k = 0; k < N_SAMPLE; k++)
        free(s[k].data);
}

static const uint8_t arr_u8[3] = {0, 1, 255};
static const int8_t arr_i8[3] = {-128, 0, 127};
static const uint16_t arr_u16[2] = {0, 65535};
static const int16_t arr_i16[3] = {-32768, -1, 32767};
static const uint32_t arr_u32[4] = {0, 1, 0x80000000u, 0xffffffffu};
static const int32_t arr_i32[2] = {INT32_MIN, INT32_MAX};
static const float arr_f32[3] = {0.5f, -1e-30f, 3.4e38f};
static const uint8_t arr_bool[4] = {1, 0, 0, 1};
static const uint64_t arr_u64[2] = {0, UINT64_MAX};
static const int64_t arr_i64[2] = {INT64_MIN, 123456789012345ll};
static const double arr_f64[2] = {-0.0, 1e308};
static const char *const arr_str[3] = {"first", "", "third string"};

/* Every kind of metadata; returns how many pairs were added. */
static size_t add_all_kvs(qn_gguf_writer *w)
{
    ck_assert_int_eq(qn_gguf_add_string(w, "general.architecture", "qnoise"), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u8(w, "t.u8", 200), QN_OK);
    ck_assert_int_eq(qn_gguf_add_i8(w, "t.i8", -100), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u16(w, "t.u16", 60000), QN_OK);
    ck_assert_int_eq(qn_gguf_add_i16(w, "t.i16", -30000), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u32(w, "t.u32", 4000000000u), QN_OK);
    ck_assert_int_eq(qn_gguf_add_i32(w, "t.i32", -2000000000), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u64(w, "t.u64", 0xfedcba9876543210ull), QN_OK);
    ck_assert_int_eq(qn_gguf_add_i64(w, "t.i64", INT64_MIN + 5), QN_OK);
    ck_assert_int_eq(qn_gguf_add_f32(w, "t.f32", 3.25f), QN_OK);
    ck_assert_int_eq(qn_gguf_add_f64(w, "t.f64", -1e300), QN_OK);
    ck_assert_int_eq(qn_gguf_add_bool(w, "t.bool1", 7), QN_OK);
    ck_assert_int_eq(qn_gguf_add_bool(w, "t.bool0", 0), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string_len(w, "t.strnul", "a\0b", 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string(w, "t.empty", ""), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.u8", QN_GGUF_U8, arr_u8, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.i8", QN_GGUF_I8, arr_i8, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.u16", QN_GGUF_U16, arr_u16, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.i16", QN_GGUF_I16, arr_i16, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.u32", QN_GGUF_U32, arr_u32, 4), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.i32", QN_GGUF_I32, arr_i32, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.f32", QN_GGUF_F32, arr_f32, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.bool", QN_GGUF_BOOL, arr_bool, 4), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.u64", QN_GGUF_U64, arr_u64, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.i64", QN_GGUF_I64, arr_i64, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.f64", QN_GGUF_F64, arr_f64, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_array(w, "a.empty", QN_GGUF_U32, NULL, 0), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string_array(w, "a.str", arr_str, NULL, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string_array(w, "a.str0", NULL, NULL, 0), QN_OK);
    return 29;
}

static size_t kv(const qn_gguf_file *f, const char *key)
{
    size_t i = qn_gguf_find_kv(f, key);
    REQUIRE(i != QN_GGUF_NOT_FOUND, "key %s not found", key);
    return i;
}

static void check_all_kvs(const qn_gguf_file *f)
{
    uint8_t u8 = 0;
    int8_t i8 = 0;
    uint16_t u16 = 0;
    int16_t i16 = 0;
    uint32_t u32 = 0;
    int32_t i32 = 0;
    uint64_t u64 = 0, count = 0;
    int64_t i64 = 0;
    float f32 = 0;
    double f64 = 0;
    int b = -1;
    const char *s;
    size_t len;
    qn_gguf_type et;
    const void *raw;
    uint8_t cu8[3], cbool[4];
    int8_t ci8[3];
    uint16_t cu16[2];
    int16_t ci16[3];
    uint32_t cu32[4];
    int32_t ci32[2];
    float cf32[3];
    uint64_t cu64[2];
    int64_t ci64[2];
    double cf64[2];
    qn_gguf_str_iter it;
    int n;

    ck_assert_int_eq(qn_gguf_get_string(f, kv(f, "general.architecture"), &s, &len), QN_OK);
    ck_assert_uint_eq(len, 6);
    ck_assert_int_eq(memcmp(s, "qnoise", 6), 0);
    ck_assert_int_eq(qn_gguf_get_u8(f, kv(f, "t.u8"), &u8), QN_OK);
    ck_assert_uint_eq(u8, 200);
    ck_assert_int_eq(qn_gguf_get_i8(f, kv(f, "t.i8"), &i8), QN_OK);
    ck_assert_int_eq(i8, -100);
    ck_assert_int_eq(qn_gguf_get_u16(f, kv(f, "t.u16"), &u16), QN_OK);
    ck_assert_uint_eq(u16, 60000);
    ck_assert_int_eq(qn_gguf_get_i16(f, kv(f, "t.i16"), &i16), QN_OK);
    ck_assert_int_eq(i16, -30000);
    ck_assert_int_eq(qn_gguf_get_u32(f, kv(f, "t.u32"), &u32), QN_OK);
    ck_assert_uint_eq(u32, 4000000000u);
    ck_assert_int_eq(qn_gguf_get_i32(f, kv(f, "t.i32"), &i32), QN_OK);
    ck_assert_int_eq(i32, -2000000000);
    ck_assert_int_eq(qn_gguf_get_u64(f, kv(f, "t.u64"), &u64), QN_OK);
    ck_assert(u64 == 0xfedcba9876543210ull);
    ck_assert_int_eq(qn_gguf_get_i64(f, kv(f, "t.i64"), &i64), QN_OK);
    ck_assert(i64 == INT64_MIN + 5);
    ck_assert_int_eq(qn_gguf_get_f32(f, kv(f, "t.f32"), &f32), QN_OK);
    ck_assert(f32 == 3.25f);
    ck_assert_int_eq(qn_gguf_get_f64(f, kv(f, "t.f64"), &f64), QN_OK);
    ck_assert(f64 == -1e300);
    ck_assert_int_eq(qn_gguf_get_bool(f, kv(f, "t.bool1"), &b), QN_OK);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(qn_gguf_get_bool(f, kv(f, "t.bool0"), &b), QN_OK);
    ck_assert_int_eq(b, 0);
    ck_assert_int_eq(qn_gguf_get_string(f, kv(f, "t.strnul"), &s, &len), QN_OK);
    ck_assert_uint_eq(len, 3);
    ck_assert_int_eq(memcmp(s, "a\0b", 3), 0);
    ck_assert_int_eq(qn_gguf_get_string(f, kv(f, "t.empty"), &s, &len), QN_OK);
    ck_assert_uint_eq(len, 0);

    /* widening getter */
    ck_assert_int_eq(qn_gguf_get_uint(f, kv(f, "t.u16"), &u64), QN_OK);
    ck_assert(u64 == 60000);
    ck_assert_int_eq(qn_gguf_get_uint(f, kv(f, "t.i8"), &u64), QN_ERR_CORRUPT_DATA); /* negative */
    ck_assert_int_eq(qn_gguf_get_uint(f, kv(f, "t.f32"), &u64), QN_ERR_CORRUPT_DATA);

    /* raw array access and copies */
    ck_assert_int_eq(qn_gguf_get_array(f, kv(f, "a.u16"), &et, &count, &raw), QN_OK);
    ck_assert_int_eq(et, QN_GGUF_U16);
    ck_assert(count == 2);
    ck_assert_int_eq(memcmp(raw, "\x00\x00\xff\xff", 4), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u8"), QN_GGUF_U8, cu8, 3), QN_OK);
    ck_assert_int_eq(memcmp(cu8, arr_u8, sizeof cu8), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.i8"), QN_GGUF_I8, ci8, 3), QN_OK);
    ck_assert_int_eq(memcmp(ci8, arr_i8, sizeof ci8), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u16"), QN_GGUF_U16, cu16, 2), QN_OK);
    ck_assert_int_eq(memcmp(cu16, arr_u16, sizeof cu16), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.i16"), QN_GGUF_I16, ci16, 3), QN_OK);
    ck_assert_int_eq(memcmp(ci16, arr_i16, sizeof ci16), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u32"), QN_GGUF_U32, cu32, 4), QN_OK);
    ck_assert_int_eq(memcmp(cu32, arr_u32, sizeof cu32), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.i32"), QN_GGUF_I32, ci32, 2), QN_OK);
    ck_assert_int_eq(memcmp(ci32, arr_i32, sizeof ci32), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.f32"), QN_GGUF_F32, cf32, 3), QN_OK);
    ck_assert_int_eq(memcmp(cf32, arr_f32, sizeof cf32), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.bool"), QN_GGUF_BOOL, cbool, 4), QN_OK);
    ck_assert_int_eq(memcmp(cbool, arr_bool, sizeof cbool), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u64"), QN_GGUF_U64, cu64, 2), QN_OK);
    ck_assert_int_eq(memcmp(cu64, arr_u64, sizeof cu64), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.i64"), QN_GGUF_I64, ci64, 2), QN_OK);
    ck_assert_int_eq(memcmp(ci64, arr_i64, sizeof ci64), 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.f64"), QN_GGUF_F64, cf64, 2), QN_OK);
    ck_assert_int_eq(memcmp(cf64, arr_f64, sizeof cf64), 0);
    ck_assert_int_eq(qn_gguf_get_array(f, kv(f, "a.empty"), &et, &count, NULL), QN_OK);
    ck_assert_int_eq(et, QN_GGUF_U32);
    ck_assert(count == 0);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.empty"), QN_GGUF_U32, NULL, 0), QN_OK);
    /* wrong element type, wrong count */
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u32"), QN_GGUF_I32, ci32, 2), QN_ERR_CORRUPT_DATA);
    ck_assert_int_eq(qn_gguf_get_array_copy(f, kv(f, "a.u32"), QN_GGUF_U32, cu32, 3), QN_ERR_BUFFER_TOO_SMALL);

    /* strings: random access and iteration */
    ck_assert_int_eq(qn_gguf_get_array(f, kv(f, "a.str"), &et, &count, &raw), QN_OK);
    ck_assert_int_eq(et, QN_GGUF_STRING);
    ck_assert(count == 3);
    ck_assert_ptr_null(raw);
    ck_assert_int_eq(qn_gguf_get_array_string(f, kv(f, "a.str"), 2, &s, &len), QN_OK);
    ck_assert_uint_eq(len, strlen(arr_str[2]));
    ck_assert_int_eq(memcmp(s, arr_str[2], len), 0);
    ck_assert_int_eq(qn_gguf_get_array_string(f, kv(f, "a.str"), 3, &s, &len), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_array_strings(f, kv(f, "a.str"), &it), QN_OK);
    for (n = 0; qn_gguf_str_next(&it, &s, &len); n++) {
        ck_assert_int_lt(n, 3);
        ck_assert_uint_eq(len, strlen(arr_str[n]));
        ck_assert(len == 0 || memcmp(s, arr_str[n], len) == 0);
    }
    ck_assert_int_eq(n, 3);
    ck_assert_int_eq(qn_gguf_array_strings(f, kv(f, "a.str0"), &it), QN_OK);
    ck_assert_int_eq(qn_gguf_str_next(&it, &s, &len), 0);
    ck_assert_int_eq(qn_gguf_array_strings(f, kv(f, "a.u8"), &it), QN_ERR_CORRUPT_DATA);

    /* typed getters check the type; indices are checked */
    u32 = 77;
    ck_assert_int_eq(qn_gguf_get_u32(f, kv(f, "t.u64"), &u32), QN_ERR_CORRUPT_DATA);
    ck_assert_uint_eq(u32, 77);
    ck_assert_int_eq(qn_gguf_get_u32(f, qn_gguf_kv_count(f), &u32), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_get_string(f, kv(f, "t.u8"), &s, &len), QN_ERR_CORRUPT_DATA);
    ck_assert_int_eq(qn_gguf_get_u32(f, kv(f, "t.u32"), NULL), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(qn_gguf_find_kv(f, "t.u3"), QN_GGUF_NOT_FOUND);
    ck_assert_uint_eq(qn_gguf_find_kv(f, "t.u32x"), QN_GGUF_NOT_FOUND);
    ck_assert_uint_eq(qn_gguf_find_kv(f, ""), QN_GGUF_NOT_FOUND);
}

/* Write the sample (all KVs, all tensors) to path. */
static void write_sample(qn_context *ctx, const char *path, sample_tensor *s)
{
    qn_gguf_writer *w = NULL;
    size_t k;
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
    add_all_kvs(w);
    for (k = 0; k < N_SAMPLE; k++)
        ck_assert_int_eq(qn_gguf_add_tensor(w, s[k].name, s[k].type, s[k].n_dims, s[k].dims, s[k].data,
                                            s[k].nbytes),
                         QN_OK);
    ck_assert_uint_eq(qn_gguf_writer_kv_count(w), 29);
    ck_assert_uint_eq(qn_gguf_writer_tensor_count(w), N_SAMPLE);
    ck_assert_int_eq(qn_gguf_write_file(w, path), QN_OK);
    qn_gguf_writer_destroy(w);
}

static void check_sample(const qn_gguf_file *f, const sample_tensor *s, int aligned_base)
{
    size_t k;
    const char *key;
    size_t len, bad = 12345;
    uint32_t a = 0;
    ck_assert_uint_eq(qn_gguf_version(f), 3);
    ck_assert_uint_eq(qn_gguf_alignment(f), 64);
    ck_assert_uint_eq(qn_gguf_data_offset(f) % 64, 0);
    ck_assert_uint_eq(qn_gguf_kv_count(f), 31);
    /* file order: the caller's pairs, then general.alignment, then the checksums */
    ck_assert_int_eq(qn_gguf_kv_key(f, 0, &key, &len), QN_OK);
    ck_assert(len == 20 && memcmp(key, "general.architecture", 20) == 0);
    ck_assert_int_eq(qn_gguf_kv_key(f, 29, &key, &len), QN_OK);
    ck_assert(len == 17 && memcmp(key, "general.alignment", 17) == 0);
    ck_assert_int_eq(qn_gguf_get_u32(f, 29, &a), QN_OK);
    ck_assert_uint_eq(a, 64);
    ck_assert_int_eq(qn_gguf_kv_key(f, 30, &key, &len), QN_OK);
    ck_assert(len == 20 && memcmp(key, QN_GGUF_KEY_CRC32C, 20) == 0);
    ck_assert_int_eq(qn_gguf_kv_key(f, 31, &key, &len), QN_ERR_INVALID_ARG);
    check_all_kvs(f);

    ck_assert_uint_eq(qn_gguf_tensor_count(f), N_SAMPLE);
    for (k = 0; k < N_SAMPLE; k++) {
        qn_gguf_tensor ti;
        uint32_t d;
        uint64_t nel = 1;
        ck_assert_uint_eq(qn_gguf_find_tensor(f, s[k].name), k);
        ck_assert_int_eq(qn_gguf_tensor_info(f, k, &ti), QN_OK);
        ck_assert_uint_eq(ti.name_len, strlen(s[k].name));
        ck_assert_int_eq(memcmp(ti.name, s[k].name, ti.name_len), 0);
        ck_assert_uint_eq(ti.type, s[k].type);
        ck_assert_uint_eq(ti.n_dims, s[k].n_dims);
        for (d = 0; d < 4; d++) {
            ck_assert(ti.dims[d] == s[k].dims[d]);
            nel *= ti.dims[d];
        }
        ck_assert(ti.n_elements == nel);
        ck_assert_uint_eq(ti.nbytes, s[k].nbytes);
        ck_assert_uint_eq(ti.offset % 64, 0);
        if (aligned_base)
            ck_assert_uint_eq((uintptr_t)ti.data % 64, 0);
        ck_assert(ti.nbytes == 0 || memcmp(ti.data, s[k].data, ti.nbytes) == 0);
    }
    ck_assert_uint_eq(qn_gguf_find_tensor(f, "nope"), QN_GGUF_NOT_FOUND);
    ck_assert_uint_eq(qn_gguf_find_tensor(f, "empt"), QN_GGUF_NOT_FOUND);
    {
        qn_gguf_tensor ti;
        ck_assert_int_eq(qn_gguf_tensor_info(f, N_SAMPLE, &ti), QN_ERR_INVALID_ARG);
    }
    ck_assert_int_eq(qn_gguf_has_checksums(f), 1);
    ck_assert_int_eq(qn_gguf_verify(f, &bad), QN_OK);
    ck_assert_uint_eq(bad, 12345);
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

START_TEST(crc32c_known_answer)
{
    /* the CRC-32C check value of "123456789" */
    ck_assert_uint_eq(qn_crc32c(0, "123456789", 9), 0xe3069283u);
    ck_assert_uint_eq(qn_crc32c(qn_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
}
END_TEST

START_TEST(exact_bytes_of_tiny_file)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_writer *w = NULL;
    char dir[256], path[300];
    const float vals[2] = {1.0f, -2.0f};
    const uint64_t dims[1] = {2};
    unsigned char *got;
    size_t size;
    uint32_t crc;
    bb x = {0};
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/tiny.gguf", dir);
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u32(w, "a", 7), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "t", QN_GGML_F32, 1, dims, vals, sizeof vals), QN_OK);
    ck_assert_int_eq(qn_gguf_write_file(w, path), QN_OK);
    qn_gguf_writer_destroy(w);
    got = slurp(path, &size);

    /* the layout, by hand */
    crc = qn_crc32c(0, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);
    bb_bytes(&x, "GGUF\x03\x00\x00\x00", 8);                  /* magic, version 3 */
    bb_bytes(&x, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);      /* tensor_count 1 */
    bb_bytes(&x, "\x03\x00\x00\x00\x00\x00\x00\x00", 8);      /* metadata_kv_count 3 */
    bb_bytes(&x, "\x01\x00\x00\x00\x00\x00\x00\x00" "a", 9);  /* key "a" */
    bb_bytes(&x, "\x04\x00\x00\x00" "\x07\x00\x00\x00", 8);   /* U32, 7 */
    bb_bytes(&x, "\x11\x00\x00\x00\x00\x00\x00\x00" "general.alignment", 25);
    bb_bytes(&x, "\x04\x00\x00\x00" "\x40\x00\x00\x00", 8);   /* U32, 64 */
    bb_bytes(&x, "\x14\x00\x00\x00\x00\x00\x00\x00" "qnoise.tensor_crc32c", 28);
    bb_bytes(&x, "\x09\x00\x00\x00" "\x04\x00\x00\x00", 8);   /* ARRAY of U32 */
    bb_bytes(&x, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);      /* 1 element */
    bb_u32(&x, crc);
    ck_assert_uint_eq(x.n, 122);
    bb_bytes(&x, "\x01\x00\x00\x00\x00\x00\x00\x00" "t", 9);  /* tensor "t" */
    bb_bytes(&x, "\x01\x00\x00\x00", 4);                      /* n_dims 1 */
    bb_bytes(&x, "\x02\x00\x00\x00\x00\x00\x00\x00", 8);      /* dims[0] = 2 */
    bb_bytes(&x, "\x00\x00\x00\x00", 4);                      /* F32 */
    bb_bytes(&x, "\x00\x00\x00\x00\x00\x00\x00\x00", 8);      /* offset 0 */
    ck_assert_uint_eq(x.n, 155);
    bb_pad(&x, 64);                                           /* data section at 192 */
    bb_bytes(&x, "\x00\x00\x80\x3f\x00\x00\x00\xc0", 8);      /* 1.0f, -2.0f */
    bb_pad(&x, 64);                                           /* padded to 256 */
    ck_assert_uint_eq(size, 256);
    ck_assert_uint_eq(x.n, size);
    {
        size_t k;
        for (k = 0; k < size; k++)
            REQUIRE(got[k] == x.p[k], "byte %zu is %02x, expected %02x", k, got[k], x.p[k]);
    }
    bb_free(&x);
    free(got);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(round_trip_every_type)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    sample_tensor s[N_SAMPLE];
    char dir[256], path[300];
    qn_gguf_file *f = NULL;
    unsigned char *bytes;
    size_t size;
    int mode;
    make_samples(s);
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/all.gguf", dir);
    write_sample(ctx, path, s);
    for (mode = 0; mode < 3; mode++) {
        const int flags[3] = {0, QN_GGUF_NO_MMAP, QN_GGUF_VERIFY | QN_GGUF_NO_MMAP};
        ck_assert_int_eq(qn_gguf_open(ctx, path, flags[mode], &f), QN_OK);
        check_sample(f, s, 1);
        qn_gguf_close(f);
    }
    bytes = slurp(path, &size);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, bytes, size, &f), QN_OK);
    check_sample(f, s, 0);
    qn_gguf_close(f);
    free(bytes);
    free_samples(s);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(caller_alignment_and_version2)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_writer *w = NULL;
    qn_gguf_file *f = NULL;
    char dir[256], path[300];
    const uint64_t dims[1] = {3};
    const int8_t d8[3] = {1, 2, 3};
    unsigned char *bytes;
    size_t size;
    qn_gguf_tensor ti;
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/a256.gguf", dir);
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u32(w, "general.alignment", 256), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "a", QN_GGML_I8, 1, dims, d8, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "b", QN_GGML_I8, 1, dims, d8, 3), QN_OK);
    ck_assert_int_eq(qn_gguf_write_file(w, path), QN_OK);
    qn_gguf_writer_destroy(w);
    ck_assert_int_eq(qn_gguf_open(ctx, path, QN_GGUF_VERIFY, &f), QN_OK);
    ck_assert_uint_eq(qn_gguf_alignment(f), 256);
    ck_assert_uint_eq(qn_gguf_kv_count(f), 2); /* no second general.alignment */
    ck_assert_uint_eq(qn_gguf_data_offset(f) % 256, 0);
    ck_assert_int_eq(qn_gguf_tensor_info(f, 1, &ti), QN_OK);
    ck_assert(ti.offset == 256);
    qn_gguf_close(f);

    /* the same bytes labelled version 2 are accepted */
    bytes = slurp(path, &size);
    bytes[4] = 2;
    ck_assert_int_eq(qn_gguf_open_memory(ctx, bytes, size, &f), QN_OK);
    ck_assert_uint_eq(qn_gguf_version(f), 2);
    qn_gguf_close(f);
    free(bytes);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(default_alignment_is_32)
{
    bb b = {0};
    const uint64_t d[1] = {8};
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_file *f = NULL;
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "x", 1, d, QN_GGML_F32, 0);
    bb_tensor(&b, "y", 1, d, QN_GGML_F32, 32);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, b.p, b.n, &f), QN_OK);
    ck_assert_uint_eq(qn_gguf_alignment(f), 32);
    ck_assert_int_eq(qn_gguf_has_checksums(f), 0);
    ck_assert_int_eq(qn_gguf_verify(f, NULL), QN_OK); /* nothing to check */
    qn_gguf_close(f);
    end_env_ctx(ctx, &e);
    bb_free(&b);
}
END_TEST

/* A small valid file whose last tensor ends the file (no trailing padding). */
static unsigned char *small_file(size_t *size)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_writer *w = NULL;
    char dir[256], path[300];
    const uint64_t d1[2] = {3, 2}, d2[1] = {16};
    const int16_t a[6] = {1, -2, 3, -4, 5, -6};
    float b[16];
    const char *const strs[2] = {"x", "yz"};
    unsigned char *bytes;
    int k;
    for (k = 0; k < 16; k++)
        b[k] = (float)k * 0.5f;
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/small.gguf", dir);
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string(w, "general.architecture", "qnoise"), QN_OK);
    ck_assert_int_eq(qn_gguf_add_string_array(w, "s", strs, NULL, 2), QN_OK);
    ck_assert_int_eq(qn_gguf_add_f64(w, "d", 0.25), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "a", QN_GGML_I16, 2, d1, a, sizeof a), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "b", QN_GGML_F32, 1, d2, b, sizeof b), QN_OK);
    ck_assert_int_eq(qn_gguf_write_file(w, path), QN_OK);
    qn_gguf_writer_destroy(w);
    bytes = slurp(path, size);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
    return bytes;
}

START_TEST(every_truncation_fails)
{
    size_t size, n;
    unsigned char *full = small_file(&size);
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_file *f = NULL;
    ck_assert_uint_eq(size % 64, 0);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, full, size, &f), QN_OK);
    qn_gguf_close(f);
    for (n = 0; n < size; n++) {
        unsigned char *cut = (unsigned char *)malloc(n ? n : 1);
        qn_status st;
        ck_assert_ptr_nonnull(cut);
        memcpy(cut, full, n);
        f = (qn_gguf_file *)1;
        st = qn_gguf_open_memory(ctx, n ? cut : NULL, n, &f);
        REQUIRE(st == QN_ERR_CORRUPT_DATA, "prefix of %zu bytes: status %d; log %s", n, (int)st, e.last);
        REQUIRE(f == NULL, "prefix of %zu bytes: handle not NULL", n);
        REQUIRE(strstr(e.last, "memory") != NULL, "prefix %zu: %s", n, e.last);
        free(cut);
    }
    free(full);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(bad_magic_and_versions)
{
    size_t size;
    unsigned char *full = small_file(&size);
    bb b = {0};
    bb_bytes(&b, full, size);
    memcpy(b.p, "GGUX", 4);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "not a GGUF file");
    memcpy(b.p, "GGUF", 4);
    b.p[4] = 1;
    expect_open(&b, QN_ERR_UNSUPPORTED, "version 1");
    b.p[4] = 4;
    expect_open(&b, QN_ERR_UNSUPPORTED, "version 4");
    b.p[4] = 0;
    b.p[7] = 3; /* a big-endian file */
    expect_open(&b, QN_ERR_UNSUPPORTED, "big-endian");
    b.p[7] = 0;
    b.p[4] = 3;
    expect_open(&b, QN_OK, NULL);
    bb_free(&b);
    free(full);
}
END_TEST

START_TEST(huge_counts)
{
    bb b = {0};
    bb_header(&b, 3, UINT64_MAX, 0);
    bb_data(&b, 100);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor_count");
    bb_free(&b);
    bb_header(&b, 3, 0, UINT64_MAX / 2);
    bb_data(&b, 100);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "metadata_kv_count");
    bb_free(&b);
    /* plausible-looking but still too many for the bytes */
    bb_header(&b, 3, 4, 1);
    bb_kv_u32(&b, "k", 1);
    bb_data(&b, 100);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor_count 4");
    bb_free(&b);
}
END_TEST

START_TEST(lengths_past_the_end)
{
    bb b = {0};
    /* key length */
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 1000);
    bb_bytes(&b, "abc", 3);
    bb_u32(&b, QN_GGUF_U8);
    bb_u8(&b, 1);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "metadata pair #0");
    bb_free(&b);
    /* string value length */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "name");
    bb_u32(&b, QN_GGUF_STRING);
    bb_u64(&b, UINT64_MAX);
    bb_bytes(&b, "xyz", 3);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "key 'name'");
    bb_free(&b);
    /* numeric array count */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u32(&b, QN_GGUF_U64);
    bb_u64(&b, (uint64_t)1 << 61);
    bb_u64(&b, 5);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "key 'arr'");
    bb_free(&b);
    /* string array count, and a string inside */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "sarr");
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u32(&b, QN_GGUF_STRING);
    bb_u64(&b, UINT64_MAX);
    bb_str(&b, "a");
    expect_open(&b, QN_ERR_CORRUPT_DATA, "key 'sarr'");
    bb_free(&b);
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "sarr");
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u32(&b, QN_GGUF_STRING);
    bb_u64(&b, 2);
    bb_str(&b, "a");
    bb_u64(&b, 500);
    bb_bytes(&b, "bcdefghijklmnop", 15);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "key 'sarr'");
    bb_free(&b);
    /* tensor name length */
    bb_header(&b, 3, 1, 0);
    bb_u64(&b, 40);
    bb_bytes(&b, "short", 5);
    bb_data(&b, 30);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor info #0");
    bb_free(&b);
}
END_TEST

START_TEST(bad_values)
{
    bb b = {0};
    const uint64_t d[1] = {4};
    /* unknown value type */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "unknown value type 13");
    bb_free(&b);
    /* nested array */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "nest");
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u64(&b, 0);
    expect_open(&b, QN_ERR_UNSUPPORTED, "nested");
    bb_free(&b);
    /* unknown array element type */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "arr");
    bb_u32(&b, QN_GGUF_ARRAY);
    bb_u32(&b, 77);
    bb_u64(&b, 0);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "element type 77");
    bb_free(&b);
    /* bool other than 0/1 */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "flag");
    bb_u32(&b, QN_GGUF_BOOL);
    bb_u8(&b, 2);
    bb_data(&b, 8);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "key 'flag'");
    bb_free(&b);
    /* key longer than 65535 bytes */
    bb_header(&b, 3, 0, 1);
    bb_u64(&b, 65536);
    bb_data(&b, 65536);
    bb_u32(&b, QN_GGUF_U8);
    bb_u8(&b, 0);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "65536");
    bb_free(&b);
    /* tensor name longer than 64 bytes */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "n2345678901234567890123456789012345678901234567890123456789012345", 1, d, QN_GGML_I8, 0);
    bb_pad(&b, 32);
    bb_data(&b, 4);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "65 bytes");
    bb_free(&b);
}
END_TEST

START_TEST(bad_dims_and_types)
{
    bb b = {0};
    const uint64_t d5[5] = {1, 1, 1, 1, 1}, big[3] = {(uint64_t)1 << 32, (uint64_t)1 << 32, (uint64_t)1 << 32};
    const uint64_t neg[1] = {(uint64_t)1 << 63}, d[1] = {4};
    /* n_dims 0 */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "zero", 0, d5, QN_GGML_F32, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'zero': n_dims 0");
    bb_free(&b);
    /* n_dims 5 */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "five", 5, d5, QN_GGML_F32, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'five': n_dims 5");
    bb_free(&b);
    /* product overflow */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "huge", 3, big, QN_GGML_F32, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'huge': dimensions overflow");
    bb_free(&b);
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "neg", 1, neg, QN_GGML_I8, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'neg'");
    bb_free(&b);
    /* a large tensor in a small file: no allocation of its size */
    {
        const uint64_t g[2] = {(uint64_t)1 << 20, (uint64_t)1 << 10};
        bb_header(&b, 3, 1, 0);
        bb_tensor(&b, "gig", 2, g, QN_GGML_F32, 0);
        bb_pad(&b, 32);
        bb_data(&b, 32);
        expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'gig'");
        bb_free(&b);
    }
    /* quantized and unknown ggml types */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "q4", 1, d, 2, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_UNSUPPORTED, "tensor 'q4': ggml type 2 ");
    bb_free(&b);
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "odd", 1, d, 1234567, 0);
    bb_pad(&b, 32);
    bb_data(&b, 32);
    expect_open(&b, QN_ERR_UNSUPPORTED, "tensor 'odd': ggml type 1234567");
    bb_free(&b);
}
END_TEST

START_TEST(bad_offsets)
{
    bb b = {0};
    const uint64_t d[1] = {8}; /* 32 bytes of F32 */
    /* misaligned (default alignment 32) */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "mis", 1, d, QN_GGML_F32, 8);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'mis': data offset 8");
    bb_free(&b);
    /* past the end */
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "far", 1, d, QN_GGML_F32, 64);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'far'");
    bb_free(&b);
    bb_header(&b, 3, 1, 0);
    bb_tensor(&b, "wrap", 1, d, QN_GGML_F32, UINT64_MAX - 31);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "tensor 'wrap'");
    bb_free(&b);
    /* overlapping */
    {
        const uint64_t d16[1] = {16}; /* 64 bytes */
        bb_header(&b, 3, 2, 0);
        bb_tensor(&b, "first", 1, d16, QN_GGML_F32, 32);
        bb_tensor(&b, "second", 1, d16, QN_GGML_F32, 0);
        bb_pad(&b, 32);
        bb_data(&b, 96);
        expect_open(&b, QN_ERR_CORRUPT_DATA, "overlap");
        bb_free(&b);
    }
    /* the same offset twice */
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "p", 1, d, QN_GGML_F32, 0);
    bb_tensor(&b, "q", 1, d, QN_GGML_F32, 0);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "overlap");
    bb_free(&b);
    /* adjacent is fine, holes are fine */
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "p", 1, d, QN_GGML_F32, 0);
    bb_tensor(&b, "q", 1, d, QN_GGML_F32, 64);
    bb_pad(&b, 32);
    bb_data(&b, 96);
    expect_open(&b, QN_OK, NULL);
    bb_free(&b);
    /* data section beyond the end although all tensors are empty-sized: 0 bytes at offset 0 */
    {
        const uint64_t z[1] = {0};
        bb_header(&b, 3, 1, 0);
        bb_tensor(&b, "z", 1, z, QN_GGML_F32, 0);
        expect_open(&b, b.n % 32 ? QN_ERR_CORRUPT_DATA : QN_OK, NULL);
        bb_pad(&b, 32);
        expect_open(&b, QN_OK, NULL);
        bb_free(&b);
    }
}
END_TEST

START_TEST(duplicates)
{
    bb b = {0};
    const uint64_t d[1] = {8};
    bb_header(&b, 3, 2, 0);
    bb_tensor(&b, "same", 1, d, QN_GGML_F32, 0);
    bb_tensor(&b, "same", 1, d, QN_GGML_F32, 32);
    bb_pad(&b, 32);
    bb_data(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "duplicate tensor name 'same'");
    bb_free(&b);
    bb_header(&b, 3, 0, 3);
    bb_kv_u32(&b, "k.one", 1);
    bb_kv_u32(&b, "k.two", 2);
    bb_kv_u32(&b, "k.one", 3);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "duplicate key 'k.one'");
    bb_free(&b);
    /* a prefix of another key is a different key */
    bb_header(&b, 3, 0, 2);
    bb_kv_u32(&b, "k", 1);
    bb_kv_u32(&b, "k.x", 2);
    expect_open(&b, QN_OK, NULL);
    bb_free(&b);
}
END_TEST

START_TEST(bad_alignment)
{
    bb b = {0};
    const uint32_t bad[3] = {0, 12, 100};
    int k;
    for (k = 0; k < 3; k++) {
        bb_header(&b, 3, 0, 1);
        bb_kv_u32(&b, "general.alignment", bad[k]);
        expect_open(&b, QN_ERR_CORRUPT_DATA, "general.alignment");
        bb_free(&b);
    }
    /* not a U32 */
    bb_header(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, QN_GGUF_U64);
    bb_u64(&b, 64);
    expect_open(&b, QN_ERR_CORRUPT_DATA, "must be a U32");
    bb_free(&b);
    /* 24 is a multiple of 8: accepted, and offsets follow it */
    {
        const uint64_t d[1] = {2};
        env e;
        qn_context *ctx = make_env_ctx(&e);
        qn_gguf_file *f = NULL;
        qn_gguf_tensor ti;
        bb_header(&b, 3, 2, 1);
        bb_kv_u32(&b, "general.alignment", 24);
        bb_tensor(&b, "a", 1, d, QN_GGML_F32, 0);
        bb_tensor(&b, "b", 1, d, QN_GGML_F32, 24);
        bb_pad(&b, 24);
        bb_data(&b, 32);
        ck_assert_int_eq(qn_gguf_open_memory(ctx, b.p, b.n, &f), QN_OK);
        ck_assert_uint_eq(qn_gguf_alignment(f), 24);
        ck_assert_uint_eq(qn_gguf_data_offset(f) % 24, 0);
        ck_assert_int_eq(qn_gguf_tensor_info(f, 1, &ti), QN_OK);
        ck_assert_ptr_eq(ti.data, b.p + qn_gguf_data_offset(f) + 24);
        qn_gguf_close(f);
        end_env_ctx(ctx, &e);
        bb_free(&b);
    }
}
END_TEST

START_TEST(checksum_mismatch)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    sample_tensor s[N_SAMPLE];
    char dir[256], path[300];
    qn_gguf_file *f = NULL;
    qn_gguf_tensor ti;
    unsigned char *bytes;
    size_t size, bad = 999, off;
    make_samples(s);
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/crc.gguf", dir);
    write_sample(ctx, path, s);
    bytes = slurp(path, &size);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, bytes, size, &f), QN_OK);
    ck_assert_int_eq(qn_gguf_tensor_info(f, 6, &ti), QN_OK);
    off = (size_t)((const unsigned char *)ti.data - bytes) + 3;
    qn_gguf_close(f);
    bytes[off] ^= 0x10;
    /* a cheap open does not look at the data */
    ck_assert_int_eq(qn_gguf_open_memory(ctx, bytes, size, &f), QN_OK);
    ck_assert_int_eq(qn_gguf_verify(f, &bad), QN_ERR_CORRUPT_DATA);
    ck_assert_uint_eq(bad, 6);
    REQUIRE(strstr(e.last, s[6].name) != NULL, "message lacks the tensor name: %s", e.last);
    REQUIRE(strstr(e.last, "memory") != NULL, "message lacks the source: %s", e.last);
    qn_gguf_close(f);
    /* the flag verifies at open, and names the file */
    spit(path, bytes, size);
    f = (qn_gguf_file *)1;
    ck_assert_int_eq(qn_gguf_open(ctx, path, QN_GGUF_VERIFY, &f), QN_ERR_CORRUPT_DATA);
    ck_assert_ptr_null(f);
    REQUIRE(strstr(e.last, path) != NULL && strstr(e.last, s[6].name) != NULL, "message: %s", e.last);
    ck_assert_int_eq(qn_gguf_open(ctx, path, 0, &f), QN_OK);
    qn_gguf_close(f);
    free(bytes);
    free_samples(s);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(checksum_array_malformed)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_file *f = NULL;
    bb b = {0};
    const uint64_t d[1] = {8};
    size_t bad = 0;
    int variant;
    for (variant = 0; variant < 3; variant++) {
        bb_header(&b, 3, 1, 1);
        bb_str(&b, QN_GGUF_KEY_CRC32C);
        if (variant == 2) {
            bb_u32(&b, QN_GGUF_U32);
            bb_u32(&b, 0);
        } else {
            bb_u32(&b, QN_GGUF_ARRAY);
            bb_u32(&b, variant == 0 ? QN_GGUF_U32 : QN_GGUF_U64);
            bb_u64(&b, variant == 0 ? 2 : 1);
            bb_u32(&b, 0);
            bb_u32(&b, 0);
        }
        bb_tensor(&b, "t", 1, d, QN_GGML_F32, 0);
        bb_pad(&b, 32);
        bb_data(&b, 32);
        ck_assert_int_eq(qn_gguf_open_memory(ctx, b.p, b.n, &f), QN_OK);
        bad = 0;
        ck_assert_int_eq(qn_gguf_verify(f, &bad), QN_ERR_CORRUPT_DATA);
        ck_assert_uint_eq(bad, QN_GGUF_NOT_FOUND);
        REQUIRE(strstr(e.last, QN_GGUF_KEY_CRC32C) != NULL, "message: %s", e.last);
        qn_gguf_close(f);
        bb_free(&b);
    }
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(writer_errors)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_writer *w = NULL;
    const uint64_t d1[1] = {4}, d2[2] = {2, 2}, big[2] = {(uint64_t)1 << 62, 8};
    const float data[4] = {1, 2, 3, 4};
    const uint8_t badbool[2] = {1, 2};
    char name[80], *longkey;
    ck_assert_int_eq(qn_gguf_writer_create(ctx, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_writer_create(NULL, &w), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(w);
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);

    /* names: 64 bytes is the limit, duplicates refused */
    memset(name, 'n', sizeof name);
    name[64] = '\0';
    ck_assert_int_eq(qn_gguf_add_tensor(w, name, QN_GGML_F32, 1, d1, data, 16), QN_OK);
    name[64] = 'n';
    name[65] = '\0';
    ck_assert_int_eq(qn_gguf_add_tensor(w, name, QN_GGML_F32, 1, d1, data, 16), QN_ERR_INVALID_ARG);
    REQUIRE(strstr(e.last, "65 bytes") != NULL, "%s", e.last);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "w", QN_GGML_F32, 2, d2, data, 16), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "w", QN_GGML_F32, 2, d2, data, 16), QN_ERR_INVALID_ARG);
    REQUIRE(strstr(e.last, "duplicate") != NULL, "%s", e.last);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "", QN_GGML_F32, 1, d1, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, NULL, QN_GGML_F32, 1, d1, data, 16), QN_ERR_INVALID_ARG);
    /* sizes, ranks, types */
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 1, d1, data, 15), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F16, 1, d1, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 0, d1, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 5, d1, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 1, NULL, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 1, d1, NULL, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", 2, 1, d1, data, 16), QN_ERR_UNSUPPORTED);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", 30, 1, d1, data, 16), QN_ERR_UNSUPPORTED); /* BF16: not here */
    ck_assert_int_eq(qn_gguf_add_tensor(w, "x", QN_GGML_F32, 2, big, data, 16), QN_ERR_OVERFLOW);
    ck_assert_uint_eq(qn_gguf_writer_tensor_count(w), 2);

    /* keys */
    ck_assert_int_eq(qn_gguf_add_u32(w, "k", 1), QN_OK);
    ck_assert_int_eq(qn_gguf_add_u64(w, "k", 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u32(w, "", 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u32(w, NULL, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, QN_GGUF_KEY_CRC32C, QN_GGUF_U32, NULL, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u64(w, "general.alignment", 64), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u32(w, "general.alignment", 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u32(w, "general.alignment", 48), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_u32(w, "general.alignment", 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_string(w, "s", NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_string_len(w, "s", NULL, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, "a", QN_GGUF_STRING, data, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, "a", QN_GGUF_ARRAY, data, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, "a", QN_GGUF_U8, NULL, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, "a", QN_GGUF_BOOL, badbool, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_array(w, "a", QN_GGUF_U8, data, SIZE_MAX), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_gguf_add_string_array(w, "a", NULL, NULL, 2), QN_ERR_INVALID_ARG);
    longkey = (char *)malloc(65537);
    ck_assert_ptr_nonnull(longkey);
    memset(longkey, 'k', 65536);
    longkey[65536] = '\0';
    ck_assert_int_eq(qn_gguf_add_u8(w, longkey, 1), QN_ERR_INVALID_ARG);
    longkey[65535] = '\0';
    ck_assert_int_eq(qn_gguf_add_u8(w, longkey, 1), QN_OK);
    free(longkey);
    ck_assert_uint_eq(qn_gguf_writer_kv_count(w), 2);

    /* NULL writer */
    ck_assert_int_eq(qn_gguf_add_u32(NULL, "k", 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_add_tensor(NULL, "k", QN_GGML_F32, 1, d1, data, 16), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_write_file(NULL, "/tmp/x.gguf"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_write_file(w, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_write_file(w, ""), QN_ERR_INVALID_ARG);
    qn_gguf_writer_destroy(w);
    qn_gguf_writer_destroy(NULL);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(reader_arguments)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    qn_gguf_file *f = (qn_gguf_file *)1;
    char dir[256], path[300];
    ck_assert_int_eq(qn_gguf_open(ctx, "/nonexistent/dir/x.gguf", 0, &f), QN_ERR_IO);
    ck_assert_ptr_null(f);
    REQUIRE(strstr(e.last, "/nonexistent/dir/x.gguf") != NULL, "%s", e.last);
    ck_assert_int_eq(qn_gguf_open(ctx, NULL, 0, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_open(NULL, "x", 0, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_open(ctx, "x", 0, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_open(ctx, "x", 8, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, NULL, 5, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_gguf_open_memory(ctx, NULL, 0, &f), QN_ERR_CORRUPT_DATA);
    /* an empty file and a directory */
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/empty.gguf", dir);
    spit(path, "", 0);
    ck_assert_int_eq(qn_gguf_open(ctx, path, 0, &f), QN_ERR_CORRUPT_DATA);
    REQUIRE(strstr(e.last, path) != NULL, "%s", e.last);
    ck_assert_int_eq(qn_gguf_open(ctx, dir, 0, &f), QN_ERR_IO);
    ck_assert_ptr_null(f);
    /* accessors on NULL */
    ck_assert_uint_eq(qn_gguf_kv_count(NULL), 0);
    ck_assert_uint_eq(qn_gguf_tensor_count(NULL), 0);
    ck_assert_uint_eq(qn_gguf_find_kv(NULL, "x"), QN_GGUF_NOT_FOUND);
    ck_assert_uint_eq(qn_gguf_find_tensor(NULL, "x"), QN_GGUF_NOT_FOUND);
    ck_assert_int_eq(qn_gguf_verify(NULL, NULL), QN_ERR_INVALID_ARG);
    qn_gguf_close(NULL);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

static void write_one(qn_context *ctx, const char *path, float v, qn_status want)
{
    qn_gguf_writer *w = NULL;
    const uint64_t d[1] = {1};
    ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
    ck_assert_int_eq(qn_gguf_add_tensor(w, "v", QN_GGML_F32, 1, d, &v, sizeof v), QN_OK);
    ck_assert_int_eq(qn_gguf_write_file(w, path), want);
    qn_gguf_writer_destroy(w);
}

START_TEST(atomic_write)
{
    env e;
    qn_context *ctx = make_env_ctx(&e);
    char dir[256], path[300], bad[400];
    unsigned char *before, *after;
    size_t nb, na;
    int leftovers;
    qn_gguf_file *f = NULL;
    qn_gguf_tensor ti;
    float v;
    make_tmpdir(dir, sizeof dir);

    /* a directory that does not exist: QN_ERR_IO and nothing created */
    snprintf(bad, sizeof bad, "%s/missing/out.gguf", dir);
    write_one(ctx, bad, 1.0f, QN_ERR_IO);
    REQUIRE(strstr(e.last, bad) != NULL, "message does not name the file: %s", e.last);
    ck_assert_int_eq(file_exists(bad), 0);
    ck_assert_int_eq(dir_entries(dir, &leftovers), 0);

    /* replace an existing file on success */
    snprintf(path, sizeof path, "%s/out.gguf", dir);
    write_one(ctx, path, 1.0f, QN_OK);
    before = slurp(path, &nb);
    write_one(ctx, path, 2.0f, QN_OK);
    ck_assert_int_eq(dir_entries(dir, &leftovers), 1);
    ck_assert_int_eq(leftovers, 0);
    ck_assert_int_eq(qn_gguf_open(ctx, path, QN_GGUF_VERIFY, &f), QN_OK);
    ck_assert_int_eq(qn_gguf_tensor_info(f, 0, &ti), QN_OK);
    memcpy(&v, ti.data, 4);
    ck_assert(v == 2.0f);
    qn_gguf_close(f);

    /* a failing write (the allocator refuses) leaves the old file as it was */
    write_one(ctx, path, 1.0f, QN_OK);
    {
        qn_gguf_writer *w = NULL;
        const uint64_t d[1] = {1};
        float x = 3.0f;
        ck_assert_int_eq(qn_gguf_writer_create(ctx, &w), QN_OK);
        ck_assert_int_eq(qn_gguf_add_tensor(w, "v", QN_GGML_F32, 1, d, &x, sizeof x), QN_OK);
        e.ca.fail_from = e.ca.allocs + 3; /* the checksum buffer and the file record succeed, then none */
        ck_assert_int_eq(qn_gguf_write_file(w, path), QN_ERR_OUT_OF_MEMORY);
        e.ca.fail_from = 0;
        qn_gguf_writer_destroy(w);
    }
    after = slurp(path, &na);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(before, after, na), 0);
    free(after);
    ck_assert_int_eq(dir_entries(dir, &leftovers), 1);
    ck_assert_int_eq(leftovers, 0);

    /* the destination is a directory: rename fails, the temp file is removed */
    snprintf(bad, sizeof bad, "%s/adir", dir);
    ck_assert_int_eq(mkdir(bad, 0700), 0);
    write_one(ctx, bad, 1.0f, QN_ERR_IO);
    ck_assert_int_eq(dir_entries(dir, &leftovers), 2);
    ck_assert_int_eq(leftovers, 0);
    free(before);
    remove_tmpdir(dir);
    end_env_ctx(ctx, &e);
}
END_TEST

START_TEST(alloc_failures_open)
{
    char dir[256], path[300];
    sample_tensor s[N_SAMPLE];
    unsigned char *bytes;
    size_t size;
    int mode;
    make_samples(s);
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/oom.gguf", dir);
    {
        env e0;
        qn_context *c0 = make_env_ctx(&e0);
        write_sample(c0, path, s);
        end_env_ctx(c0, &e0);
    }
    bytes = slurp(path, &size);
    for (mode = 0; mode < 3; mode++) {
        int k, succeeded = 0;
        for (k = 1; k < 100 && !succeeded; k++) {
            env e;
            qn_context *ctx = make_env_ctx(&e);
            qn_gguf_file *f = (qn_gguf_file *)1;
            qn_status st;
            e.ca.fail_from = e.ca.allocs + k;
            if (mode == 0)
                st = qn_gguf_open_memory(ctx, bytes, size, &f);
            else
                st = qn_gguf_open(ctx, path, mode == 1 ? QN_GGUF_NO_MMAP | QN_GGUF_VERIFY : 0, &f);
            if (st == QN_OK) {
                succeeded = 1;
                e.ca.fail_from = 0;
                check_sample(f, s, 1 - (mode == 0));
                qn_gguf_close(f);
            } else {
                REQUIRE(st == QN_ERR_OUT_OF_MEMORY, "mode %d, failing allocation %d: status %d", mode, k, (int)st);
                ck_assert_ptr_null(f);
            }
            end_env_ctx(ctx, &e);
        }
        ck_assert_int_eq(succeeded, 1);
    }
    free(bytes);
    free_samples(s);
    remove_tmpdir(dir);
}
END_TEST

START_TEST(alloc_failures_write)
{
    char dir[256], path[300];
    sample_tensor s[N_SAMPLE];
    int k, succeeded = 0, leftovers;
    make_samples(s);
    make_tmpdir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/oomw.gguf", dir);
    for (k = 1; k < 400 && !succeeded; k++) {
        env e;
        qn_context *ctx = make_env_ctx(&e);
        qn_gguf_writer *w = NULL;
        qn_status st;
        size_t t;
        e.ca.fail_from = e.ca.allocs + k;
        st = qn_gguf_writer_create(ctx, &w);
        if (st == QN_OK) {
            /* a subset of the sample: enough to grow every table */
            size_t j;
            char key[32];
            for (j = 0; st == QN_OK && j < 40; j++) {
                snprintf(key, sizeof key, "k.%zu", j);
                st = qn_gguf_add_u32(w, key, (uint32_t)j);
            }
            if (st == QN_OK)
                st = qn_gguf_add_string_array(w, "sa", arr_str, NULL, 3);
            if (st == QN_OK)
                st = qn_gguf_add_array(w, "au", QN_GGUF_U64, arr_u64, 2);
            for (t = 0; st == QN_OK && t < N_SAMPLE; t++)
                st = qn_gguf_add_tensor(w, s[t].name, s[t].type, s[t].n_dims, s[t].dims, s[t].data, s[t].nbytes);
            if (st == QN_OK)
                st = qn_gguf_write_file(w, path);
        } else {
            ck_assert_ptr_null(w);
        }
        if (st == QN_OK) {
            qn_gguf_file *f = NULL;
            succeeded = 1;
            e.ca.fail_from = 0;
            ck_assert_uint_eq(qn_gguf_writer_kv_count(w), 42);
            ck_assert_int_eq(qn_gguf_open(ctx, path, QN_GGUF_VERIFY, &f), QN_OK);
            ck_assert_uint_eq(qn_gguf_tensor_count(f), N_SAMPLE);
            ck_assert_uint_eq(qn_gguf_kv_count(f), 44);
            qn_gguf_close(f);
        } else {
            REQUIRE(st == QN_ERR_OUT_OF_MEMORY, "failing allocation %d: status %d (%s)", k, (int)st, e.last);
            REQUIRE(!file_exists(path), "failing allocation %d: a file was left", k);
        }
        ck_assert_int_eq(dir_entries(dir, &leftovers), succeeded);
        ck_assert_int_eq(leftovers, 0);
        qn_gguf_writer_destroy(w);
        end_env_ctx(ctx, &e);
    }
    ck_assert_int_eq(succeeded, 1);
    free_samples(s);
    remove_tmpdir(dir);
}
END_TEST

START_TEST(type_tables)
{
    ck_assert_uint_eq(qn_ggml_type_size(QN_GGML_F32), 4);
    ck_assert_uint_eq(qn_ggml_type_size(QN_GGML_F16), 2);
    ck_assert_uint_eq(qn_ggml_type_size(QN_GGML_I8), 1);
    ck_assert_uint_eq(qn_ggml_type_size(QN_GGML_I16), 2);
    ck_assert_uint_eq(qn_ggml_type_size(QN_GGML_I32), 4);
    ck_assert_uint_eq(qn_ggml_type_size(2), 0);
    ck_assert_uint_eq(qn_ggml_type_size(30), 0);
    ck_assert_str_eq(qn_ggml_type_name(QN_GGML_I16), "I16");
    ck_assert_str_eq(qn_ggml_type_name(99), "unsupported");
    ck_assert_str_eq(qn_gguf_type_name(QN_GGUF_F64), "F64");
    ck_assert_str_eq(qn_gguf_type_name(13), "invalid");
}
END_TEST

static Suite *gguf_suite(void)
{
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("writer_reader");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, crc32c_known_answer);
    tcase_add_test(tc, type_tables);
    tcase_add_test(tc, exact_bytes_of_tiny_file);
    tcase_add_test(tc, round_trip_every_type);
    tcase_add_test(tc, caller_alignment_and_version2);
    tcase_add_test(tc, default_alignment_is_32);
    suite_add_tcase(s, tc);
    tc = tcase_create("bad_input");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, every_truncation_fails);
    tcase_add_test(tc, bad_magic_and_versions);
    tcase_add_test(tc, huge_counts);
    tcase_add_test(tc, lengths_past_the_end);
    tcase_add_test(tc, bad_values);
    tcase_add_test(tc, bad_dims_and_types);
    tcase_add_test(tc, bad_offsets);
    tcase_add_test(tc, duplicates);
    tcase_add_test(tc, bad_alignment);
    tcase_add_test(tc, checksum_mismatch);
    tcase_add_test(tc, checksum_array_malformed);
    tcase_add_test(tc, reader_arguments);
    suite_add_tcase(s, tc);
    tc = tcase_create("writer");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, writer_errors);
    tcase_add_test(tc, atomic_write);
    suite_add_tcase(s, tc);
    tc = tcase_create("alloc_failures");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, alloc_failures_open);
    tcase_add_test(tc, alloc_failures_write);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(gguf_suite());
}
