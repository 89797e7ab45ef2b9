/*
 * train.h: one optimizer step of a task, and the data order.
 *
 * A step, in PyTorch's order:
 *   loss, g = task.loss_grad(this rank's slice of the batch, scale 1/global batch)
 *   g = allreduce_sum(g)                  (the mean over the global batch; identity for one process),
 *                                         bucket by bucket, started from inside backward
 *   norm = ||g||_2 ; if clip: g *= min(1, clip / (norm + 1e-6))   (clip_grad_norm_)
 *   optimizer step over the flat buffer, range by range (biases may skip decay)
 * With zero1 the allreduce and the step become: reduce-scatter g into this
 * rank's shard, the norm from the shards' sums of squares, the step on the
 * shard, all-gather the parameters (the same arithmetic, 1/ranks the state).
 * Everything the step needs is allocated by ds_trainer_init; a step allocates nothing.
 */
#ifndef DS_TRAIN_H
#define DS_TRAIN_H

#include "../core/comm.h"
#include "../optimizers/schedule.h"
#include "../workloads/workload.h"

struct ds_trainer {
    struct ds_backend *be;        /* not owned */
    struct ds_comm *comm;         /* not owned */
    struct ds_task *task;         /* not owned */
    const struct ds_optim_ops *opt;
    struct ds_optim_hyper hyper;
    struct ds_schedule sched;
    double clip;                  /* 0: off */
    int n_slots;
    float *state_buf;             /* [n_slots * n] backend memory, owned */
    float *state[DS_OPTIM_MAX_SLOTS];
    int n_ranges;
    struct ds_param_range *ranges; /* owned */
    long t;                       /* steps taken */
    /* ZeRO-1: the optimizer state is sharded over the ranks. Gradients are
     * reduce-scattered into this rank's shard [lo, lo + n_shard), the rank
     * steps its shard, and the parameters are all-gathered. */
    int zero1;
    size_t lo, n_shard;
    size_t *counts;               /* [ranks] shard sizes, owned */
    float *shard_grad;            /* [n_shard] backend memory, owned */
    double *guard;                /* [2] backend memory, owned: grad_guard's norm and scale */
    int n_shard_ranges;
    struct ds_param_range *shard_ranges; /* the ranges cut to the shard, owned */
    /* Gradient buckets (data parallel without zero1): bucket k is
     * [bucket_lo[k], bucket_lo[k-1]) (bucket_lo[-1] = the end), whole tensors
     * from the last backward: it is summed over the ranks as soon as backward
     * has made it final, while backward goes on (PyTorch DDP's buckets). */
    size_t bucket_bytes;          /* the cap: a bucket closes once it holds this much */
    int n_buckets;
    size_t *bucket_lo;            /* [n_buckets] descending, owned */
    int next_bucket;              /* the next one to start, during a step */
};

/* Buckets close at 32 KiB (whole tensors, so most hold one or a few
 * layers): the models here hold 0.25-13 MB of gradients, 100x less than
 * those DDP's 25 MiB buckets are sized for, and a bucket per layer or two is
 * what lets the last layers' sums run behind the first layers' backward.
 * A started sum costs ~10-30 us on Open MPI's shared memory: a few per step. */
#define DS_BUCKET_BYTES_DEFAULT ((size_t)32 << 10)
/* The most one started sum carries: Open MPI's shared-memory allreduce is
 * fastest at 1-4 MiB here (descent bench-comm, 2 ranks: 4.0-4.9 GB/s at its
 * best), 1.6 GB/s at 16 MiB and under 1 GB/s from 32 MiB, where it makes a
 * fresh temporary buffer per call. (The classic CNN's 12.8 MB layer, split
 * or not, is hidden behind its convolutions' backward either way.) */
#define DS_BUCKET_PIECE_BYTES ((size_t)4 << 20)

struct ds_step_info {
    double loss;       /* mean loss of the batch */
    double grad_norm;  /* global norm before clipping */
    double lr;         /* the rate this step used */
    int finite;        /* 0 if loss or gradient was NaN or infinite (the step was not applied) */
    double compute_s;  /* forward and backward (with the sums started behind it) */
    double comm_s;     /* exposed communication: waiting for the sums after backward */
    double optimizer_s;
    double comm_total_s; /* the time sums were in flight, hidden behind backward or not */
    double comm_bytes;   /* bytes this rank passed to collectives */
};

ds_status ds_trainer_init(struct ds_trainer *tr, struct ds_backend *be, struct ds_comm *comm,
                          struct ds_task *task, const struct ds_optim_ops *opt,
                          const struct ds_optim_hyper *hyper, const struct ds_schedule *sched,
                          double clip, int decay_bias, int zero1, struct ds_err *err);
void ds_trainer_free(struct ds_trainer *tr);
/* Re-cuts the gradient buckets at `bytes` each (0: one bucket, summed after
 * backward: no overlap). Returns the bucket count. */
int ds_trainer_set_buckets(struct ds_trainer *tr, size_t bytes);
/* Bytes of optimizer state this rank holds. */
size_t ds_trainer_state_bytes(const struct ds_trainer *tr);

/* One step on training rows idx[0..n) (the global batch). */
void ds_trainer_step(struct ds_trainer *tr, const int32_t *idx, int n, struct ds_step_info *info);

/* The data order: one permutation per epoch from (seed, DS_STREAM_SHUFFLE,
 * epoch), or file order with shuffle off; the last batch of an epoch may be
 * short (PyTorch's DataLoader with drop_last=False). */
struct ds_sampler {
    int64_t n, batch;
    int shuffle;
    uint64_t seed;
    int32_t *perm;   /* [n] owned */
    int64_t epoch;   /* epochs started */
    int64_t pos;     /* next position in perm */
};

ds_status ds_sampler_init(struct ds_sampler *s, int64_t n, int64_t batch, int shuffle,
                          uint64_t seed, struct ds_err *err);
void ds_sampler_free(struct ds_sampler *s);
/* Points *idx at the next batch's indices and returns its size. */
int ds_sampler_next(struct ds_sampler *s, const int32_t **idx);
int64_t ds_sampler_steps_per_epoch(const struct ds_sampler *s);

#endif
