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

/*
 * PQ GEMM kernels (y = x . W_hat^T with W_hat given by PQ codes and a codebook c[k][bs];
 * the driver is lib/format/packed_pq.c). Codes come transposed: code(jj, r) = codes[jj*ldc + r]
 * for subspace jj and output row r, uint8 when wide == 0 and uint16 otherwise, every code < k.
 * Tables, accumulators and panels need no alignment (the driver gives 64-byte aligned ones).
 * Rounding: the table builders sum in t order, without FMA in the scalar oracle and with FMA in
 * the SIMD twins (entries agree to a relative bs * 2^-24 of sum_t |x_t c_t|); the gather-add
 * kernels add one float at a time in jj order in every lane, and the decode only copies, so
 * those two are bit-identical with scalar on every ISA.
 *
 * pq_lut: tables for output rows in the lanes. For jj < nj, m < M and q < k:
 *   lut[(jj*M + m)*ldl + q] = sum_{t < bs} x[m*ldx + jj*bs + t] * ct[t*ldct + q]
 * with ct the codebook transposed (ct[t*ldct + q] = c[q*bs + t]). ldct and ldl are multiples of
 * 16 and >= k; ct is read, and lut written, for q < round16(k) (ct is zero past k, the extra
 * lut entries get unspecified values).
 */
typedef void (*qn_k_pq_lut_fn)(const float *x, size_t M, size_t ldx, size_t bs, const float *ct,
                               size_t ldct, size_t k, size_t nj, float *lut, size_t ldl);

/*
 * pq_lut_gather: gather-add with output rows in the lanes. For m < M and o < n, with
 * s = init ? (bias ? bias[o] : 0) : y[m*ldy + o],
 *   y[m*ldy + o] = s + lut[(0*M + m)*ldl + code(0, o)] + ... + lut[((nj-1)*M + m)*ldl + code(nj-1, o)]
 * Codes are read for o < round64(n) (the caller pads each code row with valid codes); y and bias
 * only for o < n.
 */
typedef void (*qn_k_pq_lut_gather_fn)(const float *lut, size_t ldl, size_t M, const void *codes,
                                      size_t ldc, int wide, size_t nj, size_t n, const float *bias,
                                      int init, float *y, size_t ldy);

/*
 * pq_blut: tables with the batch in the lanes, W = 8 or 16 lanes, for mg <= W rows of x:
 *   blut[(jj*k + q)*W + m] = sum_{t < bs} x[m*ldx + jj*bs + t] * c[q*bs + t]   (m < mg)
 *   blut[(jj*k + q)*W + m] = 0                                                 (mg <= m < W)
 * for jj < nj, q < k; x is read only for m < mg.
 */
typedef void (*qn_k_pq_blut_fn)(const float *x, size_t mg, size_t ldx, size_t bs, const float *c,
                                size_t k, size_t nj, size_t W, float *blut);

/*
 * pq_blut_add: gather-add with the batch in the lanes. For o < n and lane l < W,
 *   acc[o*W + l] = s + blut[(0*k + code(0, o))*W + l] + ... + blut[((nj-1)*k + code(nj-1, o))*W + l]
 * with s = init ? 0 : acc[o*W + l]. Codes are read for o < round64(n) (padded by the caller).
 */
typedef void (*qn_k_pq_blut_add_fn)(const float *blut, size_t k, size_t W, const void *codes,
                                    size_t ldc, int wide, size_t nj, size_t n, int init, float *acc);

/*
 * pq_decode: rows of W_hat into a panel. For r < nr, jj < nj and t < bs:
 *   panel[r*ldp + jj*bs + t] = c[code(jj, r)*bs + t]
 */
typedef void (*qn_k_pq_decode_fn)(const void *codes, size_t ldc, int wide, const float *c, size_t bs,
                                  size_t nr, size_t nj, float *panel, size_t ldp);

/*
 * int GEMM on scalar-quantized weights (lib/format/packed_int.c), int8 (codes of 5..8 bits) or
 * int4 (codes of 2..4 bits). One layout on every ISA:
 *   rows in panels of 16 (the last padded), columns in groups of kg = 4 (int8) or 8 (int4);
 *   (panel p, group g) is the 64-byte block w + (p*groups + g)*64, and inside it row
 *   r = 16p + 4l + i (l, i < 4) owns the 4 bytes at 16*i + 4*l:
 *     int8: byte j is the signed value v[r][4g + j];
 *     int4: byte j holds v[r][8g + j] in its low nibble and v[r][8g + 4 + j] in its high one (0..15).
 *   Padding (columns >= cols, rows >= rows) is 0.
 * The decoded weight is W[r][c] = (v[r][c] - zero[r]) * scale[r], v - zero exact in float.
 * colsum[r] = sum_{c < cols} v[r][c]. scale, zero, zero_i, colsum have npanels*16 entries
 * (scale 0 and zero 0 in the padding).
 */
typedef struct qn_k_intw {
    const uint8_t *w;
    size_t rows, cols, groups;
    int int4;
    const float *scale;
    const float *zero;     /* zero[r] as float (|zero| < 2^24) */
    const int32_t *zero_i; /* zero[r] */
    const int32_t *colsum;
    float c4; /* int4: the table of the fp32 kernels holds u - c4 (exact when every row has zero = c4) */
} qn_k_intw;

/* Columns per group: 4 (int8) or 8 (int4). */
#define QN_K_INT_KG(int4) ((int4) ? 8u : 4u)

/* One row of quantized activations: x[c] ~ scale * (xq[c] - zero); sum = sum_{c<cols} xq[c] - cols*zero. */
typedef struct qn_k_xq {
    float scale;
    int32_t zero;
    int32_t sum;
} qn_k_xq;

/*
 * int_gemm_f32, activations in fp32 (the weights decoded in registers): for panels p in
 * [p0, p1), m < M and rows o = 16p + r < rows,
 *   y[m*ldy + o] = (bias ? bias[o] : 0)
 *                  + scale[o] * (sum_{c < cols} x[m*ldx + c] * (v[o][c] - c0) - (zero[o] - c0) * xsum[m])
 * with xsum[m] = sum_{c < cols} x[m*ldx + c] (the caller's, rounded once) and c0 = c4 for int4
 * kernels that decode through a 16-entry table, else 0: the zero point is folded out of the inner
 * loop, y = b + s (x.v - z' sum x). Reads x only for c < cols. The sums are in float
 * in any order (SIMD twins use FMA), so results agree with a double reference to about
 * cols * 2^-24 * scale * sum_c |x_c| (|v - c0| + |zero - c0|) (a few 2^-24 on random data).
 */
typedef void (*qn_k_int_gemm_f32_fn)(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x,
                                     size_t ldx, const float *xsum, const float *bias, float *y, size_t ldy);

/*
 * int_decode, the fp32 panels of the decoded-panel and sgemm paths: for r < 16 and kg*g0 <= c < min(kg*g1, cols),
 *   out[(c - kg*g0)*ldo + r] = (float)(v[16p + r][c] - zero) * scale     (rounded as written)
 * i.e. W_hat transposed, bit-identical with qn_qtensor_decode on every ISA (0 in padded rows).
 */
typedef void (*qn_k_int_decode_fn)(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo);

/*
 * int_gemm_q, activations quantized per row (xq[m*ldxq + c], c < groups*kg, 0 past cols, row m
 * described by xp[m]): for panels [p0, p1), m < M, o < rows, in wrapping int32 arithmetic
 *   T = sum_c xq[m][c] * v[o][c] - xp[m].zero * colsum[o] - zero_i[o] * xp[m].sum
 *   y[m*ldy + o] = (float)T * (scale[o] * xp[m].scale)  (+ bias[o] when bias is not NULL)
 * each operation rounded once in this order: every ISA is bit-identical with scalar.
 * xq <= 127 (the vpmaddubsw kernels add pairs in int16), or <= 255 for int_gemm_q_vnni.
 */
typedef void (*qn_k_int_gemm_q_fn)(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq,
                                   size_t ldxq, const qn_k_xq *xp, const float *bias, float *y, size_t ldy);

/*
 * f32_panel, the micro-kernel of the decoded-panel path (panels from int_decode): for m < M and
 * r < nr (1 <= nr <= 32),
 *   y[m*ldy + r] = s + sum_{c < kc} x(m, c) * panel[c*ldp + r]
 * with s = (bias ? bias[r] : 0) when init, else the old y[m*ldy + r], where x is packed in tiles
 * of 8 rows, x(m, c) = xp[(m/8)*ldxp + 8c + m%8] (ldxp >= 8 kc). panel has ldp >= 16 (>= 32
 * when nr > 16) floats per column. Sums in c order, with FMA (SIMD) or without (scalar).
 */
typedef void (*qn_k_f32_panel_fn)(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                                  size_t ldxp, const float *bias, int init, float *y, size_t ldy);

typedef struct qn_kernels {
    qn_isa isa;
    const char *name;
    qn_k_nearest_l2_fn nearest_l2;
    qn_k_mask_bits_fn mask_bits;
    qn_k_block_scale_fn block_scale;
    qn_k_pq_assign_fn pq_assign;
    qn_k_codebook_accumulate_fn codebook_accumulate;
    qn_k_pq_lut_fn pq_lut;               /* PQ GEMM (packed_pq.c) */
    qn_k_pq_lut_gather_fn pq_lut_gather;
    qn_k_pq_blut_fn pq_blut;
    qn_k_pq_blut_add_fn pq_blut_add;
    qn_k_pq_decode_fn pq_decode;
    qn_k_int_gemm_f32_fn int_gemm_f32;   /* int8/int4 GEMM (packed_int.c) */
    qn_k_int_decode_fn int_decode;
    qn_k_int_gemm_q_fn int_gemm_q;
    qn_k_int_gemm_q_fn int_gemm_q_vnni;  /* NULL unless built; use only when the CPU has VNNI */
    qn_k_f32_panel_fn f32_panel;
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

void qn_k_pq_lut_scalar(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                        size_t k, size_t nj, float *lut, size_t ldl);
void qn_k_pq_lut_avx2(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                      size_t k, size_t nj, float *lut, size_t ldl);
void qn_k_pq_lut_avx512(const float *x, size_t M, size_t ldx, size_t bs, const float *ct, size_t ldct,
                        size_t k, size_t nj, float *lut, size_t ldl);

void qn_k_pq_lut_gather_scalar(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                               int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                               size_t ldy);
void qn_k_pq_lut_gather_avx2(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                             size_t ldy);
void qn_k_pq_lut_gather_avx512(const float *lut, size_t ldl, size_t M, const void *codes, size_t ldc,
                               int wide, size_t nj, size_t n, const float *bias, int init, float *y,
                               size_t ldy);

void qn_k_pq_blut_scalar(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                         size_t nj, size_t W, float *blut);
void qn_k_pq_blut_avx2(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                       size_t nj, size_t W, float *blut);
void qn_k_pq_blut_avx512(const float *x, size_t mg, size_t ldx, size_t bs, const float *c, size_t k,
                         size_t nj, size_t W, float *blut);

void qn_k_pq_blut_add_scalar(const float *blut, size_t k, size_t W, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, int init, float *acc);
void qn_k_pq_blut_add_avx2(const float *blut, size_t k, size_t W, const void *codes, size_t ldc,
                           int wide, size_t nj, size_t n, int init, float *acc);
void qn_k_pq_blut_add_avx512(const float *blut, size_t k, size_t W, const void *codes, size_t ldc,
                             int wide, size_t nj, size_t n, int init, float *acc);

void qn_k_pq_decode_scalar(const void *codes, size_t ldc, int wide, const float *c, size_t bs,
                           size_t nr, size_t nj, float *panel, size_t ldp);
void qn_k_pq_decode_avx2(const void *codes, size_t ldc, int wide, const float *c, size_t bs,
                         size_t nr, size_t nj, float *panel, size_t ldp);
void qn_k_pq_decode_avx512(const void *codes, size_t ldc, int wide, const float *c, size_t bs,
                           size_t nr, size_t nj, float *panel, size_t ldp);

void qn_k_int_gemm_f32_scalar(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                              const float *xsum, const float *bias, float *y, size_t ldy);
void qn_k_int_gemm_f32_avx2(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                            const float *xsum, const float *bias, float *y, size_t ldy);
void qn_k_int_gemm_f32_avx512(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                              const float *xsum, const float *bias, float *y, size_t ldy);

void qn_k_int_decode_scalar(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo);
void qn_k_int_decode_avx2(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo);
void qn_k_int_decode_avx512(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo);

void qn_k_int_gemm_q_scalar(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                            const qn_k_xq *xp, const float *bias, float *y, size_t ldy);
void qn_k_int_gemm_q_avx2(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                          const qn_k_xq *xp, const float *bias, float *y, size_t ldy);
void qn_k_int_gemm_q_avx512(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                            const qn_k_xq *xp, const float *bias, float *y, size_t ldy);
void qn_k_f32_panel_scalar(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                           size_t ldxp, const float *bias, int init, float *y, size_t ldy);
void qn_k_f32_panel_avx2(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                         size_t ldxp, const float *bias, int init, float *y, size_t ldy);
void qn_k_f32_panel_avx512(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                           size_t ldxp, const float *bias, int init, float *y, size_t ldy);
/* AVX-512 VNNI (vpdpbusd); call only when qn_cpu_probe reports vnni. */
void qn_k_int_gemm_q_vnni(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                          const qn_k_xq *xp, const float *bias, float *y, size_t ldy);

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
