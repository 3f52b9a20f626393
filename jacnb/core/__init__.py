"""The papers' mathematics and the training machinery; knows no chapter.

``jacobian``, ``regularizers``, ``bounds``, ``lowrank``, ``models``, ``data``, ``prepare``,
``train``, ``stacked``, ``distributed``. Imports neither :mod:`jacnb.lab` nor
:mod:`jacnb.chapters` (``tests/test_architecture.py``).
"""
