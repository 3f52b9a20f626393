"""How jacnb.book turns an executed notebook into a page: progress output removed, code cells
collapsed, a closing re-run section; and the build configuration it passes to Jupyter Book.
Fast (no kernel, no Sphinx): tests/test_browser.py checks the rendered result."""

from __future__ import annotations

import io
import warnings

import nbformat
import yaml
from tqdm import tqdm

from jacnb import book


def _tqdm_text(total: int | None, desc: str = "select lambda (0 cached)") -> str:
    """What a real tqdm bar writes to its stream (carriage returns and all)."""
    buf = io.StringIO()
    it = range(5) if total else iter(range(5))
    for _ in tqdm(it, total=total, desc=desc, file=buf, mininterval=0, miniters=1):
        pass
    return buf.getvalue()


def _stderr(text: str) -> dict:
    return nbformat.v4.new_output("stream", name="stderr", text=text)


def _notebook() -> nbformat.NotebookNode:
    warning = "/x/torch/jit/_script.py:1491: FutureWarning: `torch.jit.script` is deprecated\n"
    widget = nbformat.v4.new_output(
        "display_data",
        data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
            "text/plain": "  0%|          | 0/5 [00:00<?, ?it/s]",
        },
    )
    cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell('profile = "cpu"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell(
            "run()",
            outputs=[
                _stderr(_tqdm_text(5)),
                _stderr(_tqdm_text(None) + warning),
                _stderr("\n"),
                nbformat.v4.new_output("stream", name="stdout", text="50% done | kept\n"),
                widget,
            ],
        ),
        nbformat.v4.new_code_cell("secret()", metadata={"tags": ["remove-cell"]}),
    ]
    return nbformat.v4.new_notebook(cells=cells, metadata={"widgets": {"state": {}}})


def test_real_tqdm_output_is_recognised():
    for total in (5, None):
        lines = [ln for ln in _tqdm_text(total).replace("\r", "\n").splitlines() if ln.strip()]
        assert lines and all(book._PROGRESS_LINE.search(ln) for ln in lines), lines


def test_strip_progress_keeps_everything_but_the_bars():
    nb = _notebook()
    removed = book.strip_progress(nb)
    outs = nb.cells[3].outputs
    assert removed == 4  # one bar-only stream, one mixed stream, the blank one, the widget
    assert [o.get("name") for o in outs] == ["stderr", "stdout"]
    assert outs[0].text.strip().startswith("/x/torch/jit/_script.py:1491: FutureWarning")
    assert "%|" not in outs[0].text and "it/s" not in outs[0].text
    assert outs[1].text == "50% done | kept\n"  # stdout is never touched
    assert "widgets" not in nb.metadata
    assert book.stderr_texts(nb) == [outs[0].text.strip()[:160]]


def test_hide_code_collapses_code_but_not_markdown_or_tagged_cells():
    nb = _notebook()
    book.hide_code(nb)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert "hide-input" not in tags[0]  # markdown
    assert "hide-input" not in tags[1]  # default parameters: removed by hide_default_parameters
    assert "hide-input" in tags[2] and "hide-input" in tags[3]  # injected parameters, code
    assert tags[4] == ["remove-cell"]


def test_finish_page_on_disk(tmp_path, capsys):
    path = tmp_path / "02_fully_connected.ipynb"
    nbformat.write(_notebook(), path)
    book.finish_page(path, "02_fully_connected", {"profile": "smoke"})
    nb = nbformat.read(path, as_version=4)
    assert "remove-cell" in nb.cells[1].metadata["tags"]
    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Re-run this page")
    assert "{download}`02_fully_connected.ipynb <02_fully_connected.ipynb>`" in last.source
    assert "papermill notebooks/02_fully_connected.ipynb" in last.source
    assert "-p profile smoke --cwd notebooks" in last.source
    assert "python -m jacnb.book --profile smoke --only 02_fully_connected" in last.source
    assert "FutureWarning" in capsys.readouterr().out  # stderr is reported in the terminal
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nbformat.validate(nb)


def test_rerun_command_quotes_parameters():
    cmd = book.rerun_command("05_resnet", {"profile": "smoke", "note": "a b"})
    assert "-p profile smoke -p note 'a b'" in cmd


def test_build_config_makes_local_paths_absolute_and_points_at_local_mathjax(tmp_path):
    merged = book._build_config(book.REPO_ROOT / "_config.yml", tmp_path, local_mathjax=True)
    data = yaml.safe_load(merged.read_text())
    ext = data["sphinx"]["local_extensions"]["jacnb_pages"]
    assert (book.REPO_ROOT / "book" / "_ext" / "jacnb_pages.py").samefile(f"{ext}/jacnb_pages.py")
    cfg = data["sphinx"]["config"]
    assert cfg["mathjax_path"] == "../mathjax/tex-chtml.js"
    assert cfg["html_extra_path"] == ["_mathjax"]
    plain = yaml.safe_load(
        book._build_config(book.REPO_ROOT / "_config.yml", tmp_path, False).read_text()
    )
    assert "mathjax_path" not in plain["sphinx"]["config"]


def test_execution_report_lists_each_chapter_s_last_run(tmp_path):
    executed = tmp_path / "executed"
    book.record_execution(executed, "02_fully_connected", "cpu", 843.6, 1.7e9)
    book.record_execution(executed, "03_weight_norm", "cpu", 12.0, 1.7e9 + 900)
    text = book.write_execution_report(tmp_path).read_text()
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| chapter | profile | wall time |")
    assert len(lines) == 1 + len(book.CHAPTERS)
    row = next(ln for ln in lines if "02_fully_connected" in ln)
    assert "| cpu | 14 min 04 s |" in row and "2023-11-14 22:13 UTC" in row
    assert torch_version() in row
    assert "not executed into this book" in next(ln for ln in lines if "01_theory" in ln)
    assert "Device (every chapter): " in text
    assert all(ln.count("|") == lines[0].count("|") for ln in lines)


def torch_version() -> str:
    import torch

    return torch.__version__
