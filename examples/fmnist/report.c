/*
 * Tables, analysis and plot of the qnoise-fmnist demo (see report.h).
 * SPDX-License-Identifier: MIT
 */
#include "report.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_ARCHS = 2, MAX_SEEDS = 4, MAX_VARIANTS = 16 };

typedef struct trained {
    char name[32];
    double acc[MAX_SEEDS], extra[MAX_SEEDS];
} trained;

typedef struct arch_res {
    char name[16];
    size_t params;
    double *acc;  /* [row][col][seed] */
    double *size; /* [row] */
    trained tr[MAX_VARIANTS];
    int n_tr;
} arch_res;

struct fm_results {
    int n_archs, n_seeds, n_blocks, n_ks, n_rows;
    size_t blocks[3], ks[3];
    arch_res a[MAX_ARCHS];
};

static double *cell(const fm_results *r, int ai, int row, int col)
{
    return r->a[ai].acc + ((size_t)row * FM_NCOLS + (size_t)col) * (size_t)r->n_seeds;
}

fm_results *fm_results_create(int n_archs, int n_seeds, const size_t *blocks, int n_blocks, const size_t *ks, int n_ks)
{
    fm_results *r;
    int ai, i;
    size_t n;
    if (n_archs < 1 || n_archs > MAX_ARCHS || n_seeds < 1 || n_seeds > MAX_SEEDS || n_blocks < 1 || n_blocks > 3 ||
        n_ks < 1 || n_ks > 3)
        return NULL;
    r = (fm_results *)calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->n_archs = n_archs;
    r->n_seeds = n_seeds;
    r->n_blocks = n_blocks;
    r->n_ks = n_ks;
    r->n_rows = FM_ROW_IPQ0 + 3 * n_blocks * n_ks;
    memcpy(r->blocks, blocks, (size_t)n_blocks * sizeof *blocks);
    memcpy(r->ks, ks, (size_t)n_ks * sizeof *ks);
    n = (size_t)r->n_rows * FM_NCOLS * (size_t)n_seeds;
    for (ai = 0; ai < n_archs; ai++) {
        r->a[ai].acc = (double *)malloc(n * sizeof(double));
        r->a[ai].size = (double *)calloc((size_t)r->n_rows, sizeof(double));
        if (!r->a[ai].acc || !r->a[ai].size) {
            fm_results_destroy(r);
            return NULL;
        }
        for (i = 0; i < (int)n; i++)
            r->a[ai].acc[i] = NAN;
    }
    return r;
}

void fm_results_destroy(fm_results *r)
{
    int ai;
    if (!r)
        return;
    for (ai = 0; ai < MAX_ARCHS; ai++) {
        free(r->a[ai].acc);
        free(r->a[ai].size);
    }
    free(r);
}

void fm_results_set_arch(fm_results *r, int ai, const char *name, size_t params)
{
    snprintf(r->a[ai].name, sizeof r->a[ai].name, "%s", name);
    r->a[ai].params = params;
}

int fm_results_ipq_row(const fm_results *r, int bi, int ki)
{
    return FM_ROW_IPQ0 + 3 * (bi * r->n_ks + ki);
}

int fm_results_set(fm_results *r, int ai, int row, int col, int seed, double acc)
{
    if (ai < 0 || ai >= r->n_archs || row < 0 || row >= r->n_rows || col < 0 || col >= FM_NCOLS || seed < 1 ||
        seed > r->n_seeds)
        return -1;
    cell(r, ai, row, col)[seed - 1] = acc;
    return 0;
}

void fm_results_set_size(fm_results *r, int ai, int row, double bytes)
{
    if (ai >= 0 && ai < r->n_archs && row >= 0 && row < r->n_rows)
        r->a[ai].size[row] = bytes;
}

static trained *find_tr(fm_results *r, int ai, const char *variant)
{
    arch_res *a = &r->a[ai];
    int i, s;
    for (i = 0; i < a->n_tr; i++)
        if (!strcmp(a->tr[i].name, variant))
            return &a->tr[i];
    if (a->n_tr == MAX_VARIANTS)
        return NULL;
    snprintf(a->tr[a->n_tr].name, sizeof a->tr[0].name, "%s", variant);
    for (s = 0; s < MAX_SEEDS; s++)
        a->tr[a->n_tr].acc[s] = a->tr[a->n_tr].extra[s] = NAN;
    return &a->tr[a->n_tr++];
}

void fm_results_set_trained(fm_results *r, int ai, const char *variant, int seed, double acc)
{
    trained *t = find_tr(r, ai, variant);
    if (t && seed >= 1 && seed <= r->n_seeds)
        t->acc[seed - 1] = acc;
}

void fm_results_set_extra(fm_results *r, int ai, const char *variant, int seed, double acc)
{
    trained *t = find_tr(r, ai, variant);
    if (t && seed >= 1 && seed <= r->n_seeds)
        t->extra[seed - 1] = acc;
}

double fm_results_min_trained(const fm_results *r)
{
    double m = 1.0;
    int ai, i, s;
    for (ai = 0; ai < r->n_archs; ai++)
        for (i = 0; i < r->a[ai].n_tr; i++)
            for (s = 0; s < r->n_seeds; s++)
                if (!isnan(r->a[ai].tr[i].acc[s]) && r->a[ai].tr[i].acc[s] < m)
                    m = r->a[ai].tr[i].acc[s];
    return m;
}

/* ---------------------------------------------------------------------------------------------- */

/* Mean over seeds (NAN when any seed is missing). */
static double mean_of(const double *v, int n)
{
    double s = 0;
    int i;
    for (i = 0; i < n; i++) {
        if (isnan(v[i]))
            return NAN;
        s += v[i];
    }
    return s / n;
}

static double cell_mean(const fm_results *r, int ai, int row, int col)
{
    return mean_of(cell(r, ai, row, col), r->n_seeds);
}

/* "85.12" or "85.12 (84.90 / 85.34)" for several seeds; "–" when missing. */
static void fmt_acc(char *buf, size_t cap, const double *v, int n)
{
    double m = mean_of(v, n);
    int i;
    size_t len;
    if (isnan(m)) {
        snprintf(buf, cap, "–");
        return;
    }
    snprintf(buf, cap, "%.2f", 100 * m);
    if (n > 1) {
        len = strlen(buf);
        snprintf(buf + len, cap - len, " (");
        for (i = 0; i < n; i++) {
            len = strlen(buf);
            snprintf(buf + len, cap - len, "%s%.2f", i ? " / " : "", 100 * v[i]);
        }
        len = strlen(buf);
        snprintf(buf + len, cap - len, ")");
    }
}

static const char *row_kind(const fm_results *r, int row, char *buf, size_t cap)
{
    if (row == FM_ROW_INT8)
        return "int8 (per-channel)";
    if (row == FM_ROW_INT4)
        return "int4 (per-channel)";
    {
        int k = (row - FM_ROW_IPQ0) % 3, p = (row - FM_ROW_IPQ0) / 3;
        int bi = p / r->n_ks, ki = p % r->n_ks;
        snprintf(buf, cap, "iPQ b%zu K%zu %s", r->blocks[bi], r->ks[ki],
                 k == 0 ? "one-shot" : k == 1 ? "staged+ft" : "staged+ft, int8 cb");
    }
    return buf;
}

static double bits_per_weight(const fm_results *r, int row)
{
    int p;
    if (row == FM_ROW_INT8)
        return 8;
    if (row == FM_ROW_INT4)
        return 4;
    p = (row - FM_ROW_IPQ0) / 3;
    return log2((double)r->ks[p % r->n_ks]) / (double)r->blocks[p / r->n_ks];
}

static double baseline_bytes(const fm_results *r, int ai)
{
    return 4.0 * (double)r->a[ai].params;
}

static const trained *tr_find(const fm_results *r, int ai, const char *name)
{
    int i;
    for (i = 0; i < r->a[ai].n_tr; i++)
        if (!strcmp(r->a[ai].tr[i].name, name))
            return &r->a[ai].tr[i];
    return NULL;
}

/* The automatic analysis: margins, crossings, the most compressed model within 2 points. */
static void analysis(const fm_results *r, int ai, FILE *f)
{
    const trained *none = tr_find(r, ai, "none");
    double ref = none ? mean_of(none->acc, r->n_seeds) : NAN;
    double ref_extra = none ? mean_of(none->extra, r->n_seeds) : NAN;
    int order[64], n = 0, i, j, row, col, kind;
    static const char *colname[FM_NCOLS] = {"no noise", "Quant-Noise proxy", "Quant-Noise exact"};
    fprintf(f, "\n### What the numbers say (%s, computed by the program)\n\n", r->a[ai].name);
    if (!isnan(ref))
        fprintf(f,
                "- Uncompressed, no noise: %.2f %%; given the fine-tuning budget of extra steps: %.2f %% "
                "(the reference for the cost of compression).\n",
                100 * ref, 100 * ref_extra);
    /* margins of the noise columns over no noise, per kind of iPQ row, sorted by ratio */
    for (kind = 0; kind < 3; kind++) {
        n = 0;
        for (row = FM_ROW_IPQ0 + kind; row < r->n_rows; row += 3)
            if (r->a[ai].size[row] > 0)
                order[n++] = row;
        for (i = 1; i < n; i++) /* ascending ratio = descending size */
            for (j = i; j > 0 && r->a[ai].size[order[j]] > r->a[ai].size[order[j - 1]]; j--) {
                int t = order[j];
                order[j] = order[j - 1];
                order[j - 1] = t;
            }
        for (col = FM_COL_PROXY; col < FM_NCOLS; col++) {
            int wins = 0, total = 0, all_seeds = 0, cross = -1;
            double best = -1e9, worst = 1e9;
            for (i = 0; i < n; i++) {
                double a = cell_mean(r, ai, order[i], col), b = cell_mean(r, ai, order[i], FM_COL_NONE);
                int s, every = 1;
                if (isnan(a) || isnan(b))
                    continue;
                total++;
                wins += a > b;
                for (s = 0; s < r->n_seeds; s++)
                    every &= cell(r, ai, order[i], col)[s] > cell(r, ai, order[i], FM_COL_NONE)[s];
                all_seeds += every;
                best = a - b > best ? a - b : best;
                worst = a - b < worst ? a - b : worst;
            }
            /* crossing: the lowest ratio from which every point (in ratio order) has a positive mean margin */
            for (i = n - 1; i >= 0; i--) {
                double a = cell_mean(r, ai, order[i], col), b = cell_mean(r, ai, order[i], FM_COL_NONE);
                if (isnan(a) || isnan(b))
                    continue;
                if (a > b)
                    cross = order[i];
                else
                    break;
            }
            if (total == 0)
                continue;
            fprintf(f,
                    "- iPQ %s, %s against no noise: higher mean accuracy at %d of %d operating points "
                    "(at every seed: %d); margins from %+.2f to %+.2f points.",
                    kind == 0 ? "one-shot" : kind == 1 ? "staged + fine-tuning" : "staged + fine-tuning + int8 codebooks",
                    colname[col], wins, total, all_seeds, 100 * worst, 100 * best);
            if (cross >= 0)
                fprintf(f, " From compression ×%.1f on (%s) every point favours %s.\n",
                        baseline_bytes(r, ai) / r->a[ai].size[cross], row_kind(r, cross, (char[64]){0}, 64),
                        colname[col]);
            else
                fprintf(f, " The most compressed point does not favour %s.\n", colname[col]);
        }
    }
    for (row = FM_ROW_INT8; row <= FM_ROW_INT4; row++)
        for (col = FM_COL_PROXY; col < FM_NCOLS; col++) {
            double a = cell_mean(r, ai, row, col), b = cell_mean(r, ai, row, FM_COL_NONE);
            if (!isnan(a) && !isnan(b))
                fprintf(f, "- %s, %s: %.2f %% against %.2f %% without noise (%+.2f points).\n",
                        row == FM_ROW_INT8 ? "int8" : "int4",
                        col == FM_COL_PROXY ? "proxy noise (block 8)" : "scalar noise of the same bits", 100 * a,
                        100 * b, 100 * (a - b));
        }
    /* the most compressed model within 2 points of the uncompressed no-noise model */
    if (!isnan(ref)) {
        int brow = -1, bcol = -1;
        double bratio = 0;
        for (row = 0; row < r->n_rows; row++)
            for (col = 0; col < FM_NCOLS; col++) {
                double a = cell_mean(r, ai, row, col), ratio;
                if (isnan(a) || r->a[ai].size[row] <= 0 || a < ref - 0.02)
                    continue;
                ratio = baseline_bytes(r, ai) / r->a[ai].size[row];
                if (ratio > bratio) {
                    bratio = ratio;
                    brow = row;
                    bcol = col;
                }
            }
        if (brow >= 0) {
            char b[64];
            fprintf(f,
                    "- Most compressed model within 2 points of the uncompressed one (%.2f %%): %s trained with %s, "
                    "%.0f bytes (%.4f MiB), ×%.1f, %.2f %%.\n",
                    100 * ref, row_kind(r, brow, b, sizeof b), colname[bcol], r->a[ai].size[brow],
                    r->a[ai].size[brow] / 1048576.0, bratio, 100 * cell_mean(r, ai, brow, bcol));
        }
    }
}

static void write_tables(const fm_results *r, const fm_report_info *info, FILE *f)
{
    int ai, row, col, i;
    char b[64], acc[FM_NCOLS][96];
    fprintf(f, "# qnoise-fmnist results\n\n");
    fprintf(f, "Run: `qnoise-fmnist %s` with libqnoise %s; %zu training and %zu test images; %d seed(s); %.0f s.\n"
               "Recipe: %s.\n\n",
            info->mode, info->version, info->train_n, info->test_n, r->n_seeds, info->seconds,
            info->recipe ? info->recipe : "");
    fprintf(f,
            "Every compressed model was written as GGUF, read back (every tensor decoding bit for bit as before) and "
            "evaluated through its compressed weights (qn_layer_bind_compressed: the packed PQ and int8/int4 kernels "
            "for linear layers). Sizes are the exact bytes of the tensors (packed codes, codebooks, scales, biases and "
            "layers left in fp32). Accuracies in %% on the test images: the mean over seeds, each seed in brackets. "
            "Columns: the training of the compressed model. For iPQ rows, Quant-Noise used the block size of the row "
            "(proxy: blocks dropped with rate p and the rest rescaled; exact: blocks replaced by their PQ centroid); "
            "for int8/int4 rows, proxy is the block-8 proxy model and exact is scalar noise of the same bits.\n");
    for (ai = 0; ai < r->n_archs; ai++) {
        const arch_res *a = &r->a[ai];
        fprintf(f, "\n## %s: %zu parameters, %.0f bytes (%.3f MiB) at fp32\n\n", a->name, a->params,
                baseline_bytes(r, ai), baseline_bytes(r, ai) / 1048576.0);
        fprintf(f, "### Uncompressed models\n\n| training | test accuracy | after the fine-tuning budget of extra steps |\n|---|---|---|\n");
        for (i = 0; i < a->n_tr; i++) {
            fmt_acc(acc[0], sizeof acc[0], a->tr[i].acc, r->n_seeds);
            fmt_acc(acc[1], sizeof acc[1], a->tr[i].extra, r->n_seeds);
            fprintf(f, "| %s | %s | %s |\n", a->tr[i].name, acc[0], acc[1]);
        }
        fprintf(f,
                "\n### Compressed models\n\n| scheme | bits/weight | size (bytes) | size (MiB) | ratio | no noise | "
                "Quant-Noise proxy | Quant-Noise exact |\n|---|---|---|---|---|---|---|---|\n");
        for (row = 0; row < r->n_rows; row++) {
            if (a->size[row] <= 0)
                continue;
            for (col = 0; col < FM_NCOLS; col++)
                fmt_acc(acc[col], sizeof acc[col], cell(r, ai, row, col), r->n_seeds);
            fprintf(f, "| %s | %.3g | %.0f | %.4f | ×%.1f | %s | %s | %s |\n", row_kind(r, row, b, sizeof b),
                    bits_per_weight(r, row), a->size[row], a->size[row] / 1048576.0,
                    baseline_bytes(r, ai) / a->size[row], acc[0], acc[1], acc[2]);
        }
        analysis(r, ai, f);
    }
}

int fm_report_write(const fm_results *r, const fm_report_info *info, const char *path, FILE *out)
{
    char tmp[4200];
    FILE *f;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        perror(tmp);
        return -1;
    }
    write_tables(r, info, f);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        remove(tmp);
        return -1;
    }
    if (out)
        write_tables(r, info, out);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* plot                                                                                           */

enum { PW = 720, PH = 420, ML = 70, MR = 190, MT = 40, MB = 55 };

int fm_plot_write(const fm_results *r, const char *path)
{
    static const char *color[FM_NCOLS] = {"#444444", "#1f77b4", "#d62728"};
    static const char *label[FM_NCOLS] = {"no noise", "Quant-Noise proxy", "Quant-Noise exact"};
    char tmp[4200];
    FILE *f;
    int ai, row, col, i, j;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f) {
        perror(tmp);
        return -1;
    }
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            PW, PH * r->n_archs);
    for (ai = 0; ai < r->n_archs; ai++) {
        const arch_res *a = &r->a[ai];
        double xmin = 1e300, xmax = 0, ymin = 1, ymax = 0;
        int oy = PH * ai, pw = PW - ML - MR, ph = PH - MT - MB;
        for (row = 0; row < r->n_rows; row++)
            for (col = 0; col < FM_NCOLS; col++) {
                double v = cell_mean(r, ai, row, col);
                if (isnan(v) || a->size[row] <= 0)
                    continue;
                xmin = a->size[row] < xmin ? a->size[row] : xmin;
                xmax = a->size[row] > xmax ? a->size[row] : xmax;
                ymin = v < ymin ? v : ymin;
                ymax = v > ymax ? v : ymax;
            }
        for (i = 0; i < a->n_tr; i++) {
            double v = mean_of(a->tr[i].acc, r->n_seeds);
            if (!isnan(v))
                ymax = v > ymax ? v : ymax;
        }
        if (xmax <= 0)
            continue;
        xmax = baseline_bytes(r, ai) > xmax ? baseline_bytes(r, ai) : xmax;
        xmin = pow(10, floor(log10(xmin)));
        xmax = pow(10, ceil(log10(xmax)));
        ymin = floor(ymin * 20) / 20;
        ymax = ceil(ymax * 20) / 20;
        if (ymax <= ymin)
            ymax = ymin + 0.05;
#define PX(v) (ML + (log10(v) - log10(xmin)) / (log10(xmax) - log10(xmin)) * pw)
#define PY(v) (oy + MT + (ymax - (v)) / (ymax - ymin) * ph)
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\">%s: test accuracy against compressed size</text>\n", ML,
                oy + 22, a->name);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#999\"/>\n", ML, oy + MT,
                pw, ph);
        for (i = (int)floor(log10(xmin)); i <= (int)ceil(log10(xmax)); i++) {
            double x = PX(pow(10, i));
            fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eee\"/>\n", x, oy + MT, x,
                    oy + MT + ph);
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">10^%d</text>\n", x, oy + MT + ph + 16, i);
        }
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">compressed size (bytes, log scale)</text>\n",
                ML + pw / 2, oy + MT + ph + 36);
        for (j = 0; j <= 10; j++) {
            double v = ymin + (ymax - ymin) * j / 10.0, y = PY(v);
            fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eee\"/>\n", ML, y, ML + pw, y);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n", ML - 6, y + 4, 100 * v);
        }
        fprintf(f, "<text x=\"16\" y=\"%d\" transform=\"rotate(-90 16 %d)\" text-anchor=\"middle\">test accuracy (%%)</text>\n",
                oy + MT + ph / 2, oy + MT + ph / 2);
        /* the uncompressed no-noise model */
        {
            const trained *t = tr_find(r, ai, "none");
            double v = t ? mean_of(t->acc, r->n_seeds) : NAN;
            if (!isnan(v)) {
                fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", PX(baseline_bytes(r, ai)), PY(v),
                        color[0]);
                fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#444\" stroke-dasharray=\"2 3\"/>\n",
                        ML, PY(v), ML + pw, PY(v));
            }
        }
        /* one curve per training: staged iPQ points + int4 + int8, by size; one-shot iPQ dashed */
        for (col = 0; col < FM_NCOLS; col++) {
            int kind;
            for (kind = 0; kind < 2; kind++) {
                int idx[64], n = 0;
                for (row = 0; row < r->n_rows; row++) {
                    int k = row < FM_ROW_IPQ0 ? -1 : (row - FM_ROW_IPQ0) % 3;
                    if ((kind == 0 && (k == 1 || k == -1)) || (kind == 1 && k == 0))
                        if (!isnan(cell_mean(r, ai, row, col)) && a->size[row] > 0)
                            idx[n++] = row;
                }
                for (i = 1; i < n; i++)
                    for (j = i; j > 0 && a->size[idx[j]] < a->size[idx[j - 1]]; j--) {
                        int t = idx[j];
                        idx[j] = idx[j - 1];
                        idx[j - 1] = t;
                    }
                if (n == 0)
                    continue;
                /* the line is the frontier: the best accuracy at or below each size */
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\"%s points=\"", color[col],
                        kind ? "1" : "2", kind ? " stroke-dasharray=\"5 4\"" : "");
                {
                    double best = -1.0;
                    for (i = 0; i < n; i++) {
                        double v = cell_mean(r, ai, idx[i], col);
                        if (v <= best)
                            continue;
                        best = v;
                        fprintf(f, "%.1f,%.1f ", PX(a->size[idx[i]]), PY(v));
                    }
                }
                fprintf(f, "\"/>\n");
                for (i = 0; i < n; i++)
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%s\" fill=\"%s\"/>\n", PX(a->size[idx[i]]),
                            PY(cell_mean(r, ai, idx[i], col)), kind ? "2" : "3", color[col]);
            }
            fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\"/>\n", ML + pw + 12,
                    oy + MT + 10 + 20 * col, ML + pw + 36, oy + MT + 10 + 20 * col, color[col]);
            fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", ML + pw + 42, oy + MT + 14 + 20 * col, label[col]);
        }
        fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#444\" stroke-dasharray=\"5 4\"/>\n",
                ML + pw + 12, oy + MT + 80, ML + pw + 36, oy + MT + 80);
        fprintf(f, "<text x=\"%d\" y=\"%d\">iPQ one-shot</text>\n", ML + pw + 42, oy + MT + 84);
        fprintf(f, "<text x=\"%d\" y=\"%d\">dots: every model;</text>\n", ML + pw + 12, oy + MT + 104);
        fprintf(f, "<text x=\"%d\" y=\"%d\">solid: best at or below</text>\n", ML + pw + 12, oy + MT + 120);
        fprintf(f, "<text x=\"%d\" y=\"%d\">each size (staged+ft</text>\n", ML + pw + 12, oy + MT + 136);
        fprintf(f, "<text x=\"%d\" y=\"%d\">iPQ, int4, int8)</text>\n", ML + pw + 12, oy + MT + 152);
        fprintf(f, "<text x=\"%d\" y=\"%d\">dotted: fp32, no noise</text>\n", ML + pw + 12, oy + MT + 172);
#undef PX
#undef PY
    }
    fprintf(f, "</svg>\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        remove(tmp);
        return -1;
    }
    return 0;
}
