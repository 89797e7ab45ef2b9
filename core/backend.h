/*
 * backend.h: where tensors live and how kernels run. A backend is a struct of
 * function pointers picked at start-up (cpu now, cuda later); layers, losses,
 * workloads and the trainer call only these, never BLAS or CUDA directly.
 *
 * All float and int pointers passed to the ops are backend memory (from
 * ->alloc) unless the comment says host. Matrices are row-major.
 * Reductions return double on the host and are deterministic: their summation
 * order depends only on n, never on the thread count.
 */
#ifndef DS_BACKEND_H
#define DS_BACKEND_H

#include "ds.h"

#include "../optimizers/optim.h"

enum ds_act {
    DS_ACT_NONE,
    DS_ACT_RELU,
    DS_ACT_TANH,
    DS_ACT_SIGMOID,
    DS_ACT_GELU, /* exact: x * Phi(x) with erf, as torch.nn.GELU() */
    DS_ACT_COUNT
};

struct ds_backend;

/* A 2-D window over a batch of [batch, c, h, w] images (NCHW, PyTorch's
 * layout): k x k windows at `stride`, `pad` zeros on each side, giving
 * [oh, ow] positions per plane. Used by convolutions and pooling. */
struct ds_window {
    int batch, c, h, w;
    int k, stride, pad;
    int oh, ow;
};

enum ds_pool_kind { DS_POOL_MAX, DS_POOL_AVG };

struct ds_backend_ops {
    const char *name;
    void (*destroy)(struct ds_backend *be);
    const char *(*describe)(struct ds_backend *be); /* e.g. BLAS build and threads */

    /* Memory: zero-filled; NULL when out of memory. free(NULL) is a no-op. */
    void *(*alloc)(struct ds_backend *be, size_t bytes);
    void (*free)(struct ds_backend *be, void *p);
    void (*upload)(struct ds_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*download)(struct ds_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*copy)(struct ds_backend *be, void *dst, const void *src, size_t bytes);
    void (*fill)(struct ds_backend *be, float *x, size_t n, float v);

    /* C[m,n] = alpha * op(A)[m,k] op(B)[k,n] + beta * C, row-major. */
    void (*gemm)(struct ds_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

    /* y[r,c] = act(y[r,c] + bias[c]) (bias may be NULL); pre (may be NULL)
     * receives y + bias, which GELU's backward needs. */
    void (*bias_act)(struct ds_backend *be, int rows, int cols, float *y, const float *bias,
                     enum ds_act act, float *pre);
    /* dx = dy * act'(.) where act' is taken from the output y (relu, tanh,
     * sigmoid) or the input x (gelu). dx may alias dy. */
    void (*act_backward)(struct ds_backend *be, size_t n, enum ds_act act, const float *x,
                         const float *y, const float *dy, float *dx);
    /* out[c] (+)= sum_r x[r,c]: bias gradients. */
    void (*col_sum)(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                    int accumulate);
    /* y = x * keep / (1 - p), keep drawn by ds_rng_keep at (seed, stream,
     * offset + i): the same op is forward and backward. */
    void (*dropout)(struct ds_backend *be, size_t n, float p, uint64_t seed, uint32_t stream,
                    uint64_t offset, const float *x, float *y);

    /* Conv2d forward and backward over a batch, the way the backend does it
     * best (CPU: chunks of samples small enough that their unrolled columns
     * stay in the core's cache, one GEMM per chunk on each thread; 5x5
     * stride-1 convolutions over a multiple of 8 channels by Winograd's
     * F(2x2, 5x5), see conv_winograd.c).
     * W [out_c, c, k, k], bias [out_c]; x [batch, c, h, w]; y and pre
     * [batch, out_c, oh, ow]. y = act(conv(x, W) + bias); pre (may be NULL)
     * receives the pre-activation (GELU's backward needs it).
     * ws: conv_workspace(g with the largest batch) floats of backend memory. */
    size_t (*conv_workspace)(struct ds_backend *be, const struct ds_window *g, int out_c);
    void (*conv_forward)(struct ds_backend *be, const struct ds_window *g, int out_c,
                         const float *x, const float *W, const float *bias, enum ds_act act,
                         float *y, float *pre, float *ws);
    /* From dy = dL/dy: dW and db (+)= their gradients, dx (may be NULL) = dL/dx.
     * Deterministic: partial sums per chunk are added in chunk order, and the
     * chunks do not depend on the thread count. */
    void (*conv_backward)(struct ds_backend *be, const struct ds_window *g, int out_c,
                          enum ds_act act, const float *x, const float *W, const float *y,
                          const float *pre, const float *dy, float *dW, float *db, float *dx,
                          int accumulate, float *ws);

    /* Building blocks of a convolution as one GEMM (channel-major columns):
     * cols[(ci*k + ki)*k + kj, b*P + p] = x[b, ci, oh*s - pad + ki, ow*s - pad + kj]
     * (0 outside the image), P = oh*ow: cols is [c*k*k, batch*P]. */
    void (*im2col)(struct ds_backend *be, const struct ds_window *g, const float *x, float *cols);
    /* The adjoint: dx[b, ci, ...] = sum of the cols entries that read it (overwrites dx). */
    void (*col2im)(struct ds_backend *be, const struct ds_window *g, const float *cols, float *dx);
    /* From the GEMM's channel-major yt [ch, batch*P] to NCHW:
     * y[b, c, p] = act(yt[c, b*P + p] + bias[c]); pre (may be NULL) receives the pre-activation. */
    void (*chw_bias_act)(struct ds_backend *be, int batch, int ch, int P, const float *yt,
                         const float *bias, enum ds_act act, float *y, float *pre);
    /* Its backward: dzt[c, b*P + p] = dy[b, c, p] * act'(.) (from y, or pre for gelu). */
    void (*chw_act_backward)(struct ds_backend *be, int batch, int ch, int P, enum ds_act act,
                             const float *pre, const float *y, const float *dy, float *dzt);
    /* out[r] (+)= sum_c x[r, c]: convolution bias gradients. */
    void (*row_sum)(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                    int accumulate);
    /* Pooling of [batch, c, h, w] into [batch, c, oh, ow] (windows inside the
     * image: pad 0). Max pooling's backward sends each gradient to the first
     * maximum of its window, found again from x and y (no index buffer). */
    void (*pool_forward)(struct ds_backend *be, enum ds_pool_kind kind, const struct ds_window *g,
                         const float *x, float *y);
    void (*pool_backward)(struct ds_backend *be, enum ds_pool_kind kind, const struct ds_window *g,
                          const float *x, const float *y, const float *dy, float *dx);

    /* Losses over `rows` samples; each returns the SUM of per-sample losses
     * and, if dlogits is not NULL, writes dloss/dlogits = grad_scale * d(sum).
     * `correct` (may be NULL) receives the count of correct predictions. */
    double (*softmax_xent)(struct ds_backend *be, int rows, int cols, const float *logits,
                           const int32_t *labels, float *dlogits, float grad_scale,
                           int64_t *correct);
    /* Optional (NULL: not offered; the GPU offers it). softmax_xent's sums
     * kept where they are made, so a forward/backward need not wait for the
     * device after each loss: while acc (backend memory, 3 doubles, zeroed
     * by the caller) is set, softmax_xent adds its loss sum, its count of
     * correct predictions and its count of labels outside [0, cols) to
     * acc[0..2] (in call order: the bits of adding the returned sums on the
     * host) and returns 0 at once; `correct` must be NULL meanwhile. NULL
     * ends it. The caller reads acc when it needs the totals. */
    void (*loss_defer)(struct ds_backend *be, double *acc);
    /* BCE with logits, one target in {0,1} (as float) per logit. */
    double (*bce_logits)(struct ds_backend *be, size_t n, const float *logits, const float *targets,
                         float *dlogits, float grad_scale, int64_t *correct);
    /* Squared error (pred - target)^2 per element. */
    double (*sq_error)(struct ds_backend *be, size_t n, const float *pred, const float *target,
                       float *dpred, float grad_scale);

    double (*dot)(struct ds_backend *be, size_t n, const float *x, const float *y);
    void (*scale)(struct ds_backend *be, size_t n, float *x, float a);
    void (*axpy)(struct ds_backend *be, size_t n, float a, const float *x, float *y);
    /* x[i] += sigma * N(0,1) at (seed, stream, offset + i). */
    void (*add_normal)(struct ds_backend *be, size_t n, float *x, float sigma, uint64_t seed,
                       uint32_t stream, uint64_t offset);
    /* dst[r,:] = src[idx[r],:]; idx is host memory. */
    void (*gather_rows)(struct ds_backend *be, int rows, size_t row_len, const float *src,
                        const int32_t *idx, float *dst);
    /* dst[r, j] = (src[idx[r], j] / 255 - mean) / std in float: byte images
     * converted per batch, exactly as torchvision's ToTensor + Normalize
     * (mean 0, std 1 give x / 255 to the last bit). */
    void (*gather_u8)(struct ds_backend *be, int rows, size_t row_len, const uint8_t *src,
                      const int32_t *idx, float mean, float std, float *dst);
    void (*gather_i32)(struct ds_backend *be, int rows, const int32_t *src, const int32_t *idx,
                       int32_t *dst);

    /* The global-norm clip and the non-finite guard, queued where the
     * gradients live: on a GPU nothing waits for the host between backward
     * and the optimizer. guard is backend memory for 2 doubles:
     *   guard[0] = sum_i g_i^2, summed as dot sums;
     *   guard[1] = this step's gradient scale, a float value: NaN when
     *     guard[0] is not finite (the step must change nothing); else, as
     *     torch.nn.utils.clip_grad_norm_, (float)(clip / (sqrt(guard[0]) +
     *     1e-6)) when clip > 0 and that is below 1; else 1. */
    void (*grad_guard)(struct ds_backend *be, size_t n, const float *g, double clip,
                       double *guard);
    /* One optimizer step over n elements (state slots offset like p and g).
     * guard (may be NULL: g as it is) is grad_guard's: the step uses
     * g * guard[1] and does nothing when guard[1] is NaN. A backend may leave
     * g scaled in place (the CPU does; the GPU scales inside its kernel). */
    void (*optim_step)(struct ds_backend *be, const struct ds_optim_ops *opt,
                       const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                       float *p, const float *g, float *const *state, const double *guard);

    void (*sync)(struct ds_backend *be); /* wait for queued work (timing) */
};

struct ds_backend {
    const struct ds_backend_ops *ops;
    void *ctx;
    int threads;
    char pci_bus_id[32]; /* the device's PCI address ("0000:65:00.0"); empty on the CPU */
};

/* Registry: the backends this build has. Creates `name` with `threads` CPU
 * threads (0: one per core). Unknown or unavailable names are DS_ERR_INPUT /
 * DS_ERR_UNSUPPORTED with a message listing the choices. */
ds_status ds_backend_create(const char *name, int threads, struct ds_backend *out,
                            struct ds_err *err);
/* The same with the GPU's GEMM precision: tf32 lets cuBLAS use TF32 tensor
 * cores (--tf32 on); ignored by the cpu backend. */
ds_status ds_backend_create_tf32(const char *name, int threads, int tf32, struct ds_backend *out,
                                 struct ds_err *err);
void ds_backend_destroy(struct ds_backend *be);
/* Comma-separated names of all backends and whether each is built. */
const char *ds_backend_list(void);

/* Implementations. */
ds_status ds_backend_cpu_create(int threads, struct ds_backend *out, struct ds_err *err);
/* backend_cuda.cu (built when nvcc is found): DS_ERR_UNSUPPORTED with a
 * message when no GPU is usable. tf32: cuBLAS may use TF32 tensor cores. */
ds_status ds_backend_cuda_create(int tf32, struct ds_backend *out, struct ds_err *err);

#endif
