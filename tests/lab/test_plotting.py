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


def test_figures_keep_their_text_readable_at_the_column_width():
    """A wide figure with a long provenance line: after :func:`png_bytes` its smallest text is
    at least MIN_TEXT_PX when the saved image is scaled to the column (the PNG says its
    smallest font and dpi, which tests/test_browser.py reads back on the page)."""
    import io

    import matplotlib.pyplot as plt
    from PIL import Image

    from jacnb.lab import plotting as P

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    for ax in axes:
        ax.plot([1, 2, 3])
        ax.set_title("panel")
        ax.legend(["a line"], fontsize=7)
    P.stamp(fig, "profile=smoke; " + "a long provenance line; " * 20)
    im = Image.open(io.BytesIO(P.png_bytes(fig)))
    pt, dpi = float(im.text[P.PNG_MIN_FONT]), float(im.text[P.PNG_DPI])
    assert pt / 72 * dpi * P.COLUMN_PX / im.size[0] >= P.MIN_TEXT_PX
    assert im.size[0] <= 14.5 * dpi  # the wrapped provenance line does not widen the image


def test_fig3_draws_no_empty_panel_and_names_the_absent_dataset():
    import pandas as pd

    from jacnb.chapters import _fc_plots
    from jacnb.lab.datasets import Panel

    runs = pd.DataFrame(
        {
            "dataset": ["digits"] * 4,
            "depth": [2, 2, 3, 3],
            "n_train": [300] * 4,
            "regularizer": ["jacobian", "weight_decay"] * 2,
            "test_acc": [0.9, 0.8, 0.85, 0.8],
        }
    )
    panels = [
        Panel("mnist", "digits", "digits (stand-in for MNIST)", ""),
        Panel("cifar10", None, "CIFAR-10", "not run: dataset absent"),
    ]
    labels = {"jacobian": "Jacobian reg.", "weight_decay": "weight decay"}
    fig = _fc_plots.fig3(runs, panels, labels, "profile=smoke")
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 1
    texts = " ".join(t.get_text() for t in fig.texts)
    assert "CIFAR-10 not drawn: not run: dataset absent" in texts and "profile=smoke" in texts
    fig.canvas.draw()
    assert fig.axes[0].get_position().width > 0.75  # the panel with data fills the width


def test_a_figure_without_runs_is_a_note_not_an_empty_panel():
    import pandas as pd

    from jacnb.chapters import _fc_plots, _weight_norm_plots
    from jacnb.lab.datasets import Panel

    labels = {"jacobian": "Jacobian reg.", "weight_decay": "weight decay"}
    absent = [Panel("MNIST", None, "MNIST: not run", "not run: dataset absent (mnist)")]
    for fig in (
        _fc_plots.fig3(pd.DataFrame(), absent, labels),
        _weight_norm_plots.fig4(pd.DataFrame(), note="not run: dataset absent (mnist)"),
        _weight_norm_plots.fig4_trends(pd.DataFrame(), note="not run: dataset absent (mnist)"),
        _weight_norm_plots.fig4_values(pd.DataFrame(), note="not run: dataset absent (mnist)"),
        _weight_norm_plots.bounds_vs_depth(pd.DataFrame(), note="not run: dataset absent (mnist)"),
    ):
        (ax,) = fig.axes
        assert not ax.axison and not ax.lines and not ax.collections
        assert "not run: dataset absent (mnist)" in " ".join(t.get_text() for t in ax.texts)
        plt.close(fig)


def test_png_bytes_of_a_figure_without_a_canvas():
    """A ``matplotlib.figure.Figure()`` made directly (no pyplot) has a bare canvas."""
    from matplotlib.figure import Figure

    from jacnb.lab.plotting import png_bytes

    fig = Figure(figsize=(12, 3))
    fig.add_subplot().set_title("t")
    assert png_bytes(fig)[:4] == b"\x89PNG"
