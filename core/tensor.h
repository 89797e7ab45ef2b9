/*
 * tensor.h: a view of a float32 buffer with a shape (row-major). Tensors do
 * not own memory: parameters are views into the model's one flat buffer,
 * activations views into its arena, datasets views into their arrays.
 */
#ifndef DS_TENSOR_H
#define DS_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define DS_TENSOR_MAX_DIMS 4

struct ds_tensor {
    float *data; /* not owned */
    int ndim;
    int64_t shape[DS_TENSOR_MAX_DIMS];
};

static inline size_t ds_tensor_numel(const struct ds_tensor *t)
{
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* Row r of a tensor of ndim >= 1, as a view of one dimension less. */
static inline struct ds_tensor ds_tensor_row(const struct ds_tensor *t, int64_t r)
{
    struct ds_tensor v = {.data = t->data, .ndim = t->ndim - 1};
    size_t stride = 1;
    for (int d = 1; d < t->ndim; d++) {
        v.shape[d - 1] = t->shape[d];
        stride *= (size_t)t->shape[d];
    }
    v.data = t->data + (size_t)r * stride;
    return v;
}

#endif
