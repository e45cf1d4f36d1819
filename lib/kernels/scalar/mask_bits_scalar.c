/*
 * libqnoise: Quant-Noise mask bits, portable reference (the oracle of the SIMD twins).
 * SPDX-License-Identifier: MIT
 */
#include <qnoise/rng.h>

#include "kernels/kernels.h"

uint64_t qn_k_mask_bits_scalar(const uint32_t layer_key[2], uint64_t step, uint64_t first_block,
                              size_t count, uint32_t threshold24, uint64_t *bits)
{
    uint64_t set = 0, word = 0, group = ~(uint64_t)0;
    uint32_t w[4] = {0, 0, 0, 0};
    size_t i;
    for (i = 0; i < count; i++) {
        uint64_t b = first_block + i;
        uint64_t bit;
        if ((b >> 2) != group) {
            group = b >> 2;
            qn_rng_block_words4(layer_key, step, group, w);
        }
        bit = (uint64_t)((w[b & 3u] >> 8) < threshold24);
        word |= bit << (i & 63u);
        set += bit;
        if ((i & 63u) == 63u) {
            bits[i >> 6] = word;
            word = 0;
        }
    }
    if (count & 63u)
        bits[count >> 6] = word;
    return set;
}
