/*
 * conv_winograd.c: 5x5 stride-1 convolutions on the CPU by Winograd's
 * minimal filtering F(2x2, 5x5) (Lavin and Gray, "Fast Algorithms for
 * Convolutional Neural Networks", CVPR 2016; the transforms below are the
 * Cook-Toom ones for the points 0, 1, -1, 2, -2 and infinity, as the wincnn
 * generator builds them).
 *
 * Why: in the small Fashion-MNIST CNN the second convolution (32 -> 64
 * channels, 5x5) is nine tenths of the step's arithmetic. As im2col + GEMM it
 * costs 25 multiply-adds per output, per input channel, in each of forward,
 * input gradient and weight gradient. F(2x2, 5x5) computes a 2x2 output tile
 * from a 6x6 input tile with 36 products per channel pair, 9 per output: the
 * three GEMMs shrink 2.78 times, at the price of cheap linear transforms.
 *
 * With d a 6x6 input tile, g a 5x5 filter and A^T (2x6), G (6x5), B^T (6x6)
 * the transforms (bt6, g6, at6 below):
 *     V = B^T d B,  U = G g G^T,  M = sum over input channels of U . V,
 *     y tile = A^T M A.
 * Over a chunk of images, for each of the 36 positions xi of a 6x6 tile,
 * M[xi] (out_c x tiles) = U[xi] (out_c x c) V[xi]^T (tiles x c): 36 GEMMs.
 * The backward is the exact adjoint of that same computation, so the
 * gradients are those of the function the forward computes:
 *     dM = A dy A^T,  dU[xi] = dM[xi] V[xi],  dV[xi] = dM[xi]^T U[xi],
 *     dx tile (scatter-added) = B dV B^T,  dW = G^T dU G.
 *
 * Layouts. Input tiles are vectors of 8 channels: a chunk's images are
 * first transposed, 8 channel planes at a time, into a zero-padded plane of
 * 8-float pixels, from which each tile's 36 vectors are read whole and its V
 * written as 36 vectors into V[xi][tile][c] (the GEMM reads it transposed).
 * Output tiles are vectors of 8 tiles of one channel, read from
 * M[xi][k][tile], the GEMM's natural output.
 *
 * Accuracy: the input transform multiplies magnitudes by up to 100 before
 * the products, so float32 rounding is larger than im2col's: measured against
 * direct loops in double (tests/test_conv.c), |error| / sum|terms| is about
 * 1e-6 for y and 3e-6 for dW and dx (im2col: 1e-7 to 3e-7), still under ten
 * units in the last place of the sums. cuDNN and oneDNN make the same trade
 * for their Winograd convolutions.
 *
 * Speed (small CNN, batch 128, 2 threads, 2-vCPU AMD EPYC): the step went
 * from 24.4 to 14.1 ms (medians of 5 runs, alternating the two builds).
 */
#include "conv_winograd.h"

#include "act.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));
/* Unaligned, aliasing access to 8 floats of a float buffer. */
typedef float v8u __attribute__((vector_size(32), aligned(4), may_alias));

#define NXI 36 /* positions of a 6x6 tile */

/* Floats of a chunk's transformed tiles (V and M) aimed for: about a core's
 * L2 cache, so the transforms' output is still there when the GEMMs read it
 * (measured on the small CNN: 128K to 1M floats within noise of each other,
 * 4M about 25% slower). */
#define DS_WINO_CHUNK_TARGET (256 * 1024)

/* Macros, not functions: a vector passed by value in a non-AVX build would
 * change the ABI (GCC warns, and -Werror stops the build). */
#define LD8(p) (*(const v8u *)(p))
#define ST8(p, v) (*(v8u *)(p) = (v))

/* ---- the 1-D transforms and their adjoints ------------------------------ */

/* o = B^T d (6 -> 6). */
static inline void bt6(const v8 d[6], v8 o[6])
{
    o[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
    o[1] = -4.0f * (d[1] + d[2]) + d[3] + d[4];
    o[2] = 4.0f * (d[1] - d[2]) - d[3] + d[4];
    o[3] = 2.0f * (d[3] - d[1]) - d[2] + d[4];
    o[4] = 2.0f * (d[1] - d[3]) - d[2] + d[4];
    o[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

/* o = B w (6 -> 6): the adjoint of bt6. */
static inline void b6(const v8 w[6], v8 o[6])
{
    o[0] = 4.0f * w[0];
    o[1] = 4.0f * (w[2] - w[1]) + 2.0f * (w[4] - w[3]) + 4.0f * w[5];
    o[2] = -5.0f * w[0] - 4.0f * (w[1] + w[2]) - w[3] - w[4];
    o[3] = w[1] - w[2] + 2.0f * (w[3] - w[4]) - 5.0f * w[5];
    o[4] = w[0] + w[1] + w[2] + w[3] + w[4];
    o[5] = w[5];
}

/* (y0, y1) = A^T m (6 -> 2). */
static inline void at6(const v8 m[6], v8 *y0, v8 *y1)
{
    *y0 = m[0] + m[1] + m[2] + m[3] + m[4];
    *y1 = m[1] - m[2] + 2.0f * (m[3] - m[4]) + m[5];
}

/* m = A (z0, z1) (2 -> 6): the adjoint of at6. */
static inline void a6(const v8 *z0, const v8 *z1, v8 m[6])
{
    m[0] = *z0;
    m[1] = *z0 + *z1;
    m[2] = *z0 - *z1;
    m[3] = *z0 + 2.0f * *z1;
    m[4] = *z0 - 2.0f * *z1;
    m[5] = *z1;
}

/* u = G g (5 -> 6), on scalars. */
static inline void g6(const float g[5], float u[6])
{
    u[0] = 0.25f * g[0];
    u[1] = -(g[0] + g[1] + g[2] + g[3] + g[4]) * (1.0f / 6.0f);
    u[2] = -(g[0] - g[1] + g[2] - g[3] + g[4]) * (1.0f / 6.0f);
    u[3] = g[0] * (1.0f / 24.0f) + g[1] * (1.0f / 12.0f) + g[2] * (1.0f / 6.0f) +
           g[3] * (1.0f / 3.0f) + g[4] * (2.0f / 3.0f);
    u[4] = g[0] * (1.0f / 24.0f) - g[1] * (1.0f / 12.0f) + g[2] * (1.0f / 6.0f) -
           g[3] * (1.0f / 3.0f) + g[4] * (2.0f / 3.0f);
    u[5] = g[4];
}

/* g = G^T w (6 -> 5): the adjoint of g6. */
static inline void gt6(const float w[6], float g[5])
{
    float s12 = w[1] + w[2], d21 = w[2] - w[1], s34 = w[3] + w[4], d34 = w[3] - w[4];
    g[0] = 0.25f * w[0] - s12 * (1.0f / 6.0f) + s34 * (1.0f / 24.0f);
    g[1] = d21 * (1.0f / 6.0f) + d34 * (1.0f / 12.0f);
    g[2] = (s34 - s12) * (1.0f / 6.0f);
    g[3] = d21 * (1.0f / 6.0f) + d34 * (1.0f / 3.0f);
    g[4] = -s12 * (1.0f / 6.0f) + s34 * (2.0f / 3.0f) + w[5];
}

/* ---- the plan: tiles, chunks and workspace ------------------------------ */

struct wino_plan {
    int th, tw, T;     /* output tiles per image: th x tw of 2x2 */
    int hp, wp;        /* the padded plane the tiles read: (2*th + 4) x (2*tw + 4) */
    int S, chunks, tc; /* images per chunk, chunks, a chunk's tiles rounded up to 8 */
    /* Floats from one tile position xi to the next in V, M and U: the
     * matrix's size plus one cache line, so that the 36 positions a tile
     * transform reads or writes do not all fall in the same cache set (the
     * sizes are multiples of 4 KiB for the usual shapes, and 36 accesses at a
     * 4 KiB stride thrash an 8-way L1). */
    size_t vs, ms, us;
    size_t v, m, plane;         /* floats per thread: V, M (or dM), one 8-channel plane */
    size_t per_thread, u, partial; /* u: U shared; partial: dU and db of one chunk */
};

#define XI_PAD 16

static struct wino_plan plan_of(const struct ds_window *g, int out_c)
{
    struct wino_plan p;
    p.th = (g->oh + 1) / 2;
    p.tw = (g->ow + 1) / 2;
    p.T = p.th * p.tw;
    p.hp = 2 * p.th + 4;
    p.wp = 2 * p.tw + 4;
    size_t per_image = (size_t)NXI * p.T * ((size_t)g->c + out_c);
    size_t s = DS_WINO_CHUNK_TARGET / per_image;
    p.S = s < 1 ? 1 : (s > (size_t)g->batch ? g->batch : (int)s);
    p.chunks = (g->batch + p.S - 1) / p.S;
    p.tc = (p.S * p.T + 7) / 8 * 8;
    p.vs = (size_t)p.tc * g->c + XI_PAD;
    p.ms = (size_t)out_c * p.tc + XI_PAD;
    p.us = (size_t)out_c * g->c + XI_PAD;
    p.v = NXI * p.vs;
    p.m = NXI * p.ms;
    p.plane = (size_t)p.hp * p.wp * 8;
    p.per_thread = p.v + p.m + p.plane;
    p.u = NXI * p.us;
    p.partial = p.u + (size_t)out_c;
    return p;
}

int ds_wino_fits(const struct ds_window *g, int out_c)
{
    return g->k == 5 && g->stride == 1 && g->c >= 8 && g->c % 8 == 0 && out_c >= 8 &&
           g->oh >= 2 && g->ow >= 2;
}

size_t ds_wino_workspace(const struct ds_window *g, int out_c, int threads)
{
    struct wino_plan p = plan_of(g, out_c);
    return p.u + (size_t)threads * p.per_thread + (size_t)p.chunks * p.partial;
}

/* ---- the transforms over a chunk ---------------------------------------- */

/* U[xi*us + f] = (G W[f] G^T)[xi] for filters f in [f0, f1), f = k*c + ci. */
static void filter_transform(size_t us, const float *W, float *U, size_t f0, size_t f1)
{
    for (size_t f = f0; f < f1; f++) {
        const float *w = W + f * 25;
        float r[5][6], col[5], u[6];
        for (int i = 0; i < 5; i++) g6(w + 5 * i, r[i]);
        for (int x = 0; x < 6; x++) {
            for (int i = 0; i < 5; i++) col[i] = r[i][x];
            g6(col, u);
            for (int y = 0; y < 6; y++) U[(size_t)(6 * y + x) * us + f] = u[y];
        }
    }
}

/* dW[f] (+)= G^T dU[.][f] G for filters f in [f0, f1) (dU[xi*us + f]). */
static void filter_adjoint(size_t us, const float *dU, float *dW, int accumulate, size_t f0,
                           size_t f1)
{
    for (size_t f = f0; f < f1; f++) {
        float r[6][5], w[6], col[6], out[5];
        for (int y = 0; y < 6; y++) {
            for (int x = 0; x < 6; x++) w[x] = dU[(size_t)(6 * y + x) * us + f];
            gt6(w, r[y]);
        }
        float *d = dW + f * 25;
        for (int j = 0; j < 5; j++) {
            for (int y = 0; y < 6; y++) col[y] = r[y][j];
            gt6(col, out);
            for (int i = 0; i < 5; i++) d[5 * i + j] = accumulate ? d[5 * i + j] + out[i] : out[i];
        }
    }
}

/* 8 channel planes [c0, c0 + 8) of one image into the padded plane of
 * 8-float pixels: plane[(yy*wp + xx)*8 + l] = x[c0 + l][yy - pad][xx - pad]. */
static void planes_in(const struct ds_window *g, const struct wino_plan *p, const float *x,
                      float *plane)
{
    memset(plane, 0, p->plane * sizeof(float));
    const int h = g->h < p->hp - g->pad ? g->h : p->hp - g->pad;
    const int w = g->w < p->wp - g->pad ? g->w : p->wp - g->pad;
    for (int l = 0; l < 8; l++) {
        const float *src = x + (size_t)l * g->h * g->w;
        for (int iy = 0; iy < h; iy++) {
            float *dst = plane + ((size_t)(iy + g->pad) * p->wp + g->pad) * 8 + l;
            const float *s = src + (size_t)iy * g->w;
            for (int ix = 0; ix < w; ix++) dst[(size_t)ix * 8] = s[ix];
        }
    }
}

/* The adjoint: dx[c0 + l][iy][ix] = plane[...] (overwritten; pixels no tile reads get 0). */
static void planes_out(const struct ds_window *g, const struct wino_plan *p, const float *plane,
                       float *dx)
{
    for (int l = 0; l < 8; l++) {
        float *dst = dx + (size_t)l * g->h * g->w;
        for (int iy = 0; iy < g->h; iy++) {
            float *d = dst + (size_t)iy * g->w;
            int yy = iy + g->pad;
            for (int ix = 0; ix < g->w; ix++) {
                int xx = ix + g->pad;
                d[ix] = yy < p->hp && xx < p->wp ? plane[((size_t)yy * p->wp + xx) * 8 + l] : 0.0f;
            }
        }
    }
}

/* V[xi][t][c] for the nb images of a chunk (tiles t = b*T + ty*tw + tx; the
 * rows t >= nb*T up to tc are zero, so the GEMMs may run over tc). */
static void input_transform(const struct ds_window *g, const struct wino_plan *p, int nb,
                            const float *x, float *V, float *plane)
{
    const int C = g->c;
    const size_t in_s = (size_t)C * g->h * g->w;
    for (int b = 0; b < nb; b++)
        for (int c0 = 0; c0 < C; c0 += 8) {
            planes_in(g, p, x + (size_t)b * in_s + (size_t)c0 * g->h * g->w, plane);
            for (int ty = 0; ty < p->th; ty++)
                for (int tx = 0; tx < p->tw; tx++) {
                    size_t t = (size_t)b * p->T + (size_t)ty * p->tw + tx;
                    v8 d[6], r[6][6], col[6], o[6];
                    for (int i = 0; i < 6; i++) {
                        const float *row = plane + ((size_t)(2 * ty + i) * p->wp + 2 * tx) * 8;
                        for (int j = 0; j < 6; j++) d[j] = LD8(row + 8 * j);
                        bt6(d, r[i]);
                    }
                    for (int xi = 0; xi < 6; xi++) {
                        for (int i = 0; i < 6; i++) col[i] = r[i][xi];
                        bt6(col, o);
                        for (int yi = 0; yi < 6; yi++)
                            ST8(V + (size_t)(6 * yi + xi) * p->vs + t * C + c0, o[yi]);
                    }
                }
        }
    size_t nt = (size_t)nb * p->T;
    if (nt < (size_t)p->tc)
        for (size_t xi = 0; xi < NXI; xi++)
            memset(V + (size_t)xi * p->vs + nt * C, 0, ((size_t)p->tc - nt) * C * sizeof(float));
}

/* dx of the chunk's images from dV[xi][t][c] (in the V buffer): each tile's
 * B dV B^T added into the padded plane, which is then written out. */
static void input_adjoint(const struct ds_window *g, const struct wino_plan *p, int nb,
                          const float *dV, float *dx, float *plane)
{
    const int C = g->c;
    const size_t in_s = (size_t)C * g->h * g->w;
    for (int b = 0; b < nb; b++)
        for (int c0 = 0; c0 < C; c0 += 8) {
            memset(plane, 0, p->plane * sizeof(float));
            for (int ty = 0; ty < p->th; ty++)
                for (int tx = 0; tx < p->tw; tx++) {
                    size_t t = (size_t)b * p->T + (size_t)ty * p->tw + tx;
                    v8 w[6], r[6][6], col[6], o[6];
                    for (int yi = 0; yi < 6; yi++) {
                        for (int xi = 0; xi < 6; xi++)
                            w[xi] = LD8(dV + (size_t)(6 * yi + xi) * p->vs + t * C + c0);
                        b6(w, r[yi]);
                    }
                    for (int j = 0; j < 6; j++) {
                        for (int yi = 0; yi < 6; yi++) col[yi] = r[yi][j];
                        b6(col, o);
                        for (int i = 0; i < 6; i++) {
                            float *at = plane + ((size_t)(2 * ty + i) * p->wp + 2 * tx + j) * 8;
                            ST8(at, LD8(at) + o[i]);
                        }
                    }
                }
            planes_out(g, p, plane, dx + (size_t)b * in_s + (size_t)c0 * g->h * g->w);
        }
}

/* A tile cursor: which image and tile a running tile index t is at. */
struct tile_pos {
    int b, ty, tx;
};

static inline void tile_next(const struct wino_plan *p, struct tile_pos *q)
{
    if (++q->tx == p->tw) {
        q->tx = 0;
        if (++q->ty == p->th) q->ty = 0, q->b++;
    }
}

/* y (and pre) of the chunk's images from M[xi][k][t]: y = act(A^T M A + bias). */
static void output_transform(const struct ds_window *g, const struct wino_plan *p, int nb,
                             int out_c, const float *M, const float *bias, enum ds_act act,
                             float *y, float *pre)
{
    const int nt = nb * p->T, P = g->oh * g->ow;
    for (int k = 0; k < out_c; k++) {
        const float bk = bias ? bias[k] : 0.0f;
        struct tile_pos q = {0, 0, 0};
        for (int t0 = 0; t0 < nt; t0 += 8) {
            v8 m[6], r0[6], r1[6], y00, y01, y10, y11;
            for (int yi = 0; yi < 6; yi++) {
                for (int xi = 0; xi < 6; xi++)
                    m[xi] = LD8(M + (size_t)(6 * yi + xi) * p->ms + (size_t)k * p->tc + t0);
                at6(m, &r0[yi], &r1[yi]);
            }
            at6(r0, &y00, &y10);
            at6(r1, &y01, &y11);
            float out[4][8];
            ST8(out[0], y00), ST8(out[1], y01), ST8(out[2], y10), ST8(out[3], y11);
            const int lanes = nt - t0 < 8 ? nt - t0 : 8;
            for (int l = 0; l < lanes; l++, tile_next(p, &q)) {
                size_t base = ((size_t)q.b * out_c + k) * P;
                for (int i = 0; i < 2; i++) {
                    int oy = 2 * q.ty + i;
                    if (oy >= g->oh) break;
                    for (int j = 0; j < 2; j++) {
                        int ox = 2 * q.tx + j;
                        if (ox >= g->ow) break;
                        size_t o = base + (size_t)oy * g->ow + ox;
                        float z = out[2 * i + j][l] + bk;
                        if (pre) pre[o] = z;
                        y[o] = ds_act_fwd(act, z);
                    }
                }
            }
        }
    }
}

/* dM[xi][k][t] = (A dz A^T)[xi] over all tc tiles (zero past the chunk's),
 * dz = dy * act'(.), and db[k] = sum of dz in tile order. (Its walk over a
 * tile's pixels repeats output_transform's: a shared helper filling offset
 * arrays measured 5% slower on the small CNN's step, so they stay apart.) */
static void grad_transform(const struct ds_window *g, const struct wino_plan *p, int nb,
                           int out_c, enum ds_act act, const float *pre, const float *y,
                           const float *dy, float *dM, float *db)
{
    const int nt = nb * p->T, P = g->oh * g->ow;
    for (int k = 0; k < out_c; k++) {
        struct tile_pos q = {0, 0, 0};
        float sum = 0.0f;
        for (int t0 = 0; t0 < p->tc; t0 += 8) {
            float z[4][8] = {{0}};
            const int lanes = nt - t0 < 0 ? 0 : (nt - t0 < 8 ? nt - t0 : 8);
            for (int l = 0; l < lanes; l++, tile_next(p, &q)) {
                size_t base = ((size_t)q.b * out_c + k) * P;
                for (int i = 0; i < 2; i++) {
                    int oy = 2 * q.ty + i;
                    if (oy >= g->oh) break;
                    for (int j = 0; j < 2; j++) {
                        int ox = 2 * q.tx + j;
                        if (ox >= g->ow) break;
                        size_t o = base + (size_t)oy * g->ow + ox;
                        float d = act == DS_ACT_NONE
                                      ? dy[o]
                                      : dy[o] * ds_act_grad(act, pre ? pre[o] : 0.0f, y[o]);
                        z[2 * i + j][l] = d;
                        sum += d;
                    }
                }
            }
            v8 z00 = LD8(z[0]), z01 = LD8(z[1]), z10 = LD8(z[2]), z11 = LD8(z[3]);
            v8 q0[6], q1[6], col[6];
            a6(&z00, &z01, q0);
            a6(&z10, &z11, q1);
            for (int xi = 0; xi < 6; xi++) {
                a6(&q0[xi], &q1[xi], col);
                for (int yi = 0; yi < 6; yi++)
                    ST8(dM + (size_t)(6 * yi + xi) * p->ms + (size_t)k * p->tc + t0, col[yi]);
            }
        }
        db[k] = sum;
    }
}

/* ---- forward and backward ----------------------------------------------- */

void ds_wino_forward(int threads, const struct ds_window *g, int out_c, const float *x,
                     const float *W, const float *bias, enum ds_act act, float *y, float *pre,
                     float *ws)
{
    const struct wino_plan p = plan_of(g, out_c);
    const int C = g->c;
    const size_t F = (size_t)out_c * C, in_s = (size_t)C * g->h * g->w,
                 out_s = (size_t)out_c * g->oh * g->ow;
    float *U = ws;
#pragma omp parallel num_threads(threads)
    {
        int nth = omp_get_num_threads(), me = omp_get_thread_num();
        filter_transform(p.us, W, U, F * me / nth, F * (me + 1) / nth);
#pragma omp barrier
        float *V = ws + p.u + (size_t)me * p.per_thread, *M = V + p.v, *plane = M + p.m;
#pragma omp for schedule(static)
        for (int ch = 0; ch < p.chunks; ch++) {
            int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
            input_transform(g, &p, nb, x + (size_t)b0 * in_s, V, plane);
            int n = (nb * p.T + 7) / 8 * 8;
            for (size_t xi = 0; xi < NXI; xi++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out_c, n, C, 1.0f,
                            U + xi * p.us, C, V + xi * p.vs, C, 0.0f, M + xi * p.ms, p.tc);
            output_transform(g, &p, nb, out_c, M, bias, act, y + (size_t)b0 * out_s,
                             pre ? pre + (size_t)b0 * out_s : NULL);
        }
    }
}

void ds_wino_backward(int threads, const struct ds_window *g, int out_c, enum ds_act act,
                      const float *x, const float *W, const float *y, const float *pre,
                      const float *dy, float *dW, float *db, float *dx, int accumulate,
                      float *ws)
{
    const struct wino_plan p = plan_of(g, out_c);
    const int C = g->c;
    const size_t F = (size_t)out_c * C, in_s = (size_t)C * g->h * g->w,
                 out_s = (size_t)out_c * g->oh * g->ow;
    float *U = ws, *partials = ws + p.u + (size_t)threads * p.per_thread;
#pragma omp parallel num_threads(threads)
    {
        int nth = omp_get_num_threads(), me = omp_get_thread_num();
        if (dx) {
            filter_transform(p.us, W, U, F * me / nth, F * (me + 1) / nth);
#pragma omp barrier
        }
        float *V = ws + p.u + (size_t)me * p.per_thread, *dM = V + p.v, *plane = dM + p.m;
#pragma omp for schedule(static)
        for (int ch = 0; ch < p.chunks; ch++) {
            int b0 = ch * p.S, nb = g->batch - b0 < p.S ? g->batch - b0 : p.S;
            float *pu = partials + (size_t)ch * p.partial;
            grad_transform(g, &p, nb, out_c, act, pre ? pre + (size_t)b0 * out_s : NULL,
                           y + (size_t)b0 * out_s, dy + (size_t)b0 * out_s, dM, pu + p.u);
            input_transform(g, &p, nb, x + (size_t)b0 * in_s, V, plane);
            int n = (nb * p.T + 7) / 8 * 8;
            for (size_t xi = 0; xi < NXI; xi++) {
                const float *dMx = dM + xi * p.ms;
                float *Vx = V + xi * p.vs;
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out_c, C, n, 1.0f, dMx,
                            p.tc, Vx, C, 0.0f, pu + xi * p.us, C);
                if (dx) /* dV overwrites V: this xi's dU has been taken */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, C, out_c, 1.0f, dMx,
                                p.tc, U + xi * p.us, C, 0.0f, Vx, C);
            }
            if (dx) input_adjoint(g, &p, nb, V, dx + (size_t)b0 * in_s, plane);
        }
        /* the chunks' partials summed in chunk order, into chunk 0's */
        enum { BLK = 1024 };
        size_t nblk = (p.partial + BLK - 1) / BLK;
#pragma omp for schedule(static)
        for (size_t bk = 0; bk < nblk; bk++) {
            size_t i0 = bk * BLK, i1 = i0 + BLK < p.partial ? i0 + BLK : p.partial;
            for (int ch = 1; ch < p.chunks; ch++) {
                const float *pc = partials + (size_t)ch * p.partial;
                for (size_t i = i0; i < i1; i++) partials[i] += pc[i];
            }
        }
        filter_adjoint(p.us, partials, dW, accumulate, F * me / nth, F * (me + 1) / nth);
        if (me == 0)
            for (int k = 0; k < out_c; k++)
                db[k] = accumulate ? db[k] + partials[p.u + k] : partials[p.u + k];
    }
}
