/*
 * libqnoise internal: safetensors reader and writer (see safetensors.h and
 * docs/format-safetensors.md).
 *
 * The reader validates the whole file at open, so the accessors only look
 * things up. It allocates the file object, one entry per tensor, one string
 * pool for the names and metadata, and two sorted index arrays: O(header size
 * + tensor count), never anything sized by the declared tensor sizes. The
 * header JSON is parsed by jansson, which allocates with malloc: its memory is
 * not drawn from the context allocator (jansson's allocator hook is process
 * global, and a library must not change it), but it is released before
 * qn_st_open returns.
 *
 * The writer emits the JSON itself (no jansson), so every byte of the header
 * is pinned by this file: compact, keys in increasing byte order at every
 * level, then spaces up to the 64-byte boundary of the data buffer.
 * SPDX-License-Identifier: MIT
 */
#include "format/safetensors.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qn_config.h"

#if QN_HAVE_SAFETENSORS
#include <jansson.h>

#include "format/fileio.h"
#include "format/half.h"
#endif

/* ------------------------------------------------------------------------- */
/* dtypes (always available)                                                  */
/* ------------------------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} qn_st_dtypes[QN_ST_DTYPE_COUNT] = {
    {"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
    {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
    {"U32", 4},  {"F32", 4},  {"F64", 8},  {"I64", 8},     {"U64", 8},
};

const char *qn_st_dtype_name(qn_st_dtype dtype)
{
    if ((unsigned)dtype >= QN_ST_DTYPE_COUNT)
        return NULL;
    return qn_st_dtypes[dtype].name;
}

size_t qn_st_dtype_size(qn_st_dtype dtype)
{
    if ((unsigned)dtype >= QN_ST_DTYPE_COUNT)
        return 0;
    return qn_st_dtypes[dtype].size;
}

int qn_st_dtype_from_name(const char *name, qn_st_dtype *out)
{
    unsigned i;
    if (!name)
        return 0;
    for (i = 0; i < QN_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, qn_st_dtypes[i].name) == 0) {
            if (out)
                *out = (qn_st_dtype)i;
            return 1;
        }
    }
    return 0;
}

#if QN_HAVE_SAFETENSORS

/* ------------------------------------------------------------------------- */
/* Reader                                                                     */
/* ------------------------------------------------------------------------- */

#define QN_ST_META_KEY "__metadata__"

typedef struct qn_st_entry {
    const char *name; /* in the string pool */
    uint64_t shape[QN_ST_MAX_RANK];
    uint64_t numel;
    size_t begin;     /* relative to the data buffer */
    size_t nbytes;
    qn_st_dtype dtype;
    unsigned rank;
} qn_st_entry;

typedef struct qn_st_kv {
    const char *key, *value; /* in the string pool */
} qn_st_kv;

struct qn_st_file {
    const qn_context *ctx;
    qn_mapped map;              /* owned by qn_st_open; zeroed for qn_st_open_memory */
    const unsigned char *base;  /* the start of the file */
    const unsigned char *data;  /* the data buffer (after the header) */
    size_t data_size;
    size_t n_tensors, n_meta;
    qn_st_entry *tensors;       /* by increasing offset, ties by name */
    qn_st_entry **by_name;      /* the same entries by name */
    qn_st_kv *meta;             /* by key */
    char *pool;
};

static uint64_t qn_st_load_u64le(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static int qn_st_cmp_offset(const void *a, const void *b)
{
    const qn_st_entry *x = (const qn_st_entry *)a, *y = (const qn_st_entry *)b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int qn_st_cmp_name_ptr(const void *a, const void *b)
{
    const qn_st_entry *x = *(const qn_st_entry *const *)a, *y = *(const qn_st_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int qn_st_cmp_kv(const void *a, const void *b)
{
    return strcmp(((const qn_st_kv *)a)->key, ((const qn_st_kv *)b)->key);
}

/* Copy s (with its NUL) into the pool at *pos; return the copy. */
static const char *qn_st_pool_put(char *pool, size_t *pos, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = pool + *pos;
    memcpy(p, s, n);
    *pos += n;
    return p;
}

static void qn_st_free_parts(qn_st_file *f)
{
    qn_free(f->ctx, f->tensors);
    qn_free(f->ctx, f->by_name);
    qn_free(f->ctx, f->meta);
    qn_free(f->ctx, f->pool);
    f->tensors = NULL;
    f->by_name = NULL;
    f->meta = NULL;
    f->pool = NULL;
}

/*
 * Validate one tensor entry `name: v` and fill e (name not set). The messages
 * name fn, the source and the tensor.
 */
static qn_status qn_st_parse_entry(const qn_st_file *f, const char *fn, const char *src, const char *name,
                                   json_t *v, qn_st_entry *e)
{
    const qn_context *ctx = f->ctx;
    json_t *dt, *shape, *offs, *jb, *je;
    size_t i, rank, elem, nbytes;
    uint64_t numel = 1;
    int zero = 0;
    json_int_t b, en;

    if (!json_is_object(v))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': entry is not a JSON object", fn, src,
                       name);
    dt = json_object_get(v, "dtype");
    if (!json_is_string(dt))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': \"dtype\" is %s", fn, src, name,
                       dt ? "not a string" : "missing");
    if (!qn_st_dtype_from_name(json_string_value(dt), &e->dtype))
        return qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: tensor '%.200s': unknown dtype \"%.40s\"", fn, src, name,
                       json_string_value(dt));
    elem = qn_st_dtype_size(e->dtype);

    shape = json_object_get(v, "shape");
    if (!json_is_array(shape))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': \"shape\" is %s", fn, src, name,
                       shape ? "not an array" : "missing");
    rank = json_array_size(shape);
    if (rank > QN_ST_MAX_RANK)
        return qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: tensor '%.200s': rank %zu is above the supported %d", fn,
                       src, name, rank, QN_ST_MAX_RANK);
    e->rank = (unsigned)rank;
    for (i = 0; i < rank; i++) {
        json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                           "%s: %s: tensor '%.200s': shape entry %zu is not a non-negative integer", fn, src, name,
                           i);
        e->shape[i] = (uint64_t)json_integer_value(d);
        if (e->shape[i] == 0)
            zero = 1;
    }
    /* the element count: 0 if any dimension is 0 (however large the others), else a checked product */
    if (zero) {
        numel = 0;
    } else {
        for (i = 0; i < rank; i++) {
            if (e->shape[i] != 0 && numel > UINT64_MAX / e->shape[i])
                return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': the shape's element count overflows",
                               fn, src, name);
            numel *= e->shape[i];
        }
    }
    if (numel > (uint64_t)SIZE_MAX || qn_mul_overflow((size_t)numel, elem, &nbytes))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': the shape's byte size overflows", fn, src,
                       name);
    e->numel = numel;
    e->nbytes = nbytes;

    offs = json_object_get(v, "data_offsets");
    if (!json_is_array(offs) || json_array_size(offs) != 2)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor '%.200s': \"data_offsets\" is %s", fn, src, name,
                       offs ? "not an array [begin, end]" : "missing");
    jb = json_array_get(offs, 0);
    je = json_array_get(offs, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: tensor '%.200s': \"data_offsets\" entries are not non-negative integers", fn, src,
                       name);
    b = json_integer_value(jb);
    en = json_integer_value(je);
    if (b > en)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: tensor '%.200s': data_offsets begin %" JSON_INTEGER_FORMAT
                       " is after end %" JSON_INTEGER_FORMAT,
                       fn, src, name, b, en);
    if ((uint64_t)en > (uint64_t)f->data_size)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: tensor '%.200s': data_offsets end %" JSON_INTEGER_FORMAT
                       " is past the %zu-byte data buffer",
                       fn, src, name, en, f->data_size);
    if ((uint64_t)(en - b) != (uint64_t)nbytes)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: tensor '%.200s': data_offsets span %" JSON_INTEGER_FORMAT
                       " bytes but the shape and dtype %s need %zu",
                       fn, src, name, en - b, qn_st_dtype_name(e->dtype), nbytes);
    e->begin = (size_t)b;
    return QN_OK;
}

/* Validate the size bytes at base (the whole file) and build the tables of f. */
static qn_status qn_st_parse(qn_st_file *f, const unsigned char *base, size_t size, const char *fn,
                             const char *src)
{
    const qn_context *ctx = f->ctx;
    const char *hdr, *key;
    uint64_t n;
    size_t len, pool_bytes = 0, pos = 0, ti = 0, mi = 0, cursor = 0, i;
    json_t *root = NULL, *meta = NULL, *v;
    json_error_t jerr;
    qn_status st = QN_OK;

    if (size < 8)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: %zu bytes is too short for the 8-byte header length", fn,
                       src, size);
    n = qn_st_load_u64le(base);
    if (n > QN_ST_MAX_HEADER)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: header length %" PRIu64 " is above the limit of %u bytes",
                       fn, src, n, QN_ST_MAX_HEADER);
    if (n > (uint64_t)(size - 8))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: header length %" PRIu64 " is past the end of the file (%zu bytes follow the length)",
                       fn, src, n, size - 8);
    hdr = (const char *)base + 8;
    len = (size_t)n;
    if (len == 0 || hdr[0] != '{')
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: the header does not start with '{'", fn, src);
    while (len > 0 && hdr[len - 1] == ' ')
        len--;
    if (hdr[len - 1] != '}')
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                       "%s: %s: the header does not end with '}' (followed only by space padding)", fn, src);
    f->base = base;
    f->data = base + 8 + (size_t)n;
    f->data_size = size - 8 - (size_t)n;

    root = json_loadb(hdr, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: the header is not valid JSON: %.200s (at header byte %d)",
                       fn, src, jerr.text, jerr.position);
    if (!json_is_object(root)) {
        json_decref(root);
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: the header is not a JSON object", fn, src);
    }

    /* pass 1: count, size the string pool, check __metadata__ */
    json_object_foreach(root, key, v) {
        pool_bytes += strlen(key) + 1;
        if (strcmp(key, QN_ST_META_KEY) == 0) {
            const char *mk;
            json_t *mv;
            meta = v;
            if (!json_is_object(meta)) {
                st = qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: \"__metadata__\" is not a JSON object", fn, src);
                goto done;
            }
            json_object_foreach(meta, mk, mv) {
                if (!json_is_string(mv)) {
                    st = qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                                 "%s: %s: \"__metadata__\" key '%.200s': the value is not a string", fn, src, mk);
                    goto done;
                }
                pool_bytes += strlen(mk) + 1 + strlen(json_string_value(mv)) + 1;
                f->n_meta++;
            }
        } else {
            f->n_tensors++;
        }
    }

    if (f->n_tensors) {
        f->tensors = (qn_st_entry *)qn_calloc(ctx, f->n_tensors, sizeof *f->tensors);
        f->by_name = (qn_st_entry **)qn_calloc(ctx, f->n_tensors, sizeof *f->by_name);
    }
    if (f->n_meta)
        f->meta = (qn_st_kv *)qn_calloc(ctx, f->n_meta, sizeof *f->meta);
    if (pool_bytes)
        f->pool = (char *)qn_malloc(ctx, pool_bytes);
    if ((f->n_tensors && (!f->tensors || !f->by_name)) || (f->n_meta && !f->meta) || (pool_bytes && !f->pool)) {
        st = qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: %s: out of memory for %zu tensor entries", fn, src,
                     f->n_tensors);
        goto done;
    }

    /* pass 2: every tensor entry */
    json_object_foreach(root, key, v) {
        if (v == meta)
            continue;
        st = qn_st_parse_entry(f, fn, src, key, v, &f->tensors[ti]);
        if (st != QN_OK)
            goto done;
        f->tensors[ti].name = qn_st_pool_put(f->pool, &pos, key);
        ti++;
    }
    if (meta) {
        const char *mk;
        json_t *mv;
        json_object_foreach(meta, mk, mv) {
            f->meta[mi].key = qn_st_pool_put(f->pool, &pos, mk);
            f->meta[mi].value = qn_st_pool_put(f->pool, &pos, json_string_value(mv));
            mi++;
        }
        if (f->n_meta)
            qsort(f->meta, f->n_meta, sizeof *f->meta, qn_st_cmp_kv);
    }

    /* the tensors must tile the data buffer: from 0, no hole, no overlap, up to its end */
    if (f->n_tensors)
        qsort(f->tensors, f->n_tensors, sizeof *f->tensors, qn_st_cmp_offset);
    for (i = 0; i < f->n_tensors; i++) {
        const qn_st_entry *e = &f->tensors[i];
        if (e->begin > cursor) {
            st = qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                         "%s: %s: tensor '%.200s': a hole of %zu bytes before its data (offset %zu, %s ends at %zu)",
                         fn, src, e->name, e->begin - cursor, e->begin,
                         i ? "the previous tensor" : "nothing", cursor);
            goto done;
        }
        if (e->begin < cursor) {
            st = qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                         "%s: %s: tensor '%.200s': its data (offset %zu) overlaps tensor '%.200s' (ends at %zu)", fn,
                         src, e->name, e->begin, f->tensors[i - 1].name, cursor);
            goto done;
        }
        cursor = e->begin + e->nbytes;
    }
    if (cursor != f->data_size) {
        st = qn_fail(ctx, QN_ERR_CORRUPT_DATA,
                     "%s: %s: %zu bytes after the last tensor's data (the tensors end at %zu, the data buffer at %zu)",
                     fn, src, f->data_size - cursor, cursor, f->data_size);
        goto done;
    }
    for (i = 0; i < f->n_tensors; i++)
        f->by_name[i] = &f->tensors[i];
    if (f->n_tensors)
        qsort(f->by_name, f->n_tensors, sizeof *f->by_name, qn_st_cmp_name_ptr);

done:
    json_decref(root);
    if (st != QN_OK)
        qn_st_free_parts(f);
    return st;
}

qn_status qn_st_open(const qn_context *ctx, const char *path, int no_mmap, qn_st_file **out)
{
    static const char fn[] = "qn_st_open";
    qn_st_file *f;
    qn_status st;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || !path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: %s is NULL", fn, ctx ? "path" : "ctx");
    f = (qn_st_file *)qn_calloc(ctx, 1, sizeof *f);
    if (!f)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, path);
    f->ctx = ctx;
    st = qn_file_map(ctx, path, no_mmap, &f->map, fn);
    if (st == QN_OK)
        st = qn_st_parse(f, f->map.data, f->map.size, fn, path);
    if (st != QN_OK) {
        qn_file_unmap(ctx, &f->map);
        qn_free(ctx, f);
        return st;
    }
    *out = f;
    return QN_OK;
}

qn_status qn_st_open_memory(const qn_context *ctx, const void *data, size_t size, qn_st_file **out)
{
    static const char fn[] = "qn_st_open_memory";
    qn_st_file *f;
    qn_status st;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: out is NULL", fn);
    *out = NULL;
    if (!ctx || (!data && size))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: %s is NULL", fn, ctx ? "data" : "ctx");
    f = (qn_st_file *)qn_calloc(ctx, 1, sizeof *f);
    if (!f)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: memory: out of memory", fn);
    f->ctx = ctx;
    st = qn_st_parse(f, (const unsigned char *)data, size, fn, "memory");
    if (st != QN_OK) {
        qn_free(ctx, f);
        return st;
    }
    *out = f;
    return QN_OK;
}

void qn_st_close(qn_st_file *f)
{
    const qn_context *ctx;
    if (!f)
        return;
    ctx = f->ctx;
    qn_st_free_parts(f);
    qn_file_unmap(ctx, &f->map);
    qn_free(ctx, f);
}

size_t qn_st_tensor_count(const qn_st_file *f)
{
    return f ? f->n_tensors : 0;
}

const char *qn_st_tensor_name(const qn_st_file *f, size_t index)
{
    if (!f || index >= f->n_tensors)
        return NULL;
    return f->tensors[index].name;
}

static int qn_st_cmp_find(const void *key, const void *elem)
{
    return strcmp((const char *)key, (*(const qn_st_entry *const *)elem)->name);
}

int qn_st_find(const qn_st_file *f, const char *name, size_t *index)
{
    qn_st_entry *const *hit;
    if (!f || !name || !f->n_tensors)
        return 0;
    hit = (qn_st_entry *const *)bsearch(name, f->by_name, f->n_tensors, sizeof *f->by_name, qn_st_cmp_find);
    if (!hit)
        return 0;
    if (index)
        *index = (size_t)(*hit - f->tensors);
    return 1;
}

qn_status qn_st_tensor_info(const qn_st_file *f, size_t index, qn_st_info *out)
{
    const qn_st_entry *e;
    qn_st_info info;
    if (!f || !out)
        return qn_fail(f ? f->ctx : NULL, QN_ERR_INVALID_ARG, "qn_st_tensor_info: %s is NULL", f ? "out" : "f");
    if (index >= f->n_tensors)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_st_tensor_info: index %zu is out of range (%zu tensors)",
                       index, f->n_tensors);
    e = &f->tensors[index];
    memset(&info, 0, sizeof info);
    info.dtype = e->dtype;
    info.rank = e->rank;
    memcpy(info.shape, e->shape, sizeof info.shape);
    info.numel = e->numel;
    info.data = e->nbytes ? (const void *)(f->data + e->begin) : NULL;
    info.nbytes = e->nbytes;
    info.file_offset = (uint64_t)(f->data - f->base) + (uint64_t)e->begin;
    *out = info;
    return QN_OK;
}

qn_status qn_st_read_f32(const qn_st_file *f, size_t index, float *out, size_t count)
{
    static const char fn[] = "qn_st_read_f32";
    const qn_st_entry *e;
    const unsigned char *p;
    size_t i, n;
    if (!f)
        return qn_fail(NULL, QN_ERR_INVALID_ARG, "%s: f is NULL", fn);
    if (index >= f->n_tensors)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "%s: index %zu is out of range (%zu tensors)", fn, index,
                       f->n_tensors);
    e = &f->tensors[index];
    if (e->dtype != QN_ST_F32 && e->dtype != QN_ST_F16 && e->dtype != QN_ST_BF16)
        return qn_fail(f->ctx, QN_ERR_UNSUPPORTED, "%s: tensor '%.200s' is %s; only F32, F16 and BF16 convert to fp32",
                       fn, e->name, qn_st_dtype_name(e->dtype));
    n = (size_t)e->numel;
    if (count < n)
        return qn_fail(f->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: tensor '%.200s' has %zu elements, the buffer %zu", fn,
                       e->name, n, count);
    if (!out && n)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "%s: out is NULL", fn);
    p = f->data + e->begin;
    /* assembled byte by byte: the data may be unaligned, and the file is little-endian */
    switch (e->dtype) {
    case QN_ST_F32:
        for (i = 0; i < n; i++, p += 4) {
            uint32_t b = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            memcpy(&out[i], &b, sizeof b);
        }
        break;
    case QN_ST_F16:
        for (i = 0; i < n; i++, p += 2)
            out[i] = qn_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    default: /* QN_ST_BF16 */
        for (i = 0; i < n; i++, p += 2)
            out[i] = qn_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
        break;
    }
    return QN_OK;
}

size_t qn_st_metadata_count(const qn_st_file *f)
{
    return f ? f->n_meta : 0;
}

static int qn_st_cmp_find_kv(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const qn_st_kv *)elem)->key);
}

const char *qn_st_metadata_get(const qn_st_file *f, const char *key)
{
    const qn_st_kv *hit;
    if (!f || !key || !f->n_meta)
        return NULL;
    hit = (const qn_st_kv *)bsearch(key, f->meta, f->n_meta, sizeof *f->meta, qn_st_cmp_find_kv);
    return hit ? hit->value : NULL;
}

qn_status qn_st_metadata_at(const qn_st_file *f, size_t index, const char **key, const char **value)
{
    if (!f || !key || !value)
        return qn_fail(f ? f->ctx : NULL, QN_ERR_INVALID_ARG, "qn_st_metadata_at: NULL argument");
    if (index >= f->n_meta)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_st_metadata_at: index %zu is out of range (%zu entries)",
                       index, f->n_meta);
    *key = f->meta[index].key;
    *value = f->meta[index].value;
    return QN_OK;
}

/* ------------------------------------------------------------------------- */
/* Writer                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct qn_st_wtensor {
    char *name;
    const void *data;
    size_t nbytes;
    size_t offset; /* assigned by qn_st_write_file */
    uint64_t shape[QN_ST_MAX_RANK];
    unsigned rank;
    qn_st_dtype dtype;
} qn_st_wtensor;

typedef struct qn_st_wmeta {
    char *key, *value;
} qn_st_wmeta;

struct qn_st_writer {
    const qn_context *ctx;
    qn_st_wtensor *t;
    size_t n_t, cap_t;
    qn_st_wmeta *m;
    size_t n_m, cap_m;
};

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
static int qn_st_utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    while (*s) {
        unsigned c = *s, lo = 0x80, hi = 0xBF, more, k;
        if (c < 0x80) {
            s++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return 0;
        }
        if (s[1] < lo || s[1] > hi)
            return 0;
        for (k = 2; k <= more; k++)
            if (s[k] < 0x80 || s[k] > 0xBF)
                return 0;
        s += more + 1;
    }
    return 1;
}

static char *qn_st_strdup(const qn_context *ctx, const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = (char *)qn_malloc(ctx, n);
    if (p)
        memcpy(p, s, n);
    return p;
}

/* Make room for one more element of elem bytes in *arr (count n, capacity *cap). 0 or -1. */
static int qn_st_grow(const qn_context *ctx, void **arr, size_t n, size_t *cap, size_t elem)
{
    size_t ncap, bytes;
    void *p;
    if (n < *cap)
        return 0;
    ncap = *cap ? *cap * 2 : 16;
    if (ncap < *cap || qn_mul_overflow(ncap, elem, &bytes))
        return -1;
    p = qn_malloc(ctx, bytes);
    if (!p)
        return -1;
    if (n)
        memcpy(p, *arr, n * elem);
    qn_free(ctx, *arr);
    *arr = p;
    *cap = ncap;
    return 0;
}

qn_status qn_st_writer_create(const qn_context *ctx, qn_st_writer **out)
{
    qn_st_writer *w;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_st_writer_create: out is NULL");
    *out = NULL;
    if (!ctx)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_st_writer_create: ctx is NULL");
    w = (qn_st_writer *)qn_calloc(ctx, 1, sizeof *w);
    if (!w)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_st_writer_create: out of memory");
    w->ctx = ctx;
    *out = w;
    return QN_OK;
}

void qn_st_writer_destroy(qn_st_writer *w)
{
    size_t i;
    if (!w)
        return;
    for (i = 0; i < w->n_t; i++)
        qn_free(w->ctx, w->t[i].name);
    for (i = 0; i < w->n_m; i++) {
        qn_free(w->ctx, w->m[i].key);
        qn_free(w->ctx, w->m[i].value);
    }
    qn_free(w->ctx, w->t);
    qn_free(w->ctx, w->m);
    qn_free(w->ctx, w);
}

qn_status qn_st_add_tensor(qn_st_writer *w, const char *name, qn_st_dtype dtype, unsigned rank,
                           const uint64_t *shape, const void *data, size_t nbytes)
{
    static const char fn[] = "qn_st_add_tensor";
    const qn_context *ctx;
    qn_st_wtensor *t;
    uint64_t numel = 1;
    size_t i, need;
    int zero = 0;
    if (!w)
        return qn_fail(NULL, QN_ERR_INVALID_ARG, "%s: w is NULL", fn);
    ctx = w->ctx;
    if (!name || !*name)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: the tensor name is %s", fn, name ? "empty" : "NULL");
    if (strcmp(name, QN_ST_META_KEY) == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: \"__metadata__\" is reserved, not a tensor name", fn);
    if (!qn_st_utf8_valid(name))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: the tensor name is not valid UTF-8", fn);
    if ((unsigned)dtype >= QN_ST_DTYPE_COUNT)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': unknown dtype %d", fn, name, (int)dtype);
    if (rank > QN_ST_MAX_RANK)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': rank %u is above %d", fn, name, rank,
                       QN_ST_MAX_RANK);
    if (rank && !shape)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': shape is NULL", fn, name);
    for (i = 0; i < rank; i++) {
        if (shape[i] > (uint64_t)INT64_MAX)
            return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': shape entry %zu is above INT64_MAX", fn,
                           name, i);
        if (shape[i] == 0)
            zero = 1;
    }
    if (zero) {
        numel = 0;
    } else {
        for (i = 0; i < rank; i++) {
            if (numel > UINT64_MAX / shape[i])
                return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: tensor '%.200s': the element count overflows", fn, name);
            numel *= shape[i];
        }
    }
    if (numel > (uint64_t)SIZE_MAX || qn_mul_overflow((size_t)numel, qn_st_dtype_size(dtype), &need))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: tensor '%.200s': the byte size overflows", fn, name);
    if (need != nbytes)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': nbytes is %zu, the shape and dtype %s need %zu",
                       fn, name, nbytes, qn_st_dtype_name(dtype), need);
    if (nbytes && !data)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s': data is NULL", fn, name);
    for (i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: tensor '%.200s' was already added", fn, name);
    if (qn_st_grow(ctx, (void **)&w->t, w->n_t, &w->cap_t, sizeof *w->t) != 0)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: tensor '%.200s': out of memory", fn, name);
    t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = qn_st_strdup(ctx, name);
    if (!t->name)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: tensor '%.200s': out of memory", fn, name);
    t->data = data;
    t->nbytes = nbytes;
    t->rank = rank;
    t->dtype = dtype;
    for (i = 0; i < rank; i++)
        t->shape[i] = shape[i];
    w->n_t++;
    return QN_OK;
}

qn_status qn_st_add_metadata(qn_st_writer *w, const char *key, const char *value)
{
    static const char fn[] = "qn_st_add_metadata";
    const qn_context *ctx;
    char *k, *v;
    size_t i;
    if (!w)
        return qn_fail(NULL, QN_ERR_INVALID_ARG, "%s: w is NULL", fn);
    ctx = w->ctx;
    if (!key || !value)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: %s is NULL", fn, key ? "value" : "key");
    if (!qn_st_utf8_valid(key) || !qn_st_utf8_valid(value))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: key '%.200s': the %s is not valid UTF-8", fn,
                       qn_st_utf8_valid(key) ? key : "?", qn_st_utf8_valid(key) ? "value" : "key");
    for (i = 0; i < w->n_m; i++)
        if (strcmp(w->m[i].key, key) == 0)
            return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: key '%.200s' was already added", fn, key);
    if (qn_st_grow(ctx, (void **)&w->m, w->n_m, &w->cap_m, sizeof *w->m) != 0)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: key '%.200s': out of memory", fn, key);
    k = qn_st_strdup(ctx, key);
    v = k ? qn_st_strdup(ctx, value) : NULL;
    if (!v) {
        qn_free(ctx, k);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: key '%.200s': out of memory", fn, key);
    }
    w->m[w->n_m].key = k;
    w->m[w->n_m].value = v;
    w->n_m++;
    return QN_OK;
}

/* JSON output: counts bytes always, stores them when buf is set. */
typedef struct qn_st_sink {
    char *buf;
    size_t len;
} qn_st_sink;

static void qn_st_put(qn_st_sink *s, const char *p, size_t n)
{
    if (s->buf)
        memcpy(s->buf + s->len, p, n);
    s->len += n;
}

static void qn_st_puts(qn_st_sink *s, const char *p)
{
    qn_st_put(s, p, strlen(p));
}

static void qn_st_put_u64(qn_st_sink *s, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    qn_st_put(s, tmp, (size_t)n);
}

/* A JSON string: '"', '\\' and control characters escaped; other bytes (valid UTF-8) as they are. */
static void qn_st_put_str(qn_st_sink *s, const char *str)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)str;
    qn_st_put(s, "\"", 1);
    for (; *p; p++) {
        char esc[6];
        switch (*p) {
        case '"': qn_st_put(s, "\\\"", 2); break;
        case '\\': qn_st_put(s, "\\\\", 2); break;
        case '\b': qn_st_put(s, "\\b", 2); break;
        case '\f': qn_st_put(s, "\\f", 2); break;
        case '\n': qn_st_put(s, "\\n", 2); break;
        case '\r': qn_st_put(s, "\\r", 2); break;
        case '\t': qn_st_put(s, "\\t", 2); break;
        default:
            if (*p < 0x20) {
                esc[0] = '\\';
                esc[1] = 'u';
                esc[2] = '0';
                esc[3] = '0';
                esc[4] = hex[*p >> 4];
                esc[5] = hex[*p & 15];
                qn_st_put(s, esc, 6);
            } else {
                qn_st_put(s, (const char *)p, 1);
            }
        }
    }
    qn_st_put(s, "\"", 1);
}

static void qn_st_put_meta(qn_st_sink *s, const qn_st_writer *w, const qn_st_wmeta *const *meta)
{
    size_t i;
    qn_st_put_str(s, QN_ST_META_KEY);
    qn_st_put(s, ":{", 2);
    for (i = 0; i < w->n_m; i++) {
        if (i)
            qn_st_put(s, ",", 1);
        qn_st_put_str(s, meta[i]->key);
        qn_st_put(s, ":", 1);
        qn_st_put_str(s, meta[i]->value);
    }
    qn_st_put(s, "}", 1);
}

/* The whole header JSON, keys in byte order at every level ("__metadata__" among the tensor names). */
static void qn_st_put_header(qn_st_sink *s, const qn_st_writer *w, const qn_st_wtensor *const *by_name,
                             const qn_st_wmeta *const *meta)
{
    size_t i, d;
    int first = 1, meta_done = w->n_m == 0;
    qn_st_put(s, "{", 1);
    for (i = 0; i < w->n_t; i++) {
        const qn_st_wtensor *t = by_name[i];
        if (!meta_done && strcmp(t->name, QN_ST_META_KEY) > 0) {
            if (!first)
                qn_st_put(s, ",", 1);
            qn_st_put_meta(s, w, meta);
            first = 0;
            meta_done = 1;
        }
        if (!first)
            qn_st_put(s, ",", 1);
        first = 0;
        qn_st_put_str(s, t->name);
        qn_st_puts(s, ":{\"data_offsets\":[");
        qn_st_put_u64(s, (uint64_t)t->offset);
        qn_st_put(s, ",", 1);
        qn_st_put_u64(s, (uint64_t)t->offset + (uint64_t)t->nbytes);
        qn_st_puts(s, "],\"dtype\":");
        qn_st_put_str(s, qn_st_dtype_name(t->dtype));
        qn_st_puts(s, ",\"shape\":[");
        for (d = 0; d < t->rank; d++) {
            if (d)
                qn_st_put(s, ",", 1);
            qn_st_put_u64(s, t->shape[d]);
        }
        qn_st_puts(s, "]}");
    }
    if (!meta_done) {
        if (!first)
            qn_st_put(s, ",", 1);
        qn_st_put_meta(s, w, meta);
    }
    qn_st_put(s, "}", 1);
}

static int qn_st_cmp_wtensor(const void *a, const void *b)
{
    return strcmp((*(const qn_st_wtensor *const *)a)->name, (*(const qn_st_wtensor *const *)b)->name);
}

static int qn_st_cmp_wmeta(const void *a, const void *b)
{
    return strcmp((*(const qn_st_wmeta *const *)a)->key, (*(const qn_st_wmeta *const *)b)->key);
}

qn_status qn_st_write_file(qn_st_writer *w, const char *path)
{
    static const char fn[] = "qn_st_write_file";
    static const size_t sizes[4] = {8, 4, 2, 1};
    const qn_context *ctx;
    const qn_st_wtensor **by_name = NULL, **order = NULL;
    const qn_st_wmeta **meta = NULL;
    qn_st_sink sink = {NULL, 0};
    qn_atomic_file *af = NULL;
    size_t i, k, pos = 0, off = 0, header_len, total;
    qn_status st = QN_OK;

    if (!w)
        return qn_fail(NULL, QN_ERR_INVALID_ARG, "%s: w is NULL", fn);
    ctx = w->ctx;
    if (!path || !*path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: the path is %s", fn, path ? "empty" : "NULL");

    if (w->n_t) {
        by_name = (const qn_st_wtensor **)qn_calloc(ctx, w->n_t, sizeof *by_name);
        order = (const qn_st_wtensor **)qn_calloc(ctx, w->n_t, sizeof *order);
    }
    if (w->n_m)
        meta = (const qn_st_wmeta **)qn_calloc(ctx, w->n_m, sizeof *meta);
    if ((w->n_t && (!by_name || !order)) || (w->n_m && !meta)) {
        st = qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, path);
        goto done;
    }

    /* data layout: 8-byte elements first, then 4, 2, 1; insertion order within a size */
    for (k = 0; k < 4; k++) {
        for (i = 0; i < w->n_t; i++) {
            qn_st_wtensor *t = &w->t[i];
            if (qn_st_dtype_size(t->dtype) != sizes[k])
                continue;
            size_t end;
            if (qn_add_overflow(off, t->nbytes, &end)) {
                st = qn_fail(ctx, QN_ERR_OVERFLOW, "%s: %s: the data size overflows", fn, path);
                goto done;
            }
            t->offset = off;
            off = end;
            order[pos++] = t;
        }
    }
    if ((uint64_t)off > (uint64_t)INT64_MAX) {
        st = qn_fail(ctx, QN_ERR_OVERFLOW, "%s: %s: the data size overflows", fn, path);
        goto done;
    }
    for (i = 0; i < w->n_t; i++)
        by_name[i] = &w->t[i];
    if (w->n_t)
        qsort(by_name, w->n_t, sizeof *by_name, qn_st_cmp_wtensor);
    for (i = 0; i < w->n_m; i++)
        meta[i] = &w->m[i];
    if (w->n_m)
        qsort(meta, w->n_m, sizeof *meta, qn_st_cmp_wmeta);

    /* measure, pad so that 8 + header is a multiple of QN_ST_DATA_ALIGN, then emit */
    qn_st_put_header(&sink, w, by_name, meta);
    header_len = sink.len;
    if (header_len > QN_ST_MAX_HEADER) {
        st = qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: the header would be %zu bytes, above the limit of %u", fn,
                     path, header_len, QN_ST_MAX_HEADER);
        goto done;
    }
    total = (8 + header_len + QN_ST_DATA_ALIGN - 1) / QN_ST_DATA_ALIGN * QN_ST_DATA_ALIGN;
    sink.buf = (char *)qn_malloc(ctx, total);
    if (!sink.buf) {
        st = qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: %s: out of memory for a %zu-byte header", fn, path, total);
        goto done;
    }
    {
        uint64_t n = (uint64_t)(total - 8);
        for (i = 0; i < 8; i++)
            sink.buf[i] = (char)(unsigned char)(n >> (8 * i));
    }
    sink.len = 8;
    qn_st_put_header(&sink, w, by_name, meta);
    memset(sink.buf + sink.len, ' ', total - sink.len);

    st = qn_atomic_open(ctx, path, &af, fn);
    if (st != QN_OK)
        goto done;
    st = qn_atomic_write(af, sink.buf, total);
    for (i = 0; st == QN_OK && i < w->n_t; i++)
        if (order[i]->nbytes)
            st = qn_atomic_write(af, order[i]->data, order[i]->nbytes);
    if (st != QN_OK) {
        qn_atomic_abort(af);
        goto done;
    }
    st = qn_atomic_commit(af); /* frees af and removes the temporary file on error */

done:
    qn_free(ctx, sink.buf);
    qn_free(ctx, by_name);
    qn_free(ctx, order);
    qn_free(ctx, meta);
    return st;
}

#else /* !QN_HAVE_SAFETENSORS: the same entry points, each refusing */

#define QN_ST_OFF(fn) "%s: safetensors support is not built in (libqnoise was built without jansson)", fn

qn_status qn_st_open(const qn_context *ctx, const char *path, int no_mmap, qn_st_file **out)
{
    (void)path;
    (void)no_mmap;
    if (out)
        *out = NULL;
    return qn_fail(ctx, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_open"));
}

qn_status qn_st_open_memory(const qn_context *ctx, const void *data, size_t size, qn_st_file **out)
{
    (void)data;
    (void)size;
    if (out)
        *out = NULL;
    return qn_fail(ctx, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_open_memory"));
}

void qn_st_close(qn_st_file *f)
{
    (void)f;
}

size_t qn_st_tensor_count(const qn_st_file *f)
{
    (void)f;
    return 0;
}

const char *qn_st_tensor_name(const qn_st_file *f, size_t index)
{
    (void)f;
    (void)index;
    return NULL;
}

int qn_st_find(const qn_st_file *f, const char *name, size_t *index)
{
    (void)f;
    (void)name;
    (void)index;
    return 0;
}

qn_status qn_st_tensor_info(const qn_st_file *f, size_t index, qn_st_info *out)
{
    (void)f;
    (void)index;
    (void)out;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_tensor_info"));
}

qn_status qn_st_read_f32(const qn_st_file *f, size_t index, float *out, size_t count)
{
    (void)f;
    (void)index;
    (void)out;
    (void)count;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_read_f32"));
}

size_t qn_st_metadata_count(const qn_st_file *f)
{
    (void)f;
    return 0;
}

const char *qn_st_metadata_get(const qn_st_file *f, const char *key)
{
    (void)f;
    (void)key;
    return NULL;
}

qn_status qn_st_metadata_at(const qn_st_file *f, size_t index, const char **key, const char **value)
{
    (void)f;
    (void)index;
    (void)key;
    (void)value;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_metadata_at"));
}

qn_status qn_st_writer_create(const qn_context *ctx, qn_st_writer **out)
{
    if (out)
        *out = NULL;
    return qn_fail(ctx, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_writer_create"));
}

void qn_st_writer_destroy(qn_st_writer *w)
{
    (void)w;
}

qn_status qn_st_add_tensor(qn_st_writer *w, const char *name, qn_st_dtype dtype, unsigned rank,
                           const uint64_t *shape, const void *data, size_t nbytes)
{
    (void)w;
    (void)name;
    (void)dtype;
    (void)rank;
    (void)shape;
    (void)data;
    (void)nbytes;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_add_tensor"));
}

qn_status qn_st_add_metadata(qn_st_writer *w, const char *key, const char *value)
{
    (void)w;
    (void)key;
    (void)value;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_add_metadata"));
}

qn_status qn_st_write_file(qn_st_writer *w, const char *path)
{
    (void)w;
    (void)path;
    return qn_fail(NULL, QN_ERR_UNSUPPORTED, QN_ST_OFF("qn_st_write_file"));
}

#endif /* QN_HAVE_SAFETENSORS */
