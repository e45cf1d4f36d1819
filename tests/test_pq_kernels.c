/*
 * Kernel tables: pq_assign (fused ||c||^2 - 2 x.c assignment) of every built
 * and runnable ISA against a double-precision brute-force oracle written here.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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
        if (t)
            ck_assert(t->pq_assign != NULL);
    }
    ck_assert_ptr_nonnull(qn_kernels_for_isa(QN_ISA_SCALAR));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pq_kernels");
    TCase *tc = tcase_create("pq_assign");
    int i;

    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, every_table_has_pq_assign);
    tcase_add_loop_test(tc, random_shapes_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, large_dims_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, exact_ties_pick_lowest_index, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, all_equal_centroids_pick_index_0, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    suite_add_tcase(s, tc);

    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
        printf("pq_kernels: isa %d (%s): %s\n", i, t ? t->name : "-",
               t ? "tested" : "not built or not runnable, skipped");
    }

    return qn_test_run(s);
}
