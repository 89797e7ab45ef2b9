/*
 * backend_cuda.cu: the CUDA backend (see cuda_common.cuh for how its files
 * divide the work). This file: the device and its stream, memory, the
 * row-major GEMM on cuBLAS, the element-wise kernels, dropout and noise
 * from the same Philox streams as the CPU (so masks match bit for bit), the
 * gathers, and the ops table.
 *
 * Memory is device memory (cudaMalloc); every op is queued on the backend's
 * one stream, so ops run in call order and results are ready for the next
 * op without synchronising; `download` and the reductions (which return a
 * host double) wait for the stream.
 */
#include "cuda_common.cuh"

#include <string.h>

/* ---------------------------------------------------------------- memory */

static void *cu_alloc(struct ds_backend *be, size_t bytes)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 4);
    if (e == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError(); /* clear it: out of memory is the caller's to report */
        return NULL;
    }
    if (e != cudaSuccess) {
        fprintf(stderr, "descent: cudaMalloc(%zu bytes) failed at %s:%d: %s (%s)\n", bytes, __FILE__,
                __LINE__, cudaGetErrorString(e), cudaGetErrorName(e));
        exit(1);
    }
    /* zero-filled, as backend.h promises; on the stream, so later ops see it */
    DS_CUDA_CHECK(cudaMemsetAsync(p, 0, bytes ? bytes : 4, ds_cuda_of(be)->stream));
    return p;
}

static void cu_free(struct ds_backend *be, void *p)
{
    if (!p) return;
    /* cudaFree waits for the device, so queued work still reading p finishes */
    (void)be;
    DS_CUDA_CHECK(cudaFree(p));
}

static void cu_upload(struct ds_backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    struct ds_cuda *c = ds_cuda_of(be);
    DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream));
    /* the host buffer is the caller's again when this returns */
    DS_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cu_download(struct ds_backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes) return;
    struct ds_cuda *c = ds_cuda_of(be);
    DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream));
    DS_CUDA_CHECK(cudaStreamSynchronize(c->stream));
}

static void cu_copy(struct ds_backend *be, void *dst, const void *src, size_t bytes)
{
    if (!bytes || dst == src) return;
    DS_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ds_cuda_of(be)->stream));
}

__global__ static void k_fill(float *x, size_t n, float v)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = v;
}

static void cu_fill(struct ds_backend *be, float *x, size_t n, float v)
{
    if (!n) return;
    DS_CUDA_LAUNCH(k_fill, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(x, n, v);
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- GEMM */

/* Row-major C = alpha op(A) op(B) + beta C on column-major cuBLAS: a
 * row-major matrix is its transpose column-major, so compute
 * C^T = op(B)^T op(A)^T, i.e. swap the operands and m with n. */
void ds_cuda_gemm(struct ds_backend *be, int trans_a, int trans_b, int m, int n, int k, float alpha,
                  const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    if (m <= 0 || n <= 0) return;
    struct ds_cuda *cx = ds_cuda_of(be);
    if (k <= 0) { /* C = beta C: cuBLAS accepts k = 0 and does exactly that */
        k = 0;
    }
    DS_CUBLAS_CHECK(cublasSgemm(cx->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k, &alpha, b, ldb, a,
                                lda, &beta, c, ldc));
}

/* ---------------------------------------------------------------- element-wise */

__global__ static void k_bias_act(int rows, int cols, float *y, const float *bias, enum ds_act act,
                                  float *pre)
{
    size_t n = (size_t)rows * cols;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float z = y[i] + (bias ? bias[i % (size_t)cols] : 0.0f);
        if (pre) pre[i] = z;
        y[i] = ds_act_fwd(act, z);
    }
}

static void cu_bias_act(struct ds_backend *be, int rows, int cols, float *y, const float *bias,
                        enum ds_act act, float *pre)
{
    size_t n = (size_t)rows * cols;
    if (!n) return;
    DS_CUDA_LAUNCH(k_bias_act, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(rows, cols, y, bias,
                                                                                 act, pre);
    DS_CUDA_LAUNCHED();
}

__global__ static void k_act_backward(size_t n, enum ds_act act, const float *x, const float *y,
                                      const float *dy, float *dx)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        if (act == DS_ACT_RELU) { /* as the CPU: select, not multiply (keeps -0 and NaN the same) */
            dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
            continue;
        }
        dx[i] = dy[i] * ds_act_grad(act, x ? x[i] : 0.0f, y ? y[i] : 0.0f);
    }
}

static void cu_act_backward(struct ds_backend *be, size_t n, enum ds_act act, const float *x,
                            const float *y, const float *dy, float *dx)
{
    if (!n) return;
    DS_CUDA_LAUNCH(k_act_backward, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(n, act, x, y, dy,
                                                                                     dx);
    DS_CUDA_LAUNCHED();
}

/* One thread per column, down the rows in order: the CPU's order, so the
 * sums are the same bits (coalesced: neighbouring threads read neighbouring
 * columns of a row). */
__global__ static void k_col_sum(int rows, int cols, const float *x, float *out, int accumulate)
{
    for (int c = blockIdx.x * blockDim.x + threadIdx.x; c < cols; c += gridDim.x * blockDim.x) {
        float acc = accumulate ? out[c] : 0.0f;
        for (int r = 0; r < rows; r++) acc += x[(size_t)r * cols + c];
        out[c] = acc;
    }
}

static void cu_col_sum(struct ds_backend *be, int rows, int cols, const float *x, float *out,
                       int accumulate)
{
    if (cols <= 0) return;
    DS_CUDA_LAUNCH(k_col_sum, ds_cuda_blocks((size_t)cols), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(
        rows, cols, x, out, accumulate);
    DS_CUDA_LAUNCHED();
}

__global__ static void k_dropout(size_t n, uint32_t thr, float scale, uint64_t seed, uint32_t stream,
                                 uint64_t offset, const float *x, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = ds_rng_keep(seed, stream, offset + i, thr) ? x[i] * scale : 0.0f;
}

static void cu_dropout(struct ds_backend *be, size_t n, float p, uint64_t seed, uint32_t stream,
                       uint64_t offset, const float *x, float *y)
{
    if (!n) return;
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
    DS_CUDA_LAUNCH(k_dropout, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(
        n, ds_dropout_threshold24(p), scale, seed, stream, offset, x, y);
    DS_CUDA_LAUNCHED();
}

__global__ static void k_scale(size_t n, float *x, float a)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] *= a;
}

static void cu_scale(struct ds_backend *be, size_t n, float *x, float a)
{
    if (!n) return;
    DS_CUDA_LAUNCH(k_scale, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(n, x, a);
    DS_CUDA_LAUNCHED();
}

/* y += a x without contracting into an FMA: the CPU (baseline x86-64)
 * rounds the product first. */
__global__ static void k_axpy(size_t n, float a, const float *x, float *y)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], __fmul_rn(a, x[i]));
}

static void cu_axpy(struct ds_backend *be, size_t n, float a, const float *x, float *y)
{
    if (!n) return;
    DS_CUDA_LAUNCH(k_axpy, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(n, a, x, y);
    DS_CUDA_LAUNCHED();
}

__global__ static void k_add_normal(size_t n, float *x, float sigma, uint64_t seed, uint32_t stream,
                                    uint64_t offset)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        x[i] = __fadd_rn(x[i], __fmul_rn(sigma, (float)ds_rng_normal(seed, stream, offset + i)));
}

static void cu_add_normal(struct ds_backend *be, size_t n, float *x, float sigma, uint64_t seed,
                          uint32_t stream, uint64_t offset)
{
    if (!n) return;
    DS_CUDA_LAUNCH(k_add_normal, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(n, x, sigma, seed,
                                                                                   stream, offset);
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- gathers */

/* The host indices on the device (the buffer grows, never shrinks). */
static const int32_t *stage_idx(struct ds_backend *be, const int32_t *idx, int rows)
{
    struct ds_cuda *c = ds_cuda_of(be);
    if ((size_t)rows > c->idx_cap) {
        size_t cap = (size_t)rows * 2;
        DS_CUDA_CHECK(cudaFree(c->idx));
        c->idx = NULL;
        DS_CUDA_CHECK(cudaMalloc((void **)&c->idx, cap * sizeof(int32_t)));
        c->idx_cap = cap;
    }
    int k = c->idx_next;
    c->idx_next = (k + 1) % DS_CUDA_IDX_SLOTS;
    /* the copy this slot fed DS_CUDA_IDX_SLOTS gathers ago is long done in
     * practice; the wait makes it certain before the host overwrites it */
    DS_CUDA_CHECK(cudaEventSynchronize(c->idx_copied[k]));
    if ((size_t)rows > c->idx_pin_cap[k]) {
        if (c->idx_pin[k]) DS_CUDA_CHECK(cudaFreeHost(c->idx_pin[k]));
        c->idx_pin[k] = NULL;
        DS_CUDA_CHECK(cudaMallocHost((void **)&c->idx_pin[k], c->idx_cap * sizeof(int32_t)));
        c->idx_pin_cap[k] = c->idx_cap;
    }
    memcpy(c->idx_pin[k], idx, (size_t)rows * sizeof(int32_t));
    DS_CUDA_CHECK(cudaMemcpyAsync(c->idx, c->idx_pin[k], (size_t)rows * sizeof(int32_t),
                                  cudaMemcpyHostToDevice, c->stream));
    DS_CUDA_CHECK(cudaEventRecord(c->idx_copied[k], c->stream));
    return c->idx;
}

__global__ static void k_gather_rows(int rows, size_t row_len, const float *src, const int32_t *idx,
                                     float *dst)
{
    size_t n = (size_t)rows * row_len;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / row_len, j = i % row_len;
        dst[i] = src[(size_t)idx[r] * row_len + j];
    }
}

static void cu_gather_rows(struct ds_backend *be, int rows, size_t row_len, const float *src,
                           const int32_t *idx, float *dst)
{
    size_t n = (size_t)rows * row_len;
    if (!n) return;
    const int32_t *d = stage_idx(be, idx, rows);
    DS_CUDA_LAUNCH(k_gather_rows, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(rows, row_len, src,
                                                                                    d, dst);
    DS_CUDA_LAUNCHED();
}

/* (x / 255 - mean) / std with IEEE division and no contraction: the CPU's
 * (and torchvision's) float result to the last bit. */
__global__ static void k_gather_u8(int rows, size_t row_len, const uint8_t *src, const int32_t *idx,
                                   float mean, float std, int plain, float *dst)
{
    size_t n = (size_t)rows * row_len;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / row_len, j = i % row_len;
        float v = __fdiv_rn((float)src[(size_t)idx[r] * row_len + j], 255.0f);
        dst[i] = plain ? v : __fdiv_rn(__fsub_rn(v, mean), std);
    }
}

static void cu_gather_u8(struct ds_backend *be, int rows, size_t row_len, const uint8_t *src,
                         const int32_t *idx, float mean, float std, float *dst)
{
    size_t n = (size_t)rows * row_len;
    if (!n) return;
    const int32_t *d = stage_idx(be, idx, rows);
    DS_CUDA_LAUNCH(k_gather_u8, ds_cuda_blocks(n), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(
        rows, row_len, src, d, mean, std, mean == 0.0f && std == 1.0f, dst);
    DS_CUDA_LAUNCHED();
}

__global__ static void k_gather_i32(int rows, const int32_t *src, const int32_t *idx, int32_t *dst)
{
    for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < rows; r += gridDim.x * blockDim.x)
        dst[r] = src[idx[r]];
}

static void cu_gather_i32(struct ds_backend *be, int rows, const int32_t *src, const int32_t *idx,
                          int32_t *dst)
{
    if (rows <= 0) return;
    const int32_t *d = stage_idx(be, idx, rows);
    DS_CUDA_LAUNCH(k_gather_i32, ds_cuda_blocks((size_t)rows), DS_CUDA_THREADS, 0, ds_cuda_of(be)->stream)(rows, src,
                                                                                              d, dst);
    DS_CUDA_LAUNCHED();
}

/* ---------------------------------------------------------------- the backend */

static void cu_sync(struct ds_backend *be) { DS_CUDA_CHECK(cudaStreamSynchronize(ds_cuda_of(be)->stream)); }

static const char *cu_describe(struct ds_backend *be) { return ds_cuda_of(be)->desc; }

static void cu_destroy(struct ds_backend *be)
{
    struct ds_cuda *c = ds_cuda_of(be);
    if (!c) return;
    DS_CUDA_CHECK(cudaStreamSynchronize(c->stream));
    DS_CUDA_CHECK(cudaFree(c->idx));
    for (int k = 0; k < DS_CUDA_IDX_SLOTS; k++) {
        if (c->idx_pin[k]) DS_CUDA_CHECK(cudaFreeHost(c->idx_pin[k]));
        DS_CUDA_CHECK(cudaEventDestroy(c->idx_copied[k]));
    }
    DS_CUDA_CHECK(cudaFree(c->partial));
    DS_CUDA_CHECK(cudaFreeHost(c->partial_host));
    DS_CUBLAS_CHECK(cublasDestroy(c->blas));
    DS_CUDA_CHECK(cudaStreamDestroy(c->stream));
    free(c);
    be->ctx = NULL;
}

static const struct ds_backend_ops ds_cuda_ops = {
    /* .name = */ "cuda",
    /* .destroy = */ cu_destroy,
    /* .describe = */ cu_describe,
    /* .alloc = */ cu_alloc,
    /* .free = */ cu_free,
    /* .upload = */ cu_upload,
    /* .download = */ cu_download,
    /* .copy = */ cu_copy,
    /* .fill = */ cu_fill,
    /* .gemm = */ ds_cuda_gemm,
    /* .bias_act = */ cu_bias_act,
    /* .act_backward = */ cu_act_backward,
    /* .col_sum = */ cu_col_sum,
    /* .dropout = */ cu_dropout,
    /* .conv_workspace = */ ds_cuda_conv_workspace,
    /* .conv_forward = */ ds_cuda_conv_forward,
    /* .conv_backward = */ ds_cuda_conv_backward,
    /* .im2col = */ ds_cuda_im2col,
    /* .col2im = */ ds_cuda_col2im,
    /* .chw_bias_act = */ ds_cuda_chw_bias_act,
    /* .chw_act_backward = */ ds_cuda_chw_act_backward,
    /* .row_sum = */ ds_cuda_row_sum,
    /* .pool_forward = */ ds_cuda_pool_forward,
    /* .pool_backward = */ ds_cuda_pool_backward,
    /* .softmax_xent = */ ds_cuda_softmax_xent,
    /* .loss_defer = */ ds_cuda_loss_defer,
    /* .bce_logits = */ ds_cuda_bce_logits,
    /* .sq_error = */ ds_cuda_sq_error,
    /* .dot = */ ds_cuda_dot,
    /* .scale = */ cu_scale,
    /* .axpy = */ cu_axpy,
    /* .add_normal = */ cu_add_normal,
    /* .gather_rows = */ cu_gather_rows,
    /* .gather_u8 = */ cu_gather_u8,
    /* .gather_i32 = */ cu_gather_i32,
    /* .grad_guard = */ ds_cuda_grad_guard,
    /* .optim_step = */ ds_cuda_optim_step,
    /* .sync = */ cu_sync,
};

/* The GPU this process uses: under a launcher, its local rank's (one GPU
 * per rank on a node), else the first. */
static int pick_device(int count)
{
    const char *names[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "LOCAL_RANK"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *e = getenv(names[i]);
        if (e && *e) return atoi(e) % count;
    }
    return 0;
}

extern "C" ds_status ds_backend_cuda_create(int tf32, struct ds_backend *out, struct ds_err *err)
{
    memset(out, 0, sizeof *out);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        (void)cudaGetLastError();
        return ds_err_set(err, DS_ERR_UNSUPPORTED,
                          "--backend cuda: no CUDA GPU is usable here (%s); valid: cpu",
                          e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
    }
    struct ds_cuda *c = (struct ds_cuda *)calloc(1, sizeof *c);
    if (!c) return ds_err_set(err, DS_ERR_NOMEM, "out of memory creating the cuda backend");
    c->device = pick_device(count);
    c->tf32 = tf32;
    DS_CUDA_CHECK(cudaSetDevice(c->device));
    DS_CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    DS_CUBLAS_CHECK(cublasCreate(&c->blas));
    DS_CUBLAS_CHECK(cublasSetStream(c->blas, c->stream));
    /* TF32 off (the default) keeps GEMMs in full float32, for parity with
     * the CPU; on trades 10 mantissa bits for tensor-core speed */
    DS_CUBLAS_CHECK(cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    DS_CUDA_CHECK(cudaMalloc((void **)&c->partial, DS_CUDA_RED_BLOCKS * 4 * sizeof(double)));
    DS_CUDA_CHECK(cudaMallocHost((void **)&c->partial_host, DS_CUDA_RED_BLOCKS * 4 * sizeof(double)));
    for (int k = 0; k < DS_CUDA_IDX_SLOTS; k++) {
        DS_CUDA_CHECK(cudaEventCreateWithFlags(&c->idx_copied[k], cudaEventDisableTiming));
        DS_CUDA_CHECK(cudaEventRecord(c->idx_copied[k], c->stream)); /* "done": the first wait returns */
    }
    struct cudaDeviceProp prop;
    DS_CUDA_CHECK(cudaGetDeviceProperties(&prop, c->device));
    int blas_version = 0;
    DS_CUBLAS_CHECK(cublasGetVersion(c->blas, &blas_version));
    snprintf(c->desc, sizeof c->desc, "cuda: %.120s (sm_%d%d, %.0f GiB), device %d of %d, cuBLAS %d, TF32 %s",
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / 1073741824.0, c->device,
             count, blas_version, tf32 ? "on" : "off");
    /* where the GPU sits: --bind core puts the rank on the CPUs nearest it;
     * only that needs it, so a driver that cannot say leaves it empty (and
     * --bind core falls back to a share of the cores) rather than failing */
    if (cudaDeviceGetPCIBusId(out->pci_bus_id, (int)sizeof out->pci_bus_id, c->device) != cudaSuccess) {
        (void)cudaGetLastError();
        out->pci_bus_id[0] = '\0';
    }
    out->ops = &ds_cuda_ops;
    out->ctx = c;
    out->threads = 1;
    return DS_OK;
}
