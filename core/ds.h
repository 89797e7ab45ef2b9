/*
 * ds.h: what every module of descent shares: the status codes (one X-macro
 * table gives the enum, its names and its messages), the assertion that is
 * never compiled out, and the error-message convention.
 *
 * Library code returns a ds_status and writes a human message into a caller
 * buffer (struct ds_err); only a command's main() decides to exit.
 */
#ifndef DS_H
#define DS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* X(name, exit code, text). Exit codes follow DESIGN.md: 0 ok, 1 run failed or
 * diverged or regression, 2 bad usage or bad input. */
#define DS_STATUS_TABLE(X)                                        \
    X(DS_OK, 0, "ok")                                             \
    X(DS_ERR_USAGE, 2, "bad usage")                               \
    X(DS_ERR_INPUT, 2, "bad input")                               \
    X(DS_ERR_IO, 2, "input/output error")                         \
    X(DS_ERR_NOMEM, 1, "out of memory")                           \
    X(DS_ERR_UNSUPPORTED, 2, "not supported by this build")       \
    X(DS_ERR_DIVERGED, 1, "run diverged")                         \
    X(DS_ERR_FAILED, 1, "run failed")                             \
    X(DS_ERR_INTERNAL, 1, "internal error")

typedef enum ds_status {
#define DS_X_(name, code, text) name,
    DS_STATUS_TABLE(DS_X_)
#undef DS_X_
    DS_STATUS_COUNT
} ds_status;

const char *ds_status_name(ds_status s);
const char *ds_status_text(ds_status s);
int ds_status_exit_code(ds_status s);

/* A message buffer carried through library calls that can fail on user input. */
struct ds_err {
    char msg[1024];
};

/* Formats into err (if not NULL) and returns status, so callers can write
 * `return ds_err_set(err, DS_ERR_INPUT, "--lr: %s is not a number", v);`. */
ds_status ds_err_set(struct ds_err *err, ds_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Never compiled out: a failed check is a programming error, not a user one. */
#define DS_ASSERT(cond)                                                          \
    do {                                                                         \
        if (!(cond)) ds_assert_fail_(#cond, __func__, __FILE__, __LINE__, NULL); \
    } while (0)
#define DS_ASSERT_MSG(cond, ...)                                                   \
    do {                                                                           \
        if (!(cond)) {                                                             \
            char ds_msg_[256];                                                     \
            snprintf(ds_msg_, sizeof ds_msg_, __VA_ARGS__);                        \
            ds_assert_fail_(#cond, __func__, __FILE__, __LINE__, ds_msg_);         \
        }                                                                          \
    } while (0)
_Noreturn void ds_assert_fail_(const char *cond, const char *func, const char *file, int line,
                               const char *msg);

/* malloc/calloc that abort with file:line on failure: for sizes the program
 * controls. Sizes that come from user input go through plain calloc and a
 * DS_ERR_NOMEM status instead. */
#define DS_XCALLOC(n, size) ds_xcalloc_((n), (size), __FILE__, __LINE__)
void *ds_xcalloc_(size_t n, size_t size, const char *file, int line);

#define DS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
