/*
 * bench_optim.c: `descent bench-optim`. Times one optimizer step through the
 * backend (be->ops->optim_step, the call the trainer makes) over flat float32
 * buffers, and a STREAM triad over the same number of bytes with the same
 * threads, in the same run: an element-wise step is bound by memory traffic,
 * so the triad's bandwidth is the ceiling the step is judged against, and it
 * is measured here rather than quoted because these machines are shared and
 * drift by +-10% from one hour to the next.
 *
 * Bytes counted per parameter (no write-allocate traffic, as STREAM counts):
 * read p, g and every state slot, write p and every state slot, so
 * (3 + 2 * slots) * 4 bytes; Adam (2 slots) moves 28.
 *
 * The triad's three arrays together are as large as the step's buffers
 * (p, g and the slots: (2 + slots) * 4 bytes per parameter), so both work
 * from the same level of the cache hierarchy at any --n; matching the bytes
 * moved instead would put a 1M-parameter Adam step in L3 and its triad in
 * DRAM. The ratio can exceed 1: the step updates p and its slots in place,
 * so the line it reads is the line it writes, while the triad's store to `a`
 * also reads the line first (write-allocate), traffic STREAM does not count.
 */
#include "bench_optim.h"
#include "../core/backend.h"
#include "../core/timer.h"
#include "../optimizers/optim.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define DS_BENCH_WARMUP 3
#define DS_BENCH_TRIAD_SCALAR 3.0f

struct ds_bench_optim_args {
    const char *optimizer;
    long long n;       /* parameters */
    long long threads; /* 0: one per core, as `run --threads 0` */
    long long repeat;  /* timed steps (and triads) */
    const char *backend; /* cpu: against a triad; cuda: against a device-to-device copy */
};

static void bench_usage(FILE *f)
{
    fprintf(f,
            "usage: descent bench-optim [--optimizer adam] [--n 10000000] [--threads 2] [--repeat 30] [--backend cpu]\n"
            "  times one optimizer step over n float32 parameters (median of --repeat, after %d\n"
            "  warm-up steps) and, alternating with it, a STREAM triad over arrays as large as\n"
            "  the step's buffers, same threads; GB/s count bytes as STREAM does (no write-allocate);\n"
            "  prints a table and one line 'bench-optim key=value ...' for scripts. --backend cuda:\n"
            "  the step on the GPU against cudaMemcpy device to device over the same footprint\n"
            "  (read + write counted), the GPU's ceiling for a memory-bound step.\n",
            DS_BENCH_WARMUP);
}

/* Counts accept 10000000 or 1e7: both are how people write them. */
static ds_status parse_count(const char *flag, const char *v, long long lo, long long hi,
                             long long *out, struct ds_err *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(x) || x != floor(x))
        return ds_err_set(err, DS_ERR_USAGE, "bench-optim %s: '%s' is not an integer", flag, v);
    if (x < (double)lo || x > (double)hi)
        return ds_err_set(err, DS_ERR_USAGE, "bench-optim %s: %s is out of range (%lld to %lld)",
                          flag, v, lo, hi);
    *out = (long long)x;
    return DS_OK;
}

static void optim_names(char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < ds_optim_count() && len < size; i++)
        len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", ds_optim_at(i)->name);
}

static ds_status parse_args(int argc, char **argv, struct ds_bench_optim_args *a, int *help,
                            struct ds_err *err)
{
    *a = (struct ds_bench_optim_args){.optimizer = "adam", .n = 10000000, .threads = 2, .repeat = 30,
                                      .backend = "cpu"};
    *help = 0;
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            *help = 1;
            return DS_OK;
        }
        int known = strcmp(f, "--optimizer") == 0 || strcmp(f, "--n") == 0 ||
                    strcmp(f, "--threads") == 0 || strcmp(f, "--repeat") == 0 ||
                    strcmp(f, "--backend") == 0;
        if (!known)
            return ds_err_set(err, DS_ERR_USAGE,
                              "bench-optim: unknown option '%s' (valid: --optimizer, --n, --threads, --repeat, --backend)", f);
        if (i + 1 >= argc) return ds_err_set(err, DS_ERR_USAGE, "bench-optim %s needs a value", f);
        const char *v = argv[++i];
        ds_status st = DS_OK;
        if (strcmp(f, "--optimizer") == 0) {
            if (!ds_optim_find(v)) {
                char names[256];
                optim_names(names, sizeof names);
                return ds_err_set(err, DS_ERR_USAGE, "bench-optim --optimizer: unknown '%s' (valid: %s)", v, names);
            }
            a->optimizer = v;
        } else if (strcmp(f, "--backend") == 0) {
            if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0)
                return ds_err_set(err, DS_ERR_USAGE, "bench-optim --backend: unknown '%s' (valid: %s)", v,
                                  ds_backend_list());
            a->backend = v;
        } else if (strcmp(f, "--n") == 0) {
            st = parse_count(f, v, 1, 1000000000000LL, &a->n, err);
        } else if (strcmp(f, "--threads") == 0) {
            st = parse_count(f, v, 0, 4096, &a->threads, err);
        } else {
            st = parse_count(f, v, 1, 1000000, &a->repeat, err);
        }
        if (st != DS_OK) return st;
    }
    return DS_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Sorts t in place. */
static double median(double *t, long long n)
{
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

/* a[i] = b[i] + s c[i], threads as the step's; simd so that -O2 without
 * -march=native still vectorizes it, as it does the optimizer loops. */
static void triad(size_t m, float *restrict a, const float *restrict b, const float *restrict c,
                  int threads)
{
    const float s = DS_BENCH_TRIAD_SCALAR;
#pragma omp parallel for simd schedule(static) num_threads(threads)
    for (size_t i = 0; i < m; i++) a[i] = b[i] + s * c[i];
}

static int fail(ds_status st, const struct ds_err *err)
{
    fprintf(stderr, "descent: %s\n", err->msg[0] ? err->msg : ds_status_text(st));
    return ds_status_exit_code(st);
}

int ds_cmd_bench_optim(int argc, char **argv)
{
    struct ds_err err = {{0}};
    struct ds_bench_optim_args a;
    int help;
    ds_status st = parse_args(argc, argv, &a, &help, &err);
    if (st != DS_OK) return fail(st, &err);
    if (help) {
        bench_usage(stdout);
        return 0;
    }

    const struct ds_optim_ops *opt = ds_optim_find(a.optimizer);
    struct ds_optim_hyper hyper;
    opt->defaults(&hyper);
    const int slots = opt->n_slots(&hyper);
    DS_ASSERT(slots >= 0 && slots <= DS_OPTIM_MAX_SLOTS);
    const size_t n = (size_t)a.n;
    const int bytes_per_param = (3 + 2 * slots) * 4;
    const double step_bytes = (double)bytes_per_param * (double)n;
    /* Three float arrays as large, together, as p, g and the slots. */
    const double step_footprint = (double)(2 + slots) * 4.0 * (double)n;
    const size_t m = (size_t)((step_footprint + 11.0) / 12.0);
    const double triad_bytes = 12.0 * (double)m;

    /* Refuse what cannot fit instead of being killed mid-way by the OOM killer
     * (the allocations succeed lazily under overcommit). */
    double need = step_footprint + triad_bytes;
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && need > 0.9 * (double)pages * (double)page)
        return fail(ds_err_set(&err, DS_ERR_USAGE,
                               "bench-optim --n: %lld parameters need %.1f GB (step and triad), this machine has %.1f GB",
                               a.n, need / 1e9, (double)pages * (double)page / 1e9), &err);

    struct ds_backend be;
    st = ds_backend_create(a.backend, (int)a.threads, &be, &err);
    if (st != DS_OK) return fail(st, &err);
    const int threads = be.threads;
    const int gpu = strcmp(a.backend, "cpu") != 0;
    /* GPU ceiling: a device-to-device copy of half the footprint into the
     * other half (reads and writes counted, as the step's bytes are) */
    const size_t cp_bytes = (size_t)(step_footprint / 2.0) / 4 * 4;
    void *cp_src = NULL, *cp_dst = NULL;

    float *p = be.ops->alloc(&be, n * sizeof(float));
    float *g = be.ops->alloc(&be, n * sizeof(float));
    float *state_buf = slots ? be.ops->alloc(&be, (size_t)slots * n * sizeof(float)) : NULL;
    size_t triad_alloc = (m * sizeof(float) + 63) / 64 * 64;
    float *ta = NULL, *tb = NULL, *tc = NULL;
    double *t_step = calloc((size_t)a.repeat, sizeof *t_step);
    double *t_triad = calloc((size_t)a.repeat, sizeof *t_triad);
    if (!p || !g || (slots && !state_buf) || !t_step || !t_triad) {
        st = ds_err_set(&err, DS_ERR_NOMEM, "bench-optim: out of memory for %lld parameters", a.n);
        goto done;
    }
    if (gpu) {
        cp_src = be.ops->alloc(&be, cp_bytes);
        cp_dst = be.ops->alloc(&be, cp_bytes);
        if (!cp_src || !cp_dst) {
            st = ds_err_set(&err, DS_ERR_NOMEM, "bench-optim: out of GPU memory for a copy of %zu bytes", cp_bytes);
            goto done;
        }
    }
    ta = aligned_alloc(64, gpu ? 64 : triad_alloc);
    tb = aligned_alloc(64, gpu ? 64 : triad_alloc);
    tc = aligned_alloc(64, gpu ? 64 : triad_alloc);
    if (!ta || !tb || !tc) {
        st = ds_err_set(&err, DS_ERR_NOMEM, "bench-optim: out of memory for the triad's 3 x %zu floats", m);
        goto done;
    }

    /* The step's buffers as the trainer sets them up (the backend's alloc and
     * fill); the values keep the arithmetic away from zeros and denormals. */
    be.ops->fill(&be, p, n, 0.5f);
    be.ops->fill(&be, g, n, 1e-3f);
    float *state[DS_OPTIM_MAX_SLOTS] = {0};
    for (int s = 0; s < slots; s++) {
        state[s] = state_buf + (size_t)s * n;
        float v = opt->initial_value ? opt->initial_value(&hyper, s) : 0.0f;
        be.ops->fill(&be, state[s], n, v);
    }
    /* STREAM's initialisation: in parallel, with the triad's own schedule, so
     * each thread's pages are first touched by that thread (NUMA placement). */
#pragma omp parallel for schedule(static) num_threads(threads)
    for (size_t i = 0; i < (gpu ? 1 : m); i++) {
        ta[i] = 0.0f;
        tb[i] = 1.0f;
        tc[i] = 2.0f;
    }

    /* Step and triad alternate, so a noisy neighbour or a frequency change
     * hits both medians alike rather than one of them. */
    struct ds_optim_scalars sc = {.lr = hyper.lr, .l2 = hyper.l2, .l1 = hyper.l1, .wd = hyper.wd};
    for (long long r = -DS_BENCH_WARMUP; r < a.repeat; r++) {
        sc.t++;
        double t0 = ds_now();
        be.ops->optim_step(&be, opt, &hyper, &sc, n, p, g, state, NULL);
        be.ops->sync(&be);
        double t1 = ds_now();
        if (gpu) {
            be.ops->copy(&be, cp_dst, cp_src, cp_bytes);
            be.ops->sync(&be);
        } else {
            triad(m, ta, tb, tc, threads);
        }
        double t2 = ds_now();
        if (r >= 0) {
            t_step[r] = t1 - t0;
            t_triad[r] = t2 - t1;
        }
    }
    /* STREAM's check, which also keeps the triad's stores observable. */
    const float want = 1.0f + DS_BENCH_TRIAD_SCALAR * 2.0f;
    float p_last;
    be.ops->download(&be, &p_last, p + (n - 1), sizeof p_last);
    if ((!gpu && (ta[0] != want || ta[m / 2] != want || ta[m - 1] != want)) || !isfinite(p_last)) {
        st = ds_err_set(&err, DS_ERR_INTERNAL, "bench-optim: triad or step produced wrong values");
        goto done;
    }

    double step_min = t_step[0], triad_min = t_triad[0];
    for (long long r = 1; r < a.repeat; r++) {
        if (t_step[r] < step_min) step_min = t_step[r];
        if (t_triad[r] < triad_min) triad_min = t_triad[r];
    }
    const double step_s = median(t_step, a.repeat), triad_s = median(t_triad, a.repeat);
    const double params_per_s = (double)n / step_s;
    const double ceil_bytes = gpu ? 2.0 * (double)cp_bytes : triad_bytes;
    const double step_gbs = step_bytes / step_s / 1e9, triad_gbs = ceil_bytes / triad_s / 1e9;
    const double ratio = step_gbs / triad_gbs;

    printf("bench-optim: %s over %lld float32 parameters; %s; median of %lld after %d warm-up\n",
           opt->name, a.n, be.ops->describe(&be), a.repeat, DS_BENCH_WARMUP);
    printf("%-26s %10s %10s %14s %9s  %s\n", "", "median ms", "min ms", "elements/s", "GB/s",
           "bytes counted (GB = 1e9 B)");
    printf("%-26s %10.3f %10.3f %14.4g %9.2f  (3 + 2 x %d slots) x 4 = %d B/param: read p, g, slots; write p, slots = %.3f GB\n",
           "step (be->ops->optim_step)", step_s * 1e3, step_min * 1e3, params_per_s, step_gbs,
           slots, bytes_per_param, step_bytes / 1e9);
    if (gpu)
        printf("%-26s %10.3f %10.3f %14.4g %9.2f  cudaMemcpy device to device of %zu B: read + write = %.3f GB\n",
               "copy (the ceiling)", triad_s * 1e3, triad_min * 1e3, (double)cp_bytes / 4 / triad_s, triad_gbs,
               cp_bytes, ceil_bytes / 1e9);
    else
        printf("%-26s %10.3f %10.3f %14.4g %9.2f  3 x %zu float32 (as large as p, g, slots): read b, c; write a = %.3f GB\n",
               "triad a = b + s*c", triad_s * 1e3, triad_min * 1e3, (double)m / triad_s, triad_gbs,
               m, triad_bytes / 1e9);
    printf("step GB/s / %s GB/s: %.3f\n", gpu ? "copy" : "triad", ratio);
    printf("bench-optim optimizer=%s n=%lld threads=%d repeat=%lld slots=%d bytes_per_param=%d "
           "step_ms=%.4f params_per_s=%.0f step_gbs=%.3f %s_gbs=%.3f ratio=%.3f backend=%s\n",
           opt->name, a.n, threads, a.repeat, slots, bytes_per_param, step_s * 1e3, params_per_s,
           step_gbs, gpu ? "copy" : "triad", triad_gbs, ratio, a.backend);

done:
    free(ta);
    free(tb);
    free(tc);
    free(t_step);
    free(t_triad);
    be.ops->free(&be, cp_src);
    be.ops->free(&be, cp_dst);
    be.ops->free(&be, state_buf);
    be.ops->free(&be, g);
    be.ops->free(&be, p);
    ds_backend_destroy(&be);
    return st == DS_OK ? 0 : fail(st, &err);
}
