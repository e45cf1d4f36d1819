/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * rng.h: the counter-based generator behind every random choice of the library.
 *
 * Header-only on purpose: a caller (a CUDA kernel, a Python script, another
 * rank) can regenerate exactly the masks the library uses without linking it.
 * Philox4x32-10 is the generator of Salmon, Moraes, Dror and Shaw, "Parallel
 * random numbers: as easy as 1, 2, 3" (SC'11); the implementation below is
 * checked against the Random123 known-answer vectors in tests/test_rng.c.
 *
 * The per-block draw, the contract every mask depends on:
 *
 *   key(seed, layer)  = first two words of Philox4x32-10(ctr = {layer_lo, layer_hi,
 *                        0x71756e6f, 0x6c617972}, key = {seed_lo, seed_hi})
 *   word(b)           = Philox4x32-10(ctr = {lo32(b >> 2), hi32(b >> 2), step_lo, step_hi},
 *                        key = key(seed, layer))[b & 3]
 *   u(seed, layer, step, b) = (word(b) >> 8) * 2^-24          (exact float in [0, 1))
 *   block b is noised  <=>  u < p
 *
 * so four neighbouring blocks share one Philox call. Changing any of this is
 * an ABI break of the mask contract, not only of the code.
 */
#ifndef QNOISE_RNG_H
#define QNOISE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Philox multiplier for words 0/1 (Random123 PHILOX_M4x32_0). */
#define QN_PHILOX_M0 0xD2511F53u
/** Philox multiplier for words 2/3 (Random123 PHILOX_M4x32_1). */
#define QN_PHILOX_M1 0xCD9E8D57u
/** Key increment (Weyl constant, golden ratio) for key word 0. */
#define QN_PHILOX_W0 0x9E3779B9u
/** Key increment (Weyl constant, sqrt(3)-1) for key word 1. */
#define QN_PHILOX_W1 0xBB67AE85u
/** Domain-separation words of the per-layer key derivation ("quno", "layr"). */
#define QN_RNG_LAYER_TAG0 0x71756e6fu
/** Second domain-separation word of the per-layer key derivation. */
#define QN_RNG_LAYER_TAG1 0x6c617972u

/** One Philox round on @p c (in place) with key @p k. */
static inline void qn_philox4x32_round(uint32_t c[4], const uint32_t k[2])
{
    uint64_t p0 = (uint64_t)QN_PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)QN_PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    uint32_t n0 = hi1 ^ c[1] ^ k[0];
    uint32_t n2 = hi0 ^ c[3] ^ k[1];
    c[0] = n0;
    c[1] = lo1;
    c[2] = n2;
    c[3] = lo0;
}

/** Philox4x32-10: encrypt counter @p ctr under key @p key into @p out (may alias @p ctr). */
static inline void qn_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c[4], k[2];
    int r;
    c[0] = ctr[0];
    c[1] = ctr[1];
    c[2] = ctr[2];
    c[3] = ctr[3];
    k[0] = key[0];
    k[1] = key[1];
    for (r = 0; r < 10; r++) {
        if (r > 0) {
            k[0] += QN_PHILOX_W0;
            k[1] += QN_PHILOX_W1;
        }
        qn_philox4x32_round(c, k);
    }
    out[0] = c[0];
    out[1] = c[1];
    out[2] = c[2];
    out[3] = c[3];
}

/** The Philox key of layer @p layer_id under @p seed (see the contract at the top). */
static inline void qn_rng_layer_key(uint64_t seed, uint64_t layer_id, uint32_t key_out[2])
{
    uint32_t ctr[4], key[2], out[4];
    ctr[0] = (uint32_t)layer_id;
    ctr[1] = (uint32_t)(layer_id >> 32);
    ctr[2] = QN_RNG_LAYER_TAG0;
    ctr[3] = QN_RNG_LAYER_TAG1;
    key[0] = (uint32_t)seed;
    key[1] = (uint32_t)(seed >> 32);
    qn_philox4x32_10(ctr, key, out);
    key_out[0] = out[0];
    key_out[1] = out[1];
}

/**
 * The four 32-bit words for blocks 4*@p group .. 4*@p group+3 of one step, given
 * a layer key from qn_rng_layer_key(). Mask samplers call this once per 4 blocks.
 */
static inline void qn_rng_block_words4(const uint32_t layer_key[2], uint64_t step, uint64_t group,
                                       uint32_t out[4])
{
    uint32_t ctr[4];
    ctr[0] = (uint32_t)group;
    ctr[1] = (uint32_t)(group >> 32);
    ctr[2] = (uint32_t)step;
    ctr[3] = (uint32_t)(step >> 32);
    qn_philox4x32_10(ctr, layer_key, out);
}

/** The raw 32-bit word of block @p block_index at @p step of layer @p layer_id under @p seed. */
static inline uint32_t qn_rng_block_u32(uint64_t seed, uint64_t layer_id, uint64_t step,
                                        uint64_t block_index)
{
    uint32_t key[2], w[4];
    qn_rng_layer_key(seed, layer_id, key);
    qn_rng_block_words4(key, step, block_index >> 2, w);
    return w[block_index & 3u];
}

/** Map a 32-bit word to a float in [0, 1) with 24 random bits (exact, no rounding). */
static inline float qn_rng_u32_to_unit(uint32_t w)
{
    return (float)(w >> 8) * (1.0f / 16777216.0f);
}

/** The uniform draw u(seed, layer_id, step, block_index) in [0, 1) of the mask contract. */
static inline float qn_rng_block_uniform(uint64_t seed, uint64_t layer_id, uint64_t step,
                                         uint64_t block_index)
{
    return qn_rng_u32_to_unit(qn_rng_block_u32(seed, layer_id, step, block_index));
}

/** 1 if block @p block_index is noised at rate @p p (u < p), else 0. */
static inline int qn_rng_block_noised(uint64_t seed, uint64_t layer_id, uint64_t step,
                                      uint64_t block_index, float p)
{
    return qn_rng_block_uniform(seed, layer_id, step, block_index) < p;
}

#ifdef __cplusplus
}
#endif

#endif /* QNOISE_RNG_H */
