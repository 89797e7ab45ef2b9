/*
 * config.h: the resolved configuration of one run. Every `descent run` flag
 * is a row of one table (config.c) giving its type, range, default and help;
 * the same table parses the command line, will parse INI experiment files,
 * names the columns of summary.csv, and fills meta.json.
 */
#ifndef DS_CONFIG_H
#define DS_CONFIG_H

#include "../core/ds.h"

#define DS_CFG_STR 1024

struct ds_config {
    /* what runs */
    char workload[64];
    char optimizer[32];
    char schedule[32];
    char backend[16];
    char init_scheme[16];
    /* optimizer */
    double lr, momentum, dampening, beta1, beta2, eps, alpha, lr_decay, initial_accumulator;
    int nesterov, amsgrad, centered;
    /* regularization */
    double l2, l1, wd, dropout, clip;
    int decay_bias;
    /* schedule */
    long warmup, step_size;
    double gamma, min_lr;
    /* budget and data order */
    long batch, epochs, steps, micro_batch, eval_every, eval_limit;
    unsigned long long seed;
    int shuffle;
    double target;
    /* where it runs */
    long threads, ranks, gpus;
    char bind[16];
    int zero1;
    long bucket_kb;
    int tf32;
    /* workload parameters */
    long dim, n_train, n_eval;
    double kappa, noise, margin, label_noise;
    int rotate;
    char hidden[64], variant[16];
    int normalize;
    long val;
    /* files */
    char init[DS_CFG_STR], save[DS_CFG_STR], save_init[DS_CFG_STR], out[DS_CFG_STR];

    unsigned char set[128]; /* set[k]: key k was given explicitly */
};

/* Defaults before resolution (nothing marked as set). */
void ds_config_init(struct ds_config *c);

/* Sets key (without the leading "--") from its text value. Unknown keys and
 * bad values are DS_ERR_USAGE with a message naming the flag. */
ds_status ds_config_set(struct ds_config *c, const char *key, const char *value,
                        struct ds_err *err);

/* Parses "--key value", "--key=value" and bare boolean flags ("--nesterov").
 * Returns DS_OK, or DS_ERR_USAGE with the message in err. */
ds_status ds_config_parse_args(struct ds_config *c, int argc, char **argv, struct ds_err *err);

/* Fills what was left unset from the workload's and optimizer's defaults and
 * checks the combination (e.g. nesterov needs momentum). Prints warnings for
 * flags that have no effect here to `warn` (may be NULL). */
ds_status ds_config_resolve(struct ds_config *c, FILE *warn, struct ds_err *err);

/* Table access, for CSV columns, meta.json and help. */
int ds_config_key_count(void);
const char *ds_config_key_name(int k);
const char *ds_config_key_help(int k);
int ds_config_key_is_path(int k); /* init/save/save-init/out: not part of the identity */
/* Formats key k's value (numbers so that they read back exactly). */
void ds_config_format(const struct ds_config *c, int k, char *buf, size_t len);
int ds_config_key_find(const char *name);

/* 16 hex digits identifying the experiment: a hash of every value except the
 * file paths and the thread count (results do not depend on it), as
 * ds_config_resolve leaves them (a run derives schedule lengths from its
 * data afterwards; they are not hashed), so the same configuration always
 * has the same run_id and a sweep knows it before running. */
void ds_config_run_id(const struct ds_config *c, char out[17]);
/* The same without lr and seed: the runs a sweep tunes and repeats share it
 * (an "arm" of the comparison). */
void ds_config_arm_id(const struct ds_config *c, char out[17]);

void ds_config_print_help(FILE *f);

#endif
