/*
 * supervised.c: the generic supervised task. The datasets live in backend
 * memory once; a training step gathers its rows into one batch buffer (the
 * dataset itself is never copied) and runs forward, loss and backward, split
 * into micro-batches of at most max_batch rows whose gradients accumulate, so
 * full-batch GD needs no more activation memory than a minibatch step.
 */
#include "dataset.h"
#include "npy.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

enum { SPLIT_TRAIN, SPLIT_EVAL, SPLIT_VAL, N_SPLITS };

struct ds_sup {
    struct ds_model model;
    struct ds_dataset data[N_SPLITS]; /* shapes only once uploaded (the host arrays
                                   are freed: the backend copy is the data) */
    /* Backend data per split. The validation split points into the training
     * split's arrays (its last rows): nothing is copied, and only [0] and [1]
     * own their memory. */
    float *dx[N_SPLITS];        /* x as floats, or NULL */
    uint8_t *dx8[N_SPLITS];     /* x as bytes, or NULL */
    float *dy[N_SPLITS];        /* float targets, or NULL */
    int32_t *dl[N_SPLITS];      /* labels, or NULL */
    int32_t *seq;               /* [max_batch] host: 0, 1, 2, ... for evaluation gathers */
    float *xb;                  /* [max_batch, dim] gathered batch */
    float *yb;                  /* [max_batch, target_cols] */
    int32_t *lb;                /* [max_batch] */
    float *dout;                /* [max_batch, out] loss gradient */
    double *acc;                /* [3] backend memory: deferred loss sums, or NULL (loss_defer) */
    struct ds_supervised_spec spec;
    struct ds_layer_spec *layers; /* owned copy of spec.layers */
};

ds_status ds_dataset_alloc(struct ds_dataset *d, int64_t n, int dim, int target_cols,
                           int n_classes, struct ds_err *err)
{
    memset(d, 0, sizeof *d);
    d->n = n;
    d->dim = dim;
    d->target_cols = target_cols;
    d->n_classes = n_classes;
    d->x = calloc((size_t)n * (size_t)dim + 1, sizeof(float));
    if (target_cols > 0) d->y = calloc((size_t)n * (size_t)target_cols + 1, sizeof(float));
    else d->labels = calloc((size_t)n + 1, sizeof(int32_t));
    if (!d->x || (target_cols > 0 ? !d->y : !d->labels)) {
        ds_dataset_free(d);
        return ds_err_set(err, DS_ERR_NOMEM, "out of memory for a dataset of %lld x %d", (long long)n, dim);
    }
    return DS_OK;
}

void ds_dataset_free(struct ds_dataset *d)
{
    if (!d) return;
    free(d->x);
    free(d->y);
    free(d->labels);
    memset(d, 0, sizeof *d);
}

static struct ds_sup *sup_of(struct ds_task *t) { return t->ctx; }

struct ds_model *ds_supervised_model(struct ds_task *t) { return &sup_of(t)->model; }

/* The inputs of rows idx of a split into the batch buffer. */
static void gather_x(struct ds_sup *s, int split, int rows, const int32_t *idx)
{
    struct ds_backend *be = s->model.be;
    const struct ds_dataset *d = &s->data[split];
    if (s->dx8[split])
        be->ops->gather_u8(be, rows, (size_t)d->dim, s->dx8[split], idx, d->x_mean, d->x_std, s->xb);
    else
        be->ops->gather_rows(be, rows, (size_t)d->dim, s->dx[split], idx, s->xb);
}

/* Deferred loss sums (s->acc): the device keeps them while the passes are
 * queued, and the host waits once, for all of them, in defer_end. */
static void defer_begin(struct ds_sup *s, struct ds_backend *be)
{
    if (!s->acc) return;
    be->ops->fill(be, (float *)s->acc, 6, 0.0f); /* 3 doubles of zero bits */
    be->ops->loss_defer(be, s->acc);
}

static void defer_end(struct ds_sup *s, struct ds_backend *be, int rows, double *total,
                      int64_t *correct)
{
    if (!s->acc) return;
    be->ops->loss_defer(be, NULL);
    double a[3];
    be->ops->download(be, a, s->acc, sizeof a);
    DS_ASSERT_MSG(a[2] == 0.0, "%.0f of %d labels outside [0, %d)", a[2], rows, s->model.out);
    *total = a[0];
    if (correct) *correct = (int64_t)a[1];
}

static double sup_loss_grad(struct ds_task *t, const int32_t *idx, int n,
                            const struct ds_pass *pass, float grad_scale)
{
    struct ds_sup *s = sup_of(t);
    struct ds_backend *be = t->be;
    const struct ds_dataset *d = &s->data[0];
    int mb = s->model.max_batch, out = s->model.out;
    double total = 0.0;
    if (n == 0) be->ops->fill(be, t->grads, t->layout->total, 0.0f);
    defer_begin(s, be);
    for (int r0 = 0; r0 < n; r0 += mb) {
        int rows = n - r0 < mb ? n - r0 : mb;
        gather_x(s, SPLIT_TRAIN, rows, idx + r0);
        const void *targets;
        if (s->dl[0]) {
            be->ops->gather_i32(be, rows, s->dl[0], idx + r0, s->lb);
            targets = s->lb;
        } else {
            be->ops->gather_rows(be, rows, (size_t)d->target_cols, s->dy[0], idx + r0, s->yb);
            targets = s->yb;
        }
        struct ds_pass p = *pass;
        p.row0 = pass->row0 + r0;
        if (r0 + rows < n) p.grads_ready = NULL; /* later micro-batches still add to every gradient */
        const float *o = ds_model_forward(&s->model, s->xb, rows, &p);
        total += ds_loss_eval(be, s->spec.loss, rows, out, o, targets, s->dout, grad_scale, NULL);
        ds_model_backward(&s->model, s->dout, rows, &p, r0 > 0);
    }
    defer_end(s, be, n, &total, NULL);
    return total;
}

static void sup_evaluate(struct ds_task *t, int split, double *loss, double *metric)
{
    struct ds_sup *s = sup_of(t);
    DS_ASSERT_MSG(split >= 0 && split < N_SPLITS, "split %d", split);
    const struct ds_dataset *d = &s->data[split];
    int mb = s->model.max_batch, out = s->model.out;
    double total = 0.0;
    int64_t correct = 0;
    struct ds_pass pass = {0};
    int64_t n = s->spec.eval_limit > 0 && s->spec.eval_limit < d->n ? s->spec.eval_limit : d->n;
    defer_begin(s, t->be);
    for (int64_t r0 = 0; r0 < n; r0 += mb) {
        int rows = n - r0 < mb ? (int)(n - r0) : mb;
        const float *x;
        if (s->dx8[split]) {
            /* bytes are converted batch by batch */
            for (int r = 0; r < rows; r++) s->seq[r] = (int32_t)(r0 + r);
            gather_x(s, split, rows, s->seq);
            x = s->xb;
        } else {
            x = s->dx[split] + (size_t)r0 * d->dim; /* rows are contiguous */
        }
        const void *targets = s->dl[split]
                                  ? (const void *)(s->dl[split] + r0)
                                  : (const void *)(s->dy[split] + (size_t)r0 * d->target_cols);
        const float *o = ds_model_forward(&s->model, x, rows, &pass);
        int64_t c = 0;
        total += ds_loss_eval(t->be, s->spec.loss, rows, out, o, targets, NULL, 0.0f,
                              s->acc ? NULL : &c);
        correct += c;
    }
    defer_end(s, t->be, (int)n, &total, &correct);
    *loss = n ? total / (double)n : NAN;
    if (strcmp(s->spec.metric, "accuracy") == 0) {
        /* BCE counts per logit; one logit per sample in our binary tasks */
        *metric = n ? (double)correct / ((double)n * (s->spec.loss == DS_LOSS_BCE ? out : 1)) : NAN;
    } else {
        *metric = *loss;
    }
}

static void sup_init_params(struct ds_task *t, enum ds_init_scheme scheme, uint64_t seed)
{
    ds_model_init_params(&sup_of(t)->model, scheme, seed);
}

/* Writes one split as .npy, read back from the backend copy. */
static ds_status write_split(struct ds_task *t, int split, const char *dir, struct ds_err *err)
{
    struct ds_sup *s = sup_of(t);
    const struct ds_dataset *d = &s->data[split];
    const char *tag = split ? "eval" : "train";
    char path[4200];
    size_t nx = (size_t)d->n * d->dim, ny = (size_t)d->n * (d->target_cols ? d->target_cols : 1);
    float *x = malloc(nx * sizeof *x + 1), *y = malloc(ny * sizeof *y + 1);
    int32_t *l = malloc((size_t)d->n * sizeof *l + 1);
    int64_t *l64 = malloc((size_t)d->n * sizeof *l64 + 1);
    ds_status st = DS_OK;
    if (!x || !y || !l || !l64) {
        st = ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory exporting the %s split", dir, tag);
        goto done;
    }
    int64_t shape[2] = {d->n, d->dim};
    snprintf(path, sizeof path, "%s/%s_x.npy", dir, tag);
    if (s->dx8[split]) {
        /* bytes as bytes: the consumer applies the same x/255 (and normalisation) */
        t->be->ops->download(t->be, x, s->dx8[split], nx);
        st = ds_npy_write(path, "|u1", 2, shape, x, err);
    } else {
        t->be->ops->download(t->be, x, s->dx[split], nx * sizeof *x);
        st = ds_npy_write(path, "<f4", 2, shape, x, err);
    }
    if (st != DS_OK) goto done;
    snprintf(path, sizeof path, "%s/%s_y.npy", dir, tag);
    if (s->dl[split]) {
        /* int64, as torch's cross-entropy wants class indices */
        t->be->ops->download(t->be, l, s->dl[split], (size_t)d->n * sizeof *l);
        for (int64_t i = 0; i < d->n; i++) l64[i] = l[i];
        st = ds_npy_write(path, "<i8", 1, shape, l64, err);
    } else {
        t->be->ops->download(t->be, y, s->dy[split], ny * sizeof *y);
        int64_t yshape[2] = {d->n, d->target_cols};
        st = ds_npy_write(path, "<f4", 2, yshape, y, err);
    }
done:
    free(x), free(y), free(l), free(l64);
    return st;
}

static ds_status sup_export(struct ds_task *t, const char *dir, struct ds_err *err)
{
    ds_status st = write_split(t, 0, dir, err);
    if (st == DS_OK) st = write_split(t, 1, dir, err);
    return st;
}

static void sup_destroy(struct ds_task *t)
{
    struct ds_sup *s = sup_of(t);
    if (!s) return;
    struct ds_backend *be = t->be;
    for (int i = 0; i < N_SPLITS; i++) {
        if (i != SPLIT_VAL) { /* the validation split borrows the training arrays */
            be->ops->free(be, s->dx[i]);
            be->ops->free(be, s->dx8[i]);
            be->ops->free(be, s->dy[i]);
            be->ops->free(be, s->dl[i]);
        }
        ds_dataset_free(&s->data[i]);
    }
    free(s->seq);
    be->ops->free(be, s->xb);
    be->ops->free(be, s->yb);
    be->ops->free(be, s->lb);
    be->ops->free(be, s->dout);
    be->ops->free(be, s->acc);
    ds_model_free(&s->model);
    free(s->layers);
    free(s);
    t->ctx = NULL;
}

static const struct ds_task_ops ds_sup_ops = {
    .loss_grad = sup_loss_grad,
    .evaluate = sup_evaluate,
    .init_params = sup_init_params,
    .export_data = sup_export,
    .destroy = sup_destroy,
};

static void *upload_copy(struct ds_backend *be, const void *host, size_t bytes)
{
    void *p = be->ops->alloc(be, bytes ? bytes : 4);
    if (p && bytes) be->ops->upload(be, p, host, bytes);
    return p;
}

ds_status ds_supervised_create(struct ds_backend *be, const struct ds_supervised_spec *spec,
                               struct ds_dataset *train, struct ds_dataset *eval,
                               struct ds_task *out, struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    struct ds_sup *s = DS_XCALLOC(1, sizeof *s);
    s->spec = *spec;
    s->layers = DS_XCALLOC((size_t)spec->n_layers, sizeof *s->layers);
    memcpy(s->layers, spec->layers, (size_t)spec->n_layers * sizeof *s->layers);
    s->spec.layers = s->layers;
    s->data[0] = *train;
    s->data[1] = *eval;
    memset(train, 0, sizeof *train);
    memset(eval, 0, sizeof *eval);
    for (int i = 0; i < 2; i++) { /* byte inputs are backend memory already: adopt them */
        s->dx8[i] = s->data[i].x8;
        s->data[i].x8 = NULL;
    }
    out->ops = &ds_sup_ops;
    out->ctx = s;
    out->be = be;

    const struct ds_dataset *d = &s->data[0];
    int mb = spec->max_batch > 0 ? spec->max_batch : 1;
    s->seq = DS_XCALLOC((size_t)mb, sizeof *s->seq);
    int c = spec->in_c > 0 ? spec->in_c : d->dim, h = spec->in_h > 0 ? spec->in_h : 1,
        w = spec->in_w > 0 ? spec->in_w : 1;
    ds_status st;
    if ((int64_t)c * h * w != d->dim) {
        st = ds_err_set(err, DS_ERR_INPUT, "input shape [%d, %d, %d] for samples of %d features", c, h, w, d->dim);
        goto fail;
    }
    if (spec->n_val < 0 || spec->n_val >= d->n) {
        st = ds_err_set(err, DS_ERR_USAGE, "--val %lld must leave training rows (the training set has %lld)",
                        (long long)spec->n_val, (long long)d->n);
        goto fail;
    }
    st = ds_model_create_chw(be, c, h, w, spec->layers, spec->n_layers, mb, 0, spec->seed, &s->model, err);
    if (st != DS_OK) goto fail;
    if (spec->loss == DS_LOSS_XENT && s->model.out != d->n_classes) {
        st = ds_err_set(err, DS_ERR_INPUT, "model has %d outputs for %d classes", s->model.out, d->n_classes);
        goto fail;
    }
    if (spec->loss != DS_LOSS_XENT && s->model.out != d->target_cols) {
        st = ds_err_set(err, DS_ERR_INPUT, "model has %d outputs for %d targets", s->model.out, d->target_cols);
        goto fail;
    }
    for (int i = 0; i < 2; i++) {
        struct ds_dataset *di = &s->data[i];
        if (!s->dx8[i]) s->dx[i] = upload_copy(be, di->x, (size_t)di->n * di->dim * sizeof(float));
        if (di->labels) s->dl[i] = upload_copy(be, di->labels, (size_t)di->n * sizeof(int32_t));
        else s->dy[i] = upload_copy(be, di->y, (size_t)di->n * di->target_cols * sizeof(float));
        if ((!s->dx[i] && !s->dx8[i]) || (!s->dl[i] && !s->dy[i])) {
            st = ds_err_set(err, DS_ERR_NOMEM, "out of backend memory for the dataset");
            goto fail;
        }
        /* the backend copy is now the data: keep one copy, not two */
        free(s->data[i].x), free(s->data[i].y), free(s->data[i].labels);
        s->data[i].x = s->data[i].y = NULL;
        s->data[i].labels = NULL;
    }
    /* The validation split: the training split's last n_val rows. */
    if (spec->n_val > 0) {
        struct ds_dataset *tr = &s->data[SPLIT_TRAIN], *va = &s->data[SPLIT_VAL];
        int64_t n_keep = tr->n - spec->n_val;
        *va = *tr;
        va->n = spec->n_val;
        size_t off = (size_t)n_keep;
        if (s->dx[0]) s->dx[SPLIT_VAL] = s->dx[0] + off * tr->dim;
        if (s->dx8[0]) s->dx8[SPLIT_VAL] = s->dx8[0] + off * tr->dim;
        if (s->dy[0]) s->dy[SPLIT_VAL] = s->dy[0] + off * tr->target_cols;
        if (s->dl[0]) s->dl[SPLIT_VAL] = s->dl[0] + off;
        tr->n = n_keep;
    }
    s->xb = be->ops->alloc(be, (size_t)mb * d->dim * sizeof(float));
    s->yb = be->ops->alloc(be, (size_t)mb * (d->target_cols ? d->target_cols : 1) * sizeof(float));
    s->lb = be->ops->alloc(be, (size_t)mb * sizeof(int32_t));
    s->dout = be->ops->alloc(be, (size_t)mb * s->model.out * sizeof(float));
    const int defer = be->ops->loss_defer && spec->loss == DS_LOSS_XENT;
    if (defer) s->acc = be->ops->alloc(be, 3 * sizeof(double));
    if (!s->xb || !s->yb || !s->lb || !s->dout || (defer && !s->acc)) {
        st = ds_err_set(err, DS_ERR_NOMEM, "out of backend memory for batch buffers");
        goto fail;
    }
    out->layout = &s->model.layout;
    out->params = s->model.params;
    out->grads = s->model.grads;
    out->n_train = s->data[0].n;
    out->n_eval = s->data[1].n;
    out->n_val = s->data[SPLIT_VAL].n;
    out->metric = spec->metric;
    out->metric_higher_better = spec->metric_higher_better;
    return DS_OK;
fail:
    sup_destroy(out);
    out->ops = NULL;
    return st;
}
