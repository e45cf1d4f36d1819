/*
 * libqnoise: block-scaled copy/accumulate (the noise pass), portable reference.
 * SPDX-License-Identifier: MIT
 */
#include "kernels/kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

void qn_k_block_scale_scalar(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                             uint64_t first_bit, float kept, float noised, int accumulate)
{
    size_t i, t;
    for (i = 0; i < nblocks; i++) {
        uint64_t b = first_bit + i;
        float f = ((bits[b >> 6] >> (b & 63u)) & 1u) ? noised : kept;
        const float *s = src + i * bs;
        float *d = dst + i * bs;
        if (accumulate) {
            if (f != 0.0f)
                for (t = 0; t < bs; t++)
                    d[t] = d[t] + s[t] * f;
        } else if (f == 0.0f) {
            for (t = 0; t < bs; t++)
                d[t] = 0.0f;
        } else {
            for (t = 0; t < bs; t++)
                d[t] = s[t] * f;
        }
    }
}
