/*
 * libqnoise internal: the kernel table. Never installed.
 * SPDX-License-Identifier: MIT
 *
 * One const table per instruction set. The scalar table is always built and is
 * the oracle the tests hold every other table against. SIMD tables are compiled
 * in their own static libraries with only their own -m flags.
 */
#ifndef QN_KERNELS_KERNELS_H
#define QN_KERNELS_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include <qnoise/common.h>

/*
 * Nearest centroid by squared L2 distance.
 * For each row i < n of x (row stride ldx floats, dim floats used), write in
 * codes[i] the index of the centroid c[j*dim .. j*dim+dim) (j < k) with the
 * smallest sum_t (x[t] - c[t])^2, the lowest index on exact ties, and, when
 * dists is not NULL, that smallest squared distance in dists[i].
 * Preconditions (checked by callers, not here): n >= 1, k >= 1, dim >= 1,
 * ldx >= dim, no NaN/Inf in x or c. Pointers need no particular alignment.
 * SIMD twins may sum in another order: their distances agree with scalar to a
 * relative 1e-5, and a code may differ only where two centroids are that close.
 */
typedef void (*qn_k_nearest_l2_fn)(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                                   size_t dim, uint32_t *codes, float *dists);

/*
 * Mask bits of the Quant-Noise contract (include/qnoise/rng.h).
 * For i < count, with b = first_block + i and w = Philox4x32-10 word of block b
 * (counter {lo32(b>>2), hi32(b>>2), lo32(step), hi32(step)}, key layer_key,
 * lane b & 3), bit i of `bits` (bit i%64 of bits[i/64], LSB first) is set iff
 * (w >> 8) < threshold24, where threshold24 = ceil(p * 2^24) in [0, 2^24].
 * Whole words are written: bits past `count` in the last word are zero.
 * Returns the number of set bits. Integer-only, so every ISA must match the
 * scalar kernel bit for bit. first_block has no alignment requirement.
 */
typedef uint64_t (*qn_k_mask_bits_fn)(const uint32_t layer_key[2], uint64_t step,
                                      uint64_t first_block, size_t count, uint32_t threshold24,
                                      uint64_t *bits);

/*
 * Block-scaled copy or accumulate, the streaming pass of the noise:
 * for block i < nblocks (elements src[i*bs .. i*bs+bs)), with bit = bit
 * first_bit + i of `bits` (LSB-first 64-bit words) and f = bit ? noised : kept,
 *   accumulate == 0:  dst[e] = f == 0 ? 0 : src[e] * f
 *   accumulate != 0:  dst[e] = f == 0 ? dst[e] : dst[e] + src[e] * f   (no FMA)
 * One multiply and one add per element in the same order on every ISA, so all
 * twins are bit-exact with scalar. src and dst do not overlap.
 */
typedef void (*qn_k_block_scale_fn)(const float *src, float *dst, size_t nblocks, size_t bs,
                                    const uint64_t *bits, uint64_t first_bit, float kept,
                                    float noised, int accumulate);

/*
 * Nearest centroid for product quantization, fused formula.
 * Same contract as qn_k_nearest_l2_fn (n, ldx, k, dim, alignment, NaN/Inf
 * preconditions; codes[i] < k; dists may be NULL) except that the caller
 * passes c_norms[j] = ||c_j||^2 and the kernel picks, for each row x, the j
 * minimising d_j = c_norms[j] - 2 x.c_j (never forming an n x k matrix), the
 * lowest index on exact ties of d_j, and writes, when dists is not NULL,
 * max(0, ||x||^2 + min_j d_j).
 * The scalar kernel is the oracle: dot summed in t order without FMA, then
 * c_norms[j] - 2 * dot, strict <. SIMD twins use FMA and another summation
 * shape, so their d_j differ in rounding: the centroid they choose has a true
 * squared distance within a relative 1e-5 of the true minimum (plus the
 * cancellation floor of the formula, about 1e-6 for |x|, |c| <= 1 per
 * coordinate), and dists agree with the true distance of the chosen centroid
 * within a relative 1e-4 (+1e-5; for x close to c the fused formula adds a
 * cancellation error of a few ulps of ||x||^2 + ||c||^2, on every ISA
 * including scalar). Bit-identical centroids give bit-identical d_j on every
 * ISA, so the lowest of them wins everywhere.
 * Rounding shape, relied on by qn_assign_rows (quant/kmeans.h) to certify a
 * choice: on every ISA d_j is computed with at most dim + 2 roundings (the
 * norm rounded once; products and additions, or FMAs) over terms whose
 * magnitudes add up to ||c_j||^2 + 2 sum_t |x_t c_jt|, and dists with at most
 * dim + 1 more over ||x||^2. A twin that sums differently must keep this.
 */
typedef void (*qn_k_pq_assign_fn)(const float *x, size_t n, size_t ldx, const float *c,
                                  const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                                  float *dists);

/*
 * Codebook accumulation: the single pass of a k-means M-step, and the partial
 * sums of a distributed k-means. For each row i < n of x (row stride ldx, dim
 * floats used), in increasing i, with j = codes[i]:
 *   sums[j*dim + t] += (double)x[i*ldx + t]      for every t < dim
 *   counts[j]       += 1
 *   err[j]          += e_i                        (only when c and err are set)
 * where e_i is the squared distance from row i to the centroid c_j =
 * c[j*dim .. j*dim+dim) in this fixed order: q_t = d_t * d_t with d_t =
 * (double)x_t - (double)c_jt (each operation a rounded double operation),
 * P_l = q_l + q_{l+8} + q_{l+16} + ... added left to right (l < 8; P_l = 0
 * when l >= dim), and e_i = ((P_0 + P_4) + (P_2 + P_6)) + ((P_1 + P_5) +
 * (P_3 + P_7)). The arrays are added to, never cleared (callers zero them).
 * Every element of sums and err thus receives its terms one double addition
 * at a time in increasing row order, with no FMA and no reassociation: every
 * ISA is bit-identical with scalar, on any input.
 * Preconditions (checked by callers, not here): dim >= 1, ldx >= dim, every
 * codes[i] is a valid row of sums/counts/err (and of c), c and err both NULL
 * or both set; n == 0 does nothing. Pointers need no particular alignment.
 */
typedef void (*qn_k_codebook_accumulate_fn)(const float *x, size_t n, size_t ldx, size_t dim,
                                            const uint32_t *codes, const float *c, double *sums,
                                            uint64_t *counts, double *err);

typedef struct qn_kernels {
    qn_isa isa;
    const char *name;
    qn_k_nearest_l2_fn nearest_l2;
    qn_k_mask_bits_fn mask_bits;
    qn_k_block_scale_fn block_scale;
    qn_k_pq_assign_fn pq_assign;
    qn_k_codebook_accumulate_fn codebook_accumulate;
} qn_kernels;

/* Kernel entry points, one per ISA (only those built are defined). */
void qn_k_nearest_l2_scalar(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                            size_t dim, uint32_t *codes, float *dists);
void qn_k_nearest_l2_avx2(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                          size_t dim, uint32_t *codes, float *dists);
void qn_k_nearest_l2_avx512(const float *x, size_t n, size_t ldx, const float *c, size_t k,
                            size_t dim, uint32_t *codes, float *dists);

uint64_t qn_k_mask_bits_scalar(const uint32_t layer_key[2], uint64_t step, uint64_t first_block,
                              size_t count, uint32_t threshold24, uint64_t *bits);
uint64_t qn_k_mask_bits_avx2(const uint32_t layer_key[2], uint64_t step, uint64_t first_block,
                            size_t count, uint32_t threshold24, uint64_t *bits);
uint64_t qn_k_mask_bits_avx512(const uint32_t layer_key[2], uint64_t step, uint64_t first_block,
                              size_t count, uint32_t threshold24, uint64_t *bits);

void qn_k_block_scale_scalar(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                             uint64_t first_bit, float kept, float noised, int accumulate);
void qn_k_block_scale_avx2(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                           uint64_t first_bit, float kept, float noised, int accumulate);
void qn_k_block_scale_avx512(const float *src, float *dst, size_t nblocks, size_t bs, const uint64_t *bits,
                             uint64_t first_bit, float kept, float noised, int accumulate);

void qn_k_pq_assign_scalar(const float *x, size_t n, size_t ldx, const float *c,
                           const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                           float *dists);
void qn_k_pq_assign_avx2(const float *x, size_t n, size_t ldx, const float *c,
                         const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                         float *dists);
void qn_k_pq_assign_avx512(const float *x, size_t n, size_t ldx, const float *c,
                           const float *c_norms, size_t k, size_t dim, uint32_t *codes,
                           float *dists);

void qn_k_codebook_accumulate_scalar(const float *x, size_t n, size_t ldx, size_t dim,
                                     const uint32_t *codes, const float *c, double *sums,
                                     uint64_t *counts, double *err);
void qn_k_codebook_accumulate_avx2(const float *x, size_t n, size_t ldx, size_t dim,
                                   const uint32_t *codes, const float *c, double *sums,
                                   uint64_t *counts, double *err);
void qn_k_codebook_accumulate_avx512(const float *x, size_t n, size_t ldx, size_t dim,
                                     const uint32_t *codes, const float *c, double *sums,
                                     uint64_t *counts, double *err);

/* CPU features (cpuid + XGETBV), probed on each call: no global state. */
typedef struct qn_cpu_features {
    int avx2;   /* AVX2 + FMA + OS saves YMM */
    int avx512; /* AVX-512 F/BW/VL/DQ + OS saves ZMM and opmask */
    int vnni;   /* AVX-512 VNNI (for later int8 kernels) */
} qn_cpu_features;

void qn_cpu_probe(qn_cpu_features *f);

/* The best ISA compiled in and supported by this CPU. */
qn_isa qn_kernels_best_isa(void);

/*
 * The table for exactly `isa`, or NULL when that ISA was not compiled in or
 * this CPU cannot run it.
 */
const qn_kernels *qn_kernels_for_isa(qn_isa isa);

/*
 * The table for the best ISA <= cap that is compiled and runnable; never NULL
 * (scalar is always there).
 */
const qn_kernels *qn_kernels_select(qn_isa cap);

#endif /* QN_KERNELS_KERNELS_H */
