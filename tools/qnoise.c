/*
 * qnoise: the libqnoise command-line tool.
 * SPDX-License-Identifier: MIT
 *
 *   qnoise compress IN.safetensors -o OUT.gguf [options]   compress a PyTorch export
 *   qnoise info [FILE.gguf]                                machine or file information
 *   qnoise decompress FILE.gguf -o OUT.safetensors         decoded fp32 tensors
 *   qnoise stats FILE.gguf --reference IN.safetensors      per-tensor error
 *
 * Exit codes: 0 success, 1 usage error, 2 bad or corrupt input, 3 I/O error
 * (or out of memory). Library messages (which name the file and the tensor)
 * go to stderr.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <qnoise/qnoise.h>

enum { EXIT_USAGE = 1, EXIT_INPUT = 2, EXIT_IO = 3 };

static const char *prog = "qnoise";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnoise COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  compress IN.safetensors -o OUT.gguf [options]\n"
            "      Compress the weights of a safetensors file (F32/F16/BF16, e.g. a PyTorch export)\n"
            "      into a GGUF file. Tensors with 2 or more dimensions are compressed as a matrix\n"
            "      [shape[0], product of the rest]; 1-D tensors (biases, norms) and tensors the\n"
            "      method cannot take are kept in fp32, and each is listed with the reason.\n"
            "      Prints one line per tensor: name [shape] fp32 A MiB -> B MiB (ratio, rel-MSE,\n"
            "      SNR dB), then a total.\n"
            "      --method pq|scalar     product quantization (default) or scalar intN\n"
            "      --block-size N         PQ block size, must divide the columns (default 8)\n"
            "      --centroids K          PQ centroids, 2..65536 (default 256)\n"
            "      --bits B               scalar bits, 2..8 (default 8)\n"
            "      --per-channel          scalar: one symmetric range per row (default: per tensor, affine)\n"
            "      --int8-codebooks       PQ: store codebooks as int8 with a scale (default fp32)\n"
            "      --fp16-codebooks       PQ: store codebooks as fp16\n"
            "      --include REGEX        compress only tensors whose name matches (POSIX ERE)\n"
            "      --exclude REGEX        never compress tensors whose name matches\n"
            "      --seed N               k-means seed (default 0)\n"
            "      --threads N            threads of the library (default 1)\n"
            "      --dry-run              report what would be done and the sizes; write nothing\n"
            "  info                   the library version, the CPU's kernel level and the one in use\n"
            "  info FILE.gguf         tensors, methods and sizes of a file; checksums are verified\n"
            "  decompress FILE.gguf -o OUT.safetensors\n"
            "                         write every tensor decoded to F32\n"
            "  stats FILE.gguf --reference IN.safetensors\n"
            "                         per-tensor relative MSE, SNR and largest error against the original\n"
            "  --version, version     print the library version\n"
            "  --help, help           print this help\n"
            "\n"
            "exit codes: 0 success, 1 usage error, 2 bad or corrupt input, 3 I/O error or out of memory\n"
            "\n"
            "environment:\n"
            "  QN_ISA=scalar|avx2|avx512   cap the kernels (e.g. for valgrind)\n");
}

static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: ", prog);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(see 'qnoise --help')\n");
    return EXIT_USAGE;
}

static int exit_code(qn_status st)
{
    switch (st) {
    case QN_OK:
        return 0;
    case QN_ERR_IO:
    case QN_ERR_OUT_OF_MEMORY:
        return EXIT_IO;
    default:
        return EXIT_INPUT;
    }
}

static void log_to_stderr(void *user, qn_log_level level, const char *msg)
{
    (void)user;
    if (level <= QN_LOG_WARN)
        fprintf(stderr, "%s: %s\n", prog, msg);
}

/* Progress of long k-means runs on a terminal: one rewritten line. */
typedef struct progress_state {
    const char *name;
    int shown;
} progress_state;

static int progress_line(void *user, const char *what, uint64_t done, uint64_t total)
{
    progress_state *p = (progress_state *)user;
    if (p->name && strcmp(what, "kmeans") == 0) {
        fprintf(stderr, "\r  %s: k-means iteration %llu/%llu   ", p->name, (unsigned long long)done,
                (unsigned long long)total);
        fflush(stderr);
        p->shown = 1;
    }
    return 0;
}

static void progress_clear(progress_state *p)
{
    if (p->shown) {
        fprintf(stderr, "\r%*s\r", 78, "");
        fflush(stderr);
        p->shown = 0;
    }
}

static qn_context *make_context(progress_state *prog_state)
{
    qn_context *ctx = NULL;
    qn_status st = qn_context_create_ex(NULL, NULL, NULL, log_to_stderr, NULL, prog_state ? progress_line : NULL,
                                        prog_state, QN_ISA_AVX512, &ctx);
    if (st != QN_OK) {
        fprintf(stderr, "%s: cannot create a context: %s\n", prog, qn_status_str(st));
        return NULL;
    }
    return ctx;
}

static int parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
    char *end;
    unsigned long long v;
    if (!s || !*s || *s == '-')
        return 0;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return 0;
    *out = (size_t)v;
    return 1;
}

static void print_shape(const size_t *shape, size_t ndim)
{
    size_t j;
    printf("[");
    for (j = 0; j < ndim; j++)
        printf("%s%zu", j ? ", " : "", shape[j]);
    printf("]");
}

static double mib(double bytes)
{
    return bytes / 1048576.0;
}

/* ---------------------------------------------------------------------------------------------- */
/* compress                                                                                       */

typedef struct compress_opts {
    const char *in, *out, *include, *exclude;
    int pq, per_channel, dry_run;
    qn_codebook_precision cb;
    size_t bs, k, bits, threads;
    uint64_t seed;
} compress_opts;

static size_t pq_bytes(size_t rows, size_t cols, size_t bs, size_t k, qn_codebook_precision cb)
{
    size_t code_bits = k <= 16 ? 4 : k <= 256 ? 8 : 16;
    size_t row = ((cols / bs) * code_bits + 7) / 8;
    size_t book = cb == QN_CODEBOOK_FP32 ? k * bs * 4 : cb == QN_CODEBOOK_FP16 ? k * bs * 2 : k * bs + 8;
    return rows * row + book;
}

static size_t scalar_bytes(size_t rows, size_t cols, size_t bits, int per_channel)
{
    size_t code_bits = bits <= 4 ? 4 : 8;
    return rows * ((cols * code_bits + 7) / 8) + (per_channel ? rows : 1) * 8;
}

static int cmd_compress(int argc, char **argv)
{
    compress_opts o;
    regex_t inc, exc;
    int have_inc = 0, have_exc = 0, i, rc = 0;
    qn_context *ctx = NULL;
    qn_model *src = NULL, *dst = NULL;
    progress_state ps = {NULL, 0};
    size_t n = 0, t, n_comp = 0, n_kept = 0;
    double total_in = 0.0, total_out = 0.0;
    qn_status st;
    memset(&o, 0, sizeof o);
    o.pq = 1;
    o.bs = 8;
    o.k = 256;
    o.bits = 8;
    o.threads = 1;
    o.cb = QN_CODEBOOK_FP32;
    for (i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!v)
                return usage_error("compress: %s needs a file name", a);
            o.out = v;
            i++;
        } else if (strcmp(a, "--method") == 0) {
            if (v && strcmp(v, "pq") == 0)
                o.pq = 1;
            else if (v && strcmp(v, "scalar") == 0)
                o.pq = 0;
            else
                return usage_error("compress: --method takes pq or scalar");
            i++;
        } else if (strcmp(a, "--block-size") == 0) {
            if (!parse_size(v, 1, 1u << 20, &o.bs))
                return usage_error("compress: --block-size takes a positive integer");
            i++;
        } else if (strcmp(a, "--centroids") == 0) {
            if (!parse_size(v, 2, 65536, &o.k))
                return usage_error("compress: --centroids takes an integer in 2..65536");
            i++;
        } else if (strcmp(a, "--bits") == 0) {
            if (!parse_size(v, 2, 8, &o.bits))
                return usage_error("compress: --bits takes an integer in 2..8");
            i++;
        } else if (strcmp(a, "--threads") == 0) {
            if (!parse_size(v, 1, 1024, &o.threads))
                return usage_error("compress: --threads takes an integer in 1..1024");
            i++;
        } else if (strcmp(a, "--seed") == 0) {
            size_t s;
            if (!parse_size(v, 0, (size_t)-1, &s))
                return usage_error("compress: --seed takes a non-negative integer");
            o.seed = (uint64_t)s;
            i++;
        } else if (strcmp(a, "--include") == 0 || strcmp(a, "--exclude") == 0) {
            if (!v)
                return usage_error("compress: %s needs a regular expression", a);
            if (a[2] == 'i')
                o.include = v;
            else
                o.exclude = v;
            i++;
        } else if (strcmp(a, "--per-channel") == 0) {
            o.per_channel = 1;
        } else if (strcmp(a, "--int8-codebooks") == 0) {
            o.cb = QN_CODEBOOK_INT8;
        } else if (strcmp(a, "--fp16-codebooks") == 0) {
            o.cb = QN_CODEBOOK_FP16;
        } else if (strcmp(a, "--dry-run") == 0) {
            o.dry_run = 1;
        } else if (a[0] == '-' && a[1]) {
            return usage_error("compress: unknown option %s", a);
        } else if (!o.in) {
            o.in = a;
        } else {
            return usage_error("compress: more than one input file (%s)", a);
        }
    }
    if (!o.in)
        return usage_error("compress: no input file");
    if (!o.out && !o.dry_run)
        return usage_error("compress: no output file (-o OUT.gguf)");
    if (o.include && regcomp(&inc, o.include, REG_EXTENDED | REG_NOSUB) != 0)
        return usage_error("compress: --include: bad regular expression '%s'", o.include);
    have_inc = o.include != NULL;
    if (o.exclude && regcomp(&exc, o.exclude, REG_EXTENDED | REG_NOSUB) != 0) {
        if (have_inc)
            regfree(&inc);
        return usage_error("compress: --exclude: bad regular expression '%s'", o.exclude);
    }
    have_exc = o.exclude != NULL;

    ctx = make_context(isatty(2) ? &ps : NULL);
    if (!ctx) {
        rc = EXIT_IO;
        goto out;
    }
    qn_context_set_threads(ctx, (unsigned)o.threads);
    st = qn_model_load_safetensors(ctx, o.in, QN_LOAD_SKIP_UNSUPPORTED, &src);
    if (st == QN_OK)
        st = qn_model_create(ctx, &dst);
    if (st == QN_OK)
        st = qn_model_count(src, &n);
    if (st != QN_OK) {
        rc = exit_code(st);
        goto out;
    }
    for (t = 0; t < n; t++) {
        const char *name = NULL;
        size_t ndim = 0, shape[QN_QTENSOR_MAX_DIMS], numel = 1, rows, cols, j;
        const char *why = NULL;
        char whybuf[160];
        float *w = NULL;
        qn_model_get_name(src, t, &name);
        qn_model_get_info(src, t, NULL, &ndim, shape);
        for (j = 0; j < ndim; j++)
            numel *= shape[j];
        rows = ndim ? shape[0] : 1;
        cols = rows ? numel / rows : 0;
        if (ndim < 2)
            why = "1-D";
        else if (numel == 0)
            why = "empty";
        else if (have_inc && regexec(&inc, name, 0, NULL, 0) != 0)
            why = "not matched by --include";
        else if (have_exc && regexec(&exc, name, 0, NULL, 0) == 0)
            why = "matched by --exclude";
        else if (o.pq && cols % o.bs != 0) {
            snprintf(whybuf, sizeof whybuf, "%zu columns are not a multiple of the block size %zu", cols, o.bs);
            why = whybuf;
        } else if (o.pq && rows * (cols / o.bs) < o.k) {
            snprintf(whybuf, sizeof whybuf, "%zu blocks, fewer than %zu centroids", rows * (cols / o.bs), o.k);
            why = whybuf;
        }
        w = (float *)malloc(numel ? numel * sizeof(float) : 1);
        if (!w) {
            fprintf(stderr, "%s: out of memory for tensor %s\n", prog, name);
            rc = EXIT_IO;
            goto out;
        }
        st = qn_model_get_dense(src, t, w, numel);
        total_in += (double)numel * 4.0;
        if (st == QN_OK && why) {
            printf("%s ", name);
            print_shape(shape, ndim);
            printf(" fp32 %.3f MiB kept in fp32 (%s)\n", mib((double)numel * 4.0), why);
            total_out += (double)numel * 4.0;
            n_kept++;
            if (!o.dry_run)
                st = qn_model_add_dense(dst, name, ndim, shape, w);
        } else if (st == QN_OK && o.dry_run) {
            double b = (double)(o.pq ? pq_bytes(rows, cols, o.bs, o.k, o.cb) : scalar_bytes(rows, cols, o.bits, o.per_channel));
            printf("%s ", name);
            print_shape(shape, ndim);
            printf(" fp32 %.3f MiB -> %.3f MiB (%.2fx) [dry run]\n", mib((double)numel * 4.0), mib(b),
                   (double)numel * 4.0 / b);
            total_out += b;
            n_comp++;
        } else if (st == QN_OK) {
            qn_qtensor *qt = NULL;
            double rel = 0.0, snr = 0.0, b;
            ps.name = name;
            if (o.pq)
                st = qn_qtensor_from_pq(ctx, w, rows, cols, o.bs, o.k, o.seed, &qt);
            else
                st = qn_qtensor_from_scalar(ctx, w, rows, cols, (unsigned)o.bits, o.per_channel, &qt);
            progress_clear(&ps);
            ps.name = NULL;
            if (st == QN_OK)
                st = qn_qtensor_set_shape(qt, ndim, shape);
            if (st == QN_OK && o.pq && o.cb != QN_CODEBOOK_FP32)
                st = qn_qtensor_set_codebook_precision(qt, o.cb, QN_QSCHEME_SYMMETRIC, NULL);
            if (st == QN_OK)
                st = qn_qtensor_error(qt, w, &rel, &snr, NULL);
            if (st == QN_OK) {
                b = (double)qn_qtensor_nbytes(qt);
                printf("%s ", name);
                print_shape(shape, ndim);
                printf(" fp32 %.3f MiB -> %.3f MiB (%.2fx, rel-MSE %.3e, SNR %.2f dB)\n", mib((double)numel * 4.0),
                       mib(b), (double)numel * 4.0 / b, rel, snr);
                total_out += b;
                n_comp++;
                st = qn_model_add_qtensor(dst, name, qt);
            }
            if (st != QN_OK) {
                qn_qtensor_destroy(qt);
                if (st != QN_ERR_OUT_OF_MEMORY && st != QN_ERR_IO)
                    fprintf(stderr, "%s: %s: cannot compress tensor %s: %s\n", prog, o.in, name, qn_status_str(st));
            }
        }
        fflush(stdout);
        free(w);
        if (st != QN_OK) {
            rc = exit_code(st);
            goto out;
        }
    }
    printf("total: fp32 %.3f MiB -> %.3f MiB (%.2fx); %zu tensors compressed, %zu kept in fp32%s\n", mib(total_in),
           mib(total_out), total_out > 0.0 ? total_in / total_out : 0.0, n_comp, n_kept,
           o.dry_run ? " [dry run: nothing written]" : "");
    if (!o.dry_run) {
        st = qn_model_save_gguf(dst, o.out);
        if (st != QN_OK) {
            rc = exit_code(st);
            goto out;
        }
        printf("wrote %s\n", o.out);
    }
out:
    if (have_inc)
        regfree(&inc);
    if (have_exc)
        regfree(&exc);
    qn_model_destroy(src);
    qn_model_destroy(dst);
    qn_context_destroy(ctx);
    return rc;
}

/* ---------------------------------------------------------------------------------------------- */
/* info, decompress, stats                                                                        */

static int cmd_info_machine(void)
{
    qn_context *ctx = NULL;
    qn_isa isa = QN_ISA_SCALAR;
    qn_status st = qn_context_create(&ctx);
    if (st != QN_OK) {
        fprintf(stderr, "%s: cannot create a context: %s\n", prog, qn_status_str(st));
        return EXIT_IO;
    }
    qn_context_get_isa(ctx, &isa);
    printf("libqnoise %s (headers %s)\n", qn_version(), QN_VERSION_STRING);
    printf("cpu best kernels: %s\n", qn_isa_name(qn_cpu_best_isa()));
    printf("kernels in use:   %s\n", qn_isa_name(isa));
    qn_context_destroy(ctx);
    return 0;
}

static const char *prec_name(qn_codebook_precision p)
{
    return p == QN_CODEBOOK_FP32 ? "fp32" : p == QN_CODEBOOK_FP16 ? "fp16" : "int8";
}

static int cmd_info_file(const char *path)
{
    qn_context *ctx = make_context(NULL);
    qn_model *m = NULL;
    size_t n = 0, t;
    double total_fp32 = 0.0, total = 0.0;
    qn_status st;
    if (!ctx)
        return EXIT_IO;
    st = qn_model_load_gguf(ctx, path, 0, &m);
    if (st != QN_OK) {
        qn_context_destroy(ctx);
        return exit_code(st);
    }
    qn_model_count(m, &n);
    printf("%s: qnoise GGUF, %zu tensors, checksums verified\n", path, n);
    for (t = 0; t < n; t++) {
        const char *name = NULL;
        size_t ndim = 0, shape[QN_QTENSOR_MAX_DIMS], numel = 1, j;
        int comp = 0;
        double b;
        qn_model_get_name(m, t, &name);
        qn_model_get_info(m, t, &comp, &ndim, shape);
        for (j = 0; j < ndim; j++)
            numel *= shape[j];
        printf("  %s ", name);
        print_shape(shape, ndim);
        if (comp) {
            const qn_qtensor *qt = NULL;
            qn_qtensor_kind kind;
            qn_model_get_qtensor(m, t, &qt);
            qn_qtensor_get_kind(qt, &kind);
            b = (double)qn_qtensor_nbytes(qt);
            if (kind == QN_QTENSOR_PQ) {
                size_t bs = 0, k = 0;
                unsigned cbits = 0;
                qn_codebook_precision p = QN_CODEBOOK_FP32;
                qn_qtensor_get_pq(qt, &bs, &k, &cbits, &p);
                printf(" pq block %zu, K %zu, %u-bit codes, %s codebook", bs, k, cbits, prec_name(p));
            } else {
                unsigned bits = 0;
                qn_qscheme sch = QN_QSCHEME_AFFINE;
                int pc = 0;
                qn_qtensor_get_scalar(qt, &bits, &sch, &pc);
                printf(" scalar int%u, %s, %s", bits, sch == QN_QSCHEME_SYMMETRIC ? "symmetric" : "affine",
                       pc ? "per channel" : "per tensor");
            }
        } else {
            b = (double)numel * 4.0;
            printf(" fp32");
        }
        printf(", %.0f bytes (%.3f MiB)\n", b, mib(b));
        total += b;
        total_fp32 += (double)numel * 4.0;
    }
    printf("total: %.0f bytes (%.3f MiB); as fp32 %.3f MiB (%.2fx)\n", total, mib(total), mib(total_fp32),
           total > 0.0 ? total_fp32 / total : 0.0);
    qn_model_destroy(m);
    qn_context_destroy(ctx);
    return 0;
}

/* Parse "FILE -o OUT" / "FILE --reference REF" argument lists. */
static int two_files(int argc, char **argv, const char *cmd, const char *flag, const char *flag2, const char **in,
                     const char **other)
{
    int i;
    *in = NULL;
    *other = NULL;
    for (i = 2; i < argc; i++) {
        if (strcmp(argv[i], flag) == 0 || (flag2 && strcmp(argv[i], flag2) == 0)) {
            if (i + 1 >= argc)
                return usage_error("%s: %s needs a file name", cmd, argv[i]);
            *other = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return usage_error("%s: unknown option %s", cmd, argv[i]);
        } else if (!*in) {
            *in = argv[i];
        } else {
            return usage_error("%s: more than one input file (%s)", cmd, argv[i]);
        }
    }
    if (!*in)
        return usage_error("%s: no input file", cmd);
    if (!*other)
        return usage_error("%s: %s is required", cmd, flag);
    return 0;
}

static int cmd_decompress(int argc, char **argv)
{
    const char *in, *out;
    qn_context *ctx;
    qn_model *m = NULL;
    qn_status st;
    int rc = two_files(argc, argv, "decompress", "-o", "--output", &in, &out);
    if (rc)
        return rc;
    ctx = make_context(NULL);
    if (!ctx)
        return EXIT_IO;
    st = qn_model_load_gguf(ctx, in, 0, &m);
    if (st == QN_OK)
        st = qn_model_save_safetensors(m, out, 1);
    if (st == QN_OK)
        printf("wrote %s\n", out);
    qn_model_destroy(m);
    qn_context_destroy(ctx);
    return exit_code(st);
}

static int cmd_stats(int argc, char **argv)
{
    const char *in, *ref;
    qn_context *ctx;
    qn_model *m = NULL, *r = NULL;
    size_t n = 0, t;
    qn_status st;
    int rc = two_files(argc, argv, "stats", "--reference", NULL, &in, &ref);
    if (rc)
        return rc;
    ctx = make_context(NULL);
    if (!ctx)
        return EXIT_IO;
    st = qn_model_load_gguf(ctx, in, 0, &m);
    if (st == QN_OK)
        st = qn_model_load_safetensors(ctx, ref, QN_LOAD_SKIP_UNSUPPORTED, &r);
    if (st != QN_OK) {
        qn_model_destroy(m);
        qn_context_destroy(ctx);
        return exit_code(st);
    }
    qn_model_count(m, &n);
    printf("%-40s %-12s %12s %10s %12s\n", "tensor", "method", "rel-MSE", "SNR dB", "max |err|");
    for (t = 0; t < n && rc == 0; t++) {
        const char *name = NULL;
        size_t ndim = 0, rdim = 0, shape[QN_QTENSOR_MAX_DIMS], rshape[QN_QTENSOR_MAX_DIMS], numel = 1, j, ri = 0;
        int comp = 0;
        float *a = NULL, *b = NULL;
        double num = 0.0, den = 0.0, mx = 0.0, rel, snr;
        qn_model_get_name(m, t, &name);
        qn_model_get_info(m, t, &comp, &ndim, shape);
        if (qn_model_find(r, name, &ri) != QN_OK) {
            fprintf(stderr, "%s: %s: tensor %s is not in the reference %s\n", prog, in, name, ref);
            rc = EXIT_INPUT;
            break;
        }
        qn_model_get_info(r, ri, NULL, &rdim, rshape);
        for (j = 0; j < ndim; j++)
            numel *= shape[j];
        if (rdim != ndim || (ndim && memcmp(shape, rshape, ndim * sizeof(size_t)) != 0)) {
            fprintf(stderr, "%s: tensor %s has another shape in the reference %s\n", prog, name, ref);
            rc = EXIT_INPUT;
            break;
        }
        a = (float *)malloc(numel ? numel * sizeof(float) : 1);
        b = (float *)malloc(numel ? numel * sizeof(float) : 1);
        if (!a || !b) {
            free(a);
            free(b);
            fprintf(stderr, "%s: out of memory for tensor %s\n", prog, name);
            rc = EXIT_IO;
            break;
        }
        qn_model_get_dense(m, t, a, numel);
        qn_model_get_dense(r, ri, b, numel);
        for (j = 0; j < numel; j++) {
            double e = (double)b[j] - (double)a[j];
            num += e * e;
            den += (double)b[j] * (double)b[j];
            if (fabs(e) > mx)
                mx = fabs(e);
        }
        rel = den > 0.0 ? num / den : (num > 0.0 ? INFINITY : 0.0);
        snr = rel > 0.0 ? -10.0 * log10(rel) : INFINITY;
        if (comp) {
            const qn_qtensor *qt = NULL;
            qn_qtensor_kind kind;
            qn_model_get_qtensor(m, t, &qt);
            qn_qtensor_get_kind(qt, &kind);
            printf("%-40s %-12s %12.4e %10.2f %12.4e\n", name, kind == QN_QTENSOR_PQ ? "pq" : "scalar", rel, snr, mx);
        } else {
            printf("%-40s %-12s %12.4e %10s %12.4e\n", name, "fp32", rel, rel > 0.0 ? "-" : "exact", mx);
        }
        free(a);
        free(b);
    }
    qn_model_destroy(m);
    qn_model_destroy(r);
    qn_context_destroy(ctx);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("qnoise %s\n", qn_version());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0) {
        if (argc == 2)
            return cmd_info_machine();
        if (argc == 3)
            return cmd_info_file(argv[2]);
        return usage_error("info: at most one file");
    }
    if (strcmp(argv[1], "compress") == 0)
        return cmd_compress(argc, argv);
    if (strcmp(argv[1], "decompress") == 0)
        return cmd_decompress(argc, argv);
    if (strcmp(argv[1], "stats") == 0)
        return cmd_stats(argc, argv);
    return usage_error("unknown command '%s'", argv[1]);
}
