/*
 * Kernel tables: pq_assign (fused ||c||^2 - 2 x.c assignment) of every built
 * and runnable ISA against a double-precision brute-force oracle written here,
 * and codebook_accumulate of every ISA bit for bit against a reference of its
 * documented summation order written here and against the scalar table.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Fail the test only when cond is false: ck_assert marks a point on every
 * success, which is slow in the tight loops below. */
#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

#define CODE_SENTINEL 0xdeadbeefu
#define DIST_SENTINEL (-12345.0f)
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Tolerances of the pq_assign contract (kernels.h). */
#define CHOICE_REL 1e-5
#define CHOICE_ABS 1e-6
#define DIST_REL 1e-4
#define DIST_ABS 1e-5

static double absd(double v)
{
    return v < 0 ? -v : v;
}

/*
 * Buffers are allocated with `off` (1..3) elements more than needed and used
 * from element off, so every pointer handed to a kernel is 4, 8 or 12 bytes off
 * the malloc alignment, and (under ASan) any read past the end is caught.
 */
static float *alloc_f(size_t count, size_t off, float **base)
{
    *base = (float *)malloc((count + off) * sizeof(float));
    ck_assert_ptr_nonnull(*base);
    return *base + off;
}

static uint32_t *alloc_u(size_t count, size_t off, uint32_t **base)
{
    *base = (uint32_t *)malloc((count + off) * sizeof(uint32_t));
    ck_assert_ptr_nonnull(*base);
    return *base + off;
}

/* ||c_j||^2 as the caller computes it: in double, rounded once. */
static void norms(const float *c, size_t k, size_t dim, float *cn)
{
    size_t j, t;
    for (j = 0; j < k; j++) {
        double s = 0.0;
        for (t = 0; t < dim; t++)
            s += (double)c[j * dim + t] * (double)c[j * dim + t];
        cn[j] = (float)s;
    }
}

typedef struct shape {
    size_t n, k, dim, ldx;
} shape;

/* Run table on random data of shape sh and check every row against the oracle. */
static void check_shape(const qn_kernels *table, shape sh, uint64_t seed)
{
    const size_t n = sh.n, k = sh.k, dim = sh.dim, ldx = sh.ldx;
    const size_t xlen = (n - 1) * ldx + dim;
    const size_t off = 1 + (size_t)(seed % 3);
    float *xb, *cb, *nb, *db;
    uint32_t *cob, *co2b;
    float *x = alloc_f(xlen, off, &xb);
    float *c = alloc_f(k * dim, off, &cb);
    float *cn = alloc_f(k, off, &nb);
    float *dists = alloc_f(n + 1, off, &db); /* one guard element past n */
    uint32_t *codes = alloc_u(n + 1, off, &cob);
    uint32_t *codes2 = alloc_u(n + 1, off, &co2b);
    size_t i;

    for (i = 0; i < xlen; i++)
        x[i] = qn_test_uniform(&seed);
    for (i = 0; i < k * dim; i++)
        c[i] = qn_test_uniform(&seed);
    norms(c, k, dim, cn);
    for (i = 0; i <= n; i++) {
        codes[i] = CODE_SENTINEL;
        codes2[i] = CODE_SENTINEL;
        dists[i] = DIST_SENTINEL;
    }

    table->pq_assign(x, n, ldx, c, cn, k, dim, codes, dists);
    table->pq_assign(x, n, ldx, c, cn, k, dim, codes2, NULL);

    REQUIRE(codes[n] == CODE_SENTINEL && dists[n] == DIST_SENTINEL && codes2[n] == CODE_SENTINEL,
            "%s n=%zu k=%zu dim=%zu: wrote past n", table->name, n, k, dim);

    for (i = 0; i < n; i++) {
        const float *xi = x + i * ldx;
        double chosen, best;
        REQUIRE(codes[i] < k, "%s n=%zu k=%zu dim=%zu ldx=%zu row %zu: code %u out of range",
                table->name, n, k, dim, ldx, i, (unsigned)codes[i]);
        REQUIRE(codes2[i] == codes[i],
                "%s n=%zu k=%zu dim=%zu row %zu: code %u without dists, %u with", table->name, n,
                k, dim, i, (unsigned)codes2[i], (unsigned)codes[i]);
        chosen = qn_test_sq_dist(xi, c + (size_t)codes[i] * dim, dim);
        best = qn_test_min_sq_dist(xi, c, k, dim);
        REQUIRE(chosen <= best * (1.0 + CHOICE_REL) + CHOICE_ABS,
                "%s n=%zu k=%zu dim=%zu ldx=%zu row %zu: code %u at %.9g, minimum is %.9g",
                table->name, n, k, dim, ldx, i, (unsigned)codes[i], chosen, best);
        REQUIRE(dists[i] >= 0.0f && absd((double)dists[i] - chosen) <= DIST_REL * chosen + DIST_ABS,
                "%s n=%zu k=%zu dim=%zu ldx=%zu row %zu: reported %.9g, distance of code %u is "
                "%.9g",
                table->name, n, k, dim, ldx, i, (double)dists[i], (unsigned)codes[i], chosen);
    }

    free(xb);
    free(cb);
    free(nb);
    free(db);
    free(cob);
    free(co2b);
}

/* The table of loop-test isa _i, or NULL when it is not built or runnable. */
static const qn_kernels *table_for(int i)
{
    const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
    if (t) {
        ck_assert_int_eq((int)t->isa, i);
        ck_assert(t->pq_assign != NULL);
    }
    return t;
}

static const size_t test_dims[] = {1, 2, 3, 4, 7, 8, 9, 16, 17, 32};
static const size_t test_ks[] = {1, 2, 15, 16, 17, 255, 256, 257, 4096};
static const size_t test_ns[] = {1, 15, 16, 17, 63, 64, 65, 1000};

START_TEST(random_shapes_match_oracle)
{
    const qn_kernels *table = table_for(_i);
    size_t a, b, d, combo = 0;
    if (!table)
        return;
    for (a = 0; a < COUNT(test_dims); a++) {
        for (b = 0; b < COUNT(test_ks); b++) {
            for (d = 0; d < COUNT(test_ns); d++, combo++) {
                shape sh;
                sh.dim = test_dims[a];
                sh.k = test_ks[b];
                sh.n = test_ns[d];
                /* ldx == dim, dim + 1 (odd stride) or dim + 5, in turn */
                sh.ldx = sh.dim + (combo % 3 == 0 ? 0 : combo % 3 == 1 ? 1 : 5);
                check_shape(table, sh, 0x51ed270b27d8a4c1u + combo);
            }
        }
    }
}
END_TEST

/* Larger dims: fewer tiles per pass, and the row-by-row path past 256 (AVX-512). */
START_TEST(large_dims_match_oracle)
{
    static const size_t dims[] = {33, 63, 64, 65, 100, 128, 129, 255, 256, 257, 300, 513, 1030};
    static const size_t ns[] = {1, 17, 33, 70};
    static const size_t ks[] = {1, 3, 64};
    const qn_kernels *table = table_for(_i);
    size_t a, b, d, combo = 0;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++)
        for (b = 0; b < COUNT(ns); b++)
            for (d = 0; d < COUNT(ks); d++, combo++) {
                shape sh;
                sh.dim = dims[a];
                sh.n = ns[b];
                sh.k = ks[d];
                sh.ldx = sh.dim + combo % 4;
                check_shape(table, sh, 0x2545f4914f6cdd1du + combo);
            }
}
END_TEST

/*
 * Duplicated centroids, all nearest to every row (the others are far away):
 * the lowest index must win, whatever lane, unroll slot or position the copies
 * sit in, with and without dists.
 */
START_TEST(exact_ties_pick_lowest_index)
{
    static const size_t dims[] = {1, 2, 3, 4, 7, 8, 9, 16, 17, 32, 33, 100, 300};
    static const size_t dups_a[] = {5, 9, 21, 517, 999};
    static const size_t dups_b[] = {250, 251, 998, 999};
    static const size_t dups_c[] = {0, 1, 2};
    static const size_t dups_d[] = {998, 999};
    static const size_t *const dup_sets[] = {dups_a, dups_b, dups_c, dups_d};
    static const size_t dup_counts[] = {COUNT(dups_a), COUNT(dups_b), COUNT(dups_c),
                                        COUNT(dups_d)};
    static const size_t ns[] = {1, 19, 70};
    const qn_kernels *table = table_for(_i);
    const size_t k = 1000;
    uint64_t seed = 0x9fb21c651e98df25u;
    size_t a, set, b;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        for (set = 0; set < COUNT(dup_sets); set++) {
            for (b = 0; b < COUNT(ns); b++) {
                const size_t dim = dims[a], ldx = dim + 1, n = ns[b];
                float *xb, *cb, *nb, *db;
                uint32_t *cob, *co2b;
                float *x = alloc_f((n - 1) * ldx + dim, 1, &xb);
                float *c = alloc_f(k * dim, 2, &cb);
                float *cn = alloc_f(k, 3, &nb);
                float *dists = alloc_f(n, 1, &db);
                uint32_t *codes = alloc_u(n, 1, &cob);
                uint32_t *codes2 = alloc_u(n, 2, &co2b);
                const size_t *dups = dup_sets[set];
                float v[300], zeros[300] = {0};
                size_t i, j, t;

                for (t = 0; t < dim; t++)
                    v[t] = qn_test_uniform(&seed);
                for (j = 0; j < k * dim; j++)
                    c[j] = 3.0f + qn_test_uniform(&seed); /* in [2, 4): far from v and x */
                for (j = 0; j < dup_counts[set]; j++)
                    for (t = 0; t < dim; t++)
                        c[dups[j] * dim + t] = v[t];
                norms(c, k, dim, cn);
                for (i = 0; i < n; i++) {
                    for (t = 0; t < dim; t++)
                        x[i * ldx + t] = i == 0 ? v[t] : v[t] + 0.01f * qn_test_uniform(&seed);
                    if (i + 1 < n)
                        x[i * ldx + dim] = 1e3f; /* stride padding, never read */
                }

                table->pq_assign(x, n, ldx, c, cn, k, dim, codes, dists);
                table->pq_assign(x, n, ldx, c, cn, k, dim, codes2, NULL);
                for (i = 0; i < n; i++) {
                    REQUIRE(codes[i] == dups[0] && codes2[i] == dups[0],
                            "%s dim=%zu n=%zu row %zu: code %u (%u without dists), expected %zu",
                            table->name, dim, n, i, (unsigned)codes[i], (unsigned)codes2[i],
                            dups[0]);
                    /* x is close to c here, so on top of the contract's tolerance allow
                     * the cancellation floor of ||x||^2 + d: the float dot and norms
                     * carry the worst-case summation error (dim + 2) eps (||x||^2 +
                     * ||c||^2), which exceeds 1e-5 from dim ~ 50 up. */
                    const double td = qn_test_sq_dist(x + i * ldx, c + dups[0] * dim, dim);
                    const double floor_ = (double)(dim + 2) * FLT_EPSILON *
                                          (qn_test_sq_dist(x + i * ldx, zeros, dim) + (double)cn[dups[0]]);
                    REQUIRE(dists[i] >= 0.0f &&
                                absd((double)dists[i] - td) <= DIST_REL * td + DIST_ABS + floor_,
                            "%s dim=%zu row %zu: distance %.9g, true %.9g", table->name, dim, i,
                            (double)dists[i], qn_test_sq_dist(x + i * ldx, c + dups[0] * dim, dim));
                }
                free(xb);
                free(cb);
                free(nb);
                free(db);
                free(cob);
                free(co2b);
            }
        }
    }
}
END_TEST

/* All centroids bit-identical: index 0 everywhere, for every k (odd and even). */
START_TEST(all_equal_centroids_pick_index_0)
{
    static const size_t ks[] = {1, 2, 3, 16, 17, 257};
    static const size_t dims[] = {1, 4, 8, 9, 16, 32, 300};
    const qn_kernels *table = table_for(_i);
    const size_t n = 40;
    uint64_t seed = 0xd1b54a32d192ed03u;
    size_t a, b;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        for (b = 0; b < COUNT(ks); b++) {
            const size_t dim = dims[a], k = ks[b];
            float *xb, *cb, *nb;
            uint32_t *cob;
            float *x = alloc_f(n * dim, 1, &xb);
            float *c = alloc_f(k * dim, 1, &cb);
            float *cn = alloc_f(k, 1, &nb);
            uint32_t *codes = alloc_u(n, 1, &cob);
            size_t i, j, t;
            for (i = 0; i < n * dim; i++)
                x[i] = qn_test_uniform(&seed);
            for (t = 0; t < dim; t++)
                c[t] = qn_test_uniform(&seed);
            for (j = 1; j < k; j++)
                for (t = 0; t < dim; t++)
                    c[j * dim + t] = c[t];
            norms(c, k, dim, cn);
            table->pq_assign(x, n, dim, c, cn, k, dim, codes, NULL);
            for (i = 0; i < n; i++)
                REQUIRE(codes[i] == 0, "%s dim=%zu k=%zu row %zu: code %u", table->name, dim, k,
                        i, (unsigned)codes[i]);
            free(xb);
            free(cb);
            free(nb);
            free(cob);
        }
    }
}
END_TEST

START_TEST(every_table_has_pq_assign)
{
    int i;
    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
        if (t) {
            ck_assert(t->pq_assign != NULL);
            ck_assert(t->codebook_accumulate != NULL);
        }
    }
    ck_assert_ptr_nonnull(qn_kernels_for_isa(QN_ISA_SCALAR));
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* codebook_accumulate                                                                            */

/*
 * The contract of kernels.h written out independently: rows in order, one
 * double addition per element, the squared error as eight interleaved partial
 * sums combined by ((P0 + P4) + (P2 + P6)) + ((P1 + P5) + (P3 + P7)).
 */
static void ref_accumulate(const float *x, size_t n, size_t ldx, size_t dim, const uint32_t *codes,
                           const float *c, double *sums, uint64_t *counts, double *err)
{
    size_t i, t;
    for (i = 0; i < n; i++) {
        const size_t j = codes[i];
        double part[8];
        memset(part, 0, sizeof part);
        for (t = 0; t < dim; t++) {
            sums[j * dim + t] = sums[j * dim + t] + (double)x[i * ldx + t];
            if (err) {
                const double d = (double)x[i * ldx + t] - (double)c[j * dim + t];
                const double q = d * d;
                part[t % 8] = part[t % 8] + q;
            }
        }
        counts[j] = counts[j] + 1;
        if (err) {
            const double a = part[0] + part[4], b = part[2] + part[6];
            const double e = part[1] + part[5], f = part[3] + part[7];
            err[j] = err[j] + ((a + b) + (e + f));
        }
    }
}

/* A float of varied magnitude and sign: mostly O(1), some tiny, huge, subnormal and -0. */
static float varied(uint64_t *s)
{
    const uint64_t r = qn_test_next(s);
    const float u = qn_test_uniform(s);
    switch (r % 16) {
    case 0:
        return u * 1e30f;
    case 1:
        return u * 1e-30f;
    case 2:
        return u * 1e-40f; /* subnormal */
    case 3:
        return -0.0f;
    case 4:
        return u * 3e38f;
    default:
        return u * (float)(1u << (r % 7));
    }
}

typedef struct acc_case {
    size_t n, dim, ldx, k;
    int with_err, repeat_codes, nonzero_start;
} acc_case;

/* Run table->codebook_accumulate on one case; every output bit-equal to the reference. */
static void check_accumulate(const qn_kernels *table, const qn_kernels *scalar, acc_case cs,
                             uint64_t seed)
{
    const size_t n = cs.n, dim = cs.dim, ldx = cs.ldx, k = cs.k;
    const size_t xlen = n ? (n - 1) * ldx + dim : 1, off = 1 + (size_t)(seed % 3);
    float *xb, *cb;
    uint32_t *cob;
    float *x = alloc_f(xlen, off, &xb);
    float *c = alloc_f(k * dim, off, &cb);
    uint32_t *codes = alloc_u(n ? n : 1, off, &cob);
    /* one guard element on each side of every output */
    double *sums = (double *)malloc((k * dim + 2) * sizeof(double));
    double *sums_ref = (double *)malloc((k * dim + 2) * sizeof(double));
    double *sums_sc = (double *)malloc((k * dim + 2) * sizeof(double));
    double *err = (double *)malloc((k + 2) * sizeof(double));
    double *err_ref = (double *)malloc((k + 2) * sizeof(double));
    double *err_sc = (double *)malloc((k + 2) * sizeof(double));
    uint64_t *counts = (uint64_t *)malloc((k + 2) * sizeof(uint64_t));
    uint64_t *counts_ref = (uint64_t *)malloc((k + 2) * sizeof(uint64_t));
    uint64_t *counts_sc = (uint64_t *)malloc((k + 2) * sizeof(uint64_t));
    size_t i;

    ck_assert(sums && sums_ref && sums_sc && err && err_ref && err_sc && counts && counts_ref &&
              counts_sc);
    for (i = 0; i < xlen; i++)
        x[i] = varied(&seed);
    for (i = 0; i < k * dim; i++)
        c[i] = varied(&seed);
    for (i = 0; i < n; i++) {
        if (cs.repeat_codes && i > 0 && qn_test_next(&seed) % 4 != 0)
            codes[i] = codes[i - 1]; /* runs of one centroid: back-to-back updates */
        else
            codes[i] = (uint32_t)(qn_test_next(&seed) % k);
    }
    for (i = 0; i < k * dim + 2; i++)
        sums_ref[i] = cs.nonzero_start || i == 0 || i == k * dim + 1 ? 4.0 * qn_test_uniform(&seed) : 0.0;
    for (i = 0; i < k + 2; i++) {
        err_ref[i] = cs.nonzero_start || i == 0 || i == k + 1 ? 2.0 + qn_test_uniform(&seed) : 0.0;
        counts_ref[i] = cs.nonzero_start || i == 0 || i == k + 1 ? qn_test_next(&seed) % 1000 : 0;
    }
    memcpy(sums, sums_ref, (k * dim + 2) * sizeof(double));
    memcpy(sums_sc, sums_ref, (k * dim + 2) * sizeof(double));
    memcpy(err, err_ref, (k + 2) * sizeof(double));
    memcpy(err_sc, err_ref, (k + 2) * sizeof(double));
    memcpy(counts, counts_ref, (k + 2) * sizeof(uint64_t));
    memcpy(counts_sc, counts_ref, (k + 2) * sizeof(uint64_t));

    ref_accumulate(x, n, ldx, dim, codes, cs.with_err ? c : NULL, sums_ref + 1, counts_ref + 1,
                   cs.with_err ? err_ref + 1 : NULL);
    table->codebook_accumulate(x, n, ldx, dim, codes, cs.with_err ? c : NULL, sums + 1, counts + 1,
                               cs.with_err ? err + 1 : NULL);
    scalar->codebook_accumulate(x, n, ldx, dim, codes, cs.with_err ? c : NULL, sums_sc + 1,
                                counts_sc + 1, cs.with_err ? err_sc + 1 : NULL);

    REQUIRE(memcmp(sums, sums_ref, (k * dim + 2) * sizeof(double)) == 0,
            "%s n=%zu dim=%zu ldx=%zu k=%zu err=%d: sums differ from the reference", table->name,
            n, dim, ldx, k, cs.with_err);
    REQUIRE(memcmp(counts, counts_ref, (k + 2) * sizeof(uint64_t)) == 0,
            "%s n=%zu dim=%zu k=%zu: counts differ from the reference", table->name, n, dim, k);
    REQUIRE(memcmp(err, err_ref, (k + 2) * sizeof(double)) == 0,
            "%s n=%zu dim=%zu ldx=%zu k=%zu err=%d: squared errors differ from the reference",
            table->name, n, dim, ldx, k, cs.with_err);
    REQUIRE(memcmp(sums, sums_sc, (k * dim + 2) * sizeof(double)) == 0 &&
                memcmp(counts, counts_sc, (k + 2) * sizeof(uint64_t)) == 0 &&
                memcmp(err, err_sc, (k + 2) * sizeof(double)) == 0,
            "%s n=%zu dim=%zu: differs from the scalar table", table->name, n, dim);

    free(xb);
    free(cb);
    free(cob);
    free(sums);
    free(sums_ref);
    free(sums_sc);
    free(err);
    free(err_ref);
    free(err_sc);
    free(counts);
    free(counts_ref);
    free(counts_sc);
}

START_TEST(codebook_accumulate_bit_exact)
{
    static const size_t dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 12, 15, 16, 17, 23, 24, 31, 32, 33, 64, 100};
    static const size_t ns[] = {0, 1, 2, 7, 8, 9, 64, 1000};
    static const size_t ks[] = {1, 3, 256};
    const qn_kernels *table = qn_kernels_for_isa((qn_isa)_i);
    const qn_kernels *scalar = qn_kernels_for_isa(QN_ISA_SCALAR);
    size_t a, b, d, combo = 0;
    if (!table)
        return;
    ck_assert(table->codebook_accumulate != NULL);
    for (a = 0; a < COUNT(dims); a++)
        for (b = 0; b < COUNT(ns); b++)
            for (d = 0; d < COUNT(ks); d++, combo++) {
                acc_case cs;
                cs.dim = dims[a];
                cs.n = ns[b];
                cs.k = ks[d];
                cs.ldx = cs.dim + (combo % 3 == 0 ? 0 : combo % 3 == 1 ? 1 : 5);
                cs.with_err = combo % 4 != 3;
                cs.repeat_codes = combo % 2 == 0;
                cs.nonzero_start = combo % 5 < 2;
                check_accumulate(table, scalar, cs, 0x7c3a9e1f0b5d2468u + combo);
            }
}
END_TEST

/* Large n: many rows per centroid, so the sums carry long chains of additions. */
START_TEST(codebook_accumulate_large_n)
{
    static const size_t dims[] = {1, 3, 4, 8, 9, 16, 17};
    const qn_kernels *table = qn_kernels_for_isa((qn_isa)_i);
    const qn_kernels *scalar = qn_kernels_for_isa(QN_ISA_SCALAR);
    size_t a;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        acc_case cs;
        cs.dim = dims[a];
        cs.n = 70000;
        cs.k = a % 2 ? 256 : 17;
        cs.ldx = cs.dim + a % 2;
        cs.with_err = 1;
        cs.repeat_codes = a % 3 == 0;
        cs.nonzero_start = a % 2;
        check_accumulate(table, scalar, cs, 0x1234567887654321u + a);
    }
}
END_TEST

/* A hand-checked case: 1-D and 3-D values whose sums and squares are exact. */
START_TEST(codebook_accumulate_hand_values)
{
    /* dim 3, k 2: rows (1,2,3) -> 1, (4,5,6) -> 0, (-1,0,1) -> 1; c0 = (4,5,5), c1 = (0,0,0) */
    static const float x[9] = {1, 2, 3, 4, 5, 6, -1, 0, 1};
    static const float c[6] = {4, 5, 5, 0, 0, 0};
    static const uint32_t codes[3] = {1, 0, 1};
    const qn_kernels *table = qn_kernels_for_isa((qn_isa)_i);
    double sums[6], err[2];
    uint64_t counts[2];
    if (!table)
        return;
    memset(sums, 0, sizeof sums);
    memset(err, 0, sizeof err);
    memset(counts, 0, sizeof counts);
    err[1] = 0.5; /* added to, not overwritten */
    table->codebook_accumulate(x, 3, 3, 3, codes, c, sums, counts, err);
    ck_assert(sums[0] == 4 && sums[1] == 5 && sums[2] == 6);
    ck_assert(sums[3] == 0 && sums[4] == 2 && sums[5] == 4);
    ck_assert_uint_eq(counts[0], 1);
    ck_assert_uint_eq(counts[1], 2);
    ck_assert(err[0] == 1.0);            /* (6 - 5)^2 */
    ck_assert(err[1] == 0.5 + 14.0 + 2.0); /* 1 + 4 + 9, then 1 + 0 + 1 */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pq_kernels");
    TCase *tc = tcase_create("pq_assign");
    TCase *ta = tcase_create("codebook_accumulate");
    int i;

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, every_table_has_pq_assign);
    tcase_add_loop_test(tc, random_shapes_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, large_dims_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, exact_ties_pick_lowest_index, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, all_equal_centroids_pick_index_0, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    suite_add_tcase(s, tc);

    tcase_set_timeout(ta, 240);
    tcase_add_loop_test(ta, codebook_accumulate_bit_exact, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(ta, codebook_accumulate_large_n, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(ta, codebook_accumulate_hand_values, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    suite_add_tcase(s, ta);

    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
        printf("pq_kernels: isa %d (%s): %s\n", i, t ? t->name : "-",
               t ? "tested" : "not built or not runnable, skipped");
    }

    return qn_test_run(s);
}
