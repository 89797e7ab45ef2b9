/*
 * adam.c: Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019) as
 * torch.optim.Adam / AdamW compute them:
 *   g <- g + l2 p (+ l1 sign p)                 (Adam's weight_decay)
 *   p <- p (1 - lr wd)                          (AdamW's weight_decay)
 *   m <- b1 m + (1 - b1) g ;  v <- b2 v + (1 - b2) g^2
 *   vmax <- max(vmax, v)  (amsgrad; then v below means vmax)
 *   p <- p - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * AdamW is Adam with decoupled decay; it differs only by its default wd 0.01.
 * Slots: 0 m, 1 v, 2 vmax (amsgrad).
 */
#include "optim.h"

#include <math.h>
#include <string.h>

static void adam_defaults(struct ds_optim_hyper *h)
{
    memset(h, 0, sizeof *h);
    h->lr = 1e-3f;
    h->beta1 = 0.9f;
    h->beta2 = 0.999f;
    h->eps = 1e-8f;
}

static void adamw_defaults(struct ds_optim_hyper *h)
{
    adam_defaults(h);
    h->wd = 1e-2f;
}

static int adam_slots(const struct ds_optim_hyper *h) { return h->amsgrad ? 3 : 2; }

/* Reference: the textbook form with bias-corrected moments. */
static void adam_step_ref(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                          size_t n, float *p, const float *g, float *const *state)
{
    float *m = state[0], *v = state[1];
    double bc1 = 1.0 - pow((double)h->beta1, (double)s->t);
    double bc2 = 1.0 - pow((double)h->beta2, (double)s->t);
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + s->l2 * p[i] + s->l1 * (float)((p[i] > 0.0f) - (p[i] < 0.0f));
        p[i] *= 1.0f - s->lr * s->wd;
        m[i] = h->beta1 * m[i] + (1.0f - h->beta1) * gi;
        v[i] = h->beta2 * v[i] + (1.0f - h->beta2) * gi * gi;
        float vv = v[i];
        if (h->amsgrad) {
            state[2][i] = fmaxf(state[2][i], v[i]);
            vv = state[2][i];
        }
        float mhat = (float)(m[i] / bc1);
        float vhat = (float)(vv / bc2);
        p[i] -= s->lr * mhat / (sqrtf(vhat) + h->eps);
    }
}

static void adam_step(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                      float *restrict p, const float *restrict g, float *const *state)
{
    float *restrict m = state[0];
    float *restrict v = state[1];
    const float b1 = h->beta1, b2 = h->beta2, eps = h->eps, l2 = s->l2, l1 = s->l1;
    const float decay = 1.0f - s->lr * s->wd;
    const float step_size = (float)((double)s->lr / (1.0 - pow((double)b1, (double)s->t)));
    const float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, (double)s->t));
    if (!h->amsgrad) {
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float gi = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
            float mi = b1 * m[i] + (1.0f - b1) * gi;
            float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
            m[i] = mi;
            v[i] = vi;
            p[i] = p[i] * decay - step_size * (mi / (sqrtf(vi) / bc2_sqrt + eps));
        }
        return;
    }
    float *restrict vmax = state[2];
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float gi = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        float vm = fmaxf(vmax[i], vi);
        m[i] = mi;
        v[i] = vi;
        vmax[i] = vm;
        p[i] = p[i] * decay - step_size * (mi / (sqrtf(vm) / bc2_sqrt + eps));
    }
}

const struct ds_optim_ops ds_optim_adam = {
    .name = "adam",
    .summary = "Adam; --beta1 --beta2 --eps --amsgrad; --l2 is torch's weight_decay",
    .defaults = adam_defaults,
    .n_slots = adam_slots,
    .step_ref = adam_step_ref,
    .step = adam_step,
};

const struct ds_optim_ops ds_optim_adamw = {
    .name = "adamw",
    .summary = "AdamW: Adam with decoupled weight decay --wd (default 0.01)",
    .defaults = adamw_defaults,
    .n_slots = adam_slots,
    .step_ref = adam_step_ref,
    .step = adam_step,
};
