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
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int ds_comm_mpi_built(void) { return DS_WITH_MPI; }

#if DS_WITH_MPI
#include <mpi.h>

/* One started gradient sum (iallreduce_sum). */
struct mpi_job {
    float *buf;
    size_t n;
    double t_start; /* when it was started (queued) */
};

struct mpi_ctx {
    MPI_Comm comm;
    int initialized_here; /* MPI_Finalize is ours to call */
    /* Overlap: started sums wait in jobs[done..queued) and the worker thread
     * runs them in order, so they progress while the main thread computes
     * backward (Open MPI moves a nonblocking collective only inside MPI
     * calls, which the main thread does not make mid-backward; PyTorch's
     * gloo and Horovod use a background thread for the same reason). The
     * main thread makes no MPI call while the worker has work (wait_all
     * first), so MPI_THREAD_SERIALIZED suffices. Without it (MPI initialised
     * by someone else at a lower level), wait_all runs the jobs itself. */
    int threaded;
    pthread_t worker;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct mpi_job *jobs; /* [cap], owned */
    size_t cap, queued, taken, done;
    int quit;
    int hurry;            /* the main thread is waiting: poll without pausing (under mu) */
    pthread_cond_t hurry_cv; /* signalled when hurry is set: ends a pause at once */
    ds_status st;         /* the first failure since the last wait_all */
    double busy_s;        /* in-flight seconds since the last wait_all: the union of
                             each job's [started, done], waiting for the worker included */
    double busy_end;      /* the end of the last interval counted in busy_s */
    struct ds_comm self;  /* the worker's copy of the communicator (the caller's may move) */
    int *vcounts;         /* [2 * size]: the v-collectives' counts, then displacements */
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
static ds_status wait_req_on(struct ds_comm *c, MPI_Request *req, const char *what,
                             struct mpi_ctx *pol)
{
    double t0 = now_s(), limit = comm_timeout();
    long pause_ns = 50000;
    for (long k = 0;; k++) {
        int done = 0;
        DS_MPI_CHECK(MPI_Test(req, &done, MPI_STATUS_IGNORE));
        if (done) return DS_OK;
        /* The worker thread (pol), while the main thread computes: poll hot
         * for 200 us (a peer at the same point of its backward answers within
         * that), then pause between tests, 50 us doubling to 400 us, so that
         * waiting for a peer still deep in its backward does not take the
         * core this rank's own backward runs on; the main thread ends a pause
         * as soon as it waits for the sums itself (hurry). Always hot gave
         * the MLP its best step but slowed the small CNN by 25% (2 ranks on
         * 2 cores); fixed 20 us pauses cost it 6% in wake-ups. */
        if (pol && now_s() - t0 > 200e-6) {
            pthread_mutex_lock(&pol->mu);
            if (!pol->hurry) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                ts.tv_nsec += pause_ns;
                if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
                pthread_cond_timedwait(&pol->hurry_cv, &pol->mu, &ts);
                if (pause_ns < 400000L) pause_ns *= 2;
            }
            pthread_mutex_unlock(&pol->mu);
        }
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

static ds_status wait_req(struct ds_comm *c, MPI_Request *req, const char *what)
{
    return wait_req_on(c, req, what, NULL);
}

/* buf[0..n) summed in place over the ranks, in pieces MPI's int counts hold. */
static ds_status allreduce_f32(struct ds_comm *c, float *buf, size_t n, struct mpi_ctx *pol)
{
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Request req;
        DS_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, comm_of(c), &req));
        ds_status st = wait_req_on(c, &req, "allreduce", pol);
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

/* Runs a job (not under the lock) and records it; once one has failed the
 * rest are only marked done: the ranks no longer agree on what is summed. */
static void run_job(struct ds_comm *c, struct mpi_job job, struct mpi_ctx *pol)
{
    struct mpi_ctx *x = c->ctx;
    pthread_mutex_lock(&x->mu);
    int skip = x->st != DS_OK;
    pthread_mutex_unlock(&x->mu);
    ds_status st = skip ? DS_OK : allreduce_f32(c, job.buf, job.n, pol);
    double t1 = now_s();
    pthread_mutex_lock(&x->mu);
    if (!skip) {
        double from = job.t_start > x->busy_end ? job.t_start : x->busy_end;
        if (t1 > from) x->busy_s += t1 - from;
        if (t1 > x->busy_end) x->busy_end = t1;
    }
    if (st != DS_OK && x->st == DS_OK) x->st = st;
    x->done++;
    pthread_cond_broadcast(&x->idle);
    pthread_mutex_unlock(&x->mu);
}

static void *worker_main(void *arg)
{
    struct ds_comm *c = arg;
    struct mpi_ctx *x = c->ctx;
    pthread_mutex_lock(&x->mu);
    for (;;) {
        while (!x->quit && x->taken == x->queued) pthread_cond_wait(&x->work, &x->mu);
        if (x->taken == x->queued) break; /* quit, and nothing left */
        struct mpi_job job = x->jobs[x->taken++];
        pthread_mutex_unlock(&x->mu);
        run_job(c, job, x);
        pthread_mutex_lock(&x->mu);
    }
    pthread_mutex_unlock(&x->mu);
    return NULL;
}

static ds_status mpi_iallreduce(struct ds_comm *c, float *buf, size_t n)
{
    struct mpi_ctx *x = c->ctx;
    pthread_mutex_lock(&x->mu);
    if (x->queued == x->cap) { /* past the 1024 made at creation: a model of >1024 buckets */
        size_t cap = x->cap ? 2 * x->cap : 1024;
        struct mpi_job *j = realloc(x->jobs, cap * sizeof *j);
        if (!j) {
            pthread_mutex_unlock(&x->mu);
            return DS_ERR_NOMEM;
        }
        x->jobs = j, x->cap = cap;
    }
    x->jobs[x->queued++] = (struct mpi_job){buf, n, now_s()};
    pthread_cond_signal(&x->work);
    pthread_mutex_unlock(&x->mu);
    return DS_OK;
}

static ds_status mpi_wait_all(struct ds_comm *c, double *busy_s)
{
    struct mpi_ctx *x = c->ctx;
    if (!x->threaded) { /* no worker: run what was started, here */
        while (x->taken < x->queued) run_job(c, x->jobs[x->taken++], NULL);
    } else {
        pthread_mutex_lock(&x->mu);
        x->hurry = 1;
        pthread_cond_broadcast(&x->hurry_cv);
        while (x->done < x->queued) pthread_cond_wait(&x->idle, &x->mu);
        x->hurry = 0;
        pthread_mutex_unlock(&x->mu);
    }
    /* the worker is idle now: nothing else reads these */
    pthread_mutex_lock(&x->mu);
    ds_status st = x->st;
    if (busy_s) *busy_s = x->busy_s;
    x->st = DS_OK, x->busy_s = x->busy_end = 0.0;
    x->queued = x->taken = x->done = 0;
    pthread_mutex_unlock(&x->mu);
    return st;
}

static void mpi_destroy(struct ds_comm *c)
{
    struct mpi_ctx *x = c->ctx;
    if (!x) return;
    if (x->threaded) {
        pthread_mutex_lock(&x->mu);
        x->quit = 1;
        pthread_cond_signal(&x->work);
        pthread_mutex_unlock(&x->mu);
        pthread_join(x->worker, NULL);
    }
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->work);
    pthread_cond_destroy(&x->idle);
    pthread_cond_destroy(&x->hurry_cv);
    free(x->jobs);
    free(x->vcounts);
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
    return allreduce_f32(c, buf, n, NULL);
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

/* int counts and displacements for the v-collectives, in the ctx's
 * [2 * size] buffer (made once: ZeRO-1 calls these every step);
 * DS_ERR_UNSUPPORTED past INT_MAX elements (2^31 floats: an 8 GiB model). */
static ds_status int_counts(struct ds_comm *c, const size_t *counts)
{
    struct mpi_ctx *x = c->ctx;
    size_t off = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > (size_t)INT_MAX || off > (size_t)INT_MAX) return DS_ERR_UNSUPPORTED;
        x->vcounts[r] = (int)counts[r], x->vcounts[c->size + r] = (int)off;
        off += counts[r];
    }
    return DS_OK;
}

static ds_status mpi_reduce_scatter(struct ds_comm *c, const float *send, float *recv,
                                    const size_t *counts)
{
    ds_status st = int_counts(c, counts);
    if (st != DS_OK) return st;
    MPI_Request req;
    DS_MPI_CHECK(MPI_Ireduce_scatter(send, recv, ((struct mpi_ctx *)c->ctx)->vcounts, MPI_FLOAT,
                                     MPI_SUM, comm_of(c), &req));
    return wait_req(c, &req, "reduce-scatter");
}

static ds_status mpi_all_gather(struct ds_comm *c, float *buf, const size_t *counts)
{
    ds_status st = int_counts(c, counts);
    if (st != DS_OK) return st;
    const int *ic = ((struct mpi_ctx *)c->ctx)->vcounts;
    MPI_Request req;
    DS_MPI_CHECK(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, ic, ic + c->size,
                                 MPI_FLOAT, comm_of(c), &req));
    return wait_req(c, &req, "all-gather");
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
    .iallreduce_sum = mpi_iallreduce,
    .wait_all = mpi_wait_all,
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
        /* one thread at a time calls MPI: the main one, or the overlap worker
         * while the main one computes (OpenMP threads never do) */
        CREATE_CHECK(MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided));
        x->initialized_here = 1;
    } else {
        CREATE_CHECK(MPI_Query_thread(&provided));
    }
    CREATE_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &x->comm));
    CREATE_CHECK(MPI_Comm_set_errhandler(x->comm, MPI_ERRORS_RETURN));
    CREATE_CHECK(MPI_Comm_rank(x->comm, &out->rank));
    CREATE_CHECK(MPI_Comm_size(x->comm, &out->size));
    x->vcounts = calloc(2 * (size_t)out->size, sizeof *x->vcounts);
    if (!x->vcounts) {
        MPI_Comm_free(&x->comm);
        free(x);
        return ds_err_set(err, DS_ERR_NOMEM, "out of memory for the MPI communicator");
    }
    out->ops = &ds_comm_mpi_ops;
    out->ctx = x;
    out->be = be;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->work, NULL);
    pthread_cond_init(&x->idle, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&x->hurry_cv, &ca);
    pthread_condattr_destroy(&ca);
    x->cap = 1024; /* started sums per step; grown (once) only for more buckets */
    x->jobs = calloc(x->cap, sizeof *x->jobs);
    if (!x->jobs) x->cap = 0;
    x->self = *out;
    x->threaded = provided >= MPI_THREAD_SERIALIZED && out->size > 1 &&
                  pthread_create(&x->worker, NULL, worker_main, &x->self) == 0;
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

int ds_comm_mpi_launched_size(void)
{
    const char *names[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *e = getenv(names[i]);
        if (e && atoi(e) > 0) return atoi(e);
    }
    return ds_comm_mpi_launched() ? 0 : 1;
}
