"""Options the command line refuses before it does anything (no server, nothing sent)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from omniflash_prefect.batches.flow import agenerate_video_batch
from omniflash_prefect.batches.options import BatchRunOptions, FanOut
from omniflash_prefect.cli import app
from omniflash_prefect.cli.batch_commands import BatchOptions


def test_fan_out_takes_only_its_choices() -> None:
    result = CliRunner().invoke(app, ["batch", "rows.jsonl", "--fan-out", "sideways"])
    assert result.exit_code == 2
    assert "sideways" in result.output
    assert all(choice.value in result.output for choice in FanOut)


def test_fan_out_choices_are_the_flow_parameter_values() -> None:
    """The enum's values are what deployments and ``--param fan_out=...`` pass as strings."""
    assert [choice.value for choice in FanOut] == ["tasks", "deployments"]
    assert BatchRunOptions().fan_out is FanOut.TASKS
    assert FanOut("deployments") is FanOut.DEPLOYMENTS


def batch_options() -> dict[str, TyperOption]:
    """The options of ``omniflash batch`` by the parameter each sets."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["batch"]
    return {p.name: p for p in command.params if isinstance(p, TyperOption) and p.name}


def test_batch_run_options_take_their_defaults_from_the_flow_options() -> None:
    """Every run option the command has defaults as the flow's options do (declared once)."""
    options = batch_options()
    shared = [name for name in BatchRunOptions.model_fields if name in options]
    assert len(shared) == 9  # all but the deployment's name and a slice's timeout
    for name in shared:
        assert options[name].default == BatchRunOptions.model_fields[name].default, name


def test_batch_flow_parameters_are_the_run_options_plus_the_commands_own(tmp_path: Path) -> None:
    run = BatchRunOptions(max_concurrency=3, fan_out=FanOut.DEPLOYMENTS, budget=2.5)
    options = BatchOptions(str(tmp_path / "rows.jsonl"), run, credentials_block="creds")
    parameters = options.flow_parameters()
    assert BatchRunOptions.model_validate(parameters["options"]) == run
    assert parameters["manifest"] == str((tmp_path / "rows.jsonl").resolve())
    assert parameters["credentials_block"] == "creds"
    flow_parameters = inspect.signature(agenerate_video_batch.fn).parameters
    assert set(parameters) <= set(flow_parameters)


def test_a_batch_option_out_of_range_exits_2_before_anything_runs() -> None:
    """A budget of 0 is refused by the run options themselves, naming the option; no manifest
    is read and no run is created."""
    result = CliRunner().invoke(app, ["batch", "missing.jsonl", "--json", "--budget", "0"])
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert report["status"] == "invalid"
    assert report["error_type"] == "UsageError"
    assert "budget" in report["error"]
    assert report["flow_run_id"] is None
