/*
 * test_conv.c: the spatial layers (Conv2d, MaxPool2d, AvgPool2d, Flatten) and
 * the backend ops under them.
 *
 *  - forward against direct loops in double at random small shapes (batch
 *    1..3, channels 1..4, height/width 4..9, kernel 1..5, stride 1..3, pad
 *    0..2): torch.nn.Conv2d's cross-correlation with W [out, in, k, k] in the
 *    flat buffer as the state_dict names say, both pools with output side
 *    floor((H - k) / s) + 1, Flatten in NCHW order, fused activations;
 *  - central differences for every layer and for the CNN stacks the
 *    workloads use, parameters and input, with ReLU / max-pool kinks excluded
 *    coordinate by coordinate (see below), and accumulate=1;
 *  - the ops directly: im2col against its formula, col2im against loops and
 *    as im2col's adjoint, row_sum, chw_bias_act, chw_act_backward, gather_u8,
 *    and a conv stack bit for bit with 1 and 2 threads;
 *  - the CPU's Winograd F(2x2, 5x5) path (5x5, stride 1, channels a multiple
 *    of 8): forward and backward against loops in double at chunked batches,
 *    padding and odd output sides; central differences through it; and 1 vs
 *    2 threads bit for bit;
 *  - ds_model_create_chw's errors on windows that do not fit.
 *
 * Every test prints "# <case>: worst ..." so the margin under each tolerance
 * is visible in the TAP log. Seeds are fixed per test: a failure reproduces.
 */
#include "testutil.h"
#include "gcutil.h"

#include "../core/backend.h"
#include "../core/conv_winograd.h"
#include "../core/model.h"

/*
 * Forward tolerance. A conv output sums at most 4 * 5 * 5 + 1 = 101 float
 * products; the GEMM's rounding is then at most ~101 * 6e-8 = 6e-6 of the sum
 * of the terms' magnitudes (sum |W x| + |b|), and in practice ~sqrt of that.
 * FWD_TOL bounds |y - ref| per element relative to that magnitude (plus |ref|
 * after an activation, for tanhf/expf/erff's own rounding). A wrong index
 * (padding offset, a transposed kernel, a swapped channel) errs by the size
 * of the terms themselves: ~1e5 times the tolerance.
 */
#define FWD_TOL 1e-5
#define FWD_TRIALS 40

/*
 * Gradient checks: the step and the tolerance of test_gradcheck.c (whose
 * header derives them): relative error ||analytic - numeric|| / ||numeric||
 * with the denominator floored at GC_FLOOR sqrt(n).
 *
 * Kinks. ReLU and max pooling are not differentiable where a pre-activation
 * crosses 0 or two values of a window swap order, and with hundreds of
 * pre-activations moved by each weight some perturbation of h crosses one.
 * At the base point the sign of every ReLU output and the argmax (first
 * maximum) of every max-pool window are recorded; a coordinate whose + or -
 * perturbation changes any of them is excluded from the comparison (on both
 * sides of such a coordinate the function is smooth, elsewhere it is not).
 * Exclusions are counted and printed; more than GC_MAX_EXCLUDED of the
 * parameters, or of the inputs, excluded in one trial fails it (the check
 * would no longer cover the layer).
 */
#define GC_H 5e-3
#define GC_TOL 2e-3
#define GC_FLOOR 0.05
#define GC_MAX_EXCLUDED 0.25
#define GC_TRIALS 4

/* Output side of a window: floor((n + 2 pad - k) / s) + 1. */
static int out_side(int n, int k, int s, int pad) { return (n + 2 * pad - k) / s + 1; }

static void make_chw(int c, int h, int w, const struct ds_layer_spec *specs, int n, int max_batch,
                     int keep_input_grad, uint64_t seed, struct ds_model *m)
{
    struct ds_err err = {{0}};
    ds_status st = ds_model_create_chw(&g_be, c, h, w, specs, n, max_batch, keep_input_grad, seed,
                                       m, &err);
    if (st != DS_OK) fail_msg("ds_model_create_chw [%d, %d, %d]: %s", c, h, w, err.msg);
}

/* ---- references in double ---- */

static double act_d(enum ds_act a, double z)
{
    switch (a) {
    case DS_ACT_RELU: return z > 0.0 ? z : 0.0;
    case DS_ACT_TANH: return tanh(z);
    case DS_ACT_SIGMOID: return 1.0 / (1.0 + exp(-z));
    case DS_ACT_GELU: return 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
    default: return z;
    }
}

/* d act / dz at z (ReLU: at z != 0). */
static double act_grad_d(enum ds_act a, double z)
{
    switch (a) {
    case DS_ACT_RELU: return z > 0.0 ? 1.0 : 0.0;
    case DS_ACT_TANH: return 1.0 - tanh(z) * tanh(z);
    case DS_ACT_SIGMOID: {
        double s = 1.0 / (1.0 + exp(-z));
        return s * (1.0 - s);
    }
    case DS_ACT_GELU: /* Phi(z) + z phi(z) */
        return 0.5 * (1.0 + erf(z / sqrt(2.0))) + z * exp(-0.5 * z * z) / sqrt(2.0 * M_PI);
    default: return 1.0;
    }
}

static const char *act_label(enum ds_act a)
{
    static const char *const names[DS_ACT_COUNT] = {"none", "ReLU", "Tanh", "Sigmoid", "GELU"};
    return (unsigned)a < DS_ACT_COUNT ? names[a] : "?";
}

/* A convolution's shape. */
struct conv_shape {
    int b, c, h, w; /* input [b, c, h, w] */
    int o, k, s, pad;
    int oh, ow;
};

/* batch 1..3, channels 1..4, side lo..hi, kernel 1..5, stride 1..3, pad 0..2
 * with 2 pad <= k and the (padded) input at least one window. */
static void draw_conv_shape_in(struct rng *r, int lo, int hi, struct conv_shape *s)
{
    do {
        s->b = rng_int(r, 1, 3), s->c = rng_int(r, 1, 4);
        s->h = rng_int(r, lo, hi), s->w = rng_int(r, lo, hi);
        s->o = rng_int(r, 1, 4), s->k = rng_int(r, 1, 5);
        s->s = rng_int(r, 1, 3), s->pad = rng_int(r, 0, 2);
    } while (2 * s->pad > s->k || s->h + 2 * s->pad < s->k || s->w + 2 * s->pad < s->k);
    s->oh = out_side(s->h, s->k, s->s, s->pad);
    s->ow = out_side(s->w, s->k, s->s, s->pad);
}

static void draw_conv_shape(struct rng *r, struct conv_shape *s) { draw_conv_shape_in(r, 4, 9, s); }

/* y[b,o,i,j] = bias[o] + sum_{c,u,v} W[o,c,u,v] x[b,c,i*s-pad+u,j*s-pad+v]
 * (zero outside); mag receives |bias[o]| + sum |W x| (the rounding scale). */
static void ref_conv(const struct conv_shape *s, const float *x, const float *wt,
                     const float *bias, double *y, double *mag)
{
    for (int b = 0; b < s->b; b++)
        for (int o = 0; o < s->o; o++)
            for (int i = 0; i < s->oh; i++)
                for (int j = 0; j < s->ow; j++) {
                    double acc = bias[o], m = fabs((double)bias[o]);
                    for (int c = 0; c < s->c; c++)
                        for (int u = 0; u < s->k; u++)
                            for (int v = 0; v < s->k; v++) {
                                int ih = i * s->s - s->pad + u, iw = j * s->s - s->pad + v;
                                if (ih < 0 || ih >= s->h || iw < 0 || iw >= s->w) continue;
                                double t = (double)wt[((o * s->c + c) * s->k + u) * s->k + v] *
                                           (double)x[((b * s->c + c) * s->h + ih) * s->w + iw];
                                acc += t, m += fabs(t);
                            }
                    size_t at = (((size_t)b * s->o + o) * s->oh + i) * s->ow + j;
                    y[at] = acc, mag[at] = m;
                }
}

/* Checks a Conv2d layer's state_dict entries "<i>.weight" [o, c, k, k] and
 * "<i>.bias" [o]; returns the weight tensor's index. */
static int check_conv_params(const struct ds_model *m, int layer, int o, int c, int k)
{
    char name[DS_PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%d.weight", layer);
    int iw = ds_params_find(&m->layout, name);
    if (iw < 0) fail_msg("no parameter named %s", name);
    const struct ds_param_tensor *t = &m->layout.tensors[iw];
    assert_int_equal(t->ndim, 4);
    assert_int_equal(t->shape[0], o);
    assert_int_equal(t->shape[1], c);
    assert_int_equal(t->shape[2], k);
    assert_int_equal(t->shape[3], k);
    assert_int_equal(t->numel, (size_t)o * c * k * k);
    assert_int_equal(t->is_bias, 0);
    assert_int_equal(t->offset, m->layers[layer].w);
    snprintf(name, sizeof name, "%d.bias", layer);
    int ib = ds_params_find(&m->layout, name);
    if (ib < 0) fail_msg("no parameter named %s", name);
    const struct ds_param_tensor *tb = &m->layout.tensors[ib];
    assert_int_equal(tb->ndim, 1);
    assert_int_equal(tb->shape[0], o);
    assert_int_equal(tb->numel, (size_t)o);
    assert_int_equal(tb->is_bias, 1);
    assert_int_equal(tb->offset, m->layers[layer].b);
    assert_int_equal(ib, iw + 1);
    assert_int_equal(tb->offset, t->offset + t->numel);
    return iw;
}

/* ================================ forward ================================ */

/* Conv2d, alone or followed by an activation (which the model must fuse),
 * against the direct sum. */
static void conv_forward_cases(enum ds_layer_kind act_kind, enum ds_act act, uint64_t seed,
                               int side_lo, int side_hi, const char *label)
{
    struct rng r = {seed};
    double worst = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        struct conv_shape s;
        draw_conv_shape_in(&r, side_lo, side_hi, &s);
        struct ds_layer_spec specs[2] = {
            {.kind = DS_LAYER_CONV2D, .units = s.o, .kernel = s.k, .stride = s.s, .pad = s.pad},
            {.kind = act_kind}};
        int n_specs = act == DS_ACT_NONE ? 1 : 2;
        struct ds_model m;
        make_chw(s.c, s.h, s.w, specs, n_specs, s.b, 0, 7, &m);
        /* shapes and names */
        const struct ds_layer *L = &m.layers[0];
        assert_int_equal(L->out_c, s.o);
        assert_int_equal(L->out_h, s.oh);
        assert_int_equal(L->out_w, s.ow);
        assert_int_equal(m.out, s.o * s.oh * s.ow);
        assert_int_equal(m.layout.n, 2);
        assert_int_equal(m.layout.total, (size_t)s.o * s.c * s.k * s.k + s.o);
        int iw = check_conv_params(&m, 0, s.o, s.c, s.k);
        if (act != DS_ACT_NONE) {
            assert_int_equal(m.layers[1].fused, 1);
            assert_int_equal(m.layers[0].act, act);
        }
        size_t np = m.layout.total, nx = (size_t)s.b * s.c * s.h * s.w;
        size_t ny = (size_t)s.b * m.out;
        float *hp = xcalloc(np, sizeof(float)), *hx = xcalloc(nx, sizeof(float));
        float *hy = xcalloc(ny, sizeof(float));
        double *ref = xcalloc(ny, sizeof(double)), *mag = xcalloc(ny, sizeof(double));
        rng_fill(&r, hp, np, -1.0, 1.0);
        rng_fill(&r, hx, nx, -2.0, 2.0);
        float *x = dev_alloc(nx);
        dev_put(x, hx, nx);
        dev_put(m.params, hp, np);
        struct ds_pass pass = {.step = 0, .row0 = 0, .rows_per_step = s.b, .train = 1};
        dev_get(hy, ds_model_forward(&m, x, s.b, &pass), ny);
        const struct ds_param_tensor *tw = &m.layout.tensors[iw], *tb = &m.layout.tensors[iw + 1];
        ref_conv(&s, hx, hp + tw->offset, hp + tb->offset, ref, mag);
        for (size_t i = 0; i < ny; i++) {
            double want = act_d(act, ref[i]), scale = mag[i] + fabs(want) + 1e-30;
            double e = fabs((double)hy[i] - want) / scale;
            if (e > worst) worst = e;
            if (!(e <= FWD_TOL))
                fail_msg("%s [b %d, c %d, %dx%d] -> %d ch, k %d, stride %d, pad %d: output %zu "
                         "= %.9g, direct loops %.9g (|err| / sum|terms| = %.3g > %.0e)",
                         label, s.b, s.c, s.h, s.w, s.o, s.k, s.s, s.pad, i, (double)hy[i], want,
                         e, FWD_TOL);
        }
        free(hp), free(hx), free(hy), free(ref), free(mag);
        dev_free(x);
        ds_model_free(&m);
    }
    print_message("# %-40s worst |y - ref| / sum|terms| %.2e (tol %.0e, %d shapes)\n", label,
                  worst, FWD_TOL, FWD_TRIALS);
}

static void test_conv_forward(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_CONV2D, DS_ACT_NONE, 1001, 4, 9, "Conv2d forward");
}

static void test_conv_relu_forward(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_RELU, DS_ACT_RELU, 1002, 4, 9, "Conv2d+ReLU(fused) forward");
}

static void test_conv_tanh_forward(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_TANH, DS_ACT_TANH, 1003, 4, 9, "Conv2d+Tanh(fused) forward");
}

static void test_conv_gelu_forward(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_GELU, DS_ACT_GELU, 1004, 4, 9, "Conv2d+GELU(fused) forward");
}

static void test_conv_sigmoid_forward(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_SIGMOID, DS_ACT_SIGMOID, 1005, 4, 9,
                       "Conv2d+Sigmoid(fused) forward");
}

/* Inputs of 1..3 pixels a side, smaller than the kernel, which the padding
 * makes fit (1x1 with k 5, pad 2): windows hang over both edges at once. */
static void test_conv_forward_tiny(void **state)
{
    (void)state;
    conv_forward_cases(DS_LAYER_CONV2D, DS_ACT_NONE, 1006, 1, 3, "Conv2d forward, 1..3 px inputs");
}

/* MaxPool2d / AvgPool2d(k, stride) against loops: stride 0 means k (torch's
 * default), output side floor((H - k) / s) + 1. Max is exact. */
static void pool_forward_cases(enum ds_layer_kind kind, uint64_t seed, const char *label)
{
    struct rng r = {seed};
    double worst = 0.0;
    int defaults = 0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        /* every kernel 1..5 with every stride (0: the default k) twice, so
         * each code path (2x2 stride 2 has its own) is reached whatever the seed */
        int k = 1 + (t / 4) % 5, stride = t % 4, s = stride ? stride : k;
        int B = rng_int(&r, 1, 3), C = rng_int(&r, 1, 4), H = rng_int(&r, k > 4 ? k : 4, 9),
            W = rng_int(&r, k > 4 ? k : 4, 9);
        defaults += stride == 0;
        struct ds_layer_spec spec = {.kind = kind, .kernel = k, .stride = stride};
        struct ds_model m;
        make_chw(C, H, W, &spec, 1, B, 0, 7, &m);
        int oh = (H - k) / s + 1, ow = (W - k) / s + 1;
        const struct ds_layer *L = &m.layers[0];
        assert_int_equal(L->win.stride, s);
        assert_int_equal(L->win.pad, 0);
        assert_int_equal(L->out_c, C);
        assert_int_equal(L->out_h, oh);
        assert_int_equal(L->out_w, ow);
        assert_int_equal(m.out, C * oh * ow);
        assert_int_equal(m.layout.n, 0);
        size_t nx = (size_t)B * C * H * W, ny = (size_t)B * m.out;
        float *hx = xcalloc(nx, sizeof(float)), *hy = xcalloc(ny, sizeof(float));
        rng_fill(&r, hx, nx, -2.0, 2.0);
        float *x = dev_alloc(nx);
        dev_put(x, hx, nx);
        struct ds_pass pass = {.step = 0, .row0 = 0, .rows_per_step = B, .train = 1};
        dev_get(hy, ds_model_forward(&m, x, B, &pass), ny);
        for (int pl = 0; pl < B * C; pl++)
            for (int i = 0; i < oh; i++)
                for (int j = 0; j < ow; j++) {
                    const float *src = hx + (size_t)pl * H * W;
                    double mx = -INFINITY, sum = 0.0, mag = 0.0;
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) {
                            double val = src[(i * s + u) * W + j * s + v];
                            mx = val > mx ? val : mx, sum += val, mag += fabs(val);
                        }
                    size_t at = ((size_t)pl * oh + i) * ow + j;
                    double got = hy[at];
                    if (kind == DS_LAYER_MAXPOOL2D) {
                        if (got != mx)
                            fail_msg("%s [b %d, c %d, %dx%d] k %d stride %d: output %zu = %.9g, "
                                     "window max %.9g",
                                     label, B, C, H, W, k, stride, at, got, mx);
                    } else {
                        double want = sum / (k * k), e = fabs(got - want) / (mag / (k * k) + 1e-30);
                        if (e > worst) worst = e;
                        if (!(e <= FWD_TOL))
                            fail_msg("%s [b %d, c %d, %dx%d] k %d stride %d: output %zu = %.9g, "
                                     "window mean %.9g (rel %.3g > %.0e)",
                                     label, B, C, H, W, k, stride, at, got, want, e, FWD_TOL);
                    }
                }
        free(hx), free(hy);
        dev_free(x);
        ds_model_free(&m);
    }
    print_message("# %-40s worst |y - ref| / mean|x| %.2e (tol %.0e, %d shapes, %d with the "
                  "default stride)\n",
                  label, worst, kind == DS_LAYER_MAXPOOL2D ? 0.0 : FWD_TOL, FWD_TRIALS, defaults);
}

static void test_maxpool_forward(void **state)
{
    (void)state;
    pool_forward_cases(DS_LAYER_MAXPOOL2D, 1011, "MaxPool2d forward (exact)");
}

static void test_avgpool_forward(void **state)
{
    (void)state;
    pool_forward_cases(DS_LAYER_AVGPOOL2D, 1012, "AvgPool2d forward");
}

/* Ties: max pooling's backward sends each window's gradient to its FIRST
 * maximum (rows, then columns), as torch's max_pool2d on CPU. Random floats
 * never tie; quantised data (bytes / 255, ReLU zeros) does all the time.
 * Values in {0, 1, 2} on the 2x2 stride-2 fast path and the generic one
 * (overlapping windows included), against loops applying that rule. */
static void test_maxpool_ties(void **state)
{
    (void)state;
    struct rng r = {1013};
    const int ks[][2] = {{2, 2}, {2, 1}, {3, 3}, {3, 2}, {3, 1}, {2, 3}}; /* k, stride */
    for (int t = 0; t < 24; t++) {
        int k = ks[t % 6][0], st = ks[t % 6][1];
        struct ds_window g = {.batch = rng_int(&r, 1, 3), .c = rng_int(&r, 1, 3),
                              .h = rng_int(&r, 4, 9), .w = rng_int(&r, 4, 9), .k = k, .stride = st};
        g.oh = (g.h - k) / st + 1, g.ow = (g.w - k) / st + 1;
        size_t nx = (size_t)g.batch * g.c * g.h * g.w, ny = (size_t)g.batch * g.c * g.oh * g.ow;
        float *hx = xcalloc(nx, sizeof(float)), *hdy = xcalloc(ny, sizeof(float));
        float *hy = xcalloc(ny, sizeof(float)), *hdx = xcalloc(nx, sizeof(float));
        double *ref = xcalloc(nx, sizeof(double)), *mag = xcalloc(nx, sizeof(double));
        int top = t < 6 ? 0 : (t < 12 ? 1 : 2); /* all equal, then {0, 1}, then {0, 1, 2} */
        for (size_t i = 0; i < nx; i++) hx[i] = (float)rng_int(&r, 0, top);
        rng_fill(&r, hdy, ny, -1.0, 1.0);
        float *x = dev_alloc(nx), *y = dev_alloc(ny), *dy = dev_alloc(ny), *dx = dev_alloc(nx);
        dev_put(x, hx, nx), dev_put(dy, hdy, ny);
        g_be.ops->fill(&g_be, dx, nx, 7.0f);
        g_be.ops->pool_forward(&g_be, DS_POOL_MAX, &g, x, y);
        g_be.ops->pool_backward(&g_be, DS_POOL_MAX, &g, x, y, dy, dx);
        dev_get(hy, y, ny), dev_get(hdx, dx, nx);
        for (int pl = 0; pl < g.batch * g.c; pl++)
            for (int i = 0; i < g.oh; i++)
                for (int j = 0; j < g.ow; j++) {
                    const float *src = hx + (size_t)pl * g.h * g.w;
                    float best = -INFINITY;
                    size_t arg = 0;
                    for (int u = 0; u < k; u++)
                        for (int v = 0; v < k; v++) {
                            size_t at = (size_t)(i * st + u) * g.w + (size_t)(j * st + v);
                            if (src[at] > best) best = src[at], arg = at;
                        }
                    size_t o = ((size_t)pl * g.oh + i) * g.ow + j;
                    if (hy[o] != best)
                        fail_msg("max pool k %d stride %d: y[%zu] = %g, want %g", k, st, o,
                                 (double)hy[o], (double)best);
                    ref[(size_t)pl * g.h * g.w + arg] += hdy[o];
                    mag[(size_t)pl * g.h * g.w + arg] += fabs((double)hdy[o]);
                }
        for (size_t i = 0; i < nx; i++)
            if (!(fabs(hdx[i] - ref[i]) <= 2.4e-7 * mag[i]))
                fail_msg("max pool k %d stride %d, values 0..%d, [b %d, c %d, %dx%d]: dx[%zu] = "
                         "%.9g, first-maximum rule %.9g",
                         k, st, top, g.batch, g.c, g.h, g.w, i, (double)hdx[i], ref[i]);
        free(hx), free(hdy), free(hy), free(hdx), free(ref), free(mag);
        dev_free(x), dev_free(y), dev_free(dy), dev_free(dx);
    }
}

/* NaN anywhere in a window makes its max NaN (torch's max_pool2d), on the
 * 2x2 stride-2 fast path and the generic path: a NaN at each position of a
 * 5x5 plane in turn (one plane per position), finite values elsewhere. */
static void test_maxpool_nan(void **state)
{
    (void)state;
    enum { S = 5, N = S * S };
    const int ks[][2] = {{2, 2}, {3, 1}, {2, 1}, {3, 2}};
    struct rng r = {1014};
    for (size_t t = 0; t < DS_ARRAY_LEN(ks); t++) {
        int k = ks[t][0], st = ks[t][1], o1 = (S - k) / st + 1;
        assert_true(o1 <= S - 1);
        struct ds_window g = {.batch = 1, .c = N, .h = S, .w = S, .k = k, .stride = st,
                              .oh = o1, .ow = o1};
        float hx[N * N], hy[N * (S - 1) * (S - 1)]; /* at most 4x4 windows (k 2, stride 1) */
        rng_fill(&r, hx, N * N, -2.0, 2.0);
        for (int p = 0; p < N; p++) hx[p * N + p] = NAN;
        float *x = dev_alloc(N * N), *y = dev_alloc((size_t)N * o1 * o1);
        dev_put(x, hx, N * N);
        g_be.ops->pool_forward(&g_be, DS_POOL_MAX, &g, x, y);
        dev_get(hy, y, (size_t)N * o1 * o1);
        for (int p = 0; p < N; p++)
            for (int i = 0; i < o1; i++)
                for (int j = 0; j < o1; j++) {
                    int pi = p / S, pj = p % S;
                    int inside = pi >= i * st && pi < i * st + k && pj >= j * st && pj < j * st + k;
                    float v = hy[((size_t)p * o1 + i) * o1 + j];
                    if (inside != (isnan(v) != 0))
                        fail_msg("max pool k %d stride %d: NaN at (%d, %d), window (%d, %d) "
                                 "gives %g",
                                 k, st, pi, pj, i, j, (double)v);
                }
        dev_free(x), dev_free(y);
    }
}

/* Flatten alone is the same memory; Conv2d-Flatten-Linear reads the conv's
 * output in NCHW order: z[b,u] = bl[u] + sum_{o,i,j} Wl[u, (o*oh + i)*ow + j] y[b,o,i,j]. */
static void test_flatten_forward(void **state)
{
    (void)state;
    struct rng r = {1021};
    double worst = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        struct conv_shape s;
        draw_conv_shape(&r, &s);
        /* Flatten alone: no copy, no parameters, [c*h*w] per sample */
        {
            struct ds_layer_spec f = {.kind = DS_LAYER_FLATTEN};
            struct ds_model m;
            make_chw(s.c, s.h, s.w, &f, 1, s.b, 1, 7, &m);
            assert_int_equal(m.out, s.c * s.h * s.w);
            assert_int_equal(m.layers[0].out_c, s.c * s.h * s.w);
            assert_int_equal(m.layers[0].out_h, 1);
            assert_int_equal(m.layers[0].out_w, 1);
            float *x = dev_alloc((size_t)s.b * m.out);
            struct ds_pass pass = {.step = 0, .row0 = 0, .rows_per_step = s.b, .train = 1};
            assert_ptr_equal(ds_model_forward(&m, x, s.b, &pass), x);
            assert_ptr_equal(ds_model_backward(&m, x, s.b, &pass, 0), x);
            dev_free(x);
            ds_model_free(&m);
        }
        int units = rng_int(&r, 1, 5);
        struct ds_layer_spec specs[3] = {
            {.kind = DS_LAYER_CONV2D, .units = s.o, .kernel = s.k, .stride = s.s, .pad = s.pad},
            {.kind = DS_LAYER_FLATTEN},
            {.kind = DS_LAYER_LINEAR, .units = units}};
        struct ds_model m;
        make_chw(s.c, s.h, s.w, specs, 3, s.b, 0, 7, &m);
        int feat = s.o * s.oh * s.ow;
        assert_int_equal(m.layers[1].out, feat);
        assert_int_equal(m.layers[2].in, feat);
        assert_int_equal(m.out, units);
        int iw = check_conv_params(&m, 0, s.o, s.c, s.k);
        int il = ds_params_find(&m.layout, "2.weight"), ilb = ds_params_find(&m.layout, "2.bias");
        assert_true(il >= 0 && ilb >= 0);
        assert_int_equal(m.layout.tensors[il].ndim, 2);
        assert_int_equal(m.layout.tensors[il].shape[0], units);
        assert_int_equal(m.layout.tensors[il].shape[1], feat);
        assert_int_equal(m.layout.tensors[ilb].shape[0], units);
        assert_int_equal(ds_params_find(&m.layout, "1.weight"), -1);

        size_t np = m.layout.total, nx = (size_t)s.b * s.c * s.h * s.w;
        size_t nc = (size_t)s.b * feat, ny = (size_t)s.b * units;
        float *hp = xcalloc(np, sizeof(float)), *hx = xcalloc(nx, sizeof(float));
        float *hy = xcalloc(ny, sizeof(float));
        double *ref = xcalloc(nc, sizeof(double)), *mag = xcalloc(nc, sizeof(double));
        rng_fill(&r, hp, np, -1.0, 1.0);
        rng_fill(&r, hx, nx, -2.0, 2.0);
        float *x = dev_alloc(nx);
        dev_put(x, hx, nx);
        dev_put(m.params, hp, np);
        struct ds_pass pass = {.step = 0, .row0 = 0, .rows_per_step = s.b, .train = 1};
        dev_get(hy, ds_model_forward(&m, x, s.b, &pass), ny);
        ref_conv(&s, hx, hp + m.layout.tensors[iw].offset, hp + m.layout.tensors[iw + 1].offset,
                 ref, mag);
        const float *wl = hp + m.layout.tensors[il].offset, *bl = hp + m.layout.tensors[ilb].offset;
        for (int b = 0; b < s.b; b++)
            for (int u = 0; u < units; u++) {
                double z = bl[u], zm = fabs((double)bl[u]);
                for (int f = 0; f < feat; f++) {
                    double wv = wl[(size_t)u * feat + f];
                    z += wv * ref[(size_t)b * feat + f];
                    zm += fabs(wv) * (mag[(size_t)b * feat + f] + fabs(ref[(size_t)b * feat + f]));
                }
                double got = hy[(size_t)b * units + u], e = fabs(got - z) / (zm + 1e-30);
                if (e > worst) worst = e;
                if (!(e <= FWD_TOL))
                    fail_msg("Conv-Flatten-Linear [b %d, c %d, %dx%d] -> %d ch, k %d, stride %d, "
                             "pad %d, %d units: out[%d, %d] = %.9g, NCHW loops %.9g (rel %.3g)",
                             s.b, s.c, s.h, s.w, s.o, s.k, s.s, s.pad, units, b, u, got, z, e);
            }
        free(hp), free(hx), free(hy), free(ref), free(mag);
        dev_free(x);
        ds_model_free(&m);
    }
    print_message("# %-40s worst |y - ref| / sum|terms| %.2e (tol %.0e, %d shapes)\n",
                  "Conv2d-Flatten-Linear forward", worst, FWD_TOL, FWD_TRIALS);
}

/* State-dict names and shapes of the two CNNs the workloads build: every
 * layer counts, as in nn.Sequential. */
static void test_layout_names(void **state)
{
    (void)state;
    /* classic: Conv(1->6, k5, pad 2) ReLU MaxPool(2) Flatten Linear(32) ReLU Dropout Linear(10) */
    const struct ds_layer_spec classic[] = {
        {.kind = DS_LAYER_CONV2D, .units = 6, .kernel = 5, .pad = 2},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_FLATTEN},
        {.kind = DS_LAYER_LINEAR, .units = 32},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_DROPOUT, .p = 0.5f},
        {.kind = DS_LAYER_LINEAR, .units = 10}};
    /* small: Conv(1->4, k3) ReLU MaxPool(2) Conv(4->8, k3) ReLU MaxPool(2) Flatten Linear(10) */
    const struct ds_layer_spec small[] = {
        {.kind = DS_LAYER_CONV2D, .units = 4, .kernel = 3},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_CONV2D, .units = 8, .kernel = 3},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_FLATTEN},
        {.kind = DS_LAYER_LINEAR, .units = 10}};
    struct want {
        const char *name;
        int ndim;
        int64_t shape[4];
    };
    /* 28x28 input: classic 28 -> 28 -> 14, 6*14*14 = 1176 features;
     * small 28 -> 26 -> 13 -> 11 -> 5, 8*5*5 = 200 */
    const struct want wc[] = {{"0.weight", 4, {6, 1, 5, 5}}, {"0.bias", 1, {6}},
                              {"4.weight", 2, {32, 1176}},   {"4.bias", 1, {32}},
                              {"7.weight", 2, {10, 32}},     {"7.bias", 1, {10}}};
    const struct want ws[] = {{"0.weight", 4, {4, 1, 3, 3}}, {"0.bias", 1, {4}},
                              {"3.weight", 4, {8, 4, 3, 3}}, {"3.bias", 1, {8}},
                              {"7.weight", 2, {10, 200}},    {"7.bias", 1, {10}}};
    const struct {
        const struct ds_layer_spec *specs;
        const struct want *want;
        int fused;
    } nets[2] = {{classic, wc, 2}, {small, ws, 2}};
    for (int n = 0; n < 2; n++) {
        struct ds_model m;
        make_chw(1, 28, 28, nets[n].specs, 8, 2, 0, 7, &m);
        assert_int_equal(m.out, 10);
        assert_int_equal(m.layout.n, 6);
        size_t off = 0;
        int fused = 0;
        for (int i = 0; i < 8; i++) fused += m.layers[i].fused;
        assert_int_equal(fused, nets[n].fused);
        for (int i = 0; i < 6; i++) {
            const struct ds_param_tensor *t = &m.layout.tensors[i];
            const struct want *w = &nets[n].want[i];
            if (strcmp(t->name, w->name) != 0)
                fail_msg("net %d tensor %d: name %s, want %s", n, i, t->name, w->name);
            assert_int_equal(t->ndim, w->ndim);
            size_t numel = 1;
            for (int d = 0; d < w->ndim; d++) {
                if (t->shape[d] != w->shape[d])
                    fail_msg("%s: dim %d is %lld, want %lld", w->name, d, (long long)t->shape[d],
                             (long long)w->shape[d]);
                numel *= (size_t)w->shape[d];
            }
            assert_int_equal(t->numel, numel);
            assert_int_equal(t->offset, off);
            assert_int_equal(t->is_bias, w->ndim == 1);
            off += numel;
        }
        assert_int_equal(m.layout.total, off);
        ds_model_free(&m);
    }
}

/* ============================ gradient checks ============================ */

/* A stack to check; negative fields are drawn per trial:
 * Conv2d units 1..4, kernel 1..5, stride 1..3, pad 0..kernel/2;
 * pools kernel 2..3, stride -1: 1..kernel-1 (overlapping windows), 0: kernel;
 * Linear units 1..5; Dropout p in [0.1, 0.5). */
struct cc_case {
    const char *name;
    int n;
    struct ds_layer_spec specs[8];
    int train;
    int cmax;       /* input channels 1..cmax */
    int hmin, hmax; /* input height and width */
    int bmax;       /* batch 1..bmax */
};

#define CONV(k, s, p)                                                                        \
    {.kind = DS_LAYER_CONV2D, .units = -1, .kernel = (k), .stride = (s), .pad = (p)}
/* Conv2d with a fixed width, e.g. 8 channels into a 5x5 conv the CPU runs as Winograd */
#define CONVN(n, k, s, p)                                                                    \
    {.kind = DS_LAYER_CONV2D, .units = (n), .kernel = (k), .stride = (s), .pad = (p)}
#define MAXP(k, s) {.kind = DS_LAYER_MAXPOOL2D, .kernel = (k), .stride = (s)}
#define AVGP(k, s) {.kind = DS_LAYER_AVGPOOL2D, .kernel = (k), .stride = (s)}
#define LIN {.kind = DS_LAYER_LINEAR, .units = -1}
#define FLAT {.kind = DS_LAYER_FLATTEN}
#define RELU {.kind = DS_LAYER_RELU}
#define TANH {.kind = DS_LAYER_TANH}
#define SIGM {.kind = DS_LAYER_SIGMOID}
#define GELU {.kind = DS_LAYER_GELU}
#define DROP {.kind = DS_LAYER_DROPOUT, .p = -1.0f}

static const struct cc_case cc_cases[] = {
    {"grad Conv2d", 1, {CONV(-1, -1, -1)}, 1, 3, 4, 9, 3},
    {"grad Conv2d+ReLU(fused)", 2, {CONV(-1, -1, -1), RELU}, 1, 3, 4, 9, 3},
    {"grad Conv2d+Tanh(fused)", 2, {CONV(-1, -1, -1), TANH}, 1, 3, 4, 9, 3},
    {"grad Conv2d+GELU(fused)", 2, {CONV(-1, -1, -1), GELU}, 1, 3, 4, 9, 3},
    {"grad Conv2d+Sigmoid(fused)", 2, {CONV(-1, -1, -1), SIGM}, 1, 3, 4, 9, 3},
    {"grad MaxPool2d", 1, {MAXP(-1, 0)}, 1, 3, 4, 9, 3},
    {"grad MaxPool2d(overlapping)", 1, {MAXP(-1, -1)}, 1, 3, 4, 9, 3},
    {"grad AvgPool2d", 1, {AVGP(-1, 0)}, 1, 3, 4, 9, 3},
    {"grad AvgPool2d(overlapping)", 1, {AVGP(-1, -1)}, 1, 3, 4, 9, 3},
    {"grad Flatten-Linear", 2, {FLAT, LIN}, 1, 3, 2, 5, 3},
    {"grad Conv-ReLU-MaxPool-Conv-ReLU-MaxPool-Flatten-Linear", 8,
     {CONV(3, 1, -1), RELU, MAXP(2, 0), CONV(3, 1, -1), RELU, MAXP(2, 0), FLAT, LIN},
     1, 2, 8, 11, 2},
    {"grad Conv(pad)-ReLU-MaxPool-Flatten-Linear-ReLU-Dropout-Linear", 8,
     {CONV(5, 1, 2), RELU, MAXP(2, 0), FLAT, LIN, RELU, DROP, LIN}, 1, 2, 4, 7, 2},
    {"grad Conv-Tanh-AvgPool-Flatten-Linear", 5,
     {CONV(3, -1, -1), TANH, AVGP(2, 0), FLAT, LIN}, 1, 3, 5, 9, 2},
    /* 8 -> 8 channels, 5x5, stride 1: the CPU's Winograd F(2x2, 5x5) path */
    {"grad Conv-Tanh-Conv5x5(8->8, Winograd)-Tanh-Flatten-Linear", 6,
     {CONVN(8, 3, 1, 1), TANH, CONVN(8, 5, 1, -1), TANH, FLAT, LIN}, 1, 2, 6, 9, 2},
    {"grad Conv-GELU-Conv5x5(8->16, Winograd, pad)-GELU-AvgPool-Flatten-Linear", 7,
     {CONVN(8, 1, 1, 0), GELU, CONVN(16, 5, 1, 2), GELU, AVGP(2, 0), FLAT, LIN}, 1, 2, 6, 8, 2},
};
#define N_CC_CASES DS_ARRAY_LEN(cc_cases)

static int is_activation(enum ds_layer_kind k)
{
    return k == DS_LAYER_RELU || k == DS_LAYER_TANH || k == DS_LAYER_SIGMOID || k == DS_LAYER_GELU;
}

static void draw_specs(struct rng *r, const struct cc_case *c, struct ds_layer_spec *specs)
{
    memcpy(specs, c->specs, sizeof c->specs);
    for (int i = 0; i < c->n; i++) {
        struct ds_layer_spec *s = &specs[i];
        switch (s->kind) {
        case DS_LAYER_CONV2D:
            if (s->units < 0) s->units = rng_int(r, 1, 4);
            if (s->kernel < 0) s->kernel = rng_int(r, 1, 5);
            if (s->stride < 0) s->stride = rng_int(r, 1, 3);
            if (s->pad < 0) s->pad = rng_int(r, 0, s->kernel / 2);
            break;
        case DS_LAYER_MAXPOOL2D:
        case DS_LAYER_AVGPOOL2D:
            if (s->kernel < 0) s->kernel = rng_int(r, 2, 3);
            if (s->stride < 0) s->stride = rng_int(r, 1, s->kernel - 1);
            break;
        case DS_LAYER_LINEAR:
            if (s->units < 0) s->units = rng_int(r, 1, 5);
            break;
        case DS_LAYER_DROPOUT:
            if (s->p < 0) s->p = (float)rng_unif(r, 0.1, 0.5);
            break;
        default: break;
        }
    }
}

/* "[b 2, 1x9x9] Conv2d(3,k3,s1,p1) ReLU ..." for failure messages. */
static void describe(const struct ds_model *m, int batch, char *buf, size_t len)
{
    int at = snprintf(buf, len, "[b %d, %dx%dx%d]", batch, m->in_c, m->in_h, m->in_w);
    for (int i = 0; i < m->n_layers && at > 0 && (size_t)at < len; i++) {
        const struct ds_layer *L = &m->layers[i];
        if (L->kind == DS_LAYER_CONV2D)
            at += snprintf(buf + at, len - (size_t)at, " Conv2d(%d,k%d,s%d,p%d)", L->out_c,
                           L->win.k, L->win.stride, L->win.pad);
        else if (L->kind == DS_LAYER_MAXPOOL2D || L->kind == DS_LAYER_AVGPOOL2D)
            at += snprintf(buf + at, len - (size_t)at, " %s(k%d,s%d)", ds_layer_name(L->kind),
                           L->win.k, L->win.stride);
        else if (L->kind == DS_LAYER_LINEAR)
            at += snprintf(buf + at, len - (size_t)at, " Linear(%d)", L->out);
        else
            at += snprintf(buf + at, len - (size_t)at, " %s", ds_layer_name(L->kind));
    }
}

/* One model under check with its host mirrors. */
struct cc_model {
    struct ds_model m;
    struct ds_pass pass;
    int batch;
    size_t np, nx, ny;
    float *hp, *hx, *hw, *hy; /* host parameters, input, dL/dy, output scratch */
    float *x, *w;             /* backend copies of hx, hw */
    int32_t *pat_base, *pat;  /* kink pattern at the base point, and scratch */
    size_t pat_n;
    float *scratch;           /* [max layer size] */
};

/* The kink pattern after a forward: the sign (y > 0) of every ReLU output,
 * then the argmax (first maximum, rows then columns) of every max-pool
 * window, from the pool's input. Returns its length. */
static size_t kink_pattern(struct cc_model *g, int32_t *pat)
{
    size_t k = 0;
    for (int i = 0; i < g->m.n_layers; i++) {
        const struct ds_layer *L = &g->m.layers[i];
        if (L->kind == DS_LAYER_RELU) {
            size_t n = (size_t)g->batch * L->out;
            if (pat) {
                dev_get(g->scratch, L->y, n);
                for (size_t j = 0; j < n; j++) pat[k + j] = g->scratch[j] > 0.0f;
            }
            k += n;
        } else if (L->kind == DS_LAYER_MAXPOOL2D) {
            const struct ds_window *wn = &L->win;
            size_t n = (size_t)g->batch * L->out;
            if (pat) {
                dev_get(g->scratch, g->m.io[i], (size_t)g->batch * L->in);
                for (int pl = 0; pl < g->batch * wn->c; pl++)
                    for (int oi = 0; oi < wn->oh; oi++)
                        for (int oj = 0; oj < wn->ow; oj++) {
                            const float *src = g->scratch + (size_t)pl * wn->h * wn->w;
                            int arg = 0;
                            float best = -INFINITY;
                            for (int u = 0; u < wn->k; u++)
                                for (int v = 0; v < wn->k; v++) {
                                    float val = src[(oi * wn->stride + u) * wn->w +
                                                    oj * wn->stride + v];
                                    if (val > best) best = val, arg = u * wn->k + v;
                                }
                            pat[k + ((size_t)pl * wn->oh + oi) * wn->ow + oj] = arg;
                        }
            }
            k += n;
        }
    }
    return k;
}

/* L = sum(w . y) in double at the current parameters and input; *changed is
 * set when the kink pattern differs from the base point's. */
static double cc_eval(struct cc_model *g, int *changed)
{
    const float *y = ds_model_forward(&g->m, g->x, g->batch, &g->pass);
    dev_get(g->hy, y, g->ny);
    double L = 0.0;
    for (size_t i = 0; i < g->ny; i++) L += (double)g->hw[i] * (double)g->hy[i];
    if (g->pat_n) {
        kink_pattern(g, g->pat);
        if (memcmp(g->pat, g->pat_base, g->pat_n * sizeof(int32_t)) != 0) *changed = 1;
    }
    return L;
}

/* Central difference of L in element k of host array h mirrored at dev;
 * *excluded when either side crosses a kink. */
static double cc_central(struct cc_model *g, float *h, float *dev, size_t k, int *excluded)
{
    float orig = h[k];
    float plus = (float)(orig + GC_H), minus = (float)(orig - GC_H);
    int changed = 0;
    dev_put(dev + k, &plus, 1);
    double lp = cc_eval(g, &changed);
    dev_put(dev + k, &minus, 1);
    double lm = cc_eval(g, &changed);
    dev_put(dev + k, &orig, 1);
    *excluded = changed;
    return (lp - lm) / ((double)plus - (double)minus);
}

struct cc_worst {
    double params, input, excl_frac;
    size_t excl_p, tot_p, excl_x, tot_x;
};

/* Compares analytic and numeric over the coordinates not excluded; returns
 * the relative error and prints the offending coordinates when above GC_TOL. */
static double cc_compare(const char *what, const double *an, const double *nu,
                         const unsigned char *excl, size_t n)
{
    double *a = xcalloc(n, sizeof(double)), *b = xcalloc(n, sizeof(double));
    size_t m = 0;
    for (size_t k = 0; k < n; k++)
        if (!excl[k]) a[m] = an[k], b[m] = nu[k], m++;
    double num = 0.0, den = 0.0;
    for (size_t k = 0; k < m; k++) num += (a[k] - b[k]) * (a[k] - b[k]), den += b[k] * b[k];
    double floor2 = GC_FLOOR * GC_FLOOR * (double)m;
    double e = m ? sqrt(num / (den > floor2 ? den : floor2)) : 0.0;
    if (!(e <= GC_TOL)) {
        int shown = 0;
        for (size_t k = 0; k < n && shown < 40; k++)
            if (!excl[k] && fabs(an[k] - nu[k]) > GC_TOL * (fabs(nu[k]) + GC_FLOOR))
                print_message("#   %s %zu: analytic %.8g numeric %.8g\n", what, k, an[k], nu[k]),
                    shown++;
    }
    free(a), free(b);
    return e;
}

static void cc_trial(const struct cc_case *c, struct rng *r, struct cc_worst *worst)
{
    struct ds_layer_spec specs[8];
    struct cc_model g;
    memset(&g, 0, sizeof g);
    struct ds_err err = {{0}};
    uint64_t seed = rng_next(r);
    /* draw until the windows fit the input */
    for (int attempt = 0;; attempt++) {
        if (attempt == 200) fail_msg("%s: no shape fits in 200 draws (last: %s)", c->name, err.msg);
        draw_specs(r, c, specs);
        g.batch = rng_int(r, 1, c->bmax);
        int ci = rng_int(r, 1, c->cmax), h = rng_int(r, c->hmin, c->hmax),
            w = rng_int(r, c->hmin, c->hmax);
        ds_status st = ds_model_create_chw(&g_be, ci, h, w, specs, c->n, g.batch, 1, seed, &g.m,
                                           &err);
        if (st == DS_OK) break;
        assert_int_equal(st, DS_ERR_INPUT);
    }
    char desc[512];
    describe(&g.m, g.batch, desc, sizeof desc);

    /* fused exactly where an activation follows a Linear or Conv2d */
    for (int i = 0; i < c->n; i++) {
        int want = is_activation(specs[i].kind) && i > 0 &&
                   (specs[i - 1].kind == DS_LAYER_LINEAR || specs[i - 1].kind == DS_LAYER_CONV2D);
        if (g.m.layers[i].fused != want)
            fail_msg("%s: layer %d fused %d, want %d", desc, i, g.m.layers[i].fused, want);
    }

    g.np = g.m.layout.total;
    g.nx = (size_t)g.batch * g.m.in;
    g.ny = (size_t)g.batch * g.m.out;
    g.pass.step = (uint64_t)rng_int(r, 0, 100);
    g.pass.rows_per_step = g.batch + rng_int(r, 0, 8);
    g.pass.row0 = rng_int(r, 0, (int)(g.pass.rows_per_step - g.batch));
    g.pass.train = c->train;
    size_t biggest = g.nx;
    for (int i = 0; i < g.m.n_layers; i++)
        if ((size_t)g.batch * g.m.layers[i].out > biggest)
            biggest = (size_t)g.batch * g.m.layers[i].out;
    g.scratch = xcalloc(biggest, sizeof(float));
    g.hp = xcalloc(g.np, sizeof(float));
    g.hx = xcalloc(g.nx, sizeof(float));
    g.hw = xcalloc(g.ny, sizeof(float));
    g.hy = xcalloc(g.ny, sizeof(float));
    g.x = dev_alloc(g.nx);
    g.w = dev_alloc(g.ny);
    /* parameters of order 1 (biases too, so they matter), inputs in (-2, 2) */
    rng_fill(r, g.hp, g.np, -1.0, 1.0);
    rng_fill(r, g.hx, g.nx, -2.0, 2.0);
    rng_fill(r, g.hw, g.ny, -1.0, 1.0);
    dev_put(g.m.params, g.hp, g.np);
    dev_put(g.x, g.hx, g.nx);
    dev_put(g.w, g.hw, g.ny);

    /* analytic at the base point, and its kink pattern */
    g.pat_n = kink_pattern(&g, NULL);
    g.pat_base = xcalloc(g.pat_n, sizeof(int32_t));
    g.pat = xcalloc(g.pat_n, sizeof(int32_t));
    ds_model_forward(&g.m, g.x, g.batch, &g.pass);
    kink_pattern(&g, g.pat_base);
    const float *dx = ds_model_backward(&g.m, g.w, g.batch, &g.pass, 0);
    assert_non_null(dx);
    double *an_p = xcalloc(g.np, sizeof(double)), *nu_p = xcalloc(g.np, sizeof(double));
    double *an_x = xcalloc(g.nx, sizeof(double)), *nu_x = xcalloc(g.nx, sizeof(double));
    unsigned char *ex_p = xcalloc(g.np, 1), *ex_x = xcalloc(g.nx, 1);
    float *tmp = xcalloc(g.np > g.nx ? g.np : g.nx, sizeof(float));
    dev_get(tmp, g.m.grads, g.np);
    for (size_t k = 0; k < g.np; k++) an_p[k] = tmp[k];
    dev_get(tmp, dx, g.nx);
    for (size_t k = 0; k < g.nx; k++) an_x[k] = tmp[k];
    free(tmp);

    /* numeric */
    size_t excl_p = 0, excl_x = 0;
    for (size_t k = 0; k < g.np; k++) {
        int e;
        nu_p[k] = cc_central(&g, g.hp, g.m.params, k, &e);
        ex_p[k] = (unsigned char)e, excl_p += (size_t)e;
    }
    for (size_t k = 0; k < g.nx; k++) {
        int e;
        nu_x[k] = cc_central(&g, g.hx, g.x, k, &e);
        ex_x[k] = (unsigned char)e, excl_x += (size_t)e;
    }
    worst->excl_p += excl_p, worst->tot_p += g.np;
    worst->excl_x += excl_x, worst->tot_x += g.nx;
    double fp = g.np ? (double)excl_p / (double)g.np : 0.0;
    double fx = g.nx ? (double)excl_x / (double)g.nx : 0.0;
    if (fp > worst->excl_frac) worst->excl_frac = fp;
    if (fx > worst->excl_frac) worst->excl_frac = fx;
    if (fp > GC_MAX_EXCLUDED || fx > GC_MAX_EXCLUDED)
        fail_msg("%s: %s: kinks excluded %zu of %zu parameters and %zu of %zu inputs "
                 "(more than %.0f%%: the check no longer covers the layer)",
                 c->name, desc, excl_p, g.np, excl_x, g.nx, 100 * GC_MAX_EXCLUDED);

    double ep = cc_compare("param", an_p, nu_p, ex_p, g.np);
    double ex = cc_compare("input", an_x, nu_x, ex_x, g.nx);
    if (ep > worst->params) worst->params = ep;
    if (ex > worst->input) worst->input = ex;
    if (!(ep <= GC_TOL) || !(ex <= GC_TOL))
        fail_msg("%s: %s, %zu params, train %d: relative error params %.3g, input %.3g > tol "
                 "%.3g (%zu + %zu kinked coordinates excluded)",
                 c->name, desc, g.np, c->train, ep, ex, GC_TOL, excl_p, excl_x);

    free(an_p), free(nu_p), free(an_x), free(nu_x), free(ex_p), free(ex_x);
    free(g.hp), free(g.hx), free(g.hw), free(g.hy), free(g.pat_base), free(g.pat), free(g.scratch);
    dev_free(g.x), dev_free(g.w);
    ds_model_free(&g.m);
}

static void test_conv_gradcheck(void **state)
{
    const struct cc_case *c = *state;
    /* the seed depends on the case only, so one case reproduces alone */
    struct rng r = {0xc0de0000u + (uint64_t)(c - cc_cases) * 7919u};
    struct cc_worst worst = {0};
    for (int t = 0; t < GC_TRIALS; t++) cc_trial(c, &r, &worst);
    print_message("# %-62s worst rel err: params %.2e input %.2e (tol %.0e, %d trials); "
                  "kinks excluded: params %zu/%zu, input %zu/%zu (worst trial %.1f%%)\n",
                  c->name, worst.params, worst.input, GC_TOL, GC_TRIALS, worst.excl_p, worst.tot_p,
                  worst.excl_x, worst.tot_x, 100 * worst.excl_frac);
}

/* accumulate=0 overwrites what the gradient buffer held; accumulate=1 adds
 * (two micro-batches give the sum of their gradients); the input gradient
 * is never accumulated. A conv stack with both pools, a fused GELU's pre
 * buffer and a dropout. */
static void test_conv_accumulate(void **state)
{
    (void)state;
    enum { C = 2, H = 8, W = 7, MB = 3 };
    const struct ds_layer_spec specs[] = {
        {.kind = DS_LAYER_CONV2D, .units = 3, .kernel = 3, .pad = 1},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_CONV2D, .units = 4, .kernel = 2, .stride = 1},
        {.kind = DS_LAYER_GELU},
        {.kind = DS_LAYER_AVGPOOL2D, .kernel = 2, .stride = 1},
        {.kind = DS_LAYER_FLATTEN},
        {.kind = DS_LAYER_DROPOUT, .p = 0.3f},
        {.kind = DS_LAYER_LINEAR, .units = 3}};
    struct rng r = {4711};
    double worst = 0.0;
    for (int t = 0; t < 3; t++) {
        struct ds_model m;
        make_chw(C, H, W, specs, DS_ARRAY_LEN(specs), MB, 1, 77, &m);
        size_t np = m.layout.total, in = (size_t)m.in, out = (size_t)m.out;
        int b1 = rng_int(&r, 1, MB), b2 = rng_int(&r, 1, MB);
        float *hp = xcalloc(np, sizeof(float));
        rng_fill(&r, hp, np, -1, 1);
        dev_put(m.params, hp, np);
        float *hx1 = xcalloc(b1 * in, sizeof(float)), *hx2 = xcalloc(b2 * in, sizeof(float));
        float *hd1 = xcalloc(b1 * out, sizeof(float)), *hd2 = xcalloc(b2 * out, sizeof(float));
        rng_fill(&r, hx1, b1 * in, -2, 2), rng_fill(&r, hx2, b2 * in, -2, 2);
        rng_fill(&r, hd1, b1 * out, -1, 1), rng_fill(&r, hd2, b2 * out, -1, 1);
        float *x1 = dev_alloc(b1 * in), *x2 = dev_alloc(b2 * in);
        float *d1 = dev_alloc(b1 * out), *d2 = dev_alloc(b2 * out);
        dev_put(x1, hx1, b1 * in), dev_put(x2, hx2, b2 * in);
        dev_put(d1, hd1, b1 * out), dev_put(d2, hd2, b2 * out);
        struct ds_pass p1 = {.step = 5, .row0 = 0, .rows_per_step = b1 + b2, .train = 1};
        struct ds_pass p2 = p1;
        p2.row0 = b1;
        float *g1 = xcalloc(np, sizeof(float)), *g2 = xcalloc(np, sizeof(float));
        float *g12 = xcalloc(np, sizeof(float)), *gx = xcalloc(np, sizeof(float));
        float *dx2 = xcalloc(b2 * in, sizeof(float)), *dx12 = xcalloc(b2 * in, sizeof(float));

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
        dev_get(dx2, ds_model_backward(&m, d2, b2, &p2, 0), b2 * in);
        dev_get(g2, m.grads, np);

        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 0);
        ds_model_forward(&m, x2, b2, &p2);
        dev_get(dx12, ds_model_backward(&m, d2, b2, &p2, 1), b2 * in);
        dev_get(g12, m.grads, np);
        assert_memory_equal(dx12, dx2, b2 * in * sizeof(float));
        /* float rounding of one addition, and of the GEMM folding C into its sum */
        for (size_t k = 0; k < np; k++) {
            double want = (double)g1[k] + (double)g2[k];
            double scale = fabs(g1[k]) + fabs(g2[k]) + 1e-30, e = fabs(g12[k] - want) / scale;
            if (e > worst) worst = e;
            if (!(e <= 4 * 1.2e-7))
                fail_msg("param %zu: accumulated %.9g, g1 + g2 = %.9g (g1 %.9g, g2 %.9g)", k,
                         (double)g12[k], want, (double)g1[k], (double)g2[k]);
        }
        /* the accumulated gradient is not the plain one: the check would see a lost sum */
        assert_true(memcmp(g12, g2, np * sizeof(float)) != 0);
        /* and accumulate = 1 after accumulate = 1 keeps adding */
        ds_model_forward(&m, x1, b1, &p1);
        ds_model_backward(&m, d1, b1, &p1, 1);
        dev_get(gx, m.grads, np);
        for (size_t k = 0; k < np; k++)
            assert_close(gx[k], 2.0 * g1[k] + g2[k],
                         8 * 1.2e-7 * (2 * fabs(g1[k]) + fabs(g2[k])) + 1e-30);
        free(hp), free(hx1), free(hx2), free(hd1), free(hd2);
        free(g1), free(g2), free(g12), free(gx), free(dx2), free(dx12);
        dev_free(x1), dev_free(x2), dev_free(d1), dev_free(d2);
        ds_model_free(&m);
    }
    print_message("# %-40s worst |g12 - (g1 + g2)| / (|g1| + |g2|) %.2e (tol %.1e)\n",
                  "conv stack accumulate=1", worst, 4 * 1.2e-7);
}

/* Forward and backward of one Conv2d (+ activation) against loops in double,
 * at shapes big enough that the backend cuts the batch into several chunks
 * (CPU: about 96 Ki floats of columns each; the cases below then give 3 chunks
 * with a short last one, one sample per chunk, 2 chunks, and 3 chunks with
 * batch < max_batch): y, dW, db and dx, then accumulate=1 doubling dW, db.
 * dz = dy act'(pre); for ReLU act' is taken from the model's own y > 0, so a
 * pre-activation rounding across 0 cannot flip the reference. Sums of up to
 * batch*P = 4096 float terms: FWD_TOL relative to the sum of their magnitudes. */
static void test_conv_backward_chunks(void **state)
{
    (void)state;
    const struct {
        int b, max_b, c, h, w, o, k, s, pad;
        enum ds_layer_kind act_kind;
        enum ds_act act;
    } cs[] = {
        {7, 7, 2, 24, 24, 3, 5, 1, 2, DS_LAYER_GELU, DS_ACT_GELU},
        {4, 4, 4, 32, 32, 2, 5, 1, 2, DS_LAYER_CONV2D, DS_ACT_NONE},
        {20, 20, 3, 30, 30, 4, 3, 2, 1, DS_LAYER_RELU, DS_ACT_RELU},
        {11, 13, 1, 28, 28, 3, 5, 1, 2, DS_LAYER_TANH, DS_ACT_TANH},
        /* 5x5, stride 1, channels a multiple of 8: the CPU's Winograd path.
         * The small CNN's second conv (3 chunks of 4, 4, 2 images); padding
         * with an odd output side (19x19 tiles cut at the edge) in 3 chunks
         * with a short last one; two 8-channel blocks, 9x8 output; a one-chunk
         * batch smaller than the model's */
        {10, 10, 32, 12, 12, 64, 5, 1, 0, DS_LAYER_RELU, DS_ACT_RELU},
        {7, 7, 16, 21, 21, 8, 5, 1, 1, DS_LAYER_CONV2D, DS_ACT_NONE},
        {5, 5, 16, 11, 10, 8, 5, 1, 1, DS_LAYER_GELU, DS_ACT_GELU},
        {3, 5, 8, 14, 14, 16, 5, 1, 2, DS_LAYER_TANH, DS_ACT_TANH},
    };
    struct rng r = {3001};
    double worst_by[2][4] = {{0}}; /* [im2col, Winograd]: y, dW, db, dx */
    for (size_t t = 0; t < DS_ARRAY_LEN(cs); t++) {
        struct conv_shape sh = {.b = cs[t].b, .c = cs[t].c, .h = cs[t].h, .w = cs[t].w,
                                .o = cs[t].o, .k = cs[t].k, .s = cs[t].s, .pad = cs[t].pad};
        sh.oh = out_side(sh.h, sh.k, sh.s, sh.pad), sh.ow = out_side(sh.w, sh.k, sh.s, sh.pad);
        enum ds_act act = cs[t].act;
        struct ds_layer_spec specs[2] = {
            {.kind = DS_LAYER_CONV2D, .units = sh.o, .kernel = sh.k, .stride = sh.s, .pad = sh.pad},
            {.kind = cs[t].act_kind}};
        struct ds_model m;
        make_chw(sh.c, sh.h, sh.w, specs, act == DS_ACT_NONE ? 1 : 2, cs[t].max_b, 1, 7, &m);
        double *worst = worst_by[ds_wino_fits(&m.layers[0].win, sh.o)];
        int B = sh.b, O = sh.o, C = sh.c, K = sh.k, P = sh.oh * sh.ow;
        size_t np = m.layout.total, nx = (size_t)B * C * sh.h * sh.w, ny = (size_t)B * O * P;
        size_t nw = (size_t)O * C * K * K;
        float *hp = xcalloc(np, sizeof(float)), *hx = xcalloc(nx, sizeof(float));
        float *hdy = xcalloc(ny, sizeof(float)), *hy = xcalloc(ny, sizeof(float));
        float *hg = xcalloc(np, sizeof(float)), *hdx = xcalloc(nx, sizeof(float));
        double *pre = xcalloc(ny, sizeof(double)), *pmag = xcalloc(ny, sizeof(double));
        double *dz = xcalloc(ny, sizeof(double));
        double *rg = xcalloc(np, sizeof(double)), *gmag = xcalloc(np, sizeof(double));
        double *rdx = xcalloc(nx, sizeof(double)), *xmag = xcalloc(nx, sizeof(double));
        rng_fill(&r, hp, np, -0.5, 0.5);
        rng_fill(&r, hx, nx, -1.0, 1.0);
        rng_fill(&r, hdy, ny, -1.0, 1.0);
        float *x = dev_alloc(nx), *dy = dev_alloc(ny);
        dev_put(x, hx, nx), dev_put(dy, hdy, ny), dev_put(m.params, hp, np);
        struct ds_pass pass = {.step = 0, .row0 = 0, .rows_per_step = B, .train = 1};
        dev_get(hy, ds_model_forward(&m, x, B, &pass), ny);
        const float *dxp = ds_model_backward(&m, dy, B, &pass, 0);
        assert_non_null(dxp);
        dev_get(hdx, dxp, nx), dev_get(hg, m.grads, np);

        const float *W = hp + m.layers[0].w, *bias = hp + m.layers[0].b;
        ref_conv(&sh, hx, W, bias, pre, pmag);
        for (size_t i = 0; i < ny; i++) {
            double want = act_d(act, pre[i]);
            double e = fabs((double)hy[i] - want) / (pmag[i] + fabs(want) + 1e-30);
            if (e > worst[0]) worst[0] = e;
            if (!(e <= FWD_TOL))
                fail_msg("case %zu: y[%zu] = %.9g, loops %.9g (rel %.3g)", t, i, (double)hy[i],
                         want, e);
            double d = act == DS_ACT_RELU ? (hy[i] > 0.0f) : act_grad_d(act, pre[i]);
            dz[i] = (double)hdy[i] * d;
        }
        /* db[o] = sum dz; dW[o,c,u,v] = sum dz x(window); dx = sum W dz over the windows */
        for (int b = 0; b < B; b++)
            for (int o = 0; o < O; o++)
                for (int i = 0; i < sh.oh; i++)
                    for (int j = 0; j < sh.ow; j++) {
                        double d = dz[(((size_t)b * O + o) * sh.oh + i) * sh.ow + j];
                        rg[nw + o] += d, gmag[nw + o] += fabs(d);
                        for (int c = 0; c < C; c++)
                            for (int u = 0; u < K; u++)
                                for (int v = 0; v < K; v++) {
                                    int ih = i * sh.s - sh.pad + u, iw = j * sh.s - sh.pad + v;
                                    if (ih < 0 || ih >= sh.h || iw < 0 || iw >= sh.w) continue;
                                    size_t wi = ((size_t)(o * C + c) * K + u) * K + v;
                                    size_t xi = (((size_t)b * C + c) * sh.h + ih) * sh.w + iw;
                                    rg[wi] += d * hx[xi], gmag[wi] += fabs(d * hx[xi]);
                                    rdx[xi] += d * W[wi], xmag[xi] += fabs(d * W[wi]);
                                }
                    }
        assert_int_equal(m.layers[0].b, nw);
        for (size_t i = 0; i < np; i++) {
            double e = fabs((double)hg[i] - rg[i]) / (gmag[i] + 1e-30);
            int bi = i >= nw;
            if (e > worst[1 + bi]) worst[1 + bi] = e;
            if (!(e <= FWD_TOL))
                fail_msg("case %zu [b %d, c %d, %dx%d] -> %d ch, k %d, stride %d, pad %d, %s: "
                         "%s %zu = %.9g, loops %.9g (rel %.3g)",
                         t, B, C, sh.h, sh.w, O, K, sh.s, sh.pad, act_label(act),
                         bi ? "db" : "dW", bi ? i - nw : i, (double)hg[i], rg[i], e);
        }
        for (size_t i = 0; i < nx; i++) {
            double e = fabs((double)hdx[i] - rdx[i]) / (xmag[i] + 1e-30);
            if (xmag[i] == 0.0 && hdx[i] != 0.0) e = INFINITY;
            if (e > worst[3]) worst[3] = e;
            if (!(e <= FWD_TOL))
                fail_msg("case %zu [b %d, c %d, %dx%d] -> %d ch, k %d, stride %d, pad %d, %s: "
                         "dx[%zu] = %.9g, loops %.9g (rel %.3g)",
                         t, B, C, sh.h, sh.w, O, K, sh.s, sh.pad, act_label(act), i,
                         (double)hdx[i], rdx[i], e);
        }
        /* accumulate = 1 adds the same gradients again (float rounding of one add) */
        float *hg2 = xcalloc(np, sizeof(float));
        ds_model_forward(&m, x, B, &pass);
        ds_model_backward(&m, dy, B, &pass, 1);
        dev_get(hg2, m.grads, np);
        for (size_t i = 0; i < np; i++)
            assert_close(hg2[i], 2.0 * hg[i], 1.2e-7 * fabs(2.0 * hg[i]));
        free(hg2);
        free(hp), free(hx), free(hdy), free(hy), free(hg), free(hdx), free(pre), free(pmag);
        free(dz), free(rg), free(gmag), free(rdx), free(xmag);
        dev_free(x), dev_free(dy);
        ds_model_free(&m);
    }
    for (int k = 0; k < 2; k++)
        print_message("# %-40s worst rel err y %.2e dW %.2e db %.2e dx %.2e (tol %.0e)\n",
                      k ? "Conv2d backward, Winograd, chunked" : "Conv2d backward, im2col, chunked",
                      worst_by[k][0], worst_by[k][1], worst_by[k][2], worst_by[k][3], FWD_TOL);
}

/* ============================== backend ops ============================== */

static struct ds_window draw_window(struct rng *r)
{
    struct conv_shape s;
    draw_conv_shape(r, &s);
    return (struct ds_window){.batch = s.b, .c = s.c, .h = s.h, .w = s.w, .k = s.k,
                              .stride = s.s, .pad = s.pad, .oh = s.oh, .ow = s.ow};
}

/* cols[(ci*k + ki)*k + kj, b*P + p] = x[b, ci, oh*s - pad + ki, ow*s - pad + kj],
 * 0 outside: exact (a copy), every entry written (cols starts as garbage). */
static void test_im2col_formula(void **state)
{
    (void)state;
    struct rng r = {2001};
    for (int t = 0; t < FWD_TRIALS; t++) {
        struct ds_window g = draw_window(&r);
        int K = g.k, P = g.oh * g.ow;
        size_t nx = (size_t)g.batch * g.c * g.h * g.w, rows = (size_t)g.c * K * K;
        size_t BP = (size_t)g.batch * P, nc = rows * BP;
        float *hx = xcalloc(nx, sizeof(float)), *hc = xcalloc(nc, sizeof(float));
        rng_fill(&r, hx, nx, -2.0, 2.0);
        float *x = dev_alloc(nx), *cols = dev_alloc(nc);
        dev_put(x, hx, nx);
        g_be.ops->fill(&g_be, cols, nc, NAN);
        g_be.ops->im2col(&g_be, &g, x, cols);
        dev_get(hc, cols, nc);
        for (int ci = 0; ci < g.c; ci++)
            for (int ki = 0; ki < K; ki++)
                for (int kj = 0; kj < K; kj++)
                    for (int b = 0; b < g.batch; b++)
                        for (int oi = 0; oi < g.oh; oi++)
                            for (int oj = 0; oj < g.ow; oj++) {
                                int ih = oi * g.stride - g.pad + ki;
                                int iw = oj * g.stride - g.pad + kj;
                                int out = ih < 0 || ih >= g.h || iw < 0 || iw >= g.w;
                                size_t at = (((size_t)b * g.c + ci) * g.h + ih) * g.w + iw;
                                float want = out ? 0.0f : hx[at];
                                size_t row = ((size_t)ci * K + ki) * K + kj;
                                size_t col = (size_t)b * P + (size_t)oi * g.ow + oj;
                                float got = hc[row * BP + col];
                                if (memcmp(&got, &want, sizeof got) != 0)
                                    fail_msg("im2col [b %d, c %d, %dx%d] k %d stride %d pad %d: "
                                             "cols[%zu, %zu] = %g, want %g",
                                             g.batch, g.c, g.h, g.w, K, g.stride, g.pad, row, col,
                                             (double)got, (double)want);
                            }
        free(hx), free(hc);
        dev_free(x), dev_free(cols);
    }
}

/* col2im against loops (it overwrites dx), and <im2col(x), c> = <x, col2im(c)>
 * in double. Each dx element is a float sum of at most k*k entries: its
 * rounding is at most (k*k) * 2^-24 of the sum of their magnitudes. */
static void test_col2im_adjoint(void **state)
{
    (void)state;
    struct rng r = {2002};
    double worst_loop = 0.0, worst_adj = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        struct ds_window g = draw_window(&r);
        int K = g.k, P = g.oh * g.ow;
        size_t nx = (size_t)g.batch * g.c * g.h * g.w, rows = (size_t)g.c * K * K;
        size_t BP = (size_t)g.batch * P, nc = rows * BP;
        double tol = (K * K + 1) * 1.2e-7;
        float *hx = xcalloc(nx, sizeof(float)), *hcc = xcalloc(nc, sizeof(float));
        float *hcols = xcalloc(nc, sizeof(float)), *hdx = xcalloc(nx, sizeof(float));
        double *ref = xcalloc(nx, sizeof(double)), *mag = xcalloc(nx, sizeof(double));
        rng_fill(&r, hx, nx, -2.0, 2.0);
        rng_fill(&r, hcc, nc, -1.0, 1.0);
        float *x = dev_alloc(nx), *cc = dev_alloc(nc), *cols = dev_alloc(nc), *dx = dev_alloc(nx);
        dev_put(x, hx, nx);
        dev_put(cc, hcc, nc);
        g_be.ops->fill(&g_be, dx, nx, 7.0f);
        g_be.ops->im2col(&g_be, &g, x, cols);
        g_be.ops->col2im(&g_be, &g, cc, dx);
        dev_get(hcols, cols, nc);
        dev_get(hdx, dx, nx);
        /* col2im by loops */
        for (int ci = 0; ci < g.c; ci++)
            for (int ki = 0; ki < K; ki++)
                for (int kj = 0; kj < K; kj++)
                    for (int b = 0; b < g.batch; b++)
                        for (int oi = 0; oi < g.oh; oi++)
                            for (int oj = 0; oj < g.ow; oj++) {
                                int ih = oi * g.stride - g.pad + ki;
                                int iw = oj * g.stride - g.pad + kj;
                                if (ih < 0 || ih >= g.h || iw < 0 || iw >= g.w) continue;
                                size_t at = (((size_t)b * g.c + ci) * g.h + ih) * g.w + iw;
                                double v = hcc[(((size_t)ci * K + ki) * K + kj) * BP +
                                               (size_t)b * P + (size_t)oi * g.ow + oj];
                                ref[at] += v, mag[at] += fabs(v);
                            }
        for (size_t i = 0; i < nx; i++) {
            double e = fabs((double)hdx[i] - ref[i]) / (mag[i] + 1e-30);
            if (mag[i] == 0.0 && hdx[i] != 0.0) e = INFINITY; /* read by no window: must be 0 */
            if (e > worst_loop) worst_loop = e;
            if (!(e <= tol))
                fail_msg("col2im [b %d, c %d, %dx%d] k %d stride %d pad %d: dx[%zu] = %.9g, "
                         "loops %.9g",
                         g.batch, g.c, g.h, g.w, K, g.stride, g.pad, i, (double)hdx[i], ref[i]);
        }
        /* the adjoint identity */
        double lhs = 0.0, rhs = 0.0, scale = 0.0;
        for (size_t j = 0; j < nc; j++) {
            lhs += (double)hcols[j] * hcc[j];
            scale += fabs((double)hcols[j] * hcc[j]);
        }
        for (size_t i = 0; i < nx; i++) rhs += (double)hx[i] * hdx[i];
        double e = fabs(lhs - rhs) / (scale + 1e-30);
        if (e > worst_adj) worst_adj = e;
        if (!(e <= tol))
            fail_msg("[b %d, c %d, %dx%d] k %d stride %d pad %d: <im2col(x), c> = %.12g, "
                     "<x, col2im(c)> = %.12g (rel %.3g > %.3g)",
                     g.batch, g.c, g.h, g.w, K, g.stride, g.pad, lhs, rhs, e, tol);
        free(hx), free(hcc), free(hcols), free(hdx), free(ref), free(mag);
        dev_free(x), dev_free(cc), dev_free(cols), dev_free(dx);
    }
    print_message("# %-40s worst vs loops %.2e, adjoint <.,.> %.2e (relative to sum|terms|; "
                  "tol (k*k + 1) * 1.2e-7)\n",
                  "col2im", worst_loop, worst_adj);
}

/* out[r] (+)= sum_c x[r, c], summed in double and rounded once. */
static void test_row_sum(void **state)
{
    (void)state;
    struct rng r = {2003};
    double worst = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        int rows = rng_int(&r, 1, 9), cols = rng_int(&r, 1, 300), acc = t & 1;
        size_t n = (size_t)rows * cols;
        float *hx = xcalloc(n, sizeof(float)), hold[9], hout[9];
        rng_fill(&r, hx, n, -1.0, 1.0);
        rng_fill(&r, hold, (size_t)rows, -5.0, 5.0);
        float *x = dev_alloc(n), *out = dev_alloc((size_t)rows + 1);
        float sentinel = 42.0f;
        dev_put(x, hx, n);
        dev_put(out, hold, (size_t)rows);
        dev_put(out + rows, &sentinel, 1);
        g_be.ops->row_sum(&g_be, rows, cols, x, out, acc);
        dev_get(hout, out, (size_t)rows);
        float after;
        dev_get(&after, out + rows, 1);
        assert_true(after == sentinel);
        for (int i = 0; i < rows; i++) {
            double s = acc ? hold[i] : 0.0, m = acc ? fabs(hold[i]) : 0.0;
            for (int c = 0; c < cols; c++) {
                double v = hx[(size_t)i * cols + c];
                s += v, m += fabs(v);
            }
            double e = fabs(hout[i] - s) / (m + 1e-30);
            if (e > worst) worst = e;
            if (!(e <= 2.4e-7))
                fail_msg("row_sum %dx%d accumulate %d: row %d = %.9g, loop %.9g", rows, cols, acc,
                         i, (double)hout[i], s);
        }
        free(hx);
        dev_free(x), dev_free(out);
    }
    print_message("# %-40s worst |out - sum| / sum|x| %.2e (tol 2.4e-07)\n", "row_sum", worst);
}

/* y[b, c, p] = act(yt[c, b*P + p] + bias[c]); pre = yt + bias (every
 * activation but ReLU, whose backward needs only y). Bitwise for the
 * identity, ReLU and pre; the others within their float functions' rounding. */
static void test_chw_bias_act(void **state)
{
    (void)state;
    struct rng r = {2004};
    double worst = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        int batch = rng_int(&r, 1, 3), ch = rng_int(&r, 1, 5), P = rng_int(&r, 1, 30);
        enum ds_act act = (enum ds_act)(t % DS_ACT_COUNT);
        int with_bias = (t / DS_ACT_COUNT) % 2 == 0;
        size_t n = (size_t)batch * ch * P, BP = (size_t)batch * P;
        float *hyt = xcalloc(n, sizeof(float)), hb[5], *hy = xcalloc(n, sizeof(float));
        float *hpre = xcalloc(n, sizeof(float));
        rng_fill(&r, hyt, n, -3.0, 3.0);
        rng_fill(&r, hb, 5, -1.0, 1.0);
        float *yt = dev_alloc(n), *bias = dev_alloc(5), *y = dev_alloc(n), *pre = dev_alloc(n);
        dev_put(yt, hyt, n), dev_put(bias, hb, 5);
        g_be.ops->fill(&g_be, y, n, NAN);
        g_be.ops->fill(&g_be, pre, n, NAN);
        g_be.ops->chw_bias_act(&g_be, batch, ch, P, yt, with_bias ? bias : NULL, act, y, pre);
        dev_get(hy, y, n), dev_get(hpre, pre, n);
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < ch; c++)
                for (int p = 0; p < P; p++) {
                    float z = hyt[(size_t)c * BP + (size_t)b * P + p] + (with_bias ? hb[c] : 0.0f);
                    size_t at = ((size_t)b * ch + c) * P + p;
                    if (act != DS_ACT_RELU && memcmp(&hpre[at], &z, sizeof z) != 0)
                        fail_msg("chw_bias_act %s [%d, %d, %d]: pre[%d, %d, %d] = %.9g, want %.9g",
                                 act_label(act), batch, ch, P, b, c, p, (double)hpre[at],
                                 (double)z);
                    double want = act_d(act, z);
                    if (act == DS_ACT_NONE || act == DS_ACT_RELU) {
                        float wf = (float)want;
                        if (memcmp(&hy[at], &wf, sizeof wf) != 0)
                            fail_msg("chw_bias_act %s [%d, %d, %d] bias %d: y[%d, %d, %d] = %.9g, "
                                     "want %.9g",
                                     act_label(act), batch, ch, P, with_bias, b, c, p,
                                     (double)hy[at], want);
                        continue;
                    }
                    double e = fabs(hy[at] - want) / (fabs(want) + fabs(z) + 1e-30);
                    if (e > worst) worst = e;
                    if (!(e <= 1e-6))
                        fail_msg("chw_bias_act %s [%d, %d, %d] bias %d: y[%d, %d, %d] = %.9g, "
                                 "want %.9g",
                                 act_label(act), batch, ch, P, with_bias, b, c, p, (double)hy[at],
                                 want);
                }
        free(hyt), free(hy), free(hpre);
        dev_free(yt), dev_free(bias), dev_free(y), dev_free(pre);
    }
    print_message("# %-40s worst |y - act(z)| / (|act(z)| + |z|) %.2e (tol 1e-06; identity, ReLU "
                  "and pre bitwise)\n",
                  "chw_bias_act", worst);
}

/* dzt[c, b*P + p] = dy[b, c, p] * act'(z), act' from y (ReLU, Tanh, Sigmoid:
 * pre NULL, as the model passes it) or from pre (GELU). */
static void test_chw_act_backward(void **state)
{
    (void)state;
    struct rng r = {2005};
    double worst = 0.0;
    for (int t = 0; t < FWD_TRIALS; t++) {
        int batch = rng_int(&r, 1, 3), ch = rng_int(&r, 1, 5), P = rng_int(&r, 1, 30);
        enum ds_act act = (enum ds_act)(t % DS_ACT_COUNT);
        size_t n = (size_t)batch * ch * P, BP = (size_t)batch * P;
        float *hz = xcalloc(n, sizeof(float)), *hy = xcalloc(n, sizeof(float));
        float *hdy = xcalloc(n, sizeof(float)), *hd = xcalloc(n, sizeof(float));
        rng_fill(&r, hz, n, -3.0, 3.0);
        rng_fill(&r, hdy, n, -1.0, 1.0);
        for (size_t i = 0; i < n; i++) hy[i] = (float)act_d(act, hz[i]);
        float *pre = dev_alloc(n), *y = dev_alloc(n), *dy = dev_alloc(n), *dzt = dev_alloc(n);
        dev_put(pre, hz, n), dev_put(y, hy, n), dev_put(dy, hdy, n);
        g_be.ops->fill(&g_be, dzt, n, NAN);
        g_be.ops->chw_act_backward(&g_be, batch, ch, P, act, act == DS_ACT_GELU ? pre : NULL, y,
                                   dy, dzt);
        dev_get(hd, dzt, n);
        for (int b = 0; b < batch; b++)
            for (int c = 0; c < ch; c++)
                for (int p = 0; p < P; p++) {
                    size_t src = ((size_t)b * ch + c) * P + p;
                    size_t dst = (size_t)c * BP + (size_t)b * P + p;
                    double want = (double)hdy[src] * act_grad_d(act, hz[src]);
                    double got = hd[dst];
                    if (act == DS_ACT_NONE || act == DS_ACT_RELU) {
                        if (got != want)
                            fail_msg("chw_act_backward %s [%d, %d, %d]: dzt[%d, %zu] = %.9g, "
                                     "want %.9g",
                                     act_label(act), batch, ch, P, c, (size_t)b * P + p, got, want);
                        continue;
                    }
                    double e = fabs(got - want) / (fabs((double)hdy[src]) + 1e-30);
                    if (e > worst) worst = e;
                    if (!(e <= 1e-6))
                        fail_msg("chw_act_backward %s [%d, %d, %d]: dzt[%d, %zu] = %.9g, want "
                                 "%.9g (z %.6g)",
                                 act_label(act), batch, ch, P, c, (size_t)b * P + p, got, want,
                                 (double)hz[src]);
                }
        free(hz), free(hy), free(hdy), free(hd);
        dev_free(pre), dev_free(y), dev_free(dy), dev_free(dzt);
    }
    print_message("# %-40s worst |dzt - dy act'| / |dy| %.2e (tol 1e-06; identity and ReLU "
                  "exact)\n",
                  "chw_act_backward", worst);
}

/* dst[r, j] = (src[idx[r], j] / 255 - mean) / std, computed in float as
 * torchvision's ToTensor (x.float().div(255)) then Normalize (sub_(mean),
 * div_(std)): bit for bit, for every byte value, repeated and boundary rows;
 * mean 0, std 1 is exactly x / 255; nothing written past the last row. */
static void test_gather_u8(void **state)
{
    (void)state;
    struct rng r = {2006};
    double worst = 0.0;
    for (int t = 0; t < 24; t++) {
        int n_src = rng_int(&r, 1, 12), rows = rng_int(&r, 1, 9);
        size_t len = (size_t)rng_int(&r, 1, 80);
        if (t < 2) n_src = 1, rows = 1, len = 256; /* every byte value once */
        uint8_t *hs = xcalloc((size_t)n_src * len, 1);
        for (size_t i = 0; i < (size_t)n_src * len; i++)
            hs[i] = t < 2 ? (uint8_t)i : (uint8_t)(rng_next(&r) & 255);
        hs[0] = 0, hs[(size_t)n_src * len - 1] = 255;
        int32_t idx[9];
        for (int i = 0; i < rows; i++) idx[i] = rng_int(&r, 0, n_src - 1);
        idx[0] = n_src - 1; /* the last row of the source */
        if (rows > 1) idx[rows - 1] = idx[0];
        /* plain (0, 1), Fashion-MNIST's statistics, and random ones */
        float mean = 0.0f, sd = 1.0f;
        if (t % 3 == 1) mean = 0.2860f, sd = 0.3530f;
        if (t % 3 == 2) mean = (float)rng_unif(&r, -1, 1), sd = (float)rng_unif(&r, 0.1, 2);
        uint8_t *src = g_be.ops->alloc(&g_be, (size_t)n_src * len);
        assert_non_null(src);
        g_be.ops->upload(&g_be, src, hs, (size_t)n_src * len);
        size_t nd = (size_t)rows * len;
        float *dst = dev_alloc(nd + 1), *hd = xcalloc(nd + 1, sizeof(float));
        g_be.ops->fill(&g_be, dst, nd + 1, -7.0f);
        g_be.ops->gather_u8(&g_be, rows, len, src, idx, mean, sd, dst);
        dev_get(hd, dst, nd + 1);
        assert_true(hd[nd] == -7.0f);
        for (int i = 0; i < rows; i++)
            for (size_t j = 0; j < len; j++) {
                uint8_t byte = hs[(size_t)idx[i] * len + j];
                float v = (float)byte / 255.0f; /* ToTensor */
                v = v - mean;                   /* Normalize */
                v = v / sd;
                double exact = ((double)byte / 255.0 - mean) / sd;
                float got = hd[(size_t)i * len + j];
                /* error per unit of the output's scale (1 + |mean|) / std */
                double e = fabs((double)got - exact) * sd / (1.0 + fabs((double)mean));
                if (e > worst) worst = e;
                if (memcmp(&got, &v, sizeof v) != 0)
                    fail_msg("gather_u8 rows %d len %zu mean %.9g std %.9g: dst[%d, %zu] = %.9g, "
                             "want (%d / 255 - mean) / std = %.9g in float (%.12g exactly; "
                             "source row %d)",
                             rows, len, (double)mean, (double)sd, i, j, (double)got, byte,
                             (double)v, exact, idx[i]);
            }
        free(hs), free(hd);
        g_be.ops->free(&g_be, src);
        dev_free(dst);
    }
    print_message("# %-40s bitwise as torchvision in float; vs exact maths %.2e relative\n",
                  "gather_u8", worst);
}

/* A conv stack's forward and backward with 1 and with 2 threads: bit for bit.
 * The CPU backend sets its thread count process-wide at create
 * (omp_set_num_threads, openblas_set_num_threads), so each backend is created
 * right before its run. Sizes are above the backend's 8192-element threshold
 * for parallel loops, so the 2-thread runs take the parallel paths. */
static void run_threads(int threads, const uint8_t *hbytes, int n_img, const int32_t *idx,
                        int batch, float *out, float *grads, float *dx, size_t *np_out)
{
    const struct ds_layer_spec specs[] = {
        {.kind = DS_LAYER_CONV2D, .units = 8, .kernel = 3, .pad = 1},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_CONV2D, .units = 8, .kernel = 5, .pad = 2}, /* Winograd on the CPU */
        {.kind = DS_LAYER_GELU},
        {.kind = DS_LAYER_AVGPOOL2D, .kernel = 2},
        {.kind = DS_LAYER_FLATTEN},
        {.kind = DS_LAYER_DROPOUT, .p = 0.25f},
        {.kind = DS_LAYER_LINEAR, .units = 10}};
    enum { C = 3, S = 32 };
    struct ds_backend be;
    struct ds_err err = {{0}};
    if (ds_backend_create("cpu", threads, &be, &err) != DS_OK) fail_msg("cpu backend: %s", err.msg);
    assert_int_equal(be.threads, threads);
    struct ds_model m;
    if (ds_model_create_chw(&be, C, S, S, specs, DS_ARRAY_LEN(specs), batch, 1, 99, &m, &err) !=
        DS_OK)
        fail_msg("model: %s", err.msg);
    ds_model_init_params(&m, DS_INIT_DEFAULT, 12345);
    size_t row = (size_t)C * S * S, nout = (size_t)batch * m.out;
    uint8_t *bytes = be.ops->alloc(&be, (size_t)n_img * row);
    float *x = be.ops->alloc(&be, (size_t)batch * row * sizeof(float));
    float *dout = be.ops->alloc(&be, nout * sizeof(float));
    assert_true(bytes && x && dout);
    be.ops->upload(&be, bytes, hbytes, (size_t)n_img * row);
    be.ops->gather_u8(&be, batch, row, bytes, idx, 0.2860f, 0.3530f, x);
    float *hdout = xcalloc(nout, sizeof(float));
    struct rng r = {77};
    rng_fill(&r, hdout, nout, -1.0, 1.0);
    be.ops->upload(&be, dout, hdout, nout * sizeof(float));
    struct ds_pass pass = {.step = 2, .row0 = 0, .rows_per_step = batch, .train = 1};
    be.ops->download(&be, out, ds_model_forward(&m, x, batch, &pass), nout * sizeof(float));
    const float *g = ds_model_backward(&m, dout, batch, &pass, 0);
    assert_non_null(g);
    be.ops->download(&be, dx, g, (size_t)batch * row * sizeof(float));
    be.ops->download(&be, grads, m.grads, m.layout.total * sizeof(float));
    *np_out = m.layout.total;
    free(hdout);
    be.ops->free(&be, bytes), be.ops->free(&be, x), be.ops->free(&be, dout);
    ds_model_free(&m);
    ds_backend_destroy(&be);
}

static void test_threads_bitwise(void **state)
{
    (void)state;
    /* 32 images of 3x32x32: the first conv's batch is cut into ~11 chunks of
     * im2col columns and the second's (5x5, 8 -> 8 channels: Winograd) into 5
     * chunks of tiles (CPU), enough for the two threads to overlap */
    enum { N_IMG = 40, B = 32, ROW = 3 * 32 * 32, MAXP = 8192, RUNS = 4 };
    uint8_t *hbytes = xcalloc((size_t)N_IMG * ROW, 1);
    struct rng r = {2007};
    for (size_t i = 0; i < (size_t)N_IMG * ROW; i++) hbytes[i] = (uint8_t)(rng_next(&r) & 255);
    int32_t idx[B];
    for (int i = 0; i < B; i++) idx[i] = rng_int(&r, 0, N_IMG - 1);
    /* run 0 with 1 thread, runs 1.. with 2 (a race shows in some run, not every) */
    float *out[RUNS], *grads[RUNS], *dx[RUNS];
    size_t np[RUNS];
    for (int k = 0; k < RUNS; k++) {
        out[k] = xcalloc((size_t)B * 10, sizeof(float));
        grads[k] = xcalloc(MAXP, sizeof(float));
        dx[k] = xcalloc((size_t)B * ROW, sizeof(float));
        run_threads(k == 0 ? 1 : 2, hbytes, N_IMG, idx, B, out[k], grads[k], dx[k], &np[k]);
        assert_int_equal(np[k], np[0]);
    }
    assert_true(np[0] <= MAXP);
    /* the runs did something: outputs and gradients are not all zero */
    double s = 0.0;
    for (size_t i = 0; i < np[0]; i++) s += fabs(grads[0][i]);
    assert_true(s > 0.0);
    const char *what[3] = {"output", "parameter gradient", "input gradient"};
    for (int run = 1; run < RUNS; run++) {
        float *a[3] = {out[0], grads[0], dx[0]}, *b[3] = {out[run], grads[run], dx[run]};
        size_t n[3] = {(size_t)B * 10, np[0], (size_t)B * ROW};
        for (int k = 0; k < 3; k++)
            for (size_t i = 0; i < n[k]; i++)
                if (memcmp(&a[k][i], &b[k][i], sizeof(float)) != 0)
                    fail_msg("%s %zu: %.9g with 1 thread, %.9g with 2 (2-thread run %d)", what[k],
                             i, (double)a[k][i], (double)b[k][i], run);
    }
    print_message("# %-40s output, %zu parameter and %d input gradients identical (%d runs "
                  "with 2 threads)\n",
                  "1 vs 2 threads", np[0], B * ROW, RUNS - 1);
    for (int k = 0; k < RUNS; k++) free(out[k]), free(grads[k]), free(dx[k]);
    free(hbytes);
    /* the shared backend was created with 1 thread: restore the process-wide count */
    struct ds_backend one;
    struct ds_err err = {{0}};
    assert_int_equal(ds_backend_create("cpu", 1, &one, &err), DS_OK);
    ds_backend_destroy(&one);
}

/* ============================ creation errors ============================ */

/* Creates a model that must fail with DS_ERR_INPUT and a message holding
 * each of `words` (NULL-terminated); the model is left zeroed. */
static void expect_input_error(int c, int h, int w, const struct ds_layer_spec *specs, int n,
                               const char *const *words)
{
    struct ds_model m;
    struct ds_err err = {{0}};
    ds_status st = ds_model_create_chw(&g_be, c, h, w, specs, n, 2, 1, 7, &m, &err);
    if (st != DS_ERR_INPUT) {
        if (st == DS_OK) ds_model_free(&m);
        fail_msg("[%d, %d, %d], %d layers: status %s, want DS_ERR_INPUT (message '%s')", c, h, w,
                 n, ds_status_name(st), err.msg);
    }
    for (int i = 0; words[i]; i++)
        if (!strstr(err.msg, words[i]))
            fail_msg("[%d, %d, %d]: message '%s' lacks '%s'", c, h, w, err.msg, words[i]);
    assert_null(m.layers);
    assert_null(m.params);
    assert_null(m.arena);
    assert_int_equal(m.layout.n, 0);
    ds_model_free(&m); /* harmless after a failed create */
    print_message("#   [%d, %d, %d]: %s\n", c, h, w, err.msg);
}

static void expect_ok(int c, int h, int w, const struct ds_layer_spec *specs, int n)
{
    struct ds_model m;
    make_chw(c, h, w, specs, n, 2, 1, 7, &m);
    ds_model_free(&m);
}

static void test_create_kernel_too_large(void **state)
{
    (void)state;
    const struct ds_layer_spec conv5 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 5};
    expect_input_error(1, 4, 4, &conv5, 1, (const char *[]){"layer 0", "Conv2d", "larger", NULL});
    expect_input_error(2, 9, 4, &conv5, 1, (const char *[]){"layer 0", "Conv2d", "larger", NULL});
    expect_input_error(2, 4, 9, &conv5, 1, (const char *[]){"layer 0", "Conv2d", "larger", NULL});
    /* a later layer: Conv k3 leaves 2x2, a 3x3 pool does not fit (the first
     * layer's parameters are released) */
    const struct ds_layer_spec later[] = {
        {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3},
        {.kind = DS_LAYER_RELU},
        {.kind = DS_LAYER_MAXPOOL2D, .kernel = 3}};
    expect_input_error(1, 4, 4, later, 3, (const char *[]){"layer 2", "MaxPool2d", NULL});
    const struct ds_layer_spec avg = {.kind = DS_LAYER_AVGPOOL2D, .kernel = 5};
    expect_input_error(3, 5, 4, &avg, 1, (const char *[]){"layer 0", "AvgPool2d", NULL});
    /* the boundary fits: k = side, or k = side + 2 pad */
    const struct ds_layer_spec conv4 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 4};
    const struct ds_layer_spec conv5p2 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 5,
                                          .pad = 2};
    const struct ds_layer_spec conv5p1 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 5,
                                          .pad = 1};
    expect_ok(1, 4, 4, &conv4, 1);
    expect_ok(1, 1, 1, &conv5p2, 1);
    expect_ok(1, 3, 3, &conv5p1, 1);
    expect_input_error(1, 2, 3, &conv5p1, 1, (const char *[]){"layer 0", "larger", NULL});
    expect_ok(3, 5, 5, &avg, 1);
}

static void test_create_pad_too_large(void **state)
{
    (void)state;
    const struct ds_layer_spec p2k3 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3, .pad = 2};
    const struct ds_layer_spec p1k1 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 1, .pad = 1};
    const struct ds_layer_spec neg = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3, .pad = -1};
    const struct ds_layer_spec p2k4 = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 4, .pad = 2};
    expect_input_error(1, 8, 8, &p2k3, 1, (const char *[]){"layer 0", "Conv2d", "padding 2", NULL});
    expect_input_error(1, 8, 8, &p1k1, 1, (const char *[]){"layer 0", "padding 1", NULL});
    expect_input_error(1, 8, 8, &neg, 1, (const char *[]){"layer 0", "padding -1", NULL});
    const struct ds_layer_spec later[] = {{.kind = DS_LAYER_FLATTEN},
                                          {.kind = DS_LAYER_LINEAR, .units = 4},
                                          {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 1,
                                           .pad = 1}};
    expect_input_error(1, 8, 8, later, 3, (const char *[]){"layer 2", "padding 1", NULL});
    expect_ok(1, 8, 8, &p2k4, 1); /* 2 pad = k is allowed */
}

static void test_create_zero_channels(void **state)
{
    (void)state;
    const struct ds_layer_spec zero = {.kind = DS_LAYER_CONV2D, .units = 0, .kernel = 3};
    const struct ds_layer_spec negative = {.kind = DS_LAYER_CONV2D, .units = -2, .kernel = 3};
    const struct ds_layer_spec ok = {.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3};
    expect_input_error(1, 8, 8, &zero, 1,
                       (const char *[]){"layer 0", "Conv2d", "0 channels", NULL});
    expect_input_error(1, 8, 8, &negative, 1, (const char *[]){"layer 0", "-2 channels", NULL});
    const struct ds_layer_spec later[] = {{.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3},
                                          {.kind = DS_LAYER_CONV2D, .units = 0, .kernel = 3}};
    expect_input_error(1, 8, 8, later, 2, (const char *[]){"layer 1", "0 channels", NULL});
    /* zero input channels, rows or columns */
    expect_input_error(0, 8, 8, &ok, 1, (const char *[]){"input [0, 8, 8]", NULL});
    expect_input_error(2, 0, 8, &ok, 1, (const char *[]){"input [2, 0, 8]", NULL});
    expect_input_error(2, 8, 0, &ok, 1, (const char *[]){"input [2, 8, 0]", NULL});
    /* a zero-sized window */
    const struct ds_layer_spec k0 = {.kind = DS_LAYER_MAXPOOL2D, .kernel = 0};
    expect_input_error(1, 8, 8, &k0, 1, (const char *[]){"layer 0", "MaxPool2d", "kernel 0", NULL});
}

/* A kind outside the enum (a corrupt spec) is an input error, not a crash. */
static void test_create_unknown_kind(void **state)
{
    (void)state;
    const struct ds_layer_spec bad = {.kind = DS_LAYER_COUNT};
    expect_input_error(1, 4, 4, &bad, 1, (const char *[]){"layer 0", "unknown kind 10", NULL});
    const struct ds_layer_spec later[] = {{.kind = DS_LAYER_CONV2D, .units = 2, .kernel = 3},
                                          {.kind = (enum ds_layer_kind)99}};
    expect_input_error(1, 4, 4, later, 2, (const char *[]){"layer 1", "unknown kind 99", NULL});
}

/* ================================== main ================================== */

int main(void)
{
    const struct CMUnitTest head[] = {
        cmocka_unit_test(test_conv_forward),
        cmocka_unit_test(test_conv_relu_forward),
        cmocka_unit_test(test_conv_tanh_forward),
        cmocka_unit_test(test_conv_gelu_forward),
        cmocka_unit_test(test_conv_sigmoid_forward),
        cmocka_unit_test(test_conv_forward_tiny),
        cmocka_unit_test(test_maxpool_forward),
        cmocka_unit_test(test_avgpool_forward),
        cmocka_unit_test(test_maxpool_ties),
        cmocka_unit_test(test_maxpool_nan),
        cmocka_unit_test(test_flatten_forward),
        cmocka_unit_test(test_layout_names),
    };
    const struct CMUnitTest tail[] = {
        cmocka_unit_test(test_conv_accumulate),
        cmocka_unit_test(test_conv_backward_chunks),
        cmocka_unit_test(test_im2col_formula),
        cmocka_unit_test(test_col2im_adjoint),
        cmocka_unit_test(test_row_sum),
        cmocka_unit_test(test_chw_bias_act),
        cmocka_unit_test(test_chw_act_backward),
        cmocka_unit_test(test_gather_u8),
        cmocka_unit_test(test_threads_bitwise),
        cmocka_unit_test(test_create_kernel_too_large),
        cmocka_unit_test(test_create_pad_too_large),
        cmocka_unit_test(test_create_zero_channels),
        cmocka_unit_test(test_create_unknown_kind),
    };
    struct CMUnitTest tests[DS_ARRAY_LEN(head) + N_CC_CASES + DS_ARRAY_LEN(tail)];
    size_t n = 0;
    for (size_t i = 0; i < DS_ARRAY_LEN(head); i++) tests[n++] = head[i];
    for (size_t i = 0; i < N_CC_CASES; i++)
        tests[n++] = (struct CMUnitTest){.name = cc_cases[i].name,
                                         .test_func = test_conv_gradcheck,
                                         .initial_state = (void *)&cc_cases[i]};
    for (size_t i = 0; i < DS_ARRAY_LEN(tail); i++) tests[n++] = tail[i];
    return _cmocka_run_group_tests("conv", tests, n, setup_backend, teardown_backend);
}
