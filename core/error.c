/* error.c: status names and messages, assertion failure, checked allocation. */
#include "ds.h"

#include <stdarg.h>

static const char *const ds_status_names_[] = {
#define DS_X_(name, code, text) #name,
    DS_STATUS_TABLE(DS_X_)
#undef DS_X_
};
static const char *const ds_status_texts_[] = {
#define DS_X_(name, code, text) text,
    DS_STATUS_TABLE(DS_X_)
#undef DS_X_
};
static const int ds_status_codes_[] = {
#define DS_X_(name, code, text) code,
    DS_STATUS_TABLE(DS_X_)
#undef DS_X_
};

const char *ds_status_name(ds_status s)
{
    return (unsigned)s < DS_STATUS_COUNT ? ds_status_names_[s] : "DS_STATUS_UNKNOWN";
}

const char *ds_status_text(ds_status s)
{
    return (unsigned)s < DS_STATUS_COUNT ? ds_status_texts_[s] : "unknown status";
}

int ds_status_exit_code(ds_status s)
{
    return (unsigned)s < DS_STATUS_COUNT ? ds_status_codes_[s] : 1;
}

ds_status ds_err_set(struct ds_err *err, ds_status status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return status;
}

void ds_assert_fail_(const char *cond, const char *func, const char *file, int line,
                     const char *msg)
{
    fprintf(stderr, "descent: internal error: assertion `%s` failed in %s (%s:%d)%s%s\n", cond,
            func, file, line, msg ? ": " : "", msg ? msg : "");
    abort();
}

void *ds_xcalloc_(size_t n, size_t size, const char *file, int line)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "descent: out of memory allocating %zu x %zu bytes (%s:%d)\n", n, size,
                file, line);
        abort();
    }
    return p;
}
