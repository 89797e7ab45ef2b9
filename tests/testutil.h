/*
 * testutil.h: what the cmocka tests share: assertions on floating-point
 * closeness that print both values, relative norms, and helpers to find the
 * binary and fixtures. Every test binary exits non-zero on any failure; a
 * skip is reported by cmocka's skip() and counted by tests/run.sh.
 */
#ifndef DS_TESTUTIL_H
#define DS_TESTUTIL_H

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

/* Fails with both values and the tolerance when |a - b| > tol. */
#define assert_close(a, b, tol)                                                                 \
    do {                                                                                        \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                          \
        if (!(fabs(a_ - b_) <= t_))                                                             \
            fail_msg("%s = %.10g and %s = %.10g differ by %.3g > %.3g", #a, a_, #b, b_,        \
                     fabs(a_ - b_), t_);                                                        \
    } while (0)

/* Fails when a > b, printing both. */
#define assert_le(a, b)                                                                         \
    do {                                                                                        \
        double a_ = (double)(a), b_ = (double)(b);                                              \
        if (!(a_ <= b_)) fail_msg("expected %s = %.10g <= %s = %.10g", #a, a_, #b, b_);        \
    } while (0)

/* ||x - y|| / ||y|| in double. */
static inline double tu_rel_err_f(const float *x, const float *y, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] - (double)y[i];
        num += d * d;
        den += (double)y[i] * (double)y[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* A fresh folder /tmp/descent-<tag>-XXXXXX in buf (0 on success), and its removal. */
static inline int tu_tmpdir_make(char *buf, size_t len, const char *tag)
{
    snprintf(buf, len, "/tmp/descent-%s-XXXXXX", tag);
    return mkdtemp(buf) ? 0 : -1;
}

static inline int tu_tmpdir_remove(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* The source tree root: tests run from it (make test), or DESCENT_ROOT. */
static inline const char *tu_root(void)
{
    const char *r = getenv("DESCENT_ROOT");
    return r && r[0] ? r : ".";
}

#endif
