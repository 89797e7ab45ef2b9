/* workload.c: the workload registry. */
#include "workload.h"

#include <string.h>

static const struct ds_workload *const ds_workloads_[] = {
    &ds_workload_quadratic,
    &ds_workload_linreg,
    &ds_workload_logreg,
    &ds_workload_fmnist_softmax,
    &ds_workload_fmnist_mlp,
    &ds_workload_fmnist_cnn,
};

int ds_workload_count(void) { return (int)(sizeof ds_workloads_ / sizeof ds_workloads_[0]); }

const struct ds_workload *ds_workload_at(int i)
{
    return i >= 0 && i < ds_workload_count() ? ds_workloads_[i] : NULL;
}

const struct ds_workload *ds_workload_find(const char *name)
{
    for (int i = 0; i < ds_workload_count(); i++)
        if (strcmp(ds_workloads_[i]->name, name) == 0) return ds_workloads_[i];
    return NULL;
}

const char *ds_workload_names(void)
{
    static char buf[512];
    if (!buf[0]) {
        size_t o = 0;
        for (int i = 0; i < ds_workload_count(); i++)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? ", " : "", ds_workloads_[i]->name);
    }
    return buf;
}

void ds_task_destroy(struct ds_task *t)
{
    if (!t) return;
    if (t->ops) t->ops->destroy(t);
    free(t->x_star);
    memset(t, 0, sizeof *t);
}
