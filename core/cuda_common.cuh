/*
 * cuda_common.cuh: what the CUDA backend's files share (compiled by nvcc as
 * CUDA C++; the rest of descent is C11 and sees only backend.h).
 *
 *   backend_cuda.cu  device, memory, cuBLAS GEMM, element-wise, dropout,
 *                    gathers, the ops table (ds_backend_cuda_create)
 *   cuda_conv.cu     im2col/col2im, Conv2d forward/backward, pooling, CHW ops
 *   cuda_reduce.cu   deterministic reductions (dot, losses) and the fused
 *                    optimizer and regularizer kernels
 *
 * Every CUDA and cuBLAS call goes through DS_CUDA_CHECK / DS_CUBLAS_CHECK,
 * which name the call and its file:line and end the process: a failing
 * device call mid-step leaves no state worth continuing from (the harness
 * records the run as failed from the exit status).
 *
 * Determinism: every reduction sums in an order that depends only on n
 * (fixed block count and a fixed tree inside each block, the partials added
 * in block order), never on timing: the same seed gives the same bits.
 * All work goes to one stream per backend; `sync` waits for it.
 */
#ifndef DS_CUDA_COMMON_CUH
#define DS_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>

#ifdef __cplusplus
#define _Noreturn [[noreturn]]
extern "C" {
#endif
#include "act.h"
#include "backend.h"
#include "philox.h"
#ifdef __cplusplus
}
#undef _Noreturn
#endif

#include <stdio.h>
#include <stdlib.h>

#define DS_CUDA_CHECK(call)                                                                   \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            fprintf(stderr, "descent: %s failed at %s:%d: %s (%s)\n", #call, __FILE__,        \
                    __LINE__, cudaGetErrorString(e_), cudaGetErrorName(e_));                 \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

#define DS_CUBLAS_CHECK(call)                                                                 \
    do {                                                                                      \
        cublasStatus_t s_ = (call);                                                           \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                                    \
            fprintf(stderr, "descent: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__,   \
                    cublasGetStatusString(s_));                                               \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Every kernel launch: DS_CUDA_LAUNCH(kernel, grid, block, shmem, stream)(args).
 * One spelling of <<<...>>> lets tests/cudaemu run these same kernels on the
 * host (it defines DS_CUDA_LAUNCH before this header), so CI exercises the
 * kernels' indexing and reductions on machines without a GPU. */
#ifndef DS_CUDA_LAUNCH
#define DS_CUDA_LAUNCH(kernel, grid, block, shmem, stream) kernel<<<(grid), (block), (shmem), (stream)>>>
#endif

/* After a kernel launch: launch errors (bad configuration) surface here. */
#define DS_CUDA_LAUNCHED() DS_CUDA_CHECK(cudaGetLastError())

#define DS_CUDA_IDX_SLOTS 4

/* The backend's state (be->ctx). */
struct ds_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    int tf32;               /* cuBLAS may use TF32 tensor cores (--tf32 on) */
    char desc[320];
    /* host indices of a gather, copied here first (grown as needed) */
    int32_t *idx;
    size_t idx_cap;
    /* ...through a ring of pinned buffers: a copy from pageable memory may
     * make the driver wait for the stream, a pinned one never does; a slot
     * is reused once its event says its copy is done */
    int32_t *idx_pin[DS_CUDA_IDX_SLOTS];
    size_t idx_pin_cap[DS_CUDA_IDX_SLOTS];
    cudaEvent_t idx_copied[DS_CUDA_IDX_SLOTS];
    int idx_next;
    /* reductions: per-block partials in double, and their host copy */
    double *partial;        /* [DS_CUDA_RED_BLOCKS * 4] device */
    double *partial_host;   /* pinned */
    double *defer_acc;      /* loss_defer's accumulator (device), or NULL */
    /* conv: nothing persistent (its workspace is the caller's) */
};

static inline struct ds_cuda *ds_cuda_of(struct ds_backend *be)
{
    return (struct ds_cuda *)be->ctx;
}

/* Blocks of a reduction: fixed, so the summation order depends on n only. */
#define DS_CUDA_RED_BLOCKS 256
#define DS_CUDA_RED_THREADS 256
/* Element-wise launches: grid-stride loops over at most this many blocks. */
#define DS_CUDA_THREADS 256
static inline unsigned ds_cuda_blocks(size_t n)
{
    size_t b = (n + DS_CUDA_THREADS - 1) / DS_CUDA_THREADS;
    if (b < 1) b = 1;
    return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

/* Entry points of the other files, with the ops' signatures (backend.h). */
size_t ds_cuda_conv_workspace(struct ds_backend *be, const struct ds_window *g, int out_c);
void ds_cuda_conv_forward(struct ds_backend *be, const struct ds_window *g, int out_c,
                          const float *x, const float *W, const float *bias, enum ds_act act,
                          float *y, float *pre, float *ws);
void ds_cuda_conv_backward(struct ds_backend *be, const struct ds_window *g, int out_c,
                           enum ds_act act, const float *x, const float *W, const float *y,
                           const float *pre, const float *dy, float *dW, float *db, float *dx,
                           int accumulate, float *ws);
void ds_cuda_im2col(struct ds_backend *be, const struct ds_window *g, const float *x, float *cols);
void ds_cuda_col2im(struct ds_backend *be, const struct ds_window *g, const float *cols, float *dx);
void ds_cuda_chw_bias_act(struct ds_backend *be, int batch, int ch, int P, const float *yt,
                          const float *bias, enum ds_act act, float *y, float *pre);
void ds_cuda_chw_act_backward(struct ds_backend *be, int batch, int ch, int P, enum ds_act act,
                              const float *pre, const float *y, const float *dy, float *dzt);
void ds_cuda_row_sum(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                     int accumulate);
void ds_cuda_pool_forward(struct ds_backend *be, enum ds_pool_kind kind, const struct ds_window *g,
                          const float *x, float *y);
void ds_cuda_pool_backward(struct ds_backend *be, enum ds_pool_kind kind,
                           const struct ds_window *g, const float *x, const float *y,
                           const float *dy, float *dx);

double ds_cuda_softmax_xent(struct ds_backend *be, int rows, int cols, const float *logits,
                            const int32_t *labels, float *dlogits, float grad_scale,
                            int64_t *correct);
void ds_cuda_loss_defer(struct ds_backend *be, double *acc);
double ds_cuda_bce_logits(struct ds_backend *be, size_t n, const float *logits,
                          const float *targets, float *dlogits, float grad_scale,
                          int64_t *correct);
double ds_cuda_sq_error(struct ds_backend *be, size_t n, const float *pred, const float *target,
                        float *dpred, float grad_scale);
double ds_cuda_dot(struct ds_backend *be, size_t n, const float *x, const float *y);
void ds_cuda_optim_step(struct ds_backend *be, const struct ds_optim_ops *opt,
                        const struct ds_optim_hyper *h, const struct ds_optim_scalars *s, size_t n,
                        float *p, const float *g, float *const *state, const double *guard);
void ds_cuda_grad_guard(struct ds_backend *be, size_t n, const float *g, double clip, double *guard);

/* The row-major GEMM (backend_cuda.cu), for the conv file. */
void ds_cuda_gemm(struct ds_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc);

#endif
