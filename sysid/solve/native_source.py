"""C source of the native hot path, the model's part: :func:`field_source` writes the
physics (SymPy, through ``sympy.ccode`` after a common-subexpression elimination), its
derivatives in the states and the physical parameters (SymPy differentiates), and the
shape of the residual network. :data:`sysid.solve.native_solvers.SOLVER` is the part every
model shares. Nothing here compiles or runs code; :mod:`sysid.solve.native` does.
"""

from __future__ import annotations

import sympy as sp
from torch import nn

from ..model.field import _FLOOR, _with_time
from ..model.hybrid import t as TIME
from ..model.residual import _ACTIVATIONS as _ACTIVATION_CLASSES

__all__ = ["Unsupported", "field_source"]

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


def _vjp_terms(f, v, wrt) -> list:
    """``sum_i v_i df_i/dw`` for each symbol ``w`` of ``wrt``, differentiating each
    ``f_i`` only in the symbols it contains (a field's equation holds a few neighbours of
    its grid point: linear, not quadratic, in the number of states)."""
    index = {w: j for j, w in enumerate(wrt)}
    terms: list[list] = [[] for _ in wrt]
    for vi, fi in zip(v, f):
        for w in sorted(fi.free_symbols & index.keys(), key=lambda w: index[w]):
            terms[index[w]].append(vi * sp.diff(fi, w))
    return [_zero_deltas(sp.Add(*t)) for t in terms]


def field_source(field) -> str:
    """The model's C functions ``physics``, ``physics_vjp`` and the network constants."""
    model = field.model
    net = field.residual
    if getattr(net, "local", False):        # (before any symbolic work on a large grid)
        raise Unsupported("a local residual network (one network per grid point)")
    states, params, inputs = list(model.states), list(model.parameters), list(model.inputs)
    rhs = [sp.sympify(e) for e in model.rhs()]
    time = _with_time([TIME], rhs)[0]          # the user's own t, as HybridField uses it
    _check(rhs)
    xs = sp.symbols(f"x0:{len(states)}", real=True)
    ps = sp.symbols(f"p0:{len(params)}", real=True)
    us = sp.symbols(f"u0:{len(inputs)}", real=True)
    tt = sp.Symbol("tt", real=True)
    table = {**dict(zip(states, xs)), **dict(zip(params, ps)), **dict(zip(inputs, us)),
             time: tt}
    f = [e.xreplace(table) for e in rhs]
    v = sp.symbols(f"v0:{len(states)}", real=True)
    gx = _vjp_terms(f, v, xs)
    gp = _vjp_terms(f, v, ps)
    _check(gx + gp)
    constants: dict = {}
    body_f = _code([(f"f[{i}]", e) for i, e in enumerate(f)], constants)
    body_v = _code([(f"gx[{j}]", e) for j, e in enumerate(gx)]
                   + [(f"gp[{k}]", e) for k, e in enumerate(gp)], constants)
    unpack = "\n".join(f"    const double x{i} = x[{i}];" for i in range(len(xs)))
    unpack += "\n" + "\n".join(f"    const double p{k} = p[{k}];" for k in range(len(ps)))
    unpack += "\n" + "\n".join(f"    const double u{j} = u[{j}];" for j in range(len(us)))
    unpack_v = "\n".join(f"    const double v{i} = v[{i}];" for i in range(len(v)))
    consts = "\n".join(f"static const double {name} = {value!r};"
                       for value, name in constants.items())
    floored = [False] * len(states) if field._floored is None else field._floored.tolist()
    if net is None:
        shape = "#define HAS_NET 0\n#define N_LAYERS 0\n#define ACT 0\n#define N_READ 0\n" \
                "#define MAXW 1\n#define PRE_TOTAL 1\n" \
                "#define N_WRITE 0\nstatic const int WIDTHS[1] = {0};\n" \
                "static const int READ[1] = {0};\nstatic const int WRITE[1] = {0};\n" \
                "static const int OUTOF[1] = {0};\n"
    else:
        names = {cls: name for name, cls in _ACTIVATION_CLASSES.items()}
        # depth 0 has no activation: any value of ACT will do
        activation = names.get(type(net.net[1]), "unknown") if len(net.net) > 1 else "tanh"
        if activation not in _ACTIVATIONS or getattr(net.net[1], "approximate", "none") != "none":
            raise Unsupported(f"activation {type(net.net[1]).__name__}")
        linears = [layer for layer in net.net if isinstance(layer, nn.Linear)]
        widths = [linears[0].in_features] + [layer.out_features for layer in linears]
        read, write = net.read_index.tolist(), net.write_index.tolist()
        outof = net.out_index.tolist()
        shape = (f"#define HAS_NET 1\n#define N_LAYERS {len(linears)}\n"
                 f"#define MAXW {max(widths)}\n#define PRE_TOTAL {sum(widths[1:])}\n"
                 f"#define ACT {_ACTIVATIONS[activation]}\n#define N_READ {len(read)}\n"
                 f"#define N_WRITE {len(write)}\n"
                 f"static const int WIDTHS[{len(widths)}] = {{{', '.join(map(str, widths))}}};\n"
                 f"static const int READ[{len(read)}] = {{{', '.join(map(str, read))}}};\n"
                 f"static const int WRITE[{len(write)}] = {{{', '.join(map(str, write))}}};\n"
                 f"static const int OUTOF[{len(write)}] = {{{', '.join(map(str, outof))}}};\n")
    return f"""#include <math.h>
#include <string.h>
#define N {len(states)}
#define P {len(params)}
#define M_IN {len(inputs)}   /* input columns; the network reads [states, inputs] */
#define FLOOR {_FLOOR!r}   /* HybridField's floor of positive states */
static const int FLOORED[N] = {{{', '.join('1' if b else '0' for b in floored)}}};
{shape}{consts}

static void physics(const double *x, const double *u, double tt, const double *p, double *f) {{
{unpack}
    (void)tt; (void)p; (void)u;
{body_f}
}}

/* gx = v^T df/dx, gp = v^T df/dp at (x, tt, p) (overwritten) */
static void physics_vjp(const double *x, const double *u, double tt, const double *p,
                        const double *v, double *gx, double *gp) {{
{unpack}
{unpack_v}
    (void)tt; (void)p; (void)gp; (void)u;
{body_v}
}}
"""
