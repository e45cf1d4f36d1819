/*
 * qn_layer (linear, conv2d, embedding) through the shared library, tested
 * against the public contract only (layer.h, rng.h, quant.h and the scalar
 * fake-quantization conventions), with an independent slow reference: plain
 * loops, double accumulation, no BLAS.
 *
 *   - every layer kind x noise kind (NONE, PROXY, SCALAR, PQ) x gradient mode
 *     on fixed and random (odd) shapes: the effective weight W_eff (recovered
 *     through forward_noisy on one-hot inputs), forward, forward_noisy and
 *     backward (dx, dW +=, db +=) against the reference;
 *   - masks: export_mask bit-for-bit against qn_rng_block_noised, stable per
 *     (seed, layer_id, step), different across steps/ids/seeds, identical
 *     under every ISA cap, dropped fraction within 6 sigma;
 *   - SCALAR: qparams refresh schedule (update_step), rebind reset, STE
 *     clipping, bits 2..8, other observers/grids;
 *   - PQ: at most K distinct noised blocks, kept blocks exact, error on
 *     clustered weights, centroid refresh schedule;
 *   - finite differences on the exact path for every layer kind;
 *   - workspace sizing; bad input leaves every output untouched;
 *   - the bound weight is bit-for-bit unchanged by every call.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/common.h>
#include <qnoise/layer.h>
#include <qnoise/quant.h>
#include <qnoise/rng.h>

/* ------------------------------------------------------------------------------------------ */
/* data                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static uint64_t sm_state;
static uint64_t splitmix(void)
{
    uint64_t z = (sm_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* Uniform in [-1, 1). */
static float frand(void)
{
    return (float)((splitmix() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}
/* Uniform in [0, n). */
static size_t urand(size_t n)
{
    return (size_t)(splitmix() % n);
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    ck_assert_ptr_nonnull(p);
    return p;
}
static float *falloc(size_t n)
{
    return (float *)xmalloc(n * sizeof(float));
}
static double *dzalloc(size_t n)
{
    double *p = (double *)calloc(n ? n : 1, sizeof(double));
    ck_assert_ptr_nonnull(p);
    return p;
}
static void fill_rand(float *a, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        a[i] = frand();
}
static void fill_val(float *a, size_t n, float v)
{
    size_t i;
    for (i = 0; i < n; i++)
        a[i] = v;
}

#define SENTINEL 12345.0f

static void assert_all_eq(const float *a, size_t n, float v, const char *what)
{
    size_t i;
    for (i = 0; i < n; i++)
        ck_assert_msg(a[i] == v, "%s[%zu] was written (%.9g, expected untouched %.9g)", what, i, (double)a[i],
                      (double)v);
}

static qn_context *new_ctx(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

/* ------------------------------------------------------------------------------------------ */
/* shapes                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct shape {
    qn_layer_kind kind;
    size_t in, out; /* channels / features (embedding: unused) */
    size_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
    size_t H, W, OH, OW; /* linear: all 1 */
    size_t rows, cols;   /* the weight viewed as a matrix */
} shape;

static shape shape_linear(size_t in, size_t out)
{
    shape s;
    memset(&s, 0, sizeof s);
    s.kind = QN_LAYER_LINEAR;
    s.in = in;
    s.out = out;
    s.kh = s.kw = s.sh = s.sw = s.dh = s.dw = s.groups = 1;
    s.H = s.W = s.OH = s.OW = 1;
    s.rows = out;
    s.cols = in;
    return s;
}

static shape shape_conv(size_t in, size_t out, size_t kh, size_t kw, size_t sh, size_t sw, size_t ph,
                        size_t pw, size_t dh, size_t dw, size_t groups, size_t H, size_t W)
{
    shape s;
    memset(&s, 0, sizeof s);
    s.kind = QN_LAYER_CONV2D;
    s.in = in;
    s.out = out;
    s.kh = kh;
    s.kw = kw;
    s.sh = sh;
    s.sw = sw;
    s.ph = ph;
    s.pw = pw;
    s.dh = dh;
    s.dw = dw;
    s.groups = groups;
    s.H = H;
    s.W = W;
    /* PyTorch: floor((H + 2p - d(k-1) - 1)/s) + 1 */
    s.OH = (H + 2 * ph - dh * (kh - 1) - 1) / sh + 1;
    s.OW = (W + 2 * pw - dw * (kw - 1) - 1) / sw + 1;
    s.rows = out;
    s.cols = in / groups * kh * kw;
    return s;
}

static shape shape_emb(size_t num, size_t dim)
{
    shape s;
    memset(&s, 0, sizeof s);
    s.kind = QN_LAYER_EMBEDDING;
    s.rows = num;
    s.cols = dim;
    return s;
}

static size_t n_weights(const shape *s)
{
    return s->rows * s->cols;
}
static size_t n_bias(const shape *s)
{
    return s->kind == QN_LAYER_EMBEDDING ? 0 : s->out;
}
static size_t in_ps(const shape *s)
{
    return s->kind == QN_LAYER_EMBEDDING ? 1 : s->in * s->H * s->W;
}
static size_t out_ps(const shape *s)
{
    return s->kind == QN_LAYER_EMBEDDING ? s->cols : s->out * s->OH * s->OW;
}

static void describe_shape(char *buf, size_t n, const shape *s)
{
    if (s->kind == QN_LAYER_LINEAR)
        snprintf(buf, n, "linear(in=%zu,out=%zu)", s->in, s->out);
    else if (s->kind == QN_LAYER_EMBEDDING)
        snprintf(buf, n, "embedding(num=%zu,dim=%zu)", s->rows, s->cols);
    else
        snprintf(buf, n,
                 "conv2d(in=%zu,out=%zu,k=%zux%zu,stride=%zu,%zu,pad=%zu,%zu,dil=%zu,%zu,groups=%zu,"
                 "input=%zux%zu,output=%zux%zu)",
                 s->in, s->out, s->kh, s->kw, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw, s->groups, s->H, s->W,
                 s->OH, s->OW);
}

/* Create a layer of shape s and check its introspection. */
static qn_layer *make_layer(qn_context *ctx, const shape *s)
{
    qn_layer *l = NULL;
    qn_layer_kind k = (qn_layer_kind)0;
    size_t wc = 0, bc = 7, ip = 0, op = 0, oh = 0, ow = 0;
    if (s->kind == QN_LAYER_LINEAR) {
        ck_assert_int_eq(qn_layer_create_linear(ctx, s->in, s->out, &l), QN_OK);
    } else if (s->kind == QN_LAYER_EMBEDDING) {
        ck_assert_int_eq(qn_layer_create_embedding(ctx, s->rows, s->cols, &l), QN_OK);
    } else {
        ck_assert_int_eq(
            qn_layer_create_conv2d(ctx, s->in, s->out, s->kh, s->kw, s->sh, s->ph, s->dh, s->groups, &l),
            QN_OK);
        if (s->sh != s->sw || s->ph != s->pw || s->dh != s->dw)
            ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, s->sh, s->sw, s->ph, s->pw, s->dh, s->dw),
                             QN_OK);
        ck_assert_int_eq(qn_layer_set_input_size(l, s->H, s->W), QN_OK);
        ck_assert_int_eq(qn_layer_get_output_size(l, &oh, &ow), QN_OK);
        ck_assert_uint_eq(oh, s->OH);
        ck_assert_uint_eq(ow, s->OW);
    }
    ck_assert_ptr_nonnull(l);
    ck_assert_int_eq(qn_layer_get_kind(l, &k), QN_OK);
    ck_assert_int_eq(k, s->kind);
    ck_assert_int_eq(qn_layer_get_sizes(l, &wc, &bc, &ip, &op), QN_OK);
    ck_assert_uint_eq(wc, n_weights(s));
    ck_assert_uint_eq(bc, n_bias(s));
    ck_assert_uint_eq(ip, in_ps(s));
    ck_assert_uint_eq(op, out_ps(s));
    ck_assert_int_eq(qn_layer_get_sizes(l, NULL, NULL, NULL, NULL), QN_OK);
    return l;
}

/* ------------------------------------------------------------------------------------------ */
/* reference convolution / linear / embedding (linear = 1x1 conv on 1x1 images)                */
/* ------------------------------------------------------------------------------------------ */

/* Index into x of the input tap of weight column k of row o at output (oy, ox), -1 if padding. */
static long tap(const shape *s, size_t n, size_t o, size_t k, size_t oy, size_t ox)
{
    size_t cin_g = s->in / s->groups, cout_g = s->out / s->groups, khw = s->kh * s->kw;
    size_t g = o / cout_g, c = k / khw, r = k % khw, ky = r / s->kw, kx = r % s->kw;
    long iy = (long)(oy * s->sh + ky * s->dh) - (long)s->ph;
    long ix = (long)(ox * s->sw + kx * s->dw) - (long)s->pw;
    if (iy < 0 || ix < 0 || iy >= (long)s->H || ix >= (long)s->W)
        return -1;
    return (long)((((n * s->in + g * cin_g + c) * s->H) + (size_t)iy) * s->W + (size_t)ix);
}

static size_t yidx(const shape *s, size_t n, size_t o, size_t oy, size_t ox)
{
    return ((n * s->out + o) * s->OH + oy) * s->OW + ox;
}

/* y = forward with weight weff (rows x cols); mag = sum of |terms| (error scale). */
static void ref_forward(const shape *s, const double *weff, const float *bias, size_t batch, const void *x,
                        double *y, double *mag)
{
    size_t n, o, oy, ox, k;
    if (s->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        for (n = 0; n < batch; n++)
            for (k = 0; k < s->cols; k++) {
                y[n * s->cols + k] = weff[(size_t)idx[n] * s->cols + k];
                mag[n * s->cols + k] = fabs(y[n * s->cols + k]);
            }
        return;
    }
    for (n = 0; n < batch; n++)
        for (o = 0; o < s->out; o++)
            for (oy = 0; oy < s->OH; oy++)
                for (ox = 0; ox < s->OW; ox++) {
                    const float *xf = (const float *)x;
                    double acc = bias ? (double)bias[o] : 0.0, m = bias ? fabs((double)bias[o]) : 0.0;
                    for (k = 0; k < s->cols; k++) {
                        long t = tap(s, n, o, k, oy, ox);
                        double v;
                        if (t < 0)
                            continue;
                        v = weff[o * s->cols + k] * (double)xf[t];
                        acc += v;
                        m += fabs(v);
                    }
                    y[yidx(s, n, o, oy, ox)] = acc;
                    mag[yidx(s, n, o, oy, ox)] = m;
                }
}

/*
 * Backward: dx = dy W_eff (if dx), gw += fac (.) (dy^T x), db += sum dy. All outputs
 * (and their magnitudes) must be zeroed by the caller.
 */
static void ref_backward(const shape *s, const double *weff, const double *fac, size_t batch, const void *x,
                         const float *dy, double *dx, double *dxm, double *gw, double *gwm, double *db,
                         double *dbm)
{
    size_t n, o, oy, ox, k;
    if (s->kind == QN_LAYER_EMBEDDING) {
        const int64_t *idx = (const int64_t *)x;
        for (n = 0; n < batch; n++)
            for (k = 0; k < s->cols; k++) {
                size_t w = (size_t)idx[n] * s->cols + k;
                gw[w] += fac[w] * (double)dy[n * s->cols + k];
                gwm[w] += fabs(fac[w] * (double)dy[n * s->cols + k]);
            }
        return;
    }
    for (n = 0; n < batch; n++)
        for (o = 0; o < s->out; o++)
            for (oy = 0; oy < s->OH; oy++)
                for (ox = 0; ox < s->OW; ox++) {
                    const float *xf = (const float *)x;
                    double g = dy[yidx(s, n, o, oy, ox)];
                    db[o] += g;
                    dbm[o] += fabs(g);
                    for (k = 0; k < s->cols; k++) {
                        long t = tap(s, n, o, k, oy, ox);
                        size_t w = o * s->cols + k;
                        if (t < 0)
                            continue;
                        if (dx) {
                            dx[t] += weff[w] * g;
                            dxm[t] += fabs(weff[w] * g);
                        }
                        gw[w] += fac[w] * g * (double)xf[t];
                        gwm[w] += fabs(fac[w] * g * (double)xf[t]);
                    }
                }
}

/* |got - ref| <= rtol * mag + atol for every element. */
static void cmp_arr(const char *desc, const char *what, const float *got, const double *ref,
                    const double *mag, size_t n, double rtol, double atol)
{
    size_t i;
    for (i = 0; i < n; i++) {
        double e = fabs((double)got[i] - ref[i]), tol = rtol * mag[i] + atol;
        ck_assert_msg(e <= tol, "%s: %s[%zu]: expected %.9g, got %.9g (|err| %.3g > tol %.3g)", desc, what, i,
                      ref[i], (double)got[i], e, tol);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* reference noise                                                                             */
/* ------------------------------------------------------------------------------------------ */

typedef struct noise {
    qn_noise_kind kind;
    float p;
    size_t bs;
    uint64_t seed, lid;
    qn_grad_mode gm;
    unsigned bits;   /* SCALAR: 0 = defaults (8 bits, min-max affine, 1000) */
    uint32_t update; /* SCALAR/PQ update_step when bits/K set */
    size_t K;        /* PQ: 0 = defaults */
} noise;

static const char *kind_name(qn_noise_kind k)
{
    switch (k) {
    case QN_NOISE_NONE:
        return "NONE";
    case QN_NOISE_PROXY:
        return "PROXY";
    case QN_NOISE_SCALAR:
        return "SCALAR";
    case QN_NOISE_PQ:
        return "PQ";
    }
    return "?";
}

static void describe(char *buf, size_t n, const shape *s, const noise *nz, size_t batch, uint64_t step)
{
    char sb[300];
    describe_shape(sb, sizeof sb, s);
    snprintf(buf, n, "%s noise=%s p=%.9g bs=%zu seed=%llu lid=%llu grad=%s bits=%u K=%zu batch=%zu step=%llu",
             sb, kind_name(nz->kind), (double)nz->p, nz->bs, (unsigned long long)nz->seed,
             (unsigned long long)nz->lid, nz->gm == QN_GRAD_STE ? "STE" : "DropConnect",
             nz->bits ? nz->bits : 8u, nz->K, batch, (unsigned long long)step);
}

static void configure(qn_layer *l, const noise *nz)
{
    ck_assert_int_eq(qn_layer_set_noise(l, nz->kind, nz->p, nz->bs), QN_OK);
    ck_assert_int_eq(qn_layer_set_seed(l, nz->seed, nz->lid), QN_OK);
    ck_assert_int_eq(qn_layer_set_grad_mode(l, nz->gm), QN_OK);
    if (nz->kind == QN_NOISE_SCALAR && nz->bits)
        ck_assert_int_eq(qn_layer_set_scalar_noise(l, nz->bits, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE,
                                                   nz->update ? nz->update : 1000),
                         QN_OK);
    if (nz->kind == QN_NOISE_PQ && nz->K)
        ck_assert_int_eq(qn_layer_set_pq_noise(l, nz->K, 15, nz->update ? nz->update : 1000), QN_OK);
}

/* Affine (or per-row) min-max qparams and the fake quantization of observer.h. */
typedef struct qp {
    float s;
    int32_t z, qmin, qmax;
} qp;

static qp ref_qparams(const float *w, size_t n, unsigned bits)
{
    qp q;
    float mn = 0.0f, mx = 0.0f, zf;
    size_t i;
    for (i = 0; i < n; i++) {
        if (w[i] < mn)
            mn = w[i];
        if (w[i] > mx)
            mx = w[i];
    }
    q.qmin = 0;
    q.qmax = (int32_t)((1u << bits) - 1u);
    q.s = (mx - mn) / (float)(q.qmax - q.qmin);
    if (!(q.s >= FLT_EPSILON))
        q.s = FLT_EPSILON;
    zf = (float)q.qmin - nearbyintf(mn / q.s);
    if (zf < (float)q.qmin)
        zf = (float)q.qmin;
    if (zf > (float)q.qmax)
        zf = (float)q.qmax;
    q.z = (int32_t)zf;
    return q;
}

static float ref_fq(float w, qp q)
{
    float v = nearbyintf(w * (1.0f / q.s)) + (float)q.z;
    if (v < (float)q.qmin)
        v = (float)q.qmin;
    if (v > (float)q.qmax)
        v = (float)q.qmax;
    return (v - (float)q.z) * q.s;
}
static float q_lo(qp q)
{
    return ((float)q.qmin - (float)q.z) * q.s;
}
static float q_hi(qp q)
{
    return ((float)q.qmax - (float)q.z) * q.s;
}

/* Is w*(1/s) within 1e-3 of a half-integer (where rounding may legitimately differ)? */
static int near_tie(float w, float s)
{
    double t = (double)(w * (1.0f / s));
    double f = t - floor(t);
    return fabs(f - 0.5) < 1e-3;
}

/*
 * Reference W_eff and gradient factor of step. For PQ the noised W_eff is unknown
 * (NaN). band[i] = 1 marks SCALAR weights outside [lo, hi] whose rounded code is still
 * inside [qmin, qmax] (PyTorch's fake-quant STE would pass them; the contract zeroes them).
 */
static void ref_weff(const shape *s, const float *W, const noise *nz, uint64_t step, qp q, double *weff,
                     double *fac, unsigned char *noised_blk, unsigned char *band)
{
    size_t nbr = s->cols / nz->bs, r, j, t;
    float lo = q_lo(q), hi = q_hi(q);
    for (r = 0; r < s->rows; r++)
        for (j = 0; j < nbr; j++) {
            size_t b = r * nbr + j;
            int nsd = nz->kind != QN_NOISE_NONE && qn_rng_block_noised(nz->seed, nz->lid, step, b, nz->p);
            if (noised_blk)
                noised_blk[b] = (unsigned char)nsd;
            for (t = 0; t < nz->bs; t++) {
                size_t i = r * s->cols + j * nz->bs + t;
                float w = W[i];
                if (band)
                    band[i] = 0;
                if (nz->kind == QN_NOISE_NONE || (!nsd && nz->kind != QN_NOISE_PROXY)) {
                    weff[i] = w;
                    fac[i] = 1.0;
                } else if (nz->kind == QN_NOISE_PROXY) {
                    if (nsd) {
                        weff[i] = 0.0;
                        fac[i] = nz->gm == QN_GRAD_STE ? 1.0 : 0.0;
                    } else {
                        weff[i] = (double)w / (1.0 - (double)nz->p);
                        fac[i] = 1.0 / (1.0 - (double)nz->p);
                    }
                } else if (nz->kind == QN_NOISE_SCALAR) {
                    int inside = lo <= w && w <= hi;
                    weff[i] = ref_fq(w, q);
                    fac[i] = (nz->gm == QN_GRAD_STE && inside) ? 1.0 : 0.0;
                    if (band && !inside) {
                        float c = nearbyintf(w * (1.0f / q.s)) + (float)q.z;
                        band[i] = c >= (float)q.qmin && c <= (float)q.qmax;
                    }
                } else { /* PQ, noised */
                    weff[i] = NAN;
                    fac[i] = nz->gm == QN_GRAD_STE ? 1.0 : 0.0;
                }
            }
        }
}

/* ------------------------------------------------------------------------------------------ */
/* recovering W_eff through forward_noisy on one-hot inputs                                    */
/* ------------------------------------------------------------------------------------------ */

/* First output position whose taps are all inside the input (1 if it exists). */
static int interior(const shape *s, size_t *oy, size_t *ox)
{
    size_t y0 = (s->ph + s->sh - 1) / s->sh, x0 = (s->pw + s->sw - 1) / s->sw;
    if (y0 >= s->OH || x0 >= s->OW)
        return 0;
    if (y0 * s->sh - s->ph + (s->kh - 1) * s->dh >= s->H)
        return 0;
    if (x0 * s->sw - s->pw + (s->kw - 1) * s->dw >= s->W)
        return 0;
    *oy = y0;
    *ox = x0;
    return 1;
}

/*
 * weff_out (rows x cols) = the W_eff the library uses at `step`, read from
 * forward_noisy(step) on one-hot inputs (the bias, if any, is zeroed meanwhile:
 * then every output is 1*w + 0 + ... exactly). This is one noisy forward.
 */
static void probe_weff(qn_layer *l, const shape *s, float *bias, uint64_t step, float *weff_out,
                       const char *desc)
{
    size_t nb = n_bias(s), batch, i, o;
    float *bsave = NULL, *xf = NULL, *y;
    int64_t *xi = NULL;
    if (bias && nb) {
        bsave = falloc(nb);
        memcpy(bsave, bias, nb * sizeof(float));
        fill_val(bias, nb, 0.0f);
    }
    if (s->kind == QN_LAYER_EMBEDDING) {
        batch = s->rows;
        xi = (int64_t *)xmalloc(batch * sizeof(int64_t));
        for (i = 0; i < batch; i++)
            xi[i] = (int64_t)i;
        y = falloc(batch * s->cols);
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, xi, y, step), QN_OK);
        memcpy(weff_out, y, batch * s->cols * sizeof(float));
    } else if (s->kind == QN_LAYER_LINEAR) {
        batch = s->in;
        xf = falloc(batch * s->in);
        fill_val(xf, batch * s->in, 0.0f);
        for (i = 0; i < batch; i++)
            xf[i * s->in + i] = 1.0f;
        y = falloc(batch * s->out);
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, xf, y, step), QN_OK);
        for (o = 0; o < s->out; o++)
            for (i = 0; i < s->in; i++)
                weff_out[o * s->in + i] = y[i * s->out + o];
    } else {
        size_t oy, ox, khw = s->kh * s->kw, cin_g = s->in / s->groups, cout_g = s->out / s->groups;
        ck_assert_msg(interior(s, &oy, &ox), "%s: probe needs an interior output position", desc);
        batch = s->in * khw;
        xf = falloc(batch * in_ps(s));
        fill_val(xf, batch * in_ps(s), 0.0f);
        for (i = 0; i < batch; i++) {
            size_t c = i / khw, ky = (i % khw) / s->kw, kx = i % s->kw;
            size_t iy = oy * s->sh - s->ph + ky * s->dh, ix = ox * s->sw - s->pw + kx * s->dw;
            xf[((i * s->in + c) * s->H + iy) * s->W + ix] = 1.0f;
        }
        y = falloc(batch * out_ps(s));
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, xf, y, step), QN_OK);
        for (i = 0; i < batch; i++) {
            size_t c = i / khw, g = c / cin_g, k = (c - g * cin_g) * khw + i % khw;
            for (o = 0; o < s->out; o++) {
                float v = y[yidx(s, i, o, oy, ox)];
                if (o / cout_g == g)
                    weff_out[o * s->cols + k] = v;
                else
                    ck_assert_msg(v == 0.0f, "%s: output %zu of another group sees input channel %zu (%.9g)",
                                  desc, o, c, (double)v);
            }
        }
    }
    if (bsave) {
        memcpy(bias, bsave, nb * sizeof(float));
        free(bsave);
    }
    free(xf);
    free(xi);
    free(y);
}

/* A set of distinct vectors (the PQ centroids seen so far). */
typedef struct vset {
    float *v;
    size_t n, cap, dim;
} vset;

static void vset_add(vset *vs, const float *x)
{
    size_t i, t;
    for (i = 0; i < vs->n; i++) {
        for (t = 0; t < vs->dim; t++)
            if (vs->v[i * vs->dim + t] != x[t])
                break;
        if (t == vs->dim)
            return;
    }
    if (vs->n == vs->cap) {
        vs->cap = vs->cap ? 2 * vs->cap : 16;
        vs->v = (float *)realloc(vs->v, vs->cap * vs->dim * sizeof(float));
        ck_assert_ptr_nonnull(vs->v);
    }
    memcpy(vs->v + vs->n * vs->dim, x, vs->dim * sizeof(float));
    vs->n++;
}

/* Check the recovered W_eff against the noise contract (PQ: collect the noised blocks). */
static void check_weff(const shape *s, const noise *nz, const float *W, const float *got, const double *ref,
                       const unsigned char *noised_blk, qp q, vset *cents, const char *desc)
{
    size_t nbr = s->cols / nz->bs, r, j, t;
    for (r = 0; r < s->rows; r++)
        for (j = 0; j < nbr; j++) {
            size_t b = r * nbr + j, i0 = r * s->cols + j * nz->bs;
            int nsd = noised_blk[b];
            if (nz->kind == QN_NOISE_PQ && nsd)
                vset_add(cents, got + i0);
            for (t = 0; t < nz->bs; t++) {
                size_t i = i0 + t;
                float g = got[i], w = W[i];
                switch (nz->kind) {
                case QN_NOISE_NONE:
                    ck_assert_msg(g == w, "%s: W_eff[%zu] = %.9g, expected W = %.9g (no noise)", desc, i,
                                  (double)g, (double)w);
                    break;
                case QN_NOISE_PROXY:
                    if (nsd)
                        ck_assert_msg(g == 0.0f, "%s: block %zu noised: W_eff[%zu] = %.9g, expected 0", desc,
                                      b, i, (double)g);
                    else
                        ck_assert_msg(fabs((double)g - ref[i]) <= 1e-6 * fabs(ref[i]),
                                      "%s: block %zu kept: W_eff[%zu] = %.9g, expected W/(1-p) = %.9g", desc,
                                      b, i, (double)g, ref[i]);
                    break;
                case QN_NOISE_SCALAR:
                    if (!nsd) {
                        ck_assert_msg(g == w, "%s: block %zu kept: W_eff[%zu] = %.9g, expected W = %.9g",
                                      desc, b, i, (double)g, (double)w);
                    } else {
                        double e = fabs((double)g - ref[i]);
                        int ok = e <= 1e-6 * (double)q.s || (near_tie(w, q.s) && e <= 1.0001 * (double)q.s);
                        ck_assert_msg(ok,
                                      "%s: block %zu noised: W_eff[%zu] = %.9g, expected fq(%.9g) = %.9g "
                                      "(scale %.9g zero %d)",
                                      desc, b, i, (double)g, (double)w, ref[i], (double)q.s, (int)q.z);
                    }
                    break;
                case QN_NOISE_PQ:
                    if (!nsd)
                        ck_assert_msg(g == w, "%s: block %zu kept: W_eff[%zu] = %.9g, expected W = %.9g",
                                      desc, b, i, (double)g, (double)w);
                    else
                        ck_assert_msg(isfinite(g), "%s: PQ centroid value not finite at %zu", desc, i);
                    break;
                }
            }
        }
}

/* Check the exported mask of step against the rng.h recomputation. */
static void check_mask(qn_layer *l, const shape *s, const noise *nz, uint64_t step, const char *desc)
{
    size_t nb = 0, nbytes = 0, b, cnt = 0, got_cnt = 12345;
    uint8_t *bits;
    ck_assert_int_eq(qn_layer_mask_size(l, &nb, &nbytes), QN_OK);
    ck_assert_uint_eq(nb, n_weights(s) / nz->bs);
    ck_assert_uint_eq(nbytes, (nb + 7) / 8);
    bits = (uint8_t *)xmalloc(nbytes);
    memset(bits, 0xA5, nbytes);
    ck_assert_int_eq(qn_layer_export_mask(l, step, bits, nbytes, &got_cnt), QN_OK);
    for (b = 0; b < nb; b++) {
        int want = qn_rng_block_noised(nz->seed, nz->lid, step, b, nz->p);
        int got = (bits[b / 8] >> (b % 8)) & 1;
        cnt += (size_t)want;
        ck_assert_msg(got == want, "%s: mask bit %zu = %d, rng.h says %d", desc, b, got, want);
    }
    ck_assert_msg(got_cnt == cnt, "%s: n_noised %zu, expected %zu", desc, got_cnt, cnt);
    free(bits);
}

static void *make_input(const shape *s, size_t batch)
{
    size_t i;
    if (s->kind == QN_LAYER_EMBEDDING) {
        int64_t *x = (int64_t *)xmalloc(batch * sizeof(int64_t));
        for (i = 0; i < batch; i++)
            x[i] = (int64_t)urand(s->rows);
        if (batch >= 3)
            x[2] = x[0]; /* a repeated index: its gradients accumulate */
        if (batch >= 4)
            x[3] = (int64_t)(s->rows - 1);
        return x;
    } else {
        float *x = falloc(batch * in_ps(s));
        fill_rand(x, batch * in_ps(s));
        return x;
    }
}

/*
 * The main check: a layer of shape s with noise nz, for each step: mask, W_eff
 * (probe), forward_noisy, backward, forward, and W untouched.
 */
static void run_case(qn_context *ctx, const shape *s, const noise *nz, const uint64_t *steps, size_t nsteps,
                     size_t batch, int use_bias)
{
    size_t nw = n_weights(s), nb = n_bias(s), nin = batch * in_ps(s), nout = batch * out_ps(s);
    size_t nblk = nw / nz->bs, si, i;
    float *W = falloc(nw), *Wc = falloc(nw), *bias = NULL, *bc = NULL;
    float *weff_lib = falloc(nw), *y = falloc(nout), *y2 = falloc(nout), *dy = falloc(nout);
    float *dx = falloc(nin), *dW = falloc(nw), *dW0 = falloc(nw), *db = falloc(nb), *db0 = falloc(nb);
    double *weff = dzalloc(nw), *fac = dzalloc(nw), *wclean = dzalloc(nw), *yr = dzalloc(nout),
           *ym = dzalloc(nout);
    double *dxr = dzalloc(nin), *dxm = dzalloc(nin), *gw = dzalloc(nw), *gwm = dzalloc(nw),
           *dbr = dzalloc(nb), *dbm = dzalloc(nb);
    unsigned char *nblk_flag = (unsigned char *)xmalloc(nblk), *band = (unsigned char *)xmalloc(nw);
    vset cents = {NULL, 0, 0, nz->bs};
    qn_layer *l = make_layer(ctx, s);
    qp q;
    char desc[600];
    void *x;

    fill_rand(W, nw);
    memcpy(Wc, W, nw * sizeof(float));
    for (i = 0; i < nw; i++)
        wclean[i] = W[i];
    if (use_bias && nb) {
        bias = falloc(nb);
        bc = falloc(nb);
        fill_rand(bias, nb);
        memcpy(bc, bias, nb * sizeof(float));
    }
    ck_assert_int_eq(qn_layer_bind(l, W, bias), QN_OK);
    configure(l, nz);
    q = ref_qparams(W, nw, nz->bits ? nz->bits : 8);

    for (si = 0; si < nsteps; si++) {
        uint64_t step = steps[si];
        describe(desc, sizeof desc, s, nz, batch, step);
        ref_weff(s, W, nz, step, q, weff, fac, nblk_flag, band);
        if (nz->kind != QN_NOISE_NONE)
            check_mask(l, s, nz, step, desc);

        /* W_eff as the library sees it, checked, then used as the forward reference */
        probe_weff(l, s, bias, step, weff_lib, desc);
        check_weff(s, nz, W, weff_lib, weff, nblk_flag, q, &cents, desc);
        for (i = 0; i < nw; i++)
            weff[i] = weff_lib[i];
        ck_assert_msg(memcmp(W, Wc, nw * sizeof(float)) == 0, "%s: probe wrote W", desc);

        /* forward_noisy */
        x = make_input(s, batch);
        fill_val(y, nout, NAN);
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, step), QN_OK);
        ref_forward(s, weff, bias, batch, x, yr, ym);
        cmp_arr(desc, "forward_noisy y", y, yr, ym, nout, 1e-5, 1e-6);
        ck_assert_msg(memcmp(W, Wc, nw * sizeof(float)) == 0, "%s: forward_noisy wrote W", desc);
        if (bias)
            ck_assert_msg(memcmp(bias, bc, nb * sizeof(float)) == 0, "%s: forward_noisy wrote bias", desc);

        /* backward of that step: dx overwritten (garbage in), dW/db accumulate */
        fill_rand(dy, nout);
        fill_val(dx, nin, NAN);
        fill_rand(dW0, nw);
        memcpy(dW, dW0, nw * sizeof(float));
        fill_rand(db0, nb);
        memcpy(db, db0, nb * sizeof(float));
        memset(dxr, 0, nin * sizeof(double));
        memset(dxm, 0, nin * sizeof(double));
        memset(gw, 0, nw * sizeof(double));
        memset(gwm, 0, nw * sizeof(double));
        memset(dbr, 0, nb * sizeof(double));
        memset(dbm, 0, nb * sizeof(double));
        ck_assert_int_eq(qn_layer_backward(l, batch, x, dy, s->kind == QN_LAYER_EMBEDDING ? NULL : dx, dW,
                                           bias ? db : NULL, step),
                         QN_OK);
        ref_backward(s, weff, fac, batch, x, dy, s->kind == QN_LAYER_EMBEDDING ? NULL : dxr, dxm, gw, gwm,
                     dbr, dbm);
        if (s->kind != QN_LAYER_EMBEDDING)
            cmp_arr(desc, "backward dx", dx, dxr, dxm, nin, 1e-5, 1e-6);
        for (i = 0; i < nw; i++) {
            double want = (double)dW0[i] + gw[i], e = fabs((double)dW[i] - want);
            double tol = 1e-5 * (fabs((double)dW0[i]) + gwm[i]) + 1e-6;
            ck_assert_msg(e <= tol,
                          "%s: backward dW[%zu] (block %zu, %s): expected %.9g + %.9g = %.9g, got %.9g; "
                          "W = %.9g, factor %.9g%s",
                          desc, i, i / nz->bs, nblk_flag[i / nz->bs] ? "noised" : "kept", (double)dW0[i],
                          gw[i], want, (double)dW[i], (double)W[i], fac[i],
                          band[i] ? " (W outside [lo,hi] but its rounded code is inside [qmin,qmax])" : "");
        }
        if (bias) {
            for (i = 0; i < nb; i++) {
                dbr[i] += db0[i];
                dbm[i] += fabs((double)db0[i]);
            }
            cmp_arr(desc, "backward db", db, dbr, dbm, nb, 1e-5, 1e-6);
        }
        ck_assert_msg(memcmp(W, Wc, nw * sizeof(float)) == 0, "%s: backward wrote W", desc);

        /* eval forward: clean weights, never a mask */
        fill_val(y2, nout, NAN);
        ck_assert_int_eq(qn_layer_forward(l, batch, x, y2), QN_OK);
        ref_forward(s, wclean, bias, batch, x, yr, ym);
        cmp_arr(desc, "forward y", y2, yr, ym, nout, 1e-5, 1e-6);
        if (nz->kind == QN_NOISE_NONE || nz->p == 0.0f) {
            fill_val(y, nout, NAN);
            ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, step), QN_OK);
            for (i = 0; i < nout; i++)
                ck_assert_msg(y[i] == y2[i], "%s: forward_noisy y[%zu] = %.9g != forward %.9g", desc, i,
                              (double)y[i], (double)y2[i]);
        }
        ck_assert_msg(memcmp(W, Wc, nw * sizeof(float)) == 0, "%s: forward wrote W", desc);
        free(x);
    }
    if (nz->kind == QN_NOISE_PQ) {
        size_t K = nz->K ? nz->K : (nblk < 256 ? nblk : 256);
        ck_assert_msg(cents.n <= K, "%s: %zu distinct noised blocks over %zu steps, at most K = %zu", desc,
                      cents.n, nsteps, K);
    }
    qn_layer_destroy(l);
    free(cents.v);
    free(W), free(Wc), free(bias), free(bc), free(weff_lib), free(y), free(y2), free(dy), free(dx);
    free(dW), free(dW0), free(db), free(db0), free(weff), free(fac), free(wclean), free(yr), free(ym);
    free(dxr), free(dxm), free(gw), free(gwm), free(dbr), free(dbm), free(nblk_flag), free(band);
}

static const uint64_t STEPS[] = {0, 7, 0x123456789abull};
#define NSTEPS (sizeof STEPS / sizeof STEPS[0])

/* Every noise kind x grad mode on one shape, with one block size. */
static void run_all_noises(qn_context *ctx, const shape *s, size_t bs, size_t batch, unsigned bits)
{
    static const qn_noise_kind kinds[] = {QN_NOISE_NONE, QN_NOISE_PROXY, QN_NOISE_SCALAR, QN_NOISE_PQ};
    size_t ki, gi, nblk = n_weights(s) / bs;
    for (ki = 0; ki < 4; ki++)
        for (gi = 0; gi < 2; gi++) {
            noise nz;
            memset(&nz, 0, sizeof nz);
            nz.kind = kinds[ki];
            nz.p = gi ? 0.5f : 0.3f;
            nz.bs = bs;
            nz.seed = 0x5eedull + ki;
            nz.lid = 3 + gi;
            nz.gm = gi ? QN_GRAD_DROPCONNECT : QN_GRAD_STE;
            if (nz.kind == QN_NOISE_SCALAR)
                nz.bits = gi ? bits : 0;
            if (nz.kind == QN_NOISE_PQ) {
                if (nblk < 2)
                    continue;
                nz.K = nblk < 4 ? nblk : 4;
            }
            run_case(ctx, s, &nz, STEPS, NSTEPS, batch, 1);
        }
    /* p = 0: forward_noisy == forward for every kind (checked inside run_case) */
    for (ki = 1; ki < 4; ki++) {
        noise nz;
        memset(&nz, 0, sizeof nz);
        nz.kind = kinds[ki];
        nz.p = 0.0f;
        nz.bs = bs;
        nz.seed = 99;
        nz.lid = 1;
        nz.gm = QN_GRAD_STE;
        if (nz.kind == QN_NOISE_PQ) {
            if (nblk < 2)
                continue;
            nz.K = 2;
        }
        run_case(ctx, s, &nz, STEPS, 1, batch, ki != 2);
    }
}

/* A random divisor of n. */
static size_t rand_divisor(size_t n)
{
    size_t d[64], nd = 0, i;
    for (i = 1; i <= n && nd < 64; i++)
        if (n % i == 0)
            d[nd++] = i;
    return d[urand(nd)];
}

/* ------------------------------------------------------------------------------------------ */
/* linear / conv2d / embedding                                                                 */
/* ------------------------------------------------------------------------------------------ */

START_TEST(linear_fixed_shapes)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(24, 13);
    sm_state = 101;
    run_all_noises(ctx, &s, 4, 3, 4);
    run_all_noises(ctx, &s, 8, 5, 3);
    {
        /* large enough for blocked / threaded GEMM paths */
        shape big = shape_linear(128, 67);
        run_all_noises(ctx, &big, 8, 9, 6);
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(linear_random_shapes)
{
    static const size_t bss[] = {1, 2, 3, 4, 5, 8};
    qn_context *ctx = new_ctx();
    int it;
    sm_state = 202;
    for (it = 0; it < 12; it++) {
        size_t bs = bss[urand(6)], in = bs * (1 + urand(5)), out = 2 + urand(12);
        shape s = shape_linear(in, out);
        run_all_noises(ctx, &s, it % 6 == 5 ? in : bs, 1 + urand(5), (unsigned)(2 + urand(7)));
    }
    /* no bias, dx NULL */
    {
        shape s = shape_linear(7, 3);
        float W[21], x[14], y[6], dy[6], dW[21];
        qn_layer *l = make_layer(ctx, &s);
        fill_rand(W, 21);
        fill_rand(x, 14);
        fill_rand(dy, 6);
        fill_val(dW, 21, 0.0f);
        ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_forward(l, 2, x, y), QN_OK);
        ck_assert_int_eq(qn_layer_backward(l, 2, x, dy, NULL, dW, NULL, 0), QN_OK);
        ck_assert(fabsf(dW[0] - (dy[0] * x[0] + dy[3] * x[7])) <= 1e-6f);
        qn_layer_destroy(l);
    }
    qn_context_destroy(ctx);
}
END_TEST

static shape conv_main(void)
{
    /* in 4, out 6, k 3x3, groups 2, stride 2, padding 1, dilation 2, input 7x8 */
    return shape_conv(4, 6, 3, 3, 2, 2, 1, 1, 2, 2, 2, 7, 8);
}

START_TEST(conv2d_fixed_shapes)
{
    qn_context *ctx = new_ctx();
    shape s = conv_main(), s1 = shape_conv(8, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, 5, 3);
    sm_state = 303;
    ck_assert_uint_eq(s.OH, 3);
    ck_assert_uint_eq(s.OW, 3);
    run_all_noises(ctx, &s, 3, 2, 5);
    run_all_noises(ctx, &s, 6, 1, 2);
    run_all_noises(ctx, &s1, 4, 3, 8); /* 1x1 conv, block size 4 */
    {
        shape big = shape_conv(8, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 12, 11);
        run_all_noises(ctx, &big, 9, 2, 7);
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(conv2d_random_shapes)
{
    qn_context *ctx = new_ctx();
    int it;
    sm_state = 404;
    for (it = 0; it < 16; it++) {
        size_t groups = 1 + urand(3), cin_g = 1 + urand(3), cout_g = 1 + urand(3);
        size_t kh = 1 + urand(3), kw = 1 + urand(3), sh = 1 + urand(3), sw = 1 + urand(3);
        size_t ph = urand(3), pw = urand(3), dh = 1 + urand(2), dw = 1 + urand(2);
        size_t y0 = (ph + sh - 1) / sh, x0 = (pw + sw - 1) / sw;
        size_t H = y0 * sh - ph + (kh - 1) * dh + 1 + urand(4);
        size_t W = x0 * sw - pw + (kw - 1) * dw + 1 + urand(4);
        shape s;
        if (cout_g * groups < 2)
            cout_g = 2;
        s = shape_conv(groups * cin_g, groups * cout_g, kh, kw, sh, sw, ph, pw, dh, dw, groups, H, W);
        run_all_noises(ctx, &s, rand_divisor(s.cols), 1 + urand(3), (unsigned)(2 + urand(7)));
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(embedding_fixed_and_random_shapes)
{
    qn_context *ctx = new_ctx();
    shape s = shape_emb(50, 16);
    int it;
    sm_state = 505;
    run_all_noises(ctx, &s, 4, 9, 4);
    run_all_noises(ctx, &s, 16, 6, 8);
    for (it = 0; it < 10; it++) {
        size_t bs = 1 + urand(5), dim = bs * (1 + urand(4)), num = 2 + urand(30);
        shape r = shape_emb(num, dim);
        run_all_noises(ctx, &r, bs, 1 + urand(8), (unsigned)(2 + urand(7)));
    }
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* masks                                                                                       */
/* ------------------------------------------------------------------------------------------ */

static uint8_t *export_mask(qn_layer *l, uint64_t step, size_t *nbytes_out, size_t *cnt)
{
    size_t nb = 0, nbytes = 0;
    uint8_t *bits;
    ck_assert_int_eq(qn_layer_mask_size(l, &nb, &nbytes), QN_OK);
    bits = (uint8_t *)xmalloc(nbytes);
    memset(bits, 0, nbytes);
    ck_assert_int_eq(qn_layer_export_mask(l, step, bits, nbytes, cnt), QN_OK);
    *nbytes_out = nbytes;
    return bits;
}

START_TEST(masks_match_rng_contract)
{
    qn_context *ctx = new_ctx();
    static const float ps[] = {0.0f, 1e-3f, 0.1f, 0.5f, 0.999f};
    shape shapes[3];
    size_t bss[3] = {8, 3, 4}, si, pi, ti;
    static const uint64_t steps[] = {0, 1, 2, 1000, 0xFFFFFFFFull, 0x100000000ull, 0xFFFFFFFFFFFFFFFFull};
    shapes[0] = shape_linear(24, 13); /* 39 blocks: not a multiple of 4 or 8 */
    shapes[1] = conv_main();          /* 6 x 18, bs 3: 36 blocks */
    shapes[2] = shape_emb(50, 16);    /* 200 blocks */
    sm_state = 606;
    for (si = 0; si < 3; si++) {
        qn_layer *l = make_layer(ctx, &shapes[si]);
        float *W = falloc(n_weights(&shapes[si]));
        fill_rand(W, n_weights(&shapes[si]));
        ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
        for (pi = 0; pi < 5; pi++)
            for (ti = 0; ti < sizeof steps / sizeof steps[0]; ti++) {
                noise nz;
                char desc[600];
                memset(&nz, 0, sizeof nz);
                nz.kind = pi % 2 ? QN_NOISE_PROXY : QN_NOISE_SCALAR;
                nz.p = ps[pi];
                nz.bs = bss[si];
                nz.seed = 0xDEADBEEFCAFEull + pi;
                nz.lid = ti % 2 ? 0xFFFFFFFF00000001ull : ti;
                configure(l, &nz);
                describe(desc, sizeof desc, &shapes[si], &nz, 0, steps[ti]);
                check_mask(l, &shapes[si], &nz, steps[ti], desc);
            }
        qn_layer_destroy(l);
        free(W);
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(masks_deterministic_and_distinct)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(16, 250); /* 1000 blocks of 4 */
    qn_layer *a = make_layer(ctx, &s), *b = make_layer(ctx, &s);
    float *W = falloc(n_weights(&s)), *xa = falloc(3 * 16), *ya = falloc(3 * 250), *yb = falloc(3 * 250);
    size_t nbytes, c1, c2, c3, c4;
    uint8_t *m1, *m2, *m3, *m4, *m5;
    sm_state = 707;
    fill_rand(W, n_weights(&s));
    fill_rand(xa, 3 * 16);
    ck_assert_int_eq(qn_layer_bind(a, W, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(b, W, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(a, QN_NOISE_PROXY, 0.5f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(b, QN_NOISE_PROXY, 0.5f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_seed(a, 42, 9), QN_OK);
    ck_assert_int_eq(qn_layer_set_seed(b, 42, 9), QN_OK);
    /* same (seed, id, step) on two layers: same mask, same noisy output */
    m1 = export_mask(a, 5, &nbytes, &c1);
    m2 = export_mask(b, 5, &nbytes, &c2);
    ck_assert(memcmp(m1, m2, nbytes) == 0 && c1 == c2);
    ck_assert_int_eq(qn_layer_forward_noisy(a, 3, xa, ya, 5), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(b, 3, xa, yb, 5), QN_OK);
    ck_assert(memcmp(ya, yb, 3 * 250 * sizeof(float)) == 0);
    /* repeated export: same */
    m3 = export_mask(a, 5, &nbytes, &c3);
    ck_assert(memcmp(m1, m3, nbytes) == 0);
    free(m3);
    /* other step, other layer id, other seed: different */
    m3 = export_mask(a, 6, &nbytes, &c3);
    ck_assert_msg(memcmp(m1, m3, nbytes) != 0, "steps 5 and 6 give the same mask");
    ck_assert_int_eq(qn_layer_set_seed(b, 42, 10), QN_OK);
    m4 = export_mask(b, 5, &nbytes, &c4);
    ck_assert_msg(memcmp(m1, m4, nbytes) != 0, "layer ids 9 and 10 give the same mask");
    ck_assert_int_eq(qn_layer_set_seed(b, 43, 9), QN_OK);
    m5 = export_mask(b, 5, &nbytes, &c4);
    ck_assert_msg(memcmp(m1, m5, nbytes) != 0, "seeds 42 and 43 give the same mask");
    /* forward_noisy at different steps differs */
    ck_assert_int_eq(qn_layer_forward_noisy(a, 3, xa, yb, 6), QN_OK);
    ck_assert(memcmp(ya, yb, 3 * 250 * sizeof(float)) != 0);
    /* n_noised may be NULL; a short buffer is refused and left alone */
    {
        uint8_t small[124];
        memset(small, 0x5A, sizeof small);
        ck_assert_int_eq(qn_layer_export_mask(a, 5, m3, nbytes, NULL), QN_OK);
        ck_assert(memcmp(m1, m3, nbytes) == 0);
        ck_assert_uint_eq(nbytes, 125);
        ck_assert_int_eq(qn_layer_export_mask(a, 5, small, sizeof small, &c3), QN_ERR_BUFFER_TOO_SMALL);
        for (c3 = 0; c3 < sizeof small; c3++)
            ck_assert_uint_eq(small[c3], 0x5A);
        ck_assert_int_eq(qn_layer_export_mask(a, 5, NULL, nbytes, NULL), QN_ERR_INVALID_ARG);
    }
    free(m1), free(m2), free(m3), free(m4), free(m5);
    qn_layer_destroy(a);
    qn_layer_destroy(b);
    free(W), free(xa), free(ya), free(yb);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(masks_threshold_is_strict)
{
    /*
     * Block b is noised iff u < p (strict): with p = u(b) exactly the block is kept,
     * with the next float above it is noised. Under every ISA cap (the mask kernels).
     */
    shape s = shape_linear(20, 9); /* 45 blocks of 4 */
    float W[180];
    int cap;
    fill_val(W, 180, 0.25f);
    for (cap = QN_ISA_SCALAR; cap <= QN_ISA_AVX512; cap++) {
        qn_context *c = NULL;
        qn_layer *l;
        size_t b;
        ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, (qn_isa)cap, &c),
                         QN_OK);
        l = make_layer(c, &s);
        ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_set_seed(l, 31337, 4), QN_OK);
        for (b = 0; b < 45; b += 3) {
            uint64_t step = 1000 + b;
            float u = qn_rng_block_uniform(31337, 4, step, b), ps[2];
            int k;
            ps[0] = u;
            ps[1] = nextafterf(u, 1.0f);
            for (k = 0; k < 2; k++) {
                uint8_t bits[6];
                size_t cnt = 0, i, want = 0;
                if (!(ps[k] < 1.0f))
                    continue;
                ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, ps[k], 4), QN_OK);
                memset(bits, 0, sizeof bits);
                ck_assert_int_eq(qn_layer_export_mask(l, step, bits, sizeof bits, &cnt), QN_OK);
                ck_assert_msg(((bits[b / 8] >> (b % 8)) & 1) == k,
                              "ISA cap %d: block %zu with u = %.9g at p = %.9g: bit %d, expected %d (u < p)",
                              cap, b, (double)u, (double)ps[k], (bits[b / 8] >> (b % 8)) & 1, k);
                for (i = 0; i < 45; i++) {
                    int w = qn_rng_block_noised(31337, 4, step, i, ps[k]);
                    want += (size_t)w;
                    ck_assert_msg(((bits[i / 8] >> (i % 8)) & 1) == w, "ISA cap %d: p = %.9g bit %zu", cap,
                                  (double)ps[k], i);
                }
                ck_assert_uint_eq(cnt, want);
            }
        }
        /* the largest p below 1 */
        {
            float pmax = nextafterf(1.0f, 0.0f);
            noise nz;
            char desc[600];
            memset(&nz, 0, sizeof nz);
            nz.kind = QN_NOISE_PROXY;
            nz.p = pmax;
            nz.bs = 4;
            nz.seed = 31337;
            nz.lid = 4;
            ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, pmax, 4), QN_OK);
            describe(desc, sizeof desc, &s, &nz, 0, 3);
            check_mask(l, &s, &nz, 3, desc);
        }
        qn_layer_destroy(l);
        qn_context_destroy(c);
    }
}
END_TEST

START_TEST(masks_dropped_fraction)
{
    /*
     * 200 steps x 1000 blocks at p = 0.1: N = 200000 Bernoulli(0.1) draws (independent
     * by the counter-based contract), so the dropped fraction has mean 0.1 and
     * sigma = sqrt(0.1 * 0.9 / 200000) = 6.7e-4; we accept |fraction - 0.1| <= 6 sigma = 4.0e-3.
     */
    qn_context *ctx = new_ctx();
    shape s = shape_linear(16, 250);
    qn_layer *l = make_layer(ctx, &s);
    float *W = falloc(n_weights(&s));
    size_t total = 0, nbytes, cnt, step, b;
    double frac, sigma = sqrt(0.1 * 0.9 / 200000.0);
    fill_val(W, n_weights(&s), 0.5f);
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.1f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_seed(l, 2024, 1), QN_OK);
    for (step = 0; step < 200; step++) {
        uint8_t *m = export_mask(l, step, &nbytes, &cnt);
        size_t pop = 0;
        for (b = 0; b < 1000; b++)
            pop += (m[b / 8] >> (b % 8)) & 1u;
        ck_assert_uint_eq(pop, cnt);
        total += cnt;
        free(m);
    }
    frac = (double)total / 200000.0;
    ck_assert_msg(fabs(frac - 0.1) <= 6.0 * sigma, "dropped fraction %.6f, expected 0.1 +- %.6f", frac,
                  6.0 * sigma);
    qn_layer_destroy(l);
    free(W);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(masks_same_under_every_isa_cap)
{
    qn_context *ref = new_ctx();
    shape shapes[3];
    size_t bss[3] = {4, 3, 4}, si;
    int cap;
    shapes[0] = shape_linear(24, 13);
    shapes[1] = conv_main();
    shapes[2] = shape_emb(50, 16);
    sm_state = 808;
    for (si = 0; si < 3; si++) {
        const shape *s = &shapes[si];
        size_t nw = n_weights(s), batch = 3, nout = batch * out_ps(s), i;
        float *W = falloc(nw), *bias = falloc(s->out ? s->out : 1), *y0 = falloc(nout), *y1 = falloc(nout);
        void *x = make_input(s, batch);
        qn_layer *l0 = make_layer(ref, s);
        fill_rand(W, nw);
        fill_rand(bias, s->out ? s->out : 1);
        ck_assert_int_eq(qn_layer_bind(l0, W, s->kind == QN_LAYER_EMBEDDING ? NULL : bias), QN_OK);
        ck_assert_int_eq(qn_layer_set_noise(l0, QN_NOISE_PROXY, 0.4f, bss[si]), QN_OK);
        ck_assert_int_eq(qn_layer_set_seed(l0, 77, si), QN_OK);
        for (cap = QN_ISA_SCALAR; cap <= QN_ISA_AVX512; cap++) {
            qn_context *c = NULL;
            qn_layer *l1;
            uint64_t step;
            ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, (qn_isa)cap, &c),
                             QN_OK);
            l1 = make_layer(c, s);
            ck_assert_int_eq(qn_layer_bind(l1, W, s->kind == QN_LAYER_EMBEDDING ? NULL : bias), QN_OK);
            ck_assert_int_eq(qn_layer_set_noise(l1, QN_NOISE_PROXY, 0.4f, bss[si]), QN_OK);
            ck_assert_int_eq(qn_layer_set_seed(l1, 77, si), QN_OK);
            for (step = 0; step < 20; step += 3) {
                size_t nbytes, c0, c1;
                uint8_t *m0 = export_mask(l0, step, &nbytes, &c0), *m1 = export_mask(l1, step, &nbytes, &c1);
                noise nz;
                char desc[600];
                memset(&nz, 0, sizeof nz);
                nz.kind = QN_NOISE_PROXY;
                nz.p = 0.4f;
                nz.bs = bss[si];
                nz.seed = 77;
                nz.lid = si;
                describe(desc, sizeof desc, s, &nz, batch, step);
                ck_assert_msg(memcmp(m0, m1, nbytes) == 0 && c0 == c1, "%s: ISA cap %d changes the mask",
                              desc, cap);
                check_mask(l1, s, &nz, step, desc);
                ck_assert_int_eq(qn_layer_forward_noisy(l0, batch, x, y0, step), QN_OK);
                ck_assert_int_eq(qn_layer_forward_noisy(l1, batch, x, y1, step), QN_OK);
                for (i = 0; i < nout; i++)
                    ck_assert_msg(fabsf(y0[i] - y1[i]) <= 1e-5f * (1.0f + fabsf(y0[i])),
                                  "%s: ISA cap %d: y[%zu] %.9g vs default %.9g", desc, cap, i, (double)y1[i],
                                  (double)y0[i]);
                free(m0);
                free(m1);
            }
            qn_layer_destroy(l1);
            qn_context_destroy(c);
        }
        qn_layer_destroy(l0);
        free(W), free(bias), free(y0), free(y1), free(x);
    }
    qn_context_destroy(ref);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* SCALAR details                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* Number of distinct values in v[0..n). */
static size_t count_distinct(const float *v, size_t n)
{
    float *u = falloc(n);
    size_t nu = 0, i, j;
    for (i = 0; i < n; i++) {
        for (j = 0; j < nu; j++)
            if (u[j] == v[i])
                break;
        if (j == nu)
            u[nu++] = v[i];
    }
    free(u);
    return nu;
}

START_TEST(scalar_bits_2_to_8)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(24, 13);
    size_t nw = n_weights(&s), nblk = nw / 4, i;
    float *W = falloc(nw), *we = falloc(nw), *vals = falloc(nw);
    double *weff = dzalloc(nw), *fac = dzalloc(nw);
    unsigned char *nb = (unsigned char *)xmalloc(nblk);
    unsigned bits;
    int obs;
    sm_state = 909;
    fill_rand(W, nw);
    for (bits = 2; bits <= 8; bits++) {
        for (obs = 0; obs < 4; obs++) {
            for (int sch = 0; sch < 2; sch++) {
                qn_layer *l = make_layer(ctx, &s);
                noise nz;
                char desc[700], d0[600];
                size_t nv = 0, nkept = 0, r;
                qp q = ref_qparams(W, nw, bits);
                memset(&nz, 0, sizeof nz);
                nz.kind = QN_NOISE_SCALAR;
                nz.p = 0.999f;
                nz.bs = 4;
                nz.seed = 5;
                nz.lid = bits;
                nz.bits = bits;
                describe(d0, sizeof d0, &s, &nz, s.in, 3);
                snprintf(desc, sizeof desc, "%s observer=%d scheme=%d", d0, obs, sch);
                ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
                ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_SCALAR, nz.p, 4), QN_OK);
                ck_assert_int_eq(qn_layer_set_seed(l, nz.seed, nz.lid), QN_OK);
                ck_assert_int_eq(qn_layer_set_scalar_noise(l, bits, (qn_observer)obs, (qn_qscheme)sch, 10),
                                 QN_OK);
                probe_weff(l, &s, NULL, 3, we, desc);
                ref_weff(&s, W, &nz, 3, q, weff, fac, nb, NULL);
                for (i = 0; i < nw; i++) {
                    if (nb[i / 4])
                        vals[nv++] = we[i];
                    else {
                        nkept++;
                        ck_assert_msg(we[i] == W[i], "%s: kept W_eff[%zu] %.9g != W %.9g", desc, i,
                                      (double)we[i], (double)W[i]);
                    }
                    ck_assert_msg(isfinite(we[i]), "%s: W_eff[%zu] not finite", desc, i);
                }
                ck_assert_uint_gt(nv, nw / 2);
                if (obs == QN_OBSERVER_PER_CHANNEL) {
                    for (r = 0; r < s.rows; r++) {
                        size_t m = 0;
                        qp qr = ref_qparams(W + r * s.cols, s.cols, bits);
                        for (i = r * s.cols; i < (r + 1) * s.cols; i++)
                            if (nb[i / 4]) {
                                vals[m++] = we[i];
                                if (sch == QN_QSCHEME_AFFINE) {
                                    float want = ref_fq(W[i], qr);
                                    double e = fabs((double)we[i] - want);
                                    ck_assert_msg(
                                        e <= 1e-6 * qr.s || (near_tie(W[i], qr.s) && e <= 1.0001 * qr.s),
                                        "%s: row %zu W_eff[%zu] = %.9g, expected per-row fq(%.9g) = "
                                        "%.9g (scale %.9g zero %d)",
                                        desc, r, i, (double)we[i], (double)W[i], (double)want, (double)qr.s,
                                        (int)qr.z);
                                }
                            }
                        ck_assert_msg(count_distinct(vals, m) <= (sch ? (1u << bits) - 1 : 1u << bits),
                                      "%s: row %zu has %zu distinct noised values", desc, r,
                                      count_distinct(vals, m));
                    }
                    qn_layer_destroy(l);
                    continue;
                }
                {
                    size_t nd = count_distinct(vals, nv);
                    ck_assert_msg(nd <= (sch ? (1u << bits) - 1 : 1u << bits),
                                  "%s: %zu distinct noised values for %u bits", desc, nd, bits);
                }
                if (sch == QN_QSCHEME_AFFINE &&
                    (obs == QN_OBSERVER_MINMAX || obs == QN_OBSERVER_MOVING_AVERAGE)) {
                    /* min-max (and a moving average at its first observation) */
                    for (i = 0; i < nw; i++)
                        if (nb[i / 4]) {
                            double e = fabs((double)we[i] - weff[i]);
                            ck_assert_msg(
                                e <= 1e-6 * q.s || (near_tie(W[i], q.s) && e <= 1.0001 * q.s),
                                "%s: W_eff[%zu] = %.9g, expected fq(%.9g) = %.9g (scale %.9g zero %d)", desc,
                                i, (double)we[i], (double)W[i], weff[i], (double)q.s, (int)q.z);
                        }
                }
                if (sch == QN_QSCHEME_SYMMETRIC && obs == QN_OBSERVER_MINMAX) {
                    /* symmetric min-max covers [-max|W|, max|W|]: error at most half a step */
                    double amax = 0, step;
                    for (i = 0; i < nw; i++)
                        amax = fmax(amax, fabs((double)W[i]));
                    step = amax / (double)((1u << (bits - 1)) - 1);
                    for (i = 0; i < nw; i++)
                        if (nb[i / 4])
                            ck_assert_msg(fabs((double)we[i] - W[i]) <= 0.5 * step * (1 + 1e-4),
                                          "%s: symmetric W_eff[%zu] = %.9g for W %.9g (step %.9g)", desc, i,
                                          (double)we[i], (double)W[i], step);
                }
                qn_layer_destroy(l);
            }
        }
    }
    free(W), free(we), free(vals), free(weff), free(fac), free(nb);
    qn_context_destroy(ctx);
}
END_TEST

/*
 * One training step with the reference W_eff (no probe: the probe would itself
 * be a noisy forward and shift the refresh schedule).
 */
static size_t train_step_ref(qn_layer *l, const shape *s, const noise *nz, const float *W, qp q,
                             uint64_t step, const char *tag)
{
    size_t nw = n_weights(s), batch = 3, nin = batch * in_ps(s), nout = batch * out_ps(s), i, outside = 0;
    float *x = falloc(nin), *y = falloc(nout), *dy = falloc(nout), *dx = falloc(nin), *dW = falloc(nw);
    float *Wc = falloc(nw);
    double *weff = dzalloc(nw), *fac = dzalloc(nw), *yr = dzalloc(nout), *ym = dzalloc(nout);
    double *dxr = dzalloc(nin), *dxm = dzalloc(nin), *gw = dzalloc(nw), *gwm = dzalloc(nw), db[64], dbm[64];
    unsigned char *nb = (unsigned char *)xmalloc(nw / nz->bs), *band = (unsigned char *)xmalloc(nw);
    char desc[700], d0[600];
    describe(d0, sizeof d0, s, nz, batch, step);
    snprintf(desc, sizeof desc, "%s [%s; reference scale %.9g zero %d]", d0, tag, (double)q.s, (int)q.z);
    memcpy(Wc, W, nw * sizeof(float));
    fill_rand(x, nin);
    fill_rand(dy, nout);
    fill_val(dx, nin, NAN);
    fill_val(dW, nw, 0.0f);
    memset(db, 0, sizeof db);
    memset(dbm, 0, sizeof dbm);
    ref_weff(s, W, nz, step, q, weff, fac, nb, band);
    for (i = 0; i < nw; i++)
        if (nb[i / nz->bs] && !(q_lo(q) <= W[i] && W[i] <= q_hi(q)))
            outside++;
    ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y, step), QN_OK);
    ref_forward(s, weff, NULL, batch, x, yr, ym);
    cmp_arr(desc, "forward_noisy y", y, yr, ym, nout, 1e-5, 1e-6);
    ck_assert_int_eq(qn_layer_backward(l, batch, x, dy, dx, dW, NULL, step), QN_OK);
    ref_backward(s, weff, fac, batch, x, dy, dxr, dxm, gw, gwm, db, dbm);
    cmp_arr(desc, "backward dx", dx, dxr, dxm, nin, 1e-5, 1e-6);
    for (i = 0; i < nw; i++) {
        double e = fabs((double)dW[i] - gw[i]);
        ck_assert_msg(e <= 1e-5 * gwm[i] + 1e-6,
                      "%s: dW[%zu] (%s block): expected %.9g, got %.9g; W = %.9g, [lo, hi] = [%.9g, %.9g]%s",
                      desc, i, nb[i / nz->bs] ? "noised" : "kept", gw[i], (double)dW[i], (double)W[i],
                      (double)q_lo(q), (double)q_hi(q),
                      band[i] ? " (outside [lo,hi] but rounded code inside [qmin,qmax])" : "");
    }
    ck_assert(memcmp(W, Wc, nw * sizeof(float)) == 0);
    free(x), free(y), free(dy), free(dx), free(dW), free(Wc), free(weff), free(fac), free(yr), free(ym);
    free(dxr), free(dxm), free(gw), free(gwm), free(nb), free(band);
    return outside;
}

START_TEST(scalar_update_step_and_clipping)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(24, 13);
    size_t nw = n_weights(&s), i;
    float *W = falloc(nw), *W1 = falloc(nw), *W2 = falloc(nw);
    qn_layer *l = make_layer(ctx, &s);
    noise nz;
    qp q1, q2, q3;
    sm_state = 1010;
    fill_rand(W, nw);
    memcpy(W1, W, nw * sizeof(float));
    for (i = 0; i < nw; i++)
        W2[i] = W1[i] * 1.5f;
    memset(&nz, 0, sizeof nz);
    nz.kind = QN_NOISE_SCALAR;
    nz.p = 0.5f;
    nz.bs = 4;
    nz.seed = 11;
    nz.lid = 2;
    nz.gm = QN_GRAD_STE;
    nz.bits = 4;
    nz.update = 3;
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    configure(l, &nz);
    q1 = ref_qparams(W1, nw, 4);
    q2 = ref_qparams(W2, nw, 4);
    /* noisy forward #0: range from W1 */
    train_step_ref(l, &s, &nz, W, q1, 100, "noisy forward #0, W1: fresh range of W1");
    /* the weights grow: #1 and #2 keep the range of W1 (values outside are clamped, STE gives 0) */
    memcpy(W, W2, nw * sizeof(float));
    ck_assert_uint_gt(
        train_step_ref(l, &s, &nz, W, q1, 101, "noisy forward #1, W2 = 1.5 W1: range of W1 kept"), 0);
    ck_assert_uint_gt(train_step_ref(l, &s, &nz, W, q1, 102, "noisy forward #2, W2: range of W1 kept"), 0);
    /* #3 = update_step: refreshed from the current weight */
    train_step_ref(l, &s, &nz, W, q2, 103, "noisy forward #3, W2: refreshed to the range of W2");
    /* shrink: #4, #5 keep q2; #6 refreshes */
    for (i = 0; i < nw; i++)
        W[i] = W1[i] * 0.25f;
    q3 = ref_qparams(W, nw, 4);
    train_step_ref(l, &s, &nz, W, q2, 104, "noisy forward #4, W3 = W1/4: range of W2 kept");
    train_step_ref(l, &s, &nz, W, q2, 105, "noisy forward #5, W3: range of W2 kept");
    train_step_ref(l, &s, &nz, W, q3, 106, "noisy forward #6, W3: refreshed to the range of W3");
    /* eval forward does not count: #7, #8 keep q3 even after several eval forwards */
    {
        float x[24], y[13];
        fill_rand(x, 24);
        for (i = 0; i < 5; i++)
            ck_assert_int_eq(qn_layer_forward(l, 1, x, y), QN_OK);
    }
    memcpy(W, W2, nw * sizeof(float));
    train_step_ref(l, &s, &nz, W, q3, 107, "noisy forward #7 after 5 eval forwards, W2: range of W3 kept");
    /* DropConnect on the same schedule */
    ck_assert_int_eq(qn_layer_set_grad_mode(l, QN_GRAD_DROPCONNECT), QN_OK);
    nz.gm = QN_GRAD_DROPCONNECT;
    train_step_ref(l, &s, &nz, W, q3, 108, "noisy forward #8, DropConnect: range of W3 kept");
    /* binding again discards the cached range: the next noisy forward observes W2 */
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    train_step_ref(l, &s, &nz, W, q2, 109, "first noisy forward after re-binding, W2: range of W2");
    qn_layer_destroy(l);
    free(W), free(W1), free(W2);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* PQ details                                                                                  */
/* ------------------------------------------------------------------------------------------ */

START_TEST(pq_clustered_weights)
{
    qn_context *ctx = new_ctx();
    shape shapes[3];
    size_t bss[3] = {4, 3, 4}, si;
    shapes[0] = shape_linear(16, 64); /* 256 blocks of 4 */
    shapes[1] = conv_main();          /* 36 blocks of 3 */
    shapes[2] = shape_emb(50, 16);    /* 200 blocks of 4 */
    sm_state = 1111;
    for (si = 0; si < 3; si++) {
        const shape *s = &shapes[si];
        size_t bs = bss[si], nw = n_weights(s), nblk = nw / bs, b, t, i;
        float proto[4][4], *W = falloc(nw), *we = falloc(nw), *W0 = falloc(nw);
        double *weff = dzalloc(nw), *fac = dzalloc(nw), epq = 0, ezero = 0;
        unsigned char *nb = (unsigned char *)xmalloc(nblk);
        qn_layer *l = make_layer(ctx, s);
        vset cents = {NULL, 0, 0, bs};
        noise nz;
        char desc[600];
        qp q = {1, 0, 0, 255};
        for (b = 0; b < 4; b++)
            for (t = 0; t < 4; t++)
                proto[b][t] = 2.0f * frand();
        /* every block is one of 4 prototypes plus noise of amplitude 0.01 */
        for (b = 0; b < nblk; b++) {
            size_t c = urand(4);
            for (t = 0; t < bs; t++)
                W[b * bs + t] = proto[c][t] + 0.01f * frand();
        }
        memcpy(W0, W, nw * sizeof(float));
        memset(&nz, 0, sizeof nz);
        nz.kind = QN_NOISE_PQ;
        nz.p = 0.5f;
        nz.bs = bs;
        nz.seed = 3;
        nz.lid = si;
        nz.K = 8;
        nz.update = 2;
        ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
        configure(l, &nz);
        /* noisy forward #0 (k-means on W) and #1: centroids of W */
        for (i = 0; i < 2; i++) {
            uint64_t step = 40 + i;
            describe(desc, sizeof desc, s, &nz, 0, step);
            ref_weff(s, W, &nz, step, q, weff, fac, nb, NULL);
            probe_weff(l, s, NULL, step, we, desc);
            check_weff(s, &nz, W, we, weff, nb, q, &cents, desc);
            epq = ezero = 0;
            for (b = 0; b < nblk; b++)
                if (nb[b])
                    for (t = 0; t < bs; t++) {
                        double d = (double)we[b * bs + t] - W[b * bs + t];
                        epq += d * d;
                        ezero += (double)W[b * bs + t] * W[b * bs + t];
                    }
            if (i == 0)
                ck_assert_msg(epq < 0.01 * ezero, "%s: PQ error %.6g vs zeroing %.6g on clustered weights",
                              desc, epq, ezero);
            if (i == 0)
                /* the weights move by +5 after #0: #1 still uses the old centroids */
                for (b = 0; b < nw; b++)
                    W[b] = W0[b] + 5.0f;
        }
        ck_assert_msg(cents.n <= 8, "%s: %zu distinct noised blocks, K = 8", desc, cents.n);
        /* #1 used the centroids of W0: far (about 5) from the current W */
        {
            double e1 = 0;
            size_t n1 = 0;
            for (b = 0; b < nblk; b++)
                if (nb[b])
                    for (t = 0; t < bs; t++) {
                        e1 += fabs((double)we[b * bs + t] - W[b * bs + t]);
                        n1++;
                    }
            ck_assert_msg(n1 > 0 && e1 / (double)n1 > 4.0,
                          "%s: noisy forward #1 (update_step 2) should still use the centroids of the old "
                          "weights: mean |W_eff - W| = %.6g",
                          desc, n1 ? e1 / (double)n1 : 0.0);
        }
        /* #2: refreshed on W0 + 5 */
        describe(desc, sizeof desc, s, &nz, 0, 42);
        ref_weff(s, W, &nz, 42, q, weff, fac, nb, NULL);
        probe_weff(l, s, NULL, 42, we, desc);
        free(cents.v);
        cents.v = NULL;
        cents.n = cents.cap = 0;
        check_weff(s, &nz, W, we, weff, nb, q, &cents, desc);
        epq = ezero = 0;
        for (b = 0; b < nblk; b++)
            if (nb[b])
                for (t = 0; t < bs; t++) {
                    double d = (double)we[b * bs + t] - W[b * bs + t];
                    epq += d * d;
                    ezero += (double)W[b * bs + t] * W[b * bs + t];
                }
        ck_assert_msg(epq < 0.01 * ezero,
                      "%s: after refresh (noisy forward #2) PQ error %.6g vs zeroing %.6g", desc, epq, ezero);
        ck_assert_msg(cents.n <= 8, "%s: %zu distinct noised blocks, K = 8", desc, cents.n);
        qn_layer_destroy(l);
        free(W), free(we), free(W0), free(weff), free(fac), free(nb), free(cents.v);
    }
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(pq_default_settings)
{
    /*
     * Defaults: min(256, blocks) centroids. With 200 distinct blocks that is one
     * centroid per block, so every noised block is its own centroid (exactly);
     * with 1072 blocks at most 256 distinct noised blocks.
     */
    qn_context *ctx = new_ctx();
    shape e = shape_emb(50, 16), big = shape_linear(128, 67);
    size_t nw = n_weights(&e), i;
    float *W = falloc(nw), *we = falloc(nw);
    qn_layer *l = make_layer(ctx, &e);
    noise nz;
    char desc[600];
    uint64_t st;
    sm_state = 1616;
    fill_rand(W, nw);
    memset(&nz, 0, sizeof nz);
    nz.kind = QN_NOISE_PQ;
    nz.p = 0.6f;
    nz.bs = 4;
    nz.seed = 12;
    nz.lid = 1;
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    configure(l, &nz);
    for (st = 0; st < 3; st++) {
        describe(desc, sizeof desc, &e, &nz, 50, st);
        probe_weff(l, &e, NULL, st, we, desc);
        for (i = 0; i < nw; i++)
            ck_assert_msg(we[i] == W[i],
                          "%s: default PQ (200 centroids for 200 blocks): W_eff[%zu] = %.9g, W = %.9g", desc,
                          i, (double)we[i], (double)W[i]);
    }
    qn_layer_destroy(l);
    run_case(ctx, &big, &nz, STEPS, NSTEPS, 3, 1);
    free(W), free(we);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* gradients: finite differences on the exact path                                             */
/* ------------------------------------------------------------------------------------------ */

static double loss(qn_layer *l, const shape *s, size_t batch, const void *x, const float *r, float *y)
{
    size_t i, n = batch * out_ps(s);
    double L = 0;
    ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
    for (i = 0; i < n; i++)
        L += (double)y[i] * r[i];
    return L;
}

static void fd_check(const char *desc, const char *what, float *v, size_t n, const float *an, qn_layer *l,
                     const shape *s, size_t batch, const void *x, const float *r, float *y)
{
    const float eps = 1e-3f;
    size_t i;
    for (i = 0; i < n; i++) {
        float v0 = v[i], vp = v0 + eps, vm = v0 - eps;
        double Lp, Lm, fd;
        v[i] = vp;
        Lp = loss(l, s, batch, x, r, y);
        v[i] = vm;
        Lm = loss(l, s, batch, x, r, y);
        v[i] = v0;
        fd = (Lp - Lm) / ((double)vp - (double)vm);
        ck_assert_msg(fabs(fd - an[i]) <= 1e-2 * fmax(fabs(fd), fabs((double)an[i])) + 2e-3,
                      "%s: %s[%zu]: central difference %.7g, backward %.7g", desc, what, i, fd,
                      (double)an[i]);
    }
}

START_TEST(gradients_finite_differences)
{
    qn_context *ctx = new_ctx();
    shape shapes[4];
    size_t si;
    shapes[0] = shape_linear(24, 13);
    shapes[1] = conv_main();
    shapes[2] = shape_conv(3, 2, 2, 3, 1, 2, 1, 0, 1, 1, 1, 4, 5);
    shapes[3] = shape_emb(50, 16);
    sm_state = 1212;
    for (si = 0; si < 4; si++) {
        const shape *s = &shapes[si];
        size_t batch = 2, nw = n_weights(s), nb = n_bias(s), nin = batch * in_ps(s), nout = batch * out_ps(s);
        float *W = falloc(nw), *bias = falloc(nb), *r = falloc(nout), *y = falloc(nout), *dW = falloc(nw);
        float *db = falloc(nb), *dx = falloc(nin);
        void *x = make_input(s, batch);
        qn_layer *l = make_layer(ctx, s);
        char desc[400];
        describe_shape(desc, sizeof desc, s);
        fill_rand(W, nw);
        fill_rand(bias, nb);
        fill_rand(r, nout);
        fill_val(dW, nw, 0.0f);
        fill_val(db, nb, 0.0f);
        ck_assert_int_eq(qn_layer_bind(l, W, nb ? bias : NULL), QN_OK);
        ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_NONE, 0.0f, 1), QN_OK);
        ck_assert_int_eq(qn_layer_forward(l, batch, x, y), QN_OK);
        ck_assert_int_eq(qn_layer_backward(l, batch, x, r, nb ? dx : NULL, dW, nb ? db : NULL, 0), QN_OK);
        fd_check(desc, "dW", W, nw, dW, l, s, batch, x, r, y);
        if (nb) {
            fd_check(desc, "db", bias, nb, db, l, s, batch, x, r, y);
            fd_check(desc, "dx", (float *)x, nin, dx, l, s, batch, x, r, y);
        }
        qn_layer_destroy(l);
        free(W), free(bias), free(r), free(y), free(dW), free(db), free(dx), free(x);
    }
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* workspace                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void workspace_case(qn_context *ctx, const shape *s, qn_noise_kind kind, size_t bs)
{
    size_t batch = 3, nw = n_weights(s), nb = n_bias(s), nin = batch * in_ps(s), nout = batch * out_ps(s);
    size_t bytes = 0, bytes4 = 0, i;
    float *W = falloc(nw), *bias = falloc(nb), *y0 = falloc(nout), *y1 = falloc(nout), *dy = falloc(nout);
    float *dx0 = falloc(nin), *dx1 = falloc(nin), *dW0 = falloc(nw), *dW1 = falloc(nw);
    float *db0 = falloc(nb), *db1 = falloc(nb);
    void *x = make_input(s, batch), *ws;
    float *xd = s->kind == QN_LAYER_EMBEDDING ? NULL : dx1;
    qn_layer *a = make_layer(ctx, s), *b = make_layer(ctx, s);
    char desc[600];
    noise nz;
    memset(&nz, 0, sizeof nz);
    nz.kind = kind;
    nz.p = 0.3f;
    nz.bs = bs;
    nz.seed = 8;
    nz.lid = 8;
    if (kind == QN_NOISE_PQ)
        nz.K = 4;
    describe(desc, sizeof desc, s, &nz, batch, 5);
    fill_rand(W, nw);
    fill_rand(bias, nb);
    fill_rand(dy, nout);
    ck_assert_int_eq(qn_layer_bind(a, W, nb ? bias : NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(b, W, nb ? bias : NULL), QN_OK);
    configure(a, &nz);
    configure(b, &nz);
    /* a: its own allocation; b: the caller's workspace of exactly workspace_size bytes */
    ck_assert_int_eq(qn_layer_workspace_size(b, batch, &bytes), QN_OK);
    ck_assert_int_eq(qn_layer_workspace_size(b, batch + 1, &bytes4), QN_OK);
    ck_assert_uint_ge(bytes4, bytes);
    ws = aligned_alloc(64, (bytes + 64) / 64 * 64);
    ck_assert_ptr_nonnull(ws);
    ck_assert_int_eq(qn_layer_set_workspace(b, ws, bytes), QN_OK);

    fill_val(dW0, nw, 0.5f);
    fill_val(dW1, nw, 0.5f);
    fill_val(db0, nb, 0.25f);
    fill_val(db1, nb, 0.25f);
    ck_assert_int_eq(qn_layer_forward_noisy(a, batch, x, y0, 5), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(b, batch, x, y1, 5), QN_OK);
    for (i = 0; i < nout; i++)
        ck_assert_msg(fabsf(y0[i] - y1[i]) <= 1e-6f * (1 + fabsf(y0[i])), "%s: workspace changes y[%zu]",
                      desc, i);
    ck_assert_int_eq(qn_layer_backward(a, batch, x, dy, xd ? dx0 : NULL, dW0, nb ? db0 : NULL, 5), QN_OK);
    ck_assert_int_eq(qn_layer_backward(b, batch, x, dy, xd, dW1, nb ? db1 : NULL, 5), QN_OK);
    for (i = 0; i < nw; i++)
        ck_assert_msg(fabsf(dW0[i] - dW1[i]) <= 1e-6f * (1 + fabsf(dW0[i])), "%s: workspace changes dW[%zu]",
                      desc, i);
    if (xd)
        for (i = 0; i < nin; i++)
            ck_assert_msg(fabsf(dx0[i] - dx1[i]) <= 1e-6f * (1 + fabsf(dx0[i])),
                          "%s: workspace changes dx[%zu]", desc, i);
    ck_assert_int_eq(qn_layer_forward(b, batch, x, y1), QN_OK);

    /* a larger batch than the workspace was sized for */
    if (bytes4 > bytes) {
        void *x4 = make_input(s, batch + 1);
        float *y4 = falloc((batch + 1) * out_ps(s));
        fill_val(y4, (batch + 1) * out_ps(s), SENTINEL);
        ck_assert_int_eq(qn_layer_forward_noisy(b, batch + 1, x4, y4, 5), QN_ERR_BUFFER_TOO_SMALL);
        assert_all_eq(y4, (batch + 1) * out_ps(s), SENTINEL, "y (batch + 1 on a workspace for batch)");
        free(x4);
        free(y4);
    }
    /* one byte short: calls that need the whole workspace fail and leave outputs alone */
    if (bytes > 0) {
        int failed = 0;
        qn_status st;
        ck_assert_int_eq(qn_layer_set_workspace(b, ws, bytes - 1), QN_OK);
        fill_val(y1, nout, SENTINEL);
        st = qn_layer_forward_noisy(b, batch, x, y1, 5);
        ck_assert_msg(st == QN_OK || st == QN_ERR_BUFFER_TOO_SMALL, "%s: forward_noisy status %d", desc, st);
        if (st != QN_OK) {
            failed++;
            assert_all_eq(y1, nout, SENTINEL, "y (forward_noisy, short workspace)");
        }
        fill_val(y1, nout, SENTINEL);
        st = qn_layer_forward(b, batch, x, y1);
        ck_assert_msg(st == QN_OK || st == QN_ERR_BUFFER_TOO_SMALL, "%s: forward status %d", desc, st);
        if (st != QN_OK)
            assert_all_eq(y1, nout, SENTINEL, "y (forward, short workspace)");
        fill_val(dW1, nw, SENTINEL);
        fill_val(db1, nb, SENTINEL);
        fill_val(dx1, nin, SENTINEL);
        st = qn_layer_backward(b, batch, x, dy, xd, dW1, nb ? db1 : NULL, 5);
        ck_assert_msg(st == QN_OK || st == QN_ERR_BUFFER_TOO_SMALL, "%s: backward status %d", desc, st);
        if (st != QN_OK) {
            failed++;
            assert_all_eq(dW1, nw, SENTINEL, "dW (backward, short workspace)");
            assert_all_eq(db1, nb, SENTINEL, "db (backward, short workspace)");
            if (xd)
                assert_all_eq(dx1, nin, SENTINEL, "dx (backward, short workspace)");
        }
        ck_assert_msg(failed > 0,
                      "%s: workspace_size says %zu bytes but %zu bytes were enough for every call", desc,
                      bytes, bytes - 1);
    }
    /* NULL: back to the layer's own workspace */
    ck_assert_int_eq(qn_layer_set_workspace(b, NULL, 0), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(b, batch, x, y1, 5), QN_OK);
    for (i = 0; i < nout; i++)
        ck_assert(fabsf(y0[i] - y1[i]) <= 1e-6f * (1 + fabsf(y0[i])));
    qn_layer_destroy(a);
    qn_layer_destroy(b);
    free(ws);
    free(W), free(bias), free(y0), free(y1), free(dy), free(dx0), free(dx1), free(dW0), free(dW1);
    free(db0), free(db1), free(x);
}

START_TEST(workspace_sizes)
{
    qn_context *ctx = new_ctx();
    shape c = conv_main(), c1 = shape_conv(8, 5, 1, 1, 1, 1, 0, 0, 1, 1, 1, 5, 3), li = shape_linear(24, 13),
          em = shape_emb(50, 16);
    static const qn_noise_kind kinds[] = {QN_NOISE_NONE, QN_NOISE_PROXY, QN_NOISE_SCALAR, QN_NOISE_PQ};
    int k;
    sm_state = 1313;
    for (k = 0; k < 4; k++) {
        workspace_case(ctx, &c, kinds[k], 3);
        workspace_case(ctx, &c1, kinds[k], 4);
        workspace_case(ctx, &li, kinds[k], 8);
        workspace_case(ctx, &em, kinds[k], 4);
    }
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* bad input                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static int sentinel_anchor;
#define SENT_LAYER ((qn_layer *)(void *)&sentinel_anchor)
/* Creations that did not set *out to NULL on failure (reported at the end, so that the other
 * checks still run). Contract (common.h): a failing create sets *out to NULL, so a caller never
 * holds a dangling or stale handle. */
static int out_written;
static char out_written_msg[300];

#define EXPECT_CREATE_FAILS(call_with_out)                                                                   \
    do {                                                                                                     \
        qn_layer *l_ = SENT_LAYER;                                                                           \
        qn_layer **out_ = &l_;                                                                               \
        qn_status st_ = (call_with_out);                                                                     \
        ck_assert_msg(st_ == QN_ERR_INVALID_ARG, "%s returned %d, expected QN_ERR_INVALID_ARG",              \
                      #call_with_out, (int)st_);                                                             \
        if (l_ != NULL && out_written++ == 0)                                                                \
            snprintf(out_written_msg, sizeof out_written_msg,                                                \
                     "%s: *out is %p after a failure; common.h: create sets *out to NULL on error",          \
                     #call_with_out, (void *)l_);                                                            \
        (void)out_;                                                                                          \
    } while (0)

START_TEST(bad_creation)
{
    qn_context *ctx = new_ctx();
    qn_layer *l = NULL;
    size_t oh = 77, ow = 77;
    float W[108], x[4 * 7 * 8], y[6 * 3 * 3];
    /* zero sizes */
    EXPECT_CREATE_FAILS(qn_layer_create_linear(ctx, 0, 5, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_linear(ctx, 5, 0, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_embedding(ctx, 0, 4, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_embedding(ctx, 4, 0, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 0, 6, 3, 3, 1, 0, 1, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 0, 3, 3, 1, 0, 1, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 0, 3, 1, 0, 1, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 0, 1, 0, 1, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 0, 0, 1, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 0, 1, out_));
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 0, out_));
    /* groups not dividing the channels */
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 3, out_)); /* in 4 % 3 */
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 4, out_)); /* out 6 % 4 */
    EXPECT_CREATE_FAILS(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 8, out_)); /* groups > in */
    /* NULL out */
    ck_assert_int_eq(qn_layer_create_linear(ctx, 3, 3, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_create_embedding(ctx, 3, 3, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 2, NULL), QN_ERR_INVALID_ARG);

    /* conv2d geometry and input size */
    ck_assert_int_eq(qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 0, 1, 2, &l), QN_OK);
    fill_rand(W, 108);
    fill_rand(x, 4 * 7 * 8);
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    /* forward before qn_layer_set_input_size */
    fill_val(y, 54, SENTINEL);
    ck_assert_int_eq(qn_layer_forward(l, 1, x, y), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 1, x, y, 0), QN_ERR_NOT_TRAINED);
    assert_all_eq(y, 54, SENTINEL, "y (conv2d before set_input_size)");
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 0, 1, 0, 0, 1, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 1, 0, 0, 0, 1, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 1, 1, 0, 0, 0, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 1, 1, 0, 0, 1, 0), QN_ERR_INVALID_ARG);
    /* input too small for the kernel (3x3, no padding): output would be empty */
    ck_assert_int_eq(qn_layer_set_input_size(l, 2, 8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_input_size(l, 8, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_input_size(l, 0, 8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(l, 1, x, y), QN_ERR_NOT_TRAINED);
    assert_all_eq(y, 54, SENTINEL, "y (conv2d after a refused set_input_size)");
    /* dilation 2: the 3x3 kernel spans 5 */
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 1, 1, 0, 0, 2, 2), QN_OK);
    ck_assert_int_eq(qn_layer_set_input_size(l, 4, 8), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_input_size(l, 5, 5), QN_OK);
    ck_assert_int_eq(qn_layer_get_output_size(l, &oh, &ow), QN_OK);
    ck_assert_uint_eq(oh, 1);
    ck_assert_uint_eq(ow, 1);
    ck_assert_int_eq(qn_layer_get_output_size(l, NULL, &ow), QN_ERR_INVALID_ARG);
    /* a geometry that makes the set input size empty is refused (or the forward fails) */
    {
        qn_status st = qn_layer_set_conv2d_geometry(l, 1, 1, 0, 0, 3, 3);
        if (st == QN_OK) {
            fill_val(y, 54, SENTINEL);
            ck_assert_int_ne(qn_layer_forward(l, 1, x, y), QN_OK);
            assert_all_eq(y, 54, SENTINEL, "y (geometry larger than the input)");
        } else {
            ck_assert_int_eq(st, QN_ERR_INVALID_ARG);
        }
    }
    qn_layer_destroy(l);

    /* conv2d-only calls on a linear layer */
    ck_assert_int_eq(qn_layer_create_linear(ctx, 24, 13, &l), QN_OK);
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(l, 1, 1, 0, 0, 1, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_input_size(l, 5, 5), QN_ERR_INVALID_ARG);
    qn_layer_destroy(l);
    qn_layer_destroy(NULL); /* no-op */
    qn_context_destroy(ctx);
    ck_assert_msg(out_written == 0, "%d failed creations wrote *out; first: %s", out_written,
                  out_written_msg);
}
END_TEST

START_TEST(bad_noise_settings)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(24, 13), c = conv_main(), e = shape_emb(50, 16);
    qn_layer *l = make_layer(ctx, &s), *lc = make_layer(ctx, &c), *le = make_layer(ctx, &e);
    float W[312], x[24], y[13], Wc[108], We[800];
    noise nz;
    char desc[600];
    qn_status st;
    sm_state = 1414;
    fill_rand(W, 312);
    fill_rand(Wc, 108);
    fill_rand(We, 800);
    fill_rand(x, 24);
    ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(lc, Wc, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(le, We, NULL), QN_OK);
    memset(&nz, 0, sizeof nz);
    nz.kind = QN_NOISE_PROXY;
    nz.p = 0.5f;
    nz.bs = 4;
    nz.seed = 1;
    nz.lid = 2;
    configure(l, &nz);
    /* block size not dividing the blocked axis */
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.1f, 5), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.1f, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.1f, 48), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(lc, QN_NOISE_PROXY, 0.1f, 4), QN_ERR_INVALID_ARG); /* cols 18 */
    ck_assert_int_eq(qn_layer_set_noise(lc, QN_NOISE_PROXY, 0.1f, 12), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(le, QN_NOISE_PROXY, 0.1f, 3), QN_ERR_INVALID_ARG); /* dim 16 */
    ck_assert_int_eq(qn_layer_set_noise(le, QN_NOISE_PROXY, 0.1f, 50), QN_ERR_INVALID_ARG);
    /* rates outside [0, 1) */
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 1.0f, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, -0.1f, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, NAN, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, INFINITY, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_SCALAR, 1.5f, 4), QN_ERR_INVALID_ARG);
    /* unknown enums */
    ck_assert_int_eq(qn_layer_set_noise(l, (qn_noise_kind)4, 0.1f, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(l, (qn_noise_kind)-1, 0.1f, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_grad_mode(l, (qn_grad_mode)2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_grad_mode(l, (qn_grad_mode)-1), QN_ERR_INVALID_ARG);
    /* refused settings leave the previous ones: mask still PROXY p = 0.5, bs 4 */
    describe(desc, sizeof desc, &s, &nz, 0, 9);
    check_mask(l, &s, &nz, 9, desc);
    /* scalar settings */
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 1, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 9, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 0, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 4, (qn_observer)4, QN_QSCHEME_AFFINE, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 4, QN_OBSERVER_MINMAX, (qn_qscheme)2, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(l, 4, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 0),
                     QN_ERR_INVALID_ARG);
    /* PQ settings */
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 1, 15, 10), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 65537, 15, 10), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 8, 0, 10), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 8, 15, 0), QN_ERR_INVALID_ARG);
    /* n_centroids > number of blocks (78): refused now, or by the noisy forward */
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, 4), QN_OK);
    st = qn_layer_set_pq_noise(l, 79, 15, 10);
    if (st == QN_OK) {
        fill_val(y, 13, SENTINEL);
        ck_assert_int_eq(qn_layer_forward_noisy(l, 1, x, y, 0), QN_ERR_INVALID_ARG);
        assert_all_eq(y, 13, SENTINEL, "y (PQ with more centroids than blocks)");
    } else {
        ck_assert_int_eq(st, QN_ERR_INVALID_ARG);
    }
    /* 16 centroids of blocks of 4 (78 blocks), then blocks of 24 (13 blocks) */
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 16, 15, 10), QN_OK);
    st = qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, 24);
    if (st == QN_OK) {
        fill_val(y, 13, SENTINEL);
        ck_assert_int_eq(qn_layer_forward_noisy(l, 1, x, y, 0), QN_ERR_INVALID_ARG);
        assert_all_eq(y, 13, SENTINEL, "y (PQ block size leaving fewer blocks than centroids)");
    } else {
        ck_assert_int_eq(st, QN_ERR_INVALID_ARG);
    }
    /* and 78 centroids (= blocks) is fine */
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_pq_noise(l, 78, 2, 10), QN_OK);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 1, x, y, 0), QN_OK);
    qn_layer_destroy(l);
    qn_layer_destroy(lc);
    qn_layer_destroy(le);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(bad_calls_leave_outputs_untouched)
{
    qn_context *ctx = new_ctx();
    shape s = shape_linear(24, 13), e = shape_emb(50, 16), c = conv_main();
    qn_layer *l = make_layer(ctx, &s), *le = make_layer(ctx, &e), *lc = make_layer(ctx, &c);
    float W[312], b[13], x[48], y[26], dy[26], dx[48], dW[312], db[13];
    float We[800], ye[64], dye[64], dWe[800], dxe[4];
    float Wc[108], xc[2 * 4 * 7 * 8], yc[2 * 54];
    int64_t idx[4] = {0, 3, 49, 7};
    size_t bytes = 999;
    qn_layer_kind kind = (qn_layer_kind)99;
    uint8_t bits[64];
    sm_state = 1515;
    fill_rand(W, 312);
    fill_rand(b, 13);
    fill_rand(x, 48);
    fill_rand(dy, 26);
    fill_rand(We, 800);
    fill_rand(dye, 64);
    fill_rand(Wc, 108);
    fill_rand(xc, 2 * 4 * 7 * 8);

#define RESET_OUT()                                                                                          \
    do {                                                                                                     \
        fill_val(y, 26, SENTINEL);                                                                           \
        fill_val(dx, 48, SENTINEL);                                                                          \
        fill_val(dW, 312, SENTINEL);                                                                         \
        fill_val(db, 13, SENTINEL);                                                                          \
        fill_val(ye, 64, SENTINEL);                                                                          \
        fill_val(dWe, 800, SENTINEL);                                                                        \
        fill_val(yc, 108, SENTINEL);                                                                         \
    } while (0)
#define CHECK_OUT()                                                                                          \
    do {                                                                                                     \
        assert_all_eq(y, 26, SENTINEL, "y");                                                                 \
        assert_all_eq(dx, 48, SENTINEL, "dx");                                                               \
        assert_all_eq(dW, 312, SENTINEL, "dW");                                                              \
        assert_all_eq(db, 13, SENTINEL, "db");                                                               \
        assert_all_eq(ye, 64, SENTINEL, "embedding y");                                                      \
        assert_all_eq(dWe, 800, SENTINEL, "embedding dW");                                                   \
        assert_all_eq(yc, 108, SENTINEL, "conv2d y");                                                        \
    } while (0)

    /* unbound weight */
    RESET_OUT();
    ck_assert_int_eq(qn_layer_forward(l, 2, x, y), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 2, x, y, 0), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_backward(l, 2, x, dy, dx, dW, db, 0), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_forward(le, 4, idx, ye), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_backward(le, 4, idx, dye, NULL, dWe, NULL, 0), QN_ERR_NOT_TRAINED);
    ck_assert_int_eq(qn_layer_forward(lc, 2, xc, yc), QN_ERR_NOT_TRAINED);
    CHECK_OUT();
    ck_assert_int_eq(qn_layer_bind(l, NULL, b), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(l, 2, x, y), QN_ERR_NOT_TRAINED);
    CHECK_OUT();

    ck_assert_int_eq(qn_layer_bind(l, W, b), QN_OK);
    ck_assert_int_eq(qn_layer_bind(le, We, NULL), QN_OK);
    ck_assert_int_eq(qn_layer_bind(lc, Wc, b), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.3f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(le, QN_NOISE_SCALAR, 0.3f, 4), QN_OK);
    ck_assert_int_eq(qn_layer_set_noise(lc, QN_NOISE_PROXY, 0.3f, 3), QN_OK);

    /* NULL x / y / dy / dweight, batch 0 */
    RESET_OUT();
    ck_assert_int_eq(qn_layer_forward(l, 2, NULL, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(l, 2, x, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(l, 0, x, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 2, NULL, y, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 2, x, NULL, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(l, 0, x, y, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(l, 2, NULL, dy, dx, dW, db, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(l, 2, x, NULL, dx, dW, db, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(l, 2, x, dy, dx, NULL, db, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(l, 0, x, dy, dx, dW, db, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(lc, 2, NULL, yc), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(lc, 0, xc, yc, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(le, 4, NULL, ye), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward(le, 0, idx, ye), QN_ERR_INVALID_ARG);
    CHECK_OUT();

    /* embedding indices out of range (the bad one last: nothing may be written before the check) */
    idx[3] = -1;
    ck_assert_int_eq(qn_layer_forward(le, 4, idx, ye), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(le, 4, idx, ye, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(le, 4, idx, dye, NULL, dWe, NULL, 1), QN_ERR_INVALID_ARG);
    idx[3] = 50;
    ck_assert_int_eq(qn_layer_forward(le, 4, idx, ye), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(le, 4, idx, ye, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(le, 4, idx, dye, NULL, dWe, NULL, 1), QN_ERR_INVALID_ARG);
    idx[3] = INT64_MAX;
    ck_assert_int_eq(qn_layer_forward(le, 4, idx, ye), QN_ERR_INVALID_ARG);
    idx[3] = INT64_MIN;
    ck_assert_int_eq(qn_layer_forward(le, 4, idx, ye), QN_ERR_INVALID_ARG);
    idx[3] = 7;
    /* embeddings take no dx */
    fill_val(dxe, 4, SENTINEL);
    ck_assert_int_eq(qn_layer_backward(le, 4, idx, dye, dxe, dWe, NULL, 1), QN_ERR_INVALID_ARG);
    assert_all_eq(dxe, 4, SENTINEL, "embedding dx");
    CHECK_OUT();
    {
        float ok[64];
        ck_assert_int_eq(qn_layer_forward(le, 4, idx, ok), QN_OK);
        ck_assert(ok[0] == We[0] && ok[16] == We[3 * 16] && ok[32] == We[49 * 16] &&
                  ok[63] == We[7 * 16 + 15]);
    }

    /* NULL layer */
    ck_assert_int_eq(qn_layer_forward(NULL, 2, x, y), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_forward_noisy(NULL, 2, x, y, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_backward(NULL, 2, x, dy, dx, dW, db, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_bind(NULL, W, b), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_noise(NULL, QN_NOISE_PROXY, 0.1f, 4), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_seed(NULL, 1, 2), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_grad_mode(NULL, QN_GRAD_STE), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_scalar_noise(NULL, 8, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 10),
                     QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_pq_noise(NULL, 8, 15, 10), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_conv2d_geometry(NULL, 1, 1, 0, 0, 1, 1), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_input_size(NULL, 5, 5), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_get_output_size(NULL, &bytes, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_get_sizes(NULL, &bytes, NULL, NULL, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_get_kind(NULL, &kind), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_workspace_size(NULL, 2, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_set_workspace(NULL, NULL, 0), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_mask_size(NULL, &bytes, &bytes), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_export_mask(NULL, 0, bits, sizeof bits, NULL), QN_ERR_INVALID_ARG);
    ck_assert_uint_eq(bytes, 999);
    ck_assert_int_eq(kind, 99);
    /* NULL out pointers */
    ck_assert_int_eq(qn_layer_get_kind(l, NULL), QN_ERR_INVALID_ARG);
    ck_assert_int_eq(qn_layer_workspace_size(l, 2, NULL), QN_ERR_INVALID_ARG);
    CHECK_OUT();
    /* W and b were never written */
    ck_assert_int_eq(qn_layer_forward(l, 2, x, y), QN_OK);
#undef RESET_OUT
#undef CHECK_OUT
    qn_layer_destroy(l);
    qn_layer_destroy(le);
    qn_layer_destroy(lc);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* thread counts                                                                               */

/* Masks, noisy outputs and gradients are identical with 1, 2 and "all" library threads (the
 * layer is large enough, 131072 blocks, for the parallel passes to engage). */
START_TEST(same_results_at_any_thread_count)
{
    const size_t in = 1024, out = 512, batch = 3, nw = in * out;
    const unsigned settings[3] = {1, 2, 0};
    float *W = malloc(nw * sizeof(float)), *x = malloc(batch * in * sizeof(float));
    float *dy = malloc(batch * out * sizeof(float));
    float *y[3], *dW[3], *dx[3];
    uint8_t *mask[3];
    size_t nbytes = 0, i;
    int t;
    uint64_t st = 1;
    for (i = 0; i < nw; i++)
        W[i] = (float)((st = st * 6364136223846793005ull + 1442695040888963407ull) >> 40) / 16777216.0f - 0.5f;
    for (i = 0; i < batch * in; i++)
        x[i] = (float)(i % 17) * 0.0625f - 0.5f;
    for (i = 0; i < batch * out; i++)
        dy[i] = (float)(i % 11) * 0.125f - 0.6f;
    for (t = 0; t < 3; t++) {
        qn_context *ctx = new_ctx();
        qn_layer *l = NULL;
        unsigned got = 99;
        ck_assert_int_eq(qn_context_set_threads(ctx, settings[t]), QN_OK);
        ck_assert_int_eq(qn_context_get_threads(ctx, &got), QN_OK);
        ck_assert_uint_eq(got, settings[t]);
        ck_assert_int_eq(qn_layer_create_linear(ctx, in, out, &l), QN_OK);
        ck_assert_int_eq(qn_layer_bind(l, W, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_set_noise(l, QN_NOISE_PROXY, 0.2f, 4), QN_OK);
        ck_assert_int_eq(qn_layer_set_seed(l, 11, 5), QN_OK);
        ck_assert_int_eq(qn_layer_mask_size(l, NULL, &nbytes), QN_OK);
        mask[t] = malloc(nbytes);
        y[t] = malloc(batch * out * sizeof(float));
        dW[t] = calloc(nw, sizeof(float));
        dx[t] = malloc(batch * in * sizeof(float));
        ck_assert_int_eq(qn_layer_export_mask(l, 42, mask[t], nbytes, NULL), QN_OK);
        ck_assert_int_eq(qn_layer_forward_noisy(l, batch, x, y[t], 42), QN_OK);
        ck_assert_int_eq(qn_layer_backward(l, batch, x, dy, dx[t], dW[t], NULL, 42), QN_OK);
        if (t > 0) {
            ck_assert(memcmp(mask[t], mask[0], nbytes) == 0);
            ck_assert(memcmp(y[t], y[0], batch * out * sizeof(float)) == 0);
            ck_assert(memcmp(dx[t], dx[0], batch * in * sizeof(float)) == 0);
            ck_assert(memcmp(dW[t], dW[0], nw * sizeof(float)) == 0);
        }
        qn_layer_destroy(l);
        qn_context_destroy(ctx);
    }
    {
        qn_context *ctx = new_ctx();
        ck_assert_int_eq(qn_context_set_threads(ctx, 100000), QN_ERR_INVALID_ARG);
        ck_assert_int_eq(qn_context_set_threads(NULL, 1), QN_ERR_INVALID_ARG);
        qn_context_destroy(ctx);
    }
    for (t = 0; t < 3; t++) {
        free(mask[t]);
        free(y[t]);
        free(dW[t]);
        free(dx[t]);
    }
    free(W);
    free(x);
    free(dy);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("layer");
    TCase *tl = tcase_create("linear"), *tc = tcase_create("conv2d"), *te = tcase_create("embedding");
    TCase *tm = tcase_create("masks"), *tg = tcase_create("gradients"), *tn = tcase_create("noise_details");
    TCase *tw = tcase_create("workspace"), *tb = tcase_create("bad_input");
    tcase_add_test(tl, linear_fixed_shapes);
    tcase_add_test(tl, linear_random_shapes);
    tcase_add_test(tc, conv2d_fixed_shapes);
    tcase_add_test(tc, conv2d_random_shapes);
    tcase_add_test(te, embedding_fixed_and_random_shapes);
    tcase_add_test(tm, masks_match_rng_contract);
    tcase_add_test(tm, masks_deterministic_and_distinct);
    tcase_add_test(tm, masks_threshold_is_strict);
    tcase_add_test(tm, masks_dropped_fraction);
    tcase_add_test(tm, masks_same_under_every_isa_cap);
    tcase_add_test(tg, gradients_finite_differences);
    tcase_add_test(tn, scalar_bits_2_to_8);
    tcase_add_test(tn, scalar_update_step_and_clipping);
    tcase_add_test(tn, pq_clustered_weights);
    tcase_add_test(tn, pq_default_settings);
    tcase_add_test(tw, workspace_sizes);
    tcase_add_test(tb, bad_creation);
    tcase_add_test(tb, bad_noise_settings);
    tcase_add_test(tb, bad_calls_leave_outputs_untouched);
    tcase_set_timeout(tl, 120);
    tcase_set_timeout(tc, 120);
    tcase_set_timeout(te, 120);
    tcase_set_timeout(tm, 120);
    tcase_set_timeout(tg, 120);
    tcase_set_timeout(tn, 120);
    tcase_set_timeout(tw, 120);
    tcase_set_timeout(tb, 120);
    suite_add_tcase(s, tl);
    suite_add_tcase(s, tc);
    suite_add_tcase(s, te);
    tcase_add_test(tm, same_results_at_any_thread_count);
    suite_add_tcase(s, tm);
    suite_add_tcase(s, tg);
    suite_add_tcase(s, tn);
    suite_add_tcase(s, tw);
    suite_add_tcase(s, tb);
    return qn_test_run(s);
}
