/*
 * synthetic.h: what the synthetic workloads share: Philox-addressed data
 * generation and the double-precision solvers that give their optima
 * (LAPACK through LAPACKE: Cholesky solves, symmetric eigenvalues, QR).
 */
#ifndef DS_SYNTHETIC_H
#define DS_SYNTHETIC_H

#include "../core/ds.h"
#include "../core/philox.h"

/* What a synthetic number is for. Each (kind, split) pair draws from its own
 * Philox stream, so no two purposes or splits can ever share a random number,
 * whatever the sizes; within a stream the index is the element's position. */
enum ds_syn_kind { DS_SYN_X = 0, DS_SYN_NOISE = 1, DS_SYN_TRUTH = 2, DS_SYN_FLIP = 3, DS_SYN_MATRIX = 4 };

static inline uint32_t ds_syn_stream(enum ds_syn_kind kind, int split)
{
    return (uint32_t)DS_STREAM_DATA + 2u * (uint32_t)kind + (split ? 1u : 0u);
}

/* Largest dimension whose linear-model optimum is computed. */
#define DS_SYN_OPTIMUM_MAX_DIM 2048
#define DS_SYN_OPTIMUM_MAX_DIM_TEXT "2048"

/* Solves the SPD system H x = g (n x n, row-major, H overwritten).
 * Returns 0 on success, nonzero if H is not positive definite. */
int ds_syn_spd_solve(int n, double *H, double *g);
/* Smallest and largest eigenvalue of symmetric H (n x n; H is not modified). */
void ds_syn_eig_bounds(int n, const double *H, double *mu, double *L);
/* Q (n x n, row-major) orthogonal from the QR factorisation of G (overwritten). */
void ds_syn_orthogonal(int n, double *G);

/* Objective of a linear model theta = [w (d), b] on rows X (n x d float):
 * kind 0: mean squared error; kind 1: mean BCE-with-logits with labels y.
 * plus l2/2 * (||w||^2 + decay_bias * b^2). Double precision. */
double ds_syn_linear_objective(int kind, int64_t n, int d, const float *X, const float *y,
                               const double *theta, double l2, int decay_bias);

/* Optimum of that objective: ridge by one Cholesky solve (kind 0), Newton
 * with backtracking (kind 1). theta [d + 1] out. Fills f_star, mu, L (the
 * extreme eigenvalues of the Hessian at the optimum). Returns 0 if found. */
int ds_syn_linear_optimum(int kind, int64_t n, int d, const float *X, const float *y, double l2,
                          int decay_bias, double *theta, double *f_star, double *mu, double *L);

#endif
