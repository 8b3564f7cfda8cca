"""A local Prefect server kept running between commands, when no server is configured.

Without ``PREFECT_API_URL`` Prefect starts a temporary server inside every command and stops it at
the end: 10-20 s before each run (more on a busy machine), and nothing left to look at in a UI
afterwards. Instead, the first command starts Prefect's own background server (``prefect server
start --background``, on loopback, analytics off) and says so on stderr; later commands find it
and use it. It is the server Prefect users know: its PID is in ``$PREFECT_HOME/server.pid``, its
database is Prefect's default one (``$PREFECT_HOME/prefect.db``, the one the temporary servers
used), and ``prefect server stop`` stops it as well as ``omniflash server stop`` does.

Prefect records no address for its background server, so ``omniflash-server.json`` beside the PID
file keeps the PID and API URL of the one the commands use; and ``omniflash-server.lock``
(``flock(2)``, released by the kernel if its holder dies) is held while a command looks for the
server or starts one, so commands starting together start one server and the others wait for it.

``OMNIFLASH_PREFECT_SERVER=temporary`` keeps Prefect's temporary server, as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, cast, get_args

import httpx
from prefect.settings import PREFECT_HOME, PREFECT_SERVER_API_PORT

from omniflash_prefect.cli.usage import CommandUsageError
from omniflash_prefect.errors import OmniFlashError

#: Where ``prefect server start --background`` writes its server's PID (``prefect.cli.server``).
PID_FILE: Final = "server.pid"
#: The PID and API URL of the server the commands use (Prefect's PID file has no address).
STATE_FILE: Final = "omniflash-server.json"
LOCK_FILE: Final = "omniflash-server.lock"
#: What ``prefect server start --background`` printed (the server's own output is not kept).
LOG_FILE: Final = "omniflash-server.log"
#: Loopback only: a server started on someone's behalf must not be reachable from elsewhere.
HOST: Final = "127.0.0.1"
#: ``background`` (the default) or ``temporary`` (Prefect's temporary server in each command).
CHOICE_VARIABLE: Final = "OMNIFLASH_PREFECT_SERVER"
#: Importing Prefect's command line and migrating a new database take ~20 s on a quiet laptop;
#: on a busy 2-core machine, a minute.
START_SECONDS: Final = 120.0
STOP_SECONDS: Final = 20.0

ServerChoice = Literal["background", "temporary"]


class LocalServerError(OmniFlashError):
    """The local background server could not be found or started; the message says why (the
    command then runs on a temporary server: nothing was sent yet)."""

    charged = False


@dataclass(frozen=True)
class LocalServer:
    """A Prefect server running in the background on this machine."""

    pid: int
    api_url: str

    @property
    def ui_url(self) -> str:
        """The Prefect UI, served by the same server (as ``prefect server start`` serves it)."""
        return self.api_url.removesuffix("/api")


def server_choice() -> ServerChoice:
    """What ``OMNIFLASH_PREFECT_SERVER`` asks for; a usage error (exit 2) for anything else."""
    value = os.environ.get(CHOICE_VARIABLE, "").strip().lower() or "background"
    if value in get_args(ServerChoice):
        return cast(ServerChoice, value)
    raise CommandUsageError(
        f"{CHOICE_VARIABLE}={value!r}: use 'background' (the default: keep a local Prefect server "
        "running between commands) or 'temporary' (Prefect's temporary server in each command)"
    )


def prefect_home() -> Path:
    """Prefect's home (``PREFECT_HOME``, default ``~/.prefect``), where its files live."""
    return Path(PREFECT_HOME.value()).expanduser()


def announce_on_stderr(line: str) -> None:
    """Print one line on stderr (above a progress bar, which redirects it while it draws)."""
    print(line, file=sys.stderr, flush=True)


def ensure_local_server(
    home: Path | None = None, *, announce: Callable[[str], None] = announce_on_stderr
) -> LocalServer:
    """The local background server, started first if none runs; raises
    :class:`LocalServerError`.

    A server is only ever started with the lock held, and a command that waited for the lock
    finds the server the other one started. Starting one, or taking on a background server
    started by hand, is announced with one line naming its address, its UI and how to stop it.
    """
    home = home or prefect_home()
    with _locked(home):
        server = _recorded(home)
        if server is not None:
            return server
        server = _adopted(home)
        if server is not None:
            announce(
                f"Using the Prefect server running in the background at {server.api_url} (UI: "
                f"{server.ui_url}); `omniflash server stop` stops it."
            )
            return server
        server = _start(home)
        announce(
            f"Started a local Prefect server at {server.api_url} (UI: {server.ui_url}); it keeps "
            "running for the next commands: `omniflash server stop` stops it."
        )
        return server


def running_local_server(home: Path | None = None) -> LocalServer | None:
    """The local server the commands use, if its process lives; no network call, no lock."""
    state = _read_state(home or prefect_home())
    return state if state is not None and _is_server_process(state.pid) else None


def stop_local_server(home: Path | None = None) -> int | None:
    """Stop the local background server (the one the commands use, else one Prefect's PID file
    names) and forget it; its PID, or None when none was running."""
    home = home or prefect_home()
    with _locked(home):
        state = _read_state(home)
        candidates = [state.pid if state else None, _read_pid(home / PID_FILE)]
        pid = next((p for p in candidates if p is not None and _is_server_process(p)), None)
        if pid is not None:
            _terminate(pid)
        for named in candidates:
            if named is not None and not _is_server_process(named):
                _forget(home, named)
        return pid


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """Hold the lock of ``home``'s local server (waiting for it) for the block."""
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _recorded(home: Path) -> LocalServer | None:
    """The recorded server, once it answers; its records are removed if its process is gone.

    A live server that does not answer yet is waited for: a busy machine can hold a request
    for seconds, and a command killed while starting it left it still starting.
    """
    server = _read_state(home)
    if server is None:
        return None
    if _healthy(server.api_url):
        return server
    if not _is_server_process(server.pid):
        _forget(home, server.pid)
        return None
    if _wait_healthy(server, time.monotonic() + START_SECONDS):
        return server
    raise LocalServerError(
        f"the local Prefect server (PID {server.pid}) does not answer at {server.api_url}: stop "
        "it with `omniflash server stop`"
    )


def _adopted(home: Path) -> LocalServer | None:
    """A background server started by hand (``prefect server start --background``), recorded
    as the one to use when it answers at Prefect's usual address; None, with a stale PID file
    removed, when there is none."""
    pid = _read_pid(home / PID_FILE)
    if pid is None:
        return None
    if not _is_server_process(pid):
        _forget(home, pid)
        return None
    server = LocalServer(pid, f"http://{HOST}:{PREFECT_SERVER_API_PORT.value()}/api")
    if not _healthy(server.api_url):
        raise LocalServerError(
            f"a Prefect server runs in the background (PID {pid}, in {home / PID_FILE}) but does "
            f"not answer at {server.api_url}: set PREFECT_API_URL to its address, or stop it "
            "with `prefect server stop`"
        )
    _write_state(home, server)
    return server


def _start(home: Path) -> LocalServer:
    """``prefect server start --background`` on Prefect's usual port (another free one if that
    is taken), in a session of its own so that Ctrl+C in the terminal does not stop it; returns
    once it answers."""
    deadline = time.monotonic() + START_SECONDS
    port = _free_port(PREFECT_SERVER_API_PORT.value())
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        # The address through settings rather than --host/--port: the UI is told the API's
        # address from these settings.
        "PREFECT_SERVER_API_HOST": HOST,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # an offline machine only gets errors
        "PREFECT_CLI_PROMPT": "false",
    }
    command = [sys.executable, "-m", "prefect", "server", "start", "--background"]
    log = home / LOG_FILE
    with log.open("wb") as output:
        try:
            started = subprocess.run(  # noqa: S603 - our interpreter, fixed arguments
                [*command, "--analytics-off"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                timeout=START_SECONDS,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise LocalServerError(f"`prefect server start --background` hung; see {log}") from None
    pid = _read_pid(home / PID_FILE)
    if started.returncode != 0 or pid is None:
        raise LocalServerError(
            f"`prefect server start --background` exited {started.returncode}; see {log}"
        )
    server = LocalServer(pid, f"http://{HOST}:{port}/api")
    _write_state(home, server)
    if not _wait_healthy(server, deadline):
        why = "did not answer in time" if _is_server_process(pid) else "stopped before it answered"
        _terminate(pid)
        _forget(home, pid)
        raise LocalServerError(
            f"the Prefect server started at {server.api_url} {why} (`prefect server start` "
            "runs it in the foreground, to see why)"
        )
    return server


def _free_port(preferred: int) -> int:
    """``preferred`` if it is free on loopback (probed as uvicorn binds, reusing a port whose
    last connections are closing), else any free port."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            free: int = probe.getsockname()[1]
            return free
    raise LocalServerError(f"no free TCP port on {HOST}")


def _healthy(api_url: str) -> bool:
    """Whether a Prefect server answers ``true`` at ``/health`` (loopback: no proxy)."""
    try:
        answer = httpx.get(f"{api_url}/health", timeout=5.0, trust_env=False)
        return answer.status_code == 200 and answer.json() is True
    except (httpx.HTTPError, ValueError):
        return False


def _wait_healthy(server: LocalServer, deadline: float) -> bool:
    """Whether ``server`` answers before ``deadline``; False at once if its process ends."""
    while time.monotonic() < deadline:
        if _healthy(server.api_url):
            return True
        if not _is_server_process(server.pid):
            return False
        time.sleep(0.25)
    return False


def _is_server_process(pid: int) -> bool:
    """Whether ``pid`` is a live process that may be a Prefect server.

    A PID left in a file may since belong to another process (after a reboot, say), or to a
    zombie: where ``/proc`` is, the process's command line must name Prefect; elsewhere, that it
    exists is all that can be told.
    """
    try:
        return b"prefect" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    return True


def _terminate(pid: int) -> None:
    """SIGTERM (as ``prefect server stop`` sends), SIGKILL if it outlives ``STOP_SECONDS``;
    returns once it has ended, so its port and database are free."""
    for signal_number, grace in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal_number)
        deadline = time.monotonic() + grace
        while _is_server_process(pid):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        else:
            return


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _read_state(home: Path) -> LocalServer | None:
    try:
        data = json.loads((home / STATE_FILE).read_text())
        return LocalServer(pid=int(data["pid"]), api_url=str(data["api_url"]))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _write_state(home: Path, server: LocalServer) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    temporary = home / f"{STATE_FILE}.{os.getpid()}"
    temporary.write_text(json.dumps({"pid": server.pid, "api_url": server.api_url}))
    temporary.replace(home / STATE_FILE)


def _forget(home: Path, pid: int) -> None:
    """Remove the records that name ``pid`` (Prefect's PID file and ours), not others."""
    if _read_pid(home / PID_FILE) == pid:
        (home / PID_FILE).unlink(missing_ok=True)
    state = _read_state(home)
    if state is not None and state.pid == pid:
        (home / STATE_FILE).unlink(missing_ok=True)
