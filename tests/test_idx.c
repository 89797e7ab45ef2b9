/*
 * test_idx.c: the IDX reader and the Fashion-MNIST files: small files made
 * here (gzip and plain, every element type) read back exactly in chunks of
 * odd sizes; the real Debian files counted class by class; and every way a
 * file can be wrong giving the right status and a message that names the
 * file and the problem, never a crash.
 */
#include "testutil.h"

#include "../workloads/idx.h"

#include <errno.h>
#include <sys/stat.h>
#include <zlib.h>

static char dir[256];
/* DESCENT_DATA as the test started, so the real-data tests are not steered by
 * the override tests, whichever order they run in. */
static char *orig_data;

static int setup(void **s)
{
    (void)s;
    return tu_tmpdir_make(dir, sizeof dir, "idx");
}

static int teardown(void **s)
{
    (void)s;
    return tu_tmpdir_remove(dir);
}

static void restore_env(void)
{
    if (orig_data) setenv("DESCENT_DATA", orig_data, 1);
    else unsetenv("DESCENT_DATA");
}

/* ---- building files ---- */

struct buf {
    unsigned char *p;
    size_t n, cap;
};

static void buf_add(struct buf *b, const void *data, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        assert_non_null(b->p);
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}

static void buf_be32(struct buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                          (unsigned char)v};
    buf_add(b, x, 4);
}

/* The IDX header for type and dims (dims written as given, even 0). */
static void buf_header(struct buf *b, int type, int ndim, const uint32_t *dims)
{
    unsigned char m[4] = {0, 0, (unsigned char)type, (unsigned char)ndim};
    buf_add(b, m, 4);
    for (int d = 0; d < ndim; d++) buf_be32(b, dims[d]);
}

static void path_in(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static void write_plain(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) fail_msg("cannot create %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb");
    if (!g) fail_msg("cannot create %s", path);
    assert_int_equal(gzwrite(g, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(g), Z_OK);
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)len + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* u8 bytes that are not a repeating pattern zlib would shrink to nothing,
 * so a corrupted byte in the middle of the stream lands on real codes. */
static unsigned char pattern(size_t i)
{
    uint32_t x = (uint32_t)i * 2654435761u + 12345u;
    return (unsigned char)((x >> 13) ^ (x >> 21));
}

/* A [3, 5, 7] u8 file holding pattern(i); extra trailing bytes appended. */
static void make_u8(const char *path, int gz, size_t keep, size_t extra)
{
    uint32_t dims[3] = {3, 5, 7};
    struct buf b = {0};
    buf_header(&b, DS_IDX_U8, 3, dims);
    size_t hdr = b.n;
    for (size_t i = 0; i < 105 + extra; i++) {
        unsigned char c = pattern(i);
        buf_add(&b, &c, 1);
    }
    b.n = hdr + (keep < 105 ? keep : 105 + extra);
    if (gz) write_gz(path, b.p, b.n);
    else write_plain(path, b.p, b.n);
    free(b.p);
}

/* ---- reading ---- */

/* Opens, reads every element in chunks cycling through odd sizes, finishes;
 * returns the first status that is not DS_OK (the reader then closed), with
 * the elements in *out (malloc'd, count * elem_size bytes) when all is well. */
static ds_status read_whole(const char *path, struct ds_idx_reader *r, void **out, struct ds_err *err)
{
    static const size_t chunks[] = {1, 3, 7, 13, 2, 31, 5};
    *out = NULL;
    ds_status s = ds_idx_open(r, path, err);
    if (s != DS_OK) return s;
    unsigned char *data = malloc(r->count * r->elem_size + 1);
    assert_non_null(data);
    for (size_t k = 0; r->done < r->count; k++) {
        size_t n = chunks[k % DS_ARRAY_LEN(chunks)];
        if (n > r->count - r->done) n = r->count - r->done;
        size_t at = r->done;
        s = ds_idx_read(r, data + at * r->elem_size, n, err);
        if (s != DS_OK) {
            ds_idx_close(r);
            free(data);
            return s;
        }
        if (r->done != at + n) fail_msg("done %zu after reading %zu at %zu", r->done, n, at);
    }
    s = ds_idx_finish(r, err);
    if (r->gz) fail_msg("ds_idx_finish left %s open", path);
    if (s != DS_OK) {
        free(data);
        return s;
    }
    *out = data;
    return DS_OK;
}

/* Expects reading path (open, read, finish) to fail with status and a
 * message naming the file and holding each fragment. */
static void expect_error(const char *path, ds_status want, const char *frag1, const char *frag2)
{
    struct ds_idx_reader r;
    struct ds_err err = {{0}};
    void *data;
    ds_status s = read_whole(path, &r, &data, &err);
    if (s == DS_OK) fail_msg("reading %s succeeded", path);
    if (s != want)
        fail_msg("%s: status %s, expected %s (message: %s)", path, ds_status_name(s), ds_status_name(want),
                 err.msg);
    if (!strstr(err.msg, path)) fail_msg("message does not name the file %s: %s", path, err.msg);
    if (frag1 && !strstr(err.msg, frag1)) fail_msg("message lacks '%s': %s", frag1, err.msg);
    if (frag2 && !strstr(err.msg, frag2)) fail_msg("message lacks '%s': %s", frag2, err.msg);
    ds_idx_close(&r);
}

static void check_u8_file(const char *path)
{
    struct ds_idx_reader r;
    struct ds_err err = {{0}};
    void *data;
    ds_status s = read_whole(path, &r, &data, &err);
    if (s != DS_OK) fail_msg("%s: %s", path, err.msg);
    assert_int_equal(r.type, DS_IDX_U8);
    assert_int_equal(r.ndim, 3);
    assert_int_equal(r.dims[0], 3);
    assert_int_equal(r.dims[1], 5);
    assert_int_equal(r.dims[2], 7);
    assert_int_equal(r.elem_size, 1);
    assert_int_equal(r.count, 105);
    assert_int_equal(r.done, 105);
    const unsigned char *u = data;
    for (size_t i = 0; i < 105; i++)
        if (u[i] != pattern(i)) fail_msg("%s: element %zu is %u, wrote %u", path, i, u[i], pattern(i));
    free(data);
    ds_idx_close(&r); /* already closed by finish: closing again is harmless */
    ds_idx_close(&r);
}

static void test_u8_gzip_and_plain(void **s)
{
    (void)s;
    char path[300];
    path_in(path, sizeof path, "u8.idx.gz");
    make_u8(path, 1, SIZE_MAX, 0);
    check_u8_file(path);
    /* zlib reads an uncompressed file through the same calls */
    path_in(path, sizeof path, "u8.idx");
    make_u8(path, 0, SIZE_MAX, 0);
    check_u8_file(path);
}

/* One file per multi-byte type, its elements written big-endian by hand, read
 * back as host values. */
static void test_multibyte_big_endian(void **s)
{
    (void)s;
    const int32_t i32[] = {0, 1, -1, INT32_MIN, INT32_MAX, 0x01020304, -123456789};
    const int16_t i16[] = {0, 1, -1, INT16_MIN, INT16_MAX, 0x0102, -12345};
    const float f32[] = {0.0f, -0.0f, 1.5f, -2.75f, 3.25e-7f, 1e30f, -1e-38f};
    const double f64[] = {0.0, 1.0 / 3.0, -2.5e300, 1e-310, -7.0, 0.1, 65536.125};
    const struct {
        int type;
        const void *values;
        size_t esize;
        const char *name;
    } cases[] = {
        {DS_IDX_I32, i32, 4, "i32"},
        {DS_IDX_I16, i16, 2, "i16"},
        {DS_IDX_F32, f32, 4, "f32"},
        {DS_IDX_F64, f64, 8, "f64"},
    };
    for (size_t c = 0; c < DS_ARRAY_LEN(cases); c++) {
        for (int gz = 0; gz < 2; gz++) {
            uint32_t dims[1] = {7};
            struct buf b = {0};
            buf_header(&b, cases[c].type, 1, dims);
            for (size_t i = 0; i < 7; i++) {
                const unsigned char *v = (const unsigned char *)cases[c].values + i * cases[c].esize;
                unsigned char be[8];
                uint64_t x = 0;
                /* host value -> integer -> big-endian bytes, whatever the host order */
                if (cases[c].esize == 2) {
                    uint16_t t;
                    memcpy(&t, v, 2);
                    x = t;
                } else if (cases[c].esize == 4) {
                    uint32_t t;
                    memcpy(&t, v, 4);
                    x = t;
                } else {
                    memcpy(&x, v, 8);
                }
                for (size_t k = 0; k < cases[c].esize; k++)
                    be[k] = (unsigned char)(x >> (8 * (cases[c].esize - 1 - k)));
                buf_add(&b, be, cases[c].esize);
            }
            char path[300];
            snprintf(path, sizeof path, "%s/%s.idx%s", dir, cases[c].name, gz ? ".gz" : "");
            if (gz) write_gz(path, b.p, b.n);
            else write_plain(path, b.p, b.n);
            free(b.p);

            struct ds_idx_reader r;
            struct ds_err err = {{0}};
            void *data;
            if (read_whole(path, &r, &data, &err) != DS_OK) fail_msg("%s: %s", path, err.msg);
            assert_int_equal(r.type, cases[c].type);
            assert_int_equal(r.elem_size, cases[c].esize);
            assert_int_equal(r.count, 7);
            for (size_t i = 0; i < 7; i++) {
                const unsigned char *got = (const unsigned char *)data + i * cases[c].esize;
                const unsigned char *want = (const unsigned char *)cases[c].values + i * cases[c].esize;
                if (memcmp(got, want, cases[c].esize) != 0) {
                    double g = 0, w = 0;
                    if (cases[c].type == DS_IDX_I32) g = *(const int32_t *)(const void *)got, w = i32[i];
                    if (cases[c].type == DS_IDX_I16) g = *(const int16_t *)(const void *)got, w = i16[i];
                    if (cases[c].type == DS_IDX_F32) g = *(const float *)(const void *)got, w = f32[i];
                    if (cases[c].type == DS_IDX_F64) g = *(const double *)(const void *)got, w = f64[i];
                    fail_msg("%s: element %zu reads %.17g, wrote %.17g", path, i, g, w);
                }
            }
            free(data);
        }
    }
    assert_string_equal(ds_idx_type_name(DS_IDX_F32), "f32");
    assert_string_equal(ds_idx_type_name(0x42), "unknown");
}

static void test_close_is_safe(void **s)
{
    (void)s;
    struct ds_idx_reader r;
    memset(&r, 0, sizeof r);
    ds_idx_close(&r);
    ds_idx_close(&r);
    struct ds_err err = {{0}};
    char path[300];
    path_in(path, sizeof path, "nothing-here.gz");
    assert_int_equal(ds_idx_open(&r, path, &err), DS_ERR_IO);
    assert_null(r.gz);
    ds_idx_close(&r);
    struct ds_fmnist_files f;
    memset(&f, 0, sizeof f);
    ds_fmnist_close(&f);
    ds_fmnist_close(&f);
    ds_fmnist_close(NULL);
}

/* ---- every way a header can be wrong ---- */

static void test_header_errors(void **s)
{
    (void)s;
    char path[300];

    path_in(path, sizeof path, "missing.idx.gz");
    expect_error(path, DS_ERR_IO, "No such file or directory", NULL);

    expect_error(dir, DS_ERR_IO, "Is a directory", NULL);

    path_in(path, sizeof path, "badmagic.gz");
    write_gz(path, "\x12\x34\x56\x78\0\0\0\1x", 9);
    expect_error(path, DS_ERR_INPUT, "bad magic 0x12345678 (an IDX file starts with 00 00 <type> <ndim>)", NULL);

    path_in(path, sizeof path, "badtype");
    write_plain(path, "\0\0\x07\x01\0\0\0\1x", 9);
    expect_error(path, DS_ERR_INPUT, "bad magic 0x00000701", "type byte 0x07");

    path_in(path, sizeof path, "ndim0.gz");
    write_gz(path, "\0\0\x08\x00xxxx", 8);
    expect_error(path, DS_ERR_INPUT, "bad magic 0x00000800", "0 dimensions, not 1..8");

    path_in(path, sizeof path, "ndim9.gz");
    write_gz(path, "\0\0\x08\x09", 4);
    expect_error(path, DS_ERR_INPUT, "bad magic", "9 dimensions");

    path_in(path, sizeof path, "empty.gz");
    write_gz(path, "", 0);
    expect_error(path, DS_ERR_INPUT, "truncated header", "0 of its 4 magic bytes");

    path_in(path, sizeof path, "empty");
    write_plain(path, "", 0);
    expect_error(path, DS_ERR_INPUT, "truncated header", NULL);

    path_in(path, sizeof path, "shortmagic.gz");
    write_gz(path, "\0\0", 2);
    expect_error(path, DS_ERR_INPUT, "truncated header", "2 of its 4 magic bytes");

    /* magic promises 3 dims, 7 bytes of them follow */
    path_in(path, sizeof path, "shortdims.gz");
    write_gz(path, "\0\0\x08\x03\0\0\0\x02\0\0\0", 11);
    expect_error(path, DS_ERR_INPUT, "truncated header", "7 of its 12 dimension bytes");

    struct buf b = {0};
    uint32_t zero[3] = {4, 0, 28};
    buf_header(&b, DS_IDX_U8, 3, zero);
    path_in(path, sizeof path, "zerodim.gz");
    write_gz(path, b.p, b.n);
    expect_error(path, DS_ERR_INPUT, "dimension 1 of 3 is 0", "must be positive");

    b.n = 0;
    uint32_t neg[2] = {0xFFFFFFFBu, 2};
    buf_header(&b, DS_IDX_U8, 2, neg);
    path_in(path, sizeof path, "negdim");
    write_plain(path, b.p, b.n);
    expect_error(path, DS_ERR_INPUT, "dimension 0 of 2 is -5", NULL);

    /* 2^31-1 cubed f64: a header of random bytes must not wrap the size */
    b.n = 0;
    uint32_t huge[3] = {0x7FFFFFFFu, 0x7FFFFFFFu, 0x7FFFFFFFu};
    buf_header(&b, DS_IDX_F64, 3, huge);
    path_in(path, sizeof path, "huge.gz");
    write_gz(path, b.p, b.n);
    expect_error(path, DS_ERR_INPUT, "not a sane IDX file", NULL);
    free(b.p);
}

/* ---- and the data after it ---- */

static void test_data_errors(void **s)
{
    (void)s;
    char path[300];

    /* a complete gzip stream of a file cut short */
    path_in(path, sizeof path, "short.gz");
    make_u8(path, 1, 50, 0);
    expect_error(path, DS_ERR_INPUT, "truncated: holds 50 of the 105 elements its header declares", NULL);
    path_in(path, sizeof path, "short");
    make_u8(path, 0, 0, 0);
    expect_error(path, DS_ERR_INPUT, "truncated: holds 0 of the 105 elements", NULL);

    /* the last element's bytes cut in half */
    uint32_t d1[1] = {3};
    struct buf b = {0};
    buf_header(&b, DS_IDX_I32, 1, d1);
    buf_add(&b, "\0\0\0\1\0\0\0\2\0\0", 10);
    path_in(path, sizeof path, "halfelem.gz");
    write_gz(path, b.p, b.n);
    expect_error(path, DS_ERR_INPUT, "truncated: holds 2 of the 3 elements", NULL);
    free(b.p);

    path_in(path, sizeof path, "trailing.gz");
    make_u8(path, 1, SIZE_MAX, 5);
    expect_error(path, DS_ERR_INPUT, "5 trailing bytes after the data its header declares", NULL);
    path_in(path, sizeof path, "trailing");
    make_u8(path, 0, SIZE_MAX, 1);
    expect_error(path, DS_ERR_INPUT, "1 trailing bytes after the data", NULL);

    /* A gzip file whose bytes stop mid-stream: zlib says so. */
    char good[300];
    path_in(good, sizeof good, "good.gz");
    make_u8(good, 1, SIZE_MAX, 0);
    size_t len;
    unsigned char *raw = read_file(good, &len);
    path_in(path, sizeof path, "cut.gz");
    write_plain(path, raw, len / 2);
    expect_error(path, DS_ERR_INPUT, "truncated", "gzip stream is cut short");
    /* only the 8-byte trailer (CRC-32, length) missing: all data is there */
    write_plain(path, raw, len - 8);
    expect_error(path, DS_ERR_INPUT, "truncated gzip stream after its 105 elements", NULL);

    /* The CRC is checked only at the end of the stream: ds_idx_finish must
     * read on to it. The trailer is CRC-32 (little-endian) then length. */
    raw[len - 8] ^= 0x01;
    path_in(path, sizeof path, "badcrc.gz");
    write_plain(path, raw, len);
    expect_error(path, DS_ERR_INPUT, "corrupt gzip data (zlib: incorrect data check)", NULL);
    free(raw);

    /* bytes flipped in the middle of a larger stream */
    b = (struct buf){0};
    uint32_t d2[2] = {64, 64};
    buf_header(&b, DS_IDX_U8, 2, d2);
    for (size_t i = 0; i < 64 * 64; i++) {
        unsigned char c = pattern(i) & 0x1F;
        buf_add(&b, &c, 1);
    }
    path_in(path, sizeof path, "corrupt.gz");
    write_gz(path, b.p, b.n);
    free(b.p);
    raw = read_file(path, &len);
    for (size_t i = len / 2; i < len / 2 + 8; i++) raw[i] ^= 0xA5;
    write_plain(path, raw, len);
    free(raw);
    expect_error(path, DS_ERR_INPUT, "corrupt gzip data (zlib: ", NULL);
}

/* Every cut and every flipped byte of a small gzip and plain file: a status
 * and a message naming the file, never a crash (run under ASan by make test). */
static void test_mangled_files_never_crash(void **s)
{
    (void)s;
    char good[300], path[300];
    for (int gz = 0; gz < 2; gz++) {
        path_in(good, sizeof good, gz ? "m.gz" : "m");
        make_u8(good, gz, SIZE_MAX, 0);
        size_t len;
        unsigned char *raw = read_file(good, &len);
        path_in(path, sizeof path, gz ? "mangled.gz" : "mangled");
        int failures = 0;
        for (size_t cut = 0; cut < len; cut++) {
            write_plain(path, raw, cut);
            struct ds_idx_reader r;
            struct ds_err err = {{0}};
            void *data;
            ds_status st = read_whole(path, &r, &data, &err);
            if (st == DS_OK) fail_msg("%s cut to %zu of %zu bytes read without error", path, cut, len);
            if (!strstr(err.msg, path)) fail_msg("cut %zu: message does not name the file: %s", cut, err.msg);
        }
        for (size_t i = 0; i < len; i++) {
            raw[i] ^= 0xFF;
            write_plain(path, raw, len);
            raw[i] ^= 0xFF;
            struct ds_idx_reader r;
            struct ds_err err = {{0}};
            void *data;
            ds_status st = read_whole(path, &r, &data, &err);
            if (st == DS_OK) {
                free(data);
                continue; /* a gzip header's mtime/OS bytes, or a plain data byte */
            }
            failures++;
            if (st != DS_ERR_INPUT) fail_msg("byte %zu flipped: status %s: %s", i, ds_status_name(st), err.msg);
            if (!strstr(err.msg, path)) fail_msg("byte %zu: message does not name the file: %s", i, err.msg);
        }
        /* plain: the 16 header bytes; gzip: most of the stream */
        if (failures < 16) fail_msg("only %d of %zu flipped bytes of %s were noticed", failures, len, good);
        free(raw);
    }
}

/* ---- Fashion-MNIST: files made here ---- */

struct fake {
    int64_t n_images, n_labels;
    uint32_t rows, cols;
    int image_type;
    int label_ndim;
    int gz;
    int bad_label_at; /* -1: none */
};

static const struct fake fake_ok = {4, 4, 28, 28, DS_IDX_U8, 1, 1, -1};

static unsigned char fake_label(int64_t i)
{
    return (unsigned char)((i * 3 + 9) % 10);
}

/* Writes <sub>/<prefix>-images-idx3-ubyte[.gz] and the labels file. */
static void make_fmnist(const char *sub, const char *prefix, const struct fake *fk)
{
    char folder[300], path[400];
    snprintf(folder, sizeof folder, "%s/%s", dir, sub);
    mkdir(folder, 0755);
    struct buf b = {0};
    uint32_t idims[3] = {(uint32_t)fk->n_images, fk->rows, fk->cols};
    buf_header(&b, fk->image_type, 3, idims);
    for (int64_t i = 0; i < fk->n_images * fk->rows * fk->cols; i++) {
        unsigned char c = pattern((size_t)i);
        buf_add(&b, &c, 1);
    }
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte%s", folder, prefix, fk->gz ? ".gz" : "");
    if (fk->gz) write_gz(path, b.p, b.n);
    else write_plain(path, b.p, b.n);
    b.n = 0;
    uint32_t ldims[2] = {(uint32_t)fk->n_labels, 1};
    buf_header(&b, DS_IDX_U8, fk->label_ndim, ldims);
    for (int64_t i = 0; i < fk->n_labels; i++) {
        unsigned char c = i == fk->bad_label_at ? 12 : fake_label(i);
        buf_add(&b, &c, 1);
    }
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte%s", folder, prefix, fk->gz ? ".gz" : "");
    if (fk->gz) write_gz(path, b.p, b.n);
    else write_plain(path, b.p, b.n);
    free(b.p);
}

static void read_fake_split(const char *folder, const char *prefix, int64_t n)
{
    struct ds_fmnist_files f;
    struct ds_err err = {{0}};
    if (ds_fmnist_open(folder, prefix, n, &f, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_int_equal(f.n, n);
    uint8_t labels[16];
    if (ds_fmnist_read_labels(&f, labels, &err) != DS_OK) fail_msg("%s", err.msg);
    for (int64_t i = 0; i < n; i++) assert_int_equal(labels[i], fake_label(i));
    unsigned char px[4 * 784];
    /* images in two uneven chunks, as a caller streaming to the backend would */
    if (ds_idx_read(&f.images, px, 1000, &err) != DS_OK) fail_msg("%s", err.msg);
    if (ds_idx_read(&f.images, px + 1000, (size_t)n * 784 - 1000, &err) != DS_OK) fail_msg("%s", err.msg);
    for (size_t i = 0; i < (size_t)n * 784; i++)
        if (px[i] != pattern(i)) fail_msg("pixel %zu is %u, wrote %u", i, px[i], pattern(i));
    if (ds_idx_finish(&f.images, &err) != DS_OK) fail_msg("%s", err.msg);
    ds_fmnist_close(&f);
    ds_fmnist_close(&f);
}

static void test_fmnist_fake_split_and_env(void **s)
{
    (void)s;
    make_fmnist("fm", "train", &fake_ok);
    struct fake plain = fake_ok;
    plain.gz = 0;
    make_fmnist("fm", "t10k", &plain); /* only uncompressed files for t10k */
    char folder[300];
    snprintf(folder, sizeof folder, "%s/fm", dir);
    read_fake_split(folder, "train", 4);
    read_fake_split(folder, "t10k", 4);

    /* DESCENT_DATA decides the folder when dir is NULL; empty means unset */
    setenv("DESCENT_DATA", folder, 1);
    assert_string_equal(ds_fmnist_dir(), folder);
    read_fake_split(NULL, "train", 4);
    setenv("DESCENT_DATA", "", 1);
    assert_string_equal(ds_fmnist_dir(), "/usr/share/datasets/fashion-mnist");
    unsetenv("DESCENT_DATA");
    assert_string_equal(ds_fmnist_dir(), "/usr/share/datasets/fashion-mnist");

    /* a folder without the files: the message says where to get them */
    char nowhere[400];
    snprintf(nowhere, sizeof nowhere, "%s/no-such-folder", dir);
    setenv("DESCENT_DATA", nowhere, 1);
    struct ds_fmnist_files f;
    struct ds_err err = {{0}};
    ds_status st = ds_fmnist_open(NULL, "train", 60000, &f, &err);
    restore_env();
    if (st != DS_ERR_IO) fail_msg("status %s: %s", ds_status_name(st), err.msg);
    char want[500];
    snprintf(want, sizeof want, "%s/train-images-idx3-ubyte.gz", nowhere);
    if (!strstr(err.msg, want)) fail_msg("message lacks '%s': %s", want, err.msg);
    if (!strstr(err.msg, "No such file or directory")) fail_msg("no reason: %s", err.msg);
    if (!strstr(err.msg, "install Debian's dataset-fashion-mnist, or set DESCENT_DATA"))
        fail_msg("no hint: %s", err.msg);
    assert_null(f.images.gz);
}

/* Makes a split from fk in folder sub and expects ds_fmnist_open (or the
 * label read) to fail naming the file `which` and holding frag. */
static void expect_fmnist_error(const char *sub, const struct fake *fk, int64_t expect_n, const char *which,
                                ds_status want, const char *frag)
{
    make_fmnist(sub, "train", fk);
    char folder[300], file[400];
    snprintf(folder, sizeof folder, "%s/%s", dir, sub);
    snprintf(file, sizeof file, "%s/train-%s-ubyte.gz", folder, which);
    struct ds_fmnist_files f;
    struct ds_err err = {{0}};
    ds_status st = ds_fmnist_open(folder, "train", expect_n, &f, &err);
    if (st == DS_OK) {
        uint8_t labels[16];
        st = ds_fmnist_read_labels(&f, labels, &err);
        ds_fmnist_close(&f);
    } else {
        assert_null(f.images.gz);
        assert_null(f.labels.gz);
    }
    if (st != want) fail_msg("%s: status %s, expected %s: %s", sub, ds_status_name(st), ds_status_name(want), err.msg);
    if (!strstr(err.msg, file)) fail_msg("%s: message does not name %s: %s", sub, file, err.msg);
    if (!strstr(err.msg, frag)) fail_msg("%s: message lacks '%s': %s", sub, frag, err.msg);
}

static void test_fmnist_errors(void **s)
{
    (void)s;
    struct fake fk = fake_ok;
    fk.rows = 27;
    expect_fmnist_error("rows27", &fk, 0, "images-idx3", DS_ERR_INPUT,
                        "dimensions [4, 27, 28], Fashion-MNIST images are [n, 28, 28]");
    fk = fake_ok;
    fk.label_ndim = 2;
    expect_fmnist_error("labels2d", &fk, 0, "labels-idx1", DS_ERR_INPUT,
                        "dimensions [4, 1], Fashion-MNIST labels are [n]");
    fk = fake_ok;
    fk.image_type = DS_IDX_I8;
    expect_fmnist_error("i8", &fk, 0, "images-idx3", DS_ERR_INPUT,
                        "element type i8 (0x09), Fashion-MNIST images are u8");
    fk = fake_ok;
    fk.n_labels = 5;
    expect_fmnist_error("mismatch", &fk, 0, "images-idx3", DS_ERR_INPUT, "4 images, but ");
    expect_fmnist_error("mismatch", &fk, 0, "labels-idx1", DS_ERR_INPUT, "holds 5 labels");
    fk = fake_ok;
    expect_fmnist_error("count", &fk, 5, "images-idx3", DS_ERR_INPUT,
                        "4 images, Fashion-MNIST's train split has 5");
    fk.bad_label_at = 2;
    expect_fmnist_error("badlabel", &fk, 4, "labels-idx1", DS_ERR_INPUT,
                        "label 12 at index 2 is not a class 0..9");

    /* the images file alone: the labels' absence is named, with the hint */
    char folder[300], path[400];
    snprintf(folder, sizeof folder, "%s/nolabels", dir);
    make_fmnist("nolabels", "train", &fake_ok);
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", folder);
    assert_int_equal(unlink(path), 0);
    struct ds_fmnist_files f;
    struct ds_err err = {{0}};
    assert_int_equal(ds_fmnist_open(folder, "train", 4, &f, &err), DS_ERR_IO);
    if (!strstr(err.msg, path) || !strstr(err.msg, "dataset-fashion-mnist")) fail_msg("%s", err.msg);
    assert_null(f.images.gz);
}

/* ---- the real files ---- */

/* The folder to test, or NULL (and a note) when nobody asked for the data
 * and Debian's package is not installed: the test is then a visible skip. */
static const char *real_dir(void)
{
    if (orig_data && orig_data[0]) return orig_data;
    struct stat st;
    if (stat("/usr/share/datasets/fashion-mnist", &st) != 0) {
        print_message("Fashion-MNIST not found at /usr/share/datasets/fashion-mnist and DESCENT_DATA unset "
                      "(install Debian's dataset-fashion-mnist)\n");
        return NULL;
    }
    return "/usr/share/datasets/fashion-mnist";
}

static void check_real_split(const char *prefix, int64_t n, double pixel_mean)
{
    const char *folder = real_dir();
    if (!folder) skip();
    struct ds_fmnist_files f;
    struct ds_err err = {{0}};
    if (ds_fmnist_open(folder, prefix, n, &f, &err) != DS_OK) fail_msg("%s", err.msg);
    assert_int_equal(f.n, n);
    assert_int_equal(f.images.count, (size_t)n * 784);
    uint8_t *labels = malloc((size_t)n);
    assert_non_null(labels);
    if (ds_fmnist_read_labels(&f, labels, &err) != DS_OK) fail_msg("%s", err.msg);
    int64_t per_class[10] = {0};
    for (int64_t i = 0; i < n; i++) per_class[labels[i]]++;
    for (int c = 0; c < 10; c++)
        if (per_class[c] != n / 10) fail_msg("%s: class %d appears %lld times, expected %lld", prefix, c,
                                             (long long)per_class[c], (long long)(n / 10));
    if (strcmp(prefix, "train") == 0) assert_int_equal(labels[0], 9); /* an ankle boot */
    free(labels);

    /* 7919 images a chunk (a prime, so the last chunk is short), as a
     * caller streaming into backend memory would */
    const size_t chunk = 7919 * 784;
    unsigned char *px = malloc(chunk);
    assert_non_null(px);
    uint64_t sum = 0;
    size_t total = (size_t)n * 784, blank = 0;
    while (f.images.done < total) {
        size_t k = total - f.images.done < chunk ? total - f.images.done : chunk;
        if (ds_idx_read(&f.images, px, k, &err) != DS_OK) fail_msg("%s", err.msg);
        for (size_t i = 0; i < k; i++) sum += px[i];
        for (size_t i = 0; i < k; i++) blank += px[i] == 0;
    }
    free(px);
    if (ds_idx_finish(&f.images, &err) != DS_OK) fail_msg("%s", err.msg);
    ds_fmnist_close(&f);
    /* the mean pixel everyone normalises by (torchvision recipes) */
    assert_close((double)sum / (double)total / 255.0, pixel_mean, 5e-5);
    assert_le(blank, total * 6 / 10); /* images, not zeros */
}

static void test_real_train(void **s)
{
    (void)s;
    check_real_split("train", DS_FMNIST_TRAIN_N, 0.28604);
}

static void test_real_t10k(void **s)
{
    (void)s;
    check_real_split("t10k", DS_FMNIST_TEST_N, 0.28684);
}

int main(void)
{
    const char *d = getenv("DESCENT_DATA");
    orig_data = d ? strdup(d) : NULL;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u8_gzip_and_plain),
        cmocka_unit_test(test_multibyte_big_endian),
        cmocka_unit_test(test_close_is_safe),
        cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_data_errors),
        cmocka_unit_test(test_mangled_files_never_crash),
        cmocka_unit_test(test_fmnist_fake_split_and_env),
        cmocka_unit_test(test_fmnist_errors),
        cmocka_unit_test(test_real_train),
        cmocka_unit_test(test_real_t10k),
    };
    int rc = cmocka_run_group_tests_name("idx", tests, setup, teardown);
    free(orig_data);
    return rc;
}
