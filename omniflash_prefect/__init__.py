"""omniflash-prefect: run Omni-Flash-Ext video generation inside Prefect pipelines.

Subpackages by layer, bottom up (each imports only the ones before it; ``ARCHITECTURE.md``):

* ``core``: the pure protocol (requests and their rules, answers, errors, retry, polling); no I/O;
* ``settings``: ``OMNIFLASH_*`` configuration;
* ``client``: the thin async client that does the network I/O;
* ``media``: what a downloaded video file holds, and its previews (read with PyAV);
* ``video``: one video in Prefect (credentials block, submission keys and claims, storage, what
  the UI shows, the submit/poll/archive tasks, the ``generate_video`` and ``fetch_video`` flows);
* ``batches``: manifests, the spend ledger, the report and the ``generate_video_batch`` flow;
* ``cli``: the ``omniflash`` command;
* ``emulator``: a local stand-in for the provider, for demos, tests and dry runs.
"""

from omniflash_prefect.batches.flow import agenerate_video_batch, generate_video_batch
from omniflash_prefect.batches.manifest import InvalidManifestError, ManifestError
from omniflash_prefect.batches.report import BatchItem, BatchReport
from omniflash_prefect.client import OmniFlashClient
from omniflash_prefect.core.errors import (
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
    MediaCheckError,
    NotFoundError,
    OmniFlashError,
    PaymentRequiredError,
    PollTimeoutError,
    RateLimitedError,
    RequestProblem,
    ServerError,
    SpendLimitNotFoundError,
    SpendLimitReachedError,
    SubmissionOutcomeUnknownError,
    SubmissionReleaseError,
    UnexpectedResponseError,
    UnsafeDownloadURLError,
    VideoExpiredError,
    VideoRunLostError,
    VideoTooLargeError,
)
from omniflash_prefect.core.media import MediaCheck, MediaFacts, Mismatch
from omniflash_prefect.core.models import (
    Balance,
    DownloadedVideo,
    ResultVideo,
    TaskError,
    UploadedImage,
    VideoTask,
    validate_task_id,
)
from omniflash_prefect.core.polling import PollSchedule
from omniflash_prefect.core.protocol import package_version as _package_version
from omniflash_prefect.core.requests import VideoRequest
from omniflash_prefect.core.retry import RetryPolicy
from omniflash_prefect.core.spending import SpendLimit, SpendLimitView
from omniflash_prefect.settings import OmniFlashSettings
from omniflash_prefect.video.archive import ArchivedVideo
from omniflash_prefect.video.blocks import OmniFlashCredentials
from omniflash_prefect.video.flows import (
    afetch_video,
    agenerate_video,
    agenerate_video_task,
    fetch_video,
    generate_video,
    generate_video_task,
)
from omniflash_prefect.video.spend_holds import SpendLimitHold
from omniflash_prefect.video.spend_limits import (
    OmniFlashSpendLimit,
    define_spend_limit,
    delete_spend_limit,
    list_spend_limits,
    read_spend_limit,
)
from omniflash_prefect.video.submissions import release_submission
from omniflash_prefect.video.tasks import (
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
    "MediaCheck",
    "MediaCheckError",
    "MediaFacts",
    "Mismatch",
    "NotFoundError",
    "OmniFlashClient",
    "OmniFlashCredentials",
    "OmniFlashError",
    "OmniFlashSettings",
    "OmniFlashSpendLimit",
    "PaymentRequiredError",
    "PollSchedule",
    "PollTimeoutError",
    "RateLimitedError",
    "RequestProblem",
    "ResultVideo",
    "RetryPolicy",
    "ServerError",
    "SpendLimit",
    "SpendLimitHold",
    "SpendLimitNotFoundError",
    "SpendLimitReachedError",
    "SpendLimitView",
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
    "agenerate_video_task",
    "apoll_video",
    "archive_video",
    "asubmit_video",
    "define_spend_limit",
    "delete_spend_limit",
    "fetch_video",
    "generate_video",
    "generate_video_batch",
    "generate_video_task",
    "list_spend_limits",
    "poll_video",
    "read_spend_limit",
    "release_submission",
    "submit_video",
    "validate_task_id",
]
