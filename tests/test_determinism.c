/*
 * Determinism, through the shared library only. What is guaranteed, and tested here:
 *
 *   - masks: a pure function of (seed, layer_id, step, block) (include/qnoise/rng.h): the
 *     exported bits equal the contract computed here from rng.h alone, for linear, conv2d and
 *     embedding layers, on every ISA the CPU has (context ISA caps) and at 1, 2 and 3 library
 *     threads (one layer has more than 2^16 blocks, where sampling and W_eff are split over
 *     threads); the noisy forward and backward built from them are bit-identical across ISAs
 *     and thread counts (proxy W_eff comes from the bit-exact block_scale kernel);
 *   - k-means (qn_pq_train, qn_qtensor_from_pq): identical codes and centroids across runs for
 *     the same seed and thread count; a different seed gives a different codebook;
 *   - codes do not depend on the thread count: qn_pq_assign, and the counts of
 *     qn_pq_partial_sums, are identical at 1, 2 and 3 threads (its sums agree to 1e-12); 6144
 *     blocks, so that 3 threads get a range each (at least 2048 blocks per thread);
 *   - across ISAs, k-means is NOT promised to be bit-identical: a code may differ where two
 *     centroids are within the assignment slack (QN_ASSIGN_REL, a relative 1e-3 of the squared
 *     distance, lib/quant/kmeans.h; docs/design.md section 7). Tested exactly: Lloyd steps run
 *     in lockstep on every ISA (qn_pq_assign, qn_pq_partial_sums, qn_pq_update_from_sums from
 *     one shared codebook): every code is within the slack of the exact nearest centroid
 *     (double-precision oracle), codes that differ between ISAs are near-ties, and whenever the
 *     codes agree the sums, counts and squared error are bit-identical (codebook_accumulate is
 *     bit-exact) and so is the updated codebook;
 *   - files: a compressed model saved twice from scratch (same seed) gives byte-identical GGUF
 *     and safetensors files; a scalar-only model (no SIMD kernel involved) gives the same bytes
 *     on every ISA.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

/* The distinct ISAs this machine (and QN_ISA) allows, lowest first. */
static qn_isa isas[3];
static size_t n_isas;

static qn_context *make_ctx(qn_isa cap, unsigned threads)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, cap, &ctx), QN_OK);
    ck_assert_int_eq(qn_context_set_threads(ctx, threads), QN_OK);
    return ctx;
}

static void find_isas(void)
{
    qn_isa cap;
    n_isas = 0;
    for (cap = QN_ISA_SCALAR; cap <= QN_ISA_AVX512; cap = (qn_isa)(cap + 1)) {
        qn_context *ctx = make_ctx(cap, 1);
        qn_isa got;
        ck_assert_int_eq(qn_context_get_isa(ctx, &got), QN_OK);
        if (n_isas == 0 || isas[n_isas - 1] != got)
            isas[n_isas++] = got;
        qn_context_destroy(ctx);
    }
}

static float *rand_floats(uint64_t seed, size_t n, float offset)
{
    float *w = (float *)malloc(n * sizeof *w);
    uint64_t st = seed;
    size_t i;
    ck_assert_ptr_nonnull(w);
    for (i = 0; i < n; i++)
        w[i] = qn_test_uniform(&st) + offset;
    return w;
}

/* ---------------------------------------------------------------------------------------------- */
/* masks                                                                                          */

typedef struct lshape {
    qn_layer_kind kind;
    size_t a, b;       /* linear: in, out; embedding: num, dim; conv2d: in, out (3x3, 8x8 input) */
    size_t bs, blocks; /* block size, and the number of blocks it gives */
} lshape;

static const lshape shapes[] = {
    {QN_LAYER_LINEAR, 64, 37, 4, 37 * 16},   /* 592 blocks: whole SIMD groups and a tail */
    {QN_LAYER_LINEAR, 1000, 263, 4, 65750},  /* above 2^16 blocks: masks and W_eff split over threads */
    {QN_LAYER_EMBEDDING, 1001, 8, 8, 1001},  /* odd count */
    {QN_LAYER_CONV2D, 6, 10, 9, 10 * 6},     /* cols = 6 * 3 * 3 = 54: 6 blocks per filter */
};

static qn_layer *make_layer(qn_context *ctx, const lshape *s, float *w, float *bias)
{
    qn_layer *l = NULL;
    if (s->kind == QN_LAYER_LINEAR)
        ck_assert_int_eq(qn_layer_create_linear(ctx, s->a, s->b, &l), QN_OK);
    else if (s->kind == QN_LAYER_EMBEDDING)
        ck_assert_int_eq(qn_layer_create_embedding(ctx, s->a, s->b, &l), QN_OK);
    else {
        ck_assert_int_eq(qn_layer_create_conv2d(ctx, s->a, s->b, 3, 3, 1, 1, 1, 1, &l), QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, 8, 8), QN_OK);
    }
    ck_assert_int_eq(qn_layer_bind(l, w, s->kind == QN_LAYER_EMBEDDING ? NULL : bias), QN_OK);
    return l;
}

START_TEST(masks_follow_the_contract_on_every_isa_and_thread_count)
{
    static const float ps[] = {0.0f, 0.1f, 0.5f, 0.97f};
    static const uint64_t steps[] = {0, 1, 12345678901ull};
    static const unsigned threads[] = {1, 2, 3};
    const lshape *s = &shapes[_i];
    const uint64_t seed = 0xC0FFEEull + (uint64_t)_i, layer_id = 7 + (uint64_t)_i;
    size_t wc = s->blocks * s->bs, nbytes = (s->blocks + 7) / 8, pi, si, ii, ti, b;
    float *w = rand_floats(11, wc, 0.0f), bias[300];
    uint8_t *want = (uint8_t *)calloc(nbytes, 1), *got = (uint8_t *)malloc(nbytes);
    ck_assert_ptr_nonnull(want);
    ck_assert_ptr_nonnull(got);
    memset(bias, 0, sizeof bias);
    for (pi = 0; pi < sizeof ps / sizeof ps[0]; pi++)
        for (si = 0; si < sizeof steps / sizeof steps[0]; si++) {
            size_t want_n = 0;
            uint32_t key[2], words[4];
            /* the contract, from rng.h alone: u(b) = word(b) >> 8 scaled to [0, 1), noised iff u < p */
            memset(want, 0, nbytes);
            qn_rng_layer_key(seed, layer_id, key);
            for (b = 0; b < s->blocks; b++) {
                if ((b & 3) == 0)
                    qn_rng_block_words4(key, steps[si], b >> 2, words);
                if (qn_rng_u32_to_unit(words[b & 3]) < ps[pi]) {
                    want[b / 8] |= (uint8_t)(1u << (b % 8));
                    want_n++;
                }
            }
            if (b > 0) /* the four-block form agrees with the per-block one */
                ck_assert_int_eq(qn_rng_block_noised(seed, layer_id, steps[si], b - 1, ps[pi]),
                                 (want[(b - 1) / 8] >> ((b - 1) % 8)) & 1);
            for (ii = 0; ii < n_isas; ii++)
                for (ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
                    qn_context *ctx = make_ctx(isas[ii], threads[ti]);
                    qn_layer *l = make_layer(ctx, s, w, bias);
                    size_t nb = 0, nby = 0, n_noised = 0;
                    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, ps[pi], s->bs), QN_OK);
                    ck_assert_int_eq(qn_layer_set_seed(l, seed, layer_id), QN_OK);
                    ck_assert_int_eq(qn_layer_mask_size(l, &nb, &nby), QN_OK);
                    ck_assert_uint_eq(nb, s->blocks);
                    ck_assert_uint_eq(nby, nbytes);
                    memset(got, 0xA5, nbytes);
                    ck_assert_int_eq(qn_layer_export_mask(l, steps[si], got, nbytes, &n_noised), QN_OK);
                    ck_assert_msg(memcmp(got, want, nbytes) == 0, "mask differs: layer kind %d, p %g, step %llu, %s, %u threads",
                                  (int)s->kind, (double)ps[pi], (unsigned long long)steps[si], qn_isa_name(isas[ii]),
                                  threads[ti]);
                    ck_assert_uint_eq(n_noised, want_n);
                    qn_layer_destroy(l);
                    qn_context_destroy(ctx);
                }
        }
    free(w);
    free(want);
    free(got);
}
END_TEST

/* Noisy forward + backward of one step; returns the outputs concatenated (y, dx, dW, db). */
static float *train_step(qn_context *ctx, const lshape *s, const float *w, const float *bias, uint64_t step,
                         size_t *n_out)
{
    const size_t batch = 3;
    qn_layer *l;
    size_t wc = 0, bc = 0, ip = 0, op = 0, n, i;
    float *x, *dy, *out;
    int64_t idx[3] = {0, 500, 1000};
    int emb = s->kind == QN_LAYER_EMBEDDING;
    l = make_layer(ctx, s, (float *)w, (float *)bias);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.3f, s->bs), QN_OK);
    ck_assert_int_eq(qn_layer_set_seed(l, 42, 1), QN_OK);
    ck_assert_int_eq(qn_layer_get_sizes(l, &wc, &bc, &ip, &op), QN_OK);
    x = rand_floats(5, batch * ip, 0.0f);
    dy = rand_floats(6, batch * op, 0.0f);
    n = batch * op + batch * ip + wc + bc;
    out = (float *)calloc(n, sizeof *out);
    ck_assert_ptr_nonnull(out);
    for (i = 0; i < 2; i++) { /* two steps: the second reuses the layer's workspace */
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, emb ? (const void *)idx : (const void *)x, out, step + i),
                         QN_OK);
        ck_assert_int_eq(qn_layer_backward(l, batch, emb ? (const void *)idx : (const void *)x, dy,
                                           emb ? NULL : out + batch * op, out + batch * op + batch * ip,
                                           bc ? out + batch * op + batch * ip + wc : NULL, step + i),
                         QN_OK);
    }
    qn_layer_destroy(l);
    free(x);
    free(dy);
    *n_out = n;
    return out;
}

START_TEST(noisy_training_is_identical_across_isas_and_thread_counts)
{
    static const unsigned threads[] = {1, 2, 3};
    const lshape *s = &shapes[_i];
    float *w = rand_floats(21, s->blocks * s->bs, 0.0f), bias[300], *ref;
    size_t n_ref = 0, ii, ti;
    uint64_t st = 3;
    for (ii = 0; ii < 300; ii++)
        bias[ii] = qn_test_uniform(&st);
    {
        qn_context *ctx = make_ctx(QN_ISA_SCALAR, 1);
        ref = train_step(ctx, s, w, bias, 9, &n_ref);
        qn_context_destroy(ctx);
    }
    for (ii = 0; ii < n_isas; ii++)
        for (ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
            qn_context *ctx = make_ctx(isas[ii], threads[ti]);
            size_t n = 0;
            float *got = train_step(ctx, s, w, bias, 9, &n);
            ck_assert_uint_eq(n, n_ref);
            ck_assert_msg(memcmp(got, ref, n * sizeof *got) == 0, "layer kind %d: %s, %u threads differ from scalar, 1 thread",
                          (int)s->kind, qn_isa_name(isas[ii]), threads[ti]);
            free(got);
            qn_context_destroy(ctx);
        }
    free(ref);
    free(w);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* k-means                                                                                        */

#define KM_BS 8
#define KM_K 32
/* Blocks are cut into ranges of at least 2048 per thread (k-means and qn_pq): 4096 blocks give
   2 threads a range each, 6144 give 3. The cross-ISA lockstep runs on 1 thread. */
#define KM_N 6144
#define KM_N_TRAIN 4096
#define KM_N_LOCKSTEP 2048

/* Train a fresh quantizer on n blocks; returns centroids (K x bs) and the assignment of the data. */
static void train(qn_context *ctx, const float *x, size_t n, uint64_t seed, float *cent, uint16_t *codes)
{
    qn_pq *pq = NULL;
    ck_assert_int_eq(qn_pq_create(ctx, KM_BS, KM_K, &pq), QN_OK);
    ck_assert_int_eq(qn_pq_set_seed(pq, seed), QN_OK);
    ck_assert_int_eq(qn_pq_set_iterations(pq, 8), QN_OK);
    ck_assert_int_eq(qn_pq_set_tolerance(pq, 0.0), QN_OK);
    ck_assert_int_eq(qn_pq_train(pq, x, n), QN_OK);
    ck_assert_int_eq(qn_pq_get_centroids(pq, cent), QN_OK);
    ck_assert_int_eq(qn_pq_assign(pq, x, n, codes), QN_OK);
    qn_pq_destroy(pq);
}

START_TEST(kmeans_is_identical_across_runs_for_a_seed_and_thread_count)
{
    static const unsigned threads[] = {1, 2};
    float *x = rand_floats(31, KM_N_TRAIN * KM_BS, 0.0f);
    float c1[KM_K * KM_BS], c2[KM_K * KM_BS];
    uint16_t *k1 = (uint16_t *)malloc(KM_N_TRAIN * sizeof *k1), *k2 = (uint16_t *)malloc(KM_N_TRAIN * sizeof *k2);
    size_t ti, ii;
    ck_assert_ptr_nonnull(k1);
    ck_assert_ptr_nonnull(k2);
    for (ii = 0; ii < n_isas; ii++)
        for (ti = 0; ti < 2; ti++) {
            qn_context *a = make_ctx(isas[ii], threads[ti]), *b = make_ctx(isas[ii], threads[ti]);
            qn_qtensor *q1 = NULL, *q2 = NULL;
            train(a, x, KM_N_TRAIN, 77, c1, k1);
            train(b, x, KM_N_TRAIN, 77, c2, k2);
            ck_assert_msg(memcmp(c1, c2, sizeof c1) == 0, "%s, %u threads: centroids differ between runs",
                          qn_isa_name(isas[ii]), threads[ti]);
            ck_assert_msg(memcmp(k1, k2, KM_N_TRAIN * sizeof *k1) == 0, "%s, %u threads: codes differ between runs",
                          qn_isa_name(isas[ii]), threads[ti]);
            if (ii == 0 && ti == 0) { /* another seed gives another codebook (the seed is used) */
                train(b, x, KM_N_TRAIN, 78, c2, k2);
                ck_assert(memcmp(c1, c2, sizeof c1) != 0);
            }
            /* the same through qn_qtensor_from_pq: a 256 x 64 weight, 8 blocks per row */
            ck_assert_int_eq(qn_qtensor_from_pq(a, x, 256, 64, KM_BS, KM_K, 5, &q1), QN_OK);
            ck_assert_int_eq(qn_qtensor_from_pq(b, x, 256, 64, KM_BS, KM_K, 5, &q2), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_codes(q1, k1, KM_N_TRAIN), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_codes(q2, k2, KM_N_TRAIN), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_centroids(q1, c1, KM_K * KM_BS), QN_OK);
            ck_assert_int_eq(qn_qtensor_get_centroids(q2, c2, KM_K * KM_BS), QN_OK);
            ck_assert(memcmp(c1, c2, sizeof c1) == 0);
            ck_assert(memcmp(k1, k2, 2048 * sizeof *k1) == 0);
            qn_qtensor_destroy(q1);
            qn_qtensor_destroy(q2);
            qn_context_destroy(a);
            qn_context_destroy(b);
        }
    free(x);
    free(k1);
    free(k2);
}
END_TEST

START_TEST(codes_do_not_depend_on_the_thread_count)
{
    static const unsigned threads[] = {1, 2, 3};
    float *x = rand_floats(41, KM_N * KM_BS, (float)_i * 100.0f); /* _i = 1: far from the origin */
    float cent[KM_K * KM_BS];
    uint16_t *ref = (uint16_t *)malloc(KM_N * sizeof *ref), *got = (uint16_t *)malloc(KM_N * sizeof *got);
    double ref_sums[KM_K * KM_BS], sums[KM_K * KM_BS];
    uint64_t ref_counts[KM_K], counts[KM_K];
    size_t ii, ti, j;
    ck_assert_ptr_nonnull(ref);
    ck_assert_ptr_nonnull(got);
    /* any codebook will do: K blocks of the data */
    for (j = 0; j < KM_K; j++)
        memcpy(cent + j * KM_BS, x + (j * 191 % KM_N) * KM_BS, KM_BS * sizeof(float));
    for (ii = 0; ii < n_isas; ii++) {
        for (ti = 0; ti < sizeof threads / sizeof threads[0]; ti++) {
            qn_context *ctx = make_ctx(isas[ii], threads[ti]);
            qn_pq *pq = NULL;
            ck_assert_int_eq(qn_pq_create(ctx, KM_BS, KM_K, &pq), QN_OK);
            ck_assert_int_eq(qn_pq_set_centroids(pq, cent), QN_OK);
            ck_assert_int_eq(qn_pq_assign(pq, x, KM_N, got), QN_OK);
            if (ti == 0)
                memcpy(ref, got, KM_N * sizeof *got);
            ck_assert_msg(memcmp(got, ref, KM_N * sizeof *got) == 0, "%s: codes at %u threads differ from 1 thread",
                          qn_isa_name(isas[ii]), threads[ti]);
            memset(sums, 0, sizeof sums);
            memset(counts, 0, sizeof counts);
            ck_assert_int_eq(qn_pq_partial_sums(pq, x, KM_N, sums, counts, NULL), QN_OK);
            if (ti == 0) {
                memcpy(ref_sums, sums, sizeof sums);
                memcpy(ref_counts, counts, sizeof counts);
            }
            /* counts come from the codes: identical; sums may differ in the last bits */
            ck_assert(memcmp(counts, ref_counts, sizeof counts) == 0);
            for (j = 0; j < KM_K * KM_BS; j++)
                ck_assert_double_le(fabs(sums[j] - ref_sums[j]), 1e-12 * (fabs(ref_sums[j]) + 1.0));
            qn_pq_destroy(pq);
            qn_context_destroy(ctx);
        }
    }
    free(x);
    free(ref);
    free(got);
}
END_TEST

/* Exact squared distance of block x to centroid c (double). */
static double dist2(const float *x, const float *c)
{
    return qn_test_sq_dist(x, c, KM_BS);
}

START_TEST(kmeans_across_isas_differs_only_at_near_ties)
{
    /* _i = 0: data around the origin (the fused kernel decides); 1: far from it (exact path) */
    float *x = rand_floats(51, KM_N_LOCKSTEP * KM_BS, _i ? 300.0f : 0.0f);
    float cent[KM_K * KM_BS], next[3][KM_K * KM_BS];
    uint16_t *codes[3];
    double sums[3][KM_K * KM_BS], sq[3];
    uint64_t counts[3][KM_K];
    qn_context *ctx[3];
    qn_pq *pq[3];
    size_t it, ii, b, differing = 0, resyncs = 0;
    const double slack = 1e-3; /* QN_ASSIGN_REL */
    for (ii = 0; ii < n_isas; ii++) {
        ctx[ii] = make_ctx(isas[ii], 1);
        codes[ii] = (uint16_t *)malloc(KM_N_LOCKSTEP * sizeof *codes[ii]);
        ck_assert_ptr_nonnull(codes[ii]);
        ck_assert_int_eq(qn_pq_create(ctx[ii], KM_BS, KM_K, &pq[ii]), QN_OK);
    }
    /* initial codebook: K distinct data blocks */
    for (b = 0; b < KM_K; b++)
        memcpy(cent + b * KM_BS, x + (b * 61 % KM_N_LOCKSTEP) * KM_BS, KM_BS * sizeof(float));
    for (it = 0; it < 10; it++) {
        int same = 1;
        for (ii = 0; ii < n_isas; ii++) {
            ck_assert_int_eq(qn_pq_set_centroids(pq[ii], cent), QN_OK);
            ck_assert_int_eq(qn_pq_assign(pq[ii], x, KM_N_LOCKSTEP, codes[ii]), QN_OK);
            memset(sums[ii], 0, sizeof sums[ii]);
            memset(counts[ii], 0, sizeof counts[ii]);
            sq[ii] = 0.0;
            ck_assert_int_eq(qn_pq_partial_sums(pq[ii], x, KM_N_LOCKSTEP, sums[ii], counts[ii], &sq[ii]), QN_OK);
        }
        /* every code, on every ISA, is within the slack of the exact nearest centroid */
        for (b = 0; b < KM_N_LOCKSTEP; b++) {
            const float *xb = x + b * KM_BS;
            double best = qn_test_min_sq_dist(xb, cent, KM_K, KM_BS);
            for (ii = 0; ii < n_isas; ii++) {
                double d = dist2(xb, cent + (size_t)codes[ii][b] * KM_BS);
                ck_assert_msg(d <= best * (1.0 + slack) + 1e-30, "%s: block %zu code %u at %.9g, nearest %.9g",
                              qn_isa_name(isas[ii]), b, (unsigned)codes[ii][b], d, best);
                if (codes[ii][b] != codes[0][b]) {
                    /* a difference between ISAs is a near-tie: both choices within the slack */
                    double d0 = dist2(xb, cent + (size_t)codes[0][b] * KM_BS);
                    ck_assert_double_le(fabs(d - d0), slack * best + 1e-30);
                    same = 0;
                    differing++;
                }
            }
        }
        if (same) {
            /* identical codes: the sums, counts and squared error are bit-identical on every ISA */
            for (ii = 1; ii < n_isas; ii++) {
                ck_assert(memcmp(sums[ii], sums[0], sizeof sums[0]) == 0);
                ck_assert(memcmp(counts[ii], counts[0], sizeof counts[0]) == 0);
                ck_assert(memcmp(&sq[ii], &sq[0], sizeof sq[0]) == 0);
            }
        } else {
            resyncs++;
        }
        /* the M-step from each ISA's sums; with the same sums, the same codebook */
        for (ii = 0; ii < n_isas; ii++) {
            ck_assert_int_eq(qn_pq_update_from_sums(pq[ii], sums[ii], counts[ii], NULL), QN_OK);
            ck_assert_int_eq(qn_pq_get_centroids(pq[ii], next[ii]), QN_OK);
            if (same && ii)
                ck_assert(memcmp(next[ii], next[0], sizeof next[0]) == 0);
        }
        memcpy(cent, next[0], sizeof cent); /* all ISAs continue from the scalar codebook */
    }
    if (n_isas > 1)
        printf("k-means lockstep (%s data): %zu code(s) differed between ISAs over 10 iterations (near-ties)\n",
               _i ? "offset" : "centred", differing);
    for (ii = 0; ii < n_isas; ii++) {
        qn_pq_destroy(pq[ii]);
        qn_context_destroy(ctx[ii]);
        free(codes[ii]);
    }
    free(x);
    (void)resyncs;
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* files                                                                                          */

static char tmpdir[256];

static void dir_setup(void)
{
    find_isas();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qn_test_determinism_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void dir_teardown(void)
{
    static const char *const names[] = {"a.gguf", "b.gguf", "a.safetensors", "b.safetensors", "c.safetensors",
                                        "d.safetensors"};
    char p[512];
    size_t i;
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
        unlink(p);
    }
    rmdir(tmpdir);
}

static unsigned char *slurp(const char *name, size_t *n)
{
    char p[512];
    FILE *f;
    long len;
    unsigned char *b;
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    f = fopen(p, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fseek(f, 0, SEEK_END), 0);
    len = ftell(f);
    ck_assert_int_gt(len, 0);
    ck_assert_int_eq(fseek(f, 0, SEEK_SET), 0);
    b = (unsigned char *)malloc((size_t)len);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(fread(b, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void same_file(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *pa = slurp(a, &na), *pb = slurp(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(pa, pb, na) == 0, "%s and %s differ", a, b);
    free(pa);
    free(pb);
}

/* A model compressed from scratch: PQ (fp32, fp16, int8 codebooks), scalar, dense. */
static void save_model(qn_isa cap, unsigned threads, int scalar_only, const char *gguf, const char *st_native,
                       const char *st_decoded)
{
    qn_context *ctx = make_ctx(cap, threads);
    qn_model *m = NULL;
    qn_qtensor *qt = NULL;
    float *w = rand_floats(61, 64 * 32, 0.0f);
    size_t shape[2] = {8, 4};
    char p[512];
    ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
    if (!scalar_only) {
        ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 64, 32, 4, 32, 9, &qt), QN_OK);
        ck_assert_int_eq(qn_model_add_qtensor(m, "pq32", qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 32, 64, 8, 16, 10, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_FP16, QN_QSCHEME_AFFINE, NULL), QN_OK);
        ck_assert_int_eq(qn_model_add_qtensor(m, "pq16", qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_from_pq(ctx, w, 64, 32, 2, 300, 11, &qt), QN_OK);
        ck_assert_int_eq(qn_qtensor_set_codebook_precision(qt, QN_CODEBOOK_INT8, QN_QSCHEME_SYMMETRIC, NULL), QN_OK);
        ck_assert_int_eq(qn_model_add_qtensor(m, "pq_i8", qt), QN_OK);
    }
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 64, 32, 4, 1, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "int4", qt), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_scalar(ctx, w, 32, 64, 8, 0, &qt), QN_OK);
    ck_assert_int_eq(qn_model_add_qtensor(m, "int8", qt), QN_OK);
    ck_assert_int_eq(qn_model_add_dense(m, "bias", 2, shape, w), QN_OK);
    snprintf(p, sizeof p, "%s/%s", tmpdir, gguf);
    ck_assert_int_eq(qn_model_save_gguf(m, p), QN_OK);
    if (st_native) {
        snprintf(p, sizeof p, "%s/%s", tmpdir, st_native);
        ck_assert_int_eq(qn_model_save_safetensors(m, p, 0), QN_OK);
        snprintf(p, sizeof p, "%s/%s", tmpdir, st_decoded);
        ck_assert_int_eq(qn_model_save_safetensors(m, p, 1), QN_OK);
    }
    qn_model_destroy(m);
    qn_context_destroy(ctx);
    free(w);
}

START_TEST(compressed_files_are_identical_across_runs)
{
    static const unsigned threads[] = {1, 2};
    size_t ii, ti;
    int st = 1;
    {
        qn_context *ctx = make_ctx(QN_ISA_SCALAR, 1);
        qn_model *m = NULL;
        char p[512];
        /* safetensors support is optional (jansson) */
        ck_assert_int_eq(qn_model_create(ctx, &m), QN_OK);
        snprintf(p, sizeof p, "%s/c.safetensors", tmpdir);
        st = qn_model_save_safetensors(m, p, 1) == QN_OK;
        qn_model_destroy(m);
        qn_context_destroy(ctx);
    }
    for (ii = 0; ii < n_isas; ii++)
        for (ti = 0; ti < 2; ti++) {
            save_model(isas[ii], threads[ti], 0, "a.gguf", st ? "a.safetensors" : NULL, "c.safetensors");
            save_model(isas[ii], threads[ti], 0, "b.gguf", st ? "b.safetensors" : NULL, "d.safetensors");
            same_file("a.gguf", "b.gguf");
            if (st) {
                same_file("a.safetensors", "b.safetensors");
                same_file("c.safetensors", "d.safetensors");
            }
        }
}
END_TEST

START_TEST(scalar_compressed_files_are_identical_across_isas)
{
    size_t ii;
    save_model(QN_ISA_SCALAR, 1, 1, "a.gguf", NULL, NULL);
    for (ii = 0; ii < n_isas; ii++) {
        save_model(isas[ii], 2, 1, "b.gguf", NULL, NULL);
        same_file("a.gguf", "b.gguf");
    }
}
END_TEST

static Suite *determinism_suite(void)
{
    Suite *s = suite_create("determinism");
    TCase *tm = tcase_create("masks");
    TCase *tk = tcase_create("kmeans");
    TCase *tf = tcase_create("files");
    tcase_add_checked_fixture(tm, find_isas, NULL);
    tcase_set_timeout(tm, 300);
    tcase_add_loop_test(tm, masks_follow_the_contract_on_every_isa_and_thread_count, 0,
                        (int)(sizeof shapes / sizeof shapes[0]));
    tcase_add_loop_test(tm, noisy_training_is_identical_across_isas_and_thread_counts, 0,
                        (int)(sizeof shapes / sizeof shapes[0]));
    suite_add_tcase(s, tm);
    tcase_add_checked_fixture(tk, find_isas, NULL);
    tcase_set_timeout(tk, 600);
    tcase_add_test(tk, kmeans_is_identical_across_runs_for_a_seed_and_thread_count);
    tcase_add_loop_test(tk, codes_do_not_depend_on_the_thread_count, 0, 2);
    tcase_add_loop_test(tk, kmeans_across_isas_differs_only_at_near_ties, 0, 2);
    suite_add_tcase(s, tk);
    tcase_add_checked_fixture(tf, dir_setup, dir_teardown);
    tcase_set_timeout(tf, 600);
    tcase_add_test(tf, compressed_files_are_identical_across_runs);
    tcase_add_test(tf, scalar_compressed_files_are_identical_across_isas);
    suite_add_tcase(s, tf);
    return s;
}

int main(void)
{
    return qn_test_run(determinism_suite());
}
