/* fileio.h: file helpers that never leave a half-written file behind. */
#ifndef DS_FILEIO_H
#define DS_FILEIO_H

#include "ds.h"

/* Writes the whole buffer to path.tmp.<pid>, fsyncs and renames it over path. */
ds_status ds_file_write_atomic(const char *path, const void *data, size_t len, struct ds_err *err);
/* Reads a whole file into a malloc'd buffer (NUL-terminated; *len excludes the NUL). */
ds_status ds_file_read_all(const char *path, char **data, size_t *len, struct ds_err *err);
/* mkdir -p. */
ds_status ds_mkdir_p(const char *path, struct ds_err *err);
/* Appends one complete line with a single write(2) to an O_APPEND descriptor,
 * so that a killed process leaves whole rows only. */
ds_status ds_file_append_line(int fd, const char *line, size_t len, const char *path,
                              struct ds_err *err);

#endif
