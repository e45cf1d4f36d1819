/*
 * libqnoise internal: GGUF v3 writer and validating reader (see gguf.h and
 * docs/format-gguf.md). Every multi-byte field is encoded and decoded byte by
 * byte as little-endian, so the parser never reads an unaligned word and
 * never trusts a count before checking it against the bytes that remain.
 * SPDX-License-Identifier: MIT
 */
#include "format/gguf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "format/fileio.h"
#include "format/half.h"

/* Smallest encodings, used to bound declared counts by the bytes that remain. */
#define MIN_KV_BYTES 13u     /* u64 key length + u32 type + one value byte */
#define MIN_TENSOR_BYTES 32u /* u64 name length + u32 n_dims + one u64 dim + u32 type + u64 offset */
#define SHOW_CAP 96          /* bytes of a key or name quoted in a message */

/* ------------------------------------------------------------------------- */
/* Little-endian bytes                                                       */
/* ------------------------------------------------------------------------- */

static void put_le(unsigned char *p, uint64_t v, size_t n)
{
    size_t k;
    for (k = 0; k < n; k++)
        p[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t get_le(const unsigned char *p, size_t n)
{
    uint64_t v = 0;
    size_t k;
    for (k = n; k-- > 0;)
        v = (v << 8) | p[k];
    return v;
}

/* Store the low n bytes of bits (n = 1, 2, 4 or 8) as an n-byte host object: integer or IEEE bits. */
static void from_bits(void *dst, uint64_t bits, size_t n)
{
    if (n == 1) {
        uint8_t x = (uint8_t)bits;
        memcpy(dst, &x, 1);
    } else if (n == 2) {
        uint16_t x = (uint16_t)bits;
        memcpy(dst, &x, 2);
    } else if (n == 4) {
        uint32_t x = (uint32_t)bits;
        memcpy(dst, &x, 4);
    } else {
        memcpy(dst, &bits, 8);
    }
}

/* The n-byte host object at src (n = 1, 2, 4 or 8) as bits, for little-endian encoding. */
static uint64_t to_bits(const void *src, size_t n)
{
    if (n == 1) {
        uint8_t x;
        memcpy(&x, src, 1);
        return x;
    } else if (n == 2) {
        uint16_t x;
        memcpy(&x, src, 2);
        return x;
    } else if (n == 4) {
        uint32_t x;
        memcpy(&x, src, 4);
        return x;
    } else {
        uint64_t x = 0;
        memcpy(&x, src, 8);
        return x;
    }
}

static int host_is_little_endian(void)
{
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Bytes of one metadata scalar of type t; 0 for STRING, ARRAY and unknown types. */
static size_t kv_scalar_size(uint32_t t)
{
    switch (t) {
    case QN_GGUF_U8:
    case QN_GGUF_I8:
    case QN_GGUF_BOOL:
        return 1;
    case QN_GGUF_U16:
    case QN_GGUF_I16:
        return 2;
    case QN_GGUF_U32:
    case QN_GGUF_I32:
    case QN_GGUF_F32:
        return 4;
    case QN_GGUF_U64:
    case QN_GGUF_I64:
    case QN_GGUF_F64:
        return 8;
    default:
        return 0;
    }
}

size_t qn_ggml_type_size(uint32_t type)
{
    switch (type) {
    case QN_GGML_F32:
    case QN_GGML_I32:
        return 4;
    case QN_GGML_F16:
    case QN_GGML_I16:
        return 2;
    case QN_GGML_I8:
        return 1;
    default:
        return 0;
    }
}

const char *qn_ggml_type_name(uint32_t type)
{
    switch (type) {
    case QN_GGML_F32:
        return "F32";
    case QN_GGML_F16:
        return "F16";
    case QN_GGML_I8:
        return "I8";
    case QN_GGML_I16:
        return "I16";
    case QN_GGML_I32:
        return "I32";
    default:
        return "unsupported";
    }
}

const char *qn_gguf_type_name(uint32_t type)
{
    static const char *const names[] = {"U8",   "I8",     "U16",   "I16", "U32", "I32", "F32",
                                        "BOOL", "STRING", "ARRAY", "U64", "I64", "F64"};
    return type < sizeof names / sizeof names[0] ? names[type] : "invalid";
}

/*
 * Quote n bytes of s into buf (at most SHOW_CAP - 4 of them) for a message:
 * bytes outside printable ASCII become '?', a cut is marked with "...".
 */
static const char *show(char buf[SHOW_CAP], const void *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t k, m = n > SHOW_CAP - 4 ? SHOW_CAP - 4 : n;
    for (k = 0; k < m; k++)
        buf[k] = (p[k] >= 0x20 && p[k] < 0x7f) ? (char)p[k] : '?';
    if (m < n) {
        memcpy(buf + m, "...", 3);
        m += 3;
    }
    buf[m] = '\0';
    return buf;
}

static int bytes_eq(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* Order by bytes, then by length (a proper prefix sorts first). */
static int bytes_cmp(const unsigned char *a, size_t na, const unsigned char *b, size_t nb)
{
    int c = memcmp(a, b, na < nb ? na : nb);
    if (c != 0)
        return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static uint64_t hash_bytes(const void *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    while (n--) {
        h ^= *p++;
        h *= 0x100000001b3ull;
    }
    return h;
}

/* ------------------------------------------------------------------------- */
/* Writer                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct w_kv {
    unsigned char *blob; /* key bytes, then the serialized value (after the u32 type) */
    size_t key_len;
    size_t val_len;
    uint32_t type;
} w_kv;

typedef struct w_tensor {
    char name[QN_GGUF_MAX_NAME + 1];
    size_t name_len;
    uint32_t type;
    uint32_t n_dims;
    uint64_t dims[QN_GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} w_tensor;

/* Open-addressing set of indices (slot = index + 1, 0 = empty); capacity a power of two. */
typedef struct w_set {
    size_t *slots;
    size_t cap;
} w_set;

struct qn_gguf_writer {
    const qn_context *ctx;
    w_kv *kv;
    size_t n_kv, cap_kv;
    w_tensor *t;
    size_t n_t, cap_t;
    w_set keys, names;
    uint32_t alignment; /* the caller's general.alignment, or 0 */
};

static void w_entry(const qn_gguf_writer *w, int tensors, size_t idx, const void **p, size_t *n)
{
    if (tensors) {
        *p = w->t[idx].name;
        *n = w->t[idx].name_len;
    } else {
        *p = w->kv[idx].blob;
        *n = w->kv[idx].key_len;
    }
}

/* Index of the entry equal to (s, n) in set, or QN_GGUF_NOT_FOUND. */
static size_t w_set_find(const qn_gguf_writer *w, int tensors, const void *s, size_t n)
{
    const w_set *set = tensors ? &w->names : &w->keys;
    size_t mask, i;
    if (!set->cap)
        return QN_GGUF_NOT_FOUND;
    mask = set->cap - 1;
    for (i = (size_t)hash_bytes(s, n) & mask; set->slots[i]; i = (i + 1) & mask) {
        const void *p;
        size_t pn;
        w_entry(w, tensors, set->slots[i] - 1, &p, &pn);
        if (bytes_eq(p, pn, s, n))
            return set->slots[i] - 1;
    }
    return QN_GGUF_NOT_FOUND;
}

static void w_set_put(const qn_gguf_writer *w, int tensors, w_set *set, size_t idx)
{
    const void *p;
    size_t n, mask = set->cap - 1, i;
    w_entry(w, tensors, idx, &p, &n);
    for (i = (size_t)hash_bytes(p, n) & mask; set->slots[i]; i = (i + 1) & mask) {
    }
    set->slots[i] = idx + 1;
}

/* Make room for `count` entries (load <= 1/2), rehashing the first count - 1. */
static qn_status w_set_reserve(qn_gguf_writer *w, int tensors, size_t count)
{
    w_set *set = tensors ? &w->names : &w->keys;
    w_set grown;
    size_t cap = set->cap ? set->cap : 16, k;
    while (count > cap / 2) {
        if (cap > SIZE_MAX / 4)
            return QN_ERR_OUT_OF_MEMORY;
        cap *= 2;
    }
    if (cap == set->cap)
        return QN_OK;
    grown.cap = cap;
    grown.slots = (size_t *)qn_calloc(w->ctx, cap, sizeof *grown.slots);
    if (!grown.slots)
        return QN_ERR_OUT_OF_MEMORY;
    for (k = 0; k + 1 < count; k++)
        w_set_put(w, tensors, &grown, k);
    qn_free(w->ctx, set->slots);
    *set = grown;
    return QN_OK;
}

/* Grow an array of elem-byte records to hold `need`. */
static qn_status w_grow(const qn_context *ctx, void **arr, size_t *cap, size_t need, size_t elem)
{
    size_t ncap = *cap ? *cap : 16, bytes;
    void *p;
    if (need <= *cap)
        return QN_OK;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2)
            return QN_ERR_OUT_OF_MEMORY;
        ncap *= 2;
    }
    if (qn_mul_overflow(ncap, elem, &bytes))
        return QN_ERR_OUT_OF_MEMORY;
    p = qn_malloc(ctx, bytes);
    if (!p)
        return QN_ERR_OUT_OF_MEMORY;
    if (*cap)
        memcpy(p, *arr, *cap * elem);
    qn_free(ctx, *arr);
    *arr = p;
    *cap = ncap;
    return QN_OK;
}

qn_status qn_gguf_writer_create(const qn_context *ctx, qn_gguf_writer **out)
{
    qn_gguf_writer *w;
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_writer_create: out is NULL");
    *out = NULL;
    if (!ctx)
        return QN_ERR_INVALID_ARG;
    w = (qn_gguf_writer *)qn_calloc(ctx, 1, sizeof *w);
    if (!w)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_gguf_writer_create: out of memory");
    w->ctx = ctx;
    *out = w;
    return QN_OK;
}

void qn_gguf_writer_destroy(qn_gguf_writer *w)
{
    size_t k;
    if (!w)
        return;
    for (k = 0; k < w->n_kv; k++)
        qn_free(w->ctx, w->kv[k].blob);
    qn_free(w->ctx, w->kv);
    qn_free(w->ctx, w->t);
    qn_free(w->ctx, w->keys.slots);
    qn_free(w->ctx, w->names.slots);
    qn_free(w->ctx, w);
}

size_t qn_gguf_writer_kv_count(const qn_gguf_writer *w)
{
    return w ? w->n_kv : 0;
}

size_t qn_gguf_writer_tensor_count(const qn_gguf_writer *w)
{
    return w ? w->n_t : 0;
}

/*
 * Validate key for a new pair of type `type` and allocate its blob (key
 * copied, val_len bytes left for the caller). Nothing changes in w.
 */
static qn_status kv_alloc(qn_gguf_writer *w, const char *fn, const char *key, uint32_t type, size_t val_len,
                          unsigned char **blob, size_t *key_len)
{
    char sb[SHOW_CAP];
    size_t n, total;
    *blob = NULL;
    if (!w)
        return QN_ERR_INVALID_ARG;
    if (!key || !*key)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: the key is NULL or empty", fn);
    n = strlen(key);
    if (n > QN_GGUF_MAX_KEY)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: key '%s' is %zu bytes long (at most %u)", fn,
                       show(sb, key, n), n, QN_GGUF_MAX_KEY);
    if (strcmp(key, QN_GGUF_KEY_CRC32C) == 0)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: key '%s' is reserved (the writer computes it)", fn, key);
    if (strcmp(key, QN_GGUF_KEY_ALIGNMENT) == 0 && type != QN_GGUF_U32)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: '%s' must be a U32, not %s", fn, key,
                       qn_gguf_type_name(type));
    if (w_set_find(w, 0, key, n) != QN_GGUF_NOT_FOUND)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: duplicate key '%s'", fn, show(sb, key, n));
    if (qn_add_overflow(n, val_len, &total))
        return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: value of '%s' is too large", fn, show(sb, key, n));
    *blob = (unsigned char *)qn_malloc(w->ctx, total);
    if (!*blob)
        return qn_fail(w->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory for '%s'", fn, show(sb, key, n));
    memcpy(*blob, key, n);
    *key_len = n;
    return QN_OK;
}

/* Append the pair (takes blob; frees it on failure). */
static qn_status kv_insert(qn_gguf_writer *w, const char *fn, unsigned char *blob, size_t key_len, uint32_t type,
                           size_t val_len)
{
    void *arr = w->kv;
    qn_status st = w_grow(w->ctx, &arr, &w->cap_kv, w->n_kv + 1, sizeof *w->kv);
    w->kv = (w_kv *)arr;
    if (st == QN_OK)
        st = w_set_reserve(w, 0, w->n_kv + 1);
    if (st != QN_OK) {
        char sb[SHOW_CAP];
        show(sb, blob, key_len);
        qn_free(w->ctx, blob);
        return qn_fail(w->ctx, st, "%s: out of memory for '%s'", fn, sb);
    }
    w->kv[w->n_kv].blob = blob;
    w->kv[w->n_kv].key_len = key_len;
    w->kv[w->n_kv].val_len = val_len;
    w->kv[w->n_kv].type = type;
    w_set_put(w, 0, &w->keys, w->n_kv);
    w->n_kv++;
    return QN_OK;
}

static qn_status add_scalar(qn_gguf_writer *w, const char *fn, const char *key, uint32_t type, uint64_t bits)
{
    unsigned char *blob;
    size_t key_len, n = kv_scalar_size(type);
    qn_status st;
    int is_alignment = key && strcmp(key, QN_GGUF_KEY_ALIGNMENT) == 0;
    if (w && is_alignment && type == QN_GGUF_U32 && (bits < 8 || (bits & (bits - 1)) != 0))
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: %s = %llu is not a power of two >= 8", fn,
                       QN_GGUF_KEY_ALIGNMENT, (unsigned long long)bits);
    st = kv_alloc(w, fn, key, type, n, &blob, &key_len);
    if (st != QN_OK)
        return st;
    put_le(blob + key_len, bits, n);
    st = kv_insert(w, fn, blob, key_len, type, n);
    if (st == QN_OK && is_alignment)
        w->alignment = (uint32_t)bits;
    return st;
}

qn_status qn_gguf_add_u8(qn_gguf_writer *w, const char *key, uint8_t value)
{
    return add_scalar(w, "qn_gguf_add_u8", key, QN_GGUF_U8, value);
}

qn_status qn_gguf_add_i8(qn_gguf_writer *w, const char *key, int8_t value)
{
    return add_scalar(w, "qn_gguf_add_i8", key, QN_GGUF_I8, (uint8_t)value);
}

qn_status qn_gguf_add_u16(qn_gguf_writer *w, const char *key, uint16_t value)
{
    return add_scalar(w, "qn_gguf_add_u16", key, QN_GGUF_U16, value);
}

qn_status qn_gguf_add_i16(qn_gguf_writer *w, const char *key, int16_t value)
{
    return add_scalar(w, "qn_gguf_add_i16", key, QN_GGUF_I16, (uint16_t)value);
}

qn_status qn_gguf_add_u32(qn_gguf_writer *w, const char *key, uint32_t value)
{
    return add_scalar(w, "qn_gguf_add_u32", key, QN_GGUF_U32, value);
}

qn_status qn_gguf_add_i32(qn_gguf_writer *w, const char *key, int32_t value)
{
    return add_scalar(w, "qn_gguf_add_i32", key, QN_GGUF_I32, (uint32_t)value);
}

qn_status qn_gguf_add_u64(qn_gguf_writer *w, const char *key, uint64_t value)
{
    return add_scalar(w, "qn_gguf_add_u64", key, QN_GGUF_U64, value);
}

qn_status qn_gguf_add_i64(qn_gguf_writer *w, const char *key, int64_t value)
{
    return add_scalar(w, "qn_gguf_add_i64", key, QN_GGUF_I64, (uint64_t)value);
}

qn_status qn_gguf_add_f32(qn_gguf_writer *w, const char *key, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return add_scalar(w, "qn_gguf_add_f32", key, QN_GGUF_F32, bits);
}

qn_status qn_gguf_add_f64(qn_gguf_writer *w, const char *key, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return add_scalar(w, "qn_gguf_add_f64", key, QN_GGUF_F64, bits);
}

qn_status qn_gguf_add_bool(qn_gguf_writer *w, const char *key, int value)
{
    return add_scalar(w, "qn_gguf_add_bool", key, QN_GGUF_BOOL, value != 0);
}

qn_status qn_gguf_add_string_len(qn_gguf_writer *w, const char *key, const char *value, size_t len)
{
    const char *fn = "qn_gguf_add_string";
    unsigned char *blob;
    size_t key_len, n;
    qn_status st;
    if (w && !value && len)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: value is NULL", fn);
    if (w && qn_add_overflow(len, 8, &n))
        return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: string too long", fn);
    st = kv_alloc(w, fn, key, QN_GGUF_STRING, len + 8, &blob, &key_len);
    if (st != QN_OK)
        return st;
    put_le(blob + key_len, (uint64_t)len, 8);
    if (len)
        memcpy(blob + key_len + 8, value, len);
    return kv_insert(w, fn, blob, key_len, QN_GGUF_STRING, len + 8);
}

qn_status qn_gguf_add_string(qn_gguf_writer *w, const char *key, const char *value)
{
    if (w && !value)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "qn_gguf_add_string: value is NULL");
    return qn_gguf_add_string_len(w, key, value, value ? strlen(value) : 0);
}

qn_status qn_gguf_add_array(qn_gguf_writer *w, const char *key, qn_gguf_type elem_type, const void *elems,
                            size_t count)
{
    const char *fn = "qn_gguf_add_array";
    const unsigned char *src = (const unsigned char *)elems;
    size_t esz = kv_scalar_size((uint32_t)elem_type), bytes, total, k, key_len;
    unsigned char *blob, *dst;
    qn_status st;
    if (!w)
        return QN_ERR_INVALID_ARG;
    if (esz == 0)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: element type %u (%s) is not a numeric type", fn,
                       (unsigned)elem_type, qn_gguf_type_name((uint32_t)elem_type));
    if (!elems && count)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: elems is NULL", fn);
    if (qn_mul_overflow(count, esz, &bytes) || qn_add_overflow(bytes, 12, &total))
        return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: %zu elements are too many", fn, count);
    if (elem_type == QN_GGUF_BOOL)
        for (k = 0; k < count; k++)
            if (src[k] > 1)
                return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: BOOL element %zu is %u, not 0 or 1", fn, k,
                               (unsigned)src[k]);
    st = kv_alloc(w, fn, key, QN_GGUF_ARRAY, total, &blob, &key_len);
    if (st != QN_OK)
        return st;
    dst = blob + key_len;
    put_le(dst, (uint32_t)elem_type, 4);
    put_le(dst + 4, (uint64_t)count, 8);
    dst += 12;
    for (k = 0; k < count; k++)
        put_le(dst + k * esz, to_bits(src + k * esz, esz), esz);
    return kv_insert(w, fn, blob, key_len, QN_GGUF_ARRAY, total);
}

qn_status qn_gguf_add_string_array(qn_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                   size_t count)
{
    const char *fn = "qn_gguf_add_string_array";
    size_t total = 12, k, key_len;
    unsigned char *blob, *dst;
    qn_status st;
    if (!w)
        return QN_ERR_INVALID_ARG;
    if (!strs && count)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: strs is NULL", fn);
    for (k = 0; k < count; k++) {
        size_t n;
        if (!strs[k] && (!lens || lens[k]))
            return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: string %zu is NULL", fn, k);
        n = lens ? lens[k] : strlen(strs[k]);
        if (qn_add_overflow(total, 8, &total) || qn_add_overflow(total, n, &total))
            return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: the strings are too long", fn);
    }
    st = kv_alloc(w, fn, key, QN_GGUF_ARRAY, total, &blob, &key_len);
    if (st != QN_OK)
        return st;
    dst = blob + key_len;
    put_le(dst, QN_GGUF_STRING, 4);
    put_le(dst + 4, (uint64_t)count, 8);
    dst += 12;
    for (k = 0; k < count; k++) {
        size_t n = lens ? lens[k] : strlen(strs[k]);
        put_le(dst, (uint64_t)n, 8);
        if (n)
            memcpy(dst + 8, strs[k], n);
        dst += 8 + n;
    }
    return kv_insert(w, fn, blob, key_len, QN_GGUF_ARRAY, total);
}

qn_status qn_gguf_add_tensor(qn_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *dims, const void *data, size_t nbytes)
{
    const char *fn = "qn_gguf_add_tensor";
    char sb[SHOW_CAP];
    size_t n, esz, want;
    uint64_t nel = 1;
    uint32_t d;
    w_tensor *t;
    void *arr;
    qn_status st;
    if (!w)
        return QN_ERR_INVALID_ARG;
    if (!name || !*name)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: the name is NULL or empty", fn);
    n = strlen(name);
    if (n > QN_GGUF_MAX_NAME)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: tensor name '%s' is %zu bytes long (at most %u)", fn,
                       show(sb, name, n), n, QN_GGUF_MAX_NAME);
    esz = qn_ggml_type_size(type);
    if (esz == 0)
        return qn_fail(w->ctx, QN_ERR_UNSUPPORTED, "%s: tensor '%s': ggml type %u is not supported (F32, F16, I8, "
                       "I16 or I32)", fn, name, (unsigned)type);
    if (n_dims < 1 || n_dims > QN_GGUF_MAX_DIMS || !dims)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: tensor '%s': n_dims %u is not 1..%u (or dims is NULL)", fn,
                       name, (unsigned)n_dims, QN_GGUF_MAX_DIMS);
    for (d = 0; d < n_dims; d++) {
        if (dims[d] > (uint64_t)INT64_MAX || (dims[d] && nel > (uint64_t)INT64_MAX / dims[d]))
            return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: tensor '%s': the element count overflows", fn, name);
        nel *= dims[d];
    }
    if (nel > (uint64_t)SIZE_MAX || qn_mul_overflow((size_t)nel, esz, &want))
        return qn_fail(w->ctx, QN_ERR_OVERFLOW, "%s: tensor '%s': the byte size overflows size_t", fn, name);
    if (want != nbytes)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: tensor '%s': nbytes is %zu, its shape and type need %zu", fn,
                       name, nbytes, want);
    if (!data && nbytes)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: tensor '%s': data is NULL", fn, name);
    if (w_set_find(w, 1, name, n) != QN_GGUF_NOT_FOUND)
        return qn_fail(w->ctx, QN_ERR_INVALID_ARG, "%s: duplicate tensor name '%s'", fn, name);
    arr = w->t;
    st = w_grow(w->ctx, &arr, &w->cap_t, w->n_t + 1, sizeof *w->t);
    w->t = (w_tensor *)arr;
    if (st == QN_OK)
        st = w_set_reserve(w, 1, w->n_t + 1);
    if (st != QN_OK)
        return qn_fail(w->ctx, st, "%s: out of memory for tensor '%s'", fn, name);
    t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    memcpy(t->name, name, n + 1);
    t->name_len = n;
    t->type = type;
    t->n_dims = n_dims;
    for (d = 0; d < QN_GGUF_MAX_DIMS; d++)
        t->dims[d] = d < n_dims ? dims[d] : 1;
    t->data = data;
    t->nbytes = nbytes;
    w_set_put(w, 1, &w->names, w->n_t);
    w->n_t++;
    return QN_OK;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    uint64_t r = x % a;
    return r ? x + (a - r) : x;
}

static qn_status put_string(qn_atomic_file *f, const void *s, size_t n)
{
    unsigned char len[8];
    qn_status st;
    put_le(len, (uint64_t)n, 8);
    st = qn_atomic_write(f, len, 8);
    if (st == QN_OK && n)
        st = qn_atomic_write(f, s, n);
    return st;
}

static qn_status put_u32(qn_atomic_file *f, uint32_t v)
{
    unsigned char b[4];
    put_le(b, v, 4);
    return qn_atomic_write(f, b, 4);
}

static qn_status put_u64(qn_atomic_file *f, uint64_t v)
{
    unsigned char b[8];
    put_le(b, v, 8);
    return qn_atomic_write(f, b, 8);
}

static qn_status pad_to(qn_atomic_file *f, uint64_t alignment)
{
    uint64_t at = qn_atomic_offset(f);
    return qn_atomic_pad(f, (size_t)(align_up(at, alignment) - at));
}

qn_status qn_gguf_write_file(const qn_gguf_writer *w, const char *path)
{
    const char *fn = "qn_gguf_write_file";
    const qn_context *ctx;
    uint64_t alignment, off = 0, n_kv;
    unsigned char *crc;
    size_t crc_len, k;
    qn_atomic_file *f = NULL;
    qn_status st;
    if (!w)
        return QN_ERR_INVALID_ARG;
    ctx = w->ctx;
    if (!path || !*path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: empty path", fn);
    if (!host_is_little_endian())
        return qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: writing GGUF needs a little-endian host", fn, path);
    alignment = w->alignment ? w->alignment : QN_GGUF_WRITE_ALIGNMENT;
    n_kv = (uint64_t)w->n_kv + (w->alignment ? 1u : 2u);

    /* the tensor offsets must fit (checked once here, recomputed while writing) */
    for (k = 0; k < w->n_t; k++) {
        off = align_up(off, alignment);
        if ((uint64_t)w->t[k].nbytes > UINT64_MAX - alignment || off > UINT64_MAX - alignment - w->t[k].nbytes)
            return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: %s: the tensor data exceed 2^64 bytes", fn, path);
        off += w->t[k].nbytes;
    }

    /* qnoise.tensor_crc32c: u32 elem type, u64 count, one u32 per tensor */
    if (qn_mul_overflow(w->n_t, 4, &crc_len) || qn_add_overflow(crc_len, 12, &crc_len))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: %s: too many tensors", fn, path);
    crc = (unsigned char *)qn_malloc(ctx, crc_len);
    if (!crc)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: %s: out of memory", fn, path);
    put_le(crc, QN_GGUF_U32, 4);
    put_le(crc + 4, (uint64_t)w->n_t, 8);
    for (k = 0; k < w->n_t; k++)
        put_le(crc + 12 + 4 * k, qn_crc32c(0, w->t[k].data, w->t[k].nbytes), 4);

    st = qn_atomic_open(ctx, path, &f, fn);
    if (st != QN_OK) {
        qn_free(ctx, crc);
        return st;
    }
    st = qn_atomic_write(f, QN_GGUF_MAGIC, 4);
    if (st == QN_OK)
        st = put_u32(f, QN_GGUF_VERSION);
    if (st == QN_OK)
        st = put_u64(f, (uint64_t)w->n_t);
    if (st == QN_OK)
        st = put_u64(f, n_kv);
    for (k = 0; st == QN_OK && k < w->n_kv; k++) {
        const w_kv *kv = &w->kv[k];
        st = put_string(f, kv->blob, kv->key_len);
        if (st == QN_OK)
            st = put_u32(f, kv->type);
        if (st == QN_OK)
            st = qn_atomic_write(f, kv->blob + kv->key_len, kv->val_len);
    }
    if (st == QN_OK && !w->alignment) {
        st = put_string(f, QN_GGUF_KEY_ALIGNMENT, strlen(QN_GGUF_KEY_ALIGNMENT));
        if (st == QN_OK)
            st = put_u32(f, QN_GGUF_U32);
        if (st == QN_OK)
            st = put_u32(f, (uint32_t)alignment);
    }
    if (st == QN_OK)
        st = put_string(f, QN_GGUF_KEY_CRC32C, strlen(QN_GGUF_KEY_CRC32C));
    if (st == QN_OK)
        st = put_u32(f, QN_GGUF_ARRAY);
    if (st == QN_OK)
        st = qn_atomic_write(f, crc, crc_len);
    qn_free(ctx, crc);

    off = 0;
    for (k = 0; st == QN_OK && k < w->n_t; k++) {
        const w_tensor *t = &w->t[k];
        uint32_t d;
        off = align_up(off, alignment);
        st = put_string(f, t->name, t->name_len);
        if (st == QN_OK)
            st = put_u32(f, t->n_dims);
        for (d = 0; st == QN_OK && d < t->n_dims; d++)
            st = put_u64(f, t->dims[d]);
        if (st == QN_OK)
            st = put_u32(f, t->type);
        if (st == QN_OK)
            st = put_u64(f, off);
        off += t->nbytes;
    }
    if (st == QN_OK)
        st = pad_to(f, alignment);
    for (k = 0; st == QN_OK && k < w->n_t; k++) {
        if (w->t[k].nbytes)
            st = qn_atomic_write(f, w->t[k].data, w->t[k].nbytes);
        if (st == QN_OK)
            st = pad_to(f, alignment);
    }
    if (st != QN_OK) {
        qn_atomic_abort(f);
        return st;
    }
    return qn_atomic_commit(f);
}

/* ------------------------------------------------------------------------- */
/* Reader                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct r_kv {
    const unsigned char *key;
    size_t key_len;
    uint32_t type;
    uint32_t elem_type;       /* ARRAY only */
    uint64_t count;           /* ARRAY only */
    const unsigned char *val; /* scalar bytes; STRING bytes (after the length); ARRAY elements */
    size_t val_len;           /* bytes at val */
} r_kv;

typedef struct r_tensor {
    const unsigned char *name;
    size_t name_len;
    uint32_t type;
    uint32_t n_dims;
    uint64_t dims[QN_GGUF_MAX_DIMS];
    uint64_t n_elements;
    uint64_t offset;
    size_t nbytes;
} r_tensor;

struct qn_gguf_file {
    const qn_context *ctx;
    qn_mapped map;             /* owned bytes when opened from a path */
    const unsigned char *base; /* the bytes */
    size_t size;
    char *path;                /* copy of the path, or NULL for memory */
    uint32_t version;
    uint32_t alignment;
    uint64_t data_start;
    size_t n_kv;
    r_kv *kv;
    const r_kv **kv_sorted; /* by key */
    size_t n_t;
    r_tensor *t;
    const r_tensor **t_sorted; /* by name */
};

static const char *src_name(const qn_gguf_file *f)
{
    return f->path ? f->path : "memory";
}

/* Parsing cursor. `where` names the key or tensor being read, for messages. */
typedef struct rd {
    const qn_gguf_file *f;
    size_t pos;
    char where[SHOW_CAP + 48];
} rd;

static qn_status rd_corrupt(const rd *r, const char *what)
{
    return qn_fail(r->f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: %s%s%s", src_name(r->f), r->where,
                   r->where[0] ? ": " : "", what);
}

static qn_status rd_truncated(const rd *r, const char *what)
{
    return qn_fail(r->f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: %s%struncated at byte %zu (file size %zu) reading %s",
                   src_name(r->f), r->where, r->where[0] ? ": " : "", r->pos, r->f->size, what);
}

static size_t rd_left(const rd *r)
{
    return r->f->size - r->pos;
}

static qn_status rd_uint(rd *r, size_t n, uint64_t *v, const char *what)
{
    if (rd_left(r) < n)
        return rd_truncated(r, what);
    *v = get_le(r->f->base + r->pos, n);
    r->pos += n;
    return QN_OK;
}

static qn_status rd_u32(rd *r, uint32_t *v, const char *what)
{
    uint64_t x = 0;
    qn_status st = rd_uint(r, 4, &x, what);
    if (st == QN_OK)
        *v = (uint32_t)x;
    return st;
}

/* A string: u64 length bounded by the remaining bytes, then the bytes. */
static qn_status rd_string(rd *r, const unsigned char **s, size_t *n, const char *what)
{
    uint64_t len = 0;
    qn_status st = rd_uint(r, 8, &len, what);
    if (st != QN_OK)
        return st;
    if (len > rd_left(r)) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s of %llu bytes runs past the end (%zu bytes left at byte %zu)", what,
                 (unsigned long long)len, rd_left(r), r->pos);
        return rd_corrupt(r, msg);
    }
    *s = r->f->base + r->pos;
    *n = (size_t)len;
    r->pos += (size_t)len;
    return QN_OK;
}

/* The value of a pair whose key and type have been read. */
static qn_status rd_value(rd *r, r_kv *kv)
{
    char msg[160];
    size_t esz;
    qn_status st;
    if (kv->type == QN_GGUF_STRING)
        return rd_string(r, &kv->val, &kv->val_len, "string value");
    if (kv->type == QN_GGUF_ARRAY) {
        uint64_t count = 0, k;
        st = rd_u32(r, &kv->elem_type, "the array element type");
        if (st == QN_OK)
            st = rd_uint(r, 8, &count, "the array length");
        if (st != QN_OK)
            return st;
        kv->count = count;
        if (kv->elem_type == QN_GGUF_ARRAY)
            return qn_fail(r->f->ctx, QN_ERR_UNSUPPORTED, "gguf: %s: %s: nested arrays are not supported",
                           src_name(r->f), r->where);
        if (kv->elem_type == QN_GGUF_STRING) {
            size_t start = r->pos;
            if (count > rd_left(r) / 8) {
                snprintf(msg, sizeof msg, "array of %llu strings cannot fit in the %zu bytes left",
                         (unsigned long long)count, rd_left(r));
                return rd_corrupt(r, msg);
            }
            for (k = 0; k < count; k++) {
                const unsigned char *s;
                size_t n;
                st = rd_string(r, &s, &n, "a string in the array");
                if (st != QN_OK)
                    return st;
            }
            kv->val = r->f->base + start;
            kv->val_len = r->pos - start;
            return QN_OK;
        }
        esz = kv_scalar_size(kv->elem_type);
        if (esz == 0) {
            snprintf(msg, sizeof msg, "unknown array element type %u", (unsigned)kv->elem_type);
            return rd_corrupt(r, msg);
        }
        if (count > rd_left(r) / esz) {
            snprintf(msg, sizeof msg, "array of %llu %s elements runs past the end (%zu bytes left at byte %zu)",
                     (unsigned long long)count, qn_gguf_type_name(kv->elem_type), rd_left(r), r->pos);
            return rd_corrupt(r, msg);
        }
        kv->val = r->f->base + r->pos;
        kv->val_len = (size_t)count * esz;
        r->pos += kv->val_len;
        if (kv->elem_type == QN_GGUF_BOOL)
            for (k = 0; k < count; k++)
                if (kv->val[k] > 1) {
                    snprintf(msg, sizeof msg, "BOOL element %llu is %u, not 0 or 1", (unsigned long long)k,
                             (unsigned)kv->val[k]);
                    return rd_corrupt(r, msg);
                }
        return QN_OK;
    }
    esz = kv_scalar_size(kv->type);
    if (esz == 0) {
        snprintf(msg, sizeof msg, "unknown value type %u", (unsigned)kv->type);
        return rd_corrupt(r, msg);
    }
    if (rd_left(r) < esz)
        return rd_truncated(r, "the value");
    kv->val = r->f->base + r->pos;
    kv->val_len = esz;
    r->pos += esz;
    if (kv->type == QN_GGUF_BOOL && kv->val[0] > 1) {
        snprintf(msg, sizeof msg, "BOOL value is %u, not 0 or 1", (unsigned)kv->val[0]);
        return rd_corrupt(r, msg);
    }
    return QN_OK;
}

static int cmp_kv(const void *a, const void *b)
{
    const r_kv *x = *(const r_kv *const *)a, *y = *(const r_kv *const *)b;
    return bytes_cmp(x->key, x->key_len, y->key, y->key_len);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    const r_tensor *x = *(const r_tensor *const *)a, *y = *(const r_tensor *const *)b;
    return bytes_cmp(x->name, x->name_len, y->name, y->name_len);
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const r_tensor *x = *(const r_tensor *const *)a, *y = *(const r_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return x < y ? -1 : x > y ? 1 : 0;
}

static qn_status parse_header(qn_gguf_file *f, rd *r, uint64_t *n_t, uint64_t *n_kv)
{
    uint64_t left;
    qn_status st;
    if (f->size < 4)
        return rd_truncated(r, "the magic");
    if (memcmp(f->base, QN_GGUF_MAGIC, 4) != 0)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                       "gguf: %s: not a GGUF file (magic %02x %02x %02x %02x, expected 47 47 55 46)", src_name(f),
                       f->base[0], f->base[1], f->base[2], f->base[3]);
    r->pos = 4;
    st = rd_u32(r, &f->version, "the version");
    if (st != QN_OK)
        return st;
    if (f->version == 0x02000000u || f->version == 0x03000000u)
        return qn_fail(f->ctx, QN_ERR_UNSUPPORTED, "gguf: %s: big-endian GGUF files are not supported", src_name(f));
    if (f->version != 2 && f->version != 3)
        return qn_fail(f->ctx, QN_ERR_UNSUPPORTED, "gguf: %s: GGUF version %u is not supported (2 and 3 are)",
                       src_name(f), (unsigned)f->version);
    st = rd_uint(r, 8, n_t, "tensor_count");
    if (st == QN_OK)
        st = rd_uint(r, 8, n_kv, "metadata_kv_count");
    if (st != QN_OK)
        return st;
    left = rd_left(r);
    if (*n_kv > left / MIN_KV_BYTES)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                       "gguf: %s: metadata_kv_count %llu cannot fit in the %llu bytes left", src_name(f),
                       (unsigned long long)*n_kv, (unsigned long long)left);
    if (*n_t > (left - *n_kv * MIN_KV_BYTES) / MIN_TENSOR_BYTES)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: tensor_count %llu cannot fit in the %llu bytes left",
                       src_name(f), (unsigned long long)*n_t, (unsigned long long)left);
    return QN_OK;
}

static qn_status parse_kvs(qn_gguf_file *f, rd *r)
{
    char sb[SHOW_CAP];
    size_t i;
    qn_status st;
    f->alignment = QN_GGUF_DEFAULT_ALIGNMENT;
    for (i = 0; i < f->n_kv; i++) {
        r_kv *kv = &f->kv[i];
        snprintf(r->where, sizeof r->where, "metadata pair #%zu", i);
        st = rd_string(r, &kv->key, &kv->key_len, "the key");
        if (st != QN_OK)
            return st;
        if (kv->key_len > QN_GGUF_MAX_KEY) {
            char msg[64];
            snprintf(msg, sizeof msg, "key of %zu bytes (at most %u)", kv->key_len, QN_GGUF_MAX_KEY);
            return rd_corrupt(r, msg);
        }
        snprintf(r->where, sizeof r->where, "key '%s'", show(sb, kv->key, kv->key_len));
        st = rd_u32(r, &kv->type, "the value type");
        if (st == QN_OK)
            st = rd_value(r, kv);
        if (st != QN_OK)
            return st;
        if (bytes_eq(kv->key, kv->key_len, QN_GGUF_KEY_ALIGNMENT, strlen(QN_GGUF_KEY_ALIGNMENT))) {
            uint32_t a;
            if (kv->type != QN_GGUF_U32)
                return rd_corrupt(r, "must be a U32");
            a = (uint32_t)get_le(kv->val, 4);
            if (a == 0 || a % 8 != 0) {
                char msg[64];
                snprintf(msg, sizeof msg, "%u is not a nonzero multiple of 8", (unsigned)a);
                return rd_corrupt(r, msg);
            }
            f->alignment = a;
        }
    }
    r->where[0] = '\0';
    for (i = 0; i < f->n_kv; i++)
        f->kv_sorted[i] = &f->kv[i];
    if (f->n_kv > 1)
        qsort(f->kv_sorted, f->n_kv, sizeof *f->kv_sorted, cmp_kv);
    for (i = 1; i < f->n_kv; i++)
        if (cmp_kv(&f->kv_sorted[i - 1], &f->kv_sorted[i]) == 0)
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: duplicate key '%s'", src_name(f),
                           show(sb, f->kv_sorted[i]->key, f->kv_sorted[i]->key_len));
    return QN_OK;
}

static qn_status parse_tensor_infos(qn_gguf_file *f, rd *r)
{
    char sb[SHOW_CAP], msg[200];
    size_t i;
    qn_status st;
    for (i = 0; i < f->n_t; i++) {
        r_tensor *t = &f->t[i];
        uint32_t d;
        uint64_t nel = 1, nbytes;
        size_t esz;
        snprintf(r->where, sizeof r->where, "tensor info #%zu", i);
        st = rd_string(r, &t->name, &t->name_len, "the tensor name");
        if (st != QN_OK)
            return st;
        if (t->name_len > QN_GGUF_MAX_NAME) {
            snprintf(msg, sizeof msg, "tensor name '%s' is %zu bytes long (at most %u)",
                     show(sb, t->name, t->name_len), t->name_len, QN_GGUF_MAX_NAME);
            return rd_corrupt(r, msg);
        }
        snprintf(r->where, sizeof r->where, "tensor '%s'", show(sb, t->name, t->name_len));
        st = rd_u32(r, &t->n_dims, "n_dims");
        if (st != QN_OK)
            return st;
        if (t->n_dims < 1 || t->n_dims > QN_GGUF_MAX_DIMS) {
            snprintf(msg, sizeof msg, "n_dims %u is not 1..%u", (unsigned)t->n_dims, QN_GGUF_MAX_DIMS);
            return rd_corrupt(r, msg);
        }
        for (d = 0; d < QN_GGUF_MAX_DIMS; d++)
            t->dims[d] = 1;
        for (d = 0; d < t->n_dims; d++) {
            st = rd_uint(r, 8, &t->dims[d], "a dimension");
            if (st != QN_OK)
                return st;
        }
        st = rd_u32(r, &t->type, "the tensor type");
        if (st == QN_OK)
            st = rd_uint(r, 8, &t->offset, "the data offset");
        if (st != QN_OK)
            return st;
        for (d = 0; d < t->n_dims; d++) {
            if (t->dims[d] > (uint64_t)INT64_MAX || (t->dims[d] && nel > (uint64_t)INT64_MAX / t->dims[d])) {
                snprintf(msg, sizeof msg, "dimensions overflow (dim %u = %llu)", (unsigned)d,
                         (unsigned long long)t->dims[d]);
                return rd_corrupt(r, msg);
            }
            nel *= t->dims[d];
        }
        esz = qn_ggml_type_size(t->type);
        if (esz == 0)
            return qn_fail(f->ctx, QN_ERR_UNSUPPORTED,
                           "gguf: %s: %s: ggml type %u is not supported (F32, F16, I8, I16 or I32)", src_name(f),
                           r->where, (unsigned)t->type);
        if (nel > UINT64_MAX / esz || (nbytes = nel * esz) > (uint64_t)SIZE_MAX) {
            snprintf(msg, sizeof msg, "byte size of %llu elements overflows", (unsigned long long)nel);
            return rd_corrupt(r, msg);
        }
        t->n_elements = nel;
        t->nbytes = (size_t)nbytes;
        if (t->offset % f->alignment != 0) {
            snprintf(msg, sizeof msg, "data offset %llu is not a multiple of the alignment %u",
                     (unsigned long long)t->offset, (unsigned)f->alignment);
            return rd_corrupt(r, msg);
        }
    }
    r->where[0] = '\0';
    return QN_OK;
}

static qn_status check_tensor_data(qn_gguf_file *f, rd *r)
{
    char sb[SHOW_CAP], sb2[SHOW_CAP];
    uint64_t data_len;
    size_t i;
    if ((uint64_t)r->pos > UINT64_MAX - f->alignment)
        return rd_corrupt(r, "the data section offset overflows");
    f->data_start = align_up(r->pos, f->alignment);
    if (f->n_t == 0)
        return QN_OK;
    if (f->data_start > f->size)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                       "gguf: %s: truncated: the data section starts at byte %llu, past the end (file size %zu)",
                       src_name(f), (unsigned long long)f->data_start, f->size);
    data_len = f->size - f->data_start;
    for (i = 0; i < f->n_t; i++) {
        const r_tensor *t = &f->t[i];
        if (t->offset > data_len || t->nbytes > data_len - t->offset)
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                           "gguf: %s: tensor '%s': data at offset %llu + %zu bytes run past the end of the file "
                           "(data section of %llu bytes)",
                           src_name(f), show(sb, t->name, t->name_len), (unsigned long long)t->offset, t->nbytes,
                           (unsigned long long)data_len);
    }
    for (i = 0; i < f->n_t; i++)
        f->t_sorted[i] = &f->t[i];
    qsort(f->t_sorted, f->n_t, sizeof *f->t_sorted, cmp_tensor_offset);
    for (i = 1; i < f->n_t; i++) {
        const r_tensor *a = f->t_sorted[i - 1], *b = f->t_sorted[i];
        if (b->offset < a->offset + a->nbytes)
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                           "gguf: %s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", src_name(f),
                           show(sb, a->name, a->name_len), (unsigned long long)a->offset,
                           (unsigned long long)(a->offset + a->nbytes), show(sb2, b->name, b->name_len),
                           (unsigned long long)b->offset, (unsigned long long)(b->offset + b->nbytes));
    }
    qsort(f->t_sorted, f->n_t, sizeof *f->t_sorted, cmp_tensor_name);
    for (i = 1; i < f->n_t; i++)
        if (cmp_tensor_name(&f->t_sorted[i - 1], &f->t_sorted[i]) == 0)
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: duplicate tensor name '%s'", src_name(f),
                           show(sb, f->t_sorted[i]->name, f->t_sorted[i]->name_len));
    return QN_OK;
}

static qn_status parse(qn_gguf_file *f)
{
    rd r;
    uint64_t n_t = 0, n_kv = 0;
    qn_status st;
    memset(&r, 0, sizeof r);
    r.f = f;
    st = parse_header(f, &r, &n_t, &n_kv);
    if (st != QN_OK)
        return st;
    /* both counts are bounded by the file size, so they fit size_t and the allocations below */
    f->n_kv = (size_t)n_kv;
    f->n_t = (size_t)n_t;
    if (f->n_kv) {
        f->kv = (r_kv *)qn_calloc(f->ctx, f->n_kv, sizeof *f->kv);
        f->kv_sorted = (const r_kv **)qn_calloc(f->ctx, f->n_kv, sizeof *f->kv_sorted);
        if (!f->kv || !f->kv_sorted)
            return qn_fail(f->ctx, QN_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory for %zu metadata pairs",
                           src_name(f), f->n_kv);
    }
    if (f->n_t) {
        f->t = (r_tensor *)qn_calloc(f->ctx, f->n_t, sizeof *f->t);
        f->t_sorted = (const r_tensor **)qn_calloc(f->ctx, f->n_t, sizeof *f->t_sorted);
        if (!f->t || !f->t_sorted)
            return qn_fail(f->ctx, QN_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory for %zu tensors", src_name(f),
                           f->n_t);
    }
    st = parse_kvs(f, &r);
    if (st == QN_OK)
        st = parse_tensor_infos(f, &r);
    if (st == QN_OK)
        st = check_tensor_data(f, &r);
    return st;
}

static qn_status open_common(const qn_context *ctx, const char *path, const void *data, size_t size, int flags,
                             qn_gguf_file **out)
{
    qn_gguf_file *f;
    qn_status st;
    f = (qn_gguf_file *)qn_calloc(ctx, 1, sizeof *f);
    if (!f)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", path ? path : "memory");
    f->ctx = ctx;
    if (path) {
        size_t n = strlen(path);
        f->path = (char *)qn_malloc(ctx, n + 1);
        if (!f->path) {
            qn_free(ctx, f);
            return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "gguf: %s: out of memory", path);
        }
        memcpy(f->path, path, n + 1);
        st = qn_file_map(ctx, path, (flags & QN_GGUF_NO_MMAP) != 0, &f->map, "gguf");
        if (st != QN_OK) {
            qn_gguf_close(f);
            return st;
        }
        f->base = f->map.data;
        f->size = f->map.size;
    } else {
        f->base = (const unsigned char *)data;
        f->size = size;
    }
    st = parse(f);
    if (st == QN_OK && (flags & QN_GGUF_VERIFY))
        st = qn_gguf_verify(f, NULL);
    if (st != QN_OK) {
        qn_gguf_close(f);
        return st;
    }
    *out = f;
    return QN_OK;
}

qn_status qn_gguf_open(const qn_context *ctx, const char *path, int flags, qn_gguf_file **out)
{
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_open: out is NULL");
    *out = NULL;
    if (!ctx || !path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_open: ctx or path is NULL");
    if (flags & ~(QN_GGUF_NO_MMAP | QN_GGUF_VERIFY))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_open: unknown flags 0x%x", (unsigned)flags);
    return open_common(ctx, path, NULL, 0, flags, out);
}

qn_status qn_gguf_open_memory(const qn_context *ctx, const void *data, size_t size, qn_gguf_file **out)
{
    if (!out)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_open_memory: out is NULL");
    *out = NULL;
    if (!ctx || (!data && size))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_gguf_open_memory: ctx or data is NULL");
    return open_common(ctx, NULL, data, size, 0, out);
}

void qn_gguf_close(qn_gguf_file *f)
{
    const qn_context *ctx;
    if (!f)
        return;
    ctx = f->ctx;
    qn_file_unmap(ctx, &f->map);
    qn_free(ctx, f->kv);
    qn_free(ctx, (void *)f->kv_sorted);
    qn_free(ctx, f->t);
    qn_free(ctx, (void *)f->t_sorted);
    qn_free(ctx, f->path);
    qn_free(ctx, f);
}

uint32_t qn_gguf_version(const qn_gguf_file *f)
{
    return f ? f->version : 0;
}

uint32_t qn_gguf_alignment(const qn_gguf_file *f)
{
    return f ? f->alignment : 0;
}

uint64_t qn_gguf_data_offset(const qn_gguf_file *f)
{
    return f ? f->data_start : 0;
}

size_t qn_gguf_kv_count(const qn_gguf_file *f)
{
    return f ? f->n_kv : 0;
}

size_t qn_gguf_find_kv(const qn_gguf_file *f, const char *key)
{
    size_t lo = 0, hi, n;
    if (!f || !key)
        return QN_GGUF_NOT_FOUND;
    n = strlen(key);
    hi = f->n_kv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const r_kv *kv = f->kv_sorted[mid];
        int c = bytes_cmp(kv->key, kv->key_len, (const unsigned char *)key, n);
        if (c == 0)
            return (size_t)(kv - f->kv);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return QN_GGUF_NOT_FOUND;
}

static qn_status kv_at(const qn_gguf_file *f, size_t i, const char *fn, const r_kv **kv)
{
    if (!f)
        return QN_ERR_INVALID_ARG;
    if (i >= f->n_kv)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "%s: %s: pair index %zu out of range (%zu pairs)", fn,
                       src_name(f), i, f->n_kv);
    *kv = &f->kv[i];
    return QN_OK;
}

qn_status qn_gguf_kv_key(const qn_gguf_file *f, size_t i, const char **key, size_t *len)
{
    const r_kv *kv = NULL;
    qn_status st = kv_at(f, i, "qn_gguf_kv_key", &kv);
    if (st != QN_OK)
        return st;
    if (!key || !len)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_kv_key: NULL output");
    *key = (const char *)kv->key;
    *len = kv->key_len;
    return QN_OK;
}

qn_status qn_gguf_kv_type(const qn_gguf_file *f, size_t i, qn_gguf_type *type)
{
    const r_kv *kv = NULL;
    qn_status st = kv_at(f, i, "qn_gguf_kv_type", &kv);
    if (st != QN_OK)
        return st;
    if (!type)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_kv_type: NULL output");
    *type = (qn_gguf_type)kv->type;
    return QN_OK;
}

/* Pair i, checked to hold `type` (and, for arrays, elements of elem_type unless it is -1). */
static qn_status kv_typed(const qn_gguf_file *f, size_t i, uint32_t type, int elem_type, const char *fn,
                          const void *outp, const r_kv **kv)
{
    char sb[SHOW_CAP];
    qn_status st = kv_at(f, i, fn, kv);
    if (st != QN_OK)
        return st;
    if (!outp)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "%s: NULL output", fn);
    if ((*kv)->type != type)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: key '%s' holds a %s, not a %s", src_name(f),
                       show(sb, (*kv)->key, (*kv)->key_len), qn_gguf_type_name((*kv)->type),
                       qn_gguf_type_name(type));
    if (type == QN_GGUF_ARRAY && elem_type >= 0 && (*kv)->elem_type != (uint32_t)elem_type)
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: key '%s' is an array of %s, not of %s", src_name(f),
                       show(sb, (*kv)->key, (*kv)->key_len), qn_gguf_type_name((*kv)->elem_type),
                       qn_gguf_type_name((uint32_t)elem_type));
    return QN_OK;
}

#define QN_GGUF_GETTER(NAME, CTYPE, TYPE)                                                                        \
    qn_status qn_gguf_get_##NAME(const qn_gguf_file *f, size_t i, CTYPE *out)                                    \
    {                                                                                                            \
        const r_kv *kv = NULL;                                                                                   \
        CTYPE v;                                                                                                 \
        qn_status st = kv_typed(f, i, TYPE, -1, "qn_gguf_get_" #NAME, out, &kv);                                 \
        if (st != QN_OK)                                                                                         \
            return st;                                                                                           \
        from_bits(&v, get_le(kv->val, sizeof(CTYPE)), sizeof(CTYPE));                                            \
        *out = v;                                                                                                \
        return QN_OK;                                                                                            \
    }

QN_GGUF_GETTER(u8, uint8_t, QN_GGUF_U8)
QN_GGUF_GETTER(i8, int8_t, QN_GGUF_I8)
QN_GGUF_GETTER(u16, uint16_t, QN_GGUF_U16)
QN_GGUF_GETTER(i16, int16_t, QN_GGUF_I16)
QN_GGUF_GETTER(u32, uint32_t, QN_GGUF_U32)
QN_GGUF_GETTER(i32, int32_t, QN_GGUF_I32)
QN_GGUF_GETTER(u64, uint64_t, QN_GGUF_U64)
QN_GGUF_GETTER(i64, int64_t, QN_GGUF_I64)
QN_GGUF_GETTER(f32, float, QN_GGUF_F32)
QN_GGUF_GETTER(f64, double, QN_GGUF_F64)

qn_status qn_gguf_get_bool(const qn_gguf_file *f, size_t i, int *out)
{
    const r_kv *kv = NULL;
    qn_status st = kv_typed(f, i, QN_GGUF_BOOL, -1, "qn_gguf_get_bool", out, &kv);
    if (st != QN_OK)
        return st;
    *out = kv->val[0] != 0;
    return QN_OK;
}

qn_status qn_gguf_get_uint(const qn_gguf_file *f, size_t i, uint64_t *out)
{
    char sb[SHOW_CAP];
    const r_kv *kv = NULL;
    size_t n;
    uint64_t v;
    int is_signed;
    qn_status st = kv_at(f, i, "qn_gguf_get_uint", &kv);
    if (st != QN_OK)
        return st;
    if (!out)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_get_uint: NULL output");
    switch (kv->type) {
    case QN_GGUF_U8:
    case QN_GGUF_U16:
    case QN_GGUF_U32:
    case QN_GGUF_U64:
        is_signed = 0;
        break;
    case QN_GGUF_I8:
    case QN_GGUF_I16:
    case QN_GGUF_I32:
    case QN_GGUF_I64:
        is_signed = 1;
        break;
    default:
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: key '%s' holds a %s, not an integer", src_name(f),
                       show(sb, kv->key, kv->key_len), qn_gguf_type_name(kv->type));
    }
    n = kv->val_len;
    v = get_le(kv->val, n);
    if (is_signed && (kv->val[n - 1] & 0x80u))
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: key '%s' is negative", src_name(f),
                       show(sb, kv->key, kv->key_len));
    *out = v;
    return QN_OK;
}

qn_status qn_gguf_get_string(const qn_gguf_file *f, size_t i, const char **s, size_t *len)
{
    const r_kv *kv = NULL;
    qn_status st = kv_typed(f, i, QN_GGUF_STRING, -1, "qn_gguf_get_string", s, &kv);
    if (st != QN_OK)
        return st;
    if (!len)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_get_string: NULL output");
    *s = (const char *)kv->val;
    *len = kv->val_len;
    return QN_OK;
}

qn_status qn_gguf_get_array(const qn_gguf_file *f, size_t i, qn_gguf_type *elem_type, uint64_t *count,
                            const void **raw)
{
    const r_kv *kv = NULL;
    qn_status st = kv_typed(f, i, QN_GGUF_ARRAY, -1, "qn_gguf_get_array", count, &kv);
    if (st != QN_OK)
        return st;
    if (elem_type)
        *elem_type = (qn_gguf_type)kv->elem_type;
    *count = kv->count;
    if (raw)
        *raw = kv->elem_type == QN_GGUF_STRING ? NULL : (const void *)kv->val;
    return QN_OK;
}

qn_status qn_gguf_get_array_copy(const qn_gguf_file *f, size_t i, qn_gguf_type elem_type, void *out, size_t count)
{
    char sb[SHOW_CAP];
    const r_kv *kv = NULL;
    unsigned char *dst = (unsigned char *)out;
    size_t esz = kv_scalar_size((uint32_t)elem_type), k;
    qn_status st;
    if (f && esz == 0)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_get_array_copy: %s is not a numeric type",
                       qn_gguf_type_name((uint32_t)elem_type));
    st = kv_typed(f, i, QN_GGUF_ARRAY, (int)elem_type, "qn_gguf_get_array_copy", count ? out : f, &kv);
    if (st != QN_OK)
        return st;
    if (count != kv->count)
        return qn_fail(f->ctx, count < kv->count ? QN_ERR_BUFFER_TOO_SMALL : QN_ERR_INVALID_ARG,
                       "qn_gguf_get_array_copy: %s: key '%s' has %llu elements, not %zu", src_name(f),
                       show(sb, kv->key, kv->key_len), (unsigned long long)kv->count, count);
    for (k = 0; k < count; k++)
        from_bits(dst + k * esz, get_le(kv->val + k * esz, esz), esz);
    return QN_OK;
}

qn_status qn_gguf_array_strings(const qn_gguf_file *f, size_t i, qn_gguf_str_iter *it)
{
    const r_kv *kv = NULL;
    qn_status st = kv_typed(f, i, QN_GGUF_ARRAY, QN_GGUF_STRING, "qn_gguf_array_strings", it, &kv);
    if (st != QN_OK)
        return st;
    it->p = kv->val;
    it->left = kv->count;
    return QN_OK;
}

int qn_gguf_str_next(qn_gguf_str_iter *it, const char **s, size_t *len)
{
    uint64_t n;
    if (!it || !it->left)
        return 0;
    n = get_le(it->p, 8); /* bounded when the file was opened */
    if (s)
        *s = (const char *)(it->p + 8);
    if (len)
        *len = (size_t)n;
    it->p += 8 + (size_t)n;
    it->left--;
    return 1;
}

qn_status qn_gguf_get_array_string(const qn_gguf_file *f, size_t i, uint64_t j, const char **s, size_t *len)
{
    char sb[SHOW_CAP];
    qn_gguf_str_iter it;
    const char *p = NULL;
    size_t n = 0;
    uint64_t k;
    qn_status st = qn_gguf_array_strings(f, i, &it);
    if (st != QN_OK)
        return st;
    if (!s || !len)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_get_array_string: NULL output");
    if (j >= it.left)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_get_array_string: %s: key '%s' has %llu strings, no #%llu",
                       src_name(f), show(sb, f->kv[i].key, f->kv[i].key_len), (unsigned long long)it.left,
                       (unsigned long long)j);
    for (k = 0; k <= j; k++)
        qn_gguf_str_next(&it, &p, &n);
    *s = p;
    *len = n;
    return QN_OK;
}

size_t qn_gguf_tensor_count(const qn_gguf_file *f)
{
    return f ? f->n_t : 0;
}

size_t qn_gguf_find_tensor(const qn_gguf_file *f, const char *name)
{
    size_t lo = 0, hi, n;
    if (!f || !name)
        return QN_GGUF_NOT_FOUND;
    n = strlen(name);
    hi = f->n_t;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const r_tensor *t = f->t_sorted[mid];
        int c = bytes_cmp(t->name, t->name_len, (const unsigned char *)name, n);
        if (c == 0)
            return (size_t)(t - f->t);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return QN_GGUF_NOT_FOUND;
}

qn_status qn_gguf_tensor_info(const qn_gguf_file *f, size_t i, qn_gguf_tensor *info)
{
    const r_tensor *t;
    if (!f)
        return QN_ERR_INVALID_ARG;
    if (i >= f->n_t || !info)
        return qn_fail(f->ctx, QN_ERR_INVALID_ARG, "qn_gguf_tensor_info: %s: bad index %zu (%zu tensors) or NULL "
                       "output", src_name(f), i, f->n_t);
    t = &f->t[i];
    info->name = (const char *)t->name;
    info->name_len = t->name_len;
    info->type = t->type;
    info->n_dims = t->n_dims;
    memcpy(info->dims, t->dims, sizeof info->dims);
    info->n_elements = t->n_elements;
    info->offset = t->offset;
    info->data = f->base + (size_t)f->data_start + (size_t)t->offset;
    info->nbytes = t->nbytes;
    return QN_OK;
}

int qn_gguf_has_checksums(const qn_gguf_file *f)
{
    return qn_gguf_find_kv(f, QN_GGUF_KEY_CRC32C) != QN_GGUF_NOT_FOUND;
}

qn_status qn_gguf_verify(const qn_gguf_file *f, size_t *bad_index)
{
    char sb[SHOW_CAP];
    const r_kv *kv = NULL;
    size_t i, idx;
    if (!f)
        return QN_ERR_INVALID_ARG;
    idx = qn_gguf_find_kv(f, QN_GGUF_KEY_CRC32C);
    if (idx == QN_GGUF_NOT_FOUND)
        return QN_OK;
    kv = &f->kv[idx];
    if (kv->type != QN_GGUF_ARRAY || kv->elem_type != QN_GGUF_U32 || kv->count != f->n_t) {
        if (bad_index)
            *bad_index = QN_GGUF_NOT_FOUND;
        if (kv->type != QN_GGUF_ARRAY || kv->elem_type != QN_GGUF_U32)
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: %s is not an ARRAY of U32", src_name(f),
                           QN_GGUF_KEY_CRC32C);
        return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA, "gguf: %s: %s has %llu entries for %zu tensors", src_name(f),
                       QN_GGUF_KEY_CRC32C, (unsigned long long)kv->count, f->n_t);
    }
    for (i = 0; i < f->n_t; i++) {
        const r_tensor *t = &f->t[i];
        uint32_t want = (uint32_t)get_le(kv->val + 4 * i, 4);
        uint32_t got = qn_crc32c(0, f->base + (size_t)f->data_start + (size_t)t->offset, t->nbytes);
        if (got != want) {
            if (bad_index)
                *bad_index = i;
            return qn_fail(f->ctx, QN_ERR_CORRUPT_DATA,
                           "gguf: %s: tensor '%s' fails its CRC32C check (stored %08x, computed %08x)", src_name(f),
                           show(sb, t->name, t->name_len), (unsigned)want, (unsigned)got);
        }
    }
    return QN_OK;
}
