/*
 * act.h: the activations and their derivatives, shared by the CPU kernels
 * (backend_cpu.c and the convolution paths) so every path computes them
 * identically. d/dx from the output where the maths allows it (relu, tanh,
 * sigmoid), from the input for gelu.
 */
#ifndef DS_ACT_H
#define DS_ACT_H

#include <math.h>

#include "backend.h"

/* The CUDA backend compiles the same functions for the device. */
#ifdef __CUDACC__
#define DS_ACT_HD_ __host__ __device__ static inline
#else
#define DS_ACT_HD_ static inline
#endif

DS_ACT_HD_ float ds_act_fwd(enum ds_act act, float x)
{
    switch (act) {
    case DS_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case DS_ACT_TANH: return tanhf(x);
    case DS_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case DS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

/* x: the pre-activation (read by gelu only), y: the output. */
DS_ACT_HD_ float ds_act_grad(enum ds_act act, float x, float y)
{
    switch (act) {
    case DS_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case DS_ACT_TANH: return 1.0f - y * y;
    case DS_ACT_SIGMOID: return y * (1.0f - y);
    case DS_ACT_GELU: {
        /* Phi(x) + x * phi(x) */
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
        return cdf + x * pdf;
    }
    default: return 1.0f;
    }
}

#undef DS_ACT_HD_

#endif
