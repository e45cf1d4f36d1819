/*
 * libqnoise internal: IEEE binary16 and bfloat16 conversions, and CRC32C.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_HALF_H
#define QN_FORMAT_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* binary16 -> binary32, exact (subnormals, infinities and NaN included). */
static inline float qn_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    float f;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400u)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ffu;
            bits = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* binary32 -> binary16, round to nearest even; overflow gives infinity, NaN stays NaN. */
static inline uint16_t qn_f32_to_f16(float f)
{
    uint32_t x, sign, man;
    int32_t exp;
    memcpy(&x, &f, sizeof x);
    sign = (x >> 16) & 0x8000u;
    exp = (int32_t)((x >> 23) & 0xffu);
    man = x & 0x7fffffu;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00u | (man ? 0x200u | (man >> 13) : 0u));
    exp = exp - 127 + 15;
    if (exp >= 0x1f)
        return (uint16_t)(sign | 0x7c00u);
    if (exp <= 0) {
        uint32_t m, shift, half, rest, r;
        if (exp < -10)
            return (uint16_t)sign;
        m = man | 0x800000u;
        shift = (uint32_t)(14 - exp);
        r = m >> shift;
        rest = m & ((1u << shift) - 1u);
        half = 1u << (shift - 1);
        if (rest > half || (rest == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    {
        uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (r & 1u)))
            r++; /* may carry into the exponent, up to infinity: correct */
        return (uint16_t)(sign | r);
    }
}

/* bfloat16 -> binary32, exact. */
static inline float qn_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise-table form; crc starts at 0. */
uint32_t qn_crc32c(uint32_t crc, const void *data, size_t n);

#endif /* QN_FORMAT_HALF_H */
