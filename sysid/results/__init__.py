"""What a fit gives back: :class:`FitResult`, its outputs, plots and files.

Owns :func:`sysid.fit` and :func:`sysid.load` (:mod:`~sysid.results.fitting`),
:class:`FitResult` (:mod:`~sysid.results.result`), which turns training's parts into
labelled outputs and delegates symbolic distillation (:mod:`sysid.symbolic`),
uncertainty (:mod:`sysid.uncertainty`) and files (:mod:`~sysid.results.files`) to the
rooms that own them, the output datasets (:mod:`~sysid.results.outputs`) and the figures
(:mod:`~sysid.results.plot`), :class:`FieldResult`, a fitted field over space
(:mod:`~sysid.results.field_result`), and the likelihood, AIC and BIC of a fit with
:func:`compare` (:mod:`~sysid.results.compare`).

May import: every room below it: :mod:`sysid.errors`, :mod:`sysid.runtime`,
:mod:`sysid.model`, :mod:`sysid.data`, :mod:`sysid.solve`, :mod:`sysid.problem`,
:mod:`sysid.training`, :mod:`sysid.uncertainty`, :mod:`sysid.symbolic`.
"""

from .compare import compare
from .fitting import fit, fit_from, load
from .field_result import FieldResult
from .result import FitResult

__all__ = ["FieldResult", "FitResult", "compare", "fit", "fit_from", "load"]
