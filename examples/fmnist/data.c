/*
 * Fashion-MNIST IDX reader (see data.h). IDX: a big-endian magic (0x00000803
 * for u8 images of 3 dims, 0x00000801 for u8 labels of 1 dim), one big-endian
 * u32 per dimension, then the bytes in row-major order.
 * SPDX-License-Identifier: MIT
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* Mean and standard deviation of the training pixels (on [0, 1]). */
#define FM_MEAN 0.2860f
#define FM_STD 0.3530f

static int read_exact(gzFile f, void *buf, size_t n, const char *path, char *err, size_t errcap)
{
    unsigned char *p = (unsigned char *)buf;
    while (n > 0) {
        unsigned chunk = n > (1u << 30) ? (1u << 30) : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) {
            int zerr = Z_OK;
            const char *msg = gzerror(f, &zerr);
            size_t pl = strlen(path);
            /* zlib's message may already start with "path: " */
            if (msg && strncmp(msg, path, pl) == 0 && msg[pl] == ':')
                msg += pl + (msg[pl + 1] == ' ' ? 2 : 1);
            snprintf(err, errcap, "%s: corrupt or truncated: %s", path,
                     got < 0 || zerr != Z_OK ? (msg && *msg ? msg : "read error") : "unexpected end of data");
            return -1;
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static uint32_t be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* Open path and read its IDX header: magic, then ndim big-endian dims. */
static gzFile open_idx(const char *path, uint32_t magic, size_t ndim, uint32_t *dims, char *err, size_t errcap)
{
    unsigned char hdr[16];
    gzFile f;
    size_t i;
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        snprintf(err, errcap,
                 "%s: %s (install the data with: apt-get install dataset-fashion-mnist, or pass --data DIR)", path,
                 strerror(errno));
        return NULL;
    }
    fclose(probe);
    f = gzopen(path, "rb");
    if (!f) {
        snprintf(err, errcap, "%s: cannot open", path);
        return NULL;
    }
    if (read_exact(f, hdr, 4 + 4 * ndim, path, err, errcap) != 0) {
        gzclose(f);
        return NULL;
    }
    if (be32(hdr) != magic) {
        snprintf(err, errcap, "%s: not an IDX file of the expected type (magic 0x%08x, expected 0x%08x)", path,
                 (unsigned)be32(hdr), (unsigned)magic);
        gzclose(f);
        return NULL;
    }
    for (i = 0; i < ndim; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    return f;
}

void fm_free(fm_data *d)
{
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

int fm_load(const char *dir, const char *split, size_t limit, fm_data *out, char *err, size_t errcap)
{
    char ipath[4096], lpath[4096];
    uint32_t idims[3] = {0, 0, 0}, ldims[1] = {0};
    gzFile fi = NULL, fl = NULL;
    unsigned char *raw = NULL;
    fm_data d = {0, NULL, NULL};
    size_t n, i;
    int rc = -1;
    memset(out, 0, sizeof *out);
    snprintf(ipath, sizeof ipath, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lpath, sizeof lpath, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    fi = open_idx(ipath, 0x00000803u, 3, idims, err, errcap);
    if (!fi)
        goto out;
    fl = open_idx(lpath, 0x00000801u, 1, ldims, err, errcap);
    if (!fl)
        goto out;
    if (idims[1] != FM_SIDE || idims[2] != FM_SIDE) {
        snprintf(err, errcap, "%s: images are %ux%u, expected 28x28", ipath, (unsigned)idims[1], (unsigned)idims[2]);
        goto out;
    }
    if (idims[0] != ldims[0] || idims[0] == 0 || idims[0] > 1000000u) {
        snprintf(err, errcap, "%s and %s: %u images but %u labels", ipath, lpath, (unsigned)idims[0],
                 (unsigned)ldims[0]);
        goto out;
    }
    n = idims[0];
    if (limit && limit < n)
        n = limit;
    raw = (unsigned char *)malloc(n * FM_PIXELS);
    d.x = (float *)malloc(n * FM_PIXELS * sizeof(float));
    d.y = (uint8_t *)malloc(n);
    if (!raw || !d.x || !d.y) {
        snprintf(err, errcap, "out of memory loading %s", ipath);
        goto out;
    }
    if (read_exact(fi, raw, n * FM_PIXELS, ipath, err, errcap) != 0 || read_exact(fl, d.y, n, lpath, err, errcap) != 0)
        goto out;
    for (i = 0; i < n; i++)
        if (d.y[i] >= FM_CLASSES) {
            snprintf(err, errcap, "%s: label %u of sample %zu is not a class (0..9): corrupt file", lpath,
                     (unsigned)d.y[i], i);
            goto out;
        }
    for (i = 0; i < n * FM_PIXELS; i++)
        d.x[i] = ((float)raw[i] * (1.0f / 255.0f) - FM_MEAN) / FM_STD;
    d.n = n;
    *out = d;
    rc = 0;
out:
    free(raw);
    if (rc != 0)
        fm_free(&d);
    if (fi)
        gzclose(fi);
    if (fl)
        gzclose(fl);
    return rc;
}
