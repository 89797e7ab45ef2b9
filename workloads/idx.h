/*
 * idx.h: IDX files (the format of MNIST and Fashion-MNIST), read as a stream
 * so a 47 MB image file goes straight into backend memory chunk by chunk
 * instead of being loaded whole and copied; and the four Fashion-MNIST files,
 * found and checked against the shapes the workloads rely on.
 *
 * IDX (http://yann.lecun.com/exdb/mnist/): 00 00 <type> <ndim>, then ndim
 * big-endian 32-bit dimensions, then the elements, big-endian, C order.
 *
 * Every error message names the file and the problem; DS_ERR_IO when the file
 * cannot be opened or read, DS_ERR_INPUT when its content is wrong.
 */
#ifndef DS_IDX_H
#define DS_IDX_H

#include "../core/ds.h"

/* Type bytes of the IDX format. */
enum ds_idx_type {
    DS_IDX_U8 = 0x08,
    DS_IDX_I8 = 0x09,
    DS_IDX_I16 = 0x0B,
    DS_IDX_I32 = 0x0C,
    DS_IDX_F32 = 0x0D,
    DS_IDX_F64 = 0x0E,
};

#define DS_IDX_MAX_DIMS 8

/* A streaming reader of one IDX file, gzip or plain (zlib's gzopen reads both).
 * The caller owns the struct; ds_idx_close releases what it holds. */
struct ds_idx_reader {
    void *gz;                       /* gzFile; NULL when closed */
    char path[4096];
    int type;                       /* enum ds_idx_type */
    int ndim;                       /* 1..DS_IDX_MAX_DIMS */
    int64_t dims[DS_IDX_MAX_DIMS];  /* each > 0 */
    size_t elem_size;               /* bytes per element: 1, 2, 4 or 8 */
    size_t count;                   /* product of dims */
    size_t done;                    /* elements read so far */
};

/* "u8", "i8", "i16", "i32", "f32", "f64", or "unknown". */
const char *ds_idx_type_name(int type);

/* Opens path and validates the header: the magic (two zero bytes, a known
 * type byte, 1..8 dims), every dim > 0, the total size under 1 TiB. On error
 * r is left closed (ds_idx_close on it is harmless). */
ds_status ds_idx_open(struct ds_idx_reader *r, const char *path, struct ds_err *err);

/* Reads the next n elements into dst (n * elem_size bytes), converting
 * multi-byte types from big-endian to host order. Reading past the count the
 * header declares is a programming error (asserted). A short file gives
 * "truncated: holds N of the M elements its header declares"; a corrupt gzip
 * stream gives zlib's message. */
ds_status ds_idx_read(struct ds_idx_reader *r, void *dst, size_t n, struct ds_err *err);

/* After all count elements are read: checks nothing follows them (and so
 * that the gzip trailer's CRC matches, which zlib checks only at the end of
 * the stream), then closes r, whatever the outcome. */
ds_status ds_idx_finish(struct ds_idx_reader *r, struct ds_err *err);

/* Safe twice, and on a zeroed struct. */
void ds_idx_close(struct ds_idx_reader *r);

/* ---- Fashion-MNIST ---- */

#define DS_FMNIST_ROWS 28
#define DS_FMNIST_COLS 28
#define DS_FMNIST_CLASSES 10
#define DS_FMNIST_TRAIN_N 60000
#define DS_FMNIST_TEST_N 10000

/* The folder of the four files: $DESCENT_DATA if set and non-empty, else
 * /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). */
const char *ds_fmnist_dir(void);

/* One split: images [n, 28, 28] u8 and labels [n] u8, both opened, headers
 * checked, no element read yet. */
struct ds_fmnist_files {
    struct ds_idx_reader images, labels;
    int64_t n;
};

/* Opens <dir>/<prefix>-images-idx3-ubyte.gz (or the uncompressed file when
 * only that exists) and <dir>/<prefix>-labels-idx1-ubyte[.gz]; prefix is
 * "train" or "t10k"; dir NULL means ds_fmnist_dir(). Checks the types, the
 * dims, that both hold the same n, and n == expect_n when expect_n > 0. A
 * missing file's message says how to get it. On error f is left closed. */
ds_status ds_fmnist_open(const char *dir, const char *prefix, int64_t expect_n,
                         struct ds_fmnist_files *f, struct ds_err *err);

/* Reads all n labels into labels[0..n), checks each is a class 0..9, and
 * finishes (closes) the labels reader. The images are then the caller's to
 * read with ds_idx_read(&f->images, ...) and ds_idx_finish. */
ds_status ds_fmnist_read_labels(struct ds_fmnist_files *f, uint8_t *labels, struct ds_err *err);

/* Closes both readers; safe twice, and on a zeroed struct. */
void ds_fmnist_close(struct ds_fmnist_files *f);

#endif
