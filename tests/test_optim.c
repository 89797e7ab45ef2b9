/*
 * test_optim.c: each optimizer's fast CPU step against its scalar reference
 * step (the textbook form of torch's documented algorithm), with and without
 * regularizers, single- and multi-threaded; the schedules' closed forms; how
 * parameter ranges split for bias exclusion. (Trajectories against PyTorch
 * itself are in test_parity.c.)
 */
#include "testutil.h"

#include "../core/params.h"
#include "../core/philox.h"
#include "../optimizers/optim.h"
#include "../optimizers/schedule.h"

#include <omp.h>

struct variant {
    const char *opt;
    float momentum, dampening;
    int nesterov, amsgrad, centered;
    float lr_decay, l2, l1, wd;
};

static void fill_normal(float *x, size_t n, uint64_t seed, uint64_t off, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = scale * (float)ds_rng_normal(seed, 77, off + i);
}

/* Runs `steps` steps of ref and fast on the same inputs; returns the largest
 * relative difference of the parameters seen. */
static double compare(const struct variant *v, size_t n, int steps)
{
    const struct ds_optim_ops *o = ds_optim_find(v->opt);
    assert_non_null(o);
    struct ds_optim_hyper h;
    o->defaults(&h);
    h.momentum = v->momentum;
    h.dampening = v->dampening;
    h.nesterov = v->nesterov;
    h.amsgrad = v->amsgrad;
    h.centered = v->centered;
    h.lr_decay = v->lr_decay;
    h.initial_accumulator = 0.1f;
    int slots = o->n_slots(&h);
    float *p1 = malloc(n * sizeof *p1), *p2 = malloc(n * sizeof *p2), *g = malloc(n * sizeof *g);
    float *s1 = calloc((size_t)(slots ? slots : 1) * n, sizeof *s1);
    float *s2 = calloc((size_t)(slots ? slots : 1) * n, sizeof *s2);
    float *st1[DS_OPTIM_MAX_SLOTS] = {0}, *st2[DS_OPTIM_MAX_SLOTS] = {0};
    for (int k = 0; k < slots; k++) st1[k] = s1 + (size_t)k * n, st2[k] = s2 + (size_t)k * n;
    for (int k = 0; k < slots && o->initial_value; k++)
        for (size_t i = 0; i < n; i++) st1[k][i] = st2[k][i] = o->initial_value(&h, k);
    fill_normal(p1, n, 1, 0, 1.0f);
    memcpy(p2, p1, n * sizeof *p1);
    double worst = 0.0;
    for (int t = 1; t <= steps; t++) {
        fill_normal(g, n, 2, (uint64_t)t * n, 0.1f);
        struct ds_optim_scalars s = {.lr = h.lr * (1.0f - 0.01f * (float)t), .t = t,
                                     .l2 = v->l2, .l1 = v->l1, .wd = v->wd};
        o->step_ref(&h, &s, n, p1, g, st1);
        o->step(&h, &s, n, p2, g, st2);
        double e = tu_rel_err_f(p2, p1, n);
        if (e > worst) worst = e;
    }
    free(p1), free(p2), free(g), free(s1), free(s2);
    return worst;
}

static const struct variant variants[] = {
    {"gd", 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"sgd", 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"sgd", 0.9f, 0, 0, 0, 0, 0, 1e-2f, 0, 0},
    {"sgd", 0.9f, 0, 1, 0, 0, 0, 0, 1e-3f, 0},
    {"sgd", 0.9f, 0.5f, 0, 0, 0, 0, 0, 0, 1e-2f},
    {"adam", 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"adam", 0, 0, 0, 1, 0, 0, 1e-2f, 1e-3f, 0},
    {"adamw", 0, 0, 0, 0, 0, 0, 0, 0, 1e-2f},
    {"adamw", 0, 0, 0, 1, 0, 0, 0, 0, 1e-1f},
    {"rmsprop", 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"rmsprop", 0.9f, 0, 0, 0, 1, 0, 1e-2f, 0, 1e-2f},
    {"rmsprop", 0, 0, 0, 0, 1, 0, 0, 1e-3f, 0},
    {"rmsprop", 0.5f, 0, 0, 0, 0, 0, 0, 0, 0},
    {"adagrad", 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"adagrad", 0, 0, 0, 0, 0, 0.01f, 1e-2f, 1e-3f, 1e-2f},
};

static void run_variants(size_t n, int threads)
{
    omp_set_num_threads(threads);
    for (size_t i = 0; i < sizeof variants / sizeof variants[0]; i++) {
        double e = compare(&variants[i], n, 30);
        print_message("# %-8s mom %.1f nest %d ams %d cent %d l2 %g l1 %g wd %g, n %zu, %d threads: max rel diff %.2e\n",
                      variants[i].opt, (double)variants[i].momentum, variants[i].nesterov, variants[i].amsgrad,
                      variants[i].centered, (double)variants[i].l2, (double)variants[i].l1,
                      (double)variants[i].wd, n, threads, e);
        /* the fast steps reorder a few float operations (precomputed step
         * sizes): differences are rounding, far below anything visible */
        assert_le(e, 1e-6);
    }
}

static void test_fast_matches_reference_small(void **s)
{
    (void)s;
    run_variants(1000, 1);
}

static void test_fast_matches_reference_threaded(void **s)
{
    (void)s;
    run_variants(40003, 2);
}

static void test_first_steps_by_hand(void **s)
{
    (void)s;
    /* Adam's first step moves each parameter by lr * sign(g) (bias-corrected
     * m / sqrt(v) = g / |g|), whatever |g| is. */
    const struct ds_optim_ops *o = ds_optim_find("adam");
    struct ds_optim_hyper h;
    o->defaults(&h);
    float p[3] = {1, 2, 3}, g[3] = {1e-3f, -5.0f, 40.0f}, m[3] = {0}, v[3] = {0};
    float *st[DS_OPTIM_MAX_SLOTS] = {m, v};
    struct ds_optim_scalars sc = {.lr = 0.1f, .t = 1};
    o->step(&h, &sc, 3, p, g, st);
    assert_close(p[0], 0.9, 1e-5);
    assert_close(p[1], 2.1, 1e-5);
    assert_close(p[2], 2.9, 1e-5);
    /* SGD with momentum: the first step's buffer is the gradient itself */
    o = ds_optim_find("sgd");
    o->defaults(&h);
    h.momentum = 0.9f;
    float q[1] = {1}, gg[1] = {2}, buf[1] = {123};
    float *sb[DS_OPTIM_MAX_SLOTS] = {buf};
    sc.lr = 0.5f;
    o->step(&h, &sc, 1, q, gg, sb);
    assert_close(buf[0], 2.0, 0);
    assert_close(q[0], 0.0, 0);
    sc.t = 2; /* buf = 0.9 * 2 + 2 = 3.8, q = 0 - 0.5 * 3.8 */
    o->step(&h, &sc, 1, q, gg, sb);
    assert_close(q[0], -1.9, 1e-6);
    /* decoupled decay alone shrinks by (1 - lr wd) */
    float r[1] = {2}, z[1] = {0};
    struct ds_optim_scalars sw = {.lr = 0.1f, .t = 1, .wd = 0.5f};
    o = ds_optim_find("sgd");
    o->defaults(&h);
    o->step(&h, &sw, 1, r, z, sb);
    assert_close(r[0], 2.0 * 0.95, 1e-6);
}

static void test_schedules(void **s)
{
    (void)s;
    struct ds_schedule c = {.kind = DS_SCHED_CONSTANT, .base_lr = 0.1, .total = 100};
    assert_close(ds_schedule_lr(&c, 0), 0.1, 0);
    assert_close(ds_schedule_lr(&c, 99), 0.1, 0);
    struct ds_schedule st = {.kind = DS_SCHED_STEP, .base_lr = 1.0, .gamma = 0.5, .step_size = 10, .total = 100};
    assert_close(ds_schedule_lr(&st, 9), 1.0, 1e-15);
    assert_close(ds_schedule_lr(&st, 10), 0.5, 1e-15);
    assert_close(ds_schedule_lr(&st, 35), 0.125, 1e-15);
    struct ds_schedule co = {.kind = DS_SCHED_COSINE, .base_lr = 1.0, .min_lr = 0.1, .total = 100};
    assert_close(ds_schedule_lr(&co, 0), 1.0, 1e-15);
    assert_close(ds_schedule_lr(&co, 50), 0.55, 1e-12);
    assert_close(ds_schedule_lr(&co, 100), 0.1, 1e-12);
    struct ds_schedule wc = {.kind = DS_SCHED_WARMUP_COSINE, .base_lr = 2.0, .warmup = 4, .total = 104};
    assert_close(ds_schedule_lr(&wc, 0), 0.5, 1e-15);
    assert_close(ds_schedule_lr(&wc, 3), 2.0, 1e-15);
    assert_close(ds_schedule_lr(&wc, 4), 2.0, 1e-15);
    assert_close(ds_schedule_lr(&wc, 54), 1.0, 1e-12);
    assert_int_equal(ds_sched_find("cosine"), DS_SCHED_COSINE);
    assert_int_equal(ds_sched_find("nope"), DS_SCHED_COUNT);
}

static void test_decay_ranges(void **s)
{
    (void)s;
    struct ds_param_layout l = {0};
    int64_t w[2] = {4, 3}, b[1] = {4}, w2[2] = {2, 4}, b2[1] = {2};
    ds_params_add(&l, "0.weight", 2, w, 0);
    ds_params_add(&l, "0.bias", 1, b, 1);
    ds_params_add(&l, "2.weight", 2, w2, 0);
    ds_params_add(&l, "2.bias", 1, b2, 1);
    assert_int_equal(l.total, 12 + 4 + 8 + 2);
    struct ds_param_range r[4];
    assert_int_equal(ds_params_ranges(&l, 1, r), 1); /* all decayed: one range */
    assert_int_equal(r[0].n, 26);
    assert_int_equal(ds_params_ranges(&l, 0, r), 4);
    assert_int_equal(r[1].offset, 12);
    assert_int_equal(r[1].n, 4);
    assert_false(r[1].decay);
    assert_true(r[2].decay);
    /* views address the same flat buffer */
    float flat[26];
    for (int i = 0; i < 26; i++) flat[i] = (float)i;
    int k = ds_params_find(&l, "2.weight");
    assert_int_equal(k, 2);
    struct ds_tensor v = ds_params_view(&l, k, flat);
    assert_int_equal(ds_tensor_numel(&v), 8);
    struct ds_tensor row = ds_tensor_row(&v, 1);
    assert_int_equal(row.ndim, 1);
    assert_int_equal(row.shape[0], 4);
    assert_true(row.data[0] == 20.0f);
    assert_int_equal(ds_params_find(&l, "9.weight"), -1);
    ds_params_free(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_matches_reference_small),
        cmocka_unit_test(test_fast_matches_reference_threaded),
        cmocka_unit_test(test_first_steps_by_hand),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_decay_ranges),
    };
    return cmocka_run_group_tests_name("optim", tests, NULL, NULL);
}
