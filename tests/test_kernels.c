/*
 * Kernel tables: nearest_l2 of every built and runnable ISA against a
 * double-precision oracle written here, and every SIMD table against scalar.
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

/* ------------------------------------------------------------------------- */
/* Fixed-seed PRNG (splitmix64) and misaligned buffers                        */
/* ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1), a multiple of 2^-23 (exact in float). */
static float rnd_sym(uint64_t *s)
{
    return (float)((double)(splitmix64(s) >> 40) * (1.0 / 8388608.0) - 1.0);
}

static double absd(double v)
{
    return v < 0 ? -v : v;
}

/*
 * Buffers are allocated with exactly one element more than needed and used
 * from element 1, so every pointer handed to a kernel is 4 bytes off the
 * malloc alignment, and (under ASan) any read past the end is caught.
 */
static float *alloc_f(size_t count, float **base)
{
    *base = (float *)malloc((count + 1) * sizeof(float));
    ck_assert_ptr_nonnull(*base);
    return *base + 1;
}

static uint32_t *alloc_u(size_t count, uint32_t **base)
{
    *base = (uint32_t *)malloc((count + 1) * sizeof(uint32_t));
    ck_assert_ptr_nonnull(*base);
    return *base + 1;
}

/* ------------------------------------------------------------------------- */
/* Oracle                                                                     */
/* ------------------------------------------------------------------------- */

/* ------------------------------------------------------------------------- */
/* One shape                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct shape {
    size_t n, k, dim, ldx;
} shape;

/*
 * Run table (and, for SIMD tables, scalar) on random data of shape sh with
 * seed, and check every row against the oracle.
 */
static void check_shape(const qn_kernels *table, const qn_kernels *scalar, shape sh, uint64_t seed)
{
    const size_t n = sh.n, k = sh.k, dim = sh.dim, ldx = sh.ldx;
    const size_t xlen = (n - 1) * ldx + dim;
    float *xb, *cb, *db, *sdb;
    uint32_t *cob, *co2b, *scob;
    float *x = alloc_f(xlen, &xb);
    float *c = alloc_f(k * dim, &cb);
    float *dists = alloc_f(n + 1, &db); /* one guard element past n */
    float *sdists = alloc_f(n, &sdb);
    uint32_t *codes = alloc_u(n + 1, &cob);
    uint32_t *codes2 = alloc_u(n + 1, &co2b);
    uint32_t *scodes = alloc_u(n, &scob);
    size_t i;

    for (i = 0; i < xlen; i++)
        x[i] = rnd_sym(&seed);
    for (i = 0; i < k * dim; i++)
        c[i] = rnd_sym(&seed);
    for (i = 0; i <= n; i++) {
        codes[i] = CODE_SENTINEL;
        codes2[i] = CODE_SENTINEL;
        dists[i] = DIST_SENTINEL;
    }

    table->nearest_l2(x, n, ldx, c, k, dim, codes, dists);
    table->nearest_l2(x, n, ldx, c, k, dim, codes2, NULL);

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
        REQUIRE(absd((double)dists[i] - chosen) <= 1e-5 * chosen + 1e-6,
                "%s n=%zu k=%zu dim=%zu ldx=%zu row %zu: reported %.9g, distance of code %u is "
                "%.9g",
                table->name, n, k, dim, ldx, i, (double)dists[i], (unsigned)codes[i], chosen);
        REQUIRE(chosen <= best * (1.0 + 1e-5) + 1e-6,
                "%s n=%zu k=%zu dim=%zu ldx=%zu row %zu: code %u at %.9g, minimum is %.9g",
                table->name, n, k, dim, ldx, i, (unsigned)codes[i], chosen, best);
    }

    if (table != scalar) {
        scalar->nearest_l2(x, n, ldx, c, k, dim, scodes, sdists);
        for (i = 0; i < n; i++) {
            const float *xi = x + i * ldx;
            uint32_t u;
            float da, db2;
            REQUIRE(absd((double)dists[i] - (double)sdists[i]) <= 1e-5 * (double)sdists[i] + 1e-6,
                    "%s n=%zu k=%zu dim=%zu row %zu: distance %.9g, scalar %.9g", table->name, n,
                    k, dim, i, (double)dists[i], (double)sdists[i]);
            if (codes[i] == scodes[i])
                continue;
            /* The scalar distances of both choices, from the scalar kernel itself. */
            scalar->nearest_l2(xi, 1, ldx, c + (size_t)codes[i] * dim, 1, dim, &u, &da);
            scalar->nearest_l2(xi, 1, ldx, c + (size_t)scodes[i] * dim, 1, dim, &u, &db2);
            REQUIRE(absd((double)da - (double)db2) < 1e-5 * (double)(da > db2 ? da : db2),
                    "%s n=%zu k=%zu dim=%zu row %zu: code %u (scalar distance %.9g) but scalar "
                    "chose %u (%.9g)",
                    table->name, n, k, dim, i, (unsigned)codes[i], (double)da, (unsigned)scodes[i],
                    (double)db2);
        }
    }

    free(xb);
    free(cb);
    free(db);
    free(sdb);
    free(cob);
    free(co2b);
    free(scob);
}

/* The table of loop-test isa _i, or NULL when it is not built or runnable. */
static const qn_kernels *table_for(int i)
{
    const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
    if (t) {
        ck_assert_int_eq((int)t->isa, i);
        ck_assert(t->nearest_l2 != NULL);
    }
    return t;
}

static const qn_kernels *scalar_table(void)
{
    const qn_kernels *s = qn_kernels_for_isa(QN_ISA_SCALAR);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

static const size_t test_dims[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100};
static const size_t test_ks[] = {1, 2, 3, 7, 8, 15, 16, 17, 31, 33, 64, 255, 256, 257, 1000};
static const size_t test_ns[] = {1, 3, 17, 64};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

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
                check_shape(table, scalar_table(), sh, 0x51ed270b27d8a4c1u + combo);
            }
        }
    }
}
END_TEST

/* Larger shapes: several row blocks, codebooks larger than one packed chunk. */
START_TEST(large_shapes_match_oracle)
{
    static const shape shapes[] = {
        {600, 700, 9, 9},  {300, 2000, 4, 5}, {530, 300, 33, 33}, {257, 70, 64, 67},
        {513, 129, 16, 16}, {2, 65536, 8, 8},  {97, 300, 65, 65},  {1, 5000, 1, 1},
    };
    const qn_kernels *table = table_for(_i);
    size_t s;
    if (!table)
        return;
    for (s = 0; s < COUNT(shapes); s++)
        check_shape(table, scalar_table(), shapes[s], 0x2545f4914f6cdd1du + s);
}
END_TEST

/*
 * Duplicated centroids, all nearest to every row (the others are far away):
 * the lowest index must win, whatever lane, tile or chunk the copies sit in.
 */
START_TEST(exact_ties_pick_lowest_index)
{
    static const size_t dims[] = {1, 2, 3, 4, 8, 9, 16, 17, 32, 33, 64, 100};
    static const size_t dups_a[] = {5, 9, 21, 517, 999};
    static const size_t dups_b[] = {250, 251, 998, 999};
    static const size_t *const dup_sets[] = {dups_a, dups_b};
    static const size_t dup_counts[] = {COUNT(dups_a), COUNT(dups_b)};
    const qn_kernels *table = table_for(_i);
    const size_t k = 1000, n = 19;
    uint64_t seed = 0x9fb21c651e98df25u;
    size_t a, set;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        for (set = 0; set < COUNT(dup_sets); set++) {
            const size_t dim = dims[a], ldx = dim + 1;
            float *xb, *cb, *db;
            uint32_t *cob, *co2b;
            float *x = alloc_f((n - 1) * ldx + dim, &xb);
            float *c = alloc_f(k * dim, &cb);
            float *dists = alloc_f(n, &db);
            uint32_t *codes = alloc_u(n, &cob);
            uint32_t *codes2 = alloc_u(n, &co2b);
            const size_t *dups = dup_sets[set];
            float v[100];
            size_t i, j, t;

            for (t = 0; t < dim; t++)
                v[t] = rnd_sym(&seed);
            for (j = 0; j < k * dim; j++)
                c[j] = 3.0f + rnd_sym(&seed); /* in [2, 4): far from v and x */
            for (j = 0; j < dup_counts[set]; j++)
                for (t = 0; t < dim; t++)
                    c[dups[j] * dim + t] = v[t];
            for (i = 0; i < n; i++) {
                for (t = 0; t < dim; t++)
                    x[i * ldx + t] = i == 0 ? v[t] : v[t] + 0.01f * rnd_sym(&seed);
                if (i + 1 < n)
                    x[i * ldx + dim] = 1e3f; /* stride padding, never read */
            }

            table->nearest_l2(x, n, ldx, c, k, dim, codes, dists);
            table->nearest_l2(x, n, ldx, c, k, dim, codes2, NULL);
            for (i = 0; i < n; i++) {
                REQUIRE(codes[i] == dups[0] && codes2[i] == dups[0],
                        "%s dim=%zu row %zu: code %u (%u without dists), expected %zu",
                        table->name, dim, i, (unsigned)codes[i], (unsigned)codes2[i], dups[0]);
            }
            REQUIRE(dists[0] == 0.0f, "%s dim=%zu: x equal to the centroids but distance %.9g",
                    table->name, dim, (double)dists[0]);
            free(xb);
            free(cb);
            free(db);
            free(cob);
            free(co2b);
        }
    }
}
END_TEST

/* Rows copied from centroids: distance exactly 0, code the lowest equal centroid. */
START_TEST(exact_match_has_zero_distance)
{
    static const size_t dims[] = {1, 3, 4, 8, 9, 16, 17, 32, 64, 100};
    static const size_t ks[] = {1, 5, 16, 17, 256, 1000};
    const qn_kernels *table = table_for(_i);
    const size_t n = 23;
    uint64_t seed = 0xd1b54a32d192ed03u;
    size_t a, b;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        for (b = 0; b < COUNT(ks); b++) {
            const size_t dim = dims[a], k = ks[b], ldx = dim + 3;
            float *xb, *cb, *db;
            uint32_t *cob;
            float *x = alloc_f((n - 1) * ldx + dim, &xb);
            float *c = alloc_f(k * dim, &cb);
            float *dists = alloc_f(n, &db);
            uint32_t *codes = alloc_u(n, &cob);
            size_t i, j, t;

            for (j = 0; j < k * dim; j++)
                c[j] = rnd_sym(&seed);
            for (i = 0; i < n; i++) {
                const size_t src = (i * 37 + 3) % k;
                for (t = 0; t < dim; t++)
                    x[i * ldx + t] = c[src * dim + t];
            }
            table->nearest_l2(x, n, ldx, c, k, dim, codes, dists);
            for (i = 0; i < n; i++) {
                size_t expect = 0;
                /* the lowest centroid equal to the row (random copies can repeat) */
                for (j = 0; j < k; j++) {
                    for (t = 0; t < dim && c[j * dim + t] == x[i * ldx + t]; t++)
                        ;
                    if (t == dim) {
                        expect = j;
                        break;
                    }
                }
                REQUIRE(codes[i] == expect && dists[i] == 0.0f,
                        "%s dim=%zu k=%zu row %zu: code %u distance %.9g, expected %zu at 0",
                        table->name, dim, k, i, (unsigned)codes[i], (double)dists[i], expect);
            }
            free(xb);
            free(cb);
            free(db);
            free(cob);
        }
    }
}
END_TEST

/* Finite inputs whose distances all overflow to +inf: all tie, index 0 wins. */
START_TEST(overflowing_distances_tie_to_index_0)
{
    static const size_t dims[] = {1, 4, 8, 17, 100};
    const qn_kernels *table = table_for(_i);
    const size_t n = 5, k = 40;
    size_t a;
    if (!table)
        return;
    for (a = 0; a < COUNT(dims); a++) {
        const size_t dim = dims[a];
        float *xb, *cb, *db;
        uint32_t *cob;
        float *x = alloc_f(n * dim, &xb);
        float *c = alloc_f(k * dim, &cb);
        float *dists = alloc_f(n, &db);
        uint32_t *codes = alloc_u(n, &cob);
        size_t i;
        for (i = 0; i < n * dim; i++)
            x[i] = 1e30f;
        for (i = 0; i < k * dim; i++)
            c[i] = -1e30f;
        table->nearest_l2(x, n, dim, c, k, dim, codes, dists);
        for (i = 0; i < n; i++)
            REQUIRE(codes[i] == 0 && dists[i] > FLT_MAX, "%s dim=%zu row %zu: code %u distance %g",
                    table->name, dim, i, (unsigned)codes[i], (double)dists[i]);
        free(xb);
        free(cb);
        free(db);
        free(cob);
    }
}
END_TEST

START_TEST(scalar_is_always_available)
{
    const qn_kernels *s = qn_kernels_for_isa(QN_ISA_SCALAR);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->isa, QN_ISA_SCALAR);
    ck_assert(s->nearest_l2 != NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("nearest_l2");
    int i;

    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, scalar_is_always_available);
    tcase_add_loop_test(tc, random_shapes_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, large_shapes_match_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, exact_ties_pick_lowest_index, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, exact_match_has_zero_distance, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, overflowing_distances_tie_to_index_0, QN_ISA_SCALAR,
                        QN_ISA_AVX512 + 1);
    suite_add_tcase(s, tc);

    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
        printf("kernels: isa %d (%s): %s\n", i, t ? t->name : "-",
               t ? "tested" : "not built or not runnable, skipped");
    }

    return qn_test_run(s);
}
