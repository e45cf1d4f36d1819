/*
 * Results of the qnoise-fmnist demo: the table in the paper's form
 * (results.md) and the plot of accuracy against size (results.svg).
 * SPDX-License-Identifier: MIT
 */
#ifndef FMNIST_REPORT_H
#define FMNIST_REPORT_H

#include <stddef.h>
#include <stdio.h>

/* Columns: the training of the model that was compressed. */
enum { FM_COL_NONE = 0, FM_COL_PROXY = 1, FM_COL_EXACT = 2, FM_NCOLS = 3 };

/* Fixed rows; the iPQ rows follow (3 per operating point: one-shot, staged, staged + int8 codebooks). */
enum { FM_ROW_INT8 = 0, FM_ROW_INT4 = 1, FM_ROW_IPQ0 = 2 };

typedef struct fm_results fm_results;

/* Room for n_archs x n_seeds, the sweep's linear block sizes and centroid counts. */
fm_results *fm_results_create(int n_archs, int n_seeds, const size_t *blocks, int n_blocks, const size_t *ks, int n_ks);
void fm_results_destroy(fm_results *r);

/* Name and parameter count of architecture ai. */
void fm_results_set_arch(fm_results *r, int ai, const char *name, size_t params);

/* First row (one-shot) of the iPQ point (block index bi, K index ki). */
int fm_results_ipq_row(const fm_results *r, int bi, int ki);

/* Accuracy of a cell for seed (1-based); 0 or -1 on a bad index. */
int fm_results_set(fm_results *r, int ai, int row, int col, int seed, double acc);

/* Exact compressed bytes of a row. */
void fm_results_set_size(fm_results *r, int ai, int row, double bytes);

/* Uncompressed accuracy of a trained variant, and after the fine-tuning budget of extra steps. */
void fm_results_set_trained(fm_results *r, int ai, const char *variant, int seed, double acc);
void fm_results_set_extra(fm_results *r, int ai, const char *variant, int seed, double acc);

/* Lowest uncompressed accuracy of any trained model (1.0 when none). */
double fm_results_min_trained(const fm_results *r);

typedef struct fm_report_info {
    const char *mode, *version, *recipe;
    size_t train_n, test_n, ft_steps, batch, noise_k;
    int epochs;
    float p;
    double seconds;
} fm_report_info;

/* Write results.md to path and the same tables to out (may be NULL). 0 or -1 (message on stderr). */
int fm_report_write(const fm_results *r, const fm_report_info *info, const char *path, FILE *out);

/* Write the SVG plot (one panel per architecture). 0 or -1. */
int fm_plot_write(const fm_results *r, const char *path);

#endif
