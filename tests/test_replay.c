/*
 * test_replay.c: descent's fmnist-mlp training against PyTorch, step for step.
 * Each test runs one case of tests/replay_fmnist.py with Debian's
 * /usr/bin/python3: descent trains 200 steps (--shuffle off, --save-init,
 * --save), PyTorch replays them from descent's initial parameters on the same
 * batches, and every final tensor must agree within 1e-4 relative
 * (||descent - torch|| / ||torch||), as must the losses and accuracy descent
 * reports. The measured differences are printed as TAP comments.
 *
 *   adam       Adam, lr 1e-3, batch 128, 200 steps
 *   sgd        SGD, lr 0.005, momentum 0.9, batch 128, 200 steps
 *   sgd-epoch  the same SGD, batch 256, 240 steps (through the short batch
 *              that ends the epoch), --normalize
 *
 * Skipped (counted by tests/run.sh) without /usr/bin/python3 or its torch
 * (the script's exit 77), or when DESCENT_DATA is unset and Debian's
 * dataset-fashion-mnist is not installed; with DESCENT_DATA set, missing files
 * fail. DESCENT_BIN names the descent binary (default build/descent),
 * DESCENT_ROOT the source tree, DESCENT_KEEP_TMP=1 keeps the scratch folders,
 * and DESCENT_REPLAY_ARGS adds options to the script (e.g.
 * "--torch-lr-scale 1.01", to see the tests fail).
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

#define PYTHON3 "/usr/bin/python3"
#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define EXIT_SKIP 77
/* A case takes about 3 s here (2 cores, -O2) and a few times that under
 * ASan or a loaded machine; a hung run is killed at this limit. */
#define CASE_TIMEOUT_S 300.0

static const char *descent_bin(void)
{
    const char *b = getenv("DESCENT_BIN");
    return b && b[0] ? b : "build/descent";
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The Fashion-MNIST folder to use, or NULL (and a note) when nobody asked for
 * the data and Debian's package is not installed: the test is then a skip.
 * With DESCENT_DATA set, every file must be there (as .gz or plain). */
static const char *data_dir(void)
{
    static const char *const stems[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                        "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
    const char *env = getenv("DESCENT_DATA");
    const char *dir = env && env[0] ? env : FMNIST_DEFAULT_DIR;
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) {
        char gz[1024], plain[1024];
        snprintf(plain, sizeof plain, "%s/%s", dir, stems[i]);
        snprintf(gz, sizeof gz, "%s/%s.gz", dir, stems[i]);
        if (exists(gz) || exists(plain)) continue;
        if (env && env[0]) fail_msg("DESCENT_DATA=%s: no %s(.gz) there", dir, stems[i]);
        print_message("# Fashion-MNIST not found (%s missing; install Debian's dataset-fashion-mnist "
                      "or set DESCENT_DATA)\n", gz);
        return NULL;
    }
    return dir;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Whole file, NUL-terminated (an empty string when unreadable). */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    while (f && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
    }
    if (f) fclose(f);
    buf[n] = '\0';
    return buf;
}

/* Each line of text as a TAP comment. */
static void print_lines(const char *text)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        print_message("# %.*s\n", len, p);
        p += len + (nl ? 1 : 0);
    }
}

/* The last 6000 characters of text, copied to a static buffer so that text
 * can be freed before fail_msg() jumps out (LeakSanitizer watches this test). */
static const char *tail_of(char *text)
{
    static char buf[6001];
    size_t n = strlen(text);
    snprintf(buf, sizeof buf, "%s", n > 6000 ? text + n - 6000 : text);
    free(text);
    return buf;
}

/* Runs argv (argv[0] the program) in its own process group, stdout and stderr
 * into log; the wait status, or -1 when it ran past the limit (the whole group
 * is then killed). */
static int run_logged(char *const argv[], const char *log, double timeout)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) fail_msg("cannot start %s: %s", argv[0], strerror(rc));
    double t0 = now_s();
    for (;;) {
        int status;
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) return status;
        if (w < 0 && errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
        if (now_s() - t0 > timeout) {
            kill(-pid, SIGKILL); /* the script and the descent it started */
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* The value after "key=" in the script's RESULT line, or NaN. */
static double result_field(const char *out, const char *key)
{
    const char *r = strstr(out, "\nRESULT ");
    if (!r) return NAN;
    const char *nl = strchr(r + 1, '\n');
    char pat[64];
    snprintf(pat, sizeof pat, " %s=", key);
    const char *k = strstr(r + 1, pat);
    if (!k || (nl && k > nl)) return NAN;
    return strtod(k + strlen(pat), NULL);
}

static void replay_case(const char *name)
{
    if (access(PYTHON3, X_OK) != 0) {
        print_message("# %s not found: the PyTorch replay needs Debian's python3 and python3-torch\n", PYTHON3);
        skip();
    }
    if (!data_dir()) skip();
    const char *bin = descent_bin();
    if (access(bin, X_OK) != 0)
        fail_msg("no descent binary at %s (build it, or point DESCENT_BIN at it)", bin);

    char dir[256], script[1024], log[300];
    if (tu_tmpdir_make(dir, sizeof dir, "replay") != 0) fail_msg("mkdtemp: %s", strerror(errno));
    snprintf(script, sizeof script, "%s/tests/replay_fmnist.py", tu_root());
    snprintf(log, sizeof log, "%s/replay.log", dir);

    /* argv: the script, the case, its scratch folder, then DESCENT_REPLAY_ARGS */
    char *argv[40];
    int n = 0;
    argv[n++] = (char *)PYTHON3;
    argv[n++] = script;
    argv[n++] = (char *)"--descent";
    argv[n++] = (char *)bin;
    argv[n++] = (char *)"--case";
    argv[n++] = (char *)name;
    argv[n++] = (char *)"--keep";
    argv[n++] = dir;
    const char *extra_env = getenv("DESCENT_REPLAY_ARGS");
    char extra[1024];
    snprintf(extra, sizeof extra, "%s", extra_env ? extra_env : "");
    for (char *save = NULL, *a = strtok_r(extra, " \t", &save); a; a = strtok_r(NULL, " \t", &save)) {
        if (n >= 39) fail_msg("DESCENT_REPLAY_ARGS: too many words");
        argv[n++] = a;
    }
    argv[n] = NULL;

    double t0 = now_s();
    int status = run_logged(argv, log, CASE_TIMEOUT_S);
    double secs = now_s() - t0;
    char *out = slurp(log);
    const char *keep = getenv("DESCENT_KEEP_TMP");
    if (keep && keep[0] && strcmp(keep, "0") != 0) print_message("# scratch folder kept: %s\n", dir);
    else tu_tmpdir_remove(dir);

    if (status == -1)
        fail_msg("replay_fmnist.py --case %s did not finish within %.0f s (killed); its output:\n%s", name,
                 CASE_TIMEOUT_S, tail_of(out));
    if (WIFSIGNALED(status))
        fail_msg("replay_fmnist.py --case %s was killed by signal %d (%s); its output:\n%s", name,
                 WTERMSIG(status), strsignal(WTERMSIG(status)), tail_of(out));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (code == EXIT_SKIP) {
        print_lines(out);
        free(out);
        skip();
    }
    print_lines(out);
    print_message("# case %s: exit %d after %.1f s\n", name, code, secs);
    double rel = result_field(out, "max_rel");
    double tol = result_field(out, "tol");
    free(out);
    if (code != 0) /* the whole output is in the log above */
        fail_msg("replay_fmnist.py --case %s exited %d (1: a difference over tolerance, 2: descent or the "
                 "script failed); max relative difference %.3g", name, code, rel);
    /* exit 0 must come with the numbers that justify it */
    if (isnan(rel) || isnan(tol)) fail_msg("replay_fmnist.py --case %s exited 0 without a RESULT line", name);
    assert_le(rel, tol);
}

static void test_replay_adam(void **state)
{
    (void)state;
    replay_case("adam");
}

static void test_replay_sgd_momentum(void **state)
{
    (void)state;
    replay_case("sgd");
}

static void test_replay_sgd_epoch_boundary_normalize(void **state)
{
    (void)state;
    replay_case("sgd-epoch");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replay_adam),
        cmocka_unit_test(test_replay_sgd_momentum),
        cmocka_unit_test(test_replay_sgd_epoch_boundary_normalize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
