/*
 * libqnoise: named-tensor models and their GGUF and safetensors files.
 * SPDX-License-Identifier: MIT
 *
 * The on-disk layout is specified in docs/format.md; in short, for model
 * tensor i with GGUF base name B (its name when short enough, else "qnoise.i"):
 *
 *   metadata  qnoise.format_version = 1, qnoise.tensor_count,
 *             qnoise.t.<i>.{name, kind, shape, gguf_name, ...parameters}
 *   dense     B            F32 [reversed shape]
 *   pq        B.codes      I8 [row bytes, rows] (4- or 8-bit codes) or I16 [blocks per row, rows]
 *             B.codebook   F32/F16/I8 [block_size, K]
 *   scalar    B.q          I8 [row bytes, rows]; B.scale F32 [nch]; B.zero I32 [nch]
 *
 * Loading copies everything out of the file, so the model does not keep it open.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "format/half.h"
#include "format/model_internal.h"
#include "format/qtensor_internal.h"
#include "format/safetensors.h"
#include "qn_config.h"

#if defined(QN_HAVE_SAFETENSORS) && QN_HAVE_SAFETENSORS
#include <jansson.h>
#define QN_MODEL_JSON 1
#else
#define QN_MODEL_JSON 0
#endif

#define QN_MODEL_FORMAT_VERSION 1u
#define QN_MODEL_MAX_NAME 4096u

typedef struct qn_model_entry {
    char *name;
    size_t ndim;
    size_t shape[QN_QTENSOR_MAX_DIMS];
    float *dense;    /* dense tensors: numel floats */
    size_t numel;
    qn_qtensor *qt;  /* compressed tensors */
} qn_model_entry;

struct qn_model {
    qn_context *ctx;
    qn_model_entry *e;
    size_t n, cap;
};

/* ---------------------------------------------------------------------------------------------- */
/* the container                                                                                  */

QN_API qn_status qn_model_create(qn_context *ctx, qn_model **out)
{
    qn_model *m;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    m = (qn_model *)qn_calloc(ctx, 1, sizeof *m);
    if (!m) {
        *out = NULL;
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_model_create: out of memory");
    }
    m->ctx = ctx;
    *out = m;
    return QN_OK;
}

QN_API void qn_model_destroy(qn_model *model)
{
    size_t i;
    if (!model)
        return;
    for (i = 0; i < model->n; i++) {
        qn_free(model->ctx, model->e[i].name);
        qn_free(model->ctx, model->e[i].dense);
        qn_qtensor_destroy(model->e[i].qt);
    }
    qn_free(model->ctx, model->e);
    qn_free(model->ctx, model);
}

static size_t qn_model_lookup(const qn_model *m, const char *name, size_t len)
{
    size_t i;
    for (i = 0; i < m->n; i++)
        if (strlen(m->e[i].name) == len && memcmp(m->e[i].name, name, len) == 0)
            return i;
    return (size_t)-1;
}

/* Validate a new name and make room for one more entry; returns a copy of the name. */
static qn_status qn_model_prepare(qn_model *m, const char *name, size_t len, char **copy, const char *fn)
{
    char *c;
    if (!name || len == 0)
        return qn_fail(m->ctx, QN_ERR_INVALID_ARG, "%s: empty tensor name", fn);
    if (len > QN_MODEL_MAX_NAME)
        return qn_fail(m->ctx, QN_ERR_INVALID_ARG, "%s: a tensor name of %zu bytes (at most %u)", fn, len,
                       QN_MODEL_MAX_NAME);
    if (memchr(name, '\0', len))
        return qn_fail(m->ctx, QN_ERR_INVALID_ARG, "%s: a tensor name with a NUL byte", fn);
    if (qn_model_lookup(m, name, len) != (size_t)-1)
        return qn_fail(m->ctx, QN_ERR_INVALID_ARG, "%s: duplicate tensor name \"%.*s\"", fn, (int)len, name);
    if (m->n == m->cap) {
        size_t nc = m->cap ? m->cap * 2 : 16;
        qn_model_entry *ne = (qn_model_entry *)qn_malloc(m->ctx, nc * sizeof *ne);
        if (!ne)
            return qn_fail(m->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (m->n)
            memcpy(ne, m->e, m->n * sizeof *ne);
        qn_free(m->ctx, m->e);
        m->e = ne;
        m->cap = nc;
    }
    c = (char *)qn_malloc(m->ctx, len + 1);
    if (!c)
        return qn_fail(m->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    memcpy(c, name, len);
    c[len] = '\0';
    *copy = c;
    return QN_OK;
}

/* Add a dense tensor taking ownership of data (numel floats). */
static qn_status qn_model_push_dense(qn_model *m, const char *name, size_t len, size_t ndim, const size_t *shape,
                                     float *data, size_t numel, const char *fn)
{
    char *c = NULL;
    qn_model_entry *e;
    size_t i;
    qn_status st = qn_model_prepare(m, name, len, &c, fn);
    if (st != QN_OK)
        return st;
    e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    e->name = c;
    e->ndim = ndim;
    for (i = 0; i < ndim; i++)
        e->shape[i] = shape[i];
    e->dense = data;
    e->numel = numel;
    return QN_OK;
}

static qn_status qn_shape_numel(const qn_context *ctx, size_t ndim, const size_t *shape, size_t *numel, const char *fn)
{
    size_t i, n = 1;
    if (ndim > QN_QTENSOR_MAX_DIMS)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: %zu dimensions (at most %d)", fn, ndim, QN_QTENSOR_MAX_DIMS);
    if (ndim && !shape)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: shape is NULL", fn);
    for (i = 0; i < ndim; i++)
        if (qn_mul_overflow(n, shape[i], &n))
            return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: the shape overflows size_t", fn);
    if (qn_mul_overflow(n, sizeof(float), &i))
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: the shape overflows size_t", fn);
    *numel = n;
    return QN_OK;
}

QN_API qn_status qn_model_add_dense(qn_model *model, const char *name, size_t ndim, const size_t *shape,
                                    const float *data)
{
    static const char fn[] = "qn_model_add_dense";
    size_t numel = 0;
    float *copy;
    qn_status st;
    if (!model)
        return QN_ERR_INVALID_ARG;
    if (!name)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: name is NULL", fn);
    st = qn_shape_numel(model->ctx, ndim, shape, &numel, fn);
    if (st != QN_OK)
        return st;
    if (!data && numel)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: data is NULL", fn);
    copy = (float *)qn_malloc(model->ctx, numel ? numel * sizeof(float) : 1);
    if (!copy)
        return qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (numel)
        memcpy(copy, data, numel * sizeof(float));
    st = qn_model_push_dense(model, name, strlen(name), ndim, shape, copy, numel, fn);
    if (st != QN_OK)
        qn_free(model->ctx, copy);
    return st;
}

static qn_status qn_model_push_qt(qn_model *m, const char *name, size_t len, qn_qtensor *qt, const char *fn)
{
    char *c = NULL;
    qn_model_entry *e;
    size_t i;
    qn_status st = qn_model_prepare(m, name, len, &c, fn);
    if (st != QN_OK)
        return st;
    e = &m->e[m->n++];
    memset(e, 0, sizeof *e);
    e->name = c;
    e->ndim = qt->ndim;
    for (i = 0; i < qt->ndim; i++)
        e->shape[i] = qt->shape[i];
    e->qt = qt;
    e->numel = qt->rows * qt->cols;
    return QN_OK;
}

QN_API qn_status qn_model_add_qtensor(qn_model *model, const char *name, qn_qtensor *qt)
{
    static const char fn[] = "qn_model_add_qtensor";
    if (!model)
        return QN_ERR_INVALID_ARG;
    if (!name || !qt)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: name and qt must not be NULL", fn);
    return qn_model_push_qt(model, name, strlen(name), qt, fn);
}

QN_API qn_status qn_model_count(const qn_model *model, size_t *count)
{
    if (!model || !count)
        return QN_ERR_INVALID_ARG;
    *count = model->n;
    return QN_OK;
}

QN_API qn_status qn_model_find(const qn_model *model, const char *name, size_t *index)
{
    size_t i;
    if (!model || !name || !index)
        return QN_ERR_INVALID_ARG;
    i = qn_model_lookup(model, name, strlen(name));
    if (i == (size_t)-1)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "qn_model_find: no tensor named \"%s\"", name);
    *index = i;
    return QN_OK;
}

static qn_status qn_model_entry_at(const qn_model *m, size_t index, const char *fn)
{
    if (index >= m->n)
        return qn_fail(m->ctx, QN_ERR_INVALID_ARG, "%s: index %zu of %zu tensors", fn, index, m->n);
    return QN_OK;
}

QN_API qn_status qn_model_get_name(const qn_model *model, size_t index, const char **name)
{
    qn_status st;
    if (!model || !name)
        return QN_ERR_INVALID_ARG;
    st = qn_model_entry_at(model, index, "qn_model_get_name");
    if (st != QN_OK)
        return st;
    *name = model->e[index].name;
    return QN_OK;
}

QN_API qn_status qn_model_get_info(const qn_model *model, size_t index, int *compressed, size_t *ndim, size_t *shape)
{
    const qn_model_entry *e;
    size_t i;
    qn_status st;
    if (!model)
        return QN_ERR_INVALID_ARG;
    st = qn_model_entry_at(model, index, "qn_model_get_info");
    if (st != QN_OK)
        return st;
    e = &model->e[index];
    if (compressed)
        *compressed = e->qt != NULL;
    if (ndim)
        *ndim = e->ndim;
    if (shape)
        for (i = 0; i < e->ndim; i++)
            shape[i] = e->shape[i];
    return QN_OK;
}

QN_API qn_status qn_model_get_dense(const qn_model *model, size_t index, float *out, size_t count)
{
    static const char fn[] = "qn_model_get_dense";
    const qn_model_entry *e;
    qn_status st;
    if (!model)
        return QN_ERR_INVALID_ARG;
    st = qn_model_entry_at(model, index, fn);
    if (st != QN_OK)
        return st;
    e = &model->e[index];
    if (!out && e->numel)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: out is NULL", fn);
    if (count < e->numel)
        return qn_fail(model->ctx, QN_ERR_BUFFER_TOO_SMALL, "%s: \"%s\" has %zu values, room for %zu", fn, e->name,
                       e->numel, count);
    if (e->qt)
        return qn_qtensor_decode(e->qt, out);
    if (e->numel)
        memcpy(out, e->dense, e->numel * sizeof(float));
    return QN_OK;
}

QN_API qn_status qn_model_get_qtensor(const qn_model *model, size_t index, const qn_qtensor **qt)
{
    static const char fn[] = "qn_model_get_qtensor";
    qn_status st;
    if (!model || !qt)
        return QN_ERR_INVALID_ARG;
    st = qn_model_entry_at(model, index, fn);
    if (st != QN_OK)
        return st;
    if (!model->e[index].qt)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: \"%s\" is dense", fn, model->e[index].name);
    *qt = model->e[index].qt;
    return QN_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* component buffers shared by both file formats                                                  */

/* The packed codes (rows x row bytes), and the codebook in its stored precision. */
typedef struct qn_parts {
    uint8_t *codes;
    size_t codes_bytes;
    void *cb;          /* PQ codebook: float, uint16 (f16 bits) or int8 */
    size_t cb_bytes;
} qn_parts;

static void qn_parts_free(const qn_context *ctx, qn_parts *p)
{
    qn_free(ctx, p->codes);
    qn_free(ctx, p->cb);
    memset(p, 0, sizeof *p);
}

static qn_status qn_parts_make(const qn_qtensor *qt, qn_parts *p, const char *fn)
{
    size_t rb = qn_qtensor_row_code_bytes(qt), r, i, n;
    memset(p, 0, sizeof *p);
    p->codes_bytes = qt->rows * rb;
    p->codes = (uint8_t *)qn_malloc(qt->ctx, p->codes_bytes ? p->codes_bytes : 1);
    if (!p->codes)
        return qn_fail(qt->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (r = 0; r < qt->rows; r++)
        qn_qtensor_pack_row(qt, r, p->codes + r * rb);
    if (qt->kind != QN_QTENSOR_PQ)
        return QN_OK;
    n = qt->k * qt->bs;
    p->cb_bytes = n * (qt->prec == QN_CODEBOOK_FP32 ? 4 : qt->prec == QN_CODEBOOK_FP16 ? 2 : 1);
    p->cb = qn_malloc(qt->ctx, p->cb_bytes);
    if (!p->cb) {
        qn_parts_free(qt->ctx, p);
        return qn_fail(qt->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    for (i = 0; i < n; i++) {
        if (qt->prec == QN_CODEBOOK_FP32)
            ((float *)p->cb)[i] = qt->c[i];
        else if (qt->prec == QN_CODEBOOK_FP16)
            ((uint16_t *)p->cb)[i] = qn_f32_to_f16(qt->c[i]);
        else
            ((int8_t *)p->cb)[i] = qn_qtensor_cb_int8(qt, i);
    }
    return QN_OK;
}

static const char *qn_prec_name(qn_codebook_precision p)
{
    return p == QN_CODEBOOK_FP32 ? "f32" : p == QN_CODEBOOK_FP16 ? "f16" : "i8";
}

static int qn_prec_parse(const char *s, size_t len, qn_codebook_precision *p)
{
    if (len == 3 && memcmp(s, "f32", 3) == 0)
        *p = QN_CODEBOOK_FP32;
    else if (len == 3 && memcmp(s, "f16", 3) == 0)
        *p = QN_CODEBOOK_FP16;
    else if (len == 2 && memcmp(s, "i8", 2) == 0)
        *p = QN_CODEBOOK_INT8;
    else
        return 0;
    return 1;
}

static const char *qn_scheme_name(qn_qscheme s)
{
    return s == QN_QSCHEME_SYMMETRIC ? "symmetric" : "affine";
}

static int qn_scheme_parse(const char *s, size_t len, qn_qscheme *out)
{
    if (len == 6 && memcmp(s, "affine", 6) == 0)
        *out = QN_QSCHEME_AFFINE;
    else if (len == 9 && memcmp(s, "symmetric", 9) == 0)
        *out = QN_QSCHEME_SYMMETRIC;
    else
        return 0;
    return 1;
}

/* Rebuild the codebook values from stored bytes; returns 0 or 1 when a value is not finite. */
static int qn_codebook_load(qn_qtensor *qt, const unsigned char *src)
{
    size_t i, n = qt->k * qt->bs;
    for (i = 0; i < n; i++) {
        float v;
        if (qt->prec == QN_CODEBOOK_FP32) {
            memcpy(&v, src + 4 * i, 4);
        } else if (qt->prec == QN_CODEBOOK_FP16) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            v = qn_f16_to_f32(h);
        } else {
            int8_t q = (int8_t)src[i];
            if (qt->cb_scheme == QN_QSCHEME_SYMMETRIC && q < -127)
                return 1;
            v = (float)((int32_t)q - qt->cb_zero) * qt->cb_scale;
        }
        if (!isfinite(v))
            return 1;
        qt->c[i] = v;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* GGUF                                                                                           */

/* GGUF base name of entry i: its name when `suffix_room` more bytes fit in 64, else "qnoise.<i>". */
static void qn_gguf_base(const qn_model_entry *e, size_t i, size_t suffix_room, char *out, size_t cap)
{
    if (strlen(e->name) + suffix_room < QN_GGUF_MAX_NAME) /* ggml readers want < 64 */
        snprintf(out, cap, "%s", e->name);
    else
        snprintf(out, cap, "qnoise.%zu", i);
}

#define QN_KEY(buf, i, field) snprintf(buf, sizeof buf, "qnoise.t.%zu.%s", (size_t)(i), field)

QN_API qn_status qn_model_save_gguf(const qn_model *model, const char *path)
{
    static const char fn[] = "qn_model_save_gguf";
    qn_gguf_writer *w = NULL;
    qn_parts *parts = NULL;
    size_t i, j;
    qn_status st;
    if (!model)
        return QN_ERR_INVALID_ARG;
    if (!path)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: path is NULL", fn);
    st = qn_gguf_writer_create(model->ctx, &w);
    if (st != QN_OK)
        return st;
    parts = (qn_parts *)qn_calloc(model->ctx, model->n ? model->n : 1, sizeof *parts);
    if (!parts) {
        qn_gguf_writer_destroy(w);
        return qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    st = qn_gguf_add_string(w, "general.architecture", "qnoise");
    if (st == QN_OK)
        st = qn_gguf_add_u32(w, "qnoise.format_version", QN_MODEL_FORMAT_VERSION);
    if (st == QN_OK)
        st = qn_gguf_add_u64(w, "qnoise.tensor_count", (uint64_t)model->n);
    for (i = 0; i < model->n && st == QN_OK; i++) {
        const qn_model_entry *e = &model->e[i];
        char key[96], base[80], tname[96];
        uint64_t shp[QN_QTENSOR_MAX_DIMS], dims[2];
        for (j = 0; j < e->ndim; j++)
            shp[j] = (uint64_t)e->shape[j];
        QN_KEY(key, i, "name");
        st = qn_gguf_add_string(w, key, e->name);
        QN_KEY(key, i, "shape");
        if (st == QN_OK)
            st = qn_gguf_add_array(w, key, QN_GGUF_U64, shp, e->ndim);
        if (!e->qt) {
            uint64_t gd[QN_QTENSOR_MAX_DIMS];
            qn_gguf_base(e, i, 0, base, sizeof base);
            QN_KEY(key, i, "kind");
            if (st == QN_OK)
                st = qn_gguf_add_string(w, key, "dense");
            QN_KEY(key, i, "gguf_name");
            if (st == QN_OK)
                st = qn_gguf_add_string(w, key, base);
            for (j = 0; j < e->ndim; j++)
                gd[j] = (uint64_t)e->shape[e->ndim - 1 - j];
            if (e->ndim == 0)
                gd[0] = 1;
            if (st == QN_OK)
                st = qn_gguf_add_tensor(w, base, QN_GGML_F32, e->ndim ? (uint32_t)e->ndim : 1u, gd, e->dense,
                                        e->numel * sizeof(float));
            continue;
        }
        {
            const qn_qtensor *qt = e->qt;
            size_t rb = qn_qtensor_row_code_bytes(qt);
            qn_gguf_base(e, i, 9, base, sizeof base);
            if (st == QN_OK)
                st = qn_parts_make(qt, &parts[i], fn);
            QN_KEY(key, i, "kind");
            if (st == QN_OK)
                st = qn_gguf_add_string(w, key, qt->kind == QN_QTENSOR_PQ ? "pq" : "scalar");
            QN_KEY(key, i, "gguf_name");
            if (st == QN_OK)
                st = qn_gguf_add_string(w, key, base);
            QN_KEY(key, i, "rows");
            if (st == QN_OK)
                st = qn_gguf_add_u64(w, key, (uint64_t)qt->rows);
            QN_KEY(key, i, "cols");
            if (st == QN_OK)
                st = qn_gguf_add_u64(w, key, (uint64_t)qt->cols);
            QN_KEY(key, i, "code_bits");
            if (st == QN_OK)
                st = qn_gguf_add_u32(w, key, qt->code_bits);
            snprintf(tname, sizeof tname, "%s.%s", base, qt->kind == QN_QTENSOR_PQ ? "codes" : "q");
            if (qt->code_bits == 16) {
                dims[0] = (uint64_t)(qt->cols / qt->bs);
                dims[1] = (uint64_t)qt->rows;
                if (st == QN_OK)
                    st = qn_gguf_add_tensor(w, tname, QN_GGML_I16, 2, dims, parts[i].codes, parts[i].codes_bytes);
            } else {
                dims[0] = (uint64_t)rb;
                dims[1] = (uint64_t)qt->rows;
                if (st == QN_OK)
                    st = qn_gguf_add_tensor(w, tname, QN_GGML_I8, 2, dims, parts[i].codes, parts[i].codes_bytes);
            }
            if (qt->kind == QN_QTENSOR_PQ) {
                QN_KEY(key, i, "block_size");
                if (st == QN_OK)
                    st = qn_gguf_add_u32(w, key, (uint32_t)qt->bs);
                QN_KEY(key, i, "n_centroids");
                if (st == QN_OK)
                    st = qn_gguf_add_u32(w, key, (uint32_t)qt->k);
                QN_KEY(key, i, "codebook");
                if (st == QN_OK)
                    st = qn_gguf_add_string(w, key, qn_prec_name(qt->prec));
                if (qt->prec == QN_CODEBOOK_INT8) {
                    QN_KEY(key, i, "codebook_scale");
                    if (st == QN_OK)
                        st = qn_gguf_add_f32(w, key, qt->cb_scale);
                    QN_KEY(key, i, "codebook_zero_point");
                    if (st == QN_OK)
                        st = qn_gguf_add_i32(w, key, qt->cb_zero);
                    QN_KEY(key, i, "codebook_scheme");
                    if (st == QN_OK)
                        st = qn_gguf_add_string(w, key, qn_scheme_name(qt->cb_scheme));
                }
                snprintf(tname, sizeof tname, "%s.codebook", base);
                dims[0] = (uint64_t)qt->bs;
                dims[1] = (uint64_t)qt->k;
                if (st == QN_OK)
                    st = qn_gguf_add_tensor(w, tname,
                                            qt->prec == QN_CODEBOOK_FP32   ? QN_GGML_F32
                                            : qt->prec == QN_CODEBOOK_FP16 ? QN_GGML_F16
                                                                           : QN_GGML_I8,
                                            2, dims, parts[i].cb, parts[i].cb_bytes);
            } else {
                QN_KEY(key, i, "bits");
                if (st == QN_OK)
                    st = qn_gguf_add_u32(w, key, qt->bits);
                QN_KEY(key, i, "scheme");
                if (st == QN_OK)
                    st = qn_gguf_add_string(w, key, qn_scheme_name(qt->scheme));
                QN_KEY(key, i, "per_channel");
                if (st == QN_OK)
                    st = qn_gguf_add_bool(w, key, qt->per_channel);
                dims[0] = (uint64_t)qt->nch;
                snprintf(tname, sizeof tname, "%s.scale", base);
                if (st == QN_OK)
                    st = qn_gguf_add_tensor(w, tname, QN_GGML_F32, 1, dims, qt->scale, qt->nch * sizeof(float));
                snprintf(tname, sizeof tname, "%s.zero", base);
                if (st == QN_OK)
                    st = qn_gguf_add_tensor(w, tname, QN_GGML_I32, 1, dims, qt->zero, qt->nch * sizeof(int32_t));
            }
        }
    }
    if (st == QN_OK)
        st = qn_gguf_write_file(w, path);
    for (i = 0; i < model->n; i++)
        qn_parts_free(model->ctx, &parts[i]);
    qn_free(model->ctx, parts);
    qn_gguf_writer_destroy(w);
    return st;
}

/* Loader helpers: find a key of tensor i and read it with a typed getter. */
typedef struct qn_gl {
    const qn_context *ctx;
    const qn_gguf_file *f;
    const char *path;
    size_t i;
} qn_gl;

static qn_status qn_gl_kv(const qn_gl *g, const char *field, size_t *kv)
{
    char key[96];
    QN_KEY(key, g->i, field);
    *kv = qn_gguf_find_kv(g->f, key);
    if (*kv == QN_GGUF_NOT_FOUND)
        return qn_fail(g->ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_gguf: %s: missing key %s", g->path, key);
    return QN_OK;
}

static qn_status qn_gl_uint(const qn_gl *g, const char *field, uint64_t *v)
{
    size_t kv;
    qn_status st = qn_gl_kv(g, field, &kv);
    if (st == QN_OK)
        st = qn_gguf_get_uint(g->f, kv, v);
    return st == QN_ERR_INVALID_ARG ? QN_ERR_CORRUPT_DATA : st;
}

static qn_status qn_gl_string(const qn_gl *g, const char *field, const char **s, size_t *len)
{
    size_t kv;
    qn_status st = qn_gl_kv(g, field, &kv);
    if (st == QN_OK)
        st = qn_gguf_get_string(g->f, kv, s, len);
    return st;
}

#define QN_GL_ANY_TYPE UINT32_MAX

/* The GGUF tensor `base.suffix` (suffix may be ""), checked for type (unless QN_GL_ANY_TYPE) and dims (GGUF order). */
static qn_status qn_gl_tensor(const qn_gl *g, const char *base, size_t base_len, const char *suffix, uint32_t type,
                              uint32_t n_dims, const uint64_t *dims, qn_gguf_tensor *t)
{
    char name[96];
    size_t idx;
    uint32_t d;
    if (base_len > QN_GGUF_MAX_NAME)
        return qn_fail(g->ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_gguf: %s: tensor #%zu has a gguf_name of %zu bytes",
                       g->path, g->i, base_len);
    snprintf(name, sizeof name, "%.*s%s%s", (int)base_len, base, *suffix ? "." : "", suffix);
    idx = qn_gguf_find_tensor(g->f, name);
    if (idx == QN_GGUF_NOT_FOUND)
        return qn_fail(g->ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_gguf: %s: missing tensor %s", g->path, name);
    qn_gguf_tensor_info(g->f, idx, t);
    if ((type != QN_GL_ANY_TYPE && t->type != type) || t->n_dims != n_dims)
        return qn_fail(g->ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_gguf: %s: tensor %s has type %s and %u dims, expected %s and %u",
                       g->path, name, qn_ggml_type_name(t->type), t->n_dims, qn_ggml_type_name(type), n_dims);
    for (d = 0; d < n_dims; d++)
        if (t->dims[d] != dims[d])
            return qn_fail(g->ctx, QN_ERR_CORRUPT_DATA,
                           "qn_model_load_gguf: %s: tensor %s has dims[%u] = %llu, expected %llu", g->path, name, d,
                           (unsigned long long)t->dims[d], (unsigned long long)dims[d]);
    return QN_OK;
}

/* Storage width of a PQ code with K centroids (as qn_qtensor keeps it). */
static unsigned qn_code_bits_pq(uint64_t k)
{
    return k <= 16 ? 4u : k <= 256 ? 8u : 16u;
}

/* Bytes of one row of per_row packed codes of code_bits (4, 8 or 16), without overflow. */
static uint64_t qn_row_bytes(uint64_t per_row, unsigned code_bits)
{
    return code_bits == 16 ? 2 * per_row : code_bits == 8 ? per_row : per_row / 2 + (per_row & 1);
}

/*
 * The codes tensor `base.suffix` of a compressed tensor with `rows` rows of per_row codes, looked
 * up before anything is allocated from the keys: the file then holds at least rows * per_row / 2
 * bytes of codes, which bounds every allocation the keys declare by the file's own size.
 */
static qn_status qn_gl_codes_first(const qn_gl *g, const char *base, size_t base_len, const char *suffix,
                                   uint64_t per_row, unsigned code_bits, uint64_t rows)
{
    uint64_t dims[2];
    qn_gguf_tensor t;
    dims[0] = code_bits == 16 ? per_row : qn_row_bytes(per_row, code_bits);
    dims[1] = rows;
    return qn_gl_tensor(g, base, base_len, suffix, code_bits == 16 ? QN_GGML_I16 : QN_GGML_I8, 2, dims, &t);
}

/* A scalar tensor's extreme grid values (qmin - z) * s and (qmax - z) * s are finite for every channel. */
static int qn_scalar_grid_finite(const qn_qtensor *qt, size_t r)
{
    float lo = ((float)qt->qmin - (float)qt->zero[r]) * qt->scale[r];
    float hi = ((float)qt->qmax - (float)qt->zero[r]) * qt->scale[r];
    return isfinite(lo) && isfinite(hi);
}

static qn_status qn_load_gguf_entry(qn_model *m, const qn_gl *g)
{
    static const char fn[] = "qn_model_load_gguf";
    const char *name, *kind, *base, *s;
    size_t name_len, kind_len, base_len, slen, ndim, j, kv = 0, shape[QN_QTENSOR_MAX_DIMS], numel;
    uint64_t shp[QN_QTENSOR_MAX_DIMS], cnt, dims[QN_QTENSOR_MAX_DIMS];
    qn_gguf_type et;
    qn_gguf_tensor t;
    qn_status st;
    st = qn_gl_string(g, "name", &name, &name_len);
    if (st == QN_OK)
        st = qn_gl_string(g, "kind", &kind, &kind_len);
    if (st == QN_OK)
        st = qn_gl_string(g, "gguf_name", &base, &base_len);
    if (st == QN_OK)
        st = qn_gl_kv(g, "shape", &kv);
    if (st == QN_OK)
        st = qn_gguf_get_array(g->f, kv, &et, &cnt, NULL);
    if (st != QN_OK)
        return st == QN_ERR_INVALID_ARG ? QN_ERR_CORRUPT_DATA : st;
    if (et != QN_GGUF_U64 || cnt > QN_QTENSOR_MAX_DIMS)
        return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": shape is not an array of at most 4 U64",
                       fn, g->path, (int)name_len, name);
    ndim = (size_t)cnt;
    st = qn_gguf_get_array_copy(g->f, kv, QN_GGUF_U64, shp, ndim);
    if (st != QN_OK)
        return st;
    numel = 1;
    for (j = 0; j < ndim; j++) {
        if (shp[j] > (uint64_t)SIZE_MAX || qn_mul_overflow(numel, (size_t)shp[j], &numel))
            return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": the shape overflows", fn, g->path,
                           (int)name_len, name);
        shape[j] = (size_t)shp[j];
    }
    if (kind_len == 5 && memcmp(kind, "dense", 5) == 0) {
        float *data;
        for (j = 0; j < ndim; j++)
            dims[j] = shp[ndim - 1 - j];
        if (ndim == 0)
            dims[0] = 1;
        st = qn_gl_tensor(g, base, base_len, "", QN_GGML_F32, ndim ? (uint32_t)ndim : 1u, dims, &t);
        if (st != QN_OK)
            return st;
        data = (float *)qn_malloc(m->ctx, numel ? numel * sizeof(float) : 1);
        if (!data)
            return qn_fail(m->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (numel)
            memcpy(data, t.data, numel * sizeof(float));
        st = qn_model_push_dense(m, name, name_len, ndim, shape, data, numel, fn);
        if (st != QN_OK)
            qn_free(m->ctx, data);
        return st;
    }
    {
        int is_pq = kind_len == 2 && memcmp(kind, "pq", 2) == 0;
        uint64_t rows, cols, code_bits;
        qn_qtensor *qt = NULL;
        size_t r, rb;
        if (!is_pq && !(kind_len == 6 && memcmp(kind, "scalar", 6) == 0))
            return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\" has unknown kind \"%.*s\"", fn, g->path,
                           (int)name_len, name, (int)kind_len, kind);
        st = qn_gl_uint(g, "rows", &rows);
        if (st == QN_OK)
            st = qn_gl_uint(g, "cols", &cols);
        if (st == QN_OK)
            st = qn_gl_uint(g, "code_bits", &code_bits);
        if (st != QN_OK)
            return st;
        if (rows > (uint64_t)SIZE_MAX || cols > (uint64_t)SIZE_MAX || rows == 0 || cols == 0 || ndim < 1 ||
            (uint64_t)shape[0] != rows || (uint64_t)(numel / shape[0]) != cols)
            return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": rows/cols do not match the shape", fn,
                           g->path, (int)name_len, name);
        st = qn_qtensor_alloc(m->ctx, is_pq ? QN_QTENSOR_PQ : QN_QTENSOR_SCALAR, (size_t)rows, (size_t)cols, &qt, fn);
        if (st != QN_OK)
            return st == QN_ERR_INVALID_ARG ? QN_ERR_CORRUPT_DATA : st;
        qt->ndim = ndim;
        for (j = 0; j < ndim; j++)
            qt->shape[j] = shape[j];
        if (is_pq) {
            uint64_t bs, k;
            st = qn_gl_uint(g, "block_size", &bs);
            if (st == QN_OK)
                st = qn_gl_uint(g, "n_centroids", &k);
            if (st == QN_OK && (bs == 0 || bs > cols || k > 65536 || k < 2))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": bad block_size or n_centroids", fn,
                             g->path, (int)name_len, name);
            if (st == QN_OK && cols % bs == 0) {
                /* codes and codebook first: the allocations below are then bounded by the file */
                st = qn_gl_codes_first(g, base, base_len, "codes", cols / bs, qn_code_bits_pq(k), rows);
                dims[0] = bs;
                dims[1] = k;
                if (st == QN_OK)
                    st = qn_gl_tensor(g, base, base_len, "codebook", QN_GL_ANY_TYPE, 2, dims, &t);
            }
            if (st == QN_OK) {
                st = qn_qtensor_alloc_pq(qt, (size_t)bs, (size_t)k, fn);
                if (st == QN_ERR_INVALID_ARG)
                    st = QN_ERR_CORRUPT_DATA;
            }
            if (st == QN_OK && qt->code_bits != code_bits)
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": code_bits %llu for K = %llu", fn,
                             g->path, (int)name_len, name, (unsigned long long)code_bits, (unsigned long long)k);
            if (st == QN_OK)
                st = qn_gl_string(g, "codebook", &s, &slen);
            if (st == QN_OK && !qn_prec_parse(s, slen, &qt->prec))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": unknown codebook precision", fn,
                             g->path, (int)name_len, name);
            if (st == QN_OK && qt->prec == QN_CODEBOOK_INT8) {
                int32_t z = 0;
                float sc = 0.0f;
                st = qn_gl_kv(g, "codebook_scale", &kv);
                if (st == QN_OK)
                    st = qn_gguf_get_f32(g->f, kv, &sc);
                if (st == QN_OK)
                    st = qn_gl_kv(g, "codebook_zero_point", &kv);
                if (st == QN_OK)
                    st = qn_gguf_get_i32(g->f, kv, &z);
                if (st == QN_OK)
                    st = qn_gl_string(g, "codebook_scheme", &s, &slen);
                if (st == QN_OK && (!qn_scheme_parse(s, slen, &qt->cb_scheme) || !(sc > 0.0f) || !isfinite(sc) ||
                                    z < -128 || z > 127))
                    st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": bad int8 codebook grid", fn,
                                 g->path, (int)name_len, name);
                qt->cb_scale = sc;
                qt->cb_zero = z;
            }
            if (st == QN_OK) {
                dims[0] = bs;
                dims[1] = k;
                st = qn_gl_tensor(g, base, base_len, "codebook",
                                  qt->prec == QN_CODEBOOK_FP32   ? QN_GGML_F32
                                  : qt->prec == QN_CODEBOOK_FP16 ? QN_GGML_F16
                                                                 : QN_GGML_I8,
                                  2, dims, &t);
            }
            if (st == QN_OK && qn_codebook_load(qt, (const unsigned char *)t.data))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": a codebook value is not finite or off the grid",
                             fn, g->path, (int)name_len, name);
        } else {
            uint64_t bits;
            int pc = 0;
            qn_qscheme sch = QN_QSCHEME_AFFINE;
            st = qn_gl_uint(g, "bits", &bits);
            if (st == QN_OK)
                st = qn_gl_string(g, "scheme", &s, &slen);
            if (st == QN_OK && !qn_scheme_parse(s, slen, &sch))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": unknown scheme", fn, g->path,
                             (int)name_len, name);
            if (st == QN_OK)
                st = qn_gl_kv(g, "per_channel", &kv);
            if (st == QN_OK)
                st = qn_gguf_get_bool(g->f, kv, &pc);
            if (st == QN_OK && (bits < 2 || bits > 8))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": bits = %llu", fn, g->path,
                             (int)name_len, name, (unsigned long long)bits);
            if (st == QN_OK) /* the codes first: the allocations below are then bounded by the file */
                st = qn_gl_codes_first(g, base, base_len, "q", cols, bits <= 4 ? 4u : 8u, rows);
            if (st == QN_OK)
                st = qn_qtensor_alloc_scalar(qt, (unsigned)bits, sch, pc, fn);
            if (st == QN_OK && qt->code_bits != code_bits)
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": code_bits %llu for %llu bits", fn,
                             g->path, (int)name_len, name, (unsigned long long)code_bits, (unsigned long long)bits);
            dims[0] = (uint64_t)qt->nch;
            if (st == QN_OK)
                st = qn_gl_tensor(g, base, base_len, "scale", QN_GGML_F32, 1, dims, &t);
            if (st == QN_OK) {
                memcpy(qt->scale, t.data, qt->nch * sizeof(float));
                st = qn_gl_tensor(g, base, base_len, "zero", QN_GGML_I32, 1, dims, &t);
            }
            if (st == QN_OK) {
                memcpy(qt->zero, t.data, qt->nch * sizeof(int32_t));
                for (r = 0; r < qt->nch && st == QN_OK; r++)
                    if (!(qt->scale[r] > 0.0f) || !isfinite(qt->scale[r]) || qt->zero[r] < qt->qmin ||
                        qt->zero[r] > qt->qmax || !qn_scalar_grid_finite(qt, r))
                        st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": bad scale or zero point %zu",
                                     fn, g->path, (int)name_len, name, r);
            }
        }
        if (st == QN_OK) {
            rb = qn_qtensor_row_code_bytes(qt);
            if (qt->code_bits == 16)
                dims[0] = (uint64_t)(qt->cols / qt->bs);
            else
                dims[0] = (uint64_t)rb;
            dims[1] = rows;
            st = qn_gl_tensor(g, base, base_len, is_pq ? "codes" : "q", qt->code_bits == 16 ? QN_GGML_I16 : QN_GGML_I8,
                              2, dims, &t);
        }
        if (st == QN_OK) {
            for (r = 0; r < qt->rows; r++)
                if (qn_qtensor_unpack_row(qt, r, (const uint8_t *)t.data + r * rb)) {
                    st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%.*s\": a code in row %zu is out of range",
                                 fn, g->path, (int)name_len, name, r);
                    break;
                }
        }
        if (st == QN_OK)
            st = qn_model_push_qt(m, name, name_len, qt, fn);
        if (st != QN_OK)
            qn_qtensor_destroy(qt);
        return st;
    }
}

/* The model held by an open (and verified) GGUF file; `path` names it in messages. f stays the caller's. */
static qn_status qn_model_from_gguf(qn_context *ctx, const qn_gguf_file *f, const char *path, qn_model **out)
{
    static const char fn[] = "qn_model_load_gguf";
    qn_model *m = NULL;
    qn_gl g;
    uint64_t version = 0, count = 0;
    size_t kv, i;
    const char *arch;
    size_t arch_len;
    qn_status st;
    kv = qn_gguf_find_kv(f, "general.architecture");
    if (kv == QN_GGUF_NOT_FOUND || qn_gguf_get_string(f, kv, &arch, &arch_len) != QN_OK || arch_len != 6 ||
        memcmp(arch, "qnoise", 6) != 0)
        return qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s is not a qnoise GGUF file (general.architecture)", fn, path);
    kv = qn_gguf_find_kv(f, "qnoise.format_version");
    if (kv == QN_GGUF_NOT_FOUND || qn_gguf_get_uint(f, kv, &version) != QN_OK || version != QN_MODEL_FORMAT_VERSION)
        return qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: qnoise.format_version %llu (this library reads %u)", fn, path,
                       (unsigned long long)version, QN_MODEL_FORMAT_VERSION);
    kv = qn_gguf_find_kv(f, "qnoise.tensor_count");
    if (kv == QN_GGUF_NOT_FOUND || qn_gguf_get_uint(f, kv, &count) != QN_OK || count > qn_gguf_kv_count(f))
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: missing or impossible qnoise.tensor_count", fn, path);
    st = qn_model_create(ctx, &m);
    g.ctx = ctx;
    g.f = f;
    g.path = path;
    for (i = 0; i < (size_t)count && st == QN_OK; i++) {
        g.i = i;
        st = qn_load_gguf_entry(m, &g);
    }
    if (st != QN_OK) {
        qn_model_destroy(m);
        return st;
    }
    *out = m;
    return QN_OK;
}

QN_API qn_status qn_model_load_gguf(qn_context *ctx, const char *path, unsigned flags, qn_model **out)
{
    qn_gguf_file *f = NULL;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_model_load_gguf: path is NULL");
    st = qn_gguf_open(ctx, path, QN_GGUF_VERIFY | ((flags & QN_LOAD_NO_MMAP) ? QN_GGUF_NO_MMAP : 0), &f);
    if (st != QN_OK)
        return st;
    st = qn_model_from_gguf(ctx, f, path, out);
    qn_gguf_close(f);
    return st;
}

qn_status qn_model_load_gguf_memory(qn_context *ctx, const void *data, size_t size, qn_model **out)
{
    qn_gguf_file *f = NULL;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!data && size)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_model_load_gguf_memory: data is NULL");
    st = qn_gguf_open_memory(ctx, data, size, &f);
    if (st == QN_OK)
        st = qn_gguf_verify(f, NULL);
    if (st == QN_OK)
        st = qn_model_from_gguf(ctx, f, "memory", out);
    qn_gguf_close(f);
    return st;
}

/* ---------------------------------------------------------------------------------------------- */
/* safetensors                                                                                    */

#if QN_MODEL_JSON

static char *qn_join(const qn_context *ctx, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *s = (char *)qn_malloc(ctx, la + lb + 2);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    s[la] = '.';
    memcpy(s + la + 1, b, lb + 1);
    return s;
}

QN_API qn_status qn_model_save_safetensors(const qn_model *model, const char *path, int decoded)
{
    static const char fn[] = "qn_model_save_safetensors";
    qn_st_writer *w = NULL;
    qn_parts *parts = NULL;
    float **dec = NULL;
    char **names = NULL;
    json_t *root = NULL, *tens = NULL;
    char *meta = NULL;
    size_t i, j, nn = 0;
    qn_status st;
    if (!model)
        return QN_ERR_INVALID_ARG;
    if (!path)
        return qn_fail(model->ctx, QN_ERR_INVALID_ARG, "%s: path is NULL", fn);
    st = qn_st_writer_create(model->ctx, &w);
    if (st != QN_OK)
        return st;
    parts = (qn_parts *)qn_calloc(model->ctx, model->n + 1, sizeof *parts);
    dec = (float **)qn_calloc(model->ctx, model->n + 1, sizeof *dec);
    names = (char **)qn_calloc(model->ctx, 3 * model->n + 1, sizeof *names);
    root = json_object();
    tens = root ? json_object() : NULL;
    if (!root || !tens || json_object_set_new(root, "tensors", tens) != 0 || !parts || !dec || !names) {
        /* json_object_set_new owns tens from the call on, even when it fails */
        tens = NULL;
        st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    if (st == QN_OK && json_object_set_new(root, "format_version", json_integer(QN_MODEL_FORMAT_VERSION)) != 0)
        st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    for (i = 0; i < model->n && st == QN_OK; i++) {
        const qn_model_entry *e = &model->e[i];
        uint64_t shp[QN_QTENSOR_MAX_DIMS], d2[2];
        for (j = 0; j < e->ndim; j++)
            shp[j] = (uint64_t)e->shape[j];
        if (!e->qt) {
            st = qn_st_add_tensor(w, e->name, QN_ST_F32, (unsigned)e->ndim, shp, e->dense, e->numel * sizeof(float));
            continue;
        }
        if (decoded) {
            dec[i] = (float *)qn_malloc(model->ctx, e->numel * sizeof(float));
            if (!dec[i]) {
                st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                break;
            }
            qn_qtensor_decode(e->qt, dec[i]);
            st = qn_st_add_tensor(w, e->name, QN_ST_F32, (unsigned)e->ndim, shp, dec[i], e->numel * sizeof(float));
            continue;
        }
        {
            const qn_qtensor *qt = e->qt;
            json_t *jt = json_object(), *js = json_array();
            int jerr = !jt || !js;
            st = qn_parts_make(qt, &parts[i], fn);
            for (j = 0; j < e->ndim && !jerr; j++)
                jerr |= json_array_append_new(js, json_integer((json_int_t)e->shape[j])) != 0;
            if (!jerr) {
                jerr |= json_object_set_new(jt, "shape", js) != 0;
                js = NULL;
                jerr |= json_object_set_new(jt, "kind", json_string(qt->kind == QN_QTENSOR_PQ ? "pq" : "scalar")) != 0;
                jerr |= json_object_set_new(jt, "rows", json_integer((json_int_t)qt->rows)) != 0;
                jerr |= json_object_set_new(jt, "cols", json_integer((json_int_t)qt->cols)) != 0;
                jerr |= json_object_set_new(jt, "code_bits", json_integer((json_int_t)qt->code_bits)) != 0;
                if (qt->kind == QN_QTENSOR_PQ) {
                    jerr |= json_object_set_new(jt, "block_size", json_integer((json_int_t)qt->bs)) != 0;
                    jerr |= json_object_set_new(jt, "n_centroids", json_integer((json_int_t)qt->k)) != 0;
                    jerr |= json_object_set_new(jt, "codebook", json_string(qn_prec_name(qt->prec))) != 0;
                    if (qt->prec == QN_CODEBOOK_INT8) {
                        jerr |= json_object_set_new(jt, "codebook_scale", json_real((double)qt->cb_scale)) != 0;
                        jerr |= json_object_set_new(jt, "codebook_zero_point", json_integer(qt->cb_zero)) != 0;
                        jerr |= json_object_set_new(jt, "codebook_scheme", json_string(qn_scheme_name(qt->cb_scheme))) != 0;
                    }
                } else {
                    jerr |= json_object_set_new(jt, "bits", json_integer((json_int_t)qt->bits)) != 0;
                    jerr |= json_object_set_new(jt, "scheme", json_string(qn_scheme_name(qt->scheme))) != 0;
                    jerr |= json_object_set_new(jt, "per_channel", json_boolean(qt->per_channel)) != 0;
                }
            }
            if (!jerr) {
                jerr |= json_object_set_new(tens, e->name, jt) != 0;
                jt = NULL;
            }
            json_decref(jt);
            json_decref(js);
            if (jerr && st == QN_OK)
                st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            if (st != QN_OK)
                break;
            names[nn] = qn_join(model->ctx, e->name, qt->kind == QN_QTENSOR_PQ ? "codes" : "q");
            if (!names[nn]) {
                st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                break;
            }
            if (qt->code_bits == 16) {
                d2[0] = qt->rows;
                d2[1] = qt->cols / qt->bs;
                st = qn_st_add_tensor(w, names[nn++], QN_ST_U16, 2, d2, parts[i].codes, parts[i].codes_bytes);
            } else {
                d2[0] = qt->rows;
                d2[1] = qn_qtensor_row_code_bytes(qt);
                st = qn_st_add_tensor(w, names[nn++], QN_ST_U8, 2, d2, parts[i].codes, parts[i].codes_bytes);
            }
            if (st != QN_OK)
                break;
            if (qt->kind == QN_QTENSOR_PQ) {
                names[nn] = qn_join(model->ctx, e->name, "codebook");
                if (!names[nn]) {
                    st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                    break;
                }
                d2[0] = qt->k;
                d2[1] = qt->bs;
                st = qn_st_add_tensor(w, names[nn++],
                                      qt->prec == QN_CODEBOOK_FP32   ? QN_ST_F32
                                      : qt->prec == QN_CODEBOOK_FP16 ? QN_ST_F16
                                                                     : QN_ST_I8,
                                      2, d2, parts[i].cb, parts[i].cb_bytes);
            } else {
                d2[0] = qt->nch;
                names[nn] = qn_join(model->ctx, e->name, "scale");
                if (!names[nn]) {
                    st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                    break;
                }
                st = qn_st_add_tensor(w, names[nn++], QN_ST_F32, 1, d2, qt->scale, qt->nch * sizeof(float));
                if (st != QN_OK)
                    break;
                names[nn] = qn_join(model->ctx, e->name, "zero");
                if (!names[nn]) {
                    st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
                    break;
                }
                st = qn_st_add_tensor(w, names[nn++], QN_ST_I32, 1, d2, qt->zero, qt->nch * sizeof(int32_t));
            }
        }
    }
    if (st == QN_OK && !decoded) {
        meta = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
        if (!meta)
            st = qn_fail(model->ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
        if (st == QN_OK)
            st = qn_st_add_metadata(w, "qnoise", meta);
    }
    if (st == QN_OK)
        st = qn_st_add_metadata(w, "format", "pt");
    if (st == QN_OK)
        st = qn_st_write_file(w, path);
    free(meta); /* jansson allocates with malloc */
    json_decref(root);
    for (i = 0; i < model->n; i++) {
        if (parts)
            qn_parts_free(model->ctx, &parts[i]);
        if (dec)
            qn_free(model->ctx, dec[i]);
    }
    for (i = 0; names && i < nn; i++)
        qn_free(model->ctx, names[i]);
    qn_free(model->ctx, names);
    qn_free(model->ctx, dec);
    qn_free(model->ctx, parts);
    qn_st_writer_destroy(w);
    return st;
}

/* A component tensor of compressed tensor `name`: `name.suffix`, checked for dtype and shape. */
static qn_status qn_st_part(const qn_context *ctx, const qn_st_file *f, const char *path, const char *name,
                            const char *suffix, qn_st_dtype dtype, unsigned rank, const uint64_t *shape,
                            qn_st_info *info, size_t *index)
{
    char *full = qn_join(ctx, name, suffix);
    unsigned d;
    if (!full)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "qn_model_load_safetensors: out of memory");
    if (!qn_st_find(f, full, index)) {
        qn_status st = qn_fail(ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_safetensors: %s: missing tensor %s", path, full);
        qn_free(ctx, full);
        return st;
    }
    qn_st_tensor_info(f, *index, info);
    if (info->dtype != dtype || info->rank != rank) {
        qn_status st = qn_fail(ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_safetensors: %s: tensor %s is %s rank %u, expected %s rank %u",
                               path, full, qn_st_dtype_name(info->dtype), info->rank, qn_st_dtype_name(dtype), rank);
        qn_free(ctx, full);
        return st;
    }
    for (d = 0; d < rank; d++)
        if (info->shape[d] != shape[d]) {
            qn_status st = qn_fail(ctx, QN_ERR_CORRUPT_DATA, "qn_model_load_safetensors: %s: tensor %s has the wrong shape",
                                   path, full);
            qn_free(ctx, full);
            return st;
        }
    qn_free(ctx, full);
    return QN_OK;
}

static int qn_json_uint(json_t *o, const char *key, uint64_t *v)
{
    json_t *x = json_object_get(o, key);
    if (!json_is_integer(x) || json_integer_value(x) < 0)
        return 0;
    *v = (uint64_t)json_integer_value(x);
    return 1;
}

/* Restore compressed tensor `name` described by jt; marks its component tensors in `used`. */
static qn_status qn_st_load_compressed(qn_model *m, const qn_st_file *f, const char *path, const char *name, json_t *jt,
                                       unsigned char *used)
{
    static const char fn[] = "qn_model_load_safetensors";
    qn_qtensor *qt = NULL;
    qn_st_info info;
    json_t *js, *x;
    const char *kind;
    uint64_t rows = 0, cols = 0, code_bits = 0, d2[2], numel = 1;
    size_t ndim, j, idx, r, rb;
    int is_pq;
    qn_status st;
    js = json_object_get(jt, "shape");
    x = json_object_get(jt, "kind");
    kind = json_string_value(x);
    if (!json_is_object(jt) || !json_is_array(js) || json_array_size(js) < 1 || json_array_size(js) > 4 || !kind ||
        !qn_json_uint(jt, "rows", &rows) || !qn_json_uint(jt, "cols", &cols) ||
        !qn_json_uint(jt, "code_bits", &code_bits) || rows == 0 || cols == 0 || rows > SIZE_MAX || cols > SIZE_MAX)
        return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: bad qnoise metadata for tensor \"%s\"", fn, path, name);
    is_pq = strcmp(kind, "pq") == 0;
    if (!is_pq && strcmp(kind, "scalar") != 0)
        return qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\" has unknown kind \"%s\"", fn, path, name, kind);
    st = qn_qtensor_alloc(m->ctx, is_pq ? QN_QTENSOR_PQ : QN_QTENSOR_SCALAR, (size_t)rows, (size_t)cols, &qt, fn);
    if (st != QN_OK)
        return st == QN_ERR_INVALID_ARG || st == QN_ERR_OVERFLOW ? QN_ERR_CORRUPT_DATA : st;
    ndim = json_array_size(js);
    qt->ndim = ndim;
    for (j = 0; j < ndim && st == QN_OK; j++) {
        json_t *v = json_array_get(js, j);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            (uint64_t)json_integer_value(v) > (uint64_t)SIZE_MAX)
            st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad shape", fn, path, name);
        else {
            qt->shape[j] = (size_t)json_integer_value(v);
            if (j && qt->shape[j] && numel > UINT64_MAX / qt->shape[j])
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad shape", fn, path, name);
            else if (j)
                numel *= qt->shape[j];
        }
    }
    if (st == QN_OK && (qt->shape[0] != rows || numel != cols))
        st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": shape does not match rows x cols", fn, path,
                     name);
    if (st == QN_OK && is_pq) {
        uint64_t bs = 0, k = 0;
        const char *cb = json_string_value(json_object_get(jt, "codebook"));
        if (!qn_json_uint(jt, "block_size", &bs) || !qn_json_uint(jt, "n_centroids", &k) || !cb ||
            !qn_prec_parse(cb, strlen(cb), &qt->prec) || bs == 0 || bs > cols || k < 2 || k > 65536)
            st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad PQ parameters", fn, path, name);
        if (st == QN_OK && cols % bs == 0) {
            /* codebook and codes first: the allocations below are then bounded by the file */
            unsigned cbits = qn_code_bits_pq(k);
            d2[0] = k;
            d2[1] = bs;
            st = qn_st_part(m->ctx, f, path, name, "codebook",
                            qt->prec == QN_CODEBOOK_FP32   ? QN_ST_F32
                            : qt->prec == QN_CODEBOOK_FP16 ? QN_ST_F16
                                                           : QN_ST_I8,
                            2, d2, &info, &idx);
            d2[0] = rows;
            d2[1] = cbits == 16 ? cols / bs : qn_row_bytes(cols / bs, cbits);
            if (st == QN_OK)
                st = qn_st_part(m->ctx, f, path, name, "codes", cbits == 16 ? QN_ST_U16 : QN_ST_U8, 2, d2, &info, &idx);
        }
        if (st == QN_OK) {
            st = qn_qtensor_alloc_pq(qt, (size_t)bs, (size_t)k, fn);
            if (st == QN_ERR_INVALID_ARG)
                st = QN_ERR_CORRUPT_DATA;
        }
        if (st == QN_OK && qt->prec == QN_CODEBOOK_INT8) {
            json_t *sc = json_object_get(jt, "codebook_scale"), *zp = json_object_get(jt, "codebook_zero_point");
            const char *sch = json_string_value(json_object_get(jt, "codebook_scheme"));
            if (!json_is_number(sc) || !json_is_integer(zp) || !sch || !qn_scheme_parse(sch, strlen(sch), &qt->cb_scheme) ||
                !(json_number_value(sc) > 0.0) || json_integer_value(zp) < -128 || json_integer_value(zp) > 127)
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad int8 codebook grid", fn, path, name);
            else {
                qt->cb_scale = (float)json_number_value(sc);
                qt->cb_zero = (int32_t)json_integer_value(zp);
            }
        }
        if (st == QN_OK) {
            d2[0] = k;
            d2[1] = bs;
            st = qn_st_part(m->ctx, f, path, name, "codebook",
                            qt->prec == QN_CODEBOOK_FP32   ? QN_ST_F32
                            : qt->prec == QN_CODEBOOK_FP16 ? QN_ST_F16
                                                           : QN_ST_I8,
                            2, d2, &info, &idx);
        }
        if (st == QN_OK) {
            used[idx] = 1;
            if (qn_codebook_load(qt, (const unsigned char *)info.data))
                st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": a codebook value is not finite", fn,
                             path, name);
        }
    } else if (st == QN_OK) {
        uint64_t bits = 0;
        const char *sch = json_string_value(json_object_get(jt, "scheme"));
        json_t *pc = json_object_get(jt, "per_channel");
        qn_qscheme s = QN_QSCHEME_AFFINE;
        if (!qn_json_uint(jt, "bits", &bits) || bits < 2 || bits > 8 || !sch || !qn_scheme_parse(sch, strlen(sch), &s) ||
            !json_is_boolean(pc))
            st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad scalar parameters", fn, path, name);
        d2[0] = rows;
        d2[1] = qn_row_bytes(cols, bits <= 4 ? 4u : 8u);
        if (st == QN_OK) /* the codes first: the allocations below are then bounded by the file */
            st = qn_st_part(m->ctx, f, path, name, "q", QN_ST_U8, 2, d2, &info, &idx);
        if (st == QN_OK)
            st = qn_qtensor_alloc_scalar(qt, (unsigned)bits, s, json_is_true(pc), fn);
        d2[0] = qt->nch;
        if (st == QN_OK)
            st = qn_st_part(m->ctx, f, path, name, "scale", QN_ST_F32, 1, d2, &info, &idx);
        if (st == QN_OK) {
            used[idx] = 1;
            memcpy(qt->scale, info.data, qt->nch * sizeof(float));
            st = qn_st_part(m->ctx, f, path, name, "zero", QN_ST_I32, 1, d2, &info, &idx);
        }
        if (st == QN_OK) {
            used[idx] = 1;
            memcpy(qt->zero, info.data, qt->nch * sizeof(int32_t));
            for (r = 0; r < qt->nch && st == QN_OK; r++)
                if (!(qt->scale[r] > 0.0f) || !isfinite(qt->scale[r]) || qt->zero[r] < qt->qmin || qt->zero[r] > qt->qmax ||
                    !qn_scalar_grid_finite(qt, r))
                    st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": bad scale or zero point", fn, path,
                                 name);
        }
    }
    if (st == QN_OK && qt->code_bits != code_bits)
        st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": code_bits %llu", fn, path, name,
                     (unsigned long long)code_bits);
    if (st == QN_OK) {
        rb = qn_qtensor_row_code_bytes(qt);
        d2[0] = rows;
        d2[1] = qt->code_bits == 16 ? (uint64_t)(qt->cols / qt->bs) : (uint64_t)rb;
        st = qn_st_part(m->ctx, f, path, name, is_pq ? "codes" : "q", qt->code_bits == 16 ? QN_ST_U16 : QN_ST_U8, 2, d2,
                        &info, &idx);
        if (st == QN_OK) {
            used[idx] = 1;
            for (r = 0; r < qt->rows; r++)
                if (qn_qtensor_unpack_row(qt, r, (const uint8_t *)info.data + r * rb)) {
                    st = qn_fail(m->ctx, QN_ERR_CORRUPT_DATA, "%s: %s: tensor \"%s\": a code in row %zu is out of range",
                                 fn, path, name, r);
                    break;
                }
        }
    }
    if (st == QN_OK)
        st = qn_model_push_qt(m, name, strlen(name), qt, fn);
    if (st != QN_OK)
        qn_qtensor_destroy(qt);
    return st;
}

/* The model held by an open safetensors file; `path` names it in messages. f stays the caller's. */
static qn_status qn_model_from_st(qn_context *ctx, const qn_st_file *f, const char *path, unsigned flags,
                                  qn_model **out)
{
    static const char fn[] = "qn_model_load_safetensors";
    qn_model *m = NULL;
    json_t *root = NULL, *tens = NULL;
    unsigned char *used = NULL;
    const char *meta;
    size_t n, i;
    qn_status st;
    n = qn_st_tensor_count(f);
    used = (unsigned char *)qn_calloc(ctx, n + 1, 1);
    st = used ? qn_model_create(ctx, &m) : qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    meta = qn_st_metadata_get(f, "qnoise");
    if (st == QN_OK && meta) {
        json_error_t jerr;
        root = json_loads(meta, JSON_REJECT_DUPLICATES, &jerr);
        tens = json_object_get(root, "tensors");
        if (!json_is_object(root) || !json_is_object(tens))
            st = qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: %s: the \"qnoise\" metadata is not a JSON object with \"tensors\"",
                         fn, path);
        else {
            json_t *ver = json_object_get(root, "format_version");
            if (!json_is_integer(ver) || json_integer_value(ver) != (json_int_t)QN_MODEL_FORMAT_VERSION)
                st = qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: unsupported qnoise format_version", fn, path);
        }
    }
    if (st == QN_OK && tens) {
        const char *key;
        json_t *val;
        json_object_foreach(tens, key, val)
        {
            st = qn_st_load_compressed(m, f, path, key, val, used);
            if (st != QN_OK)
                break;
        }
    }
    for (i = 0; i < n && st == QN_OK; i++) {
        qn_st_info info;
        const char *name = qn_st_tensor_name(f, i);
        size_t shape[QN_QTENSOR_MAX_DIMS], j;
        float *data;
        if (used[i])
            continue;
        qn_st_tensor_info(f, i, &info);
        if ((info.dtype != QN_ST_F32 && info.dtype != QN_ST_F16 && info.dtype != QN_ST_BF16) ||
            info.rank > QN_QTENSOR_MAX_DIMS) {
            if (flags & QN_LOAD_SKIP_UNSUPPORTED) {
                qn_log(ctx, QN_LOG_WARN, "%s: %s: skipped tensor \"%s\" (%s, rank %u)", fn, path, name,
                       qn_st_dtype_name(info.dtype), info.rank);
                continue;
            }
            st = qn_fail(ctx, QN_ERR_UNSUPPORTED, "%s: %s: tensor \"%s\" is %s of rank %u (F32/F16/BF16 up to rank 4 only)",
                         fn, path, name, qn_st_dtype_name(info.dtype), info.rank);
            break;
        }
        for (j = 0; j < info.rank; j++)
            shape[j] = (size_t)info.shape[j];
        data = (float *)qn_malloc(ctx, info.numel ? (size_t)info.numel * sizeof(float) : 1);
        if (!data) {
            st = qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            break;
        }
        st = qn_st_read_f32(f, i, data, (size_t)info.numel);
        if (st == QN_OK)
            st = qn_model_push_dense(m, name, strlen(name), info.rank, shape, data, (size_t)info.numel, fn);
        if (st != QN_OK)
            qn_free(ctx, data);
    }
    json_decref(root);
    qn_free(ctx, used);
    if (st != QN_OK) {
        qn_model_destroy(m);
        return st;
    }
    *out = m;
    return QN_OK;
}

QN_API qn_status qn_model_load_safetensors(qn_context *ctx, const char *path, unsigned flags, qn_model **out)
{
    qn_st_file *f = NULL;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_model_load_safetensors: path is NULL");
    st = qn_st_open(ctx, path, (flags & QN_LOAD_NO_MMAP) ? 1 : 0, &f);
    if (st != QN_OK)
        return st;
    st = qn_model_from_st(ctx, f, path, flags, out);
    qn_st_close(f);
    return st;
}

qn_status qn_model_load_safetensors_memory(qn_context *ctx, const void *data, size_t size, unsigned flags,
                                           qn_model **out)
{
    qn_st_file *f = NULL;
    qn_status st;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    if (!data && size)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "qn_model_load_safetensors_memory: data is NULL");
    st = qn_st_open_memory(ctx, data, size, &f);
    if (st != QN_OK)
        return st;
    st = qn_model_from_st(ctx, f, "memory", flags, out);
    qn_st_close(f);
    return st;
}

#else /* no jansson */

QN_API qn_status qn_model_save_safetensors(const qn_model *model, const char *path, int decoded)
{
    (void)path, (void)decoded;
    if (!model)
        return QN_ERR_INVALID_ARG;
    return qn_fail(model->ctx, QN_ERR_UNSUPPORTED, "qn_model_save_safetensors: built without safetensors (jansson)");
}

QN_API qn_status qn_model_load_safetensors(qn_context *ctx, const char *path, unsigned flags, qn_model **out)
{
    (void)path, (void)flags;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    return qn_fail(ctx, QN_ERR_UNSUPPORTED, "qn_model_load_safetensors: built without safetensors (jansson)");
}

qn_status qn_model_load_safetensors_memory(qn_context *ctx, const void *data, size_t size, unsigned flags,
                                           qn_model **out)
{
    (void)data, (void)size, (void)flags;
    if (!ctx || !out)
        return QN_ERR_INVALID_ARG;
    *out = NULL;
    return qn_fail(ctx, QN_ERR_UNSUPPORTED, "qn_model_load_safetensors_memory: built without safetensors (jansson)");
}

#endif
