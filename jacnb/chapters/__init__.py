"""One module per notebook of the book, named like the notebook (``notebooks/02_fully_connected``
-> :mod:`jacnb.chapters.fully_connected`), each with the same small interface: ``SETTINGS``,
``configs(settings)``, ``run(profile)`` returning a result whose methods give the chapter's
frames, figures and ``verdicts()``.
"""
