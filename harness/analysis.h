/*
 * analysis.h: what a sweep's runs say, stated as DeepOBS and AlgoPerf state
 * it. Read from a sweep folder's runs.csv and curves.csv (or a single run
 * folder's summary.csv and curve.csv).
 *
 *  - Arms: runs with the same configuration except lr and seed (e.g. "sgd
 *    momentum=0.9" on fmnist-mlp). Each arm's learning rates are scored by
 *    the mean over seeds of the final validation metric (the test metric
 *    where the runs had no --val split, which the report says), a diverged
 *    or failed seed making that LR the worst; the best LR is the tuned arm,
 *    so comparisons are between tuned optimizers (DeepOBS; the Crowded
 *    Valley study).
 *  - Per tuned arm: the final test metric over seeds (mean, std, min, max),
 *    steps and seconds to the run's --target, throughput; and the metric at
 *    every LR of the grid (tuneability).
 *  - Performance profiles (AlgoPerf): per workload with a target, each arm's
 *    time to target over the fastest arm's; rho(tau) is the fraction of
 *    workloads an arm reaches within tau times the fastest, and the area
 *    score is its mean over tau in [1, DS_AN_TAU_MAX]. Entrants are the arm
 *    labels run on at least two of the workloads with a target (ablations
 *    run on one are left out); a workload an entrant did not run counts as
 *    not reached.
 */
#ifndef DS_ANALYSIS_H
#define DS_ANALYSIS_H

#include "table.h"

#define DS_AN_TAU_MAX 4.0

struct ds_an_lr {
    double lr;
    int n, n_ok;          /* seeds, and how many ended ok */
    size_t *rows;         /* rows of runs.csv */
    double score;         /* selection score (higher is better; -inf when a seed failed) */
    double mean, std, min, max;     /* final test metric over the ok seeds */
    double train_mean, train_loss_mean, eval_loss_mean;
    double steps_mean, epochs_mean, time_mean; /* to target: NAN unless every seed reached it */
    double sps_mean;                /* samples/s */
};

struct ds_an_arm {
    const char *workload, *optimizer;
    char key[2048];   /* identity: arm_id, or the configuration except lr, seed, paths, threads */
    char cols[2048];  /* the configuration columns (except those), from an ok run where there is one */
    int cols_ok;
    size_t row;       /* the runs.csv row cols and label were taken from */
    char label[256];  /* optimizer, then the settings that tell it from its workload's other arms */
    char group[64];
    int n_lr, best;   /* best: index into lrs, -1 when every LR failed */
    struct ds_an_lr *lrs; /* ascending lr */
};

struct ds_analysis {
    struct ds_table runs, curves;
    int n_workloads;
    const char **workloads;     /* in first-seen order */
    const char **metric;        /* per workload: the metric's name */
    int *higher_better;         /* per workload */
    double *target;             /* per workload (NAN: none) */
    int *selected_by_val;       /* per workload: 1 when LRs were picked on a validation split */
    int n_arms;
    struct ds_an_arm *arms;
    /* performance profiles over the workloads with a target */
    int n_prof_workloads;
    int n_entrants;
    char (*entrants)[256];      /* arm labels */
    double *ratio;              /* [entrant * n_workloads + w]: time / fastest (INFINITY: missed) */
    double *area;               /* per entrant */
};

/* Reads DIR's runs.csv and curves.csv (or summary.csv and curve.csv) and
 * analyses them. DS_ERR_USAGE/INPUT naming the file when they cannot be read. */
ds_status ds_analysis_load(const char *dir, struct ds_analysis *a, struct ds_err *err);
void ds_analysis_free(struct ds_analysis *a);

/* Index of workload w in a->workloads, or -1. */
int ds_analysis_workload(const struct ds_analysis *a, const char *w);
/* rho(tau) of entrant e. */
double ds_analysis_rho(const struct ds_analysis *a, int e, double tau);
/* Whether arms x and y have the same configuration except `key`. */
int ds_analysis_same_except(const struct ds_an_arm *x, const struct ds_an_arm *y, const char *key);
/* A regularization series: the tuned arms that differ from arm `arm` only in
 * `key` (itself included), ascending in key, into out (at most max); their
 * count when arm is the series' first and it has three or more strengths,
 * else 0. */
int ds_analysis_series(const struct ds_analysis *a, int arm, const char *key, int *out, int max);
/* DIR/tuned.csv: one row per arm at its tuned LR (workload, arm, optimizer,
 * tuned_lr, selected_by, seeds, mean, std, min, max, train metric, steps,
 * epochs and seconds to target, samples/s); written atomically. */
ds_status ds_analysis_write_tuned(const struct ds_analysis *a, const char *dir, struct ds_err *err);
/* Whether higher values of `metric` are better (accuracy) or lower (losses, mse, suboptimality). */
int ds_metric_higher_better(const char *metric);

#endif
