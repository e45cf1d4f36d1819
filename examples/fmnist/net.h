/*
 * The two networks of the qnoise-fmnist demo, written on the libqnoise layer
 * API: an MLP 784-512-512-10 and a small CNN (conv 3x3 1->16, pool, conv 3x3
 * 16->32, pool, conv 1x1 32->32, linear 1568->10), ReLU after every hidden
 * layer, softmax cross-entropy, SGD with momentum done here.
 * SPDX-License-Identifier: MIT
 */
#ifndef FMNIST_NET_H
#define FMNIST_NET_H

#include <stddef.h>
#include <stdint.h>

#include <qnoise/qnoise.h>

#include "data.h"

typedef enum fm_arch { FM_MLP = 0, FM_CNN = 1 } fm_arch;

enum { FM_MAX_UNITS = 4 };

/* One layer of a network, its parameters and its batch buffers. */
typedef struct fm_unit {
    char name[16];
    qn_layer *l;
    int conv;              /* 1: conv2d, 0: linear */
    size_t kh;             /* kernel side (convs; 0 for linear) */
    size_t in_c, out_c;    /* channels (convs) or features (linear) */
    size_t in_h, out_h;    /* spatial side of input and output (convs) */
    int pool;              /* 2x2 max pool after the ReLU */
    int relu;              /* ReLU after the layer */
    size_t wn, bn;         /* weight and bias counts */
    size_t zin, zout;      /* floats per sample: input, layer output */
    size_t aout;           /* floats per sample after ReLU / pool */
    float *w, *b, *dw, *db, *vw, *vb; /* parameters, gradients, momentum */
    float *z, *a;          /* layer output and activation of the batch */
    uint32_t *arg;         /* pool argmax of the batch */
    float *dz;             /* gradient wrt z */
    size_t base_block;     /* block size at scale 1: 8 (linear), 9 (3x3 conv), 4 (1x1 conv) */
} fm_unit;

typedef struct fm_net {
    qn_context *ctx;
    fm_arch arch;
    int n;
    fm_unit u[FM_MAX_UNITS];
    size_t batch_cap;
    float *dx;       /* gradient wrt the input of a unit (largest) */
    float *logits, *dlogits;
} fm_net;

/* "mlp" or "cnn". */
const char *fm_arch_name(fm_arch arch);

/* Build a network with fresh He-initialised weights from @p seed. 0 or -1 (message on stderr). */
int fm_net_create(fm_net *net, qn_context *ctx, fm_arch arch, size_t batch_cap, uint64_t seed);

/* Build a network with the same parameters as @p src (dense copy, no noise). */
int fm_net_clone(fm_net *net, const fm_net *src);

void fm_net_destroy(fm_net *net);

/* Total number of parameters (weights + biases). */
size_t fm_net_params(const fm_net *net);

/* The block size of unit @p i at @p scale (1, 2, 4: blocks of 8/16/32 weights in linear layers). */
size_t fm_unit_block(const fm_unit *u, size_t scale);

/* Noise of every layer. kind NONE clears it. For PQ, n_centroids is clamped to the layer's blocks. */
typedef struct fm_noise {
    qn_noise_kind kind;
    float p;
    size_t scale;        /* block scale (see fm_unit_block) */
    unsigned bits;       /* SCALAR */
    size_t n_centroids;  /* PQ */
    uint32_t update;     /* SCALAR/PQ refresh period (noisy forwards) */
} fm_noise;
int fm_net_set_noise(fm_net *net, const fm_noise *nz, uint64_t seed);

/*
 * One pass over @p d (shuffled with @p seed) with SGD + momentum 0.9 at rate lr
 * (weights, biases and, for compressed layers, their centroids); at most
 * max_steps batches when > 0. *step counts batches (the noise step). Mean
 * loss and training accuracy (noisy forward) into the outs (may be NULL).
 */
int fm_net_train(fm_net *net, const fm_data *d, size_t batch, float lr, uint64_t seed, size_t max_steps,
                 uint64_t *step, double *loss, double *acc);

/* Reset the momentum of every layer (at a new iPQ stage). */
void fm_net_reset_momentum(fm_net *net);

/* Accuracy of the clean forward on @p d (batches of at most batch_cap). -1 on error. */
double fm_net_accuracy(fm_net *net, const fm_data *d);

#endif
