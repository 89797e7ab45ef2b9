/*
 * backend_cpu.c: the CPU backend. GEMMs through OpenBLAS (cblas_sgemm, row
 * major, transposes passed through so no operand is copied); everything else
 * is an OpenMP loop. Reductions split n into DS_CPU_CHUNKS fixed chunks summed
 * in double and combined in chunk order, so results do not depend on the
 * thread count.
 */
#include "act.h"
#include "backend.h"
#include "conv_winograd.h"
#include "philox.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* OpenBLAS extensions (declared in its cblas.h too; repeated for clarity). */
void openblas_set_num_threads(int num_threads);
char *openblas_get_config(void);

#define DS_CPU_CHUNKS 64
#define DS_CPU_PAR_MIN 8192 /* below this many elements a loop runs on one thread */

struct ds_cpu_ctx {
    char description[256];
};

static void *cpu_alloc(struct ds_backend *be, size_t bytes)
{
    (void)be;
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded ? rounded : 64);
    if (p) memset(p, 0, rounded ? rounded : 64);
    return p;
}

static void cpu_free(struct ds_backend *be, void *p)
{
    (void)be;
    free(p);
}

static void cpu_memcpy(struct ds_backend *be, void *dst, const void *src, size_t bytes)
{
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

static void cpu_fill(struct ds_backend *be, float *x, size_t n, float v)
{
    (void)be;
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] = v;
}

static void cpu_gemm(struct ds_backend *be, int ta, int tb, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    (void)be;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m,
                n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_bias_act(struct ds_backend *be, int rows, int cols, float *y, const float *bias,
                         enum ds_act act, float *pre)
{
    (void)be;
    size_t total = (size_t)rows * (size_t)cols;
#pragma omp parallel for schedule(static) if (total > DS_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        float *row = y + (size_t)r * cols;
        float *prow = pre ? pre + (size_t)r * cols : NULL;
        if (act == DS_ACT_RELU) { /* the common case, kept branch-free for SIMD */
            if (bias)
                for (int c = 0; c < cols; c++) {
                    float z = row[c] + bias[c];
                    row[c] = z > 0.0f ? z : 0.0f;
                }
            else
                for (int c = 0; c < cols; c++) row[c] = row[c] > 0.0f ? row[c] : 0.0f;
            continue;
        }
        for (int c = 0; c < cols; c++) {
            float z = row[c] + (bias ? bias[c] : 0.0f);
            if (prow) prow[c] = z;
            row[c] = ds_act_fwd(act, z);
        }
    }
}

static void cpu_act_backward(struct ds_backend *be, size_t n, enum ds_act act, const float *x,
                             const float *y, const float *dy, float *dx)
{
    (void)be;
    if (act == DS_ACT_RELU) {
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
        return;
    }
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++)
        dx[i] = dy[i] * ds_act_grad(act, x ? x[i] : 0.0f, y ? y[i] : 0.0f);
}

static void cpu_col_sum(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                        int accumulate)
{
    (void)be;
    /* Each column's sum runs down its rows in order: deterministic. Rows are
     * walked in the inner loop over a block of columns to stay in cache. */
    enum { BLOCK = 64 };
    int nblocks = (cols + BLOCK - 1) / BLOCK;
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > DS_CPU_PAR_MIN)
    for (int bk = 0; bk < nblocks; bk++) {
        int c0 = bk * BLOCK, c1 = c0 + BLOCK < cols ? c0 + BLOCK : cols;
        float acc[BLOCK];
        for (int c = c0; c < c1; c++) acc[c - c0] = accumulate ? out[c] : 0.0f;
        for (int r = 0; r < rows; r++) {
            const float *row = x + (size_t)r * cols;
            for (int c = c0; c < c1; c++) acc[c - c0] += row[c];
        }
        for (int c = c0; c < c1; c++) out[c] = acc[c - c0];
    }
}

static void cpu_dropout(struct ds_backend *be, size_t n, float p, uint64_t seed, uint32_t stream,
                        uint64_t offset, const float *x, float *y)
{
    (void)be;
    uint32_t thr = ds_dropout_threshold24(p);
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    /* Four elements share one Philox block; walk blocks so each is made once. */
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN / 4)
    for (size_t i0 = 0; i0 < n + (offset & 3); i0 += 4) {
        uint64_t idx0 = (offset & ~(uint64_t)3) + i0;
        uint32_t b[4];
        ds_rng_block(seed, stream, idx0 >> 2, b);
        for (int l = 0; l < 4; l++) {
            uint64_t gi = idx0 + (uint64_t)l;
            if (gi < offset || gi >= offset + n) continue;
            size_t i = (size_t)(gi - offset);
            y[i] = (b[l] >> 8) >= thr ? x[i] * scale : 0.0f;
        }
    }
}

/* ---- convolution and pooling ------------------------------------------ */

/* Runs of a few floats (an output row of 8 to 28): blocks of 8 moved as one
 * (unaligned) vector, where a loop of run-time length pays its prologue and
 * epilogue on every row, or GCC turns it into a memmove call. */
typedef float ds_f8u __attribute__((vector_size(32), aligned(4), may_alias));

static inline void copy_run(float *restrict d, const float *restrict s, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) *(ds_f8u *)(d + i) = *(const ds_f8u *)(s + i);
    for (; i < n; i++) d[i] = s[i];
}

static inline void add_run(float *restrict d, const float *restrict s, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) *(ds_f8u *)(d + i) += *(const ds_f8u *)(s + i);
    for (; i < n; i++) d[i] += s[i];
}

/* For stride 1: kernel position (ki, kj) reads input row oh + ih0 and column
 * ow + iw0; the output rows [oh0, oh1) and columns [lo, hi) are the ones that
 * read inside the image (the rest is zero padding). Shared by im2col and its
 * adjoint so the two agree by construction. */
struct span1 {
    int ih0, iw0, oh0, oh1, lo, hi;
};

static inline struct span1 span1_of(const struct ds_window *g, int ki, int kj)
{
    struct span1 s;
    s.ih0 = ki - g->pad, s.iw0 = kj - g->pad;
    s.oh0 = s.ih0 < 0 ? (-s.ih0 < g->oh ? -s.ih0 : g->oh) : 0;
    s.oh1 = g->h - s.ih0 < g->oh ? g->h - s.ih0 : g->oh;
    s.lo = s.iw0 < 0 ? (-s.iw0 < g->ow ? -s.iw0 : g->ow) : 0;
    s.hi = g->w - s.iw0 < g->ow ? g->w - s.iw0 : g->ow;
    if (s.oh1 < s.oh0) s.oh1 = s.oh0;
    if (s.hi < s.lo) s.hi = s.lo;
    return s;
}

static void cpu_im2col(struct ds_backend *be, const struct ds_window *g, const float *x,
                       float *cols)
{
    (void)be;
    const int K = g->k, P = g->oh * g->ow, rows = g->c * K * K;
    const size_t BP = (size_t)g->batch * P, plane = (size_t)g->h * g->w;
    /* One row of cols per (channel, ki, kj): each thread writes whole rows,
     * reading one input plane per image. */
#pragma omp parallel for schedule(static) if ((size_t)rows * BP > DS_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        int ci = r / (K * K), ki = (r / K) % K, kj = r % K;
        float *dst = cols + (size_t)r * BP;
        if (g->stride == 1) {
            /* the row's geometry is the same for every image */
            struct span1 sp = span1_of(g, ki, kj);
            int ih0 = sp.ih0, iw0 = sp.iw0, oh0 = sp.oh0, oh1 = sp.oh1, lo = sp.lo, hi = sp.hi;
            int full = oh0 == 0 && oh1 == g->oh && lo == 0 && hi == g->ow;
            for (int b = 0; b < g->batch; b++) {
                /* in-image offsets only: (oh + ih0) >= 0 and (lo + iw0) >= 0 where read */
                const float *src = x + ((size_t)b * g->c + ci) * plane;
                float *d = dst + (size_t)b * P;
                if (full) { /* no padding reached: rows of ow floats, nothing else */
                    const float *s0 = src + (size_t)ih0 * g->w + (size_t)iw0;
                    for (int oh = 0; oh < g->oh; oh++)
                        copy_run(d + (size_t)oh * g->ow, s0 + (size_t)oh * g->w, g->ow);
                    continue;
                }
                for (int oh = 0; oh < g->oh; oh++) {
                    float *dr = d + (size_t)oh * g->ow;
                    if (oh < oh0 || oh >= oh1) {
                        memset(dr, 0, (size_t)g->ow * sizeof(float));
                        continue;
                    }
                    for (int ow = 0; ow < lo; ow++) dr[ow] = 0.0f;
                    if (hi > lo)
                        copy_run(dr + lo, src + (size_t)(oh + ih0) * g->w + (size_t)(lo + iw0), hi - lo);
                    for (int ow = hi; ow < g->ow; ow++) dr[ow] = 0.0f;
                }
            }
            continue;
        }
        for (int b = 0; b < g->batch; b++) {
            const float *src = x + ((size_t)b * g->c + ci) * plane;
            for (int oh = 0; oh < g->oh; oh++) {
                int ih = oh * g->stride - g->pad + ki;
                float *d = dst + (size_t)b * P + (size_t)oh * g->ow;
                if (ih < 0 || ih >= g->h) {
                    memset(d, 0, (size_t)g->ow * sizeof(float));
                    continue;
                }
                const float *srow = src + (size_t)ih * g->w;
                for (int ow = 0; ow < g->ow; ow++) {
                    int iw = ow * g->stride - g->pad + kj;
                    d[ow] = (iw >= 0 && iw < g->w) ? srow[iw] : 0.0f;
                }
            }
        }
    }
}

static void cpu_col2im(struct ds_backend *be, const struct ds_window *g, const float *cols,
                       float *dx)
{
    (void)be;
    const int K = g->k, P = g->oh * g->ow;
    const size_t BP = (size_t)g->batch * P, plane = (size_t)g->h * g->w;
    /* Parallel over (image, channel) planes: each plane is written by one
     * thread, summing its K*K rows of cols in a fixed order (deterministic). */
    const int planes = g->batch * g->c;
#pragma omp parallel for schedule(static) if ((size_t)planes * plane * K * K > DS_CPU_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        int b = pl / g->c, ci = pl % g->c;
        float *dst = dx + (size_t)pl * plane;
        memset(dst, 0, plane * sizeof(float));
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                const float *src = cols + ((size_t)(ci * K + ki) * K + kj) * BP + (size_t)b * P;
                if (g->stride == 1) {
                    struct span1 sp = span1_of(g, ki, kj);
                    if (sp.hi == sp.lo) continue;
                    for (int oh = sp.oh0; oh < sp.oh1; oh++)
                        add_run(dst + (size_t)(oh + sp.ih0) * g->w + (size_t)(sp.lo + sp.iw0),
                                src + (size_t)oh * g->ow + sp.lo, sp.hi - sp.lo);
                    continue;
                }
                for (int oh = 0; oh < g->oh; oh++) {
                    int ih = oh * g->stride - g->pad + ki;
                    if (ih < 0 || ih >= g->h) continue;
                    float *drow = dst + (size_t)ih * g->w;
                    const float *s = src + (size_t)oh * g->ow;
                    for (int ow = 0; ow < g->ow; ow++) {
                        int iw = ow * g->stride - g->pad + kj;
                        if (iw >= 0 && iw < g->w) drow[iw] += s[ow];
                    }
                }
            }
    }
}

static void cpu_chw_bias_act(struct ds_backend *be, int batch, int ch, int P, const float *yt,
                             const float *bias, enum ds_act act, float *y, float *pre)
{
    (void)be;
    const size_t BP = (size_t)batch * P;
#pragma omp parallel for schedule(static) if (BP * ch > DS_CPU_PAR_MIN)
    for (int bc = 0; bc < batch * ch; bc++) {
        int b = bc / ch, c = bc % ch;
        const float *s = yt + (size_t)c * BP + (size_t)b * P;
        float *d = y + (size_t)bc * P;
        float bv = bias ? bias[c] : 0.0f;
        if (act == DS_ACT_RELU) {
            for (int p = 0; p < P; p++) {
                float z = s[p] + bv;
                d[p] = z > 0.0f ? z : 0.0f;
            }
        } else {
            float *pr = pre ? pre + (size_t)bc * P : NULL;
            for (int p = 0; p < P; p++) {
                float z = s[p] + bv;
                if (pr) pr[p] = z;
                d[p] = ds_act_fwd(act, z);
            }
        }
    }
}

static void cpu_chw_act_backward(struct ds_backend *be, int batch, int ch, int P, enum ds_act act,
                                 const float *pre, const float *y, const float *dy, float *dzt)
{
    (void)be;
    const size_t BP = (size_t)batch * P;
#pragma omp parallel for schedule(static) if (BP * ch > DS_CPU_PAR_MIN)
    for (int bc = 0; bc < batch * ch; bc++) {
        int b = bc / ch, c = bc % ch;
        const float *g = dy + (size_t)bc * P, *yy = y + (size_t)bc * P;
        float *d = dzt + (size_t)c * BP + (size_t)b * P;
        if (act == DS_ACT_RELU) {
            for (int p = 0; p < P; p++) d[p] = yy[p] > 0.0f ? g[p] : 0.0f;
        } else if (act == DS_ACT_NONE) {
            memcpy(d, g, (size_t)P * sizeof(float));
        } else {
            const float *pr = pre ? pre + (size_t)bc * P : NULL;
            for (int p = 0; p < P; p++) d[p] = g[p] * ds_act_grad(act, pr ? pr[p] : 0.0f, yy[p]);
        }
    }
}

static void cpu_row_sum(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                        int accumulate)
{
    (void)be;
    /* Four double partial sums per row, combined in a fixed order: SIMD-friendly
     * and independent of the thread count. */
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > DS_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const float *row = x + (size_t)r * cols;
        double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        int c = 0;
        for (; c + 4 <= cols; c += 4) a0 += row[c], a1 += row[c + 1], a2 += row[c + 2], a3 += row[c + 3];
        for (; c < cols; c++) a0 += row[c];
        float sum = (float)((a0 + a1) + (a2 + a3));
        out[r] = accumulate ? out[r] + sum : sum;
    }
}

static void cpu_pool_forward(struct ds_backend *be, enum ds_pool_kind kind,
                             const struct ds_window *g, const float *x, float *y)
{
    (void)be;
    const int planes = g->batch * g->c, K = g->k;
    const size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    const float inv = 1.0f / (float)(K * K);
#pragma omp parallel for schedule(static) if ((size_t)planes * in_plane > DS_CPU_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * in_plane;
        float *dst = y + (size_t)pl * out_plane;
        if (kind == DS_POOL_MAX && K == 2 && g->stride == 2) {
            /* the common 2x2 max pool, written out so it vectorises */
            for (int oh = 0; oh < g->oh; oh++) {
                const float *r0 = src + (size_t)(2 * oh) * g->w, *r1 = r0 + g->w;
                float *d = dst + (size_t)oh * g->ow;
                for (int ow = 0; ow < g->ow; ow++) {
                    float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], e = r1[2 * ow + 1];
                    float m0 = b > a ? b : a, m1 = e > c ? e : c;
                    float m = m1 > m0 ? m1 : m0;
                    /* NaN propagates as in torch's max_pool2d, off the fast path */
                    d[ow] = m == m && a == a && b == b && c == c && e == e ? m : NAN;
                }
            }
            continue;
        }
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                const float *win = src + (size_t)(oh * g->stride) * g->w + (size_t)ow * g->stride;
                float acc = kind == DS_POOL_MAX ? win[0] : 0.0f;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        float v = win[(size_t)i * g->w + j];
                        /* NaN propagates, as in torch's max_pool2d */
                        if (kind == DS_POOL_MAX) acc = (v > acc || isnan(v)) ? v : acc;
                        else acc += v;
                    }
                dst[(size_t)oh * g->ow + ow] = kind == DS_POOL_MAX ? acc : acc * inv;
            }
    }
}

static void cpu_pool_backward(struct ds_backend *be, enum ds_pool_kind kind,
                              const struct ds_window *g, const float *x, const float *y,
                              const float *dy, float *dx)
{
    (void)be;
    const int planes = g->batch * g->c, K = g->k;
    const size_t in_plane = (size_t)g->h * g->w, out_plane = (size_t)g->oh * g->ow;
    const float inv = 1.0f / (float)(K * K);
#pragma omp parallel for schedule(static) if ((size_t)planes * in_plane > DS_CPU_PAR_MIN)
    for (int pl = 0; pl < planes; pl++) {
        const float *src = x + (size_t)pl * in_plane;
        const float *yo = y + (size_t)pl * out_plane, *go = dy + (size_t)pl * out_plane;
        float *dst = dx + (size_t)pl * in_plane;
        if (kind == DS_POOL_MAX && K == 2 && g->stride == 2) {
            /* Branch-free: each of the window's four positions gets the
             * gradient if it is the first (row-major) equal to the max, or,
             * in a NaN window, the first NaN, as the generic path below. The
             * windows tile the plane, so only an odd last row or column
             * needs the zeros. */
            if (g->h != 2 * g->oh || g->w != 2 * g->ow) memset(dst, 0, in_plane * sizeof(float));
            for (int oh = 0; oh < g->oh; oh++) {
                const float *r0 = src + (size_t)(2 * oh) * g->w, *r1 = r0 + g->w;
                float *d0 = dst + (size_t)(2 * oh) * g->w, *d1 = d0 + g->w;
                const float *yy = yo + (size_t)oh * g->ow, *gg = go + (size_t)oh * g->ow;
                int nan_row = 0;
                for (int ow = 0; ow < g->ow; ow++) nan_row |= yy[ow] != yy[ow];
                if (!nan_row) {
                    /* selects only, no branches: the gradient goes to the first
                     * position equal to the max and `rest` is what is left */
                    for (int ow = 0; ow < g->ow; ow++) {
                        int j = 2 * ow;
                        float m = yy[ow];
                        /* as bit masks: GCC keeps float selects as branches */
                        uint32_t rest, ea = -(uint32_t)(r0[j] == m), eb = -(uint32_t)(r0[j + 1] == m),
                                       ec = -(uint32_t)(r1[j] == m), o;
                        memcpy(&rest, &gg[ow], 4);
                        o = rest & ea, memcpy(&d0[j], &o, 4), rest &= ~ea;
                        o = rest & eb, memcpy(&d0[j + 1], &o, 4), rest &= ~eb;
                        o = rest & ec, memcpy(&d1[j], &o, 4), rest &= ~ec;
                        memcpy(&d1[j + 1], &rest, 4);
                    }
                    continue;
                }
                for (int ow = 0; ow < g->ow; ow++) { /* rare: a NaN in the row */
                    int j = 2 * ow;
                    float m = yy[ow], gv = gg[ow];
                    float a = r0[j], b = r0[j + 1], c = r1[j];
                    int ea, eb, ec;
                    if (m == m) {
                        ea = a == m, eb = b == m, ec = c == m;
                    } else {
                        ea = a != a, eb = b != b, ec = c != c;
                    }
                    int ta = ea, tb = !ea && eb, tc = !ea && !eb && ec, te = !ea && !eb && !ec;
                    d0[j] = ta ? gv : 0.0f;
                    d0[j + 1] = tb ? gv : 0.0f;
                    d1[j] = tc ? gv : 0.0f;
                    d1[j + 1] = te ? gv : 0.0f;
                }
            }
            continue;
        }
        memset(dst, 0, in_plane * sizeof(float));
        for (int oh = 0; oh < g->oh; oh++)
            for (int ow = 0; ow < g->ow; ow++) {
                size_t o = (size_t)oh * g->ow + ow;
                size_t base = (size_t)(oh * g->stride) * g->w + (size_t)ow * g->stride;
                if (kind == DS_POOL_AVG) {
                    float v = go[o] * inv;
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++) dst[base + (size_t)i * g->w + j] += v;
                    continue;
                }
                /* the first element equal to the window's max, scanning rows
                 * then columns, as the forward's strict '>' kept it */
                size_t arg = base;
                for (int i = 0, found = 0; i < K && !found; i++)
                    for (int j = 0; j < K; j++) {
                        size_t at = base + (size_t)i * g->w + j;
                        float v = src[at];
                        if (v == yo[o] || (isnan(v) && isnan(yo[o]))) {
                            arg = at, found = 1;
                            break;
                        }
                    }
                dst[arg] += go[o];
            }
    }
}

/* ---- Conv2d: chunked im2col + GEMM --------------------------------------
 * (5x5 stride-1 convolutions over a multiple of 8 channels go to the
 * Winograd path of conv_winograd.c instead: a third of the arithmetic.)
 *
 * A whole batch unrolled is large (the small CNN's second convolution: 26 MB
 * of columns for 128 images), and a GEMM over it spends as long packing the
 * columns from memory as multiplying. So the batch is cut into chunks of
 * samples whose columns fit in a core's L2 cache; each thread unrolls a chunk,
 * multiplies it with a single-threaded GEMM (OpenBLAS's OpenMP build runs one
 * thread inside a parallel region) and writes its part of y. The backward
 * unrolls the chunk again and computes its dW and db partials, summed in chunk
 * order afterwards. (Keeping the forward's columns instead, 26 MB for that
 * layer, measured no faster.) */

#define DS_CONV_COLS_TARGET (192 * 1024) /* floats of columns per chunk: ~768 KiB (measured: 32K..512K change the step by under 10%) */

struct conv_plan {
    int S;        /* samples per chunk */
    int chunks;
    size_t cols;  /* floats of columns per chunk: c*k*k * S*P */
    size_t yt;    /* floats of channel-major output per chunk: out_c * S*P */
    size_t per_thread, partial; /* partial: out_c*c*k*k + out_c per chunk */
};

static struct conv_plan conv_plan_of(const struct ds_window *g, int out_c)
{
    struct conv_plan p;
    size_t ckk = (size_t)g->c * g->k * g->k, P = (size_t)g->oh * g->ow;
    size_t s = DS_CONV_COLS_TARGET / (ckk * P);
    p.S = s < 1 ? 1 : (s > (size_t)g->batch ? g->batch : (int)s);
    p.chunks = (g->batch + p.S - 1) / p.S;
    p.cols = ckk * (size_t)p.S * P;
    p.yt = (size_t)out_c * (size_t)p.S * P;
    p.per_thread = p.cols + p.yt;
    p.partial = (size_t)out_c * ckk + (size_t)out_c;
    return p;
}

static size_t cpu_conv_workspace(struct ds_backend *be, const struct ds_window *g, int out_c)
{
    if (ds_wino_fits(g, out_c)) return ds_wino_workspace(g, out_c, be->threads);
    struct conv_plan p = conv_plan_of(g, out_c);
    return (size_t)be->threads * p.per_thread + (size_t)p.chunks * p.partial;
}

static void cpu_conv_forward(struct ds_backend *be, const struct ds_window *g, int out_c,
                             const float *x, const float *W, const float *bias, enum ds_act act,
                             float *y, float *pre, float *ws)
{
    if (ds_wino_fits(g, out_c)) {
        ds_wino_forward(be->threads, g, out_c, x, W, bias, act, y, pre, ws);
        return;
    }
    struct conv_plan p = conv_plan_of(g, out_c);
    const int ckk = g->c * g->k * g->k, P = g->oh * g->ow;
    const size_t in_s = (size_t)g->c * g->h * g->w, out_s = (size_t)out_c * P;
#pragma omp parallel num_threads(be->threads)
    {
        float *cols = ws + (size_t)omp_get_thread_num() * p.per_thread, *yt = cols + p.cols;
#pragma omp for schedule(static)
        for (int ch = 0; ch < p.chunks; ch++) {
            int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
            struct ds_window gc = *g;
            gc.batch = nb;
            cpu_im2col(be, &gc, x + (size_t)b0 * in_s, cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out_c, nb * P, ckk, 1.0f, W,
                         ckk, cols, nb * P, 0.0f, yt, nb * P);
            cpu_chw_bias_act(be, nb, out_c, P, yt, bias, act, y + (size_t)b0 * out_s,
                             pre ? pre + (size_t)b0 * out_s : NULL);
        }
    }
}

static void cpu_conv_backward(struct ds_backend *be, const struct ds_window *g, int out_c,
                              enum ds_act act, const float *x, const float *W, const float *y,
                              const float *pre, const float *dy, float *dW, float *db, float *dx,
                              int accumulate, float *ws)
{
    if (ds_wino_fits(g, out_c)) {
        ds_wino_backward(be->threads, g, out_c, act, x, W, y, pre, dy, dW, db, dx, accumulate, ws);
        return;
    }
    struct conv_plan p = conv_plan_of(g, out_c);
    const int ckk = g->c * g->k * g->k, P = g->oh * g->ow;
    const size_t in_s = (size_t)g->c * g->h * g->w, out_s = (size_t)out_c * P;
    float *partials = ws + (size_t)be->threads * p.per_thread;
#pragma omp parallel num_threads(be->threads)
    {
        float *cols = ws + (size_t)omp_get_thread_num() * p.per_thread, *dzt = cols + p.cols;
#pragma omp for schedule(static)
        for (int ch = 0; ch < p.chunks; ch++) {
            int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
            struct ds_window gc = *g;
            gc.batch = nb;
            float *pw = partials + (size_t)ch * p.partial, *pb = pw + (size_t)out_c * ckk;
            cpu_chw_act_backward(be, nb, out_c, P, act, pre ? pre + (size_t)b0 * out_s : NULL,
                                 y + (size_t)b0 * out_s, dy + (size_t)b0 * out_s, dzt);
            cpu_row_sum(be, out_c, nb * P, dzt, pb, 0);
            cpu_im2col(be, &gc, x + (size_t)b0 * in_s, cols);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out_c, ckk, nb * P, 1.0f, dzt,
                        nb * P, cols, nb * P, 0.0f, pw, ckk);
            if (dx) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, nb * P, out_c, 1.0f, W,
                            ckk, dzt, nb * P, 0.0f, cols, nb * P);
                cpu_col2im(be, &gc, cols, dx + (size_t)b0 * in_s);
            }
        }
        /* dW, db = the chunk partials summed in chunk order, split over elements */
        enum { BLK = 1024 };
        size_t nblk = (p.partial + BLK - 1) / BLK, nw = (size_t)out_c * ckk;
#pragma omp for schedule(static)
        for (size_t bk = 0; bk < nblk; bk++) {
            size_t i0 = bk * BLK, i1 = i0 + BLK < p.partial ? i0 + BLK : p.partial;
            float acc[BLK];
            for (size_t i = i0; i < i1; i++) acc[i - i0] = partials[i];
            for (int ch = 1; ch < p.chunks; ch++) {
                const float *pc = partials + (size_t)ch * p.partial;
                for (size_t i = i0; i < i1; i++) acc[i - i0] += pc[i];
            }
            for (size_t i = i0; i < i1; i++) {
                float *dst = i < nw ? dW + i : db + (i - nw);
                *dst = accumulate ? *dst + acc[i - i0] : acc[i - i0];
            }
        }
    }
}

/* Chunk c of [0, n) for the deterministic reductions. */
static inline void chunk_range(size_t n, int c, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)c / DS_CPU_CHUNKS;
    *hi = n * (size_t)(c + 1) / DS_CPU_CHUNKS;
}

static double sum_partials(const double *part)
{
    double s = 0.0;
    for (int c = 0; c < DS_CPU_CHUNKS; c++) s += part[c];
    return s;
}

static int64_t sum_hits(const int64_t *hits)
{
    int64_t h = 0;
    for (int c = 0; c < DS_CPU_CHUNKS; c++) h += hits[c];
    return h;
}

static double cpu_softmax_xent(struct ds_backend *be, int rows, int cols, const float *logits,
                               const int32_t *labels, float *dlogits, float grad_scale,
                               int64_t *correct)
{
    (void)be;
    double part[DS_CPU_CHUNKS];
    int64_t hits[DS_CPU_CHUNKS];
#pragma omp parallel for schedule(static) if ((size_t)rows * cols > DS_CPU_PAR_MIN)
    for (int c = 0; c < DS_CPU_CHUNKS; c++) {
        size_t lo, hi;
        chunk_range((size_t)rows, c, &lo, &hi);
        double loss = 0.0;
        int64_t hit = 0;
        for (size_t r = lo; r < hi; r++) {
            const float *z = logits + r * (size_t)cols;
            int32_t y = labels[r];
            DS_ASSERT_MSG(y >= 0 && y < cols, "label %d outside [0, %d)", (int)y, cols);
            float zmax = z[0];
            int arg = 0;
            for (int k = 1; k < cols; k++)
                if (z[k] > zmax) zmax = z[k], arg = k;
            float sum = 0.0f;
            for (int k = 0; k < cols; k++) sum += expf(z[k] - zmax);
            /* (zmax - z[y]) + log(sum): exact for large logits, where
             * forming lse = zmax + log(sum) first would round it away */
            loss += (double)((zmax - z[y]) + logf(sum));
            hit += arg == y;
            if (dlogits) {
                float *d = dlogits + r * (size_t)cols;
                float inv = 1.0f / sum;
                for (int k = 0; k < cols; k++) d[k] = expf(z[k] - zmax) * inv * grad_scale;
                d[y] -= grad_scale;
            }
        }
        part[c] = loss;
        hits[c] = hit;
    }
    if (correct) *correct = sum_hits(hits);
    return sum_partials(part);
}

static double cpu_bce_logits(struct ds_backend *be, size_t n, const float *logits,
                             const float *targets, float *dlogits, float grad_scale,
                             int64_t *correct)
{
    (void)be;
    double part[DS_CPU_CHUNKS];
    int64_t hits[DS_CPU_CHUNKS];
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (int c = 0; c < DS_CPU_CHUNKS; c++) {
        size_t lo, hi;
        chunk_range(n, c, &lo, &hi);
        double loss = 0.0;
        int64_t hit = 0;
        for (size_t i = lo; i < hi; i++) {
            float z = logits[i], y = targets[i];
            /* max(z,0) - z*y + log(1 + exp(-|z|)): stable for any z */
            loss += (double)(fmaxf(z, 0.0f) - z * y + log1pf(expf(-fabsf(z))));
            hit += (z > 0.0f) == (y > 0.5f);
            if (dlogits) {
                float s = z >= 0.0f ? 1.0f / (1.0f + expf(-z)) : expf(z) / (1.0f + expf(z));
                dlogits[i] = (s - y) * grad_scale;
            }
        }
        part[c] = loss;
        hits[c] = hit;
    }
    if (correct) *correct = sum_hits(hits);
    return sum_partials(part);
}

static double cpu_sq_error(struct ds_backend *be, size_t n, const float *pred, const float *target,
                           float *dpred, float grad_scale)
{
    (void)be;
    double part[DS_CPU_CHUNKS];
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (int c = 0; c < DS_CPU_CHUNKS; c++) {
        size_t lo, hi;
        chunk_range(n, c, &lo, &hi);
        double loss = 0.0;
        for (size_t i = lo; i < hi; i++) {
            float d = pred[i] - target[i];
            loss += (double)d * (double)d;
            if (dpred) dpred[i] = 2.0f * d * grad_scale;
        }
        part[c] = loss;
    }
    return sum_partials(part);
}

static double cpu_dot(struct ds_backend *be, size_t n, const float *x, const float *y)
{
    (void)be;
    double part[DS_CPU_CHUNKS];
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (int c = 0; c < DS_CPU_CHUNKS; c++) {
        size_t lo, hi;
        chunk_range(n, c, &lo, &hi);
        /* Eight independent accumulators in a fixed order: vectorizable and
         * still deterministic. */
        double acc[8] = {0};
        size_t i = lo;
        for (; i + 8 <= hi; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * (double)y[i + l];
        for (; i < hi; i++) acc[0] += (double)x[i] * (double)y[i];
        part[c] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    }
    return sum_partials(part);
}

static void cpu_scale(struct ds_backend *be, size_t n, float *x, float a)
{
    (void)be;
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) x[i] *= a;
}

static void cpu_axpy(struct ds_backend *be, size_t n, float a, const float *x, float *y)
{
    (void)be;
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] += a * x[i];
}

static void cpu_add_normal(struct ds_backend *be, size_t n, float *x, float sigma, uint64_t seed,
                           uint32_t stream, uint64_t offset)
{
    (void)be;
#pragma omp parallel for schedule(static) if (n > DS_CPU_PAR_MIN / 8)
    for (size_t i = 0; i < n; i++) x[i] += sigma * (float)ds_rng_normal(seed, stream, offset + i);
}

static void cpu_gather_rows(struct ds_backend *be, int rows, size_t row_len, const float *src,
                            const int32_t *idx, float *dst)
{
    (void)be;
#pragma omp parallel for schedule(static) if ((size_t)rows * row_len > DS_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++)
        memcpy(dst + (size_t)r * row_len, src + (size_t)idx[r] * row_len, row_len * sizeof(float));
}

static void cpu_gather_u8(struct ds_backend *be, int rows, size_t row_len, const uint8_t *src,
                          const int32_t *idx, float mean, float std, float *dst)
{
    (void)be;
    int plain = mean == 0.0f && std == 1.0f;
#pragma omp parallel for schedule(static) if ((size_t)rows * row_len > DS_CPU_PAR_MIN)
    for (int r = 0; r < rows; r++) {
        const uint8_t *s = src + (size_t)idx[r] * row_len;
        float *d = dst + (size_t)r * row_len;
        if (plain)
            for (size_t j = 0; j < row_len; j++) d[j] = (float)s[j] / 255.0f;
        else
            for (size_t j = 0; j < row_len; j++) d[j] = ((float)s[j] / 255.0f - mean) / std;
    }
}

static void cpu_gather_i32(struct ds_backend *be, int rows, const int32_t *src, const int32_t *idx,
                           int32_t *dst)
{
    (void)be;
    for (int r = 0; r < rows; r++) dst[r] = src[idx[r]];
}

static void cpu_grad_guard(struct ds_backend *be, size_t n, const float *g, double clip,
                           double *guard)
{
    guard[0] = cpu_dot(be, n, g, g);
    double norm = sqrt(guard[0]);
    if (!isfinite(norm)) {
        guard[1] = NAN;
        return;
    }
    double coef = clip > 0.0 ? clip / (norm + 1e-6) : 1.0;
    guard[1] = coef < 1.0 ? (double)(float)coef : 1.0;
}

static void cpu_optim_step(struct ds_backend *be, const struct ds_optim_ops *opt,
                           const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                           size_t n, float *p, const float *g, float *const *state,
                           const double *guard)
{
    if (guard) {
        if (isnan(guard[1])) return;
        /* the trainer's gradient buffer, scaled in place as clip_grad_norm_
         * does (backend.h allows it): the steps read a plain array */
        if (guard[1] != 1.0) cpu_scale(be, n, (float *)g, (float)guard[1]);
    }
    opt->step(h, s, n, p, g, state);
}

static void cpu_sync(struct ds_backend *be) { (void)be; }

static const char *cpu_describe(struct ds_backend *be)
{
    struct ds_cpu_ctx *ctx = be->ctx;
    return ctx->description;
}

static void cpu_destroy(struct ds_backend *be)
{
    free(be->ctx);
    be->ctx = NULL;
}

static const struct ds_backend_ops ds_cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .describe = cpu_describe,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_memcpy,
    .download = cpu_memcpy,
    .copy = cpu_memcpy,
    .fill = cpu_fill,
    .gemm = cpu_gemm,
    .bias_act = cpu_bias_act,
    .act_backward = cpu_act_backward,
    .col_sum = cpu_col_sum,
    .dropout = cpu_dropout,
    .conv_workspace = cpu_conv_workspace,
    .conv_forward = cpu_conv_forward,
    .conv_backward = cpu_conv_backward,
    .im2col = cpu_im2col,
    .col2im = cpu_col2im,
    .chw_bias_act = cpu_chw_bias_act,
    .chw_act_backward = cpu_chw_act_backward,
    .row_sum = cpu_row_sum,
    .pool_forward = cpu_pool_forward,
    .pool_backward = cpu_pool_backward,
    .softmax_xent = cpu_softmax_xent,
    .bce_logits = cpu_bce_logits,
    .sq_error = cpu_sq_error,
    .dot = cpu_dot,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .add_normal = cpu_add_normal,
    .gather_rows = cpu_gather_rows,
    .gather_u8 = cpu_gather_u8,
    .gather_i32 = cpu_gather_i32,
    .grad_guard = cpu_grad_guard,
    .optim_step = cpu_optim_step,
    .sync = cpu_sync,
};

ds_status ds_backend_cpu_create(int threads, struct ds_backend *out, struct ds_err *err)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    struct ds_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return ds_err_set(err, DS_ERR_NOMEM, "out of memory creating the cpu backend");
    /* Both pools get the same count; they take turns (GEMM, then element-wise). */
    omp_set_num_threads(threads);
    /* the conv kernels run their building blocks inside a parallel region:
     * those must not fork again */
    omp_set_max_active_levels(1);
    openblas_set_num_threads(threads);
    snprintf(ctx->description, sizeof ctx->description, "cpu: OpenBLAS %s; %d thread%s",
             openblas_get_config(), threads, threads == 1 ? "" : "s");
    out->ops = &ds_cpu_ops;
    out->ctx = ctx;
    out->threads = threads;
    return DS_OK;
}
