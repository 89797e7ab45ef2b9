/* fileio.c: atomic whole-file writes, whole-file reads, mkdir -p, row appends. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

ds_status ds_file_write_atomic(const char *path, const void *data, size_t len, struct ds_err *err)
{
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return ds_err_set(err, DS_ERR_IO, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return ds_err_set(err, DS_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            unlink(tmp);
            return ds_err_set(err, DS_ERR_IO, "%s: write failed: %s", path, strerror(e));
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 && errno != EINVAL) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return ds_err_set(err, DS_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return ds_err_set(err, DS_ERR_IO, "%s: rename failed: %s", path, strerror(e));
    }
    return DS_OK;
}

ds_status ds_file_read_all(const char *path, char **data, size_t *len, struct ds_err *err)
{
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return ds_err_set(err, DS_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return ds_err_set(err, DS_ERR_IO, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (!buf) {
        fclose(f);
        return ds_err_set(err, DS_ERR_NOMEM, "%s: out of memory reading %zu bytes", path, n);
    }
    size_t got = fread(buf, 1, n, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != n) {
        free(buf);
        return ds_err_set(err, DS_ERR_IO, "%s: read failed after %zu of %zu bytes", path, got, n);
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return DS_OK;
}

ds_status ds_mkdir_p(const char *path, struct ds_err *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return ds_err_set(err, DS_ERR_IO, "%s: path too long", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return ds_err_set(err, DS_ERR_IO, "%s: cannot create directory %s: %s", path, buf,
                              strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return ds_err_set(err, DS_ERR_IO, "%s: cannot create directory: %s", path, strerror(errno));
    struct stat st;
    if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
        return ds_err_set(err, DS_ERR_IO, "%s: exists and is not a directory", path);
    return DS_OK;
}

ds_status ds_file_append_line(int fd, const char *line, size_t len, const char *path,
                              struct ds_err *err)
{
    ssize_t w;
    do {
        w = write(fd, line, len);
    } while (w < 0 && errno == EINTR);
    if (w < 0 || (size_t)w != len)
        return ds_err_set(err, DS_ERR_IO, "%s: write failed: %s", path,
                          w < 0 ? strerror(errno) : "short write");
    return DS_OK;
}
