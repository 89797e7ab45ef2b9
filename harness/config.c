/*
 * config.c: the table of run options (see config.h). One row per flag:
 * its type, where it lives in struct ds_config, its range, its default,
 * which workloads/optimizers it applies to, and its help line.
 */
#include "config.h"
#include "../core/comm.h"
#include "../core/model.h"
#include "../optimizers/optim.h"
#include "../optimizers/schedule.h"
#include "../workloads/workload.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

enum ds_ktype { K_STR, K_F64, K_LONG, K_U64, K_BOOL };

struct ds_key {
    const char *name;
    enum ds_ktype type;
    size_t off, size;
    double min, max;
    int min_open, max_open; /* exclusive bounds */
    const char *def;        /* default text; NULL: resolved later */
    const char *workloads;  /* comma list it applies to; NULL: all */
    const char *optimizers; /* comma list it applies to; NULL: all */
    int path;               /* a file or folder: not part of the run's identity */
    const char *help;
};

#define F(field) offsetof(struct ds_config, field), sizeof(((struct ds_config *)0)->field)
#define INF HUGE_VAL

static const struct ds_key ds_keys_[] = {
    {"workload", K_STR, F(workload), 0, 0, 0, 0, "quadratic", NULL, NULL, 0, "task to train (descent list)"},
    {"optimizer", K_STR, F(optimizer), 0, 0, 0, 0, "sgd", NULL, NULL, 0, "gd, sgd, adam, adamw, rmsprop, adagrad"},
    {"lr", K_F64, F(lr), 0, INF, 1, 1, NULL, NULL, NULL, 0, "learning rate (default: the optimizer's)"},
    {"momentum", K_F64, F(momentum), 0, 1, 0, 1, NULL, NULL, "gd,sgd,rmsprop", 0, "momentum factor"},
    {"dampening", K_F64, F(dampening), 0, 1, 0, 0, "0", NULL, "gd,sgd", 0, "momentum dampening (sgd)"},
    {"nesterov", K_BOOL, F(nesterov), 0, 1, 0, 0, "off", NULL, "gd,sgd", 0, "Nesterov momentum (sgd)"},
    {"beta1", K_F64, F(beta1), 0, 1, 0, 1, NULL, NULL, "adam,adamw", 0, "first-moment decay (adam)"},
    {"beta2", K_F64, F(beta2), 0, 1, 0, 1, NULL, NULL, "adam,adamw", 0, "second-moment decay (adam)"},
    {"eps", K_F64, F(eps), 0, 1, 1, 0, NULL, NULL, "adam,adamw,rmsprop,adagrad", 0, "denominator epsilon"},
    {"amsgrad", K_BOOL, F(amsgrad), 0, 1, 0, 0, "off", NULL, "adam,adamw", 0, "AMSGrad variant (adam)"},
    {"alpha", K_F64, F(alpha), 0, 1, 0, 1, NULL, NULL, "rmsprop", 0, "smoothing constant (rmsprop)"},
    {"centered", K_BOOL, F(centered), 0, 1, 0, 0, "off", NULL, "rmsprop", 0, "centred RMSprop"},
    {"lr-decay", K_F64, F(lr_decay), 0, INF, 0, 1, "0", NULL, "adagrad", 0, "learning-rate decay (adagrad)"},
    {"initial-accumulator", K_F64, F(initial_accumulator), 0, INF, 0, 1, "0", NULL, "adagrad", 0, "initial accumulator value (adagrad)"},
    {"l2", K_F64, F(l2), 0, INF, 0, 1, "0", NULL, NULL, 0, "L2 penalty added to the gradient (torch weight_decay)"},
    {"l1", K_F64, F(l1), 0, INF, 0, 1, "0", NULL, NULL, 0, "L1 penalty: l1 * sign(w) added to the gradient"},
    {"wd", K_F64, F(wd), 0, INF, 0, 1, NULL, NULL, NULL, 0, "decoupled weight decay w <- w (1 - lr wd) (adamw: 0.01)"},
    {"decay-bias", K_BOOL, F(decay_bias), 0, 1, 0, 0, "on", NULL, NULL, 0, "apply l2/l1/wd to biases too"},
    {"dropout", K_F64, F(dropout), 0, 1, 0, 1, NULL, "fmnist-mlp,fmnist-cnn", NULL, 0, "dropout probability (fmnist-mlp: after each hidden layer; fmnist-cnn: before the last layer, default 0.5)"},
    {"clip", K_F64, F(clip), 0, INF, 0, 1, "0", NULL, NULL, 0, "clip the global gradient norm to this (0: off)"},
    {"schedule", K_STR, F(schedule), 0, 0, 0, 0, "constant", NULL, NULL, 0, "constant, step, cosine, warmup-cosine"},
    {"warmup", K_LONG, F(warmup), 0, 1e15, 0, 0, NULL, NULL, NULL, 0, "linear warm-up steps (warmup-cosine: 5% of the run)"},
    {"step-size", K_LONG, F(step_size), 1, 1e15, 0, 0, NULL, NULL, NULL, 0, "steps between decays of the step schedule (default: a third of the run)"},
    {"gamma", K_F64, F(gamma), 0, 1, 1, 0, "0.1", NULL, NULL, 0, "decay factor of the step schedule"},
    {"min-lr", K_F64, F(min_lr), 0, INF, 0, 1, "0", NULL, NULL, 0, "final learning rate of cosine schedules"},
    {"batch", K_LONG, F(batch), 1, 1e9, 0, 0, NULL, NULL, NULL, 0, "global batch size (gd: the training set)"},
    {"epochs", K_LONG, F(epochs), 1, 1e9, 0, 0, NULL, NULL, NULL, 0, "training length in epochs"},
    {"steps", K_LONG, F(steps), 1, 1e12, 0, 0, NULL, NULL, NULL, 0, "training length in optimizer steps"},
    {"micro-batch", K_LONG, F(micro_batch), 1, 1e9, 0, 0, "4096", NULL, NULL, 0, "rows per forward pass; larger batches accumulate gradients"},
    {"eval-every", K_LONG, F(eval_every), 0, 1e12, 0, 0, "0", NULL, NULL, 0, "steps between curve rows (0: about 50 rows or one per epoch)"},
    {"eval-limit", K_LONG, F(eval_limit), 0, 1e12, 0, 0, "0", NULL, NULL, 0, "evaluate on the first N samples of each split only (0: all; for quick checks)"},
    {"seed", K_U64, F(seed), 0, 0, 0, 0, "1", NULL, NULL, 0, "decides initialisation, data, data order and dropout"},
    {"shuffle", K_BOOL, F(shuffle), 0, 1, 0, 0, "on", NULL, NULL, 0, "reshuffle every epoch (off: file order)"},
    {"target", K_F64, F(target), -INF, INF, 1, 1, NULL, NULL, NULL, 0, "eval metric to reach: records steps and seconds to it"},
    {"backend", K_STR, F(backend), 0, 0, 0, 0, "cpu", NULL, NULL, 0, "cpu or cuda"},
    {"tf32", K_BOOL, F(tf32), 0, 1, 0, 0, "off", NULL, NULL, 0, "cuda: let cuBLAS use TF32 tensor cores (off: full float32 GEMMs, for parity with the CPU)"},
    {"threads", K_LONG, F(threads), 0, 4096, 0, 0, "0", NULL, NULL, 0, "CPU threads (0: one per core)"},
    {"ranks", K_LONG, F(ranks), 1, 4096, 0, 0, "1", NULL, NULL, 0, "data-parallel CPU processes over MPI"},
    {"gpus", K_LONG, F(gpus), 0, 4096, 0, 0, "0", NULL, NULL, 0, "data-parallel GPU ranks over NCCL"},
    {"zero1", K_BOOL, F(zero1), 0, 1, 0, 0, "off", NULL, NULL, 0, "ZeRO-1: shard the optimizer state over the ranks (reduce-scatter, step the shard, all-gather)"},
    {"bucket-kb", K_LONG, F(bucket_kb), 0, 1048576, 0, 0, "32", NULL, NULL, 0, "data parallel: KiB of gradients per allreduce bucket, each started once backward has made it final (0: one allreduce after backward)"},
    {"bind", K_STR, F(bind), 0, 0, 0, 0, "none", NULL, NULL, 0, "bind each rank and its threads to its share of the cores, or a GPU rank to the CPUs nearest its GPU (hwloc): core or none"},
    {"init-scheme", K_STR, F(init_scheme), 0, 0, 0, 0, NULL, NULL, NULL, 0, "default (torch's), xavier, zeros"},
    {"dim", K_LONG, F(dim), 1, 1e9, 0, 0, NULL, "quadratic,linreg,logreg", NULL, 0, "problem dimension"},
    {"kappa", K_F64, F(kappa), 1, 1e12, 0, 0, "100", "quadratic", NULL, 0, "condition number of A"},
    {"rotate", K_BOOL, F(rotate), 0, 1, 0, 0, "on", "quadratic", NULL, 0, "random eigenbasis (off: diagonal A)"},
    {"noise", K_F64, F(noise), 0, INF, 0, 1, NULL, "quadratic,linreg", NULL, 0, "gradient noise std (quadratic), label noise std (linreg)"},
    {"n-train", K_LONG, F(n_train), 1, 1e9, 0, 0, "1000", "linreg,logreg", NULL, 0, "training samples"},
    {"n-eval", K_LONG, F(n_eval), 1, 1e9, 0, 0, "1000", "linreg,logreg", NULL, 0, "evaluation samples"},
    {"margin", K_F64, F(margin), 0, 3, 0, 0, "0.1", "logreg", NULL, 0, "minimum distance of points to the true boundary"},
    {"label-noise", K_F64, F(label_noise), 0, 0.5, 0, 1, "0.02", "logreg", NULL, 0, "fraction of flipped labels"},
    {"hidden", K_STR, F(hidden), 0, 0, 0, 0, "256,128", "fmnist-mlp", NULL, 0, "hidden layer widths of the MLP"},
    {"variant", K_STR, F(variant), 0, 0, 0, 0, "classic", "fmnist-cnn", NULL, 0, "classic ('same' padding, 1024-unit hidden layer, dropout; 3.27M params) or small (62k params)"},
    {"normalize", K_BOOL, F(normalize), 0, 1, 0, 0, "off", "fmnist-softmax,fmnist-mlp,fmnist-cnn", NULL, 0, "standardise pixels by the training set's mean and std (off: x/255)"},
    {"val", K_LONG, F(val), 0, 1e9, 0, 0, "0", "fmnist-softmax,fmnist-mlp,fmnist-cnn", NULL, 0, "hold out the last N training samples as a validation split"},
    {"init", K_STR, F(init), 0, 0, 0, 0, "", NULL, NULL, 0, "start from these parameters (safetensors)"},
    {"save", K_STR, F(save), 0, 0, 0, 0, "", NULL, NULL, 1, "write the final parameters (safetensors)"},
    {"save-init", K_STR, F(save_init), 0, 0, 0, 0, "", NULL, NULL, 1, "write the initial parameters (safetensors)"},
    {"out", K_STR, F(out), 0, 0, 0, 0, "", NULL, NULL, 1, "output folder (default results/<time>-<workload>-<optimizer>)"},
};

#define NKEYS ((int)(sizeof ds_keys_ / sizeof ds_keys_[0]))

int ds_config_key_count(void) { return NKEYS; }
const char *ds_config_key_name(int k) { return ds_keys_[k].name; }
const char *ds_config_key_help(int k) { return ds_keys_[k].help; }
int ds_config_key_is_path(int k) { return ds_keys_[k].path; }

int ds_config_key_find(const char *name)
{
    for (int k = 0; k < NKEYS; k++)
        if (strcmp(ds_keys_[k].name, name) == 0) return k;
    return -1;
}

static void *field(struct ds_config *c, const struct ds_key *k) { return (char *)c + k->off; }
static const void *cfield(const struct ds_config *c, const struct ds_key *k)
{
    return (const char *)c + k->off;
}

static int parse_bool(const char *v, int *out)
{
    static const char *const yes[] = {"on", "true", "yes", "1"}, *const no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) return *out = 1, 1;
        if (strcasecmp(v, no[i]) == 0) return *out = 0, 1;
    }
    return 0;
}

static const char *range_text(const struct ds_key *k, char *buf, size_t len)
{
    if (k->max == INF || k->max >= 1e9)
        snprintf(buf, len, "must be %s %g", k->min_open ? ">" : ">=", k->min);
    else
        snprintf(buf, len, "must be in %s%g, %g%s", k->min_open ? "(" : "[", k->min, k->max,
                 k->max_open ? ")" : "]");
    return buf;
}

static ds_status set_key(struct ds_config *c, const struct ds_key *k, const char *v,
                         struct ds_err *err)
{
    char rng[96];
    char *end;
    switch (k->type) {
    case K_STR:
        if (strlen(v) >= k->size)
            return ds_err_set(err, DS_ERR_USAGE, "--%s: value too long (%zu characters, at most %zu)", k->name, strlen(v), k->size - 1);
        snprintf(field(c, k), k->size, "%s", v);
        return DS_OK;
    case K_BOOL: {
        int b;
        if (!parse_bool(v, &b))
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not on/off (valid: on, off, true, false, yes, no, 1, 0)", k->name, v);
        *(int *)field(c, k) = b;
        return DS_OK;
    }
    case K_F64: {
        errno = 0;
        double x = strtod(v, &end);
        if (end == v || *end != '\0')
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not a number", k->name, v);
        if (errno == ERANGE)
            return ds_err_set(err, DS_ERR_USAGE, "--%s: %s is outside the range of a double", k->name, v);
        if (!isfinite(x))
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not a finite number", k->name, v);
        if ((k->min_open ? x <= k->min : x < k->min) || (k->max_open ? x >= k->max : x > k->max))
            return ds_err_set(err, DS_ERR_USAGE, "--%s: %s is out of range (%s)", k->name, v, range_text(k, rng, sizeof rng));
        *(double *)field(c, k) = x;
        return DS_OK;
    }
    case K_LONG: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || errno == ERANGE)
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not an integer", k->name, v);
        if ((double)x < k->min || (double)x > k->max)
            return ds_err_set(err, DS_ERR_USAGE, "--%s: %s is out of range (%s)", k->name, v, range_text(k, rng, sizeof rng));
        *(long *)field(c, k) = (long)x;
        return DS_OK;
    }
    case K_U64: {
        errno = 0;
        if (v[0] == '-')
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is negative (must be a non-negative integer)", k->name, v);
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end != '\0' || errno == ERANGE)
            return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not a non-negative integer", k->name, v);
        *(unsigned long long *)field(c, k) = x;
        return DS_OK;
    }
    }
    return DS_ERR_INTERNAL;
}

void ds_config_init(struct ds_config *c)
{
    memset(c, 0, sizeof *c);
    for (int k = 0; k < NKEYS; k++) {
        const struct ds_key *key = &ds_keys_[k];
        if (key->def) {
            ds_status st = set_key(c, key, key->def, NULL);
            DS_ASSERT_MSG(st == DS_OK, "bad default for --%s", key->name);
        }
    }
    c->target = NAN;
}

static void list_keys(char *buf, size_t len)
{
    size_t o = 0;
    for (int k = 0; k < NKEYS && o < len; k++)
        o += (size_t)snprintf(buf + o, len - o, "%s--%s", k ? ", " : "", ds_keys_[k].name);
}

ds_status ds_config_set(struct ds_config *c, const char *key, const char *value,
                        struct ds_err *err)
{
    int k = ds_config_key_find(key);
    if (k < 0) {
        char all[2048];
        list_keys(all, sizeof all);
        return ds_err_set(err, DS_ERR_USAGE, "unknown option '--%s' (valid: %s)", key, all);
    }
    ds_status st = set_key(c, &ds_keys_[k], value, err);
    if (st == DS_OK) c->set[k] = 1;
    return st;
}

ds_status ds_config_parse_args(struct ds_config *c, int argc, char **argv, struct ds_err *err)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return ds_err_set(err, DS_ERR_USAGE, "unexpected argument '%s' (options look like --name value)", a);
        char key[128];
        const char *eq = strchr(a + 2, '=');
        const char *value;
        size_t klen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
        if (klen >= sizeof key) return ds_err_set(err, DS_ERR_USAGE, "option name too long: %s", a);
        memcpy(key, a + 2, klen);
        key[klen] = '\0';
        int k = ds_config_key_find(key);
        if (eq) {
            value = eq + 1;
        } else if (k >= 0 && ds_keys_[k].type == K_BOOL) {
            int b;
            /* a bare boolean flag means on; an explicit on/off may follow */
            if (i + 1 < argc && parse_bool(argv[i + 1], &b)) value = argv[++i];
            else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
                return ds_err_set(err, DS_ERR_USAGE, "--%s: '%s' is not on/off (valid: on, off, true, false, yes, no, 1, 0)", key, argv[i + 1]);
            else value = "on";
        } else {
            if (i + 1 >= argc)
                return ds_err_set(err, DS_ERR_USAGE, "--%s needs a value", key);
            value = argv[++i];
        }
        ds_status st = ds_config_set(c, key, value, err);
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

static int in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static void list_optimizers(char *buf, size_t len)
{
    size_t o = 0;
    for (int i = 0; i < ds_optim_count() && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? ", " : "", ds_optim_at(i)->name);
}

#define SET(key) (c->set[ds_config_key_find(key)])

/* A float default (0.1f) as the decimal it was written as (0.1), so that
 * configs, CSV and run ids show what a user would type. */
static double decimal_of(float x)
{
    char b[32];
    snprintf(b, sizeof b, "%.7g", (double)x);
    return strtod(b, NULL);
}

ds_status ds_config_resolve(struct ds_config *c, FILE *warn, struct ds_err *err)
{
    char names[512];
    const struct ds_workload *w = ds_workload_find(c->workload);
    if (!w)
        return ds_err_set(err, DS_ERR_USAGE, "--workload: unknown workload '%s' (valid: %s)", c->workload, ds_workload_names());
    const struct ds_optim_ops *o = ds_optim_find(c->optimizer);
    if (!o) {
        list_optimizers(names, sizeof names);
        return ds_err_set(err, DS_ERR_USAGE, "--optimizer: unknown optimizer '%s' (valid: %s)", c->optimizer, names);
    }
    if (ds_sched_find(c->schedule) == DS_SCHED_COUNT) {
        size_t n = 0;
        for (int s = 0; s < DS_SCHED_COUNT; s++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", s ? ", " : "", ds_sched_name((enum ds_sched_kind)s));
        return ds_err_set(err, DS_ERR_USAGE, "--schedule: unknown schedule '%s' (valid: %s)", c->schedule, names);
    }
    if (c->init_scheme[0] && ds_init_find(c->init_scheme) == DS_INIT_COUNT)
        return ds_err_set(err, DS_ERR_USAGE, "--init-scheme: unknown scheme '%s' (valid: default, xavier, zeros)", c->init_scheme);
    if (!c->init_scheme[0]) snprintf(c->init_scheme, sizeof c->init_scheme, "%s", ds_init_name(w->default_init));
    if (strcmp(c->backend, "cpu") != 0 && strcmp(c->backend, "cuda") != 0)
        return ds_err_set(err, DS_ERR_USAGE, "--backend: unknown backend '%s' (valid: cpu, cuda)", c->backend);

    /* Optimizer defaults (PyTorch's) for what was not given. */
    struct ds_optim_hyper h;
    o->defaults(&h);
    if (!SET("lr")) c->lr = decimal_of(h.lr);
    if (!SET("momentum")) c->momentum = decimal_of(h.momentum);
    if (!SET("beta1")) c->beta1 = decimal_of(h.beta1);
    if (!SET("beta2")) c->beta2 = decimal_of(h.beta2);
    if (!SET("eps")) c->eps = decimal_of(h.eps);
    if (!SET("alpha")) c->alpha = decimal_of(h.alpha);
    if (!SET("wd")) c->wd = decimal_of(h.wd);

    /* Workload defaults. */
    if (!SET("dim")) c->dim = w->default_dim;
    if (!SET("noise")) c->noise = w->default_noise;
    /* the classic CNN's dropout is part of its shape; the small one has none */
    if (!SET("dropout")) c->dropout = strcmp(c->variant, "small") == 0 ? 0.0 : w->default_dropout;
    if (SET("epochs") && SET("steps"))
        return ds_err_set(err, DS_ERR_USAGE, "--epochs %ld and --steps %ld: give one of them", c->epochs, c->steps);
    if (!SET("epochs") && !SET("steps")) {
        c->epochs = w->default_epochs;
        c->steps = w->default_epochs ? 0 : w->default_steps;
    } else if (SET("epochs")) {
        c->steps = 0;
    } else {
        c->epochs = 0;
    }
    if (!SET("batch")) c->batch = w->default_batch;

    if (c->nesterov && (c->momentum <= 0.0 || c->dampening != 0.0))
        return ds_err_set(err, DS_ERR_USAGE, "--nesterov needs --momentum > 0 and --dampening 0 (as torch.optim.SGD)");
    if (strcmp(c->bind, "none") != 0 && strcmp(c->bind, "core") != 0)
        return ds_err_set(err, DS_ERR_USAGE, "--bind: unknown binding '%s' (valid: core, none)", c->bind);
    if (c->ranks > 1 && !ds_comm_mpi_built())
        return ds_err_set(err, DS_ERR_UNSUPPORTED, "--ranks %ld: this build has no MPI communicator (valid: 1; install Debian's openmpi-bin and libopenmpi-dev, then make)", c->ranks);
    /* --gpus N: N ranks, one GPU each, over NCCL */
    if (c->gpus > 0) {
        if (!SET("backend")) snprintf(c->backend, sizeof c->backend, "cuda");
        else if (strcmp(c->backend, "cuda") != 0)
            return ds_err_set(err, DS_ERR_USAGE, "--gpus %ld needs --backend cuda (got %s)", c->gpus, c->backend);
        if (SET("ranks") && c->ranks != c->gpus)
            return ds_err_set(err, DS_ERR_USAGE, "--gpus %ld with --ranks %ld: one rank per GPU (leave --ranks out)",
                              c->gpus, c->ranks);
        c->ranks = c->gpus;
    }
    if (c->ranks > 1 && c->gpus == 0 && strcmp(c->backend, "cpu") != 0)
        return ds_err_set(err, DS_ERR_UNSUPPORTED,
                          "--ranks %ld with --backend %s: the MPI communicator moves CPU memory only "
                          "(GPU ranks come with NCCL, --gpus; valid here: --backend cpu)",
                          c->ranks, c->backend);
    if (c->gpus > 1 && !strstr(ds_comm_list(), "nccl"))
        return ds_err_set(err, DS_ERR_UNSUPPORTED, "--gpus %ld: this build has no NCCL communicator (built without CUDA; valid: 0, 1)", c->gpus);

    /* Flags that were given but do nothing here. */
    for (int k = 0; warn && k < NKEYS; k++) {
        const struct ds_key *key = &ds_keys_[k];
        if (!c->set[k]) continue;
        if (key->workloads && !in_list(key->workloads, c->workload))
            fprintf(warn, "descent: warning: --%s has no effect on workload %s\n", key->name, c->workload);
        else if (key->optimizers && !in_list(key->optimizers, c->optimizer))
            fprintf(warn, "descent: warning: --%s has no effect with optimizer %s\n", key->name, c->optimizer);
    }
    if (warn && o->full_batch && SET("batch"))
        fprintf(warn, "descent: warning: gd uses the whole training set as its batch; --batch is ignored\n");
    return DS_OK;
}

void ds_config_format(const struct ds_config *c, int k, char *buf, size_t len)
{
    const struct ds_key *key = &ds_keys_[k];
    const void *f = cfield(c, key);
    switch (key->type) {
    case K_STR: snprintf(buf, len, "%s", (const char *)f); break;
    case K_BOOL: snprintf(buf, len, "%s", *(const int *)f ? "on" : "off"); break;
    case K_F64: {
        double x = *(const double *)f;
        if (isnan(x)) {
            snprintf(buf, len, "%s", "");
        } else {
            /* the shortest form that reads back to the same double */
            for (int prec = 6; prec <= 17; prec++) {
                snprintf(buf, len, "%.*g", prec, x);
                if (strtod(buf, NULL) == x) break;
            }
        }
        break;
    }
    case K_LONG: snprintf(buf, len, "%ld", *(const long *)f); break;
    case K_U64: snprintf(buf, len, "%llu", *(const unsigned long long *)f); break;
    }
}

static void config_hash(const struct ds_config *c, int arm, char out[17])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64 */
    char buf[DS_CFG_STR + 64];
    for (int k = 0; k < NKEYS; k++) {
        /* where it runs, not what: results do not depend on them */
        if (ds_keys_[k].path || strcmp(ds_keys_[k].name, "threads") == 0 ||
            strcmp(ds_keys_[k].name, "bind") == 0)
            continue;
        if (arm && (strcmp(ds_keys_[k].name, "lr") == 0 || strcmp(ds_keys_[k].name, "seed") == 0)) continue;
        int n = snprintf(buf, sizeof buf, "%s=", ds_keys_[k].name);
        ds_config_format(c, k, buf + n, sizeof buf - (size_t)n);
        /* a key at its default is left out, so a key added later does not
         * change the ids of the runs that do not use it */
        if (ds_keys_[k].def && strcmp(buf + n, ds_keys_[k].def) == 0) continue;
        for (const char *p = buf; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ '\n') * 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void ds_config_run_id(const struct ds_config *c, char out[17]) { config_hash(c, 0, out); }

void ds_config_arm_id(const struct ds_config *c, char out[17]) { config_hash(c, 1, out); }

void ds_config_print_help(FILE *f)
{
    for (int k = 0; k < NKEYS; k++) {
        const struct ds_key *key = &ds_keys_[k];
        char opt[64];
        snprintf(opt, sizeof opt, "--%s%s", key->name, key->type == K_BOOL ? " [on|off]" : " V");
        fprintf(f, "  %-26s %s", opt, key->help);
        if (key->def && key->def[0]) fprintf(f, " [%s]", key->def);
        fputc('\n', f);
    }
}
