/*
 * test_cli.c: the `descent` command from the outside. Runs the binary named by
 * DESCENT_BIN (default build/descent) with posix_spawn, stdout and stderr
 * captured to files in a per-test mkdtemp() folder, and checks what a user
 * sees (DESIGN.md): exit codes exactly 0, 1 or 2 and never a signal, error
 * messages that name the flag or file and list the valid choices, bit-identical
 * curves for the same seed, safetensors and .npy round trips, meta.json, a
 * diverging run, a run killed with SIGKILL mid-way, and sweeps (resume after
 * SIGKILL and SIGINT, failed and diverged runs, bad experiment files and folders).
 *
 * The numpy check runs /usr/bin/python3 (Debian's python3-numpy); without
 * numpy it is skipped. Set DESCENT_KEEP_TMP=1 to keep the scratch folders.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "testutil.h"

#include <zlib.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define PYTHON3 "/usr/bin/python3"
#define RUN_TIMEOUT_S 60.0

/* ---------------------------------------------------------------- scratch */

static char g_dir[512]; /* this test's scratch folder */
static int g_nspawn;

static int setup_dir(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/descent-cli-XXXXXX", t && t[0] ? t : "/tmp");
    if (!mkdtemp(g_dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", g_dir, strerror(errno));
        return -1;
    }
    return 0;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static int teardown_dir(void **state)
{
    (void)state;
    const char *keep = getenv("DESCENT_KEEP_TMP");
    if (g_dir[0] && !(keep && keep[0] && strcmp(keep, "0") != 0))
        nftw(g_dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    g_dir[0] = '\0';
    return 0;
}

/* A path in the scratch folder (printf-style); a ring of buffers, so several
 * can be live at once. */
static const char *tp(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *tp(const char *fmt, ...)
{
    static char ring[128][1024];
    static int next;
    char *b = ring[next++ % 128];
    int n = snprintf(b, sizeof ring[0], "%s/", g_dir);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b + n, sizeof ring[0] - (size_t)n, fmt, ap);
    va_end(ap);
    return b;
}

static const char *descent_bin(void)
{
    const char *b = getenv("DESCENT_BIN");
    return b && b[0] ? b : "build/descent";
}

/* Whole file, NUL-terminated; NULL when it cannot be read. */
static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
    }
    fclose(f);
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot write %s: %s", path, strerror(errno));
    if (len && fwrite(data, 1, len, f) != len) fail_msg("short write to %s", path);
    fclose(f);
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---------------------------------------------------------------- running */

struct res {
    int status; /* raw wait status */
    char cmd[4096];
    char *out, *err;
};

static void res_free(struct res *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* Starts prog with argv (argv[0] included), stdin from /dev/null, stdout and
 * stderr to the files. Returns posix_spawn's error (0: started). */
static int spawn_to(const char *prog, char *const argv[], const char *out, const char *err, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int rc = posix_spawn(pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    return rc;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits for pid, at most timeout seconds (then SIGKILL and fail). */
static int wait_for(pid_t pid, double timeout, const char *what)
{
    double t0 = now_s();
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) return status;
        if (w < 0 && errno != EINTR) fail_msg("waitpid for %s: %s", what, strerror(errno));
        if (now_s() - t0 > timeout) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fail_msg("%s did not finish within %.0f s (killed)", what, timeout);
        }
        sleep_s(0.001);
    }
}

static void format_cmd(char *buf, size_t len, char *const argv[])
{
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; argv[i] && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? " " : "", argv[i]);
}

/* Runs prog argv to completion; 0, or posix_spawn's error. */
static int run_prog(struct res *r, const char *prog, char *const argv[])
{
    memset(r, 0, sizeof *r);
    format_cmd(r->cmd, sizeof r->cmd, argv);
    int k = g_nspawn++;
    const char *out = tp("stdout.%d", k), *err = tp("stderr.%d", k);
    pid_t pid;
    int rc = spawn_to(prog, argv, out, err, &pid);
    if (rc != 0) return rc;
    r->status = wait_for(pid, RUN_TIMEOUT_S, r->cmd);
    r->out = slurp(out, NULL);
    r->err = slurp(err, NULL);
    if (!r->out) r->out = strdup("");
    if (!r->err) r->err = strdup("");
    return 0;
}

/* Runs descent with base (NULL-terminated, may be NULL) then the varargs
 * (const char *, ending with NULL). */
static void run_v(struct res *r, const char *const *base, ...)
{
    char *argv[128];
    int n = 0;
    argv[n++] = (char *)descent_bin();
    for (int i = 0; base && base[i]; i++) argv[n++] = (char *)base[i];
    va_list ap;
    va_start(ap, base);
    const char *a;
    while ((a = va_arg(ap, const char *)) != NULL) {
        assert_true(n < 127);
        argv[n++] = (char *)a;
    }
    va_end(ap);
    argv[n] = NULL;
    int rc = run_prog(r, argv[0], argv);
    if (rc != 0)
        fail_msg("cannot start %s: %s (build it, or point DESCENT_BIN at it)", argv[0], strerror(rc));
}

#define RUN(r, ...) run_v((r), NULL, __VA_ARGS__, (const char *)NULL)
#define RUN_WITH(r, base, ...) run_v((r), (base), __VA_ARGS__, (const char *)NULL)

#define SHOW "\n  command: %s\n  stdout: %.1500s\n  stderr: %.1500s"
#define SHOWARGS(r) (r)->cmd, (r)->out, (r)->err

/* Exit code exactly `code`, never a signal, never an internal error. */
#define expect_exit(r, code) expect_exit_((r), (code), __FILE__, __LINE__)
static void expect_exit_(const struct res *r, int code, const char *file, int line)
{
    if (WIFSIGNALED(r->status))
        fail_msg("%s:%d: descent was killed by signal %d (%s), expected exit %d" SHOW, file, line,
                 WTERMSIG(r->status), strsignal(WTERMSIG(r->status)), code, SHOWARGS(r));
    if (!WIFEXITED(r->status))
        fail_msg("%s:%d: descent did not exit normally (wait status %#x)" SHOW, file, line, r->status, SHOWARGS(r));
    if (WEXITSTATUS(r->status) != code)
        fail_msg("%s:%d: descent exited %d, expected %d" SHOW, file, line, WEXITSTATUS(r->status), code, SHOWARGS(r));
    static const char *const crash[] = {"internal error", "Sanitizer", "runtime error:", "Segmentation", "Aborted"};
    for (size_t i = 0; i < sizeof crash / sizeof crash[0]; i++)
        if (strstr(r->err, crash[i]))
            fail_msg("%s:%d: stderr reports '%s'" SHOW, file, line, crash[i], SHOWARGS(r));
    if (code != 0 && !r->err[0])
        fail_msg("%s:%d: exit %d with nothing on stderr" SHOW, file, line, code, SHOWARGS(r));
}

/* stderr holds every one of the strings (NULL-terminated list). */
#define expect_msg(r, ...) expect_msg_((r), __FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)
static void expect_msg_(const struct res *r, const char *file, int line, ...)
{
    va_list ap;
    va_start(ap, line);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        if (!strstr(r->err, s)) {
            va_end(ap);
            fail_msg("%s:%d: the message does not mention '%s'" SHOW, file, line, s, SHOWARGS(r));
        }
    va_end(ap);
}

/* A bad-input run: exit 2, a message that names each string. */
#define expect_usage(r, ...)                                                                   \
    do {                                                                                       \
        expect_exit((r), 2);                                                                   \
        expect_msg((r), __VA_ARGS__);                                                          \
    } while (0)

/* ---------------------------------------------------------------- CSV */

struct csv {
    int ncols, nrows; /* nrows: data rows, header not counted */
    char **cell;      /* (nrows + 1) * ncols, row 0 the header */
};

static void csv_free(struct csv *c)
{
    for (int i = 0; c->cell && i < (c->nrows + 1) * c->ncols; i++) free(c->cell[i]);
    free(c->cell);
    memset(c, 0, sizeof *c);
}

/* Splits one line (without its newline) into fields, RFC 4180 quoting. */
static int split_line(const char *s, const char *end, char **fields, int max)
{
    int n = 0;
    const char *p = s;
    for (;;) {
        char *f = malloc((size_t)(end - p) + 1);
        assert_non_null(f);
        size_t o = 0;
        if (p < end && *p == '"') {
            p++;
            while (p < end) {
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        f[o++] = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                f[o++] = *p++;
            }
        }
        while (p < end && *p != ',') f[o++] = *p++;
        f[o] = '\0';
        if (n < max) fields[n] = f;
        else free(f);
        n++;
        if (p >= end) break;
        p++; /* the comma */
    }
    return n;
}

/* Loads a CSV strictly: every line ends with a newline and has as many
 * fields as the header. 0, or -1 with why. */
static int csv_load(const char *path, struct csv *c, char *why, size_t wlen)
{
    memset(c, 0, sizeof *c);
    size_t len;
    char *text = slurp(path, &len);
    if (!text) return snprintf(why, wlen, "%s: cannot read: %s", path, strerror(errno)), -1;
    if (len == 0 || text[len - 1] != '\n') {
        snprintf(why, wlen, "%s: %s", path, len ? "the last line has no newline (a half-written row)" : "empty");
        free(text);
        return -1;
    }
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    char *fields[512];
    const char *p = text;
    int row = 0;
    while (p < text + len) {
        const char *nl = memchr(p, '\n', (size_t)(text + len - p));
        int n = split_line(p, nl, fields, 512);
        if (row == 0) {
            c->ncols = n > 512 ? 512 : n;
            c->cell = calloc((size_t)lines * (size_t)c->ncols, sizeof *c->cell);
            assert_non_null(c->cell);
        }
        if (n != c->ncols) {
            for (int i = 0; i < n && i < 512; i++) free(fields[i]);
            c->nrows = row - 1 > 0 ? row - 1 : 0;
            snprintf(why, wlen, "%s: line %d has %d fields, the header %d: '%.*s'", path, row + 1, n, c->ncols,
                     (int)(nl - p > 300 ? 300 : nl - p), p);
            free(text);
            csv_free(c);
            return -1;
        }
        for (int i = 0; i < n; i++) c->cell[row * c->ncols + i] = fields[i];
        row++;
        p = nl + 1;
    }
    c->nrows = row - 1;
    free(text);
    return 0;
}

static void csv_load_or_fail(const char *path, struct csv *c)
{
    char why[1024];
    if (csv_load(path, c, why, sizeof why) != 0) fail_msg("%s", why);
}

static int csv_col(const struct csv *c, const char *name)
{
    for (int i = 0; i < c->ncols; i++)
        if (strcmp(c->cell[i], name) == 0) return i;
    return -1;
}

static int csv_col_or_fail(const struct csv *c, const char *name)
{
    int k = csv_col(c, name);
    if (k < 0) fail_msg("no column '%s' in the CSV", name);
    return k;
}

static const char *csv_at(const struct csv *c, int row, int col)
{
    assert_true(row >= 0 && row < c->nrows && col >= 0 && col < c->ncols);
    return c->cell[(row + 1) * c->ncols + col];
}

static const char *csv_get(const struct csv *c, int row, const char *name)
{
    return csv_at(c, row, csv_col_or_fail(c, name));
}

static int in_list(const char *const *list, const char *s)
{
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0) return 1;
    return 0;
}

/* Same header, same rows, every field byte-identical except the skipped columns. */
static void csv_expect_same(const char *pa, const char *pb, const char *const *skip)
{
    struct csv a, b;
    csv_load_or_fail(pa, &a);
    csv_load_or_fail(pb, &b);
    if (a.ncols != b.ncols) fail_msg("%s has %d columns, %s %d", pa, a.ncols, pb, b.ncols);
    for (int k = 0; k < a.ncols; k++)
        if (strcmp(a.cell[k], b.cell[k]) != 0)
            fail_msg("column %d is '%s' in %s but '%s' in %s", k, a.cell[k], pa, b.cell[k], pb);
    if (a.nrows != b.nrows) fail_msg("%s has %d rows, %s %d", pa, a.nrows, pb, b.nrows);
    int compared = 0;
    for (int r = 0; r < a.nrows; r++)
        for (int k = 0; k < a.ncols; k++) {
            if (in_list(skip, a.cell[k])) continue;
            const char *x = csv_at(&a, r, k), *y = csv_at(&b, r, k);
            if (strcmp(x, y) != 0)
                fail_msg("row %d column %s: '%s' in %s but '%s' in %s", r + 1, a.cell[k], x, pa, y, pb);
            compared++;
        }
    assert_true(compared > 0);
    csv_free(&a);
    csv_free(&b);
}

static const char *const curve_timing[] = {"wall_s", "samples_per_s", NULL};
static const char *const summary_timing[] = {"samples_per_s", "step_ms_median", "compute_ms", "comm_ms", "comm_total_ms",
                                             "optimizer_ms", "peak_rss_mb", "train_s", "eval_s",
                                             "time_to_target_s", "out", NULL};

static int is_number(const char *s, double *x)
{
    char *end;
    if (!s[0]) return 0;
    double v = strtod(s, &end);
    if (*end) return 0;
    if (x) *x = v;
    return 1;
}

/* ---------------------------------------------------------------- JSON, safetensors */

static cJSON *json_load_or_fail(const char *path)
{
    char *text = slurp(path, NULL);
    if (!text) fail_msg("%s: cannot read: %s", path, strerror(errno));
    cJSON *j = cJSON_Parse(text);
    if (!j) fail_msg("%s: not valid JSON near '%.60s'", path, cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() : "?");
    free(text);
    return j;
}

static const char *json_str(const cJSON *obj, const char *key, const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v)) fail_msg("%s: no string '%s'", where, key);
    return v->valuestring;
}

struct st_file {
    cJSON *header;
    unsigned char *data; /* the bytes after the header */
    size_t data_len, header_len, file_len;
};

static void st_read(const char *path, struct st_file *f)
{
    size_t len;
    char *raw = slurp(path, &len);
    if (!raw) fail_msg("%s: cannot read: %s", path, strerror(errno));
    if (len < 8) fail_msg("%s: %zu bytes, not a safetensors file", path, len);
    uint64_t h = 0;
    for (int b = 0; b < 8; b++) h |= (uint64_t)(unsigned char)raw[b] << (8 * b);
    if (h > len - 8) fail_msg("%s: header length %llu past the end (%zu bytes)", path, (unsigned long long)h, len);
    f->header = cJSON_ParseWithLength(raw + 8, (size_t)h);
    if (!cJSON_IsObject(f->header)) fail_msg("%s: the header is not a JSON object", path);
    f->header_len = (size_t)h;
    f->file_len = len;
    f->data_len = len - 8 - (size_t)h;
    f->data = malloc(f->data_len + 1);
    assert_non_null(f->data);
    memcpy(f->data, raw + 8 + h, f->data_len);
    free(raw);
}

static void st_write(const char *path, const cJSON *header, const void *data, size_t data_len)
{
    char *json = cJSON_PrintUnformatted(header);
    assert_non_null(json);
    size_t h = strlen(json), padded = (h + 7) / 8 * 8;
    unsigned char *buf = malloc(8 + padded + data_len);
    assert_non_null(buf);
    for (int b = 0; b < 8; b++) buf[b] = (unsigned char)((uint64_t)padded >> (8 * b));
    memcpy(buf + 8, json, h);
    memset(buf + 8 + h, ' ', padded - h);
    if (data_len) memcpy(buf + 8 + padded, data, data_len);
    spit(path, buf, 8 + padded + data_len);
    free(buf);
    free(json);
}

static void st_free(struct st_file *f)
{
    cJSON_Delete(f->header);
    free(f->data);
    memset(f, 0, sizeof *f);
}

/* ---------------------------------------------------------------- descent list / help */

/* Names from `descent list` under the section that starts with `section`:
 * the first word of each line (first_only) or every word. */
static int list_names(const char *section, int first_only, char names[][64], int max)
{
    struct res r;
    RUN(&r, "list");
    expect_exit(&r, 0);
    int n = 0, in = 0;
    for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] != ' ') {
            in = strncmp(line, section, strlen(section)) == 0;
            continue;
        }
        if (!in) continue;
        char *save = NULL;
        for (char *w = strtok_r(line, " ", &save); w && n < max; w = strtok_r(NULL, " ", &save)) {
            snprintf(names[n++], 64, "%s", w);
            if (first_only) break;
        }
    }
    res_free(&r);
    if (n == 0) fail_msg("`descent list` has no entries under '%s'", section);
    return n;
}

/* A bad name for --flag: exit 2, the message names the flag, the bad value
 * and every valid name that `descent list` shows in the section. */
static void check_unknown_name(const char *flag, const char *section, int first_only)
{
    char names[64][64];
    int n = list_names(section, first_only, names, 64);
    struct res r;
    RUN(&r, "run", flag, "no-such-thing", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, flag, "no-such-thing");
    for (int i = 0; i < n; i++) expect_msg(&r, names[i]);
    res_free(&r);
}

/* ---------------------------------------------------------------- tests: basics and bad names */

static void test_list_and_help(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "list");
    expect_exit(&r, 0);
    const char *sections[] = {"workloads:", "optimizers:", "schedules:", "backends"};
    for (size_t i = 0; i < 4; i++)
        if (!strstr(r.out, sections[i])) fail_msg("`descent list` lacks '%s'" SHOW, sections[i], SHOWARGS(&r));
    res_free(&r);
    RUN(&r, "help", "run");
    expect_exit(&r, 0);
    if (!strstr(r.out, "--workload") || !strstr(r.out, "--save-init"))
        fail_msg("`descent help run` does not list the run options" SHOW, SHOWARGS(&r));
    res_free(&r);
}

static void test_no_command(void **state)
{
    (void)state;
    struct res r;
    char *argv[] = {(char *)descent_bin(), NULL};
    if (run_prog(&r, argv[0], argv) != 0) fail_msg("cannot start %s", argv[0]);
    expect_exit(&r, 2);
    expect_msg(&r, "run");
    res_free(&r);
}

static void test_unknown_command(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "frobnicate");
    expect_usage(&r, "frobnicate", "run", "list", "export", "scale");
    res_free(&r);
    /* descent scale is dispatched, and a bad --gpus is named (test_scale.c has the rest) */
    RUN(&r, "scale", "--model", "configs/models/resnet50.ini", "--gpus", "8,x");
    expect_usage(&r, "--gpus", "8,x");
    res_free(&r);
}

static void test_unknown_workload(void **state)
{
    (void)state;
    check_unknown_name("--workload", "workloads:", 1);
}

static void test_unknown_optimizer(void **state)
{
    (void)state;
    check_unknown_name("--optimizer", "optimizers:", 1);
}

static void test_unknown_schedule(void **state)
{
    (void)state;
    check_unknown_name("--schedule", "schedules:", 0);
}

static void test_unknown_init_scheme(void **state)
{
    (void)state;
    check_unknown_name("--init-scheme", "init schemes:", 0);
}

static void test_unknown_backend(void **state)
{
    (void)state;
    check_unknown_name("--backend", "backends", 0);
}

/* An unknown option lists every option of `descent help run`. */
static void test_unknown_option(void **state)
{
    (void)state;
    struct res h, r;
    RUN(&h, "help", "run");
    expect_exit(&h, 0);
    RUN(&r, "run", "--no-such-option", "3", "--out", tp("out"));
    expect_usage(&r, "--no-such-option");
    int n = 0;
    for (char *line = strtok(h.out, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "  --", 4) != 0) continue;
        line[2 + strcspn(line + 2, " ")] = '\0';
        expect_msg(&r, line + 2);
        n++;
    }
    assert_true(n > 20);
    res_free(&h);
    res_free(&r);
}

/* ---------------------------------------------------------------- tests: bad values */

static void test_lr_negative(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--lr", "-1", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--lr", "-1");
    res_free(&r);
}

static void test_lr_nan(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--lr", "nan", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--lr", "nan");
    res_free(&r);
    RUN(&r, "run", "--workload", "linreg", "--lr", "inf", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--lr", "inf");
    res_free(&r);
}

static void test_lr_not_a_number(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--lr", "abc", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--lr", "abc");
    res_free(&r);
    RUN(&r, "run", "--workload", "linreg", "--lr", "0.1x", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--lr", "0.1x");
    res_free(&r);
}

static void test_lr_missing_value(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--out", tp("out"), "--workload", "linreg", "--lr");
    expect_usage(&r, "--lr");
    res_free(&r);
}

static void test_batch_zero(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--batch", "0", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--batch", "0");
    res_free(&r);
    RUN(&r, "run", "--workload", "linreg", "--batch", "-4", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--batch", "-4");
    res_free(&r);
}

static void test_batch_larger_than_data(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--n-train", "100", "--batch", "101", "--steps", "1", "--out", tp("out"));
    expect_usage(&r, "--batch", "101", "100");
    res_free(&r);
    /* the edge: a batch of exactly the training set is fine */
    RUN(&r, "run", "--workload", "linreg", "--n-train", "100", "--batch", "100", "--steps", "2", "--out", tp("ok"));
    expect_exit(&r, 0);
    res_free(&r);
}

static void test_epochs_and_steps(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--epochs", "2", "--steps", "10", "--out", tp("out"));
    expect_usage(&r, "--epochs", "--steps");
    res_free(&r);
}

/* ---------------------------------------------------------------- tests: bad --init files */

/* A valid linreg --dim D checkpoint (the initial parameters). */
static void make_checkpoint(const char *path, const char *dim)
{
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--dim", dim, "--steps", "1", "--save-init", path, "--out",
        tp("mk-%s", dim));
    expect_exit(&r, 0);
    res_free(&r);
    if (!file_exists(path)) fail_msg("--save-init %s wrote nothing", path);
}

/* `run --init path` on linreg --dim dim: exit 2, a message naming --init, the
 * file and the extra strings. */
static void expect_bad_init(const char *path, const char *dim, const char *s1, const char *s2)
{
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--dim", dim, "--steps", "1", "--init", path, "--out", tp("out"));
    expect_usage(&r, "--init", path);
    if (s1) expect_msg(&r, s1);
    if (s2) expect_msg(&r, s2);
    res_free(&r);
}

static void test_init_nonexistent(void **state)
{
    (void)state;
    expect_bad_init(tp("no-such-file.safetensors"), "5", NULL, NULL);
}

/* A file without read permission (root reads it anyway: only checked as a user). */
static void test_init_unreadable(void **state)
{
    (void)state;
    const char *p = tp("secret.safetensors");
    make_checkpoint(p, "5");
    if (geteuid() == 0) {
        print_message("# running as root: a mode-000 file is readable, only the readable case is run\n");
        struct res r;
        RUN(&r, "run", "--workload", "linreg", "--dim", "5", "--steps", "1", "--init", p, "--out", tp("out"));
        expect_exit(&r, 0);
        res_free(&r);
        return;
    }
    assert_int_equal(chmod(p, 0), 0);
    expect_bad_init(p, "5", NULL, NULL);
}

static void test_init_directory(void **state)
{
    (void)state;
    const char *d = tp("a-directory");
    assert_int_equal(mkdir(d, 0755), 0);
    expect_bad_init(d, "5", NULL, NULL);
}

static void test_init_garbage(void **state)
{
    (void)state;
    const char *p = tp("garbage.safetensors");
    spit(p, "this is not a safetensors file at all\n", 38);
    expect_bad_init(p, "5", NULL, NULL);
    /* an 8-byte length that fits, then a header that is not JSON */
    unsigned char buf[8 + 16] = {16, 0, 0, 0, 0, 0, 0, 0};
    memcpy(buf + 8, "{not json at all", 16);
    spit(p, buf, sizeof buf);
    expect_bad_init(p, "5", NULL, NULL);
    /* empty, and shorter than the length prefix */
    spit(p, "", 0);
    expect_bad_init(p, "5", NULL, NULL);
    spit(p, "\x05\x00\x00", 3);
    expect_bad_init(p, "5", NULL, NULL);
}

static void test_init_truncated(void **state)
{
    (void)state;
    const char *good = tp("good.safetensors"), *cut = tp("cut.safetensors");
    make_checkpoint(good, "5");
    size_t len;
    char *raw = slurp(good, &len);
    assert_non_null(raw);
    assert_true(len > 8 + 4);
    spit(cut, raw, len - 4); /* the last float gone */
    expect_bad_init(cut, "5", NULL, NULL);
    spit(cut, raw, 8 + 10); /* cut inside the header */
    expect_bad_init(cut, "5", NULL, NULL);
    free(raw);
}

static void test_init_wrong_shape(void **state)
{
    (void)state;
    const char *p = tp("dim5.safetensors");
    make_checkpoint(p, "5");
    expect_bad_init(p, "6", "0.weight", "shape");
}

/* Rewrites a valid checkpoint with a tensor removed / added / retyped. */
static void test_init_missing_tensor(void **state)
{
    (void)state;
    const char *good = tp("good.safetensors"), *bad = tp("missing.safetensors");
    make_checkpoint(good, "5");
    struct st_file f;
    st_read(good, &f);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(f.header, "0.bias"));
    cJSON_DeleteItemFromObjectCaseSensitive(f.header, "0.bias");
    st_write(bad, f.header, f.data, f.data_len);
    expect_bad_init(bad, "5", "0.bias", NULL);
    st_free(&f);
}

static void test_init_extra_tensor(void **state)
{
    (void)state;
    const char *good = tp("good.safetensors"), *bad = tp("extra.safetensors");
    make_checkpoint(good, "5");
    struct st_file f;
    st_read(good, &f);
    cJSON *e = cJSON_AddObjectToObject(f.header, "1.weight");
    cJSON_AddStringToObject(e, "dtype", "F32");
    cJSON *shape = cJSON_AddArrayToObject(e, "shape");
    cJSON_AddItemToArray(shape, cJSON_CreateNumber(1));
    cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)f.data_len));
    cJSON_AddItemToArray(off, cJSON_CreateNumber((double)f.data_len + 4));
    unsigned char *data = calloc(f.data_len + 4, 1);
    assert_non_null(data);
    memcpy(data, f.data, f.data_len);
    st_write(bad, f.header, data, f.data_len + 4);
    expect_bad_init(bad, "5", "1.weight", NULL);
    free(data);
    st_free(&f);
}

static void test_init_wrong_dtype(void **state)
{
    (void)state;
    const char *good = tp("good.safetensors"), *bad = tp("f64.safetensors");
    make_checkpoint(good, "5");
    struct st_file f;
    st_read(good, &f);
    cJSON *w = cJSON_GetObjectItemCaseSensitive(f.header, "0.weight");
    assert_non_null(w);
    cJSON_ReplaceItemInObjectCaseSensitive(w, "dtype", cJSON_CreateString("F64"));
    st_write(bad, f.header, f.data, f.data_len);
    expect_bad_init(bad, "5", "0.weight", "F64");
    st_free(&f);
}

/* ---------------------------------------------------------------- tests: reproducibility */

/* Two runs with the same seed: every non-timing field of curve.csv and
 * summary.csv byte-identical. Another seed: train_loss differs. */
static void check_reproducible(const char *const *args)
{
    struct res r;
    const char *seeds[3] = {"1", "1", "2"};
    const char *dirs[3] = {tp("seed1-a"), tp("seed1-b"), tp("seed2")};
    for (int i = 0; i < 3; i++) {
        RUN_WITH(&r, args, "--seed", seeds[i], "--out", dirs[i]);
        expect_exit(&r, 0);
        res_free(&r);
    }
    char a[1100], b[1100];
    snprintf(a, sizeof a, "%s/curve.csv", dirs[0]);
    snprintf(b, sizeof b, "%s/curve.csv", dirs[1]);
    csv_expect_same(a, b, curve_timing);
    snprintf(a, sizeof a, "%s/summary.csv", dirs[0]);
    snprintf(b, sizeof b, "%s/summary.csv", dirs[1]);
    csv_expect_same(a, b, summary_timing);

    struct csv c1, c2;
    snprintf(a, sizeof a, "%s/curve.csv", dirs[0]);
    snprintf(b, sizeof b, "%s/curve.csv", dirs[2]);
    csv_load_or_fail(a, &c1);
    csv_load_or_fail(b, &c2);
    assert_true(c1.nrows >= 3);
    int k1 = csv_col_or_fail(&c1, "train_loss"), k2 = csv_col_or_fail(&c2, "train_loss"), differ = 0;
    for (int i = 1; i < c1.nrows && i < c2.nrows; i++) differ += strcmp(csv_at(&c1, i, k1), csv_at(&c2, i, k2)) != 0;
    if (!differ) fail_msg("seeds 1 and 2 give the same train_loss in every row of %s and %s", a, b);
    csv_free(&c1);
    csv_free(&c2);
}

static void test_reproducible_quadratic(void **state)
{
    (void)state;
    const char *const args[] = {"run", "--workload", "quadratic", "--noise", "0.1", "--steps", "300", NULL};
    check_reproducible(args);
}

static void test_reproducible_linreg(void **state)
{
    (void)state;
    const char *const args[] = {"run", "--workload", "linreg", "--optimizer", "sgd", "--shuffle", "on",
                                "--epochs", "4", NULL};
    check_reproducible(args);
}

static void test_reproducible_logreg(void **state)
{
    (void)state;
    const char *const args[] = {"run", "--workload", "logreg", "--optimizer", "adam", "--epochs", "4", NULL};
    check_reproducible(args);
}

/* ---------------------------------------------------------------- tests: divergence */

static void test_divergence(void **state)
{
    (void)state;
    struct res r;
    const char *out = tp("div");
    RUN(&r, "run", "--workload", "linreg", "--optimizer", "sgd", "--lr", "10", "--epochs", "3", "--out", out);
    expect_exit(&r, 1);
    if (!strstr(r.err, "diverged") && !strstr(r.out, "diverged"))
        fail_msg("a diverging run does not say so" SHOW, SHOWARGS(&r));
    res_free(&r);

    struct csv s, c;
    csv_load_or_fail(tp("div/summary.csv"), &s);
    assert_int_equal(s.nrows, 1);
    if (strcmp(csv_get(&s, 0, "status"), "diverged") != 0)
        fail_msg("summary.csv status is '%s', expected diverged", csv_get(&s, 0, "status"));
    double done = 0, planned = 0;
    assert_true(is_number(csv_get(&s, 0, "steps_done"), &done));
    assert_true(is_number(csv_get(&s, 0, "steps_planned"), &planned));
    if (!(done < planned)) fail_msg("steps_done %g, of %g planned: the run did not stop early", done, planned);

    csv_load_or_fail(tp("div/curve.csv"), &c);
    if (c.nrows < 2) fail_msg("curve.csv of the diverged run has %d rows, expected the rows up to it", c.nrows);
    int ks = csv_col_or_fail(&c, "step"), kl = csv_col_or_fail(&c, "train_loss");
    double prev = -1, x = 0;
    for (int i = 0; i < c.nrows; i++) {
        double step = -2;
        if (!is_number(csv_at(&c, i, ks), &step) || !(step > prev))
            fail_msg("curve.csv row %d: step '%s' not increasing", i + 1, csv_at(&c, i, ks));
        prev = step;
        const char *tl = csv_at(&c, i, kl);
        int finite = is_number(tl, &x) && isfinite(x);
        if (i < c.nrows - 1 && !finite) fail_msg("curve.csv row %d: train_loss '%s' before the divergence", i + 1, tl);
        if (i == c.nrows - 1 && finite) fail_msg("curve.csv last row: train_loss '%s' is finite, expected nan/inf", tl);
    }
    if (prev != done + 1 && prev != done)
        fail_msg("curve.csv ends at step %g, summary.csv steps_done is %g", prev, done);

    csv_free(&c);
    /* with a curve row every 4 steps: every row up to the divergence is there */
    RUN(&r, "run", "--workload", "linreg", "--optimizer", "sgd", "--lr", "10", "--epochs", "3", "--eval-every", "4",
        "--out", tp("div4"));
    expect_exit(&r, 1);
    res_free(&r);
    csv_load_or_fail(tp("div4/curve.csv"), &c);
    ks = csv_col_or_fail(&c, "step");
    int want = (int)done / 4 + 2;
    if (c.nrows != want) fail_msg("div4/curve.csv has %d rows; %g steps done, every 4th one a row: expected %d", c.nrows, done, want);
    for (int i = 0; i + 1 < c.nrows; i++)
        if (!is_number(csv_at(&c, i, ks), &x) || x != 4 * i) fail_msg("div4/curve.csv row %d: step %s", i + 1, csv_at(&c, i, ks));

    cJSON *meta = json_load_or_fail(tp("div/meta.json"));
    if (strcmp(json_str(meta, "status", "meta.json"), "diverged") != 0)
        fail_msg("meta.json status is '%s'", json_str(meta, "status", "meta.json"));
    cJSON_Delete(meta);
    csv_free(&s);
    csv_free(&c);
}

/* ---------------------------------------------------------------- tests: checkpoints */

/* The header of a descent checkpoint: exactly the model's tensors (names and
 * shapes as in meta.json), F32, back to back, filling the file. */
static void check_checkpoint_layout(const char *path, const cJSON *tensors, size_t n_params)
{
    struct st_file f;
    st_read(path, &f);
    assert_int_equal(f.data_len, n_params * 4);
    assert_int_equal(f.header_len % 8, 0);
    int n = 0;
    for (const cJSON *e = f.header->child; e; e = e->next)
        if (strcmp(e->string, "__metadata__") != 0) n++;
    assert_int_equal(n, cJSON_GetArraySize(tensors));
    size_t covered = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tensors)
    {
        const char *name = json_str(t, "name", "meta.json tensors");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(f.header, name);
        if (!e) fail_msg("%s: no tensor '%s'", path, name);
        if (strcmp(json_str(e, "dtype", path), "F32") != 0) fail_msg("%s: '%s' is not F32", path, name);
        const cJSON *want = cJSON_GetObjectItemCaseSensitive(t, "shape");
        const cJSON *got = cJSON_GetObjectItemCaseSensitive(e, "shape");
        if (!cJSON_Compare(want, got, 1)) {
            char *w = cJSON_PrintUnformatted(want), *g = cJSON_PrintUnformatted(got);
            fail_msg("%s: '%s' has shape %s, meta.json says %s", path, name, g, w);
        }
        const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
        assert_int_equal(cJSON_GetArraySize(off), 2);
        double o0 = cJSON_GetArrayItem(off, 0)->valuedouble, o1 = cJSON_GetArrayItem(off, 1)->valuedouble;
        double numel = 1;
        const cJSON *d;
        cJSON_ArrayForEach(d, want) numel *= d->valuedouble;
        assert_true(o0 >= 0 && o1 <= (double)f.data_len);
        assert_close(o1 - o0, 4 * numel, 0);
        covered += (size_t)(o1 - o0);
    }
    assert_int_equal(covered, f.data_len);
    st_free(&f);
}

/* --save-init then --init: the same start (files byte-identical), the same
 * trajectory; --save then --init: the next run starts where the last ended. */
static void test_checkpoint_round_trips(void **state)
{
    (void)state;
    struct res r;
    const char *init = tp("init.safetensors"), *fin = tp("final.safetensors"), *init2 = tp("init2.safetensors");
    const char *const base[] = {"run", "--workload", "linreg", "--dim", "5", "--optimizer", "sgd", "--momentum", "0.9",
                                "--epochs", "2", "--seed", "3", NULL};
    RUN_WITH(&r, base, "--save-init", init, "--save", fin, "--out", tp("a"));
    expect_exit(&r, 0);
    res_free(&r);

    cJSON *meta = json_load_or_fail(tp("a/meta.json"));
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(meta, "workload");
    const cJSON *tensors = cJSON_GetObjectItemCaseSensitive(w, "tensors");
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(w, "n_params");
    if (!cJSON_IsArray(tensors) || !cJSON_IsNumber(np)) fail_msg("meta.json lacks workload.tensors / n_params");
    assert_int_equal((int)np->valuedouble, 6);
    check_checkpoint_layout(init, tensors, 6);
    check_checkpoint_layout(fin, tensors, 6);
    cJSON_Delete(meta);
    size_t l1, l2;
    char *b1 = slurp(init, &l1), *b2 = slurp(fin, &l2);
    assert_int_equal(l1, l2);
    if (memcmp(b1, b2, l1) == 0) fail_msg("--save-init and --save wrote the same parameters: training changed nothing");

    /* from the saved start: the same curve; and its own --save-init is the same file */
    RUN_WITH(&r, base, "--init", init, "--save-init", init2, "--out", tp("b"));
    expect_exit(&r, 0);
    res_free(&r);
    size_t l3;
    char *b3 = slurp(init2, &l3);
    assert_non_null(b3);
    assert_int_equal(l1, l3);
    if (memcmp(b1, b3, l1) != 0) fail_msg("--init %s then --save-init wrote different bytes", init);
    /* run_id is left out: --init is part of the run's identity */
    const char *const curve_skip[] = {"run_id", "wall_s", "samples_per_s", NULL};
    csv_expect_same(tp("a/curve.csv"), tp("b/curve.csv"), curve_skip);

    /* from the saved end: step 0 of the new run is the end of the old one */
    RUN_WITH(&r, base, "--init", fin, "--out", tp("c"));
    expect_exit(&r, 0);
    res_free(&r);
    struct csv sa, ca, cc;
    csv_load_or_fail(tp("a/summary.csv"), &sa);
    csv_load_or_fail(tp("a/curve.csv"), &ca);
    csv_load_or_fail(tp("c/curve.csv"), &cc);
    const char *pairs[][2] = {{"final_train_loss", "train_loss"},
                              {"final_eval_loss", "eval_loss"},
                              {"final_dist_to_opt", "dist_to_opt"}};
    for (int i = 0; i < 3; i++) {
        const char *end = csv_get(&sa, 0, pairs[i][0]), *start = csv_get(&cc, 0, pairs[i][1]);
        if (!end[0] || strcmp(end, start) != 0)
            fail_msg("run A ended with %s '%s', run C (--init A's --save) starts with %s '%s'", pairs[i][0], end,
                     pairs[i][1], start);
    }
    if (strcmp(csv_get(&ca, ca.nrows - 1, "eval_loss"), csv_get(&cc, 0, "eval_loss")) != 0)
        fail_msg("A's last eval_loss %s, C's first %s", csv_get(&ca, ca.nrows - 1, "eval_loss"), csv_get(&cc, 0, "eval_loss"));
    csv_free(&sa);
    csv_free(&ca);
    csv_free(&cc);
    free(b1);
    free(b2);
    free(b3);
}

/* --init-scheme zeros: --save-init holds only zeros. */
static void test_save_init_zeros(void **state)
{
    (void)state;
    struct res r;
    const char *p = tp("zeros.safetensors");
    RUN(&r, "run", "--workload", "logreg", "--dim", "4", "--init-scheme", "zeros", "--steps", "1", "--save-init", p,
        "--out", tp("z"));
    expect_exit(&r, 0);
    res_free(&r);
    struct st_file f;
    st_read(p, &f);
    assert_int_equal(f.data_len, 5 * 4);
    /* compared as floats: the initialiser writes -0.0 for some (harmless) */
    for (size_t i = 0; i < f.data_len / 4; i++) {
        float v;
        memcpy(&v, f.data + 4 * i, 4);
        if (v != 0.0f) fail_msg("%s: parameter %zu is %g, expected 0", p, i, (double)v);
    }
    st_free(&f);
}

/* ---------------------------------------------------------------- tests: meta.json */

static void test_meta_json(void **state)
{
    (void)state;
    struct res r;
    const char *out = tp("meta");
    RUN(&r, "run", "--workload", "linreg", "--optimizer", "adam", "--lr", "0.05", "--epochs", "2", "--seed", "7",
        "--out", out);
    expect_exit(&r, 0);
    res_free(&r);
    cJSON *m = json_load_or_fail(tp("meta/meta.json"));
    const cJSON *build = cJSON_GetObjectItemCaseSensitive(m, "build");
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(m, "host");
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(m, "config");
    if (!cJSON_IsObject(build) || !cJSON_IsObject(host) || !cJSON_IsObject(cfg))
        fail_msg("meta.json lacks build, host or config objects");
    const char *keys[] = {"git_rev", "compiler", "cflags"};
    for (int i = 0; i < 3; i++)
        if (!json_str(build, keys[i], "meta.json build")[0]) fail_msg("meta.json build.%s is empty", keys[i]);
    char hn[256] = "";
    gethostname(hn, sizeof hn - 1);
    if (strcmp(json_str(host, "hostname", "meta.json host"), hn) != 0)
        fail_msg("meta.json host.hostname '%s', gethostname '%s'", json_str(host, "hostname", "meta.json host"), hn);
    if (strcmp(json_str(m, "status", "meta.json"), "ok") != 0) fail_msg("meta.json status is not ok");

    /* the config: what was given, and the resolved defaults */
    if (strcmp(json_str(cfg, "workload", "config"), "linreg") || strcmp(json_str(cfg, "optimizer", "config"), "adam") ||
        strcmp(json_str(cfg, "seed", "config"), "7") || strcmp(json_str(cfg, "lr", "config"), "0.05") ||
        strcmp(json_str(cfg, "out", "config"), out))
        fail_msg("meta.json config does not hold the given workload/optimizer/seed/lr/out");
    double x;
    const char *resolved[] = {"dim", "batch", "beta1", "beta2", "eps", "n-train"};
    for (int i = 0; i < 6; i++)
        if (!is_number(json_str(cfg, resolved[i], "config"), &x) || !(x > 0))
            fail_msg("meta.json config.%s is '%s': not resolved", resolved[i], json_str(cfg, resolved[i], "config"));
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(m, "workload");
    const cJSON *spe = cJSON_GetObjectItemCaseSensitive(w, "steps_per_epoch");
    assert_true(cJSON_IsNumber(spe));
    const cJSON *planned = cJSON_GetObjectItemCaseSensitive(w, "steps_planned");
    assert_true(cJSON_IsNumber(planned));
    if (planned->valuedouble != 2 * spe->valuedouble)
        fail_msg("meta.json workload.steps_planned %g, expected 2 epochs x %g steps", planned->valuedouble, spe->valuedouble);
    /* the recorded config replays: --epochs given, --steps left unset */
    if (strcmp(json_str(cfg, "steps", "config"), "0") != 0 || strcmp(json_str(cfg, "epochs", "config"), "2") != 0)
        fail_msg("meta.json config has steps '%s', epochs '%s': expected 0 and 2", json_str(cfg, "steps", "config"), json_str(cfg, "epochs", "config"));

    /* the same config as summary.csv, key by key; the same run_id as curve.csv */
    struct csv s, c;
    csv_load_or_fail(tp("meta/summary.csv"), &s);
    csv_load_or_fail(tp("meta/curve.csv"), &c);
    int n = 0;
    for (const cJSON *e = cfg->child; e; e = e->next) {
        if (!cJSON_IsString(e)) fail_msg("meta.json config.%s is not a string", e->string);
        int k = csv_col(&s, e->string);
        if (k < 0) fail_msg("config key '%s' of meta.json is not a column of summary.csv", e->string);
        if (strcmp(csv_at(&s, 0, k), e->valuestring) != 0)
            fail_msg("config.%s is '%s' in meta.json, '%s' in summary.csv", e->string, e->valuestring, csv_at(&s, 0, k));
        n++;
    }
    assert_true(n > 20);
    const char *rid = json_str(m, "run_id", "meta.json");
    if (strcmp(rid, csv_get(&s, 0, "run_id")) || strcmp(rid, csv_get(&c, 0, "run_id")))
        fail_msg("run_id '%s' in meta.json, '%s' in summary.csv, '%s' in curve.csv", rid, csv_get(&s, 0, "run_id"),
                 csv_get(&c, 0, "run_id"));
    /* argv as given */
    const cJSON *av = cJSON_GetObjectItemCaseSensitive(m, "argv");
    if (!cJSON_IsArray(av) || cJSON_GetArraySize(av) < 12) fail_msg("meta.json argv is missing or short");
    csv_free(&s);
    csv_free(&c);
    cJSON_Delete(m);
}

/* curve.csv's column order is the contract's (DESIGN.md), extras after. */
static void test_curve_columns(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "linreg", "--steps", "5", "--out", tp("cols"));
    expect_exit(&r, 0);
    res_free(&r);
    static const char *const want[] = {"run_id", "step", "epoch", "samples", "wall_s", "lr",
                                       "train_loss", "eval_loss", "eval_metric", "grad_norm", "samples_per_s"};
    struct csv c;
    csv_load_or_fail(tp("cols/curve.csv"), &c);
    for (int i = 0; i < 11; i++)
        if (i >= c.ncols || strcmp(c.cell[i], want[i]) != 0)
            fail_msg("curve.csv column %d is '%s', the contract says '%s'", i + 1, i < c.ncols ? c.cell[i] : "", want[i]);
    csv_free(&c);
    static const char *const tail[] = {"final_train_loss", "final_eval_loss", "final_eval_metric", "best_eval_metric",
                                       "steps_to_target", "time_to_target_s", "samples_per_s", "step_ms_median",
                                       "compute_ms", "comm_ms", "optimizer_ms", "peak_rss_mb", "status"};
    csv_load_or_fail(tp("cols/summary.csv"), &c);
    int k0 = csv_col_or_fail(&c, "final_train_loss");
    for (int i = 0; i < 13; i++)
        if (k0 + i >= c.ncols || strcmp(c.cell[k0 + i], tail[i]) != 0)
            fail_msg("summary.csv column %d is '%s', the contract says '%s'", k0 + i + 1,
                     k0 + i < c.ncols ? c.cell[k0 + i] : "", tail[i]);
    if (strcmp(csv_get(&c, 0, "status"), "ok") != 0) fail_msg("status '%s'", csv_get(&c, 0, "status"));
    csv_free(&c);
}

/* ---------------------------------------------------------------- tests: export */

static const char *const export_files_linreg[] = {"train_x.npy", "train_y.npy", "eval_x.npy", "eval_y.npy",
                                                  "x_star.npy", NULL};

static void test_export_deterministic(void **state)
{
    (void)state;
    struct res r;
    const char *dirs[3] = {tp("e1"), tp("e1b"), tp("e2")}, *seeds[3] = {"1", "1", "2"};
    for (int i = 0; i < 3; i++) {
        RUN(&r, "export", "--workload", "linreg", "--seed", seeds[i], "--dim", "4", "--n-train", "50", "--n-eval", "20",
            "--out", dirs[i]);
        expect_exit(&r, 0);
        res_free(&r);
    }
    for (int i = 0; export_files_linreg[i]; i++) {
        size_t la, lb, lc;
        char *a = slurp(tp("e1/%s", export_files_linreg[i]), &la), *b = slurp(tp("e1b/%s", export_files_linreg[i]), &lb),
             *c = slurp(tp("e2/%s", export_files_linreg[i]), &lc);
        if (!a || !b || !c) fail_msg("export did not write %s", export_files_linreg[i]);
        if (memcmp(a, "\x93NUMPY", 6) != 0) fail_msg("%s does not start with the .npy magic", export_files_linreg[i]);
        if (la != lb || memcmp(a, b, la) != 0) fail_msg("%s differs between two exports with seed 1", export_files_linreg[i]);
        if (la == lc && memcmp(a, c, la) == 0) fail_msg("%s is the same for seeds 1 and 2", export_files_linreg[i]);
        free(a);
        free(b);
        free(c);
    }
    cJSON *j = json_load_or_fail(tp("e1/workload.json"));
    const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(j, "config");
    if (strcmp(json_str(cfg, "seed", "workload.json config"), "1") != 0) fail_msg("workload.json config.seed");
    if (!cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "tensors"))) fail_msg("workload.json lacks tensors");
    cJSON_Delete(j);
}

static void test_export_needs_out(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "export", "--workload", "linreg");
    expect_usage(&r, "--out");
    res_free(&r);
    RUN(&r, "export", "--workload", "nope", "--out", tp("x"));
    expect_usage(&r, "--workload", "nope", "linreg");
    res_free(&r);
}

static const char py_check[] =
    "import sys\n"
    "import numpy as np\n"
    "lin, ridge, quad, logr = sys.argv[1:5]\n"
    "def ld(d, name, shape):\n"
    "    a = np.load(d + '/' + name)\n"
    "    if name.endswith('_y.npy') and a.ndim == 2 and a.shape[1] == 1:\n"
    "        a = a[:, 0]\n"
    "    if a.shape != shape:\n"
    "        raise SystemExit('%s/%s: shape %s, expected %s' % (d, name, a.shape, shape))\n"
    "    if a.dtype.kind != 'f':\n"
    "        raise SystemExit('%s/%s: dtype %s, expected floats' % (d, name, a.dtype))\n"
    "    if not np.all(np.isfinite(a)):\n"
    "        raise SystemExit('%s/%s: not finite' % (d, name))\n"
    "    return a.astype(np.float64)\n"
    "def close(a, b, what, tol=1e-6):\n"
    "    err = np.max(np.abs(a - b)) / (1.0 + np.max(np.abs(b)))\n"
    "    if not err <= tol:\n"
    "        raise SystemExit('%s: max relative difference %.3g > %g' % (what, err, tol))\n"
    "# linreg --dim 7 --n-train 300 --n-eval 200 --l2 0: x_star is least squares (with a bias)\n"
    "X = ld(lin, 'train_x.npy', (300, 7)); y = ld(lin, 'train_y.npy', (300,))\n"
    "ld(lin, 'eval_x.npy', (200, 7)); ld(lin, 'eval_y.npy', (200,))\n"
    "xs = ld(lin, 'x_star.npy', (8,))\n"
    "A = np.hstack([X, np.ones((300, 1))])\n"
    "close(np.linalg.lstsq(A, y, rcond=None)[0], xs, 'linreg x_star vs numpy lstsq')\n"
    "# the same with --l2 0.1: ridge on mean((Aw - y)^2) + l2/2 |w|^2 (bias decayed too)\n"
    "X = ld(ridge, 'train_x.npy', (300, 7)); y = ld(ridge, 'train_y.npy', (300,))\n"
    "xs = ld(ridge, 'x_star.npy', (8,))\n"
    "A = np.hstack([X, np.ones((300, 1))])\n"
    "close(np.linalg.solve(2 / 300 * A.T @ A + 0.1 * np.eye(8), 2 / 300 * A.T @ y), xs, 'linreg --l2 0.1 x_star vs ridge')\n"
    "# quadratic --dim 9: x_star solves A x = b\n"
    "Q = ld(quad, 'A.npy', (9, 9)); b = ld(quad, 'b.npy', (9,)); xs = ld(quad, 'x_star.npy', (9,))\n"
    "close(Q, Q.T, 'quadratic A symmetric', 0)\n"
    "close(np.linalg.solve(Q, b), xs, 'quadratic x_star vs numpy solve')\n"
    "# logreg --dim 6 --n-train 250 --n-eval 100 --l2 0.01: the gradient vanishes at x_star\n"
    "X = ld(logr, 'train_x.npy', (250, 6)); y = ld(logr, 'train_y.npy', (250,))\n"
    "ld(logr, 'eval_x.npy', (100, 6)); ld(logr, 'eval_y.npy', (100,))\n"
    "xs = ld(logr, 'x_star.npy', (7,))\n"
    "if not set(np.unique(y)) <= {0.0, 1.0}:\n"
    "    raise SystemExit('logreg labels are not 0/1: %s' % np.unique(y)[:5])\n"
    "p = 1 / (1 + np.exp(-(X @ xs[:-1] + xs[-1])))\n"
    "g = np.concatenate([X.T @ (p - y), [np.sum(p - y)]]) / 250 + 0.01 * xs\n"
    "if not np.max(np.abs(g)) < 1e-6:\n"
    "    raise SystemExit('logreg: gradient %.3g at x_star' % np.max(np.abs(g)))\n"
    "print('ok')\n";

static void test_export_numpy(void **state)
{
    (void)state;
    struct res r;
    char *probe[] = {PYTHON3, "-c", "import numpy", NULL};
    if (access(PYTHON3, X_OK) != 0 || run_prog(&r, PYTHON3, probe) != 0) {
        print_message("# " PYTHON3 " not found: numpy check skipped\n");
        skip();
    }
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0) {
        print_message("# numpy is not importable by " PYTHON3 ": %s\n", r.err);
        res_free(&r);
        skip();
    }
    res_free(&r);

    const char *lin = tp("x-lin"), *ridge = tp("x-ridge"), *quad = tp("x-quad"), *logr = tp("x-log");
    RUN(&r, "export", "--workload", "linreg", "--seed", "5", "--dim", "7", "--n-train", "300", "--n-eval", "200",
        "--l2", "0", "--out", lin);
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "export", "--workload", "linreg", "--seed", "5", "--dim", "7", "--n-train", "300", "--n-eval", "200",
        "--l2", "0.1", "--out", ridge);
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "export", "--workload", "quadratic", "--seed", "5", "--dim", "9", "--out", quad);
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "export", "--workload", "logreg", "--seed", "5", "--dim", "6", "--n-train", "250", "--n-eval", "100",
        "--l2", "0.01", "--out", logr);
    expect_exit(&r, 0);
    res_free(&r);

    char *argv[] = {PYTHON3, "-c", (char *)py_check, (char *)lin, (char *)ridge, (char *)quad, (char *)logr, NULL};
    if (run_prog(&r, PYTHON3, argv) != 0) fail_msg("cannot start " PYTHON3);
    if (!WIFEXITED(r.status) || WEXITSTATUS(r.status) != 0 || !strstr(r.out, "ok"))
        fail_msg("the numpy check failed (exit %d):\n  stdout: %.1500s\n  stderr: %.1500s",
                 WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1, r.out, r.err);
    res_free(&r);
}

/* ---------------------------------------------------------------- tests: SIGKILL */

static int count_lines(const char *path)
{
    size_t len;
    char *t = slurp(path, &len);
    if (!t) return 0;
    int n = 0;
    for (size_t i = 0; i < len; i++) n += t[i] == '\n';
    free(t);
    return n;
}

/* A run killed mid-way: curve.csv holds only complete rows (every line ends
 * in a newline, has every field, steps one apart), meta.json is whole JSON,
 * no summary.csv claims a finished run. Killed at a few different moments. */
static void test_sigkill_leaves_complete_rows(void **state)
{
    (void)state;
    const double delays[] = {0.0, 0.013, 0.047, 0.101};
    for (int t = 0; t < 4; t++) {
        const char *out = tp("kill%d", t), *curve = tp("kill%d/curve.csv", t);
        char *argv[] = {(char *)descent_bin(), "run", "--workload", "linreg", "--steps", "2000000", "--eval-every", "1",
                        "--out", (char *)out, NULL};
        pid_t pid;
        int rc = spawn_to(argv[0], argv, tp("kill%d.stdout", t), tp("kill%d.stderr", t), &pid);
        if (rc != 0) fail_msg("cannot start %s: %s", argv[0], strerror(rc));
        double t0 = now_s();
        while (count_lines(curve) < 20) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid)
                fail_msg("the long run ended (wait status %#x) before it was killed", status);
            if (now_s() - t0 > 20) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                fail_msg("the long run wrote no 20 curve rows in 20 s");
            }
            sleep_s(0.002);
        }
        sleep_s(delays[t]);
        kill(pid, SIGKILL);
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
            fail_msg("the long run was not killed (wait status %#x)", status);

        struct csv c;
        csv_load_or_fail(curve, &c);
        assert_true(c.nrows >= 19);
        int ks = csv_col_or_fail(&c, "step");
        for (int i = 0; i < c.nrows; i++) {
            double step;
            if (!is_number(csv_at(&c, i, ks), &step) || step != i)
                fail_msg("%s row %d: step '%s', expected %d", curve, i + 1, csv_at(&c, i, ks), i);
            if (strlen(csv_at(&c, i, 0)) != 16) fail_msg("%s row %d: run_id '%s'", curve, i + 1, csv_at(&c, i, 0));
            for (int k = 1; k < c.ncols; k++) {
                const char *f = csv_at(&c, i, k);
                if (f[0] && !is_number(f, NULL)) fail_msg("%s row %d, %s: '%s' is not a number", curve, i + 1, c.cell[k], f);
            }
        }
        csv_free(&c);
        cJSON_Delete(json_load_or_fail(tp("kill%d/meta.json", t)));
        if (file_exists(tp("kill%d/summary.csv", t)))
            fail_msg("a killed run left a summary.csv in %s", out);
    }
}

/* ---------------------------------------------------------------- Fashion-MNIST */

#define FM_DIR "/usr/share/datasets/fashion-mnist"

static int fmnist_present(void)
{
    const char *d = getenv("DESCENT_DATA");
    char p[1100];
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", d && d[0] ? d : FM_DIR);
    return file_exists(p);
}

#define NEED_FMNIST()                                                                       \
    do {                                                                                    \
        if (!fmnist_present()) {                                                            \
            print_message("# SKIP: Fashion-MNIST not installed (Debian's dataset-fashion-mnist)\n"); \
            skip();                                                                         \
        }                                                                                   \
    } while (0)

/* An IDX file: the magic, the dims, then `bytes` zero bytes, gzip'd. */
static void write_idx_gz(const char *path, uint32_t magic, int ndim, const uint32_t *dims,
                         size_t bytes)
{
    gzFile gz = gzopen(path, "wb1");
    assert_non_null(gz);
    unsigned char h[4 + 4 * 8];
    size_t o = 0;
    for (int b = 3; b >= 0; b--) h[o++] = (unsigned char)(magic >> (8 * b));
    for (int i = 0; i < ndim; i++)
        for (int b = 3; b >= 0; b--) h[o++] = (unsigned char)(dims[i] >> (8 * b));
    assert_int_equal(gzwrite(gz, h, (unsigned)o), (int)o);
    unsigned char *zero = calloc(1, 1 << 16);
    assert_non_null(zero);
    for (size_t done = 0; done < bytes;) {
        size_t k = bytes - done < (1u << 16) ? bytes - done : (1u << 16);
        assert_int_equal(gzwrite(gz, zero, (unsigned)k), (int)k);
        done += k;
    }
    free(zero);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* A data folder holding valid test files and the given train files; the
 * run must fail with exit 2 naming `file` and `what`. */
static void expect_bad_data(const char *tag, uint32_t img_magic, const uint32_t *img_dims,
                            size_t img_bytes, uint32_t n_labels, const char *file,
                            const char *what)
{
    const char *dir = tp("data-%s", tag);
    assert_int_equal(mkdir(dir, 0755), 0);
    uint32_t ti[3] = {10000, 28, 28}, tl[1] = {10000}, trl[1] = {n_labels};
    write_idx_gz(tp("data-%s/t10k-images-idx3-ubyte.gz", tag), 0x803, 3, ti, 10000u * 784u);
    write_idx_gz(tp("data-%s/t10k-labels-idx1-ubyte.gz", tag), 0x801, 1, tl, 10000u);
    write_idx_gz(tp("data-%s/train-images-idx3-ubyte.gz", tag), img_magic, 3, img_dims, img_bytes);
    write_idx_gz(tp("data-%s/train-labels-idx1-ubyte.gz", tag), 0x801, 1, trl, n_labels);
    setenv("DESCENT_DATA", dir, 1);
    struct res r;
    RUN(&r, "run", "--workload", "fmnist-softmax", "--steps", "1", "--out", tp("out-%s", tag));
    unsetenv("DESCENT_DATA");
    expect_usage(&r, file, what);
    res_free(&r);
}

static void test_fmnist_bad_data(void **state)
{
    (void)state;
    uint32_t ok[3] = {60000, 28, 28}, narrow[3] = {60000, 27, 28};
    expect_bad_data("magic", 0x0803u | 0x12000000u, ok, 784, 60000, "train-images-idx3-ubyte.gz", "bad magic");
    expect_bad_data("trunc", 0x803, ok, 1000u * 784u, 60000, "train-images-idx3-ubyte.gz", "truncated");
    expect_bad_data("dims", 0x803, narrow, 60000u * 27u * 28u, 60000, "train-images-idx3-ubyte.gz", "[60000, 27, 28]");
    expect_bad_data("count", 0x803, ok, 60000u * 784u, 59999, "train-labels-idx1-ubyte.gz", "59999");
    /* a missing folder says how to get the data */
    setenv("DESCENT_DATA", tp("no-such-folder"), 1);
    struct res r;
    RUN(&r, "run", "--workload", "fmnist-mlp", "--steps", "1", "--out", tp("out-missing"));
    unsetenv("DESCENT_DATA");
    expect_usage(&r, "no-such-folder/train-", "dataset-fashion-mnist", "DESCENT_DATA");
    res_free(&r);
}

static void test_fmnist_bad_flags(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "run", "--workload", "fmnist-cnn", "--variant", "huge", "--steps", "1", "--out", tp("o1"));
    expect_usage(&r, "--variant", "huge", "classic, small");
    res_free(&r);
    RUN(&r, "run", "--workload", "fmnist-mlp", "--hidden", "256,x", "--steps", "1", "--out", tp("o2"));
    expect_usage(&r, "--hidden", "256,x");
    res_free(&r);
    RUN(&r, "run", "--workload", "fmnist-mlp", "--val", "60000", "--steps", "1", "--out", tp("o3"));
    expect_usage(&r, "--val", "60000");
    res_free(&r);
}

/* The parameter names and shapes of nn.Sequential's state_dict. */
static void expect_tensor(const struct st_file *f, const char *path, const char *name, const char *shape)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(f->header, name);
    if (!e) fail_msg("%s: no tensor '%s'", path, name);
    char *got = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(e, "shape"));
    if (strcmp(got, shape) != 0) fail_msg("%s: '%s' has shape %s, PyTorch's is %s", path, name, got, shape);
    free(got);
}

static void test_fmnist_runs_and_checkpoints(void **state)
{
    (void)state;
    NEED_FMNIST();
    struct res r;
    /* softmax: time-to-target, validation split, checkpoint names */
    RUN(&r, "run", "--workload", "fmnist-softmax", "--optimizer", "adam", "--steps", "40", "--eval-every", "10",
        "--val", "1000", "--target", "0.5", "--eval-limit", "2000", "--save", tp("sm.safetensors"), "--out", tp("sm"));
    expect_exit(&r, 0);
    res_free(&r);
    struct csv c;
    csv_load_or_fail(tp("sm/summary.csv"), &c);
    double x;
    if (!is_number(csv_get(&c, 0, "steps_to_target"), &x) || x <= 0 || x > 40)
        fail_msg("steps_to_target '%s' (target 0.5 in 40 Adam steps)", csv_get(&c, 0, "steps_to_target"));
    if (!is_number(csv_get(&c, 0, "final_val_metric"), &x) || !(x > 0.5))
        fail_msg("final_val_metric '%s'", csv_get(&c, 0, "final_val_metric"));
    if (!is_number(csv_get(&c, 0, "n_params"), &x) || x != 7850) fail_msg("n_params '%s'", csv_get(&c, 0, "n_params"));
    if (!is_number(csv_get(&c, 0, "peak_rss_mb"), &x) || !(x > 0)) fail_msg("peak_rss_mb '%s'", csv_get(&c, 0, "peak_rss_mb"));
    csv_free(&c);
    struct st_file f;
    st_read(tp("sm.safetensors"), &f);
    expect_tensor(&f, "sm.safetensors", "0.weight", "[10,784]");
    expect_tensor(&f, "sm.safetensors", "0.bias", "[10]");
    st_free(&f);

    /* fine-tuning from a checkpoint continues from it: a lower starting loss */
    RUN(&r, "run", "--workload", "fmnist-softmax", "--optimizer", "adam", "--steps", "5", "--eval-limit", "2000",
        "--init", tp("sm.safetensors"), "--out", tp("ft"));
    expect_exit(&r, 0);
    res_free(&r);
    struct csv a, b;
    csv_load_or_fail(tp("sm/curve.csv"), &a);
    csv_load_or_fail(tp("ft/curve.csv"), &b);
    double l_scratch = NAN, l_ft = NAN;
    assert_true(is_number(csv_get(&a, 0, "eval_loss"), &l_scratch));
    assert_true(is_number(csv_get(&b, 0, "eval_loss"), &l_ft));
    if (!(l_ft < 0.8 * l_scratch))
        fail_msg("a run from --init starts at eval loss %g, a fresh one at %g", l_ft, l_scratch);
    csv_free(&a);
    csv_free(&b);
    /* the softmax checkpoint does not fit the MLP: named tensors, exit 2 */
    RUN(&r, "run", "--workload", "fmnist-mlp", "--steps", "1", "--init", tp("sm.safetensors"), "--out", tp("bad"));
    expect_usage(&r, "--init", "sm.safetensors");
    res_free(&r);

    /* the MLP with --hidden and dropout, the two CNNs: PyTorch's names and shapes */
    RUN(&r, "run", "--workload", "fmnist-mlp", "--hidden", "64,32", "--dropout", "0.2", "--steps", "2",
        "--eval-limit", "256", "--save-init", tp("mlp.safetensors"), "--out", tp("mlp"));
    expect_exit(&r, 0);
    res_free(&r);
    st_read(tp("mlp.safetensors"), &f);
    expect_tensor(&f, "mlp.safetensors", "0.weight", "[64,784]");
    expect_tensor(&f, "mlp.safetensors", "3.weight", "[32,64]");
    expect_tensor(&f, "mlp.safetensors", "6.weight", "[10,32]");
    expect_tensor(&f, "mlp.safetensors", "6.bias", "[10]");
    st_free(&f);
    RUN(&r, "run", "--workload", "fmnist-cnn", "--variant", "small", "--batch", "16", "--steps", "2",
        "--eval-limit", "64", "--save", tp("small.safetensors"), "--out", tp("small"));
    expect_exit(&r, 0);
    res_free(&r);
    st_read(tp("small.safetensors"), &f);
    expect_tensor(&f, "small.safetensors", "0.weight", "[32,1,5,5]");
    expect_tensor(&f, "small.safetensors", "3.weight", "[64,32,5,5]");
    expect_tensor(&f, "small.safetensors", "7.weight", "[10,1024]");
    assert_int_equal(f.data_len, 62346 * 4);
    st_free(&f);
    RUN(&r, "run", "--workload", "fmnist-cnn", "--batch", "4", "--steps", "1", "--eval-limit", "8",
        "--save", tp("classic.safetensors"), "--out", tp("classic"));
    expect_exit(&r, 0);
    res_free(&r);
    st_read(tp("classic.safetensors"), &f);
    expect_tensor(&f, "classic.safetensors", "0.weight", "[32,1,5,5]");
    expect_tensor(&f, "classic.safetensors", "3.weight", "[64,32,5,5]");
    expect_tensor(&f, "classic.safetensors", "7.weight", "[1024,3136]");
    expect_tensor(&f, "classic.safetensors", "10.weight", "[10,1024]");
    assert_int_equal(f.data_len, 3274634 * 4);
    st_free(&f);
}

/* Same seed, same numbers, dropout and shuffling included; and the thread
 * count does not change them (the conv's chunking and every reduction are
 * fixed). */
static void test_fmnist_reproducible(void **state)
{
    (void)state;
    NEED_FMNIST();
    static const char *const mlp[] = {"run", "--workload", "fmnist-mlp", "--hidden", "32", "--dropout", "0.3",
                                      "--optimizer", "adam", "--steps", "30", "--eval-every", "10",
                                      "--eval-limit", "500", "--normalize", NULL};
    check_reproducible(mlp);
    struct res r;
    const char *threads[2] = {"1", "2"};
    for (int i = 0; i < 2; i++) {
        RUN(&r, "run", "--workload", "fmnist-cnn", "--variant", "small", "--batch", "24", "--steps", "3",
            "--eval-every", "1", "--eval-limit", "48", "--threads", threads[i], "--out", tp("cnn-t%s", threads[i]));
        expect_exit(&r, 0);
        res_free(&r);
    }
    csv_expect_same(tp("cnn-t1/curve.csv"), tp("cnn-t2/curve.csv"), curve_timing);
}


/* ---------------------------------------------------------------- sweeps */

static const char *write_ini(const char *name, const char *text)
{
    const char *p = tp("%s", name);
    spit(p, text, strlen(text));
    return p;
}

/* Runs of a sweep folder that have their summary.csv. */
static int sweep_finished(const char *dir)
{
    char runs[1100];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    DIR *d = opendir(runs);
    if (!d) return 0;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') {
            char s[2400];
            snprintf(s, sizeof s, "%s/%s/summary.csv", runs, de->d_name);
            n += file_exists(s);
        }
    closedir(d);
    return n;
}

/* Waits until a spawned sweep has finished at least n runs (or exited). */
static void wait_finished(pid_t pid, const char *dir, int n)
{
    double t0 = now_s();
    while (sweep_finished(dir) < n) {
        if (waitpid(pid, NULL, WNOHANG) == pid) fail_msg("the sweep into %s ended early", dir);
        if (now_s() - t0 > RUN_TIMEOUT_S) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, 0);
            fail_msg("the sweep into %s finished no run within %.0f s", dir, RUN_TIMEOUT_S);
        }
        sleep_s(0.01);
    }
}

/* No process is left whose command line mentions dir (a sweep's runs). */
static void expect_no_process_for(const char *dir)
{
    for (int tries = 0; tries < 200; tries++) {
        int found = 0;
        DIR *d = opendir("/proc");
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
            char path[300], buf[4096];
            snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
            FILE *f = fopen(path, "rb");
            if (!f) continue;
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            for (size_t i = 0; i < n; i++)
                if (buf[i] == '\0') buf[i] = ' ';
            buf[n] = '\0';
            if (strstr(buf, dir) && strstr(buf, " run ")) found = 1;
        }
        if (d) closedir(d);
        if (!found) return;
        sleep_s(0.05);
    }
    fail_msg("runs of the sweep in %s are still running after it was killed", dir);
}

/* A complete sweep folder: runs.csv has the plan's runs exactly once each,
 * in plan order, with status `status` (NULL: any); curves.csv parses and
 * holds each run's curve rows exactly once. */
static void expect_sweep_complete(const char *dir, int n, const char *status)
{
    struct csv plan, runs, curves;
    char p[1100];
    snprintf(p, sizeof p, "%s/plan.csv", dir);
    csv_load_or_fail(p, &plan);
    snprintf(p, sizeof p, "%s/runs.csv", dir);
    csv_load_or_fail(p, &runs);
    snprintf(p, sizeof p, "%s/curves.csv", dir);
    csv_load_or_fail(p, &curves);
    if (plan.nrows != n || runs.nrows != n)
        fail_msg("%s: plan.csv %d runs, runs.csv %d rows, expected %d", dir, plan.nrows, runs.nrows, n);
    int total = 0;
    for (int i = 0; i < n; i++) {
        const char *id = csv_get(&plan, i, "run_id");
        char idx[32];
        snprintf(idx, sizeof idx, "%d", i + 1);
        if (strcmp(csv_get(&runs, i, "run_id"), id) || strcmp(csv_get(&runs, i, "index"), idx))
            fail_msg("%s: runs.csv row %d is run %s %s, plan.csv has %s %s", dir, i + 1,
                     csv_get(&runs, i, "index"), csv_get(&runs, i, "run_id"), idx, id);
        if (status && strcmp(csv_get(&runs, i, "status"), status))
            fail_msg("%s: run %d status %s, expected %s", dir, i + 1, csv_get(&runs, i, "status"), status);
        struct csv own;
        snprintf(p, sizeof p, "%s/runs/%03d-%s/curve.csv", dir, i + 1, id);
        csv_load_or_fail(p, &own);
        int in_all = 0;
        for (int r = 0; r < curves.nrows; r++) in_all += strcmp(csv_get(&curves, r, "run_id"), id) == 0;
        if (in_all != own.nrows)
            fail_msg("%s: curves.csv holds %d rows of run %d, its curve.csv %d", dir, in_all, i + 1, own.nrows);
        total += own.nrows;
        csv_free(&own);
    }
    if (total != curves.nrows) fail_msg("%s: curves.csv has %d rows, the runs' curves %d", dir, curves.nrows, total);
    csv_free(&plan), csv_free(&runs), csv_free(&curves);
}

/* Six Fashion-MNIST MLP runs of a few hundred steps: long enough to be caught mid-way. */
static const char *const sweep_mlp_ini =
    "[sweep]\nname = mlp6\n[run]\nworkload = fmnist-mlp\noptimizer = sgd\nlr = 0.01, 0.03, 0.1\n"
    "steps = 200\neval-limit = 500\nseeds = 1, 2\n";

static void test_sweep_resume_after_kill(void **state)
{
    (void)state;
    const char *ini = write_ini("mlp6.ini", sweep_mlp_ini), *dir = tp("sw");
    char *argv[] = {(char *)descent_bin(), "sweep", (char *)ini, "-j", "2", "--out", (char *)dir, NULL};
    pid_t pid;
    assert_int_equal(spawn_to(argv[0], argv, tp("sw.out"), tp("sw.err"), &pid), 0);
    wait_finished(pid, dir, 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    expect_no_process_for(dir);
    int before = sweep_finished(dir);
    if (before >= 6) fail_msg("all runs finished before the kill: the test did not interrupt the sweep");
    /* what the kill left parses, and holds only finished runs */
    struct csv runs;
    csv_load_or_fail(tp("sw/runs.csv"), &runs);
    assert_true(runs.nrows <= before);
    csv_free(&runs);
    /* the finished runs' summaries, which --resume must not redo */
    char *kept[6] = {0};
    struct csv plan;
    csv_load_or_fail(tp("sw/plan.csv"), &plan);
    for (int i = 0; i < 6; i++) kept[i] = slurp(tp("sw/runs/%03d-%s/summary.csv", i + 1, csv_get(&plan, i, "run_id")), NULL);
    struct res r;
    RUN(&r, "sweep", ini, "--resume", "--out", dir);
    expect_exit(&r, 0);
    expect_msg(&r, "6 runs", "6 ok");
    res_free(&r);
    expect_sweep_complete(dir, 6, "ok");
    for (int i = 0; i < 6; i++) {
        if (!kept[i]) continue;
        char *now = slurp(tp("sw/runs/%03d-%s/summary.csv", i + 1, csv_get(&plan, i, "run_id")), NULL);
        if (!now || strcmp(now, kept[i])) fail_msg("run %d finished before the kill was run again", i + 1);
        free(now), free(kept[i]);
    }
    csv_free(&plan);
}

static void test_sweep_interrupt(void **state)
{
    (void)state;
    const char *ini = write_ini("mlp6.ini", sweep_mlp_ini), *dir = tp("sw");
    char *argv[] = {(char *)descent_bin(), "sweep", (char *)ini, "--out", (char *)dir, NULL};
    pid_t pid;
    assert_int_equal(spawn_to(argv[0], argv, tp("sw.out"), tp("sw.err"), &pid), 0);
    wait_finished(pid, dir, 1);
    kill(pid, SIGINT);
    struct res r = {.status = wait_for(pid, RUN_TIMEOUT_S, "the interrupted sweep")};
    snprintf(r.cmd, sizeof r.cmd, "descent sweep %s --out %s (then SIGINT)", ini, dir);
    r.out = slurp(tp("sw.out"), NULL), r.err = slurp(tp("sw.err"), NULL);
    expect_exit(&r, 1);
    expect_msg(&r, "interrupted", "--resume --out");
    res_free(&r);
    expect_no_process_for(dir);
    RUN(&r, "sweep", ini, "--resume", "--out", dir);
    expect_exit(&r, 0);
    res_free(&r);
    expect_sweep_complete(dir, 6, "ok");
}

/* A diverging run and a failing run are recorded; the others run; exit 1. */
static void test_sweep_failures(void **state)
{
    (void)state;
    char text[1024];
    snprintf(text, sizeof text,
             "[run]\nsteps = 50\noptimizer = sgd\n[run.ok]\nworkload = logreg\nlr = 0.1\n"
             "[run.div]\nworkload = linreg\nlr = 10\n[run.bad]\nworkload = logreg\ninit = %s\n",
             tp("no-such.safetensors"));
    const char *ini = write_ini("fail.ini", text);
    struct res r;
    RUN(&r, "sweep", ini, "--out", tp("sw"));
    expect_exit(&r, 1);
    expect_msg(&r, "1 ok, 1 diverged, 1 failed");
    res_free(&r);
    struct csv runs;
    csv_load_or_fail(tp("sw/runs.csv"), &runs);
    assert_int_equal(runs.nrows, 3);
    assert_string_equal(csv_get(&runs, 0, "status"), "ok");
    assert_string_equal(csv_get(&runs, 1, "status"), "diverged");
    assert_string_equal(csv_get(&runs, 2, "status"), "failed");
    assert_string_equal(csv_get(&runs, 2, "group"), "bad");
    if (!strstr(csv_get(&runs, 2, "error"), "no-such.safetensors"))
        fail_msg("the failed run's error column does not name the file: '%s'", csv_get(&runs, 2, "error"));
    csv_free(&runs);
}

static void test_sweep_bad_input(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "sweep", tp("missing.ini"));
    expect_usage(&r, "missing.ini", "cannot open");
    res_free(&r);
    RUN(&r, "sweep", write_ini("empty.ini", "[sweep]\nname = e\n"));
    expect_usage(&r, "empty.ini", "empty grid");
    res_free(&r);
    RUN(&r, "sweep", write_ini("syntax.ini", "[run]\nworkload = logreg\nlr 0.1\n"));
    expect_usage(&r, "syntax.ini:3:");
    res_free(&r);
    RUN(&r, "sweep");
    expect_usage(&r, "no experiment file");
    res_free(&r);
    const char *ok = write_ini("ok.ini", "[run]\nworkload = logreg\nsteps = 20\nlr = 0.1, 0.2\n");
    RUN(&r, "sweep", ok, "-j", "0");
    expect_usage(&r, "-j");
    res_free(&r);
    RUN(&r, "sweep", ok, "--bogus");
    expect_usage(&r, "--bogus", "valid:");
    res_free(&r);
    /* the grid, listed */
    RUN(&r, "sweep", ok, "--list");
    expect_exit(&r, 0);
    int lines = 0;
    for (const char *c = r.out; *c; c++) lines += *c == '\n';
    assert_int_equal(lines, 3);
    res_free(&r);
    /* an output folder that cannot be made: under a regular file */
    spit(tp("afile"), "x", 1);
    RUN(&r, "sweep", ok, "--out", tp("afile/sweep"));
    expect_usage(&r, "afile/sweep");
    res_free(&r);
    /* a folder already holding files: refused, its files untouched */
    mkdir(tp("full"), 0755);
    spit(tp("full/keep.txt"), "mine", 4);
    RUN(&r, "sweep", ok, "--out", tp("full"));
    expect_usage(&r, "already holds files", "--resume");
    res_free(&r);
    char *kept = slurp(tp("full/keep.txt"), NULL);
    assert_string_equal(kept, "mine");
    free(kept);
    assert_false(file_exists(tp("full/plan.csv")));
    /* --resume of a folder that is not a sweep, and of another sweep's */
    RUN(&r, "sweep", ok, "--resume", "--out", tp("full"));
    expect_usage(&r, "not a sweep folder");
    res_free(&r);
    RUN(&r, "sweep", ok, "--out", tp("done"));
    expect_exit(&r, 0);
    res_free(&r);
    char *runs = slurp(tp("done/runs.csv"), NULL), *plan = slurp(tp("done/plan.csv"), NULL);
    const char *other = write_ini("other.ini", "[run]\nworkload = logreg\nsteps = 20\nlr = 0.1, 0.3\n");
    RUN(&r, "sweep", other, "--resume", "--out", tp("done"));
    expect_usage(&r, "another sweep", "nothing was changed");
    res_free(&r);
    char *runs2 = slurp(tp("done/runs.csv"), NULL), *plan2 = slurp(tp("done/plan.csv"), NULL);
    assert_string_equal(runs2, runs);
    assert_string_equal(plan2, plan);
    free(runs), free(plan), free(runs2), free(plan2);
    /* the same file resumes a finished sweep as a no-op */
    RUN(&r, "sweep", ok, "--resume", "--out", tp("done"));
    expect_exit(&r, 0);
    expect_msg(&r, "0 to do");
    res_free(&r);
    expect_sweep_complete(tp("done"), 2, "ok");
}


/* ---------------------------------------------------------------- compare */

/* Writes c back as CSV, quoting fields that need it. */
static void csv_save(const char *path, const struct csv *c)
{
    FILE *f = fopen(path, "w");
    if (!f) fail_msg("cannot write %s", path);
    for (int r = 0; r <= c->nrows; r++) {
        for (int k = 0; k < c->ncols; k++) {
            const char *v = c->cell[r * c->ncols + k];
            if (k) fputc(',', f);
            if (strpbrk(v, ",\"\n")) {
                fputc('"', f);
                for (const char *p = v; *p; p++) {
                    if (*p == '"') fputc('"', f);
                    fputc(*p, f);
                }
                fputc('"', f);
            } else {
                fputs(v, f);
            }
        }
        fputc('\n', f);
    }
    fclose(f);
}

static void csv_set(struct csv *c, int row, const char *col, const char *value)
{
    int k = csv_col_or_fail(c, col);
    free(c->cell[(row + 1) * c->ncols + k]);
    c->cell[(row + 1) * c->ncols + k] = strdup(value);
}

/* NEW = BASE with one cell of one run changed (value NULL: the run removed). */
static const char *variant(const char *name, int row, const char *col, const char *value)
{
    struct csv c;
    csv_load_or_fail(tp("base/runs.csv"), &c);
    if (value) {
        csv_set(&c, row, col, value);
    } else { /* drop the row: shift the rows after it up */
        for (int r = row + 1; r < c.nrows; r++)
            for (int k = 0; k < c.ncols; k++) {
                free(c.cell[r * c.ncols + k]);
                c.cell[r * c.ncols + k] = c.cell[(r + 1) * c.ncols + k];
                c.cell[(r + 1) * c.ncols + k] = NULL;
            }
        for (int k = 0; k < c.ncols; k++) free(c.cell[c.nrows * c.ncols + k]), c.cell[c.nrows * c.ncols + k] = NULL;
        c.nrows--;
    }
    const char *path = tp("%s.csv", name);
    csv_save(path, &c);
    csv_free(&c);
    return path;
}

static void test_compare_gate(void **state)
{
    (void)state;
    const char *ini = write_ini("cmp.ini", "[run]\nworkload = logreg, linreg\nsteps = 100\noptimizer = sgd\nlr = 0.05\n");
    struct res r;
    RUN(&r, "sweep", ini, "--quiet", "--out", tp("base"));
    expect_exit(&r, 0);
    res_free(&r);
    /* unchanged: passes */
    RUN(&r, "compare", tp("base"), tp("base/runs.csv"));
    expect_exit(&r, 0);
    if (!strstr(r.out, "2 matched") || !strstr(r.out, "result: 0 regressions")) fail_msg("unexpected report:%s", r.out);
    res_free(&r);
    struct csv c;
    csv_load_or_fail(tp("base/runs.csv"), &c);
    assert_string_equal(csv_get(&c, 0, "metric"), "accuracy");
    double acc = atof(csv_get(&c, 0, "final_eval_metric")), loss = atof(csv_get(&c, 0, "final_train_loss"));
    double mse = atof(csv_get(&c, 1, "final_eval_metric"));
    csv_free(&c);
    char v[64];
    /* accuracy down 0.02: a regression, exit 1, named */
    snprintf(v, sizeof v, "%.6f", acc - 0.02);
    RUN(&r, "compare", tp("base"), variant("acc", 0, "final_eval_metric", v));
    expect_exit(&r, 1);
    if (!strstr(r.out, "final_eval_metric") || !strstr(r.out, "REGRESSION") || !strstr(r.out, "FAIL"))
        fail_msg("a worse accuracy was not reported:%s", r.out);
    res_free(&r);
    /* within the tolerance (0.005): passes; --tol-metric 0.0001 makes it fail */
    snprintf(v, sizeof v, "%.6f", acc - 0.002);
    const char *small = variant("acc-small", 0, "final_eval_metric", v);
    RUN(&r, "compare", tp("base"), small);
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "compare", tp("base"), small, "--tol-metric", "0.0001");
    expect_exit(&r, 1);
    res_free(&r);
    /* a suite's own tolerances: [compare] of the sweep folder's experiment.ini */
    mkdir(tp("loose"), 0755);
    char *rows = slurp(tp("acc.csv"), NULL);
    spit(tp("loose/runs.csv"), rows, strlen(rows));
    free(rows);
    const char *loose_ini = "[run]\nworkload = logreg\n[compare]\ntol-metric = 0.05\n";
    spit(tp("loose/experiment.ini"), loose_ini, strlen(loose_ini));
    RUN(&r, "compare", tp("base"), tp("loose"));
    expect_exit(&r, 0);
    if (!strstr(r.out, "metric 0.05") || !strstr(r.out, "experiment.ini")) fail_msg("the suite's tolerance was not used:%s", r.out);
    res_free(&r);
    RUN(&r, "compare", tp("base"), tp("loose"), "--tol-metric", "0.005"); /* the flag wins */
    expect_exit(&r, 1);
    res_free(&r);
    /* higher accuracy: an improvement, passes */
    snprintf(v, sizeof v, "%.6f", acc + 0.01 > 1 ? 1.0 : acc + 0.01);
    RUN(&r, "compare", tp("base"), variant("acc-up", 0, "final_eval_metric", v));
    expect_exit(&r, 0);
    res_free(&r);
    /* train loss up 10% (tolerance 5%): a regression */
    snprintf(v, sizeof v, "%.8g", loss * 1.10);
    RUN(&r, "compare", tp("base"), variant("loss", 0, "final_train_loss", v));
    expect_exit(&r, 1);
    if (!strstr(r.out, "final_train_loss")) fail_msg("a worse loss was not reported:%s", r.out);
    res_free(&r);
    /* linreg's metric is mse: lower is better, so higher is the regression */
    snprintf(v, sizeof v, "%.8g", mse * 1.5);
    RUN(&r, "compare", tp("base"), variant("mse", 1, "final_eval_metric", v));
    expect_exit(&r, 1);
    res_free(&r);
    /* a run that diverged */
    RUN(&r, "compare", tp("base"), variant("div", 1, "status", "diverged"));
    expect_exit(&r, 1);
    if (!strstr(r.out, "status")) fail_msg("the status change was not reported:%s", r.out);
    res_free(&r);
    /* diverged in BASE, failed (a crash) in NEW: still a regression */
    const char *div_base = variant("div-base", 1, "status", "diverged");
    RUN(&r, "compare", div_base, variant("fail-new", 1, "status", "failed"));
    expect_exit(&r, 1);
    res_free(&r);
    RUN(&r, "compare", variant("fail-base", 1, "status", "failed"), div_base); /* and back: better */
    expect_exit(&r, 0);
    res_free(&r);
    /* a missing run: reported, and fails unless allowed */
    const char *gone = variant("gone", 1, "status", NULL);
    RUN(&r, "compare", tp("base"), gone);
    expect_exit(&r, 1);
    if (!strstr(r.out, "MISSING")) fail_msg("the missing run was not reported:%s", r.out);
    res_free(&r);
    RUN(&r, "compare", tp("base"), gone, "--allow-missing");
    expect_exit(&r, 0);
    res_free(&r);
    /* half the speed: reported, gating only with --gate-speed */
    const char *slow = variant("slow", 0, "samples_per_s", "1");
    RUN(&r, "compare", tp("base"), slow);
    expect_exit(&r, 0);
    if (!strstr(r.out, "slower (not gated)")) fail_msg("the slowdown was not reported:%s", r.out);
    res_free(&r);
    RUN(&r, "compare", tp("base"), slow, "--gate-speed");
    expect_exit(&r, 1);
    res_free(&r);
    /* bad input: exit 2, named */
    RUN(&r, "compare", tp("base"), tp("nothing-here"));
    expect_usage(&r, "nothing-here");
    res_free(&r);
    spit(tp("norunid.csv"), "a,b\n1,2\n", 8);
    RUN(&r, "compare", tp("norunid.csv"), tp("base"));
    expect_usage(&r, "norunid.csv", "run_id");
    res_free(&r);
    RUN(&r, "compare", tp("base"), tp("base"), "--tol-loss", "-1");
    expect_usage(&r, "--tol-loss");
    res_free(&r);
    RUN(&r, "compare", tp("base"));
    expect_usage(&r, "BASE and NEW");
    res_free(&r);
}


/* ---------------------------------------------------------------- plot, report */

/* A valid PNG (its 8-byte signature and an IHDR) of reasonable size. */
static void expect_png(const char *path)
{
    size_t len;
    char *d = slurp(path, &len);
    if (!d) fail_msg("%s: missing", path);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len < 1000 || memcmp(d, sig, 8) != 0 || memcmp(d + 12, "IHDR", 4) != 0)
        fail_msg("%s: not a PNG image (%zu bytes)", path, len);
    free(d);
}

/* An SVG document holding each of the strings (the legend's series). */
static void expect_svg_(const char *path, ...)
{
    char *d = slurp(path, NULL);
    if (!d) fail_msg("%s: missing", path);
    if (!strstr(d, "<svg") || !strstr(d, "</svg>")) fail_msg("%s: not an SVG document", path);
    va_list ap;
    va_start(ap, path);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        if (!strstr(d, s)) {
            va_end(ap);
            free(d);
            fail_msg("%s: no series '%s'", path, s);
        }
    va_end(ap);
    free(d);
}
#define expect_svg(...) expect_svg_(__VA_ARGS__, (const char *)NULL)

static void test_plot_and_report(void **state)
{
    (void)state;
    const char *ini = write_ini("small.ini",
                                "[sweep]\nname = small\ndescription = plot test\n[run]\nseeds = 1, 2\n"
                                "[run.q-sgd]\nworkload = quadratic\nsteps = 100\ntarget = 100\noptimizer = sgd\n"
                                "momentum = 0.9\nlr = 0.1, 0.3\n"
                                "[run.q-adam]\nworkload = quadratic\nsteps = 100\ntarget = 100\noptimizer = adam\n"
                                "lr = 0.3, 1\n"
                                "[run.l-sgd]\nworkload = logreg\nsteps = 200\ntarget = 0.9\noptimizer = sgd\n"
                                "momentum = 0.9\nlr = 0.03, 0.1\n"
                                "[run.l-adam]\nworkload = logreg\nsteps = 200\ntarget = 0.9\noptimizer = adam\n"
                                "lr = 0.01, 0.03\nl2 = 0, 1e-3, 1e-2\n");
    struct res r;
    RUN(&r, "sweep", ini, "-j", "2", "--quiet", "--out", tp("sw"));
    expect_exit(&r, 0);
    res_free(&r);
    /* the sweep marks each arm's tuned learning rate: tuned.csv */
    struct csv tuned;
    csv_load_or_fail(tp("sw/tuned.csv"), &tuned);
    assert_int_equal(tuned.nrows, 2 + 1 + 3); /* quadratic: sgd, adam; logreg: sgd, adam at 3 l2 */
    for (int i = 0; i < tuned.nrows; i++) {
        double lr;
        if (!is_number(csv_get(&tuned, i, "tuned_lr"), &lr) || strcmp(csv_get(&tuned, i, "seeds_ok"), "2"))
            fail_msg("tuned.csv row %d: tuned_lr '%s', seeds_ok '%s'", i + 1, csv_get(&tuned, i, "tuned_lr"),
                     csv_get(&tuned, i, "seeds_ok"));
    }
    csv_free(&tuned);
    RUN(&r, "plot", tp("sw"));
    expect_exit(&r, 0);
    res_free(&r);
    const char *figs[] = {"quadratic-loss-step", "quadratic-loss-time", "quadratic-metric-epoch",
                          "quadratic-lr", "logreg-loss-step", "logreg-lr", "logreg-reg-l2",
                          "throughput", "profile"};
    for (size_t i = 0; i < sizeof figs / sizeof figs[0]; i++) {
        expect_png(tp("sw/plots/%s.png", figs[i]));
        expect_svg(tp("sw/plots/%s.svg", figs[i]));
        assert_true(file_exists(tp("sw/plots/%s.gp", figs[i])));
    }
    /* the series: one line per arm at its tuned LR, the LR grid, the strengths */
    expect_svg(tp("sw/plots/quadratic-loss-step.svg"), "sgd (lr ", "adam l2=0 (lr ", "suboptimality");
    expect_svg(tp("sw/plots/logreg-lr.svg"), "learning rate", "sgd", "adam l2=0");
    expect_svg(tp("sw/plots/logreg-reg-l2.svg"), "adam test", "adam train");
    expect_svg(tp("sw/plots/profile.svg"), "area");
    /* one rank count: no scaling figures */
    assert_false(file_exists(tp("sw/plots/scaling-speedup.png")));
    /* the report: self-contained HTML with the figures inlined, and Markdown */
    RUN(&r, "report", tp("sw"));
    expect_exit(&r, 0);
    res_free(&r);
    char *html = slurp(tp("sw/report.html"), NULL), *md = slurp(tp("sw/report.md"), NULL);
    assert_non_null(html);
    assert_non_null(md);
    const char *want[] = {"<!DOCTYPE html>", "Findings", "quadratic", "logreg", "tuned lr", "Tuneability",
                          "Performance profiles", "descent sweep", "l2 strength", "</html>"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(html, want[i])) fail_msg("report.html does not mention '%s'", want[i]);
    int svgs = 0;
    for (const char *p = html; (p = strstr(p, "<svg")); p++) svgs++;
    if (svgs < (int)(sizeof figs / sizeof figs[0])) fail_msg("report.html inlines %d figures, expected at least %zu", svgs, sizeof figs / sizeof figs[0]);
    if (strstr(html, "src=\"http") || strstr(html, "href=\"http")) fail_msg("report.html refers to outside files");
    if (!strstr(md, "![quadratic-loss-step](plots/quadratic-loss-step.png)")) fail_msg("report.md does not link the figures");
    if (strstr(md, "Data-parallel scaling")) fail_msg("report.md has a scaling section though no rank count varies");
    free(html), free(md);
    /* a sweep where every run diverged still gets its figures and report */
    const char *bad = write_ini("div.ini", "[run]\nworkload = linreg\nsteps = 50\noptimizer = sgd\nlr = 10, 20\n");
    RUN(&r, "sweep", bad, "--quiet", "--out", tp("div"));
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "report", tp("div"));
    expect_exit(&r, 0);
    res_free(&r);
    html = slurp(tp("div/report.html"), NULL);
    assert_non_null(html);
    if (!strstr(html, "every LR diverged") || !strstr(html, "diverged")) fail_msg("report.html of an all-diverged sweep does not say so");
    free(html);
    /* bad input */
    RUN(&r, "plot", tp("nothing"));
    expect_usage(&r, "nothing");
    res_free(&r);
    RUN(&r, "report");
    expect_usage(&r, "usage");
    res_free(&r);
}


/* ---------------------------------------------------------------- data parallel */

/* Skips (visibly) when this descent has no MPI communicator. Open MPI's
 * internals leak by design at exit (components dlclosed before LSan looks),
 * so leak checking is off for the ranks; ASan's other checks stay on. */
static void need_mpi(void)
{
    struct res r;
    RUN(&r, "list");
    int have = strstr(r.out, "local, mpi") != NULL;
    res_free(&r);
    if (!have) {
        print_message("# this descent was built without MPI: data-parallel tests skipped\n");
        skip();
    }
    const char *a = getenv("ASAN_OPTIONS");
    char buf[512];
    snprintf(buf, sizeof buf, "%s%sdetect_leaks=0", a && *a ? a : "", a && *a ? ":" : "");
    setenv("ASAN_OPTIONS", buf, 1);
}

/* The curves of N ranks and of one rank agree within rel (train and eval loss). */
static void expect_same_curve(const char *a, const char *b, double rel, const char *what)
{
    struct csv x, y;
    csv_load_or_fail(a, &x);
    csv_load_or_fail(b, &y);
    if (x.nrows != y.nrows || x.nrows < 5) fail_msg("%s: %d and %d curve rows", what, x.nrows, y.nrows);
    const char *cols[] = {"train_loss", "eval_loss", "eval_metric"};
    double worst = 0;
    for (int i = 0; i < x.nrows; i++)
        for (size_t k = 0; k < 3; k++) {
            double u = NAN, v = NAN;
            if (!is_number(csv_get(&x, i, cols[k]), &u) || !is_number(csv_get(&y, i, cols[k]), &v))
                fail_msg("%s: row %d %s not numbers", what, i + 1, cols[k]);
            double e = fabs(u - v) / fmax(fabs(u), 1e-30);
            if (e > worst) worst = e;
            if (!(e <= rel))
                fail_msg("%s: row %d (step %s) %s %.10g vs %.10g (rel %.3g > %.0e)", what, i + 1,
                         csv_get(&x, i, "step"), cols[k], u, v, e, rel);
        }
    print_message("# %-44s worst rel diff %.2e over %d points (tol %.0e)\n", what, worst, x.nrows, rel);
    csv_free(&x), csv_free(&y);
}

static void test_ranks_equivalence(void **state)
{
    (void)state;
    need_mpi();
    const struct {
        const char *name, *args[16];
    } cases[] = {
        {"logreg sgd", {"--workload", "logreg", "--optimizer", "sgd", "--lr", "0.1", NULL}},
        {"logreg adam", {"--workload", "logreg", "--optimizer", "adam", "--lr", "0.01", NULL}},
        {"fmnist-mlp sgd momentum", {"--workload", "fmnist-mlp", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.02",
                                     "--batch", "64", "--eval-limit", "500", NULL}},
        {"fmnist-mlp adam", {"--workload", "fmnist-mlp", "--optimizer", "adam", "--lr", "1e-3", "--batch", "64",
                             "--eval-limit", "500", NULL}},
    };
    const char *ranks[] = {"1", "2", "4"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int k = 0; k < 3; k++) {
            struct res r;
            char *argv[40];
            int n = 0;
            argv[n++] = "run";
            for (int i = 0; cases[c].args[i]; i++) argv[n++] = (char *)cases[c].args[i];
            const char *more[] = {"--steps", "100", "--eval-every", "10", "--ranks", ranks[k], "--threads", "1",
                                  "--out", tp("c%zu-r%s", c, ranks[k]), NULL};
            for (int i = 0; more[i]; i++) argv[n++] = (char *)more[i];
            argv[n] = NULL;
            run_v(&r, (const char *const *)argv, (const char *)NULL);
            expect_exit(&r, 0);
            res_free(&r);
            if (k > 0) {
                char what[128];
                snprintf(what, sizeof what, "%s, %s ranks vs 1", cases[c].name, ranks[k]);
                expect_same_curve(tp("c%zu-r1/curve.csv", c), tp("c%zu-r%s/curve.csv", c, ranks[k]), 1e-5, what);
            }
        }
    }
    /* ZeRO-1 (sharded optimizer state): the same curves, and the state shrinks */
    const size_t zcases[] = {0, 3}; /* logreg sgd, fmnist-mlp adam */
    for (size_t zi = 0; zi < 2; zi++) {
        size_t c = zcases[zi];
        for (int k = 1; k < 3; k++) {
            struct res r;
            char *argv[40];
            int n = 0;
            argv[n++] = "run";
            for (int i = 0; cases[c].args[i]; i++) argv[n++] = (char *)cases[c].args[i];
            const char *more[] = {"--steps", "100", "--eval-every", "10", "--ranks", ranks[k], "--threads", "1",
                                  "--zero1", "on", "--out", tp("z%zu-r%s", c, ranks[k]), NULL};
            for (int i = 0; more[i]; i++) argv[n++] = (char *)more[i];
            argv[n] = NULL;
            run_v(&r, (const char *const *)argv, (const char *)NULL);
            expect_exit(&r, 0);
            res_free(&r);
            char what[128];
            snprintf(what, sizeof what, "%s, zero1, %s ranks vs 1", cases[c].name, ranks[k]);
            expect_same_curve(tp("c%zu-r1/curve.csv", c), tp("z%zu-r%s/curve.csv", c, ranks[k]), 1e-5, what);
            struct csv a, z;
            csv_load_or_fail(tp("c%zu-r1/summary.csv", c), &a);
            csv_load_or_fail(tp("z%zu-r%s/summary.csv", c, ranks[k]), &z);
            double full = atof(csv_get(&a, 0, "optimizer_state_mb")), shard = atof(csv_get(&z, 0, "optimizer_state_mb"));
            double saved = atof(csv_get(&z, 0, "zero1_saved_mb"));
            if (!(fabs(shard * atoi(ranks[k]) - full) <= 1e-3 * full + 1e-6) || !(fabs(saved - (full - shard)) <= 1e-3 * full + 1e-6))
                fail_msg("%s: state %.6g MiB of %.6g, saved %.6g", what, shard, full, saved);
            csv_free(&a), csv_free(&z);
        }
    }
    /* the same rank count twice: identical numbers */
    struct res r;
    RUN(&r, "run", "--workload", "logreg", "--optimizer", "adam", "--lr", "0.01", "--steps", "100",
        "--eval-every", "10", "--ranks", "2", "--threads", "1", "--out", tp("again"));
    expect_exit(&r, 0);
    res_free(&r);
    csv_expect_same(tp("c1-r2/curve.csv"), tp("again/curve.csv"), curve_timing);
    /* Gradient buckets: fmnist-mlp's 784-256-128-10 at the default 32 KiB is
     * two (the last two layers, started behind the first layer's backward;
     * then the first); one allreduce after backward (--bucket-kb 0) gives the
     * same numbers bit for bit at 2 ranks (a sum of two is the same either way) */
    RUN(&r, "run", "--workload", "fmnist-mlp", "--optimizer", "adam", "--lr", "1e-3", "--batch", "64",
        "--eval-limit", "500", "--steps", "100", "--eval-every", "10", "--ranks", "2", "--threads", "1",
        "--bucket-kb", "0", "--out", tp("onebucket"));
    expect_exit(&r, 0);
    res_free(&r);
    const char *const timing_and_id[] = {"wall_s", "samples_per_s", "run_id", NULL};
    csv_expect_same(tp("c3-r2/curve.csv"), tp("onebucket/curve.csv"), timing_and_id);
    struct csv b2, b1, b0;
    csv_load_or_fail(tp("c3-r2/summary.csv"), &b2);
    csv_load_or_fail(tp("onebucket/summary.csv"), &b1);
    csv_load_or_fail(tp("c3-r1/summary.csv"), &b0);
    assert_string_equal(csv_get(&b2, 0, "buckets"), "2");
    assert_string_equal(csv_get(&b1, 0, "buckets"), "1");
    assert_string_equal(csv_get(&b0, 0, "buckets"), "0");
    double np = atof(csv_get(&b2, 0, "n_params")), mb = atof(csv_get(&b2, 0, "comm_mb"));
    assert_close(mb, (np * 4 + 8) / 1048576.0, 1e-6);
    assert_close(atof(csv_get(&b0, 0, "comm_mb")), 0.0, 0.0);
    for (int i = 0; i < 2; i++) {
        const struct csv *x = i ? &b1 : &b2;
        double exposed = NAN, total = NAN;
        if (!is_number(csv_get(x, 0, "comm_ms"), &exposed) || !is_number(csv_get(x, 0, "comm_total_ms"), &total) ||
            !(exposed >= 0) || !(total > 0))
            fail_msg("comm_ms '%s', comm_total_ms '%s'", csv_get(x, 0, "comm_ms"), csv_get(x, 0, "comm_total_ms"));
    }
    print_message("# fmnist-mlp 2 ranks: comm %s ms exposed of %s ms in flight (2 buckets), %s of %s (1 bucket)\n",
                  csv_get(&b2, 0, "comm_ms"), csv_get(&b2, 0, "comm_total_ms"), csv_get(&b1, 0, "comm_ms"),
                  csv_get(&b1, 0, "comm_total_ms"));
    csv_free(&b2), csv_free(&b1), csv_free(&b0);
    /* only rank 0 wrote: one summary row */
    struct csv sm;
    csv_load_or_fail(tp("c1-r4/summary.csv"), &sm);
    assert_int_equal(sm.nrows, 1);
    assert_string_equal(csv_get(&sm, 0, "ranks"), "4");
    csv_free(&sm);
}


/* One rank fails (a bad input, a crash, a hang): the whole job ends
 * non-zero within 30 s with a message naming the rank and the cause, and no
 * process is left. DESCENT_FAULT is descent's test hook (harness/run.c). */
static void test_ranks_faults(void **state)
{
    (void)state;
    need_mpi();
    const struct {
        const char *fault, *code, *words[3];
    } cases[] = {
        {"1:5:error", "2", {"rank 1 of 2", "injected fault at step 5", NULL}},
        {"1:5:crash", "1", {"rank 1", "signal 9", NULL}},
        {"1:5:hang", "1", {"rank 0 of 2", "no progress", NULL}},
    };
    setenv("DESCENT_COMM_TIMEOUT", "5", 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        setenv("DESCENT_FAULT", cases[c].fault, 1);
        const char *out = tp("fault%zu", c);
        double t0 = now_s();
        struct res r;
        RUN(&r, "run", "--workload", "logreg", "--steps", "200", "--ranks", "2", "--threads", "1", "--out", out);
        double took = now_s() - t0;
        unsetenv("DESCENT_FAULT");
        expect_exit(&r, atoi(cases[c].code));
        for (int w = 0; cases[c].words[w]; w++)
            if (!strstr(r.err, cases[c].words[w]))
                fail_msg("DESCENT_FAULT=%s: the message does not say '%s'" SHOW, cases[c].fault,
                         cases[c].words[w], SHOWARGS(&r));
        if (took > 30) fail_msg("DESCENT_FAULT=%s: the job took %.1f s to end", cases[c].fault, took);
        print_message("# DESCENT_FAULT=%-10s exit %s after %.1f s\n", cases[c].fault, cases[c].code, took);
        res_free(&r);
        expect_no_process_for(out);
    }
    unsetenv("DESCENT_COMM_TIMEOUT");

    /* The launcher killed (as a sweep stops a run, or Ctrl-C): mpirun and
     * the ranks go with it, within 30 s. */
    const char *out = tp("killed");
    char *argv[] = {(char *)descent_bin(), "run", "--workload", "logreg", "--steps", "100000000",
                    "--ranks", "2", "--threads", "1", "--out", (char *)out, NULL};
    pid_t pid;
    assert_int_equal(spawn_to(argv[0], argv, tp("killed.out"), tp("killed.err"), &pid), 0);
    for (int i = 0; i < 600 && !file_exists(tp("killed/curve.csv")); i++) sleep_s(0.05);
    if (!file_exists(tp("killed/curve.csv"))) fail_msg("the 2-rank run did not start within 30 s");
    double t0 = now_s();
    kill(pid, SIGTERM);
    wait_for(pid, 30, "descent run --ranks 2 after SIGTERM");
    expect_no_process_for(out);
    print_message("# launcher killed: mpirun and both ranks gone after %.1f s\n", now_s() - t0);

    /* Started by mpirun without --ranks: refused, not N separate runs on one folder */
    if (geteuid() == 0) {
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    }
    struct res r;
    char *mv[] = {"mpirun", "-np", "2", "--oversubscribe", (char *)descent_bin(), "run", "--workload", "logreg",
                  "--steps", "10", "--out", (char *)tp("noranks"), NULL};
    assert_int_equal(run_prog(&r, "/usr/bin/mpirun", mv), 0);
    if (!strstr(r.err, "add --ranks 2")) fail_msg("mpirun -np 2 descent run without --ranks" SHOW, SHOWARGS(&r));
    if (file_exists(tp("noranks/summary.csv"))) fail_msg("mpirun -np 2 without --ranks wrote a summary");
    res_free(&r);
}


/* --backend cuda and --gpus N on a machine without a usable GPU (or a
 * build without CUDA): exit 2 with one message saying why, before any rank
 * starts; --gpus with another backend names the flag. */
static void test_gpu_flags_without_gpu(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "info");
    int have_gpu = strstr(r.out, "backends: cpu, cuda; cuda:") != NULL;
    res_free(&r);
    if (have_gpu) {
        print_message("# a GPU is usable here: the no-GPU messages are not checked\n");
        skip();
    }
    RUN(&r, "run", "--workload", "logreg", "--steps", "2", "--backend", "cuda", "--out", tp("cu1"));
    expect_usage(&r, "--backend cuda");
    res_free(&r);
    RUN(&r, "run", "--workload", "logreg", "--steps", "2", "--gpus", "2", "--out", tp("cu2"));
    expect_exit(&r, 2);
    if (!strstr(r.err, "cuda") || strstr(r.err, "mpirun detected"))
        fail_msg("--gpus 2 without a GPU" SHOW, SHOWARGS(&r));
    res_free(&r);
    RUN(&r, "run", "--workload", "logreg", "--steps", "2", "--gpus", "2", "--backend", "cpu", "--out", tp("cu3"));
    expect_usage(&r, "--gpus 2 needs --backend cuda");
    res_free(&r);
    RUN(&r, "run", "--workload", "logreg", "--steps", "2", "--ranks", "2", "--backend", "cuda", "--out", tp("cu4"));
    expect_exit(&r, 2);
    res_free(&r);
}

/* hwloc: descent info and meta.json describe the machine; --bind checked. */
/* Data-parallel scaling in plot and report: a hand-made sweep (ranks 1, 2, 4
 * at one global batch on a 2-CPU host, so 4 ranks are oversubscribed; comm
 * hidden and MB present) and, with MPI, a real one of logreg at 1 and 2
 * ranks; a projection folder is embedded apart, as not measured. */
static void test_scaling_plot_and_report(void **state)
{
    (void)state;
    mkdir(tp("hand"), 0755);
    mkdir(tp("hand/runs"), 0755);
    const char *head = "index,group,run_id,workload,optimizer,lr,seed,batch,ranks,threads,steps,status,metric,"
                       "final_eval_metric,step_ms_median,samples_per_s,compute_ms,comm_ms,optimizer_ms,"
                       "comm_total_ms,comm_mb,out\n";
    char csv[4096];
    size_t at = (size_t)snprintf(csv, sizeof csv, "%s", head);
    const int ranks[] = {1, 2, 4};
    const double step[] = {10, 6, 5};
    for (int i = 0; i < 3; i++) {
        mkdir(tp("hand/runs/00%d-r%d", i + 1, ranks[i]), 0755);
        const char *meta = "{\"host\": {\"hostname\": \"testhost\", \"cpus_online\": 2}}";
        spit(tp("hand/runs/00%d-r%d/meta.json", i + 1, ranks[i]), meta, strlen(meta));
        at += (size_t)snprintf(csv + at, sizeof csv - at,
                               "%d,strong,r%d,logreg,sgd,0.1,1,64,%d,1,20,ok,accuracy,0.9,%g,%g,%g,%g,0.1,%g,0.5,"
                               "elsewhere/runs/00%d-r%d\n",
                               i + 1, ranks[i], ranks[i], step[i], 64e3 / step[i], step[i] * 0.6, step[i] * 0.3,
                               step[i] * 0.5, i + 1, ranks[i]);
    }
    write_ini("hand/runs.csv", csv);
    struct res r;
    RUN(&r, "report", tp("hand"));
    expect_exit(&r, 0);
    res_free(&r);
    const char *figs[] = {"scaling-speedup", "scaling-efficiency", "logreg-scaling-breakdown"};
    for (int i = 0; i < 3; i++) {
        expect_png(tp("hand/plots/%s.png", figs[i]));
        expect_svg(tp("hand/plots/%s.svg", figs[i]));
    }
    expect_svg(tp("hand/plots/scaling-speedup.svg"), "ideal", "logreg strong (global batch 64)", "4 (oversubscribed)");
    expect_svg(tp("hand/plots/scaling-efficiency.svg"), "oversubscribed (ranks x threads > 2 CPUs)");
    expect_svg(tp("hand/plots/logreg-scaling-breakdown.svg"), "compute", "comm. (exposed)", "optimizer",
               "comm. hidden", "(oversubscribed)");
    /* speedup t1/tN: 10/6 and 10/5; efficiency over N: 0.83 and 0.50 */
    char *md = slurp(tp("hand/report.md"), NULL), *html = slurp(tp("hand/report.html"), NULL);
    assert_non_null(md);
    assert_non_null(html);
    const char *want[] = {"## Data-parallel scaling", "Measured on this machine, testhost, 2 CPUs online",
                          "| logreg strong (global batch 64) | 2 | 1 | 64 | 6 | 1.067e+04 | 1.67 | 0.83 | 3.6 | 1.8 | 3 | 0.5 | 0.1 | no |",
                          "| logreg strong (global batch 64) | 4 | 1 | 64 | 5 | 1.28e+04 | 2.00 | 0.50 | 3 | 1.5 | 2.5 | 0.5 | 0.1 | yes (4 x 1 > 2 CPUs) |",
                          "![scaling-speedup](plots/scaling-speedup.png)", "4 ranks x 1 thread (oversubscribed): speedup 2.00"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (!strstr(md, want[i])) fail_msg("report.md has no '%s':\n%s", want[i], md);
    if (strstr(md, "Projection")) fail_msg("report.md has a projection without projection/projection.md");
    free(md), free(html);
    /* a projection beside it: its figure inlined and its table, after a separator, said to be not measured */
    mkdir(tp("hand/projection"), 0755);
    mkdir(tp("hand/projection/plots"), 0755);
    char *svg = slurp(tp("hand/plots/scaling-speedup.svg"), NULL);
    assert_non_null(svg);
    write_ini("hand/projection/plots/projection.svg", svg);
    free(svg);
    write_ini("hand/projection/projection.md", "# Projection (model)\n\nAn alpha-beta model.\n\n"
                                               "![projection](plots/projection.png)\n\n| gpus | step ms |\n|---|---|\n"
                                               "| 8 | 1.5 |\n| 1024 | 7.25 |\n");
    RUN(&r, "report", tp("hand"));
    expect_exit(&r, 0);
    res_free(&r);
    md = slurp(tp("hand/report.md"), NULL), html = slurp(tp("hand/report.html"), NULL);
    const char *want2[] = {"## Projection (not measured)", "Nothing in this section was measured",
                           "![projection](projection/plots/projection.png)", "| 1024 | 7.25 |", "An alpha-beta model."};
    for (size_t i = 0; i < sizeof want2 / sizeof want2[0]; i++)
        if (!strstr(md, want2[i])) fail_msg("report.md has no '%s'", want2[i]);
    const char *p = strstr(html, "Projection (not measured)</h2>"), *m = strstr(html, "Data-parallel scaling</h2>");
    if (!p || !m || p < m || !strstr(p, "<td>7.25</td>") || !strstr(p, "<svg"))
        fail_msg("report.html: no projection section after the measured scaling, with its table and figure");
    free(md), free(html);

    /* the real thing: logreg at 1 and 2 ranks, one thread each */
    need_mpi();
    const char *ini = write_ini("scal.ini", "[sweep]\nname = scal\n[run]\nworkload = logreg\noptimizer = sgd\n"
                                            "lr = 0.1\nsteps = 30\neval-every = 10\nbatch = 64\nthreads = 1\nranks = 1, 2\n");
    RUN(&r, "sweep", ini, "-j", "2", "--quiet", "--out", tp("scal"));
    expect_exit(&r, 0);
    res_free(&r);
    RUN(&r, "report", tp("scal"));
    expect_exit(&r, 0);
    res_free(&r);
    for (int i = 0; i < 3; i++) expect_png(tp("scal/plots/%s.png", figs[i]));
    expect_svg(tp("scal/plots/scaling-speedup.svg"), "logreg strong (global batch 64)");
    md = slurp(tp("scal/report.md"), NULL);
    assert_non_null(md);
    if (!strstr(md, "## Data-parallel scaling") || !strstr(md, "| logreg strong (global batch 64) | 2 | 1 | 64 |"))
        fail_msg("report.md of a 1- and 2-rank sweep has no scaling section and table:\n%s", md);
    free(md);
}

static void test_topology_and_bind(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "info");
    expect_exit(&r, 0);
    if (!strstr(r.out, "topology: ") || !strstr(r.out, "(hwloc)") || !strstr(r.out, "core"))
        fail_msg("descent info does not show the hwloc topology:\n%s", r.out);
    res_free(&r);
    RUN(&r, "run", "--workload", "logreg", "--steps", "10", "--bind", "core", "--out", tp("b"));
    expect_exit(&r, 0);
    res_free(&r);
    cJSON *m = json_load_or_fail(tp("b/meta.json"));
    cJSON *host = cJSON_GetObjectItem(m, "host"), *topo = cJSON_GetObjectItem(host, "topology");
    assert_string_equal(json_str(host, "topology_source", "meta.json host"), "hwloc");
    if (!topo || cJSON_GetNumberValue(cJSON_GetObjectItem(topo, "cores")) < 1 ||
        cJSON_GetNumberValue(cJSON_GetObjectItem(topo, "l1d_bytes")) <= 0)
        fail_msg("meta.json: no hwloc topology with cores and caches");
    cJSON_Delete(m);
    RUN(&r, "run", "--workload", "logreg", "--steps", "10", "--bind", "socket");
    expect_usage(&r, "--bind", "socket", "core, none");
    res_free(&r);
}

/* ---------------------------------------------------------------- bench-comm */

/* bench_comm.csv: its leading columns, one row per size from min_b doubling
 * to max_b, positive finite times, algbw = bytes / time and nccl-tests'
 * busbw = algbw * 2(n-1)/n (0 with one rank). */
static void check_bench_comm_csv(const char *path, int ranks, long long min_b, long long max_b)
{
    struct csv c;
    csv_load_or_fail(path, &c);
    const char *cols[] = {"bytes", "count_floats", "ranks", "iters", "time_us", "algbw_GBps", "busbw_GBps"};
    for (int k = 0; k < 7; k++)
        if (k >= c.ncols || strcmp(c.cell[k], cols[k]))
            fail_msg("%s: column %d is '%s', expected '%s'", path, k + 1, k < c.ncols ? c.cell[k] : "", cols[k]);
    int want = 0;
    for (long long b = min_b; b <= max_b; b *= 2) want++;
    if (c.nrows != want) fail_msg("%s: %d rows, expected %d (%lld to %lld bytes)", path, c.nrows, want, min_b, max_b);
    long long b = min_b;
    for (int i = 0; i < c.nrows; i++, b *= 2) {
        double v[7];
        for (int k = 0; k < 7; k++)
            if (!is_number(csv_get(&c, i, cols[k]), &v[k]) || !isfinite(v[k]))
                fail_msg("%s row %d: %s '%s' is not a finite number", path, i + 1, cols[k], csv_get(&c, i, cols[k]));
        if (v[0] != (double)b || v[1] != (double)(b / 4) || v[2] != ranks || v[3] < 1)
            fail_msg("%s row %d: bytes %g count %g ranks %g iters %g, expected %lld, %lld, %d, >= 1", path, i + 1,
                     v[0], v[1], v[2], v[3], b, b / 4, ranks);
        double alg = v[0] / (v[4] * 1e-6) / 1e9, bus = v[5] * 2.0 * (ranks - 1) / ranks;
        if (!(v[4] > 0) || !(fabs(v[5] - alg) <= 1e-6 * alg) || !(fabs(v[6] - bus) <= 1e-6 * v[5]) ||
            (ranks > 1 && !(v[6] > 0)))
            fail_msg("%s row %d: time_us %g algbw %g busbw %g, expected algbw %g busbw %g", path, i + 1, v[4], v[5],
                     v[6], alg, bus);
    }
    csv_free(&c);
}

static void test_bench_comm(void **state)
{
    (void)state;
    need_mpi();
    struct res r;
    RUN(&r, "bench-comm", "--ranks", "2", "--max-bytes", "1M", "--out", tp("bc"));
    expect_exit(&r, 0);
    if (!strstr(r.out, "busbw GB/s") || !strstr(r.out, "1 MiB"))
        fail_msg("bench-comm printed no table" SHOW, SHOWARGS(&r));
    res_free(&r);
    check_bench_comm_csv(tp("bc/bench_comm.csv"), 2, 4, 1 << 20);
    expect_png(tp("bc/plots/bench_comm.png"));
    expect_svg(tp("bc/plots/bench_comm.svg"), "algbw", "busbw");
    cJSON_Delete(json_load_or_fail(tp("bc/meta.json")));
    /* one rank: nothing moves, busbw is 0 */
    RUN(&r, "bench-comm", "--ranks", "1", "--min-bytes", "1K", "--max-bytes", "64K", "--iters", "20", "--out", tp("bc1"));
    expect_exit(&r, 0);
    res_free(&r);
    check_bench_comm_csv(tp("bc1/bench_comm.csv"), 1, 1024, 64 << 10);
}

/* A wrong sum on one rank (DESCENT_FAULT, the test hook) fails the run with
 * exit 1 naming the size; the sizes before it are in the CSV. */
static void test_bench_comm_wrong_sum(void **state)
{
    (void)state;
    need_mpi();
    setenv("DESCENT_FAULT", "1:4096:corrupt", 1);
    struct res r;
    RUN(&r, "bench-comm", "--ranks", "2", "--max-bytes", "64K", "--iters", "10", "--out", tp("bad"));
    unsetenv("DESCENT_FAULT");
    expect_exit(&r, 1);
    expect_msg(&r, "4096 bytes", "rank 1", "wrong");
    res_free(&r);
    check_bench_comm_csv(tp("bad/bench_comm.csv"), 2, 4, 2048);
}

static void test_bench_comm_bad_input(void **state)
{
    (void)state;
    struct res r;
    RUN(&r, "bench-comm", "--max-bytes", "12x");
    expect_usage(&r, "--max-bytes", "12x");
    res_free(&r);
    RUN(&r, "bench-comm", "--min-bytes", "6");
    expect_usage(&r, "--min-bytes", "multiple of 4");
    res_free(&r);
    RUN(&r, "bench-comm", "--iters", "0");
    expect_usage(&r, "--iters");
    res_free(&r);
    RUN(&r, "bench-comm", "--min-bytes", "1M", "--max-bytes", "1K");
    expect_usage(&r, "--max-bytes", "--min-bytes");
    res_free(&r);
    RUN(&r, "bench-comm", "--no-such-flag", "1");
    expect_usage(&r, "--no-such-flag", "--ranks", "--min-bytes", "--max-bytes", "--iters", "--out");
    res_free(&r);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup_dir, teardown_dir)
    const struct CMUnitTest tests[] = {
        T(test_list_and_help),
        T(test_no_command),
        T(test_unknown_command),
        T(test_unknown_workload),
        T(test_unknown_optimizer),
        T(test_unknown_schedule),
        T(test_unknown_init_scheme),
        T(test_unknown_backend),
        T(test_unknown_option),
        T(test_lr_negative),
        T(test_lr_nan),
        T(test_lr_not_a_number),
        T(test_lr_missing_value),
        T(test_batch_zero),
        T(test_batch_larger_than_data),
        T(test_epochs_and_steps),
        T(test_init_nonexistent),
        T(test_init_unreadable),
        T(test_init_directory),
        T(test_init_garbage),
        T(test_init_truncated),
        T(test_init_wrong_shape),
        T(test_init_missing_tensor),
        T(test_init_extra_tensor),
        T(test_init_wrong_dtype),
        T(test_reproducible_quadratic),
        T(test_reproducible_linreg),
        T(test_reproducible_logreg),
        T(test_divergence),
        T(test_checkpoint_round_trips),
        T(test_save_init_zeros),
        T(test_meta_json),
        T(test_curve_columns),
        T(test_export_deterministic),
        T(test_export_needs_out),
        T(test_export_numpy),
        T(test_sigkill_leaves_complete_rows),
        T(test_fmnist_bad_data),
        T(test_fmnist_bad_flags),
        T(test_fmnist_runs_and_checkpoints),
        T(test_fmnist_reproducible),
        T(test_sweep_resume_after_kill),
        T(test_sweep_interrupt),
        T(test_sweep_failures),
        T(test_sweep_bad_input),
        T(test_compare_gate),
        T(test_plot_and_report),
        T(test_ranks_equivalence),
        T(test_ranks_faults),
        T(test_gpu_flags_without_gpu),
        T(test_scaling_plot_and_report),
        T(test_topology_and_bind),
        T(test_bench_comm),
        T(test_bench_comm_wrong_sum),
        T(test_bench_comm_bad_input),
    };
#undef T
    /* CLI_TESTS=pattern runs only the matching tests (cmocka's filter: * and ?) */
    if (getenv("CLI_TESTS")) cmocka_set_test_filter(getenv("CLI_TESTS"));
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
