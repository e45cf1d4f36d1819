/*
 * A plain main() for the fuzz targets, without libFuzzer: runs LLVMFuzzerTestOneInput once on
 * every file named on the command line (directories: every regular file in them). Linked with
 * each target in every build, so that the committed corpus (seeds, crafted bad files and the
 * regression inputs of past crashes) is replayed by ordinary `meson test` runs too, with gcc,
 * under ASan+UBSan and under valgrind. A target signals a broken invariant with abort().
 * usage: corpus_<target> FILE|DIR...
 * SPDX-License-Identifier: MIT
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        fprintf(stderr, "%s: cannot size\n", path);
        return 1;
    }
    /* an exact-size copy, so that reads past the end are caught by ASan and valgrind */
    buf = (unsigned char *)malloc(n ? (size_t)n : 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        fprintf(stderr, "%s: cannot read\n", path);
        return 1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    int i, bad = 0;
    size_t count = 0;
    for (i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "%s: not found\n", argv[i]);
            bad = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            DIR *d = opendir(argv[i]);
            struct dirent *e;
            char path[4096];
            if (!d) {
                bad = 1;
                continue;
            }
            while ((e = readdir(d)) != NULL) {
                struct stat fs;
                snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
                if (stat(path, &fs) == 0 && S_ISREG(fs.st_mode)) {
                    bad |= run_file(path);
                    count++;
                }
            }
            closedir(d);
        } else {
            bad |= run_file(argv[i]);
            count++;
        }
    }
    printf("%zu inputs run\n", count);
    return bad || count == 0;
}
