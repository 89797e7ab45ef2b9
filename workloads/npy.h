/* npy.h: NumPy .npy files (format version 1.0), little-endian, C order. */
#ifndef DS_NPY_H
#define DS_NPY_H

#include "../core/ds.h"

/* descr: "<f4", "<f8", "<i4" or "<i8". Atomic write. */
ds_status ds_npy_write(const char *path, const char *descr, int ndim, const int64_t *shape,
                       const void *data, struct ds_err *err);

/* Reads a whole .npy file: *data (malloc'd) holds the array; descr, ndim and
 * shape are filled (up to 8 dims). Fortran order and other dtypes are errors
 * naming the file. */
ds_status ds_npy_read(const char *path, char descr[8], int *ndim, int64_t shape[8], void **data,
                      struct ds_err *err);

#endif
