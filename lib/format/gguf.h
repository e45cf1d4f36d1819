/*
 * libqnoise internal: the GGUF v3 container (no ggml dependency).
 *
 * Writer: collect metadata (key/value pairs) and tensors, then write one
 * little-endian GGUF v3 file atomically (temporary file in the same directory,
 * fsync, rename). The writer adds `general.alignment` (u32, 64) unless the
 * caller set it, aligns every tensor's data to it, and stores the CRC32C of
 * every tensor's bytes as `qnoise.tensor_crc32c` (ARRAY of U32, tensor-info
 * order).
 *
 * Reader: map (or read) a whole file, or borrow a memory buffer, and validate
 * the complete structure before returning: counts, string and array lengths
 * bounded by the bytes that remain, duplicate keys and names, dimensions and
 * their products, alignment, tensors inside the file and not overlapping.
 * Reading allocates O(tensor_count + kv_count) small records, never the
 * declared tensor sizes. Checksums are verified on request (qn_gguf_verify,
 * or the QN_GGUF_VERIFY flag).
 *
 * Byte layout, accepted values and rejections: docs/format-gguf.md.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_FORMAT_GGUF_H
#define QN_FORMAT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include <qnoise/common.h>

/* Value types of metadata (the u32 value_type of a KV). Values fixed by the GGUF spec. */
typedef enum qn_gguf_type {
    QN_GGUF_U8 = 0,
    QN_GGUF_I8 = 1,
    QN_GGUF_U16 = 2,
    QN_GGUF_I16 = 3,
    QN_GGUF_U32 = 4,
    QN_GGUF_I32 = 5,
    QN_GGUF_F32 = 6,
    QN_GGUF_BOOL = 7, /* one byte, 0 or 1 */
    QN_GGUF_STRING = 8,
    QN_GGUF_ARRAY = 9,
    QN_GGUF_U64 = 10,
    QN_GGUF_I64 = 11,
    QN_GGUF_F64 = 12
} qn_gguf_type;

/* The ggml tensor types this module reads and writes (ids fixed by ggml). */
typedef enum qn_ggml_type {
    QN_GGML_F32 = 0,
    QN_GGML_F16 = 1,
    QN_GGML_I8 = 24,
    QN_GGML_I16 = 25,
    QN_GGML_I32 = 26
} qn_ggml_type;

#define QN_GGUF_MAGIC "GGUF"
#define QN_GGUF_VERSION 3u
#define QN_GGUF_DEFAULT_ALIGNMENT 32u      /* when a file has no general.alignment */
#define QN_GGUF_WRITE_ALIGNMENT 64u        /* what the writer uses unless told otherwise */
#define QN_GGUF_MAX_DIMS 4u
#define QN_GGUF_MAX_NAME 64u               /* bytes in a tensor name */
#define QN_GGUF_MAX_KEY 65535u             /* bytes in a metadata key */
#define QN_GGUF_KEY_ALIGNMENT "general.alignment"
#define QN_GGUF_KEY_CRC32C "qnoise.tensor_crc32c"
#define QN_GGUF_NOT_FOUND ((size_t)-1)

/* Flags of qn_gguf_open. */
#define QN_GGUF_NO_MMAP 1 /* read the file into memory instead of mapping it */
#define QN_GGUF_VERIFY 2  /* check the qnoise.tensor_crc32c checksums before returning */

/* Bytes per element of a supported tensor type; 0 for any other id. */
size_t qn_ggml_type_size(uint32_t type);

/* "F32", "F16", "I8", "I16", "I32", or "unsupported" for any other id. */
const char *qn_ggml_type_name(uint32_t type);

/* "U8" ... "F64" for a metadata value type, "invalid" otherwise. */
const char *qn_gguf_type_name(uint32_t type);

/* ------------------------------------------------------------------------- */
/* Writer                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct qn_gguf_writer qn_gguf_writer;

/* An empty writer. *out is NULL on failure (QN_ERR_INVALID_ARG, QN_ERR_OUT_OF_MEMORY). */
qn_status qn_gguf_writer_create(const qn_context *ctx, qn_gguf_writer **out);

/* Free the writer (NULL is a no-op). Borrowed tensor data is not touched. */
void qn_gguf_writer_destroy(qn_gguf_writer *w);

/*
 * Metadata. Keys are NUL-terminated, 1..65535 bytes and unique within the
 * writer; values are copied. `qnoise.tensor_crc32c` is reserved (the writer
 * computes it). `general.alignment`, when added, must be a U32 power of two
 * >= 8; the tensor data are then aligned to it instead of 64. Errors:
 * QN_ERR_INVALID_ARG (NULL, empty, too long, duplicate or reserved key, bad
 * alignment), QN_ERR_OUT_OF_MEMORY; the writer is unchanged on error.
 */
qn_status qn_gguf_add_u8(qn_gguf_writer *w, const char *key, uint8_t value);
qn_status qn_gguf_add_i8(qn_gguf_writer *w, const char *key, int8_t value);
qn_status qn_gguf_add_u16(qn_gguf_writer *w, const char *key, uint16_t value);
qn_status qn_gguf_add_i16(qn_gguf_writer *w, const char *key, int16_t value);
qn_status qn_gguf_add_u32(qn_gguf_writer *w, const char *key, uint32_t value);
qn_status qn_gguf_add_i32(qn_gguf_writer *w, const char *key, int32_t value);
qn_status qn_gguf_add_u64(qn_gguf_writer *w, const char *key, uint64_t value);
qn_status qn_gguf_add_i64(qn_gguf_writer *w, const char *key, int64_t value);
qn_status qn_gguf_add_f32(qn_gguf_writer *w, const char *key, float value);
qn_status qn_gguf_add_f64(qn_gguf_writer *w, const char *key, double value);
qn_status qn_gguf_add_bool(qn_gguf_writer *w, const char *key, int value); /* stored as 0 or 1 */
/* A NUL-terminated string value. */
qn_status qn_gguf_add_string(qn_gguf_writer *w, const char *key, const char *value);
/* A string value of len bytes (may contain NUL; value may be NULL when len is 0). */
qn_status qn_gguf_add_string_len(qn_gguf_writer *w, const char *key, const char *value, size_t len);

/*
 * An array of count numeric elements of elem_type (any type but STRING and
 * ARRAY) in host representation: uint8_t, int8_t, uint16_t, int16_t,
 * uint32_t, int32_t, float, uint8_t 0/1 for BOOL, uint64_t, int64_t, double.
 * elems may be NULL when count is 0.
 */
qn_status qn_gguf_add_array(qn_gguf_writer *w, const char *key, qn_gguf_type elem_type, const void *elems,
                            size_t count);

/* An array of count strings; lens[i] is the length of strs[i], or lens NULL for NUL-terminated strings. */
qn_status qn_gguf_add_string_array(qn_gguf_writer *w, const char *key, const char *const *strs, const size_t *lens,
                                   size_t count);

/*
 * A tensor: name NUL-terminated, 1..64 bytes, unique; type one of
 * qn_ggml_type; n_dims 1..4; dims in GGUF order (dims[0] varies fastest, so a
 * row-major [rows, cols] matrix is dims = {cols, rows}); nbytes must equal
 * the product of dims times the element size. data (little-endian elements)
 * is borrowed until qn_gguf_write_file returns; it may be NULL when nbytes is
 * 0. Errors: QN_ERR_INVALID_ARG, QN_ERR_UNSUPPORTED (type), QN_ERR_OVERFLOW
 * (dims product), QN_ERR_OUT_OF_MEMORY; the writer is unchanged on error.
 */
qn_status qn_gguf_add_tensor(qn_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                             const uint64_t *dims, const void *data, size_t nbytes);

/* Metadata pairs and tensors added so far (not counting what write_file adds). */
size_t qn_gguf_writer_kv_count(const qn_gguf_writer *w);
size_t qn_gguf_writer_tensor_count(const qn_gguf_writer *w);

/*
 * Write everything to path as GGUF v3: header, the caller's pairs in the
 * order added, then general.alignment (if the caller did not add it) and
 * qnoise.tensor_crc32c, the tensor infos in the order added, zero padding,
 * and each tensor's data at the next aligned offset (each followed by padding
 * to the alignment). Atomic: on error the temporary file is removed and path
 * is untouched. The writer is not consumed and may write again. Errors:
 * QN_ERR_INVALID_ARG, QN_ERR_IO (message names the file), QN_ERR_OVERFLOW,
 * QN_ERR_OUT_OF_MEMORY, QN_ERR_UNSUPPORTED (big-endian host).
 */
qn_status qn_gguf_write_file(const qn_gguf_writer *w, const char *path);

/* ------------------------------------------------------------------------- */
/* Reader                                                                    */
/* ------------------------------------------------------------------------- */

typedef struct qn_gguf_file qn_gguf_file;

/*
 * Open and validate the file at path (flags: QN_GGUF_NO_MMAP, QN_GGUF_VERIFY).
 * Errors: QN_ERR_IO, QN_ERR_CORRUPT_DATA (malformed or truncated: the message
 * names the file and the key or tensor), QN_ERR_UNSUPPORTED (GGUF version 1
 * or > 3, big-endian files, a tensor type other than F32/F16/I8/I16/I32,
 * nested arrays), QN_ERR_OUT_OF_MEMORY, QN_ERR_INVALID_ARG. *out is NULL on
 * failure.
 */
qn_status qn_gguf_open(const qn_context *ctx, const char *path, int flags, qn_gguf_file **out);

/*
 * The same over size bytes at data, which are not copied: they must stay
 * valid and unchanged until qn_gguf_close. Messages name the source "memory".
 */
qn_status qn_gguf_open_memory(const qn_context *ctx, const void *data, size_t size, qn_gguf_file **out);

/* Close (unmap or free) the file; NULL is a no-op. Pointers obtained from it die with it. */
void qn_gguf_close(qn_gguf_file *f);

/* The file's version (2 or 3), its alignment, and the absolute offset of its data section. */
uint32_t qn_gguf_version(const qn_gguf_file *f);
uint32_t qn_gguf_alignment(const qn_gguf_file *f);
uint64_t qn_gguf_data_offset(const qn_gguf_file *f);

/* --- metadata ------------------------------------------------------------ */

size_t qn_gguf_kv_count(const qn_gguf_file *f);

/* Index of the pair whose key is the NUL-terminated key, or QN_GGUF_NOT_FOUND. */
size_t qn_gguf_find_kv(const qn_gguf_file *f, const char *key);

/* Key of pair i (not NUL-terminated: use len) and its type. QN_ERR_INVALID_ARG for a bad index. */
qn_status qn_gguf_kv_key(const qn_gguf_file *f, size_t i, const char **key, size_t *len);
qn_status qn_gguf_kv_type(const qn_gguf_file *f, size_t i, qn_gguf_type *type);

/*
 * Typed scalar getters: QN_ERR_CORRUPT_DATA (naming the key and both types)
 * when pair i holds another type, QN_ERR_INVALID_ARG for a bad index or a
 * NULL pointer; *out untouched on error.
 */
qn_status qn_gguf_get_u8(const qn_gguf_file *f, size_t i, uint8_t *out);
qn_status qn_gguf_get_i8(const qn_gguf_file *f, size_t i, int8_t *out);
qn_status qn_gguf_get_u16(const qn_gguf_file *f, size_t i, uint16_t *out);
qn_status qn_gguf_get_i16(const qn_gguf_file *f, size_t i, int16_t *out);
qn_status qn_gguf_get_u32(const qn_gguf_file *f, size_t i, uint32_t *out);
qn_status qn_gguf_get_i32(const qn_gguf_file *f, size_t i, int32_t *out);
qn_status qn_gguf_get_u64(const qn_gguf_file *f, size_t i, uint64_t *out);
qn_status qn_gguf_get_i64(const qn_gguf_file *f, size_t i, int64_t *out);
qn_status qn_gguf_get_f32(const qn_gguf_file *f, size_t i, float *out);
qn_status qn_gguf_get_f64(const qn_gguf_file *f, size_t i, double *out);
qn_status qn_gguf_get_bool(const qn_gguf_file *f, size_t i, int *out); /* 0 or 1 */

/* Any unsigned integer type, or a signed one holding a value >= 0, widened to uint64_t. */
qn_status qn_gguf_get_uint(const qn_gguf_file *f, size_t i, uint64_t *out);

/* A STRING value: pointer into the file and length (not NUL-terminated). */
qn_status qn_gguf_get_string(const qn_gguf_file *f, size_t i, const char **s, size_t *len);

/*
 * An ARRAY value: element type and count. For numeric element types *raw
 * points at the count little-endian elements in the file (unaligned: read
 * with memcpy, or use qn_gguf_get_array_copy); for STRING elements *raw is
 * NULL (use qn_gguf_get_array_string or the iterator). raw may be NULL.
 */
qn_status qn_gguf_get_array(const qn_gguf_file *f, size_t i, qn_gguf_type *elem_type, uint64_t *count,
                            const void **raw);

/*
 * Copy a numeric ARRAY into out (count elements of the host types listed at
 * qn_gguf_add_array). elem_type must match (else QN_ERR_CORRUPT_DATA) and
 * count must equal the array's length (else QN_ERR_BUFFER_TOO_SMALL if
 * smaller, QN_ERR_INVALID_ARG if larger).
 */
qn_status qn_gguf_get_array_copy(const qn_gguf_file *f, size_t i, qn_gguf_type elem_type, void *out, size_t count);

/* String j of an ARRAY of STRING (walks the array: O(j)). */
qn_status qn_gguf_get_array_string(const qn_gguf_file *f, size_t i, uint64_t j, const char **s, size_t *len);

/* Sequential access to an ARRAY of STRING. Fields are private. */
typedef struct qn_gguf_str_iter {
    const unsigned char *p;
    uint64_t left;
} qn_gguf_str_iter;

/* Start iterating pair i (QN_ERR_CORRUPT_DATA unless it is an ARRAY of STRING). */
qn_status qn_gguf_array_strings(const qn_gguf_file *f, size_t i, qn_gguf_str_iter *it);

/* The next string: returns 1 and sets *s and *len, or returns 0 at the end. */
int qn_gguf_str_next(qn_gguf_str_iter *it, const char **s, size_t *len);

/* --- tensors --------------------------------------------------------------- */

typedef struct qn_gguf_tensor {
    const char *name;  /* not NUL-terminated */
    size_t name_len;
    uint32_t type;     /* a qn_ggml_type */
    uint32_t n_dims;   /* 1..4 */
    uint64_t dims[QN_GGUF_MAX_DIMS]; /* GGUF order, dims[0] fastest; unused entries are 1 */
    uint64_t n_elements;
    uint64_t offset;   /* relative to the data section */
    const void *data;  /* little-endian elements inside the file; aligned to the file's alignment
                          when opened by qn_gguf_open, relative to the buffer's start otherwise */
    size_t nbytes;
} qn_gguf_tensor;

size_t qn_gguf_tensor_count(const qn_gguf_file *f);

/* Index of the tensor named by the NUL-terminated name, or QN_GGUF_NOT_FOUND. */
size_t qn_gguf_find_tensor(const qn_gguf_file *f, const char *name);

/* Description of tensor i (file order). QN_ERR_INVALID_ARG for a bad index. */
qn_status qn_gguf_tensor_info(const qn_gguf_file *f, size_t i, qn_gguf_tensor *info);

/*
 * Check every tensor against qnoise.tensor_crc32c. QN_OK when the key is
 * absent (*bad_index untouched; see qn_gguf_has_checksums) or when all match.
 * QN_ERR_CORRUPT_DATA, with a message naming the file and the tensor, when a
 * checksum differs (*bad_index = the tensor's index) or when the key is not
 * an ARRAY of U32 with one entry per tensor (*bad_index = QN_GGUF_NOT_FOUND).
 * bad_index may be NULL.
 */
qn_status qn_gguf_verify(const qn_gguf_file *f, size_t *bad_index);

/* 1 when the file carries qnoise.tensor_crc32c, else 0. */
int qn_gguf_has_checksums(const qn_gguf_file *f);

#endif /* QN_FORMAT_GGUF_H */
