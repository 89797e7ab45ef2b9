/* model.c: sequential model over flat buffers; losses. (Maths in model.h.) */
#include "model.h"
#include "philox.h"

#include <math.h>
#include <string.h>

static const char *const ds_layer_names_[DS_LAYER_COUNT] = {
    "Linear", "ReLU", "Tanh", "Sigmoid", "GELU", "Dropout", "Conv2d", "MaxPool2d", "AvgPool2d", "Flatten"};
static const char *const ds_init_names_[DS_INIT_COUNT] = {"default", "xavier", "zeros"};
static const char *const ds_loss_names_[DS_LOSS_COUNT] = {"cross-entropy", "bce-with-logits",
                                                          "mse"};

const char *ds_layer_name(enum ds_layer_kind k)
{
    return (unsigned)k < DS_LAYER_COUNT ? ds_layer_names_[k] : "?";
}
const char *ds_init_name(enum ds_init_scheme s)
{
    return (unsigned)s < DS_INIT_COUNT ? ds_init_names_[s] : "?";
}
const char *ds_loss_name(enum ds_loss_kind k)
{
    return (unsigned)k < DS_LOSS_COUNT ? ds_loss_names_[k] : "?";
}

enum ds_init_scheme ds_init_find(const char *name)
{
    for (int i = 0; i < DS_INIT_COUNT; i++)
        if (strcmp(name, ds_init_names_[i]) == 0) return (enum ds_init_scheme)i;
    return DS_INIT_COUNT;
}

static enum ds_act act_of(enum ds_layer_kind k)
{
    switch (k) {
    case DS_LAYER_RELU: return DS_ACT_RELU;
    case DS_LAYER_TANH: return DS_ACT_TANH;
    case DS_LAYER_SIGMOID: return DS_ACT_SIGMOID;
    case DS_LAYER_GELU: return DS_ACT_GELU;
    default: return DS_ACT_NONE;
    }
}

ds_status ds_model_create(struct ds_backend *be, int in, const struct ds_layer_spec *specs,
                          int n_specs, int max_batch, int keep_input_grad, uint64_t seed,
                          struct ds_model *m, struct ds_err *err)
{
    return ds_model_create_chw(be, in, 1, 1, specs, n_specs, max_batch, keep_input_grad, seed, m,
                               err);
}

static size_t conv_ws(struct ds_backend *be, const struct ds_layer *L, int batch)
{
    struct ds_window g = L->win;
    g.batch = batch;
    return be->ops->conv_workspace(be, &g, L->out_c);
}

static int has_own_output(const struct ds_layer *L)
{
    return !L->fused && L->kind != DS_LAYER_FLATTEN;
}

/* Layers whose input gradient is computed into their own dx buffer. */
static int needs_dx(const struct ds_layer *L, int i, int keep_input_grad)
{
    return has_own_output(L) && (i > 0 || keep_input_grad);
}

ds_status ds_model_create_chw(struct ds_backend *be, int c, int h, int w,
                              const struct ds_layer_spec *specs, int n_specs, int max_batch,
                              int keep_input_grad, uint64_t seed, struct ds_model *m,
                              struct ds_err *err)
{
    memset(m, 0, sizeof *m);
    if (c <= 0 || h <= 0 || w <= 0 || n_specs <= 0 || max_batch <= 0)
        return ds_err_set(err, DS_ERR_INPUT, "model: input [%d, %d, %d], %d layers, batch %d", c,
                          h, w, n_specs, max_batch);
    m->be = be;
    m->in = c * h * w;
    m->in_c = c, m->in_h = h, m->in_w = w;
    m->max_batch = max_batch;
    m->keep_input_grad = keep_input_grad;
    m->seed = seed;
    m->n_layers = n_specs;
    m->layers = DS_XCALLOC((size_t)n_specs, sizeof *m->layers);
    m->io = DS_XCALLOC((size_t)n_specs + 1, sizeof *m->io);

    /* Shapes, parameters and fusion. */
    int fc = c, fh = h, fw = w;
    for (int i = 0; i < n_specs; i++) {
        struct ds_layer *L = &m->layers[i];
        const struct ds_layer_spec *sp = &specs[i];
        L->kind = sp->kind;
        L->in_c = fc, L->in_h = fh, L->in_w = fw;
        L->in = fc * fh * fw;
        L->act = act_of(L->kind);
        L->out_c = fc, L->out_h = fh, L->out_w = fw; /* shape-preserving unless set below */
        char name[DS_PARAM_NAME_MAX];
        switch (L->kind) {
        case DS_LAYER_LINEAR: {
            if (sp->units <= 0)
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: Linear with %d units", i, sp->units);
            L->out_c = sp->units, L->out_h = L->out_w = 1;
            int64_t wshape[2] = {sp->units, L->in}, bshape[1] = {sp->units};
            snprintf(name, sizeof name, "%d.weight", i);
            L->w = ds_params_add(&m->layout, name, 2, wshape, 0);
            snprintf(name, sizeof name, "%d.bias", i);
            L->b = ds_params_add(&m->layout, name, 1, bshape, 1);
            break;
        }
        case DS_LAYER_CONV2D:
        case DS_LAYER_MAXPOOL2D:
        case DS_LAYER_AVGPOOL2D: {
            int conv = L->kind == DS_LAYER_CONV2D;
            int k = sp->kernel, st = sp->stride > 0 ? sp->stride : (conv ? 1 : k);
            int pad = conv ? sp->pad : 0;
            if (k <= 0 || pad < 0 || (conv && sp->units <= 0) || 2 * pad > k)
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: %s with kernel %d, padding %d, %d channels",
                                  i, ds_layer_name(sp->kind), k, pad, sp->units);
            int oh = (fh + 2 * pad - k) / st + 1, ow = (fw + 2 * pad - k) / st + 1;
            if (fh + 2 * pad < k || fw + 2 * pad < k)
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: %s window %d larger than its input %dx%d",
                                  i, ds_layer_name(sp->kind), k, fh, fw);
            L->win = (struct ds_window){.batch = 0, .c = fc, .h = fh, .w = fw, .k = k,
                                        .stride = st, .pad = pad, .oh = oh, .ow = ow};
            L->out_c = conv ? sp->units : fc, L->out_h = oh, L->out_w = ow;
            if (conv) {
                int64_t wshape[4] = {sp->units, fc, k, k}, bshape[1] = {sp->units};
                snprintf(name, sizeof name, "%d.weight", i);
                L->w = ds_params_add(&m->layout, name, 4, wshape, 0);
                snprintf(name, sizeof name, "%d.bias", i);
                L->b = ds_params_add(&m->layout, name, 1, bshape, 1);
            }
            break;
        }
        case DS_LAYER_FLATTEN:
            L->out_c = L->in, L->out_h = L->out_w = 1;
            break;
        case DS_LAYER_DROPOUT:
            if (!(sp->p >= 0.0f && sp->p < 1.0f))
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: dropout p=%g outside [0, 1)", i,
                                  (double)sp->p);
            L->p = sp->p;
            break;
        case DS_LAYER_RELU:
        case DS_LAYER_TANH:
        case DS_LAYER_SIGMOID:
        case DS_LAYER_GELU:
            if (i > 0 &&
                (m->layers[i - 1].kind == DS_LAYER_LINEAR || m->layers[i - 1].kind == DS_LAYER_CONV2D) &&
                m->layers[i - 1].act == DS_ACT_NONE) {
                L->fused = 1;
                m->layers[i - 1].act = L->act;
            }
            break;
        default:
            return ds_model_free(m),
                   ds_err_set(err, DS_ERR_INPUT, "layer %d: unknown kind %d", i, (int)sp->kind);
        }
        L->out = L->out_c * L->out_h * L->out_w;
        fc = L->out_c, fh = L->out_h, fw = L->out_w;
    }
    m->out = fc * fh * fw;

    /* One arena for all activations; two passes: count, then carve. */
    size_t B = (size_t)max_batch, total = 0;
    float *a = NULL;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < n_specs; i++) {
            struct ds_layer *L = &m->layers[i];
            int gemm_layer = L->kind == DS_LAYER_LINEAR || L->kind == DS_LAYER_CONV2D;
            size_t n_out = B * (size_t)L->out, n_in = B * (size_t)L->in;
            size_t want[5] = {
                has_own_output(L) ? n_out : 0,                                    /* y */
                gemm_layer && L->act == DS_ACT_GELU ? n_out : 0,                  /* pre */
                L->kind == DS_LAYER_LINEAR && L->act != DS_ACT_NONE ? n_out : 0,   /* dz */
                L->kind == DS_LAYER_CONV2D ? conv_ws(be, L, max_batch) : 0,        /* workspace */
                needs_dx(L, i, keep_input_grad) ? n_in : 0,                       /* dx */
            };
            float **slot[5] = {&L->y, &L->pre, &L->dz, &L->cols, &L->dx};
            for (int k = 0; k < 5; k++) {
                if (!want[k]) continue;
                if (pass == 0) total += want[k];
                else *slot[k] = a, a += want[k];
            }
        }
        if (pass == 0) {
            m->params = be->ops->alloc(be, m->layout.total * sizeof(float));
            m->grads = be->ops->alloc(be, m->layout.total * sizeof(float));
            m->arena = be->ops->alloc(be, total * sizeof(float));
            if (!m->params || !m->grads || !m->arena) {
                ds_model_free(m);
                return ds_err_set(err, DS_ERR_NOMEM,
                                  "out of memory for a model of %zu parameters and %zu activation floats",
                                  m->layout.total, total);
            }
            a = m->arena;
        }
    }
    for (int i = 0; i < n_specs; i++)
        if (m->layers[i].fused) m->layers[i].y = m->layers[i - 1].y;
    return DS_OK;
}

void ds_model_free(struct ds_model *m)
{
    if (!m) return;
    if (m->be && m->be->ops) {
        m->be->ops->free(m->be, m->params);
        m->be->ops->free(m->be, m->grads);
        m->be->ops->free(m->be, m->arena);
    }
    free(m->layers);
    free(m->io);
    ds_params_free(&m->layout);
    memset(m, 0, sizeof *m);
}

void ds_model_init_params(struct ds_model *m, enum ds_init_scheme scheme, uint64_t seed)
{
    size_t n = m->layout.total;
    float *host = DS_XCALLOC(n ? n : 1, sizeof(float));
    for (int i = 0; i < m->n_layers; i++) {
        const struct ds_layer *L = &m->layers[i];
        if (L->kind != DS_LAYER_LINEAR && L->kind != DS_LAYER_CONV2D) continue;
        /* torch's fans: a Linear's in/out features; a Conv2d's channels times k*k */
        int conv = L->kind == DS_LAYER_CONV2D, kk = conv ? L->win.k * L->win.k : 1;
        int fan_in = conv ? L->in_c * kk : L->in, fan_out = conv ? L->out_c * kk : L->out;
        int n_bias = conv ? L->out_c : L->out;
        double wb, bb;
        switch (scheme) {
        case DS_INIT_XAVIER: wb = sqrt(6.0 / (double)(fan_in + fan_out)), bb = 0.0; break;
        case DS_INIT_ZEROS: wb = bb = 0.0; break;
        default: wb = bb = 1.0 / sqrt((double)fan_in); break;
        }
        /* a zero bound leaves the calloc'd +0.0 (no -0.0 from bound * negative draw) */
        size_t nw = (size_t)fan_in * (size_t)(conv ? L->out_c : L->out);
        for (size_t k = 0; wb > 0.0 && k < nw; k++)
            host[L->w + k] = (float)(wb * (2.0 * ds_rng_uniform(seed, DS_STREAM_INIT, L->w + k) - 1.0));
        for (int k = 0; bb > 0.0 && k < n_bias; k++)
            host[L->b + k] = (float)(bb * (2.0 * ds_rng_uniform(seed, DS_STREAM_INIT, L->b + k) - 1.0));
    }
    m->be->ops->upload(m->be, m->params, host, n * sizeof(float));
    free(host);
}

static uint64_t dropout_offset(const struct ds_pass *pass, int features)
{
    return ((uint64_t)pass->step * (uint64_t)pass->rows_per_step + (uint64_t)pass->row0) *
           (uint64_t)features;
}

const float *ds_model_forward(struct ds_model *m, const float *x, int batch,
                              const struct ds_pass *pass)
{
    DS_ASSERT_MSG(batch > 0 && batch <= m->max_batch, "batch %d, max %d", batch, m->max_batch);
    const struct ds_backend_ops *op = m->be->ops;
    m->io[0] = x;
    for (int i = 0; i < m->n_layers; i++) {
        struct ds_layer *L = &m->layers[i];
        const float *in = m->io[i];
        switch (L->kind) {
        case DS_LAYER_LINEAR:
            op->gemm(m->be, 0, 1, batch, L->out, L->in, 1.0f, in, L->in, m->params + L->w, L->in,
                     0.0f, L->y, L->out);
            op->bias_act(m->be, batch, L->out, L->y, m->params + L->b, L->act, L->pre);
            m->io[i + 1] = L->y;
            break;
        case DS_LAYER_CONV2D: {
            struct ds_window g = L->win;
            g.batch = batch;
            op->conv_forward(m->be, &g, L->out_c, in, m->params + L->w, m->params + L->b, L->act,
                             L->y, L->pre, L->cols);
            m->io[i + 1] = L->y;
            break;
        }
        case DS_LAYER_MAXPOOL2D:
        case DS_LAYER_AVGPOOL2D: {
            struct ds_window g = L->win;
            g.batch = batch;
            op->pool_forward(m->be, L->kind == DS_LAYER_MAXPOOL2D ? DS_POOL_MAX : DS_POOL_AVG, &g,
                             in, L->y);
            m->io[i + 1] = L->y;
            break;
        }
        case DS_LAYER_FLATTEN:
            m->io[i + 1] = in; /* NCHW is already [batch, c*h*w] */
            break;
        case DS_LAYER_DROPOUT:
            if (pass->train && L->p > 0.0f) {
                op->dropout(m->be, (size_t)batch * L->out, L->p, m->seed,
                            DS_STREAM_DROPOUT + (uint32_t)i, dropout_offset(pass, L->out), in, L->y);
                m->io[i + 1] = L->y;
            } else {
                m->io[i + 1] = in; /* identity: no copy */
            }
            break;
        default: /* activations */
            if (!L->fused) {
                op->copy(m->be, L->y, in, (size_t)batch * L->out * sizeof(float));
                op->bias_act(m->be, batch, L->out, L->y, NULL, L->act, NULL);
            }
            m->io[i + 1] = L->y;
            break;
        }
    }
    return m->io[m->n_layers];
}

const float *ds_model_backward(struct ds_model *m, const float *dout, int batch,
                               const struct ds_pass *pass, int accumulate)
{
    const struct ds_backend_ops *op = m->be->ops;
    const float *g = dout;
    /* Zero the gradients once in one parallel pass and let every layer add
     * into them: OpenBLAS's beta = 0 pass over each dW ran single-threaded
     * and took a tenth of the MLP's step. */
    if (!accumulate) op->fill(m->be, m->grads, m->layout.total, 0.0f);
    accumulate = 1;
    float beta = 1.0f;
    for (int i = m->n_layers - 1; i >= 0; i--) {
        struct ds_layer *L = &m->layers[i];
        const float *in = m->io[i];
        size_t n_in = (size_t)batch * L->in;
        switch (L->kind) {
        case DS_LAYER_LINEAR: {
            const float *d = g;
            if (L->act != DS_ACT_NONE) {
                op->act_backward(m->be, (size_t)batch * L->out, L->act, L->pre, L->y, g, L->dz);
                d = L->dz;
            }
            /* dW = d^T x, db = column sums of d, dx = d W */
            op->gemm(m->be, 1, 0, L->out, L->in, batch, 1.0f, d, L->out, in, L->in, beta,
                     m->grads + L->w, L->in);
            op->col_sum(m->be, batch, L->out, d, m->grads + L->b, accumulate);
            if (L->dx)
                op->gemm(m->be, 0, 0, batch, L->in, L->out, 1.0f, d, L->out, m->params + L->w,
                         L->in, 0.0f, L->dx, L->in);
            break;
        }
        case DS_LAYER_CONV2D: {
            struct ds_window gw = L->win;
            gw.batch = batch;
            op->conv_backward(m->be, &gw, L->out_c, L->act, in, m->params + L->w, L->y, L->pre, g,
                              m->grads + L->w, m->grads + L->b, L->dx, accumulate, L->cols);
            break;
        }
        case DS_LAYER_MAXPOOL2D:
        case DS_LAYER_AVGPOOL2D:
            if (L->dx) {
                struct ds_window gw = L->win;
                gw.batch = batch;
                op->pool_backward(m->be, L->kind == DS_LAYER_MAXPOOL2D ? DS_POOL_MAX : DS_POOL_AVG,
                                  &gw, in, L->y, g, L->dx);
            }
            break;
        case DS_LAYER_FLATTEN:
            continue; /* the gradient passes through unchanged */
        case DS_LAYER_DROPOUT:
            if (!L->dx) break;
            if (pass->train && L->p > 0.0f)
                op->dropout(m->be, n_in, L->p, m->seed, DS_STREAM_DROPOUT + (uint32_t)i,
                            dropout_offset(pass, L->out), g, L->dx);
            else
                op->copy(m->be, L->dx, g, n_in * sizeof(float));
            break;
        default: /* activations */
            if (L->dx) op->act_backward(m->be, n_in, L->act, in, L->y, g, L->dx);
            break;
        }
        if (pass->grads_ready && (L->kind == DS_LAYER_LINEAR || L->kind == DS_LAYER_CONV2D))
            pass->grads_ready(pass->ready_ctx, L->w < L->b ? L->w : L->b);
        if (L->fused) continue; /* the Linear or Conv2d before applies the derivative */
        if (!L->dx) return NULL;
        g = L->dx;
    }
    return g;
}

double ds_loss_eval(struct ds_backend *be, enum ds_loss_kind kind, int rows, int cols,
                    const float *out, const void *targets, float *dout, float grad_scale,
                    int64_t *correct)
{
    switch (kind) {
    case DS_LOSS_XENT:
        return be->ops->softmax_xent(be, rows, cols, out, targets, dout, grad_scale, correct);
    case DS_LOSS_BCE: /* per-sample loss: the mean over its cols, as BCEWithLogitsLoss */
        return be->ops->bce_logits(be, (size_t)rows * cols, out, targets, dout,
                                   grad_scale / (float)cols, correct) /
               (double)cols;
    case DS_LOSS_MSE:
        if (correct) *correct = 0;
        return be->ops->sq_error(be, (size_t)rows * cols, out, targets, dout,
                                 grad_scale / (float)cols) /
               (double)cols;
    default: DS_ASSERT_MSG(0, "unknown loss %d", (int)kind);
    }
    return NAN;
}
