/*
 * libqnoise: block-scaled copy/accumulate (the noise pass), AVX-512.
 * SPDX-License-Identifier: MIT
 *
 * Compiled with only -mavx512f -mavx512bw -mavx512vl -mavx512dq; every helper
 * is static. When the block size divides 16 (1, 2, 4, 8, 16) one vector holds
 * 16/bs whole blocks and the per-block bits expand into a 16-lane mask; block
 * sizes that are multiples of 16 use one bit per run of vectors; other sizes
 * take a per-block loop with a masked tail. Copies of 8 MiB or more into a
 * 64-byte aligned dst use non-temporal stores (same values, no cache pollution). Products and sums are the same
 * single multiply and add as the scalar twin (no FMA), so results are
 * bit-exact with it.
 */
#include <immintrin.h>

#include "kernels/kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* `q` (<= 16) consecutive bits starting at bit `p`. */
static inline uint32_t bs512_bits(const uint64_t *bits, uint64_t p, unsigned q)
{
    unsigned off = (unsigned)(p & 63u);
    uint64_t w = bits[p >> 6] >> off;
    if (off + q > 64)
        w |= bits[(p >> 6) + 1] << (64 - off);
    return (uint32_t)(w & ((1u << q) - 1u));
}

/* Repeat each of the 16/bs low bits of `b` bs times: the noised-lane mask. */
static inline __mmask16 bs512_expand(uint32_t b, size_t bs)
{
    uint32_t m = 0, run = (bs >= 16) ? 0xFFFFu : ((1u << bs) - 1u);
    unsigned k, q = (unsigned)(16 / bs);
    for (k = 0; k < q; k++)
        if ((b >> k) & 1u)
            m |= run << (k * bs);
    return (__mmask16)m;
}

/* One vector (or a masked part `live` of it): noised lanes `nm`. */
static inline void bs512_apply(const float *s, float *d, __mmask16 live, __mmask16 nm, __m512 vk, __m512 vn,
                               int kept_zero, int noised_zero, int accumulate)
{
    __m512 x = _mm512_maskz_loadu_ps(live, s);
    __mmask16 km = (__mmask16)(live & ~nm), nn = (__mmask16)(live & nm);
    /* lanes whose factor is 0: copy writes 0, accumulate leaves dst alone */
    __mmask16 active = (__mmask16)((kept_zero ? 0 : km) | (noised_zero ? 0 : nn));
    __m512 prod = _mm512_mask_blend_ps(nm, _mm512_mul_ps(x, vk), _mm512_mul_ps(x, vn));
    if (accumulate) {
        __m512 dv = _mm512_maskz_loadu_ps(live, d);
        _mm512_mask_storeu_ps(d, active, _mm512_add_ps(dv, prod));
    } else {
        _mm512_mask_storeu_ps(d, live, _mm512_maskz_mov_ps(active, prod));
    }
}

/* Copies larger than this bypass the caches (non-temporal stores): the output is
 * far larger than the last-level cache, so keeping it would only evict the input. */
#define BS512_STREAM_BYTES ((size_t)8 << 20)

void qn_k_block_scale_avx512(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                             uint64_t first_bit, float kept, float noised, int accumulate)
{
    __m512 vk = _mm512_set1_ps(kept), vn = _mm512_set1_ps(noised);
    int kz = kept == 0.0f, nz = noised == 0.0f;
    if (bs <= 16 && 16 % bs == 0) {
        size_t q = 16 / bs, n = nblocks * bs, v, nv = n / 16, rem = n % 16;
        if (!accumulate && n * sizeof(float) >= BS512_STREAM_BYTES && ((uintptr_t)dst & 63u) == 0) {
            for (v = 0; v < nv; v++) {
                uint32_t b = bs512_bits(bits, first_bit + v * q, (unsigned)q);
                __mmask16 nm = bs512_expand(b, bs);
                __m512 x = _mm512_loadu_ps(src + v * 16);
                __mmask16 active = (__mmask16)((kz ? 0 : (__mmask16)~nm) | (nz ? 0 : nm));
                __m512 prod = _mm512_mask_blend_ps(nm, _mm512_mul_ps(x, vk), _mm512_mul_ps(x, vn));
                _mm512_stream_ps(dst + v * 16, _mm512_maskz_mov_ps(active, prod));
            }
            _mm_sfence(); /* order the streamed stores before anyone reads dst */
        } else {
            for (v = 0; v < nv; v++) {
                uint32_t b = bs512_bits(bits, first_bit + v * q, (unsigned)q);
                bs512_apply(src + v * 16, dst + v * 16, 0xFFFF, bs512_expand(b, bs), vk, vn, kz, nz, accumulate);
            }
        }
        if (rem) {
            unsigned qr = (unsigned)(rem / bs);
            uint32_t b = bs512_bits(bits, first_bit + nv * q, qr);
            bs512_apply(src + nv * 16, dst + nv * 16, (__mmask16)((1u << rem) - 1u), bs512_expand(b, bs), vk, vn,
                        kz, nz, accumulate);
        }
        return;
    }
    {
        size_t i, t;
        for (i = 0; i < nblocks; i++) {
            uint64_t p = first_bit + i;
            __mmask16 nm = ((bits[p >> 6] >> (p & 63u)) & 1u) ? 0xFFFF : 0;
            const float *s = src + i * bs;
            float *d = dst + i * bs;
            for (t = 0; t + 16 <= bs; t += 16)
                bs512_apply(s + t, d + t, 0xFFFF, nm, vk, vn, kz, nz, accumulate);
            if (t < bs)
                bs512_apply(s + t, d + t, (__mmask16)((1u << (bs - t)) - 1u), nm, vk, vn, kz, nz, accumulate);
        }
    }
}
