/*
 * test_scale.c: `descent scale`, the projection: the alpha-beta formulas
 * against their closed forms (ring at P = 2 is 2 alpha + B / beta, the
 * two-level ring against its two phases), the properties the report relies
 * on (efficiency <= 1 and falling with P at fixed bandwidth, the no-overlap
 * step never faster), the committed model and interconnect files loading,
 * a run folder's summary.csv read by column name into the files the report
 * picks up (projection.csv with `projected` = 1, projection.md, the figure),
 * and bad input exiting 2 with the flag, file or key named.
 */
#include "testutil.h"
#include "../harness/scale.h"
#include "../harness/table.h"
#include "../core/fileio.h"

#include <fcntl.h>
#include <sys/stat.h>

/* Runs the command with stdout and stderr captured into out/err_text. */
static int run_captured(char **argv, int argc, char *out, size_t out_len, char *err_text,
                        size_t err_len)
{
    char dir[256], po[300], pe[300];
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "scale-io"), 0);
    snprintf(po, sizeof po, "%s/out", dir);
    snprintf(pe, sizeof pe, "%s/err", dir);
    fflush(stdout);
    fflush(stderr);
    int save_o = dup(1), save_e = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(save_o >= 0 && save_e >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = ds_cmd_scale(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(save_o, 1);
    dup2(save_e, 2);
    close(save_o), close(save_e), close(fo), close(fe);
    const char *paths[2] = {po, pe};
    char *bufs[2] = {out, err_text};
    size_t lens[2] = {out_len, err_len};
    for (int k = 0; k < 2; k++) {
        FILE *f = fopen(paths[k], "r");
        assert_non_null(f);
        size_t n = fread(bufs[k], 1, lens[k] - 1, f);
        bufs[k][n] = '\0';
        fclose(f);
    }
    tu_tmpdir_remove(dir);
    return rc;
}

static void nets_path(char *buf, size_t len)
{
    snprintf(buf, len, "%s/configs/scale/interconnects.ini", tu_root());
}

static void load_nets(struct ds_scale_nets *nets)
{
    char p[512];
    struct ds_err err = {{0}};
    nets_path(p, sizeof p);
    if (ds_scale_nets_load(p, nets, &err) != DS_OK) fail_msg("%s", err.msg);
}

static int net_index(const struct ds_scale_nets *nets, const char *name)
{
    for (int i = 0; i < nets->n; i++)
        if (strcmp(nets->v[i].name, name) == 0) return i;
    fail_msg("no interconnect '%s' in configs/scale/interconnects.ini", name);
    return -1;
}

static struct ds_scale_model test_model(void)
{
    struct ds_scale_model m;
    memset(&m, 0, sizeof m);
    snprintf(m.name, sizeof m.name, "t");
    m.params = 25e6;
    m.grad_bytes_per_param = 4;
    m.compute_ms = 100;
    m.optimizer_ms = 1;
    m.batch_per_gpu = 32;
    m.backward_fraction = 2.0 / 3.0;
    return m;
}

static void test_ring_closed_forms(void **state)
{
    (void)state;
    const double alpha_us = 5, bw = 25, bytes = 1e8; /* 1e8 B at 25 GB/s: 4 ms */
    /* P = 2: one reduce-scatter step and one all-gather step, each half the bytes */
    assert_close(ds_scale_ring_ms(alpha_us, bw, 2, bytes, 1), 2 * alpha_us * 1e-3 + bytes / (bw * 1e9) * 1e3, 1e-12);
    assert_close(ds_scale_ring_ms(alpha_us, bw, 2, bytes, 1), 4.010, 1e-12);
    assert_close(ds_scale_ring_ms(alpha_us, bw, 1, bytes, 1), 0.0, 0.0); /* nothing to reduce */
    /* P = 8: 14 steps of alpha, 2 * 7/8 of the bytes */
    assert_close(ds_scale_ring_ms(alpha_us, bw, 8, bytes, 1), 14 * 5e-3 + 1.75 * 4.0, 1e-12);
    /* 10 buckets pay the latency 10 times, the bandwidth term once */
    assert_close(ds_scale_ring_ms(alpha_us, bw, 8, bytes, 10) - ds_scale_ring_ms(alpha_us, bw, 8, bytes, 1),
                 9 * 14 * 5e-3, 1e-12);
    /* large P: the bandwidth term tends to 2 B / beta */
    double big = ds_scale_ring_ms(0, bw, 1 << 20, bytes, 1);
    assert_le(big, 8.0);
    assert_close(big, 8.0, 1e-4);
}

static void test_two_level(void **state)
{
    (void)state;
    struct ds_scale_nets nets;
    load_nets(&nets);
    int h = net_index(&nets, "dgx-h100");
    const struct ds_scale_net *n = &nets.v[h], *in = &nets.v[n->intra], *out = &nets.v[n->inter];
    assert_int_equal(n->hier, 1);
    assert_int_equal(n->gpus_per_node, 8);
    const double bytes = 2.5e8;
    /* inside one node: the flat ring on the intra-node link */
    for (int p = 1; p <= 8; p *= 2)
        assert_close(ds_scale_allreduce_ms(&nets, h, p, bytes, 1),
                     ds_scale_ring_ms(in->alpha_us, in->bw_GBps, p, bytes, 1), 1e-12);
    /* 2 nodes: the node's ring, then the shards across 2 nodes over L links */
    double want = ds_scale_ring_ms(in->alpha_us, in->bw_GBps, 8, bytes, 1) +
                  2 * out->alpha_us * 1e-3 + bytes / (n->nics_per_node * out->bw_GBps * 1e9) * 1e3;
    assert_close(ds_scale_allreduce_ms(&nets, h, 16, bytes, 1), want, 1e-9);
    /* a count that is not whole nodes is refused, naming the flag and the profile */
    struct ds_err err = {{0}};
    assert_int_equal(ds_scale_check_gpus(n, 12, &err), DS_ERR_USAGE);
    assert_non_null(strstr(err.msg, "--gpus"));
    assert_non_null(strstr(err.msg, "dgx-h100"));
    assert_int_equal(ds_scale_check_gpus(n, 4, &err), DS_OK);
    assert_int_equal(ds_scale_check_gpus(n, 1024, &err), DS_OK);
    ds_scale_nets_free(&nets);
}

/* Efficiency <= 1, not rising with P on any profile, strictly falling
 * without overlap on a flat one; no-overlap step >= overlapped step. */
static void test_properties(void **state)
{
    (void)state;
    struct ds_scale_nets nets;
    load_nets(&nets);
    struct ds_scale_model m = test_model();
    const double bytes = m.params * m.grad_bytes_per_param;
    const double overlaps[] = {0.0, 0.5, 1.0};
    for (int i = 0; i < nets.n; i++) {
        for (size_t o = 0; o < sizeof overlaps / sizeof overlaps[0]; o++) {
            struct ds_scale_point prev = {0};
            for (int p = 8; p <= 4096; p *= 2) {
                struct ds_scale_point pt;
                ds_scale_point_eval(&m, p, ds_scale_allreduce_ms(&nets, i, p, bytes, 1), overlaps[o], &pt);
                assert_le(pt.efficiency, 1.0);
                assert_le(pt.efficiency_no_overlap, pt.efficiency);
                assert_le(pt.step_ms, pt.step_ms_no_overlap);
                assert_true(pt.efficiency > 0 && pt.exposed_ms >= 0);
                assert_le(pt.exposed_ms, pt.allreduce_ms);
                assert_close(pt.speedup, p * pt.efficiency, 1e-9 * p);
                assert_close(pt.samples_per_s, p * m.batch_per_gpu / pt.step_ms * 1e3, 1e-9 * pt.samples_per_s);
                if (p > 8) {
                    assert_le(pt.efficiency, prev.efficiency);
                    if (nets.v[i].hier) assert_le(pt.efficiency_no_overlap, prev.efficiency_no_overlap);
                    else if (!(pt.efficiency_no_overlap < prev.efficiency_no_overlap))
                        fail_msg("%s: no-overlap efficiency %g at %d GPUs is not below %g at %d",
                                 nets.v[i].name, pt.efficiency_no_overlap, p, prev.efficiency_no_overlap, p / 2);
                }
                if (overlaps[o] == 0.0) assert_close(pt.step_ms, pt.step_ms_no_overlap, 1e-12);
                prev = pt;
            }
        }
    }
    /* fully hidden: communication shorter than the backward pass costs nothing */
    struct ds_scale_point pt;
    ds_scale_point_eval(&m, 64, 10.0, 1.0, &pt);
    assert_close(pt.exposed_ms, 0.0, 0.0);
    assert_close(pt.efficiency, 1.0, 1e-15);
    assert_close(pt.step_ms_no_overlap, 111.0, 1e-12);
    /* half hidden: 100 ms of comm against 0.5 x 66.7 ms of backward */
    ds_scale_point_eval(&m, 64, 100.0, 0.5, &pt);
    assert_close(pt.exposed_ms, 100.0 - 0.5 * 2.0 / 3.0 * 100.0, 1e-9);
    ds_scale_nets_free(&nets);
}

/* The committed model files load, each with its source. */
static void test_model_files(void **state)
{
    (void)state;
    const char *names[] = {"gpt2-124m", "resnet50", "llama2-7b", "fmnist-mlp"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/configs/models/%s.ini", tu_root(), names[k]);
        struct ds_scale_model m;
        struct ds_err err = {{0}};
        if (ds_scale_model_load(p, &m, &err) != DS_OK) fail_msg("%s", err.msg);
        assert_string_equal(m.name, names[k]);
        assert_true(m.params > 0 && m.compute_ms > 0 && m.batch_per_gpu > 0 && m.optimizer_ms >= 0);
        assert_true(strlen(m.source) > 40);
        assert_int_equal(m.measured, 0);
        assert_close(m.backward_fraction, 2.0 / 3.0, 1e-12);
    }
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* A run folder: summary.csv read by column name (columns in another order
 * and extra ones), 2 ranks: the per-GPU batch is half the global one. */
static void test_run_folder(void **state)
{
    (void)state;
    char dir[256], p[1024], out_dir[400], nets[512];
    static char out[32768], err[4096];
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "scale"), 0);
    snprintf(p, sizeof p, "%s/summary.csv", dir);
    write_text(p, "run_id,workload,optimizer,extra,ranks,batch,comm_ms,optimizer_ms,compute_ms,n_params,backend,threads,status\n"
                  "abc,fmnist-mlp,adam,\"x,y\",2,256,0.2,0.5,2,1000000,cpu,1,ok\n");
    snprintf(out_dir, sizeof out_dir, "%s/proj", dir);
    nets_path(nets, sizeof nets);
    char *argv[] = {"--model", dir, "--out", out_dir, "--gpus", "16,8", "--interconnects", nets,
                    "--interconnect", "ib-ndr,dgx-h100"};
    int rc = run_captured(argv, 10, out, sizeof out, err, sizeof err);
    if (rc != 0) fail_msg("exit %d; stderr: %s", rc, err);
    assert_non_null(strstr(out, "PROJECTION"));
    assert_non_null(strstr(out, "MEASURED"));

    struct ds_table t;
    struct ds_err e = {{0}};
    snprintf(p, sizeof p, "%s/projection.csv", out_dir);
    if (ds_table_read(p, &t, &e) != DS_OK) fail_msg("%s", e.msg);
    const char *cols[] = {"model", "interconnect", "gpus", "grad_mb", "compute_ms", "allreduce_ms",
                          "exposed_comm_ms", "step_ms", "step_ms_no_overlap", "efficiency",
                          "efficiency_no_overlap", "samples_per_s", "projected"};
    for (int c = 0; c < (int)(sizeof cols / sizeof cols[0]); c++) {
        if (c >= t.ncols || strcmp(t.cols[c], cols[c]) != 0)
            fail_msg("projection.csv column %d is '%s', expected '%s'", c, c < t.ncols ? t.cols[c] : "(none)", cols[c]);
    }
    assert_int_equal(t.nrows, 4); /* 2 interconnects x 2 GPU counts, in file order, GPUs sorted */
    assert_string_equal(ds_table_get(&t, 0, "interconnect"), "ib-ndr");
    assert_string_equal(ds_table_get(&t, 0, "gpus"), "8");
    assert_string_equal(ds_table_get(&t, 1, "gpus"), "16");
    assert_string_equal(ds_table_get(&t, 2, "interconnect"), "dgx-h100");
    for (size_t r = 0; r < t.nrows; r++) {
        assert_string_equal(ds_table_get(&t, r, "projected"), "1");
        assert_string_equal(ds_table_get(&t, r, "model"), "fmnist-mlp");
        assert_string_equal(ds_table_get(&t, r, "compute_source"), "measured");
        assert_close(ds_table_num(&t, r, "grad_mb"), 4.0, 1e-9);
        assert_close(ds_table_num(&t, r, "compute_ms"), 2.0, 0.0);
        double step = ds_table_num(&t, r, "step_ms"), gpus = ds_table_num(&t, r, "gpus");
        assert_le(ds_table_num(&t, r, "efficiency"), 1.0);
        assert_close(ds_table_num(&t, r, "efficiency"), 2.5 / step, 1e-8);
        /* 128 samples per GPU: the global batch of 256 over 2 ranks */
        assert_close(ds_table_num(&t, r, "samples_per_s"), gpus * 128 / step * 1e3, 1e-6 * gpus * 128 / step * 1e3);
    }
    ds_table_free(&t);

    char *text = NULL;
    size_t len = 0;
    snprintf(p, sizeof p, "%s/projection.md", out_dir);
    if (ds_file_read_all(p, &text, &len, &e) != DS_OK) fail_msg("%s", e.msg);
    assert_non_null(strstr(text, "Projection (not measured)"));
    assert_non_null(strstr(text, "MEASURED on this machine"));
    assert_non_null(strstr(text, "## Assumptions"));
    assert_non_null(strstr(text, "## Sources"));
    free(text);
    const char *figs[] = {"png", "svg", "gp"};
    for (int k = 0; k < 3; k++) {
        struct stat sb;
        snprintf(p, sizeof p, "%s/plots/projection.%s", out_dir, figs[k]);
        if (stat(p, &sb) != 0 || sb.st_size == 0) fail_msg("%s missing or empty", p);
    }
    snprintf(p, sizeof p, "%s/plots/projection.gp", out_dir);
    if (ds_file_read_all(p, &text, &len, &e) != DS_OK) fail_msg("%s", e.msg);
    assert_non_null(strstr(text, "set title 'PROJECTION"));
    assert_non_null(strstr(text, "set logscale x 2"));
    free(text);
    tu_tmpdir_remove(dir);
}

/* Bad input: exit 2, the message naming the flag, file or key. */
static void test_bad_input(void **state)
{
    (void)state;
    static char out[32768], err[4096];
    char dir[256], nets[512], model[512], bad_model[512], no_summary[512], sweep[512], runs[600];
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "scale-bad"), 0);
    nets_path(nets, sizeof nets);
    snprintf(model, sizeof model, "%s/configs/models/resnet50.ini", tu_root());
    snprintf(bad_model, sizeof bad_model, "%s/m.ini", dir);
    write_text(bad_model, "[model]\nname = m\nparams = 1e6\ngrad_bytes_per_param = 4\n"
                          "optimizer_ms = 1\nbatch_per_gpu = 8\nsource = a test\n");
    snprintf(no_summary, sizeof no_summary, "%s/empty", dir);
    mkdir(no_summary, 0755);
    snprintf(sweep, sizeof sweep, "%s/sweep", dir);
    mkdir(sweep, 0755);
    snprintf(runs, sizeof runs, "%s/runs.csv", sweep);
    write_text(runs, "run_id\n");
    char out_dir[512];
    snprintf(out_dir, sizeof out_dir, "%s/out", dir);
    struct {
        char *argv[8];
        const char *want[2];
    } cases[] = {
        {{"--gpus", "8,abc"}, {"--gpus", "abc"}},
        {{"--gpus", "0"}, {"--gpus", "'0'"}},
        {{"--gpus", "8,,16"}, {"--gpus", "8,,16"}},
        {{"--gpus", "-8"}, {"--gpus", "-8"}},
        {{"--gpus", "2.5"}, {"--gpus", "2.5"}},
        {{"--gpus", "12"}, {"--gpus", "dgx-h100"}},
        {{"--interconnect", "token-ring"}, {"--interconnect", "nvlink4"}},
        {{"--overlap", "1.5"}, {"--overlap", "1.5"}},
        {{"--bogus", "1"}, {"--bogus", "--gpus"}},
        {{"--gpus"}, {"--gpus", "needs a value"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char *argv[12] = {"--model", model, "--interconnects", nets, "--out", out_dir};
        int argc = 6;
        for (int k = 0; k < 8 && cases[c].argv[k]; k++) argv[argc++] = cases[c].argv[k];
        int rc = run_captured(argv, argc, out, sizeof out, err, sizeof err);
        if (rc != 2) fail_msg("%s %s: exit %d, expected 2 (stderr: %s)", cases[c].argv[0],
                              cases[c].argv[1] ? cases[c].argv[1] : "", rc, err);
        for (int w = 0; w < 2; w++)
            if (!strstr(err, cases[c].want[w]))
                fail_msg("%s: message '%s' does not mention '%s'", cases[c].argv[0], err, cases[c].want[w]);
    }
    struct {
        const char *model;
        const char *want[2];
    } inputs[] = {
        {bad_model, {"m.ini", "compute_ms_per_step"}},
        {no_summary, {"empty", "summary.csv"}},
        {sweep, {"summary.csv", "sweep folder"}},
        {"/nonexistent/model.ini", {"--model", "/nonexistent/model.ini"}},
    };
    for (size_t c = 0; c < sizeof inputs / sizeof inputs[0]; c++) {
        char *argv[] = {"--model", (char *)inputs[c].model, "--interconnects", nets, "--out", out_dir};
        int rc = run_captured(argv, 6, out, sizeof out, err, sizeof err);
        if (rc != 2) fail_msg("--model %s: exit %d, expected 2 (stderr: %s)", inputs[c].model, rc, err);
        for (int w = 0; w < 2; w++)
            if (!strstr(err, inputs[c].want[w]))
                fail_msg("--model %s: message '%s' does not mention '%s'", inputs[c].model, err, inputs[c].want[w]);
    }
    /* an interconnects file with a profile missing a key: file, section and key named */
    char bad_nets[512];
    snprintf(bad_nets, sizeof bad_nets, "%s/nets.ini", dir);
    write_text(bad_nets, "[slow]\nalpha_us = 10\nsource = a test\n");
    char *argv[] = {"--model", model, "--interconnects", bad_nets, "--out", out_dir};
    int rc = run_captured(argv, 6, out, sizeof out, err, sizeof err);
    assert_int_equal(rc, 2);
    if (!strstr(err, "nets.ini") || !strstr(err, "[slow]") || !strstr(err, "bandwidth_GBps"))
        fail_msg("message '%s' does not name the file, section and key", err);
    struct stat sb;
    assert_int_not_equal(stat(out_dir, &sb), 0); /* nothing written on bad input */
    tu_tmpdir_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_closed_forms),
        cmocka_unit_test(test_two_level),
        cmocka_unit_test(test_properties),
        cmocka_unit_test(test_model_files),
        cmocka_unit_test(test_run_folder),
        cmocka_unit_test(test_bad_input),
    };
    return cmocka_run_group_tests_name("scale", tests, NULL, NULL);
}
