"""Progress bars: the Jupyter widget where it can be drawn, the text bar otherwise.

``tqdm.auto`` picks the widget bar in a notebook, but without ``ipywidgets`` it warns
"IProgress not found. Please update jupyter and ipywidgets." (a ``TqdmWarning``, once per
session) before falling back to the text bar, and older tqdm versions raise instead.
:func:`progress_bar` makes that choice itself and falls back quietly.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings

__all__ = ["progress_bar"]


def _widgets_installed() -> bool:
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):      # a broken or half-imported package
        return False


def progress_bar(**kwargs):
    """A ``tqdm`` bar with ``kwargs``: the notebook widget in Jupyter when ``ipywidgets``
    is installed, the text bar (on stderr) everywhere else, never a warning about it."""
    if "ipykernel" in sys.modules and _widgets_installed():
        try:
            from tqdm.std import TqdmWarning

            with warnings.catch_warnings():    # ipywidgets present but unusable: text bar
                warnings.simplefilter("ignore", TqdmWarning)
                from tqdm.auto import tqdm as auto_tqdm
            return auto_tqdm(**kwargs)
        except ImportError:                    # older tqdm: no widget raises here
            pass
    from tqdm.std import tqdm

    return tqdm(**kwargs)
