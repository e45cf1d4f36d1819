/*
 * libqnoise: status strings, version, ISA names.
 * SPDX-License-Identifier: MIT
 */
#include <string.h>

#include "core/internal.h"
#include "qn_config.h"

QN_API const char *qn_status_str(qn_status s)
{
    switch (s) {
    case QN_OK:
        return "success";
    case QN_ERR_INVALID_ARG:
        return "invalid argument";
    case QN_ERR_OUT_OF_MEMORY:
        return "out of memory";
    case QN_ERR_BUFFER_TOO_SMALL:
        return "buffer too small";
    case QN_ERR_UNSUPPORTED:
        return "unsupported";
    case QN_ERR_CORRUPT_DATA:
        return "corrupt data";
    case QN_ERR_NOT_TRAINED:
        return "not trained or not bound";
    case QN_ERR_BACKEND:
        return "backend failure";
    case QN_ERR_IO:
        return "input/output error";
    case QN_ERR_OVERFLOW:
        return "size overflow";
    case QN_ERR_CANCELLED:
        return "cancelled";
    }
    return "unknown status";
}

QN_API const char *qn_version(void)
{
    return QN_BUILD_VERSION;
}

QN_API uint32_t qn_version_number(void)
{
    return (uint32_t)QN_BUILD_VERSION_MAJOR * 10000u + (uint32_t)QN_BUILD_VERSION_MINOR * 100u +
           (uint32_t)QN_BUILD_VERSION_PATCH;
}

QN_API const char *qn_isa_name(qn_isa isa)
{
    switch (isa) {
    case QN_ISA_SCALAR:
        return "scalar";
    case QN_ISA_AVX2:
        return "avx2";
    case QN_ISA_AVX512:
        return "avx512";
    }
    return "unknown";
}

QN_API qn_status qn_isa_from_name(const char *name, qn_isa *out)
{
    if (!name || !out)
        return QN_ERR_INVALID_ARG;
    if (strcmp(name, "scalar") == 0)
        *out = QN_ISA_SCALAR;
    else if (strcmp(name, "avx2") == 0)
        *out = QN_ISA_AVX2;
    else if (strcmp(name, "avx512") == 0)
        *out = QN_ISA_AVX512;
    else
        return QN_ERR_INVALID_ARG;
    return QN_OK;
}

QN_API qn_isa qn_cpu_best_isa(void)
{
    return qn_kernels_best_isa();
}
