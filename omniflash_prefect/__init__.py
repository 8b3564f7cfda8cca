"""omniflash-prefect: run Omni-Flash-Ext video generation inside Prefect pipelines.

Layers, bottom up (each module imports only the ones before it):

* ``errors``, ``models``, ``retry``, ``polling``, ``protocol``: the pure protocol (no I/O);
* ``settings``: ``OMNIFLASH_*`` configuration;
* ``client``: the thin async client that does the network I/O;
* ``blocks``, ``archive``, ``observability``, ``locks``, ``claims``, ``submissions``,
  ``dispatch``, ``tasks``: the Prefect layer (credentials block, storage, what the UI shows,
  who may act on a key, what a submission key is, sync and async calling, and the
  submit/poll/archive tasks);
* ``flows``: the ``generate_video`` and ``fetch_video`` flows, thin on top of the tasks;
* ``manifest`` and ``batch`` (pure: manifests, budget, report), then ``batch_flow``: the
  ``generate_video_batch`` flow, each row a ``generate_video`` run;
* ``emulator``: a local stand-in for the provider, for demos, tests and dry runs.
"""

from omniflash_prefect.archive import ArchivedVideo
from omniflash_prefect.batch import BatchItem, BatchReport
from omniflash_prefect.batch_flow import agenerate_video_batch, generate_video_batch
from omniflash_prefect.blocks import OmniFlashCredentials
from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    DownloadError,
    GenerationCancelledError,
    GenerationError,
    GenerationFailedError,
    InsufficientBalanceError,
    InvalidRequestError,
    InvalidTaskIdError,
    InvalidVideoRequestError,
    NotFoundError,
    OmniFlashError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    RequestProblem,
    ServerError,
    SubmissionOutcomeUnknownError,
    SubmissionReleaseError,
    UnexpectedResponseError,
    UnsafeDownloadURLError,
    VideoExpiredError,
    VideoRunLostError,
    VideoTooLargeError,
)
from omniflash_prefect.flows import afetch_video, agenerate_video, fetch_video, generate_video
from omniflash_prefect.manifest import InvalidManifestError, ManifestError
from omniflash_prefect.models import (
    Balance,
    DownloadedVideo,
    ResultVideo,
    TaskError,
    UploadedImage,
    VideoRequest,
    VideoTask,
    validate_task_id,
)
from omniflash_prefect.polling import PollSchedule
from omniflash_prefect.protocol import package_version as _package_version
from omniflash_prefect.retry import RetryPolicy
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.submissions import release_submission
from omniflash_prefect.tasks import (
    aarchive_video,
    apoll_video,
    archive_video,
    asubmit_video,
    poll_video,
    submit_video,
)

__version__ = _package_version()

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ArchivedVideo",
    "AuthenticationError",
    "Balance",
    "BatchItem",
    "BatchReport",
    "DownloadError",
    "DownloadedVideo",
    "GenerationCancelledError",
    "GenerationError",
    "GenerationFailedError",
    "InsufficientBalanceError",
    "InvalidManifestError",
    "InvalidRequestError",
    "InvalidTaskIdError",
    "InvalidVideoRequestError",
    "ManifestError",
    "NotFoundError",
    "OmniFlashClient",
    "OmniFlashCredentials",
    "OmniFlashError",
    "OmniFlashSettings",
    "PaymentRequiredError",
    "PollSchedule",
    "PollTimeoutError",
    "RateLimitedError",
    "RequestProblem",
    "ResultVideo",
    "RetryPolicy",
    "ServerError",
    "SubmissionOutcomeUnknownError",
    "SubmissionReleaseError",
    "TaskError",
    "UnexpectedResponseError",
    "UnsafeDownloadURLError",
    "UploadedImage",
    "VideoExpiredError",
    "VideoRequest",
    "VideoRunLostError",
    "VideoTask",
    "VideoTooLargeError",
    "__version__",
    "aarchive_video",
    "afetch_video",
    "agenerate_video",
    "agenerate_video_batch",
    "apoll_video",
    "archive_video",
    "asubmit_video",
    "fetch_video",
    "generate_video",
    "generate_video_batch",
    "poll_video",
    "release_submission",
    "submit_video",
    "validate_task_id",
]
