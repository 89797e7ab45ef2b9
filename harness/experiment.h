/*
 * experiment.h: INI experiment files (parsed by libinih) and the grid of
 * runs they describe.
 *
 *   [sweep]
 *   name = bench              ; names the sweep folder (default: the file's base name)
 *   description = ...         ; one line, shown in the report
 *
 *   [run]                     ; keys are `descent run` flags without the "--"
 *   workload = fmnist-mlp, logreg
 *   epochs = 3
 *   seeds = 1, 2, 3           ; a comma list is an axis; the grid is the product
 *
 *   [run.adam]                ; a group: [run]'s keys plus (overriding) these
 *   optimizer = adam
 *   lr = 1e-4, 1e-3, 1e-2
 *
 *   [compare]                 ; optional: descent compare's tolerances for this suite
 *   tol-metric = 0.005        ; (flags given to compare override them)
 *
 * Without [run.NAME] groups the grid is [run]'s product; with groups it is
 * the union of the groups' products (so each optimizer gets its own LR grid,
 * as DeepOBS tunes them). `seeds` is the `seed` axis and varies fastest.
 * Unknown sections and keys, bad values, duplicate keys and grid points that
 * do not resolve are errors naming FILE:LINE (exit 2 before anything runs).
 */
#ifndef DS_EXPERIMENT_H
#define DS_EXPERIMENT_H

#include "config.h"

#define DS_EXP_MAX_AXES 64

struct ds_exp_axis {
    int key;  /* config key index (ds_config_key_name) */
    int line; /* where it was set */
    int n;    /* values */
    char **values;
};

struct ds_exp_group {
    char name[64]; /* "" for [run] itself */
    int line;      /* the section header's line (0: [run] implied) */
    int n_axes;
    struct ds_exp_axis axes[DS_EXP_MAX_AXES];
};

/* One run of the grid: its settings as (key, value) text, in the order they
 * are passed to `descent run`, and its resolved configuration. */
struct ds_exp_point {
    int group; /* index into groups */
    int n;
    int keys[DS_EXP_MAX_AXES];
    const char *values[DS_EXP_MAX_AXES]; /* point into the axes */
    char run_id[17];
    struct ds_config config;
};

/* The [compare] section: NAN (or -1 for gate_speed) where not given. */
struct ds_exp_compare {
    double tol_metric, tol_loss, tol_steps, tol_speed;
    int gate_speed;
};

struct ds_experiment {
    char path[1024];
    struct ds_exp_compare compare;
    char name[128];
    char description[512];
    int n_groups;               /* groups[0] is [run]; 1.. are [run.NAME] */
    struct ds_exp_group *groups;
    size_t n_points;
    struct ds_exp_point *points;
    unsigned char varying[128]; /* varying[k]: key k takes more than one value across the grid */
};

/* Parses path and expands its grid. On error e is left empty (nothing to
 * free) and err names FILE:LINE and the problem (DS_ERR_USAGE/INPUT/IO). */
ds_status ds_exp_load(const char *path, struct ds_experiment *e, struct ds_err *err);
void ds_exp_free(struct ds_experiment *e);
/* Only the [compare] section of an experiment file (the rest is not checked):
 * for descent compare, reading a sweep folder's experiment.ini. */
ds_status ds_exp_load_compare(const char *path, struct ds_exp_compare *c, struct ds_err *err);

/* "lr=0.001 seed=2": the point's settings that vary across the grid, for
 * labels and progress lines. */
void ds_exp_point_label(const struct ds_experiment *e, size_t i, char *buf, size_t len);
/* Group name of point i ("" for [run] alone). */
const char *ds_exp_point_group(const struct ds_experiment *e, size_t i);

#endif
