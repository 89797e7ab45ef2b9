/*
 * cudaemu.h: the kernel side of cudaemu, a host emulator of the CUDA runtime
 * and cuBLAS for tests. The CUDA backend's own sources (the .cu files of
 * core/) are compiled by g++ as C++17 against these shims (cuda_runtime.h,
 * cublas_v2.h, this file) and linked with cudaemu.cc, so test_cuda's
 * GPU-vs-CPU parity tests run on a machine with no GPU and no nvcc. It is
 * test infrastructure: it exists to find kernel bugs before a GPU is at hand.
 *
 * How a launch runs: blocks one after another; inside a block every CUDA
 * thread is a coroutine on its own stack, so __syncthreads (the block's
 * barrier) and the __shfl_*_sync (a barrier of the 32 lanes of a warp) let
 * the other threads run up to the same point, as on a GPU. When the first
 * block a launch runs reaches no barrier, the remaining blocks' threads are
 * plain calls (element-wise kernels cost one call per thread).
 *
 * What it checks, each failure printing what and where:
 *  - the launch configuration (grid, block sizes and limits) and the stream,
 *    as cudaErrorInvalidConfiguration / InvalidResourceHandle through
 *    cudaGetLastError, as a GPU reports them;
 *  - every pointer argument of a kernel: NULL or inside a live cudaMalloc
 *    block, aligned for its type (a host pointer given to a kernel is the
 *    classic bug);
 *  - copies and memsets: the kind matches where the pointers live, the bytes
 *    lie inside the allocation, device ranges do not overlap; cudaFree of
 *    what cudaMalloc did not return; cuBLAS operands in device memory and
 *    inside their allocations; a GEMM's leading dimensions;
 *  - barriers: every live thread of the block at the same __syncthreads
 *    (a thread that returned while others wait is reported, not ignored), the
 *    lanes of a shuffle all at the same shuffle with the same mask, no lane
 *    named in the mask exited; a deadlock is reported with who waits where;
 *  - memory nobody initialised: new device allocations and each block's
 *    __shared__ arrays are filled with 0xFF bytes (NaN as floats), as a GPU
 *    gives garbage; device memory is malloc'd, so AddressSanitizer sees
 *    out-of-bounds accesses by kernels;
 *  - order dependence: CUDAEMU_ORDER=forward|reverse|shuffle (default
 *    shuffle, seeded by CUDAEMU_SEED) sets the order blocks run in and the
 *    order of threads within a block (shuffle: a random order per block,
 *    entered at a random thread after each __syncthreads; lanes released by
 *    a shuffle reshuffled); a result that changes with it is a race;
 *  - a kernel thread that leaves the floating-point control state (rounding
 *    mode, exception masks) changed.
 *
 * Other settings: CUDAEMU_FAST=0 runs every block as coroutines (see above),
 * CUDAEMU_STATS=1 prints launch and switch counts at exit, CUDAEMU_DEVICES=0
 * makes cudaGetDeviceCount find no device.
 *
 * What it cannot check: real concurrency (threads between two barriers run
 * one after another, so a race shows only as an order dependence), memory
 * coalescing and bank conflicts, the GPU's math library (expf, erff, tanhf
 * here are glibc's, with different last bits than libdevice), FMA
 * contraction (the host compiles with -ffp-contract=off), TF32 (cuBLAS's TF32
 * mode computes in float32 here), __launch_bounds__ and register or shared
 * memory limits, asynchrony (kernels, copies and GEMMs run when called), and
 * timing. __CUDA_ARCH__ is not defined: host and device code are one
 * compilation here, so a kernel's #ifdef __CUDA_ARCH__ branch is not the one
 * tested.
 */
#ifndef CUDAEMU_H
#define CUDAEMU_H

#if !defined(__cplusplus) || __cplusplus < 201703L
#error "cudaemu compiles CUDA sources as C++17"
#endif
#if !defined(__x86_64__)
#error "cudaemu switches CUDA threads' stacks in x86-64 assembly: it runs on x86-64 only"
#endif

/* The C headers a real cuda_runtime.h brings in: included here, outside any
 * extern "C", so that cuda_common.cuh's extern "C" includes of project
 * headers (which include them again) find them already done. */
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

typedef struct CUstream_st *cudaStream_t;

/* ---- types ---------------------------------------------------------------- */

struct uint3 {
    unsigned x, y, z;
};

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

/* 16-byte aligned as CUDA's: the backend's vector loads rely on it. */
struct __attribute__((aligned(16))) float4 {
    float x, y, z, w;
};

static inline float4 make_float4(float x, float y, float z, float w)
{
    float4 v = {x, y, z, w};
    return v;
}

/* ---- qualifiers ----------------------------------------------------------- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
/* Static storage in one section, so the scheduler can fill every
 * __shared__ array with garbage before each block (see cudaemu.cc). */
#define __shared__ static __attribute__((section("cudaemu_shared"), aligned(16)))

/* ---- built-in variables: set by the scheduler before a thread runs -------- */

/* Not const: they change across every barrier call (an opaque function), so
 * the compiler must reload them after one. */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
static constexpr int warpSize = 32;

/* ---- barriers and warp exchange (cudaemu.cc) ------------------------------ */

/* The caller's file and line name the barrier in reports (default arguments
 * are evaluated where the call is). */
void __syncthreads(const char *file = __builtin_FILE(), int line = __builtin_LINE());
void __syncwarp(unsigned mask = 0xffffffffu, const char *file = __builtin_FILE(),
                int line = __builtin_LINE());

namespace cudaemu {
enum shfl_mode { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR };
/* The value (as bits) of the source lane, after every lane of `mask` has
 * arrived at the same shuffle. */
uint64_t shfl(unsigned mask, uint64_t bits, int arg, int width, shfl_mode mode, const char *file,
              int line);

template <class T>
inline T shfl_t(unsigned mask, T v, int arg, int width, shfl_mode mode, const char *file, int line)
{
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                  "shuffles move values of at most 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    b = shfl(mask, b, arg, width, mode, file, line);
    T r;
    memcpy(&r, &b, sizeof r);
    return r;
}
} // namespace cudaemu

template <class T> inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
                                        const char *file = __builtin_FILE(),
                                        int line = __builtin_LINE())
{
    return cudaemu::shfl_t(mask, var, src_lane, width, cudaemu::SHFL_IDX, file, line);
}

template <class T> inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                                           const char *file = __builtin_FILE(),
                                           int line = __builtin_LINE())
{
    return cudaemu::shfl_t(mask, var, (int)delta, width, cudaemu::SHFL_UP, file, line);
}

template <class T> inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                                             const char *file = __builtin_FILE(),
                                             int line = __builtin_LINE())
{
    return cudaemu::shfl_t(mask, var, (int)delta, width, cudaemu::SHFL_DOWN, file, line);
}

template <class T> inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                                            const char *file = __builtin_FILE(),
                                            int line = __builtin_LINE())
{
    return cudaemu::shfl_t(mask, var, lane_mask, width, cudaemu::SHFL_XOR, file, line);
}

/* ---- intrinsics ------------------------------------------------------------ */

/* One IEEE operation, rounded to nearest: what the host does for a * b as
 * long as nothing contracts it (the build passes -ffp-contract=off). */
static inline float __fmul_rn(float a, float b)
{
    return a * b;
}
static inline float __fadd_rn(float a, float b)
{
    return a + b;
}
static inline float __fsub_rn(float a, float b)
{
    return a - b;
}
static inline float __fdiv_rn(float a, float b)
{
    return a / b;
}
static inline float __fsqrt_rn(float a)
{
    return sqrtf(a);
}
static inline double __dmul_rn(double a, double b)
{
    return a * b;
}
static inline double __dadd_rn(double a, double b)
{
    return a + b;
}
static inline unsigned __umulhi(unsigned a, unsigned b)
{
    return (unsigned)(((unsigned long long)a * b) >> 32);
}

/* CUDA's min/max overloads for device code. */
#define CUDAEMU_MINMAX_(T)                                                                         \
    static inline T min(T a, T b)                                                                  \
    {                                                                                              \
        return b < a ? b : a;                                                                      \
    }                                                                                              \
    static inline T max(T a, T b)                                                                  \
    {                                                                                              \
        return a < b ? b : a;                                                                      \
    }
CUDAEMU_MINMAX_(int)
CUDAEMU_MINMAX_(unsigned)
CUDAEMU_MINMAX_(long)
CUDAEMU_MINMAX_(unsigned long)
CUDAEMU_MINMAX_(long long)
CUDAEMU_MINMAX_(unsigned long long)
#undef CUDAEMU_MINMAX_
static inline float min(float a, float b)
{
    return fminf(a, b);
}
static inline float max(float a, float b)
{
    return fmaxf(a, b);
}
static inline double min(double a, double b)
{
    return fmin(a, b);
}
static inline double max(double a, double b)
{
    return fmax(a, b);
}

/* ---- kernel launches ------------------------------------------------------- */

namespace cudaemu {

struct site {
    const char *kernel, *file;
    int line;
};

/* A pointer argument of a launch: its position, value and the alignment of
 * what it points to. */
struct ptr_arg {
    int index;
    const void *p;
    size_t align;
};

/* How the scheduler runs a launch's threads: thread(args) runs one (the
 * index in threadIdx), block(args, order, n, tid) runs n threads one after
 * another as plain calls, thread order[k] with index tid[order[k]]. */
struct kernel_call {
    void (*thread)(void *args);
    void (*block)(void *args, const int *order, unsigned n, const uint3 *tid);
    void *args;
};

/* Checks the launch (configuration, stream, pointer arguments), then runs
 * grid x block threads. Errors of configuration go to cudaGetLastError, as
 * on a GPU; the rest end the process. */
void launch(const site &where, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
            const kernel_call &call, const ptr_arg *ptrs, int n_ptrs);

template <class T> constexpr size_t pointee_align()
{
    using U = std::remove_cv_t<std::remove_pointer_t<T>>;
    if constexpr (std::is_void<U>::value || std::is_function<U>::value)
        return 1;
    else
        return alignof(U);
}

/* The kernel is a template argument, not a run-time pointer, so that
 * run_block's loop inlines it (flatten): an element-wise kernel is one
 * thread per element, and a call through a pointer per thread, its
 * arguments copied, was a third of the time of the im2col-heavy tests. */
template <auto K, class F = decltype(K)> struct launcher;
template <auto K, class... P> struct launcher<K, void (*)(P...)> {
    site where;
    dim3 grid, block;
    size_t shmem;
    cudaStream_t stream;

    using args_t = std::tuple<P...>;
    launcher(site w, dim3 g, dim3 b, size_t sh, cudaStream_t st)
        : where(w), grid(g), block(b), shmem(sh), stream(st)
    {
    }

    /* by value: each thread its own copies of the arguments */
    static void run_thread(void *a) { std::apply(K, *static_cast<const args_t *>(a)); }
    __attribute__((flatten)) static void run_block(void *a, const int *order, unsigned n,
                                                   const uint3 *tid)
    {
        const args_t &args = *static_cast<const args_t *>(a);
        for (unsigned k = 0; k < n; k++) {
            threadIdx = tid[order[k]];
            std::apply(K, args);
        }
    }

    /* The arguments converted to the kernel's parameter types, as
     * kernel<<<...>>>(args) converts them. */
    template <class... A> void operator()(A &&...a) const
    {
        static_assert(sizeof...(A) == sizeof...(P),
                      "kernel launched with the wrong argument count");
        args_t args(std::forward<A>(a)...);
        ptr_arg ptrs[sizeof...(P) + 1];
        int np = 0, i = 0;
        std::apply(
            [&](const auto &...v) {
                (
                    [&](const auto &x) {
                        using T = std::decay_t<decltype(x)>;
                        if constexpr (std::is_pointer<T>::value)
                            ptrs[np++] = ptr_arg{i, (const void *)x, pointee_align<T>()};
                        i++;
                    }(v),
                    ...);
            },
            args);
        const kernel_call call = {&launcher::run_thread, &launcher::run_block, &args};
        launch(where, grid, block, shmem, stream, call, ptrs, np);
    }
};

} // namespace cudaemu

/* kernel<<<grid, block, shmem, stream>>>(args), on the host. */
#define DS_CUDA_LAUNCH(kernel, grid, block, shmem, stream)                                         \
    ::cudaemu::launcher<&kernel>(::cudaemu::site{#kernel, __FILE__, __LINE__}, (grid), (block),   \
                                 (shmem), (stream))

#endif
