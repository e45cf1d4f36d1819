/*
 * safetensors reader and writer (lib/format/safetensors.c): round trips of
 * every dtype, the exact bytes of a small file, fp16/bf16 widening, a file
 * written by an independent writer from PyTorch tensors
 * (tests/data/torch_small.safetensors, made by tests/torch_safetensors.py),
 * one crafted bad file per rule, every truncation of valid files, writer
 * argument errors, atomic replacement, and every allocation failing in turn.
 *
 * jansson (the reader's JSON parser) allocates with malloc, not with the
 * context allocator: its allocator hook is process-global state the library
 * must not touch. The allocation sweeps below therefore cover the library's
 * own allocations; jansson's are checked by the ASan and valgrind runs.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/internal.h"
#include "format/safetensors.h"

#ifndef QN_TEST_DATA_DIR
#define QN_TEST_DATA_DIR "tests/data"
#endif

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Fail only when cond is false (ck_assert records every success, slow in loops). */
#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* ------------------------------------------------------------------------- */
/* A context with a counting allocator and the last error message            */
/* ------------------------------------------------------------------------- */

typedef struct env {
    counting_alloc a;
    char msg[512];
    int n_err;
    qn_context *ctx;
    char dir[256];
} env;

static void capture(void *user, qn_log_level level, const char *m)
{
    env *e = (env *)user;
    if (level == QN_LOG_ERROR) {
        e->n_err++;
        snprintf(e->msg, sizeof e->msg, "%s", m);
    }
}

static void env_init(env *e)
{
    const char *t = getenv("TMPDIR");
    memset(e, 0, sizeof *e);
    ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &e->a, capture, e, NULL, NULL, QN_ISA_AVX512,
                                          &e->ctx),
                     QN_OK);
    snprintf(e->dir, sizeof e->dir, "%s/qn_st_XXXXXX", t && *t ? t : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(e->dir));
}

static int live(const env *e)
{
    return e->a.allocs - e->a.frees;
}

/* Number of entries of a directory (without . and ..); -1 if it cannot be read. */
static int dir_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    if (!d)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

/* Remove the temporary directory and what the tests left in it (files and empty directories). */
static void env_fini(env *e)
{
    DIR *d = opendir(e->dir);
    struct dirent *de;
    char p[512];
    if (d) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(p, sizeof p, "%s/%s", e->dir, de->d_name);
            if (unlink(p) != 0)
                rmdir(p);
        }
        closedir(d);
    }
    rmdir(e->dir);
    qn_context_destroy(e->ctx);
    ck_assert_int_eq(e->a.allocs, e->a.frees);
}

static void path_in(const env *e, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", e->dir, name);
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    unsigned char *buf;
    long n;
    ck_assert_msg(fp != NULL, "cannot open %s", path);
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

static void write_all(const char *path, const void *buf, size_t n)
{
    FILE *fp = fopen(path, "wb");
    ck_assert_ptr_nonnull(fp);
    ck_assert_uint_eq(fwrite(buf, 1, n, fp), n);
    ck_assert_int_eq(fclose(fp), 0);
}

static uint64_t load_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A crafted file: 8-byte little-endian hlen, the json text, then ndata filler bytes. Exactly sized. */
static unsigned char *craft_len(uint64_t hlen, const char *json, size_t ndata, size_t *size)
{
    size_t jl = strlen(json), n = 8 + jl + ndata, i;
    unsigned char *buf = (unsigned char *)malloc(n);
    ck_assert_ptr_nonnull(buf);
    for (i = 0; i < 8; i++)
        buf[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + 8, json, jl);
    for (i = 0; i < ndata; i++)
        buf[8 + jl + i] = (unsigned char)(0x5A + i);
    *size = n;
    return buf;
}

static unsigned char *craft(const char *json, size_t ndata, size_t *size)
{
    return craft_len(strlen(json), json, ndata, size);
}

/* Open n bytes at buf from memory and require failure with want, a message naming "memory" and needle. */
static void expect_fail_mem(env *e, const unsigned char *buf, size_t n, qn_status want, const char *needle,
                            const char *what)
{
    qn_st_file *f = (qn_st_file *)(uintptr_t)1;
    int before = live(e);
    qn_status st;
    e->msg[0] = '\0';
    st = qn_st_open_memory(e->ctx, buf, n, &f);
    REQUIRE(st == want, "%s: status %d (%s), want %d; message: %s", what, (int)st, qn_status_str(st), (int)want,
            e->msg);
    REQUIRE(f == NULL, "%s: *out not NULL on error", what);
    REQUIRE(strstr(e->msg, "qn_st_open_memory: memory: ") != NULL, "%s: message does not name the source: %s",
            what, e->msg);
    REQUIRE(!needle || strstr(e->msg, needle) != NULL, "%s: message lacks \"%s\": %s", what, needle, e->msg);
    REQUIRE(live(e) == before, "%s: %d allocations leaked", what, live(e) - before);
}

static qn_st_file *open_mem_ok(env *e, const unsigned char *buf, size_t n, const char *what)
{
    qn_st_file *f = NULL;
    qn_status st = qn_st_open_memory(e->ctx, buf, n, &f);
    REQUIRE(st == QN_OK, "%s: status %d (%s): %s", what, (int)st, qn_status_str(st), e->msg);
    ck_assert_ptr_nonnull(f);
    return f;
}

static void put_u16le(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put_f32le(unsigned char *p, float f)
{
    uint32_t b;
    int i;
    memcpy(&b, &f, sizeof b);
    for (i = 0; i < 4; i++)
        p[i] = (unsigned char)(b >> (8 * i));
}

static int same_float(float a, float b)
{
    uint32_t x, y;
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    memcpy(&x, &a, sizeof x);
    memcpy(&y, &b, sizeof y);
    return x == y;
}

/* ------------------------------------------------------------------------- */
/* dtypes                                                                    */
/* ------------------------------------------------------------------------- */

START_TEST(test_dtype_table)
{
    static const char *const names[QN_ST_DTYPE_COUNT] = {"BOOL", "U8",  "I8",  "F8_E5M2", "F8_E4M3",
                                                         "I16",  "U16", "F16", "BF16",    "I32",
                                                         "U32",  "F32", "F64", "I64",     "U64"};
    static const size_t sizes[QN_ST_DTYPE_COUNT] = {1, 1, 1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    unsigned i;
    qn_st_dtype d;
    for (i = 0; i < QN_ST_DTYPE_COUNT; i++) {
        ck_assert_str_eq(qn_st_dtype_name((qn_st_dtype)i), names[i]);
        ck_assert_uint_eq(qn_st_dtype_size((qn_st_dtype)i), sizes[i]);
        ck_assert_int_eq(qn_st_dtype_from_name(names[i], &d), 1);
        ck_assert_int_eq((int)d, (int)i);
    }
    ck_assert_ptr_null(qn_st_dtype_name((qn_st_dtype)QN_ST_DTYPE_COUNT));
    ck_assert_uint_eq(qn_st_dtype_size((qn_st_dtype)-1), 0);
    d = QN_ST_U8;
    ck_assert_int_eq(qn_st_dtype_from_name("f32", &d), 0);
    ck_assert_int_eq(qn_st_dtype_from_name("F32 ", &d), 0);
    ck_assert_int_eq(qn_st_dtype_from_name(NULL, &d), 0);
    ck_assert_int_eq((int)d, (int)QN_ST_U8);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Round trips                                                               */
/* ------------------------------------------------------------------------- */

typedef struct rt_tensor {
    char name[32];
    qn_st_dtype dtype;
    unsigned rank;
    uint64_t shape[QN_ST_MAX_RANK];
    unsigned char *data;
    size_t nbytes;
} rt_tensor;

/* Every dtype in turn with ranks 0 .. 8 and empty shapes; random little-endian bytes. */
static size_t make_rt_set(rt_tensor *t, size_t cap, uint64_t seed)
{
    static const unsigned ranks[] = {0, 1, 2, 1, 4, 3, 8};
    static const uint64_t dims[][QN_ST_MAX_RANK] = {
        {0}, {3}, {2, 3}, {0}, {1, 2, 1, 3}, {2, 0, 3}, {1, 2, 1, 2, 1, 2, 1, 2},
    };
    size_t n = 0, i, k;
    for (i = 0; i < 2 * QN_ST_DTYPE_COUNT && n < cap; i++, n++) {
        size_t v = i % COUNT(ranks), numel = 1;
        t[n].dtype = (qn_st_dtype)(i % QN_ST_DTYPE_COUNT);
        snprintf(t[n].name, sizeof t[n].name, "layer%zu.%s", i, qn_st_dtype_name(t[n].dtype));
        t[n].rank = ranks[v];
        memset(t[n].shape, 0, sizeof t[n].shape);
        for (k = 0; k < t[n].rank; k++) {
            t[n].shape[k] = dims[v][k];
            numel *= (size_t)dims[v][k];
        }
        t[n].nbytes = numel * qn_st_dtype_size(t[n].dtype);
        t[n].data = t[n].nbytes ? (unsigned char *)malloc(t[n].nbytes) : NULL;
        for (k = 0; k < t[n].nbytes; k++)
            t[n].data[k] = (unsigned char)qn_test_next(&seed);
    }
    return n;
}

static void free_rt_set(rt_tensor *t, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        free(t[i].data);
}

static qn_st_writer *writer_of(env *e, const rt_tensor *t, size_t n)
{
    qn_st_writer *w = NULL;
    size_t i;
    ck_assert_int_eq(qn_st_writer_create(e->ctx, &w), QN_OK);
    for (i = 0; i < n; i++) {
        qn_status st = qn_st_add_tensor(w, t[i].name, t[i].dtype, t[i].rank, t[i].shape, t[i].data, t[i].nbytes);
        REQUIRE(st == QN_OK, "add %s: %s", t[i].name, e->msg);
    }
    ck_assert_int_eq(qn_st_add_metadata(w, "qnoise", "{\"version\": 1, \"layers\": [\"a\", \"b\"]}"), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "format", "pt"), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "empty", ""), QN_OK);
    return w;
}

/* Everything the writer was given must come back; the layout must follow the rules. */
static void check_rt(env *e, const qn_st_file *f, const rt_tensor *t, size_t n, const unsigned char *file,
                     size_t file_size)
{
    uint64_t hlen = load_u64le(file), prev_end = 0;
    size_t i, prev_size = 8, prev_insert = 0;
    const char *k, *v;
    (void)e;
    ck_assert_uint_eq((8 + hlen) % QN_ST_DATA_ALIGN, 0);
    ck_assert_uint_eq(qn_st_tensor_count(f), n);
    for (i = 0; i < n; i++) {
        size_t idx = (size_t)-1;
        qn_st_info info;
        REQUIRE(qn_st_find(f, t[i].name, &idx) == 1, "%s not found", t[i].name);
        ck_assert_str_eq(qn_st_tensor_name(f, idx), t[i].name);
        ck_assert_int_eq(qn_st_tensor_info(f, idx, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)t[i].dtype);
        ck_assert_uint_eq(info.rank, t[i].rank);
        ck_assert_int_eq(memcmp(info.shape, t[i].shape, sizeof info.shape), 0);
        ck_assert_uint_eq(info.nbytes, t[i].nbytes);
        ck_assert_uint_eq(info.numel, t[i].nbytes / qn_st_dtype_size(t[i].dtype));
        if (t[i].nbytes) {
            ck_assert_ptr_nonnull(info.data);
            ck_assert_int_eq(memcmp(info.data, t[i].data, t[i].nbytes), 0);
            ck_assert_int_eq(memcmp(file + info.file_offset, t[i].data, t[i].nbytes), 0);
        } else {
            ck_assert_ptr_null(info.data);
        }
        /* each tensor is aligned to its element size within the 64-aligned data buffer */
        ck_assert_uint_eq(info.file_offset % qn_st_dtype_size(info.dtype), 0);
        ck_assert_uint_le(info.file_offset + info.nbytes, file_size);
    }
    /* by index: increasing offsets, no gaps; non-empty tensors by decreasing element size, then insertion */
    for (i = 0; i < n; i++) {
        qn_st_info info;
        size_t ins = 0, sz;
        ck_assert_int_eq(qn_st_tensor_info(f, i, &info), QN_OK);
        ck_assert_uint_eq(info.file_offset, (i == 0 ? 8 + hlen : prev_end));
        prev_end = info.file_offset + info.nbytes;
        if (!info.nbytes)
            continue;
        while (strcmp(t[ins].name, qn_st_tensor_name(f, i)) != 0)
            ins++;
        sz = qn_st_dtype_size(info.dtype);
        ck_assert_uint_le(sz, prev_size);
        if (sz == prev_size)
            ck_assert_uint_ge(ins, prev_insert);
        prev_size = sz;
        prev_insert = ins;
    }
    ck_assert_uint_eq(prev_end, file_size);
    ck_assert_uint_eq(qn_st_metadata_count(f), 3);
    ck_assert_str_eq(qn_st_metadata_get(f, "format"), "pt");
    ck_assert_str_eq(qn_st_metadata_get(f, "empty"), "");
    ck_assert_str_eq(qn_st_metadata_get(f, "qnoise"), "{\"version\": 1, \"layers\": [\"a\", \"b\"]}");
    ck_assert_ptr_null(qn_st_metadata_get(f, "missing"));
    ck_assert_int_eq(qn_st_metadata_at(f, 0, &k, &v), QN_OK);
    ck_assert_str_eq(k, "empty");
    ck_assert_int_eq(qn_st_metadata_at(f, 2, &k, &v), QN_OK);
    ck_assert_str_eq(k, "qnoise");
    ck_assert_int_eq(qn_st_metadata_at(f, 3, &k, &v), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_find(f, "missing", NULL), 0);
    ck_assert_ptr_null(qn_st_tensor_name(f, n));
}

START_TEST(test_roundtrip_every_dtype)
{
    env e;
    rt_tensor t[2 * QN_ST_DTYPE_COUNT];
    size_t n, size, pass;
    qn_st_writer *w;
    unsigned char *file, *shifted;
    char path[512];
    env_init(&e);
    n = make_rt_set(t, COUNT(t), 42);
    w = writer_of(&e, t, n);
    path_in(&e, "rt.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    file = read_all(path, &size);
    for (pass = 0; pass < 4; pass++) {
        qn_st_file *f = NULL;
        if (pass < 2) {
            ck_assert_int_eq(qn_st_open(e.ctx, path, (int)pass, &f), QN_OK);
            check_rt(&e, f, t, n, file, size);
        } else {
            /* from memory, at an odd address: every read must cope with unaligned data */
            size_t shift = pass == 2 ? 0 : 3;
            shifted = (unsigned char *)malloc(size + shift);
            memcpy(shifted + shift, file, size);
            f = open_mem_ok(&e, shifted + shift, size, "memory");
            check_rt(&e, f, t, n, file, size);
            {
                size_t i;
                for (i = 0; i < n; i++) {
                    float out[64];
                    qn_st_info info;
                    ck_assert_int_eq(qn_st_tensor_info(f, i, &info), QN_OK);
                    if (info.dtype == QN_ST_F32 || info.dtype == QN_ST_F16 || info.dtype == QN_ST_BF16)
                        ck_assert_int_eq(qn_st_read_f32(f, i, out, COUNT(out)), QN_OK);
                    else
                        ck_assert_int_eq(qn_st_read_f32(f, i, out, COUNT(out)), QN_ERR_UNSUPPORTED);
                }
            }
        }
        qn_st_close(f);
        if (pass >= 2)
            free(shifted);
    }
    /* writing the same description again gives the same bytes */
    {
        char path2[512];
        size_t size2;
        unsigned char *file2;
        path_in(&e, "rt2.safetensors", path2, sizeof path2);
        ck_assert_int_eq(qn_st_write_file(w, path2), QN_OK);
        file2 = read_all(path2, &size2);
        ck_assert_uint_eq(size2, size);
        ck_assert_int_eq(memcmp(file, file2, size), 0);
        free(file2);
    }
    free(file);
    qn_st_writer_destroy(w);
    free_rt_set(t, n);
    env_fini(&e);
}
END_TEST

START_TEST(test_header_bytes_pinned)
{
    static const char expected_json[] =
        "{\"B\":{\"data_offsets\":[8,10],\"dtype\":\"I16\",\"shape\":[1]},"
        "\"__metadata__\":{\"k\":\"v\",\"q\\\"x\":\"tab\\there\\u0001, line\\nbreak\"},"
        "\"m\":{\"data_offsets\":[10,13],\"dtype\":\"U8\",\"shape\":[3]},"
        "\"w\":{\"data_offsets\":[0,8],\"dtype\":\"F32\",\"shape\":[2]}}";
    static const unsigned char w_data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40}; /* 1.0f, 2.0f */
    static const unsigned char m_data[3] = {1, 2, 3};
    static const unsigned char b_data[2] = {0xff, 0xff}; /* -1 */
    env e;
    qn_st_writer *w = NULL;
    uint64_t s2 = 2, s3 = 3, s1 = 1;
    unsigned char want[269];
    unsigned char *file;
    size_t size, jl = sizeof expected_json - 1;
    char path[512];
    env_init(&e);
    ck_assert_uint_eq(jl, 225);
    ck_assert_int_eq(qn_st_writer_create(e.ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "w", QN_ST_F32, 1, &s2, w_data, 8), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "m", QN_ST_U8, 1, &s3, m_data, 3), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "B", QN_ST_I16, 1, &s1, b_data, 2), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "q\"x", "tab\there\001, line\nbreak"), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "k", "v"), QN_OK);
    path_in(&e, "tiny.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);

    /* 8 + 248 = 256 header bytes, then w (F32), B (I16), m (U8) */
    memset(want, ' ', sizeof want);
    want[0] = 248;
    memset(want + 1, 0, 7);
    memcpy(want + 8, expected_json, jl);
    memcpy(want + 256, w_data, 8);
    memcpy(want + 264, b_data, 2);
    memcpy(want + 266, m_data, 3);
    file = read_all(path, &size);
    ck_assert_uint_eq(size, sizeof want);
    ck_assert_msg(memcmp(file, want, size) == 0, "file bytes differ; header: %.*s", 248, (const char *)file + 8);
    free(file);

    /* "__metadata__" last when every name sorts before it; a rank-0 tensor has "shape":[] */
    ck_assert_int_eq(qn_st_writer_create(e.ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "A", QN_ST_U8, 0, NULL, m_data, 1), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "k", "v"), QN_OK);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);
    file = read_all(path, &size);
    {
        static const char j[] =
            "{\"A\":{\"data_offsets\":[0,1],\"dtype\":\"U8\",\"shape\":[]},\"__metadata__\":{\"k\":\"v\"}}";
        ck_assert_uint_eq(sizeof j - 1, 77);
        ck_assert_uint_eq(size, 129);
        ck_assert_uint_eq(load_u64le(file), 120);
        ck_assert_int_eq(memcmp(file + 8, j, 77), 0);
        ck_assert_int_eq(file[8 + 77], ' ');
        ck_assert_int_eq(file[127], ' ');
        ck_assert_int_eq(file[128], 1);
    }
    free(file);

    /* an empty description: "{}" and spaces up to 64 bytes */
    ck_assert_int_eq(qn_st_writer_create(e.ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);
    file = read_all(path, &size);
    ck_assert_uint_eq(size, 64);
    ck_assert_uint_eq(load_u64le(file), 56);
    ck_assert_int_eq(memcmp(file + 8, "{}   ", 5), 0);
    ck_assert_int_eq(file[63], ' ');
    {
        qn_st_file *f = open_mem_ok(&e, file, size, "empty");
        ck_assert_uint_eq(qn_st_tensor_count(f), 0);
        ck_assert_uint_eq(qn_st_metadata_count(f), 0);
        ck_assert_int_eq(qn_st_find(f, "x", NULL), 0);
        qn_st_close(f);
    }
    free(file);
    env_fini(&e);
}
END_TEST

START_TEST(test_half_to_f32)
{
    /* F16: 1, -2.5, 65504, 2^-24 (smallest subnormal), largest subnormal, inf, -inf, NaN, -0 */
    static const uint16_t h[] = {0x3C00, 0xC100, 0x7BFF, 0x0001, 0x03FF, 0x7C00, 0xFC00, 0x7E00, 0x8000};
    /* BF16: 1, -2.5, largest finite, 2^-133 (smallest subnormal), inf, NaN, -0 */
    static const uint16_t b[] = {0x3F80, 0xC020, 0x7F7F, 0x0001, 0x7F80, 0x7FC0, 0x8000};
    const float hf[] = {1.0f, -2.5f, 65504.0f, ldexpf(1.0f, -24), ldexpf(1023.0f, -24), INFINITY, -INFINITY, NAN,
                        -0.0f};
    const float bf[] = {1.0f, -2.5f, 3.38953139e38f, ldexpf(1.0f, -133), INFINITY, NAN, -0.0f};
    const float f32[] = {1.5f, -0.0f, 3.0e-45f};
    unsigned char hb[2 * COUNT(h)], bb[2 * COUNT(b)], fb[4 * COUNT(f32)];
    uint64_t nh = COUNT(h), nb = COUNT(b), nf = COUNT(f32), n1 = 1;
    float out[16];
    unsigned char u8 = 7;
    size_t i, ih, ib, i8, i32;
    env e;
    qn_st_writer *w = NULL;
    qn_st_file *f = NULL;
    char path[512];
    env_init(&e);
    for (i = 0; i < COUNT(h); i++)
        put_u16le(hb + 2 * i, h[i]);
    for (i = 0; i < COUNT(b); i++)
        put_u16le(bb + 2 * i, b[i]);
    for (i = 0; i < COUNT(f32); i++)
        put_f32le(fb + 4 * i, f32[i]);
    ck_assert_int_eq(qn_st_writer_create(e.ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "h", QN_ST_F16, 1, &nh, hb, sizeof hb), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "b", QN_ST_BF16, 1, &nb, bb, sizeof bb), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "u8", QN_ST_U8, 1, &n1, &u8, 1), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "f", QN_ST_F32, 1, &nf, fb, sizeof fb), QN_OK);
    path_in(&e, "half.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_OK);
    ck_assert_int_eq(qn_st_find(f, "h", &ih), 1);
    ck_assert_int_eq(qn_st_find(f, "b", &ib), 1);
    ck_assert_int_eq(qn_st_find(f, "u8", &i8), 1);
    ck_assert_int_eq(qn_st_find(f, "f", &i32), 1);

    ck_assert_int_eq(qn_st_read_f32(f, ih, out, COUNT(h)), QN_OK);
    for (i = 0; i < COUNT(h); i++)
        ck_assert_msg(same_float(out[i], hf[i]), "f16 0x%04x -> %a, want %a", h[i], (double)out[i], (double)hf[i]);
    ck_assert_int_eq(qn_st_read_f32(f, ib, out, COUNT(out)), QN_OK);
    for (i = 0; i < COUNT(b); i++)
        ck_assert_msg(same_float(out[i], bf[i]), "bf16 0x%04x -> %a, want %a", b[i], (double)out[i], (double)bf[i]);
    ck_assert_int_eq(qn_st_read_f32(f, i32, out, COUNT(f32)), QN_OK);
    for (i = 0; i < COUNT(f32); i++)
        ck_assert(same_float(out[i], f32[i]));

    /* errors write nothing */
    for (i = 0; i < COUNT(out); i++)
        out[i] = 42.0f;
    ck_assert_int_eq(qn_st_read_f32(f, ih, out, COUNT(h) - 1), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_ptr_nonnull(strstr(e.msg, "'h'"));
    ck_assert_int_eq(qn_st_read_f32(f, i8, out, COUNT(out)), QN_ERR_UNSUPPORTED);
    ck_assert_ptr_nonnull(strstr(e.msg, "U8"));
    ck_assert_int_eq(qn_st_read_f32(f, 4, out, COUNT(out)), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_read_f32(f, ih, NULL, COUNT(out)), QN_ERR_INVALID_ARG);
    for (i = 0; i < COUNT(out); i++)
        ck_assert(out[i] == 42.0f);
    qn_st_close(f);
    env_fini(&e);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* A file from an independent writer (tests/torch_safetensors.py)            */
/* ------------------------------------------------------------------------- */

START_TEST(test_torch_file)
{
    static const char *const order[] = {"bn.num_batches_tracked", "empty", "fc.bias", "fc.weight",
                                        "emb.weight", "proj.weight", "mask"};
    const float fc_w[] = {-1.25f, -0.75f, -0.25f, 0.25f, 0.75f, 1.25f};
    const float fc_b[] = {0.125f, -3.0f, 1e-3f};
    const float emb[] = {1.0f, -2.5f, 65504.0f, ldexpf(1.0f, -24), INFINITY, NAN};
    const float proj[] = {1.0f, -2.5f, ldexpf(1.0f, -133), -INFINITY};
    static const unsigned char mask[] = {1, 0, 1};
    static const unsigned char seven[] = {7, 0, 0, 0, 0, 0, 0, 0};
    const char *path = QN_TEST_DATA_DIR "/torch_small.safetensors";
    env e;
    size_t i, pass;
    float out[8];
    env_init(&e);
    for (pass = 0; pass < 2; pass++) {
        qn_st_file *f = NULL;
        qn_st_info info;
        qn_status st = qn_st_open(e.ctx, path, (int)pass, &f);
        REQUIRE(st == QN_OK, "%s: %s", path, e.msg);
        ck_assert_uint_eq(qn_st_tensor_count(f), COUNT(order));
        for (i = 0; i < COUNT(order); i++)
            ck_assert_str_eq(qn_st_tensor_name(f, i), order[i]);
        ck_assert_uint_eq(qn_st_metadata_count(f), 1);
        ck_assert_str_eq(qn_st_metadata_get(f, "format"), "pt");

        ck_assert_int_eq(qn_st_tensor_info(f, 0, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)QN_ST_I64);
        ck_assert_uint_eq(info.rank, 0);
        ck_assert_uint_eq(info.numel, 1);
        ck_assert_uint_eq(info.nbytes, 8);
        ck_assert_uint_eq(info.file_offset, 8 + 488);
        ck_assert_int_eq(memcmp(info.data, seven, 8), 0);

        ck_assert_int_eq(qn_st_tensor_info(f, 1, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)QN_ST_F32);
        ck_assert_uint_eq(info.rank, 2);
        ck_assert_uint_eq(info.shape[0], 0);
        ck_assert_uint_eq(info.shape[1], 4);
        ck_assert_uint_eq(info.nbytes, 0);
        ck_assert_ptr_null(info.data);
        ck_assert_int_eq(qn_st_read_f32(f, 1, NULL, 0), QN_OK);

        ck_assert_int_eq(qn_st_tensor_info(f, 3, &info), QN_OK);
        ck_assert_uint_eq(info.rank, 2);
        ck_assert_uint_eq(info.shape[0], 3);
        ck_assert_uint_eq(info.shape[1], 2);
        ck_assert_int_eq(qn_st_read_f32(f, 3, out, 6), QN_OK);
        for (i = 0; i < 6; i++)
            ck_assert(same_float(out[i], fc_w[i]));
        ck_assert_int_eq(qn_st_read_f32(f, 2, out, 3), QN_OK);
        for (i = 0; i < 3; i++)
            ck_assert(same_float(out[i], fc_b[i]));

        ck_assert_int_eq(qn_st_tensor_info(f, 4, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)QN_ST_F16);
        ck_assert_uint_eq(info.shape[0], 2);
        ck_assert_uint_eq(info.shape[1], 3);
        ck_assert_int_eq(qn_st_read_f32(f, 4, out, 6), QN_OK);
        for (i = 0; i < 6; i++)
            ck_assert_msg(same_float(out[i], emb[i]), "emb[%zu] = %a", i, (double)out[i]);

        ck_assert_int_eq(qn_st_tensor_info(f, 5, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)QN_ST_BF16);
        ck_assert_int_eq(qn_st_read_f32(f, 5, out, 4), QN_OK);
        for (i = 0; i < 4; i++)
            ck_assert_msg(same_float(out[i], proj[i]), "proj[%zu] = %a", i, (double)out[i]);

        ck_assert_int_eq(qn_st_tensor_info(f, 6, &info), QN_OK);
        ck_assert_int_eq((int)info.dtype, (int)QN_ST_BOOL);
        ck_assert_uint_eq(info.nbytes, 3);
        ck_assert_int_eq(memcmp(info.data, mask, 3), 0);
        ck_assert_uint_eq(info.file_offset + 3, 8 + 488 + 67);
        qn_st_close(f);
    }
    env_fini(&e);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Crafted files                                                             */
/* ------------------------------------------------------------------------- */

typedef struct bad_case {
    const char *json;
    size_t ndata;
    qn_status want;
    const char *needle;
} bad_case;

#define U8A(off) "{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" off "]}"

static const bad_case bad_cases[] = {
    /* not an object / not JSON / trailing bytes */
    {"[1,2]", 0, QN_ERR_CORRUPT_DATA, "does not start with '{'"},
    {" {}", 0, QN_ERR_CORRUPT_DATA, "does not start with '{'"},
    {"   ", 0, QN_ERR_CORRUPT_DATA, "does not start with '{'"},
    {"\xef\xbb\xbf{}", 0, QN_ERR_CORRUPT_DATA, "does not start with '{'"},
    {"{\"a\":", 0, QN_ERR_CORRUPT_DATA, "does not end with '}'"},
    {"{}x", 0, QN_ERR_CORRUPT_DATA, "does not end with '}'"},
    {"{}\n", 0, QN_ERR_CORRUPT_DATA, "does not end with '}'"},
    {"{}\t  ", 0, QN_ERR_CORRUPT_DATA, "does not end with '}'"},
    {"{} }", 0, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{}{}", 0, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"U8\",}}", 0, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\" " U8A("0,1") "}", 1, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\\u0000b\":" U8A("0,1") "}", 1, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\xff\":" U8A("0,1") "}", 1, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\xc0\xaf\":" U8A("0,1") "}", 1, QN_ERR_CORRUPT_DATA, "not valid JSON"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,99999999999999999999]}}", 1, QN_ERR_CORRUPT_DATA,
     "not valid JSON"},
    /* duplicates */
    {"{\"a\":" U8A("0,1") ",\"a\":" U8A("1,2") "}", 2, QN_ERR_CORRUPT_DATA, "duplicate"},
    {"{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA,
     "duplicate"},
    {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, QN_ERR_CORRUPT_DATA, "duplicate"},
    /* tiling */
    {"{\"a\":" U8A("0,1") ",\"b\":" U8A("2,3") "}", 3, QN_ERR_CORRUPT_DATA, "tensor 'b': a hole of 1 bytes"},
    {"{\"a\":" U8A("1,2") "}", 2, QN_ERR_CORRUPT_DATA, "tensor 'a': a hole"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, QN_ERR_CORRUPT_DATA, "tensor 'b': its data (offset 4) overlaps tensor 'a'"},
    {"{\"a\":" U8A("0,1") ",\"b\":" U8A("0,1") "}", 1, QN_ERR_CORRUPT_DATA, "overlaps"},
    {"{\"a\":" U8A("0,1") "}", 2, QN_ERR_CORRUPT_DATA, "1 bytes after the last tensor"},
    {"{}", 1, QN_ERR_CORRUPT_DATA, "1 bytes after the last tensor"},
    {"{\"a\":" U8A("0,1") "}", 0, QN_ERR_CORRUPT_DATA, "past the 0-byte data buffer"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 2, QN_ERR_CORRUPT_DATA,
     "tensor 'a': data_offsets end 4 is past the 2-byte data buffer"},
    /* sizes */
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, QN_ERR_CORRUPT_DATA,
     "tensor 'a': data_offsets span 4 bytes but the shape and dtype F32 need 8"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,0]}}", 0, QN_ERR_CORRUPT_DATA, "need 1"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]}}", 1, QN_ERR_CORRUPT_DATA,
     "tensor 'a': data_offsets begin 1 is after end 0"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,2],\"data_offsets\":[0,0]}}", 0,
     QN_ERR_CORRUPT_DATA, "element count overflows"},
    {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,0]}}", 0, QN_ERR_CORRUPT_DATA,
     "byte size overflows"},
    /* shape entries */
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,0]}}", 0, QN_ERR_CORRUPT_DATA,
     "tensor 'a': shape entry 0 is not a non-negative integer"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1.0],\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA,
     "shape entry 1 is not"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[\"1\"],\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA, "shape entry 0"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[null],\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA, "shape entry 0"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":1,\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA,
     "\"shape\" is not an array"},
    {"{\"a\":{\"dtype\":\"U8\",\"data_offsets\":[0,1]}}", 1, QN_ERR_CORRUPT_DATA, "\"shape\" is missing"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, QN_ERR_UNSUPPORTED,
     "tensor 'a': rank 9"},
    /* dtype */
    {"{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,16]}}", 16, QN_ERR_UNSUPPORTED,
     "tensor 'a': unknown dtype \"F128\""},
    {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QN_ERR_UNSUPPORTED, "unknown dtype"},
    {"{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QN_ERR_CORRUPT_DATA,
     "\"dtype\" is not a string"},
    {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, QN_ERR_CORRUPT_DATA, "tensor 'a': \"dtype\" is missing"},
    /* data_offsets */
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, QN_ERR_CORRUPT_DATA, "tensor 'a': \"data_offsets\" is missing"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, QN_ERR_CORRUPT_DATA, "not an array [begin"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, QN_ERR_CORRUPT_DATA, "not an array"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":{\"0\":1}}}", 1, QN_ERR_CORRUPT_DATA, "not an array"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[-1,-1]}}", 0, QN_ERR_CORRUPT_DATA,
     "not non-negative integers"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[\"0\",\"1\"]}}", 1, QN_ERR_CORRUPT_DATA,
     "not non-negative integers"},
    {"{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0.0,1]}}", 1, QN_ERR_CORRUPT_DATA,
     "not non-negative integers"},
    /* entries */
    {"{\"a\":5}", 0, QN_ERR_CORRUPT_DATA, "tensor 'a': entry is not a JSON object"},
    {"{\"a\":[\"U8\",[1],[0,1]]}", 1, QN_ERR_CORRUPT_DATA, "tensor 'a': entry is not a JSON object"},
    /* __metadata__ */
    {"{\"__metadata__\":{\"a\":1}}", 0, QN_ERR_CORRUPT_DATA, "\"__metadata__\" key 'a': the value is not a string"},
    {"{\"__metadata__\":{\"a\":\"x\",\"b\":{\"c\":\"d\"}}}", 0, QN_ERR_CORRUPT_DATA, "key 'b'"},
    {"{\"__metadata__\":{\"a\":null}}", 0, QN_ERR_CORRUPT_DATA, "key 'a'"},
    {"{\"__metadata__\":{\"a\":[\"x\"]}}", 0, QN_ERR_CORRUPT_DATA, "key 'a'"},
    {"{\"__metadata__\":\"x\"}", 0, QN_ERR_CORRUPT_DATA, "\"__metadata__\" is not a JSON object"},
    {"{\"__metadata__\":null}", 0, QN_ERR_CORRUPT_DATA, "\"__metadata__\" is not a JSON object"},
};

START_TEST(test_bad_files)
{
    env e;
    size_t i, n;
    unsigned char *buf;
    char what[64];
    env_init(&e);
    for (i = 0; i < COUNT(bad_cases); i++) {
        buf = craft(bad_cases[i].json, bad_cases[i].ndata, &n);
        snprintf(what, sizeof what, "bad case %zu", i);
        expect_fail_mem(&e, buf, n, bad_cases[i].want, bad_cases[i].needle, what);
        free(buf);
    }
    env_fini(&e);
}
END_TEST

START_TEST(test_bad_header_length)
{
    env e;
    size_t n;
    unsigned char *buf;
    unsigned char tiny[7] = {2, 0, 0, 0, 0, 0, 0};
    env_init(&e);
    expect_fail_mem(&e, tiny, 7, QN_ERR_CORRUPT_DATA, "7 bytes is too short", "7 bytes");
    expect_fail_mem(&e, tiny, 0, QN_ERR_CORRUPT_DATA, "0 bytes is too short", "0 bytes");
    expect_fail_mem(&e, NULL, 0, QN_ERR_CORRUPT_DATA, "too short", "NULL, 0 bytes");
    buf = craft_len(3, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "header length 3 is past the end of the file (2 bytes", "len > file");
    free(buf);
    buf = craft_len(100000000, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "past the end", "len = limit > file");
    free(buf);
    buf = craft_len(100000001, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "header length 100000001 is above the limit", "len > limit");
    free(buf);
    buf = craft_len(UINT64_MAX, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "above the limit", "len = 2^64-1");
    free(buf);
    buf = craft_len((uint64_t)1 << 63, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "above the limit", "len = 2^63");
    free(buf);
    buf = craft_len(0, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "does not start with '{'", "len 0");
    free(buf);
    /* a shorter length than the JSON: the header is cut */
    buf = craft_len(1, "{}", 0, &n);
    expect_fail_mem(&e, buf, n, QN_ERR_CORRUPT_DATA, "does not end with '}'", "len 1");
    free(buf);
    env_fini(&e);
}
END_TEST

/* Valid oddities every reader must accept. */
START_TEST(test_accepts_valid_variants)
{
    env e;
    size_t n, idx;
    unsigned char *buf;
    qn_st_file *f;
    qn_st_info info;
    env_init(&e);

    /* no tensors, no data */
    buf = craft("{}", 0, &n);
    f = open_mem_ok(&e, buf, n, "{}");
    ck_assert_uint_eq(qn_st_tensor_count(f), 0);
    qn_st_close(f);
    free(buf);

    buf = craft("{\"__metadata__\":{}}      ", 0, &n);
    f = open_mem_ok(&e, buf, n, "empty metadata");
    ck_assert_uint_eq(qn_st_metadata_count(f), 0);
    qn_st_close(f);
    free(buf);

    /* unpadded odd-length header, an unknown key in an entry, a \u escape in the name */
    buf = craft("{\"caf\\u00e9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1,{}]}}", 1, &n);
    f = open_mem_ok(&e, buf, n, "odd");
    ck_assert_str_eq(qn_st_tensor_name(f, 0), "caf\xc3\xa9");
    ck_assert_int_eq(qn_st_find(f, "caf\xc3\xa9", &idx), 1);
    ck_assert_uint_eq(idx, 0);
    qn_st_close(f);
    free(buf);

    /* empty tensors sharing offsets, one at the very end; a zero dimension beside a huge one */
    buf = craft("{\"e2\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[0,0]},"
                "\"z\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0],\"data_offsets\":[2,2]},"
                "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
                "\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
                "\"__metadata__\":{\"k\":\"v\"}}    ",
                2, &n);
    f = open_mem_ok(&e, buf, n, "empties");
    ck_assert_uint_eq(qn_st_tensor_count(f), 4);
    ck_assert_str_eq(qn_st_tensor_name(f, 0), "e1");
    ck_assert_str_eq(qn_st_tensor_name(f, 1), "e2");
    ck_assert_str_eq(qn_st_tensor_name(f, 2), "a");
    ck_assert_str_eq(qn_st_tensor_name(f, 3), "z");
    ck_assert_int_eq(qn_st_tensor_info(f, 3, &info), QN_OK);
    ck_assert_uint_eq(info.shape[0], 9223372036854775807ull);
    ck_assert_uint_eq(info.numel, 0);
    ck_assert_ptr_null(info.data);
    ck_assert_str_eq(qn_st_metadata_get(f, "k"), "v");
    /* out of range: INVALID_ARG, out untouched */
    memset(&info, 0xAB, sizeof info);
    ck_assert_int_eq(qn_st_tensor_info(f, 4, &info), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(info.rank, 0xABABABABu);
    ck_assert_ptr_null(qn_st_tensor_name(f, 4));
    qn_st_close(f);
    free(buf);

    qn_st_close(NULL);
    ck_assert_uint_eq(qn_st_tensor_count(NULL), 0);
    env_fini(&e);
}
END_TEST

/* Every proper prefix of a valid file is rejected cleanly (exactly sized copies, so ASan sees overreads). */
static void truncate_all(env *e, const unsigned char *file, size_t size, const char *what)
{
    size_t len;
    char w[96];
    qn_st_file *f = open_mem_ok(e, file, size, what);
    qn_st_close(f);
    for (len = 0; len < size; len++) {
        unsigned char *p = (unsigned char *)malloc(len ? len : 1);
        memcpy(p, file, len);
        snprintf(w, sizeof w, "%s cut at %zu of %zu", what, len, size);
        expect_fail_mem(e, p, len, QN_ERR_CORRUPT_DATA, NULL, w);
        free(p);
    }
}

START_TEST(test_truncated_everywhere)
{
    env e;
    rt_tensor t[6];
    size_t n, size;
    unsigned char *file;
    qn_st_writer *w;
    char path[512];
    env_init(&e);
    n = make_rt_set(t, COUNT(t), 7);
    w = writer_of(&e, t, n);
    path_in(&e, "trunc.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);
    free_rt_set(t, n);
    file = read_all(path, &size);
    truncate_all(&e, file, size, "ours");
    free(file);
    file = read_all(QN_TEST_DATA_DIR "/torch_small.safetensors", &size);
    truncate_all(&e, file, size, "torch");
    /* and a few truncated files on disk, mapped and read */
    {
        static const size_t cuts[] = {0, 5, 8, 100, 495, 562};
        size_t i;
        int no_mmap;
        for (i = 0; i < COUNT(cuts); i++) {
            for (no_mmap = 0; no_mmap < 2; no_mmap++) {
                qn_st_file *f = (qn_st_file *)(uintptr_t)1;
                write_all(path, file, cuts[i]);
                ck_assert_int_eq(qn_st_open(e.ctx, path, no_mmap, &f), QN_ERR_CORRUPT_DATA);
                ck_assert_ptr_null(f);
                ck_assert_ptr_nonnull(strstr(e.msg, path));
            }
        }
    }
    free(file);
    env_fini(&e);
}
END_TEST

START_TEST(test_open_errors)
{
    env e;
    char path[512];
    qn_st_file *f = (qn_st_file *)(uintptr_t)1;
    size_t n;
    unsigned char *buf;
    env_init(&e);
    path_in(&e, "missing.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_ERR_IO);
    ck_assert_ptr_null(f);
    ck_assert_ptr_nonnull(strstr(e.msg, path));
    f = (qn_st_file *)(uintptr_t)1;
    ck_assert_int_eq(qn_st_open(e.ctx, e.dir, 1, &f), QN_ERR_IO);
    ck_assert_ptr_null(f);
    ck_assert_int_eq(qn_st_open(e.ctx, NULL, 0, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_open_memory(e.ctx, NULL, 5, &f), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_open_memory(e.ctx, "x", 1, NULL), QN_ERR_INVALID_ARG);
    /* a corrupt file on disk: the message names the file and the tensor */
    buf = craft("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, &n);
    path_in(&e, "bad.safetensors", path, sizeof path);
    write_all(path, buf, n);
    free(buf);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_ERR_CORRUPT_DATA);
    ck_assert_ptr_nonnull(strstr(e.msg, path));
    ck_assert_ptr_nonnull(strstr(e.msg, "tensor 'w'"));
    env_fini(&e);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Writer                                                                    */
/* ------------------------------------------------------------------------- */

START_TEST(test_writer_errors)
{
    env e;
    qn_st_writer *w = NULL;
    uint64_t s3 = 3, big[3] = {4294967296ull, 4294967296ull, 2}, huge = (uint64_t)INT64_MAX + 1, zero[2] = {0, 5};
    unsigned char d[12] = {0};
    qn_st_file *f = NULL;
    char path[512];
    env_init(&e);
    ck_assert_int_eq(qn_st_writer_create(e.ctx, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_writer_create(e.ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "ok", QN_ST_F32, 1, &s3, d, 12), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, NULL, QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "__metadata__", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "ok", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(e.msg, "'ok' was already added"));
    ck_assert_int_eq(qn_st_add_tensor(w, "bad\xff", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "bad\xed\xa0\x80", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "bad\xe0\x80\x80", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "bad\xf4\x90\x80\x80", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "bad\xc3", QN_ST_F32, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", (qn_st_dtype)QN_ST_DTYPE_COUNT, 1, &s3, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_F32, QN_ST_MAX_RANK + 1, big, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_F32, 1, NULL, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_F32, 1, &s3, d, 11), QN_ERR_INVALID_ARG);
    ck_assert_ptr_nonnull(strstr(e.msg, "need 12"));
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_F32, 1, &s3, NULL, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_U8, 3, big, d, 12), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_U8, 1, &huge, d, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(w, "x", QN_ST_U8, 2, zero, d, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_tensor(NULL, "x", QN_ST_U8, 2, zero, NULL, 0), QN_ERR_INVALID_ARG);
    /* valid edge cases: rank 0 with a NULL shape, an empty tensor with NULL data, a non-ASCII name */
    ck_assert_int_eq(qn_st_add_tensor(w, "scalar", QN_ST_F64, 0, NULL, d, 8), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "empty", QN_ST_U8, 2, zero, NULL, 0), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "\xe2\x82\xac.\xf0\x9f\x98\x80", QN_ST_U8, 1, &s3, d, 3), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "k", "v"), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "k", "w"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_metadata(w, NULL, "w"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_metadata(w, "j", NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_metadata(w, "j\xff", "w"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_metadata(w, "j", "w\xff"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_add_metadata(NULL, "j", "w"), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_write_file(w, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_write_file(w, ""), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_st_write_file(NULL, "x"), QN_ERR_INVALID_ARG);
    /* the failed calls changed nothing */
    path_in(&e, "w.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_OK);
    ck_assert_uint_eq(qn_st_tensor_count(f), 4);
    ck_assert_str_eq(qn_st_tensor_name(f, 0), "scalar");
    ck_assert_str_eq(qn_st_tensor_name(f, 1), "ok");
    ck_assert_uint_eq(qn_st_metadata_count(f), 1);
    ck_assert_str_eq(qn_st_metadata_get(f, "k"), "v");
    ck_assert_int_eq(qn_st_find(f, "\xe2\x82\xac.\xf0\x9f\x98\x80", NULL), 1);
    qn_st_close(f);
    qn_st_writer_destroy(w);
    qn_st_writer_destroy(NULL);
    env_fini(&e);
}
END_TEST

static qn_st_writer *small_writer(env *e, const unsigned char *d)
{
    qn_st_writer *w = NULL;
    uint64_t s[2] = {2, 3};
    ck_assert_int_eq(qn_st_writer_create(e->ctx, &w), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "a", QN_ST_F32, 2, s, d, 24), QN_OK);
    ck_assert_int_eq(qn_st_add_tensor(w, "b", QN_ST_U8, 1, s, d, 2), QN_OK);
    ck_assert_int_eq(qn_st_add_metadata(w, "k", "v"), QN_OK);
    return w;
}

START_TEST(test_atomic_write)
{
    env e;
    unsigned char d[24] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
    qn_st_writer *w;
    qn_st_file *f = NULL;
    char path[512], sub[512];
    struct stat sb;
    unsigned char *buf;
    size_t n;
    env_init(&e);
    w = small_writer(&e, d);

    /* a directory that does not exist: QN_ERR_IO, nothing created */
    path_in(&e, "nope/x.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_ERR_IO);
    ck_assert_ptr_nonnull(strstr(e.msg, path));
    ck_assert_int_ne(stat(path, &sb), 0);
    ck_assert_int_eq(dir_entries(e.dir), 0);

    /* an existing file is replaced on success */
    path_in(&e, "model.safetensors", path, sizeof path);
    write_all(path, "old contents", 12);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    ck_assert_int_eq(dir_entries(e.dir), 1);
    ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_OK);
    ck_assert_uint_eq(qn_st_tensor_count(f), 2);
    qn_st_close(f);

    /* the destination is a directory: the rename fails, the directory stays, no temporary file is left */
    path_in(&e, "adir", sub, sizeof sub);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(qn_st_write_file(w, sub), QN_ERR_IO);
    ck_assert_int_eq(stat(sub, &sb), 0);
    ck_assert(S_ISDIR(sb.st_mode));
    ck_assert_int_eq(dir_entries(e.dir), 2);
    ck_assert_int_eq(dir_entries(sub), 0);

    /* a failed write leaves the existing file as it was */
    write_all(path, "old contents", 12);
    e.a.fail_from = e.a.allocs + 1;
    ck_assert_int_eq(qn_st_write_file(w, path), QN_ERR_OUT_OF_MEMORY);
    e.a.fail_from = 0;
    buf = read_all(path, &n);
    ck_assert_uint_eq(n, 12);
    ck_assert_int_eq(memcmp(buf, "old contents", 12), 0);
    free(buf);
    ck_assert_int_eq(dir_entries(e.dir), 2);

    qn_st_writer_destroy(w);
    env_fini(&e);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Allocation failures                                                       */
/* ------------------------------------------------------------------------- */

START_TEST(test_alloc_failures_open)
{
    env e;
    unsigned char d[24] = {0};
    qn_st_writer *w;
    char path[512];
    unsigned char *file;
    size_t size;
    int mode;
    env_init(&e);
    w = small_writer(&e, d);
    path_in(&e, "oom.safetensors", path, sizeof path);
    ck_assert_int_eq(qn_st_write_file(w, path), QN_OK);
    qn_st_writer_destroy(w);
    file = read_all(path, &size);
    for (mode = 0; mode < 3; mode++) {
        int k, failures = 0;
        for (k = 1; k < 100; k++) {
            qn_st_file *f = (qn_st_file *)(uintptr_t)1;
            int before = live(&e);
            qn_status st;
            e.a.fail_from = e.a.allocs + k;
            st = mode < 2 ? qn_st_open(e.ctx, path, mode, &f) : qn_st_open_memory(e.ctx, file, size, &f);
            e.a.fail_from = 0;
            if (st == QN_OK) {
                ck_assert_uint_eq(qn_st_tensor_count(f), 2);
                ck_assert_str_eq(qn_st_metadata_get(f, "k"), "v");
                qn_st_close(f);
                REQUIRE(live(&e) == before, "mode %d: close leaked", mode);
                break;
            }
            failures++;
            REQUIRE(st == QN_ERR_OUT_OF_MEMORY, "mode %d, failing allocation %d: status %d (%s)", mode, k, (int)st,
                    e.msg);
            REQUIRE(f == NULL, "mode %d, failing allocation %d: *out not NULL", mode, k);
            REQUIRE(live(&e) == before, "mode %d, failing allocation %d: %d leaked", mode, k, live(&e) - before);
        }
        REQUIRE(k < 100, "mode %d never succeeded", mode);
        REQUIRE(failures >= 4, "mode %d: only %d allocations", mode, failures);
    }
    free(file);
    env_fini(&e);
}
END_TEST

START_TEST(test_alloc_failures_write)
{
    env e;
    unsigned char d[24] = {0};
    char path[512];
    int k, failures = 0;
    env_init(&e);
    path_in(&e, "oom.safetensors", path, sizeof path);
    write_all(path, "old", 3);
    /* building the description */
    for (k = 1; k < 100; k++) {
        qn_st_writer *w = NULL;
        uint64_t s[2] = {2, 3};
        int before = live(&e);
        qn_status st;
        e.a.fail_from = e.a.allocs + k;
        st = qn_st_writer_create(e.ctx, &w);
        if (st == QN_OK)
            st = qn_st_add_tensor(w, "a", QN_ST_F32, 2, s, d, 24);
        if (st == QN_OK)
            st = qn_st_add_tensor(w, "b", QN_ST_U8, 1, s, d, 2);
        if (st == QN_OK)
            st = qn_st_add_metadata(w, "k", "v");
        e.a.fail_from = 0;
        qn_st_writer_destroy(w);
        REQUIRE(live(&e) == before, "build, failing allocation %d: %d leaked", k, live(&e) - before);
        if (st == QN_OK)
            break;
        REQUIRE(st == QN_ERR_OUT_OF_MEMORY, "build, failing allocation %d: status %d", k, (int)st);
        failures++;
    }
    REQUIRE(k < 100 && failures >= 4, "build: %d failures", failures);
    /* writing: the old file stays until a write succeeds, and no temporary file is left */
    failures = 0;
    for (k = 1; k < 100; k++) {
        qn_st_writer *w = small_writer(&e, d);
        int before = live(&e);
        qn_status st;
        e.a.fail_from = e.a.allocs + k;
        st = qn_st_write_file(w, path);
        e.a.fail_from = 0;
        REQUIRE(live(&e) == before, "write, failing allocation %d: %d leaked", k, live(&e) - before);
        qn_st_writer_destroy(w);
        REQUIRE(dir_entries(e.dir) == 1, "write, failing allocation %d: %d files", k, dir_entries(e.dir));
        if (st == QN_OK)
            break;
        REQUIRE(st == QN_ERR_OUT_OF_MEMORY, "write, failing allocation %d: status %d", k, (int)st);
        {
            size_t n;
            unsigned char *buf = read_all(path, &n);
            REQUIRE(n == 3 && memcmp(buf, "old", 3) == 0, "write, failing allocation %d: file changed", k);
            free(buf);
        }
        failures++;
    }
    REQUIRE(k < 100 && failures >= 3, "write: %d failures", failures);
    {
        qn_st_file *f = NULL;
        ck_assert_int_eq(qn_st_open(e.ctx, path, 0, &f), QN_OK);
        ck_assert_uint_eq(qn_st_tensor_count(f), 2);
        qn_st_close(f);
    }
    env_fini(&e);
}
END_TEST

static Suite *safetensors_suite(void)
{
    Suite *s = suite_create("safetensors");
    TCase *tc = tcase_create("format");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_dtype_table);
    tcase_add_test(tc, test_roundtrip_every_dtype);
    tcase_add_test(tc, test_header_bytes_pinned);
    tcase_add_test(tc, test_half_to_f32);
    tcase_add_test(tc, test_torch_file);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_bad_header_length);
    tcase_add_test(tc, test_accepts_valid_variants);
    tcase_add_test(tc, test_truncated_everywhere);
    tcase_add_test(tc, test_open_errors);
    tcase_add_test(tc, test_writer_errors);
    tcase_add_test(tc, test_atomic_write);
    tcase_add_test(tc, test_alloc_failures_open);
    tcase_add_test(tc, test_alloc_failures_write);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(safetensors_suite());
}
