/*
 * plot.c: `descent plot DIR`: gnuplot figures of a sweep (or run) folder, in
 * DIR/plots/ as PNG (pngcairo) and SVG, with the data (.dat) and the script
 * (.gp) of each, so a figure can be restyled and redrawn by hand.
 *
 * Per workload, one line per arm at its tuned LR (analysis.h), the band
 * between the seeds' min and max around their mean:
 *   WORKLOAD-loss-step     training loss (suboptimality on problems with a
 *                          known optimum) against steps, log y
 *   WORKLOAD-loss-time     the same against wall-clock seconds of training
 *   WORKLOAD-metric-epoch  the evaluation metric against epochs
 *   WORKLOAD-lr            final metric against the learning rate, per arm
 *                          (tuneability), error bars min..max over seeds
 *   WORKLOAD-reg-KEY       final test and train metric against a
 *                          regularization strength (l2, l1, wd, dropout):
 *                          the generalization gap
 * and across workloads:
 *   throughput             samples/s of each tuned arm
 *   profile                AlgoPerf performance profiles (time to target)
 */
#define _XOPEN_SOURCE 700
#include "plot.h"

#include "analysis.h"
#include "../core/fileio.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define W_PX 960
#define H_PX 560
#define FONT "DejaVu Sans,12"

static const char *const reg_keys[] = {"l2", "l1", "wd", "dropout"};

/* s for inside a gnuplot single-quoted string ('' is its escaped quote), in
 * one of a ring of buffers so several can be live in one fprintf. */
static const char *gq(const char *s)
{
    static char ring[8][600];
    static int next;
    char *b = ring[next++ % 8];
    size_t at = 0;
    for (; *s && at + 3 < sizeof ring[0]; s++) {
        if (*s == '\'') b[at++] = '\'';
        b[at++] = *s == '\n' ? ' ' : *s;
    }
    b[at] = '\0';
    return b;
}

struct series {
    int n;
    double *x, *mean, *lo, *hi;
};

static void series_free(struct series *s)
{
    free(s->x), free(s->mean), free(s->lo), free(s->hi);
    memset(s, 0, sizeof *s);
}

/* Which curve column is the loss to plot for workload w: suboptimality where
 * the problem knows its optimum (and it is filled in), else train_loss. */
static const char *loss_column(const struct ds_analysis *a, const char *workload)
{
    const struct ds_table *c = &a->curves;
    if (ds_table_col(c, "suboptimality") < 0) return "train_loss";
    for (size_t r = 0; r < a->runs.nrows; r++) /* a run that ended ok has the column filled in */
        if (!strcmp(ds_table_get(&a->runs, r, "workload"), workload) &&
            !strcmp(ds_table_get(&a->runs, r, "status"), "ok"))
            return isnan(ds_table_num(&a->runs, r, "optimum_loss")) ? "train_loss" : "suboptimality";
    return "train_loss";
}

/* The seeds' curves of one LR of an arm, aligned by evaluation index: x the
 * mean of xcol, y's mean/min/max over the seeds (rows with a missing value
 * skipped). */
static void gather_series(const struct ds_analysis *a, const struct ds_an_lr *l, const char *xcol,
                          const char *ycol, struct series *s)
{
    memset(s, 0, sizeof *s);
    const struct ds_table *c = &a->curves;
    int cap = 0;
    int *count = NULL;
    double *xs = NULL;
    for (int i = 0; i < l->n; i++) {
        const char *id = ds_table_get(&a->runs, l->rows[i], "run_id");
        int k = 0;
        for (size_t r = 0; r < c->nrows; r++) {
            if (strcmp(ds_table_get(c, r, "run_id"), id)) continue;
            double x = ds_table_num(c, r, xcol), y = ds_table_num(c, r, ycol);
            if (isnan(x) || isnan(y) || !isfinite(y)) continue;
            if (k >= cap) {
                int nc = cap ? 2 * cap : 64;
                s->mean = realloc(s->mean, sizeof(double) * (size_t)nc);
                s->lo = realloc(s->lo, sizeof(double) * (size_t)nc);
                s->hi = realloc(s->hi, sizeof(double) * (size_t)nc);
                xs = realloc(xs, sizeof(double) * (size_t)nc);
                count = realloc(count, sizeof(int) * (size_t)nc);
                DS_ASSERT(s->mean && s->lo && s->hi && xs && count);
                for (int j = cap; j < nc; j++) count[j] = 0, xs[j] = 0, s->mean[j] = 0;
                cap = nc;
            }
            if (count[k] == 0) s->lo[k] = s->hi[k] = y;
            s->lo[k] = fmin(s->lo[k], y), s->hi[k] = fmax(s->hi[k], y);
            s->mean[k] += y, xs[k] += x, count[k]++;
            k++;
        }
        if (i == 0 || k < s->n) s->n = k; /* the points every seed has */
    }
    for (int k = 0; k < s->n; k++) s->mean[k] /= count[k], xs[k] /= count[k];
    s->x = xs;
    free(count);
}

struct fig {
    char base[1024]; /* DIR/plots/NAME, without extension */
    FILE *dat, *gp;
    int n_blocks, height;
};

static ds_status fig_open_h(struct fig *f, const char *pdir, const char *name, int height,
                            struct ds_err *err)
{
    char p[1100];
    snprintf(f->base, sizeof f->base, "%s/%s", pdir, name);
    snprintf(p, sizeof p, "%s.dat", f->base);
    f->dat = fopen(p, "w");
    snprintf(p, sizeof p, "%s.gp", f->base);
    f->gp = f->dat ? fopen(p, "w") : NULL;
    f->n_blocks = 0;
    if (!f->dat || !f->gp) {
        if (f->dat) fclose(f->dat);
        return ds_err_set(err, DS_ERR_USAGE, "%s: cannot write: %s", p, strerror(errno));
    }
    fprintf(f->gp,
            "# %s.gp: made by descent plot; run `gnuplot %s.gp` in this folder to redraw\n"
            "set terminal pngcairo size %d,%d font \"%s\" noenhanced\n"
            "set output '%s.png'\n"
            "set key below maxrows 4 noenhanced\nset grid back lc rgb '#dddddd'\n"
            "set border 3\nset tics nomirror\n",
            name, name, W_PX, height, FONT, name);
    f->height = height;
    return DS_OK;
}

static ds_status fig_open(struct fig *f, const char *pdir, const char *name, struct ds_err *err)
{
    return fig_open_h(f, pdir, name, H_PX, err);
}

/* Finishes the script: the SVG from the same plot, then runs gnuplot on it. */
static ds_status fig_close(struct fig *f, const char *pdir, struct ds_err *err)
{
    const char *name = strrchr(f->base, '/') + 1;
    fprintf(f->gp, "set terminal svg size %d,%d dynamic font \"%s\" noenhanced\nset output '%s.svg'\nreplot\n",
            W_PX, f->height, FONT, name);
    fclose(f->gp);
    fclose(f->dat);
    return ds_plot_gnuplot(pdir, name, err);
}

ds_status ds_plot_gnuplot(const char *pdir, const char *name, struct ds_err *err)
{
    char script[1100];
    snprintf(script, sizeof script, "%s.gp", name);
    char log[1100];
    snprintf(log, sizeof log, "%s/%s.log", pdir, name);
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) { /* gnuplot in the plots folder, so the scripts name files relative to it */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 || chdir(pdir) != 0) _exit(126);
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    if (pid < 0) return ds_err_set(err, DS_ERR_FAILED, "fork: %s", strerror(errno));
    int st;
    waitpid(pid, &st, 0);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
        return ds_err_set(err, DS_ERR_USAGE,
                          "gnuplot not found: install it (apt-get install gnuplot-nox)");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return ds_err_set(err, DS_ERR_FAILED, "gnuplot failed on %s/%s (see %s)", pdir, script, log);
    remove(log);
    return DS_OK;
}

static const char *palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
#define NPAL ((int)(sizeof palette / sizeof palette[0]))

/* Curves of every tuned arm of workload w: x against y. */
static ds_status curve_figure(const struct ds_analysis *a, int w, const char *pdir, const char *tag,
                              const char *xcol, const char *xlabel, const char *ycol,
                              const char *ylabel, int logy, int *made, struct ds_err *err)
{
    const char *wl = a->workloads[w];
    struct series *ss = calloc((size_t)a->n_arms + 1, sizeof *ss);
    DS_ASSERT(ss != NULL);
    int any = 0, positive = 1;
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (strcmp(arm->workload, wl) || arm->best < 0) continue;
        gather_series(a, &arm->lrs[arm->best], xcol, ycol, &ss[i]);
        any |= ss[i].n > 1;
        for (int k = 0; k < ss[i].n; k++) positive &= ss[i].lo[k] > 0;
        positive &= logy;
    }
    ds_status st = DS_OK;
    if (any) {
        char name[600];
        snprintf(name, sizeof name, "%s-%s", wl, tag);
        struct fig f;
        st = fig_open(&f, pdir, name, err);
        if (st == DS_OK) {
            fprintf(f.gp, "set title '%s: %s (tuned learning rates; band: min..max over seeds)'\n", gq(wl), gq(ylabel));
            fprintf(f.gp, "set xlabel '%s'\nset ylabel '%s%s'\n", xlabel, ylabel, positive ? " (log scale)" : "");
            if (positive) fprintf(f.gp, "set logscale y\nset format y '%%.0e'\n");
            fprintf(f.gp, "plot ");
            int first = 1;
            for (int i = 0; i < a->n_arms; i++) {
                if (ss[i].n < 2) continue;
                const struct ds_an_arm *arm = &a->arms[i];
                fprintf(f.dat, "# %s lr=%g\n", arm->label, arm->lrs[arm->best].lr);
                for (int k = 0; k < ss[i].n; k++)
                    fprintf(f.dat, "%.10g %.10g %.10g %.10g\n", ss[i].x[k], ss[i].mean[k], ss[i].lo[k], ss[i].hi[k]);
                fprintf(f.dat, "\n\n");
                const char *col = palette[i % NPAL];
                fprintf(f.gp,
                        "%s'%s.dat' index %d using 1:3:4 with filledcurves fs transparent solid 0.18 "
                        "noborder lc rgb '%s' notitle, \\\n"
                        "  '%s.dat' index %d using 1:2 with lines lw 2 lc rgb '%s' title '%s (lr %g)'",
                        first ? "" : ", \\\n  ", gq(name), f.n_blocks, col, gq(name), f.n_blocks, col,
                        gq(arm->label), arm->lrs[arm->best].lr);
                f.n_blocks++;
                first = 0;
            }
            fprintf(f.gp, "\n");
            st = fig_close(&f, pdir, err);
            if (st == DS_OK) (*made)++;
        }
    }
    for (int i = 0; i < a->n_arms; i++) series_free(&ss[i]);
    free(ss);
    return st;
}

static ds_status lr_figure(const struct ds_analysis *a, int w, const char *pdir, int *made,
                           struct ds_err *err)
{
    const char *wl = a->workloads[w];
    int any = 0, logy0 = !a->higher_better[w];
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (strcmp(arm->workload, wl) || arm->n_lr < 2) continue;
        for (int j = 0; j < arm->n_lr; j++) /* a point to draw */
            any |= arm->lrs[j].n_ok > 0 && isfinite(arm->lrs[j].mean) && (!logy0 || arm->lrs[j].min > 0);
    }
    if (!any) return DS_OK;
    char name[600];
    snprintf(name, sizeof name, "%s-lr", wl);
    struct fig f;
    ds_status st = fig_open(&f, pdir, name, err);
    if (st != DS_OK) return st;
    int logy = !a->higher_better[w];
    fprintf(f.gp, "set title '%s: final %s against the learning rate (mean over seeds, bars min..max; diverged runs left out)'\n",
            gq(wl), gq(a->metric[w]));
    fprintf(f.gp, "set xlabel 'learning rate (log scale)'\nset ylabel 'final test %s%s'\nset logscale x\n",
            gq(a->metric[w]), logy ? " (log scale)" : "");
    if (logy) fprintf(f.gp, "set logscale y\n");
    fprintf(f.gp, "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\nplot ");
    int first = 1;
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (strcmp(arm->workload, wl) || arm->n_lr < 2) continue;
        fprintf(f.dat, "# %s\n", arm->label);
        int pts = 0;
        for (int j = 0; j < arm->n_lr; j++) {
            const struct ds_an_lr *l = &arm->lrs[j];
            if (l->n_ok == 0 || !isfinite(l->mean) || (logy && l->min <= 0)) continue;
            fprintf(f.dat, "%.10g %.10g %.10g %.10g\n", l->lr, l->mean, l->min, l->max);
            pts++;
        }
        fprintf(f.dat, "\n\n");
        if (pts) {
            const char *col = palette[i % NPAL];
            fprintf(f.gp,
                    "%s'%s.dat' index %d using 1:2:3:4 with yerrorlines lw 2 pt 7 lc rgb '%s' title '%s'",
                    first ? "" : ", \\\n  ", gq(name), f.n_blocks, col, gq(arm->label));
            first = 0;
        }
        f.n_blocks++;
    }
    if (first) fprintf(f.gp, "NaN notitle");
    fprintf(f.gp, "\n");
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

/* Final metric (test, and train where recorded) against a regularization
 * strength: one pair of lines per series of arms that differ only in it. */
static ds_status reg_figure(const struct ds_analysis *a, int w, const char *key, const char *pdir,
                            int *made, struct ds_err *err)
{
    const char *wl = a->workloads[w];
    int any = 0;
    double minpos = INFINITY;
    for (int i = 0; i < a->n_arms; i++) {
        int ser[64];
        if (strcmp(a->arms[i].workload, wl)) continue;
        int n = ds_analysis_series(a, i, key, ser, 64);
        for (int p = 0; p < n; p++) {
            double v = ds_table_num(&a->runs, a->arms[ser[p]].row, key);
            if (v > 0) minpos = fmin(minpos, v);
        }
        any |= n > 0;
    }
    if (!any || !isfinite(minpos)) return DS_OK;
    double zero_at = minpos / 10; /* a strength of 0 drawn one decade below the smallest */
    char name[600];
    snprintf(name, sizeof name, "%s-reg-%s", wl, key);
    struct fig f;
    ds_status st = fig_open(&f, pdir, name, err);
    if (st != DS_OK) return st;
    fprintf(f.gp, "set title '%s: final %s against %s (tuned learning rate per strength; dashed: training set)'\n",
            gq(wl), gq(a->metric[w]), key);
    fprintf(f.gp, "set xlabel '%s strength (log scale; 0 drawn at %g)'\nset ylabel 'final %s'\nset logscale x\n",
            key, zero_at, gq(a->metric[w]));
    fprintf(f.gp, "set format x '%%g'\nset xtics add ('0' %g)\n", zero_at);
    fprintf(f.gp, "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\nplot ");
    int first = 1, ci = 0;
    for (int i = 0; i < a->n_arms; i++) {
        int ser[64];
        if (strcmp(a->arms[i].workload, wl)) continue;
        int n = ds_analysis_series(a, i, key, ser, 64);
        if (!n) continue;
        fprintf(f.dat, "# %s: %s, test %s, train %s\n", a->arms[i].label, key, a->metric[w], a->metric[w]);
        for (int p = 0; p < n; p++) {
            const struct ds_an_arm *b = &a->arms[ser[p]];
            double v = ds_table_num(&a->runs, b->row, key);
            fprintf(f.dat, "%.10g %.10g %.10g\n", v > 0 ? v : zero_at, b->lrs[b->best].mean,
                    b->lrs[b->best].train_mean);
        }
        fprintf(f.dat, "\n\n");
        const char *col = palette[ci++ % NPAL];
        const char *opt = a->arms[i].optimizer;
        fprintf(f.gp,
                "%s'%s.dat' index %d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '%s test', \\\n"
                "  '%s.dat' index %d using 1:3 with linespoints lw 2 dt 2 pt 6 lc rgb '%s' title '%s train'",
                first ? "" : ", \\\n  ", gq(name), f.n_blocks, col, gq(opt), gq(name), f.n_blocks, col, gq(opt));
        f.n_blocks++;
        first = 0;
    }
    fprintf(f.gp, "\n");
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

static ds_status throughput_figure(const struct ds_analysis *a, const char *pdir, int *made,
                                   struct ds_err *err)
{
    int bars = 0;
    for (int i = 0; i < a->n_arms; i++)
        bars += a->arms[i].best >= 0 && !isnan(a->arms[i].lrs[a->arms[i].best].sps_mean);
    if (!bars) return DS_OK; /* every run diverged or failed */
    struct fig f;
    ds_status st = fig_open_h(&f, pdir, "throughput", 820, err);
    if (st != DS_OK) return st;
    int n = 0;
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (arm->best < 0 || isnan(arm->lrs[arm->best].sps_mean)) continue;
        int w = ds_analysis_workload(a, arm->workload);
        char lab[600];
        snprintf(lab, sizeof lab, "%s: %s", arm->workload, arm->label);
        for (char *c = lab; *c; c++)
            if (*c == '"') *c = '\''; /* the data file's strings are double-quoted */
        fprintf(f.dat, "%d \"%s\" %.10g %d\n", n, lab, arm->lrs[arm->best].sps_mean, w % NPAL);
        n++;
    }
    fprintf(f.gp, "set title 'Training throughput of each tuned arm (mean over seeds; colour: workload)'\n");
    fprintf(f.gp, "set ylabel 'samples per second (log scale)'\nset logscale y\nset format y '%%.0e'\n");
    fprintf(f.gp, "set style fill solid 0.85 border -1\nset boxwidth 0.7\nset xtics rotate by 90 right font ',9'\n");
    fprintf(f.gp, "set bmargin 19\nunset key\nset xrange [-0.7:%d]\n", n > 0 ? n : 1);
    fprintf(f.gp, "set palette maxcolors %d\nset palette defined (", NPAL);
    for (int k = 0; k < NPAL; k++) fprintf(f.gp, "%s%d '%s'", k ? ", " : "", k, palette[k]);
    fprintf(f.gp, ")\nset cbrange [0:%d]\nunset colorbox\n", NPAL - 1);
    fprintf(f.gp, "plot 'throughput.dat' using 1:3:4:xtic(2) with boxes lc palette\n");
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

static ds_status profile_figure(const struct ds_analysis *a, const char *pdir, int *made,
                                struct ds_err *err)
{
    if (a->n_prof_workloads == 0 || a->n_entrants == 0) return DS_OK;
    struct fig f;
    ds_status st = fig_open_h(&f, pdir, "profile", H_PX + 20 * (a->n_entrants > 4 ? a->n_entrants - 4 : 0), err);
    if (st != DS_OK) return st;
    fprintf(f.gp, "set title 'Performance profiles (AlgoPerf): time to target within tau x the fastest, over %d workload%s'\n",
            a->n_prof_workloads, a->n_prof_workloads == 1 ? "" : "s");
    fprintf(f.gp, "set xlabel 'tau (time to target / fastest arm''s)'\nset ylabel 'fraction of workloads'\n");
    fprintf(f.gp, "set yrange [-0.02:1.05]\nset xrange [1:%g]\n", DS_AN_TAU_MAX);
    fprintf(f.gp, "plot ");
    for (int e = 0; e < a->n_entrants; e++) {
        fprintf(f.dat, "# %s\n", a->entrants[e]);
        for (int k = 0; k <= 300; k++) {
            double tau = 1.0 + (DS_AN_TAU_MAX - 1.0) * k / 300;
            fprintf(f.dat, "%.6g %.6g\n", tau, ds_analysis_rho(a, e, tau));
        }
        fprintf(f.dat, "\n\n");
        fprintf(f.gp, "%s'profile.dat' index %d using 1:2 with lines lw 2 lc rgb '%s' title '%s (area %.2f)'",
                e ? ", \\\n  " : "", e, palette[e % NPAL], gq(a->entrants[e]), a->area[e]);
    }
    fprintf(f.gp, "\n");
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

/* ---- data-parallel scaling ---- */

/* Whether any point of any family at this rank count is oversubscribed. */
static int ranks_oversubscribed(const struct ds_analysis *a, long ranks)
{
    for (int f = 0; f < a->n_scaling; f++)
        for (int i = 0; i < a->scaling[f].n; i++)
            if (a->scaling[f].pts[i].ranks == ranks && a->scaling[f].pts[i].oversubscribed) return 1;
    return 0;
}

/* Whether a family's points have the same threads per rank (its ideal
 * speedup is then the ratio of ranks). */
static int same_threads(const struct ds_an_scaling *fam)
{
    for (int i = 1; i < fam->n; i++)
        if (fam->pts[i].threads != fam->pts[0].threads) return 0;
    return 1;
}

/* Speedup (efficiency = 0) or parallel efficiency (1) against ranks: one
 * line per family, the ideal dashed, oversubscribed points circled. */
static ds_status scaling_figure(const struct ds_analysis *a, const char *pdir, int efficiency,
                                int *made, struct ds_err *err)
{
    if (a->n_scaling == 0) return DS_OK;
    const char *name = efficiency ? "scaling-efficiency" : "scaling-speedup";
    long rmin = 0, rmax = 0, r0s[8];
    int n_r0 = 0, any_over = 0;
    double ymax = 1.0, ymin = 1.0;
    for (int k = 0; k < a->n_scaling; k++) {
        const struct ds_an_scaling *fam = &a->scaling[k];
        long r0 = fam->pts[0].ranks;
        int seen = 0;
        for (int i = 0; i < n_r0; i++) seen |= r0s[i] == r0;
        if (!seen && n_r0 < 8 && same_threads(fam)) r0s[n_r0++] = r0;
        for (int i = 0; i < fam->n; i++) {
            const struct ds_an_scale_point *p = &fam->pts[i];
            if (!rmin || p->ranks < rmin) rmin = p->ranks;
            if (p->ranks > rmax) rmax = p->ranks;
            double y = efficiency ? p->efficiency : p->speedup;
            if (isfinite(y) && y > 0) ymax = fmax(ymax, y), ymin = fmin(ymin, y);
            if (!efficiency) ymax = fmax(ymax, p->ideal), ymin = fmin(ymin, p->ideal);
            any_over |= p->oversubscribed;
        }
    }
    struct fig f;
    ds_status st = fig_open(&f, pdir, name, err);
    if (st != DS_OK) return st;
    if (efficiency)
        fprintf(f.gp, "set title 'Parallel efficiency against ranks (speedup / N; N: CPUs used over the fewest ranks'' CPUs)'\n"
                      "set ylabel 'parallel efficiency (1 = ideal)'\n");
    else
        fprintf(f.gp, "set title 'Data-parallel speedup against ranks (strong: t1/tN of the median step; weak: samples/s ratio)'\n"
                      "set ylabel 'speedup over the fewest ranks'\n");
    fprintf(f.gp, "set xlabel 'ranks (log scale)%s'\n",
            any_over ? "; circled: oversubscribed (ranks x threads > CPUs online)" : "");
    fprintf(f.gp, "set logscale x 2\nset xrange [%g:%g]\n", (double)rmin / 1.3, (double)rmax * 1.3);
    if (efficiency) /* the ideal is flat: a linear axis from 0 */
        fprintf(f.gp, "set yrange [0:%g]\n", ymax * 1.15);
    else /* log-log: the ideal N is a straight line */
        fprintf(f.gp, "set logscale y 2\nset yrange [%g:%g]\nset ylabel 'speedup over the fewest ranks (log scale)'\n"
                      "set ytics (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64, 128, 256, 512, 1024)\n",
                ymin / 1.3, ymax * 1.3);
    fprintf(f.gp, "set xtics (");
    int first = 1;
    for (long r = rmin; r <= rmax; r++) {
        int used = 0;
        for (int k = 0; k < a->n_scaling && !used; k++)
            for (int i = 0; i < a->scaling[k].n; i++) used |= a->scaling[k].pts[i].ranks == r;
        if (!used) continue;
        fprintf(f.gp, "%s'%ld%s' %ld", first ? "" : ", ", r, ranks_oversubscribed(a, r) ? " (oversubscribed)" : "", r);
        first = 0;
    }
    fprintf(f.gp, ")\nplot ");
    if (efficiency || n_r0 == 0) {
        fprintf(f.gp, "%s with lines dt 2 lw 2 lc rgb '#444444' %s", efficiency ? "1" : "NaN",
                efficiency ? "title 'ideal'" : "notitle");
    } else {
        for (int i = 0; i < n_r0; i++) {
            char t[64];
            if (n_r0 == 1 && r0s[i] == 1) snprintf(t, sizeof t, "ideal (N)");
            else snprintf(t, sizeof t, "ideal from %ld rank%s (N/%ld)", r0s[i], r0s[i] == 1 ? "" : "s", r0s[i]);
            fprintf(f.gp, "%sx/%ld. with lines dt 2 lw 2 lc rgb '#444444' title '%s'", i ? ", \\\n  " : "", r0s[i], t);
        }
    }
    for (int k = 0; k < a->n_scaling; k++) {
        const struct ds_an_scaling *fam = &a->scaling[k];
        fprintf(f.dat, "# %s: ranks, %s, oversubscribed, labelled, ideal speedup\n", fam->label, efficiency ? "efficiency" : "speedup");
        for (int i = 0; i < fam->n; i++) {
            const struct ds_an_scale_point *p = &fam->pts[i];
            double y = efficiency ? p->efficiency : p->speedup;
            fprintf(f.dat, "%ld %.6g %d %d %.6g\n", p->ranks, isfinite(y) ? y : NAN, p->oversubscribed, i > 0, p->ideal);
        }
        fprintf(f.dat, "\n\n");
        const char *col = palette[k % NPAL];
        fprintf(f.gp,
                ", \\\n  '%s.dat' index %d using 1:2 with linespoints lw 2 pt 7 ps 1.2 lc rgb '%s' title '%s'"
                ", \\\n  '%s.dat' index %d using 1:($4 > 0 ? $2 : NaN):(sprintf('%%.2f', $2)) with labels offset char 0,%s font ',9' tc rgb '%s' notitle",
                name, k, col, gq(fam->label), name, k, k % 2 ? "-0.9" : "0.9", col); /* above and below in turn */
        if (any_over)
            fprintf(f.gp, ", \\\n  '%s.dat' index %d using 1:($3 > 0 ? $2 : NaN) with points pt 6 ps 3 lw 1.5 lc rgb '%s' notitle",
                    name, k, col);
        if (!efficiency && !same_threads(fam)) /* threads per rank differ: its own ideal, by CPUs used */
            fprintf(f.gp, ", \\\n  '%s.dat' index %d using 1:5 with lines dt 2 lw 2 lc rgb '%s' title 'ideal for the above (CPUs used)'",
                    name, k, col);
        f.n_blocks++;
    }
    if (any_over)
        fprintf(f.gp, ", \\\n  NaN with points pt 6 ps 3 lw 1.5 lc rgb '#444444' title 'oversubscribed (ranks x threads > %d CPUs)'",
                a->cpus);
    fprintf(f.gp, "\n");
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

/* s for inside a gnuplot double-quoted string (where \n is a line break). */
static const char *gdq(const char *s)
{
    static char ring[4][300];
    static int next;
    char *b = ring[next++ % 4];
    size_t at = 0;
    for (; *s && at + 2 < sizeof ring[0]; s++) b[at++] = *s == '"' || *s == '\\' ? '\'' : *s;
    b[at] = '\0';
    return b;
}

/* Workload w's points, one stacked bar each: compute, exposed
 * communication, optimizer (and communication hidden behind compute, where
 * measured); the median step time as a marker. */
static ds_status breakdown_figure(const struct ds_analysis *a, int w, const char *pdir, int *made,
                                  struct ds_err *err)
{
    const char *wl = a->workloads[w];
    int bars = 0;
    for (int k = 0; k < a->n_scaling; k++)
        if (!strcmp(a->scaling[k].workload, wl)) bars += a->scaling[k].n;
    if (!bars) return DS_OK;
    char name[600];
    snprintf(name, sizeof name, "%s-scaling-breakdown", wl);
    struct fig f;
    ds_status st = fig_open(&f, pdir, name, err);
    if (st != DS_OK) return st;
    int hidden = a->has_comm_total;
    fprintf(f.gp, "set title '%s: milliseconds per step by part (means over the steps)'\n", gq(wl));
    fprintf(f.gp, "set ylabel 'ms per step'\nset yrange [0:*]\nset style fill solid 0.85 border -1\n"
                  "set boxwidth 0.7 absolute\nset grid noxtics\nset key outside right top vertical maxrows auto Left reverse font ',10' samplen 2\n"
                  "set xtics nomirror scale 0 font ',9'%s\n",
            bars > 12 ? " rotate by 90 right" : "");
    fprintf(f.gp, "set bmargin %d\n", bars > 12 ? 12 : 4);
    double x = 0;
    int n_fam = 0;
    for (int k = 0; k < a->n_scaling; k++) {
        const struct ds_an_scaling *fam = &a->scaling[k];
        if (strcmp(fam->workload, wl)) continue;
        /* the family's name above its bars */
        fprintf(f.gp, "set label %d \"%s\" at %g, graph 1.02 center font ',10'\n", ++n_fam,
                gdq(fam->short_label), x + (fam->n - 1) / 2.0);
        x += fam->n + 0.6;
    }
    fprintf(f.gp, "set xtics (");
    x = 0;
    int first = 1;
    for (int k = 0; k < a->n_scaling; k++) {
        const struct ds_an_scaling *fam = &a->scaling[k];
        if (strcmp(fam->workload, wl)) continue;
        for (int i = 0; i < fam->n; i++) {
            const struct ds_an_scale_point *p = &fam->pts[i];
            double c = isnan(p->compute_ms) ? 0 : p->compute_ms, m = isnan(p->comm_ms) ? 0 : p->comm_ms;
            double o = isnan(p->optimizer_ms) ? 0 : p->optimizer_ms;
            double h = hidden && p->comm_total_ms > m ? p->comm_total_ms - m : 0;
            fprintf(f.dat, "%g %.6g %.6g %.6g %.6g %.6g\n", x, c, m, o, h, p->step_ms);
            const char *sep = bars > 12 ? ", " : "\\n";
            fprintf(f.gp, "%s\"%ld rank%s%s%ld thread%s%s%s\" %g", first ? "" : ", ", p->ranks,
                    p->ranks == 1 ? "" : "s", sep, p->threads, p->threads == 1 ? "" : "s",
                    p->oversubscribed ? sep : "", p->oversubscribed ? "(oversubscribed)" : "", x);
            first = 0;
            x += 1;
        }
        x += 0.6; /* a gap between families */
    }
    fprintf(f.gp, ")\nset xrange [-0.7:%g]\nplot ", x - 0.6 - 0.3);
    if (hidden)
        fprintf(f.gp, "'%s.dat' using 1:($2+$3+$4+$5) with boxes fs pattern 4 border lc rgb '#7f7f7f' lc rgb '#7f7f7f' "
                      "title 'comm. hidden (overlapped)', \\\n  ", name);
    fprintf(f.gp,
            "'%s.dat' using 1:($2+$3+$4) with boxes lc rgb '#ff7f0e' title 'optimizer', \\\n"
            "  '%s.dat' using 1:($2+$3) with boxes lc rgb '#d62728' title 'comm. (exposed)', \\\n"
            "  '%s.dat' using 1:2 with boxes lc rgb '#1f77b4' title 'compute', \\\n"
            "  '%s.dat' using 1:6 with points pt 9 ps 1.6 lc rgb 'black' title 'median step'\n",
            name, name, name, name);
    st = fig_close(&f, pdir, err);
    if (st == DS_OK) (*made)++;
    return st;
}

ds_status ds_plot_dir(const char *dir, int *n_figures, struct ds_err *err)
{
    struct ds_analysis a;
    ds_status st = ds_analysis_load(dir, &a, err);
    if (st != DS_OK) return st;
    char pdir[1100];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    st = ds_mkdir_p(pdir, err);
    int made = 0;
    for (int w = 0; w < a.n_workloads && st == DS_OK; w++) {
        const char *lc = loss_column(&a, a.workloads[w]);
        const char *ll = strcmp(lc, "suboptimality") ? "training loss" : "suboptimality f - f*";
        st = curve_figure(&a, w, pdir, "loss-step", "step", "step", lc, ll, 1, &made, err);
        if (st == DS_OK)
            st = curve_figure(&a, w, pdir, "loss-time", "wall_s", "training time (s)", lc, ll, 1, &made, err);
        if (st == DS_OK) {
            char yl[128];
            snprintf(yl, sizeof yl, "test %s", a.metric[w]);
            st = curve_figure(&a, w, pdir, "metric-epoch", "epoch", "epoch", "eval_metric", yl,
                                  !a.higher_better[w], &made, err);
        }
        if (st == DS_OK) st = lr_figure(&a, w, pdir, &made, err);
        for (size_t k = 0; k < DS_ARRAY_LEN(reg_keys) && st == DS_OK; k++)
            st = reg_figure(&a, w, reg_keys[k], pdir, &made, err);
    }
    if (st == DS_OK) st = throughput_figure(&a, pdir, &made, err);
    if (st == DS_OK) st = profile_figure(&a, pdir, &made, err);
    if (st == DS_OK) st = scaling_figure(&a, pdir, 0, &made, err);
    if (st == DS_OK) st = scaling_figure(&a, pdir, 1, &made, err);
    for (int w = 0; w < a.n_workloads && st == DS_OK; w++) st = breakdown_figure(&a, w, pdir, &made, err);
    ds_analysis_free(&a);
    if (n_figures) *n_figures = made;
    return st;
}

int ds_cmd_plot(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "descent plot: usage: descent plot DIR (a sweep or run folder)\n");
        return 2;
    }
    struct ds_err err = {{0}};
    int n = 0;
    ds_status st = ds_plot_dir(argv[0], &n, &err);
    if (st != DS_OK) {
        fprintf(stderr, "descent plot: %s\n", err.msg);
        return ds_status_exit_code(st);
    }
    printf("descent plot: %d figures (PNG and SVG) in %s/plots\n", n, argv[0]);
    return 0;
}
