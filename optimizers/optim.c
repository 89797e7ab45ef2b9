/* optim.c: the optimizer registry (the order is the order `descent list` shows). */
#include "optim.h"

#include <string.h>

static const struct ds_optim_ops *const ds_optims_[] = {
    &ds_optim_gd, &ds_optim_sgd, &ds_optim_adam, &ds_optim_adamw, &ds_optim_rmsprop,
    &ds_optim_adagrad,
};

int ds_optim_count(void) { return (int)(sizeof ds_optims_ / sizeof ds_optims_[0]); }

const struct ds_optim_ops *ds_optim_at(int i)
{
    return i >= 0 && i < ds_optim_count() ? ds_optims_[i] : NULL;
}

const struct ds_optim_ops *ds_optim_find(const char *name)
{
    for (int i = 0; i < ds_optim_count(); i++)
        if (strcmp(ds_optims_[i]->name, name) == 0) return ds_optims_[i];
    return NULL;
}
