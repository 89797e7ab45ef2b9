/*
 * backend_registry.c: the one place that knows which backends this build has.
 * (The CUDA backend registers here under DS_WITH_CUDA when it lands.)
 */
#include "backend.h"

#include <string.h>

ds_status ds_backend_create(const char *name, int threads, struct ds_backend *out,
                            struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    if (strcmp(name, "cpu") == 0) return ds_backend_cpu_create(threads, out, err);
    if (strcmp(name, "cuda") == 0)
        return ds_err_set(err, DS_ERR_UNSUPPORTED,
                          "--backend cuda: this build has no CUDA backend (valid: %s)",
                          ds_backend_list());
    return ds_err_set(err, DS_ERR_USAGE, "--backend: unknown backend '%s' (valid: %s)", name,
                      ds_backend_list());
}

void ds_backend_destroy(struct ds_backend *be)
{
    if (be && be->ops) be->ops->destroy(be);
    if (be) be->ops = NULL;
}

const char *ds_backend_list(void) { return "cpu"; }
