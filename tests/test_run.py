"""``python -m jacnb.run`` (a chapter's grid without its notebook) and the check that rejects a
mistyped notebook parameter (issue 11)."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[1]


def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    params = nbformat.v4.new_code_cell('profile = "cpu"\nseed: int = 0\n')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("print(profile, seed)")]
    nbformat.write(nb, path)
    return path


def test_mistyped_parameter_is_an_error_naming_the_valid_ones(tmp_path: Path) -> None:
    from jacnb.run import check_parameters

    nb = _notebook(tmp_path / "nb.ipynb")
    check_parameters(nb, {"profile": "paper", "seed": 3})  # valid: nothing raised
    with pytest.raises(ValueError, match="profle") as err:
        check_parameters(nb, {"profle": "paper"})
    assert "profile" in str(err.value) and "seed" in str(err.value)


def test_book_rejects_a_mistyped_parameter_before_executing(tmp_path: Path, monkeypatch) -> None:
    import papermill

    from jacnb import book

    def must_not_run(*args, **kwargs):
        raise AssertionError("papermill ran the notebook with a mistyped parameter")

    monkeypatch.setattr(papermill, "execute_notebook", must_not_run)
    with pytest.raises(ValueError, match="profle"):
        book.execute_notebook(
            "02_fully_connected", "smoke", tmp_path, parameters={"profle": "paper"}
        )


@pytest.fixture
def fake_chapter(monkeypatch):
    """A stand-in ``jacnb.chapters.fake`` with the chapters' ``run`` interface."""
    calls: list[tuple] = []
    chapters = types.ModuleType("jacnb.chapters")
    chapters.__path__ = []  # a package
    fake = types.ModuleType("jacnb.chapters.fake")

    def run(profile: str = "cpu", *, executor=None, store=None):
        calls.append((profile, executor, store))

    fake.run = run
    monkeypatch.setitem(sys.modules, "jacnb.chapters", chapters)
    monkeypatch.setitem(sys.modules, "jacnb.chapters.fake", fake)
    return calls


def test_run_local_pool(fake_chapter) -> None:
    from jacnb.lab.store import LocalPool
    from jacnb.run import main

    assert main(["fake", "--profile", "paper", "--executor", "local", "--workers", "8"]) == 0
    ((profile, executor, store),) = fake_chapter
    assert profile == "paper" and executor == LocalPool(workers=8)
    assert store is None


def test_run_in_process_with_a_results_folder(fake_chapter, tmp_path: Path) -> None:
    from jacnb.run import main

    assert main(["fake", "--results", str(tmp_path)]) == 0
    ((profile, executor, store),) = fake_chapter
    assert profile == "cpu" and executor is None and store.root == tmp_path


def test_run_slurm_builds_a_submitit_job_array_executor(
    fake_chapter, tmp_path: Path, monkeypatch
) -> None:
    submitit = pytest.importorskip("submitit")
    bin_dir = tmp_path / "bin"  # submitit looks for srun to believe it is on a SLURM cluster
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    from jacnb.run import main

    argv = ["fake", "--profile", "paper", "--executor", "slurm", "--partition", "gpu"]
    argv += ["--gpus", "1", "--folder", str(tmp_path / "jobs"), "--timeout-min", "90"]
    assert main(argv) == 0
    ((_, executor, _),) = fake_chapter
    from jacnb.lab.store import SlurmArrayExecutor

    assert isinstance(executor, SlurmArrayExecutor)
    executor = executor.executor
    assert isinstance(executor, submitit.AutoExecutor) and executor.cluster == "slurm"
    params = executor._executor.parameters
    assert params["partition"] == "gpu" and params["gpus_per_node"] == 1
    assert params["time"] == 90


def test_run_unknown_chapter_names_the_valid_ones(capsys) -> None:
    from jacnb.run import main

    with pytest.raises(SystemExit):
        main(["no_such_chapter"])
    assert "no_such_chapter" in capsys.readouterr().err


def test_run_exits_3_naming_the_runs_a_cluster_lost(fake_chapter, monkeypatch, capsys) -> None:
    from jacnb.lab.store import LostRun, LostRunsError
    from jacnb.run import LOST_EXIT, main

    def run(profile: str = "cpu", *, executor=None, store=None):
        raise LostRunsError([LostRun({"experiment": "e", "seed": 1}, "7_1", "CANCELLED", "x")])

    monkeypatch.setattr(sys.modules["jacnb.chapters.fake"], "run", run)
    assert main(["fake"]) == LOST_EXIT == 3
    err = capsys.readouterr().err
    assert "7_1" in err and "CANCELLED" in err and "again" in err


# -- the papermill command a page prints refuses unknown parameters ----------------------------


def _checked_notebook(path: Path) -> Path:
    """A notebook shaped like the book's: parameters cell, then the check as the first call."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Py"}
    params = nbformat.v4.new_code_cell('# Parameters (overridden)\nprofile = "cpu"\n')
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell(
        "from jacnb.run import check_notebook_parameters\n\n"
        "check_notebook_parameters(globals())\nprint('trained at', profile)"
    )
    nb.cells = [params, check]
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    ("given", "named"), [({"profle": "smoke"}, "'profle' -> 'profile'"), ({"epochs": 1}, "epochs")]
)
def test_papermill_run_of_a_notebook_refuses_an_unknown_parameter(
    tmp_path: Path, monkeypatch, given, named
) -> None:
    papermill = pytest.importorskip("papermill")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    nb = _checked_notebook(tmp_path / "nb.ipynb")
    with pytest.raises(papermill.PapermillExecutionError) as err:
        papermill.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), parameters=given)
    assert named in str(err.value) and "valid: ['profile']" in str(err.value)
    done = papermill.execute_notebook(
        str(nb), str(tmp_path / "ok.ipynb"), parameters={"profile": "smoke"}
    )
    assert "trained at smoke" in done.cells[-1].outputs[0]["text"]


def test_every_notebook_checks_its_parameters_first() -> None:
    """The first code cell after each notebook's parameters cell calls the check before it
    runs anything."""
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        cells = [c for c in nb.cells if c.cell_type == "code"]
        first = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
        source = cells[first + 1].source
        call = source.index("check_notebook_parameters(globals())")
        assert "chapter.run(" not in source[:call], path.name


def test_check_notebook_parameters_outside_papermill_checks_nothing() -> None:
    from jacnb.run import check_notebook_parameters

    check_notebook_parameters({"_ih": ["", 'profile = "cpu"', "x = 1"], "x": 1})
    with pytest.raises(ValueError, match="epochs"):
        check_notebook_parameters({"_ih": ["", 'profile = "cpu"', "# Parameters\nepochs = 1\n"]})
