/* comm_local.c: the one-process communicator: every collective is the identity. */
#include "backend.h"
#include "comm.h"

#include <stdlib.h>
#include <string.h>

#ifndef DS_WITH_CUDA
#define DS_WITH_CUDA 0
#endif

static void local_destroy(struct ds_comm *c) { (void)c; }
static ds_status local_allreduce(struct ds_comm *c, float *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return DS_OK;
}
static ds_status local_allreduce_f64(struct ds_comm *c, double *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return DS_OK;
}
/* With one rank the shard is everything: reduce-scatter is a copy and
 * all-gather has nothing to do. */
static ds_status local_reduce_scatter(struct ds_comm *c, const float *send, float *recv,
                                      const size_t *counts)
{
    if (send != recv) c->be->ops->copy(c->be, recv, send, counts[0] * sizeof(float));
    return DS_OK;
}
static ds_status local_all_gather(struct ds_comm *c, float *buf, const size_t *counts)
{
    (void)c, (void)buf, (void)counts;
    return DS_OK;
}
static ds_status local_broadcast(struct ds_comm *c, float *buf, size_t n, int root)
{
    (void)c, (void)buf, (void)n, (void)root;
    return DS_OK;
}
static ds_status local_barrier(struct ds_comm *c)
{
    (void)c;
    return DS_OK;
}

static ds_status local_iallreduce(struct ds_comm *c, float *buf, size_t n)
{
    (void)c, (void)buf, (void)n;
    return DS_OK;
}
static ds_status local_wait_all(struct ds_comm *c, double *busy_s)
{
    (void)c;
    if (busy_s) *busy_s = 0.0;
    return DS_OK;
}

static void local_abort(struct ds_comm *c, int code)
{
    (void)c;
    exit(code);
}

static const struct ds_comm_ops ds_comm_local_ops = {
    .name = "local",
    .destroy = local_destroy,
    .allreduce_sum = local_allreduce,
    .allreduce_sum_host_f64 = local_allreduce_f64,
    .reduce_scatter_sum = local_reduce_scatter,
    .all_gather = local_all_gather,
    .broadcast = local_broadcast,
    .barrier = local_barrier,
    .iallreduce_sum = local_iallreduce,
    .wait_all = local_wait_all,
    .abort = local_abort,
};

/* The registry lives here until a second communicator exists. */
ds_status ds_comm_create(const char *name, struct ds_backend *be, struct ds_comm *out,
                         struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    out->be = be;
    if (strcmp(name, "local") == 0) {
        out->ops = &ds_comm_local_ops;
        out->rank = 0;
        out->size = 1;
        return DS_OK;
    }
    if (strcmp(name, "mpi") == 0) return ds_comm_mpi_create(be, out, err);
    if (strcmp(name, "nccl") == 0) {
#if DS_WITH_CUDA
        return ds_comm_nccl_create(be, out, err);
#else
        return ds_err_set(err, DS_ERR_UNSUPPORTED,
                          "communicator '%s' is not in this build (valid: %s)", name,
                          ds_comm_list());
#endif
    }
    return ds_err_set(err, DS_ERR_USAGE, "unknown communicator '%s' (valid: %s)", name,
                      ds_comm_list());
}

void ds_comm_destroy(struct ds_comm *c)
{
    if (c && c->ops) c->ops->destroy(c);
    if (c) c->ops = NULL;
}

const char *ds_comm_list(void)
{
    if (DS_WITH_CUDA) return ds_comm_mpi_built() ? "local, mpi, nccl" : "local, nccl";
    return ds_comm_mpi_built() ? "local, mpi" : "local";
}
