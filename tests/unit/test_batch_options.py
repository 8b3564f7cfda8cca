"""A batch's options are declared once, in ``BatchRunOptions``: the flow takes them as one
``options`` parameter (JSON in a deployment's parameters), and a value out of range is a
``UsageError`` naming the option."""

from __future__ import annotations

import inspect
import json

import pytest

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.options import ROW_MARGIN_SECONDS, BatchRunOptions, FanOut
from omniflash_prefect.errors import UsageError


def test_the_flow_takes_the_options_as_one_parameter() -> None:
    parameters = inspect.signature(agenerate_video_batch.fn).parameters
    assert parameters["options"].annotation in ("BatchRunOptions | None", BatchRunOptions | None)
    assert not set(BatchRunOptions.model_fields) & set(parameters)


def test_the_options_go_to_a_deployment_as_json_and_come_back_equal() -> None:
    options = BatchRunOptions(max_concurrency=3, fan_out=FanOut.DEPLOYMENTS, budget=2.5)
    parameters = options.model_dump(mode="json")
    assert parameters["fan_out"] == "deployments"
    assert BatchRunOptions.model_validate(json.loads(json.dumps(parameters))) == options


@pytest.mark.parametrize(
    ("option", "value"),
    [("max_concurrency", 0), ("budget", 0), ("row_timeout_seconds", -1), ("cost_estimate", -1)],
)
def test_an_option_out_of_range_is_a_usage_error_naming_it(option: str, value: float) -> None:
    with pytest.raises(UsageError, match=option):
        BatchRunOptions.checked(**{option: value})


def test_the_row_deadline_is_the_poll_deadline_plus_the_margin_unless_given() -> None:
    assert BatchRunOptions().row_deadline(600) == 600 + ROW_MARGIN_SECONDS
    assert BatchRunOptions(row_timeout_seconds=30).row_deadline(600) == 30
