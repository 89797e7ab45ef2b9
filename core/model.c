/* model.c: sequential model over flat buffers; losses. (Maths in model.h.) */
#include "model.h"
#include "philox.h"

#include <math.h>
#include <string.h>

static const char *const ds_layer_names_[DS_LAYER_COUNT] = {"Linear", "ReLU",    "Tanh",
                                                            "Sigmoid", "GELU", "Dropout"};
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
    memset(m, 0, sizeof *m);
    if (in <= 0 || n_specs <= 0 || max_batch <= 0)
        return ds_err_set(err, DS_ERR_INPUT, "model: %d inputs, %d layers, batch %d", in, n_specs,
                          max_batch);
    m->be = be;
    m->in = in;
    m->max_batch = max_batch;
    m->keep_input_grad = keep_input_grad;
    m->seed = seed;
    m->n_layers = n_specs;
    m->layers = DS_XCALLOC((size_t)n_specs, sizeof *m->layers);
    m->io = DS_XCALLOC((size_t)n_specs + 1, sizeof *m->io);

    /* Shapes, parameters and fusion. */
    int feat = in;
    for (int i = 0; i < n_specs; i++) {
        struct ds_layer *L = &m->layers[i];
        L->kind = specs[i].kind;
        L->in = feat;
        L->act = act_of(L->kind);
        switch (L->kind) {
        case DS_LAYER_LINEAR: {
            if (specs[i].units <= 0)
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: Linear with %d units", i,
                                  specs[i].units);
            L->out = specs[i].units;
            char name[DS_PARAM_NAME_MAX];
            int64_t wshape[2] = {L->out, L->in}, bshape[1] = {L->out};
            snprintf(name, sizeof name, "%d.weight", i);
            L->w = ds_params_add(&m->layout, name, 2, wshape, 0);
            snprintf(name, sizeof name, "%d.bias", i);
            L->b = ds_params_add(&m->layout, name, 1, bshape, 1);
            break;
        }
        case DS_LAYER_DROPOUT:
            if (!(specs[i].p >= 0.0f && specs[i].p < 1.0f))
                return ds_model_free(m),
                       ds_err_set(err, DS_ERR_INPUT, "layer %d: dropout p=%g outside [0, 1)", i,
                                  (double)specs[i].p);
            L->p = specs[i].p;
            L->out = feat;
            break;
        case DS_LAYER_RELU:
        case DS_LAYER_TANH:
        case DS_LAYER_SIGMOID:
        case DS_LAYER_GELU:
            L->out = feat;
            if (i > 0 && m->layers[i - 1].kind == DS_LAYER_LINEAR &&
                m->layers[i - 1].act == DS_ACT_NONE) {
                L->fused = 1;
                m->layers[i - 1].act = L->act;
            }
            break;
        default:
            return ds_model_free(m),
                   ds_err_set(err, DS_ERR_INPUT, "layer %d: unknown kind %d", i, (int)L->kind);
        }
        feat = L->out;
    }
    m->out = feat;

    /* One arena for all activations. */
    size_t B = (size_t)max_batch, total = 0;
    for (int i = 0; i < n_specs; i++) {
        struct ds_layer *L = &m->layers[i];
        if (!L->fused) total += B * (size_t)L->out; /* y */
        if (L->kind == DS_LAYER_LINEAR && L->act == DS_ACT_GELU) total += B * (size_t)L->out;
        if (L->kind == DS_LAYER_LINEAR && L->act != DS_ACT_NONE) total += B * (size_t)L->out;
        if (!L->fused && (i > 0 || keep_input_grad)) total += B * (size_t)L->in; /* dx */
    }
    m->params = be->ops->alloc(be, m->layout.total * sizeof(float));
    m->grads = be->ops->alloc(be, m->layout.total * sizeof(float));
    m->arena = be->ops->alloc(be, total * sizeof(float));
    if (!m->params || !m->grads || !m->arena) {
        ds_model_free(m);
        return ds_err_set(err, DS_ERR_NOMEM, "out of memory for a model of %zu parameters and %zu activation floats",
                          m->layout.total, total);
    }
    float *a = m->arena;
    for (int i = 0; i < n_specs; i++) {
        struct ds_layer *L = &m->layers[i];
        if (L->fused) {
            L->y = m->layers[i - 1].y;
        } else {
            L->y = a;
            a += B * (size_t)L->out;
        }
        if (L->kind == DS_LAYER_LINEAR && L->act == DS_ACT_GELU) L->pre = a, a += B * (size_t)L->out;
        if (L->kind == DS_LAYER_LINEAR && L->act != DS_ACT_NONE) L->dz = a, a += B * (size_t)L->out;
        if (!L->fused && (i > 0 || keep_input_grad)) L->dx = a, a += B * (size_t)L->in;
    }
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
        if (L->kind != DS_LAYER_LINEAR) continue;
        double wb, bb;
        switch (scheme) {
        case DS_INIT_XAVIER: wb = sqrt(6.0 / (double)(L->in + L->out)), bb = 0.0; break;
        case DS_INIT_ZEROS: wb = bb = 0.0; break;
        default: wb = bb = 1.0 / sqrt((double)L->in); break;
        }
        /* a zero bound leaves the calloc'd +0.0 (no -0.0 from bound * negative draw) */
        size_t nw = (size_t)L->in * (size_t)L->out;
        for (size_t k = 0; wb > 0.0 && k < nw; k++)
            host[L->w + k] = (float)(wb * (2.0 * ds_rng_uniform(seed, DS_STREAM_INIT, L->w + k) - 1.0));
        for (int k = 0; bb > 0.0 && k < L->out; k++)
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
    float beta = accumulate ? 1.0f : 0.0f;
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
        if (L->fused) continue; /* the Linear before applies the derivative */
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
