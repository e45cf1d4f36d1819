/*
 * The faiss side of bench_pq: IndexFlatL2 search with k = 1 on the same data,
 * single thread, and faiss::Clustering (k-means over an IndexFlatL2) with its
 * per-iteration times at a given OpenMP thread count (OpenMP is capped here;
 * bench_pq caps OpenBLAS at 1 thread). Compiled
 * only when faiss (a C++ library) is found; faiss is never a dependency of
 * libqnoise itself. The Debian package ships the C API headers but no C API
 * library, hence this small C++ shim with a C interface.
 * SPDX-License-Identifier: MIT
 */
#include <cstddef>
#include <cstdint>
#include <exception>

#include <omp.h>

#include <faiss/Clustering.h>
#include <faiss/IndexFlat.h>

/* faiss 1.7.3 spells it faiss::Index::idx_t (later versions also faiss::idx_t). */
typedef faiss::Index::idx_t fidx_t;

extern "C" {
void *qn_bench_faiss_new(const float *c, size_t k, size_t dim);
int qn_bench_faiss_search(void *index, const float *x, size_t n, float *dists, int64_t *labels);
int qn_bench_faiss_kmeans(const float *x, size_t n, size_t dim, size_t k, int niter, int threads,
                          double *iter_seconds, double *final_obj);
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

/*
 * k-means of the n rows of x into k centroids, niter iterations, on `threads`
 * OpenMP threads, on all the rows (the default would subsample to 256 per
 * centroid). iter_seconds[i] = time of iteration i (faiss's cumulative
 * ClusteringIterationStats::time, differenced); final_obj = its last
 * objective per row. 0 on success.
 */
int qn_bench_faiss_kmeans(const float *x, size_t n, size_t dim, size_t k, int niter, int threads,
                          double *iter_seconds, double *final_obj)
{
    int rc = 0;
    try {
        faiss::ClusteringParameters cp;
        omp_set_num_threads(threads);
        cp.niter = niter;
        cp.seed = 1234;
        cp.verbose = false;
        cp.max_points_per_centroid = (int)(n / k + 1);
        faiss::Clustering clus((int)dim, (int)k, cp);
        faiss::IndexFlatL2 index((fidx_t)dim);
        clus.train((fidx_t)n, x, index);
        if (clus.iteration_stats.size() != (size_t)niter) {
            rc = 1;
        } else {
            for (int i = 0; i < niter; i++)
                iter_seconds[i] = clus.iteration_stats[i].time - (i ? clus.iteration_stats[i - 1].time : 0.0);
            *final_obj = clus.iteration_stats[niter - 1].obj / (double)n;
        }
    } catch (const std::exception &) {
        rc = 1;
    }
    omp_set_num_threads(1);
    return rc;
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
