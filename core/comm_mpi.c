/*
 * comm_mpi.c: the communicator over Open MPI, one process per rank, buffers
 * in CPU memory. Built when the Makefile finds mpicc (DS_WITH_MPI=1);
 * otherwise ds_comm_mpi_create says so, and nothing else in the tree knows
 * about MPI (the registry in comm_local.c calls this file's entry point).
 *
 * Every MPI call goes through DS_MPI_CHECK, which names the call and its
 * file:line. Collectives are the nonblocking ones, waited on by testing with
 * a deadline (wait_req): a rank that goes silent makes the others end the
 * job with a message instead of hanging. MPI's error handler on the communicator is MPI_ERRORS_RETURN,
 * so a failure becomes a status and a message rather than an abort without
 * one. Counts above INT_MAX are split into pieces MPI's int counts can hold.
 */
#ifndef DS_WITH_MPI
#define DS_WITH_MPI 0
#endif

#include "backend.h"
#include "comm.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ds_comm_mpi_built(void) { return DS_WITH_MPI; }

#if DS_WITH_MPI
#include <mpi.h>

struct mpi_ctx {
    MPI_Comm comm;
    int initialized_here; /* MPI_Finalize is ours to call */
};

#define DS_MPI_CHECK(call)                                                                     \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) {                                                              \
            char es_[MPI_MAX_ERROR_STRING];                                                    \
            int el_ = 0;                                                                       \
            MPI_Error_string(rc_, es_, &el_);                                                  \
            fprintf(stderr, "descent: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,   \
                    es_);                                                                      \
            return DS_ERR_FAILED;                                                              \
        }                                                                                      \
    } while (0)

/* The largest piece one MPI call moves (its counts are int). */
#define PIECE ((size_t)1 << 30)

static MPI_Comm comm_of(struct ds_comm *c) { return ((struct mpi_ctx *)c->ctx)->comm; }

static double now_s(void) { return MPI_Wtime(); }

/* Seconds a collective may go without completing before this rank decides
 * another is stuck or gone and ends the job (DESCENT_COMM_TIMEOUT, default
 * 600): a watchdog, so a silent rank turns into an error, never a hang. */
static double comm_timeout(void)
{
    const char *e = getenv("DESCENT_COMM_TIMEOUT");
    double t = e ? strtod(e, NULL) : 0.0;
    return t > 0 ? t : 600.0;
}

/* Waits for a nonblocking collective, testing it (which also progresses
 * it); past the timeout, says which rank gave up on what, and aborts. */
static ds_status wait_req(struct ds_comm *c, MPI_Request *req, const char *what)
{
    double t0 = now_s(), limit = comm_timeout();
    for (long k = 0;; k++) {
        int done = 0;
        DS_MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return DS_OK;
        if ((k & 1023) == 0 && now_s() - t0 > limit) {
            fprintf(stderr,
                    "descent: rank %d of %d: %s made no progress for %.0f s: another rank is "
                    "stuck or gone (DESCENT_COMM_TIMEOUT); ending the job\n",
                    c->rank, c->size, what, limit);
            fflush(stderr);
            MPI_Abort(comm_of(c), 1);
        }
    }
}

static void mpi_destroy(struct ds_comm *c)
{
    struct mpi_ctx *x = c->ctx;
    if (!x) return;
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        MPI_Comm_free(&x->comm);
        if (x->initialized_here) MPI_Finalize();
    }
    free(x);
    c->ctx = NULL;
}

static ds_status mpi_allreduce(struct ds_comm *c, float *buf, size_t n)
{
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Request req;
        DS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, comm_of(c), &req));
        ds_status st = wait_req(c, &req, "allreduce");
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

static ds_status mpi_allreduce_f64(struct ds_comm *c, double *buf, size_t n)
{
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Request req;
        DS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_DOUBLE, MPI_SUM, comm_of(c), &req));
        ds_status st = wait_req(c, &req, "allreduce");
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

/* int counts and displacements for the v-collectives; DS_ERR_UNSUPPORTED
 * past INT_MAX elements (2^31 floats: an 8 GiB model). */
static ds_status int_counts(struct ds_comm *c, const size_t *counts, int *ic, int *disp)
{
    size_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > (size_t)INT_MAX || off > (size_t)INT_MAX) return DS_ERR_UNSUPPORTED;
        ic[r] = (int)counts[r], disp[r] = (int)off;
        off += counts[r];
    }
    return DS_OK;
}

static ds_status mpi_reduce_scatter(struct ds_comm *c, const float *send, float *recv,
                                    const size_t *counts)
{
    int *ic = malloc(2 * sizeof(int) * (size_t)c->size);
    if (!ic) return DS_ERR_NOMEM;
    ds_status st = int_counts(c, counts, ic, ic + c->size);
    if (st == DS_OK) {
        MPI_Request req;
        int rc = MPI_Ireduce_scatter(send, recv, ic, MPI_FLOAT, MPI_SUM, comm_of(c), &req);
        if (rc != MPI_SUCCESS) {
            fprintf(stderr, "descent: MPI_Ireduce_scatter failed at %s:%d (MPI error %d)\n", __FILE__, __LINE__, rc);
            st = DS_ERR_FAILED;
        } else {
            st = wait_req(c, &req, "reduce-scatter");
        }
    }
    free(ic);
    return st;
}

static ds_status mpi_all_gather(struct ds_comm *c, float *buf, const size_t *counts)
{
    int *ic = malloc(2 * sizeof(int) * (size_t)c->size);
    if (!ic) return DS_ERR_NOMEM;
    ds_status st = int_counts(c, counts, ic, ic + c->size);
    if (st == DS_OK) {
        MPI_Request req;
        int rc = MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, ic, ic + c->size,
                                 MPI_FLOAT, comm_of(c), &req);
        if (rc != MPI_SUCCESS) {
            fprintf(stderr, "descent: MPI_Iallgatherv failed at %s:%d (MPI error %d)\n", __FILE__, __LINE__, rc);
            st = DS_ERR_FAILED;
        } else {
            st = wait_req(c, &req, "all-gather");
        }
    }
    free(ic);
    return st;
}

static ds_status mpi_broadcast(struct ds_comm *c, float *buf, size_t n, int root)
{
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Request req;
        DS_MPI_CHECK(MPI_Ibcast(buf + o, k, MPI_FLOAT, root, comm_of(c), &req));
        ds_status st = wait_req(c, &req, "broadcast");
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

static ds_status mpi_barrier(struct ds_comm *c)
{
    MPI_Request req;
    DS_MPI_CHECK(MPI_Ibarrier(comm_of(c), &req));
    return wait_req(c, &req, "barrier");
}

static void mpi_abort(struct ds_comm *c, int code)
{
    fflush(stdout), fflush(stderr);
    MPI_Abort(c->ctx ? comm_of(c) : MPI_COMM_WORLD, code);
    exit(code); /* MPI_Abort does not return; should it, still end */
}

static const struct ds_comm_ops ds_comm_mpi_ops = {
    .name = "mpi",
    .destroy = mpi_destroy,
    .allreduce_sum = mpi_allreduce,
    .allreduce_sum_host_f64 = mpi_allreduce_f64,
    .reduce_scatter_sum = mpi_reduce_scatter,
    .all_gather = mpi_all_gather,
    .broadcast = mpi_broadcast,
    .barrier = mpi_barrier,
    .abort = mpi_abort,
};

#define CREATE_CHECK(call)                                                                     \
    do {                                                                                       \
        int rc_ = (call);                                                                      \
        if (rc_ != MPI_SUCCESS) {                                                              \
            free(x);                                                                           \
            return ds_err_set(err, DS_ERR_FAILED, "%s failed at %s:%d (MPI error %d)", #call,   \
                              __FILE__, __LINE__, rc_);                                        \
        }                                                                                      \
    } while (0)

ds_status ds_comm_mpi_create(struct ds_backend *be, struct ds_comm *out, struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    struct mpi_ctx *x = calloc(1, sizeof *x);
    if (!x) return ds_err_set(err, DS_ERR_NOMEM, "out of memory for the MPI communicator");
    int inited = 0, provided = 0;
    CREATE_CHECK(MPI_Initialized(&inited));
    if (!inited) {
        /* only the main thread calls MPI (OpenMP threads compute between calls) */
        CREATE_CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        x->initialized_here = 1;
    }
    CREATE_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &x->comm));
    CREATE_CHECK(MPI_Comm_set_errhandler(x->comm, MPI_ERRORS_RETURN));
    CREATE_CHECK(MPI_Comm_rank(x->comm, &out->rank));
    CREATE_CHECK(MPI_Comm_size(x->comm, &out->size));
    out->ops = &ds_comm_mpi_ops;
    out->ctx = x;
    out->be = be;
    return DS_OK;
}

#else /* built without MPI */

ds_status ds_comm_mpi_create(struct ds_backend *be, struct ds_comm *out, struct ds_err *err)
{
    (void)be;
    memset(out, 0, sizeof *out);
    return ds_err_set(err, DS_ERR_UNSUPPORTED,
                      "this descent was built without MPI (install Debian's libopenmpi-dev and "
                      "openmpi-bin, then make)");
}

#endif

/* Whether this process was started by an MPI launcher (mpirun, srun): the
 * environment they set for every rank. */
int ds_comm_mpi_launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") != NULL || getenv("PMI_SIZE") != NULL ||
           getenv("PMIX_RANK") != NULL;
}
