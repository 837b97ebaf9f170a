"""C source of the native implicit solver (:data:`ROSENBROCK23`), appended to
:data:`sysid.solve.native_solvers.SOLVER`: the Rosenbrock 2(3) pair of Shampine and
Reichelt (1997, SIAM J. Sci. Comput. 18:1) for forward solves (no gradients), with an LU
factorisation with partial pivoting per step. It uses the shared part's ``Model``,
``Inputs``, ``field`` and ``malloc_like``.
"""

from __future__ import annotations

__all__ = ["ROSENBROCK23"]

ROSENBROCK23 = r"""
/* ---- Rosenbrock 2(3) of Shampine & Reichelt (1997), forward only (no tape: the solves
   with gradients stay eager), the steps sysid.solve.runge_kutta._rosenbrock23 takes: one
   step size shared by the batch, the Jacobian and the clock derivative by forward
   differences (one batched evaluation per step), LU with partial pivoting per row.
   Returns the accepted steps; -2: max steps; -4: h underflow. ---- */

/* LU of a (n x n, row-major) in place with row pivots piv; 0 if singular */
static int lu_factor_(double *a, int n, int *piv) {
    for (int c = 0; c < n; c++) {
        int r = c;
        double best = fabs(a[c * n + c]);
        for (int i = c + 1; i < n; i++) if (fabs(a[i * n + c]) > best) { best = fabs(a[i * n + c]); r = i; }
        piv[c] = r;
        if (best == 0.0) return 0;
        if (r != c) for (int j = 0; j < n; j++) { double t = a[c * n + j]; a[c * n + j] = a[r * n + j]; a[r * n + j] = t; }
        for (int i = c + 1; i < n; i++) {
            double l = a[i * n + c] / a[c * n + c];
            a[i * n + c] = l;
            if (l != 0.0) for (int j = c + 1; j < n; j++) a[i * n + j] -= l * a[c * n + j];
        }
    }
    return 1;
}

static void lu_solve_(const double *a, int n, const int *piv, double *v) {
    for (int c = 0; c < n; c++) { if (piv[c] != c) { double t = v[c]; v[c] = v[piv[c]]; v[piv[c]] = t; } }
    for (int i = 1; i < n; i++) { double s = v[i]; for (int j = 0; j < i; j++) s -= a[i * n + j] * v[j]; v[i] = s; }
    for (int i = n - 1; i >= 0; i--) { double s = v[i]; for (int j = i + 1; j < n; j++) s -= a[i * n + j] * v[j]; v[i] = s / a[i * n + i]; }
}

/* the field of row b in the interval's clock: d * f(t0 + s d, x, u(s)) */
static void clock_field(const Model *m, const Inputs *in, int iv, int b, const double *x,
                        double t0, double d, double s, double *g) {
    double u[MU];
    inputs_at(in, b, iv, s, u);
    field(m, m->p + b * m->p_stride, x, u, t0 + d * s, g);
    for (int i = 0; i < N; i++) g[i] *= d;
}

long rosenbrock23_forward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                          const double *x0, double rtol, double atol, long max_steps,
                          double *xs, long *nfe) {
    const double D = 1.0 / (2.0 + sqrt(2.0)), E32 = 6.0 + sqrt(2.0);
    long BN = (long)B * N, steps = 0, evals = 0, code = 0;
    double *x = malloc_like(BN), *xn = malloc_like(BN), *f0 = malloc_like(BN);
    double *dfdt = malloc_like(BN), *k1 = malloc_like(BN), *k2 = malloc_like(BN);
    double *lu = malloc_like(BN * N), *fm = malloc_like(N), *xm = malloc_like(N);
    double *f1 = malloc_like(N), *f2 = malloc_like(N), *v = malloc_like(N);
    double *t0 = malloc_like(B), *d = malloc_like(B);
    int *piv = (int *)calloc((size_t)BN, sizeof(int));
    double h = 1.0;
    memcpy(x, x0, sizeof(double) * BN);
    for (int b = 0; b < B; b++) memcpy(xs + (long)b * K * N, x0 + b * N, sizeof(double) * N);
    for (int iv = 0; iv < K - 1; iv++) max_steps += moving_interval(B, K, tau, iv, t0, d);
    for (int iv = 0; iv < K - 1 && code == 0; iv++) {
        if (moving_interval(B, K, tau, iv, t0, d)) {
            double sigma = 0.0;
            while (sigma < 1.0 - 1e-12) {
                double proposal = h;
                if (h > 1.0 - sigma) h = 1.0 - sigma;
                double eps = 1e-7 * fmax(h, 1e-3);
                if (sigma + eps > 1.0) eps = -eps;
                double err2 = 0.0;
                int singular = 0;
                for (int b = 0; b < B; b++) {
                    const double *xb = x + b * N;
                    double *a = lu + (long)b * N * N, big = 0.0;
                    clock_field(m, in, iv, b, xb, t0[b], d[b], sigma, f0 + b * N);
                    clock_field(m, in, iv, b, xb, t0[b], d[b], sigma + eps, fm);
                    for (int i = 0; i < N; i++) dfdt[b * N + i] = (fm[i] - f0[b * N + i]) / eps;
                    for (int i = 0; i < N; i++) big = fmax(big, fabs(xb[i]));
                    double floor_ = fmax(1e-10 * big, 1e-300);
                    /* a = I - h D J, column by column */
                    for (int j = 0; j < N; j++) {
                        double step = 1.5e-8 * fmax(fabs(xb[j]), floor_);
                        memcpy(xm, xb, sizeof(double) * N);
                        xm[j] += step;
                        clock_field(m, in, iv, b, xm, t0[b], d[b], sigma, fm);
                        for (int i = 0; i < N; i++)
                            a[i * N + j] = (i == j ? 1.0 : 0.0)
                                - (h * D) * ((fm[i] - f0[b * N + i]) / step);
                    }
                    if (!lu_factor_(a, N, piv + b * N)) { singular = 1; continue; }
                    int *pv = piv + b * N;
                    double *q1 = k1 + b * N, *q2 = k2 + b * N;
                    for (int i = 0; i < N; i++) q1[i] = f0[b * N + i] + (h * D) * dfdt[b * N + i];
                    lu_solve_(a, N, pv, q1);
                    for (int i = 0; i < N; i++) xm[i] = xb[i] + (0.5 * h) * q1[i];
                    clock_field(m, in, iv, b, xm, t0[b], d[b], sigma + 0.5 * h, f1);
                    for (int i = 0; i < N; i++) q2[i] = f1[i] - q1[i];
                    lu_solve_(a, N, pv, q2);
                    for (int i = 0; i < N; i++) { q2[i] += q1[i]; xn[b * N + i] = xb[i] + h * q2[i]; }
                    clock_field(m, in, iv, b, xn + b * N, t0[b], d[b], sigma + h, f2);
                    for (int i = 0; i < N; i++)
                        v[i] = f2[i] - E32 * (q2[i] - f1[i]) - 2.0 * (q1[i] - f0[b * N + i])
                               + (h * D) * dfdt[b * N + i];
                    lu_solve_(a, N, pv, v);
                    for (int i = 0; i < N; i++) {
                        double e = (h / 6.0) * (q1[i] - 2.0 * q2[i] + v[i]);
                        double tol = fmax(fabs(xb[i]), fabs(xn[b * N + i])) * rtol + atol;
                        err2 += (e / tol) * (e / tol);
                    }
                }
                evals += (long)B * (N + 4);
                double ratio = singular ? NAN : sqrt(err2) / sqrt((double)BN);
                if (ratio <= 1.0) {
                    memcpy(x, xn, sizeof(double) * BN);
                    sigma += h;
                    steps++;
                    if (steps > max_steps) { code = -2; break; }
                }
                if (!isfinite(ratio)) h *= 0.2;
                else {
                    h *= fmin(5.0, fmax(0.2, ratio > 0 ? 0.8 * pow(ratio, -1.0 / 3.0) : 5.0));
                    if (ratio <= 1.0 && h < proposal) h = proposal;
                }
                if (h < 1e-12) { code = -4; break; }
            }
        }
        for (int b = 0; b < B; b++)
            memcpy(xs + ((long)b * K + iv + 1) * N, x + b * N, sizeof(double) * N);
    }
    nfe[0] = evals;
    free(x); free(xn); free(f0); free(dfdt); free(k1); free(k2); free(lu); free(fm); free(xm);
    free(f1); free(f2); free(v); free(t0); free(d); free(piv);
    return code == 0 ? steps : code;
}
"""
