/* npy.c: .npy writer and reader (the format is numpy's NEP 1). */
#include "npy.h"
#include "../core/fileio.h"

#include <string.h>

static size_t descr_size(const char *descr)
{
    if (strcmp(descr, "|u1") == 0) return 1;
    if (strcmp(descr, "<f4") == 0 || strcmp(descr, "<i4") == 0) return 4;
    if (strcmp(descr, "<f8") == 0 || strcmp(descr, "<i8") == 0) return 8;
    return 0;
}

ds_status ds_npy_write(const char *path, const char *descr, int ndim, const int64_t *shape,
                       const void *data, struct ds_err *err)
{
    size_t esize = descr_size(descr);
    DS_ASSERT_MSG(esize > 0 && ndim >= 0 && ndim <= 8, "npy %s ndim %d", descr, ndim);
    char dict[512];
    size_t o = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        o += (size_t)snprintf(dict + o, sizeof dict - o, "%lld,%s", (long long)shape[d], d + 1 < ndim ? " " : "");
        count *= (size_t)shape[d];
    }
    o += (size_t)snprintf(dict + o, sizeof dict - o, "), }");
    /* magic(6) + version(2) + header length(2) + dict + padding + '\n' = multiple of 64 */
    size_t total_header = (10 + o + 1 + 63) / 64 * 64;
    size_t dict_len = total_header - 10;
    size_t bytes = total_header + count * esize;
    unsigned char *buf = malloc(bytes);
    if (!buf) return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory (%zu bytes)", path, bytes);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(dict_len & 0xff);
    buf[9] = (unsigned char)(dict_len >> 8);
    memcpy(buf + 10, dict, o);
    memset(buf + 10 + o, ' ', dict_len - o - 1);
    buf[total_header - 1] = '\n';
    if (count) memcpy(buf + total_header, data, count * esize);
    ds_status st = ds_file_write_atomic(path, buf, bytes, err);
    free(buf);
    return st;
}

ds_status ds_npy_read(const char *path, char descr[8], int *ndim, int64_t shape[8], void **data,
                      struct ds_err *err)
{
    char *raw;
    size_t len;
    *data = NULL;
    ds_status st = ds_file_read_all(path, &raw, &len, err);
    if (st != DS_OK) return st;
    const unsigned char *u = (const unsigned char *)raw;
    if (len < 10 || memcmp(raw, "\x93NUMPY", 6) != 0 || u[6] != 1) {
        free(raw);
        return ds_err_set(err, DS_ERR_INPUT, "%s: not a version-1 .npy file (bad magic)", path);
    }
    size_t hlen = (size_t)u[8] | ((size_t)u[9] << 8);
    if (10 + hlen > len) {
        free(raw);
        return ds_err_set(err, DS_ERR_INPUT, "%s: truncated header", path);
    }
    char hdr[65536];
    memcpy(hdr, raw + 10, hlen);
    hdr[hlen] = '\0';
    const char *d = strstr(hdr, "'descr': '");
    const char *f = strstr(hdr, "'fortran_order': ");
    const char *s = strstr(hdr, "'shape': (");
    if (!d || !f || !s) {
        free(raw);
        return ds_err_set(err, DS_ERR_INPUT, "%s: malformed header", path);
    }
    snprintf(descr, 8, "%.3s", d + 10);
    size_t esize = descr_size(descr);
    if (!esize || strncmp(f + 17, "False", 5) != 0) {
        free(raw);
        return ds_err_set(err, DS_ERR_INPUT, "%s: dtype %s%s is not supported (want <f4, <f8, <i4, <i8 in C order)", path, descr, strncmp(f + 17, "False", 5) ? " in Fortran order" : "");
    }
    *ndim = 0;
    size_t count = 1;
    const char *p = s + 10;
    while (*p && *p != ')') {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p) break;
        if (*ndim >= 8 || v < 0) {
            free(raw);
            return ds_err_set(err, DS_ERR_INPUT, "%s: unsupported shape", path);
        }
        shape[(*ndim)++] = v;
        if (__builtin_mul_overflow(count, (size_t)v, &count) || count > len) {
            free(raw);
            return ds_err_set(err, DS_ERR_INPUT, "%s: shape larger than the file", path);
        }
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    if (10 + hlen + count * esize != len) {
        free(raw);
        return ds_err_set(err, DS_ERR_INPUT, "%s: %zu data bytes, the header says %zu", path, len - 10 - hlen, count * esize);
    }
    void *out = malloc(count * esize > 0 ? count * esize : 1);
    if (!out) {
        free(raw);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(out, raw + 10 + hlen, count * esize);
    free(raw);
    *data = out;
    return DS_OK;
}
