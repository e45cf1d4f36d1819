/*
 * k-means (lib/quant/kmeans.c) against expectations computed here: cluster
 * recovery, monotone Lloyd, one Lloyd step against a double-precision
 * reference, hand-computable cases, determinism (seeds, ISAs), empty-cluster
 * repair on duplicated data, subsampling, bad arguments, cancellation,
 * every allocation failing in turn, the fused assignment's certificate
 * (fast path kept near the origin, exact far from it) and threads.
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/internal.h"
#include "quant/kmeans.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Fail only when cond is false (ck_assert records every success, slow in loops). */
#define REQUIRE(cond, ...)                                                                        \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

#define CODE_SENTINEL 0xdeadbeefu

/* ------------------------------------------------------------------------- */
/* Test data: splitmix64, Gaussian clusters, uniform points                   */
/* ------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rnd_unit(uint64_t *s)
{
    return (double)(splitmix64(s) >> 11) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller). */
static double rnd_normal(uint64_t *s)
{
    double u1 = rnd_unit(s), u2 = rnd_unit(s);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/*
 * CL_K clusters in CL_DIM dimensions: centre j has +-5 in dims 0..2 (the bits
 * of j) and 0 in dim 3, so centres are >= 10 apart; sigma 0.5 per dimension.
 * Row i belongs to cluster i % CL_K.
 */
#define CL_N 2000
#define CL_K 8
#define CL_DIM 4
#define CL_SIGMA 0.5

static void cl_center(size_t j, double *c)
{
    size_t t;
    for (t = 0; t < 3; t++)
        c[t] = ((j >> t) & 1u) ? 5.0 : -5.0;
    c[3] = 0.0;
}

static float *make_clusters(uint64_t seed)
{
    float *x = (float *)malloc(CL_N * CL_DIM * sizeof(float));
    size_t i, t;
    ck_assert_ptr_nonnull(x);
    for (i = 0; i < CL_N; i++) {
        double c[CL_DIM];
        cl_center(i % CL_K, c);
        for (t = 0; t < CL_DIM; t++)
            x[i * CL_DIM + t] = (float)(c[t] + CL_SIGMA * rnd_normal(&seed));
    }
    return x;
}

static float *make_uniform(size_t n, size_t dim, uint64_t seed)
{
    float *x = (float *)malloc(n * dim * sizeof(float));
    size_t i;
    ck_assert_ptr_nonnull(x);
    for (i = 0; i < n * dim; i++)
        x[i] = (float)(2.0 * rnd_unit(&seed) - 1.0);
    return x;
}

static double dist2(const float *a, const float *b, size_t dim)
{
    double s = 0.0;
    size_t t;
    for (t = 0; t < dim; t++) {
        double e = (double)a[t] - (double)b[t];
        s += e * e;
    }
    return s;
}

/* Mean squared distance of every row to the centroid its code names. */
static double mse_of(const float *x, size_t n, size_t dim, const float *c, const uint32_t *codes)
{
    double s = 0.0;
    size_t i;
    for (i = 0; i < n; i++)
        s += dist2(x + i * dim, c + (size_t)codes[i] * dim, dim);
    return s / (double)n;
}

/* Every code names a nearest centroid (within the kernels' 1e-5 relative tolerance). */
static void require_nearest(const float *x, size_t n, size_t dim, const float *c, size_t k,
                            const uint32_t *codes)
{
    size_t i, j;
    for (i = 0; i < n; i++) {
        double best, got;
        REQUIRE(codes[i] < k, "row %zu: code %u out of range", i, (unsigned)codes[i]);
        best = dist2(x + i * dim, c, dim);
        for (j = 1; j < k; j++) {
            double d = dist2(x + i * dim, c + j * dim, dim);
            if (d < best)
                best = d;
        }
        got = dist2(x + i * dim, c + (size_t)codes[i] * dim, dim);
        REQUIRE(got <= best * (1.0 + 1e-5) + 1e-12, "row %zu: code %u at %.9g, nearest at %.9g",
                i, (unsigned)codes[i], got, best);
    }
}

/* Field by field: the struct has padding. */
static int same_result(const qn_kmeans_result *a, const qn_kmeans_result *b)
{
    return memcmp(&a->objective, &b->objective, sizeof a->objective) == 0 &&
           a->iterations_run == b->iterations_run && a->n_trained == b->n_trained &&
           a->n_splits == b->n_splits && a->n_empty == b->n_empty;
}

static int all_finite(const float *v, size_t len)
{
    size_t i;
    for (i = 0; i < len; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* ------------------------------------------------------------------------- */
/* Contexts: counting / failing allocator, log capture, progress              */
/* ------------------------------------------------------------------------- */

typedef struct km_counting_alloc {
    long attempts, allocs, frees;
    long fail_from; /* fail attempt number >= fail_from (0-based); < 0 never */
} km_counting_alloc;

static void *ca_alloc(void *user, size_t size, size_t alignment)
{
    km_counting_alloc *a = (km_counting_alloc *)user;
    void *p = NULL;
    long n = a->attempts++;
    if (a->fail_from >= 0 && n >= a->fail_from)
        return NULL;
    if (posix_memalign(&p, alignment < sizeof(void *) ? sizeof(void *) : alignment, size) != 0)
        return NULL;
    a->allocs++;
    return p;
}

static void ca_free(void *user, void *ptr)
{
    km_counting_alloc *a = (km_counting_alloc *)user;
    if (ptr) {
        a->frees++;
        free(ptr);
    }
}

typedef struct log_capture {
    int n_warn, n_info, n_error;
    char last_error[512];
    char all_info[4096];
} log_capture;

static void capture_log(void *user, qn_log_level level, const char *msg)
{
    log_capture *l = (log_capture *)user;
    if (level == QN_LOG_WARN)
        l->n_warn++;
    if (level == QN_LOG_ERROR) {
        l->n_error++;
        snprintf(l->last_error, sizeof l->last_error, "%s", msg);
    }
    if (level == QN_LOG_INFO) {
        size_t used = strlen(l->all_info);
        l->n_info++;
        if (used + 1 < sizeof l->all_info)
            snprintf(l->all_info + used, sizeof l->all_info - used, "%s\n", msg);
    }
}

static qn_context *make_ctx(void)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create(&ctx), QN_OK);
    return ctx;
}

static qn_context *make_ctx_isa(qn_isa cap)
{
    qn_context *ctx = NULL;
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, NULL, NULL, NULL, NULL, cap, &ctx),
                     QN_OK);
    return ctx;
}

static qn_context *make_ctx_log(log_capture *l)
{
    qn_context *ctx = NULL;
    memset(l, 0, sizeof *l);
    ck_assert_int_eq(qn_context_create_ex(NULL, NULL, NULL, capture_log, l, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    return ctx;
}

/* Train with params p; abort the test unless the call succeeds. */
static qn_kmeans_result train_ok(const qn_context *ctx, const float *x, size_t n, size_t dim,
                                 const qn_kmeans_params *p, float *c, uint32_t *codes)
{
    qn_kmeans_result r;
    qn_status st;
    memset(&r, 0, sizeof r);
    st = qn_kmeans_train(ctx, x, n, dim, p, c, codes, &r);
    REQUIRE(st == QN_OK, "qn_kmeans_train failed: %s", qn_status_str(st));
    return r;
}

/* ------------------------------------------------------------------------- */
/* Defaults                                                                   */
/* ------------------------------------------------------------------------- */

START_TEST(defaults_match_the_header)
{
    qn_kmeans_params p;
    memset(&p, 0xab, sizeof p);
    qn_kmeans_defaults(&p, 256, 42);
    ck_assert_uint_eq(p.k, 256);
    ck_assert_uint_eq(p.iterations, 20);
    ck_assert(p.tol == 1e-4);
    ck_assert_uint_eq(p.seed, 42);
    ck_assert_int_eq(p.init, QN_KMEANS_INIT_RANDOM);
    ck_assert_uint_eq(p.max_split_tries, 30);
    ck_assert(p.split_eps == 1e-6f);
    ck_assert_uint_eq(p.max_samples, 0);
    qn_kmeans_defaults(NULL, 1, 1); /* no crash */
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Quality                                                                    */
/* ------------------------------------------------------------------------- */

/*
 * k-means++ on well-separated clusters: each centroid lands on its own true
 * centre, codes equal the true labels (up to the permutation), and the
 * objective is the one of the true partition (about sigma^2 * dim).
 */
START_TEST(recovers_separated_clusters)
{
    static const uint64_t seeds[] = {1, 2, 3, 77, 0xfeedu};
    float *x = make_clusters(0xc0ffee);
    qn_context *ctx = make_ctx();
    float c[CL_K * CL_DIM];
    uint32_t *codes = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    double means[CL_K * CL_DIM], oracle = 0.0;
    size_t i, j, t, s;

    /* The objective of the true partition, from its sample means. */
    memset(means, 0, sizeof means);
    for (i = 0; i < CL_N; i++)
        for (t = 0; t < CL_DIM; t++)
            means[(i % CL_K) * CL_DIM + t] += x[i * CL_DIM + t];
    for (j = 0; j < CL_K * CL_DIM; j++)
        means[j] /= (double)(CL_N / CL_K);
    for (i = 0; i < CL_N; i++)
        for (t = 0; t < CL_DIM; t++) {
            double e = x[i * CL_DIM + t] - means[(i % CL_K) * CL_DIM + t];
            oracle += e * e;
        }
    oracle /= CL_N;
    ck_assert(fabs(oracle - CL_SIGMA * CL_SIGMA * CL_DIM) < 0.1 * CL_SIGMA * CL_SIGMA * CL_DIM);

    for (s = 0; s < COUNT(seeds); s++) {
        qn_kmeans_params p;
        qn_kmeans_result r;
        size_t map[CL_K]; /* true cluster -> found centroid */
        int used[CL_K];
        qn_kmeans_defaults(&p, CL_K, seeds[s]);
        p.init = QN_KMEANS_INIT_PLUSPLUS;
        r = train_ok(ctx, x, CL_N, CL_DIM, &p, c, codes);
        REQUIRE(r.n_empty == 0 && r.n_trained == CL_N && r.iterations_run >= 1 &&
                    r.iterations_run <= p.iterations,
                "seed %llu: empty %zu trained %zu iterations %u", (unsigned long long)seeds[s],
                r.n_empty, r.n_trained, r.iterations_run);
        memset(used, 0, sizeof used);
        for (j = 0; j < CL_K; j++) {
            double ctr[CL_DIM], best = 1e300;
            size_t bj = 0, q;
            cl_center(j, ctr);
            for (q = 0; q < CL_K; q++) {
                double d = 0.0;
                for (t = 0; t < CL_DIM; t++)
                    d += (c[q * CL_DIM + t] - ctr[t]) * (c[q * CL_DIM + t] - ctr[t]);
                if (d < best) {
                    best = d;
                    bj = q;
                }
            }
            REQUIRE(sqrt(best) < 0.2, "seed %llu: true centre %zu is %.4g from every centroid",
                    (unsigned long long)seeds[s], j, sqrt(best));
            REQUIRE(!used[bj], "seed %llu: centroid %zu serves two true centres",
                    (unsigned long long)seeds[s], bj);
            used[bj] = 1;
            map[j] = bj;
        }
        for (i = 0; i < CL_N; i++)
            REQUIRE(codes[i] == map[i % CL_K], "seed %llu: row %zu code %u, expected %zu",
                    (unsigned long long)seeds[s], i, (unsigned)codes[i], map[i % CL_K]);
        REQUIRE(fabs(r.objective - oracle) <= 1e-5 * oracle,
                "seed %llu: objective %.9g, true partition %.9g", (unsigned long long)seeds[s],
                r.objective, oracle);
        REQUIRE(fabs(r.objective - mse_of(x, CL_N, CL_DIM, c, codes)) <= 1e-9 * r.objective,
                "objective is not the MSE of the returned codes");
    }
    free(codes);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/*
 * Lloyd never increases the objective: iterations = 1, 2, 3, ... from one
 * seed, on uniform data (slow convergence) and on the clusters.
 */
START_TEST(objective_is_monotone)
{
    const size_t un = 1500, udim = 3;
    float *xu = make_uniform(un, udim, 0x5eed);
    float *xc = make_clusters(0x5eed);
    qn_context *ctx = make_ctx();
    float *c = (float *)malloc(20 * udim * sizeof(float) + CL_K * CL_DIM * sizeof(float));
    int init, data;
    for (data = 0; data <= 1; data++) {
        const float *x = data ? xc : xu;
        const size_t n = data ? CL_N : un, dim = data ? CL_DIM : udim, k = data ? CL_K : 20;
        for (init = 0; init <= 1; init++) {
            double prev = 1e300, first = 0.0;
            unsigned T;
            for (T = 1; T <= 15; T++) {
                qn_kmeans_params p;
                qn_kmeans_result r;
                qn_kmeans_defaults(&p, k, 1234);
                p.init = (qn_kmeans_init)init;
                p.iterations = T;
                p.tol = 0.0;
                r = train_ok(ctx, x, n, dim, &p, c, NULL);
                REQUIRE(r.iterations_run == T, "data %d init %d T %u: ran %u", data, init, T,
                        r.iterations_run);
                REQUIRE(r.objective <= prev * (1.0 + 1e-6),
                        "data %d init %d: objective %.12g after %u, %.12g before", data, init,
                        r.objective, T, prev);
                if (T == 1)
                    first = r.objective;
                prev = r.objective;
            }
            REQUIRE(data == 1 || prev < first * 0.99, "init %d: %.9g after 1, %.9g after 15",
                    init, first, prev);
        }
    }
    free(c);
    free(xc);
    free(xu);
    qn_context_destroy(ctx);
}
END_TEST

/*
 * One library iteration equals one step of a plain double-precision Lloyd
 * written here: the centroids after T + 1 iterations are the means of the
 * Voronoi cells of the centroids after T iterations.
 */
START_TEST(one_step_matches_reference_lloyd)
{
    const size_t n = 1200, dim = 5, k = 12;
    float *x = make_uniform(n, dim, 0xabcdef);
    qn_context *ctx = make_ctx();
    float *ct = (float *)malloc(k * dim * sizeof(float));
    float *ct1 = (float *)malloc(k * dim * sizeof(float));
    uint32_t *codes = (uint32_t *)malloc(n * sizeof(uint32_t));
    uint32_t *ref = (uint32_t *)malloc(n * sizeof(uint32_t));
    double *sums = (double *)malloc(k * dim * sizeof(double));
    size_t *cnt = (size_t *)malloc(k * sizeof(size_t));
    unsigned T;
    int init;

    for (init = 0; init <= 1; init++) {
        for (T = 1; T <= 6; T++) {
            qn_kmeans_params p;
            size_t i, j, t;
            qn_kmeans_defaults(&p, k, 99);
            p.init = (qn_kmeans_init)init;
            p.tol = 0.0;
            p.iterations = T;
            train_ok(ctx, x, n, dim, &p, ct, codes);
            p.iterations = T + 1;
            train_ok(ctx, x, n, dim, &p, ct1, NULL);

            /* reference step from ct */
            memset(sums, 0, k * dim * sizeof(double));
            memset(cnt, 0, k * sizeof(size_t));
            for (i = 0; i < n; i++) {
                double best = dist2(x + i * dim, ct, dim);
                size_t bj = 0;
                for (j = 1; j < k; j++) {
                    double d = dist2(x + i * dim, ct + j * dim, dim);
                    if (d < best) {
                        best = d;
                        bj = j;
                    }
                }
                ref[i] = (uint32_t)bj;
                cnt[bj]++;
                for (t = 0; t < dim; t++)
                    sums[bj * dim + t] += x[i * dim + t];
            }
            for (i = 0; i < n; i++)
                REQUIRE(codes[i] == ref[i], "init %d T %u row %zu: code %u, reference %u", init,
                        T, i, (unsigned)codes[i], (unsigned)ref[i]);
            for (j = 0; j < k; j++) {
                REQUIRE(cnt[j] > 0, "init %d T %u: reference cluster %zu empty", init, T, j);
                for (t = 0; t < dim; t++) {
                    double m = sums[j * dim + t] / (double)cnt[j];
                    REQUIRE(fabs(ct1[j * dim + t] - m) <= 1e-6 * (1.0 + fabs(m)),
                            "init %d T %u centroid %zu[%zu]: %.9g, reference %.9g", init, T, j,
                            t, (double)ct1[j * dim + t], m);
                }
            }
        }
    }
    free(cnt);
    free(sums);
    free(ref);
    free(codes);
    free(ct1);
    free(ct);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* x = {0, 1, 10, 11}, k = 2: centroids {0.5, 10.5}, objective 0.25, from any init. */
START_TEST(hand_computed_1d)
{
    static const float x[4] = {0.0f, 1.0f, 10.0f, 11.0f};
    qn_context *ctx = make_ctx();
    uint64_t seed;
    int init;
    for (init = 0; init <= 1; init++) {
        for (seed = 0; seed < 16; seed++) {
            qn_kmeans_params p;
            qn_kmeans_result r;
            float c[2];
            uint32_t codes[4];
            float lo, hi;
            qn_kmeans_defaults(&p, 2, seed);
            p.init = (qn_kmeans_init)init;
            r = train_ok(ctx, x, 4, 1, &p, c, codes);
            lo = c[0] < c[1] ? c[0] : c[1];
            hi = c[0] < c[1] ? c[1] : c[0];
            REQUIRE(lo == 0.5f && hi == 10.5f, "init %d seed %llu: centroids %g %g", init,
                    (unsigned long long)seed, (double)c[0], (double)c[1]);
            REQUIRE(r.objective == 0.25, "objective %.17g", r.objective);
            REQUIRE(codes[0] == codes[1] && codes[2] == codes[3] && codes[0] != codes[2] &&
                        c[codes[0]] == 0.5f,
                    "codes %u %u %u %u", (unsigned)codes[0], (unsigned)codes[1],
                    (unsigned)codes[2], (unsigned)codes[3]);
            REQUIRE(r.n_empty == 0 && r.n_splits == 0, "empty %zu splits %zu", r.n_empty,
                    r.n_splits);
        }
    }
    qn_context_destroy(ctx);
}
END_TEST

/* k = n distinct points: every point is a centroid, objective 0, stop after one iteration. */
START_TEST(k_equals_n_distinct_points)
{
    const size_t n = 50, dim = 3;
    float *x = make_uniform(n, dim, 31337);
    float *c = (float *)malloc(n * dim * sizeof(float));
    uint32_t codes[50];
    int seen[50];
    qn_context *ctx = make_ctx();
    int init;
    for (init = 0; init <= 1; init++) {
        qn_kmeans_params p;
        qn_kmeans_result r;
        size_t i;
        qn_kmeans_defaults(&p, n, 5);
        p.init = (qn_kmeans_init)init;
        r = train_ok(ctx, x, n, dim, &p, c, codes);
        ck_assert(r.objective == 0.0);
        ck_assert_uint_eq(r.iterations_run, 1);
        ck_assert_uint_eq(r.n_empty, 0);
        memset(seen, 0, sizeof seen);
        for (i = 0; i < n; i++) {
            REQUIRE(codes[i] < n && !seen[codes[i]], "row %zu: code %u", i, (unsigned)codes[i]);
            seen[codes[i]] = 1;
            REQUIRE(memcmp(c + (size_t)codes[i] * dim, x + i * dim, dim * sizeof(float)) == 0,
                    "row %zu is not its centroid", i);
        }
    }
    free(c);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* k = 1: the centroid is the mean of the data. */
START_TEST(single_centroid_is_the_mean)
{
    const size_t n = 777, dim = 6;
    float *x = make_uniform(n, dim, 8);
    qn_context *ctx = make_ctx();
    qn_kmeans_params p;
    qn_kmeans_result r;
    float c[6];
    double mean[6] = {0}, obj = 0.0;
    size_t i, t;
    for (i = 0; i < n; i++)
        for (t = 0; t < dim; t++)
            mean[t] += x[i * dim + t];
    for (t = 0; t < dim; t++)
        mean[t] /= (double)n;
    for (i = 0; i < n; i++)
        for (t = 0; t < dim; t++)
            obj += (x[i * dim + t] - mean[t]) * (x[i * dim + t] - mean[t]);
    obj /= (double)n;
    qn_kmeans_defaults(&p, 1, 3);
    r = train_ok(ctx, x, n, dim, &p, c, NULL);
    for (t = 0; t < dim; t++)
        REQUIRE(fabs(c[t] - mean[t]) <= 1e-6, "dim %zu: %.9g vs %.9g", t, (double)c[t], mean[t]);
    ck_assert(fabs(r.objective - obj) <= 1e-9 * obj);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(tolerance_stops_early)
{
    float *x = make_clusters(11);
    qn_context *ctx = make_ctx();
    qn_kmeans_params p;
    qn_kmeans_result r;
    float c[CL_K * CL_DIM];
    qn_kmeans_defaults(&p, CL_K, 4);
    p.init = QN_KMEANS_INIT_PLUSPLUS;
    p.iterations = 100;
    r = train_ok(ctx, x, CL_N, CL_DIM, &p, c, NULL);
    REQUIRE(r.iterations_run < 100, "ran %u of 100", r.iterations_run);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Determinism                                                                */
/* ------------------------------------------------------------------------- */

START_TEST(same_seed_same_bytes)
{
    const size_t n = 3000, dim = 8, k = 32;
    float *x = make_uniform(n, dim, 2024);
    qn_context *ctx = make_ctx();
    float *c1 = (float *)malloc(k * dim * sizeof(float));
    float *c2 = (float *)malloc(k * dim * sizeof(float));
    uint32_t *k1 = (uint32_t *)malloc(n * sizeof(uint32_t));
    uint32_t *k2 = (uint32_t *)malloc(n * sizeof(uint32_t));
    int init;
    for (init = 0; init <= 1; init++) {
        size_t max_samples;
        for (max_samples = 0; max_samples <= 1000; max_samples += 1000) {
            qn_kmeans_params p;
            qn_kmeans_result r1, r2;
            uint64_t seed;
            int differs = 0;
            qn_kmeans_defaults(&p, k, 7);
            p.init = (qn_kmeans_init)init;
            p.max_samples = max_samples;
            r1 = train_ok(ctx, x, n, dim, &p, c1, k1);
            r2 = train_ok(ctx, x, n, dim, &p, c2, k2);
            ck_assert(memcmp(c1, c2, k * dim * sizeof(float)) == 0);
            ck_assert(memcmp(k1, k2, n * sizeof(uint32_t)) == 0);
            ck_assert(same_result(&r1, &r2));
            for (seed = 8; seed < 12; seed++) {
                p.seed = seed;
                train_ok(ctx, x, n, dim, &p, c2, k2);
                differs |= memcmp(c1, c2, k * dim * sizeof(float)) != 0;
            }
            REQUIRE(differs, "init %d: other seeds give the same codebook", init);
        }
    }
    free(k2);
    free(k1);
    free(c2);
    free(c1);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* Every ISA the machine runs gives the scalar codes on well-separated data. */
START_TEST(isa_caps_agree)
{
    float *x = make_clusters(99);
    uint32_t *ref = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    uint32_t *codes = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    float cref[CL_K * CL_DIM], c[CL_K * CL_DIM];
    int init, isa;
    for (init = 0; init <= 1; init++) {
        qn_kmeans_params p;
        qn_context *ctx = make_ctx_isa(QN_ISA_SCALAR);
        qn_isa got;
        qn_kmeans_defaults(&p, CL_K, 21);
        p.init = (qn_kmeans_init)init;
        ck_assert_int_eq(qn_context_get_isa(ctx, &got), QN_OK);
        ck_assert_int_eq(got, QN_ISA_SCALAR);
        train_ok(ctx, x, CL_N, CL_DIM, &p, cref, ref);
        qn_context_destroy(ctx);
        for (isa = QN_ISA_AVX2; isa <= QN_ISA_AVX512 + 1; isa++) {
            size_t j;
            /* isa == AVX512 + 1 stands for the default context (best of CPU and QN_ISA) */
            ctx = isa <= QN_ISA_AVX512 ? make_ctx_isa((qn_isa)isa) : make_ctx();
            train_ok(ctx, x, CL_N, CL_DIM, &p, c, codes);
            ck_assert(memcmp(ref, codes, CL_N * sizeof(uint32_t)) == 0);
            for (j = 0; j < CL_K * CL_DIM; j++)
                REQUIRE(fabs(c[j] - cref[j]) <= 1e-5 * (1.0 + fabs(cref[j])),
                        "isa %d: centroid value %zu %.9g vs scalar %.9g", isa, j, (double)c[j],
                        (double)cref[j]);
            qn_context_destroy(ctx);
        }
    }
    free(codes);
    free(ref);
    free(x);
}
END_TEST

/* k-means++ is at least as good as random init on clustered data (mean over seeds). */
START_TEST(plusplus_no_worse_than_random)
{
    float *x = make_clusters(4242);
    qn_context *ctx = make_ctx();
    float c[CL_K * CL_DIM];
    double sum[2] = {0.0, 0.0};
    uint64_t seed;
    int init;
    for (seed = 100; seed < 108; seed++) {
        for (init = 0; init <= 1; init++) {
            qn_kmeans_params p;
            qn_kmeans_defaults(&p, CL_K, seed);
            p.init = (qn_kmeans_init)init;
            sum[init] += train_ok(ctx, x, CL_N, CL_DIM, &p, c, NULL).objective;
        }
    }
    REQUIRE(sum[QN_KMEANS_INIT_PLUSPLUS] <= sum[QN_KMEANS_INIT_RANDOM],
            "k-means++ mean objective %.6g, random %.6g", sum[1] / 8, sum[0] / 8);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Empty clusters                                                             */
/* ------------------------------------------------------------------------- */

/* 100 copies of 3 distinct points with k = 5: terminates, two centroids unused. */
START_TEST(duplicates_leave_reported_empty_clusters)
{
    static const float pts[3][2] = {{1.0f, 2.0f}, {-3.0f, 0.5f}, {100.0f, -7.0f}};
    const size_t n = 300, dim = 2;
    float x[600], c[5 * 2];
    uint32_t codes[300];
    log_capture lg;
    qn_context *ctx = make_ctx_log(&lg);
    size_t i, k, total_splits = 0;
    int init;
    unsigned tries;
    for (i = 0; i < n; i++)
        memcpy(x + i * dim, pts[(i * 7) % 3], sizeof pts[0]);
    for (k = 3; k <= 5; k++) {
        for (init = 0; init <= 1; init++) {
            for (tries = 0; tries <= 30; tries += 30) {
                uint64_t seed;
                for (seed = 0; seed < 6; seed++) {
                    qn_kmeans_params p;
                    qn_kmeans_result r;
                    int warn_before = lg.n_warn;
                    qn_kmeans_defaults(&p, k, seed);
                    p.init = (qn_kmeans_init)init;
                    p.max_split_tries = tries;
                    r = train_ok(ctx, x, n, dim, &p, c, codes);
                    size_t unused = 0, j;
                    int used[5] = {0, 0, 0, 0, 0};
                    REQUIRE(all_finite(c, k * dim), "non-finite centroid");
                    require_nearest(x, n, dim, c, k, codes);
                    for (i = 0; i < n; i++)
                        used[codes[i]] = 1;
                    for (j = 0; j < k; j++)
                        unused += !used[j];
                    REQUIRE(r.n_empty == unused, "n_empty %zu, %zu centroids unused", r.n_empty,
                            unused);
                    REQUIRE((lg.n_warn > warn_before) == (r.n_empty > 0),
                            "warning %d, n_empty %zu", lg.n_warn - warn_before, r.n_empty);
                    total_splits += r.n_splits;
                    if (tries == 0) {
                        /* no repair: two centroids drawn on copies of one point stay so */
                        REQUIRE(r.n_empty >= k - 3 && r.n_splits == 0, "n_empty %zu splits %zu",
                                r.n_empty, r.n_splits);
                        continue;
                    }
                    REQUIRE(r.n_empty == k - 3, "k %zu init %d tries %u seed %llu: n_empty %zu",
                            k, init, tries, (unsigned long long)seed, r.n_empty);
                    REQUIRE(r.objective == 0.0, "objective %.9g", r.objective);
                    for (i = 0; i < n; i++)
                        REQUIRE(memcmp(c + (size_t)codes[i] * dim, x + i * dim,
                                       dim * sizeof(float)) == 0,
                                "row %zu: code %u is not its point", i, (unsigned)codes[i]);
                }
            }
        }
    }
    REQUIRE(total_splits > 0, "no run split a cluster");
    qn_context_destroy(ctx);
}
END_TEST

/*
 * 60 copies of one point plus 60 distinct points elsewhere, k = 4: random init
 * often draws the repeated point twice, leaving a cluster empty; the repair
 * splits the spread cluster (the repeated one cannot be split) and no cluster
 * stays empty. dim 200 takes the split signs from several Philox blocks.
 */
START_TEST(split_repairs_empty_clusters)
{
    static const size_t dims[] = {2, 200};
    const size_t n = 120, k = 4;
    uint32_t codes[120];
    qn_context *ctx = make_ctx();
    size_t a;
    for (a = 0; a < COUNT(dims); a++) {
        const size_t dim = dims[a];
        float *x = (float *)malloc(n * dim * sizeof(float));
        float *c = (float *)malloc(k * dim * sizeof(float));
        uint64_t s = 17, seed;
        size_t i, t, total_splits = 0;
        for (i = 0; i < n; i++)
            for (t = 0; t < dim; t++)
                x[i * dim + t] = i % 2 == 0 ? 0.0f : (float)(50.0 + rnd_unit(&s));
        for (seed = 0; seed < 20; seed++) {
            qn_kmeans_params p;
            qn_kmeans_result r;
            qn_kmeans_defaults(&p, k, seed);
            r = train_ok(ctx, x, n, dim, &p, c, codes);
            REQUIRE(r.n_empty == 0, "dim %zu seed %llu: %zu empty", dim,
                    (unsigned long long)seed, r.n_empty);
            REQUIRE(all_finite(c, k * dim), "non-finite centroid");
            require_nearest(x, n, dim, c, k, codes);
            total_splits += r.n_splits;
        }
        REQUIRE(total_splits > 0, "dim %zu: no seed needed a split", dim);
        free(c);
        free(x);
    }
    qn_context_destroy(ctx);
}
END_TEST

/* Finite values near FLT_MAX: float distances overflow, yet the result stays finite. */
START_TEST(huge_values_stay_finite)
{
    const size_t n = 100, dim = 4, k = 4;
    float x[400], c[16];
    uint32_t codes[100];
    qn_context *ctx = make_ctx();
    uint64_t s = 3;
    size_t i;
    int init;
    for (i = 0; i < n * dim; i++)
        x[i] = (float)((rnd_unit(&s) - 0.5) * 6e38);
    for (init = 0; init <= 1; init++) {
        qn_kmeans_params p;
        qn_kmeans_result r;
        qn_kmeans_defaults(&p, k, 1);
        p.init = (qn_kmeans_init)init;
        r = train_ok(ctx, x, n, dim, &p, c, codes);
        ck_assert(all_finite(c, k * dim));
        ck_assert(isfinite(r.objective) && r.objective > 0.0);
        for (i = 0; i < n; i++)
            ck_assert_uint_lt(codes[i], k);
    }
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Subsampling                                                                */
/* ------------------------------------------------------------------------- */

START_TEST(subsampling_is_reported_and_codes_cover_all)
{
    float *x = make_clusters(555);
    uint32_t *codes = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    float c[CL_K * CL_DIM];
    log_capture lg;
    qn_context *ctx = make_ctx_log(&lg);
    static const size_t caps[] = {500, 8, 1999, 2000, 5000, 0};
    size_t a, i;
    for (a = 0; a < COUNT(caps); a++) {
        qn_kmeans_params p;
        qn_kmeans_result r;
        const size_t expect = caps[a] > 0 && caps[a] < CL_N ? caps[a] : CL_N;
        char want[128];
        qn_kmeans_defaults(&p, CL_K, 3);
        p.init = QN_KMEANS_INIT_PLUSPLUS;
        p.max_samples = caps[a];
        for (i = 0; i < CL_N; i++)
            codes[i] = CODE_SENTINEL;
        lg.all_info[0] = '\0';
        r = train_ok(ctx, x, CL_N, CL_DIM, &p, c, codes);
        REQUIRE(r.n_trained == expect, "max_samples %zu: n_trained %zu", caps[a], r.n_trained);
        require_nearest(x, CL_N, CL_DIM, c, CL_K, codes);
        REQUIRE(fabs(r.objective - mse_of(x, CL_N, CL_DIM, c, codes)) <= 1e-9 * r.objective,
                "objective %.9g is not the MSE over all rows", r.objective);
        snprintf(want, sizeof want, "kmeans: training on %zu of %d blocks (subsampled)", expect,
                 CL_N);
        REQUIRE((strstr(lg.all_info, want) != NULL) == (expect < CL_N),
                "max_samples %zu: log was \"%s\"", caps[a], lg.all_info);
    }
    free(codes);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

START_TEST(codes_null_gives_same_result)
{
    float *x = make_clusters(6);
    uint32_t *codes = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    float c1[CL_K * CL_DIM], c2[CL_K * CL_DIM];
    qn_context *ctx = make_ctx();
    qn_kmeans_params p;
    qn_kmeans_result r1, r2;
    qn_kmeans_defaults(&p, CL_K, 3);
    p.max_samples = 700;
    r1 = train_ok(ctx, x, CL_N, CL_DIM, &p, c1, codes);
    r2 = train_ok(ctx, x, CL_N, CL_DIM, &p, c2, NULL);
    ck_assert(memcmp(c1, c2, sizeof c1) == 0);
    ck_assert(same_result(&r1, &r2));
    ck_assert_int_eq(qn_kmeans_train(ctx, x, CL_N, CL_DIM, &p, c2, NULL, NULL), QN_OK);
    ck_assert(memcmp(c1, c2, sizeof c1) == 0);
    free(codes);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Errors leave outputs untouched                                             */
/* ------------------------------------------------------------------------- */

#define OUT_K 8
#define OUT_N 64

typedef struct outputs {
    float c[OUT_K * 4];
    uint32_t codes[OUT_N];
    qn_kmeans_result res;
} outputs;

static void outputs_fill(outputs *o)
{
    memset(o, 0x5a, sizeof *o);
}

static int outputs_untouched(const outputs *o)
{
    outputs ref;
    outputs_fill(&ref);
    return memcmp(o, &ref, sizeof ref) == 0;
}

START_TEST(bad_arguments_are_rejected)
{
    float x[OUT_N * 4];
    log_capture lg;
    qn_context *ctx = make_ctx_log(&lg);
    qn_kmeans_params good, p;
    outputs o;
    size_t i;
    float *big;
    for (i = 0; i < OUT_N * 4; i++)
        x[i] = (float)i;
    qn_kmeans_defaults(&good, OUT_K, 1);

#define EXPECT(call, status)                                                                      \
    do {                                                                                           \
        outputs_fill(&o);                                                                          \
        lg.last_error[0] = '\0';                                                                   \
        ck_assert_int_eq((call), (status));                                                        \
        ck_assert(outputs_untouched(&o));                                                          \
        ck_assert_msg(ctx == NULL || strstr(lg.last_error, "qn_kmeans_train") != NULL,             \
                      "error message \"%s\"", lg.last_error);                                      \
    } while (0)

    EXPECT(qn_kmeans_train(ctx, NULL, OUT_N, 4, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, NULL, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &good, NULL, o.codes, &o.res), QN_ERR_INVALID_ARG);
    EXPECT(qn_kmeans_train(ctx, x, 0, 4, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 0, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    /* k: 0, > n, > max_samples */
    p = good;
    p.k = 0;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    EXPECT(qn_kmeans_train(ctx, x, OUT_K - 1, 4, &good, o.c, o.codes, &o.res),
           QN_ERR_INVALID_ARG);
    p = good;
    p.max_samples = OUT_K - 1;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    /* iterations 0, unknown init, bad tol / eps */
    p = good;
    p.iterations = 0;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    p = good;
    p.init = (qn_kmeans_init)7;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    p = good;
    p.tol = -1.0;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    p.tol = NAN;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    p = good;
    p.split_eps = -1e-6f;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    p.split_eps = INFINITY;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &p, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    /* non-finite input anywhere, also in the last element */
    x[17] = NAN;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    x[17] = 17.0f;
    x[OUT_N * 4 - 1] = -INFINITY;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    x[OUT_N * 4 - 1] = INFINITY;
    EXPECT(qn_kmeans_train(ctx, x, OUT_N, 4, &good, o.c, o.codes, &o.res), QN_ERR_INVALID_ARG);
    x[OUT_N * 4 - 1] = (float)(OUT_N * 4 - 1);
    /* n x dim overflows: rejected before x is read */
    EXPECT(qn_kmeans_train(ctx, x, SIZE_MAX / 2, 4, &good, o.c, o.codes, &o.res),
           QN_ERR_OVERFLOW);
    EXPECT(qn_kmeans_train(ctx, x, 3, SIZE_MAX / 2, &good, o.c, o.codes, &o.res),
           QN_ERR_INVALID_ARG); /* k = 8 > n = 3 */
    p = good;
    p.k = 2;
    EXPECT(qn_kmeans_train(ctx, x, 3, SIZE_MAX / 2, &p, o.c, o.codes, &o.res), QN_ERR_OVERFLOW);
    /* NULL context: nothing to log through, still an error */
    {
        const qn_context *nctx = NULL;
        outputs_fill(&o);
        ck_assert_int_eq(qn_kmeans_train(nctx, x, OUT_N, 4, &good, o.c, o.codes, &o.res),
                         QN_ERR_INVALID_ARG);
        ck_assert(outputs_untouched(&o));
    }
#undef EXPECT

    /* k > 65536 (n is large enough) */
    big = (float *)calloc(70000, sizeof(float));
    ck_assert_ptr_nonnull(big);
    p = good;
    p.k = 65537;
    outputs_fill(&o);
    ck_assert_int_eq(qn_kmeans_train(ctx, big, 70000, 1, &p, o.c, NULL, &o.res),
                     QN_ERR_INVALID_ARG);
    ck_assert(outputs_untouched(&o));
    free(big);

    /* the good call works */
    outputs_fill(&o);
    ck_assert_int_eq(qn_kmeans_train(ctx, x, OUT_N, 4, &good, o.c, o.codes, &o.res), QN_OK);
    qn_context_destroy(ctx);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Progress and cancellation                                                  */
/* ------------------------------------------------------------------------- */

typedef struct progress_rec {
    int calls, stop_at; /* return non-zero on call number stop_at (1-based); 0 never */
    int bad;
    uint64_t total;
} progress_rec;

static int rec_progress(void *user, const char *what, uint64_t done, uint64_t total)
{
    progress_rec *r = (progress_rec *)user;
    r->calls++;
    if (strcmp(what, "kmeans") != 0 || done != (uint64_t)r->calls || total != r->total)
        r->bad = 1;
    return r->stop_at != 0 && r->calls >= r->stop_at;
}

START_TEST(progress_reports_and_cancels)
{
    float *x = make_uniform(800, 3, 1);
    km_counting_alloc ca = {0, 0, 0, -1};
    progress_rec pr;
    qn_context *ctx = NULL;
    qn_kmeans_params p;
    qn_kmeans_result r;
    float c[10 * 3];
    uint32_t codes[800];
    int stop;

    ck_assert_int_eq(qn_context_create_ex(ca_alloc, ca_free, &ca, NULL, NULL, rec_progress, &pr,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    qn_kmeans_defaults(&p, 10, 2);
    p.tol = 0.0;
    p.iterations = 6;

    memset(&pr, 0, sizeof pr);
    pr.total = 6;
    r = train_ok(ctx, x, 800, 3, &p, c, codes);
    ck_assert_int_eq(pr.calls, 6);
    ck_assert_int_eq(pr.bad, 0);
    ck_assert_uint_eq(r.iterations_run, 6);

    for (stop = 1; stop <= 6; stop++) {
        long live = ca.allocs - ca.frees;
        size_t i;
        memset(&pr, 0, sizeof pr);
        pr.total = 6;
        pr.stop_at = stop;
        memset(c, 0x5a, sizeof c);
        memset(&r, 0x5a, sizeof r);
        for (i = 0; i < 800; i++)
            codes[i] = CODE_SENTINEL;
        ck_assert_int_eq(qn_kmeans_train(ctx, x, 800, 3, &p, c, codes, &r), QN_ERR_CANCELLED);
        ck_assert_int_eq(pr.calls, stop);
        ck_assert_int_eq(pr.bad, 0);
        ck_assert_int_eq(ca.allocs - ca.frees, live);
        for (i = 0; i < sizeof c; i++)
            ck_assert_uint_eq(((const unsigned char *)c)[i], 0x5a);
        for (i = 0; i < sizeof r; i++)
            ck_assert_uint_eq(((const unsigned char *)&r)[i], 0x5a);
        for (i = 0; i < 800; i++)
            ck_assert_uint_eq(codes[i], CODE_SENTINEL);
    }
    qn_context_destroy(ctx);
    ck_assert_int_eq(ca.allocs, ca.frees);
    free(x);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* Allocation failures                                                        */
/* ------------------------------------------------------------------------- */

/* Fail every allocation of the call in turn: OUT_OF_MEMORY, outputs untouched, no leak. */
START_TEST(every_allocation_failure_is_clean)
{
    const size_t n = 300, dim = 3, k = 6;
    float *x = make_uniform(n, dim, 77);
    km_counting_alloc ca = {0, 0, 0, -1};
    qn_context *ctx = NULL;
    int init, sub, with_codes;

    ck_assert_int_eq(qn_context_create_ex(ca_alloc, ca_free, &ca, NULL, NULL, NULL, NULL,
                                          QN_ISA_AVX512, &ctx),
                     QN_OK);
    for (init = 0; init <= 1; init++) {
        for (sub = 0; sub <= 1; sub++) {
            for (with_codes = 0; with_codes <= 1; with_codes++) {
                qn_kmeans_params p;
                float c[6 * 3];
                uint32_t codes[300];
                qn_kmeans_result r;
                long base, needed, fail;
                qn_kmeans_defaults(&p, k, 9);
                p.init = (qn_kmeans_init)init;
                p.max_samples = sub ? 100 : 0;

                /* count the allocations of a successful call */
                base = ca.attempts;
                ck_assert_int_eq(qn_kmeans_train(ctx, x, n, dim, &p, c, with_codes ? codes : NULL,
                                                 &r),
                                 QN_OK);
                needed = ca.attempts - base;
                ck_assert_int_gt(needed, 0);
                ck_assert_int_eq(ca.allocs - ca.frees, 1); /* only the context */

                for (fail = 0; fail < needed; fail++) {
                    size_t i;
                    ca.fail_from = ca.attempts + fail;
                    memset(c, 0x5a, sizeof c);
                    memset(&r, 0x5a, sizeof r);
                    for (i = 0; i < n; i++)
                        codes[i] = CODE_SENTINEL;
                    ck_assert_int_eq(qn_kmeans_train(ctx, x, n, dim, &p, c,
                                                     with_codes ? codes : NULL, &r),
                                     QN_ERR_OUT_OF_MEMORY);
                    ca.fail_from = -1;
                    ck_assert_int_eq(ca.allocs - ca.frees, 1);
                    for (i = 0; i < sizeof c; i++)
                        ck_assert_uint_eq(((const unsigned char *)c)[i], 0x5a);
                    for (i = 0; i < sizeof r; i++)
                        ck_assert_uint_eq(((const unsigned char *)&r)[i], 0x5a);
                    for (i = 0; i < n; i++)
                        ck_assert_uint_eq(codes[i], CODE_SENTINEL);
                }
                /* and with all of them available it succeeds again */
                ca.fail_from = ca.attempts + needed;
                ck_assert_int_eq(qn_kmeans_train(ctx, x, n, dim, &p, c, with_codes ? codes : NULL,
                                                 &r),
                                 QN_OK);
                ca.fail_from = -1;
            }
        }
    }
    qn_context_destroy(ctx);
    ck_assert_int_eq(ca.allocs, ca.frees);
    free(x);
}
END_TEST

/* ------------------------------------------------------------------------- */
/* The fused assignment with its per-row certificate, and threads             */
/* ------------------------------------------------------------------------- */

/* Exact (double) nearest distance of row x among the k centroids. */
static double nearest_d(const float *x, const float *c, size_t k, size_t dim)
{
    double best = dist2(x, c, dim);
    size_t j;
    for (j = 1; j < k; j++) {
        const double d = dist2(x, c + j * dim, dim);
        if (d < best)
            best = d;
    }
    return best;
}

/*
 * qn_assign_rows on every ISA: data near the origin keeps almost every fused
 * choice (the fast path is really used) within the certified slack; data far
 * from the origin compared with its spread (where the fused formula loses
 * every digit) is all re-assigned and exact to the kernels' 1e-5.
 */
START_TEST(assign_rows_certify_or_redo)
{
    const size_t n = 5000, dim = 8, k = 256;
    const qn_kernels *kt = qn_kernels_for_isa((qn_isa)_i);
    float *x, *c, *cn, *scratch;
    uint32_t *codes;
    size_t i, redo;
    int shifted;
    if (!kt)
        return;
    x = make_uniform(n, dim, 0x1111);
    c = make_uniform(k, dim, 0x2222);
    cn = (float *)malloc(k * sizeof(float));
    scratch = (float *)malloc(n * sizeof(float));
    codes = (uint32_t *)malloc(n * sizeof(uint32_t));
    for (shifted = 0; shifted <= 1; shifted++) {
        if (shifted) {
            for (i = 0; i < n * dim; i++)
                x[i] += 1000.0f;
            for (i = 0; i < k * dim; i++)
                c[i] += 1000.0f;
        }
        ck_assert(qn_fused_usable(dim, 1001.0, qn_centroid_norms(c, k, dim, cn)));
        redo = qn_assign_rows(kt, x, n, dim, dim, c, cn, k, codes, scratch);
        for (i = 0; i < n; i++) {
            const double best = nearest_d(x + i * dim, c, k, dim);
            const double got = dist2(x + i * dim, c + (size_t)codes[i] * dim, dim);
            const double rel = shifted ? 1e-5 : QN_ASSIGN_REL;
            REQUIRE(codes[i] < k && got <= best * (1.0 + rel) + 1e-12,
                    "%s shifted %d row %zu: code %u at %.9g, nearest %.9g", kt->name, shifted, i,
                    (unsigned)codes[i], got, best);
        }
        if (shifted)
            REQUIRE(redo == n, "%s: only %zu of %zu shifted rows re-assigned", kt->name, redo, n);
        else
            REQUIRE(redo <= n / 50, "%s: %zu of %zu rows re-assigned near the origin", kt->name,
                    redo, n);
    }
    free(codes);
    free(scratch);
    free(cn);
    free(c);
    free(x);
}
END_TEST

/* Centroids 0, 1, ..., 65535 in 1-D: ||c||^2 has no unit digits left in float, codes stay exact. */
START_TEST(assign_rows_large_integers_exact)
{
    const size_t k = 65536;
    static const float x[6] = {65535.0f, 0.0f, 1.0f, 65534.0f, 40000.4f, 32768.6f};
    static const uint32_t want[6] = {65535, 0, 1, 65534, 40000, 32769};
    const qn_kernels *kt = qn_kernels_for_isa((qn_isa)_i);
    float *c, *cn, scratch[6];
    uint32_t codes[6];
    size_t j;
    if (!kt)
        return;
    c = (float *)malloc(k * sizeof(float));
    cn = (float *)malloc(k * sizeof(float));
    for (j = 0; j < k; j++)
        c[j] = (float)j;
    ck_assert(qn_fused_usable(1, 65535.0, qn_centroid_norms(c, k, 1, cn)));
    qn_assign_rows(kt, x, 6, 1, 1, c, cn, k, codes, scratch);
    for (j = 0; j < 6; j++)
        REQUIRE(codes[j] == want[j], "%s: x = %.1f got %u, expected %u", kt->name, (double)x[j],
                (unsigned)codes[j], (unsigned)want[j]);
    free(cn);
    free(c);
}
END_TEST

/* The well-separated clusters moved far from the origin: still recovered exactly. */
START_TEST(clusters_far_from_origin)
{
    float *x = make_clusters(0xfa4);
    uint32_t *codes = (uint32_t *)malloc(CL_N * sizeof(uint32_t));
    float c[CL_K * CL_DIM];
    qn_context *ctx = make_ctx();
    qn_kmeans_params p;
    qn_kmeans_result r;
    size_t i;
    for (i = 0; i < CL_N * CL_DIM; i++)
        x[i] += 3000.0f;
    qn_kmeans_defaults(&p, CL_K, 8);
    p.init = QN_KMEANS_INIT_PLUSPLUS;
    r = train_ok(ctx, x, CL_N, CL_DIM, &p, c, codes);
    require_nearest(x, CL_N, CL_DIM, c, CL_K, codes);
    for (i = CL_K; i < CL_N; i++)
        REQUIRE(codes[i] == codes[i % CL_K], "row %zu: code %u, row %zu has %u", i,
                (unsigned)codes[i], i % CL_K, (unsigned)codes[i % CL_K]);
    REQUIRE(fabs(r.objective - mse_of(x, CL_N, CL_DIM, c, codes)) <= 1e-9 * r.objective,
            "objective %.9g is not the MSE of the codes", r.objective);
    free(codes);
    free(x);
    qn_context_destroy(ctx);
}
END_TEST

/*
 * Threads: the same thread count gives the same bytes; different thread
 * counts give the same codes on well-separated data and centroids and
 * objective that differ only by summation order.
 */
START_TEST(threads_deterministic_and_agree)
{
    const size_t per = 1500, n = CL_K * per;
    float *x = (float *)malloc(n * CL_DIM * sizeof(float));
    uint32_t *codes[4];
    float c[4][CL_K * CL_DIM];
    qn_kmeans_result res[4];
    uint64_t s = 0x7777;
    size_t i, t;
    int run;
    ck_assert_ptr_nonnull(x);
    for (i = 0; i < n; i++) {
        double ctr[CL_DIM];
        cl_center(i % CL_K, ctr);
        for (t = 0; t < CL_DIM; t++)
            x[i * CL_DIM + t] = (float)(ctr[t] + CL_SIGMA * rnd_normal(&s));
    }
    /* runs: 1 thread, 2 threads, 2 threads again, 3 threads */
    for (run = 0; run < 4; run++) {
        static const unsigned threads[4] = {1, 2, 2, 3};
        qn_context *ctx = make_ctx();
        qn_kmeans_params p;
        ck_assert_int_eq(qn_context_set_threads(ctx, threads[run]), QN_OK);
        qn_kmeans_defaults(&p, CL_K, 12);
        p.init = QN_KMEANS_INIT_PLUSPLUS;
        p.tol = 0.0;
        p.iterations = 8;
        codes[run] = (uint32_t *)malloc(n * sizeof(uint32_t));
        res[run] = train_ok(ctx, x, n, CL_DIM, &p, c[run], codes[run]);
        qn_context_destroy(ctx);
    }
    ck_assert(memcmp(c[1], c[2], sizeof c[1]) == 0);
    ck_assert(memcmp(codes[1], codes[2], n * sizeof(uint32_t)) == 0);
    ck_assert(same_result(&res[1], &res[2]));
    for (run = 1; run < 4; run++) {
        ck_assert(memcmp(codes[0], codes[run], n * sizeof(uint32_t)) == 0);
        for (i = 0; i < CL_K * CL_DIM; i++)
            REQUIRE(fabs(c[run][i] - c[0][i]) <= 1e-6 * (1.0 + fabs(c[0][i])),
                    "run %d: centroid value %zu %.9g, 1 thread %.9g", run, i, (double)c[run][i],
                    (double)c[0][i]);
        REQUIRE(fabs(res[run].objective - res[0].objective) <= 1e-12 * res[0].objective,
                "run %d: objective %.17g, 1 thread %.17g", run, res[run].objective,
                res[0].objective);
    }
    for (run = 0; run < 4; run++)
        free(codes[run]);
    free(x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kmeans");
    TCase *tq = tcase_create("quality");
    TCase *td = tcase_create("determinism");
    TCase *te = tcase_create("empty");
    TCase *tr = tcase_create("robustness");
    TCase *ta = tcase_create("assignment");

    tcase_set_timeout(tq, 120);
    tcase_set_timeout(td, 120);
    tcase_set_timeout(te, 120);
    tcase_set_timeout(tr, 120);

    tcase_add_test(tq, defaults_match_the_header);
    tcase_add_test(tq, recovers_separated_clusters);
    tcase_add_test(tq, objective_is_monotone);
    tcase_add_test(tq, one_step_matches_reference_lloyd);
    tcase_add_test(tq, hand_computed_1d);
    tcase_add_test(tq, k_equals_n_distinct_points);
    tcase_add_test(tq, single_centroid_is_the_mean);
    tcase_add_test(tq, tolerance_stops_early);
    tcase_add_test(tq, plusplus_no_worse_than_random);
    suite_add_tcase(s, tq);

    tcase_add_test(td, same_seed_same_bytes);
    tcase_add_test(td, isa_caps_agree);
    suite_add_tcase(s, td);

    tcase_add_test(te, duplicates_leave_reported_empty_clusters);
    tcase_add_test(te, split_repairs_empty_clusters);
    tcase_add_test(te, huge_values_stay_finite);
    suite_add_tcase(s, te);

    tcase_add_test(tr, subsampling_is_reported_and_codes_cover_all);
    tcase_add_test(tr, codes_null_gives_same_result);
    tcase_add_test(tr, bad_arguments_are_rejected);
    tcase_add_test(tr, progress_reports_and_cancels);
    tcase_add_test(tr, every_allocation_failure_is_clean);
    suite_add_tcase(s, tr);

    tcase_set_timeout(ta, 120);
    tcase_add_loop_test(ta, assign_rows_certify_or_redo, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_loop_test(ta, assign_rows_large_integers_exact, QN_ISA_SCALAR, QN_ISA_AVX512 + 1);
    tcase_add_test(ta, clusters_far_from_origin);
    tcase_add_test(ta, threads_deterministic_and_agree);
    suite_add_tcase(s, ta);

    return qn_test_run(s);
}
