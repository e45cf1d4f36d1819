/*
 * libqnoise: block-scaled copy/accumulate (the noise pass), AVX2.
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx2 -mfma (no FMA is used: one multiply then one add,
 * as the scalar twin, so results are bit-exact with it). Helpers are static.
 * Block sizes dividing 8 put 8/bs blocks in one vector and expand their bits
 * into a lane mask; other sizes loop per block with a scalar tail.
 */
#include <immintrin.h>

#include "kernels/kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline uint32_t bs256_bits(const uint64_t *bits, uint64_t p, unsigned q)
{
    unsigned off = (unsigned)(p & 63u);
    uint64_t w = bits[p >> 6] >> off;
    if (off + q > 64)
        w |= bits[(p >> 6) + 1] << (64 - off);
    return (uint32_t)(w & ((1u << q) - 1u));
}

/* 8-lane mask (all ones where the lane's bit in m8 is set). */
static inline __m256 bs256_lanes(uint32_t m8)
{
    const __m256i sel = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    __m256i v = _mm256_and_si256(_mm256_set1_epi32((int)m8), sel);
    return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, sel));
}

static inline uint32_t bs256_expand(uint32_t b, size_t bs)
{
    uint32_t m = 0, run = (1u << bs) - 1u;
    unsigned k, q = (unsigned)(8 / bs);
    for (k = 0; k < q; k++)
        if ((b >> k) & 1u)
            m |= run << (k * bs);
    return m;
}

static inline void bs256_apply8(const float *s, float *d, uint32_t nm8, __m256 vk, __m256 vn, int kz, int nz,
                                int accumulate)
{
    __m256 x = _mm256_loadu_ps(s);
    __m256 nmask = bs256_lanes(nm8);
    uint32_t act8 = (kz ? 0u : (~nm8 & 0xFFu)) | (nz ? 0u : nm8);
    __m256 amask = bs256_lanes(act8);
    __m256 prod = _mm256_blendv_ps(_mm256_mul_ps(x, vk), _mm256_mul_ps(x, vn), nmask);
    if (accumulate) {
        __m256 dv = _mm256_loadu_ps(d);
        _mm256_storeu_ps(d, _mm256_blendv_ps(dv, _mm256_add_ps(dv, prod), amask));
    } else {
        _mm256_storeu_ps(d, _mm256_and_ps(prod, amask));
    }
}

static inline void bs256_scalar(const float *s, float *d, size_t n, float f, int accumulate)
{
    size_t t;
    if (accumulate) {
        if (f != 0.0f)
            for (t = 0; t < n; t++)
                d[t] = d[t] + s[t] * f;
    } else {
        for (t = 0; t < n; t++)
            d[t] = f == 0.0f ? 0.0f : s[t] * f;
    }
}

void qn_k_block_scale_avx2(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                           uint64_t first_bit, float kept, float noised, int accumulate)
{
    __m256 vk = _mm256_set1_ps(kept), vn = _mm256_set1_ps(noised);
    int kz = kept == 0.0f, nz = noised == 0.0f;
    if (bs <= 8 && 8 % bs == 0) {
        size_t q = 8 / bs, n = nblocks * bs, v, nv = n / 8, e;
        for (v = 0; v < nv; v++) {
            uint32_t b = bs256_bits(bits, first_bit + v * q, (unsigned)q);
            bs256_apply8(src + v * 8, dst + v * 8, bs256_expand(b, bs), vk, vn, kz, nz, accumulate);
        }
        for (e = nv * 8; e < n; e++) {
            uint64_t p = first_bit + e / bs;
            float f = ((bits[p >> 6] >> (p & 63u)) & 1u) ? noised : kept;
            bs256_scalar(src + e, dst + e, 1, f, accumulate);
        }
        return;
    }
    {
        size_t i, t;
        for (i = 0; i < nblocks; i++) {
            uint64_t p = first_bit + i;
            int bit = (int)((bits[p >> 6] >> (p & 63u)) & 1u);
            const float *s = src + i * bs;
            float *d = dst + i * bs;
            for (t = 0; t + 8 <= bs; t += 8)
                bs256_apply8(s + t, d + t, bit ? 0xFFu : 0u, vk, vn, kz, nz, accumulate);
            bs256_scalar(s + t, d + t, bs - t, bit ? noised : kept, accumulate);
        }
    }
}
