/*
 * Train a two-layer MLP on a synthetic task with Quant-Noise (proxy noise)
 * through the libqnoise layer API: forward_noisy + backward every step, plain
 * SGD done by the caller, evaluation with the clean forward.
 * SPDX-License-Identifier: MIT
 *
 * Task: 4 Gaussian classes in 32 dimensions (means drawn once, unit noise).
 * Model: 32 -> 64 (ReLU) -> 4, softmax cross-entropy. Proxy noise p = 0.1,
 * block 4 on both layers. Then iPQ: fc1 then fc2 are compressed to K = 16
 * centroids of 4 weights (1 bit per weight) in two stages, with one epoch of
 * centroid fine-tuning after each, and int8 codebooks; the size report is
 * printed. Exits 0 when the loss at least halves, the clean test accuracy
 * beats 80% and the compressed one 70%; prints one line per epoch.
 *
 * usage: qnoise-example-mlp [epochs]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qnoise/qnoise.h>

enum { DIM = 32, HID = 64, CLASSES = 4, TRAIN = 2048, TEST = 1024, BATCH = 32 };

static uint64_t rng_state = 0x5eed;
static double uniform01(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (double)((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
}
static float gauss(void)
{
    double u1 = uniform01() + 1e-12, u2 = uniform01();
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void make_data(const float *means, float *x, int *y, int n)
{
    int i, t;
    for (i = 0; i < n; i++) {
        y[i] = (int)(uniform01() * CLASSES) % CLASSES;
        for (t = 0; t < DIM; t++)
            x[i * DIM + t] = means[y[i] * DIM + t] + gauss();
    }
}

/* softmax cross-entropy: loss summed over the batch, dlogits = (p - onehot) / batch */
static double softmax_xent(const float *logits, const int *y, int n, float *dlogits, int *correct)
{
    double loss = 0;
    int i, c;
    for (i = 0; i < n; i++) {
        const float *l = logits + i * CLASSES;
        float mx = l[0], s = 0;
        int arg = 0;
        for (c = 1; c < CLASSES; c++)
            if (l[c] > mx) {
                mx = l[c];
                arg = c;
            }
        for (c = 0; c < CLASSES; c++)
            s += expf(l[c] - mx);
        loss += -(l[y[i]] - mx - logf(s));
        if (correct)
            *correct += arg == y[i];
        if (dlogits)
            for (c = 0; c < CLASSES; c++)
                dlogits[i * CLASSES + c] = (expf(l[c] - mx) / s - (c == y[i] ? 1.0f : 0.0f)) / (float)n;
    }
    return loss;
}

/* Clean (eval) loss and accuracy of the model on n samples; hbuf/lbuf hold n rows. */
static qn_status evaluate(qn_layer *fc1, qn_layer *fc2, const float *x, const int *y, int n, float *hbuf,
                          float *lbuf, double *loss, int *correct)
{
    int i;
    qn_status st = qn_layer_forward(fc1, (size_t)n, x, hbuf);
    if (st != QN_OK)
        return st;
    for (i = 0; i < n * HID; i++)
        hbuf[i] = hbuf[i] > 0 ? hbuf[i] : 0;
    st = qn_layer_forward(fc2, (size_t)n, hbuf, lbuf);
    if (st != QN_OK)
        return st;
    *correct = 0;
    *loss = softmax_xent(lbuf, y, n, NULL, correct) / n;
    return QN_OK;
}

/* SGD on a layer's trainable parameters: its weight, or its centroids once compressed. */
static void sgd(qn_layer *l, float *w, const float *dw, size_t n, float lr)
{
    int cq = 0;
    float *c = NULL;
    size_t bs = 0, k = 0, i;
    if (qn_layer_is_compressed(l, &cq) == QN_OK && cq && qn_layer_pq_centroids(l, &c) == QN_OK &&
        qn_layer_get_pq_shape(l, &bs, &k, NULL) == QN_OK) {
        w = c;
        n = k * bs;
    }
    for (i = 0; i < n; i++)
        w[i] -= lr * dw[i];
}

static int check(qn_status st, const char *what)
{
    if (st != QN_OK) {
        fprintf(stderr, "%s: %s\n", what, qn_status_str(st));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int epochs = argc > 1 ? atoi(argv[1]) : 8;
    static float means[CLASSES * DIM], xtr[TRAIN * DIM], xte[TEST * DIM];
    static int ytr[TRAIN], yte[TEST];
    static float w1[HID * DIM], b1[HID], w2[CLASSES * HID], b2[CLASSES];
    static float dw1[HID * DIM], db1[HID], dw2[CLASSES * HID], db2[CLASSES];
    static float h[BATCH * HID], a[BATCH * HID], logits[BATCH * CLASSES], dlog[BATCH * CLASSES], da[BATCH * HID];
    static float hte[TRAIN * HID], lte[TRAIN * CLASSES];
    qn_context *ctx = NULL;
    qn_layer *fc1 = NULL, *fc2 = NULL;
    qn_ipq *ipq = NULL;
    static char report[4096];
    size_t report_len = 0;
    int float_ok = 0;
    double first_loss = 0, loss = 0, final_loss = 0;
    const float lr = 0.1f;
    uint64_t step = 0;
    int e, i, b, correct = 0, rc = 1;

    for (i = 0; i < CLASSES * DIM; i++)
        means[i] = 0.6f * gauss();
    make_data(means, xtr, ytr, TRAIN);
    make_data(means, xte, yte, TEST);
    for (i = 0; i < HID * DIM; i++)
        w1[i] = gauss() * sqrtf(2.0f / DIM);
    for (i = 0; i < CLASSES * HID; i++)
        w2[i] = gauss() * sqrtf(1.0f / HID);

    if (check(qn_context_create(&ctx), "context") ||
        check(qn_layer_create_linear(ctx, DIM, HID, &fc1), "fc1") ||
        check(qn_layer_create_linear(ctx, HID, CLASSES, &fc2), "fc2") ||
        check(qn_layer_bind(fc1, w1, b1), "bind fc1") || check(qn_layer_bind(fc2, w2, b2), "bind fc2") ||
        check(qn_layer_set_noise(fc1, QN_NOISE_PROXY, 0.1f, 4), "noise fc1") ||
        check(qn_layer_set_noise(fc2, QN_NOISE_PROXY, 0.1f, 4), "noise fc2") ||
        check(qn_layer_set_seed(fc1, 1234, 0), "seed fc1") || check(qn_layer_set_seed(fc2, 1234, 1), "seed fc2"))
        goto out;

    if (check(evaluate(fc1, fc2, xtr, ytr, TRAIN, hte, lte, &first_loss, &correct), "initial loss"))
        goto out;
    printf("before training: train loss %.4f\n", first_loss);
    /* `epochs` epochs with Quant-Noise, then one fine-tuning epoch after each of the two iPQ stages */
    for (e = 0; e < epochs + 2; e++) {
        loss = 0;
        for (b = 0; b + BATCH <= TRAIN; b += BATCH, step++) {
            const float *xb = xtr + b * DIM;
            memset(dw1, 0, sizeof dw1);
            memset(db1, 0, sizeof db1);
            memset(dw2, 0, sizeof dw2);
            memset(db2, 0, sizeof db2);
            if (check(qn_layer_forward_noisy(fc1, BATCH, xb, h, step), "forward fc1"))
                goto out;
            for (i = 0; i < BATCH * HID; i++)
                a[i] = h[i] > 0 ? h[i] : 0;
            if (check(qn_layer_forward_noisy(fc2, BATCH, a, logits, step), "forward fc2"))
                goto out;
            loss += softmax_xent(logits, ytr + b, BATCH, dlog, NULL);
            if (check(qn_layer_backward(fc2, BATCH, a, dlog, da, dw2, db2, step), "backward fc2"))
                goto out;
            for (i = 0; i < BATCH * HID; i++)
                da[i] = h[i] > 0 ? da[i] : 0;
            if (check(qn_layer_backward(fc1, BATCH, xb, da, NULL, dw1, db1, step), "backward fc1"))
                goto out;
            sgd(fc1, w1, dw1, HID * DIM, lr);
            sgd(fc2, w2, dw2, CLASSES * HID, lr);
            for (i = 0; i < HID; i++)
                b1[i] -= lr * db1[i];
            for (i = 0; i < CLASSES; i++)
                b2[i] -= lr * db2[i];
        }
        loss /= TRAIN;
        if (e < epochs)
            printf("epoch %d  noisy train loss %.4f\n", e + 1, loss);
        else
            printf("iPQ stage %d compressed, fine-tuning epoch: train loss %.4f\n", e - epochs + 1, loss);
        if (e + 1 == epochs) {
            /* evaluation of the float model: clean weights, no mask */
            if (check(evaluate(fc1, fc2, xtr, ytr, TRAIN, hte, lte, &final_loss, &correct), "final loss") ||
                check(evaluate(fc1, fc2, xte, yte, TEST, hte, lte, &loss, &correct), "test"))
                goto out;
            printf("clean train loss %.4f -> %.4f, test accuracy %.1f%%\n", first_loss, final_loss,
                   100.0 * correct / TEST);
            float_ok = final_loss < 0.5 * first_loss && correct > 0.8 * TEST;
            if (check(qn_ipq_create(ctx, &ipq), "ipq") ||
                check(qn_ipq_add_layer(ipq, fc1, "fc1", 0, 4, 16), "ipq fc1") ||
                check(qn_ipq_add_layer(ipq, fc2, "fc2", 1, 4, 16), "ipq fc2"))
                goto out;
        }
        if (e + 1 >= epochs && e + 1 < epochs + 2 && check(qn_ipq_advance(ipq, NULL), "ipq stage"))
            goto out;
    }

    /* the compressed model, with int8 codebooks */
    if (check(qn_ipq_codebooks_int8(ipq, QN_QSCHEME_SYMMETRIC, NULL), "int8 codebooks") ||
        check(evaluate(fc1, fc2, xte, yte, TEST, hte, lte, &loss, &correct), "compressed test") ||
        check(qn_ipq_report(ipq, report, sizeof report, &report_len), "report"))
        goto out;
    printf("iPQ (K = 16, block 4) + int8 codebooks: test accuracy %.1f%%\n%s", 100.0 * correct / TEST, report);
    rc = (float_ok && correct > 0.7 * TEST) ? 0 : 1;
    if (rc)
        fprintf(stderr, "training did not converge as expected\n");
out:
    qn_ipq_destroy(ipq);
    qn_layer_destroy(fc1);
    qn_layer_destroy(fc2);
    qn_context_destroy(ctx);
    return rc;
}
