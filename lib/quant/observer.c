/*
 * libqnoise: scalar quantization parameters (observers).
 * SPDX-License-Identifier: MIT
 *
 * The four observers follow PyTorch 1.13's torch.ao.quantization observers
 * (MinMaxObserver, PerChannelMinMaxObserver with ch_axis = 0,
 * MovingAverageMinMaxObserver, HistogramObserver), which the tests use as
 * the oracle. Where PyTorch computes in float32 this file does the same
 * float operations in the same order, so that the results agree to the bit;
 * where PyTorch computes in double (Python floats) this file uses double.
 * Each float operation is its own statement and contraction is off, so no
 * compiler fuses a multiply and an add into an FMA that PyTorch does not do.
 *
 * Known deviations from PyTorch 1.13 (see also tests/observer_reference.py):
 *  - HistogramObserver.forward builds its histogram with
 *    histc(min = int(min), max = int(max)): the bounds are truncated to
 *    integers (unless both truncate to the same integer). Here the 2048 bins
 *    always span [min w, max w], as the bin width used by the search assumes.
 *  - HistogramObserver's target grid is 2^8 levels for (q)int8 whatever
 *    quant_min/quant_max say; here it is 2^bits (fairseq's int4 bug fixed).
 *  - The L2 error of a candidate range is summed in double (PyTorch sums the
 *    2048 float32 terms with its own cascade order), and it is computed on a
 *    copy of the problem scaled by a power of two so that no intermediate
 *    overflows or underflows (PyTorch's float32 cubes overflow for ranges
 *    beyond ~1e15). Scaling by 2^k is exact, so per-bin terms are PyTorch's
 *    times 2^(2k); only the order of summation differs.
 *  - Counts beyond 2^24 are exact here (PyTorch's float32 histogram rounds).
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "quant/observer.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define FN "qn_observe_qparams"

/* ------------------------------------------------------------------------- */
/* Grid and the min-max formula (PyTorch's _calculate_qparams)                */
/* ------------------------------------------------------------------------- */

void qn_qgrid(qn_qscheme scheme, unsigned bits, int32_t *qmin, int32_t *qmax)
{
    if (bits < 2 || bits > 8) { /* not a valid grid: degenerate, callers validate first */
        *qmin = 0;
        *qmax = 0;
        return;
    }
    if (scheme == QN_QSCHEME_SYMMETRIC) {
        *qmax = ((int32_t)1 << (bits - 1)) - 1;
        *qmin = -*qmax;
    } else {
        *qmin = 0;
        *qmax = ((int32_t)1 << bits) - 1;
    }
}

size_t qn_observer_channels(qn_observer obs, size_t rows)
{
    switch (obs) {
    case QN_OBSERVER_PER_CHANNEL:
        return rows;
    case QN_OBSERVER_MINMAX:
    case QN_OBSERVER_MOVING_AVERAGE:
    case QN_OBSERVER_HISTOGRAM:
        return 1;
    }
    return 0;
}

/*
 * (scale, zero) of the range [lo, hi] widened to contain 0. All float32, as
 * in PyTorch: scale = max((mx - mn) / float(qmax - qmin), eps) and
 * zero = clamp(qmin - round_half_even(mn / scale), qmin, qmax) (affine);
 * scale = max(max(-mn, mx) / (float(qmax - qmin) / 2), eps), zero = 0
 * (symmetric, signed grid). Returns 0, or 1 when the scale is not finite
 * (a range wider than FLT_MAX).
 */
static int minmax_qparams(qn_qscheme scheme, int32_t qmin, int32_t qmax, float lo, float hi,
                          float *scale, int32_t *zero)
{
    const float mn = lo < 0.0f ? lo : 0.0f;
    const float mx = hi > 0.0f ? hi : 0.0f;
    float s, width;
    if (scheme == QN_QSCHEME_SYMMETRIC) {
        const float neg = -mn;
        const float half = (float)(qmax - qmin) / 2.0f; /* 2^(bits-1) - 1, exact */
        width = neg > mx ? neg : mx;
        s = width / half;
        if (!isfinite(s))
            return 1;
        if (!(s > FLT_EPSILON))
            s = FLT_EPSILON;
        *scale = s;
        *zero = 0;
        return 0;
    } else {
        float r, z;
        width = mx - mn;
        s = width / (float)(qmax - qmin);
        if (!isfinite(s))
            return 1;
        if (!(s > FLT_EPSILON))
            s = FLT_EPSILON;
        r = nearbyintf(mn / s); /* in [-(qmax - qmin) - 1, 0]: mn >= -s * (qmax - qmin) */
        z = (float)qmin - r;
        if (z < (float)qmin)
            z = (float)qmin;
        if (z > (float)qmax)
            z = (float)qmax;
        *scale = s;
        *zero = (int32_t)z;
        return 0;
    }
}

/* Min and max of n values; returns 0, or 1 when a value is not finite. */
static int scan_minmax(const float *w, size_t n, float *lo, float *hi)
{
    float a = w[0], b = w[0];
    size_t i;
    for (i = 0; i < n; i++) {
        const float v = w[i];
        if (!isfinite(v))
            return 1;
        if (v < a)
            a = v;
        if (v > b)
            b = v;
    }
    *lo = a;
    *hi = b;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Histogram observer                                                         */
/* ------------------------------------------------------------------------- */

/*
 * Python-style floor division of floats (torch.div(a, b, rounding_mode =
 * 'floor') for float32), b > 0: the quotient is built from fmod so that it
 * agrees with the remainder, then rounded to the nearer integer.
 */
static float floordiv_f(float a, float b)
{
    const float mod = fmodf(a, b);
    const float num = a - mod;
    float div = num / b;
    float fl;
    if (mod != 0.0f && (mod < 0.0f) != (b < 0.0f))
        div = div - 1.0f;
    if (div == 0.0f)
        return 0.0f; /* PyTorch returns a signed zero; callers clamp to >= 0 */
    fl = floorf(div);
    if (div - fl > 0.5f)
        fl = fl + 1.0f;
    return fl;
}

static float clampf(float v, float lo, float hi)
{
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return v;
}

/*
 * L2 error of quantizing the histogram to dst_nbins uniform levels spanning
 * source bins [s, e] (PyTorch's HistogramObserver._compute_quantization_error):
 * every source bin holds its count with uniform density; mass outside [s, e]
 * is clamped to the first or last level. cum holds cumulative counts; bw is
 * the source bin width (scaled by a power of two, see above). Per-bin terms
 * are computed with PyTorch's float32 operations, in its order.
 */
static double hist_error(const size_t *cum, double bw, long s, long e, unsigned dst_nbins)
{
    const double dst_w = bw * (double)(e - s + 1) / (double)dst_nbins;
    const float bwf = (float)bw;
    const float dw = (float)dst_w;
    const float half = (float)(dst_w / 2.0);
    const float nhalf = (float)(-dst_w / 2.0);
    const float top = (float)(dst_nbins - 1);
    float half2, half3, nhalf2, nhalf3, mid;
    double sum = 0.0;
    long i;

    if (dst_w == 0.0)
        return 0.0;
    half2 = half * half;
    half3 = half2 * half;
    nhalf2 = nhalf * nhalf;
    nhalf3 = nhalf2 * nhalf;
    mid = half3 - nhalf3;
    mid = mid / 3.0f; /* norm of one whole level, per unit density */

    for (i = 0; i < QN_HISTOGRAM_BINS; i++) {
        const size_t cnt = cum[i] - (i > 0 ? cum[i - 1] : 0);
        float density, begin, end, db, de, dbc, dec, x, x3, y, y3, t1, t2, t3, k, norm;
        if (cnt == 0)
            continue; /* its terms are all exactly zero */
        density = (float)cnt / bwf;
        begin = (float)(i - s) * bwf;
        end = begin + bwf;
        db = clampf(floordiv_f(begin, dw), 0.0f, top);
        de = clampf(floordiv_f(end, dw), 0.0f, top);
        dbc = db + 0.5f;
        dbc = dbc * dw;
        dec = de * dw;
        dec = dec + half;

        /* from the start of the bin to the end of its level */
        x = begin - dbc;
        x3 = x * x;
        x3 = x3 * x;
        t1 = half3 - x3;
        t1 = t1 / 3.0f;
        t1 = density * t1;
        /* the whole levels in between */
        k = de - db;
        k = k - 1.0f;
        t2 = density * mid;
        t2 = k * t2;
        /* from the start of the last level to the end of the bin */
        y = end - dec;
        y3 = y * y;
        y3 = y3 * y;
        t3 = y3 - nhalf3;
        t3 = t3 / 3.0f;
        t3 = density * t3;

        norm = t1 + t2;
        norm = norm + t3;
        sum += (double)norm;
    }
    return sum;
}

/*
 * HistogramObserver for one observation of w (n values in [lo, hi], lo < hi,
 * hi - lo finite): 2048-bin histogram, then the greedy search for the range
 * of least L2 error (_non_linear_param_search). Writes the chosen range.
 */
static qn_status histogram_range(const qn_context *ctx, const float *w, size_t n, float lo,
                                 float hi, unsigned bits, float *new_lo, float *new_hi)
{
    const long nb = QN_HISTOGRAM_BINS;
    const unsigned dst_nbins = 1u << bits;
    const float width = hi - lo;
    const double total = (double)n;
    float bwf, off;
    double bw, alpha = 0.0, beta = 1.0, norm_min = INFINITY;
    long start = 0, end = nb - 1;
    size_t *cum, i;
    int ex;

    cum = (size_t *)qn_calloc(ctx, (size_t)nb, sizeof(size_t));
    if (!cum)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, FN ": out of memory (histogram of %ld bins)",
                       nb);

    /* torch.histc over [lo, hi]: bin = trunc((v - lo) * bins / (hi - lo)) in
     * float32, the last bin closed. (v - lo) * 2048 is exact unless it
     * overflows, where PyTorch is undefined; then divide in double. */
    for (i = 0; i < n; i++) {
        const float d = w[i] - lo;
        float t = d * (float)nb;
        long b;
        if (isinf(t))
            t = (float)((double)d * (double)nb / (double)width);
        else
            t = t / width;
        b = t >= (float)nb ? nb - 1 : (long)t;
        cum[b]++;
    }
    for (i = 1; i < (size_t)nb; i++)
        cum[i] += cum[i - 1];

    /* the search's error uses a double bin width (from Python floats); scale
     * it into [1, 2) by a power of two, which changes no decision */
    bw = ((double)hi - (double)lo) / (double)nb;
    (void)frexp(bw, &ex);
    bw = ldexp(bw, 1 - ex);

    while (alpha < beta) {
        const double next_alpha = alpha + 1e-5;
        const double next_beta = beta - 1e-5;
        /* PyTorch compares the float32 cumulative sum with the quantile as a float32 */
        const float qa = (float)(next_alpha * total);
        const float qb = (float)(next_beta * total);
        long l = start, r = end, next_start = start, next_end = end;
        double norm;
        while (l < end && (float)cum[l] < qa)
            l++;
        while (r > start && (float)cum[r] > qb)
            r--;
        if (l - start > end - r) {
            next_start = l;
            alpha = next_alpha;
        } else {
            next_end = r;
            beta = next_beta;
        }
        if (next_start == start && next_end == end)
            continue;
        norm = hist_error(cum, bw, next_start, next_end, dst_nbins);
        if (norm > norm_min)
            break;
        norm_min = norm;
        start = next_start;
        end = next_end;
    }
    qn_free(ctx, cum);

    /* new range from the float32 bin width, as PyTorch */
    bwf = width / (float)nb;
    off = bwf * (float)start;
    *new_lo = lo + off;
    off = bwf * (float)(end + 1);
    *new_hi = lo + off;
    qn_log(ctx, QN_LOG_DEBUG, FN ": histogram of %zu values over [%.9g, %.9g]: bins %ld..%ld, "
           "range [%.9g, %.9g]", n, (double)lo, (double)hi, start, end, (double)*new_lo,
           (double)*new_hi);
    return QN_OK;
}

/* ------------------------------------------------------------------------- */
/* Entry point                                                                */
/* ------------------------------------------------------------------------- */

qn_status qn_observe_qparams(const qn_context *ctx, qn_observer obs, qn_qscheme scheme,
                             unsigned bits, const float *w, size_t rows, size_t cols,
                             qn_ma_state *ma, float *scale, int32_t *zero)
{
    int32_t qmin, qmax;
    size_t n, bytes, r;
    float lo, hi, s;
    int32_t z;

    if (!ctx)
        return QN_ERR_INVALID_ARG;
    if (!w || !scale || !zero)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": w, scale and zero must not be NULL");
    if (obs != QN_OBSERVER_MINMAX && obs != QN_OBSERVER_PER_CHANNEL &&
        obs != QN_OBSERVER_MOVING_AVERAGE && obs != QN_OBSERVER_HISTOGRAM)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": unknown observer %d", (int)obs);
    if (scheme != QN_QSCHEME_AFFINE && scheme != QN_QSCHEME_SYMMETRIC)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": unknown scheme %d", (int)scheme);
    if (bits < 2 || bits > 8)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": bits = %u is outside 2..8", bits);
    if (rows == 0 || cols == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": empty weight (%zu x %zu)", rows, cols);
    if (obs == QN_OBSERVER_MOVING_AVERAGE && !ma)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": the moving-average observer needs its state");
    if (qn_mul_overflow(rows, cols, &n) || qn_mul_overflow(n, sizeof(float), &bytes))
        return qn_fail(ctx, QN_ERR_OVERFLOW, FN ": a %zu x %zu weight overflows size_t", rows,
                       cols);
    qn_qgrid(scheme, bits, &qmin, &qmax);

    if (obs == QN_OBSERVER_PER_CHANNEL) {
        /* check every row before writing any */
        for (r = 0; r < rows; r++) {
            if (scan_minmax(w + r * cols, cols, &lo, &hi))
                return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": row %zu has a non-finite value", r);
            if (minmax_qparams(scheme, qmin, qmax, lo, hi, &s, &z))
                return qn_fail(ctx, QN_ERR_INVALID_ARG,
                               FN ": the range of row %zu overflows float", r);
        }
        for (r = 0; r < rows; r++) {
            (void)scan_minmax(w + r * cols, cols, &lo, &hi);
            (void)minmax_qparams(scheme, qmin, qmax, lo, hi, &scale[r], &zero[r]);
        }
        return QN_OK;
    }

    if (scan_minmax(w, n, &lo, &hi))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": w has a non-finite value");

    if (obs == QN_OBSERVER_MOVING_AVERAGE) {
        float nmin = lo, nmax = hi;
        if (ma->valid) {
            float d;
            if (!isfinite(ma->min) || !isfinite(ma->max))
                return qn_fail(ctx, QN_ERR_INVALID_ARG,
                               FN ": the moving-average state is not finite");
            /* min + c * (cur - min), float32 */
            d = lo - ma->min;
            d = QN_MA_AVERAGING_CONSTANT * d;
            nmin = ma->min + d;
            d = hi - ma->max;
            d = QN_MA_AVERAGING_CONSTANT * d;
            nmax = ma->max + d;
            if (!isfinite(nmin) || !isfinite(nmax))
                return qn_fail(ctx, QN_ERR_INVALID_ARG,
                               FN ": the moving-average range overflows float");
        }
        if (minmax_qparams(scheme, qmin, qmax, nmin, nmax, &s, &z))
            return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": the range of w overflows float");
        ma->valid = 1;
        ma->min = nmin;
        ma->max = nmax;
        *scale = s;
        *zero = z;
        return QN_OK;
    }

    if (obs == QN_OBSERVER_HISTOGRAM && lo < hi) {
        qn_status st;
        if (!isfinite(hi - lo))
            return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": the range of w overflows float");
        st = histogram_range(ctx, w, n, lo, hi, bits, &lo, &hi);
        if (st != QN_OK)
            return st;
    }
    /* (a constant w needs no search: PyTorch's bin width is 0 and the range stays [c, c]) */

    if (minmax_qparams(scheme, qmin, qmax, lo, hi, &s, &z))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, FN ": the range of w overflows float");
    *scale = s;
    *zero = z;
    return QN_OK;
}
