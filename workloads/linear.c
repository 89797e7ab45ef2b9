/*
 * linear.c: the two linear-model workloads, a Linear(dim, 1) layer on
 * Gaussian inputs x ~ N(0, I):
 *   linreg  y = w*.x + b* + noise * eps, w*, b*, eps ~ N(0, 1); MSE loss;
 *           the optimum (ridge under --l2) by one Cholesky solve.
 *   logreg  labels 1[w*.x > 0] for a unit w*, points with |w*.x| < margin
 *           rejected (a chosen margin), then a fraction --label-noise of the
 *           labels flipped (nearly separable, so the optimum is finite);
 *           BCE-with-logits; the optimum by Newton's method. Metric: accuracy.
 * Both optima are for the float32 data the run trains on, in double.
 */
#include "dataset.h"
#include "synthetic.h"
#include "../core/philox.h"

#include <math.h>
#include <string.h>

enum { LINREG = 0, LOGREG = 1 };

/* Fills split `split` (0 train, 1 eval) of the data; row r of a split is
 * the same point whatever the split's size. */
static void gen_rows(int kind, const struct ds_workload_args *a, const double *w, double b,
                     int split, struct ds_dataset *d)
{
    int dim = (int)a->dim;
    /* logreg draws up to 4096 candidates per row to meet the margin */
    const uint64_t tries = kind == LOGREG ? 4096 : 1;
    const uint32_t sx = ds_syn_stream(DS_SYN_X, split);
    for (int64_t r = 0; r < d->n; r++) {
        float *x = d->x + (size_t)r * dim;
        double z = 0.0;
        for (uint64_t t = 0; t < tries; t++) {
            z = 0.0;
            for (int j = 0; j < dim; j++) {
                /* < 2^30 rows x 2^12 tries x 2^17 dims: fits in 64 bits */
                uint64_t k = ((uint64_t)r * tries + t) * (uint64_t)dim + (uint64_t)j;
                x[j] = (float)ds_rng_normal(a->seed, sx, k);
                z += (double)x[j] * w[j];
            }
            if (kind == LINREG || fabs(z) >= a->margin) break;
        }
        if (kind == LINREG) {
            double eps = ds_rng_normal(a->seed, ds_syn_stream(DS_SYN_NOISE, split), (uint64_t)r);
            d->y[r] = (float)(z + b + a->noise * eps);
        } else {
            int label = z > 0.0;
            if (ds_rng_uniform(a->seed, ds_syn_stream(DS_SYN_FLIP, split), (uint64_t)r) < a->label_noise)
                label = !label;
            d->y[r] = (float)label;
        }
    }
}

static ds_status linear_create(int kind, const struct ds_workload_args *a, struct ds_backend *be,
                               struct ds_task *t, struct ds_err *err)
{
    memset(t, 0, sizeof *t);
    const char *name = kind == LINREG ? "linreg" : "logreg";
    if (a->dim < 1 || a->dim > 100000)
        return ds_err_set(err, DS_ERR_USAGE, "--dim %ld: %s needs 1..100000", a->dim, name);
    if (a->n_train < 1 || a->n_eval < 1)
        return ds_err_set(err, DS_ERR_USAGE, "--n-train %ld --n-eval %ld: %s needs at least 1 of each", a->n_train, a->n_eval, name);
    if (kind == LOGREG && !(a->margin >= 0.0 && a->margin <= 3.0))
        return ds_err_set(err, DS_ERR_USAGE, "--margin %g: must be in [0, 3]", a->margin);
    if (kind == LOGREG && !(a->label_noise >= 0.0 && a->label_noise < 0.5))
        return ds_err_set(err, DS_ERR_USAGE, "--label-noise %g: must be in [0, 0.5)", a->label_noise);
    int dim = (int)a->dim;
    double *w = DS_XCALLOC((size_t)dim, sizeof *w);
    double norm = 0.0;
    for (int j = 0; j < dim; j++) {
        w[j] = ds_rng_normal(a->seed, ds_syn_stream(DS_SYN_TRUTH, 0), (uint64_t)j);
        norm += w[j] * w[j];
    }
    if (kind == LOGREG)
        for (int j = 0; j < dim; j++) w[j] /= sqrt(norm);
    double b = kind == LINREG ? ds_rng_normal(a->seed, ds_syn_stream(DS_SYN_TRUTH, 0), (uint64_t)dim) : 0.0;

    struct ds_dataset train, eval;
    ds_status st = ds_dataset_alloc(&train, a->n_train, dim, 1, 0, err);
    if (st == DS_OK) st = ds_dataset_alloc(&eval, a->n_eval, dim, 1, 0, err);
    if (st != DS_OK) {
        ds_dataset_free(&train);
        free(w);
        return st;
    }
    gen_rows(kind, a, w, b, 0, &train);
    gen_rows(kind, a, w, b, 1, &eval);
    free(w);

    /* Optimum before the datasets move into the task. */
    /* The optimum needs (dim+1)^2 doubles and O(n dim^2) work per Newton
     * step: above DS_SYN_OPTIMUM_MAX_DIM it is not computed (and the run
     * reports no suboptimality). */
    double *theta = DS_XCALLOC((size_t)dim + 1, sizeof *theta);
    double f_star = 0.0, mu = 0.0, L = 0.0;
    int found = a->optimum_known && dim <= DS_SYN_OPTIMUM_MAX_DIM &&
                ds_syn_linear_optimum(kind, train.n, dim, train.x, train.y, a->l2, a->decay_bias,
                                      theta, &f_star, &mu, &L) == 0;

    struct ds_layer_spec layer = {.kind = DS_LAYER_LINEAR, .units = 1};
    struct ds_supervised_spec spec = {
        .layers = &layer,
        .n_layers = 1,
        .loss = kind == LINREG ? DS_LOSS_MSE : DS_LOSS_BCE,
        .metric = kind == LINREG ? "mse" : "accuracy",
        .metric_higher_better = kind == LOGREG,
        .max_batch = a->max_batch,
        .seed = a->seed,
        .eval_limit = a->eval_limit,
    };
    st = ds_supervised_create(be, &spec, &train, &eval, t, err);
    if (st != DS_OK) {
        ds_dataset_free(&train);
        ds_dataset_free(&eval);
        free(theta);
        return st;
    }
    if (found) {
        t->has_optimum = 1;
        t->x_star = theta; /* [w (dim), b]: the flat order of "0.weight", "0.bias" */
        t->f_star = f_star;
        t->mu = mu;
        t->L = L;
    } else {
        free(theta);
    }
    const char *note = dim > DS_SYN_OPTIMUM_MAX_DIM ? "; optimum not computed above dim " DS_SYN_OPTIMUM_MAX_DIM_TEXT : "";
    if (kind == LINREG)
        snprintf(t->description, sizeof t->description,
                 "linreg: dim %d, %lld train / %lld eval samples, label noise std %g%s", dim,
                 (long long)a->n_train, (long long)a->n_eval, a->noise, note);
    else
        snprintf(t->description, sizeof t->description,
                 "logreg: dim %d, %lld train / %lld eval samples, margin %g, %g of labels flipped%s",
                 dim, (long long)a->n_train, (long long)a->n_eval, a->margin, a->label_noise, note);
    return DS_OK;
}

static ds_status linreg_create(const struct ds_workload_args *a, struct ds_backend *be,
                               struct ds_task *t, struct ds_err *err)
{
    return linear_create(LINREG, a, be, t, err);
}

static ds_status logreg_create(const struct ds_workload_args *a, struct ds_backend *be,
                               struct ds_task *t, struct ds_err *err)
{
    return linear_create(LOGREG, a, be, t, err);
}

const struct ds_workload ds_workload_linreg = {
    .name = "linreg",
    .summary = "linear regression, MSE; --dim, --n-train, --n-eval, --noise (label noise std); ridge optimum",
    .default_batch = 32,
    .default_epochs = 20,
    .default_dim = 20,
    .default_noise = 0.5,
    .default_init = DS_INIT_DEFAULT,
    .create = linreg_create,
};

const struct ds_workload ds_workload_logreg = {
    .name = "logreg",
    .summary = "binary logistic regression, BCE; --dim, --margin, --label-noise; optimum by Newton",
    .default_batch = 32,
    .default_epochs = 20,
    .default_dim = 20,
    .default_noise = 0.0,
    .default_init = DS_INIT_DEFAULT,
    .create = logreg_create,
};
