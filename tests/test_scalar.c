/*
 * qn_scalar_* through the shared library: hand-derived parameters and values,
 * dequantize(quantize(w)) == fake_quantize(w) to the bit for every width and
 * scheme, the number of grid levels, the packed LSB-first bit stream read
 * back independently, in-place fake quantization, per-channel ranges, the
 * moving average, the histogram clipping an outlier, bad input leaving
 * outputs untouched, and allocation failures reported without leaks.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

static qn_context *new_ctx(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

static qn_scalar_quantizer *new_q(qn_context *ctx, unsigned bits, qn_qscheme scheme, qn_observer obs)
{
    qn_scalar_quantizer *q = NULL;
    ck_assert_int_eq(qn_scalar_create(ctx, bits, scheme, obs, &q), QN_OK);
    ck_assert_ptr_nonnull(q);
    return q;
}

/* n floats uniform in [-a, a). */
static float *rand_floats(size_t n, float a, uint64_t seed)
{
    float *x = malloc(sizeof(float) * (n ? n : 1));
    size_t i;
    ck_assert_ptr_nonnull(x);
    for (i = 0; i < n; i++)
        x[i] = a * qn_test_uniform(&seed);
    return x;
}

static void grid(unsigned bits, qn_qscheme scheme, int32_t *qmin, int32_t *qmax)
{
    if (scheme == QN_QSCHEME_SYMMETRIC) {
        *qmax = (1 << (bits - 1)) - 1;
        *qmin = -*qmax;
    } else {
        *qmin = 0;
        *qmax = (1 << bits) - 1;
    }
}

/* Bit b of an LSB-first stream. */
static unsigned stream_bit(const uint8_t *p, size_t b)
{
    return (p[b / 8] >> (b % 8)) & 1u;
}

/* Field i (bits wide) of an LSB-first stream, bit by bit. */
static uint32_t stream_field(const uint8_t *p, size_t i, unsigned bits)
{
    uint32_t v = 0;
    unsigned j;
    for (j = 0; j < bits; j++)
        v |= (uint32_t)stream_bit(p, i * bits + j) << j;
    return v;
}

static size_t count_distinct(const float *v, size_t n)
{
    float *s = malloc(sizeof(float) * n);
    size_t i, j, d = 0;
    ck_assert_ptr_nonnull(s);
    for (i = 0; i < n; i++) {
        for (j = 0; j < d; j++)
            if (memcmp(&s[j], &v[i], sizeof(float)) == 0)
                break;
        if (j == d)
            s[d++] = v[i];
    }
    free(s);
    return d;
}

/* ---------------------------------------------------------------------------------------------- */

START_TEST(hand_derived_minmax)
{
    /*
     * w = {-1, 0, 0.5, 3}, 8 bits.
     * affine: range [min(w,0), max(w,0)] = [-1, 3]; s = (3 - (-1)) / (255 - 0) = 4/255;
     *   z = qmin - round(-1 / s) = 0 - round(-63.75) = 64.
     *   q = round(w * 63.75) + 64: -1 -> -64 + 64 = 0; 0 -> 64; 0.5 -> round(31.875) + 64 = 96;
     *   3 -> round(191.25) + 64 = 255. Values (q - 64) * s = {-64 s, 0, 32 s, 191 s}.
     *   Codes q - qmin = {0, 64, 96, 255}: one byte each.
     * symmetric: s = max(1, 3) / ((127 - (-127)) / 2) = 3/127, z = 0.
     *   q = round(w * 127/3): -1 -> round(-42.33) = -42; 0 -> 0; 0.5 -> round(21.17) = 21; 3 -> 127.
     *   Codes q - qmin = q + 127 = {85, 127, 148, 254}.
     */
    const float w[4] = {-1.0f, 0.0f, 0.5f, 3.0f};
    const float sa = 4.0f / 255.0f, ss = 3.0f / 127.0f;
    const float fa[4] = {-64.0f * sa, 0.0f * sa, 32.0f * sa, 191.0f * sa};
    const float fs[4] = {-42.0f * ss, 0.0f * ss, 21.0f * ss, 127.0f * ss};
    const uint8_t ca[4] = {0, 64, 96, 255}, cs[4] = {85, 127, 148, 254};
    qn_context *ctx = new_ctx();
    qn_scalar_quantizer *a = new_q(ctx, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
    qn_scalar_quantizer *s = new_q(ctx, 8, QN_QSCHEME_SYMMETRIC, QN_OBSERVER_MINMAX);
    float scale = 0, out[4];
    int32_t zero = -1;
    size_t nch = 0, bytes = 0;
    uint8_t codes[4];
    int i;

    ck_assert_int_eq(qn_scalar_observe(a, w, 1, 4), QN_OK);
    ck_assert_int_eq(qn_scalar_channels(a, &nch), QN_OK);
    ck_assert_uint_eq(nch, 1);
    ck_assert_int_eq(qn_scalar_get_qparams(a, &scale, &zero, 1), QN_OK);
    ck_assert_msg(scale == sa, "scale %.9g, expected 4/255 = %.9g", (double)scale, (double)sa);
    ck_assert_int_eq(zero, 64);
    ck_assert_int_eq(qn_scalar_fake_quantize(a, w, 2, 2, out), QN_OK);
    for (i = 0; i < 4; i++)
        ck_assert_msg(out[i] == fa[i], "affine %d: %.9g vs %.9g", i, (double)out[i], (double)fa[i]);
    ck_assert_int_eq(qn_scalar_packed_size(a, 2, 2, &bytes), QN_OK);
    ck_assert_uint_eq(bytes, 4);
    ck_assert_int_eq(qn_scalar_quantize(a, w, 4, 1, codes, sizeof codes), QN_OK);
    ck_assert_int_eq(memcmp(codes, ca, 4), 0);

    ck_assert_int_eq(qn_scalar_observe(s, w, 4, 1), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(s, &scale, &zero, 5), QN_OK);
    ck_assert_msg(scale == ss, "scale %.9g, expected 3/127 = %.9g", (double)scale, (double)ss);
    ck_assert_int_eq(zero, 0);
    ck_assert_int_eq(qn_scalar_fake_quantize(s, w, 1, 4, out), QN_OK);
    for (i = 0; i < 4; i++)
        ck_assert_msg(out[i] == fs[i], "symmetric %d: %.9g vs %.9g", i, (double)out[i], (double)fs[i]);
    ck_assert_int_eq(qn_scalar_quantize(s, w, 1, 4, codes, sizeof codes), QN_OK);
    ck_assert_int_eq(memcmp(codes, cs, 4), 0);
    ck_assert_int_eq(qn_scalar_dequantize(s, codes, sizeof codes, 1, 4, out), QN_OK);
    for (i = 0; i < 4; i++)
        ck_assert(out[i] == fs[i]);

    /* 2 bits affine on the same w: s = 4/3, z = -round(-0.75) = 1; q = round(0.75 w) + 1 =
     * {0, 1, round(0.375) + 1 = 1, round(2.25) + 1 = 3}: fields 0,1,1,3 -> 0b11010100 = 0xD4 */
    qn_scalar_destroy(a);
    a = new_q(ctx, 2, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
    ck_assert_int_eq(qn_scalar_observe(a, w, 1, 4), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(a, &scale, &zero, 1), QN_OK);
    ck_assert(scale == 4.0f / 3.0f);
    ck_assert_int_eq(zero, 1);
    codes[1] = 0x5A;
    ck_assert_int_eq(qn_scalar_packed_size(a, 1, 4, &bytes), QN_OK);
    ck_assert_uint_eq(bytes, 1);
    ck_assert_int_eq(qn_scalar_quantize(a, w, 1, 4, codes, 1), QN_OK);
    ck_assert_uint_eq(codes[0], 0xD4);
    ck_assert_uint_eq(codes[1], 0x5A); /* past the packed size: untouched */
    ck_assert_int_eq(qn_scalar_fake_quantize(a, w, 1, 4, out), QN_OK);
    ck_assert(out[0] == -1.0f * (4.0f / 3.0f) && out[1] == 0.0f && out[2] == 0.0f && out[3] == 2.0f * (4.0f / 3.0f));

    qn_scalar_destroy(a);
    qn_scalar_destroy(s);
    qn_context_destroy(ctx);
}
END_TEST

/* _i = observer; every width and scheme */
START_TEST(roundtrip_equals_fake_quantization)
{
    const size_t rows = 7, cols = 13, n = rows * cols; /* n * bits is not a multiple of 8 for odd bits */
    qn_context *ctx = new_ctx();
    float *w = rand_floats(n, 3.0f, 1000 + (uint64_t)_i), *w2 = malloc(sizeof(float) * n);
    float *fq = malloc(sizeof(float) * n), *dq = malloc(sizeof(float) * n);
    uint8_t *codes = malloc(n + 16);
    unsigned bits;
    int sch;
    size_t i;

    w[5] = 0.0f;
    w[6] = -3.0f;
    for (i = 0; i < n; i++)
        w2[i] = 1.5f * w[i]; /* beyond the observed range: clamped */
    for (bits = 2; bits <= 8; bits++) {
        for (sch = 0; sch <= 1; sch++) {
            const qn_qscheme scheme = (qn_qscheme)sch;
            qn_scalar_quantizer *q = new_q(ctx, bits, scheme, (qn_observer)_i);
            float scales[7];
            int32_t zeros[7], qmin, qmax;
            size_t bytes = 0, nch = 0;
            grid(bits, scheme, &qmin, &qmax);
            ck_assert_int_eq(qn_scalar_observe(q, w, rows, cols), QN_OK);
            if (_i == QN_OBSERVER_MOVING_AVERAGE)
                ck_assert_int_eq(qn_scalar_observe(q, w2, rows, cols), QN_OK);
            ck_assert_int_eq(qn_scalar_channels(q, &nch), QN_OK);
            ck_assert_uint_eq(nch, _i == QN_OBSERVER_PER_CHANNEL ? rows : 1);
            ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 7), QN_OK);
            ck_assert_int_eq(qn_scalar_packed_size(q, rows, cols, &bytes), QN_OK);
            ck_assert_uint_eq(bytes, (n * bits + 7) / 8);
            memset(codes, 0xA5, n + 16);
            ck_assert_int_eq(qn_scalar_fake_quantize(q, w2, rows, cols, fq), QN_OK);
            ck_assert_int_eq(qn_scalar_quantize(q, w2, rows, cols, codes, bytes), QN_OK);
            ck_assert_int_eq(qn_scalar_dequantize(q, codes, bytes, rows, cols, dq), QN_OK);
            ck_assert_msg(memcmp(fq, dq, sizeof(float) * n) == 0, "bits %u scheme %d observer %d", bits, sch, _i);
            /* the bytes after the packed size are untouched; the pad bits of the last byte are 0 */
            for (i = bytes; i < n + 16; i++)
                ck_assert_uint_eq(codes[i], 0xA5);
            for (i = n * bits; i < bytes * 8; i++)
                ck_assert_uint_eq(stream_bit(codes, i), 0);
            /* independent read-back: field i is round(fq / s) + z - qmin */
            for (i = 0; i < n; i++) {
                const size_t ch = _i == QN_OBSERVER_PER_CHANNEL ? i / cols : 0;
                const long qv = lrintf(fq[i] / scales[ch]) + zeros[ch];
                const uint32_t f = stream_field(codes, i, bits);
                ck_assert(qv >= qmin && qv <= qmax);
                ck_assert_msg(f == (uint32_t)(qv - qmin), "bits %u scheme %d: field %zu = %u, expected %ld", bits, sch,
                              i, (unsigned)f, qv - qmin);
                ck_assert_uint_le(f, (uint32_t)(qmax - qmin));
                ck_assert(fabsf(fq[i]) <= fabsf(w2[i]) + scales[ch]); /* a grid value near w (or a clamp) */
            }
            qn_scalar_destroy(q);
        }
    }
    qn_context_destroy(ctx);
    free(w);
    free(w2);
    free(fq);
    free(dq);
    free(codes);
}
END_TEST

START_TEST(levels_on_a_dense_ramp)
{
    /* affine on [-1, 2], symmetric on [-2, 2]: the ramp reaches every grid level (no level
     * boundary sits on a rounding tie), so the distinct values are exactly the grid sizes */
    const size_t n = 20000;
    qn_context *ctx = new_ctx();
    float *ra = malloc(sizeof(float) * n), *rs = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
    uint8_t *codes = malloc(n);
    unsigned bits;
    size_t i;

    for (i = 0; i < n; i++) {
        ra[i] = -1.0f + 3.0f * (float)i / (float)(n - 1);
        rs[i] = -2.0f + 4.0f * (float)i / (float)(n - 1);
    }
    for (bits = 2; bits <= 8; bits++) {
        qn_scalar_quantizer *a = new_q(ctx, bits, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
        qn_scalar_quantizer *s = new_q(ctx, bits, QN_QSCHEME_SYMMETRIC, QN_OBSERVER_MINMAX);
        size_t bytes = 0;
        uint32_t maxf = 0;
        ck_assert_int_eq(qn_scalar_observe(a, ra, 1, n), QN_OK);
        ck_assert_int_eq(qn_scalar_fake_quantize(a, ra, 1, n, out), QN_OK);
        ck_assert_uint_eq(count_distinct(out, n), (size_t)1 << bits);
        ck_assert_int_eq(qn_scalar_observe(s, rs, 1, n), QN_OK);
        ck_assert_int_eq(qn_scalar_fake_quantize(s, rs, 1, n, out), QN_OK);
        ck_assert_uint_eq(count_distinct(out, n), ((size_t)1 << bits) - 1);
        /* symmetric fields stop at 2^bits - 2, even with values beyond the range */
        for (i = 0; i < n; i++)
            out[i] = 3.0f * rs[i];
        ck_assert_int_eq(qn_scalar_packed_size(s, 1, n, &bytes), QN_OK);
        ck_assert_int_eq(qn_scalar_quantize(s, out, 1, n, codes, n), QN_OK);
        for (i = 0; i < n; i++) {
            const uint32_t f = stream_field(codes, i, bits);
            maxf = f > maxf ? f : maxf;
        }
        ck_assert_uint_eq(maxf, ((uint32_t)1 << bits) - 2);
        ck_assert_uint_eq(stream_field(codes, 0, bits), 0);
        qn_scalar_destroy(a);
        qn_scalar_destroy(s);
    }
    qn_context_destroy(ctx);
    free(ra);
    free(rs);
    free(out);
    free(codes);
}
END_TEST

START_TEST(packed_size_and_bit_layout)
{
    qn_context *ctx = new_ctx();
    unsigned bits;
    size_t n, i;
    for (bits = 2; bits <= 8; bits++) {
        qn_scalar_quantizer *q = new_q(ctx, bits, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
        const uint32_t qmax = ((uint32_t)1 << bits) - 1;
        float ramp[40], back[40];
        uint8_t codes[64];
        size_t bytes = 0;
        /* packed size needs no observation */
        for (n = 1; n <= 40; n++) {
            ck_assert_int_eq(qn_scalar_packed_size(q, 1, n, &bytes), QN_OK);
            ck_assert_uint_eq(bytes, (n * bits + 7) / 8);
            ck_assert_int_eq(qn_scalar_packed_size(q, n, 3, &bytes), QN_OK);
            ck_assert_uint_eq(bytes, (3 * n * bits + 7) / 8);
        }
        ck_assert_int_eq(qn_scalar_packed_size(q, SIZE_MAX / 8, 1, &bytes), QN_OK); /* no n * bits overflow */
        ck_assert_uint_eq(bytes, (SIZE_MAX / 8 / 8) * bits + ((SIZE_MAX / 8 % 8) * bits + 7) / 8);
        /* integer ramp 0..qmax on the grid s = 1, z = 0: field i is i mod 2^bits */
        ramp[0] = (float)qmax; /* observe [0, qmax]: s = 1, z = 0 */
        for (i = 1; i < 40; i++)
            ramp[i] = 0.0f;
        ck_assert_int_eq(qn_scalar_observe(q, ramp, 1, 40), QN_OK);
        for (i = 0; i < 40; i++)
            ramp[i] = (float)(i % (qmax + 1));
        for (n = 1; n <= 40; n++) {
            size_t need = (n * bits + 7) / 8;
            memset(codes, 0xFF, sizeof codes);
            ck_assert_int_eq(qn_scalar_quantize(q, ramp, 1, n, codes, need), QN_OK);
            for (i = 0; i < n; i++)
                ck_assert_uint_eq(stream_field(codes, i, bits), i % (qmax + 1));
            for (i = n * bits; i < need * 8; i++)
                ck_assert_uint_eq(stream_bit(codes, i), 0);
            for (i = need; i < sizeof codes; i++)
                ck_assert_uint_eq(codes[i], 0xFF);
            ck_assert_int_eq(qn_scalar_dequantize(q, codes, need, n, 1, back), QN_OK);
            for (i = 0; i < n; i++)
                ck_assert(back[i] == ramp[i]);
        }
        qn_scalar_destroy(q);
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(in_place_equals_out_of_place)
{
    const size_t rows = 5, cols = 33, n = rows * cols;
    qn_context *ctx = new_ctx();
    float *w = rand_floats(n, 2.0f, 77), *ref = malloc(sizeof(float) * n), *buf = malloc(sizeof(float) * n);
    int o, sch;
    for (o = 0; o <= 3; o++) {
        for (sch = 0; sch <= 1; sch++) {
            qn_scalar_quantizer *q = new_q(ctx, 4, (qn_qscheme)sch, (qn_observer)o);
            ck_assert_int_eq(qn_scalar_observe(q, w, rows, cols), QN_OK);
            ck_assert_int_eq(qn_scalar_fake_quantize(q, w, rows, cols, ref), QN_OK);
            memcpy(buf, w, sizeof(float) * n);
            ck_assert_int_eq(qn_scalar_fake_quantize(q, buf, rows, cols, buf), QN_OK);
            ck_assert_int_eq(memcmp(buf, ref, sizeof(float) * n), 0);
            /* idempotent: grid values stay */
            ck_assert_int_eq(qn_scalar_fake_quantize(q, buf, rows, cols, buf), QN_OK);
            ck_assert_int_eq(memcmp(buf, ref, sizeof(float) * n), 0);
            qn_scalar_destroy(q);
        }
    }
    qn_context_destroy(ctx);
    free(w);
    free(ref);
    free(buf);
}
END_TEST

START_TEST(per_channel_uses_each_row_range)
{
    /* row 0 spans [-100, 100], row 1 [-0.01, 0.02] */
    const float w[2][6] = {{-100.0f, -50.0f, 0.0f, 25.0f, 60.0f, 100.0f},
                           {-0.01f, -0.005f, 0.001f, 0.007f, 0.015f, 0.02f}};
    const float w3[3 * 6] = {0};
    qn_context *ctx = new_ctx();
    qn_scalar_quantizer *pc = new_q(ctx, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_PER_CHANNEL);
    qn_scalar_quantizer *pt = new_q(ctx, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
    float scales[2], out[12], flat[18], keep_s[2];
    int32_t zeros[2], keep_z[2];
    size_t nch = 0, i;

    ck_assert_int_eq(qn_scalar_observe(pc, &w[0][0], 2, 6), QN_OK);
    ck_assert_int_eq(qn_scalar_channels(pc, &nch), QN_OK);
    ck_assert_uint_eq(nch, 2);
    ck_assert_int_eq(qn_scalar_get_qparams(pc, scales, zeros, 2), QN_OK);
    /* row 0: s = 200/255, z = -round(-100 / s) = round(~127.5): 127 or 128 by float rounding */
    ck_assert(scales[0] == 200.0f / 255.0f);
    ck_assert_int_eq(zeros[0], (int32_t)-nearbyintf(-100.0f / scales[0]));
    ck_assert(zeros[0] == 127 || zeros[0] == 128);
    /* row 1: s = 0.03/255 */
    ck_assert(fabsf(scales[1] - 0.03f / 255.0f) <= 1e-6f * scales[1]);
    ck_assert_int_eq(qn_scalar_fake_quantize(pc, &w[0][0], 2, 6, out), QN_OK);
    for (i = 0; i < 6; i++) {
        ck_assert(fabsf(out[i] - w[0][i]) <= 0.5f * scales[0] * 1.0001f);
        ck_assert(fabsf(out[6 + i] - w[1][i]) <= 0.5f * scales[1] * 1.0001f); /* not flattened */
    }
    ck_assert_uint_eq(count_distinct(out + 6, 6), 6);
    /* the per-tensor quantizer flattens row 1 onto at most two levels around 0 */
    ck_assert_int_eq(qn_scalar_observe(pt, &w[0][0], 2, 6), QN_OK);
    ck_assert_int_eq(qn_scalar_fake_quantize(pt, &w[0][0], 2, 6, flat), QN_OK);
    ck_assert_uint_le(count_distinct(flat + 6, 6), 2);

    /* the row count is fixed by the first observation */
    memcpy(keep_s, scales, sizeof keep_s);
    memcpy(keep_z, zeros, sizeof keep_z);
    ck_assert_int_eq(qn_scalar_observe(pc, w3, 3, 6), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_observe(pc, w3, 1, 6), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(pc, w3, 3, 6, flat), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(pc, w3, 3, 4, flat), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(pc, w3, 2, 9, flat), QN_OK); /* any column count */
    ck_assert_int_eq(qn_scalar_get_qparams(pc, scales, zeros, 2), QN_OK);
    ck_assert_int_eq(memcmp(scales, keep_s, sizeof keep_s), 0);
    ck_assert_int_eq(memcmp(zeros, keep_z, sizeof keep_z), 0);
    /* a second observation with the same rows replaces the parameters */
    ck_assert_int_eq(qn_scalar_observe(pc, w3, 2, 6), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(pc, scales, zeros, 2), QN_OK);
    ck_assert(scales[0] == scales[1] && zeros[0] == 0); /* all-zero rows: eps scale */

    qn_scalar_destroy(pc);
    qn_scalar_destroy(pt);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(moving_average_matches_hand_computation)
{
    /*
     * obs 1: {-1, 0.5, 2} -> running [-1, 2].
     * obs 2: {-3, 1, 4}   -> min = -1 + 0.01 (-3 - (-1)) = -1.02, max = 2 + 0.01 (4 - 2) = 2.02.
     * 8-bit affine on [-1.02, 2.02] (contains 0): s = 3.04 / 255, z = -round(-1.02 / s) = round(85.56) = 86.
     * The expected values repeat the float32 operations in the same order.
     */
    const float w1[3] = {-1.0f, 0.5f, 2.0f}, w2[3] = {-3.0f, 1.0f, 4.0f}, bad[3] = {0.0f, NAN, 1.0f};
    const float c = 0.01f;
    qn_context *ctx = new_ctx();
    qn_scalar_quantizer *q = new_q(ctx, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_MOVING_AVERAGE);
    qn_scalar_quantizer *p = new_q(ctx, 8, QN_QSCHEME_SYMMETRIC, QN_OBSERVER_MOVING_AVERAGE);
    float mn = -1.0f, mx = 2.0f, d, s = 0, es, width;
    int32_t z = -1;

    ck_assert_int_eq(qn_scalar_observe(q, w1, 1, 3), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(q, &s, &z, 1), QN_OK);
    es = (mx - mn) / 255.0f;
    ck_assert(s == es);
    ck_assert_int_eq(z, 85); /* round(1 / (3/255)) = round(85) */
    ck_assert_int_eq(qn_scalar_observe(q, bad, 1, 3), QN_ERR_INVALID_ARG); /* no effect on the running range */
    ck_assert_int_eq(qn_scalar_observe(q, w2, 3, 1), QN_OK);
    d = -3.0f - mn;
    d = c * d;
    mn = mn + d;
    d = 4.0f - mx;
    d = c * d;
    mx = mx + d;
    ck_assert(fabsf(mn - -1.02f) <= 1e-6f && fabsf(mx - 2.02f) <= 1e-6f);
    es = (mx - mn) / 255.0f;
    ck_assert_int_eq(qn_scalar_get_qparams(q, &s, &z, 1), QN_OK);
    ck_assert_msg(s == es, "scale %.9g, hand %.9g", (double)s, (double)es);
    ck_assert_int_eq(z, 86);
    ck_assert_int_eq(z, (int32_t)-nearbyintf(mn / es));

    /* symmetric, positive data: the range is widened to include 0 for the parameters only;
     * running [1, 2] -> min = 1 + 0.01 (3 - 1) = 1.02, max = 2 + 0.01 (5 - 2) = 2.03; s = 2.03 / 127 */
    {
        const float p1[2] = {1.0f, 2.0f}, p2[2] = {3.0f, 5.0f};
        float pmx = 2.0f;
        ck_assert_int_eq(qn_scalar_observe(p, p1, 2, 1), QN_OK);
        ck_assert_int_eq(qn_scalar_get_qparams(p, &s, &z, 1), QN_OK);
        width = pmx / 127.0f;
        ck_assert(s == width && z == 0);
        ck_assert_int_eq(qn_scalar_observe(p, p2, 1, 2), QN_OK);
        d = 5.0f - pmx;
        d = c * d;
        pmx = pmx + d;
        width = pmx / 127.0f;
        ck_assert_int_eq(qn_scalar_get_qparams(p, &s, &z, 1), QN_OK);
        ck_assert_msg(s == width, "scale %.9g, hand %.9g", (double)s, (double)width);
        ck_assert_int_eq(z, 0);
    }

    qn_scalar_destroy(q);
    qn_scalar_destroy(p);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(histogram_clips_an_outlier)
{
    const size_t n = 10001;
    qn_context *ctx = new_ctx();
    float *w = rand_floats(n, 1.0f, 99);
    /* 4 bits: with 16 levels over [-1, 1000] the 10^4 uniform values all fall in one level, whose
     * error dwarfs the outlier's once clipped. (At 8 bits the greedy search of PyTorch's observer,
     * reproduced here, keeps a lone outlier 1000 away: its squared distance outweighs the gain.) */
    qn_scalar_quantizer *h = new_q(ctx, 4, QN_QSCHEME_AFFINE, QN_OBSERVER_HISTOGRAM);
    qn_scalar_quantizer *m = new_q(ctx, 4, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX);
    float sh = 0, sm = 0, out[3];
    int32_t zh = -1, zm = -1;

    w[n / 2] = 1000.0f;
    ck_assert_int_eq(qn_scalar_observe(h, w, 1, n), QN_OK);
    ck_assert_int_eq(qn_scalar_observe(m, w, 1, n), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(h, &sh, &zh, 1), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(m, &sm, &zm, 1), QN_OK);
    /* min-max covers [-1, 1000]; the histogram's range ((qmax - z) s at the top) is far narrower */
    ck_assert_msg(sh * 10.0f < sm, "histogram scale %.9g, min-max %.9g", (double)sh, (double)sm);
    ck_assert_float_ge((float)(15 - zh) * sh, 0.5f); /* still covers most of the uniform data */
    ck_assert_float_le((float)(0 - zh) * sh, -0.5f);
    ck_assert_int_eq(qn_scalar_fake_quantize(h, &w[n / 2], 1, 1, out), QN_OK);
    ck_assert(out[0] < 2.0f); /* the outlier is clipped */
    /* a constant weight: no search, the range is [min(c, 0), max(c, 0)] */
    {
        const float cst[4] = {2.0f, 2.0f, 2.0f, 2.0f};
        ck_assert_int_eq(qn_scalar_observe(h, cst, 2, 2), QN_OK);
        ck_assert_int_eq(qn_scalar_get_qparams(h, &sh, &zh, 1), QN_OK);
        ck_assert(sh == 2.0f / 15.0f && zh == 0);
    }
    qn_scalar_destroy(h);
    qn_scalar_destroy(m);
    qn_context_destroy(ctx);
    free(w);
}
END_TEST

START_TEST(bad_input_leaves_outputs_untouched)
{
    qn_context *ctx = new_ctx();
    qn_scalar_quantizer *q = NULL, *sentinel = (qn_scalar_quantizer *)&ctx, *sym = NULL;
    float w[8] = {-1, 0, 0.5f, 3, 1, 2, -2, 0.25f}, out[8], scales[2] = {-7, -7}, ks, s1 = -7;
    int32_t zeros[2] = {-7, -7}, kz, z1 = -7;
    uint8_t codes[16];
    size_t nch = 55, bytes = 55, i;

    for (i = 0; i < 8; i++)
        out[i] = -9;
    memset(codes, 0x77, sizeof codes);

    /* create: a failing create sets *out NULL */
    q = sentinel;
    ck_assert_int_eq(qn_scalar_create(NULL, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX, &q), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(qn_scalar_create(ctx, 8, QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX, NULL), QN_ERR_INVALID_ARG);
    {
        static const unsigned bad_bits[] = {0, 1, 9, 16, 32};
        for (i = 0; i < sizeof bad_bits / sizeof bad_bits[0]; i++) {
            q = sentinel;
            ck_assert_int_eq(qn_scalar_create(ctx, bad_bits[i], QN_QSCHEME_AFFINE, QN_OBSERVER_MINMAX, &q),
                             QN_ERR_INVALID_ARG);
            ck_assert_ptr_null(q);
        }
    }
    q = sentinel;
    ck_assert_int_eq(qn_scalar_create(ctx, 8, (qn_qscheme)2, QN_OBSERVER_MINMAX, &q), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    q = sentinel;
    ck_assert_int_eq(qn_scalar_create(ctx, 8, (qn_qscheme)-1, QN_OBSERVER_MINMAX, &q), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    q = sentinel;
    ck_assert_int_eq(qn_scalar_create(ctx, 8, QN_QSCHEME_AFFINE, (qn_observer)4, &q), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    q = sentinel;
    ck_assert_int_eq(qn_scalar_create(ctx, 8, QN_QSCHEME_AFFINE, (qn_observer)-1, &q), QN_ERR_INVALID_ARG);
    ck_assert_ptr_null(q);
    qn_scalar_destroy(NULL);

    ck_assert_int_eq(qn_scalar_create(ctx, 3, QN_QSCHEME_AFFINE, QN_OBSERVER_PER_CHANNEL, &q), QN_OK);

    /* before the first observation: everything that needs parameters */
    ck_assert_int_eq(qn_scalar_channels(q, &nch), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 2), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 4, out), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 4, codes, sizeof codes), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, sizeof codes, 2, 4, out), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_packed_size(q, 2, 4, &bytes), QN_OK); /* needs no parameters */
    ck_assert_uint_eq(bytes, 3);
    bytes = 55;

    /* observe */
    ck_assert_int_eq(qn_scalar_observe(NULL, w, 2, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_observe(q, NULL, 2, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_observe(q, w, 0, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_observe(q, w, SIZE_MAX / 2, 4), QN_ERR_OVERFLOW);
    w[7] = NAN;
    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 4), QN_ERR_INVALID_ARG);
    w[7] = INFINITY;
    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 4), QN_ERR_INVALID_ARG);
    w[7] = -INFINITY;
    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 4), QN_ERR_INVALID_ARG);
    w[7] = 0.25f;
    ck_assert_int_eq(qn_scalar_channels(q, &nch), QN_ERR_NOT_TRAINED); /* the failures set nothing */
    ck_assert_uint_eq(nch, 55);

    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 4), QN_OK);
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 2), QN_OK);
    ks = scales[1];
    kz = zeros[1];
    scales[0] = scales[1] = -7;
    zeros[0] = zeros[1] = -7;
    /* finite but too wide a range: rejected, parameters stay */
    w[0] = -3e38f;
    w[1] = 3e38f;
    ck_assert_int_eq(qn_scalar_observe(q, w, 2, 4), QN_ERR_INVALID_ARG);
    w[0] = -1;
    w[1] = 0;
    ck_assert_int_eq(qn_scalar_observe(q, w, 4, 2), QN_ERR_INVALID_ARG); /* per-channel rows fixed at 2 */

    /* channels, get_qparams */
    ck_assert_int_eq(qn_scalar_channels(NULL, &nch), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_channels(q, NULL), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(nch, 55);
    ck_assert_int_eq(qn_scalar_get_qparams(NULL, scales, zeros, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_get_qparams(q, NULL, zeros, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, NULL, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 1), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 0), QN_ERR_BUFFER_TOO_SMALL);
    ck_assert(scales[0] == -7 && scales[1] == -7 && zeros[0] == -7 && zeros[1] == -7);

    /* fake_quantize */
    ck_assert_int_eq(qn_scalar_fake_quantize(NULL, w, 2, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, NULL, 2, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 4, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 0, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 0, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, SIZE_MAX / 2, out), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 1, 8, out), QN_ERR_INVALID_ARG); /* 1 row, 2 channels */
    w[6] = NAN;
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 4, out), QN_ERR_INVALID_ARG);
    w[6] = INFINITY;
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, 2, 4, w), QN_ERR_INVALID_ARG); /* in place: w untouched */
    ck_assert(isinf(w[6]) && w[0] == -1 && w[3] == 3);

    /* packed_size */
    ck_assert_int_eq(qn_scalar_packed_size(NULL, 2, 4, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_packed_size(q, 2, 4, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_packed_size(q, 0, 4, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_packed_size(q, 2, 0, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_packed_size(q, SIZE_MAX, 2, &bytes), QN_ERR_OVERFLOW);
    ck_assert_uint_eq(bytes, 55);

    /* quantize (w[6] is still Inf) */
    ck_assert_int_eq(qn_scalar_quantize(NULL, w, 2, 4, codes, sizeof codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_quantize(q, NULL, 2, 4, codes, sizeof codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 4, NULL, sizeof codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 0, 4, codes, sizeof codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 0, codes, sizeof codes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, SIZE_MAX / 2, codes, sizeof codes), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_scalar_quantize(q, w, 4, 2, codes, sizeof codes), QN_ERR_INVALID_ARG); /* 4 rows */
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 4, codes, sizeof codes), QN_ERR_INVALID_ARG); /* Inf */
    w[6] = -2;
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 4, codes, 2), QN_ERR_BUFFER_TOO_SMALL); /* 8 x 3 bits = 3 bytes */
    ck_assert_int_eq(qn_scalar_quantize(q, w, 2, 4, codes, 0), QN_ERR_BUFFER_TOO_SMALL);
    for (i = 0; i < sizeof codes; i++)
        ck_assert_uint_eq(codes[i], 0x77);

    /* dequantize */
    ck_assert_int_eq(qn_scalar_dequantize(NULL, codes, 3, 2, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_dequantize(q, NULL, 3, 2, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 2, 4, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 0, 4, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 2, 0, out), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 2, SIZE_MAX / 2, out), QN_ERR_OVERFLOW);
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 1, 8, out), QN_ERR_INVALID_ARG); /* 1 row */
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 2, 2, 4, out), QN_ERR_BUFFER_TOO_SMALL);
    for (i = 0; i < 8; i++)
        ck_assert(out[i] == -9);
    /* affine: every field is a code (0x77... has all-ones fields too) */
    ck_assert_int_eq(qn_scalar_dequantize(q, codes, 3, 2, 4, out), QN_OK);
    for (i = 0; i < 8; i++)
        out[i] = -9;

    /* symmetric: field 2^bits - 1 never comes out of quantize; reject it before writing */
    ck_assert_int_eq(qn_scalar_create(ctx, 3, QN_QSCHEME_SYMMETRIC, QN_OBSERVER_MINMAX, &sym), QN_OK);
    ck_assert_int_eq(qn_scalar_dequantize(sym, codes, 3, 2, 4, out), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_scalar_observe(sym, w, 2, 4), QN_OK);
    codes[0] = 0x00;
    codes[1] = 0x0E; /* fields 0..3: 0, 0, 0, 7 (bits 9..11) */
    codes[2] = 0x00;
    ck_assert_int_eq(qn_scalar_dequantize(sym, codes, 3, 1, 4, out), QN_ERR_CORRUPT_DATA);
    ck_assert_int_eq(qn_scalar_dequantize(sym, codes, 3, 2, 4, out), QN_ERR_CORRUPT_DATA);
    for (i = 0; i < 8; i++)
        ck_assert(out[i] == -9);
    ck_assert_int_eq(qn_scalar_dequantize(sym, codes, 3, 1, 3, out), QN_OK); /* the first three are valid */
    for (i = 0; i < 3; i++)
        ck_assert(out[i] < 0); /* field 0 is qmin = -3 */
    codes[1] = 0x0C; /* field 3 = 6 = qmax - qmin: valid */
    ck_assert_int_eq(qn_scalar_dequantize(sym, codes, 3, 2, 4, out), QN_OK);
    ck_assert(out[3] > 0);
    ck_assert_int_eq(qn_scalar_get_qparams(sym, &s1, &z1, 1), QN_OK);
    ck_assert(out[3] == 3.0f * s1 && z1 == 0);

    /* nothing above changed the per-channel parameters */
    ck_assert_int_eq(qn_scalar_get_qparams(q, scales, zeros, 2), QN_OK);
    ck_assert(scales[1] == ks && zeros[1] == kz);
    ck_assert_int_eq(qn_scalar_channels(q, &nch), QN_OK);
    ck_assert_uint_eq(nch, 2);

    qn_scalar_destroy(sym);
    qn_scalar_destroy(q);
    qn_context_destroy(ctx);
}
END_TEST

/* ---------------------------------------------------------------------------------------------- */
/* allocation failures                                                                            */

/* _i = observer */
START_TEST(allocation_failures_report_oom_without_leaks)
{
    const size_t rows = 4, cols = 50, n = rows * cols;
    float *w = rand_floats(n, 1.0f, 5), *w2 = rand_floats(n, 2.0f, 6);
    int fail_from, succeeded = 0;

    for (fail_from = 1; fail_from <= 64 && !succeeded; fail_from++) {
        counting_alloc a = {0, 0, 0, 0};
        qn_context *ctx = NULL;
        qn_scalar_quantizer *q = (qn_scalar_quantizer *)&a;
        qn_status st;
        a.fail_from = fail_from;
        st = qn_context_create_ex(count_alloc, count_free, &a, NULL, NULL, NULL, NULL, QN_ISA_AVX512, &ctx);
        if (st != QN_OK) {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_int_eq(a.allocs, a.frees);
            continue;
        }
        st = qn_scalar_create(ctx, 4, QN_QSCHEME_AFFINE, (qn_observer)_i, &q);
        if (st != QN_OK) {
            ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
            ck_assert_ptr_null(q);
        } else {
            size_t nch = 99;
            st = qn_scalar_observe(q, w, rows, cols);
            if (st != QN_OK) {
                ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
                ck_assert_int_eq(qn_scalar_channels(q, &nch), QN_ERR_NOT_TRAINED);
            } else {
                float s0[4], s1[4];
                int32_t z0[4], z1[4];
                ck_assert_int_eq(qn_scalar_get_qparams(q, s0, z0, 4), QN_OK);
                st = qn_scalar_observe(q, w2, rows, cols);
                if (st != QN_OK) {
                    /* the first observation's parameters stay */
                    ck_assert_int_eq(st, QN_ERR_OUT_OF_MEMORY);
                    ck_assert_int_eq(qn_scalar_get_qparams(q, s1, z1, 4), QN_OK);
                    ck_assert_int_eq(memcmp(s0, s1, sizeof(float) * (_i == QN_OBSERVER_PER_CHANNEL ? 4 : 1)), 0);
                    ck_assert_int_eq(memcmp(z0, z1, sizeof(int32_t) * (_i == QN_OBSERVER_PER_CHANNEL ? 4 : 1)), 0);
                } else {
                    float out[8];
                    uint8_t codes[4];
                    /* const calls allocate nothing */
                    ck_assert_int_eq(qn_scalar_fake_quantize(q, w, rows, 2, out), QN_OK);
                    ck_assert_int_eq(qn_scalar_quantize(q, w, rows, 2, codes, sizeof codes), QN_OK);
                    ck_assert_int_eq(qn_scalar_dequantize(q, codes, sizeof codes, rows, 2, out), QN_OK);
                    succeeded = 1;
                }
            }
            qn_scalar_destroy(q);
        }
        qn_context_destroy(ctx);
        ck_assert_msg(a.allocs == a.frees, "fail_from %d: %d allocations, %d frees", fail_from, a.allocs, a.frees);
    }
    ck_assert_msg(succeeded, "observation never succeeded within 64 allocations");
    ck_assert_int_gt(fail_from, 2); /* at least context and quantizer failed once */
    free(w);
    free(w2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("scalar");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, hand_derived_minmax);
    tcase_add_loop_test(tc, roundtrip_equals_fake_quantization, QN_OBSERVER_MINMAX, QN_OBSERVER_HISTOGRAM + 1);
    tcase_add_test(tc, levels_on_a_dense_ramp);
    tcase_add_test(tc, packed_size_and_bit_layout);
    tcase_add_test(tc, in_place_equals_out_of_place);
    tcase_add_test(tc, per_channel_uses_each_row_range);
    tcase_add_test(tc, moving_average_matches_hand_computation);
    tcase_add_test(tc, histogram_clips_an_outlier);
    tcase_add_test(tc, bad_input_leaves_outputs_untouched);
    tcase_add_loop_test(tc, allocation_failures_report_oom_without_leaks, QN_OBSERVER_MINMAX,
                        QN_OBSERVER_HISTOGRAM + 1);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return qn_test_run(s);
}
