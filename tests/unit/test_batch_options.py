"""A batch's options are declared once, in ``BatchRunOptions``: the flow's parameters carry the
same names and defaults, and a value out of range is a ``UsageError`` naming the option."""

from __future__ import annotations

import inspect

import pytest

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.options import ROW_MARGIN_SECONDS, BatchRunOptions, FanOut
from omniflash_prefect.core.errors import UsageError


def test_the_flow_takes_every_option_with_the_same_default() -> None:
    parameters = inspect.signature(agenerate_video_batch.fn).parameters
    for name, field in BatchRunOptions.model_fields.items():
        assert name in parameters, name
        assert parameters[name].default == field.default, name


def test_flow_parameters_are_the_options_as_json() -> None:
    options = BatchRunOptions(max_concurrency=3, fan_out=FanOut.DEPLOYMENTS, budget=2.5)
    parameters = options.flow_parameters()
    assert parameters["fan_out"] == "deployments"
    assert BatchRunOptions(**parameters) == options


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
