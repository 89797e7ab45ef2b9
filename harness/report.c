/*
 * report.c: `descent report DIR`: DIR/report.html (one self-contained file:
 * the figures inlined as SVG, no external assets) and DIR/report.md (the
 * same text and tables, figures linked as plots/NAME.png), for a sweep or run
 * folder. It draws the figures first (descent plot).
 *
 * It also writes DIR/tuned.csv, the tuned-arm table as data.
 *
 * Sections: what was run; findings (one sentence per question the suite
 * answers: which optimizer wins on which task at its tuned LR, how
 * regularization strength moves test accuracy, how fast each reaches the
 * targets); per workload the tuned-arm table (DeepOBS: performance, speed,
 * tuneability) with its figures; performance profiles (AlgoPerf);
 * throughput; where the runs' rank counts differ, data-parallel scaling
 * (speedup, efficiency and the time per step by part, as measured on this
 * machine, oversubscribed points marked); runs that diverged or failed;
 * where DIR/projection/projection.md exists (descent scale), its projection,
 * set apart as not measured; the run metadata and the exact command and
 * experiment file to reproduce it.
 */
#include "report.h"

#include "analysis.h"
#include "plot.h"
#include "output.h"
#include "../core/fileio.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Both outputs at once. */
struct doc {
    FILE *h, *m;
    const char *dir;
    int in_table, cols;
};

static void html_esc(FILE *f, const char *s)
{
    for (; *s; s++) switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
}

static void md_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|' || *s == '*' || *s == '_') fputc('\\', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

static void heading(struct doc *d, int level, const char *text, const char *id)
{
    fprintf(d->h, "<h%d id=\"", level);
    html_esc(d->h, id);
    fputs("\">", d->h);
    html_esc(d->h, text);
    fprintf(d->h, "</h%d>\n", level);
    fprintf(d->m, "\n%.*s ", level, "#####");
    md_esc(d->m, text);
    fprintf(d->m, "\n\n");
}

/* One formatted line of text into both documents, escaped for each, between
 * the given HTML and Markdown markers. */
static void vtext(struct doc *d, const char *h_open, const char *h_close, const char *m_open,
                  const char *m_close, const char *fmt, va_list ap)
{
    char buf[8192];
    vsnprintf(buf, sizeof buf, fmt, ap);
    fputs(h_open, d->h);
    html_esc(d->h, buf);
    fputs(h_close, d->h);
    fputs(m_open, d->m);
    md_esc(d->m, buf);
    fputs(m_close, d->m);
}

static void para(struct doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void para(struct doc *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vtext(d, "<p>", "</p>\n", "", "\n\n", fmt, ap);
    va_end(ap);
}

static void bullet(struct doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bullet(struct doc *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vtext(d, "<li>", "</li>\n", "- ", "\n", fmt, ap);
    va_end(ap);
}

static void table_begin(struct doc *d, int n, const char *const *cols)
{
    fputs("<table><thead><tr>", d->h);
    fputs("| ", d->m);
    for (int i = 0; i < n; i++) {
        fputs("<th>", d->h);
        html_esc(d->h, cols[i]);
        fputs("</th>", d->h);
        md_esc(d->m, cols[i]);
        fputs(" | ", d->m);
    }
    fputs("</tr></thead><tbody>\n", d->h);
    fputs("\n|", d->m);
    for (int i = 0; i < n; i++) fputs("---|", d->m);
    fputs("\n", d->m);
    d->cols = n;
}

static void table_row(struct doc *d, const char *const *cells)
{
    fputs("<tr>", d->h);
    fputs("| ", d->m);
    for (int i = 0; i < d->cols; i++) {
        fputs("<td>", d->h);
        html_esc(d->h, cells[i]);
        fputs("</td>", d->h);
        md_esc(d->m, cells[i]);
        fputs(" | ", d->m);
    }
    fputs("</tr>\n", d->h);
    fputs("\n", d->m);
}

static void table_end(struct doc *d)
{
    fputs("</tbody></table>\n", d->h);
    fputs("\n", d->m);
}

/* data as base64, into f. */
static void base64_out(FILE *f, const unsigned char *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)data[i] << 16 | (i + 1 < len ? (unsigned)data[i + 1] << 8 : 0) |
                     (i + 2 < len ? data[i + 2] : 0);
        fputc(tab[v >> 18 & 63], f);
        fputc(tab[v >> 12 & 63], f);
        fputc(i + 1 < len ? tab[v >> 6 & 63] : '=', f);
        fputc(i + 2 < len ? tab[v & 63] : '=', f);
    }
}

/* DIR/REL.svg inlined (its XML prologue dropped), else DIR/REL.png inlined
 * as a data URI, so the page stays one file; a link to REL.png in Markdown. */
static int figure_at(struct doc *d, const char *rel, const char *alt, const char *caption)
{
    char p[1200], *data = NULL;
    size_t len = 0;
    struct ds_err err = {{0}};
    snprintf(p, sizeof p, "%s/%s.svg", d->dir, rel);
    int svg = ds_file_read_all(p, &data, &len, &err) == DS_OK;
    if (!svg) {
        snprintf(p, sizeof p, "%s/%s.png", d->dir, rel);
        if (ds_file_read_all(p, &data, &len, &err) != DS_OK) return 0;
    }
    fputs("<figure>", d->h);
    if (svg) {
        const char *start = strstr(data, "<svg");
        if (start) fputs(start, d->h);
    } else {
        fputs("<img alt=\"", d->h);
        html_esc(d->h, alt);
        fputs("\" src=\"data:image/png;base64,", d->h);
        base64_out(d->h, (const unsigned char *)data, len);
        fputs("\">", d->h);
    }
    fputs("<figcaption>", d->h);
    html_esc(d->h, caption);
    fputs("</figcaption></figure>\n", d->h);
    fputs("![", d->m);
    md_esc(d->m, alt);
    fprintf(d->m, "](%s.png)\n\n*", rel);
    md_esc(d->m, caption);
    fputs("*\n\n", d->m);
    free(data);
    return 1;
}

/* plots/NAME, as figure_at. */
static int figure(struct doc *d, const char *name, const char *caption)
{
    char rel[600];
    snprintf(rel, sizeof rel, "plots/%s", name);
    return figure_at(d, rel, name, caption);
}

static void pre(struct doc *d, const char *text)
{
    fputs("<pre>", d->h);
    html_esc(d->h, text);
    fputs("</pre>\n", d->h);
    fprintf(d->m, "```\n%s%s```\n\n", text, text[0] && text[strlen(text) - 1] == '\n' ? "" : "\n");
}

static void fmt_metric(char *buf, size_t len, double x)
{
    if (isnan(x)) snprintf(buf, len, "-");
    else if (fabs(x) >= 1e4 || (fabs(x) < 1e-3 && x != 0)) snprintf(buf, len, "%.3e", x);
    else snprintf(buf, len, "%.4f", x);
}

static const struct ds_an_arm *best_arm(const struct ds_analysis *a, int w)
{
    const struct ds_an_arm *win = NULL;
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (strcmp(arm->workload, a->workloads[w]) || arm->best < 0) continue;
        if (!win || arm->lrs[arm->best].score > win->lrs[win->best].score) win = arm;
    }
    return win;
}

static void findings(struct doc *d, const struct ds_analysis *a)
{
    heading(d, 2, "Findings", "findings");
    fputs("<ul>\n", d->h);
    for (int w = 0; w < a->n_workloads; w++) {
        const struct ds_an_arm *win = best_arm(a, w);
        if (!win) {
            bullet(d, "%s: every run failed or diverged.", a->workloads[w]);
            continue;
        }
        char buf[4096];
        size_t at = 0;
        const struct ds_an_lr *l = &win->lrs[win->best];
        char m[32], s[32];
        fmt_metric(m, sizeof m, l->mean);
        fmt_metric(s, sizeof s, l->std);
        at += (size_t)snprintf(buf + at, sizeof buf - at,
                               "%s (%s, %s is better; arms ranked by the %s metric, test shown): %s wins at lr %g with %s %s +- %s over %d seed%s",
                               a->workloads[w], a->metric[w], a->higher_better[w] ? "higher" : "lower",
                               a->selected_by_val[w] ? "validation" : "test", win->label, l->lr, a->metric[w], m, s, l->n_ok, l->n_ok == 1 ? "" : "s");
        int others = 0;
        /* the other arms, best first */
        int order[256], no = 0;
        for (int i = 0; i < a->n_arms && no < 256; i++)
            if (&a->arms[i] != win && !strcmp(a->arms[i].workload, a->workloads[w])) order[no++] = i;
        for (int p = 1; p < no; p++)
            for (int q = p; q > 0; q--) {
                const struct ds_an_arm *x = &a->arms[order[q - 1]], *y = &a->arms[order[q]];
                double sx = x->best < 0 ? -INFINITY : x->lrs[x->best].score;
                double sy = y->best < 0 ? -INFINITY : y->lrs[y->best].score;
                if (sx >= sy) break;
                int t = order[q];
                order[q] = order[q - 1], order[q - 1] = t;
            }
        for (int oi = 0; oi < no && at < sizeof buf - 200; oi++) {
            int i = order[oi];
            const struct ds_an_arm *arm = &a->arms[i];
            if (arm == win || strcmp(arm->workload, a->workloads[w])) continue;
            if (arm->best < 0) {
                at += (size_t)snprintf(buf + at, sizeof buf - at, "%s %s: no LR that did not diverge",
                                       others++ ? ";" : "; then", arm->label);
                continue;
            }
            fmt_metric(m, sizeof m, arm->lrs[arm->best].mean);
            at += (size_t)snprintf(buf + at, sizeof buf - at, "%s %s %s (lr %g)", others++ ? ";" : "; then",
                                   arm->label, m, arm->lrs[arm->best].lr);
        }
        if (at < sizeof buf - 2) snprintf(buf + at, sizeof buf - at, ".");
        bullet(d, "%s", buf);
    }
    /* regularization: each series of arms that differ only in a strength */
    static const char *const keys[] = {"l2", "l1", "wd", "dropout"};
    for (int i = 0; i < a->n_arms; i++)
        for (size_t k = 0; k < DS_ARRAY_LEN(keys); k++) {
            int ser[64];
            int n = ds_analysis_series(a, i, keys[k], ser, 64);
            if (!n) continue;
            int w = ds_analysis_workload(a, a->arms[i].workload);
            char line[4096];
            size_t at = (size_t)snprintf(line, sizeof line, "%s, %s, %s strength: test %s (train - test gap)",
                                         a->workloads[w], a->arms[i].optimizer, keys[k], a->metric[w]);
            int best = 0;
            for (int p = 0; p < n; p++) {
                const struct ds_an_lr *l = &a->arms[ser[p]].lrs[a->arms[ser[p]].best];
                const struct ds_an_lr *b = &a->arms[ser[best]].lrs[a->arms[ser[best]].best];
                if (a->higher_better[w] ? l->mean > b->mean : l->mean < b->mean) best = p;
                char m[32], g[32];
                fmt_metric(m, sizeof m, l->mean), fmt_metric(g, sizeof g, l->train_mean - l->mean);
                at += (size_t)snprintf(line + at, sizeof line - at, "%s %g: %s (%s)", p ? "," : "",
                                       ds_table_num(&a->runs, a->arms[ser[p]].row, keys[k]), m, g);
                if (at >= sizeof line) break;
            }
            if (at < sizeof line - 80)
                snprintf(line + at, sizeof line - at, "; best at %s = %g.", keys[k],
                         ds_table_num(&a->runs, a->arms[ser[best]].row, keys[k]));
            bullet(d, "%s", line);
        }
    if (a->n_prof_workloads > 0) {
        int top = 0;
        for (int e = 1; e < a->n_entrants; e++)
            if (a->area[e] > a->area[top]) top = e;
        bullet(d, "Time to target (AlgoPerf performance profile over %d workload%s with a target): %s has the largest area score, %.2f (1 = fastest everywhere, 0 = never reaches a target within %gx the fastest).",
               a->n_prof_workloads, a->n_prof_workloads == 1 ? "" : "s", a->entrants[top], a->area[top], DS_AN_TAU_MAX);
    }
    if (a->n_scaling > 0) {
        /* each family at its most ranks that still fit the CPUs */
        char line[4096];
        size_t at = (size_t)snprintf(line, sizeof line, "Data-parallel scaling, measured on this machine (%d CPUs; section below):", a->cpus);
        for (int f = 0; f < a->n_scaling && at < sizeof line - 300; f++) {
            const struct ds_an_scaling *fam = &a->scaling[f];
            int best = -1;
            for (int i = 1; i < fam->n; i++)
                if (!fam->pts[i].oversubscribed) best = i;
            if (best < 0) best = fam->n - 1;
            const struct ds_an_scale_point *p = &fam->pts[best];
            at += (size_t)snprintf(line + at, sizeof line - at, "%s %s: %ld ranks%s give speedup %.2f, efficiency %.2f",
                                   f ? ";" : "", fam->label, p->ranks, p->oversubscribed ? " (oversubscribed)" : "",
                                   p->speedup, p->efficiency);
        }
        if (at < sizeof line - 2) snprintf(line + at, sizeof line - at, ".");
        bullet(d, "%s", line);
    }
    size_t div = 0, fail = 0;
    for (size_t r = 0; r < a->runs.nrows; r++) {
        const char *st = ds_table_get(&a->runs, r, "status");
        div += !strcmp(st, "diverged"), fail += strcmp(st, "ok") && strcmp(st, "diverged");
    }
    if (div || fail)
        bullet(d, "%zu run%s diverged and %zu failed (listed below); a diverged LR counts as the worst when tuning.",
               div, div == 1 ? "" : "s", fail);
    fputs("</ul>\n", d->h);
    fputs("\n", d->m);
}

static void workload_section(struct doc *d, const struct ds_analysis *a, int w)
{
    const char *wl = a->workloads[w];
    char id[300];
    snprintf(id, sizeof id, "w-%s", wl);
    heading(d, 2, wl, id);
    char tgt[64] = "none";
    if (!isnan(a->target[w])) snprintf(tgt, sizeof tgt, "%g", a->target[w]);
    para(d, "Metric: test %s (%s is better); target %s. Learning rates tuned by the %s, mean over seeds (a diverged seed rules its LR out).",
         a->metric[w], a->higher_better[w] ? "higher" : "lower", tgt,
         a->selected_by_val[w] ? "final validation metric (--val split)" : "final test metric (no validation split in these runs)");
    const char *cols[] = {"arm", "tuned lr", "final test metric: mean +- std [min, max] (seeds)",
                          "final train metric", "steps to target (epochs)", "time to target (s)", "samples/s"};
    table_begin(d, 7, cols);
    for (int i = 0; i < a->n_arms; i++) {
        const struct ds_an_arm *arm = &a->arms[i];
        if (strcmp(arm->workload, wl)) continue;
        char c[7][300];
        snprintf(c[0], sizeof c[0], "%s", arm->label);
        if (arm->best < 0) {
            snprintf(c[1], sizeof c[1], "-");
            snprintf(c[2], sizeof c[2], "every LR diverged or failed");
            for (int k = 3; k < 7; k++) snprintf(c[k], sizeof c[k], "-");
        } else {
            const struct ds_an_lr *l = &arm->lrs[arm->best];
            char m[32], s[32], lo[32], hi[32], tr[32];
            fmt_metric(m, sizeof m, l->mean), fmt_metric(s, sizeof s, l->std);
            fmt_metric(lo, sizeof lo, l->min), fmt_metric(hi, sizeof hi, l->max);
            fmt_metric(tr, sizeof tr, l->train_mean);
            snprintf(c[1], sizeof c[1], "%g", l->lr);
            snprintf(c[2], sizeof c[2], "%s +- %s [%s, %s] (%d)", m, s, lo, hi, l->n_ok);
            snprintf(c[3], sizeof c[3], "%s", tr);
            if (isnan(l->steps_mean)) snprintf(c[4], sizeof c[4], isnan(a->target[w]) ? "-" : "not reached");
            else if (isnan(l->epochs_mean) || fabs(l->epochs_mean - l->steps_mean) < 1e-9)
                snprintf(c[4], sizeof c[4], "%.0f", l->steps_mean);
            else snprintf(c[4], sizeof c[4], "%.0f (%.2f epochs)", l->steps_mean, l->epochs_mean);
            if (isnan(l->time_mean)) snprintf(c[5], sizeof c[5], "-");
            else snprintf(c[5], sizeof c[5], "%.3g", l->time_mean);
            snprintf(c[6], sizeof c[6], "%.4g", l->sps_mean);
        }
        const char *cells[7] = {c[0], c[1], c[2], c[3], c[4], c[5], c[6]};
        table_row(d, cells);
    }
    table_end(d);
    /* tuneability: every LR of the grid */
    int max_lr = 0;
    for (int i = 0; i < a->n_arms; i++)
        if (!strcmp(a->arms[i].workload, wl) && a->arms[i].n_lr > max_lr) max_lr = a->arms[i].n_lr;
    if (max_lr > 1) {
        para(d, "Tuneability: the final test %s at each learning rate of the grid (mean over seeds; * the tuned one; div: a seed diverged or failed).",
             a->metric[w]);
        const char *tc[] = {"arm", "lr: metric, ..."};
        table_begin(d, 2, tc);
        for (int i = 0; i < a->n_arms; i++) {
            const struct ds_an_arm *arm = &a->arms[i];
            if (strcmp(arm->workload, wl)) continue;
            char line[2048];
            size_t at = 0;
            line[0] = '\0';
            for (int j = 0; j < arm->n_lr && at < sizeof line - 64; j++) {
                const struct ds_an_lr *l = &arm->lrs[j];
                char m[32];
                fmt_metric(m, sizeof m, l->mean);
                at += (size_t)snprintf(line + at, sizeof line - at, "%s%g: %s%s", j ? ", " : "", l->lr,
                                       l->n_ok < l->n ? "div" : m, j == arm->best ? "*" : "");
            }
            const char *cells[2] = {arm->label, line};
            table_row(d, cells);
        }
        table_end(d);
    }
    char name[400], cap[600];
    snprintf(name, sizeof name, "%s-loss-step", wl);
    snprintf(cap, sizeof cap, "%s: training loss against steps, each arm at its tuned learning rate; band: seeds' min..max.", wl);
    figure(d, name, cap);
    snprintf(name, sizeof name, "%s-loss-time", wl);
    snprintf(cap, sizeof cap, "%s: the same against seconds of training (evaluation excluded).", wl);
    figure(d, name, cap);
    snprintf(name, sizeof name, "%s-metric-epoch", wl);
    snprintf(cap, sizeof cap, "%s: test %s against epochs.", wl, a->metric[w]);
    figure(d, name, cap);
    snprintf(name, sizeof name, "%s-lr", wl);
    snprintf(cap, sizeof cap, "%s: final test %s against the learning rate: how sensitive each optimizer is to it.", wl, a->metric[w]);
    figure(d, name, cap);
    static const char *const keys[] = {"l2", "l1", "wd", "dropout"};
    for (size_t k = 0; k < DS_ARRAY_LEN(keys); k++) {
        snprintf(name, sizeof name, "%s-reg-%s", wl, keys[k]);
        snprintf(cap, sizeof cap, "%s: final %s on the test set (solid) and training set (dashed) against %s strength: the generalization gap.",
                 wl, a->metric[w], keys[k]);
        figure(d, name, cap);
    }
}

/* ---- data-parallel scaling (measured) and the projection (not measured) ---- */

static void fmt_ms(char *buf, size_t len, double x)
{
    if (isnan(x)) snprintf(buf, len, "-");
    else snprintf(buf, len, x >= 100 ? "%.1f" : "%.3g", x);
}

static void scaling_section(struct doc *d, const struct ds_analysis *a)
{
    if (a->n_scaling == 0) return;
    heading(d, 2, "Data-parallel scaling", "scaling");
    int over = 0, npts = 0;
    for (int f = 0; f < a->n_scaling; f++)
        for (int i = 0; i < a->scaling[f].n; i++) over += a->scaling[f].pts[i].oversubscribed, npts++;
    para(d, "Measured on this machine%s%s, %d CPU%s online: each point is `descent run --ranks N` (one Open MPI process per rank, data-parallel over the same global batch, the threads per rank shown), timed by rank 0: the median step time, samples/s over the training time, and per step the mean compute (forward and backward), exposed communication (the time the step waited for the gradient allreduce) and optimizer time%s. "
         "Strong scaling keeps the global batch and splits it over the ranks: speedup t1/tN, efficiency t1/(N tN). Weak scaling keeps the batch per rank (the global batch grows with the ranks): speedup is the ratio of samples/s, efficiency that ratio over N. t1 is each series' point with the fewest ranks, N the CPUs used (ranks x threads) over that point's: the ratio of ranks where every rank has the same threads.",
         a->host[0] ? ", " : "", a->host, a->cpus, a->cpus == 1 ? "" : "s",
         a->has_comm_total ? "; communication in total counts the time collectives were in flight, hidden behind the backward pass or not" : "");
    if (over)
        para(d, "%d of the %d points ran more ranks x threads than the %d CPUs and are marked oversubscribed: their ranks take turns on the cores, so they show contention on this machine, not what more hardware would give.",
             over, npts, a->cpus);
    fputs("<ul>\n", d->h);
    for (int f = 0; f < a->n_scaling; f++) {
        const struct ds_an_scaling *fam = &a->scaling[f];
        char line[2048];
        size_t at = (size_t)snprintf(line, sizeof line, "%s, from %ld rank%s (%.3g ms per step):", fam->label,
                                     fam->pts[0].ranks, fam->pts[0].ranks == 1 ? "" : "s", fam->pts[0].step_ms);
        for (int i = 1; i < fam->n && at < sizeof line - 120; i++) {
            const struct ds_an_scale_point *p = &fam->pts[i];
            at += (size_t)snprintf(line + at, sizeof line - at, "%s %ld ranks x %ld thread%s%s: speedup %.2f, efficiency %.2f",
                                   i > 1 ? ";" : "", p->ranks, p->threads, p->threads == 1 ? "" : "s",
                                   p->oversubscribed ? " (oversubscribed)" : "", p->speedup, p->efficiency);
        }
        if (at < sizeof line - 2) snprintf(line + at, sizeof line - at, ".");
        bullet(d, "%s", line);
    }
    fputs("</ul>\n", d->h);
    fputs("\n", d->m);
    /* the table: one row per point of each family */
    const char *cols[16];
    int nc = 0;
    const char *base[] = {"series", "ranks", "threads per rank", "global batch", "step ms (median)", "samples/s",
                          "speedup", "efficiency", "compute ms", "comm ms (exposed)"};
    for (size_t i = 0; i < DS_ARRAY_LEN(base); i++) cols[nc++] = base[i];
    if (a->has_comm_total) cols[nc++] = "comm ms (total)";
    if (a->has_comm_mb) cols[nc++] = "comm MB per rank";
    cols[nc++] = "optimizer ms";
    cols[nc++] = "oversubscribed";
    table_begin(d, nc, cols);
    for (int f = 0; f < a->n_scaling; f++) {
        const struct ds_an_scaling *fam = &a->scaling[f];
        for (int i = 0; i < fam->n; i++) {
            const struct ds_an_scale_point *p = &fam->pts[i];
            char c[16][300];
            int k = 0;
            snprintf(c[k++], sizeof c[0], "%s", fam->label);
            snprintf(c[k++], sizeof c[0], "%ld", p->ranks);
            snprintf(c[k++], sizeof c[0], "%ld", p->threads);
            snprintf(c[k++], sizeof c[0], "%ld", p->batch);
            fmt_ms(c[k++], sizeof c[0], p->step_ms);
            snprintf(c[k++], sizeof c[0], "%.4g", p->sps);
            snprintf(c[k++], sizeof c[0], "%.2f", p->speedup);
            snprintf(c[k++], sizeof c[0], "%.2f", p->efficiency);
            fmt_ms(c[k++], sizeof c[0], p->compute_ms);
            fmt_ms(c[k++], sizeof c[0], p->comm_ms);
            if (a->has_comm_total) fmt_ms(c[k++], sizeof c[0], p->comm_total_ms);
            if (a->has_comm_mb) fmt_ms(c[k++], sizeof c[0], p->comm_mb);
            fmt_ms(c[k++], sizeof c[0], p->optimizer_ms);
            snprintf(c[k++], sizeof c[0], p->oversubscribed ? "yes (%ld x %ld > %d CPUs)" : "no", p->ranks,
                     p->threads, p->cpus);
            const char *cells[16];
            for (int j = 0; j < k; j++) cells[j] = c[j];
            table_row(d, cells);
        }
    }
    table_end(d);
    figure(d, "scaling-speedup", "Speedup against ranks, each series against its fewest ranks; dashed: ideal; circled: oversubscribed (measured on this machine).");
    figure(d, "scaling-efficiency", "Parallel efficiency against ranks; 1 is ideal; circled: oversubscribed.");
    for (int w = 0; w < a->n_workloads; w++) {
        char name[400], cap[600];
        snprintf(name, sizeof name, "%s-scaling-breakdown", a->workloads[w]);
        snprintf(cap, sizeof cap, "%s: milliseconds per step spent in compute, exposed communication and the optimizer at each rank count%s; the marker is the median step.",
                 a->workloads[w], a->has_comm_total ? " (hatched: communication overlapped with compute, not part of the step time)" : "");
        figure(d, name, cap);
    }
}

/* The cells of a Markdown table row ("| a | b \| c |"), unescaped, into
 * cells (at most max, each in its own buffer of len); returns the count. */
static int md_cells(const char *line, char (*cells)[300], int max)
{
    const char *p = line;
    while (*p == ' ') p++;
    if (*p == '|') p++;
    int n = 0;
    while (*p && *p != '\n' && n < max) {
        size_t at = 0;
        while (*p && *p != '\n' && *p != '|') {
            if (*p == '\\' && p[1] && p[1] != '\n') p++;
            if (at + 1 < 300) cells[n][at++] = *p;
            p++;
        }
        while (at > 0 && cells[n][at - 1] == ' ') at--;
        cells[n][at] = '\0';
        char *s = cells[n];
        size_t lead = strspn(s, " ");
        memmove(s, s + lead, strlen(s + lead) + 1);
        if (*p == '|') p++;
        const char *rest = p;
        while (*rest == ' ') rest++;
        n++;
        if (!*rest || *rest == '\n') break; /* the closing pipe */
    }
    return n;
}

/* A line of Markdown text into HTML: escaped, with **bold** and `code`. */
static void html_md_inline(FILE *f, const char *s)
{
    int bold = 0, code = 0;
    for (; *s; s++) {
        if (!code && s[0] == '*' && s[1] == '*') {
            fputs(bold ? "</strong>" : "<strong>", f);
            bold = !bold, s++;
        } else if (*s == '`') {
            fputs(code ? "</code>" : "<code>", f);
            code = !code;
        } else {
            char c[2] = {*s, 0};
            html_esc(f, c);
        }
    }
    if (code) fputs("</code>", f);
    if (bold) fputs("</strong>", f);
}

/* DIR/projection/projection.md (written by descent scale), when there is
 * one: its figure inlined, its tables and text, set apart as not measured. */
static void projection_section(struct doc *d)
{
    char p[1300], *text = NULL;
    size_t len = 0;
    struct ds_err err = {{0}};
    snprintf(p, sizeof p, "%s/projection/projection.md", d->dir);
    if (ds_file_read_all(p, &text, &len, &err) != DS_OK) return;
    fputs("<hr>\n<section class=\"projection\">\n", d->h);
    fputs("\n---\n", d->m);
    heading(d, 2, "Projection (not measured)", "projection");
    para(d, "Nothing in this section was measured. It is `descent scale`'s projection of data-parallel training to GPU counts this machine does not have (from a model of the gradient allreduce applied to a run measured here), copied from %s/projection/projection.md. The measured results are the sections above.", d->dir);
    figure_at(d, "projection/plots/projection", "projection",
              "PROJECTION, not measured: step time, speedup and efficiency the model predicts at each GPU count.");
    /* its text and tables; headings one level down, its own images left out (the figure is above) */
    const char *line = text;
    int in_table = 0, ncols = 0, in_list = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        char buf[4096];
        snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf - 1 ? n : sizeof buf - 1), line);
        const char *s = buf + strspn(buf, " ");
        int is_row = *s == '|', is_item = s[0] == '-' && s[1] == ' ';
        if (in_table && !is_row) table_end(d), in_table = 0;
        if (in_list && !is_item) fputs("</ul>\n", d->h), in_list = 0;
        if (is_row) {
            char cells[32][300];
            int k = md_cells(s, cells, 32);
            int sep = strspn(s, "|-: ") == strlen(s);
            if (!in_table) {
                const char *hc[32];
                for (int i = 0; i < k; i++) hc[i] = cells[i];
                table_begin(d, k, hc);
                in_table = 1, ncols = k;
            } else if (!sep) {
                const char *rc[32];
                for (int i = 0; i < ncols; i++) rc[i] = i < k ? cells[i] : "";
                table_row(d, rc);
            }
        } else if (*s == '#') {
            const char *h = s + strspn(s, "#");
            h += strspn(h, " ");
            if (*h) {
                fprintf(d->h, "<h3>");
                html_esc(d->h, h);
                fprintf(d->h, "</h3>\n");
                fprintf(d->m, "\n### %s\n\n", h);
            }
        } else if (is_item) {
            if (!in_list) fputs("<ul>\n", d->h), in_list = 1;
            fputs("<li>", d->h);
            html_md_inline(d->h, s + 2);
            fputs("</li>\n", d->h);
            fprintf(d->m, "%s\n", s);
        } else if (*s && strncmp(s, "![", 2) != 0) {
            fputs("<p>", d->h);
            html_md_inline(d->h, s);
            fputs("</p>\n", d->h);
            fprintf(d->m, "%s\n\n", s);
        } else if (!*s) {
            fputs("\n", d->m);
        }
        line += n + (end ? 1 : 0);
    }
    if (in_table) table_end(d);
    if (in_list) fputs("</ul>\n", d->h);
    fputs("</section>\n", d->h);
    free(text);
}

/* A JSON number as an int; -1 when absent or not a number. */
static int json_int(const cJSON *x)
{
    return cJSON_IsNumber(x) && isfinite(x->valuedouble) ? (int)x->valuedouble : -1;
}

static void metadata(struct doc *d, const struct ds_analysis *a, const char *dir)
{
    heading(d, 2, "Run metadata and how to reproduce", "meta");
    char p[1200], *text = NULL;
    size_t len = 0;
    struct ds_err err = {{0}};
    snprintf(p, sizeof p, "%s/sweep.json", dir);
    cJSON *sj = NULL;
    if (ds_file_read_all(p, &text, &len, &err) == DS_OK) sj = cJSON_Parse(text);
    free(text), text = NULL;
    /* the first run's meta.json: build, libraries, host */
    cJSON *mj = NULL;
    const char *first_out = ds_table_get(&a->runs, 0, "out");
    snprintf(p, sizeof p, "%s/meta.json", *first_out ? first_out : dir);
    struct stat sb;
    if (stat(p, &sb) != 0 && *first_out) { /* out is relative to where the sweep ran: try DIR/runs/ */
        const char *base = strrchr(first_out, '/');
        snprintf(p, sizeof p, "%s/runs/%s/meta.json", dir, base ? base + 1 : first_out);
    }
    if (ds_file_read_all(p, &text, &len, &err) == DS_OK) mj = cJSON_Parse(text);
    free(text), text = NULL;
    fputs("<ul>\n", d->h);
#define JS(obj, ...) cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(obj, __VA_ARGS__))
#define JN(obj, key) json_int(cJSON_GetObjectItem((obj), (key)))
    if (sj) {
        const char *cmd = JS(sj, "command");
        bullet(d, "Sweep: %s, %d runs (%d ok, %d diverged, %d failed), %d at a time with %d threads each; descent %s.",
               JS(sj, "name") ? JS(sj, "name") : "?",
               JN(sj, "runs"), JN(sj, "ok"), JN(sj, "diverged"), JN(sj, "failed"), JN(sj, "jobs"),
               JN(sj, "threads_per_run"),
               JS(sj, "git_rev") ? JS(sj, "git_rev") : "?");
        if (cmd) bullet(d, "Command: %s", cmd);
    }
    if (mj) {
        cJSON *b = cJSON_GetObjectItem(mj, "build"), *l = cJSON_GetObjectItem(mj, "libraries"),
              *h = cJSON_GetObjectItem(mj, "host");
        if (b) bullet(d, "Build: %s; %s", JS(b, "compiler") ? JS(b, "compiler") : "?", JS(b, "cflags") ? JS(b, "cflags") : "?");
        if (l) bullet(d, "BLAS: %s", JS(l, "blas") ? JS(l, "blas") : "?");
        if (h)
            bullet(d, "Host: %s, %s, %d CPUs online", JS(h, "hostname") ? JS(h, "hostname") : "?",
                   JS(h, "cpu_model") ? JS(h, "cpu_model") : "?",
                   JN(h, "cpus_online"));
    }
    time_t now = time(NULL);
    char stamp[64];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S %Z", localtime(&now));
    bullet(d, "Report written %s from %s (runs.csv, curves.csv; every run's folder holds its curve.csv, summary.csv, meta.json and log).", stamp, dir);
    fputs("</ul>\n", d->h);
    fputs("\n", d->m);
    snprintf(p, sizeof p, "%s/experiment.ini", dir);
    if (ds_file_read_all(p, &text, &len, &err) == DS_OK) {
        para(d, "To reproduce: save this experiment file (a copy is %s/experiment.ini) and run `descent sweep FILE -j N` (then `descent report` on its folder). Same configuration and thread-independent kernels: the same numbers, except timings.", dir);
        pre(d, text);
        free(text);
    }
#undef JS
#undef JN
    cJSON_Delete(sj);
    cJSON_Delete(mj);
}

static const char *const css =
    "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;"
    "padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.7em}h2{border-bottom:1px solid #ccc;"
    "padding-bottom:.2em;margin-top:2em}table{border-collapse:collapse;margin:1em 0;font-size:.92em}"
    "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
    "th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}figure{margin:1.5em 0}"
    "figure svg{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.9em;color:#555}"
    "pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.88em}nav a{margin-right:1em}";

ds_status ds_report_dir(const char *dir, struct ds_err *err)
{
    int nfig = 0;
    ds_status st = ds_plot_dir(dir, &nfig, err);
    if (st != DS_OK) return st;
    struct ds_analysis a;
    st = ds_analysis_load(dir, &a, err);
    if (st != DS_OK) return st;
    st = ds_analysis_write_tuned(&a, dir, err);
    if (st != DS_OK) {
        ds_analysis_free(&a);
        return st;
    }
    char hp[1200], mp[1200], htmp[1300], mtmp[1300];
    snprintf(hp, sizeof hp, "%s/report.html", dir);
    snprintf(mp, sizeof mp, "%s/report.md", dir);
    snprintf(htmp, sizeof htmp, "%s.tmp", hp);
    snprintf(mtmp, sizeof mtmp, "%s.tmp", mp);
    struct doc d = {.dir = dir};
    d.h = fopen(htmp, "w");
    d.m = d.h ? fopen(mtmp, "w") : NULL;
    if (!d.h || !d.m) {
        if (d.h) fclose(d.h), remove(htmp);
        ds_analysis_free(&a);
        return ds_err_set(err, DS_ERR_USAGE, "%s: cannot write the report there", dir);
    }
    /* title: the sweep's name and description */
    char title[512] = "descent report", desc[1024] = "";
    char p[1200], *text = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/sweep.json", dir);
    if (ds_file_read_all(p, &text, &len, err) == DS_OK) {
        cJSON *j = cJSON_Parse(text);
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItem(j, "name"));
        const char *ds = cJSON_GetStringValue(cJSON_GetObjectItem(j, "description"));
        if (n) snprintf(title, sizeof title, "descent report: %s", n);
        if (ds) snprintf(desc, sizeof desc, "%s", ds);
        cJSON_Delete(j);
        free(text);
    }
    fprintf(d.h, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>");
    html_esc(d.h, title);
    fprintf(d.h, "</title>\n<style>%s</style></head><body>\n<h1>", css);
    html_esc(d.h, title);
    fprintf(d.h, "</h1>\n");
    fprintf(d.m, "# ");
    md_esc(d.m, title);
    fprintf(d.m, "\n\n");
    if (desc[0]) para(&d, "%s", desc);
    para(&d, "%zu runs on %d workload%s; %d arms (an arm: one optimizer configuration, tuned over its learning-rate grid). Figures: %d.",
         a.runs.nrows, a.n_workloads, a.n_workloads == 1 ? "" : "s", a.n_arms, nfig);
    fputs("<nav>", d.h);
    fputs("<a href=\"#findings\">Findings</a>", d.h);
    for (int w = 0; w < a.n_workloads; w++) {
        fputs("<a href=\"#w-", d.h);
        html_esc(d.h, a.workloads[w]);
        fputs("\">", d.h);
        html_esc(d.h, a.workloads[w]);
        fputs("</a>", d.h);
    }
    fputs("<a href=\"#profiles\">Profiles</a><a href=\"#throughput\">Throughput</a>", d.h);
    if (a.n_scaling) fputs("<a href=\"#scaling\">Scaling</a>", d.h);
    snprintf(p, sizeof p, "%s/projection/projection.md", dir);
    struct stat sb;
    if (stat(p, &sb) == 0) fputs("<a href=\"#projection\">Projection (not measured)</a>", d.h);
    fputs("<a href=\"#meta\">Reproduce</a></nav>\n", d.h);
    findings(&d, &a);
    for (int w = 0; w < a.n_workloads; w++) workload_section(&d, &a, w);
    heading(&d, 2, "Performance profiles", "profiles");
    if (a.n_prof_workloads > 0) {
        para(&d, "AlgoPerf's measure: for each workload with a --target, each arm's mean time to reach it (at its tuned LR, every seed reaching it) over the fastest arm's; rho(tau) is the fraction of workloads an arm reaches within tau times the fastest. Area score: the mean of rho over tau in [1, %g].",
             DS_AN_TAU_MAX);
        const char *pc[] = {"arm", "area score", "workloads reached within 4x"};
        table_begin(&d, 3, pc);
        for (int e = 0; e < a.n_entrants; e++) {
            char s1[32], s2[32];
            snprintf(s1, sizeof s1, "%.3f", a.area[e]);
            snprintf(s2, sizeof s2, "%.0f of %d", ds_analysis_rho(&a, e, DS_AN_TAU_MAX) * a.n_prof_workloads, a.n_prof_workloads);
            const char *cells[3] = {a.entrants[e], s1, s2};
            table_row(&d, cells);
        }
        table_end(&d);
        figure(&d, "profile", "Performance profiles: the fraction of workloads each arm reaches its target within tau times the fastest arm's time.");
    } else {
        para(&d, "No workload in this sweep has a --target reached by a tuned arm, so there are no time-to-target profiles.");
    }
    heading(&d, 2, "Throughput", "throughput");
    figure(&d, "throughput", "Training samples per second of each tuned arm (threads per run as in the metadata).");
    scaling_section(&d, &a);
    /* runs that did not end ok */
    int bad = 0;
    for (size_t r = 0; r < a.runs.nrows; r++) bad += strcmp(ds_table_get(&a.runs, r, "status"), "ok") != 0;
    if (bad) {
        heading(&d, 2, "Runs that diverged or failed", "bad");
        const char *bc[] = {"run_id", "workload", "optimizer", "lr", "seed", "status", "error"};
        table_begin(&d, 7, bc);
        for (size_t r = 0; r < a.runs.nrows; r++) {
            if (!strcmp(ds_table_get(&a.runs, r, "status"), "ok")) continue;
            const char *cells[7];
            for (int k = 0; k < 7; k++) cells[k] = ds_table_get(&a.runs, r, bc[k]);
            table_row(&d, cells);
        }
        table_end(&d);
    }
    projection_section(&d); /* last before the metadata: apart from everything measured */
    metadata(&d, &a, dir);
    fputs("</body></html>\n", d.h);
    int bad_write = ferror(d.h) || ferror(d.m);
    fclose(d.h);
    fclose(d.m);
    ds_analysis_free(&a);
    if (bad_write || rename(htmp, hp) != 0 || rename(mtmp, mp) != 0) {
        remove(htmp), remove(mtmp);
        return ds_err_set(err, DS_ERR_IO, "%s: could not write the report", dir);
    }
    return DS_OK;
}

int ds_cmd_report(int argc, char **argv)
{
    if (argc != 1 || argv[0][0] == '-') {
        fprintf(stderr, "descent report: usage: descent report DIR (a sweep or run folder)\n");
        return 2;
    }
    struct ds_err err = {{0}};
    ds_status st = ds_report_dir(argv[0], &err);
    if (st != DS_OK) {
        fprintf(stderr, "descent report: %s\n", err.msg);
        return ds_status_exit_code(st);
    }
    printf("descent report: %s/report.html (and report.md)\n", argv[0]);
    return 0;
}
