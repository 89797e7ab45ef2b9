/*
 * rmsprop.c: RMSprop (Hinton's lecture 6e; Graves 2013 for the centred form)
 * as torch.optim.RMSprop computes it:
 *   g <- g + l2 p (+ l1 sign p) ;  p <- p (1 - lr wd)
 *   s <- a s + (1 - a) g^2
 *   centred:  c <- a c + (1 - a) g ;  den <- sqrt(s - c^2) + eps
 *   else:     den <- sqrt(s) + eps
 *   momentum: b <- mu b + g / den ;  p <- p - lr b
 *   else:     p <- p - lr g / den
 * Slots: 0 s, then c (centred), then b (momentum).
 */
#include "optim.h"

#include <math.h>
#include <string.h>

static void rmsprop_defaults(struct ds_optim_hyper *h)
{
    memset(h, 0, sizeof *h);
    h->lr = 1e-2f;
    h->alpha = 0.99f;
    h->eps = 1e-8f;
}

static int rmsprop_slots(const struct ds_optim_hyper *h)
{
    return 1 + (h->centered ? 1 : 0) + (h->momentum > 0.0f ? 1 : 0);
}

static void rmsprop_step_ref(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                             size_t n, float *p, const float *g, float *const *state)
{
    float *sq = state[0];
    float *ga = h->centered ? state[1] : NULL;
    float *buf = h->momentum > 0.0f ? state[h->centered ? 2 : 1] : NULL;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + s->l2 * p[i] + s->l1 * (float)((p[i] > 0.0f) - (p[i] < 0.0f));
        p[i] *= 1.0f - s->lr * s->wd;
        sq[i] = h->alpha * sq[i] + (1.0f - h->alpha) * gi * gi;
        float var = sq[i];
        if (ga) {
            ga[i] = h->alpha * ga[i] + (1.0f - h->alpha) * gi;
            var -= ga[i] * ga[i];
        }
        float den = sqrtf(var) + h->eps;
        if (buf) {
            buf[i] = h->momentum * buf[i] + gi / den;
            p[i] -= s->lr * buf[i];
        } else {
            p[i] -= s->lr * gi / den;
        }
    }
}

static void rmsprop_step(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                         size_t n, float *restrict p, const float *restrict g, float *const *state)
{
    float *restrict sq = state[0];
    float *restrict ga = h->centered ? state[1] : NULL;
    float *restrict buf = h->momentum > 0.0f ? state[h->centered ? 2 : 1] : NULL;
    const float a = h->alpha, eps = h->eps, lr = s->lr, l2 = s->l2, l1 = s->l1;
    const float decay = 1.0f - s->lr * s->wd, mu = h->momentum;
    if (!ga && !buf) {
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float gi = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
            float si = a * sq[i] + (1.0f - a) * gi * gi;
            sq[i] = si;
            p[i] = p[i] * decay - lr * gi / (sqrtf(si) + eps);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (n > DS_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
        float si = a * sq[i] + (1.0f - a) * gi * gi;
        sq[i] = si;
        float var = si;
        if (ga) {
            float ci = a * ga[i] + (1.0f - a) * gi;
            ga[i] = ci;
            var = si - ci * ci;
        }
        float den = sqrtf(var) + eps;
        float pi = p[i] * decay;
        if (buf) {
            float b = mu * buf[i] + gi / den;
            buf[i] = b;
            p[i] = pi - lr * b;
        } else {
            p[i] = pi - lr * gi / den;
        }
    }
}

const struct ds_optim_ops ds_optim_rmsprop = {
    .name = "rmsprop",
    .summary = "RMSprop; --alpha --eps --momentum --centered (torch.optim.RMSprop)",
    .defaults = rmsprop_defaults,
    .n_slots = rmsprop_slots,
    .step_ref = rmsprop_step_ref,
    .step = rmsprop_step,
};
