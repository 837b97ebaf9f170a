"""Looking up a data set by name among both kinds, synthetic systems (:mod:`._systems`) and
measured files (:mod:`._bundled`), so that a name of the other kind gets a pointer to the
right function.
"""

from __future__ import annotations

from ..errors import DataError, suggest
from ._bundled import BUNDLED
from ._system import System
from ._systems import SYSTEMS

__all__ = ["get_system", "system"]


def get_system(name: object, *, caller: str = "system") -> System:
    """Return the registry entry (shared, do not modify) or raise DataError."""
    if isinstance(name, str) and name in SYSTEMS:
        return SYSTEMS[name]
    if isinstance(name, str) and name in BUNDLED:
        raise DataError(
            f"{caller}(): {name!r} is a bundled measured dataset, not a synthetic system. "
            f"Use sysid.datasets.load({name!r}) instead.")
    hint = suggest(str(name), SYSTEMS) if isinstance(name, str) else ""
    raise DataError(
        f"{caller}(): unknown system {name!r}.{hint} Available systems: "
        f"{', '.join(SYSTEMS)}.")


def system(name: str) -> System:
    """Return the definition of a synthetic system (a copy you may modify).

    Parameters
    ----------
    name : str
        One of the names in ``sysid.datasets.available("simulate")``.

    Returns
    -------
    System
        SymPy symbols and right-hand sides, true parameters, defaults, units.

    Raises
    ------
    DataError
        If ``name`` is not a known system.

    Examples
    --------
    >>> from sysid.datasets import system
    >>> p = system("pendulum")
    >>> p.states
    ('theta', 'omega')
    >>> p.equations
    'dtheta/dt = omega; domega/dt = -alpha*omega - omega0**2*sin(theta)'
    """
    return get_system(name, caller="system").copy()
