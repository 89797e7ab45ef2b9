/*
 * bench_comm.h: `descent bench-comm`, a micro-benchmark of the allreduce the
 * data-parallel trainer makes (the communicator's allreduce_sum, float32, in
 * place) over message sizes doubling from --min-bytes to --max-bytes, with
 * nccl-tests' algbw and busbw.
 */
#ifndef DS_BENCH_COMM_H
#define DS_BENCH_COMM_H

/* `descent bench-comm [--ranks N] [--min-bytes B] [--max-bytes B] [--iters I]
 * [--warmup W] [--rounds R] [--out DIR]` (argv after the command name);
 * outside an MPI launcher it starts N ranks through mpirun (ds_launch_ranks).
 * Returns the process exit code. */
int ds_cmd_bench_comm(int argc, char **argv);

#endif
