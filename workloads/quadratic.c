/*
 * quadratic.c: f(x) = 1/2 x^T A x - b^T x, x in R^dim.
 * A = Q diag(lambda) Q^T with lambda log-spaced from 1 down to 1/kappa (so
 * L = 1, mu = 1/kappa), Q a random rotation (QR of a Gaussian matrix) or the
 * identity under --rotate off; b ~ N(0, I). The optimum of f + l2/2 ||x||^2
 * solves (A + l2 I) x* = b, in double from the float32 A the run uses.
 * With --noise s the gradient is A x - b + s * xi, xi ~ N(0, I) fresh each
 * step (a stochastic quadratic, as DeepOBS's noisy quadratic). There is no
 * dataset: one "sample", batch 1, and eval_metric is the suboptimality.
 */
#include "npy.h"
#include "synthetic.h"
#include "workload.h"
#include "../core/philox.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

struct ds_quad {
    int n;
    float *A, *b;         /* backend */
    float *hA, *hb;       /* host copies (double-precision evaluation) */
    float *hx;            /* host scratch for x */
    double l2;
    double noise;
    uint64_t seed;
    struct ds_param_layout layout;
};

static double quad_value(const struct ds_quad *q, const float *x)
{
    /* 1/2 x^T A x - b^T x + l2/2 ||x||^2 in double */
    double f = 0.0;
    for (int i = 0; i < q->n; i++) {
        double ax = 0.0;
        const float *row = q->hA + (size_t)i * q->n;
        for (int j = 0; j < q->n; j++) ax += (double)row[j] * (double)x[j];
        f += 0.5 * (double)x[i] * ax - (double)q->hb[i] * (double)x[i] +
             0.5 * q->l2 * (double)x[i] * (double)x[i];
    }
    return f;
}

static double quad_loss_grad(struct ds_task *t, const int32_t *idx, int n,
                             const struct ds_pass *pass, float grad_scale)
{
    (void)idx;
    struct ds_quad *q = t->ctx;
    struct ds_backend *be = t->be;
    if (n == 0) { /* a rank without the one "sample" */
        be->ops->fill(be, t->grads, (size_t)q->n, 0.0f);
        return 0.0;
    }
    /* g = A x, f = 1/2 x.g - b.x, g -= b */
    be->ops->gemm(be, 0, 0, q->n, 1, q->n, 1.0f, q->A, q->n, t->params, 1, 0.0f, t->grads, 1);
    double f = 0.5 * be->ops->dot(be, (size_t)q->n, t->params, t->grads) -
               be->ops->dot(be, (size_t)q->n, q->b, t->params);
    be->ops->axpy(be, (size_t)q->n, -1.0f, q->b, t->grads);
    if (q->noise > 0.0)
        be->ops->add_normal(be, (size_t)q->n, t->grads, (float)q->noise, q->seed, DS_STREAM_NOISE,
                            pass->step * (uint64_t)q->n);
    float scale = grad_scale * (float)n;
    if (scale != 1.0f) be->ops->scale(be, (size_t)q->n, t->grads, scale);
    return f * (double)n;
}

static void quad_evaluate(struct ds_task *t, int split, double *loss, double *metric)
{
    (void)split;
    struct ds_quad *q = t->ctx;
    t->be->ops->download(t->be, q->hx, t->params, (size_t)q->n * sizeof(float));
    double f = quad_value(q, q->hx);
    *loss = f - 0.5 * q->l2 * t->be->ops->dot(t->be, (size_t)q->n, t->params, t->params);
    *metric = f - t->f_star;
}

static void quad_init(struct ds_task *t, enum ds_init_scheme scheme, uint64_t seed)
{
    struct ds_quad *q = t->ctx;
    /* zeros by default; "default"/"xavier" draw x0 ~ U(-1, 1) (there is no fan-in) */
    for (int i = 0; i < q->n; i++)
        q->hx[i] = scheme == DS_INIT_ZEROS ? 0.0f
                                           : 2.0f * ds_rng_uniform(seed, DS_STREAM_INIT, (uint64_t)i) - 1.0f;
    t->be->ops->upload(t->be, t->params, q->hx, (size_t)q->n * sizeof(float));
}

static ds_status quad_export(struct ds_task *t, const char *dir, struct ds_err *err)
{
    struct ds_quad *q = t->ctx;
    char path[4200];
    int64_t shape[2] = {q->n, q->n};
    snprintf(path, sizeof path, "%s/A.npy", dir);
    ds_status st = ds_npy_write(path, "<f4", 2, shape, q->hA, err);
    if (st != DS_OK) return st;
    snprintf(path, sizeof path, "%s/b.npy", dir);
    return ds_npy_write(path, "<f4", 1, shape, q->hb, err);
}

static void quad_destroy(struct ds_task *t)
{
    struct ds_quad *q = t->ctx;
    if (!q) return;
    t->be->ops->free(t->be, q->A);
    t->be->ops->free(t->be, q->b);
    t->be->ops->free(t->be, t->params);
    t->be->ops->free(t->be, t->grads);
    free(q->hA);
    free(q->hb);
    free(q->hx);
    ds_params_free(&q->layout);
    free(q);
    t->ctx = NULL;
}

static const struct ds_task_ops ds_quad_ops = {
    .loss_grad = quad_loss_grad,
    .evaluate = quad_evaluate,
    .init_params = quad_init,
    .export_data = quad_export,
    .destroy = quad_destroy,
};

static ds_status quad_create(const struct ds_workload_args *a, struct ds_backend *be,
                             struct ds_task *t, struct ds_err *err)
{
    memset(t, 0, sizeof *t);
    /* A is dense: 4096^2 floats are 64 MiB, and its optimum one Cholesky solve */
    if (a->dim < 1 || a->dim > 4096)
        return ds_err_set(err, DS_ERR_USAGE, "--dim %ld: quadratic needs 1..4096", a->dim);
    if (!(a->kappa >= 1.0))
        return ds_err_set(err, DS_ERR_USAGE, "--kappa %g: must be >= 1", a->kappa);
    int n = (int)a->dim;
    struct ds_quad *q = DS_XCALLOC(1, sizeof *q);
    q->n = n;
    q->l2 = a->l2;
    q->noise = a->noise > 0.0 ? a->noise : 0.0;
    q->seed = a->seed;
    q->hA = DS_XCALLOC((size_t)n * n, sizeof(float));
    q->hb = DS_XCALLOC((size_t)n, sizeof(float));
    q->hx = DS_XCALLOC((size_t)n, sizeof(float));

    /* lambda_i = kappa^(-i/(n-1)): 1 down to 1/kappa */
    double *lam = DS_XCALLOC((size_t)n, sizeof *lam);
    for (int i = 0; i < n; i++) lam[i] = n > 1 ? pow(a->kappa, -(double)i / (double)(n - 1)) : 1.0;
    if (a->rotate && n > 1) {
        double *Q = DS_XCALLOC((size_t)n * n, sizeof *Q);
        for (size_t k = 0; k < (size_t)n * n; k++)
            Q[k] = ds_rng_normal(a->seed, ds_syn_stream(DS_SYN_MATRIX, 0), k);
        ds_syn_orthogonal(n, Q);
        /* A = (Q diag(lambda)) Q^T by one GEMM, symmetrised exactly */
        double *QL = DS_XCALLOC((size_t)n * n, sizeof *QL), *Ad = DS_XCALLOC((size_t)n * n, sizeof *Ad);
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) QL[(size_t)i * n + k] = Q[(size_t)i * n + k] * lam[k];
        cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, n, n, 1.0, QL, n, Q, n, 0.0, Ad, n);
        for (int i = 0; i < n; i++)
            for (int j = i; j < n; j++)
                q->hA[(size_t)i * n + j] = q->hA[(size_t)j * n + i] =
                    (float)(0.5 * (Ad[(size_t)i * n + j] + Ad[(size_t)j * n + i]));
        free(QL);
        free(Ad);
        free(Q);
    } else {
        for (int i = 0; i < n; i++) q->hA[(size_t)i * n + i] = (float)lam[i];
    }
    for (int i = 0; i < n; i++)
        q->hb[i] = (float)ds_rng_normal(a->seed, ds_syn_stream(DS_SYN_TRUTH, 0), (uint64_t)i);

    int64_t shape[1] = {n};
    ds_params_add(&q->layout, "x", 1, shape, 0);
    t->ops = &ds_quad_ops;
    t->ctx = q;
    t->be = be;
    t->layout = &q->layout;
    t->n_train = 1;
    t->n_eval = 1;
    t->metric = "suboptimality";
    t->metric_higher_better = 0;
    snprintf(t->description, sizeof t->description,
             "quadratic: dim %d, kappa %g, %s eigenbasis, gradient noise %g", n, a->kappa,
             a->rotate ? "random" : "axis-aligned", q->noise);

    q->A = be->ops->alloc(be, (size_t)n * n * sizeof(float));
    q->b = be->ops->alloc(be, (size_t)n * sizeof(float));
    t->params = be->ops->alloc(be, (size_t)n * sizeof(float));
    t->grads = be->ops->alloc(be, (size_t)n * sizeof(float));
    if (!q->A || !q->b || !t->params || !t->grads) {
        free(lam);
        quad_destroy(t);
        return ds_err_set(err, DS_ERR_NOMEM, "out of memory for a quadratic of dim %d", n);
    }
    be->ops->upload(be, q->A, q->hA, (size_t)n * n * sizeof(float));
    be->ops->upload(be, q->b, q->hb, (size_t)n * sizeof(float));

    /* Optimum and curvature of f + l2/2 ||x||^2, from the float32 A. */
    double *H = DS_XCALLOC((size_t)n * n, sizeof *H);
    double *xs = DS_XCALLOC((size_t)n, sizeof *xs);
    for (size_t k = 0; k < (size_t)n * n; k++) H[k] = (double)q->hA[k];
    for (int i = 0; i < n; i++) H[(size_t)i * n + i] += a->l2, xs[i] = (double)q->hb[i];
    /* curvature of the exact A (the float32 A's eigenvalues differ by rounding) */
    t->mu = lam[n - 1] + a->l2;
    t->L = lam[0] + a->l2;
    if (a->optimum_known && ds_syn_spd_solve(n, H, xs) == 0) {
        t->has_optimum = 1;
        t->x_star = xs;
        double f = 0.0;
        for (int i = 0; i < n; i++) {
            double ax = 0.0;
            for (int j = 0; j < n; j++) ax += (double)q->hA[(size_t)i * n + j] * xs[j];
            f += 0.5 * xs[i] * ax - (double)q->hb[i] * xs[i] + 0.5 * a->l2 * xs[i] * xs[i];
        }
        t->f_star = f;
    } else {
        free(xs);
    }
    free(H);
    free(lam);
    return DS_OK;
}

const struct ds_workload ds_workload_quadratic = {
    .name = "quadratic",
    .summary = "1/2 x^T A x - b^T x; --dim, --kappa (condition number), --rotate, --noise (gradient noise std)",
    .default_batch = 1,
    .default_epochs = 0,
    .default_steps = 1000,
    .default_dim = 100,
    .default_noise = 0.0,
    .default_init = DS_INIT_ZEROS,
    .create = quad_create,
};
