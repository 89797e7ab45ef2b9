/*
 * test_workloads.c: the synthetic workloads' data and optima: train and eval
 * never share a point (at any dimension), the data is a function of the seed,
 * the optimum is found wherever it is promised, and the quadratic's spectrum
 * is what --kappa asks for.
 */
#include "testutil.h"

#include "../core/backend.h"
#include "../workloads/npy.h"
#include "../workloads/workload.h"

#include <unistd.h>

static char dir[64];

static int setup(void **s)
{
    (void)s;
    return tu_tmpdir_make(dir, sizeof dir, "wl");
}

static int teardown(void **s)
{
    (void)s;
    return tu_tmpdir_remove(dir);
}

static void make_task(const struct ds_workload *w, long dim, uint64_t seed, struct ds_backend *be,
                      struct ds_task *t)
{
    struct ds_err err = {{0}};
    struct ds_workload_args a = {.seed = seed, .dim = dim, .n_train = 300, .n_eval = 200,
                                 .kappa = 50, .rotate = 1, .noise = 0.5, .margin = 0.1,
                                 .label_noise = 0.02, .decay_bias = 1, .optimum_known = 1,
                                 .max_batch = 64};
    if (w->create(&a, be, t, &err) != DS_OK) fail_msg("%s dim %ld: %s", w->name, dim, err.msg);
}

static float *read_x(const char *split, int64_t *n, int64_t *d)
{
    char path[128], descr[8];
    int nd;
    int64_t shape[8];
    void *data;
    struct ds_err err = {{0}};
    snprintf(path, sizeof path, "%s/%s_x.npy", dir, split);
    if (ds_npy_read(path, descr, &nd, shape, &data, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_int_equal(nd, 2);
    *n = shape[0], *d = shape[1];
    return data;
}

static void check_splits_disjoint(const struct ds_workload *w)
{
    struct ds_backend be;
    struct ds_err err = {{0}};
    assert_int_equal(ds_backend_create("cpu", 1, &be, &err), DS_OK);
    for (long dim = 1; dim <= 48; dim++) {
        struct ds_task t;
        make_task(w, dim, 9, &be, &t);
        assert_int_equal(t.ops->export_data(&t, dir, &err), DS_OK);
        ds_task_destroy(&t);
        int64_t nt, ne, d1, d2;
        float *xt = read_x("train", &nt, &d1), *xe = read_x("eval", &ne, &d2);
        assert_int_equal(d1, dim);
        assert_int_equal(d2, dim);
        /* no eval point equals a train point, and no coordinate is shared by
         * the first rows of the two (what an overlapping stream would give) */
        for (int64_t i = 0; i < ne; i++)
            for (int64_t j = 0; j < nt; j++)
                if (memcmp(xe + i * dim, xt + j * dim, (size_t)dim * sizeof(float)) == 0)
                    fail_msg("%s dim %ld: eval row %lld equals train row %lld", w->name, dim, (long long)i, (long long)j);
        int same = 0;
        for (int64_t k = 0; k < 20 * dim && k < nt * dim && k < ne * dim; k++) same += xt[k] == xe[k];
        if (same > 0) fail_msg("%s dim %ld: %d coordinates of train and eval coincide", w->name, dim, same);
        free(xt), free(xe);
    }
    ds_backend_destroy(&be);
}

static void test_linreg_splits_disjoint(void **s)
{
    (void)s;
    check_splits_disjoint(&ds_workload_linreg);
}

static void test_logreg_splits_disjoint(void **s)
{
    (void)s;
    check_splits_disjoint(&ds_workload_logreg);
}

static void test_data_is_a_function_of_the_seed(void **s)
{
    (void)s;
    struct ds_backend be;
    struct ds_err err = {{0}};
    assert_int_equal(ds_backend_create("cpu", 1, &be, &err), DS_OK);
    float *x[3];
    for (int k = 0; k < 3; k++) {
        struct ds_task t;
        make_task(&ds_workload_logreg, 7, k < 2 ? 1 : 2, &be, &t);
        assert_int_equal(t.ops->export_data(&t, dir, &err), DS_OK);
        ds_task_destroy(&t);
        int64_t n, d;
        x[k] = read_x("train", &n, &d);
    }
    assert_memory_equal(x[0], x[1], 300 * 7 * sizeof(float));
    assert_true(memcmp(x[0], x[2], 300 * 7 * sizeof(float)) != 0);
    for (int k = 0; k < 3; k++) free(x[k]);
    ds_backend_destroy(&be);
}

static void test_optimum_found(void **s)
{
    (void)s;
    struct ds_backend be;
    struct ds_err err = {{0}};
    assert_int_equal(ds_backend_create("cpu", 1, &be, &err), DS_OK);
    const struct ds_workload *ws[] = {&ds_workload_linreg, &ds_workload_logreg, &ds_workload_quadratic};
    for (int w = 0; w < 3; w++)
        for (long dim = 1; dim <= 64; dim++) {
            struct ds_task t;
            make_task(ws[w], dim, 4, &be, &t);
            if (!t.has_optimum || !t.x_star || !(t.mu > 0) || !(t.L >= t.mu))
                fail_msg("%s dim %ld: optimum %d, mu %g, L %g", ws[w]->name, dim, t.has_optimum, t.mu, t.L);
            ds_task_destroy(&t);
        }
    ds_backend_destroy(&be);
}

static void test_quadratic_spectrum(void **s)
{
    (void)s;
    struct ds_backend be;
    struct ds_err err = {{0}};
    assert_int_equal(ds_backend_create("cpu", 1, &be, &err), DS_OK);
    struct ds_task t;
    make_task(&ds_workload_quadratic, 30, 3, &be, &t);
    assert_close(t.L, 1.0, 1e-12);
    assert_close(t.L / t.mu, 50.0, 1e-9);
    /* A is symmetric with trace = sum of the log-spaced eigenvalues */
    assert_int_equal(t.ops->export_data(&t, dir, &err), DS_OK);
    char path[128], descr[8];
    int nd;
    int64_t shape[8];
    void *data;
    snprintf(path, sizeof path, "%s/A.npy", dir);
    assert_int_equal(ds_npy_read(path, descr, &nd, shape, &data, &err), DS_OK);
    const float *A = data;
    double tr = 0, want = 0;
    for (int i = 0; i < 30; i++) {
        tr += A[i * 30 + i];
        want += pow(50.0, -(double)i / 29.0);
        for (int j = 0; j < 30; j++) assert_true(A[i * 30 + j] == A[j * 30 + i]);
    }
    assert_close(tr, want, 1e-5);
    free(data);
    ds_task_destroy(&t);
    ds_backend_destroy(&be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linreg_splits_disjoint),
        cmocka_unit_test(test_logreg_splits_disjoint),
        cmocka_unit_test(test_data_is_a_function_of_the_seed),
        cmocka_unit_test(test_optimum_found),
        cmocka_unit_test(test_quadratic_spectrum),
    };
    return cmocka_run_group_tests_name("workloads", tests, setup, teardown);
}
