/*
 * Kernel tables: mask_bits of every built and runnable ISA. The scalar table
 * against a per-block oracle written here from the public contract
 * (qn_rng_block_noised of <qnoise/rng.h>), every SIMD table bit for bit
 * against scalar, and the write contract (popcount, zeroed tail, guard word).
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <qnoise/rng.h>

#include "kernels/kernels.h"

/* Fail the test only when cond is false: ck_assert marks a point on every
 * success, which is slow in the tight loops below. */
#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define GUARD 0xa5c3f00d5a3c0ff1u /* never a plausible mask word */

/* ------------------------------------------------------------------------- */
/* Helpers                                                                    */
/* ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint32_t threshold_of(float p)
{
    return (uint32_t)ceilf(p * 16777216.0f);
}

static size_t words_of(size_t count)
{
    return (count + 63) / 64;
}

/* A mask buffer of words_of(count) words plus one guard word, all GUARD. */
static uint64_t *alloc_bits(size_t count)
{
    const size_t n = words_of(count) + 1;
    uint64_t *b = (uint64_t *)malloc(n * sizeof(uint64_t));
    size_t i;
    ck_assert_ptr_nonnull(b);
    for (i = 0; i < n; i++)
        b[i] = GUARD;
    return b;
}

static uint64_t popcount_words(const uint64_t *bits, size_t nwords)
{
    uint64_t n = 0;
    size_t i;
    for (i = 0; i < nwords; i++) {
        uint64_t w = bits[i];
        while (w) {
            w &= w - 1;
            n++;
        }
    }
    return n;
}

/*
 * Run table->mask_bits into a fresh buffer and check the write contract:
 * (c) the return value is the number of set bits, (d) the bits past count in
 * the last word are 0 and the guard word after it is untouched. The caller
 * frees the buffer.
 */
static uint64_t *run_checked(const qn_kernels *table, const uint32_t key[2], uint64_t step,
                             uint64_t first_block, size_t count, uint32_t thr, uint64_t *set_out)
{
    const size_t nw = words_of(count);
    uint64_t *bits = alloc_bits(count);
    uint64_t set = table->mask_bits(key, step, first_block, count, thr, bits);
    REQUIRE(bits[nw] == GUARD,
            "%s first_block=%llu count=%zu step=%llu thr=%u: guard word past the end overwritten",
            table->name, (unsigned long long)first_block, count, (unsigned long long)step,
            (unsigned)thr);
    if (count % 64)
        REQUIRE((bits[nw - 1] >> (count % 64)) == 0,
                "%s first_block=%llu count=%zu step=%llu thr=%u: bits past count set in the last "
                "word (%016llx)",
                table->name, (unsigned long long)first_block, count, (unsigned long long)step,
                (unsigned)thr, (unsigned long long)bits[nw - 1]);
    REQUIRE(set == popcount_words(bits, nw),
            "%s first_block=%llu count=%zu step=%llu thr=%u: returned %llu, %llu bits set",
            table->name, (unsigned long long)first_block, count, (unsigned long long)step,
            (unsigned)thr, (unsigned long long)set,
            (unsigned long long)popcount_words(bits, nw));
    *set_out = set;
    return bits;
}

/* The table of loop-test isa _i, or NULL when it is not built or runnable. */
static const qn_kernels *table_for(int i)
{
    const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
    if (t) {
        ck_assert_int_eq((int)t->isa, i);
        ck_assert(t->mask_bits != NULL);
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
/* Parameters                                                                 */
/* ------------------------------------------------------------------------- */

static const float oracle_ps[] = {0.0f, 1.0f / 16777216.0f /* 2^-24 */, 0.1f, 0.5f, 0.999f};

static const uint64_t test_first_blocks[] = {
    0, 1, 2, 3, 4, 5, 63, 64, 65, 127,
    (1ull << 32) - 3,           /* past the 32-bit block index */
    (1ull << 34) + 7,           /* group counter past its 32-bit low word */
    (1ull << 34) - 21,          /* group counter low word wraps inside one vector */
    (1ull << 34) - 4 * 16 * 3,  /* ... and on a 16-group boundary */
    ~0ull - 70,                 /* 64-bit block index wraps to 0 */
};

static const size_t test_counts[] = {0, 1, 3, 4, 5, 63, 64, 65, 100, 1000, 4097};

static const uint64_t test_steps[] = {0, 1, 12345, 0xffffffffu, (1ull << 32) + 5,
                                      0xfedcba9876543210u};

static const uint32_t test_thresholds[] = {0, 1, 1677722 /* ~0.1 */, 1u << 23,
                                           (1u << 24) - 1, 1u << 24};

/* Keys: raw extremes and two derived layer keys. */
static void test_key(size_t i, uint32_t key[2])
{
    switch (i) {
    case 0:
        key[0] = 0;
        key[1] = 0;
        break;
    case 1:
        key[0] = 0xffffffffu;
        key[1] = 0xffffffffu;
        break;
    case 2:
        qn_rng_layer_key(42, 7, key);
        break;
    default:
        qn_rng_layer_key(0x0123456789abcdefu, 0xfedcba9876543210u, key);
        break;
    }
}
#define N_TEST_KEYS 4

/* ------------------------------------------------------------------------- */
/* Tests                                                                      */
/* ------------------------------------------------------------------------- */

/* (a) every table against the per-block oracle of the public contract. */
START_TEST(matches_block_oracle)
{
    static const struct {
        uint64_t seed, layer, step, first_block;
        size_t count;
    } cases[] = {
        {42, 7, 0, 0, 1000},
        {42, 7, 3, 5, 777},
        {0x0123456789abcdefu, 3, (1ull << 32) + 9, (1ull << 34) - 13, 300},
        {1, 0xfedcba9876543210u, 0xfedcba9876543210u, (1ull << 32) - 3, 259},
        {0, 0, 1, ~0ull - 9, 40},
    };
    const qn_kernels *table = table_for(_i);
    size_t c, q, i;
    if (!table)
        return;
    for (c = 0; c < COUNT(cases); c++) {
        uint32_t key[2];
        qn_rng_layer_key(cases[c].seed, cases[c].layer, key);
        for (q = 0; q < COUNT(oracle_ps); q++) {
            const float p = oracle_ps[q];
            const size_t count = cases[c].count;
            uint64_t set, expect_set = 0;
            uint64_t *bits = run_checked(table, key, cases[c].step, cases[c].first_block, count,
                                         threshold_of(p), &set);
            for (i = 0; i < count; i++) {
                const uint64_t b = cases[c].first_block + i;
                const int want =
                    qn_rng_block_noised(cases[c].seed, cases[c].layer, cases[c].step, b, p);
                const int got = (int)((bits[i / 64] >> (i % 64)) & 1u);
                REQUIRE(got == want, "%s case %zu p=%.9g block %llu: bit %d, oracle %d",
                        table->name, c, (double)p, (unsigned long long)b, got, want);
                expect_set += (uint64_t)want;
            }
            REQUIRE(set == expect_set, "%s case %zu p=%.9g: returned %llu, oracle %llu",
                    table->name, c, (double)p, (unsigned long long)set,
                    (unsigned long long)expect_set);
            free(bits);
        }
    }
}
END_TEST

/* (b)-(d) every table bit for bit against scalar over the edge grid. */
START_TEST(matches_scalar_grid)
{
    const qn_kernels *table = table_for(_i);
    const qn_kernels *scalar = scalar_table();
    size_t f, n, s, kk, t, w;
    if (!table)
        return;
    for (f = 0; f < COUNT(test_first_blocks); f++)
        for (n = 0; n < COUNT(test_counts); n++)
            for (s = 0; s < COUNT(test_steps); s++)
                for (kk = 0; kk < N_TEST_KEYS; kk++)
                    for (t = 0; t < COUNT(test_thresholds); t++) {
                        const uint64_t fb = test_first_blocks[f], step = test_steps[s];
                        const size_t count = test_counts[n];
                        const uint32_t thr = test_thresholds[t];
                        uint32_t key[2];
                        uint64_t set, sset;
                        uint64_t *bits, *sbits;
                        test_key(kk, key);
                        bits = run_checked(table, key, step, fb, count, thr, &set);
                        if (table == scalar) {
                            free(bits);
                            continue;
                        }
                        sbits = run_checked(scalar, key, step, fb, count, thr, &sset);
                        for (w = 0; w < words_of(count); w++)
                            REQUIRE(bits[w] == sbits[w],
                                    "%s first_block=%llu count=%zu step=%llu key=%zu thr=%u: "
                                    "word %zu is %016llx, scalar %016llx",
                                    table->name, (unsigned long long)fb, count,
                                    (unsigned long long)step, kk, (unsigned)thr, w,
                                    (unsigned long long)bits[w], (unsigned long long)sbits[w]);
                        REQUIRE(set == sset, "%s first_block=%llu count=%zu: %llu set, scalar %llu",
                                table->name, (unsigned long long)fb, count,
                                (unsigned long long)set, (unsigned long long)sset);
                        free(bits);
                        free(sbits);
                    }
}
END_TEST

/* (b)-(d) random first blocks, counts, steps, keys and thresholds. */
START_TEST(matches_scalar_random)
{
    const qn_kernels *table = table_for(_i);
    const qn_kernels *scalar = scalar_table();
    uint64_t seed = 0x6a09e667f3bcc908u;
    int it;
    size_t w;
    if (!table)
        return;
    for (it = 0; it < 300; it++) {
        const uint64_t r = splitmix64(&seed);
        /* small, 32-bit and full 64-bit block indices in turn */
        const uint64_t fb = it % 3 == 0 ? r % 1000 : it % 3 == 1 ? r >> 30 : r;
        const size_t count = (size_t)(splitmix64(&seed) % 3000);
        const uint64_t step = splitmix64(&seed);
        const uint32_t thr = (uint32_t)(splitmix64(&seed) % ((1u << 24) + 1));
        uint32_t key[2];
        uint64_t set, sset, kr = splitmix64(&seed);
        uint64_t *bits, *sbits;
        key[0] = (uint32_t)kr;
        key[1] = (uint32_t)(kr >> 32);
        bits = run_checked(table, key, step, fb, count, thr, &set);
        sbits = run_checked(scalar, key, step, fb, count, thr, &sset);
        for (w = 0; w < words_of(count); w++)
            REQUIRE(bits[w] == sbits[w],
                    "%s iteration %d first_block=%llu count=%zu step=%llu thr=%u: word %zu is "
                    "%016llx, scalar %016llx",
                    table->name, it, (unsigned long long)fb, count, (unsigned long long)step,
                    (unsigned)thr, w, (unsigned long long)bits[w], (unsigned long long)sbits[w]);
        REQUIRE(set == sset, "%s iteration %d: %llu set, scalar %llu", table->name, it,
                (unsigned long long)set, (unsigned long long)sset);
        free(bits);
        free(sbits);
    }
}
END_TEST

/* (b) long runs (the SIMD main loops), at each first_block & 3, against scalar. */
START_TEST(matches_scalar_long)
{
    static const uint64_t fbs[] = {0, 1, 2, 3, (1ull << 34) - 4 * 1000 - 3};
    const qn_kernels *table = table_for(_i);
    const qn_kernels *scalar = scalar_table();
    const size_t count = 100000 + 37;
    uint32_t key[2];
    size_t f, w;
    if (!table)
        return;
    qn_rng_layer_key(2024, 11, key);
    for (f = 0; f < COUNT(fbs); f++) {
        uint64_t set, sset;
        uint64_t *bits = run_checked(table, key, 987654321, fbs[f], count, 5033165, &set);
        uint64_t *sbits = run_checked(scalar, key, 987654321, fbs[f], count, 5033165, &sset);
        for (w = 0; w < words_of(count); w++)
            REQUIRE(bits[w] == sbits[w], "%s first_block=%llu: word %zu is %016llx, scalar %016llx",
                    table->name, (unsigned long long)fbs[f], w, (unsigned long long)bits[w],
                    (unsigned long long)sbits[w]);
        REQUIRE(set == sset, "%s first_block=%llu: %llu set, scalar %llu", table->name,
                (unsigned long long)fbs[f], (unsigned long long)set, (unsigned long long)sset);
        free(bits);
        free(sbits);
    }
}
END_TEST

/* count == 0 writes nothing (not even the first word) and returns 0. */
START_TEST(empty_writes_nothing)
{
    const qn_kernels *table = table_for(_i);
    uint32_t key[2];
    size_t t;
    if (!table)
        return;
    qn_rng_layer_key(5, 6, key);
    for (t = 0; t < COUNT(test_thresholds); t++) {
        uint64_t word = GUARD;
        REQUIRE(table->mask_bits(key, 1, 3, 0, test_thresholds[t], &word) == 0 && word == GUARD,
                "%s thr=%u: count 0 returned non-zero or wrote", table->name,
                (unsigned)test_thresholds[t]);
    }
}
END_TEST

/* (e) p = 0.1 over a million blocks: the count within 6 sigma of 100,000. */
START_TEST(rate_is_p)
{
    const qn_kernels *table = table_for(_i);
    const size_t count = 1000000;
    const double p = 0.1, mean = (double)count * p, sigma = sqrt((double)count * p * (1.0 - p));
    uint32_t key[2];
    uint64_t set;
    uint64_t *bits;
    if (!table)
        return;
    qn_rng_layer_key(0x5eed, 3, key);
    bits = run_checked(table, key, 17, 12345, count, threshold_of(0.1f), &set);
    REQUIRE(fabs((double)set - mean) <= 6.0 * sigma, "%s: %llu of %zu blocks noised at p=0.1",
            table->name, (unsigned long long)set, count);
    free(bits);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mask_kernels");
    TCase *tc = tcase_create("mask_bits");
    int i;

    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, matches_block_oracle, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, matches_scalar_grid, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, matches_scalar_random, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, matches_scalar_long, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, empty_writes_nothing, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(tc, rate_is_p, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    suite_add_tcase(s, tc);

    for (i = QN_ISA_SCALAR; i <= QN_ISA_AVX512; i++) {
        const qn_kernels *t = qn_kernels_for_isa((qn_isa)i);
        printf("mask_kernels: isa %d (%s): %s\n", i, t ? t->name : "-",
               t ? "tested" : "not built or not runnable, skipped");
    }

    return qn_test_run(s);
}
