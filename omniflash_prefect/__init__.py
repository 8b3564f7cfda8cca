"""omniflash-prefect: run Omni-Flash-Ext video generation inside Prefect pipelines.

What a pipeline author uses is here: the tasks and flows (each ``a``-prefixed async one paired
with a name that sync code may call too), the credentials block, the client, and the request and
result models. The rest lives in modules a reader can guess: the error tree in
:mod:`omniflash_prefect.errors`, shared spend limits in :mod:`omniflash_prefect.spend_limits`,
the ``OMNIFLASH_*`` settings in :mod:`omniflash_prefect.settings`.

Subpackages by layer, bottom up (each imports only the ones before it; ``ARCHITECTURE.md``):

* ``core``: the pure protocol (requests and their rules, answers, errors, retry, polling,
  spending); no I/O;
* ``settings``: ``OMNIFLASH_*`` configuration;
* ``client``: the thin async client that does the network I/O;
* ``media``: what a downloaded video file holds, and its previews (read with PyAV);
* ``video``: one video in Prefect (credentials block, submission keys and claims, storage, what
  the UI shows, spend limits, the submit/poll/archive tasks, the one-video flows);
* ``batches``: manifests, the report and the ``generate_video_batch`` flow;
* ``cli``: the ``omniflash`` command;
* ``emulator``: a local stand-in for the provider, for demos, tests and dry runs.
"""

from omniflash_prefect.batches.flow import agenerate_video_batch, generate_video_batch
from omniflash_prefect.batches.options import BatchRunOptions
from omniflash_prefect.batches.report import BatchItem, BatchReport
from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.core.models import VideoTask
from omniflash_prefect.core.protocol import package_version as _package_version
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.errors import OmniFlashError
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.blocks import OmniFlashCredentials
from omniflash_prefect.video.flows import (
    afetch_video,
    agenerate_video,
    agenerate_video_task,
    asweep_paid_videos,
    fetch_video,
    generate_video,
    generate_video_task,
    sweep_paid_videos,
)
from omniflash_prefect.video.tasks import (
    aarchive_video,
    apoll_video,
    archive_video,
    asubmit_video,
    aupload_image,
    poll_video,
    submit_video,
    upload_image,
)

__version__ = _package_version()

__all__ = [
    "ArchivedVideo",
    "BatchItem",
    "BatchReport",
    "BatchRunOptions",
    "OmniFlashClient",
    "OmniFlashCredentials",
    "OmniFlashError",
    "VideoRequest",
    "VideoTask",
    "__version__",
    "aarchive_video",
    "afetch_video",
    "agenerate_video",
    "agenerate_video_batch",
    "agenerate_video_task",
    "apoll_video",
    "archive_video",
    "asubmit_video",
    "asweep_paid_videos",
    "aupload_image",
    "fetch_video",
    "generate_video",
    "generate_video_batch",
    "generate_video_task",
    "poll_video",
    "submit_video",
    "sweep_paid_videos",
    "upload_image",
]
