/*
 * table.h: CSV files read whole into rows of strings (parsed by libcsv, so
 * RFC 4180 quoting is handled by a library made for it), and tables written
 * back atomically. Used to gather a sweep's runs.csv and curves.csv, and by
 * compare, plot and report to read them.
 */
#ifndef DS_TABLE_H
#define DS_TABLE_H

#include "../core/ds.h"

#include <stddef.h>

struct ds_table {
    int ncols;
    char **cols;   /* header names */
    size_t nrows;
    char ***rows;  /* rows[r][c]; a short row is padded with "" */
    size_t cap;
};

/* Reads path. A last line without its newline (a killed writer's) is
 * dropped; a row with more fields than the header, or a file without a
 * header, is DS_ERR_INPUT naming the file and the row. A missing file is
 * DS_ERR_IO. */
ds_status ds_table_read(const char *path, struct ds_table *t, struct ds_err *err);
void ds_table_free(struct ds_table *t);

/* Column index of name, or -1. */
int ds_table_col(const struct ds_table *t, const char *name);
/* Row r's field in column name: "" where the column is absent. */
const char *ds_table_get(const struct ds_table *t, size_t r, const char *name);
/* The same as a number: NAN where absent, empty or not a number. */
double ds_table_num(const struct ds_table *t, size_t r, const char *name);

/* An empty table with no columns, to fill with ds_table_add_col/_add_row. */
void ds_table_init(struct ds_table *t);
/* Adds column name if absent; returns its index. */
int ds_table_add_col(struct ds_table *t, const char *name);
/* Appends the rows of src, mapping its columns by name (added to t as they
 * first appear, so t's header is the union in first-seen order). */
void ds_table_append(struct ds_table *t, const struct ds_table *src);
/* Writes t as CSV (fields quoted where needed), atomically. */
ds_status ds_table_write(const struct ds_table *t, const char *path, struct ds_err *err);

#endif
