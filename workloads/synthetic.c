/* synthetic.c: double-precision optima of the synthetic workloads (see synthetic.h). */
#include "synthetic.h"

#include <lapacke.h>
#include <math.h>
#include <string.h>

int ds_syn_spd_solve(int n, double *H, double *g)
{
    return (int)LAPACKE_dposv(LAPACK_ROW_MAJOR, 'U', n, 1, H, n, g, 1);
}

void ds_syn_eig_bounds(int n, const double *H, double *mu, double *L)
{
    double *A = DS_XCALLOC((size_t)n * n, sizeof *A);
    double *w = DS_XCALLOC((size_t)n, sizeof *w);
    memcpy(A, H, (size_t)n * n * sizeof *A);
    if (LAPACKE_dsyev(LAPACK_ROW_MAJOR, 'N', 'U', n, A, n, w) == 0) {
        *mu = w[0]; /* ascending */
        *L = w[n - 1];
    } else {
        *mu = *L = 0.0;
    }
    free(A);
    free(w);
}

void ds_syn_orthogonal(int n, double *G)
{
    double *tau = DS_XCALLOC((size_t)n, sizeof *tau);
    int info = (int)LAPACKE_dgeqrf(LAPACK_ROW_MAJOR, n, n, G, n, tau);
    DS_ASSERT_MSG(info == 0, "dgeqrf info %d", info);
    info = (int)LAPACKE_dorgqr(LAPACK_ROW_MAJOR, n, n, n, G, n, tau);
    DS_ASSERT_MSG(info == 0, "dorgqr info %d", info);
    free(tau);
}

static inline double softplus(double z) { return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z)); }
static inline double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

static double penalty(int d, const double *theta, double l2, int decay_bias)
{
    double s = 0.0;
    for (int j = 0; j < d; j++) s += theta[j] * theta[j];
    if (decay_bias) s += theta[d] * theta[d];
    return 0.5 * l2 * s;
}

double ds_syn_linear_objective(int kind, int64_t n, int d, const float *X, const float *y,
                               const double *theta, double l2, int decay_bias)
{
    double f = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const float *x = X + (size_t)i * d;
        double z = theta[d];
        for (int j = 0; j < d; j++) z += (double)x[j] * theta[j];
        if (kind == 0) {
            double r = z - (double)y[i];
            f += r * r;
        } else {
            f += softplus(z) - (double)y[i] * z;
        }
    }
    return f / (double)n + penalty(d, theta, l2, decay_bias);
}

/* Gradient g [d+1] and Hessian H [(d+1)^2] of the objective at theta. */
static void grad_hess(int kind, int64_t n, int d, const float *X, const float *y,
                      const double *theta, double l2, int decay_bias, double *g, double *H)
{
    int p = d + 1;
    memset(g, 0, (size_t)p * sizeof *g);
    memset(H, 0, (size_t)p * p * sizeof *H);
    double *xt = DS_XCALLOC((size_t)p, sizeof *xt);
    for (int64_t i = 0; i < n; i++) {
        const float *x = X + (size_t)i * d;
        for (int j = 0; j < d; j++) xt[j] = (double)x[j];
        xt[d] = 1.0;
        double z = 0.0;
        for (int j = 0; j < p; j++) z += xt[j] * theta[j];
        double r, w; /* dloss/dz and d2loss/dz2 */
        if (kind == 0) {
            r = 2.0 * (z - (double)y[i]);
            w = 2.0;
        } else {
            double s = sigmoid(z);
            r = s - (double)y[i];
            w = s * (1.0 - s);
        }
        for (int j = 0; j < p; j++) {
            g[j] += r * xt[j];
            double wx = w * xt[j];
            for (int k = j; k < p; k++) H[(size_t)j * p + k] += wx * xt[k];
        }
    }
    free(xt);
    for (int j = 0; j < p; j++) {
        g[j] /= (double)n;
        for (int k = j; k < p; k++) {
            H[(size_t)j * p + k] /= (double)n;
            H[(size_t)k * p + j] = H[(size_t)j * p + k];
        }
        double lam = (j < d || decay_bias) ? l2 : 0.0;
        g[j] += lam * theta[j];
        H[(size_t)j * p + j] += lam;
    }
}

int ds_syn_linear_optimum(int kind, int64_t n, int d, const float *X, const float *y, double l2,
                          int decay_bias, double *theta, double *f_star, double *mu, double *L)
{
    int p = d + 1, found = 0;
    double *g = DS_XCALLOC((size_t)p, sizeof *g);
    double *H = DS_XCALLOC((size_t)p * p, sizeof *H);
    double *Hc = DS_XCALLOC((size_t)p * p, sizeof *Hc);
    double *step = DS_XCALLOC((size_t)p, sizeof *step);
    double *trial = DS_XCALLOC((size_t)p, sizeof *trial);
    memset(theta, 0, (size_t)p * sizeof *theta);
    /* Least squares is quadratic: one Newton step from 0 is exact, and the
     * next one finds the decrement at rounding level. Logistic needs a few
     * dozen at most. */
    int max_iter = kind == 0 ? 4 : 100;
    double f = ds_syn_linear_objective(kind, n, d, X, y, theta, l2, decay_bias);
    for (int it = 0; it < max_iter; it++) {
        grad_hess(kind, n, d, X, y, theta, l2, decay_bias, g, H);
        memcpy(Hc, H, (size_t)p * p * sizeof *H);
        memcpy(step, g, (size_t)p * sizeof *g);
        if (ds_syn_spd_solve(p, Hc, step) != 0) break;
        /* The Newton decrement g^T H^-1 g estimates 2 (f - f*). Once it is
         * at the rounding level of f, one more full step (quadratic
         * convergence) lands on the optimum to double precision; a line
         * search cannot tell points apart any more, so none is done. */
        double decrement = 0.0;
        for (int j = 0; j < p; j++) decrement += g[j] * step[j];
        if (decrement <= 1e-12 * fmax(1.0, fabs(f))) {
            for (int j = 0; j < p; j++) theta[j] -= step[j];
            found = 1;
            break;
        }
        double t = 1.0, ft = f;
        for (int ls = 0; ls < 60; ls++, t *= 0.5) {
            for (int j = 0; j < p; j++) trial[j] = theta[j] - t * step[j];
            ft = ds_syn_linear_objective(kind, n, d, X, y, trial, l2, decay_bias);
            if (ft <= f - 0.25 * t * decrement || kind == 0) break;
        }
        memcpy(theta, trial, (size_t)p * sizeof *theta);
        f = ft;
        double norm = 0.0;
        for (int j = 0; j < p; j++) norm += theta[j] * theta[j];
        if (!(norm < 1e12)) break; /* separable data: the optimum is at infinity */
    }
    if (found) {
        grad_hess(kind, n, d, X, y, theta, l2, decay_bias, g, H);
        ds_syn_eig_bounds(p, H, mu, L);
        *f_star = ds_syn_linear_objective(kind, n, d, X, y, theta, l2, decay_bias);
    }
    free(g);
    free(H);
    free(Hc);
    free(step);
    free(trial);
    return found ? 0 : 1;
}
