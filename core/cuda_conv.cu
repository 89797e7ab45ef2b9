/*
 * cuda_conv.cu: the CUDA backend's spatial ops: im2col and its adjoint,
 * Conv2d forward and backward as im2col + cuBLAS GEMM over chunks of the
 * batch, the channel-major <-> NCHW bias/activation steps, the bias-gradient
 * row sums, and max/avg pooling. Formulas and summation orders follow the CPU
 * backend (backend_cpu.c), so most ops give its bits.
 *
 * Determinism without atomics: every adjoint (col2im, pooling's backward) is
 * a gather, each output element summing its contributions alone in the CPU's
 * order; row sums use one block per row with a fixed tree; the conv's chunks
 * depend on the shapes only and their dW/db partials are added in chunk order
 * (GEMMs and sums with beta = 1 queued on the one stream).
 *
 * Index types: a per-chunk GEMM dimension (batch * oh * ow) is an int, as the
 * GEMM takes it; whole-tensor offsets are size_t.
 */
#include "cuda_common.cuh"
#include "fastdiv.h"

/* Floats of workspace a conv chunk may use, columns and GEMM output together
 * (1 GiB): the classic CNN's second convolution at batch 1024 needs 0.7 GB,
 * so it runs as one GEMM, as wide as PyTorch's (a review of the first 64 MiB
 * cap: 12 chunks of 99 samples a pass); a GPU of 16 GB or more has room. */
#define DS_CUDA_CONV_WS_FLOATS ((size_t)256 << 20)

/* Threads of a row-sum block: a power of two, for the tree. */
#define DS_CUDA_ROW_SUM_THREADS 512

#define DS_CUDA_GRID_STRIDE(i, n)                                                      \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);            \
         i += (size_t)gridDim.x * blockDim.x)

/* Index arithmetic. The kernels below turn a flat index into coordinates
 * with several divisions per element; by multiply and shift (fastdiv.h)
 * when every index of the launch is under 2^31, the common case, and by the
 * hardware's 64-bit division otherwise. Kernels take the divider type as a
 * template parameter; with_divider picks it. */
namespace {
struct div_fast {
    struct ds_fastdiv f;
    explicit div_fast(size_t d) : f(ds_fastdiv_make((uint32_t)d)) {}
    __device__ size_t q(size_t n) const { return ds_fastdiv_div(f, (uint32_t)n); }
};
struct div_wide {
    size_t d;
    explicit div_wide(size_t d_) : d(d_) {}
    __device__ size_t q(size_t n) const { return n / d; }
};
} /* namespace */

/* Calls launch(D(1)) with the divider type D that indices below n allow
 * (every divisor of a launch is at most its n). */
template <class F> static void with_divider(size_t n, F &&launch)
{
    if (n < ((size_t)1 << 31)) launch(div_fast(1));
    else launch(div_wide(1));
}

/* ---------------------------------------------------------------- im2col */

/* cols[(ci*k + ki)*k + kj, b*P + p] = x[b, ci, oh*s - pad + ki, ow*s - pad + kj],
 * 0 outside the image; one thread per column entry, so writes are coalesced. */
template <class D>
__global__ static void k_im2col(struct ds_window g, D dBP, D dKK, D dK, D dP, D dOW, const float *x,
                                float *cols)
{
    const int K = g.k, P = g.oh * g.ow, BP = g.batch * P;
    const size_t n = (size_t)g.c * K * K * BP;
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const int r = (int)dBP.q(i), col = (int)(i - (size_t)r * BP);
        const int ci = (int)dKK.q(r), rk = r - ci * K * K, ki = (int)dK.q(rk), kj = rk - ki * K;
        const int b = (int)dP.q(col), p = col - b * P, oh = (int)dOW.q(p), ow = p - oh * g.ow;
        const int ih = oh * g.stride - g.pad + ki, iw = ow * g.stride - g.pad + kj;
        float v = 0.0f;
        if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
            v = x[((size_t)b * g.c + ci) * ((size_t)g.h * g.w) + (size_t)ih * g.w + iw];
        cols[i] = v;
    }
}

void ds_cuda_im2col(struct ds_backend *be, const struct ds_window *g, const float *x, float *cols)
{
    const size_t n = (size_t)g->c * g->k * g->k * g->batch * g->oh * g->ow;
    if (!n) return;
    const size_t P = (size_t)g->oh * g->ow, BP = (size_t)g->batch * P, KK = (size_t)g->k * g->k;
    cudaStream_t st = ds_cuda_of(be)->stream;
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_im2col<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            *g, D(BP), D(KK), D(g->k), D(P), D(g->ow), x, cols);
    });
    DS_CUDA_LAUNCHED();
}

/* dx[b, ci, ih, iw] = sum over (ki, kj) in row-major order of the one column
 * entry that read it, if any: the CPU adds the same terms in the same order
 * from 0, so the sums are its bits. Kernel row ki reads input row ih from
 * output row oh = (ih + pad - ki) / s when that divides exactly, so only the
 * ki congruent to ih + pad modulo s are visited (still in increasing order). */
template <class D>
__global__ static void k_col2im(struct ds_window g, D dHW, D dC, D dW, D dS, const float *cols,
                                float *dx)
{
    const int K = g.k, s = g.stride, P = g.oh * g.ow, hw = g.h * g.w;
    const size_t BP = (size_t)g.batch * P, n = (size_t)g.batch * g.c * hw;
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const int pl = (int)dHW.q(i), q = (int)(i - (size_t)pl * hw);
        const int b = (int)dC.q(pl), ci = pl - b * g.c, ih = (int)dW.q(q), iw = q - ih * g.w;
        const int th = ih + g.pad, tw = iw + g.pad;
        /* ki runs th mod s, + s, ...: oh = (th - ki) / s starts at th / s
         * and falls by one a step (likewise kj and ow) */
        const int oh_first = (int)dS.q(th), ow_first = (int)dS.q(tw);
        float acc = 0.0f;
        for (int ki = th - oh_first * s, oh = oh_first; ki < K && ki <= th; ki += s, oh--) {
            if (oh >= g.oh) continue;
            for (int kj = tw - ow_first * s, ow = ow_first; kj < K && kj <= tw; kj += s, ow--) {
                if (ow >= g.ow) continue;
                acc += cols[((size_t)(ci * K + ki) * K + kj) * BP + (size_t)b * P +
                            (size_t)oh * g.ow + ow];
            }
        }
        dx[i] = acc;
    }
}

void ds_cuda_col2im(struct ds_backend *be, const struct ds_window *g, const float *cols, float *dx)
{
    const size_t n = (size_t)g->batch * g->c * g->h * g->w, hw = (size_t)g->h * g->w;
    if (!n) return;
    cudaStream_t st = ds_cuda_of(be)->stream;
    /* th = ih + pad < 2^31 too: h + pad fits an int */
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_col2im<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            *g, D(hw), D(g->c), D(g->w), D(g->stride), cols, dx);
    });
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- CHW ops */

/* y[b, c, p] = act(yt[c, b*P + p] + bias[c]), one thread per yt entry (reads
 * coalesced, writes in runs of P). pre is written for every activation when
 * given (the CPU skips it for ReLU, whose backward reads y only). */
template <class D>
__global__ static void k_chw_bias_act(int batch, int ch, int P, D dBP, D dP, const float *yt,
                                      const float *bias, enum ds_act act, float *y, float *pre)
{
    const int BP = batch * P;
    const size_t n = (size_t)ch * BP;
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const int c = (int)dBP.q(i), col = (int)(i - (size_t)c * BP);
        const int b = (int)dP.q(col), p = col - b * P;
        const size_t at = ((size_t)b * ch + c) * P + p;
        const float z = yt[i] + (bias ? bias[c] : 0.0f);
        if (pre) pre[at] = z;
        y[at] = ds_act_fwd(act, z);
    }
}

void ds_cuda_chw_bias_act(struct ds_backend *be, int batch, int ch, int P, const float *yt,
                          const float *bias, enum ds_act act, float *y, float *pre)
{
    const size_t n = (size_t)batch * ch * P;
    if (!n) return;
    const size_t BP = (size_t)batch * P;
    cudaStream_t st = ds_cuda_of(be)->stream;
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_chw_bias_act<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            batch, ch, P, D(BP), D(P), yt, bias, act, y, pre);
    });
    DS_CUDA_LAUNCHED();
}

/* dzt[c, b*P + p] = dy[b, c, p] act'(.). ReLU selects and the identity
 * copies, as the CPU does, so an infinite or NaN dy where y <= 0 still gives
 * 0; without pre, gelu's derivative is taken at 0, as on the CPU. */
template <class D>
__global__ static void k_chw_act_backward(int batch, int ch, int P, D dBP, D dP, enum ds_act act,
                                          const float *pre, const float *y, const float *dy,
                                          float *dzt)
{
    const int BP = batch * P;
    const size_t n = (size_t)ch * BP;
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const int c = (int)dBP.q(i), col = (int)(i - (size_t)c * BP);
        const int b = (int)dP.q(col), p = col - b * P;
        const size_t at = ((size_t)b * ch + c) * P + p;
        const float gv = dy[at];
        float d;
        if (act == DS_ACT_RELU) d = y[at] > 0.0f ? gv : 0.0f;
        else if (act == DS_ACT_NONE) d = gv;
        else d = gv * ds_act_grad(act, pre ? pre[at] : 0.0f, y[at]);
        dzt[i] = d;
    }
}

void ds_cuda_chw_act_backward(struct ds_backend *be, int batch, int ch, int P, enum ds_act act,
                              const float *pre, const float *y, const float *dy, float *dzt)
{
    const size_t n = (size_t)batch * ch * P;
    if (!n) return;
    const size_t BP = (size_t)batch * P;
    cudaStream_t st = ds_cuda_of(be)->stream;
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_chw_act_backward<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            batch, ch, P, D(BP), D(P), act, pre, y, dy, dzt);
    });
    DS_CUDA_LAUNCHED();
}

/* out[r] (+)= sum_c x[r, c]: one block per row, each thread summing a fixed
 * stride of the row in double, then a fixed tree; rounded to float once, as
 * the CPU (whose double sums round to the same float but for rare ties). */
__global__ static void k_row_sum(int rows, int cols, const float *x, float *out, int accumulate)
{
    __shared__ double part[DS_CUDA_ROW_SUM_THREADS];
    for (int r = blockIdx.x; r < rows; r += gridDim.x) {
        const float *row = x + (size_t)r * cols;
        double acc = 0.0;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) acc += row[c];
        part[threadIdx.x] = acc;
        __syncthreads();
        for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
            if (threadIdx.x < half) part[threadIdx.x] += part[threadIdx.x + half];
            __syncthreads();
        }
        if (threadIdx.x == 0) {
            const float sum = (float)part[0];
            out[r] = accumulate ? out[r] + sum : sum;
        }
        /* part is refilled for the next row only after thread 0 has read it */
        __syncthreads();
    }
}

void ds_cuda_row_sum(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                     int accumulate)
{
    if (rows <= 0) return;
    const unsigned blocks = rows < 65535 ? (unsigned)rows : 65535u;
    DS_CUDA_LAUNCH(k_row_sum, blocks, DS_CUDA_ROW_SUM_THREADS, 0, ds_cuda_of(be)->stream)(rows, cols, x, out,
                                                                              accumulate);
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- pooling */

/* Windows start at (oh*s, ow*s) inside the image: pooling has pad 0
 * (backend.h), and g.pad is not read, as on the CPU. */

/* y = max (NaN if any is NaN, as torch's max_pool2d) or mean of the window,
 * scanned rows then columns in the CPU's order. */
template <class D>
__global__ static void k_pool_forward(enum ds_pool_kind kind, struct ds_window g, D dOHW, D dOW,
                                      const float *x, float *y)
{
    const int K = g.k, ohw = g.oh * g.ow;
    const size_t n = (size_t)g.batch * g.c * ohw, in_plane = (size_t)g.h * g.w;
    const float inv = 1.0f / (float)(K * K);
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const size_t pl = dOHW.q(i);
        const int o = (int)(i - pl * ohw), oh = (int)dOW.q(o), ow = o - oh * g.ow;
        const float *win = x + pl * in_plane + (size_t)(oh * g.stride) * g.w + (size_t)ow * g.stride;
        float acc = kind == DS_POOL_MAX ? win[0] : 0.0f;
        for (int u = 0; u < K; u++)
            for (int v = 0; v < K; v++) {
                const float e = win[(size_t)u * g.w + v];
                if (kind == DS_POOL_MAX) acc = (e > acc || isnan(e)) ? e : acc;
                else acc += e;
            }
        y[i] = kind == DS_POOL_MAX ? acc : acc * inv;
    }
}

void ds_cuda_pool_forward(struct ds_backend *be, enum ds_pool_kind kind, const struct ds_window *g,
                          const float *x, float *y)
{
    const size_t n = (size_t)g->batch * g->c * g->oh * g->ow;
    if (!n) return;
    const size_t ohw = (size_t)g->oh * g->ow;
    cudaStream_t st = ds_cuda_of(be)->stream;
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_pool_forward<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            kind, *g, D(ohw), D(g->ow), x, y);
    });
    DS_CUDA_LAUNCHED();
}

/* Offset (u*w + v) in its window of the element max pooling's backward
 * credits: the first, rows then columns, equal to the window's max m (or
 * NaN when m is NaN). When none is (x and y not from one forward), the CPU's
 * 2x2 stride-2 path credits the last element and its general path the
 * first; both are mirrored so the backends agree on any input. */
__device__ static inline int pool_argmax(const float *win, int w, int K, int stride, float m)
{
    for (int u = 0; u < K; u++)
        for (int v = 0; v < K; v++) {
            const float e = win[(size_t)u * w + v];
            if (e == m || (isnan(e) && isnan(m))) return u * w + v;
        }
    return K == 2 && stride == 2 ? w + 1 : 0;
}

/* dx[pl, ih, iw] = the sum, over the windows (oh, ow) that contain it in
 * row-major order, of dy[o] / (k*k) (avg) or of dy[o] where it is that
 * window's credited maximum (max): the CPU adds the same terms to a zeroed dx
 * in the same order. Windows overlap when stride < k; inputs that no window
 * covers get 0. */
template <class D>
__global__ static void k_pool_backward(enum ds_pool_kind kind, struct ds_window g, D dHW, D dW, D dS,
                                       const float *x, const float *y, const float *dy, float *dx)
{
    const int K = g.k, s = g.stride, hw = g.h * g.w, ohw = g.oh * g.ow;
    const size_t n = (size_t)g.batch * g.c * hw;
    const float inv = 1.0f / (float)(K * K);
    DS_CUDA_GRID_STRIDE(i, n)
    {
        const size_t pl = dHW.q(i);
        const int q = (int)(i - pl * hw), ih = (int)dW.q(q), iw = q - ih * g.w;
        /* windows oh with oh*s <= ih <= oh*s + K - 1, likewise ow */
        const int oh0 = ih < K ? 0 : (int)dS.q(ih - K) + 1, oh1 = min((int)dS.q(ih), g.oh - 1);
        const int ow0 = iw < K ? 0 : (int)dS.q(iw - K) + 1, ow1 = min((int)dS.q(iw), g.ow - 1);
        const float *xp = x + pl * hw;
        const size_t op = pl * ohw;
        float acc = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                const size_t o = op + (size_t)oh * g.ow + ow;
                if (kind == DS_POOL_AVG) {
                    /* rounded product first: the CPU adds dy * (1/k^2) as a float */
                    acc += __fmul_rn(dy[o], inv);
                    continue;
                }
                const int base = oh * s * g.w + ow * s;
                if (base + pool_argmax(xp + base, g.w, K, s, y[o]) == q) acc += dy[o];
            }
        dx[i] = acc;
    }
}

void ds_cuda_pool_backward(struct ds_backend *be, enum ds_pool_kind kind,
                           const struct ds_window *g, const float *x, const float *y,
                           const float *dy, float *dx)
{
    const size_t n = (size_t)g->batch * g->c * g->h * g->w;
    if (!n) return;
    const size_t hw = (size_t)g->h * g->w;
    cudaStream_t st = ds_cuda_of(be)->stream;
    with_divider(n, [&](auto d) {
        using D = decltype(d);
        (void)d;
        DS_CUDA_LAUNCH(k_pool_backward<D>, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, st)(
            kind, *g, D(hw), D(g->w), D(g->stride), x, y, dy, dx);
    });
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- Conv2d */

/* Chunks of S samples: columns cols [c*k*k, S*P] and the GEMM's output
 * (forward yt, backward dzt) [out_c, S*P] side by side in the workspace.
 * S depends on the shapes only, so a batch is always cut the same way; a
 * smaller batch than the workspace was sized for makes S no larger. */
struct conv_plan {
    int S, chunks;
    size_t cols; /* floats of columns per chunk, where the GEMM output starts */
};

static struct conv_plan conv_plan_of(const struct ds_window *g, int out_c)
{
    struct conv_plan p;
    const size_t ckk = (size_t)g->c * g->k * g->k, P = (size_t)g->oh * g->ow;
    const size_t s = DS_CUDA_CONV_WS_FLOATS / ((ckk + (size_t)out_c) * P);
    p.S = s < (size_t)g->batch ? (int)s : g->batch;
    if (p.S < 1) p.S = 1;
    p.chunks = (g->batch + p.S - 1) / p.S;
    p.cols = ckk * (size_t)p.S * P;
    return p;
}

size_t ds_cuda_conv_workspace(struct ds_backend *be, const struct ds_window *g, int out_c)
{
    (void)be;
    const struct conv_plan p = conv_plan_of(g, out_c);
    return ((size_t)g->c * g->k * g->k + (size_t)out_c) * (size_t)p.S * g->oh * g->ow;
}

void ds_cuda_conv_forward(struct ds_backend *be, const struct ds_window *g, int out_c,
                          const float *x, const float *W, const float *bias, enum ds_act act,
                          float *y, float *pre, float *ws)
{
    const struct conv_plan p = conv_plan_of(g, out_c);
    const int ckk = g->c * g->k * g->k, P = g->oh * g->ow;
    const size_t in_s = (size_t)g->c * g->h * g->w, out_s = (size_t)out_c * P;
    float *cols = ws, *yt = ws + p.cols;
    for (int ch = 0; ch < p.chunks; ch++) {
        const int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
        struct ds_window gc = *g;
        gc.batch = nb;
        ds_cuda_im2col(be, &gc, x + (size_t)b0 * in_s, cols);
        /* yt [out_c, nb*P] = W [out_c, ckk] cols [ckk, nb*P] */
        ds_cuda_gemm(be, 0, 0, out_c, nb * P, ckk, 1.0f, W, ckk, cols, nb * P, 0.0f, yt, nb * P);
        ds_cuda_chw_bias_act(be, nb, out_c, P, yt, bias, act, y + (size_t)b0 * out_s,
                             pre ? pre + (size_t)b0 * out_s : NULL);
    }
}

void ds_cuda_conv_backward(struct ds_backend *be, const struct ds_window *g, int out_c,
                           enum ds_act act, const float *x, const float *W, const float *y,
                           const float *pre, const float *dy, float *dW, float *db, float *dx,
                           int accumulate, float *ws)
{
    const struct conv_plan p = conv_plan_of(g, out_c);
    const int ckk = g->c * g->k * g->k, P = g->oh * g->ow;
    const size_t in_s = (size_t)g->c * g->h * g->w, out_s = (size_t)out_c * P;
    float *cols = ws, *dzt = ws + p.cols;
    for (int ch = 0; ch < p.chunks; ch++) {
        const int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
        /* the first chunk overwrites dW and db unless accumulating; the
         * others add to them, in chunk order */
        const int add = accumulate || ch > 0;
        struct ds_window gc = *g;
        gc.batch = nb;
        ds_cuda_chw_act_backward(be, nb, out_c, P, act, pre ? pre + (size_t)b0 * out_s : NULL,
                                 y + (size_t)b0 * out_s, dy + (size_t)b0 * out_s, dzt);
        ds_cuda_row_sum(be, out_c, nb * P, dzt, db, add);
        ds_cuda_im2col(be, &gc, x + (size_t)b0 * in_s, cols);
        /* dW [out_c, ckk] (+)= dzt [out_c, nb*P] cols^T */
        ds_cuda_gemm(be, 0, 1, out_c, ckk, nb * P, 1.0f, dzt, nb * P, cols, nb * P,
                     add ? 1.0f : 0.0f, dW, ckk);
        if (dx) {
            /* the columns are spent: dcols [ckk, nb*P] = W^T dzt replaces them */
            ds_cuda_gemm(be, 1, 0, ckk, nb * P, out_c, 1.0f, W, ckk, dzt, nb * P, 0.0f, cols,
                         nb * P);
            ds_cuda_col2im(be, &gc, cols, dx + (size_t)b0 * in_s);
        }
    }
}
