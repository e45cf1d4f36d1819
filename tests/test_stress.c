/*
 * Concurrency stress test (suite 'stress'; run it in a -Db_sanitize=thread build, where
 * ThreadSanitizer must report nothing). Through the shared library only, with pthreads:
 *
 *   - layer threads: each runs noisy forward/backward steps of its own qn_layer objects
 *     (linear with proxy noise, conv2d with scalar noise, embedding with PQ noise, and a
 *     PQ-compressed linear layer with centroid gradients), several on one shared context;
 *   - compression threads: qn_qtensor_from_pq, qn_qtensor_from_scalar and qn_pq_train (then
 *     qn_pq_assign) on distinct data, each with its own context asking for 2 library threads
 *     (OpenMP inside pthreads when the build has OpenMP);
 *   - reader threads: const calls on one shared compressed tensor (PQ and scalar):
 *     qn_qtensor_decode, qn_qtensor_error, and qn_layer_forward of each thread's own layer
 *     bound to the shared tensor with qn_layer_bind_compressed;
 *   - saving threads: each saves its own model (GGUF, and safetensors when built with it) to its
 *     own path; the files must get mode 0666 & ~umask and the process umask must not change
 *     (the atomic writer once read the umask with umask(), which races between threads).
 *
 * All threads start together at a barrier and repeat their work 20 times (QN_STRESS_REPEAT). Every result
 * is digested (FNV-1a over its bytes) and compared with the digest of the same work run
 * alone on the main thread beforehand: the library is deterministic, so any difference means
 * that threads disturbed each other (shared scratch, a data race the sanitizer missed).
 * SPDX-License-Identifier: MIT
 */
#include <check.h>

#include "qn_test.h"
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

/* Each thread repeats its work this many times (QN_STRESS_REPEAT overrides). */
static int n_repeat = 20;

typedef enum job_kind {
    JOB_LINEAR_PROXY,
    JOB_CONV_SCALAR,
    JOB_EMBEDDING_PQ,
    JOB_LINEAR_COMPRESSED,
    JOB_FROM_PQ,
    JOB_FROM_SCALAR,
    JOB_PQ_TRAIN,
    JOB_SHARED_PQ_READER,
    JOB_SHARED_SCALAR_READER,
    JOB_SAVE
} job_kind;

typedef struct job {
    job_kind kind;
    uint64_t seed;
    qn_context *ctx;  /* the shared context, or NULL: the job creates its own */
    uint64_t digest;  /* of one repetition's results */
    int failed;       /* first failing call, for the message */
    char msg[160];
} job;

/* The shared compressed tensors of the reader jobs and what they were built from. */
static qn_qtensor *shared_pq, *shared_sc;
static float *shared_w;        /* SHARED_ROWS x SHARED_COLS, the weight both were compressed from */
#define SHARED_ROWS 48
#define SHARED_COLS 32

static pthread_barrier_t start_line;

static char tmpdir[256];
#define TEST_UMASK 027 /* set by the fixture: new files get 0640 */

/* ---------------------------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = (const unsigned char *)p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001B3ull;
    }
    return h;
}

#define FNV0 0xCBF29CE484222325ull

static float *rand_floats(uint64_t seed, size_t n)
{
    float *w = (float *)malloc(n * sizeof *w);
    uint64_t st = seed;
    size_t i;
    if (w)
        for (i = 0; i < n; i++)
            w[i] = qn_test_uniform(&st);
    return w;
}

#define CALL(j, expr)                                                                                 \
    do {                                                                                              \
        qn_status st_ = (expr);                                                                       \
        if (st_ != QN_OK && !(j)->failed) {                                                           \
            (j)->failed = 1;                                                                          \
            snprintf((j)->msg, sizeof (j)->msg, "%s:%d: %s -> %s", __FILE__, __LINE__, #expr,         \
                     qn_status_str(st_));                                                             \
        }                                                                                             \
    } while (0)

static void fail_msg(job *j, const char *what)
{
    if (!j->failed) {
        j->failed = 1;
        snprintf(j->msg, sizeof j->msg, "%s", what);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* training layers: noisy forward and backward of several steps                                   */

static uint64_t run_layer(job *j, qn_context *ctx)
{
    qn_layer *l = NULL;
    size_t wc = 0, bc = 0, ip = 0, op = 0, batch = 4, step, i;
    float *w = NULL, *b = NULL, *x = NULL, *y = NULL, *dy = NULL, *dx = NULL, *dw = NULL, *db = NULL;
    int64_t idx[4];
    uint64_t h = FNV0;
    int emb = 0, compressed = 0;
    size_t dw_n;
    switch (j->kind) {
    case JOB_LINEAR_PROXY:
        CALL(j, qn_layer_create_linear(ctx, 32, 24, &l));
        break;
    case JOB_LINEAR_COMPRESSED:
        CALL(j, qn_layer_create_linear(ctx, 32, 16, &l));
        break;
    case JOB_CONV_SCALAR:
        CALL(j, qn_layer_create_conv2d(ctx, 4, 6, 3, 3, 1, 1, 1, 1, &l));
        if (l)
            CALL(j, qn_layer_set_input_size(l, 6, 6));
        break;
    default: /* JOB_EMBEDDING_PQ */
        CALL(j, qn_layer_create_embedding(ctx, 64, 8, &l));
        emb = 1;
        break;
    }
    if (!l)
        return 0;
    CALL(j, qn_layer_get_sizes(l, &wc, &bc, &ip, &op));
    w = rand_floats(j->seed, wc);
    b = bc ? rand_floats(j->seed + 1, bc) : NULL;
    x = rand_floats(j->seed + 2, batch * ip);
    y = (float *)malloc(batch * op * sizeof *y);
    dy = rand_floats(j->seed + 3, batch * op);
    dx = (float *)malloc(batch * ip * sizeof *dx);
    dw_n = wc;
    if (!w || (bc && !b) || !x || !y || !dy || !dx) {
        fail_msg(j, "out of memory");
        goto done;
    }
    for (i = 0; i < batch; i++)
        idx[i] = (int64_t)((j->seed + 7 * i) % 64);
    CALL(j, qn_layer_bind(l, w, b));
    CALL(j, qn_layer_set_seed(l, j->seed, 3));
    switch (j->kind) {
    case JOB_LINEAR_PROXY:
        CALL(j, qn_layer_set_noise(l, QN_NOISE_PROXY, 0.25f, 4));
        break;
    case JOB_CONV_SCALAR:
        CALL(j, qn_layer_set_noise(l, QN_NOISE_SCALAR, 0.3f, 4));
        CALL(j, qn_layer_set_scalar_noise(l, 4, QN_OBSERVER_MINMAX, QN_QSCHEME_AFFINE, 2));
        break;
    case JOB_EMBEDDING_PQ:
        CALL(j, qn_layer_set_noise(l, QN_NOISE_PQ, 0.5f, 4));
        CALL(j, qn_layer_set_pq_noise(l, 8, 5, 2));
        break;
    default: /* compressed: dweight receives centroid gradients */
        CALL(j, qn_layer_compress_pq(l, 4, 8, 6, j->seed));
        dw_n = 8 * 4;
        compressed = 1;
        break;
    }
    dw = (float *)calloc(dw_n, sizeof *dw);
    db = bc ? (float *)calloc(bc, sizeof *db) : NULL;
    if (!dw || (bc && !db)) {
        fail_msg(j, "out of memory");
        goto done;
    }
    for (step = 0; step < 4 && !j->failed; step++) {
        const void *in = emb ? (const void *)idx : (const void *)x;
        CALL(j, qn_layer_forward_noisy(l, batch, in, y, step));
        h = fnv(h, y, batch * op * sizeof *y);
        CALL(j, qn_layer_backward(l, batch, in, dy, emb ? NULL : dx, dw, db, step));
        if (!emb)
            h = fnv(h, dx, batch * ip * sizeof *dx);
        if (compressed) {
            /* an optimizer step on the centroids, as a training loop would */
            float *c = NULL;
            CALL(j, qn_layer_pq_centroids(l, &c));
            if (c)
                for (i = 0; i < dw_n; i++)
                    c[i] -= 0.01f * dw[i];
        }
    }
    h = fnv(h, dw, dw_n * sizeof *dw);
    if (db)
        h = fnv(h, db, bc * sizeof *db);
    CALL(j, qn_layer_forward(l, batch, emb ? (const void *)idx : (const void *)x, y));
    h = fnv(h, y, batch * op * sizeof *y);
done:
    qn_layer_destroy(l);
    free(w);
    free(b);
    free(x);
    free(y);
    free(dy);
    free(dx);
    free(dw);
    free(db);
    return h;
}

/* ---------------------------------------------------------------------------------------------- */
/* compressions on distinct data                                                                  */

static uint64_t run_compression(job *j, qn_context *ctx)
{
    const size_t rows = 48, cols = 32, nb = rows * cols / 4;
    float *w = rand_floats(j->seed, rows * cols), *dec = (float *)malloc(rows * cols * sizeof(float));
    float cents[16 * 4];
    uint16_t *codes = (uint16_t *)malloc(nb * sizeof *codes);
    qn_qtensor *qt = NULL;
    qn_pq *pq = NULL;
    uint64_t h = FNV0;
    if (!w || !dec || !codes) {
        fail_msg(j, "out of memory");
        goto done;
    }
    if (j->kind == JOB_FROM_PQ) {
        CALL(j, qn_qtensor_from_pq(ctx, w, rows, cols, 4, 16, j->seed, &qt));
        if (qt) {
            CALL(j, qn_qtensor_get_codes(qt, codes, nb));
            CALL(j, qn_qtensor_get_centroids(qt, cents, 16 * 4));
            h = fnv(h, codes, nb * sizeof *codes);
            h = fnv(h, cents, sizeof cents);
        }
    } else if (j->kind == JOB_FROM_SCALAR) {
        CALL(j, qn_qtensor_from_scalar(ctx, w, rows, cols, 5, 1, &qt));
        if (qt) {
            CALL(j, qn_qtensor_decode(qt, dec));
            h = fnv(h, dec, rows * cols * sizeof *dec);
        }
    } else { /* JOB_PQ_TRAIN */
        CALL(j, qn_pq_create(ctx, 4, 16, &pq));
        if (pq) {
            CALL(j, qn_pq_set_seed(pq, j->seed));
            CALL(j, qn_pq_set_iterations(pq, 8));
            CALL(j, qn_pq_train(pq, w, nb));
            CALL(j, qn_pq_get_centroids(pq, cents));
            CALL(j, qn_pq_assign(pq, w, nb, codes));
            h = fnv(h, cents, sizeof cents);
            h = fnv(h, codes, nb * sizeof *codes);
        }
    }
done:
    qn_qtensor_destroy(qt);
    qn_pq_destroy(pq);
    free(w);
    free(dec);
    free(codes);
    return h;
}

/* ---------------------------------------------------------------------------------------------- */
/* const calls on one shared compressed tensor                                                    */

static uint64_t run_reader(job *j, qn_context *ctx)
{
    const qn_qtensor *qt = j->kind == JOB_SHARED_PQ_READER ? shared_pq : shared_sc;
    const size_t batch = 3;
    float *dec = (float *)malloc(SHARED_ROWS * SHARED_COLS * sizeof(float));
    float *x = rand_floats(j->seed, batch * SHARED_COLS), *y = (float *)malloc(batch * SHARED_ROWS * sizeof(float));
    float bias[SHARED_ROWS];
    double err[3] = {0.0, 0.0, 0.0};
    qn_layer *l = NULL;
    uint64_t h = FNV0;
    size_t i;
    if (!dec || !x || !y) {
        fail_msg(j, "out of memory");
        goto done;
    }
    for (i = 0; i < SHARED_ROWS; i++)
        bias[i] = (float)i * 0.125f;
    CALL(j, qn_qtensor_decode(qt, dec));
    h = fnv(h, dec, SHARED_ROWS * SHARED_COLS * sizeof *dec);
    CALL(j, qn_qtensor_error(qt, shared_w, &err[0], &err[1], &err[2]));
    h = fnv(h, err, sizeof err);
    CALL(j, qn_layer_create_linear(ctx, SHARED_COLS, SHARED_ROWS, &l));
    if (l) {
        CALL(j, qn_layer_bind_compressed(l, qt, bias));
        CALL(j, qn_layer_forward(l, batch, x, y));
        h = fnv(h, y, batch * SHARED_ROWS * sizeof *y);
        CALL(j, qn_layer_forward_noisy(l, batch, x, y, 5)); /* equals forward on a compressed binding */
        h = fnv(h, y, batch * SHARED_ROWS * sizeof *y);
    }
done:
    qn_layer_destroy(l);
    free(dec);
    free(x);
    free(y);
    return h;
}

/* ---------------------------------------------------------------------------------------------- */

/* ---------------------------------------------------------------------------------------------- */
/* saving distinct models to distinct paths                                                       */

static uint64_t digest_file(job *j, const char *path)
{
    unsigned char buf[4096];
    struct stat sb;
    uint64_t h = FNV0;
    size_t n;
    FILE *f;
    if (stat(path, &sb) != 0) {
        fail_msg(j, "a saved file is missing");
        return 0;
    }
    if ((sb.st_mode & 0777) != (0666 & ~TEST_UMASK)) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s has mode %03o, expected %03o", path, (unsigned)(sb.st_mode & 0777),
                 (unsigned)(0666 & ~TEST_UMASK));
        fail_msg(j, msg);
    }
    f = fopen(path, "rb");
    if (!f) {
        fail_msg(j, "cannot reopen a saved file");
        return 0;
    }
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        h = fnv(h, buf, n);
    fclose(f);
    return h;
}

static uint64_t run_save(job *j, qn_context *ctx)
{
    const size_t rows = 16, cols = 24;
    float *w = rand_floats(j->seed, rows * cols);
    size_t shape[1] = {rows};
    qn_model *m = NULL;
    qn_qtensor *qt = NULL;
    char path[512];
    uint64_t h = FNV0;
    if (!w) {
        fail_msg(j, "out of memory");
        return 0;
    }
    CALL(j, qn_model_create(ctx, &m));
    if (m) {
        CALL(j, qn_qtensor_from_scalar(ctx, w, rows, cols, 6, 1, &qt));
        if (qt && qn_model_add_qtensor(m, "w", qt) != QN_OK) {
            qn_qtensor_destroy(qt);
            fail_msg(j, "add_qtensor");
        }
        CALL(j, qn_model_add_dense(m, "b", 1, shape, w));
        snprintf(path, sizeof path, "%s/job%llu.gguf", tmpdir, (unsigned long long)j->seed);
        CALL(j, qn_model_save_gguf(m, path));
        h = digest_file(j, path) ^ h;
        snprintf(path, sizeof path, "%s/job%llu.safetensors", tmpdir, (unsigned long long)j->seed);
        if (qn_model_save_safetensors(m, path, 0) == QN_OK) { /* QN_ERR_UNSUPPORTED without jansson */
            uint64_t hs = digest_file(j, path);
            h = fnv(h, &hs, sizeof hs);
        }
    }
    qn_model_destroy(m);
    free(w);
    return h;
}

static uint64_t run_once(job *j)
{
    qn_context *own = NULL, *ctx = j->ctx;
    uint64_t h;
    if (!ctx) {
        CALL(j, qn_context_create(&own));
        if (!own)
            return 0;
        CALL(j, qn_context_set_threads(own, 2));
        ctx = own;
    }
    switch (j->kind) {
    case JOB_FROM_PQ:
    case JOB_FROM_SCALAR:
    case JOB_PQ_TRAIN:
        h = run_compression(j, ctx);
        break;
    case JOB_SHARED_PQ_READER:
    case JOB_SHARED_SCALAR_READER:
        h = run_reader(j, ctx);
        break;
    case JOB_SAVE:
        h = run_save(j, ctx);
        break;
    default:
        h = run_layer(j, ctx);
        break;
    }
    qn_context_destroy(own);
    return h;
}

static void *thread_main(void *arg)
{
    job *j = (job *)arg;
    uint64_t want = j->digest;
    int r;
    pthread_barrier_wait(&start_line);
    for (r = 0; r < n_repeat && !j->failed; r++) {
        uint64_t got = run_once(j);
        if (got != want && !j->failed) {
            j->failed = 1;
            snprintf(j->msg, sizeof j->msg, "job kind %d seed %llu, repetition %d: digest %016llx, alone %016llx",
                     (int)j->kind, (unsigned long long)j->seed, r, (unsigned long long)got,
                     (unsigned long long)want);
        }
    }
    return NULL;
}

static qn_context *shared_ctx;

static mode_t saved_umask;

static void shared_setup(void)
{
    saved_umask = umask(TEST_UMASK);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/qn_test_stress_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
    ck_assert_int_eq(qn_context_create(&shared_ctx), QN_OK);
    shared_w = rand_floats(99, SHARED_ROWS * SHARED_COLS);
    ck_assert_ptr_nonnull(shared_w);
    ck_assert_int_eq(qn_qtensor_from_pq(shared_ctx, shared_w, SHARED_ROWS, SHARED_COLS, 4, 16, 5, &shared_pq), QN_OK);
    ck_assert_int_eq(qn_qtensor_from_scalar(shared_ctx, shared_w, SHARED_ROWS, SHARED_COLS, 4, 1, &shared_sc), QN_OK);
}

static void shared_teardown(void)
{
    char p[600];
    unsigned i;
    for (i = 0; i < 4096; i++) {
        snprintf(p, sizeof p, "%s/job%u.gguf", tmpdir, i);
        unlink(p);
        snprintf(p, sizeof p, "%s/job%u.safetensors", tmpdir, i);
        unlink(p);
    }
    rmdir(tmpdir);
    umask(saved_umask);
    qn_qtensor_destroy(shared_pq);
    qn_qtensor_destroy(shared_sc);
    qn_context_destroy(shared_ctx);
    free(shared_w);
    shared_pq = shared_sc = NULL;
    shared_ctx = NULL;
    shared_w = NULL;
}

/* Run n jobs (kinds cycling over `kinds`) alone for their reference digests, then all at once. */
static void stress(const job_kind *kinds, size_t n_kinds, size_t n)
{
    job *jobs = (job *)calloc(n, sizeof *jobs);
    pthread_t *th = (pthread_t *)calloc(n, sizeof *th);
    size_t i;
    ck_assert_ptr_nonnull(jobs);
    ck_assert_ptr_nonnull(th);
    for (i = 0; i < n; i++) {
        jobs[i].kind = kinds[i % n_kinds];
        jobs[i].seed = 1000 + 17 * i;
        /* compressions use their own contexts (2 library threads); everything else shares one */
        jobs[i].ctx = (jobs[i].kind == JOB_FROM_PQ || jobs[i].kind == JOB_FROM_SCALAR || jobs[i].kind == JOB_PQ_TRAIN)
                          ? NULL
                          : shared_ctx;
        jobs[i].digest = run_once(&jobs[i]);
        ck_assert_msg(!jobs[i].failed, "alone: %s", jobs[i].msg);
    }
    ck_assert_int_eq(pthread_barrier_init(&start_line, NULL, (unsigned)n), 0);
    for (i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, thread_main, &jobs[i]), 0);
    for (i = 0; i < n; i++)
        ck_assert_int_eq(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start_line);
    for (i = 0; i < n; i++)
        ck_assert_msg(!jobs[i].failed, "thread %zu: %s", i, jobs[i].msg);
    /* nothing changed the process umask */
    ck_assert_uint_eq((unsigned)umask(TEST_UMASK), (unsigned)TEST_UMASK);
    free(jobs);
    free(th);
}

START_TEST(layers_in_parallel)
{
    static const job_kind k[] = {JOB_LINEAR_PROXY, JOB_CONV_SCALAR, JOB_EMBEDDING_PQ, JOB_LINEAR_COMPRESSED};
    stress(k, 4, 8);
}
END_TEST

START_TEST(compressions_in_parallel)
{
    static const job_kind k[] = {JOB_FROM_PQ, JOB_FROM_SCALAR, JOB_PQ_TRAIN};
    stress(k, 3, 6);
}
END_TEST

START_TEST(shared_tensor_readers)
{
    static const job_kind k[] = {JOB_SHARED_PQ_READER, JOB_SHARED_SCALAR_READER};
    stress(k, 2, 8);
}
END_TEST

START_TEST(saves_in_parallel)
{
    static const job_kind k[] = {JOB_SAVE};
    stress(k, 1, 8);
}
END_TEST

START_TEST(everything_at_once)
{
    static const job_kind k[] = {JOB_LINEAR_PROXY,      JOB_SHARED_PQ_READER, JOB_CONV_SCALAR,
                                 JOB_FROM_PQ,           JOB_EMBEDDING_PQ,     JOB_SHARED_SCALAR_READER,
                                 JOB_LINEAR_COMPRESSED, JOB_FROM_SCALAR,      JOB_PQ_TRAIN,
                                 JOB_SAVE};
    stress(k, 10, 20);
}
END_TEST

static Suite *stress_suite(void)
{
    Suite *s = suite_create("stress");
    TCase *tc = tcase_create("threads");
    tcase_add_checked_fixture(tc, shared_setup, shared_teardown);
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, layers_in_parallel);
    tcase_add_test(tc, compressions_in_parallel);
    tcase_add_test(tc, shared_tensor_readers);
    tcase_add_test(tc, saves_in_parallel);
    tcase_add_test(tc, everything_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    const char *e = getenv("QN_STRESS_REPEAT");
    if (e && atoi(e) > 0)
        n_repeat = atoi(e);
    return qn_test_run(stress_suite());
}
