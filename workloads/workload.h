/*
 * workload.h: a workload is a registered task (data + model + loss + metric,
 * or an analytic objective) that the trainer can step. An instantiated
 * workload is a ds_task: a struct of function pointers over its own context,
 * owning the flat parameter and gradient buffers.
 *
 * Synthetic workloads know their optimum for the objective actually
 * minimised, f(theta) + l2/2 * ||theta_decayed||^2 (l2 as torch's
 * weight_decay), computed in double from the float32 data the run uses.
 */
#ifndef DS_WORKLOAD_H
#define DS_WORKLOAD_H

#include "../core/backend.h"
#include "../core/model.h"
#include "../core/params.h"

/* What a workload may be configured with (each uses the fields it documents). */
struct ds_workload_args {
    uint64_t seed;
    long dim;           /* quadratic, linreg, logreg: problem dimension */
    long n_train;       /* linreg, logreg: samples */
    long n_eval;
    double kappa;       /* quadratic: condition number */
    double noise;       /* quadratic: gradient noise std; linreg: label noise std */
    double margin;      /* logreg: minimum |w.x| of the generated points */
    double label_noise; /* logreg: fraction of flipped labels */
    int rotate;         /* quadratic: random eigenbasis (1) or axis-aligned (0) */
    double l2;          /* for the optimum */
    int decay_bias;     /* for the optimum: does l2 apply to biases */
    int optimum_known;  /* compute the optimum (0: skip the solve) */
    float dropout;      /* models with dropout layers */
    const char *hidden; /* fmnist-mlp: hidden widths, "256,128" */
    const char *variant;/* fmnist-cnn: "classic" or "small" */
    int normalize;      /* image workloads: standardise pixels by the training mean/std */
    long n_val;         /* supervised workloads: training rows held out for validation */
    long eval_limit;    /* supervised workloads: evaluate on at most this many rows (0: all) */
    int max_batch;      /* largest batch the trainer will ask for (rows per micro-batch) */
};

struct ds_task;

struct ds_task_ops {
    /* Loss and gradient over training rows idx[0..n) (host indices): writes
     * grad_scale times the SUM over the rows of the per-sample gradients into
     * task->grads (zeros when n is 0, as for a rank with no rows) and returns
     * the SUM of the per-sample losses. */
    double (*loss_grad)(struct ds_task *t, const int32_t *idx, int n, const struct ds_pass *pass,
                        float grad_scale);
    /* Mean loss and the metric over a whole split (0 train, 1 eval, 2 validation). */
    void (*evaluate)(struct ds_task *t, int split, double *loss, double *metric);
    void (*init_params)(struct ds_task *t, enum ds_init_scheme scheme, uint64_t seed);
    /* Writes the task's data as .npy files and a workload.json into dir. */
    ds_status (*export_data)(struct ds_task *t, const char *dir, struct ds_err *err);
    void (*destroy)(struct ds_task *t);
};

struct ds_task {
    const struct ds_task_ops *ops;
    void *ctx;
    struct ds_backend *be;           /* not owned */
    const struct ds_param_layout *layout;
    float *params, *grads;           /* [layout->total] backend memory, owned by the task */
    int64_t n_train, n_eval;         /* samples (1 for an analytic objective) */
    int64_t n_val;                   /* validation samples (split 2); 0: none */
    const char *metric;              /* e.g. "accuracy", "mse", "suboptimality" */
    int metric_higher_better;
    /* Known optimum (has_optimum = 0 when unknown). */
    int has_optimum;
    double f_star;                   /* objective at the optimum, penalty included */
    double *x_star;                  /* [layout->total] host, owned; NULL if unknown */
    double mu, L;                    /* curvature bounds of the objective, 0 if unknown */
    char description[256];
};

struct ds_workload {
    const char *name;
    const char *summary;
    long default_batch;
    long default_epochs;   /* 0: use default_steps */
    long default_steps;
    long default_dim;
    double default_noise;
    double default_dropout; /* models with dropout layers */
    enum ds_init_scheme default_init;
    ds_status (*create)(const struct ds_workload_args *a, struct ds_backend *be,
                        struct ds_task *out, struct ds_err *err);
};

const struct ds_workload *ds_workload_find(const char *name);
int ds_workload_count(void);
const struct ds_workload *ds_workload_at(int i);
/* "quadratic, linreg, logreg" */
const char *ds_workload_names(void);

void ds_task_destroy(struct ds_task *t);

extern const struct ds_workload ds_workload_quadratic, ds_workload_linreg, ds_workload_logreg,
    ds_workload_fmnist_softmax, ds_workload_fmnist_mlp, ds_workload_fmnist_cnn;

#endif
