/*
 * philox.h: the counter-based generator every random number in descent comes
 * from: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
 * 1, 2, 3", SC'11), checked against Random123's known-answer vectors.
 *
 * A number is addressed by (seed, stream, index), not drawn from a state, so
 * a sample's shuffle position or a dropout mask bit does not depend on thread
 * or rank count, and CPU and GPU produce the same bits.
 *   key     = (seed & 0xffffffff, seed >> 32)
 *   counter = (block & 0xffffffff, block >> 32, stream, 0), block = index / 4
 *   output  = lane index % 4 of the 4-word block
 * The functions are header-inline so the CUDA backend can compile the same
 * code (they use only integer arithmetic and <math.h>).
 */
#ifndef DS_PHILOX_H
#define DS_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define DS_HD_ __host__ __device__ static inline
#else
#define DS_HD_ static inline
#endif

/* Streams: one per purpose, so that changing e.g. the dropout rate never moves
 * the data order. Dropout layers use DS_STREAM_DROPOUT + layer index. */
enum ds_stream {
    DS_STREAM_INIT = 1,     /* parameter initialisation, index = flat parameter offset */
    DS_STREAM_SHUFFLE = 2,  /* per-epoch permutations */
    DS_STREAM_NOISE = 4,    /* gradient noise of synthetic objectives */
    DS_STREAM_SPLIT = 5,    /* reserved: train/validation splits */
    DS_STREAM_DATA = 64,    /* synthetic data: 64..127, one stream per (what, split) */
    DS_STREAM_DROPOUT = 256 /* + layer index */
};

DS_HD_ void ds_philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0;
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
        k0 += 0x9E3779B9u; /* key schedule (Weyl sequence) */
        k1 += 0xBB67AE85u;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The 4-word block at (seed, stream, block). */
DS_HD_ void ds_rng_block(uint64_t seed, uint32_t stream, uint64_t block, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), stream, 0};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    ds_philox4x32_10(ctr, key, out);
}

DS_HD_ uint32_t ds_rng_u32(uint64_t seed, uint32_t stream, uint64_t index)
{
    uint32_t b[4];
    ds_rng_block(seed, stream, index >> 2, b);
    return b[index & 3];
}

/* 24 random bits to a float in (0, 1): exact in float32, never 0 or 1. */
DS_HD_ float ds_u32_to_unit(uint32_t u)
{
    return ((float)(u >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

DS_HD_ float ds_rng_uniform(uint64_t seed, uint32_t stream, uint64_t index)
{
    return ds_u32_to_unit(ds_rng_u32(seed, stream, index));
}

/* Standard normal by Box-Muller from lanes 0 and 1 of block `index` (one
 * normal per block: wasteful, but addressable and identical everywhere). */
DS_HD_ double ds_rng_normal(uint64_t seed, uint32_t stream, uint64_t index)
{
    uint32_t b[4];
    ds_rng_block(seed, stream, index, b);
    double u1 = ((double)b[0] + 0.5) * (1.0 / 4294967296.0);
    double u2 = ((double)b[1] + 0.5) * (1.0 / 4294967296.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Integer in [0, n) by Lemire's multiply-shift (bias below n / 2^32). */
DS_HD_ uint32_t ds_rng_below(uint64_t seed, uint32_t stream, uint64_t index, uint32_t n)
{
    return (uint32_t)(((uint64_t)ds_rng_u32(seed, stream, index) * n) >> 32);
}

/* Dropout keeps element `index` when its 24-bit uniform is at or above p.
 * Integer comparison, so CPU and GPU agree bit for bit. */
DS_HD_ int ds_rng_keep(uint64_t seed, uint32_t stream, uint64_t index, uint32_t threshold24)
{
    return (ds_rng_u32(seed, stream, index) >> 8) >= threshold24;
}

DS_HD_ uint32_t ds_dropout_threshold24(float p)
{
    double t = (double)p * 16777216.0;
    return t >= 16777216.0 ? 16777216u : (uint32_t)t;
}

#undef DS_HD_

/* perm[0..n) = a uniformly random permutation of 0..n-1 addressed by
 * (seed, stream, round): Fisher-Yates whose i-th draw is index round*n + i. */
void ds_rng_permutation(uint64_t seed, uint32_t stream, uint64_t round, int32_t *perm, int32_t n);

#endif
