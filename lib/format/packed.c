/*
 * libqnoise internal: dispatch of packed weights to their kind (packed.h).
 * SPDX-License-Identifier: MIT
 */
#include "format/packed.h"

qn_status qn_packed_create(const qn_context *ctx, const qn_qtensor *qt, qn_packed **out)
{
    qn_packed *p;
    qn_status st;
    *out = NULL;
    p = (qn_packed *)qn_calloc(ctx, 1, sizeof *p);
    if (!p)
        return qn_fail(ctx, QN_ERR_OUT_OF_MEMORY, "packing a compressed weight: out of memory");
    p->ctx = ctx;
    p->kind = qt->kind;
    p->rows = qt->rows;
    p->cols = qt->cols;
    st = qt->kind == QN_QTENSOR_PQ ? qn_packed_pq_init(p, qt) : qn_packed_int_init(p, qt);
    if (st != QN_OK) {
        qn_free(ctx, p);
        return st;
    }
    *out = p;
    return QN_OK;
}

void qn_packed_destroy(qn_packed *p)
{
    if (!p)
        return;
    if (p->ops)
        p->ops->destroy(p);
    qn_free(p->ctx, p);
}

size_t qn_packed_workspace_size(const qn_packed *p, size_t M)
{
    return p->ops->workspace_size(p, M);
}

void qn_packed_gemm(const qn_packed *p, size_t M, const float *x, size_t ldx, const float *bias, float *y, size_t ldy,
                    void *ws)
{
    p->ops->gemm(p, M, x, ldx, bias, y, ldy, ws);
}
