/*
 * cudaemu.cc: the host side of cudaemu (cudaemu.h says what it is for and
 * what it checks): the CUDA runtime calls the backend makes, cuBLAS's SGEMM
 * on OpenBLAS, and the scheduler that runs a launch's CUDA threads as
 * coroutines.
 *
 * Everything runs when it is called, on the calling host thread: a stream's
 * order holds trivially, an event records the host clock.
 *
 * Coroutines switch with a few instructions of x86-64 assembly (the
 * callee-saved registers, the stack pointer, MXCSR and the x87 control word)
 * rather than swapcontext, which makes a sigprocmask system call per switch:
 * a reduction launch is 256 blocks of 256 threads passing about 10 barriers
 * each. Under AddressSanitizer every switch is announced to it
 * (__sanitizer_{start,finish}_switch_fiber), so it knows which stack is live.
 */
#include "cublas_v2.h"
#include "cuda_runtime.h"

#include <cblas.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <map>
#include <set>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define CUDAEMU_ASAN 1
#else
#define CUDAEMU_ASAN 0
#endif

/* The scheduler's per-switch code, not instrumented by the sanitizers: it
 * is not what the sanitizer build tests, and the instrumentation cost a
 * quarter of the sanitized run (cache misses on each stack's shadow, and
 * vector accesses no longer inlined). */
#define CUDAEMU_NO_SANITIZE __attribute__((no_sanitize("address", "undefined")))

/* The built-in variables (cudaemu.h). */
uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

/* Every __shared__ array (cudaemu.h puts them in this section); weak, so a
 * program without any still links. */
extern "C" char __start_cudaemu_shared[] __attribute__((weak));
extern "C" char __stop_cudaemu_shared[] __attribute__((weak));

/* ---- the context switch ----------------------------------------------------
 * cudaemu_switch_(save, to): pushes the callee-saved registers on the
 * current stack, stores the stack pointer in *save, and resumes the stack
 * `to` was saved from (or prepared by fiber_stack_init).
 * cudaemu_fiber_start_ is where a new stack first returns to: it calls
 * cudaemu_fiber_main_(r12) and ends the unwinder's walk.
 *
 * MXCSR and the x87 control word, callee-saved too, are not switched: saving
 * and loading them took 40% of each switch, and a CUDA kernel cannot change
 * them. Instead the scheduler checks after every round and block that no
 * thread left them changed (fp_env_check), which says more than silently
 * keeping each thread's own. */
extern "C" void cudaemu_switch_(void **save, void *to);
extern "C" void cudaemu_fiber_start_(void);
asm(R"(
    .text
    .p2align 4
    .globl cudaemu_switch_
    .hidden cudaemu_switch_
    .type cudaemu_switch_, @function
cudaemu_switch_:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cudaemu_switch_, .-cudaemu_switch_

    .p2align 4
    .globl cudaemu_fiber_start_
    .hidden cudaemu_fiber_start_
    .type cudaemu_fiber_start_, @function
cudaemu_fiber_start_:
    .cfi_startproc
    .cfi_undefined rip
    xorl %ebp, %ebp
    movq %r12, %rdi
    call cudaemu_fiber_main_
    ud2
    .cfi_endproc
    .size cudaemu_fiber_start_, .-cudaemu_fiber_start_
)");

namespace {

/* ---- settings and diagnostics -------------------------------------------- */

enum order_kind { ORDER_FORWARD, ORDER_REVERSE, ORDER_SHUFFLE };

struct settings {
    bool loaded;
    order_kind order;
    unsigned long long seed;
    bool fast;   /* CUDAEMU_FAST=0: every block as coroutines */
    int devices; /* CUDAEMU_DEVICES=0: no device, to test that path */
};
settings g_set;
uint64_t g_rng;

/* CUDAEMU_STATS=1: what the emulator did, printed at exit (for tuning). */
struct stats {
    unsigned long long launches, co_launches, co_blocks, plain_blocks, resumes, threads;
};
stats g_stats;
void stats_print()
{
    fprintf(stderr,
            "cudaemu: %llu launches (%llu with barriers), %llu blocks as coroutines, %llu "
            "as plain calls, %llu threads, %llu coroutine resumes\n",
            g_stats.launches, g_stats.co_launches, g_stats.co_blocks, g_stats.plain_blocks,
            g_stats.threads, g_stats.resumes);
}

const char *order_name(order_kind o)
{
    return o == ORDER_FORWARD ? "forward" : o == ORDER_REVERSE ? "reverse" : "shuffle";
}

[[noreturn]] void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const settings &cfg()
{
    if (g_set.loaded) return g_set;
    g_set.loaded = true;
    g_set.order = ORDER_SHUFFLE;
    g_set.seed = 20240917;
    g_set.fast = true;
    g_set.devices = 1;
    const char *o = getenv("CUDAEMU_ORDER");
    if (o && *o) {
        if (!strcmp(o, "forward"))
            g_set.order = ORDER_FORWARD;
        else if (!strcmp(o, "reverse"))
            g_set.order = ORDER_REVERSE;
        else if (!strcmp(o, "shuffle"))
            g_set.order = ORDER_SHUFFLE;
        else
            die("CUDAEMU_ORDER=%s: valid: forward, reverse, shuffle", o);
    }
    const char *s = getenv("CUDAEMU_SEED");
    if (s && *s) {
        char *end;
        g_set.seed = strtoull(s, &end, 0);
        if (*end) die("CUDAEMU_SEED=%s: not an integer", s);
    }
    const char *f = getenv("CUDAEMU_FAST");
    if (f && *f) g_set.fast = strcmp(f, "0") != 0;
    const char *d = getenv("CUDAEMU_DEVICES");
    if (d && *d) g_set.devices = strcmp(d, "0") != 0;
    const char *st = getenv("CUDAEMU_STATS");
    if (st && *st && strcmp(st, "0") != 0) atexit(stats_print);
    g_rng = g_set.seed;
    return g_set;
}

/* splitmix64: the shuffles' randomness, reproducible from CUDAEMU_SEED. */
uint64_t rng_next()
{
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, n), n < 2^32 (Lemire's multiply-shift: no division). */
uint32_t rng_below(uint32_t n)
{
    return (uint32_t)(((rng_next() & 0xffffffffu) * n) >> 32);
}

/* v (ascending) into the configured order. */
template <class T> void arrange(std::vector<T> &v)
{
    switch (cfg().order) {
    case ORDER_FORWARD: break;
    case ORDER_REVERSE: std::reverse(v.begin(), v.end()); break;
    case ORDER_SHUFFLE:
        for (size_t i = v.size(); i > 1; i--)
            std::swap(v[i - 1], v[rng_below((uint32_t)i)]);
        break;
    }
}

/* ---- the launch in progress ------------------------------------------------ */

struct launch_state {
    const cudaemu::site *where;
    dim3 grid, block;
    const cudaemu::kernel_call *call;
    unsigned nthreads;
    bool coroutines;   /* the current block runs as coroutines */
    bool used_barrier; /* ... and one of its threads reached a barrier or shuffle */
    const uint3 *tid;  /* thread index of each linear thread id */
};
launch_state *g_launch;
int g_cur = -1; /* the linear id of the running thread */

[[noreturn]] void die(const char *fmt, ...)
{
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("cudaemu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_launch) {
        const launch_state &L = *g_launch;
        fprintf(stderr,
                "cudaemu:   in kernel %s launched at %s:%d with grid (%u, %u, %u) x block (%u, %u, "
                "%u); at block (%u, %u, %u)",
                L.where->kernel, L.where->file, L.where->line, L.grid.x, L.grid.y, L.grid.z,
                L.block.x, L.block.y, L.block.z, blockIdx.x, blockIdx.y, blockIdx.z);
        if (g_cur >= 0 || !L.coroutines)
            fprintf(stderr, ", thread (%u, %u, %u)", threadIdx.x, threadIdx.y, threadIdx.z);
        fputc('\n', stderr);
    }
    fprintf(stderr, "cudaemu:   (CUDAEMU_ORDER=%s CUDAEMU_SEED=%llu CUDAEMU_FAST=%d)\n",
            order_name(g_set.order), g_set.seed, g_set.fast ? 1 : 0);
    abort();
}

/* The emulator's state is one host thread's, as is each kernel's. */
void host_only(const char *call)
{
    static pthread_t owner;
    static bool owned;
    if (g_launch) die("%s called from inside a kernel", call);
    if (!owned)
        owner = pthread_self(), owned = true;
    else if (!pthread_equal(owner, pthread_self()))
        die("%s called from a second host thread: cudaemu serves one host thread only", call);
    cfg();
}

/* ---- errors ----------------------------------------------------------------- */

cudaError_t g_last = cudaSuccess;

/* Every failing runtime call leaves its error for cudaGetLastError, as CUDA. */
cudaError_t ret(cudaError_t e)
{
    if (e != cudaSuccess) g_last = e;
    return e;
}

/* A misuse a GPU reports as an error code: said here (the GPU only gives the
 * code), then returned for the caller's check to name the call site. */
cudaError_t misuse(cudaError_t e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
cudaError_t misuse(cudaError_t e, const char *fmt, ...)
{
    fflush(stdout);
    va_list ap;
    va_start(ap, fmt);
    fputs("cudaemu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return ret(e);
}

/* ---- memory -------------------------------------------------------------- */

enum mem_kind { MEM_DEVICE, MEM_PINNED };
struct mem_block {
    size_t size;
    mem_kind kind;
};
/* Blocks by base address, the key's top bit set (x86-64 user addresses
 * have it clear, and the order is kept): LeakSanitizer then does not take
 * the registry for a reference, so device memory the program lost without
 * cudaFree is reported as a leak, as host memory is. */
std::map<uintptr_t, mem_block> g_mem;
constexpr uintptr_t HIDE = (uintptr_t)1 << 63;
inline uintptr_t key_of(const void *p) { return (uintptr_t)p ^ HIDE; }
inline uintptr_t base_of(const std::pair<const uintptr_t, mem_block> *b) { return b->first ^ HIDE; }
size_t g_device_bytes;
const size_t g_total_mem = (size_t)16 << 30; /* the emulated device's size */

/* The block holding p (or ending at p, with at_end), or NULL. */
const std::pair<const uintptr_t, mem_block> *block_of(const void *p, bool at_end = false)
{
    const uintptr_t a = key_of(p);
    auto it = g_mem.upper_bound(a);
    if (it == g_mem.begin()) return nullptr;
    --it;
    if (a < it->first + it->second.size || (at_end && a == it->first + it->second.size))
        return &*it;
    return nullptr;
}

/* What p is, for messages. */
const char *what_is(const void *p, char *buf, size_t len)
{
    const auto *b = block_of(p);
    if (!p)
        snprintf(buf, len, "NULL");
    else if (b && b->second.kind == MEM_DEVICE)
        snprintf(buf, len, "device memory, byte %zu of a %zu-byte cudaMalloc block",
                 (size_t)((uintptr_t)p - base_of(b)), b->second.size);
    else if (b)
        snprintf(buf, len, "pinned host memory (byte %zu of a %zu-byte cudaMallocHost block)",
                 (size_t)((uintptr_t)p - base_of(b)), b->second.size);
    else
        snprintf(buf, len, "not device memory (host memory, or a freed cudaMalloc block)");
    return buf;
}

/* Whether [p, p + n) lies in one device block; if not, why in *why. */
bool device_range(const void *p, size_t n, char *why, size_t len)
{
    const auto *b = block_of(p);
    if (!b || b->second.kind != MEM_DEVICE) {
        char w[160];
        snprintf(why, len, "%p is %s", p, what_is(p, w, sizeof w));
        return false;
    }
    size_t off = (uintptr_t)p - base_of(b);
    if (n > b->second.size - off) {
        snprintf(
            why, len,
            "%zu bytes from byte %zu of a %zu-byte cudaMalloc block run %zu bytes past its end", n,
            off, b->second.size, n - (b->second.size - off));
        return false;
    }
    return true;
}

bool is_device(const void *p)
{
    const auto *b = block_of(p);
    return b && b->second.kind == MEM_DEVICE;
}

/* ---- streams and events ---------------------------------------------------- */

} // namespace

struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    bool recorded;
    std::chrono::steady_clock::time_point at;
};
struct cublasContext {
    cudaStream_t stream;
    cublasMath_t math;
};

namespace {

std::set<cudaStream_t> g_streams;
std::set<cudaEvent_t> g_events;
std::set<cublasHandle_t> g_handles;

/* 0 is the legacy default stream; 1 and 2 are cudaStreamLegacy and
 * cudaStreamPerThread. */
bool stream_ok(cudaStream_t s)
{
    return (uintptr_t)s <= 2 || g_streams.count(s);
}

/* ---- coroutines ------------------------------------------------------------ */

/* Stack of one CUDA thread: kernels need little; AddressSanitizer's
 * redzones need more. */
constexpr size_t STACK_BYTES = CUDAEMU_ASAN ? (size_t)256 << 10 : (size_t)64 << 10;

struct stack {
    void *sp;       /* saved stack pointer while suspended */
    const void *lo; /* the stack's lowest usable byte (for AddressSanitizer) */
    size_t size;
};
/* Fiber i runs thread i of each block; g_sched is the host thread's own
 * stack, where the scheduler runs. */
std::vector<stack> g_fibers;
stack g_sched;

enum tstate : uint8_t { T_RUN, T_WAIT_BLOCK, T_WAIT_WARP, T_DONE };
struct tinfo {
    tstate state;
    bool shfl; /* at a shuffle (else __syncwarp) when T_WAIT_WARP */
    cudaemu::shfl_mode mode;
    const char *file; /* where it waits */
    int line;
    unsigned mask;
    int arg, width;
    uint64_t val, result;
};
std::vector<tinfo> g_t;

/* The block in progress: the threads to run this round (q[qpos] next)
 * and how many threads wait where. */
struct block_state {
    std::vector<int> q;
    size_t qpos;
    std::vector<int> order; /* all threads in the block's order */
    unsigned done, at_block, at_warp;
    std::vector<uint8_t> warp_waiting; /* per warp */
};
block_state g_blk;

/* A new coroutine's stack, as cudaemu_switch_ leaves one: r15, r14, r13,
 * r12 (its fiber index), rbx, rbp, then the return address
 * cudaemu_fiber_start_, placed so that the stack is 16-byte aligned at its
 * call. Stacks start (index mod 64) cache lines below their top: at the
 * same offset in their pages, every thread's hot frames would share one L1
 * cache set, and each switch missed the cache (a third of the run time). */
void *fiber_stack_init(const void *lo, size_t index)
{
    uintptr_t top = ((uintptr_t)lo + STACK_BYTES - index % 64 * 64) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)(top - 72);
    memset(sp, 0, 72);
    sp[3] = index;                           /* r12 */
    sp[6] = (uint64_t)&cudaemu_fiber_start_; /* return address */
    return sp;
}

/* MXCSR's control bits and the x87 control word (see the switch). */
uint64_t fp_env()
{
    uint32_t mxcsr;
    uint16_t fcw;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fcw));
    return (uint64_t)(mxcsr & ~0x3fu) << 16 | fcw; /* MXCSR's low 6 bits: exception flags */
}
uint64_t g_fp_env;

void fp_env_check()
{
    const uint64_t e = fp_env();
    if (e != g_fp_env)
        die("a kernel thread changed the floating-point control state (MXCSR %#x, x87 control "
            "word %#x; at the launch %#x, %#x): rounding mode or exception masks, which CUDA code "
            "cannot change",
            (unsigned)(e >> 16), (unsigned)(e & 0xffff), (unsigned)(g_fp_env >> 16),
            (unsigned)(g_fp_env & 0xffff));
}

void fibers_ensure(size_t n)
{
    static size_t page;
    if (!page) {
        page = (size_t)sysconf(_SC_PAGESIZE);
        /* the host thread's stack, for AddressSanitizer's switch notes */
        pthread_attr_t a;
        void *lo = nullptr;
        size_t size = 0;
        if (pthread_getattr_np(pthread_self(), &a) == 0) {
            pthread_attr_getstack(&a, &lo, &size);
            pthread_attr_destroy(&a);
        }
        g_sched.lo = lo;
        g_sched.size = size;
    }
    while (g_fibers.size() < n) {
        char *m = (char *)mmap(nullptr, STACK_BYTES + page, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) die("mmap of a %zu-byte thread stack failed", STACK_BYTES + page);
        /* a guard page below: an overflowing thread faults instead of
         * writing into its neighbour's stack */
        if (mprotect(m, page, PROT_NONE) != 0) die("mprotect of a stack guard page failed");
        stack f;
        f.lo = m + page;
        f.size = STACK_BYTES;
        f.sp = fiber_stack_init(f.lo, g_fibers.size());
        g_fibers.push_back(f);
    }
    if (g_t.size() < n) g_t.resize(n);
    if (g_blk.warp_waiting.size() < (n + 31) / 32) g_blk.warp_waiting.resize((n + 31) / 32);
}

/* From the stack saved in *from to `to`; back here when something switches
 * to *from again. */
CUDAEMU_NO_SANITIZE inline void switch_stack(stack *from, const stack &to)
{
#if CUDAEMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(&fake, to.lo, to.size);
    cudaemu_switch_(&from->sp, to.sp);
    __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
    cudaemu_switch_(&from->sp, to.sp);
#endif
}

/* The running CUDA thread has reached a barrier or returned: the next
 * thread of this round runs (a direct switch, one per resume), or, the
 * round over, the scheduler. Returns when this thread is resumed. */
CUDAEMU_NO_SANITIZE void yield_thread()
{
    const int me = g_cur;
    block_state &B = g_blk;
    if (B.qpos < B.q.size()) {
        const int next = B.q[B.qpos++];
        g_stats.resumes++;
        switch_stack(&g_fibers[me], g_fibers[next]);
    } else {
        switch_stack(&g_fibers[me], g_sched);
    }
    g_cur = me;
    threadIdx = g_launch->tid[me];
}

/* Runs the round g_blk.q: each thread until it waits or returns. */
CUDAEMU_NO_SANITIZE void run_round()
{
    block_state &B = g_blk;
    if (B.q.empty()) return;
    B.qpos = 1;
    g_stats.resumes++;
    switch_stack(&g_sched, g_fibers[B.q[0]]);
    g_cur = -1;
}

} // namespace

/* A coroutine's life: runs thread `index` of a block each time it is
 * resumed after the previous one returned (stacks serve launch after
 * launch). */
extern "C" __attribute__((visibility("hidden"), used, noreturn)) CUDAEMU_NO_SANITIZE void
cudaemu_fiber_main_(uintptr_t index)
{
#if CUDAEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    const int me = (int)index;
    for (;;) {
        g_cur = me;
        threadIdx = g_launch->tid[me];
        g_launch->call->thread(g_launch->call->args);
        g_t[me].state = T_DONE;
        g_blk.done++;
        yield_thread();
    }
}

namespace {

const char *wait_desc(const tinfo &t, char *buf, size_t len)
{
    static const char *const shfl_names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                                             "__shfl_xor_sync"};
    switch (t.state) {
    case T_RUN: snprintf(buf, len, "running"); break;
    case T_DONE: snprintf(buf, len, "returned"); break;
    case T_WAIT_BLOCK: snprintf(buf, len, "at __syncthreads %s:%d", t.file, t.line); break;
    case T_WAIT_WARP:
        snprintf(buf, len, "at %s %s:%d (mask 0x%08x)", t.shfl ? shfl_names[t.mode] : "__syncwarp",
                 t.file, t.line, t.mask);
        break;
    }
    return buf;
}

inline bool same_site(const tinfo &a, const tinfo &b)
{
    return a.line == b.line && (a.file == b.file || !strcmp(a.file, b.file));
}

[[noreturn]] void die_threads(const char *why, unsigned n)
{
    /* runs of threads in the same state, so a block of 1024 stays readable */
    std::string list;
    unsigned i = 0;
    while (i < n) {
        unsigned j = i + 1;
        char a[200], b[200], line[300];
        wait_desc(g_t[i], a, sizeof a);
        while (j < n && !strcmp(a, wait_desc(g_t[j], b, sizeof b)))
            j++;
        snprintf(line, sizeof line, "\ncudaemu:   threads %u..%u (warps %u..%u): %s", i, j - 1,
                 i / 32, (j - 1) / 32, a);
        list += line;
        i = j;
    }
    g_cur = -1;
    die("%s; the block's threads:%s", why, list.c_str());
}

/* Warp `base / 32` if every lane its mask names waits at the same shuffle or
 * __syncwarp: each lane's shuffle result computed, the lanes appended to q. */
void release_warp(unsigned base, unsigned n, std::vector<int> &q)
{
    char msg[400], d[200];
    const unsigned cnt = n - base < 32 ? n - base : 32;
    unsigned first = 0;
    while (g_t[base + first].state != T_WAIT_WARP)
        first++;
    const tinfo &f = g_t[base + first];
    const unsigned mask = f.mask, have = cnt == 32 ? ~0u : (1u << cnt) - 1;
    unsigned waiting = 0;
    if (mask & ~have) {
        snprintf(msg, sizeof msg,
                 "warp %u: lanes wait %s, whose mask names lanes the warp "
                 "lacks (it has %u)",
                 base / 32, wait_desc(f, d, sizeof d), cnt);
        die_threads(msg, n);
    }
    for (unsigned l = 0; l < cnt; l++) {
        const tinfo &t = g_t[base + l];
        if (t.state != T_WAIT_WARP) continue;
        waiting |= 1u << l;
        if (!same_site(t, f) || t.shfl != f.shfl || t.mask != f.mask || t.width != f.width) {
            snprintf(msg, sizeof msg,
                     "warp %u: lanes %u and %u wait at different warp barriers "
                     "(or with different masks or widths)",
                     base / 32, first, l);
            die_threads(msg, n);
        }
    }
    if (waiting & ~mask) {
        snprintf(msg, sizeof msg, "warp %u: lanes 0x%08x wait %s but are not in its mask",
                 base / 32, waiting & ~mask, wait_desc(f, d, sizeof d));
        die_threads(msg, n);
    }
    for (unsigned l = 0; l < cnt; l++)
        if ((mask >> l & 1) && g_t[base + l].state == T_DONE) {
            snprintf(msg, sizeof msg,
                     "warp %u: lane %u returned, but lanes wait %s, whose mask names it", base / 32,
                     l, wait_desc(f, d, sizeof d));
            die_threads(msg, n);
        }
    if (waiting != mask) return; /* lanes still to come (or deadlocked elsewhere) */
    const int w = f.width;
    if (f.shfl && (w < 1 || w > 32 || (w & (w - 1)))) {
        snprintf(msg, sizeof msg,
                 "warp %u: lanes wait %s with width %d (must be a power of two <= 32)", base / 32,
                 wait_desc(f, d, sizeof d), w);
        die_threads(msg, n);
    }
    for (unsigned l = 0; l < cnt; l++) {
        if (!(mask >> l & 1)) continue;
        tinfo &t = g_t[base + l];
        if (t.shfl) {
            /* CUDA's rules: a source outside the lane's width-segment (up,
             * down, xor towards a later segment) gives the lane its own value */
            const int lane = (int)l, seg = lane & ~(w - 1);
            int src = lane;
            switch (t.mode) {
            case cudaemu::SHFL_IDX: src = seg + (t.arg & (w - 1)); break;
            case cudaemu::SHFL_UP: src = lane - t.arg >= seg ? lane - t.arg : lane; break;
            case cudaemu::SHFL_DOWN: src = lane + t.arg < seg + w ? lane + t.arg : lane; break;
            case cudaemu::SHFL_XOR: src = (lane ^ t.arg) < seg + w ? lane ^ t.arg : lane; break;
            }
            if (src < 0 || src >= 32 || !(mask >> src & 1)) {
                snprintf(msg, sizeof msg,
                         "warp %u: lane %u, waiting %s, reads lane %d, which is "
                         "not in the mask (undefined on a GPU)",
                         base / 32, l, wait_desc(t, d, sizeof d), src);
                die_threads(msg, n);
            }
            t.result = g_t[base + src].val;
        }
        t.state = T_RUN;
        q.push_back((int)(base + l));
    }
    g_blk.at_warp -= __builtin_popcount(mask);
    g_blk.warp_waiting[base / 32] = 0;
}

/* One block as coroutines: a round runs every runnable thread (in the
 * configured order) until it waits or returns; then the warps and the block
 * barrier whose threads have all arrived are released into the next round,
 * until every thread has returned. */
void run_block_coroutines()
{
    const unsigned n = g_launch->nthreads;
    /* fresh shared memory holds garbage on a GPU */
    char *lo = __start_cudaemu_shared, *hi = __stop_cudaemu_shared;
    if (lo != hi) memset(lo, 0xff, (size_t)(hi - lo));
    block_state &B = g_blk;
    B.done = B.at_block = B.at_warp = 0;
    B.order.clear();
    for (unsigned i = 0; i < n; i++) {
        g_t[i].state = T_RUN;
        B.order.push_back((int)i);
    }
    arrange(B.order);
    B.q = B.order;
    char msg[400], d[200], d2[200];
    for (;;) {
        run_round();
        fp_env_check();
        B.q.clear();
        if (B.at_warp)
            for (unsigned w = 0; w * 32 < n; w++)
                if (B.warp_waiting[w]) release_warp(w * 32, n, B.q);
        if (!B.q.empty()) {
            arrange(B.q);
            continue;
        }
        if (B.done == n) return;
        if (B.at_block == n - B.done) {
            unsigned first = 0;
            while (g_t[first].state != T_WAIT_BLOCK)
                first++;
            if (B.done) {
                snprintf(msg, sizeof msg,
                         "%u threads wait at __syncthreads %s:%d but %u of the "
                         "block returned without reaching it (undefined on a GPU: a barrier must "
                         "be reached by all threads of the block or none)",
                         B.at_block, g_t[first].file, g_t[first].line, B.done);
                die_threads(msg, n);
            }
            for (unsigned i = 0; i < n; i++)
                if (!same_site(g_t[i], g_t[first])) {
                    snprintf(msg, sizeof msg,
                             "thread %u is %s but thread %u %s: one barrier "
                             "reached from different places",
                             first, wait_desc(g_t[first], d, sizeof d), i,
                             wait_desc(g_t[i], d2, sizeof d2));
                    die_threads(msg, n);
                }
            for (unsigned i = 0; i < n; i++)
                g_t[i].state = T_RUN;
            B.at_block = 0;
            /* the block's order, from a place that changes every round: a
             * shuffle of all threads per barrier costs more than the rest of
             * the scheduling */
            const unsigned r = cfg().order == ORDER_SHUFFLE ? rng_below(n) : 0;
            B.q.assign(B.order.begin() + r, B.order.end());
            B.q.insert(B.q.end(), B.order.begin(), B.order.begin() + r);
            continue;
        }
        die_threads("deadlock: no barrier can complete", n);
    }
}

/* One block as plain calls, threads in the launch's order. */
void run_block_plain(const std::vector<int> &order)
{
    const cudaemu::kernel_call &c = *g_launch->call;
    c.block(c.args, order.data(), (unsigned)order.size(), g_launch->tid);
    fp_env_check();
}

void set_block(uint64_t b, dim3 grid)
{
    blockIdx.x = (unsigned)(b % grid.x);
    blockIdx.y = (unsigned)(b / grid.x % grid.y);
    blockIdx.z = (unsigned)(b / ((uint64_t)grid.x * grid.y));
}

/* The calling thread's record, at a barrier. */
CUDAEMU_NO_SANITIZE tinfo &barrier_thread(const char *what, const char *file, int line)
{
    if (!g_launch) die("%s at %s:%d called outside a kernel", what, file, line);
    if (!g_launch->coroutines)
        die("%s at %s:%d reached in a block run as plain calls: the first block of this launch "
            "reached no barrier or shuffle, so the emulator runs the other blocks' threads one "
            "after another and cannot stop this one. Barriers that only some blocks reach are "
            "legal only if whole blocks skip them; rerun with CUDAEMU_FAST=0 to run every block "
            "as coroutines (slower)",
            what, file, line);
    g_launch->used_barrier = true;
    tinfo &t = g_t[g_cur];
    t.file = file;
    t.line = line;
    return t;
}

} // namespace

/* ---- the kernel side (cudaemu.h) ------------------------------------------ */

CUDAEMU_NO_SANITIZE void __syncthreads(const char *file, int line)
{
    tinfo &t = barrier_thread("__syncthreads", file, line);
    t.state = T_WAIT_BLOCK;
    g_blk.at_block++;
    yield_thread();
}

CUDAEMU_NO_SANITIZE void __syncwarp(unsigned mask, const char *file, int line)
{
    tinfo &t = barrier_thread("__syncwarp", file, line);
    t.state = T_WAIT_WARP;
    t.shfl = false;
    t.mask = mask;
    t.width = 32;
    g_blk.at_warp++;
    g_blk.warp_waiting[g_cur / 32] = 1;
    yield_thread();
}

CUDAEMU_NO_SANITIZE uint64_t cudaemu::shfl(unsigned mask, uint64_t bits, int arg, int width,
                                       shfl_mode mode, const char *file, int line)
{
    tinfo &t = barrier_thread("a warp shuffle", file, line);
    t.state = T_WAIT_WARP;
    t.shfl = true;
    t.mode = mode;
    t.mask = mask;
    t.arg = arg;
    t.width = width;
    t.val = bits;
    g_blk.at_warp++;
    g_blk.warp_waiting[g_cur / 32] = 1;
    yield_thread();
    return g_t[g_cur].result;
}

void cudaemu::launch(const site &where, dim3 grid, dim3 block, size_t shmem, cudaStream_t stream,
                     const kernel_call &call, const ptr_arg *ptrs, int n_ptrs)
{
    if (g_launch)
        die("kernel %s launched at %s:%d from inside a kernel (dynamic parallelism is not "
            "emulated)",
            where.kernel, where.file, where.line);
    host_only(where.kernel);
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535 ||
        !threads || block.x > 1024 || block.y > 1024 || block.z > 64 || threads > 1024) {
        ret(cudaErrorInvalidConfiguration);
        return;
    }
    if (!stream_ok(stream)) {
        ret(cudaErrorInvalidResourceHandle);
        return;
    }
    if (shmem)
        die("kernel %s launched at %s:%d with %zu bytes of dynamic shared memory: extern "
            "__shared__ arrays are not emulated",
            where.kernel, where.file, where.line, shmem);
    for (int k = 0; k < n_ptrs; k++) {
        const void *p = ptrs[k].p;
        if (!p) continue;
        const auto *b = block_of(p, true);
        char w[160];
        if (!b || b->second.kind != MEM_DEVICE)
            die("kernel %s launched at %s:%d: argument %d is %p, %s; a kernel can reach device "
                "memory only",
                where.kernel, where.file, where.line, ptrs[k].index, p, what_is(p, w, sizeof w));
        if ((uintptr_t)p % ptrs[k].align)
            die("kernel %s launched at %s:%d: argument %d is %p, not aligned to the %zu bytes "
                "of its type (a GPU faults on the access)",
                where.kernel, where.file, where.line, ptrs[k].index, p, ptrs[k].align);
    }

    const unsigned n = (unsigned)threads;
    fibers_ensure(n);
    static std::vector<uint3> tid;
    tid.resize(n);
    for (unsigned i = 0; i < n; i++)
        tid[i] = uint3{i % block.x, i / block.x % block.y, i / (block.x * block.y)};
    static std::vector<int> torder;
    torder.resize(n);
    for (unsigned i = 0; i < n; i++)
        torder[i] = (int)i;
    arrange(torder);

    const uint64_t blocks = (uint64_t)grid.x * grid.y * grid.z;
    if (blocks > 0xffffffffu)
        die("kernel %s launched at %s:%d with %llu blocks: more than the emulator runs",
            where.kernel, where.file, where.line, (unsigned long long)blocks);
    std::vector<uint32_t> border;
    if (cfg().order == ORDER_SHUFFLE) {
        border.resize(blocks);
        for (uint64_t b = 0; b < blocks; b++)
            border[b] = (uint32_t)b;
        arrange(border);
    }

    launch_state L = {&where, grid, block, &call, n, true, false, tid.data()};
    g_fp_env = fp_env();
    g_launch = &L;
    blockDim = block;
    gridDim = grid;
    g_stats.launches++;
    g_stats.threads += blocks * n;
    for (uint64_t k = 0; k < blocks; k++) {
        const uint64_t b = cfg().order == ORDER_FORWARD   ? k
                           : cfg().order == ORDER_REVERSE ? blocks - 1 - k
                                                          : border[k];
        set_block(b, grid);
        if (k == 1 && cfg().fast && !L.used_barrier) L.coroutines = false;
        if (L.coroutines)
            run_block_coroutines(), g_stats.co_blocks++;
        else
            run_block_plain(torder), g_stats.plain_blocks++;
    }
    if (L.used_barrier) g_stats.co_launches++;
    g_launch = nullptr;
}

/* ---- the runtime API (cuda_runtime.h) ------------------------------------- */

extern "C" {

cudaError_t cudaGetDeviceCount(int *count)
{
    host_only("cudaGetDeviceCount");
    if (!count) return ret(cudaErrorInvalidValue);
    *count = g_set.devices;
    return g_set.devices ? cudaSuccess : ret(cudaErrorNoDevice);
}

cudaError_t cudaSetDevice(int device)
{
    host_only("cudaSetDevice");
    return device >= 0 && device < g_set.devices ? cudaSuccess : ret(cudaErrorInvalidDevice);
}

cudaError_t cudaGetDevice(int *device)
{
    host_only("cudaGetDevice");
    if (!device) return ret(cudaErrorInvalidValue);
    *device = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device)
{
    host_only("cudaGetDeviceProperties");
    if (!prop) return ret(cudaErrorInvalidValue);
    if (device < 0 || device >= g_set.devices) return ret(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "cudaemu (CUDA on the host, for tests)");
    prop->totalGlobalMem = g_total_mem;
    prop->sharedMemPerBlock = 48 << 10;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = 1024, prop->maxThreadsDim[1] = 1024, prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff, prop->maxGridSize[1] = 65535, prop->maxGridSize[2] = 65535;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}

/* No PCI device stands behind the emulator: the host bridge's address, in
 * CUDA's format (13 characters with the NUL). */
cudaError_t cudaDeviceGetPCIBusId(char *pciBusId, int len, int device)
{
    host_only("cudaDeviceGetPCIBusId");
    if (device < 0 || device >= g_set.devices) return ret(cudaErrorInvalidDevice);
    if (!pciBusId || len < 13) return ret(cudaErrorInvalidValue);
    snprintf(pciBusId, (size_t)len, "0000:00:00.0");
    return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void)
{
    host_only("cudaDeviceSynchronize");
    return cudaSuccess;
}

cudaError_t cudaGetLastError(void)
{
    host_only("cudaGetLastError");
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}

cudaError_t cudaPeekAtLastError(void)
{
    host_only("cudaPeekAtLastError");
    return g_last;
}

#define CUDAEMU_ERRORS_(X)                                                                         \
    X(cudaSuccess, "no error")                                                                     \
    X(cudaErrorInvalidValue, "invalid argument")                                                   \
    X(cudaErrorMemoryAllocation, "out of memory")                                                  \
    X(cudaErrorInitializationError, "initialization error")                                        \
    X(cudaErrorInvalidConfiguration, "invalid configuration argument")                             \
    X(cudaErrorInvalidDevicePointer, "invalid device pointer")                                     \
    X(cudaErrorInvalidMemcpyDirection, "invalid copy direction for memcpy")                        \
    X(cudaErrorNoDevice, "no CUDA-capable device is detected")                                     \
    X(cudaErrorInvalidDevice, "invalid device ordinal")                                            \
    X(cudaErrorInvalidResourceHandle, "invalid resource handle")                                   \
    X(cudaErrorNotReady, "device not ready")

const char *cudaGetErrorString(cudaError_t error)
{
#define CUDAEMU_STRING_(e, s)                                                                      \
    case e: return s;
    switch (error) {
        CUDAEMU_ERRORS_(CUDAEMU_STRING_)
    }
#undef CUDAEMU_STRING_
    return "unrecognized error code";
}

const char *cudaGetErrorName(cudaError_t error)
{
#define CUDAEMU_NAME_(e, s)                                                                        \
    case e: return #e;
    switch (error) {
        CUDAEMU_ERRORS_(CUDAEMU_NAME_)
    }
#undef CUDAEMU_NAME_
    return "unrecognized error code";
}

/* Device memory is malloc'd (AddressSanitizer then sees a kernel's
 * out-of-bounds access) and 256-byte aligned like cudaMalloc's, and filled
 * with 0xFF bytes (NaN floats): a GPU's new memory is whatever was there. */
cudaError_t cudaMalloc(void **devPtr, size_t size)
{
    host_only("cudaMalloc");
    if (!devPtr) return ret(cudaErrorInvalidValue);
    *devPtr = nullptr;
    if (!size) return cudaSuccess;
    if (size > g_total_mem - g_device_bytes) return ret(cudaErrorMemoryAllocation);
    void *p = nullptr;
    if (posix_memalign(&p, 256, size) != 0) return ret(cudaErrorMemoryAllocation);
    memset(p, 0xff, size);
    g_mem[key_of(p)] = mem_block{size, MEM_DEVICE};
    g_device_bytes += size;
    *devPtr = p;
    return cudaSuccess;
}

cudaError_t cudaFree(void *devPtr)
{
    host_only("cudaFree");
    if (!devPtr) return cudaSuccess;
    auto it = g_mem.find(key_of(devPtr));
    if (it == g_mem.end() || it->second.kind != MEM_DEVICE) {
        char w[160];
        return misuse(cudaErrorInvalidValue, "cudaFree(%p): %s, not a pointer cudaMalloc returned",
                      devPtr, what_is(devPtr, w, sizeof w));
    }
    g_device_bytes -= it->second.size;
    g_mem.erase(it);
    free(devPtr);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **ptr, size_t size)
{
    host_only("cudaMallocHost");
    if (!ptr) return ret(cudaErrorInvalidValue);
    *ptr = nullptr;
    if (!size) return cudaSuccess;
    void *p = malloc(size);
    if (!p) return ret(cudaErrorMemoryAllocation);
    memset(p, 0xff, size);
    g_mem[key_of(p)] = mem_block{size, MEM_PINNED};
    *ptr = p;
    return cudaSuccess;
}

cudaError_t cudaFreeHost(void *ptr)
{
    host_only("cudaFreeHost");
    if (!ptr) return cudaSuccess;
    auto it = g_mem.find(key_of(ptr));
    if (it == g_mem.end() || it->second.kind != MEM_PINNED) {
        char w[160];
        return misuse(cudaErrorInvalidValue,
                      "cudaFreeHost(%p): %s, not a pointer cudaMallocHost returned", ptr,
                      what_is(ptr, w, sizeof w));
    }
    g_mem.erase(it);
    free(ptr);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind,
                            cudaStream_t stream)
{
    host_only("cudaMemcpyAsync");
    static const char *const kinds[] = {"HostToHost", "HostToDevice", "DeviceToHost",
                                        "DeviceToDevice", "Default"};
    if ((unsigned)kind > 4) return ret(cudaErrorInvalidMemcpyDirection);
    if (!stream_ok(stream))
        return misuse(cudaErrorInvalidResourceHandle,
                      "cudaMemcpyAsync on stream %p, which is not a live stream", (void *)stream);
    if (!count) return cudaSuccess;
    const bool dd = is_device(dst), sd = is_device(src);
    if (kind == cudaMemcpyDefault) kind = (cudaMemcpyKind)((sd ? 2 : 0) | (dd ? 1 : 0));
    const bool want_dd = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    const bool want_sd = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    char why[300], w[160];
    if (!dst || !src)
        return misuse(cudaErrorInvalidValue, "cudaMemcpyAsync(%s) of %zu bytes with a NULL %s",
                      kinds[kind], count, dst ? "source" : "destination");
    if (want_dd && !device_range(dst, count, why, sizeof why))
        return misuse(cudaErrorInvalidValue, "cudaMemcpyAsync(%s) of %zu bytes: destination %s",
                      kinds[kind], count, why);
    if (want_sd && !device_range(src, count, why, sizeof why))
        return misuse(cudaErrorInvalidValue, "cudaMemcpyAsync(%s) of %zu bytes: source %s",
                      kinds[kind], count, why);
    if (!want_dd && dd)
        return misuse(cudaErrorInvalidValue,
                      "cudaMemcpyAsync(%s) of %zu bytes: destination %p is %s", kinds[kind], count,
                      dst, what_is(dst, w, sizeof w));
    if (!want_sd && sd)
        return misuse(cudaErrorInvalidValue, "cudaMemcpyAsync(%s) of %zu bytes: source %p is %s",
                      kinds[kind], count, src, what_is(src, w, sizeof w));
    const uintptr_t d = (uintptr_t)dst, s = (uintptr_t)src;
    if (d < s + count && s < d + count)
        die("cudaMemcpyAsync(%s) of %zu bytes from %p to %p: the ranges overlap (undefined on a "
            "GPU)",
            kinds[kind], count, src, dst);
    memcpy(dst, src, count);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind)
{
    return cudaMemcpyAsync(dst, src, count, kind, 0);
}

cudaError_t cudaMemsetAsync(void *devPtr, int value, size_t count, cudaStream_t stream)
{
    host_only("cudaMemsetAsync");
    if (!stream_ok(stream))
        return misuse(cudaErrorInvalidResourceHandle,
                      "cudaMemsetAsync on stream %p, which is not a live stream", (void *)stream);
    if (!count) return cudaSuccess;
    char why[300];
    if (!device_range(devPtr, count, why, sizeof why))
        return misuse(cudaErrorInvalidValue, "cudaMemsetAsync of %zu bytes: %s", count, why);
    memset(devPtr, value & 0xff, count);
    return cudaSuccess;
}

cudaError_t cudaMemset(void *devPtr, int value, size_t count)
{
    return cudaMemsetAsync(devPtr, value, count, 0);
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *pStream, unsigned int flags)
{
    host_only("cudaStreamCreateWithFlags");
    if (!pStream || (flags & ~1u)) return ret(cudaErrorInvalidValue);
    *pStream = new CUstream_st{flags};
    g_streams.insert(*pStream);
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *pStream)
{
    return cudaStreamCreateWithFlags(pStream, cudaStreamDefault);
}

cudaError_t cudaStreamDestroy(cudaStream_t stream)
{
    host_only("cudaStreamDestroy");
    if (!g_streams.erase(stream))
        return misuse(cudaErrorInvalidResourceHandle, "cudaStreamDestroy(%p): not a live stream",
                      (void *)stream);
    delete stream;
    return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream)
{
    host_only("cudaStreamSynchronize");
    if (!stream_ok(stream))
        return misuse(cudaErrorInvalidResourceHandle,
                      "cudaStreamSynchronize(%p): not a live stream", (void *)stream);
    return cudaSuccess;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags)
{
    host_only("cudaStreamWaitEvent");
    (void)flags;
    if (!stream_ok(stream) || !g_events.count(event))
        return misuse(cudaErrorInvalidResourceHandle,
                      "cudaStreamWaitEvent(%p, %p): not a live stream and event", (void *)stream,
                      (void *)event);
    return cudaSuccess;
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned int flags)
{
    host_only("cudaEventCreateWithFlags");
    if (!event || (flags & ~7u)) return ret(cudaErrorInvalidValue);
    *event = new CUevent_st{flags, false, {}};
    g_events.insert(*event);
    return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *event)
{
    return cudaEventCreateWithFlags(event, cudaEventDefault);
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
    host_only("cudaEventRecord");
    if (!g_events.count(event) || !stream_ok(stream))
        return misuse(cudaErrorInvalidResourceHandle,
                      "cudaEventRecord(%p, %p): not a live event and stream", (void *)event,
                      (void *)stream);
    event->recorded = true;
    event->at = std::chrono::steady_clock::now();
    return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event)
{
    host_only("cudaEventSynchronize");
    if (!g_events.count(event))
        return misuse(cudaErrorInvalidResourceHandle, "cudaEventSynchronize(%p): not a live event",
                      (void *)event);
    return cudaSuccess;
}

/* As CUDA: an event made with cudaEventDisableTiming, or never recorded, is
 * an invalid handle here. */
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end)
{
    host_only("cudaEventElapsedTime");
    if (!ms) return ret(cudaErrorInvalidValue);
    if (!g_events.count(start) || !g_events.count(end) || !start->recorded || !end->recorded ||
        ((start->flags | end->flags) & cudaEventDisableTiming))
        return ret(cudaErrorInvalidResourceHandle);
    *ms = std::chrono::duration<float, std::milli>(end->at - start->at).count();
    return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event)
{
    host_only("cudaEventDestroy");
    if (!g_events.erase(event))
        return misuse(cudaErrorInvalidResourceHandle, "cudaEventDestroy(%p): not a live event",
                      (void *)event);
    delete event;
    return cudaSuccess;
}

/* ---- cuBLAS (cublas_v2.h) -------------------------------------------------- */

cublasStatus_t cublasCreate(cublasHandle_t *handle)
{
    host_only("cublasCreate");
    if (!handle) return CUBLAS_STATUS_INVALID_VALUE;
    if (!g_set.devices) return CUBLAS_STATUS_NOT_INITIALIZED;
    *handle = new cublasContext{nullptr, CUBLAS_DEFAULT_MATH};
    g_handles.insert(*handle);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle)
{
    host_only("cublasDestroy");
    if (!g_handles.erase(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    delete handle;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId)
{
    host_only("cublasSetStream");
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_ok(streamId)) {
        misuse(cudaErrorInvalidResourceHandle, "cublasSetStream(%p): not a live stream",
               (void *)streamId);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    handle->stream = streamId;
    return CUBLAS_STATUS_SUCCESS;
}

/* TF32 is accepted and computed in float32 (cudaemu.h). */
cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode)
{
    host_only("cublasSetMathMode");
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if ((unsigned)mode > CUBLAS_TF32_TENSOR_OP_MATH) return CUBLAS_STATUS_INVALID_VALUE;
    handle->math = mode;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetVersion(cublasHandle_t handle, int *version)
{
    host_only("cublasGetVersion");
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!version) return CUBLAS_STATUS_INVALID_VALUE;
    *version = 130000; /* the cuBLAS of CUDA 13.0, whose API this follows */
    return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusString(cublasStatus_t status)
{
    switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "the operation completed successfully";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    }
    return "unknown error";
}

/* C = alpha op(A) op(B) + beta C, column-major, as cuBLAS (pointer mode
 * host: alpha and beta on the host; beta == 0 does not read C). */
cublasStatus_t cublasSgemm(cublasHandle_t handle, cublasOperation_t transa,
                           cublasOperation_t transb, int m, int n, int k, const float *alpha,
                           const float *A, int lda, const float *B, int ldb, const float *beta,
                           float *C, int ldc)
{
    host_only("cublasSgemm");
    if (!g_handles.count(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (!stream_ok(handle->stream))
        die("cublasSgemm on a handle whose stream %p was destroyed", (void *)handle->stream);
    if ((unsigned)transa > CUBLAS_OP_C || (unsigned)transb > CUBLAS_OP_C || m < 0 || n < 0 || k < 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const int ra = transa == CUBLAS_OP_N ? m : k, ca = transa == CUBLAS_OP_N ? k : m;
    const int rb = transb == CUBLAS_OP_N ? k : n, cb = transb == CUBLAS_OP_N ? n : k;
    if (lda < std::max(1, ra) || ldb < std::max(1, rb) || ldc < std::max(1, m)) {
        fprintf(stderr,
                "cudaemu: cublasSgemm(m %d, n %d, k %d): lda %d (needs >= %d), ldb %d "
                "(>= %d), ldc %d (>= %d)\n",
                m, n, k, lda, std::max(1, ra), ldb, std::max(1, rb), ldc, std::max(1, m));
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    if (!alpha || !beta) return CUBLAS_STATUS_INVALID_VALUE;
    if (is_device(alpha) || is_device(beta))
        die("cublasSgemm: alpha or beta in device memory, but the pointer mode is host");
    char why[300];
    /* a matrix of r rows and c columns spans (c - 1) ld + r floats */
    auto check = [&](const char *name, const void *p, int r, int c, int ld) {
        size_t bytes = ((size_t)(c - 1) * (size_t)ld + (size_t)r) * sizeof(float);
        if (!device_range(p, bytes, why, sizeof why))
            die("cublasSgemm(m %d, n %d, k %d): %s (%d x %d, ld %d): %s", m, n, k, name, r, c, ld,
                why);
    };
    check("C", C, m, n, ldc);
    if (k > 0 && *alpha != 0.0f) {
        check("A", A, ra, ca, lda);
        check("B", B, rb, cb, ldb);
        cblas_sgemm(CblasColMajor, transa == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    transb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, A, lda, B,
                    ldb, *beta, C, ldc);
        return CUBLAS_STATUS_SUCCESS;
    }
    /* no products: C = beta C, C not read when beta is 0 (BLAS's rule) */
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            float &c = C[(size_t)j * ldc + i];
            c = *beta == 0.0f ? 0.0f : *beta * c;
        }
    return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
