/*
 * compare.c: `descent compare BASE NEW [options]`, the regression gate.
 *
 * BASE and NEW are runs.csv files, sweep folders (their runs.csv) or run
 * folders (their summary.csv). Runs are matched by run_id (a hash of the
 * configuration, threads excluded). For each matched run:
 *
 *   status             ok in BASE and diverged/failed in NEW: a regression
 *   final_eval_metric  worse by more than the tolerance: a regression
 *                      (accuracy: higher is better, absolute --tol-metric;
 *                      other metrics, e.g. mse or suboptimality, lower is
 *                      better, relative --tol-loss)
 *   final_train_loss,  higher by more than --tol-loss relative: a regression
 *   final_eval_loss
 *   steps_to_target    target reached in BASE but not in NEW, or more steps
 *                      by more than --tol-steps relative: a regression
 *   samples_per_s      the ratio NEW/BASE, reported when beyond --tol-speed
 *                      (machines are noisy); a regression only with
 *                      --gate-speed
 *
 * Defaults (below) can be set per suite in the [compare] section of its
 * experiment file, which compare reads from a sweep folder's experiment.ini
 * (NEW's, else BASE's); flags override both.
 *
 * Changes the other way are reported as improvements. A run of BASE missing
 * from NEW is reported and fails the gate (unless --allow-missing): a gate
 * must not pass because a run vanished. Runs only in NEW are listed as added.
 * Exit: 0 no regression, 1 a regression (or a missing run), 2 bad input.
 *
 * The tolerances' defaults (below) absorb float rounding between machines
 * (OpenBLAS picks its kernels by CPU, so sums round differently) on the
 * short CI runs; a real regression (a wrong update, a broken layer) moves
 * these numbers by far more.
 */
#include "compare.h"

#include "config.h"
#include "experiment.h"
#include "table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define DEF_TOL_METRIC 0.005 /* accuracy, absolute */
#define DEF_TOL_LOSS 0.05    /* losses and lower-is-better metrics, relative */
#define DEF_TOL_STEPS 0.10   /* steps to target, relative */
#define DEF_TOL_SPEED 0.10   /* samples/s ratio beyond which a change is reported */
#define ABS_FLOOR 1e-6       /* below this, relative tolerances use it as the scale */

struct cmp_opts {
    double tol_metric, tol_loss, tol_steps, tol_speed;
    int gate_speed, allow_missing;
};

/* Loads BASE or NEW (file or folder) into t; path_used receives what was read. */
static ds_status load_side(const char *arg, struct ds_table *t, char *path_used, size_t len,
                           struct ds_err *err)
{
    struct stat st;
    if (stat(arg, &st) != 0)
        return ds_err_set(err, DS_ERR_USAGE, "%s: no such file or folder", arg);
    if (S_ISDIR(st.st_mode)) {
        snprintf(path_used, len, "%s/runs.csv", arg);
        if (stat(path_used, &st) != 0) snprintf(path_used, len, "%s/summary.csv", arg);
        if (stat(path_used, &st) != 0)
            return ds_err_set(err, DS_ERR_USAGE,
                              "%s: neither a sweep folder (runs.csv) nor a run folder (summary.csv)",
                              arg);
    } else {
        snprintf(path_used, len, "%s", arg);
    }
    ds_status s = ds_table_read(path_used, t, err);
    if (s != DS_OK) return s == DS_ERR_IO ? DS_ERR_USAGE : s;
    const char *need[] = {"run_id", "status"};
    for (size_t i = 0; i < DS_ARRAY_LEN(need); i++)
        if (ds_table_col(t, need[i]) < 0) {
            ds_table_free(t);
            return ds_err_set(err, DS_ERR_INPUT, "%s: no '%s' column: not a runs.csv or summary.csv",
                              path_used, need[i]);
        }
    return DS_OK;
}

static long find_run(const struct ds_table *t, const char *id)
{
    for (size_t r = 0; r < t->nrows; r++)
        if (strcmp(ds_table_get(t, r, "run_id"), id) == 0) return (long)r;
    return -1;
}

/* "workload optimizer lr=... seed=...": the configuration columns in which
 * row r differs from another of BASE's runs of the same workload and
 * optimizer (defaults that follow from those two are left out). */
static void run_label(const struct ds_table *b, size_t r, char *buf, size_t len)
{
    const char *w = ds_table_get(b, r, "workload"), *o = ds_table_get(b, r, "optimizer");
    size_t at = (size_t)snprintf(buf, len, "%s %s", w, o);
    for (int k = 0; k < ds_config_key_count() && at + 1 < len; k++) {
        const char *name = ds_config_key_name(k);
        if (ds_config_key_is_path(k) || !strcmp(name, "threads") || !strcmp(name, "workload") ||
            !strcmp(name, "optimizer"))
            continue;
        const char *v = ds_table_get(b, r, name);
        int varies = 0;
        for (size_t s = 0; s < b->nrows && !varies; s++)
            varies = s != r && !strcmp(ds_table_get(b, s, "workload"), w) &&
                     !strcmp(ds_table_get(b, s, "optimizer"), o) &&
                     strcmp(ds_table_get(b, s, name), v) != 0;
        if (varies) at += (size_t)snprintf(buf + at, len - at, " %s=%s", name, v);
    }
    if (at >= len) buf[len - 1] = '\0';
}

struct change {
    char run[200], what[32], base[32], now[32], delta[32], verdict[80];
};

static void add_change(struct change **v, size_t *n, const char *run, const char *what,
                       const char *base, const char *now, double delta, int pct, const char *verdict)
{
    *v = realloc(*v, (*n + 1) * sizeof **v);
    DS_ASSERT(*v != NULL);
    struct change *c = &(*v)[(*n)++];
    snprintf(c->run, sizeof c->run, "%s", run);
    snprintf(c->what, sizeof c->what, "%s", what);
    snprintf(c->base, sizeof c->base, "%s", *base ? base : "-");
    snprintf(c->now, sizeof c->now, "%s", *now ? now : "-");
    if (isnan(delta)) snprintf(c->delta, sizeof c->delta, "-");
    else if (pct) snprintf(c->delta, sizeof c->delta, "%+.1f%%", 100.0 * delta);
    else snprintf(c->delta, sizeof c->delta, "%+.4g", delta);
    snprintf(c->verdict, sizeof c->verdict, "%s", verdict);
}

static int usage(const char *msg)
{
    fprintf(stderr, "descent compare: %s\n", msg);
    fprintf(stderr,
            "usage: descent compare BASE NEW [--tol-metric A] [--tol-loss R] [--tol-steps R]\n"
            "                        [--tol-speed R] [--gate-speed] [--allow-missing]\n"
            "  BASE, NEW: runs.csv files, sweep folders or run folders\n"
            "  defaults: --tol-metric %g (accuracy, absolute), --tol-loss %g, --tol-steps %g,\n"
            "            --tol-speed %g (relative)\n",
            DEF_TOL_METRIC, DEF_TOL_LOSS, DEF_TOL_STEPS, DEF_TOL_SPEED);
    return 2;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int ds_cmd_compare(int argc, char **argv)
{
    struct cmp_opts o = {DEF_TOL_METRIC, DEF_TOL_LOSS, DEF_TOL_STEPS, DEF_TOL_SPEED, 0, 0};
    int given[5] = {0}; /* tolerances and --gate-speed given as flags */
    const char *side[2] = {NULL, NULL};
    int nside = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        struct {
            const char *flag;
            double *dst;
        } tols[] = {{"--tol-metric", &o.tol_metric},
                    {"--tol-loss", &o.tol_loss},
                    {"--tol-steps", &o.tol_steps},
                    {"--tol-speed", &o.tol_speed}};
        int matched = 0;
        for (size_t t = 0; t < DS_ARRAY_LEN(tols); t++) {
            size_t fl = strlen(tols[t].flag);
            if (strncmp(a, tols[t].flag, fl) != 0 || (a[fl] != '\0' && a[fl] != '=')) continue;
            const char *v = a[fl] == '=' ? a + fl + 1 : (i + 1 < argc ? argv[++i] : NULL);
            char *end, m[256];
            double x = v ? strtod(v, &end) : NAN;
            if (!v || end == v || *end || !(x >= 0) || !isfinite(x)) {
                snprintf(m, sizeof m, "%s: expected a number >= 0, got '%s'", tols[t].flag,
                         v ? v : "");
                return usage(m);
            }
            *tols[t].dst = x;
            given[t] = 1;
            matched = 1;
        }
        if (matched) continue;
        if (strcmp(a, "--gate-speed") == 0) o.gate_speed = 1, given[4] = 1;
        else if (strcmp(a, "--allow-missing") == 0) o.allow_missing = 1;
        else if (a[0] == '-' && a[1]) {
            char m[512];
            snprintf(m, sizeof m,
                     "unknown option '%s' (valid: --tol-metric, --tol-loss, --tol-steps, "
                     "--tol-speed, --gate-speed, --allow-missing)",
                     a);
            return usage(m);
        } else if (nside < 2) side[nside++] = a;
        else return usage("two inputs only: BASE and NEW");
    }
    if (nside != 2) return usage("needs BASE and NEW");

    struct ds_table t[2];
    char used[2][1200];
    struct ds_err err = {{0}};
    for (int s = 0; s < 2; s++) {
        ds_status st = load_side(side[s], &t[s], used[s], sizeof used[s], &err);
        if (st != DS_OK) {
            if (s == 1) ds_table_free(&t[0]);
            fprintf(stderr, "descent compare: %s\n", err.msg);
            return 2;
        }
    }
    const struct ds_table *b = &t[0], *n = &t[1];
    /* the suite's own tolerances: [compare] of the experiment file a sweep
     * folder keeps (NEW's first, then BASE's); flags override them */
    char src[1300] = "";
    for (int s = 1; s >= 0 && !src[0]; s--) {
        struct stat sb;
        char ini[1300];
        snprintf(ini, sizeof ini, "%s/experiment.ini", side[s]);
        if (stat(ini, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        struct ds_exp_compare ec;
        if (ds_exp_load_compare(ini, &ec, &err) != DS_OK) {
            fprintf(stderr, "descent compare: %s\n", err.msg);
            ds_table_free(&t[0]), ds_table_free(&t[1]);
            return 2;
        }
        double *dst[4] = {&o.tol_metric, &o.tol_loss, &o.tol_steps, &o.tol_speed};
        double val[4] = {ec.tol_metric, ec.tol_loss, ec.tol_steps, ec.tol_speed};
        for (int k = 0; k < 4; k++)
            if (!given[k] && !isnan(val[k])) *dst[k] = val[k];
        if (!given[4] && ec.gate_speed >= 0) o.gate_speed = ec.gate_speed;
        snprintf(src, sizeof src, "%s", ini);
    }

    struct change *ch = NULL;
    size_t nch = 0, matched = 0, regress = 0, improve = 0, missing = 0, added = 0, nspeed = 0;
    double *ratios = malloc((b->nrows + 1) * sizeof(double));
    DS_ASSERT(ratios != NULL);
    for (size_t r = 0; r < b->nrows; r++) {
        char label[200];
        run_label(b, r, label, sizeof label);
        long q = find_run(n, ds_table_get(b, r, "run_id"));
        if (q < 0) {
            missing++;
            add_change(&ch, &nch, label, "run", "present", "", NAN, 0,
                       o.allow_missing ? "missing (allowed)" : "MISSING in NEW");
            continue;
        }
        matched++;
        const char *bs = ds_table_get(b, r, "status"), *ns = ds_table_get(n, (size_t)q, "status");
        if (strcmp(bs, ns) != 0) { /* ok < diverged < failed */
            int sb = !strcmp(bs, "ok") ? 0 : !strcmp(bs, "diverged") ? 1 : 2;
            int sn = !strcmp(ns, "ok") ? 0 : !strcmp(ns, "diverged") ? 1 : 2;
            int worse = sn > sb;
            if (sn != sb) {
                worse ? regress++ : improve++;
                add_change(&ch, &nch, label, "status", bs, ns, NAN, 0,
                           worse ? "REGRESSION" : "improvement");
            }
        }
        /* the quality numbers */
        int higher = strcmp(ds_table_get(b, r, "metric"), "accuracy") == 0;
        struct {
            const char *col;
            int higher_better, absolute;
            double tol;
        } q_cols[] = {{"final_eval_metric", higher, higher, higher ? o.tol_metric : o.tol_loss},
                      {"final_train_loss", 0, 0, o.tol_loss},
                      {"final_eval_loss", 0, 0, o.tol_loss}};
        for (size_t c = 0; c < DS_ARRAY_LEN(q_cols); c++) {
            double x = ds_table_num(b, r, q_cols[c].col), y = ds_table_num(n, (size_t)q, q_cols[c].col);
            if (isnan(x) || isnan(y)) continue;
            double allowed = q_cols[c].absolute ? q_cols[c].tol
                                                : q_cols[c].tol * fmax(fabs(x), ABS_FLOOR);
            double worse_by = q_cols[c].higher_better ? x - y : y - x;
            if (fabs(worse_by) <= allowed) continue;
            char verdict[80];
            int is_worse = worse_by > 0;
            snprintf(verdict, sizeof verdict, "%s (tol %s%g)", is_worse ? "REGRESSION" : "improvement",
                     q_cols[c].absolute ? "" : "x", q_cols[c].tol);
            is_worse ? regress++ : improve++;
            add_change(&ch, &nch, label, q_cols[c].col, ds_table_get(b, r, q_cols[c].col),
                       ds_table_get(n, (size_t)q, q_cols[c].col), y - x, 0, verdict);
        }
        /* steps to target */
        double sx = ds_table_num(b, r, "steps_to_target"), sy = ds_table_num(n, (size_t)q, "steps_to_target");
        if (!isnan(sx) || !isnan(sy)) {
            const char *v = NULL;
            if (!isnan(sx) && isnan(sy)) v = "REGRESSION (target not reached)", regress++;
            else if (isnan(sx) && !isnan(sy)) v = "improvement (target reached)", improve++;
            else if (sy > sx * (1 + o.tol_steps) + 1) v = "REGRESSION", regress++;
            else if (sy < sx * (1 - o.tol_steps) - 1) v = "improvement", improve++;
            if (v)
                add_change(&ch, &nch, label, "steps_to_target", ds_table_get(b, r, "steps_to_target"),
                           ds_table_get(n, (size_t)q, "steps_to_target"),
                           isnan(sx) || isnan(sy) ? NAN : sy - sx, 0, v);
        }
        /* throughput */
        double px = ds_table_num(b, r, "samples_per_s"), py = ds_table_num(n, (size_t)q, "samples_per_s");
        if (px > 0 && py > 0) {
            double ratio = py / px;
            ratios[nspeed++] = ratio;
            if (fabs(ratio - 1) > o.tol_speed) {
                int slower = ratio < 1;
                const char *v = slower ? (o.gate_speed ? "REGRESSION (slower)" : "slower (not gated)")
                                       : "faster";
                if (slower && o.gate_speed) regress++;
                add_change(&ch, &nch, label, "samples_per_s", ds_table_get(b, r, "samples_per_s"),
                           ds_table_get(n, (size_t)q, "samples_per_s"), ratio - 1, 1, v);
            }
        }
    }
    for (size_t r = 0; r < n->nrows; r++)
        if (find_run(b, ds_table_get(n, r, "run_id")) < 0) {
            added++;
            char label[200];
            snprintf(label, sizeof label, "%s %s (run_id %s)", ds_table_get(n, r, "workload"),
                     ds_table_get(n, r, "optimizer"), ds_table_get(n, r, "run_id"));
            add_change(&ch, &nch, label, "run", "", "present", NAN, 0, "added in NEW");
        }

    printf("compare %s (BASE, %zu runs) with %s (NEW, %zu runs): %zu matched\n", used[0], b->nrows,
           used[1], n->nrows, matched);
    printf("tolerances: metric %g (accuracy, absolute), loss x%g, steps x%g, speed x%g%s%s%s\n",
           o.tol_metric, o.tol_loss, o.tol_steps, o.tol_speed, o.gate_speed ? ", speed gated" : "",
           src[0] ? "; from " : "", src);
    if (nch) {
        int w = 12;
        for (size_t i = 0; i < nch; i++) w = (int)strlen(ch[i].run) > w ? (int)strlen(ch[i].run) : w;
        if (w > 70) w = 70;
        printf("%-*s  %-17s  %-14s  %-14s  %-10s  %s\n", w, "run", "what", "base", "new", "change",
               "verdict");
        for (size_t i = 0; i < nch; i++)
            printf("%-*.*s  %-17s  %-14s  %-14s  %-10s  %s\n", w, w, ch[i].run, ch[i].what,
                   ch[i].base, ch[i].now, ch[i].delta, ch[i].verdict);
    } else {
        printf("no run changed beyond the tolerances\n");
    }
    if (nspeed) {
        qsort(ratios, nspeed, sizeof *ratios, cmp_double);
        double med = nspeed % 2 ? ratios[nspeed / 2]
                                : 0.5 * (ratios[nspeed / 2 - 1] + ratios[nspeed / 2]);
        printf("speed: median NEW/BASE samples/s %.3f over %zu runs (changes beyond +-%.0f%% listed; %s)\n",
               med, nspeed, 100 * o.tol_speed, o.gate_speed ? "gating" : "not gating: --gate-speed");
    }
    int fail = regress > 0 || (missing > 0 && !o.allow_missing);
    printf("result: %zu regression%s, %zu improvement%s, %zu missing, %zu added: %s\n", regress,
           regress == 1 ? "" : "s", improve, improve == 1 ? "" : "s", missing, added,
           fail ? "FAIL" : "pass");
    if (fail)
        fprintf(stderr, "descent compare: %zu regression%s and %zu missing run%s%s: see the table on stdout\n",
                regress, regress == 1 ? "" : "s", missing, missing == 1 ? "" : "s",
                missing && !o.allow_missing ? " (missing runs fail the gate; --allow-missing)" : "");
    free(ch);
    free(ratios);
    ds_table_free(&t[0]);
    ds_table_free(&t[1]);
    return fail ? 1 : 0;
}
