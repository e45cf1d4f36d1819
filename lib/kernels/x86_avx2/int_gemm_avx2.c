/*
 * libqnoise: GEMM on int8/int4 scalar-quantized weights, AVX2 + FMA.
 * SPDX-License-Identifier: MIT
 *
 * Same layout and scheme as the AVX-512 twin (int_gemm_avx512.c), with 8-lane vectors: the
 * fp32 kernel takes a panel in two halves of 8 rows (the 8 bytes at 16 i + 8 h of each block
 * are rows 8h + i and 8h + 4 + i, 4 columns each), and the quantized kernel multiplies a block
 * as two 32-byte vectors with vpmaddubsw + vpmaddwd (activations <= 127, so the int16 pair
 * sums cannot saturate).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QN_AI static inline __attribute__((always_inline))

#define F32_MT 2
#define Q_MT 4

/* Per 128-bit lane: [sum a, sum b, sum c, sum d]. */
QN_AI __m256 i256_hadd4(__m256 a, __m256 b, __m256 c, __m256 d)
{
    return _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
}

/* Lane 4L + j = v[8h + 4L + i] (the rows of chunk i in half h). */
QN_AI __m256 i256_pattern(const float *v, size_t p, int h, int i)
{
    const float *b = v + 16 * p + 8 * h + i;
    return _mm256_set_m128(_mm_set1_ps(b[4]), _mm_set1_ps(b[0]));
}

/* Masks of the first n of 4 (x tail) or 8 (row tail) int32 lanes. */
QN_AI __m128i i128_first(size_t n)
{
    return _mm_cmpgt_epi32(_mm_set1_epi32((int)n), _mm_set_epi32(3, 2, 1, 0));
}

QN_AI __m256i i256_first(size_t n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0));
}

QN_AI __m256 x_pattern(const float *x, size_t n)
{
    __m128 v = n >= 4 ? _mm_loadu_ps(x) : _mm_maskload_ps(x, i128_first(n));
    return _mm256_set_m128(v, v);
}

/* Half h of panel p against mt rows of x: res[m] holds the row sums of rows 8h .. 8h+7 in order. */
QN_AI void f32_half(const qn_k_intw *w, size_t p, int h, const float *x, size_t ldx, const size_t mt, __m256 *res)
{
    __m256 acc[F32_MT][4], xa[F32_MT], xb[F32_MT];
    const uint8_t *blk = w->w + p * w->groups * 64 + 8 * h;
    const __m256i nib = _mm256_set1_epi32(15);
    size_t m, g, G = w->groups, cols = w->cols;
    int i;
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++)
        _Pragma("GCC unroll 16")
        for (i = 0; i < 4; i++)
            acc[m][i] = _mm256_setzero_ps();
    for (g = 0; g < G; g++, blk += 64) {
        if (!w->int4) {
            size_t c = 4 * g, n = cols - c;
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++)
                xa[m] = x_pattern(x + m * ldx + c, n);
            _Pragma("GCC unroll 16")
            for (i = 0; i < 4; i++) {
                __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 16 * i));
                __m256 d = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
                _Pragma("GCC unroll 16")
                for (m = 0; m < mt; m++)
                    acc[m][i] = _mm256_fmadd_ps(d, xa[m], acc[m][i]);
            }
        } else {
            size_t c = 8 * g, n = cols - c;
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++) {
                xa[m] = x_pattern(x + m * ldx + c, n);
                xb[m] = n > 4 ? x_pattern(x + m * ldx + c + 4, n - 4) : _mm256_setzero_ps();
            }
            _Pragma("GCC unroll 16")
            for (i = 0; i < 4; i++) {
                __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)(blk + 16 * i)));
                __m256 dl = _mm256_cvtepi32_ps(_mm256_and_si256(b, nib));
                __m256 dh = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
                _Pragma("GCC unroll 16")
                for (m = 0; m < mt; m++) {
                    acc[m][i] = _mm256_fmadd_ps(dl, xa[m], acc[m][i]);
                    acc[m][i] = _mm256_fmadd_ps(dh, xb[m], acc[m][i]);
                }
            }
        }
    }
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++)
        res[m] = i256_hadd4(acc[m][0], acc[m][1], acc[m][2], acc[m][3]);
}

/* The zero point is folded out of the loop (c0 = 0): y = b + s (sum x v - zero sum x). */
void qn_k_int_gemm_f32_avx2(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const float *x, size_t ldx,
                            const float *xsum, const float *bias, float *y, size_t ldy)
{
    size_t p, m0, m;
    int h;
    for (p = p0; p < p1; p++) {
        for (h = 0; h < 2; h++) {
            size_t o = 16 * p + 8 * (size_t)h, nv = w->rows > o ? w->rows - o : 0;
            __m256i rm;
            __m256 sv, zv, bv = _mm256_setzero_ps(), res[F32_MT];
            if (nv == 0)
                break;
            rm = i256_first(nv);
            sv = _mm256_loadu_ps(w->scale + o);
            zv = _mm256_loadu_ps(w->zero + o);
            if (bias)
                bv = _mm256_maskload_ps(bias + o, rm);
            for (m0 = 0; m0 < M; m0 += F32_MT) {
                size_t mt = M - m0 < F32_MT ? M - m0 : F32_MT;
                if (mt == 1)
                    f32_half(w, p, h, x + m0 * ldx, ldx, 1, res);
                else
                    f32_half(w, p, h, x + m0 * ldx, ldx, F32_MT, res);
                for (m = 0; m < mt; m++) {
                    __m256 v = _mm256_sub_ps(res[m], _mm256_mul_ps(zv, _mm256_set1_ps(xsum[m0 + m])));
                    v = _mm256_mul_ps(v, sv);
                    if (bias)
                        v = _mm256_add_ps(v, bv);
                    _mm256_maskstore_ps(y + (m0 + m) * ldy + o, rm, v);
                }
            }
        }
    }
}

/* In-lane 4 x 4 transpose: lane L of r[j] = [a[L][j], b[L][j], c[L][j], d[L][j]]. */
QN_AI void i256_transpose4(__m256 a, __m256 b, __m256 c, __m256 d, __m256 *r)
{
    __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
    __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
    r[0] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    r[1] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    r[2] = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    r[3] = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
}

void qn_k_int_decode_avx2(const qn_k_intw *w, size_t p, size_t g0, size_t g1, float *out, size_t ldo)
{
    size_t kg = QN_K_INT_KG(w->int4), c0 = kg * g0, c1 = kg * g1 < w->cols ? kg * g1 : w->cols, g, j;
    const __m256i nib = _mm256_set1_epi32(15);
    int h, i;
    for (h = 0; h < 2; h++) {
        __m256 zp[4], sp[4], d[8], col[8];
        const uint8_t *blk = w->w + (p * w->groups + g0) * 64 + 8 * h;
        _Pragma("GCC unroll 16")
        for (i = 0; i < 4; i++) {
            zp[i] = i256_pattern(w->zero, p, h, i);
            sp[i] = i256_pattern(w->scale, p, h, i);
        }
        for (g = g0; g < g1; g++, blk += 64) {
            size_t cg = kg * g, n = c1 - cg < kg ? c1 - cg : kg;
            _Pragma("GCC unroll 16")
            for (i = 0; i < 4; i++) {
                __m128i b = _mm_loadl_epi64((const __m128i *)(const void *)(blk + 16 * i));
                if (!w->int4) {
                    d[i] = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), zp[i]), sp[i]);
                } else {
                    __m256i v = _mm256_cvtepu8_epi32(b);
                    d[i] = _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(v, nib)), zp[i]), sp[i]);
                    d[4 + i] =
                        _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4)), zp[i]), sp[i]);
                }
            }
            i256_transpose4(d[0], d[1], d[2], d[3], col);
            if (w->int4)
                i256_transpose4(d[4], d[5], d[6], d[7], col + 4);
            for (j = 0; j < n; j++)
                _mm256_storeu_ps(out + (cg + j - c0) * ldo + 8 * h, col[j]);
        }
    }
}

QN_AI __m256i q_bcast(const uint8_t *q)
{
    int32_t v;
    memcpy(&v, q, 4);
    return _mm256_set1_epi32(v);
}

QN_AI __m256i q_dot(__m256i acc, __m256i u, __m256i s)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* Rows 8h .. 8h+7 from the two accumulators of a block (a: chunks 0-1, b: chunks 2-3). */
QN_AI void q_store_half(const qn_k_intw *w, size_t p, int h, __m256i a, __m256i b, const qn_k_xq *xp,
                        const float *bias, float *yrow)
{
    size_t o = 16 * p + 8 * (size_t)h, nv;
    __m256i idx = h ? _mm256_set_epi32(7, 3, 7, 3, 6, 2, 6, 2) : _mm256_set_epi32(5, 1, 5, 1, 4, 0, 4, 0);
    __m256i t = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(a, idx), _mm256_permutevar8x32_epi32(b, idx), 0xCC);
    __m256i cs = _mm256_loadu_si256((const __m256i *)(const void *)(w->colsum + o));
    __m256i zi = _mm256_loadu_si256((const __m256i *)(const void *)(w->zero_i + o));
    __m256 f = _mm256_mul_ps(_mm256_loadu_ps(w->scale + o), _mm256_set1_ps(xp->scale)), v;
    __m256i rm;
    if (w->rows <= o)
        return;
    nv = w->rows - o;
    rm = i256_first(nv);
    t = _mm256_sub_epi32(t, _mm256_mullo_epi32(_mm256_set1_epi32(xp->zero), cs));
    t = _mm256_sub_epi32(t, _mm256_mullo_epi32(zi, _mm256_set1_epi32(xp->sum)));
    v = _mm256_mul_ps(_mm256_cvtepi32_ps(t), f);
    if (bias)
        v = _mm256_add_ps(v, _mm256_maskload_ps(bias + o, rm));
    _mm256_maskstore_ps(yrow + o, rm, v);
}

QN_AI void q_tile(const qn_k_intw *w, size_t p, const uint8_t *xm, size_t ldxq, const qn_k_xq *xp,
                  const float *bias, float *y, size_t ldy, size_t mt)
{
    const __m256i nib = _mm256_set1_epi8(15);
    const uint8_t *blk = w->w + p * w->groups * 64;
    size_t m, g, G = w->groups;
    __m256i accA[Q_MT], accB[Q_MT];
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        accA[m] = _mm256_setzero_si256();
        accB[m] = _mm256_setzero_si256();
    }
    if (!w->int4) {
        for (g = 0; g < G; g++, blk += 64) {
            __m256i wa = _mm256_loadu_si256((const __m256i *)(const void *)blk);
            __m256i wb = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 32));
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++) {
                __m256i u = q_bcast(xm + m * ldxq + 4 * g);
                accA[m] = q_dot(accA[m], u, wa);
                accB[m] = q_dot(accB[m], u, wb);
            }
        }
    } else {
        for (g = 0; g < G; g++, blk += 64) {
            __m256i wa = _mm256_loadu_si256((const __m256i *)(const void *)blk);
            __m256i wb = _mm256_loadu_si256((const __m256i *)(const void *)(blk + 32));
            __m256i la = _mm256_and_si256(wa, nib), ha = _mm256_and_si256(_mm256_srli_epi16(wa, 4), nib);
            __m256i lb = _mm256_and_si256(wb, nib), hb = _mm256_and_si256(_mm256_srli_epi16(wb, 4), nib);
            _Pragma("GCC unroll 16")
            for (m = 0; m < mt; m++) {
                __m256i ul = q_bcast(xm + m * ldxq + 8 * g), uh = q_bcast(xm + m * ldxq + 8 * g + 4);
                accA[m] = q_dot(q_dot(accA[m], ul, la), uh, ha);
                accB[m] = q_dot(q_dot(accB[m], ul, lb), uh, hb);
            }
        }
    }
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        q_store_half(w, p, 0, accA[m], accB[m], xp + m, bias, y + m * ldy);
        q_store_half(w, p, 1, accA[m], accB[m], xp + m, bias, y + m * ldy);
    }
}

void qn_k_int_gemm_q_avx2(const qn_k_intw *w, size_t p0, size_t p1, size_t M, const uint8_t *xq, size_t ldxq,
                          const qn_k_xq *xp, const float *bias, float *y, size_t ldy)
{
    size_t p, m0;
    for (p = p0; p < p1; p++) {
        for (m0 = 0; m0 < M; m0 += Q_MT) {
            size_t mt = M - m0 < Q_MT ? M - m0 : Q_MT;
            const uint8_t *xm = xq + m0 * ldxq;
            float *ym = y + m0 * ldy;
            switch (mt) {
            case 1:
                q_tile(w, p, xm, ldxq, xp + m0, bias, ym, ldy, 1);
                break;
            case 2:
                q_tile(w, p, xm, ldxq, xp + m0, bias, ym, ldy, 2);
                break;
            case 3:
                q_tile(w, p, xm, ldxq, xp + m0, bias, ym, ldy, 3);
                break;
            default:
                q_tile(w, p, xm, ldxq, xp + m0, bias, ym, ldy, Q_MT);
                break;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* f32_panel: up to 16 weight rows (two vectors) against 4 packed rows of x per pass (half a   */
/* tile of 8); a wider panel is taken in two passes of 16.                                     */

#define P_MT 4

QN_AI void panel_tile(const float *panel, size_t ldp, const int two, __m256i k0, __m256i k1, size_t kc,
                      const float *xt, const float *bias, int init, float *y, size_t ldy, const size_t mt)
{
    __m256 a0[P_MT], a1[P_MT];
    size_t m, c;
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        if (init) {
            a0[m] = bias ? _mm256_maskload_ps(bias, k0) : _mm256_setzero_ps();
            a1[m] = bias && two ? _mm256_maskload_ps(bias + 8, k1) : _mm256_setzero_ps();
        } else {
            a0[m] = _mm256_maskload_ps(y + m * ldy, k0);
            a1[m] = two ? _mm256_maskload_ps(y + m * ldy + 8, k1) : _mm256_setzero_ps();
        }
    }
    for (c = 0; c < kc; c++) {
        const float *pc = panel + c * ldp, *xc = xt + 8 * c;
        __m256 w0 = _mm256_loadu_ps(pc), w1 = two ? _mm256_loadu_ps(pc + 8) : _mm256_setzero_ps();
        _Pragma("GCC unroll 16")
        for (m = 0; m < mt; m++) {
            __m256 xb = _mm256_broadcast_ss(xc + m);
            a0[m] = _mm256_fmadd_ps(xb, w0, a0[m]);
            if (two)
                a1[m] = _mm256_fmadd_ps(xb, w1, a1[m]);
        }
    }
    _Pragma("GCC unroll 16")
    for (m = 0; m < mt; m++) {
        _mm256_maskstore_ps(y + m * ldy, k0, a0[m]);
        if (two)
            _mm256_maskstore_ps(y + m * ldy + 8, k1, a1[m]);
    }
}

#define PANEL_CASES(TWO)                                                                                      \
    switch (mt) {                                                                                             \
    case 1: panel_tile(pn, ldp, TWO, k0, k1, kc, xt, bs, init, ym, ldy, 1); break;                            \
    case 2: panel_tile(pn, ldp, TWO, k0, k1, kc, xt, bs, init, ym, ldy, 2); break;                            \
    case 3: panel_tile(pn, ldp, TWO, k0, k1, kc, xt, bs, init, ym, ldy, 3); break;                            \
    default: panel_tile(pn, ldp, TWO, k0, k1, kc, xt, bs, init, ym, ldy, P_MT); break;                        \
    }

void qn_k_f32_panel_avx2(const float *panel, size_t ldp, size_t nr, size_t kc, size_t M, const float *xp,
                         size_t ldxp, const float *bias, int init, float *y, size_t ldy)
{
    size_t r0, m0;
    for (r0 = 0; r0 < nr; r0 += 16) {
        size_t n = nr - r0 < 16 ? nr - r0 : 16;
        __m256i k0 = i256_first(n < 8 ? n : 8), k1 = i256_first(n > 8 ? n - 8 : 0);
        const float *pn = panel + r0, *bs = bias ? bias + r0 : NULL;
        for (m0 = 0; m0 < M; m0 += P_MT) { /* P_MT divides the tile of 8 */
            size_t mt = M - m0 < P_MT ? M - m0 : P_MT;
            const float *xt = xp + (m0 / 8) * ldxp + m0 % 8;
            float *ym = y + m0 * ldy + r0;
            if (n > 8) {
                PANEL_CASES(1)
            } else {
                PANEL_CASES(0)
            }
        }
    }
}
