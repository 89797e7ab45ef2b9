/*
 * test_gradcheck.c: every layer, stack and loss against central differences
 * at random shapes (batch 1..7, features 1..9) and random inputs, with fixed
 * seeds so a failure reproduces; the values of the losses on cases small
 * enough to write down, and their stability at logits of +-1e4; dropout's
 * rate, scale, eval identity and independence from how a batch is split;
 * accumulate=1; and a supervised task's micro-batched loss_grad against one
 * whole batch (and against central differences).
 *
 * Each test prints "# <case>: worst relative error ..." so the margin under
 * the tolerance is visible in the TAP log.
 */
#include "testutil.h"
#include "gcutil.h"

#include "../core/backend.h"
#include "../core/model.h"
#include "../workloads/dataset.h"

/*
 * Step and tolerances. The forward pass is float32, so a value of the scalar
 * L = sum(w . y) carries a rounding error of about 1e-7 per output that the
 * perturbation touches (errors of untouched outputs cancel in L+ - L-); divided
 * by 2h that is ~1e-5 per gradient element at h = 5e-3. The truncation error of
 * the central difference is h^2/6 |f'''| ~ 4e-6 for the smooth activations at
 * inputs of order 1 (up to ~5e-4 seen where dropout's 1/(1 - p) scale steepens
 * a tanh behind it: f''' grows as the cube of that scale). Both sit below
 * GC_TOL = 2e-3 on the relative norm ||analytic - numeric|| / ||numeric||,
 * while a wrong derivative (a missing factor, a wrong sign, an input gradient
 * from the wrong buffer) gives errors of order 1, and even a 1% error in one
 * activation's derivative fails every stack that holds it. The denominator is floored at GC_FLOOR * sqrt(n) (an RMS element
 * of GC_FLOOR): a gradient that small (a sigmoid saturated, most elements
 * dropped) is judged by its absolute error GC_TOL * GC_FLOOR per element,
 * still ten times the rounding noise above.
 * h is not smaller because of that rounding noise, and not larger because of
 * ReLU's kink: inputs whose pre-activation is within GC_RELU_MARGIN = 10 h of
 * zero are resampled, and a trial whose ReLU pattern still changes under a
 * perturbation is drawn again (counted and printed).
 */
#define GC_H 5e-3
#define GC_TOL 2e-3
#define GC_FLOOR 0.05
#define GC_RELU_MARGIN (10 * GC_H)
#define GC_TRIALS 6
#define GC_MAX_REDRAWS 200

#define MAXB 7 /* batch 1..MAXB */
#define MAXF 9 /* features 1..MAXF */

/* ||a - b|| / max(||b||, GC_FLOOR sqrt(n)), in double: b is the reference. */
static double gc_rel_err(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    double floor2 = GC_FLOOR * GC_FLOOR * (double)n;
    if (n == 0) return 0.0; /* nothing to compare (an activation has no parameters) */
    return sqrt(num / (den > floor2 ? den : floor2));
}

/* ============================ layers and stacks ============================ */

/* A stack to check. units < 0: random in 1..MAXF; p < 0: random in [0.1, 0.8). */
struct gc_case {
    const char *name;
    int n;
    struct ds_layer_spec specs[8];
    int train;        /* pass.train */
    int fused_layers; /* how many activation layers the model must fuse */
};

#define LIN {.kind = DS_LAYER_LINEAR, .units = -1, .p = 0.0f}
#define RELU {.kind = DS_LAYER_RELU, .units = 0, .p = 0.0f}
#define TANH {.kind = DS_LAYER_TANH, .units = 0, .p = 0.0f}
#define SIGM {.kind = DS_LAYER_SIGMOID, .units = 0, .p = 0.0f}
#define GELU {.kind = DS_LAYER_GELU, .units = 0, .p = 0.0f}
#define DROP {.kind = DS_LAYER_DROPOUT, .units = 0, .p = -1.0f}

static const struct gc_case gc_cases[] = {
    {"Linear", 1, {LIN}, 1, 0},
    {"ReLU", 1, {RELU}, 1, 0},
    {"Tanh", 1, {TANH}, 1, 0},
    {"Sigmoid", 1, {SIGM}, 1, 0},
    {"GELU", 1, {GELU}, 1, 0},
    {"Dropout(train)", 1, {DROP}, 1, 0},
    {"Dropout(eval)", 1, {DROP}, 0, 0},
    {"Linear+ReLU(fused)", 2, {LIN, RELU}, 1, 1},
    {"Linear+Tanh(fused)", 2, {LIN, TANH}, 1, 1},
    {"Linear+Sigmoid(fused)", 2, {LIN, SIGM}, 1, 1},
    {"Linear+GELU(fused)", 2, {LIN, GELU}, 1, 1},
    {"Linear-Dropout-ReLU(unfused)", 3, {LIN, DROP, RELU}, 1, 0},
    {"Linear-Dropout-Tanh(unfused)", 3, {LIN, DROP, TANH}, 1, 0},
    {"Linear-Dropout-Sigmoid(unfused)", 3, {LIN, DROP, SIGM}, 1, 0},
    {"Linear-Dropout-GELU(unfused)", 3, {LIN, DROP, GELU}, 1, 0},
    {"Linear-Linear", 2, {LIN, LIN}, 1, 0},
    {"Linear-GELU-Dropout-Linear-Sigmoid", 5, {LIN, GELU, DROP, LIN, SIGM}, 1, 2},
    {"Tanh-Linear-ReLU-Linear-GELU", 5, {TANH, LIN, RELU, LIN, GELU}, 1, 2},
    {"Linear-ReLU-Tanh-Linear-Sigmoid", 5, {LIN, RELU, TANH, LIN, SIGM}, 1, 2},
    {"Dropout-Linear-Sigmoid-Dropout-Linear", 5, {DROP, LIN, SIGM, DROP, LIN}, 1, 1},
    {"GELU-Dropout-ReLU-Linear-Tanh-Dropout-Linear", 7,
     {GELU, DROP, RELU, LIN, TANH, DROP, LIN}, 1, 1},
    {"Linear-Dropout(eval)-GELU-Linear-ReLU", 5, {LIN, DROP, GELU, LIN, RELU}, 0, 1},
};
#define N_GC_CASES DS_ARRAY_LEN(gc_cases)

static int is_activation(enum ds_layer_kind k)
{
    return k == DS_LAYER_RELU || k == DS_LAYER_TANH || k == DS_LAYER_SIGMOID || k == DS_LAYER_GELU;
}

/* One model under test with its host mirrors. */
struct gc_model {
    struct ds_model m;
    struct ds_pass pass;
    int batch, in, out;
    size_t np;
    float *hp;       /* [np] host parameters */
    float *hx;       /* [batch, in] host input */
    float *hw;       /* [batch, out] weights of L */
    float *x;        /* backend copy of hx */
    float *w;        /* backend copy of hw (the dout of L) */
    float *hy;       /* [batch, out] scratch */
    unsigned char *relu_base; /* the ReLU pattern at the base point */
    size_t relu_n;
    int kinked;      /* a perturbation changed the ReLU pattern */
};

/* The ReLU pattern (y > 0) of every ReLU layer, concatenated. */
static size_t relu_pattern(struct gc_model *g, unsigned char *pat)
{
    size_t k = 0;
    float *buf = xcalloc((size_t)MAXB * 64, sizeof(float));
    for (int i = 0; i < g->m.n_layers; i++) {
        const struct ds_layer *L = &g->m.layers[i];
        if (L->kind != DS_LAYER_RELU) continue;
        size_t n = (size_t)g->batch * L->out;
        dev_get(buf, L->y, n);
        for (size_t j = 0; j < n; j++) {
            if (pat) pat[k] = buf[j] > 0.0f;
            k++;
        }
    }
    free(buf);
    return k;
}

/* L = sum(w . y) in double over the model's output at the current parameters. */
static double gc_eval(struct gc_model *g)
{
    const float *y = ds_model_forward(&g->m, g->x, g->batch, &g->pass);
    size_t n = (size_t)g->batch * g->out;
    dev_get(g->hy, y, n);
    double L = 0.0;
    for (size_t i = 0; i < n; i++) L += (double)g->hw[i] * (double)g->hy[i];
    if (g->relu_n) {
        unsigned char *pat = xcalloc(g->relu_n, 1);
        relu_pattern(g, pat);
        if (memcmp(pat, g->relu_base, g->relu_n) != 0) g->kinked = 1;
        free(pat);
    }
    return L;
}

/* Per row: the smallest |pre-activation| over every ReLU layer, after a
 * forward. Exact zeros are skipped: they are elements a Dropout before the
 * ReLU dropped, which stay zero under every perturbation (no kink crossed). */
static void relu_row_margin(struct gc_model *g, double *row_min)
{
    for (int r = 0; r < g->batch; r++) row_min[r] = INFINITY;
    float *in = xcalloc((size_t)MAXB * 64, sizeof(float));
    for (int i = 0; i < g->m.n_layers; i++) {
        const struct ds_layer *L = &g->m.layers[i];
        if (L->kind != DS_LAYER_RELU) continue;
        if (L->fused) {
            /* z = x W^T + b of the Linear before, from its input io[i - 1] */
            const struct ds_layer *lin = &g->m.layers[i - 1];
            dev_get(in, g->m.io[i - 1], (size_t)g->batch * lin->in);
            for (int r = 0; r < g->batch; r++)
                for (int o = 0; o < lin->out; o++) {
                    double z = g->hp[lin->b + (size_t)o];
                    for (int j = 0; j < lin->in; j++)
                        z += (double)in[(size_t)r * lin->in + j] *
                             (double)g->hp[lin->w + (size_t)o * lin->in + j];
                    if (fabs(z) < row_min[r]) row_min[r] = fabs(z);
                }
        } else {
            dev_get(in, g->m.io[i], (size_t)g->batch * L->in);
            for (int r = 0; r < g->batch; r++)
                for (int j = 0; j < L->in; j++) {
                    double z = fabs((double)in[(size_t)r * L->in + j]);
                    if (z != 0.0 && z < row_min[r]) row_min[r] = z;
                }
        }
    }
    free(in);
}

/* Central difference of gc_eval in element k of host array h mirrored at dev. */
static double gc_central(struct gc_model *g, float *h, float *dev, size_t k)
{
    float orig = h[k];
    float plus = (float)(orig + GC_H), minus = (float)(orig - GC_H);
    dev_put(dev + k, &plus, 1);
    double lp = gc_eval(g);
    dev_put(dev + k, &minus, 1);
    double lm = gc_eval(g);
    dev_put(dev + k, &orig, 1);
    /* divide by the step actually taken in float */
    return (lp - lm) / ((double)plus - (double)minus);
}

struct gc_worst {
    double params, input;
    int trials, redraws;
};

/* One random trial of a case. Returns 0 when done, 1 when it must be redrawn
 * (a ReLU pre-activation could not be moved away from its kink). */
static int gc_trial(const struct gc_case *c, struct rng *r, struct gc_worst *worst)
{
    struct ds_layer_spec specs[8];
    memcpy(specs, c->specs, sizeof specs);
    for (int i = 0; i < c->n; i++) {
        if (specs[i].kind == DS_LAYER_LINEAR && specs[i].units < 0)
            specs[i].units = rng_int(r, 1, MAXF);
        if (specs[i].kind == DS_LAYER_DROPOUT && specs[i].p < 0)
            specs[i].p = (float)rng_unif(r, 0.1, 0.8);
    }
    struct gc_model g;
    memset(&g, 0, sizeof g);
    g.batch = rng_int(r, 1, MAXB);
    g.in = rng_int(r, 1, MAXF);
    struct ds_err err = {{0}};
    uint64_t seed = rng_next(r);
    ds_status st = ds_model_create(&g_be, g.in, specs, c->n, g.batch, 1, seed, &g.m, &err);
    if (st != DS_OK) fail_msg("%s: ds_model_create: %s", c->name, err.msg);
    g.out = g.m.out;
    g.np = g.m.layout.total;

    /* the path the case claims: fused exactly where an activation follows a Linear */
    int fused = 0;
    for (int i = 0; i < c->n; i++) {
        int want = is_activation(specs[i].kind) && i > 0 && specs[i - 1].kind == DS_LAYER_LINEAR;
        assert_int_equal(g.m.layers[i].fused, want);
        fused += g.m.layers[i].fused;
    }
    assert_int_equal(fused, c->fused_layers);

    g.pass.step = (uint64_t)rng_int(r, 0, 100);
    g.pass.rows_per_step = g.batch + rng_int(r, 0, 8);
    g.pass.row0 = rng_int(r, 0, (int)(g.pass.rows_per_step - g.batch));
    g.pass.train = c->train;

    g.hp = xcalloc(g.np, sizeof(float));
    g.hx = xcalloc((size_t)g.batch * g.in, sizeof(float));
    g.hw = xcalloc((size_t)g.batch * g.out, sizeof(float));
    g.hy = xcalloc((size_t)g.batch * g.out, sizeof(float));
    g.x = dev_alloc((size_t)g.batch * g.in);
    g.w = dev_alloc((size_t)g.batch * g.out);
    /* parameters of order 1 (biases too, so they matter), inputs in (-2, 2) */
    rng_fill(r, g.hp, g.np, -1.0, 1.0);
    rng_fill(r, g.hx, (size_t)g.batch * g.in, -2.0, 2.0);
    rng_fill(r, g.hw, (size_t)g.batch * g.out, -1.0, 1.0);
    dev_put(g.m.params, g.hp, g.np);
    dev_put(g.w, g.hw, (size_t)g.batch * g.out);

    /* Move inputs away from ReLU kinks: resample the rows too close to one. */
    int redraw = 0;
    g.relu_n = relu_pattern(&g, NULL);
    if (g.relu_n) {
        double row_min[MAXB];
        int ok = 0;
        for (int attempt = 0; attempt < 100 && !ok; attempt++) {
            dev_put(g.x, g.hx, (size_t)g.batch * g.in);
            ds_model_forward(&g.m, g.x, g.batch, &g.pass);
            relu_row_margin(&g, row_min);
            ok = 1;
            for (int rr = 0; rr < g.batch; rr++)
                if (row_min[rr] < GC_RELU_MARGIN) {
                    ok = 0;
                    rng_fill(r, g.hx + (size_t)rr * g.in, (size_t)g.in, -2.0, 2.0);
                }
        }
        if (!ok) redraw = 1;
    }
    dev_put(g.x, g.hx, (size_t)g.batch * g.in);

    double *an_p = xcalloc(g.np, sizeof(double)), *nu_p = xcalloc(g.np, sizeof(double));
    size_t nx = (size_t)g.batch * g.in;
    double *an_x = xcalloc(nx, sizeof(double)), *nu_x = xcalloc(nx, sizeof(double));
    if (!redraw) {
        /* analytic: dL/dy = w */
        g.relu_base = xcalloc(g.relu_n ? g.relu_n : 1, 1);
        ds_model_forward(&g.m, g.x, g.batch, &g.pass);
        relu_pattern(&g, g.relu_base);
        const float *dx = ds_model_backward(&g.m, g.w, g.batch, &g.pass, 0);
        assert_non_null(dx);
        float *tmp = xcalloc(g.np > nx ? g.np : nx, sizeof(float));
        dev_get(tmp, g.m.grads, g.np);
        for (size_t k = 0; k < g.np; k++) an_p[k] = tmp[k];
        dev_get(tmp, dx, nx);
        for (size_t k = 0; k < nx; k++) an_x[k] = tmp[k];
        free(tmp);

        /* numeric */
        for (size_t k = 0; k < g.np; k++) nu_p[k] = gc_central(&g, g.hp, g.m.params, k);
        for (size_t k = 0; k < nx; k++) nu_x[k] = gc_central(&g, g.hx, g.x, k);
        if (g.kinked) redraw = 1;
    }
    if (!redraw) {
        double ep = gc_rel_err(an_p, nu_p, g.np), ex = gc_rel_err(an_x, nu_x, nx);
        if (ep > worst->params) worst->params = ep;
        if (ex > worst->input) worst->input = ex;
        worst->trials++;
        if (!(ep <= GC_TOL) || !(ex <= GC_TOL)) {
            /* show the first offending elements, then fail */
            for (size_t k = 0; k < g.np && k < 40; k++)
                if (fabs(an_p[k] - nu_p[k]) > GC_TOL * (fabs(nu_p[k]) + GC_FLOOR))
                    print_message("#   param %zu: analytic %.8g numeric %.8g\n", k, an_p[k],
                                  nu_p[k]);
            for (size_t k = 0; k < nx && k < 40; k++)
                if (fabs(an_x[k] - nu_x[k]) > GC_TOL * (fabs(nu_x[k]) + GC_FLOOR))
                    print_message("#   input %zu: analytic %.8g numeric %.8g\n", k, an_x[k],
                                  nu_x[k]);
            fail_msg("%s (batch %d, in %d, out %d, %zu params, train %d): relative error "
                     "params %.3g, input %.3g > tol %.3g",
                     c->name, g.batch, g.in, g.out, g.np, c->train, ep, ex, GC_TOL);
        }
    }
    free(an_p), free(nu_p), free(an_x), free(nu_x);
    free(g.hp), free(g.hx), free(g.hw), free(g.hy), free(g.relu_base);
    dev_free(g.x), dev_free(g.w);
    ds_model_free(&g.m);
    return redraw;
}

static void test_layer_gradcheck(void **state)
{
    const struct gc_case *c = *state;
    /* the seed depends on the case only, so one case reproduces alone */
    struct rng r = {0x5eed0000u + (uint64_t)(c - gc_cases) * 7919u};
    struct gc_worst worst = {0};
    while (worst.trials < GC_TRIALS) {
        if (gc_trial(c, &r, &worst)) {
            worst.redraws++;
            if (worst.redraws > GC_MAX_REDRAWS)
                fail_msg("%s: %d trials redrawn for ReLU kinks", c->name, worst.redraws);
        }
    }
    print_message("# %-44s worst rel err: params %.2e input %.2e "
                  "(tol %.0e, %d trials, %d redrawn)\n",
                  c->name, worst.params, worst.input, GC_TOL, worst.trials, worst.redraws);
}

/* ================================== losses ================================== */

static double loss_mean(enum ds_loss_kind kind, int rows, int cols, const float *out,
                        const void *targets)
{
    return ds_loss_eval(&g_be, kind, rows, cols, out, targets, NULL, 0.0f, NULL) / rows;
}

static void loss_gradcheck(enum ds_loss_kind kind, uint64_t seed)
{
    struct rng r = {seed};
    double worst = 0.0;
    for (int t = 0; t < 3 * GC_TRIALS; t++) {
        int rows = rng_int(&r, 1, MAXB);
        int cols = kind == DS_LOSS_BCE ? rng_int(&r, 1, MAXF) : rng_int(&r, 2, MAXF);
        size_t n = (size_t)rows * cols;
        float *hz = xcalloc(n, sizeof(float)), *hd = xcalloc(n, sizeof(float));
        float *z = dev_alloc(n), *d = dev_alloc(n), *ty = dev_alloc(n);
        int32_t *hl = xcalloc((size_t)rows, sizeof(int32_t));
        int32_t *tl = g_be.ops->alloc(&g_be, (size_t)rows * sizeof(int32_t));
        assert_non_null(tl);
        float *hy = xcalloc(n, sizeof(float));
        rng_fill(&r, hz, n, -3.0, 3.0);
        const void *targets;
        if (kind == DS_LOSS_XENT) {
            for (int i = 0; i < rows; i++) hl[i] = rng_int(&r, 0, cols - 1);
            g_be.ops->upload(&g_be, tl, hl, (size_t)rows * sizeof(int32_t));
            targets = tl;
        } else {
            for (size_t i = 0; i < n; i++)
                hy[i] = kind == DS_LOSS_BCE ? (float)rng_int(&r, 0, 1) : (float)rng_unif(&r, -2, 2);
            dev_put(ty, hy, n);
            targets = ty;
        }
        dev_put(z, hz, n);
        double sum = ds_loss_eval(&g_be, kind, rows, cols, z, targets, d, 1.0f / rows, NULL);
        assert_true(isfinite(sum));
        /* the sum and the mean agree */
        assert_close(sum / rows, loss_mean(kind, rows, cols, z, targets), 1e-12 * (1 + fabs(sum)));
        dev_get(hd, d, n);
        double *an = xcalloc(n, sizeof(double)), *nu = xcalloc(n, sizeof(double));
        for (size_t k = 0; k < n; k++) {
            an[k] = hd[k];
            float orig = hz[k], plus = (float)(orig + GC_H), minus = (float)(orig - GC_H);
            dev_put(z + k, &plus, 1);
            double lp = loss_mean(kind, rows, cols, z, targets);
            dev_put(z + k, &minus, 1);
            double lm = loss_mean(kind, rows, cols, z, targets);
            dev_put(z + k, &orig, 1);
            nu[k] = (lp - lm) / ((double)plus - (double)minus);
        }
        /* the gradient of a mean is of order 1/rows: compare relative to that scale */
        double e = gc_rel_err(an, nu, n);
        if (e > worst) worst = e;
        if (!(e <= GC_TOL)) {
            for (size_t k = 0; k < n && k < 40; k++)
                print_message("#   logit %zu: analytic %.8g numeric %.8g\n", k, an[k], nu[k]);
            fail_msg("%s (rows %d, cols %d): relative error %.3g > tol %.3g", ds_loss_name(kind),
                     rows, cols, e, GC_TOL);
        }
        free(an), free(nu), free(hz), free(hd), free(hl), free(hy);
        dev_free(z), dev_free(d), dev_free(ty), dev_free(tl);
    }
    print_message("# %-44s worst rel err: %.2e (tol %.0e, %d trials)\n", ds_loss_name(kind), worst,
                  GC_TOL, 3 * GC_TRIALS);
}

static void test_xent_gradcheck(void **state)
{
    (void)state;
    loss_gradcheck(DS_LOSS_XENT, 101);
}
static void test_bce_gradcheck(void **state)
{
    (void)state;
    loss_gradcheck(DS_LOSS_BCE, 102);
}
static void test_mse_gradcheck(void **state)
{
    (void)state;
    loss_gradcheck(DS_LOSS_MSE, 103);
}

/* Runs a loss on host arrays; returns the sum, writes the gradient to hd. */
static double loss_host(enum ds_loss_kind kind, int rows, int cols, const float *hz,
                        const void *htargets, float *hd, float scale, int64_t *correct)
{
    size_t n = (size_t)rows * cols;
    float *z = dev_alloc(n), *d = dev_alloc(n);
    size_t tbytes = kind == DS_LOSS_XENT ? (size_t)rows * sizeof(int32_t) : n * sizeof(float);
    void *t = g_be.ops->alloc(&g_be, tbytes);
    assert_non_null(t);
    dev_put(z, hz, n);
    g_be.ops->upload(&g_be, t, htargets, tbytes);
    double s = ds_loss_eval(&g_be, kind, rows, cols, z, t, d, scale, correct);
    dev_get(hd, d, n);
    dev_free(z), dev_free(d), dev_free(t);
    return s;
}

/* Values against formulas written out by hand. */
static void test_loss_values(void **state)
{
    (void)state;
    float d[12];
    int64_t correct = -1;

    /* cross-entropy of uniform logits is log(C), gradient (1/C - onehot) * scale */
    {
        float z[2 * 5];
        for (int i = 0; i < 10; i++) z[i] = 3.7f;
        int32_t y[2] = {4, 0};
        double s = loss_host(DS_LOSS_XENT, 2, 5, z, y, d, 0.5f, NULL);
        assert_close(s, 2 * log(5.0), 1e-6);
        for (int r = 0; r < 2; r++)
            for (int k = 0; k < 5; k++)
                assert_close(d[r * 5 + k], 0.5 * (0.2 - (k == y[r])), 1e-7);
    }
    /* cross-entropy of (1, 2, 3): log(e + e^2 + e^3) - z_y, softmax - onehot */
    {
        float z[3] = {1, 2, 3};
        int32_t y[1] = {0};
        double lse = log(exp(1.0) + exp(2.0) + exp(3.0));
        double s = loss_host(DS_LOSS_XENT, 1, 3, z, y, d, 1.0f, &correct);
        assert_close(s, lse - 1.0, 1e-6);
        for (int k = 0; k < 3; k++)
            assert_close(d[k], exp(z[k] - lse) - (k == 0), 1e-6);
        assert_int_equal(correct, 0); /* argmax is class 2 */
    }
    /* BCE with logits: log(1 + e^-z) for y = 1, log(1 + e^z) for y = 0; grad sigmoid(z) - y */
    {
        float z[4] = {0.0f, 2.0f, -3.0f, 1.5f}, y[4] = {1, 1, 1, 0};
        double want = log(2.0) + log1p(exp(-2.0)) + log1p(exp(3.0)) + log1p(exp(1.5));
        double s = loss_host(DS_LOSS_BCE, 4, 1, z, y, d, 0.25f, &correct);
        assert_close(s, want, 1e-6);
        for (int i = 0; i < 4; i++)
            assert_close(d[i], 0.25 * (1.0 / (1.0 + exp(-(double)z[i])) - y[i]), 1e-7);
        assert_int_equal(correct, 1); /* only z = 2 (y = 1) is right; z = 0 predicts 0 */
    }
    /* MSE averages over columns: row (1, 2, 3) vs 0 gives 14/3, grad 2 (p - t) / cols */
    {
        float p[6] = {1, 2, 3, 0.5f, -1, 0}, t[6] = {0, 0, 0, 0.5f, 1, -2};
        double s = loss_host(DS_LOSS_MSE, 2, 3, p, t, d, 0.5f, NULL);
        assert_close(s, 14.0 / 3 + 8.0 / 3, 1e-6);
        for (int i = 0; i < 6; i++) assert_close(d[i], 0.5 * 2.0 * (p[i] - t[i]) / 3, 1e-7);
    }
}

/* Logits of +-1e4 give a finite loss and gradient (no exp overflow). */
static void test_loss_stability(void **state)
{
    (void)state;
    float d[6];
    {
        float z[6] = {1e4f, -1e4f, 0.0f, -1e4f, -1e4f, 1e4f};
        int32_t y[2] = {1, 2};
        double s = loss_host(DS_LOSS_XENT, 2, 3, z, y, d, 1.0f, NULL);
        assert_true(isfinite(s));
        /* row 0: lse = 1e4, loss 2e4; row 1: label is the max, loss ~ 0 */
        assert_close(s, 2e4, 1e-2);
        const float want[6] = {1, -1, 0, 0, 0, 0};
        for (int i = 0; i < 6; i++) {
            assert_true(isfinite(d[i]));
            assert_close(d[i], want[i], 1e-6);
        }
    }
    {
        float z[4] = {1e4f, -1e4f, 1e4f, -1e4f}, y[4] = {0, 1, 1, 0};
        double s = loss_host(DS_LOSS_BCE, 4, 1, z, y, d, 1.0f, NULL);
        assert_true(isfinite(s));
        assert_close(s, 2e4, 1e-2);
        const float want[4] = {1, -1, 0, 0};
        for (int i = 0; i < 4; i++) {
            assert_true(isfinite(d[i]));
            assert_close(d[i], want[i], 1e-6);
        }
    }
}

/* ================================== dropout ================================== */

static void make_model(int in, const struct ds_layer_spec *specs, int n, int max_batch,
                       int keep_input_grad, uint64_t seed, struct ds_model *m)
{
    struct ds_err err = {{0}};
    ds_status st = ds_model_create(&g_be, in, specs, n, max_batch, keep_input_grad, seed, m, &err);
    if (st != DS_OK) fail_msg("ds_model_create: %s", err.msg);
}

/* About 1 - p kept, each kept element scaled by exactly 1/(1 - p); backward uses the same mask. */
static void test_dropout_rate_and_scale(void **state)
{
    (void)state;
    const float ps[] = {0.1f, 0.25f, 0.5f, 0.9f};
    enum { B = 40, F = 997 }; /* F odd: rows start at unaligned Philox lanes */
    size_t n = (size_t)B * F;
    struct rng r = {7};
    float *hx = xcalloc(n, sizeof(float)), *hy = xcalloc(n, sizeof(float));
    float *hdx = xcalloc(n, sizeof(float));
    rng_fill(&r, hx, n, 0.5, 2.0);
    float *x = dev_alloc(n);
    dev_put(x, hx, n);
    for (size_t pi = 0; pi < DS_ARRAY_LEN(ps); pi++) {
        float p = ps[pi];
        struct ds_layer_spec spec = {.kind = DS_LAYER_DROPOUT, .units = 0, .p = p};
        struct ds_model m;
        make_model(F, &spec, 1, B, 1, 1234, &m);
        struct ds_pass pass = {.step = 3, .row0 = 0, .rows_per_step = B, .train = 1};
        dev_get(hy, ds_model_forward(&m, x, B, &pass), n);
        /* backward of dout = x: the same mask and scale */
        dev_get(hdx, ds_model_backward(&m, x, B, &pass, 0), n);
        size_t kept = 0;
        double scale = 1.0 / (1.0 - (double)p);
        for (size_t i = 0; i < n; i++) {
            if (hy[i] != 0.0f) {
                kept++;
                assert_close(hy[i], hx[i] * scale, 1e-6 * hx[i] * scale);
            }
            if (hdx[i] != hy[i]) fail_msg("p %g: element %zu forward %g, backward %g", (double)p, i,
                                          (double)hy[i], (double)hdx[i]);
        }
        double frac = (double)kept / (double)n, sd = sqrt((double)p * (1 - p) / (double)n);
        print_message("# dropout p=%.2f kept %.4f (expected %.4f, 5 sd = %.4f)\n", (double)p, frac,
                      1.0 - p, 5 * sd);
        assert_close(frac, 1.0 - p, 5 * sd);
        ds_model_free(&m);
    }
    dev_free(x);
    free(hx), free(hy), free(hdx);
}

/* Eval mode, and p = 0 in train mode, are the identity forward and backward. */
static void test_dropout_identity(void **state)
{
    (void)state;
    enum { B = 5, F = 7 };
    size_t n = (size_t)B * F;
    struct rng r = {8};
    float hx[B * F], hy[B * F], hd[B * F];
    rng_fill(&r, hx, n, -2.0, 2.0);
    float *x = dev_alloc(n);
    dev_put(x, hx, n);
    const float ps[2] = {0.5f, 0.0f};
    const int train[2] = {0, 1};
    for (int c = 0; c < 2; c++) {
        struct ds_layer_spec spec = {.kind = DS_LAYER_DROPOUT, .units = 0, .p = ps[c]};
        struct ds_model m;
        make_model(F, &spec, 1, B, 1, 99, &m);
        struct ds_pass pass = {.step = 1, .row0 = 0, .rows_per_step = B, .train = train[c]};
        dev_get(hy, ds_model_forward(&m, x, B, &pass), n);
        assert_memory_equal(hy, hx, sizeof hx);
        dev_get(hd, ds_model_backward(&m, x, B, &pass, 0), n);
        assert_memory_equal(hd, hx, sizeof hx);
        ds_model_free(&m);
    }
    dev_free(x);
}

/* A sample's mask depends on its row in the global batch only: forward (and
 * backward) of rows [0, 8) at once equals any split with matching row0. */
static void test_dropout_split_invariance(void **state)
{
    (void)state;
    enum { B = 8 };
    const int splits[][2] = {{4, 0}, {3, 0}, {1, 0}, {5, 7}}; /* cut points (0 = none) */
    for (int F = 1; F <= MAXF; F++) {
        size_t n = (size_t)B * F;
        struct rng r = {(uint64_t)(900 + F)};
        float hx[B * MAXF], whole[B * MAXF], part[B * MAXF], dwhole[B * MAXF], dpart[B * MAXF];
        rng_fill(&r, hx, n, 0.5, 2.0);
        float *x = dev_alloc(n);
        dev_put(x, hx, n);
        struct ds_layer_spec spec = {.kind = DS_LAYER_DROPOUT, .units = 0, .p = 0.5f};
        struct ds_model m;
        make_model(F, &spec, 1, B, 1, 4242, &m);
        for (uint64_t step = 0; step < 3; step++) {
            struct ds_pass pass = {.step = step, .row0 = 0, .rows_per_step = B, .train = 1};
            dev_get(whole, ds_model_forward(&m, x, B, &pass), n);
            dev_get(dwhole, ds_model_backward(&m, x, B, &pass, 0), n);
            for (size_t s = 0; s < DS_ARRAY_LEN(splits); s++) {
                int cuts[4] = {0, splits[s][0], splits[s][1], B}, nc = 0, pts[4];
                for (int k = 0; k < 4; k++)
                    if (k == 0 || (cuts[k] > pts[nc - 1])) pts[nc++] = cuts[k];
                for (int k = 0; k + 1 < nc; k++) {
                    int r0 = pts[k], rows = pts[k + 1] - pts[k];
                    struct ds_pass pp = pass;
                    pp.row0 = r0;
                    const float *xs = x + (size_t)r0 * F;
                    dev_get(part + (size_t)r0 * F, ds_model_forward(&m, xs, rows, &pp),
                            (size_t)rows * F);
                    dev_get(dpart + (size_t)r0 * F, ds_model_backward(&m, xs, rows, &pp, 0),
                            (size_t)rows * F);
                }
                if (memcmp(part, whole, n * sizeof(float)) != 0 ||
                    memcmp(dpart, dwhole, n * sizeof(float)) != 0)
                    fail_msg("features %d, step %d: split at %d,%d changes the dropout mask", F,
                             (int)step, splits[s][0], splits[s][1]);
            }
            /* a different step draws a different mask (with 8F elements at p = 0.5) */
            if (F >= 2) {
                struct ds_pass next = pass;
                next.step = step + 10;
                dev_get(part, ds_model_forward(&m, x, B, &next), n);
                assert_true(memcmp(part, whole, n * sizeof(float)) != 0);
            }
        }
        ds_model_free(&m);
        dev_free(x);
    }
}

/* ================================ accumulation ================================ */

/* accumulate=0 overwrites whatever the gradient buffer held; accumulate=1 adds
 * (the gradient of two micro-batches is the sum); the input gradient is never
 * accumulated. */
static void test_accumulate(void **state)
{
    (void)state;
    struct rng r = {31337};
    for (int t = 0; t < GC_TRIALS; t++) {
        int in = rng_int(&r, 1, MAXF), b1 = rng_int(&r, 1, MAXB), b2 = rng_int(&r, 1, MAXB);
        struct ds_layer_spec specs[] = {{.kind = DS_LAYER_LINEAR, .units = rng_int(&r, 1, MAXF), .p = 0},
                                        {.kind = DS_LAYER_TANH, .units = 0, .p = 0},
                                        {.kind = DS_LAYER_DROPOUT, .units = 0, .p = 0.3f},
                                        {.kind = DS_LAYER_LINEAR, .units = rng_int(&r, 1, MAXF), .p = 0},
                                        {.kind = DS_LAYER_GELU, .units = 0, .p = 0}};
        struct ds_model m;
        make_model(in, specs, 5, MAXB, 1, 77, &m);
        size_t np = m.layout.total;
        int out = m.out;
        float *hp = xcalloc(np, sizeof(float));
        rng_fill(&r, hp, np, -1, 1);
        dev_put(m.params, hp, np);
        float hx1[MAXB * MAXF], hx2[MAXB * MAXF], hd1[MAXB * MAXF], hd2[MAXB * MAXF];
        rng_fill(&r, hx1, (size_t)b1 * in, -2, 2);
        rng_fill(&r, hx2, (size_t)b2 * in, -2, 2);
        rng_fill(&r, hd1, (size_t)b1 * out, -1, 1);
        rng_fill(&r, hd2, (size_t)b2 * out, -1, 1);
        float *x1 = dev_alloc((size_t)b1 * in), *x2 = dev_alloc((size_t)b2 * in);
        float *d1 = dev_alloc((size_t)b1 * out), *d2 = dev_alloc((size_t)b2 * out);
        dev_put(x1, hx1, (size_t)b1 * in), dev_put(x2, hx2, (size_t)b2 * in);
        dev_put(d1, hd1, (size_t)b1 * out), dev_put(d2, hd2, (size_t)b2 * out);
        struct ds_pass p1 = {.step = 5, .row0 = 0, .rows_per_step = b1 + b2, .train = 1};
        struct ds_pass p2 = p1;
        p2.row0 = b1;

        float *g1 = xcalloc(np, sizeof(float)), *g2 = xcalloc(np, sizeof(float));
        float *g12 = xcalloc(np, sizeof(float)), *gx = xcalloc(np, sizeof(float));
        float dx2[MAXB * MAXF], dx12[MAXB * MAXF];
        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 0);
        dev_get(g1, m.grads, np);
        /* accumulate = 0 ignores what was there */
        g_be.ops->fill(&g_be, m.grads, np, 123.0f);
        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 0);
        dev_get(gx, m.grads, np);
        assert_memory_equal(gx, g1, np * sizeof(float));

        ds_model_forward(&m, x2, b2, &p2);
        dev_get(dx2, ds_model_backward(&m, d2, b2, &p2, 0), (size_t)b2 * in);
        dev_get(g2, m.grads, np);

        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 0);
        ds_model_forward(&m, x2, b2, &p2);
        dev_get(dx12, ds_model_backward(&m, d2, b2, &p2, 1), (size_t)b2 * in);
        dev_get(g12, m.grads, np);
        assert_memory_equal(dx12, dx2, (size_t)b2 * in * sizeof(float));
        /* float rounding of one addition, and of the GEMM folding C into its sum */
        for (size_t k = 0; k < np; k++) {
            double want = (double)g1[k] + (double)g2[k];
            double tol = 4 * 1.2e-7 * (fabs(g1[k]) + fabs(g2[k])) + 1e-30;
            if (!(fabs(g12[k] - want) <= tol))
                fail_msg("param %zu: accumulated %.9g, g1 + g2 = %.9g (g1 %.9g, g2 %.9g)", k,
                         (double)g12[k], want, (double)g1[k], (double)g2[k]);
        }
        /* and accumulate = 1 after accumulate = 1 keeps adding */
        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 1);
        dev_get(gx, m.grads, np);
        for (size_t k = 0; k < np; k++)
            assert_close(gx[k], 2.0 * g1[k] + g2[k],
                         8 * 1.2e-7 * (2 * fabs(g1[k]) + fabs(g2[k])) + 1e-30);
        free(hp), free(g1), free(g2), free(g12), free(gx);
        dev_free(x1), dev_free(x2), dev_free(d1), dev_free(d2);
        ds_model_free(&m);
    }
}

/* ============================ supervised task ============================ */

enum { SUP_N = 10, SUP_EVAL = 4 };

static void sup_make(enum ds_loss_kind loss, int dim, int hidden, int out, int max_batch,
                     uint64_t data_seed, struct ds_task *t)
{
    struct ds_err err = {{0}};
    struct ds_dataset tr, ev;
    int cols = loss == DS_LOSS_XENT ? 0 : out, classes = loss == DS_LOSS_XENT ? out : 0;
    assert_int_equal(ds_dataset_alloc(&tr, SUP_N, dim, cols, classes, &err), DS_OK);
    assert_int_equal(ds_dataset_alloc(&ev, SUP_EVAL, dim, cols, classes, &err), DS_OK);
    struct rng r = {data_seed};
    struct ds_dataset *ds[2] = {&tr, &ev};
    for (int s = 0; s < 2; s++) {
        struct ds_dataset *d = ds[s];
        rng_fill(&r, d->x, (size_t)d->n * dim, -2, 2);
        for (int64_t i = 0; i < d->n; i++) {
            if (loss == DS_LOSS_XENT) d->labels[i] = rng_int(&r, 0, out - 1);
            for (int c = 0; c < cols; c++)
                d->y[i * cols + c] = loss == DS_LOSS_BCE ? (float)rng_int(&r, 0, 1)
                                                         : (float)rng_unif(&r, -1, 1);
        }
    }
    const struct ds_layer_spec layers[] = {{.kind = DS_LAYER_LINEAR, .units = hidden, .p = 0},
                                           {.kind = DS_LAYER_TANH, .units = 0, .p = 0},
                                           {.kind = DS_LAYER_DROPOUT, .units = 0, .p = 0.3f},
                                           {.kind = DS_LAYER_LINEAR, .units = out, .p = 0}};
    struct ds_supervised_spec spec = {
        .layers = layers,
        .n_layers = 4,
        .loss = loss,
        .metric = loss == DS_LOSS_MSE ? "mse" : "accuracy",
        .metric_higher_better = loss != DS_LOSS_MSE,
        .max_batch = max_batch,
        .seed = 555,
    };
    ds_status st = ds_supervised_create(&g_be, &spec, &tr, &ev, t, &err);
    if (st != DS_OK) fail_msg("ds_supervised_create: %s", err.msg);
}

/* loss_grad over 10 rows in micro-batches of 3 equals one batch of 10 (within
 * float rounding: the sums run in another order), and matches central
 * differences of the mean loss. */
static void test_supervised_microbatch(void **state)
{
    (void)state;
    const enum ds_loss_kind losses[] = {DS_LOSS_XENT, DS_LOSS_BCE, DS_LOSS_MSE};
    struct rng r = {2024};
    double worst_split = 0.0, worst_fd = 0.0;
    for (size_t li = 0; li < DS_ARRAY_LEN(losses); li++) {
        enum ds_loss_kind loss = losses[li];
        int dim = rng_int(&r, 1, MAXF), hidden = rng_int(&r, 1, MAXF);
        int out = loss == DS_LOSS_XENT ? rng_int(&r, 2, 5) : rng_int(&r, 1, 3);
        uint64_t dseed = rng_next(&r);
        struct ds_task a, b;
        sup_make(loss, dim, hidden, out, 3, dseed, &a);
        sup_make(loss, dim, hidden, out, SUP_N, dseed, &b);
        assert_int_equal(ds_supervised_model(&a)->max_batch, 3);
        size_t np = a.layout->total;
        assert_int_equal(np, b.layout->total);
        a.ops->init_params(&a, DS_INIT_DEFAULT, 17);
        b.ops->init_params(&b, DS_INIT_DEFAULT, 17);
        int32_t idx[SUP_N];
        for (int i = 0; i < SUP_N; i++) idx[i] = i;
        for (int i = SUP_N - 1; i > 0; i--) {
            int j = rng_int(&r, 0, i);
            int32_t tmp = idx[i];
            idx[i] = idx[j], idx[j] = tmp;
        }
        struct ds_pass pass = {.step = 3, .row0 = 0, .rows_per_step = SUP_N, .train = 1};
        float scale = 1.0f / SUP_N;
        double la = a.ops->loss_grad(&a, idx, SUP_N, &pass, scale);
        double lb = b.ops->loss_grad(&b, idx, SUP_N, &pass, scale);
        assert_close(la, lb, 1e-6 * fabs(lb) + 1e-9);
        float *ga = xcalloc(np, sizeof(float)), *gb = xcalloc(np, sizeof(float));
        dev_get(ga, a.grads, np);
        dev_get(gb, b.grads, np);
        double e = tu_rel_err_f(ga, gb, np);
        if (e > worst_split) worst_split = e;
        if (!(e <= 1e-5))
            fail_msg("%s: micro-batched gradient differs by %.3g", ds_loss_name(loss), e);

        /* central differences of the mean loss of the micro-batched task */
        float *hp = xcalloc(np, sizeof(float));
        dev_get(hp, a.params, np);
        double *an = xcalloc(np, sizeof(double)), *nu = xcalloc(np, sizeof(double));
        for (size_t k = 0; k < np; k++) {
            an[k] = ga[k];
            float orig = hp[k], plus = (float)(orig + GC_H), minus = (float)(orig - GC_H);
            dev_put(a.params + k, &plus, 1);
            double lp = a.ops->loss_grad(&a, idx, SUP_N, &pass, scale) / SUP_N;
            dev_put(a.params + k, &minus, 1);
            double lm = a.ops->loss_grad(&a, idx, SUP_N, &pass, scale) / SUP_N;
            dev_put(a.params + k, &orig, 1);
            nu[k] = (lp - lm) / ((double)plus - (double)minus);
        }
        double efd = gc_rel_err(an, nu, np);
        if (efd > worst_fd) worst_fd = efd;
        if (!(efd <= GC_TOL))
            fail_msg("%s: micro-batched gradient vs central differences %.3g > %.3g",
                     ds_loss_name(loss), efd, GC_TOL);
        free(ga), free(gb), free(hp), free(an), free(nu);
        ds_task_destroy(&a);
        ds_task_destroy(&b);
    }
    print_message("# %-44s max_batch 3 vs 10: %.2e (tol 1e-05); "
                  "vs central differences %.2e (tol %.0e)\n",
                  "supervised loss_grad", worst_split, worst_fd, GC_TOL);
}

/* ================================== main ================================== */

int main(void)
{
    struct CMUnitTest tests[N_GC_CASES + 10];
    size_t n = 0;
    for (size_t i = 0; i < N_GC_CASES; i++)
        tests[n++] = (struct CMUnitTest){.name = gc_cases[i].name,
                                         .test_func = test_layer_gradcheck,
                                         .initial_state = (void *)&gc_cases[i]};
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_xent_gradcheck),
        cmocka_unit_test(test_bce_gradcheck),
        cmocka_unit_test(test_mse_gradcheck),
        cmocka_unit_test(test_loss_values),
        cmocka_unit_test(test_loss_stability),
        cmocka_unit_test(test_dropout_rate_and_scale),
        cmocka_unit_test(test_dropout_identity),
        cmocka_unit_test(test_dropout_split_invariance),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_supervised_microbatch),
    };
    for (size_t i = 0; i < DS_ARRAY_LEN(rest); i++) tests[n++] = rest[i];
    return _cmocka_run_group_tests("gradcheck", tests, n, setup_backend, teardown_backend);
}
