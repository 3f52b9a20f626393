"""One module per notebook of the book, named like the notebook (``notebooks/02_fully_connected``
-> :mod:`jacnb.chapters.fully_connected`), each with the same small interface: ``NAME`` (its
notebook), ``settings(profile)`` (its settings, defined beside it), ``configs(settings)`` and
``run(profile, *, executor, store)`` returning a result whose methods give the chapter's frames,
figures and ``verdicts()``. Modules whose name starts with ``_`` are one chapter's private
helpers. :func:`chapter_modules` finds the chapters: adding one is adding a module (and its
notebook and claims), nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def chapter_modules() -> dict[str, ModuleType]:
    """Every chapter module by its notebook name (its ``NAME``), in book order (the notebooks'
    numbering)."""
    found = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.NAME] = module
    return dict(sorted(found.items()))
