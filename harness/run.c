/*
 * run.c: `descent run` (one training run: the loop, its timing, curve.csv,
 * summary.csv, meta.json, checkpoints) and `descent export`.
 */
#include "run.h"
#include "output.h"
#include "train.h"
#include "../core/fileio.h"
#include "../core/safetensors.h"
#include "../core/timer.h"
#include "../core/topology.h"
#include "../workloads/npy.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

ds_status ds_session_open(struct ds_session *s, int argc, char **argv, struct ds_err *err)
{
    memset(s, 0, sizeof *s);
    ds_config_init(&s->cfg);
    ds_status st = ds_config_parse_args(&s->cfg, argc, argv, err);
    if (st == DS_OK) st = ds_config_resolve(&s->cfg, stderr, err);
    if (st != DS_OK) return st;
    s->cfg_resolved = s->cfg;
    struct ds_config *c = &s->cfg;
    s->workload = ds_workload_find(c->workload);
    s->opt = ds_optim_find(c->optimizer);

    /* data parallel: threads per rank default to the cores divided among the ranks */
    if (c->ranks > 1 && c->threads == 0) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        c->threads = ncpu / c->ranks > 0 ? ncpu / c->ranks : 1;
    }
    st = ds_backend_create_tf32(c->backend, (int)c->threads, c->tf32, &s->be, err);
    if (st != DS_OK) return st;
    s->have_be = 1;
    /* `mpirun -np 4 descent run` without --ranks 4 would be four separate
     * one-rank runs writing one folder: refuse it */
    int launched = ds_comm_mpi_launched_size();
    if (c->ranks == 1 && launched > 1)
        return ds_err_set(err, DS_ERR_USAGE,
                          "--ranks 1, but the launcher started %d processes: add --ranks %d "
                          "(or run descent run --ranks %d without mpirun)",
                          launched, launched, launched);
    st = ds_comm_create(c->gpus > 1 ? "nccl" : c->ranks > 1 ? "mpi" : "local", &s->be, &s->comm, err);
    if (st != DS_OK) return st;
    s->have_comm = 1;
    if (strcmp(c->bind, "core") == 0 && s->be.pci_bus_id[0]) {
        /* a GPU rank: the CPUs nearest its GPU, not a share of all cores */
        char where[256];
        st = ds_topology_bind_pci(s->be.pci_bus_id, where, sizeof where, err);
        if (st != DS_OK) return st;
        if (s->comm.rank == 0) fprintf(stderr, "descent: --bind core: rank 0 %s\n", where);
    } else if (strcmp(c->bind, "core") == 0) {
        int first = 0, count = 0;
        st = ds_topology_bind_rank(s->comm.rank, s->comm.size, &first, &count, err);
        if (st != DS_OK) return st;
        if (s->comm.size > 1 && s->comm.rank == 0)
            fprintf(stderr, "descent: --bind core: %d ranks, rank 0 on cores %d..%d\n", s->comm.size,
                    first, first + count - 1);
    }
    if (s->comm.size != c->ranks)
        return ds_err_set(err, DS_ERR_USAGE,
                          "--ranks %ld, but the launcher started %d process%s (mpirun -np %ld, or "
                          "let descent launch it: descent run --ranks %ld ...)",
                          c->ranks, s->comm.size, s->comm.size == 1 ? "" : "es", c->ranks, c->ranks);

    /* rows per forward pass: full-batch steps run in micro-batches */
    long rows = s->opt->full_batch ? c->micro_batch : c->batch;
    struct ds_workload_args a = {
        .seed = c->seed,
        .dim = c->dim,
        .n_train = c->n_train,
        .n_eval = c->n_eval,
        .kappa = c->kappa,
        .noise = c->noise,
        .margin = c->margin,
        .label_noise = c->label_noise,
        .rotate = c->rotate,
        .l2 = c->l2,
        .decay_bias = c->decay_bias,
        /* The optimum is of data loss + l2/2 ||theta||^2 whatever l1 and wd
         * are: with them the suboptimality says how far their fixed point
         * lies from it. */
        .optimum_known = 1,
        .dropout = (float)c->dropout,
        .hidden = c->hidden,
        .variant = c->variant,
        .normalize = c->normalize,
        .n_val = c->val,
        .eval_limit = c->eval_limit,
        .max_batch = (int)(rows < c->micro_batch ? rows : c->micro_batch),
    };
    st = s->workload->create(&a, &s->be, &s->task, err);
    if (st != DS_OK) return st;
    s->have_task = 1;

    if (s->opt->full_batch) {
        c->batch = s->task.n_train;
    } else if (c->batch > s->task.n_train) {
        return ds_err_set(err, DS_ERR_USAGE, "--batch %ld is larger than the training set of %s (%lld sample%s)",
                          c->batch, c->workload, (long long)s->task.n_train, s->task.n_train == 1 ? ": it has no data, use --batch 1" : "s");
    }
    return DS_OK;
}

void ds_session_close(struct ds_session *s)
{
    if (s->have_task) ds_task_destroy(&s->task);
    if (s->have_comm) ds_comm_destroy(&s->comm);
    if (s->have_be) ds_backend_destroy(&s->be);
    s->have_task = s->have_comm = s->have_be = 0;
}

static int fail(ds_status st, const struct ds_err *err)
{
    fprintf(stderr, "descent: %s\n", err->msg[0] ? err->msg : ds_status_text(st));
    return ds_status_exit_code(st);
}

/* The objective the optimum refers to: data loss + l2/2 ||theta_decayed||^2. */
static double objective_penalty(struct ds_session *s, const struct ds_trainer *tr)
{
    if (s->cfg.l2 == 0.0) return 0.0;
    double sq = 0.0;
    for (int r = 0; r < tr->n_ranges; r++)
        if (tr->ranges[r].decay)
            sq += s->be.ops->dot(&s->be, tr->ranges[r].n, s->task.params + tr->ranges[r].offset,
                                 s->task.params + tr->ranges[r].offset);
    return 0.5 * s->cfg.l2 * sq;
}

static double dist_to_opt(struct ds_session *s, float *host)
{
    size_t n = s->task.layout->total;
    s->be.ops->download(&s->be, host, s->task.params, n * sizeof(float));
    double d = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)host[i] - s->task.x_star[i];
        d += e * e;
    }
    return sqrt(d);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

struct ds_eval_point {
    double train_loss, eval_loss, eval_metric, subopt, dist;
    double val_loss, val_metric; /* NaN without a validation split */
};

static void evaluate_point(struct ds_session *s, const struct ds_trainer *tr, float *host,
                           int full_train, struct ds_eval_point *e)
{
    double metric_unused;
    e->subopt = e->dist = NAN;
    if (full_train || s->task.has_optimum) {
        double tl;
        s->task.ops->evaluate(&s->task, 0, &tl, &metric_unused);
        if (full_train) e->train_loss = tl;
        if (s->task.has_optimum) {
            e->subopt = tl + objective_penalty(s, tr) - s->task.f_star;
            if (s->task.x_star) e->dist = dist_to_opt(s, host);
        }
    }
    s->task.ops->evaluate(&s->task, 1, &e->eval_loss, &e->eval_metric);
    e->val_loss = e->val_metric = NAN;
    if (s->task.n_val > 0) s->task.ops->evaluate(&s->task, 2, &e->val_loss, &e->val_metric);
}

/* flag names the option in messages ("--save"). */
static ds_status write_params(struct ds_session *s, const char *flag, const char *path,
                              float *host, struct ds_err *err)
{
    s->be.ops->download(&s->be, host, s->task.params, s->task.layout->total * sizeof(float));
    ds_status st = ds_safetensors_save(path, s->task.layout, host, "descent", err);
    if (st != DS_OK) {
        char m[sizeof err->msg];
        memcpy(m, err->msg, sizeof m);
        ds_err_set(err, st, "%s %.1000s", flag, m);
    }
    return st;
}

/* Fails before training when the folder a file is to be written in cannot be
 * written, so a long run never ends by losing its checkpoint. */
static ds_status check_writable(const char *flag, const char *path, struct ds_err *err)
{
    char dir[DS_CFG_STR];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = '\0';
    else *slash = '\0';
    if (access(dir, W_OK) != 0)
        return ds_err_set(err, DS_ERR_USAGE, "%s %s: cannot write in %s: %s", flag, path, dir, strerror(errno));
    return DS_OK;
}

static const char *const ds_summary_results[] = {
    "final_train_loss", "final_eval_loss", "final_eval_metric", "best_eval_metric",
    "steps_to_target", "time_to_target_s", "samples_per_s", "step_ms_median", "compute_ms",
    "comm_ms", "optimizer_ms", "peak_rss_mb", "status",
    /* extra columns */
    "metric", "n_params", "steps_planned", "steps_done", "epochs_done", "train_s", "eval_s", "optimum_loss",
    "final_suboptimality", "final_dist_to_opt", "final_val_loss", "final_val_metric", "best_val_metric",
    "final_train_metric", "arm_id", "optimizer_state_mb", "zero1_saved_mb",
    /* data parallel: comm_ms above is what the step waited for (exposed);
     * comm_total_ms the time collectives were in flight, behind backward or
     * not; comm_mb what this rank passed to collectives per step */
    "comm_total_ms", "comm_mb", "buckets"};

static volatile sig_atomic_t launched_job; /* mpirun's pid while ds_launch_ranks waits */

static void forward_signal(int sig)
{
    if (launched_job > 0) kill((pid_t)launched_job, sig);
}

/* descent run --ranks N, not under a launcher yet: runs `mpirun -np N
 * descent run ...` (the same arguments), so every rank runs this same
 * command; returns the job's exit code. */
int ds_launch_ranks(long ranks, const char *command, int argc, char **argv)
{
    if (!ds_comm_mpi_built()) {
        fprintf(stderr, "descent: --ranks %ld: this descent was built without MPI (install "
                        "Debian's openmpi-bin and libopenmpi-dev, then make)\n", ranks);
        return 2;
    }
    char self[DS_CFG_STR], np[32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "descent: --ranks: cannot find this executable: %s\n", strerror(errno));
        return 2;
    }
    self[n] = '\0';
    snprintf(np, sizeof np, "%ld", ranks);
    char **a = calloc((size_t)argc + 12, sizeof(char *));
    DS_ASSERT(a != NULL);
    int k = 0;
    a[k++] = "mpirun";
    a[k++] = "-np";
    a[k++] = np;
    /* more ranks than cores is allowed (and marked so in the scaling study);
     * binding is left to descent's own --bind (hwloc) */
    a[k++] = "--oversubscribe";
    a[k++] = "--bind-to";
    a[k++] = "none";
    a[k++] = self;
    a[k++] = (char *)command;
    for (int i = 0; i < argc; i++) a[k++] = argv[i];
    a[k] = NULL;
    if (geteuid() == 0) { /* Open MPI refuses root unless told it is deliberate */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }
    fflush(stdout), fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* mpirun (and with it the ranks) ends if this launcher dies */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        execvp("mpirun", a);
        fprintf(stderr, "descent: --ranks %ld needs Open MPI's mpirun: %s (apt-get install openmpi-bin)\n",
                ranks, strerror(errno));
        _exit(2);
    }
    free(a);
    if (pid < 0) {
        fprintf(stderr, "descent: --ranks: fork: %s\n", strerror(errno));
        return 1;
    }
    /* a signal that would end this launcher (a sweep stopping its run,
     * Ctrl-C) goes to mpirun, which ends the ranks, and the launcher then
     * reports the job's end as usual */
    launched_job = pid;
    struct sigaction sa, old_sa[3];
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward_signal;
    sigemptyset(&sa.sa_mask);
    const int sigs[3] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &sa, &old_sa[i]);
    /* the job's exit in descent's terms: 0 ok, 2 bad input, 1 anything else
     * (a rank that crashed or was killed: mpirun has named it) */
    int wst;
    while (waitpid(pid, &wst, 0) < 0)
        if (errno != EINTR) {
            wst = -1;
            break;
        }
    for (int i = 0; i < 3; i++) sigaction(sigs[i], &old_sa[i], NULL);
    launched_job = 0;
    if (wst == -1) return 1;
    if (WIFEXITED(wst) && (WEXITSTATUS(wst) == 0 || WEXITSTATUS(wst) == 2)) return WEXITSTATUS(wst);
    return 1;
}

/* A test hook: DESCENT_FAULT="RANK:STEP:KIND" makes rank RANK fail at step
 * STEP, KIND error (a bad-input error), crash (SIGKILL) or hang (never
 * returns), so the tests can check that one rank's failure ends the job with
 * a message naming the rank and cause, and leaves no process behind. */
static ds_status injected_fault(int rank, long step, struct ds_err *err)
{
    const char *f = getenv("DESCENT_FAULT");
    int r;
    long at;
    char kind[16];
    if (!f || sscanf(f, "%d:%ld:%15s", &r, &at, kind) != 3 || r != rank || at != step) return DS_OK;
    if (strcmp(kind, "crash") == 0) raise(SIGKILL);
    if (strcmp(kind, "hang") == 0)
        for (;;) pause();
    return ds_err_set(err, DS_ERR_INPUT, "injected fault at step %ld (DESCENT_FAULT=%s)", step, f);
}

int ds_cmd_run(int argc, char **argv)
{
    struct ds_err err = {{0}};
    {
        struct ds_config pre;
        ds_config_init(&pre);
        if (ds_config_parse_args(&pre, argc, argv, &err) == DS_OK && (pre.ranks > 1 || pre.gpus > 1) &&
            !ds_comm_mpi_launched()) {
            /* bad settings are said once, here, not by every rank */
            ds_status vst = ds_config_resolve(&pre, NULL, &err);
            if (vst != DS_OK) {
                fprintf(stderr, "descent: %s\n", err.msg);
                return ds_status_exit_code(vst);
            }
            if (pre.gpus > 0) { /* no GPU here: say so once, not from every rank */
                struct ds_backend probe;
                vst = ds_backend_create(pre.backend, 0, &probe, &err);
                if (vst != DS_OK) {
                    fprintf(stderr, "descent: %s\n", err.msg);
                    return ds_status_exit_code(vst);
                }
                ds_backend_destroy(&probe);
            }
            return ds_launch_ranks(pre.ranks, "run", argc, argv);
        }
    }
    struct ds_session s;
    ds_status st = ds_session_open(&s, argc, argv, &err);
    if (st != DS_OK) {
        ds_session_close(&s);
        return fail(st, &err);
    }
    struct ds_config *c = &s.cfg;
    struct ds_task *task = &s.task;
    size_t np = task->layout->total;
    int code = 0;
    float *host = DS_XCALLOC(np, sizeof(float));
    struct ds_trainer tr;
    struct ds_sampler smp;
    int have_tr = 0, have_smp = 0, curve_fd = -1;
    double *step_times = NULL;
    char dir[DS_CFG_STR + 64], path[DS_CFG_STR + 128], run_id[17];

    /* Parameters: from --init, or the initialiser. */
    if (c->init[0]) {
        st = ds_safetensors_load(c->init, task->layout, host, &err);
        if (st != DS_OK) {
            char m[sizeof err.msg];
            memcpy(m, err.msg, sizeof m);
            ds_err_set(&err, st, "--init %.1000s", m);
            goto out;
        }
        s.be.ops->upload(&s.be, task->params, host, np * sizeof(float));
    } else {
        task->ops->init_params(task, ds_init_find(c->init_scheme), c->seed);
    }
    /* every rank starts from rank 0's parameters; only rank 0 writes files */
    const int writer = s.comm.rank == 0;
    st = s.comm.ops->broadcast(&s.comm, task->params, np, 0);
    if (st != DS_OK) {
        ds_err_set(&err, st, "broadcasting the initial parameters failed");
        goto out;
    }

    st = ds_sampler_init(&smp, task->n_train, c->batch, c->shuffle, c->seed, &err);
    if (st != DS_OK) goto out;
    have_smp = 1;
    int64_t spe = ds_sampler_steps_per_epoch(&smp);
    long total = c->steps > 0 ? c->steps : c->epochs * (long)spe;

    struct ds_schedule sched = {
        .kind = ds_sched_find(c->schedule),
        .base_lr = c->lr,
        .min_lr = c->min_lr,
        .gamma = c->gamma,
        .step_size = c->step_size > 0 ? c->step_size : (total / 3 > 0 ? total / 3 : 1),
        .warmup = c->warmup,
        .total = total,
    };
    if (sched.kind == DS_SCHED_WARMUP_COSINE && c->warmup == 0)
        sched.warmup = total / 20 > 0 ? total / 20 : 1;
    if (sched.warmup >= total)
        fprintf(stderr, "descent: warning: --warmup %ld covers the whole run of %ld steps\n", sched.warmup, total);
    /* The run_id is of the config as resolved from flags and defaults, before
     * the values derived from the data (full-batch size, schedule lengths):
     * so a sweep knows each run's id without loading its data, and the
     * derived values (a function of the rest) add nothing to the identity.
     * arm_id leaves out lr and seed too: the runs a sweep tunes over. */
    ds_config_run_id(&s.cfg_resolved, run_id);
    char arm_id[17];
    ds_config_arm_id(&s.cfg_resolved, arm_id);
    /* Resolved schedule lengths go back into the config (replaying it gives
     * the same run); --epochs/--steps stay as given (one of them), the total
     * is recorded as steps_planned. */
    c->warmup = sched.warmup;
    c->step_size = sched.step_size;

    struct ds_optim_hyper h;
    s.opt->defaults(&h);
    h.lr = (float)c->lr;
    h.momentum = (float)c->momentum;
    h.dampening = (float)c->dampening;
    h.nesterov = c->nesterov;
    h.beta1 = (float)c->beta1;
    h.beta2 = (float)c->beta2;
    h.eps = (float)c->eps;
    h.amsgrad = c->amsgrad;
    h.alpha = (float)c->alpha;
    h.centered = c->centered;
    h.lr_decay = (float)c->lr_decay;
    h.initial_accumulator = (float)c->initial_accumulator;
    h.l2 = (float)c->l2;
    h.l1 = (float)c->l1;
    h.wd = (float)c->wd;
    st = ds_trainer_init(&tr, &s.be, &s.comm, task, s.opt, &h, &sched, c->clip, c->decay_bias, c->zero1, &err);
    if (st != DS_OK) ds_trainer_free(&tr); /* what it allocated before failing */
    if (st != DS_OK) goto out;
    have_tr = 1;
    ds_trainer_set_buckets(&tr, (size_t)c->bucket_kb << 10);

    if (c->save[0]) {
        st = check_writable("--save", c->save, &err);
        if (st != DS_OK) goto out;
    }
    if (c->save_init[0] && writer) {
        st = write_params(&s, "--save-init", c->save_init, host, &err);
        if (st != DS_OK) goto out;
    }

    /* Output folder and files. */
    if (c->out[0]) {
        snprintf(dir, sizeof dir, "%s", c->out);
    } else {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(dir, sizeof dir, "results/%s-%s-%s", stamp, c->workload, c->optimizer);
    }
    if (writer) st = ds_mkdir_p(dir, &err);
    if (st != DS_OK) goto out;

    cJSON *extra = cJSON_CreateObject();
    char started[32];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    cJSON_AddStringToObject(extra, "run_id", run_id);
    cJSON_AddStringToObject(extra, "started", started);
    cJSON *wj = cJSON_AddObjectToObject(extra, "workload");
    cJSON_AddStringToObject(wj, "description", task->description);
    cJSON_AddNumberToObject(wj, "n_params", (double)np);
    cJSON_AddNumberToObject(wj, "n_train", (double)task->n_train);
    cJSON_AddNumberToObject(wj, "n_eval", (double)task->n_eval);
    cJSON_AddStringToObject(wj, "metric", task->metric);
    cJSON_AddBoolToObject(wj, "metric_higher_is_better", task->metric_higher_better);
    cJSON_AddNumberToObject(wj, "steps_per_epoch", (double)spe);
    cJSON_AddNumberToObject(wj, "steps_planned", (double)total);
    if (task->has_optimum) cJSON_AddNumberToObject(wj, "optimum_loss", task->f_star);
    if (task->L > 0) {
        cJSON_AddNumberToObject(wj, "mu", task->mu);
        cJSON_AddNumberToObject(wj, "L", task->L);
    }
    cJSON *tensors = cJSON_AddArrayToObject(wj, "tensors");
    for (int i = 0; i < task->layout->n; i++) {
        const struct ds_param_tensor *t = &task->layout->tensors[i];
        cJSON *tj = cJSON_CreateObject();
        cJSON_AddStringToObject(tj, "name", t->name);
        cJSON *sh = cJSON_AddArrayToObject(tj, "shape");
        for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
        cJSON_AddItemToArray(tensors, tj);
    }
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (writer) st = ds_meta_write(path, c, argc, argv, s.be.ops->describe(&s.be), extra, &err);
    if (st != DS_OK) {
        cJSON_Delete(extra);
        goto out;
    }

    snprintf(path, sizeof path, "%s/curve.csv", dir);
    curve_fd = writer ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644) : -1;
    if (writer && curve_fd < 0) {
        st = ds_err_set(&err, DS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        cJSON_Delete(extra);
        goto out;
    }
    struct ds_csv_line line;
    ds_csv_begin(&line);
    for (int i = 0; i < ds_curve_ncolumns; i++) ds_csv_str(&line, ds_curve_columns[i]);
    ds_csv_end(&line);
    if (writer) ds_file_append_line(curve_fd, line.buf, line.len, path, &err);

    long eval_every = c->eval_every;
    if (eval_every <= 0) {
        eval_every = total / 50 > 0 ? total / 50 : 1;
        if (c->epochs > 0 && c->epochs <= 50) eval_every = (long)spe;
    }
    size_t cap = (size_t)(total < 1000000 ? total : 1000000);
    step_times = DS_XCALLOC(cap ? cap : 1, sizeof *step_times);

    /* The loop. Evaluation time is kept out of wall_s (as AlgoPerf does). */
    double train_s = 0.0, eval_s = 0.0, compute_s = 0.0, comm_s = 0.0, opt_s = 0.0;
    double comm_total_s = 0.0, comm_bytes = 0.0;
    double interval_loss = 0.0, interval_norm = 0.0, interval_s = 0.0, best = NAN, best_val = NAN;
    long interval_steps = 0, steps_to_target = -1;
    double time_to_target = NAN;
    int64_t samples = 0, interval_samples = 0;
    const char *status = "ok";
    struct ds_eval_point ep;
    struct ds_step_info info = {.lr = ds_schedule_lr(&sched, 0)};
    double te = ds_now();
    evaluate_point(&s, &tr, host, 1, &ep);
    eval_s += ds_now() - te;
    double first_lr = info.lr;
    for (long step = 0;; step++) {
        int eval_now = step == 0 || step == total || (step % eval_every) == 0;
        if (eval_now) {
            if (step > 0) {
                te = ds_now();
                evaluate_point(&s, &tr, host, 0, &ep);
                eval_s += ds_now() - te;
                ep.train_loss = interval_loss / (double)interval_samples;
            }
            int reached = task->metric_higher_better ? ep.eval_metric >= c->target : ep.eval_metric <= c->target;
            if (!isnan(c->target) && reached && steps_to_target < 0) {
                steps_to_target = step;
                time_to_target = train_s;
            }
            if (isnan(best) || (task->metric_higher_better ? ep.eval_metric > best : ep.eval_metric < best))
                best = ep.eval_metric;
            ds_csv_begin(&line);
            ds_csv_str(&line, run_id);
            ds_csv_int(&line, step);
            ds_csv_num(&line, (double)samples / (double)task->n_train);
            ds_csv_int(&line, samples);
            ds_csv_num(&line, train_s);
            ds_csv_num(&line, step ? info.lr : first_lr);
            ds_csv_num(&line, ep.train_loss);
            ds_csv_num(&line, ep.eval_loss);
            ds_csv_num(&line, ep.eval_metric);
            ds_csv_num(&line, step ? interval_norm / (double)interval_steps : NAN);
            ds_csv_num(&line, step && interval_s > 0 ? (double)interval_samples / interval_s : NAN);
            ds_csv_num(&line, ep.subopt);
            ds_csv_num(&line, ep.dist);
            ds_csv_num(&line, ep.val_loss);
            ds_csv_num(&line, ep.val_metric);
            if (!isnan(ep.val_metric) &&
                (isnan(best_val) || (task->metric_higher_better ? ep.val_metric > best_val : ep.val_metric < best_val)))
                best_val = ep.val_metric;
            ds_csv_end(&line);
            if (writer) st = ds_file_append_line(curve_fd, line.buf, line.len, path, &err);
            if (st != DS_OK) break;
            interval_loss = interval_norm = interval_s = 0.0;
            interval_steps = 0;
            interval_samples = 0;
        }
        if (step == total) break;
        st = injected_fault(s.comm.rank, step, &err);
        if (st != DS_OK) break;
        const int32_t *idx;
        int n = ds_sampler_next(&smp, &idx);
        double t0 = ds_now();
        ds_trainer_step(&tr, idx, n, &info);
        double dt = ds_now() - t0;
        if (!info.finite) {
            status = "diverged";
            ds_csv_begin(&line);
            ds_csv_str(&line, run_id);
            ds_csv_int(&line, step + 1);
            ds_csv_num(&line, (double)(samples + n) / (double)task->n_train);
            ds_csv_int(&line, samples + n);
            ds_csv_num(&line, train_s + dt);
            ds_csv_num(&line, info.lr);
            ds_csv_nonfinite(&line, info.loss);
            for (int k = 0; k < 2; k++) ds_csv_num(&line, NAN);
            ds_csv_nonfinite(&line, info.grad_norm);
            for (int k = 0; k < 5; k++) ds_csv_num(&line, NAN);
            ds_csv_end(&line);
            if (writer) ds_file_append_line(curve_fd, line.buf, line.len, path, &err);
            if (writer) fprintf(stderr, "descent: run diverged at step %ld (loss %g, gradient norm %g); recorded as status=diverged\n",
                    step + 1, fabs(info.loss), fabs(info.grad_norm));
            break;
        }
        if ((size_t)step < cap) step_times[step] = dt;
        train_s += dt;
        interval_s += dt;
        compute_s += info.compute_s;
        comm_s += info.comm_s;
        comm_total_s += info.comm_total_s;
        comm_bytes += info.comm_bytes;
        opt_s += info.optimizer_s;
        samples += n;
        interval_samples += n;
        interval_loss += info.loss * (double)n; /* a short last batch weighs less */
        interval_norm += info.grad_norm;
        interval_steps++;
    }
    if (st != DS_OK) status = "failed";
    /* Data parallel: each phase as the slowest rank (the most compute) saw
     * it, the rank the others wait for; rank 0 may have the fewest rows. */
    if (st == DS_OK && s.comm.size > 1) {
        int P = s.comm.size;
        double *v = calloc((size_t)P * 4, sizeof *v);
        DS_ASSERT(v != NULL);
        double *mine = v + 4 * (size_t)s.comm.rank;
        mine[0] = compute_s, mine[1] = comm_s, mine[2] = comm_total_s, mine[3] = opt_s;
        st = s.comm.ops->allreduce_sum_host_f64(&s.comm, v, (size_t)P * 4);
        if (st == DS_OK) {
            int slow = 0;
            for (int r = 1; r < P; r++)
                if (v[4 * r] > v[4 * slow]) slow = r;
            compute_s = v[4 * slow], comm_s = v[4 * slow + 1];
            comm_total_s = v[4 * slow + 2], opt_s = v[4 * slow + 3];
        } else {
            ds_err_set(&err, st, "gathering the ranks' step times failed");
            status = "failed";
        }
        free(v);
    }

    /* Final measurements and summary. */
    double final_train = NAN, final_train_metric = NAN;
    if (strcmp(status, "ok") == 0) {
        te = ds_now();
        task->ops->evaluate(task, 0, &final_train, &final_train_metric);
        eval_s += ds_now() - te;
    }
    long done = tr.t;
    size_t nt = (size_t)(done < (long)cap ? done : (long)cap);
    qsort(step_times, nt, sizeof *step_times, cmp_double);
    double median_ms = nt ? 1e3 * (nt % 2 ? step_times[nt / 2] : 0.5 * (step_times[nt / 2 - 1] + step_times[nt / 2])) : NAN;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);

    ds_csv_begin(&line);
    ds_csv_str(&line, "run_id");
    for (int k = 0; k < ds_config_key_count(); k++) ds_csv_str(&line, ds_config_key_name(k));
    for (size_t k = 0; k < DS_ARRAY_LEN(ds_summary_results); k++) ds_csv_str(&line, ds_summary_results[k]);
    ds_csv_end(&line);
    struct ds_csv_line row;
    ds_csv_begin(&row);
    ds_csv_str(&row, run_id);
    char v[DS_CFG_STR + 32];
    for (int k = 0; k < ds_config_key_count(); k++) {
        ds_config_format(c, k, v, sizeof v);
        ds_csv_str(&row, v);
    }
    int ok = strcmp(status, "ok") == 0;
    ds_csv_num(&row, final_train);
    ds_csv_num(&row, ok ? ep.eval_loss : NAN);
    ds_csv_num(&row, ok ? ep.eval_metric : NAN);
    ds_csv_num(&row, best);
    ds_csv_num(&row, steps_to_target >= 0 ? (double)steps_to_target : NAN);
    ds_csv_num(&row, time_to_target);
    ds_csv_num(&row, train_s > 0 ? (double)samples / train_s : NAN);
    ds_csv_num(&row, median_ms);
    ds_csv_num(&row, done ? 1e3 * compute_s / (double)done : NAN);
    ds_csv_num(&row, done ? 1e3 * comm_s / (double)done : NAN);
    ds_csv_num(&row, done ? 1e3 * opt_s / (double)done : NAN);
    ds_csv_num(&row, (double)ru.ru_maxrss / 1024.0);
    ds_csv_str(&row, status);
    ds_csv_str(&row, task->metric);
    ds_csv_int(&row, (long long)np);
    ds_csv_int(&row, total);
    ds_csv_int(&row, done);
    ds_csv_num(&row, (double)samples / (double)task->n_train);
    ds_csv_num(&row, train_s);
    ds_csv_num(&row, eval_s);
    ds_csv_num(&row, task->has_optimum ? task->f_star : NAN);
    ds_csv_num(&row, ok ? ep.subopt : NAN);
    ds_csv_num(&row, ok ? ep.dist : NAN);
    ds_csv_num(&row, ok ? ep.val_loss : NAN);
    ds_csv_num(&row, ok ? ep.val_metric : NAN);
    ds_csv_num(&row, best_val);
    ds_csv_num(&row, final_train_metric); /* the metric on the training set: the generalization gap */
    ds_csv_str(&row, arm_id);
    /* this rank's optimizer state, and what sharding saved against holding it all */
    double state_mb = (double)ds_trainer_state_bytes(&tr) / 1048576.0;
    ds_csv_num(&row, state_mb);
    ds_csv_num(&row, c->zero1 ? (double)tr.n_slots * (double)np * 4.0 / 1048576.0 - state_mb : 0.0);
    ds_csv_num(&row, done ? 1e3 * comm_total_s / (double)done : NAN);
    ds_csv_num(&row, done ? comm_bytes / (double)done / 1048576.0 : NAN);
    ds_csv_int(&row, s.comm.size > 1 && !c->zero1 ? tr.n_buckets : 0);
    ds_csv_end(&row);
    char *summary = malloc(line.len + row.len + 1);
    DS_ASSERT(summary != NULL);
    memcpy(summary, line.buf, line.len);
    memcpy(summary + line.len, row.buf, row.len + 1);
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    ds_status st2 = writer ? ds_file_write_atomic(path, summary, line.len + row.len, &err) : DS_OK;
    free(summary);

    /* meta.json again, now with how it ended. */
    now = time(NULL);
    char finished[32];
    strftime(finished, sizeof finished, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    cJSON_AddStringToObject(extra, "finished", finished);
    cJSON_AddStringToObject(extra, "status", status);
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (st2 == DS_OK && writer) st2 = ds_meta_write(path, c, argc, argv, s.be.ops->describe(&s.be), extra, &err);
    cJSON_Delete(extra);

    if (st2 == DS_OK && ok && c->save[0] && writer) st2 = write_params(&s, "--save", c->save, host, &err);
    if (!ok && c->save[0] && writer) fprintf(stderr, "descent: --save %s: not written, the run did not finish\n", c->save);
    if (st == DS_OK) st = st2;
    if (st == DS_OK && !writer) {
        if (!ok) code = 1;
    } else if (st == DS_OK) {
        printf("%s %s/%s: %ld steps, %s %s %.6g, %.0f samples/s -> %s\n", run_id, c->workload,
               c->optimizer, done, task->metric, ok ? "final" : "(diverged)", ok ? ep.eval_metric : NAN,
               train_s > 0 ? (double)samples / train_s : 0.0, dir);
        if (!ok) code = 1;
    }
out:
    if (st != DS_OK && s.have_comm && s.comm.size > 1) {
        /* one rank failed: say which and why, and end every rank (the others
         * would otherwise wait in their next collective) */
        fprintf(stderr, "descent: rank %d of %d: %s\n", s.comm.rank, s.comm.size,
                err.msg[0] ? err.msg : ds_status_text(st));
        s.comm.ops->abort(&s.comm, ds_status_exit_code(st));
    }
    if (curve_fd >= 0) close(curve_fd);
    free(step_times);
    if (have_tr) ds_trainer_free(&tr);
    if (have_smp) ds_sampler_free(&smp);
    free(host);
    ds_session_close(&s);
    if (st != DS_OK) return fail(st, &err);
    return code;
}

int ds_cmd_export(int argc, char **argv)
{
    struct ds_err err = {{0}};
    struct ds_session s;
    ds_status st = ds_session_open(&s, argc, argv, &err);
    if (st == DS_OK && !s.cfg.out[0])
        st = ds_err_set(&err, DS_ERR_USAGE, "export needs --out DIR");
    if (st == DS_OK) st = ds_mkdir_p(s.cfg.out, &err);
    if (st == DS_OK) st = s.task.ops->export_data(&s.task, s.cfg.out, &err);
    char path[DS_CFG_STR + 64];
    if (st == DS_OK && s.task.x_star) {
        int64_t shape[1] = {(int64_t)s.task.layout->total};
        snprintf(path, sizeof path, "%s/x_star.npy", s.cfg.out);
        st = ds_npy_write(path, "<f8", 1, shape, s.task.x_star, &err);
    }
    if (st == DS_OK) {
        cJSON *extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "description", s.task.description);
        cJSON_AddStringToObject(extra, "metric", s.task.metric);
        cJSON_AddNumberToObject(extra, "n_train", (double)s.task.n_train);
        cJSON_AddNumberToObject(extra, "n_eval", (double)s.task.n_eval);
        if (s.task.has_optimum) cJSON_AddNumberToObject(extra, "optimum_loss", s.task.f_star);
        cJSON *tensors = cJSON_AddArrayToObject(extra, "tensors");
        for (int i = 0; i < s.task.layout->n; i++) {
            const struct ds_param_tensor *t = &s.task.layout->tensors[i];
            cJSON *tj = cJSON_CreateObject();
            cJSON_AddStringToObject(tj, "name", t->name);
            cJSON *sh = cJSON_AddArrayToObject(tj, "shape");
            for (int d = 0; d < t->ndim; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)t->shape[d]));
            cJSON_AddNumberToObject(tj, "offset", (double)t->offset);
            cJSON_AddItemToArray(tensors, tj);
        }
        snprintf(path, sizeof path, "%s/workload.json", s.cfg.out);
        st = ds_meta_write(path, &s.cfg, argc, argv, s.be.ops->describe(&s.be), extra, &err);
        cJSON_Delete(extra);
    }
    if (st == DS_OK) printf("exported %s (seed %llu) to %s\n", s.cfg.workload, s.cfg.seed, s.cfg.out);
    ds_session_close(&s);
    return st == DS_OK ? 0 : fail(st, &err);
}
