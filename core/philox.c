/* philox.c: the non-inline helpers of the generator. */
#include "philox.h"

void ds_rng_permutation(uint64_t seed, uint32_t stream, uint64_t round, int32_t *perm, int32_t n)
{
    for (int32_t i = 0; i < n; i++) perm[i] = i;
    uint64_t base = round * (uint64_t)n;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)ds_rng_below(seed, stream, base + (uint64_t)i, (uint32_t)i + 1);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
