/*
 * libqnoise internal: file mapping and atomic writes (see fileio.h).
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include "format/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define QN_WBUF ((size_t)1 << 20)

qn_status qn_file_map(const qn_context *ctx, const char *path, int no_mmap, qn_mapped *m, const char *fn)
{
    struct stat sb;
    int fd;
    size_t size, got = 0;
    unsigned char *buf;
    memset(m, 0, sizeof *m);
    if (!path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: path is NULL", fn);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return qn_fail(ctx, QN_ERR_IO, "%s: cannot open %s: %s", fn, path, strerror(errno));
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        int e = errno;
        close(fd);
        return qn_fail(ctx, QN_ERR_IO, "%s: %s is not a readable regular file%s%s", fn, path,
                       S_ISREG(sb.st_mode) ? ": " : "", S_ISREG(sb.st_mode) ? strerror(e) : "");
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return qn_fail(ctx, QN_ERR_OVERFLOW, "%s: %s is too large for this address space", fn, path);
    }
    size = (size_t)sb.st_size;
    if (size == 0) {
        close(fd);
        return QN_OK;
    }
    if (!no_mmap) {
        void *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p != MAP_FAILED) {
            close(fd);
            m->data = (const unsigned char *)p;
            m->size = size;
            m->is_mmap = 1;
            return QN_OK;
        }
    }
    buf = (unsigned char *)qn_malloc(ctx, size);
    if (!buf) {
        close(fd);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes to read %s", fn, size, path);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got > ((size_t)1 << 30) ? ((size_t)1 << 30) : size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            qn_free(ctx, buf);
            return qn_fail(ctx, QN_ERR_IO, "%s: cannot read %s: %s", fn, path, e ? strerror(e) : "file shrank");
        }
        got += (size_t)r;
    }
    close(fd);
    m->data = buf;
    m->size = size;
    m->is_mmap = 0;
    return QN_OK;
}

void qn_file_unmap(const qn_context *ctx, qn_mapped *m)
{
    if (!m || !m->data) {
        if (m)
            memset(m, 0, sizeof *m);
        return;
    }
    if (m->is_mmap)
        munmap((void *)(uintptr_t)m->data, m->size);
    else
        qn_free(ctx, (void *)(uintptr_t)m->data);
    memset(m, 0, sizeof *m);
}

struct qn_atomic_file {
    const qn_context *ctx;
    int fd;
    char *path; /* destination */
    char *tmp;  /* temporary */
    unsigned char *buf;
    size_t used;
    uint64_t offset;
    qn_status err;
    const char *fn;
};

static char *qn_strdup_ctx(const qn_context *ctx, const char *s, size_t extra)
{
    size_t n = strlen(s);
    char *p = (char *)qn_malloc(ctx, n + extra + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

/*
 * Create the temporary file `tmp` (which ends in ".tmp-XXXXXX") with O_EXCL and mode 0666, so
 * the kernel applies the process umask as for any new file. (mkstemp creates 0600, and learning
 * the umask to widen that takes umask(), which changes process-wide state: two threads saving at
 * once could leave the process with umask 0.) The six characters mix the object's address, the
 * process id, a clock and the attempt number; no global state. Returns the descriptor or -1.
 */
static int qn_create_tmp(char *tmp, const void *salt)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char *x = tmp + strlen(tmp) - 6;
    struct timespec ts;
    uint64_t seed;
    int attempt, fd = -1, i;
    memset(&ts, 0, sizeof ts);
    (void)clock_gettime(CLOCK_MONOTONIC, &ts);
    seed = (uint64_t)(uintptr_t)salt ^ ((uint64_t)getpid() << 40) ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)ts.tv_nsec;
    for (attempt = 0; attempt < 1000; attempt++) {
        uint64_t z = seed + (uint64_t)(attempt + 1) * 0x9E3779B97F4A7C15ull; /* splitmix64 */
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        for (i = 0; i < 6; i++, z /= 36)
            x[i] = digits[z % 36];
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST)
            break;
    }
    return fd;
}

qn_status qn_atomic_open(const qn_context *ctx, const char *path, qn_atomic_file **out, const char *fn)
{
    qn_atomic_file *f;
    if (!path || !*path)
        return qn_fail(ctx, QN_ERR_INVALID_ARG, "%s: empty path", fn);
    f = (qn_atomic_file *)qn_calloc(ctx, 1, sizeof *f);
    if (!f)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    f->ctx = ctx;
    f->fn = fn;
    f->fd = -1;
    f->path = qn_strdup_ctx(ctx, path, 0);
    f->tmp = qn_strdup_ctx(ctx, path, 16);
    f->buf = (unsigned char *)qn_malloc(ctx, QN_WBUF);
    if (!f->path || !f->tmp || !f->buf) {
        qn_free(ctx, f->path);
        qn_free(ctx, f->tmp);
        qn_free(ctx, f->buf);
        qn_free(ctx, f);
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    strcat(f->tmp, ".tmp-XXXXXX");
    f->fd = qn_create_tmp(f->tmp, f);
    if (f->fd < 0) {
        int e = errno;
        qn_free(ctx, f->path);
        qn_free(ctx, f->tmp);
        qn_free(ctx, f->buf);
        qn_free(ctx, f);
        return qn_fail(ctx, QN_ERR_IO, "%s: cannot create a temporary file next to %s: %s", fn, path, strerror(e));
    }
    *out = f;
    return QN_OK;
}

static qn_status qn_atomic_flush(qn_atomic_file *f)
{
    size_t done = 0;
    while (done < f->used) {
        ssize_t r = write(f->fd, f->buf + done, f->used - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            f->err = qn_fail(f->ctx, QN_ERR_IO, "%s: cannot write %s: %s", f->fn, f->tmp,
                             r < 0 ? strerror(errno) : "no progress");
            return f->err;
        }
        done += (size_t)r;
    }
    f->used = 0;
    return QN_OK;
}

qn_status qn_atomic_write(qn_atomic_file *f, const void *buf, size_t n)
{
    const unsigned char *p = (const unsigned char *)buf;
    if (f->err != QN_OK)
        return f->err;
    while (n) {
        size_t c = QN_WBUF - f->used;
        if (c > n)
            c = n;
        memcpy(f->buf + f->used, p, c);
        f->used += c;
        f->offset += c;
        p += c;
        n -= c;
        if (f->used == QN_WBUF && qn_atomic_flush(f) != QN_OK)
            return f->err;
    }
    return QN_OK;
}

qn_status qn_atomic_pad(qn_atomic_file *f, size_t n)
{
    static const unsigned char zeros[64];
    while (n) {
        size_t c = n < sizeof zeros ? n : sizeof zeros;
        qn_status st = qn_atomic_write(f, zeros, c);
        if (st != QN_OK)
            return st;
        n -= c;
    }
    return QN_OK;
}

uint64_t qn_atomic_offset(const qn_atomic_file *f)
{
    return f->offset;
}

static void qn_atomic_free(qn_atomic_file *f)
{
    const qn_context *ctx = f->ctx;
    qn_free(ctx, f->path);
    qn_free(ctx, f->tmp);
    qn_free(ctx, f->buf);
    qn_free(ctx, f);
}

void qn_atomic_abort(qn_atomic_file *f)
{
    if (!f)
        return;
    if (f->fd >= 0)
        close(f->fd);
    unlink(f->tmp);
    qn_atomic_free(f);
}

qn_status qn_atomic_commit(qn_atomic_file *f)
{
    qn_status st = f->err;
    char *slash;
    if (st == QN_OK)
        st = qn_atomic_flush(f);
    if (st == QN_OK && fsync(f->fd) != 0)
        st = qn_fail(f->ctx, QN_ERR_IO, "%s: cannot sync %s: %s", f->fn, f->tmp, strerror(errno));
    if (close(f->fd) != 0 && st == QN_OK)
        st = qn_fail(f->ctx, QN_ERR_IO, "%s: cannot close %s: %s", f->fn, f->tmp, strerror(errno));
    f->fd = -1;
    if (st == QN_OK && rename(f->tmp, f->path) != 0)
        st = qn_fail(f->ctx, QN_ERR_IO, "%s: cannot rename %s to %s: %s", f->fn, f->tmp, f->path, strerror(errno));
    if (st != QN_OK) {
        unlink(f->tmp);
        qn_atomic_free(f);
        return st;
    }
    /* make the rename durable: sync the directory (best effort) */
    slash = strrchr(f->path, '/');
    {
        int dfd;
        if (slash) {
            *slash = '\0';
            dfd = open(*f->path ? f->path : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        } else {
            dfd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        }
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
    qn_atomic_free(f);
    return QN_OK;
}
