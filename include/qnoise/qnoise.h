/*
 * libqnoise: Quant-Noise training and extreme model compression for C and C++.
 * SPDX-License-Identifier: MIT
 *
 * qnoise.h: the umbrella header; include this one.
 */
#ifndef QNOISE_QNOISE_H
#define QNOISE_QNOISE_H

#include <qnoise/common.h>
#include <qnoise/ipq.h>
#include <qnoise/kernels.h>
#include <qnoise/layer.h>
#include <qnoise/pq.h>
#include <qnoise/qtensor.h>
#include <qnoise/quant.h>
#include <qnoise/rng.h>

#endif /* QNOISE_QNOISE_H */
