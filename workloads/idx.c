/*
 * idx.c: the streaming IDX reader and the Fashion-MNIST files.
 *
 * zlib's gz* functions read gzip and plain files alike, so the .gz files
 * Debian ships and uncompressed copies take the same path. zlib checks a
 * gzip member's CRC only when it reaches the trailer, which a reader that
 * stops at the declared count never does: ds_idx_finish reads on to the end
 * so a corrupt file cannot pass unnoticed.
 */
#include "idx.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* Far above any IDX file in use; it keeps count * elem_size and the caller's
 * allocations from overflowing on a header of random bytes. */
#define DS_IDX_MAX_BYTES ((uint64_t)1 << 40)

/* gzread takes an unsigned and returns an int: feed it at most 1 GiB a call. */
#define DS_IDX_GZ_CHUNK ((size_t)1 << 30)

static size_t type_size(int type)
{
    switch (type) {
    case DS_IDX_U8:
    case DS_IDX_I8: return 1;
    case DS_IDX_I16: return 2;
    case DS_IDX_I32:
    case DS_IDX_F32: return 4;
    case DS_IDX_F64: return 8;
    default: return 0;
    }
}

const char *ds_idx_type_name(int type)
{
    switch (type) {
    case DS_IDX_U8: return "u8";
    case DS_IDX_I8: return "i8";
    case DS_IDX_I16: return "i16";
    case DS_IDX_I32: return "i32";
    case DS_IDX_F32: return "f32";
    case DS_IDX_F64: return "f64";
    default: return "unknown";
    }
}

void ds_idx_close(struct ds_idx_reader *r)
{
    if (r && r->gz) {
        gzclose_r((gzFile)r->gz);
        r->gz = NULL;
    }
}

/* Reads up to want bytes; *got says how many came. A short read at a clean
 * end of file returns DS_OK (the caller knows what it expected and words the
 * truncation); *cut is set when zlib found the gzip stream itself cut short,
 * so the message can say so. Corrupt data and read failures are errors here. */
static ds_status read_bytes(struct ds_idx_reader *r, unsigned char *buf, size_t want, size_t *got,
                            int *cut, struct ds_err *err)
{
    gzFile gz = (gzFile)r->gz;
    *got = 0;
    *cut = 0;
    while (*got < want) {
        size_t chunk = want - *got < DS_IDX_GZ_CHUNK ? want - *got : DS_IDX_GZ_CHUNK;
        int n = gzread(gz, buf + *got, (unsigned)chunk);
        if (n <= 0) break;
        *got += (size_t)n;
    }
    if (*got == want) return DS_OK;
    int errnum = Z_OK;
    const char *zmsg = gzerror(gz, &errnum);
    /* gzdopen names the stream "<fd:N>" and zlib prefixes its messages with
     * that; the path we print already says which file. */
    const char *tail = strncmp(zmsg, "<fd:", 4) == 0 ? strstr(zmsg, ">: ") : NULL;
    if (tail) zmsg = tail + 3;
    switch (errnum) {
    case Z_OK: return DS_OK;
    case Z_BUF_ERROR: *cut = 1; return DS_OK;
    case Z_ERRNO: return ds_err_set(err, DS_ERR_IO, "%s: read failed: %s", r->path, zmsg);
    case Z_MEM_ERROR:
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory decompressing (zlib: %s)", r->path, zmsg);
    default:
        return ds_err_set(err, DS_ERR_INPUT, "%s: corrupt gzip data (zlib: %s)", r->path, zmsg);
    }
}

static const char *cut_note(int cut)
{
    return cut ? " (zlib: unexpected end of file: the gzip stream is cut short)" : "";
}

static ds_status open_fail(struct ds_idx_reader *r, ds_status st)
{
    ds_idx_close(r);
    return st;
}

ds_status ds_idx_open(struct ds_idx_reader *r, const char *path, struct ds_err *err)
{
    memset(r, 0, sizeof *r);
    size_t plen = strlen(path);
    if (plen >= sizeof r->path) return ds_err_set(err, DS_ERR_IO, "%.200s...: path too long", path);
    memcpy(r->path, path, plen + 1);

    /* open + fstat rather than gzopen: errno is then open's own, and a
     * folder is refused by name instead of failing on its first read. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ds_err_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    int e = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
    if (e) {
        close(fd);
        return ds_err_set(err, DS_ERR_IO, "%s: cannot read: %s", path, strerror(e));
    }
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory opening the gzip reader", path);
    }
    r->gz = gz;
    /* zlib's 8 KiB default costs a read() per 8 KiB of a 26 MB file. */
    gzbuffer(gz, 256 * 1024);

    unsigned char magic[4];
    size_t got;
    int cut;
    ds_status s = read_bytes(r, magic, 4, &got, &cut, err);
    if (s != DS_OK) return open_fail(r, s);
    if (got < 4)
        return open_fail(r, ds_err_set(err, DS_ERR_INPUT, "%s: truncated header: %zu of its 4 magic bytes%s",
                                       path, got, cut_note(cut)));
    uint32_t m = (uint32_t)magic[0] << 24 | (uint32_t)magic[1] << 16 | (uint32_t)magic[2] << 8 | magic[3];
    const char *why = NULL;
    char whybuf[128];
    if (magic[0] != 0 || magic[1] != 0) {
        why = "";
    } else if (type_size(magic[2]) == 0) {
        snprintf(whybuf, sizeof whybuf,
                 ": type byte 0x%02X is not 08 u8, 09 i8, 0B i16, 0C i32, 0D f32 or 0E f64", magic[2]);
        why = whybuf;
    } else if (magic[3] < 1 || magic[3] > DS_IDX_MAX_DIMS) {
        snprintf(whybuf, sizeof whybuf, ": %u dimensions, not 1..%d", magic[3], DS_IDX_MAX_DIMS);
        why = whybuf;
    }
    if (why)
        return open_fail(r, ds_err_set(err, DS_ERR_INPUT,
                                       "%s: bad magic 0x%08X (an IDX file starts with 00 00 <type> <ndim>)%s",
                                       path, (unsigned)m, why));
    r->type = magic[2];
    r->ndim = magic[3];
    r->elem_size = type_size(r->type);

    unsigned char dimb[4 * DS_IDX_MAX_DIMS];
    size_t want = 4 * (size_t)r->ndim;
    s = read_bytes(r, dimb, want, &got, &cut, err);
    if (s != DS_OK) return open_fail(r, s);
    if (got < want)
        return open_fail(r, ds_err_set(err, DS_ERR_INPUT,
                                       "%s: truncated header: %zu of its %zu dimension bytes%s", path, got,
                                       want, cut_note(cut)));
    uint64_t bytes = r->elem_size;
    const uint64_t limit = DS_IDX_MAX_BYTES < SIZE_MAX ? DS_IDX_MAX_BYTES : (uint64_t)SIZE_MAX;
    for (int d = 0; d < r->ndim; d++) {
        const unsigned char *b = dimb + 4 * d;
        /* The format's dims are signed 32-bit: a set top bit is a negative size. */
        int32_t v = (int32_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
        if (v <= 0)
            return open_fail(r, ds_err_set(err, DS_ERR_INPUT,
                                           "%s: dimension %d of %d is %ld (every dimension must be positive)",
                                           path, d, r->ndim, (long)v));
        r->dims[d] = v;
        /* Checked before the product so that it cannot wrap. */
        if (bytes > limit / (uint64_t)v)
            return open_fail(r, ds_err_set(err, DS_ERR_INPUT,
                                           "%s: the header declares more than %llu bytes of data (dimension "
                                           "%d is %ld), not a sane IDX file",
                                           path, (unsigned long long)limit, d, (long)v));
        bytes *= (uint64_t)v;
    }
    r->count = (size_t)(bytes / r->elem_size);
    r->done = 0;
    return DS_OK;
}

/* Big-endian to host, in place, by building each value from its bytes: no
 * assumption about the host's byte order. */
static void from_big_endian(void *dst, size_t n, size_t esize)
{
    unsigned char *p = dst;
    if (esize == 2) {
        for (size_t i = 0; i < n; i++, p += 2) {
            uint16_t v = (uint16_t)(p[0] << 8 | p[1]);
            memcpy(p, &v, 2);
        }
    } else if (esize == 4) {
        for (size_t i = 0; i < n; i++, p += 4) {
            uint32_t v = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
            memcpy(p, &v, 4);
        }
    } else if (esize == 8) {
        for (size_t i = 0; i < n; i++, p += 8) {
            uint64_t v = 0;
            for (int k = 0; k < 8; k++) v = v << 8 | p[k];
            memcpy(p, &v, 8);
        }
    }
}

ds_status ds_idx_read(struct ds_idx_reader *r, void *dst, size_t n, struct ds_err *err)
{
    DS_ASSERT_MSG(r->gz != NULL, "ds_idx_read on a closed reader (%.150s)", r->path);
    DS_ASSERT_MSG(n <= r->count - r->done, "%.150s: reading %zu elements after %zu of %zu", r->path, n,
                  r->done, r->count);
    size_t want = n * r->elem_size, got;
    int cut;
    ds_status s = read_bytes(r, dst, want, &got, &cut, err);
    if (s != DS_OK) return s;
    if (got < want)
        return ds_err_set(err, DS_ERR_INPUT, "%s: truncated: holds %zu of the %zu elements its header declares%s",
                          r->path, r->done + got / r->elem_size, r->count, cut_note(cut));
    from_big_endian(dst, n, r->elem_size);
    r->done += n;
    return DS_OK;
}

ds_status ds_idx_finish(struct ds_idx_reader *r, struct ds_err *err)
{
    DS_ASSERT_MSG(r->gz != NULL, "ds_idx_finish on a closed reader (%.150s)", r->path);
    DS_ASSERT_MSG(r->done == r->count, "%.150s: finish after %zu of %zu elements", r->path, r->done, r->count);
    /* Counting every trailing byte would let a bad header make us inflate an
     * arbitrarily long stream; past the cap the message says "more than". */
    const uint64_t cap = (uint64_t)64 << 20;
    unsigned char buf[16384];
    uint64_t extra = 0;
    ds_status s = DS_OK;
    for (;;) {
        size_t got;
        int cut;
        s = read_bytes(r, buf, sizeof buf, &got, &cut, err);
        extra += got;
        if (s != DS_OK || got < sizeof buf || extra > cap) {
            if (s == DS_OK && cut)
                s = ds_err_set(err, DS_ERR_INPUT, "%s: truncated gzip stream after its %zu elements%s", r->path,
                               r->count, cut_note(cut));
            break;
        }
    }
    if (s == DS_OK && extra > 0)
        s = ds_err_set(err, DS_ERR_INPUT, "%s: %s%llu trailing bytes after the data its header declares",
                       r->path, extra > cap ? "more than " : "",
                       (unsigned long long)(extra > cap ? cap : extra));
    ds_idx_close(r);
    return s;
}

/* ---- Fashion-MNIST ---- */

#define DS_FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define DS_FMNIST_HINT \
    "(install Debian's dataset-fashion-mnist, or set DESCENT_DATA to a folder holding the four IDX files)"

const char *ds_fmnist_dir(void)
{
    const char *d = getenv("DESCENT_DATA");
    return d && d[0] ? d : DS_FMNIST_DEFAULT_DIR;
}

void ds_fmnist_close(struct ds_fmnist_files *f)
{
    if (!f) return;
    ds_idx_close(&f->images);
    ds_idx_close(&f->labels);
}

/* Opens <dir>/<prefix>-<kind>-ubyte.gz, or the uncompressed name when only
 * that exists. */
static ds_status fmnist_open_one(const char *dir, const char *prefix, const char *kind,
                                 struct ds_idx_reader *r, struct ds_err *err)
{
    char gzpath[4096], plain[4096];
    int n = snprintf(plain, sizeof plain, "%s/%s-%s-ubyte", dir, prefix, kind);
    if (n < 0 || (size_t)n + 3 >= sizeof plain)
        return ds_err_set(err, DS_ERR_IO, "%.200s...: path too long", dir);
    memcpy(gzpath, plain, (size_t)n);
    memcpy(gzpath + n, ".gz", 4);
    struct stat st;
    if (stat(gzpath, &st) == 0) return ds_idx_open(r, gzpath, err);
    int e = errno;
    if (stat(plain, &st) == 0) return ds_idx_open(r, plain, err);
    memset(r, 0, sizeof *r);
    return ds_err_set(err, DS_ERR_IO, "%s: cannot open: %s %s", gzpath, strerror(e),
                      e == ENOENT || e == ENOTDIR ? DS_FMNIST_HINT : "");
}

static void format_dims(const struct ds_idx_reader *r, char *buf, size_t len)
{
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < r->ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%lld", d ? ", " : "", (long long)r->dims[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
}

static ds_status check_u8(const struct ds_idx_reader *r, const char *what, struct ds_err *err)
{
    if (r->type == DS_IDX_U8) return DS_OK;
    return ds_err_set(err, DS_ERR_INPUT, "%s: element type %s (0x%02X), Fashion-MNIST %s are u8 (0x08)",
                      r->path, ds_idx_type_name(r->type), (unsigned)r->type, what);
}

ds_status ds_fmnist_open(const char *dir, const char *prefix, int64_t expect_n,
                         struct ds_fmnist_files *f, struct ds_err *err)
{
    memset(f, 0, sizeof *f);
    if (!dir) dir = ds_fmnist_dir();
    char dims[160];
    ds_status s = fmnist_open_one(dir, prefix, "images-idx3", &f->images, err);
    if (s != DS_OK) goto fail;
    s = fmnist_open_one(dir, prefix, "labels-idx1", &f->labels, err);
    if (s != DS_OK) goto fail;

    const struct ds_idx_reader *im = &f->images, *lb = &f->labels;
    if ((s = check_u8(im, "images", err)) != DS_OK) goto fail;
    if (im->ndim != 3 || im->dims[1] != DS_FMNIST_ROWS || im->dims[2] != DS_FMNIST_COLS) {
        format_dims(im, dims, sizeof dims);
        s = ds_err_set(err, DS_ERR_INPUT, "%s: dimensions %s, Fashion-MNIST images are [n, %d, %d]", im->path,
                       dims, DS_FMNIST_ROWS, DS_FMNIST_COLS);
        goto fail;
    }
    if ((s = check_u8(lb, "labels", err)) != DS_OK) goto fail;
    if (lb->ndim != 1) {
        format_dims(lb, dims, sizeof dims);
        s = ds_err_set(err, DS_ERR_INPUT, "%s: dimensions %s, Fashion-MNIST labels are [n]", lb->path, dims);
        goto fail;
    }
    if (im->dims[0] != lb->dims[0]) {
        s = ds_err_set(err, DS_ERR_INPUT, "%s: %lld images, but %s holds %lld labels", im->path,
                       (long long)im->dims[0], lb->path, (long long)lb->dims[0]);
        goto fail;
    }
    if (expect_n > 0 && im->dims[0] != expect_n) {
        s = ds_err_set(err, DS_ERR_INPUT, "%s: %lld images, Fashion-MNIST's %s split has %lld", im->path,
                       (long long)im->dims[0], prefix, (long long)expect_n);
        goto fail;
    }
    f->n = im->dims[0];
    return DS_OK;
fail:
    ds_fmnist_close(f);
    return s;
}

ds_status ds_fmnist_read_labels(struct ds_fmnist_files *f, uint8_t *labels, struct ds_err *err)
{
    ds_status s = ds_idx_read(&f->labels, labels, (size_t)f->n, err);
    if (s != DS_OK) return s;
    for (int64_t i = 0; i < f->n; i++)
        if (labels[i] >= DS_FMNIST_CLASSES)
            return ds_err_set(err, DS_ERR_INPUT, "%s: label %u at index %lld is not a class 0..%d",
                              f->labels.path, (unsigned)labels[i], (long long)i, DS_FMNIST_CLASSES - 1);
    return ds_idx_finish(&f->labels, err);
}
