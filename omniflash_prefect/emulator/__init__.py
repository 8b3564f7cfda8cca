"""A local stand-in for the Omni-Flash-Ext provider, for tests, demos and benchmarks.

Real video generation is slow (minutes) and paid, and the provider's failure modes (429s,
gateway 502s, failed tasks, expiring URLs, cut downloads) cannot be triggered on demand. The
emulator speaks the provider's HTTP API (submit, task status, balance, image upload), checks
submits by the provider's documented rules on its own, and injects each of those faults at a
configurable rate, from a seeded RNG and an injectable clock so runs are reproducible and fast.
Its videos are real H.264 MP4s of the duration, resolution and aspect ratio each task asked for
(encoded once per shape and cached, see :mod:`.clips`), so media checks have something to read::

    with EmulatorServer(EmulatorConfig(job_seconds=0.2)) as emu:
        ...  # point a client at emu.base_url with emu.api_key; read emu.state afterwards

It deliberately imports nothing from the rest of ``omniflash_prefect``: it plays the provider, so
it must not share the client's idea of the rules.
"""

from .app import create_app
from .clips import VideoShape
from .config import EmulatorConfig
from .server import EmulatorServer, serve
from .state import EmulatorState, TaskRecord
from .videos import DEFAULT_SHAPE, VideoFault, video_sha256, video_size

__all__ = [
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
