/*
 * The faiss side of bench_pq: IndexFlatL2 search with k = 1 on the same data,
 * single thread (OpenMP capped at 1 here; bench_pq caps OpenBLAS). Compiled
 * only when faiss (a C++ library) is found; faiss is never a dependency of
 * libqnoise itself. The Debian package ships the C API headers but no C API
 * library, hence this small C++ shim with a C interface.
 * SPDX-License-Identifier: MIT
 */
#include <cstddef>
#include <cstdint>
#include <exception>

#include <omp.h>

#include <faiss/IndexFlat.h>

/* faiss 1.7.3 spells it faiss::Index::idx_t (later versions also faiss::idx_t). */
typedef faiss::Index::idx_t fidx_t;

extern "C" {
void *qn_bench_faiss_new(const float *c, size_t k, size_t dim);
int qn_bench_faiss_search(void *index, const float *x, size_t n, float *dists, int64_t *labels);
void qn_bench_faiss_free(void *index);
const char *qn_bench_faiss_version(void);
}

/* An IndexFlatL2 holding the k centroids c (dim floats each), or NULL. */
void *qn_bench_faiss_new(const float *c, size_t k, size_t dim)
{
    try {
        faiss::IndexFlatL2 *index = new faiss::IndexFlatL2((fidx_t)dim);
        index->add((fidx_t)k, c);
        return index;
    } catch (const std::exception &) {
        return nullptr;
    }
}

/* Nearest centroid (k = 1 search) of each of the n rows of x; 0 on success. */
int qn_bench_faiss_search(void *index, const float *x, size_t n, float *dists, int64_t *labels)
{
    static_assert(sizeof(fidx_t) == sizeof(int64_t), "fidx_t is 64-bit");
    try {
        omp_set_num_threads(1);
        static_cast<faiss::IndexFlatL2 *>(index)->search(
            (fidx_t)n, x, 1, dists, reinterpret_cast<fidx_t *>(labels));
        return 0;
    } catch (const std::exception &) {
        return 1;
    }
}

void qn_bench_faiss_free(void *index)
{
    delete static_cast<faiss::IndexFlatL2 *>(index);
}

#define QN_STR2(x) #x
#define QN_STR(x) QN_STR2(x)
const char *qn_bench_faiss_version(void)
{
    return QN_STR(FAISS_VERSION_MAJOR) "." QN_STR(FAISS_VERSION_MINOR) "." QN_STR(FAISS_VERSION_PATCH);
}
