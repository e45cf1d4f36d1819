/*
 * Models (named dense and compressed tensors) through GGUF and safetensors
 * files, via the shared library only:
 *   - round trips are exact: names, shapes, kinds, parameters, codes,
 *     codebooks, scales, and the decoded weights bit for bit (4-, 8- and
 *     16-bit codes; fp32, fp16 and int8 codebooks; scalar 3-bit and 8-bit,
 *     per tensor and per channel; dense tensors of 0 to 4 dimensions; names
 *     longer than GGUF's 64-byte limit), with mmap and with plain reads;
 *   - safetensors export decoded (all F32, values equal the decode) and
 *     compressed (restored by the loader);
 *   - the file size bound: every compressed tensor's nbytes is in the file;
 *   - errors: duplicate names, missing directory (nothing created), a file of
 *     another architecture, a flipped byte (checksum), allocation failures
 *     (no leak, nothing written).
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

#include <qnoise/qtensor.h>

static char tmpdir[256];

static void setup_dir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qn_test_model_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown_dir(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    char p[512];
    if (!d)
        return;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmpdir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmpdir);
}

static size_t dir_entries(void)
{
    DIR *d = opendir(tmpdir);
    struct dirent *e;
    size_t n = 0;
    ck_assert_ptr_nonnull(d);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static float *rand_vec(uint64_t *st, size_t n)
{
    float *v = (float *)malloc(n * sizeof(float) + 1);
    size_t i;
    ck_assert_ptr_nonnull(v);
    for (i = 0; i < n; i++)
        v[i] = qn_test_uniform(st) * 2.0f;
    return v;
}

#define LONG_NAME "encoder.layers.11.self_attention.output_projection.linear_layer.weight_quantized"

/* A model with one of everything; returns the number of tensors. */
static size_t build_model(qn_context *ctx, qn_model *m)
{
    uint64_t st = 42;
    qn_qtensor *qt = NULL;
    float *w;
    float scalar0 = 3.25f;
    size_t s1[1] = {5}, s4[4] = {2, 3, 2, 2}, conv[4] = {8, 4, 3, 3};
    float *d1 = rand_vec(&st, 5), *d4 = rand_vec(&st, 24);
    ck_assert_int_eq(qn_model_add_dense(m, "scalar0", 0, NULL, &scalar0), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "bias", 1, s1, d1), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "dense4", 4, s4, d4), QN_OK);
    /* PQ K = 16 (4-bit codes), odd blocks per row (3), fp32 codebook */
    w = rand_vec(&st, 20 * 12);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 20, 12, 4, 16, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "pq4", qt), QN_OK);
    free(w);
    /* PQ K = 200 (8-bit), conv shape, fp16 codebook */
    w = rand_vec(&st, 8 * 36 * 8);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 64, 36, 9, 200, 2, &qt), QN_OK);
    free(w);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, NULL), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "pq8", qt), QN_OK);
    /* PQ K = 300 (16-bit codes), int8 affine codebook, long name */
    w = rand_vec(&st, 160 * 8);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 160, 8, 4, 300, 3, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_AFFINE, NULL), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, LONG_NAME, qt), QN_OK);
    free(w);
    /* PQ with a 4-D conv shape and an int8 symmetric codebook */
    w = rand_vec(&st, 8 * 36);
    ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 8, 36, 9, 4, 4, &qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_shape(qt, 4, conv), QN_OK);
    ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, NULL), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "conv.weight", qt), QN_OK);
    free(w);
    /* scalar 3-bit per tensor affine (4-bit codes, odd row length), 8-bit per channel symmetric */
    w = rand_vec(&st, 7 * 9);
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 7, 9, 3, 0, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "s3", qt), QN_OK);
    free(w);
    w = rand_vec(&st, 6 * 10);
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 6, 10, 8, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "s8", qt), QN_OK);
    free(w);
    free(d1);
    free(d4);
    return 9;
}

/* Every property of b equals a's, and the decoded values are bit-identical. */
static void assert_same_model(const qn_model *a, const qn_model *b, int decoded_only)
{
    size_t na = 0, nb = 0, i, j;
    ck_assert_int_eq(qn_model_count(a, &na), QN_OK);
    ck_assert_int_eq(qn_model_count(b, &nb), QN_OK);
    ck_assert_uint_eq(na, nb);
    for (i = 0; i < na; i++) {
        const char *name = NULL;
        size_t k = 0, da = 0, db = 0, sa[4], sb[4], numel = 1;
        int ca = 0, cb = 0;
        float *va, *vb;
        ck_assert_int_eq(qn_model_get_name(a, i, &name), QN_OK);
        ck_assert_int_eq(qn_model_find(b, name, &k), QN_OK);
        ck_assert_int_eq(qn_model_get_info(a, i, &ca, &da, sa), QN_OK);
        ck_assert_int_eq(qn_model_get_info(b, k, &cb, &db, sb), QN_OK);
        ck_assert_uint_eq(da, db);
        for (j = 0; j < da; j++) {
            ck_assert_uint_eq(sa[j], sb[j]);
            numel *= sa[j];
        }
        ck_assert_int_eq(cb, decoded_only ? 0 : ca);
        va = (float *)malloc(numel * sizeof(float));
        vb = (float *)malloc(numel * sizeof(float));
        ck_assert_int_eq(qn_model_get_dense(a, i, va, numel), QN_OK);
        ck_assert_int_eq(qn_model_get_dense(b, k, vb, numel), QN_OK);
        ck_assert_msg(memcmp(va, vb, numel * sizeof(float)) == 0, "values of %s differ", name);
        if (ca && cb) {
            const qn_qtensor *qa = NULL, *qb = NULL;
            qn_qtensor_kind ka, kb;
            ck_assert_int_eq(qn_model_get_qtensor(a, i, &qa), QN_OK);
            ck_assert_int_eq(qn_model_get_qtensor(b, k, &qb), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_kind(qa, &ka), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_kind(qb, &kb), QN_OK);
            ck_assert_int_eq(ka, kb);
            ck_assert_uint_eq(qn_qtensor_nbytes(qa), qn_qtensor_nbytes(qb));
            if (ka == QN_QTENSOR_PQ) {
                size_t bsa, bsb, kka, kkb, rows, cols;
                unsigned cba, cbb;
                qn_codebook_precision pa, pb;
                uint16_t *ca16, *cb16;
                ck_assert_int_eq(qn_qtensor_get_pq(qa, &bsa, &kka, &cba, &pa), QN_OK);
                ck_assert_int_eq(qn_qtensor_get_pq(qb, &bsb, &kkb, &cbb, &pb), QN_OK);
                ck_assert_uint_eq(bsa, bsb);
                ck_assert_uint_eq(kka, kkb);
                ck_assert_uint_eq(cba, cbb);
                ck_assert_int_eq(pa, pb);
                ck_assert_int_eq(qn_qtensor_get_matrix(qa, &rows, &cols), QN_OK);
                ca16 = (uint16_t *)malloc(rows * cols / bsa * 2);
                cb16 = (uint16_t *)malloc(rows * cols / bsa * 2);
                ck_assert_int_eq(qn_qtensor_get_codes(qa, ca16, rows * cols / bsa), QN_OK);
                ck_assert_int_eq(qn_qtensor_get_codes(qb, cb16, rows * cols / bsa), QN_OK);
                ck_assert_mem_eq(ca16, cb16, rows * cols / bsa * 2);
                free(ca16);
                free(cb16);
            } else {
                unsigned ba, bb;
                qn_qscheme sa2, sb2;
                int pca, pcb;
                ck_assert_int_eq(qn_qtensor_get_scalar(qa, &ba, &sa2, &pca), QN_OK);
                ck_assert_int_eq(qn_qtensor_get_scalar(qb, &bb, &sb2, &pcb), QN_OK);
                ck_assert_uint_eq(ba, bb);
                ck_assert_int_eq(sa2, sb2);
                ck_assert_int_eq(pca, pcb);
            }
        }
        free(va);
        free(vb);
    }
}

static long file_size(const char *p)
{
    struct stat sb;
    ck_assert_int_eq(stat(p, &sb), 0);
    return (long)sb.st_size;
}

START_TEST(gguf_round_trip)
{
    qn_context *ctx = NULL;
    qn_model *m = NULL, *r = NULL, *r2 = NULL;
    char path[512];
    size_t n, i;
    double sum = 0.0;
    setup_dir();
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
    n = build_model(ctx, m);
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    ck_assert_int_eq(qn_model_save_gguf(m, path), QN_OK);
    ck_assert_uint_eq(dir_entries(), 1);
    ck_assert_int_eq(qn_model_load_gguf(ctx, path, 0, &r), QN_OK);
    ck_assert_int_eq(qn_model_load_gguf(ctx, path, QN_LOAD_NO_MMAP, &r2), QN_OK);
    assert_same_model(m, r, 0);
    assert_same_model(m, r2, 0);
    /* the file holds at least every tensor's exact bytes */
    for (i = 0; i < n; i++) {
        int c = 0;
        ck_assert_int_eq(qn_model_get_info(m, i, &c, NULL, NULL), QN_OK);
        if (c) {
            const qn_qtensor *qt = NULL;
            ck_assert_int_eq(qn_model_get_qtensor(m, i, &qt), QN_OK);
            sum += (double)qn_qtensor_nbytes(qt);
        }
    }
    ck_assert(file_size(path) > (long)sum);
    /* saving again over the same path replaces it */
    ck_assert_int_eq(qn_model_save_gguf(r, path), QN_OK);
    ck_assert_uint_eq(dir_entries(), 1);
    qn_model_destroy(m);
    qn_model_destroy(r);
    qn_model_destroy(r2);
    qn_context_destroy(ctx);
    teardown_dir();
}
END_TEST

START_TEST(safetensors_round_trip)
{
    qn_context *ctx = NULL;
    qn_model *m = NULL, *r = NULL, *d = NULL;
    char path[512], dpath[512];
    setup_dir();
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
    build_model(ctx, m);
    snprintf(path, sizeof path, "%s/c.safetensors", tmpdir);
    snprintf(dpath, sizeof dpath, "%s/d.safetensors", tmpdir);
    ck_assert_int_eq(qn_model_save_safetensors(m, path, 0), QN_OK);
    ck_assert_int_eq(qn_model_save_safetensors(m, dpath, 1), QN_OK);
    ck_assert_int_eq(qn_model_load_safetensors(ctx, path, 0, &r), QN_OK);
    ck_assert_int_eq(qn_model_load_safetensors(ctx, dpath, QN_LOAD_NO_MMAP, &d), QN_OK);
    assert_same_model(m, r, 0);
    assert_same_model(m, d, 1);
    qn_model_destroy(m);
    qn_model_destroy(r);
    qn_model_destroy(d);
    qn_context_destroy(ctx);
    teardown_dir();
}
END_TEST

START_TEST(errors_leave_nothing)
{
    qn_context *ctx = NULL;
    qn_model *m = NULL, *r = NULL;
    char path[512], bad[512];
    float v[4] = {1, 2, 3, 4};
    size_t shp[1] = {4}, shp5[5] = {1, 1, 1, 1, 4};
    FILE *f;
    long size;
    unsigned char byte;
    setup_dir();
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "a", 1, shp, v), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "a", 1, shp, v), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_model_add_dense(m, "", 1, shp, v), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_model_add_dense(m, "b", 5, shp5, v), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_model_add_dense(m, "b", 1, shp, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_model_add_qtensor(m, "c", NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_model_find(m, "zzz", &shp[0]), QN_ERR_INVALID_ARG);
    snprintf(bad, sizeof bad, "%s/nodir/x.gguf", tmpdir);
    ck_assert_int_eq(qn_model_save_gguf(m, bad), QN_ERR_IO);
    snprintf(bad, sizeof bad, "%s/nodir/x.safetensors", tmpdir);
    ck_assert_int_eq(qn_model_save_safetensors(m, bad, 0), QN_ERR_IO);
    ck_assert_uint_eq(dir_entries(), 0);
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    ck_assert_int_eq(qn_model_save_gguf(m, path), QN_OK);
    /* flip the first byte of the only tensor (64-byte aligned, 16 bytes, then padding to the end): the checksum catches it */
    size = file_size(path);
    f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, size - 64, SEEK_SET), 0);
    ck_assert_int_eq((int)fread(&byte, 1, 1, f), 1);
    byte ^= 0x40;
    ck_assert_int_eq(fseek(f, size - 64, SEEK_SET), 0);
    ck_assert_int_eq((int)fwrite(&byte, 1, 1, f), 1);
    fclose(f);
    r = (qn_model *)&byte;
    ck_assert_int_eq(qn_model_load_gguf(ctx, path, 0, &r), QN_ERR_CORRUPT_DATA);
    ck_assert_ptr_null(r);
    /* a safetensors file is not a GGUF file, and the reverse */
    snprintf(path, sizeof path, "%s/m.safetensors", tmpdir);
    ck_assert_int_eq(qn_model_save_safetensors(m, path, 1), QN_OK);
    ck_assert_int_ne(qn_model_load_gguf(ctx, path, 0, &r), QN_OK);
    snprintf(path, sizeof path, "%s/m.gguf", tmpdir);
    ck_assert_int_ne(qn_model_load_safetensors(ctx, path, 0, &r), QN_OK);
    snprintf(path, sizeof path, "%s/none.gguf", tmpdir);
    ck_assert_int_eq(qn_model_load_gguf(ctx, path, 0, &r), QN_ERR_IO);
    qn_model_destroy(m);
    qn_context_destroy(ctx);
    teardown_dir();
}
END_TEST

/* One sweep: fail allocation n of the operation for n = 1, 2, ... until it succeeds. */
static void sweep(int load, const char *path)
{
    int nfail;
    for (nfail = 1; nfail < 5000; nfail++) {
        counting_alloc a = {0, 0, 0, 0};
        qn_context *ctx = NULL;
        qn_model *m = NULL, *r = NULL;
        qn_status st;
        ck_assert_int_eq(qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx),
                         QN_OK);
        if (!load) {
            ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
            build_model(ctx, m);
            unlink(path);
        }
        a.fail_from = a.allocs + nfail;
        st = load ? qn_model_load_gguf(ctx, path, 0, &r) : qn_model_save_gguf(m, path);
        a.fail_from = 0;
        if (st != QN_OK) {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_ptr_null(r);
            if (!load)
                ck_assert_uint_eq(dir_entries(), 0);
        }
        qn_model_destroy(r);
        qn_model_destroy(m);
        qn_context_destroy(ctx);
        ck_assert_int_eq(a.allocs, a.frees);
        if (st == QN_OK)
            return;
    }
    ck_abort_msg("never succeeded");
}

START_TEST(allocation_failures)
{
    char path[512];
    setup_dir();
    snprintf(path, sizeof path, "%s/a.gguf", tmpdir);
    sweep(0, path);
    sweep(1, path);
    teardown_dir();
}
END_TEST

static Suite *model_suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("files");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, gguf_round_trip);
    tcase_add_test(tc, safetensors_round_trip);
    tcase_add_test(tc, errors_leave_nothing);
    tcase_add_test(tc, allocation_failures);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return qn_test_run(model_suite());
}
