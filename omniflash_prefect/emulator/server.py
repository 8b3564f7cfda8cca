"""Running the emulator over real HTTP: in a background thread for tests, or in the foreground.

``start()`` binds and listens on the socket itself before the server thread exists, then hands
the socket to uvicorn: the port is known at once and early connections wait in the listen
backlog, so no caller ever sleeps or polls for the server to come up. The emulator is a test
server without TLS or real accounts, hence loopback-only unless explicitly allowed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Self

import uvicorn

from .app import create_app
from .config import EmulatorConfig
from .state import EmulatorState

#: How long ``stop()`` waits for the server thread, and uvicorn for open connections.
STOP_TIMEOUT_SECONDS = 5.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Created with an explicit ``IPPROTO_TCP``: asyncio only sets TCP_NODELAY on accepted sockets
    whose protocol says TCP, and without it every keep-alive request pays a 40 ms
    Nagle/delayed-ACK stall.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        if os.name == "posix":  # rebinding a port in TIME_WAIT; on Windows it means port theft
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    return sock


class EmulatorServer:
    """The emulator on a real port; use as ``with EmulatorServer(config) as emu: ...``.

    ``config`` stays live: change its fields while the server runs to switch faults on or off.
    ``clock`` drives task progress and URL expiry (inject a fake one to move time in tests).
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
        allow_non_loopback: bool = False,
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise ValueError(
                f"refusing to bind the emulator to non-loopback host {host!r}; "
                "pass allow_non_loopback=True to expose it"
            )
        self.config = config if config is not None else EmulatorConfig()
        self.state = EmulatorState(seed=self.config.seed, clock=clock)
        self.app = create_app(self.config, self.state)
        self.host = host
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()

    @property
    def api_key(self) -> str:
        """The bearer token the emulator accepts (``config.api_key``)."""
        return self.config.api_key

    @property
    def port(self) -> int:
        """The bound port once started (so ``port=0`` can be read back), else the requested one."""
        if self._socket is None:
            return self._requested_port
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>`` of the bound socket (available once started)."""
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        address, port = self._socket.getsockname()[:2]
        shown = f"[{address}]" if ":" in address else address
        return f"http://{shown}:{port}"

    def start(self) -> Self:
        """Bind, listen, and serve from a daemon thread; returns at once with the port known."""
        with self._lifecycle:
            return self._start()

    def _start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_level="warning",
                log_config=None,  # leave the host application's logging configuration alone
                access_log=False,
                lifespan="off",
                ws="none",
                timeout_graceful_shutdown=int(STOP_TIMEOUT_SECONDS),
            )
        )
        sock = _listen(self.host, self._requested_port)
        self._socket, self._server = sock, server
        self._thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"omniflash-emulator-{sock.getsockname()[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def wait(self) -> None:
        """Block until the server stops (``stop()`` from another thread, or Ctrl+C here)."""
        thread = self._thread
        if thread is not None:
            thread.join()

    def stop(self) -> None:
        """Ask the server to exit, wait for its thread, and release the socket.

        Safe to call twice or from two threads at once (``serve`` and whoever stops it).
        """
        with self._lifecycle:
            if self._server is None or self._thread is None:
                return
            self._server.should_exit = True
            self._thread.join(STOP_TIMEOUT_SECONDS * 2)
            if self._thread.is_alive():
                raise RuntimeError("the emulator thread did not stop in time")
            if self._socket is not None:
                self._socket.close()  # uvicorn closes it too; this covers a crashed server
            self._socket, self._server, self._thread = None, None, None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    config: EmulatorConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    allow_non_loopback: bool = False,
    on_ready: Callable[[EmulatorServer], None] | None = None,
) -> None:
    """Run the emulator in the foreground until Ctrl+C (which returns normally).

    Prints nothing itself: ``on_ready`` is called with the started server (its ``base_url`` and
    ``api_key`` known) so a CLI can announce it, and may keep it to ``stop()`` it later.
    """
    with EmulatorServer(
        config, host=host, port=port, allow_non_loopback=allow_non_loopback
    ) as server:
        if on_ready is not None:
            on_ready(server)
        with contextlib.suppress(KeyboardInterrupt):
            server.wait()
