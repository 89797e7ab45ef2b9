/*
 * backend_registry.c: the one place that knows which backends this build has.
 */
#include "backend.h"

#include <string.h>

#ifndef DS_WITH_CUDA
#define DS_WITH_CUDA 0
#endif

ds_status ds_backend_create(const char *name, int threads, struct ds_backend *out,
                            struct ds_err *err)
{
    return ds_backend_create_tf32(name, threads, 0, out, err);
}

ds_status ds_backend_create_tf32(const char *name, int threads, int tf32, struct ds_backend *out,
                                 struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    if (strcmp(name, "cpu") == 0) return ds_backend_cpu_create(threads, out, err);
    if (strcmp(name, "cuda") == 0) {
#if DS_WITH_CUDA
        return ds_backend_cuda_create(tf32, out, err);
#else
        (void)tf32;
        return ds_err_set(err, DS_ERR_UNSUPPORTED,
                          "--backend cuda: this build has no CUDA backend (nvcc was not found "
                          "when it was built; valid: %s)",
                          ds_backend_list());
#endif
    }
    return ds_err_set(err, DS_ERR_USAGE, "--backend: unknown backend '%s' (valid: %s)", name,
                      ds_backend_list());
}

void ds_backend_destroy(struct ds_backend *be)
{
    if (be && be->ops) be->ops->destroy(be);
    if (be) be->ops = NULL;
}

const char *ds_backend_list(void) { return DS_WITH_CUDA ? "cpu, cuda" : "cpu"; }
