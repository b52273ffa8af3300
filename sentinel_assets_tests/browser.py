"""Headless Chromium (Debian's ``chromium`` package) driven by Playwright's sync API.

Playwright's own browser builds cannot be downloaded here (no ``playwright install``), so the
system browser is launched through ``executable_path``. Typical use::

    text = screenshot_page(f"{base_url}/assets/letter_rows", tmp_path / "asset.png",
                           wait_for_text=["letter_rows", "Latest materialization"])
    assert "Materialized" in text

For several pages, open the browser once::

    with chromium_page() as page:
        a = capture(page, f"{base_url}/asset-groups", tmp_path / "graph.png")
        b = capture(page, f"{base_url}/assets/letter_rows", tmp_path / "asset.png")

The Dagster UI is a React app: ``load``/``networkidle`` fire before the data and the asset
graph layout (computed in a web worker) are on screen. :func:`capture` therefore also waits
for the caller's texts/selector, then until no ``[role=progressbar]`` spinner is shown and the
page text has stopped changing. It also clicks away the "Join the Dagster community" dialog,
which the UI shows on 127.0.0.1/localhost until ``$DAGSTER_HOME/.nux/nux.yaml`` exists
(``webserver.write_test_instance_yaml`` creates that file, so normally it never appears).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

__all__ = [
    "CHROMIUM_ARGS",
    "CHROMIUM_PATH",
    "capture",
    "chromium_page",
    "require_chromium",
    "screenshot_page",
]

CHROMIUM_PATH = os.environ.get("SENTINEL_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
SPINNER_SELECTOR = "[role=progressbar]"
# Parts of the UI text that tick by themselves: the "refresh in 0:59" countdown next to the
# refresh button and relative times ("12 seconds ago"). Ignored when deciding "settled".
_TICKING = re.compile(
    r"^\s*\d{1,2}:\d{2}\s*$|\b(?:\d+|an?) (?:second|minute|hour|day)s? ago\b", re.MULTILINE
)


def require_chromium() -> None:
    """``pytest.skip`` (with the install commands) unless Chromium and Playwright are here."""
    missing = []
    if not (os.path.isfile(CHROMIUM_PATH) and os.access(CHROMIUM_PATH, os.X_OK)):
        missing.append(f"{CHROMIUM_PATH} (apt-get update && apt-get install -y chromium)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install 'playwright==1.65.2')")
    if missing:
        pytest.skip("UI test needs " + " and ".join(missing))


@contextlib.contextmanager
def chromium_page(
    *, width: int = 1600, height: int = 1000, extra_args: Sequence[str] = ()
) -> Iterator[Page]:
    """Launch headless Chromium, yield a fresh page, close everything on exit."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM_PATH,
            args=[*CHROMIUM_ARGS, *extra_args],
            headless=True,
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()


def _dismiss_community_dialog(page: Page) -> None:
    dialog = page.get_by_text("Join the Dagster community")
    if dialog.count() and dialog.first.is_visible():
        page.get_by_role("button", name="Skip").click(timeout=5_000)
        dialog.first.wait_for(state="hidden", timeout=5_000)


def _wait_until_settled(page: Page, deadline: float, stable_polls: int = 3) -> None:
    """Until no spinner is visible and the body text is unchanged for ``stable_polls`` polls."""
    last, stable = None, 0
    while time.monotonic() < deadline:
        _dismiss_community_dialog(page)
        spinning = page.locator(SPINNER_SELECTOR).count() > 0
        text = _TICKING.sub("", page.inner_text("body"))
        if not spinning and text.strip() and text == last:
            stable += 1
            if stable >= stable_polls:
                return
        else:
            stable = 0
        last = text
        page.wait_for_timeout(400)
    raise TimeoutError(f"page {page.url} did not settle (spinner or changing text)")


def capture(
    page: Page,
    url: str,
    screenshot_path: Path,
    *,
    wait_for_text: str | Sequence[str] = (),
    wait_for_selector: str | None = None,
    timeout: float = 60.0,
    full_page: bool = False,
) -> str:
    """Open ``url`` in ``page``, wait until rendered, save a PNG, return the page's text."""
    deadline = time.monotonic() + timeout

    def ms_left() -> int:
        return max(1_000, int((deadline - time.monotonic()) * 1000))

    screenshot_path = Path(screenshot_path)
    screenshot_path.parent.mkdir(parents=True, exist_ok=True)
    texts = [wait_for_text] if isinstance(wait_for_text, str) else list(wait_for_text)
    try:
        page.goto(url, wait_until="domcontentloaded", timeout=ms_left())
        with contextlib.suppress(Exception):  # the UI polls; networkidle may never come
            page.wait_for_load_state("networkidle", timeout=min(15_000, ms_left()))
        for text in texts:
            # .first alone may pick a hidden copy of a label
            page.get_by_text(text).filter(visible=True).first.wait_for(timeout=ms_left())
        if wait_for_selector:
            selector = page.locator(wait_for_selector).filter(visible=True)
            selector.first.wait_for(timeout=ms_left())
        _wait_until_settled(page, deadline)
    except Exception as exc:  # keep what the page showed, for debugging
        failed = screenshot_path.with_suffix(".failed.png")
        with contextlib.suppress(Exception):
            page.screenshot(path=str(failed), full_page=full_page)
            exc.add_note(f"page {page.url} at failure: {failed}\n{page.inner_text('body')[:2000]}")
        raise
    page.screenshot(path=str(screenshot_path), full_page=full_page)
    return page.inner_text("body")


def screenshot_page(
    url: str,
    screenshot_path: Path,
    *,
    wait_for_text: str | Sequence[str] = (),
    wait_for_selector: str | None = None,
    timeout: float = 60.0,
    full_page: bool = False,
    width: int = 1600,
    height: int = 1000,
) -> str:
    """One-shot: launch Chromium, :func:`capture` ``url``, close. Returns the page text."""
    with chromium_page(width=width, height=height) as page:
        return capture(
            page,
            url,
            screenshot_path,
            wait_for_text=wait_for_text,
            wait_for_selector=wait_for_selector,
            timeout=timeout,
            full_page=full_page,
        )
