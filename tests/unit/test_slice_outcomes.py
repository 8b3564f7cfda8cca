"""How the batch reads a row's outcome from the report of the slice that ran it."""

from __future__ import annotations

import uuid

from prefect.client.schemas.objects import FlowRun

from omniflash_prefect import errors
from omniflash_prefect.batches.manifest import ManifestRow
from omniflash_prefect.batches.report import BatchItem
from omniflash_prefect.batches.runners import SliceRunner
from omniflash_prefect.core.requests import VideoRequest

ROW = ManifestRow(line=1, id="clip-1", request=VideoRequest(prompt="A harbour at dawn"))
SLICE = FlowRun(flow_id=uuid.uuid4(), name="batch-nightly-slice")


def outcome(**fields: object) -> object:
    item = BatchItem.model_validate({"id": ROW.id, **fields})
    return SliceRunner._row_of(ROW, item, SLICE).outcome


def test_an_archived_row_is_the_slice_s_report_of_it() -> None:
    archived = outcome(status="archived", task_id="task_1", location="/videos/task_1.mp4")
    assert isinstance(archived, BatchItem)
    assert archived.location == "/videos/task_1.mp4"


def test_a_row_the_slice_could_not_start_for_an_outside_reason_runs_again() -> None:
    """A 500 from the Prefect API while the slice loaded its block: nothing paid, run again."""
    lost = outcome(status="failed", error="PrefectHTTPStatusError: Server error '500'")
    assert isinstance(lost, errors.VideoRunLostError)


def test_a_row_that_failed_for_its_own_reason_is_reported_with_that_reason() -> None:
    refused = outcome(status="failed", error="PaymentRequiredError: balance too low")
    assert isinstance(refused, errors.RemoteRunError)
    assert refused.error_type is errors.PaymentRequiredError
    paid = outcome(status="failed", task_id="task_2", error="PrefectHTTPStatusError: 500")
    assert isinstance(paid, errors.RemoteRunError)  # paid: never simply run again


def test_a_row_missing_from_the_slice_s_report_is_lost() -> None:
    assert isinstance(SliceRunner._row_of(ROW, None, SLICE).outcome, errors.VideoRunLostError)
