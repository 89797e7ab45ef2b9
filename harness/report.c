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
 * throughput; runs that diverged or failed; the run metadata and the exact
 * command and experiment file to reproduce it.
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

/* plots/NAME.svg inlined (its XML prologue dropped); a link in Markdown. */
static int figure(struct doc *d, const char *name, const char *caption)
{
    char p[1200], *svg = NULL;
    size_t len = 0;
    struct ds_err err = {{0}};
    snprintf(p, sizeof p, "%s/plots/%s.svg", d->dir, name);
    if (ds_file_read_all(p, &svg, &len, &err) != DS_OK) return 0;
    const char *start = strstr(svg, "<svg");
    fputs("<figure>", d->h);
    if (start) fputs(start, d->h);
    fputs("<figcaption>", d->h);
    html_esc(d->h, caption);
    fputs("</figcaption></figure>\n", d->h);
    fputs("![", d->m);
    md_esc(d->m, name);
    fprintf(d->m, "](plots/%s.png)\n\n*", name);
    md_esc(d->m, caption);
    fputs("*\n\n", d->m);
    free(svg);
    return 1;
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
    fputs("<a href=\"#profiles\">Profiles</a><a href=\"#throughput\">Throughput</a><a href=\"#meta\">Reproduce</a></nav>\n", d.h);
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
