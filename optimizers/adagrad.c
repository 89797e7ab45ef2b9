/*
 * adagrad.c: Adagrad (Duchi, Hazan & Singer, 2011) as torch.optim.Adagrad:
 *   g <- g + l2 p (+ l1 sign p) ;  p <- p (1 - lr wd)
 *   clr <- lr / (1 + (t - 1) lr_decay)
 *   s <- s + g^2
 *   p <- p - clr g / (sqrt(s) + eps)
 * Slot 0: s, which starts at --initial-accumulator (default 0).
 */
#include "optim.h"

#include <math.h>
#include <string.h>

static void adagrad_defaults(struct ds_optim_hyper *h)
{
    memset(h, 0, sizeof *h);
    h->lr = 1e-2f;
    h->eps = 1e-10f;
}

static int adagrad_slots(const struct ds_optim_hyper *h)
{
    (void)h;
    return 1;
}

static float adagrad_initial(const struct ds_optim_hyper *h, int slot)
{
    (void)slot;
    return h->initial_accumulator;
}

static void adagrad_step_ref(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                             size_t n, float *p, const float *g, float *const *state)
{
    float *sum = state[0];
    float clr = s->lr / (1.0f + (float)(s->t - 1) * h->lr_decay);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + s->l2 * p[i] + s->l1 * (float)((p[i] > 0.0f) - (p[i] < 0.0f));
        p[i] *= 1.0f - s->lr * s->wd;
        sum[i] += gi * gi;
        p[i] -= clr * gi / (sqrtf(sum[i]) + h->eps);
    }
}

static void adagrad_step(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                         size_t n, float *restrict p, const float *restrict g,
                         float *const *state)
{
    float *restrict sum = state[0];
    const float clr = s->lr / (1.0f + (float)(s->t - 1) * h->lr_decay);
    const float eps = h->eps, l2 = s->l2, l1 = s->l1, decay = 1.0f - s->lr * s->wd;
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
        float si = sum[i] + gi * gi;
        sum[i] = si;
        p[i] = p[i] * decay - clr * gi / (sqrtf(si) + eps);
    }
}

const struct ds_optim_ops ds_optim_adagrad = {
    .name = "adagrad",
    .summary = "Adagrad; --lr-decay --eps --initial-accumulator (torch.optim.Adagrad)",
    .defaults = adagrad_defaults,
    .n_slots = adagrad_slots,
    .initial_value = adagrad_initial,
    .step_ref = adagrad_step_ref,
    .step = adagrad_step,
};
