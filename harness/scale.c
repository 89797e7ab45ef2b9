/*
 * scale.c: `descent scale --model FILE`: the data-parallel step time, speedup
 * and efficiency of a model PROJECTED to 8..1024 GPUs over the interconnects
 * of configs/scale/interconnects.ini, for machines we do not have. Nothing at those
 * GPU counts is measured; stdout, projection.csv (column `projected`),
 * projection.md and the figure all say PROJECTION.
 *
 * The model (alpha-beta, Hockney; ring allreduce as in Patarasuk & Yuan 2009
 * and Thakur et al. 2005), per step at P GPUs with B gradient bytes:
 *
 *   flat ring:  T_ar = k * 2(P-1) alpha + 2(P-1)/P * B / beta
 *     alpha: latency of one ring step; beta: bandwidth per direction of the
 *     ring's slowest link; k: the number of allreduce calls (buckets), 1
 *     unless --bucket-mb (every call pays the latency term).
 *   two-level (nodes of G GPUs on `intra`, N = P/G nodes joined by L links
 *     per node of `inter`): reduce-scatter in the node, allreduce of each
 *     GPU's 1/G shard across nodes (the L links shared by G rings), all-gather
 *     in the node:
 *              T_ar = k * 2(G-1) alpha_n + 2(G-1)/G * B / beta_n
 *                   + k * 2(N-1) alpha_i + 2(N-1)/N * B / (L beta_i)
 *     (P <= G: the flat ring on `intra`.)
 *
 *   backward   = f * compute (f = backward_fraction, default 2/3: the
 *                backward pass does about twice the forward's work)
 *   exposed    = max(0, T_ar - overlap * backward)   overlap in [0, 1]; 1 is
 *                the ideal bound of bucketed DDP (every bucket's reduction
 *                hidden under the backward still running)
 *   step       = compute + exposed + optimizer
 *   no overlap = compute + T_ar + optimizer
 *   weak scaling (per-GPU batch fixed): t1 = compute + optimizer;
 *   efficiency = t1 / step; speedup = P * efficiency (the throughput ratio);
 *   samples/s  = P * batch_per_gpu / step.
 *
 * Not modelled (each makes the real number lower): achieved bandwidth below
 * the link's rate, congestion and contention, stragglers, data loading,
 * communication kernels slowing compute, NCCL's tree / NVLS / SHARP
 * algorithms (which would cut the latency term), memory limits.
 *
 * Ownership: ds_scale_nets_load allocates nets->v; ds_scale_nets_free
 * releases it. The model is a plain struct the caller owns.
 */
#define _XOPEN_SOURCE 700
#include "scale.h"

#include "output.h"
#include "plot.h"
#include "table.h"
#include "../core/fileio.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DS_SCALE_MAX_GPUS 1048576
#define DS_SCALE_MAX_POINTS 64
#define DS_SCALE_DEFAULT_GPUS "8,16,32,64,128,256,512,1024"
/* Not configs/interconnects.ini: every .ini directly in configs/ is an experiment file
 * (tests/test_experiment.c loads each one as such). */
#define DS_SCALE_DEFAULT_NETS "configs/scale/interconnects.ini"
#define DS_SCALE_BACKWARD_DEFAULT (2.0 / 3.0)
#define DS_SCALE_W_PX 960
#define DS_SCALE_H_PX 560
#define DS_SCALE_FONT "DejaVu Sans,12"

/* ===================================================================== model */

double ds_scale_ring_ms(double alpha_us, double bw_GBps, int p, double bytes, int n_buckets)
{
    if (p <= 1) return 0.0;
    DS_ASSERT_MSG(bw_GBps > 0 && alpha_us >= 0 && bytes >= 0 && n_buckets >= 1,
                  "alpha %g us, bandwidth %g GB/s, %g bytes, %d buckets", alpha_us, bw_GBps, bytes,
                  n_buckets);
    double steps = 2.0 * (p - 1);
    return n_buckets * steps * alpha_us * 1e-3 + steps / p * bytes / (bw_GBps * 1e9) * 1e3;
}

ds_status ds_scale_check_gpus(const struct ds_scale_net *net, int p, struct ds_err *err)
{
    if (net->hier && p > net->gpus_per_node && p % net->gpus_per_node != 0)
        return ds_err_set(err, DS_ERR_USAGE,
                          "--gpus: %d GPUs do not make whole nodes of %d on interconnect "
                          "'%s' (use multiples of %d, or --interconnect to leave it out)",
                          p, net->gpus_per_node, net->name, net->gpus_per_node);
    return DS_OK;
}

double ds_scale_allreduce_ms(const struct ds_scale_nets *nets, int i, int p, double bytes,
                             int n_buckets)
{
    DS_ASSERT(i >= 0 && i < nets->n);
    const struct ds_scale_net *n = &nets->v[i];
    if (!n->hier) return ds_scale_ring_ms(n->alpha_us, n->bw_GBps, p, bytes, n_buckets);
    const struct ds_scale_net *in = &nets->v[n->intra], *out = &nets->v[n->inter];
    const int g = n->gpus_per_node;
    if (p <= g) return ds_scale_ring_ms(in->alpha_us, in->bw_GBps, p, bytes, n_buckets);
    DS_ASSERT_MSG(p % g == 0, "%d GPUs on nodes of %d", p, g);
    /* reduce-scatter + all-gather in the node: together one ring allreduce's cost */
    double t = ds_scale_ring_ms(in->alpha_us, in->bw_GBps, g, bytes, n_buckets);
    /* across nodes: G concurrent rings of B/G bytes over L links of beta_i,
     * i.e. one ring of B bytes at L * beta_i */
    t += ds_scale_ring_ms(out->alpha_us, out->bw_GBps * n->nics_per_node, p / g, bytes, n_buckets);
    return t;
}

void ds_scale_point_eval(const struct ds_scale_model *m, int p, double allreduce_ms,
                         double overlap, struct ds_scale_point *pt)
{
    const double t1 = m->compute_ms + m->optimizer_ms;
    const double hidden = overlap * m->backward_fraction * m->compute_ms;
    pt->gpus = p;
    pt->allreduce_ms = allreduce_ms;
    pt->exposed_ms = allreduce_ms > hidden ? allreduce_ms - hidden : 0.0;
    pt->step_ms = m->compute_ms + pt->exposed_ms + m->optimizer_ms;
    pt->step_ms_no_overlap = m->compute_ms + allreduce_ms + m->optimizer_ms;
    pt->efficiency = t1 / pt->step_ms;
    pt->efficiency_no_overlap = t1 / pt->step_ms_no_overlap;
    pt->speedup = p * pt->efficiency;
    pt->samples_per_s = p * m->batch_per_gpu / pt->step_ms * 1e3;
}

/* ================================================================ INI input */

/* A number with nothing after it, finite, in [lo, hi]. */
static int parse_num(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    while (isspace((unsigned char)*end)) end++;
    if (end == v || *end || errno == ERANGE || !isfinite(x) || x < lo || x > hi) return 0;
    *out = x;
    return 1;
}

static void append_text(char *dst, size_t size, const char *s)
{
    size_t n = strlen(dst);
    if (n && n + 1 < size) dst[n++] = ' ', dst[n] = '\0';
    snprintf(dst + n, size - n, "%s", s);
}

static int valid_name(const char *s)
{
    if (!*s || strlen(s) >= DS_SCALE_NAME) return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("._+-", *s)) return 0;
    return 1;
}

enum {
    NK_ALPHA = 1, NK_BW = 2, NK_SOURCE = 4, NK_INTRA = 8, NK_INTER = 16, NK_GPN = 32, NK_NICS = 64
};

struct nets_parse {
    struct ds_scale_nets *nets;
    unsigned *seen; /* per profile: NK_ bits */
    char section[DS_SCALE_NAME + 8];
    const char *path;
    char msg[DS_SCALE_TEXT];
};

/* An INI handler's error: the first message into msg (DS_SCALE_TEXT bytes)
 * is kept; returns 0, which stops inih. */
static int parse_fail(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int parse_fail(char *msg, const char *fmt, ...)
{
    if (msg[0]) return 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, DS_SCALE_TEXT, fmt, ap);
    va_end(ap);
    return 0;
}

static int nets_handler(void *user, const char *section, const char *name, const char *value)
{
    struct nets_parse *ps = user;
    struct ds_scale_nets *nets = ps->nets;
    if (!*section) return parse_fail(ps->msg, "key '%s' before any [section] (one section per interconnect)", name);
    int i = nets->n - 1;
    if (strcmp(section, ps->section) != 0) { /* a new section */
        if (!valid_name(section))
            return parse_fail(ps->msg, "[%s]: a profile name is up to %d letters, digits and . _ + -",
                             section, DS_SCALE_NAME - 1);
        for (int j = 0; j < nets->n; j++)
            if (strcmp(nets->v[j].name, section) == 0)
                return parse_fail(ps->msg, "section [%s] appears twice", section);
        nets->v = realloc(nets->v, (size_t)(nets->n + 1) * sizeof *nets->v);
        ps->seen = realloc(ps->seen, (size_t)(nets->n + 1) * sizeof *ps->seen);
        DS_ASSERT(nets->v && ps->seen);
        i = nets->n++;
        memset(&nets->v[i], 0, sizeof nets->v[i]);
        ps->seen[i] = 0;
        snprintf(nets->v[i].name, sizeof nets->v[i].name, "%s", section);
        snprintf(ps->section, sizeof ps->section, "%s", section);
    }
    struct ds_scale_net *n = &nets->v[i];
    static const struct {
        const char *key;
        unsigned bit;
    } keys[] = {{"alpha_us", NK_ALPHA}, {"bandwidth_GBps", NK_BW}, {"source", NK_SOURCE},
                {"intra", NK_INTRA},    {"inter", NK_INTER},       {"gpus_per_node", NK_GPN},
                {"nics_per_node", NK_NICS}};
    unsigned bit = 0;
    for (size_t k = 0; k < DS_ARRAY_LEN(keys); k++)
        if (strcmp(name, keys[k].key) == 0) bit = keys[k].bit;
    if (!bit)
        return parse_fail(ps->msg, "[%s]: unknown key '%s' (valid: alpha_us, bandwidth_GBps, source, "
                             "intra, inter, gpus_per_node, nics_per_node)", section, name);
    if (bit == NK_SOURCE) { /* a continued source line adds to it */
        append_text(n->source, sizeof n->source, value);
        ps->seen[i] |= bit;
        return 1;
    }
    if (ps->seen[i] & bit) return parse_fail(ps->msg, "[%s]: key '%s' given twice", section, name);
    ps->seen[i] |= bit;
    double x;
    switch (bit) {
    case NK_ALPHA:
        if (!parse_num(value, 0, 1e7, &x))
            return parse_fail(ps->msg, "[%s]: alpha_us '%s' is not a latency in microseconds (>= 0)", section, value);
        n->alpha_us = x;
        break;
    case NK_BW:
        if (!parse_num(value, 1e-6, 1e6, &x))
            return parse_fail(ps->msg, "[%s]: bandwidth_GBps '%s' is not a positive bandwidth in GB/s", section, value);
        n->bw_GBps = x;
        break;
    case NK_INTRA:
    case NK_INTER:
        if (!valid_name(value))
            return parse_fail(ps->msg, "[%s]: %s '%s' is not a profile name", section, name, value);
        snprintf(bit == NK_INTRA ? n->intra_name : n->inter_name, DS_SCALE_NAME, "%s", value);
        n->hier = 1;
        break;
    default: /* NK_GPN, NK_NICS */
        if (!parse_num(value, bit == NK_GPN ? 2 : 1, 65536, &x) || x != floor(x))
            return parse_fail(ps->msg, "[%s]: %s '%s' is not a whole number (%s)", section, name, value,
                             bit == NK_GPN ? ">= 2" : ">= 1");
        if (bit == NK_GPN) n->gpus_per_node = (int)x;
        else n->nics_per_node = (int)x;
        break;
    }
    return 1;
}

static int net_find(const struct ds_scale_nets *nets, const char *name)
{
    for (int i = 0; i < nets->n; i++)
        if (strcmp(nets->v[i].name, name) == 0) return i;
    return -1;
}

void ds_scale_nets_free(struct ds_scale_nets *nets)
{
    free(nets->v);
    nets->v = NULL;
    nets->n = 0;
}

ds_status ds_scale_nets_load(const char *path, struct ds_scale_nets *nets, struct ds_err *err)
{
    memset(nets, 0, sizeof *nets);
    struct nets_parse ps = {.nets = nets, .path = path};
    FILE *f = fopen(path, "r");
    if (!f) return ds_err_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    int line = ini_parse_file(f, nets_handler, &ps);
    fclose(f);
    ds_status st = DS_OK;
    if (line != 0) {
        if (ps.msg[0]) st = ds_err_set(err, DS_ERR_INPUT, "%s:%d: %s", path, line, ps.msg);
        else st = ds_err_set(err, DS_ERR_INPUT, "%s:%d: not valid INI", path, line);
        goto done;
    }
    if (nets->n == 0) {
        st = ds_err_set(err, DS_ERR_INPUT, "%s: no interconnect profiles (one [section] each)", path);
        goto done;
    }
    for (int i = 0; i < nets->n && st == DS_OK; i++) {
        struct ds_scale_net *n = &nets->v[i];
        unsigned s = ps.seen[i];
        const char *need[7];
        int k = 0;
        if (n->hier) {
            if (!(s & NK_INTRA)) need[k++] = "intra";
            if (!(s & NK_INTER)) need[k++] = "inter";
            if (!(s & NK_GPN)) need[k++] = "gpus_per_node";
        } else {
            if (!(s & NK_ALPHA)) need[k++] = "alpha_us";
            if (!(s & NK_BW)) need[k++] = "bandwidth_GBps";
        }
        if (!(s & NK_SOURCE) || !n->source[0]) need[k++] = "source";
        if (k) {
            st = ds_err_set(err, DS_ERR_INPUT,
                            "%s: [%s]: missing key '%s' (a flat profile needs alpha_us, "
                            "bandwidth_GBps, source; a two-level one intra, inter, gpus_per_node, "
                            "source)", path, n->name, need[0]);
            break;
        }
        if (n->hier && (s & (NK_ALPHA | NK_BW)))
            st = ds_err_set(err, DS_ERR_INPUT,
                            "%s: [%s]: a two-level profile takes its alpha and bandwidth from "
                            "intra and inter, not alpha_us/bandwidth_GBps", path, n->name);
        if (!n->hier && (s & (NK_GPN | NK_NICS)))
            st = ds_err_set(err, DS_ERR_INPUT,
                            "%s: [%s]: gpus_per_node/nics_per_node need intra and inter", path, n->name);
    }
    for (int i = 0; i < nets->n && st == DS_OK; i++) { /* resolve the two-level ones */
        struct ds_scale_net *n = &nets->v[i];
        if (!n->hier) continue;
        n->intra = net_find(nets, n->intra_name);
        n->inter = net_find(nets, n->inter_name);
        const char *bad = n->intra < 0 ? n->intra_name : n->inter < 0 ? n->inter_name : NULL;
        if (bad) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: [%s]: no profile [%s] in this file", path, n->name, bad);
        } else if (nets->v[n->intra].hier || nets->v[n->inter].hier) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: [%s]: intra and inter must name flat profiles",
                            path, n->name);
        }
        if (!n->nics_per_node) n->nics_per_node = n->gpus_per_node;
    }
done:
    free(ps.seen);
    if (st != DS_OK) ds_scale_nets_free(nets);
    return st;
}

/* ------------------------------------------------------------- model INI */

enum {
    MK_NAME = 1, MK_PARAMS = 2, MK_GBYTES = 4, MK_COMPUTE = 8, MK_OPT = 16, MK_BATCH = 32,
    MK_SOURCE = 64, MK_BWD = 128, MK_HW = 256, MK_UNIT = 512
};

static const struct {
    const char *key;
    unsigned bit;
    int required;
} model_keys[] = {
    {"name", MK_NAME, 1},          {"params", MK_PARAMS, 1},
    {"grad_bytes_per_param", MK_GBYTES, 1}, {"compute_ms_per_step", MK_COMPUTE, 1},
    {"optimizer_ms", MK_OPT, 1},   {"batch_per_gpu", MK_BATCH, 1},
    {"source", MK_SOURCE, 1},      {"backward_fraction", MK_BWD, 0},
    {"hardware", MK_HW, 0},        {"batch_unit", MK_UNIT, 0},
};

struct model_parse {
    struct ds_scale_model *m;
    unsigned seen;
    char msg[DS_SCALE_TEXT];
};

static int model_handler(void *user, const char *section, const char *name, const char *value)
{
    struct model_parse *ps = user;
    struct ds_scale_model *m = ps->m;
    if (*section && strcmp(section, "model") != 0)
        return parse_fail(ps->msg, "unknown section [%s] (valid: [model])", section);
    unsigned bit = 0;
    for (size_t k = 0; k < DS_ARRAY_LEN(model_keys); k++)
        if (strcmp(name, model_keys[k].key) == 0) bit = model_keys[k].bit;
    if (!bit)
        return parse_fail(ps->msg, "unknown key '%s' (valid: name, params, grad_bytes_per_param, "
                              "compute_ms_per_step, optimizer_ms, batch_per_gpu, source, "
                              "backward_fraction, hardware, batch_unit)", name);
    if (bit == MK_SOURCE) {
        append_text(m->source, sizeof m->source, value);
        ps->seen |= bit;
        return 1;
    }
    if (ps->seen & bit) return parse_fail(ps->msg, "key '%s' given twice", name);
    ps->seen |= bit;
    double x = 0;
    switch (bit) {
    case MK_NAME:
        if (!valid_name(value))
            return parse_fail(ps->msg, "name '%s': up to %d letters, digits and . _ + -", value, DS_SCALE_NAME - 1);
        snprintf(m->name, sizeof m->name, "%s", value);
        return 1;
    case MK_HW:
        snprintf(m->hardware, sizeof m->hardware, "%s", value);
        return 1;
    case MK_UNIT:
        snprintf(m->batch_unit, sizeof m->batch_unit, "%s", value);
        return 1;
    case MK_PARAMS:
        if (!parse_num(value, 1, 1e15, &x)) return parse_fail(ps->msg, "params '%s' is not a parameter count >= 1", value);
        m->params = x;
        return 1;
    case MK_GBYTES:
        if (!parse_num(value, 0.125, 16, &x))
            return parse_fail(ps->msg, "grad_bytes_per_param '%s' is not a byte count from 0.125 to 16 "
                                  "(4: fp32, 2: bf16/fp16)", value);
        m->grad_bytes_per_param = x;
        return 1;
    case MK_COMPUTE:
        if (!parse_num(value, 1e-9, 1e9, &x) || x <= 0)
            return parse_fail(ps->msg, "compute_ms_per_step '%s' is not a positive time in ms", value);
        m->compute_ms = x;
        return 1;
    case MK_OPT:
        if (!parse_num(value, 0, 1e9, &x)) return parse_fail(ps->msg, "optimizer_ms '%s' is not a time in ms >= 0", value);
        m->optimizer_ms = x;
        return 1;
    case MK_BATCH:
        if (!parse_num(value, 1e-9, 1e12, &x)) return parse_fail(ps->msg, "batch_per_gpu '%s' is not a positive batch", value);
        m->batch_per_gpu = x;
        return 1;
    default: /* MK_BWD */
        if (!parse_num(value, 0, 1, &x)) return parse_fail(ps->msg, "backward_fraction '%s' is not in [0, 1]", value);
        m->backward_fraction = x;
        return 1;
    }
}

static ds_status model_load_ini(const char *path, struct ds_scale_model *m, struct ds_err *err)
{
    struct model_parse ps = {.m = m};
    FILE *f = fopen(path, "r");
    if (!f) return ds_err_set(err, DS_ERR_IO, "--model %s: cannot open: %s", path, strerror(errno));
    int line = ini_parse_file(f, model_handler, &ps);
    fclose(f);
    if (line != 0)
        return ds_err_set(err, DS_ERR_INPUT, "%s:%d: %s", path, line, ps.msg[0] ? ps.msg : "not valid INI");
    for (size_t k = 0; k < DS_ARRAY_LEN(model_keys); k++)
        if (model_keys[k].required && !(ps.seen & model_keys[k].bit))
            return ds_err_set(err, DS_ERR_INPUT,
                              "%s: missing key '%s' (a model file needs name, params, "
                              "grad_bytes_per_param, compute_ms_per_step, optimizer_ms, "
                              "batch_per_gpu and source)", path, model_keys[k].key);
    if (!(ps.seen & MK_BWD)) m->backward_fraction = DS_SCALE_BACKWARD_DEFAULT;
    if (!m->batch_unit[0]) snprintf(m->batch_unit, sizeof m->batch_unit, "samples");
    if (!m->hardware[0]) snprintf(m->hardware, sizeof m->hardware, "not stated");
    m->measured = 0;
    return DS_OK;
}

/* ------------------------------------------------------------ run folder */

/* host facts from the run's meta.json, where it has them */
static void run_host(const char *dir, const char *backend, int threads, char *out, size_t size)
{
    char p[4200], *text = NULL;
    size_t len;
    struct ds_err e = {{0}};
    char cpu[128] = "", host[128] = "", gpus[200] = "";
    snprintf(p, sizeof p, "%s/meta.json", dir);
    if (ds_file_read_all(p, &text, &len, &e) == DS_OK) {
        cJSON *j = cJSON_Parse(text);
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "host");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(h, "cpu_model");
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(h, "hostname");
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "topology");
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(t, "gpu_names");
        if (cJSON_IsString(c)) snprintf(cpu, sizeof cpu, "%s", c->valuestring);
        if (cJSON_IsString(n)) snprintf(host, sizeof host, "%s", n->valuestring);
        if (cJSON_IsString(g)) snprintf(gpus, sizeof gpus, "%s", g->valuestring);
        cJSON_Delete(j);
        free(text);
    }
    int gpu = backend[0] && strcmp(backend, "cpu") != 0 && gpus[0];
    char th[40] = "";
    if (threads > 0) snprintf(th, sizeof th, ", %d thread%s", threads, threads == 1 ? "" : "s");
    snprintf(out, size, "this machine%s%s%s: %s (backend %s%s)", host[0] ? " (host " : "", host,
             host[0] ? ")" : "", gpu ? gpus : cpu[0] ? cpu : "its CPU", backend[0] ? backend : "cpu", th);
}

static ds_status model_load_run(const char *dir, const char *csv, struct ds_scale_model *m,
                                struct ds_err *err)
{
    struct ds_table t;
    ds_status st = ds_table_read(csv, &t, err);
    if (st != DS_OK) return st;
    if (t.nrows == 0) {
        ds_table_free(&t);
        return ds_err_set(err, DS_ERR_INPUT, "%s: no run in it (header only: the run did not finish)", csv);
    }
    static const char *const need[] = {"n_params", "compute_ms", "optimizer_ms", "batch"};
    double v[4];
    for (int k = 0; k < 4; k++) {
        if (ds_table_col(&t, need[k]) < 0) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: no column '%s' (written by an older descent? "
                                               "needs n_params, compute_ms, optimizer_ms, batch)", csv, need[k]);
            break;
        }
        v[k] = ds_table_num(&t, 0, need[k]);
        if (!(isfinite(v[k]) && (k == 2 ? v[k] >= 0 : v[k] > 0))) {
            st = ds_err_set(err, DS_ERR_INPUT, "%s: %s is '%s', not a %s number (status %s)", csv,
                            need[k], ds_table_get(&t, 0, need[k]), k == 2 ? "non-negative" : "positive",
                            ds_table_get(&t, 0, "status")[0] ? ds_table_get(&t, 0, "status") : "unknown");
            break;
        }
    }
    if (st != DS_OK) {
        ds_table_free(&t);
        return st;
    }
    double ranks = ds_table_num(&t, 0, "ranks"), gpus = ds_table_num(&t, 0, "gpus");
    int r = 1;
    if (isfinite(ranks) && ranks > r) r = (int)ranks;
    if (isfinite(gpus) && gpus > r) r = (int)gpus;
    const char *wl = ds_table_get(&t, 0, "workload");
    const char *opt = ds_table_get(&t, 0, "optimizer");
    const char *status = ds_table_get(&t, 0, "status");
    double threads = ds_table_num(&t, 0, "threads");
    snprintf(m->name, sizeof m->name, "%s", valid_name(wl) ? wl : "run");
    m->params = v[0];
    m->grad_bytes_per_param = 4; /* descent's gradients are float32 */
    m->compute_ms = v[1];
    m->optimizer_ms = v[2];
    m->batch_per_gpu = v[3] / r;
    m->backward_fraction = DS_SCALE_BACKWARD_DEFAULT;
    m->measured = 1;
    m->measured_ranks = r;
    m->measured_comm_ms = ds_table_num(&t, 0, "comm_ms");
    snprintf(m->batch_unit, sizeof m->batch_unit, "samples");
    run_host(dir, ds_table_get(&t, 0, "backend"), isfinite(threads) ? (int)threads : 0, m->hardware,
             sizeof m->hardware);
    snprintf(m->source, sizeof m->source,
             "MEASURED by `descent run` on %s: %s, workload %s, optimizer %s, global batch %g over "
             "%d rank%s (status %s); compute_ms and optimizer_ms are the run's means per step%s; "
             "gradients float32 (4 bytes per parameter)",
             m->hardware, csv, wl[0] ? wl : "?", opt[0] ? opt : "?", v[3], r, r == 1 ? "" : "s",
             status[0] ? status : "unknown", r > 1 ? " per rank" : "");
    if (status[0] && strcmp(status, "ok") != 0)
        fprintf(stderr, "descent scale: note: %s has status '%s'; its timings are used as they are\n", csv, status);
    ds_table_free(&t);
    return DS_OK;
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

ds_status ds_scale_model_load(const char *path, struct ds_scale_model *m, struct ds_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return ds_err_set(err, DS_ERR_IO, "--model %s: no such file or folder (a model .ini, e.g. "
                                          "configs/models/gpt2-124m.ini, or a descent run folder)", path);
    size_t n = strlen(path);
    if (S_ISDIR(sb.st_mode)) {
        char csv[4200], runs[4200];
        snprintf(csv, sizeof csv, "%s/summary.csv", path);
        if (!file_exists(csv)) {
            snprintf(runs, sizeof runs, "%s/runs.csv", path);
            if (file_exists(runs))
                return ds_err_set(err, DS_ERR_INPUT,
                                  "--model %s: no summary.csv: this is a sweep folder; give one of its "
                                  "runs (%s/runs/<run>) instead", path, path);
            return ds_err_set(err, DS_ERR_INPUT,
                              "--model %s: no summary.csv in this folder (not a finished `descent run` "
                              "folder)", path);
        }
        return model_load_run(path, csv, m, err);
    }
    if (n >= 4 && strcmp(path + n - 4, ".csv") == 0) { /* summary.csv itself */
        char dir[4200];
        snprintf(dir, sizeof dir, "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        else snprintf(dir, sizeof dir, ".");
        return model_load_run(dir, path, m, err);
    }
    return model_load_ini(path, m, err);
}

/* ============================================================== arguments */

struct scale_args {
    const char *model, *nets_path, *nets_sel, *out;
    int gpus[DS_SCALE_MAX_POINTS], n_gpus;
    double overlap, backward_fraction, bucket_mb; /* backward_fraction < 0: the model's */
};

static void scale_usage(FILE *f)
{
    fprintf(f,
            "usage: descent scale --model FILE|RUN_DIR [--gpus " DS_SCALE_DEFAULT_GPUS "]\n"
            "                     [--interconnects " DS_SCALE_DEFAULT_NETS "] [--interconnect NAME,...]\n"
            "                     [--overlap 1] [--backward-fraction 0.667] [--bucket-mb 0] [--out DIR]\n"
            "  PROJECTS data-parallel step time, speedup and efficiency to GPU counts not measured here,\n"
            "  from an alpha-beta model of the ring allreduce of the gradients (weak scaling: per-GPU\n"
            "  batch fixed). FILE: a model description (configs/models/*.ini); RUN_DIR: a `descent run`\n"
            "  folder, whose measured compute time is used. --overlap: the share of the backward pass that\n"
            "  hides communication (1: the ideal bucketed-DDP bound; the no-overlap columns are always\n"
            "  shown). --bucket-mb: allreduce in buckets of this many MiB, each paying the latency (0: one).\n"
            "  Writes DIR/projection.csv, DIR/projection.md, DIR/plots/projection.png and .svg\n"
            "  (default DIR: results/scale-<model>-<YYYYmmdd-HHMMSS>).\n");
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ds_status parse_gpus(const char *v, struct scale_args *a, struct ds_err *err)
{
    a->n_gpus = 0;
    const char *s = v;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        char item[32];
        int ok = len > 0 && len < sizeof item;
        long x = 0;
        if (ok) {
            memcpy(item, s, len);
            item[len] = '\0';
            char *end;
            errno = 0;
            x = strtol(item, &end, 10);
            ok = end != item && *end == '\0' && errno == 0 && x >= 1 && x <= DS_SCALE_MAX_GPUS &&
                 isdigit((unsigned char)item[0]);
        }
        if (!ok)
            return ds_err_set(err, DS_ERR_USAGE,
                              "--gpus: '%.*s' in '%s' is not a GPU count (whole numbers from 1 "
                              "to %d, comma-separated, e.g. --gpus " DS_SCALE_DEFAULT_GPUS ")",
                              (int)(len < 40 ? len : 40), s, v, DS_SCALE_MAX_GPUS);
        if (a->n_gpus == DS_SCALE_MAX_POINTS)
            return ds_err_set(err, DS_ERR_USAGE, "--gpus: more than %d values", DS_SCALE_MAX_POINTS);
        a->gpus[a->n_gpus++] = (int)x;
        if (!comma) break;
        s = comma + 1;
    }
    qsort(a->gpus, (size_t)a->n_gpus, sizeof a->gpus[0], cmp_int);
    int k = 0; /* drop repeats */
    for (int i = 0; i < a->n_gpus; i++)
        if (k == 0 || a->gpus[i] != a->gpus[k - 1]) a->gpus[k++] = a->gpus[i];
    a->n_gpus = k;
    return DS_OK;
}

static ds_status parse_args(int argc, char **argv, struct scale_args *a, int *help, struct ds_err *err)
{
    memset(a, 0, sizeof *a);
    a->overlap = 1.0;
    a->backward_fraction = -1;
    *help = 0;
    ds_status st = parse_gpus(DS_SCALE_DEFAULT_GPUS, a, err);
    DS_ASSERT(st == DS_OK);
    static const char *const flags[] = {"--model", "--gpus", "--interconnects", "--interconnect",
                                        "--overlap", "--backward-fraction", "--bucket-mb", "--out"};
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            *help = 1;
            return DS_OK;
        }
        int known = 0;
        for (size_t k = 0; k < DS_ARRAY_LEN(flags); k++) known |= strcmp(f, flags[k]) == 0;
        if (!known)
            return ds_err_set(err, DS_ERR_USAGE,
                              "unknown %s '%s' (valid: --model, --gpus, --interconnects, "
                              "--interconnect, --overlap, --backward-fraction, --bucket-mb, --out)",
                              f[0] == '-' ? "option" : "argument", f);
        if (i + 1 >= argc) return ds_err_set(err, DS_ERR_USAGE, "%s needs a value", f);
        const char *v = argv[++i];
        if (strcmp(f, "--model") == 0) a->model = v;
        else if (strcmp(f, "--interconnects") == 0) a->nets_path = v;
        else if (strcmp(f, "--interconnect") == 0) a->nets_sel = v;
        else if (strcmp(f, "--out") == 0) a->out = v;
        else if (strcmp(f, "--gpus") == 0) st = parse_gpus(v, a, err);
        else if (strcmp(f, "--overlap") == 0) {
            if (!parse_num(v, 0, 1, &a->overlap))
                st = ds_err_set(err, DS_ERR_USAGE, "--overlap: '%s' is not a fraction from 0 to 1", v);
        } else if (strcmp(f, "--backward-fraction") == 0) {
            if (!parse_num(v, 0, 1, &a->backward_fraction))
                st = ds_err_set(err, DS_ERR_USAGE, "--backward-fraction: '%s' is not a fraction from 0 to 1", v);
        } else if (!parse_num(v, 0, 1e9, &a->bucket_mb)) {
            st = ds_err_set(err, DS_ERR_USAGE, "--bucket-mb: '%s' is not a size in MiB >= 0 (0: one allreduce)", v);
        }
        if (st != DS_OK) return st;
    }
    if (!a->model)
        return ds_err_set(err, DS_ERR_USAGE,
                          "--model is required (a model .ini such as configs/models/gpt2-124m.ini, "
                          "or a descent run folder)");
    return DS_OK;
}

/* The default interconnects file: ./configs/, else beside the executable's
 * parent folder (build/descent -> configs/), so it works from anywhere in a
 * checkout. */
static const char *default_nets_path(char *buf, size_t size)
{
    if (file_exists(DS_SCALE_DEFAULT_NETS)) return DS_SCALE_DEFAULT_NETS;
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash) {
            *slash = '\0';
            snprintf(buf, size, "%s/../" DS_SCALE_DEFAULT_NETS, self);
            if (file_exists(buf)) return buf;
        }
    }
    return DS_SCALE_DEFAULT_NETS; /* the error will name it */
}

/* sel: comma-separated names; fills use[] (1: chosen) or names the bad one. */
static ds_status select_nets(const struct ds_scale_nets *nets, const char *sel, const char *path,
                             int *use, struct ds_err *err)
{
    for (int i = 0; i < nets->n; i++) use[i] = sel == NULL;
    if (!sel) return DS_OK;
    const char *s = sel;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        int found = -1;
        for (int i = 0; i < nets->n; i++)
            if (strlen(nets->v[i].name) == len && strncmp(nets->v[i].name, s, len) == 0) found = i;
        if (found < 0) {
            char names[1024];
            size_t at = 0;
            names[0] = '\0';
            for (int i = 0; i < nets->n && at < sizeof names; i++)
                at += (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", nets->v[i].name);
            return ds_err_set(err, DS_ERR_USAGE, "--interconnect: unknown '%.*s' (valid, from %s: %s)",
                              (int)(len < 64 ? len : 64), s, path, names);
        }
        use[found] = 1;
        if (!comma) break;
        s = comma + 1;
    }
    return DS_OK;
}

/* ================================================================= output */

/* A growing text buffer. */
struct sbuf {
    char *s;
    size_t len, cap;
};

static void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    DS_ASSERT(n >= 0);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->s = realloc(b->s, b->cap);
        DS_ASSERT(b->s != NULL);
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* s inside a gnuplot single-quoted string ('' is its quote). */
static void gp_quoted(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\'') fputc('\'', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
}

/* s for a Markdown table cell or line ('|' escaped). */
static void md_text(struct sbuf *b, const char *s)
{
    for (; *s; s++) sb_printf(b, *s == '|' ? "\\|" : "%c", *s);
}

struct scale_run {
    const struct scale_args *a;
    const struct ds_scale_model *m;
    const struct ds_scale_nets *nets;
    const char *nets_path;
    const int *use;
    struct ds_scale_point *pts; /* [net * n_gpus + k] */
    double bytes;
    int n_buckets;
};

static const struct ds_scale_point *pt_at(const struct scale_run *r, int net, int k)
{
    return &r->pts[net * r->a->n_gpus + k];
}

static void describe_net(const struct ds_scale_nets *nets, int i, char *out, size_t size)
{
    const struct ds_scale_net *n = &nets->v[i];
    if (!n->hier) {
        snprintf(out, size, "flat ring, alpha %g us, %g GB/s per direction", n->alpha_us, n->bw_GBps);
        return;
    }
    snprintf(out, size, "two-level: nodes of %d GPUs on %s, %d link%s of %s per node between nodes",
             n->gpus_per_node, n->intra_name, n->nics_per_node, n->nics_per_node == 1 ? "" : "s",
             n->inter_name);
}

static void print_stdout(const struct scale_run *r)
{
    const struct ds_scale_model *m = r->m;
    const struct scale_args *a = r->a;
    printf("descent scale: PROJECTION (alpha-beta model of the gradient allreduce; NOT measured at these GPU counts)\n");
    printf("  model %s: %.4g parameters x %g B = %.4g MB of gradients%s\n", m->name, m->params,
           m->grad_bytes_per_param, r->bytes / 1e6,
           r->n_buckets > 1 ? "" : ", one allreduce per step");
    if (r->n_buckets > 1) printf("  allreduce in %d buckets of %g MiB (each pays the latency term)\n", r->n_buckets, a->bucket_mb);
    printf("  compute %.4g ms/step (%s), optimizer %.4g ms, batch %g per GPU (%s)\n", m->compute_ms,
           m->measured ? "MEASURED on this machine" : "from the model file, see its source", m->optimizer_ms,
           m->batch_per_gpu, m->batch_unit);
    printf("  weak scaling; overlap %g x backward (backward = %.3g of compute); efficiency = t1 / step, "
           "t1 = compute + optimizer = %.4g ms\n", a->overlap, m->backward_fraction, m->compute_ms + m->optimizer_ms);
    for (int i = 0; i < r->nets->n; i++) {
        if (!r->use[i]) continue;
        char desc[512];
        describe_net(r->nets, i, desc, sizeof desc);
        printf("\nPROJECTION  %s (%s)\n", r->nets->v[i].name, desc);
        printf("%7s %13s %11s %10s %14s %10s %13s %9s %12s\n", "gpus", "allreduce_ms", "exposed_ms",
               "step_ms", "step_no_ovl_ms", "efficiency", "eff_no_ovl", "speedup", "samples/s");
        for (int k = 0; k < a->n_gpus; k++) {
            const struct ds_scale_point *p = pt_at(r, i, k);
            printf("%7d %13.4g %11.4g %10.4g %14.4g %10.3f %13.3f %9.4g %12.4g\n", p->gpus, p->allreduce_ms,
                   p->exposed_ms, p->step_ms, p->step_ms_no_overlap, p->efficiency,
                   p->efficiency_no_overlap, p->speedup, p->samples_per_s);
        }
    }
}

static const char *const csv_columns[] = {
    "model", "interconnect", "gpus", "grad_mb", "compute_ms", "allreduce_ms", "exposed_comm_ms",
    "step_ms", "step_ms_no_overlap", "efficiency", "efficiency_no_overlap", "samples_per_s",
    "projected", "speedup", "compute_source"};

static ds_status write_csv(const struct scale_run *r, const char *path, struct ds_err *err)
{
    struct sbuf b = {0};
    struct ds_csv_line l;
    ds_csv_begin(&l);
    for (size_t c = 0; c < DS_ARRAY_LEN(csv_columns); c++) ds_csv_str(&l, csv_columns[c]);
    ds_csv_end(&l);
    sb_printf(&b, "%s", l.buf);
    for (int i = 0; i < r->nets->n; i++) {
        if (!r->use[i]) continue;
        for (int k = 0; k < r->a->n_gpus; k++) {
            const struct ds_scale_point *p = pt_at(r, i, k);
            ds_csv_begin(&l);
            ds_csv_str(&l, r->m->name);
            ds_csv_str(&l, r->nets->v[i].name);
            ds_csv_int(&l, p->gpus);
            ds_csv_num(&l, r->bytes / 1e6);
            ds_csv_num(&l, r->m->compute_ms);
            ds_csv_num(&l, p->allreduce_ms);
            ds_csv_num(&l, p->exposed_ms);
            ds_csv_num(&l, p->step_ms);
            ds_csv_num(&l, p->step_ms_no_overlap);
            ds_csv_num(&l, p->efficiency);
            ds_csv_num(&l, p->efficiency_no_overlap);
            ds_csv_num(&l, p->samples_per_s);
            ds_csv_int(&l, 1);
            ds_csv_num(&l, p->speedup);
            ds_csv_str(&l, r->m->measured ? "measured" : "model file");
            ds_csv_end(&l);
            sb_printf(&b, "%s", l.buf);
        }
    }
    ds_status st = ds_file_write_atomic(path, b.s, b.len, err);
    free(b.s);
    return st;
}

static ds_status write_md(const struct scale_run *r, const char *path, const char *stamp,
                          struct ds_err *err)
{
    const struct ds_scale_model *m = r->m;
    const struct scale_args *a = r->a;
    struct sbuf b = {0};
    sb_printf(&b, "# Projection (not measured): ");
    md_text(&b, m->name);
    sb_printf(&b, ", data-parallel scaling to %d GPUs\n\n", a->gpus[a->n_gpus - 1]);
    sb_printf(&b, "**PROJECTION.** These numbers come from an alpha-beta model of the gradient "
                  "allreduce (`descent scale`, %s); no run at these GPU counts was made. The compute "
                  "time per step is %s.\n\n", stamp,
              m->measured ? "MEASURED on this machine by `descent run`" : "taken from the model file (see Sources for where it comes from)");
    sb_printf(&b, "Model: %.4g parameters x %g bytes = %.4g MB of gradients per step; compute "
                  "(forward + backward) %.4g ms, optimizer %.4g ms, batch %g per GPU (%s); "
                  "t1 = compute + optimizer = %.4g ms.\n\n",
              m->params, m->grad_bytes_per_param, r->bytes / 1e6, m->compute_ms, m->optimizer_ms,
              m->batch_per_gpu, m->batch_unit, m->compute_ms + m->optimizer_ms);

    sb_printf(&b, "## Efficiency t1 / step, with overlap %g / without overlap (projected)\n\n| GPUs |", a->overlap);
    for (int i = 0; i < r->nets->n; i++)
        if (r->use[i]) sb_printf(&b, " %s |", r->nets->v[i].name);
    sb_printf(&b, "\n|---:|");
    for (int i = 0; i < r->nets->n; i++)
        if (r->use[i]) sb_printf(&b, "---:|");
    sb_printf(&b, "\n");
    for (int k = 0; k < a->n_gpus; k++) {
        sb_printf(&b, "| %d |", a->gpus[k]);
        for (int i = 0; i < r->nets->n; i++)
            if (r->use[i])
                sb_printf(&b, " %.3f / %.3f |", pt_at(r, i, k)->efficiency, pt_at(r, i, k)->efficiency_no_overlap);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "\n## Throughput per second, with overlap %g (projected; unit: %s)\n\n| GPUs |", a->overlap, m->batch_unit);
    for (int i = 0; i < r->nets->n; i++)
        if (r->use[i]) sb_printf(&b, " %s |", r->nets->v[i].name);
    sb_printf(&b, "\n|---:|");
    for (int i = 0; i < r->nets->n; i++)
        if (r->use[i]) sb_printf(&b, "---:|");
    sb_printf(&b, "\n");
    for (int k = 0; k < a->n_gpus; k++) {
        sb_printf(&b, "| %d |", a->gpus[k]);
        for (int i = 0; i < r->nets->n; i++)
            if (r->use[i]) sb_printf(&b, " %.4g |", pt_at(r, i, k)->samples_per_s);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "\nEvery column (allreduce, exposed communication, step times, speedup) is in "
                  "`projection.csv` (column `projected` = 1).\n\n");
    sb_printf(&b, "![Projected efficiency against GPUs](plots/projection.png)\n\n");

    sb_printf(&b, "## Assumptions\n\n");
    sb_printf(&b, "- Flat profile: one ring over all P GPUs; T_ar = k * 2(P-1) alpha + 2(P-1)/P * B / beta, "
                  "B the gradient bytes, beta the bandwidth per direction of the ring's slowest link, "
                  "k = %d allreduce call%s per step%s.\n", r->n_buckets, r->n_buckets == 1 ? "" : "s",
              r->n_buckets > 1 ? " (buckets of --bucket-mb MiB, each paying the latency term)" : "");
    sb_printf(&b, "- Two-level profile: reduce-scatter and all-gather inside nodes of G GPUs, each GPU's "
                  "1/G shard allreduced across the N = P/G nodes over the node's L links: "
                  "T_ar = k * 2(G-1) alpha_n + 2(G-1)/G * B / beta_n + k * 2(N-1) alpha_i + 2(N-1)/N * B / (L beta_i).\n");
    sb_printf(&b, "- Overlap: exposed communication = max(0, T_ar - %g x backward), backward = %.3g x compute%s. "
                  "Overlap 1 is the ideal bound of bucketed DDP; the no-overlap columns are the other bound.\n",
              a->overlap, m->backward_fraction,
              fabs(m->backward_fraction - DS_SCALE_BACKWARD_DEFAULT) < 1e-12
                  ? " (default 2/3: the backward pass does about twice the forward's work)" : "");
    sb_printf(&b, "- Weak scaling: the per-GPU batch is fixed; step = compute + exposed + optimizer; "
                  "efficiency = t1 / step; speedup = P x efficiency; throughput = P x batch / step. "
                  "The optimizer step is replicated on every GPU (no ZeRO sharding).\n");
    sb_printf(&b, "- Not modelled, each lowering the real figure: bandwidth achieved below the link rate, "
                  "congestion, stragglers, data loading, communication slowing compute, memory limits; "
                  "NCCL's tree, NVLS or SHARP algorithms would shrink the latency term.\n");
    if (m->measured) {
        sb_printf(&b, "- The compute time was measured on %s and is paired with GPU interconnects: "
                      "a what-if, as if every GPU computed at this speed.", m->hardware);
        if (isfinite(m->measured_comm_ms))
            sb_printf(&b, " The run's own comm_ms (%.4g ms at %d rank%s, on this machine) is not used.",
                      m->measured_comm_ms, m->measured_ranks, m->measured_ranks == 1 ? "" : "s");
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "\n## Sources\n\n- Model %s (compute on: ", m->name);
    md_text(&b, m->hardware);
    sb_printf(&b, "): ");
    md_text(&b, m->source);
    sb_printf(&b, "\n");
    for (int i = 0; i < r->nets->n; i++) {
        if (!r->use[i]) continue;
        char desc[512];
        describe_net(r->nets, i, desc, sizeof desc);
        sb_printf(&b, "- Interconnect %s (%s): ", r->nets->v[i].name, desc);
        md_text(&b, r->nets->v[i].source);
        sb_printf(&b, "\n");
    }
    sb_printf(&b, "- Interconnect profiles read from `%s`.\n", r->nets_path);
    ds_status st = ds_file_write_atomic(path, b.s, b.len, err);
    free(b.s);
    return st;
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static ds_status write_plot(const struct scale_run *r, const char *dir, struct ds_err *err)
{
    char pdir[4200], p[4300];
    snprintf(pdir, sizeof pdir, "%s/plots", dir);
    ds_status st = ds_mkdir_p(pdir, err);
    if (st != DS_OK) return st;
    snprintf(p, sizeof p, "%s/projection.dat", pdir);
    FILE *dat = fopen(p, "w");
    if (!dat) return ds_err_set(err, DS_ERR_IO, "%s: cannot write: %s", p, strerror(errno));
    snprintf(p, sizeof p, "%s/projection.gp", pdir);
    FILE *gp = fopen(p, "w");
    if (!gp) {
        fclose(dat);
        return ds_err_set(err, DS_ERR_IO, "%s: cannot write: %s", p, strerror(errno));
    }
    const struct scale_args *a = r->a;
    fprintf(gp, "# projection.gp: made by descent scale; run `gnuplot projection.gp` in this folder to redraw\n");
    fprintf(gp, "set terminal pngcairo size %d,%d font \"%s\" noenhanced\nset output 'projection.png'\n",
            DS_SCALE_W_PX, DS_SCALE_H_PX, DS_SCALE_FONT);
    fprintf(gp, "set key below maxrows 4 noenhanced\nset grid back lc rgb '#dddddd'\nset border 3\nset tics nomirror\n");
    fprintf(gp, "set title 'PROJECTION (alpha-beta model, not measured): ");
    gp_quoted(gp, r->m->name);
    fprintf(gp, ", data-parallel efficiency' . \"\\n\" . 'weak scaling, batch %g per GPU (", r->m->batch_per_gpu);
    gp_quoted(gp, r->m->batch_unit);
    fprintf(gp, "), compute %s'\n", r->m->measured ? "measured on this machine" : "from the model file");
    fprintf(gp, "set xlabel 'GPUs (log2 scale)'\nset ylabel 'efficiency t1 / step (solid: overlap %g, dashed: none)'\n",
            a->overlap);
    fprintf(gp, "set logscale x 2\nset yrange [0:1.08]\nset xtics (");
    for (int k = 0; k < a->n_gpus; k++) fprintf(gp, "%s'%d' %d", k ? ", " : "", a->gpus[k], a->gpus[k]);
    double lo = a->gpus[0], hi = a->gpus[a->n_gpus - 1];
    if (hi <= lo) lo /= 1.5, hi *= 1.5; /* one point: a range around it */
    fprintf(gp, ")\nset xrange [%g:%g]\nset offsets graph 0.02, graph 0.02, 0, 0\n", lo, hi);
    fprintf(gp, "set label 1 'on 1.0: communication fully hidden (lines there overlap)' at graph 0.01, first 1.045 font ',10'\n");
    fprintf(gp, "plot 1 with lines lw 1.5 dt 3 lc rgb '#000000' title 'ideal (1.0)'");
    int block = 0;
    for (int i = 0; i < r->nets->n; i++) {
        if (!r->use[i]) continue;
        fprintf(dat, "# %s: gpus efficiency efficiency_no_overlap (PROJECTION)\n", r->nets->v[i].name);
        for (int k = 0; k < a->n_gpus; k++)
            fprintf(dat, "%d %.10g %.10g\n", a->gpus[k], pt_at(r, i, k)->efficiency,
                    pt_at(r, i, k)->efficiency_no_overlap);
        fprintf(dat, "\n\n");
        const char *col = palette[block % (int)DS_ARRAY_LEN(palette)];
        fprintf(gp, ", \\\n  'projection.dat' index %d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title '", block, col);
        gp_quoted(gp, r->nets->v[i].name);
        fprintf(gp, "', \\\n  'projection.dat' index %d using 1:3 with lines lw 1.5 dt 2 lc rgb '%s' notitle", block, col);
        block++;
    }
    fprintf(gp, "\nset terminal svg size %d,%d dynamic font \"%s\" noenhanced\nset output 'projection.svg'\nreplot\n",
            DS_SCALE_W_PX, DS_SCALE_H_PX, DS_SCALE_FONT);
    int bad = ferror(gp) || ferror(dat);
    bad |= fclose(gp) != 0;
    bad |= fclose(dat) != 0;
    if (bad) return ds_err_set(err, DS_ERR_IO, "%s: cannot write the figure's script or data", pdir);
    return ds_plot_gnuplot(pdir, "projection", err);
}

/* results/scale-<model>-<stamp> */
static void default_out(const char *model, const char *stamp, char *out, size_t size)
{
    snprintf(out, size, "results/scale-%s-%s", model, stamp);
}

static int fail(ds_status st, const struct ds_err *err)
{
    fprintf(stderr, "descent scale: %s\n", err->msg[0] ? err->msg : ds_status_text(st));
    return ds_status_exit_code(st);
}

int ds_cmd_scale(int argc, char **argv)
{
    struct ds_err err = {{0}};
    struct scale_args a;
    int help;
    ds_status st = parse_args(argc, argv, &a, &help, &err);
    if (st != DS_OK) return fail(st, &err);
    if (help) {
        scale_usage(stdout);
        return 0;
    }
    char nets_buf[4200];
    const char *nets_path = a.nets_path ? a.nets_path : default_nets_path(nets_buf, sizeof nets_buf);
    struct ds_scale_nets nets;
    st = ds_scale_nets_load(nets_path, &nets, &err);
    if (st != DS_OK) {
        if (st == DS_ERR_IO)
            fprintf(stderr, "descent scale: --interconnects: %s%s\n", err.msg,
                    a.nets_path ? "" : " (the default: run from the source tree, or give --interconnects FILE)");
        return st == DS_ERR_IO ? ds_status_exit_code(st) : fail(st, &err);
    }
    int *use = DS_XCALLOC((size_t)nets.n, sizeof *use);
    struct ds_scale_point *pts = NULL;
    struct ds_scale_model m;
    st = select_nets(&nets, a.nets_sel, nets_path, use, &err);
    for (int i = 0; i < nets.n && st == DS_OK; i++)
        for (int k = 0; k < a.n_gpus && st == DS_OK && use[i]; k++)
            st = ds_scale_check_gpus(&nets.v[i], a.gpus[k], &err);
    if (st == DS_OK) st = ds_scale_model_load(a.model, &m, &err);
    if (st != DS_OK) goto done;
    if (a.backward_fraction >= 0) m.backward_fraction = a.backward_fraction;

    struct scale_run r = {.a = &a, .m = &m, .nets = &nets, .nets_path = nets_path, .use = use};
    r.bytes = m.params * m.grad_bytes_per_param;
    double nb = a.bucket_mb > 0 ? ceil(r.bytes / (a.bucket_mb * 1024.0 * 1024.0)) : 1.0;
    if (nb > INT_MAX / 4) {
        st = ds_err_set(&err, DS_ERR_USAGE, "--bucket-mb %g: %.3g buckets, too many", a.bucket_mb, nb);
        goto done;
    }
    r.n_buckets = nb < 1 ? 1 : (int)nb;
    pts = DS_XCALLOC((size_t)nets.n * (size_t)a.n_gpus, sizeof *pts);
    r.pts = pts;
    for (int i = 0; i < nets.n; i++)
        for (int k = 0; k < a.n_gpus && use[i]; k++)
            ds_scale_point_eval(&m, a.gpus[k], ds_scale_allreduce_ms(&nets, i, a.gpus[k], r.bytes, r.n_buckets),
                                a.overlap, &pts[i * a.n_gpus + k]);

    char stamp[32], dir[4096], path[4200];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    if (a.out) snprintf(dir, sizeof dir, "%s", a.out);
    else default_out(m.name, stamp, dir, sizeof dir);
    st = ds_mkdir_p(dir, &err);
    if (st != DS_OK) goto done;

    print_stdout(&r);
    snprintf(path, sizeof path, "%s/projection.csv", dir);
    st = write_csv(&r, path, &err);
    if (st == DS_OK) {
        snprintf(path, sizeof path, "%s/projection.md", dir);
        st = write_md(&r, path, stamp, &err);
    }
    if (st == DS_OK) st = write_plot(&r, dir, &err);
    if (st == DS_OK)
        printf("\ndescent scale: PROJECTION written to %s/projection.csv, projection.md, plots/projection.png "
               "and .svg\n", dir);
done:
    free(pts);
    free(use);
    ds_scale_nets_free(&nets);
    return st == DS_OK ? 0 : fail(st, &err);
}
