/*
 * comm_nccl.cu: the communicator over NCCL, one process and one GPU per
 * rank (descent run --gpus N). Not yet run on a GPU.
 *
 * Bootstrap: rank 0's ncclUniqueId reaches the others over MPI (the MPI
 * communicator, which also carries the host-side sums, the barrier and the
 * abort); a single GPU needs neither (the local communicator serves it).
 * NCCL is opened at run time (dlopen libnccl.so.2), so a binary built with
 * CUDA starts on machines without NCCL and only --gpus N > 1 needs it.
 *
 * Collectives on device buffers run on the backend's stream, so they are
 * ordered with the kernels around them without host waits. The gradient
 * buckets (iallreduce_sum) run on a second stream that waits for the
 * compute stream at the moment backward reports the bucket final (an event),
 * so they overlap the rest of backward; wait_all makes the compute stream
 * wait for them (and measures their in-flight time from events).
 * ncclReduceScatter and ncclAllGather need equal shares; ZeRO-1's shards
 * differ by one element at most, so they are per-rank ncclReduce and
 * ncclBroadcast calls in one group.
 */
#include "cuda_common.cuh"

#include <dlfcn.h>
#include <nccl.h>
#include <string.h>

extern "C" {
#include "comm.h"
}

/* The NCCL entry points descent uses, resolved from libnccl.so.2. */
struct nccl_api {
    void *lib;
    decltype(&ncclGetUniqueId) GetUniqueId;
    decltype(&ncclCommInitRank) CommInitRank;
    decltype(&ncclCommDestroy) CommDestroy;
    decltype(&ncclCommAbort) CommAbort;
    decltype(&ncclAllReduce) AllReduce;
    decltype(&ncclReduce) Reduce;
    decltype(&ncclBroadcast) Broadcast;
    decltype(&ncclGroupStart) GroupStart;
    decltype(&ncclGroupEnd) GroupEnd;
    decltype(&ncclGetErrorString) GetErrorString;
};

#define DS_NCCL_CHECK(x, call)                                                                \
    do {                                                                                      \
        ncclResult_t r_ = (call);                                                             \
        if (r_ != ncclSuccess) {                                                              \
            fprintf(stderr, "descent: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,   \
                    (x)->api.GetErrorString(r_));                                             \
            return DS_ERR_FAILED;                                                             \
        }                                                                                     \
    } while (0)

#define MAX_JOBS 1024

struct nccl_ctx {
    struct nccl_api api;
    ncclComm_t comm;
    struct ds_comm host;      /* MPI: bootstrap, host sums, barrier, abort */
    cudaStream_t side;        /* the buckets' stream */
    cudaEvent_t ready[MAX_JOBS], stop[MAX_JOBS];
    int jobs;
    cudaEvent_t done;
};

static struct nccl_ctx *ctx_of(struct ds_comm *c) { return (struct nccl_ctx *)c->ctx; }
static cudaStream_t stream_of(struct ds_comm *c) { return ds_cuda_of(c->be)->stream; }

static ds_status load_api(struct nccl_api *a, struct ds_err *err)
{
    memset(a, 0, sizeof *a);
    a->lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib) a->lib = dlopen("libnccl.so", RTLD_NOW | RTLD_LOCAL);
    if (!a->lib)
        return ds_err_set(err, DS_ERR_UNSUPPORTED, "--gpus: NCCL (libnccl.so.2) is not installed here: %s",
                          dlerror());
#define SYM(name)                                                                             \
    do {                                                                                      \
        *(void **)&a->name = dlsym(a->lib, "nccl" #name);                                     \
        if (!a->name)                                                                         \
            return ds_err_set(err, DS_ERR_UNSUPPORTED, "--gpus: libnccl has no nccl" #name);  \
    } while (0)
    SYM(GetUniqueId);
    SYM(CommInitRank);
    SYM(CommDestroy);
    SYM(CommAbort);
    SYM(AllReduce);
    SYM(Reduce);
    SYM(Broadcast);
    SYM(GroupStart);
    SYM(GroupEnd);
    SYM(GetErrorString);
#undef SYM
    return DS_OK;
}

static void nccl_destroy(struct ds_comm *c)
{
    struct nccl_ctx *x = ctx_of(c);
    if (!x) return;
    cudaStreamSynchronize(x->side);
    x->api.CommDestroy(x->comm);
    for (int i = 0; i < MAX_JOBS; i++) {
        cudaEventDestroy(x->ready[i]);
        cudaEventDestroy(x->stop[i]);
    }
    cudaEventDestroy(x->done);
    cudaStreamDestroy(x->side);
    ds_comm_destroy(&x->host);
    dlclose(x->api.lib);
    free(x);
    c->ctx = NULL;
}

static ds_status nccl_allreduce(struct ds_comm *c, float *buf, size_t n)
{
    struct nccl_ctx *x = ctx_of(c);
    DS_NCCL_CHECK(x, x->api.AllReduce(buf, buf, n, ncclFloat, ncclSum, x->comm, stream_of(c)));
    return DS_OK;
}

static ds_status nccl_allreduce_f64(struct ds_comm *c, double *buf, size_t n)
{
    struct nccl_ctx *x = ctx_of(c);
    return x->host.ops->allreduce_sum_host_f64(&x->host, buf, n);
}

static ds_status nccl_reduce_scatter(struct ds_comm *c, const float *send, float *recv,
                                     const size_t *counts)
{
    struct nccl_ctx *x = ctx_of(c);
    size_t off = 0;
    DS_NCCL_CHECK(x, x->api.GroupStart());
    for (int r = 0; r < c->size; r++) {
        DS_NCCL_CHECK(x, x->api.Reduce(send + off, recv, counts[r], ncclFloat, ncclSum, r, x->comm,
                                       stream_of(c)));
        off += counts[r];
    }
    DS_NCCL_CHECK(x, x->api.GroupEnd());
    return DS_OK;
}

static ds_status nccl_all_gather(struct ds_comm *c, float *buf, const size_t *counts)
{
    struct nccl_ctx *x = ctx_of(c);
    size_t off = 0;
    DS_NCCL_CHECK(x, x->api.GroupStart());
    for (int r = 0; r < c->size; r++) {
        DS_NCCL_CHECK(x, x->api.Broadcast(buf + off, buf + off, counts[r], ncclFloat, r, x->comm,
                                          stream_of(c)));
        off += counts[r];
    }
    DS_NCCL_CHECK(x, x->api.GroupEnd());
    return DS_OK;
}

static ds_status nccl_broadcast(struct ds_comm *c, float *buf, size_t n, int root)
{
    struct nccl_ctx *x = ctx_of(c);
    DS_NCCL_CHECK(x, x->api.Broadcast(buf, buf, n, ncclFloat, root, x->comm, stream_of(c)));
    return DS_OK;
}

static ds_status nccl_barrier(struct ds_comm *c)
{
    struct nccl_ctx *x = ctx_of(c);
    DS_CUDA_CHECK(cudaStreamSynchronize(stream_of(c)));
    return x->host.ops->barrier(&x->host);
}

/* A bucket: the side stream waits for the compute stream's work so far (the
 * bucket's gradients), then sums it, timed by events. */
static ds_status nccl_iallreduce(struct ds_comm *c, float *buf, size_t n)
{
    struct nccl_ctx *x = ctx_of(c);
    if (x->jobs == MAX_JOBS) { /* more buckets than events: finish those first */
        double ignored;
        ds_status st = c->ops->wait_all(c, &ignored);
        if (st != DS_OK) return st;
    }
    int j = x->jobs++;
    DS_CUDA_CHECK(cudaEventRecord(x->ready[j], stream_of(c)));
    DS_CUDA_CHECK(cudaStreamWaitEvent(x->side, x->ready[j], 0));
    DS_NCCL_CHECK(x, x->api.AllReduce(buf, buf, n, ncclFloat, ncclSum, x->comm, x->side));
    DS_CUDA_CHECK(cudaEventRecord(x->stop[j], x->side));
    return DS_OK;
}

/* The compute stream waits for the buckets on the device; the in-flight
 * time (the union of each bucket's [ready, done], from its events) needs the
 * host to wait for the side stream, which the step's timing does anyway. */
static ds_status nccl_wait_all(struct ds_comm *c, double *busy_s)
{
    struct nccl_ctx *x = ctx_of(c);
    DS_CUDA_CHECK(cudaEventRecord(x->done, x->side));
    DS_CUDA_CHECK(cudaStreamWaitEvent(stream_of(c), x->done, 0));
    double busy = 0.0;
    if (x->jobs) {
        DS_CUDA_CHECK(cudaEventSynchronize(x->done));
        float end_ms = 0.0f; /* from ready[0], the latest stop counted so far */
        for (int j = 0; j < x->jobs; j++) {
            float a = 0.0f, b = 0.0f;
            DS_CUDA_CHECK(cudaEventElapsedTime(&a, x->ready[0], x->ready[j]));
            DS_CUDA_CHECK(cudaEventElapsedTime(&b, x->ready[0], x->stop[j]));
            float from = a > end_ms ? a : end_ms;
            if (b > from) busy += (double)(b - from) * 1e-3;
            if (b > end_ms) end_ms = b;
        }
    }
    x->jobs = 0;
    if (busy_s) *busy_s = busy;
    return DS_OK;
}

static void nccl_abort(struct ds_comm *c, int code)
{
    struct nccl_ctx *x = ctx_of(c);
    if (x) {
        x->api.CommAbort(x->comm);
        x->host.ops->abort(&x->host, code);
    }
    exit(code);
}

static const struct ds_comm_ops ds_comm_nccl_ops = {
    /* .name = */ "nccl",
    /* .destroy = */ nccl_destroy,
    /* .allreduce_sum = */ nccl_allreduce,
    /* .allreduce_sum_host_f64 = */ nccl_allreduce_f64,
    /* .reduce_scatter_sum = */ nccl_reduce_scatter,
    /* .all_gather = */ nccl_all_gather,
    /* .broadcast = */ nccl_broadcast,
    /* .barrier = */ nccl_barrier,
    /* .iallreduce_sum = */ nccl_iallreduce,
    /* .wait_all = */ nccl_wait_all,
    /* .abort = */ nccl_abort,
};

extern "C" ds_status ds_comm_nccl_create(struct ds_backend *be, struct ds_comm *out,
                                         struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    if (!be || !be->ops || strcmp(be->ops->name, "cuda") != 0)
        return ds_err_set(err, DS_ERR_USAGE, "--gpus: the NCCL communicator needs --backend cuda");
    struct nccl_ctx *x = (struct nccl_ctx *)calloc(1, sizeof *x);
    if (!x) return ds_err_set(err, DS_ERR_NOMEM, "out of memory for the NCCL communicator");
    ds_status st = load_api(&x->api, err);
    if (st == DS_OK) st = ds_comm_mpi_create(be, &x->host, err);
    if (st != DS_OK) {
        if (x->api.lib) dlclose(x->api.lib);
        free(x);
        return st;
    }
    /* rank 0's id to every rank, over MPI as 32 floats' worth of bytes */
    union {
        ncclUniqueId id;
        float f[(sizeof(ncclUniqueId) + sizeof(float) - 1) / sizeof(float)];
    } u;
    memset(&u, 0, sizeof u);
    ncclResult_t r = ncclSuccess;
    if (x->host.rank == 0) r = x->api.GetUniqueId(&u.id);
    if (r == ncclSuccess)
        st = x->host.ops->broadcast(&x->host, u.f, sizeof u.f / sizeof u.f[0], 0);
    if (r == ncclSuccess && st == DS_OK)
        r = x->api.CommInitRank(&x->comm, x->host.size, u.id, x->host.rank);
    if (r != ncclSuccess || st != DS_OK) {
        const char *why = r != ncclSuccess ? x->api.GetErrorString(r) : "the id broadcast failed";
        ds_comm_destroy(&x->host);
        dlclose(x->api.lib);
        free(x);
        return ds_err_set(err, DS_ERR_FAILED, "--gpus: NCCL could not start: %s", why);
    }
    DS_CUDA_CHECK(cudaStreamCreateWithFlags(&x->side, cudaStreamNonBlocking));
    for (int i = 0; i < MAX_JOBS; i++) {
        DS_CUDA_CHECK(cudaEventCreate(&x->ready[i]));
        DS_CUDA_CHECK(cudaEventCreate(&x->stop[i]));
    }
    DS_CUDA_CHECK(cudaEventCreateWithFlags(&x->done, cudaEventDisableTiming));
    out->ops = &ds_comm_nccl_ops;
    out->ctx = x;
    out->be = be;
    out->rank = x->host.rank;
    out->size = x->host.size;
    return DS_OK;
}
