"""What every chapter shares: ``settings`` (profiles), ``store`` (result store, ``run_grid``),
``datasets``, ``verdicts``, ``tables``, ``timing`` (step timers), ``plotting``, ``paper`` (the
papers' reported numbers). Imports :mod:`jacnb.core`, never :mod:`jacnb.chapters`.
"""
