/*
 * libqnoise: CPU feature probe and kernel-table choice.
 * SPDX-License-Identifier: MIT
 *
 * No global mutable state: the probe runs cpuid/XGETBV each time it is asked
 * (a context asks once, at creation), and the tables are const.
 */
#include "kernels/kernels.h"

#include "qn_config.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QN_X86 1
#endif

static const qn_kernels qn_kernels_scalar_table = {
    QN_ISA_SCALAR,
    "scalar",
    qn_k_nearest_l2_scalar,
    qn_k_mask_bits_scalar,
    qn_k_block_scale_scalar,
    qn_k_pq_assign_scalar,
    qn_k_codebook_accumulate_scalar,
    .pq_lut = qn_k_pq_lut_scalar,
    .pq_lut_gather = qn_k_pq_lut_gather_scalar,
    .pq_blut = qn_k_pq_blut_scalar,
    .pq_blut_add = qn_k_pq_blut_add_scalar,
    .pq_decode = qn_k_pq_decode_scalar,
    .int_gemm_f32 = qn_k_int_gemm_f32_scalar,
    .int_decode = qn_k_int_decode_scalar,
    .int_gemm_q = qn_k_int_gemm_q_scalar,
    .f32_panel = qn_k_f32_panel_scalar,
};

#if QN_HAVE_AVX2_KERNELS
static const qn_kernels qn_kernels_avx2_table = {
    QN_ISA_AVX2,
    "avx2",
    qn_k_nearest_l2_avx2,
    qn_k_mask_bits_avx2,
    qn_k_block_scale_avx2,
    qn_k_pq_assign_avx2,
    qn_k_codebook_accumulate_avx2,
    .pq_lut = qn_k_pq_lut_avx2,
    .pq_lut_gather = qn_k_pq_lut_gather_avx2,
    .pq_blut = qn_k_pq_blut_avx2,
    .pq_blut_add = qn_k_pq_blut_add_avx2,
    .pq_decode = qn_k_pq_decode_avx2,
    .int_gemm_f32 = qn_k_int_gemm_f32_avx2,
    .int_decode = qn_k_int_decode_avx2,
    .int_gemm_q = qn_k_int_gemm_q_avx2,
    .f32_panel = qn_k_f32_panel_avx2,
};
#endif

#if QN_HAVE_AVX512_KERNELS
static const qn_kernels qn_kernels_avx512_table = {
    QN_ISA_AVX512,
    "avx512",
    qn_k_nearest_l2_avx512,
    qn_k_mask_bits_avx512,
    qn_k_block_scale_avx512,
    qn_k_pq_assign_avx512,
    qn_k_codebook_accumulate_avx512,
    .pq_lut = qn_k_pq_lut_avx512,
    .pq_lut_gather = qn_k_pq_lut_gather_avx512,
    .pq_blut = qn_k_pq_blut_avx512,
    .pq_blut_add = qn_k_pq_blut_add_avx512,
    .pq_decode = qn_k_pq_decode_avx512,
    .int_gemm_f32 = qn_k_int_gemm_f32_avx512,
    .int_decode = qn_k_int_decode_avx512,
    .int_gemm_q = qn_k_int_gemm_q_avx512,
    .f32_panel = qn_k_f32_panel_avx512,
    .int_gemm_q_vnni = qn_k_int_gemm_q_vnni,
};
#endif

#if defined(QN_X86)
static uint64_t qn_xgetbv0(void)
{
    uint32_t lo, hi;
    /* xgetbv with ecx = 0 reads XCR0; encoded as bytes so no -mxsave is needed. */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

void qn_cpu_probe(qn_cpu_features *f)
{
    f->avx2 = 0;
    f->avx512 = 0;
    f->vnni = 0;
#if defined(QN_X86)
    {
        unsigned int a, b, c, d, max_leaf;
        int osxsave, avx, fma;
        uint64_t xcr0;
        if (!__get_cpuid(0, &max_leaf, &b, &c, &d))
            return;
        if (!__get_cpuid(1, &a, &b, &c, &d))
            return;
        osxsave = (c >> 27) & 1;
        avx = (c >> 28) & 1;
        fma = (c >> 12) & 1;
        if (!osxsave || !avx || max_leaf < 7)
            return;
        xcr0 = qn_xgetbv0();
        /* bit 1 SSE state, bit 2 AVX (YMM upper halves) */
        if ((xcr0 & 0x6) != 0x6)
            return;
        __cpuid_count(7, 0, a, b, c, d);
        f->avx2 = fma && ((b >> 5) & 1);
        /* bits 5..7: opmask, ZMM0-15 upper halves, ZMM16-31 */
        if ((xcr0 & 0xe0) == 0xe0) {
            int avx512f = (b >> 16) & 1, avx512dq = (b >> 17) & 1;
            int avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
            f->avx512 = f->avx2 && avx512f && avx512dq && avx512bw && avx512vl;
            f->vnni = f->avx512 && ((c >> 11) & 1);
        }
    }
#endif
}

const qn_kernels *qn_kernels_for_isa(qn_isa isa)
{
    qn_cpu_features f;
    switch (isa) {
    case QN_ISA_SCALAR:
        return &qn_kernels_scalar_table;
    case QN_ISA_AVX2:
#if QN_HAVE_AVX2_KERNELS
        qn_cpu_probe(&f);
        return f.avx2 ? &qn_kernels_avx2_table : NULL;
#else
        return NULL;
#endif
    case QN_ISA_AVX512:
#if QN_HAVE_AVX512_KERNELS
        qn_cpu_probe(&f);
        return f.avx512 ? &qn_kernels_avx512_table : NULL;
#else
        return NULL;
#endif
    }
    (void)f;
    return NULL;
}

qn_isa qn_kernels_best_isa(void)
{
    if (qn_kernels_for_isa(QN_ISA_AVX512))
        return QN_ISA_AVX512;
    if (qn_kernels_for_isa(QN_ISA_AVX2))
        return QN_ISA_AVX2;
    return QN_ISA_SCALAR;
}

const qn_kernels *qn_kernels_select(qn_isa cap)
{
    int level;
    for (level = (int)cap; level > (int)QN_ISA_SCALAR; level--) {
        const qn_kernels *k = qn_kernels_for_isa((qn_isa)level);
        if (k)
            return k;
    }
    return &qn_kernels_scalar_table;
}
