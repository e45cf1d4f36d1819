/*
 * libqnoise internal: packed weights of kind PQ and their GEMM (packed.h),
 *   y[M x rows] = x[M x cols] . W_hat^T (+ bias),  W_hat[o][j*bs + t] = c[codes[o][j]][t].
 * SPDX-License-Identifier: MIT
 *
 * Packing (once, at qn_packed_create; never on disk): the codes are transposed
 * to [nbr][ldc] (nbr = cols / bs subspaces, ldc = rows rounded up to 64, the
 * padding holds code 0), uint8 for k <= 256 and uint16 above, so that SIMD
 * lanes can take consecutive output rows; the codebook is copied as is
 * (c[k][bs], the values decode uses, already rounded for fp16/int8 codebooks)
 * and transposed (ct[bs][ldct], ldct = k rounded up to 16, zero padded).
 *
 * Three paths, all driven from here with the context's kernel table
 * (kernels.h: pq_lut, pq_lut_gather, pq_blut, pq_blut_add, pq_decode):
 *
 * GATHER (small M): per chunk of subspaces, tables lut[j][m][q] = x_m,j . c_q
 *   (pq_lut), then for 16 (AVX-512) / 8 (AVX2) consecutive output rows one
 *   load of their codes of subspace j serves one gather per batch row
 *   (pq_lut_gather), accumulated straight into y. Chunks hold about
 *   gather_lut_bytes of tables so the gathers hit L1. Threads split the output
 *   rows (in units of 64) and each builds its own tables (a few % of the work).
 *   Cost per batch row: rows * nbr / 16 gathers. The codes are prefetched (the
 *   first lines of a chunk here, the rest by the kernel) because they stream
 *   from memory when the weight is cold.
 *
 * BATCH (middle and large M): the batch goes in the lanes instead: tables
 *   blut[j][q][m] (W = 8 or 16 rows of x per group, pq_blut), and each output
 *   row adds, per subspace, the W-float entry its code selects: one vector load
 *   and one add serve W batch rows (pq_blut_add), into a per-thread
 *   accumulator acc[rows][W] that is transposed into y (+ bias) at the end of
 *   the group. Threads split the subspaces (so no table is built twice) and
 *   their accumulators are added in thread order. Cost per W batch rows:
 *   rows * nbr vector adds + nbr * k * bs FMAs for the tables, against
 *   rows * nbr * bs FMAs for a dense GEMM: about bs times less work while the
 *   tables stay in L1/L2.
 *
 * DECODE (large k relative to rows, or M >= decode_min_m): tiles of W_hat of
 *   tile_rows output rows x tile_cols columns (a panel that stays in L2) are
 *   decoded (pq_decode, threads split the panel's rows) and multiplied by
 *   cblas_sgemm (x . panel^T, accumulated over the column tiles with beta = 1).
 *   Splitting the columns (not only the rows) keeps panels large in rows, so
 *   OpenBLAS re-packs x fewer times (once per row tile).
 *
 * The choice between them (pq_choose, with the measured switch points below)
 * depends on M and on k against rows: the tables cost M * cols * k FMAs, the
 * dense product M * cols * rows, so the table paths pay off while k is well
 * below rows.
 *
 * Rounding: every path sums each subspace's bs products first (in t order)
 * and then the nbr subspace sums (the decode path: in OpenBLAS's order);
 * results agree with the exact product to a few (bs + nbr) * 2^-24 of
 * sum |x . w|. For a fixed thread count and path, results are reproducible;
 * the BATCH path's sum depends on the number of threads (one partial sum per
 * thread).
 */
#include "format/packed_pq.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <string.h>

#include "qn_config.h"

#if QN_HAVE_OPENMP
#include <omp.h>
#endif

/*
 * Measured switch points (bench/bench_packed_pq.c, path sweep; docs/performance.md, "Packed
 * GEMM: PQ"). The automatic choice for M batch rows is
 *   M < QN_PQ_GATHER_MAX_M and k <= 4 rows           gather (rows in the lanes)
 *   k <= rows / 2                                     batch (the batch in the lanes)
 *   k <= rows and M < QN_PQ_DECODE_MIN_M              batch
 *   otherwise                                         decode + sgemm
 * QN_PQ_GATHER_MAX_M = 4: at bs 8 / k 256 the batch path is faster from M = 4 on (3 to 4 on
 *   4096 x 4096, 4 on 1024 x 1024; 4 to 6 at k = 4096), the gather path below.
 * QN_PQ_DECODE_MIN_M = 33: with k <= rows / 2 (k 256 on both shapes) decode + sgemm was never
 *   faster, up to M = 512. With k = rows (4096 x 4096, k 4096) the tables cost as much as the
 *   dense product (M * cols * k FMAs) and decode + sgemm wins once the batch path needs a third
 *   group of 16 rows (it won from M = 32 to 48 in the sweeps; the batch time steps every 16 rows).
 *   With k > rows it wins from M = 4, and at k > 4 rows even at M = 1.
 */
#define QN_PQ_GATHER_MAX_M ((size_t)4)
#define QN_PQ_DECODE_MIN_M ((size_t)33)

/* Table chunk targets: L1 for the gathers, L2 for the vector loads of the batch path. */
#define QN_PQ_GATHER_LUT_BYTES ((size_t)16 * 1024)
#define QN_PQ_BATCH_LUT_BYTES ((size_t)128 * 1024)
/* Decode panels: 256 rows x 1024 columns = 1 MiB (64 .. 4096 rows x 512 .. 4096 columns timed within noise). */
#define QN_PQ_TILE_ROWS ((size_t)256)
#define QN_PQ_TILE_COLS ((size_t)1024)
/*
 * Fewer table lookups (M * rows * cols / bs) than this run on one thread: a parallel region
 * costs tens of microseconds when idle threads sleep (OMP_WAIT_POLICY=passive), about what
 * 2^21 gathered lookups take (1024 x 1024 at M = 8 ran no faster on 2 threads).
 */
#define QN_PQ_PAR_MIN_WORK ((size_t)1 << 21)

#define QN_PQ_ROW_ALIGN ((size_t)64) /* code rows are padded to this many output rows */
#define QN_PQ_TILE_MAX ((size_t)1 << 20)

typedef struct pq_impl {
    const qn_kernels *kern;
    size_t rows, cols, bs, k, nbr;
    size_t ldc;  /* stride of a code row: rows rounded up to QN_PQ_ROW_ALIGN */
    size_t ldct; /* stride of a transposed-codebook row: k rounded up to 16 */
    size_t ldl;  /* stride of a gather-path table: ldct */
    int wide;    /* codes are uint16 (k > 256) */
    void *codes; /* [nbr][ldc] */
    float *c;    /* [k][bs] */
    float *ct;   /* [bs][ldct] */
    qn_packed_pq_tuning tun;
    size_t gather_lut_bytes, batch_lut_bytes;
} pq_impl;

/* Everything a gemm of M rows needs to know before it runs; the workspace size comes from it. */
typedef struct pq_plan {
    qn_pq_path path;
    int nt;            /* threads */
    size_t W;          /* BATCH: lanes per group (8 or 16) */
    size_t jc;         /* GATHER, BATCH: subspaces per table chunk */
    size_t tr, tj;     /* DECODE: rows and subspaces per panel */
    size_t per_thread; /* workspace floats per thread (a multiple of 16) */
    size_t bytes;      /* workspace bytes in all */
} pq_plan;

static size_t pq_round(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

static size_t pq_min(size_t a, size_t b)
{
    return a < b ? a : b;
}

static const void *pq_codes_at(const pq_impl *q, size_t j, size_t r)
{
    size_t off = j * q->ldc + r;
    return q->wide ? (const void *)((const uint16_t *)q->codes + off) : (const void *)((const uint8_t *)q->codes + off);
}

/* big: M, ldx or ldy is past INT_MAX (cblas takes int sizes). */
static qn_pq_path pq_choose(const pq_impl *q, size_t M, int big)
{
    qn_pq_path path = q->tun.force;
    if (path == QN_PQ_PATH_AUTO) {
        if (M < q->tun.gather_max_m && q->k / 4 <= q->rows)
            path = QN_PQ_PATH_GATHER;
        else if (q->k <= q->rows / 2 || (q->k <= q->rows && M < q->tun.decode_min_m))
            path = QN_PQ_PATH_BATCH;
        else
            path = QN_PQ_PATH_DECODE;
    }
    if (path == QN_PQ_PATH_DECODE && big)
        path = QN_PQ_PATH_BATCH;
    return path;
}

static int pq_threads_for(const qn_context *ctx, size_t work, size_t min_work, size_t units)
{
    int nt = qn_threads(ctx);
    if (nt < 1 || work < min_work)
        nt = 1;
    if ((size_t)nt > units)
        nt = (int)units;
    return nt < 1 ? 1 : nt;
}

/* a * b, or SIZE_MAX when that overflows (sizes no allocation could hold). */
static size_t pq_mul_sat(size_t a, size_t b)
{
    size_t r;
    return qn_mul_overflow(a, b, &r) ? SIZE_MAX : r;
}

static void pq_make_plan(const pq_impl *q, const qn_context *ctx, size_t M, int big, pq_plan *pl)
{
    size_t work = pq_mul_sat(M, q->rows * q->nbr); /* table additions (rows * nbr checked at packing) */
    memset(pl, 0, sizeof *pl);
    pl->path = pq_choose(q, M, big);
    pl->nt = 1;
    if (M == 0)
        return;
    switch (pl->path) {
    case QN_PQ_PATH_GATHER: {
        size_t per_j = pq_mul_sat(M, q->ldl * sizeof(float));
        pl->jc = pq_min(q->nbr, q->gather_lut_bytes / per_j > 0 ? q->gather_lut_bytes / per_j : 1);
        pl->nt = pq_threads_for(ctx, work, q->tun.par_min_work, q->ldc / QN_PQ_ROW_ALIGN);
        pl->per_thread = pq_mul_sat(pl->jc, pq_mul_sat(M, q->ldl));
        break;
    }
    case QN_PQ_PATH_BATCH: {
        size_t per_j;
        pl->W = M <= 8 ? 8 : 16;
        per_j = q->k * pl->W * sizeof(float);
        pl->jc = pq_min(q->nbr, q->batch_lut_bytes / per_j > 0 ? q->batch_lut_bytes / per_j : 1);
        pl->nt = pq_threads_for(ctx, work, q->tun.par_min_work, (q->nbr + pl->jc - 1) / pl->jc);
        pl->per_thread = pq_round(pl->jc * q->k * pl->W, 16) + q->ldc * pl->W;
        break;
    }
    default:
        pl->path = QN_PQ_PATH_DECODE;
        pl->tr = pq_min(q->tun.tile_rows, q->rows);
        pl->tj = pq_min(q->nbr, q->tun.tile_cols / q->bs > 0 ? q->tun.tile_cols / q->bs : 1);
        pl->nt = pq_threads_for(ctx, pl->tr * q->cols, q->tun.par_min_work, (pl->tr + 15) / 16);
        pl->per_thread = pq_round(pl->tr * pl->tj * q->bs, 16);
        pl->bytes = pl->per_thread * sizeof(float);
        return;
    }
    pl->bytes = pq_mul_sat(pq_mul_sat((size_t)pl->nt, pl->per_thread), sizeof(float));
}

#if QN_HAVE_OPENMP
/* [lo, hi) of the part `i` of `n` units split over `parts` (whole units, the first parts larger). */
static void pq_split(size_t n, size_t parts, size_t i, size_t *lo, size_t *hi)
{
    size_t base = n / parts, extra = n % parts;
    *lo = i * base + (i < extra ? i : extra);
    *hi = *lo + base + (i < extra ? 1 : 0);
}

static int pq_thread_id(void)
{
    return omp_get_thread_num();
}

static int pq_thread_count(void)
{
    return omp_get_num_threads();
}
#endif

/* ------------------------------------------------------------------------------------------ */
/* GATHER                                                                                      */

/*
 * Ask for the first code lines of subspaces [j0, j0 + nj) in rows [r0, r1) while the tables
 * are built: the gather kernel prefetches further ahead itself, but the first rows of each
 * chunk would otherwise wait on memory when the weight is cold.
 */
static void pq_prefetch_codes(const pq_impl *q, size_t j0, size_t nj, size_t r0, size_t r1)
{
#if defined(__GNUC__)
    const size_t esz = q->wide ? 2 : 1, span = pq_min(r1 - r0, 256) * esz;
    size_t j, b;
    for (j = j0; j < j0 + nj; j++)
        for (b = 0; b < span; b += 64)
            __builtin_prefetch((const char *)pq_codes_at(q, j, r0) + b);
#else
    (void)q;
    (void)j0;
    (void)nj;
    (void)r0;
    (void)r1;
#endif
}

static void pq_gather_rows(const pq_impl *q, const pq_plan *pl, size_t M, const float *x, size_t ldx,
                           const float *bias, float *y, size_t ldy, float *lut, size_t r0, size_t r1)
{
    const qn_kernels *kt = q->kern;
    size_t j0;
    if (r0 >= r1)
        return;
    for (j0 = 0; j0 < q->nbr; j0 += pl->jc) {
        size_t nj = pq_min(pl->jc, q->nbr - j0);
        pq_prefetch_codes(q, j0, nj, r0, r1);
        kt->pq_lut(x + j0 * q->bs, M, ldx, q->bs, q->ct, q->ldct, q->k, nj, lut, q->ldl);
        kt->pq_lut_gather(lut, q->ldl, M, pq_codes_at(q, j0, r0), q->ldc, q->wide, nj, r1 - r0,
                          bias ? bias + r0 : NULL, j0 == 0, y + r0, ldy);
    }
}

static void pq_gemm_gather(const pq_impl *q, const pq_plan *pl, size_t M, const float *x, size_t ldx,
                           const float *bias, float *y, size_t ldy, float *ws)
{
    const size_t nblk = q->ldc / QN_PQ_ROW_ALIGN;
    if (pl->nt <= 1) {
        pq_gather_rows(q, pl, M, x, ldx, bias, y, ldy, ws, 0, q->rows);
        return;
    }
#if QN_HAVE_OPENMP
#pragma omp parallel num_threads(pl->nt)
    {
        size_t tid = (size_t)pq_thread_id(), nth = (size_t)pq_thread_count(), b0, b1;
        pq_split(nblk, nth, tid, &b0, &b1);
        pq_gather_rows(q, pl, M, x, ldx, bias, y, ldy, ws + tid * pl->per_thread, b0 * QN_PQ_ROW_ALIGN,
                       pq_min(b1 * QN_PQ_ROW_ALIGN, q->rows));
    }
#else
    (void)nblk;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* BATCH                                                                                       */

/* The subspace chunks [c0, c1) of one thread into its accumulator (acc = blut + table floats). */
static void pq_batch_part(const pq_impl *q, const pq_plan *pl, const float *xg, size_t mg, size_t ldx,
                          float *mine, size_t c0, size_t c1)
{
    const qn_kernels *kt = q->kern;
    float *blut = mine, *acc = mine + pq_round(pl->jc * q->k * pl->W, 16);
    size_t ch;
    for (ch = c0; ch < c1; ch++) {
        size_t j0 = ch * pl->jc, nj = pq_min(pl->jc, q->nbr - j0);
        kt->pq_blut(xg + j0 * q->bs, mg, ldx, q->bs, q->c, q->k, nj, pl->W, blut);
        kt->pq_blut_add(blut, q->k, pl->W, pq_codes_at(q, j0, 0), q->ldc, q->wide, nj, q->rows, ch == c0, acc);
    }
}

/* Rows [r0, r1) of y for the group: bias + the accumulators of nparts threads, in thread order. */
static void pq_batch_out(const pq_impl *q, const pq_plan *pl, size_t nparts, size_t mg, const float *bias,
                         float *yg, size_t ldy, const float *ws, size_t r0, size_t r1)
{
    const size_t W = pl->W, acc_off = pq_round(pl->jc * q->k * W, 16);
    size_t o, m, t;
    for (o = r0; o < r1; o++) {
        const float b = bias ? bias[o] : 0.0f;
        for (m = 0; m < mg; m++) {
            float s = ws[acc_off + o * W + m];
            for (t = 1; t < nparts; t++)
                s += ws[t * pl->per_thread + acc_off + o * W + m];
            yg[m * ldy + o] = b + s;
        }
    }
}

static void pq_gemm_batch(const pq_impl *q, const pq_plan *pl, size_t M, const float *x, size_t ldx,
                          const float *bias, float *y, size_t ldy, float *ws)
{
    const size_t nch = (q->nbr + pl->jc - 1) / pl->jc;
    if (pl->nt <= 1) {
        size_t m0;
        for (m0 = 0; m0 < M; m0 += pl->W) {
            size_t mg = pq_min(pl->W, M - m0);
            pq_batch_part(q, pl, x + m0 * ldx, mg, ldx, ws, 0, nch);
            pq_batch_out(q, pl, 1, mg, bias, y + m0 * ldy, ldy, ws, 0, q->rows);
        }
        return;
    }
#if QN_HAVE_OPENMP
#pragma omp parallel num_threads(pl->nt)
    {
        size_t tid = (size_t)pq_thread_id(), nth = (size_t)pq_thread_count(), c0, c1, r0, r1, m0;
        pq_split(nch, nth, tid, &c0, &c1);
        pq_split(q->rows, nth, tid, &r0, &r1);
        for (m0 = 0; m0 < M; m0 += pl->W) {
            size_t mg = pq_min(pl->W, M - m0);
            pq_batch_part(q, pl, x + m0 * ldx, mg, ldx, ws + tid * pl->per_thread, c0, c1);
#pragma omp barrier
            pq_batch_out(q, pl, nth, mg, bias, y + m0 * ldy, ldy, ws, r0, r1);
#pragma omp barrier
        }
    }
#else
    (void)nch;
#endif
}

/* ------------------------------------------------------------------------------------------ */
/* DECODE                                                                                      */

static void pq_decode_panel(const pq_impl *q, const pq_plan *pl, size_t r0, size_t nr, size_t j0, size_t nj,
                            float *panel)
{
    const size_t ldp = pl->tj * q->bs;
    if (pl->nt <= 1) {
        q->kern->pq_decode(pq_codes_at(q, j0, r0), q->ldc, q->wide, q->c, q->bs, nr, nj, panel, ldp);
        return;
    }
#if QN_HAVE_OPENMP
#pragma omp parallel num_threads(pl->nt)
    {
        size_t tid = (size_t)pq_thread_id(), nth = (size_t)pq_thread_count(), a, b;
        pq_split(nr, nth, tid, &a, &b);
        if (a < b)
            q->kern->pq_decode(pq_codes_at(q, j0, r0 + a), q->ldc, q->wide, q->c, q->bs, b - a, nj,
                               panel + a * ldp, ldp);
    }
#endif
}

static void pq_gemm_decode(const pq_impl *q, const pq_plan *pl, size_t M, const float *x, size_t ldx,
                           const float *bias, float *y, size_t ldy, float *panel)
{
    const size_t ldp = pl->tj * q->bs;
    size_t r0, j0, m;
    for (r0 = 0; r0 < q->rows; r0 += pl->tr) {
        size_t nr = pq_min(pl->tr, q->rows - r0);
        if (bias)
            for (m = 0; m < M; m++)
                memcpy(y + m * ldy + r0, bias + r0, nr * sizeof(float));
        for (j0 = 0; j0 < q->nbr; j0 += pl->tj) {
            size_t nj = pq_min(pl->tj, q->nbr - j0);
            pq_decode_panel(q, pl, r0, nr, j0, nj, panel);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nr, (int)(nj * q->bs), 1.0f,
                        x + j0 * q->bs, (int)ldx, panel, (int)ldp, (bias || j0 > 0) ? 1.0f : 0.0f, y + r0,
                        (int)ldy);
        }
    }
}

/* ------------------------------------------------------------------------------------------ */
/* ops                                                                                         */

static size_t pq_workspace_size(const qn_packed *p, size_t M)
{
    const pq_impl *q = (const pq_impl *)p->impl;
    pq_plan pl, alt;
    pq_make_plan(q, p->ctx, M, M > INT_MAX, &pl);
    if (pl.path != QN_PQ_PATH_DECODE)
        return pl.bytes;
    /* ldx and ldy are not known here: past INT_MAX the gemm takes the batch path instead */
    pq_make_plan(q, p->ctx, M, 1, &alt);
    return alt.bytes > pl.bytes ? alt.bytes : pl.bytes;
}

static void pq_gemm(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y,
                    size_t ldy, void *ws)
{
    const pq_impl *q = (const pq_impl *)p->impl;
    pq_plan pl;
    if (M == 0)
        return;
    pq_make_plan(q, p->ctx, M, M > INT_MAX || ldx > INT_MAX || ldy > INT_MAX, &pl);
    assert(ws != NULL || pl.bytes == 0);
    switch (pl.path) {
    case QN_PQ_PATH_GATHER:
        pq_gemm_gather(q, &pl, M, x, ldx, bias, y, ldy, (float *)ws);
        break;
    case QN_PQ_PATH_BATCH:
        pq_gemm_batch(q, &pl, M, x, ldx, bias, y, ldy, (float *)ws);
        break;
    default:
        pq_gemm_decode(q, &pl, M, x, ldx, bias, y, ldy, (float *)ws);
        break;
    }
}

static void pq_impl_free(const qn_context *ctx, pq_impl *q)
{
    if (!q)
        return;
    qn_free(ctx, q->codes);
    qn_free(ctx, q->c);
    qn_free(ctx, q->ct);
    qn_free(ctx, q);
}

static void pq_destroy(qn_packed *p)
{
    pq_impl_free(p->ctx, (pq_impl *)p->impl);
    p->impl = NULL;
}

static const qn_packed_ops pq_ops = {pq_workspace_size, pq_gemm, pq_destroy};

/* ------------------------------------------------------------------------------------------ */
/* packing                                                                                     */

static void pq_default_tuning(qn_packed_pq_tuning *t)
{
    t->force = QN_PQ_PATH_AUTO;
    t->gather_max_m = QN_PQ_GATHER_MAX_M;
    t->decode_min_m = QN_PQ_DECODE_MIN_M;
    t->lut_bytes = 0; /* 0: the per-path defaults */
    t->tile_rows = QN_PQ_TILE_ROWS;
    t->tile_cols = QN_PQ_TILE_COLS;
    t->par_min_work = QN_PQ_PAR_MIN_WORK;
}

/* Transpose the codes of rows [r0, r1) into q->codes; 1 when a code is >= k. */
static int pq_transpose(pq_impl *q, const uint16_t *codes)
{
    const size_t nbr = q->nbr;
    size_t r0, r, j;
    for (r0 = 0; r0 < q->rows; r0 += QN_PQ_ROW_ALIGN) {
        size_t r1 = pq_min(r0 + QN_PQ_ROW_ALIGN, q->rows);
        for (j = 0; j < nbr; j++) {
            for (r = r0; r < r1; r++) {
                uint16_t v = codes[r * nbr + j];
                if (v >= q->k)
                    return 1;
                if (q->wide)
                    ((uint16_t *)q->codes)[j * q->ldc + r] = v;
                else
                    ((uint8_t *)q->codes)[j * q->ldc + r] = (uint8_t)v;
            }
        }
    }
    return 0;
}

qn_status qn_packed_pq_init(qn_packed *p, const qn_qtensor *qt)
{
    static const char fn[] = "packing a PQ weight";
    const qn_context *ctx = p->ctx;
    pq_impl *q;
    size_t esz, n_codes, n_ct, n_c, t, i;
    if (qt->kind != QN_QTENSOR_PQ || qt->bs == 0 || qt->rows == 0 || qt->cols == 0 || qt->cols % qt->bs != 0 ||
        qt->k < 1 || qt->k > 65536 || !qt->codes || !qt->c)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: not a valid PQ tensor", fn);
    q = (pq_impl *)qn_calloc(ctx, 1, sizeof *q);
    if (!q)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    q->kern = ctx->k;
    q->rows = qt->rows;
    q->cols = qt->cols;
    q->bs = qt->bs;
    q->k = qt->k;
    q->nbr = qt->cols / qt->bs;
    q->wide = qt->k > 256;
    q->ldct = pq_round(qt->k, 16);
    q->ldl = q->ldct;
    q->gather_lut_bytes = QN_PQ_GATHER_LUT_BYTES;
    q->batch_lut_bytes = QN_PQ_BATCH_LUT_BYTES;
    pq_default_tuning(&q->tun);
    esz = q->wide ? sizeof(uint16_t) : sizeof(uint8_t);
    /* every product of sizes the gemm forms is bounded by these (M * rows * nbr is checked per call) */
    if (qt->rows > SIZE_MAX - QN_PQ_ROW_ALIGN || qn_mul_overflow(q->nbr, pq_round(qt->rows, QN_PQ_ROW_ALIGN), &n_codes) ||
        qn_mul_overflow(n_codes, esz, &n_codes) || qn_mul_overflow(q->ldct, qt->bs, &n_ct) ||
        qn_mul_overflow(n_ct, sizeof(float), &n_ct) || qn_mul_overflow(qt->k, qt->bs, &n_c) ||
        qn_mul_overflow(n_c, sizeof(float), &n_c) || qt->cols > SIZE_MAX / 4096 ||
        qt->rows > SIZE_MAX / 4096 / qt->cols) {
        pq_impl_free(ctx, q);
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: sizes overflow", fn);
    }
    q->ldc = pq_round(qt->rows, QN_PQ_ROW_ALIGN);
    q->codes = qn_calloc(ctx, 1, n_codes); /* the padding rows hold code 0 */
    q->c = (float *)qn_malloc(ctx, n_c);
    q->ct = (float *)qn_calloc(ctx, 1, n_ct);
    if (!q->codes || !q->c || !q->ct) {
        pq_impl_free(ctx, q);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    memcpy(q->c, qt->c, n_c);
    for (i = 0; i < q->k; i++)
        for (t = 0; t < q->bs; t++)
            q->ct[t * q->ldct + i] = qt->c[i * q->bs + t];
    if (pq_transpose(q, qt->codes)) {
        pq_impl_free(ctx, q);
        return qn_fail(ctx, QN_ERR_CORRUPT_DATA, "%s: a code is not below the codebook size", fn);
    }
    p->ops = &pq_ops;
    p->impl = q;
    return QN_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* knobs (packed_pq.h)                                                                         */

qn_status qn_packed_pq_get_tuning(const qn_packed *p, qn_packed_pq_tuning *t)
{
    const pq_impl *q;
    if (!p || !t || p->kind != QN_QTENSOR_PQ || !p->impl)
        return QN_ERR_INVALID_ARG;
    q = (const pq_impl *)p->impl;
    *t = q->tun;
    return QN_OK;
}

qn_status qn_packed_pq_set_tuning(qn_packed *p, const qn_packed_pq_tuning *t)
{
    pq_impl *q;
    if (!p || !t || p->kind != QN_QTENSOR_PQ || !p->impl)
        return QN_ERR_INVALID_ARG;
    if ((int)t->force < (int)QN_PQ_PATH_AUTO || (int)t->force > (int)QN_PQ_PATH_DECODE || t->tile_rows < 1 ||
        t->tile_rows > QN_PQ_TILE_MAX || t->tile_cols < 1 || t->tile_cols > QN_PQ_TILE_MAX)
        return QN_ERR_INVALID_ARG;
    q = (pq_impl *)p->impl;
    q->tun = *t;
    q->gather_lut_bytes = t->lut_bytes ? t->lut_bytes : QN_PQ_GATHER_LUT_BYTES;
    q->batch_lut_bytes = t->lut_bytes ? t->lut_bytes : QN_PQ_BATCH_LUT_BYTES;
    return QN_OK;
}

qn_pq_path qn_packed_pq_path(const qn_packed *p, size_t M)
{
    pq_plan pl;
    pq_make_plan((const pq_impl *)p->impl, p->ctx, M, M > INT_MAX, &pl);
    return pl.path;
}
