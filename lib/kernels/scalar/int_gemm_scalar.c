/*
 * libqnoise: GEMM on int8/int4 scalar-quantized weights, portable C (the oracle of the SIMD
 * twins). Layout and contracts in kernels.h (qn_k_intw).
 * SPDX-License-Identifier: MIT
 */
#include "kernels/kernels.h"

/* The stored value v[r][c] of the packed layout (r, c inside the padded matrix). */
static int32_t intw_value(const qn_k_intw *w, size_t r, size_t c)
{
    size_t kg = QN_K_INT_KG(w->int4), p = r / 16, rr = r % 16, g = c / kg, k = c % kg;
    const uint8_t *blk = w->w + (p * w->groups + g) * 64 + 16 * (rr % 4) + 4 * (rr / 4);
    if (w->int4) {
        uint8_t b = blk[k % 4];
        return k < 4 ? (int32_t)(b & 15u) : (int32_t)(b >> 4);
    }
    return (int32_t)blk[k] - (blk[k] & 0x80u ? 256 : 0);
}

void qn_k_int_gemm_f32_scalar(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                              const float *xsum, const float *bias, float *y, size_t ldy)
{
    /* the oracle decodes v - zero exactly per weight (c0 = 0, no folding) */
    (void)xsum;
    size_t o, m, c, o0 = p0 * 16, o1 = p1 * 16 < w->rows ? p1 * 16 : w->rows;
    for (o = o0; o < o1; o++) {
        float s = w->scale[o], z = w->zero[o];
        for (m = 0; m < M; m++) {
            const float *xm = x + m * ldx;
            float acc = 0.0f;
            for (c = 0; c < w->cols; c++)
                acc += xm[c] * ((float)intw_value(w, o, c) - z);
            acc *= s;
            if (bias)
                acc += bias[o];
            y[m * ldy + o] = acc;
        }
    }
}

void qn_k_int_decode_scalar(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo)
{
    size_t kg = QN_K_INT_KG(w->int4), c0 = kg * g0, c1 = kg * g1 < w->cols ? kg * g1 : w->cols, c, r;
    for (c = c0; c < c1; c++)
        for (r = 0; r < 16; r++) {
            size_t o = p * 16 + r;
            out[(c - c0) * ldo + r] = ((float)intw_value(w, o, c) - w->zero[o]) * w->scale[o];
        }
}

void qn_k_int_gemm_q_scalar(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                            const qn_k_xq *xp, const float *bias, float *y, size_t ldy)
{
    size_t o, m, c, kc = w->groups * QN_K_INT_KG(w->int4);
    size_t o0 = p0 * 16, o1 = p1 * 16 < w->rows ? p1 * 16 : w->rows;
    for (o = o0; o < o1; o++) {
        for (m = 0; m < M; m++) {
            const uint8_t *q = xq + m * ldxq;
            uint32_t t = 0; /* wrapping int32 arithmetic, as the SIMD twins */
            float f, v;
            for (c = 0; c < kc; c++)
                t += (uint32_t)q[c] * (uint32_t)intw_value(w, o, c);
            t -= (uint32_t)xp[m].zero * (uint32_t)w->colsum[o];
            t -= (uint32_t)w->zero_i[o] * (uint32_t)xp[m].sum;
            f = w->scale[o] * xp[m].scale;
            /* two's complement reading of t, without implementation-defined conversion */
            v = (float)(t <= 0x7fffffffu ? (int64_t)t : (int64_t)t - ((int64_t)1 << 32));
            v *= f;
            if (bias)
                v += bias[o];
            y[m * ldy + o] = v;
        }
    }
}

void qn_k_f32_panel_scalar(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                           size_t ldxp, const float *bias, int init, float *y, size_t ldy)
{
    size_t m, r, c;
    for (m = 0; m < M; m++) {
        const float *xm = xp + (m / 8) * ldxp + m % 8;
        for (r = 0; r < nr; r++) {
            float acc = init ? (bias ? bias[r] : 0.0f) : y[m * ldy + r];
            for (c = 0; c < kc; c++)
                acc += xm[8 * c] * panel[c * ldp + r];
            y[m * ldy + r] = acc;
        }
    }
}
