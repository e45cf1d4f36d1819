/*
 * Networks of the qnoise-fmnist demo (see net.h).
 * SPDX-License-Identifier: MIT
 */
#include "net.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* uniform on [0, 1) from a counter-based stream */
static double unit01(uint64_t seed, uint64_t i)
{
    return (double)(mix64(seed + 0x9E3779B97F4A7C15ull * (i + 1)) >> 11) * (1.0 / 9007199254740992.0);
}

static int ok(qn_status st, const char *what, const char *name)
{
    if (st != QN_OK) {
        fprintf(stderr, "qnoise-fmnist: %s %s: %s\n", what, name, qn_status_str(st));
        return 0;
    }
    return 1;
}

static float *falloc(size_t n)
{
    return (float *)calloc(n ? n : 1, sizeof(float));
}

const char *fm_arch_name(fm_arch arch)
{
    return arch == FM_CNN ? "cnn" : "mlp";
}

size_t fm_unit_block(const fm_unit *u, size_t scale)
{
    /* the largest divisor of the blocked axis (weights per output) not above base * scale */
    size_t cols = u->wn / u->out_c, bs = u->base_block * scale;
    while (bs > 1 && cols % bs != 0)
        bs--;
    return bs;
}

static void unit_free(fm_unit *u)
{
    qn_layer_destroy(u->l);
    free(u->w);
    free(u->b);
    free(u->dw);
    free(u->db);
    free(u->vw);
    free(u->vb);
    free(u->z);
    free(u->a);
    free(u->dz);
    free(u->arg);
    memset(u, 0, sizeof *u);
}

void fm_net_destroy(fm_net *net)
{
    int i;
    for (i = 0; i < net->n; i++)
        unit_free(&net->u[i]);
    free(net->dx);
    free(net->logits);
    free(net->dlogits);
    memset(net, 0, sizeof *net);
}

/* Create the layer of a unit whose shape fields are set, and its buffers. */
static int unit_init(fm_net *net, fm_unit *u)
{
    size_t B = net->batch_cap;
    if (u->conv) {
        size_t oh = 0, ow = 0;
        if (!ok(qn_layer_create_conv2d(net->ctx, u->in_c, u->out_c, u->kh, u->kh, 1, u->kh / 2, 1, 1, &u->l),
                "create", u->name) ||
            !ok(qn_layer_set_input_size(u->l, u->in_h, u->in_h), "input size", u->name) ||
            !ok(qn_layer_get_output_size(u->l, &oh, &ow), "output size", u->name))
            return -1;
        u->out_h = oh;
        u->wn = u->out_c * u->in_c * u->kh * u->kh;
        u->zin = u->in_c * u->in_h * u->in_h;
        u->zout = u->out_c * oh * ow;
        u->aout = u->pool ? u->out_c * (oh / 2) * (ow / 2) : u->zout;
        u->base_block = u->kh == 1 ? 4 : u->kh * u->kh;
    } else {
        if (!ok(qn_layer_create_linear(net->ctx, u->in_c, u->out_c, &u->l), "create", u->name))
            return -1;
        u->wn = u->out_c * u->in_c;
        u->zin = u->in_c;
        u->zout = u->aout = u->out_c;
        u->base_block = 8;
    }
    u->bn = u->out_c;
    u->w = falloc(u->wn);
    u->b = falloc(u->bn);
    u->dw = falloc(u->wn);
    u->db = falloc(u->bn);
    u->vw = falloc(u->wn);
    u->vb = falloc(u->bn);
    u->z = falloc(B * u->zout);
    u->a = falloc(B * u->aout);
    u->dz = falloc(B * u->zout);
    u->arg = u->pool ? (uint32_t *)calloc(B * u->aout, sizeof(uint32_t)) : NULL;
    if (!u->w || !u->b || !u->dw || !u->db || !u->vw || !u->vb || !u->z || !u->a || !u->dz || (u->pool && !u->arg)) {
        fprintf(stderr, "qnoise-fmnist: out of memory\n");
        return -1;
    }
    return ok(qn_layer_bind(u->l, u->w, u->b), "bind", u->name) ? 0 : -1;
}

static int net_shape(fm_net *net, qn_context *ctx, fm_arch arch, size_t batch_cap)
{
    int i;
    size_t maxin = FM_PIXELS;
    memset(net, 0, sizeof *net);
    net->ctx = ctx;
    net->arch = arch;
    net->batch_cap = batch_cap;
    if (arch == FM_MLP) {
        static const size_t dims[4] = {FM_PIXELS, 512, 512, FM_CLASSES};
        net->n = 3;
        for (i = 0; i < 3; i++) {
            fm_unit *u = &net->u[i];
            snprintf(u->name, sizeof u->name, "fc%d", i + 1);
            u->in_c = dims[i];
            u->out_c = dims[i + 1];
            u->relu = i < 2;
        }
    } else {
        /* conv1 3x3 1->16 @28, pool -> 14; conv2 3x3 16->32 @14, pool -> 7; conv3 1x1 32->32 @7; fc 1568->10 */
        static const size_t cin[3] = {1, 16, 32}, cout[3] = {16, 32, 32}, side[3] = {28, 14, 7}, k[3] = {3, 3, 1};
        net->n = 4;
        for (i = 0; i < 3; i++) {
            fm_unit *u = &net->u[i];
            snprintf(u->name, sizeof u->name, "conv%d", i + 1);
            u->conv = 1;
            u->kh = k[i];
            u->in_c = cin[i];
            u->out_c = cout[i];
            u->in_h = side[i];
            u->relu = 1;
            u->pool = i < 2;
        }
        snprintf(net->u[3].name, sizeof net->u[3].name, "fc");
        net->u[3].in_c = 32 * 7 * 7;
        net->u[3].out_c = FM_CLASSES;
    }
    for (i = 0; i < net->n; i++) {
        if (unit_init(net, &net->u[i]) != 0)
            return -1;
        maxin = net->u[i].zin > maxin ? net->u[i].zin : maxin;
    }
    net->dx = falloc(batch_cap * maxin);
    net->logits = falloc(batch_cap * FM_CLASSES);
    net->dlogits = falloc(batch_cap * FM_CLASSES);
    if (!net->dx || !net->logits || !net->dlogits) {
        fprintf(stderr, "qnoise-fmnist: out of memory\n");
        return -1;
    }
    return 0;
}

int fm_net_create(fm_net *net, qn_context *ctx, fm_arch arch, size_t batch_cap, uint64_t seed)
{
    int i;
    size_t j;
    if (net_shape(net, ctx, arch, batch_cap) != 0) {
        fm_net_destroy(net);
        return -1;
    }
    for (i = 0; i < net->n; i++) {
        fm_unit *u = &net->u[i];
        /* He uniform: U(-sqrt(6 / fan_in), +sqrt(6 / fan_in)); biases 0 */
        double fan_in = (double)(u->wn / u->out_c), bound = sqrt(6.0 / fan_in);
        if (!u->relu)
            bound = sqrt(3.0 / fan_in);
        for (j = 0; j < u->wn; j++)
            u->w[j] = (float)((2.0 * unit01(seed * 31 + (uint64_t)i, j) - 1.0) * bound);
    }
    return 0;
}

int fm_net_clone(fm_net *net, const fm_net *src)
{
    int i;
    if (net_shape(net, src->ctx, src->arch, src->batch_cap) != 0) {
        fm_net_destroy(net);
        return -1;
    }
    for (i = 0; i < net->n; i++) {
        memcpy(net->u[i].w, src->u[i].w, src->u[i].wn * sizeof(float));
        memcpy(net->u[i].b, src->u[i].b, src->u[i].bn * sizeof(float));
    }
    return 0;
}

size_t fm_net_params(const fm_net *net)
{
    size_t s = 0;
    int i;
    for (i = 0; i < net->n; i++)
        s += net->u[i].wn + net->u[i].bn;
    return s;
}

int fm_net_set_noise(fm_net *net, const fm_noise *nz, uint64_t seed)
{
    int i;
    for (i = 0; i < net->n; i++) {
        fm_unit *u = &net->u[i];
        size_t bs = fm_unit_block(u, nz->scale ? nz->scale : 1), blocks = u->wn / bs;
        qn_noise_kind kind = nz->kind;
        /* a layer with too few blocks for the noise it would prepare for is left clean */
        if (kind == QN_NOISE_PQ && blocks < 2 * nz->n_centroids)
            kind = QN_NOISE_NONE;
        if (!ok(qn_layer_set_noise(u->l, kind, kind == QN_NOISE_NONE ? 0.0f : nz->p, kind == QN_NOISE_NONE ? 1 : bs),
                "noise", u->name) ||
            !ok(qn_layer_set_seed(u->l, seed, (uint64_t)i), "seed", u->name))
            return -1;
        if (kind == QN_NOISE_SCALAR &&
            !ok(qn_layer_set_scalar_noise(u->l, nz->bits, QN_OBSERVER_PER_CHANNEL, QN_QSCHEME_SYMMETRIC, nz->update),
                "scalar noise", u->name))
            return -1;
        if (kind == QN_NOISE_PQ && !ok(qn_layer_set_pq_noise(u->l, nz->n_centroids, 10, nz->update), "PQ noise", u->name))
            return -1;
    }
    return 0;
}

/* ReLU (+ 2x2 max pool) of z into a for `batch` samples. */
static void activate(fm_unit *u, size_t batch)
{
    size_t i;
    if (!u->pool) {
        for (i = 0; i < batch * u->zout; i++)
            u->a[i] = u->relu && u->z[i] < 0 ? 0.0f : u->z[i];
        return;
    }
    {
        size_t oh = u->out_h, ph = oh / 2, n, c, y, x;
        for (n = 0; n < batch; n++)
            for (c = 0; c < u->out_c; c++) {
                const float *zp = u->z + n * u->zout + c * oh * oh;
                float *ap = u->a + n * u->aout + c * ph * ph;
                uint32_t *gp = u->arg + n * u->aout + c * ph * ph;
                for (y = 0; y < ph; y++)
                    for (x = 0; x < ph; x++) {
                        size_t i0 = (2 * y) * oh + 2 * x, cand[4], k, best = i0;
                        cand[0] = i0;
                        cand[1] = i0 + 1;
                        cand[2] = i0 + oh;
                        cand[3] = i0 + oh + 1;
                        for (k = 1; k < 4; k++)
                            if (zp[cand[k]] > zp[best])
                                best = cand[k];
                        ap[y * ph + x] = zp[best] > 0 ? zp[best] : 0.0f;
                        gp[y * ph + x] = (uint32_t)(c * oh * oh + best);
                    }
            }
    }
}

/* dz from the gradient wrt a (da, batch x aout). */
static void activate_back(fm_unit *u, size_t batch, const float *da)
{
    size_t i, n;
    if (!u->pool) {
        for (i = 0; i < batch * u->zout; i++)
            u->dz[i] = u->relu && u->z[i] <= 0 ? 0.0f : da[i];
        return;
    }
    memset(u->dz, 0, batch * u->zout * sizeof(float));
    for (n = 0; n < batch; n++)
        for (i = 0; i < u->aout; i++) {
            uint32_t at = u->arg[n * u->aout + i];
            if (u->z[n * u->zout + at] > 0)
                u->dz[n * u->zout + at] = da[n * u->aout + i];
        }
}

/* Forward of `batch` samples; noisy when step != NULL. Logits in net->logits. */
static int forward(fm_net *net, size_t batch, const float *x, const uint64_t *step)
{
    int i;
    const float *in = x;
    for (i = 0; i < net->n; i++) {
        fm_unit *u = &net->u[i];
        qn_status st = step ? qn_layer_forward_noisy(u->l, batch, in, u->z, *step) : qn_layer_forward(u->l, batch, in, u->z);
        if (!ok(st, "forward", u->name))
            return -1;
        if (i + 1 < net->n) {
            activate(u, batch);
            in = u->a;
        }
    }
    memcpy(net->logits, net->u[net->n - 1].z, batch * FM_CLASSES * sizeof(float));
    return 0;
}

/* Softmax cross-entropy of the logits: summed loss, dlogits = (p - onehot) / batch, correct count. */
static double xent(fm_net *net, size_t batch, const uint8_t *y, size_t *correct)
{
    double loss = 0;
    size_t i, c;
    for (i = 0; i < batch; i++) {
        const float *l = net->logits + i * FM_CLASSES;
        float *g = net->dlogits + i * FM_CLASSES;
        float mx = l[0];
        double s = 0;
        size_t arg = 0;
        for (c = 1; c < FM_CLASSES; c++)
            if (l[c] > mx) {
                mx = l[c];
                arg = c;
            }
        for (c = 0; c < FM_CLASSES; c++)
            s += exp((double)(l[c] - mx));
        loss += -((double)(l[y[i]] - mx) - log(s));
        *correct += arg == y[i];
        for (c = 0; c < FM_CLASSES; c++)
            g[c] = (float)((exp((double)(l[c] - mx)) / s - (c == y[i] ? 1.0 : 0.0)) / (double)batch);
    }
    return loss;
}

/* One SGD-with-momentum update of a unit: weight (or centroids when compressed) and bias. */
static void sgd(fm_unit *u, float lr)
{
    const float mu = 0.9f;
    float *w = u->w;
    size_t n = u->wn, i;
    int cq = 0;
    float *c = NULL;
    size_t bs = 0, k = 0;
    if (qn_layer_is_compressed(u->l, &cq) == QN_OK && cq && qn_layer_pq_centroids(u->l, &c) == QN_OK &&
        qn_layer_get_pq_shape(u->l, &bs, &k, NULL) == QN_OK) {
        w = c;
        n = k * bs;
    }
    for (i = 0; i < n; i++) {
        u->vw[i] = mu * u->vw[i] + u->dw[i];
        w[i] -= lr * u->vw[i];
    }
    for (i = 0; i < u->bn; i++) {
        u->vb[i] = mu * u->vb[i] + u->db[i];
        u->b[i] -= lr * u->vb[i];
    }
}

void fm_net_reset_momentum(fm_net *net)
{
    int i;
    for (i = 0; i < net->n; i++) {
        memset(net->u[i].vw, 0, net->u[i].wn * sizeof(float));
        memset(net->u[i].vb, 0, net->u[i].bn * sizeof(float));
    }
}

int fm_net_train(fm_net *net, const fm_data *d, size_t batch, float lr, uint64_t seed, size_t max_steps,
                 uint64_t *step, double *loss, double *acc)
{
    size_t *perm = (size_t *)malloc(d->n * sizeof(size_t));
    float *xb = falloc(batch * FM_PIXELS);
    uint8_t *yb = (uint8_t *)malloc(batch);
    double lsum = 0;
    size_t seen = 0, correct = 0, i, b, steps = 0;
    int rc = -1;
    if (!perm || !xb || !yb || batch > net->batch_cap) {
        fprintf(stderr, "qnoise-fmnist: out of memory (or batch too large)\n");
        goto out;
    }
    for (i = 0; i < d->n; i++)
        perm[i] = i;
    for (i = d->n; i > 1; i--) { /* Fisher-Yates */
        size_t j = (size_t)(unit01(seed, i) * (double)i), t = perm[i - 1];
        perm[i - 1] = perm[j];
        perm[j] = t;
    }
    for (b = 0; b + batch <= d->n && (max_steps == 0 || steps < max_steps); b += batch, steps++, (*step)++) {
        int li;
        for (i = 0; i < batch; i++) {
            memcpy(xb + i * FM_PIXELS, d->x + perm[b + i] * FM_PIXELS, FM_PIXELS * sizeof(float));
            yb[i] = d->y[perm[b + i]];
        }
        if (forward(net, batch, xb, step) != 0)
            goto out;
        lsum += xent(net, batch, yb, &correct);
        seen += batch;
        /* backward, last layer first */
        for (li = net->n - 1; li >= 0; li--) {
            fm_unit *u = &net->u[li];
            const float *in = li > 0 ? net->u[li - 1].a : xb;
            const float *dy = li == net->n - 1 ? net->dlogits : u->dz;
            memset(u->dw, 0, u->wn * sizeof(float));
            memset(u->db, 0, u->bn * sizeof(float));
            if (!ok(qn_layer_backward(u->l, batch, in, dy, li > 0 ? net->dx : NULL, u->dw, u->db, *step), "backward",
                    u->name))
                goto out;
            if (li > 0)
                activate_back(&net->u[li - 1], batch, net->dx);
        }
        for (li = 0; li < net->n; li++)
            sgd(&net->u[li], lr);
    }
    if (loss)
        *loss = seen ? lsum / (double)seen : 0.0;
    if (acc)
        *acc = seen ? (double)correct / (double)seen : 0.0;
    rc = 0;
out:
    free(perm);
    free(xb);
    free(yb);
    return rc;
}

double fm_net_accuracy(fm_net *net, const fm_data *d)
{
    size_t b, correct = 0;
    for (b = 0; b < d->n; b += net->batch_cap) {
        size_t nb = d->n - b < net->batch_cap ? d->n - b : net->batch_cap, i, c;
        if (forward(net, nb, d->x + b * FM_PIXELS, NULL) != 0)
            return -1.0;
        for (i = 0; i < nb; i++) {
            const float *l = net->logits + i * FM_CLASSES;
            size_t arg = 0;
            for (c = 1; c < FM_CLASSES; c++)
                if (l[c] > l[arg])
                    arg = c;
            correct += arg == d->y[b + i];
        }
    }
    return d->n ? (double)correct / (double)d->n : 0.0;
}
