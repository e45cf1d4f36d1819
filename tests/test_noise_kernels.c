/*
 * The block-scale kernel (the streaming noise pass) on every ISA: against an
 * independent per-element formula and bit for bit against the scalar twin.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static uint64_t sm;
static uint64_t next64(void)
{
    return qn_test_next(&sm);
}

/* the contract, element by element, written independently of the kernels */
static float expect(const float *src, const float *dst0, size_t e, size_t bs, const uint64_t *bits, uint64_t first_bit,
                    float kept, float noised, int acc)
{
    uint64_t b = first_bit + e / bs;
    int bit = (int)((bits[b / 64] >> (b % 64)) & 1);
    float f = bit ? noised : kept;
    if (acc)
        return f == 0.0f ? dst0[e] : dst0[e] + src[e] * f;
    return f == 0.0f ? 0.0f : src[e] * f;
}

START_TEST(block_scale_matches_contract_and_scalar)
{
    static const size_t bss[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 24, 32, 33};
    static const size_t nbs[] = {0, 1, 3, 16, 65, 130};
    static const uint64_t firsts[] = {0, 5, 63};
    static const float factors[][2] = {{1.0f / 0.9f, 0.0f}, {1.0f, 1.0f}, {1.0f, 0.0f}, {0.0f, 1.0f}, {1.25f, -0.5f}};
    const qn_kernels *k = qn_kernels_for_isa((qn_isa)_i), *ref = qn_kernels_for_isa(QN_ISA_SCALAR);
    size_t a, b, c, f, e;
    int acc;
    if (!k)
        return; /* this ISA is not available here */
    sm = 77 + (uint64_t)_i;
    for (a = 0; a < sizeof bss / sizeof bss[0]; a++)
        for (b = 0; b < sizeof nbs / sizeof nbs[0]; b++)
            for (c = 0; c < sizeof firsts / sizeof firsts[0]; c++)
                for (f = 0; f < sizeof factors / sizeof factors[0]; f++)
                    for (acc = 0; acc <= 1; acc++) {
                        size_t bs = bss[a], nb = nbs[b], n = bs * nb, words = (firsts[c] + nb) / 64 + 2;
                        float *src = malloc((n + 1) * sizeof(float)), *d0 = malloc((n + 2) * sizeof(float));
                        float *d1 = malloc((n + 2) * sizeof(float)), *d2 = malloc((n + 2) * sizeof(float));
                        uint64_t *bits = malloc(words * sizeof(uint64_t));
                        size_t w;
                        for (w = 0; w < words; w++)
                            bits[w] = next64();
                        for (e = 0; e < n + 1; e++)
                            src[e] = (float)((int64_t)(next64() >> 40) - (1 << 23)) / 65536.0f;
                        for (e = 0; e < n + 2; e++)
                            d0[e] = e % 5 == 0 ? -0.0f : (float)(e % 13) - 6.5f;
                        memcpy(d1, d0, (n + 2) * sizeof(float));
                        memcpy(d2, d0, (n + 2) * sizeof(float));
                        /* misaligned by one float on purpose */
                        k->block_scale(src + 1, d1 + 1, nb, bs, bits, firsts[c], factors[f][0], factors[f][1], acc);
                        ref->block_scale(src + 1, d2 + 1, nb, bs, bits, firsts[c], factors[f][0], factors[f][1], acc);
                        ck_assert_msg(memcmp(d1, d2, (n + 2) * sizeof(float)) == 0,
                                      "isa %d bs %zu nb %zu first %llu f %zu acc %d differs from scalar", _i, bs, nb,
                                      (unsigned long long)firsts[c], f, acc);
                        ck_assert(memcmp(&d1[0], &d0[0], sizeof(float)) == 0);         /* guard before */
                        ck_assert(memcmp(&d1[n + 1], &d0[n + 1], sizeof(float)) == 0); /* guard after */
                        for (e = 0; e < n; e++) {
                            float want = expect(src + 1, d0 + 1, e, bs, bits, firsts[c], factors[f][0], factors[f][1], acc);
                            ck_assert_msg(memcmp(&want, &d1[e + 1], sizeof(float)) == 0,
                                          "isa %d bs %zu element %zu: %a want %a", _i, bs, e, (double)d1[e + 1],
                                          (double)want);
                        }
                        free(src);
                        free(d0);
                        free(d1);
                        free(d2);
                        free(bits);
                    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("noise_kernels");
    TCase *tc = tcase_create("block_scale");
    tcase_add_loop_test(tc, block_scale_matches_contract_and_scalar, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
