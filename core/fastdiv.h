/*
 * fastdiv.h: division by a divisor fixed before a kernel launch, as one
 * high multiply, an add and a shift (Granlund and Montgomery, "Division by
 * invariant integers using multiplication", PLDI 1994; the form PyTorch's
 * IntDivider uses). The CUDA kernels that turn a flat index into tensor
 * coordinates (im2col, col2im, pooling, the CHW ops) divide several times
 * per element; a GPU has no integer divider, so each 32-bit division is a
 * ~20-instruction routine (64-bit: several times that), which makes those
 * memory-bound kernels instruction-bound. Exact for 0 <= n < 2^31 and
 * 1 <= d < 2^31 (tests/test_fastdiv.c checks it against n / d).
 *
 * C and CUDA C++: the struct is made on the host and passed by value.
 */
#ifndef DS_FASTDIV_H
#define DS_FASTDIV_H

#include <stdint.h>

#if defined(__CUDACC__)
#define DS_FASTDIV_HD __host__ __device__
#else
#define DS_FASTDIV_HD
#endif

struct ds_fastdiv {
    uint32_t d; /* the divisor */
    uint32_t m; /* magic multiplier: floor(2^32 (2^s - d) / d) + 1 */
    uint32_t s; /* shift: ceil(log2 d) */
};

static inline struct ds_fastdiv ds_fastdiv_make(uint32_t d)
{
    struct ds_fastdiv f;
    uint32_t s = 0;
    while (s < 31 && ((uint32_t)1 << s) < d) s++;
    f.d = d;
    f.s = s;
    f.m = (uint32_t)((((uint64_t)1 << 32) * (((uint64_t)1 << s) - d)) / d + 1);
    return f;
}

/* n / d. t <= n < 2^31, so t + n does not overflow 32 bits. */
DS_FASTDIV_HD static inline uint32_t ds_fastdiv_div(struct ds_fastdiv f, uint32_t n)
{
#if defined(__CUDA_ARCH__)
    uint32_t t = __umulhi(n, f.m);
#else
    uint32_t t = (uint32_t)(((uint64_t)n * f.m) >> 32);
#endif
    return (t + n) >> f.s;
}

#endif
