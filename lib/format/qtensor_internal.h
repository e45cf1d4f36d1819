/*
 * libqnoise internal: the compressed tensor object (qtensor.h).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_QTENSOR_INTERNAL_H
#define QN_FORMAT_QTENSOR_INTERNAL_H

#include <qnoise/qtensor.h>

#include "core/internal.h"

struct qn_qtensor {
    qn_context *ctx;
    qn_qtensor_kind kind;
    size_t rows, cols;
    size_t ndim;
    size_t shape[QN_QTENSOR_MAX_DIMS];
    unsigned code_bits;           /* storage width of one code: 4, 8 or 16 */
    /* PQ */
    size_t bs, k;
    uint16_t *codes;              /* rows * cols / bs, unpacked */
    float *c;                     /* k * bs, the values decode uses (already rounded to the precision) */
    qn_codebook_precision prec;
    qn_qscheme cb_scheme;         /* int8 grid */
    float cb_scale;               /* int8: value = (v - cb_zero) * cb_scale */
    int32_t cb_zero;
    /* scalar */
    unsigned bits;
    qn_qscheme scheme;
    int per_channel;
    size_t nch;                   /* 1 or rows */
    float *scale;                 /* nch */
    int32_t *zero;                /* nch */
    int32_t qmin, qmax;
    uint8_t *q;                   /* rows * cols codes, q - qmin, unpacked */
};

/* Allocate an empty tensor of `kind` for a rows x cols matrix with shape {rows, cols}. */
qn_status qn_qtensor_alloc(qn_context *ctx, qn_qtensor_kind kind, size_t rows, size_t cols, qn_qtensor **out,
                           const char *fn);

/* PQ storage: allocate codes and codebook (bs must divide cols, 2 <= k <= 65536). */
qn_status qn_qtensor_alloc_pq(qn_qtensor *qt, size_t bs, size_t k, const char *fn);

/* Scalar storage: allocate scales, zero points and codes for bits/scheme/per_channel. */
qn_status qn_qtensor_alloc_scalar(qn_qtensor *qt, unsigned bits, qn_qscheme scheme, int per_channel,
                                  const char *fn);

/* Bytes of one row of packed codes. */
size_t qn_qtensor_row_code_bytes(const qn_qtensor *qt);

/* Pack the codes of row r into dst (qn_qtensor_row_code_bytes bytes; 4-bit: low nibble = even index). */
void qn_qtensor_pack_row(const qn_qtensor *qt, size_t r, uint8_t *dst);

/* Unpack row r from src; returns 0, or 1 when a code is out of range (PQ: >= k; scalar: > qmax - qmin). */
int qn_qtensor_unpack_row(qn_qtensor *qt, size_t r, const uint8_t *src);

/* Decode rows [r0, r0 + n) into out (n x cols floats). */
void qn_qtensor_decode_rows(const qn_qtensor *qt, size_t r0, size_t n, float *out);

/* The int8 value of codebook entry i under the stored grid. */
int8_t qn_qtensor_cb_int8(const qn_qtensor *qt, size_t i);

#endif /* QN_FORMAT_QTENSOR_INTERNAL_H */
