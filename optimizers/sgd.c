/*
 * sgd.c: gradient descent. `sgd` is PyTorch's torch.optim.SGD:
 *   g <- g + l2 p (+ l1 sign p)
 *   b <- g                          at the first step
 *   b <- mu b + (1 - dampening) g   after
 *   d <- g + mu b  (nesterov)  or  d <- b  (momentum)  or  d <- g  (mu = 0)
 *   p <- p (1 - lr wd) - lr d
 * `gd` is the same rule with the batch forced to the whole training set
 * (full-batch gradient descent; with momentum it is Polyak's heavy ball).
 */
#include "optim.h"

#include <string.h>

static void sgd_defaults(struct ds_optim_hyper *h)
{
    memset(h, 0, sizeof *h);
    h->lr = 0.1f;
}

static int sgd_slots(const struct ds_optim_hyper *h) { return h->momentum != 0.0f ? 1 : 0; }

static void sgd_step_ref(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                         float *p, const float *g, float *const *state)
{
    for (size_t i = 0; i < n; i++) {
        float d = g[i] + s->l2 * p[i] + s->l1 * (float)((p[i] > 0.0f) - (p[i] < 0.0f));
        if (h->momentum != 0.0f) {
            float *buf = state[0];
            if (s->t == 1)
                buf[i] = d;
            else
                buf[i] = h->momentum * buf[i] + (1.0f - h->dampening) * d;
            d = h->nesterov ? d + h->momentum * buf[i] : buf[i];
        }
        p[i] = p[i] * (1.0f - s->lr * s->wd) - s->lr * d;
    }
}

static void sgd_step(const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                     float *restrict p, const float *restrict g, float *const *state)
{
    const float lr = s->lr, l2 = s->l2, l1 = s->l1, decay = 1.0f - s->lr * s->wd;
    const float mu = h->momentum, damp = 1.0f - h->dampening;
    if (mu == 0.0f) {
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            float d = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
            p[i] = p[i] * decay - lr * d;
        }
        return;
    }
    /* The branches become coefficients so the loop has no control flow and
     * vectorizes; each gives the same floats as the reference's branch (the
     * buffer is zero at t = 1, so 0 * buf + 1 * d = d exactly). */
    float *restrict buf = state[0];
    const int first = s->t == 1;
    const float cb = first ? 0.0f : mu, cd = first ? 1.0f : damp;
    const float ud = h->nesterov ? 1.0f : 0.0f, ub = h->nesterov ? mu : 1.0f;
#pragma omp parallel for simd schedule(static) if (n > DS_OPTIM_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        float d = ds_optim_coupled_grad_(g[i], p[i], l2, l1);
        float b = cb * buf[i] + cd * d;
        buf[i] = b;
        p[i] = p[i] * decay - lr * (ud * d + ub * b);
    }
}

const struct ds_optim_ops ds_optim_sgd = {
    .name = "sgd",
    .summary = "minibatch SGD; --momentum, --dampening, --nesterov (torch.optim.SGD)",
    .full_batch = 0,
    .defaults = sgd_defaults,
    .n_slots = sgd_slots,
    .step_ref = sgd_step_ref,
    .step = sgd_step,
};

const struct ds_optim_ops ds_optim_gd = {
    .name = "gd",
    .summary = "full-batch gradient descent (the batch is the training set); --momentum: heavy ball",
    .full_batch = 1,
    .defaults = sgd_defaults,
    .n_slots = sgd_slots,
    .step_ref = sgd_step_ref,
    .step = sgd_step,
};
