/*
 * test_experiment.c: INI experiment files (harness/experiment.c) and the
 * CSV tables sweeps are built from (harness/table.c).
 *
 *  - valid files: [run] alone, [run.NAME] groups overriding [run], seeds
 *    varying fastest, continuation lines, quoted values holding commas,
 *    [sweep] name and description, the default name; grid counts are the
 *    products of the axes (summed over groups) and run_ids are distinct;
 *  - every error case: exit status 2 (DS_ERR_USAGE) and a message naming
 *    FILE:LINE of the offending line, and what is wrong;
 *  - tables: RFC 4180 quoting round trip, a killed writer's last line
 *    dropped, union of columns on append, rows wider than the header;
 *  - the analysis of a hand-made runs.csv: arms, the tuned LR (a diverged
 *    seed rules an LR out; lower-is-better metrics), mean/std/min/max over
 *    seeds, steps to target only when every seed reached it, regularization
 *    series, and performance-profile ratios and area scores worked by hand.
 */
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>

#include "../harness/analysis.h"
#include "../harness/experiment.h"
#include "../harness/table.h"

static char dir[256];

static int setup(void **s)
{
    (void)s;
    return tu_tmpdir_make(dir, sizeof dir, "exp");
}

static int teardown(void **s)
{
    (void)s;
    return tu_tmpdir_remove(dir);
}

/* Writes text to DIR/name and returns the path (static buffer). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void load_ok(const char *name, const char *text, struct ds_experiment *e)
{
    const char *path = write_file(name, text);
    struct ds_err err = {{0}};
    ds_status st = ds_exp_load(path, e, &err);
    if (st != DS_OK) fail_msg("%s: expected to load, got: %s", name, err.msg);
}

/* The value point i gives key (NULL if not given). */
static const char *val(const struct ds_experiment *e, size_t i, const char *key)
{
    int k = ds_config_key_find(key);
    assert_true(k >= 0);
    for (int a = 0; a < e->points[i].n; a++)
        if (e->points[i].keys[a] == k) return e->points[i].values[a];
    return NULL;
}

static void assert_val(const struct ds_experiment *e, size_t i, const char *key, const char *want)
{
    const char *got = val(e, i, key);
    if (!got || strcmp(got, want) != 0)
        fail_msg("run %zu: %s = %s, expected %s", i + 1, key, got ? got : "(not set)", want);
}

static void assert_distinct_ids(const struct ds_experiment *e)
{
    for (size_t i = 0; i < e->n_points; i++)
        for (size_t j = i + 1; j < e->n_points; j++)
            if (strcmp(e->points[i].run_id, e->points[j].run_id) == 0)
                fail_msg("runs %zu and %zu share run_id %s", i + 1, j + 1, e->points[i].run_id);
}

static void test_run_section_product(void **state)
{
    (void)state;
    struct ds_experiment e;
    load_ok("product.ini",
            "; a comment\n"
            "[run]\n"
            "workload = quadratic, logreg   ; two workloads\n"
            "optimizer = sgd\n"
            "lr = 0.01, 0.03, 0.1\n"
            "steps = 10\n"
            "seeds = 1, 2\n",
            &e);
    assert_int_equal(e.n_points, 2 * 3 * 2);
    assert_string_equal(e.name, "product"); /* the file's base name */
    /* seeds fastest, then the last key, then the first */
    assert_val(&e, 0, "seed", "1");
    assert_val(&e, 1, "seed", "2");
    assert_val(&e, 0, "lr", "0.01");
    assert_val(&e, 2, "lr", "0.03");
    assert_val(&e, 5, "workload", "quadratic");
    assert_val(&e, 6, "workload", "logreg");
    assert_val(&e, 11, "lr", "0.1");
    assert_int_equal(e.points[3].config.seed, 2);
    assert_true(fabs(e.points[3].config.lr - 0.03) < 1e-12);
    assert_distinct_ids(&e);
    char label[256];
    ds_exp_point_label(&e, 7, label, sizeof label);
    assert_string_equal(label, "workload=logreg lr=0.01 seed=2");
    ds_exp_free(&e);
}

static void test_groups(void **state)
{
    (void)state;
    struct ds_experiment e;
    load_ok("groups.ini",
            "[sweep]\n"
            "name = cmp-1\n"
            "description = SGD against Adam\n"
            "\n"
            "[run]\n"
            "workload = quadratic, logreg\n"
            "steps = 20\n"
            "lr = 0.5\n"
            "seeds = 1, 2, 3\n"
            "\n"
            "[run.sgd]\n"
            "optimizer = sgd\n"
            "momentum = 0.9\n"
            "lr = 0.01,\n"
            "     0.1\n" /* a continuation line (the trailing comma is allowed) */
            "[run.adam]\n"
            "optimizer = adam\n"
            "lr = 1e-3, 1e-2, 1e-1\n"
            "[run.gd]\n" /* no keys of its own: [run] as it is */
            "optimizer = gd\n",
            &e);
    assert_string_equal(e.name, "cmp-1");
    assert_string_equal(e.description, "SGD against Adam");
    assert_int_equal(e.n_groups, 4); /* [run] and three groups */
    assert_int_equal(e.n_points, 2 * 2 * 3 + 2 * 3 * 3 + 2 * 1 * 3);
    assert_string_equal(ds_exp_point_group(&e, 0), "sgd");
    assert_string_equal(ds_exp_point_group(&e, 12), "adam");
    assert_string_equal(ds_exp_point_group(&e, 30), "gd");
    assert_val(&e, 0, "lr", "0.01"); /* the group's lr replaces [run]'s */
    assert_val(&e, 3, "lr", "0.1");
    assert_val(&e, 0, "momentum", "0.9");
    assert_null(val(&e, 12, "momentum"));
    assert_val(&e, 30, "lr", "0.5"); /* gd keeps [run]'s */
    assert_val(&e, 31, "seed", "2");
    assert_int_equal(e.points[12].config.steps, 20);
    assert_distinct_ids(&e);
    ds_exp_free(&e);
}

static void test_quoted_values(void **state)
{
    (void)state;
    struct ds_experiment e;
    load_ok("quoted.ini",
            "[run]\n"
            "workload = fmnist-mlp\n"
            "hidden = \"512,256\", \"64\"\n"
            "steps = 5\n",
            &e);
    assert_int_equal(e.n_points, 2);
    assert_val(&e, 0, "hidden", "512,256");
    assert_val(&e, 1, "hidden", "64");
    assert_string_equal(e.points[0].config.hidden, "512,256");
    ds_exp_free(&e);
}

/* Loading must fail with DS_ERR_USAGE and a message holding each string. */
static void expect_error_(const char *name, const char *text, const char *file, int line, ...)
{
    const char *path = write_file(name, text);
    struct ds_experiment e;
    struct ds_err err = {{0}};
    ds_status st = ds_exp_load(path, &e, &err);
    if (st == DS_OK) {
        ds_exp_free(&e);
        fail_msg("%s:%d: %s loaded, expected an error", file, line, name);
    }
    if (ds_status_exit_code(st) != 2)
        fail_msg("%s:%d: %s: exit code %d, expected 2 (%s)", file, line, name,
                 ds_status_exit_code(st), err.msg);
    va_list ap;
    va_start(ap, line);
    const char *s;
    while ((s = va_arg(ap, const char *)) != NULL)
        if (!strstr(err.msg, s)) {
            va_end(ap);
            fail_msg("%s:%d: %s: the message does not mention '%s': %s", file, line, name, s,
                     err.msg);
        }
    va_end(ap);
    assert_int_equal(e.n_points, 0); /* left empty */
    assert_null(e.groups);
}
#define expect_error(name, text, ...)                                                         \
    expect_error_((name), (text), __FILE__, __LINE__, __VA_ARGS__, (const char *)NULL)

static void test_compare_section(void **state)
{
    (void)state;
    struct ds_experiment e;
    load_ok("cmp.ini",
            "[run]\nworkload = quadratic\nsteps = 5\n[compare]\ntol-metric = 0.01\ngate-speed = on\n",
            &e);
    assert_close(e.compare.tol_metric, 0.01, 0);
    assert_true(isnan(e.compare.tol_loss));
    assert_int_equal(e.compare.gate_speed, 1);
    ds_exp_free(&e);
    /* read alone, ignoring the rest (even a broken rest) */
    const char *path = write_file("cmp2.ini", "[run]\nlrr = 1\n[compare]\ntol-loss = 0.2\n");
    struct ds_exp_compare c;
    struct ds_err err = {{0}};
    assert_int_equal(ds_exp_load_compare(path, &c, &err), DS_OK);
    assert_close(c.tol_loss, 0.2, 0);
    assert_int_equal(c.gate_speed, -1);
    path = write_file("cmp3.ini", "[compare]\ntol-metric = -1\n");
    assert_int_equal(ds_status_exit_code(ds_exp_load_compare(path, &c, &err)), 2);
    assert_non_null(strstr(err.msg, "cmp3.ini:2:"));
    expect_error("cmp_key.ini", "[run]\nworkload = quadratic\n[compare]\ntol = 1\n", "cmp_key.ini:4:",
                 "unknown key 'tol' in [compare]");
    expect_error("cmp_gate.ini", "[run]\nworkload = quadratic\n[compare]\ngate-speed = maybe\n",
                 "cmp_gate.ini:4:", "gate-speed");
}

static void test_errors_with_lines(void **state)
{
    (void)state;
    expect_error("unknown_key.ini", "[run]\nworkload = quadratic\nlrr = 0.1\n",
                 "unknown_key.ini:3:", "unknown key 'lrr'", "valid:", "lr,");
    expect_error("unknown_section.ini", "[run]\nworkload = quadratic\n\n[runs]\nlr = 1\n",
                 "unknown_section.ini:4:", "unknown section [runs]", "[run.NAME]");
    expect_error("bad_value.ini", "[run]\nworkload = quadratic\nlr = 0.1, abc\n",
                 "bad_value.ini:3:", "key 'lr'", "abc");
    expect_error("negative.ini", "[run]\nworkload = quadratic\nsteps = 10\nlr = -1\n",
                 "negative.ini:4:", "key 'lr'", "-1");
    expect_error("empty_item.ini", "[run]\nworkload = quadratic\nlr = 0.1, , 0.2\n",
                 "empty_item.ini:3:", "empty item");
    expect_error("empty_value.ini", "[run]\nworkload = quadratic\nlr =\n", "empty_value.ini:3:",
                 "empty value");
    expect_error("dup_key.ini", "[run]\nworkload = quadratic\nlr = 0.1\nsteps = 3\nlr = 0.2\n",
                 "dup_key.ini:5:", "'lr' given twice", "line 3");
    expect_error("dup_section.ini",
                 "[run]\nworkload = quadratic\n[run.a]\nlr = 0.1\n[run.a]\nlr = 0.2\n",
                 "dup_section.ini:5:", "[run.a] appears twice", "line 3");
    expect_error("dup_sweep.ini", "[sweep]\nname = a\n[sweep]\n[run]\nworkload = quadratic\n",
                 "dup_sweep.ini:3:", "[sweep] appears twice");
    expect_error("outside.ini", "workload = quadratic\n[run]\nlr = 1\n", "outside.ini:1:",
                 "outside a section");
    expect_error("syntax.ini", "[run]\nworkload = quadratic\nthis line has no equals sign\n",
                 "syntax.ini:3:", "not an INI line");
    expect_error("unclosed.ini", "[run\nworkload = quadratic\n", "unclosed.ini:1:",
                 "not an INI line");
    expect_error("forbidden.ini", "[run]\nworkload = quadratic\nout = /tmp/x\n",
                 "forbidden.ini:3:", "'out' cannot be set");
    expect_error("sweep_key.ini", "[sweep]\nname = a\ncolour = red\n[run]\nworkload = quadratic\n",
                 "sweep_key.ini:3:", "unknown key 'colour' in [sweep]");
    expect_error("sweep_name.ini", "[sweep]\nname = a b/c\n[run]\nworkload = quadratic\n",
                 "sweep_name.ini:2:", "names the sweep folder");
    expect_error("group_name.ini", "[run]\nworkload = quadratic\n[run.a/b]\nlr = 1\n",
                 "group_name.ini:3:", "group name");
    expect_error("unknown_workload.ini", "[run]\nworkload = quadratic, mnist\n",
                 "unknown_workload.ini:2:", "mnist", "valid:");
    expect_error("unterminated.ini", "[run]\nworkload = quadratic\nhidden = \"5,6\n",
                 "unterminated.ini:3:", "unterminated");
    /* a line longer than libinih's buffer: named, not split into two */
    char long_line[600];
    snprintf(long_line, sizeof long_line, "[run]\nworkload = quadratic\nlr = 0.1%0400d\n", 0);
    expect_error("long.ini", long_line, "long.ini:3:", "longer than");
}

static void test_grid_errors(void **state)
{
    (void)state;
    expect_error("empty.ini", "; nothing here\n", "empty.ini", "empty grid");
    expect_error("sweep_only.ini", "[sweep]\nname = x\n", "sweep_only.ini", "empty grid");
    expect_error("run_empty.ini", "[run]\n[run.a]\n", "run_empty.ini", "empty grid");
    /* a run of the grid that does not resolve: named with its settings */
    expect_error("epochs_steps.ini",
                 "[run]\nworkload = quadratic\nsteps = 5\n[run.a]\nepochs = 1, 2\n",
                 "epochs_steps.ini:5:", "[run.a]", "epochs=1", "give one of them");
    /* the same configuration twice */
    expect_error("overlap.ini",
                 "[run]\nworkload = quadratic\nsteps = 5\n[run.a]\nlr = 0.1, 0.2\n[run.b]\n"
                 "lr = 0.2\n",
                 "overlap.ini", "same configuration", "[run.a]", "[run.b]");
    /* more than the cap */
    expect_error("huge.ini",
                 "[run]\nworkload = quadratic\nsteps = 1,2,3,4,5,6,7,8,9,10\n"
                 "seed = 1,2,3,4,5,6,7,8,9,10\nlr = 1,2,3,4,5,6,7,8,9,10\n"
                 "dim = 1,2,3,4,5,6,7,8,9,10\nkappa = 1,2,3,4,5,6,7,8,9,10,11\n",
                 "huge.ini", "more than 100000 runs");
    /* a missing file: named, exit 2 */
    struct ds_experiment e;
    struct ds_err err = {{0}};
    char path[512];
    snprintf(path, sizeof path, "%s/no-such.ini", dir);
    ds_status st = ds_exp_load(path, &e, &err);
    assert_int_equal(ds_status_exit_code(st), 2);
    assert_non_null(strstr(err.msg, "no-such.ini"));
    assert_non_null(strstr(err.msg, "cannot open"));
}

/* ---- tables ---- */

static void test_table_roundtrip(void **state)
{
    (void)state;
    const char *path =
        write_file("t.csv", "a,b,c\n1,\"x, y\",\"say \"\"hi\"\"\"\n2,,\"two\nlines\"\n3,z\n");
    struct ds_table t;
    struct ds_err err = {{0}};
    assert_int_equal(ds_table_read(path, &t, &err), DS_OK);
    assert_int_equal(t.ncols, 3);
    assert_int_equal(t.nrows, 3);
    assert_string_equal(ds_table_get(&t, 0, "b"), "x, y");
    assert_string_equal(ds_table_get(&t, 0, "c"), "say \"hi\"");
    assert_string_equal(ds_table_get(&t, 1, "c"), "two\nlines");
    assert_string_equal(ds_table_get(&t, 2, "c"), ""); /* a short row is padded */
    assert_string_equal(ds_table_get(&t, 2, "nope"), "");
    assert_true(isnan(ds_table_num(&t, 1, "b")));
    assert_true(ds_table_num(&t, 2, "a") == 3.0);
    /* written back and read again: the same cells */
    char out[512];
    snprintf(out, sizeof out, "%s/t2.csv", dir);
    assert_int_equal(ds_table_write(&t, out, &err), DS_OK);
    struct ds_table u;
    assert_int_equal(ds_table_read(out, &u, &err), DS_OK);
    assert_int_equal(u.nrows, t.nrows);
    for (size_t r = 0; r < t.nrows; r++)
        for (int c = 0; c < t.ncols; c++) assert_string_equal(u.rows[r][c], t.rows[r][c]);
    ds_table_free(&u);
    /* append maps columns by name: the union in first-seen order */
    struct ds_table v;
    const char *p2 = write_file("v.csv", "c,d\n7,8\n");
    assert_int_equal(ds_table_read(p2, &v, &err), DS_OK);
    ds_table_append(&t, &v);
    assert_int_equal(t.ncols, 4);
    assert_string_equal(t.cols[3], "d");
    assert_int_equal(t.nrows, 4);
    assert_string_equal(ds_table_get(&t, 3, "c"), "7");
    assert_string_equal(ds_table_get(&t, 3, "a"), "");
    assert_string_equal(ds_table_get(&t, 0, "d"), "");
    ds_table_free(&v);
    ds_table_free(&t);
}

static void test_table_errors(void **state)
{
    (void)state;
    struct ds_table t;
    struct ds_err err = {{0}};
    /* a killed writer's last line (no newline) is not a row */
    const char *path = write_file("killed.csv", "a,b\n1,2\n3,");
    assert_int_equal(ds_table_read(path, &t, &err), DS_OK);
    assert_int_equal(t.nrows, 1);
    ds_table_free(&t);
    path = write_file("wide.csv", "a,b\n1,2\n1,2,3\n");
    assert_int_equal(ds_table_read(path, &t, &err), DS_ERR_INPUT);
    assert_non_null(strstr(err.msg, "wide.csv"));
    assert_non_null(strstr(err.msg, "line 3"));
    path = write_file("empty.csv", "");
    assert_int_equal(ds_table_read(path, &t, &err), DS_ERR_INPUT);
    assert_non_null(strstr(err.msg, "no header"));
    char missing[512];
    snprintf(missing, sizeof missing, "%s/missing.csv", dir);
    assert_int_equal(ds_status_exit_code(ds_table_read(missing, &t, &err)), 2);
    assert_non_null(strstr(err.msg, "missing.csv"));
}


/* ---- analysis ---- */

static void test_analysis(void **state)
{
    (void)state;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/sweep", dir);
    mkdir(sub, 0755);
    /* two workloads: w-acc (accuracy, higher better, target 0.9) and w-loss
     * (mse, lower better, target 0.1); arms sgd (two LRs) and adam (two LRs,
     * l2 0) plus adam l2 1e-3 and 1e-2 (a regularization series), two seeds */
    const char *csv =
        "run_id,workload,optimizer,lr,seed,l2,target,status,metric,final_eval_metric,final_train_metric,steps_to_target,time_to_target_s,samples_per_s\n"
        "a1,w-acc,sgd,0.1,1,0,0.9,ok,accuracy,0.90,0.95,100,1.0,1000\n"
        "a2,w-acc,sgd,0.1,2,0,0.9,ok,accuracy,0.92,0.96,120,1.2,1000\n"
        "a3,w-acc,sgd,1,1,0,0.9,ok,accuracy,0.97,0.99,50,0.5,1000\n"
        "a4,w-acc,sgd,1,2,0,0.9,diverged,accuracy,,,,,\n" /* rules lr 1 out */
        "a5,w-acc,adam,0.01,1,0,0.9,ok,accuracy,0.93,0.97,80,2.0,500\n"
        "a6,w-acc,adam,0.01,2,0,0.9,ok,accuracy,0.95,0.97,,,500\n" /* missed the target */
        "a7,w-acc,adam,0.001,1,0,0.9,ok,accuracy,0.80,0.80,,,500\n"
        "a8,w-acc,adam,0.001,2,0,0.9,ok,accuracy,0.82,0.84,,,500\n"
        "a9,w-acc,adam,0.01,1,0.001,0.9,ok,accuracy,0.91,0.92,,,500\n"
        "b1,w-acc,adam,0.01,1,0.01,0.9,ok,accuracy,0.85,0.85,,,500\n"
        "c1,w-loss,sgd,0.1,1,0,0.1,ok,mse,0.05,0.04,10,0.2,9000\n"
        "c2,w-loss,sgd,0.3,1,0,0.1,ok,mse,0.20,0.19,,,9000\n"
        "c3,w-loss,adam,0.01,1,0,0.1,ok,mse,0.08,0.07,30,0.6,8000\n";
    char path[600];
    snprintf(path, sizeof path, "%s/runs.csv", sub);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(csv, f);
    fclose(f);
    struct ds_analysis a;
    struct ds_err err = {{0}};
    if (ds_analysis_load(sub, &a, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_int_equal(a.n_workloads, 2);
    int wa = ds_analysis_workload(&a, "w-acc"), wl = ds_analysis_workload(&a, "w-loss");
    assert_true(a.higher_better[wa] && !a.higher_better[wl]);
    assert_true(a.target[wa] == 0.9 && a.target[wl] == 0.1);
    assert_int_equal(a.selected_by_val[wa], 0);
    assert_int_equal(a.n_arms, 6); /* w-acc: sgd, adam, adam l2=1e-3, adam l2=1e-2; w-loss: sgd, adam */
    const struct ds_an_arm *sgd = NULL, *adam = NULL, *lsgd = NULL;
    for (int i = 0; i < a.n_arms; i++) {
        const struct ds_an_arm *x = &a.arms[i];
        if (!strcmp(x->workload, "w-acc") && !strcmp(x->label, "sgd")) sgd = x;
        if (!strcmp(x->workload, "w-acc") && !strcmp(x->label, "adam l2=0")) adam = x;
        if (!strcmp(x->workload, "w-loss") && !strcmp(x->label, "sgd")) lsgd = x;
    }
    assert_non_null(sgd);
    assert_non_null(adam);
    assert_non_null(lsgd);
    /* sgd: lr 1 has the higher mean but a diverged seed: lr 0.1 is tuned */
    assert_int_equal(sgd->n_lr, 2);
    assert_true(sgd->lrs[sgd->best].lr == 0.1);
    assert_int_equal(sgd->lrs[1].n_ok, 1);
    const struct ds_an_lr *l = &sgd->lrs[sgd->best];
    assert_close(l->mean, 0.91, 1e-12);
    assert_close(l->std, sqrt(0.0002), 1e-12);
    assert_close(l->min, 0.90, 1e-12);
    assert_close(l->max, 0.92, 1e-12);
    assert_close(l->train_mean, 0.955, 1e-12);
    assert_close(l->steps_mean, 110, 1e-12);
    assert_close(l->time_mean, 1.1, 1e-12);
    /* adam: lr 0.01, but a seed missed the target: no steps to target */
    assert_true(adam->lrs[adam->best].lr == 0.01);
    assert_true(isnan(adam->lrs[adam->best].steps_mean));
    /* lower is better: lr 0.1 (mse 0.05) over 0.3 */
    assert_true(lsgd->lrs[lsgd->best].lr == 0.1);
    /* the l2 series: 0, 1e-3, 1e-2 from the adam arm */
    int ser[8], first = (int)(adam - a.arms);
    assert_int_equal(ds_analysis_series(&a, first, "l2", ser, 8), 3);
    assert_int_equal(ser[0], first); /* ascending strength: 0 first */
    assert_true(strstr(a.arms[ser[2]].label, "l2=0.01") != NULL);
    assert_int_equal(ds_analysis_series(&a, first, "dropout", ser, 8), 0);
    /* profiles: w-acc: sgd 1.1 s is the fastest, adam never (a seed missed);
     * w-loss: sgd 0.2 s, adam 0.6 s = 3x */
    assert_int_equal(a.n_prof_workloads, 2);
    int es = -1, ea = -1;
    for (int e = 0; e < a.n_entrants; e++) {
        if (!strcmp(a.entrants[e], "sgd")) es = e;
        if (!strcmp(a.entrants[e], "adam l2=0")) ea = e;
    }
    assert_true(es >= 0 && ea >= 0);
    assert_close(ds_analysis_rho(&a, es, 1.0), 1.0, 1e-12);
    assert_close(ds_analysis_rho(&a, ea, 2.9), 0.0, 1e-12);
    assert_close(ds_analysis_rho(&a, ea, 3.0), 0.5, 1e-12);
    assert_close(a.area[es], 1.0, 1e-12);
    /* rho = 0.5 on [3, 4], 0 before: area = 0.5 * 1/3 (trapezoid error < 1/300) */
    assert_close(a.area[ea], 0.5 / 3.0, 2e-3);
    ds_analysis_free(&a);
    /* summaries with arm_id, where the first row is a run that failed before
     * writing its metric (the sweep's own row: status failed, no metric, its
     * derived values unset): it joins its arm and rules its LR out, and the
     * workload's metric comes from the other rows */
    const char *csv2 =
        "run_id,workload,optimizer,lr,seed,step-size,status,metric,final_eval_metric,arm_id\n"
        "f1,w,sgd,1,1,0,failed,,,A\n"
        "f2,w,sgd,1,2,33,ok,accuracy,0.99,A\n"
        "f3,w,sgd,0.1,1,33,ok,accuracy,0.90,A\n"
        "f4,w,sgd,0.1,2,33,ok,accuracy,0.92,A\n";
    snprintf(path, sizeof path, "%s/runs.csv", sub);
    f = fopen(path, "w");
    assert_non_null(f);
    fputs(csv2, f);
    fclose(f);
    if (ds_analysis_load(sub, &a, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_int_equal(a.n_arms, 1);
    assert_string_equal(a.metric[0], "accuracy");
    assert_int_equal(a.higher_better[0], 1);
    assert_true(a.arms[0].lrs[a.arms[0].best].lr == 0.1); /* lr 1 had a failed seed */
    assert_string_equal(a.arms[0].label, "sgd");
    ds_analysis_free(&a);
    /* not a sweep folder */
    assert_int_equal(ds_status_exit_code(ds_analysis_load(dir, &a, &err)), 2);
    assert_non_null(strstr(err.msg, "not a sweep folder"));
}

/* Every experiment file shipped in configs/ loads, names itself after its
 * file, and has runs (the tests run from the repository's root). */
static void test_shipped_configs(void **state)
{
    (void)state;
    DIR *d = opendir("configs");
    if (!d) fail_msg("configs/: %s (run the tests from the repository's root)", strerror(errno));
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".ini") != 0) continue;
        char path[600], base[256];
        snprintf(path, sizeof path, "configs/%s", de->d_name);
        snprintf(base, sizeof base, "%.*s", (int)(len - 4), de->d_name);
        struct ds_experiment e;
        struct ds_err err = {{0}};
        ds_status st = ds_exp_load(path, &e, &err);
        if (st == DS_ERR_UNSUPPORTED) { /* valid, but for a build with more (MPI, NCCL) */
            print_message("# %-28s not runnable by this build: %s\n", path, err.msg);
            n++;
            continue;
        }
        if (st != DS_OK) fail_msg("%s: %s", path, err.msg);
        assert_string_equal(e.name, base);
        assert_true(e.n_points > 0);
        assert_true(e.description[0] != '\0');
        print_message("# %-28s %zu runs in %d groups\n", path, e.n_points, e.n_groups - 1);
        ds_exp_free(&e);
        n++;
    }
    closedir(d);
    if (n < 4) fail_msg("configs/ holds %d experiment files, expected bench, ci, optimizers, regularization", n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_section_product),
        cmocka_unit_test(test_groups),
        cmocka_unit_test(test_quoted_values),
        cmocka_unit_test(test_compare_section),
        cmocka_unit_test(test_errors_with_lines),
        cmocka_unit_test(test_grid_errors),
        cmocka_unit_test(test_table_roundtrip),
        cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_analysis),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
