/*
 * conv_winograd.h: 5x5 stride-1 convolutions on the CPU by Winograd's
 * minimal filtering F(2x2, 5x5). The CPU backend's conv ops call these for
 * the shapes ds_wino_fits accepts and fall back to im2col + GEMM otherwise;
 * the arguments mean what they mean for the backend's conv ops (backend.h),
 * with the thread count passed explicitly.
 */
#ifndef DS_CONV_WINOGRAD_H
#define DS_CONV_WINOGRAD_H

#include <stddef.h>

#include "backend.h"

/* 1 when the Winograd path handles this convolution: a 5x5 kernel at
 * stride 1, input channels a multiple of 8 (its vectors run over 8 channels),
 * at least 8 output channels and an output of at least 2x2. */
int ds_wino_fits(const struct ds_window *g, int out_c);
/* Floats of workspace for g (with the largest batch) at `threads` threads. */
size_t ds_wino_workspace(const struct ds_window *g, int out_c, int threads);
void ds_wino_forward(int threads, const struct ds_window *g, int out_c, const float *x,
                     const float *W, const float *bias, enum ds_act act, float *y, float *pre,
                     float *ws);
/* Deterministic for any thread count: the batch is cut into chunks that do
 * not depend on it, and the chunks' weight-gradient partials are added in
 * chunk order. */
void ds_wino_backward(int threads, const struct ds_window *g, int out_c, enum ds_act act,
                      const float *x, const float *W, const float *y, const float *pre,
                      const float *dy, float *dW, float *db, float *dx, int accumulate,
                      float *ws);

#endif
