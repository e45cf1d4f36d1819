/*
 * Fashion-MNIST loader for the qnoise-fmnist demo: gzip-compressed IDX files
 * (Debian's dataset-fashion-mnist), read with zlib.
 * SPDX-License-Identifier: MIT
 */
#ifndef FMNIST_DATA_H
#define FMNIST_DATA_H

#include <stddef.h>
#include <stdint.h>

enum { FM_SIDE = 28, FM_PIXELS = 28 * 28, FM_CLASSES = 10 };

/* Images as normalised floats (n x 784, (v/255 - mean) / std) and labels 0..9. */
typedef struct fm_data {
    size_t n;
    float *x;
    uint8_t *y;
} fm_data;

/* Default location of the IDX files. */
#define FM_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"

/*
 * Load the first @p limit (0: all) samples of the split "train" or "t10k" from
 * dir/<split>-images-idx3-ubyte.gz and dir/<split>-labels-idx1-ubyte.gz.
 * Returns 0, or -1 with a message in err (missing file, bad magic, wrong
 * dimensions, truncated or corrupt data, label out of range); *out is then empty.
 */
int fm_load(const char *dir, const char *split, size_t limit, fm_data *out, char *err, size_t errcap);

/* Free the arrays of @p d (and zero it). */
void fm_free(fm_data *d);

#endif
