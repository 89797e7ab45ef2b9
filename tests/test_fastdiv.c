/*
 * test_fastdiv.c: core/fastdiv.h's multiply-and-shift division equals n / d
 * over its whole stated range (0 <= n < 2^31, 1 <= d < 2^31): every divisor
 * up to 4096 and the powers of two and their neighbours, each against the
 * numerators where a quotient changes (k*d - 1, k*d) near 0, near 2^31 and
 * drawn at random, plus random (n, d) pairs. This host build runs the same
 * arithmetic the CUDA kernels run (__umulhi is the same high product).
 */
#include "testutil.h"

#include "../core/fastdiv.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd31(void)
{
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 33); /* 31 bits */
}

static long checked;

static void check(uint32_t n, uint32_t d)
{
    struct ds_fastdiv f = ds_fastdiv_make(d);
    uint32_t q = ds_fastdiv_div(f, n);
    if (q != n / d) fail_msg("%u / %u: fastdiv gives %u, not %u (m %u, s %u)", n, d, q, n / d, f.m, f.s);
    checked++;
}

static void check_divisor(uint32_t d)
{
    const uint32_t top = 0x7fffffffu;
    uint64_t low = 3 * (uint64_t)d + 3; /* the first quotients, or 4096 numerators */
    for (uint64_t n = 0; n < low && n < 4096; n++) check((uint32_t)n, d);
    for (uint32_t k = 0; k < 64; k++) { /* the last quotient changes below 2^31 */
        uint32_t hi = top - k;
        check(hi, d);
        uint32_t edge = hi / d * d;
        check(edge, d);
        if (edge) check(edge - 1, d);
    }
    for (int k = 0; k < 64; k++) {
        uint32_t q = rnd31() / d, n = q * d;
        check(n, d);
        if (n) check(n - 1, d);
    }
}

static void test_fastdiv_exact(void **state)
{
    (void)state;
    checked = 0;
    for (uint32_t d = 1; d <= 4096; d++) check_divisor(d);
    for (int s = 12; s < 31; s++)
        for (int e = -2; e <= 2; e++) check_divisor(((uint32_t)1 << s) + (uint32_t)e);
    check_divisor(0x7fffffffu);
    for (int k = 0; k < 2000; k++) {
        uint32_t d = rnd31() >> (rnd31() % 31);
        if (!d) d = 1;
        check_divisor(d);
    }
    for (int k = 0; k < 2000000; k++) {
        uint32_t d = rnd31() >> (rnd31() % 31);
        check(rnd31(), d ? d : 1);
    }
    print_message("# fastdiv: %ld (n, d) pairs equal to n / d\n", checked);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fastdiv_exact)};
    return cmocka_run_group_tests_name("fastdiv", tests, NULL, NULL);
}
