/*
 * cmocka_skip.c: linked into test_cuda_emu only. CUDAEMU_SKIP_TESTS=pattern
 * (cmocka's wildcards, * and ?) leaves the tests whose names match out of
 * the run, which test_cuda.c's main offers no other way to ask: tests/run.sh
 * leaves the long training tests out of the sanitizer pass (they would cost
 * a minute there; the ops they use are each tested under it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

__attribute__((constructor)) static void cudaemu_skip_tests(void)
{
    const char *p = getenv("CUDAEMU_SKIP_TESTS");
    if (p && *p) cmocka_set_skip_filter(p);
}
