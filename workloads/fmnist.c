/*
 * fmnist.c: the Fashion-MNIST workloads (Xiao et al. 2017): 28x28 grey
 * images of 10 kinds of clothing, 60,000 for training and 10,000 for test,
 * from the four IDX files of Debian's dataset-fashion-mnist (or $DESCENT_DATA).
 *
 *   fmnist-softmax  Linear 784->10                            (7,850 parameters)
 *   fmnist-mlp      784-256-128-10, ReLU (--hidden to change) (235,146)
 *   fmnist-cnn      classic: Conv(1->32, 5x5, pad 2)-ReLU-MaxPool(2)-Conv(32->64, 5x5, pad 2)-
 *                   ReLU-MaxPool(2)-Flatten-Linear(3136->1024)-ReLU-Dropout(0.5)-Linear(1024->10)
 *                   (3,274,634); small: the same convolutions without padding, then
 *                   Flatten-Linear(1024->10) (62,346)
 *
 * The images stay bytes in backend memory (47 MB for the training split, not
 * 188 MB of floats) and each batch is converted as it is gathered: x/255, or
 * (x/255 - mean)/std with --normalize, the mean and std of the training rows.
 * The layer lists are nn.Sequential's, so checkpoints carry PyTorch's
 * state_dict names ("0.weight" [32, 1, 5, 5], ...).
 */
#include "dataset.h"
#include "idx.h"

#include <ctype.h>
#include <math.h>
#include <string.h>

#define FM_PIXELS (DS_FMNIST_ROWS * DS_FMNIST_COLS)
#define FM_MAX_LAYERS 40
#define FM_MAX_HIDDEN 16

enum fm_kind { FM_SOFTMAX, FM_MLP, FM_CNN };

/* Streams one split into a fresh backend byte buffer; the first hist_rows
 * rows' pixels are counted into hist (for the normalisation statistics). */
static ds_status load_split(struct ds_backend *be, const char *prefix, int64_t expect_n,
                            int64_t hist_rows, uint64_t hist[256], struct ds_dataset *d,
                            struct ds_err *err)
{
    struct ds_fmnist_files f;
    memset(d, 0, sizeof *d);
    ds_status st = ds_fmnist_open(NULL, prefix, expect_n, &f, err);
    if (st != DS_OK) return st;
    int64_t n = f.n;
    uint8_t *lab = malloc((size_t)n);
    d->labels = malloc((size_t)n * sizeof *d->labels);
    d->x8 = be->ops->alloc(be, (size_t)n * FM_PIXELS);
    enum { CHUNK = 1 << 20 };
    uint8_t *stage = malloc(CHUNK);
    if (!lab || !d->labels || !d->x8 || !stage) {
        st = ds_err_set(err, DS_ERR_NOMEM, "out of memory for Fashion-MNIST's %s split", prefix);
        goto done;
    }
    st = ds_fmnist_read_labels(&f, lab, err);
    if (st != DS_OK) goto done;
    for (int64_t i = 0; i < n; i++) d->labels[i] = lab[i];
    size_t total = (size_t)n * FM_PIXELS, hist_bytes = (size_t)hist_rows * FM_PIXELS;
    for (size_t off = 0; off < total;) {
        size_t k = total - off < CHUNK ? total - off : CHUNK;
        st = ds_idx_read(&f.images, stage, k, err);
        if (st != DS_OK) goto done;
        for (size_t j = 0; hist && j < k && off + j < hist_bytes; j++) hist[stage[j]]++;
        be->ops->upload(be, d->x8 + off, stage, k);
        off += k;
    }
    st = ds_idx_finish(&f.images, err);
    if (st != DS_OK) goto done;
    d->n = n;
    d->dim = FM_PIXELS;
    d->n_classes = DS_FMNIST_CLASSES;
    d->x_mean = 0.0f;
    d->x_std = 1.0f;
done:
    ds_fmnist_close(&f);
    free(lab);
    free(stage);
    if (st != DS_OK) {
        be->ops->free(be, d->x8);
        free(d->labels);
        memset(d, 0, sizeof *d);
    }
    return st;
}

/* "512,256" -> widths; an empty list is a softmax on the pixels. */
static ds_status parse_hidden(const char *text, int *w, int *n, struct ds_err *err)
{
    *n = 0;
    const char *p = text ? text : "";
    while (*p) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 1 || v > 65536 || (*end && *end != ','))
            return ds_err_set(err, DS_ERR_USAGE,
                              "--hidden: '%s' is not a list of layer widths in 1..65536 (e.g. 512,256)", text);
        if (*n == FM_MAX_HIDDEN)
            return ds_err_set(err, DS_ERR_USAGE, "--hidden: at most %d hidden layers", FM_MAX_HIDDEN);
        w[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p)
            return ds_err_set(err, DS_ERR_USAGE, "--hidden: '%s' ends with a comma", text);
    }
    return DS_OK;
}

static int add(struct ds_layer_spec *L, int n, struct ds_layer_spec s)
{
    DS_ASSERT(n < FM_MAX_LAYERS);
    L[n] = s;
    return n + 1;
}

static ds_status fm_create(enum fm_kind kind, const struct ds_workload_args *a,
                           struct ds_backend *be, struct ds_task *t, struct ds_err *err)
{
    struct ds_layer_spec L[FM_MAX_LAYERS];
    int n = 0, small = 0, in_c = 0, in_h = 0, in_w = 0, max_batch = a->max_batch;
    char arch[160] = "";
    const struct ds_layer_spec relu = {.kind = DS_LAYER_RELU};
    const struct ds_layer_spec drop = {.kind = DS_LAYER_DROPOUT, .p = a->dropout};
    if (kind == FM_SOFTMAX) {
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_LINEAR, .units = DS_FMNIST_CLASSES});
        snprintf(arch, sizeof arch, "softmax regression 784-10");
    } else if (kind == FM_MLP) {
        int w[FM_MAX_HIDDEN], nh;
        ds_status st = parse_hidden(a->hidden ? a->hidden : "256,128", w, &nh, err);
        if (st != DS_OK) return st;
        size_t o = (size_t)snprintf(arch, sizeof arch, "MLP 784");
        for (int i = 0; i < nh; i++) {
            n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_LINEAR, .units = w[i]});
            n = add(L, n, relu);
            if (a->dropout > 0.0f) n = add(L, n, drop);
            o += (size_t)snprintf(arch + o, sizeof arch - o, "-%d", w[i]);
        }
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_LINEAR, .units = DS_FMNIST_CLASSES});
        snprintf(arch + o, sizeof arch - o, "-10 ReLU%s", a->dropout > 0.0f ? " + dropout" : "");
    } else {
        const char *v = a->variant ? a->variant : "classic";
        if (strcmp(v, "small") == 0) small = 1;
        else if (strcmp(v, "classic") != 0)
            return ds_err_set(err, DS_ERR_USAGE, "--variant: unknown variant '%s' (valid: classic, small)", v);
        int pad = small ? 0 : 2;
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_CONV2D, .units = 32, .kernel = 5, .pad = pad});
        n = add(L, n, relu);
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_MAXPOOL2D, .kernel = 2});
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_CONV2D, .units = 64, .kernel = 5, .pad = pad});
        n = add(L, n, relu);
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_MAXPOOL2D, .kernel = 2});
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_FLATTEN});
        if (!small) {
            n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_LINEAR, .units = 1024});
            n = add(L, n, relu);
        }
        if (a->dropout > 0.0f) n = add(L, n, drop);
        n = add(L, n, (struct ds_layer_spec){.kind = DS_LAYER_LINEAR, .units = DS_FMNIST_CLASSES});
        snprintf(arch, sizeof arch, "%s CNN: 2 x (conv 5x5%s + ReLU + max-pool 2), 32 and 64 channels, %s%s",
                 small ? "small" : "classic", small ? "" : " 'same'",
                 small ? "linear 1024-10" : "linear 3136-1024-10", a->dropout > 0.0f ? ", dropout" : "");
        in_c = 1, in_h = DS_FMNIST_ROWS, in_w = DS_FMNIST_COLS;
        /* the unrolled convolution inputs take ~1 MB (classic) or ~0.3 MB
         * (small) a sample: larger batches run as micro-batches on the CPU,
         * where that cap keeps them in cache; a GPU runs a batch whole (its
         * memory holds 1024 classic samples' ~1 GB, and one pass is what
         * keeps it busy) */
        int cap = strcmp(be->ops->name, "cpu") == 0 ? (small ? 512 : 256) : 4096;
        if (max_batch > cap) max_batch = cap;
    }

    int64_t n_val = a->n_val;
    if (n_val < 0 || n_val >= DS_FMNIST_TRAIN_N)
        return ds_err_set(err, DS_ERR_USAGE, "--val %ld: must be in [0, %d) (Fashion-MNIST has %d training images)",
                          a->n_val, DS_FMNIST_TRAIN_N, DS_FMNIST_TRAIN_N);
    uint64_t hist[256] = {0};
    struct ds_dataset train, test;
    ds_status st = load_split(be, "train", DS_FMNIST_TRAIN_N, DS_FMNIST_TRAIN_N - n_val, hist, &train, err);
    if (st != DS_OK) return st;
    st = load_split(be, "t10k", DS_FMNIST_TEST_N, 0, NULL, &test, err);
    if (st != DS_OK) {
        be->ops->free(be, train.x8);
        ds_dataset_free(&train);
        return st;
    }
    if (a->normalize) {
        /* population mean and std of x/255 over the training rows, exact from the histogram */
        double cnt = 0.0, s1 = 0.0, s2 = 0.0;
        for (int v = 0; v < 256; v++) {
            double x = (double)v / 255.0, c = (double)hist[v];
            cnt += c, s1 += c * x, s2 += c * x * x;
        }
        double mean = s1 / cnt, var = s2 / cnt - mean * mean;
        train.x_mean = test.x_mean = (float)mean;
        train.x_std = test.x_std = (float)sqrt(var > 0.0 ? var : 1.0);
    }
    float mean = train.x_mean, stdv = train.x_std;
    struct ds_supervised_spec spec = {
        .layers = L,
        .n_layers = n,
        .loss = DS_LOSS_XENT,
        .metric = "accuracy",
        .metric_higher_better = 1,
        .max_batch = max_batch,
        .seed = a->seed,
        .in_c = in_c,
        .in_h = in_h,
        .in_w = in_w,
        .n_val = n_val,
        .eval_limit = a->eval_limit,
    };
    st = ds_supervised_create(be, &spec, &train, &test, t, err);
    if (st != DS_OK) return st; /* it freed the datasets */
    snprintf(t->description, sizeof t->description,
             "%s, %zu parameters; Fashion-MNIST from %s: %lld train, %lld validation, %lld test images, pixels %s",
             arch, t->layout->total, ds_fmnist_dir(), (long long)t->n_train, (long long)t->n_val,
             (long long)t->n_eval, a->normalize ? "standardised" : "x/255");
    if (a->normalize) {
        size_t o = strlen(t->description);
        snprintf(t->description + o, sizeof t->description - o, " (mean %.6f, std %.6f)", (double)mean, (double)stdv);
    }
    return DS_OK;
}

static ds_status softmax_create(const struct ds_workload_args *a, struct ds_backend *be,
                                struct ds_task *t, struct ds_err *err)
{
    return fm_create(FM_SOFTMAX, a, be, t, err);
}
static ds_status mlp_create(const struct ds_workload_args *a, struct ds_backend *be,
                            struct ds_task *t, struct ds_err *err)
{
    return fm_create(FM_MLP, a, be, t, err);
}
static ds_status cnn_create(const struct ds_workload_args *a, struct ds_backend *be,
                            struct ds_task *t, struct ds_err *err)
{
    return fm_create(FM_CNN, a, be, t, err);
}

const struct ds_workload ds_workload_fmnist_softmax = {
    .name = "fmnist-softmax",
    .summary = "Fashion-MNIST, softmax regression 784-10 (7,850 parameters); metric: test accuracy",
    .default_batch = 128,
    .default_epochs = 10,
    .default_init = DS_INIT_DEFAULT,
    .create = softmax_create,
};

const struct ds_workload ds_workload_fmnist_mlp = {
    .name = "fmnist-mlp",
    .summary = "Fashion-MNIST, MLP 784-256-128-10 ReLU (235,146 parameters; --hidden 512,256 to change)",
    .default_batch = 128,
    .default_epochs = 10,
    .default_init = DS_INIT_DEFAULT,
    .create = mlp_create,
};

const struct ds_workload ds_workload_fmnist_cnn = {
    .name = "fmnist-cnn",
    .summary = "Fashion-MNIST, 2 conv+pool blocks; --variant classic (3,274,634 params, dropout 0.5) or small (62,346)",
    .default_batch = 128,
    .default_epochs = 10,
    .default_init = DS_INIT_DEFAULT,
    .default_dropout = 0.5,
    .create = cnn_create,
};
