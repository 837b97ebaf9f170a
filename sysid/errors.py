"""Exceptions raised by sysid.

Every message says what went wrong, what was received, and how to fix it.
All errors derive from :class:`SysidError`; data problems are also ``ValueError``
so that generic ``except ValueError`` handlers keep working.
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


class FitError(SysidError, RuntimeError):
    """Training failed; the message carries the status and advice."""


class IdentifiabilityWarning(UserWarning):
    """The data do not determine some parameters (a flat direction of the likelihood, a
    relative standard error above 100 %, or a correlation beyond +-0.99): their standard
    errors and intervals are not meaningful. The message names them and says what to do."""


def suggest(name: str, candidates: Iterable[str]) -> str:
    """Return ``" Did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""
