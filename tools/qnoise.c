/*
 * qnoise: the libqnoise command-line tool.
 * SPDX-License-Identifier: MIT
 *
 * Today: version and machine information. Compression, inspection and
 * conversion commands arrive with the formats.
 */
#include <stdio.h>
#include <string.h>

#include <qnoise/qnoise.h>

static void usage(FILE *f)
{
    fprintf(f,
            "usage: qnoise COMMAND\n"
            "\n"
            "commands:\n"
            "  --version, version   print the library version\n"
            "  info                 print the version, the CPU's kernel level and the one in use\n"
            "  --help, help         print this help\n"
            "\n"
            "environment:\n"
            "  QN_ISA=scalar|avx2|avx512   cap the kernels (e.g. for valgrind)\n");
}

static int cmd_info(void)
{
    qn_context *ctx = NULL;
    qn_isa isa = QN_ISA_SCALAR;
    qn_status st = qn_context_create(&ctx);
    if (st != QN_OK) {
        fprintf(stderr, "qnoise: cannot create a context: %s\n", qn_status_str(st));
        return 1;
    }
    qn_context_get_isa(ctx, &isa);
    printf("libqnoise %s (headers %s)\n", qn_version(), QN_VERSION_STRING);
    printf("cpu best kernels: %s\n", qn_isa_name(qn_cpu_best_isa()));
    printf("kernels in use:   %s\n", qn_isa_name(isa));
    qn_context_destroy(ctx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("qnoise %s\n", qn_version());
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0)
        return cmd_info();
    fprintf(stderr, "qnoise: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
