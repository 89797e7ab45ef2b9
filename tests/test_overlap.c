/*
 * test_overlap.c: the data-parallel gradient buckets (harness/train.c).
 *
 * A recording communicator stands in for MPI: it says it is rank 0 of 2,
 * sums nothing, and snapshots every buffer at the moment a bucket's sum is
 * started. The properties:
 *  - every bucket was started holding its FINAL gradient (the snapshot equals
 *    the gradient after backward, bit for bit): starting a sum early never
 *    sends a partial gradient, with one micro-batch or several;
 *  - the buckets tile the flat buffer exactly once, last tensors first;
 *  - with k buckets, k - 1 start while the first layer's backward is still to
 *    come (its gradient not yet final): those sums run behind it; with
 *    bucket-kb 0 the one sum starts after backward;
 *  - the cut: whole tensors, closing once a bucket holds the cap.
 */
#include "testutil.h"

#include "../core/backend.h"
#include "../core/comm.h"
#include "../core/model.h"
#include "../harness/train.h"
#include "../workloads/dataset.h"
#include "../workloads/workload.h"

#define MAX_STARTS 64

struct rec {
    int n;
    float *buf[MAX_STARTS];
    size_t len[MAX_STARTS];
    float *snap[MAX_STARTS]; /* owned copies at start time */
    int first_done[MAX_STARTS]; /* was the first layer's weight gradient final then */
    int waited;
};

/* The task's gradient buffer and its first tensor's size (set per fixture). */
static const float *grads_now;
static size_t first_n;
static float *first_final; /* [first_n], from a step without starts */

static struct rec rec;

static void rec_destroy(struct ds_comm *c) { (void)c; }
static ds_status rec_noop_f32(struct ds_comm *c, float *b, size_t n)
{
    (void)c, (void)b, (void)n;
    return DS_OK;
}
static ds_status rec_noop_f64(struct ds_comm *c, double *b, size_t n)
{
    (void)c, (void)b, (void)n;
    return DS_OK;
}
static ds_status rec_istart(struct ds_comm *c, float *buf, size_t n)
{
    (void)c;
    assert_true(rec.n < MAX_STARTS);
    rec.buf[rec.n] = buf;
    rec.len[rec.n] = n;
    rec.snap[rec.n] = malloc(n * sizeof(float));
    assert_non_null(rec.snap[rec.n]);
    memcpy(rec.snap[rec.n], buf, n * sizeof(float));
    rec.first_done[rec.n] = first_final && memcmp(grads_now, first_final, first_n * sizeof(float)) == 0;
    rec.n++;
    return DS_OK;
}
static ds_status rec_wait_all(struct ds_comm *c, double *busy)
{
    (void)c;
    rec.waited = 1;
    if (busy) *busy = 0.0;
    return DS_OK;
}
static void rec_abort(struct ds_comm *c, int code)
{
    (void)c;
    fail_msg("the trainer aborted the job (code %d)", code);
}

static const struct ds_comm_ops rec_ops = {
    .name = "recording",
    .destroy = rec_destroy,
    .allreduce_sum = rec_noop_f32,
    .allreduce_sum_host_f64 = rec_noop_f64,
    .barrier = NULL,
    .iallreduce_sum = rec_istart,
    .wait_all = rec_wait_all,
    .abort = rec_abort,
};

static void rec_reset(void)
{
    for (int i = 0; i < rec.n; i++) free(rec.snap[i]);
    memset(&rec, 0, sizeof rec);
}


struct fix {
    struct ds_backend be;
    struct ds_comm comm;
    struct ds_task task;
    struct ds_trainer tr;
};

/* An MLP 64-96-48-10 (tensors 6144+96, 4608+48, 480+10 floats) on random
 * data, rows per forward pass max_batch. */
static void open_fix(struct fix *f, int max_batch)
{
    struct ds_err err = {{0}};
    memset(f, 0, sizeof *f);
    assert_int_equal(ds_backend_create("cpu", 1, &f->be, &err), DS_OK);
    f->comm = (struct ds_comm){.ops = &rec_ops, .be = &f->be, .rank = 0, .size = 2};
    enum { N = 64, DIM = 64, CLASSES = 10 };
    struct ds_dataset train, eval;
    assert_int_equal(ds_dataset_alloc(&train, N, DIM, 0, CLASSES, &err), DS_OK);
    assert_int_equal(ds_dataset_alloc(&eval, N, DIM, 0, CLASSES, &err), DS_OK);
    uint32_t s = 12345;
    for (int i = 0; i < N * DIM; i++) {
        s = s * 1664525u + 1013904223u;
        train.x[i] = eval.x[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    }
    for (int i = 0; i < N; i++) train.labels[i] = eval.labels[i] = i % CLASSES;
    static const struct ds_layer_spec layers[] = {
        {.kind = DS_LAYER_LINEAR, .units = 96}, {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_LINEAR, .units = 48}, {.kind = DS_LAYER_TANH},
        {.kind = DS_LAYER_LINEAR, .units = CLASSES}};
    struct ds_supervised_spec spec = {
        .layers = layers, .n_layers = 5, .loss = DS_LOSS_XENT, .metric = "accuracy",
        .metric_higher_better = 1, .max_batch = max_batch, .seed = 1};
    if (ds_supervised_create(&f->be, &spec, &train, &eval, &f->task, &err) != DS_OK)
        fail_msg("%s", err.msg);
    f->task.ops->init_params(&f->task, DS_INIT_DEFAULT, 7);
    grads_now = f->task.grads;
    first_n = f->task.layout->tensors[0].numel;
    assert_int_equal(f->task.layout->tensors[0].offset, 0);
    const struct ds_optim_ops *o = ds_optim_find("sgd");
    struct ds_optim_hyper h;
    o->defaults(&h);
    h.lr = 0.1f;
    struct ds_schedule sched = {.kind = DS_SCHED_CONSTANT, .base_lr = 0.1, .total = 1L << 40};
    assert_int_equal(ds_trainer_init(&f->tr, &f->be, &f->comm, &f->task, o, &h, &sched, 0.0, 1, 0, &err), DS_OK);
}

static void close_fix(struct fix *f)
{
    free(first_final);
    first_final = NULL;
    ds_trainer_free(&f->tr);
    ds_task_destroy(&f->task);
    ds_backend_destroy(&f->be);
    rec_reset();
}

/* One step (batch 64; this rank's half: 32 rows) with buckets of `bytes`
 * from the same parameters; checks the recorded starts against the final
 * gradient. Returns the count; *early: how many started while the first
 * layer's backward was still to come (hidden behind it). */
static int step_and_check(struct fix *f, size_t bytes, int *early)
{
    int nb = ds_trainer_set_buckets(&f->tr, bytes);
    size_t np = f->task.layout->total;
    float *p0 = malloc(np * sizeof(float));
    assert_non_null(p0);
    memcpy(p0, f->task.params, np * sizeof(float)); /* CPU backend: host memory */
    int32_t idx[64];
    for (int i = 0; i < 64; i++) idx[i] = (i * 37) % 64;
    struct ds_step_info info;
    if (!first_final) { /* the first tensor's final gradient, from a step with no buckets */
        rec_reset();
        ds_trainer_set_buckets(&f->tr, 0);
        ds_trainer_step(&f->tr, idx, 64, &info);
        first_final = malloc(first_n * sizeof(float));
        assert_non_null(first_final);
        memcpy(first_final, f->task.grads, first_n * sizeof(float));
        memcpy(f->task.params, p0, np * sizeof(float));
        ds_trainer_set_buckets(&f->tr, bytes);
    }
    rec_reset();
    ds_trainer_step(&f->tr, idx, 64, &info);
    memcpy(f->task.params, p0, np * sizeof(float));
    free(p0);
    assert_true(info.finite);
    assert_true(rec.waited);
    assert_int_equal(rec.n, nb);
    assert_memory_equal(f->task.grads, first_final, first_n * sizeof(float));
    /* the sums tile [0, total) once, from the end down */
    size_t hi = np;
    *early = 0;
    for (int i = 0; i < rec.n; i++) {
        assert_true(rec.buf[i] >= f->task.grads);
        size_t lo = (size_t)(rec.buf[i] - f->task.grads);
        assert_int_equal(lo + rec.len[i], hi);
        hi = lo;
        /* sgd without momentum leaves the gradient buffer as backward wrote it */
        if (memcmp(rec.snap[i], rec.buf[i], rec.len[i] * sizeof(float)) != 0)
            fail_msg("bucket %d [%zu, %zu) was started before its gradient was final", i, lo,
                     lo + rec.len[i]);
        if (!rec.first_done[i]) (*early)++;
    }
    assert_int_equal(hi, 0);
    return rec.n;
}

static void test_buckets_final_and_early(void **state)
{
    (void)state;
    struct fix f;
    open_fix(&f, 64);
    int early;
    /* tensors from the end, in bytes: 40, 1920 | 192, 18432 | 384, 24576 */
    assert_int_equal(step_and_check(&f, 1024, &early), 3);
    assert_int_equal(early, 2); /* all but the first layer's bucket ran behind backward */
    assert_int_equal(step_and_check(&f, 4096, &early), 2);
    assert_int_equal(early, 1);
    assert_int_equal(step_and_check(&f, 0, &early), 1);
    assert_int_equal(early, 0); /* one sum after backward: nothing hidden */
    assert_int_equal(step_and_check(&f, (size_t)1 << 30, &early), 1);
    assert_int_equal(early, 0);
    close_fix(&f);
}

static void test_buckets_micro_batches(void **state)
{
    (void)state;
    /* 32 rows per rank in micro-batches of 8: only the last one may start sums */
    struct fix f;
    open_fix(&f, 8);
    int early;
    assert_int_equal(step_and_check(&f, 1024, &early), 3);
    assert_int_equal(early, 2);
    close_fix(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buckets_final_and_early),
        cmocka_unit_test(test_buckets_micro_batches),
    };
    return cmocka_run_group_tests_name("overlap", tests, NULL, NULL);
}
