/*
 * cuda_reduce.cu: the CUDA backend's reductions (dot, the three losses) and
 * its fused optimizer steps (every optimizer with its regularizers, one
 * kernel per call).
 *
 * Reductions run on a fixed grid of DS_CUDA_RED_BLOCKS x DS_CUDA_RED_THREADS
 * threads whatever the size: which thread adds which element, and the tree
 * inside each block, depend on n alone, so the bits do too. Each thread
 * accumulates in double; each block writes its sums to ctx->partial (slot q
 * of block b at q * DS_CUDA_RED_BLOCKS + b, so a reduction of k quantities
 * copies one contiguous piece) and the host adds the blocks in order.
 *
 * The optimizer kernels repeat the CPU fast steps (->step in optimizers/)
 * operation for operation: every product and sum goes through the _rn
 * intrinsics, because nvcc would otherwise contract a*b + c into one fused
 * multiply-add that the x86-64 CPU build (no FMA in the baseline ISA, no
 * -ffast-math) does not do, and the results would differ in the last bit.
 * Host-side constants (bias corrections, decay factors) are computed here
 * exactly as the CPU steps compute them.
 */
#include "cuda_common.cuh"

#include <math.h>
#include <stdint.h>

/* Types and kernels in an unnamed namespace: the backend's other .cu files
 * are linked into the same program, and C++ types have no `static`. */
namespace {

/* ---- IEEE operations without contraction --------------------------------
 * Host versions exist so the per-element rules below can be checked against
 * the CPU steps on a machine without a GPU (the host compiler, for x86-64
 * without -march, emits no FMA either). */

__host__ __device__ inline float fmul(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

__host__ __device__ inline float fadd(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

__host__ __device__ inline float fsub(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

__host__ __device__ inline float fdiv(float a, float b)
{
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

__host__ __device__ inline float fsqrt(float a)
{
#ifdef __CUDA_ARCH__
    return __fsqrt_rn(a);
#else
    return sqrtf(a);
#endif
}

/* exp, log and log1p through double, rounded once to float: that is the
 * correctly rounded result in all but vanishingly rare cases, which is what
 * glibc's expf/logf/log1pf return almost always (errors near 0.5 ulp), so the
 * losses and their gradients usually match the CPU to the bit; CUDA's own
 * expf is allowed 2 ulp. The cost, a few double operations per logit, is
 * small beside the GEMMs that produced the logits. */
__host__ __device__ inline float xexpf(float x) { return (float)exp((double)x); }
__host__ __device__ inline float xlogf(float x) { return (float)log((double)x); }
__host__ __device__ inline float xlog1pf(float x) { return (float)log1p((double)x); }

/* ---- Losses, per element or per row (the CPU backend's formulas) -------- */

/* max(z,0) - z*y + log(1 + exp(-|z|)): stable for any z. */
__host__ __device__ inline float bce_loss(float z, float y)
{
    return fadd(fsub(fmaxf(z, 0.0f), fmul(z, y)), xlog1pf(xexpf(-fabsf(z))));
}

__host__ __device__ inline float bce_grad(float z, float y, float grad_scale)
{
    float s = z >= 0.0f ? fdiv(1.0f, fadd(1.0f, xexpf(-z)))
                        : fdiv(xexpf(z), fadd(1.0f, xexpf(z)));
    return fmul(fsub(s, y), grad_scale);
}

/* One softmax cross-entropy row in the CPU's order (first maximum, sums left
 * to right): the path for rows of at most a warp's width, where one thread
 * per row is as fast as a warp and gives the CPU's bits. Returns the row's
 * loss; *hit = the first argmax is the label. d (may be NULL, may alias z)
 * receives grad_scale * (softmax - onehot). */
__host__ __device__ inline float xent_row(int cols, const float *z, int y, float *d,
                                          float grad_scale, int *hit)
{
    float zmax = z[0];
    int arg = 0;
    for (int k = 1; k < cols; k++)
        if (z[k] > zmax) zmax = z[k], arg = k;
    float sum = 0.0f;
    for (int k = 0; k < cols; k++) sum = fadd(sum, xexpf(fsub(z[k], zmax)));
    /* (zmax - z[y]) + log(sum), not lse - z[y]: see backend_cpu.c */
    float loss = fadd(fsub(zmax, z[y]), xlogf(sum));
    *hit = arg == y;
    if (d) {
        float inv = fdiv(1.0f, sum);
        for (int k = 0; k < cols; k++) d[k] = fmul(fmul(xexpf(fsub(z[k], zmax)), inv), grad_scale);
        d[y] = fsub(d[y], grad_scale);
    }
    return loss;
}

/* ---- Optimizer rules, one element each ----------------------------------
 * Each functor holds the step's constants and updates (p, state) from g with
 * the float operations of its CPU fast step, in the same order. st[] holds
 * `slots` state values (slot order as the CPU's state[]). */

/* g + l2 p + l1 sign(p): optim.h's ds_optim_coupled_grad_. */
__host__ __device__ inline float coupled(float g, float p, float l2, float l1)
{
    float sign = (float)((p > 0.0f) - (p < 0.0f));
    return fadd(fadd(g, fmul(l2, p)), fmul(l1, sign));
}

/* sgd.c: with momentum the branches are coefficients (cb, cd: first step or
 * not; ud, ub: nesterov or not), as the CPU computes them. */
template <bool MOM> struct sgd_rule {
    static constexpr int slots = MOM ? 1 : 0;
    float lr, l2, l1, decay, cb, cd, ud, ub;
    __host__ __device__ void operator()(float &p, float g, float *st) const
    {
        float d = coupled(g, p, l2, l1);
        if (!MOM) {
            p = fsub(fmul(p, decay), fmul(lr, d));
            return;
        }
        float b = fadd(fmul(cb, st[0]), fmul(cd, d));
        st[0] = b;
        p = fsub(fmul(p, decay), fmul(lr, fadd(fmul(ud, d), fmul(ub, b))));
    }
};

/* adam.c: slots m, v (, vmax). */
template <bool AMS> struct adam_rule {
    static constexpr int slots = AMS ? 3 : 2;
    float b1, omb1, b2, omb2, eps, l2, l1, decay, step_size, bc2_sqrt;
    __host__ __device__ void operator()(float &p, float g, float *st) const
    {
        float gi = coupled(g, p, l2, l1);
        float mi = fadd(fmul(b1, st[0]), fmul(omb1, gi));
        /* (1 - b2) * gi * gi associates left in C */
        float vi = fadd(fmul(b2, st[1]), fmul(fmul(omb2, gi), gi));
        st[0] = mi;
        st[1] = vi;
        float vv = vi;
        if (AMS) {
            vv = fmaxf(st[2], vi);
            st[2] = vv;
        }
        p = fsub(fmul(p, decay), fmul(step_size, fdiv(mi, fadd(fdiv(fsqrt(vv), bc2_sqrt), eps))));
    }
};

/* rmsprop.c: slots s, then c (centered), then b (momentum). */
template <bool CEN, bool MOM> struct rmsprop_rule {
    static constexpr int slots = 1 + (CEN ? 1 : 0) + (MOM ? 1 : 0);
    float a, oma, eps, lr, l2, l1, decay, mu;
    __host__ __device__ void operator()(float &p, float g, float *st) const
    {
        float gi = coupled(g, p, l2, l1);
        float si = fadd(fmul(a, st[0]), fmul(fmul(oma, gi), gi));
        st[0] = si;
        float var = si;
        if (CEN) {
            float ci = fadd(fmul(a, st[1]), fmul(oma, gi));
            st[1] = ci;
            var = fsub(si, fmul(ci, ci));
        }
        float den = fadd(fsqrt(var), eps);
        float pi = fmul(p, decay);
        if (MOM) {
            float b = fadd(fmul(mu, st[CEN ? 2 : 1]), fdiv(gi, den));
            st[CEN ? 2 : 1] = b;
            p = fsub(pi, fmul(lr, b));
        } else {
            /* lr * gi / den associates left in C */
            p = fsub(pi, fdiv(fmul(lr, gi), den));
        }
    }
};

/* adagrad.c: slot sum (its initial value is the state fill's business). */
struct adagrad_rule {
    static constexpr int slots = 1;
    float clr, eps, l2, l1, decay;
    __host__ __device__ void operator()(float &p, float g, float *st) const
    {
        float gi = coupled(g, p, l2, l1);
        float si = fadd(st[0], fmul(gi, gi));
        st[0] = si;
        p = fsub(fmul(p, decay), fdiv(fmul(clr, gi), fadd(fsqrt(si), eps)));
    }
};

/* ---- The fused optimizer kernel ---------------------------------------- */

template <class Rule>
__device__ inline void rule_lane(const Rule &rule, float &p, float g, float &s0, float &s1,
                                 float &s2)
{
    float st[3] = {s0, s1, s2};
    rule(p, g, st);
    s0 = st[0];
    s1 = st[1];
    s2 = st[2];
}

template <class Rule>
__device__ inline void rule_at(const Rule &rule, size_t i, float c, float *__restrict__ p,
                               const float *__restrict__ g, float *__restrict__ s0,
                               float *__restrict__ s1, float *__restrict__ s2)
{
    constexpr int ns = Rule::slots;
    float st[3] = {0.0f, 0.0f, 0.0f};
    if (ns > 0) st[0] = s0[i];
    if (ns > 1) st[1] = s1[i];
    if (ns > 2) st[2] = s2[i];
    float pi = p[i];
    rule(pi, fmul(g[i], c), st);
    p[i] = pi;
    if (ns > 0) s0[i] = st[0];
    if (ns > 1) s1[i] = st[1];
    if (ns > 2) s2[i] = st[2];
}

/* One pass over p, g and the state slots, each read and written once. With
 * nvec > 0 every array is 16-byte aligned from element `head` on: elements
 * [head, head + 4 nvec) go four at a time (128-bit accesses), the at most 3
 * before and 3 after to the first threads. With nvec == 0, one at a time. */
template <class Rule>
__global__ void __launch_bounds__(DS_CUDA_THREADS)
    optim_kernel(Rule rule, size_t n, size_t head, size_t nvec, float *__restrict__ p,
                 const float *__restrict__ g, float *__restrict__ s0, float *__restrict__ s1,
                 float *__restrict__ s2, const double *__restrict__ guard)
{
    constexpr int ns = Rule::slots;
    /* grad_guard's scale: read here rather than by the host, so backward,
     * the norm and the step run with no host round trip; g * 1 is g to the bit */
    float c = 1.0f;
    if (guard) {
        double gs = guard[1];
        if (gs != gs) return; /* not finite: the step changes nothing */
        c = (float)gs;
    }
    size_t tid = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    size_t stride = (size_t)gridDim.x * blockDim.x;
    if (nvec == 0) {
        for (size_t i = tid; i < n; i += stride) rule_at(rule, i, c, p, g, s0, s1, s2);
        return;
    }
    size_t body_end = head + 4 * nvec;
    if (tid < head) rule_at(rule, tid, c, p, g, s0, s1, s2);
    if (tid < n - body_end) rule_at(rule, body_end + tid, c, p, g, s0, s1, s2);
    float4 *pv = reinterpret_cast<float4 *>(p + head);
    const float4 *gv = reinterpret_cast<const float4 *>(g + head);
    float4 *v0 = ns > 0 ? reinterpret_cast<float4 *>(s0 + head) : nullptr;
    float4 *v1 = ns > 1 ? reinterpret_cast<float4 *>(s1 + head) : nullptr;
    float4 *v2 = ns > 2 ? reinterpret_cast<float4 *>(s2 + head) : nullptr;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (size_t j = tid; j < nvec; j += stride) {
        float4 P = pv[j], G = gv[j];
        G.x = fmul(G.x, c), G.y = fmul(G.y, c), G.z = fmul(G.z, c), G.w = fmul(G.w, c);
        float4 A = ns > 0 ? v0[j] : zero;
        float4 B = ns > 1 ? v1[j] : zero;
        float4 C = ns > 2 ? v2[j] : zero;
        rule_lane(rule, P.x, G.x, A.x, B.x, C.x);
        rule_lane(rule, P.y, G.y, A.y, B.y, C.y);
        rule_lane(rule, P.z, G.z, A.z, B.z, C.z);
        rule_lane(rule, P.w, G.w, A.w, B.w, C.w);
        pv[j] = P;
        if (ns > 0) v0[j] = A;
        if (ns > 1) v1[j] = B;
        if (ns > 2) v2[j] = C;
    }
}

template <class Rule>
void optim_launch(struct ds_cuda *ctx, const Rule &rule, size_t n, float *p, const float *g,
                  float *const *state, const double *guard)
{
    constexpr int ns = Rule::slots;
    float *s[3] = {nullptr, nullptr, nullptr};
    for (int q = 0; q < ns; q++) s[q] = state[q];
    /* 128-bit accesses need every array at the same offset from a 16-byte
     * boundary (true for ranges of buffers from the same allocator; checked) */
    uintptr_t mis = (uintptr_t)p & 15;
    int same = ((uintptr_t)p & 3) == 0 && ((uintptr_t)g & 15) == mis;
    for (int q = 0; q < ns; q++) same = same && ((uintptr_t)s[q] & 15) == mis;
    size_t head = 0, nvec = 0;
    if (same) {
        head = ((16 - mis) & 15) / sizeof(float);
        if (n >= head + 4) nvec = (n - head) / 4;
    }
    unsigned blocks = ds_cuda_blocks(nvec ? nvec : n);
    DS_CUDA_LAUNCH(optim_kernel<Rule>, blocks, DS_CUDA_THREADS, 0, ctx->stream)(rule, n, head, nvec, p, g,
                                                                    s[0], s[1], s[2], guard);
    DS_CUDA_LAUNCHED();
}

/* ---- Deterministic reductions ------------------------------------------ */

#define RED_WARPS (DS_CUDA_RED_THREADS / 32)
static_assert(DS_CUDA_RED_THREADS % 32 == 0 &&
                  (DS_CUDA_RED_THREADS & (DS_CUDA_RED_THREADS - 1)) == 0,
              "the block tree needs a power-of-two block of whole warps");

/* The block's NQ sums by a fixed tree, written to the block's partial slots. */
template <int NQ> __device__ void block_sum_store(const double (&acc)[NQ], double *partial)
{
    __shared__ double sh[NQ][DS_CUDA_RED_THREADS];
    unsigned t = threadIdx.x;
    for (int q = 0; q < NQ; q++) sh[q][t] = acc[q];
    __syncthreads();
    for (unsigned h = DS_CUDA_RED_THREADS / 2; h > 0; h >>= 1) {
        if (t < h)
            for (int q = 0; q < NQ; q++) sh[q][t] += sh[q][t + h];
        __syncthreads();
    }
    if (t == 0)
        for (int q = 0; q < NQ; q++) partial[q * DS_CUDA_RED_BLOCKS + blockIdx.x] = sh[q][0];
}

/* dot: element i belongs to group i / 4, group k to thread k mod T, and each
 * thread adds its groups in order, four elements each: the same order whether
 * a group is read as one float4 (both arrays aligned) or as scalars. */
__global__ void __launch_bounds__(DS_CUDA_RED_THREADS)
    dot_kernel(size_t n, const float *__restrict__ x, const float *__restrict__ y, int vec,
               double *partial)
{
    const size_t T = (size_t)DS_CUDA_RED_BLOCKS * DS_CUDA_RED_THREADS;
    size_t k = (size_t)blockIdx.x * DS_CUDA_RED_THREADS + threadIdx.x;
    size_t full = n / 4, groups = (n + 3) / 4;
    double acc = 0.0;
    if (vec) {
        /* four groups in flight per thread: at 2 blocks per SM a thread must
         * keep several loads outstanding to cover memory latency */
        const float4 *xv = reinterpret_cast<const float4 *>(x);
        const float4 *yv = reinterpret_cast<const float4 *>(y);
        enum { U = 4 };
        for (; k + (U - 1) * T < full; k += U * T) {
            float4 a[U], b[U];
#pragma unroll
            for (int u = 0; u < U; u++) a[u] = xv[k + u * T], b[u] = yv[k + u * T];
#pragma unroll
            for (int u = 0; u < U; u++) {
                acc += (double)a[u].x * (double)b[u].x;
                acc += (double)a[u].y * (double)b[u].y;
                acc += (double)a[u].z * (double)b[u].z;
                acc += (double)a[u].w * (double)b[u].w;
            }
        }
        for (; k < full; k += T) {
            float4 a = xv[k], b = yv[k];
            acc += (double)a.x * (double)b.x;
            acc += (double)a.y * (double)b.y;
            acc += (double)a.z * (double)b.z;
            acc += (double)a.w * (double)b.w;
        }
    }
    for (; k < groups; k += T) {
        size_t end = 4 * k + 4 < n ? 4 * k + 4 : n;
        for (size_t i = 4 * k; i < end; i++) acc += (double)x[i] * (double)y[i];
    }
    double a1[1] = {acc};
    block_sum_store<1>(a1, partial);
}

/* Squared error: element i to thread i mod T. */
__global__ void __launch_bounds__(DS_CUDA_RED_THREADS)
    sq_error_kernel(size_t n, const float *pred, const float *target, float *dpred,
                    float grad_scale, double *partial)
{
    const size_t T = (size_t)DS_CUDA_RED_BLOCKS * DS_CUDA_RED_THREADS;
    double acc = 0.0;
    for (size_t i = (size_t)blockIdx.x * DS_CUDA_RED_THREADS + threadIdx.x; i < n; i += T) {
        float d = fsub(pred[i], target[i]);
        acc += (double)d * (double)d;
        if (dpred) dpred[i] = fmul(fmul(2.0f, d), grad_scale);
    }
    double a1[1] = {acc};
    block_sum_store<1>(a1, partial);
}

/* BCE with logits: slots loss, hits. */
__global__ void __launch_bounds__(DS_CUDA_RED_THREADS)
    bce_kernel(size_t n, const float *logits, const float *targets, float *dlogits,
               float grad_scale, double *partial)
{
    const size_t T = (size_t)DS_CUDA_RED_BLOCKS * DS_CUDA_RED_THREADS;
    double acc[2] = {0.0, 0.0};
    for (size_t i = (size_t)blockIdx.x * DS_CUDA_RED_THREADS + threadIdx.x; i < n; i += T) {
        float z = logits[i], y = targets[i];
        acc[0] += (double)bce_loss(z, y);
        acc[1] += (z > 0.0f) == (y > 0.5f) ? 1.0 : 0.0;
        if (dlogits) dlogits[i] = bce_grad(z, y, grad_scale);
    }
    block_sum_store<2>(acc, partial);
}

/* Softmax cross-entropy: slots loss, hits, labels out of range (counted for
 * the host to report, since a kernel cannot). Rows of at most 32 logits:
 * row r to thread r mod T, with the CPU's sequential order (xent_row). Wider
 * rows: row r to warp r mod (T / 32); lanes take logits lane, lane + 32, ...
 * and combine by a fixed butterfly, lane 0 keeping the row sums. Either way
 * each thread adds its rows' losses in row order. */
template <bool WARP>
__global__ void __launch_bounds__(DS_CUDA_RED_THREADS)
    xent_kernel(int rows, int cols, const float *logits, const int32_t *labels, float *dlogits,
                float grad_scale, double *partial)
{
    double acc[3] = {0.0, 0.0, 0.0};
    if (!WARP) {
        const int T = DS_CUDA_RED_BLOCKS * DS_CUDA_RED_THREADS;
        for (int r = blockIdx.x * DS_CUDA_RED_THREADS + threadIdx.x; r < rows; r += T) {
            int y = labels[r];
            if (y < 0 || y >= cols) {
                acc[2] += 1.0;
                continue;
            }
            int hit;
            float loss = xent_row(cols, logits + (size_t)r * cols, y,
                                  dlogits ? dlogits + (size_t)r * cols : nullptr, grad_scale, &hit);
            acc[0] += (double)loss;
            acc[1] += hit;
        }
    } else {
        const int W = DS_CUDA_RED_BLOCKS * RED_WARPS;
        const unsigned all = 0xffffffffu;
        int lane = threadIdx.x & 31;
        for (int r = blockIdx.x * RED_WARPS + threadIdx.x / 32; r < rows; r += W) {
            const float *z = logits + (size_t)r * cols;
            int y = labels[r];
            if (y < 0 || y >= cols) {
                if (lane == 0) acc[2] += 1.0;
                continue;
            }
            float zmax = z[lane];
            int arg = lane;
            for (int k = lane + 32; k < cols; k += 32)
                if (z[k] > zmax) zmax = z[k], arg = k;
            /* ties go to the lower index: the CPU's first maximum */
            for (int o = 16; o > 0; o >>= 1) {
                float om = __shfl_xor_sync(all, zmax, o);
                int oa = __shfl_xor_sync(all, arg, o);
                if (om > zmax || (om == zmax && oa < arg)) zmax = om, arg = oa;
            }
            float sum = 0.0f;
            for (int k = lane; k < cols; k += 32) sum = fadd(sum, xexpf(fsub(z[k], zmax)));
            /* xor butterflies leave the same zmax, arg and sum in every lane */
            for (int o = 16; o > 0; o >>= 1) sum = fadd(sum, __shfl_xor_sync(all, sum, o));
            /* z[y] is read by the lane that later writes d[y]: dlogits may
             * alias logits, and only within one thread is that order kept */
            float loss = lane == (y & 31) ? fadd(fsub(zmax, z[y]), xlogf(sum)) : 0.0f;
            loss = __shfl_sync(all, loss, y & 31);
            if (lane == 0) {
                acc[0] += (double)loss;
                acc[1] += arg == y ? 1.0 : 0.0;
            }
            if (dlogits) {
                float *d = dlogits + (size_t)r * cols;
                float inv = fdiv(1.0f, sum);
                for (int k = lane; k < cols; k += 32) {
                    float v = fmul(fmul(xexpf(fsub(z[k], zmax)), inv), grad_scale);
                    d[k] = k == y ? fsub(v, grad_scale) : v;
                }
            }
        }
    }
    block_sum_store<3>(acc, partial);
}

/* Slot q's total over the blocks' partials, added in block order: the one
 * order every reader of a reduction uses (the host in fetch_sums, the
 * device in accumulate_kernel and guard_kernel), so they agree to the bit. */
__host__ __device__ inline double blocks_sum(const double *partial, int q)
{
    double s = 0.0;
    for (int b = 0; b < DS_CUDA_RED_BLOCKS; b++) s += partial[q * DS_CUDA_RED_BLOCKS + b];
    return s;
}

/* The nq sums of the last reduction: partials copied back, blocks added in
 * order. */
void fetch_sums(struct ds_cuda *ctx, int nq, double *out)
{
    DS_CUDA_CHECK(cudaMemcpyAsync(ctx->partial_host, ctx->partial,
                                  (size_t)nq * DS_CUDA_RED_BLOCKS * sizeof(double),
                                  cudaMemcpyDeviceToHost, ctx->stream));
    DS_CUDA_CHECK(cudaStreamSynchronize(ctx->stream));
    for (int q = 0; q < nq; q++) out[q] = blocks_sum(ctx->partial_host, q);
}

/* Calls f(rule) with opt's rule and this step's constants, computed as the
 * CPU steps compute them (in float unless they use double). Separate from
 * the launch so a host program can apply the very same rule. */
template <class F>
void optim_rule_for(const struct ds_optim_ops *opt, const struct ds_optim_hyper *h,
                    const struct ds_optim_scalars *s, F &&f)
{
    const float decay = 1.0f - s->lr * s->wd;
    if (opt == &ds_optim_sgd || opt == &ds_optim_gd) {
        const float mu = h->momentum;
        if (mu == 0.0f) {
            f(sgd_rule<false>{s->lr, s->l2, s->l1, decay, 0.0f, 0.0f, 0.0f, 0.0f});
            return;
        }
        const int first = s->t == 1;
        f(sgd_rule<true>{s->lr, s->l2, s->l1, decay, first ? 0.0f : mu,
                         first ? 1.0f : 1.0f - h->dampening, h->nesterov ? 1.0f : 0.0f,
                         h->nesterov ? mu : 1.0f});
    } else if (opt == &ds_optim_adam || opt == &ds_optim_adamw) {
        const float b1 = h->beta1, b2 = h->beta2;
        const float step_size = (float)((double)s->lr / (1.0 - pow((double)b1, (double)s->t)));
        const float bc2_sqrt = (float)sqrt(1.0 - pow((double)b2, (double)s->t));
        if (h->amsgrad)
            f(adam_rule<true>{b1, 1.0f - b1, b2, 1.0f - b2, h->eps, s->l2, s->l1, decay, step_size,
                              bc2_sqrt});
        else
            f(adam_rule<false>{b1, 1.0f - b1, b2, 1.0f - b2, h->eps, s->l2, s->l1, decay,
                               step_size, bc2_sqrt});
    } else if (opt == &ds_optim_rmsprop) {
        const float a = h->alpha, mu = h->momentum;
        const int cen = h->centered != 0, mom = mu > 0.0f;
        if (cen && mom)
            f(rmsprop_rule<true, true>{a, 1.0f - a, h->eps, s->lr, s->l2, s->l1, decay, mu});
        else if (cen)
            f(rmsprop_rule<true, false>{a, 1.0f - a, h->eps, s->lr, s->l2, s->l1, decay, mu});
        else if (mom)
            f(rmsprop_rule<false, true>{a, 1.0f - a, h->eps, s->lr, s->l2, s->l1, decay, mu});
        else
            f(rmsprop_rule<false, false>{a, 1.0f - a, h->eps, s->lr, s->l2, s->l1, decay, mu});
    } else if (opt == &ds_optim_adagrad) {
        const float clr = s->lr / (1.0f + (float)(s->t - 1) * h->lr_decay);
        f(adagrad_rule{clr, h->eps, s->l2, s->l1, decay});
    } else {
        DS_ASSERT_MSG(0, "optimizer %s has no CUDA kernel (cuda_reduce.cu)", opt->name);
    }
}

/* loss_defer's accumulation, one thread: a reduction's partials added in
 * block order (fetch_sums' order), each total then added to acc. */
__global__ void accumulate_kernel(const double *partial, int nq, double *acc)
{
    for (int q = 0; q < nq; q++) acc[q] += blocks_sum(partial, q);
}

/* grad_guard's second half, one thread: the partials of dot_kernel added in
 * block order (fetch_sums' order, so guard[0] is the bits ds_cuda_dot
 * returns), then the clip as the CPU computes it, in double. */
__global__ void guard_kernel(const double *partial, double clip, double *guard)
{
    double sq = blocks_sum(partial, 0);
    double norm = sqrt(sq);
    guard[0] = sq;
    if (!isfinite(norm)) {
        guard[1] = (double)NAN;
        return;
    }
    double coef = clip > 0.0 ? clip / (norm + 1e-6) : 1.0;
    guard[1] = coef < 1.0 ? (double)(float)coef : 1.0;
}

} /* namespace */

/* ---- Entry points (cuda_common.cuh) ------------------------------------ */

void ds_cuda_loss_defer(struct ds_backend *be, double *acc) { ds_cuda_of(be)->defer_acc = acc; }

double ds_cuda_softmax_xent(struct ds_backend *be, int rows, int cols, const float *logits,
                            const int32_t *labels, float *dlogits, float grad_scale,
                            int64_t *correct)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    if (correct) *correct = 0;
    if (rows <= 0) return 0.0;
    DS_ASSERT_MSG(cols > 0, "softmax over %d columns", cols);
    if (cols <= 32)
        DS_CUDA_LAUNCH(xent_kernel<false>, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(
            rows, cols, logits, labels, dlogits, grad_scale, ctx->partial);
    else
        DS_CUDA_LAUNCH(xent_kernel<true>, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(
            rows, cols, logits, labels, dlogits, grad_scale, ctx->partial);
    DS_CUDA_LAUNCHED();
    if (ctx->defer_acc) {
        DS_ASSERT_MSG(!correct, "softmax_xent: `correct` while the sums are deferred");
        DS_CUDA_LAUNCH(accumulate_kernel, 1, 1, 0, ctx->stream)(ctx->partial, 3, ctx->defer_acc);
        DS_CUDA_LAUNCHED();
        return 0.0;
    }
    double sums[3];
    fetch_sums(ctx, 3, sums);
    DS_ASSERT_MSG(sums[2] == 0.0, "%.0f of %d labels outside [0, %d)", sums[2], rows, cols);
    if (correct) *correct = (int64_t)sums[1];
    return sums[0];
}

double ds_cuda_bce_logits(struct ds_backend *be, size_t n, const float *logits,
                          const float *targets, float *dlogits, float grad_scale,
                          int64_t *correct)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    if (correct) *correct = 0;
    if (n == 0) return 0.0;
    DS_CUDA_LAUNCH(bce_kernel, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(
        n, logits, targets, dlogits, grad_scale, ctx->partial);
    DS_CUDA_LAUNCHED();
    double sums[2];
    fetch_sums(ctx, 2, sums);
    if (correct) *correct = (int64_t)sums[1];
    return sums[0];
}

double ds_cuda_sq_error(struct ds_backend *be, size_t n, const float *pred, const float *target,
                        float *dpred, float grad_scale)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    if (n == 0) return 0.0;
    DS_CUDA_LAUNCH(sq_error_kernel, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(
        n, pred, target, dpred, grad_scale, ctx->partial);
    DS_CUDA_LAUNCHED();
    double sum;
    fetch_sums(ctx, 1, &sum);
    return sum;
}

double ds_cuda_dot(struct ds_backend *be, size_t n, const float *x, const float *y)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    if (n == 0) return 0.0;
    int vec = (((uintptr_t)x | (uintptr_t)y) & 15) == 0;
    DS_CUDA_LAUNCH(dot_kernel, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(n, x, y, vec,
                                                                             ctx->partial);
    DS_CUDA_LAUNCHED();
    double sum;
    fetch_sums(ctx, 1, &sum);
    return sum;
}

void ds_cuda_optim_step(struct ds_backend *be, const struct ds_optim_ops *opt,
                        const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                        float *p, const float *g, float *const *state, const double *guard)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    if (n == 0) return;
    optim_rule_for(opt, h, s,
                   [&](const auto &rule) { optim_launch(ctx, rule, n, p, g, state, guard); });
}

void ds_cuda_grad_guard(struct ds_backend *be, size_t n, const float *g, double clip, double *guard)
{
    struct ds_cuda *ctx = ds_cuda_of(be);
    int vec = ((uintptr_t)g & 15) == 0;
    DS_CUDA_LAUNCH(dot_kernel, DS_CUDA_RED_BLOCKS, DS_CUDA_RED_THREADS, 0, ctx->stream)(n, g, g, vec,
                                                                             ctx->partial);
    DS_CUDA_LAUNCHED();
    DS_CUDA_LAUNCH(guard_kernel, 1, 1, 0, ctx->stream)(ctx->partial, clip, guard);
    DS_CUDA_LAUNCHED();
}
