/*
 * Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/):
 * small valid files made by the library's own writers, and crafted bad ones
 * (each a valid file with one field patched; checksums are recomputed where
 * the point is to get past them). The output is committed; run this again
 * only to refresh it:
 *
 *     gen_fuzz_corpus OUTDIR        (writes OUTDIR/{gguf,safetensors,qtensor}/)
 *
 * Deterministic: fixed seeds, so the same build writes the same bytes.
 * SPDX-License-Identifier: MIT
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

#include "format/gguf.h"
#include "format/half.h"
#include "format/safetensors.h"
#include "qn_config.h"

typedef struct buf {
    unsigned char *p;
    size_t n;
} buf;

static const char *out_dir;
static char tmp_dir[256];
static qn_context *ctx;
static int n_written;

static void die(const char *what)
{
    fprintf(stderr, "gen_fuzz_corpus: %s\n", what);
    exit(1);
}

static void ok(qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "gen_fuzz_corpus: %s: %s\n", what, qn_status_str(st));
        exit(1);
    }
}

static uint64_t rng_state = 0x5EEDu;

static float uniform(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)((double)(z >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static float *random_weights(size_t n)
{
    float *w = (float *)malloc(n * sizeof *w);
    size_t i;
    if (!w)
        die("out of memory");
    for (i = 0; i < n; i++)
        w[i] = uniform();
    return w;
}

static buf read_all(const char *path)
{
    buf b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    long n = 0;
    if (!f || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        die(path);
    b.n = (size_t)n;
    b.p = (unsigned char *)malloc(b.n ? b.n : 1);
    if (!b.p || fread(b.p, 1, b.n, f) != b.n)
        die(path);
    fclose(f);
    return b;
}

static buf copy(buf b)
{
    buf c;
    c.n = b.n;
    c.p = (unsigned char *)malloc(b.n ? b.n : 1);
    if (!c.p)
        die("out of memory");
    memcpy(c.p, b.p, b.n);
    return c;
}

/* Write b as OUT/<sub>/<name> for each of the subdirectories named in subs ("gguf qtensor"). */
static void emit(const char *subs, const char *name, const unsigned char *p, size_t n)
{
    char sub[32], path[1024];
    const char *s = subs;
    while (*s) {
        size_t len = strcspn(s, " ");
        FILE *f;
        if (len == 0 || len >= sizeof sub)
            die("bad subdirectory list");
        memcpy(sub, s, len);
        sub[len] = '\0';
        snprintf(path, sizeof path, "%s/%s/%s", out_dir, sub, name);
        f = fopen(path, "wb");
        if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0)
            die(path);
        n_written++;
        s += len;
        while (*s == ' ')
            s++;
    }
}

static void emit_buf(const char *subs, const char *name, buf b)
{
    emit(subs, name, b.p, b.n);
}

static char *tmp_path(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmp_dir, name);
    return p;
}

/* ---------------------------------------------------------------------------------------------- */
/* patching GGUF images                                                                            */

static qn_gguf_file *open_buf(buf b)
{
    qn_gguf_file *f = NULL;
    ok(qn_gguf_open_memory(ctx, b.p, b.n, &f), "reopen a GGUF image");
    return f;
}

/* Offset of the value of `key` (after its u32 type; for a STRING, after its u64 length). */
static size_t kv_value_off(buf b, const char *key)
{
    qn_gguf_file *f = open_buf(b);
    size_t i = qn_gguf_find_kv(f, key), len = 0, off;
    const char *k = NULL;
    qn_gguf_type t;
    if (i == QN_GGUF_NOT_FOUND)
        die(key);
    ok(qn_gguf_kv_key(f, i, &k, &len), "kv_key");
    ok(qn_gguf_kv_type(f, i, &t), "kv_type");
    off = (size_t)((const unsigned char *)k - b.p) + len + 4;
    if (t == QN_GGUF_STRING)
        off += 8;
    qn_gguf_close(f);
    return off;
}

/* Offset and size of the data of tensor `name`. */
static size_t tensor_off(buf b, const char *name, size_t *nbytes)
{
    qn_gguf_file *f = open_buf(b);
    size_t i = qn_gguf_find_tensor(f, name);
    qn_gguf_tensor t;
    size_t off;
    if (i == QN_GGUF_NOT_FOUND)
        die(name);
    ok(qn_gguf_tensor_info(f, i, &t), "tensor_info");
    off = (size_t)((const unsigned char *)t.data - b.p);
    if (nbytes)
        *nbytes = t.nbytes;
    qn_gguf_close(f);
    return off;
}

/* Recompute every qnoise.tensor_crc32c entry (after patching tensor bytes). */
static void fix_crc(buf b)
{
    qn_gguf_file *f = open_buf(b);
    size_t i = qn_gguf_find_kv(f, QN_GGUF_KEY_CRC32C), t;
    const void *raw = NULL;
    qn_gguf_type et;
    uint64_t count = 0;
    if (i == QN_GGUF_NOT_FOUND)
        die("no checksums");
    ok(qn_gguf_get_array(f, i, &et, &count, &raw), "crc array");
    for (t = 0; t < count; t++) {
        qn_gguf_tensor info;
        uint32_t c;
        unsigned char *dst = b.p + ((const unsigned char *)raw - b.p) + 4 * t;
        ok(qn_gguf_tensor_info(f, t, &info), "tensor_info");
        c = qn_crc32c(0, info.data, info.nbytes);
        dst[0] = (unsigned char)c;
        dst[1] = (unsigned char)(c >> 8);
        dst[2] = (unsigned char)(c >> 16);
        dst[3] = (unsigned char)(c >> 24);
    }
    qn_gguf_close(f);
}

static void put_le(unsigned char *p, uint64_t v, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

/* A copy of b with the n-byte little-endian value of `key` set to v. */
static void emit_kv_patch(const char *subs, const char *name, buf b, const char *key, uint64_t v, size_t n)
{
    buf c = copy(b);
    put_le(c.p + kv_value_off(c, key), v, n);
    emit_buf(subs, name, c);
    free(c.p);
}

/* A copy of b with the (same-length) string value of `key` replaced. */
static void emit_kv_string_patch(const char *subs, const char *name, buf b, const char *key, const char *s)
{
    buf c = copy(b);
    memcpy(c.p + kv_value_off(c, key), s, strlen(s));
    emit_buf(subs, name, c);
    free(c.p);
}

/* A copy of b with n bytes at offset `at` of tensor `tensor` replaced, checksums fixed when fix is set. */
static void emit_tensor_patch(const char *subs, const char *name, buf b, const char *tensor, size_t at,
                              const void *bytes, size_t n, int fix)
{
    buf c = copy(b);
    size_t nb = 0, off = tensor_off(c, tensor, &nb);
    if (at + n > nb)
        die("patch outside the tensor");
    memcpy(c.p + off + at, bytes, n);
    if (fix)
        fix_crc(c);
    emit_buf(subs, name, c);
    free(c.p);
}

/* ---------------------------------------------------------------------------------------------- */
/* models                                                                                          */

static buf save_gguf(const qn_model *m)
{
    ok(qn_model_save_gguf(m, tmp_path("m.gguf")), "save gguf");
    return read_all(tmp_path("m.gguf"));
}

static buf save_st(const qn_model *m, int decoded)
{
    ok(qn_model_save_safetensors(m, tmp_path("m.safetensors"), decoded), "save safetensors");
    return read_all(tmp_path("m.safetensors"));
}

static qn_qtensor *pq_tensor(size_t rows, size_t cols, size_t bs, size_t k)
{
    float *w = random_weights(rows * cols);
    qn_qtensor *qt = NULL;
    ok(qn_qtensor_from_pq(ctx, w, rows, cols, bs, k, 7, &qt), "from_pq");
    free(w);
    return qt;
}

static qn_qtensor *pq_codes_tensor(size_t rows, size_t cols, size_t bs, size_t k)
{
    size_t nb = rows * (cols / bs), i;
    float *c = random_weights(k * bs);
    uint16_t *codes = (uint16_t *)malloc(nb * sizeof *codes);
    qn_qtensor *qt = NULL;
    if (!codes)
        die("out of memory");
    for (i = 0; i < nb; i++)
        codes[i] = (uint16_t)((i * 7919u) % k);
    ok(qn_qtensor_from_pq_codes(ctx, rows, cols, bs, k, c, codes, &qt), "from_pq_codes");
    free(c);
    free(codes);
    return qt;
}

static qn_qtensor *scalar_tensor(size_t rows, size_t cols, unsigned bits, qn_observer obs, qn_qscheme sch)
{
    float *w = random_weights(rows * cols);
    qn_qtensor *qt = NULL;
    ok(qn_qtensor_from_scalar_ex(ctx, w, rows, cols, bits, obs, sch, &qt), "from_scalar");
    free(w);
    return qt;
}

static qn_model *new_model(void)
{
    qn_model *m = NULL;
    ok(qn_model_create(ctx, &m), "model_create");
    return m;
}

static void add_qt(qn_model *m, const char *name, qn_qtensor *qt)
{
    ok(qn_model_add_qtensor(m, name, qt), name);
}

static void add_dense(qn_model *m, const char *name, size_t ndim, const size_t *shape)
{
    size_t n = 1, i;
    float *w;
    for (i = 0; i < ndim; i++)
        n *= shape[i];
    w = random_weights(n ? n : 1);
    ok(qn_model_add_dense(m, name, ndim, shape, w), name);
    free(w);
}

/* Emit a model as GGUF (gguf + qtensor corpora) and safetensors decoded and native (safetensors + qtensor). */
static void emit_model(const char *stem, qn_model *m, int with_st)
{
    char name[128];
    buf b = save_gguf(m);
    snprintf(name, sizeof name, "%s.gguf", stem);
    emit_buf("gguf qtensor", name, b);
    free(b.p);
    if (with_st && QN_HAVE_SAFETENSORS) {
        b = save_st(m, 0);
        snprintf(name, sizeof name, "%s.safetensors", stem);
        emit_buf("safetensors qtensor", name, b);
        free(b.p);
        b = save_st(m, 1);
        snprintf(name, sizeof name, "%s-decoded.safetensors", stem);
        emit_buf("safetensors qtensor", name, b);
        free(b.p);
    }
}

static void valid_models(void)
{
    static const size_t s0[1] = {1}, s1[1] = {3}, s2[2] = {2, 3}, s4[4] = {2, 1, 2, 2}, se[2] = {0, 3};
    static const size_t conv[4] = {4, 2, 2, 2};
    qn_model *m;
    qn_qtensor *qt;
    static const char long_name[] = "encoder.layers.11.self_attention.output_projection.weight.quantized";

    m = new_model();
    add_dense(m, "scalar", 0, s0);
    add_dense(m, "bias", 1, s1);
    add_dense(m, "w", 2, s2);
    add_dense(m, "conv", 4, s4);
    add_dense(m, "empty", 2, se);
    emit_model("dense", m, 1);
    qn_model_destroy(m);

    /* PQ, 4-bit codes, the four codebook precisions */
    m = new_model();
    add_qt(m, "fc.weight", pq_tensor(8, 8, 4, 4));
    emit_model("pq4-f32", m, 1);
    qn_model_destroy(m);
    m = new_model();
    qt = pq_tensor(8, 8, 4, 5);
    ok(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, NULL), "fp16");
    add_qt(m, "fc.weight", qt);
    emit_model("pq4-f16", m, 1);
    qn_model_destroy(m);
    m = new_model();
    qt = pq_tensor(8, 8, 2, 16);
    ok(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, NULL), "int8 sym");
    add_qt(m, "fc.weight", qt);
    emit_model("pq4-i8sym", m, 1);
    qn_model_destroy(m);
    m = new_model();
    qt = pq_tensor(8, 8, 2, 6);
    ok(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, NULL), "int8 affine");
    add_qt(m, "fc.weight", qt);
    emit_model("pq4-i8affine", m, 1);
    qn_model_destroy(m);

    /* PQ, 8-bit and 16-bit codes; a conv-shaped PQ tensor */
    m = new_model();
    add_qt(m, "w8", pq_codes_tensor(16, 8, 4, 32));
    emit_model("pq8", m, 1);
    qn_model_destroy(m);
    m = new_model();
    add_qt(m, "w16", pq_codes_tensor(300, 2, 2, 300));
    emit_model("pq16", m, 1);
    qn_model_destroy(m);
    m = new_model();
    qt = pq_tensor(4, 8, 4, 4);
    ok(qn_qtensor_set_shape(qt, 4, conv), "set_shape");
    add_qt(m, "conv.weight", qt);
    emit_model("pq-conv", m, 1);
    qn_model_destroy(m);

    /* scalar: 2, 3, 4 and 8 bits, per tensor and per channel, symmetric and affine */
    m = new_model();
    add_qt(m, "s2", scalar_tensor(3, 5, 2, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE));
    add_qt(m, "s3", scalar_tensor(3, 5, 3, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_SYMMETRIC));
    emit_model("scalar-low", m, 1);
    qn_model_destroy(m);
    m = new_model();
    add_qt(m, "s4", scalar_tensor(4, 6, 4, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_AFFINE));
    add_qt(m, "s8", scalar_tensor(4, 6, 8, QN_OBSERVER_MINMAX, QN_QSCHEME_SYMMETRIC));
    emit_model("scalar-high", m, 1);
    qn_model_destroy(m);

    /* everything together, with a name too long for GGUF (stored as qnoise.<i>) */
    m = new_model();
    add_dense(m, "embed", 2, s2);
    add_qt(m, "fc1.weight", pq_tensor(8, 8, 4, 4));
    add_qt(m, "fc2.weight", scalar_tensor(2, 8, 4, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_SYMMETRIC));
    add_qt(m, long_name, pq_tensor(4, 4, 2, 2));
    add_dense(m, "fc2.bias", 1, s1);
    emit_model("mixed", m, 1);
    qn_model_destroy(m);

    m = new_model();
    emit_model("empty-model", m, 1);
    qn_model_destroy(m);
}

/* ---------------------------------------------------------------------------------------------- */
/* bad compressed models: one field of a valid file patched                                        */

static void bad_models(void)
{
    qn_model *m;
    qn_qtensor *qt;
    buf pq, sc, i8;
    unsigned char nan_f32[4] = {0x00, 0x00, 0xc0, 0x7f}, inf_f32[4] = {0x00, 0x00, 0x80, 0x7f};
    unsigned char zero_f32[4] = {0, 0, 0, 0}, neg_f32[4] = {0x00, 0x00, 0x80, 0xbf};
    unsigned char big_f32[4] = {0xff, 0xff, 0x7f, 0x7f}; /* FLT_MAX */
    unsigned char ff = 0xff, m128 = 0x80, zp[4] = {0x00, 0x01, 0x00, 0x00}; /* 256 */

    m = new_model();
    add_qt(m, "w", pq_tensor(8, 8, 4, 5)); /* K = 5 in 4-bit codes: nibbles 5..15 are out of range */
    pq = save_gguf(m);
    qn_model_destroy(m);
    m = new_model();
    add_qt(m, "s", scalar_tensor(4, 6, 3, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_SYMMETRIC));
    sc = save_gguf(m);
    qn_model_destroy(m);
    m = new_model();
    qt = pq_tensor(8, 8, 2, 6);
    ok(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, NULL), "int8");
    add_qt(m, "w", qt);
    i8 = save_gguf(m);
    qn_model_destroy(m);

    /* checksums */
    emit_tensor_patch("gguf qtensor", "bad-crc.gguf", pq, "w.codes", 0, &ff, 1, 0);
    /* codes and codebooks */
    emit_tensor_patch("qtensor", "bad-code-ge-k.gguf", pq, "w.codes", 1, &ff, 1, 1);
    emit_tensor_patch("qtensor", "bad-codebook-nan.gguf", pq, "w.codebook", 8, nan_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-codebook-inf.gguf", pq, "w.codebook", 0, inf_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-i8-minus128.gguf", i8, "w.codebook", 3, &m128, 1, 1);
    emit_kv_patch("qtensor", "bad-i8-scale-zero.gguf", i8, "qnoise.t.0.codebook_scale", 0, 4);
    emit_kv_patch("qtensor", "bad-i8-zero-point.gguf", i8, "qnoise.t.0.codebook_zero_point", 200, 4);
    emit_kv_string_patch("qtensor", "bad-i8-scheme.gguf", i8, "qnoise.t.0.codebook_scheme", "symmetrix");
    /* scalar parameters */
    emit_tensor_patch("qtensor", "bad-scale-zero.gguf", sc, "s.scale", 0, zero_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-scale-negative.gguf", sc, "s.scale", 4, neg_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-scale-nan.gguf", sc, "s.scale", 8, nan_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-scale-huge.gguf", sc, "s.scale", 0, big_f32, 4, 1);
    emit_tensor_patch("qtensor", "bad-zero-point.gguf", sc, "s.zero", 0, zp, 4, 1);
    emit_tensor_patch("qtensor", "bad-scalar-code.gguf", sc, "s.q", 0, &ff, 1, 1);
    emit_kv_patch("qtensor", "bad-bits.gguf", sc, "qnoise.t.0.bits", 9, 4);
    emit_kv_patch("qtensor", "bad-per-channel-bool.gguf", sc, "qnoise.t.0.per_channel", 2, 1);
    emit_kv_string_patch("qtensor", "bad-scheme.gguf", sc, "qnoise.t.0.scheme", "affinx");
    /* shapes and sizes: the declared matrix disagrees with the tensors, or is huge */
    emit_kv_patch("qtensor", "bad-rows.gguf", pq, "qnoise.t.0.rows", 9, 8);
    emit_kv_patch("qtensor", "bad-rows-huge.gguf", pq, "qnoise.t.0.rows", (uint64_t)1 << 40, 8);
    emit_kv_patch("qtensor", "bad-cols-huge.gguf", pq, "qnoise.t.0.cols", (uint64_t)1 << 62, 8);
    emit_kv_patch("qtensor", "bad-block-size.gguf", pq, "qnoise.t.0.block_size", 3, 4);
    emit_kv_patch("qtensor", "bad-block-size-zero.gguf", pq, "qnoise.t.0.block_size", 0, 4);
    emit_kv_patch("qtensor", "bad-k-one.gguf", pq, "qnoise.t.0.n_centroids", 1, 4);
    emit_kv_patch("qtensor", "bad-k-huge.gguf", pq, "qnoise.t.0.n_centroids", 70000, 4);
    emit_kv_patch("qtensor", "bad-code-bits.gguf", pq, "qnoise.t.0.code_bits", 8, 4);
    emit_kv_patch("qtensor", "bad-tensor-count.gguf", pq, "qnoise.tensor_count", 1000, 8);
    emit_kv_patch("qtensor", "bad-format-version.gguf", pq, "qnoise.format_version", 2, 4);
    emit_kv_string_patch("qtensor", "bad-kind.gguf", pq, "qnoise.t.0.kind", "qq");
    emit_kv_string_patch("qtensor", "bad-codebook-precision.gguf", pq, "qnoise.t.0.codebook", "f64");
    emit_kv_string_patch("qtensor", "bad-architecture.gguf", pq, "general.architecture", "llama!");
    emit_kv_string_patch("qtensor", "bad-gguf-name.gguf", pq, "qnoise.t.0.gguf_name", "v");
    free(pq.p);
    free(sc.p);
    free(i8.p);

    /*
     * Declared sizes far beyond the file, consistent with each other so that only the component
     * tensors' dims can refute them: the loader must look those up before allocating (a scalar
     * 2^20 x 2^20 would be 1 TiB of codes; a PQ codebook of 2 x 2^29 floats 4 GiB).
     */
    m = new_model();
    add_qt(m, "s", scalar_tensor(2, 4, 8, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE));
    sc = save_gguf(m);
    qn_model_destroy(m);
    {
        buf c = copy(sc);
        size_t sh = kv_value_off(c, "qnoise.t.0.shape") + 12; /* after the element type and count */
        put_le(c.p + sh, (uint64_t)1 << 20, 8);
        put_le(c.p + sh + 8, (uint64_t)1 << 20, 8);
        put_le(c.p + kv_value_off(c, "qnoise.t.0.rows"), (uint64_t)1 << 20, 8);
        put_le(c.p + kv_value_off(c, "qnoise.t.0.cols"), (uint64_t)1 << 20, 8);
        emit_buf("qtensor", "bad-huge-scalar-declared.gguf", c);
        free(c.p);
    }
    free(sc.p);
    m = new_model();
    add_qt(m, "w", pq_tensor(2, 8, 4, 2)); /* one byte of 4-bit codes per row, also for cols / bs = 1 */
    pq = save_gguf(m);
    qn_model_destroy(m);
    {
        buf c = copy(pq);
        size_t sh = kv_value_off(c, "qnoise.t.0.shape") + 12;
        put_le(c.p + sh + 8, (uint64_t)1 << 29, 8);
        put_le(c.p + kv_value_off(c, "qnoise.t.0.cols"), (uint64_t)1 << 29, 8);
        put_le(c.p + kv_value_off(c, "qnoise.t.0.block_size"), (uint64_t)1 << 29, 4);
        emit_buf("qtensor", "bad-huge-codebook-declared.gguf", c);
        free(c.p);
    }
    free(pq.p);
}

/* ---------------------------------------------------------------------------------------------- */
/* raw GGUF containers                                                                             */

static void raw_gguf(void)
{
    qn_gguf_writer *w = NULL;
    static const uint8_t u8s[3] = {1, 2, 255};
    static const int16_t i16s[2] = {-1, 7};
    static const uint32_t u32s[2] = {0, 0xffffffffu};
    static const float f32s[2] = {1.5f, -0.0f};
    static const double f64s[1] = {3.25};
    static const uint8_t bools[3] = {0, 1, 1};
    static const uint64_t u64s[2] = {1, (uint64_t)1 << 63};
    static const int64_t i64s[1] = {-5};
    static const char *const strs[3] = {"a", "", "ccc"};
    float f[12];
    uint16_t h[6];
    int8_t i8[5] = {-128, -1, 0, 1, 127};
    int16_t i16[4] = {-32768, -1, 1, 32767};
    int32_t i32[3] = {INT32_MIN, 0, INT32_MAX};
    uint64_t d1[1], d2[2], d4[4];
    size_t i;
    buf b;

    for (i = 0; i < 12; i++)
        f[i] = uniform();
    for (i = 0; i < 6; i++)
        h[i] = qn_f32_to_f16(f[i]);

    /* every value type and every tensor type */
    ok(qn_gguf_writer_create(ctx, &w), "writer");
    ok(qn_gguf_add_u8(w, "k.u8", 200), "u8");
    ok(qn_gguf_add_i8(w, "k.i8", -3), "i8");
    ok(qn_gguf_add_u16(w, "k.u16", 60000), "u16");
    ok(qn_gguf_add_i16(w, "k.i16", -30000), "i16");
    ok(qn_gguf_add_u32(w, "k.u32", 4000000000u), "u32");
    ok(qn_gguf_add_i32(w, "k.i32", -7), "i32");
    ok(qn_gguf_add_u64(w, "k.u64", (uint64_t)1 << 40), "u64");
    ok(qn_gguf_add_i64(w, "k.i64", -((int64_t)1 << 40)), "i64");
    ok(qn_gguf_add_f32(w, "k.f32", 0.5f), "f32");
    ok(qn_gguf_add_f64(w, "k.f64", -2.5), "f64");
    ok(qn_gguf_add_bool(w, "k.bool", 1), "bool");
    ok(qn_gguf_add_string(w, "k.str", "hello"), "str");
    ok(qn_gguf_add_string_len(w, "k.str0", "a\0b", 3), "str0");
    ok(qn_gguf_add_array(w, "a.u8", QN_GGUF_U8, u8s, 3), "a.u8");
    ok(qn_gguf_add_array(w, "a.i16", QN_GGUF_I16, i16s, 2), "a.i16");
    ok(qn_gguf_add_array(w, "a.u32", QN_GGUF_U32, u32s, 2), "a.u32");
    ok(qn_gguf_add_array(w, "a.f32", QN_GGUF_F32, f32s, 2), "a.f32");
    ok(qn_gguf_add_array(w, "a.f64", QN_GGUF_F64, f64s, 1), "a.f64");
    ok(qn_gguf_add_array(w, "a.bool", QN_GGUF_BOOL, bools, 3), "a.bool");
    ok(qn_gguf_add_array(w, "a.u64", QN_GGUF_U64, u64s, 2), "a.u64");
    ok(qn_gguf_add_array(w, "a.i64", QN_GGUF_I64, i64s, 1), "a.i64");
    ok(qn_gguf_add_array(w, "a.empty", QN_GGUF_I32, NULL, 0), "a.empty");
    ok(qn_gguf_add_string_array(w, "a.str", strs, NULL, 3), "a.str");
    d2[0] = 3;
    d2[1] = 4;
    ok(qn_gguf_add_tensor(w, "f32", QN_GGML_F32, 2, d2, f, sizeof f), "t f32");
    d1[0] = 6;
    ok(qn_gguf_add_tensor(w, "f16", QN_GGML_F16, 1, d1, h, sizeof h), "t f16");
    d1[0] = 5;
    ok(qn_gguf_add_tensor(w, "i8", QN_GGML_I8, 1, d1, i8, sizeof i8), "t i8");
    d4[0] = 2;
    d4[1] = 1;
    d4[2] = 2;
    d4[3] = 1;
    ok(qn_gguf_add_tensor(w, "i16", QN_GGML_I16, 4, d4, i16, sizeof i16), "t i16");
    d1[0] = 3;
    ok(qn_gguf_add_tensor(w, "i32", QN_GGML_I32, 1, d1, i32, sizeof i32), "t i32");
    d2[0] = 0;
    d2[1] = 5;
    ok(qn_gguf_add_tensor(w, "empty", QN_GGML_F32, 2, d2, NULL, 0), "t empty");
    ok(qn_gguf_write_file(w, tmp_path("raw.gguf")), "write raw");
    qn_gguf_writer_destroy(w);
    b = read_all(tmp_path("raw.gguf"));
    emit_buf("gguf", "all-types.gguf", b);
    /* truncations of it: inside the header, the pairs, the tensor infos, the data */
    {
        static const size_t cuts[] = {3, 10, 23, 40, 200, 600};
        char name[64];
        for (i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
            if (cuts[i] < b.n) {
                snprintf(name, sizeof name, "bad-truncated-%zu.gguf", cuts[i]);
                emit("gguf qtensor", name, b.p, cuts[i]);
            }
        emit("gguf", "bad-truncated-data.gguf", b.p, b.n - 1);
    }
    /* header fields */
    {
        buf c = copy(b);
        memcpy(c.p, "GGUG", 4);
        emit_buf("gguf", "bad-magic.gguf", c);
        memcpy(c.p, "GGUF", 4);
        put_le(c.p + 4, 1, 4);
        emit_buf("gguf", "bad-version-1.gguf", c);
        put_le(c.p + 4, 4, 4);
        emit_buf("gguf", "bad-version-4.gguf", c);
        put_le(c.p + 4, 0x03000000u, 4);
        emit_buf("gguf", "bad-big-endian.gguf", c);
        put_le(c.p + 4, 2, 4);
        emit_buf("gguf", "version-2.gguf", c);
        put_le(c.p + 4, 3, 4);
        put_le(c.p + 8, (uint64_t)1 << 60, 8);
        emit_buf("gguf qtensor", "bad-tensor-count-huge.gguf", c);
        put_le(c.p + 8, 6, 8);
        put_le(c.p + 16, (uint64_t)1 << 59, 8);
        emit_buf("gguf qtensor", "bad-kv-count-huge.gguf", c);
        free(c.p);
    }
    /* a string length past the end, an unknown value type, a nested array, a bad BOOL */
    {
        buf c = copy(b);
        size_t off = kv_value_off(c, "k.str");
        put_le(c.p + off - 8, (uint64_t)1 << 40, 8);
        emit_buf("gguf", "bad-string-length.gguf", c);
        memcpy(c.p, b.p, b.n);
        put_le(c.p + kv_value_off(c, "k.i32") - 4, 13, 4);
        emit_buf("gguf", "bad-value-type.gguf", c);
        memcpy(c.p, b.p, b.n);
        put_le(c.p + kv_value_off(c, "a.u8"), 9, 4);
        emit_buf("gguf", "bad-nested-array.gguf", c);
        memcpy(c.p, b.p, b.n);
        put_le(c.p + kv_value_off(c, "a.u8") + 4, (uint64_t)1 << 62, 8);
        emit_buf("gguf", "bad-array-length.gguf", c);
        memcpy(c.p, b.p, b.n);
        c.p[kv_value_off(c, "k.bool")] = 2;
        emit_buf("gguf", "bad-bool.gguf", c);
        free(c.p);
    }
    free(b.p);

    /* duplicate names, overlapping tensors, an unsupported tensor type, bad alignment: from a small file */
    ok(qn_gguf_writer_create(ctx, &w), "writer");
    ok(qn_gguf_add_u32(w, "general.alignment", 8), "alignment");
    ok(qn_gguf_add_string(w, "aa", "x"), "aa");
    ok(qn_gguf_add_string(w, "ab", "y"), "ab");
    d1[0] = 2;
    ok(qn_gguf_add_tensor(w, "ta", QN_GGML_F32, 1, d1, f, 8), "ta");
    ok(qn_gguf_add_tensor(w, "tb", QN_GGML_F32, 1, d1, f + 2, 8), "tb");
    ok(qn_gguf_write_file(w, tmp_path("small.gguf")), "write small");
    qn_gguf_writer_destroy(w);
    b = read_all(tmp_path("small.gguf"));
    emit_buf("gguf", "align-8.gguf", b);
    {
        buf c = copy(b);
        size_t off = kv_value_off(c, "ab"), toff;
        /* key "ab" -> "aa": a duplicate key */
        c.p[off - 8 - 4 - 1] = 'a';
        emit_buf("gguf", "bad-duplicate-key.gguf", c);
        memcpy(c.p, b.p, b.n);
        /* alignment 12: not a multiple of 8 */
        put_le(c.p + kv_value_off(c, "general.alignment"), 12, 4);
        emit_buf("gguf", "bad-alignment.gguf", c);
        memcpy(c.p, b.p, b.n);
        put_le(c.p + kv_value_off(c, "general.alignment"), 0, 4);
        emit_buf("gguf", "bad-alignment-zero.gguf", c);
        memcpy(c.p, b.p, b.n);
        /* tensor infos: find "tb" by its name bytes and edit what follows */
        {
            qn_gguf_file *f2 = open_buf(c);
            qn_gguf_tensor ta, tb;
            const unsigned char *p;
            ok(qn_gguf_tensor_info(f2, 0, &ta), "ta");
            ok(qn_gguf_tensor_info(f2, 1, &tb), "tb");
            p = (const unsigned char *)tb.name;
            qn_gguf_close(f2);
            toff = (size_t)(p - c.p) + tb.name_len; /* n_dims, dims[0], type, offset */
            c.p[toff - 1] = 'a';                     /* "tb" -> "ta" */
            emit_buf("gguf", "bad-duplicate-tensor.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff + 4 + 8 + 4, ta.offset, 8);
            emit_buf("gguf", "bad-overlap.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff + 4 + 8 + 4, ta.offset + 4, 8);
            emit_buf("gguf", "bad-misaligned-offset.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff + 4 + 8 + 4, (uint64_t)1 << 40, 8);
            emit_buf("gguf", "bad-offset-past-end.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff + 4 + 8, 2 /* Q4_0 */, 4);
            emit_buf("gguf", "bad-tensor-type.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff, 5, 4);
            emit_buf("gguf", "bad-n-dims.gguf", c);
            memcpy(c.p, b.p, b.n);
            put_le(c.p + toff + 4, (uint64_t)1 << 62, 8);
            emit_buf("gguf", "bad-dims-overflow.gguf", c);
        }
        free(c.p);
    }
    free(b.p);

    /* no tensors, no pairs */
    ok(qn_gguf_writer_create(ctx, &w), "writer");
    ok(qn_gguf_write_file(w, tmp_path("empty.gguf")), "write empty");
    qn_gguf_writer_destroy(w);
    b = read_all(tmp_path("empty.gguf"));
    emit_buf("gguf", "empty.gguf", b);
    free(b.p);
}

/* ---------------------------------------------------------------------------------------------- */
/* raw safetensors containers                                                                      */

/* A safetensors image from header text and data bytes. */
static void emit_st_raw(const char *subs, const char *name, const char *header, const void *data, size_t n)
{
    size_t hl = strlen(header);
    unsigned char *p = (unsigned char *)malloc(8 + hl + n + 1);
    if (!p)
        die("out of memory");
    put_le(p, hl, 8);
    memcpy(p + 8, header, hl);
    if (n)
        memcpy(p + 8 + hl, data, n);
    emit(subs, name, p, 8 + hl + n);
    free(p);
}

static void raw_safetensors(void)
{
    qn_st_writer *w = NULL;
    unsigned char bytes[64];
    uint64_t shape[QN_ST_MAX_RANK];
    unsigned d;
    size_t i;
    buf b;
    static const unsigned char f32_pair[8] = {0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0}; /* 1, -2 */

    if (!QN_HAVE_SAFETENSORS)
        return;
    for (i = 0; i < sizeof bytes; i++)
        bytes[i] = (unsigned char)(i * 37u + 11u);
    /* every dtype; ranks 0 to 8; an empty tensor; metadata */
    ok(qn_st_writer_create(ctx, &w), "st writer");
    for (i = 0; i < QN_ST_DTYPE_COUNT; i++) {
        char name[32];
        size_t es = qn_st_dtype_size((qn_st_dtype)i);
        snprintf(name, sizeof name, "t.%s", qn_st_dtype_name((qn_st_dtype)i));
        shape[0] = 2;
        ok(qn_st_add_tensor(w, name, (qn_st_dtype)i, 1, shape, bytes, 2 * es), name);
    }
    for (d = 0; d <= QN_ST_MAX_RANK; d++) {
        char name[32];
        for (i = 0; i < d; i++)
            shape[i] = 1;
        snprintf(name, sizeof name, "rank%u", d);
        ok(qn_st_add_tensor(w, name, QN_ST_F16, d, shape, bytes, 2), name);
    }
    shape[0] = 0;
    shape[1] = 7;
    ok(qn_st_add_tensor(w, "empty", QN_ST_F32, 2, shape, NULL, 0), "empty");
    ok(qn_st_add_metadata(w, "format", "pt"), "meta");
    ok(qn_st_add_metadata(w, "note", "\"quoted\"\n\\"), "meta2");
    ok(qn_st_write_file(w, tmp_path("all.safetensors")), "write st");
    qn_st_writer_destroy(w);
    b = read_all(tmp_path("all.safetensors"));
    emit_buf("safetensors qtensor", "all-dtypes.safetensors", b);
    emit("safetensors", "bad-truncated-header.safetensors", b.p, 40);
    emit("safetensors", "bad-truncated-data.safetensors", b.p, b.n - 1);
    free(b.p);

    /* hand-written headers: valid edge cases */
    emit_st_raw("safetensors qtensor", "empty-object.safetensors", "{}", NULL, 0);
    emit_st_raw("safetensors", "padded.safetensors", "{}      ", NULL, 0);
    emit_st_raw("safetensors qtensor", "unaligned.safetensors",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1,9]}}",
                "\x05\x00\x00\x80\x3f\x00\x00\x00\xc0", 9);
    emit_st_raw("safetensors qtensor", "bf16.safetensors",
                "{\"b\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[0,4]},\"__metadata__\":{\"k\":\"v\"}}",
                "\x80\x3f\x80\xff", 4);
    emit_st_raw("safetensors", "zero-dims.safetensors",
                "{\"z\":{\"dtype\":\"F32\",\"shape\":[0,18446744073709551615],\"data_offsets\":[0,0]}}", NULL, 0);
    /* hand-written headers: one rule broken each */
    {
        static const struct {
            const char *name, *header;
            size_t n;
        } bad[] = {
            {"bad-not-object", "[1,2]", 0},
            {"bad-trailing-newline", "{}\n", 0},
            {"bad-trailing-nul", "{}\0", 0},
            {"bad-json", "{\"a\":", 0},
            {"bad-duplicate-key",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8},
            {"bad-dtype", "{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8},
            {"bad-rank-9", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1},
            {"bad-shape-real", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8},
            {"bad-shape-negative", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8},
            {"bad-shape-overflow",
             "{\"a\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8},
            {"bad-offsets-size", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 8},
            {"bad-offsets-reversed", "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8},
            {"bad-offsets-three", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8},
            {"bad-hole",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[5,6]}}",
             6},
            {"bad-overlap",
             "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
             8},
            {"bad-data-left-over", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 2},
            {"bad-metadata-number", "{\"__metadata__\":{\"k\":1}}", 0},
            {"bad-metadata-nested", "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0},
            {"bad-entry-not-object", "{\"a\":[]}", 0},
            {"bad-nul-in-name", "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1},
            {"bad-utf8", "{\"\xc3\x28\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1},
            {"bad-int-overflow",
             "{\"a\":{\"dtype\":\"U8\",\"shape\":[99999999999999999999],\"data_offsets\":[0,1]}}", 1},
        };
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            char name[64];
            size_t hl = strcmp(bad[i].name, "bad-trailing-nul") == 0 ? 3 : strlen(bad[i].header);
            unsigned char *p = (unsigned char *)malloc(8 + hl + bad[i].n + 1);
            if (!p)
                die("out of memory");
            put_le(p, hl, 8);
            memcpy(p + 8, bad[i].header, hl);
            memset(p + 8 + hl, 0, bad[i].n);
            if (bad[i].n >= 8)
                memcpy(p + 8 + hl, f32_pair, 8);
            snprintf(name, sizeof name, "%s.safetensors", bad[i].name);
            emit("safetensors", name, p, 8 + hl + bad[i].n);
            free(p);
        }
    }
    /* header length field: larger than the file, and above the 100 MB limit */
    {
        unsigned char p[10];
        put_le(p, 2, 8);
        memcpy(p + 8, "{}", 2);
        put_le(p, 3, 8);
        emit("safetensors", "bad-header-length.safetensors", p, 10);
        put_le(p, (uint64_t)200000000, 8);
        emit("safetensors", "bad-header-huge.safetensors", p, 10);
        emit("safetensors", "bad-short.safetensors", p, 7);
    }
}

/* Compressed tensors in safetensors with a hand-written "qnoise" description. */
static void st_compressed(void)
{
    static const char *const descr[] = {
        /* valid: a 2 x 4 PQ tensor, bs 2, K 2 (4-bit codes: 1 byte per row), fp32 codebook */
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"pq\",\"shape\":[2,4],\"rows\":2,\"cols\":4,"
        "\"code_bits\":4,\"block_size\":2,\"n_centroids\":2,\"codebook\":\"f32\"}}}",
        "{\"format_version\":2,\"tensors\":{}}",
        "{\"format_version\":1,\"tensors\":[]}",
        "not json",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"pq\",\"shape\":[2,4],\"rows\":2,\"cols\":4,"
        "\"code_bits\":4,\"block_size\":2,\"n_centroids\":1,\"codebook\":\"f32\"}}}",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"pq\",\"shape\":[2,4],\"rows\":1099511627776,"
        "\"cols\":4,\"code_bits\":4,\"block_size\":2,\"n_centroids\":2,\"codebook\":\"f32\"}}}",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"pq\",\"shape\":[1099511627776,1099511627776],"
        "\"rows\":1099511627776,\"cols\":1099511627776,\"code_bits\":4,\"block_size\":1099511627776,"
        "\"n_centroids\":2,\"codebook\":\"f32\"}}}",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"scalar\",\"shape\":[2,4],\"rows\":2,\"cols\":4,"
        "\"code_bits\":4,\"bits\":4,\"scheme\":\"affine\",\"per_channel\":false}}}",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"int4\",\"shape\":[2,4],\"rows\":2,\"cols\":4}}}",
        "{\"format_version\":1,\"tensors\":{\"x\":{\"kind\":\"pq\",\"shape\":[2,4],\"rows\":2,\"cols\":4,"
        "\"code_bits\":4,\"block_size\":2,\"n_centroids\":2,\"codebook\":\"f32\"}}}",
        /* declared sizes far beyond the file: 4 GiB of codebook, 1 TiB of scalar codes */
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"pq\",\"shape\":[2,536870912],\"rows\":2,"
        "\"cols\":536870912,\"code_bits\":4,\"block_size\":536870912,\"n_centroids\":2,\"codebook\":\"f32\"}}}",
        "{\"format_version\":1,\"tensors\":{\"w\":{\"kind\":\"scalar\",\"shape\":[1048576,1048576],"
        "\"rows\":1048576,\"cols\":1048576,\"code_bits\":8,\"bits\":8,\"scheme\":\"affine\",\"per_channel\":false}}}",
    };
    static const unsigned char codes[2] = {0x10, 0x11};
    static const unsigned char bad_codes[2] = {0x12, 0x11}; /* code 2 with K = 2 */
    float cb[4] = {0.5f, -1.0f, 2.0f, 0.25f};
    uint64_t s2[2];
    size_t i;
    if (!QN_HAVE_SAFETENSORS)
        return;
    for (i = 0; i < sizeof descr / sizeof descr[0] + 1; i++) {
        qn_st_writer *w = NULL;
        char name[64];
        buf b;
        ok(qn_st_writer_create(ctx, &w), "st writer");
        s2[0] = 2;
        s2[1] = 1;
        ok(qn_st_add_tensor(w, "w.codes", QN_ST_U8, 2, s2, i == sizeof descr / sizeof descr[0] ? bad_codes : codes,
                            2),
           "codes");
        s2[0] = 2;
        s2[1] = 2;
        ok(qn_st_add_tensor(w, "w.codebook", QN_ST_F32, 2, s2, cb, sizeof cb), "codebook");
        ok(qn_st_add_metadata(w, "qnoise", descr[i < sizeof descr / sizeof descr[0] ? i : 0]), "qnoise");
        ok(qn_st_write_file(w, tmp_path("c.safetensors")), "write");
        qn_st_writer_destroy(w);
        b = read_all(tmp_path("c.safetensors"));
        if (i == 0)
            snprintf(name, sizeof name, "pq-handwritten.safetensors");
        else if (i == sizeof descr / sizeof descr[0])
            snprintf(name, sizeof name, "bad-code-ge-k.safetensors");
        else
            snprintf(name, sizeof name, "bad-qnoise-meta-%zu.safetensors", i);
        emit_buf("qtensor", name, b);
        free(b.p);
    }
}

static void make_dir(const char *sub)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", out_dir, sub);
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        die(p);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
        return 1;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) != 0 && errno != EEXIST)
        die(out_dir);
    make_dir("gguf");
    make_dir("safetensors");
    make_dir("qtensor");
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/qn_fuzz_corpus_XXXXXX");
    if (!mkdtemp(tmp_dir))
        die("mkdtemp");
    ok(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, QN_ISA_SCALAR, &ctx), "context");
    valid_models();
    bad_models();
    raw_gguf();
    raw_safetensors();
    st_compressed();
    qn_context_destroy(ctx);
    unlink(tmp_path("m.gguf"));
    unlink(tmp_path("m.safetensors"));
    unlink(tmp_path("raw.gguf"));
    unlink(tmp_path("small.gguf"));
    unlink(tmp_path("empty.gguf"));
    unlink(tmp_path("all.safetensors"));
    unlink(tmp_path("c.safetensors"));
    rmdir(tmp_dir);
    printf("%d files written under %s\n", n_written, out_dir);
    return 0;
}
