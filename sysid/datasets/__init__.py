"""Datasets for system identification: bundled measurements and synthetic systems.

* :func:`load` -- measured data: shipped with sysid (``"lynx_hare"``) or
  nonlinear system identification benchmarks (``"cascaded_tanks"``,
  ``"emps"``, ``"silverbox"``) whose files sysid does not ship.
* :func:`download` -- fetch a benchmark's files (checked by SHA-256) into the
  cache folder.
* :func:`simulate` -- noisy, partial, irregular data from a synthetic system
  with known equations and parameters (:func:`system`).
* :func:`available` -- the names accepted by both.

Every dataset is an :class:`xarray.Dataset` with a ``time`` dimension (and a
``trajectory`` dimension when there are several trajectories), one variable
per measured channel (NaN = not measured), and ``units``/``long_name`` on
every variable and coordinate.

Examples
--------
>>> from sysid import datasets
>>> datasets.available()[:2]
['lynx_hare', 'cascaded_tanks']
>>> data, truth = datasets.simulate("lotka_volterra", noise=0.05, truth=True)
>>> sorted(data.data_vars)
['x', 'y']
"""

from ._bundled import available, load
from ._real import download
from ._simulate import simulate
from ._system import Staircase, System
from ._catalogue import system

__all__ = ["available", "download", "load", "simulate", "system", "System", "Staircase"]
