"""Exceptions raised by sysid.

Every message says what went wrong, what was received, and how to fix it.
All errors derive from :class:`SysidError`; data problems are also ``ValueError``
so that generic ``except ValueError`` handlers keep working.

Examples
--------
A data variable that matches nothing in the model:

>>> import sympy as sp, sysid, xarray as xr
>>> x = sp.Symbol("x")
>>> k = sp.Symbol("k", positive=True)
>>> model = sysid.HybridODE(states=[x], physics={x: -k * x}, parameters={k: 1.0})
>>> data = xr.Dataset({"velocity": ("time", [1.0, 0.6, 0.4])},
...                   coords={"time": [0.0, 1.0, 2.0]})
>>> try:
...     sysid.fit(model, data)
... except sysid.errors.DataError as err:
...     print(err)
Data variable 'velocity' matches no state, observation or input of the model. Model channels: ['x']; inputs: []. Rename it, add it to the model's observations={...} or inputs=[...], or drop it with ds.drop_vars('velocity').

Every sysid error is a :class:`SysidError`, and data errors are ``ValueError`` too:

>>> issubclass(sysid.errors.DataError, (sysid.errors.SysidError, ValueError))
True
>>> try:
...     sysid.fit(model, data.sortby("time", ascending=False).rename(velocity="x"))
... except ValueError as err:
...     print(err)
The 'time' coordinate is not sorted: 2.0 is followed by 1.0. Fix: ds = ds.sortby('time').
"""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "SysidError",
    "DataError",
    "ModelError",
    "ExpressionError",
    "UnsupportedExpressionError",
    "FileFormatError",
    "FitError",
    "SolverError",
    "FitWarning",
    "DataWarning",
    "LimitError",
    "ModelWarning",
    "IdentifiabilityWarning",
    "suggest",
]


class SysidError(Exception):
    """Base class of all sysid errors."""


class DataError(SysidError, ValueError):
    """The dataset cannot be used as given (see the message for the fix)."""


class ModelError(SysidError, ValueError):
    """The model specification is inconsistent."""


class ExpressionError(SysidError, ValueError):
    """An equation (text or SymPy) is refused: unsafe, malformed or unknown names."""


class UnsupportedExpressionError(ExpressionError):
    """A SymPy function has no torch counterpart in sysid."""


class FileFormatError(SysidError, ValueError):
    """A saved file is not a valid sysid file (or was tampered with)."""


class LimitError(SysidError, ValueError):
    """A spec or a saved file asks for a size over one of sysid's limits (a network's
    width or depth, the number of symbols, the length of the equations, the memory its
    tensors or its training would take): refused before anything is allocated. The
    message names the limit and the environment variable that raises it
    (``sysid.model.limits``)."""


class FitError(SysidError, RuntimeError):
    """Training failed; the message carries the status and advice."""


class SolverError(SysidError, RuntimeError):
    """The ODE solver could not integrate the model: more steps than the ``max_steps``
    option allows (a stiff or fast model), a step size that underflowed (a state that
    blows up in finite time) or values that are not finite (NaN or inf). During
    :func:`sysid.fit` it becomes the status ``"solver_failed"`` or ``"diverged"`` (the best
    parameters are kept); elsewhere (imputing or forecasting a result) it is raised.
    Fix: a larger ``max_steps``, looser ``rtol``/``atol``, ``solver="rk4"``, or times and
    parameters where the model stays finite."""


class FitWarning(UserWarning):
    """A fit ended in a failure (``"diverged"`` or ``"solver_failed"``) and returned its
    best result anyway: the message is the status with its advice. ``result.status``
    says the same; ``result.raise_for_status()`` (or ``sysid.fit(..., throw=True)``)
    raises :class:`FitError` instead, and ``throw=False`` returns without the warning."""


class ModelWarning(UserWarning):
    """A model that is valid but probably not what was meant, e.g. a state with no
    equation in ``physics`` and no residual term (its d/dt is 0, so it stays at its
    initial value). The message names it and says how to state the intent."""


class DataWarning(UserWarning):
    """The data were usable but not as given, and sysid changed them in a stated way:
    integer data or an integer time coordinate converted to float64, an on/off (boolean)
    input read as 0.0/1.0, a ``noise_std`` attribute given as text read as a number. The
    message names the variable and says how to give the data so that no note is needed.
    Silence it with ``warnings.simplefilter("ignore", sysid.errors.DataWarning)``."""


class IdentifiabilityWarning(UserWarning):
    """The data do not determine some parameters (a flat direction of the likelihood, a
    relative standard error above 100 %, or a correlation beyond +-0.99): their standard
    errors and intervals are not meaningful. The message names them and says what to do.

    Issued by :meth:`sysid.FitResult.parameter_table` (and ``parameter_correlation``).

    Examples
    --------
    In ``dx/dt = -a b x`` only the product ``a b`` is determined:

    >>> import warnings, numpy as np, sympy as sp, sysid, xarray as xr
    >>> t = np.linspace(0.0, 4.0, 21)
    >>> data = xr.Dataset({"x": ("time", 2.0 * np.exp(-0.5 * t))}, coords={"time": t})
    >>> x = sp.Symbol("x")
    >>> a, b = sp.symbols("a b", positive=True)
    >>> model = sysid.HybridODE(states=[x], physics={x: -a * b * x},
    ...                         parameters={a: 0.5, b: 2.0})
    >>> result = sysid.fit(model, data, progress=False)
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     table = result.parameter_table()
    >>> caught[0].category.__name__
    'IdentifiabilityWarning'
    >>> table["identifiable"].tolist()
    [False, False]
    >>> print(str(caught[0].message).splitlines()[0])
    The data do not identify parameters a, b of this model...
    """


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
