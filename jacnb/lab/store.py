"""The result store: one JSON record per finished run, keyed by a hash of its config.

Records are written atomically (temporary file + ``os.replace``), so a run killed mid-write
leaves either no record or a complete one. :func:`run_grid` skips every config whose record
exists, so re-running a notebook repeats nothing and a killed grid resumes where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_root() -> Path:
    """``$JACNB_RESULTS`` or ``<repo>/results``."""
    return Path(os.environ.get("JACNB_RESULTS", REPO_ROOT / "results"))


def canonical(config: Mapping[str, Any]) -> str:
    """The config as canonical JSON (sorted keys), the input of :func:`config_key`."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)


def config_key(config: Mapping[str, Any]) -> str:
    """A stable 16-hex-digit key: SHA-256 of the canonical JSON of the config."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()[:16]


class ResultStore:
    """A folder of ``<experiment>/<key>.json`` records: ``{"config": ..., "result": ...}``."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()

    def path(self, config: Mapping[str, Any]) -> Path:
        experiment = str(config.get("experiment", "misc"))
        return self.root / experiment / f"{config_key(config)}.json"

    def has(self, config: Mapping[str, Any]) -> bool:
        return self.path(config).exists()

    def get(self, config: Mapping[str, Any]) -> dict[str, Any] | None:
        path = self.path(config)
        if not path.exists():
            return None
        return json.loads(path.read_text())["result"]

    def put(self, config: Mapping[str, Any], result: Mapping[str, Any]) -> Path:
        """Write the record atomically; returns its path."""
        path = self.path(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {"key": config_key(config), "config": dict(config), "result": dict(result)}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(record, fh, default=_jsonable)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    def checkpoint_path(self, config: Mapping[str, Any]) -> Path:
        """Where the model weights of a run are kept (beside its record)."""
        return self.path(config).with_suffix(".pt")

    def records(self, experiment: str | None = None) -> list[dict[str, Any]]:
        pattern = f"{experiment}/*.json" if experiment else "*/*.json"
        return [json.loads(p.read_text()) for p in sorted(self.root.glob(pattern))]

    def frame(self, experiment: str | None = None) -> pd.DataFrame:
        """Tidy DataFrame: one row per run, config keys and scalar results as columns.

        Non-scalar results (curves, lists) stay in their cell as lists.
        """
        rows = []
        for rec in self.records(experiment):
            row = {"key": rec["key"], **rec["config"]}
            for name, value in rec["result"].items():
                row[name if name not in row else f"result_{name}"] = value
            rows.append(row)
        return pd.DataFrame(rows)


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def trained_model(
    config: Mapping[str, Any],
    build: Callable[[], Any],
    fit: Callable[[Any], Mapping[str, Any]],
    store: ResultStore | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A model trained under ``config``: loaded from the store if it was trained before.

    ``build()`` returns a fresh ``nn.Module``; ``fit(model)`` trains it in place and returns its
    metrics. The weights are saved atomically before the record, so a record always has them.
    """
    import torch

    store = store or ResultStore()
    model = build()
    ckpt = store.checkpoint_path(config)
    result = store.get(config)
    if result is not None and ckpt.exists():
        model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        model.eval()
        return model, result
    result = dict(fit(model))
    model.cpu().eval()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=ckpt.parent, prefix=".tmp-", suffix=".pt")
    os.close(fd)
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, ckpt)
    store.put(config, result)
    return model, result


def run_grid(
    configs: Iterable[Mapping[str, Any]],
    run: Callable[[Mapping[str, Any]], Mapping[str, Any]],
    store: ResultStore | None = None,
    desc: str = "runs",
    progress: bool = True,
    executor: Any = None,
) -> pd.DataFrame:
    """Run ``run(config)`` for every config without a stored record; return all their records.

    Each finished run is stored before the next starts, so an interrupted grid loses at most
    the run in flight. ``executor``: where the runs go (``None``: here, one after another);
    parallel and cluster executors are issue 11.
    """
    if executor is not None:
        raise NotImplementedError("run_grid(executor=...): parallel execution is issue 11")
    store = store or ResultStore()
    configs = list(configs)
    todo = [c for c in configs if not store.has(c)]
    for config in tqdm(
        todo, desc=f"{desc} ({len(configs) - len(todo)} cached)", disable=not progress
    ):
        store.put(config, run(config))
    keys = {config_key(c) for c in configs}
    frame = pd.concat([store.frame(e) for e in {str(c.get("experiment", "misc")) for c in configs}])
    return frame[frame["key"].isin(keys)].reset_index(drop=True) if len(frame) else frame
