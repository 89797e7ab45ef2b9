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
 *  - Data-parallel scaling (only when the runs' rank counts differ): runs
 *    with the same configuration except ranks, batch, threads, lr, seed and
 *    run length are one series; its points (ranks, threads, batch) average
 *    the timings of their ok runs. A strong-scaling family is the points of
 *    one series at one global batch, a weak-scaling family those at one
 *    batch per rank, each with two or more rank counts. Against the
 *    family's first point (fewest ranks): strong speedup t1/tN of the
 *    median step time, weak speedup the ratio of samples/s; efficiency is
 *    the speedup over the ideal N, the ratio of CPUs used (ranks x threads;
 *    the ratio of ranks when threads per rank are equal, so strong
 *    efficiency is t1/(N tN)). A point whose ranks x threads exceed the CPUs
 *    online where it ran (its meta.json) is oversubscribed. Arms in a
 *    family get their labels against every arm, but the other arms' labels
 *    ignore them, so a scaling study added to a sweep renames nothing.
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
    int scaling;      /* 1: its runs are points of a data-parallel scaling family */
    int n_lr, best;   /* best: index into lrs, -1 when every LR failed */
    struct ds_an_lr *lrs; /* ascending lr */
};

enum ds_an_scale_kind { DS_AN_SCALE_STRONG, DS_AN_SCALE_WEAK, DS_AN_SCALE_KIND_COUNT };

struct ds_an_scale_point {
    long ranks, threads, batch;      /* threads per rank (0 resolved as run resolves it); global batch */
    int cpus;                        /* CPUs online where it ran */
    int n;                           /* ok runs averaged */
    size_t row;                      /* its first row of runs.csv */
    double step_ms, sps;             /* median step (ms), samples/s */
    double compute_ms, comm_ms, optimizer_ms; /* per step; comm_ms: exposed communication */
    double comm_total_ms, comm_mb;   /* collectives in flight (hidden or not), MB sent per rank: NAN if absent */
    double speedup, efficiency;      /* against the family's first point */
    double ideal;                    /* the ideal speedup: CPUs used (ranks x threads) over the first point's */
    int oversubscribed;              /* ranks * threads > cpus */
};

struct ds_an_scaling {
    enum ds_an_scale_kind kind;
    const char *workload;
    long batch;            /* strong: the global batch; weak: the batch per rank */
    char label[256];       /* "fmnist-mlp strong (global batch 1024)" */
    char short_label[64];  /* "strong: global batch 1024" */
    int n;
    struct ds_an_scale_point *pts; /* ascending ranks, then threads */
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
    /* data-parallel scaling families (none unless the rank counts differ) */
    int n_scaling;
    struct ds_an_scaling *scaling;
    int has_comm_total, has_comm_mb; /* the summaries have comm_total_ms, comm_mb */
    int cpus;                        /* CPUs online where the first point ran (0: no family) */
    char host[256];                  /* "vm (AMD EPYC)" from that run's meta.json, or "" */
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
