/*
 * bench_optim.h: `descent bench-optim`, a micro-benchmark of one optimizer
 * step over a flat float32 buffer, set against a STREAM triad over the same
 * number of bytes measured in the same run (the memory-bandwidth ceiling).
 */
#ifndef DS_BENCH_OPTIM_H
#define DS_BENCH_OPTIM_H

/* `descent bench-optim [--optimizer NAME] [--n N] [--threads T] [--repeat R]`
 * (argv after the command name); returns the process exit code. */
int ds_cmd_bench_optim(int argc, char **argv);

#endif
