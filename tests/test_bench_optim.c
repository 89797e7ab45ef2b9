/*
 * test_bench_optim.c: `descent bench-optim` in-process, on a small buffer: the
 * machine-readable line carries the bytes counted and finite positive
 * figures, and bad flags exit 2 naming the flag and the valid choices. It is
 * a benchmark: no assertion on how fast anything is.
 */
#include "testutil.h"
#include "../harness/bench_optim.h"

#include <fcntl.h>

/* Runs the command with stdout and stderr captured into out/err_text. */
static int run_captured(char **argv, int argc, char *out, size_t out_len, char *err_text,
                        size_t err_len)
{
    char dir[256], po[300], pe[300];
    assert_int_equal(tu_tmpdir_make(dir, sizeof dir, "bench-optim"), 0);
    snprintf(po, sizeof po, "%s/out", dir);
    snprintf(pe, sizeof pe, "%s/err", dir);
    fflush(stdout);
    fflush(stderr);
    int save_o = dup(1), save_e = dup(2);
    int fo = open(po, O_WRONLY | O_CREAT | O_TRUNC, 0600), fe = open(pe, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(save_o >= 0 && save_e >= 0 && fo >= 0 && fe >= 0);
    dup2(fo, 1);
    dup2(fe, 2);
    int rc = ds_cmd_bench_optim(argc, argv);
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

/* The value of key=... in the line starting "bench-optim ", as a double. */
static double kv(const char *text, const char *key)
{
    const char *line = strstr(text, "\nbench-optim ");
    if (!line) fail_msg("no machine-readable line in:\n%s", text);
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *p = strstr(line, pat);
    if (!p) fail_msg("no %s= in:\n%s", key, line);
    return strtod(p + strlen(pat), NULL);
}

static void test_line(void **state)
{
    (void)state;
    static char out[8192], err[4096];
    char *argv[] = {"--optimizer", "adam", "--n", "1e5", "--threads", "2", "--repeat", "3"};
    int rc = run_captured(argv, 8, out, sizeof out, err, sizeof err);
    if (rc != 0) fail_msg("exit %d; stderr: %s", rc, err);
    assert_non_null(strstr(out, "\nbench-optim optimizer=adam n=100000 threads=2 repeat=3 slots=2 bytes_per_param=28 "));
    const char *keys[] = {"step_ms", "params_per_s", "step_gbs", "triad_gbs", "ratio"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        double v = kv(out, keys[k]);
        if (!(isfinite(v) && v > 0)) fail_msg("%s = %g, expected finite and > 0", keys[k], v);
    }
    /* params/s and GB/s are the same median, counted two ways. */
    assert_close(kv(out, "step_gbs") * 1e9 / 28.0, kv(out, "params_per_s"), 1e-3 * kv(out, "params_per_s"));

    char *sgd[] = {"--optimizer", "sgd", "--n", "1000", "--repeat", "1"};
    rc = run_captured(sgd, 6, out, sizeof out, err, sizeof err);
    if (rc != 0) fail_msg("exit %d; stderr: %s", rc, err);
    assert_non_null(strstr(out, " slots=0 bytes_per_param=12 ")); /* sgd without momentum: p, g, p */
}

static void test_bad_flags(void **state)
{
    (void)state;
    static char out[8192], err[4096];
    struct {
        char *argv[2];
        int argc;
        const char *want[2];
    } cases[] = {
        {{"--optimizer", "nope"}, 2, {"--optimizer", "adamw"}},
        {{"--n", "0"}, 2, {"--n", "out of range"}},
        {{"--n", "12x"}, 2, {"--n", "not an integer"}},
        {{"--repeat", "1.5"}, 2, {"--repeat", "not an integer"}},
        {{"--threads", NULL}, 1, {"--threads", "needs a value"}},
        {{"--frobnicate", "1"}, 2, {"--frobnicate", "--optimizer, --n, --threads, --repeat"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int rc = run_captured(cases[c].argv, cases[c].argc, out, sizeof out, err, sizeof err);
        if (rc != 2) fail_msg("%s %s: exit %d, expected 2", cases[c].argv[0], cases[c].argv[1] ? cases[c].argv[1] : "", rc);
        for (int w = 0; w < 2; w++)
            if (!strstr(err, cases[c].want[w]))
                fail_msg("%s: message '%s' does not mention '%s'", cases[c].argv[0], err, cases[c].want[w]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line),
        cmocka_unit_test(test_bad_flags),
    };
    return cmocka_run_group_tests_name("bench_optim", tests, NULL, NULL);
}
