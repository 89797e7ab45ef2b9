/*
 * test_philox.c: Philox4x32-10 against Random123's published known-answer
 * vectors (tests/kat_vectors of Random123 1.09), and the properties the
 * helpers promise: addressable, ranges, moments, permutations.
 */
#include "testutil.h"

#include "../core/philox.h"

static void test_known_answers(void **state)
{
    (void)state;
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t i = 0; i < sizeof kat / sizeof kat[0]; i++) {
        uint32_t out[4];
        ds_philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int w = 0; w < 4; w++)
            if (out[w] != kat[i].out[w])
                fail_msg("vector %zu word %d: got %08x, want %08x", i, w, out[w], kat[i].out[w]);
    }
}

static void test_addressing(void **state)
{
    (void)state;
    /* index i is lane i%4 of block i/4 at counter (block, stream) and key seed */
    uint64_t seed = 0x123456789abcdefull;
    uint32_t b[4];
    const uint32_t ctr[4] = {5, 0, 7, 0}, key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    ds_philox4x32_10(ctr, key, b);
    for (int l = 0; l < 4; l++) assert_int_equal(ds_rng_u32(seed, 7, 20 + (uint64_t)l), b[l]);
    /* every field of the address matters */
    uint32_t x = ds_rng_u32(1, 2, 3);
    assert_int_not_equal(x, ds_rng_u32(2, 2, 3));
    assert_int_not_equal(x, ds_rng_u32(1, 3, 3));
    assert_int_not_equal(x, ds_rng_u32(1, 2, 4));
    assert_int_not_equal(ds_rng_u32(1, 2, 3), ds_rng_u32(1, 2, (uint64_t)3 + (1ull << 34)));
}

static void test_uniform_and_normal_moments(void **state)
{
    (void)state;
    const int n = 200000;
    double su = 0, su2 = 0, sn = 0, sn2 = 0, sn4 = 0;
    for (int i = 0; i < n; i++) {
        float u = ds_rng_uniform(42, 9, (uint64_t)i);
        if (!(u > 0.0f && u < 1.0f)) fail_msg("uniform %d = %g outside (0, 1)", i, (double)u);
        su += u, su2 += (double)u * u;
        double z = ds_rng_normal(42, 9, (uint64_t)i);
        sn += z, sn2 += z * z, sn4 += z * z * z * z;
    }
    /* tolerances: about 5 standard errors */
    assert_close(su / n, 0.5, 5 * sqrt(1.0 / 12 / n));
    assert_close(su2 / n - (su / n) * (su / n), 1.0 / 12, 0.002);
    assert_close(sn / n, 0.0, 5 / sqrt(n));
    assert_close(sn2 / n, 1.0, 5 * sqrt(2.0 / n));
    assert_close(sn4 / n, 3.0, 5 * sqrt(96.0 / n));
}

static void test_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    int32_t p[N], q[N];
    int seen[N] = {0};
    ds_rng_permutation(7, DS_STREAM_SHUFFLE, 0, p, N);
    for (int i = 0; i < N; i++) {
        assert_true(p[i] >= 0 && p[i] < N);
        seen[p[i]]++;
    }
    for (int i = 0; i < N; i++) assert_int_equal(seen[i], 1);
    /* a different round (epoch) gives a different order; the same one the same */
    ds_rng_permutation(7, DS_STREAM_SHUFFLE, 1, q, N);
    assert_true(memcmp(p, q, sizeof p) != 0);
    ds_rng_permutation(7, DS_STREAM_SHUFFLE, 0, q, N);
    assert_memory_equal(p, q, sizeof p);
    /* uniformity: element 0 lands in each tenth about equally over rounds */
    int bins[10] = {0};
    for (int r = 0; r < 2000; r++) {
        ds_rng_permutation(3, DS_STREAM_SHUFFLE, (uint64_t)r, q, N);
        for (int i = 0; i < N; i++)
            if (q[i] == 0) bins[i * 10 / N]++;
    }
    for (int b = 0; b < 10; b++) assert_close(bins[b], 200.0, 5 * sqrt(200.0 * 0.9));
}

static void test_dropout_keep_rate(void **state)
{
    (void)state;
    uint32_t thr = ds_dropout_threshold24(0.3f);
    int kept = 0, n = 100000;
    for (int i = 0; i < n; i++) kept += ds_rng_keep(5, DS_STREAM_DROPOUT, (uint64_t)i, thr);
    assert_close((double)kept / n, 0.7, 5 * sqrt(0.21 / n));
    assert_int_equal(ds_dropout_threshold24(0.0f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_addressing),
        cmocka_unit_test(test_uniform_and_normal_moments),
        cmocka_unit_test(test_permutation),
        cmocka_unit_test(test_dropout_keep_rate),
    };
    return cmocka_run_group_tests_name("philox", tests, NULL, NULL);
}
