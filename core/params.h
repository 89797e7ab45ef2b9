/*
 * params.h: how a flat parameter buffer divides into named tensors. Names and
 * shapes follow PyTorch's state_dict for the equivalent module (for an
 * nn.Sequential MLP: "0.weight" [out, in], "0.bias" [out], "2.weight", ...),
 * so checkpoints load in PyTorch and trajectories compare tensor by tensor.
 */
#ifndef DS_PARAMS_H
#define DS_PARAMS_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

#define DS_PARAM_NAME_MAX 64
#define DS_PARAM_MAX_DIMS 4

struct ds_param_tensor {
    char name[DS_PARAM_NAME_MAX];
    int ndim;
    int64_t shape[DS_PARAM_MAX_DIMS];
    size_t offset; /* in floats, into the flat buffer */
    size_t numel;
    int is_bias;   /* excluded from decay under --decay-bias off */
};

struct ds_param_layout {
    int n;
    struct ds_param_tensor *tensors; /* owned */
    size_t total;                    /* floats in the flat buffer */
};

/* Appends a tensor at the current end of the buffer; returns its offset. */
size_t ds_params_add(struct ds_param_layout *l, const char *name, int ndim, const int64_t *shape,
                     int is_bias);
void ds_params_free(struct ds_param_layout *l);

/* Tensor i of the layout as a view into `flat` (parameters, gradients or
 * optimizer state: any buffer laid out like the parameters). */
struct ds_tensor ds_params_view(const struct ds_param_layout *l, int i, float *flat);
/* Index of the tensor named `name`, or -1. */
int ds_params_find(const struct ds_param_layout *l, const char *name);

/* A contiguous run of the flat buffer with one decay setting. */
struct ds_param_range {
    size_t offset, n;
    int decay;
};

/* Merges adjacent tensors with the same decay flag into ranges (at most l->n).
 * Returns the count written to out (sized l->n). */
int ds_params_ranges(const struct ds_param_layout *l, int decay_bias, struct ds_param_range *out);

#endif
