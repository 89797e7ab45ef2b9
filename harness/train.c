/* train.c: the optimizer step and the data order (see train.h). */
#include "train.h"
#include "../core/philox.h"
#include "../core/timer.h"

#include <math.h>
#include <string.h>

ds_status ds_trainer_init(struct ds_trainer *tr, struct ds_backend *be, struct ds_comm *comm,
                          struct ds_task *task, const struct ds_optim_ops *opt,
                          const struct ds_optim_hyper *hyper, const struct ds_schedule *sched,
                          double clip, int decay_bias, int zero1, struct ds_err *err)
{
    memset(tr, 0, sizeof *tr);
    tr->be = be;
    tr->comm = comm;
    tr->task = task;
    tr->opt = opt;
    tr->hyper = *hyper;
    tr->sched = *sched;
    tr->clip = clip;
    size_t np = task->layout->total, n = np;
    tr->ranges = DS_XCALLOC((size_t)task->layout->n, sizeof *tr->ranges);
    tr->n_ranges = ds_params_ranges(task->layout, decay_bias, tr->ranges);
    tr->zero1 = zero1;
    if (zero1) {
        /* rank r's shard: [np*r/P, np*(r+1)/P) */
        int P = comm->size;
        tr->counts = DS_XCALLOC((size_t)P, sizeof *tr->counts);
        for (int r = 0; r < P; r++)
            tr->counts[r] = np * (size_t)(r + 1) / (size_t)P - np * (size_t)r / (size_t)P;
        tr->lo = np * (size_t)comm->rank / (size_t)P;
        tr->n_shard = tr->counts[comm->rank];
        n = tr->n_shard;
        tr->shard_grad = be->ops->alloc(be, (n ? n : 1) * sizeof(float));
        if (!tr->shard_grad) return ds_err_set(err, DS_ERR_NOMEM, "out of memory for a gradient shard of %zu floats", n);
        tr->shard_ranges = DS_XCALLOC((size_t)task->layout->n, sizeof *tr->shard_ranges);
        for (int i = 0; i < tr->n_ranges; i++) {
            size_t a = tr->ranges[i].offset, b = a + tr->ranges[i].n;
            size_t lo = a > tr->lo ? a : tr->lo, hi = b < tr->lo + n ? b : tr->lo + n;
            if (lo < hi)
                tr->shard_ranges[tr->n_shard_ranges++] = (struct ds_param_range){lo, hi - lo, tr->ranges[i].decay};
        }
    }
    tr->guard = be->ops->alloc(be, 2 * sizeof(double));
    if (!tr->guard) return ds_err_set(err, DS_ERR_NOMEM, "out of memory for the gradient guard");
    ds_trainer_set_buckets(tr, DS_BUCKET_BYTES_DEFAULT);
    tr->n_slots = opt->n_slots(hyper);
    DS_ASSERT(tr->n_slots <= DS_OPTIM_MAX_SLOTS);
    if (tr->n_slots > 0) {
        /* slots 16 floats apart at least: each starts on a 64-byte boundary
         * when the buffer does, so the GPU's vector loads apply to all */
        size_t stride = (n + 15) & ~(size_t)15;
        tr->state_buf = be->ops->alloc(be, (size_t)tr->n_slots * stride * sizeof(float));
        if (!tr->state_buf)
            return ds_err_set(err, DS_ERR_NOMEM, "out of memory for %d optimizer state slots of %zu floats", tr->n_slots, n);
        for (int s = 0; s < tr->n_slots; s++) {
            tr->state[s] = tr->state_buf + (size_t)s * stride;
            float v = opt->initial_value ? opt->initial_value(hyper, s) : 0.0f;
            if (v != 0.0f) be->ops->fill(be, tr->state[s], n, v); /* alloc gives zeros */
        }
    }
    return DS_OK;
}

int ds_trainer_set_buckets(struct ds_trainer *tr, size_t bytes)
{
    const struct ds_param_layout *l = tr->task->layout;
    free(tr->bucket_lo);
    tr->bucket_lo = DS_XCALLOC((size_t)l->n + 1, sizeof *tr->bucket_lo);
    tr->bucket_bytes = bytes;
    tr->n_buckets = 0;
    size_t held = 0; /* bytes in the bucket being filled */
    for (int i = l->n - 1; i >= 0; i--) {
        held += l->tensors[i].numel * sizeof(float);
        if (bytes > 0 && held >= bytes && i > 0) {
            tr->bucket_lo[tr->n_buckets++] = l->tensors[i].offset;
            held = 0;
        }
    }
    tr->bucket_lo[tr->n_buckets++] = 0; /* the first tensors: final at the end of backward */
    return tr->n_buckets;
}

/* A collective failed on this rank: the ranks now disagree, so the job ends
 * (every rank), saying which rank and what. */
static void comm_failed(struct ds_trainer *tr, const char *what, ds_status st)
{
    fprintf(stderr, "descent: rank %d of %d: %s failed (%s); ending the job\n", tr->comm->rank,
            tr->comm->size, what, ds_status_text(st));
    tr->comm->ops->abort(tr->comm, 1);
}

/* Starts the sums of every bucket whose gradients are final: grads[lo, end).
 * Called by backward (ds_pass.grads_ready) and once after it. */
static void grads_ready(void *ctx, size_t lo)
{
    struct ds_trainer *tr = ctx;
    size_t np = tr->task->layout->total, piece = DS_BUCKET_PIECE_BYTES / sizeof(float);
    while (tr->next_bucket < tr->n_buckets && tr->bucket_lo[tr->next_bucket] >= lo) {
        int k = tr->next_bucket++;
        size_t a = tr->bucket_lo[k], b = k == 0 ? np : tr->bucket_lo[k - 1];
        for (size_t o = a; o < b; o += piece) {
            size_t m = b - o < piece ? b - o : piece;
            ds_status st = tr->comm->ops->iallreduce_sum(tr->comm, tr->task->grads + o, m);
            if (st != DS_OK) comm_failed(tr, "starting a gradient allreduce", st);
        }
    }
}

size_t ds_trainer_state_bytes(const struct ds_trainer *tr)
{
    return (size_t)tr->n_slots * (tr->zero1 ? tr->n_shard : tr->task->layout->total) * sizeof(float);
}

void ds_trainer_free(struct ds_trainer *tr)
{
    if (!tr) return;
    if (tr->be && tr->be->ops) tr->be->ops->free(tr->be, tr->state_buf);
    if (tr->be && tr->be->ops) tr->be->ops->free(tr->be, tr->shard_grad);
    if (tr->be && tr->be->ops) tr->be->ops->free(tr->be, tr->guard);
    free(tr->ranges);
    free(tr->counts);
    free(tr->shard_ranges);
    free(tr->bucket_lo);
    memset(tr, 0, sizeof *tr);
}

void ds_trainer_step(struct ds_trainer *tr, const int32_t *idx, int n, struct ds_step_info *info)
{
    struct ds_backend *be = tr->be;
    struct ds_task *task = tr->task;
    size_t np = task->layout->total;
    memset(info, 0, sizeof *info);
    info->lr = ds_schedule_lr(&tr->sched, tr->t);

    /* This rank's slice of the global batch: a row's place in the batch, and
     * so its dropout mask, does not depend on the number of ranks. */
    int64_t P = tr->comm->size, rank = tr->comm->rank;
    int lo = (int)((int64_t)n * rank / P), hi = (int)((int64_t)n * (rank + 1) / P);
    double t0 = ds_now();
    struct ds_pass pass = {.step = (uint64_t)tr->t, .row0 = lo, .rows_per_step = n, .train = 1};
    const int overlap = P > 1 && !tr->zero1;
    if (overlap) {
        pass.grads_ready = grads_ready, pass.ready_ctx = tr;
        tr->next_bucket = 0;
    }
    double loss_sum = task->ops->loss_grad(task, idx + lo, hi - lo, &pass, 1.0f / (float)n);
    be->ops->sync(be);
    double t1 = ds_now();
    /* the gradient this rank steps with: all of it, or (zero1) its shard */
    float *g = task->grads;
    size_t g0 = 0; /* g's offset in the flat buffer */
    double sq = 0.0, busy = 0.0, t_wait = t1, gather_s = 0.0, norm_s = 0.0;
    ds_status st = DS_OK;
    if (tr->zero1) {
        st = tr->comm->ops->reduce_scatter_sum(tr->comm, task->grads, tr->shard_grad, tr->counts);
        if (st != DS_OK) comm_failed(tr, "gradient reduce-scatter", st);
        g = tr->shard_grad, g0 = tr->lo;
        double tn = ds_now();
        sq = tr->n_shard ? be->ops->dot(be, tr->n_shard, g, g) : 0.0;
        norm_s = ds_now() - tn;
        double both[2] = {loss_sum, sq};
        st = tr->comm->ops->allreduce_sum_host_f64(tr->comm, both, 2);
        loss_sum = both[0], sq = both[1];
        info->comm_bytes = P > 1 ? 2.0 * (double)np * sizeof(float) + sizeof both : 0.0;
    } else {
        if (overlap) {
            grads_ready(tr, 0); /* what backward did not start (a rank with no rows starts all) */
            st = tr->comm->ops->wait_all(tr->comm, &busy);
            if (st != DS_OK) comm_failed(tr, "gradient allreduce", st);
            t_wait = ds_now();
        }
        st = tr->comm->ops->allreduce_sum_host_f64(tr->comm, &loss_sum, 1);
        info->comm_bytes = P > 1 ? (double)np * sizeof(float) + sizeof loss_sum : 0.0;
    }
    if (st != DS_OK) comm_failed(tr, "loss allreduce", st);
    be->ops->sync(be);
    double t2 = ds_now();
    info->loss = loss_sum / (double)n;
    /* The norm and the clip. Replicated gradients: grad_guard queues them
     * where the gradients are and the step reads its scale there, so on a
     * GPU the norm, the clip and the step need no round trip to the host
     * between them; the norm comes back after the step is queued, and a
     * non-finite one has made the step a no-op. (The step still waits once
     * before this point, for the loss.) A ZeRO-1 shard's square sum needs
     * the other ranks', so that norm is decided on the host. */
    const double *guard = NULL;
    if (!tr->zero1) {
        be->ops->grad_guard(be, np, task->grads, tr->clip, tr->guard);
        guard = tr->guard;
    }
    double norm = tr->zero1 ? sqrt(sq) : 0.0;
    info->finite = isfinite(info->loss) && (!tr->zero1 || isfinite(norm));
    if (info->finite) {
        if (tr->zero1 && tr->clip > 0.0) {
            /* torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1 */
            double coef = tr->clip / (norm + 1e-6);
            if (coef < 1.0) be->ops->scale(be, tr->n_shard, g, (float)coef);
        }
        struct ds_optim_scalars s = {.lr = (float)info->lr, .t = tr->t + 1};
        const struct ds_param_range *ranges = tr->zero1 ? tr->shard_ranges : tr->ranges;
        int n_ranges = tr->zero1 ? tr->n_shard_ranges : tr->n_ranges;
        for (int r = 0; r < n_ranges; r++) {
            const struct ds_param_range *rg = &ranges[r];
            s.l2 = rg->decay ? tr->hyper.l2 : 0.0f;
            s.l1 = rg->decay ? tr->hyper.l1 : 0.0f;
            s.wd = rg->decay ? tr->hyper.wd : 0.0f;
            float *slot[DS_OPTIM_MAX_SLOTS] = {0};
            for (int k = 0; k < tr->n_slots; k++) slot[k] = tr->state[k] + (rg->offset - g0);
            be->ops->optim_step(be, tr->opt, &tr->hyper, &s, rg->n, task->params + rg->offset,
                                g + (rg->offset - g0), slot, guard);
        }
        if (tr->zero1) {
            double ta = ds_now();
            if ((st = tr->comm->ops->all_gather(tr->comm, task->params, tr->counts)) != DS_OK)
                comm_failed(tr, "parameter all-gather", st);
            gather_s = ds_now() - ta;
        }
    }
    if (!tr->zero1) {
        double gd[2];
        be->ops->download(be, gd, tr->guard, sizeof gd); /* waits for the step */
        norm = sqrt(gd[0]);
        info->finite = info->finite && isfinite(norm);
    }
    info->grad_norm = norm;
    if (info->finite) tr->t++;
    be->ops->sync(be);
    double t3 = ds_now();
    info->compute_s = t1 - t0;
    /* zero1's all-gather runs inside the optimizer phase but is comm; its
     * shard's norm runs inside the comm phase but is the optimizer's */
    info->comm_s = t2 - t1 - norm_s + gather_s;
    info->optimizer_s = t3 - t2 + norm_s - gather_s;
    /* without overlap every collective is exposed; with it, the buckets'
     * in-flight time plus the loss sum after them (at least what was
     * exposed: waking the main thread after the last sum is comm too) */
    info->comm_total_s = overlap ? fmax(busy + (t2 - t_wait), info->comm_s) : info->comm_s;
}

ds_status ds_sampler_init(struct ds_sampler *s, int64_t n, int64_t batch, int shuffle,
                          uint64_t seed, struct ds_err *err)
{
    memset(s, 0, sizeof *s);
    if (n < 1 || n > INT32_MAX || batch < 1 || batch > n)
        return ds_err_set(err, DS_ERR_USAGE, "batch %lld for %lld samples", (long long)batch, (long long)n);
    s->n = n;
    s->batch = batch;
    s->shuffle = shuffle;
    s->seed = seed;
    s->perm = calloc((size_t)n, sizeof *s->perm);
    if (!s->perm) return ds_err_set(err, DS_ERR_NOMEM, "out of memory for a permutation of %lld", (long long)n);
    s->pos = n; /* the first call starts epoch 0 */
    return DS_OK;
}

void ds_sampler_free(struct ds_sampler *s)
{
    if (!s) return;
    free(s->perm);
    memset(s, 0, sizeof *s);
}

int ds_sampler_next(struct ds_sampler *s, const int32_t **idx)
{
    if (s->pos >= s->n) {
        if (s->shuffle)
            ds_rng_permutation(s->seed, DS_STREAM_SHUFFLE, (uint64_t)s->epoch, s->perm, (int32_t)s->n);
        else
            for (int64_t i = 0; i < s->n; i++) s->perm[i] = (int32_t)i;
        s->epoch++;
        s->pos = 0;
    }
    int64_t take = s->n - s->pos < s->batch ? s->n - s->pos : s->batch;
    *idx = s->perm + s->pos;
    s->pos += take;
    return (int)take;
}

int64_t ds_sampler_steps_per_epoch(const struct ds_sampler *s)
{
    return (s->n + s->batch - 1) / s->batch;
}
