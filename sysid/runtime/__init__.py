"""Process-wide services that every room may use: BLAS threads and progress bars.

Owns :mod:`~sysid.runtime.blas` (one BLAS thread for small dense algebra) and
:mod:`~sysid.runtime.progress` (the notebook or text progress bar).

May import: nothing from sysid.
"""
