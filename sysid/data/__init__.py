"""The user's ``xarray.Dataset`` as tensors and masks: the one door data come in by.

Owns :func:`~sysid.data.bundle.prepare` (validate the dataset against the data contract,
map its variables to the model's states, observations and inputs, and give a
:class:`~sysid.data.bundle.DataBundle` of arrays with NaN masks) and the time axis's
conversion to floats (:func:`~sysid.data.bundle.time_to_float`).

May import: :mod:`sysid.errors`, :mod:`sysid.model`.
"""

from .bundle import DataBundle, prepare, time_to_float

__all__ = ["DataBundle", "prepare", "time_to_float"]
