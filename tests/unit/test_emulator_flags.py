"""``omniflash emulator`` takes one option per ``EmulatorConfig`` field, and what is given on the
command line is what the emulator runs with (no server is started: ``serve`` is replaced)."""

from __future__ import annotations

from typing import Any

import pytest
import typer
from typer.core import TyperGroup, TyperOption
from typer.testing import CliRunner

from omniflash_prefect.cli import app, emulator_command
from omniflash_prefect.emulator import EmulatorConfig
from omniflash_prefect.emulator.videos import min_video_size

#: The flags README.md documents, and scripts therefore use.
DOCUMENTED_FLAGS = [
    "--port",
    "--job-seconds",
    "--task-failure-rate",
    "--rate-limit-rate",
    "--retry-after",
    "--server-error-rate",
    "--latency",
    "--drop-first-downloads",
    "--download-drop-rate",
    "--download-stall",
    "--submit-delay",
    "--ignore-range",
    "--serve-non-mp4",
    "--url-ttl",
    "--balance",
    "--video-size",
    "--allow-non-loopback",
]


def emulator_options() -> dict[str, TyperOption]:
    """The options of ``omniflash emulator`` by the parameter each sets."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    command = group.commands["emulator"]
    return {p.name: p for p in command.params if isinstance(p, TyperOption) and p.name}


def a_value_other_than_the_default(name: str) -> Any:
    """A valid value of a config field that differs from its default, by the field's type."""
    annotation = EmulatorConfig.model_fields[name].annotation
    if annotation is bool:
        return True
    if annotation in (int, int | None):
        return min_video_size() + 17  # valid for every integer knob, video sizes included
    if annotation in (float, float | None):
        return 0.25  # a valid rate, and a valid number of seconds or credit
    if annotation is str:
        return "flag-key"
    raise AssertionError(f"no test value for {name}: {annotation}")


def arguments_for(values: dict[str, Any]) -> list[str]:
    """The command-line arguments that set these config values."""
    options = emulator_options()
    arguments: list[str] = []
    for name, value in values.items():
        flag = options[name].opts[0]
        arguments += [flag] if value is True else [flag, str(value)]
    return arguments


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ``serve`` was called with, instead of serving."""
    calls: list[dict[str, Any]] = []

    def record(config: EmulatorConfig, **where: Any) -> None:
        calls.append({"config": config, **where})

    monkeypatch.setattr(emulator_command, "serve", record)
    return calls


def test_every_config_field_is_an_option() -> None:
    options = emulator_options()
    missing = [name for name in EmulatorConfig.model_fields if name not in options]
    assert missing == []
    for name, field in EmulatorConfig.model_fields.items():
        assert options[name].help == field.description, name
        assert options[name].default == field.default, name


def test_the_documented_flags_keep_their_names() -> None:
    flags = {flag for option in emulator_options().values() for flag in option.opts}
    assert [flag for flag in DOCUMENTED_FLAGS if flag not in flags] == []


def test_switches_keep_their_off_form() -> None:
    options = emulator_options()
    for name, field in EmulatorConfig.model_fields.items():
        if field.annotation is bool:
            [on] = options[name].opts
            assert options[name].secondary_opts == ["--no-" + on.removeprefix("--")]


def test_values_on_the_command_line_reach_the_config(started: list[dict[str, Any]]) -> None:
    values = {name: a_value_other_than_the_default(name) for name in EmulatorConfig.model_fields}
    assert all(values[name] != f.default for name, f in EmulatorConfig.model_fields.items())
    arguments = ["emulator", "--host", "127.0.0.2", "--port", "0", *arguments_for(values)]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    [call] = started
    assert call["config"].model_dump() == values
    assert (call["host"], call["port"], call["allow_non_loopback"]) == ("127.0.0.2", 0, False)


def test_defaults_are_the_config_defaults(started: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["emulator"])
    assert result.exit_code == 0, result.output
    [call] = started
    assert call["config"] == EmulatorConfig()
    assert (call["host"], call["port"]) == ("127.0.0.1", 8765)


def test_a_value_the_config_refuses_exits_2_naming_the_field(
    started: list[dict[str, Any]],
) -> None:
    result = CliRunner().invoke(app, ["emulator", "--download-drop-rate", "1.5"])
    assert result.exit_code == 2
    assert "download_drop_rate" in result.output
    assert started == []
