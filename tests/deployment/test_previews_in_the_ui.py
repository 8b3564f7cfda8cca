"""A video's summary as a person sees it: the Prefect UI, in a real browser.

``omniflash generate`` runs ``generate_video`` against the emulator on a real ``prefect server
start``; the run's summary artifact is found through the Prefect API and its page opened in a
headless Chromium (:mod:`tests.support.browser`), in both of the server's UIs: the one at
``/artifacts/artifact/<id>`` (where Prefect's own links, such as a flow run's "View at", lead)
and the one at ``/v2/artifacts/artifact/<id>`` (where a fresh browser lands from the UI's root).
The preview images embedded in the summary's markdown must be there and decoded.

A screenshot of each page is saved in the test's temporary directory; with
``OMNIFLASH_WRITE_SCREENSHOTS=1``, the default UI's one is also written to
``docs/ui-video-summary.png`` for the README.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import pytest
from playwright.sync_api import Page
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer
from omniflash_prefect.video.observability import artifact_key
from tests.support.browser import browser_page
from tests.support.processes import BIN, REPO, PrefectServer, api, fast_worker_env

pytestmark = [pytest.mark.slow, pytest.mark.browser]

COMMAND = [
    str(BIN / "omniflash"),
    "generate",
    "a dancer on a rooftop at dusk",
    "--duration",
    "6",
    "--resolution",
    "1080p",
    "--aspect-ratio",
    "9:16",
    "--json",
]
#: The heading ``render_summary`` opens the markdown with: once shown, the markdown is rendered.
SUMMARY_HEADING = "Video generated"
#: The summary's preview images, by the start of their alt text.
PREVIEWS = 'img[alt^="poster"], img[alt^="contact sheet"]'
#: Once the summary's heading is on the page and every preview has loaded or failed
#: (``complete``): each preview's alt text and decoded width.
PREVIEWS_SHOWN = """([heading, previews]) => {
    const headings = [...document.querySelectorAll("h1")].map((h) => h.textContent.trim());
    const images = [...document.querySelectorAll(previews)];
    if (!headings.includes(heading) || !images.every((image) => image.complete)) return null;
    return images.map((image) => [image.alt, image.naturalWidth]);
}"""
SCREENSHOT_FOR_README = REPO / "docs" / "ui-video-summary.png"


@dataclass(frozen=True)
class Summary:
    """The summary artifact of one ``generate_video`` run."""

    artifact_id: UUID
    task_id: str
    flow_run_id: UUID


@pytest.fixture(scope="module")
def summary(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> Summary:
    """One ``omniflash generate --json`` on the server against the emulator, and its summary."""
    config = EmulatorConfig(job_seconds=0.5, api_key=f"sk-previews-{uuid.uuid4().hex}")
    workdir = tmp_path_factory.mktemp("generate")
    with EmulatorServer(config) as emulator:
        env = fast_worker_env(prefect_server, workdir / "videos")
        env.update(OMNIFLASH_API_KEY=emulator.api_key, OMNIFLASH_BASE_URL=emulator.base_url)
        result = subprocess.run(
            COMMAND, cwd=workdir, env=env, capture_output=True, text=True, timeout=180, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["status"] == "archived", report
    flow_run_id = UUID(report["flow_run_id"])
    with api(prefect_server) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    key = artifact_key("summary", report["task_id"])
    found = [artifact for artifact in artifacts if artifact.key == key]
    assert len(found) == 1, [artifact.key for artifact in artifacts]
    assert found[0].type == "markdown"
    return Summary(found[0].id, report["task_id"], flow_run_id)


def look_at_summary(page: Page, url: str, flow_run_id: UUID, screenshot: Path) -> dict[str, int]:
    """Open a summary artifact's page, wait for its markdown and for every preview in it to have
    loaded or failed, and screenshot it: each preview's decoded width (0: the browser could not
    show it), by alt text.

    The default UI mounts the markdown again once the link to the artifact's run is shown, so
    that link is awaited first, and the heading and the images are read in one evaluation: they
    come from one render of the markdown, never from two.
    """
    page.goto(url)
    page.locator(f'a[href*="/flow-run/{flow_run_id}"]').first.wait_for()
    shown = page.wait_for_function(PREVIEWS_SHOWN, arg=[SUMMARY_HEADING, PREVIEWS])
    page.screenshot(path=screenshot, full_page=True)
    return {str(alt): int(width) for alt, width in shown.json_value()}


@pytest.mark.parametrize(
    ("route", "for_readme"),
    [
        pytest.param("/artifacts/artifact/{id}", False, id="linked-ui"),
        pytest.param("/v2/artifacts/artifact/{id}", True, id="default-ui"),
    ],
)
def test_the_summary_page_shows_the_videos_previews(
    prefect_server: PrefectServer, summary: Summary, route: str, for_readme: bool, tmp_path: Path
) -> None:
    """The summary's page shows the video's poster and contact sheet, both decoded."""
    url = prefect_server.api_url.removesuffix("/api") + route.format(id=summary.artifact_id)
    screenshot = tmp_path / "ui-video-summary.png"
    with browser_page() as page:
        widths = look_at_summary(page, url, summary.flow_run_id, screenshot)
    poster = f"poster of {summary.task_id}"
    assert poster in widths, f"no image {poster!r} on {url}; its previews: {widths}"
    assert widths[poster] > 0, f"the poster was not decoded: {widths}"
    sheets = {alt: width for alt, width in widths.items() if alt.startswith("contact sheet")}
    assert sheets, f"no contact sheet on {url}: {widths}"
    assert all(sheets.values()), f"a contact sheet was not decoded: {sheets}"
    if for_readme and os.environ.get("OMNIFLASH_WRITE_SCREENSHOTS") == "1":
        SCREENSHOT_FOR_README.parent.mkdir(exist_ok=True)
        SCREENSHOT_FOR_README.write_bytes(screenshot.read_bytes())
