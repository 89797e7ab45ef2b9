/* timer.h: monotonic wall clock. */
#ifndef DS_TIMER_H
#define DS_TIMER_H

#include <time.h>

static inline double ds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
