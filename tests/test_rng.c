/*
 * rng.h: Philox4x32-10 known answers, the per-block draw contract, and
 * statistical checks (uniformity, Bernoulli rate, independence of neighbours).
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

#include <qnoise/rng.h>

/* Random123 kat_vectors, "philox4x32 10" lines: counter[4], key[2] -> output[4]. */
static const uint32_t kat[3][10] = {
    {0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
     0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
    {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
     0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
    {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0,
     0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1},
};

START_TEST(philox_known_answers)
{
    uint32_t out[4];
    qn_philox4x32_10(kat[_i], kat[_i] + 4, out);
    ck_assert_uint_eq(out[0], kat[_i][6]);
    ck_assert_uint_eq(out[1], kat[_i][7]);
    ck_assert_uint_eq(out[2], kat[_i][8]);
    ck_assert_uint_eq(out[3], kat[_i][9]);
}
END_TEST

START_TEST(philox_output_may_alias_counter)
{
    uint32_t buf[4];
    memcpy(buf, kat[2], sizeof buf);
    qn_philox4x32_10(buf, kat[2] + 4, buf);
    ck_assert_uint_eq(buf[0], kat[2][6]);
    ck_assert_uint_eq(buf[3], kat[2][9]);
}
END_TEST

/* Produced by tests/rng_golden.py, a separate implementation of the contract in rng.h. */
static const struct {
    uint64_t seed, layer, step, block;
    uint32_t word;
} golden[] = {
    {0x0ull, 0x0ull, 0x0ull, 0x0ull, 0x506d3a78u},
    {0x0ull, 0x0ull, 0x0ull, 0x1ull, 0xd060ad8eu},
    {0x0ull, 0x0ull, 0x0ull, 0x3ull, 0xf3dd2a0cu},
    {0x0ull, 0x0ull, 0x0ull, 0x4ull, 0x49eb2247u},
    {0x1ull, 0x0ull, 0x0ull, 0x0ull, 0x7aa833c6u},
    {0x0ull, 0x1ull, 0x0ull, 0x0ull, 0xd41dc0bfu},
    {0x0ull, 0x0ull, 0x1ull, 0x0ull, 0xb8482b37u},
    {0x123456789abcdefull, 0x7ull, 0x3e8ull, 0x3039ull, 0x33a5a4a5u},
    {0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull,
     0xdcbbf15eu},
    {0x2aull, 0x3ull, 0x200000005ull, 0x10000000002ull, 0xea9adffdu},
};

START_TEST(block_draw_contract_is_stable)
{
    size_t i;
    for (i = 0; i < sizeof golden / sizeof golden[0]; i++) {
        uint32_t w = qn_rng_block_u32(golden[i].seed, golden[i].layer, golden[i].step, golden[i].block);
        ck_assert_msg(w == golden[i].word, "case %zu: got %08x want %08x", i, w, golden[i].word);
        ck_assert(qn_rng_block_uniform(golden[i].seed, golden[i].layer, golden[i].step, golden[i].block) ==
                  (float)(golden[i].word >> 8) / 16777216.0f);
    }
}
END_TEST

START_TEST(words4_matches_single_draws)
{
    uint32_t key[2], w[4];
    uint64_t g;
    int j;
    qn_rng_layer_key(99, 5, key);
    for (g = 0; g < 64; g++) {
        qn_rng_block_words4(key, 17, g, w);
        for (j = 0; j < 4; j++)
            ck_assert_uint_eq(w[j], qn_rng_block_u32(99, 5, 17, 4 * g + (uint64_t)j));
    }
}
END_TEST

START_TEST(uniform_is_exact_and_in_range)
{
    ck_assert(qn_rng_u32_to_unit(0) == 0.0f);
    ck_assert(qn_rng_u32_to_unit(0xffffffffu) < 1.0f);
    ck_assert(qn_rng_u32_to_unit(0xffffffffu) == 1.0f - 1.0f / 16777216.0f);
    ck_assert(qn_rng_u32_to_unit(0x100u) == 1.0f / 16777216.0f);
    ck_assert(qn_rng_u32_to_unit(0xffu) == 0.0f); /* low 8 bits are dropped */
    /* p = 0 never noises, a p just below 1 almost always does */
    ck_assert_int_eq(qn_rng_block_noised(1, 2, 3, 4, 0.0f), 0);
}
END_TEST

/* Chi-square statistic of `n` draws over `bins` equal bins of [0, 1). */
static double chi_square_blocks(uint64_t seed, uint64_t layer, uint64_t step, uint64_t n, int bins)
{
    static unsigned counts[1024];
    uint32_t key[2], w[4];
    double expect = (double)n / bins, chi = 0;
    uint64_t g;
    int b, j;
    memset(counts, 0, sizeof counts);
    qn_rng_layer_key(seed, layer, key);
    for (g = 0; g < n / 4; g++) {
        qn_rng_block_words4(key, step, g, w);
        for (j = 0; j < 4; j++)
            counts[(int)(qn_rng_u32_to_unit(w[j]) * bins)]++;
    }
    for (b = 0; b < bins; b++)
        chi += (counts[b] - expect) * (counts[b] - expect) / expect;
    return chi;
}

START_TEST(uniformity_chi_square)
{
    /* 256 bins, 255 degrees of freedom: mean 255, sd 22.6; 400 is beyond p = 1e-9. */
    uint64_t seeds[4] = {0, 1, 0xdeadbeefull, 0xffffffffffffffffull};
    int i;
    for (i = 0; i < 4; i++) {
        double chi = chi_square_blocks(seeds[i], (uint64_t)i, 12345, 1u << 20, 256);
        ck_assert_msg(chi < 400.0 && chi > 140.0, "seed %d: chi-square %.1f", i, chi);
    }
}
END_TEST

START_TEST(bernoulli_rate_within_bounds)
{
    const float ps[5] = {0.01f, 0.05f, 0.1f, 0.2f, 0.5f};
    const uint64_t n = 1u << 20;
    int i;
    for (i = 0; i < 5; i++) {
        uint64_t b, hits = 0;
        double p = ps[i], sd = sqrt(n * p * (1 - p));
        for (b = 0; b < n; b++)
            hits += (uint64_t)qn_rng_block_noised(7, 11, (uint64_t)i, b, ps[i]);
        ck_assert_msg(fabs((double)hits - n * p) < 6 * sd, "p=%g: %llu of %llu", p,
                      (unsigned long long)hits, (unsigned long long)n);
    }
}
END_TEST

/* Pearson correlation of draw pairs (a_i, b_i). */
typedef struct corr_acc {
    double sa, sb, saa, sbb, sab;
    double n;
} corr_acc;

static void corr_add(corr_acc *c, double a, double b)
{
    c->sa += a;
    c->sb += b;
    c->saa += a * a;
    c->sbb += b * b;
    c->sab += a * b;
    c->n += 1;
}

static double corr_value(const corr_acc *c)
{
    double cov = c->sab / c->n - (c->sa / c->n) * (c->sb / c->n);
    double va = c->saa / c->n - (c->sa / c->n) * (c->sa / c->n);
    double vb = c->sbb / c->n - (c->sb / c->n) * (c->sb / c->n);
    return cov / sqrt(va * vb);
}

/* 2-D chi-square over an 8x8 grid of pairs: 63 degrees of freedom (mean 63, sd 11.2). */
typedef struct pair_grid {
    unsigned cell[8][8];
    unsigned n;
} pair_grid;

static void grid_add(pair_grid *g, float a, float b)
{
    g->cell[(int)(a * 8)][(int)(b * 8)]++;
    g->n++;
}

static double grid_chi(const pair_grid *g)
{
    double e = g->n / 64.0, chi = 0;
    int i, j;
    for (i = 0; i < 8; i++)
        for (j = 0; j < 8; j++)
            chi += (g->cell[i][j] - e) * (g->cell[i][j] - e) / e;
    return chi;
}

START_TEST(neighbours_are_independent)
{
    /* Pairs that differ by one in exactly one coordinate: block, step, layer, seed. */
    const int N = 200000;
    corr_acc c[4];
    pair_grid g[4];
    int i, d;
    memset(c, 0, sizeof c);
    memset(g, 0, sizeof g);
    for (i = 0; i < N; i++) {
        uint64_t s = 1000 + (uint64_t)i * 7919u, l = (uint64_t)i % 97, t = (uint64_t)i * 31u, b = (uint64_t)i * 13u;
        float u = qn_rng_block_uniform(s, l, t, b);
        float v[4];
        v[0] = qn_rng_block_uniform(s, l, t, b + 1);
        v[1] = qn_rng_block_uniform(s, l, t + 1, b);
        v[2] = qn_rng_block_uniform(s, l + 1, t, b);
        v[3] = qn_rng_block_uniform(s + 1, l, t, b);
        for (d = 0; d < 4; d++) {
            corr_add(&c[d], u, v[d]);
            grid_add(&g[d], u, v[d]);
        }
    }
    for (d = 0; d < 4; d++) {
        double r = corr_value(&c[d]), chi = grid_chi(&g[d]);
        /* |r| sd is 1/sqrt(N) = 0.0022; allow 6 sd. chi-square 63 dof: 150 is beyond p = 1e-9. */
        ck_assert_msg(fabs(r) < 6.0 / sqrt((double)N), "neighbour %d: correlation %.5f", d, r);
        ck_assert_msg(chi < 150.0, "neighbour %d: pair chi-square %.1f", d, chi);
    }
}
END_TEST

START_TEST(masks_of_neighbouring_steps_differ)
{
    /* At p = 0.5 two independent masks of 4096 blocks agree on about half the blocks. */
    const uint64_t n = 4096;
    uint64_t step, b;
    for (step = 0; step < 8; step++) {
        uint64_t same = 0;
        for (b = 0; b < n; b++)
            same += qn_rng_block_noised(5, 9, step, b, 0.5f) == qn_rng_block_noised(5, 9, step + 1, b, 0.5f);
        /* mean 2048, sd 32 */
        ck_assert_msg(same > 2048 - 6 * 32 && same < 2048 + 6 * 32, "step %llu: %llu equal",
                      (unsigned long long)step, (unsigned long long)same);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rng");
    TCase *tk = tcase_create("known-answers");
    TCase *ts = tcase_create("statistics");
    tcase_add_loop_test(tk, philox_known_answers, 0, 3);
    tcase_add_test(tk, philox_output_may_alias_counter);
    tcase_add_test(tk, block_draw_contract_is_stable);
    tcase_add_test(tk, words4_matches_single_draws);
    tcase_add_test(tk, uniform_is_exact_and_in_range);
    tcase_add_test(ts, uniformity_chi_square);
    tcase_add_test(ts, bernoulli_rate_within_bounds);
    tcase_add_test(ts, neighbours_are_independent);
    tcase_add_test(ts, masks_of_neighbouring_steps_differ);
    tcase_set_timeout(ts, 120);
    suite_add_tcase(s, tk);
    suite_add_tcase(s, ts);
    return qn_test_run(s);
}
