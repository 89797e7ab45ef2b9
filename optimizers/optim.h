/*
 * optim.h: the optimizer interface. An optimizer is a pure function over flat
 * float32 arrays: step(hyper, scalars, n, params, grads, state slots). Every
 * optimizer has a scalar reference step (the textbook form of PyTorch's
 * documented algorithm, what tests compare against) and a fast CPU step
 * (threaded, SIMD-friendly); the CUDA backend adds its fused kernels later.
 *
 * Regularizers are fused into the step, in PyTorch's order:
 *   g <- g + l2*p + l1*sign(p)      (coupled: `weight_decay` of torch.optim)
 *   p <- p * (1 - lr*wd)            (decoupled: AdamW's rule, for every optimizer)
 * then the optimizer's own update with g. Gradient clipping by global norm is
 * applied by the trainer before the step (as clip_grad_norm_ before step()).
 */
#ifndef DS_OPTIM_H
#define DS_OPTIM_H

#include <stddef.h>

#define DS_OPTIM_MAX_SLOTS 4

/* Hyperparameters of every optimizer (each uses the fields it names). */
struct ds_optim_hyper {
    float lr;          /* base learning rate (the schedule scales it) */
    float momentum;    /* sgd, gd, rmsprop */
    float dampening;   /* sgd, gd */
    int nesterov;      /* sgd, gd */
    float beta1;       /* adam, adamw */
    float beta2;       /* adam, adamw */
    float eps;         /* adam, adamw, rmsprop, adagrad */
    int amsgrad;       /* adam, adamw */
    float alpha;       /* rmsprop smoothing constant */
    int centered;      /* rmsprop */
    float lr_decay;    /* adagrad */
    float initial_accumulator; /* adagrad */
    float l2, l1, wd;  /* regularizer strengths (see above) */
};

/* What changes from step to step, and from one parameter range to the next
 * (biases may be excluded from decay: their range gets l2 = l1 = wd = 0). */
struct ds_optim_scalars {
    float lr;    /* this step's learning rate, after the schedule */
    long t;      /* 1-based step count, for bias corrections */
    float l2, l1, wd;
};

typedef void (*ds_optim_step_fn)(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                                 size_t n, float *p, const float *g, float *const *state);

struct ds_optim_ops {
    const char *name;
    const char *summary;
    int full_batch;                                 /* gd: the batch is the whole training set */
    void (*defaults)(struct ds_optim_hyper *h);      /* PyTorch's defaults (lr: ours) */
    int (*n_slots)(const struct ds_optim_hyper *h);  /* state arrays, each n floats */
    /* The value every element of state slot `slot` starts at (NULL: zero);
     * one value per slot, so any backend can fill it where the state lives. */
    float (*initial_value)(const struct ds_optim_hyper *h, int slot);
    ds_optim_step_fn step_ref;
    ds_optim_step_fn step;
};

/* Registry. */
const struct ds_optim_ops *ds_optim_find(const char *name);
int ds_optim_count(void);
const struct ds_optim_ops *ds_optim_at(int i);

/* Implementations, one file per family. */
extern const struct ds_optim_ops ds_optim_gd, ds_optim_sgd, ds_optim_adam, ds_optim_adamw,
    ds_optim_rmsprop, ds_optim_adagrad;

/* Shared by the implementations: the coupled part of the regularizers. */
static inline float ds_optim_coupled_grad_(float g, float p, float l2, float l1)
{
    float sign = (p > 0.0f) - (p < 0.0f);
    return g + l2 * p + l1 * sign;
}

/* Threshold above which the fast steps split work over threads. */
#define DS_OPTIM_PAR_MIN 16384

#endif
