/*
 * backend_cpu.c: the CPU backend. GEMMs through OpenBLAS (cblas_sgemm, row
 * major, transposes passed through so no operand is copied); everything else
 * is an OpenMP loop. Reductions split n into DS_CPU_CHUNKS fixed chunks summed
 * in double and combined in chunk order, so results do not depend on the
 * thread count.
 */
#include "backend.h"
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

/* Activations and their derivatives. d/dx from the output where the maths
 * allows it (relu, tanh, sigmoid), from the input for gelu. */
static inline float act_fwd(enum ds_act act, float x)
{
    switch (act) {
    case DS_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case DS_ACT_TANH: return tanhf(x);
    case DS_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case DS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    default: return x;
    }
}

static inline float act_grad(enum ds_act act, float x, float y)
{
    switch (act) {
    case DS_ACT_RELU: return y > 0.0f ? 1.0f : 0.0f;
    case DS_ACT_TANH: return 1.0f - y * y;
    case DS_ACT_SIGMOID: return y * (1.0f - y);
    case DS_ACT_GELU: {
        /* Phi(x) + x * phi(x) */
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = expf(-0.5f * x * x) * 0.39894228040143268f;
        return cdf + x * pdf;
    }
    default: return 1.0f;
    }
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
            row[c] = act_fwd(act, z);
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
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * act_grad(act, x ? x[i] : 0.0f, y ? y[i] : 0.0f);
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

static void cpu_gather_i32(struct ds_backend *be, int rows, const int32_t *src, const int32_t *idx,
                           int32_t *dst)
{
    (void)be;
    for (int r = 0; r < rows; r++) dst[r] = src[idx[r]];
}

static void cpu_optim_step(struct ds_backend *be, const struct ds_optim_ops *opt,
                           const struct ds_optim_hyper *h, const struct ds_optim_scalars *s,
                           size_t n, float *p, const float *g, float *const *state)
{
    (void)be;
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
    .softmax_xent = cpu_softmax_xent,
    .bce_logits = cpu_bce_logits,
    .sq_error = cpu_sq_error,
    .dot = cpu_dot,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .add_normal = cpu_add_normal,
    .gather_rows = cpu_gather_rows,
    .gather_i32 = cpu_gather_i32,
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
    openblas_set_num_threads(threads);
    snprintf(ctx->description, sizeof ctx->description, "cpu: OpenBLAS %s; %d thread%s",
             openblas_get_config(), threads, threads == 1 ? "" : "s");
    out->ops = &ds_cpu_ops;
    out->ctx = ctx;
    out->threads = threads;
    return DS_OK;
}
