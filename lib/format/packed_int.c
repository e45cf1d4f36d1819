/*
 * libqnoise internal: packed weights of kind scalar (packed.h, packed_int.h): int8 and int4.
 * SPDX-License-Identifier: MIT
 *
 * Repack (once, here): the codes q (stored as q - qmin) of a rows x cols tensor become
 *   bits 5..8: signed int8 v = q - shift, zero' = zero - shift, shift = 128 for 8-bit affine
 *              codes (0..255 does not fit int8) and 0 otherwise;
 *   bits 2..4: int4 v = q - qmin in 0..15, zero' = zero - qmin;
 * so that W[r][c] = (v - zero') * scale, v - zero' = q - zero exactly. Layout: kernels.h
 * (qn_k_intw): 16-row panels, 64-byte blocks of 4 (int8) or 8 (int4) columns.
 *
 * gemm has four paths (packed_int.h), chosen by M unless a test or a benchmark forces one:
 *   registers  fp32 activations, weights decoded in registers, the zero point folded out of the
 *              loop with the row sums of x (memory-bound at small M: 1 or 1/2 byte per weight);
 *   panels     fp32 activations, 32 x 256 tiles of W decoded exactly (as qn_qtensor_decode) on
 *              each thread's stack, x packed once per call, an FMA micro-kernel (f32_panel);
 *   sgemm      the same panels (1 MiB) handed to cblas_sgemm (measured slower; kept for larger
 *              machines and for comparison);
 *   quantized  activations quantized per row to u8 (VNNI) or u7 and int8 dot products (opt-in).
 * Output rows (whole panels, pairs of panels for the panels path) are split across
 * qn_threads(ctx) OpenMP threads; calls under MT_MIN_WORK multiply-adds stay on one thread.
 */
#include "format/packed_int.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <string.h>

#include "qn_config.h"

#if QN_HAVE_OPENMP
#include <omp.h>
#endif

/* sgemm panels: SG_PANELS * 16 rows x SG_COLS columns of fp32 (1 MiB: half of this CPU's L2). */
#define SG_PANELS 16
#define SG_COLS 1024

/* Decoded-panel path: 32 weight rows x PN_COLS columns of fp32 on each thread's stack (32 KiB);
 * x (packed in the workspace) in blocks of columns of about PN_XBYTES that stay in L2. */
#define PN_COLS 256
#define PN_XBYTES ((size_t)1 << 20)

/* Below this many multiply-adds a call stays on one thread: waking a team of passive OpenMP
 * threads costs tens of microseconds (measured: 1024 x 1024 at M = 1 was slower on two threads). */
#define MT_MIN_WORK ((size_t)1 << 23)

typedef struct qn_packed_int {
    qn_k_intw w;
    uint8_t *wbuf;
    float *scale, *zero;
    int32_t *zero_i, *colsum;
    size_t npanels;
    qn_packed_int_path path;
    size_t panels_min_m, sgemm_min_m; /* the crossovers of AUTO (packed_int.h) */
    size_t mt_min_work;               /* MT_MIN_WORK, or what a test set */
    int q_ok;          /* the quantized path cannot overflow int32 */
    unsigned act_max;  /* 255 with VNNI, else 127 */
    qn_k_int_gemm_f32_fn f32;
    qn_k_int_decode_fn decode;
    qn_k_int_gemm_q_fn gq;
    qn_k_f32_panel_fn panel;
} qn_packed_int;

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

static qn_packed_int_path choose(const qn_packed_int *pi, size_t M)
{
    switch (pi->path) {
    case QN_PACKED_INT_REGISTERS:
        return QN_PACKED_INT_REGISTERS;
    case QN_PACKED_INT_SGEMM:
        return QN_PACKED_INT_SGEMM;
    case QN_PACKED_INT_QUANTIZED:
        return QN_PACKED_INT_QUANTIZED;
    case QN_PACKED_INT_PANELS:
        return QN_PACKED_INT_PANELS;
    case QN_PACKED_INT_AUTO:
        break;
    }
    if (pi->sgemm_min_m > 0 && M >= pi->sgemm_min_m)
        return QN_PACKED_INT_SGEMM;
    return M >= pi->panels_min_m ? QN_PACKED_INT_PANELS : QN_PACKED_INT_REGISTERS;
}

/* The sgemm path needs int-sized BLAS arguments; otherwise the registers path is taken. */
static int sgemm_fits(const qn_packed_int *pi, size_t M, size_t ldx, size_t ldy)
{
    return M <= INT_MAX && ldx <= INT_MAX && ldy <= INT_MAX && pi->w.cols <= INT_MAX;
}

/* Bytes of one row of quantized activations (64-byte multiple). */
static size_t xq_ld(const qn_packed_int *pi)
{
    return round_up(pi->w.groups * QN_K_INT_KG(pi->w.int4), 64);
}

static size_t pi_workspace(const qn_packed *p, size_t M)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    size_t a, b;
    if (M == 0)
        return 0;
    switch (choose(pi, M)) {
    case QN_PACKED_INT_SGEMM: {
        /* the panel, or (arguments beyond int) the registers path's row sums */
        size_t np = pi->npanels < SG_PANELS ? pi->npanels : SG_PANELS;
        size_t kc = pi->w.cols < SG_COLS ? pi->w.cols : SG_COLS;
        a = np * 16 * kc * sizeof(float);
        b = round_up(M * sizeof(float), 64);
        return a > b ? a : b;
    }
    case QN_PACKED_INT_QUANTIZED:
        /* xq rows, then the per-row parameters (64-byte aligned) */
        if (qn_mul_overflow(M, xq_ld(pi), &a) || qn_mul_overflow(M, sizeof(qn_k_xq), &b) ||
            qn_add_overflow(a, round_up(b, 64), &a))
            return SIZE_MAX;
        return a;
    case QN_PACKED_INT_REGISTERS:
        return round_up(M * sizeof(float), 64); /* sum of each row of x */
    case QN_PACKED_INT_PANELS:
        /* x packed in tiles of 8 rows */
        if (qn_mul_overflow(round_up(M, 8), pi->w.cols, &a) || qn_mul_overflow(a, sizeof(float), &a))
            return SIZE_MAX;
        return a;
    default:
        return 0;
    }
}

/* Threads for a call doing `work` multiply-adds over npanels panels. */
static int team_size(const qn_packed *p, size_t work, size_t npanels)
{
    int nt = qn_threads(p->ctx);
    if (work < ((const qn_packed_int *)p->impl)->mt_min_work)
        return 1;
    if ((size_t)nt > npanels)
        nt = (int)npanels;
    return nt < 1 ? 1 : nt;
}

static void run_f32(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                    size_t ldy, float *xsum)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    size_t np = pi->npanels, m, c;
    int nt = team_size(p, M * p->rows * p->cols, np);
    /* the kernels fold the zero point out of their loop: y = b + s (x.v - zero sum x) */
    for (m = 0; m < M; m++) {
        const float *xm = x + m * ldx;
        double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
        for (c = 0; c + 4 <= p->cols; c += 4) {
            s0 += xm[c];
            s1 += xm[c + 1];
            s2 += xm[c + 2];
            s3 += xm[c + 3];
        }
        for (; c < p->cols; c++)
            s0 += xm[c];
        xsum[m] = (float)((s0 + s1) + (s2 + s3));
    }
#if QN_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
        pi->f32(&pi->w, np * t / n, np * (t + 1) / n, M, x, ldx, xsum, bias, y, ldy);
    }
#else
    (void)nt;
    pi->f32(&pi->w, 0, np, M, x, ldx, xsum, bias, y, ldy);
#endif
}

static void run_sgemm(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                      size_t ldy, float *panel)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    size_t kg = QN_K_INT_KG(pi->w.int4), gchunk = SG_COLS / kg, groups = pi->w.groups;
    size_t pp, g0, m;
    int nt = team_size(p, M * p->rows * p->cols, SG_PANELS);
    for (pp = 0; pp < pi->npanels; pp += SG_PANELS) {
        size_t np = pi->npanels - pp < SG_PANELS ? pi->npanels - pp : SG_PANELS;
        size_t nr = np * 16, o0 = pp * 16, nout = p->rows - o0 < nr ? p->rows - o0 : nr;
        if (bias)
            for (m = 0; m < M; m++)
                memcpy(y + m * ldy + o0, bias + o0, nout * sizeof(float));
        for (g0 = 0; g0 < groups; g0 += gchunk) {
            size_t g1 = groups - g0 < gchunk ? groups : g0 + gchunk;
            size_t c0 = g0 * kg, c1 = g1 * kg < p->cols ? g1 * kg : p->cols;
            ptrdiff_t q;
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
#endif
            for (q = 0; q < (ptrdiff_t)np; q++)
                pi->decode(&pi->w, pp + (size_t)q, g0, g1, panel + 16 * (size_t)q, nr);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)M, (int)nout, (int)(c1 - c0), 1.0f,
                        x + c0, (int)ldx, panel, (int)nr, (bias || g0 > 0) ? 1.0f : 0.0f, y + o0, (int)ldy);
        }
    }
    (void)nt;
}

/*
 * Panel pairs [q0, q1) (32 weight rows each) for all M rows of x (packed in tiles of 8 rows, xp).
 * Columns go in blocks of kb (a multiple of PN_COLS) such that x's block, M x kb floats, stays in
 * L2 while every pair passes over it: each weight is decoded once per call, and y is read back
 * once per block (only when x is too large for one block).
 */
static void panels_range(const qn_packed_int *pi, size_t q0, size_t q1, size_t M, const float *xp,
                         const float *bias, float *y, size_t ldy)
{
    _Alignas(64) float buf[32 * PN_COLS];
    const qn_k_intw *w = &pi->w;
    size_t kg = QN_K_INT_KG(w->int4), ldxp = 8 * w->cols, kb, k0, q, c0;
    kb = PN_XBYTES / ((M + 7) / 8 * 8 * sizeof(float)) / PN_COLS * PN_COLS;
    kb = kb < PN_COLS ? PN_COLS : kb;
    for (k0 = 0; k0 < w->cols; k0 += kb) {
        size_t k1 = w->cols - k0 < kb ? w->cols : k0 + kb;
        for (q = q0; q < q1; q++) {
            size_t p = 2 * q, o0 = 16 * p, nr = w->rows - o0 < 32 ? w->rows - o0 : 32;
            for (c0 = k0; c0 < k1; c0 += PN_COLS) {
                size_t c1 = k1 - c0 < PN_COLS ? k1 : c0 + PN_COLS, g0 = c0 / kg, g1 = (c1 + kg - 1) / kg;
                pi->decode(w, p, g0, g1, buf, 32);
                if (nr > 16)
                    pi->decode(w, p + 1, g0, g1, buf + 16, 32);
                pi->panel(buf, 32, nr, c1 - c0, M, xp + 8 * c0, ldxp, bias ? bias + o0 : NULL, c0 == 0, y + o0,
                          ldy);
            }
        }
    }
}

/* x in tiles of 8 rows: xp[t*8*cols + 8c + j] = x[(8t + j)*ldx + c], 0 past M. */
static void pack_x_tile(const float *x, size_t ldx, size_t M, size_t cols, size_t t, float *xp)
{
    size_t j, c, n = M - 8 * t < 8 ? M - 8 * t : 8;
    float *o = xp + t * 8 * cols;
    for (j = 0; j < n; j++) {
        const float *xr = x + (8 * t + j) * ldx;
        for (c = 0; c < cols; c++)
            o[8 * c + j] = xr[c];
    }
    for (; j < 8; j++)
        for (c = 0; c < cols; c++)
            o[8 * c + j] = 0.0f;
}

static void run_panels(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                       size_t ldy, float *xp)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    size_t npairs = (pi->npanels + 1) / 2, ntiles = (M + 7) / 8;
    int nt = team_size(p, M * p->rows * p->cols, npairs);
#if QN_HAVE_OPENMP
    ptrdiff_t t;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t i = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
#pragma omp for schedule(static)
        for (t = 0; t < (ptrdiff_t)ntiles; t++)
            pack_x_tile(x, ldx, M, p->cols, (size_t)t, xp);
        panels_range(pi, npairs * i / n, npairs * (i + 1) / n, M, xp, bias, y, ldy);
    }
#else
    size_t t;
    (void)nt;
    for (t = 0; t < ntiles; t++)
        pack_x_tile(x, ldx, M, p->cols, t, xp);
    panels_range(pi, 0, npairs, M, xp, bias, y, ldy);
#endif
}

/* Quantize row x[0..cols) to codes 0..L with a zero point (the range always contains 0). */
static void quantize_row(const float *x, size_t cols, unsigned L, size_t ldq, uint8_t *q, qn_k_xq *xp)
{
    float lo = 0.0f, hi = 0.0f, inv;
    int finite = 1;
    int32_t z, sum = 0;
    size_t c;
    for (c = 0; c < cols; c++) {
        float v = x[c];
        finite &= isfinite(v) != 0;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    memset(q, 0, ldq);
    xp->zero = 0;
    xp->sum = 0;
    if (!finite || !isfinite(hi - lo)) {
        xp->scale = NAN; /* the row's outputs become NaN, as in a dense product */
        return;
    }
    if (hi == lo) { /* all zeros */
        xp->scale = 0.0f;
        return;
    }
    xp->scale = (hi - lo) / (float)L;
    inv = (float)L / (hi - lo);
    z = (int32_t)nearbyintf(-lo * inv);
    z = z < 0 ? 0 : (z > (int32_t)L ? (int32_t)L : z);
    for (c = 0; c < cols; c++) {
        int32_t v = (int32_t)nearbyintf(x[c] * inv) + z;
        v = v < 0 ? 0 : (v > (int32_t)L ? (int32_t)L : v);
        q[c] = (uint8_t)v;
        sum += v;
    }
    xp->zero = z;
    xp->sum = sum - (int32_t)cols * z;
}

static void run_quantized(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                          size_t ldy, void *ws)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    size_t ldq = xq_ld(pi), np = pi->npanels;
    uint8_t *xq = (uint8_t *)ws;
    qn_k_xq *xp = (qn_k_xq *)(void *)(xq + M * ldq);
    int nt = team_size(p, M * p->rows * p->cols, np);
    ptrdiff_t m;
#if QN_HAVE_OPENMP
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t t = (size_t)omp_get_thread_num(), n = (size_t)omp_get_num_threads();
#pragma omp for schedule(static)
        for (m = 0; m < (ptrdiff_t)M; m++)
            quantize_row(x + (size_t)m * ldx, p->cols, pi->act_max, ldq, xq + (size_t)m * ldq, xp + m);
        pi->gq(&pi->w, np * t / n, np * (t + 1) / n, M, xq, ldq, xp, bias, y, ldy);
    }
#else
    (void)nt;
    for (m = 0; m < (ptrdiff_t)M; m++)
        quantize_row(x + (size_t)m * ldx, p->cols, pi->act_max, ldq, xq + (size_t)m * ldq, xp + m);
    pi->gq(&pi->w, 0, np, M, xq, ldq, xp, bias, y, ldy);
#endif
}

static void pi_gemm(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                    size_t ldy, void *ws)
{
    const qn_packed_int *pi = (const qn_packed_int *)p->impl;
    if (M == 0)
        return;
    switch (choose(pi, M)) {
    case QN_PACKED_INT_SGEMM:
        if (sgemm_fits(pi, M, ldx, ldy)) {
            run_sgemm(p, M, x, ldx, bias, y, ldy, (float *)ws);
            return;
        }
        break;
    case QN_PACKED_INT_QUANTIZED:
        run_quantized(p, M, x, ldx, bias, y, ldy, ws);
        return;
    case QN_PACKED_INT_PANELS:
        run_panels(p, M, x, ldx, bias, y, ldy, (float *)ws);
        return;
    default:
        break;
    }
    run_f32(p, M, x, ldx, bias, y, ldy, (float *)ws);
}

static void pi_free(const qn_context *ctx, qn_packed_int *pi)
{
    qn_free(ctx, pi->wbuf);
    qn_free(ctx, pi->scale);
    qn_free(ctx, pi->zero);
    qn_free(ctx, pi->zero_i);
    qn_free(ctx, pi->colsum);
    qn_free(ctx, pi);
}

static void pi_destroy(qn_packed *p)
{
    pi_free(p->ctx, (qn_packed_int *)p->impl);
    p->impl = NULL;
}

static const qn_packed_ops pi_ops = {pi_workspace, pi_gemm, pi_destroy};

qn_status qn_packed_int_init(qn_packed *p, const qn_qtensor *qt)
{
    const qn_context *ctx = p->ctx;
    const qn_kernels *k = ctx->k;
    qn_packed_int *pi;
    size_t rows = qt->rows, cols = qt->cols, kg, npanels, groups, nbytes, nr, r, c;
    int int4 = qt->bits <= 4;
    int32_t shift, vlo, vhi;
    int64_t maxdev = 0;
    qn_cpu_features f;

    if (qt->kind != QN_QTENSOR_SCALAR || qt->bits < 2 || qt->bits > 8 || rows == 0 || cols == 0 || !qt->q)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "packing a scalar tensor: not a valid scalar tensor");
    kg = QN_K_INT_KG(int4);
    npanels = (rows + 15) / 16;
    groups = (cols + kg - 1) / kg;
    nr = npanels * 16;
    if (qn_mul_overflow(npanels, groups, &nbytes) || qn_mul_overflow(nbytes, 64, &nbytes))
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "packing a %zu x %zu scalar tensor: size overflows", rows, cols);

    pi = (qn_packed_int *)qn_calloc(ctx, 1, sizeof *pi);
    if (!pi)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "packing a scalar tensor: out of memory");
    pi->wbuf = (uint8_t *)qn_calloc(ctx, nbytes, 1);
    pi->scale = (float *)qn_calloc(ctx, nr, sizeof(float));
    pi->zero = (float *)qn_calloc(ctx, nr, sizeof(float));
    pi->zero_i = (int32_t *)qn_calloc(ctx, nr, sizeof(int32_t));
    pi->colsum = (int32_t *)qn_calloc(ctx, nr, sizeof(int32_t));
    if (!pi->wbuf || !pi->scale || !pi->zero || !pi->zero_i || !pi->colsum) {
        pi_free(ctx, pi);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "packing a %zu x %zu scalar tensor: out of memory", rows, cols);
    }

    /* values v and their range [vlo, vhi] */
    shift = (!int4 && qt->scheme == QN_QSCHEME_AFFINE && qt->bits == 8) ? 128 : 0;
    vlo = int4 ? 0 : qt->qmin - shift;
    vhi = int4 ? qt->qmax - qt->qmin : qt->qmax - shift;
    for (r = 0; r < rows; r++) {
        size_t ch = qt->per_channel ? r : 0, p16 = r / 16, rr = r % 16;
        int32_t zp = qt->zero[ch] - (int4 ? qt->qmin : shift);
        uint8_t *wr = pi->wbuf + p16 * groups * 64 + 16 * (rr % 4) + 4 * (rr / 4);
        const uint8_t *qr = qt->q + r * cols;
        int64_t sum = 0, d0 = (int64_t)vlo - zp, d1 = (int64_t)vhi - zp;
        d0 = d0 < 0 ? -d0 : d0;
        d1 = d1 < 0 ? -d1 : d1;
        maxdev = d0 > maxdev ? d0 : maxdev;
        maxdev = d1 > maxdev ? d1 : maxdev;
        pi->scale[r] = qt->scale[ch];
        pi->zero[r] = (float)zp;
        pi->zero_i[r] = zp;
        for (c = 0; c < cols; c++) {
            uint8_t *b = wr + (c / kg) * 64;
            size_t kk = c % kg;
            if (int4) {
                uint8_t u = (uint8_t)(qr[c] & 15u);
                b[kk % 4] = (uint8_t)(b[kk % 4] | (kk < 4 ? u : (uint8_t)(u << 4)));
                sum += u;
            } else {
                int32_t v = (int32_t)qr[c] + qt->qmin - shift;
                b[kk] = (uint8_t)(v & 0xff);
                sum += v;
            }
        }
        { /* wrapping int32, as the kernels (only used when it cannot wrap: q_ok) */
            uint32_t u = (uint32_t)(uint64_t)sum;
            pi->colsum[r] = u <= 0x7fffffffu ? (int32_t)u : -(int32_t)(~u) - 1;
        }
    }

    pi->npanels = npanels;
    pi->w.w = pi->wbuf;
    pi->w.rows = rows;
    pi->w.cols = cols;
    pi->w.groups = groups;
    pi->w.int4 = int4;
    pi->w.scale = pi->scale;
    pi->w.zero = pi->zero;
    pi->w.zero_i = pi->zero_i;
    pi->w.colsum = pi->colsum;
    /* int4 table offset: the common zero point when every row has the same (exact), else mid-range */
    pi->w.c4 = (float)((vlo + vhi) / 2);
    if (int4) {
        int same = 1;
        for (r = 1; r < rows; r++)
            same &= pi->zero_i[r] == pi->zero_i[0];
        if (same)
            pi->w.c4 = pi->zero[0];
    }
    pi->path = QN_PACKED_INT_AUTO;
    pi->panels_min_m = QN_PACKED_INT_PANELS_MIN_M;
    pi->mt_min_work = MT_MIN_WORK;
    pi->sgemm_min_m = QN_PACKED_INT_SGEMM_MIN_M;
    /* |T| <= cols * 255 * maxdev must fit int32 */
    pi->q_ok = (double)cols * 255.0 * (double)maxdev < 2147483647.0;
    pi->f32 = k->int_gemm_f32;
    pi->decode = k->int_decode;
    pi->gq = k->int_gemm_q;
    pi->panel = k->f32_panel;
    pi->act_max = 127;
    qn_cpu_probe(&f);
    if (k->int_gemm_q_vnni && f.vnni) {
        pi->gq = k->int_gemm_q_vnni;
        pi->act_max = 255;
    }
    p->impl = pi;
    p->ops = &pi_ops;
    return QN_OK;
}

qn_status qn_packed_int_set_path(qn_packed *p, qn_packed_int_path path)
{
    qn_packed_int *pi;
    if (!p || p->kind != QN_QTENSOR_SCALAR || !p->impl || (unsigned)path > (unsigned)QN_PACKED_INT_PANELS)
        return QN_ERR_INVALID_ARG;
    pi = (qn_packed_int *)p->impl;
    if (path == QN_PACKED_INT_QUANTIZED && !pi->q_ok)
        return qn_fail(p->ctx, QN_ERR_UNSUPPORTED, "quantized activations: %zu columns could overflow int32",
                       p->cols);
    pi->path = path;
    return QN_OK;
}

qn_packed_int_path qn_packed_int_path_for(const qn_packed *p, size_t M)
{
    return choose((const qn_packed_int *)p->impl, M);
}

void qn_packed_int_set_thread_min_work(qn_packed *p, size_t macs)
{
    ((qn_packed_int *)p->impl)->mt_min_work = macs;
}

unsigned qn_packed_int_act_max(const qn_packed *p)
{
    return ((const qn_packed_int *)p->impl)->act_max;
}

const qn_k_intw *qn_packed_int_weights(const qn_packed *p)
{
    return &((const qn_packed_int *)p->impl)->w;
}
