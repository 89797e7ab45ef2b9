/*
 * output.h: the files a run writes (DESIGN.md, "Output of a run"):
 * curve.csv (one row per evaluation point, each appended with one write so a
 * killed run leaves only whole rows), summary.csv and meta.json (written
 * whole, atomically).
 */
#ifndef DS_OUTPUT_H
#define DS_OUTPUT_H

#include "config.h"

/* A growing CSV line. */
struct ds_csv_line {
    char buf[16384];
    size_t len;
    int fields;
};

void ds_csv_begin(struct ds_csv_line *l);
void ds_csv_str(struct ds_csv_line *l, const char *s); /* quoted when needed */
void ds_csv_num(struct ds_csv_line *l, double x);      /* %.10g; NaN as empty */
void ds_csv_int(struct ds_csv_line *l, long long x);
void ds_csv_nonfinite(struct ds_csv_line *l, double x); /* as ds_csv_num, but nan/inf spelled out */
void ds_csv_end(struct ds_csv_line *l);                /* adds the newline */

extern const char *const ds_curve_columns[];
extern const int ds_curve_ncolumns;

/* meta.json: build, host, versions, and the resolved config. `extra` (may be
 * NULL) is a cJSON object merged in (run facts: status, times, workload). */
struct cJSON;
ds_status ds_meta_write(const char *path, const struct ds_config *c, int argc, char **argv,
                        const char *backend_desc, struct cJSON *extra, struct ds_err *err);

/* Build facts, baked in by the Makefile. */
const char *ds_build_git_rev(void);
const char *ds_build_cflags(void);
const char *ds_build_compiler(void);

#endif
