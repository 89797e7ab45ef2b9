/*
 * test_io.c: safetensors checkpoints and .npy files: round trips, and every
 * way a file can be wrong giving an error that names the file and the
 * problem (never a crash).
 */
#include "testutil.h"

#include "../core/fileio.h"
#include "../core/safetensors.h"
#include "../workloads/npy.h"

#include <unistd.h>

static char dir[256];

static int setup(void **s)
{
    (void)s;
    return tu_tmpdir_make(dir, sizeof dir, "io");
}

static int teardown(void **s)
{
    (void)s;
    return tu_tmpdir_remove(dir);
}

static void layout_mlp(struct ds_param_layout *l, int in, int hidden)
{
    memset(l, 0, sizeof *l);
    int64_t w[2] = {hidden, in}, b[1] = {hidden}, w2[2] = {3, hidden}, b2[1] = {3};
    ds_params_add(l, "0.weight", 2, w, 0);
    ds_params_add(l, "0.bias", 1, b, 1);
    ds_params_add(l, "2.weight", 2, w2, 0);
    ds_params_add(l, "2.bias", 1, b2, 1);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_safetensors_round_trip(void **s)
{
    (void)s;
    struct ds_param_layout l;
    layout_mlp(&l, 5, 4);
    float *a = malloc(l.total * sizeof *a), *b = calloc(l.total, sizeof *b);
    for (size_t i = 0; i < l.total; i++) a[i] = (float)i * 0.25f - 3.0f;
    char path[300];
    snprintf(path, sizeof path, "%s/m.safetensors", dir);
    struct ds_err err;
    assert_int_equal(ds_safetensors_save(path, &l, a, "test", &err), DS_OK);
    assert_int_equal(ds_safetensors_load(path, &l, b, &err), DS_OK);
    assert_memory_equal(a, b, l.total * sizeof *a);
    /* header: 8-byte length, JSON with the names, data 8-aligned */
    char *raw;
    size_t len;
    assert_int_equal(ds_file_read_all(path, &raw, &len, &err), DS_OK);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)(unsigned char)raw[i] << (8 * i);
    assert_int_equal(hlen % 8, 0);
    assert_int_equal(len, 8 + hlen + l.total * 4);
    assert_non_null(strstr(raw + 8, "\"0.weight\":{\"dtype\":\"F32\",\"shape\":[4,5]"));
    free(raw);
    free(a), free(b);
    ds_params_free(&l);
}

/* Loads `path` into the 5-4-3 layout and expects DS_ERR_INPUT with both
 * fragments in the message. */
static void expect_load_error(const char *path, const char *frag1, const char *frag2)
{
    struct ds_param_layout l;
    layout_mlp(&l, 5, 4);
    float *b = calloc(l.total, sizeof *b);
    struct ds_err err = {{0}};
    ds_status st = ds_safetensors_load(path, &l, b, &err);
    if (st == DS_OK) fail_msg("loading %s succeeded", path);
    if (!strstr(err.msg, path)) fail_msg("message does not name the file: %s", err.msg);
    if (frag1 && !strstr(err.msg, frag1)) fail_msg("message lacks '%s': %s", frag1, err.msg);
    if (frag2 && !strstr(err.msg, frag2)) fail_msg("message lacks '%s': %s", frag2, err.msg);
    free(b);
    ds_params_free(&l);
}

static void test_safetensors_errors(void **s)
{
    (void)s;
    char path[300], good[300];
    struct ds_err err;
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    expect_load_error(path, "cannot open", NULL);

    snprintf(path, sizeof path, "%s/short", dir);
    write_bytes(path, "abc", 3);
    expect_load_error(path, "not a safetensors file", NULL);

    snprintf(path, sizeof path, "%s/hugeheader", dir);
    write_bytes(path, "\xff\xff\xff\xff\xff\xff\x00\x00{}", 10);
    expect_load_error(path, "header length", NULL);

    snprintf(path, sizeof path, "%s/notjson", dir);
    write_bytes(path, "\x04\x00\x00\x00\x00\x00\x00\x00nope", 12);
    expect_load_error(path, "not a JSON object", NULL);

    /* a valid file of a different model */
    struct ds_param_layout other;
    layout_mlp(&other, 6, 4);
    float *x = calloc(other.total, sizeof *x);
    snprintf(good, sizeof good, "%s/other.safetensors", dir);
    assert_int_equal(ds_safetensors_save(good, &other, x, NULL, &err), DS_OK);
    expect_load_error(good, "0.weight", "shape [4, 6], the model needs [4, 5]");

    /* truncated: the data section cut short */
    struct ds_param_layout same;
    layout_mlp(&same, 5, 4);
    snprintf(good, sizeof good, "%s/same.safetensors", dir);
    assert_int_equal(ds_safetensors_save(good, &same, x, NULL, &err), DS_OK);
    char *raw;
    size_t len;
    assert_int_equal(ds_file_read_all(good, &raw, &len, &err), DS_OK);
    snprintf(path, sizeof path, "%s/truncated.safetensors", dir);
    write_bytes(path, raw, len - 10);
    expect_load_error(path, "truncated", NULL);
    /* wrong dtype */
    char *p = strstr(raw + 8, "F32");
    memcpy(p, "F16", 3);
    snprintf(path, sizeof path, "%s/f16.safetensors", dir);
    write_bytes(path, raw, len);
    expect_load_error(path, "dtype F16", NULL);
    free(raw);

    /* a missing tensor, and an extra one */
    struct ds_param_layout fewer = {0};
    int64_t w[2] = {4, 5};
    ds_params_add(&fewer, "0.weight", 2, w, 0);
    snprintf(path, sizeof path, "%s/fewer.safetensors", dir);
    assert_int_equal(ds_safetensors_save(path, &fewer, x, NULL, &err), DS_OK);
    expect_load_error(path, "no tensor '0.bias'", NULL);
    int64_t e[1] = {7};
    ds_params_add(&same, "4.weight", 1, e, 0);
    float *y = calloc(same.total, sizeof *y);
    snprintf(path, sizeof path, "%s/extra.safetensors", dir);
    assert_int_equal(ds_safetensors_save(path, &same, y, NULL, &err), DS_OK);
    expect_load_error(path, "'4.weight'", "does not have");
    free(x), free(y);
    ds_params_free(&other), ds_params_free(&same), ds_params_free(&fewer);
}

static void test_npy_round_trip_and_errors(void **s)
{
    (void)s;
    char path[300], descr[8];
    struct ds_err err = {{0}};
    float a[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3}, got[8];
    int nd;
    void *data;
    snprintf(path, sizeof path, "%s/a.npy", dir);
    assert_int_equal(ds_npy_write(path, "<f4", 2, shape, a, &err), DS_OK);
    assert_int_equal(ds_npy_read(path, descr, &nd, got, &data, &err), DS_OK);
    assert_string_equal(descr, "<f4");
    assert_int_equal(nd, 2);
    assert_int_equal(got[0], 2);
    assert_int_equal(got[1], 3);
    assert_memory_equal(data, a, sizeof a);
    free(data);
    /* the header is padded so the data starts on a 64-byte boundary */
    char *raw;
    size_t len;
    assert_int_equal(ds_file_read_all(path, &raw, &len, &err), DS_OK);
    assert_int_equal((len - sizeof a) % 64, 0);
    assert_int_equal(raw[len - sizeof a - 1], '\n');
    /* truncated data */
    snprintf(path, sizeof path, "%s/t.npy", dir);
    write_bytes(path, raw, len - 4);
    assert_int_not_equal(ds_npy_read(path, descr, &nd, got, &data, &err), DS_OK);
    assert_non_null(strstr(err.msg, "data bytes"));
    free(raw);
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    write_bytes(path, "hello world", 11);
    assert_int_not_equal(ds_npy_read(path, descr, &nd, got, &data, &err), DS_OK);
    assert_non_null(strstr(err.msg, "bad magic"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_safetensors_round_trip),
        cmocka_unit_test(test_safetensors_errors),
        cmocka_unit_test(test_npy_round_trip_and_errors),
    };
    return cmocka_run_group_tests_name("io", tests, setup, teardown);
}
