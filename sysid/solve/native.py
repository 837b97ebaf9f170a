"""The native hot path: a model's field and its Runge-Kutta solvers compiled to C.

:func:`kernel_for` generates the C source of a :class:`~sysid.model.field.HybridField`
(:mod:`sysid.solve.native_source`), compiles it once with the system's C compiler into a
cache folder (keyed by a hash of the source; ``$SYSID_CACHE`` or ``~/.cache/sysid``) and
loads it with :mod:`ctypes`. :func:`solve_native` integrates like
:func:`sysid.solve.runge_kutta.solve_intervals` (``dopri5``: the same stages, step-size
control and first-same-as-last reuse; ``rk4``: the same fixed steps), with inputs read as
the straight lines (or held values) along each interval that
:meth:`~sysid.solve.integrate.InputSignal.on_intervals` gives; its gradient is the
discrete adjoint of those steps, as autograd computes it through the eager solver: the
step sizes are constants. ``rosenbrock23`` (up to :data:`MAX_IMPLICIT_STATES` states)
takes the same stages, error estimate and step control as
:func:`sysid.solve.runge_kutta.solve_intervals`, with the Jacobian by forward
differences of the compiled field and an LU factorisation with partial pivoting per step,
and its gradient is the discrete adjoint of those steps
(:mod:`sysid.solve.native_implicit`).

Where the native path does not apply (no C compiler, an unsupported function),
:func:`kernel_for` returns None; the caller also keeps CUDA tensors, per-row parameters
with gradients (per-row parameters run here in forward solves: central differences)
and inputs sampled inside an interval on the eager solver.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from .native_solvers import SOLVER
from .native_source import Unsupported, field_source

__all__ = ["compiler", "kernel_for", "solve_native", "worth_it", "Unsupported"]

_D = ctypes.POINTER(ctypes.c_double)
_I = ctypes.POINTER(ctypes.c_int)
_L = ctypes.POINTER(ctypes.c_long)
_LOADED: dict = {}
#: -O3 vectorises the network's loops; no -ffast-math (IEEE arithmetic in the written
#: order) and no -march (the same instructions on every machine of an architecture)
_FLAGS = ("-O3", "-shared", "-fPIC")

#: the advice a step-limit or step-underflow failure of an explicit solver ends with
STIFF_HINT = ("; if the system is stiff (rates that span decades), solver='rosenbrock23' "
              "takes steps of the slow dynamics")


class _Model(ctypes.Structure):
    _fields_ = [("p", _D), ("w", _D), ("shift", _D), ("scale", _D), ("out_scale", _D),
                ("wt", _D), ("p_stride", ctypes.c_long)]


class _Inputs(ctypes.Structure):
    _fields_ = [("start", _D), ("rise", _D), ("K", ctypes.c_int)]


def _cache_dir() -> Path:
    root = os.environ.get("SYSID_CACHE") or Path.home() / ".cache" / "sysid"
    return Path(root) / "native"


def compiler() -> str | None:
    """The C compiler the native path uses (``$CC``, else ``cc`` or ``gcc``), or None."""
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def _compile(source: str):
    digest = hashlib.sha256((" ".join(_FLAGS) + "\n" + source).encode()).hexdigest()[:24]
    if digest in _LOADED:
        return _LOADED[digest]
    folder = _cache_dir()
    library = folder / f"field_{digest}.so"
    if not library.exists():
        cc = compiler()
        if cc is None:
            raise Unsupported("no C compiler (cc or gcc) on PATH")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return _build(cc, source, folder, library, digest)
        except OSError as err:          # a read-only home, a full disk: run eager
            raise Unsupported(f"cannot build in the cache folder {folder}: {err}") from None
    return _load(library, digest)


def _build(cc, source, folder, library, digest):
    """Compile ``source`` into ``library`` (through a temporary folder, then an atomic
    rename: processes that build the same model at once do not see half a file)."""
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        src = Path(tmp) / "field.c"
        src.write_text(source)
        out = Path(tmp) / "field.so"
        run = subprocess.run([cc, *_FLAGS, "-o", str(out), str(src), "-lm"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            raise Unsupported(f"the C compiler failed: {run.stderr.strip()[:500]}")
        os.replace(out, library)
    return _load(library, digest)


def _load(library, digest):
    lib = ctypes.CDLL(str(library))
    model, inputs, c_int, c_long = (ctypes.POINTER(_Model), ctypes.POINTER(_Inputs),
                                     ctypes.c_int, ctypes.c_long)
    lib.dopri5_forward.restype = c_long
    lib.dopri5_forward.argtypes = [model, inputs, c_int, c_int, c_int, _D, _D, ctypes.c_double,
                                   ctypes.c_double, c_long, _D, _D, _D, _I, c_long, _L]
    lib.dopri5_backward.restype = None
    lib.dopri5_backward.argtypes = [model, inputs, c_int, c_int, _D, _D, _D, _D, _I, c_long,
                                    _D, _D, _D, _L]
    lib.rk4_forward.restype = c_long
    lib.rk4_forward.argtypes = [model, inputs, c_int, c_int, _D, _D, c_int, _D, _D]
    lib.rk4_backward.restype = None
    lib.rk4_backward.argtypes = [model, inputs, c_int, c_int, _D, _D, _D, c_long, c_int, _D,
                                 _D, _D]
    lib.rosenbrock23_forward.restype = c_long
    lib.rosenbrock23_forward.argtypes = [model, inputs, c_int, c_int, _D, _D, ctypes.c_double,
                                         ctypes.c_double, c_long, _D, _D, _D, _I, c_long, _L]
    lib.rosenbrock23_backward.restype = None
    lib.rosenbrock23_backward.argtypes = [model, inputs, c_int, c_int, _D, _D, _D, _D, _I,
                                          c_long, _D, _D, _D, _L]
    lib.field_eval_vjp.restype = None
    lib.field_eval_vjp.argtypes = [model, c_int, _D, _D, _D, _D, _D, _D, _D, _D]
    _LOADED[digest] = lib
    return lib


def _network_key(field) -> tuple:
    """What a kernel is built for besides the model: the residual network attached to the
    field (build_problem attaches it after solves of the physics alone) and the buffers
    the kernel keeps views of."""
    net = field.residual
    if net is None:
        return (None,)
    return (net, net.shift.data_ptr(), net.scale.data_ptr(), net.out_scale.data_ptr())


def kernel_for(field):
    """The compiled kernel of ``field`` (cached on it, for the network attached to it
    now), or None where the native path does not apply."""
    key = _network_key(field)
    cached = field.__dict__.get("_native_kernel")
    if cached is not None and cached[0][0] is key[0] and cached[0][1:] == key[1:]:
        return cached[1]
    try:
        kernel = _Kernel(field, _compile(field_source(field) + SOLVER))
    except Unsupported as why:
        kernel = None
        field.__dict__["_native_unsupported"] = str(why)
    field.__dict__["_native_kernel"] = (key, kernel)
    return kernel


#: Above this many multiply-adds per batched field evaluation (rows x network weights,
#: plus a little per row for the physics), PyTorch's vectorised matrix products beat the
#: generated C loops. Measured for a 2 x 32 tanh network, one solve of 5 intervals with its
#: gradient: 5.2x faster at 16 rows, 1.65x at 64, 0.62x at 256 (break-even near 130 rows).
MAX_WORK = 150_000


def worth_it(field, rows: int) -> bool:
    """Whether the native solver is expected to be faster for ``rows`` segments."""
    net = field.residual
    weights = 0 if net is None else sum(m.weight.numel() for m in net.net
                                        if isinstance(m, torch.nn.Linear))
    return rows * (weights + 20) <= MAX_WORK


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(_D)


def _as_c(t: torch.Tensor) -> np.ndarray:
    """A flat, contiguous float64 copy (or view) of ``t``, at least one element long (C
    arrays of size 0 are not allowed)."""
    a = np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64).reshape(-1)
    return a if a.size else np.zeros(1)


class _Kernel:
    def __init__(self, field, lib):
        self.lib = lib
        net = field.residual
        self.linears = [] if net is None else [m for m in net.net
                                               if isinstance(m, torch.nn.Linear)]
        # the network's standardisation: views of its buffers (restoring a state dict
        # copies into them in place, so the views stay current)
        self.buffers = [np.zeros(1)] * 3 if net is None else \
            [b.detach().numpy() for b in (net.shift, net.scale, net.out_scale)]

    def weights(self) -> torch.Tensor:
        parts = [q.reshape(-1) for m in self.linears for q in (m.weight, m.bias)]
        return torch.cat(parts) if parts else torch.zeros(1, dtype=torch.float64)

    def prepare(self, p: torch.Tensor, w: torch.Tensor):
        """The C model struct for parameter values ``p`` ((P,), or (P, R): one column per
        row, forward solves only) and flat weights ``w``, and the arrays it points into
        (keep them alive while it is used)."""
        per_row = p.dim() == 2
        arrays = [_as_c(p.transpose(0, 1) if per_row else p), _as_c(w)]
        arrays.append(self._transposed(arrays[1]))
        model = _Model(*(_ptr(a) for a in arrays[:2] + self.buffers + arrays[2:]),
                       p.shape[0] if per_row else 0)
        return model, arrays

    def _transposed(self, w: np.ndarray) -> np.ndarray:
        """The flat weights with each layer's matrix transposed (the forward's layout)."""
        parts, at = [], 0
        for m in self.linears:
            out, inp = m.weight.shape
            parts += [w[at:at + out * inp].reshape(out, inp).T.reshape(-1),
                      w[at + out * inp:at + out * inp + out]]
            at += out * inp + out
        return np.concatenate(parts) if parts else np.zeros(1)

    def eval_vjp(self, field, x: np.ndarray, t: np.ndarray, v: np.ndarray, u=None):
        """``f(t, x, u)`` (B, n) and the VJPs ``v^T df/dx`` (B, n), ``v^T df/dp`` (P) and
        ``v^T df/dw`` (all weights, flat), in C: one call (the micro-benchmark's unit).
        ``u``: inputs (B, m), if the model has any."""
        model, arrays = self.prepare(field.parameter_values(), self.weights())
        return self.eval_vjp_with(model, arrays, x, t, v, u)

    def eval_vjp_with(self, model, arrays, x, t, v, u=None):
        f, gx = np.zeros_like(x), np.zeros_like(x)
        gp, gw = np.zeros(arrays[0].size), np.zeros(arrays[1].size)
        u = np.zeros((x.shape[0], 1)) if u is None or u.size == 0 else np.ascontiguousarray(u)
        self.lib.field_eval_vjp(ctypes.byref(model), x.shape[0], _ptr(x), _ptr(u), _ptr(t),
                                _ptr(v), _ptr(f), _ptr(gx), _ptr(gp), _ptr(gw))
        return f, gx, gp, gw


def _inputs(lines, K):
    """The C view of the inputs along the intervals (start, rise or None), and the arrays
    it points into."""
    if lines is None:
        arrays = [np.zeros(1)]
        return _Inputs(_ptr(arrays[0]), None, K), arrays
    start, rise = lines
    arrays = [_as_c(start)] + ([] if rise is None else [_as_c(rise)])
    return _Inputs(_ptr(arrays[0]), None if rise is None else _ptr(arrays[1]), K), arrays


class _NativeSolve(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x0, p, w, tau, field, kernel, how, failure):
        B, K = tau.shape
        n = x0.shape[1]
        tau_np, x0_np = _as_c(tau), _as_c(x0)
        model, arrays = kernel.prepare(p, w)
        inputs, input_arrays = _inputs(how["lines"], K)
        xs = np.zeros((B, K, n))
        if how["method"] == "rk4":
            tape = _rk4_forward(kernel, model, inputs, tau_np, x0_np, xs, how["substeps"])
        elif how["method"] == "rosenbrock23":
            tape = _rosenbrock23_forward(kernel, model, inputs, tau_np, x0_np, xs, how,
                                         failure, taped=any(ctx.needs_input_grad[:3]))
        else:
            tape = _dopri5_forward(kernel, model, inputs, tau_np, x0_np, xs, how, failure)
        field.__dict__["nfe"] += tape[-1]        # the evaluations of the solve kept
        ctx.saved = (tau_np, tape, model, arrays, inputs, input_arrays, kernel, how,
                     p.shape, w.shape)
        return torch.from_numpy(xs)

    @staticmethod
    def backward(ctx, gxs):
        tau_np, tape, model, arrays, inputs, _, kernel, how, p_shape, w_shape = ctx.saved
        if model.p_stride:
            raise RuntimeError("the native solver's per-row parameters are for forward solves "
                               "(torch.no_grad()); it has no gradient for them")
        B, K, n = gxs.shape
        g = _as_c(gxs)
        gx0, gp, gw = np.zeros((B, n)), np.zeros(arrays[0].size), np.zeros(arrays[1].size)
        nfe = ctypes.c_long(0)
        if how["method"] == "rk4":
            tape_x, steps, _ = tape
            kernel.lib.rk4_backward(ctypes.byref(model), ctypes.byref(inputs), B, K,
                                    _ptr(tau_np), _ptr(g), _ptr(tape_x), steps,
                                    how["substeps"], _ptr(gx0), _ptr(gp), _ptr(gw))
        elif how["method"] == "rosenbrock23":
            tape_x, tape_s, tape_i, steps, _ = tape
            kernel.lib.rosenbrock23_backward(ctypes.byref(model), ctypes.byref(inputs), B, K,
                                             _ptr(tau_np), _ptr(g), _ptr(tape_x),
                                             _ptr(tape_s), tape_i.ctypes.data_as(_I), steps,
                                             _ptr(gx0), _ptr(gp), _ptr(gw), ctypes.byref(nfe))
        else:
            tape_x, tape_s, tape_i, steps, _ = tape
            kernel.lib.dopri5_backward(ctypes.byref(model), ctypes.byref(inputs), B, K,
                                       _ptr(tau_np), _ptr(g), _ptr(tape_x), _ptr(tape_s),
                                       tape_i.ctypes.data_as(_I), steps, _ptr(gx0), _ptr(gp),
                                       _ptr(gw), ctypes.byref(nfe))
        gp_t = torch.from_numpy(gp[:int(np.prod(p_shape))]).reshape(p_shape)
        return (torch.from_numpy(gx0), gp_t, torch.from_numpy(gw).reshape(w_shape),
                None, None, None, None, None)


def _rk4_forward(kernel, model, inputs, tau_np, x0_np, xs, substeps):
    B, K, n = xs.shape
    tau = tau_np.reshape(B, K)
    steps = int((tau[:, 1:] != tau[:, :-1]).any(axis=0).sum()) * substeps
    tape_x = np.zeros((max(steps, 1), 4, B, n))
    evals = kernel.lib.rk4_forward(ctypes.byref(model), ctypes.byref(inputs), B, K,
                                   _ptr(tau_np), _ptr(x0_np), substeps, _ptr(xs), _ptr(tape_x))
    return tape_x, steps, int(evals)


def _dopri5_forward(kernel, model, inputs, tau_np, x0_np, xs, how, failure):
    B, K, n = xs.shape
    max_steps = how["max_steps"]
    capacity = 64 + 4 * K
    nfe = ctypes.c_long(0)
    while True:            # a tape too short for the steps: solve again with a longer one
        tape_x = np.zeros((capacity, 7, B, n))
        tape_s = np.zeros((capacity, 2))
        tape_i = np.zeros((capacity, 2), dtype=np.intc)
        steps = kernel.lib.dopri5_forward(
            ctypes.byref(model), ctypes.byref(inputs), int(how["reuse"]), B, K, _ptr(tau_np),
            _ptr(x0_np), how["rtol"], how["atol"], max_steps, _ptr(xs), _ptr(tape_x),
            _ptr(tape_s), tape_i.ctypes.data_as(_I), capacity, ctypes.byref(nfe))
        if steps != -1:
            break
        capacity *= 4
    if steps == -2:
        raise failure(f"max_num_steps exceeded ({max_steps} steps: the max_steps option "
                      f"plus one per sample interval{STIFF_HINT})")
    if steps == -3:
        raise failure("underflow in dt: the vector field or the state is not finite "
                      "(NaN or inf)")
    if steps == -4:
        raise failure("underflow in dt: the problem is stiff or the state blew up"
                      + STIFF_HINT)
    # (the first ``steps`` rows of a C-ordered tape are contiguous: no copy)
    return tape_x[:steps], tape_s[:steps], tape_i[:steps], steps, int(nfe.value)


def solve_native(field, kernel, x0, tau, *, method="dopri5", rtol=1e-6, atol=1e-8,
                 max_steps=20_000, substeps=4, failure=RuntimeError, lines=None, reuse=True):
    """States (B, K, n) at ``tau``, as ``solve_intervals`` computes them with ``method``
    ("dopri5", "rk4" or "rosenbrock23"), differentiable in ``x0``, the physical parameters and the
    network's weights. ``lines``: the inputs along the intervals, ``(start, rise)`` as
    :meth:`~sysid.solve.integrate.InputSignal.on_intervals` gives them (exact on every
    interval), or None without inputs; ``reuse``: first-same-as-last across intervals."""
    p = field.parameter_values()
    how = dict(method=method, rtol=float(rtol), atol=float(atol), max_steps=int(max_steps),
               substeps=int(substeps), lines=lines, reuse=bool(reuse))
    return _NativeSolve.apply(x0, p, kernel.weights(), tau, field, kernel, how, failure)


#: The native rosenbrock23 factors a dense n x n matrix per row and step with plain loops;
#: above this many states LAPACK's blocked LU in the eager solver is the faster one.
MAX_IMPLICIT_STATES = 64


def _rosenbrock23_forward(kernel, model, inputs, tau_np, x0_np, xs, how, failure, taped):
    """The forward solve of ``rosenbrock23`` in C, with a tape of each accepted step's
    start state where a gradient will be asked for (``taped``)."""
    B, K, n = xs.shape
    capacity = 64 + 4 * K if taped else 0
    nfe = ctypes.c_long(0)
    while True:            # a tape too short for the steps: solve again with a longer one
        tape_x = np.zeros((max(capacity, 1), B, n))
        tape_s = np.zeros((max(capacity, 1), 2))
        tape_i = np.zeros(max(capacity, 1), dtype=np.intc)
        steps = kernel.lib.rosenbrock23_forward(
            ctypes.byref(model), ctypes.byref(inputs), B, K, _ptr(tau_np), _ptr(x0_np),
            how["rtol"], how["atol"], how["max_steps"], _ptr(xs),
            _ptr(tape_x) if taped else None, _ptr(tape_s), tape_i.ctypes.data_as(_I),
            capacity, ctypes.byref(nfe))
        if steps != -1:
            break
        capacity *= 4
    if steps == -2:
        raise failure(f"max_num_steps exceeded ({how['max_steps']} steps: the max_steps "
                      f"option plus one per sample interval)")
    if steps == -4:
        raise failure(f"underflow in dt: the state or the vector field is not finite (NaN "
                      f"or inf), or the system is stiffer than rosenbrock23 can follow at "
                      f"rtol={how['rtol']}")
    kept = max(steps, 0) if taped else 0
    return tape_x[:kept], tape_s[:kept], tape_i[:kept], steps, int(nfe.value)
