"""Options the command line refuses before it does anything (no server, nothing sent)."""

from __future__ import annotations

from typer.testing import CliRunner

from omniflash_prefect.batches.options import FanOut
from omniflash_prefect.cli import app


def test_fan_out_takes_only_its_choices() -> None:
    result = CliRunner().invoke(app, ["batch", "rows.jsonl", "--fan-out", "sideways"])
    assert result.exit_code == 2
    assert "sideways" in result.output
    assert all(choice.value in result.output for choice in FanOut)


def test_fan_out_choices_are_the_flow_parameter_values() -> None:
    """The enum's values are what deployments and ``--param fan_out=...`` pass as strings."""
    assert [choice.value for choice in FanOut] == ["subflows", "deployments"]
    assert FanOut("deployments") is FanOut.DEPLOYMENTS
