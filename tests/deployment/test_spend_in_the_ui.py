"""A spend limit as a person sees it: the Prefect UI's Variables and Blocks pages, in a browser.

``omniflash spend-limit set NAME --per-day 2`` makes a limit on a real ``prefect server start``,
then ``omniflash generate --duration 10 --spend-limit NAME`` pays for one 10 s 720p video on the
emulator (0.4). Both pages are then opened in a headless Chromium (:mod:`tests.support.browser`),
in both of the server's UIs: the one at ``/...`` (where Prefect's own links lead) and the one at
``/v2/...`` (where a fresh browser lands from the UI's root).

* **Variables** (``/variables``, ``/v2/variables``): the variable ``omniflash-spend-NAME`` is
  listed, and its value, read off the page, is the limit's view: spent 0.4 of a limit of 2. Neither
  UI has a page of its own for a variable, and neither shows the whole value in the table: the
  default UI cuts it short with an ellipsis and shows all of it in a card when the pointer rests on
  it; the linked UI shows a "click to view" button that opens the variable's edit dialog, the value
  on one line. Each test reads the value where that UI shows it whole (nothing is saved).
* **Blocks** (``/blocks``, ``/v2/blocks``): the limit is listed by its name as an *Omni-Flash-Ext
  Spend Limit*, and its name leads to the block's own page, which shows its amount, 2.

A screenshot of each page is saved in the test's temporary directory; with
``OMNIFLASH_WRITE_SCREENSHOTS=1``, the default UI's Variables page, its value card open, is also
written to ``docs/ui-spend-limit.png`` for the README.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.video.spend_limits import OmniFlashSpendLimit, variable_name
from tests.support.browser import UI_TIMEOUT_MS, browser_page
from tests.support.processes import BIN, REPO, PrefectServer, fast_worker_env

pytestmark = [pytest.mark.slow, pytest.mark.browser]

LIMIT = 2.0
#: What the emulator charges for one 10 s 720p video.
PRICE = 0.4
#: The block type's name, as the Blocks page shows it.
BLOCK_TYPE_NAME = OmniFlashSpendLimit.get_block_type_name()
#: On a block's page, in either UI: the text of what follows the field label ``label`` (the
#: linked UI's key-value's value, the default UI's ``<dd>``), once the label is shown.
FIELD_SHOWN = """(label) => {
    const labels = [...document.body.querySelectorAll("*")].filter(
        (element) => element.children.length === 0 && element.textContent.trim() === label
    );
    const value = labels.map((element) => element.nextElementSibling).find(Boolean);
    return value ? value.textContent.trim() : null;
}"""
SCREENSHOT_FOR_README = REPO / "docs" / "ui-spend-limit.png"


@dataclass(frozen=True)
class SpentLimit:
    """A spend limit one ``omniflash generate`` spent on."""

    name: str

    @property
    def variable(self) -> str:
        return variable_name(self.name)


def omniflash(*args: str, cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """An ``omniflash ... --json`` command that must exit 0: what it printed, as JSON."""
    result = subprocess.run(
        [str(BIN / "omniflash"), *args, "--json"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


@pytest.fixture(scope="module")
def spent(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> SpentLimit:
    """A limit of 2 a day, and one 10 s video generated on it against the emulator."""
    name = f"ui-{uuid.uuid4().hex[:8]}"
    config = EmulatorConfig(job_seconds=0.5, api_key=f"sk-spend-ui-{uuid.uuid4().hex}")
    workdir = tmp_path_factory.mktemp("spend")
    with EmulatorServer(config) as emulator:
        env = fast_worker_env(prefect_server, workdir / "videos")
        env.update(OMNIFLASH_API_KEY=emulator.api_key, OMNIFLASH_BASE_URL=emulator.base_url)
        made = omniflash(
            "spend-limit", "set", name, "--per-day", f"{LIMIT:g}", cwd=workdir, env=env
        )
        assert (made["limit"], made["spent"]) == (LIMIT, 0), made
        report = omniflash(
            "generate",
            "a red kite over the dunes",
            "--duration",
            "10",
            "--spend-limit",
            name,
            cwd=workdir,
            env=env,
        )
    assert report["status"] == "archived", report
    assert report["cost"] == pytest.approx(PRICE), report
    return SpentLimit(name)


def value_in_the_default_ui(page: Page, row: Locator, variable: str) -> Locator:
    """The default UI cuts the value short in the table and shows it whole in a card (a read-only
    editor) while the pointer rests on it."""
    row.locator("code").hover()
    return page.locator('[data-slot="hover-card-content"]').get_by_role("textbox")


def value_in_the_linked_ui(page: Page, row: Locator, variable: str) -> Locator:
    """The linked UI shows "click to view" in the table; the button opens the variable's edit
    dialog, whose value field shows the value on one line."""
    row.get_by_role("button", name="click to view").click()
    dialog = page.get_by_role("dialog").filter(has_text=f"Edit {variable}")
    return dialog.locator(".p-code-input code")


def read_json(shown: Locator, url: str) -> dict[str, Any]:
    """The JSON ``shown`` holds once it is on the page; fails with its text if it is not JSON."""
    shown.wait_for()
    text = shown.inner_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        pytest.fail(f"the variable's value on {url} is not JSON: {text!r}", pytrace=False)
    assert isinstance(value, dict), f"the variable's value on {url} is not an object: {text!r}"
    return value


@pytest.mark.parametrize(
    ("route", "value_of", "for_readme"),
    [
        pytest.param("/variables", value_in_the_linked_ui, False, id="linked-ui"),
        pytest.param("/v2/variables", value_in_the_default_ui, True, id="default-ui"),
    ],
)
def test_the_variables_page_shows_what_the_limit_spent(
    prefect_server: PrefectServer,
    spent: SpentLimit,
    route: str,
    value_of: Callable[[Page, Locator, str], Locator],
    for_readme: bool,
    tmp_path: Path,
) -> None:
    """The limit's variable is listed, and its value shows 0.4 spent of 2, 1.6 remaining."""
    url = prefect_server.api_url.removesuffix("/api") + route
    screenshot = tmp_path / "ui-spend-limit.png"
    with browser_page() as page:
        page.goto(url)
        row = page.locator("tr").filter(has=page.get_by_text(spent.variable, exact=True))
        row.wait_for()
        value = read_json(value_of(page, row, spent.variable), url)
        page.screenshot(path=screenshot, full_page=True, animations="disabled")
    assert value.get("name") == spent.name, f"the value of {spent.variable} on {url}: {value}"
    assert value.get("limit") == LIMIT, f"the limit on {url} is not {LIMIT:g}: {value}"
    assert value.get("spent") == pytest.approx(PRICE), f"spent on {url} is not {PRICE}: {value}"
    assert value.get("remaining") == pytest.approx(LIMIT - PRICE), value
    assert (value.get("reserved"), value.get("videos"), value.get("in_flight")) == (0, 1, 0), value
    if for_readme and os.environ.get("OMNIFLASH_WRITE_SCREENSHOTS") == "1":
        SCREENSHOT_FOR_README.parent.mkdir(exist_ok=True)
        SCREENSHOT_FOR_README.write_bytes(screenshot.read_bytes())


@pytest.mark.parametrize(
    "ui", [pytest.param("", id="linked-ui"), pytest.param("/v2", id="default-ui")]
)
def test_the_blocks_page_shows_the_limit(
    prefect_server: PrefectServer, spent: SpentLimit, ui: str, tmp_path: Path
) -> None:
    """The Blocks page lists the limit by its name and type; the name leads to its block's page,
    which shows the limit's amount."""
    base = prefect_server.api_url.removesuffix("/api")
    url = f"{base}{ui}/blocks"
    with browser_page() as page:
        page.goto(url)
        name = page.get_by_role("link", name=spent.name, exact=True)
        row = page.locator("tr").filter(has=name)
        row.wait_for()
        listed = row.get_by_role("link").all_inner_texts()
        page.screenshot(path=tmp_path / "ui-blocks.png", full_page=True)
        assert BLOCK_TYPE_NAME in [text.strip() for text in listed], (
            f"the row of {spent.name!r} on {url} does not say it is a {BLOCK_TYPE_NAME}: {listed}"
        )
        name.click()
        page.wait_for_url(f"{base}{ui}/blocks/block/*")
        amount = page.wait_for_function(FIELD_SHOWN, arg="Limit").json_value()
        page.screenshot(path=tmp_path / "ui-spend-limit-block.png", full_page=True)
        assert amount == f"{LIMIT:g}", f"the block page {page.url} shows the limit {amount!r}"
        expect(page).to_have_title(re.compile(re.escape(spent.name)), timeout=UI_TIMEOUT_MS)
