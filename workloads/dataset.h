/*
 * dataset.h: an in-memory supervised dataset (host memory), and the generic
 * supervised task built from a train and an eval dataset, a stack of layers
 * and a loss: what linreg, logreg and the image workloads all are.
 */
#ifndef DS_DATASET_H
#define DS_DATASET_H

#include "workload.h"

struct ds_dataset {
    int64_t n;
    int dim;             /* features per sample */
    int target_cols;     /* float targets per sample (0 when labels are used) */
    int n_classes;       /* labels in [0, n_classes) (0 when float targets are used) */
    float *x;            /* [n, dim] host, owned; or NULL when x8 holds the inputs */
    float *y;            /* [n, target_cols] owned, or NULL */
    int32_t *labels;     /* [n] owned, or NULL */
    /* Byte inputs (images): [n, dim] in BACKEND memory, owned, converted per
     * batch to (x8 / 255 - x_mean) / x_std. They stay bytes: a quarter of
     * the memory of floats, and no host copy. */
    uint8_t *x8;
    float x_mean, x_std;
};

/* Allocates the arrays for n samples; zero-filled. */
ds_status ds_dataset_alloc(struct ds_dataset *d, int64_t n, int dim, int target_cols,
                           int n_classes, struct ds_err *err);
void ds_dataset_free(struct ds_dataset *d);

struct ds_supervised_spec {
    const struct ds_layer_spec *layers;
    int n_layers;
    enum ds_loss_kind loss;
    const char *metric;           /* "accuracy" or "mse" */
    int metric_higher_better;
    int max_batch;                /* rows per forward pass (larger batches are split) */
    uint64_t seed;                /* dropout masks */
    int in_c, in_h, in_w;         /* a sample's shape for spatial layers (0: [dim, 1, 1]) */
    int64_t n_val;                /* the last n_val training rows are held out as the
                                     validation split (2), sharing their memory */
    int64_t eval_limit;           /* evaluate on the first eval_limit rows of a split (0: all) */
};

/* Takes ownership of train and eval (they are zeroed in the caller). */
ds_status ds_supervised_create(struct ds_backend *be, const struct ds_supervised_spec *spec,
                               struct ds_dataset *train, struct ds_dataset *eval,
                               struct ds_task *out, struct ds_err *err);

/* The model inside a supervised task (for tests and checkpoints). */
struct ds_model *ds_supervised_model(struct ds_task *t);

#endif
