"""What the commands print when stdout is a file or a pipe: tables whole, one row a line."""

from __future__ import annotations

import io
from uuid import uuid4

import pytest
from rich.console import Console

from omniflash_prefect import BatchItem, BatchReport
from omniflash_prefect.cli import rendering
from omniflash_prefect.cli.batch_commands import BatchOutcome
from omniflash_prefect.core.media import unreadable

TASK_ID = "task_01KS1H7ZYSJWH1N779S2FSHTKA"
LOCATION = "/srv/archive/omniflash/2026-05-20/" + "deep/" * 12 + f"{TASK_ID}.mp4"
ERROR = "the transfer broke after 3 attempts: " + "connection reset by peer, " * 6 + "gave up"


@pytest.fixture
def piped(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """stdout as a pipe of the width Rich assumes for one (80 columns), not a terminal."""
    out = io.StringIO()
    monkeypatch.setattr(rendering, "console", Console(file=out, width=80, color_system=None))
    return out


def test_batch_tables_never_cut_or_wrap_ids_locations_or_errors(piped: io.StringIO) -> None:
    items = [
        BatchItem(id="row-with-a-long-name-1", status="failed", task_id=TASK_ID, error=ERROR),
        BatchItem(
            id="row-2",
            status="archived",
            task_id=TASK_ID.replace("A", "B"),
            location=LOCATION,
            media=unreadable("bad data"),
        ),
    ]
    outcome = BatchOutcome(report=BatchReport.of("nightly", items, 1.0), flow_run_id=uuid4())
    rendering._print_batch_report(outcome)
    text = piped.getvalue()
    assert "…" not in text
    [failed] = [line for line in text.splitlines() if "row-with-a-long-name-1" in line]
    assert TASK_ID in failed
    assert ERROR in failed
    [flagged] = [line for line in text.splitlines() if "row-2" in line]
    assert LOCATION in flagged
    assert TASK_ID.replace("A", "B") in flagged


def test_on_a_terminal_tables_still_fit_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(
        rendering, "console", Console(file=out, width=80, force_terminal=True, color_system=None)
    )
    items = [BatchItem(id="r", status="failed", task_id=TASK_ID, error=ERROR)]
    rendering._print_batch_report(BatchOutcome(report=BatchReport.of("b", items, 1.0)))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80
