/* output.c: CSV lines and meta.json (see output.h). */
#include "output.h"
#include "../core/topology.h"
#include "../core/fileio.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef DS_GIT_REV
#define DS_GIT_REV "unknown"
#endif
#ifndef DS_BUILD_CFLAGS
#define DS_BUILD_CFLAGS "unknown"
#endif

const char *ds_build_git_rev(void) { return DS_GIT_REV; }
const char *ds_build_cflags(void) { return DS_BUILD_CFLAGS; }
const char *ds_build_compiler(void) { return "gcc " __VERSION__; }

const char *const ds_curve_columns[] = {"run_id", "step", "epoch", "samples", "wall_s", "lr",
                                        "train_loss", "eval_loss", "eval_metric", "grad_norm",
                                        "samples_per_s", "suboptimality", "dist_to_opt",
                                        "val_loss", "val_metric"};
const int ds_curve_ncolumns = (int)(sizeof ds_curve_columns / sizeof ds_curve_columns[0]);

void ds_csv_begin(struct ds_csv_line *l)
{
    l->len = 0;
    l->fields = 0;
    l->buf[0] = '\0';
}

static void put(struct ds_csv_line *l, const char *s, size_t n)
{
    DS_ASSERT_MSG(l->len + n + 2 < sizeof l->buf, "CSV line longer than %zu bytes", sizeof l->buf);
    memcpy(l->buf + l->len, s, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

static void sep(struct ds_csv_line *l)
{
    if (l->fields++) put(l, ",", 1);
}

void ds_csv_str(struct ds_csv_line *l, const char *s)
{
    sep(l);
    if (!strpbrk(s, ",\"\n\r")) {
        put(l, s, strlen(s));
        return;
    }
    put(l, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"') put(l, "\"", 1);
        put(l, p, 1);
    }
    put(l, "\"", 1);
}

void ds_csv_num(struct ds_csv_line *l, double x)
{
    char b[64];
    sep(l);
    if (isnan(x)) return;
    int n = snprintf(b, sizeof b, "%.10g", x);
    put(l, b, (size_t)n);
}

void ds_csv_nonfinite(struct ds_csv_line *l, double x)
{
    if (isnan(x)) ds_csv_str(l, "nan");
    else if (isinf(x)) ds_csv_str(l, x > 0 ? "inf" : "-inf");
    else ds_csv_num(l, x);
}

void ds_csv_int(struct ds_csv_line *l, long long x)
{
    char b[32];
    sep(l);
    int n = snprintf(b, sizeof b, "%lld", x);
    put(l, b, (size_t)n);
}

void ds_csv_end(struct ds_csv_line *l) { put(l, "\n", 1); }

static void add_cpu_model(cJSON *host)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v++;
                while (*v == ' ') v++;
                v[strcspn(v, "\n")] = '\0';
                cJSON_AddStringToObject(host, "cpu_model", v);
            }
            break;
        }
    }
    fclose(f);
}

ds_status ds_meta_write(const char *path, const struct ds_config *c, int argc, char **argv,
                        const char *backend_desc, cJSON *extra, struct ds_err *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *build = cJSON_AddObjectToObject(root, "build");
    cJSON_AddStringToObject(build, "git_rev", ds_build_git_rev());
    cJSON_AddStringToObject(build, "compiler", ds_build_compiler());
    cJSON_AddStringToObject(build, "cflags", ds_build_cflags());
    cJSON *lib = cJSON_AddObjectToObject(root, "libraries");
    cJSON_AddStringToObject(lib, "blas", openblas_get_config());
    cJSON_AddStringToObject(lib, "cuda", "not built");
    cJSON_AddStringToObject(lib, "nccl", "not built");
    cJSON_AddStringToObject(lib, "mpi", "not built");
    cJSON_AddStringToObject(lib, "backend", backend_desc ? backend_desc : "");

    cJSON *host = cJSON_AddObjectToObject(root, "host");
    char hn[256] = "";
    gethostname(hn, sizeof hn - 1);
    cJSON_AddStringToObject(host, "hostname", hn);
    cJSON_AddNumberToObject(host, "cpus_online", (double)sysconf(_SC_NPROCESSORS_ONLN));
    add_cpu_model(host);
    /* the machine as hwloc sees it */
    struct ds_topology t;
    struct ds_err terr = {{0}};
    if (ds_topology_read(&t, &terr) == DS_OK) {
        cJSON *tj = cJSON_AddObjectToObject(host, "topology");
        cJSON_AddStringToObject(tj, "cpu_model", t.cpu_model);
        cJSON_AddNumberToObject(tj, "packages", t.packages);
        cJSON_AddNumberToObject(tj, "cores", t.cores);
        cJSON_AddNumberToObject(tj, "hardware_threads", t.pus);
        cJSON_AddNumberToObject(tj, "numa_nodes", t.numa);
        cJSON_AddNumberToObject(tj, "l1d_bytes", (double)t.l1d);
        cJSON_AddNumberToObject(tj, "l2_bytes", (double)t.l2);
        cJSON_AddNumberToObject(tj, "l3_bytes", (double)t.l3);
        cJSON_AddNumberToObject(tj, "l3_caches", t.n_l3);
        cJSON_AddNumberToObject(tj, "gpus", t.gpus);
        cJSON_AddStringToObject(tj, "gpu_names", t.gpu_names);
        cJSON_AddNumberToObject(tj, "nics", t.nics);
        cJSON_AddStringToObject(tj, "nic_names", t.nic_names);
        cJSON_AddStringToObject(host, "topology_source", "hwloc");
    } else {
        cJSON_AddStringToObject(host, "topology_source", "sysconf");
        cJSON_AddStringToObject(host, "topology_error", terr.msg);
    }

    cJSON *cmd = cJSON_AddArrayToObject(root, "argv");
    for (int i = 0; i < argc; i++) cJSON_AddItemToArray(cmd, cJSON_CreateString(argv[i]));

    cJSON *cfg = cJSON_AddObjectToObject(root, "config");
    char v[DS_CFG_STR + 32];
    for (int k = 0; k < ds_config_key_count(); k++) {
        ds_config_format(c, k, v, sizeof v);
        cJSON_AddStringToObject(cfg, ds_config_key_name(k), v);
    }
    if (extra)
        for (cJSON *e = extra->child; e; e = e->next)
            cJSON_AddItemToObject(root, e->string, cJSON_Duplicate(e, 1));

    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    if (!json) return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory", path);
    size_t n = strlen(json);
    char *text = malloc(n + 2);
    if (!text) {
        free(json);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(text, json, n);
    text[n] = '\n';
    free(json);
    ds_status st = ds_file_write_atomic(path, text, n + 1, err);
    free(text);
    return st;
}
