/*
 * test_cuda.c: the CUDA backend against the CPU backend, op by op, through
 * the backend interface only (ds_backend_create("cpu", 1) and ("cuda", 0)).
 * Every case draws its inputs from a fixed seed, uploads the same bytes to
 * both backends, runs the op on each and compares what comes back:
 *
 *  - memory: alloc is zero-filled (also after a free), upload, download and
 *    copy round trips at odd byte offsets and counts, fill, free(NULL);
 *  - gemm: all four transpose pairs, m, n, k in {1, 7, 33, 130}, alpha/beta
 *    other than 1/0, leading dimensions above the minimum (padding is never
 *    read, and C's is never written);
 *  - the element-wise ops and reductions: bias_act (each activation, with and
 *    without bias and pre), act_backward (each, dx apart or aliasing dy),
 *    col_sum, row_sum (accumulate 0/1), dropout (the same Philox bits: equal
 *    to the bit), add_normal, scale, axpy, dot, the three gathers (idx on the host);
 *  - the spatial ops: im2col (equal), col2im, chw_bias_act,
 *    chw_act_backward, max and average pooling (stride = k and stride < k),
 *    conv_forward/conv_backward with each backend's own conv_workspace over
 *    c 1/3/8 x out_c 4/32 x k 3/5 x stride 1/2 x pad 0/(k/2) x batch 1/5 x
 *    every activation, accumulate and dx = NULL varied across the cases;
 *  - the losses: softmax_xent, bce_logits, sq_error (sum, gradient, correct);
 *  - optim_step: every registered optimizer at its defaults, and variants
 *    (Nesterov, dampening, AMSGrad, decoupled wd, centered RMSprop with
 *    momentum, Adagrad's lr_decay, L2 and L1), 5 steps, p and every state slot;
 *  - determinism: dot, softmax_xent, col_sum and conv_backward twice on the
 *    GPU give the same bits;
 *  - a small MLP (Linear-GELU-Dropout-Linear-Tanh-Linear, cross-entropy)
 *    trained 20 steps by Adam through ds_supervised_create and
 *    ds_trainer_step on each backend from the same initial parameters;
 *  - the real fmnist-mlp workload (Debian's Fashion-MNIST) trained 100 Adam
 *    steps with dropout and the global-norm clip on each backend, then
 *    evaluated, within TRAIN_TOL at every step; and a second GPU run, which
 *    must give the same bits (losses, norms, parameters, eval);
 *  - the small fmnist-cnn trained 30 steps (see test_train_fmnist_cnn for why
 *    its later steps have a looser bound than the MLP's).
 *
 * Tolerances. Float results are compared two ways, gpu against cpu:
 *   ||gpu - cpu||_2 / ||cpu||_2            <= PAR_TOL  = 1e-5
 *   max_i |gpu_i - cpu_i| / max_i |cpu_i|  <= ELEM_TOL = 1e-4 (the floor TINY
 *                                             when cpu is all zeros)
 * The first is the acceptance bound of the CUDA issue. The second catches a
 * few wrong elements that the norm would average away (a window edge, a
 * tail of a vector); it is looser because the CPU's own arithmetic differs
 * from a direct sum by more than 1e-5 in single elements: against
 * convolutions done as im2col + a GEMM in double, its Winograd path (5x5,
 * stride 1, 8n channels) measured up to 1.6e-6 on the norm and 1.7e-5 on
 * the max element over these cases (a tanh output carries its
 * pre-activation's absolute error). A wrong element is off by the size of
 * the values, 1e4 times either bound. Doubles (loss sums, dot) are compared
 * relative to their magnitude (dot: sum |x_i y_i|). Copies,
 * gathers of floats and ints, im2col, max pooling, dropout, fills and the
 * counts of correct predictions must be equal (dropout and copies: to the bit).
 * Inputs are drawn so that results do not cancel: GEMM cases whose output
 * norm is under 1/30 of the norm of its terms' magnitudes are drawn again, and the
 * col_sum/row_sum inputs have a positive mean; otherwise both backends'
 * rounding (~1e-7 of the terms) could exceed 1e-5 of a cancelled result.
 * For the same reason the activation ops run on 7 elements or more (one GELU
 * output deep in its negative tail, where 1 + erf cancels, is all rounding).
 * The MLP's losses must agree to TRAIN_TOL = 1e-4 relative at every step,
 * and the first step's loss and gradient norm (same parameters) to PAR_TOL.
 *
 * Skips. Without a usable GPU, or in a build without the CUDA backend,
 * ds_backend_create("cuda") returns DS_ERR_UNSUPPORTED with a message: the
 * group setup prints "# <message>: GPU tests skipped" once and every test
 * calls skip() (tests/run.sh counts them as skipped). Any other failure to
 * create the backend fails every test. With DESCENT_REQUIRE_GPU=1 in the
 * environment (a GPU machine's check), a skip becomes a failure.
 */
#include "testutil.h"
#include "gcutil.h" /* rng, xcalloc; its g_be is the CPU backend here */

#include "../core/backend.h"
#include "../core/comm.h"
#include "../core/philox.h"
#include "../harness/train.h"
#include "../optimizers/optim.h"
#include "../optimizers/schedule.h"
#include "../workloads/dataset.h"
#include "../workloads/workload.h"

#define PAR_TOL 1e-5       /* ||gpu - cpu|| / ||cpu|| */
#define ELEM_TOL 1e-4      /* max |gpu - cpu| / max |cpu| */
#define TINY 1e-30         /* the floor of max |cpu| */
#define TRAIN_TOL 1e-4     /* MLP losses, relative, at every step */
#define GEMM_MAX_COND 30.0 /* redraw GEMM inputs whose output cancels more than this */

static struct ds_backend g_gpu;
static int g_gpu_ok;
static const char *g_gpu_missing; /* the first op the cuda backend leaves NULL */
static ds_status g_gpu_status = DS_OK;
static char g_gpu_why[1024];

static int require_gpu_(void)
{
    const char *v = getenv("DESCENT_REQUIRE_GPU");
    return v && v[0] && strcmp(v, "0") != 0;
}

/* First line of every test: skips (or fails) when there is no GPU backend. */
#define NEED_GPU()                                                                                 \
    do {                                                                                           \
        if (!g_gpu_ok) {                                                                           \
            if (g_gpu_status != DS_ERR_UNSUPPORTED)                                                \
                fail_msg("ds_backend_create(\"cuda\") failed with %s: %s",                         \
                         ds_status_name(g_gpu_status), g_gpu_why);                                 \
            if (require_gpu_()) fail_msg("DESCENT_REQUIRE_GPU is set, but: %s", g_gpu_why);        \
            skip();                                                                                \
        }                                                                                          \
        if (g_gpu_missing) fail_msg("the cuda backend leaves ops->%s NULL", g_gpu_missing);        \
    } while (0)

/* Every op of the interface: a NULL one fails the tests instead of crashing them. */
#define DS_BACKEND_OPS_(X)                                                                         \
    X(destroy) X(describe) X(alloc) X(free) X(upload) X(download) X(copy) X(fill) X(gemm)         \
    X(bias_act) X(act_backward) X(col_sum) X(dropout) X(conv_workspace) X(conv_forward)           \
    X(conv_backward) X(im2col) X(col2im) X(chw_bias_act) X(chw_act_backward) X(row_sum)           \
    X(pool_forward) X(pool_backward) X(softmax_xent) X(bce_logits) X(sq_error) X(dot) X(scale)    \
    X(axpy) X(add_normal) X(gather_rows) X(gather_u8) X(gather_i32) X(grad_guard) X(optim_step)  \
    X(sync)
#define DS_FIND_NULL_OP_(op)                                                                       \
    if (!g_gpu_missing && !g_gpu.ops->op) g_gpu_missing = #op;

static int group_setup(void **state)
{
    if (setup_backend(state) != 0) return -1; /* g_be: cpu, 1 thread */
    struct ds_err err = {{0}};
    g_gpu_status = ds_backend_create("cuda", 0, &g_gpu, &err);
    if (g_gpu_status == DS_OK) {
        g_gpu_ok = 1;
        DS_BACKEND_OPS_(DS_FIND_NULL_OP_)
        if (g_gpu_missing)
            print_message("# the cuda backend leaves ops->%s NULL\n", g_gpu_missing);
        else
            print_message("# cpu: %s\n# gpu: %s\n", g_be.ops->describe(&g_be),
                          g_gpu.ops->describe(&g_gpu));
    } else {
        snprintf(g_gpu_why, sizeof g_gpu_why, "%s", err.msg);
        if (g_gpu_status == DS_ERR_UNSUPPORTED)
            print_message("# %s: GPU tests skipped\n", err.msg);
        else
            print_message("# ds_backend_create(\"cuda\") failed (%s): %s\n",
                          ds_status_name(g_gpu_status), err.msg);
    }
    return 0;
}

static int group_teardown(void **state)
{
    if (g_gpu_ok && g_gpu.ops->destroy) ds_backend_destroy(&g_gpu);
    g_gpu_ok = 0;
    return teardown_backend(state);
}

/* ---- buffers on both backends ------------------------------------------- */

struct buf {
    float *c, *g; /* cpu, gpu */
    size_t n;
};

static void *be_alloc_(struct ds_backend *be, size_t bytes)
{
    void *p = be->ops->alloc(be, bytes ? bytes : 4);
    if (!p) fail_msg("%s: alloc of %zu bytes returned NULL", be->ops->name, bytes);
    return p;
}

static struct buf buf_new(size_t n)
{
    struct buf b = {be_alloc_(&g_be, n * sizeof(float)), be_alloc_(&g_gpu, n * sizeof(float)), n};
    return b;
}

static void buf_free(struct buf *b)
{
    g_be.ops->free(&g_be, b->c);
    g_gpu.ops->free(&g_gpu, b->g);
    b->c = b->g = NULL;
}

/* The same host floats into both. */
static void buf_put(const struct buf *b, const float *host)
{
    g_be.ops->upload(&g_be, b->c, host, b->n * sizeof(float));
    g_gpu.ops->upload(&g_gpu, b->g, host, b->n * sizeof(float));
}

/* A new pair holding host[0..n). */
static struct buf buf_from(const float *host, size_t n)
{
    struct buf b = buf_new(n);
    buf_put(&b, host);
    return b;
}

/* A new pair of n floats uniform in [lo, hi). */
static struct buf buf_rand(struct rng *r, size_t n, double lo, double hi)
{
    float *h = xcalloc(n, sizeof(float));
    rng_fill(r, h, n, lo, hi);
    struct buf b = buf_from(h, n);
    free(h);
    return b;
}

/* Both sides back to the host: hc from the cpu, hg from the gpu. */
static void buf_get(const struct buf *b, float *hc, float *hg)
{
    g_be.ops->download(&g_be, hc, b->c, b->n * sizeof(float));
    g_gpu.ops->download(&g_gpu, hg, b->g, b->n * sizeof(float));
}

/* The gpu side takes the cpu side's values (the same inputs for a backward). */
static void buf_sync_to_gpu(const struct buf *b)
{
    float *h = xcalloc(b->n, sizeof(float));
    g_be.ops->download(&g_be, h, b->c, b->n * sizeof(float));
    g_gpu.ops->upload(&g_gpu, b->g, h, b->n * sizeof(float));
    free(h);
}

/* ---- comparisons --------------------------------------------------------- */

/* The worst of a test's comparisons, printed at its end. */
struct worst {
    double rel, inf;
    char rel_at[160], inf_at[160];
    int n;
};

static void worst_print(const struct worst *w, const char *label)
{
    print_message("# %-22s %4d compared: worst ||d||/||cpu|| %.2e (%s); worst max|d|/max|cpu| "
                  "%.2e (%s) [tol %.0e, %.0e]\n",
                  label, w->n, w->rel, w->rel_at[0] ? w->rel_at : "-", w->inf,
                  w->inf_at[0] ? w->inf_at : "-", PAR_TOL, ELEM_TOL);
}

/* gpu[0..n) against cpu[0..n) (host copies) within PAR_TOL and ELEM_TOL. */
static void expect_near(struct worst *w, const char *what, const float *gpu, const float *cpu,
                        size_t n)
{
    double rel = tu_rel_err_f(gpu, cpu, n);
    double dmax = 0.0, cmax = 0.0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)gpu[i] - (double)cpu[i]);
        if (isnan(d) && !isnan(dmax))
            dmax = d, at = i; /* a NaN sticks */
        else if (d > dmax)
            dmax = d, at = i;
        if (fabs((double)cpu[i]) > cmax) cmax = fabs((double)cpu[i]);
    }
    double inf = dmax / (cmax > TINY ? cmax : TINY);
    if (!(rel <= PAR_TOL) || !(inf <= ELEM_TOL))
        fail_msg("%s: ||gpu - cpu|| / ||cpu|| = %.3g (tol %.0e), max|gpu - cpu| / max|cpu| = "
                 "%.3g (tol %.0e); worst element %zu of %zu: gpu %.9g, cpu %.9g (max|cpu| %.6g)",
                 what, rel, PAR_TOL, inf, ELEM_TOL, at, n, n ? (double)gpu[at] : 0.0,
                 n ? (double)cpu[at] : 0.0, cmax);
    w->n++;
    if (rel > w->rel) w->rel = rel, snprintf(w->rel_at, sizeof w->rel_at, "%s", what);
    if (inf > w->inf) w->inf = inf, snprintf(w->inf_at, sizeof w->inf_at, "%s", what);
}

/* Downloads both sides of b and compares them. */
static void check_buf(struct worst *w, const char *what, const struct buf *b)
{
    float *hc = xcalloc(b->n, sizeof(float)), *hg = xcalloc(b->n, sizeof(float));
    buf_get(b, hc, hg);
    expect_near(w, what, hg, hc, b->n);
    free(hc), free(hg);
}

/* Equal values (+0 == -0; NaN == NaN). */
static void expect_equal_f(const char *what, const float *gpu, const float *cpu, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(gpu[i] == cpu[i]) && !(isnan(gpu[i]) && isnan(cpu[i])))
            fail_msg("%s: element %zu of %zu: gpu %.9g, cpu %.9g (must be equal)", what, i, n,
                     (double)gpu[i], (double)cpu[i]);
}

static void check_buf_equal(const char *what, const struct buf *b)
{
    float *hc = xcalloc(b->n, sizeof(float)), *hg = xcalloc(b->n, sizeof(float));
    buf_get(b, hc, hg);
    expect_equal_f(what, hg, hc, b->n);
    free(hc), free(hg);
}

/* Equal to the bit. */
static void expect_bits_f(const char *what, const float *gpu, const float *cpu, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &gpu[i], 4), memcpy(&b, &cpu[i], 4);
        if (a != b)
            fail_msg("%s: element %zu of %zu: gpu %.9g (0x%08x), cpu %.9g (0x%08x) (must be "
                     "bit-identical)",
                     what, i, n, (double)gpu[i], (unsigned)a, (double)cpu[i], (unsigned)b);
    }
}

static void expect_bytes(const char *what, const unsigned char *got, const unsigned char *want,
                         size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            fail_msg("%s: byte %zu of %zu is 0x%02x, expected 0x%02x", what, i, n, got[i], want[i]);
}

/* A double (a loss sum, a dot) within PAR_TOL of cpu relative to `scale`. */
static void expect_near_d(struct worst *w, const char *what, double gpu, double cpu, double scale)
{
    double e = fabs(gpu - cpu) / (scale > TINY ? scale : TINY);
    if (!(e <= PAR_TOL))
        fail_msg("%s: gpu %.12g, cpu %.12g: |gpu - cpu| / %.6g = %.3g > %.0e", what, gpu, cpu,
                 scale, e, PAR_TOL);
    w->n++;
    if (e > w->rel) w->rel = e, snprintf(w->rel_at, sizeof w->rel_at, "%s", what);
}

static const char *act_label(enum ds_act a)
{
    static const char *const names[DS_ACT_COUNT] = {"none", "relu", "tanh", "sigmoid", "gelu"};
    return (unsigned)a < DS_ACT_COUNT ? names[a] : "?";
}

/* ================================ memory ================================== */

/* One backend against a host model of its two buffers: zero-filled alloc
 * (large, odd-sized, and again after a free), round trips, copies and
 * downloads at odd byte offsets and counts, fill over a sub-range. */
static void memory_on(struct ds_backend *be)
{
    const char *nm = be->ops->name;
    char what[160];
    const size_t n = 100003, bytes = n * sizeof(float);
    unsigned char *ma = xcalloc(bytes, 1), *mb = xcalloc(bytes, 1), *back = xcalloc(bytes, 1);
    unsigned char *zero = xcalloc(bytes, 1);
    float *h = xcalloc(n, sizeof(float));
    struct rng r = {101};
    rng_fill(&r, h, n, -10.0, 10.0);

    /* zero-filled: large, odd-sized, and reused after a free */
    const size_t big = (size_t)1 << 24; /* 64 MiB */
    unsigned char *hb = xcalloc(big, 1);
    void *p = be_alloc_(be, big);
    memset(hb, 0xa5, big);
    be->ops->download(be, hb, p, big);
    for (size_t i = 0; i < big; i++)
        if (hb[i]) fail_msg("%s: alloc(%zu) byte %zu is 0x%02x, not 0", nm, big, i, hb[i]);
    be->ops->free(be, p);
    void *odd = be_alloc_(be, 13);
    memset(back, 0xa5, 13);
    be->ops->download(be, back, odd, 13);
    snprintf(what, sizeof what, "%s: alloc(13)", nm);
    expect_bytes(what, back, zero, 13);
    be->ops->free(be, odd);
    float *a = be_alloc_(be, bytes);
    be->ops->upload(be, a, h, bytes);
    be->ops->free(be, a);
    a = be_alloc_(be, bytes); /* the same size again: possibly the same memory */
    float *b = be_alloc_(be, bytes);
    memset(back, 0xa5, bytes);
    be->ops->download(be, back, a, bytes);
    snprintf(what, sizeof what, "%s: alloc after free", nm);
    expect_bytes(what, back, zero, bytes);
    be->ops->download(be, back, b, bytes);
    snprintf(what, sizeof what, "%s: second alloc", nm);
    expect_bytes(what, back, zero, bytes);

    /* upload / download round trip */
    be->ops->upload(be, a, h, bytes);
    memcpy(ma, h, bytes);
    be->ops->download(be, back, a, bytes);
    snprintf(what, sizeof what, "%s: upload then download", nm);
    expect_bytes(what, back, ma, bytes);

    /* whole copy, then copies, uploads and a download at odd byte offsets and counts */
    be->ops->copy(be, b, a, bytes);
    memcpy(mb, ma, bytes);
    be->ops->copy(be, (char *)b + 3, (const char *)a + 7, 40001);
    memmove(mb + 3, ma + 7, 40001);
    be->ops->upload(be, (char *)a + 5, (const char *)h + 1001, 997);
    memcpy(ma + 5, (const char *)h + 1001, 997);
    be->ops->copy(be, (char *)b + bytes - 1, a, 1); /* the last byte */
    mb[bytes - 1] = ma[0];
    be->ops->download(be, back, a, bytes);
    snprintf(what, sizeof what, "%s: buffer a after partial uploads", nm);
    expect_bytes(what, back, ma, bytes);
    be->ops->download(be, back, b, bytes);
    snprintf(what, sizeof what, "%s: buffer b after copies", nm);
    expect_bytes(what, back, mb, bytes);
    memset(back, 0xa5, bytes);
    be->ops->download(be, back + 1, (const char *)b + 9, 12345);
    snprintf(what, sizeof what, "%s: download at an odd offset", nm);
    expect_bytes(what, back + 1, mb + 9, 12345);
    if (back[0] != 0xa5 || back[12346] != 0xa5)
        fail_msg("%s: download of 12345 bytes wrote outside them", nm);

    /* fill over a sub-range (odd start and count) and over all of b */
    be->ops->fill(be, a + 17, 1001, -2.5f);
    for (size_t i = 17; i < 17 + 1001; i++) {
        float v = -2.5f;
        memcpy(ma + i * sizeof(float), &v, sizeof v);
    }
    be->ops->download(be, back, a, bytes);
    snprintf(what, sizeof what, "%s: fill(a + 17, 1001, -2.5)", nm);
    expect_bytes(what, back, ma, bytes);
    be->ops->fill(be, b, n, 0.0f);
    be->ops->download(be, back, b, bytes);
    snprintf(what, sizeof what, "%s: fill(b, n, 0)", nm);
    expect_bytes(what, back, zero, bytes);

    be->ops->free(be, NULL); /* a no-op */
    be->ops->free(be, a);
    be->ops->free(be, b);
    free(ma), free(mb), free(back), free(zero), free(h), free(hb);
}

static void test_memory(void **state)
{
    (void)state;
    NEED_GPU();
    memory_on(&g_be); /* the model itself is checked on the CPU */
    memory_on(&g_gpu);
    print_message("# memory: zero alloc (64 MiB, 13 B, after a free), round trips, odd-offset "
                  "copies, fill: equal to the byte on cpu and gpu\n");
}

/* ================================= gemm =================================== */

#define GEMM_PADV 1e6f      /* A's and B's padding: visible if read */
#define GEMM_CPADV 12345.0f /* C's padding: must be kept */

/* Draws one case's host inputs A [ra, lda], B [rb, ldb], C [m, ldc]: the
 * logical parts uniform in [-1, 1), the padding GEMM_PADV (GEMM_CPADV in C).
 * Returns how much the output cancels: ||mag|| / ||ref|| over the m x n
 * outputs, ref the exact result and mag |alpha| sum|a b| + |beta c|. */
static double gemm_draw(struct rng *r, int ta, int tb, int m, int n, int k, float alpha, float beta,
                        float *A, int lda, float *B, int ldb, float *C, int ldc)
{
    int ra = ta ? k : m, ca = ta ? m : k, rb = tb ? n : k, cb = tb ? k : n;
    for (size_t i = 0; i < (size_t)ra * lda; i++)
        A[i] = (int)(i % lda) < ca ? (float)rng_unif(r, -1, 1) : GEMM_PADV;
    for (size_t i = 0; i < (size_t)rb * ldb; i++)
        B[i] = (int)(i % ldb) < cb ? (float)rng_unif(r, -1, 1) : GEMM_PADV;
    for (size_t i = 0; i < (size_t)m * ldc; i++)
        C[i] = (int)(i % ldc) < n ? (float)rng_unif(r, -1, 1) : GEMM_CPADV;
    double nr = 0.0, nm = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0, sm = 0.0;
            for (int l = 0; l < k; l++) {
                double x = ta ? A[(size_t)l * lda + i] : A[(size_t)i * lda + l];
                double y = tb ? B[(size_t)j * ldb + l] : B[(size_t)l * ldb + j];
                s += x * y, sm += fabs(x * y);
            }
            double c0 = beta != 0.0f ? (double)beta * C[(size_t)i * ldc + j] : 0.0;
            double ref = alpha * s + c0, mag = fabs((double)alpha) * sm + fabs(c0);
            nr += ref * ref, nm += mag * mag;
        }
    return sqrt(nm) / fmax(sqrt(nr), TINY);
}

static void gemm_case(struct rng *r, struct worst *w, int ta, int tb, int m, int n, int k,
                      float alpha, float beta, int ex, int *redraws)
{
    int ra = ta ? k : m, ca = ta ? m : k, rb = tb ? n : k, cb = tb ? k : n;
    int lda = ca + ex, ldb = cb + ex + 1, ldc = n + ex + 2;
    size_t na = (size_t)ra * lda, nb = (size_t)rb * ldb, nc = (size_t)m * ldc, mn = (size_t)m * n;
    float *A = xcalloc(na, 4), *B = xcalloc(nb, 4), *C = xcalloc(nc, 4);
    for (int tries = 0;
         gemm_draw(r, ta, tb, m, n, k, alpha, beta, A, lda, B, ldb, C, ldc) > GEMM_MAX_COND;
         tries++, (*redraws)++)
        if (tries == 50) fail_msg("gemm m %d n %d k %d: no well-conditioned draw", m, n, k);
    struct buf a = buf_from(A, na), b = buf_from(B, nb), c = buf_from(C, nc);
    g_be.ops->gemm(&g_be, ta, tb, m, n, k, alpha, a.c, lda, b.c, ldb, beta, c.c, ldc);
    g_gpu.ops->gemm(&g_gpu, ta, tb, m, n, k, alpha, a.g, lda, b.g, ldb, beta, c.g, ldc);
    float *hc = xcalloc(nc, 4), *hg = xcalloc(nc, 4), *lc = xcalloc(mn, 4), *lg = xcalloc(mn, 4);
    buf_get(&c, hc, hg);
    for (int i = 0; i < m; i++) {
        memcpy(lc + (size_t)i * n, hc + (size_t)i * ldc, (size_t)n * 4);
        memcpy(lg + (size_t)i * n, hg + (size_t)i * ldc, (size_t)n * 4);
        for (int j = n; j < ldc; j++)
            if (hg[(size_t)i * ldc + j] != GEMM_CPADV)
                fail_msg("gemm ta %d tb %d m %d n %d k %d ldc %d: the gpu wrote C's padding at "
                         "row %d column %d",
                         ta, tb, m, n, k, ldc, i, j);
    }
    char what[160];
    snprintf(what, sizeof what, "gemm ta %d tb %d m %d n %d k %d alpha %g beta %g ld %d/%d/%d", ta,
             tb, m, n, k, (double)alpha, (double)beta, lda, ldb, ldc);
    expect_near(w, what, lg, lc, mn);
    buf_free(&a), buf_free(&b), buf_free(&c);
    free(A), free(B), free(C), free(hc), free(hg), free(lc), free(lg);
}

static void test_gemm(void **state)
{
    (void)state;
    NEED_GPU();
    static const int sizes[] = {1, 7, 33, 130};
    static const float ab[][2] = {{0.75f, -0.5f}, {1.0f, 0.0f}, {-1.25f, 1.0f}, {2.0f, 0.25f}};
    static const int ld_extra[] = {0, 3, 17}; /* lda = minimum + this, ldb + 1, ldc + 2 */
    struct rng r = {202};
    struct worst w = {0};
    int cases = 0, redraws = 0;
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int im = 0; im < 4; im++)
                for (int in = 0; in < 4; in++)
                    for (int ik = 0; ik < 4; ik++, cases++)
                        gemm_case(&r, &w, ta, tb, sizes[im], sizes[in], sizes[ik], ab[cases % 4][0],
                                  ab[cases % 4][1], ld_extra[cases % 3], &redraws);
    worst_print(&w, "gemm");
    print_message("# gemm: %d cases (%d inputs redrawn: output norm < 1/%.0f of its terms')\n",
                  cases, redraws, GEMM_MAX_COND);
}

/* ========================= element-wise and reductions ==================== */

static void test_bias_act(void **state)
{
    (void)state;
    NEED_GPU();
    /* at least 7 elements: the norm of one GELU output far in its negative
     * tail (1 + erf cancels) or one saturated tanh' would be all rounding */
    static const int shapes[][2] = {{1, 7}, {7, 1}, {7, 33}, {130, 10}, {64, 257}};
    struct rng r = {303};
    struct worst w = {0};
    char what[160];
    for (size_t s = 0; s < DS_ARRAY_LEN(shapes); s++) {
        int rows = shapes[s][0], cols = shapes[s][1];
        size_t n = (size_t)rows * cols;
        for (int act = 0; act < DS_ACT_COUNT; act++)
            for (int with_bias = 0; with_bias < 2; with_bias++)
                for (int with_pre = 0; with_pre < 2; with_pre++) {
                    struct buf y = buf_rand(&r, n, -3.0, 3.0),
                               bias = buf_rand(&r, (size_t)cols, -1.0, 1.0);
                    struct buf pre = buf_new(n);
                    g_be.ops->fill(&g_be, pre.c, n, 7.0f);
                    g_gpu.ops->fill(&g_gpu, pre.g, n, 7.0f);
                    enum ds_act a = (enum ds_act)act;
                    g_be.ops->bias_act(&g_be, rows, cols, y.c, with_bias ? bias.c : NULL, a,
                                       with_pre ? pre.c : NULL);
                    g_gpu.ops->bias_act(&g_gpu, rows, cols, y.g, with_bias ? bias.g : NULL, a,
                                        with_pre ? pre.g : NULL);
                    snprintf(what, sizeof what, "bias_act [%d, %d] %s bias %d pre %d: y", rows,
                             cols, act_label(a), with_bias, with_pre);
                    check_buf(&w, what, &y);
                    /* the CPU's ReLU does not write pre (only GELU's backward reads it) */
                    if (with_pre && a != DS_ACT_RELU) {
                        snprintf(what, sizeof what, "bias_act [%d, %d] %s bias %d: pre", rows, cols,
                                 act_label(a), with_bias);
                        check_buf(&w, what, &pre);
                    }
                    buf_free(&y), buf_free(&bias), buf_free(&pre);
                }
    }
    worst_print(&w, "bias_act");
}

/* x: pre-activations; y = act(x) computed by the CPU and given to both. */
static void act_inputs(struct rng *r, size_t n, enum ds_act act, struct buf *x, struct buf *y)
{
    *x = buf_rand(r, n, -4.0, 4.0);
    *y = buf_new(n);
    g_be.ops->copy(&g_be, y->c, x->c, n * sizeof(float));
    g_be.ops->bias_act(&g_be, 1, (int)n, y->c, NULL, act, NULL);
    buf_sync_to_gpu(y);
}

static void test_act_backward(void **state)
{
    (void)state;
    NEED_GPU();
    const size_t n = 10007;
    struct rng r = {404};
    struct worst w = {0};
    char what[160];
    for (int act = 0; act < DS_ACT_COUNT; act++)
        for (int alias = 0; alias < 2; alias++) {
            enum ds_act a = (enum ds_act)act;
            struct buf x, y;
            act_inputs(&r, n, a, &x, &y);
            struct buf dy = buf_rand(&r, n, -1.0, 1.0), dx = buf_new(n);
            if (alias) {
                g_be.ops->act_backward(&g_be, n, a, x.c, y.c, dy.c, dy.c);
                g_gpu.ops->act_backward(&g_gpu, n, a, x.g, y.g, dy.g, dy.g);
            } else {
                g_be.ops->act_backward(&g_be, n, a, x.c, y.c, dy.c, dx.c);
                g_gpu.ops->act_backward(&g_gpu, n, a, x.g, y.g, dy.g, dx.g);
            }
            snprintf(what, sizeof what, "act_backward %s%s", act_label(a),
                     alias ? " (dx = dy)" : "");
            check_buf(&w, what, alias ? &dy : &dx);
            buf_free(&x), buf_free(&y), buf_free(&dy), buf_free(&dx);
        }
    worst_print(&w, "act_backward");
}

/* col_sum and row_sum; inputs with a positive mean so that sums do not cancel. */
static void test_col_row_sum(void **state)
{
    (void)state;
    NEED_GPU();
    static const int shapes[][2] = {{1, 1}, {7, 33}, {130, 7}, {513, 65}, {3, 1000}, {1000, 3}};
    struct rng r = {505};
    struct worst w = {0};
    char what[160];
    for (size_t s = 0; s < DS_ARRAY_LEN(shapes); s++)
        for (int row = 0; row < 2; row++)
            for (int acc = 0; acc < 2; acc++) {
                int rows = shapes[s][0], cols = shapes[s][1];
                struct buf x = buf_rand(&r, (size_t)rows * cols, -0.5, 1.0);
                size_t no = (size_t)(row ? rows : cols);
                /* accumulate 0 must overwrite what is there */
                struct buf out = acc ? buf_rand(&r, no, -1.0, 1.0) : buf_rand(&r, no, 1e3, 2e3);
                if (row) {
                    g_be.ops->row_sum(&g_be, rows, cols, x.c, out.c, acc);
                    g_gpu.ops->row_sum(&g_gpu, rows, cols, x.g, out.g, acc);
                } else {
                    g_be.ops->col_sum(&g_be, rows, cols, x.c, out.c, acc);
                    g_gpu.ops->col_sum(&g_gpu, rows, cols, x.g, out.g, acc);
                }
                snprintf(what, sizeof what, "%s [%d, %d] accumulate %d",
                         row ? "row_sum" : "col_sum", rows, cols, acc);
                check_buf(&w, what, &out);
                buf_free(&x), buf_free(&out);
            }
    worst_print(&w, "col_sum, row_sum");
}

/* The same Philox streams: the same mask and the same scaled values, to the bit. */
static void test_dropout(void **state)
{
    (void)state;
    NEED_GPU();
    static const size_t ns[] = {1, 7, 10007};
    static const float ps[] = {0.0f, 0.1f, 0.5f, 0.9f};
    static const uint64_t offsets[] = {0, 3, 1000001, ((uint64_t)1 << 33) + 5};
    static const uint64_t seeds[] = {1, 0xdeadbeefcafeull};
    struct rng r = {606};
    char what[200];
    int cases = 0;
    size_t dropped = 0, total = 0;
    for (size_t in = 0; in < DS_ARRAY_LEN(ns); in++)
        for (size_t ip = 0; ip < DS_ARRAY_LEN(ps); ip++)
            for (size_t io = 0; io < DS_ARRAY_LEN(offsets); io++)
                for (size_t is = 0; is < DS_ARRAY_LEN(seeds); is++) {
                    size_t n = ns[in];
                    uint32_t stream = (uint32_t)(is * 7 + io);
                    struct buf x = buf_rand(&r, n, 0.5, 1.5), y = buf_new(n); /* no zeros in x */
                    g_be.ops->dropout(&g_be, n, ps[ip], seeds[is], stream, offsets[io], x.c, y.c);
                    g_gpu.ops->dropout(&g_gpu, n, ps[ip], seeds[is], stream, offsets[io], x.g, y.g);
                    float *hc = xcalloc(n, 4), *hg = xcalloc(n, 4);
                    buf_get(&y, hc, hg);
                    for (size_t i = 0; i < n; i++) {
                        if ((hc[i] == 0.0f) != (hg[i] == 0.0f))
                            fail_msg("dropout n %zu p %g seed %llu stream %u offset %llu: element "
                                     "%zu is %s on the cpu, %s on the gpu (the masks differ)",
                                     n, (double)ps[ip], (unsigned long long)seeds[is], stream,
                                     (unsigned long long)offsets[io], i,
                                     hc[i] == 0.0f ? "dropped" : "kept",
                                     hg[i] == 0.0f ? "dropped" : "kept");
                        dropped += hc[i] == 0.0f;
                    }
                    total += n;
                    snprintf(what, sizeof what,
                             "dropout n %zu p %g seed %llu stream %u offset %llu", n,
                             (double)ps[ip], (unsigned long long)seeds[is], stream,
                             (unsigned long long)offsets[io]);
                    expect_bits_f(what, hg, hc, n);
                    free(hc), free(hg);
                    buf_free(&x), buf_free(&y);
                    cases++;
                }
    print_message("# dropout: %d cases, %zu of %zu elements dropped, masks and values "
                  "bit-identical\n",
                  cases, dropped, total);
}

static void test_vector_ops(void **state)
{
    (void)state;
    NEED_GPU();
    struct rng r = {707};
    struct worst w = {0}, wd = {0};
    char what[160];
    static const size_t ns[] = {1, 7, 10007, ((size_t)1 << 20) + 3};
    for (size_t in = 0; in < DS_ARRAY_LEN(ns); in++) {
        size_t n = ns[in];
        struct buf x = buf_rand(&r, n, -1.0, 1.0), y = buf_rand(&r, n, -1.0, 1.0);
        /* dot: relative to sum |x_i y_i| (the sum may cancel) */
        float *hx = xcalloc(n, 4), *hy = xcalloc(n, 4);
        g_be.ops->download(&g_be, hx, x.c, n * 4);
        g_be.ops->download(&g_be, hy, y.c, n * 4);
        double mag = 0.0;
        for (size_t i = 0; i < n; i++) mag += fabs((double)hx[i] * (double)hy[i]);
        double dc = g_be.ops->dot(&g_be, n, x.c, y.c), dg = g_gpu.ops->dot(&g_gpu, n, x.g, y.g);
        snprintf(what, sizeof what, "dot n %zu", n);
        expect_near_d(&wd, what, dg, dc, mag);
        /* scale, axpy */
        g_be.ops->scale(&g_be, n, x.c, -1.7f);
        g_gpu.ops->scale(&g_gpu, n, x.g, -1.7f);
        snprintf(what, sizeof what, "scale n %zu", n);
        check_buf(&w, what, &x);
        buf_sync_to_gpu(&x);
        g_be.ops->axpy(&g_be, n, 0.3f, x.c, y.c);
        g_gpu.ops->axpy(&g_gpu, n, 0.3f, x.g, y.g);
        snprintf(what, sizeof what, "axpy n %zu", n);
        check_buf(&w, what, &y);
        /* add_normal at an odd offset and one past 2^32 */
        for (int o = 0; o < 2; o++) {
            uint64_t off = o ? ((uint64_t)1 << 33) + 1 : 5;
            buf_sync_to_gpu(&y);
            g_be.ops->add_normal(&g_be, n, y.c, 0.5f, 42, 3, off);
            g_gpu.ops->add_normal(&g_gpu, n, y.g, 0.5f, 42, 3, off);
            snprintf(what, sizeof what, "add_normal n %zu offset %llu", n, (unsigned long long)off);
            check_buf(&w, what, &y);
        }
        free(hx), free(hy);
        buf_free(&x), buf_free(&y);
    }
    worst_print(&w, "scale, axpy, add_normal");
    print_message("# %-22s %4d compared: worst |gpu - cpu| / sum|x y| %.2e (%s) [tol %.0e]\n",
                  "dot", wd.n, wd.rel, wd.rel_at[0] ? wd.rel_at : "-", PAR_TOL);
}

/* gather_rows, gather_u8 (plain: equal; normalized: near), gather_i32; idx on the host. */
static void test_gathers(void **state)
{
    (void)state;
    NEED_GPU();
    const int N = 50, rows = 64;
    const size_t row_len = 37, u8_len = 785;
    struct rng r = {808};
    struct worst w = {0};
    int32_t idx[64];
    for (int i = 0; i < rows; i++) idx[i] = (int32_t)rng_int(&r, 0, N - 1);
    idx[0] = 0, idx[1] = N - 1, idx[2] = N - 1; /* both ends, and a repeat */

    struct buf src = buf_rand(&r, (size_t)N * row_len, -1.0, 1.0),
               dst = buf_new((size_t)rows * row_len);
    g_be.ops->gather_rows(&g_be, rows, row_len, src.c, idx, dst.c);
    g_gpu.ops->gather_rows(&g_gpu, rows, row_len, src.g, idx, dst.g);
    check_buf_equal("gather_rows", &dst);

    uint8_t *h8 = xcalloc((size_t)N * u8_len, 1);
    for (size_t i = 0; i < (size_t)N * u8_len; i++) h8[i] = (uint8_t)rng_int(&r, 0, 255);
    h8[0] = 0, h8[1] = 255;
    uint8_t *s8c = be_alloc_(&g_be, (size_t)N * u8_len),
            *s8g = be_alloc_(&g_gpu, (size_t)N * u8_len);
    g_be.ops->upload(&g_be, s8c, h8, (size_t)N * u8_len);
    g_gpu.ops->upload(&g_gpu, s8g, h8, (size_t)N * u8_len);
    struct buf d8 = buf_new((size_t)rows * u8_len);
    g_be.ops->gather_u8(&g_be, rows, u8_len, s8c, idx, 0.0f, 1.0f, d8.c);
    g_gpu.ops->gather_u8(&g_gpu, rows, u8_len, s8g, idx, 0.0f, 1.0f, d8.g);
    check_buf_equal("gather_u8 mean 0 std 1 (x / 255 to the last bit)", &d8);
    g_be.ops->gather_u8(&g_be, rows, u8_len, s8c, idx, 0.2860f, 0.3530f, d8.c);
    g_gpu.ops->gather_u8(&g_gpu, rows, u8_len, s8g, idx, 0.2860f, 0.3530f, d8.g);
    check_buf(&w, "gather_u8 mean 0.286 std 0.353", &d8);

    int32_t *hi = xcalloc((size_t)N, 4), *oc = xcalloc((size_t)rows, 4),
            *og = xcalloc((size_t)rows, 4);
    for (int i = 0; i < N; i++) hi[i] = (int32_t)rng_int(&r, -1000000, 1000000);
    int32_t *ic = be_alloc_(&g_be, (size_t)N * 4), *ig = be_alloc_(&g_gpu, (size_t)N * 4);
    int32_t *jc = be_alloc_(&g_be, (size_t)rows * 4), *jg = be_alloc_(&g_gpu, (size_t)rows * 4);
    g_be.ops->upload(&g_be, ic, hi, (size_t)N * 4);
    g_gpu.ops->upload(&g_gpu, ig, hi, (size_t)N * 4);
    g_be.ops->gather_i32(&g_be, rows, ic, idx, jc);
    g_gpu.ops->gather_i32(&g_gpu, rows, ig, idx, jg);
    g_be.ops->download(&g_be, oc, jc, (size_t)rows * 4);
    g_gpu.ops->download(&g_gpu, og, jg, (size_t)rows * 4);
    for (int i = 0; i < rows; i++) {
        if (oc[i] != hi[idx[i]])
            fail_msg("gather_i32: cpu row %d = %d, src[%d] = %d", i, oc[i], idx[i], hi[idx[i]]);
        if (og[i] != oc[i]) fail_msg("gather_i32: row %d: gpu %d, cpu %d", i, og[i], oc[i]);
    }

    buf_free(&src), buf_free(&dst), buf_free(&d8);
    g_be.ops->free(&g_be, s8c), g_gpu.ops->free(&g_gpu, s8g);
    g_be.ops->free(&g_be, ic), g_gpu.ops->free(&g_gpu, ig);
    g_be.ops->free(&g_be, jc), g_gpu.ops->free(&g_gpu, jg);
    free(h8), free(hi), free(oc), free(og);
    worst_print(&w, "gather_u8 normalized");
    print_message("# gathers: gather_rows, gather_u8 (mean 0, std 1), gather_i32 equal\n");
}

/* ============================ spatial ops ================================= */

static struct ds_window window(int batch, int c, int h, int w, int k, int stride, int pad)
{
    struct ds_window g = {
        .batch = batch, .c = c, .h = h, .w = w, .k = k, .stride = stride, .pad = pad};
    g.oh = (h + 2 * pad - k) / stride + 1;
    g.ow = (w + 2 * pad - k) / stride + 1;
    return g;
}

static int window_label(char *buf, size_t len, const char *op, const struct ds_window *g)
{
    return snprintf(buf, len, "%s [%d, %d, %d, %d] k %d stride %d pad %d", op, g->batch, g->c, g->h,
                    g->w, g->k, g->stride, g->pad);
}

static void test_im2col_col2im(void **state)
{
    (void)state;
    NEED_GPU();
    static const int cs[] = {1, 3, 8}, ks[] = {3, 5}, ss[] = {1, 2}, bs[] = {1, 3};
    struct rng r = {909};
    struct worst w = {0};
    char what[200];
    int cases = 0;
    for (int ic = 0; ic < 3; ic++)
        for (int ik = 0; ik < 2; ik++)
            for (int is = 0; is < 2; is++)
                for (int pad = 0; pad <= ks[ik] / 2; pad += ks[ik] / 2)
                    for (int ib = 0; ib < 2; ib++) {
                        struct ds_window g = window(bs[ib], cs[ic], 12, 9, ks[ik], ss[is], pad);
                        size_t nx = (size_t)g.batch * g.c * g.h * g.w;
                        size_t ncols = (size_t)g.c * g.k * g.k * g.batch * g.oh * g.ow;
                        struct buf x = buf_rand(&r, nx, -1.0, 1.0), cols = buf_new(ncols);
                        g_be.ops->im2col(&g_be, &g, x.c, cols.c);
                        g_gpu.ops->im2col(&g_gpu, &g, x.g, cols.g);
                        window_label(what, sizeof what, "im2col", &g);
                        check_buf_equal(what, &cols);
                        struct buf cr = buf_rand(&r, ncols, -1.0, 1.0);
                        g_be.ops->fill(&g_be, x.c, nx, 99.0f); /* col2im overwrites dx */
                        g_gpu.ops->fill(&g_gpu, x.g, nx, 99.0f);
                        g_be.ops->col2im(&g_be, &g, cr.c, x.c);
                        g_gpu.ops->col2im(&g_gpu, &g, cr.g, x.g);
                        window_label(what, sizeof what, "col2im", &g);
                        check_buf(&w, what, &x);
                        buf_free(&x), buf_free(&cols), buf_free(&cr);
                        cases++;
                    }
    worst_print(&w, "col2im");
    print_message("# im2col: %d windows, equal\n", cases);
}

static void test_chw_ops(void **state)
{
    (void)state;
    NEED_GPU();
    /* batch, ch, P; at least 7 elements (see test_bias_act) */
    static const int shapes[][3] = {{1, 1, 7}, {1, 7, 1}, {3, 4, 121}, {5, 32, 49}};
    struct rng r = {1010};
    struct worst w = {0};
    char what[200];
    for (size_t s = 0; s < DS_ARRAY_LEN(shapes); s++) {
        int B = shapes[s][0], C = shapes[s][1], P = shapes[s][2];
        size_t n = (size_t)B * C * P;
        for (int act = 0; act < DS_ACT_COUNT; act++) {
            enum ds_act a = (enum ds_act)act;
            for (int v = 0; v < 4; v++) { /* bias x pre */
                int with_bias = v & 1, with_pre = v >> 1;
                struct buf yt = buf_rand(&r, n, -3.0, 3.0),
                           bias = buf_rand(&r, (size_t)C, -1.0, 1.0);
                struct buf y = buf_new(n), pre = buf_new(n);
                g_be.ops->chw_bias_act(&g_be, B, C, P, yt.c, with_bias ? bias.c : NULL, a, y.c,
                                       with_pre ? pre.c : NULL);
                g_gpu.ops->chw_bias_act(&g_gpu, B, C, P, yt.g, with_bias ? bias.g : NULL, a, y.g,
                                        with_pre ? pre.g : NULL);
                snprintf(what, sizeof what, "chw_bias_act [%d, %d, %d] %s bias %d pre %d: y", B, C,
                         P, act_label(a), with_bias, with_pre);
                check_buf(&w, what, &y);
                if (with_pre && a != DS_ACT_RELU) { /* the CPU's ReLU does not write pre */
                    snprintf(what, sizeof what, "chw_bias_act [%d, %d, %d] %s bias %d: pre", B, C,
                             P, act_label(a), with_bias);
                    check_buf(&w, what, &pre);
                }
                buf_free(&yt), buf_free(&bias), buf_free(&y), buf_free(&pre);
            }
            /* backward from the same pre, y = act(pre) and dy; pre NULL where act' needs y only */
            for (int with_pre = a == DS_ACT_GELU; with_pre < 2; with_pre++) {
                struct buf pre, y;
                act_inputs(&r, n, a, &pre, &y);
                struct buf dy = buf_rand(&r, n, -1.0, 1.0), dzt = buf_new(n);
                g_be.ops->chw_act_backward(&g_be, B, C, P, a, with_pre ? pre.c : NULL, y.c, dy.c,
                                           dzt.c);
                g_gpu.ops->chw_act_backward(&g_gpu, B, C, P, a, with_pre ? pre.g : NULL, y.g, dy.g,
                                            dzt.g);
                snprintf(what, sizeof what, "chw_act_backward [%d, %d, %d] %s pre %d", B, C, P,
                         act_label(a), with_pre);
                check_buf(&w, what, &dzt);
                buf_free(&pre), buf_free(&y), buf_free(&dy), buf_free(&dzt);
            }
        }
    }
    worst_print(&w, "chw_bias_act, backward");
}

static void test_pool(void **state)
{
    (void)state;
    NEED_GPU();
    static const int shapes[][6] = {
        /* batch, c, h, w, k, stride: stride = k (tiling, odd sides leave a
         * row or column out), stride < k (overlapping windows) */
        {1, 1, 8, 8, 2, 2}, {3, 4, 9, 7, 2, 2}, {2, 3, 10, 10, 3, 3}, {3, 4, 9, 7, 3, 2},
        {2, 3, 8, 8, 3, 1}, {1, 2, 7, 7, 2, 1}, {2, 5, 6, 11, 4, 2},
    };
    struct rng r = {1111};
    struct worst w = {0};
    char what[200];
    for (size_t s = 0; s < DS_ARRAY_LEN(shapes); s++)
        for (int kind = 0; kind < 2; kind++) {
            const int *d = shapes[s];
            struct ds_window g = window(d[0], d[1], d[2], d[3], d[4], d[5], 0);
            enum ds_pool_kind pk = kind ? DS_POOL_AVG : DS_POOL_MAX;
            const char *kn = kind ? "avg pool" : "max pool";
            size_t nx = (size_t)g.batch * g.c * g.h * g.w, ny = (size_t)g.batch * g.c * g.oh * g.ow;
            struct buf x = buf_rand(&r, nx, -1.0, 1.0), y = buf_new(ny);
            g_be.ops->pool_forward(&g_be, pk, &g, x.c, y.c);
            g_gpu.ops->pool_forward(&g_gpu, pk, &g, x.g, y.g);
            char lab[120];
            window_label(lab, sizeof lab, kn, &g);
            snprintf(what, sizeof what, "%s forward", lab);
            if (pk == DS_POOL_MAX)
                check_buf_equal(what, &y);
            else
                check_buf(&w, what, &y);
            buf_sync_to_gpu(&y); /* the backward's inputs: the same on both */
            struct buf dy = buf_rand(&r, ny, -1.0, 1.0), dx = buf_new(nx);
            g_be.ops->fill(&g_be, dx.c, nx, 99.0f); /* overwritten, also outside every window */
            g_gpu.ops->fill(&g_gpu, dx.g, nx, 99.0f);
            g_be.ops->pool_backward(&g_be, pk, &g, x.c, y.c, dy.c, dx.c);
            g_gpu.ops->pool_backward(&g_gpu, pk, &g, x.g, y.g, dy.g, dx.g);
            snprintf(what, sizeof what, "%s backward", lab);
            check_buf(&w, what, &dx);
            buf_free(&x), buf_free(&y), buf_free(&dy), buf_free(&dx);
        }
    worst_print(&w, "pool");
}

/* One convolution forward and backward on both backends. The backward gets
 * the CPU's y and pre on both sides (so ReLU masks are the same); mode bit 0:
 * accumulate into dW, db; bit 1: dx = NULL. */
static void conv_case(struct rng *r, struct worst *w, const struct ds_window *g, int oc,
                      enum ds_act act, int mode, int with_pre)
{
    char lab[160], what[200];
    snprintf(lab, sizeof lab, "conv [%d, %d, %d, %d] -> %d k %d s %d pad %d %s", g->batch, g->c,
             g->h, g->w, oc, g->k, g->stride, g->pad, act_label(act));
    int acc = mode & 1, no_dx = (mode >> 1) & 1;
    size_t nx = (size_t)g->batch * g->c * g->h * g->w, ny = (size_t)g->batch * oc * g->oh * g->ow;
    size_t nw = (size_t)oc * g->c * g->k * g->k;
    struct buf x = buf_rand(r, nx, -1.0, 1.0), W = buf_rand(r, nw, -0.5, 0.5);
    struct buf bias = buf_rand(r, (size_t)oc, -0.5, 0.5), y = buf_new(ny), pre = buf_new(ny);
    size_t wsc = g_be.ops->conv_workspace(&g_be, g, oc),
           wsg = g_gpu.ops->conv_workspace(&g_gpu, g, oc);
    float *ws_c = be_alloc_(&g_be, wsc * sizeof(float)),
          *ws_g = be_alloc_(&g_gpu, wsg * sizeof(float));
    g_be.ops->conv_forward(&g_be, g, oc, x.c, W.c, bias.c, act, y.c, with_pre ? pre.c : NULL, ws_c);
    g_gpu.ops->conv_forward(&g_gpu, g, oc, x.g, W.g, bias.g, act, y.g, with_pre ? pre.g : NULL,
                            ws_g);
    snprintf(what, sizeof what, "%s: y", lab);
    check_buf(w, what, &y);
    if (with_pre && act != DS_ACT_RELU) {
        snprintf(what, sizeof what, "%s: pre", lab);
        check_buf(w, what, &pre);
    }
    buf_sync_to_gpu(&y);
    if (with_pre) buf_sync_to_gpu(&pre);
    struct buf dy = buf_rand(r, ny, -1.0, 1.0);
    /* accumulate 0 overwrites, 1 adds: the same starting values on both */
    struct buf dW = acc ? buf_rand(r, nw, -1.0, 1.0) : buf_rand(r, nw, 1e3, 2e3);
    struct buf db = acc ? buf_rand(r, (size_t)oc, -1.0, 1.0) : buf_rand(r, (size_t)oc, 1e3, 2e3);
    struct buf dx = buf_rand(r, nx, 1e3, 2e3);
    g_be.ops->conv_backward(&g_be, g, oc, act, x.c, W.c, y.c, with_pre ? pre.c : NULL, dy.c, dW.c,
                            db.c, no_dx ? NULL : dx.c, acc, ws_c);
    g_gpu.ops->conv_backward(&g_gpu, g, oc, act, x.g, W.g, y.g, with_pre ? pre.g : NULL, dy.g, dW.g,
                             db.g, no_dx ? NULL : dx.g, acc, ws_g);
    snprintf(what, sizeof what, "%s accumulate %d: dW", lab, acc);
    check_buf(w, what, &dW);
    snprintf(what, sizeof what, "%s accumulate %d: db", lab, acc);
    check_buf(w, what, &db);
    snprintf(what, sizeof what, "%s: dx", lab);
    if (!no_dx) check_buf(w, what, &dx);
    buf_free(&x), buf_free(&W), buf_free(&bias), buf_free(&y), buf_free(&pre);
    buf_free(&dy), buf_free(&dW), buf_free(&db), buf_free(&dx);
    g_be.ops->free(&g_be, ws_c), g_gpu.ops->free(&g_gpu, ws_g);
}

static void test_conv(void **state)
{
    (void)state;
    NEED_GPU();
    static const int cs[] = {1, 3, 8}, ocs[] = {4, 32}, ks[] = {3, 5}, ss[] = {1, 2}, bs[] = {1, 5};
    struct rng r = {1212};
    struct worst w = {0};
    int shape = 0, cases = 0;
    for (int ic = 0; ic < 3; ic++)
        for (int io = 0; io < 2; io++)
            for (int ik = 0; ik < 2; ik++)
                for (int is = 0; is < 2; is++)
                    /* pad 0 and k / 2 (2 for k 5; the layer allows 2 pad <= k) */
                    for (int pad = 0; pad <= ks[ik] / 2; pad += ks[ik] / 2)
                        for (int ib = 0; ib < 2; ib++, shape++) {
                            struct ds_window g = window(bs[ib], cs[ic], 12, 9, ks[ik], ss[is], pad);
                            for (int act = 0; act < DS_ACT_COUNT; act++, cases++) {
                                int mode = (shape + act) % 4; /* each act meets every mode */
                                int with_pre = act == DS_ACT_GELU || (shape + act) % 3 != 0;
                                conv_case(&r, &w, &g, ocs[io], (enum ds_act)act, mode, with_pre);
                            }
                        }
    worst_print(&w, "conv forward, backward");
    print_message("# conv: %d shapes x %d activations = %d cases\n", shape, DS_ACT_COUNT, cases);
}

/* ================================= losses ================================= */

static void test_losses(void **state)
{
    (void)state;
    NEED_GPU();
    struct rng r = {1313};
    struct worst w = {0}, wl = {0};
    char what[200];
    /* softmax_xent; the last case's logits are offset by 1000 (stability) */
    static const int sx[][3] = {{1, 2, 0}, {7, 10, 0}, {130, 33, 0}, {64, 1000, 0}, {33, 10, 1000}};
    for (size_t s = 0; s < DS_ARRAY_LEN(sx); s++)
        for (int with_grad = 0; with_grad < 2; with_grad++) {
            int rows = sx[s][0], cols = sx[s][1];
            size_t n = (size_t)rows * cols;
            struct buf z = buf_rand(&r, n, -5.0 + sx[s][2], 5.0 + sx[s][2]), dz = buf_new(n);
            int32_t *lab = xcalloc((size_t)rows, 4);
            for (int i = 0; i < rows; i++) lab[i] = (int32_t)rng_int(&r, 0, cols - 1);
            int32_t *lc = be_alloc_(&g_be, (size_t)rows * 4),
                    *lg = be_alloc_(&g_gpu, (size_t)rows * 4);
            g_be.ops->upload(&g_be, lc, lab, (size_t)rows * 4);
            g_gpu.ops->upload(&g_gpu, lg, lab, (size_t)rows * 4);
            int64_t cc = -1, cg = -1;
            float gs = 1.0f / (float)rows;
            double Lc = g_be.ops->softmax_xent(&g_be, rows, cols, z.c, lc, with_grad ? dz.c : NULL,
                                               gs, with_grad ? &cc : NULL);
            double Lg = g_gpu.ops->softmax_xent(
                &g_gpu, rows, cols, z.g, lg, with_grad ? dz.g : NULL, gs, with_grad ? &cg : NULL);
            snprintf(what, sizeof what, "softmax_xent [%d, %d] offset %d grad %d: loss", rows, cols,
                     sx[s][2], with_grad);
            expect_near_d(&wl, what, Lg, Lc, fabs(Lc));
            if (with_grad) {
                if (cc != cg)
                    fail_msg("softmax_xent [%d, %d]: correct %lld on the gpu, %lld on the cpu",
                             rows, cols, (long long)cg, (long long)cc);
                snprintf(what, sizeof what, "softmax_xent [%d, %d] offset %d: dlogits", rows, cols,
                         sx[s][2]);
                check_buf(&w, what, &dz);
            }
            g_be.ops->free(&g_be, lc), g_gpu.ops->free(&g_gpu, lg);
            free(lab);
            buf_free(&z), buf_free(&dz);
        }
    static const size_t ns[] = {1, 7, 10007};
    for (size_t s = 0; s < DS_ARRAY_LEN(ns); s++)
        for (int with_grad = 0; with_grad < 2; with_grad++) {
            size_t n = ns[s];
            float gs = 1.0f / (float)n;
            /* bce_logits: targets in {0, 1} */
            float *ht = xcalloc(n, 4);
            for (size_t i = 0; i < n; i++) ht[i] = (float)rng_int(&r, 0, 1);
            struct buf z = buf_rand(&r, n, -8.0, 8.0), t = buf_from(ht, n), dz = buf_new(n);
            int64_t cc = -1, cg = -1;
            double Lc = g_be.ops->bce_logits(&g_be, n, z.c, t.c, with_grad ? dz.c : NULL, gs,
                                             with_grad ? &cc : NULL);
            double Lg = g_gpu.ops->bce_logits(&g_gpu, n, z.g, t.g, with_grad ? dz.g : NULL, gs,
                                              with_grad ? &cg : NULL);
            snprintf(what, sizeof what, "bce_logits n %zu grad %d: loss", n, with_grad);
            expect_near_d(&wl, what, Lg, Lc, fabs(Lc));
            if (with_grad) {
                if (cc != cg)
                    fail_msg("bce_logits n %zu: correct %lld on the gpu, %lld on the cpu", n,
                             (long long)cg, (long long)cc);
                snprintf(what, sizeof what, "bce_logits n %zu: dlogits", n);
                check_buf(&w, what, &dz);
            }
            buf_free(&z), buf_free(&t), buf_free(&dz);
            free(ht);
            /* sq_error */
            struct buf p = buf_rand(&r, n, -2.0, 2.0), q = buf_rand(&r, n, -2.0, 2.0),
                       dp = buf_new(n);
            Lc = g_be.ops->sq_error(&g_be, n, p.c, q.c, with_grad ? dp.c : NULL, gs);
            Lg = g_gpu.ops->sq_error(&g_gpu, n, p.g, q.g, with_grad ? dp.g : NULL, gs);
            snprintf(what, sizeof what, "sq_error n %zu grad %d: loss", n, with_grad);
            expect_near_d(&wl, what, Lg, Lc, fabs(Lc));
            if (with_grad) {
                snprintf(what, sizeof what, "sq_error n %zu: dpred", n);
                check_buf(&w, what, &dp);
            }
            buf_free(&p), buf_free(&q), buf_free(&dp);
        }
    worst_print(&w, "loss gradients");
    print_message("# %-22s %4d compared: worst |gpu - cpu| / |cpu| %.2e (%s) [tol %.0e]; correct "
                  "counts equal\n",
                  "loss sums", wl.n, wl.rel, wl.rel_at[0] ? wl.rel_at : "-", PAR_TOL);
}

/* =============================== optimizers =============================== */

/* A variant: the optimizer's defaults (lr, betas, eps, alpha), then the
 * fields below (those not named in the table are 0), unless keep_defaults. */
struct optim_case {
    const char *opt;
    const char *label;
    float momentum, dampening;
    int nesterov, amsgrad, centered;
    float lr_decay, initial_accumulator, l2, l1, wd;
    int keep_defaults; /* 1: the optimizer's defaults untouched */
};

static void optim_run(struct worst *w, const struct optim_case *oc)
{
    const struct ds_optim_ops *o = ds_optim_find(oc->opt);
    if (!o) fail_msg("optimizer %s is not registered", oc->opt);
    struct ds_optim_hyper h;
    o->defaults(&h);
    if (!oc->keep_defaults) {
        h.momentum = oc->momentum, h.dampening = oc->dampening, h.nesterov = oc->nesterov;
        h.amsgrad = oc->amsgrad, h.centered = oc->centered, h.lr_decay = oc->lr_decay;
        h.initial_accumulator = oc->initial_accumulator;
        h.l2 = oc->l2, h.l1 = oc->l1, h.wd = oc->wd;
    }
    const size_t n = 10007;
    const int steps = 5, slots = o->n_slots(&h);
    assert_true(slots >= 0 && slots <= DS_OPTIM_MAX_SLOTS);
    float *hp = xcalloc(n, 4), *hg = xcalloc(n, 4);
    for (size_t i = 0; i < n; i++) hp[i] = (float)ds_rng_normal(11, 77, i);
    struct buf p = buf_from(hp, n), g = buf_new(n), st[DS_OPTIM_MAX_SLOTS];
    float *sc[DS_OPTIM_MAX_SLOTS] = {0}, *sg[DS_OPTIM_MAX_SLOTS] = {0};
    for (int k = 0; k < slots; k++) {
        st[k] = buf_new(n);
        float v = o->initial_value ? o->initial_value(&h, k) : 0.0f;
        g_be.ops->fill(&g_be, st[k].c, n, v);
        g_gpu.ops->fill(&g_gpu, st[k].g, n, v);
        sc[k] = st[k].c, sg[k] = st[k].g;
    }
    char what[200];
    /* Steps 2-5 go through grad_guard (the trainer's path): the clip acting
     * (2, 5: scale about 0.5), a NaN and an infinite gradient (3, 4: the step
     * must change nothing), and, on 5, two ranges split at element 3, so the
     * GPU's misaligned head and its vector body both see a scale below 1. */
    double *gdc = be_alloc_(&g_be, 2 * sizeof(double)), *gdg = be_alloc_(&g_gpu, 2 * sizeof(double));
    float *before = xcalloc(n, 4), *after = xcalloc(n, 4);
    for (int t = 1; t <= steps; t++) {
        double sq = 0.0;
        for (size_t i = 0; i < n; i++) {
            hg[i] = 0.1f * (float)ds_rng_normal(12, 77, (uint64_t)t * n + i);
            sq += (double)hg[i] * hg[i];
        }
        if (t == 3) hg[n / 2] = NAN;
        if (t == 4) hg[7] = INFINITY;
        buf_put(&g, hg);
        struct ds_optim_scalars s = {
            .lr = h.lr * (1.0f - 0.05f * (float)t), .t = t, .l2 = h.l2, .l1 = h.l1, .wd = h.wd};
        const double *gc = NULL, *gg = NULL;
        if (t >= 2) {
            const double clip = t == 2 || t == 5 ? 0.5 * sqrt(sq) : 0.0;
            g_be.ops->grad_guard(&g_be, n, g.c, clip, gdc);
            g_gpu.ops->grad_guard(&g_gpu, n, g.g, clip, gdg);
            double vc[2], vg[2];
            g_be.ops->download(&g_be, vc, gdc, sizeof vc);
            g_gpu.ops->download(&g_gpu, vg, gdg, sizeof vg);
            const int finite = t != 3 && t != 4;
            if (finite ? !(fabs(vg[0] - vc[0]) <= 1e-12 * vc[0]) || !(fabs(vg[1] - vc[1]) <= 1e-6) ||
                             ((t == 2 || t == 5) != (vc[1] < 0.6)) || (t != 2 && t != 5 && vc[1] != 1.0)
                       : !isnan(vc[1]) || !isnan(vg[1]))
                fail_msg("%s (%s) step %d: grad_guard gives sum of squares %.17g, scale %.9g on the "
                         "gpu; %.17g, %.9g on the cpu",
                         o->name, oc->label, t, vg[0], vg[1], vc[0], vc[1]);
            gc = gdc, gg = gdg;
        }
        g_gpu.ops->download(&g_gpu, before, p.g, n * 4);
        if (t == 5) {
            float *sc3[DS_OPTIM_MAX_SLOTS] = {0}, *sg3[DS_OPTIM_MAX_SLOTS] = {0};
            for (int k = 0; k < slots; k++) sc3[k] = sc[k] + 3, sg3[k] = sg[k] + 3;
            g_be.ops->optim_step(&g_be, o, &h, &s, 3, p.c, g.c, sc, gc);
            g_be.ops->optim_step(&g_be, o, &h, &s, n - 3, p.c + 3, g.c + 3, sc3, gc);
            g_gpu.ops->optim_step(&g_gpu, o, &h, &s, 3, p.g, g.g, sg, gg);
            g_gpu.ops->optim_step(&g_gpu, o, &h, &s, n - 3, p.g + 3, g.g + 3, sg3, gg);
        } else {
            g_be.ops->optim_step(&g_be, o, &h, &s, n, p.c, g.c, sc, gc);
            g_gpu.ops->optim_step(&g_gpu, o, &h, &s, n, p.g, g.g, sg, gg);
        }
        if (t == 3 || t == 4) {
            g_gpu.ops->download(&g_gpu, after, p.g, n * 4);
            snprintf(what, sizeof what, "%s (%s) step %d, non-finite gradient: p unchanged",
                     o->name, oc->label, t);
            expect_bits_f(what, after, before, n);
        }
        snprintf(what, sizeof what, "%s (%s) step %d: p", o->name, oc->label, t);
        check_buf(w, what, &p);
        for (int k = 0; k < slots; k++) {
            snprintf(what, sizeof what, "%s (%s) step %d: state slot %d", o->name, oc->label, t, k);
            check_buf(w, what, &st[k]);
        }
    }
    for (int k = 0; k < slots; k++) buf_free(&st[k]);
    buf_free(&p), buf_free(&g);
    g_be.ops->free(&g_be, gdc), g_gpu.ops->free(&g_gpu, gdg);
    free(hp), free(hg), free(before), free(after);
}

static void test_optim_steps(void **state)
{
    (void)state;
    NEED_GPU();
    static const struct optim_case variants[] = {
        {.opt = "sgd", .label = "momentum 0.9 nesterov", .momentum = 0.9f, .nesterov = 1},
        {.opt = "sgd", .label = "momentum 0.9 dampening 0.5", .momentum = 0.9f, .dampening = 0.5f},
        {.opt = "sgd", .label = "momentum 0.9 l2 1e-2 l1 1e-3 wd 1e-2", .momentum = 0.9f,
         .l2 = 1e-2f, .l1 = 1e-3f, .wd = 1e-2f},
        {.opt = "gd", .label = "momentum 0.5 l2 1e-2", .momentum = 0.5f, .l2 = 1e-2f},
        {.opt = "adam", .label = "amsgrad", .amsgrad = 1},
        {.opt = "adam", .label = "l2 1e-2 l1 1e-3", .l2 = 1e-2f, .l1 = 1e-3f},
        {.opt = "adamw", .label = "wd 0.1", .wd = 0.1f},
        {.opt = "adamw", .label = "wd 1e-2 amsgrad l1 1e-3", .amsgrad = 1, .l1 = 1e-3f,
         .wd = 1e-2f},
        {.opt = "rmsprop", .label = "centered momentum 0.9", .momentum = 0.9f, .centered = 1},
        {.opt = "rmsprop", .label = "l2 1e-2 wd 1e-2", .l2 = 1e-2f, .wd = 1e-2f},
        {.opt = "adagrad", .label = "lr_decay 0.01 initial 0.1", .lr_decay = 0.01f,
         .initial_accumulator = 0.1f},
        {.opt = "adagrad", .label = "l2 1e-2 l1 1e-3", .l2 = 1e-2f, .l1 = 1e-3f},
    };
    struct worst w = {0};
    int runs = 0;
    for (int i = 0; i < ds_optim_count(); i++, runs++) {
        struct optim_case def = {
            .opt = ds_optim_at(i)->name, .label = "defaults", .keep_defaults = 1};
        optim_run(&w, &def);
    }
    for (size_t i = 0; i < DS_ARRAY_LEN(variants); i++, runs++) optim_run(&w, &variants[i]);
    worst_print(&w, "optim_step");
    print_message("# optim_step: %d runs (%d optimizers at their defaults, %zu variants), 5 steps "
                  "each (4 through grad_guard: the clip acting, a NaN and an infinite gradient "
                  "making no change, two ranges), p and every state slot after every step\n",
                  runs, ds_optim_count(), DS_ARRAY_LEN(variants));
}

/* loss_defer (the GPU offers it): the sums it keeps on the device are the
 * bits of adding the returned sums on the host, and it counts correct
 * predictions and out-of-range labels. */
static void test_loss_defer(void **state)
{
    (void)state;
    NEED_GPU();
    struct ds_backend *be = &g_gpu;
    if (!be->ops->loss_defer) {
        print_message("# loss_defer: not offered by this backend\n");
        return;
    }
    struct rng r = {1616};
    enum { CALLS = 3 };
    const int rows[CALLS] = {130, 1, 517}, cols[CALLS] = {10, 10, 47};
    double host_sum = 0.0, host_correct = 0.0, acc_h[3];
    double *acc = be_alloc_(be, 3 * sizeof(double));
    for (int pass = 0; pass < 2; pass++) { /* 0: returned sums; 1: deferred */
        struct rng rr = r;
        if (pass == 1) {
            be->ops->fill(be, (float *)acc, 6, 0.0f);
            be->ops->loss_defer(be, acc);
        }
        for (int k = 0; k < CALLS; k++) {
            struct buf z = buf_rand(&rr, (size_t)rows[k] * cols[k], -3.0, 3.0);
            int32_t *lab = xcalloc((size_t)rows[k], sizeof(int32_t));
            for (int i = 0; i < rows[k]; i++) lab[i] = (int32_t)rng_int(&rr, 0, cols[k] - 1);
            int32_t *dl = be_alloc_(be, (size_t)rows[k] * sizeof(int32_t));
            be->ops->upload(be, dl, lab, (size_t)rows[k] * sizeof(int32_t));
            float *dz = be_alloc_(be, (size_t)rows[k] * cols[k] * sizeof(float));
            int64_t c = 0;
            double L = be->ops->softmax_xent(be, rows[k], cols[k], z.g, dl, dz, 0.5f, pass ? NULL : &c);
            if (pass == 0) host_sum += L, host_correct += (double)c;
            else if (L != 0.0) fail_msg("deferred softmax_xent returned %.17g, not 0", L);
            be->ops->free(be, dz), be->ops->free(be, dl);
            buf_free(&z);
            free(lab);
        }
        if (pass == 1) be->ops->loss_defer(be, NULL);
    }
    be->ops->download(be, acc_h, acc, sizeof acc_h);
    if (memcmp(&acc_h[0], &host_sum, sizeof host_sum) != 0 || acc_h[1] != host_correct || acc_h[2] != 0.0)
        fail_msg("loss_defer: loss %.17g, correct %.0f, bad labels %.0f; the host's sum of the returns "
                 "%.17g, correct %.0f",
                 acc_h[0], acc_h[1], acc_h[2], host_sum, host_correct);
    be->ops->free(be, acc);
    print_message("# loss_defer: 3 softmax_xent calls kept on the device = the host's sum of their "
                  "returns, to the bit (%.17g); correct %.0f\n", host_sum, host_correct);
}

/* ============================== determinism =============================== */

static void expect_same_download(const char *what, const float *a, const float *b, size_t n)
{
    float *ha = xcalloc(n, 4), *hb = xcalloc(n, 4);
    g_gpu.ops->download(&g_gpu, ha, a, n * 4);
    g_gpu.ops->download(&g_gpu, hb, b, n * 4);
    expect_bits_f(what, hb, ha, n);
    free(ha), free(hb);
}

static void test_determinism(void **state)
{
    (void)state;
    NEED_GPU();
    struct ds_backend *be = &g_gpu;
    struct rng r = {1414};
    /* dot over 4M elements */
    const size_t n = ((size_t)1 << 22) + 5;
    struct buf x = buf_rand(&r, n, -1.0, 1.0), y = buf_rand(&r, n, -1.0, 1.0);
    double d1 = be->ops->dot(be, n, x.g, y.g), d2 = be->ops->dot(be, n, x.g, y.g);
    if (memcmp(&d1, &d2, sizeof d1) != 0) fail_msg("dot twice: %.17g then %.17g", d1, d2);
    buf_free(&x), buf_free(&y);

    /* softmax_xent over [4096, 10]: loss, correct, dlogits */
    const int rows = 4096, cols = 10;
    struct buf z = buf_rand(&r, (size_t)rows * cols, -5.0, 5.0);
    float *dz1 = be_alloc_(be, (size_t)rows * cols * 4),
          *dz2 = be_alloc_(be, (size_t)rows * cols * 4);
    int32_t *lab = xcalloc((size_t)rows, 4);
    for (int i = 0; i < rows; i++) lab[i] = (int32_t)rng_int(&r, 0, cols - 1);
    int32_t *lg = be_alloc_(be, (size_t)rows * 4);
    be->ops->upload(be, lg, lab, (size_t)rows * 4);
    int64_t c1 = -1, c2 = -2;
    double L1 = be->ops->softmax_xent(be, rows, cols, z.g, lg, dz1, 1.0f / rows, &c1);
    double L2 = be->ops->softmax_xent(be, rows, cols, z.g, lg, dz2, 1.0f / rows, &c2);
    if (memcmp(&L1, &L2, sizeof L1) != 0 || c1 != c2)
        fail_msg("softmax_xent twice: loss %.17g then %.17g, correct %lld then %lld", L1, L2,
                 (long long)c1, (long long)c2);
    expect_same_download("softmax_xent twice: dlogits", dz1, dz2, (size_t)rows * cols);
    be->ops->free(be, dz1), be->ops->free(be, dz2), be->ops->free(be, lg);
    free(lab);

    /* col_sum over [4096, 256] (bias gradients) */
    struct buf cs = buf_rand(&r, (size_t)4096 * 256, -1.0, 1.0);
    float *o1 = be_alloc_(be, 256 * 4), *o2 = be_alloc_(be, 256 * 4);
    be->ops->col_sum(be, 4096, 256, cs.g, o1, 0);
    be->ops->col_sum(be, 4096, 256, cs.g, o2, 0);
    expect_same_download("col_sum twice", o1, o2, 256);
    be->ops->free(be, o1), be->ops->free(be, o2);
    buf_free(&cs), buf_free(&z);

    /* conv_backward: 16 x [8, 28, 28] -> 32, k 5, pad 2, GELU, with dx */
    struct ds_window g = window(16, 8, 28, 28, 5, 1, 2);
    const int oc = 32;
    size_t nx = (size_t)g.batch * g.c * g.h * g.w, ny = (size_t)g.batch * oc * g.oh * g.ow;
    size_t nw = (size_t)oc * g.c * g.k * g.k;
    struct buf cx = buf_rand(&r, nx, -1.0, 1.0), W = buf_rand(&r, nw, -0.5, 0.5);
    struct buf b = buf_rand(&r, (size_t)oc, -0.5, 0.5), dy = buf_rand(&r, ny, -1.0, 1.0);
    float *cy = be_alloc_(be, ny * 4), *pre = be_alloc_(be, ny * 4);
    float *ws = be_alloc_(be, be->ops->conv_workspace(be, &g, oc) * 4);
    be->ops->conv_forward(be, &g, oc, cx.g, W.g, b.g, DS_ACT_GELU, cy, pre, ws);
    float *dW[2], *db[2], *dx[2];
    for (int k = 0; k < 2; k++) {
        dW[k] = be_alloc_(be, nw * 4), db[k] = be_alloc_(be, (size_t)oc * 4),
        dx[k] = be_alloc_(be, nx * 4);
        be->ops->conv_backward(be, &g, oc, DS_ACT_GELU, cx.g, W.g, cy, pre, dy.g, dW[k], db[k],
                               dx[k], 0, ws);
    }
    expect_same_download("conv_backward twice: dW", dW[0], dW[1], nw);
    expect_same_download("conv_backward twice: db", db[0], db[1], (size_t)oc);
    expect_same_download("conv_backward twice: dx", dx[0], dx[1], nx);
    for (int k = 0; k < 2; k++)
        be->ops->free(be, dW[k]), be->ops->free(be, db[k]), be->ops->free(be, dx[k]);
    be->ops->free(be, cy), be->ops->free(be, pre), be->ops->free(be, ws);
    buf_free(&cx), buf_free(&W), buf_free(&b), buf_free(&dy);
    print_message("# determinism: dot (4M), softmax_xent [4096, 10], col_sum [4096, 256], "
                  "conv_backward (16 x [8, 28, 28] -> 32, 5x5, GELU) twice on the gpu: "
                  "bit-identical\n");
}

/* ============================ a small MLP trained ========================= */

#define MLP_N 512
#define MLP_DIM 24
#define MLP_CLASSES 6
#define MLP_BATCH 32
#define MLP_STEPS 20

static const struct ds_layer_spec mlp_layers[] = {
    {.kind = DS_LAYER_LINEAR, .units = 32},
    {.kind = DS_LAYER_GELU},
    {.kind = DS_LAYER_DROPOUT, .p = 0.1f},
    {.kind = DS_LAYER_LINEAR, .units = 32},
    {.kind = DS_LAYER_TANH},
    {.kind = DS_LAYER_LINEAR, .units = MLP_CLASSES},
};

static void mlp_task(struct ds_backend *be, const float *x, const int32_t *y, struct ds_task *task)
{
    struct ds_err err = {{0}};
    struct ds_dataset train, eval;
    memset(&train, 0, sizeof train);
    memset(&eval, 0, sizeof eval);
    if (ds_dataset_alloc(&train, MLP_N, MLP_DIM, 0, MLP_CLASSES, &err) != DS_OK ||
        ds_dataset_alloc(&eval, MLP_N, MLP_DIM, 0, MLP_CLASSES, &err) != DS_OK)
        fail_msg("ds_dataset_alloc: %s", err.msg);
    memcpy(train.x, x, (size_t)MLP_N * MLP_DIM * sizeof(float));
    memcpy(eval.x, x, (size_t)MLP_N * MLP_DIM * sizeof(float));
    memcpy(train.labels, y, (size_t)MLP_N * sizeof(int32_t));
    memcpy(eval.labels, y, (size_t)MLP_N * sizeof(int32_t));
    struct ds_supervised_spec spec = {
        .layers = mlp_layers,
        .n_layers = (int)DS_ARRAY_LEN(mlp_layers),
        .loss = DS_LOSS_XENT,
        .metric = "accuracy",
        .metric_higher_better = 1,
        .max_batch = MLP_BATCH,
        .seed = 5,
    };
    if (ds_supervised_create(be, &spec, &train, &eval, task, &err) != DS_OK)
        fail_msg("%s: ds_supervised_create: %s", be->ops->name, err.msg);
}

static void test_train_mlp(void **state)
{
    (void)state;
    NEED_GPU();
    struct rng r = {1515};
    float *x = xcalloc((size_t)MLP_N * MLP_DIM, sizeof(float));
    int32_t *y = xcalloc(MLP_N, sizeof(int32_t));
    rng_fill(&r, x, (size_t)MLP_N * MLP_DIM, -1.0, 1.0);
    for (int i = 0; i < MLP_N; i++) y[i] = (int32_t)rng_int(&r, 0, MLP_CLASSES - 1);

    struct ds_backend *bes[2] = {&g_be, &g_gpu};
    struct ds_task task[2];
    struct ds_comm comm[2];
    struct ds_trainer tr[2];
    struct ds_err err = {{0}};
    const struct ds_optim_ops *adam = ds_optim_find("adam");
    assert_non_null(adam);
    struct ds_optim_hyper h;
    adam->defaults(&h);
    h.lr = 3e-3f;
    struct ds_schedule sched = {.kind = DS_SCHED_CONSTANT, .base_lr = h.lr, .total = MLP_STEPS};
    for (int s = 0; s < 2; s++) {
        mlp_task(bes[s], x, y, &task[s]);
        if (ds_comm_create("local", bes[s], &comm[s], &err) != DS_OK)
            fail_msg("%s: local comm: %s", bes[s]->ops->name, err.msg);
    }
    /* the same initial parameters: the CPU task's, given to the GPU task */
    size_t np = task[0].layout->total;
    assert_int_equal(task[1].layout->total, np);
    float *p0 = xcalloc(np, sizeof(float)), *p1 = xcalloc(np, sizeof(float));
    g_be.ops->download(&g_be, p0, task[0].params, np * sizeof(float));
    g_gpu.ops->upload(&g_gpu, task[1].params, p0, np * sizeof(float));
    for (int s = 0; s < 2; s++)
        if (ds_trainer_init(&tr[s], bes[s], &comm[s], &task[s], adam, &h, &sched, 1.0, 1, 0,
                            &err) != DS_OK)
            fail_msg("%s: ds_trainer_init: %s", bes[s]->ops->name, err.msg);

    int32_t idx[MLP_BATCH];
    double worst = 0.0;
    int worst_step = 1;
    for (int k = 0; k < MLP_STEPS; k++) {
        for (int i = 0; i < MLP_BATCH; i++) idx[i] = (int32_t)((k * 97 + i * 13) % MLP_N);
        struct ds_step_info ic, ig;
        ds_trainer_step(&tr[0], idx, MLP_BATCH, &ic);
        ds_trainer_step(&tr[1], idx, MLP_BATCH, &ig);
        if (!ic.finite || !ig.finite)
            fail_msg("step %d: not finite (cpu %d, gpu %d)", k + 1, ic.finite, ig.finite);
        double e = fabs(ig.loss - ic.loss) / fabs(ic.loss);
        if (!(e <= worst)) worst = e, worst_step = k + 1;
        if (!(e <= TRAIN_TOL))
            fail_msg("step %d: loss %.9g on the gpu, %.9g on the cpu (relative %.3g > %.0e)", k + 1,
                     ig.loss, ic.loss, e, TRAIN_TOL);
        if (k == 0) { /* the same parameters: forward and backward alone */
            double en = fabs(ig.grad_norm - ic.grad_norm) / fabs(ic.grad_norm);
            if (!(e <= PAR_TOL) || !(en <= PAR_TOL))
                fail_msg("step 1 from the same parameters: loss %.9g vs %.9g (%.3g), gradient "
                         "norm %.9g vs %.9g (%.3g); tol %.0e",
                         ig.loss, ic.loss, e, ig.grad_norm, ic.grad_norm, en, PAR_TOL);
        }
    }
    g_be.ops->download(&g_be, p0, task[0].params, np * sizeof(float));
    g_gpu.ops->download(&g_gpu, p1, task[1].params, np * sizeof(float));
    print_message("# train mlp: %d Adam steps of batch %d, %zu parameters: worst loss difference "
                  "%.2e (step %d) [tol %.0e]; final parameters differ by %.2e (relative norm)\n",
                  MLP_STEPS, MLP_BATCH, np, worst, worst_step, TRAIN_TOL, tu_rel_err_f(p1, p0, np));
    for (int s = 0; s < 2; s++) {
        ds_trainer_free(&tr[s]);
        ds_task_destroy(&task[s]);
        ds_comm_destroy(&comm[s]);
    }
    free(p0), free(p1), free(x), free(y);
}

/* ===================== fmnist-mlp, 100 steps, and a rerun ================= */

#define FM_STEPS 100
#define FM_BATCH 128

struct fm_run {
    double loss[FM_STEPS], norm[FM_STEPS];
    int clipped;          /* steps whose norm was above the clip */
    double eval_loss, eval_acc;
    float *params;        /* host copy of the final parameters, owned */
    size_t np;
};

/* `steps` Adam steps of a real Fashion-MNIST workload (Debian's data,
 * dropout 0.1, the global-norm clip at 1) from the workload's seeded
 * initialisation, the sampler's shuffled order, then eval on 2000 test
 * images: what `descent run --workload NAME --steps N` does. */
static int fm_train(struct ds_backend *be, const char *workload, const char *variant, int steps,
                    int batch, struct fm_run *out)
{
    struct ds_err err = {{0}};
    const struct ds_workload *w = ds_workload_find(workload);
    assert_non_null(w);
    DS_ASSERT(steps <= FM_STEPS);
    struct ds_workload_args a;
    memset(&a, 0, sizeof a);
    a.seed = 7;
    a.dropout = 0.1f;
    a.variant = variant;
    a.max_batch = batch;
    a.eval_limit = 2000;
    struct ds_task task;
    ds_status st = w->create(&a, be, &task, &err);
    if (st == DS_ERR_IO) { /* not installed: Debian's dataset-fashion-mnist */
        print_message("# SKIP: %s: %s\n", workload, err.msg);
        return 0;
    }
    if (st != DS_OK) fail_msg("%s: %s: %s", be->ops->name, workload, err.msg);
    task.ops->init_params(&task, w->default_init, a.seed);
    struct ds_comm comm;
    if (ds_comm_create("local", be, &comm, &err) != DS_OK) fail_msg("local comm: %s", err.msg);
    const struct ds_optim_ops *adam = ds_optim_find("adam");
    struct ds_optim_hyper h;
    adam->defaults(&h);
    h.lr = 1e-3f;
    struct ds_schedule sched = {.kind = DS_SCHED_CONSTANT, .base_lr = h.lr, .total = steps};
    struct ds_trainer tr;
    const double clip = 1.0;
    if (ds_trainer_init(&tr, be, &comm, &task, adam, &h, &sched, clip, 1, 0, &err) != DS_OK)
        fail_msg("%s: ds_trainer_init: %s", be->ops->name, err.msg);
    struct ds_sampler smp;
    if (ds_sampler_init(&smp, task.n_train, batch, 1, a.seed, &err) != DS_OK)
        fail_msg("sampler: %s", err.msg);
    out->clipped = 0;
    for (int k = 0; k < steps; k++) {
        const int32_t *idx;
        int n = ds_sampler_next(&smp, &idx);
        struct ds_step_info info;
        ds_trainer_step(&tr, idx, n, &info);
        if (!info.finite) fail_msg("%s: step %d not finite", be->ops->name, k + 1);
        out->loss[k] = info.loss, out->norm[k] = info.grad_norm;
        out->clipped += info.grad_norm > clip;
    }
    task.ops->evaluate(&task, 1, &out->eval_loss, &out->eval_acc);
    out->np = task.layout->total;
    out->params = xcalloc(out->np, sizeof(float));
    be->ops->download(be, out->params, task.params, out->np * sizeof(float));
    ds_sampler_free(&smp);
    ds_trainer_free(&tr);
    ds_task_destroy(&task);
    ds_comm_destroy(&comm);
    return 1;
}

static void test_train_fmnist_mlp(void **state)
{
    (void)state;
    NEED_GPU();
    static struct fm_run cpu, gpu, again;
    if (!fm_train(&g_be, "fmnist-mlp", NULL, FM_STEPS, FM_BATCH, &cpu)) skip();
    if (!fm_train(&g_gpu, "fmnist-mlp", NULL, FM_STEPS, FM_BATCH, &gpu) ||
        !fm_train(&g_gpu, "fmnist-mlp", NULL, FM_STEPS, FM_BATCH, &again))
        fail_msg("the data went away");
    double worst = 0.0;
    int worst_step = 1;
    for (int k = 0; k < FM_STEPS; k++) {
        double e = fabs(gpu.loss[k] - cpu.loss[k]) / fabs(cpu.loss[k]);
        double en = fabs(gpu.norm[k] - cpu.norm[k]) / fabs(cpu.norm[k]);
        if (e > worst) worst = e, worst_step = k + 1;
        if (!(e <= TRAIN_TOL) || !(en <= TRAIN_TOL))
            fail_msg("fmnist-mlp step %d: loss %.9g gpu, %.9g cpu (%.3g); gradient norm %.9g gpu, "
                     "%.9g cpu (%.3g); tol %.0e",
                     k + 1, gpu.loss[k], cpu.loss[k], e, gpu.norm[k], cpu.norm[k], en, TRAIN_TOL);
    }
    /* the clip must have acted on some steps and not on others, or it was
     * not tested; and on the same steps, but for norms within the
     * tolerance of the clip, which may fall either side */
    if (cpu.clipped == 0 || cpu.clipped == FM_STEPS)
        fail_msg("fmnist-mlp: the clip at 1 acted on %d of %d steps", cpu.clipped, FM_STEPS);
    for (int k = 0; k < FM_STEPS; k++)
        if (fabs(cpu.norm[k] - 1.0) > TRAIN_TOL && (cpu.norm[k] > 1.0) != (gpu.norm[k] > 1.0))
            fail_msg("fmnist-mlp step %d: the clip acted on one backend only (norm %.9g gpu, %.9g cpu)",
                     k + 1, gpu.norm[k], cpu.norm[k]);
    double ee = fabs(gpu.eval_loss - cpu.eval_loss) / fabs(cpu.eval_loss);
    if (!(ee <= TRAIN_TOL) || fabs(gpu.eval_acc - cpu.eval_acc) > 1.5 / 2000.0)
        fail_msg("fmnist-mlp eval: loss %.9g gpu, %.9g cpu (%.3g); accuracy %.4f gpu, %.4f cpu",
                 gpu.eval_loss, cpu.eval_loss, ee, gpu.eval_acc, cpu.eval_acc);
    /* the same seed twice on the gpu: the same bits, step by step */
    if (memcmp(gpu.loss, again.loss, sizeof gpu.loss) != 0 ||
        memcmp(gpu.norm, again.norm, sizeof gpu.norm) != 0 ||
        memcmp(gpu.params, again.params, gpu.np * sizeof(float)) != 0 ||
        memcmp(&gpu.eval_loss, &again.eval_loss, sizeof(double)) != 0)
        fail_msg("fmnist-mlp twice on the gpu with the same seed: results differ");
    print_message("# train fmnist-mlp: %d Adam steps of batch %d (dropout 0.1, clip 1 acting on "
                  "%d steps), %zu parameters: worst loss difference %.2e (step %d) [tol %.0e]; "
                  "final parameters differ by %.2e (relative norm); eval loss %.6f gpu, %.6f cpu, "
                  "accuracy %.4f gpu, %.4f cpu; a second gpu run: bit-identical\n",
                  FM_STEPS, FM_BATCH, cpu.clipped, cpu.np, worst, worst_step, TRAIN_TOL,
                  tu_rel_err_f(gpu.params, cpu.params, cpu.np), gpu.eval_loss, cpu.eval_loss,
                  gpu.eval_acc, cpu.eval_acc);
    free(cpu.params), free(gpu.params), free(again.params);
}

/* The small CNN (conv-pool-conv-pool-linear, dropout) end to end through
 * the model: the convolutions' chunks, pooling and the CHW ops in training,
 * not op by op. 30 Adam steps of batch 64.
 * Tolerances. The first step, from the same parameters, must agree to
 * PAR_TOL in loss and gradient norm: the whole forward and backward. After
 * that the runs drift apart by design, not by error: the CPU convolves 5x5
 * by Winograd and the GPU by im2col + GEMM (1e-7 apart), and max pooling's
 * argmax and ReLU's kink turn such differences into different gradient
 * routes now and then. Measured on the host emulator with SGD: losses and
 * norms equal to 1e-7 for 8 steps, then at step 9 the loss still to 2e-8
 * but the norm 1e-4 apart (a route changed); Adam amplifies more (its step
 * is sign-like for small gradients): 2e-5 at step 3, 1e-3 by step 29. So
 * later steps are held to CNN_DRIFT_TOL (1e-2) in loss and the test
 * accuracy to one point. */
#define CNN_DRIFT_TOL 1e-2
static void test_train_fmnist_cnn(void **state)
{
    (void)state;
    NEED_GPU();
    enum { STEPS = 30, BATCH = 64 };
    static struct fm_run cpu, gpu;
    if (!fm_train(&g_be, "fmnist-cnn", "small", STEPS, BATCH, &cpu)) skip();
    if (!fm_train(&g_gpu, "fmnist-cnn", "small", STEPS, BATCH, &gpu)) fail_msg("the data went away");
    double worst = 0.0;
    int worst_step = 1;
    for (int k = 0; k < STEPS; k++) {
        double e = fabs(gpu.loss[k] - cpu.loss[k]) / fabs(cpu.loss[k]);
        double en = fabs(gpu.norm[k] - cpu.norm[k]) / fabs(cpu.norm[k]);
        if (e > worst) worst = e, worst_step = k + 1;
        if (k == 0 && (!(e <= PAR_TOL) || !(en <= PAR_TOL)))
            fail_msg("fmnist-cnn small step 1 from the same parameters: loss %.9g gpu, %.9g cpu "
                     "(%.3g); gradient norm %.9g gpu, %.9g cpu (%.3g); tol %.0e",
                     gpu.loss[0], cpu.loss[0], e, gpu.norm[0], cpu.norm[0], en, PAR_TOL);
        if (!(e <= CNN_DRIFT_TOL))
            fail_msg("fmnist-cnn small step %d: loss %.9g gpu, %.9g cpu (%.3g > %.0e)", k + 1,
                     gpu.loss[k], cpu.loss[k], e, CNN_DRIFT_TOL);
    }
    if (!(fabs(gpu.eval_acc - cpu.eval_acc) <= 0.01))
        fail_msg("fmnist-cnn small eval: accuracy %.4f gpu, %.4f cpu", gpu.eval_acc, cpu.eval_acc);
    print_message("# train fmnist-cnn small: %d Adam steps of batch %d, %zu parameters: step 1 "
                  "loss %.2e, norm %.2e apart [tol %.0e]; worst loss difference %.2e (step %d) "
                  "[tol %.0e]; eval accuracy %.4f gpu, %.4f cpu\n",
                  STEPS, BATCH, cpu.np, fabs(gpu.loss[0] - cpu.loss[0]) / fabs(cpu.loss[0]),
                  fabs(gpu.norm[0] - cpu.norm[0]) / fabs(cpu.norm[0]), PAR_TOL, worst, worst_step,
                  CNN_DRIFT_TOL, gpu.eval_acc, cpu.eval_acc);
    free(cpu.params), free(gpu.params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory),        cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_bias_act),      cmocka_unit_test(test_act_backward),
        cmocka_unit_test(test_col_row_sum),   cmocka_unit_test(test_dropout),
        cmocka_unit_test(test_vector_ops),    cmocka_unit_test(test_gathers),
        cmocka_unit_test(test_im2col_col2im), cmocka_unit_test(test_chw_ops),
        cmocka_unit_test(test_pool),          cmocka_unit_test(test_conv),
        cmocka_unit_test(test_losses),        cmocka_unit_test(test_loss_defer),
        cmocka_unit_test(test_optim_steps),
        cmocka_unit_test(test_determinism),   cmocka_unit_test(test_train_mlp),
        cmocka_unit_test(test_train_fmnist_mlp), cmocka_unit_test(test_train_fmnist_cnn),
    };
    return cmocka_run_group_tests_name("cuda", tests, group_setup, group_teardown);
}
