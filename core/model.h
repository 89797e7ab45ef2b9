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
 *   Conv2d   y[b,o,i,j] = bias[o] + sum_{c,u,v} W[o,c,u,v] x[b,c, i*s-pad+u, j*s-pad+v]
 *            W [out_ch, in_ch, k, k], b [out_ch] (torch.nn.Conv2d, zero padding)
 *   MaxPool2d y = max over each k x k window at stride s (torch.nn.MaxPool2d(k, s))
 *   AvgPool2d y = mean over each window (torch.nn.AvgPool2d(k, s))
 *   Flatten  [b, c, h, w] -> [b, c*h*w]: the same memory, no copy (torch.nn.Flatten)
 *
 * Tensors between layers are [batch, c, h, w] in PyTorch's NCHW order, so a
 * sample is c*h*w contiguous floats; a plain vector is [batch, n, 1, 1].
 * A convolution is the backend's conv_forward/conv_backward (CPU: im2col +
 * GEMM over cache-sized chunks of the batch; see backend_cpu.c): the input's
 * k*k windows unrolled into cols [in_ch*k*k, samples*oh*ow], W [out_ch,
 * in_ch*k*k] times cols, then one pass to NCHW adding bias and activation.
 * Backward: dW = dz cols^T, dcols = W^T dz, dx = col2im(dcols).
 *
 * A Linear or Conv2d followed by an activation is fused: one bias+activation
 * pass after the GEMM, and one activation-gradient pass before the backward
 * GEMMs. Parameter names follow nn.Sequential's state_dict ("<index>.weight"),
 * counting every layer (activations, pooling, flatten) as PyTorch does.
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
    DS_LAYER_CONV2D,
    DS_LAYER_MAXPOOL2D,
    DS_LAYER_AVGPOOL2D,
    DS_LAYER_FLATTEN,
    DS_LAYER_COUNT
};

struct ds_layer_spec {
    enum ds_layer_kind kind;
    int units;  /* Linear: output features; Conv2d: output channels */
    float p;    /* Dropout: drop probability in [0, 1) */
    int kernel; /* Conv2d, pools: window side */
    int stride; /* Conv2d (0 means 1), pools (0 means kernel) */
    int pad;    /* Conv2d: zeros on each side */
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
    int in_c, in_h, in_w, out_c, out_h, out_w; /* the same as [c, h, w] */
    struct ds_window win; /* Conv2d, pools (batch set per pass) */
    size_t w, b;       /* Linear, Conv2d: offsets of weight and bias in the flat buffers */
    float p;           /* Dropout */
    enum ds_act act;   /* Linear: fused activation; activation layer: its own */
    int fused;         /* activation layer folded into the Linear before it */
    float *y;          /* [max_batch, out] output (backend memory, in the arena) */
    float *pre;        /* [max_batch, out] Linear+GELU: pre-activation */
    float *dz;         /* [max_batch, out] Linear+activation: gradient before the activation */
    float *cols;       /* Conv2d: the backend's workspace (conv_workspace floats) */
    float *dx;         /* [max_batch, in] gradient w.r.t. the input (NULL for the first layer
                          unless the model keeps input gradients) */
};

/* Where a forward/backward pass sits in the run: for dropout masks. */
struct ds_pass {
    uint64_t step;          /* optimizer step (0-based) */
    int64_t row0;           /* first row of this (micro-)batch within the global batch */
    int64_t rows_per_step;  /* global batch size */
    int train;              /* 0: eval mode (dropout is the identity) */
    /* Backward calls grads_ready(ready_ctx, lo) each time a layer's
     * parameter gradients are final: grads[lo, total) will not change again
     * in this pass (layers own ascending ranges, and backward walks them
     * from the last). Data parallelism starts reducing them then. NULL: none. */
    void (*grads_ready)(void *ready_ctx, size_t lo);
    void *ready_ctx;
};

struct ds_model {
    struct ds_backend *be; /* not owned */
    int n_layers;
    struct ds_layer *layers;
    int in, out, max_batch;
    int in_c, in_h, in_w; /* the input's shape per sample */
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
/* The same for inputs of shape [c, h, w] per sample (images). */
ds_status ds_model_create_chw(struct ds_backend *be, int c, int h, int w,
                              const struct ds_layer_spec *specs, int n_specs, int max_batch,
                              int keep_input_grad, uint64_t seed, struct ds_model *m,
                              struct ds_err *err);
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
