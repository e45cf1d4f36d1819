/*
 * libqnoise internal: CRC32C (Castagnoli), one byte per table lookup. The
 * table is a compile-time constant (built by the macros below), so there is
 * no lazily initialised global.
 * SPDX-License-Identifier: MIT
 */
#include "format/half.h"

/* One table row: crc of byte b through 8 zero bits, for the reflected polynomial. */
#define QN_P 0x82F63B78u
#define QN_S1(c) (((c) & 1u) ? (((c) >> 1) ^ QN_P) : ((c) >> 1))
#define QN_S8(c) QN_S1(QN_S1(QN_S1(QN_S1(QN_S1(QN_S1(QN_S1(QN_S1(c))))))))
#define QN_R4(b) QN_S8((uint32_t)(b)), QN_S8((uint32_t)(b) + 1u), QN_S8((uint32_t)(b) + 2u), QN_S8((uint32_t)(b) + 3u)
#define QN_R16(b) QN_R4(b), QN_R4((b) + 4), QN_R4((b) + 8), QN_R4((b) + 12)
#define QN_R64(b) QN_R16(b), QN_R16((b) + 16), QN_R16((b) + 32), QN_R16((b) + 48)

static const uint32_t qn_crc_table[256] = {QN_R64(0), QN_R64(64), QN_R64(128), QN_R64(192)};

uint32_t qn_crc32c(uint32_t crc, const void *data, size_t n)
{
    const unsigned char *p = (const unsigned char *)data;
    crc = ~crc;
    while (n--)
        crc = qn_crc_table[(crc ^ *p++) & 0xffu] ^ (crc >> 8);
    return ~crc;
}
