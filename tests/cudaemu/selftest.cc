/*
 * selftest.cc: cudaemu's own test (built as test_cudaemu): the emulator must
 * run correct kernels correctly (indexing in 3-D grids and blocks, barriers,
 * shuffles, cuBLAS's column-major SGEMM, error codes) and must stop each
 * kind of kernel bug it claims to find, with a message naming it. A bug case
 * runs in a child process (this program again, `--child NAME`, so each
 * starts with a fresh emulator and its own CUDAEMU_* settings) and passes
 * when the child fails saying what the emulator says for that bug. Output is
 * TAP, for tests/run.sh.
 */
#include "cublas_v2.h"
#include "cuda_runtime.h"

#include <fenv.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

/* ---- kernels ------------------------------------------------------------- */

/* out[i] += 1 for the thread's global linear index i: each element once. */
__global__ void k_count(int *out, int n)
{
    const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    const int i = (int)(bx * blockDim.x * blockDim.y * blockDim.z + tx);
    if (i < n) out[i] += 1;
}

/* The sum of in[] over each block of 256 by a shared-memory tree. */
__global__ void k_block_sum(const float *in, float *out)
{
    __shared__ float sh[256];
    const unsigned t = threadIdx.x;
    sh[t] = in[blockIdx.x * 256 + t];
    __syncthreads();
    for (unsigned h = 128; h > 0; h >>= 1) {
        if (t < h) sh[t] += sh[t + h];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = sh[0];
}

/* Per warp: the xor-butterfly sum, lane 5's value (shfl), the inclusive
 * prefix sum (shfl_up) and the value of lane + 1 (shfl_down). */
__global__ void k_warp(const int *in, int *sum, int *bcast, int *scan, int *down)
{
    const int i = (int)(blockIdx.x * blockDim.x + threadIdx.x), lane = (int)(threadIdx.x & 31);
    int v = in[i], s = v;
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    sum[i] = s;
    bcast[i] = __shfl_sync(0xffffffffu, v, 5);
    int p = v;
    for (int o = 1; o < 32; o <<= 1) {
        int u = __shfl_up_sync(0xffffffffu, p, (unsigned)o);
        if (lane >= o) p += u;
    }
    scan[i] = p;
    down[i] = __shfl_down_sync(0xffffffffu, v, 1u);
}

/* Reads a __shared__ word before any thread wrote it. */
__global__ void k_shared_garbage(unsigned *out)
{
    __shared__ unsigned sh[4];
    out[threadIdx.x] = sh[threadIdx.x];
}

/* Every thread writes its index to out[0]: the last writer wins. */
__global__ void k_race(int *out)
{
    out[0] = (int)threadIdx.x;
}

__global__ void k_touch(float *x)
{
    x[threadIdx.x] += 1.0f;
}

__global__ void k_oob(float *x, int n)
{
    x[n + (int)threadIdx.x] = 1.0f;
}

/* Half the block returns before the barrier. */
__global__ void k_diverge(float *x)
{
    if (threadIdx.x >= 16) return;
    x[threadIdx.x] = 1.0f;
    __syncthreads();
}

/* Two barriers, one per half of the block. */
__global__ void k_two_barriers(float *x)
{
    if (threadIdx.x < 32) {
        x[threadIdx.x] = 1.0f;
        __syncthreads();
    } else {
        x[threadIdx.x] = 2.0f;
        __syncthreads();
    }
}

/* Lanes 16.. return; the rest shuffle with a full mask. */
__global__ void k_shfl_exited(int *x)
{
    if (threadIdx.x >= 16) return;
    x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}

/* Half a warp shuffles with a full mask, the other half waits at
 * __syncthreads: neither can complete. */
__global__ void k_deadlock(int *x)
{
    if (threadIdx.x < 16)
        x[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1, 1);
    else
        __syncthreads();
}

/* Block 0 reaches no barrier, block 1 does. */
__global__ void k_late_barrier(float *x)
{
    if (blockIdx.x == 0) return;
    x[threadIdx.x] = 1.0f;
    __syncthreads();
}

__global__ void k_round_up(float *x)
{
    fesetround(FE_UPWARD);
    x[threadIdx.x] = 1.0f;
}

/* ---- harness --------------------------------------------------------------- */

static int g_n, g_failed;

static void tap(bool ok, const char *name, const std::string &why = "")
{
    g_n++;
    if (!ok) g_failed++;
    printf("%s %d - %s%s%s\n", ok ? "ok" : "not ok", g_n, name, why.empty() ? "" : " # ",
           why.c_str());
    fflush(stdout);
}

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "selftest: %s:%d: %s is false\n", __FILE__, __LINE__, #cond);          \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

template <class T> static T *dev(size_t n)
{
    void *p = nullptr;
    if (cudaMalloc(&p, n * sizeof(T)) != cudaSuccess) abort();
    return (T *)p;
}

/* Runs `--child name` with the setting `env` (if any) in a new process; its
 * stdout and stderr come back in *out. Returns the child's wait status. */
static int in_child(const char *name, std::string *out, const char *env = nullptr)
{
    int pfd[2];
    if (pipe(pfd) != 0) abort();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) abort();
    if (pid == 0) {
        dup2(pfd[1], 1);
        dup2(pfd[1], 2);
        close(pfd[0]);
        close(pfd[1]);
        if (env) putenv((char *)env);
        execl("/proc/self/exe", "test_cudaemu", "--child", name, (char *)nullptr);
        _exit(127);
    }
    close(pfd[1]);
    char buf[4096];
    ssize_t k;
    while ((k = read(pfd[0], buf, sizeof buf)) > 0)
        out->append(buf, (size_t)k);
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    return st;
}

/* A bug case: the child must fail, saying `expect`. */
static void bug(const char *name, const char *child, const char *expect, const char *env = nullptr)
{
    std::string out;
    int st = in_child(child, &out, env);
    bool failed = !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    bool said = out.find(expect) != std::string::npos;
    std::string why;
    if (!failed || !said) {
        why = failed ? "failed without saying \"" + std::string(expect) + "\""
                     : "the emulator let it pass";
        fprintf(stderr, "---- %s: the child's output ----\n%s----\n", name, out.c_str());
    }
    tap(failed && said, name, why);
}

/* ---- bugs, each the body of a child ------------------------------------------ */

static float g_host[64];

static void c_host_ptr()
{
    DS_CUDA_LAUNCH(k_touch, 1, 64, 0, 0)(g_host);
}

static void c_freed_ptr()
{
    float *d = dev<float>(64);
    cudaFree(d);
    DS_CUDA_LAUNCH(k_touch, 1, 64, 0, 0)(d);
}

static void c_misaligned()
{
    float *d = dev<float>(64);
    DS_CUDA_LAUNCH(k_touch, 1, 8, 0, 0)((float *)((char *)d + 2));
}

static void c_diverge()
{
    DS_CUDA_LAUNCH(k_diverge, 1, 64, 0, 0)(dev<float>(64));
}
static void c_two_barriers()
{
    DS_CUDA_LAUNCH(k_two_barriers, 1, 64, 0, 0)(dev<float>(64));
}
static void c_shfl_exited()
{
    DS_CUDA_LAUNCH(k_shfl_exited, 1, 32, 0, 0)(dev<int>(32));
}
static void c_deadlock()
{
    DS_CUDA_LAUNCH(k_deadlock, 1, 32, 0, 0)(dev<int>(32));
}
static void c_late_barrier()
{
    DS_CUDA_LAUNCH(k_late_barrier, 2, 32, 0, 0)(dev<float>(32));
}
static void c_dyn_shared()
{
    DS_CUDA_LAUNCH(k_touch, 1, 32, 128, 0)(dev<float>(32));
}
static void c_round_up()
{
    DS_CUDA_LAUNCH(k_round_up, 1, 32, 0, 0)(dev<float>(32));
}
static void c_oob()
{
    DS_CUDA_LAUNCH(k_oob, 1, 4, 0, 0)(dev<float>(64), 64);
}

static void c_overlap()
{
    float *d = dev<float>(64);
    cudaMemcpy(d + 1, d, 32 * 4, cudaMemcpyDeviceToDevice);
}

static void c_sgemm_host()
{
    cublasHandle_t hd;
    cublasCreate(&hd);
    static float A[16], B[16], C[16];
    const float one = 1.0f;
    cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, A, 4, B, 4, &one, C, 4);
}

static void c_sgemm_past_end()
{
    cublasHandle_t hd;
    cublasCreate(&hd);
    float *d = dev<float>(16);
    const float one = 1.0f;
    /* C: 4 columns 5 apart need 19 floats */
    cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, 4, d, 4, &one, d, 5);
}

/* Not a bug: prints the racy kernel's result, for t_order. */
static void c_race()
{
    int *d = dev<int>(1);
    DS_CUDA_LAUNCH(k_race, 1, 64, 0, 0)(d);
    int h = -1;
    cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost);
    cudaFree(d);
    printf("%d\n", h);
}

static const struct {
    const char *name;
    void (*fn)();
} g_children[] = {
    {"host_ptr", c_host_ptr},
    {"freed_ptr", c_freed_ptr},
    {"misaligned", c_misaligned},
    {"diverge", c_diverge},
    {"two_barriers", c_two_barriers},
    {"shfl_exited", c_shfl_exited},
    {"deadlock", c_deadlock},
    {"late_barrier", c_late_barrier},
    {"dyn_shared", c_dyn_shared},
    {"round_up", c_round_up},
    {"oob", c_oob},
    {"overlap", c_overlap},
    {"sgemm_host", c_sgemm_host},
    {"sgemm_past_end", c_sgemm_past_end},
    {"race", c_race},
};

/* ---- correct kernels ------------------------------------------------------- */

static bool t_indexing()
{
    const dim3 grid(3, 5, 2), block(8, 4, 2);
    const int n = 3 * 5 * 2 * 64;
    int *d = dev<int>(n);
    CHECK(cudaMemset(d, 0, n * sizeof(int)) == cudaSuccess);
    DS_CUDA_LAUNCH(k_count, grid, block, 0, 0)(d, n);
    CHECK(cudaGetLastError() == cudaSuccess);
    std::vector<int> h(n);
    CHECK(cudaMemcpy(h.data(), d, n * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int i = 0; i < n; i++)
        CHECK(h[i] == 1);
    CHECK(cudaFree(d) == cudaSuccess);
    return true;
}

static bool t_block_sum()
{
    const int blocks = 7;
    std::vector<float> h(blocks * 256);
    for (size_t i = 0; i < h.size(); i++)
        h[i] = (float)(i % 97);
    float *in = dev<float>(h.size()), *out = dev<float>(blocks);
    CHECK(cudaMemcpy(in, h.data(), h.size() * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    DS_CUDA_LAUNCH(k_block_sum, blocks, 256, 0, 0)(in, out);
    CHECK(cudaGetLastError() == cudaSuccess);
    float r[blocks];
    CHECK(cudaMemcpy(r, out, sizeof r, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (int b = 0; b < blocks; b++) {
        float s = 0.0f;
        for (int t = 0; t < 256; t++)
            s += h[b * 256 + t];
        CHECK(r[b] == s); /* small integers: exact in any order */
    }
    cudaFree(in), cudaFree(out);
    return true;
}

static bool t_warp()
{
    const int n = 96; /* three warps */
    std::vector<int> h(n);
    for (int i = 0; i < n; i++)
        h[i] = i * 7 % 13;
    int *in = dev<int>(n), *sum = dev<int>(n), *bc = dev<int>(n), *scan = dev<int>(n),
        *down = dev<int>(n);
    CHECK(cudaMemcpy(in, h.data(), n * 4, cudaMemcpyHostToDevice) == cudaSuccess);
    DS_CUDA_LAUNCH(k_warp, 1, n, 0, 0)(in, sum, bc, scan, down);
    CHECK(cudaGetLastError() == cudaSuccess);
    std::vector<int> s(n), b(n), sc(n), dn(n);
    cudaMemcpy(s.data(), sum, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(b.data(), bc, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(sc.data(), scan, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(dn.data(), down, n * 4, cudaMemcpyDeviceToHost);
    for (int w = 0; w < n / 32; w++) {
        int tot = 0, run = 0;
        for (int l = 0; l < 32; l++)
            tot += h[w * 32 + l];
        for (int l = 0; l < 32; l++) {
            const int i = w * 32 + l;
            run += h[i];
            CHECK(s[i] == tot);
            CHECK(b[i] == h[w * 32 + 5]);
            CHECK(sc[i] == run);
            CHECK(dn[i] == (l < 31 ? h[i + 1] : h[i])); /* past the warp: its own value */
        }
    }
    cudaFree(in), cudaFree(sum), cudaFree(bc), cudaFree(scan), cudaFree(down);
    return true;
}

static bool t_garbage()
{
    /* new device memory and fresh shared memory read as 0xFF bytes */
    unsigned *d = dev<unsigned>(4);
    unsigned h[4] = {0, 0, 0, 0};
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (unsigned v : h)
        CHECK(v == 0xffffffffu);
    CHECK(cudaMemset(d, 0, sizeof h) == cudaSuccess);
    DS_CUDA_LAUNCH(k_shared_garbage, 1, 4, 0, 0)(d);
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost) == cudaSuccess);
    for (unsigned v : h)
        CHECK(v == 0xffffffffu);
    cudaFree(d);
    return true;
}

static bool t_errors()
{
    float *d = dev<float>(64);
    /* bad configurations: the launch does nothing, cudaGetLastError says so once */
    DS_CUDA_LAUNCH(k_touch, 0, 64, 0, 0)(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaSuccess);
    DS_CUDA_LAUNCH(k_touch, 1, 1025, 0, 0)(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    DS_CUDA_LAUNCH(k_touch, dim3(1, 65536, 1), 1, 0, 0)(d);
    CHECK(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
    cudaStream_t s;
    CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess);
    CHECK(cudaStreamDestroy(s) == cudaSuccess);
    DS_CUDA_LAUNCH(k_touch, 1, 64, 0, s)(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidResourceHandle);
    /* misuse a GPU reports by value (the emulator also says why on stderr) */
    float h[64];
    CHECK(cudaMemcpy(h, d, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(d, h, sizeof h + 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaMemcpy(d + 1, h, sizeof h, cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
    CHECK(cudaFree(h) == cudaErrorInvalidValue);
    CHECK(cudaFree(d + 1) == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue);
    CHECK(cudaGetLastError() == cudaSuccess);
    CHECK(
        !strcmp(cudaGetErrorName(cudaErrorInvalidConfiguration), "cudaErrorInvalidConfiguration"));
    CHECK(cudaFree(d) == cudaSuccess);
    CHECK(cudaFree(d) == cudaErrorInvalidValue); /* twice */
    (void)cudaGetLastError();
    /* events */
    cudaEvent_t a, b, c;
    CHECK(cudaEventCreate(&a) == cudaSuccess && cudaEventCreate(&b) == cudaSuccess);
    CHECK(cudaEventCreateWithFlags(&c, cudaEventDisableTiming) == cudaSuccess);
    CHECK(cudaEventRecord(a, 0) == cudaSuccess && cudaEventRecord(b, 0) == cudaSuccess &&
          cudaEventRecord(c, 0) == cudaSuccess);
    float ms = -1.0f;
    CHECK(cudaEventElapsedTime(&ms, a, b) == cudaSuccess && ms >= 0.0f);
    CHECK(cudaEventElapsedTime(&ms, a, c) == cudaErrorInvalidResourceHandle);
    (void)cudaGetLastError();
    cudaEventDestroy(a), cudaEventDestroy(b), cudaEventDestroy(c);
    return true;
}

/* cublasSgemm against a direct column-major sum, every transpose pair. */
static bool t_sgemm()
{
    cublasHandle_t hd;
    CHECK(cublasCreate(&hd) == CUBLAS_STATUS_SUCCESS);
    const int m = 5, n = 3, k = 4, ld = 7;
    std::vector<float> A(ld * 7), B(ld * 7), C(ld * n);
    for (size_t i = 0; i < A.size(); i++)
        A[i] = (float)((int)(i * 5 % 11) - 5);
    for (size_t i = 0; i < B.size(); i++)
        B[i] = (float)((int)(i * 3 % 7) - 3);
    float *dA = dev<float>(A.size()), *dB = dev<float>(B.size()), *dC = dev<float>(C.size());
    cudaMemcpy(dA, A.data(), A.size() * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), B.size() * 4, cudaMemcpyHostToDevice);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            for (size_t i = 0; i < C.size(); i++)
                C[i] = (float)(i % 5);
            cudaMemcpy(dC, C.data(), C.size() * 4, cudaMemcpyHostToDevice);
            const float alpha = 2.0f, beta = -1.0f;
            CHECK(cublasSgemm(hd, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m,
                              n, k, &alpha, dA, ld, dB, ld, &beta, dC,
                              ld) == CUBLAS_STATUS_SUCCESS);
            std::vector<float> R(C.size());
            cudaMemcpy(R.data(), dC, R.size() * 4, cudaMemcpyDeviceToHost);
            for (int j = 0; j < n; j++)
                for (int i = 0; i < ld; i++) {
                    if (i >= m) {
                        CHECK(R[j * ld + i] == C[j * ld + i]); /* padding untouched */
                        continue;
                    }
                    float s = 0.0f;
                    for (int l = 0; l < k; l++)
                        s += (ta ? A[i * ld + l] : A[l * ld + i]) *
                             (tb ? B[l * ld + j] : B[j * ld + l]);
                    CHECK(R[j * ld + i] == alpha * s + beta * C[j * ld + i]); /* integers: exact */
                }
        }
    const float one = 1.0f;
    CHECK(cublasSgemm(hd, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, dA, m - 1, dB, ld, &one, dC,
                      ld) == CUBLAS_STATUS_INVALID_VALUE); /* lda < m */
    cublasDestroy(hd);
    cudaFree(dA), cudaFree(dB), cudaFree(dC);
    return true;
}

/* The racy kernel's result under each order: the orders must disagree. */
static bool t_order()
{
    int last[2];
    const char *envs[2] = {"CUDAEMU_ORDER=forward", "CUDAEMU_ORDER=reverse"};
    for (int o = 0; o < 2; o++) {
        std::string out;
        int st = in_child("race", &out, envs[o]);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        last[o] = atoi(out.c_str());
    }
    CHECK(last[0] == 63 && last[1] == 0);
    return true;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--child")) {
        for (auto &c : g_children)
            if (!strcmp(c.name, argv[2])) {
                c.fn();
                return 0;
            }
        fprintf(stderr, "selftest: no child case %s\n", argv[2]);
        return 2;
    }
    static const struct {
        const char *name;
        bool (*fn)();
    } good[] = {
        {"3-D grid and block indexing: every thread once", t_indexing},
        {"block tree sum over __shared__ with __syncthreads", t_block_sum},
        {"warp shuffles: xor butterfly, broadcast, up-scan, down", t_warp},
        {"new device and shared memory read as 0xFF", t_garbage},
        {"launch, copy and free errors as a GPU returns them", t_errors},
        {"cublasSgemm column-major, all transposes, lda checked", t_sgemm},
        {"a race gives different results in forward and reverse order", t_order},
    };
    static const struct {
        const char *name, *child, *expect, *env;
    } bugs[] = {
        {"host pointer to a kernel", "host_ptr", "argument 0 is", nullptr},
        {"freed device pointer to a kernel", "freed_ptr", "freed cudaMalloc block", nullptr},
        {"misaligned pointer to a kernel", "misaligned", "not aligned", nullptr},
        {"threads returning while others wait at __syncthreads", "diverge",
         "returned without reaching it", nullptr},
        {"one barrier reached from two __syncthreads", "two_barriers", "from different places",
         nullptr},
        {"a shuffle naming a lane that returned", "shfl_exited", "returned, but lanes wait", nullptr},
        {"half a warp at a shuffle, half at __syncthreads", "deadlock", "deadlock", nullptr},
        /* forward: block 0 (no barrier) first, so block 1 runs as plain calls */
        {"a barrier only later blocks reach", "late_barrier",
         "reached in a block run as plain calls", "CUDAEMU_ORDER=forward"},
        {"dynamic shared memory", "dyn_shared", "dynamic shared memory", nullptr},
        {"a kernel changing the rounding mode", "round_up", "floating-point control state",
         nullptr},
        {"overlapping device-to-device copy", "overlap", "overlap", nullptr},
        {"cublasSgemm on host memory", "sgemm_host", "is not device memory", nullptr},
        {"cublasSgemm past the end of C", "sgemm_past_end", "past its end", nullptr},
#if defined(__SANITIZE_ADDRESS__)
        {"a kernel writing past its allocation (AddressSanitizer)", "oob", "heap-buffer-overflow",
         nullptr},
#endif
    };
    printf("1..%d\n", (int)(sizeof good / sizeof good[0] + sizeof bugs / sizeof bugs[0]));
    for (auto &g : good)
        tap(g.fn(), g.name);
    for (auto &b : bugs)
        bug(b.name, b.child, b.expect, b.env);
    return g_failed ? 1 : 0;
}
