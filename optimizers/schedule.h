/*
 * schedule.h: learning-rate schedules, by PyTorch's formulas (t is the 0-based
 * step index; the rate returned is the one step t uses, as torch's scheduler
 * after t calls of scheduler.step()).
 *   constant       lr
 *   step           lr * gamma^floor(t / step_size)                 (StepLR)
 *   cosine         min + (lr - min) * (1 + cos(pi t / T)) / 2        (CosineAnnealingLR, T = total)
 *   warmup-cosine  lr * (t+1) / W for t < W                         (LinearLR(1/W, 1, W-1))
 *                  then cosine over the remaining T - W steps       (SequentialLR)
 * A warm-up (--warmup W > 0) may precede any schedule: the schedule then runs
 * over the steps after it.
 */
#ifndef DS_SCHEDULE_H
#define DS_SCHEDULE_H

enum ds_sched_kind {
    DS_SCHED_CONSTANT,
    DS_SCHED_STEP,
    DS_SCHED_COSINE,
    DS_SCHED_WARMUP_COSINE,
    DS_SCHED_COUNT
};

struct ds_schedule {
    enum ds_sched_kind kind;
    double base_lr;
    double min_lr;   /* cosine's eta_min */
    double gamma;    /* step's factor */
    long step_size;  /* step's period, in steps */
    long warmup;     /* linear warm-up steps */
    long total;      /* total steps of the run */
};

double ds_schedule_lr(const struct ds_schedule *s, long t);
const char *ds_sched_name(enum ds_sched_kind k);
/* Returns the kind for a name, or DS_SCHED_COUNT if unknown. */
enum ds_sched_kind ds_sched_find(const char *name);

#endif
