/*
 * scale.h: `descent scale`: data-parallel step time, speedup and efficiency
 * PROJECTED to GPU counts this machine does not have, from an alpha-beta
 * model of the gradient allreduce (see scale.c for the model and its
 * assumptions). Nothing here is measured at those counts; every output says
 * so.
 */
#ifndef DS_SCALE_H
#define DS_SCALE_H

#include "../core/ds.h"

#define DS_SCALE_NAME 64
#define DS_SCALE_TEXT 1024

/* One interconnect profile (a section of configs/scale/interconnects.ini). Flat:
 * one ring over every GPU whose slowest link has bw_GBps per direction and
 * whose every step costs alpha_us. Hierarchical: nodes of gpus_per_node
 * GPUs on profile `intra`, nodes joined by nics_per_node links per node of
 * profile `inter` (indices into the same array). */
struct ds_scale_net {
    char name[DS_SCALE_NAME];
    char source[DS_SCALE_TEXT];
    double alpha_us;  /* latency per ring step, microseconds */
    double bw_GBps;   /* bandwidth per direction per GPU (link), 1e9 B/s */
    int hier;         /* 1: two-level */
    int intra, inter; /* hierarchical: indices of the flat profiles */
    int gpus_per_node, nics_per_node;
    char intra_name[DS_SCALE_NAME], inter_name[DS_SCALE_NAME];
};

struct ds_scale_nets {
    int n;
    struct ds_scale_net *v;
};

/* What one GPU does in one step, at a fixed per-GPU batch. */
struct ds_scale_model {
    char name[DS_SCALE_NAME];
    char source[DS_SCALE_TEXT];
    char hardware[256];       /* where compute_ms comes from */
    char batch_unit[64];      /* "samples", "sequences of 1024 tokens", ... */
    double params;            /* parameters (count) */
    double grad_bytes_per_param;
    double compute_ms;        /* forward + backward per step, one GPU */
    double optimizer_ms;      /* optimizer step, one GPU (replicated under DDP) */
    double batch_per_gpu;
    double backward_fraction; /* share of compute_ms that is backward */
    int measured;             /* 1: compute_ms measured by descent run on this machine */
    double measured_comm_ms;  /* run folder: its comm_ms (not used by the model) */
    int measured_ranks;
};

/* One (interconnect, P) point. Times in milliseconds. */
struct ds_scale_point {
    int gpus;
    double allreduce_ms;  /* the whole gradient allreduce */
    double exposed_ms;    /* what backward does not hide */
    double step_ms, step_ms_no_overlap;
    double efficiency, efficiency_no_overlap; /* t1 / step, t1 = compute + optimizer */
    double speedup;       /* gpus * efficiency (weak scaling: throughput ratio) */
    double samples_per_s; /* gpus * batch_per_gpu / step */
};

/* Ring allreduce of `bytes` over p GPUs in n_buckets calls:
 * n_buckets * 2(p-1) alpha + 2(p-1)/p * bytes / bw. 0 for p <= 1. */
double ds_scale_ring_ms(double alpha_us, double bw_GBps, int p, double bytes, int n_buckets);
/* The allreduce on profile i of nets (flat or two-level) at p GPUs. A
 * two-level profile needs p <= gpus_per_node or p a multiple of it
 * (asserted: ds_scale_check_gpus says so first). */
double ds_scale_allreduce_ms(const struct ds_scale_nets *nets, int i, int p, double bytes,
                             int n_buckets);
/* DS_ERR_USAGE naming --gpus and the profile when p does not fit it. */
ds_status ds_scale_check_gpus(const struct ds_scale_net *net, int p, struct ds_err *err);
/* Fills *pt from the model, the allreduce time and the overlap fraction
 * (0..1 of the backward pass that can hide communication). */
void ds_scale_point_eval(const struct ds_scale_model *m, int p, double allreduce_ms,
                         double overlap, struct ds_scale_point *pt);

/* Reads an interconnects file (one section per profile). */
ds_status ds_scale_nets_load(const char *path, struct ds_scale_nets *nets, struct ds_err *err);
void ds_scale_nets_free(struct ds_scale_nets *nets);
/* Reads a model: an INI description, or a descent run folder (its
 * summary.csv: the compute time measured on this machine). */
ds_status ds_scale_model_load(const char *path, struct ds_scale_model *m, struct ds_err *err);

/* argv: the arguments after "scale". Returns the exit code. */
int ds_cmd_scale(int argc, char **argv);

#endif
