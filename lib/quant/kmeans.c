/*
 * libqnoise internal: k-means over blocks (Lloyd's algorithm).
 * SPDX-License-Identifier: MIT
 *
 * Outline of qn_kmeans_train (contract in kmeans.h):
 *
 *   validate -> allocate all scratch -> [subsample] -> init -> Lloyd loop
 *   -> final assignment of all n blocks -> copy out
 *
 * Every allocation happens before any work, so the only failure after the
 * first byte of work is a cancellation from the progress callback; the
 * caller's outputs are written only once nothing can fail any more.
 *
 * Randomness. All draws are Philox4x32-10 (include/qnoise/rng.h) under a key
 * derived from params->seed in a domain of its own:
 *   key     = first two words of Philox(ctr = {"kmea", "ns\0\0", 0, 0}, key = seed)
 *   draw    = Philox(ctr = {lo32(a), hi32(a), b, purpose}, key)
 * with `purpose` one of KM_P_* below, `a` the index of the decision (block,
 * centroid or split number) and `b` a secondary index (rejection attempt or
 * word group). The mask contract uses ctr words 2..3 = {"quno", "layr"} for
 * its key derivation, so the two never share a Philox input.
 *
 * Subsampling (n > max_samples > 0): Knuth's selection sampling (Algorithm S)
 * picks a uniform subset of exactly S blocks in one pass, kept in their
 * original order, with no index array (only the S x dim copy is stored).
 *
 * Init. RANDOM: Floyd's algorithm draws k distinct block indices uniformly
 * (a bitmap marks the chosen ones). PLUSPLUS: k-means++; the first centre is
 * uniform, each next one is drawn with probability proportional to the
 * squared distance to the nearest chosen centre, distances and the running
 * sum in double, in block order. If every remaining distance is 0 (fewer
 * distinct blocks than k) it draws uniformly among the blocks not chosen yet.
 * Both inits use no kernel, so they do not depend on the ISA.
 *
 * Lloyd iteration = one pass over the rows (km_pass): per chunk of rows, the
 * assignment (qn_assign_rows: the fused pq_assign kernel with its per-row
 * error bound, exact differences for the rows it cannot certify) and at once,
 * while the chunk is in cache, the codebook_accumulate kernel: per-centroid
 * sums of the members and counts, and the exact squared error of each row to
 * its centroid (double), summed per centroid. Then the empty-cluster repair
 * (below); objective = sum of those errors / rows (in centroid order);
 * M-step = sums / counts rounded once to float; a cluster left empty keeps its
 * centroid. Then progress (objective and imbalance k sum(count^2) / rows^2);
 * stop when the objective is 0 or, with tol > 0, when |prev - cur| <= tol *
 * prev. The objective is exact for the assignment (no float distances), so
 * it never increases from one iteration to the next beyond the assignment's
 * slack (QN_ASSIGN_REL in the worst case, far less in practice) and the
 * rounding of the means to float.
 *
 * Threads. The pass cuts the rows into nr contiguous ranges (nr = the
 * context's threads, fewer for small inputs), range r accumulates into its
 * own buffers (range 0 straight into the totals), and the buffers are added
 * to the totals in range order, element by element. For a given thread count
 * everything is deterministic; codes are per row and do not depend on it at
 * all; sums, centroids and the objective may differ between thread counts in
 * the last bits (the order of the additions differs).
 *
 * Empty clusters (after each E-step), in the spirit of faiss / fairseq: for
 * each empty cluster j, in index order, take the most populated cluster m
 * (lowest index on ties) whose members are not all at its centroid (count
 * >= 2 and within-cluster error > 0: a cluster of identical blocks cannot be
 * split), and set c_j = c_m + e, c_m = c_m - e with
 * e[t] = +-split_eps * (1 + |c_m[t]|), signs from Philox. Counts and errors
 * of m are split in halves as estimates so the next empty cluster may pick
 * another donor (a max-heap keeps this O(log k)). After a round, all blocks
 * are re-assigned; at most max_split_tries rounds per iteration, and a round
 * with no possible donor ends the repair, so duplicated data cannot loop.
 * n_splits counts the empty clusters a repair actually filled.
 *
 * Final: the last centroids assign all n blocks (not only the sample) in one
 * more pass, the objective is recomputed over all n blocks in double from
 * those codes, and n_empty counts centroids with no block in that assignment.
 */
#include "quant/kmeans.h"

#include <float.h>
#include <math.h> /* isfinite (a macro; no libm call) */
#include <string.h>

#include <qnoise/rng.h>

#include "qn_config.h"

/* Keep double sums identical between compilers (clang would fuse s += e * e). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define KM_FN "qn_kmeans_train"
#define KM_MAX_K ((size_t)65536)
#define KM_CHUNK ((size_t)4096)     /* rows per kernel call */
#define KM_MIN_RANGE ((size_t)2048) /* fewer rows per thread are not worth a thread */

/* Domain of the key derivation: "kmea", "ns\0\0". */
#define KM_TAG0 0x6b6d6561u
#define KM_TAG1 0x6e730000u

/* Purposes (ctr word 3). */
#define KM_P_SAMPLE 1u   /* a = block index / 2 */
#define KM_P_INIT 2u     /* a = centroid index, b = rejection attempt */
#define KM_P_FALLBACK 3u /* a = centroid index, b = rejection attempt */
#define KM_P_SPLIT 4u    /* a = split number, b = group of 128 dimensions */

/* ------------------------------------------------------------------------- */
/* Random draws                                                               */
/* ------------------------------------------------------------------------- */

static void km_key(uint64_t seed, uint32_t key[2])
{
    uint32_t ctr[4], sk[2], out[4];
    ctr[0] = KM_TAG0;
    ctr[1] = KM_TAG1;
    ctr[2] = 0;
    ctr[3] = 0;
    sk[0] = (uint32_t)seed;
    sk[1] = (uint32_t)(seed >> 32);
    qn_philox4x32_10(ctr, sk, out);
    key[0] = out[0];
    key[1] = out[1];
}

static void km_words(const uint32_t key[2], uint32_t purpose, uint64_t a, uint32_t b,
                     uint32_t out[4])
{
    uint32_t ctr[4];
    ctr[0] = (uint32_t)a;
    ctr[1] = (uint32_t)(a >> 32);
    ctr[2] = b;
    ctr[3] = purpose;
    qn_philox4x32_10(ctr, key, out);
}

static uint64_t km_join(uint32_t lo, uint32_t hi)
{
    return (uint64_t)lo | ((uint64_t)hi << 32);
}

/* A double in [0, 1) with 53 random bits. */
static double km_unit(uint64_t r)
{
    return (double)(r >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, m), m >= 1, without bias (rejection on 64-bit words). */
static uint64_t km_below(const uint32_t key[2], uint32_t purpose, uint64_t a, uint64_t m)
{
    const uint64_t thr = (0 - m) % m; /* 2^64 mod m: [thr, 2^64) holds a multiple of m */
    uint32_t b, w[4];
    for (b = 0;; b++) {
        uint64_t r0, r1;
        km_words(key, purpose, a, b, w);
        r0 = km_join(w[0], w[1]);
        r1 = km_join(w[2], w[3]);
        if (r0 >= thr)
            return r0 % m;
        if (r1 >= thr)
            return r1 % m;
    }
}

/* ------------------------------------------------------------------------- */
/* Small helpers                                                              */
/* ------------------------------------------------------------------------- */

static double km_absd(double v)
{
    return v < 0 ? -v : v;
}

static double km_dist_d(const float *a, const float *b, size_t dim)
{
    double s = 0.0;
    size_t t;
    for (t = 0; t < dim; t++) {
        double e = (double)a[t] - (double)b[t];
        s += e * e;
    }
    return s;
}

static float km_clamp_f(double v)
{
    if (v > FLT_MAX)
        return FLT_MAX;
    if (v < -FLT_MAX)
        return -FLT_MAX;
    return (float)v;
}

static int km_bit(const uint64_t *bits, size_t i)
{
    return (int)((bits[i / 64] >> (i % 64)) & 1u);
}

static void km_set_bit(uint64_t *bits, size_t i)
{
    bits[i / 64] |= (uint64_t)1 << (i % 64);
}

/* ------------------------------------------------------------------------- */
/* Scratch                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct km_work {
    const qn_context *ctx;
    const float *xs;   /* training rows: x itself or xs_own */
    size_t ns, k, dim;
    size_t chunk;      /* rows per kernel call: min(n, KM_CHUNK) */
    int nr;            /* row ranges of a pass, one per thread (>= 1) */
    double xmax;       /* largest |x| of all n rows */
    float *xs_own;     /* the subsample (only when n > max_samples) */
    float *c;          /* k x dim working centroids */
    float *cn;         /* k squared norms of c (fused kernel) */
    double *sums;      /* k x dim sums of the last pass */
    uint64_t *counts;  /* k counts of the last pass (estimates during a repair) */
    double *cerr;      /* k within-cluster squared errors of the last pass */
    double *psums;     /* (nr - 1) x k x dim: sums of ranges 1 .. nr-1 */
    uint64_t *pcounts; /* (nr - 1) x k */
    double *perr;      /* (nr - 1) x k */
    uint32_t *heap;    /* k, donor heap (repair) */
    uint32_t *scodes;  /* ns */
    float *scratch;    /* nr x chunk distances of the fused kernel */
    uint64_t *taken;   /* ceil(ns / 64), init */
    double *mind;      /* ns, k-means++ only */
    uint32_t *fcodes;  /* nr x chunk, final assignment when the caller passes no codes */
} km_work;

static void km_release(km_work *w)
{
    const qn_context *ctx = w->ctx;
    qn_free(ctx, w->xs_own);
    qn_free(ctx, w->c);
    qn_free(ctx, w->cn);
    qn_free(ctx, w->sums);
    qn_free(ctx, w->counts);
    qn_free(ctx, w->cerr);
    qn_free(ctx, w->psums);
    qn_free(ctx, w->pcounts);
    qn_free(ctx, w->perr);
    qn_free(ctx, w->heap);
    qn_free(ctx, w->scodes);
    qn_free(ctx, w->scratch);
    qn_free(ctx, w->taken);
    qn_free(ctx, w->mind);
    qn_free(ctx, w->fcodes);
}

/* ------------------------------------------------------------------------- */
/* Subsampling and init                                                       */
/* ------------------------------------------------------------------------- */

/* Knuth's Algorithm S: a uniform subset of exactly ns of the n rows, in order. */
static void km_subsample(const uint32_t key[2], const float *x, size_t n, size_t dim, size_t ns,
                         float *out)
{
    uint32_t w[4] = {0, 0, 0, 0};
    size_t i, sel = 0;
    for (i = 0; i < n && sel < ns; i++) {
        int take;
        if ((i & 1u) == 0)
            km_words(key, KM_P_SAMPLE, (uint64_t)(i >> 1), 0, w);
        if (ns - sel >= n - i) {
            take = 1; /* every remaining row is needed */
        } else {
            const size_t h = (i & 1u) * 2;
            double u = km_unit(km_join(w[h], w[h + 1]));
            take = u * (double)(n - i) < (double)(ns - sel);
        }
        if (take) {
            memcpy(out + sel * dim, x + i * dim, dim * sizeof(float));
            sel++;
        }
    }
}

/* Floyd's algorithm: k distinct rows of the ns, uniformly. */
static void km_init_random(km_work *w, const uint32_t key[2])
{
    const size_t ns = w->ns, k = w->k, dim = w->dim;
    size_t r;
    memset(w->taken, 0, ((ns + 63) / 64) * sizeof(uint64_t));
    for (r = 0; r < k; r++) {
        const size_t j = ns - k + r;
        size_t t = (size_t)km_below(key, KM_P_INIT, (uint64_t)r, (uint64_t)j + 1);
        if (km_bit(w->taken, t))
            t = j;
        km_set_bit(w->taken, t);
        memcpy(w->c + r * dim, w->xs + t * dim, dim * sizeof(float));
    }
}

/* k-means++ (D^2 sampling), double distances and sums in row order. */
static void km_init_plusplus(km_work *w, const uint32_t key[2])
{
    const size_t ns = w->ns, k = w->k, dim = w->dim;
    const float *xs = w->xs;
    double *mind = w->mind;
    double total = 0.0;
    size_t r, i, pick;

    memset(w->taken, 0, ((ns + 63) / 64) * sizeof(uint64_t));
    pick = (size_t)km_below(key, KM_P_INIT, 0, (uint64_t)ns);
    km_set_bit(w->taken, pick);
    memcpy(w->c, xs + pick * dim, dim * sizeof(float));
    for (i = 0; i < ns; i++) {
        mind[i] = km_dist_d(xs + i * dim, w->c, dim);
        total += mind[i];
    }

    for (r = 1; r < k; r++) {
        const float *cr;
        if (total > 0.0) {
            uint32_t wd[4];
            double target, cum = 0.0;
            size_t last = 0;
            km_words(key, KM_P_INIT, (uint64_t)r, 0, wd);
            target = km_unit(km_join(wd[0], wd[1])) * total;
            pick = (size_t)-1;
            for (i = 0; i < ns; i++) {
                if (mind[i] > 0.0) {
                    cum += mind[i];
                    last = i;
                    if (target < cum) {
                        pick = i;
                        break;
                    }
                }
            }
            if (pick == (size_t)-1)
                pick = last; /* rounding: target reached the total */
        } else {
            /* Every row sits on a chosen centre: the q-th row not chosen yet. */
            size_t q = (size_t)km_below(key, KM_P_FALLBACK, (uint64_t)r, (uint64_t)(ns - r));
            for (i = 0;; i++) {
                if (!km_bit(w->taken, i)) {
                    if (q == 0)
                        break;
                    q--;
                }
            }
            pick = i;
        }
        km_set_bit(w->taken, pick);
        cr = w->c + r * dim;
        memcpy(w->c + r * dim, xs + pick * dim, dim * sizeof(float));
        if (r + 1 < k) {
            total = 0.0;
            for (i = 0; i < ns; i++) {
                if (mind[i] > 0.0) {
                    double d = km_dist_d(xs + i * dim, cr, dim);
                    if (d < mind[i])
                        mind[i] = d;
                }
                total += mind[i];
            }
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Assignment shared with qn_pq (contract in kmeans.h)                        */
/* ------------------------------------------------------------------------- */

double qn_centroid_norms(const float *c, size_t k, size_t dim, float *cn)
{
    double mx = 0.0;
    size_t j, t;
    for (j = 0; j < k; j++) {
        const float *cj = c + j * dim;
        double s = 0.0;
        for (t = 0; t < dim; t++)
            s += (double)cj[t] * (double)cj[t];
        cn[j] = s > FLT_MAX ? FLT_MAX : (float)s;
        if (s > mx)
            mx = s;
    }
    return mx;
}

/* 2^120: squares up to this size leave the fused formula (|2x.c|, ||2x||^2) finite. */
#define QN_FUSED_MAX_SQ 1.329227995784915872903807060280344576e36

int qn_fused_usable(size_t dim, double xmax, double cn_max)
{
    return dim <= QN_FUSED_MAX_DIM && (double)dim * xmax * xmax <= QN_FUSED_MAX_SQ &&
           cn_max <= QN_FUSED_MAX_SQ;
}

/*
 * Why the test of qn_assign_rows is a proof. Let u = 2^-24, g = 1.001 (dim+2) u
 * (>= gamma_{dim+2}), x the row, a = ||x||, c* the chosen centroid, D its true
 * squared distance, s = sqrt(D), m = ||c*||. Every ISA's pq_assign computes
 * f_j ~ d_j = ||c_j||^2 - 2 x.c_j as a chain of at most dim + 2 roundings
 * (norm rounded once; products and additions, or FMAs, in some order) over
 * terms of total magnitude ||c_j||^2 + 2 sum|x_t c_jt|, so
 *   |f_j - d_j| <= g (||c_j||^2 + 2 a ||c_j||),
 * and the reported distance D~ = ||x||^2 + f* (||x||^2 also a chain of dim
 * roundings, one more for the sum) obeys |D~ - D| <= g (3 D + 6 m^2) + u D~.
 * The chosen f* is the smallest, so D - D_min <= err_* + err_min. With
 * a <= s + m and ||c_min|| <= a + s, this gives D - D_min <= g (14 D + 12 m^2).
 * If g (16 D~ + 14 cn*) <= (rel / 2) D~ with rel <= 1e-2, then D~ <= 1.04 D,
 * 14 g <= 0.44 rel and 12 g m^2 <= 0.45 rel D, so D - D_min <= 0.89 rel D:
 * the chosen centroid is within a relative rel of the nearest. A NaN or
 * infinite D~ fails the test and the row is redone.
 */
/* Rows that fail the test are gathered (at most this many floats and rows) and assigned together. */
#define QN_GATHER_FLOATS ((size_t)2048)
#define QN_GATHER_ROWS ((size_t)512)

size_t qn_assign_rows(const qn_kernels *kt, const float *x, size_t n, size_t ldx, size_t dim,
                      const float *c, const float *cn, size_t k, uint32_t *codes, float *scratch)
{
    const double g = 1.001 * (double)(dim + 2) * (1.0 / 16777216.0);
    const double half_rel = 0.5 * QN_ASSIGN_REL;
    float gbuf[QN_GATHER_FLOATS];
    uint32_t gcodes[QN_GATHER_ROWS];
    size_t gidx[QN_GATHER_ROWS];
    size_t i, b, batch, nb = 0, redo = 0;
    if (n == 0)
        return 0;
    if (!cn) {
        kt->nearest_l2(x, n, ldx, c, k, dim, codes, NULL);
        return 0;
    }
    kt->pq_assign(x, n, ldx, c, cn, k, dim, codes, scratch);
    /* dim <= QN_FUSED_MAX_DIM here, so a batch holds at least 8 rows */
    batch = QN_GATHER_FLOATS / dim < QN_GATHER_ROWS ? QN_GATHER_FLOATS / dim : QN_GATHER_ROWS;
    for (i = 0; i < n; i++) {
        const double d = (double)scratch[i], m2 = (double)cn[codes[i]];
        if (g * (16.0 * d + 14.0 * m2) <= half_rel * d)
            continue; /* certified (a NaN or infinite d fails the test) */
        memcpy(gbuf + nb * dim, x + i * ldx, dim * sizeof(float));
        gidx[nb++] = i;
        if (nb == batch) {
            /* nearest_l2 decides each row on its own: the batch does not change a code */
            kt->nearest_l2(gbuf, nb, dim, c, k, dim, gcodes, NULL);
            for (b = 0; b < nb; b++)
                codes[gidx[b]] = gcodes[b];
            redo += nb;
            nb = 0;
        }
    }
    if (nb > 0) {
        kt->nearest_l2(gbuf, nb, dim, c, k, dim, gcodes, NULL);
        for (b = 0; b < nb; b++)
            codes[gidx[b]] = gcodes[b];
        redo += nb;
    }
    return redo;
}

/* ------------------------------------------------------------------------- */
/* Lloyd steps                                                                */
/* ------------------------------------------------------------------------- */

/* Rows [lo, hi) of range r of nr over `rows` rows: contiguous, sizes differ by at most 1. */
static void km_range(size_t rows, int nr, int r, size_t *lo, size_t *hi)
{
    const size_t base = rows / (size_t)nr, rem = rows % (size_t)nr, ur = (size_t)r;
    *lo = ur * base + (ur < rem ? ur : rem);
    *hi = *lo + base + (ur < rem ? 1 : 0);
}

/*
 * One pass over `rows` rows of x (dim floats each, contiguous): assign each
 * row to the current centroids (codes into `codes`, or into fcodes scratch
 * when NULL) and accumulate sums, counts and squared errors into w->sums,
 * w->counts and w->cerr (cleared first). Returns the rows the fused path
 * could not certify.
 */
static size_t km_pass(km_work *w, const float *x, size_t rows, uint32_t *codes)
{
    const qn_kernels *kt = w->ctx->k;
    const size_t k = w->k, dim = w->dim, kd = k * dim, chunk = w->chunk;
    const int nr = w->nr;
    const double cn_max = qn_centroid_norms(w->c, k, dim, w->cn);
    const float *cn = qn_fused_usable(dim, w->xmax, cn_max) ? w->cn : NULL;
    size_t redo = 0;
    long r;

#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nr) reduction(+ : redo) if (nr > 1)
#endif
    for (r = 0; r < (long)nr; r++) {
        double *s = r == 0 ? w->sums : w->psums + (size_t)(r - 1) * kd;
        uint64_t *cnt = r == 0 ? w->counts : w->pcounts + (size_t)(r - 1) * k;
        double *e = r == 0 ? w->cerr : w->perr + (size_t)(r - 1) * k;
        float *scr = w->scratch + (size_t)r * chunk;
        size_t lo, hi, i0, i;
        for (i = 0; i < kd; i++)
            s[i] = 0.0;
        for (i = 0; i < k; i++) {
            cnt[i] = 0;
            e[i] = 0.0;
        }
        km_range(rows, nr, (int)r, &lo, &hi);
        for (i0 = lo; i0 < hi; i0 += chunk) {
            const size_t m = hi - i0 < chunk ? hi - i0 : chunk;
            const float *xr = x + i0 * dim;
            uint32_t *co = codes ? codes + i0 : w->fcodes + (size_t)r * chunk;
            redo += qn_assign_rows(kt, xr, m, dim, dim, w->c, cn, k, co, scr);
            kt->codebook_accumulate(xr, m, dim, dim, co, w->c, s, cnt, e);
        }
    }

    /* Totals: range 0 is already in place; add ranges 1.. in order, element by element. */
    if (nr > 1) {
        long q;
#if QN_HAVE_OPENMP
#pragma omp parallel for schedule(static) num_threads(nr) if (kd >= 16384)
#endif
        for (q = 0; q < (long)kd; q++) {
            int rr;
            for (rr = 1; rr < nr; rr++)
                w->sums[q] += w->psums[(size_t)(rr - 1) * kd + (size_t)q];
        }
        for (q = 0; q < (long)k; q++) {
            int rr;
            for (rr = 1; rr < nr; rr++) {
                w->counts[q] += w->pcounts[(size_t)(rr - 1) * k + (size_t)q];
                w->cerr[q] += w->perr[(size_t)(rr - 1) * k + (size_t)q];
            }
        }
    }
    return redo;
}

static size_t km_count_empty(const km_work *w)
{
    size_t j, empty = 0;
    for (j = 0; j < w->k; j++)
        empty += w->counts[j] == 0;
    return empty;
}

/* Donor heap: max count first, lowest index on ties. */
static int km_before(const km_work *w, uint32_t a, uint32_t b)
{
    if (w->counts[a] != w->counts[b])
        return w->counts[a] > w->counts[b];
    return a < b;
}

static int km_donor_ok(const km_work *w, size_t j)
{
    return w->counts[j] >= 2 && w->cerr[j] > 0.0;
}

static void km_sift_down(km_work *w, size_t len, size_t i)
{
    uint32_t *h = w->heap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, best = i;
        uint32_t tmp;
        if (l < len && km_before(w, h[l], h[best]))
            best = l;
        if (r < len && km_before(w, h[r], h[best]))
            best = r;
        if (best == i)
            return;
        tmp = h[i];
        h[i] = h[best];
        h[best] = tmp;
        i = best;
    }
}

static void km_push(km_work *w, size_t *len, uint32_t v)
{
    uint32_t *h = w->heap;
    size_t i = (*len)++;
    h[i] = v;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        uint32_t tmp;
        if (!km_before(w, h[i], h[parent]))
            break;
        tmp = h[i];
        h[i] = h[parent];
        h[parent] = tmp;
        i = parent;
    }
}

/* c_j = c_m + e, c_m = c_m - e, e[t] = +-eps * (1 + |c_m[t]|). */
static void km_split(km_work *w, size_t j, size_t m, float eps, const uint32_t key[2],
                     uint64_t serial)
{
    float *cj = w->c + j * w->dim, *cm = w->c + m * w->dim;
    uint32_t bits[4] = {0, 0, 0, 0};
    size_t t;
    for (t = 0; t < w->dim; t++) {
        const double base = (double)cm[t];
        double e = (double)eps * (1.0 + km_absd(base));
        if (t % 128 == 0)
            km_words(key, KM_P_SPLIT, serial, (uint32_t)(t / 128), bits);
        if ((bits[(t % 128) / 32] >> (t % 32)) & 1u)
            e = -e;
        cj[t] = km_clamp_f(base + e);
        cm[t] = km_clamp_f(base - e);
    }
}

/*
 * Repair empty clusters of the current pass (see the top of the file).
 * Leaves codes, sums, counts and errors consistent with the centroids;
 * returns the number of empty clusters that got members.
 */
static size_t km_repair(km_work *w, const qn_kmeans_params *p, const uint32_t key[2],
                        uint64_t *serial, size_t *redo)
{
    const size_t k = w->k;
    size_t before = km_count_empty(w), now = before;
    unsigned round;

    for (round = 0; round < p->max_split_tries && now > 0; round++) {
        size_t len = 0, j, did = 0;
        for (j = 0; j < k; j++)
            if (km_donor_ok(w, j))
                w->heap[len++] = (uint32_t)j;
        for (j = len / 2; j-- > 0;)
            km_sift_down(w, len, j);
        for (j = 0; j < k && len > 0; j++) {
            size_t m;
            if (w->counts[j] != 0)
                continue;
            m = w->heap[0];
            w->heap[0] = w->heap[--len];
            km_sift_down(w, len, 0);
            km_split(w, j, m, p->split_eps, key, (*serial)++);
            /* estimates until the re-assignment: halves of m */
            w->counts[j] = w->counts[m] / 2;
            w->counts[m] -= w->counts[j];
            w->cerr[j] = w->cerr[m] * 0.5;
            w->cerr[m] -= w->cerr[j];
            if (km_donor_ok(w, m))
                km_push(w, &len, (uint32_t)m);
            if (km_donor_ok(w, j))
                km_push(w, &len, (uint32_t)j);
            did++;
        }
        if (did == 0)
            break; /* only clusters of identical blocks left: nothing to split */
        *redo += km_pass(w, w->xs, w->ns, w->scodes);
        now = km_count_empty(w);
    }
    return before > now ? before - now : 0;
}

/* Mean squared error of the pass over `rows` rows: the per-centroid errors in centroid order. */
static double km_objective(const km_work *w, size_t rows)
{
    double s = 0.0;
    size_t j;
    for (j = 0; j < w->k; j++)
        s += w->cerr[j];
    return s / (double)rows;
}

/* k sum(count_j^2) / rows^2: 1 when every cluster holds rows / k blocks. */
static double km_imbalance(const km_work *w, size_t rows)
{
    double s = 0.0;
    size_t j;
    for (j = 0; j < w->k; j++)
        s += (double)w->counts[j] * (double)w->counts[j];
    return s * (double)w->k / ((double)rows * (double)rows);
}

/* Centroid = mean of its members (the pass's double sums); empty clusters keep theirs. */
static void km_mstep(km_work *w)
{
    const size_t k = w->k, dim = w->dim;
    size_t j, t;
    for (j = 0; j < k; j++) {
        if (w->counts[j] == 0)
            continue;
        for (t = 0; t < dim; t++)
            w->c[j * dim + t] = (float)(w->sums[j * dim + t] / (double)w->counts[j]);
    }
}

/* ------------------------------------------------------------------------- */
/* Entry points                                                               */
/* ------------------------------------------------------------------------- */

void qn_kmeans_defaults(qn_kmeans_params *p, size_t k, uint64_t seed)
{
    if (!p)
        return;
    memset(p, 0, sizeof *p);
    p->k = k;
    p->iterations = 20;
    p->tol = 1e-4;
    p->seed = seed;
    p->init = QN_KMEANS_INIT_RANDOM;
    p->max_split_tries = 30;
    p->split_eps = 1e-6f;
    p->max_samples = 0;
}

static qn_status km_validate(const qn_context *ctx, const float *x, size_t n, size_t dim,
                             const qn_kmeans_params *p, const float *centroids, size_t *ns_out,
                             double *xmax_out)
{
    size_t nd, ns, bytes, i;
    double xmax = 0.0;

    if (!ctx || !x || !p || !centroids)
        return qn_fail(ctx, QN_ERR_INVALID_ARG,
                       KM_FN ": ctx, x, params and centroids must not be NULL");
    if (n == 0 || dim == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": n = %zu and dim = %zu must be >= 1", n,
                       dim);
    if (p->iterations == 0)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": iterations must be >= 1");
    if (p->init != QN_KMEANS_INIT_RANDOM && p->init != QN_KMEANS_INIT_PLUSPLUS)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": unknown init %d", (int)p->init);
    if (!(p->tol >= 0.0) || !isfinite(p->tol))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": tol must be finite and >= 0");
    if (!(p->split_eps >= 0.0f) || !isfinite(p->split_eps))
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": split_eps must be finite and >= 0");
    if (p->k == 0 || p->k > KM_MAX_K)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": k = %zu is not in [1, %zu]", p->k,
                       KM_MAX_K);
    ns = (p->max_samples > 0 && n > p->max_samples) ? p->max_samples : n;
    if (p->k > ns)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, KM_FN ": k = %zu exceeds the %zu training blocks",
                       p->k, ns);

    if (qn_mul_overflow(n, dim, &nd) || qn_mul_overflow(nd, sizeof(float), &bytes) ||
        qn_mul_overflow(ns, sizeof(double), &bytes) ||
        qn_mul_overflow(p->k * dim, sizeof(double), &bytes) ||
        qn_add_overflow(ns, 63, &bytes))
        return qn_fail(ctx, QN_ERR_OVERFLOW, KM_FN ": n = %zu x dim = %zu overflows size_t", n,
                       dim);
    for (i = 0; i < nd; i++) {
        const double a = km_absd((double)x[i]);
        if (!isfinite(x[i]))
            return qn_fail(ctx, QN_ERR_INVALID_ARG,
                           KM_FN ": x[%zu] (row %zu) is not finite", i, i / dim);
        if (a > xmax)
            xmax = a;
    }
    *ns_out = ns;
    *xmax_out = xmax;
    return QN_OK;
}

/* Row ranges of a pass: the context's threads, at most one per KM_MIN_RANGE training rows. */
static int km_ranges(const qn_context *ctx, size_t ns)
{
    size_t nr = (size_t)qn_threads(ctx), cap = ns / KM_MIN_RANGE;
    if (nr > cap)
        nr = cap;
    if (nr > 1024)
        nr = 1024;
    return nr < 1 ? 1 : (int)nr;
}

qn_status qn_kmeans_train(const qn_context *ctx, const float *x, size_t n, size_t dim,
                          const qn_kmeans_params *p, float *centroids, uint32_t *codes,
                          qn_kmeans_result *res)
{
    km_work w;
    uint32_t key[2];
    uint64_t serial = 0;
    size_t ns = 0, k, n_splits = 0, n_empty = 0, extra = 0, kd, ps_bytes;
    unsigned it, iters = 0;
    double prev = 0.0, total, xmax = 0.0;
    int have_prev = 0;
    qn_status st;

    st = km_validate(ctx, x, n, dim, p, centroids, &ns, &xmax);
    if (st != QN_OK)
        return st;
    k = p->k; /* k * dim cannot overflow: k <= n (checked above) */
    kd = k * dim;

    memset(&w, 0, sizeof w);
    w.ctx = ctx;
    w.ns = ns;
    w.k = k;
    w.dim = dim;
    w.xmax = xmax;
    w.chunk = n < KM_CHUNK ? n : KM_CHUNK;
    w.nr = km_ranges(ctx, ns);
    /* the partial buffers of ranges 1 .. nr-1 */
    if (w.nr > 1 && (qn_mul_overflow(kd, (size_t)(w.nr - 1), &extra) ||
                     qn_mul_overflow(extra, sizeof(double), &ps_bytes))) {
        return qn_fail(ctx, QN_ERR_OVERFLOW, KM_FN ": %d partial sums of %zu x %zu overflow size_t",
                       w.nr - 1, k, dim);
    }
    w.c = (float *)qn_malloc(ctx, kd * sizeof(float));
    w.cn = (float *)qn_malloc(ctx, k * sizeof(float));
    w.sums = (double *)qn_malloc(ctx, kd * sizeof(double));
    w.counts = (uint64_t *)qn_malloc(ctx, k * sizeof(uint64_t));
    w.cerr = (double *)qn_malloc(ctx, k * sizeof(double));
    w.heap = (uint32_t *)qn_malloc(ctx, k * sizeof(uint32_t));
    w.scodes = (uint32_t *)qn_malloc(ctx, ns * sizeof(uint32_t));
    w.scratch = (float *)qn_malloc(ctx, (size_t)w.nr * w.chunk * sizeof(float));
    w.taken = (uint64_t *)qn_malloc(ctx, ((ns + 63) / 64) * sizeof(uint64_t));
    if (w.nr > 1) {
        w.psums = (double *)qn_malloc(ctx, extra * sizeof(double));
        w.pcounts = (uint64_t *)qn_malloc(ctx, (size_t)(w.nr - 1) * k * sizeof(uint64_t));
        w.perr = (double *)qn_malloc(ctx, (size_t)(w.nr - 1) * k * sizeof(double));
    }
    if (ns < n)
        w.xs_own = (float *)qn_malloc(ctx, ns * dim * sizeof(float));
    if (p->init == QN_KMEANS_INIT_PLUSPLUS)
        w.mind = (double *)qn_malloc(ctx, ns * sizeof(double));
    if (!codes)
        w.fcodes = (uint32_t *)qn_malloc(ctx, (size_t)w.nr * w.chunk * sizeof(uint32_t));
    if (!w.c || !w.cn || !w.sums || !w.counts || !w.cerr || !w.heap || !w.scodes ||
        !w.scratch || !w.taken || (w.nr > 1 && (!w.psums || !w.pcounts || !w.perr)) ||
        (ns < n && !w.xs_own) || (p->init == QN_KMEANS_INIT_PLUSPLUS && !w.mind) ||
        (!codes && !w.fcodes)) {
        km_release(&w);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY,
                       KM_FN ": out of memory (k = %zu, dim = %zu, %zu training blocks, %d threads)",
                       k, dim, ns, w.nr);
    }

    km_key(p->seed, key);
    if (ns < n) {
        km_subsample(key, x, n, dim, ns, w.xs_own);
        w.xs = w.xs_own;
        qn_log(ctx, QN_LOG_INFO, "kmeans: training on %zu of %zu blocks (subsampled)", ns, n);
    } else {
        w.xs = x;
    }

    if (p->init == QN_KMEANS_INIT_PLUSPLUS)
        km_init_plusplus(&w, key);
    else
        km_init_random(&w, key);

    for (it = 0; it < p->iterations; it++) {
        double values[2];
        size_t fixed = 0, redo;
        redo = km_pass(&w, w.xs, ns, w.scodes);
        if (p->max_split_tries > 0 && km_count_empty(&w) > 0)
            fixed = km_repair(&w, p, key, &serial, &redo);
        n_splits += fixed;
        values[0] = km_objective(&w, ns);
        values[1] = km_imbalance(&w, ns);
        km_mstep(&w);
        iters = it + 1;
        qn_log(ctx, QN_LOG_DEBUG,
               "kmeans: iteration %u objective %.9g imbalance %.6g (%zu empty clusters filled, "
               "%zu rows re-assigned by exact differences)",
               iters, values[0], values[1], fixed, redo);
        st = qn_progress_values(ctx, "kmeans", (uint64_t)iters, (uint64_t)p->iterations, values,
                                2);
        if (st != QN_OK) {
            km_release(&w);
            return st;
        }
        if (values[0] == 0.0)
            break;
        if (p->tol > 0.0 && have_prev && km_absd(prev - values[0]) <= p->tol * prev)
            break;
        prev = values[0];
        have_prev = 1;
    }

    /* Nothing can fail from here on: assign all n rows, straight into codes if given. */
    km_pass(&w, x, n, codes);
    n_empty = km_count_empty(&w);
    total = km_objective(&w, n);
    memcpy(centroids, w.c, kd * sizeof(float));
    km_release(&w);

    if (n_empty > 0)
        qn_log(ctx, QN_LOG_WARN,
               "kmeans: %zu of %zu centroids are assigned no block (duplicated blocks, "
               "or splits could not fill them)",
               n_empty, k);
    qn_log(ctx, QN_LOG_INFO,
           "kmeans: n = %zu, dim = %zu, k = %zu: %u iterations, objective %.6g, %zu splits",
           n, dim, k, iters, total, n_splits);
    if (res) {
        res->objective = total;
        res->iterations_run = iters;
        res->n_trained = ns;
        res->n_splits = n_splits;
        res->n_empty = n_empty;
    }
    return QN_OK;
}
