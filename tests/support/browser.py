"""A headless Chromium driven by Playwright, for the tests that look at the Prefect UI.

The tests drive the distribution's Chromium (Debian's ``chromium`` package,
``/usr/bin/chromium``), or the one named by ``OMNIFLASH_CHROMIUM``, never a browser build that
Playwright downloads (the test machines reach package registries only). ``make test`` installs
it first when it can (see the Makefile's ``browser`` target); a browser still missing fails the
test and says how to get one, or to leave these tests (marked ``browser``) out on purpose: a
test that skipped would hide that the UI was never looked at.

The page reaches nothing but loopback: the UI's own calls to the outside (its analytics) are
aborted before they leave, and Chromium's background services are off.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, sync_playwright

#: Where a Chromium other than the one on PATH is, when it is elsewhere.
CHROMIUM_ENV = "OMNIFLASH_CHROMIUM"
CHROMIUM_ARGS = [
    "--no-sandbox",  # the tests run as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: How long a page, an element or an image may take to appear on a loaded machine (ms).
UI_TIMEOUT_MS = 60_000
#: Any http(s) address but a loopback one.
_NOT_LOOPBACK = re.compile(r"^(?!https?://(127\.\d+\.\d+\.\d+|localhost|\[::1\])[:/])https?://")


def chromium_path() -> Path:
    """The Chromium to drive: ``OMNIFLASH_CHROMIUM``, else ``chromium`` on PATH; fails the
    test, saying how to get one, when there is none."""
    configured = os.environ.get(CHROMIUM_ENV)
    found = configured or shutil.which("chromium")
    if found and Path(found).is_file() and os.access(found, os.X_OK):
        return Path(found)
    where = (
        f"{CHROMIUM_ENV}={configured} is not an executable file"
        if configured
        else "there is no `chromium` on PATH"
    )
    pytest.fail(
        f"This test looks at the Prefect UI in Chromium, but {where}. Install it with "
        f"`apt-get install chromium` (Debian), or set {CHROMIUM_ENV}=/path/to/chromium; or "
        "leave the UI tests out with `make test BROWSER_TESTS=no` (`pytest -m 'not browser'`).",
        pytrace=False,
    )


def _abort(route: Route) -> None:
    route.abort()


@contextmanager
def browser_page(width: int = 1280, height: int = 900) -> Iterator[Page]:
    """A page of a fresh headless Chromium (no cookies, no saved UI preference), closed after."""
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.route(_NOT_LOOPBACK, _abort)
            yield context.new_page()
        finally:
            browser.close()
