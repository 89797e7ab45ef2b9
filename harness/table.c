/*
 * table.c: see table.h. Ownership: a ds_table owns every string in it;
 * ds_table_free releases them all.
 */
#include "table.h"

#include "../core/fileio.h"

#include <csv.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    DS_ASSERT(q != NULL);
    return q;
}

static char *xstrndup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    DS_ASSERT(d != NULL);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void ds_table_init(struct ds_table *t) { memset(t, 0, sizeof *t); }

void ds_table_free(struct ds_table *t)
{
    for (int c = 0; c < t->ncols; c++) free(t->cols[c]);
    for (size_t r = 0; r < t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++) free(t->rows[r][c]);
        free(t->rows[r]);
    }
    free(t->cols);
    free(t->rows);
    ds_table_init(t);
}

/* The fields of the record being parsed. */
struct parse_state {
    struct ds_table *t;
    char **fields;
    int n, cap;
    size_t record; /* 1-based record number, the header being 1 */
    int too_wide;  /* first record with more fields than the header, or 0 */
};

static void on_field(void *s, size_t len, void *data)
{
    struct parse_state *ps = data;
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? 2 * ps->cap : 16;
        ps->fields = xrealloc(ps->fields, (size_t)ps->cap * sizeof(char *));
    }
    ps->fields[ps->n++] = xstrndup(s ? s : "", s ? len : 0);
}

static void add_row_owned(struct ds_table *t, char **row)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 64;
        t->rows = xrealloc(t->rows, t->cap * sizeof(char **));
    }
    t->rows[t->nrows++] = row;
}

static void on_record(int c, void *data)
{
    struct parse_state *ps = data;
    struct ds_table *t = ps->t;
    (void)c;
    ps->record++;
    if (ps->record == 1) { /* the header */
        t->ncols = ps->n;
        t->cols = ps->fields;
        ps->fields = NULL, ps->n = ps->cap = 0;
        return;
    }
    if (ps->n > t->ncols && !ps->too_wide) ps->too_wide = (int)ps->record;
    char **row = malloc((size_t)(t->ncols ? t->ncols : 1) * sizeof(char *));
    DS_ASSERT(row != NULL);
    for (int i = 0; i < t->ncols; i++) row[i] = i < ps->n ? ps->fields[i] : xstrndup("", 0);
    for (int i = t->ncols; i < ps->n; i++) free(ps->fields[i]);
    ps->n = 0;
    add_row_owned(t, row);
}

ds_status ds_table_read(const char *path, struct ds_table *t, struct ds_err *err)
{
    ds_table_init(t);
    char *data = NULL;
    size_t len = 0;
    ds_status st = ds_file_read_all(path, &data, &len, err);
    if (st != DS_OK) return st;
    /* drop a last line that lacks its newline: a writer killed mid-row */
    size_t use = len;
    while (use > 0 && data[use - 1] != '\n') use--;
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL) != 0) {
        free(data);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: cannot start the CSV parser", path);
    }
    struct parse_state ps = {.t = t};
    size_t got = csv_parse(&p, data, use, on_field, on_record, &ps);
    int perr = got != use ? csv_error(&p) : 0;
    if (!perr) csv_fini(&p, on_field, on_record, &ps);
    csv_free(&p);
    for (int i = 0; i < ps.n; i++) free(ps.fields[i]);
    free(ps.fields);
    free(data);
    if (perr) {
        ds_table_free(t);
        return ds_err_set(err, DS_ERR_INPUT, "%s: not valid CSV (%s)", path, csv_strerror(perr));
    }
    if (t->ncols == 0) {
        ds_table_free(t);
        return ds_err_set(err, DS_ERR_INPUT, "%s: no header row", path);
    }
    if (ps.too_wide) {
        int header = t->ncols;
        ds_table_free(t);
        return ds_err_set(err, DS_ERR_INPUT, "%s: line %d has more fields than the header's %d",
                          path, ps.too_wide, header);
    }
    return DS_OK;
}

int ds_table_col(const struct ds_table *t, const char *name)
{
    for (int c = 0; c < t->ncols; c++)
        if (strcmp(t->cols[c], name) == 0) return c;
    return -1;
}

const char *ds_table_get(const struct ds_table *t, size_t r, const char *name)
{
    int c = ds_table_col(t, name);
    return c < 0 || r >= t->nrows ? "" : t->rows[r][c];
}

double ds_table_num(const struct ds_table *t, size_t r, const char *name)
{
    const char *s = ds_table_get(t, r, name);
    if (!*s) return NAN;
    char *end;
    double v = strtod(s, &end);
    return *end == '\0' ? v : NAN;
}

int ds_table_add_col(struct ds_table *t, const char *name)
{
    int c = ds_table_col(t, name);
    if (c >= 0) return c;
    t->cols = xrealloc(t->cols, (size_t)(t->ncols + 1) * sizeof(char *));
    t->cols[t->ncols] = xstrndup(name, strlen(name));
    for (size_t r = 0; r < t->nrows; r++) {
        t->rows[r] = xrealloc(t->rows[r], (size_t)(t->ncols + 1) * sizeof(char *));
        t->rows[r][t->ncols] = xstrndup("", 0);
    }
    return t->ncols++;
}

void ds_table_append(struct ds_table *t, const struct ds_table *src)
{
    int *map = malloc((size_t)(src->ncols ? src->ncols : 1) * sizeof(int));
    DS_ASSERT(map != NULL);
    for (int c = 0; c < src->ncols; c++) map[c] = ds_table_add_col(t, src->cols[c]);
    for (size_t r = 0; r < src->nrows; r++) {
        char **row = malloc((size_t)(t->ncols ? t->ncols : 1) * sizeof(char *));
        DS_ASSERT(row != NULL);
        for (int c = 0; c < t->ncols; c++) row[c] = NULL;
        for (int c = 0; c < src->ncols; c++)
            row[map[c]] = xstrndup(src->rows[r][c], strlen(src->rows[r][c]));
        for (int c = 0; c < t->ncols; c++)
            if (!row[c]) row[c] = xstrndup("", 0);
        add_row_owned(t, row);
    }
    free(map);
}

/* Appends s to the growing buffer, quoted as RFC 4180 asks when it holds a
 * comma, quote or line break. */
static void put_field(char **buf, size_t *len, size_t *cap, const char *s, int first)
{
    size_t n = strlen(s), need = *len + 2 * n + 4;
    if (need > *cap) {
        *cap = need > 2 * *cap ? need : 2 * *cap;
        *buf = xrealloc(*buf, *cap);
    }
    char *d = *buf + *len;
    if (!first) *d++ = ',';
    int quote = strpbrk(s, ",\"\r\n") != NULL;
    if (quote) *d++ = '"';
    for (const char *p = s; *p; p++) {
        if (*p == '"') *d++ = '"';
        *d++ = *p;
    }
    if (quote) *d++ = '"';
    *len = (size_t)(d - *buf);
}

ds_status ds_table_write(const struct ds_table *t, const char *path, struct ds_err *err)
{
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    DS_ASSERT(buf != NULL);
    for (size_t r = 0; r <= t->nrows; r++) {
        for (int c = 0; c < t->ncols; c++)
            put_field(&buf, &len, &cap, r == 0 ? t->cols[c] : t->rows[r - 1][c], c == 0);
        if (len + 2 > cap) buf = xrealloc(buf, cap = 2 * cap + 2);
        buf[len++] = '\n';
    }
    ds_status st = ds_file_write_atomic(path, buf, len, err);
    free(buf);
    return st;
}
