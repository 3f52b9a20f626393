"""Sphinx extension of the jacnb book, loaded through ``sphinx.local_extensions`` in
``_config.yml``.

Jupyter Book 1.x with Sphinx 7 adds some extensions' inline scripts twice to every page (with
different priorities), and the second ``const THEBE_JS_URL = ...`` of sphinx-thebe is a
JavaScript error ("Identifier 'THEBE_JS_URL' has already been declared") in every reader's
console. This extension drops repeated scripts and stylesheets from each page's context before
the page is written.
"""

from __future__ import annotations

from typing import Any


def _asset_key(asset: Any) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a script or stylesheet is, whatever its priority (the two copies differ in that)."""
    attributes = getattr(asset, "attributes", {}) or {}
    filename = getattr(asset, "filename", None) or ""
    return filename, tuple(sorted((str(k), str(v)) for k, v in attributes.items()))


def dedupe_assets(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """``html-page-context`` handler: keep the first of identical scripts and stylesheets."""
    for key in ("script_files", "css_files"):
        assets = context.get(key)
        if not assets:
            continue
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        unique = []
        for asset in assets:
            k = _asset_key(asset)
            if k not in seen:
                seen.add(k)
                unique.append(asset)
        context[key] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", dedupe_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
