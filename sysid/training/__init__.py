"""Training a problem: Adam, L-BFGS and Levenberg-Marquardt phases, checkpoints.

Owns :func:`~sysid.training.trainer.train` (validate, build the problem, run the phases,
give back the parts of a result as :class:`~sysid.training.trainer.Trained`), the
phases themselves (:mod:`~sysid.training.phases`), the Levenberg-Marquardt solver
(:mod:`~sysid.training.levenberg_marquardt`) and the checkpoint files that let an
interrupted fit resume (:mod:`~sysid.training.checkpoints`).

May import: :mod:`sysid.errors`, :mod:`sysid.runtime`, :mod:`sysid.model`,
:mod:`sysid.data`, :mod:`sysid.solve`, :mod:`sysid.problem`. It never builds a
:class:`~sysid.FitResult`: :mod:`sysid.results` does.
"""

from .trainer import Trained, train

__all__ = ["Trained", "train"]
