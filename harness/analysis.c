/*
 * analysis.c: see analysis.h. Ownership: ds_analysis_load allocates the
 * arms, their LR lists and row lists, the per-workload arrays and the
 * profile arrays, the scaling families and their points;
 * ds_analysis_free releases them (strings point into the tables, which the
 * analysis owns).
 */
#include "analysis.h"

#include "config.h"
#include "../core/fileio.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ds_metric_higher_better(const char *metric) { return strcmp(metric, "accuracy") == 0; }

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    DS_ASSERT(q != NULL);
    return q;
}

int ds_analysis_workload(const struct ds_analysis *a, const char *w)
{
    for (int i = 0; i < a->n_workloads; i++)
        if (strcmp(a->workloads[i], w) == 0) return i;
    return -1;
}

/* Config columns that are not part of an arm's identity. */
static int outside_arm(int k)
{
    const char *n = ds_config_key_name(k);
    return ds_config_key_is_path(k) || !strcmp(n, "lr") || !strcmp(n, "seed") ||
           !strcmp(n, "threads");
}

static void arm_key(const struct ds_table *t, size_t r, int use_id, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    /* the runs' own arm_id (a hash of the configuration before anything
     * derived from the data) where every summary has it: a run that failed
     * before deriving them still joins its arm */
    const char *id = ds_table_get(t, r, "arm_id");
    if (use_id) {
        snprintf(buf, len, "arm_id=%s;", id);
        return;
    }
    for (int k = 0; k < ds_config_key_count() && at + 1 < len; k++) {
        if (outside_arm(k)) continue;
        at += (size_t)snprintf(buf + at, len - at, "%s=%s;", ds_config_key_name(k),
                               ds_table_get(t, r, ds_config_key_name(k)));
    }
}

static double mean_of(const double *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += x[i];
    return n ? s / n : NAN;
}

static int cmp_lr(const void *a, const void *b)
{
    double x = ((const struct ds_an_lr *)a)->lr, y = ((const struct ds_an_lr *)b)->lr;
    return (x > y) - (x < y);
}

/* The LR statistics of an arm, from its rows. */
static void summarise_lr(const struct ds_analysis *a, int w, const int *select_val,
                         struct ds_an_lr *l)
{
    const struct ds_table *t = &a->runs;
    int hb = a->higher_better[w];
    double *m = malloc(sizeof(double) * (size_t)l->n), *sel = malloc(sizeof(double) * (size_t)l->n);
    double *tr = malloc(sizeof(double) * (size_t)l->n), *trl = malloc(sizeof(double) * (size_t)l->n);
    double *evl = malloc(sizeof(double) * (size_t)l->n);
    DS_ASSERT(m && sel && tr && trl && evl);
    int n_ok = 0, all_reached = 1;
    double steps = 0, epochs = 0, tts = 0, sps = 0;
    int n_sps = 0;
    for (int i = 0; i < l->n; i++) {
        size_t r = l->rows[i];
        if (strcmp(ds_table_get(t, r, "status"), "ok") != 0) {
            all_reached = 0;
            continue;
        }
        double metric = ds_table_num(t, r, "final_eval_metric");
        double val = *select_val ? ds_table_num(t, r, "final_val_metric") : metric;
        m[n_ok] = metric;
        sel[n_ok] = val;
        tr[n_ok] = ds_table_num(t, r, "final_train_metric");
        trl[n_ok] = ds_table_num(t, r, "final_train_loss");
        evl[n_ok] = ds_table_num(t, r, "final_eval_loss");
        n_ok++;
        double s = ds_table_num(t, r, "steps_to_target"), ts = ds_table_num(t, r, "time_to_target_s");
        double per_step = ds_table_num(t, r, "epochs_done") / ds_table_num(t, r, "steps_done");
        if (isnan(s) || isnan(ts)) all_reached = 0;
        else steps += s, tts += ts, epochs += s * per_step;
        double p = ds_table_num(t, r, "samples_per_s");
        if (!isnan(p)) sps += p, n_sps++;
    }
    l->n_ok = n_ok;
    l->mean = mean_of(m, n_ok);
    double v = 0;
    l->min = INFINITY, l->max = -INFINITY;
    for (int i = 0; i < n_ok; i++) {
        v += (m[i] - l->mean) * (m[i] - l->mean);
        l->min = fmin(l->min, m[i]), l->max = fmax(l->max, m[i]);
    }
    l->std = n_ok > 1 ? sqrt(v / (n_ok - 1)) : 0.0;
    if (!n_ok) l->min = l->max = NAN;
    l->train_mean = mean_of(tr, n_ok);
    l->train_loss_mean = mean_of(trl, n_ok);
    l->eval_loss_mean = mean_of(evl, n_ok);
    l->steps_mean = all_reached && n_ok ? steps / n_ok : NAN;
    l->epochs_mean = all_reached && n_ok ? epochs / n_ok : NAN;
    l->time_mean = all_reached && n_ok ? tts / n_ok : NAN;
    l->sps_mean = n_sps ? sps / n_sps : NAN;
    /* a failed seed, or a non-finite score, makes the LR the worst */
    double s = mean_of(sel, n_ok);
    l->score = n_ok < l->n || !isfinite(s) ? -INFINITY : (hb ? s : -s);
    free(m), free(sel), free(tr), free(trl), free(evl);
}

/* Workloads with a target on which some arm labelled `label` ran. */
static int label_reach(const struct ds_analysis *a, const char *label)
{
    int n = 0;
    for (int w = 0; w < a->n_workloads; w++) {
        if (isnan(a->target[w])) continue;
        int on = 0;
        for (int i = 0; i < a->n_arms && !on; i++)
            on = !strcmp(a->arms[i].workload, a->workloads[w]) && !strcmp(a->arms[i].label, label);
        n += on;
    }
    return n;
}

static void profiles(struct ds_analysis *a)
{
    /* entrants: arm labels that ran on at least two of the workloads with a
     * target (where there are two): an ablation arm run on one workload (a
     * regularization strength, say) is not an optimizer entered in the
     * comparison; a missing workload counts as a target not reached, as
     * AlgoPerf scores a submission that fails a workload */
    int with_target = 0;
    for (int w = 0; w < a->n_workloads; w++) with_target += !isnan(a->target[w]);
    int need = with_target >= 2 ? 2 : 1;
    for (int i = 0; i < a->n_arms; i++) {
        if (label_reach(a, a->arms[i].label) < need) continue;
        int found = 0;
        for (int e = 0; e < a->n_entrants && !found; e++)
            found = strcmp(a->entrants[e], a->arms[i].label) == 0;
        if (!found) {
            a->entrants = xrealloc(a->entrants, (size_t)(a->n_entrants + 1) * sizeof *a->entrants);
            snprintf(a->entrants[a->n_entrants++], sizeof a->entrants[0], "%s", a->arms[i].label);
        }
    }
    int nw = a->n_workloads;
    a->ratio = malloc(sizeof(double) * (size_t)(a->n_entrants * nw + 1));
    a->area = calloc((size_t)a->n_entrants + 1, sizeof(double));
    DS_ASSERT(a->ratio && a->area);
    a->n_prof_workloads = 0;
    for (int w = 0; w < nw; w++) {
        double fastest = INFINITY;
        double *t = malloc(sizeof(double) * (size_t)(a->n_entrants + 1));
        DS_ASSERT(t != NULL);
        for (int e = 0; e < a->n_entrants; e++) {
            t[e] = INFINITY;
            for (int i = 0; i < a->n_arms; i++) {
                const struct ds_an_arm *arm = &a->arms[i];
                if (strcmp(arm->workload, a->workloads[w]) || strcmp(arm->label, a->entrants[e]) ||
                    arm->best < 0)
                    continue;
                double x = arm->lrs[arm->best].time_mean;
                if (!isnan(x)) t[e] = fmin(t[e], x);
            }
            fastest = fmin(fastest, t[e]);
        }
        int used = !isnan(a->target[w]) && isfinite(fastest);
        /* t == fastest is 1 even at 0 s (a target met at the first evaluation) */
        for (int e = 0; e < a->n_entrants; e++)
            a->ratio[e * nw + w] = !used ? NAN : t[e] == fastest ? 1.0 : t[e] / fastest;
        a->n_prof_workloads += used;
        free(t);
    }
    /* area: the mean of rho over tau in [1, TAU_MAX], by the trapezoid rule */
    enum { STEPS = 300 };
    for (int e = 0; e < a->n_entrants; e++) {
        double s = 0;
        for (int k = 0; k <= STEPS; k++) {
            double tau = 1.0 + (DS_AN_TAU_MAX - 1.0) * k / STEPS;
            s += (k == 0 || k == STEPS ? 0.5 : 1.0) * ds_analysis_rho(a, e, tau);
        }
        a->area[e] = a->n_prof_workloads ? s / STEPS : NAN;
    }
}

double ds_analysis_rho(const struct ds_analysis *a, int e, double tau)
{
    if (!a->n_prof_workloads) return NAN;
    int hit = 0;
    for (int w = 0; w < a->n_workloads; w++) {
        double r = a->ratio[e * a->n_workloads + w];
        hit += !isnan(r) && r <= tau;
    }
    return (double)hit / a->n_prof_workloads;
}

/* ---- data-parallel scaling ---- */

/* Keys that may differ between the points of one scaling series: where and
 * how long it runs, and what a scaling study changes with the rank count
 * (lr and seed are outside every arm already). */
static int outside_series(int k)
{
    static const char *const free_keys[] = {"ranks", "batch", "steps", "epochs", "eval-every"};
    const char *n = ds_config_key_name(k);
    if (outside_arm(k)) return 1;
    for (size_t i = 0; i < DS_ARRAY_LEN(free_keys); i++)
        if (!strcmp(free_keys[i], n)) return 1;
    return 0;
}

static void series_key(const struct ds_table *t, size_t r, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 0; k < ds_config_key_count() && at + 1 < len; k++) {
        if (outside_series(k)) continue;
        at += (size_t)snprintf(buf + at, len - at, "%s=%s;", ds_config_key_name(k),
                               ds_table_get(t, r, ds_config_key_name(k)));
    }
}

/* Row r's meta.json (parsed; NULL when there is none): its `out` folder,
 * else DIR/runs/<that folder's name> (out is relative to where the sweep
 * ran), else DIR itself (a run folder). */
static cJSON *row_meta(const struct ds_table *t, size_t r, const char *dir)
{
    const char *out = ds_table_get(t, r, "out");
    const char *base = strrchr(out, '/');
    char p[3][2300];
    snprintf(p[0], sizeof p[0], "%s/meta.json", out);
    snprintf(p[1], sizeof p[1], "%s/runs/%s/meta.json", dir, base ? base + 1 : out);
    snprintf(p[2], sizeof p[2], "%s/meta.json", dir);
    for (int i = *out ? 0 : 2; i < 3; i++) {
        char *text = NULL;
        size_t len = 0;
        struct ds_err err = {{0}};
        if (ds_file_read_all(p[i], &text, &len, &err) != DS_OK) continue;
        cJSON *j = cJSON_Parse(text);
        free(text);
        if (j) return j;
    }
    return NULL;
}

/* CPUs online where row r ran (its meta.json), else on this machine. */
static int row_cpus(const struct ds_table *t, size_t r, const char *dir, char *host, size_t hlen)
{
    cJSON *j = row_meta(t, r, dir);
    cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "host");
    cJSON *c = cJSON_GetObjectItemCaseSensitive(h, "cpus_online");
    int cpus = cJSON_IsNumber(c) && c->valuedouble >= 1 ? (int)c->valuedouble : 0;
    if (host && hlen) {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "hostname"));
        const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(h, "cpu_model"));
        if (name) snprintf(host, hlen, "%s%s%s%s", name, model ? " (" : "", model ? model : "", model ? ")" : "");
        else host[0] = '\0';
    }
    cJSON_Delete(j);
    if (cpus > 0) return cpus;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

struct scale_acc {
    char key[2048];
    struct ds_an_scale_point p;
    double sum[8]; /* step, sps, compute, comm, optimizer, comm_total, comm_mb; counts */
    int cnt[8];
};

static int cmp_point(const void *x, const void *y)
{
    const struct ds_an_scale_point *a = x, *b = y;
    if (a->ranks != b->ranks) return a->ranks < b->ranks ? -1 : 1;
    return (a->threads > b->threads) - (a->threads < b->threads);
}

/* The scaling families of the runs (see analysis.h); in_family[r] is set for
 * the rows that are points of one. */
static void scaling(struct ds_analysis *a, const char *dir, unsigned char *in_family)
{
    const struct ds_table *t = &a->runs;
    if (ds_table_col(t, "ranks") < 0) return;
    double rmin = INFINITY, rmax = -INFINITY;
    for (size_t r = 0; r < t->nrows; r++) {
        if (strcmp(ds_table_get(t, r, "status"), "ok")) continue;
        double x = ds_table_num(t, r, "ranks");
        if (isnan(x)) x = 1;
        rmin = fmin(rmin, x), rmax = fmax(rmax, x);
    }
    if (!(rmax > rmin)) return; /* the rank count does not vary: no scaling study */
    a->has_comm_total = ds_table_col(t, "comm_total_ms") >= 0;
    a->has_comm_mb = ds_table_col(t, "comm_mb") >= 0;
    static const char *const cols[] = {"step_ms_median", "samples_per_s", "compute_ms", "comm_ms",
                                       "optimizer_ms", "comm_total_ms", "comm_mb"};
    /* points: (series, ranks, threads, batch), timings averaged over their ok runs */
    int np = 0;
    struct scale_acc *acc = NULL;
    size_t *point_of = malloc(sizeof(size_t) * (t->nrows + 1));
    DS_ASSERT(point_of != NULL);
    for (size_t r = 0; r < t->nrows; r++) {
        point_of[r] = (size_t)-1;
        if (strcmp(ds_table_get(t, r, "status"), "ok")) continue;
        char key[2048];
        series_key(t, r, key, sizeof key);
        double rk = ds_table_num(t, r, "ranks"), th = ds_table_num(t, r, "threads"), b = ds_table_num(t, r, "batch");
        long ranks = isnan(rk) ? 1 : (long)rk, batch = isnan(b) ? 0 : (long)b;
        long threads = isnan(th) ? 0 : (long)th;
        int cpus = row_cpus(t, r, dir, NULL, 0);
        /* as descent run resolves 0: every CPU for one rank, the CPUs shared out for more */
        if (threads <= 0) threads = ranks > 1 ? (cpus / ranks > 0 ? cpus / ranks : 1) : cpus;
        int i = 0;
        while (i < np && !(acc[i].p.ranks == ranks && acc[i].p.threads == threads &&
                           acc[i].p.batch == batch && !strcmp(acc[i].key, key)))
            i++;
        if (i == np) {
            acc = xrealloc(acc, sizeof *acc * (size_t)(np + 1));
            memset(&acc[np], 0, sizeof acc[np]);
            snprintf(acc[np].key, sizeof acc[np].key, "%s", key);
            acc[np].p.ranks = ranks, acc[np].p.threads = threads, acc[np].p.batch = batch;
            acc[np].p.cpus = cpus, acc[np].p.row = r;
            np++;
        }
        acc[i].p.n++;
        for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++) {
            double x = ds_table_num(t, r, cols[c]);
            if (!isnan(x)) acc[i].sum[c] += x, acc[i].cnt[c]++;
        }
        point_of[r] = (size_t)i;
    }
    for (int i = 0; i < np; i++) {
        struct ds_an_scale_point *p = &acc[i].p;
        double m[DS_ARRAY_LEN(cols)];
        for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++)
            m[c] = acc[i].cnt[c] ? acc[i].sum[c] / acc[i].cnt[c] : NAN;
        p->step_ms = m[0], p->sps = m[1], p->compute_ms = m[2], p->comm_ms = m[3];
        p->optimizer_ms = m[4], p->comm_total_ms = m[5], p->comm_mb = m[6];
        if (isnan(p->sps) && p->step_ms > 0) p->sps = 1e3 * (double)p->batch / p->step_ms;
        p->oversubscribed = p->ranks * p->threads > p->cpus;
    }
    /* families: one series at one global batch (strong) or one batch per rank (weak) */
    unsigned char *member = calloc((size_t)np + 1, 1);
    DS_ASSERT(member != NULL);
    for (int kind = 0; kind < DS_AN_SCALE_KIND_COUNT; kind++)
        for (int i = 0; i < np; i++) {
            const struct ds_an_scale_point *p = &acc[i].p;
            if (kind == DS_AN_SCALE_WEAK && p->batch % p->ranks) continue;
            long value = kind == DS_AN_SCALE_STRONG ? p->batch : p->batch / p->ranks;
            int seen = 0;
            for (int f = 0; f < a->n_scaling && !seen; f++) /* the family was found from another of its points */
                seen = (int)a->scaling[f].kind == kind && a->scaling[f].batch == value &&
                       !strcmp(acc[point_of[a->scaling[f].pts[0].row]].key, acc[i].key);
            if (seen) continue;
            int in[1024], n = 0, distinct = 0;
            for (int q = 0; q < np && n < 1024; q++) {
                const struct ds_an_scale_point *x = &acc[q].p;
                if (strcmp(acc[q].key, acc[i].key)) continue;
                if (kind == DS_AN_SCALE_STRONG ? x->batch != value
                                               : x->batch % x->ranks || x->batch / x->ranks != value)
                    continue;
                in[n++] = q;
            }
            for (int u = 0; u < n; u++) {
                int dup = 0;
                for (int v = 0; v < u; v++) dup |= acc[in[v]].p.ranks == acc[in[u]].p.ranks;
                distinct += !dup;
            }
            if (distinct < 2) continue;
            a->scaling = xrealloc(a->scaling, sizeof *a->scaling * (size_t)(a->n_scaling + 1));
            struct ds_an_scaling *fam = &a->scaling[a->n_scaling++];
            memset(fam, 0, sizeof *fam);
            fam->kind = (enum ds_an_scale_kind)kind;
            fam->batch = value;
            fam->workload = ds_table_get(t, p->row, "workload");
            fam->n = n;
            fam->pts = malloc(sizeof *fam->pts * (size_t)n);
            DS_ASSERT(fam->pts != NULL);
            for (int u = 0; u < n; u++) fam->pts[u] = acc[in[u]].p, member[in[u]] = 1;
            qsort(fam->pts, (size_t)n, sizeof *fam->pts, cmp_point);
            const struct ds_an_scale_point *b = &fam->pts[0];
            for (int u = 0; u < n; u++) {
                struct ds_an_scale_point *x = &fam->pts[u];
                /* ideal: by the CPUs used, so 1 rank x 2 threads against 2 ranks x 1 thread is ideally 1 */
                x->ideal = (double)(x->ranks * x->threads) / (double)(b->ranks * b->threads);
                x->speedup = kind == DS_AN_SCALE_STRONG ? b->step_ms / x->step_ms : x->sps / b->sps;
                x->efficiency = x->speedup / x->ideal;
            }
            if (kind == DS_AN_SCALE_STRONG)
                snprintf(fam->short_label, sizeof fam->short_label, "strong: global batch %ld", value);
            else
                snprintf(fam->short_label, sizeof fam->short_label, "weak: batch %ld per rank", value);
        }
    /* order: by workload, strong before weak, then as found */
    for (int i = 1; i < a->n_scaling; i++)
        for (int j = i; j > 0; j--) {
            struct ds_an_scaling *x = &a->scaling[j - 1], *y = &a->scaling[j];
            int wx = ds_analysis_workload(a, x->workload), wy = ds_analysis_workload(a, y->workload);
            if (wx < wy || (wx == wy && x->kind <= y->kind)) break;
            struct ds_an_scaling tmp = *x;
            *x = *y, *y = tmp;
        }
    /* labels: the workload, then what tells its series apart */
    for (int f = 0; f < a->n_scaling; f++) {
        struct ds_an_scaling *fam = &a->scaling[f];
        size_t at = (size_t)snprintf(fam->label, sizeof fam->label, "%s", fam->workload);
        size_t rf = fam->pts[0].row;
        for (int k = 0; k < ds_config_key_count() && at + 1 < sizeof fam->label; k++) {
            const char *name = ds_config_key_name(k);
            if (outside_series(k) || !strcmp(name, "workload")) continue;
            const char *v = ds_table_get(t, rf, name);
            int differs = 0;
            for (int g = 0; g < a->n_scaling && !differs; g++)
                differs = !strcmp(a->scaling[g].workload, fam->workload) &&
                          strcmp(ds_table_get(t, a->scaling[g].pts[0].row, name), v) != 0;
            if (differs) at += (size_t)snprintf(fam->label + at, sizeof fam->label - at, " %s=%s", name, v);
        }
        if (at + 1 < sizeof fam->label)
            snprintf(fam->label + at, sizeof fam->label - at, fam->kind == DS_AN_SCALE_STRONG ?
                     " strong (global batch %ld)" : " weak (batch %ld per rank)", fam->batch);
    }
    for (size_t r = 0; r < t->nrows; r++)
        in_family[r] = point_of[r] != (size_t)-1 && member[point_of[r]];
    if (a->n_scaling > 0) {
        a->cpus = a->scaling[0].pts[0].cpus;
        row_cpus(t, a->scaling[0].pts[0].row, dir, a->host, sizeof a->host);
    }
    free(member);
    free(point_of);
    free(acc);
}

static ds_status read_pair(const char *dir, struct ds_analysis *a, struct ds_err *err)
{
    char p[2048];
    struct stat st;
    snprintf(p, sizeof p, "%s/runs.csv", dir);
    int sweep = stat(p, &st) == 0;
    if (!sweep) snprintf(p, sizeof p, "%s/summary.csv", dir);
    if (stat(p, &st) != 0)
        return ds_err_set(err, DS_ERR_USAGE,
                          "%s: not a sweep folder (runs.csv) or a run folder (summary.csv)", dir);
    ds_status s = ds_table_read(p, &a->runs, err);
    if (s != DS_OK) return s;
    const char *need[] = {"run_id", "workload", "optimizer", "lr", "seed", "status",
                          "final_eval_metric", "metric"};
    for (size_t i = 0; i < DS_ARRAY_LEN(need); i++)
        if (ds_table_col(&a->runs, need[i]) < 0)
            return ds_err_set(err, DS_ERR_INPUT, "%s: no '%s' column", p, need[i]);
    snprintf(p, sizeof p, "%s/%s", dir, sweep ? "curves.csv" : "curve.csv");
    if (stat(p, &st) == 0) {
        s = ds_table_read(p, &a->curves, err);
        if (s != DS_OK) return s;
    } else {
        ds_table_init(&a->curves);
    }
    return DS_OK;
}

ds_status ds_analysis_load(const char *dir, struct ds_analysis *a, struct ds_err *err)
{
    memset(a, 0, sizeof *a);
    ds_table_init(&a->runs);
    ds_table_init(&a->curves);
    ds_status s = read_pair(dir, a, err);
    if (s != DS_OK) {
        ds_analysis_free(a);
        return s;
    }
    const struct ds_table *t = &a->runs;
    if (t->nrows == 0) {
        ds_analysis_free(a);
        return ds_err_set(err, DS_ERR_INPUT, "%s: no finished runs to analyse", dir);
    }
    /* workloads */
    for (size_t r = 0; r < t->nrows; r++) {
        const char *w = ds_table_get(t, r, "workload");
        if (ds_analysis_workload(a, w) >= 0) continue;
        int n = a->n_workloads++;
        a->workloads = xrealloc(a->workloads, sizeof(char *) * (size_t)a->n_workloads);
        a->metric = xrealloc(a->metric, sizeof(char *) * (size_t)a->n_workloads);
        a->higher_better = xrealloc(a->higher_better, sizeof(int) * (size_t)a->n_workloads);
        a->target = xrealloc(a->target, sizeof(double) * (size_t)a->n_workloads);
        a->selected_by_val = xrealloc(a->selected_by_val, sizeof(int) * (size_t)a->n_workloads);
        a->workloads[n] = w;
        a->metric[n] = "";
        for (size_t q = r; q < t->nrows && !*a->metric[n]; q++) /* a failed run has none */
            if (!strcmp(ds_table_get(t, q, "workload"), w)) a->metric[n] = ds_table_get(t, q, "metric");
        a->higher_better[n] = ds_metric_higher_better(a->metric[n]);
        a->target[n] = NAN;
        a->selected_by_val[n] = 1;
    }
    /* per workload: a target if every run has the same one; selection by
     * validation when every ok run has a val metric */
    for (int w = 0; w < a->n_workloads; w++) {
        int first = 1, same = 1;
        double tg = NAN;
        for (size_t r = 0; r < t->nrows; r++) {
            if (strcmp(ds_table_get(t, r, "workload"), a->workloads[w])) continue;
            double x = ds_table_num(t, r, "target");
            if (first) tg = x, first = 0;
            else if (!(x == tg || (isnan(x) && isnan(tg)))) same = 0;
            if (!strcmp(ds_table_get(t, r, "status"), "ok") && isnan(ds_table_num(t, r, "final_val_metric")))
                a->selected_by_val[w] = 0;
        }
        a->target[w] = same ? tg : NAN;
    }
    /* data-parallel scaling families, before the arms: their arms' labels
     * are told apart from the others' without renaming them */
    unsigned char *in_family = calloc(t->nrows + 1, 1);
    DS_ASSERT(in_family != NULL);
    scaling(a, dir, in_family);
    /* arms (by arm_id when every row has one: summaries written by older
     * builds do not) */
    int use_id = ds_table_col(t, "arm_id") >= 0;
    for (size_t r = 0; r < t->nrows && use_id; r++) use_id = *ds_table_get(t, r, "arm_id") != '\0';
    for (size_t r = 0; r < t->nrows; r++) {
        char key[2048];
        arm_key(t, r, use_id, key, sizeof key);
        int i = 0;
        while (i < a->n_arms && strcmp(a->arms[i].key, key)) i++;
        if (i == a->n_arms) {
            a->arms = xrealloc(a->arms, sizeof *a->arms * (size_t)(a->n_arms + 1));
            struct ds_an_arm *arm = &a->arms[a->n_arms++];
            memset(arm, 0, sizeof *arm);
            snprintf(arm->key, sizeof arm->key, "%s", key);
            arm->cols[0] = '\0';
            arm->workload = ds_table_get(t, r, "workload");
            arm->optimizer = ds_table_get(t, r, "optimizer");
            snprintf(arm->group, sizeof arm->group, "%s", ds_table_get(t, r, "group"));
        }
        struct ds_an_arm *arm = &a->arms[i];
        double lr = ds_table_num(t, r, "lr");
        int j = 0;
        while (j < arm->n_lr && arm->lrs[j].lr != lr) j++;
        if (j == arm->n_lr) {
            arm->lrs = xrealloc(arm->lrs, sizeof *arm->lrs * (size_t)(arm->n_lr + 1));
            memset(&arm->lrs[arm->n_lr++], 0, sizeof *arm->lrs);
            arm->lrs[j].lr = lr;
        }
        struct ds_an_lr *l = &arm->lrs[j];
        l->rows = xrealloc(l->rows, sizeof(size_t) * (size_t)(l->n + 1));
        l->rows[l->n++] = r;
        /* the configuration columns, from a run that ended ok where there is
         * one (its values are complete), for the regularization series */
        if (!arm->cols[0] || (!arm->cols_ok && !strcmp(ds_table_get(t, r, "status"), "ok"))) {
            size_t at = 0;
            for (int k = 0; k < ds_config_key_count() && at + 1 < sizeof arm->cols; k++) {
                if (outside_arm(k)) continue;
                at += (size_t)snprintf(arm->cols + at, sizeof arm->cols - at, "%s=%s;",
                                       ds_config_key_name(k), ds_table_get(t, r, ds_config_key_name(k)));
            }
            arm->cols_ok = !strcmp(ds_table_get(t, r, "status"), "ok");
            arm->row = r;
        }
        arm->scaling |= in_family[r];
    }
    free(in_family);
    /* labels: the optimizer, then its hyperparameters (and regularizers) that
     * differ between arms of the same optimizer anywhere in the sweep, so an
     * arm has one name across workloads (the profiles rely on it); then any
     * other setting that still tells two arms of one workload apart */
    static const char *const hyper[] = {"momentum", "dampening", "nesterov", "beta1", "beta2", "eps",
                                        "amsgrad", "alpha", "centered", "lr-decay",
                                        "initial-accumulator", "l2", "l1", "wd", "decay-bias",
                                        "dropout", "clip", "schedule", "gamma", "min-lr"};
    for (int i = 0; i < a->n_arms; i++) {
        struct ds_an_arm *arm = &a->arms[i];
        size_t r0 = arm->row;
        size_t at = (size_t)snprintf(arm->label, sizeof arm->label, "%s", arm->optimizer);
        for (size_t h = 0; h < DS_ARRAY_LEN(hyper) && at + 1 < sizeof arm->label; h++) {
            const char *v = ds_table_get(t, r0, hyper[h]);
            int differs = 0;
            for (int o = 0; o < a->n_arms && !differs; o++)
                differs = !strcmp(a->arms[o].optimizer, arm->optimizer) &&
                          (arm->scaling || !a->arms[o].scaling) &&
                          strcmp(ds_table_get(t, a->arms[o].row, hyper[h]), v) != 0;
            if (differs)
                at += (size_t)snprintf(arm->label + at, sizeof arm->label - at, " %s=%s", hyper[h], v);
        }
    }
    for (int i = 0; i < a->n_arms; i++) {
        struct ds_an_arm *arm = &a->arms[i];
        size_t r0 = arm->row, at = strlen(arm->label);
        for (int k = 0; k < ds_config_key_count() && at + 1 < sizeof arm->label; k++) {
            const char *name = ds_config_key_name(k);
            if (outside_arm(k) || !strcmp(name, "workload") || !strcmp(name, "optimizer")) continue;
            int is_hyper = 0;
            for (size_t h = 0; h < DS_ARRAY_LEN(hyper); h++) is_hyper |= !strcmp(hyper[h], name);
            if (is_hyper) continue;
            const char *v = ds_table_get(t, r0, name);
            int differs = 0;
            for (int o = 0; o < a->n_arms && !differs; o++) {
                const struct ds_an_arm *b = &a->arms[o];
                differs = o != i && !strcmp(b->workload, arm->workload) &&
                          !strcmp(b->optimizer, arm->optimizer) && (arm->scaling || !b->scaling) &&
                          strcmp(ds_table_get(t, b->row, name), v) != 0;
            }
            if (differs)
                at += (size_t)snprintf(arm->label + at, sizeof arm->label - at, " %s=%s", name, v);
        }
    }
    /* LR statistics and the tuned LR */
    for (int i = 0; i < a->n_arms; i++) {
        struct ds_an_arm *arm = &a->arms[i];
        int w = ds_analysis_workload(a, arm->workload);
        qsort(arm->lrs, (size_t)arm->n_lr, sizeof *arm->lrs, cmp_lr);
        arm->best = -1;
        for (int j = 0; j < arm->n_lr; j++) {
            summarise_lr(a, w, &a->selected_by_val[w], &arm->lrs[j]);
            if (isfinite(arm->lrs[j].score) &&
                (arm->best < 0 || arm->lrs[j].score > arm->lrs[arm->best].score))
                arm->best = j;
        }
    }
    profiles(a);
    return DS_OK;
}

/* The arm key with "key=...;" taken out. */
static void key_without(const char *k, const char *key, char *out, size_t len)
{
    char pat[96];
    snprintf(pat, sizeof pat, "%s=", key);
    size_t pl = strlen(pat), at = 0;
    const char *p = k;
    while (*p && at + 1 < len) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) + 1 : strlen(p);
        int skip = strncmp(p, pat, pl) == 0;
        if (!skip) {
            size_t c = n < len - 1 - at ? n : len - 1 - at;
            memcpy(out + at, p, c);
            at += c;
        }
        p += n;
    }
    out[at] = '\0';
}

int ds_analysis_same_except(const struct ds_an_arm *x, const struct ds_an_arm *y, const char *key)
{
    char a[2048], b[2048];
    key_without(x->cols, key, a, sizeof a);
    key_without(y->cols, key, b, sizeof b);
    return strcmp(a, b) == 0;
}

int ds_analysis_series(const struct ds_analysis *a, int arm, const char *key, int *out, int max)
{
    const struct ds_an_arm *x = &a->arms[arm];
    for (int i = 0; i < arm; i++) /* the series is reported from its first arm only */
        if (ds_analysis_same_except(&a->arms[i], x, key) && a->arms[i].best >= 0) return 0;
    if (x->best < 0) return 0;
    int n = 0;
    for (int i = 0; i < a->n_arms && n < max; i++)
        if (a->arms[i].best >= 0 && ds_analysis_same_except(&a->arms[i], x, key)) out[n++] = i;
    /* ascending strength */
    for (int p = 1; p < n; p++)
        for (int q = p; q > 0; q--) {
            double u = ds_table_num(&a->runs, a->arms[out[q - 1]].row, key);
            double v = ds_table_num(&a->runs, a->arms[out[q]].row, key);
            if (!(u > v)) break;
            int t = out[q];
            out[q] = out[q - 1], out[q - 1] = t;
        }
    /* distinct strengths */
    int distinct = 0;
    for (int p = 0; p < n; p++)
        distinct += p == 0 || ds_table_num(&a->runs, a->arms[out[p]].row, key) !=
                                  ds_table_num(&a->runs, a->arms[out[p - 1]].row, key);
    return distinct >= 3 ? n : 0;
}

void ds_analysis_free(struct ds_analysis *a)
{
    for (int i = 0; i < a->n_arms; i++) {
        for (int j = 0; j < a->arms[i].n_lr; j++) free(a->arms[i].lrs[j].rows);
        free(a->arms[i].lrs);
    }
    free(a->arms);
    free(a->workloads), free(a->metric), free(a->higher_better), free(a->target);
    free(a->selected_by_val);
    free(a->entrants), free(a->ratio), free(a->area);
    for (int f = 0; f < a->n_scaling; f++) free(a->scaling[f].pts);
    free(a->scaling);
    ds_table_free(&a->runs);
    ds_table_free(&a->curves);
    memset(a, 0, sizeof *a);
}

ds_status ds_analysis_write_tuned(const struct ds_analysis *a, const char *dir, struct ds_err *err)
{
    struct ds_table t;
    ds_table_init(&t);
    static const char *const cols[] = {"workload", "arm", "optimizer", "metric", "tuned_lr",
                                       "selected_by", "seeds_ok", "seeds", "mean", "std", "min",
                                       "max", "train_mean", "steps_to_target", "epochs_to_target",
                                       "time_to_target_s", "samples_per_s", "lr_grid"};
    for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++) ds_table_add_col(&t, cols[c]);
    t.cap = (size_t)a->n_arms + 1;
    t.rows = calloc(t.cap, sizeof(char **));
    DS_ASSERT(t.rows != NULL);
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        int w = ds_analysis_workload(a, arm->workload);
        char v[DS_ARRAY_LEN(cols)][600];
        for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++) v[c][0] = '\0';
        snprintf(v[0], sizeof v[0], "%s", arm->workload);
        snprintf(v[1], sizeof v[1], "%s", arm->label);
        snprintf(v[2], sizeof v[2], "%s", arm->optimizer);
        snprintf(v[3], sizeof v[3], "%s", a->metric[w]);
        snprintf(v[5], sizeof v[5], "%s", a->selected_by_val[w] ? "val_metric" : "eval_metric");
        size_t at = 0;
        for (int j = 0; j < arm->n_lr && at + 32 < sizeof v[17]; j++)
            at += (size_t)snprintf(v[17] + at, sizeof v[17] - at, "%s%.10g", j ? " " : "", arm->lrs[j].lr);
        if (arm->best >= 0) {
            const struct ds_an_lr *l = &arm->lrs[arm->best];
            double num[] = {l->lr, NAN, l->n_ok, l->n, l->mean, l->std, l->min, l->max, l->train_mean,
                            l->steps_mean, l->epochs_mean, l->time_mean, l->sps_mean};
            for (size_t k = 0; k < DS_ARRAY_LEN(num); k++)
                if (k != 1 && !isnan(num[k])) snprintf(v[4 + k], sizeof v[4 + k], "%.10g", num[k]);
        }
        char **row = malloc(DS_ARRAY_LEN(cols) * sizeof(char *));
        DS_ASSERT(row != NULL);
        for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++) {
            row[c] = strdup(v[c]);
            DS_ASSERT(row[c] != NULL);
        }
        t.rows[t.nrows++] = row;
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/tuned.csv", dir);
    ds_status st = ds_table_write(&t, path, err);
    ds_table_free(&t);
    return st;
}
