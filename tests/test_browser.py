"""The smoke book opened page by page in headless Chromium at 1440 x 900, as a reader sees it.

Every HTML page of the built book (the ``smoke_book`` session fixture, shared with
tests/test_notebooks.py) is loaded from disk, as the README tells readers to open it, and checked
for: console errors and failed requests, images that did not load (natural width 0), maths left
untypeset (raw ``$...$``, ``\\(``, ``\\[`` in the visible text, or a MathJax error), broken
internal links (missing file or anchor), visible progress bars or stderr blocks, code cells shown
expanded (except on the pages whose code is their content), and the layout a reader can take in
at a glance: no element outside the text column or scrolling sideways, no table row taller than
250 px, every figure between 60 % and 100 % of the column's width with its smallest text at least
9 px as rendered (read from the font record every figure's PNG carries), and the scorecard page
under 4,000 px tall. The API reference must list every public name of ``jacnb`` and the
own-training-loop page must have run in the build.

Needs Playwright's Python package (``pip install -e '.[test]'``) and a Chromium binary (Debian's
``chromium``, ``apt-get install chromium``; ``make test`` installs it when root). Playwright's
own browser download is not used: the test launches the system browser. Without either, the
test skips and says what is missing.
"""

from __future__ import annotations

import base64
import html as html_lib
import io
import os
import re
import shutil
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.slow

#: Where to look for the browser: $JACNB_CHROMIUM, then the PATH.
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORT = {"width": 1440, "height": 900}
#: The scorecard must be readable at a glance: its page at most this tall at VIEWPORT.
SCORECARD_MAX_HEIGHT = 4000
#: No table row taller than this (a row that wraps one wide cell into a narrow column).
MAX_ROW_HEIGHT = 250
#: Every figure drawn at most the column's width and at least this fraction of it.
MIN_FIGURE_FRACTION = 0.6
#: Pages whose code is their content (a tutorial): code cells are shown, not collapsed.
CODE_PAGES = {"own_training_loop.html"}

#: Raw TeX delimiters in visible (non-code) text: ``$x$``, ``$$``, ``\(``, ``\[``.
RAW_MATH = re.compile(r"\$[^$\s][^$]*\$|\$\$|\\\(|\\\[")
#: A tqdm bar in visible text.
PROGRESS = re.compile(r"\d+%\|")

# Everything measured in the page in one go; returns a dict of findings (lists of strings).
PAGE_PROBE = r"""
async ([MAX_ROW_HEIGHT, MIN_FIGURE_FRACTION]) => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  const visible = (el) => el.checkVisibility ? el.checkVisibility() : !!el.offsetParent;
  const images = Array.from(document.images);
  images.forEach((img) => { img.loading = "eager"; });
  await Promise.all(images.map((img) => img.decode().catch(() => null)));
  const brokenImages = images
    .filter((img) => img.naturalWidth === 0)
    .map((img) => img.getAttribute("src") || "(empty src)");

  // Visible prose text outside code, scripts and typeset maths.
  const skip = "pre, code, script, style, mjx-container, .MathJax, textarea, .highlight";
  const main = document.querySelector("article") || document.body;
  const walker = document.createTreeWalker(main, NodeFilter.SHOW_TEXT);
  const texts = [];
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!el || el.closest(skip) || !visible(el)) continue;
    texts.push(node.textContent);
  }
  const mathErrors = Array.from(document.querySelectorAll("mjx-merror"))
    .map((e) => e.getAttribute("data-mjx-error") || e.textContent);

  const stderr = Array.from(document.querySelectorAll(".output.stderr, .stderr"))
    .filter(visible).map((e) => e.textContent.trim().slice(0, 120));
  const expandedCode = Array.from(document.querySelectorAll("div.cell_input"))
    .filter((e) => visible(e) && !e.closest("details")).length;

  // The text column: the article's content box.
  const column = document.querySelector("article.bd-article") || main;
  const cs = getComputedStyle(column);
  const cr = column.getBoundingClientRect();
  const colLeft = cr.left + parseFloat(cs.paddingLeft) - 1;
  const colRight = cr.right - parseFloat(cs.paddingRight) + 1;
  const colWidth = colRight - colLeft - 2;
  const pageWide = document.documentElement.scrollWidth > window.innerWidth + 1;
  const describe = (el) => {
    const cls = (el.className && el.className.baseVal === undefined) ? el.className : "";
    const id = el.id ? `#${el.id}` : "";
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50);
    const first = cls ? "." + String(cls).split(" ")[0] : "";
    return `<${el.tagName.toLowerCase()}${id}${first}> ${text}`;
  };
  // No element overflows the text column or scrolls sideways (hidden ones aside; MathJax's
  // internals are measured through their container).
  const overflowing = [], scrolling = [];
  for (const el of column.querySelectorAll("*")) {
    if (!visible(el) || el.closest("mjx-container *")) continue;
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    if (r.right > colRight + 1 || r.left < colLeft - 1) {
      const span = `${Math.round(r.left - colLeft)}..${Math.round(r.right - colLeft)} px`;
      overflowing.push(`${span} of ${Math.round(colWidth)}: ${describe(el)}`);
    }
    const ox = getComputedStyle(el).overflowX;
    if ((ox === "auto" || ox === "scroll") && el.scrollWidth > el.clientWidth + 1) {
      scrolling.push(`${el.scrollWidth} > ${el.clientWidth} px: ${describe(el)}`);
    }
  }
  // Table rows.
  const tallRows = Array.from(column.querySelectorAll("tr")).filter(visible)
    .filter((tr) => tr.getBoundingClientRect().height > MAX_ROW_HEIGHT)
    .map((tr) => `${Math.round(tr.getBoundingClientRect().height)} px: ${describe(tr)}`);
  // Figures: every image in the column, at most its width and at least a fraction of it.
  const figures = Array.from(column.querySelectorAll("img"))
    .filter((img) => visible(img) && img.naturalWidth > 0)
    .map((img) => ({
      w: img.getBoundingClientRect().width,
      src: (img.getAttribute("src") || "").slice(0, 40),
      url: img.currentSrc || img.src,
    }));
  const badFigures = figures
    .filter((f) => f.w > colWidth + 2 || f.w < MIN_FIGURE_FRACTION * colWidth)
    .map((f) => `${Math.round(f.w)} px of a ${Math.round(colWidth)} px column: ${f.src}`);
  const height = document.documentElement.scrollHeight;
  const links = Array.from(document.querySelectorAll("a[href]")).map((a) => a.href);
  return {brokenImages, texts, mathErrors, stderr, expandedCode, pageWide, links, overflowing,
          scrolling, tallRows, badFigures, height, colWidth, figureWidths: figures.map((f) => f.w),
          figureUrls: figures.map((f) => [f.url, f.w])};
}
"""


def _chromium() -> str | None:
    env = os.environ.get("JACNB_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium, or a skip naming what is missing. Session-scoped and listed before
    ``smoke_book`` in the test's arguments, so a missing browser skips before the book is built."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser test: Playwright's Python package is missing (pip install '.[test]')")
    exe = _chromium()
    if exe is None:
        pytest.skip(
            "browser test: no Chromium found (apt-get install chromium, or set JACNB_CHROMIUM)"
        )
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()


def book_pages(html: Path) -> list[Path]:
    """Every page of the built book (not Sphinx's own folders ``_static``, ``_sources``, ...)."""
    return sorted(
        p
        for p in html.rglob("*.html")
        if not any(part.startswith("_") for part in p.relative_to(html).parts)
    )


def _resolve(page_path: Path, href: str) -> str:
    """``href`` relative to ``page_path`` as a file URL."""
    return (page_path.parent / href).resolve().as_uri()


@cache
def _anchors(path: Path) -> frozenset[str]:
    return frozenset(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def broken_links(links: list[str], html: Path) -> list[str]:
    """Links into the book (file URLs under ``html``) whose file or ``#anchor`` is missing."""
    bad = []
    for href in links:
        url = urlsplit(href)
        if url.scheme != "file":
            continue  # external links are not followed (no network)
        target = Path(unquote(url.path))
        if not target.is_relative_to(html):
            bad.append(f"{href} (outside the book)")
        elif target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            bad.append(f"{href} (no such file)")
        elif url.fragment and target.suffix == ".html":
            if unquote(url.fragment) not in _anchors(target):
                bad.append(f"{href} (no such anchor)")
    return sorted(set(bad))


def _png(url: str) -> bytes:
    if url.startswith("data:"):
        return base64.b64decode(url.split(",", 1)[1])
    return Path(unquote(urlsplit(url).path)).read_bytes()


def small_text(figures: list[list]) -> list[str]:
    """Figures whose smallest text renders below ``MIN_TEXT_PX``: each PNG the book shows says its
    smallest font (points) and resolution (``jacnb.lab.plotting.png_bytes``); at the rendered
    width that font is ``pt / 72 * dpi * rendered / natural`` CSS pixels tall."""
    from PIL import Image

    from jacnb.lab.plotting import MIN_TEXT_PX, PNG_DPI, PNG_MIN_FONT

    bad = []
    for url, width in figures:
        im = Image.open(io.BytesIO(_png(url)))
        name = url[:60] if url.startswith("data:") is False else "(inline figure)"
        if PNG_MIN_FONT not in getattr(im, "text", {}):
            bad.append(f"{name}: no font record (draw it with jacnb.lab.plotting.show)")
            continue
        px = float(im.text[PNG_MIN_FONT]) / 72 * float(im.text[PNG_DPI]) * width / im.size[0]
        if px < MIN_TEXT_PX - 0.05:
            bad.append(f"{name}: smallest text {px:.1f} px (< {MIN_TEXT_PX:g})")
    return bad


#: Sphinx's redirect page (``index.html`` -> the root document).
META_REFRESH = re.compile(r'<meta http-equiv="Refresh" content="0; url=([^"]+)"', re.I)


def check_page(browser, page_path: Path, html: Path) -> list[str]:
    """Open one page and return what is wrong with it (empty: nothing)."""
    redirect = META_REFRESH.match(page_path.read_text(errors="replace"))
    if redirect:  # nothing to render: check that it points to a page of the book
        return [f"broken link: {b}" for b in broken_links([_resolve(page_path, redirect[1])], html)]
    page = browser.new_page(viewport=VIEWPORT)
    problems: list[str] = []
    page.on(
        "console",
        lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None,
    )
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    try:
        page.goto(page_path.as_uri(), wait_until="load")
        found = page.evaluate(PAGE_PROBE, [MAX_ROW_HEIGHT, MIN_FIGURE_FRACTION])
    finally:
        page.close()
    problems += [f"image not loaded: {src}" for src in found["brokenImages"]]
    text = " ".join(found["texts"])
    problems += [f"untypeset maths: {m!r}" for m in sorted(set(RAW_MATH.findall(text)))[:5]]
    problems += [f"MathJax error: {m}" for m in found["mathErrors"]]
    problems += [f"progress bar in the page: {m!r}" for m in PROGRESS.findall(text)[:3]]
    problems += [f"visible stderr block: {s!r}" for s in found["stderr"]]
    if found["expandedCode"] and page_path.name not in CODE_PAGES:
        problems.append(f"{found['expandedCode']} code cells shown expanded (want hide-input)")
    problems += [f"outside the text column: {t}" for t in found["overflowing"][:8]]
    problems += [f"scrolls sideways: {t}" for t in found["scrolling"][:8]]
    problems += [f"table row taller than {MAX_ROW_HEIGHT} px: {t}" for t in found["tallRows"][:8]]
    problems += [f"figure width: {t}" for t in found["badFigures"]]
    problems += [f"figure text: {t}" for t in small_text(found["figureUrls"])]
    if page_path.name == "scorecard.html" and found["height"] >= SCORECARD_MAX_HEIGHT:
        problems.append(f"the scorecard is {found['height']} px tall (< {SCORECARD_MAX_HEIGHT})")
    if found["pageWide"]:
        problems.append("the page scrolls sideways")
    problems += [f"broken link: {b}" for b in broken_links(found["links"], html)]
    return problems


def test_every_page_reads_well_in_chromium(browser, smoke_book):
    html = smoke_book.html
    pages = book_pages(html)
    assert len(pages) >= len(smoke_book.executed) + 1
    report = {}
    for path in pages:
        problems = check_page(browser, path, html)
        if problems:
            report[str(path.relative_to(html))] = problems
    assert not report, "\n".join(
        f"{page}:\n  " + "\n  ".join(problems) for page, problems in report.items()
    )


def test_chapter_pages_offer_their_notebook_and_rerun_command(smoke_book):
    """Each chapter ends with the papermill command that regenerates it and a download of its
    executed notebook (the link target itself is checked in the browser test)."""
    for name in smoke_book.executed:
        page = (smoke_book.html / "executed" / f"{name}.html").read_text()
        text = html_lib.unescape(re.sub(r"<[^>]+>", "", page))  # code is split into spans
        assert f"papermill notebooks/{name}.ipynb" in text, name
        assert f"python -m jacnb.book --profile smoke --only {name}" in text, name
        assert re.search(rf'href="[^"]*_downloads/[^"]*/{name}\.ipynb"', page), name


def test_api_page_lists_every_public_name(smoke_book):
    """The API reference (book/api.md, Sphinx autodoc) documents every name of jacnb.__all__."""
    import jacnb

    page = (smoke_book.html / "api.html").read_text()
    ids = set(re.findall(r'\bid="jacnb\.([A-Za-z_][A-Za-z_0-9]*)"', page))
    missing = [n for n in jacnb.__all__ if n != "__version__" and n not in ids]
    assert not missing, f"public names without an entry on the API page: {missing}"


def test_own_training_loop_page_ran_in_the_build(smoke_book):
    """book/own_training_loop.md is executed by the HTML build (its outputs are on the page)."""
    page = html_lib.unescape((smoke_book.html / "own_training_loop.html").read_text())
    assert "test accuracy" in page and "mean ||J||_F^2" in page
    assert "batch_norm='coupled'" in page and "their R = " in page
