/*
 * comm.h: the communicator interface data parallelism runs on. `local` (one
 * process) is always built; `mpi` and `nccl` slot in behind the same struct
 * of function pointers (issues 5 and 6). Buffers are backend memory of the
 * backend the communicator was created for.
 */
#ifndef DS_COMM_H
#define DS_COMM_H

#include "ds.h"

struct ds_comm;

struct ds_comm_ops {
    const char *name;
    void (*destroy)(struct ds_comm *c);
    ds_status (*allreduce_sum)(struct ds_comm *c, float *buf, size_t n);
    /* Sums `n` host doubles across ranks (losses, counts). */
    ds_status (*allreduce_sum_host_f64)(struct ds_comm *c, double *buf, size_t n);
    /* Shards: rank r owns counts[r] elements at offset counts[0] + ... +
     * counts[r-1] of an n-element buffer. reduce_scatter_sum sums `send`
     * (all n) over the ranks and writes this rank's shard of the sum to
     * `recv` (counts[rank] elements); all_gather fills every rank's `buf`
     * (all n) with each rank's shard, taken from its place in that rank's buf. */
    ds_status (*reduce_scatter_sum)(struct ds_comm *c, const float *send, float *recv,
                                    const size_t *counts);
    ds_status (*all_gather)(struct ds_comm *c, float *buf, const size_t *counts);
    ds_status (*broadcast)(struct ds_comm *c, float *buf, size_t n, int root);
    ds_status (*barrier)(struct ds_comm *c);
    /* Overlap (data-parallel gradients, bucket by bucket while backward goes
     * on): iallreduce_sum starts an in-place sum of buf[0..n) over the ranks
     * and returns at once; the sums proceed in the order started (MPI: on
     * the communicator's own thread, so they progress while this one
     * computes). wait_all returns when every started sum is complete, with
     * the seconds they were in flight (busy_s). Between the first start and
     * wait_all the caller makes no other call on this communicator and does
     * not touch the buffers. */
    ds_status (*iallreduce_sum)(struct ds_comm *c, float *buf, size_t n);
    ds_status (*wait_all)(struct ds_comm *c, double *busy_s);
    /* Ends every rank of the job (this one included) with `code`, after the
     * caller has said why: one rank's failure must not leave the others
     * waiting in a collective. Does not return. */
    void (*abort)(struct ds_comm *c, int code);
};

struct ds_comm {
    const struct ds_comm_ops *ops;
    void *ctx;
    struct ds_backend *be; /* where the buffers live (not owned) */
    int rank, size;
};

struct ds_backend;

/* Creates the communicator named `name` ("local") over buffers of backend
 * `be` (not owned). Unknown or unbuilt names are errors listing the choices. */
ds_status ds_comm_create(const char *name, struct ds_backend *be, struct ds_comm *out,
                         struct ds_err *err);
void ds_comm_destroy(struct ds_comm *c);
const char *ds_comm_list(void);

/* comm_mpi.c: the MPI communicator over MPI_COMM_WORLD (initialising MPI
 * if needed); DS_ERR_UNSUPPORTED in a build without MPI. */
ds_status ds_comm_mpi_create(struct ds_backend *be, struct ds_comm *out, struct ds_err *err);
int ds_comm_mpi_built(void);
/* comm_nccl.cu (built with the CUDA backend): NCCL over a cuda backend's
 * buffers, bootstrapped over MPI; DS_ERR_UNSUPPORTED where NCCL or MPI is
 * missing. */
ds_status ds_comm_nccl_create(struct ds_backend *be, struct ds_comm *out, struct ds_err *err);
/* Whether an MPI launcher (mpirun, srun) started this process. */
int ds_comm_mpi_launched(void);
/* The process count the launcher says it started (1 without a launcher; 0
 * when a launcher does not say). */
int ds_comm_mpi_launched_size(void);

#endif
