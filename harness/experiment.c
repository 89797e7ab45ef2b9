/*
 * experiment.c: see experiment.h. libinih does the INI syntax; a reader
 * wrapped around fgets counts lines (the library's handler is not told
 * them) and sees section headers and continuation lines, so that every
 * message can name FILE:LINE.
 *
 * Ownership: ds_exp_load allocates the groups, their value strings and the
 * points; ds_exp_free releases them.
 */
#include "experiment.h"

#include <ctype.h>
#include <math.h>
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DS_EXP_MAX_POINTS 100000

struct parse {
    struct ds_experiment *e;
    FILE *f;
    int line;               /* the line last read */
    int cont;               /* it continues the previous key's value */
    int group;              /* the group of the current section, -1: [sweep], -2: none */
    int last_group, last_axis; /* where the previous key went (for continuations) */
    int have_name, have_desc;
    int sweep_line;         /* the [sweep] header's line (0: none yet) */
    int compare_line;       /* the [compare] header's line */
    int compare_only;       /* ds_exp_load_compare: other sections are skipped */
    unsigned seen_compare;  /* bit k: compare key k given */
    int err_line;           /* first error found by us (0: none) */
    ds_status err_status;
    char err_msg[1024];
};

static void *xcalloc_(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    DS_ASSERT(p != NULL);
    return p;
}

static void perr(struct parse *ps, ds_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(struct parse *ps, ds_status st, const char *fmt, ...)
{
    if (ps->err_line) return; /* keep the first */
    if (ps->compare_only && ps->group != -3) return; /* only [compare] is read */
    ps->err_line = ps->line ? ps->line : 1;
    ps->err_status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err_msg, sizeof ps->err_msg, fmt, ap);
    va_end(ap);
}

static int add_group(struct parse *ps, const char *name)
{
    struct ds_experiment *e = ps->e;
    for (int g = 0; g < e->n_groups; g++)
        if (strcmp(e->groups[g].name, name) == 0) {
            if (e->groups[g].line)
                perr(ps, DS_ERR_USAGE, "section [run%s%s] appears twice (first at line %d)",
                     *name ? "." : "", name, e->groups[g].line);
            e->groups[g].line = ps->line;
            return g;
        }
    e->groups = realloc(e->groups, (size_t)(e->n_groups + 1) * sizeof *e->groups);
    DS_ASSERT(e->groups != NULL);
    struct ds_exp_group *g = &e->groups[e->n_groups];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    g->line = ps->line;
    return e->n_groups++;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
    return s;
}

/* A section header line: which section it opens. */
static void on_section(struct parse *ps, const char *line)
{
    char name[256];
    const char *end = strchr(line, ']');
    if (!end || (size_t)(end - line - 1) >= sizeof name) return; /* inih reports the syntax */
    memcpy(name, line + 1, (size_t)(end - line - 1));
    name[end - line - 1] = '\0';
    char *n = trim(name);
    if (strcmp(n, "sweep") == 0) {
        if (ps->sweep_line)
            perr(ps, DS_ERR_USAGE, "section [sweep] appears twice (first at line %d)",
                 ps->sweep_line);
        ps->sweep_line = ps->line;
        ps->group = -1;
        return;
    }
    if (strcmp(n, "run") == 0) {
        ps->group = add_group(ps, "");
        return;
    }
    if (strcmp(n, "compare") == 0) {
        if (ps->compare_line)
            perr(ps, DS_ERR_USAGE, "section [compare] appears twice (first at line %d)",
                 ps->compare_line);
        ps->compare_line = ps->line;
        ps->group = -3;
        return;
    }
    if (strncmp(n, "run.", 4) == 0 && n[4]) {
        const char *g = n + 4;
        for (const char *c = g; *c; c++)
            if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-') {
                perr(ps, DS_ERR_USAGE, "section [%s]: a group name is letters, digits, '_' and '-'",
                     n);
                break;
            }
        if (strlen(g) >= sizeof ps->e->groups[0].name)
            perr(ps, DS_ERR_USAGE, "section [%s]: group name longer than %zu characters", n,
                 sizeof ps->e->groups[0].name - 1);
        ps->group = add_group(ps, g);
        return;
    }
    perr(ps, DS_ERR_USAGE, "unknown section [%s] (valid: [sweep], [run], [run.NAME], [compare])", n);
    ps->group = -2;
}

/* fgets for inih, counting lines and noticing headers and continuations. */
static char *reader(char *str, int num, void *stream)
{
    struct parse *ps = stream;
    if (!fgets(str, num, ps->f)) return NULL;
    ps->line++;
    size_t len = strlen(str);
    if (len + 1 == (size_t)num && str[len - 1] != '\n') {
        /* longer than libinih's line buffer: it would read the rest as a new line */
        perr(ps, DS_ERR_USAGE, "line longer than %d characters", num - 2);
        int c;
        while ((c = fgetc(ps->f)) != EOF && c != '\n') {
        }
        str[0] = '\0';
        return str;
    }
    ps->cont = 0;
    const char *s = str;
    if (isspace((unsigned char)*s)) {
        while (*s && isspace((unsigned char)*s)) s++;
        /* inih: a line starting with whitespace after a key continues it */
        ps->cont = *s && *s != ';' && *s != '#' && *s != '[';
    }
    if (*s == '[') on_section(ps, s);
    return str;
}

/* Splits a value on commas outside double quotes into trimmed items (quotes
 * removed). Returns the count, or -1 with an error recorded. */
static int split_items(struct parse *ps, const char *key, const char *value, char ***out)
{
    char **items = NULL;
    int n = 0;
    const char *p = value;
    for (;;) {
        char buf[DS_CFG_STR];
        size_t len = 0;
        int quoted = 0, inq = 0;
        while (*p && isspace((unsigned char)*p)) p++;
        for (; *p && (inq || *p != ','); p++) {
            if (*p == '"') {
                inq = !inq, quoted = 1;
                continue;
            }
            if (len + 1 >= sizeof buf) {
                perr(ps, DS_ERR_USAGE, "key '%s': a value longer than %zu characters", key,
                     sizeof buf - 1);
                goto fail;
            }
            buf[len++] = *p;
        }
        buf[len] = '\0';
        if (inq) {
            perr(ps, DS_ERR_USAGE, "key '%s': unterminated \" in '%s'", key, value);
            goto fail;
        }
        char *item = quoted ? buf : trim(buf);
        if (!*item && !quoted && !*p && n > 0) break; /* a trailing comma: the list goes on below */
        if (!*item && !quoted) {
            perr(ps, DS_ERR_USAGE, "key '%s': %s", key,
                 n == 0 && !*p ? "empty value" : "empty item in the list");
            goto fail;
        }
        items = realloc(items, (size_t)(n + 1) * sizeof *items);
        DS_ASSERT(items != NULL);
        items[n] = strdup(item);
        DS_ASSERT(items[n] != NULL);
        n++;
        if (!*p) break;
        p++; /* the comma */
    }
    *out = items;
    return n;
fail:
    for (int i = 0; i < n; i++) free(items[i]);
    free(items);
    return -1;
}

static const char *const ds_compare_keys[] = {"tol-metric", "tol-loss", "tol-steps", "tol-speed",
                                              "gate-speed"};

static int on_compare_key(struct parse *ps, const char *name, const char *value)
{
    struct ds_exp_compare *c = &ps->e->compare;
    size_t k = 0;
    while (k < DS_ARRAY_LEN(ds_compare_keys) && strcmp(name, ds_compare_keys[k])) k++;
    if (k == DS_ARRAY_LEN(ds_compare_keys)) {
        perr(ps, DS_ERR_USAGE,
             "unknown key '%s' in [compare] (valid: tol-metric, tol-loss, tol-steps, tol-speed, "
             "gate-speed)",
             name);
        return 1;
    }
    if (ps->seen_compare & (1u << k)) {
        perr(ps, DS_ERR_USAGE, "[compare] %s given twice", name);
        return 1;
    }
    ps->seen_compare |= 1u << k;
    if (k == 4) {
        if (!strcmp(value, "on") || !strcmp(value, "true") || !strcmp(value, "1")) c->gate_speed = 1;
        else if (!strcmp(value, "off") || !strcmp(value, "false") || !strcmp(value, "0")) c->gate_speed = 0;
        else perr(ps, DS_ERR_USAGE, "[compare] gate-speed: '%s' is not on or off", value);
        return 1;
    }
    char *end;
    double x = strtod(value, &end);
    if (!*value || *end || !(x >= 0) || !isfinite(x)) {
        perr(ps, DS_ERR_USAGE, "[compare] %s: expected a number >= 0, got '%s'", name, value);
        return 1;
    }
    double *dst[] = {&c->tol_metric, &c->tol_loss, &c->tol_steps, &c->tol_speed};
    *dst[k] = x;
    return 1;
}

/* Keys a sweep sets itself. */
static const char *const ds_exp_forbidden[] = {"out", "save", "save-init"};

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    struct parse *ps = user;
    struct ds_experiment *e = ps->e;
    (void)section; /* the reader tracked it, with its line */
    if (ps->err_line) return 1; /* one message: the first problem */
    if (ps->group == -3) /* [compare] */
        return on_compare_key(ps, name, value);
    if (ps->compare_only) return 1;
    if (ps->group == -2) {
        perr(ps, DS_ERR_USAGE, "key '%s' outside a section (put it under [run])", name);
        return 1;
    }
    if (ps->group == -1) { /* [sweep] */
        if (ps->cont) {
            perr(ps, DS_ERR_USAGE, "[sweep] %s: one line only", name);
        } else if (strcmp(name, "name") == 0) {
            if (ps->have_name) perr(ps, DS_ERR_USAGE, "[sweep] name given twice");
            ps->have_name = 1;
            if (!*value) perr(ps, DS_ERR_USAGE, "[sweep] name is empty");
            for (const char *c = value; *c; c++)
                if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-' && *c != '.') {
                    perr(ps, DS_ERR_USAGE,
                         "[sweep] name '%s': letters, digits, '.', '_' and '-' only (it names "
                         "the sweep folder)",
                         value);
                    break;
                }
            if (strlen(value) >= sizeof e->name)
                perr(ps, DS_ERR_USAGE, "[sweep] name longer than %zu characters",
                     sizeof e->name - 1);
            snprintf(e->name, sizeof e->name, "%s", value);
        } else if (strcmp(name, "description") == 0) {
            if (ps->have_desc) perr(ps, DS_ERR_USAGE, "[sweep] description given twice");
            ps->have_desc = 1;
            snprintf(e->description, sizeof e->description, "%s", value);
        } else {
            perr(ps, DS_ERR_USAGE, "unknown key '%s' in [sweep] (valid: name, description)",
                 name);
        }
        return 1;
    }
    struct ds_exp_group *g = &e->groups[ps->group];
    const char *kname = strcmp(name, "seeds") == 0 ? "seed" : name;
    int key = ds_config_key_find(kname);
    if (key < 0) {
        char valid[4096];
        size_t at = 0;
        for (int k = 0; k < ds_config_key_count() && at < sizeof valid - 64; k++) {
            int skip = 0;
            for (size_t f = 0; f < DS_ARRAY_LEN(ds_exp_forbidden); f++)
                skip |= strcmp(ds_config_key_name(k), ds_exp_forbidden[f]) == 0;
            if (!skip)
                at += (size_t)snprintf(valid + at, sizeof valid - at, "%s%s", at ? ", " : "",
                                       ds_config_key_name(k));
        }
        perr(ps, DS_ERR_USAGE, "unknown key '%s' in [%s%s%s] (valid: seeds, %s)", name, "run",
             *g->name ? "." : "", g->name, valid);
        return 1;
    }
    for (size_t f = 0; f < DS_ARRAY_LEN(ds_exp_forbidden); f++)
        if (strcmp(kname, ds_exp_forbidden[f]) == 0) {
            perr(ps, DS_ERR_USAGE,
                 "key '%s' cannot be set in an experiment file: the sweep gives each run its own "
                 "folder under the sweep's",
                 name);
            return 1;
        }
    char **items = NULL;
    int n = split_items(ps, name, value, &items);
    if (n < 0) return 1;
    /* every value must parse as the flag would */
    for (int i = 0; i < n; i++) {
        struct ds_config scratch;
        struct ds_err e2 = {{0}};
        ds_config_init(&scratch);
        if (ds_config_set(&scratch, kname, items[i], &e2) != DS_OK) {
            perr(ps, DS_ERR_USAGE, "key '%s': %s", name, e2.msg);
            for (int j = 0; j < n; j++) free(items[j]);
            free(items);
            return 1;
        }
    }
    struct ds_exp_axis *ax = NULL;
    if (ps->cont && ps->last_group == ps->group && ps->last_axis >= 0 &&
        g->axes[ps->last_axis].key == key) {
        ax = &g->axes[ps->last_axis]; /* a continuation line: more values */
    } else {
        for (int a = 0; a < g->n_axes; a++)
            if (g->axes[a].key == key) {
                perr(ps, DS_ERR_USAGE, "key '%s' given twice in this section (first at line %d)",
                     name, g->axes[a].line);
                for (int j = 0; j < n; j++) free(items[j]);
                free(items);
                return 1;
            }
        if (g->n_axes == DS_EXP_MAX_AXES) {
            perr(ps, DS_ERR_USAGE, "more than %d keys in one section", DS_EXP_MAX_AXES);
            for (int j = 0; j < n; j++) free(items[j]);
            free(items);
            return 1;
        }
        ax = &g->axes[g->n_axes++];
        ax->key = key, ax->line = ps->line, ax->n = 0, ax->values = NULL;
    }
    ax->values = realloc(ax->values, (size_t)(ax->n + n) * sizeof(char *));
    DS_ASSERT(ax->values != NULL);
    for (int i = 0; i < n; i++) ax->values[ax->n++] = items[i];
    free(items);
    ps->last_group = ps->group;
    ps->last_axis = (int)(ax - g->axes);
    return 1;
}

void ds_exp_free(struct ds_experiment *e)
{
    for (int g = 0; g < e->n_groups; g++)
        for (int a = 0; a < e->groups[g].n_axes; a++) {
            for (int i = 0; i < e->groups[g].axes[a].n; i++) free(e->groups[g].axes[a].values[i]);
            free(e->groups[g].axes[a].values);
        }
    free(e->groups);
    free(e->points);
    memset(e, 0, sizeof *e);
}

/* The axes of group g's product: [run]'s not overridden, then g's own; the
 * seed axis moved last so that it varies fastest. */
static int group_axes(const struct ds_experiment *e, int g, const struct ds_exp_axis **out)
{
    int n = 0, seed = -1;
    const struct ds_exp_group *base = &e->groups[0], *own = &e->groups[g];
    if (g != 0)
        for (int a = 0; a < base->n_axes; a++) {
            int overridden = 0;
            for (int b = 0; b < own->n_axes; b++) overridden |= own->axes[b].key == base->axes[a].key;
            if (!overridden) out[n++] = &base->axes[a];
        }
    for (int a = 0; a < own->n_axes; a++) out[n++] = &own->axes[a];
    for (int a = 0; a < n; a++)
        if (strcmp(ds_config_key_name(out[a]->key), "seed") == 0) seed = a;
    if (seed >= 0) {
        const struct ds_exp_axis *s = out[seed];
        for (int a = seed; a + 1 < n; a++) out[a] = out[a + 1];
        out[n - 1] = s;
    }
    return n;
}

/* The value the file gives key k in point p, or NULL. */
static const char *given(const struct ds_exp_point *p, int k)
{
    for (int a = 0; a < p->n; a++)
        if (p->keys[a] == k) return p->values[a];
    return NULL;
}

static ds_status expand(struct ds_experiment *e, struct ds_err *err)
{
    int first = e->n_groups > 1 ? 1 : 0;
    size_t total = 0;
    for (int g = first; g < e->n_groups; g++) {
        const struct ds_exp_axis *ax[2 * DS_EXP_MAX_AXES];
        int na = group_axes(e, g, ax);
        size_t count = 1;
        for (int a = 0; a < na && count <= DS_EXP_MAX_POINTS; a++) count *= (size_t)ax[a]->n;
        total += count;
        if (total > DS_EXP_MAX_POINTS)
            return ds_err_set(err, DS_ERR_USAGE, "%s: the grid has more than %d runs", e->path,
                              DS_EXP_MAX_POINTS);
    }
    e->points = xcalloc_(total, sizeof *e->points);
    size_t at = 0;
    for (int g = first; g < e->n_groups; g++) {
        const struct ds_exp_axis *ax[2 * DS_EXP_MAX_AXES];
        int na = group_axes(e, g, ax);
        if (na > DS_EXP_MAX_AXES)
            return ds_err_set(err, DS_ERR_USAGE, "%s:%d: [run.%s] and [run] set more than %d keys",
                              e->path, e->groups[g].line, e->groups[g].name, DS_EXP_MAX_AXES);
        int idx[2 * DS_EXP_MAX_AXES] = {0};
        for (;;) {
            struct ds_exp_point *p = &e->points[at];
            p->group = g;
            p->n = na;
            for (int a = 0; a < na; a++) p->keys[a] = ax[a]->key, p->values[a] = ax[a]->values[idx[a]];
            /* resolve it as `descent run` would */
            struct ds_err e2 = {{0}};
            ds_config_init(&p->config);
            ds_status st = DS_OK;
            for (int a = 0; a < na && st == DS_OK; a++)
                st = ds_config_set(&p->config, ds_config_key_name(p->keys[a]), p->values[a], &e2);
            if (st == DS_OK) st = ds_config_resolve(&p->config, NULL, &e2);
            if (st != DS_OK) {
                char label[512];
                size_t l = 0;
                label[0] = '\0';
                for (int a = 0; a < na && l < sizeof label - 1; a++)
                    l += (size_t)snprintf(label + l, sizeof label - l, "%s%s=%s", a ? " " : "",
                                          ds_config_key_name(p->keys[a]), p->values[a]);
                /* the line of the key the message names ("--lr: ..."), else the section's */
                int line = e->groups[g].line;
                for (int a = 0; a < na; a++) {
                    const char *kn = ds_config_key_name(ax[a]->key);
                    size_t kl = strlen(kn);
                    if (strncmp(e2.msg, "--", 2) == 0 && strncmp(e2.msg + 2, kn, kl) == 0 &&
                        (e2.msg[2 + kl] == ':' || e2.msg[2 + kl] == ' '))
                        line = ax[a]->line;
                }
                /* a point this build cannot run (no MPI, no NCCL) stays "unsupported":
                 * the file is valid elsewhere */
                return ds_err_set(err, st == DS_ERR_UNSUPPORTED ? st : DS_ERR_USAGE,
                                  "%s:%d: [run%s%s] the run with %s: %s",
                                  e->path, line ? line : 1, *e->groups[g].name ? "." : "",
                                  e->groups[g].name, label, e2.msg);
            }
            ds_config_run_id(&p->config, p->run_id);
            for (size_t q = 0; q < at; q++)
                if (strcmp(e->points[q].run_id, p->run_id) == 0)
                    return ds_err_set(err, DS_ERR_USAGE,
                                      "%s: runs %zu and %zu of the grid are the same configuration "
                                      "(run_id %s): remove the overlap between [run%s%s] and "
                                      "[run%s%s]",
                                      e->path, q + 1, at + 1, p->run_id,
                                      *e->groups[e->points[q].group].name ? "." : "",
                                      e->groups[e->points[q].group].name,
                                      *e->groups[g].name ? "." : "", e->groups[g].name);
            at++;
            int a = na - 1;
            while (a >= 0 && ++idx[a] == ax[a]->n) idx[a--] = 0;
            if (a < 0) break;
        }
    }
    e->n_points = at;
    /* which of the file's keys vary across the grid (given in some runs and
     * not others, or with different values) */
    for (int k = 0; k < ds_config_key_count() && k < 128; k++) {
        const char *first_v = given(&e->points[0], k);
        for (size_t i = 1; i < e->n_points && !e->varying[k]; i++) {
            const char *v = given(&e->points[i], k);
            e->varying[k] = (v == NULL) != (first_v == NULL) || (v && strcmp(v, first_v) != 0);
        }
    }
    return DS_OK;
}

ds_status ds_exp_load(const char *path, struct ds_experiment *e, struct ds_err *err)
{
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "r");
    if (!f)
        return ds_err_set(err, DS_ERR_USAGE, "%s: cannot open the experiment file: %s", path,
                          strerror(errno));
    snprintf(e->path, sizeof e->path, "%s", path);
    e->compare = (struct ds_exp_compare){NAN, NAN, NAN, NAN, -1};
    struct parse ps = {.e = e, .f = f, .group = -2, .last_group = -1, .last_axis = -1};
    add_group(&ps, ""); /* groups[0] is [run], present or not (line 0 until its header) */
    int rc = ini_parse_stream(reader, &ps, on_key, &ps);
    int read_error = ferror(f);
    fclose(f);
    ds_status st = DS_OK;
    if (read_error) {
        st = ds_err_set(err, DS_ERR_IO, "%s: read error", path);
    } else if (rc > 0 && (!ps.err_line || rc < ps.err_line)) {
        st = ds_err_set(err, DS_ERR_USAGE,
                        "%s:%d: not an INI line (expected 'key = value', '[section]' or a ; "
                        "comment)",
                        path, rc);
    } else if (ps.err_line) {
        st = ds_err_set(err, ps.err_status, "%s:%d: %s", path, ps.err_line, ps.err_msg);
    } else if (rc < 0) {
        st = ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory while parsing", path);
    } else {
        int keys = 0;
        for (int g = 0; g < e->n_groups; g++) keys += e->groups[g].n_axes;
        if (keys == 0)
            st = ds_err_set(err, DS_ERR_USAGE,
                            "%s: empty grid: no [run] section with keys (at least 'workload = ...')",
                            path);
    }
    if (st == DS_OK && !ps.have_name) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        snprintf(e->name, sizeof e->name, "%s", base);
        char *dot = strrchr(e->name, '.');
        if (dot && dot != e->name) *dot = '\0';
    }
    if (st == DS_OK) st = expand(e, err);
    if (st != DS_OK) ds_exp_free(e);
    return st;
}

void ds_exp_point_label(const struct ds_experiment *e, size_t i, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    const struct ds_exp_point *p = &e->points[i];
    for (int k = 0; k < ds_config_key_count() && k < 128 && at + 1 < len; k++) {
        const char *v = given(p, k);
        if (!e->varying[k] || !v) continue;
        at += (size_t)snprintf(buf + at, len - at, "%s%s=%s", at ? " " : "", ds_config_key_name(k), v);
    }
    if (at >= len) buf[len - 1] = '\0';
}

const char *ds_exp_point_group(const struct ds_experiment *e, size_t i)
{
    return e->groups[e->points[i].group].name;
}

ds_status ds_exp_load_compare(const char *path, struct ds_exp_compare *c, struct ds_err *err)
{
    *c = (struct ds_exp_compare){NAN, NAN, NAN, NAN, -1};
    FILE *f = fopen(path, "r");
    if (!f)
        return ds_err_set(err, DS_ERR_USAGE, "%s: cannot open: %s", path, strerror(errno));
    struct ds_experiment e;
    memset(&e, 0, sizeof e);
    e.compare = *c;
    struct parse ps = {.e = &e, .f = f, .group = -2, .last_group = -1, .last_axis = -1,
                       .compare_only = 1};
    add_group(&ps, "");
    int rc = ini_parse_stream(reader, &ps, on_key, &ps);
    fclose(f);
    ds_status st = DS_OK;
    if (ps.err_line)
        st = ds_err_set(err, ps.err_status, "%s:%d: %s", path, ps.err_line, ps.err_msg);
    else if (rc > 0)
        st = ds_err_set(err, DS_ERR_USAGE, "%s:%d: not an INI line", path, rc);
    if (st == DS_OK) *c = e.compare;
    ds_exp_free(&e);
    return st;
}
