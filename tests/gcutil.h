/*
 * gcutil.h: what the numeric layer tests (test_gradcheck.c, test_conv.c)
 * share: a small deterministic generator for shapes and inputs (splitmix64,
 * fixed seeds, so a failure reproduces alone) and float buffers in the
 * memory of the one backend the binary tests (g_be, set up by its main).
 * Include once per test binary, after testutil.h.
 */
#ifndef DS_GCUTIL_H
#define DS_GCUTIL_H

#include "testutil.h"

#include "../core/backend.h"

static struct ds_backend g_be;

struct rng {
    uint64_t s;
};

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [lo, hi) */
static inline double rng_unif(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(rng_next(r) >> 11) * (1.0 / 9007199254740992.0));
}

/* uniform integer in [lo, hi] */
static inline int rng_int(struct rng *r, int lo, int hi)
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline void rng_fill(struct rng *r, float *x, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_unif(r, lo, hi);
}

static inline float *dev_alloc(size_t n)
{
    float *p = g_be.ops->alloc(&g_be, (n ? n : 1) * sizeof(float));
    assert_non_null(p);
    return p;
}
static inline void dev_free(void *p) { g_be.ops->free(&g_be, p); }
static inline void dev_put(float *dst, const float *src, size_t n)
{
    g_be.ops->upload(&g_be, dst, src, n * sizeof(float));
}
static inline void dev_get(float *dst, const float *src, size_t n)
{
    g_be.ops->download(&g_be, dst, src, n * sizeof(float));
}

static inline void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    assert_non_null(p);
    return p;
}

/* Group setup and teardown: the one-thread CPU backend the tests run on. */
static inline int setup_backend(void **state)
{
    (void)state;
    struct ds_err err = {{0}};
    if (ds_backend_create("cpu", 1, &g_be, &err) != DS_OK) {
        fprintf(stderr, "cpu backend: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static inline int teardown_backend(void **state)
{
    (void)state;
    ds_backend_destroy(&g_be);
    return 0;
}

#endif
