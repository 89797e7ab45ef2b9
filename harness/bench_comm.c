/*
 * bench_comm.c: `descent bench-comm`. Times the communicator's allreduce_sum
 * (float32, in place: the call the data-parallel trainer makes on its
 * gradients) over message sizes doubling from --min-bytes to --max-bytes,
 * through ds_comm_create, so the numbers are those of the code training runs.
 *
 * Per size, on every rank in step:
 *   1. a correctness check: rank r fills element i with (r + 1) * (i % 4 + 1),
 *      one allreduce, and every element must equal n(n+1)/2 * (i % 4 + 1);
 *      integers below 2^24, so exact in float32 whatever order the sum takes
 *      (up to 2895 ranks). A wrong element fails the run (exit 1) naming the
 *      size, the rank and the element.
 *   2. the buffer is zeroed (so repeated in-place sums neither overflow nor
 *      reach denormals), `warmup` untimed ops, then `rounds` rounds of: a
 *      barrier, `iters` ops timed together. Without --warmup / --iters both
 *      come from a time budget (BC_WARMUP_S, BC_ROUND_S) and the measured time
 *      of the ops before them (for iters: of the previous round), agreed
 *      across ranks (every rank must make the same number of calls), so a
 *      size takes about rounds x BC_ROUND_S however fast the op is, and the
 *      default sweep from 4 B to 256 MiB takes seconds on an idle machine.
 *      The CSV's iters counts every timed op of the size (all rounds).
 *
 * Definitions (nccl-tests, doc/PERFORMANCE.md:
 * https://github.com/NVIDIA/nccl-tests/blob/master/doc/PERFORMANCE.md):
 *   time  = max over ranks of the rank's mean time per op (the slowest rank
 *           sets the pace of a collective); time_us_min / time_us_median are
 *           over rounds of the per-round max over ranks
 *   algbw = S / time, S the message size in bytes (GB/s = 1e9 B/s)
 *   busbw = algbw * 2(n-1)/n: a ring allreduce is a reduce-scatter and an
 *           all-gather, each moving (n-1)/n * S bytes through every rank's
 *           link, so busbw is comparable with a link's bandwidth whatever n
 *           is (and 0 with one rank, where nothing moves).
 *
 * Only rank 0 writes: DIR/bench_comm.csv (one row per size, appended as each
 * size finishes), DIR/meta.json, DIR/plots/bench_comm.{png,svg,gp}, and the
 * table on stdout.
 */
#define _XOPEN_SOURCE 700
#include "bench_comm.h"
#include "output.h"
#include "plot.h"
#include "run.h"
#include "../core/backend.h"
#include "../core/comm.h"
#include "../core/fileio.h"
#include "../core/timer.h"
#include "../core/topology.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define BC_WARMUP_S 0.01        /* auto warm-up: about this long per size */
#define BC_ROUND_S 0.02         /* auto iters: each round about this long */
#define BC_MAX_WARMUP 100
#define BC_MAX_ITERS 2000
#define BC_CHUNK ((size_t)1 << 20) /* floats staged through the host at a time */
#define BC_CSV "bench_comm.csv"
#define BC_FIG "bench_comm"

static const char *const bc_columns =
    "bytes,count_floats,ranks,iters,time_us,algbw_GBps,busbw_GBps,time_us_min,time_us_median,"
    "busbw_GBps_max,rounds,warmup,comm\n";

struct bc_args {
    long long ranks;     /* ranks to launch (outside a launcher) */
    int ranks_set;
    long long min_bytes, max_bytes;
    long long iters;     /* timed ops per round; 0: from BC_ROUND_S */
    long long warmup;    /* untimed ops per size; -1: from BC_WARMUP_S */
    long long rounds;
    const char *out;     /* NULL: results/bench-comm-<YYYYmmdd-HHMMSS> */
};

/* One size's result, agreed across ranks. */
struct bc_row {
    long long bytes, iters, warmup;
    size_t count;
    double t_mean, t_min, t_median; /* seconds per op */
};

static void bc_usage(FILE *f)
{
    fprintf(f,
            "usage: descent bench-comm [--ranks 2] [--min-bytes 4] [--max-bytes 256M] [--iters auto]\n"
            "                          [--warmup auto] [--rounds 5] [--out DIR]\n"
            "  times the communicator's allreduce (float32 sum in place, the trainer's call) over\n"
            "  sizes doubling from --min-bytes to --max-bytes (K, M, G: powers of 1024; multiples of 4)\n"
            "  on --ranks MPI processes (under mpirun: its ranks); per size: a correctness check, warm-up,\n"
            "  then --rounds rounds of --iters ops after a barrier (auto: about %.0f ms a round;\n"
            "  the CSV's iters counts the ops of all rounds).\n"
            "  time = max over ranks of the mean per op; algbw = bytes / time; busbw = algbw * 2(n-1)/n\n"
            "  (nccl-tests' definitions). Writes DIR/bench_comm.csv, DIR/meta.json and\n"
            "  DIR/plots/bench_comm.png|svg (default DIR: results/bench-comm-<timestamp>).\n",
            BC_ROUND_S * 1e3);
}

static const char *const bc_flags = "--ranks, --min-bytes, --max-bytes, --iters, --warmup, --rounds, --out";

static ds_status parse_int(const char *flag, const char *v, long long lo, long long hi, long long *out,
                           struct ds_err *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(x) || x != floor(x))
        return ds_err_set(err, DS_ERR_USAGE, "bench-comm %s: '%s' is not an integer", flag, v);
    if (x < (double)lo || x > (double)hi)
        return ds_err_set(err, DS_ERR_USAGE, "bench-comm %s: %s is out of range (%lld to %lld)", flag, v,
                          lo, hi);
    *out = (long long)x;
    return DS_OK;
}

/* 4096, 64K, 64KB, 64KiB, 256M, 1G: K, M, G are powers of 1024 (as
 * nccl-tests reads -b and -e). */
static ds_status parse_bytes(const char *flag, const char *v, long long *out, struct ds_err *err)
{
    static const struct {
        const char *s;
        int shift;
    } sfx[] = {{"", 0},   {"B", 0},   {"K", 10},   {"KB", 10}, {"KiB", 10}, {"M", 20}, {"MB", 20},
               {"MiB", 20}, {"G", 30}, {"GB", 30}, {"GiB", 30}};
    const long long limit = 1LL << 40; /* 1 TiB: far past any machine here */
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)v[0])) goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno == ERANGE) goto bad;
    for (size_t k = 0; k < DS_ARRAY_LEN(sfx); k++) {
        if (strcasecmp(end, sfx[k].s) != 0) continue;
        if (x > (unsigned long long)(limit >> sfx[k].shift))
            return ds_err_set(err, DS_ERR_USAGE, "bench-comm %s: %s is out of range (4 B to 1 TiB)", flag, v);
        *out = (long long)(x << sfx[k].shift);
        return DS_OK;
    }
bad:
    return ds_err_set(err, DS_ERR_USAGE,
                      "bench-comm %s: '%s' is not a size in bytes (e.g. 4096, 64K, 256M, 1GiB)", flag, v);
}

static ds_status parse_args(int argc, char **argv, struct bc_args *a, int *help, struct ds_err *err)
{
    *a = (struct bc_args){.ranks = 2, .min_bytes = 4, .max_bytes = 256LL << 20, .warmup = -1, .rounds = 5};
    *help = 0;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            *help = 1;
            return DS_OK;
        }
        int known = !strcmp(f, "--ranks") || !strcmp(f, "--min-bytes") || !strcmp(f, "--max-bytes") ||
                    !strcmp(f, "--iters") || !strcmp(f, "--warmup") || !strcmp(f, "--rounds") ||
                    !strcmp(f, "--out");
        if (!known) return ds_err_set(err, DS_ERR_USAGE, "bench-comm: unknown option '%s' (valid: %s)", f, bc_flags);
        if (i + 1 >= argc) return ds_err_set(err, DS_ERR_USAGE, "bench-comm %s needs a value", f);
        const char *v = argv[++i];
        ds_status st = DS_OK;
        if (!strcmp(f, "--ranks")) {
            st = parse_int(f, v, 1, 4096, &a->ranks, err);
            a->ranks_set = 1;
        } else if (!strcmp(f, "--min-bytes")) {
            st = parse_bytes(f, v, &a->min_bytes, err);
        } else if (!strcmp(f, "--max-bytes")) {
            st = parse_bytes(f, v, &a->max_bytes, err);
        } else if (!strcmp(f, "--iters")) {
            st = parse_int(f, v, 1, 100000000, &a->iters, err);
        } else if (!strcmp(f, "--warmup")) {
            st = parse_int(f, v, 0, 100000000, &a->warmup, err);
        } else if (!strcmp(f, "--rounds")) {
            st = parse_int(f, v, 1, 1000, &a->rounds, err);
        } else {
            if (!v[0]) return ds_err_set(err, DS_ERR_USAGE, "bench-comm --out: empty folder name");
            a->out = v;
        }
        if (st != DS_OK) return st;
    }
    if (a->min_bytes < 4 || a->min_bytes % 4)
        return ds_err_set(err, DS_ERR_USAGE, "bench-comm --min-bytes: %lld is not a positive multiple of 4 "
                          "(the messages are float32)", a->min_bytes);
    if (a->max_bytes < a->min_bytes)
        return ds_err_set(err, DS_ERR_USAGE, "bench-comm --max-bytes: %lld is below --min-bytes %lld",
                          a->max_bytes, a->min_bytes);
    return DS_OK;
}

/* The largest size of the sweep: min * 2^k <= max. */
static long long largest_size(const struct bc_args *a)
{
    long long b = a->min_bytes;
    while (b <= a->max_bytes / 2) b *= 2;
    return b;
}

/* Refuses a sweep whose buffers cannot fit (each rank: the message, and as
 * much again for MPI's temporary buffers), instead of the OOM killer
 * ending it half-way. */
static ds_status check_memory(const struct bc_args *a, long long ranks, struct ds_err *err)
{
    double need = 2.0 * (double)largest_size(a) * (double)ranks;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    double have = (double)pages * (double)page;
    if (pages > 0 && page > 0 && need > 0.8 * have)
        return ds_err_set(err, DS_ERR_USAGE,
                          "bench-comm --max-bytes: %lld ranks x %lld bytes (and MPI's buffers as large) need "
                          "%.1f GB, this machine has %.1f GB",
                          ranks, largest_size(a), need / 1e9, have / 1e9);
    return DS_OK;
}

static int fail(ds_status st, const struct ds_err *err)
{
    fprintf(stderr, "descent: %s\n", err->msg[0] ? err->msg : ds_status_text(st));
    return ds_status_exit_code(st);
}

/* 4 B, 64 KiB, 256 MiB; a size that is no whole number of KiB in bytes. */
static void human_bytes(long long b, char *s, size_t len)
{
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (u < 4 && b >= 1024 && b % 1024 == 0) b /= 1024, u++;
    snprintf(s, len, "%lld %s", b, unit[u]);
}

/* s inside a gnuplot single-quoted string ('' is its quote). */
static void gp_quote(const char *s, char *out, size_t len)
{
    size_t at = 0;
    for (; *s && at + 3 < len; s++) {
        if (*s == '\'') out[at++] = '\'';
        out[at++] = *s == '\n' ? ' ' : *s;
    }
    out[at] = '\0';
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Every rank's k doubles `mine`, into all[rank * k + j] on every rank: a sum
 * over ranks of vectors zero but for the rank's own slot (exact). */
static ds_status gather_f64(struct ds_comm *c, const double *mine, int k, double *all)
{
    size_t n = (size_t)c->size * (size_t)k;
    memset(all, 0, n * sizeof *all);
    memcpy(all + (size_t)c->rank * (size_t)k, mine, (size_t)k * sizeof *mine);
    return c->ops->allreduce_sum_host_f64(c, all, n);
}

static long long clampll(double x, long long lo, long long hi)
{
    return !(x > (double)lo) ? lo : x >= (double)hi ? hi : (long long)x;
}

/* Element i of rank r before the sum, and of the sum over n ranks. */
static float pattern(int rank, size_t i) { return (float)((rank + 1) * (int)((i & 3) + 1)); }
static float pattern_sum(int n, size_t i) { return (float)((long long)n * (n + 1) / 2 * (long long)((i & 3) + 1)); }

static void fill_pattern(struct ds_backend *be, float *buf, size_t count, int rank, float *stage)
{
    for (size_t o = 0; o < count; o += BC_CHUNK) {
        size_t k = count - o < BC_CHUNK ? count - o : BC_CHUNK;
        for (size_t i = 0; i < k; i++) stage[i] = pattern(rank, o + i);
        be->ops->upload(be, buf + o, stage, k * sizeof(float));
    }
}

/* The first element that is not the sum (-1: none); *got its value. */
static long long check_sum(struct ds_backend *be, const float *buf, size_t count, int n, float *stage,
                           float *got)
{
    for (size_t o = 0; o < count; o += BC_CHUNK) {
        size_t k = count - o < BC_CHUNK ? count - o : BC_CHUNK;
        be->ops->download(be, stage, buf + o, k * sizeof(float));
        for (size_t i = 0; i < k; i++)
            if (stage[i] != pattern_sum(n, o + i)) {
                *got = stage[i];
                return (long long)(o + i);
            }
    }
    return -1;
}

/* A test hook, as `descent run` has: DESCENT_FAULT="RANK:BYTES:corrupt"
 * makes rank RANK spoil the last element of its sum at message size BYTES,
 * so the tests can see the check fail. */
static void injected_fault(struct ds_backend *be, float *buf, size_t count, int rank, long long bytes)
{
    const char *f = getenv("DESCENT_FAULT");
    int r;
    long long at;
    char kind[16];
    if (!f || sscanf(f, "%d:%lld:%15s", &r, &at, kind) != 3 || r != rank || at != bytes ||
        strcmp(kind, "corrupt") != 0)
        return;
    float v;
    be->ops->download(be, &v, buf + count - 1, sizeof v);
    v += 1.0f;
    be->ops->upload(be, buf + count - 1, &v, sizeof v);
}

/* Scratch of the measurement, sized once for the whole sweep. */
struct bc_scratch {
    float *stage;  /* [BC_CHUNK] host */
    double *total; /* [size] each rank's timed seconds at this size */
    double *all;   /* [3 * size] what gather_f64 brings */
    double *rmax;  /* [rounds] seconds per op of each round's slowest rank */
};

/* One size: check, warm up, time. DS_ERR_FAILED with *wrong set when the
 * sum was wrong on some rank (rank 0 has said where); other failures are the
 * communicator's (it has printed the failing MPI call). */
static ds_status measure(struct ds_comm *c, float *buf, long long bytes, const struct bc_args *a,
                         struct bc_scratch *s, struct bc_row *row, int *wrong, struct ds_err *err)
{
    struct ds_backend *be = c->be;
    const int n = c->size;
    const size_t count = (size_t)bytes / sizeof(float);
    ds_status st;
    *wrong = 0;
#define BC_TRY(call, what)                                                                           \
    do {                                                                                             \
        st = (call);                                                                                 \
        if (st != DS_OK)                                                                             \
            return ds_err_set(err, st, "bench-comm: rank %d of %d: %s at %lld bytes failed", c->rank, \
                              n, what, bytes);                                                       \
    } while (0)

    /* 1. correctness, which is also the first warm-up op */
    fill_pattern(be, buf, count, c->rank, s->stage);
    BC_TRY(c->ops->barrier(c), "barrier");
    double t0 = ds_now();
    BC_TRY(c->ops->allreduce_sum(c, buf, count), "allreduce");
    be->ops->sync(be);
    double t1 = ds_now();
    injected_fault(be, buf, count, c->rank, bytes);
    float got = 0.0f;
    long long bad = check_sum(be, buf, count, n, s->stage, &got);
    double mine[3] = {t1 - t0, (double)bad, (double)got};
    BC_TRY(gather_f64(c, mine, 3, s->all), "gathering the check");
    double t_first = 0.0;
    for (int r = 0; r < n; r++) {
        t_first = fmax(t_first, s->all[3 * r]);
        long long i = (long long)s->all[3 * r + 1];
        if (i < 0) continue;
        if (c->rank == 0)
            fprintf(stderr,
                    "descent: bench-comm: allreduce of %lld bytes (%zu floats) over %d ranks is wrong: "
                    "rank %d holds %g at element %lld, expected %g\n",
                    bytes, count, n, r, s->all[3 * r + 2], i, (double)pattern_sum(n, (size_t)i));
        *wrong = 1;
    }
    if (*wrong)
        return ds_err_set(err, DS_ERR_FAILED, "bench-comm: allreduce of %lld bytes gave a wrong sum", bytes);

    /* 2. warm-up on a zeroed buffer, timed to size the rounds */
    be->ops->fill(be, buf, count, 0.0f);
    const double tiny = 1e-9;
    row->warmup = a->warmup >= 0 ? a->warmup : clampll(ceil(BC_WARMUP_S / fmax(t_first, tiny)), 2, BC_MAX_WARMUP);
    double t_est = t_first;
    if (row->warmup > 0) {
        BC_TRY(c->ops->barrier(c), "barrier");
        t0 = ds_now();
        for (long long k = 0; k < row->warmup; k++) BC_TRY(c->ops->allreduce_sum(c, buf, count), "allreduce");
        be->ops->sync(be);
        double tw = (ds_now() - t0) / (double)row->warmup;
        BC_TRY(gather_f64(c, &tw, 1, s->all), "gathering the warm-up times");
        t_est = 0.0;
        for (int r = 0; r < n; r++) t_est = fmax(t_est, s->all[r]);
    }

    /* 3. the timed rounds: no I/O and no allocation inside one. Auto iters
     * follow the last round's time (agreed across ranks), so a machine that
     * slows down mid-size (shared cores) keeps each round near BC_ROUND_S. */
    const long long R = a->rounds;
    long long it = a->iters > 0 ? a->iters : clampll(ceil(BC_ROUND_S / fmax(t_est, tiny)), 1, BC_MAX_ITERS);
    row->iters = 0;
    for (int r = 0; r < n; r++) s->total[r] = 0.0;
    for (long long k = 0; k < R; k++) {
        BC_TRY(c->ops->barrier(c), "barrier");
        t0 = ds_now();
        for (long long i = 0; i < it; i++) BC_TRY(c->ops->allreduce_sum(c, buf, count), "allreduce");
        be->ops->sync(be);
        double tk = ds_now() - t0;
        BC_TRY(gather_f64(c, &tk, 1, s->all), "gathering the times");
        double slowest = 0.0;
        for (int r = 0; r < n; r++) {
            s->total[r] += s->all[r];
            slowest = fmax(slowest, s->all[r]);
        }
        s->rmax[k] = slowest / (double)it;
        row->iters += it;
        if (a->iters == 0) it = clampll(ceil(BC_ROUND_S / fmax(s->rmax[k], tiny)), 1, BC_MAX_ITERS);
    }
#undef BC_TRY
    row->t_mean = 0.0; /* each rank's mean per op over every timed op; the slowest rank's */
    for (int r = 0; r < n; r++) row->t_mean = fmax(row->t_mean, s->total[r] / (double)row->iters);
    qsort(s->rmax, (size_t)R, sizeof *s->rmax, cmp_double);
    row->t_min = s->rmax[0];
    row->t_median = R % 2 ? s->rmax[R / 2] : 0.5 * (s->rmax[R / 2 - 1] + s->rmax[R / 2]);
    row->bytes = bytes;
    row->count = count;
    return DS_OK;
}

/* busbw / algbw for an allreduce over n ranks (nccl-tests): 2(n-1)/n. */
static double busbw_factor(int n) { return 2.0 * (double)(n - 1) / (double)n; }

static ds_status append_row(int fd, const char *path, const struct bc_row *w, int n, const char *comm,
                            long long rounds, struct ds_err *err)
{
    const double algbw = (double)w->bytes / w->t_mean / 1e9;
    struct ds_csv_line l;
    ds_csv_begin(&l);
    ds_csv_int(&l, w->bytes);
    ds_csv_int(&l, (long long)w->count);
    ds_csv_int(&l, n);
    ds_csv_int(&l, w->iters);
    ds_csv_num(&l, w->t_mean * 1e6);
    ds_csv_num(&l, algbw);
    ds_csv_num(&l, algbw * busbw_factor(n));
    ds_csv_num(&l, w->t_min * 1e6);
    ds_csv_num(&l, w->t_median * 1e6);
    ds_csv_num(&l, (double)w->bytes / w->t_min / 1e9 * busbw_factor(n));
    ds_csv_int(&l, rounds);
    ds_csv_int(&l, w->warmup);
    ds_csv_str(&l, comm);
    ds_csv_end(&l);
    return ds_file_append_line(fd, l.buf, l.len, path, err);
}

/* DIR/plots/bench_comm.{gp,png,svg}: algbw and busbw against the size. */
static ds_status write_plot(const char *dir, int n, const char *comm, const char *host, long long min_b,
                            long long max_b, struct ds_err *err)
{
    char pdir[1100], path[1200], title[600], qtitle[1300];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    snprintf(path, sizeof path, "%s/%s.gp", pdir, BC_FIG);
    FILE *gp = fopen(path, "w");
    if (!gp) return ds_err_set(err, DS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    snprintf(title, sizeof title, "allreduce (float32 sum, in place) over %d rank%s (%s) on %s", n,
             n == 1 ? "" : "s", comm, host);
    gp_quote(title, qtitle, sizeof qtitle);
    /* about 8 tics whatever the span: a power-of-2 step between them */
    double span = log2((double)max_b / (double)min_b);
    double step = pow(2.0, fmax(1.0, ceil(span / 8.0)));
    fprintf(gp,
            "# %s.gp: made by descent bench-comm; run `gnuplot %s.gp` in this folder to redraw\n"
            "set terminal pngcairo size 960,560 font \"DejaVu Sans,12\" noenhanced\n"
            "set output '%s.png'\n"
            "set datafile separator ','\n"
            "set key top left noenhanced\nset grid back lc rgb '#dddddd'\n"
            "set border 3\nset tics nomirror\n"
            "set title '%s'\n"
            "set logscale x 2\nset logscale y 10\n"
            "set format y '%%g'\n"
            "set xlabel 'message size'\nset ylabel 'GB/s (1e9 bytes/s)'\n"
            "set xtics (",
            BC_FIG, BC_FIG, BC_FIG, qtitle);
    for (double b = (double)min_b; b <= (double)max_b; b *= step) {
        char hs[32];
        human_bytes((long long)b, hs, sizeof hs);
        fprintf(gp, "%s'%s' %.0f", b > (double)min_b ? ", " : "", hs, b);
    }
    fprintf(gp,
            ")\nplot '../%s' using 1:6 skip 1 with linespoints lw 3 pt 7 lc rgb '#1f77b4' "
            "title 'algbw = bytes / time'",
            BC_CSV);
    if (n > 1) /* with one rank busbw is 0: nothing to draw on a log axis */
        fprintf(gp,
                ", \\\n  '' using 1:7 skip 1 with linespoints lw 2 dt 2 pt 4 lc rgb '#d62728' "
                "title 'busbw = algbw x 2(n-1)/n = algbw x %.3g'",
                busbw_factor(n));
    fprintf(gp,
            "\nset terminal svg size 960,560 dynamic font \"DejaVu Sans,12\" noenhanced\n"
            "set output '%s.svg'\nreplot\n",
            BC_FIG);
    if (fclose(gp) != 0) return ds_err_set(err, DS_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
    return ds_plot_gnuplot(pdir, BC_FIG, err);
}

static ds_status write_meta(const char *dir, const struct bc_args *a, int n, const char *comm,
                            const char *host, const char *started, double elapsed_s, int sizes,
                            int argc, char **argv, struct ds_err *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "command", "bench-comm");
    cJSON_AddStringToObject(root, "started", started);
    cJSON_AddNumberToObject(root, "elapsed_s", elapsed_s);
    cJSON *build = cJSON_AddObjectToObject(root, "build");
    cJSON_AddStringToObject(build, "git_rev", ds_build_git_rev());
    cJSON_AddStringToObject(build, "compiler", ds_build_compiler());
    cJSON_AddStringToObject(build, "cflags", ds_build_cflags());
    cJSON *h = cJSON_AddObjectToObject(root, "host");
    cJSON_AddStringToObject(h, "hostname", host);
    cJSON_AddNumberToObject(h, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
    struct ds_topology t;
    struct ds_err terr = {{0}};
    char line[1024];
    if (ds_topology_read(&t, &terr) == DS_OK) {
        ds_topology_describe(&t, line, sizeof line);
        cJSON_AddStringToObject(h, "topology", line);
    }
    cJSON *b = cJSON_AddObjectToObject(root, "bench");
    cJSON_AddStringToObject(b, "op", "allreduce_sum float32 in place");
    cJSON_AddStringToObject(b, "comm", comm);
    cJSON_AddNumberToObject(b, "ranks", n);
    cJSON_AddNumberToObject(b, "min_bytes", (double)a->min_bytes);
    cJSON_AddNumberToObject(b, "max_bytes", (double)a->max_bytes);
    cJSON_AddNumberToObject(b, "sizes", sizes);
    cJSON_AddNumberToObject(b, "rounds", (double)a->rounds);
    cJSON_AddStringToObject(b, "iters", a->iters > 0 ? "fixed" : "auto");
    cJSON_AddStringToObject(b, "warmup", a->warmup >= 0 ? "fixed" : "auto");
    cJSON_AddStringToObject(b, "time", "max over ranks of the mean per op");
    cJSON_AddStringToObject(b, "busbw", "algbw * 2(n-1)/n (nccl-tests doc/PERFORMANCE.md)");
    cJSON *av = cJSON_AddArrayToObject(root, "argv");
    for (int i = 0; i < argc; i++) cJSON_AddItemToArray(av, cJSON_CreateString(argv[i]));
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    char path[1100];
    snprintf(path, sizeof path, "%s/meta.json", dir);
    if (!json) return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory", path);
    ds_status st = ds_file_write_atomic(path, json, strlen(json), err);
    free(json);
    return st;
}

/* Rank 0: the output folder, and the CSV with its header. */
static ds_status open_output(const char *dir, char *csv, size_t csv_len, int *fd, struct ds_err *err)
{
    char pdir[1100];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    ds_status st = ds_mkdir_p(pdir, err);
    if (st != DS_OK) {
        char m[sizeof err->msg];
        memcpy(m, err->msg, sizeof m);
        return ds_err_set(err, st, "bench-comm --out: %.1000s", m);
    }
    snprintf(csv, csv_len, "%s/%s", dir, BC_CSV);
    *fd = open(csv, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (*fd < 0) return ds_err_set(err, DS_ERR_IO, "bench-comm --out: %s: %s", csv, strerror(errno));
    return ds_file_append_line(*fd, bc_columns, strlen(bc_columns), csv, err);
}

/* The benchmark on this rank (every rank of the job runs it). */
static int bench(const struct bc_args *a, int launched, int argc, char **argv)
{
    struct ds_err err = {{0}};
    struct ds_backend be;
    ds_status st = ds_backend_create("cpu", 1, &be, &err);
    if (st != DS_OK) return fail(st, &err);
    struct ds_comm comm;
    st = ds_comm_create(launched ? "mpi" : "local", &be, &comm, &err);
    if (st != DS_OK) {
        ds_backend_destroy(&be);
        return fail(st, &err);
    }
    const int n = comm.size, writer = comm.rank == 0;
    const char *comm_name = comm.ops->name;
    char dir[1024], csv[1200], host[256] = "", started[32], stamp[32];
    time_t now = time(NULL);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%S%z", localtime(&now));
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(dir, sizeof dir, a->out ? "%s" : "results/bench-comm-%s", a->out ? a->out : stamp);
    gethostname(host, sizeof host - 1);
    const double t_start = ds_now();
    const long long largest = largest_size(a);
    int fd = -1, code = 0, sizes = 0;
    float *buf = NULL;
    struct bc_scratch s = {0};

    /* Rank 0's checks decide for every rank: same exit code everywhere. */
    if (writer && a->ranks_set && a->ranks != n)
        fprintf(stderr, "descent: bench-comm: --ranks %lld ignored: this job has %d ranks (the launcher's)\n",
                a->ranks, n);
    st = check_memory(a, n, &err);
    if (st == DS_OK && writer) st = open_output(dir, csv, sizeof csv, &fd, &err);
    double verdict = (double)ds_status_exit_code(st);
    ds_status gst = comm.ops->allreduce_sum_host_f64(&comm, &verdict, 1);
    if (st != DS_OK || gst != DS_OK || verdict != 0.0) {
        if (st != DS_OK && writer) fprintf(stderr, "descent: %s\n", err.msg);
        code = gst != DS_OK ? 1 : verdict > 1.5 ? 2 : 1;
        goto done;
    }

    buf = be.ops->alloc(&be, (size_t)largest);
    s.stage = malloc(BC_CHUNK * sizeof(float));
    s.total = calloc((size_t)n, sizeof(double));
    s.rmax = calloc((size_t)a->rounds, sizeof(double));
    s.all = calloc(3 * (size_t)n, sizeof(double));
    if (!buf || !s.stage || !s.total || !s.rmax || !s.all) {
        fprintf(stderr, "descent: bench-comm: rank %d of %d: out of memory for %lld bytes\n", comm.rank, n, largest);
        fflush(stderr);
        comm.ops->abort(&comm, 1);
    }

    if (writer) {
        printf("bench-comm: allreduce_sum (float32, in place) over %d rank%s (%s) on %s\n", n, n == 1 ? "" : "s",
               comm_name, host);
        if (n == 1)
            printf("  (one rank: the allreduce moves nothing, so time is the call's overhead and busbw is 0)\n");
        printf("  time: max over ranks of the mean per op, %lld rounds; busbw = algbw x 2(n-1)/n = algbw x %.3g "
               "(nccl-tests)\n", a->rounds, busbw_factor(n));
        printf("%10s %10s %6s %11s %11s %11s %11s\n", "size", "count", "iters", "time_us", "min_us", "algbw GB/s",
               "busbw GB/s");
        fflush(stdout);
    }
    for (long long bytes = a->min_bytes; bytes <= largest; bytes *= 2) {
        struct bc_row row = {0};
        int wrong = 0;
        st = measure(&comm, buf, bytes, a, &s, &row, &wrong, &err);
        if (st != DS_OK && wrong) { /* every rank knows: end together */
            code = 1;
            goto done;
        }
        if (st != DS_OK) { /* this rank's collective failed: the others may wait on it */
            fprintf(stderr, "descent: %s\n", err.msg);
            fflush(stderr);
            comm.ops->abort(&comm, 1);
        }
        sizes++;
        if (!writer) continue;
        st = append_row(fd, csv, &row, n, comm_name, a->rounds, &err);
        if (st != DS_OK) {
            fprintf(stderr, "descent: bench-comm: %s\n", err.msg);
            fflush(stderr);
            comm.ops->abort(&comm, ds_status_exit_code(st));
        }
        char hs[32];
        human_bytes(bytes, hs, sizeof hs);
        double algbw = (double)bytes / row.t_mean / 1e9;
        printf("%10s %10zu %6lld %11.3f %11.3f %11.4f %11.4f\n", hs, row.count, row.iters, row.t_mean * 1e6,
               row.t_min * 1e6, algbw, algbw * busbw_factor(n));
        fflush(stdout);
    }

done:
    be.ops->free(&be, buf);
    free(s.stage), free(s.total), free(s.rmax), free(s.all);
    if (fd >= 0) close(fd);
    /* MPI finalised before gnuplot is forked (Open MPI warns of fork() in
     * a live MPI process on some transports) */
    ds_comm_destroy(&comm);
    ds_backend_destroy(&be);
    if (code != 0 || !writer) return code;
    const double elapsed = ds_now() - t_start;
    st = write_meta(dir, a, n, comm_name, host, started, elapsed, sizes, argc, argv, &err);
    if (st == DS_OK) st = write_plot(dir, n, comm_name, host, a->min_bytes, largest, &err);
    if (st != DS_OK) return fail(st, &err);
    printf("bench-comm: %d sizes in %.1f s; wrote %s/%s, %s/meta.json, %s/plots/%s.png and .svg\n", sizes, elapsed,
           dir, BC_CSV, dir, dir, BC_FIG);
    return 0;
}

int ds_cmd_bench_comm(int argc, char **argv)
{
    struct ds_err err = {{0}};
    struct bc_args a;
    int help;
    ds_status st = parse_args(argc, argv, &a, &help, &err);
    if (st != DS_OK) return fail(st, &err);
    if (help) {
        bc_usage(stdout);
        return 0;
    }
    const int launched = ds_comm_mpi_launched();
    if (launched) return bench(&a, 1, argc, argv);
    st = check_memory(&a, a.ranks, &err);
    if (st != DS_OK) return fail(st, &err);
    if (!ds_comm_mpi_built()) {
        if (a.ranks > 1) return ds_launch_ranks(a.ranks, "bench-comm", argc, argv); /* says why not */
        return bench(&a, 0, argc, argv);
    }
    /* N ranks (one included: MPI with one rank, not the identity of the
     * local communicator) through mpirun, as `descent run --ranks` does;
     * the output folder named here, so every rank agrees on the timestamp. */
    char dir[64];
    char **av = calloc((size_t)argc + 3, sizeof *av);
    DS_ASSERT(av != NULL);
    for (int i = 0; i < argc; i++) av[i] = argv[i];
    int ac = argc;
    if (!a.out) {
        char stamp[32];
        time_t now = time(NULL);
        strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
        snprintf(dir, sizeof dir, "results/bench-comm-%s", stamp);
        av[ac++] = "--out";
        av[ac++] = dir;
    }
    int code = ds_launch_ranks(a.ranks, "bench-comm", ac, av);
    free(av);
    return code;
}
