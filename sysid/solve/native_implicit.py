"""C source of the native implicit solver (:data:`ROSENBROCK23`), appended to
:data:`sysid.solve.native_solvers.SOLVER`: the Rosenbrock 2(3) pair of Shampine and
Reichelt (1997, SIAM J. Sci. Comput. 18:1), with an LU factorisation with partial pivoting
per step, and its discrete adjoint. It uses the shared part's ``Model``, ``Inputs``,
``field``, ``field_vjp``, ``moving_interval`` and ``malloc_like``.

The adjoint is that of the discrete map the forward solve computes, as autograd computes
it through :func:`sysid.solve.runge_kutta._rosenbrock23`: the step sizes and the
difference steps of the Jacobian are constants, the Jacobian is the forward difference of
field evaluations (so its derivative is the difference of their vector-Jacobian products,
no second derivatives needed), and the linear solves are differentiated exactly
(``W^-T`` solves with the same LU factors). The backward pass recomputes each accepted
step from the state at its start (the tape holds one state per step, not its stages).
"""

from __future__ import annotations

__all__ = ["ROSENBROCK23"]

ROSENBROCK23 = r"""
/* ---- Rosenbrock 2(3) of Shampine & Reichelt (1997), the steps
   sysid.solve.runge_kutta._rosenbrock23 takes: one step size shared by the batch, the
   Jacobian and the clock derivative by forward differences (one batched evaluation per
   step), LU with partial pivoting per row. ---- */

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

/* v <- A^-1 v with the factors of lu_factor_ (S A = L U, S the row swaps in order) */
static void lu_solve_(const double *a, int n, const int *piv, double *v) {
    for (int c = 0; c < n; c++) { if (piv[c] != c) { double t = v[c]; v[c] = v[piv[c]]; v[piv[c]] = t; } }
    for (int i = 1; i < n; i++) { double s = v[i]; for (int j = 0; j < i; j++) s -= a[i * n + j] * v[j]; v[i] = s; }
    for (int i = n - 1; i >= 0; i--) { double s = v[i]; for (int j = i + 1; j < n; j++) s -= a[i * n + j] * v[j]; v[i] = s / a[i * n + i]; }
}

/* v <- A^-T v = S^T L^-T U^-T v */
static void lu_solve_t_(const double *a, int n, const int *piv, double *v) {
    for (int i = 0; i < n; i++) { double s = v[i]; for (int j = 0; j < i; j++) s -= a[j * n + i] * v[j]; v[i] = s / a[i * n + i]; }
    for (int i = n - 2; i >= 0; i--) { double s = v[i]; for (int j = i + 1; j < n; j++) s -= a[j * n + i] * v[j]; v[i] = s; }
    for (int c = n - 1; c >= 0; c--) { if (piv[c] != c) { double t = v[c]; v[c] = v[piv[c]]; v[piv[c]] = t; } }
}

/* the field of row b in the interval's clock: d * f(t0 + s d, x, u(s)) */
static void clock_field(const Model *m, const Inputs *in, int iv, int b, const double *x,
                        double t0, double d, double s, double *g) {
    double u[MU];
    inputs_at(in, b, iv, s, u);
    field(m, m->p + b * m->p_stride, x, u, t0 + d * s, g);
    for (int i = 0; i < N; i++) g[i] *= d;
}

/* v^T of the clock field's derivatives at (s, x), added to gx, gp, gw (v is scaled by d) */
static void clock_vjp(const Model *m, const Inputs *in, int iv, int b, const double *x,
                      double t0, double d, double s, const double *v, double *gx, double *gp,
                      double *gw) {
    double u[MU], vd[N];
    int any = 0;
    for (int i = 0; i < N; i++) { vd[i] = v[i] * d; any |= vd[i] != 0.0; }
    if (!any) return;
    inputs_at(in, b, iv, s, u);
    field_vjp(m, x, u, t0 + d * s, vd, gx, gp, gw, NULL);
}

/* The clock derivative's time step of a step of size h starting at sigma. */
static double time_step_(double sigma, double h) {
    double eps = 1e-7 * fmax(h, 1e-3);
    return sigma + eps > 1.0 ? -eps : eps;
}

/* The difference step of state j of the Jacobian at x (forward differences). */
static void jacobian_steps_(const double *x, double *step) {
    double big = 0.0;
    for (int i = 0; i < N; i++) big = fmax(big, fabs(x[i]));
    double floor_ = fmax(1e-10 * big, 1e-300);
    for (int j = 0; j < N; j++) step[j] = 1.5e-8 * fmax(fabs(x[j]), floor_);
}

/* The stages of one step of row b from x: f0, dfdt, the factors of W = I - h D J (a, pv),
   k1, the midpoint xm and its field f1, and z2 = W^-1 (f1 - k1) (k2 = z2 + k1).
   0 if W is singular. */
static int ros_stages_(const Model *m, const Inputs *in, int iv, int b, const double *x,
                       double t0, double d, double sigma, double h, double eps,
                       double *f0, double *dfdt, double *a, int *pv, double *k1,
                       double *xm, double *f1, double *z2, double *step) {
    const double D = 1.0 / (2.0 + sqrt(2.0));
    double fm[N];
    clock_field(m, in, iv, b, x, t0, d, sigma, f0);
    clock_field(m, in, iv, b, x, t0, d, sigma + eps, fm);
    for (int i = 0; i < N; i++) dfdt[i] = (fm[i] - f0[i]) / eps;
    jacobian_steps_(x, step);
    for (int j = 0; j < N; j++) {
        memcpy(xm, x, sizeof(double) * N);
        xm[j] += step[j];
        clock_field(m, in, iv, b, xm, t0, d, sigma, fm);
        for (int i = 0; i < N; i++)
            a[i * N + j] = (i == j ? 1.0 : 0.0) - (h * D) * ((fm[i] - f0[i]) / step[j]);
    }
    if (!lu_factor_(a, N, pv)) return 0;
    for (int i = 0; i < N; i++) k1[i] = f0[i] + (h * D) * dfdt[i];
    lu_solve_(a, N, pv, k1);
    for (int i = 0; i < N; i++) xm[i] = x[i] + (0.5 * h) * k1[i];
    clock_field(m, in, iv, b, xm, t0, d, sigma + 0.5 * h, f1);
    for (int i = 0; i < N; i++) z2[i] = f1[i] - k1[i];
    lu_solve_(a, N, pv, z2);
    return 1;
}

/* Forward solve. tau (B x K); x0 (B x N); xs (B x K x N) out. With a tape (tape_x not
   NULL), each accepted step's start state (B x N) goes to tape_x, its sigma and h to
   tape_s, its interval to tape_i. Returns the accepted steps; -1: tape full; -2: max
   steps; -4: h underflow. nfe[0] receives the field evaluations. */
long rosenbrock23_forward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                          const double *x0, double rtol, double atol, long max_steps,
                          double *xs, double *tape_x, double *tape_s, int *tape_i,
                          long capacity, long *nfe) {
    const double D = 1.0 / (2.0 + sqrt(2.0)), E32 = 6.0 + sqrt(2.0);
    long BN = (long)B * N, steps = 0, evals = 0, code = 0;
    double *x = malloc_like(BN), *xn = malloc_like(BN), *lu = malloc_like(BN * N);
    double f0[N], dfdt[N], k1[N], xm[N], f1[N], z2[N], f2[N], v[N], step[N];
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
                double eps = time_step_(sigma, h), err2 = 0.0;
                int singular = 0;
                for (int b = 0; b < B && !singular; b++) {
                    const double *xb = x + b * N;
                    double *a = lu + (long)b * N * N;
                    int *pv = piv + b * N;
                    if (!ros_stages_(m, in, iv, b, xb, t0[b], d[b], sigma, h, eps, f0, dfdt,
                                     a, pv, k1, xm, f1, z2, step)) { singular = 1; break; }
                    for (int i = 0; i < N; i++) xn[b * N + i] = xb[i] + h * (z2[i] + k1[i]);
                    clock_field(m, in, iv, b, xn + b * N, t0[b], d[b], sigma + h, f2);
                    for (int i = 0; i < N; i++)
                        v[i] = f2[i] - E32 * (z2[i] + k1[i] - f1[i]) - 2.0 * (k1[i] - f0[i])
                               + (h * D) * dfdt[i];
                    lu_solve_(a, N, pv, v);
                    for (int i = 0; i < N; i++) {
                        double e = (h / 6.0) * (k1[i] - 2.0 * (z2[i] + k1[i]) + v[i]);
                        double tol = fmax(fabs(xb[i]), fabs(xn[b * N + i])) * rtol + atol;
                        err2 += (e / tol) * (e / tol);
                    }
                }
                evals += (long)B * (N + 4);
                double ratio = singular ? NAN : sqrt(err2) / sqrt((double)BN);
                if (ratio <= 1.0) {
                    if (tape_x) {
                        if (steps >= capacity) { code = -1; break; }
                        memcpy(tape_x + steps * BN, x, sizeof(double) * BN);
                        tape_s[2 * steps] = sigma;
                        tape_s[2 * steps + 1] = h;
                        tape_i[steps] = iv;
                    }
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
    free(x); free(xn); free(lu); free(t0); free(d); free(piv);
    return code == 0 ? steps : code;
}

/* The adjoint of one step of row b from x (lx: the adjoint of its end state in, of its
   start state out). Forward: x' = x + h (z2 + k1), W = I - h D J,
   k1 = W^-1 (f0 + h D dfdt), z2 = W^-1 (f1(x + h/2 k1) - k1),
   J[:, j] = (f(x + s_j e_j) - f0) / s_j, dfdt = (f(sigma + eps, x) - f0) / eps. */
static void ros_step_vjp_(const Model *m, const Inputs *in, int iv, int b, const double *x,
                          double t0, double d, double sigma, double h, double *lx,
                          double *gp, double *gw, double *a, int *pv) {
    const double D = 1.0 / (2.0 + sqrt(2.0));
    double eps = time_step_(sigma, h);
    double f0[N], dfdt[N], k1[N], xm[N], f1[N], z2[N], step[N];
    double gx[N], lk1[N], r2[N], r1[N], lf0[N], lf[N], gxm[N], xj[N];
    ros_stages_(m, in, iv, b, x, t0, d, sigma, h, eps, f0, dfdt, a, pv, k1, xm, f1, z2, step);
    memcpy(gx, lx, sizeof(double) * N);                 /* x' = x + h k2 */
    for (int i = 0; i < N; i++) { r2[i] = h * lx[i]; lk1[i] = h * lx[i]; }
    lu_solve_t_(a, N, pv, r2);                           /* adjoint of f1 - k1 */
    for (int i = 0; i < N; i++) lk1[i] -= r2[i];
    memset(gxm, 0, sizeof(gxm));
    clock_vjp(m, in, iv, b, xm, t0, d, sigma + 0.5 * h, r2, gxm, gp, gw);
    for (int i = 0; i < N; i++) { gx[i] += gxm[i]; lk1[i] += (0.5 * h) * gxm[i]; }
    memcpy(r1, lk1, sizeof(double) * N);
    lu_solve_t_(a, N, pv, r1);                           /* adjoint of f0 + h D dfdt */
    /* dJ = h D (r2 z2^T + r1 k1^T); column j moves f(x + s_j e_j) and -f0 by 1 / s_j */
    for (int i = 0; i < N; i++) lf0[i] = r1[i] - (h * D) * r1[i] / eps;
    for (int j = 0; j < N; j++) {
        double cj = (h * D) * z2[j] / step[j], ck = (h * D) * k1[j] / step[j];
        for (int i = 0; i < N; i++) { lf[i] = cj * r2[i] + ck * r1[i]; lf0[i] -= lf[i]; }
        memcpy(xj, x, sizeof(double) * N);
        xj[j] += step[j];
        clock_vjp(m, in, iv, b, xj, t0, d, sigma, lf, gx, gp, gw);
    }
    for (int i = 0; i < N; i++) lf[i] = (h * D) * r1[i] / eps;
    clock_vjp(m, in, iv, b, x, t0, d, sigma + eps, lf, gx, gp, gw);
    clock_vjp(m, in, iv, b, x, t0, d, sigma, lf0, gx, gp, gw);
    memcpy(lx, gx, sizeof(double) * N);
}

/* Discrete adjoint of rosenbrock23_forward: gxs (B x K x N) in; gx0 (B x N) out; gp (P)
   and gw accumulated. nfe[0] receives the field evaluations and products done. */
void rosenbrock23_backward(const Model *m, const Inputs *in, int B, int K, const double *tau,
                           const double *gxs, const double *tape_x, const double *tape_s,
                           const int *tape_i, long n_steps, double *gx0, double *gp,
                           double *gw, long *nfe) {
    long BN = (long)B * N, evals = 0;
    double *lx = malloc_like(BN), *t0 = malloc_like(B), *d = malloc_like(B);
    double *a = malloc_like((long)N * N);
    int pv[N];
    for (int b = 0; b < B; b++) memcpy(lx + b * N, gxs + ((long)b * K + K - 1) * N, sizeof(double) * N);
    long s = n_steps - 1;
    for (int iv = K - 2; iv >= 0; iv--) {
        moving_interval(B, K, tau, iv, t0, d);
        for (; s >= 0 && tape_i[s] == iv; s--) {
            for (int b = 0; b < B; b++)
                ros_step_vjp_(m, in, iv, b, tape_x + s * BN + b * N, t0[b], d[b],
                              tape_s[2 * s], tape_s[2 * s + 1], lx + b * N, gp, gw, a, pv);
            evals += (long)B * (2 * N + 6);
        }
        for (int b = 0; b < B; b++)
            for (int i = 0; i < N; i++) lx[b * N + i] += gxs[((long)b * K + iv) * N + i];
    }
    memcpy(gx0, lx, sizeof(double) * BN);
    nfe[0] = evals;
    free(lx); free(t0); free(d); free(a);
}
"""
