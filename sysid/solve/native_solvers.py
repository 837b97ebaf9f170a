"""C source of the native hot path that every model shares (:data:`SOLVER`): the residual
network's forward and backward loops (one per activation), the hybrid field with its
vector-Jacobian product, the interval-by-interval Dormand-Prince solver with
first-same-as-last reuse and the classical Runge-Kutta solver, each with its discrete
adjoint, and the forward-only Rosenbrock 2(3) solver (:mod:`sysid.solve.native_implicit`).
It is compiled after the model's part
(:func:`sysid.solve.native_source.field_source`), whose macros (``N``, ``P``, ``M_IN``, the
network's shape) and functions (``physics``, ``physics_vjp``) it uses.
"""

from __future__ import annotations

from .native_implicit import ROSENBROCK23

__all__ = ["SOLVER"]

SOLVER = r"""
/* ---- the residual network: out_scale * net((xu[READ] - shift) / scale) into WRITE, where
   xu is [states, inputs] ---- */
static double act(double a) {
#if ACT == 0
    return tanh(a);
#elif ACT == 1
    return a > 20.0 ? a : log1p(exp(a));
#elif ACT == 2
    return a / (1.0 + exp(-a));
#else
    return 0.5 * a * (1.0 + erf(a * 0.70710678118654752440));
#endif
}
/* the slope at a, given act(a) (y) */
static double act_slope(double a, double y) {
#if ACT == 0
    (void)a; return 1.0 - y * y;
#elif ACT == 1
    (void)y; return a > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-a));
#elif ACT == 2
    (void)y; double s = 1.0 / (1.0 + exp(-a)); return s * (1.0 + a * (1.0 - s));
#else
    (void)y; return 0.5 * (1.0 + erf(a * 0.70710678118654752440))
           + a * exp(-0.5 * a * a) * 0.39894228040143267794;
#endif
}

/* weights w: per layer W (out x in, row-major, torch's layout) then b (out); wt: the same
   with each W transposed (in x out), so that the forward's inner loop runs over
   independent outputs (no chain of dependent additions: the compiler vectorises it). Each
   output is still summed in the order of the inputs, as the row-major loop would. */
static void net_forward(const double *xu, const double *wt, const double *shift,
                        const double *scale, const double *out_scale, double *f,
                        double *pre /* sum of widths after the input, or NULL */,
                        double *post /* the hidden layers' activations, or NULL */) {
#if HAS_NET
    double h[MAXW], g[MAXW];
    int n_in = WIDTHS[0];
    for (int i = 0; i < n_in; i++) h[i] = (xu[READ[i]] - shift[i]) / scale[i];
    const double *wl = wt;
    int off = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        int n_out = WIDTHS[l + 1];
        const double *WT = wl, *b = wl + n_out * n_in;
        for (int o = 0; o < n_out; o++) g[o] = b[o];
        for (int i = 0; i < n_in; i++) {
            const double hi = h[i], *row = WT + i * n_out;
            for (int o = 0; o < n_out; o++) g[o] += row[o] * hi;
        }
        if (pre) memcpy(pre + off, g, sizeof(double) * n_out);
        if (l < N_LAYERS - 1) {
            for (int o = 0; o < n_out; o++) h[o] = act(g[o]);
            if (post) memcpy(post + off, h, sizeof(double) * n_out);
        } else memcpy(h, g, sizeof(double) * n_out);
        off += n_out;
        wl = b + n_out;
        n_in = n_out;
    }
    for (int k = 0; k < N_WRITE; k++) f[WRITE[k]] += h[OUTOF[k]] * out_scale[k];
#else
    (void)xu; (void)wt; (void)shift; (void)scale; (void)out_scale; (void)f; (void)pre; (void)post;
#endif
}

/* v^T d(net)/dxu added to gxu, v^T d(net)/dw added to gw; the network's output added to f
   (NULL: not wanted) */
static void net_vjp(const double *xu, const double *w, const double *wt, const double *shift,
                    const double *scale, const double *out_scale, const double *v, double *gxu,
                    double *gw, double *f) {
#if HAS_NET
    double pre[PRE_TOTAL], post[PRE_TOTAL], hin[MAXW], d[MAXW], dn[MAXW];
    double dummy[N];
    if (!f) { memset(dummy, 0, sizeof(dummy)); f = dummy; }
    net_forward(xu, wt, shift, scale, out_scale, f, pre, post);
    /* offsets of each layer's weights and pre-activations */
    int woff[N_LAYERS + 1], poff[N_LAYERS + 1];
    woff[0] = 0; poff[0] = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        woff[l + 1] = woff[l] + WIDTHS[l + 1] * WIDTHS[l] + WIDTHS[l + 1];
        poff[l + 1] = poff[l] + WIDTHS[l + 1];
    }
    int n_out = WIDTHS[N_LAYERS];
    for (int k = 0; k < n_out; k++) d[k] = 0.0;
    for (int k = 0; k < N_WRITE; k++) d[OUTOF[k]] += v[WRITE[k]] * out_scale[k];
    for (int l = N_LAYERS - 1; l >= 0; l--) {
        int n_in = WIDTHS[l];
        n_out = WIDTHS[l + 1];
        /* the layer's input */
        if (l == 0) for (int i = 0; i < n_in; i++) hin[i] = (xu[READ[i]] - shift[i]) / scale[i];
        else memcpy(hin, post + poff[l - 1], sizeof(double) * n_in);
        const double *W = w + woff[l];
        double *gW = gw + woff[l], *gb = gW + n_out * n_in;
        for (int o = 0; o < n_out; o++) {
            gb[o] += d[o];
            for (int i = 0; i < n_in; i++) gW[o * n_in + i] += d[o] * hin[i];
        }
        /* dn = W^T d, each element summed over the outputs in order; the inner loop runs
           over independent inputs */
        for (int i = 0; i < n_in; i++) dn[i] = 0.0;
        for (int o = 0; o < n_out; o++) {
            const double dv = d[o], *row = W + o * n_in;
            for (int i = 0; i < n_in; i++) dn[i] += row[i] * dv;
        }
        if (l > 0) for (int i = 0; i < n_in; i++)
            d[i] = dn[i] * act_slope(pre[poff[l - 1] + i], post[poff[l - 1] + i]);
        else for (int i = 0; i < n_in; i++) gxu[READ[i]] += dn[i] / scale[i];
    }
#else
    (void)xu; (void)w; (void)wt; (void)shift; (void)scale; (void)out_scale; (void)v; (void)gxu;
    (void)gw; (void)f;
#endif
}
"""

SOLVER += r"""
/* ---- the hybrid field: physics (states floored where declared positive) + network ---- */
typedef struct {
    const double *p, *w, *shift, *scale, *out_scale, *wt;   /* wt: see net_forward */
    long p_stride;   /* 0: one parameter vector; P: row b's own at p + b * P (forward only) */
} Model;

#define MU (M_IN > 0 ? M_IN : 1)
/* The inputs along each interval of a solve, as InputSignal.on_intervals gives them:
   u = start + sigma * rise (B x (K - 1) x M_IN each; rise NULL for a held input). */
typedef struct {
    const double *start, *rise;
    int K;
} Inputs;

static void inputs_at(const Inputs *in, int b, int iv, double sigma, double *u) {
#if M_IN > 0
    long at = ((long)b * (in->K - 1) + iv) * M_IN;
    if (in->rise) for (int j = 0; j < M_IN; j++) u[j] = in->start[at + j] + sigma * in->rise[at + j];
    else for (int j = 0; j < M_IN; j++) u[j] = in->start[at + j];
#else
    (void)in; (void)b; (void)iv; (void)sigma; u[0] = 0.0;
#endif
}

static void field(const Model *m, const double *p, const double *x, const double *u, double tt,
                  double *f) {
    double xf[N], xu[N + MU];
    for (int i = 0; i < N; i++) {
        xf[i] = FLOORED[i] && x[i] < FLOOR ? FLOOR : x[i];
        xu[i] = x[i];
    }
    for (int j = 0; j < M_IN; j++) xu[N + j] = u[j];
    physics(xf, u, tt, p, f);
    net_forward(xu, m->wt, m->shift, m->scale, m->out_scale, f, NULL, NULL);
}

/* v^T df/dx added to gx, v^T df/dp to gp, v^T df/dw to gw (inputs are data: no gradient) */
static void field_vjp(const Model *m, const double *x, const double *u, double tt,
                      const double *v, double *gx, double *gp, double *gw,
                      double *f /* the field's value, or NULL: not wanted */) {
    double xf[N], gxf[N], gpp[P > 0 ? P : 1], xu[N + MU], gxu[N + MU];
    for (int i = 0; i < N; i++) {
        xf[i] = FLOORED[i] && x[i] < FLOOR ? FLOOR : x[i];
        xu[i] = x[i];
    }
    for (int j = 0; j < M_IN; j++) xu[N + j] = u[j];
    physics_vjp(xf, u, tt, m->p, v, gxf, gpp);
    for (int i = 0; i < N; i++) if (!(FLOORED[i] && x[i] < FLOOR)) gx[i] += gxf[i];
    for (int k = 0; k < P; k++) gp[k] += gpp[k];
    memset(gxu, 0, sizeof(gxu));
    if (f) physics(xf, u, tt, m->p, f);
    net_vjp(xu, m->w, m->wt, m->shift, m->scale, m->out_scale, v, gxu, gw, f);
    for (int i = 0; i < N; i++) gx[i] += gxu[i];
}

static const double C_[7] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
static const double A_[7][6] = {
    {0}, {1.0 / 5}, {3.0 / 40, 9.0 / 40}, {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
    {35.0 / 384, 0.0, 500.0 / 1113, 125.0 / 192, -2187.0 / 6784, 11.0 / 84}};
static const double E_[7] = {71.0 / 57600, 0.0, -71.0 / 16695, 71.0 / 1920,
                             -17253.0 / 339200, 22.0 / 525, -1.0 / 40};

/* all segments' field at stage inputs xi (B x N), times t0 + s * d, scaled by d */
static void stage(const Model *m, const Inputs *in, int iv, int B, const double *xi,
                  const double *t0, const double *d, double s, double *k, double *fphys) {
    double u[MU];
    for (int b = 0; b < B; b++) {
        double tt = t0[b] + d[b] * s;
        inputs_at(in, b, iv, s, u);
        field(m, m->p + b * m->p_stride, xi + b * N, u, tt, fphys + b * N);
        for (int i = 0; i < N; i++) k[b * N + i] = fphys[b * N + i] * d[b];
    }
}

/* interval iv's start times t0 and lengths d (B each); whether any row moves */
static int moving_interval(int B, int K, const double *tau, int iv, double *t0, double *d) {
    int mv = 0;
    for (int b = 0; b < B; b++) {
        t0[b] = tau[b * K + iv];
        d[b] = tau[b * K + iv + 1] - tau[b * K + iv];
        mv |= d[b] != 0.0;
    }
    return mv;
}

/* Forward solve. tau (B x K); x0 (B x N); xs (B x K x N) out. The tape holds, per accepted
   step: the interval, sigma at its start, h, and the 7 stage inputs (7 x B x N), plus a flag
   for whether its first stage was evaluated (1) or reused (0).
   Returns the number of accepted steps; -1: tape full; -2: max steps; -3: h underflow with
   a non-finite error; -4: h underflow. nfe[0] receives the field evaluations. reuse: the
   derivative at an interval's end is the next one's first stage (not for held inputs,
   which may jump at the samples). */
long dopri5_forward(const Model *m, const Inputs *in, int reuse, int B, int K,
                    const double *tau, const double *x0,
                    double rtol, double atol, long max_steps, double *xs, double *tape_x,
                    double *tape_s, int *tape_i, long capacity, long *nfe) {
    long BN = (long)B * N, steps = 0, n_steps = 0, evals = 0;
    double *x = malloc_like(BN), *xn = malloc_like(BN), *xi = malloc_like(7 * BN);
    double *k = malloc_like(7 * BN), *fp = malloc_like(7 * BN), *fend = malloc_like(BN);
    double *t0 = malloc_like(B), *d = malloc_like(B);
    int have_fend = 0;
    double h = 1.0;
    long code = 0;
    memcpy(x, x0, sizeof(double) * BN);
    for (int b = 0; b < B; b++) memcpy(xs + (long)b * K * N, x0 + b * N, sizeof(double) * N);
    for (int iv = 0; iv < K - 1; iv++) max_steps += moving_interval(B, K, tau, iv, t0, d);
    for (int iv = 0; iv < K - 1 && code == 0; iv++) {
        if (moving_interval(B, K, tau, iv, t0, d)) {
            double sigma = 0.0;
            int fresh = 0;
            if (have_fend && reuse) {
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < N; i++) k[b * N + i] = fend[b * N + i] * d[b];
            } else {
                stage(m, in, iv, B, x, t0, d, 0.0, k, fp);
                evals++;
                fresh = 1;
            }
            while (sigma < 1.0 - 1e-12) {
                double proposal = h;
                if (h > 1.0 - sigma) h = 1.0 - sigma;
                memcpy(xi, x, sizeof(double) * BN);
                for (int s = 1; s < 7; s++) {
                    double *xs_ = xi + s * BN;
                    for (long q = 0; q < BN; q++) {
                        double v = x[q];
                        for (int j = 0; j < s; j++)
                            if (A_[s][j] != 0.0) v = v + (h * A_[s][j]) * k[j * BN + q];
                        xs_[q] = v;
                    }
                    stage(m, in, iv, B, xs_, t0, d, sigma + C_[s] * h, k + s * BN, fp + s * BN);
                    evals++;
                }
                double err2 = 0.0;
                for (long q = 0; q < BN; q++) {
                    double v = x[q];
                    for (int j = 0; j < 6; j++)
                        if (A_[6][j] != 0.0) v = v + (h * A_[6][j]) * k[j * BN + q];
                    xn[q] = v;
                    double e = k[q] * (h * E_[0]);
                    for (int j = 1; j < 7; j++) if (E_[j] != 0.0) e = e + (h * E_[j]) * k[j * BN + q];
                    double tol = fmax(fabs(x[q]), fabs(v)) * rtol + atol;
                    err2 += (e / tol) * (e / tol);
                }
                double ratio = sqrt(err2) / sqrt((double)BN);
                if (ratio <= 1.0) {
                    if (n_steps >= capacity) { code = -1; break; }
                    memcpy(tape_x + n_steps * 7 * BN, xi, sizeof(double) * 7 * BN);
                    tape_s[2 * n_steps] = sigma;
                    tape_s[2 * n_steps + 1] = h;
                    tape_i[2 * n_steps] = iv;
                    tape_i[2 * n_steps + 1] = fresh;
                    n_steps++;
                    fresh = 0;
                    memcpy(x, xn, sizeof(double) * BN);
                    sigma += h;
                    memcpy(k, k + 6 * BN, sizeof(double) * BN);
                    memcpy(fend, fp + 6 * BN, sizeof(double) * BN);
                    have_fend = 1;
                    steps++;
                    if (steps > max_steps) { code = -2; break; }
                }
                if (!isfinite(ratio)) h *= 0.2;
                else {
                    h *= fmin(10.0, fmax(0.2, ratio > 0 ? 0.9 * pow(ratio, -0.2) : 10.0));
                    if (ratio <= 1.0 && h < proposal) h = proposal;
                }
                if (h < 1e-10) { code = isfinite(ratio) ? -4 : -3; break; }
            }
        }
        for (int b = 0; b < B; b++)
            memcpy(xs + ((long)b * K + iv + 1) * N, x + b * N, sizeof(double) * N);
    }
    nfe[0] = evals;
    free(x); free(xn); free(xi); free(k); free(fp); free(fend); free(t0); free(d);
    return code == 0 ? n_steps : code;
}

/* Discrete adjoint of dopri5_forward: gxs (B x K x N) in; gx0 (B x N), gp (P), gw out
   (gp and gw accumulated). nfe[0] receives the vector-Jacobian products done. */
void dopri5_backward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                     const double *gxs,
                     const double *tape_x, const double *tape_s, const int *tape_i,
                     long n_steps, double *gx0, double *gp, double *gw, long *nfe) {
    long BN = (long)B * N, evals = 0;
    double *lx = malloc_like(BN), *lk = malloc_like(7 * BN), *lxi = malloc_like(BN);
    double *carry = malloc_like(BN);   /* adjoint of the reused first stage, physical f */
    double *t0 = malloc_like(B), *d = malloc_like(B), *v = malloc_like(N), u[MU];
    int have_carry = 0;
    for (int b = 0; b < B; b++) memcpy(lx + b * N, gxs + ((long)b * K + K - 1) * N, sizeof(double) * N);
    long s = n_steps - 1;
    for (int iv = K - 2; iv >= 0; iv--) {
        moving_interval(B, K, tau, iv, t0, d);
        for (; s >= 0 && tape_i[2 * s] == iv; s--) {
            const double *xi = tape_x + s * 7 * BN;
            double sigma = tape_s[2 * s], h = tape_s[2 * s + 1];
            memset(lk, 0, sizeof(double) * 7 * BN);
            for (int j = 0; j < 6; j++)
                if (A_[6][j] != 0.0)
                    for (long q = 0; q < BN; q++) lk[j * BN + q] = (h * A_[6][j]) * lx[q];
            /* stage 6's output was reused as the next step's first stage (physical f) */
            for (int j = 6; j >= 0; j--) {
                if (j == 0 && !tape_i[2 * s + 1]) break;        /* reused: carried back */
                for (int b = 0; b < B; b++) {
                    int any = 0;
                    for (int i = 0; i < N; i++) {
                        v[i] = lk[j * BN + b * N + i] * d[b];
                        if (j == 6 && have_carry) v[i] += carry[b * N + i];
                        any |= v[i] != 0.0;
                    }
                    memset(lxi + b * N, 0, sizeof(double) * N);
                    if (any) {
                        inputs_at(in, b, iv, sigma + C_[j] * h, u);
                        field_vjp(m, xi + j * BN + b * N, u, t0[b] + d[b] * (sigma + C_[j] * h),
                                  v, lxi + b * N, gp, gw, NULL);
                    }
                }
                evals++;
                for (long q = 0; q < BN; q++) lx[q] += lxi[q];
                for (int l = 0; l < j; l++)
                    if (A_[j][l] != 0.0)
                        for (long q = 0; q < BN; q++) lk[l * BN + q] += (h * A_[j][l]) * lxi[q];
                if (j == 6) have_carry = 0;
            }
            if (!tape_i[2 * s + 1]) {
                /* first stage reused: from the previous step of this interval (its stage 6,
                   scaled by the same d) or from the last step of an earlier interval */
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < N; i++) carry[b * N + i] = lk[b * N + i] * d[b];
                have_carry = 1;
            }
        }
        for (int b = 0; b < B; b++)
            for (int i = 0; i < N; i++) lx[b * N + i] += gxs[((long)b * K + iv) * N + i];
    }
    memcpy(gx0, lx, sizeof(double) * BN);
    nfe[0] = evals;
    free(lx); free(lk); free(lxi); free(carry); free(t0); free(d); free(v);
}
"""

SOLVER = "#include <stdlib.h>\n#define malloc_like(n) ((double *)calloc((size_t)(n), sizeof(double)))\n" + SOLVER

SOLVER += r"""
/* One field evaluation and its vector-Jacobian product on B states (the micro-benchmark's
   unit, and a check of the generated derivatives), inputs u (B x max(M_IN, 1)): f (B x N) out; gx (B x N), gp (P), gw
   accumulated with the cotangent v (B x N). */
void field_eval_vjp(const Model *m, int B, const double *x, const double *u, const double *tt,
                    const double *v, double *f, double *gx, double *gp, double *gw) {
    for (int b = 0; b < B; b++) {
        field_vjp(m, x + b * N, u + b * MU, tt[b], v + b * N, gx + b * N, gp, gw, f + b * N);
    }
}
"""

SOLVER += r"""
/* ---- classical Runge-Kutta, ``substeps`` fixed steps per moving interval, as
   sysid.solve.runge_kutta._rk4 takes them. tape_x receives the 4 stage inputs of every
   step (moving intervals x substeps x 4 x B x N). Returns the field evaluations. ---- */

long rk4_forward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                 const double *x0, int substeps, double *xs, double *tape_x) {
    long BN = (long)B * N, evals = 0;
    double *x = malloc_like(BN), *k = malloc_like(4 * BN), *fp = malloc_like(BN);
    double *t0 = malloc_like(B), *d = malloc_like(B);
    double *tape = tape_x, h = 1.0 / substeps;
    memcpy(x, x0, sizeof(double) * BN);
    for (int b = 0; b < B; b++) memcpy(xs + (long)b * K * N, x0 + b * N, sizeof(double) * N);
    for (int iv = 0; iv < K - 1; iv++) {
        if (moving_interval(B, K, tau, iv, t0, d)) {
            for (int i = 0; i < substeps; i++, tape += 4 * BN) {
                double s = i * h;
                memcpy(tape, x, sizeof(double) * BN);
                stage(m, in, iv, B, tape, t0, d, s, k, fp);
                for (long q = 0; q < BN; q++) tape[BN + q] = x[q] + (h / 2) * k[q];
                stage(m, in, iv, B, tape + BN, t0, d, s + h / 2, k + BN, fp);
                for (long q = 0; q < BN; q++) tape[2 * BN + q] = x[q] + (h / 2) * k[BN + q];
                stage(m, in, iv, B, tape + 2 * BN, t0, d, s + h / 2, k + 2 * BN, fp);
                for (long q = 0; q < BN; q++) tape[3 * BN + q] = x[q] + h * k[2 * BN + q];
                stage(m, in, iv, B, tape + 3 * BN, t0, d, s + h, k + 3 * BN, fp);
                for (long q = 0; q < BN; q++)
                    x[q] = x[q] + (h / 6) * (k[q] + 2 * k[BN + q] + 2 * k[2 * BN + q] + k[3 * BN + q]);
                evals += 4;
            }
        }
        for (int b = 0; b < B; b++)
            memcpy(xs + ((long)b * K + iv + 1) * N, x + b * N, sizeof(double) * N);
    }
    free(x); free(k); free(fp); free(t0); free(d);
    return evals;
}

/* The discrete adjoint of rk4_forward: gxs (B x K x N) in; gx0 (B x N) out; gp, gw
   accumulated. */
void rk4_backward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                  const double *gxs, const double *tape_x, long n_steps, int substeps,
                  double *gx0, double *gp, double *gw) {
    /* stage j's time, in h, and its weight on k[j - 1] (the same numbers in rk4) */
    static const double S_[4] = {0.0, 0.5, 0.5, 1.0};
    long BN = (long)B * N;
    double *lx = malloc_like(BN), *lk = malloc_like(4 * BN), *lxi = malloc_like(BN);
    double *t0 = malloc_like(B), *d = malloc_like(B), v[N], u[MU], h = 1.0 / substeps;
    const double *tape = tape_x + n_steps * 4 * BN;
    for (int b = 0; b < B; b++) memcpy(lx + b * N, gxs + ((long)b * K + K - 1) * N, sizeof(double) * N);
    for (int iv = K - 2; iv >= 0; iv--) {
        if (moving_interval(B, K, tau, iv, t0, d)) {
            for (int i = substeps - 1; i >= 0; i--) {
                tape -= 4 * BN;
                double s = i * h;
                for (long q = 0; q < BN; q++) {
                    lk[q] = lk[3 * BN + q] = (h / 6) * lx[q];
                    lk[BN + q] = lk[2 * BN + q] = (h / 6) * 2 * lx[q];
                }
                for (int j = 3; j >= 0; j--) {
                    for (int b = 0; b < B; b++) {
                        for (int c = 0; c < N; c++) v[c] = lk[j * BN + b * N + c] * d[b];
                        memset(lxi + b * N, 0, sizeof(double) * N);
                        inputs_at(in, b, iv, s + S_[j] * h, u);
                        field_vjp(m, tape + j * BN + b * N, u, t0[b] + d[b] * (s + S_[j] * h),
                                  v, lxi + b * N, gp, gw, NULL);
                    }
                    for (long q = 0; q < BN; q++) {
                        lx[q] += lxi[q];
                        if (j > 0) lk[(j - 1) * BN + q] += (S_[j] * h) * lxi[q];
                    }
                }
            }
        }
        for (int b = 0; b < B; b++)
            for (int c = 0; c < N; c++) lx[b * N + c] += gxs[((long)b * K + iv) * N + c];
    }
    memcpy(gx0, lx, sizeof(double) * BN);
    free(lx); free(lk); free(lxi); free(t0); free(d);
}
"""

SOLVER += ROSENBROCK23
