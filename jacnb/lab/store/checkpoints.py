"""Single trained models kept with their weights beside their record (:func:`trained_model`),
used by the theory chapter (``notebooks/01_theory``) for the nets its checks need whole.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from typing import Any

from jacnb.lab.store.records import write_atomic
from jacnb.lab.store.result_store import ResultStore


def trained_model(
    config: Mapping[str, Any],
    build: Callable[[], Any],
    fit: Callable[[Any], Mapping[str, Any]],
    store: ResultStore | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A model trained under ``config``: loaded from the store if it was trained before.

    ``build()`` returns a fresh ``nn.Module``; ``fit(model)`` trains it in place and returns its
    metrics. The weights are saved atomically before the record, so a record always has them;
    weights that do not load are quarantined (with a warning) and the model is trained again.
    """
    import torch

    store = store or ResultStore()
    model = build()
    ckpt = store.checkpoint_path(config)
    result = store.get(config)
    if result is not None and ckpt.exists():
        try:
            state = torch.load(ckpt, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - any damage: set aside and retrain
            store.quarantine(ckpt, f"weights do not load: {type(err).__name__}: {err}")
            model = build()
        else:
            model.eval()
            return model, result
    result = dict(fit(model))
    model.cpu().eval()
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    write_atomic(ckpt, buffer.getvalue())
    store.put(config, result, replace=True)  # new weights: their record replaces the old
    return model, result
