"""What a failed fit does, as ``throw`` asks: the :class:`~sysid.errors.FitError` it raises,
or the :class:`~sysid.errors.FitWarning` it returns with."""

from __future__ import annotations

import warnings

from ..errors import FitError, FitWarning

__all__ = ["fit_error", "report_failure"]


def fit_error(result) -> FitError:
    """The :class:`FitError` of a failed ``result``: its status and advice, with the
    result attached as ``err.result``."""
    err = FitError(f"{result.status} The best result so far is attached as err.result.")
    err.result = result
    return err


def report_failure(result, throw) -> None:
    """A failed fit as ``throw`` asks: raised (True), returned with a FitWarning (None, the
    default) or returned quietly (False). A success passes."""
    if result.status.success:
        return
    if throw:
        raise fit_error(result)
    if throw is None:
        warnings.warn(f"{result.status} The result holds the best parameters found "
                      f"(result.status says what happened; result.raise_for_status() "
                      f"raises, as fit(..., throw=True) does; throw=False returns "
                      f"without this warning).", FitWarning, stacklevel=4)
