"""jacnb.lab.plotting.pick_figure: the figure asked for, the others closed; a note when absent."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from jacnb.lab.plotting import pick_figure  # noqa: E402


def test_pick_figure_closes_the_others_and_says_what_is_missing():
    plt.close("all")
    figs = {"a": plt.figure(), "b": plt.figure()}
    assert pick_figure(figs, "a", "a: not run") is figs["a"]
    assert plt.get_fignums() == [figs["a"].number]
    plt.close("all")
    note = pick_figure({"b": plt.figure()}, "a", "a: not run")
    assert plt.get_fignums() == [note.number]
    assert [t.get_text() for t in note.axes[0].texts] == ["a: not run"]
    plt.close("all")
