/* schedule.c: learning-rate schedules (formulas in schedule.h). */
#include "schedule.h"

#include <math.h>
#include <string.h>

static const char *const ds_sched_names_[DS_SCHED_COUNT] = {"constant", "step", "cosine",
                                                            "warmup-cosine"};

const char *ds_sched_name(enum ds_sched_kind k)
{
    return (unsigned)k < DS_SCHED_COUNT ? ds_sched_names_[k] : "?";
}

enum ds_sched_kind ds_sched_find(const char *name)
{
    for (int k = 0; k < DS_SCHED_COUNT; k++)
        if (strcmp(name, ds_sched_names_[k]) == 0) return (enum ds_sched_kind)k;
    return DS_SCHED_COUNT;
}

double ds_schedule_lr(const struct ds_schedule *s, long t)
{
    long w = s->warmup > 0 ? s->warmup : 0;
    if (t < w) return s->base_lr * (double)(t + 1) / (double)w;
    long u = t - w;            /* step within the schedule proper */
    long span = s->total - w;  /* its length */
    switch (s->kind) {
    case DS_SCHED_CONSTANT: return s->base_lr;
    case DS_SCHED_STEP:
        return s->base_lr * pow(s->gamma, (double)(s->step_size > 0 ? u / s->step_size : 0));
    case DS_SCHED_COSINE:
    case DS_SCHED_WARMUP_COSINE:
        if (span <= 0) return s->base_lr;
        if (u > span) u = span;
        return s->min_lr + (s->base_lr - s->min_lr) * (1.0 + cos(M_PI * (double)u / (double)span)) / 2.0;
    case DS_SCHED_COUNT: break;
    }
    return s->base_lr;
}
