"""C source of the native hot path: a hybrid field, its vector-Jacobian product, and the
interval-by-interval Dormand-Prince solver with its discrete adjoint.

:func:`field_source` writes the model's part: the physics (SymPy, through ``sympy.ccode``
after a common-subexpression elimination), its derivatives in the states and the physical
parameters (SymPy differentiates), and the residual network (fixed loops per activation).
:data:`SOLVER` is the part every model shares. Nothing here compiles or runs code;
:mod:`sysid.solve.native` does.
"""

from __future__ import annotations

import sympy as sp
from torch import nn

from ..model.field import _FLOOR, _with_time
from ..model.hybrid import t as TIME
from ..model.residual import _ACTIVATIONS as _ACTIVATION_CLASSES

__all__ = ["Unsupported", "field_source", "SOLVER"]

# The functions the C printer writes as C99 <math.h> calls (or as ternaries: Piecewise,
# Heaviside); anything else makes the model unsupported here and the eager path runs it.
_SUPPORTED = (sp.Add, sp.Mul, sp.Pow, sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.asin,
              sp.acos, sp.atan, sp.sinh, sp.cosh, sp.tanh, sp.asinh, sp.acosh, sp.atanh,
              sp.Abs, sp.Piecewise, sp.Max, sp.Min, sp.erf, sp.erfc, sp.Heaviside, sp.sign,
              sp.atan2, sp.functions.elementary.piecewise.ExprCondPair)
_ACTIVATIONS = {"tanh": 0, "softplus": 1, "silu": 2, "gelu": 3}


class Unsupported(Exception):
    """The model uses something the native path does not generate; the eager path runs."""


def _check(exprs) -> None:
    for e in exprs:
        for node in sp.preorder_traversal(e):
            if isinstance(node, (sp.Symbol, sp.Number, sp.NumberSymbol)) or node.is_Relational \
                    or isinstance(node, (sp.And, sp.Or, sp.Not, sp.logic.boolalg.BooleanAtom)):
                continue
            if isinstance(node, (sp.Derivative, sp.DiracDelta)) \
                    or not isinstance(node, _SUPPORTED):
                raise Unsupported(f"{type(node).__name__} in {e}")


def _zero_deltas(expr):
    # torch's gradients of sign, Heaviside, floor and ceiling are zero: so are these
    return expr.replace(lambda e: isinstance(e, sp.DiracDelta), lambda e: sp.S.Zero)


def _code(assignments, constants) -> str:
    """C statements for ``[(target, expr)]`` after one CSE over all of them; Float atoms
    become named constants written with Python's round-trip repr."""
    replaced = []
    for target, expr in assignments:
        for f in expr.atoms(sp.Float):
            constants.setdefault(float(f), sp.Symbol(f"_c{len(constants)}"))
        floats = {f: constants[float(f)] for f in expr.atoms(sp.Float)}
        replaced.append((target, expr.xreplace(floats)))
    subs, reduced = sp.cse([e for _, e in replaced], symbols=sp.numbered_symbols("_s"))
    lines = [f"    const double {s} = {sp.ccode(v)};" for s, v in subs]
    lines += [f"    {target} = {sp.ccode(e)};" for (target, _), e in zip(replaced, reduced)]
    return "\n".join(lines)


def field_source(field) -> str:
    """The model's C functions ``physics``, ``physics_vjp`` and the network constants."""
    model = field.model
    if model.inputs:
        raise Unsupported("models with inputs")
    states, params = list(model.states), list(model.parameters)
    rhs = [sp.sympify(e) for e in model.rhs()]
    time = _with_time([TIME], rhs)[0]          # the user's own t, as HybridField uses it
    _check(rhs)
    xs = sp.symbols(f"x0:{len(states)}", real=True)
    ps = sp.symbols(f"p0:{len(params)}", real=True)
    tt = sp.Symbol("tt", real=True)
    table = {**dict(zip(states, xs)), **dict(zip(params, ps)), time: tt}
    f = [e.xreplace(table) for e in rhs]
    v = sp.symbols(f"v0:{len(states)}", real=True)
    gx = [_zero_deltas(sum(vi * sp.diff(fi, xj) for vi, fi in zip(v, f))) for xj in xs]
    gp = [_zero_deltas(sum(vi * sp.diff(fi, pk) for vi, fi in zip(v, f))) for pk in ps]
    _check(gx + gp)
    constants: dict = {}
    body_f = _code([(f"f[{i}]", e) for i, e in enumerate(f)], constants)
    body_v = _code([(f"gx[{j}]", e) for j, e in enumerate(gx)]
                   + [(f"gp[{k}]", e) for k, e in enumerate(gp)], constants)
    unpack = "\n".join(f"    const double x{i} = x[{i}];" for i in range(len(xs)))
    unpack += "\n" + "\n".join(f"    const double p{k} = p[{k}];" for k in range(len(ps)))
    unpack_v = "\n".join(f"    const double v{i} = v[{i}];" for i in range(len(v)))
    consts = "\n".join(f"static const double {name} = {value!r};"
                       for value, name in constants.items())
    floored = [False] * len(states) if field._floored is None else field._floored.tolist()
    net = field.residual
    if net is None:
        shape = "#define HAS_NET 0\n#define N_LAYERS 0\n#define ACT 0\n#define N_READ 0\n" \
                "#define MAXW 1\n#define PRE_TOTAL 1\n" \
                "#define N_WRITE 0\nstatic const int WIDTHS[1] = {0};\n" \
                "static const int READ[1] = {0};\nstatic const int WRITE[1] = {0};\n"
    else:
        names = {cls: name for name, cls in _ACTIVATION_CLASSES.items()}
        # depth 0 has no activation: any value of ACT will do
        activation = names.get(type(net.net[1]), "unknown") if len(net.net) > 1 else "tanh"
        if activation not in _ACTIVATIONS or getattr(net.net[1], "approximate", "none") != "none":
            raise Unsupported(f"activation {type(net.net[1]).__name__}")
        linears = [layer for layer in net.net if isinstance(layer, nn.Linear)]
        widths = [linears[0].in_features] + [layer.out_features for layer in linears]
        read, write = net.read_index.tolist(), net.write_index.tolist()
        shape = (f"#define HAS_NET 1\n#define N_LAYERS {len(linears)}\n"
                 f"#define MAXW {max(widths)}\n#define PRE_TOTAL {sum(widths[1:])}\n"
                 f"#define ACT {_ACTIVATIONS[activation]}\n#define N_READ {len(read)}\n"
                 f"#define N_WRITE {len(write)}\n"
                 f"static const int WIDTHS[{len(widths)}] = {{{', '.join(map(str, widths))}}};\n"
                 f"static const int READ[{len(read)}] = {{{', '.join(map(str, read))}}};\n"
                 f"static const int WRITE[{len(write)}] = {{{', '.join(map(str, write))}}};\n")
        if any(r >= len(states) for r in read):
            raise Unsupported("a network that reads inputs")
    return f"""#include <math.h>
#include <string.h>
#define N {len(states)}
#define P {len(params)}
#define FLOOR {_FLOOR!r}   /* HybridField's floor of positive states */
static const int FLOORED[N] = {{{', '.join('1' if b else '0' for b in floored)}}};
{shape}{consts}

static void physics(const double *x, double tt, const double *p, double *f) {{
{unpack}
    (void)tt; (void)p;
{body_f}
}}

/* gx = v^T df/dx, gp = v^T df/dp at (x, tt, p) (overwritten) */
static void physics_vjp(const double *x, double tt, const double *p, const double *v,
                        double *gx, double *gp) {{
{unpack}
{unpack_v}
    (void)tt; (void)p; (void)gp;
{body_v}
}}
"""


SOLVER = r"""
/* ---- the residual network: out_scale * net((x[READ] - shift) / scale) into WRITE ---- */
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
static double act_slope(double a) {
#if ACT == 0
    double t = tanh(a); return 1.0 - t * t;
#elif ACT == 1
    return a > 20.0 ? 1.0 : 1.0 / (1.0 + exp(-a));
#elif ACT == 2
    double s = 1.0 / (1.0 + exp(-a)); return s * (1.0 + a * (1.0 - s));
#else
    return 0.5 * (1.0 + erf(a * 0.70710678118654752440))
           + a * exp(-0.5 * a * a) * 0.39894228040143267794;
#endif
}

/* weights: per layer W (out x in, row-major, torch's layout) then b (out) */
static void net_forward(const double *x, const double *w, const double *shift,
                        const double *scale, const double *out_scale, double *f,
                        double *pre /* sum of widths after the input, or NULL */) {
#if HAS_NET
    double h[MAXW], g[MAXW];
    int n_in = WIDTHS[0];
    for (int i = 0; i < n_in; i++) h[i] = (x[READ[i]] - shift[i]) / scale[i];
    const double *wl = w;
    double *pl = pre;
    for (int l = 0; l < N_LAYERS; l++) {
        int n_out = WIDTHS[l + 1];
        const double *W = wl, *b = wl + n_out * n_in;
        for (int o = 0; o < n_out; o++) {
            double s = b[o];
            for (int i = 0; i < n_in; i++) s += W[o * n_in + i] * h[i];
            g[o] = s;
        }
        if (pl) { memcpy(pl, g, sizeof(double) * n_out); pl += n_out; }
        if (l < N_LAYERS - 1) for (int o = 0; o < n_out; o++) h[o] = act(g[o]);
        else memcpy(h, g, sizeof(double) * n_out);
        wl = b + n_out;
        n_in = n_out;
    }
    for (int k = 0; k < N_WRITE; k++) f[WRITE[k]] += h[k] * out_scale[k];
#else
    (void)x; (void)w; (void)shift; (void)scale; (void)out_scale; (void)f; (void)pre;
#endif
}

/* v^T d(net)/dx added to gx, v^T d(net)/dw added to gw */
static void net_vjp(const double *x, const double *w, const double *shift, const double *scale,
                    const double *out_scale, const double *v, double *gx, double *gw) {
#if HAS_NET
    double pre[PRE_TOTAL], hin[MAXW], d[MAXW], dn[MAXW];
    double dummy[N];
    memset(dummy, 0, sizeof(dummy));
    net_forward(x, w, shift, scale, out_scale, dummy, pre);
    /* offsets of each layer's weights and pre-activations */
    int woff[N_LAYERS + 1], poff[N_LAYERS + 1];
    woff[0] = 0; poff[0] = 0;
    for (int l = 0; l < N_LAYERS; l++) {
        woff[l + 1] = woff[l] + WIDTHS[l + 1] * WIDTHS[l] + WIDTHS[l + 1];
        poff[l + 1] = poff[l] + WIDTHS[l + 1];
    }
    int n_out = WIDTHS[N_LAYERS];
    for (int k = 0; k < n_out; k++) d[k] = v[WRITE[k]] * out_scale[k];
    for (int l = N_LAYERS - 1; l >= 0; l--) {
        int n_in = WIDTHS[l];
        n_out = WIDTHS[l + 1];
        /* the layer's input */
        if (l == 0) for (int i = 0; i < n_in; i++) hin[i] = (x[READ[i]] - shift[i]) / scale[i];
        else for (int i = 0; i < n_in; i++) hin[i] = act(pre[poff[l - 1] + i]);
        const double *W = w + woff[l];
        double *gW = gw + woff[l], *gb = gW + n_out * n_in;
        for (int o = 0; o < n_out; o++) {
            gb[o] += d[o];
            for (int i = 0; i < n_in; i++) gW[o * n_in + i] += d[o] * hin[i];
        }
        for (int i = 0; i < n_in; i++) {
            double s = 0.0;
            for (int o = 0; o < n_out; o++) s += W[o * n_in + i] * d[o];
            dn[i] = s;
        }
        if (l > 0) for (int i = 0; i < n_in; i++) d[i] = dn[i] * act_slope(pre[poff[l - 1] + i]);
        else for (int i = 0; i < n_in; i++) gx[READ[i]] += dn[i] / scale[i];
    }
#else
    (void)x; (void)w; (void)shift; (void)scale; (void)out_scale; (void)v; (void)gx; (void)gw;
#endif
}
"""

SOLVER += r"""
/* ---- the hybrid field: physics (states floored where declared positive) + network ---- */
typedef struct {
    const double *p, *w, *shift, *scale, *out_scale;
} Model;

static void field(const Model *m, const double *x, double tt, double *f) {
    double xf[N];
    for (int i = 0; i < N; i++) xf[i] = FLOORED[i] && x[i] < FLOOR ? FLOOR : x[i];
    physics(xf, tt, m->p, f);
    net_forward(x, m->w, m->shift, m->scale, m->out_scale, f, NULL);
}

/* v^T df/dx added to gx, v^T df/dp to gp, v^T df/dw to gw */
static void field_vjp(const Model *m, const double *x, double tt, const double *v,
                      double *gx, double *gp, double *gw) {
    double xf[N], gxf[N], gpp[P > 0 ? P : 1];
    for (int i = 0; i < N; i++) xf[i] = FLOORED[i] && x[i] < FLOOR ? FLOOR : x[i];
    physics_vjp(xf, tt, m->p, v, gxf, gpp);
    for (int i = 0; i < N; i++) if (!(FLOORED[i] && x[i] < FLOOR)) gx[i] += gxf[i];
    for (int k = 0; k < P; k++) gp[k] += gpp[k];
    net_vjp(x, m->w, m->shift, m->scale, m->out_scale, v, gx, gw);
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
static void stage(const Model *m, int B, const double *xi, const double *t0, const double *d,
                  double s, double *k, double *fphys) {
    for (int b = 0; b < B; b++) {
        double tt = t0[b] + d[b] * s;
        field(m, xi + b * N, tt, fphys + b * N);
        for (int i = 0; i < N; i++) k[b * N + i] = fphys[b * N + i] * d[b];
    }
}

/* Forward solve. tau (B x K); x0 (B x N); xs (B x K x N) out. The tape holds, per accepted
   step: the interval, sigma at its start, h, and the 7 stage inputs (7 x B x N), plus a flag
   for whether its first stage was evaluated (1) or reused (0).
   Returns the number of accepted steps; -1: tape full; -2: max steps; -3: h underflow with
   a non-finite error; -4: h underflow. nfe[0] receives the field evaluations. */
long dopri5_forward(const Model *m, int B, int K, const double *tau, const double *x0,
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
    long moving = 0;
    for (int iv = 0; iv < K - 1; iv++) {
        int mv = 0;
        for (int b = 0; b < B; b++) mv |= tau[b * K + iv + 1] - tau[b * K + iv] != 0.0;
        moving += mv;
    }
    max_steps += moving;
    for (int iv = 0; iv < K - 1 && code == 0; iv++) {
        int mv = 0;
        for (int b = 0; b < B; b++) {
            t0[b] = tau[b * K + iv];
            d[b] = tau[b * K + iv + 1] - tau[b * K + iv];
            mv |= d[b] != 0.0;
        }
        if (mv) {
            double sigma = 0.0;
            int fresh = 0;
            if (have_fend) {
                for (int b = 0; b < B; b++)
                    for (int i = 0; i < N; i++) k[b * N + i] = fend[b * N + i] * d[b];
            } else {
                stage(m, B, x, t0, d, 0.0, k, fp);
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
                    stage(m, B, xs_, t0, d, sigma + C_[s] * h, k + s * BN, fp + s * BN);
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
void dopri5_backward(const Model *m, int B, int K, const double *tau, const double *gxs,
                     const double *tape_x, const double *tape_s, const int *tape_i,
                     long n_steps, double *gx0, double *gp, double *gw, long *nfe) {
    long BN = (long)B * N, evals = 0;
    double *lx = malloc_like(BN), *lk = malloc_like(7 * BN), *lxi = malloc_like(BN);
    double *carry = malloc_like(BN);   /* adjoint of the reused first stage, physical f */
    double *t0 = malloc_like(B), *d = malloc_like(B), *v = malloc_like(N);
    int have_carry = 0;
    for (int b = 0; b < B; b++) memcpy(lx + b * N, gxs + ((long)b * K + K - 1) * N, sizeof(double) * N);
    long s = n_steps - 1;
    for (int iv = K - 2; iv >= 0; iv--) {
        for (int b = 0; b < B; b++) {
            t0[b] = tau[b * K + iv];
            d[b] = tau[b * K + iv + 1] - tau[b * K + iv];
        }
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
                    if (any) field_vjp(m, xi + j * BN + b * N, t0[b] + d[b] * (sigma + C_[j] * h),
                                       v, lxi + b * N, gp, gw);
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
   unit, and a check of the generated derivatives): f (B x N) out; gx (B x N), gp (P), gw
   accumulated with the cotangent v (B x N). */
void field_eval_vjp(const Model *m, int B, const double *x, const double *tt, const double *v,
                    double *f, double *gx, double *gp, double *gw) {
    for (int b = 0; b < B; b++) {
        field(m, x + b * N, tt[b], f + b * N);
        field_vjp(m, x + b * N, tt[b], v + b * N, gx + b * N, gp, gw);
    }
}
"""
