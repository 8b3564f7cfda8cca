"""Running the emulator: public API, loopback-only binding, lifecycle, foreground ``serve``."""

from __future__ import annotations

import threading

import httpx
import pytest
from pydantic import ValidationError

import omniflash_prefect.emulator as emulator_package
from omniflash_prefect.emulator import EmulatorConfig, EmulatorServer, EmulatorState, serve
from omniflash_prefect.emulator.server import is_loopback

from .helpers import http_client


def test_public_api_is_exactly_the_documented_names() -> None:
    """``__all__`` is sorted, lists the documented names, and each one resolves."""
    expected = [
        "DEFAULT_SHAPE",
        "EmulatorConfig",
        "EmulatorServer",
        "EmulatorState",
        "TaskRecord",
        "VideoFault",
        "VideoShape",
        "create_app",
        "serve",
        "video_sha256",
        "video_size",
    ]
    assert emulator_package.__all__ == expected
    assert all(hasattr(emulator_package, name) for name in expected)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.5.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    """Only loopback addresses and 'localhost' count as loopback."""
    assert is_loopback(host) is expected


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.com"])
def test_non_loopback_bind_is_refused(host: str) -> None:
    """The emulator refuses to listen beyond loopback unless explicitly allowed."""
    with pytest.raises(ValueError, match="non-loopback"):
        EmulatorServer(host=host)
    with pytest.raises(ValueError, match="non-loopback"):
        serve(host=host)
    assert EmulatorServer(host=host, allow_non_loopback=True).host == host


async def test_context_manager_starts_and_stops() -> None:
    """Inside ``with`` the port answers at once; after it, the port is closed."""
    emu = EmulatorServer()
    assert emu.port == 0
    with emu:
        base_url = emu.base_url
        assert base_url == f"http://127.0.0.1:{emu.port}"
        assert emu.port > 0
        async with http_client() as http:
            response = await http.get(f"{base_url}/v1/balance")
        assert response.status_code == 401
        with pytest.raises(RuntimeError, match="already running"):
            emu.start()
    with pytest.raises(RuntimeError, match="not started"):
        _ = emu.base_url
    async with http_client() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{base_url}/v1/balance")
    emu.stop()  # stopping twice is harmless


async def test_serve_runs_in_the_foreground_until_stopped() -> None:
    """``serve`` blocks while serving, hands the started server to on_ready, and returns
    once that server is stopped."""
    ready = threading.Event()
    servers: list[EmulatorServer] = []

    def on_ready(server: EmulatorServer) -> None:
        servers.append(server)
        ready.set()

    config = EmulatorConfig(api_key="cli-key")
    runner = threading.Thread(
        target=serve, args=(config, "127.0.0.1", 0), kwargs={"on_ready": on_ready}
    )
    runner.start()
    try:
        assert ready.wait(timeout=10)
        (server,) = servers
        assert server.config is config
        async with http_client(server.base_url, "cli-key") as http:
            assert (await http.get("/v1/balance")).status_code == 200
        assert runner.is_alive()
    finally:
        for server in servers:
            server.stop()
        runner.join(timeout=10)
    assert not runner.is_alive()


def test_config_rejects_bad_values_at_assignment() -> None:
    """The live config validates every change, so a typo cannot silently disable a fault."""
    config = EmulatorConfig()
    with pytest.raises(ValidationError):
        config.rate_limit_rate = 1.5
    with pytest.raises(ValidationError):
        config.job_seconds = -1.0
    with pytest.raises(ValidationError):
        config.api_key = ""
    with pytest.raises(ValidationError):
        config.url_ttl_seconds = float("inf")
    with pytest.raises(ValidationError):
        EmulatorConfig(rate_limit=0.5)  # type: ignore[call-arg]
    assert config.rate_limit_rate == 0.0


def test_state_draws_are_reproducible_from_the_seed() -> None:
    """Two states with the same seed inject the same faults in the same order."""
    first, second = EmulatorState(seed=7), EmulatorState(seed=7)
    assert [first.chance(0.5) for _ in range(50)] == [second.chance(0.5) for _ in range(50)]
    assert first.chance(1.0) is True
    assert first.chance(0.0) is False
