/* params.c: named tensors over the flat parameter buffer. */
#include "params.h"
#include "ds.h"

#include <string.h>

size_t ds_params_add(struct ds_param_layout *l, const char *name, int ndim, const int64_t *shape,
                     int is_bias)
{
    DS_ASSERT(ndim >= 1 && ndim <= DS_PARAM_MAX_DIMS);
    struct ds_param_tensor *t = realloc(l->tensors, (size_t)(l->n + 1) * sizeof *t);
    DS_ASSERT_MSG(t != NULL, "out of memory adding tensor %s", name);
    l->tensors = t;
    struct ds_param_tensor *x = &t[l->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->ndim = ndim;
    x->numel = 1;
    for (int d = 0; d < ndim; d++) {
        x->shape[d] = shape[d];
        x->numel *= (size_t)shape[d];
    }
    x->offset = l->total;
    x->is_bias = is_bias;
    l->total += x->numel;
    return x->offset;
}

void ds_params_free(struct ds_param_layout *l)
{
    if (!l) return;
    free(l->tensors);
    memset(l, 0, sizeof *l);
}

int ds_params_ranges(const struct ds_param_layout *l, int decay_bias, struct ds_param_range *out)
{
    int n = 0;
    for (int i = 0; i < l->n; i++) {
        const struct ds_param_tensor *t = &l->tensors[i];
        int decay = decay_bias || !t->is_bias;
        if (n > 0 && out[n - 1].decay == decay && out[n - 1].offset + out[n - 1].n == t->offset)
            out[n - 1].n += t->numel;
        else
            out[n++] = (struct ds_param_range){.offset = t->offset, .n = t->numel, .decay = decay};
    }
    return n;
}

struct ds_tensor ds_params_view(const struct ds_param_layout *l, int i, float *flat)
{
    DS_ASSERT_MSG(i >= 0 && i < l->n, "tensor %d of %d", i, l->n);
    const struct ds_param_tensor *t = &l->tensors[i];
    struct ds_tensor v = {.data = flat + t->offset, .ndim = t->ndim};
    for (int d = 0; d < t->ndim; d++) v.shape[d] = t->shape[d];
    return v;
}

int ds_params_find(const struct ds_param_layout *l, const char *name)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->tensors[i].name, name) == 0) return i;
    return -1;
}
