/*
 * libqnoise internal: packed scalar-quantized weights (int8 / int4), the knobs beyond packed.h.
 * SPDX-License-Identifier: MIT
 *
 * qn_packed_create on a scalar qtensor repacks its codes once (format/packed_int.c):
 * codes of 5..8 bits become signed int8, codes of 2..4 bits int4 (two per byte, unpacked in
 * registers), in 16-row panels (kernels.h, qn_k_intw), with per-row scale and zero point.
 *
 * Activations stay fp32 by default (results equal the dense fp32 product of the decoded weight
 * up to fp32 summation order):
 *   M < QN_PACKED_INT_PANELS_MIN_M   the weights are decoded in registers, the zero point folded
 *                                    out of the loop (memory-bound: reads 1 or 1/2 byte a weight);
 *   from there on                    tiles of 32 rows x 256 columns are decoded to fp32 (exactly
 *                                    the dense decode) on the stack and multiplied by an FMA
 *                                    micro-kernel with x packed once per call;
 *   M >= QN_PACKED_INT_SGEMM_MIN_M   (0: never) the panels go to cblas_sgemm instead.
 * The crossovers are measured by bench/bench_packed_int.c (docs/performance.md). The quantized
 * path (activations quantized per row on the fly, int8 dot products with vpdpbusd / vpmaddubsw)
 * is opt-in because it is lossy: docs/performance.md gives its accuracy cost.
 */
#ifndef QN_FORMAT_PACKED_INT_H
#define QN_FORMAT_PACKED_INT_H

#include "format/packed.h"

typedef enum qn_packed_int_path {
    QN_PACKED_INT_AUTO = 0,      /* fp32 activations: registers, panels or sgemm by M (above) */
    QN_PACKED_INT_REGISTERS = 1, /* fp32 activations, weights decoded in registers, any M */
    QN_PACKED_INT_SGEMM = 2,     /* fp32 activations, fp32 panels + cblas_sgemm, any M */
    QN_PACKED_INT_QUANTIZED = 3, /* activations quantized per row (u8 with VNNI, else u7) */
    QN_PACKED_INT_PANELS = 4     /* fp32 activations, fp32 panels in L1/L2 + the library's FMA micro-kernel */
} qn_packed_int_path;

/* Measured crossovers (docs/performance.md): rows of x from which AUTO takes the decoded panels,
 * and from which it hands them to cblas_sgemm (0: never, the micro-kernel was faster up to 256). */
#define QN_PACKED_INT_PANELS_MIN_M 24
#define QN_PACKED_INT_SGEMM_MIN_M 0

/*
 * Choose the path of a packed int weight (kind QN_QTENSOR_SCALAR; QN_ERR_INVALID_ARG otherwise).
 * QN_ERR_UNSUPPORTED for QUANTIZED when the integer sums could overflow int32 (more than
 * 33,000 to 66,000 columns with 8-bit codes, by zero point). Not thread-safe against concurrent gemm calls.
 */
qn_status qn_packed_int_set_path(qn_packed *p, qn_packed_int_path path);

/* The path gemm takes for M rows of x (never AUTO). */
qn_packed_int_path qn_packed_int_path_for(const qn_packed *p, size_t M);

/* Calls with fewer multiply-adds than this stay on one thread (default 2^23); for the tests. */
void qn_packed_int_set_thread_min_work(qn_packed *p, size_t macs);

/* Largest activation code of the quantized path: 255 (VNNI) or 127. */
unsigned qn_packed_int_act_max(const qn_packed *p);

/* The repacked weight, for the kernel tests. */
const qn_k_intw *qn_packed_int_weights(const qn_packed *p);

#endif /* QN_FORMAT_PACKED_INT_H */
