/*
 * libqnoise internal: safetensors reader and writer.
 *
 * A safetensors file is an 8-byte little-endian header length N, N bytes of
 * UTF-8 JSON (an object, right-padded with spaces) and the data buffer. The
 * JSON maps each tensor name to {"dtype", "shape", "data_offsets"} (offsets
 * relative to the data buffer, end exclusive) and may hold "__metadata__", a
 * string -> string object. See docs/format-safetensors.md for the rules this
 * module enforces on import and follows on export.
 *
 * Needs jansson (meson option `safetensors`). Without it every function below
 * still exists and returns QN_ERR_UNSUPPORTED (the accessors return 0/NULL).
 *
 * Thread-safety: a qn_st_file is read-only after open, so its accessors may be
 * called from several threads at once; a qn_st_writer belongs to one thread.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_SAFETENSORS_H
#define QN_FORMAT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/internal.h"

/* Element types of the format (the names in the file are the enum names without QN_ST_). */
typedef enum qn_st_dtype {
    QN_ST_BOOL = 0,
    QN_ST_U8 = 1,
    QN_ST_I8 = 2,
    QN_ST_F8_E5M2 = 3,
    QN_ST_F8_E4M3 = 4,
    QN_ST_I16 = 5,
    QN_ST_U16 = 6,
    QN_ST_F16 = 7,
    QN_ST_BF16 = 8,
    QN_ST_I32 = 9,
    QN_ST_U32 = 10,
    QN_ST_F32 = 11,
    QN_ST_F64 = 12,
    QN_ST_I64 = 13,
    QN_ST_U64 = 14
} qn_st_dtype;

#define QN_ST_DTYPE_COUNT 15

/* Largest rank this module handles (a file with more dimensions: QN_ERR_UNSUPPORTED). */
#define QN_ST_MAX_RANK 8

/* Largest header the reader accepts and the writer produces, in bytes. */
#define QN_ST_MAX_HEADER 100000000u

/* Alignment of the data buffer in files we write (from the start of the file). */
#define QN_ST_DATA_ALIGN 64u

/* The name used in files ("F32", ...); NULL for a value outside the enum. */
const char *qn_st_dtype_name(qn_st_dtype dtype);

/* Bytes per element (1, 2, 4 or 8); 0 for a value outside the enum. */
size_t qn_st_dtype_size(qn_st_dtype dtype);

/* Parse a dtype name (exact, case-sensitive); returns 1 and sets *out, or 0 if unknown. */
int qn_st_dtype_from_name(const char *name, qn_st_dtype *out);

/* ------------------------------------------------------------------------- */
/* Reader                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct qn_st_file qn_st_file;

/* What qn_st_tensor_info reports about one tensor. */
typedef struct qn_st_info {
    qn_st_dtype dtype;
    unsigned rank;                   /* 0 .. QN_ST_MAX_RANK */
    uint64_t shape[QN_ST_MAX_RANK];  /* PyTorch order (outermost first); unused entries 0 */
    uint64_t numel;                  /* product of the shape (1 for rank 0) */
    const void *data;                /* little-endian elements, possibly unaligned; NULL when nbytes is 0 */
    size_t nbytes;                   /* numel * qn_st_dtype_size(dtype) */
    uint64_t file_offset;            /* where the data starts, from the start of the file */
} qn_st_info;

/*
 * Open and validate the file at path: mapped, or read into memory when no_mmap
 * is non-zero or mapping fails. Every rule of the format is checked here, so
 * the accessors below cannot fail on a file that opened. Errors (*out = NULL):
 * QN_ERR_INVALID_ARG (NULL path or out), QN_ERR_IO, QN_ERR_CORRUPT_DATA
 * (malformed file; the message names the file and the tensor or key),
 * QN_ERR_UNSUPPORTED (unknown dtype or rank > QN_ST_MAX_RANK; names the
 * tensor), QN_ERR_OVERFLOW, QN_ERR_OUT_OF_MEMORY. Allocates O(header size +
 * tensor count) besides the file itself (mapped, or read with no_mmap).
 */
qn_status qn_st_open(const qn_context *ctx, const char *path, int no_mmap, qn_st_file **out);

/*
 * The same over size bytes at data, which are not copied: they must stay
 * valid and unchanged until qn_st_close. Messages name the source "memory".
 */
qn_status qn_st_open_memory(const qn_context *ctx, const void *data, size_t size, qn_st_file **out);

/* Close (unmap or free) the file; NULL is a no-op. */
void qn_st_close(qn_st_file *f);

/* Number of tensors (the "__metadata__" entry is not a tensor). */
size_t qn_st_tensor_count(const qn_st_file *f);

/*
 * Name of tensor index (0-based, tensors ordered by increasing data offset,
 * ties by name); NULL when index is out of range. Owned by f.
 */
const char *qn_st_tensor_name(const qn_st_file *f, size_t index);

/* Find a tensor by exact name: returns 1 and sets *index, or 0 (no message) when absent. */
int qn_st_find(const qn_st_file *f, const char *name, size_t *index);

/* Describe tensor index. QN_ERR_INVALID_ARG when index is out of range (*out untouched). */
qn_status qn_st_tensor_info(const qn_st_file *f, size_t index, qn_st_info *out);

/*
 * Convert tensor index to fp32 into out[0 .. numel): F32 is copied, F16 and
 * BF16 are widened exactly. Errors leave out untouched: QN_ERR_INVALID_ARG
 * (index out of range, out NULL with numel > 0), QN_ERR_UNSUPPORTED (any
 * other dtype), QN_ERR_BUFFER_TOO_SMALL (count < numel).
 */
qn_status qn_st_read_f32(const qn_st_file *f, size_t index, float *out, size_t count);

/* Number of "__metadata__" entries. */
size_t qn_st_metadata_count(const qn_st_file *f);

/* The value stored under key (NUL-terminated, owned by f), or NULL when absent. */
const char *qn_st_metadata_get(const qn_st_file *f, const char *key);

/*
 * Entry index of the metadata, in increasing byte order of the keys. Returns QN_OK
 * and sets *key and *value (owned by f), or QN_ERR_INVALID_ARG when out of range.
 */
qn_status qn_st_metadata_at(const qn_st_file *f, size_t index, const char **key, const char **value);

/* ------------------------------------------------------------------------- */
/* Writer                                                                     */
/* ------------------------------------------------------------------------- */

typedef struct qn_st_writer qn_st_writer;

/* Start an empty file description. *out = NULL on error. */
qn_status qn_st_writer_create(const qn_context *ctx, qn_st_writer **out);

/* Free the writer (not the borrowed tensor data); NULL is a no-op. */
void qn_st_writer_destroy(qn_st_writer *w);

/*
 * Add a tensor: name (non-empty UTF-8, not "__metadata__", not yet added),
 * dtype, rank (0 .. QN_ST_MAX_RANK) and shape in PyTorch order (may be NULL
 * when rank is 0), and nbytes = prod(shape) * dtype size little-endian bytes
 * at data (may be NULL when nbytes is 0). The data is borrowed: it must stay
 * valid until the last qn_st_write_file. Errors change nothing:
 * QN_ERR_INVALID_ARG (bad name, dtype, rank, shape entry above INT64_MAX,
 * nbytes mismatch, NULL data), QN_ERR_OVERFLOW (size overflows),
 * QN_ERR_OUT_OF_MEMORY.
 */
qn_status qn_st_add_tensor(qn_st_writer *w, const char *name, qn_st_dtype dtype, unsigned rank,
                           const uint64_t *shape, const void *data, size_t nbytes);

/*
 * Add a "__metadata__" entry (both strings UTF-8, copied; the key not yet
 * added). Errors change nothing: QN_ERR_INVALID_ARG, QN_ERR_OUT_OF_MEMORY.
 */
qn_status qn_st_add_metadata(qn_st_writer *w, const char *key, const char *value);

/*
 * Write the file atomically (temporary file in the same directory, fsync,
 * rename): path is replaced only on success, and nothing is left behind on
 * error. Layout: tensors by descending element size (8, 4, 2, 1 bytes), in
 * insertion order within a size, with no gaps; the header is compact JSON
 * with every object's keys in increasing byte order, padded with spaces so
 * the data buffer starts at a multiple of QN_ST_DATA_ALIGN. The writer stays
 * usable. Errors: QN_ERR_INVALID_ARG, QN_ERR_IO, QN_ERR_UNSUPPORTED (header
 * above QN_ST_MAX_HEADER), QN_ERR_OVERFLOW, QN_ERR_OUT_OF_MEMORY.
 */
qn_status qn_st_write_file(qn_st_writer *w, const char *path);

#endif /* QN_FORMAT_SAFETENSORS_H */
