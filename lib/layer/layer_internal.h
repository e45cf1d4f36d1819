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
};

#endif /* QN_LAYER_INTERNAL_H */
