/*
 * libqnoise internal: the layer object.
 * SPDX-License-Identifier: MIT
 */
#ifndef QN_LAYER_INTERNAL_H
#define QN_LAYER_INTERNAL_H

#include <qnoise/layer.h>

#include "core/internal.h"
#include "quant/kmeans.h"
#include "quant/observer.h"

struct qn_layer {
    qn_context *ctx;
    qn_layer_kind kind;
    /* the weight viewed as a matrix rows x cols; blocks run along cols */
    size_t rows, cols;
    /* conv2d geometry */
    size_t cin, cout, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    size_t ih, iw, oh, ow; /* ih == 0 until set */
    /* bound caller buffers */
    const float *w;
    const float *b;
    /* noise */
    qn_noise_kind noise;
    float p;
    size_t bs;
    size_t nblocks; /* rows * cols / bs */
    qn_grad_mode grad;
    uint64_t seed, layer_id;
    uint32_t key[2];
    /* scalar noise state */
    unsigned sq_bits;
    qn_observer sq_obs;
    qn_qscheme sq_scheme;
    uint32_t sq_update;
    uint64_t sq_count; /* noisy forwards since the settings changed */
    int sq_valid;
    size_t sq_nch;
    float *sq_scale;   /* sq_nch */
    int32_t *sq_zero;  /* sq_nch */
    qn_ma_state sq_ma;
    /* PQ noise state */
    size_t pq_k;       /* 0 = default min(256, nblocks) */
    unsigned pq_iters;
    uint32_t pq_update;
    uint64_t pq_count;
    int pq_valid;
    float *pq_centroids; /* k * bs */
    uint16_t *pq_codes;  /* nblocks */
    /* workspace */
    unsigned char *ws;
    size_t ws_bytes;
    int ws_owned;
    /* W_eff + mask cache from the last noisy forward */
    int eff_valid;
    uint64_t eff_step;
    /* PQ compression (iPQ): frozen codes, trainable centroids; cq == 0 when dense */
    int cq;
    size_t cq_bs, cq_k, cq_nblocks;
    float *cq_c;           /* cq_k * cq_bs; the caller's optimizer updates it in place */
    uint16_t *cq_codes;    /* cq_nblocks, block order */
    uint32_t *cq_counts;   /* cq_k */
    qn_centroid_grad cq_grad;
    int cq_i8;             /* an int8 grid was chosen for the codebook */
    qn_qscheme cq_i8_scheme;
    float cq_i8_scale;
    int32_t cq_i8_zero;    /* stored-int8 zero point: centroid = (v - zero) * scale */
    /* eval-only binding to a caller-owned compressed tensor (qn_layer_bind_compressed) */
    const struct qn_qtensor *qtb;
    struct qn_packed *qpk; /* its CPU-specific repacking (linear layers; NULL: decode per forward) */
};

/* A finished compression waiting to be installed (so that a multi-layer stage commits all or nothing). */
typedef struct qn_layer_pq_state {
    size_t bs, k, nblocks;
    float *c;
    uint16_t *codes;
    uint32_t *counts;
    double mse;
} qn_layer_pq_state;

/* k-means over the layer's blocks into st (allocated from the context); nothing changes in l. */
qn_status qn_layer_pq_train(qn_layer *l, size_t bs, size_t k, unsigned iterations, uint64_t seed,
                            qn_layer_pq_state *st, const char *fn);
/* Install st into l (takes ownership; cannot fail). */
void qn_layer_pq_commit(qn_layer *l, qn_layer_pq_state *st);
/* Free a state that was not committed. */
void qn_layer_pq_state_free(qn_context *ctx, qn_layer_pq_state *st);
/* Drop the compression, if any. */
void qn_layer_pq_drop(qn_layer *l);

/* Write W_hat (rows x cols) of a compressed layer. */
void qn_layer_pq_decode(const qn_layer *l, float *w);
/* Decode row r of a compressed layer into dst (cols floats). */
void qn_layer_pq_decode_row(const qn_layer *l, size_t r, float *dst);
/* dC += reduce(g) over blocks [b0, b0 + nb) of a gradient laid out like W (g points at block b0). */
void qn_layer_pq_reduce_grad(const qn_layer *l, size_t b0, size_t nb, const float *g, float *dc);

#endif /* QN_LAYER_INTERNAL_H */
