/*
 * sweep.c: `descent sweep FILE [-j N] [--resume] [--out DIR] [--list]`.
 *
 * Each run of the grid is a child process (`descent run ... --out
 * DIR/runs/NNN-RUNID`, its output in log.txt there), so a run that crashes
 * or diverges is recorded and the sweep goes on. The sweep folder:
 *
 *   experiment.ini   the experiment file as given
 *   plan.csv         the expanded grid: index, run_id, group, label, args
 *   runs/NNN-ID/     each run's curve.csv, summary.csv, meta.json, log.txt
 *   runs.csv         every finished run's summary row (plus index, group)
 *   curves.csv       every finished run's curve rows
 *   sweep.json       what ran, where, when, and the counts
 *   tuned.csv        each arm (a configuration but for lr and seed) at its
 *                    best learning rate, with its statistics over seeds
 *
 * A run is finished when its summary.csv exists (runs write it atomically).
 * runs.csv and curves.csv are rebuilt from the finished runs after each one
 * and written atomically, so a kill at any moment leaves them whole and
 * without duplicates; --resume checks that the folder's plan is this file's
 * grid, clears unfinished runs' folders and runs only those.
 *
 * Runs at a time: -j N (default 1); threads per run: the file's `threads`
 * if set, else the online CPUs divided by N (divided again among the ranks
 * of a data-parallel run, at least one each). A run that needs more CPUs
 * than its share (ranks x threads above CPUs / N: a rank count, or threads
 * set above the share) runs alone, so runs never share cores with a
 * data-parallel run or the comparison it is timed against.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "sweep.h"

#include "analysis.h"
#include "experiment.h"
#include "output.h"
#include "table.h"
#include "../core/fileio.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t ds_sweep_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    ds_sweep_stop = 1;
}

struct job {
    pid_t pid;
    size_t index;
    double started;
    int alone; /* needs more than its share of the CPUs: nothing runs beside it */
};

struct sweep {
    struct ds_experiment e;
    char dir[DS_CFG_STR];
    char self[DS_CFG_STR]; /* this executable, for the children */
    int jobs, threads, quiet, tty;
    long ncpu;
    unsigned char *done; /* done[i]: run i has its summary.csv */
    size_t n_done, n_ok, n_diverged, n_failed;
    double t0, run_s; /* start; seconds of finished runs (for the ETA) */
    size_t n_timed;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void run_dir(const struct sweep *s, size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "%s/runs/%03zu-%s", s->dir, i + 1, s->e.points[i].run_id);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void rm_tree(const char *path)
{
    if (exists(path)) nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The `descent run` arguments of run i (argv[0] "descent"); *n receives the
 * count; strings are malloc'd (free with free_args). */
static char **run_args(const struct sweep *s, size_t i, const char *out, int *n)
{
    const struct ds_exp_point *p = &s->e.points[i];
    char **a = calloc((size_t)p->n + 6, sizeof(char *));
    DS_ASSERT(a != NULL);
    int k = 0, has_threads = 0;
    a[k++] = strdup("descent");
    a[k++] = strdup("run");
    for (int j = 0; j < p->n; j++) {
        const char *name = ds_config_key_name(p->keys[j]);
        has_threads |= strcmp(name, "threads") == 0;
        size_t len = strlen(name) + strlen(p->values[j]) + 4;
        a[k] = malloc(len);
        DS_ASSERT(a[k] != NULL);
        snprintf(a[k++], len, "--%s=%s", name, p->values[j]);
    }
    if (!has_threads) {
        char t[32];
        long ranks = p->config.ranks > 1 ? p->config.ranks : 1;
        snprintf(t, sizeof t, "--threads=%ld", s->threads / ranks > 0 ? s->threads / ranks : 1);
        a[k++] = strdup(t);
    }
    if (out) {
        size_t len = strlen(out) + 8;
        a[k] = malloc(len);
        DS_ASSERT(a[k] != NULL);
        snprintf(a[k++], len, "--out=%s", out);
    }
    a[k] = NULL;
    *n = k;
    return a;
}

/* Whether run i needs more CPUs than its share (the online CPUs / -j): its
 * ranks x threads, with threads as run_args passes them (0: every CPU). */
static int runs_alone(const struct sweep *s, size_t i)
{
    const struct ds_exp_point *p = &s->e.points[i];
    long ranks = p->config.ranks > 1 ? p->config.ranks : 1, threads = -1;
    int kt = ds_config_key_find("threads");
    for (int j = 0; j < p->n; j++)
        if (p->keys[j] == kt) threads = p->config.threads;
    if (threads < 0) threads = s->threads / ranks > 0 ? s->threads / ranks : 1;
    if (threads == 0) threads = s->ncpu; /* one per core */
    return ranks * threads > s->threads;
}

static void free_args(char **a)
{
    for (int i = 0; a[i]; i++) free(a[i]);
    free(a);
}

/* "--workload=x --lr=0.1 ..." (without --out), as plan.csv records it. */
static void args_text(const struct sweep *s, size_t i, char *buf, size_t len)
{
    int n;
    char **a = run_args(s, i, NULL, &n);
    size_t at = 0;
    buf[0] = '\0';
    for (int k = 2; k < n && at + 1 < len; k++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", k > 2 ? " " : "", a[k]);
    free_args(a);
}

static ds_status write_plan(const struct sweep *s, struct ds_err *err)
{
    struct ds_table t;
    ds_table_init(&t);
    const char *cols[] = {"index", "run_id", "group", "label", "args"};
    for (size_t c = 0; c < DS_ARRAY_LEN(cols); c++) ds_table_add_col(&t, cols[c]);
    t.rows = calloc(s->e.n_points ? s->e.n_points : 1, sizeof(char **));
    DS_ASSERT(t.rows != NULL);
    t.cap = s->e.n_points ? s->e.n_points : 1;
    for (size_t i = 0; i < s->e.n_points; i++) {
        char idx[32], label[2048], args[4096];
        snprintf(idx, sizeof idx, "%zu", i + 1);
        ds_exp_point_label(&s->e, i, label, sizeof label);
        args_text(s, i, args, sizeof args);
        char **row = malloc(5 * sizeof(char *));
        DS_ASSERT(row != NULL);
        row[0] = strdup(idx), row[1] = strdup(s->e.points[i].run_id);
        row[2] = strdup(ds_exp_point_group(&s->e, i)), row[3] = strdup(label), row[4] = strdup(args);
        t.rows[t.nrows++] = row;
    }
    char path[DS_CFG_STR + 32];
    snprintf(path, sizeof path, "%s/plan.csv", s->dir);
    ds_status st = ds_table_write(&t, path, err);
    ds_table_free(&t);
    return st;
}

/* --resume: the folder's plan must be this grid, run for run. */
static ds_status check_plan(const struct sweep *s, struct ds_err *err)
{
    char path[DS_CFG_STR + 32];
    snprintf(path, sizeof path, "%s/plan.csv", s->dir);
    if (!exists(path))
        return ds_err_set(err, DS_ERR_USAGE, "--resume: %s is not a sweep folder (no plan.csv)",
                          s->dir);
    struct ds_table t;
    ds_status st = ds_table_read(path, &t, err);
    if (st != DS_OK) return st;
    if (t.nrows != s->e.n_points) {
        st = ds_err_set(err, DS_ERR_USAGE,
                        "--resume: %s holds another sweep (%zu runs, this file's grid has %zu); "
                        "nothing was changed there",
                        s->dir, t.nrows, s->e.n_points);
    } else {
        for (size_t i = 0; i < t.nrows && st == DS_OK; i++)
            if (strcmp(ds_table_get(&t, i, "run_id"), s->e.points[i].run_id) != 0)
                st = ds_err_set(err, DS_ERR_USAGE,
                                "--resume: %s holds another sweep: its run %zu is %s (%s), this "
                                "file's is %s; nothing was changed there",
                                s->dir, i + 1, ds_table_get(&t, i, "run_id"),
                                ds_table_get(&t, i, "label"), s->e.points[i].run_id);
    }
    ds_table_free(&t);
    return st;
}

/* The finished runs' summaries and curves, in plan order, into runs.csv and
 * curves.csv (rebuilt whole, written atomically). Counts the statuses. */
static ds_status gather(struct sweep *s, struct ds_err *err)
{
    struct ds_table runs, curves;
    ds_table_init(&runs);
    ds_table_init(&curves);
    ds_table_add_col(&runs, "index");
    ds_table_add_col(&runs, "group");
    s->n_ok = s->n_diverged = s->n_failed = 0;
    ds_status st = DS_OK;
    for (size_t i = 0; i < s->e.n_points && st == DS_OK; i++) {
        if (!s->done[i]) continue;
        char d[DS_CFG_STR + 64], path[DS_CFG_STR + 96];
        run_dir(s, i, d, sizeof d);
        struct ds_table t;
        snprintf(path, sizeof path, "%s/summary.csv", d);
        st = ds_table_read(path, &t, err);
        if (st != DS_OK) break;
        size_t r0 = runs.nrows;
        ds_table_append(&runs, &t);
        for (size_t r = r0; r < runs.nrows; r++) {
            char idx[32];
            snprintf(idx, sizeof idx, "%zu", i + 1);
            free(runs.rows[r][0]), free(runs.rows[r][1]);
            runs.rows[r][0] = strdup(idx);
            runs.rows[r][1] = strdup(ds_exp_point_group(&s->e, i));
        }
        const char *status = ds_table_get(&t, 0, "status");
        if (strcmp(status, "ok") == 0) s->n_ok++;
        else if (strcmp(status, "diverged") == 0) s->n_diverged++;
        else s->n_failed++;
        ds_table_free(&t);
        snprintf(path, sizeof path, "%s/curve.csv", d);
        if (exists(path)) {
            st = ds_table_read(path, &t, err);
            if (st != DS_OK) break;
            ds_table_append(&curves, &t);
            ds_table_free(&t);
        }
    }
    char path[DS_CFG_STR + 32];
    if (st == DS_OK) {
        snprintf(path, sizeof path, "%s/runs.csv", s->dir);
        st = ds_table_write(&runs, path, err);
    }
    if (st == DS_OK) {
        snprintf(path, sizeof path, "%s/curves.csv", s->dir);
        if (curves.ncols == 0) ds_table_add_col(&curves, "run_id");
        st = ds_table_write(&curves, path, err);
    }
    ds_table_free(&runs);
    ds_table_free(&curves);
    return st;
}

/* A run that ended without its summary.csv (crash, kill, bad input): a
 * summary row of its configuration with status failed and why. */
static void write_failed_summary(const struct sweep *s, size_t i, const char *why)
{
    char d[DS_CFG_STR + 64], path[DS_CFG_STR + 96];
    run_dir(s, i, d, sizeof d);
    struct ds_csv_line *h = malloc(sizeof *h), *r = malloc(sizeof *r);
    DS_ASSERT(h && r);
    ds_csv_begin(h);
    ds_csv_begin(r);
    ds_csv_str(h, "run_id");
    ds_csv_str(r, s->e.points[i].run_id);
    for (int k = 0; k < ds_config_key_count(); k++) {
        char v[DS_CFG_STR];
        ds_config_format(&s->e.points[i].config, k, v, sizeof v);
        ds_csv_str(h, ds_config_key_name(k));
        ds_csv_str(r, v);
    }
    char arm_id[17];
    ds_config_arm_id(&s->e.points[i].config, arm_id);
    ds_csv_str(h, "status");
    ds_csv_str(r, "failed");
    ds_csv_str(h, "arm_id");
    ds_csv_str(r, arm_id);
    ds_csv_str(h, "error");
    ds_csv_str(r, why);
    ds_csv_end(h);
    ds_csv_end(r);
    size_t n = h->len + r->len;
    char *buf = malloc(n + 1);
    DS_ASSERT(buf != NULL);
    memcpy(buf, h->buf, h->len);
    memcpy(buf + h->len, r->buf, r->len);
    snprintf(path, sizeof path, "%s/summary.csv", d);
    struct ds_err err = {{0}};
    if (ds_file_write_atomic(path, buf, n, &err) != DS_OK)
        fprintf(stderr, "descent sweep: %s\n", err.msg);
    free(buf), free(h), free(r);
}

/* The last line of a run's log, for the failure reason. */
static void last_log_line(const char *dir, char *buf, size_t len)
{
    char path[DS_CFG_STR + 96];
    snprintf(path, sizeof path, "%s/log.txt", dir);
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f))
        if (line[0] != '\n') {
            line[strcspn(line, "\n")] = '\0';
            snprintf(buf, len, "%s", line);
        }
    fclose(f);
}

static pid_t start_run(struct sweep *s, size_t i)
{
    char d[DS_CFG_STR + 64], log[DS_CFG_STR + 96];
    run_dir(s, i, d, sizeof d);
    rm_tree(d);
    struct ds_err err = {{0}};
    if (ds_mkdir_p(d, &err) != DS_OK) {
        fprintf(stderr, "descent sweep: %s\n", err.msg);
        return -1;
    }
    snprintf(log, sizeof log, "%s/log.txt", d);
    int n;
    char **argv = run_args(s, i, d, &n);
    pid_t parent = getpid();
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        /* a sweep killed outright takes its runs with it */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        signal(SIGINT, SIG_DFL), signal(SIGTERM, SIG_DFL);
        FILE *f = freopen(log, "w", stdout);
        if (!f || dup2(fileno(stdout), 2) < 0) _exit(126);
        execv(s->self, argv);
        fprintf(stderr, "descent sweep: cannot run %s: %s\n", s->self, strerror(errno));
        _exit(127);
    }
    free_args(argv);
    if (pid < 0) fprintf(stderr, "descent sweep: fork: %s\n", strerror(errno));
    return pid;
}

/* The newest results/<name>-* folder with a plan.csv, for --resume without --out. */
static int newest_sweep_dir(const char *name, char *out, size_t len)
{
    DIR *d = opendir("results");
    if (!d) return 0;
    struct dirent *de;
    time_t best = 0;
    size_t nl = strlen(name);
    int found = 0;
    while ((de = readdir(d))) {
        /* NAME-YYYYMMDD-HHMMSS exactly, so "bench" does not pick "bench-l2-..." */
        const char *st8 = de->d_name + nl + 1;
        if (strncmp(de->d_name, name, nl) != 0 || de->d_name[nl] != '-' || strlen(st8) != 15 ||
            st8[8] != '-' || strspn(st8, "0123456789") != 8 || strspn(st8 + 9, "0123456789") != 6)
            continue;
        char plan[1024];
        snprintf(plan, sizeof plan, "results/%s/plan.csv", de->d_name);
        struct stat st;
        if (stat(plan, &st) != 0) continue;
        if (!found || st.st_mtime > best) {
            best = st.st_mtime, found = 1;
            snprintf(out, len, "results/%s", de->d_name);
        }
    }
    closedir(d);
    return found;
}

static void fmt_duration(double s, char *buf, size_t len)
{
    if (!(s >= 0) || s > 1e7) snprintf(buf, len, "?");
    else if (s < 60) snprintf(buf, len, "%.0fs", s);
    else if (s < 3600) snprintf(buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, len, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* The progress line (terminal only): done/N, the newest running run's last
 * curve point, and the ETA from the finished runs' mean time. */
static void progress(const struct sweep *s, const struct job *jobs, int njobs, size_t todo)
{
    if (!s->tty || s->quiet) return;
    char what[256] = "";
    for (int j = 0; j < njobs; j++) {
        if (jobs[j].pid <= 0) continue;
        char d[DS_CFG_STR + 64], path[DS_CFG_STR + 96];
        run_dir(s, jobs[j].index, d, sizeof d);
        snprintf(path, sizeof path, "%s/curve.csv", d);
        struct ds_table t;
        struct ds_err err = {{0}};
        if (ds_table_read(path, &t, &err) == DS_OK) {
            if (t.nrows > 0) {
                size_t r = t.nrows - 1;
                snprintf(what, sizeof what, " | run %zu: step %s loss %.4g %.0f samples/s",
                         jobs[j].index + 1, ds_table_get(&t, r, "step"),
                         ds_table_num(&t, r, "train_loss"), ds_table_num(&t, r, "samples_per_s"));
            }
            ds_table_free(&t);
        }
    }
    char eta[32] = "?";
    if (s->n_timed > 0) fmt_duration(s->run_s / (double)s->n_timed * (double)todo / s->jobs, eta, sizeof eta);
    fprintf(stderr, "\r\033[K[%zu/%zu done, %d running]%s | ETA %s", s->n_done,
            s->e.n_points, njobs, what, eta);
    fflush(stderr);
}

static int usage_error(const char *msg)
{
    fprintf(stderr, "descent sweep: %s\n", msg);
    fprintf(stderr, "usage: descent sweep FILE.ini [-j N] [--resume] [--out DIR] [--list] [--quiet]\n");
    return 2;
}

int ds_cmd_sweep(int argc, char **argv)
{
    const char *file = NULL, *out = NULL;
    int jobs = 1, resume = 0, list = 0, quiet = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-j") == 0 || strcmp(a, "--jobs") == 0 || strncmp(a, "-j", 2) == 0 ||
            strncmp(a, "--jobs=", 7) == 0) {
            const char *v = strncmp(a, "--jobs=", 7) == 0 ? a + 7
                            : (a[1] == 'j' && a[2]) ? a + 2
                            : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            long j = v ? strtol(v, &end, 10) : 0;
            if (!v || *end || j < 1 || j > 1024)
                return usage_error("-j: the number of runs at a time must be an integer in 1..1024");
            jobs = (int)j;
        } else if (strcmp(a, "--resume") == 0) {
            resume = 1;
        } else if (strcmp(a, "--list") == 0) {
            list = 1;
        } else if (strcmp(a, "--quiet") == 0 || strcmp(a, "-q") == 0) {
            quiet = 1;
        } else if (strcmp(a, "--out") == 0 || strncmp(a, "--out=", 6) == 0) {
            out = a[5] == '=' ? a + 6 : (i + 1 < argc ? argv[++i] : NULL);
            if (!out || !*out) return usage_error("--out needs a folder");
        } else if (a[0] == '-') {
            char m[512];
            snprintf(m, sizeof m, "unknown option '%s' (valid: -j N, --resume, --out DIR, --list, --quiet)", a);
            return usage_error(m);
        } else if (!file) {
            file = a;
        } else {
            return usage_error("one experiment file only");
        }
    }
    if (!file) return usage_error("no experiment file given");

    struct sweep s;
    memset(&s, 0, sizeof s);
    struct ds_err err = {{0}};
    ds_status st = ds_exp_load(file, &s.e, &err);
    if (st != DS_OK) {
        fprintf(stderr, "descent sweep: %s\n", err.msg);
        return ds_status_exit_code(st);
    }
    s.jobs = jobs;
    s.quiet = quiet;
    s.tty = isatty(2) && !getenv("CI");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    s.ncpu = ncpu > 0 ? ncpu : 1;
    s.threads = (int)(ncpu / jobs > 0 ? ncpu / jobs : 1);
    int code = 0;

    if (list) {
        printf("index,run_id,group,label\n");
        for (size_t i = 0; i < s.e.n_points; i++) {
            char label[2048];
            ds_exp_point_label(&s.e, i, label, sizeof label);
            printf("%zu,%s,%s,\"%s\"\n", i + 1, s.e.points[i].run_id, ds_exp_point_group(&s.e, i),
                   label);
        }
        ds_exp_free(&s.e);
        return 0;
    }

    ssize_t sl = readlink("/proc/self/exe", s.self, sizeof s.self - 1);
    if (sl <= 0) {
        fprintf(stderr, "descent sweep: cannot find this executable (/proc/self/exe): %s\n",
                strerror(errno));
        ds_exp_free(&s.e);
        return 1;
    }
    s.self[sl] = '\0';

    if (out && strlen(out) >= sizeof s.dir - 64) {
        fprintf(stderr, "descent sweep: --out: a folder name longer than %zu characters\n", sizeof s.dir - 64);
        ds_exp_free(&s.e);
        return 2;
    }
    if (out) {
        snprintf(s.dir, sizeof s.dir, "%s", out);
    } else if (resume) {
        if (!newest_sweep_dir(s.e.name, s.dir, sizeof s.dir)) {
            fprintf(stderr,
                    "descent sweep: --resume: no sweep folder results/%s-* to resume; give it "
                    "with --out DIR\n",
                    s.e.name);
            ds_exp_free(&s.e);
            return 2;
        }
    } else {
        char stamp[32];
        time_t t = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&t));
        snprintf(s.dir, sizeof s.dir, "results/%s-%s", s.e.name, stamp);
    }

    if (resume) {
        st = check_plan(&s, &err);
    } else {
        char plan[DS_CFG_STR + 32];
        snprintf(plan, sizeof plan, "%s/plan.csv", s.dir);
        DIR *d = opendir(s.dir);
        int nonempty = 0;
        if (d) {
            struct dirent *de;
            while ((de = readdir(d)))
                nonempty |= strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
            closedir(d);
        }
        if (nonempty)
            st = ds_err_set(&err, DS_ERR_USAGE,
                            "%s already holds files%s: add --resume to continue that sweep, or "
                            "give another --out",
                            s.dir, exists(plan) ? " (a sweep)" : "");
        if (st == DS_OK) st = ds_mkdir_p(s.dir, &err);
        if (st == DS_OK) {
            char path[DS_CFG_STR + 32], *data = NULL;
            size_t len = 0;
            snprintf(path, sizeof path, "%s/experiment.ini", s.dir);
            st = ds_file_read_all(file, &data, &len, &err);
            if (st == DS_OK) st = ds_file_write_atomic(path, data, len, &err);
            free(data);
        }
        if (st == DS_OK) st = write_plan(&s, &err);
    }
    if (st != DS_OK) {
        fprintf(stderr, "descent sweep: %s\n", err.msg);
        ds_exp_free(&s.e);
        return ds_status_exit_code(st) == 1 ? 2 : ds_status_exit_code(st);
    }

    s.done = calloc(s.e.n_points ? s.e.n_points : 1, 1);
    DS_ASSERT(s.done != NULL);
    size_t todo = 0;
    for (size_t i = 0; i < s.e.n_points; i++) {
        char d[DS_CFG_STR + 64], path[DS_CFG_STR + 96];
        run_dir(&s, i, d, sizeof d);
        snprintf(path, sizeof path, "%s/summary.csv", d);
        s.done[i] = exists(path);
        if (s.done[i]) s.n_done++;
        else todo++;
    }
    st = gather(&s, &err);
    if (st != DS_OK) { /* a run folder's files are not what a run writes: bad input */
        fprintf(stderr, "descent sweep: %s\n", err.msg);
        free(s.done);
        ds_exp_free(&s.e);
        return 2;
    }
    if (!quiet) {
        int kt = ds_config_key_find("threads"), given = 1;
        for (size_t i = 0; i < s.e.n_points && given; i++) {
            int has = 0;
            for (int a = 0; a < s.e.points[i].n; a++) has |= s.e.points[i].keys[a] == kt;
            given = has;
        }
        char th[64];
        if (given) snprintf(th, sizeof th, "threads as the file sets them");
        else snprintf(th, sizeof th, "%d thread%s each", s.threads, s.threads == 1 ? "" : "s");
        fprintf(stderr, "descent sweep %s: %zu runs (%zu to do), %d at a time, %s -> %s\n", s.e.name,
                s.e.n_points, todo, jobs, th, s.dir);
        size_t alone = 0;
        for (size_t i = 0; i < s.e.n_points; i++) alone += jobs > 1 && !s.done[i] && runs_alone(&s, i);
        if (alone)
            fprintf(stderr, "descent sweep %s: %zu run%s need%s more than %d CPU%s (ranks x threads) and run%s alone\n",
                    s.e.name, alone, alone == 1 ? "" : "s", alone == 1 ? "s" : "", s.threads,
                    s.threads == 1 ? "" : "s", alone == 1 ? "s" : "");
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    ds_sweep_stop = 0;

    struct job *running = calloc((size_t)jobs, sizeof *running);
    DS_ASSERT(running != NULL);
    int nrun = 0;
    size_t next = 0;
    s.t0 = now_s();
    double last_progress = 0;
    while (!ds_sweep_stop) {
        while (nrun < jobs && next < s.e.n_points && !ds_sweep_stop) {
            if (s.done[next]) {
                next++;
                continue;
            }
            /* a run that needs more than its share of the CPUs waits for the
             * others to end, and nothing starts beside it */
            int alone = jobs > 1 && runs_alone(&s, next);
            if (nrun > 0 && (alone || running[0].alone)) break;
            pid_t pid = start_run(&s, next);
            if (pid < 0) {
                write_failed_summary(&s, next, "could not start the run");
                s.done[next] = 1, s.n_done++, todo--;
                next++;
                continue;
            }
            running[nrun++] = (struct job){pid, next, now_s(), alone};
            next++;
        }
        if (nrun == 0) break;
        /* polled, never blocking: a stop signal that lands between the check
         * above and a wait would otherwise leave the sweep waiting for a run
         * to end (hours, maybe) */
        int wst;
        pid_t pid = waitpid(-1, &wst, WNOHANG);
        if (pid == 0 || (pid < 0 && errno == EINTR)) {
            if (now_s() - last_progress > 0.5) {
                progress(&s, running, nrun, todo);
                last_progress = now_s();
            }
            if (pid == 0) usleep(50000);
            continue;
        }
        if (pid < 0) break;
        int j = 0;
        while (j < nrun && running[j].pid != pid) j++;
        if (j == nrun) continue;
        struct job done = running[j];
        running[j] = running[--nrun];
        if (ds_sweep_stop && !(WIFEXITED(wst))) break; /* interrupted with us: not a result */
        char d[DS_CFG_STR + 64], path[DS_CFG_STR + 96];
        run_dir(&s, done.index, d, sizeof d);
        snprintf(path, sizeof path, "%s/summary.csv", d);
        if (!exists(path)) {
            char why[1200], last[1024];
            last_log_line(d, last, sizeof last);
            if (WIFSIGNALED(wst))
                snprintf(why, sizeof why, "killed by signal %d (%s)%s%s", WTERMSIG(wst),
                         strsignal(WTERMSIG(wst)), *last ? ": " : "", last);
            else
                snprintf(why, sizeof why, "exit %d%s%s", WEXITSTATUS(wst), *last ? ": " : "", last);
            write_failed_summary(&s, done.index, why);
        }
        s.done[done.index] = 1, s.n_done++, todo--;
        s.run_s += now_s() - done.started, s.n_timed++;
        st = gather(&s, &err);
        if (st != DS_OK) {
            fprintf(stderr, "%sdescent sweep: %s\n", s.tty ? "\n" : "", err.msg);
            code = 1;
            break;
        }
        if (s.tty && !quiet) {
            char label[1024];
            ds_exp_point_label(&s.e, done.index, label, sizeof label);
            struct ds_table t;
            if (ds_table_read(path, &t, &err) == DS_OK) {
                fprintf(stderr, "\r\033[K[%zu/%zu] %s: %s, %s %s (%.1f s)\n", s.n_done,
                        s.e.n_points, label, ds_table_get(&t, 0, "status"),
                        ds_table_get(&t, 0, "metric"), ds_table_get(&t, 0, "final_eval_metric"),
                        now_s() - done.started);
                ds_table_free(&t);
            }
        }
    }
    int interrupted = ds_sweep_stop != 0;
    for (int j = 0; j < nrun; j++) kill(running[j].pid, SIGTERM);
    for (int j = 0; j < nrun; j++) waitpid(running[j].pid, NULL, 0);
    free(running);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);

    double wall = now_s() - s.t0;
    if (code == 0 && gather(&s, &err) != DS_OK) {
        fprintf(stderr, "descent sweep: %s\n", err.msg);
        code = 1;
    }
    /* the tuned learning rate of each arm, as data (tuned.csv; the report
     * draws and tabulates the same) */
    struct ds_analysis an;
    if (code == 0 && s.n_done > 0 && ds_analysis_load(s.dir, &an, &err) == DS_OK) {
        if (ds_analysis_write_tuned(&an, s.dir, &err) != DS_OK) fprintf(stderr, "descent sweep: %s\n", err.msg);
        ds_analysis_free(&an);
    }
    /* sweep.json: what ran */
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", s.e.name);
    cJSON_AddStringToObject(j, "description", s.e.description);
    cJSON_AddStringToObject(j, "experiment_file", file);
    cJSON_AddStringToObject(j, "git_rev", ds_build_git_rev());
    cJSON_AddNumberToObject(j, "runs", (double)s.e.n_points);
    cJSON_AddNumberToObject(j, "finished", (double)s.n_done);
    cJSON_AddNumberToObject(j, "ok", (double)s.n_ok);
    cJSON_AddNumberToObject(j, "diverged", (double)s.n_diverged);
    cJSON_AddNumberToObject(j, "failed", (double)s.n_failed);
    cJSON_AddNumberToObject(j, "jobs", jobs);
    cJSON_AddNumberToObject(j, "threads_per_run", s.threads);
    cJSON_AddNumberToObject(j, "wall_s_last_invocation", wall);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "descent sweep %s -j %d --out %s", file, jobs, s.dir);
    cJSON_AddStringToObject(j, "command", cmd);
    char *js = cJSON_Print(j);
    char path[DS_CFG_STR + 32];
    snprintf(path, sizeof path, "%s/sweep.json", s.dir);
    if (js && ds_file_write_atomic(path, js, strlen(js), &err) != DS_OK)
        fprintf(stderr, "descent sweep: %s\n", err.msg);
    cJSON_free(js);
    cJSON_Delete(j);

    if (s.tty && !quiet) fprintf(stderr, "\r\033[K");
    char took[32];
    fmt_duration(wall, took, sizeof took);
    if (interrupted) {
        fprintf(stderr,
                "descent sweep %s: interrupted after %zu of %zu runs (%s); continue with: descent "
                "sweep %s --resume --out %s\n",
                s.e.name, s.n_done, s.e.n_points, took, file, s.dir);
        code = 1;
    } else if (!quiet || s.n_failed) {
        fprintf(stderr, "descent sweep %s: %zu runs: %zu ok, %zu diverged, %zu failed (%s) -> %s\n",
                s.e.name, s.e.n_points, s.n_ok, s.n_diverged, s.n_failed, took, s.dir);
    }
    if (s.n_failed) code = 1;
    free(s.done);
    ds_exp_free(&s.e);
    return code;
}
