/*
 * model.h: layers with forward and backward, composed as a sequential model
 * that owns ONE flat parameter buffer and ONE flat gradient buffer (layers
 * hold offsets into them), plus the losses on top.
 *
 *   Linear   y = x W^T + b         W [out, in], b [out] (torch.nn.Linear)
 *   ReLU     y = max(x, 0)
 *   Tanh     y = tanh(x)
 *   Sigmoid  y = 1 / (1 + exp(-x))
 *   GELU     y = x Phi(x)          exact (erf) form, torch.nn.GELU()
 *   Dropout  y = x m / (1 - p)     m ~ Bernoulli(1 - p) from Philox at
 *            (seed, DS_STREAM_DROPOUT + layer, (step * rows_per_step + row) * features + j)
 *            so a sample's mask depends on its place in the global batch only.
 *
 * A Linear followed by an activation is fused: one bias+activation pass after
 * the GEMM, and one activation-gradient pass before the backward GEMMs.
 * Parameter names follow nn.Sequential's state_dict ("<index>.weight").
 */
#ifndef DS_MODEL_H
#define DS_MODEL_H

#include "backend.h"
#include "params.h"

enum ds_layer_kind {
    DS_LAYER_LINEAR,
    DS_LAYER_RELU,
    DS_LAYER_TANH,
    DS_LAYER_SIGMOID,
    DS_LAYER_GELU,
    DS_LAYER_DROPOUT,
    DS_LAYER_COUNT
};

struct ds_layer_spec {
    enum ds_layer_kind kind;
    int units; /* Linear: output features */
    float p;   /* Dropout: drop probability in [0, 1) */
};

enum ds_init_scheme {
    DS_INIT_DEFAULT, /* torch.nn.Linear's: W, b ~ U(-1/sqrt(in), 1/sqrt(in)) */
    DS_INIT_XAVIER,  /* Glorot uniform: W ~ U(+-sqrt(6 / (in + out))), b = 0 */
    DS_INIT_ZEROS,
    DS_INIT_COUNT
};
const char *ds_init_name(enum ds_init_scheme s);
enum ds_init_scheme ds_init_find(const char *name); /* DS_INIT_COUNT if unknown */

struct ds_layer {
    enum ds_layer_kind kind;
    int in, out;       /* features per sample */
    size_t w, b;       /* Linear: offsets of weight and bias in the flat buffers */
    float p;           /* Dropout */
    enum ds_act act;   /* Linear: fused activation; activation layer: its own */
    int fused;         /* activation layer folded into the Linear before it */
    float *y;          /* [max_batch, out] output (backend memory, in the arena) */
    float *pre;        /* [max_batch, out] Linear+GELU: pre-activation */
    float *dz;         /* [max_batch, out] Linear+activation: gradient before the activation */
    float *dx;         /* [max_batch, in] gradient w.r.t. the input (NULL for the first layer
                          unless the model keeps input gradients) */
};

/* Where a forward/backward pass sits in the run: for dropout masks. */
struct ds_pass {
    uint64_t step;          /* optimizer step (0-based) */
    int64_t row0;           /* first row of this (micro-)batch within the global batch */
    int64_t rows_per_step;  /* global batch size */
    int train;              /* 0: eval mode (dropout is the identity) */
};

struct ds_model {
    struct ds_backend *be; /* not owned */
    int n_layers;
    struct ds_layer *layers;
    int in, out, max_batch;
    int keep_input_grad;
    uint64_t seed;
    struct ds_param_layout layout;
    float *params;      /* [layout.total] backend memory, owned */
    float *grads;       /* [layout.total] backend memory, owned */
    float *arena;       /* activations, owned */
    const float **io;   /* [n_layers + 1]: io[0] the input, io[i + 1] layer i's output */
};

/* Builds the model for inputs of `in` features and batches up to max_batch.
 * Parameters are zero until ds_model_init_params. keep_input_grad: the first
 * layer also computes the gradient w.r.t. the input (gradient checks). */
ds_status ds_model_create(struct ds_backend *be, int in, const struct ds_layer_spec *specs,
                          int n_specs, int max_batch, int keep_input_grad, uint64_t seed,
                          struct ds_model *m, struct ds_err *err);
void ds_model_free(struct ds_model *m);

/* Initialises every parameter from Philox at (seed, DS_STREAM_INIT, offset). */
void ds_model_init_params(struct ds_model *m, enum ds_init_scheme scheme, uint64_t seed);

/* Forward over `batch` rows of x [batch, in]; returns the output [batch, out]
 * (backend memory owned by the model, valid until the next forward). */
const float *ds_model_forward(struct ds_model *m, const float *x, int batch,
                              const struct ds_pass *pass);

/* Backward after ds_model_forward on the same x: dout [batch, out] is the loss
 * gradient w.r.t. the output. Writes the parameter gradients into m->grads
 * (adds to them if accumulate). Returns the input gradient if kept, else NULL. */
const float *ds_model_backward(struct ds_model *m, const float *dout, int batch,
                               const struct ds_pass *pass, int accumulate);

const char *ds_layer_name(enum ds_layer_kind k);

/* Losses over a batch, PyTorch's definitions (reduction='mean' is the caller's
 * grad_scale = 1/batch). Each returns the SUM over samples of the loss. */
enum ds_loss_kind {
    DS_LOSS_XENT, /* softmax + cross-entropy, integer labels: nn.CrossEntropyLoss */
    DS_LOSS_BCE,  /* sigmoid + binary cross-entropy: nn.BCEWithLogitsLoss */
    DS_LOSS_MSE,  /* mean squared error: nn.MSELoss (mean over every element) */
    DS_LOSS_COUNT
};

/* targets: int32 labels for XENT, floats [rows, cols] otherwise. For BCE and
 * MSE the per-sample loss is the mean over its cols, as torch's losses average
 * over all elements. dout (may be NULL) receives grad_scale * d(sum)/d(out). */
double ds_loss_eval(struct ds_backend *be, enum ds_loss_kind kind, int rows, int cols,
                    const float *out, const void *targets, float *dout, float grad_scale,
                    int64_t *correct);
const char *ds_loss_name(enum ds_loss_kind k);

#endif
