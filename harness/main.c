/*
 * main.c: the `descent` command. Dispatches to the subcommands; the only
 * place (with the subcommands' own entry points) that turns a status into an
 * exit code (DESIGN.md: 0 ok, 1 failed/diverged, 2 bad usage or input).
 */
#include "bench_comm.h"
#include "bench_optim.h"
#include "compare.h"
#include "plot.h"
#include "report.h"
#include "config.h"
#include "output.h"
#include "run.h"
#include "scale.h"
#include "sweep.h"
#include "../core/backend.h"
#include "../core/comm.h"
#include "../core/model.h"
#include "../core/topology.h"
#include "../optimizers/optim.h"
#include "../optimizers/schedule.h"
#include "../workloads/workload.h"

#include <cblas.h>
#include <string.h>
#include <unistd.h>

static const char *const ds_commands =
    "list, info, run, sweep, plot, report, compare, export, bench-optim, bench-comm, scale, help";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: descent COMMAND [options]\n"
            "  descent list                 workloads, optimizers, schedules, backends, comm modes\n"
            "  descent info                 hardware, BLAS, build flags\n"
            "  descent run [options]        one training run (descent help run: its options)\n"
            "  descent sweep FILE.ini [-j N] [--resume] [--out DIR] [--list] [--quiet]\n"
            "                               a grid of runs from an experiment file (configs/)\n"
            "  descent plot DIR             gnuplot figures (PNG, SVG) of a sweep or run folder, in DIR/plots\n"
            "  descent report DIR           report.html (self-contained) and report.md of a sweep or run folder\n"
            "  descent compare BASE NEW [--tol-metric A] [--tol-loss R] [--tol-steps R] [--tol-speed R]\n"
            "                  [--gate-speed] [--allow-missing]\n"
            "                               regression gate between two sweeps' runs (exit 1: regression)\n"
            "  descent export --workload W --seed S --out DIR\n"
            "                               the workload's data as .npy, to rerun it elsewhere\n"
            "  descent bench-optim [--optimizer adam] [--n 10000000] [--threads 2] [--repeat 30]\n"
            "                               one optimizer step against a STREAM triad of the same bytes\n"
            "  descent bench-comm [--ranks 2] [--min-bytes 4] [--max-bytes 256M] [--iters N] [--warmup N]\n"
            "                     [--rounds 5] [--out DIR]\n"
            "                               allreduce bandwidth (algbw, busbw) of the communicator, by size\n"
            "  descent scale --model FILE|RUN_DIR [--gpus 8,16,...,1024] [--interconnect NAME,...]\n"
            "                [--overlap 1] [--out DIR]\n"
            "                               PROJECTED data-parallel scaling (alpha-beta model, not measured)\n"
            "exit codes: 0 ok, 1 run failed or diverged, 2 bad usage or input\n");
}

static int cmd_list(void)
{
    printf("workloads:\n");
    for (int i = 0; i < ds_workload_count(); i++)
        printf("  %-15s %s\n", ds_workload_at(i)->name, ds_workload_at(i)->summary);
    printf("optimizers:\n");
    for (int i = 0; i < ds_optim_count(); i++)
        printf("  %-15s %s\n", ds_optim_at(i)->name, ds_optim_at(i)->summary);
    printf("schedules:\n ");
    for (int s = 0; s < DS_SCHED_COUNT; s++) printf(" %s", ds_sched_name((enum ds_sched_kind)s));
    printf("\ninit schemes:\n ");
    for (int s = 0; s < DS_INIT_COUNT; s++) printf(" %s", ds_init_name((enum ds_init_scheme)s));
    printf("\nbackends (built):\n  %s\n", ds_backend_list());
    printf("comm modes (built):\n  %s\n", ds_comm_list());
    return 0;
}

static int cmd_info(void)
{
    printf("descent %s\n", ds_build_git_rev());
    printf("compiler: %s\n", ds_build_compiler());
    printf("cflags:   %s\n", ds_build_cflags());
    printf("blas:     OpenBLAS %s\n", openblas_get_config());
    printf("cpus:     %ld online\n", sysconf(_SC_NPROCESSORS_ONLN));
    struct ds_topology topo;
    struct ds_err err = {{0}};
    char line[1024];
    if (ds_topology_read(&topo, &err) == DS_OK) {
        ds_topology_describe(&topo, line, sizeof line);
        printf("topology: %s (hwloc)\n", line);
    } else {
        printf("topology: %s\n", err.msg);
    }
    struct ds_backend gpu;
    struct ds_err gerr = {{0}};
    if (strstr(ds_backend_list(), "cuda") == NULL) {
        printf("backends: %s (cuda: not built: nvcc was not found)\n", ds_backend_list());
    } else if (ds_backend_create("cuda", 0, &gpu, &gerr) == DS_OK) {
        printf("backends: %s; %s\n", ds_backend_list(), gpu.ops->describe(&gpu));
        ds_backend_destroy(&gpu);
    } else {
        printf("backends: %s (%s)\n", ds_backend_list(), gerr.msg);
    }
    printf("comm:     %s (%snccl: not built)\n", ds_comm_list(), ds_comm_mpi_built() ? "" : "mpi, ");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0) return ds_cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "plot") == 0) return ds_cmd_plot(argc - 2, argv + 2);
    if (strcmp(cmd, "report") == 0) return ds_cmd_report(argc - 2, argv + 2);
    if (strcmp(cmd, "compare") == 0) return ds_cmd_compare(argc - 2, argv + 2);
    if (strcmp(cmd, "sweep") == 0) return ds_cmd_sweep(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0) return ds_cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "bench-optim") == 0) return ds_cmd_bench_optim(argc - 2, argv + 2);
    if (strcmp(cmd, "scale") == 0) return ds_cmd_scale(argc - 2, argv + 2);
    if (strcmp(cmd, "bench-comm") == 0) return ds_cmd_bench_comm(argc - 2, argv + 2);
    if ((strcmp(cmd, "list") == 0 || strcmp(cmd, "info") == 0) && argc > 2) {
        fprintf(stderr, "descent: %s takes no arguments (got '%s')\n", cmd, argv[2]);
        return 2;
    }
    if (strcmp(cmd, "list") == 0) return cmd_list();
    if (strcmp(cmd, "info") == 0) return cmd_info();
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        if (argc > 2 && strcmp(argv[2], "run") != 0) {
            fprintf(stderr, "descent: no help on '%s' (valid: run)\n", argv[2]);
            return 2;
        }
        usage(stdout);
        if (argc > 2) {
            printf("\nrun options:\n");
            ds_config_print_help(stdout);
        }
        return 0;
    }
    fprintf(stderr, "descent: unknown command '%s' (valid: %s)\n", cmd, ds_commands);
    return 2;
}
