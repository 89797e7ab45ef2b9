/* run.h: the commands that build a task from a configuration: run and export. */
#ifndef DS_RUN_H
#define DS_RUN_H

#include "config.h"
#include "../core/comm.h"
#include "../workloads/workload.h"

/* What a configuration instantiates; ds_session_close frees it all. */
struct ds_session {
    struct ds_config cfg;
    /* cfg as ds_config_resolve left it, before the values derived from the
     * data (full-batch size, schedule lengths): what run_id and arm_id hash,
     * so a sweep knows them without loading the data */
    struct ds_config cfg_resolved;
    struct ds_backend be;
    struct ds_comm comm;
    struct ds_task task;
    const struct ds_workload *workload;
    const struct ds_optim_ops *opt;
    int have_be, have_comm, have_task;
};

/* Parses argv (after the command name), resolves, and creates backend,
 * communicator and task. */
ds_status ds_session_open(struct ds_session *s, int argc, char **argv, struct ds_err *err);
void ds_session_close(struct ds_session *s);

/* `descent COMMAND ... --ranks N` outside a launcher: runs `mpirun -np N
 * descent COMMAND ...` and returns the job's exit code (0, 1 or 2). */
int ds_launch_ranks(long ranks, const char *command, int argc, char **argv);

/* `descent run ...`, `descent export ...`: return the process exit code. */
int ds_cmd_run(int argc, char **argv);
int ds_cmd_export(int argc, char **argv);

#endif
