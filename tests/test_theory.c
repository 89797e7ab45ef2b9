/*
 * test_theory.c: convergence at the rates theory predicts, through the
 * production trainer (ds_trainer_step) on the synthetic workloads.
 *
 * Quadratic, axis-aligned (--rotate off: v_max = e_0, v_min = e_{n-1}),
 * eigenvalues in [mu, L], kappa = L / mu. The initial error lies on the two
 * extreme eigenvectors, the instance for which the rate bounds are tight, and
 * is large against x* so float32 rounding (about kappa * eps * |x*|) stays far
 * below the millionfold target.
 *  - GD, lr = 2 / (mu + L): both extreme components contract by exactly
 *    rho = (kappa - 1) / (kappa + 1) per step: ||e_k|| = rho^k ||e_0||;
 *    predicted steps: ceil(ln 1e6 / ln(1 / rho)). Asserted within 10%.
 *  - Heavy ball (Polyak), lr = 4 / (sqrt L + sqrt mu)^2, momentum beta =
 *    rho^2 with rho = (sqrt kappa - 1) / (sqrt kappa + 1). At these optimal
 *    parameters the extreme components' 2x2 iteration has a double
 *    eigenvalue (+rho at mu, -rho at L), so with torch's first step
 *    (buffer = g, i.e. x_1 = x_0 - lr g_0) their errors are exactly
 *      e_k(mu) = rho^k (1 + (1 - rho) k) e_0,  e_k(L) = (-rho)^k (1 + (1 + rho) k) e_0:
 *    the rate is rho, times a linear factor that the bare rho^k ignores (it
 *    would be off by 23-44% for kappa 10-1000). Predicted steps: the first k
 *    at which that norm is below 1e-6 of the start, asserted within 15%; the
 *    measured contraction over the last tenth of the run is asserted within
 *    1% of the same formula's, and reported against rho.
 * Linear and logistic regression: GD reaches the optimum computed in double
 * (ridge under --l2 by Cholesky; logistic by Newton).
 */
#include "testutil.h"

#include "../core/backend.h"
#include "../core/comm.h"
#include "../harness/train.h"
#include "../workloads/workload.h"

struct fixture {
    struct ds_backend be;
    struct ds_comm comm;
    struct ds_task task;
    struct ds_trainer tr;
    int have_tr;
};

static void open_task(struct fixture *f, const struct ds_workload *w, struct ds_workload_args *a)
{
    struct ds_err err = {{0}};
    memset(f, 0, sizeof *f);
    assert_int_equal(ds_backend_create("cpu", 1, &f->be, &err), DS_OK);
    assert_int_equal(ds_comm_create("local", &f->be, &f->comm, &err), DS_OK);
    if (w->create(a, &f->be, &f->task, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_true(f->task.has_optimum);
}

static void open_trainer(struct fixture *f, const char *opt, double lr, double momentum,
                         double l2)
{
    struct ds_err err = {{0}};
    const struct ds_optim_ops *o = ds_optim_find(opt);
    struct ds_optim_hyper h;
    o->defaults(&h);
    h.lr = (float)lr;
    h.momentum = (float)momentum;
    h.l2 = (float)l2;
    struct ds_schedule s = {.kind = DS_SCHED_CONSTANT, .base_lr = lr, .total = 1L << 40};
    assert_int_equal(ds_trainer_init(&f->tr, &f->be, &f->comm, &f->task, o, &h, &s, 0.0, 1, 0, &err), DS_OK);
    f->have_tr = 1;
}

static void teardown(struct fixture *f)
{
    if (f->have_tr) ds_trainer_free(&f->tr);
    ds_task_destroy(&f->task);
    ds_comm_destroy(&f->comm);
    ds_backend_destroy(&f->be);
}

static double dist_to_opt(struct fixture *f)
{
    size_t n = f->task.layout->total;
    float *x = malloc(n * sizeof *x);
    f->be.ops->download(&f->be, x, f->task.params, n * sizeof *x);
    double d = 0;
    for (size_t i = 0; i < n; i++) d += ((double)x[i] - f->task.x_star[i]) * ((double)x[i] - f->task.x_star[i]);
    free(x);
    return sqrt(d);
}

/* Puts x0 = x* + s (e_0 + e_{n-1}), s large against |x*|. */
static void start_on_extremes(struct fixture *f)
{
    size_t n = f->task.layout->total;
    double xmax = 0;
    for (size_t i = 0; i < n; i++) xmax = fmax(xmax, fabs(f->task.x_star[i]));
    double s = 1e3 * (1.0 + xmax);
    float *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) x[i] = (float)f->task.x_star[i];
    x[0] = (float)(f->task.x_star[0] + s);
    x[n - 1] = (float)(f->task.x_star[n - 1] + s);
    f->be.ops->upload(&f->be, f->task.params, x, n * sizeof *x);
    free(x);
}

/* Steps until ||x - x*|| <= 1e-6 ||x0 - x*|| (or -1); rate_tail receives the
 * mean per-step contraction over the last tenth of those steps. */
static long steps_to_millionfold(struct fixture *f, long max_steps, double *rate_tail)
{
    int32_t idx = 0;
    struct ds_step_info info;
    double d0 = dist_to_opt(f);
    double *d = calloc((size_t)max_steps + 1, sizeof *d);
    d[0] = d0;
    long found = -1;
    for (long k = 1; k <= max_steps && found < 0; k++) {
        ds_trainer_step(&f->tr, &idx, 1, &info);
        d[k] = dist_to_opt(f);
        if (d[k] <= 1e-6 * d0) found = k;
    }
    if (found > 0) {
        long k0 = found - (found / 10 > 1 ? found / 10 : 1);
        *rate_tail = pow(d[found] / d[k0], 1.0 / (double)(found - k0));
    }
    free(d);
    return found;
}

static void axis_quadratic(struct fixture *f, double kappa)
{
    struct ds_workload_args a = {.seed = 11, .dim = 50, .kappa = kappa, .rotate = 0,
                                 .optimum_known = 1, .max_batch = 1};
    open_task(f, &ds_workload_quadratic, &a);
    assert_close(f->task.L, 1.0, 1e-6);
    assert_close(f->task.L / f->task.mu, kappa, 1e-4 * kappa);
}

static void check_gd(double kappa)
{
    struct fixture f;
    axis_quadratic(&f, kappa);
    double mu = f.task.mu, L = f.task.L, rho = (L / mu - 1.0) / (L / mu + 1.0);
    open_trainer(&f, "gd", 2.0 / (mu + L), 0.0, 0.0);
    start_on_extremes(&f);
    double predicted = ceil(log(1e6) / log(1.0 / rho)), tail = 0;
    long measured = steps_to_millionfold(&f, (long)(3 * predicted), &tail);
    print_message("# GD kappa %g: %ld steps to 1e-6, predicted %.0f (rho %.6f): ratio %.3f; tail rate %.6f\n",
                  kappa, measured, predicted, rho, measured / predicted, tail);
    teardown(&f);
    assert_true(measured > 0);
    assert_close(measured / predicted, 1.0, 0.10);
    assert_close(tail / rho, 1.0, 0.02);
}

/* ||e_k|| / ||e_0|| for heavy ball from an error split evenly between v_min and v_max. */
static double heavy_ball_decay(double rho, double k)
{
    double lo = 1.0 + (1.0 - rho) * k, hi = 1.0 + (1.0 + rho) * k;
    return pow(rho, k) * sqrt(0.5 * (lo * lo + hi * hi));
}

static void check_heavy_ball(double kappa)
{
    struct fixture f;
    axis_quadratic(&f, kappa);
    double mu = f.task.mu, L = f.task.L, sk = sqrt(L / mu);
    double rho = (sk - 1.0) / (sk + 1.0);
    double lr = 4.0 / ((sqrt(L) + sqrt(mu)) * (sqrt(L) + sqrt(mu)));
    open_trainer(&f, "gd", lr, rho * rho, 0.0);
    start_on_extremes(&f);
    double naive = ceil(log(1e6) / log(1.0 / rho)), predicted = 1, tail = 0;
    while (heavy_ball_decay(rho, predicted) > 1e-6) predicted++;
    long measured = steps_to_millionfold(&f, (long)(3 * predicted), &tail);
    teardown(&f);
    assert_true(measured > 0);
    long k0 = measured - (measured / 10 > 1 ? measured / 10 : 1);
    double tail_pred = pow(heavy_ball_decay(rho, (double)measured) / heavy_ball_decay(rho, (double)k0),
                           1.0 / (double)(measured - k0));
    print_message("# heavy ball kappa %g: %ld steps to 1e-6, predicted %.0f (rho %.6f; bare rho^k: %.0f): "
                  "ratio %.3f (to bare: %.3f); tail rate %.6f, predicted %.6f\n",
                  kappa, measured, predicted, rho, naive, measured / predicted, measured / naive, tail, tail_pred);
    assert_close(measured / predicted, 1.0, 0.15);
    assert_close(tail / tail_pred, 1.0, 0.01);
}

static void test_gd_rate_kappa10(void **s) { (void)s; check_gd(10); }
static void test_gd_rate_kappa100(void **s) { (void)s; check_gd(100); }
static void test_gd_rate_kappa1000(void **s) { (void)s; check_gd(1000); }
static void test_heavy_ball_rate_kappa10(void **s) { (void)s; check_heavy_ball(10); }
static void test_heavy_ball_rate_kappa100(void **s) { (void)s; check_heavy_ball(100); }
static void test_heavy_ball_rate_kappa1000(void **s) { (void)s; check_heavy_ball(1000); }

/* From a generic start (x0 = 0, x* = A^-1 b with b random, random eigenbasis)
 * the rate is an upper bound: GD needs no more than the predicted steps. */
static void test_gd_rate_is_a_bound_rotated(void **s)
{
    (void)s;
    struct fixture f;
    struct ds_workload_args a = {.seed = 5, .dim = 40, .kappa = 10, .rotate = 1,
                                 .optimum_known = 1, .max_batch = 1};
    open_task(&f, &ds_workload_quadratic, &a);
    f.task.ops->init_params(&f.task, DS_INIT_ZEROS, 5);
    double mu = f.task.mu, L = f.task.L, rho = (L / mu - 1.0) / (L / mu + 1.0);
    open_trainer(&f, "gd", 2.0 / (mu + L), 0.0, 0.0);
    double predicted = ceil(log(1e6) / log(1.0 / rho)), tail;
    long measured = steps_to_millionfold(&f, (long)(3 * predicted), &tail);
    print_message("# GD rotated kappa 10 from x0 = 0: %ld steps, bound %.0f\n", measured, predicted);
    teardown(&f);
    assert_true(measured > 0);
    assert_le(measured, predicted);
}

/* GD on a linear model until the loss stops moving; then compare with the
 * double-precision optimum. */
static void check_linear_optimum(const struct ds_workload *w, double l2, int decay_bias,
                                 double loss_tol, double param_tol)
{
    struct fixture f;
    struct ds_workload_args a = {.seed = 3, .dim = 10, .n_train = 500, .n_eval = 100,
                                 .noise = 0.5, .margin = 0.1, .label_noise = 0.05, .l2 = l2,
                                 .decay_bias = decay_bias, .optimum_known = 1, .max_batch = 500};
    open_task(&f, w, &a);
    f.task.ops->init_params(&f.task, DS_INIT_DEFAULT, 3);
    double mu = f.task.mu, L = f.task.L;
    struct ds_err err;
    const struct ds_optim_ops *o = ds_optim_find("gd");
    struct ds_optim_hyper h;
    o->defaults(&h);
    h.lr = (float)(2.0 / (mu + L));
    h.l2 = (float)l2;
    struct ds_schedule sched = {.kind = DS_SCHED_CONSTANT, .base_lr = h.lr, .total = 1L << 40};
    assert_int_equal(ds_trainer_init(&f.tr, &f.be, &f.comm, &f.task, o, &h, &sched, 0.0, decay_bias, 0, &err), DS_OK);
    f.have_tr = 1;
    int32_t *idx = malloc((size_t)f.task.n_train * sizeof *idx);
    for (int i = 0; i < f.task.n_train; i++) idx[i] = i;
    double rho = (L / mu - 1.0) / (L / mu + 1.0);
    long steps = (long)ceil(log(1e-9) / log(rho)) + 50;
    struct ds_step_info info;
    for (long k = 0; k < steps; k++) ds_trainer_step(&f.tr, idx, (int)f.task.n_train, &info);
    free(idx);

    size_t n = f.task.layout->total;
    float *x = malloc(n * sizeof *x);
    f.be.ops->download(&f.be, x, f.task.params, n * sizeof *x);
    double pen = 0, dd = 0, nn = 0, dmax = 0;
    for (size_t i = 0; i < n; i++) {
        int is_bias = i == n - 1;
        if (!is_bias || decay_bias) pen += 0.5 * l2 * (double)x[i] * (double)x[i];
        double e = (double)x[i] - f.task.x_star[i];
        dd += e * e, nn += f.task.x_star[i] * f.task.x_star[i], dmax = fmax(dmax, fabs(e));
    }
    free(x);
    double loss, metric;
    f.task.ops->evaluate(&f.task, 0, &loss, &metric);
    double objective = loss + pen, rel = fabs(objective - f.task.f_star) / fabs(f.task.f_star);
    print_message("# %s l2 %g: %ld GD steps (kappa %.1f): objective %.12g vs optimum %.12g (rel %.2e); "
                  "||theta - theta*|| / ||theta*|| %.2e, max |diff| %.2e\n",
                  w->name, l2, steps, L / mu, objective, f.task.f_star, rel, sqrt(dd / nn), dmax);
    teardown(&f);
    assert_le(rel, loss_tol);
    assert_le(dmax, param_tol);
    assert_le(sqrt(dd / nn), param_tol);
}

static void test_linreg_ridge_optimum(void **s)
{
    (void)s;
    check_linear_optimum(&ds_workload_linreg, 0.1, 1, 1e-6, 1e-4);
}

static void test_linreg_ridge_optimum_bias_not_decayed(void **s)
{
    (void)s;
    check_linear_optimum(&ds_workload_linreg, 0.3, 0, 1e-6, 1e-4);
}

static void test_logreg_optimum(void **s)
{
    (void)s;
    check_linear_optimum(&ds_workload_logreg, 0.01, 1, 1e-6, 1e-4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gd_rate_kappa10),
        cmocka_unit_test(test_gd_rate_kappa100),
        cmocka_unit_test(test_gd_rate_kappa1000),
        cmocka_unit_test(test_heavy_ball_rate_kappa10),
        cmocka_unit_test(test_heavy_ball_rate_kappa100),
        cmocka_unit_test(test_heavy_ball_rate_kappa1000),
        cmocka_unit_test(test_gd_rate_is_a_bound_rotated),
        cmocka_unit_test(test_linreg_ridge_optimum),
        cmocka_unit_test(test_linreg_ridge_optimum_bias_not_decayed),
        cmocka_unit_test(test_logreg_optimum),
    };
    return cmocka_run_group_tests_name("theory", tests, NULL, NULL);
}
