/*
 * libqnoise internal: reading files (mmap with a plain-read fallback) and
 * writing them atomically (temporary file in the same directory, fsync, rename).
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_FILEIO_H
#define QN_FORMAT_FILEIO_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* A whole file in memory: mapped read-only, or read into a context allocation. */
typedef struct qn_mapped {
    const unsigned char *data; /* size bytes (NULL when size == 0) */
    size_t size;
    int is_mmap;               /* 1: munmap on release; 0: qn_free */
} qn_mapped;

/*
 * Map (or, with no_mmap or when mmap fails, read) the file at path. Errors:
 * QN_ERR_IO (cannot open/stat/read; message names the file), QN_ERR_OUT_OF_MEMORY.
 * `fn` prefixes the messages. On error *m is zeroed.
 */
qn_status qn_file_map(const qn_context *ctx, const char *path, int no_mmap, qn_mapped *m, const char *fn);

/* Release what qn_file_map returned (a zeroed struct is a no-op). */
void qn_file_unmap(const qn_context *ctx, qn_mapped *m);

/* A file being written: bytes go to "<path>.tmp-XXXXXX" until commit renames it over path. */
typedef struct qn_atomic_file qn_atomic_file;

/* Create the temporary file next to path. QN_ERR_IO names the directory on failure. */
qn_status qn_atomic_open(const qn_context *ctx, const char *path, qn_atomic_file **out, const char *fn);

/* Append n bytes (buffered). After an error every later call fails with the same status. */
qn_status qn_atomic_write(qn_atomic_file *f, const void *buf, size_t n);

/* Append n zero bytes. */
qn_status qn_atomic_pad(qn_atomic_file *f, size_t n);

/* Bytes written so far. */
uint64_t qn_atomic_offset(const qn_atomic_file *f);

/*
 * Flush, fsync, close, rename over the destination, fsync the directory and
 * free f. On any error the temporary file is removed, the destination is
 * untouched, and f is freed as well.
 */
qn_status qn_atomic_commit(qn_atomic_file *f);

/* Abandon: close and remove the temporary file, free f. NULL is a no-op. */
void qn_atomic_abort(qn_atomic_file *f);

#endif /* QN_FORMAT_FILEIO_H */
